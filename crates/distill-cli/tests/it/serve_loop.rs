//! The loop the cascade exists for, end to end on real sms_spam data with
//! real processes: serve → traffic → escalation log → `distill train` on
//! it → `distill eval` → `distill export` → reload → the local share rises
//! while accuracy holds.
//!
//! The student starts from 150 gold rows. The big model behind it is a
//! second `distill serve` (an OpenAI-compatible endpoint like any other,
//! answering with logprobs) over a bag model trained on every gold row the
//! student never sees: a stand-in for the frontier model no test can run
//! here. Its answers reach the student only through the escalation log.

use super::serve::{Server, get, post, s, serve};
use super::{last_line_path, ok};
use distill_core::hash::content_id;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};

const TEST_N: usize = 1000;
const VAL_N: usize = 500;
const SEED_N: usize = 150;
const TRAFFIC_N: usize = 2500;

/// sms_spam as (text, label), deduplicated, in a fixed order by content id.
fn sms_spam() -> Vec<(String, String)> {
    let mut rows: Vec<(String, String, String)> = super::sms_spam_rows()
        .into_iter()
        .map(|(text, label)| (content_id(&text), text, label))
        .collect();
    rows.sort();
    rows.dedup_by(|a, b| a.0 == b.0);
    rows.into_iter().map(|(_, t, l)| (t, l)).collect()
}

fn write_jsonl(path: &Path, rows: &[(&str, &str, &str)]) {
    let body: String = rows
        .iter()
        .map(|(text, label, split)| {
            format!(
                "{}\n",
                json!({"text": text, "label": label, "split": split})
            )
        })
        .collect();
    std::fs::write(path, body).expect("write jsonl");
}

fn write(path: &Path, body: &str) -> PathBuf {
    std::fs::write(path, body).expect("write");
    path.to_path_buf()
}

const GOLD_SOURCE: &str = "[[sources]]\npath = \"gold.jsonl\"\nformat = \"jsonl\"\ntext = \"text\"\nlabel = \"label\"\nsplit-field = \"split\"\n";

fn experiment(dir: &Path, name: &str, data: &str, teacher: Option<&Path>) -> PathBuf {
    let teacher = teacher
        .map(|t| format!("teacher = \"{}\"\n", s(t)))
        .unwrap_or_default();
    write(
        &dir.join(format!("{name}.toml")),
        &format!(
            "name = \"{name}\"\ndataset = \"{data}\"\n{teacher}seed = 7\n\n[model]\nkind = \"bag\"\ndim = 32\nbuckets = 65536\nword-ngrams = 2\nchar-ngrams = [3, 5]\n\n[train]\nepochs = 10\nbatch-size = 32\nlr = 5e-3\nweight-decay = 0.0\nclass-weights = \"balanced\"\npatience = 3\n"
        ),
    )
}

fn train(config: &Path, experiments: &Path) -> PathBuf {
    last_line_path(&ok(&[
        "train",
        &s(config),
        "--experiments",
        &s(experiments),
    ]))
}

/// `distill eval` on the held-out test rows: the student's accuracy.
fn eval_accuracy(run: &Path, suite: &Path) -> f64 {
    let out = last_line_path(&ok(&["eval", &s(run), "--suite", &s(suite)]));
    let report: Value =
        serde_json::from_slice(&std::fs::read(out.join("report.json")).expect("report"))
            .expect("json");
    report["cases"][0]["metrics"]["accuracy"]
        .as_f64()
        .expect("accuracy")
}

/// Classify `texts` through the cascade in batches; the answers.
fn classify(server: &Server, texts: &[&str]) -> Vec<Value> {
    texts
        .chunks(50)
        .flat_map(|chunk| {
            let (code, v, _) = post(
                &server.base,
                "/v1/classify",
                json!({ "texts": chunk }).to_string().as_bytes(),
            );
            assert_eq!(code, 200, "{v}");
            v["results"].as_array().expect("results").clone()
        })
        .collect()
}

/// The share of `texts` the local tier would answer (`/v1/decision`).
fn local_share(server: &Server, texts: &[&str]) -> f64 {
    let local: usize = texts
        .chunks(200)
        .map(|chunk| {
            let (code, v, _) = post(
                &server.base,
                "/v1/decision",
                json!({ "texts": chunk }).to_string().as_bytes(),
            );
            assert_eq!(code, 200, "{v}");
            v["results"]
                .as_array()
                .expect("results")
                .iter()
                .filter(|r| r["tier"] == "local-0")
                .count()
        })
        .sum();
    local as f64 / texts.len() as f64
}

fn refs<'a>(v: &'a [(String, String, &'static str)]) -> Vec<(&'a str, &'a str, &'a str)> {
    v.iter()
        .map(|(t, l, s)| (t.as_str(), l.as_str(), *s))
        .collect()
}

fn texts(rows: &[(String, String)]) -> Vec<&str> {
    rows.iter().map(|(t, _)| t.as_str()).collect()
}

fn labels(rows: &[(String, String)]) -> Vec<&str> {
    rows.iter().map(|(_, l)| l.as_str()).collect()
}

fn accuracy(answers: &[Value], gold: &[&str]) -> f64 {
    let right = answers
        .iter()
        .zip(gold)
        .filter(|(a, g)| a["label"].as_str() == Some(**g))
        .count();
    right as f64 / gold.len() as f64
}

#[test]
fn escalations_train_the_next_student_and_the_local_share_rises_while_accuracy_holds() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    let rows = sms_spam();
    let (test, rest) = rows.split_at(TEST_N);
    let (val, rest) = rest.split_at(VAL_N);
    let (seed, rest) = rest.split_at(SEED_N);
    let (traffic, held_out) = rest.split_at(TRAFFIC_N);
    assert!(held_out.len() > 1000, "{}", held_out.len());

    // The student's data: 150 gold rows, plus val and test.
    let tagged = |rows: &[(String, String)], split: &'static str| -> Vec<(String, String, &str)> {
        rows.iter()
            .map(|(t, l)| (t.clone(), l.clone(), split))
            .collect()
    };
    let mut gold = tagged(seed, "train");
    gold.extend(tagged(val, "val"));
    gold.extend(tagged(test, "test"));
    write_jsonl(&dir.join("gold.jsonl"), &refs(&gold));
    // The big model's data: every other gold row (the traffic's included).
    let mut big = gold.clone();
    big.extend(tagged(traffic, "train"));
    big.extend(tagged(held_out, "train"));
    write_jsonl(&dir.join("big.jsonl"), &refs(&big));

    write(
        &dir.join("data.toml"),
        &format!("name = \"loop\"\ntask = \"classify\"\n\n{GOLD_SOURCE}"),
    );
    write(
        &dir.join("big-data.toml"),
        &format!(
            "name = \"loop-big\"\ntask = \"classify\"\n\n{}",
            GOLD_SOURCE.replace("gold.jsonl", "big.jsonl")
        ),
    );
    let esc = dir.join("escalations");
    // The next student's data: the same gold rows, and the escalated texts
    // from the serve log, unlabeled (their labels come from the teacher log).
    write(
        &dir.join("data-v2.toml"),
        &format!(
            "name = \"loop\"\ntask = \"classify\"\n\n{GOLD_SOURCE}\n[[sources]]\npath = \"{}\"\nformat = \"jsonl\"\ntext = \"text\"\nsplit = \"unlabeled\"\n",
            s(&esc.join("texts.jsonl"))
        ),
    );
    let suite = write(
        &dir.join("suite.toml"),
        "name = \"loop\"\n\n[[cases]]\nname = \"test\"\ndataset = \"data.toml\"\nsplit = \"test\"\ntargets = [0.98]\n",
    );
    let exp = dir.join("exp");

    // The big model, served as an OpenAI-compatible endpoint.
    let big_run = train(&experiment(dir, "loop-big", "big-data.toml", None), &exp);
    let big_bundle = last_line_path(&ok(&["export", &s(&big_run), "--format", "burn"]));
    let teacher_cfg = write(
        &dir.join("teacher.toml"),
        &format!("[[tiers]]\nbundle = \"{}\"\n", s(&big_bundle)),
    );
    let teacher = serve(&teacher_cfg, &[]);

    // Student v1 on 150 gold rows, evaluated, exported to the edge path.
    let v1 = train(&experiment(dir, "loop-student", "data.toml", None), &exp);
    let acc_v1 = eval_accuracy(&v1, &suite);
    let edge = dir.join("edge");
    ok(&["export", &s(&v1), "--format", "burn", "--out", &s(&edge)]);
    let cascade_cfg = write(
        &dir.join("cascade.toml"),
        &format!(
            "[[tiers]]\nbundle = \"{}\"\nthreshold = 0.95\n\n[upstream]\nbase-url = \"{}/v1\"\nmodel = \"big\"\npreflight = false\nmax-tokens = 4\ncache = false\n\n[log]\ndir = \"{}\"\n",
            s(&edge),
            teacher.base,
            s(&esc)
        ),
    );
    let cascade = serve(&cascade_cfg, &[]);

    // Traffic: what escalates is answered by the big model and logged.
    let answers = classify(&cascade, &texts(traffic));
    let escalated = answers.iter().filter(|a| a["tier"] == "upstream").count();
    assert!(escalated > 50, "only {escalated} of {TRAFFIC_N} escalated");
    let log = distill_core::teacher_log::read_log_lines(&esc.join("logs.jsonl")).expect("log");
    assert!(log.partial.is_none());
    assert!(log.records.iter().all(|r| r.probs.is_some()), "soft labels");

    // The next student: the same config plus the escalation log as teacher.
    let v2_cfg = experiment(dir, "loop-student-v2", "data-v2.toml", Some(&esc));
    let v2 = train(&v2_cfg, &exp);
    let run: Value = serde_json::from_slice(&std::fs::read(v2.join("run.json")).expect("run.json"))
        .expect("json");
    let joined = run.pointer("/counts/teacher").and_then(Value::as_u64);
    let acc_v2 = eval_accuracy(&v2, &suite);
    // v1 still serves: measure it now (test texts escalated from here on
    // are logged after v2 was trained on the log, so nothing leaks).
    let share_before = local_share(&cascade, &texts(held_out));
    let cascade_acc_before = accuracy(&classify(&cascade, &texts(test)), &labels(test));
    ok(&["export", &s(&v2), "--format", "burn", "--out", &s(&edge)]);
    let (code, v, _) = post(&cascade.base, "/admin/reload", b"");
    assert_eq!(code, 200, "{v}");
    let (_, ready) = get(&cascade.base, "/ready");
    assert!(ready.contains("loop-student-v2"), "{ready}");

    let share_after = local_share(&cascade, &texts(held_out));
    let cascade_acc_after = accuracy(&classify(&cascade, &texts(test)), &labels(test));
    eprintln!(
        "loop: {escalated}/{TRAFFIC_N} traffic escalated; {} teacher rows joined; student accuracy {acc_v1:.4} -> {acc_v2:.4}; \
         local share on {} unseen texts {share_before:.3} -> {share_after:.3}; cascade accuracy {cascade_acc_before:.4} -> {cascade_acc_after:.4}",
        joined.map(|j| j.to_string()).unwrap_or_else(|| "?".into()),
        held_out.len()
    );
    assert!(
        joined.is_some_and(|j| j as usize >= escalated * 9 / 10),
        "the escalated texts train the next student: {run}"
    );
    assert!(
        share_after >= share_before + 0.05,
        "local share {share_before:.3} -> {share_after:.3}"
    );
    assert!(
        acc_v2 >= acc_v1 - 0.005,
        "student accuracy {acc_v1:.4} -> {acc_v2:.4}"
    );
    assert!(
        cascade_acc_after >= cascade_acc_before - 0.005,
        "cascade accuracy {cascade_acc_before:.4} -> {cascade_acc_after:.4}"
    );
    drop(cascade);
    drop(teacher);
}
