//! `[data]`: which training set, opened as a [`Source`] for the loader.

use std::path::PathBuf;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use facerec_data::loader::Source;
use facerec_data::mnist::{Mnist, Split};

use crate::error::Result;

/// The training data: `kind = "mnist"` (more kinds with the face pipeline).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum DataConfig {
    /// MNIST idx files (the paper's toy experiment).
    Mnist(MnistData),
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
        }
        Ok(())
    }

    /// Opens the training split.
    pub fn open_train(&self) -> Result<TrainSet> {
        match self {
            DataConfig::Mnist(m) => {
                let mut train = Mnist::load(&m.dir, Split::Train)?;
                if let Some(n) = m.train_limit {
                    train.truncate(n);
                }
                Ok(TrainSet { source: Arc::new(train.into_source()?), flip: false })
            }
        }
    }
}
