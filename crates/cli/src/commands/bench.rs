//! `facerec bench`: time training steps of a config's model on synthetic batches (no data
//! loading), to compare with PyTorch (`scripts/bench_train.sh`) or between machines; with
//! `--extract`, feature extraction, of a config's fresh model or of a trained one on aligned
//! crops (against onnxruntime running its export: `scripts/bench_onnx.sh`).

use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::Args;
use tch::{Device, Kind, Tensor};

use facerec_data::loader::Batch;
use facerec_data::normalize::crops_to_tensor;
use facerec_experiment::run::{join_group, rank_device_checked};
use facerec_experiment::Config;
use facerec_model::saved::{backbone_file, load_backbone};
use facerec_model::Backbone;
use facerec_train::schedule::Schedule;
use facerec_train::{TrainConfig, Trainer};

pub const EXAMPLES: &str = "Examples:
  facerec bench configs/lfw_faceresnet_small_center.toml --steps 20
  facerec bench configs/mnist_lenetpp_center.toml --batch 128 --set loss.lambda=0
  facerec bench configs/lfw_faceresnet_small_center.toml --classes 10000 --peak
  facerec bench configs/lfw_faceresnet_small_center.toml --batch 256 --set device=cuda --memory
  facerec bench runs/x --extract --images crops/ --batch 64 --no-mirror   # a trained model
  facerec launch --nproc 2 -- bench configs/lfw_mobilefacenet_scratch_center.toml --classes 1000000 \\
      --set parallel.shard_head=true --memory";

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// The experiment config whose model, loss and optimiser are timed; with --extract also a
    /// trained backbone (a model.safetensors file or a run directory), timed on the CPU.
    pub config: PathBuf,
    /// Override a config value (repeatable), e.g. `--set loss.lambda=0`.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub sets: Vec<String>,
    /// Images per step, over all ranks under `facerec launch` [default: the config's batch size].
    #[arg(long)]
    pub batch: Option<usize>,
    /// Number of classes of the classifier (and center table).
    #[arg(long, default_value_t = 1000)]
    pub classes: i64,
    /// Timed steps (after 3 warm-up steps).
    #[arg(long, default_value_t = 20)]
    pub steps: usize,
    /// libtorch threads [default: the config's, else one per core].
    #[arg(long)]
    pub threads: Option<usize>,
    /// Also measure the machine's float32 matrix-multiply peak and report the step's share of it.
    #[arg(long)]
    pub peak: bool,
    /// Also measure the loader alone on the config's training data (batches per second, with
    /// its prefetching thread and rayon decoding), against the step rate.
    #[arg(long)]
    pub loader: bool,
    /// Also time the center loss's own work (loss, feature gradient, Eq. 4 update) on this
    /// step's batch and report it as a share of the step.
    #[arg(long)]
    pub center_overhead: bool,
    /// Time feature extraction instead of the training step, as evaluation does it: the
    /// backbone in inference mode on the batch and its mirror image, features of both
    /// concatenated.
    #[arg(long)]
    pub extract: bool,
    /// With --extract: time on these aligned crops (a folder or files, as `facerec embed
    /// --aligned` reads them; the first --batch of them, repeated when fewer) instead of random
    /// pixels.
    #[arg(long, num_args = 1.., requires = "extract")]
    pub images: Vec<PathBuf>,
    /// With --extract: the images alone, without their mirror images (as `facerec embed`
    /// computes features without --flip).
    #[arg(long, requires = "extract")]
    pub no_mirror: bool,
    /// Also report the memory the steps needed: on CUDA the caching allocator's peak (allocated
    /// in tensors, and reserved from the driver) over the warm-up and timed steps; on the CPU
    /// the process's peak resident size.
    #[arg(long)]
    pub memory: bool,
}

/// Median seconds of `body` over `steps` timed runs after 3 warm-up runs; on a GPU each run
/// waits for the device to finish.
fn median_seconds(steps: usize, device: Device, mut body: impl FnMut() -> anyhow::Result<()>) -> anyhow::Result<f64> {
    let mut times = Vec::with_capacity(steps);
    for i in 0..steps + 3 {
        let t0 = Instant::now();
        body()?;
        if device != Device::Cpu {
            tch::Cuda::synchronize(0);
        }
        if i >= 3 {
            times.push(t0.elapsed().as_secs_f64());
        }
    }
    times.sort_by(f64::total_cmp);
    Ok(times[times.len() / 2])
}

/// Times and prints feature extraction through `facerec_eval::features::Embedder`, the path
/// evaluation and `embed` take: the batch `images` (and, with `mirror`, its mirror images)
/// through `backbone` on `device`, median of `steps` runs.
fn bench_extract(backbone: &dyn Backbone, name: &str, device: Device, images: &Tensor, steps: usize, mirror: bool) -> anyhow::Result<()> {
    let batch = images.size()[0];
    let images = images.f_to_device(device)?;
    let embedder = facerec_eval::features::Embedder::new(backbone, device)?;
    let secs = median_seconds(steps, device, || {
        let _features = embedder.batch(&images, mirror)?;
        Ok(())
    })?;
    println!(
        "facerec: {name} feature extraction ({}) batch {batch} on {}: median {:.4} s = {:.1} images/s",
        if mirror { "image + mirror" } else { "image" },
        facerec_model::device::describe(device),
        secs,
        batch as f64 / secs
    );
    Ok(())
}

/// `--extract` of a trained backbone (`args.config` is a model file or run directory) on the
/// CPU, on `--images` crops or random pixels.
fn bench_saved_extract(args: &BenchArgs) -> anyhow::Result<()> {
    if let Some(t) = args.threads {
        tch::set_num_threads(i32::try_from(t)?);
    }
    let loaded = load_backbone(&args.config, Device::Cpu, None)?;
    let batch = args.batch.unwrap_or(64);
    let [c, h, w] = loaded.backbone.input_shape();
    let images = if args.images.is_empty() {
        tch::manual_seed(0);
        Tensor::f_randn([batch as i64, c, h, w], (Kind::Float, Device::Cpu))?
    } else {
        let ds = crate::faces::select_images(&args.images, None)?;
        anyhow::ensure!(!ds.samples.is_empty(), "no images in {:?}", args.images);
        let crops = (0..batch)
            .map(|i| super::embed::read_aligned(&ds.image_path(&ds.samples[i % ds.samples.len()]), h as u32, w as u32))
            .collect::<anyhow::Result<Vec<_>>>()?;
        crops_to_tensor(&crops, h as usize, w as usize, loaded.config.pixel_norm())?
    };
    bench_extract(loaded.backbone.as_ref(), &loaded.config.to_string(), Device::Cpu, &images, args.steps, !args.no_mirror)
}

/// Whether `path` is a trained backbone rather than a config.
fn is_model(path: &Path) -> bool {
    backbone_file(path).extension().is_some_and(|e| e == "safetensors")
}

/// Median seconds of the center loss's forward (value + gradient) and update for a batch.
fn center_seconds(classes: i64, dim: i64, batch: i64, device: Device) -> anyhow::Result<f64> {
    use facerec_losses::{CenterLoss, CenterLossConfig};
    let vs = tch::nn::VarStore::new(device);
    let center = CenterLoss::new(&vs.root(), classes, dim, CenterLossConfig { lambda: 0.003, alpha: 0.5 })?;
    let x = Tensor::f_randn([batch, dim], (Kind::Float, device))?.f_set_requires_grad(true)?;
    let y = Tensor::f_randint(classes, [batch], (Kind::Int64, device))?;
    median_seconds(50, device, || {
        let out = center.forward(&x, &y)?;
        out.objective.f_backward()?;
        center.update_centers(&x.f_detach()?, &y)?;
        Ok(())
    })
}

/// GFLOP/s of a float32 `n x n` matrix product, best of a few (the machine's sgemm peak).
fn sgemm_peak(device: Device) -> anyhow::Result<f64> {
    let n = 2048i64;
    let a = Tensor::f_randn([n, n], (Kind::Float, device))?;
    let b = Tensor::f_randn([n, n], (Kind::Float, device))?;
    let mut best = f64::MAX;
    for _ in 0..6 {
        let t0 = Instant::now();
        let c = a.f_mm(&b)?;
        if device != Device::Cpu {
            tch::Cuda::synchronize(0);
        }
        best = best.min(t0.elapsed().as_secs_f64());
        drop(c);
    }
    Ok(2.0 * (n * n * n) as f64 / best / 1e9)
}

pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    if args.extract && is_model(&args.config) {
        return bench_saved_extract(&args);
    }
    anyhow::ensure!(
        args.images.is_empty(),
        "--images is for a trained model (`facerec bench MODEL --extract --images DIR`); a config's fresh model is timed on random pixels"
    );
    let mut config = Config::load(&args.config, &args.sets)?;
    if let Some(t) = args.threads {
        config.threads = t;
    }
    let global = args.batch.unwrap_or(config.optim.batch_size);
    config.optim.batch_size = global;
    let dir = tempfile::tempdir()?;
    // Under `facerec launch` (or torchrun), each rank times its share of the global batch on
    // the device a training rank would use.
    let dist = facerec_dist::DistConfig::from_env()?;
    let device = rank_device_checked(&config, &args.config, dist.as_ref())?;
    let train_config = TrainConfig { device, ..config.train_config() };
    let mut trainer = match &dist {
        Some(d) => Trainer::distributed(train_config, dir.path(), args.classes, join_group(d, device, &args.config)?)?,
        None => Trainer::new(train_config, dir.path(), args.classes)?,
    };
    let (rank, world) = dist.as_ref().map_or((0, 1), |d| (d.rank as i64, d.world_size as i64));
    let batch = global as i64 / world;
    let [c, h, w] = config.model.backbone.input_shape();
    tch::manual_seed(0);
    let images = Tensor::f_randn([global as i64, c, h, w], (Kind::Float, Device::Cpu))?.f_narrow(0, rank * batch, batch)?;
    let labels = Tensor::f_randint(args.classes, [global as i64], (Kind::Int64, Device::Cpu))?.f_narrow(0, rank * batch, batch)?;
    if args.extract {
        let parts = trainer.parts();
        let name = config.model.backbone_name();
        return bench_extract(parts.backbone, &name, parts.device, &images, args.steps, !args.no_mirror);
    }
    let schedule = Schedule::constant(config.optim.lr.min(1e-3));
    let device = trainer.device();
    if let (true, Device::Cuda(i)) = (args.memory, device) {
        facerec_ops::memory::cuda_memory(i, true)?; // the peaks start here
    }
    let median = median_seconds(args.steps, device, || {
        let b = Batch { images: images.shallow_clone(), labels: labels.shallow_clone() };
        trainer.train_step(&b, &schedule, Default::default())?;
        Ok(())
    })?;
    let ranks = match (world, config.parallel.shard_head) {
        (1, _) => String::new(),
        (n, false) => format!(" over {n} ranks"),
        (n, true) => format!(" over {n} ranks, classifier sharded"),
    };
    println!(
        "facerec: {} batch {global}{ranks} on {}: median step {:.4} s = {:.1} images/s (loss {}, {} classes)",
        config.model.backbone_name(),
        facerec_model::device::describe(trainer.device()),
        median,
        global as f64 / median,
        config.loss,
        args.classes
    );
    extras(&args, &config, batch, median, device)
}

/// The lines `--memory`, `--loader`, `--center-overhead` and `--peak` ask for, after a median
/// step of `median` seconds on `device` with `batch` images per rank.
fn extras(args: &BenchArgs, config: &Config, batch: i64, median: f64, device: Device) -> anyhow::Result<()> {
    if args.memory {
        print_memory(device, batch)?;
    }
    if args.loader {
        let rate = loader_rate(config, batch as usize)?;
        println!(
            "facerec: loader {rate:.1} batches/s of {batch}; the step consumes {:.2} batches/s: {:.1}x headroom",
            1.0 / median,
            rate * median
        );
    }
    if args.center_overhead {
        let dim = config.model.backbone.feature_dim();
        let c = center_seconds(args.classes, dim, batch, device)?;
        println!(
            "facerec: center loss on {} classes x {dim}-d, batch {batch}: {:.3} ms = {:.2}% of the step",
            args.classes,
            c * 1e3,
            100.0 * c / median
        );
    }
    if args.peak {
        let flops = step_flops(config, batch, args.classes);
        let achieved = flops / median / 1e9;
        let peak = sgemm_peak(device)?;
        println!(
            "facerec: {:.2} GFLOP per step, {achieved:.1} GFLOP/s achieved; sgemm peak {peak:.1} GFLOP/s; {:.0}% of peak",
            flops / 1e9,
            100.0 * achieved / peak
        );
    }
    Ok(())
}

/// The `--memory` line: what the steps so far needed on `device`.
fn print_memory(device: Device, batch: i64) -> anyhow::Result<()> {
    let gib = |bytes: i64| bytes as f64 / f64::from(1 << 30);
    match device {
        Device::Cuda(i) => {
            let m = facerec_ops::memory::cuda_memory(i, false)?;
            println!(
                "facerec: memory at batch {batch} on cuda:{i}: peak {:.3} GiB allocated in tensors, peak {:.3} GiB reserved by the caching allocator",
                gib(m.peak_allocated),
                gib(m.peak_reserved)
            );
        }
        _ => {
            // SAFETY: getrusage only writes the struct it is given.
            let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
            anyhow::ensure!(unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } == 0, "getrusage failed");
            println!("facerec: memory at batch {batch} on the CPU: peak resident size {:.3} GiB (the whole process)", gib(usage.ru_maxrss * 1024));
        }
    }
    Ok(())
}

/// Batches per second of the loader alone on the config's training data (up to 200 batches of
/// `batch`, or one epoch).
fn loader_rate(config: &Config, batch: usize) -> anyhow::Result<f64> {
    let data = config.open_train()?;
    let cfg = facerec_data::loader::LoaderConfig {
        rank_batch: batch,
        flip: data.flip,
        seed: config.seed,
        ..Default::default()
    };
    let n = cfg.batches_per_epoch(data.source.len()).min(200);
    let t0 = Instant::now();
    let loaded = facerec_data::loader::Loader::new(data.source, &cfg, 0, 0)?.take(n).map(|b| b.map(|_| ())).collect::<Result<Vec<()>, _>>()?.len();
    Ok(loaded as f64 / t0.elapsed().as_secs_f64())
}

/// Floating-point operations of a training step of `batch` images over `classes` classes.
fn step_flops(config: &Config, batch: i64, classes: i64) -> f64 {
    // A training step is about 3 forward passes of the backbone plus the classifier's.
    let feat = config.model.backbone.feature_dim() as f64;
    let forward = config.model.backbone.spec().forward_flops().unwrap_or(f64::NAN);
    3.0 * batch as f64 * (forward + 2.0 * feat * classes as f64)
}
