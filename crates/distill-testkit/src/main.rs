//! `distill-testkit`: servers for benchmarks.
//!
//! `distill-testkit instant [PORT]` serves an instant-answer OpenAI-compatible
//! endpoint until killed; `distill-testkit llama PARALLEL` starts llama-server
//! and prints its base URL, until killed (kill the process group: the server
//! is a child process).

use std::io::Write;

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
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(2);
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("instant") => {
            let port = args.get(1).and_then(|p| p.parse().ok());
            serve(
                distill_testkit::instant::InstantServer::start(port, "spam", "ham"),
                |s| s.base_url(),
            );
        }
        Some("llama") => {
            let parallel = args.get(1).and_then(|p| p.parse().ok()).unwrap_or(4);
            serve(distill_testkit::llama::LlamaServer::start(parallel), |s| {
                s.base_url()
            });
        }
        _ => {
            eprintln!("usage: distill-testkit instant [PORT] | llama [PARALLEL]");
            std::process::exit(2);
        }
    }
}
