//! The shim's C API (`cpp/shim.h`). Every function that can fail returns null on success or an
//! error message allocated with `malloc`, which [`take_error`] copies and frees.

use std::ffi::{c_char, c_int, CStr};

use torch_sys::C_tensor;

/// `fr_group`, opaque.
#[repr(C)]
pub struct FrGroup {
    _private: [u8; 0],
}

pub const BACKEND_GLOO: c_int = 0;
pub const BACKEND_NCCL: c_int = 1;

extern "C" {
    pub fn fr_has_nccl() -> c_int;
    pub fn fr_string_free(s: *mut c_char);
    pub fn fr_group_new(
        master_addr: *const c_char,
        master_port: u16,
        rank: c_int,
        world: c_int,
        timeout_ms: i64,
        kind: c_int,
        device_index: c_int,
        out: *mut *mut FrGroup,
    ) -> *mut c_char;
    pub fn fr_group_free(g: *mut FrGroup);
    pub fn fr_all_reduce_sum(g: *mut FrGroup, t: *mut C_tensor) -> *mut c_char;
    pub fn fr_broadcast(g: *mut FrGroup, t: *mut C_tensor, root: c_int) -> *mut c_char;
    pub fn fr_all_gather(g: *mut FrGroup, input: *mut C_tensor, outputs: *mut *mut C_tensor, n: c_int) -> *mut c_char;
    pub fn fr_barrier(g: *mut FrGroup) -> *mut c_char;
}

/// `Ok` for null, else the message (the string is freed).
///
/// # Safety
/// `err` is null or a string returned by one of the shim's functions, not freed yet.
pub unsafe fn take_error(err: *mut c_char) -> Result<(), String> {
    if err.is_null() {
        return Ok(());
    }
    // SAFETY: non-null strings from the shim are NUL-terminated malloc'd copies.
    let msg = unsafe { CStr::from_ptr(err) }.to_string_lossy().into_owned();
    // SAFETY: freed once, by the allocator that made it.
    unsafe { fr_string_free(err) };
    Err(msg)
}
