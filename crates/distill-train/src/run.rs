//! The run directory: `run.json`, `metrics.jsonl`, `checkpoints/`, `model/`.

use crate::error::{Error, Result};
use crate::metrics::Metrics;
use distill_core::fsutil::{read_json, write_atomic, write_json_atomic};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

// The layout lives in distill-core (readers of runs need not depend on training).
pub use distill_core::run_layout::{
    CHECKPOINTS, CONFIG_FILE, METRICS_FILE, MODEL_DIR, RUN_FILE, Status, resolve_latest,
};
pub const RUN_SCHEMA_VERSION: u32 = 1;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Seeds {
    pub master: u64,
    pub init: u64,
    pub shuffle: u64,
    pub dropout: u64,
    pub val_split: u64,
}

impl Seeds {
    pub fn derive(master: u64) -> Self {
        let d = |k: &str| distill_core::hash::seeded_u64(master, k);
        Seeds {
            master,
            init: d("init"),
            shuffle: d("shuffle"),
            dropout: d("dropout"),
            val_split: master ^ 0x7661_6c00,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Lineage {
    pub dataset: String,
    pub dataset_name: String,
    pub dataset_sha256: String,
    pub val_source: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub teacher: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub teacher_sha256: Option<String>,
}

/// `run.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunInfo {
    pub schema_version: u32,
    pub experiment: String,
    pub run_id: String,
    pub status: Status,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub started_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
    /// Times the run was resumed.
    pub resumes: u32,
    pub seeds: Seeds,
    pub git_commit: Option<String>,
    pub versions: BTreeMap<String, String>,
    pub device: String,
    pub task: distill_core::types::Task,
    pub model_kind: String,
    pub lineage: Lineage,
    /// Rows per role: train, val, test, teacher (train rows with soft labels).
    pub counts: BTreeMap<String, usize>,
    pub params: usize,
    pub model_bytes: u64,
    pub steps: u64,
    pub epochs: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub best_epoch: Option<usize>,
    /// Training time (without evaluation), summed over resumes.
    pub train_seconds: f64,
    /// Wall time of the training phase (featurizing, steps, validation,
    /// checkpoints), summed over resumes.
    #[serde(default)]
    pub loop_seconds: f64,
    /// Final metrics: `val_accuracy`, `val_macro_f1`, `val_loss`, `test_*`, `examples_per_s`.
    pub metrics: BTreeMap<String, f64>,
}

impl RunInfo {
    /// A run's `run.json` as it starts: status running, nothing measured yet.
    #[allow(clippy::too_many_arguments)]
    pub fn started(
        experiment: &str,
        run_id: &str,
        seeds: &Seeds,
        device: String,
        task: distill_core::types::Task,
        model_kind: &str,
        lineage: Lineage,
        counts: BTreeMap<String, usize>,
    ) -> Self {
        let mut versions = BTreeMap::new();
        versions.insert("distill".to_string(), env!("CARGO_PKG_VERSION").to_string());
        versions.insert("burn".to_string(), distill_model::BURN_VERSION.to_string());
        RunInfo {
            schema_version: RUN_SCHEMA_VERSION,
            experiment: experiment.to_string(),
            run_id: run_id.to_string(),
            status: Status::Running,
            error: None,
            started_at: utc_stamp(SystemTime::now()),
            finished_at: None,
            resumes: 0,
            seeds: seeds.clone(),
            git_commit: git_commit(),
            versions,
            device,
            task,
            model_kind: model_kind.to_string(),
            lineage,
            counts,
            params: 0,
            model_bytes: 0,
            steps: 0,
            epochs: 0,
            best_epoch: None,
            train_seconds: 0.0,
            loop_seconds: 0.0,
            metrics: BTreeMap::new(),
        }
    }

    pub fn save(&self, dir: &Path) -> Result<()> {
        Ok(write_json_atomic(&dir.join(RUN_FILE), self)?)
    }
    pub fn load(dir: &Path) -> Result<Self> {
        Ok(read_json(&dir.join(RUN_FILE))?)
    }
}

/// Put validation / test metrics into a flat map under `prefix_`.
pub fn flatten(prefix: &str, m: &Metrics, out: &mut BTreeMap<String, f64>) {
    out.insert(format!("{prefix}_accuracy"), m.accuracy);
    out.insert(format!("{prefix}_macro_f1"), m.macro_f1);
    out.insert(format!("{prefix}_loss"), m.loss);
    if let Some(micro) = m.micro_f1 {
        out.insert(format!("{prefix}_micro_f1"), micro);
    }
}

/// The best epoch so far.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Best {
    pub epoch: usize,
    pub step: u64,
    pub value: f64,
    pub val: Metrics,
}

/// Loop state saved with every checkpoint.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct TrainState {
    pub global_step: u64,
    /// Epoch in progress (0-based) and batches of it already done.
    pub epoch: usize,
    pub batch_in_epoch: usize,
    pub epoch_loss_sum: f64,
    pub epoch_batches: u64,
    pub best: Option<Best>,
    pub bad_epochs: usize,
    pub train_seconds: f64,
    /// Wall time of the training phase so far: featurizing, steps,
    /// validation and checkpoints (not import or the final test scoring).
    #[serde(default)]
    pub loop_seconds: f64,
    pub examples: u64,
    /// Early stopping fired or all epochs ran.
    pub finished: bool,
}

/// `state.json` of a checkpoint: the loop state and the sha256 of every other
/// file of the checkpoint, so that a damaged checkpoint is noticed on resume
/// instead of being trained on.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct CheckpointState {
    #[serde(flatten)]
    state: TrainState,
    /// File name -> sha256 (absent in checkpoints of older builds).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    sha256: BTreeMap<String, String>,
}

/// The prefix of checkpoint directories being written (`.tmp-step-<n>`).
pub const CHECKPOINT_TEMP_PATTERN: &str = ".tmp-step-*";

/// `checkpoints/step-<n>/{model.bpk, optim.bpk, .., state.json}`, written to a
/// temporary directory and renamed into place, so a checkpoint either exists
/// whole or not at all. The newest two are kept.
pub fn write_checkpoint(
    run_dir: &Path,
    state: &TrainState,
    files: &[(&str, &[u8])],
) -> Result<PathBuf> {
    let root = run_dir.join(CHECKPOINTS);
    let name = format!("step-{:09}", state.global_step);
    let tmp = root.join(format!(".tmp-{name}"));
    let fin = root.join(&name);
    let io = |path: &Path, e: std::io::Error| Error::Checkpoint {
        path: path.to_path_buf(),
        message: e.to_string(),
    };
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(|e| io(&tmp, e))?;
    }
    std::fs::create_dir_all(&tmp).map_err(|e| io(&tmp, e))?;
    let mut sha256 = BTreeMap::new();
    for (name, bytes) in files {
        write_atomic(&tmp.join(name), |w| w.write_all(bytes))?;
        sha256.insert(name.to_string(), distill_core::hash::sha256_hex(bytes));
    }
    let record = CheckpointState {
        state: state.clone(),
        sha256,
    };
    write_json_atomic(&tmp.join(CHECKPOINT_STATE), &record)?;
    if fin.exists() {
        std::fs::remove_dir_all(&fin).map_err(|e| io(&fin, e))?;
    }
    std::fs::rename(&tmp, &fin).map_err(|e| io(&fin, e))?;
    let all = list_checkpoints(run_dir)?;
    for old in all.iter().rev().skip(2) {
        let _ = std::fs::remove_dir_all(old);
    }
    Ok(fin)
}

/// The file that completes a checkpoint.
pub const CHECKPOINT_STATE: &str = "state.json";

/// Read a checkpoint's loop state after checking every file it lists against
/// its recorded sha256. An error says which file is damaged
/// ([`Error::CheckpointDamaged`] for a proven sha256 mismatch).
pub fn read_checkpoint(checkpoint: &Path) -> Result<TrainState> {
    let record: CheckpointState = read_json(&checkpoint.join(CHECKPOINT_STATE))?;
    for (name, expected) in &record.sha256 {
        let path = checkpoint.join(name);
        if name.contains(['/', '\\']) || name.starts_with('.') {
            return Err(Error::Checkpoint {
                path,
                message: "not a checkpoint file name".into(),
            });
        }
        let found = distill_core::hash::sha256_file(&path)?;
        if found != *expected {
            return Err(Error::CheckpointDamaged {
                path,
                found,
                expected: expected.clone(),
            });
        }
    }
    Ok(record.state)
}

/// Complete checkpoints, oldest first.
pub fn list_checkpoints(run_dir: &Path) -> Result<Vec<PathBuf>> {
    let root = run_dir.join(CHECKPOINTS);
    let mut out = Vec::new();
    let entries = match std::fs::read_dir(&root) {
        Ok(e) => e,
        Err(_) => return Ok(out),
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with("step-") && entry.path().join("state.json").exists() {
            out.push(entry.path());
        }
    }
    out.sort();
    Ok(out)
}

/// Append one JSON line and flush it.
pub fn append_metrics(run_dir: &Path, line: &serde_json::Value) -> Result<()> {
    let path = run_dir.join(METRICS_FILE);
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(|e| Error::Checkpoint {
            path: path.clone(),
            message: e.to_string(),
        })?;
    writeln!(f, "{line}")
        .and_then(|_| f.flush())
        .map_err(|e| Error::Checkpoint {
            path,
            message: e.to_string(),
        })
}

/// On resume: drop metric lines logged after the checkpoint (they will be redone).
pub fn truncate_metrics(run_dir: &Path, upto_step: u64) -> Result<()> {
    let path = run_dir.join(METRICS_FILE);
    let Ok(text) = std::fs::read_to_string(&path) else {
        return Ok(());
    };
    let kept: Vec<&str> = text
        .lines()
        .filter(|l| {
            serde_json::from_str::<serde_json::Value>(l)
                .ok()
                .and_then(|v| v.get("step").and_then(|s| s.as_u64()))
                .is_some_and(|s| s <= upto_step)
        })
        .collect();
    write_atomic(&path, |w| {
        for l in &kept {
            writeln!(w, "{l}")?;
        }
        Ok(())
    })?;
    Ok(())
}

/// A fresh run directory `<root>/<experiment>/<UTC time>-<seed>[-n]`.
pub fn create_run_dir(
    root: &Path,
    experiment: &str,
    seed: u64,
    id: Option<&str>,
) -> Result<(String, PathBuf)> {
    let parent = root.join(experiment);
    std::fs::create_dir_all(&parent).map_err(|e| Error::Checkpoint {
        path: parent.clone(),
        message: e.to_string(),
    })?;
    // `create_dir` (not `_all`) fails when the directory exists, so two
    // processes starting in the same second never share a run directory.
    let claim = |dir: &Path| -> Result<bool> {
        match std::fs::create_dir(dir) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(Error::Checkpoint {
                path: dir.to_path_buf(),
                message: e.to_string(),
            }),
        }
    };
    if let Some(id) = id {
        let dir = parent.join(id);
        if !claim(&dir)? {
            return Err(Error::Input(format!(
                "run directory {} exists already; resume it with --resume",
                dir.display()
            )));
        }
        return Ok((id.to_string(), dir));
    }
    let stamp = utc_stamp(SystemTime::now()).replace([':', '-'], "");
    let stamp = stamp.trim_end_matches('Z').replace('T', "-");
    let base = format!("{stamp}-s{seed}");
    for n in 0..1000 {
        let id = if n == 0 {
            base.clone()
        } else {
            format!("{base}-{n}")
        };
        let dir = parent.join(&id);
        if claim(&dir)? {
            return Ok((id, dir));
        }
    }
    Err(Error::Input(format!(
        "could not find a free run directory under {}",
        parent.display()
    )))
}

pub use distill_core::time::utc_stamp;

/// `git rev-parse HEAD` of the working directory, if it is a repository.
pub fn git_commit() -> Option<String> {
    let out = std::process::Command::new("git")
        .args(["rev-parse", "HEAD"])
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
        .filter(|s| !s.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn damaged_checkpoint_files_are_detected_by_name() {
        let dir = tempfile::tempdir().expect("tempdir");
        let state = TrainState {
            global_step: 7,
            ..Default::default()
        };
        let ckpt = write_checkpoint(
            dir.path(),
            &state,
            &[("model.bpk", b"weights"), ("optim.bpk", b"moments")],
        )
        .expect("write");
        assert_eq!(read_checkpoint(&ckpt).expect("intact").global_step, 7);
        std::fs::write(ckpt.join("optim.bpk"), b"momentz").expect("damage");
        let err = read_checkpoint(&ckpt).expect_err("damaged").to_string();
        assert!(
            err.contains("optim.bpk") && err.contains("damaged"),
            "{err}"
        );
        std::fs::remove_file(ckpt.join("model.bpk")).expect("remove");
        let err = read_checkpoint(&ckpt).expect_err("missing").to_string();
        assert!(err.contains("model.bpk"), "{err}");
        // Checkpoints of older builds (no hashes) still load.
        std::fs::write(
            ckpt.join(CHECKPOINT_STATE),
            serde_json::to_vec(&state).expect("json"),
        )
        .expect("write");
        assert_eq!(read_checkpoint(&ckpt).expect("old format").global_step, 7);
    }

    #[test]
    fn run_directories_are_claimed_atomically() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (id, run) = create_run_dir(dir.path(), "exp", 1, Some("r1")).expect("first");
        assert_eq!(id, "r1");
        assert!(run.is_dir());
        let err = create_run_dir(dir.path(), "exp", 1, Some("r1")).expect_err("taken");
        assert!(err.to_string().contains("exists already"), "{err}");
        let (a, _) = create_run_dir(dir.path(), "exp", 1, None).expect("a");
        let (b, _) = create_run_dir(dir.path(), "exp", 1, None).expect("b");
        assert_ne!(a, b);
    }

    #[test]
    fn utc_stamp_known_dates() {
        assert_eq!(utc_stamp(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        let t = UNIX_EPOCH + Duration::from_secs(1_795_000_000);
        assert_eq!(utc_stamp(t), "2026-11-18T11:06:40Z");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(utc_stamp(leap), "2000-02-29T00:00:00Z");
    }
}
