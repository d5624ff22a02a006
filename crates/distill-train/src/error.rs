use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad config, dataset or teacher file: nothing was trained.
    #[error("{0}")]
    Input(String),
    #[error(
        "training diverged: loss is {loss} at step {step}; the last good checkpoint is {}; lower train.lr or raise train.grad-clip, then --resume or start again",
        checkpoint.as_ref().map(|p| p.display().to_string()).unwrap_or_else(|| "none (it diverged before the first)".into())
    )]
    Diverged {
        step: u64,
        loss: f32,
        checkpoint: Option<PathBuf>,
    },
    #[error("{}: {message}", path.display())]
    Checkpoint { path: PathBuf, message: String },
    /// A checkpoint file whose sha256 is not the one its checkpoint recorded:
    /// proven damaged (unlike a file that cannot be read or decoded).
    #[error("{}: damaged: sha256 {found}, the checkpoint recorded {expected}", path.display())]
    CheckpointDamaged {
        path: PathBuf,
        found: String,
        expected: String,
    },
    #[error(transparent)]
    Core(#[from] distill_core::Error),
    #[error(transparent)]
    Data(#[from] distill_data::DataError),
    #[error(transparent)]
    Model(#[from] distill_model::Error),
}

pub type Result<T> = std::result::Result<T, Error>;
