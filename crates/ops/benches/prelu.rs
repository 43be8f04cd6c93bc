//! PReLU forward + backward on the CPU: facerec-ops' fused backward against libtorch's own
//! `prelu`, on the activation shapes of the paper's Face-ResNet at batch 32, under criterion
//! (10 samples per function: one run moves up to 80 MiB tensors). After criterion's report,
//! the fastest single run of each side per shape and their ratio, and the total over the 27
//! PReLUs of one training step.
//!
//!   cargo bench -p facerec-ops --bench prelu
//!   cargo bench -p facerec-ops --bench prelu -- '512, 5'       # only the shapes whose name has this
//!   THREADS=1 cargo bench -p facerec-ops --bench prelu

#![allow(clippy::print_stdout)]

use std::cell::Cell;
use std::time::{Duration, Instant};

use criterion::Criterion;
use tch::{Device, Kind, Tensor};

/// `[C, H, W]` after each PReLU of Face-ResNet on 112x96 (widths 32..512), and how many there are.
const SHAPES: [(i64, i64, i64, usize); 9] = [
    (32, 110, 94, 1),
    (64, 108, 92, 1),
    (64, 54, 46, 2),
    (128, 52, 44, 1),
    (128, 26, 22, 4),
    (256, 24, 20, 1),
    (256, 12, 10, 10),
    (512, 10, 8, 1),
    (512, 5, 4, 6),
];

/// Runs forward + backward of `sum(f(x, w) * g)` `iters` times (the multiply by the upstream
/// gradient `g` is paid alike by both sides), returns the time spent in them and lowers `best`
/// to the fastest single run.
fn run(f: &dyn Fn(&Tensor, &Tensor) -> Tensor, x: &Tensor, w: &Tensor, g: &Tensor, iters: u64, best: &Cell<f64>) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        let x = x.detach().set_requires_grad(true);
        let w = w.detach().set_requires_grad(true);
        let t0 = Instant::now();
        (f(&x, &w) * g).sum(Kind::Float).backward();
        let dt = t0.elapsed();
        best.set(best.get().min(dt.as_secs_f64()));
        total += dt;
    }
    total
}

fn main() {
    let threads = std::env::var("THREADS").ok().and_then(|t| t.parse().ok()).unwrap_or(2);
    tch::set_num_threads(threads);
    // As the facerec binary does: without it, page faults of the fresh 80 MiB tensors would
    // dominate both sides.
    facerec_ops::memory::keep_freed_memory();
    let mut c = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .configure_from_args();
    println!("prelu forward + backward, float32 CPU, {threads} threads");
    let ours_f = |x: &Tensor, w: &Tensor| facerec_ops::prelu(x, w).expect("facerec-ops prelu");
    let theirs_f = |x: &Tensor, w: &Tensor| x.prelu(w);
    let (mut ours_total, mut theirs_total, mut all_measured) = (0.0, 0.0, true);
    let mut lines = Vec::new();
    for (ch, h, w, count) in SHAPES {
        let x = Tensor::randn([32, ch, h, w], (Kind::Float, Device::Cpu));
        let g = Tensor::randn([32, ch, h, w], (Kind::Float, Device::Cpu));
        let slopes = Tensor::full([ch], 0.25, (Kind::Float, Device::Cpu));
        let (ours, theirs) = (Cell::new(f64::INFINITY), Cell::new(f64::INFINITY));
        let mut group = c.benchmark_group(format!("prelu [32, {ch}, {h}, {w}]"));
        group.bench_function("facerec-ops", |b| b.iter_custom(|n| run(&ours_f, &x, &slopes, &g, n, &ours)));
        group.bench_function("libtorch", |b| b.iter_custom(|n| run(&theirs_f, &x, &slopes, &g, n, &theirs)));
        group.finish();
        let (ours, theirs) = (ours.get(), theirs.get());
        if ours.is_finite() && theirs.is_finite() {
            ours_total += ours * count as f64;
            theirs_total += theirs * count as f64;
            lines.push(format!(
                "[32, {ch:3}, {h:3}, {w:3}] x{count:<2}  facerec-ops {:7.2} ms   libtorch {:7.2} ms   {:.2}x",
                ours * 1e3,
                theirs * 1e3,
                theirs / ours
            ));
        } else {
            all_measured = false;
        }
    }
    c.final_summary();
    if lines.is_empty() {
        return;
    }
    println!("\nfastest sample of each (best run of forward + backward):");
    for line in &lines {
        println!("{line}");
    }
    if all_measured {
        println!(
            "all PReLUs of one step: facerec-ops {:.1} ms, libtorch {:.1} ms: {:.2}x",
            ours_total * 1e3,
            theirs_total * 1e3,
            theirs_total / ours_total
        );
    }
}
