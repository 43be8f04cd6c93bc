//! ArcFace, the additive angular margin loss: Deng, Guo, Xue, Zafeiriou, "ArcFace: Additive
//! Angular Margin Loss for Deep Face Recognition", CVPR 2019, Eq. 3:
//!
//! `L = -1/N sum_i log( e^{s cos(t_{y_i} + m)} / (e^{s cos(t_{y_i} + m)} + sum_{j != y_i} e^{s cos t_j}) )`
//!
//! with features and class weights L2-normalised. As insightface's implementation does,
//! `cos(t + m)` is computed as `cos t cos m - sin t sin m`, and where `t + m` would pass pi (so
//! that the target logit would rise again) the target is `cos t - m sin m` instead (the
//! paper's Sec. 3 fallback, CosFace-like), or, with `easy_margin`, the plain `cos t` wherever
//! `cos t <= 0`. Cosines are clamped into the open interval (-1, 1) so that the gradient stays
//! finite at `t = 0`.

use serde::{Deserialize, Serialize};
use tch::{nn, Tensor};

use facerec_core::plugin::Plug;

use crate::error::Result;
use crate::loss::{Loss, LossOutput, LossSpec, Term};
use crate::margin::{check_scale, open_interval, CosineClassifier};
use crate::sharded::{ClassShard, CosineShard, Margin, ShardHead};
use std::sync::Arc;

/// `[loss] name = "arcface"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArcFaceConfig {
    /// `s`, the radius of the hypersphere (the paper: 64).
    #[serde(default = "default_scale")]
    pub scale: f64,
    /// `m`, the additive angular margin in radians, in `[0, pi/2)` (the paper: 0.5).
    #[serde(default = "default_margin")]
    pub margin: f64,
    /// Apply the margin only where `cos t > 0`, and no fallback (insightface's option).
    #[serde(default)]
    pub easy_margin: bool,
}

fn default_scale() -> f64 {
    64.0
}
fn default_margin() -> f64 {
    0.5
}

impl Plug for ArcFaceConfig {
    const NAME: &'static str = "arcface";

    fn check(&self) -> std::result::Result<(), String> {
        check_scale(self.scale)?;
        if !(0.0..std::f64::consts::FRAC_PI_2).contains(&self.margin) {
            return Err(format!("loss.margin must be in [0, pi/2) radians, got {}", self.margin));
        }
        Ok(())
    }
}

impl LossSpec for ArcFaceConfig {
    /// The class weights under `p / "head" / "fc"` (`weight: [classes, dim]`, no bias).
    fn build(&self, p: &nn::Path, feature_dim: i64, num_classes: i64) -> Result<Box<dyn Loss>> {
        let head = CosineClassifier::new(&(p / "head"), feature_dim, num_classes);
        Ok(Box::new(ArcFace { head, config: self.clone() }))
    }

    fn shard_head(&self, p: &nn::Path, feature_dim: i64, shard: &ClassShard) -> Result<Option<Box<dyn ShardHead>>> {
        let config = self.clone();
        let target: Margin = Arc::new(move |c| config.target(c));
        Ok(Some(Box::new(CosineShard::new(&(p / "head" / "fc"), feature_dim, shard, self.scale, target, "arcface_loss")?)))
    }
}

/// The normalised classifier and the angular margin.
#[derive(Debug)]
pub struct ArcFace {
    head: CosineClassifier,
    config: ArcFaceConfig,
}

impl ArcFaceConfig {
    /// `cos(t + m)` of the target cosines `c`, with the fallback described in the module docs.
    fn target(&self, c: &Tensor) -> Result<Tensor> {
        let m = self.margin;
        let c = open_interval(c)?;
        let sine = c.f_square()?.f_neg()?.f_add_scalar(1.0)?.f_sqrt()?;
        let phi = c.f_mul_scalar(m.cos())?.f_sub(&sine.f_mul_scalar(m.sin())?)?;
        let (threshold, otherwise) = if self.easy_margin {
            (0.0, c.shallow_clone())
        } else {
            // t + m <= pi exactly where cos t >= cos(pi - m).
            ((std::f64::consts::PI - m).cos(), c.f_sub_scalar(m * m.sin())?)
        };
        Ok(phi.f_where_self(&c.f_gt(threshold)?, &otherwise)?)
    }
}

impl Loss for ArcFace {
    fn forward(&self, features: &Tensor, labels: &Tensor) -> Result<LossOutput> {
        let (loss, logits) = self.head.margin_softmax(features, labels, self.config.scale, |c| self.config.target(c))?;
        LossOutput::from_logits(loss, &logits)
    }

    fn logits(&self, features: &Tensor) -> Result<Tensor> {
        self.head.scaled_logits(features, self.config.scale)
    }

    fn terms(&self) -> Vec<Term> {
        vec![Term::unit("arcface_loss")]
    }
}
