//! Training for facerec: the joint softmax + center loss loop of Wen et al. (ECCV 2016), SGD
//! with momentum and weight decay, multistep learning rate, metrics, checkpoints and exact
//! resume, driven by a TOML [`Config`].

pub mod checkpoint;
pub mod config;
pub mod data;
pub mod distributed;
pub mod error;
pub mod metrics;
pub mod schedule;
pub mod sgd;
pub mod tensorboard;
pub mod trainer;

pub use config::Config;
pub use error::{Result, TrainError};
pub use trainer::{Evaluator, FitSummary, ModelParts, Observer, Outcome, StepStats, Trainer};
