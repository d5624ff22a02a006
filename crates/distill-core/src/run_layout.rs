//! The layout of a run directory (`experiments/<experiment>/<run-id>/`) and
//! `latest` resolution, for every crate that reads runs without training
//! them (teachers, evaluation, export): `run.json`, `config.resolved.toml`,
//! `metrics.jsonl`, `checkpoints/` and `model/`.
//!
//! ```
//! use distill_core::run_layout::{MODEL_DIR, resolve_latest};
//! use std::path::Path;
//! // Paths without an unresolvable `latest` component are returned as given.
//! let run = resolve_latest(Path::new("experiments/banking77-bag/2025-01-01T00-00-00Z-s17"));
//! assert_eq!(run.join(MODEL_DIR), Path::new("experiments/banking77-bag/2025-01-01T00-00-00Z-s17/model"));
//! ```

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

pub const RUN_FILE: &str = "run.json";
pub const CONFIG_FILE: &str = "config.resolved.toml";
pub const METRICS_FILE: &str = "metrics.jsonl";
pub const CHECKPOINTS: &str = "checkpoints";
pub const MODEL_DIR: &str = "model";
/// Ids of the validation rows a run carved out of its training split (one
/// per line, sorted), so a teacher can be kept off them.
pub const VAL_IDS_FILE: &str = "val_ids.txt";

/// The state of a run (`status` in `run.json`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    Running,
    Completed,
    Failed,
}

/// What `latest` resolution needs of `run.json` (the rest is the training
/// crate's `RunInfo`).
#[derive(Deserialize)]
struct RunHead {
    status: Status,
    started_at: String,
}

/// Resolve a path from a config relative to the config file's directory.
pub fn resolve(base: &Path, p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

/// A path component `latest` that does not exist names the newest completed
/// run (by start time) of the experiment directory before it:
/// `experiments/banking77-bag/latest/bundles/burn-int8` works. Other paths
/// are returned as given.
pub fn resolve_latest(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        let next = out.join(c.as_os_str());
        if c.as_os_str() == "latest" && !next.exists() {
            let dir = if out.as_os_str().is_empty() {
                PathBuf::from(".")
            } else {
                out.clone()
            };
            let mut best: Option<(String, PathBuf)> = None;
            for entry in std::fs::read_dir(&dir)
                .into_iter()
                .flatten()
                .filter_map(|e| e.ok())
            {
                if let Ok(head) = crate::fsutil::read_json::<RunHead>(&entry.path().join(RUN_FILE))
                    && head.status == Status::Completed
                    && best.as_ref().is_none_or(|(t, _)| head.started_at > *t)
                {
                    best = Some((head.started_at, out.join(entry.file_name())));
                }
            }
            out = best.map(|b| b.1).unwrap_or(next);
        } else {
            out = next;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latest_is_the_newest_completed_run() {
        let exp = tempfile::tempdir().unwrap();
        for (run, status, started) in [
            ("a", "completed", "2025-01-01T00:00:00Z"),
            ("b", "completed", "2025-01-03T00:00:00Z"),
            ("c", "failed", "2025-01-04T00:00:00Z"),
            ("d", "running", "2025-01-05T00:00:00Z"),
        ] {
            let dir = exp.path().join(run);
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(
                dir.join(RUN_FILE),
                format!(r#"{{"status": "{status}", "started_at": "{started}", "other": 1}}"#),
            )
            .unwrap();
        }
        let got = resolve_latest(&exp.path().join("latest").join(MODEL_DIR));
        assert_eq!(got, exp.path().join("b").join(MODEL_DIR));
        // An existing directory named `latest` is taken as is.
        std::fs::create_dir_all(exp.path().join("latest")).unwrap();
        assert_eq!(
            resolve_latest(&exp.path().join("latest")),
            exp.path().join("latest")
        );
        assert_eq!(
            resolve(Path::new("/base"), Path::new("x")),
            Path::new("/base/x")
        );
        assert_eq!(
            resolve(Path::new("/base"), Path::new("/x")),
            Path::new("/x")
        );
    }
}
