//! MobileFaceNet (Chen, Liu, Gao, Han, "MobileFaceNets: Efficient CNNs for Accurate Real-Time
//! Face Verification on Mobile Devices", CCBR 2018): MobileNetV2's inverted-residual
//! bottlenecks with PReLU, ending in a global depthwise convolution (GDC) instead of global
//! average pooling, 128-d features, about 1 M parameters and 0.2 GFLOP per 112x96 face.
//!
//! Layout and parameter names follow the public PyTorch re-implementation that the shared
//! CASIA-WebFace checkpoint comes from (`MobileFaceNet_Pytorch`, `core/model.py`), so its
//! state dict loads by name (`facerec import`):
//!
//! | prefix         | layer                                                        | out (112x96) |
//! |----------------|--------------------------------------------------------------|--------------|
//! | `conv1`        | conv 3x3 / 2 to 64, BN, PReLU                                | 64 x 56 x 48 |
//! | `dw_conv1`     | depthwise 3x3, BN, PReLU                                     | 64 x 56 x 48 |
//! | `blocks.0..14` | bottlenecks (t, c, n, s) = (2,64,5,2) (4,128,1,2) (2,128,6,1) (4,128,1,2) (2,128,2,1) | 128 x 7 x 6 |
//! | `conv2`        | conv 1x1 to 512, BN, PReLU                                   | 512 x 7 x 6  |
//! | `linear7`      | depthwise 7x6 (the GDC; 7x7 for 112x112 input), BN           | 512 x 1 x 1  |
//! | `linear1`      | conv 1x1 to 128, BN                                          | 128          |
//!
//! A bottleneck is `conv.0/1/2` = 1x1 expand by t, BN, PReLU; `conv.3/4/5` = depthwise 3x3 with
//! the stride, BN, PReLU; `conv.6/7` = 1x1 linear projection to c, BN; plus the input when the
//! stride is 1 and the channels are equal. Convolutions have no bias; BatchNorm eps is 1e-5,
//! momentum 0.1. Weights start as that code starts them: normal with std sqrt(2 / (k_h k_w
//! c_out)), BN scale 1 and shift 0, PReLU slopes 0.25.

use serde::{Deserialize, Serialize};
use tch::{nn, Tensor};

use crate::backbone::{check_input, conv_flops, Backbone, BackboneSpec};
use crate::error::{ModelError, Result};
use crate::graph::{GraphBuilder, Value};
use crate::layers::{BatchNorm, Conv2d, PRelu};
use crate::plugin::Plug;

const BN_EPS: f64 = 1e-5;

/// The bottleneck stages: expansion t, output channels c, repeats n, first stride s.
pub const BOTTLENECKS: [(i64, i64, usize, i64); 5] = [(2, 64, 5, 2), (4, 128, 1, 2), (2, 128, 6, 1), (4, 128, 1, 2), (2, 128, 2, 1)];

/// Settings of [`MobileFaceNet`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MobileFaceNetConfig {
    /// Input height and width: 112 x 96 (the caffe-face crop) or 112 x 112; both must be
    /// multiples of 16, and the global depthwise kernel is `[height / 16, width / 16]`.
    pub input_size: [i64; 2],
    /// Length of the feature vector (the paper: 128).
    pub feature_dim: i64,
}

impl Default for MobileFaceNetConfig {
    fn default() -> Self {
        MobileFaceNetConfig { input_size: [112, 96], feature_dim: 128 }
    }
}

impl Plug for MobileFaceNetConfig {
    const NAME: &'static str = "mobilefacenet";

    fn check(&self) -> std::result::Result<(), String> {
        let [h, w] = self.input_size;
        if h < 16 || w < 16 || h % 16 != 0 || w % 16 != 0 {
            return Err(format!("model.backbone.input_size must be two multiples of 16 (e.g. [112, 96]), got [{h}, {w}]"));
        }
        if self.feature_dim < 1 {
            return Err(format!("model.backbone.feature_dim must be >= 1, got {}", self.feature_dim));
        }
        Ok(())
    }
}

impl MobileFaceNetConfig {
    /// The side of the last feature map, which the global depthwise convolution covers.
    fn gdc_kernel(&self) -> [i64; 2] {
        [self.input_size[0] / 16, self.input_size[1] / 16]
    }
}

impl BackboneSpec for MobileFaceNetConfig {
    fn build(&self, p: &nn::Path) -> Result<Box<dyn Backbone>> {
        Ok(Box::new(MobileFaceNet::new(p, self)?))
    }

    fn input_shape(&self) -> [i64; 3] {
        [3, self.input_size[0], self.input_size[1]]
    }

    fn feature_dim(&self) -> i64 {
        self.feature_dim
    }

    fn forward_flops(&self) -> Option<f64> {
        // A depthwise k x k convolution costs what a 1 -> c one does: conv_flops(1, c, k, ..).
        let (mut h, mut w) = (self.input_size[0] / 2, self.input_size[1] / 2);
        let mut total = conv_flops(3, 64, 3, h, w) + conv_flops(1, 64, 3, h, w);
        let mut cin = 64;
        for (t, c, n, s) in BOTTLENECKS {
            for i in 0..n {
                let stride = if i == 0 { s } else { 1 };
                let e = cin * t;
                total += conv_flops(cin, e, 1, h, w);
                (h, w) = (h / stride, w / stride);
                total += conv_flops(1, e, 3, h, w) + conv_flops(e, c, 1, h, w);
                cin = c;
            }
        }
        let [kh, kw] = self.gdc_kernel();
        total += conv_flops(cin, 512, 1, h, w) + 2.0 * (512 * kh * kw) as f64;
        Some(total + conv_flops(512, self.feature_dim, 1, 1, 1))
    }
}

/// caffe-style He init of that code: normal, std sqrt(2 / (k_h k_w c_out)) (PyTorch's
/// `kaiming_normal_(mode="fan_out", nonlinearity="relu")`).
pub(crate) fn he(kernel: [i64; 2], cout: i64) -> nn::Init {
    nn::Init::Randn { mean: 0.0, stdev: (2.0 / (kernel[0] * kernel[1] * cout) as f64).sqrt() }
}

/// Convolution, BatchNorm and (unless linear) PReLU, named `conv`, `bn`, `prelu` under `p`
/// (the `ConvBlock` of that code) or numbered from `first` inside a bottleneck's `conv`
/// sequence.
#[derive(Debug)]
pub(crate) struct ConvBnAct {
    conv: Conv2d,
    bn: BatchNorm,
    prelu: Option<PRelu>,
}

/// How a [`ConvBnAct`]'s layers are named.
pub(crate) enum Names<'a> {
    /// `<p>.conv`, `<p>.bn`, `<p>.prelu`.
    Block(&'a nn::Path<'a>),
    /// `<p>.<first>`, `<p>.<first + 1>`, `<p>.<first + 2>`.
    Sequence(&'a nn::Path<'a>, usize),
}

/// One convolution's shape: channels in and out, kernel, stride, padding, channel groups
/// (`cin` of them: depthwise).
pub(crate) struct ConvShape {
    pub channels: [i64; 2],
    pub kernel: [i64; 2],
    pub stride: i64,
    pub padding: i64,
    pub groups: i64,
}

impl ConvBnAct {
    /// He-initialised convolution, BatchNorm (eps 1e-5) and, unless `linear`, PReLU.
    pub(crate) fn new(names: Names, shape: ConvShape, linear: bool) -> Self {
        let ConvShape { channels: [cin, cout], kernel, stride, padding, groups } = shape;
        let (conv_p, bn_p, prelu_p) = match names {
            Names::Block(p) => (p / "conv", p / "bn", p / "prelu"),
            Names::Sequence(p, first) => (p / first, p / (first + 1), p / (first + 2)),
        };
        ConvBnAct {
            conv: Conv2d::grouped(conv_p, [cin, cout], kernel, stride, padding, groups, he(kernel, cout)),
            bn: BatchNorm::new(bn_p, cout, BN_EPS, true),
            prelu: (!linear).then(|| PRelu::new(prelu_p, cout)),
        }
    }

    pub(crate) fn forward(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let y = self.bn.forward(&self.conv.forward(x)?, train)?;
        match &self.prelu {
            Some(prelu) => prelu.forward(&y),
            None => Ok(y),
        }
    }

    pub(crate) fn describe(&self, g: &mut GraphBuilder, x: Value) -> Result<Value> {
        let y = g.conv(&self.conv, x)?;
        let y = g.batch_norm(&self.bn, y)?;
        match &self.prelu {
            Some(prelu) => g.prelu(prelu, y),
            None => Ok(y),
        }
    }
}

fn conv(channels: [i64; 2], k: i64, stride: i64, depthwise: bool) -> ConvShape {
    ConvShape { channels, kernel: [k, k], stride, padding: k / 2, groups: if depthwise { channels[0] } else { 1 } }
}

/// Inverted residual: expand, depthwise, project (linear), and the shortcut when shapes allow.
/// arcface_torch's `DepthWise` block of `mbf` is the same computation under other names.
#[derive(Debug)]
pub(crate) struct Bottleneck {
    pub(crate) expand: ConvBnAct,
    pub(crate) depthwise: ConvBnAct,
    pub(crate) project: ConvBnAct,
    pub(crate) residual: bool,
}

impl Bottleneck {
    fn new(p: nn::Path, cin: i64, cout: i64, stride: i64, t: i64) -> Self {
        let seq = &p / "conv";
        let e = cin * t;
        Bottleneck {
            expand: ConvBnAct::new(Names::Sequence(&seq, 0), conv([cin, e], 1, 1, false), false),
            depthwise: ConvBnAct::new(Names::Sequence(&seq, 3), conv([e, e], 3, stride, true), false),
            project: ConvBnAct::new(Names::Sequence(&seq, 6), conv([e, cout], 1, 1, false), true),
            residual: stride == 1 && cin == cout,
        }
    }

    pub(crate) fn forward(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let y = self.expand.forward(x, train)?;
        let y = self.project.forward(&self.depthwise.forward(&y, train)?, train)?;
        Ok(if self.residual { y.f_add(x)? } else { y })
    }

    pub(crate) fn describe(&self, g: &mut GraphBuilder, x: Value) -> Result<Value> {
        let y = self.expand.describe(g, x)?;
        let y = self.depthwise.describe(g, y)?;
        let y = self.project.describe(g, y)?;
        if self.residual {
            g.add(y, x)
        } else {
            Ok(y)
        }
    }
}

/// The MobileFaceNet backbone: `[batch, 3, 112, 96]` to `[batch, 128]`.
#[derive(Debug)]
pub struct MobileFaceNet {
    conv1: ConvBnAct,
    dw_conv1: ConvBnAct,
    blocks: Vec<Bottleneck>,
    conv2: ConvBnAct,
    linear7: ConvBnAct,
    linear1: ConvBnAct,
    config: MobileFaceNetConfig,
}

impl MobileFaceNet {
    pub fn new(p: &nn::Path, config: &MobileFaceNetConfig) -> Result<Self> {
        config.check().map_err(ModelError::Config)?;
        let mut blocks = Vec::new();
        let blocks_p = p / "blocks";
        let mut cin = 64;
        for (t, c, n, s) in BOTTLENECKS {
            for i in 0..n {
                let stride = if i == 0 { s } else { 1 };
                blocks.push(Bottleneck::new(&blocks_p / blocks.len(), cin, c, stride, t));
                cin = c;
            }
        }
        let gdc = ConvShape { channels: [512, 512], kernel: config.gdc_kernel(), stride: 1, padding: 0, groups: 512 };
        Ok(MobileFaceNet {
            conv1: ConvBnAct::new(Names::Block(&(p / "conv1")), conv([3, 64], 3, 2, false), false),
            dw_conv1: ConvBnAct::new(Names::Block(&(p / "dw_conv1")), conv([64, 64], 3, 1, true), false),
            blocks,
            conv2: ConvBnAct::new(Names::Block(&(p / "conv2")), conv([cin, 512], 1, 1, false), false),
            linear7: ConvBnAct::new(Names::Block(&(p / "linear7")), gdc, true),
            linear1: ConvBnAct::new(Names::Block(&(p / "linear1")), conv([512, config.feature_dim], 1, 1, false), true),
            config: config.clone(),
        })
    }
}

impl Backbone for MobileFaceNet {
    fn forward_t(&self, images: &Tensor, train: bool) -> Result<Tensor> {
        check_input("mobilefacenet", self.input_shape(), images)?;
        let x = self.conv1.forward(images, train)?; //         [batch, 64, 56, 48]
        let mut x = self.dw_conv1.forward(&x, train)?; //      [batch, 64, 56, 48]
        for block in &self.blocks {
            x = block.forward(&x, train)?; //                   .. [batch, 128, 7, 6]
        }
        let x = self.conv2.forward(&x, train)?; //              [batch, 512, 7, 6]
        let x = self.linear7.forward(&x, train)?; //            [batch, 512, 1, 1]
        let x = self.linear1.forward(&x, train)?; //            [batch, 128, 1, 1]
        Ok(x.f_flatten(1, -1)?) //                              [batch, 128]
    }

    fn describe(&self, g: &mut GraphBuilder, images: Value) -> Result<Value> {
        let x = self.conv1.describe(g, images)?;
        let mut x = self.dw_conv1.describe(g, x)?;
        for block in &self.blocks {
            x = block.describe(g, x)?;
        }
        let x = self.conv2.describe(g, x)?;
        let x = self.linear7.describe(g, x)?;
        let x = self.linear1.describe(g, x)?;
        g.flatten(x)
    }

    fn feature_dim(&self) -> i64 {
        self.config.feature_dim
    }

    fn input_shape(&self) -> [i64; 3] {
        self.config.input_shape()
    }

    fn name(&self) -> &'static str {
        MobileFaceNetConfig::NAME
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    /// The parameter names, shapes and count of the shared checkpoint's `params.tsv`: 333
    /// entries less the 55 `num_batches_tracked`, 1,019,136 floats (the README's count).
    #[test]
    fn variables_match_the_published_layout() {
        let vs = nn::VarStore::new(Device::Cpu);
        let net = MobileFaceNet::new(&vs.root(), &MobileFaceNetConfig::default()).unwrap();
        let vars = vs.variables();
        assert_eq!(vars.len(), 333 - 50);
        let floats: i64 = vars.values().map(|t| t.numel() as i64).sum();
        assert_eq!(floats, 1_019_136);
        assert_eq!(vars["linear7.conv.weight"].size(), [512, 1, 7, 6]);
        assert_eq!(vars["blocks.14.conv.6.weight"].size(), [128, 256, 1, 1]);
        assert_eq!(vars["blocks.5.conv.5.weight"].size(), [256]); // (4, 128, 1, 2) expands 64 by 4
        let x = Tensor::randn([2, 3, 112, 96], (Kind::Float, Device::Cpu));
        assert_eq!(net.forward_t(&x, false).unwrap().size(), [2, 128]);
        assert_eq!(net.forward_t(&x, true).unwrap().size(), [2, 128]);
    }

    #[test]
    fn square_input_gets_a_square_global_kernel() {
        let vs = nn::VarStore::new(Device::Cpu);
        let config = MobileFaceNetConfig { input_size: [112, 112], feature_dim: 256 };
        let net = MobileFaceNet::new(&vs.root(), &config).unwrap();
        assert_eq!(vs.variables()["linear7.conv.weight"].size(), [512, 1, 7, 7]);
        let x = Tensor::randn([1, 3, 112, 112], (Kind::Float, Device::Cpu));
        assert_eq!(net.forward_t(&x, false).unwrap().size(), [1, 256]);
        let err = net.forward_t(&Tensor::zeros([1, 3, 112, 96], (Kind::Float, Device::Cpu)), false).unwrap_err();
        assert!(err.to_string().contains("112"), "{err}");
    }

    #[test]
    fn bad_input_size_names_the_key() {
        let err = MobileFaceNetConfig { input_size: [112, 100], feature_dim: 128 }.check().unwrap_err();
        assert!(err.contains("model.backbone.input_size"), "{err}");
    }
}
