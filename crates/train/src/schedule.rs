//! Multistep learning rate: `lr = base * gamma^k` where k counts the milestones passed.
//! caffe-face's face model: base 0.1, gamma 0.1, steps at 16K and 24K iterations, stop at 28K.

/// The learning rate at any step.
#[derive(Debug, Clone, PartialEq)]
pub struct MultiStep {
    pub base: f64,
    pub gamma: f64,
    /// Steps (not epochs) at which the rate is multiplied by `gamma`, ascending.
    pub milestones: Vec<usize>,
}

impl MultiStep {
    /// The rate used for step `step` (0-based): milestones `<= step` have been passed.
    pub fn lr_at(&self, step: usize) -> f64 {
        let passed = self.milestones.iter().filter(|&&m| m <= step).count();
        self.base * self.gamma.powi(passed as i32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drops_at_each_milestone() {
        let s = MultiStep { base: 0.1, gamma: 0.1, milestones: vec![3, 5] };
        let lrs: Vec<f64> = (0..7).map(|i| s.lr_at(i)).collect();
        let expect = [0.1, 0.1, 0.1, 0.01, 0.01, 0.001, 0.001];
        for (a, b) in lrs.iter().zip(expect) {
            assert!((a - b).abs() < 1e-15, "{lrs:?}");
        }
    }
}
