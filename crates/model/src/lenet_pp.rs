//! LeNets++, the toy network of Wen et al., "A Discriminative Feature Learning Approach for
//! Deep Face Recognition", ECCV 2016, Sec. 3.1 and Fig. 2: three stages of two 5x5 convolutions
//! (32, 64, 128 channels, stride 1, padding 2) each followed by a 2x2 max pooling, then a fully
//! connected layer to a 2-D feature so that features can be plotted. PReLU after every layer.
//! Reference: caffe-face `mnist_example/mnist_train_test.prototxt` (ip1 of 2 outputs + PReLU;
//! the classifier ip2 belongs to the softmax loss in `facerec-losses`).
//!
//! This follows the paper's table where the prototxt departs from it: caffe-face's third
//! pooling is 3x3 with stride 2 (7x7 -> 3x3, so its ip1 sees 1,152 inputs), here it is 2x2 like
//! the others (7x7 -> 4x4 with caffe's rounding up, 2,048 inputs); and caffe-face's ip2 has no
//! bias (`bias_term: false`) while facerec's softmax head has one.

use serde::{Deserialize, Serialize};
use tch::{nn, Tensor};

use crate::plugin::Plug;
use crate::backbone::{check_input, conv_flops, Backbone, BackboneSpec};
use crate::error::Result;
use crate::graph::{GraphBuilder, Value};
use crate::layers::{max_pool2, Conv2d, Linear, PRelu};

/// Settings of [`LenetPp`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LenetPpConfig {
    /// Size of the feature (the paper: 2).
    #[serde(default = "default_feature_dim")]
    pub feature_dim: i64,
    /// Input channels (MNIST: 1).
    #[serde(default = "one")]
    pub in_channels: i64,
    /// Input side in pixels (MNIST: 28).
    #[serde(default = "default_side")]
    pub input_size: i64,
}

fn default_feature_dim() -> i64 {
    2
}
fn one() -> i64 {
    1
}
fn default_side() -> i64 {
    28
}

impl Default for LenetPpConfig {
    fn default() -> Self {
        LenetPpConfig { feature_dim: 2, in_channels: 1, input_size: 28 }
    }
}

impl Plug for LenetPpConfig {
    const NAME: &'static str = "lenet_pp";
}

impl BackboneSpec for LenetPpConfig {
    fn build(&self, p: &nn::Path) -> Result<Box<dyn Backbone>> {
        Ok(Box::new(LenetPp::new(p, self)))
    }

    fn input_shape(&self) -> [i64; 3] {
        [self.in_channels, self.input_size, self.input_size]
    }

    fn feature_dim(&self) -> i64 {
        self.feature_dim
    }

    fn forward_flops(&self) -> Option<f64> {
        let mut side = self.input_size;
        let mut total = 0.0;
        let mut cin = self.in_channels;
        for cout in [32, 64, 128] {
            total += conv_flops(cin, cout, 5, side, side) + conv_flops(cout, cout, 5, side, side);
            cin = cout;
            side = (side + 1) / 2;
        }
        Some(total + 2.0 * (128 * side * side * self.feature_dim) as f64)
    }
}

/// One stage: two 5x5 conv + PReLU, then a 2x2 max pool.
#[derive(Debug)]
struct Stage {
    convs: [(Conv2d, PRelu); 2],
}

impl Stage {
    fn new(p: &nn::Path, index: usize, cin: i64, cout: i64) -> Self {
        let conv = |j: usize, cin: i64| {
            (
                Conv2d::new(p / format!("conv{index}_{j}"), cin, cout, 5, 1, 2, true),
                PRelu::new(p / format!("prelu{index}_{j}"), cout),
            )
        };
        Stage { convs: [conv(1, cin), conv(2, cout)] }
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mut x = x.shallow_clone();
        for (conv, prelu) in &self.convs {
            x = prelu.forward(&conv.forward(&x)?)?;
        }
        max_pool2(&x)
    }

    fn describe(&self, g: &mut GraphBuilder, x: Value) -> Result<Value> {
        let mut x = x;
        for (conv, prelu) in &self.convs {
            x = g.conv(conv, x)?;
            x = g.prelu(prelu, x)?;
        }
        g.max_pool2(x)
    }
}

/// The LeNets++ backbone: images `[batch, 1, 28, 28]` to features `[batch, feature_dim]`.
#[derive(Debug)]
pub struct LenetPp {
    stages: [Stage; 3],
    fc: Linear,
    prelu_fc: PRelu,
    config: LenetPpConfig,
}

impl LenetPp {
    pub fn new(p: &nn::Path, config: &LenetPpConfig) -> Self {
        // Side after three caffe-style (ceil) 2x2 poolings: 28 -> 14 -> 7 -> 4.
        let mut side = config.input_size;
        for _ in 0..3 {
            side = (side + 1) / 2;
        }
        LenetPp {
            stages: [
                Stage::new(p, 1, config.in_channels, 32),
                Stage::new(p, 2, 32, 64),
                Stage::new(p, 3, 64, 128),
            ],
            fc: Linear::new(p / "fc", 128 * side * side, config.feature_dim, true),
            prelu_fc: PRelu::new(p / "prelu_fc", config.feature_dim),
            config: config.clone(),
        }
    }
}

impl Backbone for LenetPp {
    fn forward_t(&self, images: &Tensor, _train: bool) -> Result<Tensor> {
        check_input("lenet_pp", self.input_shape(), images)?;
        let mut x = images.shallow_clone(); //         [batch, 1, 28, 28]
        for stage in &self.stages {
            x = stage.forward(&x)?; //                 [batch, 32, 14, 14] .. [batch, 128, 4, 4]
        }
        let x = x.f_flatten(1, -1)?; //                [batch, 2048]
        self.prelu_fc.forward(&self.fc.forward(&x)?) // [batch, feature_dim]
    }

    fn describe(&self, g: &mut GraphBuilder, images: Value) -> Result<Value> {
        let mut x = images;
        for stage in &self.stages {
            x = stage.describe(g, x)?;
        }
        let x = g.flatten(x)?;
        let x = g.linear(&self.fc, x)?;
        g.prelu(&self.prelu_fc, x)
    }

    fn feature_dim(&self) -> i64 {
        self.config.feature_dim
    }

    fn input_shape(&self) -> [i64; 3] {
        [self.config.in_channels, self.config.input_size, self.config.input_size]
    }

    fn name(&self) -> &'static str {
        "lenet_pp"
    }
}
