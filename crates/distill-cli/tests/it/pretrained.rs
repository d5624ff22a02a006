//! `model.kind = "pretrained"`: MiniLM-L6 (installed by
//! scripts/install-teachers.sh) on a small slice of banking77 trains in both
//! modes (frozen lower layers, and the fast mode on cached embeddings),
//! resumes exactly after SIGKILL, exports to ONNX that the real onnxruntime
//! matches (fp32 within 1e-4; int8 at under 30% of the size), predicts from a
//! burn bundle, and teaches a bag student as a local teacher.

use super::{distill, last_line_path, ok, repo, spawn, stderr};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

fn s(p: &Path) -> String {
    p.to_str().expect("utf8").to_string()
}

fn run_json(dir: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(dir.join("run.json")).expect("run.json")).expect("json")
}

/// 4 banking77 intents: 16 train rows and 6 test rows of each.
fn small_banking77(dir: &Path) -> PathBuf {
    let mut r = csv::Reader::from_path(repo().join("../shared/datasets/banking77/train.csv"))
        .expect("banking77");
    let labels = [
        "card_arrival",
        "lost_or_stolen_card",
        "top_up_failed",
        "exchange_rate",
    ];
    let mut rows: Vec<(String, String)> = Vec::new();
    for rec in r.records() {
        let rec = rec.expect("row");
        if labels.contains(&&rec[1]) {
            rows.push((rec[0].to_string(), rec[1].to_string()));
        }
    }
    let (mut train, mut test) = (
        csv::Writer::from_path(dir.join("train.csv")).expect("w"),
        csv::Writer::from_path(dir.join("test.csv")).expect("w"),
    );
    train.write_record(["text", "category"]).expect("w");
    test.write_record(["text", "category"]).expect("w");
    for l in labels {
        for (i, (t, _)) in rows.iter().filter(|(_, c)| c == l).take(22).enumerate() {
            let w = if i < 16 { &mut train } else { &mut test };
            w.write_record([t.as_str(), l]).expect("w");
        }
    }
    train.flush().expect("flush");
    test.flush().expect("flush");
    let config = dir.join("data.toml");
    std::fs::write(
        &config,
        format!(
            "name = \"b77-small\"\ntask = \"classify\"\nroot = \"{}\"\n\n[[sources]]\npath = \"train.csv\"\nsplit = \"train\"\ntext = \"text\"\nlabel = \"category\"\n\n[[sources]]\npath = \"test.csv\"\nsplit = \"test\"\ntext = \"text\"\nlabel = \"category\"\n",
            s(dir)
        ),
    )
    .expect("write");
    config
}

fn exp_config(dir: &Path, minilm: &str, freeze: usize) -> PathBuf {
    let path = dir.join(format!("minilm-freeze{freeze}.toml"));
    std::fs::write(
        &path,
        format!(
            "name = \"minilm-freeze{freeze}\"\ndataset = \"data.toml\"\nseed = 7\n\n[model]\nkind = \"pretrained\"\npath = \"{minilm}\"\nmax-len = 24\n\n[train]\nepochs = 3\nbatch-size = 8\nlr = {}\nfreeze-layers = {freeze}\nval-fraction = 0.2\ncheckpoint-seconds = 0\n",
            if freeze >= 6 { "2e-2" } else { "2e-4" }
        ),
    )
    .expect("write");
    path
}

#[test]
fn minilm_trains_resumes_exports_and_teaches() {
    let minilm = s(&distill_testkit::install::minilm_dir());
    let py = distill_testkit::install::onnx_python();
    let tmp = tempfile::tempdir().expect("tmp");
    let cache = tmp.path().join("cache");
    small_banking77(tmp.path());
    let exp = tmp.path().join("exp");

    // Fast mode: the embeddings are computed once, then come from the cache.
    let fast = exp_config(tmp.path(), &minilm, 6);
    let train_fast = || {
        Command::new(env!("CARGO_BIN_EXE_distill"))
            .args(["train", &s(&fast), "--experiments", &s(&exp)])
            .env("DISTILL_CACHE", &cache)
            .output()
            .expect("train")
    };
    let first = train_fast();
    assert!(first.status.success(), "{}", stderr(&first));
    assert!(stderr(&first).contains("embedded"), "{}", stderr(&first));
    let second = train_fast();
    assert!(
        stderr(&second).contains("from the cache"),
        "{}",
        stderr(&second)
    );
    let (a, b) = (last_line_path(&first), last_line_path(&second));
    assert_eq!(
        run_json(&a)["metrics"]["test_accuracy"],
        run_json(&b)["metrics"]["test_accuracy"],
        "cached embeddings train the same head"
    );
    let acc = run_json(&a)["metrics"]["test_accuracy"]
        .as_f64()
        .expect("acc");
    assert!(
        acc >= 0.75,
        "MiniLM + a head on 4 intents: test accuracy {acc}"
    );

    // Lower 4 layers frozen, top 2 fine-tuned: SIGKILL after the first
    // checkpoint, resume, and match an uninterrupted run exactly.
    let partial = exp_config(tmp.path(), &minilm, 4);
    let full = last_line_path(&ok(&[
        "train",
        &s(&partial),
        "--experiments",
        &s(&exp.join("full")),
    ]));
    let killed_root = exp.join("killed");
    let mut child = spawn(&[
        "train",
        &s(&partial),
        "--experiments",
        &s(&killed_root),
        "--set",
        "train.checkpoint-every=3",
    ]);
    let started = Instant::now();
    let killed = loop {
        let dir = std::fs::read_dir(killed_root.join("minilm-freeze4"))
            .ok()
            .and_then(|mut d| d.next())
            .and_then(|e| e.ok())
            .map(|e| e.path());
        if let Some(dir) = dir
            && std::fs::read_dir(dir.join("checkpoints"))
                .map(|d| {
                    d.flatten()
                        .any(|e| e.file_name().to_string_lossy().starts_with("step-"))
                })
                .unwrap_or(false)
        {
            break dir;
        }
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "no checkpoint appeared"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    child.kill().expect("SIGKILL");
    child.wait().expect("reap");
    assert_eq!(run_json(&killed)["status"], "running", "killed mid-run");
    ok(&["train", "--resume", &s(&killed)]);
    assert_eq!(run_json(&killed)["resumes"], 1);
    let (fa, ka) = (run_json(&full), run_json(&killed));
    assert_eq!(ka["status"], "completed");
    for key in ["val_loss", "test_accuracy", "test_loss"] {
        assert_eq!(
            fa["metrics"][key], ka["metrics"][key],
            "{key} differs after resume"
        );
    }

    // ONNX: fp32 matches burn in onnxruntime; int8 is small and agrees.
    let mut onnx_bytes = Vec::new();
    for q in ["none", "int8"] {
        let bundle = last_line_path(&ok(&[
            "export",
            &s(&full),
            "--format",
            "onnx",
            "--quantize",
            q,
            "--verify-rows",
            "24",
        ]));
        let p = super::export::parity(&py, &bundle);
        assert_eq!(p["rows"], 24);
        if q == "none" {
            assert!(p["max_abs_diff"].as_f64().expect("diff") <= 1e-4, "{p}");
        } else {
            assert!(p["top1_agreement"].as_f64().expect("agree") >= 0.9, "{p}");
        }
        onnx_bytes.push(
            std::fs::metadata(bundle.join("model.onnx"))
                .expect("onnx")
                .len(),
        );
    }
    assert!(
        (onnx_bytes[1] as f64) <= 0.30 * onnx_bytes[0] as f64,
        "int8 ONNX {} bytes vs fp32 {}",
        onnx_bytes[1],
        onnx_bytes[0]
    );

    // A burn bundle predicts with no run directory and no checkpoint directory.
    let bundle = last_line_path(&ok(&["export", &s(&full), "--format", "burn"]));
    let o = ok(&[
        "predict",
        "--bundle",
        &s(&bundle),
        "I still have not received my new card",
    ]);
    let line: Value = serde_json::from_str(
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .next()
            .expect("line"),
    )
    .expect("json");
    assert!(line["label"].is_string(), "{line}");

    // The fine-tuned run teaches: a local teacher over the same dataset.
    let teach = tmp.path().join("teach.toml");
    std::fs::write(
        &teach,
        format!("dataset = \"data.toml\"\nsplits = [\"train\"]\n\n[teacher]\nkind = \"local\"\nrun = \"{}\"\nbatch-size = 16\n", s(&full)),
    )
    .expect("write");
    let log = last_line_path(&ok(&[
        "teach",
        &s(&teach),
        "--out",
        &s(&tmp.path().join("teacher")),
    ]));
    let records = std::fs::read_to_string(log.join("logs.jsonl")).expect("logs");
    let first: Value =
        serde_json::from_str(records.lines().next().expect("a record")).expect("json");
    assert_eq!(records.lines().count(), 64);
    assert!(first["probs"].is_object(), "{first}");
    drop(distill(&["--version"]));
}
