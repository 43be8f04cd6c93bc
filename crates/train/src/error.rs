//! The one error type of `facerec-train`.

use std::path::PathBuf;

/// What can stop a training run. Each variant says what to change.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error("{path}: {msg}")]
    Config { path: PathBuf, msg: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("checkpoint {path}: {msg}")]
    Checkpoint { path: PathBuf, msg: String },
    #[error(
        "training diverged at step {step}: {what} is {value}. The last good checkpoint is kept{kept}; \
         lower the learning rate (optim.lr) or the center-loss weight (loss.lambda), then resume"
    )]
    Diverged { step: usize, what: String, value: f64, kept: String },
    #[error("distributed: {0}")]
    Distributed(String),
    #[error(transparent)]
    Data(#[from] facerec_data::DataError),
    #[error(transparent)]
    Model(#[from] facerec_model::ModelError),
    #[error(transparent)]
    Loss(#[from] facerec_losses::LossError),
    #[error("libtorch: {}", facerec_data::error::torch_message(.0))]
    Torch(#[from] tch::TchError),
}

/// `Result` with [`TrainError`].
pub type Result<T, E = TrainError> = std::result::Result<T, E>;

impl TrainError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        TrainError::Io { path: path.into(), source }
    }
}
