//! Training data: the dataset's splits, featurized, joined with teacher soft labels.

use crate::config::ExperimentConfig;
use crate::error::{Error, Result};
use distill_core::hash::{seeded_u64, unit_interval};
use distill_core::types::{Example, Split, Task};
use rustc_hash::FxHashMap;
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
    /// Teacher targets over the label set: a distribution (renormalised) for
    /// `classify`, independent per-label probabilities for `multilabel`.
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
    /// The validation rows were carved out of the training split (no val split).
    pub carved_val: bool,
    pub teacher: Option<TeacherInfo>,
}

impl TrainData {
    /// Validation rows the teacher log has soft labels for. When they were
    /// carved out of train, a teacher trained on the whole training split
    /// has seen them.
    pub fn val_teacher_overlap(&self) -> usize {
        self.val.iter().filter(|r| r.teacher.is_some()).count()
    }
}

#[derive(Debug, Clone)]
pub struct TeacherInfo {
    pub path: PathBuf,
    pub sha256: String,
    /// Records read, and those joined to a training row.
    pub records: usize,
    pub joined: usize,
}

pub use distill_core::run_layout::resolve;

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

/// Teacher soft labels keyed by example id, and the sha256 of the very bytes
/// they were parsed from (for lineage and the `--resume` check).
#[derive(Debug, Clone)]
pub struct TeacherTargets {
    pub targets: FxHashMap<String, Vec<f32>>,
    pub sha256: String,
}

/// Read teacher soft labels keyed by example id: a teacher-log directory
/// (`logs.jsonl` from `distill teach`), a `logs.jsonl`, or a plain JSONL
/// file of `{"id", "probs"}` lines, through the one teacher-log reader
/// (`distill_core::teacher_log`): a partial last line (a killed `teach`;
/// a whole record without its newline is read) is ignored, any other invalid line is an error naming `file:line`. Failed
/// records and records without probs are skipped; the last record of an id
/// wins. Unknown labels are an error. The file is read once: its sha256 is
/// hashed in the same pass as it is parsed.
///
/// `classify` probabilities are renormalised over the label set.
/// `multilabel` probabilities are independent per label (BCE targets): they
/// are kept as they are, and a value above 1 is an error.
pub fn read_teacher(path: &Path, labels: &[String], task: Task) -> Result<TeacherTargets> {
    let file = distill_core::teacher_log::log_file(path);
    if !file.is_file() {
        return Err(Error::Input(format!(
            "teacher file {}: no such file (expected a teacher-log directory from `distill teach`, its logs.jsonl, or a JSONL of {{\"id\", \"probs\"}} lines)",
            file.display()
        )));
    }
    let log = distill_core::teacher_log::read_log_lines(&file)?;
    if let Some(line) = log.partial {
        eprintln!(
            "warning: {}:{line}: last line is cut short (no trailing newline, not a whole record: a killed `distill teach`?); ignored",
            file.display()
        );
    }
    let index: FxHashMap<&str, usize> = labels
        .iter()
        .enumerate()
        .map(|(i, l)| (l.as_str(), i))
        .collect();
    let sha256 = log.sha256;
    let mut out = FxHashMap::default();
    for (rec, line) in log.records.into_iter().zip(log.line_numbers) {
        // Failed records and records without probs carry no soft label.
        if rec.failed() {
            continue;
        }
        let Some(probs) = rec.probs else { continue };
        let at = || format!("{}:{line}", file.display());
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
            if task == Task::Multilabel && p > 1.0 + 1e-6 {
                return Err(Error::Input(format!(
                    "{}: field `probs`: probability {p} for `{label}` is above 1 (multi-label probabilities are per label, each in [0, 1])",
                    at()
                )));
            }
            v[i] = p as f32;
        }
        match task {
            Task::Multilabel => {
                v.iter_mut().for_each(|p| *p = p.clamp(0.0, 1.0));
                out.insert(rec.id, v);
            }
            _ => {
                let sum: f32 = v.iter().sum();
                if sum > 0.0 {
                    v.iter_mut().for_each(|p| *p /= sum);
                    out.insert(rec.id, v);
                }
            }
        }
    }
    Ok(TeacherTargets {
        targets: out,
        sha256,
    })
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
                // The lineage hash is of the bytes trained on (one read).
                let read = read_teacher(&tp, &labels, task)?;
                let info = TeacherInfo {
                    path: tp,
                    sha256: read.sha256,
                    records: read.targets.len(),
                    joined: 0,
                };
                (Some(read.targets), Some(info))
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
            carved_val: !has_val,
            teacher,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    /// Multi-label teachers give independent per-label probabilities (BCE
    /// targets): two labels the teacher is sure of stay at 0.9, not 0.9 / 1.9.
    #[test]
    fn multilabel_teacher_probabilities_stay_independent() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.jsonl");
        std::fs::write(
            &path,
            "{\"id\":\"x\",\"probs\":{\"a\":0.9,\"b\":0.9,\"c\":0.1}}\n{\"id\":\"y\",\"probs\":{\"a\":0.0,\"b\":0.0,\"c\":0.0}}\n",
        )
        .unwrap();
        let l = labels(&["a", "b", "c"]);
        let m = read_teacher(&path, &l, Task::Multilabel).unwrap().targets;
        assert_eq!(m["x"], [0.9, 0.9, 0.1]);
        assert_eq!(m["y"], [0.0, 0.0, 0.0], "no label at all is a target too");
        // The same file for a single-label task is a distribution.
        let m = read_teacher(&path, &l, Task::Classify).unwrap().targets;
        let sum: f32 = m["x"].iter().sum();
        assert!((sum - 1.0).abs() < 1e-6 && (m["x"][0] - 0.9 / 1.9).abs() < 1e-6);
        assert!(!m.contains_key("y"));

        std::fs::write(&path, "{\"id\":\"x\",\"probs\":{\"a\":1.5}}\n").unwrap();
        let err = read_teacher(&path, &l, Task::Multilabel)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("t.jsonl:1") && err.contains("above 1"),
            "{err}"
        );
    }

    /// A hand-made soft-label file whose last line has no newline: its last
    /// record is trained on, and the lineage hash is of the bytes parsed.
    #[test]
    fn a_hand_made_file_without_a_final_newline_keeps_its_last_record() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("soft.jsonl");
        let text =
            "{\"id\":\"x\",\"probs\":{\"a\":0.9,\"b\":0.1}}\n{\"id\":\"y\",\"probs\":{\"b\":1.0}}";
        std::fs::write(&path, text).unwrap();
        let read = read_teacher(&path, &labels(&["a", "b"]), Task::Classify).unwrap();
        assert_eq!(read.targets.len(), 2, "the last record is kept");
        assert_eq!(read.targets["y"], [0.0, 1.0]);
        assert_eq!(read.sha256, distill_core::hash::sha256_hex(text.as_bytes()));
    }

    /// A log cut mid-line by a killed `distill teach` reads the same in
    /// curation (`teacher` step) and in training: the partial last line is
    /// ignored by both; an invalid line before it is an error in both.
    #[test]
    fn a_killed_teach_log_reads_alike_in_curation_and_training() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(distill_core::teacher_log::LOGS_FILE);
        let line = |id: &str| {
            format!(
                "{{\"id\":\"{id}\",\"teacher\":{{\"kind\":\"openai\",\"model\":\"m\",\"params_hash\":\"h\"}},\"label\":\"a\",\"probs\":{{\"a\":0.8,\"b\":0.2}},\"usage\":{{\"prompt_tokens\":3,\"completion_tokens\":1}},\"latency_ms\":1.0,\"cost\":0.0,\"attempts\":1}}\n"
            )
        };
        let complete = format!("{}{}", line("one"), line("two"));
        let cut = &line("three")[..40];
        std::fs::write(&path, format!("{complete}{cut}")).unwrap();
        let l = labels(&["a", "b"]);

        let curation = distill_data::teacher::TeacherLog::read(dir.path()).unwrap();
        let training = read_teacher(dir.path(), &l, Task::Classify)
            .unwrap()
            .targets;
        let mut trained: Vec<&str> = training.keys().map(String::as_str).collect();
        trained.sort_unstable();
        assert_eq!(curation.usable_ids(), ["one", "two"]);
        assert_eq!(trained, curation.usable_ids());
        assert_eq!(curation.partial, Some(3));

        // The same cut line in the middle is corruption, not a kill: both refuse.
        std::fs::write(&path, format!("{}{cut}\n{}", line("one"), line("two"))).unwrap();
        let at = format!("{}:2", path.display());
        let e1 = distill_data::teacher::TeacherLog::read(dir.path())
            .err()
            .unwrap()
            .to_string();
        let e2 = read_teacher(dir.path(), &l, Task::Classify)
            .unwrap_err()
            .to_string();
        assert!(e1.contains(&at), "{e1}");
        assert!(e2.contains(&at), "{e2}");
    }
}
