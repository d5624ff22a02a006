//! The quickstart end to end: `distill demo` on a reduced size.

use super::ok;
use serde_json::Value;

#[test]
fn demo_runs_end_to_end_and_its_artifacts_agree() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = tmp.path().join("demo");
    let o = ok(&[
        "demo",
        "--out",
        out.to_str().expect("utf8"),
        "--tickets",
        "2500",
        "--teacher-epochs",
        "8",
    ]);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.contains("teacher vs students"), "{stdout}");
    let s: Value =
        serde_json::from_slice(&std::fs::read(out.join("summary.json")).expect("summary"))
            .expect("json");
    // Bundle predictions equal run predictions.
    assert_eq!(s["bundle_agrees_with_run"], s["fresh_tickets"], "{s}");
    for b in s["bundles"].as_array().expect("bundles") {
        let dir = std::path::Path::new(b.as_str().expect("path"));
        assert!(dir.join("bundle.json").is_file(), "{}", dir.display());
    }
    assert!(
        out.join("experiments/demo-student-distilled/student/bundles/onnx-int8/model.onnx")
            .is_file()
    );
    assert!(out.join("teachers/encoder/logs.jsonl").is_file());
    // The demo's point: the distilled student beats the same student trained
    // on the 20% gold alone. Measured at this size (seeds 1 and 2): +18.8 and
    // +9.9 points; the assertion leaves room for the teacher's run-to-run
    // variability (tokenizer ties) but fails if distillation stops helping.
    let models = s["models"].as_array().expect("models");
    let acc = |i: usize| models[i]["metrics"]["accuracy"].as_f64().expect("accuracy");
    assert!(
        acc(1) - acc(2) > 0.03,
        "distilled {} vs gold-only {}",
        acc(1),
        acc(2)
    );
    assert_eq!(s["distillation_helps"], true);
    assert!(
        s["verdict"]
            .as_str()
            .expect("verdict")
            .starts_with("distillation helps"),
        "{}",
        s["verdict"]
    );
    // Redaction ran on the synthetic PII.
    let curated: Value = serde_json::from_slice(
        &std::fs::read(out.join("data/curated/dataset.json")).expect("dataset"),
    )
    .expect("json");
    let redactions = &curated["curation"]["redactions"];
    assert!(
        redactions["email"].as_u64().unwrap_or(0) > 0
            && redactions["phone"].as_u64().unwrap_or(0) > 0,
        "{redactions}"
    );
}
