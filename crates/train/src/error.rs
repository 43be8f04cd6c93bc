//! The one error type of `facerec-train`.

use std::path::PathBuf;

/// What can stop a training run. Each variant says what to change.
///
/// A variant that wraps another error (I/O, libtorch) prints that error's message itself and does
/// not also return it as `source()`: `main` prints the chain with `{:#}`, which would say it twice.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error("{path}: {msg}")]
    Config { path: PathBuf, msg: String },
    #[error("{path}: {error}")]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("checkpoint {path}: {msg}")]
    Checkpoint { path: PathBuf, msg: String },
    #[error(
        "training diverged at step {step}: {what} is {value}. The last good checkpoint is kept{kept}; \
         lower the learning rate (optim.lr) or the center-loss weight (loss.lambda), then resume"
    )]
    Diverged { step: usize, what: String, value: f64, kept: String },
    /// The periodic evaluation failed (the evaluator's message).
    #[error("evaluation failed: {0}")]
    Evaluation(String),
    /// A collective of data-parallel training failed (a peer died or hung, or the ranks
    /// called different collectives). The message holds c10d's.
    #[error("distributed training, step {step}: {what}: {error}")]
    Distributed { step: usize, what: &'static str, error: Box<facerec_dist::DistError> },
    /// The ranks of a data-parallel run started from different states.
    #[error(
        "rank {rank}: the ranks do not agree ({differences}): launch every rank with the same \
         config, overrides, data and run directory (a resume needs the run directory on a shared file system)"
    )]
    RanksDiffer { rank: usize, differences: String },
    #[error(transparent)]
    Core(#[from] facerec_core::CoreError),
    #[error(transparent)]
    Data(#[from] facerec_data::DataError),
    #[error(transparent)]
    Model(#[from] facerec_model::ModelError),
    #[error(transparent)]
    Loss(#[from] facerec_losses::LossError),
    #[error("libtorch: {}", facerec_core::torch_message(.0))]
    Torch(tch::TchError),
    /// An operation of facerec-ops (autocast, dropping gradients) failed; the message is
    /// libtorch's.
    #[error("libtorch: {0}")]
    Ops(facerec_ops::OpsError),
}

/// `Result` with [`TrainError`].
pub type Result<T, E = TrainError> = std::result::Result<T, E>;

// By hand rather than `#[from]`, which would also make the wrapped error the `source()`.
impl From<tch::TchError> for TrainError {
    fn from(e: tch::TchError) -> Self {
        TrainError::Torch(e)
    }
}

impl From<facerec_ops::OpsError> for TrainError {
    fn from(e: facerec_ops::OpsError) -> Self {
        TrainError::Ops(e)
    }
}

impl TrainError {
    pub(crate) fn io(path: impl Into<PathBuf>, error: std::io::Error) -> Self {
        TrainError::Io { path: path.into(), error }
    }
}
