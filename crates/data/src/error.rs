//! The one error type of `facerec-data`.

use std::path::PathBuf;

/// Everything that can go wrong while reading or preparing data. Each variant names the file
/// (and line, where there is one) and what was expected, so a user can fix the input.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
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
    #[error("libtorch: {}", torch_message(.0))]
    Torch(#[from] tch::TchError),
}

/// `Result` with [`DataError`].
pub type Result<T, E = DataError> = std::result::Result<T, E>;

impl DataError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        let path = path.into();
        if source.kind() == std::io::ErrorKind::NotFound {
            DataError::Missing { path, hint: String::new() }
        } else {
            DataError::Io { path, source }
        }
    }

    pub(crate) fn format(path: impl Into<PathBuf>, msg: impl Into<String>) -> Self {
        DataError::Format { path: path.into(), msg: msg.into() }
    }

    #[allow(dead_code)] // used by the face parsers
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

/// libtorch's message without the C++ stack trace that follows it ("Exception raised from ...").
pub fn torch_message(e: &tch::TchError) -> String {
    let full = e.to_string();
    match full.find("\nException raised from") {
        Some(i) => full[..i].to_owned(),
        None => full,
    }
}
