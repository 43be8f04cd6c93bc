//! A c10d process group behind a safe handle: rendezvous through a `TCPStore` hosted by rank 0,
//! then `ProcessGroupGloo` (CPU tensors) or `ProcessGroupNCCL` (CUDA tensors). Every collective
//! blocks until it is done on this rank, or fails after the group's timeout; errors, including
//! a peer that died, come back as [`DistError`], never as a hang or a panic.

use std::ffi::{c_int, CString};
use std::ptr::NonNull;
use std::time::Duration;

use tch::{Device, Tensor};

use crate::config::DistConfig;
use crate::error::{DistError, Result};
use crate::ffi;

/// Which c10d backend carries the collectives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// `ProcessGroupGloo`: CPU tensors, TCP.
    Gloo,
    /// `ProcessGroupNCCL`: CUDA tensors, NVLink / PCIe / InfiniBand.
    Nccl,
}

impl Backend {
    /// The backend for tensors on `device`, as PyTorch chooses: NCCL for CUDA, Gloo otherwise.
    pub fn for_device(device: Device) -> Self {
        if device.is_cuda() {
            Backend::Nccl
        } else {
            Backend::Gloo
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Backend::Gloo => "gloo",
            Backend::Nccl => "nccl",
        }
    }

    fn accepts(self, device: Device) -> bool {
        match self {
            Backend::Gloo => device == Device::Cpu,
            Backend::Nccl => device.is_cuda(),
        }
    }
}

/// How [`ProcessGroup::all_reduce_op`] combines the ranks' tensors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReduceOp {
    Sum,
    Max,
}

/// Whether this build has ProcessGroupNCCL (it needs NCCL's and CUDA's headers at build time).
pub fn nccl_compiled() -> bool {
    // SAFETY: a constant query without arguments.
    unsafe { ffi::fr_has_nccl() != 0 }
}

/// One process's membership of a process group.
///
/// Collectives must be called in the same order with tensors of the same shape and type on
/// every rank. The handle is `Send` but not `Sync`: one thread issues a group's collectives.
#[derive(Debug)]
pub struct ProcessGroup {
    raw: NonNull<ffi::FrGroup>,
    rank: usize,
    world: usize,
    backend: Backend,
    timeout: Duration,
}

// SAFETY: c10d's store and backends may be used from any thread; `ProcessGroup` is not `Sync`,
// so one thread at a time issues collectives.
unsafe impl Send for ProcessGroup {}

impl ProcessGroup {
    /// Joins the group described by `config` (rank 0 hosts the TCPStore at `master_addr:
    /// master_port`); returns once all `world_size` ranks have connected, or fails after
    /// `config.timeout`.
    pub fn new(config: &DistConfig, backend: Backend) -> Result<Self> {
        let rendezvous = |msg: String| DistError::Rendezvous {
            rank: config.rank,
            world: config.world_size,
            addr: config.master_addr.clone(),
            port: config.master_port,
            backend: backend.name(),
            timeout: config.timeout,
            msg,
        };
        if backend == Backend::Nccl {
            if !nccl_compiled() {
                return Err(DistError::NcclUnavailable);
            }
            let gpus = tch::Cuda::device_count();
            if config.local_rank as i64 >= gpus {
                return Err(rendezvous(format!(
                    "NCCL needs CUDA device {} (the local rank), but libtorch sees {gpus} CUDA device(s)",
                    config.local_rank
                )));
            }
        }
        let addr = CString::new(config.master_addr.clone()).map_err(|_| rendezvous("MASTER_ADDR holds a NUL byte".into()))?;
        let to_int = |n: usize, what: &str| c_int::try_from(n).map_err(|_| rendezvous(format!("{what} {n} is too large")));
        let (rank, world, device) =
            (to_int(config.rank, "rank")?, to_int(config.world_size, "world size")?, to_int(config.local_rank, "local rank")?);
        let kind = match backend {
            Backend::Gloo => ffi::BACKEND_GLOO,
            Backend::Nccl => ffi::BACKEND_NCCL,
        };
        let timeout_ms = i64::try_from(config.timeout.as_millis()).unwrap_or(i64::MAX).max(1);
        let mut raw: *mut ffi::FrGroup = std::ptr::null_mut();
        tracing::debug!(rank, world, backend = backend.name(), "joining {}:{}", config.master_addr, config.master_port);
        // SAFETY: valid C string and out-pointer; the shim catches every C++ exception.
        let err = unsafe { ffi::fr_group_new(addr.as_ptr(), config.master_port, rank, world, timeout_ms, kind, device, &mut raw) };
        // SAFETY: `err` comes straight from the shim.
        unsafe { ffi::take_error(err) }.map_err(rendezvous)?;
        let raw = NonNull::new(raw).ok_or_else(|| rendezvous("the shim returned no group".into()))?;
        Ok(ProcessGroup { raw, rank: config.rank, world: config.world_size, backend, timeout: config.timeout })
    }

    pub fn rank(&self) -> usize {
        self.rank
    }

    pub(crate) fn raw(&self) -> *mut ffi::FrGroup {
        self.raw.as_ptr()
    }

    pub fn world_size(&self) -> usize {
        self.world
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Whether this is rank 0 (the one that writes files).
    pub fn is_main(&self) -> bool {
        self.rank == 0
    }

    /// Replaces `tensor` with the element-wise sum of every rank's `tensor`.
    pub fn all_reduce(&self, tensor: &mut Tensor) -> Result<()> {
        self.all_reduce_op(tensor, ReduceOp::Sum)
    }

    /// Replaces `tensor` with the element-wise `op` (sum or maximum) of every rank's `tensor`.
    pub fn all_reduce_op(&self, tensor: &mut Tensor, op: ReduceOp) -> Result<()> {
        self.check("all_reduce", tensor)?;
        let op = match op {
            ReduceOp::Sum => ffi::REDUCE_SUM,
            ReduceOp::Max => ffi::REDUCE_MAX,
        };
        // SAFETY: a live group and a live, checked tensor handle.
        let err = unsafe { ffi::fr_all_reduce(self.raw.as_ptr(), tensor.as_mut_ptr(), op) };
        self.done("all_reduce", err)
    }

    /// Replaces `tensor` on every rank with rank `root`'s `tensor`.
    pub fn broadcast(&self, tensor: &mut Tensor, root: usize) -> Result<()> {
        self.check("broadcast", tensor)?;
        let root = c_int::try_from(root).ok().filter(|&r| (r as usize) < self.world).ok_or_else(|| DistError::Tensor {
            rank: self.rank,
            op: "broadcast",
            msg: format!("root {root} is not a rank of a world of {}", self.world),
        })?;
        // SAFETY: as in `all_reduce`.
        let err = unsafe { ffi::fr_broadcast(self.raw.as_ptr(), tensor.as_mut_ptr(), root) };
        self.done("broadcast", err)
    }

    /// Every rank's `tensor`, in rank order (this rank's own included). All ranks must pass
    /// tensors of the same shape and type.
    pub fn all_gather(&self, tensor: &Tensor) -> Result<Vec<Tensor>> {
        self.check("all_gather", tensor)?;
        let torch = |e: tch::TchError| DistError::Tensor { rank: self.rank, op: "all_gather", msg: e.to_string() };
        let mut input = tensor.shallow_clone();
        let mut outputs = (0..self.world).map(|_| tensor.f_empty_like()).collect::<Result<Vec<_>, _>>().map_err(torch)?;
        let mut ptrs: Vec<*mut torch_sys::C_tensor> = outputs.iter_mut().map(Tensor::as_mut_ptr).collect();
        let n = c_int::try_from(ptrs.len()).map_err(|_| DistError::Tensor { rank: self.rank, op: "all_gather", msg: "world too large".into() })?;
        // SAFETY: `ptrs` holds `n` live tensor handles owned by `outputs`, alive for the call.
        let err = unsafe { ffi::fr_all_gather(self.raw.as_ptr(), input.as_mut_ptr(), ptrs.as_mut_ptr(), n) };
        self.done("all_gather", err)?;
        Ok(outputs)
    }

    /// Returns once every rank has called `barrier`.
    pub fn barrier(&self) -> Result<()> {
        // SAFETY: a live group.
        let err = unsafe { ffi::fr_barrier(self.raw.as_ptr()) };
        self.done("barrier", err)
    }

    fn check(&self, op: &'static str, t: &Tensor) -> Result<()> {
        let bad = |msg: String| Err(DistError::Tensor { rank: self.rank, op, msg });
        if !t.defined() {
            return bad("the tensor is undefined".into());
        }
        if !self.backend.accepts(t.device()) {
            return bad(format!("{} takes {} tensors, got one on {:?}", self.backend.name(), match self.backend {
                Backend::Gloo => "CPU",
                Backend::Nccl => "CUDA",
            }, t.device()));
        }
        if !t.is_contiguous() {
            return bad("the tensor is not contiguous (call .contiguous() first)".into());
        }
        Ok(())
    }

    fn done(&self, op: &'static str, err: *mut std::ffi::c_char) -> Result<()> {
        // SAFETY: `err` comes straight from the shim.
        unsafe { ffi::take_error(err) }.map_err(|msg| DistError::Collective { rank: self.rank, world: self.world, op, msg })
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        // SAFETY: created by fr_group_new, freed once.
        unsafe { ffi::fr_group_free(self.raw.as_ptr()) }
    }
}
