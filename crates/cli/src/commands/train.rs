//! `facerec train`: one experiment config to a run directory (the work is
//! `facerec_experiment::run::train`; this parses, draws progress and prints). Launched by
//! `facerec launch`, torchrun or SLURM (see `DistConfig::from_env`), it trains as one rank of a
//! data-parallel run: rank 0 prepares the data first and writes the run's files and report.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use clap::Args;

use facerec_experiment::run::{self, FinishedRun, RunReport, TrainOutcome, TrainRequest};
use facerec_train::{Observer, RunStart, StepStats};

use crate::outcome::{Interrupted, EXIT_INTERRUPTED};
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
    let request = TrainRequest {
        config: args.config,
        sets: args.sets,
        run_dir: args.run_dir,
        name: args.name,
        resume: args.resume,
        allow_changes: args.allow_changes,
        overwrite: args.overwrite,
    };
    let mut progress = Progress::new(quiet);
    let outcome = run::train(&request, &Hooks { quiet }, &mut progress)?;
    drop(progress);
    match outcome {
        TrainOutcome::Finished(run) => print_report(&run),
        TrainOutcome::Interrupted { step, checkpoint } => {
            let rank0 = facerec_dist::DistConfig::from_env().ok().flatten().is_none_or(|d| d.rank == 0);
            if rank0 {
                println!(
                    "interrupted at step {step}; checkpoint {}; continue with --resume",
                    checkpoint.as_deref().map(Path::display).map(|d| d.to_string()).unwrap_or_default()
                );
            }
            Err(Interrupted.into()) // exit code 130
        }
        TrainOutcome::OtherRank => Ok(()),
        TrainOutcome::AlreadyFinished { run, step } => {
            let rank0 = facerec_dist::DistConfig::from_env().ok().flatten().is_none_or(|d| d.rank == 0);
            if rank0 {
                println!(
                    "{}: finished already (step {step}); nothing to do, nothing written. To train it further, raise \
                     schedule.steps or schedule.epochs with --resume --allow-changes; to start again, --overwrite",
                    run.path().display()
                );
            }
            Ok(())
        }
    }
}

fn print_report(finished: &FinishedRun) -> anyhow::Result<()> {
    let FinishedRun { run, summary, report } = finished;
    let seconds = summary.train_s + summary.data_wait_s;
    match report {
        RunReport::Lfw(report) => {
            let v = &report.verification;
            let tar = match v.resolved_tar(1e-3) {
                Some(tar) => format!("TAR {:.2}% at FAR 1e-3", 100.0 * tar),
                None => format!("FAR 1e-3 not resolved by {} different-person pairs", v.negative_pairs),
            };
            println!(
                "{}: LFW verification {:.2}% +- {:.2} (AUC {:.4}, EER {:.2}%, {tar}){}; {} steps in {seconds:.0} s ({:.1} s of it waiting for data)\n  protocol: {}",
                run.path().display(),
                100.0 * v.accuracy_mean,
                100.0 * v.accuracy_std,
                v.auc,
                100.0 * v.eer,
                report.identification.as_ref().map(|i| format!(", rank-1 {:.2}%", 100.0 * i.rank1)).unwrap_or_default()
                    + &report.open_set.as_ref().map(|o| format!("; {}", o.lines().join("; "))).unwrap_or_default(),
                summary.steps,
                summary.data_wait_s,
                report.protocol
            );
        }
        RunReport::Mnist(r) => println!(
            "{}: test accuracy {:.2}%, intra-class distance {:.3} (ratio to inter-class {:.3}), {} steps in {seconds:.0} s; {}",
            run.path().display(),
            100.0 * r.test_accuracy,
            r.clusters.intra_to_mean,
            r.clusters.ratio,
            summary.steps,
            r.scatter_png.display()
        ),
        RunReport::Model(model) => println!("{}: {} steps in {seconds:.0} s; model {}", run.path().display(), summary.steps, model.display()),
    }
    Ok(())
}

/// Progress bars for the run's preparation and report, and the Ctrl-C handler.
struct Hooks {
    quiet: bool,
}

impl run::RunHooks for Hooks {
    fn counter(&self, what: &'static str) -> Box<dyn Fn(u64) + Sync> {
        let bar = Bar::counter(what, self.quiet);
        Box::new(move |n| bar.inc(n))
    }

    fn bar(&self, what: &'static str, len: u64) -> Box<dyn Fn(u64) + Sync> {
        let bar = Bar::new(what, len, self.quiet);
        Box::new(move |n| bar.inc(n))
    }

    /// First Ctrl-C: finish the step, write a checkpoint, exit cleanly. Second: exit at once.
    fn trainer_ready(&self, stop: Arc<AtomicBool>) -> Result<(), String> {
        ctrlc::set_handler(move || {
            if stop.swap(true, Ordering::SeqCst) {
                eprintln!("interrupted twice: exiting without a checkpoint");
                // `_exit`, not `exit`: the training thread is inside libtorch, and running static
                // destructors under it crashes (SIGSEGV) instead of exiting.
                // SAFETY: `_exit` ends the process at once; nothing of this process runs after it.
                unsafe { libc::_exit(i32::from(EXIT_INTERRUPTED)) };
            }
            eprintln!("interrupt: stopping after this step and writing a checkpoint (Ctrl-C again to abort)");
        })
        .map_err(|e| format!("installing the Ctrl-C handler: {e}"))
    }
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
    fn on_start(&mut self, start: &RunStart<'_>) -> facerec_train::Result<()> {
        self.bar = Bar::new("train", start.total_steps as u64, self.quiet);
        self.bar.set_position(start.start_step as u64);
        Ok(())
    }

    fn on_step(&mut self, s: &StepStats) -> facerec_train::Result<()> {
        let loss = match self.smoothed {
            Some(prev) => 0.95 * prev + 0.05 * s.loss,
            None => s.loss,
        };
        self.smoothed = Some(loss);
        self.bar.inc(1);
        self.bar.set_message(&format!("train: loss {loss:.3} lr {:.0e}", s.lr));
        Ok(())
    }
}
