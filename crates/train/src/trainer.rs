//! The training loop: one visible loop over steps, with the joint loss of Wen et al. (ECCV
//! 2016, Algorithm 1): forward, `L = L_S + lambda * L_C`, backward, center update (Eq. 4),
//! SGD step; logging, periodic evaluation and checkpoints around it.
//!
//! With a process group ([`Trainer::with_distributed`]) the same loop trains data-parallel:
//! each rank takes its slice of every global batch and the hooks of [`crate::distributed`]
//! keep the ranks identical; only rank 0 writes files.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Map;
use tch::{nn, Device, Kind, Tensor};

use facerec_data::loader::{Batch, Loader, LoaderConfig, Source};
use facerec_dist::{Backend, ProcessGroup};
use facerec_losses::{CenterLoss, SoftmaxLoss};
use facerec_model::device::DeviceChoice;
use facerec_model::{weights, Backbone};

use crate::checkpoint::{self, Checkpoint, TrainState};
use crate::config::{config_changes, Config, ConfigChange, Precision};
use crate::distributed::{per_rank_batch, Distributed};
use crate::error::{Result, TrainError};
use crate::metrics::{record, JsonLines};
use crate::schedule::MultiStep;
use crate::sgd::Sgd;
use crate::tensorboard::EventWriter;

/// Read-only access to the model for evaluation.
pub struct ModelParts<'a> {
    pub backbone: &'a dyn Backbone,
    pub head: &'a SoftmaxLoss,
    /// The center table, when training with center loss.
    pub centers: Option<&'a Tensor>,
    pub device: Device,
}

/// The periodic evaluation (test accuracy, LFW verification, ...), supplied by the caller.
pub trait Evaluator {
    /// Named metrics of the model as it is now.
    fn evaluate(&mut self, model: &ModelParts<'_>) -> Result<Vec<(String, f64)>>;
}

/// Progress reporting (the CLI draws a progress bar from these).
pub trait Observer {
    fn on_start(&mut self, _start_step: usize, _total_steps: usize) {}
    fn on_step(&mut self, _stats: &StepStats) {}
    fn on_eval(&mut self, _step: usize, _metrics: &[(String, f64)]) {}
}

/// An observer that ignores everything.
impl Observer for () {}

/// What one step did.
#[derive(Debug, Clone, PartialEq)]
pub struct StepStats {
    /// Steps done after this one.
    pub step: usize,
    pub epoch: usize,
    pub lr: f64,
    /// `L_S + lambda * L_C`.
    pub loss: f64,
    pub softmax_loss: f64,
    pub center_loss: f64,
    /// Training accuracy of the batch.
    pub accuracy: f64,
    pub batch_size: usize,
    /// Wall time of the step, data wait excluded.
    pub step_time: Duration,
    /// Time the step waited for its batch.
    pub data_wait: Duration,
}

/// How `fit` ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Finished,
    /// Stopped by the stop flag (Ctrl-C) after writing a checkpoint.
    Interrupted,
}

/// The result of `fit`.
#[derive(Debug, Clone)]
pub struct FitSummary {
    pub outcome: Outcome,
    pub steps: usize,
    pub last_checkpoint: Option<PathBuf>,
    /// The last evaluation's metrics.
    pub metrics: Vec<(String, f64)>,
    /// Seconds spent in steps, and waiting for data.
    pub train_s: f64,
    pub data_wait_s: f64,
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
        matches!(self, Every::Steps(n) if step % n == 0)
    }
}

/// `<run>/changes.jsonl`: each setting changed on a resume, with the step it took effect.
pub const CHANGES_FILE: &str = "changes.jsonl";

/// Keeps the records of `path` made before `step` and appends `changes` at `step` (a record at
/// or past `step` belongs to a resume whose later part was lost, or is the same change being
/// recorded again). No checkpoint is at step 0, so `step - 1` is the last step kept.
fn record_changes(path: &Path, step: usize, changes: &[ConfigChange]) -> Result<()> {
    JsonLines::truncate_after(path, step.saturating_sub(1))?;
    if changes.is_empty() {
        return Ok(());
    }
    let mut log = JsonLines::open(path)?;
    for c in changes {
        let mut r = Map::new();
        r.insert("step".into(), step.into());
        r.insert("key".into(), c.key.clone().into());
        r.insert("from".into(), c.from.clone().into());
        r.insert("to".into(), c.to.clone().into());
        log.write(&r)?;
    }
    Ok(())
}

/// Owns the model, the optimiser and the training state of one run.
pub struct Trainer {
    config: Config,
    config_toml: String,
    run_dir: PathBuf,
    device: Device,
    vs: nn::VarStore,
    backbone: Box<dyn Backbone>,
    head: SoftmaxLoss,
    center: Option<CenterLoss>,
    sgd: Sgd,
    state: TrainState,
    stop: Arc<AtomicBool>,
    steps_log: Option<JsonLines>,
    metrics_log: Option<JsonLines>,
    events: Option<EventWriter>,
    last_metrics: Vec<(String, f64)>,
    /// Data-parallel training: the process group, the buffers broadcast after each step
    /// (non-trainable variables other than the center table), and whether any rank asked to
    /// stop during the last step.
    dist: Option<Distributed>,
    dist_buffers: Vec<Tensor>,
    stop_agreed: bool,
    /// Whether [`Trainer::restore`] may continue a run with settings that change its training.
    allow_config_changes: bool,
}

impl Trainer {
    /// Builds the model for `num_classes` identities and prepares `run_dir` (writing the
    /// resolved config there). Fails when `run_dir` already holds checkpoints: resume them
    /// with [`Trainer::resume`] or remove them first.
    pub fn new(config: Config, run_dir: &Path, num_classes: i64) -> Result<Self> {
        if config.threads > 0 {
            tch::set_num_threads(config.threads as i32);
        }
        let device = config.device.resolve()?;
        tch::manual_seed(config.seed as i64);
        let vs = nn::VarStore::new(device);
        let root = vs.root();
        let backbone = config.model.backbone.build(&(&root / "backbone"))?;
        let head = SoftmaxLoss::new(&(&root / "head"), backbone.feature_dim(), num_classes);
        let center = if config.loss.lambda > 0.0 {
            Some(CenterLoss::new(&(&root / "center"), num_classes, backbone.feature_dim(), config.loss)?)
        } else {
            None
        };
        let trainable: Vec<(String, Tensor)> =
            vs.variables().into_iter().filter(|(_, t)| t.requires_grad()).collect();
        let sgd = Sgd::new(trainable, config.optim.momentum, config.optim.weight_decay);
        std::fs::create_dir_all(run_dir).map_err(|e| TrainError::io(run_dir, e))?;
        let config_toml = config.to_toml();
        Ok(Trainer {
            config,
            config_toml,
            run_dir: run_dir.to_path_buf(),
            device,
            vs,
            backbone,
            head,
            center,
            sgd,
            state: TrainState::default(),
            stop: Arc::new(AtomicBool::new(false)),
            steps_log: None,
            metrics_log: None,
            events: None,
            last_metrics: Vec::new(),
            dist: None,
            dist_buffers: Vec::new(),
            stop_agreed: false,
            allow_config_changes: false,
        })
    }

    /// Makes this trainer one rank of a data-parallel run over `group`. Call it before
    /// [`Trainer::resume`]: only rank 0 touches the run directory's files. Fails when the
    /// global batch (`optim.batch_size`) does not split evenly over the ranks, or when the
    /// group's backend cannot take tensors of the training device.
    pub fn with_distributed(mut self, group: ProcessGroup) -> Result<Self> {
        let config_err = |msg: String| TrainError::Config { path: self.run_dir.join("config.toml"), msg };
        let per_rank = per_rank_batch(self.config.optim.batch_size, group.world_size()).map_err(config_err)?;
        if group.backend() != Backend::for_device(self.device) {
            return Err(config_err(format!(
                "the process group uses {} but training runs on {:?} ({} takes {} tensors)",
                group.backend().name(),
                self.device,
                group.backend().name(),
                if group.backend() == Backend::Nccl { "CUDA" } else { "CPU" }
            )));
        }
        let centers = self.center.as_ref().map(|c| c.centers().data_ptr());
        self.dist_buffers = self
            .named_variables()
            .into_iter()
            .filter(|(_, t)| !t.requires_grad() && Some(t.data_ptr()) != centers)
            .map(|(_, t)| t)
            .collect();
        tracing::info!(
            rank = group.rank(),
            world = group.world_size(),
            backend = group.backend().name(),
            "data-parallel training: {per_rank} samples per rank and step, global batch {}",
            self.config.optim.batch_size
        );
        self.dist = Some(Distributed::new(group, self.device));
        Ok(self)
    }

    /// Whether this process writes the run's files (rank 0, or the only process).
    pub fn is_main(&self) -> bool {
        self.dist.as_ref().is_none_or(Distributed::is_main)
    }

    fn world(&self) -> usize {
        self.dist.as_ref().map_or(1, Distributed::world)
    }

    pub fn device(&self) -> Device {
        self.device
    }

    pub fn state(&self) -> &TrainState {
        &self.state
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn run_dir(&self) -> &Path {
        &self.run_dir
    }

    /// A flag that, once set (by a Ctrl-C handler, say), makes `fit` checkpoint and return
    /// after the current step.
    pub fn stop_flag(&self) -> Arc<AtomicBool> {
        self.stop.clone()
    }

    pub fn parts(&self) -> ModelParts<'_> {
        ModelParts {
            backbone: self.backbone.as_ref(),
            head: &self.head,
            centers: self.center.as_ref().map(CenterLoss::centers),
            device: self.device,
        }
    }

    /// Every model variable by name (sorted), including the center table.
    pub fn named_variables(&self) -> Vec<(String, Tensor)> {
        let mut vars: Vec<(String, Tensor)> = self.vs.variables().into_iter().collect();
        vars.sort_by(|a, b| a.0.cmp(&b.0));
        vars
    }

    /// The SGD momentum buffers by parameter name (those that exist yet).
    pub fn momentum_buffers(&self) -> Vec<(String, Tensor)> {
        self.sgd.momentum_buffers()
    }

    /// Lets [`Trainer::resume`] continue a run whose config now differs in what is trained
    /// (e.g. `loss.lambda`): without it such a resume is refused. Either way every difference
    /// is recorded in `<run>/changes.jsonl` with the step it takes effect.
    pub fn allow_config_changes(&mut self, allow: bool) {
        self.allow_config_changes = allow;
    }

    /// Loads the newest valid checkpoint of the run directory, if any; returns its path.
    pub fn resume(&mut self) -> Result<Option<PathBuf>> {
        checkpoint::clean_temporaries(&self.run_dir);
        match checkpoint::latest_valid(&self.run_dir)? {
            None => Ok(None),
            Some(ck) => {
                let path = ck.path.clone();
                self.restore(ck)?;
                Ok(Some(path))
            }
        }
    }

    /// Restores model, momentum and state from a loaded checkpoint.
    pub fn restore(&mut self, ck: Checkpoint) -> Result<()> {
        let bad = |msg: String| TrainError::Checkpoint { path: ck.path.clone(), msg };
        let global = self.config.optim.batch_size;
        if ck.state.samples_in_epoch % global != 0 {
            return Err(bad(format!(
                "it stopped {} samples into an epoch, not a multiple of the batch size {global}: \
                 resume with the batch size it was trained with",
                ck.state.samples_in_epoch
            )));
        }
        let changes = config_changes(&ck.config, &self.config_toml).map_err(bad)?;
        let altering: Vec<String> = changes.iter().filter(|c| c.alters_training()).map(ToString::to_string).collect();
        if !altering.is_empty() && !self.allow_config_changes {
            return Err(bad(format!(
                "the run was trained with other settings ({}): resume it as it was trained (its \
                 config.toml, without those --set), or allow the change (facerec train --allow-changes), \
                 which records it in changes.jsonl",
                altering.join(", ")
            )));
        }
        weights::copy_into(&self.named_variables(), &ck.model, &ck.path)?;
        self.sgd.set_momentum_buffers(ck.momentum).map_err(bad)?;
        if self.is_main() {
            record_changes(&self.run_dir.join(CHANGES_FILE), ck.state.step, &changes)?;
        }
        for c in &changes {
            tracing::warn!(step = ck.state.step, "resuming with a changed setting: {c}");
        }
        self.state = ck.state;
        // Metrics and TensorBoard events written after the checkpoint belong to the lost part
        // of the run.
        if self.is_main() {
            JsonLines::truncate_after(&self.run_dir.join("steps.jsonl"), self.state.step)?;
            JsonLines::truncate_after(&self.run_dir.join("metrics.jsonl"), self.state.step)?;
            crate::tensorboard::truncate_after(&self.run_dir, self.state.step)?;
        }
        tracing::info!(step = self.state.step, epoch = self.state.epoch, "resumed from {}", ck.path.display());
        Ok(())
    }

    /// Writes a checkpoint of the current state (refusing to save non-finite weights). Under
    /// data parallelism rank 0 writes it and the other ranks return the path it goes to.
    pub fn save_checkpoint(&self) -> Result<PathBuf> {
        let vars = self.named_variables();
        for (name, t) in &vars {
            let finite = bool::try_from(t.f_isfinite()?.f_all()?)?;
            if !finite {
                return Err(TrainError::Diverged {
                    step: self.state.step,
                    what: format!("parameter {name}"),
                    value: f64::NAN,
                    kept: self.latest_checkpoint_note(),
                });
            }
        }
        if !self.is_main() {
            return Ok(checkpoint::path(&self.run_dir, self.state.step));
        }
        let path = checkpoint::save(
            &self.run_dir,
            &self.state,
            &vars,
            &self.sgd.momentum_buffers(),
            &self.config_toml,
            self.world(),
            self.config.checkpoint.keep,
        )?;
        tracing::debug!("checkpoint {}", path.display());
        Ok(path)
    }

    /// Saves the backbone alone, with PyTorch names and its config in the metadata, to `path`.
    pub fn export_backbone(&self, path: &Path) -> Result<()> {
        let vars = weights::strip_prefix(&self.vs.variables(), "backbone");
        facerec_model::saved::save_backbone(path, &self.config.model.backbone, &vars)?;
        Ok(())
    }

    fn latest_checkpoint_note(&self) -> String {
        checkpoint::list(&self.run_dir)
            .first()
            .map(|(_, p)| format!(" ({})", p.display()))
            .unwrap_or_else(|| " (none was written yet)".to_owned())
    }

    /// Steps per epoch and total steps for a data set of `len` samples.
    pub fn plan(&self, len: usize) -> Result<(usize, usize, MultiStep)> {
        let per_epoch = len / self.config.optim.batch_size;
        if per_epoch == 0 {
            return Err(TrainError::Config {
                path: self.run_dir.join("config.toml"),
                msg: format!("optim.batch_size {} is larger than the {len} training samples", self.config.optim.batch_size),
            });
        }
        let s = &self.config.schedule;
        let (total, milestones) = match (s.epochs, s.steps) {
            (Some(e), _) => (e * per_epoch, s.milestones.iter().map(|m| m * per_epoch).collect()),
            (_, Some(n)) => (n, s.milestones.clone()),
            _ => unreachable!("validated: epochs or steps"),
        };
        Ok((per_epoch, total, MultiStep { base: self.config.optim.lr, gamma: s.gamma, milestones, warmup: s.warmup_steps }))
    }

    /// Trains until the schedule ends (or the stop flag is set).
    pub fn fit(
        &mut self,
        source: Arc<dyn Source>,
        flip: bool,
        mut evaluator: Option<&mut dyn Evaluator>,
        observer: &mut dyn Observer,
    ) -> Result<FitSummary> {
        if source.image_shape() != self.backbone.input_shape() {
            return Err(TrainError::Config {
                path: self.run_dir.join("config.toml"),
                msg: format!(
                    "the training images are {:?} but model.backbone takes {:?}",
                    source.image_shape(),
                    self.backbone.input_shape()
                ),
            });
        }
        let (per_epoch, total, schedule) = self.plan(source.len())?;
        let global_batch = self.config.optim.batch_size;
        let loader_cfg = LoaderConfig {
            rank_batch: global_batch / self.world(),
            shuffle: true,
            flip,
            seed: self.config.seed,
            rank: self.dist.as_ref().map_or(0, Distributed::rank),
            world: self.world(),
            prefetch: 4,
        };
        self.sync_start(source.len(), source.num_classes())?;
        if self.is_main() {
            std::fs::write(self.run_dir.join("config.toml"), &self.config_toml)
                .map_err(|e| TrainError::io(self.run_dir.join("config.toml"), e))?;
            self.steps_log = Some(JsonLines::open(&self.run_dir.join("steps.jsonl"))?);
            self.metrics_log = Some(JsonLines::open(&self.run_dir.join("metrics.jsonl"))?);
            self.events = Some(EventWriter::create(&self.run_dir)?);
        }
        tracing::info!(
            device = %facerec_model::device::describe(self.device),
            steps = total,
            per_epoch,
            start = self.state.step,
            "training {} ({} samples, {} classes)",
            self.backbone.name(),
            source.len(),
            source.num_classes()
        );
        observer.on_start(self.state.step, total);
        let (mut train_time, mut wait_time) = (Duration::ZERO, Duration::ZERO);
        let mut last_checkpoint = None;
        let (mut saved_at, mut evaluated_at) = (None, None);
        let log_every = self.config.log.interval(total);
        let checkpoints = Every::from_steps(self.config.checkpoint.every_steps);
        let evaluations = if self.config.eval.disabled { Every::Never } else { Every::from_steps(self.config.eval.every_steps) };

        while self.state.step < total {
            let start_batch = self.state.samples_in_epoch / global_batch;
            let mut loader = Loader::new(source.clone(), &loader_cfg, self.state.epoch, start_batch)?;
            let mut epoch_done = true;
            loop {
                let t_wait = Instant::now();
                let Some(batch) = loader.next() else { break };
                let wait = t_wait.elapsed();
                let t_step = Instant::now();
                let stats = self.train_step(&batch?, &schedule, wait)?;
                let step_time = t_step.elapsed();
                train_time += step_time;
                wait_time += wait;
                self.state.elapsed_s += (step_time + wait).as_secs_f64();
                observer.on_step(&StepStats { step_time, ..stats.clone() });
                if self.state.step % log_every == 0 || self.state.step == total {
                    // Every line goes to steps.jsonl; the terminal gets about ten of them.
                    let announce = self.state.step % (log_every * 25) == 0 || self.state.step == total;
                    self.log_step(&stats, announce)?;
                }
                if evaluations.after_step(self.state.step) {
                    self.evaluate(evaluator.as_deref_mut(), observer)?;
                    evaluated_at = Some(self.state.step);
                }
                if checkpoints.after_step(self.state.step) {
                    last_checkpoint = Some(self.save_checkpoint()?);
                    saved_at = Some(self.state.step);
                }
                if self.stop_requested() {
                    if saved_at != Some(self.state.step) {
                        last_checkpoint = Some(self.save_checkpoint()?);
                    }
                    if self.is_main() {
                        tracing::warn!(step = self.state.step, "interrupted; checkpoint written");
                    }
                    return Ok(self.summary(Outcome::Interrupted, last_checkpoint, train_time, wait_time));
                }
                if self.state.step >= total {
                    epoch_done = self.state.samples_in_epoch >= per_epoch * global_batch;
                    break;
                }
            }
            if epoch_done {
                if evaluations == Every::Epoch && evaluated_at != Some(self.state.step) {
                    self.evaluate(evaluator.as_deref_mut(), observer)?;
                    evaluated_at = Some(self.state.step);
                }
                self.log_epoch()?;
                self.state.epoch += 1;
                self.state.samples_in_epoch = 0;
                self.state.epoch_loss_sum = 0.0;
                self.state.epoch_correct = 0.0;
                self.state.epoch_seen = 0.0;
                if checkpoints == Every::Epoch {
                    last_checkpoint = Some(self.save_checkpoint()?);
                    saved_at = Some(self.state.step);
                }
            }
        }
        // The run ends evaluated and saved at its last step, whatever the period.
        if evaluations != Every::Never && evaluated_at != Some(self.state.step) {
            self.evaluate(evaluator.as_deref_mut(), observer)?;
        }
        if saved_at != Some(self.state.step) {
            last_checkpoint = Some(self.save_checkpoint()?);
        }
        if let Some(dist) = &self.dist {
            dist.barrier(self.state.step)?;
        }
        if self.is_main() {
            self.export_backbone(&self.run_dir.join("model.safetensors"))?;
        }
        Ok(self.summary(Outcome::Finished, last_checkpoint, train_time, wait_time))
    }

    /// Whether to stop after this step: this process's flag, or under data parallelism any
    /// rank's flag as summed during the step (so that all ranks stop at the same step).
    fn stop_requested(&self) -> bool {
        if self.dist.is_some() {
            self.stop_agreed
        } else {
            self.stop.load(Ordering::SeqCst)
        }
    }

    /// Data parallelism: checks that every rank starts from the same state, then gives every
    /// rank rank 0's model and momentum buffers.
    fn sync_start(&self, len: usize, num_classes: i64) -> Result<()> {
        let Some(dist) = &self.dist else { return Ok(()) };
        let step = self.state.step;
        // Ranks may run on different devices of one machine; everything else must match.
        let fingerprint = Config { device: DeviceChoice::Auto, ..self.config.clone() }.to_toml();
        let vars: Vec<Tensor> = self.named_variables().into_iter().map(|(_, t)| t).collect();
        let momentum: Vec<Tensor> = self.sgd.momentum_buffers().into_iter().map(|(_, t)| t).collect();
        let facts = [
            ("step", step as i64),
            ("epoch", self.state.epoch as i64),
            ("samples into the epoch", self.state.samples_in_epoch as i64),
            ("config checksum", i64::from(crc32fast::hash(fingerprint.as_bytes()))),
            ("training samples", len as i64),
            ("classes", num_classes),
            ("model variables", vars.len() as i64),
            ("momentum buffers", momentum.len() as i64),
        ];
        let (names, values): (Vec<&str>, Vec<i64>) = facts.into_iter().unzip();
        dist.check_same(&names, &values, step)?;
        dist.broadcast_flat(&vars, step, "broadcasting rank 0's model")?;
        dist.broadcast_flat(&momentum, step, "broadcasting rank 0's momentum buffers")?;
        Ok(())
    }

    fn summary(&self, outcome: Outcome, last_checkpoint: Option<PathBuf>, train: Duration, wait: Duration) -> FitSummary {
        FitSummary {
            outcome,
            steps: self.state.step,
            last_checkpoint,
            metrics: self.last_metrics.clone(),
            train_s: train.as_secs_f64(),
            data_wait_s: wait.as_secs_f64(),
        }
    }

    /// One step of Algorithm 1 on a batch.
    pub fn train_step(&mut self, batch: &Batch, schedule: &MultiStep, data_wait: Duration) -> Result<StepStats> {
        let images = batch.images.f_to_device(self.device)?;
        let labels = batch.labels.f_to_device(self.device)?;
        let lr = schedule.lr_at(self.state.step);

        let features = match self.config.precision {
            Precision::Fp32 => self.backbone.forward_t(&images, true)?, //   [batch, feature_dim]
            // bf16 autocast for the backbone only; the features come back as float32 for the
            // classifier, the center loss and the Eq. 4 update.
            Precision::Bf16 => facerec_ops::autocast::bf16(self.device, || self.backbone.forward_t(&images, true))??
                .f_to_kind(Kind::Float)?,
        };
        let softmax = self.head.forward(&features, &labels)?;
        let zero = Tensor::f_zeros([], (Kind::Float, self.device))?;
        let (objective, center_loss) = match &self.center {
            Some(center) => {
                let out = center.forward(&features, &labels)?;
                (softmax.loss.f_add(&out.objective)?, out.loss)
            }
            None => (softmax.loss.shallow_clone(), zero),
        };
        let correct = softmax.logits.f_argmax(-1, false)?.f_eq_tensor(&labels)?.f_sum(Kind::Float)?;
        let step = self.state.step + 1;
        let world = self.world() as f64;
        // One transfer for all the numbers of the step; under data parallelism one all-reduce
        // sums them (with the stop flags) over the ranks first.
        let stop = f64::from(u8::from(self.dist.is_some() && self.stop.load(Ordering::SeqCst)));
        let numbers = Tensor::f_stack(
            &[objective.f_detach()?, softmax.loss.f_detach()?, center_loss, correct, Tensor::from(stop).f_to_device(self.device)?]
                .iter()
                .map(|t| t.f_to_kind(Kind::Double))
                .collect::<std::result::Result<Vec<_>, _>>()?,
            0,
        )?;
        if let Some(dist) = &self.dist {
            dist.all_reduce_flat(std::slice::from_ref(&numbers), 1.0, step, "summing the losses over the ranks")?;
        }
        let numbers = Vec::<f64>::try_from(&numbers.f_to_device(Device::Cpu)?)?;
        let (loss, softmax_loss, center_value, correct) =
            (numbers[0] / world, numbers[1] / world, numbers[2] / world, numbers[3]);
        self.stop_agreed = numbers[4] > 0.0;
        if !loss.is_finite() {
            return Err(TrainError::Diverged {
                step: self.state.step + 1,
                what: format!("the loss (softmax {softmax_loss}, center {center_value})"),
                value: loss,
                kept: self.latest_checkpoint_note(),
            });
        }

        self.sgd.zero_grad()?;
        objective.f_backward()?;
        if let Some(dist) = &self.dist {
            let grads: Vec<Tensor> = self.sgd.params().map(|(_, p)| p.grad()).filter(Tensor::defined).collect();
            dist.all_reduce_flat(&grads, 1.0 / world, step, "averaging the gradients")?;
        }
        let grad_norm = self.sgd.clip_grad_norm(self.config.optim.clip_grad_norm)?;
        if let Some(center) = &self.center {
            let features = features.f_detach()?;
            match &self.dist {
                None => center.update_centers(&features, &labels)?,
                Some(dist) => {
                    // Every rank applies the global batch's Eq. 4 step; rank 0's result wins.
                    let (all_features, all_labels) = dist.gather_batch(&features, &labels, step)?;
                    center.update_centers(&all_features, &all_labels)?;
                    let (touched, _, _) = all_labels.f_internal_unique2(true, false, false)?;
                    dist.broadcast_rows(center.centers(), &touched, step)?;
                }
            }
        }
        self.sgd.step(lr)?;
        if let Some(dist) = &self.dist {
            if !self.dist_buffers.is_empty() {
                dist.broadcast_flat(&self.dist_buffers, step, "broadcasting rank 0's buffers")?;
            }
        }

        let n = labels.size()[0] as usize * self.world();
        self.state.step += 1;
        self.state.samples_in_epoch += n;
        self.state.epoch_loss_sum += loss * n as f64;
        self.state.epoch_correct += correct;
        self.state.epoch_seen += n as f64;
        let w = &mut self.state.log_window;
        w.steps += 1;
        w.loss += loss;
        w.softmax_loss += softmax_loss;
        w.center_loss += center_value;
        w.correct += correct;
        w.seen += n as f64;
        w.grad_norm += grad_norm;
        Ok(StepStats {
            step: self.state.step,
            epoch: self.state.epoch,
            lr,
            loss,
            softmax_loss,
            center_loss: center_value,
            accuracy: correct / n as f64,
            batch_size: n,
            step_time: Duration::ZERO,
            data_wait,
        })
    }

    /// One line of `steps.jsonl` (and TensorBoard, and the log): the means of the losses and
    /// the accuracy over the steps since the previous line, and the rate of this step.
    fn log_step(&mut self, s: &StepStats, announce: bool) -> Result<()> {
        let w = std::mem::take(&mut self.state.log_window);
        let steps = w.steps.max(1) as f64;
        let (loss, softmax, center, accuracy, grad_norm) =
            (w.loss / steps, w.softmax_loss / steps, w.center_loss / steps, w.correct / w.seen.max(1.0), w.grad_norm / steps);
        // tracing's levels are static per call site: one call site each.
        macro_rules! step_line {
            ($level:expr) => {
                tracing::event!(
                    $level,
                    step = s.step,
                    epoch = s.epoch,
                    lr = s.lr,
                    loss = format!("{loss:.4}"),
                    softmax = format!("{softmax:.4}"),
                    center = format!("{center:.4}"),
                    acc = format!("{accuracy:.3}"),
                    grad_norm = format!("{grad_norm:.3}"),
                    "step"
                )
            };
        }
        if announce {
            step_line!(tracing::Level::INFO);
        } else {
            step_line!(tracing::Level::DEBUG);
        }
        let rec = record(&[
            ("step", s.step as f64),
            ("epoch", s.epoch as f64),
            ("lr", s.lr),
            ("loss", loss),
            ("softmax_loss", softmax),
            ("center_loss", center),
            ("accuracy", accuracy),
            ("grad_norm", grad_norm),
            ("steps_averaged", steps),
            ("elapsed_s", self.state.elapsed_s),
        ]);
        if let Some(log) = &mut self.steps_log {
            log.write(&rec)?;
        }
        if let Some(ev) = &mut self.events {
            for (tag, v) in [("train/loss", loss), ("train/softmax_loss", softmax), ("train/center_loss", center),
                             ("train/accuracy", accuracy), ("train/grad_norm", grad_norm), ("train/lr", s.lr)] {
                ev.scalar(tag, s.step, v)?;
            }
        }
        Ok(())
    }

    fn log_epoch(&mut self) -> Result<()> {
        let seen = self.state.epoch_seen.max(1.0);
        let mut fields = vec![
            ("step", self.state.step as f64),
            ("epoch", self.state.epoch as f64),
            ("train_loss", self.state.epoch_loss_sum / seen),
            ("train_accuracy", self.state.epoch_correct / seen),
            ("elapsed_s", self.state.elapsed_s),
        ];
        let eval: Vec<(String, f64)> = self.last_metrics.clone();
        fields.extend(eval.iter().map(|(k, v)| (k.as_str(), *v)));
        tracing::info!(
            epoch = self.state.epoch,
            train_loss = format!("{:.4}", self.state.epoch_loss_sum / seen),
            train_acc = format!("{:.4}", self.state.epoch_correct / seen),
            "epoch done {}",
            eval.iter().map(|(k, v)| format!("{k}={v:.4}")).collect::<Vec<_>>().join(" ")
        );
        if let Some(log) = &mut self.metrics_log {
            log.write(&record(&fields))?;
        }
        Ok(())
    }

    fn evaluate(&mut self, evaluator: Option<&mut (dyn Evaluator + '_)>, observer: &mut dyn Observer) -> Result<()> {
        let Some(evaluator) = evaluator else { return Ok(()) };
        let metrics = {
            let _guard = tch::no_grad_guard();
            evaluator.evaluate(&self.parts())?
        };
        observer.on_eval(self.state.step, &metrics);
        tracing::info!(
            step = self.state.step,
            "eval {}",
            metrics.iter().map(|(k, v)| format!("{k}={v:.4}")).collect::<Vec<_>>().join(" ")
        );
        let mut fields = vec![("step", self.state.step as f64), ("epoch", self.state.epoch as f64)];
        fields.extend(metrics.iter().map(|(k, v)| (k.as_str(), *v)));
        if let Some(log) = &mut self.metrics_log {
            let mut rec = record(&fields);
            rec.insert("kind".into(), "eval".into());
            log.write(&rec)?;
        }
        if let Some(ev) = &mut self.events {
            for (k, v) in &metrics {
                ev.scalar(&format!("eval/{k}"), self.state.step, *v)?;
            }
        }
        self.last_metrics = metrics;
        Ok(())
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
}
