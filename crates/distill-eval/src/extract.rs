//! Evaluation of extraction (tagger) runs: span precision / recall / F1
//! (exact on label, start and end; micro and per slot), exact-match rate per
//! example, intent accuracy for joint models, and the escalation trade-off:
//! a threshold on the example confidence (the smallest token marginal, and
//! the intent's probability) certified on validation for a target
//! example-level exact-match accuracy on handled traffic, with the same
//! Clopper-Pearson machinery as classification ([`crate::select`]).
//!
//! Writes `<run>/eval/extract/`: `report.json`, `report.md`,
//! `risk_coverage.svg`, and `predictions.jsonl` (test rows: gold and
//! predicted spans and BIO tags over the tagger's tokens, for checking the
//! metrics against another implementation such as seqeval).

use crate::{Error, Result, plots, select, stats};
use distill_core::config::ConfigSource;
use distill_core::spans::{SpanMetrics, TagSet, exact, span_metrics};
use distill_core::types::Span;
use distill_model::spec::ModelSpec;
use distill_model::tagger::{self, Tagger};
use distill_train::config::ExperimentConfig;
use distill_train::tagger::TagRow;
use serde::Serialize;
use serde_json::json;
use std::path::{Path, PathBuf};

/// The eval directory name under `<run>/eval/`.
pub const SUITE: &str = "extract";

/// One split's results.
#[derive(Debug, Clone, Serialize)]
pub struct SplitReport {
    pub rows: usize,
    /// Character-exact against the gold spans as given.
    pub spans: SpanMetrics,
    /// Against the gold spans as tagged on the tagger's tokens (equal to the
    /// above unless a gold boundary falls inside a token): what
    /// seqeval computes on the BIO sequences.
    pub token_aligned: SpanMetrics,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub intent_accuracy: Option<f64>,
    /// Share of examples entirely right (every span, and the intent).
    pub example_accuracy: f64,
    pub aurc: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct ExtractReport {
    pub run: String,
    pub val: SplitReport,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub test: Option<SplitReport>,
    /// Target example accuracy on handled traffic, and the risk level.
    pub target: f64,
    pub delta: f64,
    /// The certified threshold on validation (none when none certifies).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub threshold: Option<select::Choice>,
    /// The threshold applied to test: coverage and example accuracy on handled.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub test_at_threshold: Option<serde_json::Value>,
}

/// The tagger of a run directory or bundle: `<dir>/model/tagger.json` or `<dir>/tagger.json`.
pub fn tagger_dir(dir: &Path) -> Option<PathBuf> {
    [
        dir.join(distill_core::run_layout::MODEL_DIR),
        dir.to_path_buf(),
    ]
    .into_iter()
    .find(|d| Tagger::is_tagger_dir(d))
}

struct Scored {
    report: SplitReport,
    confidence: Vec<f64>,
    correct: Vec<bool>,
    lines: Vec<serde_json::Value>,
}

fn score(model: &Tagger, rows: &[TagRow], keep_lines: bool) -> Scored {
    let tags = &model.tags;
    let (mut gold, mut pred, mut gold_tok) = (Vec::new(), Vec::new(), Vec::new());
    let (mut confidence, mut correct, mut lines) = (Vec::new(), Vec::new(), Vec::new());
    let (mut intent_ok, mut intent_rows) = (0usize, 0usize);
    for r in rows {
        let x = model.extract(&r.text);
        let spans = x.spans();
        let (tokens, _) = tagger::tokenize(&r.text, model.meta.spec.max_tokens);
        let ranges = tagger::ranges(&tokens);
        let gold_tags = tags
            .encode(
                &ranges,
                &in_range(&r.spans, &ranges),
                r.text.chars().count(),
            )
            .map(|(t, _)| t)
            .unwrap_or_else(|_| vec![0; ranges.len()]);
        let pred_tags = spans_to_tags(tags, &ranges, &spans);
        let intent_right = match (&x.intent, r.intent) {
            (Some((name, _)), Some(y)) => model.meta.intents.get(y) == Some(name),
            _ => true,
        };
        if r.intent.is_some() {
            intent_rows += 1;
            intent_ok += usize::from(intent_right);
        }
        confidence.push(x.confidence);
        correct.push(intent_right && exact(&r.spans, &spans));
        gold_tok.push(tags.decode(&ranges, &gold_tags));
        if keep_lines {
            lines.push(json!({
                "id": r.id,
                "text": r.text,
                "gold": r.spans,
                "pred": x.fields,
                "gold_tags": gold_tags.iter().map(|&t| tags.name(t)).collect::<Vec<_>>(),
                "pred_tags": pred_tags.iter().map(|&t| tags.name(t)).collect::<Vec<_>>(),
                "intent": x.intent.as_ref().map(|i| &i.0),
                "gold_intent": r.intent.and_then(|y| model.meta.intents.get(y)),
                "confidence": x.confidence,
            }));
        }
        gold.push(r.spans.clone());
        pred.push(spans);
    }
    let n = rows.len().max(1) as f64;
    let (_, aurc) = stats::risk_coverage(&confidence, &correct);
    Scored {
        report: SplitReport {
            rows: rows.len(),
            spans: span_metrics(&gold, &pred),
            token_aligned: span_metrics(&gold_tok, &pred),
            intent_accuracy: (!model.meta.intents.is_empty())
                .then(|| intent_ok as f64 / intent_rows.max(1) as f64),
            example_accuracy: correct.iter().filter(|c| **c).count() as f64 / n,
            aurc,
        },
        confidence,
        correct,
        lines,
    }
}

/// Gold spans that start within the tagged tokens (a truncated text's tail is not tagged).
fn in_range(spans: &[Span], ranges: &[(usize, usize)]) -> Vec<Span> {
    let end = ranges.last().map_or(0, |r| r.1);
    spans.iter().filter(|s| s.start < end).cloned().collect()
}

fn spans_to_tags(tags: &TagSet, ranges: &[(usize, usize)], spans: &[Span]) -> Vec<usize> {
    let mut out = vec![0usize; ranges.len()];
    for s in spans {
        let Some(slot) = tags.slots.iter().position(|l| *l == s.label) else {
            continue;
        };
        let mut first = true;
        for (t, (a, b)) in ranges.iter().enumerate() {
            if *a >= s.start && *b <= s.end {
                out[t] = if first { 1 + 2 * slot } else { 2 + 2 * slot };
                first = false;
            }
        }
    }
    out
}

/// Evaluate a tagger run on its validation and test rows, certify an
/// escalation threshold on validation, write the report.
pub fn evaluate_run(run: &Path, target: f64, delta: f64) -> Result<(ExtractReport, PathBuf)> {
    let model_dir = tagger_dir(run).ok_or_else(|| {
        Error::Input(format!(
            "{}: not a tagger run (no model/tagger.json)",
            run.display()
        ))
    })?;
    let model = Tagger::load(&model_dir)?;
    let source = ConfigSource::load(&run.join(distill_core::run_layout::CONFIG_FILE))?;
    let config: ExperimentConfig = source.deserialize()?;
    let ModelSpec::Tagger(spec) = &config.model else {
        return Err(Error::Input(format!(
            "{}: the run's config is not a tagger",
            run.display()
        )));
    };
    let data = distill_train::tagger::load(&config, &source.base_dir(), spec)?;
    let info = distill_train::run::RunInfo::load(run)?;
    if data.slots != model.meta.slots
        || data.intents != model.meta.intents
        || data.dataset_sha256 != info.lineage.dataset_sha256
    {
        return Err(Error::Input(format!(
            "{}: the dataset differs from the one this run trained on (its examples' sha256, slots or intents changed)",
            run.display()
        )));
    }
    let val = score(&model, &data.val, false);
    let test = (!data.test.is_empty()).then(|| score(&model, &data.test, true));
    let choice = select::choose(&val.confidence, &val.correct, target, delta);
    let test_at = match (&choice, &test) {
        (Some(c), Some(t)) => {
            let (coverage, accuracy, handled) =
                select::apply(&t.confidence, &t.correct, c.threshold);
            Some(json!({"coverage": coverage, "example_accuracy": accuracy, "handled": handled}))
        }
        _ => None,
    };
    let out = run.join("eval").join(SUITE);
    std::fs::create_dir_all(&out).map_err(|e| Error::io(&out, e))?;
    let report = ExtractReport {
        run: run.display().to_string(),
        val: val.report,
        test: test.as_ref().map(|t| t.report.clone()),
        target,
        delta,
        threshold: choice,
        test_at_threshold: test_at,
    };
    distill_core::fsutil::write_json_atomic(&out.join("report.json"), &report)?;
    if let Some(t) = &test {
        distill_core::fsutil::write_jsonl_atomic(&out.join("predictions.jsonl"), &t.lines)?;
        let (curve, aurc) = stats::risk_coverage(&t.confidence, &t.correct);
        let marks: Vec<(f64, f64, String)> = report
            .test_at_threshold
            .as_ref()
            .and_then(|v| {
                Some((
                    v["coverage"].as_f64()?,
                    1.0 - v["example_accuracy"].as_f64()?,
                ))
            })
            .map(|(c, r)| vec![(c, r, format!("target {target}"))])
            .unwrap_or_default();
        let svg = plots::risk_coverage(&curve, aurc, &marks);
        distill_core::fsutil::write_atomic(&out.join("risk_coverage.svg"), |w| {
            w.write_all(svg.as_bytes())
        })?;
    }
    let md = markdown(&report);
    distill_core::fsutil::write_atomic(&out.join("report.md"), |w| w.write_all(md.as_bytes()))?;
    Ok((report, out))
}

/// The report as Markdown: headline numbers and the per-slot table.
pub fn markdown(r: &ExtractReport) -> String {
    let mut s = format!("# Extraction report\n\nrun: `{}`\n\n", r.run);
    s.push_str("| split | rows | span P | span R | span F1 | exact match | intent acc | example acc | AURC |\n|---|---|---|---|---|---|---|---|---|\n");
    let mut row = |name: &str, x: &SplitReport| {
        s.push_str(&format!(
            "| {name} | {} | {:.4} | {:.4} | {:.4} | {:.4} | {} | {:.4} | {:.4} |\n",
            x.rows,
            x.spans.micro.precision,
            x.spans.micro.recall,
            x.spans.micro.f1,
            x.spans.exact_match,
            x.intent_accuracy
                .map(|a| format!("{a:.4}"))
                .unwrap_or_else(|| "-".into()),
            x.example_accuracy,
            x.aurc
        ));
    };
    row("val", &r.val);
    if let Some(t) = &r.test {
        row("test", t);
    }
    match &r.threshold {
        Some(c) => s.push_str(&format!(
            "\nEscalation: threshold {:.4} certified for example accuracy >= {} (delta {}): val coverage {:.1}%, accuracy {:.4}{}\n",
            c.threshold,
            r.target,
            r.delta,
            c.coverage * 100.0,
            c.accuracy,
            r.test_at_threshold
                .as_ref()
                .map(|v| format!(
                    "; test coverage {:.1}%, accuracy {}",
                    v["coverage"].as_f64().unwrap_or(0.0) * 100.0,
                    v["example_accuracy"].as_f64().map(|a| format!("{a:.4}")).unwrap_or_else(|| "-".into())
                ))
                .unwrap_or_default()
        )),
        None => s.push_str(&format!(
            "\nEscalation: no threshold certifies example accuracy >= {} on validation.\n",
            r.target
        )),
    }
    let split = r.test.as_ref().unwrap_or(&r.val);
    s.push_str("\n## Per slot\n\n| slot | support | P | R | F1 |\n|---|---|---|---|---|\n");
    for (slot, m) in &split.spans.per_slot {
        s.push_str(&format!(
            "| {slot} | {} | {:.4} | {:.4} | {:.4} |\n",
            m.support, m.precision, m.recall, m.f1
        ));
    }
    s
}
