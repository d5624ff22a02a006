//! The `distill-testkit` binary: the fault proxy command in front of the
//! instant server, as a user would put it in front of their own.

use distill_testkit::instant::InstantServer;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::Ordering;

fn testkit(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_distill-testkit"))
        .args(args)
        .output()
        .expect("run distill-testkit")
}

/// A proxy process, killed on drop.
struct Proxy {
    child: Child,
    base_url: String,
}

impl Proxy {
    fn start(args: &[&str]) -> Proxy {
        let mut child = Command::new(env!("CARGO_BIN_EXE_distill-testkit"))
            .arg("proxy")
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn proxy");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("read base URL");
        let base_url = line.trim().to_string();
        assert!(base_url.starts_with("http://127.0.0.1:"), "{base_url:?}");
        Proxy { child, base_url }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into()
}

/// POST one chat request; (status, body).
fn chat(agent: &ureq::Agent, base_url: &str) -> (u16, String) {
    let mut resp = agent
        .post(&format!("{base_url}/chat/completions"))
        .header("Content-Type", "application/json")
        .send(r#"{"model":"instant","messages":[{"role":"user","content":"hi"}]}"#)
        .expect("send");
    let status = resp.status().as_u16();
    (status, resp.body_mut().read_to_string().expect("body"))
}

#[test]
fn proxy_command_injects_seeded_faults_in_front_of_the_instant_server() {
    let server = InstantServer::start(None, "spam", "ham").expect("instant server");
    let proxy = Proxy::start(&[
        "--upstream",
        &server.base_url(), // a trailing /v1 is dropped
        "--fail-rate",
        "0.5",
        "--faults",
        "500,wrong-content-type",
        "--seed",
        "3",
    ]);
    let agent = agent();
    // Model listings pass through.
    let mut models = agent
        .get(&format!("{}/models", proxy.base_url))
        .call()
        .expect("models");
    assert_eq!(models.status().as_u16(), 200);
    assert!(
        models
            .body_mut()
            .read_to_string()
            .expect("body")
            .contains("instant")
    );

    let (mut passed, mut server_errors, mut html) = (0u64, 0u64, 0u64);
    let mut statuses = Vec::new();
    for _ in 0..60 {
        let (status, body) = chat(&agent, &proxy.base_url);
        statuses.push(status);
        match status {
            200 if body.starts_with('{') => {
                assert!(body.contains("\"content\":\"spam\""), "{body}");
                passed += 1;
            }
            200 => {
                assert!(body.contains("injected"), "{body}");
                html += 1;
            }
            500 => {
                assert!(body.contains("injected"), "{body}");
                server_errors += 1;
            }
            other => panic!("unexpected status {other}: {body}"),
        }
    }
    assert!(
        passed >= 15 && server_errors >= 5 && html >= 5,
        "{statuses:?}"
    );
    assert_eq!(
        server.requests.load(Ordering::Relaxed),
        passed,
        "only passes reach the server"
    );
    drop(proxy);

    // The same seed gives the same faults.
    let again = Proxy::start(&[
        "--upstream",
        &server.base_url(),
        "--fail-rate",
        "0.5",
        "--faults",
        "500,wrong-content-type",
        "--seed",
        "3",
    ]);
    let replay: Vec<u16> = (0..60).map(|_| chat(&agent, &again.base_url).0).collect();
    assert_eq!(replay, statuses);
}

#[test]
fn proxy_command_follows_a_fixed_schedule_and_explains_itself() {
    let server = InstantServer::start(None, "spam", "ham").expect("instant server");
    let proxy = Proxy::start(&[
        "--upstream",
        &format!("http://127.0.0.1:{}", server.port),
        "--schedule",
        "pass,429,500",
        "--retry-after",
        "2",
    ]);
    let agent = agent();
    let statuses: Vec<u16> = (0..6).map(|_| chat(&agent, &proxy.base_url).0).collect();
    assert_eq!(statuses, [200, 429, 500, 200, 429, 500]);
    let resp = agent
        .post(&format!("{}/chat/completions", proxy.base_url))
        .header("Content-Type", "application/json")
        .send("{}")
        .expect("send");
    assert_eq!(resp.status().as_u16(), 200);
    let resp = agent
        .post(&format!("{}/chat/completions", proxy.base_url))
        .send("{}")
        .expect("send");
    assert_eq!(resp.status().as_u16(), 429);
    assert_eq!(
        resp.headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok()),
        Some("2")
    );

    let help = testkit(&["proxy", "--help"]);
    assert!(help.status.success());
    let text = String::from_utf8_lossy(&help.stdout);
    for option in [
        "--upstream",
        "--fail-rate",
        "--seed",
        "--schedule",
        "--faults",
    ] {
        assert!(text.contains(option), "{option} missing from {text}");
    }
    assert!(testkit(&["--help"]).status.success());
    for (args, expect) in [
        (vec!["proxy"], "--upstream is required"),
        (
            vec!["proxy", "--upstream", "http://x", "--fail-rate", "2"],
            "expected a number in [0, 1]",
        ),
        (
            vec!["proxy", "--upstream", "http://x", "--faults", "boom"],
            "unknown fault `boom`",
        ),
        (vec!["proxy", "--upstream", "ftp://x"], "expected http://"),
    ] {
        let out = testkit(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(expect), "{args:?}: {err}");
    }
}
