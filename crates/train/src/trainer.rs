//! The training loop: one visible loop over steps, with the joint loss of Wen et al. (ECCV
//! 2016, Algorithm 1): forward, `L = L_S + lambda * L_C`, backward, center update (Eq. 4),
//! SGD step; logging, periodic evaluation and checkpoints around it.
//!
//! With a process group ([`Trainer::distributed`]) the same loop trains data-parallel:
//! each rank takes its slice of every global batch and the hooks of [`crate::distributed`]
//! keep the ranks identical; only rank 0 writes files.

use facerec_core::run_files;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tch::{nn, Device, Kind, Tensor};

use facerec_data::loader::{Batch, Loader, LoaderConfig, Source};
use facerec_dist::{Backend, ProcessGroup};
use facerec_losses::{ClassShard, Loss, LossOutput, Sampling, SolverStep};
use facerec_model::{weights, Backbone};

use crate::checkpoint::{self, Checkpoint, TrainState};
use crate::config::{ClipScope, Every, OptimName, Precision, TrainConfig};
use crate::distributed::{per_rank_batch, Replicas};
use crate::error::{Result, TrainError};
use crate::observe::{Both, EpochLine, Evaluation, LogLine, Observer, RunStart, StepStats};
use crate::optim::Optimizer;
use crate::parallel::Parallel;
use crate::run_log::RunLog;
use crate::schedule::Schedule;

/// Read-only access to the model for evaluation.
pub struct ModelParts<'a> {
    pub backbone: &'a dyn Backbone,
    /// The loss, with its classifier (and centers, where it has them).
    pub loss: &'a dyn Loss,
    pub device: Device,
}

/// The periodic evaluation (test accuracy, LFW verification, ...), supplied by the caller.
pub trait Evaluator {
    /// Named metrics of the model as it is now.
    fn evaluate(&mut self, model: &ModelParts<'_>) -> Result<Vec<(String, f64)>>;
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

/// `fit`'s plan of the run and the state of its periodic jobs.
struct FitRun {
    per_epoch: usize,
    total: usize,
    schedule: Schedule,
    loader: LoaderConfig,
    log_every: usize,
    evaluated_at: Option<usize>,
    saved_at: Option<usize>,
    last_checkpoint: Option<PathBuf>,
    train_time: Duration,
    wait_time: Duration,
}

/// A step's numbers, summed over the ranks: the objective, the loss's terms (means over the
/// ranks) and the correct count (a sum).
struct StepNumbers {
    loss: f64,
    terms: Vec<(&'static str, f64)>,
    correct: f64,
}

impl StepNumbers {
    /// The numbers of a step made of these micro-batches' (of equal size): the means of the
    /// objective and terms, the sum of the correct counts.
    fn mean(parts: Vec<StepNumbers>) -> StepNumbers {
        let k = parts.len().max(1) as f64;
        let mut it = parts.into_iter();
        let Some(mut acc) = it.next() else { return StepNumbers { loss: 0.0, terms: Vec::new(), correct: 0.0 } };
        for p in it {
            acc.loss += p.loss;
            acc.correct += p.correct;
            for ((_, a), (_, b)) in acc.terms.iter_mut().zip(p.terms) {
                *a += b;
            }
        }
        acc.loss /= k;
        for (_, v) in &mut acc.terms {
            *v /= k;
        }
        acc
    }
}

/// Owns the model, the optimiser and the training state of one run.
pub struct Trainer {
    config: TrainConfig,
    run_dir: PathBuf,
    device: Device,
    vs: nn::VarStore,
    backbone: Box<dyn Backbone>,
    loss: Box<dyn Loss>,
    optimizer: Optimizer,
    state: TrainState,
    stop: Arc<AtomicBool>,
    last_metrics: Vec<(String, f64)>,
    /// This process alone or the ranks of a data-parallel run, and the variables each holds
    /// its own classes' rows of; and whether any rank asked to stop during the last step.
    parallel: Parallel,
    stop_agreed: bool,
    /// The identities the classifier separates.
    num_classes: i64,
    /// The steps before this one train all but the backbone (`schedule.freeze_backbone`).
    frozen_steps: usize,
}

impl Trainer {
    /// Builds the model for `num_classes` identities, to train into `run_dir` (created if
    /// needed), in this process alone. To continue a run, [`Trainer::restore`] its latest
    /// checkpoint.
    pub fn new(config: TrainConfig, run_dir: &Path, num_classes: i64) -> Result<Self> {
        Trainer::build(config, run_dir, num_classes, None)
    }

    /// [`Trainer::new`] as one rank of a data-parallel run over `group`; with `[parallel]
    /// shard_head` this rank holds its share of the classes only. Call [`Trainer::restore`]
    /// after it: only rank 0 touches the run directory's files. Fails when the global batch
    /// (`optim.batch_size`) does not split evenly over the ranks, when the classes cannot be
    /// sharded over them, or when the group's backend cannot take tensors of the training
    /// device.
    pub fn distributed(config: TrainConfig, run_dir: &Path, num_classes: i64, group: ProcessGroup) -> Result<Self> {
        Trainer::build(config, run_dir, num_classes, Some(group))
    }

    fn build(config: TrainConfig, run_dir: &Path, num_classes: i64, group: Option<ProcessGroup>) -> Result<Self> {
        if config.threads > 0 {
            tch::set_num_threads(config.threads as i32);
        }
        let device = config.device.resolve()?;
        let config_err = |msg: String| TrainError::Config { path: run_dir.join(run_files::CONFIG), msg };
        let (rank, world) = group.as_ref().map_or((0, 1), |g| (g.rank(), g.world_size()));
        let per_rank = rank_batch(&config, world).map_err(config_err)?;
        if let Some(group) = &group {
            check_backend(group, device).map_err(config_err)?;
            tracing::info!(
                rank,
                world,
                backend = group.backend().name(),
                "data-parallel training: {per_rank} samples per rank and step, global batch {}",
                config.optim.batch_size
            );
        }
        let shard = match config.parallel.shard_head {
            true => Some(ClassShard::new(num_classes, rank, world).map_err(|e| config_err(e.to_string()))?),
            false => None,
        };
        let (vs, backbone, loss) = build_model(&config, shard.as_ref(), num_classes, device)?;
        if let Some(shard) = &shard {
            tracing::info!(rank, world, "classifier sharded by class: this rank holds classes {}..{} of {num_classes}", shard.start, shard.end);
        }
        let optimizer = build_optimizer(&config, &vs);
        // Every built-in loss has a classifier; a plugged-in one may have nothing of its own.
        if config.schedule.freeze_backbone > 0 && optimizer.params().all(|(name, _)| name.starts_with("backbone.")) {
            return Err(config_err(format!(
                "schedule.freeze_backbone: the loss {} has no parameters of its own, so nothing would train while the backbone is frozen",
                config.loss.name()
            )));
        }
        let parallel = match group {
            Some(group) => Parallel::ranks(group, &config, shard, &vs, loss.as_ref(), device).map_err(config_err)?,
            None => Parallel::alone(shard, &vs, loss.as_ref()),
        };
        std::fs::create_dir_all(run_dir).map_err(|e| TrainError::io(run_dir, e))?;
        Ok(Trainer {
            config,
            run_dir: run_dir.to_path_buf(),
            device,
            vs,
            backbone,
            loss,
            optimizer,
            state: TrainState::default(),
            stop: Arc::new(AtomicBool::new(false)),
            last_metrics: Vec::new(),
            parallel,
            stop_agreed: false,
            num_classes,
            frozen_steps: 0,
        })
    }

    /// Whether this process writes the run's files (rank 0, or the only process).
    pub fn is_main(&self) -> bool {
        self.parallel.replicas.is_main()
    }

    pub fn device(&self) -> Device {
        self.device
    }

    pub fn state(&self) -> &TrainState {
        &self.state
    }

    pub fn config(&self) -> &TrainConfig {
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
            loss: self.loss.as_ref(),
            device: self.device,
        }
    }

    /// Every model variable by name (sorted), including the center table.
    pub fn named_variables(&self) -> Vec<(String, Tensor)> {
        let mut vars: Vec<(String, Tensor)> = self.vs.variables().into_iter().collect();
        vars.sort_by(|a, b| a.0.cmp(&b.0));
        vars
    }

    /// Overwrites the backbone's variables (parameters and BatchNorm statistics) with
    /// `weights`, named as in a backbone file (no `backbone.` prefix). Every variable must be
    /// there with its shape, and nothing else: the error, naming `source`, lists what is
    /// missing, unexpected or misshapen.
    pub fn init_backbone(&mut self, weights: &[(String, Tensor)], source: &Path) -> Result<()> {
        let vars = facerec_model::weights::strip_prefix(&self.vs.variables(), "backbone");
        Ok(facerec_model::weights::copy_into(&vars, weights, source)?)
    }

    /// Overwrites the loss's classifier (its `head.*` variables) with `weights`, named with
    /// their `head.` prefix, whole tables of one row per class (a class-sharded rank takes its
    /// rows). Every `head.*` variable must be there with its shape, and nothing else.
    pub fn init_head(&mut self, weights: Vec<(String, Tensor)>, source: &Path) -> Result<()> {
        let bad = |msg: String| TrainError::Checkpoint { path: source.to_path_buf(), msg };
        let weights = self.parallel.my_rows(weights).map_err(bad)?;
        let vars: Vec<(String, Tensor)> = self.named_variables().into_iter().filter(|(k, _)| k.starts_with("head.")).collect();
        Ok(facerec_model::weights::copy_into(&vars, &weights, source)?)
    }

    /// The optimiser's state, `<slot>.<parameter name>` (what exists yet).
    pub fn optimizer_state(&self) -> Vec<(String, Tensor)> {
        self.optimizer.state()
    }

    /// The newest valid checkpoint of the run directory, if any (temporaries of an interrupted
    /// write removed first).
    pub fn latest_checkpoint(&self) -> Result<Option<Checkpoint>> {
        checkpoint::clean_temporaries(&self.run_dir);
        checkpoint::latest_valid(&self.run_dir)
    }

    /// Fails unless this trainer can continue `ck` where it stopped: its position in the epoch
    /// must be a whole number of this run's batches.
    pub fn check_resumable(&self, ck: &Checkpoint) -> Result<()> {
        let global = self.config.optim.batch_size;
        if !ck.state.samples_in_epoch.is_multiple_of(global) {
            return Err(TrainError::Checkpoint {
                path: ck.path.clone(),
                msg: format!(
                    "it stopped {} samples into an epoch, not a multiple of the batch size {global}: \
                     resume with the batch size it was trained with",
                    ck.state.samples_in_epoch
                ),
            });
        }
        Ok(())
    }

    /// Restores model, momentum and state from a loaded checkpoint.
    /// A class-sharded classifier takes its rows of the checkpoint's whole tables, so a run
    /// resumes on any number of ranks, sharded or not.
    pub fn restore(&mut self, ck: Checkpoint) -> Result<()> {
        self.check_resumable(&ck)?;
        let bad = |msg: String| TrainError::Checkpoint { path: ck.path.clone(), msg };
        if let Some(classes) = ck.num_classes.filter(|&c| c != self.num_classes) {
            return Err(bad(format!(
                "it was trained on {classes} classes but the training data has {}: its classifier and center table \
                 cannot continue on other classes (start a new run, with [model] init = this run's model.safetensors \
                 to keep the backbone)",
                self.num_classes
            )));
        }
        let model = self.parallel.my_rows(ck.model).map_err(bad)?;
        let optimizer = self.parallel.my_rows(ck.optimizer).map_err(bad)?;
        weights::copy_into(&self.named_variables(), &model, &ck.path)?;
        self.optimizer.set_state(optimizer).map_err(bad)?;
        self.state = ck.state;
        // Metrics and TensorBoard events written after the checkpoint belong to the lost part
        // of the run.
        if self.is_main() {
            RunLog::truncate_after(&self.run_dir, self.state.step)?;
        }
        tracing::info!(step = self.state.step, epoch = self.state.epoch, "resumed from {}", ck.path.display());
        Ok(())
    }

    /// Writes a checkpoint of the current state (refusing to save non-finite weights). Under
    /// data parallelism rank 0 writes it and the other ranks return the path it goes to; a
    /// class-sharded classifier is gathered whole into it, so that any number of ranks can
    /// resume it.
    pub fn save_checkpoint(&self) -> Result<PathBuf> {
        let vars = self.named_variables();
        let mut non_finite = None;
        for (name, t) in &vars {
            if !bool::try_from(t.f_isfinite()?.f_all()?)? {
                non_finite = Some(name.clone());
                break;
            }
        }
        // Sharded variables differ between the ranks: they agree on whether to stop.
        if self.parallel.on_any_shard(non_finite.is_some(), self.state.step, "checking the weights are finite")? {
            return Err(TrainError::Diverged {
                step: self.state.step,
                what: format!("parameter {}", non_finite.unwrap_or_else(|| "of another rank's classifier shard".into())),
                value: f64::NAN,
                kept: self.latest_checkpoint_note(),
            });
        }
        let vars = self.parallel.whole_tables(vars, self.state.step)?;
        let optimizer = self.parallel.whole_tables(self.optimizer.state(), self.state.step)?;
        if !self.is_main() {
            return Ok(checkpoint::path(&self.run_dir, self.state.step));
        }
        let path = checkpoint::save(
            &self.run_dir,
            &checkpoint::Contents { state: &self.state, model: &vars, optimizer: &optimizer, num_classes: self.num_classes },
            &self.config.resolved,
            self.parallel.replicas.world(),
            self.config.checkpoint.keep,
        )?;
        tracing::debug!("checkpoint {}", path.display());
        Ok(path)
    }

    /// Saves the backbone alone, with PyTorch names and its config in the metadata, to `path`.
    pub fn export_backbone(&self, path: &Path) -> Result<()> {
        let vars = weights::strip_prefix(&self.vs.variables(), "backbone");
        facerec_model::saved::save_backbone(path, &self.config.backbone, &vars)?;
        Ok(())
    }

    fn latest_checkpoint_note(&self) -> String {
        checkpoint::list(&self.run_dir)
            .first()
            .map(|(_, p)| format!(" ({})", p.display()))
            .unwrap_or_else(|| " (none was written yet)".to_owned())
    }

    /// Steps per epoch and total steps for a data set of `len` samples.
    pub fn plan(&self, len: usize) -> Result<(usize, usize, Schedule)> {
        let per_epoch = len / self.config.optim.batch_size;
        if per_epoch == 0 {
            return Err(TrainError::Config {
                path: self.run_dir.join(run_files::CONFIG),
                msg: format!("optim.batch_size {} is larger than the {len} training samples", self.config.optim.batch_size),
            });
        }
        let s = &self.config.schedule;
        let total = match (s.epochs, s.steps) {
            (Some(e), _) => e * per_epoch,
            (_, Some(n)) => n,
            _ => unreachable!("validated: epochs or steps"),
        };
        let schedule = s
            .schedule(self.config.optim.lr, total, per_epoch)
            .map_err(|msg| TrainError::Config { path: self.run_dir.join(run_files::CONFIG), msg })?;
        Ok((per_epoch, total, schedule))
    }

    /// Trains until the schedule ends (or the stop flag is set), the run logged and its records
    /// written by a [`RunLog`] and reported to `observer`.
    pub fn fit(
        &mut self,
        source: Arc<dyn Source>,
        flip: bool,
        evaluator: Option<&mut dyn Evaluator>,
        observer: &mut dyn Observer,
    ) -> Result<FitSummary> {
        let mut log = RunLog::new(&self.run_dir, self.is_main());
        self.fit_observed(source, flip, evaluator, &mut Both(&mut log, observer))
    }

    fn fit_observed(
        &mut self,
        source: Arc<dyn Source>,
        flip: bool,
        mut evaluator: Option<&mut dyn Evaluator>,
        observer: &mut dyn Observer,
    ) -> Result<FitSummary> {
        let mut run = self.begin(source.as_ref(), flip)?;
        let terms = self.loss.terms().into_iter().map(|t| (t.name, t.weight)).collect();
        observer.on_start(&RunStart { start_step: self.state.step, total_steps: run.total, config: &self.config.resolved, terms })?;
        while self.state.step < run.total {
            let start_batch = self.state.samples_in_epoch / self.config.optim.batch_size;
            let mut loader = Loader::new(source.clone(), &run.loader, self.state.epoch, start_batch)?;
            loop {
                let t_wait = Instant::now();
                let Some(batch) = loader.next() else { break };
                let wait = t_wait.elapsed();
                let t_step = Instant::now();
                let stats = self.train_step(&batch?, &run.schedule, wait)?;
                let step_time = t_step.elapsed();
                (run.train_time, run.wait_time) = (run.train_time + step_time, run.wait_time + wait);
                self.state.elapsed_s += (step_time + wait).as_secs_f64();
                observer.on_step(&StepStats { step_time, ..stats.clone() })?;
                if self.after_step(&stats, &mut run, evaluator.as_deref_mut(), observer)? {
                    return Ok(self.summary(Outcome::Interrupted, run));
                }
                if self.state.step >= run.total {
                    break;
                }
            }
            // A run that ends mid-epoch (a step budget) does not close the epoch.
            if self.state.samples_in_epoch >= run.per_epoch * self.config.optim.batch_size || self.state.step < run.total {
                self.end_epoch(&mut run, evaluator.as_deref_mut(), observer)?;
            }
        }
        // The run ends saved and evaluated at its last step, whatever the periods: the weights
        // first, so that no failure of the last evaluation (or of the report after it) loses them.
        self.keep_weights(&mut run)?;
        if self.config.evaluate != Every::Never && run.evaluated_at != Some(self.state.step) {
            self.evaluate_or_keep(&mut run, evaluator, observer)?;
        }
        Ok(self.summary(Outcome::Finished, run))
    }

    /// Checks the data against the model, plans the run and brings the ranks into step.
    fn begin(&mut self, source: &dyn Source, flip: bool) -> Result<FitRun> {
        if source.image_shape() != self.backbone.input_shape() {
            return Err(TrainError::Config {
                path: self.run_dir.join(run_files::CONFIG),
                msg: format!(
                    "the training images are {:?} but model.backbone takes {:?}",
                    source.image_shape(),
                    self.backbone.input_shape()
                ),
            });
        }
        let (per_epoch, total, schedule) = self.plan(source.len())?;
        self.frozen_steps = self.config.schedule.frozen_steps(per_epoch);
        let world = self.parallel.replicas.world();
        let rank_batch = self.config.optim.batch_size / world;
        let loader = LoaderConfig {
            rank_batch,
            shuffle: self.config.shuffle,
            flip,
            seed: self.config.seed,
            rank: self.parallel.replicas.rank(),
            world,
            prefetch: 4,
            images_per_identity: self.config.optim.images_per_identity,
        };
        // Before any file is written: e.g. optim.images_per_identity not dividing a rank's batch.
        loader.validate().map_err(|e| TrainError::Config { path: self.run_dir.join(run_files::CONFIG), msg: format!("optim: {e}") })?;
        self.sync_start(source.len(), source.num_classes())?;
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
        Ok(FitRun {
            per_epoch,
            total,
            schedule,
            loader,
            log_every: self.config.log.interval(total),
            evaluated_at: None,
            // A resumed run starts at its checkpoint's step: that one is saved already.
            saved_at: (self.state.step > 0).then_some(self.state.step),
            last_checkpoint: (self.state.step > 0).then(|| checkpoint::path(&self.run_dir, self.state.step)),
            train_time: Duration::ZERO,
            wait_time: Duration::ZERO,
        })
    }

    /// The periodic jobs after a step: its log line, an evaluation and a checkpoint when due,
    /// and a checkpoint before stopping. Returns whether to stop.
    fn after_step(&mut self, stats: &StepStats, run: &mut FitRun, evaluator: Option<&mut (dyn Evaluator + '_)>, observer: &mut dyn Observer) -> Result<bool> {
        let step = self.state.step;
        if step.is_multiple_of(run.log_every) || step == run.total {
            // Every line goes to steps.jsonl; the terminal gets about ten of them.
            let announce = step.is_multiple_of(run.log_every * 25) || step == run.total;
            self.log_step(stats, announce, observer)?;
        }
        if self.config.evaluate.after_step(step) {
            self.evaluate_or_keep(run, evaluator, observer)?;
        }
        if self.config.checkpoint.every().after_step(step) {
            run.last_checkpoint = Some(self.save_checkpoint()?);
            run.saved_at = Some(step);
        }
        if !self.stop_requested() {
            return Ok(false);
        }
        if run.saved_at != Some(step) {
            run.last_checkpoint = Some(self.save_checkpoint()?);
        }
        if self.is_main() {
            tracing::warn!(step, "interrupted; checkpoint written");
        }
        Ok(true)
    }

    /// The end of an epoch: its evaluation (when evaluating per epoch), its line of
    /// `metrics.jsonl`, the next epoch's counters, and its checkpoint (when saving per epoch).
    fn end_epoch(&mut self, run: &mut FitRun, evaluator: Option<&mut (dyn Evaluator + '_)>, observer: &mut dyn Observer) -> Result<()> {
        if self.config.evaluate == Every::Epoch && run.evaluated_at != Some(self.state.step) {
            self.evaluate_or_keep(run, evaluator, observer)?;
        }
        self.log_epoch(observer)?;
        self.state.epoch += 1;
        self.state.samples_in_epoch = 0;
        self.state.epoch_loss_sum = 0.0;
        self.state.epoch_correct = 0.0;
        self.state.epoch_seen = 0.0;
        if self.config.checkpoint.every() == Every::Epoch {
            run.last_checkpoint = Some(self.save_checkpoint()?);
            run.saved_at = Some(self.state.step);
        }
        Ok(())
    }

    /// Whether to stop after this step: this process's flag, or under data parallelism any
    /// rank's flag as summed during the step (so that all ranks stop at the same step).
    fn stop_requested(&self) -> bool {
        match self.parallel.replicas {
            Replicas::One => self.stop.load(Ordering::SeqCst),
            Replicas::Many { .. } => self.stop_agreed,
        }
    }

    /// Data parallelism: checks that every rank starts from the same state, then gives every
    /// rank rank 0's model and momentum buffers.
    fn sync_start(&self, len: usize, num_classes: i64) -> Result<()> {
        let vars = self.parallel.replicated(self.named_variables());
        let optimizer = self.parallel.replicated(self.optimizer.state());
        let facts = [
            ("step", self.state.step as i64),
            ("epoch", self.state.epoch as i64),
            ("samples into the epoch", self.state.samples_in_epoch as i64),
            ("config checksum", i64::from(self.config.fingerprint)),
            ("training samples", len as i64),
            ("classes", num_classes),
            ("model variables", vars.len() as i64),
            ("optimiser state tensors", optimizer.len() as i64),
        ];
        self.parallel.replicas.start(&facts, &vars, &optimizer, self.state.step)
    }

    fn summary(&self, outcome: Outcome, run: FitRun) -> FitSummary {
        FitSummary {
            outcome,
            steps: self.state.step,
            last_checkpoint: run.last_checkpoint,
            metrics: self.last_metrics.clone(),
            train_s: run.train_time.as_secs_f64(),
            data_wait_s: run.wait_time.as_secs_f64(),
        }
    }

    /// One step of Algorithm 1 on a batch: forward, the loss, backward, the loss's own update
    /// (Eq. 4), the optimiser's step; the ranks kept in step by [`Replicas`]' hooks. With
    /// `optim.gradient_accumulation = K` the batch goes through forward and backward in K
    /// micro-batches, each objective divided by K, so that the gradients add up to the whole
    /// batch's mean; the loss's update and the optimiser's step see the whole batch.
    pub fn train_step(&mut self, batch: &Batch, schedule: &Schedule, data_wait: Duration) -> Result<StepStats> {
        let images = batch.images.f_to_device(self.device)?;
        let labels = batch.labels.f_to_device(self.device)?;
        let (lr, step) = (schedule.lr_at(self.state.step), self.state.step + 1);
        let k = self.config.optim.gradient_accumulation;
        let frozen = self.state.step < self.frozen_steps;
        self.optimizer.freeze("backbone.", frozen);
        self.optimizer.zero_grad()?;
        self.parallel.replicas.before_backward(step)?;
        let micro = (labels.size()[0] / k as i64).max(1);
        let (mut features, mut numbers) = (Vec::with_capacity(k), Vec::with_capacity(k));
        for (images, labels) in images.f_split(micro, 0)?.iter().zip(labels.f_split(micro, 0)?.iter()) {
            let f = self.forward(images, frozen)?; // [micro-batch, feature_dim]
            let out = self.loss.forward_ranks(&f, labels, &self.parallel.replicas.for_loss(step))?;
            numbers.push(self.step_numbers(&out, labels, step)?);
            match k {
                1 => out.objective.f_backward()?,
                _ => out.objective.f_div_scalar(k as f64)?.f_backward()?,
            }
            features.push(f.f_detach()?);
        }
        let (features, numbers) = (Tensor::f_cat(&features, 0)?, StepNumbers::mean(numbers));
        self.parallel.average_gradients(&self.optimizer, step)?;
        let grad_norm = self.clip_gradients(step)?;
        if !grad_norm.is_finite() {
            // A finite loss can still have a non-finite gradient (an overflow in the backward
            // pass): stop before the step writes it into the weights. After the averaging, every
            // rank sees the same norm and stops at the same step.
            let what = "the gradient norm (the loss was finite; the step was not applied)".to_owned();
            return Err(TrainError::Diverged { step, what, value: grad_norm, kept: self.latest_checkpoint_note() });
        }
        let solver = SolverStep { lr, momentum: self.optimizer.momentum(), weight_decay: self.optimizer.weight_decay };
        self.loss.after_step(&features, &labels, solver, &self.parallel.replicas.for_loss(step))?;
        self.optimizer.step(lr)?;
        self.parallel.replicas.share_buffers(step)?;
        let samples = labels.size()[0] as usize * self.parallel.replicas.world();
        Ok(self.account(numbers, samples, lr, grad_norm, data_wait))
    }

    /// The global gradient norm of the clipped parameters (`optim.clip`), their gradients
    /// scaled down to `optim.clip_grad_norm` when the norm exceeds it.
    fn clip_gradients(&mut self, step: usize) -> Result<f64> {
        let scope = self.config.optim.clip;
        let within = move |name: &str| scope == ClipScope::All || name.starts_with("backbone.");
        self.parallel.clip_gradients(&mut self.optimizer, self.config.optim.clip_grad_norm, within, step)
    }

    /// The backbone's forward pass in training mode: in float32, or under bf16 autocast with the
    /// features cast back to float32 for the loss; without gradients while `frozen` (its
    /// BatchNorm statistics still follow the data).
    fn forward(&self, images: &Tensor, frozen: bool) -> Result<Tensor> {
        let _frozen = frozen.then(tch::no_grad_guard);
        Ok(match self.config.precision {
            Precision::Fp32 => self.backbone.forward_t(images, true)?,
            Precision::Bf16 => facerec_ops::autocast::bf16(self.device, || self.backbone.forward_t(images, true))??.f_to_kind(Kind::Float)?,
        })
    }

    /// The step's objective, terms and correct count, summed over the ranks (with the stop
    /// flags) in one transfer; fails if the loss is not finite.
    fn step_numbers(&mut self, out: &LossOutput, labels: &Tensor, step: usize) -> Result<StepNumbers> {
        let correct = out.predictions.f_eq_tensor(labels)?.f_sum(Kind::Float)?;
        let many = matches!(self.parallel.replicas, Replicas::Many { .. });
        let stop = f64::from(u8::from(many && self.stop.load(Ordering::SeqCst)));
        let mut parts = vec![out.objective.f_detach()?];
        parts.extend(out.terms.iter().map(Tensor::shallow_clone));
        parts.extend([correct, Tensor::from(stop).f_to_device(self.device)?]);
        let parts = parts.iter().map(|t| t.f_to_kind(Kind::Double)).collect::<std::result::Result<Vec<_>, _>>()?;
        let numbers = Tensor::f_stack(&parts, 0)?;
        self.parallel.replicas.sum_numbers(&numbers, step)?;
        let numbers = Vec::<f64>::try_from(&numbers.f_to_device(Device::Cpu)?)?;
        let world = self.parallel.replicas.world() as f64;
        let (terms, last) = numbers[1..].split_at(numbers.len() - 3);
        self.stop_agreed = last[1] > 0.0;
        let terms: Vec<(&'static str, f64)> = self.loss.terms().into_iter().map(|t| t.name).zip(terms).map(|(k, v)| (k, v / world)).collect();
        let (loss, correct) = (numbers[0] / world, last[0]);
        if !loss.is_finite() {
            let parts: Vec<String> = terms.iter().map(|(k, v)| format!("{} {v}", k.trim_end_matches("_loss"))).collect();
            let (what, kept) = (format!("the loss ({})", parts.join(", ")), self.latest_checkpoint_note());
            return Err(TrainError::Diverged { step, what, value: loss, kept });
        }
        Ok(StepNumbers { loss, terms, correct })
    }

    /// Adds a step to the epoch's and the log window's sums and returns its statistics.
    fn account(&mut self, numbers: StepNumbers, samples: usize, lr: f64, grad_norm: f64, data_wait: Duration) -> StepStats {
        let StepNumbers { loss, terms, correct } = numbers;
        let n = samples as f64;
        self.state.step += 1;
        self.state.samples_in_epoch += samples;
        self.state.epoch_loss_sum += loss * n;
        self.state.epoch_correct += correct;
        self.state.epoch_seen += n;
        let w = &mut self.state.log_window;
        w.steps += 1;
        w.loss += loss;
        for (k, v) in &terms {
            *w.terms.entry((*k).to_owned()).or_default() += v;
        }
        w.correct += correct;
        w.seen += n;
        w.grad_norm += grad_norm;
        StepStats {
            step: self.state.step,
            epoch: self.state.epoch,
            lr,
            loss,
            terms,
            accuracy: correct / n,
            batch_size: samples,
            step_time: Duration::ZERO,
            data_wait,
        }
    }

    /// A line of the log (`steps.jsonl`, TensorBoard, the terminal): the means of the losses
    /// and the accuracy over the steps since the previous line.
    fn log_step(&mut self, s: &StepStats, announce: bool, observer: &mut dyn Observer) -> Result<()> {
        let w = std::mem::take(&mut self.state.log_window);
        let steps = w.steps.max(1) as f64;
        let terms: Vec<(&str, f64)> =
            s.terms.iter().map(|(k, _)| (*k, w.terms.get(*k).copied().unwrap_or_default() / steps)).collect();
        observer.on_log(&LogLine {
            step: s.step,
            epoch: s.epoch,
            lr: s.lr,
            loss: w.loss / steps,
            terms: &terms,
            accuracy: w.correct / w.seen.max(1.0),
            grad_norm: w.grad_norm / steps,
            steps_averaged: w.steps.max(1),
            elapsed_s: self.state.elapsed_s,
            announce,
        })
    }

    /// The epoch's line of `metrics.jsonl`: its training loss and accuracy, with the last
    /// evaluation's metrics.
    fn log_epoch(&mut self, observer: &mut dyn Observer) -> Result<()> {
        let seen = self.state.epoch_seen.max(1.0);
        observer.on_epoch(&EpochLine {
            step: self.state.step,
            epoch: self.state.epoch,
            train_loss: self.state.epoch_loss_sum / seen,
            train_accuracy: self.state.epoch_correct / seen,
            elapsed_s: self.state.elapsed_s,
            eval: &self.last_metrics,
        })
    }

    /// The weights of the last step in a checkpoint (unless it is saved already) and, at the
    /// end of the run, in `model.safetensors`.
    fn keep_weights(&mut self, run: &mut FitRun) -> Result<()> {
        let step = self.state.step;
        if run.saved_at != Some(step) {
            run.last_checkpoint = Some(self.save_checkpoint()?);
            run.saved_at = Some(step);
        }
        if step >= run.total {
            self.parallel.replicas.barrier(step)?;
            if self.is_main() {
                self.export_backbone(&self.run_dir.join(run_files::MODEL))?;
            }
        }
        Ok(())
    }

    /// [`Trainer::evaluate`]; when it fails, the weights are kept ([`Trainer::keep_weights`])
    /// before the error returns, naming where they are: an evaluation that cannot run never
    /// costs the training before it.
    fn evaluate_or_keep(&mut self, run: &mut FitRun, evaluator: Option<&mut (dyn Evaluator + '_)>, observer: &mut dyn Observer) -> Result<()> {
        let step = self.state.step;
        let Err(e) = self.evaluate(evaluator, observer) else {
            run.evaluated_at = Some(step);
            return Ok(());
        };
        let kept = match self.keep_weights(run) {
            Ok(()) => {
                let model = if step >= run.total { format!(" and {}", self.run_dir.join(run_files::MODEL).display()) } else { String::new() };
                let ck = run.last_checkpoint.as_deref().map(|p| p.display().to_string()).unwrap_or_default();
                format!("the weights of step {step} are saved in {ck}{model}; mend the cause and run again with --resume")
            }
            Err(save) => format!("saving the weights of step {step} failed too: {save}"),
        };
        Err(TrainError::Evaluation(format!("{}; {kept}", e.to_string().trim_start_matches("evaluation failed: "))))
    }

    fn evaluate(&mut self, evaluator: Option<&mut (dyn Evaluator + '_)>, observer: &mut dyn Observer) -> Result<()> {
        let Some(evaluator) = evaluator else { return Ok(()) };
        let metrics = {
            let _guard = tch::no_grad_guard();
            evaluator.evaluate(&self.parts())?
        };
        observer.on_eval(&Evaluation { step: self.state.step, epoch: self.state.epoch, metrics: &metrics })?;
        self.last_metrics = metrics;
        Ok(())
    }
}

/// Each rank's share of the global batch, which gradient accumulation must divide.
fn rank_batch(config: &TrainConfig, world: usize) -> std::result::Result<usize, String> {
    let per_rank = per_rank_batch(config.optim.batch_size, world)?;
    let k = config.optim.gradient_accumulation;
    if per_rank % k != 0 {
        return Err(format!(
            "optim.gradient_accumulation = {k} must divide each rank's batch of {per_rank} (optim.batch_size {} over {world} ranks)",
            config.optim.batch_size
        ));
    }
    Ok(per_rank)
}

/// The group's backend must take tensors of the training device.
fn check_backend(group: &ProcessGroup, device: Device) -> std::result::Result<(), String> {
    if group.backend() == Backend::for_device(device) {
        return Ok(());
    }
    Err(format!(
        "the process group uses {} but training runs on {:?} ({} takes {} tensors)",
        group.backend().name(),
        device,
        group.backend().name(),
        if group.backend() == Backend::Nccl { "CUDA" } else { "CPU" }
    ))
}

/// A model's variables, its backbone and its loss.
type Model = (nn::VarStore, Box<dyn Backbone>, Box<dyn Loss>);

/// The backbone and the loss (over the classes of `shard` when sharded), their variables in
/// one store on `device`.
///
/// The model is built and initialised on the CPU, from the CPU's generator, and then moved:
/// one seed gives the same initial weights on every device, so that a CUDA run starts where
/// the CPU run of the same config does. (Moving keeps every handle the backbone and the loss
/// hold: each variable's data is replaced in place.) A sharded classifier starts as its rows
/// of the unsharded one.
fn build_model(
    config: &TrainConfig,
    shard: Option<&ClassShard>,
    num_classes: i64,
    device: Device,
) -> Result<Model> {
    tch::manual_seed(config.seed as i64);
    let mut vs = nn::VarStore::new(Device::Cpu);
    let root = vs.root();
    let backbone = config.backbone.build(&(&root / "backbone"))?;
    let loss = match shard {
        Some(shard) => {
            let rate = config.parallel.sample_rate;
            let sampling = (rate < 1.0).then_some(Sampling { rate, seed: config.seed });
            config.loss.build_sharded(&root, backbone.feature_dim(), shard, sampling)?
        }
        None => config.loss.build(&root, backbone.feature_dim(), num_classes)?,
    };
    if device != Device::Cpu {
        vs.set_device(device);
    }
    Ok((vs, backbone, loss))
}

/// SGD or AdamW over the trainable variables, with the backbone's learning-rate multiplier.
fn build_optimizer(config: &TrainConfig, vs: &nn::VarStore) -> Optimizer {
    let trainable: Vec<(String, Tensor)> = vs.variables().into_iter().filter(|(_, t)| t.requires_grad()).collect();
    let o = &config.optim;
    let mut optimizer = match o.name {
        OptimName::Sgd => Optimizer::sgd(trainable, o.momentum, o.weight_decay, o.decay),
        OptimName::Adamw => {
            let [b1, b2] = o.betas.unwrap_or([0.9, 0.999]);
            Optimizer::adamw(trainable, (b1, b2), o.eps.unwrap_or(1e-8), o.weight_decay, o.decay)
        }
    };
    optimizer.set_lr_mult("backbone.", o.backbone_lr_mult);
    optimizer
}
