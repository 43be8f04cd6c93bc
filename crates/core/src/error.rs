//! The one error type of `facerec-core`.

use std::path::PathBuf;

/// What can go wrong writing a file. Each variant names the file.
///
/// A variant that wraps another error (I/O) prints that error's message itself and does not
/// also return it as `source()`: `main` prints the chain with `{:#}`, which would say it twice.
#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    #[error("{path}: {error}")]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    /// The file, or the directory it was to be written in, is not there.
    #[error("{path}: not found")]
    Missing { path: PathBuf },
    #[error("{0}")]
    Invalid(String),
}

/// `Result` with [`CoreError`].
pub type Result<T, E = CoreError> = std::result::Result<T, E>;

impl CoreError {
    /// [`CoreError::Missing`] for a file or directory that is not there, else [`CoreError::Io`].
    pub fn io(path: impl Into<PathBuf>, error: std::io::Error) -> Self {
        let path = path.into();
        if error.kind() == std::io::ErrorKind::NotFound {
            CoreError::Missing { path }
        } else {
            CoreError::Io { path, error }
        }
    }
}
