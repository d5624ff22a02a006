//! `distill-testkit`: servers for tests and benchmarks.
//!
//! `distill-testkit instant [PORT]` serves an instant-answer OpenAI-compatible
//! endpoint until killed; `distill-testkit llama PARALLEL` starts llama-server
//! and prints its base URL, until killed (kill the process group: the server
//! is a child process); `distill-testkit proxy --upstream URL ...` puts the
//! fault-injecting proxy in front of any OpenAI-compatible server.

use distill_testkit::proxy::{Fault, FaultProxy, random_schedule};
use std::io::Write;

const USAGE: &str = "usage: distill-testkit <command>

commands:
  instant [PORT [LABEL [ALT]]]
                      an OpenAI-compatible endpoint that answers LABEL (default spam,
                      logprobs with ALT, default ham) at once; PORT 0: a free port
  llama [PARALLEL]    start llama-server (SmolLM2-135M) and print its base URL
  proxy --upstream URL [options]
                      a fault-injecting proxy in front of an OpenAI-compatible server

Each command prints the base URL to point a teacher at (teacher.base-url),
then serves until killed. `distill-testkit proxy --help` for the proxy's options.";

const PROXY_USAGE: &str = "usage: distill-testkit proxy --upstream URL [options]

Forward every request to URL; chat requests (POST .../chat/completions) get a
fault instead, on a seeded random or a fixed schedule. Prints the proxy's base
URL (http://127.0.0.1:PORT/v1), then serves until killed. The Authorization
header is forwarded.

options:
  --upstream URL       the server's origin, e.g. http://127.0.0.1:8080 (a trailing /v1 is dropped)
  --port P             listen on 127.0.0.1:P (default: a free port)
  --fail-rate F        share of chat requests that get a fault, 0..1 (default 0.2)
  --faults LIST        comma-separated faults to draw from (default: all but pass):
                       429, 500, hang, truncate, invalid-json, wrong-content-type
  --seed S             seed of the random schedule (default 17)
  --schedule LIST      a fixed cyclic schedule instead, e.g. pass,429,pass,500
  --retry-after S      Retry-After seconds of 429 answers (default 1)
  --hang-s S           how long a hang stays silent before closing (default 30)
  -h, --help           this help";

/// Print the server's base URL and keep it alive, or fail with exit 2.
fn serve<S, E: std::fmt::Display>(started: Result<S, E>, base_url: impl Fn(&S) -> String) {
    match started {
        Ok(server) => {
            println!("{}", base_url(&server));
            let _ = std::io::stdout().flush();
            loop {
                std::thread::park();
            }
        }
        Err(e) => fail(&e.to_string()),
    }
}

fn fail(message: &str) -> ! {
    eprintln!("error: {message}");
    std::process::exit(2);
}

/// The proxy's settings, from its arguments.
struct ProxyArgs {
    upstream: String,
    port: Option<u16>,
    schedule: Vec<Fault>,
}

fn parse_proxy(args: &[String]) -> Result<ProxyArgs, String> {
    let mut upstream = None;
    let mut port = None;
    let mut fail_rate = 0.2;
    let mut faults: Option<String> = None;
    let mut seed = 17u64;
    let mut schedule: Option<String> = None;
    let mut retry_after = 1u32;
    let mut hang_s = 30.0;
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let mut value = |what: &str| {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{flag} needs {what}"))
        };
        let number = |v: String, what: &str| format!("{flag} {v}: expected {what}");
        match flag.as_str() {
            "--upstream" => upstream = Some(value("a URL")?),
            "--port" => {
                let v = value("a port")?;
                port = Some(v.parse().map_err(|_| number(v, "a port number"))?);
            }
            "--fail-rate" => {
                let v = value("a rate")?;
                fail_rate = v
                    .parse::<f64>()
                    .ok()
                    .filter(|r| (0.0..=1.0).contains(r))
                    .ok_or_else(|| number(v, "a number in [0, 1]"))?;
            }
            "--faults" => faults = Some(value("a list")?),
            "--seed" => {
                let v = value("a seed")?;
                seed = v.parse().map_err(|_| number(v, "an integer"))?;
            }
            "--schedule" => schedule = Some(value("a list")?),
            "--retry-after" => {
                let v = value("seconds")?;
                retry_after = v.parse().map_err(|_| number(v, "whole seconds"))?;
            }
            "--hang-s" => {
                let v = value("seconds")?;
                hang_s = v
                    .parse::<f64>()
                    .ok()
                    .filter(|s| s.is_finite() && (0.0..=3600.0).contains(s))
                    .ok_or_else(|| number(v, "seconds in [0, 3600]"))?;
            }
            other => return Err(format!("unknown option `{other}`\n\n{PROXY_USAGE}")),
        }
    }
    let upstream = upstream.ok_or_else(|| format!("--upstream is required\n\n{PROXY_USAGE}"))?;
    if !(upstream.starts_with("http://") || upstream.starts_with("https://")) {
        return Err(format!(
            "--upstream {upstream}: expected http://host:port or https://..."
        ));
    }
    let upstream = upstream
        .trim_end_matches('/')
        .trim_end_matches("/v1")
        .to_string();
    let list = |text: &str| -> Result<Vec<Fault>, String> {
        text.split(',')
            .filter(|n| !n.trim().is_empty())
            .map(|n| {
                Fault::parse(n, retry_after, hang_s).ok_or_else(|| {
                    format!(
                        "unknown fault `{}` (expected one of: {})",
                        n.trim(),
                        Fault::NAMES.join(", ")
                    )
                })
            })
            .collect()
    };
    let schedule = match schedule {
        Some(s) => {
            if faults.is_some() {
                return Err("--schedule and --faults exclude each other".into());
            }
            let s = list(&s)?;
            if s.is_empty() {
                return Err("--schedule is empty".into());
            }
            s
        }
        None => {
            let pool = match faults {
                Some(f) => list(&f)?,
                None => list(&Fault::NAMES[1..].join(","))?,
            };
            // Long enough that the cycle never shows in a benchmark.
            random_schedule(fail_rate, &pool, seed, 100_000)
        }
    };
    Ok(ProxyArgs {
        upstream,
        port,
        schedule,
    })
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("instant") => {
            let port = args.get(1).and_then(|p| p.parse().ok()).filter(|&p| p != 0);
            let label = args.get(2).map(String::as_str).unwrap_or("spam");
            let alternative = args.get(3).map(String::as_str).unwrap_or("ham");
            serve(
                distill_testkit::instant::InstantServer::start(port, label, alternative),
                |s| s.base_url(),
            );
        }
        Some("llama") => {
            let parallel = args.get(1).and_then(|p| p.parse().ok()).unwrap_or(4);
            serve(distill_testkit::llama::LlamaServer::start(parallel), |s| {
                s.base_url()
            });
        }
        Some("proxy") => {
            let rest = &args[1..];
            if rest.iter().any(|a| a == "-h" || a == "--help") {
                println!("{PROXY_USAGE}");
                return;
            }
            let p = parse_proxy(rest).unwrap_or_else(|e| fail(&e));
            serve(
                FaultProxy::start_on(p.port, &p.upstream, p.schedule),
                FaultProxy::base_url,
            );
        }
        Some("-h" | "--help" | "help") => println!("{USAGE}"),
        _ => {
            eprintln!("{USAGE}");
            std::process::exit(2);
        }
    }
}
