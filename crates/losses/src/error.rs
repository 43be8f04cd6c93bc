//! The one error type of `facerec-losses`.

/// What can go wrong computing a loss or updating centers.
///
/// A variant that wraps another error (I/O, libtorch) prints that error's message itself and does
/// not also return it as `source()`: `main` prints the chain with `{:#}`, which would say it twice.
#[derive(Debug, thiserror::Error)]
pub enum LossError {
    #[error("invalid loss setting: {0}")]
    Config(String),
    #[error("{what}: expected {expected}, got {got:?}")]
    Shape { what: &'static str, expected: String, got: Vec<i64> },
    #[error("label {label} out of range: the loss has {classes} classes")]
    Label { label: i64, classes: i64 },
    /// Sharing state between the ranks of a data-parallel run failed.
    #[error("{0}")]
    Ranks(String),
    #[error("libtorch: {}", facerec_core::torch_message(.0))]
    Torch(tch::TchError),
    /// A layer of `facerec_model` (the classifier's `Linear`, say) failed; its message.
    #[error("{0}")]
    Model(facerec_model::ModelError),
}

/// `Result` with [`LossError`].
pub type Result<T, E = LossError> = std::result::Result<T, E>;

// By hand rather than `#[from]`, which would also make the wrapped error the `source()`.
impl From<tch::TchError> for LossError {
    fn from(e: tch::TchError) -> Self {
        LossError::Torch(e)
    }
}

/// So that a loss (in facerec or in a crate of your own) uses `?` on a layer's result.
impl From<facerec_model::ModelError> for LossError {
    fn from(e: facerec_model::ModelError) -> Self {
        LossError::Model(e)
    }
}
