//! Gradient averaging overlapped with the backward pass, as PyTorch's DDP does it: hooks on the
//! parameters (registered through the C++ shim; tch has no gradient hooks) copy each gradient
//! into a bucket as autograd produces it, and a full bucket is all-reduced at once, while the
//! backward pass goes on with the earlier layers. Buckets are filled in reverse parameter order
//! (the order gradients become ready), the first one small (1 MB by default) so that
//! communication starts early, and launched in order, so that every rank issues the same
//! collectives in the same sequence.

use std::ffi::c_int;
use std::ptr::NonNull;

use tch::Tensor;

use crate::error::{DistError, Result};
use crate::ffi;
use crate::group::ProcessGroup;

/// Overlapped gradient all-reduce of a fixed set of parameters over a process group.
///
/// Per backward pass: [`GradReducer::prepare`] before it, [`GradReducer::finish`] after it.
/// Between the two, the parameters' gradients as autograd leaves them are this rank's own;
/// after `finish`, they are `scale` times the sum over the ranks. A parameter that gets no
/// gradient in a pass counts as zeros (and gets the others' gradients), as in DDP.
#[derive(Debug)]
pub struct GradReducer {
    raw: NonNull<ffi::FrReducer>,
    rank: usize,
    world: usize,
}

// SAFETY: the reducer's state is guarded by a mutex in the shim; one thread drives it.
unsafe impl Send for GradReducer {}

impl GradReducer {
    /// Hooks `params` (tensors that require gradients, in the order the model creates them),
    /// bucketed into flat buffers of at most `bucket_bytes` (`first_bucket_bytes` for the first).
    /// The reducer holds the group's backend and may outlive `group`.
    pub fn new(group: &ProcessGroup, params: &[Tensor], bucket_bytes: usize, first_bucket_bytes: usize) -> Result<Self> {
        let bad = |msg: String| DistError::Tensor { rank: group.rank(), op: "gradient reducer", msg };
        let mut handles: Vec<Tensor> = params.iter().map(Tensor::shallow_clone).collect();
        let mut ptrs: Vec<*mut torch_sys::C_tensor> = handles.iter_mut().map(Tensor::as_mut_ptr).collect();
        let n = c_int::try_from(ptrs.len()).map_err(|_| bad("too many parameters".into()))?;
        let bytes = |b: usize| i64::try_from(b).unwrap_or(i64::MAX);
        let mut raw: *mut ffi::FrReducer = std::ptr::null_mut();
        // SAFETY: a live group, `n` live tensor handles, an out-pointer; the shim copies the
        // tensors (their storage is shared, not borrowed).
        let err = unsafe { ffi::fr_reducer_new(group.raw(), ptrs.as_mut_ptr(), n, bytes(bucket_bytes), bytes(first_bucket_bytes), &mut raw) };
        // SAFETY: `err` comes straight from the shim.
        unsafe { ffi::take_error(err) }.map_err(bad)?;
        let raw = NonNull::new(raw).ok_or_else(|| bad("the shim returned no reducer".into()))?;
        Ok(GradReducer { raw, rank: group.rank(), world: group.world_size() })
    }

    /// How many buckets the parameters fill.
    pub fn buckets(&self) -> usize {
        // SAFETY: a live reducer.
        unsafe { ffi::fr_reducer_buckets(self.raw.as_ptr()) as usize }
    }

    /// Arms the hooks for the next backward pass.
    pub fn prepare(&mut self) -> Result<()> {
        // SAFETY: a live reducer.
        let err = unsafe { ffi::fr_reducer_prepare(self.raw.as_ptr()) };
        self.done("gradient all-reduce (prepare)", err)
    }

    /// After the backward pass: all-reduces what is left, waits for every bucket and sets each
    /// parameter's gradient to `scale` times the sum over the ranks.
    pub fn finish(&mut self, scale: f64) -> Result<()> {
        // SAFETY: a live reducer.
        let err = unsafe { ffi::fr_reducer_finish(self.raw.as_ptr(), scale) };
        self.done("all_reduce", err)
    }

    fn done(&self, op: &'static str, err: *mut std::ffi::c_char) -> Result<()> {
        // SAFETY: `err` comes straight from the shim.
        unsafe { ffi::take_error(err) }.map_err(|msg| DistError::Collective { rank: self.rank, world: self.world, op, msg })
    }
}

impl Drop for GradReducer {
    fn drop(&mut self) {
        // SAFETY: created by fr_reducer_new, freed once; removes the hooks.
        unsafe { ffi::fr_reducer_free(self.raw.as_ptr()) }
    }
}
