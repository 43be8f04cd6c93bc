//! The C API of `cpp/ops.h`. Every function that can fail returns null on success or an error
//! message allocated with `malloc`, which [`take_error`] copies and frees.

use std::ffi::{c_char, c_int, c_longlong, CStr};

use torch_sys::C_tensor;

extern "C" {
    pub fn fr_ops_string_free(s: *mut c_char);
    pub fn fr_autocast_enter(device: c_int, dtype: c_int, state: *mut c_int) -> *mut c_char;
    pub fn fr_autocast_exit(device: c_int, state: *const c_int) -> *mut c_char;
    pub fn fr_grad_reset(t: *mut C_tensor) -> *mut c_char;
    pub fn fr_prelu(x: *mut C_tensor, weight: *mut C_tensor, out: *mut *mut C_tensor) -> *mut c_char;
    pub fn fr_cuda_memory_stats(device: c_int, reset_peak: c_int, stats: *mut c_longlong) -> *mut c_char;
}

/// `Ok` for null, else the message (the string is freed): the Rust side of `cpp/guarded.h`, for
/// this crate's C functions and for other crates' C++ built on that header (facerec-dist).
///
/// # Safety
/// `err` is null or a string returned by a C function that reports errors through
/// `facerec::guarded`, not freed yet.
pub unsafe fn take_error(err: *mut c_char) -> Result<(), String> {
    if err.is_null() {
        return Ok(());
    }
    // SAFETY: non-null strings from ops.cpp are NUL-terminated malloc'd copies.
    let msg = unsafe { CStr::from_ptr(err) }.to_string_lossy().into_owned();
    // SAFETY: freed once, by the allocator that made it.
    unsafe { fr_ops_string_free(err) };
    Err(msg)
}
