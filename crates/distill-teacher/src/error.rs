use std::path::PathBuf;

/// Errors that stop `distill teach` (exit 2). Per-row failures are never
/// errors: they are kept in the log as records with `error` set.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad config, dataset, server or input file: nothing was collected.
    #[error("{0}")]
    Input(String),
    #[error(transparent)]
    Core(#[from] distill_core::Error),
    #[error(transparent)]
    Data(#[from] distill_data::DataError),
    #[error(transparent)]
    Model(#[from] distill_model::Error),
}

impl Error {
    /// An I/O error on `path` (distill-core's variant, so every crate says it alike).
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Core(distill_core::Error::io(path, source))
    }
}

pub type Result<T> = std::result::Result<T, Error>;
