//! A trained distill run as teacher: exact probabilities over the label set.
//! A large local student (an encoder) can teach a small one (a bag).

use crate::collect::Progress;
use crate::config::LocalSpec;
use crate::error::{Error, Result};
use crate::record::{LogWriter, RunStats, TeacherId, TeacherRecord};
use distill_core::run_layout::MODEL_DIR;
use distill_core::types::{Example, Task};
use distill_model::artifact::Predictor;
use std::path::{Path, PathBuf};
use std::time::Instant;

pub struct LocalTeacher {
    predictor: Predictor,
    /// The preprocessing the dataset's rows already went through.
    applied: distill_core::text::Preprocess,
    /// Column of each dataset label in the model's output.
    columns: Vec<usize>,
    labels: Vec<String>,
    task: Task,
    batch_size: usize,
    pub model_name: String,
    pub params: serde_json::Value,
}

/// A run directory (with `model/`) or a model directory.
fn model_dir(path: &Path) -> Result<PathBuf> {
    let path = &distill_core::run_layout::resolve_latest(path);
    for candidate in [path.join(MODEL_DIR), path.to_path_buf()] {
        if candidate.join("model.json").is_file() {
            return Ok(candidate);
        }
    }
    Err(Error::Input(format!(
        "teacher.run = {}: no trained model there (expected a run directory with model/model.json, or a model directory); train one with `distill train`",
        path.display()
    )))
}

impl LocalTeacher {
    /// `applied`: the preprocessing the dataset's rows already went through
    /// (the model's own is not applied twice).
    pub fn load(
        path: &Path,
        spec: &LocalSpec,
        task: Task,
        labels: &[String],
        applied: &distill_core::text::Preprocess,
    ) -> Result<Self> {
        let dir = model_dir(path)?;
        let resolved = distill_core::run_layout::resolve_latest(path);
        let path = resolved.as_path();
        let predictor = Predictor::load(&dir, spec.device)?;
        if predictor.meta.task != task {
            return Err(Error::Input(format!(
                "teacher.run = {}: the model was trained for task `{}`, the dataset is `{task}`",
                path.display(),
                predictor.meta.task
            )));
        }
        let mut columns = Vec::with_capacity(labels.len());
        for l in labels {
            match predictor.meta.labels.iter().position(|m| m == l) {
                Some(i) => columns.push(i),
                None => {
                    return Err(Error::Input(format!(
                        "teacher.run = {}: the model does not know label `{l}` of the dataset (it knows {} labels); train it on this label set",
                        path.display(),
                        predictor.meta.labels.len()
                    )));
                }
            }
        }
        let weights = distill_core::hash::sha256_file(&dir.join("weights.bpk"))?;
        let canonical = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
        let model_name = canonical
            .iter()
            .rev()
            .take(if dir == path.join(MODEL_DIR) { 2 } else { 3 })
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .map(|s| s.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join("/");
        let params = serde_json::json!({
            "run": canonical.display().to_string(),
            "weights_sha256": weights,
            "labels": labels,
        });
        Ok(LocalTeacher {
            predictor,
            applied: applied.clone(),
            columns,
            labels: labels.to_vec(),
            task,
            batch_size: spec.batch_size.max(1),
            model_name,
            params,
        })
    }

    pub fn run(
        &self,
        teacher: &TeacherId,
        todo: &[&Example],
        writer: &mut LogWriter,
        progress: &mut Progress,
    ) -> Result<RunStats> {
        let mut stats = RunStats {
            concurrency: 1,
            ..Default::default()
        };
        for chunk in todo.chunks(self.batch_size * 4) {
            let t0 = Instant::now();
            let texts: Vec<&str> = chunk.iter().map(|e| e.text.as_str()).collect();
            let probs = self
                .predictor
                .predict_proba_from(&texts, &self.applied, self.batch_size);
            let per_row_ms = t0.elapsed().as_secs_f64() * 1e3 / chunk.len() as f64;
            for (ex, p) in chunk.iter().zip(probs) {
                let mut rec = TeacherRecord::new(ex.id.clone(), teacher.clone());
                let mut v: Vec<f64> = self.columns.iter().map(|&c| f64::from(p[c])).collect();
                match self.task {
                    Task::Multilabel => {
                        let on: Vec<String> = self
                            .labels
                            .iter()
                            .zip(&v)
                            .filter(|(_, p)| **p >= 0.5)
                            .map(|(l, _)| l.clone())
                            .collect();
                        rec.output = Some(on.join(", "));
                        rec.labels = Some(on);
                        rec.coverage = Some(1.0);
                    }
                    _ => {
                        // Mass outside the dataset's labels (a model trained on more labels).
                        let mass: f64 = v.iter().sum();
                        if mass > 0.0 {
                            v.iter_mut().for_each(|x| *x /= mass);
                        }
                        let top = crate::record::argmax(&v);
                        rec.label = top.map(|i| self.labels[i].clone());
                        rec.output = rec.label.clone();
                        rec.coverage = Some(mass.min(1.0));
                    }
                }
                rec.probs = Some(self.labels.iter().cloned().zip(v).collect());
                rec.probs_source = Some("exact".into());
                rec.latency_ms = per_row_ms;
                writer.append(&rec)?;
                progress.record(&rec, 0);
                stats.done += 1;
            }
        }
        Ok(stats)
    }
}
