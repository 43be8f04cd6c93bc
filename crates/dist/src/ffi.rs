//! The shim's C API (`cpp/shim.h`). Every function that can fail returns null on success or an
//! error message allocated with `malloc` (facerec-ops' `guarded.h`), which [`take_error`]
//! copies and frees.

use std::ffi::{c_char, c_int};

use torch_sys::C_tensor;

/// `fr_reducer`, opaque.
#[repr(C)]
pub struct FrReducer {
    _private: [u8; 0],
}

/// `fr_group`, opaque.
#[repr(C)]
pub struct FrGroup {
    _private: [u8; 0],
}

pub const BACKEND_GLOO: c_int = 0;
pub const BACKEND_NCCL: c_int = 1;

pub const REDUCE_SUM: c_int = 0;
pub const REDUCE_MAX: c_int = 1;

extern "C" {
    pub fn fr_has_nccl() -> c_int;
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
    pub fn fr_all_reduce(g: *mut FrGroup, t: *mut C_tensor, op: c_int) -> *mut c_char;
    pub fn fr_broadcast(g: *mut FrGroup, t: *mut C_tensor, root: c_int) -> *mut c_char;
    pub fn fr_all_gather(g: *mut FrGroup, input: *mut C_tensor, outputs: *mut *mut C_tensor, n: c_int) -> *mut c_char;
    pub fn fr_barrier(g: *mut FrGroup) -> *mut c_char;
    pub fn fr_reducer_new(
        g: *mut FrGroup,
        params: *mut *mut C_tensor,
        n: c_int,
        bucket_bytes: i64,
        first_bucket_bytes: i64,
        out: *mut *mut FrReducer,
    ) -> *mut c_char;
    pub fn fr_reducer_buckets(r: *mut FrReducer) -> c_int;
    pub fn fr_reducer_prepare(r: *mut FrReducer) -> *mut c_char;
    pub fn fr_reducer_finish(r: *mut FrReducer, scale: f64) -> *mut c_char;
    pub fn fr_reducer_free(r: *mut FrReducer);
}

pub use facerec_ops::take_error;
