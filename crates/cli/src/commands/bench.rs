//! `facerec bench`: time training steps of a config's model on synthetic batches (no data
//! loading), to compare with PyTorch (`scripts/bench_train.sh`) or between machines.

use std::path::PathBuf;
use std::time::Instant;

use clap::Args;
use tch::{Device, Kind, Tensor};

use facerec_data::loader::Batch;
use facerec_train::config::Config;
use facerec_train::schedule::MultiStep;
use facerec_train::Trainer;

pub const EXAMPLES: &str = "Examples:
  facerec bench configs/lfw_faceresnet_small_center.toml --steps 20
  facerec bench configs/mnist_lenetpp_center.toml --batch 128 --set loss.lambda=0";

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// The experiment config whose model, loss and optimiser are timed.
    pub config: PathBuf,
    /// Override a config value (repeatable), e.g. `--set loss.lambda=0`.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub sets: Vec<String>,
    /// Images per step [default: the config's batch size].
    #[arg(long)]
    pub batch: Option<usize>,
    /// Number of classes of the classifier (and center table).
    #[arg(long, default_value_t = 1000)]
    pub classes: i64,
    /// Timed steps (after 3 warm-up steps).
    #[arg(long, default_value_t = 20)]
    pub steps: usize,
}

pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    let config = Config::load(&args.config, &args.sets)?;
    let batch = args.batch.unwrap_or(config.optim.batch_size) as i64;
    let dir = tempfile::tempdir()?;
    let mut trainer = Trainer::new(config.clone(), dir.path(), args.classes)?;
    let [c, h, w] = config.model.backbone.input_shape();
    tch::manual_seed(0);
    let images = Tensor::f_randn([batch, c, h, w], (Kind::Float, Device::Cpu))?;
    let labels = Tensor::f_randint(args.classes, [batch], (Kind::Int64, Device::Cpu))?;
    let schedule = MultiStep { base: config.optim.lr.min(1e-3), gamma: 1.0, milestones: vec![] };
    let mut times = Vec::new();
    for i in 0..args.steps + 3 {
        let b = Batch { images: images.shallow_clone(), labels: labels.shallow_clone(), index: i, load_time: Default::default() };
        let t0 = Instant::now();
        trainer.train_step(&b, &schedule, Default::default())?;
        if trainer.device() != Device::Cpu {
            tch::Cuda::synchronize(0);
        }
        if i >= 3 {
            times.push(t0.elapsed().as_secs_f64());
        }
    }
    times.sort_by(f64::total_cmp);
    let median = times[times.len() / 2];
    println!(
        "facerec: {} batch {batch} on {}: median step {:.4} s = {:.1} images/s (lambda {})",
        config.model.backbone_name(),
        facerec_model::device::describe(trainer.device()),
        median,
        batch as f64 / median,
        config.loss.lambda
    );
    Ok(())
}
