//! `[data]`: which training set, opened as a [`Source`] for the loader.

use std::path::PathBuf;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use facerec_data::align::Template;
use facerec_data::cache::CropCache;
use facerec_data::dataset::FaceDataset;
use facerec_data::insightface::{RecordIo, RecordIoSource};
use facerec_data::landmarks::{LandmarkFile, OnBad};
use facerec_data::lfw::{disjoint_train_set, zero_based_folds, Pairs};
use facerec_data::loader::Source;
use facerec_data::mnist::{Mnist, Split};
use facerec_data::normalize::PixelNorm;

use crate::error::{ExperimentError, Result};

/// The training data: `kind = "mnist"` or `kind = "faces"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum DataConfig {
    /// MNIST idx files (the paper's toy experiment).
    Mnist(MnistData),
    /// Face photos with 5-point landmarks, aligned once into a crop cache.
    Faces(FacesData),
    /// An insightface RecordIO set (`train.rec` + `train.idx`) of aligned crops.
    RecordIo(RecordIoData),
}

/// `kind = "record_io"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordIoData {
    /// `train.rec`; its index is the same path with extension `idx`.
    pub rec: PathBuf,
    #[serde(default = "yes")]
    pub flip: bool,
    /// Each epoch in a seeded random order; `false` reads the records in file order (every
    /// epoch the same), for comparisons with another trainer fed the same batches.
    #[serde(default = "yes")]
    pub shuffle: bool,
}

/// `kind = "faces"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FacesData {
    /// Root of the images: identity folders `<images>/<identity>/<image>`.
    pub images: PathBuf,
    /// A list file (`relative/path label` lines) to use instead of the folders.
    pub list: Option<PathBuf>,
    /// Landmarks file (`facerec detect` writes one; LFW ships `landmarks_5pt.tsv`).
    pub landmarks: PathBuf,
    /// Crop layout: `"caffe_face"` (112x96) or `"insightface"` (112x112).
    #[serde(default)]
    pub template: Template,
    /// Where aligned-crop caches are kept (one sub-folder per dataset and template).
    #[serde(default = "default_cache_dir")]
    pub cache_dir: PathBuf,
    /// Mirror training images at random (the paper's augmentation).
    #[serde(default = "yes")]
    pub flip: bool,
    /// Each epoch in a seeded random order; `false`: the dataset's order, every epoch.
    #[serde(default = "yes")]
    pub shuffle: bool,
    /// Keep identities with at least this many images.
    #[serde(default = "one")]
    pub min_images: usize,
    /// Skip unreadable images and bad landmarks (reported) instead of stopping.
    #[serde(default)]
    pub skip_bad: bool,
    /// Identity-disjoint protocol: leave out every identity of these LFW pairs folds.
    pub exclude_pairs: Option<ExcludePairs>,
}

/// `[data.exclude_pairs]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExcludePairs {
    /// LFW `pairs.txt`.
    pub pairs: PathBuf,
    /// Folds, 1-based (`[1, 2, 3, 4, 5]`: the recommended split of `../shared/README.md`).
    pub folds: Vec<usize>,
}

fn default_cache_dir() -> PathBuf {
    PathBuf::from("data/cache")
}
fn yes() -> bool {
    true
}
fn one() -> usize {
    1
}

impl FacesData {
    /// The training dataset after the identity-disjoint and minimum-images filters.
    pub fn dataset(&self) -> Result<FaceDataset> {
        let all = match &self.list {
            Some(list) => FaceDataset::from_list(list, &self.images)?,
            None => FaceDataset::from_folders(&self.images)?,
        };
        let ds = match &self.exclude_pairs {
            Some(ex) => {
                let pairs = Pairs::read(&ex.pairs)?;
                let folds = zero_based_folds(&ex.folds, pairs.folds, "data.exclude_pairs.folds")
                    .map_err(|msg| ExperimentError::Config { path: ex.pairs.clone(), msg })?;
                disjoint_train_set(&all, &pairs, &folds, self.min_images)
            }
            None => all.filter_identities(|_| true, self.min_images),
        };
        if ds.is_empty() {
            return Err(ExperimentError::Config {
                path: self.images.clone(),
                msg: "no training images left after the identity filters".into(),
            });
        }
        Ok(ds)
    }

    /// Aligns the training images into the crop cache (once) and opens it.
    pub fn open_cache(&self, progress: &(dyn Fn(u64) + Sync)) -> Result<CropCache> {
        let ds = self.dataset()?;
        let on_bad = if self.skip_bad { OnBad::Skip } else { OnBad::Fail };
        let landmarks = LandmarkFile::read(&self.landmarks, on_bad)?;
        tracing::info!("training set: {} images of {} identities", ds.len(), ds.num_identities());
        let (cache, report) = CropCache::open_or_build_in(&ds, &landmarks, self.template, &self.cache_dir, on_bad, progress)?;
        if let Some(r) = report {
            tracing::info!("aligned {} training images into {}", r.written, cache.dir.display());
            for e in r.skipped.iter().take(10) {
                tracing::warn!("skipped: {e}");
            }
            if r.skipped.len() > 10 {
                tracing::warn!("... and {} more skipped", r.skipped.len() - 10);
            }
        }
        Ok(cache)
    }
}

/// `kind = "mnist"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MnistData {
    /// Folder with the four idx files (`scripts/setup.sh` links `data/mnist`).
    #[serde(default = "default_mnist_dir")]
    pub dir: PathBuf,
    /// Train on the first N training images only (quick runs).
    pub train_limit: Option<usize>,
    /// Evaluate on the first N test images only.
    pub test_limit: Option<usize>,
}

fn default_mnist_dir() -> PathBuf {
    facerec_data::mnist::default_dir()
}

/// A training set ready for the loader.
pub struct TrainSet {
    pub source: Arc<dyn Source>,
    /// Whether mirroring is part of the augmentation.
    pub flip: bool,
}

impl DataConfig {
    /// Checks paths and that images fit the backbone's `[C, H, W]`.
    pub fn validate(&self, model_input: [i64; 3]) -> std::result::Result<(), String> {
        match self {
            DataConfig::Mnist(m) => {
                if !m.dir.is_dir() {
                    return Err(format!(
                        "data.dir: {} is not a directory (run scripts/setup.sh to fetch MNIST)",
                        m.dir.display()
                    ));
                }
                if model_input != [1, 28, 28] {
                    return Err(format!("model.backbone takes {model_input:?} images, MNIST has [1, 28, 28]"));
                }
                if m.train_limit == Some(0) || m.test_limit == Some(0) {
                    return Err("data.train_limit / data.test_limit must be at least 1".into());
                }
            }
            DataConfig::Faces(f) => {
                let dir_or_file = [("data.images", &f.images, true), ("data.landmarks", &f.landmarks, false)];
                for (key, path, dir) in dir_or_file {
                    if (dir && !path.is_dir()) || (!dir && !path.is_file()) {
                        return Err(format!(
                            "{key}: {} does not exist (run scripts/setup.sh for LFW, or fix the path)",
                            path.display()
                        ));
                    }
                }
                if let Some(list) = &f.list {
                    if !list.is_file() {
                        return Err(format!("data.list: {} does not exist", list.display()));
                    }
                }
                if let Some(ex) = &f.exclude_pairs {
                    if !ex.pairs.is_file() {
                        return Err(format!("data.exclude_pairs.pairs: {} does not exist", ex.pairs.display()));
                    }
                    if ex.folds.is_empty() || ex.folds.contains(&0) {
                        return Err("data.exclude_pairs.folds: give 1-based fold numbers, e.g. [1, 2, 3, 4, 5]".into());
                    }
                }
                let (h, w) = f.template.size();
                let crop = [3, i64::from(h), i64::from(w)];
                if model_input != crop {
                    return Err(format!(
                        "model.backbone takes {model_input:?} images but data.template {:?} makes {crop:?} crops",
                        f.template
                    ));
                }
                if f.min_images == 0 {
                    return Err("data.min_images must be at least 1".into());
                }
            }
            DataConfig::RecordIo(r) => {
                for p in [r.rec.clone(), r.rec.with_extension("idx")] {
                    if !p.is_file() {
                        return Err(format!(
                            "data.rec: {} does not exist (point data.rec at an insightface train.rec with its .idx beside it, \
                             e.g. --set data.rec=/data/faces_webface_112x112/train.rec; facerec convert --to-rec makes one)",
                            p.display()
                        ));
                    }
                }
                if model_input[0] != 3 {
                    return Err(format!("model.backbone takes {model_input:?} images; RecordIO sets are RGB"));
                }
                // The crop size is checked against the model when the set is opened.
            }
        }
        Ok(())
    }

    /// Whether each epoch is shuffled (MNIST's always is).
    pub fn shuffle(&self) -> bool {
        match self {
            DataConfig::Faces(f) => f.shuffle,
            DataConfig::RecordIo(r) => r.shuffle,
            DataConfig::Mnist(_) => true,
        }
    }

    /// Opens the training split (aligning face images into the crop cache first, once) for a
    /// model of `input` `[C, H, W]` images normalised by `norm`, reporting alignment progress
    /// (images done).
    pub fn open_train_with_progress(&self, input: [i64; 3], norm: PixelNorm, progress: &(dyn Fn(u64) + Sync)) -> Result<TrainSet> {
        match self {
            DataConfig::Faces(f) => {
                let cache = f.open_cache(progress)?;
                Ok(TrainSet { source: Arc::new(cache.into_source()?.with_norm(norm)), flip: f.flip })
            }
            DataConfig::RecordIo(r) => {
                let rec = RecordIo::open(&r.rec)?;
                tracing::info!("{}: {} images of {} identities", r.rec.display(), rec.images.len(), rec.num_identities);
                Ok(TrainSet { source: Arc::new(RecordIoSource::new(rec)?.with_norm(norm).fit_to(input)?), flip: r.flip })
            }
            DataConfig::Mnist(m) => {
                let mut train = Mnist::load(&m.dir, Split::Train)?;
                if let Some(n) = m.train_limit {
                    train.truncate(n);
                }
                Ok(TrainSet { source: Arc::new(train.into_source()?.with_norm(norm)), flip: false })
            }
        }
    }
}
