//! The data stage of distill: import raw labelled text from CSV, TSV, JSONL,
//! JSON and Parquet with a field mapping; keep every malformed row in
//! `rejects.jsonl` with its file, line and reason; curate (normalise, redact
//! PII, exact and near dedup, rare-label handling, leak-free deterministic
//! split); and describe the result (`distill data stats`).
//!
//! A dataset directory holds `examples.parquet`, `dataset.json` and
//! `rejects.jsonl`, written atomically.
//!
//! ```no_run
//! use distill_data::{import::{DataConfig, import}, dataset::Dataset};
//! let config = DataConfig::load(std::path::Path::new("configs/data/banking77.toml"), &[])?;
//! let mut outcome = import(&config)?;
//! outcome.dataset.save(std::path::Path::new("datasets/banking77"), &outcome.rejects)?;
//! let back = Dataset::load(std::path::Path::new("datasets/banking77"))?;
//! assert_eq!(back.manifest.labels.len(), 77);
//! # Ok::<(), distill_data::error::DataError>(())
//! ```

#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod curate;
pub mod dataset;
pub mod demo;
pub mod error;
pub mod import;
pub mod minhash;
pub mod open;
pub mod pii;
pub mod read;
pub mod stats;
pub mod teacher;
pub mod text;

pub use error::{DataError, Result};
