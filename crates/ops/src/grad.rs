//! Gradients, as PyTorch's optimisers handle them.

use tch::Tensor;

use crate::error::{OpsError, Result};
use crate::ffi;

/// Drops `t`'s gradient, as `p.grad = None` does in PyTorch (what `optimizer.zero_grad()` does by
/// default): the next backward hands its gradient over instead of adding it into a zeroed
/// buffer, which saves a memset and an addition per parameter and step.
pub fn clear_grad(t: &mut Tensor) -> Result<()> {
    // SAFETY: a live tensor handle; ops.cpp only resets the gradient it holds.
    unsafe { ffi::take_error(ffi::fr_grad_reset(t.as_mut_ptr())) }.map_err(OpsError::Op)
}

#[cfg(test)]
mod tests {
    use tch::{Kind, Tensor};

    #[test]
    fn clear_grad_undefines_and_the_next_backward_stores() {
        let mut w = Tensor::from_slice(&[1.0f32, 2.0]).set_requires_grad(true);
        (&w * 3.0).sum(Kind::Float).backward();
        assert!(w.grad().defined());
        super::clear_grad(&mut w).unwrap();
        assert!(!w.grad().defined());
        (&w * 5.0).sum(Kind::Float).backward();
        assert_eq!(Vec::<f32>::try_from(&w.grad()).unwrap(), vec![5.0, 5.0]);
    }
}
