//! The `teacher` curation step: join a teacher log (from `distill teach`) on
//! example id, keep or drop rows by teacher confidence and by agreement with
//! gold, and report teacher-gold agreement per label.

use crate::curate::KeepDrop;
use crate::error::{DataError, Result};
use distill_core::hash::content_id;
use distill_core::teacher_log;
use distill_core::types::{Example, Split};
use rustc_hash::FxHashMap;
use serde_json::json;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// What the step needs of a record: the teacher's top label and its probability.
#[derive(Debug, Clone)]
struct Verdict {
    label: Option<String>,
    labels: Option<Vec<String>>,
    confidence: Option<f64>,
    failed: bool,
}

pub struct TeacherLog {
    pub path: PathBuf,
    records: FxHashMap<String, Verdict>,
    /// Line number of an ignored partial last line (a killed `distill teach`).
    pub partial: Option<u64>,
}

/// Rows to drop (aligned with the input rows) and the step's report.
pub struct Judgement {
    pub drop: Vec<Option<(String, Option<String>)>>,
    pub details: serde_json::Value,
}

impl TeacherLog {
    /// Read `logs.jsonl` (or a directory holding it) through the one
    /// teacher-log reader (`distill_core::teacher_log`): last record per id
    /// wins, a partial last line is ignored, any other invalid line is an error.
    pub fn read(path: &Path) -> Result<Self> {
        let file_path = teacher_log::log_file(path);
        if !file_path.is_file() {
            return Err(DataError::MissingFile {
                path: file_path,
                hint: Some("create it with `distill teach <config>`".into()),
            });
        }
        let log = teacher_log::read_log_lines(&file_path)?;
        let records = log
            .records
            .into_iter()
            .map(|rec| {
                let top = rec.top().map(|(l, p)| (l.to_string(), p));
                let verdict = Verdict {
                    label: rec.label.or_else(|| top.as_ref().map(|t| t.0.clone())),
                    labels: rec.labels,
                    confidence: top.map(|t| t.1),
                    failed: rec.error.is_some(),
                };
                (rec.id, verdict)
            })
            .collect();
        Ok(TeacherLog {
            path: file_path,
            records,
            partial: log.partial,
        })
    }

    /// Ids of the usable (not failed) records.
    pub fn usable_ids(&self) -> Vec<&str> {
        let mut ids: Vec<&str> = self
            .records
            .iter()
            .filter(|(_, v)| !v.failed)
            .map(|(id, _)| id.as_str())
            .collect();
        ids.sort_unstable();
        ids
    }

    fn get(&self, row: &Example) -> Option<&Verdict> {
        self.records
            .get(&row.id)
            .or_else(|| self.records.get(&content_id(&row.text)))
            .filter(|v| !v.failed)
    }

    pub fn judge(
        &self,
        rows: &[Example],
        min_confidence: f64,
        missing: KeepDrop,
        disagree: KeepDrop,
    ) -> Judgement {
        let mut per_label: BTreeMap<String, (u64, u64)> = BTreeMap::new();
        let (mut joined, mut n_missing, mut low, mut n_disagree) = (0u64, 0u64, 0u64, 0u64);
        let mut kept_for_evaluation = 0u64;
        let mut drop = Vec::with_capacity(rows.len());
        for row in rows {
            // Validation and test rows are what a model is judged on: filtering
            // them by the teacher (dropping the rows it gets wrong or is unsure
            // of) would inflate every metric. Only training rows (and rows
            // without a split yet) are dropped; evaluation rows still count in
            // the agreement report.
            let droppable = !matches!(row.split, Some(Split::Val | Split::Test));
            let mut verdict = |reason: Option<String>| match reason {
                Some(r) if droppable => drop.push(Some((r, None))),
                Some(_) => {
                    kept_for_evaluation += 1;
                    drop.push(None)
                }
                None => drop.push(None),
            };
            let Some(v) = self.get(row) else {
                n_missing += 1;
                verdict((missing == KeepDrop::Drop).then(|| "no teacher record".to_string()));
                continue;
            };
            joined += 1;
            // Agreement where gold exists.
            let agrees = match (&row.label, &row.labels) {
                (Some(gold), _) => Some(v.label.as_deref() == Some(gold.as_str())),
                (None, Some(gold)) => {
                    let mut g = gold.clone();
                    g.sort();
                    let mut t = v.labels.clone().unwrap_or_default();
                    t.sort();
                    Some(g == t)
                }
                _ => None,
            };
            if let Some(a) = agrees {
                let key = row.label_list().join(",");
                let e = per_label.entry(key).or_insert((0, 0));
                e.0 += 1;
                e.1 += u64::from(a);
                n_disagree += u64::from(!a);
            }
            let conf = v.confidence.unwrap_or(1.0);
            if conf < min_confidence {
                low += 1;
                verdict(Some(format!(
                    "teacher confidence {conf:.3} < {min_confidence}"
                )));
            } else if agrees == Some(false) && disagree == KeepDrop::Drop {
                verdict(Some(format!(
                    "teacher says `{}`, gold is `{}`",
                    v.label
                        .clone()
                        .or_else(|| v.labels.as_ref().map(|l| l.join(",")))
                        .unwrap_or_default(),
                    row.label_list().join(",")
                )));
            } else {
                verdict(None);
            }
        }
        let (n_gold, n_agree) = per_label
            .values()
            .fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1));
        let agreement: BTreeMap<String, serde_json::Value> = per_label
            .iter()
            .map(|(l, (n, a))| {
                (
                    l.clone(),
                    json!({"n": n, "agree": a, "accuracy": *a as f64 / *n as f64}),
                )
            })
            .collect();
        Judgement {
            drop,
            details: json!({
                "logs": self.path.display().to_string(),
                "joined": joined,
                "missing": n_missing,
                "low_confidence": low,
                "disagree": n_disagree,
                "teacher_accuracy": (n_gold > 0).then(|| n_agree as f64 / n_gold as f64),
                "agreement": agreement,
                // Val/test rows the step's rules would drop, kept for evaluation.
                "kept_for_evaluation": kept_for_evaluation,
                "partial_last_line": self.partial,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(text: &str, label: &str, split: Option<Split>) -> Example {
        Example {
            id: content_id(text),
            text: text.into(),
            label: Some(label.into()),
            labels: None,
            spans: None,
            split,
            source: "t.csv".into(),
            line: 1,
            source_id: None,
        }
    }

    /// Evaluation rows the teacher gets wrong (or is unsure of) stay: dropping
    /// them would leave only the rows the teacher agrees with, and inflate
    /// every metric measured on them.
    #[test]
    fn disagreeing_val_and_test_rows_are_kept_and_still_counted() {
        let rows = vec![
            row("train row", "ham", Some(Split::Train)),
            row("val row", "ham", Some(Split::Val)),
            row("test row", "ham", Some(Split::Test)),
            row("no split yet", "ham", None),
            row("unsure test row", "spam", Some(Split::Test)),
            row("missing test row", "spam", Some(Split::Test)),
        ];
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("logs.jsonl");
        let mut text = String::new();
        for r in &rows[..4] {
            // The teacher says spam, gold says ham.
            text.push_str(&format!(
                "{{\"id\":\"{}\",\"probs\":{{\"ham\":0.1,\"spam\":0.9}}}}\n",
                r.id
            ));
        }
        text.push_str(&format!(
            "{{\"id\":\"{}\",\"probs\":{{\"ham\":0.45,\"spam\":0.55}}}}\n",
            rows[4].id
        ));
        std::fs::write(&path, text).unwrap();
        let log = TeacherLog::read(dir.path()).unwrap();
        let j = log.judge(&rows, 0.6, KeepDrop::Drop, KeepDrop::Drop);
        let dropped: Vec<bool> = j.drop.iter().map(Option::is_some).collect();
        assert_eq!(dropped, [true, false, false, true, false, false]);
        assert_eq!(j.details["disagree"], 4, "val/test still counted");
        assert_eq!(j.details["kept_for_evaluation"], 4);
        assert_eq!(j.details["low_confidence"], 1);
        assert_eq!(j.details["missing"], 1);
    }
}
