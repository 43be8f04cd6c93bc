//! Which images the user means: a folder (searched recursively), image files, glob patterns
//! (`photos/*.jpg`, `photos/**/*.png`) or a list file, as one identity-labelled
//! [`FaceDataset`]. Every command that reads photos (`detect`, `align`, `embed`, `convert`)
//! lists them with [`FaceDataset::from_inputs`], so they all accept the same things.
//!
//! - The root, which the paths of landmark files and outputs are relative to, is the folder
//!   given; for files and patterns, the deepest folder that holds them all.
//! - The identity of an image in a sub-folder of the root is that sub-folder
//!   (`<root>/<identity>/<image>`, as LFW is laid out; `<root>/a/b/x.jpg` is identity `a/b`).
//!   An image directly in the root is its own identity, named by its file stem
//!   (`photos/alice.jpg` is `alice`): a flat folder of photos says nothing about who is who.
//! - A list file holds one image per line, relative to the root: `path` (identity as above) or
//!   `path label` (see [`FaceDataset::parse_list`]).
//!
//! Patterns (matched by the `glob` crate) know `*` (any characters but `/`), `?` (one
//! character), `[abc]` and `**` (any number of folders); they match image files (jpg, jpeg,
//! png, pgm, ppm, bmp) only, and hidden names only when the pattern spells their dot. Quote them so that
//! the shell leaves them to facerec, or let the shell expand them: the result is the same.

use std::collections::BTreeSet;
use std::path::{Component, Path, PathBuf};

use crate::dataset::{FaceDataset, Sample};
use crate::error::{DataError, Result};
use crate::image_io::{is_image_path, IMAGE_EXTENSIONS};

/// The identity of an image at `rel` (relative to the root): its folder, with `/` between
/// components, or its file stem when it lies directly in the root.
pub fn identity_of(rel: &Path) -> String {
    match rel.parent().filter(|p| !p.as_os_str().is_empty()) {
        Some(dir) => dir.components().map(|c| c.as_os_str().to_string_lossy()).collect::<Vec<_>>().join("/"),
        None => rel.file_stem().unwrap_or(rel.as_os_str()).to_string_lossy().into_owned(),
    }
}

impl FaceDataset {
    /// The images `inputs` name, with `list` (a list file, paths relative to the one folder of
    /// `inputs`) if given: see the [module docs](self) for the root and the identities.
    pub fn from_inputs(inputs: &[PathBuf], list: Option<&Path>) -> Result<Self> {
        if let Some(list) = list {
            let [root] = inputs else {
                return Err(DataError::Invalid(format!(
                    "{}: a list file needs exactly one images folder, the one its paths are relative to (got {})",
                    list.display(),
                    inputs.len()
                )));
            };
            if !root.is_dir() {
                return Err(DataError::format(root, "not a folder: a list file's paths are relative to the images folder"));
            }
            let ds = Self::from_list(list, root)?;
            ds.check_files()?;
            return Ok(ds);
        }
        if inputs.is_empty() {
            return Err(DataError::Invalid("no images given: name a folder, image files or a pattern".into()));
        }
        if let [dir] = inputs {
            if dir.is_dir() {
                let rels = walk(dir)?;
                if rels.is_empty() {
                    return Err(DataError::format(
                        dir,
                        format!("no images ({}) in it or its sub-folders", IMAGE_EXTENSIONS.join(", ")),
                    ));
                }
                return Ok(Self::from_paths(dir, rels));
            }
        }
        let mut files: BTreeSet<PathBuf> = BTreeSet::new();
        for input in inputs {
            let text = input.to_string_lossy();
            if input.is_dir() {
                files.extend(walk(input)?.into_iter().map(|rel| input.join(rel)));
            } else if input.is_file() {
                files.insert(input.clone());
            } else if text.contains(['*', '?']) {
                let matched = expand(input)?;
                if matched.is_empty() {
                    return Err(DataError::format(input, "no image files match this pattern"));
                }
                files.extend(matched);
            } else {
                return Err(DataError::Missing { path: input.clone(), hint: " (not an image file, a folder or a pattern)".into() });
            }
        }
        let files: Vec<PathBuf> = files.into_iter().collect();
        let root = common_folder(&files);
        let rels = files
            .iter()
            .map(|f| f.strip_prefix(&root).map(Path::to_path_buf).unwrap_or_else(|_| f.clone()))
            .collect();
        Ok(Self::from_paths(if root.as_os_str().is_empty() { Path::new(".") } else { &root }, rels))
    }

    /// `rels` (relative to `root`, in this order) labelled by [`identity_of`], identities
    /// numbered in sorted order.
    pub fn from_paths(root: &Path, rels: Vec<PathBuf>) -> Self {
        let names: BTreeSet<String> = rels.iter().map(|r| identity_of(r)).collect();
        let identities: Vec<String> = names.into_iter().collect();
        let samples = rels
            .into_iter()
            .map(|path| {
                let label = identities.binary_search(&identity_of(&path)).unwrap_or(0) as i64;
                Sample { path, label }
            })
            .collect();
        FaceDataset { root: root.to_path_buf(), samples, identities }
    }
}

/// Whether a file or folder name is hidden (`.git`, `._x.jpg` of macOS).
fn hidden(name: &std::ffi::OsStr) -> bool {
    name.to_string_lossy().starts_with('.')
}

/// The image files under `dir` (sub-folders too, hidden entries left out), relative to it.
fn walk(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let here = dir.join(&rel);
        for entry in std::fs::read_dir(&here).map_err(|e| DataError::io(&here, e))? {
            let entry = entry.map_err(|e| DataError::io(&here, e))?;
            if hidden(&entry.file_name()) {
                continue;
            }
            let path = entry.path();
            let child = rel.join(entry.file_name());
            if path.is_dir() {
                stack.push(child);
            } else if is_image_path(&path) && path.is_file() {
                files.push(child);
            }
        }
    }
    files.sort();
    Ok(files)
}

/// The image files a pattern matches, sorted (the `glob` crate's matching, with `*` and `?`
/// kept within one name, and hidden names matched only by a pattern that spells the dot).
fn expand(pattern: &Path) -> Result<Vec<PathBuf>> {
    // glob 0.3's `require_literal_leading_dot` also refuses `.*`, so hidden names are sorted out
    // here: one is kept when a component of the pattern that starts with a dot matches it.
    let options = glob::MatchOptions { case_sensitive: true, require_literal_separator: true, require_literal_leading_dot: false };
    let text = pattern.to_string_lossy();
    let invalid = |e: glob::PatternError| DataError::format(pattern, format!("not a valid pattern: {e}"));
    let dotted: Vec<glob::Pattern> = pattern
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .filter(|c| c.starts_with('.') && c != "." && c != "..")
        .map(|c| glob::Pattern::new(&c))
        .collect::<std::result::Result<_, _>>()
        .map_err(invalid)?;
    let spelled = |name: &std::ffi::OsStr| dotted.iter().any(|p| p.matches(&name.to_string_lossy()));
    let mut found = Vec::new();
    for entry in glob::glob_with(&text, options).map_err(invalid)? {
        let path = entry.map_err(|e| DataError::io(e.path(), std::io::Error::new(e.error().kind(), e.error().to_string())))?;
        let shown = path.components().all(|c| match c {
            Component::Normal(name) => !hidden(name) || spelled(name),
            _ => true,
        });
        if shown && is_image_path(&path) && path.is_file() {
            found.push(path);
        }
    }
    found.sort();
    found.dedup();
    Ok(found)
}

/// The deepest folder that holds every one of `files` (empty for the current folder). Made
/// absolute first when some are absolute and some not.
fn common_folder(files: &[PathBuf]) -> PathBuf {
    let mixed = files.iter().any(|f| f.is_absolute()) && files.iter().any(|f| !f.is_absolute());
    let files: Vec<PathBuf> = if mixed {
        files.iter().map(|f| std::path::absolute(f).unwrap_or_else(|_| f.clone())).collect()
    } else {
        files.to_vec()
    };
    let mut common: Option<Vec<Component>> = None;
    for f in &files {
        let parent: Vec<Component> = f.parent().map(|p| p.components().collect()).unwrap_or_default();
        common = Some(match common {
            None => parent,
            Some(c) => c.into_iter().zip(parent).take_while(|(a, b)| a == b).map(|(a, _)| a).collect(),
        });
    }
    common.unwrap_or_default().into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identities_are_folders_or_stems() {
        assert_eq!(identity_of(Path::new("Zico/Zico_0001.jpg")), "Zico");
        assert_eq!(identity_of(Path::new("a/b/x.jpg")), "a/b");
        assert_eq!(identity_of(Path::new("alice.jpg")), "alice");
    }

    fn touch(path: &Path) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, b"x").unwrap();
    }

    #[test]
    fn folders_files_patterns_and_lists_name_the_same_images() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        for f in ["flat/bob.jpg", "flat/alice.png", "flat/notes.txt", "flat/.hidden.jpg", "ids/ann/1.jpg", "ids/ann/2.jpg", "ids/ben/1.jpg"] {
            touch(&d.join(f));
        }
        // A flat folder: each image its own identity, named by its stem.
        let flat = FaceDataset::from_inputs(&[d.join("flat")], None).unwrap();
        assert_eq!(flat.root, d.join("flat"));
        assert_eq!(flat.identities, ["alice", "bob"]);
        assert_eq!(flat.samples[1], Sample { path: "bob.jpg".into(), label: 1 });
        // Identity folders.
        let ids = FaceDataset::from_inputs(&[d.join("ids")], None).unwrap();
        assert_eq!(ids.identities, ["ann", "ben"]);
        assert_eq!(ids.samples.iter().map(|s| s.label).collect::<Vec<_>>(), [0, 0, 1]);
        // A pattern, and the files the shell would expand it to: the same dataset.
        let pattern = FaceDataset::from_inputs(&[d.join("ids/*/*.jpg")], None).unwrap();
        assert_eq!(pattern, ids);
        let files = FaceDataset::from_inputs(&[d.join("ids/ben/1.jpg"), d.join("ids/ann/2.jpg"), d.join("ids/ann/1.jpg")], None).unwrap();
        assert_eq!(files, ids);
        // Hidden names only when the pattern spells the dot; character classes.
        let jpgs = FaceDataset::from_inputs(&[d.join("flat/*.jpg")], None).unwrap();
        assert_eq!(jpgs.identities, ["bob"]);
        let hidden = FaceDataset::from_inputs(&[d.join("flat/.*.jpg")], None).unwrap();
        assert_eq!(hidden.identities, [".hidden"]);
        let class = FaceDataset::from_inputs(&[d.join("flat/[ab]*")], None).unwrap();
        assert_eq!(class.identities, ["alice", "bob"], "notes.txt is no image");
        let deep = FaceDataset::from_inputs(&[d.join("**/1.jpg")], None).unwrap();
        assert_eq!(deep.root, d.join("ids"));
        assert_eq!(deep.samples.len(), 2);
        // A list without labels: identities as for folders.
        let list = d.join("list.txt");
        std::fs::write(&list, "ann/2.jpg\nben/1.jpg\n").unwrap();
        let listed = FaceDataset::from_inputs(&[d.join("ids")], Some(&list)).unwrap();
        assert_eq!(listed.identities, ["ann", "ben"]);
        assert_eq!(listed.samples[1], Sample { path: "ben/1.jpg".into(), label: 1 });
        // Errors say what is wrong with which input.
        let err = FaceDataset::from_inputs(&[d.join("nowhere")], None).unwrap_err().to_string();
        assert!(err.contains("nowhere: not found") && err.contains("pattern"), "{err}");
        let err = FaceDataset::from_inputs(&[d.join("flat/*.gif")], None).unwrap_err().to_string();
        assert!(err.contains("*.gif: no image files match"), "{err}");
        std::fs::create_dir_all(d.join("empty")).unwrap();
        let err = FaceDataset::from_inputs(&[d.join("empty")], None).unwrap_err().to_string();
        assert!(err.contains("empty: no images (jpg"), "{err}");
        std::fs::write(&list, "ann/2.jpg\nann/9.jpg\n").unwrap();
        let err = FaceDataset::from_inputs(&[d.join("ids")], Some(&list)).unwrap_err().to_string();
        assert!(err.contains("1 image(s) missing: ann/9.jpg"), "{err}");
    }
}
