//! Where the data that `scripts/setup.sh` links lives: `<repo>/data/{mnist,lfw,att_faces}`.
//! `FACEREC_REPO` (set for `cargo test`/`cargo run` by `.cargo/config.toml`) names the
//! checkout; otherwise paths are relative to the working directory.

use std::path::PathBuf;

use crate::error::{DataError, Result};

/// `<repo>/data`.
pub fn data_dir() -> PathBuf {
    match std::env::var_os("FACEREC_REPO") {
        Some(repo) if !repo.is_empty() => PathBuf::from(repo).join("data"),
        _ => PathBuf::from("data"),
    }
}

/// `<repo>/data/<name>`, or an error that says where it looked and how to get it.
pub fn require(name: &str) -> Result<PathBuf> {
    let path = data_dir().join(name);
    if path.exists() {
        Ok(path)
    } else {
        Err(DataError::Missing {
            path,
            hint: " (run scripts/setup.sh, which links MNIST from its cache and LFW and AT&T \
                   faces from ../shared/data or $FACEREC_DATA)"
                .into(),
        })
    }
}
