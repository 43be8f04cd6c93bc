//! SGD with momentum and weight decay, PyTorch's formulation:
//! `g = grad + wd * p`, `v = momentum * v + g` (`v = g` on the first step), `p -= lr * v`.
//!
//! Written here rather than taken from `tch::nn::Sgd` because a checkpoint must hold the
//! momentum buffers for an exact resume, and tch's optimiser does not expose them. Parameters
//! are kept sorted by name so that the update order, and the checkpoint, are deterministic.
//! Weight decay applies to conv and fully connected weights only, the tensors of two or more
//! dimensions: biases (`decay_mult: 0` in caffe-face too), PReLU slopes (decaying a slope pulls
//! it towards a plain ReLU, which is why PReLU's authors do not; caffe-face does, by leaving
//! its PReLU layers at caffe's default `decay_mult: 1`) and batch-norm scales and shifts are
//! not decayed. Every parameter moves at the base rate (caffe-face gives biases `lr_mult: 2`)
//! unless [`Sgd::set_lr_mult`] scales the rate of some (a pretrained backbone under a new head).

use tch::Tensor;

use crate::error::Result;

/// One parameter and its momentum buffer.
#[derive(Debug)]
struct Param {
    name: String,
    tensor: Tensor,
    decay: bool,
    /// The learning rate of this parameter over the base rate.
    lr_mult: f64,
    momentum: Option<Tensor>,
}

/// The optimiser.
#[derive(Debug)]
pub struct Sgd {
    params: Vec<Param>,
    pub momentum: f64,
    pub weight_decay: f64,
}

impl Sgd {
    /// Optimises the given named, trainable tensors.
    pub fn new(mut named: Vec<(String, Tensor)>, momentum: f64, weight_decay: f64) -> Self {
        named.sort_by(|a, b| a.0.cmp(&b.0));
        let params = named
            .into_iter()
            .map(|(name, tensor)| Param { decay: tensor.dim() >= 2, lr_mult: 1.0, name, tensor, momentum: None })
            .collect();
        Sgd { params, momentum, weight_decay }
    }

    /// Moves the parameters whose name starts with `prefix` at `mult` times the base rate;
    /// returns how many there are.
    pub fn set_lr_mult(&mut self, prefix: &str, mult: f64) -> usize {
        let mut n = 0;
        for p in self.params.iter_mut().filter(|p| p.name.starts_with(prefix)) {
            p.lr_mult = mult;
            n += 1;
        }
        n
    }

    /// Clears the gradients of all parameters: drops them, as PyTorch's `zero_grad()` does by
    /// default, so that the next backward stores fresh gradients instead of adding them into
    /// zeroed buffers (one memset and one addition per parameter saved).
    pub fn zero_grad(&mut self) -> Result<()> {
        for p in &mut self.params {
            facerec_ops::grad::clear_grad(&mut p.tensor)?;
        }
        Ok(())
    }

    /// The parameters in update order.
    pub fn params(&self) -> impl Iterator<Item = (&str, &Tensor)> {
        self.params.iter().map(|p| (p.name.as_str(), &p.tensor))
    }

    /// One update at learning rate `lr`.
    ///
    /// Works in place: the decay term is added into the gradient (cleared before the next
    /// backward anyway) and the parameter moves by `addcmul_` with a scalar tensor, so no step
    /// allocates a parameter-sized temporary (for the paper's Face-ResNet those were three
    /// 110 MB allocations per step, each paid again in page faults). The arithmetic is the same
    /// as `p -= lr * (m * v + g + wd * p)` term by term, so results do not change.
    pub fn step(&mut self, lr: f64) -> Result<()> {
        let _guard = tch::no_grad_guard();
        let Some(first) = self.params.first() else {
            return Ok(());
        };
        // 0-dim factors of the parameters' kind and device, made once per step.
        let opts = (first.tensor.kind(), first.tensor.device());
        let (wd, neg_lr) = (Tensor::f_scalar_tensor(self.weight_decay, opts)?, Tensor::f_scalar_tensor(-lr, opts)?);
        for p in &mut self.params {
            let mut g = p.tensor.grad();
            if !g.defined() {
                continue;
            }
            if p.decay && self.weight_decay != 0.0 {
                let _ = g.f_addcmul_(&p.tensor, &wd)?;
            }
            let update = if self.momentum != 0.0 {
                let buf = match p.momentum.take() {
                    None => g.f_detach()?.copy(),
                    Some(mut buf) => {
                        let _ = buf.f_mul_scalar_(self.momentum)?.f_add_(&g)?;
                        buf
                    }
                };
                p.momentum.insert(buf).shallow_clone()
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

    /// Momentum buffers by parameter name (those that exist yet).
    /// The global L2 norm of the gradients (all parameters together, before weight decay), and
    /// when it exceeds `max`, every gradient scaled by `max / (norm + 1e-6)`: PyTorch's
    /// `torch.nn.utils.clip_grad_norm_`. Call it between the backward pass and [`Sgd::step`].
    pub fn clip_grad_norm(&mut self, max: Option<f64>) -> Result<f64> {
        let _guard = tch::no_grad_guard();
        let grads: Vec<Tensor> = self.params.iter().map(|p| p.tensor.grad()).filter(Tensor::defined).collect();
        if grads.is_empty() {
            return Ok(0.0);
        }
        let norms = grads.iter().map(|g| g.f_norm()).collect::<std::result::Result<Vec<_>, _>>()?;
        let norm = f64::try_from(Tensor::f_stack(&norms, 0)?.f_norm()?)?;
        if let Some(max) = max.filter(|&m| norm > m) {
            self.scale_grads(max / (norm + 1e-6))?;
        }
        Ok(norm)
    }

    /// The sums of the squared gradients of the parameters `apart` does not and does name
    /// (for a norm whose second part is summed over ranks).
    pub fn grad_square_sums(&self, apart: impl Fn(&str) -> bool) -> Result<(f64, f64)> {
        let _guard = tch::no_grad_guard();
        let mut sums = (0.0, 0.0);
        for p in self.params.iter() {
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

    /// Multiplies every gradient by `scale`.
    pub fn scale_grads(&mut self, scale: f64) -> Result<()> {
        let _guard = tch::no_grad_guard();
        for p in &self.params {
            let mut g = p.tensor.grad();
            if g.defined() {
                let _ = g.f_mul_scalar_(scale)?;
            }
        }
        Ok(())
    }

    pub fn momentum_buffers(&self) -> Vec<(String, Tensor)> {
        self.params
            .iter()
            .filter_map(|p| p.momentum.as_ref().map(|m| (p.name.clone(), m.shallow_clone())))
            .collect()
    }

    /// Restores momentum buffers saved by [`Sgd::momentum_buffers`]; unknown names are an error.
    pub fn set_momentum_buffers(&mut self, buffers: Vec<(String, Tensor)>) -> std::result::Result<(), String> {
        for (name, buf) in buffers {
            let p = self
                .params
                .iter_mut()
                .find(|p| p.name == name)
                .ok_or_else(|| format!("momentum buffer for unknown parameter {name}"))?;
            if buf.size() != p.tensor.size() {
                return Err(format!("momentum buffer {name}: shape {:?}, parameter {:?}", buf.size(), p.tensor.size()));
            }
            p.momentum = Some(buf.to_device(p.tensor.device()).to_kind(p.tensor.kind()));
        }
        Ok(())
    }
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
        let mut sgd = Sgd::new(vec![("a.weight".into(), a.shallow_clone()), ("b.bias".into(), b.shallow_clone())], 0.0, 0.0);
        let loss = || (&a * 3.0).sum(Kind::Double) + (&b * Tensor::from_slice(&[0.0f64, 4.0])).sum(Kind::Double);
        loss().backward();
        assert!((sgd.clip_grad_norm(Some(10.0)).unwrap() - 5.0).abs() < 1e-12);
        assert!((f64::try_from(a.grad()).unwrap() - 3.0).abs() < 1e-12, "below the limit: untouched");
        assert!((sgd.clip_grad_norm(Some(1.0)).unwrap() - 5.0).abs() < 1e-12);
        let scale = 1.0 / (5.0 + 1e-6);
        assert!((f64::try_from(a.grad()).unwrap() - 3.0 * scale).abs() < 1e-12);
        assert!((Vec::<f64>::try_from(b.grad()).unwrap()[1] - 4.0 * scale).abs() < 1e-12);
        assert!((sgd.clip_grad_norm(None).unwrap() - 5.0 * scale).abs() < 1e-9, "None measures only");
    }

    #[test]
    fn matches_pytorch_sgd_by_hand() {
        // p0 = 1 (a 1x1 weight, so decayed), loss = 3p -> grad 3. wd 0.1, momentum 0.9, lr 0.5.
        // step 1: g = 3 + 0.1*1 = 3.1, v = 3.1, p = 1 - 1.55 = -0.55
        // step 2: g = 3 + 0.1*(-0.55) = 2.945, v = 0.9*3.1 + 2.945 = 5.735, p = -0.55 - 2.8675 = -3.4175
        let p = Tensor::from_slice(&[1.0f64]).view([1, 1]).set_requires_grad(true);
        let mut sgd = Sgd::new(vec![("w.weight".into(), p.shallow_clone())], 0.9, 0.1);
        for expected in [-0.55, -3.4175] {
            sgd.zero_grad().unwrap();
            (&p * 3.0).sum(Kind::Double).backward();
            sgd.step(0.5).unwrap();
            let got = f64::try_from(&p).unwrap();
            assert!((got - expected).abs() < 1e-12, "{got} vs {expected}");
        }
        let bufs = sgd.momentum_buffers();
        assert_eq!(bufs.len(), 1);
        assert!((f64::try_from(&bufs[0].1).unwrap() - 5.735).abs() < 1e-12);
        // A bias (1-D) is not decayed: g = 3, p = 1 - 0.5 * 3 = -0.5.
        let b = Tensor::from_slice(&[1.0f64]).set_requires_grad(true);
        let mut sgd = Sgd::new(vec![("b.bias".into(), b.shallow_clone())], 0.0, 0.1);
        (&b * 3.0).sum(Kind::Double).backward();
        sgd.step(0.5).unwrap();
        assert!((f64::try_from(&b).unwrap() + 0.5).abs() < 1e-12);
    }

    #[test]
    fn lr_mult_scales_the_step_of_the_named_parameters_only() {
        // Both see grad 3, no decay or momentum, lr 0.5: the head moves 1.5, the backbone
        // (mult 0.1) 0.15; a frozen one (mult 0) not at all, though its momentum still builds.
        let head = Tensor::from_slice(&[1.0f64]).set_requires_grad(true);
        let back = Tensor::from_slice(&[1.0f64]).set_requires_grad(true);
        let frozen = Tensor::from_slice(&[1.0f64]).set_requires_grad(true);
        let named = vec![("head.bias".into(), head.shallow_clone()), ("backbone.bias".into(), back.shallow_clone()), ("backbone2.bias".into(), frozen.shallow_clone())];
        let mut sgd = Sgd::new(named, 0.0, 0.0);
        assert_eq!(sgd.set_lr_mult("backbone.", 0.1), 1);
        assert_eq!(sgd.set_lr_mult("backbone2.", 0.0), 1);
        ((&head + &back + &frozen) * 3.0).sum(Kind::Double).backward();
        sgd.step(0.5).unwrap();
        assert!((f64::try_from(&head).unwrap() + 0.5).abs() < 1e-12);
        assert!((f64::try_from(&back).unwrap() - 0.85).abs() < 1e-12);
        assert_eq!(f64::try_from(&frozen).unwrap(), 1.0);
    }
}
