//! The one error type of `facerec-eval`.

use std::path::PathBuf;

/// What can go wrong evaluating.
///
/// A variant that wraps another error (I/O, libtorch) prints that error's message itself and does
/// not also return it as `source()`: `main` prints the chain with `{:#}`, which would say it twice.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error("{0}")]
    Invalid(String),
    #[error("{path}: {msg}")]
    Input { path: PathBuf, msg: String },
    #[error("{path}: {error}")]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("plot {path}: {msg}")]
    Plot { path: PathBuf, msg: String },
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
}

/// `Result` with [`EvalError`].
pub type Result<T, E = EvalError> = std::result::Result<T, E>;

// By hand rather than `#[from]`, which would also make the wrapped error the `source()`.
impl From<tch::TchError> for EvalError {
    fn from(e: tch::TchError) -> Self {
        EvalError::Torch(e)
    }
}
