//! The one error type of `facerec-losses`.

/// What can go wrong computing a loss or updating centers.
#[derive(Debug, thiserror::Error)]
pub enum LossError {
    #[error("invalid loss setting: {0}")]
    Config(String),
    #[error("{what}: expected {expected}, got {got:?}")]
    Shape { what: &'static str, expected: String, got: Vec<i64> },
    #[error("label {label} out of range: the loss has {classes} classes")]
    Label { label: i64, classes: i64 },
    #[error("libtorch: {}", facerec_data::error::torch_message(.0))]
    Torch(#[from] tch::TchError),
}

/// `Result` with [`LossError`].
pub type Result<T, E = LossError> = std::result::Result<T, E>;
