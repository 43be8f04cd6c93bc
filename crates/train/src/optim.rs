//! The optimisers, PyTorch's formulations, written here rather than taken from `tch::nn`
//! because a checkpoint must hold their state (momentum, Adam's moments) for an exact resume
//! and tch's optimisers do not expose it:
//!
//! - **SGD** with momentum and weight decay (`torch.optim.SGD`): `g = grad + wd * p`,
//!   `v = momentum * v + g` (`v = g` on the first step), `p -= lr * v`;
//! - **AdamW** (`torch.optim.AdamW`, Loshchilov and Hutter, ICLR 2019; arcface_torch's ViT
//!   recipes): `p *= 1 - lr * wd`, `m = lerp(m, g, 1 - b1)`, `v = b2 v + (1 - b2) g^2`,
//!   `p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)`, in PyTorch's order of
//!   operations (its single-tensor path), so that the two agree to rounding.
//!
//! Parameters are kept sorted by name so that the update order, and the checkpoint, are
//! deterministic. Which parameters weight decay applies to is `[optim] decay`: facerec's
//! `"weights"` (conv and fully connected weights, the tensors of two or more dimensions; not
//! biases, which caffe-face does not decay either, nor PReLU slopes, which decay would pull
//! towards a plain ReLU, nor batch-norm scales and shifts) or PyTorch's and arcface_torch's
//! `"all"`. Every parameter moves at the base rate unless [`Optimizer::set_lr_mult`] scales the
//! rate of some (a pretrained backbone under a new head).
//!
//! The state is named `<slot>.<parameter>` (`momentum.backbone.conv1.weight`, `exp_avg.*`,
//! `exp_avg_sq.*`, and `step.*`, a 0-dim count), which is how checkpoints store it.

use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

use crate::error::Result;

/// The slots of optimiser state, as checkpoints name them (`<slot>.<parameter>`).
pub const STATE_SLOTS: [&str; 4] = ["momentum", "exp_avg", "exp_avg_sq", "step"];

/// The parameter a state entry `<slot>.<parameter>` belongs to, and its slot; `None` when the
/// name is not optimiser state.
pub fn state_parameter(key: &str) -> Option<(&str, &str)> {
    let (slot, param) = key.split_once('.')?;
    STATE_SLOTS.contains(&slot).then_some((slot, param))
}

/// `[optim] decay`: which parameters weight decay applies to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Decay {
    /// Tensors of two or more dimensions (conv and fully connected weights).
    #[default]
    Weights,
    /// Every parameter, as `torch.optim` applies it to a plain parameter list (arcface_torch).
    All,
}

/// One parameter and how it moves.
#[derive(Debug)]
struct Param {
    name: String,
    tensor: Tensor,
    decay: bool,
    /// The learning rate of this parameter over the base rate.
    lr_mult: f64,
    /// Skipped by the step altogether: no move, no decay, no momentum (a frozen phase).
    frozen: bool,
}

/// The parameters an optimiser moves, sorted by name, and what every optimiser does with their
/// gradients (clear, measure, clip).
#[derive(Debug)]
struct Params(Vec<Param>);

impl Params {
    fn new(mut named: Vec<(String, Tensor)>, decay: Decay) -> Self {
        named.sort_by(|a, b| a.0.cmp(&b.0));
        Params(
            named
                .into_iter()
                .map(|(name, tensor)| Param { decay: decay == Decay::All || tensor.dim() >= 2, lr_mult: 1.0, frozen: false, name, tensor })
                .collect(),
        )
    }

    fn index(&self, name: &str) -> Option<usize> {
        self.0.iter().position(|p| p.name == name)
    }
}

/// `n` empty slots (a tensor is not `Clone`).
fn nones(n: usize) -> Vec<Option<Tensor>> {
    (0..n).map(|_| None).collect()
}

/// SGD's state: the momentum buffer of each parameter that has had a step.
#[derive(Debug, Default)]
struct SgdState {
    momentum: Vec<Option<Tensor>>,
}

/// AdamW's state per parameter: the moments and the count of its steps.
#[derive(Debug, Default)]
struct AdamState {
    exp_avg: Vec<Option<Tensor>>,
    exp_avg_sq: Vec<Option<Tensor>>,
    steps: Vec<u64>,
}

/// Which rule, with its numbers and state.
#[derive(Debug)]
enum Rule {
    Sgd { momentum: f64, state: SgdState },
    AdamW { betas: (f64, f64), eps: f64, state: AdamState },
}

/// An optimiser over named parameters.
#[derive(Debug)]
pub struct Optimizer {
    params: Params,
    pub weight_decay: f64,
    rule: Rule,
}

impl Optimizer {
    /// SGD with `momentum` over the given named, trainable tensors.
    pub fn sgd(named: Vec<(String, Tensor)>, momentum: f64, weight_decay: f64, decay: Decay) -> Self {
        let params = Params::new(named, decay);
        let n = params.0.len();
        Optimizer { params, weight_decay, rule: Rule::Sgd { momentum, state: SgdState { momentum: nones(n) } } }
    }

    /// AdamW with `betas` and `eps` over the given named, trainable tensors.
    pub fn adamw(named: Vec<(String, Tensor)>, betas: (f64, f64), eps: f64, weight_decay: f64, decay: Decay) -> Self {
        let params = Params::new(named, decay);
        let n = params.0.len();
        let state = AdamState { exp_avg: nones(n), exp_avg_sq: nones(n), steps: vec![0; n] };
        Optimizer { params, weight_decay, rule: Rule::AdamW { betas, eps, state } }
    }

    /// SGD's momentum (0 for AdamW): what caffe-face's center update follows.
    pub fn momentum(&self) -> f64 {
        match self.rule {
            Rule::Sgd { momentum, .. } => momentum,
            Rule::AdamW { .. } => 0.0,
        }
    }

    /// Moves the parameters whose name starts with `prefix` at `mult` times the base rate;
    /// returns how many there are.
    pub fn set_lr_mult(&mut self, prefix: &str, mult: f64) -> usize {
        self.each_named(prefix, |p| p.lr_mult = mult)
    }

    /// Freezes (or thaws) the parameters whose names start with `prefix`: a frozen parameter is
    /// skipped by the step as if it had no gradient (unlike a zero `lr_mult`, under which its
    /// momentum and moments still build). Returns how many parameters it names.
    pub fn freeze(&mut self, prefix: &str, frozen: bool) -> usize {
        self.each_named(prefix, |p| p.frozen = frozen)
    }

    /// Applies `set` to the parameters whose names start with `prefix`; returns how many.
    fn each_named(&mut self, prefix: &str, mut set: impl FnMut(&mut Param)) -> usize {
        let mut n = 0;
        for p in self.params.0.iter_mut().filter(|p| p.name.starts_with(prefix)) {
            set(p);
            n += 1;
        }
        n
    }

    /// Clears the gradients of all parameters: drops them, as PyTorch's `zero_grad()` does by
    /// default, so that the next backward stores fresh gradients instead of adding them into
    /// zeroed buffers (one memset and one addition per parameter saved).
    pub fn zero_grad(&mut self) -> Result<()> {
        for p in &mut self.params.0 {
            facerec_ops::grad::clear_grad(&mut p.tensor)?;
        }
        Ok(())
    }

    /// The parameters in update order.
    pub fn params(&self) -> impl Iterator<Item = (&str, &Tensor)> {
        self.params.0.iter().map(|p| (p.name.as_str(), &p.tensor))
    }

    /// One update at learning rate `lr`.
    pub fn step(&mut self, lr: f64) -> Result<()> {
        let _guard = tch::no_grad_guard();
        let Some(first) = self.params.0.first() else {
            return Ok(());
        };
        // 0-dim factors of the parameters' kind and device, made once per step.
        let opts = (first.tensor.kind(), first.tensor.device());
        match &mut self.rule {
            Rule::Sgd { momentum, state } => sgd_step(&mut self.params, state, *momentum, self.weight_decay, lr, opts),
            Rule::AdamW { betas, eps, state } => adamw_step(&mut self.params, state, *betas, *eps, self.weight_decay, lr),
        }
    }

    /// The global L2 norm of the gradients of the parameters `within` names (all of them
    /// together, before weight decay), and when it exceeds `max`, each of those gradients
    /// scaled by `max / (norm + 1e-6)`: PyTorch's `torch.nn.utils.clip_grad_norm_` over those
    /// parameters. Call it between the backward pass and [`Optimizer::step`].
    pub fn clip_grad_norm(&mut self, max: Option<f64>, within: impl Fn(&str) -> bool) -> Result<f64> {
        let _guard = tch::no_grad_guard();
        let grads: Vec<Tensor> = self.params.0.iter().filter(|p| within(&p.name)).map(|p| p.tensor.grad()).filter(Tensor::defined).collect();
        if grads.is_empty() {
            return Ok(0.0);
        }
        let norms = grads.iter().map(|g| g.f_norm()).collect::<std::result::Result<Vec<_>, _>>()?;
        let norm = f64::try_from(Tensor::f_stack(&norms, 0)?.f_norm()?)?;
        if let Some(max) = max.filter(|&m| norm > m) {
            self.scale_grads(max / (norm + 1e-6), within)?;
        }
        Ok(norm)
    }

    /// The sums of the squared gradients of the parameters `within` names that `apart` does
    /// not and does name (for a norm whose second part is summed over ranks).
    pub fn grad_square_sums(&self, within: impl Fn(&str) -> bool, apart: impl Fn(&str) -> bool) -> Result<(f64, f64)> {
        let _guard = tch::no_grad_guard();
        let mut sums = (0.0, 0.0);
        for p in self.params.0.iter().filter(|p| within(&p.name)) {
            let g = p.tensor.grad();
            if !g.defined() {
                continue;
            }
            // The norm without a gradient-sized temporary (a sharded classifier's is gigabytes).
            let sq = f64::try_from(g.f_norm()?)?.powi(2);
            if apart(&p.name) {
                sums.1 += sq;
            } else {
                sums.0 += sq;
            }
        }
        Ok(sums)
    }

    /// Multiplies the gradient of every parameter `within` names by `scale`.
    pub fn scale_grads(&mut self, scale: f64, within: impl Fn(&str) -> bool) -> Result<()> {
        let _guard = tch::no_grad_guard();
        for p in self.params.0.iter().filter(|p| within(&p.name)) {
            let mut g = p.tensor.grad();
            if g.defined() {
                let _ = g.f_mul_scalar_(scale)?;
            }
        }
        Ok(())
    }

    /// The state as `<slot>.<parameter>` tensors (those that exist yet).
    pub fn state(&self) -> Vec<(String, Tensor)> {
        let named = |slot: &str, tensors: &[Option<Tensor>]| -> Vec<(String, Tensor)> {
            self.params.0.iter().zip(tensors).filter_map(|(p, t)| t.as_ref().map(|t| (format!("{slot}.{}", p.name), t.shallow_clone()))).collect()
        };
        match &self.rule {
            Rule::Sgd { state, .. } => named("momentum", &state.momentum),
            Rule::AdamW { state, .. } => {
                let mut out = named("exp_avg", &state.exp_avg);
                out.extend(named("exp_avg_sq", &state.exp_avg_sq));
                let steps: Vec<Option<Tensor>> =
                    state.steps.iter().map(|&s| (s > 0).then(|| Tensor::from(s as f64).to_kind(Kind::Double))).collect();
                out.extend(named("step", &steps));
                out
            }
        }
    }

    /// Restores state saved by [`Optimizer::state`]; an unknown parameter or slot, or one of
    /// another optimiser, is an error.
    pub fn set_state(&mut self, entries: Vec<(String, Tensor)>) -> std::result::Result<(), String> {
        for (key, t) in entries {
            let (slot, name) = state_parameter(&key).ok_or_else(|| format!("{key}: not optimiser state"))?;
            let i = self.params.index(name).ok_or_else(|| format!("{key}: state of an unknown parameter {name}"))?;
            let p = &self.params.0[i].tensor;
            if slot != "step" && t.size() != p.size() {
                return Err(format!("{key}: shape {:?}, parameter {:?}", t.size(), p.size()));
            }
            let t = t.to_device(p.device());
            match (&mut self.rule, slot) {
                (Rule::Sgd { state, .. }, "momentum") => state.momentum[i] = Some(t.to_kind(p.kind())),
                (Rule::AdamW { state, .. }, "exp_avg") => state.exp_avg[i] = Some(t.to_kind(p.kind())),
                (Rule::AdamW { state, .. }, "exp_avg_sq") => state.exp_avg_sq[i] = Some(t.to_kind(p.kind())),
                (Rule::AdamW { state, .. }, "step") => state.steps[i] = f64::try_from(&t).map_err(|e| format!("{key}: {e}"))? as u64,
                (Rule::Sgd { .. }, _) => return Err(format!("{key}: AdamW's state, but the run now trains with SGD (optim.name)")),
                (Rule::AdamW { .. }, _) => return Err(format!("{key}: SGD's state, but the run now trains with AdamW (optim.name)")),
            }
        }
        Ok(())
    }
}

/// SGD, in place: the decay term is added into the gradient (cleared before the next backward
/// anyway) and the parameter moves by `addcmul_` with a scalar tensor, so no step allocates a
/// parameter-sized temporary (for the paper's Face-ResNet those were three 110 MB allocations
/// per step, each paid again in page faults). The arithmetic is `p -= lr * (m * v + g + wd * p)`
/// term by term.
fn sgd_step(params: &mut Params, state: &mut SgdState, momentum: f64, weight_decay: f64, lr: f64, opts: (Kind, tch::Device)) -> Result<()> {
    let (wd, neg_lr) = (Tensor::f_scalar_tensor(weight_decay, opts)?, Tensor::f_scalar_tensor(-lr, opts)?);
    for (p, buf) in params.0.iter_mut().zip(&mut state.momentum) {
        let mut g = p.tensor.grad();
        if p.frozen || !g.defined() {
            continue;
        }
        if p.decay && weight_decay != 0.0 {
            let _ = g.f_addcmul_(&p.tensor, &wd)?;
        }
        let update = if momentum != 0.0 {
            let next = match buf.take() {
                None => g.f_detach()?.copy(),
                Some(mut v) => {
                    let _ = v.f_mul_scalar_(momentum)?.f_add_(&g)?;
                    v
                }
            };
            buf.insert(next).shallow_clone()
        } else {
            g
        };
        if p.lr_mult == 1.0 {
            let _ = p.tensor.f_addcmul_(&update, &neg_lr)?;
        } else if p.lr_mult != 0.0 {
            let _ = p.tensor.f_addcmul_(&update, &Tensor::f_scalar_tensor(-lr * p.lr_mult, opts)?)?;
        }
    }
    Ok(())
}

/// AdamW as PyTorch's `_single_tensor_adam` with decoupled weight decay computes it.
fn adamw_step(params: &mut Params, state: &mut AdamState, (b1, b2): (f64, f64), eps: f64, weight_decay: f64, lr: f64) -> Result<()> {
    for (i, p) in params.0.iter_mut().enumerate() {
        let g = p.tensor.grad();
        if p.frozen || !g.defined() {
            continue;
        }
        let lr = lr * p.lr_mult;
        state.steps[i] += 1;
        let t = state.steps[i] as f64;
        if p.decay && weight_decay != 0.0 {
            let _ = p.tensor.f_mul_scalar_(1.0 - lr * weight_decay)?;
        }
        let m = state.exp_avg[i].get_or_insert_with(|| g.zeros_like());
        let _ = m.f_lerp_(&g, 1.0 - b1)?;
        // addcmul_(g, g, value = 1 - b2) evaluates (value * g) * g.
        let v = state.exp_avg_sq[i].get_or_insert_with(|| g.zeros_like());
        let _ = v.f_mul_scalar_(b2)?.f_add_(&g.f_mul_scalar(1.0 - b2)?.f_mul(&g)?)?;
        if lr == 0.0 {
            continue; // a frozen parameter: its moments follow the data, it does not move
        }
        let (c1, c2) = (1.0 - b1.powf(t), 1.0 - b2.powf(t));
        let denom = v.f_sqrt()?.f_div_scalar(c2.powf(0.5))?.f_add_scalar_(eps)?;
        // addcdiv_(m, denom, value = -lr / c1) evaluates p + value * (m / denom).
        let _ = p.tensor.f_add_(&m.f_div(&denom)?.f_mul_scalar(-lr / c1)?)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Kind;

    #[test]
    fn clips_the_global_gradient_norm_like_pytorch() {
        // By hand: gradients (3) and (0, 4) have global norm 5; clipping to 1 scales both by
        // 1 / (5 + 1e-6), as torch.nn.utils.clip_grad_norm_(params, 1.0) does.
        let a = Tensor::from_slice(&[1.0f64]).set_requires_grad(true);
        let b = Tensor::from_slice(&[1.0f64, 1.0]).set_requires_grad(true);
        let mut sgd = Optimizer::sgd(vec![("a.weight".into(), a.shallow_clone()), ("b.bias".into(), b.shallow_clone())], 0.0, 0.0, Decay::Weights);
        let loss = || (&a * 3.0).sum(Kind::Double) + (&b * Tensor::from_slice(&[0.0f64, 4.0])).sum(Kind::Double);
        loss().backward();
        assert!((sgd.clip_grad_norm(Some(10.0), |_| true).unwrap() - 5.0).abs() < 1e-12);
        assert!((f64::try_from(a.grad()).unwrap() - 3.0).abs() < 1e-12, "below the limit: untouched");
        assert!((sgd.clip_grad_norm(Some(1.0), |_| true).unwrap() - 5.0).abs() < 1e-12);
        let scale = 1.0 / (5.0 + 1e-6);
        assert!((f64::try_from(a.grad()).unwrap() - 3.0 * scale).abs() < 1e-12);
        assert!((Vec::<f64>::try_from(b.grad()).unwrap()[1] - 4.0 * scale).abs() < 1e-12);
        assert!((sgd.clip_grad_norm(None, |_| true).unwrap() - 5.0 * scale).abs() < 1e-9, "None measures only");
    }

    #[test]
    fn clipping_within_a_scope_measures_and_scales_those_gradients_only() {
        // Gradients 3 (backbone) and 4 (head): the backbone's norm is 3; clipped to 1 it is
        // scaled by 1 / (3 + 1e-6) and the head's stays 4 (arcface_torch clips the backbone's).
        let a = Tensor::from_slice(&[1.0f64]).set_requires_grad(true);
        let b = Tensor::from_slice(&[1.0f64]).set_requires_grad(true);
        let mut sgd = Optimizer::sgd(vec![("backbone.w".into(), a.shallow_clone()), ("head.w".into(), b.shallow_clone())], 0.0, 0.0, Decay::Weights);
        ((&a * 3.0) + (&b * 4.0)).sum(Kind::Double).backward();
        let norm = sgd.clip_grad_norm(Some(1.0), |n| n.starts_with("backbone.")).unwrap();
        assert!((norm - 3.0).abs() < 1e-12);
        assert!((f64::try_from(a.grad()).unwrap() - 3.0 / (3.0 + 1e-6)).abs() < 1e-12);
        assert_eq!(f64::try_from(b.grad()).unwrap(), 4.0);
    }

    #[test]
    fn matches_pytorch_sgd_by_hand() {
        // p0 = 1 (a 1x1 weight, so decayed), loss = 3p -> grad 3. wd 0.1, momentum 0.9, lr 0.5.
        // step 1: g = 3 + 0.1*1 = 3.1, v = 3.1, p = 1 - 1.55 = -0.55
        // step 2: g = 3 + 0.1*(-0.55) = 2.945, v = 0.9*3.1 + 2.945 = 5.735, p = -0.55 - 2.8675 = -3.4175
        let p = Tensor::from_slice(&[1.0f64]).view([1, 1]).set_requires_grad(true);
        let mut sgd = Optimizer::sgd(vec![("w.weight".into(), p.shallow_clone())], 0.9, 0.1, Decay::Weights);
        for expected in [-0.55, -3.4175] {
            sgd.zero_grad().unwrap();
            (&p * 3.0).sum(Kind::Double).backward();
            sgd.step(0.5).unwrap();
            let got = f64::try_from(&p).unwrap();
            assert!((got - expected).abs() < 1e-12, "{got} vs {expected}");
        }
        let bufs = sgd.state();
        assert_eq!(bufs.len(), 1);
        assert_eq!(bufs[0].0, "momentum.w.weight");
        assert!((f64::try_from(&bufs[0].1).unwrap() - 5.735).abs() < 1e-12);
        // A bias (1-D) is not decayed: g = 3, p = 1 - 0.5 * 3 = -0.5.
        let b = Tensor::from_slice(&[1.0f64]).set_requires_grad(true);
        let mut sgd = Optimizer::sgd(vec![("b.bias".into(), b.shallow_clone())], 0.0, 0.1, Decay::Weights);
        (&b * 3.0).sum(Kind::Double).backward();
        sgd.step(0.5).unwrap();
        assert!((f64::try_from(&b).unwrap() + 0.5).abs() < 1e-12);
        // With decay = "all" (PyTorch's), the bias is decayed too: g = 3 + 0.1, p = 1 - 1.55.
        let b = Tensor::from_slice(&[1.0f64]).set_requires_grad(true);
        let mut sgd = Optimizer::sgd(vec![("b.bias".into(), b.shallow_clone())], 0.0, 0.1, Decay::All);
        (&b * 3.0).sum(Kind::Double).backward();
        sgd.step(0.5).unwrap();
        assert!((f64::try_from(&b).unwrap() + 0.55).abs() < 1e-12);
    }

    #[test]
    fn lr_mult_scales_the_step_of_the_named_parameters_only() {
        // Both see grad 3, no decay or momentum, lr 0.5: the head moves 1.5, the backbone
        // (mult 0.1) 0.15; a frozen one (mult 0) not at all, though its momentum still builds.
        let head = Tensor::from_slice(&[1.0f64]).set_requires_grad(true);
        let back = Tensor::from_slice(&[1.0f64]).set_requires_grad(true);
        let frozen = Tensor::from_slice(&[1.0f64]).set_requires_grad(true);
        let named = vec![("head.bias".into(), head.shallow_clone()), ("backbone.bias".into(), back.shallow_clone()), ("backbone2.bias".into(), frozen.shallow_clone())];
        let mut sgd = Optimizer::sgd(named, 0.0, 0.0, Decay::Weights);
        assert_eq!(sgd.set_lr_mult("backbone.", 0.1), 1);
        assert_eq!(sgd.set_lr_mult("backbone2.", 0.0), 1);
        ((&head + &back + &frozen) * 3.0).sum(Kind::Double).backward();
        sgd.step(0.5).unwrap();
        assert!((f64::try_from(&head).unwrap() + 0.5).abs() < 1e-12);
        assert!((f64::try_from(&back).unwrap() - 0.85).abs() < 1e-12);
        assert_eq!(f64::try_from(&frozen).unwrap(), 1.0);
    }

    #[test]
    fn a_frozen_parameter_keeps_its_weight_and_builds_no_state_then_thaws_as_new() {
        // grad 2, momentum 0.9, decay 0.1, lr 0.5, for SGD and AdamW alike: while frozen, the
        // backbone bias neither moves nor gets a momentum buffer (a zero lr_mult would build
        // one); thawed, its first step is a first step.
        for adam in [false, true] {
            let head = Tensor::from_slice(&[1.0f64]).set_requires_grad(true);
            let back = Tensor::from_slice(&[1.0f64]).set_requires_grad(true);
            let named = vec![("head.w".into(), head.shallow_clone()), ("backbone.w".into(), back.shallow_clone())];
            let mut opt = match adam {
                false => Optimizer::sgd(named, 0.9, 0.1, Decay::All),
                true => Optimizer::adamw(named, (0.9, 0.999), 1e-8, 0.1, Decay::All),
            };
            assert_eq!(opt.freeze("backbone.", true), 1);
            for _ in 0..3 {
                opt.zero_grad().unwrap();
                ((&head + &back) * 2.0).sum(Kind::Double).backward();
                opt.step(0.5).unwrap();
            }
            assert_eq!(f64::try_from(&back).unwrap(), 1.0, "adam {adam}: a frozen weight moved");
            assert_ne!(f64::try_from(&head).unwrap(), 1.0, "adam {adam}: the head did not move");
            assert!(opt.state().iter().all(|(k, _)| !k.contains("backbone")), "adam {adam}: state for a frozen parameter");
            opt.freeze("backbone.", false);
            opt.zero_grad().unwrap();
            ((&head + &back) * 2.0).sum(Kind::Double).backward();
            opt.step(0.5).unwrap();
            // A first step: SGD p - lr * (g + wd p) = 1 - 0.5 * 2.1; AdamW (1 - lr wd) p - lr * sign(g).
            let want = if adam { 1.0 - 0.05 - 0.5 } else { 1.0 - 0.5 * 2.1 };
            assert!((f64::try_from(&back).unwrap() - want).abs() < 1e-6, "adam {adam}: {}", f64::try_from(&back).unwrap());
        }
    }
}
