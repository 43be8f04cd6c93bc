//! Multi-process data parallelism for facerec on PyTorch's own c10d engine, through a small C++
//! shim (`cpp/shim.cpp`): rendezvous through c10d's `TCPStore` (rank 0 hosts it), a
//! `ProcessGroupGloo` for CPU tensors or a `ProcessGroupNCCL` for CUDA tensors, and the four
//! collectives data-parallel training needs (`all_reduce` by sum or maximum, `broadcast`,
//! `all_gather`, `barrier`) on tch tensors, each bounded by a timeout; and [`GradReducer`],
//! gradient all-reduce overlapped with the backward pass through hooks on the parameters.
//!
//! No `unsafe` reaches callers: the shim catches every C++ exception and returns it as a
//! string, which becomes a [`DistError`] saying which rank failed and, where c10d's message
//! shows it, that a peer died or hung.
//!
//! ```no_run
//! # fn main() -> Result<(), facerec_dist::DistError> {
//! use facerec_dist::{Backend, DistConfig, ProcessGroup};
//! if let Some(config) = DistConfig::from_env()? {
//!     let group = ProcessGroup::new(&config, Backend::Gloo)?;
//!     let mut t = tch::Tensor::from_slice(&[config.rank as f32]);
//!     group.all_reduce(&mut t)?; // 0 + 1 + ... + (world - 1) on every rank
//! }
//! # Ok(()) }
//! ```

pub mod config;
pub mod error;
mod ffi;
pub mod group;
pub mod reducer;

pub use config::{DistConfig, Launcher};
pub use error::{DistError, Result};
pub use group::{nccl_compiled, Backend, ProcessGroup, ReduceOp};
pub use reducer::GradReducer;
