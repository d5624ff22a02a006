//! `report.md` and the stdout summary.

use crate::eval::{CaseReport, SuiteReport};
use crate::suite::Suite;
use std::fmt::Write;

fn pct(v: Option<&f64>) -> String {
    v.map(|x| format!("{:.2}%", 100.0 * x))
        .unwrap_or_else(|| "-".into())
}

fn num(v: Option<&f64>, digits: usize) -> String {
    v.map(|x| format!("{x:.digits$}"))
        .unwrap_or_else(|| "-".into())
}

/// The operating-point table of a case (markdown).
pub fn operating_table(c: &CaseReport) -> String {
    let mut s = String::from(
        "| target accuracy | threshold | val coverage | val error upper bound | coverage | accuracy on handled |\n|---:|---:|---:|---:|---:|---:|\n",
    );
    for op in &c.operating_points {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} |",
            pct(Some(&op.target_accuracy)),
            op.threshold
                .map(|t| format!("{t:.4}"))
                .unwrap_or_else(|| "not certifiable".into()),
            pct(op.val.as_ref().map(|v| &v.coverage)),
            pct(op.val.as_ref().map(|v| &v.error_upper)),
            pct(Some(&op.coverage)),
            pct(op.accuracy.as_ref()),
        );
    }
    s
}

pub fn markdown(r: &SuiteReport, suite: &Suite) -> String {
    let mut s = format!(
        "# Evaluation: {} on {}\n\n{}\n\nRun `{}` ({} student, task {}), {} threads, {:.2} s. Gates: **{}**.\n\n",
        r.suite,
        r.experiment,
        suite.description,
        r.run,
        r.model_kind,
        r.task,
        r.threads,
        r.seconds,
        if r.passed { "passed" } else { "FAILED" }
    );
    for c in &r.cases {
        let m = &c.metrics;
        let _ = write!(
            s,
            "## {} ({} split, {} rows)\n\nDataset: `{}`\n\n| metric | value |\n|---|---:|\n",
            c.name, c.split, c.n, c.dataset
        );
        for (k, digits) in [
            ("accuracy", 4),
            ("macro_f1", 4),
            ("weighted_f1", 4),
            ("micro_f1", 4),
            ("exact_match", 4),
            ("ece", 4),
            ("ece_calibrated", 4),
            ("temperature", 3),
            ("aurc", 4),
            ("oos_auroc", 4),
            ("in_scope_accuracy", 4),
            ("oos_recall", 4),
            ("teacher_accuracy", 4),
            ("teacher_agreement", 4),
            ("latency_p50_ms", 3),
            ("latency_p95_ms", 3),
            ("latency_p99_ms", 3),
            ("throughput_rows_per_s", 0),
            ("params", 0),
            ("model_bytes", 0),
        ] {
            if m.contains_key(k) {
                let _ = writeln!(s, "| {k} | {} |", num(m.get(k), digits));
            }
        }
        if !c.operating_points.is_empty() {
            let _ = write!(
                s,
                "\n### Escalation: what stays on the device\n\n{}\n{}\n",
                operating_table(c),
                c.details["threshold_method"].as_str().unwrap_or("")
            );
        }
        if let Some(points) = c.details["cascade"]["points"].as_array() {
            let _ = write!(
                s,
                "\n### Cascade (escalated rows take the teacher's answer)\n\n| target | local share | cascade accuracy | teacher calls saved | cost saved |\n|---:|---:|---:|---:|---:|\n"
            );
            for p in points {
                let _ = writeln!(
                    s,
                    "| {} | {} | {} | {} | ${:.4} |",
                    pct(p["target_accuracy"].as_f64().as_ref()),
                    pct(p["local_share"].as_f64().as_ref()),
                    pct(p["accuracy"].as_f64().as_ref()),
                    p["teacher_calls_saved"],
                    p["cost_saved"].as_f64().unwrap_or(0.0)
                );
            }
        }
        if let Some(conf) = c.details["top_confusions"].as_array()
            && !conf.is_empty()
        {
            let _ = write!(
                s,
                "\n### Top confusions\n\n| gold | predicted | count |\n|---|---|---:|\n"
            );
            for x in conf.iter().take(10) {
                let _ = writeln!(
                    s,
                    "| {} | {} | {} |",
                    x["gold"].as_str().unwrap_or(""),
                    x["predicted"].as_str().unwrap_or(""),
                    x["count"]
                );
            }
        }
        if !c.gates.is_empty() {
            let _ = write!(
                s,
                "\n### Gates\n\n| gate | actual | result |\n|---|---:|---|\n"
            );
            for g in &c.gates {
                let _ = writeln!(
                    s,
                    "| `{}` | {} | {} |",
                    g.gate,
                    num(g.actual.as_ref(), 4),
                    if g.passed { "pass" } else { "**FAIL**" }
                );
            }
        }
        for p in &c.plots {
            let _ = write!(s, "\n![{p}]({p})\n");
        }
        s.push('\n');
    }
    s
}

/// A few lines for stdout.
pub fn summary(r: &SuiteReport) -> String {
    let mut s = String::new();
    for c in &r.cases {
        let m = &c.metrics;
        let _ = writeln!(
            s,
            "{} / {}: {} rows  accuracy {}  macro-F1 {}  ECE {} -> {}  AURC {}{}  p50 {} ms",
            r.suite,
            c.name,
            c.n,
            pct(m.get("accuracy")),
            num(m.get("macro_f1"), 4),
            num(m.get("ece"), 4),
            num(m.get("ece_calibrated"), 4),
            num(m.get("aurc"), 4),
            m.get("oos_auroc")
                .map(|a| format!("  OOS AUROC {a:.4}"))
                .unwrap_or_default(),
            num(m.get("latency_p50_ms"), 3),
        );
        for op in &c.operating_points {
            let _ = writeln!(
                s,
                "  target {}: threshold {}  local {}  accuracy on handled {}",
                pct(Some(&op.target_accuracy)),
                op.threshold
                    .map(|t| format!("{t:.4}"))
                    .unwrap_or_else(|| "-".into()),
                pct(Some(&op.coverage)),
                pct(op.accuracy.as_ref())
            );
        }
        for g in &c.gates {
            let _ = writeln!(
                s,
                "  gate {}: {} (actual {})",
                g.gate,
                if g.passed { "pass" } else { "FAIL" },
                num(g.actual.as_ref(), 4)
            );
        }
    }
    s
}
