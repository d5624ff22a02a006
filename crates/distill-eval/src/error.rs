use std::path::PathBuf;

/// Errors that stop `distill eval` (exit 2). A failed gate is not an error.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Input(String),
    #[error(transparent)]
    Core(#[from] distill_core::Error),
    #[error(transparent)]
    Model(#[from] distill_model::Error),
    #[error(transparent)]
    Train(#[from] distill_train::Error),
}

impl Error {
    /// An I/O error on `path` (distill-core's variant, so every crate says it alike).
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Core(distill_core::Error::io(path, source))
    }
}

pub type Result<T> = std::result::Result<T, Error>;
