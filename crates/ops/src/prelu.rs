//! Parametric ReLU with one slope per channel (He et al. 2015): `x` where `x > 0`, else
//! `slope[c] * x`.

use tch::Tensor;

use crate::error::{OpsError, Result};
use crate::ffi;

/// PReLU of `x` (`[N, C, ...]`, channels at dimension 1) with `weight` (`[C]`, or `[1]` for
/// one slope shared by all channels): the same values and gradients as libtorch's `prelu`
/// (`Tensor::prelu`), but when a gradient is needed on contiguous float32 CPU tensors the
/// backward is one fused, vectorised pass that writes the input's gradient and sums the
/// slopes' per (sample, channel) plane: forward and backward of the paper Face-ResNet's 27
/// PReLUs take 2.4x less time than with libtorch's (`cargo bench -p facerec-ops --bench prelu`,
/// `docs/benchmarks.md`). Other dtypes and devices (bf16 autocast, CUDA) take libtorch's
/// backward.
pub fn prelu(x: &Tensor, weight: &Tensor) -> Result<Tensor> {
    let mut out = std::ptr::null_mut();
    // SAFETY: live tensor handles; on success `out` is a new tensor that we own from here on.
    unsafe {
        ffi::take_error(ffi::fr_prelu(x.as_ptr() as *mut _, weight.as_ptr() as *mut _, &mut out)).map_err(OpsError::Op)?;
        Ok(Tensor::from_ptr(out))
    }
}
