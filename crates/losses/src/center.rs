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
//! **Three center updates** (`loss.update`), so that the results of the public implementations
//! can be reproduced; `docs/center-loss-updates.md` compares them:
//! - `"paper"` (the default): Eq. 4 as written, at a fixed alpha, no momentum, no decay.
//! - `"caffe"`: caffe-face's `center_loss_layer.cpp`. The layer's backward stores Eq. 4's `dc_j`
//!   as the center table's gradient (not scaled by `loss_weight`) and caffe's SGD solver moves the
//!   table like any weight: `v = momentum v + lr_t lr_mult (dc + decay_mult wd c)`, `c -= v`, on
//!   every row (momentum and decay move the centers of absent classes too). Its alpha is the
//!   current learning rate times `lr_mult` (1): 0.01 (MNIST) or 0.1 (faces) at the start, decaying
//!   with the schedule, with the solver's momentum on top; its face prototxt sets `decay_mult: 2`.
//! - `"sgd"`: the pytorch-center-loss way (KaiyangZhou/pytorch-center-loss): the centers are a
//!   parameter of their own optimiser, plain SGD at a fixed rate, and their autograd gradient is
//!   divided by lambda before the step, so `c_j -= alpha * dL_C/dc_j = alpha * sum_i [y_i = j]
//!   (c_j - x_i) / M`: no `1 / (1 + n_j)`, so a class's center moves in proportion to its share of
//!   the batch. (That implementation's `L_C` has no 1/2: its `weight_cent` and `lr_cent` are half
//!   facerec's lambda and alpha.)

use serde::{Deserialize, Serialize};
use tch::{nn, Kind, Tensor};

use facerec_core::plugin::Plug;

use crate::error::{LossError, Result};
use crate::loss::{Loss, LossConfig, LossOutput, LossSpec, OneProcess, Ranks, SolverStep, Term};
use crate::margin::unit_rows;
use crate::sharded::{ClassShard, Sampling, ShardCenters, ShardedLoss};
use crate::softmax::{check_labels, SoftmaxConfig};

/// The settings of the center term itself with the paper's update (Eq. 2 to 4).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CenterLossConfig {
    /// Weight of L_C in `L_S + lambda * L_C` (the paper's face model: 0.003). 0 = softmax only.
    pub lambda: f64,
    /// Center learning rate of Eq. 4, in [0, 1] (the paper: 0.5); fixed for the whole run.
    pub alpha: f64,
}

impl Default for CenterLossConfig {
    fn default() -> Self {
        CenterLossConfig { lambda: 0.003, alpha: 0.5 }
    }
}

impl CenterLossConfig {
    pub fn validate(&self) -> Result<()> {
        check_lambda(self.lambda).and_then(|()| CenterRule::Paper { alpha: self.alpha }.check()).map_err(LossError::Config)
    }
}

fn check_lambda(lambda: f64) -> std::result::Result<(), String> {
    if !(lambda >= 0.0 && lambda.is_finite()) {
        return Err(format!("loss.lambda must be >= 0, got {lambda}"));
    }
    Ok(())
}

/// Which implementation's center update (`loss.update`); see the module docs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CenterUpdate {
    /// Eq. 4 at a fixed `alpha`.
    #[default]
    Paper,
    /// caffe-face: Eq. 4's `dc` as a gradient the solver applies (learning rate, momentum, decay).
    Caffe,
    /// pytorch-center-loss: plain SGD on the centers at rate `alpha` with `dL_C/dc`.
    Sgd,
}

/// A center update with its numbers, as [`CenterLoss`] applies it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum CenterRule {
    /// `c_j -= alpha * dc_j` (Eq. 4).
    Paper { alpha: f64 },
    /// `v = momentum v + lr_t lr_mult (dc + decay_mult wd c)`, `c -= v` on every row, with the
    /// solver's `lr_t`, momentum and weight decay (caffe's SGD solver on caffe-face's gradient).
    Caffe { lr_mult: f64, decay_mult: f64 },
    /// `c_j -= lr * sum_i [y_i = j] (c_j - x_i) / M` (SGD on `dL_C/dc`).
    Sgd { lr: f64 },
}

impl CenterRule {
    fn check(&self) -> std::result::Result<(), String> {
        let non_negative = |key: &str, v: f64| if v >= 0.0 && v.is_finite() { Ok(()) } else { Err(format!("{key} must be >= 0, got {v}")) };
        match *self {
            CenterRule::Paper { alpha } if !(0.0..=1.0).contains(&alpha) => Err(format!("loss.alpha must be in [0, 1], got {alpha}")),
            CenterRule::Paper { .. } => Ok(()),
            CenterRule::Sgd { lr } => non_negative("loss.alpha (the centers' SGD learning rate)", lr),
            CenterRule::Caffe { lr_mult, decay_mult } => non_negative("loss.lr_mult", lr_mult).and_then(|()| non_negative("loss.decay_mult", decay_mult)),
        }
    }
}

/// `[loss] name = "center"` (the default): a classification loss plus center loss,
/// `L_S + lambda L_C` (Wen et al. Eq. 5). The classification loss is `head` (softmax unless
/// set: `head = { name = "arcface" }` puts the center term beside a margin loss).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JointCenterConfig {
    /// Weight of L_C (the paper's face model: 0.003). 0 = the head alone.
    pub lambda: f64,
    /// `update = "paper"`: the center learning rate of Eq. 4, in [0, 1] (the paper: 0.5);
    /// `"sgd"`: the centers' SGD learning rate. Not used by `"caffe"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alpha: Option<f64>,
    /// How the centers move: `"paper"` (the default), `"caffe"` or `"sgd"`.
    #[serde(default)]
    pub update: CenterUpdate,
    /// `update = "caffe"`: the center table's learning rate over the solver's (caffe's
    /// `lr_mult`; default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lr_mult: Option<f64>,
    /// `update = "caffe"`: the center table's weight decay over the solver's (caffe's
    /// `decay_mult`; default 0, caffe-face's face prototxt: 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decay_mult: Option<f64>,
    /// The classification loss: any loss but `center`.
    #[serde(default = "softmax_head")]
    pub head: LossConfig,
    /// The center term (and its update) on L2-normalised features, the ones a margin loss sees,
    /// instead of the backbone's features as they are.
    #[serde(default)]
    pub normalized: bool,
}

fn softmax_head() -> LossConfig {
    LossConfig::new(SoftmaxConfig {})
}

impl JointCenterConfig {
    /// The paper's loss: softmax + center loss with Eq. 4.
    pub fn paper(lambda: f64, alpha: f64) -> Self {
        JointCenterConfig {
            lambda,
            alpha: Some(alpha),
            update: CenterUpdate::Paper,
            lr_mult: None,
            decay_mult: None,
            head: softmax_head(),
            normalized: false,
        }
    }

    /// The update with its numbers, or what is missing or out of place.
    pub fn rule(&self) -> std::result::Result<CenterRule, String> {
        let update = match self.update {
            CenterUpdate::Paper => "\"paper\"",
            CenterUpdate::Caffe => "\"caffe\"",
            CenterUpdate::Sgd => "\"sgd\"",
        };
        let solver_keys = if self.lr_mult.is_some() { Some("lr_mult") } else { self.decay_mult.map(|_| "decay_mult") };
        let rule = match (self.update, self.alpha, solver_keys) {
            (CenterUpdate::Caffe, Some(_), _) => {
                return Err("loss.alpha has no meaning with update = \"caffe\": the centers move at the solver's learning rate times loss.lr_mult".into())
            }
            (CenterUpdate::Caffe, None, _) => CenterRule::Caffe { lr_mult: self.lr_mult.unwrap_or(1.0), decay_mult: self.decay_mult.unwrap_or(0.0) },
            (_, _, Some(key)) => return Err(format!("loss.{key} is a setting of update = \"caffe\", not of update = {update}")),
            (_, None, _) => return Err(format!("loss.alpha is required with update = {update}")),
            (CenterUpdate::Paper, Some(alpha), None) => CenterRule::Paper { alpha },
            (CenterUpdate::Sgd, Some(lr), None) => CenterRule::Sgd { lr },
        };
        rule.check()?;
        Ok(rule)
    }
}

impl Plug for JointCenterConfig {
    const NAME: &'static str = "center";

    fn check(&self) -> std::result::Result<(), String> {
        check_lambda(self.lambda)?;
        self.rule()?;
        if self.head.name() == Self::NAME {
            return Err("loss.head: the head of center loss is a classification loss, not center loss again".into());
        }
        Ok(())
    }
}

impl LossSpec for JointCenterConfig {
    /// The head's variables under `p` (its classifier under `p / "head"`); the center table under
    /// `p / "center"` (with its momentum for `update = "caffe"`), unless `lambda` is 0 (the head
    /// alone, with the center term logged as 0).
    fn build(&self, p: &nn::Path, feature_dim: i64, num_classes: i64) -> Result<Box<dyn Loss>> {
        let head = self.head.build(p, feature_dim, num_classes)?;
        let rule = self.rule().map_err(LossError::Config)?;
        let center =
            if self.lambda > 0.0 { Some(CenterLoss::with_rule(&(p / "center"), num_classes, feature_dim, self.lambda, rule)?) } else { None };
        Ok(Box::new(JointCenterLoss { head, center, normalized: self.normalized }))
    }

    /// The head's classifier over the shard's classes and the shard's rows of the center
    /// table, as [`ShardedLoss`].
    fn build_sharded(&self, p: &nn::Path, feature_dim: i64, shard: &ClassShard, sampling: Option<Sampling>) -> Result<Option<Box<dyn Loss>>> {
        let head = self.head.shard_head(p, feature_dim, shard)?;
        let rule = self.rule().map_err(LossError::Config)?;
        let center = if self.lambda > 0.0 {
            let table = CenterLoss::with_rule(&(p / "center"), shard.len(), feature_dim, self.lambda, rule)?;
            Some(ShardCenters { table, normalized: self.normalized })
        } else {
            None
        };
        Ok(Some(Box::new(ShardedLoss::new(head, Some(center), *shard, sampling)?)))
    }
}

/// `L = L_S + lambda * L_C` (Wen et al. Eq. 5): the head's loss and, with `lambda > 0`, the
/// center table with its update after each step.
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
        self.forward_ranks(features, labels, &OneProcess)
    }

    fn forward_ranks(&self, features: &Tensor, labels: &Tensor, ranks: &dyn Ranks) -> Result<LossOutput> {
        let mut out = self.head.forward_ranks(features, labels, ranks)?;
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

    fn terms(&self) -> Vec<Term> {
        let mut terms = self.head.terms();
        terms.push(Term::weighted("center_loss", self.center.as_ref().map_or(0.0, CenterLoss::lambda)));
        terms
    }

    /// The head's own update, then the center update on the global batch: under data
    /// parallelism every rank applies the same step, and rank 0's result for the rows the batch
    /// touched (the only ones a non-deterministic `index_add_` can make differ) is shared so
    /// that the tables stay identical.
    fn after_step(&self, features: &Tensor, labels: &Tensor, solver: SolverStep, ranks: &dyn Ranks) -> Result<()> {
        self.head.after_step(features, labels, solver, ranks)?;
        let Some(center) = &self.center else { return Ok(()) };
        let features = &self.center_features(features)?;
        if ranks.world() == 1 {
            return center.update(features, labels, solver);
        }
        let (all_features, all_labels) = ranks.gather_batch(features, labels)?;
        center.update(&all_features, &all_labels, solver)?;
        let (touched, _, _) = all_labels.f_internal_unique2(true, false, false)?;
        for table in center.state() {
            ranks.broadcast_rows(table, &touched)?;
        }
        Ok(())
    }

    fn synced_state(&self) -> Vec<&Tensor> {
        self.center.iter().flat_map(CenterLoss::state).chain(self.head.synced_state()).collect()
    }

    fn centers(&self) -> Option<&Tensor> {
        self.center.as_ref().map(CenterLoss::centers)
    }
}

/// The center table, lambda and the update rule (with its momentum for caffe-face's).
#[derive(Debug)]
pub struct CenterLoss {
    centers: Tensor,
    lambda: f64,
    rule: CenterRule,
    /// caffe's momentum history of the table (`update = "caffe"` only).
    momentum: Option<Tensor>,
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
    /// saved with the model but never given to the optimiser, moved by Eq. 4. (caffe-face fills
    /// its table with the `xavier` filler instead.)
    pub fn new(p: &nn::Path, num_classes: i64, feature_dim: i64, config: CenterLossConfig) -> Result<Self> {
        config.validate()?;
        CenterLoss::with_rule(p, num_classes, feature_dim, config.lambda, CenterRule::Paper { alpha: config.alpha })
    }

    /// The table as [`CenterLoss::new`] makes it, moved by `rule`; caffe-face's rule adds its
    /// momentum history, `momentum` under `p` (saved in checkpoints, for an exact resume).
    pub fn with_rule(p: &nn::Path, num_classes: i64, feature_dim: i64, lambda: f64, rule: CenterRule) -> Result<Self> {
        check_lambda(lambda).and_then(|()| rule.check()).map_err(LossError::Config)?;
        let centers = p.f_zeros_no_train("centers", &[num_classes, feature_dim])?;
        let momentum = match rule {
            CenterRule::Caffe { .. } => Some(p.f_zeros_no_train("momentum", &[num_classes, feature_dim])?),
            _ => None,
        };
        Ok(CenterLoss { centers, lambda, rule, momentum })
    }

    pub fn centers(&self) -> &Tensor {
        &self.centers
    }

    pub fn lambda(&self) -> f64 {
        self.lambda
    }

    pub fn rule(&self) -> CenterRule {
        self.rule
    }

    /// The tables the update changes: the centers, and caffe's momentum history.
    pub fn state(&self) -> impl Iterator<Item = &Tensor> {
        std::iter::once(&self.centers).chain(&self.momentum)
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
        // (x - x.detach()) is zero but carries the identity gradient, so the product's
        // gradient with respect to x is exactly lambda * grad.
        let surrogate = features.f_sub(&features.f_detach()?)?.f_mul(&grad)?.f_sum(grad.kind())?;
        let objective = surrogate.f_add(&loss)?.f_mul_scalar(self.lambda)?;
        Ok(CenterLossOutput { loss, objective })
    }

    /// The paper's Eq. 4 step on the centers of the classes present in the batch, whatever the
    /// table's rule.
    pub fn update_centers(&self, features: &Tensor, labels: &Tensor) -> Result<()> {
        let alpha = match self.rule {
            CenterRule::Paper { alpha } => alpha,
            other => return Err(LossError::Config(format!("update_centers is Eq. 4; this table moves by {other:?}: use update"))),
        };
        self.update(features, labels, SolverStep { lr: alpha, momentum: 0.0, weight_decay: 0.0 })
    }

    /// One step of the table's rule from the batch's (detached) features; `solver` is the
    /// model's optimiser at this step (used by caffe-face's rule only).
    ///
    /// The work is O(batch x dim) for the paper's and the SGD rule whatever the number of
    /// classes: the batch's labels are made unique and the sums gathered with `index_add_`;
    /// caffe-face's rule touches every row (momentum and decay), as caffe does.
    pub fn update(&self, features: &Tensor, labels: &Tensor, solver: SolverStep) -> Result<()> {
        self.update_of_batch(features, labels, solver, features.size()[0])
    }

    /// [`CenterLoss::update`] from some of the samples of a batch of `batch` samples (those of
    /// the classes a class-sharded table holds): the SGD rule divides by the whole batch.
    pub fn update_of_batch(&self, features: &Tensor, labels: &Tensor, solver: SolverStep, batch: i64) -> Result<()> {
        tch::no_grad(|| -> Result<()> {
            let d = self.offsets(features, labels)?; //                 [batch, dim] = x_i - c_{y_i}
            let (classes, inverse, counts) = labels.f_internal_unique2(true, true, true)?;
            let dim = d.size()[1];
            let sums = Tensor::f_zeros([classes.size()[0], dim], (d.kind(), d.device()))?
                .f_index_add_(0, &inverse, &d)?; //                      [classes, dim] = sum_i (x_i - c_j)
            let per_class = || -> Result<Tensor> { Ok(counts.f_to_kind(d.kind())?.f_add_scalar(1.0)?.f_unsqueeze(1)?) };
            let mut centers = self.centers.shallow_clone();
            match (self.rule, &self.momentum) {
                // dc_j = sum_i (c_j - x_i) / (1 + n_j) = -sums / (1 + n_j); c_j -= alpha dc_j.
                (CenterRule::Paper { alpha }, _) => {
                    let _ = centers.f_index_add_(0, &classes, &sums.f_div(&per_class()?)?.f_mul_scalar(alpha)?)?;
                }
                // dL_C/dc_j = sum_i (c_j - x_i) / M = -sums / M; c_j -= lr dL_C/dc_j.
                (CenterRule::Sgd { lr }, _) => {
                    let m = batch.max(1) as f64;
                    let _ = centers.f_index_add_(0, &classes, &sums.f_mul_scalar(lr / m)?)?;
                }
                (CenterRule::Caffe { lr_mult, decay_mult }, Some(history)) => {
                    // caffe: diff = dc (+ decay), history = momentum history + rate diff, c -= history.
                    let dc = sums.f_div(&per_class()?)?.f_neg()?;
                    let diff = self.centers.f_mul_scalar(solver.weight_decay * decay_mult)?.f_index_add_(0, &classes, &dc)?;
                    let mut history = history.shallow_clone();
                    let _ = history.f_mul_scalar_(solver.momentum)?.f_add_(&diff.f_mul_scalar(solver.lr * lr_mult)?)?;
                    let _ = centers.f_sub_(&history)?;
                }
                (CenterRule::Caffe { .. }, None) => return Err(LossError::Config("caffe's center update needs its momentum table".into())),
            }
            Ok(())
        })
    }
}
