//! How libtorch's tensors get their memory: [`keep_freed_memory`] for CPU tensors, and
//! [`cuda_memory`], what libtorch's caching allocator holds on a CUDA device.
//!
//! libtorch allocates CPU tensors with the C library's `malloc`. glibc serves every block above
//! 32 MiB with a fresh `mmap` and gives it back with `munmap` when the tensor dies, so a
//! training step that allocates the same large activations and gradients every time pays for
//! every page of them again, in page faults and in the kernel zeroing the page: about 2.4
//! million faults and a tenth of the step for the paper's Face-ResNet at batch 32
//! (docs/benchmarks.md). [`keep_freed_memory`] tells glibc to take all memory from its heap and
//! keep what is freed there, so that the next step reuses pages that are already mapped.

/// Whether the user set one of glibc's own allocator variables, in which case theirs stand.
fn user_tuned_malloc() -> bool {
    ["MALLOC_MMAP_MAX_", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "GLIBC_TUNABLES"]
        .iter()
        .any(|name| std::env::var_os(name).is_some())
}

/// Keeps freed CPU memory mapped for reuse instead of returning it to the kernel (no `mmap`
/// for large blocks, no trimming of the heap below 2 GiB of free space). Call it once, early,
/// in a process that trains or evaluates on the CPU; it is a process-wide setting of the C
/// library. The price is a higher resident size after a peak (about a fifth more for the
/// paper's Face-ResNet), since freed blocks stay in the heap.
///
/// Does nothing, and returns `false`, when the user set `MALLOC_MMAP_MAX_`,
/// `MALLOC_MMAP_THRESHOLD_`, `MALLOC_TRIM_THRESHOLD_` or `GLIBC_TUNABLES` (theirs win; e.g.
/// `MALLOC_MMAP_MAX_=65536` restores glibc's default), or off glibc.
pub fn keep_freed_memory() -> bool {
    if user_tuned_malloc() {
        return false;
    }
    set_malloc_options()
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn set_malloc_options() -> bool {
    // SAFETY: mallopt only changes glibc's allocator parameters; it is safe to call at any
    // time, and blocks that are already mmap'ed are still freed with munmap.
    unsafe { libc::mallopt(libc::M_MMAP_MAX, 0) == 1 && libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX) == 1 }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn set_malloc_options() -> bool {
    false
}

/// What libtorch's CUDA caching allocator holds on one device, in bytes (PyTorch's
/// `torch.cuda.memory_allocated`, `max_memory_allocated`, `memory_reserved` and
/// `max_memory_reserved`). Peaks count from the process start or the last reset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CudaMemory {
    /// Bytes in live tensors now.
    pub allocated: i64,
    /// The most bytes in live tensors at any one time.
    pub peak_allocated: i64,
    /// Bytes the allocator holds from the driver now (live tensors and its cache).
    pub reserved: i64,
    /// The most bytes it held at any one time: what the device must have free.
    pub peak_reserved: i64,
}

/// The caching allocator's figures for CUDA device `index`; with `reset_peak` the peaks then
/// start again from the current figures. An error when libtorch has no CUDA.
pub fn cuda_memory(index: usize, reset_peak: bool) -> crate::Result<CudaMemory> {
    let device = std::ffi::c_int::try_from(index).map_err(|_| crate::OpsError::Op(format!("no CUDA device {index}")))?;
    let mut stats = [0_i64; 4];
    // SAFETY: `stats` has the four 64-bit integers ops.cpp writes; errors come back as owned strings.
    unsafe { crate::ffi::take_error(crate::ffi::fr_cuda_memory_stats(device, std::ffi::c_int::from(reset_peak), stats.as_mut_ptr())) }
        .map_err(crate::OpsError::Op)?;
    let [allocated, peak_allocated, reserved, peak_reserved] = stats;
    Ok(CudaMemory { allocated, peak_allocated, reserved, peak_reserved })
}
