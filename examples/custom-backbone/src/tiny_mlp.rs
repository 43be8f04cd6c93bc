//! A backbone from outside facerec: a two-layer perceptron on flattened images. Its settings
//! struct implements `Plug` (the name configs pick it by) and `BackboneSpec` (how to build it);
//! the network implements `Backbone`, with `describe` beside `forward_t` so that `export --onnx`
//! can write it.

use serde::{Deserialize, Serialize};
use tch::{nn, Tensor};

use facerec_model::layers::{Linear, PRelu};
use facerec_model::{check_input, Backbone, BackboneSpec, GraphBuilder, Plug, Value};

/// `[model.backbone] name = "tiny_mlp"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TinyMlpConfig {
    /// The `[C, H, W]` images it takes (MNIST: `[1, 28, 28]`).
    #[serde(default = "mnist")]
    pub input: [i64; 3],
    #[serde(default = "default_hidden")]
    pub hidden: i64,
    #[serde(default = "default_feature_dim")]
    pub feature_dim: i64,
}

fn mnist() -> [i64; 3] {
    [1, 28, 28]
}
fn default_hidden() -> i64 {
    64
}
fn default_feature_dim() -> i64 {
    2
}

impl Plug for TinyMlpConfig {
    const NAME: &'static str = "tiny_mlp";

    fn check(&self) -> Result<(), String> {
        if self.hidden < 1 || self.feature_dim < 1 || self.input.iter().any(|&d| d < 1) {
            return Err("model.backbone: tiny_mlp needs positive sizes".into());
        }
        Ok(())
    }
}

impl BackboneSpec for TinyMlpConfig {
    fn build(&self, p: &nn::Path) -> facerec_model::Result<Box<dyn Backbone>> {
        let inputs = self.input.iter().product();
        Ok(Box::new(TinyMlp {
            fc1: Linear::new(p / "fc1", inputs, self.hidden, true),
            act: PRelu::new(p / "act", self.hidden),
            fc2: Linear::new(p / "fc2", self.hidden, self.feature_dim, true),
            config: self.clone(),
        }))
    }

    fn input_shape(&self) -> [i64; 3] {
        self.input
    }

    fn feature_dim(&self) -> i64 {
        self.feature_dim
    }
}

/// `fc2(prelu(fc1(flatten(x))))`.
#[derive(Debug)]
pub struct TinyMlp {
    fc1: Linear,
    act: PRelu,
    fc2: Linear,
    config: TinyMlpConfig,
}

impl Backbone for TinyMlp {
    fn forward_t(&self, images: &Tensor, _train: bool) -> facerec_model::Result<Tensor> {
        check_input("tiny_mlp", self.config.input, images)?;
        let x = images.f_flatten(1, -1)?;
        self.fc2.forward(&self.act.forward(&self.fc1.forward(&x)?)?)
    }

    /// The same layers as `forward_t`, for `export --onnx` (without it, the export says what
    /// to implement).
    fn describe(&self, g: &mut GraphBuilder, images: Value) -> facerec_model::Result<Value> {
        let x = g.flatten(images)?;
        let x = g.linear(&self.fc1, x)?;
        let x = g.prelu(&self.act, x)?;
        g.linear(&self.fc2, x)
    }

    fn feature_dim(&self) -> i64 {
        self.config.feature_dim
    }

    fn input_shape(&self) -> [i64; 3] {
        self.config.input
    }

    fn name(&self) -> &'static str {
        "tiny_mlp"
    }
}
