//! `distill export` + `distill predict`: every example config exports, the
//! ONNX graphs match burn in the real onnxruntime, int8 keeps accuracy at a
//! quarter of the size, and bad bundles are refused.

use super::{distill, last_line_path, ok, repo, stderr};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

fn s(p: &Path) -> String {
    p.to_str().expect("utf8").to_string()
}

/// The onnxruntime venv's python (installed on first use, cached outside the clone).
fn python() -> String {
    let out = Command::new("bash")
        .arg(repo().join("scripts/install-onnxruntime.sh"))
        .output()
        .expect("install onnxruntime");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn parity(py: &str, bundle: &Path) -> Value {
    let out = Command::new(py)
        .arg(repo().join("scripts/onnx_parity.py"))
        .arg(bundle)
        .output()
        .expect("run parity");
    assert!(
        out.status.success(),
        "{}: {}{}",
        bundle.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("json")
}

fn export(run: &Path, format: &str, quantize: &str) -> PathBuf {
    last_line_path(&ok(&[
        "export",
        &s(run),
        "--format",
        format,
        "--quantize",
        quantize,
    ]))
}

#[test]
fn every_example_config_exports_and_matches_onnxruntime() {
    let py = python();
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut configs: Vec<PathBuf> = std::fs::read_dir(repo().join("configs/exp"))
        .expect("configs")
        .map(|e| e.expect("entry").path())
        .collect();
    configs.sort();
    assert!(configs.len() >= 6);
    for config in configs {
        let name = config
            .file_stem()
            .expect("stem")
            .to_string_lossy()
            .into_owned();
        let encoder = name.contains("encoder");
        let mut args = vec![
            "train".to_string(),
            s(&config),
            "--experiments".into(),
            s(tmp.path()),
        ];
        let sets: &[&str] = if encoder {
            &[
                "train.max-steps=15",
                "model.tokenizer.vocab-size=1500",
                "model.layers=1",
            ]
        } else {
            &["train.max-steps=30", "model.buckets=8192"]
        };
        for set in sets {
            args.push("--set".into());
            args.push(set.to_string());
        }
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let run = last_line_path(&ok(&refs));
        for q in ["none", "int8"] {
            let bundle = export(&run, "onnx", q);
            let p = parity(&py, &bundle);
            assert_eq!(p["rows"], 200, "{name}");
            if q == "none" {
                assert!(
                    p["max_abs_diff"].as_f64().expect("diff") <= 1e-4,
                    "{name}: {p}"
                );
            } else {
                assert!(
                    p["top1_agreement"].as_f64().expect("agreement") >= 0.9,
                    "{name} int8: {p}"
                );
            }
        }
        // The burn bundle runs in `distill predict` with no run directory.
        let bundle = export(&run, "burn", "int8");
        let o = ok(&[
            "predict",
            "--bundle",
            &s(&bundle),
            "my card was declined",
            "",
        ]);
        let lines: Vec<Value> = String::from_utf8_lossy(&o.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).expect("jsonl"))
            .collect();
        assert_eq!(lines.len(), 2, "{name}");
        assert!(
            lines[0]["label"].is_string() || lines[0]["labels"].is_array(),
            "{name}: {}",
            lines[0]
        );
    }
}

#[test]
fn int8_keeps_banking77_accuracy_at_a_quarter_of_the_size() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let run = last_line_path(&ok(&[
        "train",
        "configs/exp/banking77-bag.toml",
        "--experiments",
        &s(tmp.path()),
    ]));
    // `latest` names the newest completed run of the experiment.
    let latest = run.parent().expect("experiment dir").join("latest");
    let out = last_line_path(&ok(&[
        "eval",
        &s(&latest),
        "--suite",
        "configs/suites/banking77.toml",
    ]));
    assert_eq!(out, run.join("eval").join("banking77"));
    let mut acc = Vec::new();
    let mut size = Vec::new();
    for q in ["none", "int8"] {
        let bundle = export(&run, "burn", q);
        let m: Value =
            serde_json::from_slice(&std::fs::read(bundle.join("bundle.json")).expect("read"))
                .expect("json");
        assert!(
            m["escalation"]["threshold"].as_f64().is_some(),
            "the eval's threshold ships"
        );
        assert!(m["calibration"]["temperature"].as_f64().is_some());
        size.push(m["files"]["weights.bpk"]["bytes"].as_f64().expect("bytes"));
        let out = last_line_path(&ok(&[
            "eval",
            &s(&bundle),
            "--suite",
            "configs/suites/banking77.toml",
        ]));
        let r: Value = serde_json::from_slice(&std::fs::read(out.join("report.json")).expect("r"))
            .expect("json");
        acc.push(r["cases"][0]["metrics"]["accuracy"].as_f64().expect("acc"));
    }
    let info: Value =
        serde_json::from_slice(&std::fs::read(run.join("run.json")).expect("run")).expect("json");
    assert_eq!(
        Some(acc[0]),
        info["metrics"]["test_accuracy"].as_f64(),
        "the fp32 bundle is the run"
    );
    assert!(
        acc[0] - acc[1] <= 0.01,
        "int8 loses at most 1 point: {acc:?}"
    );
    assert!(
        size[1] / size[0] <= 0.30,
        "int8 at most 30% of fp32: {size:?}"
    );
}

#[test]
fn tampered_old_or_wrong_format_bundles_are_refused() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let run = last_line_path(&ok(&[
        "train",
        "configs/exp/sms_spam-bag.toml",
        "--experiments",
        &s(tmp.path()),
        "--set",
        "train.max-steps=10",
    ]));
    let bundle = export(&run, "burn", "none");
    // Truncated weights.
    let copy = tmp.path().join("truncated");
    ok(&["export", &s(&run), "--format", "burn", "--out", &s(&copy)]);
    let w = copy.join("weights.bpk");
    let bytes = std::fs::read(&w).expect("read");
    std::fs::write(&w, &bytes[..bytes.len() / 2]).expect("write");
    let o = distill(&["predict", "--bundle", &s(&copy), "hello"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("sha256 mismatch"), "{}", stderr(&o));
    // A future schema version.
    let future = tmp.path().join("future");
    ok(&["export", &s(&run), "--format", "burn", "--out", &s(&future)]);
    let path = future.join("bundle.json");
    let mut m: Value = serde_json::from_slice(&std::fs::read(&path).expect("read")).expect("json");
    m["schema_version"] = 99.into();
    std::fs::write(&path, serde_json::to_vec(&m).expect("json")).expect("write");
    let o = distill(&["predict", "--bundle", &s(&future), "hello"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("schema version 99 is not supported"),
        "{}",
        stderr(&o)
    );
    // ONNX bundles are for onnxruntime.
    let onnx = export(&run, "onnx", "none");
    let o = distill(&["predict", "--bundle", &s(&onnx), "hello"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("runs in onnxruntime"), "{}", stderr(&o));
    // Not a run.
    let o = distill(&["export", &s(tmp.path())]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("no trained model"), "{}", stderr(&o));
    // Long inputs are truncated with a count; bad stdin lines are reported, others processed.
    let long = "card ".repeat(2000);
    let o = ok(&["predict", "--bundle", &s(&bundle), &long, "short"]);
    assert!(
        stderr(&o).contains("1 truncated to the model's max length"),
        "{}",
        stderr(&o)
    );
    let mut child = Command::new(env!("CARGO_BIN_EXE_distill"))
        .args(["predict", "--bundle", &s(&bundle)])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().expect("stdin");
        stdin
            .write_all(b"win a free prize now\n\xff\xfe\n{\"id\": 3, \"text\": \"see you at 5\"}\n")
            .expect("write");
    }
    let o = child.wait_with_output().expect("wait");
    assert!(o.status.success());
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(out.lines().count(), 2, "{out}");
    assert!(out.contains("\"id\":3"));
    assert!(String::from_utf8_lossy(&o.stderr).contains("stdin line 2: invalid UTF-8"));
}
