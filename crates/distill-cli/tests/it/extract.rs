//! Extraction end to end on real data: the fast tagger trains on SNIPS
//! (joint intents + slots), its span metrics equal seqeval's (PyPI, pinned)
//! on the same predictions, it certifies an escalation threshold, exports
//! (f32, int8), predicts fields with offsets, refuses a tampered bundle, and
//! replays bit for bit from its seed. NLU++ trains through curation (spans
//! carried through normalisation and PII redaction). Bad spans are rejected
//! with reasons.

use super::{distill, last_line_path, ok, repo, stderr};
use serde_json::Value;
use std::path::Path;

fn s(p: &Path) -> String {
    p.to_str().expect("utf8").to_string()
}

fn read_json(p: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display())))
        .expect("json")
}

fn train(config: &str, exp: &Path, sets: &[&str]) -> std::path::PathBuf {
    let mut args = vec![
        "train".to_string(),
        config.into(),
        "--experiments".into(),
        s(exp),
    ];
    for set in sets {
        args.push("--set".into());
        args.push(set.to_string());
    }
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    last_line_path(&ok(&refs))
}

/// Write `lines` as JSONL at `data` and import it as an extraction dataset at `ds`.
fn import_jsonl(lines: &[Value], data: &Path, ds: &Path) -> std::path::PathBuf {
    let body: String = lines.iter().map(|l| format!("{l}\n")).collect();
    std::fs::write(data, body).expect("write");
    ok(&[
        "data",
        "import",
        &s(data),
        "--text",
        "text",
        "--spans",
        "spans",
        "--split",
        "field:split",
        "--task",
        "extract",
        "--out",
        &s(ds),
    ]);
    ds.to_path_buf()
}

fn extract_python() -> String {
    distill_testkit::install::run_script("install-extract-peers.sh")
        .trim()
        .to_string()
}

#[test]
fn snips_tagger_trains_matches_seqeval_exports_and_predicts() {
    let py = extract_python();
    let tmp = tempfile::tempdir().expect("tempdir");
    let sets = ["train.epochs=2", "model.buckets=65536"];
    let run = train(
        "configs/extract/snips-tagger.toml",
        &tmp.path().join("a"),
        &sets,
    );
    let info = read_json(&run.join("run.json"));
    assert_eq!(info["status"], "completed");
    assert_eq!(info["model_kind"], "tagger");
    assert_eq!(info["counts"]["slots"], 39);
    assert_eq!(info["counts"]["intents"], 7);
    let m = &info["metrics"];
    let f1 = m["test_span_f1"].as_f64().expect("f1");
    assert!(f1 > 0.88, "two epochs of the fast tagger reach {f1}");
    assert!(
        m["test_intent_accuracy"].as_f64().expect("intent") > 0.9,
        "{m}"
    );

    // Span metrics against seqeval on the very same predictions.
    let o = ok(&["eval", &s(&run), "--format", "json"]);
    let report: Value = serde_json::from_slice(&o.stdout).expect("report json");
    let preds = run.join("eval/extract/predictions.jsonl");
    let out = std::process::Command::new(&py)
        .arg(repo().join("scripts/seqeval_check.py"))
        .arg(&preds)
        .output()
        .expect("python");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let seq: Value = serde_json::from_slice(&out.stdout).expect("seqeval json");
    let ours = &report["test"]["token_aligned"];
    assert_eq!(seq["rows"], report["test"]["rows"]);
    for (a, b) in [
        ("precision", "precision"),
        ("recall", "recall"),
        ("f1", "f1"),
    ] {
        let (x, y) = (
            ours["micro"][a].as_f64().expect("ours"),
            seq[b].as_f64().expect("seqeval"),
        );
        assert!((x - y).abs() < 1e-12, "{a}: distill {x} vs seqeval {y}");
    }
    let per_type = seq["per_type"].as_object().expect("per type");
    assert!(per_type.len() >= 30);
    for (slot, v) in per_type {
        let ours = &report["test"]["token_aligned"]["per_slot"][slot];
        for k in ["precision", "recall"] {
            let (x, y) = (
                ours[k].as_f64().unwrap_or(0.0),
                v[k].as_f64().expect("seqeval"),
            );
            assert!(
                (x - y).abs() < 1e-12,
                "{slot} {k}: distill {x} vs seqeval {y}"
            );
        }
        assert_eq!(ours["support"], v["support"], "{slot}");
    }
    // Character-exact metrics differ from token-aligned only by gold spans
    // that end inside a token (they count as misses).
    let exact = report["test"]["spans"]["micro"]["f1"].as_f64().expect("f1");
    assert!(exact <= ours["micro"]["f1"].as_f64().expect("f1") + 1e-12);
    assert!(run.join("eval/extract/risk_coverage.svg").is_file());
    assert!(run.join("eval/extract/report.md").is_file());

    // Export: f32 and int8 bundles; the threshold eval certified ships.
    let threshold = report["threshold"]["threshold"].as_f64();
    let f32_dir = last_line_path(&ok(&["export", &s(&run)]));
    let int8_dir = last_line_path(&ok(&["export", &s(&run), "--quantize", "int8"]));
    let f32_bytes = std::fs::metadata(f32_dir.join("tagger.bin"))
        .expect("f32")
        .len();
    let int8_bytes = std::fs::metadata(int8_dir.join("tagger.bin"))
        .expect("int8")
        .len();
    assert!(int8_bytes * 3 < f32_bytes, "{int8_bytes} vs {f32_bytes}");
    assert_eq!(
        read_json(&int8_dir.join("tagger.json"))["threshold"].as_f64(),
        threshold
    );
    let onnx = distill(&["export", &s(&run), "--format", "onnx"]);
    assert!(!onnx.status.success() && stderr(&onnx).contains("--format burn"));

    // Predict fields with offsets into the input.
    let text = "play the song yesterday by the beatles on spotify";
    let o = ok(&["predict", "--bundle", &s(&int8_dir), text]);
    let line: Value = serde_json::from_slice(o.stdout.split(|b| *b == b'\n').next().expect("line"))
        .expect("answer json");
    assert_eq!(line["intent"], "PlayMusic", "{line}");
    let fields = line["fields"].as_object().expect("fields");
    assert!(!fields.is_empty(), "{line}");
    let chars: Vec<char> = text.chars().collect();
    for (slot, list) in fields {
        for f in list.as_array().expect("list") {
            let (a, b) = (
                f["start"].as_u64().expect("start") as usize,
                f["end"].as_u64().expect("end") as usize,
            );
            assert_eq!(
                chars[a..b].iter().collect::<String>(),
                f["text"].as_str().expect("text"),
                "{slot}"
            );
            let c = f["confidence"].as_f64().expect("confidence");
            assert!((0.0..=1.0).contains(&c));
        }
    }
    assert!(fields.contains_key("service"), "{line}");
    assert!(
        line["escalate"].is_boolean() == threshold.is_some(),
        "{line}"
    );

    // A reader that goes away mid-stream ends prediction quietly.
    let many: Vec<String> = (0..3000).map(|i| format!("{text} {i}")).collect();
    let mut args = vec!["predict", "--bundle"];
    let int8_s = s(&int8_dir);
    args.push(&int8_s);
    args.extend(many.iter().map(String::as_str));
    let closed = super::closed_stdout(&args);
    assert!(closed.status.success(), "{}", stderr(&closed));
    assert!(!stderr(&closed).contains("panicked"));

    // A tampered bundle is refused by name, never trusted.
    let bin = int8_dir.join("tagger.bin");
    let mut bytes = std::fs::read(&bin).expect("bin");
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x55;
    std::fs::write(&bin, &bytes).expect("write");
    let bad = distill(&["predict", "--bundle", &s(&int8_dir), text]);
    assert!(!bad.status.success());
    let e = stderr(&bad);
    assert!(e.contains("tagger.bin") && e.contains("sha256"), "{e}");
    assert!(!e.contains("panicked"), "{e}");

    // The same seed replays bit for bit (a short run).
    let short = [
        "train.epochs=1",
        "train.max-steps=3000",
        "model.buckets=65536",
    ];
    let r1 = train(
        "configs/extract/snips-tagger.toml",
        &tmp.path().join("b"),
        &short,
    );
    let r2 = train(
        "configs/extract/snips-tagger.toml",
        &tmp.path().join("c"),
        &short,
    );
    let bin = |r: &Path| std::fs::read(r.join("model/tagger.bin")).expect("weights");
    assert!(bin(&r1) == bin(&r2), "same seed, same weights");
    assert_eq!(read_json(&r1.join("run.json"))["steps"], 3000);
}

#[test]
fn nlupp_tagger_trains_through_curation() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let run = train(
        "configs/extract/nlupp-tagger.toml",
        tmp.path(),
        &["train.epochs=3", "model.buckets=65536"],
    );
    let info = read_json(&run.join("run.json"));
    assert_eq!(info["status"], "completed");
    assert_eq!(
        info["counts"]["intents"], 0,
        "multi-label intents: slots only"
    );
    assert!(info["counts"]["slots"].as_u64().expect("slots") >= 10);
    let f1 = info["metrics"]["test_span_f1"].as_f64().expect("f1");
    assert!(f1 > 0.5, "{f1}");
    assert!(info["lineage"]["val_source"] == "val split");
}

#[test]
fn bad_spans_are_rejected_with_reasons() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("d.jsonl");
    let mut lines = Vec::new();
    for i in 0..40 {
        let text = format!("book a table in paris for {i} people");
        lines.push(serde_json::json!({
            "text": text, "split": if i % 4 == 0 { "val" } else { "train" },
            "spans": [{"start": 16, "end": 21, "label": "city"}],
        }));
    }
    // Overlapping spans, and a span outside the text.
    lines.push(serde_json::json!({"text": "fly to new york now", "split": "train",
        "spans": [{"start": 7, "end": 15, "label": "city"}, {"start": 11, "end": 15, "label": "state"}]}));
    lines.push(serde_json::json!({"text": "fly to rome", "split": "train",
        "spans": [{"start": 7, "end": 40, "label": "city"}]}));
    let ds = import_jsonl(&lines, &data, &tmp.path().join("ds"));
    let rejects = std::fs::read_to_string(ds.join("rejects.jsonl")).unwrap_or_default();
    assert!(rejects.contains("outside the text"), "{rejects}");
    let config = tmp.path().join("exp.toml");
    std::fs::write(
        &config,
        format!(
            "name = \"bad-spans\"\ndataset = \"{}\"\n[model]\nkind = \"tagger\"\nbuckets = 4096\ndim = 8\n[train]\nepochs = 1\nlr = 0.05\n",
            s(&ds)
        ),
    )
    .expect("config");
    let run = train(&s(&config), &tmp.path().join("exp"), &[]);
    let rejected = std::fs::read_to_string(run.join("rejects.jsonl")).expect("run rejects");
    assert!(rejected.contains("overlap"), "{rejected}");
    assert_eq!(read_json(&run.join("run.json"))["counts"]["rejected"], 1);
}

/// Rows without gold spans learn from a teacher's spans (a teach log's
/// `spans`, placed at teach time); unplaced values are counted.
#[test]
fn teacher_spans_label_rows_without_gold() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let cities = [
        "paris", "rome", "berlin", "madrid", "lisbon", "vienna", "oslo", "dublin",
    ];
    let mut lines = Vec::new();
    let mut log = String::new();
    for i in 0..60 {
        let city = cities[i % cities.len()];
        let text = format!("book a table in {city} for {i} people");
        let start = 16;
        let end = start + city.len();
        if i < 24 {
            lines.push(serde_json::json!({
                "text": text, "split": if i % 4 == 0 { "val" } else { "train" },
                "spans": [{"start": start, "end": end, "label": "city"}],
            }));
        } else {
            lines.push(serde_json::json!({"text": text, "split": "unlabeled"}));
            let id = distill_core::hash::content_id(&text);
            let rec = serde_json::json!({
                "id": id, "teacher": {"kind": "openai", "model": "m", "params_hash": "h"},
                "output": format!("{{\"city\": \"{city}\"}}"),
                "fields": {"city": [city]},
                "spans": [{"start": start, "end": end, "label": "city"}],

                "usage": {"prompt_tokens": 1, "completion_tokens": 1}, "latency_ms": 1.0,
                "cost": 0.0, "attempts": 1,
            });
            let mut rec = rec;
            if i % 4 == 0 {
                // A value the teacher gave that is not in the text: the
                // record is left out of training (counted).
                rec["fields"]["party"] = serde_json::json!(["nobody"]);
                rec["unaligned"] = serde_json::json!([{"field": "party", "value": "nobody", "reason": "not found"}]);
            }
            log.push_str(&format!("{rec}\n"));
        }
    }
    let teach = tmp.path().join("teach");
    std::fs::create_dir_all(&teach).expect("dir");
    std::fs::write(teach.join("logs.jsonl"), log).expect("log");
    let ds = import_jsonl(&lines, &tmp.path().join("d.jsonl"), &tmp.path().join("ds"));
    let config = tmp.path().join("exp.toml");
    std::fs::write(
        &config,
        format!(
            "name = \"teacher-spans\"\ndataset = \"{}\"\nteacher = \"{}\"\n[model]\nkind = \"tagger\"\nbuckets = 4096\ndim = 8\n[train]\nepochs = 3\nlr = 0.05\n",
            s(&ds),
            s(&teach)
        ),
    )
    .expect("config");
    let run = train(&s(&config), &tmp.path().join("exp"), &[]);
    let info = read_json(&run.join("run.json"));
    assert_eq!(info["status"], "completed");
    assert_eq!(info["counts"]["teacher"], 27, "{info}");
    assert_eq!(info["counts"]["train"], 18 + 27);
    assert_eq!(info["counts"]["teacher_unaligned_values"], 9);
    assert_eq!(info["counts"]["teacher_partial_records"], 9);
    assert_eq!(
        info["lineage"]["teacher_sha256"].as_str().map(str::len),
        Some(64)
    );
}
