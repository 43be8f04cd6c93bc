//! SphereFace, the angular softmax (A-Softmax): Liu, Wen, Yu, Li, Raj, Song, "SphereFace: Deep
//! Hypersphere Embedding for Face Recognition", CVPR 2017, Eq. 7 and its released code
//! (`margin_inner_product_layer.cpp`):
//!
//! `L = -1/N sum_i log( e^{||x_i|| psi(t_{y_i})} / (e^{||x_i|| psi(t_{y_i})} + sum_{j != y_i} e^{||x_i|| cos t_j}) )`
//!
//! with class weights L2-normalised (no bias), features as they are (their norm scales the
//! logits), an integer multiplicative angular margin `m`, and `psi(t) = (-1)^k cos(m t) - 2k` for
//! `t` in `[k pi / m, (k + 1) pi / m]`, the monotonic extension of `cos(m t)` to `[0, pi]`.
//! `cos(m t)` is the Chebyshev polynomial of `cos t` (as the released code computes it), `k` is
//! found from `acos`.
//!
//! **Annealing.** Trained from scratch, A-Softmax does not converge with the full margin, so the
//! released code blends the target logit with the plain one,
//! `f_y = ||x|| (lambda cos t + psi(t)) / (1 + lambda)`, with
//! `lambda = max(lambda_min, base (1 + gamma iter)^(-power))` falling from `base` (1000) to
//! `lambda_min` (5 in the paper's face model) as the iterations go by. The iteration counter is a
//! variable of the loss (`iteration`), so a resumed run continues the schedule exactly; it
//! advances once per training step.

use serde::{Deserialize, Serialize};
use tch::{nn, Tensor};

use facerec_model::layers::Linear;
use facerec_core::plugin::Plug;

use crate::error::Result;
use crate::loss::{Loss, LossOutput, LossSpec, Ranks, SolverStep, Term};
use crate::margin::{open_interval, unit_rows};
use crate::softmax::check_labels;

/// `[loss] name = "sphereface"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SphereFaceConfig {
    /// `m`, the multiplicative angular margin, an integer from 1 (plain normalised-weight
    /// softmax) to 5 (the paper: 4).
    #[serde(default = "default_margin")]
    pub margin: u32,
    /// The annealing's `base`: lambda at iteration 0 (the released code: 1000).
    #[serde(default = "default_base")]
    pub base: f64,
    /// The annealing's `gamma` (the released code: 0.12).
    #[serde(default = "default_gamma")]
    pub gamma: f64,
    /// The annealing's `power` (the released code: 1).
    #[serde(default = "default_power")]
    pub power: f64,
    /// The floor of lambda (the paper's face model: 5; 0 reaches the full margin).
    #[serde(default = "default_lambda_min")]
    pub lambda_min: f64,
}

fn default_margin() -> u32 {
    4
}
fn default_base() -> f64 {
    1000.0
}
fn default_gamma() -> f64 {
    0.12
}
fn default_power() -> f64 {
    1.0
}
fn default_lambda_min() -> f64 {
    5.0
}

impl SphereFaceConfig {
    /// The blend weight lambda at `iteration` (0-based).
    pub fn lambda_at(&self, iteration: f64) -> f64 {
        (self.base * (1.0 + self.gamma * iteration).powf(-self.power)).max(self.lambda_min)
    }
}

impl Plug for SphereFaceConfig {
    const NAME: &'static str = "sphereface";

    fn check(&self) -> std::result::Result<(), String> {
        if !(1..=5).contains(&self.margin) {
            return Err(format!("loss.margin must be an integer from 1 to 5, got {}", self.margin));
        }
        for (key, v) in [("loss.base", self.base), ("loss.gamma", self.gamma), ("loss.power", self.power), ("loss.lambda_min", self.lambda_min)] {
            if !(v >= 0.0 && v.is_finite()) {
                return Err(format!("{key} must be >= 0, got {v}"));
            }
        }
        Ok(())
    }
}

impl LossSpec for SphereFaceConfig {
    /// The class weights under `p / "head" / "fc"` (`weight: [classes, dim]`, no bias) and the
    /// iteration counter `p / "head" / "iteration"`.
    fn build(&self, p: &nn::Path, feature_dim: i64, num_classes: i64) -> Result<Box<dyn Loss>> {
        let head = p / "head";
        let fc = Linear::new(&head / "fc", feature_dim, num_classes, false);
        let iteration = head.f_zeros_no_train("iteration", &[])?;
        Ok(Box::new(SphereFace { fc, iteration, config: self.clone() }))
    }
}

/// The normalised classifier, the margin and the annealing's iteration counter.
#[derive(Debug)]
pub struct SphereFace {
    fc: Linear,
    iteration: Tensor,
    config: SphereFaceConfig,
}

/// `cos(m t)` as the Chebyshev polynomial `T_m` of `c = cos t`.
fn cos_multiple(c: &Tensor, m: u32) -> Result<Tensor> {
    let c2 = c.f_square()?;
    Ok(match m {
        1 => c.shallow_clone(),
        2 => c2.f_mul_scalar(2.0)?.f_sub_scalar(1.0)?,
        3 => c2.f_mul_scalar(4.0)?.f_sub_scalar(3.0)?.f_mul(c)?,
        4 => c2.f_square()?.f_mul_scalar(8.0)?.f_sub(&c2.f_mul_scalar(8.0)?)?.f_add_scalar(1.0)?,
        _ => c2.f_square()?.f_mul_scalar(16.0)?.f_sub(&c2.f_mul_scalar(20.0)?)?.f_add_scalar(5.0)?.f_mul(c)?,
    })
}

impl SphereFace {
    /// `[batch, classes]` cosines, and the features' norms `[batch, 1]`.
    fn cosines(&self, features: &Tensor) -> Result<(Tensor, Tensor)> {
        let norms = features.f_square()?.f_sum_dim_intlist([1i64].as_slice(), true, features.kind())?.f_sqrt()?;
        let cos = unit_rows(features)?.f_matmul(&unit_rows(&self.fc.weight)?.f_tr()?)?;
        Ok((cos, norms))
    }

    /// `psi(t)` of the target cosines `c`: `(-1)^k cos(m t) - 2k`, `k = floor(m t / pi)`.
    pub fn psi(c: &Tensor, m: u32) -> Result<Tensor> {
        let c = open_interval(c)?;
        let k = tch::no_grad(|| -> Result<Tensor> {
            Ok(c.f_acos()?.f_mul_scalar(f64::from(m) / std::f64::consts::PI)?.f_floor()?.f_clamp(0.0, f64::from(m) - 1.0)?)
        })?;
        // (-1)^k = 1 - 2 (k mod 2)
        let sign = k.f_remainder(2.0)?.f_mul_scalar(-2.0)?.f_add_scalar(1.0)?;
        Ok(cos_multiple(&c, m)?.f_mul(&sign)?.f_sub(&k.f_mul_scalar(2.0)?)?)
    }

    /// Lambda of the current iteration.
    pub fn lambda(&self) -> Result<f64> {
        Ok(self.config.lambda_at(f64::try_from(&self.iteration)?))
    }
}

impl Loss for SphereFace {
    fn forward(&self, features: &Tensor, labels: &Tensor) -> Result<LossOutput> {
        check_labels(labels, features, self.fc.weight.size()[0])?;
        let (cos, norms) = self.cosines(features)?;
        let index = labels.f_unsqueeze(1)?;
        let target = cos.f_gather(1, &index, false)?; //                                   [batch, 1]
        let lambda = self.lambda()?;
        let blended = target.f_mul_scalar(lambda)?.f_add(&Self::psi(&target, self.config.margin)?)?.f_div_scalar(1.0 + lambda)?;
        let logits = cos.f_scatter(1, &index, &blended)?.f_mul(&norms)?;
        let loss = logits.f_cross_entropy_loss::<Tensor>(labels, None, tch::Reduction::Mean, -100, 0.0)?;
        LossOutput::from_logits(loss, &cos.f_mul(&norms)?)
    }

    /// `||x|| cos t_j`: the logits without the margin.
    fn logits(&self, features: &Tensor) -> Result<Tensor> {
        let (cos, norms) = self.cosines(features)?;
        Ok(cos.f_mul(&norms)?)
    }

    fn terms(&self) -> Vec<Term> {
        vec![Term::unit("sphereface_loss")]
    }

    /// One more iteration of the annealing (every rank counts the same steps).
    fn after_step(&self, _features: &Tensor, _labels: &Tensor, _solver: SolverStep, _ranks: &dyn Ranks) -> Result<()> {
        tch::no_grad(|| -> Result<()> {
            let mut iteration = self.iteration.shallow_clone();
            let _ = iteration.f_add_scalar_(1.0)?;
            Ok(())
        })
    }

    fn synced_state(&self) -> Vec<&Tensor> {
        vec![&self.iteration]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn psi_is_the_monotonic_extension_of_cos_m_theta() {
        for m in 1..=5u32 {
            let thetas: Vec<f64> = (0..=200).map(|i| std::f64::consts::PI * f64::from(i) / 200.0).collect();
            let c = Tensor::from_slice(&thetas.iter().map(|t| t.cos()).collect::<Vec<_>>());
            let psi = Vec::<f64>::try_from(SphereFace::psi(&c, m).unwrap()).unwrap();
            for (t, p) in thetas.iter().zip(&psi) {
                let k = ((f64::from(m) * t / std::f64::consts::PI).floor()).min(f64::from(m) - 1.0);
                let want = (-1f64).powf(k) * (f64::from(m) * t).cos() - 2.0 * k;
                assert!((p - want).abs() < 1e-5, "m {m} t {t}: {p} vs {want}");
            }
            assert!(psi.windows(2).all(|w| w[1] <= w[0] + 1e-9), "m {m}: psi must fall with the angle");
            assert!((psi[200] - (1.0 - 2.0 * f64::from(m))).abs() < 1e-5, "m {m}: psi(pi) = 1 - 2m");
        }
    }

    #[test]
    fn lambda_anneals_from_base_to_its_floor() {
        let c = SphereFaceConfig { margin: 4, base: 1000.0, gamma: 0.12, power: 1.0, lambda_min: 5.0 };
        assert_eq!(c.lambda_at(0.0), 1000.0);
        assert!((c.lambda_at(100.0) - 1000.0 / 13.0).abs() < 1e-9);
        assert_eq!(c.lambda_at(1e6), 5.0);
    }
}
