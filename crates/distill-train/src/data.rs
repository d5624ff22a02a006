//! Training data: the dataset's splits, featurized, joined with teacher soft labels.

use crate::config::ExperimentConfig;
use crate::error::{Error, Result};
use distill_core::hash::{seeded_u64, sha256_file, unit_interval};
use distill_core::types::{Example, Split, Task};
use rustc_hash::FxHashMap;
use serde::Deserialize;
use std::io::BufRead;
use std::path::{Path, PathBuf};

/// Gold supervision of one row.
#[derive(Debug, Clone, PartialEq)]
pub enum Gold {
    None,
    Class(usize),
    /// Multi-hot over the label set.
    Multi(Vec<f32>),
}

/// One example ready for training or evaluation.
#[derive(Debug, Clone)]
pub struct Row {
    pub id: String,
    pub text: String,
    pub gold: Gold,
    /// Teacher distribution over the label set (renormalised).
    pub teacher: Option<Vec<f32>>,
}

/// Where the dataset came from, for lineage.
#[derive(Debug, Clone)]
pub struct DatasetInfo {
    pub path: PathBuf,
    pub name: String,
    pub task: Task,
    pub labels: Vec<String>,
    /// sha256 of the examples (from dataset.json).
    pub sha256: String,
    /// The text steps curation applied (the model applies them to its input).
    pub preprocess: distill_core::text::Preprocess,
}

/// Everything the loop needs from data.
pub struct TrainData {
    pub info: DatasetInfo,
    pub train: Vec<Row>,
    pub val: Vec<Row>,
    pub test: Vec<Row>,
    /// How validation rows were chosen: `val split` or `carved from train (fraction f, seed s)`.
    pub val_source: String,
    pub teacher: Option<TeacherInfo>,
}

#[derive(Debug, Clone)]
pub struct TeacherInfo {
    pub path: PathBuf,
    pub sha256: String,
    /// Records read, and those joined to a training row.
    pub records: usize,
    pub joined: usize,
}

/// Resolve a path from a config relative to the config file's directory.
pub fn resolve(base: &Path, p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

fn gold_of(ex: &Example, task: Task, index: &FxHashMap<&str, usize>, n: usize) -> Gold {
    match task {
        Task::Multilabel => match &ex.labels {
            Some(ls) => {
                let mut v = vec![0f32; n];
                for l in ls {
                    if let Some(&i) = index.get(l.as_str()) {
                        v[i] = 1.0;
                    }
                }
                Gold::Multi(v)
            }
            None => Gold::None,
        },
        _ => match ex.label.as_deref().and_then(|l| index.get(l)) {
            Some(&i) => Gold::Class(i),
            None => Gold::None,
        },
    }
}

#[derive(Deserialize)]
struct TeacherLine {
    id: String,
    #[serde(default)]
    probs: Option<std::collections::BTreeMap<String, f64>>,
    /// Set on failed teacher-log records (`distill teach`): no usable answer.
    #[serde(default)]
    error: Option<serde_json::Value>,
}

/// Read teacher soft labels keyed by example id: a JSONL file or a teacher-log
/// directory (`logs.jsonl` from `distill teach`). Failed records are skipped;
/// the last record of an id wins. Unknown labels are an error.
pub fn read_teacher(path: &Path, labels: &[String]) -> Result<FxHashMap<String, Vec<f32>>> {
    let joined;
    let path = if path.is_dir() {
        joined = path.join("logs.jsonl");
        joined.as_path()
    } else {
        path
    };
    let index: FxHashMap<&str, usize> = labels
        .iter()
        .enumerate()
        .map(|(i, l)| (l.as_str(), i))
        .collect();
    let file = std::fs::File::open(path)
        .map_err(|e| Error::Input(format!("teacher file {}: {e}", path.display())))?;
    let mut out = FxHashMap::default();
    for (n, line) in std::io::BufReader::new(file).lines().enumerate() {
        let at = || format!("{}:{}", path.display(), n + 1);
        let line = line.map_err(|e| Error::Input(format!("{}: {e}", at())))?;
        if line.trim().is_empty() {
            continue;
        }
        let rec: TeacherLine = serde_json::from_str(&line)
            .map_err(|e| Error::Input(format!("{}: invalid teacher record: {e}", at())))?;
        // Failed records and records without probs carry no soft label.
        if rec.error.is_some() {
            continue;
        }
        let Some(probs) = rec.probs else { continue };
        let mut v = vec![0f32; labels.len()];
        for (label, p) in probs {
            let Some(&i) = index.get(label.as_str()) else {
                return Err(Error::Input(format!(
                    "{}: field `probs`: label `{label}` is not in the dataset's label set{}",
                    at(),
                    distill_core::config::nearest(&label, labels)
                        .map(|s| format!(" (did you mean `{s}`?)"))
                        .unwrap_or_default()
                )));
            };
            if !(p.is_finite() && p >= 0.0) {
                return Err(Error::Input(format!(
                    "{}: field `probs`: probability {p} for `{label}` is not a finite non-negative number",
                    at()
                )));
            }
            v[i] = p as f32;
        }
        let sum: f32 = v.iter().sum();
        if sum > 0.0 {
            v.iter_mut().for_each(|p| *p /= sum);
            out.insert(rec.id, v);
        }
    }
    Ok(out)
}

impl TrainData {
    pub fn load(config: &ExperimentConfig, base: &Path) -> Result<Self> {
        let path = resolve(base, &config.dataset);
        let path = std::fs::canonicalize(&path).unwrap_or(path);
        let curate = config.curate.as_ref().map(|c| resolve(base, c));
        let dataset = distill_data::open::open_dataset(&path, curate.as_deref())?;
        let task = dataset.manifest.task;
        if task == Task::Extract {
            return Err(Error::Input(format!(
                "dataset {}: task `extract` has no classification head yet; train on a classify or multilabel dataset",
                path.display()
            )));
        }
        let labels = dataset.manifest.labels.clone();
        if labels.len() < 2 {
            return Err(Error::Input(format!(
                "dataset {}: {} label(s); a classifier needs at least 2",
                path.display(),
                labels.len()
            )));
        }
        let index: FxHashMap<&str, usize> = labels
            .iter()
            .enumerate()
            .map(|(i, l)| (l.as_str(), i))
            .collect();
        let (teacher_map, teacher_info) = match &config.teacher {
            Some(t) => {
                let tp = resolve(base, t);
                let map = read_teacher(&tp, &labels)?;
                let file = if tp.is_dir() {
                    tp.join("logs.jsonl")
                } else {
                    tp.clone()
                };
                let sha = sha256_file(&file)?;
                let info = TeacherInfo {
                    path: tp,
                    sha256: sha,
                    records: map.len(),
                    joined: 0,
                };
                (Some(map), Some(info))
            }
            None => (None, None),
        };
        let mut train = Vec::new();
        let mut val = Vec::new();
        let mut test = Vec::new();
        let has_val = dataset.examples.iter().any(|e| e.split == Some(Split::Val));
        let carve_seed = crate::run::Seeds::derive(config.seed).val_split;
        for ex in &dataset.examples {
            let gold = gold_of(ex, task, &index, labels.len());
            let teacher = teacher_map.as_ref().and_then(|m| m.get(&ex.id).cloned());
            let row = Row {
                id: ex.id.clone(),
                text: ex.text.clone(),
                gold,
                teacher,
            };
            match ex.split.unwrap_or(Split::Train) {
                Split::Train => {
                    if !has_val
                        && unit_interval(seeded_u64(carve_seed, &ex.id)) < config.train.val_fraction
                        && row.gold != Gold::None
                    {
                        val.push(row);
                    } else {
                        train.push(row);
                    }
                }
                Split::Val => val.push(row),
                Split::Test => test.push(row),
                Split::Unlabeled => {
                    if row.teacher.is_some() {
                        train.push(row);
                    }
                }
            }
        }
        // Rows with neither gold nor teacher supervision teach nothing.
        train.retain(|r| r.gold != Gold::None || r.teacher.is_some());
        val.retain(|r| r.gold != Gold::None);
        test.retain(|r| r.gold != Gold::None);
        let teacher = teacher_info.map(|mut t| {
            t.joined = train.iter().filter(|r| r.teacher.is_some()).count();
            t
        });
        if train.is_empty() {
            return Err(Error::Input(format!(
                "dataset {}: the training split is empty (no labelled train rows{})",
                path.display(),
                if teacher.is_some() {
                    " and no teacher-labelled rows"
                } else {
                    ""
                }
            )));
        }
        if val.is_empty() {
            return Err(Error::Input(format!(
                "dataset {}: the validation split is empty (no `val` rows, and train.val-fraction = {} carved none)",
                path.display(),
                config.train.val_fraction
            )));
        }
        let val_source = if has_val {
            "val split".to_string()
        } else {
            format!(
                "carved from train (val-fraction {}, seed {carve_seed})",
                config.train.val_fraction
            )
        };
        Ok(TrainData {
            info: DatasetInfo {
                path,
                name: dataset.manifest.name.clone(),
                task,
                labels,
                sha256: dataset.manifest.examples_sha256.clone(),
                preprocess: dataset.manifest.preprocess.clone(),
            },
            train,
            val,
            test,
            val_source,
            teacher,
        })
    }
}
