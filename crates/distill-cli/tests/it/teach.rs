//! `distill teach` against the real llama.cpp `llama-server` (SmolLM2-135M,
//! installed by scripts/install-teachers.sh), through a fault-injecting
//! proxy, from production logs, and from a local trained run. SmolLM2-135M is
//! near chance on real tasks: these tests check the plumbing, not accuracy.

use super::{distill, jsonl, ok, repo, stderr};
use distill_testkit::llama::{ALIAS, LlamaServer};
use distill_testkit::proxy::{Fault, FaultProxy};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

const SMS: &str = "configs/teacher/sms_spam-smollm2.toml";

fn server(parallel: usize) -> LlamaServer {
    LlamaServer::start(parallel).unwrap_or_else(|e| panic!("{e}"))
}

fn s(p: &Path) -> String {
    p.to_str().expect("utf8").to_string()
}

/// `distill teach` args with --out and --set overrides.
fn teach_args(config: &str, out: &Path, sets: &[String]) -> Vec<String> {
    let mut args = vec![
        "teach".to_string(),
        config.to_string(),
        "--out".into(),
        s(out),
    ];
    for set in sets {
        args.push("--set".into());
        args.push(set.clone());
    }
    args
}

fn teach(config: &str, out: &Path, sets: &[String]) -> std::process::Output {
    let args = teach_args(config, out, sets);
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    distill(&refs)
}

fn teach_ok(config: &str, out: &Path, sets: &[String]) -> Value {
    let o = teach(config, out, sets);
    assert!(o.status.success(), "teach failed: {}", stderr(&o));
    manifest(out)
}

fn manifest(out: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(out.join("teacher.json")).expect("teacher.json"))
        .expect("json")
}

/// A teach config over sms_spam (default curation) with this `[teacher]` body.
fn sms_config(dir: &Path, name: &str, teacher: &str) -> String {
    let path = dir.join(name);
    std::fs::write(
        &path,
        format!(
            "dataset = \"{}\"\ncurate = \"{}\"\n[teacher]\n{teacher}",
            s(&repo().join("configs/data/sms_spam.toml")),
            s(&repo().join("configs/curate/default.toml")),
        ),
    )
    .expect("write config");
    s(&path)
}

fn base_sets(base_url: &str, cache: &Path) -> Vec<String> {
    vec![
        format!("teacher.base-url=\"{base_url}\""),
        format!("teacher.cache-dir=\"{}\"", s(cache)),
    ]
}

fn with(mut sets: Vec<String>, more: &[&str]) -> Vec<String> {
    sets.extend(more.iter().map(|m| m.to_string()));
    sets
}

fn ids(records: &[Value]) -> Vec<String> {
    records
        .iter()
        .map(|r| r["id"].as_str().expect("id").to_string())
        .collect()
}

fn assert_unique(records: &[Value], n: usize) {
    let set: BTreeSet<String> = ids(records).into_iter().collect();
    assert_eq!(records.len(), n, "one record per row");
    assert_eq!(set.len(), n, "no duplicate ids");
}

#[test]
fn llm_teacher_soft_labels_cache_rerun_and_log_import() {
    let llama = server(2);
    let tmp = tempfile::tempdir().expect("tempdir");
    let cache = tmp.path().join("cache");
    let a = tmp.path().join("a");
    let sets = with(
        base_sets(&llama.base_url(), &cache),
        &["limit=12", "teacher.concurrency=2"],
    );
    let m = teach_ok(SMS, &a, &sets);
    assert_eq!(m["status"], "completed");
    assert_eq!(m["teacher"]["model"], ALIAS);
    assert_eq!(m["rows"], 12);
    let c = &m["counts"];
    assert_eq!(c["records"], 12);
    assert_eq!(c["cached"], 0);
    assert_eq!(
        c["requests"].as_u64().expect("n"),
        12 + c["retries"].as_u64().expect("n")
    );
    assert!(c["prompt_tokens"].as_u64().expect("n") > 12 * 20);
    assert!(c["cost"].as_f64().expect("cost") > 0.0);

    let records = jsonl(&a.join("logs.jsonl"));
    assert_unique(&records, 12);
    let mut with_logprobs = 0;
    for r in &records {
        assert_eq!(r["teacher"]["kind"], "openai");
        assert!(r["output"].is_string());
        assert!(r["usage"]["prompt_tokens"].as_u64().expect("n") > 20);
        assert!(r["usage"]["completion_tokens"].as_u64().expect("n") >= 1);
        assert!(r["latency_ms"].as_f64().expect("ms") > 0.0);
        if let Some(probs) = r["probs"].as_object() {
            let keys: BTreeSet<&str> = probs.keys().map(String::as_str).collect();
            assert_eq!(keys, BTreeSet::from(["ham", "spam"]));
            let sum: f64 = probs.values().map(|p| p.as_f64().expect("p")).sum();
            assert!((sum - 1.0).abs() < 1e-9, "probs sum to {sum}");
            let cov = r["coverage"].as_f64().expect("coverage");
            assert!((0.0..=1.0).contains(&cov) && cov > 0.0, "coverage {cov}");
            with_logprobs += usize::from(r["probs_source"] == "logprobs");
        } else {
            assert_eq!(r["error"]["kind"], "parse", "{r}");
        }
    }
    assert!(with_logprobs > 0, "soft labels from logprobs: {records:?}");

    // Same setup into a fresh directory: every answer comes from the cache.
    let b = tmp.path().join("b");
    let m = teach_ok(SMS, &b, &sets);
    assert_eq!(m["counts"]["cached"], 12);
    assert_eq!(m["counts"]["requests"], 0);
    let again = jsonl(&b.join("logs.jsonl"));
    let by_id: BTreeMap<String, &Value> = records
        .iter()
        .map(|r| (r["id"].as_str().expect("id").to_string(), r))
        .collect();
    for r in &again {
        let first = by_id[r["id"].as_str().expect("id")];
        assert_eq!(r["probs"], first["probs"]);
        assert_eq!(r["output"], first["output"]);
    }
    // Same directory again: nothing left to do, the log is unchanged.
    let before = std::fs::read(a.join("logs.jsonl")).expect("read");
    let o = teach(SMS, &a, &sets);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("resuming: 12 of 12"), "{}", stderr(&o));
    assert_eq!(std::fs::read(a.join("logs.jsonl")).expect("read"), before);

    // A wrong model name is caught before any work, with a suggestion.
    let bad = tmp.path().join("bad");
    let o = teach(
        SMS,
        &bad,
        &with(sets.clone(), &["teacher.model=\"smollm2-136m\""]),
    );
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("did you mean `smollm2-135m`"),
        "{}",
        stderr(&o)
    );
    assert!(!bad.exists());

    // Production logs: the cache holds request/response pairs in
    // chat-completions form; replay them as a log, plus lines that match nothing.
    let mut log = String::new();
    let mut files = Vec::new();
    for shard in std::fs::read_dir(&cache).expect("cache") {
        for f in std::fs::read_dir(shard.expect("shard").path()).expect("shard") {
            files.push(f.expect("file").path());
        }
    }
    files.sort();
    assert_eq!(files.len(), 12);
    for f in &files {
        let v: Value = serde_json::from_slice(&std::fs::read(f).expect("read")).expect("json");
        log.push_str(&v.to_string());
        log.push('\n');
    }
    log.push_str(r#"{"request": {"messages": [{"role": "user", "content": "a text that is not in the dataset"}]}, "response": {"choices": [{"message": {"content": "ham"}}]}}"#);
    log.push_str("\nnot json at all\n");
    let prod = tmp.path().join("prod.jsonl");
    std::fs::write(&prod, log).expect("write");
    let cfg = sms_config(
        tmp.path(),
        "import.toml",
        &format!(
            "kind = \"import\"\npath = \"{}\"\nmatch = \"text\"\n[teacher.price]\nprompt-per-1m = 0.15\ncompletion-per-1m = 0.6\n",
            s(&prod)
        ),
    );
    let imp = tmp.path().join("imported");
    let m = teach_ok(&cfg, &imp, &[]);
    assert_eq!(m["teacher"]["kind"], "import");
    assert_eq!(m["counts"]["records"], 12);
    let unmatched = jsonl(&imp.join("unmatched.jsonl"));
    assert_eq!(unmatched.len(), 2, "{unmatched:?}");
    assert!(unmatched.iter().any(|u| {
        u["reason"]
            .as_str()
            .expect("r")
            .contains("no dataset row matches")
    }));
    assert!(
        unmatched
            .iter()
            .any(|u| u["reason"].as_str().expect("r").contains("invalid JSON"))
    );
    for r in jsonl(&imp.join("logs.jsonl")) {
        let first = by_id[r["id"].as_str().expect("id")];
        assert_eq!(
            r["probs"], first["probs"],
            "import scores logprobs the same way"
        );
        assert_eq!(r["usage"], first["usage"]);
    }
}

#[test]
fn extraction_answers_follow_the_json_schema() {
    let llama = server(2);
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = tmp.path().join("x");
    let sets = with(
        base_sets(&llama.base_url(), &tmp.path().join("cache")),
        &["limit=3", "teacher.concurrency=2"],
    );
    let m = teach_ok("configs/teacher/snips-extract-smollm2.toml", &out, &sets);
    assert_eq!(m["counts"]["records"], 3);
    assert_eq!(m["params"]["json_schema"], true);
    let fields = ["artist", "city", "playlist", "timeRange"];
    for r in jsonl(&out.join("logs.jsonl")) {
        assert!(r["error"].is_null(), "{r}");
        let parsed: Value =
            serde_json::from_str(r["output"].as_str().expect("output")).expect("output is JSON");
        let keys: Vec<&str> = parsed
            .as_object()
            .expect("object")
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(keys, fields, "the schema requires exactly the fields");
        let got: Vec<&str> = r["fields"]
            .as_object()
            .expect("fields")
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(got, fields);
        assert!(r["probs"].is_null());
        // Every value the model answered is placed in the text or listed as
        // unplaced; a placed span's text matches its value (up to case and
        // whitespace, or a few edits).
        let placed = r["spans"].as_array().expect("spans").len();
        let unplaced = r["unaligned"].as_array().map_or(0, Vec::len);
        let answered: usize = r["fields"]
            .as_object()
            .expect("fields")
            .values()
            .map(|v| {
                v.as_array()
                    .expect("values")
                    .iter()
                    .filter(|x| !x.as_str().unwrap_or("").trim().is_empty())
                    .count()
            })
            .sum();
        assert_eq!(placed + unplaced, answered, "{r}");
    }
}

#[test]
fn resume_after_sigkill_keeps_exactly_one_record_per_row() {
    let llama = server(2);
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = tmp.path().join("k");
    let sets = with(
        base_sets(&llama.base_url(), &tmp.path().join("cache")),
        &["limit=24", "teacher.concurrency=2", "teacher.cache=false"],
    );
    let args = teach_args(SMS, &out, &sets);
    let mut child = super::spawn(&args);
    let logs = out.join("logs.jsonl");
    let t0 = Instant::now();
    loop {
        let n = std::fs::read_to_string(&logs)
            .map(|t| t.lines().count())
            .unwrap_or(0);
        if n >= 5 {
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(120), "no progress");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().expect("SIGKILL");
    child.wait().expect("wait");
    let before = std::fs::read_to_string(&logs).expect("read");
    assert!(before.lines().count() < 24, "killed before the end");
    // A kill in the middle of a write leaves a partial line: simulate one.
    let complete = before
        .rfind('\n')
        .map(|i| &before[..=i])
        .unwrap_or("")
        .to_string();
    std::fs::write(&logs, format!("{complete}{{\"id\":\"partial\",\"teach")).expect("write");

    let m = teach_ok(SMS, &out, &sets);
    assert_eq!(m["status"], "completed");
    let after = std::fs::read_to_string(&logs).expect("read");
    assert!(
        after.starts_with(&complete),
        "records from before the kill are kept as they were"
    );
    let records: Vec<Value> = after
        .lines()
        .map(|l| serde_json::from_str(l).expect("complete JSON line"))
        .collect();
    assert_unique(&records, 24);
    assert_eq!(m["counts"]["records"], 24);
    assert_eq!(
        m["last_run"]["resumed_from"].as_u64().expect("n"),
        complete.lines().count() as u64
    );
}

#[test]
fn injected_faults_are_retried_with_exact_accounting() {
    let llama = server(2);
    let proxy = FaultProxy::start(
        &llama.origin(),
        vec![
            Fault::Pass,
            Fault::RateLimit { retry_after_s: 1 },
            Fault::ServerError,
            Fault::Pass,
            Fault::Hang { secs: 6.0 },
            Fault::Truncate,
            Fault::Pass,
            Fault::InvalidJson,
            Fault::WrongContentType,
            Fault::Pass,
        ],
    )
    .expect("proxy");
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = tmp.path().join("f");
    let sets = with(
        base_sets(&proxy.base_url(), &tmp.path().join("cache")),
        &[
            "limit=10",
            "teacher.concurrency=2",
            "teacher.cache=false",
            "teacher.timeout-s=4",
            "teacher.max-retries=8",
            "teacher.backoff-initial-ms=50",
            "teacher.backoff-max-ms=200",
        ],
    );
    let m = teach_ok(SMS, &out, &sets);
    let c = &m["counts"];
    assert_eq!(c["records"], 10);
    // Only the model's own answers may fail (parse), never a call.
    let errors = c["errors"].as_object().expect("errors");
    assert!(errors.keys().all(|k| k == "parse"), "{m}");
    assert_eq!(
        c["requests"].as_u64(),
        Some(proxy.chat_requests()),
        "every request counted"
    );
    // Every record ends with one successful attempt; every other attempt
    // was retried: each injected fault, plus any real timeout of a slow
    // pass-through on a loaded machine.
    let requests = c["requests"].as_u64().expect("requests");
    assert_eq!(c["retries"].as_u64(), Some(requests - 10), "{m}");
    assert!(requests - 10 >= proxy.faults(), "every fault retried");
    assert!(proxy.faults() >= 6);
    let retried = c["retried"].as_object().expect("retried");
    for kind in ["http-429", "http-500", "timeout", "invalid-response"] {
        assert!(
            retried.contains_key(kind),
            "{kind} missing from {retried:?}"
        );
    }
    assert_unique(&jsonl(&out.join("logs.jsonl")), 10);

    // A server that keeps failing: the records are kept with the error...
    proxy.set_schedule(vec![Fault::ServerError]);
    let more = with(sets.clone(), &["limit=13", "teacher.max-retries=1"]);
    let m = teach_ok(SMS, &out, &more);
    let parse_failed = errors.get("parse").and_then(Value::as_u64).unwrap_or(0);
    assert_eq!(m["counts"]["records"], 13);
    assert_eq!(m["counts"]["errors"]["http-500"], 3);
    assert_eq!(m["counts"]["failed"].as_u64(), Some(3 + parse_failed));
    // ... and redone by --retry-failed once it recovers; still one record per row.
    proxy.set_schedule(vec![Fault::Pass]);
    let mut args = teach_args(SMS, &out, &more);
    args.push("--retry-failed".into());
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    ok(&refs);
    let m = manifest(&out);
    assert!(m["counts"]["errors"].get("http-500").is_none(), "{m}");
    assert_eq!(m["counts"]["records"], 13);
    assert_unique(&jsonl(&out.join("logs.jsonl")), 13);
}

#[test]
fn bad_teacher_input_exits_2_before_any_work() {
    let tmp = tempfile::tempdir().expect("tempdir");
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let dead = format!("teacher.base-url=\"http://127.0.0.1:{port}/v1\"");
    let cases: Vec<(Vec<String>, &str)> = vec![
        (vec![dead.clone()], "unreachable"),
        (
            vec![
                dead.clone(),
                "teacher.template=\"Classify: {labels}\"".into(),
            ],
            "must contain `{text}`",
        ),
        (
            vec![dead.clone(), "teacher.template=\"{txt}\"".into()],
            "must contain `{text}`",
        ),
        (
            vec![dead.clone(), "teacher.system=\"{lables}\"".into()],
            "did you mean `{labels}`",
        ),
        (
            vec![
                dead.clone(),
                "teacher.api-key-env=\"DISTILL_TEST_UNSET_KEY\"".into(),
            ],
            "`DISTILL_TEST_UNSET_KEY`, which is not set",
        ),
        (
            vec![dead.clone(), "teacher.top-logprobs=50".into()],
            "at most 20",
        ),
        (
            vec![dead.clone(), "teacher.temprature=0.5".into()],
            "did you mean `temperature`",
        ),
    ];
    for (i, (sets, expect)) in cases.iter().enumerate() {
        let out = tmp.path().join(format!("o{i}"));
        let o = teach(SMS, &out, sets);
        assert_eq!(o.status.code(), Some(2), "{sets:?}: {}", stderr(&o));
        assert!(
            stderr(&o).contains(expect),
            "{sets:?}: expected {expect:?} in {}",
            stderr(&o)
        );
        assert!(!out.exists(), "{sets:?}: nothing written");
    }
}

#[test]
fn local_teacher_curation_join_and_distillation() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let exp = tmp.path().join("exp");
    // A teacher: the sms_spam bag student, trained briefly.
    let o = ok(&[
        "train",
        "configs/exp/sms_spam-bag.toml",
        "--experiments",
        &s(&exp),
        "--set",
        "train.epochs=3",
        "--set",
        "model.buckets=16384",
    ]);
    let run = super::last_line_path(&o);
    let cfg = sms_config(
        tmp.path(),
        "local.toml",
        &format!("kind = \"local\"\nrun = \"{}\"\n", s(&run)),
    );
    let logs = tmp.path().join("local");
    let m = teach_ok(&cfg, &logs, &[]);
    assert_eq!(m["teacher"]["kind"], "local");
    let n = m["rows"].as_u64().expect("rows");
    assert!(n > 5000);
    assert_eq!(m["counts"]["records"], n);
    assert_eq!(m["counts"]["requests"], 0);
    let records = jsonl(&logs.join("logs.jsonl"));
    assert_unique(&records, n as usize);
    let mut correct_format = 0;
    for r in &records {
        assert_eq!(r["probs_source"], "exact");
        let probs = r["probs"].as_object().expect("probs");
        let sum: f64 = probs.values().map(|p| p.as_f64().expect("p")).sum();
        assert!((sum - 1.0).abs() < 1e-5);
        let top = probs
            .iter()
            .max_by(|a, b| {
                a.1.as_f64()
                    .expect("p")
                    .total_cmp(&b.1.as_f64().expect("p"))
            })
            .expect("top");
        correct_format += usize::from(r["label"] == top.0.as_str());
    }
    assert_eq!(correct_format, records.len(), "label is the argmax");

    // Curation joins the log: agreement per label, low-confidence rows dropped.
    let ds = tmp.path().join("ds");
    ok(&[
        "data",
        "import",
        "--config",
        "configs/data/sms_spam.toml",
        "--out",
        &s(&ds),
    ]);
    let ccfg = tmp.path().join("curate.toml");
    std::fs::write(
        &ccfg,
        format!(
            "seed = 42\n[[steps]]\ntype = \"normalize\"\n[[steps]]\ntype = \"redact-pii\"\n[[steps]]\ntype = \"teacher\"\nlogs = \"{}\"\nmin-confidence = 0.9\ndisagree = \"drop\"\n",
            s(&logs)
        ),
    )
    .expect("write");
    let cur = tmp.path().join("cur");
    let o = ok(&[
        "data",
        "curate",
        &s(&ds),
        "--config",
        &s(&ccfg),
        "--out",
        &s(&cur),
    ]);
    assert!(
        stderr(&o).contains("teacher-gold agreement per label"),
        "{}",
        stderr(&o)
    );
    let dm = super::manifest(&cur);
    let step = dm["curation"]["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .find(|s| s["step"] == "teacher")
        .expect("teacher step")
        .clone();
    let d = &step["details"];
    let joined = d["joined"].as_u64().expect("joined");
    assert!(joined > 5000, "{d}");
    let acc = d["teacher_accuracy"].as_f64().expect("accuracy");
    let per = d["agreement"].as_object().expect("agreement");
    let (mut n_all, mut a_all) = (0, 0);
    for v in per.values() {
        n_all += v["n"].as_u64().expect("n");
        a_all += v["agree"].as_u64().expect("agree");
    }
    assert!((acc - a_all as f64 / n_all as f64).abs() < 1e-12);
    assert!(acc > 0.8, "a trained bag agrees with gold: {acc}");
    let removed = jsonl(&cur.join("removed.jsonl"));
    let disagree = d["disagree"].as_u64().expect("n");
    assert!(removed.iter().any(|r| {
        r["reason"]
            .as_str()
            .expect("r")
            .starts_with("teacher confidence")
    }));
    assert_eq!(
        removed.iter().filter(|r| r["step"] == "teacher").count() as u64,
        step["removed"].as_u64().expect("removed")
    );
    assert!(disagree > 0);

    // A student distils from the teacher-log directory directly.
    let o = ok(&[
        "train",
        "configs/exp/sms_spam-bag.toml",
        "--experiments",
        &s(&exp),
        "--set",
        "train.epochs=2",
        "--set",
        "model.buckets=16384",
        "--set",
        &format!("teacher=\"{}\"", s(&logs)),
    ]);
    let run2 = super::last_line_path(&o);
    let info: Value =
        serde_json::from_slice(&std::fs::read(run2.join("run.json")).expect("run.json"))
            .expect("json");
    assert_eq!(info["counts"]["teacher"], info["counts"]["train"]);
}

// ---------------------------------------------------------------------------
// Without llama-server: a tiny dataset and the testkit's test servers.

/// A tiny classify dataset: a data config (JSONL source) in `dir` over these
/// (text, label) rows. Returns the data config's path.
fn tiny_dataset(dir: &Path, rows: &[(&str, &str)]) -> std::path::PathBuf {
    std::fs::create_dir_all(dir).expect("mkdir");
    let mut jsonl = String::new();
    for (text, label) in rows {
        jsonl.push_str(&serde_json::json!({"text": text, "label": label}).to_string());
        jsonl.push('\n');
    }
    std::fs::write(dir.join("rows.jsonl"), jsonl).expect("write rows");
    let config = dir.join("data.toml");
    std::fs::write(
        &config,
        "name = \"tiny\"\ntask = \"classify\"\n[[sources]]\npath = \"rows.jsonl\"\nformat = \"jsonl\"\ntext = \"text\"\nlabel = \"label\"\n",
    )
    .expect("write data config");
    config
}

/// Six spam/ham rows, all different.
const SIX: [(&str, &str); 6] = [
    ("win a free cruise now", "spam"),
    ("are we still on for lunch", "ham"),
    ("claim your prize today", "spam"),
    ("see you at the station", "ham"),
    ("cheap loans call now", "spam"),
    ("thanks for the notes", "ham"),
];

/// A teach config over `data` against an OpenAI-compatible `base_url`.
fn openai_config(dir: &Path, data: &Path, base_url: &str, extra: &str) -> String {
    let path = dir.join("teach.toml");
    std::fs::write(
        &path,
        format!(
            "dataset = \"{}\"\n[teacher]\nkind = \"openai\"\nbase-url = \"{base_url}\"\nmodel = \"instant\"\nmax-tokens = 2\nconcurrency = 2\ncache-dir = \"{}\"\nbackoff-initial-ms = 10\nbackoff-max-ms = 20\n{extra}",
            s(data),
            s(&dir.join("cache"))
        ),
    )
    .expect("write teach config");
    s(&path)
}

#[test]
fn a_second_teach_into_a_locked_directory_fails_fast_and_leaves_the_log_alone() {
    let server = distill_testkit::instant::InstantServer::start(None, "spam", "ham")
        .expect("instant server");
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tiny_dataset(&tmp.path().join("data"), &SIX);
    let cfg = openai_config(tmp.path(), &data, &server.base_url(), "cache = false\n");
    let out = tmp.path().join("t");
    teach_ok(&cfg, &out, &["limit=3".into()]);
    let requests = server.requests.load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!(requests, 3);
    let before = std::fs::read(out.join("logs.jsonl")).expect("read");

    // Another process (here: this one) is writing the directory.
    let lock = distill_core::lock::DirLock::acquire(&out, "distill teach").expect("lock");
    let t0 = Instant::now();
    let o = teach(&cfg, &out, &[]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(t0.elapsed() < Duration::from_secs(20), "fails fast");
    let err = stderr(&o);
    assert!(
        err.contains("is being written by distill teach (pid")
            && err.contains("wait for it to finish or use another directory"),
        "{err}"
    );
    assert_eq!(std::fs::read(out.join("logs.jsonl")).expect("read"), before);
    assert_eq!(
        server.requests.load(std::sync::atomic::Ordering::SeqCst),
        requests,
        "no request sent"
    );
    // Free again once the holder is gone.
    drop(lock);
    let m = teach_ok(&cfg, &out, &[]);
    assert_eq!(m["counts"]["records"], 6);
}

/// What `write_atomic` leaves when a teach is killed mid-rewrite of
/// `logs.jsonl` or `teacher.json` is removed by the next teach into the
/// directory, once it holds the lock; nothing else is.
#[test]
fn stale_temp_files_of_a_killed_teach_are_removed_and_nothing_else() {
    let server = distill_testkit::instant::InstantServer::start(None, "spam", "ham")
        .expect("instant server");
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tiny_dataset(&tmp.path().join("data"), &SIX);
    let cfg = openai_config(tmp.path(), &data, &server.base_url(), "cache = false\n");
    let out = tmp.path().join("t");
    std::fs::create_dir_all(&out).expect("mkdir");
    std::fs::write(out.join(".distill-k1ll3d.tmp"), "half").expect("write");
    std::fs::write(out.join("notes.txt"), "mine").expect("write");
    let o = teach(&cfg, &out, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("removed 1 temporary file(s) left by an interrupted run"),
        "{}",
        stderr(&o)
    );
    assert!(!out.join(".distill-k1ll3d.tmp").exists());
    assert!(out.join("notes.txt").exists());
    assert_eq!(manifest(&out)["counts"]["records"], 6);
}

#[test]
fn duplicate_texts_are_sent_once_and_a_complete_run_says_complete() {
    let server = distill_testkit::instant::InstantServer::start(None, "spam", "ham")
        .expect("instant server");
    let tmp = tempfile::tempdir().expect("tempdir");
    let rows = [
        ("win a free cruise now", "spam"),
        ("win a free cruise now", "spam"),
        ("win a free cruise now", "spam"),
        ("are we still on for lunch", "ham"),
        ("are we still on for lunch", "ham"),
        ("thanks for the notes", "ham"),
    ];
    let data = tiny_dataset(&tmp.path().join("data"), &rows);
    let cfg = openai_config(tmp.path(), &data, &server.base_url(), "cache = false\n");
    let out = tmp.path().join("t");
    let o = teach(&cfg, &out, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("6 rows, 3 distinct texts"),
        "{}",
        stderr(&o)
    );
    let m = manifest(&out);
    assert_eq!(
        server.requests.load(std::sync::atomic::Ordering::SeqCst),
        3,
        "one request per distinct text"
    );
    assert_eq!(m["rows"], 6);
    assert_eq!(m["distinct_texts"], 3);
    assert_eq!(m["counts"]["records"], 3);
    assert_eq!(m["counts"]["requests"], 3, "every request sent is counted");
    assert_eq!(m["status"], "completed");
    assert_unique(&jsonl(&out.join("logs.jsonl")), 3);
    // Nothing left to do on a rerun.
    let o = teach(&cfg, &out, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("resuming: 3 of 3 distinct texts"),
        "{}",
        stderr(&o)
    );
    assert_eq!(server.requests.load(std::sync::atomic::Ordering::SeqCst), 3);
}

#[test]
fn teach_exits_1_with_a_summary_when_every_record_failed() {
    let server = distill_testkit::instant::InstantServer::start(None, "spam", "ham")
        .expect("instant server");
    let proxy = FaultProxy::start(
        &format!("http://127.0.0.1:{}", server.port),
        vec![Fault::ServerError],
    )
    .expect("proxy");
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tiny_dataset(&tmp.path().join("data"), &SIX);
    let cfg = openai_config(
        tmp.path(),
        &data,
        &proxy.base_url(),
        "cache = false\nmax-retries = 1\n",
    );
    let out = tmp.path().join("t");
    let o = teach(&cfg, &out, &[]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("failed records by error: http-500 6"), "{err}");
    assert!(err.contains("every one of the 6 records"), "{err}");
    assert!(err.contains("--retry-failed"), "{err}");
    assert!(o.stdout.is_empty(), "no output directory on stdout");
    let m = manifest(&out);
    assert_eq!(m["counts"]["failed"], 6);
    assert_eq!(m["counts"]["requests"], 12, "each tried twice");

    // Once the server recovers, the failed records are redone: exit 0.
    proxy.set_schedule(vec![Fault::Pass]);
    let mut args = teach_args(&cfg, &out, &[]);
    args.push("--retry-failed".into());
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    ok(&refs);
    assert_eq!(manifest(&out)["counts"]["ok"], 6);
}

#[test]
fn an_infinite_timeout_is_a_config_error_not_a_panic() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tiny_dataset(&tmp.path().join("data"), &SIX);
    for (value, shown) in [("inf", "inf"), ("1e300", "1000000")] {
        let cfg = openai_config(
            tmp.path(),
            &data,
            "http://127.0.0.1:9/v1",
            &format!("timeout-s = {value}\n"),
        );
        let out = tmp.path().join("t");
        let o = teach(&cfg, &out, &[]);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{value}: {err}");
        assert!(
            err.contains(&format!("teacher.timeout-s = {shown}"))
                && err.contains("finite number of seconds"),
            "{value}: {err}"
        );
        assert!(!err.contains("panicked"), "{err}");
        assert!(!out.exists(), "nothing written");
    }
}

/// A server that echoes the request's `Authorization` header back: in error
/// bodies (request 3n), in a completion's text and metadata (3n + 1); the
/// rest answer normally.
fn echo_server() -> (u16, std::sync::Arc<std::sync::atomic::AtomicBool>) {
    use distill_testkit::http::{After, bind_local, serve, write_response};
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    let (listener, port) = bind_local().expect("bind");
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    let n = AtomicU64::new(0);
    serve(listener, stop.clone(), move |req, out| {
        let auth = req.header("authorization").unwrap_or("none").to_string();
        let sent = if req.path.ends_with("/models") {
            write_response(
                out,
                200,
                "application/json",
                &[],
                br#"{"object":"list","data":[{"id":"instant"}]}"#,
            )
        } else {
            match n.fetch_add(1, Ordering::SeqCst) % 3 {
                0 => write_response(
                    out,
                    500,
                    "application/json",
                    &[],
                    serde_json::json!({"error": {"message": format!("upstream rejected header Authorization: {auth}")}})
                        .to_string()
                        .as_bytes(),
                ),
                1 => {
                    let key = auth.trim_start_matches("Bearer ");
                    let body = serde_json::json!({
                        "model": "instant",
                        "system_fingerprint": auth,
                        "choices": [{"index": 0, "finish_reason": "stop",
                            "message": {"role": "assistant", "content": format!("spam {key}")}}],
                        "usage": {"prompt_tokens": 5, "completion_tokens": 2}
                    });
                    write_response(out, 200, "application/json", &[], body.to_string().as_bytes())
                }
                _ => write_response(
                    out,
                    200,
                    "application/json",
                    &[],
                    &distill_testkit::instant::completion("ham", "spam"),
                ),
            }
        };
        if sent.is_ok() {
            After::KeepAlive
        } else {
            After::Close
        }
    });
    (port, stop)
}

/// Every file under `dir`, with its bytes.
fn files_under(dir: &Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("read_dir").flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push((p.clone(), std::fs::read(&p).expect("read")));
            }
        }
    }
    out
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

#[test]
fn the_api_key_is_never_stored_or_printed() {
    const KEY: &str = "sk-distill-test-5f2b9c1e7a40";
    const ENV: &str = "DISTILL_IT_TEACHER_KEY";
    let (port, stop) = echo_server();
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tiny_dataset(&tmp.path().join("data"), &SIX);
    let cfg = openai_config(
        tmp.path(),
        &data,
        &format!("http://127.0.0.1:{port}/v1"),
        &format!("api-key-env = \"{ENV}\"\nmax-retries = 0\nlogprobs = false\n"),
    );
    let out = tmp.path().join("t");
    let run = |extra: &[&str]| {
        let mut args = vec!["teach".to_string(), cfg.clone(), "--out".into(), s(&out)];
        args.extend(extra.iter().map(|a| a.to_string()));
        std::process::Command::new(env!("CARGO_BIN_EXE_distill"))
            .args(&args)
            .current_dir(repo())
            .env(ENV, KEY)
            .env("NO_COLOR", "1")
            .output()
            .expect("run distill")
    };
    let o = run(&[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let logs = std::fs::read_to_string(out.join("logs.jsonl")).expect("logs");
    assert!(
        logs.contains("Authorization: Bearer [REDACTED]"),
        "the echoed error body is kept, redacted: {logs}"
    );
    // A second run redoes the failed records: more error bodies, more prints.
    let o2 = run(&["--retry-failed"]);
    assert!(o2.status.success(), "{}", stderr(&o2));
    let files: Vec<_> = files_under(&out)
        .into_iter()
        .chain(files_under(&tmp.path().join("cache")))
        .collect();
    assert!(
        files
            .iter()
            .any(|(p, _)| p.starts_with(tmp.path().join("cache"))),
        "the cache was written"
    );
    for (path, bytes) in &files {
        assert!(!contains(bytes, KEY), "the key is in {}", path.display());
    }
    for o in [&o, &o2] {
        assert!(!contains(&o.stdout, KEY) && !contains(&o.stderr, KEY));
    }

    // A key inside base-url is refused at load, without being repeated.
    for url in [
        format!("http://user:{KEY}@127.0.0.1:{port}/v1"),
        format!("http://127.0.0.1:{port}/v1?api_key={KEY}"),
    ] {
        let bad = tmp.path().join("bad");
        let o = teach(&cfg, &bad, &[format!("teacher.base-url=\"{url}\"")]);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{err}");
        assert!(
            err.contains("hint: put the key in an environment variable"),
            "{err}"
        );
        assert!(err.contains("teacher.api-key-env"), "{err}");
        assert!(!err.contains(KEY) && !contains(&o.stdout, KEY), "{err}");
        assert!(!bad.exists(), "nothing written");
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    distill_testkit::http::wake(port);
}

/// A teacher that is a classifier: plain soft labels and hard labels, by
/// text or id, imported as a teacher log without faking chat logprobs; bad
/// lines are rejected with the reason, never guessed.
#[test]
fn plain_soft_labels_import_as_a_teacher_log() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let lines = [
        r#"{"text": "Ok lar... Joking wif u oni...", "probs": {"ham": 0.6, "spam": 0.2}}"#,
        r#"{"text": "U dun say so early hor... U c already then say...", "label": "spam"}"#,
        r#"{"text": "Nah I don't think he goes to usf, he lives around here though", "probs": {"eggs": 1.0}}"#,
        r#"{"text": "Ok lar... Joking wif u oni...", "probs": {"ham": -1}}"#,
        r#"{"probs": {"ham": 1.0}}"#,
        r#"{"text": "a text that is in no dataset at all", "label": "ham"}"#,
        r#"{"text": "U dun say so early hor... U c already then say...", "probs": {"ham": 0, "spam": 0}}"#,
    ];
    let soft = tmp.path().join("soft.jsonl");
    std::fs::write(&soft, lines.join("\n") + "\n").expect("write");
    let cfg = sms_config(
        tmp.path(),
        "plain.toml",
        &format!("kind = \"import\"\npath = \"{}\"\n", s(&soft)),
    );
    let out = tmp.path().join("teacher");
    let m = teach_ok(&cfg, &out, &[]);
    assert_eq!(m["counts"]["records"], 2, "{m}");
    let log = distill_core::teacher_log::read_log_lines(&out.join("logs.jsonl")).expect("log");
    let by_label = |l: &str| {
        log.records
            .iter()
            .find(|r| r.label.as_deref() == Some(l))
            .unwrap_or_else(|| panic!("no record labelled {l}: {:?}", log.records))
    };
    let ham = by_label("ham");
    let p = ham.probs.as_ref().expect("probs");
    assert!(
        (p["ham"] - 0.75).abs() < 1e-12 && (p["spam"] - 0.25).abs() < 1e-12,
        "renormalised: {p:?}"
    );
    assert_eq!(ham.probs_source.as_deref(), Some("import"));
    let spam = by_label("spam");
    assert_eq!(spam.probs.as_ref().expect("probs")["spam"], 1.0);
    assert_eq!(spam.probs_source.as_deref(), Some("hard"));
    let unmatched = jsonl(&out.join("unmatched.jsonl"));
    let reasons: Vec<&str> = unmatched
        .iter()
        .filter_map(|u| u["reason"].as_str())
        .collect();
    assert_eq!(reasons.len(), 5, "{reasons:?}");
    for (line, want) in [
        (3, "label `eggs` is not in the dataset's label set"),
        (4, "is not a probability"),
        (5, "needs `id` or `text`"),
        (6, "no dataset row matches"),
        (7, "no mass on any label"),
    ] {
        assert!(
            reasons
                .iter()
                .any(|r| r.contains(&format!("soft.jsonl:{line}:")) && r.contains(want)),
            "line {line}: {want}: {reasons:?}"
        );
    }
}

/// The response cache knows the server changed: another model behind the
/// same URL and model name (what `/models` reports differs) is asked again;
/// the same one is answered from the cache; `--no-cache` and
/// `--refresh-cache` ask every row; `distill cache` shows and prunes it.
#[test]
fn the_response_cache_is_keyed_on_the_server_and_can_be_bypassed_refreshed_and_pruned() {
    use distill_testkit::instant::InstantServer;
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tiny_dataset(&tmp.path().join("data"), &SIX);
    let a = InstantServer::start_model(None, "spam", "ham", serde_json::json!({"size": 1}))
        .expect("server a");
    let port = a.port;
    let cfg = openai_config(tmp.path(), &data, &a.base_url(), "");
    let label_of_log = |out: &Path| -> Vec<String> {
        distill_core::teacher_log::read_log_lines(&out.join("logs.jsonl"))
            .expect("log")
            .records
            .iter()
            .filter_map(|r| r.label.clone())
            .collect()
    };
    let m = teach_ok(&cfg, &tmp.path().join("t1"), &[]);
    assert_eq!(m["counts"]["cached"], 0);
    assert!(
        label_of_log(&tmp.path().join("t1"))
            .iter()
            .all(|l| l == "spam")
    );
    drop(a);
    // Same port, same model name, other weights: asked again, not replayed.
    // (The old listener's thread lets go of the port shortly after the drop.)
    let b = (0..100)
        .find_map(|_| {
            InstantServer::start_model(Some(port), "ham", "spam", serde_json::json!({"size": 2}))
                .map_err(|_| std::thread::sleep(Duration::from_millis(50)))
                .ok()
        })
        .expect("server b on the same port");
    let m = teach_ok(&cfg, &tmp.path().join("t2"), &[]);
    assert_eq!(m["counts"]["cached"], 0, "{m}");
    assert!(
        label_of_log(&tmp.path().join("t2"))
            .iter()
            .all(|l| l == "ham")
    );
    assert_eq!(b.requests.load(std::sync::atomic::Ordering::SeqCst), 6);
    // The same server again (its `created` changes per listing): all cached.
    let o = teach(&cfg, &tmp.path().join("t3"), &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(manifest(&tmp.path().join("t3"))["counts"]["cached"], 6);
    assert!(stderr(&o).contains("response cache"), "{}", stderr(&o));
    assert_eq!(b.requests.load(std::sync::atomic::Ordering::SeqCst), 6);
    for flag in ["--no-cache", "--refresh-cache"] {
        let out = tmp.path().join(flag.trim_start_matches('-'));
        let o = distill(&["teach", &cfg, "--out", &s(&out), flag]);
        assert!(o.status.success(), "{}", stderr(&o));
        assert_eq!(manifest(&out)["counts"]["cached"], 0, "{flag}");
    }
    assert_eq!(b.requests.load(std::sync::atomic::Ordering::SeqCst), 18);

    let cache = tmp.path().join("cache");
    let info = distill(&["cache", "info", "--dir", &s(&cache)]);
    let text = String::from_utf8_lossy(&info.stdout).to_string();
    assert!(text.contains(": 12 entries"), "{text}");
    // `| head -0`: a quiet end, no panic.
    let o = super::closed_stdout(&["cache", "info", "--dir", &s(&cache)]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(!stderr(&o).contains("panicked"), "{}", stderr(&o));
    std::fs::write(cache.join("notes.txt"), "mine").expect("write");
    let o = distill(&["cache", "prune", "--dir", &s(&cache)]);
    assert_eq!(o.status.code(), Some(2), "say what to prune");
    let o = distill(&["cache", "prune", "--dir", &s(&cache), "--max-size", "0"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(
        text.contains("removed 12 entries") && text.contains("0 entries, 0 B left"),
        "{text}"
    );
    assert!(
        cache.join("notes.txt").is_file(),
        "only cache entries are deleted"
    );
}
