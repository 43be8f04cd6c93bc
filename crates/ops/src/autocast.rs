//! Mixed precision: libtorch's autocast on the CPU or on CUDA, in bfloat16, through `cpp/ops.cpp`
//! (tch only switches CUDA autocast on, in float16). Inside [`bf16`], matrix multiplies and
//! convolutions run in bfloat16 while precision-sensitive ops (softmax, losses, reductions)
//! stay in float32, as `torch.autocast(device_type, dtype=torch.bfloat16)` does in PyTorch.

use std::ffi::c_int;

use tch::Device;

use crate::error::{OpsError, Result};
use crate::ffi;

/// Runs `f` with bfloat16 autocast on `device`'s type (the previous setting is restored after,
/// also when `f` panics).
pub fn bf16<T>(device: Device, f: impl FnOnce() -> T) -> Result<T> {
    let _guard = Guard::enter(device)?;
    Ok(f())
}

struct Guard {
    device: c_int,
    state: [c_int; 2],
}

impl Guard {
    fn enter(device: Device) -> Result<Self> {
        let device = c_int::from(device.is_cuda());
        let mut state = [0; 2];
        // SAFETY: `state` has the two ints ops.cpp writes; errors come back as owned strings.
        unsafe { ffi::take_error(ffi::fr_autocast_enter(device, 0, state.as_mut_ptr())) }
            .map_err(OpsError::Autocast)?;
        Ok(Guard { device, state })
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        // SAFETY: restores what `enter` saved; ops.cpp does not keep the pointer.
        if let Err(msg) =
            unsafe { ffi::take_error(ffi::fr_autocast_exit(self.device, self.state.as_ptr())) }
        {
            tracing::error!("leaving autocast: {msg}");
        }
    }
}

#[cfg(test)]
mod tests {
    use tch::{Kind, Tensor};

    #[test]
    fn matmuls_run_in_bf16_inside_and_f32_outside() {
        let a = Tensor::ones([4, 4], (Kind::Float, tch::Device::Cpu));
        let inside = super::bf16(tch::Device::Cpu, || {
            (a.matmul(&a), a.log_softmax(1, Kind::Float))
        })
        .unwrap();
        assert_eq!(inside.0.kind(), Kind::BFloat16);
        assert_eq!(inside.1.kind(), Kind::Float);
        assert_eq!(
            a.matmul(&a).kind(),
            Kind::Float,
            "autocast must be off again after the closure"
        );
        // Nested use restores the outer state.
        let nested = super::bf16(tch::Device::Cpu, || {
            super::bf16(tch::Device::Cpu, || ()).unwrap();
            a.matmul(&a).kind()
        })
        .unwrap();
        assert_eq!(nested, Kind::BFloat16);
    }
}
