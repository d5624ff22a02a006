//! The `teacher` curation step: join a teacher log (from `distill teach`) on
//! example id, keep or drop rows by teacher confidence and by agreement with
//! gold, and report teacher-gold agreement per label.

use crate::curate::KeepDrop;
use crate::error::{DataError, Result};
use distill_core::hash::content_id;
use distill_core::types::Example;
use rustc_hash::FxHashMap;
use serde::Deserialize;
use serde_json::json;
use std::collections::BTreeMap;
use std::io::BufRead;
use std::path::{Path, PathBuf};

/// What the step needs of a record: the teacher's top label and its probability.
#[derive(Debug, Clone)]
struct Verdict {
    label: Option<String>,
    labels: Option<Vec<String>>,
    confidence: Option<f64>,
    failed: bool,
}

#[derive(Deserialize)]
struct Line {
    id: String,
    #[serde(default)]
    label: Option<String>,
    #[serde(default)]
    labels: Option<Vec<String>>,
    #[serde(default)]
    probs: Option<BTreeMap<String, f64>>,
    #[serde(default)]
    error: Option<serde_json::Value>,
}

pub struct TeacherLog {
    pub path: PathBuf,
    records: FxHashMap<String, Verdict>,
}

/// Rows to drop (aligned with the input rows) and the step's report.
pub struct Judgement {
    pub drop: Vec<Option<(String, Option<String>)>>,
    pub details: serde_json::Value,
}

impl TeacherLog {
    /// Read `logs.jsonl` (or a directory holding it). Last record per id wins.
    pub fn read(path: &Path) -> Result<Self> {
        let file_path = if path.is_dir() {
            path.join("logs.jsonl")
        } else {
            path.to_path_buf()
        };
        let file = std::fs::File::open(&file_path).map_err(|_| DataError::MissingFile {
            path: file_path.clone(),
            hint: Some("create it with `distill teach <config>`".into()),
        })?;
        let mut records = FxHashMap::default();
        for (n, line) in std::io::BufReader::new(file).lines().enumerate() {
            let line = line.map_err(|e| DataError::Io {
                path: file_path.clone(),
                source: e,
            })?;
            if line.trim().is_empty() {
                continue;
            }
            let rec: Line = match serde_json::from_str(&line) {
                Ok(r) => r,
                // A partial last line of a killed run: `distill teach` redoes it.
                Err(_) if !line.ends_with('}') => continue,
                Err(e) => {
                    return Err(DataError::BadFile {
                        path: file_path.clone(),
                        message: format!("line {}: invalid teacher record: {e}", n + 1),
                    });
                }
            };
            let top = rec.probs.as_ref().and_then(|p| {
                p.iter()
                    .max_by(|a, b| a.1.total_cmp(b.1))
                    .map(|(l, &v)| (l.clone(), v))
            });
            let verdict = Verdict {
                label: rec.label.or_else(|| top.as_ref().map(|t| t.0.clone())),
                labels: rec.labels,
                confidence: top.map(|t| t.1),
                failed: rec.error.is_some(),
            };
            records.insert(rec.id, verdict);
        }
        Ok(TeacherLog {
            path: file_path,
            records,
        })
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
        let mut drop = Vec::with_capacity(rows.len());
        for row in rows {
            let Some(v) = self.get(row) else {
                n_missing += 1;
                drop.push(
                    (missing == KeepDrop::Drop).then(|| ("no teacher record".to_string(), None)),
                );
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
                drop.push(Some((
                    format!("teacher confidence {conf:.3} < {min_confidence}"),
                    None,
                )));
            } else if agrees == Some(false) && disagree == KeepDrop::Drop {
                drop.push(Some((
                    format!(
                        "teacher says `{}`, gold is `{}`",
                        v.label
                            .clone()
                            .or_else(|| v.labels.as_ref().map(|l| l.join(",")))
                            .unwrap_or_default(),
                        row.label_list().join(",")
                    ),
                    None,
                )));
            } else {
                drop.push(None);
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
            }),
        }
    }
}
