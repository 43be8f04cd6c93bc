//! The one error type of `facerec-eval`.

use std::path::PathBuf;

/// What can go wrong evaluating.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error("{0}")]
    Invalid(String),
    #[error("{path}: {msg}")]
    Input { path: PathBuf, msg: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("plot {path}: {msg}")]
    Plot { path: PathBuf, msg: String },
    #[error(transparent)]
    Data(#[from] facerec_data::DataError),
    #[error(transparent)]
    Model(#[from] facerec_model::ModelError),
    #[error(transparent)]
    Train(#[from] facerec_train::TrainError),
    #[error("libtorch: {}", facerec_data::error::torch_message(.0))]
    Torch(#[from] tch::TchError),
}

/// `Result` with [`EvalError`].
pub type Result<T, E = EvalError> = std::result::Result<T, E>;

impl From<EvalError> for facerec_train::TrainError {
    fn from(e: EvalError) -> Self {
        match e {
            EvalError::Train(t) => t,
            other => facerec_train::TrainError::Evaluation(other.to_string()),
        }
    }
}
