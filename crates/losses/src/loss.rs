//! The [`Loss`] trait the trainer holds, and [`LossConfig`]: the `[loss]` table that picks a
//! loss by name (`name = "center"`, the default, or `"softmax"`).
//!
//! Adding a loss takes one file (a settings struct implementing [`LossSpec`] and [`Plug`], and
//! a type implementing [`Loss`]) and its registration: one line in the registry below for
//! facerec's own, or [`register_loss`] from a user's crate; see `docs/adding-a-loss.md`.

use std::sync::{Arc, LazyLock};

use serde::{Deserialize, Serialize};
use tch::{nn, Tensor};

use facerec_core::plugin::{Choice, Registered, Registry};
use facerec_core::plugin::Plug;

use crate::arcface::ArcFaceConfig;
use crate::center::JointCenterConfig;
use crate::combined_margin::CombinedMarginConfig;
use crate::contrastive::ContrastiveConfig;
use crate::cosface::CosFaceConfig;
use crate::error::{LossError, Result};
use crate::sharded::{ClassShard, Sampling, ShardHead, ShardedLoss};
use crate::softmax::SoftmaxConfig;
use crate::sphereface::SphereFaceConfig;

/// A training objective on a backbone's features: the classifier and whatever the loss adds
/// (centers, margins). Its variables live under the `nn::Path` its [`LossSpec`] built it
/// under, so they are saved in checkpoints with the model.
pub trait Loss: std::fmt::Debug + Send {
    /// The objective to differentiate, the logits (for the training accuracy), and the value of
    /// each term of [`Loss::terms`], detached.
    fn forward(&self, features: &Tensor, labels: &Tensor) -> Result<LossOutput>;
    /// [`Loss::forward`] as one rank of a data-parallel run. A loss whose value couples the
    /// samples of a batch (contrastive pairs) gathers the global batch through `ranks`, so
    /// that 2 ranks of B/2 compute what one process of B does; the others need not override it.
    fn forward_ranks(&self, features: &Tensor, labels: &Tensor, _ranks: &dyn Ranks) -> Result<LossOutput> {
        self.forward(features, labels)
    }
    /// `[batch, classes]` logits of features, for classification accuracy.
    fn logits(&self, features: &Tensor) -> Result<Tensor>;
    /// The objective's terms, in the order of [`LossOutput::terms`]: the names they are logged
    /// under (`steps.jsonl`, TensorBoard, the log line, the curves of `training.png`) and their
    /// weights, so that the objective is `sum weight * term` (center loss: `softmax_loss` 1,
    /// `center_loss` lambda).
    fn terms(&self) -> Vec<Term>;
    /// After the backward pass, before the optimiser's step, with the step's detached
    /// features: updates that are not gradient steps of the model's optimiser (center loss's
    /// Eq. 4); `solver` is that optimiser at this step. Under data parallelism every rank calls
    /// it, and `ranks` gathers the global batch and shares the result.
    fn after_step(&self, _features: &Tensor, _labels: &Tensor, _solver: SolverStep, _ranks: &dyn Ranks) -> Result<()> {
        Ok(())
    }
    /// Non-trainable variables the loss itself keeps the same on every rank (in
    /// [`Loss::after_step`]). The trainer gives every rank rank 0's copy of the other
    /// non-trainable variables after each step.
    fn synced_state(&self) -> Vec<&Tensor> {
        Vec::new()
    }
    /// Class centers in feature space, where the loss has them (for plots).
    fn centers(&self) -> Option<&Tensor> {
        None
    }
    /// With `[parallel] shard_head`, the variables that hold one row per class of this rank's
    /// shard (classifier, centers):
    /// different on every rank, so neither averaged nor broadcast; checkpoints gather them.
    fn sharded_variables(&self) -> Vec<&Tensor> {
        Vec::new()
    }
}

/// One named term of a loss's objective and its weight in it: see [`Loss::terms`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Term {
    /// What it is logged as: a `steps.jsonl` column, e.g. `"center_loss"`.
    pub name: &'static str,
    /// Its factor in the objective (the value logged is the term before it).
    pub weight: f64,
}

impl Term {
    /// A term of weight 1 (a classification loss alone).
    pub fn unit(name: &'static str) -> Self {
        Term { name, weight: 1.0 }
    }

    /// A term of weight `weight` (center loss's lambda).
    pub fn weighted(name: &'static str, weight: f64) -> Self {
        Term { name, weight }
    }
}

/// One forward pass of a [`Loss`].
#[derive(Debug)]
pub struct LossOutput {
    /// The scalar to differentiate.
    pub objective: Tensor,
    /// `[batch]` int64: the class each sample is predicted to be (for the training accuracy).
    pub predictions: Tensor,
    /// Scalars in the order of [`Loss::terms`], detached, each before its weight.
    pub terms: Vec<Tensor>,
}

impl LossOutput {
    /// The output of a loss with one term, `loss` (also the objective), whose predictions are
    /// the arg-max of `logits` (`[batch, classes]`).
    pub fn from_logits(loss: Tensor, logits: &Tensor) -> Result<Self> {
        Ok(LossOutput { terms: vec![loss.f_detach()?], predictions: logits.f_argmax(-1, false)?, objective: loss })
    }
}

/// The model's optimiser at a step, for a loss's own updates that follow it (caffe-face's
/// center update moves the centers at the solver's learning rate, with its momentum and decay).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SolverStep {
    /// The learning rate of this step (after the schedule).
    pub lr: f64,
    pub momentum: f64,
    pub weight_decay: f64,
}

/// The ranks of a data-parallel run, as a loss sees them in [`Loss::after_step`].
pub trait Ranks {
    /// How many processes train together.
    fn world(&self) -> usize;
    /// This process's place among them, `0..world`.
    fn rank(&self) -> usize;
    /// The features and labels of every rank's share of the batch, concatenated in rank order.
    fn gather_batch(&self, features: &Tensor, labels: &Tensor) -> Result<(Tensor, Tensor)>;
    /// Gives every rank rank 0's values of `table`'s rows `rows`.
    fn broadcast_rows(&self, table: &Tensor, rows: &Tensor) -> Result<()>;
    /// Replaces `t` (contiguous) with the element-wise sum or maximum of every rank's `t`.
    fn all_reduce(&self, t: &Tensor, op: Reduce) -> Result<()>;
    /// The training step being computed (1 for the first), which seeds per-step randomness
    /// such as Partial FC's class sampling; 0 outside training.
    fn step(&self) -> usize;
}

/// How [`Ranks::all_reduce`] combines the ranks' tensors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reduce {
    Sum,
    Max,
}

/// Training in one process: the batch is the whole batch, and there is nothing to share.
#[derive(Debug, Clone, Copy)]
pub struct OneProcess;

impl Ranks for OneProcess {
    fn world(&self) -> usize {
        1
    }
    fn rank(&self) -> usize {
        0
    }
    fn gather_batch(&self, features: &Tensor, labels: &Tensor) -> Result<(Tensor, Tensor)> {
        Ok((features.shallow_clone(), labels.shallow_clone()))
    }
    fn broadcast_rows(&self, _table: &Tensor, _rows: &Tensor) -> Result<()> {
        Ok(())
    }
    fn all_reduce(&self, _t: &Tensor, _op: Reduce) -> Result<()> {
        Ok(())
    }
    fn step(&self) -> usize {
        0
    }
}

/// What a loss's settings know: how to build it.
pub trait LossSpec: std::fmt::Debug + Send + Sync {
    /// Creates the loss's variables under `p` (the classifier under `p / "head"`, by
    /// convention) for `feature_dim`-long features of `num_classes` classes.
    fn build(&self, p: &nn::Path, feature_dim: i64, num_classes: i64) -> Result<Box<dyn Loss>>;

    /// This loss's classifier over the classes of `shard` alone, with its variables named as
    /// [`LossSpec::build`] names them (one row per class of the shard), for class-sharded
    /// training. `None` (the default): the loss is not a softmax over class weights and cannot
    /// be sharded.
    fn shard_head(&self, _p: &nn::Path, _feature_dim: i64, _shard: &ClassShard) -> Result<Option<Box<dyn ShardHead>>> {
        Ok(None)
    }

    /// The loss over the classes of `shard` ([`ShardedLoss`] on [`LossSpec::shard_head`]);
    /// `None` when it cannot be sharded.
    fn build_sharded(&self, p: &nn::Path, feature_dim: i64, shard: &ClassShard, sampling: Option<Sampling>) -> Result<Option<Box<dyn Loss>>> {
        let Some(head) = self.shard_head(p, feature_dim, shard)? else { return Ok(None) };
        Ok(Some(Box::new(ShardedLoss::new(head, None, *shard, sampling)?)))
    }
}

/// The losses by name. facerec's own are registered here, one line each; a `[loss]` table
/// without a name is the paper's (`"center"`).
static LOSSES: LazyLock<Registry<dyn LossSpec>> = LazyLock::new(|| {
    let registry = Registry::new("loss", Some(JointCenterConfig::NAME));
    registry.add(erase::<SoftmaxConfig>);
    registry.add(erase::<JointCenterConfig>);
    registry.add(erase::<CosFaceConfig>);
    registry.add(erase::<ArcFaceConfig>);
    registry.add(erase::<CombinedMarginConfig>);
    registry.add(erase::<ContrastiveConfig>);
    registry.add(erase::<SphereFaceConfig>);
    registry
});

impl Registered for dyn LossSpec {
    fn registry() -> &'static Registry<Self> {
        &LOSSES
    }
}

fn erase<P: Plug + LossSpec>(plug: P) -> Arc<dyn LossSpec> {
    Arc::new(plug)
}

/// Makes the loss `P` available to configs as `[loss] name = P::NAME`, beside the built-in
/// ones: call it at the start of `main`, before any config is read.
pub fn register_loss<P: Plug + LossSpec>() {
    LOSSES.add(erase::<P>);
}

/// The loss names configs can use.
pub fn loss_names() -> Vec<&'static str> {
    LOSSES.names()
}

/// The registered losses that can be sharded by class with their default settings (asked of
/// each: its [`LossSpec::build_sharded`] on a throwaway two-class shard). A loss with required
/// settings (center's `lambda`) is not among them.
pub fn shardable_loss_names() -> Vec<&'static str> {
    thread_local! {
        // A loss whose head is not shardable builds this list into its error while it is
        // being probed: that inner call answers with nothing instead of probing again.
        static PROBING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    }
    if PROBING.with(|p| p.replace(true)) {
        return Vec::new();
    }
    let _no_grad = tch::no_grad_guard();
    let names = loss_names()
        .into_iter()
        .filter(|name| {
            let table: toml::Table = [("name".to_owned(), toml::Value::String((*name).to_owned()))].into_iter().collect();
            let Ok(config) = LossConfig::deserialize(toml::Value::Table(table)) else { return false };
            let (Ok(shard), vs) = (ClassShard::new(2, 0, 1), nn::VarStore::new(tch::Device::Cpu)) else { return false };
            matches!(config.0.spec().build_sharded(&vs.root(), 4, &shard, None), Ok(Some(_)))
        })
        .collect();
    PROBING.with(|p| p.set(false));
    names
}

impl std::fmt::Display for LossConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// Which loss, with its settings: `[loss] name = "center"` and the fields of that loss's
/// settings. Unknown names and fields, and out-of-range values, fail when the TOML is read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct LossConfig(Choice<dyn LossSpec>);

impl LossConfig {
    /// The config of loss `P` with these settings.
    pub fn new<P: Plug + LossSpec>(settings: P) -> Self {
        LossConfig(Choice::of(settings, erase::<P>))
    }

    /// The name configs pick it by.
    pub fn name(&self) -> &str {
        self.0.name()
    }

    /// A setting by key, as written (e.g. `"lambda"`), for reports.
    pub fn setting(&self, key: &str) -> Option<&toml::Value> {
        self.0.settings().get(key)
    }

    /// Creates the loss's variables under `p` and returns it.
    pub fn build(&self, p: &nn::Path, feature_dim: i64, num_classes: i64) -> Result<Box<dyn Loss>> {
        self.0.spec().build(p, feature_dim, num_classes)
    }

    /// Creates this rank's share of the loss's variables (the rows of the classes of `shard`)
    /// under `p` and returns the class-sharded loss; fails for a loss that cannot be sharded.
    pub fn build_sharded(&self, p: &nn::Path, feature_dim: i64, shard: &ClassShard, sampling: Option<Sampling>) -> Result<Box<dyn Loss>> {
        self.0.spec().build_sharded(p, feature_dim, shard, sampling)?.ok_or_else(|| self.not_shardable())
    }

    /// This loss's classifier over the classes of `shard` (see [`LossSpec::shard_head`]).
    pub fn shard_head(&self, p: &nn::Path, feature_dim: i64, shard: &ClassShard) -> Result<Box<dyn ShardHead>> {
        self.0.spec().shard_head(p, feature_dim, shard)?.ok_or_else(|| self.not_shardable())
    }

    fn not_shardable(&self) -> LossError {
        LossError::Config(format!(
            "loss \"{}\" cannot be sharded by class ([parallel] shard_head): only a softmax over class weights can \
             (of the registered losses, those that shard with their default settings: {}; and a loss with a \
             head, such as center, when its head is one of them)",
            self.name(),
            shardable_loss_names().join(", ")
        ))
    }
}
