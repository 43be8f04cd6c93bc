//! The trainer's settings: the `[optim]`, `[schedule]`, `[checkpoint]` and `[log]` sections of
//! an experiment config (the experiment's TOML schema lives in `facerec-experiment`, which
//! composes them), and [`TrainConfig`], everything a [`crate::Trainer`] is built from.

use serde::{Deserialize, Serialize};

use facerec_losses::LossConfig;
use facerec_model::device::DeviceChoice;
use facerec_model::BackboneConfig;

use crate::optim::Decay;
use crate::schedule::Schedule;

/// Everything a [`crate::Trainer`] is built from, taken from an experiment's config.
#[derive(Debug, Clone)]
pub struct TrainConfig {
    /// Seeds initialisation, data order and augmentation.
    pub seed: u64,
    pub device: DeviceChoice,
    /// libtorch intra-op threads; 0 keeps libtorch's default.
    pub threads: usize,
    pub precision: Precision,
    pub backbone: BackboneConfig,
    pub loss: LossConfig,
    pub optim: OptimConfig,
    pub schedule: ScheduleConfig,
    pub checkpoint: CheckpointConfig,
    pub log: LogConfig,
    pub parallel: ParallelConfig,
    /// When the evaluator runs.
    pub evaluate: Every,
    /// Whether each epoch's order is shuffled (seeded) or the data's own.
    pub shuffle: bool,
    /// The experiment's resolved config (TOML): written to `<run>/config.toml` and into every
    /// checkpoint.
    pub resolved: String,
    /// What the ranks of a data-parallel run must agree on (the resolved config but the
    /// device) as a checksum.
    pub fingerprint: u32,
}

/// When a periodic job (evaluation, checkpoint) runs: after every `n` steps, at the end of
/// each epoch, or never. The config says `every_steps = 0` for [`Every::Epoch`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Every {
    Steps(usize),
    Epoch,
    Never,
}

impl Every {
    /// The config's `every_steps`: `0` is the end of each epoch.
    pub fn from_steps(n: usize) -> Self {
        if n == 0 {
            Every::Epoch
        } else {
            Every::Steps(n)
        }
    }

    /// Whether it runs after training step `step`.
    pub fn after_step(self, step: usize) -> bool {
        matches!(self, Every::Steps(n) if step.is_multiple_of(n))
    }
}

/// Arithmetic precision of training.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    #[default]
    Fp32,
    Bf16,
}

/// `[optim]`: the optimiser (SGD or AdamW, [`crate::optim`]) and the batch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OptimConfig {
    /// `sgd` (the paper's) or `adamw` (arcface_torch's ViT recipes).
    #[serde(default)]
    pub name: OptimName,
    /// Base learning rate (the paper's face model: 0.1).
    pub lr: f64,
    /// SGD's momentum.
    #[serde(default = "default_momentum")]
    pub momentum: f64,
    #[serde(default = "default_weight_decay")]
    pub weight_decay: f64,
    /// Which parameters weight decay applies to: `weights` (conv and fully connected weights,
    /// facerec's) or `all` (PyTorch's and arcface_torch's).
    #[serde(default)]
    pub decay: Decay,
    /// AdamW's `(beta1, beta2)`; unset: PyTorch's `[0.9, 0.999]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub betas: Option<[f64; 2]>,
    /// AdamW's epsilon; unset: PyTorch's 1e-8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eps: Option<f64>,
    /// Images per step, over all processes together.
    pub batch_size: usize,
    /// Each step's batch in this many micro-batches, one after the other, their gradients
    /// accumulated (the mean over the whole batch, as one step of `batch_size` would have): the
    /// activations of `batch_size / gradient_accumulation` images at a time.
    #[serde(default = "one_usize")]
    pub gradient_accumulation: usize,
    /// Scale the gradients down when their global L2 norm exceeds this (PyTorch's
    /// `clip_grad_norm_`); unset: no clipping. The norm is logged either way.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clip_grad_norm: Option<f64>,
    /// Which gradients `clip_grad_norm` measures and scales: `all` parameters' or the
    /// `backbone`'s only (arcface_torch clips the backbone's, not the classifier's).
    #[serde(default)]
    pub clip: ClipScope,
    /// The backbone's learning rate as a multiple of `lr` (the loss's classifier and other
    /// parameters move at `lr`): below 1 to fine-tune a pretrained backbone under a new head,
    /// 0 to freeze it (its BatchNorm statistics still follow the data).
    #[serde(default = "one")]
    pub backbone_lr_mult: f64,
    /// P x K batches: K images of each of `batch_size / K` distinct identities per batch, for
    /// losses that need several images of an identity in a batch (contrastive loss; center
    /// loss with small batches). Unset: a plain shuffle.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub images_per_identity: Option<usize>,
}

fn one() -> f64 {
    1.0
}

fn one_usize() -> usize {
    1
}

/// `[optim] name`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OptimName {
    #[default]
    Sgd,
    Adamw,
}

/// `[optim] clip`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClipScope {
    #[default]
    All,
    Backbone,
}

fn default_momentum() -> f64 {
    0.9
}
fn default_weight_decay() -> f64 {
    5e-4
}

/// `[schedule]`: how long to train and how the learning rate moves (see
/// [`crate::schedule::Schedule`]). Give `epochs` or `steps`; `milestones` count in the same
/// unit. `warmup_steps` always counts steps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleConfig {
    /// `multistep` (milestones and gamma), `polynomial` (arcface_torch's, to zero at the end)
    /// or `cosine` (to zero at the end).
    #[serde(default)]
    pub kind: ScheduleKind,
    pub epochs: Option<usize>,
    pub steps: Option<usize>,
    #[serde(default)]
    pub milestones: Vec<usize>,
    #[serde(default = "default_gamma")]
    pub gamma: f64,
    /// Steps over which the learning rate rises linearly to `optim.lr`; 0 for none.
    #[serde(default)]
    pub warmup_steps: usize,
    /// The polynomial's power (arcface_torch: 1, a straight line to zero); unset: 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub power: Option<f64>,
    /// The first `freeze_backbone` epochs (steps, with `steps`) train all but the backbone:
    /// its forward pass runs without gradients and its weights, momentum and weight decay stay
    /// as they are (its BatchNorm statistics still follow the data); then everything trains,
    /// the backbone at `optim.backbone_lr_mult`. 0: no such phase.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub freeze_backbone: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// `[schedule] kind`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ScheduleKind {
    #[default]
    Multistep,
    Polynomial,
    Cosine,
}

fn default_gamma() -> f64 {
    0.1
}

/// `[parallel]`: how the ranks of a multi-process run share the classifier.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParallelConfig {
    /// Shard the classifier, its momentum and the center table by class over the ranks (each
    /// holds `C / N` classes; an exact distributed softmax) instead of replicating them on
    /// every rank: for hundreds of thousands of identities and more.
    #[serde(default)]
    pub shard_head: bool,
    /// Partial FC (with `shard_head`): the share of each rank's classes a step uses, the batch's
    /// own classes always among them; 1 uses them all (exact softmax).
    #[serde(default = "default_sample_rate")]
    pub sample_rate: f64,
    /// Average the gradients bucket by bucket during the backward pass, as they become ready
    /// (PyTorch DDP's overlap), rather than in one pass after it. The same sums either way.
    #[serde(default = "default_true")]
    pub overlap: bool,
}

fn default_true() -> bool {
    true
}

fn default_sample_rate() -> f64 {
    1.0
}

impl Default for ParallelConfig {
    fn default() -> Self {
        ParallelConfig { shard_head: false, sample_rate: default_sample_rate(), overlap: true }
    }
}

impl ParallelConfig {
    pub fn validate(&self) -> std::result::Result<(), String> {
        if !(self.sample_rate > 0.0 && self.sample_rate <= 1.0) {
            return Err(format!("parallel.sample_rate must be in (0, 1], got {}", self.sample_rate));
        }
        if self.sample_rate < 1.0 && !self.shard_head {
            return Err("parallel.sample_rate samples the classes of a sharded classifier: set parallel.shard_head = true".into());
        }
        Ok(())
    }
}

/// `[checkpoint]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckpointConfig {
    /// Save every this many steps; 0 saves at the end of each epoch only.
    #[serde(default)]
    pub every_steps: usize,
    /// How many checkpoints to keep (the newest).
    #[serde(default = "default_keep")]
    pub keep: usize,
}

fn default_keep() -> usize {
    3
}

impl CheckpointConfig {
    /// When checkpoints are written: `every_steps`, or each epoch's end for 0.
    pub fn every(&self) -> Every {
        Every::from_steps(self.every_steps)
    }
}

impl Default for CheckpointConfig {
    fn default() -> Self {
        CheckpointConfig { every_steps: 0, keep: default_keep() }
    }
}

/// `[log]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// Write a line to `steps.jsonl` (and the log) every this many steps, with the means of
    /// the losses and accuracy over those steps. Unset: about 250 lines per run
    /// ([`LogConfig::interval`]), so that short and long runs alike plot as curves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub every_steps: Option<usize>,
}

impl LogConfig {
    /// Lines a run writes to `steps.jsonl` when `every_steps` is unset.
    pub const AUTO_LINES: usize = 250;

    /// The logging interval of a run of `total_steps` steps.
    pub fn interval(&self, total_steps: usize) -> usize {
        self.every_steps.unwrap_or_else(|| total_steps.div_ceil(Self::AUTO_LINES).max(1))
    }
}

impl OptimConfig {
    /// Range checks; the message names the key.
    pub fn validate(&self) -> Result<(), String> {
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            return Err(format!("optim.lr must be > 0, got {}", self.lr));
        }
        if !(0.0..1.0).contains(&self.momentum) {
            return Err(format!("optim.momentum must be in [0, 1), got {}", self.momentum));
        }
        if !(self.weight_decay >= 0.0 && self.weight_decay.is_finite()) {
            return Err(format!("optim.weight_decay must be >= 0, got {}", self.weight_decay));
        }
        if let Some(c) = self.clip_grad_norm {
            if !(c > 0.0 && c.is_finite()) {
                return Err(format!("optim.clip_grad_norm must be > 0, got {c}"));
            }
        }
        if self.batch_size == 0 {
            return Err("optim.batch_size must be at least 1".into());
        }
        if self.gradient_accumulation == 0 || !self.batch_size.is_multiple_of(self.gradient_accumulation) {
            return Err(format!(
                "optim.gradient_accumulation must be at least 1 and divide optim.batch_size ({}), got {}",
                self.batch_size, self.gradient_accumulation
            ));
        }
        if self.name == OptimName::Sgd && (self.betas.is_some() || self.eps.is_some()) {
            return Err("optim.betas and optim.eps are AdamW's: set optim.name = \"adamw\" or remove them".into());
        }
        if let Some([b1, b2]) = self.betas {
            if !((0.0..1.0).contains(&b1) && (0.0..1.0).contains(&b2)) {
                return Err(format!("optim.betas must be in [0, 1), got [{b1}, {b2}]"));
            }
        }
        if let Some(eps) = self.eps.filter(|e| !(*e > 0.0 && e.is_finite())) {
            return Err(format!("optim.eps must be > 0, got {eps}"));
        }
        if !(self.backbone_lr_mult >= 0.0 && self.backbone_lr_mult.is_finite()) {
            return Err(format!("optim.backbone_lr_mult must be >= 0, got {}", self.backbone_lr_mult));
        }
        if let Some(k) = self.images_per_identity {
            if k < 2 || !self.batch_size.is_multiple_of(k) {
                return Err(format!(
                    "optim.images_per_identity must be at least 2 and divide optim.batch_size ({}) for P x K batches, got {k}",
                    self.batch_size
                ));
            }
        }
        Ok(())
    }
}

impl ScheduleConfig {
    /// Range checks; the message names the key.
    pub fn validate(&self) -> Result<(), String> {
        match (self.epochs, self.steps) {
            (Some(0), _) | (_, Some(0)) => return Err("schedule.epochs / schedule.steps must be at least 1".into()),
            (Some(_), Some(_)) => return Err("give schedule.epochs or schedule.steps, not both".into()),
            (None, None) => return Err("schedule needs epochs or steps".into()),
            _ => {}
        }
        if let Some(length) = self.epochs.or(self.steps).filter(|n| self.freeze_backbone >= *n) {
            return Err(format!(
                "schedule.freeze_backbone ({}) must be shorter than the run ({length}): a backbone frozen throughout is optim.backbone_lr_mult = 0",
                self.freeze_backbone
            ));
        }
        if self.milestones.windows(2).any(|w| w[0] >= w[1]) {
            return Err(format!("schedule.milestones must increase, got {:?}", self.milestones));
        }
        if !(self.gamma > 0.0 && self.gamma <= 1.0) {
            return Err(format!("schedule.gamma must be in (0, 1], got {}", self.gamma));
        }
        if self.kind != ScheduleKind::Multistep && (!self.milestones.is_empty() || self.gamma != default_gamma()) {
            return Err(format!(
                "schedule.milestones and schedule.gamma are multistep's: a {} schedule goes to zero by itself (remove them)",
                self.kind.name()
            ));
        }
        match (self.kind, self.power) {
            (ScheduleKind::Polynomial, Some(p)) if !(p > 0.0 && p.is_finite()) => Err(format!("schedule.power must be > 0, got {p}")),
            (ScheduleKind::Polynomial, _) | (_, None) => Ok(()),
            (kind, Some(_)) => Err(format!("schedule.power is the polynomial schedule's, not {}'s", kind.name())),
        }
    }

    /// The steps of the frozen-backbone phase in a run whose epochs have `per_epoch` steps.
    pub fn frozen_steps(&self, per_epoch: usize) -> usize {
        self.freeze_backbone * if self.epochs.is_some() { per_epoch } else { 1 }
    }

    /// The schedule of a run of `total` steps whose epochs have `per_epoch` steps, from `base`.
    pub fn schedule(&self, base: f64, total: usize, per_epoch: usize) -> Result<Schedule, String> {
        let warmup = self.warmup_steps;
        if self.kind != ScheduleKind::Multistep && warmup >= total {
            return Err(format!("schedule.warmup_steps ({warmup}) must be fewer than the run's {total} steps"));
        }
        Ok(match self.kind {
            ScheduleKind::Multistep => {
                let unit = if self.epochs.is_some() { per_epoch } else { 1 };
                Schedule::MultiStep { base, gamma: self.gamma, milestones: self.milestones.iter().map(|m| m * unit).collect(), warmup }
            }
            ScheduleKind::Polynomial => Schedule::Polynomial { base, warmup, total, power: self.power.unwrap_or(1.0) },
            ScheduleKind::Cosine => Schedule::Cosine { base, warmup, total },
        })
    }
}

impl ScheduleKind {
    pub fn name(self) -> &'static str {
        match self {
            ScheduleKind::Multistep => "multistep",
            ScheduleKind::Polynomial => "polynomial",
            ScheduleKind::Cosine => "cosine",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reads_the_configs_zero_as_each_epoch() {
        assert_eq!(Every::from_steps(0), Every::Epoch);
        assert_eq!(Every::from_steps(5), Every::Steps(5));
        let steps: Vec<usize> = (1..=12).filter(|&s| Every::Steps(5).after_step(s)).collect();
        assert_eq!(steps, [5, 10]);
        assert!((1..=12).all(|s| !Every::Epoch.after_step(s) && !Every::Never.after_step(s)));
    }

    #[test]
    fn the_log_interval_defaults_to_about_250_lines() {
        let log = LogConfig::default();
        assert_eq!(log.interval(640), 3);
        assert_eq!(log.interval(100), 1);
        assert_eq!(log.interval(28_000), 112);
        assert_eq!(LogConfig { every_steps: Some(7) }.interval(28_000), 7);
    }
}
