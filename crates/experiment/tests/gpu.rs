//! The device tests: facerec's own CUDA-facing code (the PReLU's fallback backward, bf16
//! autocast, a process group of the device's backend, the center-loss update, the caching
//! allocator's memory figures) run on one device and are checked against libtorch's own
//! operations and against the CPU.
//!
//! The device is `FACEREC_TEST_DEVICE` (`cpu` or `cuda`); unset, CUDA when libtorch sees a GPU,
//! else the CPU, so that CI (no GPU) runs every path but the CUDA kernels. Asked for `cuda`
//! without a GPU, every test fails: scripts/gpu_check.sh sets `FACEREC_TEST_DEVICE=cuda`, so a
//! build that cannot reach the GPU is a failure there, never a quiet CPU run.

use std::net::TcpListener;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use facerec_dist::{Backend, DistConfig, ProcessGroup};
use facerec_losses::{CenterLoss, CenterLossConfig};
use tch::{nn, Device, Kind, Tensor};

/// libtorch's random generator is one per process, and the tests seed it and draw from it:
/// they take turns (libtest runs them on parallel threads).
static RNG: Mutex<()> = Mutex::new(());

/// The test device, and this test's turn with the random generator.
fn device() -> (Device, MutexGuard<'static, ()>) {
    let turn = RNG.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let device = match std::env::var("FACEREC_TEST_DEVICE").ok().as_deref() {
        Some("cuda") => {
            assert!(tch::Cuda::is_available(), "FACEREC_TEST_DEVICE=cuda, but libtorch sees no CUDA device");
            Device::Cuda(0)
        }
        Some("cpu") => Device::Cpu,
        Some(other) => panic!("FACEREC_TEST_DEVICE={other}: expected cpu or cuda"),
        None => Device::cuda_if_available(),
    };
    eprintln!("device: {device:?}");
    (device, turn)
}

/// Largest difference between `a` and `b` relative to `b`'s largest magnitude (both moved to
/// the CPU in double precision).
fn rel_diff(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.size(), b.size());
    let a = a.to_device(Device::Cpu).to_kind(Kind::Double);
    let b = b.to_device(Device::Cpu).to_kind(Kind::Double);
    let scale = b.abs().max().double_value(&[]).max(1e-12);
    (a - b).abs().max().double_value(&[]) / scale
}

/// Output and gradients (input, slopes) of `f` for upstream gradient `g`.
fn prelu_run(f: impl Fn(&Tensor, &Tensor) -> Tensor, x: &Tensor, w: &Tensor, g: &Tensor) -> [Tensor; 3] {
    let x = x.detach().set_requires_grad(true);
    let w = w.detach().set_requires_grad(true);
    let y = f(&x, &w);
    (&y * g).sum(Kind::Float).backward();
    [y.detach(), x.grad(), w.grad()]
}

#[test]
fn prelu_matches_libtorch_and_the_cpu() {
    let (device, _turn) = device();
    tch::manual_seed(3);
    for (kind, tol) in [(Kind::Float, 1e-6), (Kind::BFloat16, 1e-2)] {
        let cpu_x = (Tensor::randn([8, 16, 14, 12], (Kind::Float, Device::Cpu)) * 4.0).round() / 4.0; // zeros: the kink
        let cpu_w = Tensor::rand([16], (Kind::Float, Device::Cpu)) - 0.3;
        let cpu_g = Tensor::randn([8, 16, 14, 12], (Kind::Float, Device::Cpu));
        let on = |t: &Tensor| t.to_kind(kind).to_device(device);
        let (x, w, g) = (on(&cpu_x), on(&cpu_w), on(&cpu_g));
        let ours = prelu_run(|x, w| facerec_ops::prelu(x, w).unwrap(), &x, &w, &g);
        let libtorch = prelu_run(|x, w| x.prelu(w), &x, &w, &g);
        let cpu = prelu_run(|x, w| x.prelu(w), &cpu_x.to_kind(kind), &cpu_w.to_kind(kind), &cpu_g.to_kind(kind));
        for (i, what) in ["output", "input gradient", "slope gradient"].iter().enumerate() {
            assert_eq!(ours[i].device(), device, "{what} left the device");
            let d = rel_diff(&ours[i], &libtorch[i]);
            assert!(d <= tol, "{kind:?} {what}: facerec against libtorch on {device:?}: relative difference {d:e} > {tol:e}");
            // The slope gradient sums 8 x 14 x 12 products per channel: the device's summation
            // order differs from the CPU's, so bf16 gets a looser bound there.
            let tol_cpu = if kind == Kind::BFloat16 && i == 2 { 5e-2 } else { tol };
            let d = rel_diff(&ours[i], &cpu[i]);
            assert!(d <= tol_cpu, "{kind:?} {what}: {device:?} against the CPU: relative difference {d:e} > {tol_cpu:e}");
        }
    }
}

#[test]
fn bf16_autocast_lowers_matmuls_and_convolutions_only() {
    let (device, _turn) = device();
    tch::manual_seed(4);
    let a = Tensor::randn([64, 96], (Kind::Float, device));
    let b = Tensor::randn([96, 32], (Kind::Float, device));
    let image = Tensor::randn([2, 3, 16, 16], (Kind::Float, device));
    let filter = Tensor::randn([8, 3, 3, 3], (Kind::Float, device));
    let exact = a.matmul(&b);
    let (product, conv, mse, softmax) = facerec_ops::autocast::bf16(device, || {
        let product = a.matmul(&b);
        let conv = image.conv2d(&filter, None::<Tensor>, [1, 1], [1, 1], [1, 1], 1);
        let mse = product.mse_loss(&product.zeros_like(), tch::Reduction::Mean);
        let softmax = product.log_softmax(1, None::<Kind>);
        (product, conv, mse, softmax)
    })
    .unwrap();
    assert_eq!(product.kind(), Kind::BFloat16, "matmul under autocast");
    assert_eq!(conv.kind(), Kind::BFloat16, "conv2d under autocast");
    // Losses stay in float32 on both devices' policies; log_softmax does on CUDA's (PyTorch's
    // CPU policy leaves it in its input's bfloat16).
    assert_eq!(mse.kind(), Kind::Float, "mse_loss runs in float32 under autocast");
    let want = if device.is_cuda() { Kind::Float } else { Kind::BFloat16 };
    assert_eq!(softmax.kind(), want, "log_softmax under {device:?} autocast");
    let d = rel_diff(&product, &exact);
    assert!(d < 2e-2, "bf16 matmul against float32: relative difference {d:e}");
    assert!(d > 0.0, "the bf16 product equals the float32 one exactly: autocast did not lower it");
    // Off again afterwards.
    assert_eq!(a.matmul(&b).kind(), Kind::Float, "autocast still on after the closure");
}

#[test]
fn one_process_group_runs_the_devices_collectives() {
    let (device, _turn) = device();
    let backend = Backend::for_device(device);
    if backend == Backend::Nccl {
        assert!(facerec_dist::nccl_compiled(), "this build has no ProcessGroupNCCL (CUDA headers were missing at build time)");
    }
    let config = DistConfig {
        rank: 0,
        world_size: 1,
        local_rank: 0,
        master_addr: "127.0.0.1".into(),
        master_port: TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port(),
        timeout: Duration::from_secs(60),
        launcher: facerec_dist::Launcher::Torchrun,
    };
    let group = ProcessGroup::new(&config, backend).unwrap();
    assert_eq!(group.backend(), backend);
    let mut t = Tensor::arange(1000, (Kind::Float, device));
    group.all_reduce(&mut t).unwrap();
    assert!(t.equal(&Tensor::arange(1000, (Kind::Float, device))), "all_reduce over one rank changed the tensor");
    let mut b = Tensor::ones([4, 5], (Kind::Float, device)) * 7.0;
    group.broadcast(&mut b, 0).unwrap();
    assert_eq!(b.sum(Kind::Double).double_value(&[]), 140.0);
    let all = group.all_gather(&b).unwrap();
    assert_eq!(all.len(), 1);
    assert!(all[0].equal(&b) && all[0].device() == device);
    group.barrier().unwrap();
    let mut m = Tensor::from_slice(&[1.0f32, -2.0]).to_device(device);
    group.all_reduce_op(&mut m, facerec_dist::ReduceOp::Max).unwrap();
    assert_eq!(Vec::<f32>::try_from(&m.to_device(Device::Cpu)).unwrap(), [1.0, -2.0]);
    // The overlapped reducer: hooks fire on the device's backward pass; over one rank the
    // averaged gradients are the pass's own, written back by finish.
    let w = Tensor::from_slice(&[1.0f32, 2.0, 3.0]).to_device(device).set_requires_grad(true);
    let v = Tensor::ones([300_000], (Kind::Float, device)).set_requires_grad(true);
    let mut reducer = facerec_dist::GradReducer::new(&group, &[w.shallow_clone(), v.shallow_clone()], 1 << 20, 1 << 10).unwrap();
    assert_eq!(reducer.buckets(), 2);
    reducer.prepare().unwrap();
    ((&w * &w).sum(Kind::Float) + v.sum(Kind::Float) * 2.0).backward();
    reducer.finish(1.0).unwrap();
    assert_eq!(Vec::<f32>::try_from(&w.grad().to_device(Device::Cpu)).unwrap(), [2.0, 4.0, 6.0]);
    assert!(v.grad().eq(2.0).all().int64_value(&[]) == 1, "the second bucket's gradients");
    // A tensor of the other device is refused with an error, not handed to the backend.
    let other = if device.is_cuda() { Device::Cpu } else { Device::cuda_if_available() };
    if other != device {
        let mut wrong = Tensor::ones([3], (Kind::Float, other));
        assert!(group.all_reduce(&mut wrong).is_err(), "{backend:?} took a tensor on {other:?}");
    }
}

/// Two center tables, on the device and on the CPU, given the same five batches: the same loss,
/// feature gradient and Eq. 4 update on both.
#[test]
fn center_loss_update_matches_the_cpu() {
    let (device, _turn) = device();
    tch::manual_seed(5);
    let (classes, dim, batch) = (50, 16, 64);
    let config = CenterLossConfig { lambda: 0.003, alpha: 0.5 };
    let tables = [device, Device::Cpu].map(|d| {
        let vs = nn::VarStore::new(d);
        let loss = CenterLoss::new(&vs.root(), classes, dim, config).unwrap();
        (vs, loss)
    });
    for step in 0..5 {
        let features = Tensor::randn([batch, dim], (Kind::Float, Device::Cpu)) + 1.0;
        let labels = Tensor::randint(classes / 2, [batch], (Kind::Int64, Device::Cpu)); // repeats
        let mut out = vec![];
        for (_, loss) in &tables {
            let d = loss.centers().device();
            let x = features.to_device(d).set_requires_grad(true);
            let y = labels.to_device(d);
            let o = loss.forward(&x, &y).unwrap();
            o.objective.backward();
            loss.update_centers(&x, &y).unwrap();
            out.push((o.loss.to_device(Device::Cpu), x.grad().to_device(Device::Cpu), loss.centers().to_device(Device::Cpu)));
        }
        let [(l_dev, g_dev, c_dev), (l_cpu, g_cpu, c_cpu)] = <[_; 2]>::try_from(out).unwrap();
        for (what, a, b) in [("L_C", &l_dev, &l_cpu), ("feature gradient", &g_dev, &g_cpu), ("centers", &c_dev, &c_cpu)] {
            let d = rel_diff(a, b);
            assert!(d < 1e-5, "step {step}, {what}: {device:?} against the CPU: relative difference {d:e}");
        }
        assert!(c_dev.abs().sum(Kind::Double).double_value(&[]) > 0.0, "the centers did not move");
    }
}

/// A class-sharded center loss (one shard: every class) on the device and on the CPU, the same
/// weights and batch: the same loss, feature and classifier gradients and center update.
#[test]
fn a_sharded_head_matches_the_cpu() {
    let (device, _turn) = device();
    let config: facerec_losses::LossConfig = toml::from_str("lambda = 0.01\nalpha = 0.5").unwrap();
    let shard = facerec_losses::ClassShard::whole(1000);
    let runs = [device, Device::Cpu].map(|d| {
        tch::manual_seed(2);
        let mut vs = nn::VarStore::new(Device::Cpu);
        let loss = config.build_sharded(&vs.root(), 64, &shard, None).unwrap();
        vs.set_device(d);
        tch::manual_seed(3);
        let x = (Tensor::randn([128, 64], (Kind::Float, Device::Cpu)) * 3.0).to_device(d).set_requires_grad(true);
        let y = Tensor::randint(1000, [128], (Kind::Int64, Device::Cpu)).to_device(d);
        let out = loss.forward(&x, &y).unwrap();
        out.objective.backward();
        let solver = facerec_losses::SolverStep { lr: 0.1, momentum: 0.9, weight_decay: 0.0 };
        loss.after_step(&x.detach(), &y, solver, &facerec_losses::OneProcess).unwrap();
        let cpu = |t: &Tensor| t.to_device(Device::Cpu);
        let weight = vs.variables()["head.fc.weight"].shallow_clone();
        [cpu(&out.objective.detach()), cpu(&x.grad()), cpu(&weight.grad()), cpu(loss.centers().unwrap())]
    });
    for (what, a, b) in ["loss", "feature gradient", "classifier gradient", "centers"].iter().zip(&runs[0]).zip(&runs[1]).map(|((w, a), b)| (w, a, b)) {
        let d = rel_diff(a, b);
        assert!(d < 1e-5, "{what}: {device:?} against the CPU: relative difference {d:e}");
    }
}

#[test]
fn cuda_memory_figures_follow_allocations() {
    let (device, _turn) = device();
    match device {
        Device::Cuda(i) => {
            let before = facerec_ops::memory::cuda_memory(i, true).unwrap();
            let big = Tensor::zeros([64 << 20], (Kind::Float, device)); // 256 MiB
            let during = facerec_ops::memory::cuda_memory(i, false).unwrap();
            drop(big);
            let after = facerec_ops::memory::cuda_memory(i, false).unwrap();
            eprintln!("before {before:?}\nduring {during:?}\nafter  {after:?}");
            let mib = 1 << 20;
            assert!(during.allocated - before.allocated >= 256 * mib, "256 MiB tensor not counted: {before:?} {during:?}");
            assert!(after.allocated <= before.allocated + mib, "freed tensor still counted: {after:?}");
            assert!(after.peak_allocated >= during.allocated && after.peak_reserved >= after.reserved, "{after:?}");
        }
        _ if tch::Cuda::is_available() => eprintln!("CUDA is there but the test device is the CPU: nothing to measure"),
        _ => {
            // No CUDA in this process: a clear error, not a crash or made-up zeros.
            let err = facerec_ops::memory::cuda_memory(0, false).unwrap_err().to_string();
            assert!(err.contains("no CUDA"), "{err}");
        }
    }
}

/// The shipped face config's trainer on the device and on the CPU: the same initial weights
/// (the model is initialised on the CPU and moved), then the same first training step.
#[test]
fn trainer_starts_alike_and_takes_the_same_first_step() {
    use facerec_data::loader::Batch;
    use facerec_train::schedule::Schedule;
    let (device, _turn) = device();
    // Compiled in: no file of the checkout is read.
    let text = include_str!("../../../configs/lfw_faceresnet_small_center.toml");
    let classes = 20;
    let trainers = [device, Device::Cpu].map(|d| {
        let name = if d.is_cuda() { "cuda" } else { "cpu" };
        // The data is never read here, but the config's paths must exist: any file will do.
        let exe = std::env::current_exe().unwrap().display().to_string();
        let here = std::env::current_dir().unwrap().display().to_string();
        let sets = [
            format!("device={name}"),
            "eval.lfw=".into(),
            format!("data.images={here}"),
            format!("data.landmarks={exe}"),
            format!("data.exclude_pairs.pairs={exe}"),
        ];
        let config = facerec_experiment::Config::parse(text, "lfw_faceresnet_small_center.toml".as_ref(), &sets).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let trainer = facerec_train::Trainer::new(config.train_config(), dir.path(), classes).unwrap();
        assert_eq!(trainer.device(), d);
        (trainer, dir)
    });
    let [(mut on_device, _d1), (mut on_cpu, _d2)] = trainers;
    let weights = |t: &facerec_train::Trainer| t.named_variables();
    let (a, b) = (weights(&on_device), weights(&on_cpu));
    assert_eq!(a.len(), b.len());
    for ((name, x), (_, y)) in a.iter().zip(&b) {
        assert_eq!(x.device(), device, "{name} is not on the device");
        assert!(x.to_device(Device::Cpu).equal(y), "{name} starts differently on {device:?} and on the CPU");
    }
    tch::manual_seed(6);
    let batch = Batch {
        images: Tensor::randn([16, 3, 112, 96], (Kind::Float, Device::Cpu)),
        labels: Tensor::randint(classes, [16], (Kind::Int64, Device::Cpu)),
    };
    let schedule = Schedule::constant(0.02);
    let step = |t: &mut facerec_train::Trainer| {
        let b = Batch { images: batch.images.shallow_clone(), labels: batch.labels.shallow_clone() };
        t.train_step(&b, &schedule, Duration::ZERO).unwrap()
    };
    let (x, y) = (step(&mut on_device), step(&mut on_cpu));
    let rel = (x.loss - y.loss).abs() / y.loss;
    assert!(rel < 1e-4, "first step's loss: {} on {device:?}, {} on the CPU", x.loss, y.loss);
    for ((name, x), (_, y)) in weights(&on_device).iter().zip(&weights(&on_cpu)) {
        let d = rel_diff(x, y);
        assert!(d < 1e-3, "{name} after one step: {device:?} against the CPU: relative difference {d:e}");
    }
}
