//! Losses for facerec: the softmax loss (classifier + cross-entropy) and the center loss of
//! Wen et al., ECCV 2016, with its explicit backward and its own center update rule; the
//! [`Loss`] trait the trainer holds and [`LossConfig`], the `[loss]` table that picks one.

pub mod arcface;
pub mod center;
pub mod combined_margin;
pub mod contrastive;
pub mod cosface;
pub mod error;
pub mod loss;
pub mod margin;
pub mod sharded;
pub mod softmax;
pub mod sphereface;

pub use center::{CenterLoss, CenterLossConfig, CenterLossOutput, CenterRule, CenterUpdate, JointCenterConfig, JointCenterLoss};
pub use error::{LossError, Result};
pub use loss::{loss_names, register_loss, shardable_loss_names, Loss, LossConfig, LossOutput, LossSpec, OneProcess, Ranks, Reduce, SolverStep, Term};
pub use sharded::{ClassShard, Sampling, ShardHead, ShardedLoss};
pub use softmax::{check_labels, SoftmaxConfig, SoftmaxLoss, SoftmaxOutput};
