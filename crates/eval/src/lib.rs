//! Evaluation for facerec: classification accuracy and feature-space statistics, the paper's
//! 2-D feature plots, and (with the face pipeline) LFW verification and identification.

pub mod clusters;
pub mod error;
pub mod features;
pub mod identification;
pub mod ijb;
pub mod insightface;
pub mod lfw;
pub mod mnist;
pub mod open_set;
pub mod plot;
pub mod verification;

pub use error::{EvalError, Result};
