//! The one error type of `facerec-model`.

/// What can go wrong building, running, saving or loading a backbone.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("invalid backbone configuration: {0}")]
    Config(String),
    #[error("{backbone} expects input [batch, {}, {}, {}], got {got:?}", .expected[0], .expected[1], .expected[2])]
    InputShape { backbone: &'static str, expected: [i64; 3], got: Vec<i64> },
    #[error("{path}: {msg}")]
    Weights { path: std::path::PathBuf, msg: String },
    #[error("{path}: not found; {hint}")]
    MissingWeights { path: std::path::PathBuf, hint: &'static str },
    #[error("{path}: {source}")]
    Io {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("libtorch: {}", facerec_data::error::torch_message(.0))]
    Torch(#[from] tch::TchError),
    /// An operation of facerec-ops (PReLU) failed; the message is libtorch's.
    #[error("libtorch: {0}")]
    Ops(#[from] facerec_ops::OpsError),
}

/// `Result` with [`ModelError`].
pub type Result<T, E = ModelError> = std::result::Result<T, E>;
