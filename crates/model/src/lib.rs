//! CNN backbones for facerec on libtorch (through `tch`): LeNets++ (the paper's 2-D toy),
//! Face-ResNet (the paper's face network, caffe-face), MobileFaceNet and insightface's IResNet, with the layers
//! and safetensors weights they are built from. MTCNN, the face detector that gives photos their
//! five landmarks, is `facerec-detect`, built on these layers and weights.
//!
//! A backbone maps images to features; the classifier that softmax needs lives with the loss in
//! `facerec-losses`, so that evaluation uses backbones alone.

pub mod backbone;
pub mod device;
pub mod error;
pub mod face_resnet;
pub mod graph;
pub mod import;
pub mod iresnet;
pub mod layers;
pub mod lenet_pp;
pub mod mbf;
pub mod mobilefacenet;
pub mod saved;
/// The registry of plugs, shared with the losses: [`facerec_core::plugin`].
pub use facerec_core::plugin;
pub mod weights;

#[cfg(test)]
mod flops_test;

pub use backbone::{backbone_names, check_input, conv_flops, register_backbone, Backbone, BackboneConfig, BackboneSpec};
pub use graph::{Graph, GraphBuilder, Value};
pub use plugin::Plug;
pub use error::{ModelError, Result};
