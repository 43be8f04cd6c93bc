//! The one error type of `facerec-ops`.

/// A libtorch operation of this crate failed; the message is libtorch's.
#[derive(Debug, thiserror::Error)]
pub enum OpsError {
    /// Switching autocast (mixed precision) on or off failed.
    #[error("autocast: {0}")]
    Autocast(String),
    /// A tensor operation failed (bad shapes, dtypes, devices).
    #[error("{0}")]
    Op(String),
}

/// `Result` with [`OpsError`].
pub type Result<T, E = OpsError> = std::result::Result<T, E>;
