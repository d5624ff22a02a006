//! Errors of the data stage. Row-level problems never become errors: they go
//! to `rejects.jsonl`. These are the problems that stop a command (exit 2).

use std::path::PathBuf;

pub type Result<T, E = DataError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error(transparent)]
    Core(#[from] distill_core::Error),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: no such file{}", path.display(), hint_text(hint))]
    MissingFile { path: PathBuf, hint: Option<String> },
    #[error("{}: unknown format `{format}` (expected csv, tsv, jsonl, json or parquet)\nhint: set `format` in the source or use a known file extension", path.display())]
    UnknownFormat { path: PathBuf, format: String },
    #[error("{}: field `{field}` (mapped as {role}) is not in the file; available: {}{}", path.display(), available.join(", "), suggestion_text(suggestion))]
    UnmappedField {
        path: PathBuf,
        field: String,
        role: String,
        available: Vec<String>,
        suggestion: Option<String>,
    },
    #[error("{}: {message}", path.display())]
    BadFile { path: PathBuf, message: String },
    #[error("{context}: {message}")]
    Config { context: String, message: String },
    #[error("{}: parquet: {message}", path.display())]
    Parquet { path: PathBuf, message: String },
    #[error("{}: not a distill dataset directory (no dataset.json)\nhint: create one with `distill data import`", path.display())]
    NotADataset { path: PathBuf },
    #[error("{}: does not match {manifest} (its sha256 is {found}, the manifest records {expected}): the directory was cut short by a killed `distill data import|curate`, or changed by hand\nhint: run the command that wrote {} again", path.display(), dir.display())]
    ExamplesMismatch {
        path: PathBuf,
        dir: PathBuf,
        manifest: &'static str,
        expected: String,
        found: String,
    },
    #[error("{}: dataset schema version {found} is not supported by this build (expected {expected})", path.display())]
    SchemaVersion {
        path: PathBuf,
        found: u32,
        expected: u32,
    },
}

fn hint_text(hint: &Option<String>) -> String {
    hint.as_ref()
        .map(|h| format!("\nhint: {h}"))
        .unwrap_or_default()
}

fn suggestion_text(s: &Option<String>) -> String {
    s.as_ref()
        .map(|s| format!(" (did you mean `{s}`?)"))
        .unwrap_or_default()
}

impl DataError {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        DataError::Io {
            path: path.into(),
            source,
        }
    }
}
