//! The evaluations of a run, picked from its data and `[eval]` settings: MNIST's test set for
//! MNIST runs; for face runs LFW (`[eval.lfw]`) and any insightface `.bin` sets
//! (`[[eval.bin]]`), each reported under its own name. [`Evaluators`] runs them all as the
//! trainer's one [`Evaluator`].

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use facerec_data::align::Template;
use facerec_eval::lfw::{BinProtocol, BinSet, LfwEval};
use facerec_eval::verification::Scoring;
use facerec_eval::mnist::MnistEval;
use facerec_train::{Evaluator, ModelParts, TrainError};

use crate::config::Config;
use crate::data::DataConfig;
use crate::error::{ExperimentError, Result};

/// `[[eval.bin]]`: verification on an insightface evaluation set (`cfp_fp.bin`, `agedb_30.bin`,
/// ...) during training, its metrics named `<name>_accuracy`, `<name>_accuracy_std`,
/// `<name>_auc`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BinEvalConfig {
    /// The name its metrics carry (e.g. `"cfp_fp"`).
    pub name: String,
    pub path: PathBuf,
    /// Concatenate the features of each image and its mirror.
    #[serde(default = "yes")]
    pub flip: bool,
    /// PCA dimensions fitted on the training folds; 0 = none (facerec's protocol only).
    #[serde(default)]
    pub pca: usize,
    /// How the set is scored: `insightface` (its `eval/verification.py`: mirrors summed, squared
    /// distances on a grid, the numbers arcface_torch logs) or `facerec` (the LFW protocol).
    #[serde(default)]
    pub protocol: BinProtocol,
    /// Images per forward pass.
    #[serde(default = "default_batch")]
    pub batch_size: usize,
}

fn yes() -> bool {
    true
}
fn default_batch() -> usize {
    128
}

impl BinEvalConfig {
    /// The path exists and the numbers are sane; the message names the key.
    pub fn validate(&self) -> std::result::Result<(), String> {
        if self.name.is_empty() || !self.name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!("eval.bin.name {:?}: use letters, digits and _ (it names the metrics)", self.name));
        }
        if !self.path.is_file() {
            return Err(format!(
                "eval.bin.path: {} does not exist (point it at your .bin, e.g. --set 'eval.bin=[{{name = \"lfw\", path = \"/data/lfw.bin\"}}]', \
                 or leave the sets out with --set eval.bin=[]; facerec convert --to-bin writes .bin sets)",
                self.path.display()
            ));
        }
        if self.batch_size == 0 {
            return Err("eval.bin.batch_size must be at least 1".into());
        }
        if self.protocol == BinProtocol::Insightface && (self.pca > 0 || !self.flip) {
            return Err(format!(
                "eval.bin {:?}: insightface's protocol sums the mirror's features and uses no PCA: set protocol = \"facerec\" for flip = false or pca",
                self.name
            ));
        }
        Ok(())
    }
}

/// One evaluation of a run.
pub enum Evaluation {
    Mnist(MnistEval),
    Lfw(Box<LfwEval>),
    /// A `.bin` set, decoded once when the run starts.
    Bin(BinEvalConfig, BinSet),
}

impl Evaluation {
    fn evaluate(&mut self, model: &ModelParts<'_>) -> facerec_eval::Result<Vec<(String, f64)>> {
        match self {
            Evaluation::Mnist(e) => e.evaluate(model.backbone, model.loss, model.device),
            Evaluation::Lfw(e) => e.evaluate(model.backbone, model.device),
            Evaluation::Bin(b, set) => {
                let r = set.evaluate(model.backbone, model.device, b.protocol, b.flip, Scoring::pca(b.pca), b.batch_size)?;
                let (acc, std) = r.accuracy();
                let mut metrics = vec![
                    (format!("{}_accuracy", b.name), acc),
                    (format!("{}_accuracy_std", b.name), std),
                    (format!("{}_auc", b.name), r.verification.auc),
                ];
                if let Some(i) = &r.insightface {
                    metrics.extend([(format!("{}_xnorm", b.name), i.xnorm), (format!("{}_val_far1e-3", b.name), i.val)]);
                }
                Ok(metrics)
            }
        }
    }
}

/// Every evaluation of a run, run one after the other; their metrics together.
#[derive(Default)]
pub struct Evaluators {
    list: Vec<Evaluation>,
}

impl Evaluators {
    /// The evaluations `config` asks for; `progress` counts the LFW images aligned (once, into
    /// the crop cache).
    pub fn for_config(config: &Config, progress: &(dyn Fn(u64) + Sync)) -> Result<Self> {
        let mut list = Vec::new();
        let norm = config.model.backbone.pixel_norm();
        match &config.data {
            DataConfig::Mnist(m) => list.push(Evaluation::Mnist(MnistEval::load(&m.dir, m.test_limit, norm)?)),
            DataConfig::Faces(_) | DataConfig::RecordIo(_) => {
                if let Some(lfw) = &config.eval.lfw {
                    let template = Template::for_input(config.model.backbone.input_shape())
                        .map_err(|msg| ExperimentError::Config { path: lfw.pairs.clone(), msg })?;
                    list.push(Evaluation::Lfw(Box::new(LfwEval::new(lfw, template, norm, progress)?)));
                }
                for b in &config.eval.bin {
                    let set = BinSet::load(&b.path, config.model.backbone.input_shape(), norm)?;
                    list.push(Evaluation::Bin(b.clone(), set));
                }
            }
        }
        Ok(Evaluators { list })
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// The LFW evaluation, if the run has one.
    pub fn lfw(&self) -> Option<&LfwEval> {
        self.list.iter().find_map(|e| match e {
            Evaluation::Lfw(l) => Some(l.as_ref()),
            _ => None,
        })
    }

    /// The LFW evaluation, for the run's report.
    pub fn lfw_mut(&mut self) -> Option<&mut LfwEval> {
        self.list.iter_mut().find_map(|e| match e {
            Evaluation::Lfw(l) => Some(l.as_mut()),
            _ => None,
        })
    }

    /// The MNIST evaluation, for the run's report.
    pub fn mnist(&self) -> Option<&MnistEval> {
        self.list.iter().find_map(|e| match e {
            Evaluation::Mnist(m) => Some(m),
            _ => None,
        })
    }
}

impl Evaluator for Evaluators {
    fn evaluate(&mut self, model: &ModelParts<'_>) -> facerec_train::Result<Vec<(String, f64)>> {
        let mut metrics = Vec::new();
        for e in &mut self.list {
            metrics.extend(e.evaluate(model).map_err(|e| TrainError::Evaluation(e.to_string()))?);
        }
        Ok(metrics)
    }
}
