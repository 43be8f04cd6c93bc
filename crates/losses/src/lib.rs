//! Losses for facerec: the softmax loss (classifier + cross-entropy) and the center loss of
//! Wen et al., ECCV 2016, with its explicit backward and its own center update rule.

pub mod center;
pub mod error;
pub mod softmax;

pub use center::{CenterLoss, CenterLossConfig, CenterLossOutput};
pub use error::{LossError, Result};
pub use softmax::{SoftmaxLoss, SoftmaxOutput};
