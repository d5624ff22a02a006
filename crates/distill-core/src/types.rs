//! Types shared by every stage: tasks, splits, examples, rejects and the
//! dataset manifest (`dataset.json`).

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// Version of `dataset.json` and `examples.parquet` this build writes.
pub const DATASET_SCHEMA_VERSION: u32 = 1;

/// What a model predicts for one text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Task {
    /// One label per text.
    #[default]
    Classify,
    /// A set of labels per text.
    Multilabel,
    /// Labelled character spans (fields, slots) per text.
    Extract,
}

impl fmt::Display for Task {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Task::Classify => "classify",
            Task::Multilabel => "multilabel",
            Task::Extract => "extract",
        })
    }
}

/// Which part of a dataset a row belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Split {
    Train,
    Val,
    Test,
    /// Rows without gold labels (teacher targets only).
    Unlabeled,
}

impl Split {
    pub const ALL: [Split; 4] = [Split::Train, Split::Val, Split::Test, Split::Unlabeled];

    pub fn as_str(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Val => "val",
            Split::Test => "test",
            Split::Unlabeled => "unlabeled",
        }
    }

    /// Parse a split name, accepting the common spellings of source datasets
    /// (`validation`, `validate`, `dev`, `valid`).
    pub fn parse(name: &str) -> Option<Split> {
        match name.trim().to_ascii_lowercase().as_str() {
            "train" | "training" => Some(Split::Train),
            "val" | "valid" | "validation" | "validate" | "dev" => Some(Split::Val),
            "test" | "testing" | "eval" => Some(Split::Test),
            "unlabeled" | "unlabelled" => Some(Split::Unlabeled),
            _ => None,
        }
    }
}

impl fmt::Display for Split {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A labelled character span (byte offsets are never exposed: `start` and
/// `end` count Unicode scalar values, end exclusive).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Span {
    pub start: usize,
    pub end: usize,
    pub label: String,
}

/// One row of a dataset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Example {
    /// Content hash of `text` (see [`crate::hash::content_id`]).
    pub id: String,
    pub text: String,
    /// The gold label (`classify`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// The gold label set (`multilabel`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<Vec<String>>,
    /// Gold spans (`extract`, or slots alongside intents).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spans: Option<Vec<Span>>,
    /// `None` until a split is assigned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub split: Option<Split>,
    /// Source file (as given) and 1-based line or record number: provenance.
    pub source: String,
    pub line: u64,
    /// The source's own row id, when the mapping names one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_id: Option<String>,
}

impl Example {
    /// Whether the row carries a gold target for `task`.
    pub fn is_labeled(&self, task: Task) -> bool {
        match task {
            Task::Classify => self.label.is_some(),
            Task::Multilabel => self.labels.is_some(),
            Task::Extract => self.spans.is_some(),
        }
    }

    /// The row's labels as a list, whatever the task.
    pub fn label_list(&self) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::new();
        if let Some(l) = &self.label {
            out.push(l);
        }
        if let Some(ls) = &self.labels {
            out.extend(ls.iter().map(String::as_str));
        }
        out
    }
}

/// A row that could not be imported, kept with the reason.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reject {
    pub file: String,
    /// 1-based line in the file, when the format has lines.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line: Option<u64>,
    /// JSON pointer or record index, when the format has no lines.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    pub reason: String,
    /// The raw row (lossy UTF-8, truncated to 1,000 characters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw: Option<String>,
}

/// A source file that fed a dataset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SourceFile {
    pub path: String,
    pub sha256: String,
    pub format: String,
    pub rows: u64,
    pub rejected: u64,
}

/// `dataset.json`: what a dataset directory holds and where it came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatasetManifest {
    pub schema_version: u32,
    pub name: String,
    pub task: Task,
    /// Sorted label set.
    pub labels: Vec<String>,
    /// Rows per split (`unassigned` for rows without a split yet).
    pub counts: BTreeMap<String, u64>,
    pub rows: u64,
    pub rejected: u64,
    pub sources: Vec<SourceFile>,
    /// sha256 of `examples.parquet`: the dataset's identity in lineage records.
    pub examples_sha256: String,
    pub created_by: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Present on curated datasets: the pipeline, its seed and what each step did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub curation: Option<serde_json::Value>,
    /// The text-changing steps applied to every row, in order (normalise,
    /// redact PII): a model trained on these rows applies them to its input.
    #[serde(default, skip_serializing_if = "crate::text::Preprocess::is_empty")]
    pub preprocess: crate::text::Preprocess,
}

/// Count rows per split, `unassigned` for rows without one.
pub fn split_counts<'a>(rows: impl IntoIterator<Item = &'a Example>) -> BTreeMap<String, u64> {
    let mut counts = BTreeMap::new();
    for row in rows {
        let key = row.split.map(Split::as_str).unwrap_or("unassigned");
        *counts.entry(key.to_string()).or_insert(0) += 1;
    }
    counts
}

/// The sorted, de-duplicated label set of some rows.
pub fn label_set<'a>(rows: impl IntoIterator<Item = &'a Example>) -> Vec<String> {
    let mut set = std::collections::BTreeSet::new();
    for row in rows {
        for l in row.label_list() {
            set.insert(l.to_string());
        }
        if let Some(spans) = &row.spans
            && row.label.is_none()
            && row.labels.is_none()
        {
            for s in spans {
                set.insert(s.label.clone());
            }
        }
    }
    set.into_iter().collect()
}
