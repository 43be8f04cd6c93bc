//! The [`Backbone`] trait, and [`BackboneConfig`]: the `[model.backbone]` table that picks one by
//! name.
//!
//! Adding a backbone takes one file (a settings struct implementing [`BackboneSpec`] and
//! [`Plug`], and a type implementing [`Backbone`]) and its registration: one line in the
//! registry below for facerec's own, or [`register_backbone`] from a user's crate; see
//! `docs/adding-a-backbone.md`.

use std::sync::{Arc, LazyLock};

use serde::{Deserialize, Serialize};
use tch::{nn, Tensor};

use crate::error::{ModelError, Result};
use crate::face_resnet::FaceResnetConfig;
use crate::graph::{GraphBuilder, Value};
use crate::iresnet::IresnetConfig;
use crate::lenet_pp::LenetPpConfig;
use crate::mbf::MbfConfig;
use crate::mobilefacenet::MobileFaceNetConfig;
use crate::plugin::{Choice, Plug, Registered, Registry};

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
    /// Describes what `forward_t(images, false)` computes, layer by layer, for export
    /// (`facerec export --onnx`): `input` is the images' value, the result the features'.
    /// Write it beside `forward_t` with the same layers. The default says that the backbone
    /// cannot be exported and what to implement.
    fn describe(&self, g: &mut GraphBuilder, input: Value) -> Result<Value> {
        let _ = (g, input);
        Err(ModelError::NotDescribed { backbone: self.name().to_owned() })
    }
}

/// What a backbone's settings know: how to build it, its input and its feature size.
pub trait BackboneSpec: std::fmt::Debug + Send + Sync {
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
    /// How the input's pixels are scaled: caffe-face's `(p - 127.5) / 128` unless the
    /// backbone's lineage says otherwise (insightface's models: `(p - 127.5) / 127.5`). Every
    /// path from bytes to the backbone applies it; saved models record it.
    fn pixel_norm(&self) -> facerec_core::PixelNorm {
        facerec_core::PixelNorm::CAFFE_FACE
    }
}

/// The backbones by name. facerec's own are registered here, one line each.
static BACKBONES: LazyLock<Registry<dyn BackboneSpec>> = LazyLock::new(|| {
    let registry = Registry::new("backbone", None);
    registry.add(erase::<LenetPpConfig>);
    registry.add(erase::<FaceResnetConfig>);
    registry.add(erase::<IresnetConfig>);
    registry.add(erase::<MobileFaceNetConfig>);
    registry.add(erase::<MbfConfig>);
    registry
});

impl Registered for dyn BackboneSpec {
    fn registry() -> &'static Registry<Self> {
        &BACKBONES
    }
}

fn erase<P: Plug + BackboneSpec>(plug: P) -> Arc<dyn BackboneSpec> {
    Arc::new(plug)
}

/// Makes the backbone `P` available to configs and saved models as `name = P::NAME`, beside
/// the built-in ones: call it at the start of `main`, before any config is read.
pub fn register_backbone<P: Plug + BackboneSpec>() {
    BACKBONES.add(erase::<P>);
}

/// The backbone names configs can use.
pub fn backbone_names() -> Vec<&'static str> {
    BACKBONES.names()
}

/// Which backbone, with its settings: `[model.backbone] name = "face_resnet"` and the fields
/// of that backbone's settings. Unknown names and unknown fields fail when the TOML is read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct BackboneConfig(Choice<dyn BackboneSpec>);

impl BackboneConfig {
    /// The config of backbone `P` with these settings.
    pub fn new<P: Plug + BackboneSpec>(settings: P) -> Self {
        BackboneConfig(Choice::of(settings, erase::<P>))
    }

    /// The name configs pick it by.
    pub fn name(&self) -> &str {
        self.0.name()
    }

    /// The settings of the chosen backbone.
    pub fn spec(&self) -> &dyn BackboneSpec {
        self.0.spec()
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

    /// How the configured backbone's input pixels are scaled.
    pub fn pixel_norm(&self) -> facerec_core::PixelNorm {
        self.spec().pixel_norm()
    }
}

/// `mobilefacenet (feature_dim 128, input_size [112, 96])`: the name and the settings.
impl std::fmt::Display for BackboneConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// 2 * C_in * C_out * k * k * H_out * W_out: the FLOPs of one convolution.
pub fn conv_flops(cin: i64, cout: i64, k: i64, h: i64, w: i64) -> f64 {
    2.0 * (cin * cout * k * k) as f64 * (h * w) as f64
}

/// Fails with a clear message unless `images` is `[batch, C, H, W]` with the expected `C, H, W`
/// (the first line of a backbone's `forward_t`, in facerec's backbones and in a crate of your own).
pub fn check_input(backbone: &'static str, expected: [i64; 3], images: &Tensor) -> Result<()> {
    let got = images.size();
    if got.len() != 4 || got[1..] != expected {
        return Err(ModelError::InputShape { backbone, expected, got });
    }
    Ok(())
}
