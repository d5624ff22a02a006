//! The experiment config (`configs/exp/*.toml`): dataset, teacher, model, training.

use distill_model::device::DeviceKind;
use distill_model::spec::ModelSpec;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ExperimentConfig {
    /// Experiment name: runs go to `<experiments>/<name>/<run-id>/`.
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// A dataset directory (from `distill data import|curate`) or a data config
    /// (`configs/data/*.toml`, imported in memory). Relative to this file.
    pub dataset: PathBuf,
    /// Optional curation config applied in memory after loading (e.g. to give
    /// an unsplit dataset its train/val/test split). Relative to this file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub curate: Option<PathBuf>,
    /// Teacher soft labels joined on example id: a teacher-log directory from
    /// `distill teach`, or JSONL of `{"id": .., "probs": {label: p}}`. Relative to this file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub teacher: Option<PathBuf>,
    /// Master seed: init, shuffling, dropout and the validation carve-out derive from it.
    #[serde(default = "d_seed")]
    pub seed: u64,
    #[serde(default)]
    pub device: DeviceKind,
    pub model: ModelSpec,
    #[serde(default)]
    pub train: TrainSpec,
    #[serde(default)]
    pub distill: DistillSpec,
    /// Evaluation suites `distill sweep` runs after training each point. Relative to this file.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub suites: Vec<PathBuf>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct TrainSpec {
    #[serde(default = "d_epochs")]
    pub epochs: usize,
    /// Stop after this many optimiser steps (overrides `epochs` when smaller).
    #[serde(default)]
    pub max_steps: Option<usize>,
    #[serde(default = "d_batch")]
    pub batch_size: usize,
    /// Peak learning rate (AdamW).
    #[serde(default = "d_lr")]
    pub lr: f64,
    #[serde(default = "d_wd")]
    pub weight_decay: f64,
    /// Linear warm-up, as a fraction of all steps.
    #[serde(default = "d_warmup")]
    pub warmup: f64,
    #[serde(default)]
    pub schedule: Schedule,
    /// Clip each parameter's gradient to this L2 norm (burn clips per
    /// parameter); 0 turns clipping off.
    #[serde(default = "d_clip")]
    pub grad_clip: f64,
    #[serde(default)]
    pub label_smoothing: f64,
    #[serde(default)]
    pub class_weights: ClassWeights,
    /// Stop when the validation metric has not improved for this many epochs (0 = never).
    #[serde(default = "d_patience")]
    pub patience: usize,
    /// The metric that selects the best epoch and drives early stopping.
    #[serde(default)]
    pub select: SelectMetric,
    /// Without a `val` split, this fraction of `train` (by seeded hash of the id) validates.
    #[serde(default = "d_val_fraction")]
    pub val_fraction: f64,
    /// Also checkpoint every N steps (epoch ends always checkpoint).
    #[serde(default)]
    pub checkpoint_every: Option<usize>,
    /// An epoch's end checkpoints only when this many seconds have passed
    /// since the last checkpoint (0: every epoch). The last epoch always
    /// checkpoints, and resume is exact from any checkpoint. A bag trains an
    /// epoch in ~0.1 s, where writing its ~17 MB of weights, hashed, each
    /// epoch cost more than the epoch.
    #[serde(default = "d_checkpoint_seconds")]
    pub checkpoint_seconds: f64,
    /// Checkpoints kept once the run completes (the newest). A completed run
    /// is never resumed, so the default 0 frees their space (weights plus
    /// optimizer state: about 3x the model each). While training, the newest
    /// two are always kept (resume, and a fallback from a damaged one).
    #[serde(default)]
    pub keep_checkpoints: usize,
    #[serde(default = "d_eval_batch")]
    pub eval_batch_size: usize,
    /// bag: train the embedding table with sparse (lazy Adam) updates on the
    /// host instead of burn's dense gradient. Same model, many times faster.
    #[serde(default = "d_true")]
    pub sparse_embeddings: bool,
    /// bag with sparse embeddings: the table's optimizer. `adam` (lazy Adam,
    /// two moments per weight) or `rowwise-adagrad` (one accumulator per
    /// row, as large recommender tables use: a third of the memory traffic).
    #[serde(default)]
    pub sparse_optimizer: SparseOptimizer,
    /// The table's peak learning rate (default: `lr`); follows the same
    /// warm-up and decay.
    #[serde(default)]
    pub sparse_lr: Option<f64>,
    /// Decision threshold for multilabel metrics.
    #[serde(default = "d_threshold")]
    pub threshold: f64,
    /// pretrained: keep the embeddings and the lowest N encoder layers as
    /// loaded (no gradient, no dropout). N at least the encoder's depth
    /// freezes it whole: the fast mode, which computes each text's sentence
    /// embedding once (cached by content under `$DISTILL_CACHE/embeddings`)
    /// and trains only the head.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub freeze_layers: usize,
}

fn is_zero(v: &usize) -> bool {
    *v == 0
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SparseOptimizer {
    #[default]
    Adam,
    RowwiseAdagrad,
}

impl Default for TrainSpec {
    fn default() -> Self {
        // Deserialising an empty table applies every field default in one place.
        toml::from_str("").unwrap_or_else(|_| unreachable!("defaults deserialise"))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Schedule {
    #[default]
    Cosine,
    Linear,
    Constant,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ClassWeights {
    #[default]
    None,
    /// n / (classes * count(class)), as in scikit-learn.
    Balanced,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SelectMetric {
    #[default]
    ValMacroF1,
    ValAccuracy,
    ValLoss,
}

impl SelectMetric {
    pub fn key(self) -> &'static str {
        match self {
            SelectMetric::ValMacroF1 => "val_macro_f1",
            SelectMetric::ValAccuracy => "val_accuracy",
            SelectMetric::ValLoss => "val_loss",
        }
    }
    /// This metric's value in `m`.
    pub fn value(self, m: &crate::metrics::Metrics) -> f64 {
        match self {
            SelectMetric::ValMacroF1 => m.macro_f1,
            SelectMetric::ValAccuracy => m.accuracy,
            SelectMetric::ValLoss => m.loss,
        }
    }

    /// Whether `a` is better than `b`.
    pub fn better(self, a: f64, b: f64) -> bool {
        match self {
            SelectMetric::ValLoss => a < b,
            _ => a > b,
        }
    }
}

/// Knowledge distillation: `alpha * T^2 * KL(teacher_T || student_T) + (1 - alpha) * CE(gold)`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct DistillSpec {
    #[serde(default = "d_alpha")]
    pub alpha: f64,
    #[serde(default = "d_temperature")]
    pub temperature: f64,
}

impl Default for DistillSpec {
    fn default() -> Self {
        DistillSpec {
            alpha: d_alpha(),
            temperature: d_temperature(),
        }
    }
}

impl ExperimentConfig {
    /// Checks that serde cannot express.
    pub fn validate(&self) -> Result<(), String> {
        self.model.validate().map_err(|e| e.to_string())?;
        let t = &self.train;
        if t.batch_size == 0 {
            return Err("train.batch-size must be > 0".into());
        }
        if t.epochs == 0 && t.max_steps.is_none() {
            return Err("train.epochs must be > 0".into());
        }
        if !(t.lr > 0.0 && t.lr.is_finite()) {
            return Err(format!("train.lr must be a positive number, got {}", t.lr));
        }
        if !(0.0..1.0).contains(&t.warmup) {
            return Err(format!("train.warmup {} must be in [0, 1)", t.warmup));
        }
        if !(0.0..1.0).contains(&t.label_smoothing) {
            return Err(format!(
                "train.label-smoothing {} must be in [0, 1)",
                t.label_smoothing
            ));
        }
        if !(0.0..1.0).contains(&t.val_fraction) {
            return Err(format!(
                "train.val-fraction {} must be in [0, 1)",
                t.val_fraction
            ));
        }
        if !(0.0..=1.0).contains(&self.distill.alpha) {
            return Err(format!(
                "distill.alpha {} must be in [0, 1]",
                self.distill.alpha
            ));
        }
        if self.distill.temperature <= 0.0 || self.distill.temperature.is_nan() {
            return Err(format!(
                "distill.temperature {} must be > 0",
                self.distill.temperature
            ));
        }
        // The name is a directory under `experiments/`.
        distill_core::names::validate_name(&self.name).map_err(|e| format!("`name`: {e}"))?;
        Ok(())
    }
}

fn d_true() -> bool {
    true
}
fn d_seed() -> u64 {
    42
}
fn d_epochs() -> usize {
    10
}
fn d_batch() -> usize {
    64
}
fn d_lr() -> f64 {
    1e-3
}
fn d_wd() -> f64 {
    0.01
}
fn d_warmup() -> f64 {
    0.05
}
fn d_clip() -> f64 {
    1.0
}
fn d_patience() -> usize {
    3
}
fn d_val_fraction() -> f64 {
    0.1
}
fn d_checkpoint_seconds() -> f64 {
    30.0
}

fn d_eval_batch() -> usize {
    256
}
fn d_threshold() -> f64 {
    0.5
}
fn d_alpha() -> f64 {
    0.5
}
/// Measured (bench/temperature.sh, banking77, 3 seeds): T 1 gave 89.58 ± 0.15,
/// T 2 88.98 ± 0.27, T 4 88.93 ± 0.26; with a MiniLM teacher T 2 was also
/// worse than T 1 (issue 18). Soft labels from a teacher's probabilities
/// are already soft; sharpening them less keeps what the teacher knows.
fn d_temperature() -> f64 {
    1.0
}
