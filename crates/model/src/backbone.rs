//! The [`Backbone`] trait and the [`BackboneConfig`] enum that picks one by name in a TOML file.
//!
//! Adding a backbone takes one file (a config struct implementing [`BackboneSpec`] and a type
//! implementing [`Backbone`]) and one arm in [`BackboneConfig`] (plus its line in
//! [`BackboneConfig::spec`]); see `docs/adding-a-backbone.md`.

use serde::{Deserialize, Serialize};
use tch::{nn, Tensor};

use crate::error::{ModelError, Result};
use crate::face_resnet::FaceResnetConfig;
use crate::iresnet::IresnetConfig;
use crate::lenet_pp::LenetPpConfig;

/// A feature extractor: images in, one feature vector per image out.
pub trait Backbone: std::fmt::Debug + Send {
    /// `[batch, C, H, W]` images to `[batch, feature_dim]` features. `train` switches batch
    /// norm statistics (and dropout, where a backbone has it).
    fn forward_t(&self, images: &Tensor, train: bool) -> Result<Tensor>;
    /// Length of the feature vector.
    fn feature_dim(&self) -> i64;
    /// The `[C, H, W]` the backbone takes.
    fn input_shape(&self) -> [i64; 3];
    /// The name used in configs.
    fn name(&self) -> &'static str;
}

/// What a backbone's config knows: how to build it, its input and its feature size.
pub trait BackboneSpec {
    /// Creates the backbone's variables under `p` and returns it.
    fn build(&self, p: &nn::Path) -> Result<Box<dyn Backbone>>;
    /// The `[C, H, W]` input.
    fn input_shape(&self) -> [i64; 3];
    /// Length of the feature vector.
    fn feature_dim(&self) -> i64;
    /// Floating-point operations of one image's forward pass (convolutions and fully
    /// connected layers), for benchmarks; `None` when not counted.
    fn forward_flops(&self) -> Option<f64> {
        None
    }
}

/// Which backbone, with its settings: `[model.backbone] name = "face_resnet"` and the fields
/// of that backbone's config. Unknown names and unknown fields fail when the TOML is read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "name", rename_all = "snake_case")]
pub enum BackboneConfig {
    /// LeNets++ of the paper's MNIST experiment.
    LenetPp(LenetPpConfig),
    /// The paper's Face-ResNet (caffe-face), 112x96.
    FaceResnet(FaceResnetConfig),
    /// insightface's IResNet, 112x112.
    Iresnet(IresnetConfig),
}

impl BackboneConfig {
    /// The config of the chosen backbone.
    pub fn spec(&self) -> &dyn BackboneSpec {
        match self {
            BackboneConfig::LenetPp(c) => c,
            BackboneConfig::FaceResnet(c) => c,
            BackboneConfig::Iresnet(c) => c,
        }
    }

    /// Creates the backbone's variables under `p` and returns it.
    pub fn build(&self, p: &nn::Path) -> Result<Box<dyn Backbone>> {
        self.spec().build(p)
    }

    /// The `[C, H, W]` input of the configured backbone, known without building it.
    pub fn input_shape(&self) -> [i64; 3] {
        self.spec().input_shape()
    }

    pub fn feature_dim(&self) -> i64 {
        self.spec().feature_dim()
    }
}

/// 2 * C_in * C_out * k * k * H_out * W_out: the FLOPs of one convolution.
pub(crate) fn conv_flops(cin: i64, cout: i64, k: i64, h: i64, w: i64) -> f64 {
    2.0 * (cin * cout * k * k) as f64 * (h * w) as f64
}

/// Fails with a clear message unless `images` is `[batch, C, H, W]` with the expected `C, H, W`.
pub(crate) fn check_input(backbone: &'static str, expected: [i64; 3], images: &Tensor) -> Result<()> {
    let got = images.size();
    if got.len() != 4 || got[1..] != expected {
        return Err(ModelError::InputShape { backbone, expected, got });
    }
    Ok(())
}
