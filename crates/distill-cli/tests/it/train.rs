//! `distill train`: every example config, exact resume after SIGKILL,
//! distillation from a teacher file, and the bad-input cases.

use super::{distill, ok, repo, stderr};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

fn run_dir(out: &std::process::Output) -> PathBuf {
    super::last_line_path(out)
}

fn run_json(dir: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(dir.join("run.json")).expect("run.json")).expect("json")
}

fn train_args<'a>(config: &'a str, exp: &'a Path, sets: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "train",
        config,
        "--experiments",
        exp.to_str().expect("utf8"),
    ];
    for s in sets {
        args.push("--set");
        args.push(s);
    }
    args
}

fn train(config: &str, exp: &Path, sets: &[&str]) -> std::process::Output {
    distill(&train_args(config, exp, sets))
}

#[test]
fn every_example_config_trains() {
    let exp = tempfile::tempdir().expect("tempdir");
    let mut configs: Vec<PathBuf> = std::fs::read_dir(repo().join("configs/exp"))
        .expect("configs/exp")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    configs.sort();
    assert!(configs.len() >= 6, "{configs:?}");
    for config in &configs {
        let name = config.to_str().expect("utf8");
        // A short run of each: the real pipeline (import, curation, tokenizer,
        // training, validation, test, model export), few steps.
        let out = train(name, exp.path(), &["train.epochs=1", "train.max-steps=25"]);
        assert!(out.status.success(), "{name}: {}", stderr(&out));
        let dir = run_dir(&out);
        let run = run_json(&dir);
        assert_eq!(run["status"], "completed", "{name}");
        assert_eq!(run["steps"], 25, "{name}");
        assert!(run["params"].as_u64().expect("params") > 1000, "{name}");
        assert!(
            !run["lineage"]["dataset_sha256"]
                .as_str()
                .expect("sha")
                .is_empty()
        );
        let m = &run["metrics"];
        for key in ["val_accuracy", "val_macro_f1", "val_loss", "examples_per_s"] {
            let v = m[key].as_f64().unwrap_or(f64::NAN);
            assert!(v.is_finite() && v >= 0.0, "{name}: {key} = {v}");
        }
        let model = dir.join("model");
        assert!(model.join("weights.bpk").exists() && model.join("model.json").exists());
        let meta: Value =
            serde_json::from_slice(&std::fs::read(model.join("model.json")).expect("meta"))
                .expect("json");
        if meta["spec"]["kind"] == "encoder" {
            assert!(model.join("tokenizer.json").exists());
        }
        let lines = std::fs::read_to_string(dir.join("metrics.jsonl")).expect("metrics");
        assert_eq!(lines.lines().count(), 1, "{name}: one epoch, one line");
        assert!(dir.join("config.resolved.toml").exists());
    }
}

#[test]
fn bag_learns_banking77() {
    // A full (short) training run must actually learn: 77 classes, chance is 1.3%.
    let exp = tempfile::tempdir().expect("tempdir");
    let out = train(
        "configs/exp/banking77-bag.toml",
        exp.path(),
        &["train.epochs=4"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let run = run_json(&run_dir(&out));
    let acc = run["metrics"]["test_accuracy"].as_f64().expect("test acc");
    assert!(acc > 0.80, "test accuracy {acc}");
}

/// Start a run, SIGKILL it once a mid-run checkpoint exists, resume it, and
/// compare with an uninterrupted run of the same config and seed.
fn kill_and_resume(sets: &[&str]) {
    let exp = tempfile::tempdir().expect("tempdir");
    let config = "configs/exp/banking77-bag.toml";
    let full = train(config, &exp.path().join("full"), sets);
    assert!(full.status.success(), "{}", stderr(&full));
    let full_dir = run_dir(&full);

    let killed_root = exp.path().join("killed");
    let args = train_args(config, &killed_root, sets);
    let mut child = super::spawn(&args);
    let started = Instant::now();
    let killed_dir = loop {
        let found = std::fs::read_dir(killed_root.join("banking77-bag"))
            .ok()
            .and_then(|mut d| d.next())
            .and_then(|e| e.ok())
            .map(|e| e.path());
        if let Some(dir) = &found
            && std::fs::read_dir(dir.join("checkpoints"))
                .map(|d| {
                    d.flatten()
                        .any(|e| e.file_name().to_string_lossy().starts_with("step-"))
                })
                .unwrap_or(false)
        {
            break found.expect("dir");
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "no checkpoint appeared"
        );
        assert!(
            child.try_wait().expect("wait").is_none(),
            "run ended before it could be killed"
        );
        std::thread::sleep(Duration::from_millis(5));
    };
    child.kill().expect("SIGKILL"); // Child::kill sends SIGKILL on Unix
    child.wait().expect("reap");
    assert_eq!(run_json(&killed_dir)["status"], "running", "killed mid-run");

    let resumed = ok(&["train", "--resume", killed_dir.to_str().expect("utf8")]);
    assert_eq!(run_dir(&resumed), killed_dir);
    let a = run_json(&full_dir);
    let b = run_json(&killed_dir);
    assert_eq!(b["status"], "completed");
    assert_eq!(b["resumes"], 1);
    assert_eq!(a["steps"], b["steps"]);
    assert_eq!(a["best_epoch"], b["best_epoch"]);
    for key in [
        "val_accuracy",
        "val_macro_f1",
        "val_loss",
        "test_accuracy",
        "test_macro_f1",
        "test_loss",
    ] {
        assert_eq!(
            a["metrics"][key], b["metrics"][key],
            "{key} differs after resume"
        );
    }
    let lines = |d: &Path| -> Vec<(Value, Value)> {
        std::fs::read_to_string(d.join("metrics.jsonl"))
            .expect("metrics")
            .lines()
            .map(|l| {
                let v: Value = serde_json::from_str(l).expect("json");
                (v["step"].clone(), v["val_loss"].clone())
            })
            .collect()
    };
    assert_eq!(
        lines(&full_dir),
        lines(&killed_dir),
        "per-epoch validation differs"
    );
    // Same weights: identical probabilities. (The burnpack files themselves
    // differ: they record each parameter's random id.)
    use distill_model::artifact::Predictor;
    use distill_model::device::DeviceKind;
    let pa = Predictor::load(&full_dir.join("model"), DeviceKind::Cpu).expect("load");
    let pb = Predictor::load(&killed_dir.join("model"), DeviceKind::Cpu).expect("load");
    let texts = [
        "my card was declined",
        "how do I top up by bank transfer?",
        "lost my phone",
    ];
    assert_eq!(
        pa.predict_proba(&texts, 8),
        pb.predict_proba(&texts, 8),
        "final weights differ after resume"
    );
}

#[test]
fn resume_after_sigkill_matches_uninterrupted_dense() {
    // burn's dense embedding path: model + AdamW state through burnpack.
    kill_and_resume(&[
        "train.sparse-embeddings=false",
        "train.epochs=2",
        "train.max-steps=150",
        "train.checkpoint-every=10",
        "model.buckets=16384",
    ]);
}

#[test]
fn resume_after_sigkill_matches_uninterrupted_sparse() {
    // The host-side sparse embedding and its row-wise Adagrad state (the
    // banking77 config's), with dropout.
    kill_and_resume(&[
        "train.epochs=6",
        "train.checkpoint-every=25",
        "model.hidden=64",
        "model.dropout=0.2",
    ]);
}

#[test]
fn resume_after_sigkill_matches_uninterrupted_sparse_adam() {
    // The lazy-Adam state (two moments per weight), every epoch checkpointed.
    kill_and_resume(&[
        "train.epochs=4",
        "train.sparse-optimizer=adam",
        "train.checkpoint-every=25",
        "train.checkpoint-seconds=0",
    ]);
}

#[test]
fn distills_from_a_teacher_file_with_unlabelled_rows() {
    // banking77 with a third of its train rows made unlabelled, and a teacher
    // file of soft labels (peaked on the true intent) over all train rows: the
    // unlabelled rows learn from the teacher term alone.
    use distill_core::types::Split;
    let tmp = tempfile::tempdir().expect("tempdir");
    let ds = tmp.path().join("ds");
    ok(&[
        "data",
        "import",
        "--config",
        "configs/data/banking77.toml",
        "--out",
        ds.to_str().expect("utf8"),
    ]);
    let mut dataset = distill_data::dataset::Dataset::load(&ds).expect("load");
    let labels = dataset.manifest.labels.clone();
    let mut teacher = String::new();
    let mut unlabelled = 0;
    for (i, ex) in dataset.examples.iter_mut().enumerate() {
        if ex.split != Some(Split::Train) {
            continue;
        }
        let gold = ex.label.clone().expect("gold");
        let mut probs = serde_json::Map::new();
        for l in &labels {
            let p = if *l == gold {
                0.8
            } else {
                0.2 / (labels.len() - 1) as f64
            };
            probs.insert(l.clone(), p.into());
        }
        teacher.push_str(&serde_json::json!({"id": ex.id, "probs": probs}).to_string());
        teacher.push('\n');
        if i % 3 == 0 {
            ex.label = None;
            ex.split = Some(Split::Unlabeled);
            unlabelled += 1;
        }
    }
    assert!(unlabelled > 2000);
    let ds2 = tmp.path().join("ds2");
    dataset.save(&ds2, &[]).expect("save");
    let tpath = tmp.path().join("teacher.jsonl");
    std::fs::write(&tpath, teacher).expect("write teacher");
    let exp = tmp.path().join("exp");
    let out = train(
        "configs/exp/banking77-bag.toml",
        &exp,
        &[
            &format!("teacher=\"{}\"", tpath.display()),
            &format!("dataset=\"{}\"", ds2.display()),
            "distill.alpha=0.7",
            "distill.temperature=2.0",
            "train.epochs=4",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let run = run_json(&run_dir(&out));
    assert_eq!(
        run["lineage"]["teacher_sha256"]
            .as_str()
            .expect("sha")
            .len(),
        64
    );
    let train_rows = run["counts"]["train"].as_u64().expect("n");
    // Every train row (labelled or not) has a teacher distribution.
    assert_eq!(run["counts"]["teacher"].as_u64().expect("n"), train_rows);
    assert!(train_rows > 8000);
    let acc = run["metrics"]["test_accuracy"].as_f64().expect("acc");
    assert!(acc > 0.75, "test accuracy {acc}");
}

#[test]
fn bad_training_input_exits_2_with_clear_errors() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let exp = tmp.path().join("exp");
    let cfg = "configs/exp/banking77-bag.toml";

    let out = train(cfg, &exp, &["dataset=\"/nonexistent/banking\""]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("/nonexistent/banking does not exist"),
        "{}",
        stderr(&out)
    );

    let out = train(cfg, &exp, &["train.val-fraction=0.0"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("validation split is empty"),
        "{}",
        stderr(&out)
    );

    let teacher = tmp.path().join("t.jsonl");
    std::fs::write(
        &teacher,
        "{\"id\": \"x\", \"probs\": {\"card_arival\": 1.0}}\n",
    )
    .expect("write");
    let out = train(cfg, &exp, &[&format!("teacher=\"{}\"", teacher.display())]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.contains("t.jsonl:1") && err.contains("`card_arival`") && err.contains("card_arrival"),
        "{err}"
    );

    let out = train(cfg, &exp, &["train.batch-size=100000000"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("lower train.batch-size"),
        "{}",
        stderr(&out)
    );

    let out = train(
        cfg,
        &exp,
        &[
            "train.lr=1e30",
            "train.grad-clip=0",
            "train.sparse-embeddings=false",
            "train.checkpoint-every=1",
            "model.buckets=4096",
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("training diverged"), "{err}");
    // The run is marked failed with the reason (other failed runs of this
    // test, e.g. the batch-size one, sit beside it).
    let diverged = std::fs::read_dir(exp.join("banking77-bag"))
        .expect("runs")
        .flatten()
        .map(|e| run_json(&e.path()))
        .filter(|r| r["status"] == "failed")
        .any(|r| r["error"].as_str().is_some_and(|e| e.contains("diverged")));
    assert!(diverged, "no failed run records the divergence");

    let out = train(cfg, &exp, &["model.kind=\"transformer\""]);
    assert_eq!(out.status.code(), Some(2));

    let out = distill(&[
        "train",
        cfg,
        "--device",
        "wgpu",
        "--experiments",
        exp.to_str().expect("utf8"),
    ]);
    if !cfg!(feature = "wgpu") {
        assert_eq!(out.status.code(), Some(2));
        assert!(stderr(&out).contains("--features wgpu"), "{}", stderr(&out));
    }
}

/// A small two-label dataset (train rows only; validation is carved) and a
/// teacher file of soft labels for every row.
fn tiny_dataset(dir: &Path) -> (PathBuf, PathBuf) {
    let csv = dir.join("tiny.csv");
    let mut text = String::from("text,label\n");
    for i in 0..120 {
        text.push_str(&format!("my card {i} was declined at the shop,card\n"));
        text.push_str(&format!("please reset password {i} for my login,login\n"));
    }
    std::fs::write(&csv, text).expect("write");
    let ds = dir.join("ds");
    ok(&[
        "data",
        "import",
        csv.to_str().expect("utf8"),
        "--text",
        "text",
        "--label",
        "label",
        "--split",
        "train",
        "--out",
        ds.to_str().expect("utf8"),
    ]);
    let dataset = distill_data::dataset::Dataset::load(&ds).expect("load");
    let mut teacher = String::new();
    for ex in &dataset.examples {
        let card = if ex.label.as_deref() == Some("card") {
            0.9
        } else {
            0.1
        };
        teacher.push_str(
            &serde_json::json!({"id": ex.id, "probs": {"card": card, "login": 1.0 - card}})
                .to_string(),
        );
        teacher.push('\n');
    }
    let tpath = dir.join("teacher.jsonl");
    std::fs::write(&tpath, teacher).expect("write teacher");
    (ds, tpath)
}

fn mark_failed(run: &Path) {
    let path = run.join("run.json");
    let mut info = run_json(run);
    info["status"] = "failed".into();
    std::fs::write(&path, serde_json::to_vec_pretty(&info).expect("json")).expect("write");
}

#[test]
fn resume_refuses_a_locked_run_and_a_changed_teacher() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (ds, teacher) = tiny_dataset(tmp.path());
    let exp = tmp.path().join("exp");
    let dataset = format!("dataset=\"{}\"", ds.display());
    let teacher_set = format!("teacher=\"{}\"", teacher.display());
    let out = train(
        "configs/exp/banking77-bag.toml",
        &exp,
        &[
            &dataset,
            &teacher_set,
            "model.buckets=4096",
            "train.epochs=1",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let dir = run_dir(&out);
    // Lineage holds the hashes of the files actually read.
    let run = run_json(&dir);
    let sha = |p: &Path| distill_core::hash::sha256_file(p).expect("hash");
    assert_eq!(
        run["lineage"]["dataset_sha256"],
        sha(&ds.join("examples.parquet"))
    );
    assert_eq!(run["lineage"]["teacher_sha256"], sha(&teacher));
    mark_failed(&dir);
    let resume = ["train", "--resume", dir.to_str().expect("utf8")];

    // Locked by another process: fail at once, touch nothing.
    let lock = distill_core::lock::DirLock::acquire(&dir, "the test").expect("lock");
    let before = super::snapshot(&dir);
    let started = Instant::now();
    let out = distill(&resume);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("is being written by the test (pid"),
        "{}",
        stderr(&out)
    );
    assert!(started.elapsed() < Duration::from_secs(20));
    assert_eq!(super::snapshot(&dir), before, "the locked run changed");
    drop(lock);

    // A teacher log that changed since the run started.
    let original = std::fs::read_to_string(&teacher).expect("read");
    std::fs::write(&teacher, original.replacen("0.9", "0.8", 1)).expect("write");
    let out = distill(&resume);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let e = stderr(&out);
    assert!(
        e.contains(teacher.to_str().expect("utf8")) && e.contains("changed since the run started"),
        "{e}"
    );
    // The same teacher log resumes.
    std::fs::write(&teacher, original).expect("restore");
    let out = distill(&resume);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(run_json(&dir)["status"], "completed");
}

#[test]
fn resume_falls_back_from_a_damaged_checkpoint_with_a_warning() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (ds, _) = tiny_dataset(tmp.path());
    let exp = tmp.path().join("exp");
    let dataset = format!("dataset=\"{}\"", ds.display());
    let out = train(
        "configs/exp/banking77-bag.toml",
        &exp,
        &[
            &dataset,
            "model.buckets=4096",
            "train.epochs=2",
            "train.keep-checkpoints=2",
            "train.checkpoint-seconds=0",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let dir = run_dir(&out);
    let steps = run_json(&dir)["steps"].clone();
    mark_failed(&dir);
    let mut checkpoints: Vec<PathBuf> = std::fs::read_dir(dir.join("checkpoints"))
        .expect("checkpoints")
        .map(|e| e.expect("entry").path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("step-"))
        })
        .collect();
    checkpoints.sort();
    assert_eq!(checkpoints.len(), 2, "{checkpoints:?}");
    // Flip bytes in the middle of the newest weights: still a readable file.
    let weights = checkpoints[1].join("model.bpk");
    let mut bytes = std::fs::read(&weights).expect("read");
    let middle = bytes.len() / 2;
    for b in &mut bytes[middle..middle + 16] {
        *b ^= 0x5a;
    }
    std::fs::write(&weights, bytes).expect("write");
    // Leftovers of a killed writer.
    std::fs::write(dir.join(".distill-k1ll3d.tmp"), "half").expect("write");
    std::fs::create_dir_all(dir.join("checkpoints/.tmp-step-000000999")).expect("mkdir");
    std::fs::write(dir.join("notes.txt"), "mine").expect("write");

    let out = distill(&["train", "--resume", dir.to_str().expect("utf8")]);
    assert!(out.status.success(), "{}", stderr(&out));
    let e = stderr(&out);
    let name = |p: &Path| p.file_name().expect("name").to_string_lossy().into_owned();
    assert!(
        e.contains("warning: checkpoint")
            && e.contains(&name(&checkpoints[1]))
            && e.contains("model.bpk")
            && e.contains(&format!("falling back to {}", checkpoints[0].display())),
        "{e}"
    );
    let run = run_json(&dir);
    assert_eq!(run["status"], "completed");
    assert_eq!(run["steps"], steps, "the fallback redid the lost steps");
    assert!(!dir.join(".distill-k1ll3d.tmp").exists());
    assert!(!dir.join("checkpoints/.tmp-step-000000999").exists());
    assert!(dir.join("notes.txt").exists());
}

/// Multi-label distillation keeps the teacher's independent per-label
/// probabilities as BCE targets: a teacher 90% sure of two labels trains a
/// student that predicts both (renormalised to sum to 1 they would be 0.45
/// each, under the 0.5 cut-off). The student's probabilities are read back
/// with `distill teach` (a local teacher writes them, exact, to a log).
#[test]
fn multilabel_distillation_keeps_independent_teacher_probabilities() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    let words = [
        "printer", "badge", "laptop", "screen", "wifi", "login", "mouse", "desk",
    ];
    let (mut rows, mut teacher) = (String::new(), String::new());
    for i in 0..48 {
        let text = format!(
            "ticket {i}: the {} and the {} stopped working on floor {}",
            words[i % 8],
            words[(i / 8) % 8],
            i % 5
        );
        let split = if i < 36 { "train" } else { "val" };
        rows.push_str(
            &serde_json::json!({"text": text, "labels": ["a", "b"], "split": split}).to_string(),
        );
        rows.push('\n');
        if i == 0 {
            // Every label appears in the label set.
            rows.push_str(
                &serde_json::json!({"text": "other", "labels": ["c", "d"], "split": "val"})
                    .to_string(),
            );
            rows.push('\n');
        }
        let id = distill_core::hash::content_id(&text);
        teacher.push_str(
            &serde_json::json!({"id": id, "probs": {"a": 0.9, "b": 0.9, "c": 0.05, "d": 0.05}})
                .to_string(),
        );
        teacher.push('\n');
    }
    std::fs::write(dir.join("rows.jsonl"), rows).expect("write");
    std::fs::write(dir.join("teacher.jsonl"), teacher).expect("write");
    std::fs::write(
        dir.join("data.toml"),
        "name = \"ml\"\ntask = \"multilabel\"\n[[sources]]\npath = \"rows.jsonl\"\nformat = \"jsonl\"\ntext = \"text\"\nlabels = \"labels\"\nsplit-field = \"split\"\n",
    )
    .expect("write");
    // Teacher term only (alpha = 1): the student learns the teacher's targets.
    std::fs::write(
        dir.join("exp.toml"),
        "name = \"ml-student\"\ndataset = \"data.toml\"\nteacher = \"teacher.jsonl\"\nseed = 1\n[model]\nkind = \"bag\"\ndim = 8\nbuckets = 4096\nword-ngrams = 1\nchar-ngrams = [3, 3]\n[train]\nepochs = 40\nbatch-size = 8\nlr = 0.05\nweight-decay = 0.0\npatience = 0\nselect = \"val-loss\"\n[distill]\nalpha = 1.0\n",
    )
    .expect("write");
    let exp = dir.join("experiments");
    let out = train(dir.join("exp.toml").to_str().expect("utf8"), &exp, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let run = run_dir(&out);
    assert_eq!(run_json(&run)["counts"]["teacher"], 36);

    std::fs::write(
        dir.join("read.toml"),
        format!(
            "dataset = \"data.toml\"\nsplits = [\"train\"]\n[teacher]\nkind = \"local\"\nrun = \"{}\"\n",
            run.display()
        ),
    )
    .expect("write");
    let logs = dir.join("student-probs");
    ok(&[
        "teach",
        dir.join("read.toml").to_str().expect("utf8"),
        "--out",
        logs.to_str().expect("utf8"),
    ]);
    let records = super::jsonl(&logs.join("logs.jsonl"));
    assert_eq!(records.len(), 36);
    let mean = |label: &str| {
        records
            .iter()
            .map(|r| r["probs"][label].as_f64().expect("p"))
            .sum::<f64>()
            / records.len() as f64
    };
    for label in ["a", "b"] {
        assert!(
            mean(label) > 0.7,
            "p({label}) = {}: {records:?}",
            mean(label)
        );
    }
    for label in ["c", "d"] {
        assert!(mean(label) < 0.3, "p({label}) = {}", mean(label));
    }
    let both_on = records
        .iter()
        .filter(|r| r["labels"] == serde_json::json!(["a", "b"]))
        .count();
    assert_eq!(both_on, 36, "the student predicts both labels");
}

/// A completed run cannot be resumed: its checkpoints (weights and
/// optimizer state, ~3x the model each) are removed unless kept.
#[test]
fn a_completed_run_keeps_no_checkpoints_unless_asked() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (ds, _) = tiny_dataset(tmp.path());
    let exp = tmp.path().join("exp");
    let dataset = format!("dataset=\"{}\"", ds.display());
    let count = |dir: &Path| {
        std::fs::read_dir(dir.join("checkpoints"))
            .map(|d| {
                d.flatten()
                    .filter(|e| e.file_name().to_string_lossy().starts_with("step-"))
                    .count()
            })
            .unwrap_or(0)
    };
    for (keep, want) in [(None, 0), (Some(1), 1)] {
        let mut sets = vec![
            dataset.clone(),
            "model.buckets=4096".into(),
            "train.epochs=3".into(),
        ];
        if let Some(k) = keep {
            sets.push(format!("train.keep-checkpoints={k}"));
        }
        let sets: Vec<&str> = sets.iter().map(String::as_str).collect();
        let out = train("configs/exp/banking77-bag.toml", &exp, &sets);
        assert!(out.status.success(), "{}", stderr(&out));
        let dir = run_dir(&out);
        assert_eq!(run_json(&dir)["status"], "completed");
        assert_eq!(count(&dir), want, "keep-checkpoints {keep:?}");
        assert!(dir.join("model/weights.bpk").is_file());
    }
}

/// Without a val split, validation rows are carved out of train; a teacher
/// trained on all of train has seen them. The run records their ids, warns
/// when the teacher log covers them, and `distill teach` can skip them.
#[test]
fn a_teacher_covering_carved_validation_rows_is_flagged_and_teach_can_skip_them() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (ds, teacher) = tiny_dataset(tmp.path());
    let exp = tmp.path().join("exp");
    let out = train(
        "configs/exp/banking77-bag.toml",
        &exp,
        &[
            &format!("dataset=\"{}\"", ds.display()),
            &format!("teacher=\"{}\"", teacher.display()),
            "model.buckets=4096",
            "train.epochs=1",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let e = stderr(&out);
    assert!(
        e.contains("warning: the teacher log has soft labels for") && e.contains("val_ids.txt"),
        "{e}"
    );
    let dir = run_dir(&out);
    let info = run_json(&dir);
    let n_val = info["counts"]["val"].as_u64().expect("val");
    assert!(n_val > 0);
    assert_eq!(info["counts"]["val_with_teacher"], n_val);
    let ids = std::fs::read_to_string(dir.join("val_ids.txt")).expect("val_ids.txt");
    assert_eq!(ids.lines().count() as u64, n_val);

    // The teacher's own labelling skips them (here: plain soft labels by id).
    let cfg = tmp.path().join("teach.toml");
    std::fs::write(
        &cfg,
        format!(
            "dataset = \"{}\"\nexclude-ids = \"{}\"\n[teacher]\nkind = \"import\"\npath = \"{}\"\n",
            ds.display(),
            dir.display(),
            teacher.display()
        ),
    )
    .expect("write");
    let out_dir = tmp.path().join("t");
    let o = distill(&[
        "teach",
        cfg.to_str().expect("utf8"),
        "--out",
        out_dir.to_str().expect("utf8"),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains(&format!(
            "exclude-ids: {n_val} of 240 rows skipped ({n_val} ids listed)"
        )),
        "{}",
        stderr(&o)
    );
    let log = distill_core::teacher_log::read_log_lines(&out_dir.join("logs.jsonl")).expect("log");
    assert_eq!(log.records.len() as u64, 240 - n_val);
    assert!(log.records.iter().all(|r| !ids.lines().any(|l| l == r.id)));
}
