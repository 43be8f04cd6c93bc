//! PReLU forward + backward on the CPU: facerec-ops' fused backward against libtorch's own
//! `prelu`, on the activation shapes of the paper's Face-ResNet at batch 32.
//!
//!   cargo bench -p facerec-ops --bench prelu

#![allow(clippy::print_stdout)]

use std::time::Instant;

use tch::{Device, Kind, Tensor};

/// Best of `reps` seconds of forward + backward through `f`, with upstream gradient `g` (the
/// backward of `sum(f * g)`, whose multiply both sides pay alike).
fn time(f: impl Fn(&Tensor, &Tensor) -> Tensor, x: &Tensor, w: &Tensor, g: &Tensor, reps: usize) -> f64 {
    let mut best = f64::MAX;
    for _ in 0..reps {
        let x = x.detach().set_requires_grad(true);
        let w = w.detach().set_requires_grad(true);
        let t0 = Instant::now();
        (f(&x, &w) * g).sum(Kind::Float).backward();
        best = best.min(t0.elapsed().as_secs_f64());
    }
    best
}

fn main() {
    let threads = std::env::var("THREADS").ok().and_then(|t| t.parse().ok()).unwrap_or(2);
    tch::set_num_threads(threads);
    // As the facerec binary does: without it, page faults of the fresh 80 MiB tensors would
    // dominate both sides.
    facerec_ops::memory::keep_freed_memory();
    println!("prelu forward + backward, float32 CPU, {threads} threads (best of 10)");
    let (mut ours_total, mut theirs_total) = (0.0, 0.0);
    // [C, H, W] after each PReLU of Face-ResNet on 112x96 (widths 32..512), and how many there are.
    for (c, h, w, count) in [(32, 110, 94, 1), (64, 108, 92, 1), (64, 54, 46, 2), (128, 52, 44, 1), (128, 26, 22, 4), (256, 24, 20, 1), (256, 12, 10, 10), (512, 10, 8, 1), (512, 5, 4, 6)] {
        let x = Tensor::randn([32, c, h, w], (Kind::Float, Device::Cpu));
        let g = Tensor::randn([32, c, h, w], (Kind::Float, Device::Cpu));
        let slopes = Tensor::full([c], 0.25, (Kind::Float, Device::Cpu));
        let ours = time(|x, w| facerec_ops::prelu(x, w).unwrap(), &x, &slopes, &g, 10);
        let theirs = time(|x, w| x.prelu(w), &x, &slopes, &g, 10);
        ours_total += ours * count as f64;
        theirs_total += theirs * count as f64;
        println!(
            "[32, {c:3}, {h:3}, {w:3}] x{count:<2}  facerec-ops {:7.2} ms   libtorch {:7.2} ms   {:.2}x",
            ours * 1e3,
            theirs * 1e3,
            theirs / ours
        );
    }
    println!(
        "all PReLUs of one step: facerec-ops {:.1} ms, libtorch {:.1} ms: {:.2}x",
        ours_total * 1e3,
        theirs_total * 1e3,
        theirs_total / ours_total
    );
}
