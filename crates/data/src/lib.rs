//! Data for facerec: MNIST for the paper's toy experiment, and (from `faces` on) face images,
//! identity-labelled datasets, 5-landmark alignment and parallel batch loading.

pub mod align;
pub mod cache;
pub mod dataset;
pub mod error;
pub mod idx;
pub mod image_io;
pub mod inputs;
pub mod ijb;
pub mod insightface;
pub mod landmarks;
pub mod lfw;
pub mod loader;
pub mod mnist;
pub mod normalize;
pub mod npy;
pub mod paths;
pub mod pixels;

pub use error::{DataError, Result};
