//! Center loss, Wen, Zhang, Li, Qiao, "A Discriminative Feature Learning Approach for Deep Face
//! Recognition", ECCV 2016, Sec. 3.2; reference code: caffe-face `center_loss_layer.cpp`.
//!
//! **Loss** (Eq. 2), normalised by the batch size M as caffe-face does and as the softmax
//! term is: `L_C = 1/(2M) * sum_i ||x_i - c_{y_i}||^2`.
//! With the batch-mean softmax loss this keeps the paper's balance `L = L_S + lambda * L_C`
//! (the paper writes both terms as sums over the batch; dividing both by M changes nothing
//! but the learning rate's scale).
//!
//! **Backward** (Eq. 3): the features receive `lambda * (x_i - c_{y_i}) / M`; the centers receive
//! no gradient. [`CenterLoss::forward`] builds this gradient explicitly rather than
//! differentiating through the centers: the table is a non-trainable variable that autograd
//! never sees.
//!
//! **Center update** (Eq. 4), once per iteration, from the batch's (detached) features:
//! `dc_j = sum_i [y_i = j] (c_j - x_i) / (1 + n_j)`, `c_j <- c_j - alpha * dc_j`, with n_j the
//! number of samples of class j in the batch. Classes absent from the batch do not move. The
//! work is O(batch x dim) whatever the number of classes: the batch's labels are made unique
//! and the sums gathered with `index_add_`.
//!
//! **alpha and caffe-face.** caffe-face's layer has no alpha: its backward stores `dc_j` as the
//! gradient of the center table (not scaled by `loss_weight`) and the solver applies it like
//! any weight's, `v = 0.9 v + lr_t * lr_mult * (dc + decay_mult * wd * c)`, `c -= v`. Its alpha
//! is the current learning rate times the layer's `lr_mult` (1): 0.01 (MNIST) or 0.1 (faces) at
//! the start, decaying with the schedule, with momentum on top (which also moves centers of
//! classes absent from the batch, as does the face prototxt's `decay_mult: 2`). Here alpha is
//! fixed, with no momentum and no decay: the paper's Eq. 4 as written; setting it to
//! `lr * lr_mult` reproduces caffe-face's first step only.

use serde::{Deserialize, Serialize};
use tch::{nn, Kind, Tensor};

use facerec_model::Plug;

use crate::error::{LossError, Result};
use crate::loss::{Loss, LossConfig, LossOutput, LossSpec, Ranks};
use crate::margin::unit_rows;
use crate::softmax::{check_labels, SoftmaxConfig};

/// The settings of the center term itself (Eq. 2 to 4).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CenterLossConfig {
    /// Weight of L_C in `L_S + lambda * L_C` (the paper's face model: 0.003). 0 = softmax only.
    pub lambda: f64,
    /// Center learning rate of Eq. 4, in [0, 1] (the paper: 0.5); fixed for the whole run
    /// (caffe-face has none: see the module docs).
    pub alpha: f64,
}

impl Default for CenterLossConfig {
    fn default() -> Self {
        CenterLossConfig { lambda: 0.003, alpha: 0.5 }
    }
}

impl CenterLossConfig {
    pub fn validate(&self) -> Result<()> {
        check_center(self.lambda, self.alpha).map_err(LossError::Config)
    }
}

fn check_center(lambda: f64, alpha: f64) -> std::result::Result<(), String> {
    if !(lambda >= 0.0 && lambda.is_finite()) {
        return Err(format!("loss.lambda must be >= 0, got {lambda}"));
    }
    if !(0.0..=1.0).contains(&alpha) {
        return Err(format!("loss.alpha must be in [0, 1], got {alpha}"));
    }
    Ok(())
}

/// `[loss] name = "center"` (the default): a classification loss plus center loss,
/// `L_S + lambda L_C` (Wen et al. Eq. 5). The classification loss is `head` (softmax unless
/// set: `head = { name = "arcface" }` puts the center term beside a margin loss).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JointCenterConfig {
    /// Weight of L_C (the paper's face model: 0.003). 0 = the head alone.
    pub lambda: f64,
    /// Center learning rate of Eq. 4, in [0, 1] (the paper: 0.5).
    pub alpha: f64,
    /// The classification loss: any loss but `center`.
    #[serde(default = "softmax_head")]
    pub head: LossConfig,
    /// The center term (and Eq. 4) on L2-normalised features, the ones a margin loss sees,
    /// instead of the backbone's features as they are.
    #[serde(default)]
    pub normalized: bool,
}

fn softmax_head() -> LossConfig {
    LossConfig::new(SoftmaxConfig {})
}

impl Plug for JointCenterConfig {
    const NAME: &'static str = "center";

    fn check(&self) -> std::result::Result<(), String> {
        check_center(self.lambda, self.alpha)?;
        if self.head.name() == Self::NAME {
            return Err("loss.head: the head of center loss is a classification loss, not center loss again".into());
        }
        Ok(())
    }
}

impl LossSpec for JointCenterConfig {
    /// The head's variables under `p` (its classifier under `p / "head"`); the center table under
    /// `p / "center"`, unless `lambda` is 0 (the head alone, with the center term logged as 0).
    fn build(&self, p: &nn::Path, feature_dim: i64, num_classes: i64) -> Result<Box<dyn Loss>> {
        let head = self.head.build(p, feature_dim, num_classes)?;
        let settings = CenterLossConfig { lambda: self.lambda, alpha: self.alpha };
        let center = if self.lambda > 0.0 { Some(CenterLoss::new(&(p / "center"), num_classes, feature_dim, settings)?) } else { None };
        Ok(Box::new(JointCenterLoss { head, center, normalized: self.normalized }))
    }
}

/// `L = L_S + lambda * L_C` (Wen et al. Eq. 5): the head's loss and, with `lambda > 0`, the
/// center table with its Eq. 4 update after each step.
#[derive(Debug)]
pub struct JointCenterLoss {
    head: Box<dyn Loss>,
    center: Option<CenterLoss>,
    /// The center term on L2-normalised features.
    normalized: bool,
}

impl JointCenterLoss {
    /// The features the center term sees.
    fn center_features(&self, features: &Tensor) -> Result<Tensor> {
        if self.normalized {
            unit_rows(features)
        } else {
            Ok(features.shallow_clone())
        }
    }
}

impl Loss for JointCenterLoss {
    fn forward(&self, features: &Tensor, labels: &Tensor) -> Result<LossOutput> {
        let mut out = self.head.forward(features, labels)?;
        let center_loss = match &self.center {
            Some(center) => {
                let c = center.forward(&self.center_features(features)?, labels)?;
                out.objective = out.objective.f_add(&c.objective)?;
                c.loss
            }
            None => Tensor::f_zeros([], (Kind::Float, features.device()))?,
        };
        out.terms.push(center_loss);
        Ok(out)
    }

    fn logits(&self, features: &Tensor) -> Result<Tensor> {
        self.head.logits(features)
    }

    fn term_names(&self) -> Vec<&'static str> {
        let mut names = self.head.term_names();
        names.push("center_loss");
        names
    }

    /// The head's own update, then Eq. 4 on the global batch: under data parallelism every rank
    /// applies the same step to the same rows, and rank 0's result is shared so that the tables
    /// stay identical.
    fn after_step(&self, features: &Tensor, labels: &Tensor, ranks: &dyn Ranks) -> Result<()> {
        self.head.after_step(features, labels, ranks)?;
        let Some(center) = &self.center else { return Ok(()) };
        let features = &self.center_features(features)?;
        if ranks.world() == 1 {
            return center.update_centers(features, labels);
        }
        let (all_features, all_labels) = ranks.gather_batch(features, labels)?;
        center.update_centers(&all_features, &all_labels)?;
        let (touched, _, _) = all_labels.f_internal_unique2(true, false, false)?;
        ranks.broadcast_rows(center.centers(), &touched)
    }

    fn synced_state(&self) -> Vec<&Tensor> {
        self.center.iter().map(CenterLoss::centers).chain(self.head.synced_state()).collect()
    }

    fn centers(&self) -> Option<&Tensor> {
        self.center.as_ref().map(CenterLoss::centers)
    }
}

/// The center table and the two hyper-parameters.
#[derive(Debug)]
pub struct CenterLoss {
    centers: Tensor,
    config: CenterLossConfig,
}

/// One forward pass of [`CenterLoss`].
#[derive(Debug)]
pub struct CenterLossOutput {
    /// `L_C`, a detached scalar, for logging.
    pub loss: Tensor,
    /// A scalar to add to the objective: its value is `lambda * L_C`, its gradient with respect
    /// to the features is `lambda * (x_i - c_{y_i}) / M`, and it has none for the centers.
    pub objective: Tensor,
}

impl CenterLoss {
    /// A zero-initialised `[num_classes, feature_dim]` center table named `centers` under `p`,
    /// saved with the model but never given to the optimiser. (caffe-face fills its table
    /// with the `xavier` filler instead.)
    pub fn new(p: &nn::Path, num_classes: i64, feature_dim: i64, config: CenterLossConfig) -> Result<Self> {
        config.validate()?;
        let centers = p.f_zeros_no_train("centers", &[num_classes, feature_dim])?;
        Ok(CenterLoss { centers, config })
    }

    pub fn centers(&self) -> &Tensor {
        &self.centers
    }

    pub fn config(&self) -> CenterLossConfig {
        self.config
    }

    /// `(x_i - c_{y_i})` for the batch, detached from the graph: `[batch, dim]`.
    fn offsets(&self, features: &Tensor, labels: &Tensor) -> Result<Tensor> {
        let classes = self.centers.size()[0];
        check_labels(labels, features, classes)?;
        let dim = self.centers.size()[1];
        if features.size()[1] != dim {
            return Err(LossError::Shape {
                what: "features",
                expected: format!("[batch, {dim}] (the center table's width)"),
                got: features.size(),
            });
        }
        let c = self.centers.f_index_select(0, labels)?; // [batch, dim]
        Ok(features.f_detach()?.f_to_kind(c.kind())?.f_sub(&c)?)
    }

    /// `L_C = 1/(2M) sum_i ||x_i - c_{y_i}||^2` and its gradient `(x_i - c_{y_i}) / M`.
    pub fn value_and_grad(&self, features: &Tensor, labels: &Tensor) -> Result<(Tensor, Tensor)> {
        let m = features.size()[0].max(1) as f64;
        let d = self.offsets(features, labels)?;
        let value = d.f_square()?.f_sum(d.kind())?.f_div_scalar(2.0 * m)?;
        let grad = d.f_div_scalar(m)?;
        Ok((value, grad))
    }

    /// Loss value and the objective term described in [`CenterLossOutput`].
    pub fn forward(&self, features: &Tensor, labels: &Tensor) -> Result<CenterLossOutput> {
        let (loss, grad) = self.value_and_grad(features, labels)?;
        let lambda = self.config.lambda;
        // (x - x.detach()) is zero but carries the identity gradient, so the product's
        // gradient with respect to x is exactly lambda * grad.
        let surrogate = features.f_sub(&features.f_detach()?)?.f_mul(&grad)?.f_sum(grad.kind())?;
        let objective = surrogate.f_add(&loss)?.f_mul_scalar(lambda)?;
        Ok(CenterLossOutput { loss, objective })
    }

    /// The paper's Eq. 4 step on the centers of the classes present in the batch.
    pub fn update_centers(&self, features: &Tensor, labels: &Tensor) -> Result<()> {
        tch::no_grad(|| -> Result<()> {
            let d = self.offsets(features, labels)?; //                 [batch, dim] = x_i - c_{y_i}
            let (classes, inverse, counts) = labels.f_internal_unique2(true, true, true)?;
            let dim = d.size()[1];
            let sums = Tensor::f_zeros([classes.size()[0], dim], (d.kind(), d.device()))?
                .f_index_add_(0, &inverse, &d)?; //                      [classes, dim] = sum_i (x_i - c_j)
            let denom = counts.f_to_kind(d.kind())?.f_add_scalar(1.0)?.f_unsqueeze(1)?;
            // c_j - alpha * dc_j with dc_j = sum_i (c_j - x_i) / (1 + n_j) = -sums / (1 + n_j)
            let step = sums.f_div(&denom)?.f_mul_scalar(self.config.alpha)?;
            let mut centers = self.centers.shallow_clone();
            let _ = centers.f_index_add_(0, &classes, &step)?;
            Ok(())
        })
    }
}
