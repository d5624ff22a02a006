//! `distill sweep` (resumable after SIGKILL, skips what is done) and
//! `distill compare` (seed groups, statuses, mixed datasets, bad globs).

use super::{distill, ok, spawn, stderr};
use serde_json::Value;
use std::path::Path;
use std::time::{Duration, Instant};

fn s(p: &Path) -> String {
    p.to_str().expect("utf8").to_string()
}

fn sweep_args(exp: &Path) -> Vec<String> {
    [
        "sweep",
        "configs/exp/sms_spam-bag.toml",
        "--grid",
        "model.dim=8,16",
        "--seeds",
        "2",
        "--set",
        "train.epochs=2",
        "--set",
        "model.buckets=4096",
        "--experiments",
        &s(exp),
        "--format",
        "md",
    ]
    .iter()
    .map(|x| x.to_string())
    .collect()
}

fn completed_runs(root: &Path) -> usize {
    std::fs::read_dir(root.join("sms_spam-bag"))
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter(|e| {
                    std::fs::read_to_string(e.path().join("run.json"))
                        .is_ok_and(|t| t.contains("\"status\": \"completed\""))
                })
                .count()
        })
        .unwrap_or(0)
}

#[test]
fn sweep_resumes_after_sigkill_and_skips_done_points() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let exp = tmp.path().join("exp");
    let args = sweep_args(&exp);
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();

    // The plan: 2 values x 2 seeds, nothing done.
    let mut dry = refs.clone();
    dry.push("--dry-run");
    let o = ok(&dry);
    assert!(
        stderr(&o).contains("4 points (0 done, 0 to resume, 4 new)"),
        "{}",
        stderr(&o)
    );

    // Kill the sweep once its first point has finished training.
    let mut child = spawn(&refs);
    let t0 = Instant::now();
    while completed_runs(&exp) < 1 {
        assert!(t0.elapsed() < Duration::from_secs(300), "no point finished");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().expect("SIGKILL");
    child.wait().expect("wait");
    assert!(completed_runs(&exp) < 4);

    let o = ok(&refs);
    let err = stderr(&o);
    assert!(err.contains("trained already"), "{err}");
    assert_eq!(completed_runs(&exp), 4);
    let dirs: Vec<_> = std::fs::read_dir(exp.join("sms_spam-bag"))
        .expect("dir")
        .collect();
    assert_eq!(dirs.len(), 4, "one run directory per point, no duplicates");
    let table = String::from_utf8_lossy(&o.stdout);
    assert_eq!(
        table.matches("sms_spam-bag (2 seeds)").count(),
        2,
        "{table}"
    );
    assert!(
        table.contains("| model.dim |"),
        "only the changed key: {table}"
    );
    for d in dirs {
        let d = d.expect("entry").path();
        assert!(
            d.join("eval/sms_spam/report.json").is_file(),
            "suite ran for {}",
            d.display()
        );
    }

    // Everything done: a rerun trains nothing.
    let o = ok(&refs);
    assert!(
        stderr(&o).contains("4 points (4 done, 0 to resume, 0 new)"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn compare_shows_statuses_warns_on_mixed_datasets_and_rejects_empty_globs() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let exp = tmp.path().join("exp");
    for (config, sets) in [
        (
            "configs/exp/sms_spam-bag.toml",
            ["train.epochs=1", "model.dim=8"],
        ),
        (
            "configs/exp/sms_spam-bag.toml",
            ["train.epochs=2", "model.dim=8"],
        ),
        (
            "configs/exp/it_service_tickets-bag.toml",
            ["train.epochs=1", "model.dim=8"],
        ),
    ] {
        ok(&[
            "train",
            config,
            "--experiments",
            &s(&exp),
            "--set",
            sets[0],
            "--set",
            sets[1],
        ]);
    }
    // Mark one sms run failed: it must show, with its status.
    let sms: Vec<_> = std::fs::read_dir(exp.join("sms_spam-bag"))
        .expect("dir")
        .map(|e| e.expect("e").path())
        .collect();
    let run_json = sms[0].join("run.json");
    let mut info: Value =
        serde_json::from_slice(&std::fs::read(&run_json).expect("read")).expect("json");
    info["status"] = "failed".into();
    std::fs::write(&run_json, serde_json::to_vec_pretty(&info).expect("json")).expect("write");

    let o = ok(&["compare", &format!("{}/*/*", s(&exp)), "--format", "csv"]);
    let err = stderr(&o);
    assert!(err.contains("different task/dataset pairs"), "{err}");
    assert!(err.contains("is failed (shown with its status)"), "{err}");
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains(",failed,"), "{out}");
    assert!(
        out.contains("train.epochs"),
        "the differing key is a column: {out}"
    );

    // Unknown metric names get a suggestion; the escalation trade-off per
    // target (local share, local accuracy) is comparable once evaluated.
    // (A 1-epoch, 8-dim model may fail the suite's gates: exit 1, report written.)
    let o = distill(&[
        "eval",
        &s(&sms[1]),
        "--suite",
        "configs/suites/sms_spam.toml",
    ]);
    assert!(matches!(o.status.code(), Some(0 | 1)), "{}", stderr(&o));
    let o = ok(&[
        "compare",
        &format!("{}/sms_spam-bag/*", s(&exp)),
        "--format",
        "csv",
        "--metrics",
        "test_acuracy,sms_spam.local_share@0.99",
    ]);
    let err = stderr(&o);
    assert!(
        err.contains("no run of sms_spam has the metric `test_acuracy`")
            && err.contains("did you mean `test_accuracy`?"),
        "{err}"
    );
    assert!(
        !err.contains("metric `sms_spam.local_share@0.99`"),
        "a known metric: {err}"
    );
    let out = String::from_utf8_lossy(&o.stdout);
    let header = out.lines().next().expect("header");
    let col = header
        .split(',')
        .position(|c| c == "sms_spam.local_share@0.99")
        .unwrap_or_else(|| panic!("{out}"));
    let shares: Vec<&str> = out
        .lines()
        .skip(1)
        .filter_map(|l| l.split(',').nth(col))
        .collect();
    assert!(
        shares
            .iter()
            .filter_map(|v| v.split_whitespace().next()?.parse::<f64>().ok())
            .any(|x| (0.0..=1.0).contains(&x)),
        "{out}"
    );

    // `| head -1`: a quiet end, no panic.
    for format in ["table", "json"] {
        let o = super::closed_stdout(&["compare", &format!("{}/*/*", s(&exp)), "--format", format]);
        assert!(!stderr(&o).contains("panicked"), "{}", stderr(&o));
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    }

    let o = distill(&["compare", &format!("{}/nothing-*", s(&exp))]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("matches no run directory"),
        "{}",
        stderr(&o)
    );
}

/// `distill tune` under a size budget: the winning bundle fits it, every
/// trial is logged and plotted, and a rerun resumes (nothing retrained,
/// same winner).
#[test]
fn tune_fits_the_budget_and_resumes() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = tmp.path().join("tune");
    let args = [
        "tune",
        "configs/exp/sms_spam-bag.toml",
        "--budget-bytes",
        "150KB",
        "--trials",
        "4",
        "--max-epochs",
        "3",
        "--out",
        out.to_str().expect("utf8"),
    ];
    let first = ok(&args);
    let winner = String::from_utf8_lossy(&first.stdout)
        .lines()
        .last()
        .expect("last line")
        .to_string();
    let bundle = std::path::Path::new(&winner);
    let bytes: u64 = std::fs::read_dir(bundle)
        .expect("bundle")
        .map(|e| e.expect("entry").metadata().expect("meta").len())
        .sum();
    assert!(bytes <= 150_000, "{bytes}");
    let log = std::fs::read_to_string(out.join("tune.jsonl")).expect("log");
    // 4 trials at 1 epoch, the best 2 at 3.
    assert_eq!(log.lines().count(), 6, "{log}");
    assert!(String::from_utf8_lossy(&first.stdout).contains("(the config as written)"));
    assert!(out.join("pareto.svg").is_file());
    let again = ok(&args);
    assert_eq!(
        String::from_utf8_lossy(&again.stdout).lines().last(),
        Some(winner.as_str())
    );
    assert_eq!(
        std::fs::read_to_string(out.join("tune.jsonl"))
            .expect("log")
            .lines()
            .count(),
        6,
        "a rerun retrains nothing"
    );
    // A second tune on the same directory is refused while one holds it.
    {
        let _held = distill_core::lock::DirLock::acquire(&out, "tune-test-holder").expect("lock");
        let o = distill(&args);
        assert!(!o.status.success());
        assert!(stderr(&o).contains("tune-test-holder"), "{}", stderr(&o));
    }
    let o = distill(&[
        "tune",
        "configs/exp/sms_spam-bag.toml",
        "--budget-bytes",
        "1KB",
        "--trials",
        "1",
        "--out",
        tmp.path().join("tiny").to_str().expect("utf8"),
    ]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("does not fit"), "{}", stderr(&o));
}
