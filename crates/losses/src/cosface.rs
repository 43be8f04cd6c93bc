//! CosFace, the large margin cosine loss: Wang, Wang, Zhou, Ji, Gong, Zhou, Li, Liu, "CosFace:
//! Large Margin Cosine Loss for Deep Face Recognition", CVPR 2018, Eq. 4:
//!
//! `L = -1/N sum_i log( e^{s (cos t_{y_i,i} - m)} / (e^{s (cos t_{y_i,i} - m)} + sum_{j != y_i} e^{s cos t_{j,i}}) )`
//!
//! with `cos t_{j,i}` the cosine between feature `x_i` and class weight `W_j` (both
//! L2-normalised, no bias), scale `s` and margin `m`. The classifier's logits for accuracy are
//! `s cos t` without the margin. Gradients are autograd's.

use serde::{Deserialize, Serialize};
use tch::{nn, Tensor};

use facerec_core::plugin::Plug;

use crate::error::Result;
use crate::loss::{Loss, LossOutput, LossSpec, Term};
use crate::margin::{check_scale, CosineClassifier};
use crate::sharded::{ClassShard, CosineShard, Margin, ShardHead};
use std::sync::Arc;

/// `[loss] name = "cosface"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CosFaceConfig {
    /// `s`, the radius of the hypersphere the logits live on (the paper: 64).
    #[serde(default = "default_scale")]
    pub scale: f64,
    /// `m`, subtracted from the target class's cosine (the paper: 0.35).
    #[serde(default = "default_margin")]
    pub margin: f64,
}

fn default_scale() -> f64 {
    64.0
}
fn default_margin() -> f64 {
    0.35
}

impl Plug for CosFaceConfig {
    const NAME: &'static str = "cosface";

    fn check(&self) -> std::result::Result<(), String> {
        check_scale(self.scale)?;
        if !(0.0..1.0).contains(&self.margin) {
            return Err(format!("loss.margin must be in [0, 1), got {}", self.margin));
        }
        Ok(())
    }
}

impl LossSpec for CosFaceConfig {
    /// The class weights under `p / "head" / "fc"` (`weight: [classes, dim]`, no bias).
    fn build(&self, p: &nn::Path, feature_dim: i64, num_classes: i64) -> Result<Box<dyn Loss>> {
        let head = CosineClassifier::new(&(p / "head"), feature_dim, num_classes);
        Ok(Box::new(CosFace { head, config: self.clone() }))
    }

    fn shard_head(&self, p: &nn::Path, feature_dim: i64, shard: &ClassShard) -> Result<Option<Box<dyn ShardHead>>> {
        let margin = self.margin;
        let target: Margin = Arc::new(move |c| Ok(c.f_sub_scalar(margin)?));
        Ok(Some(Box::new(CosineShard::new(&(p / "head" / "fc"), feature_dim, shard, self.scale, target, "cosface_loss")?)))
    }
}

/// The normalised classifier and the margin.
#[derive(Debug)]
pub struct CosFace {
    head: CosineClassifier,
    config: CosFaceConfig,
}

impl Loss for CosFace {
    fn forward(&self, features: &Tensor, labels: &Tensor) -> Result<LossOutput> {
        let margin = self.config.margin;
        let (loss, logits) = self.head.margin_softmax(features, labels, self.config.scale, |c| Ok(c.f_sub_scalar(margin)?))?;
        LossOutput::from_logits(loss, &logits)
    }

    fn logits(&self, features: &Tensor) -> Result<Tensor> {
        self.head.scaled_logits(features, self.config.scale)
    }

    fn terms(&self) -> Vec<Term> {
        vec![Term::unit("cosface_loss")]
    }
}
