//! IResNet, the "improved" ResNet of insightface (Deng et al., ArcFace, CVPR 2019; Duta et al.
//! 2020), as in `recognition/arcface_torch/backbones/iresnet.py`: 112x112 input, a 3x3 stem,
//! four stages of pre-activation basic blocks (BN, conv, BN, PReLU, strided conv, BN) with
//! 64/128/256/512 channels, then BN, flatten, fc to the feature and a BatchNorm1d whose scale
//! is fixed at one. Parameter names follow that file (`layer1.0.bn1.weight`, ...), so its
//! state dicts load by name.

use serde::{Deserialize, Serialize};
use tch::{nn, Tensor};

use crate::plugin::Plug;
use crate::backbone::{check_input, conv_flops, Backbone, BackboneSpec};
use crate::error::{ModelError, Result};
use crate::graph::{GraphBuilder, Value};
use crate::layers::{BatchNorm, Conv2d, Linear, PRelu};

const BN_EPS: f64 = 1e-5;

/// Settings of [`Iresnet`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IresnetConfig {
    /// 18, 34, 50, 100 or 200 (insightface's depths); ignored when `layers` is given.
    pub depth: u32,
    /// Blocks per stage, overriding `depth`.
    pub layers: Option<[usize; 4]>,
    /// Channels of the first stage (insightface: 64); later stages double it.
    pub base_width: i64,
    pub feature_dim: i64,
    /// Input side (square): 112.
    pub input_size: i64,
}

impl Default for IresnetConfig {
    fn default() -> Self {
        IresnetConfig { depth: 50, layers: None, base_width: 64, feature_dim: 512, input_size: 112 }
    }
}

impl IresnetConfig {
    pub fn layers(&self) -> Result<[usize; 4]> {
        if let Some(layers) = self.layers {
            return Ok(layers);
        }
        Ok(match self.depth {
            18 => [2, 2, 2, 2],
            34 => [3, 4, 6, 3],
            50 => [3, 4, 14, 3],
            100 => [3, 13, 30, 3],
            200 => [6, 26, 60, 6],
            d => {
                return Err(ModelError::Config(format!(
                    "iresnet depth {d} is not one of 18, 34, 50, 100, 200 (or give `layers`)"
                )))
            }
        })
    }
}

impl Plug for IresnetConfig {
    const NAME: &'static str = "iresnet";
}

impl BackboneSpec for IresnetConfig {
    fn build(&self, p: &nn::Path) -> Result<Box<dyn Backbone>> {
        Ok(Box::new(Iresnet::new(p, self)?))
    }

    fn input_shape(&self) -> [i64; 3] {
        [3, self.input_size, self.input_size]
    }

    fn feature_dim(&self) -> i64 {
        self.feature_dim
    }

    /// insightface's: arcface_torch's `dataset.py` and its model zoo scale to [-1, 1].
    fn pixel_norm(&self) -> facerec_core::PixelNorm {
        facerec_core::PixelNorm::INSIGHTFACE
    }

    fn forward_flops(&self) -> Option<f64> {
        let layers = self.layers().ok()?;
        let b = self.base_width;
        let mut side = self.input_size;
        let mut total = conv_flops(3, b, 3, side, side);
        let mut cin = b;
        for (i, &n) in layers.iter().enumerate() {
            let ch = b << i;
            for j in 0..n {
                let inp = if j == 0 { cin } else { ch };
                let out = if j == 0 { side / 2 } else { side };
                total += conv_flops(inp, ch, 3, side, side) + conv_flops(ch, ch, 3, out, out);
                if j == 0 {
                    total += conv_flops(inp, ch, 1, out, out); // downsample
                }
                side = out;
            }
            cin = ch;
        }
        Some(total + 2.0 * (cin * side * side * self.feature_dim) as f64)
    }
}

#[derive(Debug)]
struct Block {
    bn1: BatchNorm,
    conv1: Conv2d,
    bn2: BatchNorm,
    prelu: PRelu,
    conv2: Conv2d,
    bn3: BatchNorm,
    downsample: Option<(Conv2d, BatchNorm)>,
}

impl Block {
    fn new(p: nn::Path, cin: i64, c: i64, stride: i64) -> Self {
        let downsample = (stride != 1 || cin != c).then(|| {
            let d = &p / "downsample";
            (Conv2d::new(&d / 0, cin, c, 1, stride, 0, false), BatchNorm::new(&d / 1, c, BN_EPS, true))
        });
        Block {
            bn1: BatchNorm::new(&p / "bn1", cin, BN_EPS, true),
            conv1: Conv2d::new(&p / "conv1", cin, c, 3, 1, 1, false),
            bn2: BatchNorm::new(&p / "bn2", c, BN_EPS, true),
            prelu: PRelu::new(&p / "prelu", c),
            conv2: Conv2d::new(&p / "conv2", c, c, 3, stride, 1, false),
            bn3: BatchNorm::new(&p / "bn3", c, BN_EPS, true),
            downsample,
        }
    }

    fn forward(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let y = self.bn1.forward(x, train)?;
        let y = self.conv1.forward(&y)?;
        let y = self.prelu.forward(&self.bn2.forward(&y, train)?)?;
        let y = self.bn3.forward(&self.conv2.forward(&y)?, train)?;
        let identity = match &self.downsample {
            Some((conv, bn)) => bn.forward(&conv.forward(x)?, train)?,
            None => x.shallow_clone(),
        };
        Ok(y.f_add(&identity)?)
    }

    fn describe(&self, g: &mut GraphBuilder, x: Value) -> Result<Value> {
        let y = g.batch_norm(&self.bn1, x)?;
        let y = g.conv(&self.conv1, y)?;
        let y = g.batch_norm(&self.bn2, y)?;
        let y = g.prelu(&self.prelu, y)?;
        let y = g.conv(&self.conv2, y)?;
        let y = g.batch_norm(&self.bn3, y)?;
        let identity = match &self.downsample {
            Some((conv, bn)) => {
                let d = g.conv(conv, x)?;
                g.batch_norm(bn, d)?
            }
            None => x,
        };
        g.add(y, identity)
    }
}

/// The IResNet backbone: `[batch, 3, 112, 112]` to `[batch, 512]`.
#[derive(Debug)]
pub struct Iresnet {
    conv1: Conv2d,
    bn1: BatchNorm,
    prelu: PRelu,
    layers: Vec<Vec<Block>>,
    bn2: BatchNorm,
    fc: Linear,
    features: BatchNorm,
    config: IresnetConfig,
}

impl Iresnet {
    pub fn new(p: &nn::Path, config: &IresnetConfig) -> Result<Self> {
        let depths = config.layers()?;
        if config.base_width < 1 || config.feature_dim < 1 || config.input_size < 16 {
            return Err(ModelError::Config(
                "iresnet needs base_width >= 1, feature_dim >= 1, input_size >= 16".into(),
            ));
        }
        let w = config.base_width;
        let mut cin = w;
        let mut layers = Vec::new();
        for (i, &n) in depths.iter().enumerate() {
            let c = w << i;
            let lp = p / format!("layer{}", i + 1);
            let blocks = (0..n)
                .map(|j| Block::new(&lp / j, if j == 0 { cin } else { c }, c, if j == 0 { 2 } else { 1 }))
                .collect();
            layers.push(blocks);
            cin = c;
        }
        let side = config.input_size / 16;
        Ok(Iresnet {
            conv1: Conv2d::new(p / "conv1", 3, w, 3, 1, 1, false),
            bn1: BatchNorm::new(p / "bn1", w, BN_EPS, true),
            prelu: PRelu::new(p / "prelu", w),
            layers,
            bn2: BatchNorm::new(p / "bn2", cin, BN_EPS, true),
            fc: Linear::new(p / "fc", cin * side * side, config.feature_dim, true),
            features: BatchNorm::new(p / "features", config.feature_dim, BN_EPS, false),
            config: config.clone(),
        })
    }
}

impl Backbone for Iresnet {
    fn forward_t(&self, images: &Tensor, train: bool) -> Result<Tensor> {
        check_input("iresnet", self.input_shape(), images)?;
        let x = self.conv1.forward(images)?; //                  [batch, 64, 112, 112]
        let mut x = self.prelu.forward(&self.bn1.forward(&x, train)?)?;
        for layer in &self.layers {
            for block in layer {
                x = block.forward(&x, train)?; //                 .. [batch, 512, 7, 7]
            }
        }
        let x = self.bn2.forward(&x, train)?.f_flatten(1, -1)?; // [batch, 25088]
        let x = self.fc.forward(&x)?; //                          [batch, 512]
        self.features.forward(&x, train)
    }

    fn describe(&self, g: &mut GraphBuilder, images: Value) -> Result<Value> {
        let x = g.conv(&self.conv1, images)?;
        let x = g.batch_norm(&self.bn1, x)?;
        let mut x = g.prelu(&self.prelu, x)?;
        for layer in &self.layers {
            for block in layer {
                x = block.describe(g, x)?;
            }
        }
        let x = g.batch_norm(&self.bn2, x)?;
        let x = g.flatten(x)?;
        let x = g.linear(&self.fc, x)?;
        g.batch_norm(&self.features, x)
    }

    fn feature_dim(&self) -> i64 {
        self.config.feature_dim
    }

    fn input_shape(&self) -> [i64; 3] {
        [3, self.config.input_size, self.config.input_size]
    }

    fn name(&self) -> &'static str {
        "iresnet"
    }
}
