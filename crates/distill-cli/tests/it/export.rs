//! `distill export` + `distill predict`: every example config exports, the
//! ONNX graphs match burn in the real onnxruntime, int8 keeps accuracy at a
//! quarter of the size, and bad bundles are refused.

use super::{distill, last_line_path, ok, repo, stderr};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::Command;

fn s(p: &Path) -> String {
    p.to_str().expect("utf8").to_string()
}

/// The onnxruntime venv's python (installed on first use, cached outside the clone).
fn python() -> String {
    distill_testkit::install::onnx_python()
}

pub(super) fn parity(py: &str, bundle: &Path) -> Value {
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

/// An sms_spam bag run under `dir`, trained with these `--set` overrides.
fn sms_run(dir: &Path, sets: &[&str]) -> PathBuf {
    let mut args = vec![
        "train".to_string(),
        "configs/exp/sms_spam-bag.toml".into(),
        "--experiments".into(),
        s(dir),
    ];
    for set in sets {
        args.extend(["--set".to_string(), set.to_string()]);
    }
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    last_line_path(&ok(&refs))
}

fn export(run: &Path, format: &str, quantize: &str) -> PathBuf {
    last_line_path(&ok(&[
        "export",
        &s(run),
        "--format",
        format,
        "--quantize",
        quantize,
        "--verify-rows",
        "200",
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
    let run = sms_run(tmp.path(), &["train.max-steps=10"]);
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

/// Rewrite a bundle's manifest (and reseal it, so that only the check under
/// test can refuse it); `rehash` lists files whose entries follow their content.
fn reseal(
    bundle: &Path,
    rehash: &[&str],
    edit: impl FnOnce(&mut distill_core::bundle::BundleManifest),
) {
    let path = bundle.join("bundle.json");
    let mut m: distill_core::bundle::BundleManifest =
        serde_json::from_slice(&std::fs::read(&path).expect("read")).expect("manifest");
    for name in rehash {
        let p = bundle.join(name);
        m.files.insert(
            name.to_string(),
            distill_core::bundle::FileEntry {
                sha256: distill_core::hash::sha256_file(&p).expect("hash"),
                bytes: std::fs::metadata(&p).expect("meta").len(),
            },
        );
    }
    edit(&mut m);
    std::fs::write(&path, m.to_sealed_bytes()).expect("write");
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("list") {
        let e = e.expect("entry");
        std::fs::copy(e.path(), to.join(e.file_name())).expect("copy");
    }
}

fn refused(bundle: &Path, expect: &str) {
    let o = distill(&["predict", "--bundle", &s(bundle), "hello"]);
    assert_eq!(
        o.status.code(),
        Some(2),
        "{}: {}",
        bundle.display(),
        stderr(&o)
    );
    assert!(
        stderr(&o).contains(expect),
        "expected `{expect}`: {}",
        stderr(&o)
    );
    assert!(!stderr(&o).contains("panicked"), "{}", stderr(&o));
}

#[test]
fn hostile_bundles_are_refused_with_exit_2() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let run = sms_run(tmp.path(), &["train.max-steps=10", "model.buckets=4096"]);
    let good = export(&run, "burn", "none");
    ok(&["predict", "--bundle", &s(&good), "hello"]);
    let case = |name: &str| {
        let dir = tmp.path().join(name);
        copy_dir(&good, &dir);
        dir
    };
    // An entry removed from bundle.json (without resealing) no longer switches its check off.
    let b = case("entry-removed");
    let path = b.join("bundle.json");
    let mut raw: Value =
        serde_json::from_slice(&std::fs::read(&path).expect("read")).expect("json");
    raw["files"]
        .as_object_mut()
        .expect("files")
        .remove("weights.bpk");
    std::fs::write(&path, serde_json::to_vec(&raw).expect("json")).expect("write");
    refused(&b, "modified after export");
    // Even resealed, the format's file set is required.
    let b = case("entry-removed-resealed");
    reseal(&b, &[], |m| {
        m.files.remove("weights.bpk");
    });
    refused(&b, "weights.bpk is missing from the file list");
    // Names outside the bundle.
    for (i, name) in ["../outside.bpk", "/etc/passwd", ".hidden"]
        .iter()
        .enumerate()
    {
        let b = case(&format!("name-{i}"));
        reseal(&b, &[], |m| {
            let e = m.files["labels.json"].clone();
            m.files.insert(name.to_string(), e);
        });
        refused(&b, "not a plain file name");
    }
    // A symlink to /dev/zero where the weights were, and a FIFO.
    let b = case("devzero");
    std::fs::remove_file(b.join("weights.bpk")).expect("rm");
    std::os::unix::fs::symlink("/dev/zero", b.join("weights.bpk")).expect("symlink");
    refused(&b, "not a regular file");
    let b = case("fifo");
    std::fs::remove_file(b.join("weights.bpk")).expect("rm");
    let st = Command::new("mkfifo")
        .arg(b.join("weights.bpk"))
        .status()
        .expect("mkfifo");
    assert!(st.success());
    refused(&b, "not a regular file");
    // Invalid specs in model.json, each resealed so that only validation can refuse it.
    for (i, (key, value, expect)) in [
        ("dim", json!(0), "dim must be > 0"),
        ("max-features", json!(0), "max-features must be >= 1"),
        ("char-ngrams", json!([0, 3]), "char-ngrams"),
        ("buckets", json!(1u64 << 40), "exceeds the limit"),
        ("word-ngrams", json!(1_000_000), "exceeds the limit"),
    ]
    .into_iter()
    .enumerate()
    {
        let b = case(&format!("spec-{i}"));
        let mp = b.join("model.json");
        let mut meta: Value =
            serde_json::from_slice(&std::fs::read(&mp).expect("read")).expect("json");
        meta["spec"][key] = value;
        std::fs::write(&mp, serde_json::to_vec(&meta).expect("json")).expect("write");
        reseal(&b, &["model.json"], |_| {});
        refused(&b, expect);
    }
    // model.json of another kind than bundle.json says (an encoder behind a
    // "bag" manifest would read a tokenizer the manifest never listed).
    let b = case("kind-mismatch");
    let mp = b.join("model.json");
    let mut meta: Value = serde_json::from_slice(&std::fs::read(&mp).expect("read")).expect("json");
    meta["spec"] = json!({"kind": "encoder", "layers": 1, "d-model": 64, "heads": 4, "ff": 128, "max-len": 32});
    std::fs::write(&mp, serde_json::to_vec(&meta).expect("json")).expect("write");
    std::os::unix::fs::symlink("/dev/zero", b.join("tokenizer.json")).expect("symlink");
    reseal(&b, &["model.json"], |_| {});
    refused(&b, "bundle.json says `bag`");
    // An encoder spec with a million layers, or heads that do not divide
    // d-model (declared as an encoder bundle, with a tokenizer file listed).
    let b = case("encoder-spec");
    std::fs::copy(b.join("labels.json"), b.join("tokenizer.json")).expect("copy");
    meta["spec"]["layers"] = json!(1_000_000);
    let mp = b.join("model.json");
    std::fs::write(&mp, serde_json::to_vec(&meta).expect("json")).expect("write");
    reseal(&b, &["model.json", "tokenizer.json"], |m| {
        m.model_kind = "encoder".into()
    });
    refused(&b, "invalid model spec");
    let mut meta2 = meta.clone();
    meta2["spec"]["layers"] = json!(1);
    meta2["spec"]["heads"] = json!(3);
    std::fs::write(&mp, serde_json::to_vec(&meta2).expect("json")).expect("write");
    reseal(&b, &["model.json"], |_| {});
    refused(&b, "multiple of heads");
    // A large valid spec over a tiny weights file is refused before allocating.
    let b = case("weights-too-small");
    let mp = b.join("model.json");
    let mut meta: Value = serde_json::from_slice(&std::fs::read(&mp).expect("read")).expect("json");
    meta["spec"]["dim"] = json!(1024);
    meta["spec"]["buckets"] = json!(1 << 20);
    meta["vocab_size"] = json!(1 << 20);
    std::fs::write(&mp, serde_json::to_vec(&meta).expect("json")).expect("write");
    reseal(&b, &["model.json"], |_| {});
    refused(&b, "the weights do not belong to this model");
    // A bundle's config may not pull in other files.
    let b = case("extends");
    let cp = b.join("config.toml");
    let text = std::fs::read_to_string(&cp).expect("read");
    std::fs::write(&cp, format!("extends = [\"/etc/passwd\"]\n{text}")).expect("write");
    reseal(&b, &["config.toml"], |_| {});
    let o = distill(&["eval", &s(&b), "--suite", "configs/suites/sms_spam.toml"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("may not use `extends`"),
        "{}",
        stderr(&o)
    );
    // A run being written (locked) is not evaluated concurrently.
    let lock = distill_core::lock::DirLock::acquire(&run, "the test").expect("lock");
    let o = distill(&["eval", &s(&run), "--suite", "configs/suites/sms_spam.toml"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("is being written by the test"),
        "{}",
        stderr(&o)
    );
    drop(lock);
    // An oversized manifest is not read at all.
    let b = case("huge-manifest");
    let f = std::fs::File::options()
        .append(true)
        .open(b.join("bundle.json"))
        .expect("open");
    f.set_len(64 << 20).expect("grow");
    refused(&b, "allowed for this file");
}

#[test]
fn export_out_never_deletes_what_it_did_not_create() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let run = sms_run(tmp.path(), &["train.max-steps=5", "model.buckets=4096"]);
    let export_to =
        |out: &Path| distill(&["export", &s(&run), "--format", "burn", "--out", &s(out)]);
    // A directory with other things in it: refused, untouched.
    let keep = tmp.path().join("precious");
    std::fs::create_dir_all(keep.join("sub")).expect("mkdir");
    std::fs::write(keep.join("notes.txt"), "mine").expect("write");
    let o = export_to(&keep);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("is not a bundle"), "{}", stderr(&o));
    assert_eq!(
        std::fs::read_to_string(keep.join("notes.txt")).expect("kept"),
        "mine"
    );
    assert!(keep.join("sub").is_dir());
    // The run itself, and directories holding it (the experiment dir, `..`).
    for out in [
        run.clone(),
        run.parent().expect("exp").to_path_buf(),
        run.join(".."),
    ] {
        let o = export_to(&out);
        assert_eq!(
            o.status.code(),
            Some(2),
            "{}: {}",
            out.display(),
            stderr(&o)
        );
        assert!(
            stderr(&o).contains("it is the run or holds it"),
            "{}",
            stderr(&o)
        );
    }
    assert!(run.join("run.json").is_file() && run.join("model/model.json").is_file());
    // `--out .` in a working directory with files: refused.
    let o = Command::new(env!("CARGO_BIN_EXE_distill"))
        .args(["export", &s(&run), "--format", "burn", "--out", "."])
        .current_dir(&keep)
        .output()
        .expect("run");
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert_eq!(
        std::fs::read_to_string(keep.join("notes.txt")).expect("kept"),
        "mine"
    );
    // Absent, empty, and an existing bundle (replaced whole) are fine.
    let fresh = tmp.path().join("fresh");
    assert!(export_to(&fresh).status.success());
    let empty = tmp.path().join("empty");
    std::fs::create_dir(&empty).expect("mkdir");
    assert!(export_to(&empty).status.success());
    assert!(empty.join("bundle.json").is_file());
    let o = export_to(&fresh);
    assert!(
        o.status.success(),
        "re-export over a bundle: {}",
        stderr(&o)
    );
    ok(&["predict", "--bundle", &s(&fresh), "hello"]);
    // A bundle someone added files to: refused, their file kept.
    std::fs::write(fresh.join("mine.txt"), "x").expect("write");
    let o = export_to(&fresh);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("did not create"), "{}", stderr(&o));
    assert!(fresh.join("mine.txt").is_file());
    // An export killed between its two renames left the previous bundle as
    // `.NAME.old-PID` and no NAME: the next export puts it back (here it
    // then refuses to replace it, since someone's file is in it).
    std::fs::remove_file(fresh.join("mine.txt")).expect("rm");
    ok(&["export", &s(&run), "--format", "burn", "--out", &s(&fresh)]);
    std::fs::write(fresh.join("mine.txt"), "x").expect("write");
    let aside = tmp.path().join(".fresh.old-999999999");
    std::fs::rename(&fresh, &aside).expect("aside");
    let o = export_to(&fresh);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        fresh.join("mine.txt").is_file(),
        "the previous bundle was put back"
    );
    assert!(!aside.exists());
    std::fs::remove_file(fresh.join("mine.txt")).expect("rm");
    // No temporary directories are left beside the outputs.
    let leftovers: Vec<String> = std::fs::read_dir(tmp.path())
        .expect("list")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".tmp-") || n.contains(".old-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    // Bundles carry no absolute paths and no data rows unless asked.
    for f in std::fs::read_dir(&fresh).expect("list") {
        let f = f.expect("entry").path();
        let text = String::from_utf8_lossy(&std::fs::read(&f).expect("read")).into_owned();
        assert!(
            !text.contains(&s(tmp.path())),
            "{} holds an absolute path",
            f.display()
        );
        assert!(
            !text.contains("/shared/datasets"),
            "{} holds a dataset path",
            f.display()
        );
    }
    assert!(
        !fresh.join("verify.jsonl").exists(),
        "verify rows are opt-in"
    );
}

#[test]
fn preprocessing_travels_with_the_model() {
    use distill_core::hash::content_id;
    // sms_spam-bag trains behind the default curation: NFKC normalisation and
    // PII placeholders (<PHONE>: spam texts are full of phone numbers).
    let tmp = tempfile::tempdir().expect("tempdir");
    let run = sms_run(tmp.path(), &[]);
    let bundle = export(&run, "burn", "none");
    let m: Value =
        serde_json::from_slice(&std::fs::read(bundle.join("bundle.json")).expect("read"))
            .expect("json");
    let steps: Vec<&str> = m["preprocess"]
        .as_array()
        .expect("preprocess recorded in bundle.json")
        .iter()
        .filter_map(|s| s["type"].as_str())
        .collect();
    assert_eq!(steps, ["normalize", "redact-pii"]);
    let predictor =
        distill_export::BundlePredictor::load(&bundle, distill_model::device::DeviceKind::Cpu)
            .expect("load");
    // The raw test rows: raw texts whose curated form is in the curated test split.
    let data = repo().join("configs/data/sms_spam.toml");
    let raw = distill_data::open::open_dataset(&data, None).expect("raw");
    let curated =
        distill_data::open::open_dataset(&data, Some(&repo().join("configs/curate/default.toml")))
            .expect("curated");
    let test: std::collections::HashMap<String, (String, String)> = curated
        .examples
        .iter()
        .filter(|e| e.split == Some(distill_core::types::Split::Test))
        .map(|e| {
            (
                e.id.clone(),
                (e.text.clone(), e.label.clone().unwrap_or_default()),
            )
        })
        .collect();
    let pre = &predictor.manifest.preprocess;
    let rows: Vec<(&str, &str, &str)> = raw
        .examples
        .iter()
        .filter_map(|e| {
            let (text, label) = test.get(&content_id(&pre.apply(&e.text)))?;
            Some((e.text.as_str(), text.as_str(), label.as_str()))
        })
        .collect();
    assert!(rows.len() > 400, "{} raw test rows", rows.len());
    let changed = rows.iter().filter(|(r, c, _)| r != c).count();
    assert!(changed > 20, "only {changed} test rows changed by curation");
    let raw_texts: Vec<&str> = rows.iter().map(|r| r.0).collect();
    let cur_texts: Vec<&str> = rows.iter().map(|r| r.1).collect();
    let on_raw = predictor.predict(&raw_texts, 64);
    let on_curated = predictor.predict(&cur_texts, 64);
    // The predictor sees raw input exactly as training saw it.
    assert_eq!(on_raw, on_curated);
    // What serving raw text without the preprocessing would have cost.
    let model = predictor.model();
    let skewed = model.predict_seqs(&model.featurizer.encode_all(&raw_texts), 64);
    let labels = predictor.labels();
    let acc = |preds: &mut dyn Iterator<Item = String>| {
        let hits = preds.zip(&rows).filter(|(p, r)| p == r.2).count();
        hits as f64 / rows.len() as f64
    };
    let with = acc(&mut on_raw.iter().map(|p| p.label.clone().unwrap_or_default()));
    let argmax = |p: &Vec<f32>| {
        (0..p.len())
            .max_by(|&a, &b| p[a].total_cmp(&p[b]))
            .unwrap_or(0)
    };
    let without = acc(&mut skewed.iter().map(|p| labels[argmax(p)].clone()));
    let flipped = on_raw
        .iter()
        .zip(&skewed)
        .filter(|(a, b)| a.label.as_deref() != Some(labels[argmax(b)].as_str()))
        .count();
    eprintln!(
        "skew: {} raw test rows ({changed} changed by curation): accuracy {with:.4} with the model's preprocessing, {without:.4} without ({flipped} answers differ)",
        rows.len()
    );
    assert!(with >= without, "{with} vs {without}");
    // Eval on curated rows featurizes them as training did (the model's
    // preprocessing is not applied a second time): its test accuracy is the
    // run's own, to the last digit.
    // (Gates may pass or fail: exit 0 or 1; only the report matters here.)
    let o = distill(&["eval", &s(&run), "--suite", "configs/suites/sms_spam.toml"]);
    assert!(matches!(o.status.code(), Some(0 | 1)), "{}", stderr(&o));
    let out = last_line_path(&o);
    let r: Value =
        serde_json::from_slice(&std::fs::read(out.join("report.json")).expect("r")).expect("json");
    let info: Value =
        serde_json::from_slice(&std::fs::read(run.join("run.json")).expect("run")).expect("json");
    assert_eq!(
        r["cases"][0]["metrics"]["accuracy"].as_f64(),
        info["metrics"]["test_accuracy"].as_f64()
    );
}

#[test]
fn predict_bounds_stdin_lines_and_survives_a_closed_stdout() {
    use std::io::Write;
    let tmp = tempfile::tempdir().expect("tempdir");
    let run = sms_run(tmp.path(), &["train.max-steps=5", "model.buckets=4096"]);
    let bundle = export(&run, "burn", "none");
    let run_predict = |input: Vec<u8>, keep_stdout: bool| {
        let mut child = Command::new(env!("CARGO_BIN_EXE_distill"))
            .args([
                "predict",
                "--bundle",
                &s(&bundle),
                "--max-line-bytes",
                "100",
            ])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn");
        if !keep_stdout {
            drop(child.stdout.take());
        }
        let mut stdin = child.stdin.take().expect("stdin");
        let _ = stdin.write_all(&input);
        drop(stdin);
        child.wait_with_output().expect("wait")
    };
    // A line over the bound is reported and skipped; the lines around it are answered.
    let mut input = b"hello there\n".to_vec();
    input.extend(std::iter::repeat_n(b'x', 5000));
    input.extend(b"\nwin a prize\n");
    let o = run_predict(input, true);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(String::from_utf8_lossy(&o.stdout).lines().count(), 2);
    assert!(
        stderr(&o).contains("stdin line 2: 5001 bytes, longer than --max-line-bytes 100"),
        "{}",
        stderr(&o)
    );
    // Nobody reads stdout: no panic, no crash.
    let o = run_predict(b"hello\n".repeat(5000), false);
    assert!(!stderr(&o).contains("panicked"), "{}", stderr(&o));
    assert_ne!(o.status.code(), Some(101));
}

/// The bag's inference path pools on the host and runs only the head in
/// burn; it gives burn's full forward (gather, masked mean, head), on real
/// texts, fp32 and int8 weights alike.
#[test]
fn host_pooled_bag_inference_matches_the_burn_forward() {
    use distill_model::artifact::{Predictor, predict_proba};
    let tmp = tempfile::tempdir().expect("tempdir");
    let run = sms_run(tmp.path(), &["train.max-steps=40"]);
    let rows = super::sms_spam_rows();
    let mut texts: Vec<&str> = rows.iter().take(300).map(|(t, _)| t.as_str()).collect();
    texts.extend(["", " ", "ok"]);
    for q in ["none", "int8"] {
        let bundle = last_line_path(&ok(&[
            "export",
            &s(&run),
            "--format",
            "burn",
            "--quantize",
            q,
        ]));
        let p = Predictor::load(&bundle, distill_model::device::DeviceKind::Cpu).expect("load");
        assert!(p.pools_on_host(), "{q}");
        let seqs = p.encode_texts(&texts);
        let host = p.predict_seqs(&seqs, 64);
        let full = predict_proba(&p.model, &seqs, p.meta.task, 64, &p.device);
        assert_eq!(host.len(), full.len());
        let mut worst = 0f32;
        for (h, f) in host.iter().zip(&full) {
            for (a, b) in h.iter().zip(f) {
                worst = worst.max((a - b).abs());
            }
        }
        assert!(worst <= 1e-5, "{q}: max abs diff {worst}");
    }
}

/// A pruned banking77 bag: `--max-bytes` keeps the whole bundle within the
/// budget, the ONNX graphs over the compact table match burn in onnxruntime
/// (ids remapped by the featurizer, as verify.jsonl records them), the burn
/// bundle predicts with no run directory, and a tampered remap is refused.
#[test]
fn pruned_bag_fits_its_budget_and_matches_onnxruntime() {
    let py = python();
    let tmp = tempfile::tempdir().expect("tempdir");
    let run = last_line_path(&ok(&[
        "train",
        "configs/exp/banking77-bag.toml",
        "--experiments",
        &s(tmp.path()),
        "--set",
        "train.epochs=4",
    ]));
    let unpruned = json_file(&run.join("run.json"))["metrics"]["test_accuracy"]
        .as_f64()
        .expect("acc");
    for (format, q, budget) in [
        ("onnx", "none", None),
        ("onnx", "int8", Some(300_000u64)),
        ("burn", "int8", Some(300_000)),
    ] {
        let out = tmp.path().join(format!("b-{format}-{q}"));
        let mut args = vec![
            "export".to_string(),
            s(&run),
            "--format".into(),
            format.into(),
            "--quantize".into(),
            q.into(),
            "--verify-rows".into(),
            "200".into(),
            "--out".into(),
            s(&out),
        ];
        match budget {
            Some(b) => args.extend(["--max-bytes".into(), format!("{}KB", b / 1000)]),
            None => args.extend(["--prune-rows".into(), "3000".into()]),
        }
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let o = ok(&refs);
        assert!(stderr(&o).contains("pruned to"), "{}", stderr(&o));
        let manifest = json_file(&out.join("bundle.json"));
        let total: u64 = std::fs::read_dir(&out)
            .expect("bundle")
            .map(|e| e.expect("entry"))
            .filter(|e| e.file_name() != "verify.jsonl")
            .map(|e| e.metadata().expect("meta").len())
            .sum();
        if let Some(b) = budget {
            assert!(total <= b, "{format} {q}: {total} bytes > {b}");
            assert!(
                total >= b * 8 / 10,
                "{format} {q}: {total} bytes: budget barely used"
            );
        }
        let rows = manifest["metrics"]["pruned_rows"].as_f64().expect("rows");
        let acc = manifest["metrics"]["test_accuracy"].as_f64().expect("acc");
        assert!(rows >= 1000.0, "{rows}");
        assert!(
            acc > unpruned - 0.08 && manifest["metrics"]["unpruned_test_accuracy"] == unpruned,
            "{format} {q}: {acc} vs {unpruned}"
        );
        assert!(out.join("remap.bin").is_file());
        assert_eq!(manifest["featurizer"]["remap"]["rows"].as_f64(), Some(rows));
        if format == "onnx" {
            let p = parity(&py, &out);
            assert_eq!(p["rows"], 200);
            if q == "none" {
                assert!(p["max_abs_diff"].as_f64().expect("diff") <= 1e-4, "{p}");
            } else {
                assert!(p["top1_agreement"].as_f64().expect("agr") >= 0.9, "{p}");
            }
        } else {
            // Predicts without the run; a text none of whose features were
            // kept still gets an answer (the head's bias alone).
            let o = ok(&[
                "predict",
                "--bundle",
                &s(&out),
                "my card was declined",
                "zzqx",
            ]);
            let lines: Vec<Value> = String::from_utf8_lossy(&o.stdout)
                .lines()
                .map(|l| serde_json::from_str(l).expect("jsonl"))
                .collect();
            assert_eq!(lines.len(), 2);
            // A remap.bin that is not the one model.json records is refused.
            let remap = out.join("remap.bin");
            let mut bytes = std::fs::read(&remap).expect("remap");
            bytes.swap(0, 4);
            std::fs::write(&remap, bytes).expect("write");
            let o = distill(&["predict", "--bundle", &s(&out), "hello"]);
            assert!(!o.status.success());
            assert!(stderr(&o).contains("remap.bin"), "{}", stderr(&o));
        }
    }
    // Without room for even one row, a clear error.
    let o = distill(&[
        "export",
        &s(&run),
        "--max-bytes",
        "2KB",
        "--out",
        &s(&tmp.path().join("tiny")),
    ]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("does not fit"), "{}", stderr(&o));
}

fn json_file(p: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(p).expect("read")).expect("json")
}
