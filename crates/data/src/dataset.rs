//! Identity-labelled face datasets: a list of `(image path, identity)` with identities numbered
//! `0..n` in sorted name order, read from identity folders (`root/<identity>/<image>`) or from
//! a list file (`relative/path label` per line).

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use crate::error::{DataError, Result};
use crate::image_io::is_image_path;

/// One image of a dataset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    /// Path relative to the dataset root.
    pub path: PathBuf,
    /// Index into [`FaceDataset::identities`].
    pub label: i64,
}

/// Images with identity labels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FaceDataset {
    pub root: PathBuf,
    pub samples: Vec<Sample>,
    /// Identity names; label `i` is `identities[i]`.
    pub identities: Vec<String>,
}

impl FaceDataset {
    /// Reads `root/<identity>/<image>` (jpg, jpeg, png, pgm, ppm, bmp; any case). Identities and
    /// files are sorted, so labels do not depend on the file system's order. Identity folders
    /// without images are left out.
    pub fn from_folders(root: &Path) -> Result<Self> {
        let dirs = std::fs::read_dir(root).map_err(|e| DataError::io(root, e))?;
        let mut by_identity: BTreeMap<String, Vec<PathBuf>> = BTreeMap::new();
        for entry in dirs {
            let entry = entry.map_err(|e| DataError::io(root, e))?;
            let path = entry.path();
            if !path.is_dir() {
                continue;
            }
            let name = entry.file_name().to_string_lossy().into_owned();
            let mut files = Vec::new();
            for f in std::fs::read_dir(&path).map_err(|e| DataError::io(&path, e))? {
                let f = f.map_err(|e| DataError::io(&path, e))?.path();
                if f.is_file() && is_image_path(&f) {
                    files.push(PathBuf::from(&name).join(f.file_name().unwrap_or_default()));
                }
            }
            if !files.is_empty() {
                files.sort();
                by_identity.insert(name, files);
            }
        }
        if by_identity.is_empty() {
            return Err(DataError::format(root, "no identity folders with images (expected root/<identity>/<image>)"));
        }
        let mut samples = Vec::new();
        let mut identities = Vec::new();
        for (label, (name, files)) in by_identity.into_iter().enumerate() {
            samples.extend(files.into_iter().map(|path| Sample { path, label: label as i64 }));
            identities.push(name);
        }
        Ok(FaceDataset { root: root.to_path_buf(), samples, identities })
    }

    /// Reads a list file of `relative/path label` lines (label: an integer or an identity name;
    /// `#` comments and blank lines ignored) with images under `root`. Integer labels must be
    /// `0..n`, each used; names are numbered in sorted order. A list may instead hold bare image
    /// paths (lines ending in an image extension, `.jpg`, `.png`, ...), whose identities are
    /// their folders as in [`FaceDataset::from_inputs`]; one list holds one kind of line.
    pub fn from_list(list: &Path, root: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(list).map_err(|e| DataError::io(list, e))?;
        Self::parse_list(&text, list, root)
    }

    /// [`FaceDataset::from_list`] on text; `list` names it in errors.
    pub fn parse_list(text: &str, list: &Path, root: &Path) -> Result<Self> {
        let mut rows: Vec<(PathBuf, String)> = Vec::new();
        let mut bare: Vec<PathBuf> = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let t = line.trim();
            if t.is_empty() || t.starts_with('#') {
                continue;
            }
            if is_image_path(Path::new(t)) {
                if !rows.is_empty() {
                    return Err(DataError::line(list, i + 1, format!("{t:?} has no label, the lines before have one")));
                }
                bare.push(PathBuf::from(t));
                continue;
            }
            if !bare.is_empty() {
                return Err(DataError::line(list, i + 1, format!("expected an image path as on the lines before, got {t:?}")));
            }
            let (path, label) = t
                .rsplit_once(char::is_whitespace)
                .map(|(p, l)| (p.trim(), l.trim()))
                .filter(|(p, l)| !p.is_empty() && !l.is_empty())
                .ok_or_else(|| {
                    DataError::line(list, i + 1, format!("expected `path label` or an image path (.jpg, .png, ...), got {t:?}"))
                })?;
            rows.push((PathBuf::from(path), label.to_owned()));
        }
        if !bare.is_empty() {
            return Ok(Self::from_paths(root, bare));
        }
        if rows.is_empty() {
            return Err(DataError::format(list, "the list holds no images"));
        }
        let numeric = rows.iter().all(|(_, l)| l.parse::<i64>().is_ok());
        let identities: Vec<String> = if numeric {
            let max = rows.iter().map(|(_, l)| l.parse::<i64>().unwrap_or(-1)).max().unwrap_or(-1);
            if let Some((p, l)) = rows.iter().find(|(_, l)| l.parse::<i64>().unwrap_or(-1) < 0) {
                return Err(DataError::format(list, format!("{}: label {l} is negative", p.display())));
            }
            let used: HashSet<i64> = rows.iter().map(|(_, l)| l.parse().unwrap_or(0)).collect();
            if let Some(gap) = (0..=max).find(|l| !used.contains(l)) {
                return Err(DataError::format(list, format!("labels must be 0..{max} with none unused; {gap} is unused")));
            }
            (0..=max).map(|l| l.to_string()).collect()
        } else {
            let set: std::collections::BTreeSet<&str> = rows.iter().map(|(_, l)| l.as_str()).collect();
            set.into_iter().map(str::to_owned).collect()
        };
        let index: std::collections::HashMap<&str, i64> =
            identities.iter().enumerate().map(|(i, n)| (n.as_str(), i as i64)).collect();
        let samples = rows
            .iter()
            .map(|(path, l)| Sample { path: path.clone(), label: if numeric { l.parse().unwrap_or(0) } else { index[l.as_str()] } })
            .collect();
        Ok(FaceDataset { root: root.to_path_buf(), samples, identities })
    }

    pub fn len(&self) -> usize {
        self.samples.len()
    }

    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    pub fn num_identities(&self) -> usize {
        self.identities.len()
    }

    /// The images of the identities `keep` accepts that have at least `min_images` images,
    /// relabelled `0..k` in the same order.
    pub fn filter_identities(&self, keep: impl Fn(&str) -> bool, min_images: usize) -> FaceDataset {
        let mut counts = vec![0usize; self.identities.len()];
        for s in &self.samples {
            counts[s.label as usize] += 1;
        }
        let mut new_label = vec![-1i64; self.identities.len()];
        let mut identities = Vec::new();
        for (i, name) in self.identities.iter().enumerate() {
            if counts[i] >= min_images && keep(name) {
                new_label[i] = identities.len() as i64;
                identities.push(name.clone());
            }
        }
        let samples = self
            .samples
            .iter()
            .filter(|s| new_label[s.label as usize] >= 0)
            .map(|s| Sample { path: s.path.clone(), label: new_label[s.label as usize] })
            .collect();
        FaceDataset { root: self.root.clone(), samples, identities }
    }

    /// Full path of a sample's image.
    pub fn image_path(&self, sample: &Sample) -> PathBuf {
        self.root.join(&sample.path)
    }

    /// The samples whose files do not exist, as one error listing them (or `Ok`).
    pub fn check_files(&self) -> Result<()> {
        let missing: Vec<String> = self
            .samples
            .iter()
            .filter(|s| !self.image_path(s).is_file())
            .map(|s| s.path.display().to_string())
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        let shown: Vec<&str> = missing.iter().take(10).map(String::as_str).collect();
        Err(DataError::Missing {
            path: self.root.clone(),
            hint: format!(
                ": {} image(s) missing: {}{}",
                missing.len(),
                shown.join(", "),
                if missing.len() > 10 { ", ..." } else { "" }
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_files_with_numbers_or_names_and_their_errors() {
        let dir = tempfile::tempdir().unwrap();
        let list = dir.path().join("list.txt");
        std::fs::write(&list, "# comment\na/1.jpg 1\nb/2.jpg 0\n\nc d/3.jpg 1\n").unwrap();
        let d = FaceDataset::from_list(&list, dir.path()).unwrap();
        assert_eq!(d.identities, ["0", "1"]);
        assert_eq!(d.samples[2], Sample { path: "c d/3.jpg".into(), label: 1 });
        std::fs::write(&list, "x.jpg bob\ny.jpg alice\nz.jpg bob\n").unwrap();
        let d = FaceDataset::from_list(&list, dir.path()).unwrap();
        assert_eq!(d.identities, ["alice", "bob"]);
        assert_eq!(d.samples[0].label, 1);
        std::fs::write(&list, "x.jpg 0\nlonely\n").unwrap();
        let err = FaceDataset::from_list(&list, dir.path()).unwrap_err().to_string();
        assert!(err.contains("list.txt:2:") && err.contains("path label"), "{err}");
        std::fs::write(&list, "x.jpg 0\ny.jpg 2\n").unwrap();
        let err = FaceDataset::from_list(&list, dir.path()).unwrap_err().to_string();
        assert!(err.contains("1 is unused"), "{err}");
        let err = d.check_files().unwrap_err().to_string();
        assert!(err.contains("3 image(s) missing") && err.contains("x.jpg"), "{err}");
    }
}
