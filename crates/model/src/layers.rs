//! The few layers the backbones are made of, with PyTorch's parameter names (`weight`, `bias`,
//! `running_mean`, `running_var`) so that a state dict maps one to one. Forward passes use tch's
//! fallible `f_*` functions: a bad input is an error, never a panic.

use tch::{nn, Tensor};

use crate::error::Result;

/// caffe's `xavier` filler (the one caffe-face's prototxts use, except for Face-ResNet's
/// residual-unit convolutions, which start from a gaussian of std 0.01 there): uniform in
/// `[-sqrt(3 / fan_in), sqrt(3 / fan_in)]`. Not Glorot's `fan_in + fan_out` variant.
pub fn caffe_xavier(fan_in: i64) -> nn::Init {
    let bound = (3.0 / fan_in as f64).sqrt();
    nn::Init::Uniform { lo: -bound, up: bound }
}

/// 2-D convolution: square kernels through [`Conv2d::new`], any kernel shape and channel
/// groups (depthwise convolutions) through [`Conv2d::grouped`].
#[derive(Debug)]
pub struct Conv2d {
    pub weight: Tensor,
    pub bias: Option<Tensor>,
    pub(crate) stride: i64,
    pub(crate) padding: i64,
    pub(crate) groups: i64,
}

impl Conv2d {
    /// `cin -> cout`, `k x k` kernel, caffe-xavier weights, zero bias (when `bias`).
    pub fn new(p: nn::Path, cin: i64, cout: i64, k: i64, stride: i64, padding: i64, bias: bool) -> Self {
        let weight = p.var("weight", &[cout, cin, k, k], caffe_xavier(cin * k * k));
        let bias = bias.then(|| p.var("bias", &[cout], nn::Init::Const(0.0)));
        Conv2d { weight, bias, stride, padding, groups: 1 }
    }

    /// `cin -> cout` in `groups` groups (`groups = cin = cout`: depthwise), a `[kh, kw]`
    /// kernel, no bias, weights from `init`. The weight is `[cout, cin / groups, kh, kw]`, as
    /// in PyTorch.
    pub fn grouped(p: nn::Path, [cin, cout]: [i64; 2], kernel: [i64; 2], stride: i64, padding: i64, groups: i64, init: nn::Init) -> Self {
        let weight = p.var("weight", &[cout, cin / groups, kernel[0], kernel[1]], init);
        Conv2d { weight, bias: None, stride, padding, groups }
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(x.f_conv2d(&self.weight, self.bias.as_ref(), [self.stride], [self.padding], [1], self.groups)?)
    }
}

/// Fully connected layer, `weight: [out, in]` as in PyTorch.
#[derive(Debug)]
pub struct Linear {
    pub weight: Tensor,
    pub bias: Option<Tensor>,
}

impl Linear {
    pub fn new(p: nn::Path, cin: i64, cout: i64, bias: bool) -> Self {
        let weight = p.var("weight", &[cout, cin], caffe_xavier(cin));
        let bias = bias.then(|| p.var("bias", &[cout], nn::Init::Const(0.0)));
        Linear { weight, bias }
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(x.f_linear(&self.weight, self.bias.as_ref())?)
    }
}

/// Parametric ReLU (He et al. 2015) with one slope per channel, initialised to 0.25 as in
/// caffe and PyTorch.
#[derive(Debug)]
pub struct PRelu {
    pub weight: Tensor,
}

impl PRelu {
    pub fn new(p: nn::Path, channels: i64) -> Self {
        PRelu { weight: p.var("weight", &[channels], nn::Init::Const(0.25)) }
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(facerec_ops::prelu(x, &self.weight)?)
    }
}

/// Batch normalisation over dimension 1 (works for `[N, C]` and `[N, C, H, W]`), PyTorch's
/// defaults: momentum 0.1, eps 1e-5. `affine = false` keeps `weight` fixed at one (the
/// insightface `features` layer).
#[derive(Debug)]
pub struct BatchNorm {
    pub weight: Tensor,
    pub bias: Tensor,
    pub running_mean: Tensor,
    pub running_var: Tensor,
    pub(crate) eps: f64,
}

impl BatchNorm {
    pub fn new(p: nn::Path, channels: i64, eps: f64, train_weight: bool) -> Self {
        let weight = if train_weight {
            p.var("weight", &[channels], nn::Init::Const(1.0))
        } else {
            p.ones_no_train("weight", &[channels])
        };
        BatchNorm {
            weight,
            bias: p.var("bias", &[channels], nn::Init::Const(0.0)),
            running_mean: p.zeros_no_train("running_mean", &[channels]),
            running_var: p.ones_no_train("running_var", &[channels]),
            eps,
        }
    }

    pub fn forward(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        Ok(x.f_batch_norm(
            Some(&self.weight),
            Some(&self.bias),
            Some(&self.running_mean),
            Some(&self.running_var),
            train,
            0.1,
            self.eps,
            true,
        )?)
    }
}

/// 2x2 max pooling with stride 2; `ceil_mode` as caffe rounds (7 -> 4).
pub fn max_pool2(x: &Tensor) -> Result<Tensor> {
    Ok(x.f_max_pool2d([2, 2], [2, 2], [0, 0], [1, 1], true)?)
}
