//! The combined margin of insightface (Deng et al., ArcFace, CVPR 2019, Eq. 4): the target
//! class's logit is `s (cos(m1 t + m2) - m3)`, which is SphereFace's multiplicative angular
//! margin (`m1`, without its annealing or feature norms), ArcFace's additive angular margin
//! (`m2`) and CosFace's additive cosine margin (`m3`) at once; the other classes keep `s cos t`.
//! Features and class weights are L2-normalised; `t = acos(cos)` with the cosine clamped into
//! the open interval (-1, 1). As insightface's general branch, there is no fallback where
//! `m1 t + m2` passes pi (use `arcface` for that).

use serde::{Deserialize, Serialize};
use tch::{nn, Tensor};

use facerec_core::plugin::Plug;

use crate::error::Result;
use crate::loss::{Loss, LossOutput, LossSpec, Term};
use crate::margin::{check_scale, open_interval, CosineClassifier};
use crate::sharded::{ClassShard, CosineShard, Margin, ShardHead};
use std::sync::Arc;

/// `[loss] name = "combined_margin"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CombinedMarginConfig {
    /// `s` (insightface: 64).
    #[serde(default = "default_scale")]
    pub scale: f64,
    /// Multiplicative angular margin, `>= 1` (1: none).
    #[serde(default = "one")]
    pub m1: f64,
    /// Additive angular margin in radians, `>= 0`.
    #[serde(default)]
    pub m2: f64,
    /// Additive cosine margin, `>= 0`.
    #[serde(default)]
    pub m3: f64,
    /// How the margin's gradient is taken: `exact` (autograd through `cos(m1 t + m2) - m3`)
    /// or `straight_through` (the margin changes the target logit's value only; its gradient
    /// is the plain cosine's), as arcface_torch's `CombinedMarginLoss` applies ArcFace's
    /// margin, under `torch.no_grad()` in place (its CosFace branch is exact either way).
    #[serde(default)]
    pub margin_gradient: MarginGradient,
}

/// `[loss] margin_gradient` of the combined margin.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MarginGradient {
    #[default]
    Exact,
    StraightThrough,
}

fn default_scale() -> f64 {
    64.0
}
fn one() -> f64 {
    1.0
}

impl Plug for CombinedMarginConfig {
    const NAME: &'static str = "combined_margin";

    fn check(&self) -> std::result::Result<(), String> {
        check_scale(self.scale)?;
        if !(self.m1 >= 1.0 && self.m1.is_finite()) {
            return Err(format!("loss.m1 must be >= 1, got {}", self.m1));
        }
        if !(0.0..std::f64::consts::PI).contains(&self.m2) {
            return Err(format!("loss.m2 must be in [0, pi) radians, got {}", self.m2));
        }
        if !(0.0..1.0).contains(&self.m3) {
            return Err(format!("loss.m3 must be in [0, 1), got {}", self.m3));
        }
        Ok(())
    }
}

impl LossSpec for CombinedMarginConfig {
    /// The class weights under `p / "head" / "fc"` (`weight: [classes, dim]`, no bias).
    fn build(&self, p: &nn::Path, feature_dim: i64, num_classes: i64) -> Result<Box<dyn Loss>> {
        let head = CosineClassifier::new(&(p / "head"), feature_dim, num_classes);
        Ok(Box::new(CombinedMargin { head, config: self.clone() }))
    }

    fn shard_head(&self, p: &nn::Path, feature_dim: i64, shard: &ClassShard) -> Result<Option<Box<dyn ShardHead>>> {
        let config = self.clone();
        let target: Margin = Arc::new(move |c| config.target(c));
        Ok(Some(Box::new(CosineShard::new(&(p / "head" / "fc"), feature_dim, shard, self.scale, target, "combined_margin_loss")?)))
    }
}

impl CombinedMarginConfig {
    /// `cos(m1 t + m2) - m3` of the target cosines `c` (with `straight_through`, that value
    /// with the gradient of `c`).
    fn target(&self, c: &Tensor) -> Result<Tensor> {
        let margin = open_interval(c)?.f_acos()?.f_mul_scalar(self.m1)?.f_add_scalar(self.m2)?.f_cos()?.f_sub_scalar(self.m3)?;
        match self.margin_gradient {
            MarginGradient::Exact => Ok(margin),
            MarginGradient::StraightThrough => Ok(c.f_add(&margin.f_sub(c)?.f_detach()?)?),
        }
    }
}

/// The normalised classifier and the three margins.
#[derive(Debug)]
pub struct CombinedMargin {
    head: CosineClassifier,
    config: CombinedMarginConfig,
}

impl Loss for CombinedMargin {
    fn forward(&self, features: &Tensor, labels: &Tensor) -> Result<LossOutput> {
        let config = &self.config;
        let (loss, logits) = self.head.margin_softmax(features, labels, config.scale, |c| config.target(c))?;
        LossOutput::from_logits(loss, &logits)
    }

    fn logits(&self, features: &Tensor) -> Result<Tensor> {
        self.head.scaled_logits(features, self.config.scale)
    }

    fn terms(&self) -> Vec<Term> {
        vec![Term::unit("combined_margin_loss")]
    }
}
