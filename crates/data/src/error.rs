//! The one error type of `facerec-data`.

use std::path::PathBuf;

/// Everything that can go wrong while reading or preparing data. Each variant names the file
/// (and line, where there is one) and what was expected, so a user can fix the input.
///
/// A variant that wraps another error (I/O, libtorch) prints that error's message itself and does
/// not also return it as `source()`: `main` prints the chain with `{:#}`, which would say it twice.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("{path}: {error}")]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{path}: not found{hint}")]
    Missing { path: PathBuf, hint: String },
    #[error("{path}: {msg}")]
    Format { path: PathBuf, msg: String },
    #[error("{path}:{line}: {msg}")]
    Line { path: PathBuf, line: usize, msg: String },
    #[error("{path}: cannot decode image: {msg}")]
    Image { path: PathBuf, msg: String },
    #[error("{path}: {msg}")]
    Landmarks { path: PathBuf, msg: String },
    #[error("{0}")]
    Invalid(String),
    #[error("libtorch: {}", facerec_core::torch_message(.0))]
    Torch(tch::TchError),
}

/// `Result` with [`DataError`].
pub type Result<T, E = DataError> = std::result::Result<T, E>;

// By hand rather than `#[from]`, which would also make the wrapped error the `source()`.
impl From<tch::TchError> for DataError {
    fn from(e: tch::TchError) -> Self {
        DataError::Torch(e)
    }
}

// The same variants (and so the same messages) as the I/O errors of data's own files.
impl From<facerec_core::CoreError> for DataError {
    fn from(e: facerec_core::CoreError) -> Self {
        match e {
            facerec_core::CoreError::Io { path, error } => DataError::Io { path, error },
            facerec_core::CoreError::Missing { path } => DataError::Missing { path, hint: String::new() },
            facerec_core::CoreError::Invalid(msg) => DataError::Invalid(msg),
        }
    }
}

impl DataError {
    pub(crate) fn io(path: impl Into<PathBuf>, error: std::io::Error) -> Self {
        let path = path.into();
        if error.kind() == std::io::ErrorKind::NotFound {
            DataError::Missing { path, hint: String::new() }
        } else {
            DataError::Io { path, error }
        }
    }

    pub(crate) fn format(path: impl Into<PathBuf>, msg: impl Into<String>) -> Self {
        DataError::Format { path: path.into(), msg: msg.into() }
    }

    pub(crate) fn line(path: impl Into<PathBuf>, line: usize, msg: impl Into<String>) -> Self {
        DataError::Line { path: path.into(), line, msg: msg.into() }
    }
}

/// Reads a whole file, mapping a missing file to [`DataError::Missing`] with `hint` attached.
pub(crate) fn read_file(path: &std::path::Path, hint: &str) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| match DataError::io(path, e) {
        DataError::Missing { path, .. } => DataError::Missing { path, hint: hint.to_owned() },
        other => other,
    })
}
