//! `distill serve`: the real server on 127.0.0.1 with a real bundle, the
//! instant OpenAI-compatible upstream from distill-testkit, and the fault
//! proxy in front of it.

use super::{last_line_path, ok, repo};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

pub(crate) fn s(p: &Path) -> String {
    p.to_str().expect("utf8").to_string()
}

/// A served `distill serve`; killed on drop. Its stderr (the request log)
/// is drained into `log` so the pipe never fills.
pub(crate) struct Server {
    pub(crate) child: Child,
    pub(crate) base: String,
    pub(crate) log: std::sync::Arc<std::sync::Mutex<String>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn serve(config: &Path, sets: &[&str]) -> Server {
    serve_env(config, sets, &[])
}

pub(crate) fn serve_env(config: &Path, sets: &[&str], env: &[(&str, &str)]) -> Server {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_distill"));
    cmd.args(["serve", &s(config), "--port", "0"]);
    for set in sets {
        cmd.args(["--set", set]);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd
        .current_dir(repo())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn distill serve");
    let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let sink = std::sync::Arc::clone(&log);
    let stderr = child.stderr.take().expect("stderr");
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let mut s = sink.lock().unwrap_or_else(|p| p.into_inner());
            s.push_str(&line);
            s.push('\n');
        }
    });
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("read address");
    if line.trim().is_empty() {
        let _ = child.wait();
        std::thread::sleep(std::time::Duration::from_millis(200));
        panic!(
            "distill serve did not start: {}",
            log.lock().unwrap_or_else(|p| p.into_inner())
        );
    }
    Server {
        child,
        base: line.trim().to_string(),
        log,
    }
}

pub(crate) fn post(base: &str, path: &str, body: &[u8]) -> (u16, Value, Option<String>) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let mut r = agent
        .post(&format!("{base}{path}"))
        .header("Content-Type", "application/json")
        .send(body)
        .expect("request");
    let tier = r
        .headers()
        .get("x-distill-tier")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let status = r.status().as_u16();
    let text = r.body_mut().read_to_string().unwrap_or_default();
    let v = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, v, tier)
}

pub(crate) fn get(base: &str, path: &str) -> (u16, String) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let mut r = agent.get(&format!("{base}{path}")).call().expect("request");
    (
        r.status().as_u16(),
        r.body_mut().read_to_string().unwrap_or_default(),
    )
}

/// An sms_spam bag bundle (trained behind the default curation: PII placeholders).
fn bundle(tmp: &Path) -> PathBuf {
    let run = last_line_path(&ok(&[
        "train",
        "configs/exp/sms_spam-bag.toml",
        "--experiments",
        &s(&tmp.join("exp")),
    ]));
    last_line_path(&ok(&["export", &s(&run), "--format", "burn"]))
}

fn config(tmp: &Path, bundle: &Path, upstream_port: u16, log: &Path) -> PathBuf {
    let path = tmp.join("serve.toml");
    std::fs::write(
        &path,
        format!(
            "[[tiers]]\nbundle = \"{}\"\nthreshold = 0.97\n\n[upstream]\nbase-url = \"http://127.0.0.1:{upstream_port}/v1\"\nmodel = \"instant\"\nmax-tokens = 2\nmax-retries = 2\nbackoff-initial-ms = 5\nbackoff-max-ms = 10\ncache = false\n\n[log]\ndir = \"{}\"\n",
            s(bundle),
            s(log)
        ),
    )
    .expect("write config");
    path
}

/// A trained bundle, the instant upstream answering `spam`, and a serve
/// config over both with an escalation log.
fn setup() -> (
    tempfile::TempDir,
    PathBuf,
    distill_testkit::instant::InstantServer,
    PathBuf,
    PathBuf,
) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let bundle = bundle(tmp.path());
    let upstream = distill_testkit::instant::InstantServer::start(None, "spam", "ham")
        .expect("instant upstream");
    let log = tmp.path().join("escalations");
    let cfg = config(tmp.path(), &bundle, upstream.port, &log);
    (tmp, bundle, upstream, log, cfg)
}

#[test]
fn the_cascade_answers_locally_escalates_the_rest_and_logs_teacher_data() {
    let (_tmp, _bundle, upstream, log, cfg) = setup();
    let server = serve(&cfg, &[]);
    let base = &server.base;

    assert_eq!(get(base, "/health"), (200, "ok\n".to_string()));
    let (code, ready) = get(base, "/ready");
    assert_eq!(code, 200, "{ready}");

    // A clear ham text stays local; the answer says which tier and model.
    let (code, v, tier) = post(
        base,
        "/v1/classify",
        br#"{"text": "see you at dinner tonight, love you"}"#,
    );
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["tier"], "local-0", "{v}");
    assert_eq!(tier.as_deref(), Some("local-0"));
    assert_eq!(v["escalated"], false);
    assert_eq!(v["label"], "ham");
    assert!(v["confidence"].as_f64().expect("confidence") >= 0.97);
    assert_eq!(v["bundle_sha256"].as_str().map(str::len), Some(64));

    // With the threshold above every confidence, everything escalates to the
    // upstream, whose answer (and soft label) comes back and is logged.
    drop(server);
    let server = serve(&cfg, &["tiers.0.threshold=1.0"]);
    let base = &server.base;
    let phone = "WINNER!! call 07700 900123 now to claim your prize";
    let (code, v, tier) = post(
        base,
        "/v1/classify",
        json!({"text": phone}).to_string().as_bytes(),
    );
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["tier"], "upstream", "{v}");
    assert_eq!(tier.as_deref(), Some("upstream"));
    assert_eq!(v["escalated"], true);
    assert_eq!(v["reason"], "low-confidence");
    assert_eq!(v["label"], "spam");
    assert!(
        (v["confidence"].as_f64().expect("conf") - 0.9).abs() < 0.01,
        "{v}"
    );
    // The decision endpoint says where a text would go, without answering.
    let requests_before = upstream.requests.load(std::sync::atomic::Ordering::Relaxed);
    let (code, d, _) = post(
        base,
        "/v1/decision",
        br#"{"texts": ["hello", "free prize"]}"#,
    );
    assert_eq!(code, 200);
    assert_eq!(d["results"][0]["tier"], "upstream");
    assert_eq!(
        upstream.requests.load(std::sync::atomic::Ordering::Relaxed),
        requests_before,
        "decision never calls the upstream"
    );
    // OpenAI-compatible chat, plain and streamed.
    let chat = json!({"model": "any", "messages": [{"role": "system", "content": "x"}, {"role": "user", "content": "is this spam? free entry"}]});
    let (code, c, tier) = post(base, "/v1/chat/completions", chat.to_string().as_bytes());
    assert_eq!(code, 200, "{c}");
    assert_eq!(tier.as_deref(), Some("upstream"));
    assert_eq!(c["object"], "chat.completion");
    assert_eq!(c["choices"][0]["message"]["content"], "spam");
    assert_eq!(c["distill"]["tier"], "upstream");
    let mut streamed = chat.clone();
    streamed["stream"] = json!(true);
    let (code, body, _) = post(
        base,
        "/v1/chat/completions",
        streamed.to_string().as_bytes(),
    );
    assert_eq!(code, 200);
    let body = body.as_str().expect("event stream").to_string();
    assert!(body.starts_with("data: {"), "{body}");
    assert!(body.trim_end().ends_with("data: [DONE]"), "{body}");
    assert!(body.contains("\"content\":\"spam\""), "{body}");

    // Bad input: clear 4xx, never a crash.
    assert_eq!(post(base, "/v1/classify", b"{not json").0, 400);
    assert_eq!(post(base, "/v1/classify", br#"{"txt": "x"}"#).0, 400);
    assert_eq!(post(base, "/v1/classify", b"\xff\xfe").0, 400);
    // A 10 MB body is refused from its declared length, before it is read
    // (the server answers 413 and closes; a client still writing it would
    // see a broken pipe, so the test sends only the headers).
    {
        use std::io::{Read, Write};
        let addr = base.trim_start_matches("http://");
        let mut conn = std::net::TcpStream::connect(addr).expect("connect");
        conn.set_read_timeout(Some(std::time::Duration::from_secs(20)))
            .expect("timeout");
        write!(
            conn,
            "POST /v1/classify HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            10 << 20
        )
        .expect("headers");
        let mut head = [0u8; 12];
        conn.read_exact(&mut head).expect("status line");
        assert_eq!(&head, b"HTTP/1.1 413", "{}", String::from_utf8_lossy(&head));
    }
    assert_eq!(
        post(base, "/v1/chat/completions", br#"{"messages": []}"#).0,
        400
    );
    assert_eq!(get(base, "/health").0, 200, "still serving");

    // Metrics: answers by tier, escalations by reason, upstream attempts.
    let (code, m) = get(base, "/metrics");
    assert_eq!(code, 200);
    assert!(
        m.contains("distill_serve_requests_total{tier=\"upstream\",outcome=\"ok\"} 3"),
        "{m}"
    );
    assert!(
        m.contains("distill_serve_escalations_total{reason=\"low-confidence\"} 3"),
        "{m}"
    );
    assert!(
        m.contains("distill_serve_local_inference_seconds_bucket{le=\"0.0001\"}"),
        "{m}"
    );

    // SIGTERM: drains, flushes, exits 0.
    let pid = server.child.id();
    let st = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .expect("kill");
    assert!(st.success());
    let mut server = server;
    let status = server.child.wait().expect("wait");
    assert!(status.success(), "{status:?}");

    // The escalation log is a teacher log: the one reader reads it, the
    // record ids are the redacted texts' ids, and the texts carry no PII.
    let contents =
        distill_core::teacher_log::read_log_lines(&log.join("logs.jsonl")).expect("teacher log");
    assert_eq!(contents.records.len(), 2, "two distinct escalated texts");
    assert_eq!(
        contents.lines.len(),
        2,
        "a text escalated twice is logged once"
    );
    assert!(contents.partial.is_none());
    let texts = std::fs::read_to_string(log.join("texts.jsonl")).expect("texts");
    assert!(!texts.contains("07700"), "PII left the device: {texts}");
    assert!(texts.contains("<PHONE>"), "{texts}");
    for line in texts.lines() {
        let v: Value = serde_json::from_str(line).expect("json");
        let id = distill_core::hash::content_id(v["text"].as_str().expect("text"));
        assert!(contents.records.iter().any(|r| r.id == id));
    }
    for r in &contents.records {
        assert_eq!(r.label.as_deref(), Some("spam"));
        assert!(
            r.probs.is_some(),
            "soft labels from the upstream's logprobs"
        );
    }
}

#[test]
fn upstream_failures_degrade_to_the_local_answer_or_502() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let bundle = bundle(tmp.path());
    // Nothing listens on this port: every upstream call fails to connect.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = dead.local_addr().expect("addr").port();
    drop(dead);
    let log = tmp.path().join("esc");
    let cfg = config(tmp.path(), &bundle, port, &log);
    let preflight_off = "upstream.preflight=false";
    let server = serve(&cfg, &["tiers.0.threshold=1.0", preflight_off]);
    let (code, v, _) = post(&server.base, "/v1/classify", br#"{"text": "free prize"}"#);
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["degraded"], true, "{v}");
    assert_eq!(v["tier"], "local-0");
    drop(server);
    let server = serve(
        &cfg,
        &[
            "tiers.0.threshold=1.0",
            preflight_off,
            "on-upstream-error=\"error\"",
        ],
    );
    let (code, v, _) = post(&server.base, "/v1/classify", br#"{"text": "free prize"}"#);
    assert_eq!(code, 502, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .expect("message")
            .contains("connect"),
        "{v}"
    );
    // A bad config is refused before serving, exit 2.
    let o = Command::new(env!("CARGO_BIN_EXE_distill"))
        .args(["serve", &s(&cfg), "--set", "tiers.0.threshold=2"])
        .current_dir(repo())
        .output()
        .expect("run");
    assert_eq!(o.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("threshold"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn reload_swaps_verified_bundles_and_keeps_the_old_ones_on_failure_and_sigkill_loses_no_line() {
    let (_tmp, bundle, _upstream, log, cfg) = setup();
    let mut server = serve(&cfg, &["tiers.0.threshold=1.0"]);
    let base = server.base.clone();
    let (code, v, _) = post(&base, "/admin/reload", b"");
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["reloaded"], 1);
    // A tampered bundle is refused on reload; the loaded one keeps serving.
    let w = bundle.join("weights.bpk");
    let good = std::fs::read(&w).expect("read");
    std::fs::write(&w, &good[..good.len() / 2]).expect("truncate");
    let (code, v, _) = post(&base, "/admin/reload", b"");
    assert_eq!(code, 422, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .expect("message")
            .contains("sha256 mismatch"),
        "{v}"
    );
    for i in 0..5 {
        let (code, v, _) = post(
            &base,
            "/v1/classify",
            json!({"text": format!("prize draw {i}")})
                .to_string()
                .as_bytes(),
        );
        assert_eq!(code, 200, "{v}");
        assert_eq!(v["tier"], "upstream");
    }
    std::fs::write(&w, &good).expect("restore");
    // A second server on the same escalation log is refused at once, and
    // the first keeps serving.
    let o = Command::new(env!("CARGO_BIN_EXE_distill"))
        .args(["serve", &s(&cfg), "--port", "0"])
        .current_dir(repo())
        .output()
        .expect("second server");
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("is being written by distill serve"), "{err}");
    assert_eq!(get(&base, "/health").0, 200);
    // SIGKILL: the log keeps every record written, with no partial line,
    // and a restarted server appends to it.
    let pid = server.child.id();
    let st = Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .expect("kill");
    assert!(st.success());
    let _ = server.child.wait();
    let contents =
        distill_core::teacher_log::read_log_lines(&log.join("logs.jsonl")).expect("teacher log");
    assert_eq!(contents.records.len(), 5);
    assert!(contents.partial.is_none());
    let server = serve(&cfg, &["tiers.0.threshold=1.0"]);
    let (code, _, _) = post(
        &server.base,
        "/v1/classify",
        br#"{"text": "one more prize"}"#,
    );
    assert_eq!(code, 200);
    drop(server);
    let contents =
        distill_core::teacher_log::read_log_lines(&log.join("logs.jsonl")).expect("teacher log");
    assert_eq!(contents.records.len(), 6);
}

/// The sum of a Prometheus counter family's samples whose labels contain `filter`.
fn counter(metrics: &str, name: &str, filter: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| l.starts_with(name) && l.contains(filter))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[test]
fn upstream_faults_are_retried_with_exact_accounting_and_a_cooldown_follows_repeated_failure() {
    use distill_testkit::proxy::{Fault, FaultProxy};
    let (tmp, _bundle, upstream, log, cfg) = setup();
    // Chat request n gets schedule[n]: every fault once, each followed by a pass.
    let faults = [
        Fault::RateLimit { retry_after_s: 1 },
        Fault::ServerError,
        Fault::Hang { secs: 3.0 },
        Fault::Truncate,
        Fault::InvalidJson,
    ];
    let schedule: Vec<Fault> = faults.iter().flat_map(|f| [*f, Fault::Pass]).collect();
    let proxy =
        FaultProxy::start(&format!("http://127.0.0.1:{}", upstream.port), schedule).expect("proxy");
    let server = serve(
        &cfg,
        &[
            "tiers.0.threshold=1.0",
            &format!("upstream.base-url=\"{}\"", proxy.base_url()),
            "upstream.timeout-s=1",
            "upstream.preflight=false",
        ],
    );
    let t0 = std::time::Instant::now();
    for i in 0..faults.len() {
        let (code, v, _) = post(
            &server.base,
            "/v1/classify",
            json!({"text": format!("fault case {i}")})
                .to_string()
                .as_bytes(),
        );
        assert_eq!(code, 200, "{v}");
        assert_eq!(
            v["tier"], "upstream",
            "case {i}: retried past the fault: {v}"
        );
        assert_eq!(v["degraded"], false);
        if i == 0 {
            assert!(
                t0.elapsed().as_secs_f64() >= 1.0,
                "Retry-After: 1 was honoured"
            );
        }
    }
    let (_, m) = get(&server.base, "/metrics");
    let attempts = "distill_serve_upstream_attempts_total";
    assert_eq!(counter(&m, attempts, "status=\"ok\""), 5.0, "{m}");
    assert_eq!(
        counter(&m, attempts, ""),
        10.0,
        "one fault + one pass each: {m}"
    );
    assert_eq!(counter(&m, attempts, "status=\"http-429\""), 1.0, "{m}");
    assert_eq!(counter(&m, attempts, "status=\"http-500\""), 1.0, "{m}");
    assert_eq!(
        proxy
            .stats
            .chat_requests
            .load(std::sync::atomic::Ordering::SeqCst),
        10
    );
    assert_eq!(
        proxy.stats.faults.load(std::sync::atomic::Ordering::SeqCst),
        5
    );
    assert_eq!(
        counter(
            &m,
            "distill_serve_requests_total",
            "tier=\"upstream\",outcome=\"ok\""
        ),
        5.0
    );
    drop(server);
    let contents = distill_core::teacher_log::read_log_lines(&log.join("logs.jsonl")).expect("log");
    assert_eq!(contents.records.len(), 5);
    assert!(contents.records.iter().all(|r| !r.failed()));

    // Every call fails (500, retried twice): after two failed requests the
    // upstream cools down and the third is answered locally at once.
    proxy.set_schedule(vec![Fault::ServerError]);
    let server = serve(
        &cfg,
        &[
            "tiers.0.threshold=1.0",
            &format!("upstream.base-url=\"{}\"", proxy.base_url()),
            "upstream.preflight=false",
            "cooldown-after=2",
            "cooldown-s=1.5",
        ],
    );
    let down = |i: usize| {
        let (code, v, _) = post(
            &server.base,
            "/v1/classify",
            json!({"text": format!("down {i}")}).to_string().as_bytes(),
        );
        assert_eq!(code, 200, "{v}");
        assert_eq!(v["degraded"], true, "{v}");
    };
    (0..3).for_each(down);
    let (_, m) = get(&server.base, "/metrics");
    assert_eq!(
        counter(&m, attempts, "status=\"http-500\""),
        6.0,
        "2 requests x 3 attempts: {m}"
    );
    assert_eq!(
        counter(&m, "distill_serve_upstream_cooldowns_total", ""),
        1.0,
        "{m}"
    );
    assert_eq!(
        counter(&m, "distill_serve_upstream_cooldown_skips_total", ""),
        1.0,
        "{m}"
    );
    // After the cooldown one probe goes through; it fails: another cooldown.
    std::thread::sleep(std::time::Duration::from_millis(1700));
    (3..5).for_each(down);
    let (_, m) = get(&server.base, "/metrics");
    assert_eq!(
        counter(&m, attempts, "status=\"http-500\""),
        9.0,
        "one probe: {m}"
    );
    assert_eq!(
        counter(&m, "distill_serve_upstream_cooldowns_total", ""),
        2.0,
        "{m}"
    );
    assert_eq!(
        counter(&m, "distill_serve_upstream_cooldown_skips_total", ""),
        2.0,
        "{m}"
    );
    drop(server);
    drop(tmp);
}

#[test]
fn the_official_openai_client_works_streaming_and_not_on_both_tiers() {
    let (tmp, _bundle, _upstream, _log, cfg) = setup();
    let py = Command::new("bash")
        .arg(repo().join("scripts/install-openai-client.sh"))
        .output()
        .expect("install the openai client");
    assert!(
        py.status.success(),
        "{}",
        String::from_utf8_lossy(&py.stderr)
    );
    let python = String::from_utf8_lossy(&py.stdout).trim().to_string();
    let script = tmp.path().join("client.py");
    std::fs::write(
        &script,
        r#"
import json, sys
from openai import OpenAI
client = OpenAI(base_url=sys.argv[1] + "/v1", api_key="sk-unused-by-distill-0000", max_retries=0)
msgs = [{"role": "system", "content": "Label the SMS."},
        {"role": "user", "content": "see you at dinner tonight, love you"}]
raw = client.chat.completions.with_raw_response.create(
    model="distill", messages=msgs, logprobs=True, top_logprobs=2)
r = raw.parse()
lp = r.choices[0].logprobs
out = {
    "content": r.choices[0].message.content,
    "tier_header": raw.headers.get("x-distill-tier"),
    "distill": r.to_dict().get("distill"),
    "top_logprobs": [t.token for t in lp.content[0].top_logprobs] if lp and lp.content else None,
}
chunks = list(client.chat.completions.create(model="distill", messages=msgs, stream=True))
out["streamed"] = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
out["finish"] = [c.choices[0].finish_reason for c in chunks if c.choices][-1]
out["models"] = [m.id for m in client.models.list().data]
print(json.dumps(out))
"#,
    )
    .expect("script");
    let run = |base: &str| -> Value {
        let o = Command::new(&python)
            .arg(&script)
            .arg(base)
            .output()
            .expect("python");
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        serde_json::from_slice(&o.stdout).expect("json")
    };
    // Everything local (threshold 0): the label is the assistant's content.
    let server = serve(&cfg, &["tiers.0.threshold=0.0"]);
    let v = run(&server.base);
    assert_eq!(v["content"], "ham", "{v}");
    assert_eq!(v["tier_header"], "local-0", "{v}");
    assert_eq!(v["distill"]["tier"], "local-0", "{v}");
    assert_eq!(v["top_logprobs"][0], "ham", "{v}");
    assert_eq!(v["streamed"], "ham", "{v}");
    assert_eq!(v["finish"], "stop", "{v}");
    assert_eq!(v["models"].as_array().map(Vec::len), Some(2), "{v}");
    drop(server);
    // Everything escalated (threshold 1): the upstream's answer comes back.
    let server = serve(&cfg, &["tiers.0.threshold=1.0"]);
    let v = run(&server.base);
    assert_eq!(v["content"], "spam", "{v}");
    assert_eq!(v["tier_header"], "upstream", "{v}");
    assert_eq!(v["distill"]["escalated"], true, "{v}");
    assert_eq!(v["streamed"], "spam", "{v}");
}

#[test]
fn reload_under_load_fails_no_request_and_the_token_guards_inference_and_admin() {
    let (tmp, bundle, _upstream, _log, cfg) = setup();
    let token = "s3cret-token-for-the-test-0123";
    let server = serve_env(
        &cfg,
        &["auth-token-env=\"DISTILL_TEST_TOKEN\""],
        &[("DISTILL_TEST_TOKEN", token)],
    );
    let base = server.base.clone();
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let call = |agent: &ureq::Agent, path: &str, auth: Option<&str>, body: &str| -> u16 {
        let mut req = agent.post(&format!("{base}{path}"));
        if let Some(a) = auth {
            req = req.header("Authorization", &format!("Bearer {a}"));
        }
        req.header("Content-Type", "application/json")
            .send(body.as_bytes())
            .expect("request")
            .status()
            .as_u16()
    };
    let one = r#"{"text": "free prize, call now"}"#;
    assert_eq!(call(&agent, "/v1/classify", None, one), 401);
    assert_eq!(
        call(
            &agent,
            "/v1/classify",
            Some("wrong-token-wrong-token-00"),
            one
        ),
        401
    );
    assert_eq!(call(&agent, "/admin/reload", None, ""), 401);
    assert_eq!(call(&agent, "/v1/classify", Some(token), one), 200);
    assert_eq!(get(&base, "/health").0, 200, "probes stay open");

    // Four clients send requests (150 each at least) for as long as the
    // bundle is re-exported in place and reloaded (HTTP and SIGHUP), six
    // times: none fails.
    let failures = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let done = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let clients: Vec<_> = (0..4)
        .map(|c| {
            let (failures, done, stop) = (failures.clone(), done.clone(), stop.clone());
            let base = base.clone();
            std::thread::spawn(move || {
                let agent: ureq::Agent = ureq::Agent::config_builder()
                    .http_status_as_error(false)
                    .build()
                    .into();
                for i in 0.. {
                    if i >= 150 && stop.load(std::sync::atomic::Ordering::SeqCst) {
                        break;
                    }
                    let body =
                        json!({"text": format!("client {c} message {i}: are you free tonight?")});
                    let status = agent
                        .post(&format!("{base}/v1/classify"))
                        .header("Authorization", &format!("Bearer {token}"))
                        .send(body.to_string().as_bytes())
                        .map(|r| r.status().as_u16())
                        .unwrap_or(0);
                    if status != 200 {
                        failures.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    }
                    done.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                }
            })
        })
        .collect();
    let run = bundle
        .parent()
        .and_then(Path::parent)
        .expect("the run holds the bundle")
        .to_path_buf();
    let mut reloads = 0;
    while reloads < 6 {
        if reloads % 3 == 0 {
            ok(&["export", &s(&run), "--format", "burn", "--out", &s(&bundle)]);
        }
        if reloads % 2 == 0 {
            assert_eq!(call(&agent, "/admin/reload", Some(token), ""), 200);
        } else {
            let st = Command::new("kill")
                .args(["-HUP", &server.child.id().to_string()])
                .status()
                .expect("kill");
            assert!(st.success());
        }
        reloads += 1;
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    for c in clients {
        c.join().expect("client");
    }
    let done = done.load(std::sync::atomic::Ordering::SeqCst);
    assert!(done >= 600, "{done} requests");
    assert_eq!(
        failures.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "after {reloads} reloads"
    );
    // The request log: one JSON line per request, ids not texts, no token.
    std::thread::sleep(std::time::Duration::from_millis(200));
    let log = server.log.lock().unwrap_or_else(|p| p.into_inner()).clone();
    assert!(!log.contains(token), "the token leaked into the log");
    assert!(
        !log.contains("are you free tonight"),
        "a text leaked into the log"
    );
    let lines: Vec<Value> = log
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["path"] == "/v1/classify")
        .collect();
    assert_eq!(
        lines.len() as u64,
        3 + done,
        "one line per request (2 refused, 1 + {done} answered)"
    );
    assert!(
        lines
            .iter()
            .all(|l| l["request_id"].is_string() && l["ms"].is_number())
    );
    assert_eq!(lines.iter().filter(|l| l["status"] == 401).count(), 2);
    assert!(
        lines
            .iter()
            .any(|l| l["text_ids"][0].as_str().map(str::len) == Some(24)),
        "{:?}",
        lines.last()
    );
    drop(tmp);
}

#[test]
fn the_documented_config_serves_against_the_real_llama_server_teacher() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let bundle = bundle(tmp.path());
    let llama = distill_testkit::llama::LlamaServer::start(1).unwrap_or_else(|e| panic!("{e}"));
    let log = tmp.path().join("escalations");
    // configs/serve/sms_spam.toml as documented; only where things are differs.
    let server = serve(
        &repo().join("configs/serve/sms_spam.toml"),
        &[
            &format!("tiers.0.bundle=\"{}\"", s(&bundle)),
            "tiers.0.threshold=1.0",
            &format!("upstream.base-url=\"{}\"", llama.base_url()),
            &format!("log.dir=\"{}\"", s(&log)),
        ],
    );
    let texts = [
        "WINNER!! You have won a 1000 cash prize. Call now to claim",
        "Ok lar, see you at home later",
        "URGENT your mobile number has been awarded a free holiday, text CLAIM",
    ];
    for t in texts {
        let (code, v, tier) = post(
            &server.base,
            "/v1/classify",
            json!({ "text": t }).to_string().as_bytes(),
        );
        assert_eq!(code, 200, "{v}");
        // SmolLM2 answers a label (tier upstream) or, when its answer names
        // none, the local answer is served flagged degraded.
        let upstream = v["tier"] == "upstream";
        assert!(upstream || v["degraded"] == true, "{v}");
        assert_eq!(tier.as_deref(), v["tier"].as_str());
        assert!(
            ["ham", "spam"].contains(&v["label"].as_str().unwrap_or("")),
            "{v}"
        );
    }
    let (_, m) = get(&server.base, "/metrics");
    assert_eq!(
        counter(&m, "distill_serve_escalations_total", ""),
        3.0,
        "{m}"
    );
    drop(server);
    let contents = distill_core::teacher_log::read_log_lines(&log.join("logs.jsonl")).expect("log");
    assert_eq!(contents.records.len(), 3);
    for r in &contents.records {
        assert!(r.output.is_some(), "the model's raw answer is kept: {r:?}");
        assert_eq!(r.teacher.model, "smollm2-135m");
    }
}

#[test]
fn sigterm_with_requests_in_flight_fails_none_and_the_log_is_complete() {
    use distill_testkit::proxy::{Fault, FaultProxy};
    let (_tmp, _bundle, upstream, log, cfg) = setup();
    // A slow but healthy upstream: every answer takes 2.5 s.
    let proxy = FaultProxy::start(
        &format!("http://127.0.0.1:{}", upstream.port),
        vec![Fault::Delay { secs: 2.5 }],
    )
    .expect("proxy");
    let mut server = serve(
        &cfg,
        &[
            &format!("upstream.base-url=\"{}\"", proxy.base_url()),
            "upstream.preflight=false",
        ],
    );
    let base = server.base.clone();
    // A confident text stays local unless the client forces the upstream.
    let (code, v, _) = post(
        &base,
        "/v1/decision",
        br#"{"text": "see you at dinner tonight, love you", "escalate": true}"#,
    );
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["tier"], "upstream", "{v}");
    assert_eq!(v["reason"], "forced", "{v}");
    assert_eq!(
        post(&base, "/v1/classify", br#"{"text": "x", "escalate": 1}"#).0,
        400
    );
    let clients: Vec<_> = (0..6)
        .map(|i| {
            let base = base.clone();
            std::thread::spawn(move || {
                post(
                    &base,
                    "/v1/classify",
                    json!({"text": format!("in flight {i}"), "escalate": true})
                        .to_string()
                        .as_bytes(),
                )
            })
        })
        .collect();
    std::thread::sleep(std::time::Duration::from_millis(1000));
    let st = Command::new("kill")
        .args(["-TERM", &server.child.id().to_string()])
        .status()
        .expect("kill");
    assert!(st.success());
    for c in clients {
        let (code, v, _) = c.join().expect("client");
        assert_eq!(code, 200, "{v}");
        assert_eq!(v["tier"], "upstream", "{v}");
    }
    let status = server.child.wait().expect("wait");
    assert!(status.success(), "{status:?}");
    let contents = distill_core::teacher_log::read_log_lines(&log.join("logs.jsonl")).expect("log");
    assert_eq!(
        contents.records.len(),
        6,
        "every answered escalation is logged"
    );
    assert!(contents.partial.is_none());
    let stderr = server.log.lock().unwrap_or_else(|p| p.into_inner()).clone();
    assert_eq!(
        stderr
            .lines()
            .filter(|l| l.contains("\"path\":\"/v1/classify\""))
            .count(),
        7,
        "the request log is flushed on shutdown: {stderr}"
    );
}

/// At most `max-upstream-concurrency` escalations wait on a slow upstream;
/// the rest are answered at once (degraded), so a hung upstream cannot take
/// every request slot from the local tiers.
#[test]
fn escalations_beyond_the_upstream_slots_are_answered_at_once() {
    use distill_testkit::proxy::{Fault, FaultProxy};
    let (_tmp, _bundle, upstream, _log, cfg) = setup();
    let proxy = FaultProxy::start(
        &format!("http://127.0.0.1:{}", upstream.port),
        vec![Fault::Delay { secs: 3.0 }],
    )
    .expect("proxy");
    let server = serve(
        &cfg,
        &[
            &format!("upstream.base-url=\"{}\"", proxy.base_url()),
            "upstream.preflight=false",
            "max-upstream-concurrency=1",
        ],
    );
    let base = server.base.clone();
    let slow = std::thread::spawn(move || {
        post(
            &base,
            "/v1/classify",
            br#"{"text": "slow one", "escalate": true}"#,
        )
    });
    std::thread::sleep(std::time::Duration::from_millis(1000));
    let t0 = std::time::Instant::now();
    let (code, v, _) = post(
        &server.base,
        "/v1/classify",
        br#"{"text": "another one", "escalate": true}"#,
    );
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["degraded"], true, "{v}");
    assert!(
        t0.elapsed().as_secs_f64() < 1.5,
        "answered at once, not after the 3 s upstream"
    );
    let (code, v, _) = slow.join().expect("slow");
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["tier"], "upstream", "{v}");
    let (_, m) = get(&server.base, "/metrics");
    assert_eq!(
        counter(&m, "distill_serve_upstream_saturated_total", ""),
        1.0,
        "{m}"
    );
}
