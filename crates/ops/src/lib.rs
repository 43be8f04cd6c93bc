//! libtorch operations that tch does not offer, through a small C++ file (`cpp/ops.cpp`)
//! compiled against the same libtorch:
//!
//! - [`autocast::bf16`]: run a closure under bfloat16 autocast on the CPU or CUDA (tch only
//!   switches CUDA autocast on, in float16);
//! - [`grad::clear_grad`]: drop a parameter's gradient, as PyTorch's `zero_grad()` does;
//! - [`prelu::prelu`]: PReLU whose backward is one fused pass on the CPU;
//! - [`memory::keep_freed_memory`]: keep the memory of freed CPU tensors mapped for reuse;
//! - [`memory::cuda_memory`]: current and peak CUDA memory of libtorch's caching allocator.
//!
//! No `unsafe` reaches callers: the C++ side catches every exception and returns it as a
//! message, which becomes an [`OpsError`].

pub mod autocast;
pub mod error;
mod ffi;
pub mod grad;
pub mod memory;
pub mod prelu;

pub use error::{OpsError, Result};
pub use ffi::take_error;
pub use prelu::prelu;
