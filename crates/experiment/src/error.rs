//! The one error type of `facerec-experiment`.

use std::path::PathBuf;

/// What can go wrong setting up, running or reporting an experiment.
///
/// A variant that wraps another error prints that error's message itself and does not also
/// return it as `source()`: `main` prints the chain with `{:#}`, which would say it twice.
#[derive(Debug, thiserror::Error)]
pub enum ExperimentError {
    /// A setting of the experiment's config (or a command's option) is wrong; the message names
    /// the key.
    #[error("{path}: {msg}")]
    Config { path: PathBuf, msg: String },
    #[error("{path}: {error}")]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    /// A run directory that cannot be used as asked (it holds another run, say).
    #[error("{path}: {msg}")]
    Run { path: PathBuf, msg: String },
    /// A checkpoint that cannot be resumed as asked.
    #[error("checkpoint {path}: {msg}")]
    Checkpoint { path: PathBuf, msg: String },
    #[error(transparent)]
    Core(#[from] facerec_core::CoreError),
    #[error(transparent)]
    Data(#[from] facerec_data::DataError),
    #[error(transparent)]
    Model(#[from] facerec_model::ModelError),
    #[error(transparent)]
    Train(#[from] facerec_train::TrainError),
    #[error(transparent)]
    Eval(#[from] facerec_eval::EvalError),
}

/// `Result` with [`ExperimentError`].
pub type Result<T, E = ExperimentError> = std::result::Result<T, E>;

impl ExperimentError {
    pub(crate) fn io(path: impl Into<PathBuf>, error: std::io::Error) -> Self {
        ExperimentError::Io { path: path.into(), error }
    }

    /// The step at which training diverged, when that is what this error is.
    pub fn diverged_at(&self) -> Option<usize> {
        match self {
            ExperimentError::Train(facerec_train::TrainError::Diverged { step, .. }) => Some(*step),
            _ => None,
        }
    }
}
