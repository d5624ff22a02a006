//! `distill data curate`: a config-driven pipeline of tagged steps.
//!
//! ```toml
//! seed = 42
//! [[steps]]
//! type = "normalize"          # NFKC, whitespace
//! [[steps]]
//! type = "length-filter"
//! min-chars = 3
//! [[steps]]
//! type = "redact-pii"         # emails, phones, cards, IBANs -> <EMAIL> ...
//! [[steps]]
//! type = "exact-dedup"
//! [[steps]]
//! type = "near-dedup"
//! threshold = 0.85
//! [[steps]]
//! type = "split"              # by seeded hash of the id: stable under additions
//! [[steps]]
//! type = "leakage-check"      # no exact/near duplicates across splits
//! ```
//!
//! Every removed row is kept in `removed.jsonl` with the step, the reason and
//! (for duplicates) the id of the row it duplicated.

use crate::dataset::Dataset;
use crate::error::Result;
use crate::minhash::{MinHashParams, near_duplicates};
use crate::pii::{PiiKind, redact};
use crate::text::{dedup_key, normalize};
use distill_core::config::ConfigSource;
use distill_core::hash::{content_id, seeded_u64, unit_interval};
use distill_core::text::TextStep;
use distill_core::types::{Example, Split, Task};
use rayon::prelude::*;
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Instant;

fn default_seed() -> u64 {
    42
}
fn yes() -> bool {
    true
}

/// A curation config.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct CurateConfig {
    /// Seed of every random choice (split assignment, MinHash permutations).
    #[serde(default = "default_seed")]
    pub seed: u64,
    pub steps: Vec<Step>,
    /// Directory of the config file: relative paths in steps resolve from here.
    #[serde(skip)]
    pub base: std::path::PathBuf,
}

impl CurateConfig {
    pub fn load(path: &Path, sets: &[String]) -> Result<Self> {
        let mut source = ConfigSource::load(path)?;
        source.apply_overrides(sets)?;
        let mut config: CurateConfig = source.deserialize()?;
        config.base = source.base_dir();
        Ok(config)
    }
}

/// One pipeline step. The `type` tag names it; the wire format is pinned by a test.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Step {
    #[serde(rename_all = "kebab-case")]
    Normalize {
        #[serde(default = "yes")]
        nfkc: bool,
        #[serde(default = "yes")]
        whitespace: bool,
        #[serde(default)]
        lowercase: bool,
    },
    #[serde(rename_all = "kebab-case")]
    LengthFilter {
        #[serde(default)]
        min_chars: Option<usize>,
        #[serde(default)]
        max_chars: Option<usize>,
        #[serde(default)]
        min_words: Option<usize>,
    },
    #[serde(rename_all = "kebab-case")]
    RedactPii {
        #[serde(default = "all_pii")]
        kinds: Vec<PiiKind>,
    },
    #[serde(rename_all = "kebab-case")]
    ExactDedup {
        /// What to do with texts that appear with different labels.
        #[serde(default)]
        conflicts: ConflictPolicy,
    },
    #[serde(rename_all = "kebab-case")]
    NearDedup {
        #[serde(default = "default_threshold")]
        threshold: f64,
        #[serde(default = "default_num_perm")]
        num_perm: usize,
        #[serde(default = "default_shingle")]
        shingle: usize,
    },
    #[serde(rename_all = "kebab-case")]
    RareLabels {
        min_count: usize,
        #[serde(default)]
        action: RareAction,
        /// The label rare labels merge into (action = "merge").
        #[serde(default)]
        merge_into: Option<String>,
    },
    #[serde(rename_all = "kebab-case")]
    Split {
        #[serde(default = "default_train")]
        train: f64,
        #[serde(default = "default_val")]
        val: f64,
        #[serde(default = "default_test")]
        test: f64,
        /// Keep splits that came with the source (e.g. an official test set).
        #[serde(default = "yes")]
        keep_existing: bool,
    },
    /// Join a teacher log (`distill teach`): keep or drop rows by teacher
    /// confidence and agreement with gold, and report teacher-gold agreement per label.
    #[serde(rename_all = "kebab-case")]
    Teacher {
        /// A teacher-log directory (with logs.jsonl) or a logs.jsonl file. Relative to the config.
        logs: std::path::PathBuf,
        /// Drop rows whose teacher top probability is below this (0 keeps all).
        #[serde(default)]
        min_confidence: f64,
        /// Rows without a usable teacher record (none, or failed): keep or drop.
        #[serde(default)]
        missing: KeepDrop,
        /// Gold rows where the teacher's top label differs from gold: keep or drop.
        #[serde(default)]
        disagree: KeepDrop,
    },
    #[serde(rename_all = "kebab-case")]
    LeakageCheck {
        #[serde(default = "default_threshold")]
        threshold: f64,
        #[serde(default = "default_num_perm")]
        num_perm: usize,
        #[serde(default = "default_shingle")]
        shingle: usize,
    },
}

fn all_pii() -> Vec<PiiKind> {
    PiiKind::ALL.to_vec()
}
fn default_threshold() -> f64 {
    0.85
}
fn default_num_perm() -> usize {
    64
}
fn default_shingle() -> usize {
    5
}
fn default_train() -> f64 {
    0.8
}
fn default_val() -> f64 {
    0.1
}
fn default_test() -> f64 {
    0.1
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ConflictPolicy {
    /// Keep the first row (by split priority, then source order); report the conflict.
    #[default]
    KeepFirst,
    /// Drop every row of a conflicting text.
    Drop,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum KeepDrop {
    #[default]
    Keep,
    Drop,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RareAction {
    #[default]
    Drop,
    Merge,
}

impl Step {
    pub fn name(&self) -> &'static str {
        match self {
            Step::Normalize { .. } => "normalize",
            Step::LengthFilter { .. } => "length-filter",
            Step::RedactPii { .. } => "redact-pii",
            Step::ExactDedup { .. } => "exact-dedup",
            Step::NearDedup { .. } => "near-dedup",
            Step::RareLabels { .. } => "rare-labels",
            Step::Split { .. } => "split",
            Step::LeakageCheck { .. } => "leakage-check",
            Step::Teacher { .. } => "teacher",
        }
    }

    fn validate(&self) -> std::result::Result<(), String> {
        match self {
            Step::NearDedup {
                threshold,
                num_perm,
                shingle,
            }
            | Step::LeakageCheck {
                threshold,
                num_perm,
                shingle,
            } => {
                if !(0.0..=1.0).contains(threshold) || *threshold <= 0.0 {
                    return Err(format!("threshold must be in (0, 1], got {threshold}"));
                }
                if *num_perm < 8 || *num_perm > 1024 {
                    return Err(format!("num-perm must be in 8..=1024, got {num_perm}"));
                }
                if *shingle == 0 {
                    return Err("shingle must be at least 1".into());
                }
            }
            Step::Split {
                train, val, test, ..
            } => {
                let sum = train + val + test;
                if [train, val, test].iter().any(|f| **f < 0.0) || (sum - 1.0).abs() > 1e-6 {
                    return Err(format!(
                        "split fractions must be non-negative and sum to 1, got {train} + {val} + {test} = {sum}"
                    ));
                }
            }
            Step::RareLabels {
                action: RareAction::Merge,
                merge_into: None,
                ..
            } => {
                return Err("action = \"merge\" needs merge-into = \"<label>\"".into());
            }
            Step::Teacher { min_confidence, .. } if !(0.0..=1.0).contains(min_confidence) => {
                return Err(format!(
                    "min-confidence must be in [0, 1], got {min_confidence}"
                ));
            }
            _ => {}
        }
        Ok(())
    }
}

/// A row curation removed, and why.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Removed {
    pub id: String,
    pub text: String,
    pub source: String,
    pub line: u64,
    pub step: String,
    pub reason: String,
    /// For duplicates: the id of the kept row it duplicated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dup_of: Option<String>,
}

/// What a step did.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StepReport {
    pub step: String,
    pub rows_in: u64,
    pub rows_out: u64,
    pub removed: u64,
    pub seconds: f64,
    pub rows_per_second: f64,
    #[serde(default)]
    pub details: serde_json::Value,
}

/// The outcome of a curation run.
pub struct CurateOutcome {
    pub dataset: Dataset,
    pub removed: Vec<Removed>,
    pub steps: Vec<StepReport>,
    pub conflicts: Vec<serde_json::Value>,
}

/// Run the pipeline over a dataset. `progress` is told each step's report as it finishes.
pub fn curate(
    mut dataset: Dataset,
    config: &CurateConfig,
    mut progress: impl FnMut(&StepReport),
) -> Result<CurateOutcome> {
    for step in &config.steps {
        step.validate()
            .map_err(|message| crate::DataError::Config {
                context: format!("curate step `{}`", step.name()),
                message,
            })?;
    }
    // The teacher step may drop rows; placed before `split`, rows it drops
    // would have become val/test rows, and evaluation would be inflated.
    let first_teacher = config
        .steps
        .iter()
        .position(|s| matches!(s, Step::Teacher { .. }));
    let last_split = config
        .steps
        .iter()
        .rposition(|s| matches!(s, Step::Split { .. }));
    if let (Some(t), Some(sp)) = (first_teacher, last_split)
        && t < sp
    {
        return Err(crate::DataError::Config {
            context: "curate step `teacher`".into(),
            message: "it comes before `split`: put it after `split`, so that validation and test rows are never filtered by the teacher".into(),
        });
    }
    let mut teacher_logs = Vec::new();
    for step in &config.steps {
        if let Step::Teacher { logs, .. } = step {
            let path = if logs.is_absolute() {
                logs.clone()
            } else {
                config.base.join(logs)
            };
            teacher_logs.push(crate::teacher::TeacherLog::read(&path)?);
        }
    }
    let mut teacher_logs = teacher_logs.into_iter();
    let task = dataset.manifest.task;
    let mut rows = std::mem::take(&mut dataset.examples);
    let mut removed = Vec::new();
    let mut reports = Vec::new();
    let mut conflicts = Vec::new();
    for step in &config.steps {
        let start = Instant::now();
        let rows_in = rows.len() as u64;
        let removed_before = removed.len();
        let details = if let Step::Teacher {
            min_confidence,
            missing,
            disagree,
            ..
        } = step
        {
            let log = teacher_logs
                .next()
                .ok_or_else(|| crate::DataError::Config {
                    context: "curate step `teacher`".into(),
                    message: "teacher log not loaded".into(),
                })?;
            let verdicts = log.judge(&rows, *min_confidence, *missing, *disagree);
            take_rows(&mut rows, &verdicts.drop, "teacher", &mut removed);
            verdicts.details
        } else {
            run_step(
                step,
                task,
                config.seed,
                &mut rows,
                &mut removed,
                &mut conflicts,
            )
        };
        let seconds = start.elapsed().as_secs_f64();
        let report = StepReport {
            step: step.name().to_string(),
            rows_in,
            rows_out: rows.len() as u64,
            removed: (removed.len() - removed_before) as u64,
            seconds,
            rows_per_second: if seconds > 0.0 {
                rows_in as f64 / seconds
            } else {
                0.0
            },
            details,
        };
        progress(&report);
        reports.push(report);
    }
    // Texts may have changed: ids follow the final text.
    rows.par_iter_mut().for_each(|r| r.id = content_id(&r.text));
    let redactions: BTreeMap<String, u64> = reports
        .iter()
        .filter(|r| r.step == "redact-pii")
        .filter_map(|r| {
            r.details
                .get("redactions")
                .and_then(|v| serde_json::from_value::<BTreeMap<String, u64>>(v.clone()).ok())
        })
        .fold(BTreeMap::new(), |mut acc, m| {
            for (k, v) in m {
                *acc.entry(k).or_insert(0) += v;
            }
            acc
        });
    let mut removed_by_step: BTreeMap<String, u64> = BTreeMap::new();
    for r in &removed {
        *removed_by_step.entry(r.step.clone()).or_insert(0) += 1;
    }
    let parent = json!({
        "name": dataset.manifest.name,
        "examples_sha256": dataset.manifest.examples_sha256,
        "rows": dataset.manifest.rows,
    });
    dataset.examples = rows;
    // The text-changing steps travel with the data into every model trained on it.
    for step in &config.steps {
        match step {
            Step::Normalize {
                nfkc,
                whitespace,
                lowercase,
            } => dataset.manifest.preprocess.push(TextStep::Normalize {
                nfkc: *nfkc,
                whitespace: *whitespace,
                lowercase: *lowercase,
            }),
            Step::RedactPii { kinds } => dataset.manifest.preprocess.push(TextStep::RedactPii {
                kinds: kinds.clone(),
            }),
            _ => {}
        }
    }
    dataset.manifest.curation = Some(json!({
        "seed": config.seed,
        "config": config,
        "parent": parent,
        "removed": removed_by_step,
        "redactions": redactions,
        "conflicts": conflicts.len(),
        "steps": reports,
    }));
    dataset.refresh();
    Ok(CurateOutcome {
        dataset,
        removed,
        steps: reports,
        conflicts,
    })
}

fn take_rows(
    rows: &mut Vec<Example>,
    drop: &[Option<(String, Option<String>)>],
    step: &str,
    removed: &mut Vec<Removed>,
) {
    let old = std::mem::take(rows);
    for (row, verdict) in old.into_iter().zip(drop) {
        match verdict {
            None => rows.push(row),
            Some((reason, dup_of)) => removed.push(Removed {
                id: row.id,
                text: row.text,
                source: row.source,
                line: row.line,
                step: step.to_string(),
                reason: reason.clone(),
                dup_of: dup_of.clone(),
            }),
        }
    }
}

/// Visit order for dedup: rows of smaller splits first (so a duplicate is
/// dropped from the larger split and the official test set stays whole),
/// then source order.
fn priority_order(rows: &[Example]) -> Vec<usize> {
    let mut sizes: FxHashMap<Option<Split>, usize> = FxHashMap::default();
    for r in rows {
        *sizes.entry(r.split).or_insert(0) += 1;
    }
    let rank = |s: Option<Split>| match s {
        None => usize::MAX,
        some => sizes.get(&some).copied().unwrap_or(0),
    };
    let mut order: Vec<usize> = (0..rows.len()).collect();
    order.sort_by_key(|&i| (rank(rows[i].split), rows[i].split, i));
    order
}

fn labels_key(row: &Example) -> String {
    let mut labels = row.label_list();
    labels.sort_unstable();
    labels.join("\u{1f}")
}

fn run_step(
    step: &Step,
    task: Task,
    seed: u64,
    rows: &mut Vec<Example>,
    removed: &mut Vec<Removed>,
    conflicts: &mut Vec<serde_json::Value>,
) -> serde_json::Value {
    let name = step.name();
    match step {
        Step::Normalize {
            nfkc,
            whitespace,
            lowercase,
        } => {
            // Spans move with the text; a row whose spans cannot keep
            // correct offsets is removed with the reason (never shifted).
            let results: Vec<(bool, Option<String>)> = rows
                .par_iter_mut()
                .map(|r| match &r.spans {
                    Some(spans) if !spans.is_empty() => {
                        match distill_core::text::normalize::normalize_spans(
                            &r.text,
                            spans,
                            *nfkc,
                            *whitespace,
                            *lowercase,
                        ) {
                            Ok((n, mapped)) => {
                                let changed = n != r.text;
                                r.text = n;
                                r.spans = Some(mapped);
                                (changed, None)
                            }
                            Err(reason) => (false, Some(reason)),
                        }
                    }
                    _ => {
                        let n = normalize(&r.text, *nfkc, *whitespace, *lowercase);
                        let changed = n != r.text;
                        r.text = n;
                        (changed, None)
                    }
                })
                .collect();
            let changed = results.iter().filter(|r| r.0).count();
            let verdicts: Vec<_> = rows
                .iter()
                .zip(results)
                .map(|(r, (_, failed))| match failed {
                    Some(reason) => Some((format!("spans: {reason}"), None)),
                    None => r
                        .text
                        .is_empty()
                        .then(|| ("empty after normalisation".to_string(), None)),
                })
                .collect();
            take_rows(rows, &verdicts, name, removed);
            json!({ "changed": changed })
        }
        Step::LengthFilter {
            min_chars,
            max_chars,
            min_words,
        } => {
            let verdicts: Vec<_> = rows
                .par_iter()
                .map(|r| {
                    let chars = r.text.chars().count();
                    if r.text.trim().is_empty() {
                        return Some(("empty text".to_string(), None));
                    }
                    if let Some(min) = min_chars
                        && chars < *min
                    {
                        return Some((format!("too short: {chars} < {min} characters"), None));
                    }
                    if let Some(max) = max_chars
                        && chars > *max
                    {
                        return Some((format!("too long: {chars} > {max} characters"), None));
                    }
                    if let Some(min) = min_words {
                        let words = r.text.split_whitespace().count();
                        if words < *min {
                            return Some((format!("too few words: {words} < {min}"), None));
                        }
                    }
                    None
                })
                .collect();
            take_rows(rows, &verdicts, name, removed);
            json!({})
        }
        Step::RedactPii { kinds } => {
            let results: Vec<(BTreeMap<PiiKind, u64>, Option<String>)> = rows
                .par_iter_mut()
                .map(|r| match &r.spans {
                    Some(spans) if !spans.is_empty() => {
                        match distill_core::text::pii::redact_spans(&r.text, kinds, spans) {
                            Ok((text, counts, mapped)) => {
                                if !counts.is_empty() {
                                    r.text = text;
                                    r.spans = Some(mapped);
                                }
                                (counts, None)
                            }
                            // The row leaves, redacted: removed.jsonl keeps no PII.
                            Err(reason) => {
                                let (text, counts) = redact(&r.text, kinds);
                                r.text = text;
                                (counts, Some(reason))
                            }
                        }
                    }
                    _ => {
                        let (text, counts) = redact(&r.text, kinds);
                        if !counts.is_empty() {
                            r.text = text;
                        }
                        (counts, None)
                    }
                })
                .collect();
            // A span overlapping PII: the row leaves (the PII must not stay,
            // and a shifted span would be wrong).
            let verdicts: Vec<_> = results
                .iter()
                .map(|(_, failed)| failed.as_ref().map(|r| (format!("spans: {r}"), None)))
                .collect();
            let counts: Vec<BTreeMap<PiiKind, u64>> = results.into_iter().map(|r| r.0).collect();
            take_rows(rows, &verdicts, name, removed);
            let mut totals: BTreeMap<String, u64> =
                kinds.iter().map(|k| (k.as_str().to_string(), 0)).collect();
            let mut rows_changed = 0u64;
            for c in counts {
                if !c.is_empty() {
                    rows_changed += 1;
                }
                for (k, v) in c {
                    *totals.entry(k.as_str().to_string()).or_insert(0) += v;
                }
            }
            json!({ "redactions": totals, "rows_changed": rows_changed })
        }
        Step::ExactDedup { conflicts: policy } => {
            let keys: Vec<String> = rows.par_iter().map(|r| dedup_key(&r.text)).collect();
            let order = priority_order(rows);
            let mut first: FxHashMap<&str, usize> = FxHashMap::default();
            let mut verdicts: Vec<Option<(String, Option<String>)>> = vec![None; rows.len()];
            let mut groups: FxHashMap<usize, Vec<usize>> = FxHashMap::default();
            for &i in &order {
                match first.get(keys[i].as_str()) {
                    Some(&k) => {
                        verdicts[i] =
                            Some(("exact duplicate".to_string(), Some(rows[k].id.clone())));
                        groups.entry(k).or_default().push(i);
                    }
                    None => {
                        first.insert(keys[i].as_str(), i);
                    }
                }
            }
            let mut conflict_count = 0u64;
            let mut group_keys: Vec<usize> = groups.keys().copied().collect();
            group_keys.sort_unstable();
            for k in group_keys {
                let members = &groups[&k];
                let mut label_sets: BTreeSet<String> = BTreeSet::new();
                label_sets.insert(labels_key(&rows[k]));
                for &m in members {
                    label_sets.insert(labels_key(&rows[m]));
                }
                // Unlabelled copies do not conflict with labelled ones.
                label_sets.remove("");
                if label_sets.len() > 1 {
                    conflict_count += 1;
                    let all: Vec<usize> =
                        std::iter::once(k).chain(members.iter().copied()).collect();
                    conflicts.push(json!({
                        "text": rows[k].text,
                        "rows": all.iter().map(|&i| json!({
                            "source": rows[i].source, "line": rows[i].line,
                            "labels": rows[i].label_list(),
                        })).collect::<Vec<_>>(),
                        "action": match policy { ConflictPolicy::KeepFirst => "kept first", ConflictPolicy::Drop => "dropped all" },
                    }));
                    if *policy == ConflictPolicy::Drop {
                        verdicts[k] =
                            Some(("conflicting labels for the same text".to_string(), None));
                    }
                }
            }
            take_rows(rows, &verdicts, name, removed);
            json!({ "conflicting_texts": conflict_count })
        }
        Step::NearDedup {
            threshold,
            num_perm,
            shingle,
        } => {
            let texts: Vec<&str> = rows.iter().map(|r| r.text.as_str()).collect();
            let order = priority_order(rows);
            let params = MinHashParams {
                num_perm: *num_perm,
                shingle: *shingle,
                threshold: *threshold,
                seed,
            };
            let dups = near_duplicates(&texts, &order, None, &params);
            let verdicts: Vec<_> = dups
                .iter()
                .map(|d| {
                    d.map(|j| {
                        (
                            format!("near duplicate (Jaccard >= {threshold})"),
                            Some(rows[j].id.clone()),
                        )
                    })
                })
                .collect();
            let (bands, per_band) = crate::minhash::bands_for(*threshold, *num_perm);
            take_rows(rows, &verdicts, name, removed);
            json!({ "bands": bands, "rows_per_band": per_band })
        }
        Step::RareLabels {
            min_count,
            action,
            merge_into,
        } => {
            let mut counts: BTreeMap<String, usize> = BTreeMap::new();
            for r in rows.iter() {
                for l in r.label_list() {
                    *counts.entry(l.to_string()).or_insert(0) += 1;
                }
            }
            let rare: BTreeSet<String> = counts
                .iter()
                .filter(|(_, c)| **c < *min_count)
                .map(|(l, _)| l.clone())
                .collect();
            let target = merge_into.clone().unwrap_or_default();
            let mut verdicts = vec![None; rows.len()];
            for (i, r) in rows.iter_mut().enumerate() {
                if let Some(l) = &r.label
                    && rare.contains(l)
                {
                    match action {
                        RareAction::Drop => {
                            verdicts[i] =
                                Some((format!("rare label `{l}` (< {min_count} examples)"), None))
                        }
                        RareAction::Merge => r.label = Some(target.clone()),
                    }
                }
                if let Some(ls) = &mut r.labels {
                    let before = ls.len();
                    ls.retain(|l| !rare.contains(l));
                    if *action == RareAction::Merge && ls.len() < before && !ls.contains(&target) {
                        ls.push(target.clone());
                        ls.sort();
                    }
                }
            }
            take_rows(rows, &verdicts, name, removed);
            json!({ "rare_labels": rare, "action": action })
        }
        Step::Split {
            train,
            val,
            test: _,
            keep_existing,
        } => {
            let mut assigned = 0u64;
            for r in rows.iter_mut() {
                if *keep_existing && r.split.is_some() {
                    continue;
                }
                assigned += 1;
                r.split = Some(if !r.is_labeled(task) {
                    Split::Unlabeled
                } else {
                    // Seeded hash of the text's content id: a row's split never
                    // depends on the other rows, so adding data moves nothing.
                    let u = unit_interval(seeded_u64(seed, &content_id(&r.text)));
                    if u < *train {
                        Split::Train
                    } else if u < train + val {
                        Split::Val
                    } else {
                        Split::Test
                    }
                });
            }
            json!({ "assigned": assigned, "kept": rows.len() as u64 - assigned })
        }
        // Runs in `curate` itself (it needs the teacher log loaded up front).
        Step::Teacher { .. } => serde_json::Value::Null,
        Step::LeakageCheck {
            threshold,
            num_perm,
            shingle,
        } => {
            let order = priority_order(rows);
            let groups: Vec<u8> = rows
                .iter()
                .map(|r| r.split.map(|s| s as u8).unwrap_or(255))
                .collect();
            // Exact first (cheap), then near.
            let keys: Vec<String> = rows.par_iter().map(|r| dedup_key(&r.text)).collect();
            let mut seen: FxHashMap<&str, usize> = FxHashMap::default();
            let mut verdicts: Vec<Option<(String, Option<String>)>> = vec![None; rows.len()];
            let mut exact = 0u64;
            for &i in &order {
                match seen.get(keys[i].as_str()) {
                    Some(&k) if groups[k] != groups[i] => {
                        exact += 1;
                        verdicts[i] = Some((
                            format!(
                                "leak: exact duplicate of a {} row",
                                rows[k].split.map(Split::as_str).unwrap_or("unassigned")
                            ),
                            Some(rows[k].id.clone()),
                        ));
                    }
                    Some(_) => {}
                    None => {
                        seen.insert(keys[i].as_str(), i);
                    }
                }
            }
            let texts: Vec<&str> = rows.iter().map(|r| r.text.as_str()).collect();
            let near_order: Vec<usize> = order
                .iter()
                .copied()
                .filter(|&i| verdicts[i].is_none())
                .collect();
            let params = MinHashParams {
                num_perm: *num_perm,
                shingle: *shingle,
                threshold: *threshold,
                seed,
            };
            let dups = near_duplicates(&texts, &near_order, Some(&groups), &params);
            let mut near = 0u64;
            for (i, d) in dups.iter().enumerate() {
                if let (Some(j), None) = (d, &verdicts[i]) {
                    near += 1;
                    verdicts[i] = Some((
                        format!(
                            "leak: near duplicate (Jaccard >= {threshold}) of a {} row",
                            rows[*j].split.map(Split::as_str).unwrap_or("unassigned")
                        ),
                        Some(rows[*j].id.clone()),
                    ));
                }
            }
            take_rows(rows, &verdicts, name, removed);
            json!({ "exact": exact, "near": near })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn teacher_before_split_is_refused() {
        let text =
            "[[steps]]\ntype = \"teacher\"\nlogs = \"nowhere\"\n[[steps]]\ntype = \"split\"\n";
        let config = CurateConfig {
            seed: 1,
            steps: toml::from_str::<CurateConfig>(text).unwrap().steps,
            base: std::path::PathBuf::from("."),
        };
        let rows = vec![Example {
            id: content_id("a"),
            text: "a".into(),
            label: Some("x".into()),
            labels: None,
            spans: None,
            split: None,
            source: "t".into(),
            line: 1,
            source_id: None,
        }];
        let ds = Dataset::new("t".into(), Task::Classify, rows, Vec::new());
        let err = curate(ds, &config, |_| {}).err().expect("refused");
        assert!(err.to_string().contains("put it after `split`"), "{err}");
    }

    #[test]
    fn step_wire_format_is_pinned() {
        let text = r#"
seed = 7
[[steps]]
type = "normalize"
[[steps]]
type = "near-dedup"
threshold = 0.9
[[steps]]
type = "split"
train = 0.7
val = 0.15
test = 0.15
keep-existing = false
"#;
        let config: CurateConfig = toml::from_str(text).expect("parses");
        assert_eq!(config.seed, 7);
        assert_eq!(
            config.steps[0],
            Step::Normalize {
                nfkc: true,
                whitespace: true,
                lowercase: false
            }
        );
        assert_eq!(
            config.steps[1],
            Step::NearDedup {
                threshold: 0.9,
                num_perm: 64,
                shingle: 5
            }
        );
        let back = toml::to_string(&config).expect("serialises");
        let again: CurateConfig = toml::from_str(&back).expect("round trip");
        assert_eq!(again.steps, config.steps);
        let bad = "[[steps]]\ntype = \"near-dedup\"\ntreshold = 0.9\n";
        assert!(toml::from_str::<CurateConfig>(bad).is_err());
    }
}
