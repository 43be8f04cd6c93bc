//! The [`Backbone`] trait and the [`BackboneConfig`] enum that picks one by name in a TOML file.
//!
//! Adding a backbone takes one file (a config struct and a type implementing [`Backbone`]) and
//! one arm in [`BackboneConfig`] plus its `build` line; see `docs/adding-a-backbone.md`.

use serde::{Deserialize, Serialize};
use tch::{nn, Tensor};

use crate::error::{ModelError, Result};
use crate::face_resnet::{FaceResnet, FaceResnetConfig};
use crate::iresnet::{Iresnet, IresnetConfig};
use crate::lenet_pp::{LenetPp, LenetPpConfig};

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
    /// Creates the backbone's variables under `p` and returns it.
    pub fn build(&self, p: &nn::Path) -> Result<Box<dyn Backbone>> {
        Ok(match self {
            BackboneConfig::LenetPp(c) => Box::new(LenetPp::new(p, c)),
            BackboneConfig::FaceResnet(c) => Box::new(FaceResnet::new(p, c)?),
            BackboneConfig::Iresnet(c) => Box::new(Iresnet::new(p, c)?),
        })
    }

    /// The `[C, H, W]` input of the configured backbone, known without building it.
    pub fn input_shape(&self) -> [i64; 3] {
        match self {
            BackboneConfig::LenetPp(c) => [c.in_channels, c.input_size, c.input_size],
            BackboneConfig::FaceResnet(c) => c.input_shape,
            BackboneConfig::Iresnet(c) => [3, c.input_size, c.input_size],
        }
    }

    pub fn feature_dim(&self) -> i64 {
        match self {
            BackboneConfig::LenetPp(c) => c.feature_dim,
            BackboneConfig::FaceResnet(c) => c.feature_dim,
            BackboneConfig::Iresnet(c) => c.feature_dim,
        }
    }
}

/// Fails with a clear message unless `images` is `[batch, C, H, W]` with the expected `C, H, W`.
pub(crate) fn check_input(backbone: &'static str, expected: [i64; 3], images: &Tensor) -> Result<()> {
    let got = images.size();
    if got.len() != 4 || got[1..] != expected {
        return Err(ModelError::InputShape { backbone, expected, got });
    }
    Ok(())
}
