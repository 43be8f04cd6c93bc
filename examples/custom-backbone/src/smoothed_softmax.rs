//! A loss from outside facerec: softmax with label smoothing (Szegedy et al. 2016). Its settings
//! implement `Plug` and `LossSpec`; the loss implements `Loss`, reusing facerec's classifier
//! layer.

use serde::{Deserialize, Serialize};
use tch::{nn, Tensor};

use facerec_losses::{check_labels, Loss, LossOutput, LossSpec, Term};
use facerec_model::layers::Linear;
use facerec_model::Plug;

/// `[loss] name = "smoothed_softmax"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmoothedSoftmaxConfig {
    /// The probability mass spread evenly over all classes, in [0, 1).
    pub smoothing: f64,
}

impl Plug for SmoothedSoftmaxConfig {
    const NAME: &'static str = "smoothed_softmax";

    fn check(&self) -> Result<(), String> {
        if !(0.0..1.0).contains(&self.smoothing) {
            return Err(format!("loss.smoothing must be in [0, 1), got {}", self.smoothing));
        }
        Ok(())
    }
}

impl LossSpec for SmoothedSoftmaxConfig {
    fn build(&self, p: &nn::Path, feature_dim: i64, num_classes: i64) -> facerec_losses::Result<Box<dyn Loss>> {
        let fc = Linear::new(p / "head" / "fc", feature_dim, num_classes, true);
        Ok(Box::new(SmoothedSoftmax { fc, smoothing: self.smoothing }))
    }
}

#[derive(Debug)]
pub struct SmoothedSoftmax {
    fc: Linear,
    smoothing: f64,
}

impl Loss for SmoothedSoftmax {
    fn forward(&self, features: &Tensor, labels: &Tensor) -> facerec_losses::Result<LossOutput> {
        check_labels(labels, features, self.fc.weight.size()[0])?;
        let logits = self.logits(features)?;
        let loss = logits.f_cross_entropy_loss::<Tensor>(labels, None, tch::Reduction::Mean, -100, self.smoothing)?;
        LossOutput::from_logits(loss, &logits)
    }

    fn logits(&self, features: &Tensor) -> facerec_losses::Result<Tensor> {
        Ok(self.fc.forward(features)?)
    }

    fn terms(&self) -> Vec<Term> {
        vec![Term::unit("smoothed_loss")]
    }
}
