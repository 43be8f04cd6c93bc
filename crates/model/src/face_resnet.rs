//! Face-ResNet, the face network of Wen et al., ECCV 2016 (Fig. 4 / Sec. 4.1), as released in
//! caffe-face `face_example/face_train_test.prototxt`: input 112x96 RGB;
//! conv1a (32) and conv1b (64), 3x3 without padding, then a 2x2 max pool; then three more
//! stages each of a 3x3 convolution (128, 256, 512, no padding), a max pool and residual blocks;
//! residual units: 1, 2, 5, 3 blocks of two padded 3x3 convolutions with an identity shortcut;
//! fc5 gives the 512-d feature. PReLU after every convolution. `widths` and `blocks` scale the
//! network down for small machines.
//!
//! Initialisation is caffe's `xavier` for every layer (see [`crate::layers::caffe_xavier`]).
//! caffe-face's prototxt uses it for conv1a..conv4 and fc5 only: it starts the residual units'
//! convolutions from a gaussian of std 0.01 (smaller than xavier's `sqrt(1 / fan_in)`: 0.042 at
//! 64 channels, 0.015 at 512), and gives them a bias with `lr_mult: 0`, which stays zero; here
//! they have no bias.

use serde::{Deserialize, Serialize};
use tch::{nn, Tensor};

use crate::plugin::Plug;
use crate::backbone::{check_input, conv_flops, Backbone, BackboneSpec};
use crate::error::{ModelError, Result};
use crate::graph::{GraphBuilder, Value};
use crate::layers::{max_pool2, Conv2d, Linear, PRelu};

/// Settings of [`FaceResnet`]; the defaults are the paper's network.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FaceResnetConfig {
    /// Channels of conv1a, conv1b, conv2, conv3, conv4.
    pub widths: [i64; 5],
    /// Residual blocks after conv1b, conv2, conv3, conv4.
    pub blocks: [usize; 4],
    /// Size of the fc5 feature.
    pub feature_dim: i64,
    /// Input `[channels, height, width]`.
    pub input_shape: [i64; 3],
}

impl Default for FaceResnetConfig {
    fn default() -> Self {
        FaceResnetConfig {
            widths: [32, 64, 128, 256, 512],
            blocks: [1, 2, 5, 3],
            feature_dim: 512,
            input_shape: [3, 112, 96],
        }
    }
}

impl FaceResnetConfig {
    pub(crate) fn validate(&self) -> Result<()> {
        if self.widths.iter().any(|&w| w < 1) || self.feature_dim < 1 {
            return Err(ModelError::Config("face_resnet widths and feature_dim must be >= 1".into()));
        }
        let [_, h, w] = self.input_shape;
        let (fh, fw) = (Self::final_side(h), Self::final_side(w));
        if fh < 1 || fw < 1 {
            return Err(ModelError::Config(format!(
                "face_resnet input {h}x{w} is too small: four unpadded 3x3 stages leave {fh}x{fw}"
            )));
        }
        Ok(())
    }

    /// Spatial side after conv1a, conv1b (-2 each), and per stage a 2x2 ceil pool followed
    /// (for the next three stages) by an unpadded 3x3 conv: 112 -> 5, 96 -> 4.
    fn final_side(side: i64) -> i64 {
        let mut s = side - 4;
        for stage in 0..4 {
            if stage > 0 {
                s -= 2;
            }
            s = (s + 1) / 2;
        }
        s
    }
}

impl Plug for FaceResnetConfig {
    const NAME: &'static str = "face_resnet";
}

impl BackboneSpec for FaceResnetConfig {
    fn build(&self, p: &nn::Path) -> Result<Box<dyn Backbone>> {
        Ok(Box::new(FaceResnet::new(p, self)?))
    }

    fn input_shape(&self) -> [i64; 3] {
        self.input_shape
    }

    fn feature_dim(&self) -> i64 {
        self.feature_dim
    }

    fn forward_flops(&self) -> Option<f64> {
        let [cin, h, w] = self.input_shape;
        let wd = self.widths;
        // conv1a and conv1b are unpadded 3x3 (-2 each), then a 2x2 pool.
        let mut total = conv_flops(cin, wd[0], 3, h - 2, w - 2) + conv_flops(wd[0], wd[1], 3, h - 4, w - 4);
        let (mut h, mut w) = ((h - 4 + 1) / 2, (w - 4 + 1) / 2);
        total += self.blocks[0] as f64 * 2.0 * conv_flops(wd[1], wd[1], 3, h, w);
        for stage in 1..4 {
            total += conv_flops(wd[stage], wd[stage + 1], 3, h - 2, w - 2);
            h = (h - 2 + 1) / 2;
            w = (w - 2 + 1) / 2;
            total += self.blocks[stage] as f64 * 2.0 * conv_flops(wd[stage + 1], wd[stage + 1], 3, h, w);
        }
        Some(total + 2.0 * (wd[4] * h * w * self.feature_dim) as f64)
    }
}

/// Two padded 3x3 convolutions, each followed by PReLU, plus the identity.
#[derive(Debug)]
struct ResBlock {
    conv1: Conv2d,
    prelu1: PRelu,
    conv2: Conv2d,
    prelu2: PRelu,
}

impl ResBlock {
    fn new(p: nn::Path, c: i64) -> Self {
        ResBlock {
            conv1: Conv2d::new(&p / "conv1", c, c, 3, 1, 1, false),
            prelu1: PRelu::new(&p / "prelu1", c),
            conv2: Conv2d::new(&p / "conv2", c, c, 3, 1, 1, false),
            prelu2: PRelu::new(&p / "prelu2", c),
        }
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let y = self.prelu1.forward(&self.conv1.forward(x)?)?;
        let y = self.prelu2.forward(&self.conv2.forward(&y)?)?;
        Ok(x.f_add(&y)?)
    }

    fn describe(&self, g: &mut GraphBuilder, x: Value) -> Result<Value> {
        let y = g.conv(&self.conv1, x)?;
        let y = g.prelu(&self.prelu1, y)?;
        let y = g.conv(&self.conv2, y)?;
        let y = g.prelu(&self.prelu2, y)?;
        g.add(x, y)
    }
}

/// A stage: conv (+ PReLU), 2x2 max pool, residual blocks.
#[derive(Debug)]
struct Stage {
    convs: Vec<(Conv2d, PRelu)>,
    blocks: Vec<ResBlock>,
}

impl Stage {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mut x = x.shallow_clone();
        for (conv, prelu) in &self.convs {
            x = prelu.forward(&conv.forward(&x)?)?;
        }
        let mut x = max_pool2(&x)?;
        for block in &self.blocks {
            x = block.forward(&x)?;
        }
        Ok(x)
    }

    fn describe(&self, g: &mut GraphBuilder, x: Value) -> Result<Value> {
        let mut x = x;
        for (conv, prelu) in &self.convs {
            x = g.conv(conv, x)?;
            x = g.prelu(prelu, x)?;
        }
        let mut x = g.max_pool2(x)?;
        for block in &self.blocks {
            x = block.describe(g, x)?;
        }
        Ok(x)
    }
}

/// The Face-ResNet backbone: `[batch, 3, 112, 96]` to `[batch, 512]`.
#[derive(Debug)]
pub struct FaceResnet {
    stages: Vec<Stage>,
    fc5: Linear,
    config: FaceResnetConfig,
}

impl FaceResnet {
    pub fn new(p: &nn::Path, config: &FaceResnetConfig) -> Result<Self> {
        config.validate()?;
        let [cin, h, w] = config.input_shape;
        let wd = config.widths;
        let conv = |name: &str, prelu: &str, cin: i64, cout: i64| {
            (Conv2d::new(p / name, cin, cout, 3, 1, 0, true), PRelu::new(p / prelu, cout))
        };
        let blocks = |layer: usize, c: i64| -> Vec<ResBlock> {
            (0..config.blocks[layer - 1])
                .map(|i| ResBlock::new(p / format!("layer{layer}") / i, c))
                .collect()
        };
        let stages = vec![
            Stage {
                convs: vec![conv("conv1a", "prelu1a", cin, wd[0]), conv("conv1b", "prelu1b", wd[0], wd[1])],
                blocks: blocks(1, wd[1]),
            },
            Stage { convs: vec![conv("conv2", "prelu2", wd[1], wd[2])], blocks: blocks(2, wd[2]) },
            Stage { convs: vec![conv("conv3", "prelu3", wd[2], wd[3])], blocks: blocks(3, wd[3]) },
            Stage { convs: vec![conv("conv4", "prelu4", wd[3], wd[4])], blocks: blocks(4, wd[4]) },
        ];
        let flat = wd[4] * FaceResnetConfig::final_side(h) * FaceResnetConfig::final_side(w);
        Ok(FaceResnet {
            stages,
            fc5: Linear::new(p / "fc5", flat, config.feature_dim, true),
            config: config.clone(),
        })
    }
}

impl Backbone for FaceResnet {
    fn forward_t(&self, images: &Tensor, _train: bool) -> Result<Tensor> {
        check_input("face_resnet", self.config.input_shape, images)?;
        let mut x = images.shallow_clone(); // [batch, 3, 112, 96]
        for stage in &self.stages {
            x = stage.forward(&x)?; //         [batch, 64, 54, 46] [128, 26, 22] [256, 12, 10] [512, 5, 4]
        }
        self.fc5.forward(&x.f_flatten(1, -1)?) // [batch, 512]
    }

    fn describe(&self, g: &mut GraphBuilder, images: Value) -> Result<Value> {
        let mut x = images;
        for stage in &self.stages {
            x = stage.describe(g, x)?;
        }
        let x = g.flatten(x)?;
        g.linear(&self.fc5, x)
    }

    fn feature_dim(&self) -> i64 {
        self.config.feature_dim
    }

    fn input_shape(&self) -> [i64; 3] {
        self.config.input_shape
    }

    fn name(&self) -> &'static str {
        "face_resnet"
    }
}
