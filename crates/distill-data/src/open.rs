//! Open the dataset a stage config names: a dataset directory, or a data
//! config imported in memory, optionally curated in memory. Used by `train`
//! and `teach`, so both see the same rows and the same dataset hash.

use crate::dataset::Dataset;
use crate::error::{DataError, Result};
use crate::import::{DataConfig, import};
use std::path::Path;

/// Load `path` (a dataset directory or a `.toml` data config) and apply the
/// curation config `curate`, when given.
pub fn open_dataset(path: &Path, curate: Option<&Path>) -> Result<Dataset> {
    let config_error = |message: String| DataError::Config {
        context: format!("dataset {}", path.display()),
        message,
    };
    if !path.exists() {
        return Err(DataError::Config {
            context: format!("dataset {} does not exist", path.display()),
            message: "import one with `distill data import --config configs/data/<name>.toml --out <dir>`, or point `dataset` at a data config".into(),
        });
    }
    let mut dataset = if path.is_dir() {
        Dataset::load(path)?
    } else if path.extension().is_some_and(|e| e == "toml") {
        let config = DataConfig::load(path, &[])?;
        let outcome = import(&config)?;
        if !outcome.rejects.is_empty() {
            eprintln!(
                "note: importing {}: {} rows rejected (run `distill data import` to see them)",
                path.display(),
                outcome.rejects.len()
            );
        }
        let mut dataset = outcome.dataset;
        fingerprint(&mut dataset, path)?;
        dataset
    } else {
        return Err(config_error(
            "expected a dataset directory (with dataset.json) or a data config (.toml)".into(),
        ));
    };
    if let Some(c) = curate {
        let curate_config = crate::curate::CurateConfig::load(c, &[])?;
        dataset = crate::curate::curate(dataset, &curate_config, |_| {})?.dataset;
        fingerprint(&mut dataset, path)?;
    }
    Ok(dataset)
}

/// Refresh counts and record the hash `distill data import` would record for these rows.
fn fingerprint(dataset: &mut Dataset, path: &Path) -> Result<()> {
    dataset.refresh();
    let bytes =
        crate::dataset::examples_to_parquet(&dataset.examples).map_err(|e| DataError::Parquet {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
    dataset.manifest.examples_sha256 = distill_core::hash::sha256_hex(&bytes);
    Ok(())
}
