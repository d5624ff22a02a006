//! End-to-end tests of the `distill` binary: real datasets from
//! `../shared/datasets`, and every bad-input case.

mod compare;
mod demo;
mod eval;
mod export;
mod extract;
mod pretrained;
mod serve;
mod serve_loop;
mod snapshots;
mod teach;
mod train;

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("repo root")
}

/// The rows of the real sms_spam file as (text, label), in file order.
fn sms_spam_rows() -> Vec<(String, String)> {
    let path = repo().join("../shared/datasets/sms_spam/SMSSpamCollection");
    std::fs::read_to_string(&path)
        .expect("sms_spam")
        .lines()
        .skip(1)
        .filter_map(|l| l.split_once('\t'))
        .map(|(label, text)| (text.to_string(), label.to_string()))
        .collect()
}

fn distill(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_distill"))
        .args(args)
        .current_dir(repo())
        .env("NO_COLOR", "1")
        .output()
        .expect("run distill")
}

/// Start `distill` in the background (for kill-and-resume tests).
fn spawn<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_distill"))
        .args(args)
        .current_dir(repo())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn distill")
}

/// The last stdout line: the output directory every producing command prints.
fn last_line_path(out: &Output) -> PathBuf {
    PathBuf::from(
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .last()
            .expect("stdout names the output directory")
            .trim(),
    )
}

fn ok(args: &[&str]) -> Output {
    let out = distill(args);
    assert!(
        out.status.success(),
        "distill {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn manifest(dir: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(dir.join("dataset.json")).expect("dataset.json"))
        .expect("json")
}

fn jsonl(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .expect("read jsonl")
        .lines()
        .map(|l| serde_json::from_str(l).expect("jsonl line"))
        .collect()
}

fn import_config(name: &str, out: &Path) -> Value {
    let config = format!("configs/data/{name}.toml");
    ok(&[
        "data",
        "import",
        "--config",
        &config,
        "--out",
        out.to_str().expect("utf8"),
    ]);
    manifest(out)
}

#[test]
fn banking77_imports_with_official_counts() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let m = import_config("banking77", tmp.path());
    assert_eq!(m["counts"]["train"], 10_003);
    assert_eq!(m["counts"]["test"], 3_080);
    assert_eq!(m["labels"].as_array().expect("labels").len(), 77);
    assert_eq!(m["rejected"], 0);
    assert_eq!(m["task"], "classify");
    assert_eq!(m["schema_version"], 1);
    for s in m["sources"].as_array().expect("sources") {
        assert_eq!(s["sha256"].as_str().expect("sha").len(), 64);
    }
    // Ids are content hashes: stable across runs and machines.
    let tmp2 = tempfile::tempdir().expect("tempdir");
    let m2 = import_config("banking77", tmp2.path());
    assert_eq!(m["examples_sha256"], m2["examples_sha256"]);
}

#[test]
fn clinc150_keeps_oos_as_a_label() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let m = import_config("clinc150", tmp.path());
    assert_eq!(m["counts"]["train"], 15_100);
    assert_eq!(m["counts"]["val"], 3_100);
    assert_eq!(m["counts"]["test"], 5_500);
    let labels: Vec<&str> = m["labels"]
        .as_array()
        .expect("labels")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(labels.len(), 151);
    assert!(labels.contains(&"oos"));
    let stats = ok(&[
        "data",
        "stats",
        tmp.path().to_str().expect("utf8"),
        "--format",
        "json",
    ]);
    let stats: Value = serde_json::from_slice(&stats.stdout).expect("stats json");
    let oos = stats["label histogram"]
        .as_array()
        .expect("histogram")
        .iter()
        .find(|r| r["label"] == "oos")
        .expect("oos row");
    assert_eq!(
        (
            oos["train"].as_i64(),
            oos["val"].as_i64(),
            oos["test"].as_i64()
        ),
        (Some(100), Some(100), Some(1000))
    );
    let in_scope_test: i64 = stats["label histogram"]
        .as_array()
        .expect("histogram")
        .iter()
        .filter(|r| r["label"] != "oos")
        .map(|r| r["test"].as_i64().unwrap_or(0))
        .sum();
    assert_eq!(in_scope_test, 4_500);
}

#[test]
fn every_shipped_data_config_imports_cleanly() {
    let expected = [
        ("hwu64", 11_036, 64),
        ("snips", 14_484, 7),
        ("sms_spam", 5_574, 2),
        ("it_service_tickets", 47_837, 8),
        ("nlupp_banking", 2_071, 0),
        ("nlupp_hotels", 1_009, 0),
    ];
    for (name, rows, labels) in expected {
        let tmp = tempfile::tempdir().expect("tempdir");
        let m = import_config(name, tmp.path());
        assert_eq!(m["rows"], rows, "{name}");
        assert_eq!(m["rejected"], 0, "{name}");
        if labels > 0 {
            assert_eq!(
                m["labels"].as_array().expect("labels").len(),
                labels,
                "{name}"
            );
        }
    }
}

#[test]
fn curate_is_deterministic_and_seeded() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let raw = tmp.path().join("raw");
    import_config("sms_spam", &raw);
    let run = |seed: &str, out: &str| {
        let out = tmp.path().join(out);
        ok(&[
            "data",
            "curate",
            raw.to_str().expect("utf8"),
            "--config",
            "configs/curate/default.toml",
            "--out",
            out.to_str().expect("utf8"),
            "--seed",
            seed,
        ]);
        manifest(&out)
    };
    let a = run("7", "a");
    let b = run("7", "b");
    let c = run("8", "c");
    assert_eq!(a["examples_sha256"], b["examples_sha256"]);
    assert_ne!(
        a["examples_sha256"], c["examples_sha256"],
        "the seed must move the split"
    );
    assert_eq!(a["curation"]["seed"], 7);
    // sms_spam has phone numbers and many exact duplicates.
    assert!(
        a["curation"]["redactions"]["phone"]
            .as_u64()
            .expect("phones")
            > 100
    );
    assert!(
        a["curation"]["removed"]["exact-dedup"]
            .as_u64()
            .expect("dups")
            > 300
    );
    for split in ["train", "val", "test"] {
        assert!(a["counts"][split].as_u64().expect("split") > 300, "{split}");
    }
    let removed = jsonl(&tmp.path().join("a/removed.jsonl"));
    assert!(
        removed
            .iter()
            .any(|r| r["step"] == "near-dedup" && r["dup_of"].is_string())
    );
}

#[test]
fn curate_drops_leaks_from_the_larger_split_and_redacts() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let train = tmp.path().join("train.jsonl");
    let test = tmp.path().join("test.jsonl");
    std::fs::write(
        &train,
        concat!(
            "{\"t\": \"my card was charged twice for one coffee\", \"l\": \"charge\"}\n",
            "{\"t\": \"write to jane.doe@example.com about the refund\", \"l\": \"refund\"}\n",
            "{\"t\": \"how do I reset my online banking password\", \"l\": \"login\"}\n",
            "{\"t\": \"where is my new card it has not arrived\", \"l\": \"card\"}\n",
        ),
    )
    .expect("write");
    std::fs::write(
        &test,
        "{\"t\": \"My card was charged twice for one coffee!\", \"l\": \"charge\"}\n",
    )
    .expect("write");
    let raw = tmp.path().join("raw");
    // Both files in one dataset, each with its own split, through a config.
    let config = tmp.path().join("data.toml");
    std::fs::write(
        &config,
        "name = \"leak\"\n[[sources]]\npath = \"train.jsonl\"\nsplit = \"train\"\ntext = \"t\"\nlabel = \"l\"\n\
         [[sources]]\npath = \"test.jsonl\"\nsplit = \"test\"\ntext = \"t\"\nlabel = \"l\"\n",
    )
    .expect("write");
    ok(&[
        "data",
        "import",
        "--config",
        config.to_str().expect("utf8"),
        "--out",
        raw.to_str().expect("utf8"),
    ]);
    let curate = tmp.path().join("curate.toml");
    std::fs::write(
        &curate,
        "seed = 1\n[[steps]]\ntype = \"normalize\"\n[[steps]]\ntype = \"redact-pii\"\n\
         [[steps]]\ntype = \"leakage-check\"\nthreshold = 0.8\n",
    )
    .expect("write");
    let out = tmp.path().join("out");
    ok(&[
        "data",
        "curate",
        raw.to_str().expect("utf8"),
        "--config",
        curate.to_str().expect("utf8"),
        "--out",
        out.to_str().expect("utf8"),
    ]);
    let m = manifest(&out);
    assert_eq!(m["counts"]["test"], 1, "the test row stays");
    assert_eq!(m["counts"]["train"], 3, "the leaked train row goes");
    let removed = jsonl(&out.join("removed.jsonl"));
    assert_eq!(removed.len(), 1);
    assert!(
        removed[0]["reason"]
            .as_str()
            .expect("reason")
            .contains("leak")
    );
    assert_eq!(
        removed[0]["text"],
        "my card was charged twice for one coffee"
    );
    assert_eq!(m["curation"]["redactions"]["email"], 1);
}

#[test]
fn bad_rows_go_to_rejects_with_file_line_and_reason() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let csv = tmp.path().join("bad.csv");
    let mut bytes = b"text,label\nfine row,a\ntoo,many,columns\n,b\n\"quoted, ok\",c\n".to_vec();
    bytes.extend_from_slice(b"bad \xff utf8,d\nlast,e\n");
    std::fs::write(&csv, bytes).expect("write");
    let out = tmp.path().join("ds");
    let run = ok(&[
        "data",
        "import",
        csv.to_str().expect("utf8"),
        "--text",
        "text",
        "--label",
        "label",
        "--out",
        out.to_str().expect("utf8"),
    ]);
    assert!(stderr(&run).contains("3 rejected"), "{}", stderr(&run));
    let rejects = jsonl(&out.join("rejects.jsonl"));
    let reasons: Vec<(u64, String)> = rejects
        .iter()
        .map(|r| {
            (
                r["line"].as_u64().expect("line"),
                r["reason"].as_str().expect("reason").to_string(),
            )
        })
        .collect();
    assert_eq!(reasons.len(), 3, "{reasons:?}");
    assert_eq!(reasons[0].0, 3);
    assert!(reasons[0].1.contains("wrong column count"), "{reasons:?}");
    assert_eq!(reasons[1].0, 4);
    assert!(reasons[1].1.contains("missing text"), "{reasons:?}");
    assert_eq!(reasons[2].0, 6);
    assert!(reasons[2].1.contains("invalid UTF-8"), "{reasons:?}");
    assert!(
        rejects
            .iter()
            .all(|r| r["file"].as_str().expect("file").ends_with("bad.csv"))
    );
    assert_eq!(manifest(&out)["rows"], 3);

    // JSONL: bad JSON, wrong types, not an object, invalid UTF-8.
    let jl = tmp.path().join("bad.jsonl");
    let mut bytes = b"{\"text\": \"good\", \"label\": \"a\"}\n{\"text\": \"broken\"\n{\"text\": 42, \"label\": \"a\"}\n[1, 2]\n".to_vec();
    bytes.extend_from_slice(b"{\"text\": \"x\xfe\", \"label\": \"a\"}\n{\"text\": \"ok\", \"label\": {\"nested\": 1}}\n");
    std::fs::write(&jl, bytes).expect("write");
    let out2 = tmp.path().join("ds2");
    ok(&[
        "data",
        "import",
        jl.to_str().expect("utf8"),
        "--text",
        "text",
        "--label",
        "label",
        "--out",
        out2.to_str().expect("utf8"),
    ]);
    let rejects = jsonl(&out2.join("rejects.jsonl"));
    let lines: Vec<u64> = rejects
        .iter()
        .map(|r| r["line"].as_u64().expect("line"))
        .collect();
    assert_eq!(lines, vec![2, 3, 4, 5, 6]);
    assert!(
        rejects[0]["reason"]
            .as_str()
            .expect("r")
            .contains("invalid JSON")
    );
    assert!(
        rejects[1]["reason"]
            .as_str()
            .expect("r")
            .contains("must be a string")
    );
    assert_eq!(rejects[1]["field"], "text");
    assert!(
        rejects[2]["reason"]
            .as_str()
            .expect("r")
            .contains("expected a JSON object")
    );
    assert!(
        rejects[3]["reason"]
            .as_str()
            .expect("r")
            .contains("invalid UTF-8")
    );
    assert_eq!(rejects[4]["field"], "label");

    // --strict turns rejects into exit 2, but the outputs are still written.
    let out3 = tmp.path().join("ds3");
    let strict = distill(&[
        "data",
        "import",
        jl.to_str().expect("utf8"),
        "--text",
        "text",
        "--label",
        "label",
        "--strict",
        "--out",
        out3.to_str().expect("utf8"),
    ]);
    assert_eq!(strict.status.code(), Some(2));
    assert!(out3.join("rejects.jsonl").exists());
}

#[test]
fn file_level_errors_exit_2_and_name_the_problem() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = tmp.path().join("ds");
    let out_s = out.to_str().expect("utf8");

    let missing = distill(&[
        "data", "import", "nope.csv", "--text", "text", "--out", out_s,
    ]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(
        stderr(&missing).contains("nope.csv"),
        "{}",
        stderr(&missing)
    );

    let odd = tmp.path().join("data.xyz");
    std::fs::write(&odd, "a,b\n").expect("write");
    let unknown = distill(&[
        "data",
        "import",
        odd.to_str().expect("utf8"),
        "--text",
        "a",
        "--out",
        out_s,
    ]);
    assert_eq!(unknown.status.code(), Some(2));
    assert!(
        stderr(&unknown).contains("unknown format `xyz`"),
        "{}",
        stderr(&unknown)
    );

    let csv = tmp.path().join("d.csv");
    std::fs::write(&csv, "text,category\nhello,a\n").expect("write");
    let unmapped = distill(&[
        "data",
        "import",
        csv.to_str().expect("utf8"),
        "--text",
        "text",
        "--label",
        "categroy",
        "--out",
        out_s,
    ]);
    assert_eq!(unmapped.status.code(), Some(2));
    let e = stderr(&unmapped);
    assert!(
        e.contains("d.csv") && e.contains("`categroy`") && e.contains("did you mean `category`"),
        "{e}"
    );
    assert!(
        !out.join("dataset.json").exists(),
        "nothing written on error"
    );

    let not_dataset = distill(&["data", "stats", tmp.path().to_str().expect("utf8")]);
    assert_eq!(not_dataset.status.code(), Some(2));
    assert!(stderr(&not_dataset).contains("not a distill dataset"));
}

#[test]
fn configs_reject_unknown_keys_and_take_overrides() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let base = tmp.path().join("base.toml");
    std::fs::write(&base, "seed = 1\n[[steps]]\ntype = \"normalize\"\n").expect("write");
    let child = tmp.path().join("child.toml");
    std::fs::write(&child, "extends = [\"base.toml\"]\nseed = 5\n").expect("write");
    let shown = ok(&[
        "config",
        "show",
        child.to_str().expect("utf8"),
        "--set",
        "seed=9",
    ]);
    let text = String::from_utf8_lossy(&shown.stdout);
    assert!(text.contains("seed = 9"), "{text}");
    assert!(text.contains("type = \"normalize\""), "{text}");

    let typo = tmp.path().join("typo.toml");
    std::fs::write(
        &typo,
        "seed = 1\n[[steps]]\ntype = \"near-dedup\"\ntreshold = 0.9\n",
    )
    .expect("write");
    let bad = distill(&["config", "show", typo.to_str().expect("utf8")]);
    assert_eq!(bad.status.code(), Some(2));
    let e = stderr(&bad);
    assert!(
        e.contains("typo.toml") && e.contains("treshold") && e.contains("did you mean `threshold`"),
        "{e}"
    );

    // Every shipped config resolves and validates.
    for dir in [
        "configs/data",
        "configs/curate",
        "configs/recipe",
        "configs/extract",
    ] {
        for entry in std::fs::read_dir(repo().join(dir)).expect("configs") {
            let path = entry.expect("entry").path();
            ok(&["config", "show", path.to_str().expect("utf8")]);
        }
    }
}

#[test]
fn stats_render_in_every_format() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let csv = tmp.path().join("d.csv");
    std::fs::write(&csv, "text,label\nhello there,a\ngood bye now,b\nhi,a\n").expect("write");
    let out = tmp.path().join("ds");
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
        out.to_str().expect("utf8"),
    ]);
    let o = out.to_str().expect("utf8");
    let table = String::from_utf8(ok(&["data", "stats", o]).stdout).expect("utf8");
    assert!(
        table.contains("label histogram") && table.contains("train"),
        "{table}"
    );
    let md = String::from_utf8(ok(&["data", "stats", o, "--format", "md"]).stdout).expect("utf8");
    assert!(md.contains("| label | total | train |"), "{md}");
    let csv_out =
        String::from_utf8(ok(&["data", "stats", o, "--format", "csv"]).stdout).expect("utf8");
    assert!(csv_out.contains("a,2,2"), "{csv_out}");
    let json: Value = serde_json::from_slice(&ok(&["data", "stats", o, "--format", "json"]).stdout)
        .expect("json");
    assert_eq!(json["rows per split"][0]["rows"], 3);
}

/// Every file under `dir` with its bytes, to show a command changed nothing.
fn snapshot(dir: &Path) -> std::collections::BTreeMap<PathBuf, Vec<u8>> {
    let mut out = std::collections::BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).expect("list") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                out.insert(path.clone(), Vec::new());
                stack.push(path);
            } else {
                let bytes = std::fs::read(&path).expect("read");
                out.insert(path, bytes);
            }
        }
    }
    out
}

fn import_csv(csv: &Path, out: &Path) -> Output {
    distill(&[
        "data",
        "import",
        csv.to_str().expect("utf8"),
        "--text",
        "text",
        "--label",
        "label",
        "--out",
        out.to_str().expect("utf8"),
    ])
}

#[test]
fn import_and_curate_fail_fast_on_a_locked_output_directory() {
    use distill_core::lock::DirLock;
    let tmp = tempfile::tempdir().expect("tempdir");
    let csv = tmp.path().join("d.csv");
    std::fs::write(&csv, "text,label\nhello there,a\ngood bye now,b\n").expect("write");
    let ds = tmp.path().join("ds");
    assert!(import_csv(&csv, &ds).status.success());
    let curate_config = tmp.path().join("curate.toml");
    std::fs::write(
        &curate_config,
        "seed = 1\n[[steps]]\ntype = \"normalize\"\n",
    )
    .expect("write");
    let curated = tmp.path().join("curated");
    std::fs::create_dir_all(&curated).expect("mkdir");
    std::fs::write(curated.join("notes.txt"), "mine").expect("write");

    for (dir, args) in [
        (
            &ds,
            vec![
                "data",
                "import",
                csv.to_str().expect("utf8"),
                "--text",
                "text",
                "--label",
                "label",
                "--out",
                ds.to_str().expect("utf8"),
            ],
        ),
        (
            &curated,
            vec![
                "data",
                "curate",
                ds.to_str().expect("utf8"),
                "--config",
                curate_config.to_str().expect("utf8"),
                "--out",
                curated.to_str().expect("utf8"),
            ],
        ),
    ] {
        let lock = DirLock::acquire(dir, "the test").expect("lock");
        let before = snapshot(dir);
        let started = std::time::Instant::now();
        let out = distill(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        let e = stderr(&out);
        assert!(
            e.contains("is being written by the test (pid")
                && e.contains(dir.to_str().expect("utf8")),
            "{e}"
        );
        assert!(started.elapsed() < std::time::Duration::from_secs(20));
        assert_eq!(
            snapshot(dir),
            before,
            "{args:?} changed the locked directory"
        );
        drop(lock);
        let again = distill(&args);
        assert!(again.status.success(), "{args:?}: {}", stderr(&again));
    }
}

#[test]
fn torn_dataset_is_refused_naming_the_file() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let old = tmp.path().join("old.csv");
    std::fs::write(&old, "text,label\nhello there,a\n").expect("write");
    let new = tmp.path().join("new.csv");
    std::fs::write(&new, "text,label\nhello there,a\ngood bye now,b\n").expect("write");
    let ds = tmp.path().join("ds");
    let other = tmp.path().join("other");
    assert!(import_csv(&old, &ds).status.success());
    assert!(import_csv(&new, &other).status.success());
    // What a kill between the two writes of a re-import leaves: new rows, old manifest.
    std::fs::copy(other.join("examples.parquet"), ds.join("examples.parquet")).expect("copy");
    let stats = distill(&["data", "stats", ds.to_str().expect("utf8")]);
    assert_eq!(stats.status.code(), Some(2));
    let e = stderr(&stats);
    assert!(
        e.contains(ds.join("examples.parquet").to_str().expect("utf8"))
            && e.contains("does not match dataset.json")
            && e.contains("hint:"),
        "{e}"
    );
    let curate = distill(&[
        "data",
        "curate",
        ds.to_str().expect("utf8"),
        "--config",
        "configs/curate/default.toml",
        "--out",
        tmp.path().join("c").to_str().expect("utf8"),
    ]);
    assert_eq!(curate.status.code(), Some(2));
    assert!(stderr(&curate).contains("does not match dataset.json"));
    assert!(
        !tmp.path().join("c").exists(),
        "a failed curate leaves no empty output directory"
    );
}

#[test]
fn crlf_rejects_report_the_editor_line_and_keep_ragged_rows() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let csv = tmp.path().join("crlf.csv");
    std::fs::write(
        &csv,
        "text,label\r\nfine row,a\r\ntoo,many,columns\r\n\"two\r\nlines\",b\r\n,c\r\nlast,d\r\n",
    )
    .expect("write");
    let out = tmp.path().join("ds");
    assert!(import_csv(&csv, &out).status.success());
    let rejects = jsonl(&out.join("rejects.jsonl"));
    let lines: Vec<u64> = rejects
        .iter()
        .map(|r| r["line"].as_u64().expect("line"))
        .collect();
    assert_eq!(lines, vec![3, 6], "the lines an editor shows");
    assert_eq!(
        rejects[0]["raw"], "too,many,columns",
        "the ragged row itself"
    );
    assert!(
        rejects[1]["reason"]
            .as_str()
            .expect("reason")
            .contains("missing text")
    );
}

#[test]
fn stale_temp_files_of_a_killed_import_are_removed_and_nothing_else() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let csv = tmp.path().join("d.csv");
    std::fs::write(&csv, "text,label\nhello there,a\n").expect("write");
    let ds = tmp.path().join("ds");
    std::fs::create_dir_all(&ds).expect("mkdir");
    // What `write_atomic` leaves when the process is killed mid-write.
    std::fs::write(ds.join(".distill-a1B2c3.tmp"), vec![0u8; 1000]).expect("write");
    std::fs::write(ds.join(".mine.tmp"), "user file").expect("write");
    std::fs::write(ds.join("notes.distill-x.tmp"), "user file").expect("write");
    let out = import_csv(&csv, &ds);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!ds.join(".distill-a1B2c3.tmp").exists());
    assert!(ds.join(".mine.tmp").exists() && ds.join("notes.distill-x.tmp").exists());
    assert!(
        stderr(&out).contains("removed 1 temporary file(s)"),
        "{}",
        stderr(&out)
    );
}

/// Run distill with stdout a pipe whose reader is already gone.
pub(crate) fn closed_stdout(args: &[&str]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_distill"))
        .args(args)
        .current_dir(repo())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn distill");
    drop(child.stdout.take());
    child.wait_with_output().expect("wait")
}

#[test]
fn closed_stdout_ends_quietly_without_a_panic() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let csv = tmp.path().join("d.csv");
    std::fs::write(&csv, "text,label\nhello there,a\ngood bye now,b\n").expect("write");
    let ds = tmp.path().join("ds");
    let ds_s = ds.to_str().expect("utf8");
    let csv_s = csv.to_str().expect("utf8");
    let cases: Vec<Vec<&str>> = vec![
        vec![
            "data", "import", csv_s, "--text", "text", "--label", "label", "--out", ds_s,
        ],
        vec!["data", "stats", ds_s],
        vec!["data", "stats", ds_s, "--format", "json"],
        vec!["config", "show", "configs/exp/banking77-bag.toml"],
    ];
    for args in cases {
        let out = closed_stdout(&args);
        let e = stderr(&out);
        assert!(!e.contains("panicked"), "{args:?}: {e}");
        assert_eq!(out.status.code(), Some(0), "{args:?}: {e}");
    }
    // The import did its work before finding no reader.
    assert!(ds.join("dataset.json").is_file());
}

#[test]
fn names_from_configs_cannot_leave_their_directory() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let exp = tmp.path().join("exp");
    let exp_s = exp.to_str().expect("utf8");
    // Suites: the suite name is <run>/eval/<name>, case names prefix files in it.
    let suite = tmp.path().join("escape.toml");
    std::fs::write(
        &suite,
        "name = \"fine\"\n[[cases]]\nname = \"test\"\n[[cases]]\nname = \"../../../x\"\n",
    )
    .expect("write");
    let suite_s = suite.to_str().expect("utf8");
    let shown = distill(&["config", "show", suite_s]);
    assert_eq!(shown.status.code(), Some(2));
    let e = stderr(&shown);
    assert!(
        e.contains(suite_s) && e.contains("`cases[1].name`") && e.contains("../../../x"),
        "{e}"
    );
    let eval = distill(&["eval", "no-such-run", "--suite", suite_s]);
    assert_eq!(eval.status.code(), Some(2));
    assert!(
        stderr(&eval).contains("`cases[1].name`"),
        "{}",
        stderr(&eval)
    );
    let sweep = distill(&[
        "sweep",
        "configs/exp/sms_spam-bag.toml",
        "--set",
        &format!("suites=[\"{suite_s}\"]"),
        "--experiments",
        exp_s,
        "--dry-run",
    ]);
    assert_eq!(sweep.status.code(), Some(2), "{}", stderr(&sweep));
    assert!(stderr(&sweep).contains(suite_s), "{}", stderr(&sweep));

    // Experiments: the name is <experiments>/<name>.
    for name in ["..", ".", ".hidden"] {
        let set = format!("name=\"{name}\"");
        for args in [
            vec![
                "train",
                "configs/exp/sms_spam-bag.toml",
                "--set",
                &set,
                "--experiments",
                exp_s,
            ],
            vec![
                "sweep",
                "configs/exp/sms_spam-bag.toml",
                "--set",
                &set,
                "--experiments",
                exp_s,
                "--dry-run",
            ],
            vec![
                "config",
                "show",
                "configs/exp/sms_spam-bag.toml",
                "--set",
                &set,
            ],
        ] {
            let out = distill(&args);
            assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
            let e = stderr(&out);
            assert!(e.contains("--set") && e.contains("`name`"), "{args:?}: {e}");
        }
    }
    let config = tmp.path().join("exp.toml");
    std::fs::write(
        &config,
        format!(
            "extends = [\"{}\"]\nname = \"..\"\n",
            repo().join("configs/exp/sms_spam-bag.toml").display()
        ),
    )
    .expect("write");
    let out = distill(&[
        "train",
        config.to_str().expect("utf8"),
        "--experiments",
        exp_s,
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains(config.to_str().expect("utf8")),
        "{}",
        stderr(&out)
    );
    assert!(!exp.exists(), "nothing written");
}
