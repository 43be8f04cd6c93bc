//! What the margin losses (CosFace, ArcFace, the combined margin) share: a classifier of
//! L2-normalised class weights without bias applied to L2-normalised features, whose logits are
//! cosines; and the softmax over `scale` times those cosines with the target class's cosine
//! replaced by a margin function of it.

use tch::{nn, Tensor};

use facerec_model::layers::Linear;

use crate::error::Result;
use crate::softmax::check_labels;

/// The class weights, `weight: [classes, dim]` under `p` (`p / "fc"`), no bias.
#[derive(Debug)]
pub struct CosineClassifier {
    fc: Linear,
}

/// Rows of `t` scaled to unit L2 norm (rows of norm below 1e-12 stay near zero).
pub(crate) fn unit_rows(t: &Tensor) -> Result<Tensor> {
    let norm = t.f_square()?.f_sum_dim_intlist([1i64].as_slice(), true, t.kind())?.f_sqrt()?.f_clamp_min(1e-12)?;
    Ok(t.f_div(&norm)?)
}

impl CosineClassifier {
    pub fn new(p: &nn::Path, feature_dim: i64, num_classes: i64) -> Self {
        CosineClassifier { fc: Linear::new(p / "fc", feature_dim, num_classes, false) }
    }

    /// `scale` times the cosines: the logits for accuracy, without any margin.
    pub fn scaled_logits(&self, features: &Tensor, scale: f64) -> Result<Tensor> {
        Ok(self.cosines(features)?.f_mul_scalar(scale)?)
    }

    /// `[batch, classes]` cosines between the features and the class weights.
    pub fn cosines(&self, features: &Tensor) -> Result<Tensor> {
        Ok(unit_rows(features)?.f_matmul(&unit_rows(&self.fc.weight)?.f_tr()?)?)
    }

    /// The mean cross-entropy of `scale * cos`, the target class's cosine `c` replaced by
    /// `target(c)`, and the logits `scale * cos` without the margin (for accuracy).
    pub fn margin_softmax(
        &self,
        features: &Tensor,
        labels: &Tensor,
        scale: f64,
        target: impl Fn(&Tensor) -> Result<Tensor>,
    ) -> Result<(Tensor, Tensor)> {
        check_labels(labels, features, self.fc.weight.size()[0])?;
        let cos = self.cosines(features)?; //                        [batch, classes]
        let index = labels.f_unsqueeze(1)?; //                        [batch, 1]
        let with_margin = target(&cos.f_gather(1, &index, false)?)?; // [batch, 1]
        let logits = cos.f_scatter(1, &index, &with_margin)?.f_mul_scalar(scale)?;
        let loss = logits.f_cross_entropy_loss::<Tensor>(labels, None, tch::Reduction::Mean, -100, 0.0)?;
        Ok((loss, cos.f_mul_scalar(scale)?))
    }
}

/// Cosines clamped into `[-1 + 1e-7, 1 - 1e-7]`, so that `acos` and `sqrt(1 - c^2)` have finite
/// gradients at angles 0 and pi.
pub fn open_interval(cos: &Tensor) -> Result<Tensor> {
    Ok(cos.f_clamp(-1.0 + 1e-7, 1.0 - 1e-7)?)
}

/// The scale `s` of a margin loss's logits must be a positive number.
pub fn check_scale(scale: f64) -> std::result::Result<(), String> {
    if scale > 0.0 && scale.is_finite() {
        Ok(())
    } else {
        Err(format!("loss.scale must be > 0, got {scale}"))
    }
}
