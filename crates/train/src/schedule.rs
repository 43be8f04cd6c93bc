//! The learning rate of every step, by `[schedule] kind`:
//!
//! - **multistep** (the default; caffe-face's face model: base 0.1, gamma 0.1, steps at 16K and
//!   24K iterations, stop at 28K): `lr = base * gamma^k`, k counting the milestones passed, with
//!   an optional linear warm-up over the first steps (Goyal et al., "Accurate, Large Minibatch
//!   SGD", 2017: the rate of step `s < warmup` is `base * (s + 1) / warmup`).
//! - **polynomial**: arcface_torch's `PolynomialLRWarmup` (`lr_scheduler.py`), as its training
//!   loop steps it (one scheduler step after each optimiser step, the scheduler built at
//!   `last_epoch` 0): step `l` (0-based) runs at `base` for `l = 0`, at `base * l / warmup` for
//!   `0 < l <= warmup` and at `base * (1 - (min(l, total) - warmup) / (total - warmup))^power`
//!   after. So its first step runs at the full rate even with a warm-up, as arcface_torch's does.
//! - **cosine**: `base * (1 + cos(pi * (l - warmup) / (total - warmup))) / 2` after the same
//!   linear warm-up as multistep's: PyTorch's `CosineAnnealingLR` (`eta_min` 0) over the steps
//!   after the warm-up.

use std::f64::consts::PI;

/// The learning rate at any step.
#[derive(Debug, Clone, PartialEq)]
pub enum Schedule {
    MultiStep {
        base: f64,
        gamma: f64,
        /// Steps (not epochs) at which the rate is multiplied by `gamma`, ascending.
        milestones: Vec<usize>,
        /// Steps of linear warm-up from `base / warmup` to `base`; 0 for none.
        warmup: usize,
    },
    Polynomial { base: f64, warmup: usize, total: usize, power: f64 },
    Cosine { base: f64, warmup: usize, total: usize },
}

impl Schedule {
    /// A constant rate (benchmarks, tests).
    pub fn constant(base: f64) -> Self {
        Schedule::MultiStep { base, gamma: 1.0, milestones: Vec::new(), warmup: 0 }
    }

    /// The rate used for step `step` (0-based).
    pub fn lr_at(&self, step: usize) -> f64 {
        let warm = |warmup: usize| if step < warmup { (step + 1) as f64 / warmup as f64 } else { 1.0 };
        match *self {
            Schedule::MultiStep { base, gamma, ref milestones, warmup } => {
                let passed = milestones.iter().filter(|&&m| m <= step).count();
                base * gamma.powi(passed as i32) * warm(warmup)
            }
            Schedule::Polynomial { base, warmup, total, power } => {
                if step == 0 {
                    base
                } else if step <= warmup {
                    base * step as f64 / warmup as f64
                } else {
                    let done = (step.min(total) - warmup) as f64 / (total - warmup).max(1) as f64;
                    base * (1.0 - done).powf(power)
                }
            }
            Schedule::Cosine { base, warmup, total } => {
                if step < warmup {
                    base * warm(warmup)
                } else {
                    let done = (step.min(total) - warmup) as f64 / (total - warmup).max(1) as f64;
                    base * 0.5 * (1.0 + (PI * done).cos())
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(got: &[f64], want: &[f64]) {
        assert_eq!(got.len(), want.len());
        for (a, b) in got.iter().zip(want) {
            assert!((a - b).abs() < 1e-15, "{got:?} vs {want:?}");
        }
    }

    #[test]
    fn drops_at_each_milestone() {
        let s = Schedule::MultiStep { base: 0.1, gamma: 0.1, milestones: vec![3, 5], warmup: 0 };
        let lrs: Vec<f64> = (0..7).map(|i| s.lr_at(i)).collect();
        close(&lrs, &[0.1, 0.1, 0.1, 0.01, 0.01, 0.001, 0.001]);
    }

    #[test]
    fn warms_up_linearly_then_follows_the_milestones() {
        // By hand: warm-up of 4 steps to 0.2 gives 0.05, 0.1, 0.15, 0.2; the milestone at
        // step 2 already applies during the warm-up (0.2 * 0.5 * 3/4 = 0.075 at step 2).
        let s = Schedule::MultiStep { base: 0.2, gamma: 0.5, milestones: vec![2, 5], warmup: 4 };
        let lrs: Vec<f64> = (0..7).map(|i| s.lr_at(i)).collect();
        close(&lrs, &[0.05, 0.1, 0.075, 0.1, 0.1, 0.05, 0.05]);
    }

    #[test]
    fn polynomial_by_hand() {
        // base 1, warm-up 2, total 6, power 1: step 0 at the base (arcface_torch's first
        // step), 1/2, 1 over the warm-up, then 1 - (l - 2) / 4 = 3/4, 1/2, 1/4, 0, and 0 after.
        let s = Schedule::Polynomial { base: 1.0, warmup: 2, total: 6, power: 1.0 };
        close(&(0..9).map(|i| s.lr_at(i)).collect::<Vec<_>>(), &[1.0, 0.5, 1.0, 0.75, 0.5, 0.25, 0.0, 0.0, 0.0]);
        // power 2 squares the decay: (3/4)^2 at step 3.
        let s = Schedule::Polynomial { base: 1.0, warmup: 2, total: 6, power: 2.0 };
        assert!((s.lr_at(3) - 0.5625).abs() < 1e-15);
    }

    #[test]
    fn cosine_by_hand() {
        // base 2, warm-up 2, total 6: 1, 2, then 1 + cos(pi * (l - 2) / 4): 2, 1 + 1/sqrt(2), 1,
        // 1 - 1/sqrt(2), 0.
        let s = Schedule::Cosine { base: 2.0, warmup: 2, total: 6 };
        let h = std::f64::consts::FRAC_1_SQRT_2;
        close(&(0..8).map(|i| s.lr_at(i)).collect::<Vec<_>>(), &[1.0, 2.0, 2.0, 1.0 + h, 1.0, 1.0 - h, 0.0, 0.0]);
    }
}
