use std::path::PathBuf;

/// Errors of model construction, tokenisation and artifacts.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "device `{device}` is not compiled into this binary (available: {available}); rebuild with `--features {device}`"
    )]
    DeviceNotCompiled {
        device: &'static str,
        available: String,
    },
    #[error("{}: {message}", path.display())]
    Artifact { path: PathBuf, message: String },
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    #[error("invalid model spec: {0}")]
    Spec(String),
    #[error(transparent)]
    Core(#[from] distill_core::Error),
}

pub type Result<T> = std::result::Result<T, Error>;
