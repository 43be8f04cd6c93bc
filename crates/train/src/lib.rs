//! Training for facerec: the joint softmax + center loss loop of Wen et al. (ECCV 2016), SGD
//! with momentum and weight decay or AdamW, multistep, polynomial or cosine learning rates,
//! gradient accumulation, metrics, checkpoints and exact resume, built from a [`TrainConfig`] (the experiment's TOML lives in `facerec-experiment`).

pub mod checkpoint;
pub mod config;
pub mod distributed;
pub mod error;
pub mod optim;
pub mod schedule;
pub mod tensorboard;
pub mod trainer;

pub use config::{Every, TrainConfig};
pub use error::{Result, TrainError};
pub use trainer::{Evaluator, FitSummary, ModelParts, Observer, Outcome, StepStats, Trainer};
