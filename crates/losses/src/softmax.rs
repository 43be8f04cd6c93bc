//! The softmax loss: a fully connected classifier on the features followed by the
//! cross-entropy with the identity labels, averaged over the batch (caffe's
//! `SoftmaxWithLoss`, normalised by the batch size). In Wen et al. (ECCV 2016) Eq. 2 this is
//! L_S, the term that keeps features separable; the classifier is caffe-face's `fc6`/`ip2`,
//! always with a bias here (caffe-face's MNIST `ip2` has none).

use serde::{Deserialize, Serialize};
use tch::{nn, Kind, Tensor};

use facerec_model::layers::Linear;
use facerec_core::plugin::Plug;

use crate::error::{LossError, Result};
use crate::loss::{Loss, LossOutput, LossSpec, Term};
use crate::sharded::{ClassShard, LinearShard, ShardHead};

/// `[loss] name = "softmax"`: the softmax loss alone (no settings).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SoftmaxConfig {}

impl Plug for SoftmaxConfig {
    const NAME: &'static str = "softmax";
}

impl LossSpec for SoftmaxConfig {
    fn build(&self, p: &nn::Path, feature_dim: i64, num_classes: i64) -> Result<Box<dyn Loss>> {
        Ok(Box::new(SoftmaxLoss::new(&(p / "head"), feature_dim, num_classes)))
    }

    /// The classifier's rows of the shard's classes, `head.fc.{weight,bias}` as unsharded.
    fn shard_head(&self, p: &nn::Path, feature_dim: i64, shard: &ClassShard) -> Result<Option<Box<dyn ShardHead>>> {
        Ok(Some(Box::new(LinearShard::new(&(p / "head" / "fc"), feature_dim, shard, true, "softmax_loss")?)))
    }
}

/// Classifier head plus cross-entropy.
#[derive(Debug)]
pub struct SoftmaxLoss {
    pub fc: Linear,
    num_classes: i64,
}

/// What one forward pass of [`SoftmaxLoss`] gives.
#[derive(Debug)]
pub struct SoftmaxOutput {
    /// Mean cross-entropy over the batch, part of the autograd graph.
    pub loss: Tensor,
    /// `[batch, num_classes]`.
    pub logits: Tensor,
}

impl SoftmaxLoss {
    /// A classifier `feature_dim -> num_classes`, its variables under `p` (`weight`, `bias`).
    pub fn new(p: &nn::Path, feature_dim: i64, num_classes: i64) -> Self {
        SoftmaxLoss { fc: Linear::new(p / "fc", feature_dim, num_classes, true), num_classes }
    }

    pub fn num_classes(&self) -> i64 {
        self.num_classes
    }

    /// `[batch, num_classes]` logits of `[batch, feature_dim]` features.
    pub fn logits(&self, features: &Tensor) -> Result<Tensor> {
        self.fc.forward(features).map_err(|e| match e {
            facerec_model::ModelError::Torch(t) => LossError::Torch(t),
            other => LossError::Config(other.to_string()),
        })
    }

    pub fn forward(&self, features: &Tensor, labels: &Tensor) -> Result<SoftmaxOutput> {
        check_labels(labels, features, self.num_classes)?;
        let logits = self.logits(features)?; // [batch, num_classes]
        let loss = logits.f_cross_entropy_loss::<Tensor>(labels, None, tch::Reduction::Mean, -100, 0.0)?;
        Ok(SoftmaxOutput { loss, logits })
    }
}

impl Loss for SoftmaxLoss {
    fn forward(&self, features: &Tensor, labels: &Tensor) -> Result<LossOutput> {
        let out = SoftmaxLoss::forward(self, features, labels)?;
        LossOutput::from_logits(out.loss, &out.logits)
    }

    fn logits(&self, features: &Tensor) -> Result<Tensor> {
        SoftmaxLoss::logits(self, features)
    }

    fn terms(&self) -> Vec<Term> {
        vec![Term::unit("softmax_loss")]
    }
}

/// Labels must be a 1-D int64 tensor as long as the batch, each in `0..classes` (the first
/// check of a loss's `forward`, in facerec's losses and in a crate of your own).
pub fn check_labels(labels: &Tensor, features: &Tensor, classes: i64) -> Result<()> {
    let fs = features.size();
    if fs.len() != 2 {
        return Err(LossError::Shape { what: "features", expected: "[batch, dim]".into(), got: fs });
    }
    let ls = labels.size();
    if ls != [fs[0]] || labels.kind() != Kind::Int64 {
        return Err(LossError::Shape {
            what: "labels",
            expected: format!("int64 [{}], one per feature", fs[0]),
            got: ls,
        });
    }
    if fs[0] > 0 {
        let (lo, hi) = (i64::try_from(labels.f_min()?)?, i64::try_from(labels.f_max()?)?);
        for label in [lo, hi] {
            if label < 0 || label >= classes {
                return Err(LossError::Label { label, classes });
            }
        }
    }
    Ok(())
}
