//! `distill eval`: the shipped suites on freshly trained runs, gates driving
//! the exit code, the cascade against a teacher log, and the bad-input cases.

use super::{distill, jsonl, last_line_path, ok, repo, stderr};
use serde_json::Value;
use std::path::{Path, PathBuf};

fn s(p: &Path) -> String {
    p.to_str().expect("utf8").to_string()
}

fn train(config: &str, exp: &Path) -> PathBuf {
    last_line_path(&ok(&["train", config, "--experiments", &s(exp)]))
}

fn report(dir: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(dir.join("report.json")).expect("report.json"))
        .expect("json")
}

#[test]
fn banking77_suite_reports_calibration_operating_points_and_a_cascade() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let run = train("configs/exp/banking77-bag.toml", &tmp.path().join("exp"));
    let o = ok(&["eval", &s(&run), "--suite", "configs/suites/banking77.toml"]);
    let out = last_line_path(&o);
    assert_eq!(out, run.join("eval").join("banking77"));
    let r = report(&out);
    assert_eq!(r["passed"], true);
    let c = &r["cases"][0];
    let m = &c["metrics"];
    assert_eq!(c["n"], 3080);
    let acc = m["accuracy"].as_f64().expect("accuracy");
    // The run's own test accuracy (run.json) and eval's must agree exactly.
    let info: Value =
        serde_json::from_slice(&std::fs::read(run.join("run.json")).expect("run.json"))
            .expect("json");
    assert_eq!(Some(acc), info["metrics"]["test_accuracy"].as_f64());
    // One meaning of model_bytes (the weights file) in run.json and reports.
    assert_eq!(m["model_bytes"].as_f64(), info["model_bytes"].as_f64());
    assert_eq!(
        Some(
            std::fs::metadata(run.join("model/weights.bpk"))
                .expect("weights")
                .len() as f64
        ),
        info["model_bytes"].as_f64()
    );
    // This config's model (row-wise Adagrad table) comes out calibrated
    // already (measured: T ~1.00, ECE 0.011-0.017 before and after):
    // temperature scaling must not make it notably worse, and the result
    // must be well calibrated.
    let (ece, ece_cal) = (
        m["ece"].as_f64().expect("ece"),
        m["ece_calibrated"].as_f64().expect("ece"),
    );
    assert!(
        ece_cal < ece + 0.01 && ece_cal < 0.04,
        "ECE {ece} -> {ece_cal}"
    );
    assert!(
        run.join("calibration.json").is_file(),
        "temperature stored with the run"
    );
    // Operating points: certified on val, and on test the handled accuracy is near target.
    let ops = c["operating_points"].as_array().expect("ops");
    let mut last_cov = 1.01;
    for op in ops {
        let cov = op["coverage"].as_f64().expect("coverage");
        assert!((0.0..=1.0).contains(&cov));
        assert!(cov <= last_cov, "higher targets keep less traffic local");
        last_cov = cov;
        if let Some(ub) = op["val"]["error_upper"].as_f64() {
            assert!(ub <= 1.0 - op["target_accuracy"].as_f64().expect("t") + 1e-12);
        }
    }
    // Certified on validation, the 95% point must hold on test too (within
    // sampling noise of 3,080 rows).
    let op95 = ops
        .iter()
        .find(|o| o["target_accuracy"] == 0.95)
        .expect("0.95 point");
    let handled_acc = op95["accuracy"].as_f64().expect("certified on this run");
    assert!(
        handled_acc >= 0.93,
        "accuracy on handled test rows {handled_acc}"
    );
    assert_eq!(
        op95["temperature"].as_f64(),
        m["temperature"].as_f64(),
        "the threshold carries the temperature it was certified under"
    );
    // Accuracy recomputed from the dataset file itself (not eval's gold).
    let preds = jsonl(&out.join("predictions.jsonl"));
    assert_eq!(preds.len(), 3080);
    let mut gold = std::collections::HashMap::new();
    let mut reader = csv::Reader::from_path(repo().join("../shared/datasets/banking77/test.csv"))
        .expect("banking77 test.csv");
    for rec in reader.records() {
        let rec = rec.expect("csv row");
        gold.insert(distill_core::hash::content_id(&rec[0]), rec[1].to_string());
    }
    let correct = preds
        .iter()
        .filter(|p| {
            gold.get(p["id"].as_str().expect("id")).map(String::as_str) == p["predicted"].as_str()
        })
        .count();
    assert_eq!(correct as f64 / 3080.0, acc);
    for f in [
        "report.md",
        "reliability.svg",
        "risk_coverage.svg",
        "confusion.svg",
    ] {
        let text = std::fs::read_to_string(out.join(f)).expect(f);
        assert!(text.starts_with("<svg") || f == "report.md", "{f}");
    }
    let md = std::fs::read_to_string(out.join("report.md")).expect("md");
    assert!(md.contains("Escalation") && md.contains("![reliability.svg](reliability.svg)"));

    // The cascade against an oracle teacher (gold as a plain soft-label
    // file): escalated rows become right, handled rows keep the student's
    // answer. Swapping the branches, or ignoring the threshold, changes the
    // number, so the exact value below pins the cascade's logic.
    let th = op95["threshold"].as_f64().expect("threshold");
    let oracle = tmp.path().join("oracle.jsonl");
    let lines: Vec<String> = preds
        .iter()
        .map(|p| {
            serde_json::json!({"id": p["id"], "probs": {p["gold"].as_str().expect("gold"): 1.0}})
                .to_string()
        })
        .collect();
    std::fs::write(&oracle, lines.join("\n") + "\n").expect("write");
    let (mut local, mut right) = (0usize, 0usize);
    for p in &preds {
        if p["confidence"].as_f64().expect("conf") >= th {
            local += 1;
            right += usize::from(p["gold"] == p["predicted"]);
        } else {
            right += 1;
        }
    }
    let suite = tmp.path().join("cascade.toml");
    std::fs::write(
        &suite,
        format!(
            "name = \"cascade\"\n[[cases]]\nname = \"test\"\ndataset = \"{}\"\nteacher = \"{}\"\ntargets = [0.95]\nlatency = false\n",
            s(&repo().join("configs/data/banking77.toml")),
            s(&oracle)
        ),
    )
    .expect("write");
    let out = last_line_path(&ok(&["eval", &s(&run), "--suite", &s(&suite)]));
    let m = &report(&out)["cases"][0]["metrics"];
    assert_eq!(m["teacher_accuracy"], 1.0);
    assert_eq!(m["teacher_agreement"].as_f64(), Some(acc));
    assert_eq!(m["local_share@0.95"].as_f64(), Some(local as f64 / 3080.0));
    // The same count, summed in another order: equal up to rounding.
    let cascade = m["cascade_accuracy@0.95"].as_f64().expect("cascade");
    assert!(
        (cascade - right as f64 / 3080.0).abs() < 1e-12,
        "{cascade} vs {right}/3080"
    );
    assert!(
        right as f64 / 3080.0 > acc,
        "escalating the unsure rows helps"
    );
    assert!(local > 1540 && local < 3080, "{local}");
}

#[test]
fn clinc150_suite_measures_out_of_scope_detection() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let run = train("configs/exp/clinc150-bag.toml", &tmp.path().join("exp"));
    // The suite's targets, unsorted: every table follows ascending targets.
    let suite = tmp.path().join("clinc150.toml");
    std::fs::write(
        &suite,
        std::fs::read_to_string(repo().join("configs/suites/clinc150.toml"))
            .expect("suite")
            .replace(
                "../data/clinc150.toml",
                &s(&repo().join("configs/data/clinc150.toml")),
            )
            .replace("targets = [0.9, 0.95, 0.98]", "targets = [0.98, 0.9, 0.95]"),
    )
    .expect("write suite");
    let out = last_line_path(&ok(&["eval", &s(&run), "--suite", &s(&suite)]));
    let case = &report(&out)["cases"][0];
    let targets: Vec<f64> = case["operating_points"]
        .as_array()
        .expect("ops")
        .iter()
        .map(|op| op["target_accuracy"].as_f64().expect("target"))
        .collect();
    assert_eq!(targets, vec![0.9, 0.95, 0.98]);
    // OOS recall per target: a higher target escalates more, catching more.
    let m = &case["metrics"];
    let mut last = 0.0;
    let mut first = None;
    for op in case["operating_points"].as_array().expect("ops") {
        if op["threshold"].is_null() {
            continue;
        }
        let t = op["target_accuracy"].as_f64().expect("t");
        let r = m[format!("oos_recall@{t}")]
            .as_f64()
            .unwrap_or_else(|| panic!("oos_recall@{t}: {m}"));
        assert!(r >= last, "{t}: {r} < {last}");
        last = r;
        first.get_or_insert(r);
    }
    assert_eq!(
        m["oos_recall"].as_f64(),
        first,
        "oos_recall is at the lowest certified target"
    );
    let auroc = m["oos_auroc"].as_f64().expect("auroc");
    assert!(auroc > 0.75 && auroc <= 1.0, "{auroc}");
    let ins = m["in_scope_accuracy"].as_f64().expect("in-scope");
    assert!(
        ins > m["accuracy"].as_f64().expect("acc"),
        "oos rows are the hard ones"
    );
    let recall = m["oos_recall"].as_f64().expect("recall");
    assert!(
        recall >= m["oos_recall_predicted"].as_f64().expect("r"),
        "escalation adds to predicted oos"
    );
}

#[test]
fn failing_gates_exit_1_and_bad_input_exits_2() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let run = train("configs/exp/sms_spam-bag.toml", &tmp.path().join("exp"));
    let write = |name: &str, body: &str| {
        let p = tmp.path().join(name);
        std::fs::write(&p, body).expect("write");
        s(&p)
    };
    let data = s(&repo().join("configs/data/sms_spam.toml"));
    let cur = s(&repo().join("configs/curate/default.toml"));
    let strict = write(
        "strict.toml",
        &format!(
            "name = \"strict\"\n[[cases]]\nname = \"t\"\ndataset = \"{data}\"\ncurate = \"{cur}\"\ngates = [\"accuracy >= 0.999\", \"ece <= 0.5\"]\n"
        ),
    );
    let o = distill(&["eval", &s(&run), "--suite", &strict]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("gate accuracy >= 0.999: FAIL"),
        "{}",
        stderr(&o)
    );
    let md = std::fs::read_to_string(run.join("eval/strict/report.md")).expect("md");
    assert!(md.contains("**FAIL**") && md.contains("| pass |"));
    // `| head -1`: no panic, and the gate still decides the exit code.
    for format in ["text", "json"] {
        let o = super::closed_stdout(&["eval", &s(&run), "--suite", &strict, "--format", format]);
        assert!(!stderr(&o).contains("panicked"), "{}", stderr(&o));
        assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    }

    let cases: Vec<(String, Vec<String>, &str)> = vec![
        (s(tmp.path()), vec![], "not a run directory"),
        (
            s(&run),
            vec![
                "--suite".into(),
                write(
                    "split.toml",
                    "name = \"x\"\n[[cases]]\nname = \"t\"\nsplit = \"validation\"\n",
                ),
            ],
            "split `validation` is not one of test, val, train",
        ),
        (
            s(&run),
            vec![
                "--suite".into(),
                write(
                    "labels.toml",
                    &format!(
                        "name = \"x\"\n[[cases]]\nname = \"t\"\ndataset = \"{}\"\n",
                        s(&repo().join("configs/data/banking77.toml"))
                    ),
                ),
            ],
            "differs from the run's",
        ),
        (
            s(&run),
            vec![
                "--suite".into(),
                write(
                    "gate.toml",
                    "name = \"x\"\n[[cases]]\nname = \"t\"\ngates = [\"acuracy >= 0.5\"]\n",
                ),
            ],
            "did you mean `accuracy`",
        ),
        (
            s(&run),
            vec![
                "--suite".into(),
                write(
                    "oos.toml",
                    "name = \"x\"\n[[cases]]\nname = \"t\"\noos-label = \"oos\"\n",
                ),
            ],
            "oos-label `oos` is not a label",
        ),
    ];
    // A run directory whose model is gone.
    let broken = tmp.path().join("broken");
    std::fs::create_dir_all(&broken).expect("mkdir");
    std::fs::copy(
        run.join("config.resolved.toml"),
        broken.join("config.resolved.toml"),
    )
    .expect("copy");
    let o = distill(&["eval", &s(&broken)]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("no trained model"), "{}", stderr(&o));
    for (dir, extra, expect) in cases {
        let mut args = vec!["eval".to_string(), dir];
        args.extend(extra);
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let o = distill(&refs);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        assert!(
            stderr(&o).contains(expect),
            "{args:?}: expected {expect:?} in {}",
            stderr(&o)
        );
    }
}
