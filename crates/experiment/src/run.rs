//! A training run end to end, as `facerec train` starts it: the config read (with `--set`
//! overrides), the run directory checked, the data and evaluations opened, the trainer built
//! (one rank of a data-parallel run when launched as one) and resumed, `fit`, and the run's
//! plots and report. Rank 0 prepares the data first and writes every file.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use tch::Device;

use facerec_dist::{Backend, DistConfig, ProcessGroup};
use facerec_eval::lfw::LfwReport;
use facerec_model::device::DeviceChoice;
use facerec_train::distributed::per_rank_batch;
use facerec_train::{Evaluator, FitSummary, Observer, Outcome, TrainConfig, TrainError, Trainer};

use crate::config::{Config, ModelConfig};
use crate::data::TrainSet;
use crate::error::{ExperimentError, Result};
use crate::evaluators::Evaluators;
use crate::provenance;
use crate::report::{write_json, Diverged, MnistRunReport};
use crate::run_dir::RunDir;

/// What `facerec train` was asked to do.
#[derive(Debug, Clone, Default)]
pub struct TrainRequest {
    /// The experiment config (TOML).
    pub config: PathBuf,
    /// `key.path=value` overrides.
    pub sets: Vec<String>,
    /// The run directory; `runs/<name or config stem>` when `None`.
    pub run_dir: Option<PathBuf>,
    pub name: Option<String>,
    /// Continue from the run's newest valid checkpoint.
    pub resume: bool,
    /// With `resume`: allow settings that change what is trained (recorded).
    pub allow_changes: bool,
    /// Delete every file an earlier run wrote into the run directory first.
    pub overwrite: bool,
}

/// What the caller (the CLI) sees of a run besides the trainer's [`Observer`]: progress while
/// it prepares and reports (each call returns the function to count done items with), and the
/// moment training can be stopped cleanly.
pub trait RunHooks {
    /// Work of unknown length (`"aligning training images"`).
    fn counter(&self, what: &'static str) -> Box<dyn Fn(u64) + Sync>;
    /// Work of `len` items.
    fn bar(&self, what: &'static str, len: u64) -> Box<dyn Fn(u64) + Sync>;
    /// The trainer is built: setting `stop` makes it checkpoint after the current step and
    /// return [`TrainOutcome::Interrupted`] (the CLI's Ctrl-C handler sets it).
    fn trainer_ready(&self, _stop: Arc<AtomicBool>) -> std::result::Result<(), String> {
        Ok(())
    }
}

/// How a run ended.
pub enum TrainOutcome {
    /// Trained to the end; rank 0 wrote the report.
    Finished(Box<FinishedRun>),
    /// Stopped by the stop flag after writing a checkpoint.
    Interrupted { step: usize, checkpoint: Option<PathBuf> },
    /// A rank other than 0 of a data-parallel run finished (rank 0 reports).
    OtherRank,
    /// `--resume` of a run that had finished already (at `step`): nothing was done, no file
    /// touched.
    AlreadyFinished { run: RunDir, step: usize },
}

/// A finished run and its report.
pub struct FinishedRun {
    pub run: RunDir,
    pub summary: FitSummary,
    pub report: RunReport,
}

/// The report of a finished run.
pub enum RunReport {
    Mnist(MnistRunReport),
    Lfw(Box<LfwReport>),
    /// A face run without LFW evaluation: just the model.
    Model(PathBuf),
}

/// Trains as `request` says.
pub fn train(request: &TrainRequest, hooks: &dyn RunHooks, observer: &mut dyn Observer) -> Result<TrainOutcome> {
    let (config, dist, device) = load_config(request)?;
    let main = dist.as_ref().is_none_or(|d| d.rank == 0);
    let run = run_dir(request, main)?;
    if !request.resume || facerec_train::checkpoint::list(run.path()).is_empty() {
        config.check_init().map_err(|msg| ExperimentError::Config { path: request.config.clone(), msg })?;
    }
    let (mut trainer, train, mut evaluators) = build(&config, dist.as_ref(), device, request, &run, hooks)?;
    if request.resume {
        if let Some(step) = finished_at(&trainer, &train, &evaluators, &run)? {
            return Ok(TrainOutcome::AlreadyFinished { run, step });
        }
    }
    start_or_resume(&mut trainer, &config.model, &run, request.resume, request.allow_changes)?;
    hooks.trainer_ready(trainer.stop_flag()).map_err(|msg| ExperimentError::Run { path: run.path().to_path_buf(), msg })?;

    let summary = fit(&mut trainer, train, &mut evaluators, observer, &run)?;
    if summary.outcome == Outcome::Interrupted {
        return Ok(TrainOutcome::Interrupted { step: summary.steps, checkpoint: summary.last_checkpoint.clone() });
    }
    if !trainer.is_main() {
        return Ok(TrainOutcome::OtherRank);
    }
    for png in facerec_eval::plot::training_curves(run.path())? {
        tracing::info!("wrote {}", png.display());
    }
    if summary.data_wait_s > 0.05 * summary.train_s {
        tracing::warn!(
            "the training step waited {:.1} s for data ({:.0}% of {:.1} s): the loader is a bottleneck",
            summary.data_wait_s,
            100.0 * summary.data_wait_s / summary.train_s,
            summary.train_s
        );
    }
    let report = report(&mut evaluators, &trainer, &config, request, &run, &summary, hooks)?;
    Ok(TrainOutcome::Finished(Box::new(FinishedRun { run, summary, report })))
}

/// The config of `request` (its `--set`s applied), the launch's variables when this process
/// is a rank of a data-parallel run, and the device this process trains on. A data-parallel
/// run is checked here, before anything is written: the global batch must split over the
/// ranks and the run's evaluation must be possible on them. The config keeps the device as
/// written (`auto`): the rank's own device is not a setting of the run.
fn load_config(request: &TrainRequest) -> Result<(Config, Option<DistConfig>, DeviceChoice)> {
    let dist = DistConfig::from_env().map_err(|e| ExperimentError::Config {
        path: request.config.clone(),
        msg: format!("reading the distributed launch variables: {e}"),
    })?;
    let config = Config::load(&request.config, &request.sets)?;
    let device = rank_device_checked(&config, &request.config, dist.as_ref())?;
    Ok((config, dist, device))
}

/// The device this process trains `config` (read from `path`) on: the config's own, or with
/// `dist` (a rank of a data-parallel launch) its local rank's GPU or the CPU, once the global
/// batch is checked to split over the ranks and the run's evaluation to be possible on them.
/// Shared by training and `facerec bench` under `facerec launch`.
pub fn rank_device_checked(config: &Config, path: &Path, dist: Option<&DistConfig>) -> Result<DeviceChoice> {
    let Some(d) = dist else { return Ok(config.device) };
    let bad = |msg: String| ExperimentError::Config { path: path.to_path_buf(), msg };
    per_rank_batch(config.optim.batch_size, d.world_size).map_err(bad)?;
    config.check_world(d.world_size).map_err(bad)?;
    rank_device(config.device, d.local_rank).map_err(bad)
}

/// Joins the process group of the launch `d` with the backend of `device` (Gloo on the CPU,
/// NCCL on a GPU); an error names the config at `path`.
pub fn join_group(d: &DistConfig, device: DeviceChoice, path: &Path) -> Result<ProcessGroup> {
    let backend = Backend::for_device(device.resolve()?);
    ProcessGroup::new(d, backend).map_err(|e| ExperimentError::Config {
        path: path.to_path_buf(),
        msg: format!("joining the {} process group: {e}", backend.name()),
    })
}

/// The run directory, checked for an earlier run (emptied of it with `overwrite`) by the
/// `main` rank.
fn run_dir(request: &TrainRequest, main: bool) -> Result<RunDir> {
    let run = match &request.run_dir {
        Some(dir) => RunDir::new(dir),
        None => RunDir::for_config(&request.config, request.name.as_deref()),
    };
    // Only rank 0 deletes an old run; the others just skip the check it replaces.
    if main || !request.overwrite {
        prepare(&run, request.resume, request.overwrite)?;
    }
    if main {
        // A divergence recorded by an earlier attempt no longer describes this run.
        remove_file(&run.diverged())?;
    }
    Ok(run)
}

/// The trainer (in the process group of a data-parallel run, resumed with `resume`), the
/// training data and the evaluations.
fn build(
    config: &Config,
    dist: Option<&DistConfig>,
    device: DeviceChoice,
    request: &TrainRequest,
    run: &RunDir,
    hooks: &dyn RunHooks,
) -> Result<(Trainer, TrainSet, Evaluators)> {
    // Rank 0 opens the data first (it may build the crop caches); the others join the group,
    // which waits for rank 0, and then find the caches ready.
    let join = |d: &DistConfig| join_group(d, device, &request.config);
    let mut group = match dist {
        Some(d) if d.rank != 0 => Some(join(d)?),
        _ => None,
    };
    let train = config.open_train_with_progress(&*hooks.counter("aligning training images"))?;
    let evaluators = Evaluators::for_config(config, &*hooks.counter("aligning LFW evaluation images"))?;
    if let Some(d) = dist.filter(|d| d.rank == 0) {
        group = Some(join(d)?);
    }
    let (train_config, classes) = (TrainConfig { device, ..config.train_config() }, train.source.num_classes());
    let trainer = match group {
        Some(group) => Trainer::distributed(train_config, run.path(), classes, group)?,
        None => Trainer::new(train_config, run.path(), classes)?,
    };
    Ok((trainer, train, evaluators))
}

/// The step a finished run ended at, when `run` holds one: its newest checkpoint is at the
/// schedule's last step, and the model and the report it ends with are written. (A run that
/// trained to the end but whose last evaluation or report failed is not finished: a resume
/// evaluates and reports it.) Reads nothing but the names of the files.
fn finished_at(trainer: &Trainer, train: &TrainSet, evaluators: &Evaluators, run: &RunDir) -> Result<Option<usize>> {
    let Some(&(step, _)) = facerec_train::checkpoint::list(run.path()).first() else { return Ok(None) };
    let (_, total, _) = trainer.plan(train.source.len())?;
    let report = if evaluators.lfw().is_some() {
        run.lfw_report()
    } else if evaluators.mnist().is_some() {
        run.mnist_report()
    } else {
        run.model()
    };
    Ok((step >= total && run.model().is_file() && report.is_file()).then_some(step))
}

/// Readies a new `trainer`: with `resume`, continues the newest checkpoint of `run` (see
/// [`provenance::resume`]), whose weights make `[model] init` irrelevant: the file is not read
/// (it may be gone). Otherwise, or when there is no checkpoint yet, the backbone starts from
/// `[model] init` when given. Returns the checkpoint resumed from.
pub fn start_or_resume(trainer: &mut Trainer, model: &ModelConfig, run: &RunDir, resume: bool, allow_changes: bool) -> Result<Option<PathBuf>> {
    let resumed = match resume {
        true => provenance::resume(trainer, run, allow_changes)?,
        false => None,
    };
    if resumed.is_none() {
        if resume {
            tracing::warn!("no checkpoint in {}: starting from scratch", run.path().display());
        }
        init_backbone(trainer, model)?;
    }
    Ok(resumed)
}

/// Starts the backbone of a new `trainer` from the weights `[model] init` names, if any; when
/// the file also holds `head.*` tensors (the loss's classifier, whole tables), the classifier
/// starts from them too.
pub fn init_backbone(trainer: &mut Trainer, model: &ModelConfig) -> Result<()> {
    if let Some(init) = &model.init {
        let weights = facerec_model::import::read_weights(init)?;
        let (head, backbone): (Vec<_>, Vec<_>) = weights.tensors.into_iter().partition(|(k, _)| k.starts_with("head."));
        trainer.init_backbone(&backbone, init)?;
        let with_head = !head.is_empty();
        if with_head {
            trainer.init_head(head, init)?;
        }
        let also = if with_head { " and classifier" } else { "" };
        tracing::info!("backbone{also} initialised from {} ({})", init.display(), weights.source);
    }
    Ok(())
}

/// [`Trainer::fit`] with the evaluations (if any); a divergence is recorded in the run
/// directory (by the main rank) before its error is returned.
fn fit(trainer: &mut Trainer, train: TrainSet, evaluators: &mut Evaluators, observer: &mut dyn Observer, run: &RunDir) -> Result<FitSummary> {
    let evaluator: Option<&mut dyn Evaluator> = if evaluators.is_empty() { None } else { Some(evaluators) };
    match trainer.fit(train.source, train.flip, evaluator, observer) {
        Ok(summary) => Ok(summary),
        Err(e) => {
            if let (TrainError::Diverged { step, .. }, true) = (&e, trainer.is_main()) {
                write_json(&run.diverged(), &Diverged { step: *step, message: e.to_string() })?;
            }
            Err(e.into())
        }
    }
}

/// The device of one rank: a GPU run uses the GPU of its local rank (as torchrun expects), a
/// CPU run stays on the CPU.
fn rank_device(choice: DeviceChoice, local_rank: usize) -> std::result::Result<DeviceChoice, String> {
    let device = match choice {
        DeviceChoice::Cpu => DeviceChoice::Cpu,
        DeviceChoice::Auto if Device::cuda_if_available() == Device::Cpu => DeviceChoice::Cpu,
        DeviceChoice::Auto | DeviceChoice::Cuda(_) => DeviceChoice::Cuda(local_rank),
    };
    device.resolve().map_err(|e| format!("local rank {local_rank} needs its own GPU: {e}"))?;
    Ok(device)
}

/// The run's report: MNIST's test accuracy, clusters and scatter plot, or LFW's verification
/// (reusing the last evaluation, which saw the final weights) and identification.
fn report(
    evaluators: &mut Evaluators,
    trainer: &Trainer,
    config: &Config,
    request: &TrainRequest,
    run: &RunDir,
    summary: &FitSummary,
    hooks: &dyn RunHooks,
) -> Result<RunReport> {
    let parts = trainer.parts();
    if let Some(lfw) = evaluators.lfw_mut() {
        let images = lfw.images_to_embed() as u64;
        let report = {
            let count = if images == 0 { Box::new(|_| {}) } else { hooks.bar("LFW features for the report", images) };
            lfw.report(parts.backbone, parts.device, &*count)?
        };
        report.write(run.path(), &run.name())?;
        return Ok(RunReport::Lfw(Box::new(report)));
    }
    let Some(mnist) = evaluators.mnist() else { return Ok(RunReport::Model(run.model())) };
    let r = mnist.run(parts.backbone, parts.loss, parts.device)?;
    let setting = |key: &str| config.loss.setting(key).and_then(toml::Value::as_float);
    let (lambda, alpha) = (setting("lambda"), setting("alpha"));
    // Center loss names its classification loss `head`; the other losses are their own.
    let head = config.loss.setting("head").and_then(|h| h.get("name")).and_then(toml::Value::as_str).unwrap_or(config.loss.name());
    let update = config.loss.setting("update").and_then(toml::Value::as_str).filter(|u| *u != "paper").map(|u| format!(", {u} update")).unwrap_or_default();
    let title = match (lambda, alpha) {
        (Some(lambda), Some(alpha)) if lambda > 0.0 => format!("{head} + center loss (lambda {lambda}, alpha {alpha}{update}): test features"),
        (Some(lambda), None) if lambda > 0.0 => format!("{head} + center loss (lambda {lambda}{update}): test features"),
        // A loss beside its own head (contrastive): both names.
        _ if head != config.loss.name() && config.loss.name() != "center" => format!("{head} + {} loss: test features", config.loss.name()),
        _ => format!("{head} loss: test features"),
    };
    let png = run.features_png();
    r.write_scatter(&png, &title, parts.loss.centers())?;
    let report = MnistRunReport {
        config: request.config.clone(),
        lambda,
        alpha,
        steps: summary.steps,
        epochs: trainer.state().epoch,
        train_seconds: summary.train_s,
        data_wait_seconds: summary.data_wait_s,
        test_accuracy: r.accuracy,
        clusters: r.clusters,
        scatter_png: png,
    };
    write_json(&run.mnist_report(), &report)?;
    Ok(RunReport::Mnist(report))
}

/// Refuses to mix two runs in one directory. `overwrite` deletes every file a run writes there
/// (and nothing else: the directory may hold the user's own files).
fn prepare(run: &RunDir, resume: bool, overwrite: bool) -> Result<()> {
    if overwrite {
        for p in run.written() {
            if p.is_dir() {
                std::fs::remove_dir_all(&p).map_err(|e| ExperimentError::io(&p, e))?;
            } else {
                remove_file(&p)?;
            }
        }
    } else if !resume && !facerec_train::checkpoint::list(run.path()).is_empty() {
        return Err(ExperimentError::Run {
            path: run.path().to_path_buf(),
            msg: "holds checkpoints of an earlier run: pass --resume to continue it or --overwrite to start again".into(),
        });
    }
    Ok(())
}

fn remove_file(path: &std::path::Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(ExperimentError::io(path, e)),
        _ => Ok(()),
    }
}
