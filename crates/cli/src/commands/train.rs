//! `facerec train`: one experiment config to a run directory. Launched by `facerec launch`,
//! torchrun or SLURM (see `DistConfig::from_env`), it trains as one rank of a data-parallel
//! run: rank 0 prepares the data first and writes the run's files and report.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::Args;
use tch::Device;

use facerec_data::align::Template;
use facerec_dist::{Backend, DistConfig, ProcessGroup};
use facerec_eval::lfw::LfwEval;
use facerec_eval::mnist::MnistEval;
use facerec_model::device::DeviceChoice;
use facerec_model::BackboneConfig;
use facerec_train::checkpoint;
use facerec_train::config::{default_run_dir, Config};
use facerec_train::data::DataConfig;
use facerec_train::distributed::per_rank_batch;
use facerec_train::{Evaluator, FitSummary, Observer, Outcome, StepStats, TrainError, Trainer};

use crate::outcome::{Diverged, Interrupted, EXIT_INTERRUPTED};
use crate::progress::Bar;

pub const EXAMPLES: &str = "Examples:
  facerec train configs/mnist_lenetpp_center.toml
  facerec train configs/mnist_lenetpp_center.toml --set loss.lambda=0.1 --name mnist_lambda0.1
  facerec train configs/mnist_lenetpp_center.toml --resume";

#[derive(Debug, Args)]
pub struct TrainArgs {
    /// The experiment config (TOML).
    pub config: PathBuf,
    /// Override a config value, e.g. `--set loss.lambda=0.01` (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub sets: Vec<String>,
    /// Run directory [default: runs/<NAME or config file stem>].
    #[arg(long)]
    pub run_dir: Option<PathBuf>,
    /// Run name, for the default run directory.
    #[arg(long)]
    pub name: Option<String>,
    /// Continue from the run directory's latest valid checkpoint.
    #[arg(long, conflicts_with = "overwrite")]
    pub resume: bool,
    /// With --resume: continue even when the config (or a --set) now changes what is trained,
    /// e.g. `loss.lambda`; each change is recorded with its step in <run>/changes.jsonl.
    /// Without it such a resume is refused (changes to logging, checkpoints, evaluation,
    /// threads or device are always allowed, and recorded too).
    #[arg(long, requires = "resume")]
    pub allow_changes: bool,
    /// Delete every file an earlier run wrote into the run directory (checkpoints, metrics,
    /// reports, plots, TensorBoard events) and start again; other files are left alone.
    #[arg(long)]
    pub overwrite: bool,
}

pub fn run(args: TrainArgs, quiet: bool) -> anyhow::Result<()> {
    let dist = DistConfig::from_env().context("reading the distributed launch variables")?;
    let mut config = Config::load(&args.config, &args.sets)?;
    if let Some(d) = &dist {
        per_rank_batch(config.optim.batch_size, d.world_size).map_err(|msg| anyhow::anyhow!("{}: {msg}", args.config.display()))?;
        config.device = rank_device(config.device, d.local_rank)?;
    }
    let main = dist.as_ref().is_none_or(|d| d.rank == 0);
    let run_dir = args.run_dir.clone().unwrap_or_else(|| default_run_dir(&args.config, args.name.as_deref()));
    // Only rank 0 deletes an old run; the others just skip the check it replaces.
    if main || !args.overwrite {
        prepare_run_dir(&run_dir, args.resume, args.overwrite)?;
    }
    if main {
        // A divergence recorded by an earlier attempt no longer describes this run.
        let stale = run_dir.join(Diverged::FILE);
        if stale.is_file() {
            std::fs::remove_file(&stale).with_context(|| format!("removing {}", stale.display()))?;
        }
    }

    // Rank 0 opens the data first (it may build the crop caches); the others join the group,
    // which waits for rank 0, and then find the caches ready.
    let join = |d: &DistConfig| -> anyhow::Result<ProcessGroup> {
        let backend = Backend::for_device(config.device.resolve()?);
        ProcessGroup::new(d, backend).with_context(|| format!("joining the {} process group", backend.name()))
    };
    let mut group = match &dist {
        Some(d) if d.rank != 0 => Some(join(d)?),
        _ => None,
    };

    let train = {
        let bar = Bar::counter("aligning training images", quiet);
        config.data.open_train_with_progress(&|n| bar.inc(n)).context("opening the training data")?
    };
    let mut evaluator = match (&config.data, &config.eval.lfw) {
        (DataConfig::Mnist(m), _) => {
            RunEval::Mnist(MnistEval::load(&m.dir, m.test_limit).context("opening the MNIST test set")?)
        }
        (DataConfig::Faces(_) | DataConfig::RecordIo(_), Some(lfw)) => {
            let template = template_for(&config.model.backbone)?;
            let bar = Bar::counter("aligning LFW evaluation images", quiet);
            RunEval::Lfw(LfwEval::new(lfw, template, &|n| bar.inc(n)).context("preparing the LFW evaluation")?)
        }
        (DataConfig::Faces(_) | DataConfig::RecordIo(_), None) => RunEval::None,
    };
    if let Some(d) = dist.as_ref().filter(|d| d.rank == 0) {
        group = Some(join(d)?);
    }
    let mut trainer = Trainer::new(config.clone(), &run_dir, train.source.num_classes())?;
    if let Some(group) = group {
        trainer = trainer.with_distributed(group)?;
    }
    if args.resume {
        trainer.allow_config_changes(args.allow_changes);
        match trainer.resume()? {
            Some(path) => tracing::info!("resuming from {}", path.display()),
            None => tracing::warn!("no checkpoint in {}: starting from scratch", run_dir.display()),
        }
    }
    // First Ctrl-C: finish the step, write a checkpoint, exit cleanly. Second: exit at once.
    let stop = trainer.stop_flag();
    ctrlc::set_handler(move || {
        if stop.swap(true, std::sync::atomic::Ordering::SeqCst) {
            eprintln!("interrupted twice: exiting without a checkpoint");
            // `_exit`, not `exit`: the training thread is inside libtorch, and running static
            // destructors under it crashes (SIGSEGV) instead of exiting.
            // SAFETY: `_exit` ends the process at once; nothing of this process runs after it.
            unsafe { libc::_exit(i32::from(EXIT_INTERRUPTED)) };
        }
        eprintln!("interrupt: stopping after this step and writing a checkpoint (Ctrl-C again to abort)");
    })
    .context("installing the Ctrl-C handler")?;

    let mut progress = Progress::new(quiet);
    let eval: Option<&mut dyn Evaluator> = match &mut evaluator {
        RunEval::Mnist(e) => Some(e),
        RunEval::Lfw(e) => Some(e),
        RunEval::None => None,
    };
    let summary = match trainer.fit(train.source, train.flip, eval, &mut progress) {
        Ok(summary) => summary,
        Err(e) => {
            if let (TrainError::Diverged { step, .. }, true) = (&e, trainer.is_main()) {
                Diverged { step: *step, message: e.to_string() }.write(&run_dir)?;
            }
            return Err(e.into());
        }
    };
    drop(progress);
    if summary.outcome == Outcome::Interrupted {
        if trainer.is_main() {
            println!(
                "interrupted at step {}; checkpoint {}; continue with --resume",
                summary.steps,
                summary.last_checkpoint.as_deref().map(Path::display).map(|d| d.to_string()).unwrap_or_default()
            );
        }
        return Err(Interrupted.into()); // exit code 130
    }
    if !trainer.is_main() {
        return Ok(()); // rank 0 reports
    }

    for png in facerec_eval::plot::training_curves(&run_dir)? {
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
    match &mut evaluator {
        RunEval::Mnist(e) => mnist_report(e, &trainer, &config, &args.config, &run_dir, &summary),
        RunEval::Lfw(e) => lfw_report(e, &trainer, &run_dir, &summary, quiet),
        RunEval::None => {
            println!("{}: {} steps in {:.0} s; model {}", run_dir.display(), summary.steps,
                summary.train_s + summary.data_wait_s, run_dir.join("model.safetensors").display());
            Ok(())
        }
    }
}

/// The device of one rank: a GPU run uses the GPU of its local rank (as torchrun expects), a
/// CPU run stays on the CPU.
fn rank_device(choice: DeviceChoice, local_rank: usize) -> anyhow::Result<DeviceChoice> {
    let device = match choice {
        DeviceChoice::Cpu => DeviceChoice::Cpu,
        DeviceChoice::Auto if Device::cuda_if_available() == Device::Cpu => DeviceChoice::Cpu,
        DeviceChoice::Auto | DeviceChoice::Cuda(_) => DeviceChoice::Cuda(local_rank),
    };
    device.resolve().with_context(|| format!("local rank {local_rank} needs its own GPU"))?;
    Ok(device)
}

/// The evaluation that goes with a run's data.
enum RunEval {
    Mnist(MnistEval),
    Lfw(LfwEval),
    None,
}

/// The crop layout a backbone's input needs.
pub fn template_for(backbone: &BackboneConfig) -> anyhow::Result<Template> {
    match backbone.input_shape() {
        [3, 112, 96] => Ok(Template::CaffeFace),
        [3, 112, 112] => Ok(Template::Insightface),
        other => bail!("no face crop template gives {other:?} inputs (112x96 and 112x112 exist)"),
    }
}

fn lfw_report(eval: &mut LfwEval, trainer: &Trainer, run_dir: &Path, summary: &FitSummary, quiet: bool) -> anyhow::Result<()> {
    let parts = trainer.parts();
    // The run's last evaluation saw the final weights: its verification is reused, and only
    // identification (when configured) needs features of more images.
    let images = eval.images_to_embed() as u64;
    let bar = Bar::new("LFW features for the report", images, quiet || images == 0);
    let report = eval.report(parts.backbone, parts.device, &|n| bar.inc(n))?;
    drop(bar);
    let name = run_dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    report.write(run_dir, &name)?;
    let v = &report.verification;
    let tar = match v.resolved_tar(1e-3) {
        Some(tar) => format!("TAR {:.2}% at FAR 1e-3", 100.0 * tar),
        None => format!("FAR 1e-3 not resolved by {} different-person pairs", v.negative_pairs),
    };
    println!(
        "{}: LFW verification {:.2}% +- {:.2} (AUC {:.4}, EER {:.2}%, {tar}){}; {} steps in {:.0} s ({:.1} s of it waiting for data)\n  protocol: {}",
        run_dir.display(),
        100.0 * v.accuracy_mean,
        100.0 * v.accuracy_std,
        v.auc,
        100.0 * v.eer,
        report.identification.as_ref().map(|i| format!(", rank-1 {:.2}%", 100.0 * i.rank1)).unwrap_or_default(),
        summary.steps,
        summary.train_s + summary.data_wait_s,
        summary.data_wait_s,
        report.protocol
    );
    Ok(())
}

fn mnist_report(
    evaluator: &MnistEval,
    trainer: &Trainer,
    config: &Config,
    config_path: &Path,
    run_dir: &Path,
    summary: &FitSummary,
) -> anyhow::Result<()> {
    let report = evaluator.run(&trainer.parts())?;
    let png = run_dir.join("features.png");
    let lambda = config.loss.lambda;
    let title = if lambda > 0.0 {
        format!("softmax + center loss (lambda {lambda}, alpha {}): test features", config.loss.alpha)
    } else {
        "softmax loss: test features".to_owned()
    };
    report.write_scatter(&png, &title, trainer.parts().centers)?;
    let json = serde_json::json!({
        "config": config_path,
        "lambda": lambda,
        "alpha": config.loss.alpha,
        "steps": summary.steps,
        "epochs": trainer.state().epoch,
        "train_seconds": summary.train_s,
        "data_wait_seconds": summary.data_wait_s,
        "test_accuracy": report.accuracy,
        "clusters": report.clusters,
        "scatter_png": png,
    });
    let report_path = run_dir.join("report.json");
    facerec_core::fsutil::atomic_write_bytes(&report_path, serde_json::to_string_pretty(&json)?.as_bytes())?;
    println!(
        "{}: test accuracy {:.2}%, intra-class distance {:.3} (ratio to inter-class {:.3}), {} steps in {:.0} s; {}",
        run_dir.display(),
        100.0 * report.accuracy,
        report.clusters.intra_to_mean,
        report.clusters.ratio,
        summary.steps,
        summary.train_s + summary.data_wait_s,
        png.display()
    );
    Ok(())
}

/// Refuses to mix two runs in one directory. `overwrite` deletes every file a run writes there
/// (and nothing else: the directory may hold the user's own files).
fn prepare_run_dir(run_dir: &Path, resume: bool, overwrite: bool) -> anyhow::Result<()> {
    // Every file and folder a run writes into its directory, by writer, besides TensorBoard's
    // event files (facerec_train::tensorboard finds those by their prefix). Add new outputs
    // here: the CLI test `overwrite_clears_every_file_a_run_wrote` fails on one left behind.
    const RUN_FILES: &[&str] = &[
        // facerec_train::Trainer: the resolved config, metrics, checkpoints, the backbone.
        "config.toml",
        "steps.jsonl",
        "metrics.jsonl",
        "checkpoints",
        "model.safetensors",
        // facerec_eval: training curves, the LFW report and its plots (also `facerec eval <run>`).
        "training.png",
        "evaluation.png",
        "lfw_report.json",
        "lfw_roc.png",
        "lfw_scores.png",
        // This command's MNIST report, and its record of a divergence.
        "report.json",
        "features.png",
        Diverged::FILE,
        // facerec_train::Trainer, on a resume with changed settings.
        facerec_train::trainer::CHANGES_FILE,
    ];
    if overwrite {
        // Besides those: temporaries of an interrupted atomic write (`.<file>.tmp-<pid>`), and
        // re-evaluations by `facerec eval RUN` with other settings (`eval_pca64/`, ...).
        let also_written = std::fs::read_dir(run_dir).into_iter().flatten().flatten().map(|e| e.path()).filter(|p| {
            let name = p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            let temporary = name.strip_prefix('.').and_then(|n| n.split_once(".tmp-")).is_some_and(|(f, _)| RUN_FILES.contains(&f));
            temporary || (name.starts_with("eval_") && p.join("lfw_report.json").is_file())
        });
        let paths: Vec<PathBuf> = RUN_FILES
            .iter()
            .map(|f| run_dir.join(f))
            .chain(facerec_train::tensorboard::event_files(run_dir))
            .chain(also_written)
            .collect();
        for p in paths {
            if p.is_dir() {
                std::fs::remove_dir_all(&p).with_context(|| format!("removing {}", p.display()))?;
            } else if p.exists() {
                std::fs::remove_file(&p).with_context(|| format!("removing {}", p.display()))?;
            }
        }
    } else if !resume && !checkpoint::list(run_dir).is_empty() {
        bail!(
            "{} holds checkpoints of an earlier run: pass --resume to continue it or --overwrite to start again",
            run_dir.display()
        );
    }
    Ok(())
}

/// A progress bar over the training steps, with the smoothed loss.
struct Progress {
    bar: Bar,
    quiet: bool,
    smoothed: Option<f64>,
}

impl Progress {
    fn new(quiet: bool) -> Self {
        Progress { bar: Bar::new("train", 0, true), quiet, smoothed: None }
    }
}

impl Observer for Progress {
    fn on_start(&mut self, start: usize, total: usize) {
        self.bar = Bar::new("train", total as u64, self.quiet);
        self.bar.set_position(start as u64);
    }

    fn on_step(&mut self, s: &StepStats) {
        let loss = match self.smoothed {
            Some(prev) => 0.95 * prev + 0.05 * s.loss,
            None => s.loss,
        };
        self.smoothed = Some(loss);
        self.bar.inc(1);
        self.bar.set_message(&format!("train: loss {loss:.3} lr {:.0e}", s.lr));
    }
}
