use std::path::PathBuf;

/// Errors that stop `distill teach` (exit 2). Per-row failures are never
/// errors: they are kept in the log as records with `error` set.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad config, dataset, server or input file: nothing was collected.
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
    Data(#[from] distill_data::DataError),
    #[error(transparent)]
    Model(#[from] distill_model::Error),
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
