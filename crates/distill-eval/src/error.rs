use std::path::PathBuf;

/// Errors that stop `distill eval` (exit 2). A failed gate is not an error.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Input(String),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Core(#[from] distill_core::Error),
    #[error(transparent)]
    Model(#[from] distill_model::Error),
    #[error(transparent)]
    Train(#[from] distill_train::Error),
}

impl Error {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}

pub type Result<T> = std::result::Result<T, Error>;
