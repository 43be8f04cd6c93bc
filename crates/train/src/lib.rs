//! Training for facerec: the joint softmax + center loss loop of Wen et al. (ECCV 2016), SGD
//! with momentum and weight decay or AdamW, multistep, polynomial or cosine learning rates,
//! gradient accumulation, metrics, checkpoints and exact resume, built from a [`TrainConfig`] (the experiment's TOML lives in `facerec-experiment`).

pub mod checkpoint;
pub mod config;
pub mod distributed;
pub mod error;
pub mod observe;
pub mod optim;
mod parallel;
pub mod run_log;
pub mod schedule;
pub mod tensorboard;
pub mod trainer;

pub use config::{Every, TrainConfig};
pub use error::{Result, TrainError};
pub use observe::{EpochLine, Evaluation, LogLine, Observer, RunStart, StepStats};
pub use run_log::RunLog;
pub use trainer::{Evaluator, FitSummary, ModelParts, Outcome, Trainer};
