//! Multistep learning rate: `lr = base * gamma^k` where k counts the milestones passed, with an
//! optional linear warm-up over the first steps (Goyal et al., "Accurate, Large Minibatch SGD",
//! 2017: the rate of step `s < warmup` is `base * (s + 1) / warmup`).
//! caffe-face's face model: base 0.1, gamma 0.1, steps at 16K and 24K iterations, stop at 28K,
//! no warm-up.

/// The learning rate at any step.
#[derive(Debug, Clone, PartialEq)]
pub struct MultiStep {
    pub base: f64,
    pub gamma: f64,
    /// Steps (not epochs) at which the rate is multiplied by `gamma`, ascending.
    pub milestones: Vec<usize>,
    /// Steps of linear warm-up from `base / warmup` to `base`; 0 for none.
    pub warmup: usize,
}

impl MultiStep {
    /// The rate used for step `step` (0-based): milestones `<= step` have been passed.
    pub fn lr_at(&self, step: usize) -> f64 {
        let passed = self.milestones.iter().filter(|&&m| m <= step).count();
        let warm = if step < self.warmup { (step + 1) as f64 / self.warmup as f64 } else { 1.0 };
        self.base * self.gamma.powi(passed as i32) * warm
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drops_at_each_milestone() {
        let s = MultiStep { base: 0.1, gamma: 0.1, milestones: vec![3, 5], warmup: 0 };
        let lrs: Vec<f64> = (0..7).map(|i| s.lr_at(i)).collect();
        let expect = [0.1, 0.1, 0.1, 0.01, 0.01, 0.001, 0.001];
        for (a, b) in lrs.iter().zip(expect) {
            assert!((a - b).abs() < 1e-15, "{lrs:?}");
        }
    }

    #[test]
    fn warms_up_linearly_then_follows_the_milestones() {
        // By hand: warm-up of 4 steps to 0.2 gives 0.05, 0.1, 0.15, 0.2; the milestone at
        // step 2 already applies during the warm-up (0.2 * 0.5 * 3/4 = 0.075 at step 2).
        let s = MultiStep { base: 0.2, gamma: 0.5, milestones: vec![2, 5], warmup: 4 };
        let lrs: Vec<f64> = (0..7).map(|i| s.lr_at(i)).collect();
        let expect = [0.05, 0.1, 0.075, 0.1, 0.1, 0.05, 0.05];
        for (a, b) in lrs.iter().zip(expect) {
            assert!((a - b).abs() < 1e-15, "{lrs:?}");
        }
    }
}
