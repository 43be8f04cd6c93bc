//! facerec's optimisers and learning-rate schedules against the references run by PyTorch
//! (`scripts/reference/optim_schedules.py`): arcface_torch's own `PolynomialLRWarmup`
//! (imported from ../shared/reference/arcface_torch), PyTorch's `CosineAnnealingLR` and
//! `torch.optim.AdamW`.

use std::path::Path;
use std::process::Command;

use facerec_train::optim::{Decay, Optimizer};
use facerec_train::schedule::Schedule;
use tch::{Kind, Tensor};

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error>>;

/// Runs the reference script; its stdout.
fn reference(args: &[&str]) -> Result<String> {
    let py = std::env::var("FACEREC_PYTHON").unwrap_or_else(|_| ".deps/venv/bin/python".into());
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/reference/optim_schedules.py");
    let out = Command::new(&py).arg(script).args(args).output().map_err(|e| format!("{py}: {e}"))?;
    assert!(out.status.success(), "optim_schedules.py {args:?}:\n{}", String::from_utf8_lossy(&out.stderr));
    Ok(String::from_utf8(out.stdout)?)
}

/// The rates the reference used at each optimiser step, against `schedule`'s: equal to 1e-12
/// of the base rate (the reference chains its factors step by step, facerec computes each
/// step's rate in closed form; they differ by rounding only).
fn same_rates(args: &[&str], schedule: &Schedule, base: f64) -> Result {
    let theirs: Vec<f64> = serde_json::from_str(&reference(args)?)?;
    assert!(theirs.len() > 10);
    for (step, want) in theirs.iter().enumerate() {
        let got = schedule.lr_at(step);
        assert!((got - want).abs() <= 1e-12 * base, "{args:?}: step {step}: facerec {got}, reference {want}");
    }
    Ok(())
}

#[test]
fn the_polynomial_schedule_is_arcface_torchs_at_every_step() -> Result {
    // With and without warm-up, power 1 (arcface_torch's) and 2, and past the end.
    for (warmup, total, power) in [(0, 40, 1.0), (5, 40, 1.0), (7, 53, 2.0)] {
        let schedule = Schedule::Polynomial { base: 0.1, warmup, total, power };
        let (w, t, p, n) = (warmup.to_string(), total.to_string(), power.to_string(), (total + 5).to_string());
        same_rates(&["polynomial", "--base", "0.1", "--warmup", &w, "--total", &t, "--power", &p, "--steps", &n], &schedule, 0.1)?;
    }
    Ok(())
}

#[test]
fn the_cosine_schedule_is_pytorchs_cosine_annealing() -> Result {
    let schedule = Schedule::Cosine { base: 0.2, warmup: 0, total: 60 };
    same_rates(&["cosine", "--base", "0.2", "--total", "60", "--steps", "61"], &schedule, 0.2)
}

fn npy(dir: &Path, name: &str) -> Result<Tensor> {
    let a = facerec_data::npy::read::<f32, ndarray::IxDyn>(&dir.join(format!("{name}.npy")))?;
    Ok(Tensor::try_from(&a)?)
}

/// 50 steps of AdamW (lr 1e-2, weight decay 0.1 on every parameter, PyTorch's betas and eps)
/// on the same starting values and gradients: the same parameters to 1e-6.
#[test]
fn adamw_is_torchs_adamw_over_fifty_steps() -> Result {
    let dir = tempfile::tempdir()?;
    reference(&["adamw", "--out", dir.path().to_str().unwrap(), "--steps", "50", "--lr", "1e-2", "--weight-decay", "0.1"])?;
    let (gw, gb) = (npy(dir.path(), "gw")?, npy(dir.path(), "gb")?);
    let w = npy(dir.path(), "w0")?.set_requires_grad(true);
    let b = npy(dir.path(), "b0")?.set_requires_grad(true);
    let mut opt = Optimizer::adamw(vec![("w".into(), w.shallow_clone()), ("b".into(), b.shallow_clone())], (0.9, 0.999), 1e-8, 0.1, Decay::All);
    for t in 0..50 {
        opt.zero_grad()?;
        // The gradient of sum(p * g) is g.
        (w.f_mul(&gw.get(t))?.f_sum(Kind::Float)? + b.f_mul(&gb.get(t))?.f_sum(Kind::Float)?).backward();
        opt.step(1e-2)?;
    }
    for (ours, name) in [(&w, "w"), (&b, "b")] {
        let theirs = npy(dir.path(), name)?;
        let d = f64::try_from(ours.f_sub(&theirs)?.abs().max())?;
        let moved = f64::try_from(ours.f_sub(&npy(dir.path(), &format!("{name}0"))?)?.abs().max())?;
        eprintln!("AdamW {name}: max abs diff to torch.optim.AdamW {d:.1e} after moving up to {moved:.1e}");
        assert!(moved > 1e-2, "the parameters must have moved for the comparison to mean something");
        assert!(d <= 1e-6, "{name}: max abs diff {d}");
    }
    // The state holds both moments and the step count of each parameter.
    let names: Vec<String> = opt.state().into_iter().map(|(k, _)| k).collect();
    assert_eq!(names, ["exp_avg.b", "exp_avg.w", "exp_avg_sq.b", "exp_avg_sq.w", "step.b", "step.w"]);
    Ok(())
}
