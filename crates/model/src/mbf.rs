//! arcface_torch's MobileFaceNet ("mbf" and "mbf_large" in its configs; insightface's
//! `recognition/arcface_torch/backbones/mobilefacenet.py`, adapted there from cavaface): not the
//! paper's network of [`crate::mobilefacenet`] (MobileNetV2 bottlenecks, 128-d, caffe-face's
//! 112x96 crops) but a 112x112, 512-d variant of twice the width whose every block is a
//! `ConvBlock` sequence, so its state dicts use other names. Parameter names follow that file
//! (`layers.0.layers.0.weight`, ..., `conv_sep`, `features`), so arcface_torch's checkpoints load
//! by name (`facerec import`):
//!
//! | prefix      | block (scale 2)                                                        | out      |
//! |-------------|------------------------------------------------------------------------|----------|
//! | `layers.0`  | conv 3x3 / 2 to 128, BN, PReLU                                         | 128 x 56 |
//! | `layers.1`  | conv 3x3 in 64 groups, BN, PReLU (with `blocks[0] > 1`: residual depthwise blocks) | 128 x 56 |
//! | `layers.2`  | depthwise block / 2 (1x1 to 128, depthwise 3x3, 1x1 linear)            | 128 x 28 |
//! | `layers.3`  | `blocks[1]` residual depthwise blocks (expansion 128)                  | 128 x 28 |
//! | `layers.4`  | depthwise block / 2 to 256 (expansion 256)                             | 256 x 14 |
//! | `layers.5`  | `blocks[2]` residual blocks (expansion 256)                            | 256 x 14 |
//! | `layers.6`  | depthwise block / 2 (expansion 512)                                    | 256 x 7  |
//! | `layers.7`  | `blocks[3]` residual blocks (expansion 256)                            | 256 x 7  |
//! | `conv_sep`  | conv 1x1 to 512, BN, PReLU                                             | 512 x 7  |
//! | `features`  | GDC: depthwise 7x7 + BN, flatten, linear to 512 (no bias), BatchNorm1d  | 512      |
//!
//! A `ConvBlock` is `layers.0/1/2` = conv (no bias), BatchNorm2d (eps 1e-5), PReLU; a
//! `LinearBlock` the same without PReLU; a depthwise block is `layers.0` (1x1 ConvBlock to the
//! expansion), `layers.1` (k x k ConvBlock in as many groups), `layers.2` (1x1 LinearBlock out),
//! plus its input in a residual stage. Widths are `64 x scale` and `128 x scale`; the expansions
//! are fixed (64, 128, 256, 512) whatever the scale, as in that file. Weights start as there:
//! convolutions and the linear layer He-normal over fan-out, BatchNorm scale 1 and shift 0,
//! PReLU slopes 0.25. Input normalised as insightface's, `(p - 127.5) / 127.5`.

use serde::{Deserialize, Serialize};
use tch::{nn, Tensor};

use crate::backbone::{check_input, conv_flops, Backbone, BackboneSpec};
use crate::error::{ModelError, Result};
use crate::graph::{GraphBuilder, Value};
use crate::layers::{BatchNorm, Linear};
use crate::mobilefacenet::{Bottleneck, ConvBnAct, ConvShape, Names};
use crate::plugin::Plug;

const BN_EPS: f64 = 1e-5;

/// Settings of [`Mbf`]: arcface_torch's `get_mbf` (blocks `[1, 4, 6, 2]`, scale 2) by
/// default; `get_mbf_large` is blocks `[2, 8, 12, 4]`, scale 4.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MbfConfig {
    /// Blocks of the four stages.
    pub blocks: [usize; 4],
    /// Width multiplier of the 64- and 128-channel stages.
    pub scale: i64,
    /// Length of the feature vector (arcface_torch's `embedding_size`).
    pub feature_dim: i64,
}

impl Default for MbfConfig {
    fn default() -> Self {
        MbfConfig { blocks: [1, 4, 6, 2], scale: 2, feature_dim: 512 }
    }
}

impl Plug for MbfConfig {
    const NAME: &'static str = "mbf";

    fn check(&self) -> std::result::Result<(), String> {
        if self.scale < 1 || self.feature_dim < 1 {
            return Err(format!("model.backbone: scale and feature_dim must be >= 1, got {} and {}", self.scale, self.feature_dim));
        }
        Ok(())
    }
}

/// The depthwise stages after the stem: input and output channels, expansion, stride, and the
/// residual blocks after it (index into `blocks`).
fn stages(scale: i64) -> [(i64, i64, i64, usize); 3] {
    [(64 * scale, 64 * scale, 128, 1), (64 * scale, 128 * scale, 256, 2), (128 * scale, 128 * scale, 512, 3)]
}

/// The expansion of each residual stage (`layers.3`, `.5`, `.7`).
const RESIDUAL_GROUPS: [i64; 4] = [128, 128, 256, 256];

impl BackboneSpec for MbfConfig {
    fn build(&self, p: &nn::Path) -> Result<Box<dyn Backbone>> {
        Ok(Box::new(Mbf::new(p, self)?))
    }

    fn input_shape(&self) -> [i64; 3] {
        [3, 112, 112]
    }

    fn feature_dim(&self) -> i64 {
        self.feature_dim
    }

    /// insightface's `(p - 127.5) / 127.5`.
    fn pixel_norm(&self) -> facerec_core::PixelNorm {
        facerec_core::PixelNorm::INSIGHTFACE
    }

    fn forward_flops(&self) -> Option<f64> {
        // A convolution in g groups costs 1/g of a dense one.
        let grouped = |cin: i64, cout: i64, k: i64, side: i64, g: i64| conv_flops(cin, cout, k, side, side) / g as f64;
        let depthwise = |cin: i64, cout: i64, e: i64, side_in: i64, stride: i64| {
            let side = side_in / stride;
            grouped(cin, e, 1, side_in, 1) + grouped(e, e, 3, side, e) + grouped(e, cout, 1, side, 1)
        };
        let c = 64 * self.scale;
        let mut total = grouped(3, c, 3, 56, 1);
        total += match self.blocks[0] {
            1 => grouped(c, c, 3, 56, 64),
            n => n as f64 * depthwise(c, c, 128, 56, 1),
        };
        let mut side = 56;
        for (i, (cin, cout, e, stage)) in stages(self.scale).into_iter().enumerate() {
            total += depthwise(cin, cout, e, side, 2);
            side /= 2;
            total += self.blocks[stage] as f64 * depthwise(cout, cout, RESIDUAL_GROUPS[i + 1], side, 1);
        }
        total += grouped(128 * self.scale, 512, 1, 7, 1) + grouped(512, 512, 7, 1, 512) * 49.0;
        Some(total + 2.0 * (512 * self.feature_dim) as f64)
    }
}

/// `ConvBlock` (or `LinearBlock` when `linear`) under `p`: `p.layers.0/1/2`.
fn block(p: &nn::Path, channels: [i64; 2], k: i64, stride: i64, groups: i64, linear: bool) -> ConvBnAct {
    let shape = ConvShape { channels, kernel: [k, k], stride, padding: k / 2, groups };
    ConvBnAct::new(Names::Sequence(&(p / "layers"), 0), shape, linear)
}

/// arcface_torch's `DepthWise`: 1x1 to the expansion `e`, k x k in `e` groups with the
/// stride, 1x1 linear out; plus the input when `residual`. MobileFaceNet's inverted residual
/// computes it; only the names and the residual rule are arcface_torch's.
fn depth_wise(p: nn::Path, [cin, cout]: [i64; 2], e: i64, stride: i64, residual: bool) -> Bottleneck {
    let layers = &p / "layers";
    Bottleneck {
        expand: block(&(&layers / 0), [cin, e], 1, 1, 1, false),
        depthwise: block(&(&layers / 1), [e, e], 3, stride, e, false),
        project: block(&(&layers / 2), [e, cout], 1, 1, 1, true),
        residual,
    }
}

/// A stage: one `ConvBlock`, or `DepthWise` blocks one after the other.
#[derive(Debug)]
enum Stage {
    Conv(ConvBnAct),
    Blocks(Vec<Bottleneck>),
}

impl Stage {
    /// arcface_torch's `Residual`: `n` residual depthwise blocks under `p.layers.<i>`.
    fn residual(p: nn::Path, c: i64, n: usize, e: i64) -> Self {
        let layers = &p / "layers";
        Stage::Blocks((0..n).map(|i| depth_wise(&layers / i, [c, c], e, 1, true)).collect())
    }

    fn forward(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        match self {
            Stage::Conv(c) => c.forward(x, train),
            Stage::Blocks(blocks) => blocks.iter().try_fold(x.shallow_clone(), |x, b| b.forward(&x, train)),
        }
    }

    fn describe(&self, g: &mut GraphBuilder, x: Value) -> Result<Value> {
        match self {
            Stage::Conv(c) => c.describe(g, x),
            Stage::Blocks(blocks) => blocks.iter().try_fold(x, |x, b| b.describe(g, x)),
        }
    }
}

/// The backbone: `[batch, 3, 112, 112]` to `[batch, feature_dim]`.
#[derive(Debug)]
pub struct Mbf {
    layers: Vec<Stage>,
    conv_sep: ConvBnAct,
    gdc: ConvBnAct,
    linear: Linear,
    bn: BatchNorm,
    config: MbfConfig,
}

impl Mbf {
    pub fn new(p: &nn::Path, config: &MbfConfig) -> Result<Self> {
        config.check().map_err(ModelError::Config)?;
        let layers_p = p / "layers";
        let c = 64 * config.scale;
        let mut layers = vec![Stage::Conv(block(&(&layers_p / 0), [3, c], 3, 2, 1, false))];
        layers.push(match config.blocks[0] {
            1 => Stage::Conv(block(&(&layers_p / 1), [c, c], 3, 1, 64, false)),
            n => Stage::residual(&layers_p / 1, c, n, RESIDUAL_GROUPS[0]),
        });
        for (i, (cin, cout, e, stage)) in stages(config.scale).into_iter().enumerate() {
            let at = layers.len();
            layers.push(Stage::Blocks(vec![depth_wise(&layers_p / at, [cin, cout], e, 2, false)]));
            layers.push(Stage::residual(&layers_p / (at + 1), cout, config.blocks[stage], RESIDUAL_GROUPS[i + 1]));
        }
        let features = p / "features" / "layers";
        // Linear from 512 to the features, He-normal over fan-out as that file starts it.
        let mut linear = Linear::new(&features / 2, 512, config.feature_dim, false);
        let _ = tch::no_grad(|| linear.weight.f_normal_(0.0, (2.0 / config.feature_dim as f64).sqrt()))?;
        Ok(Mbf {
            layers,
            conv_sep: block(&(p / "conv_sep"), [128 * config.scale, 512], 1, 1, 1, false),
            gdc: ConvBnAct::new(
                Names::Sequence(&(&features / 0 / "layers"), 0),
                ConvShape { channels: [512, 512], kernel: [7, 7], stride: 1, padding: 0, groups: 512 },
                true,
            ),
            linear,
            bn: BatchNorm::new(&features / 3, config.feature_dim, BN_EPS, true),
            config: config.clone(),
        })
    }
}

impl Backbone for Mbf {
    fn forward_t(&self, images: &Tensor, train: bool) -> Result<Tensor> {
        check_input("mbf", self.input_shape(), images)?;
        let mut x = images.shallow_clone();
        for stage in &self.layers {
            x = stage.forward(&x, train)?; //             [batch, 128 s, 56, 56] .. [batch, 128 s, 7, 7]
        }
        let x = self.conv_sep.forward(&x, train)?; //     [batch, 512, 7, 7]
        let x = self.gdc.forward(&x, train)?.f_flatten(1, -1)?; // [batch, 512]
        let x = self.linear.forward(&x)?; //              [batch, feature_dim]
        self.bn.forward(&x, train)
    }

    fn describe(&self, g: &mut GraphBuilder, images: Value) -> Result<Value> {
        let x = self.layers.iter().try_fold(images, |x, stage| stage.describe(g, x))?;
        let x = self.conv_sep.describe(g, x)?;
        let x = self.gdc.describe(g, x)?;
        let x = g.flatten(x)?;
        let x = g.linear(&self.linear, x)?;
        g.batch_norm(&self.bn, x)
    }

    fn feature_dim(&self) -> i64 {
        self.config.feature_dim
    }

    fn input_shape(&self) -> [i64; 3] {
        [3, 112, 112]
    }

    fn name(&self) -> &'static str {
        MbfConfig::NAME
    }
}
