//! Data-parallel training over a [`facerec_dist::ProcessGroup`]: every rank holds the whole
//! model and trains on its slice of each global batch; these functions keep the ranks
//! identical. What is synchronised, and how (see also `docs/distributed.md`):
//!
//! - **At the start of `fit`** (after any resume): the ranks compare their training state
//!   (step, position in the epoch, config, data size, momentum buffers present) and fail
//!   together if they differ; then rank 0's model variables (center table included) and
//!   momentum buffers are broadcast.
//! - **Each step**: the step's loss numbers (and the stop flag) are summed, so every rank
//!   logs, checks for divergence and stops at the same step; gradients are averaged, flattened
//!   into buckets of at most [`BUCKET_BYTES`] (one all-reduce per bucket, not per tensor); the
//!   center update of Eq. 4 runs on every rank on the features and labels of the whole global
//!   batch (all-gathered: O(world x batch x dim) bytes, never the O(classes x dim) table), and
//!   the rows it touched are then broadcast from rank 0, so that the tables stay bit-identical
//!   even where the update is not deterministic (CUDA's `index_add_`); other non-trainable
//!   buffers (batch-norm statistics) are broadcast from rank 0, as PyTorch DDP does.
//! - Files (checkpoints, metrics, the exported model) are written by rank 0 alone; a
//!   checkpoint holds global state only, so any world size resumes it.

use std::ops::Range;

use tch::{Device, Tensor};

use facerec_dist::{DistError, GradReducer, ProcessGroup, ReduceOp};

use facerec_losses::{LossError, Ranks, Reduce};

use crate::error::{Result, TrainError};

/// Gradient bucket size: PyTorch DDP's default `bucket_cap_mb = 25`.
pub const BUCKET_BYTES: usize = 25 << 20;

/// The first bucket of the overlapped averaging: DDP's default `first_bucket_cap_mb = 1`, so
/// that communication starts as soon as the last layers' gradients are in.
pub const FIRST_BUCKET_BYTES: usize = 1 << 20;

/// The per-rank batch for a global batch, or why the world cannot split it.
pub fn per_rank_batch(global: usize, world: usize) -> std::result::Result<usize, String> {
    if world == 0 || !global.is_multiple_of(world) {
        return Err(format!(
            "optim.batch_size {global} (the global batch over all processes) is not divisible by the \
             world size {world}: choose a multiple of {world}"
        ));
    }
    Ok(global / world)
}

/// Groups consecutive tensors of one kind and device into buckets of at most `cap` bytes (a
/// tensor larger than `cap` is a bucket of its own).
pub fn buckets(tensors: &[Tensor], cap: usize) -> Vec<Range<usize>> {
    let mut out: Vec<Range<usize>> = Vec::new();
    let mut bytes = 0;
    for (i, t) in tensors.iter().enumerate() {
        let size = t.numel() * t.kind().elt_size_in_bytes();
        let joins = out.last().is_some_and(|last| {
            let first = &tensors[last.start];
            first.kind() == t.kind() && first.device() == t.device() && bytes + size <= cap
        });
        match out.last_mut() {
            Some(last) if joins => {
                last.end = i + 1;
                bytes += size;
            }
            _ => {
                out.push(i..i + 1);
                bytes = size;
            }
        }
    }
    out
}

/// The process group of a data-parallel run, with what the trainer needs from it.
#[derive(Debug)]
pub struct Distributed {
    group: ProcessGroup,
    /// Where the collectives' own tensors live (the backend's device: CPU for Gloo, this
    /// rank's GPU for NCCL).
    device: Device,
}

impl Distributed {
    pub fn new(group: ProcessGroup, device: Device) -> Self {
        Distributed { group, device }
    }

    pub fn rank(&self) -> usize {
        self.group.rank()
    }

    pub fn world(&self) -> usize {
        self.group.world_size()
    }

    pub fn is_main(&self) -> bool {
        self.group.is_main()
    }

    pub(crate) fn err(&self, step: usize, what: &'static str) -> impl FnOnce(DistError) -> TrainError {
        move |error| TrainError::Distributed { step, what, error: Box::new(error) }
    }

    /// Sums `tensors` over the ranks in place and multiplies them by `scale` (`1 / world`
    /// averages), one all-reduce per bucket.
    pub fn all_reduce_flat(&self, tensors: &[Tensor], scale: f64, step: usize, what: &'static str) -> Result<()> {
        self.flat(tensors, Some(scale), |t| self.group.all_reduce(t).map_err(self.err(step, what)))
    }

    /// Replaces `tensors` with rank 0's, one broadcast per bucket.
    pub fn broadcast_flat(&self, tensors: &[Tensor], step: usize, what: &'static str) -> Result<()> {
        self.flat(tensors, None, |t| self.group.broadcast(t, 0).map_err(self.err(step, what)))
    }

    fn flat(&self, tensors: &[Tensor], scale: Option<f64>, op: impl Fn(&mut Tensor) -> Result<()>) -> Result<()> {
        let _guard = tch::no_grad_guard();
        for range in buckets(tensors, BUCKET_BYTES) {
            let members = &tensors[range];
            if let [only] = members {
                if only.is_contiguous() {
                    // A lone contiguous tensor needs no staging buffer.
                    let mut t = only.shallow_clone();
                    op(&mut t)?;
                    if let Some(s) = scale.filter(|&s| s != 1.0) {
                        let _ = t.f_mul_scalar_(s)?;
                    }
                    continue;
                }
            }
            let views = members.iter().map(|t| t.f_reshape([-1])).collect::<std::result::Result<Vec<_>, _>>()?;
            let mut flat = Tensor::f_cat(&views, 0)?;
            op(&mut flat)?;
            if let Some(s) = scale.filter(|&s| s != 1.0) {
                let _ = flat.f_mul_scalar_(s)?;
            }
            let mut offset = 0;
            for t in members {
                let n = t.numel() as i64;
                let mut dst = t.shallow_clone();
                dst.f_copy_(&flat.f_narrow(0, offset, n)?.f_view_as(t)?)?;
                offset += n;
            }
        }
        Ok(())
    }

    /// Every rank's `features` and `labels` concatenated in rank order: the global batch, in
    /// the order one process with the global batch size would hold it.
    pub fn gather_batch(&self, features: &Tensor, labels: &Tensor, step: usize) -> Result<(Tensor, Tensor)> {
        let features = self.group.all_gather(&features.f_contiguous()?).map_err(self.err(step, "gathering the center-loss features"))?;
        let labels = self.group.all_gather(&labels.f_contiguous()?).map_err(self.err(step, "gathering the center-loss labels"))?;
        Ok((Tensor::f_cat(&features, 0)?, Tensor::f_cat(&labels, 0)?))
    }

    /// Copies rank 0's `rows` of `table` to every rank (the center rows a step touched).
    pub fn broadcast_rows(&self, table: &Tensor, rows: &Tensor, step: usize) -> Result<()> {
        let _guard = tch::no_grad_guard();
        let mut block = table.f_index_select(0, rows)?.f_contiguous()?;
        self.group.broadcast(&mut block, 0).map_err(self.err(step, "broadcasting the updated centers"))?;
        let mut table = table.shallow_clone();
        let _ = table.f_index_copy_(0, rows, &block)?;
        Ok(())
    }

    /// Replaces `t` with the element-wise sum or maximum over the ranks.
    pub fn all_reduce(&self, t: &Tensor, op: ReduceOp, step: usize, what: &'static str) -> Result<()> {
        self.group.all_reduce_op(&mut t.shallow_clone(), op).map_err(self.err(step, what))
    }

    /// Every rank's `rows` (rank r's has `counts[r]` rows, the same trailing shape), in rank
    /// order, on rank 0 (on the CPU); `None` on the other ranks. One broadcast per rank, so
    /// the other ranks hold one rank's rows at a time, never the whole table.
    pub fn gather_rows(&self, rows: &Tensor, counts: &[i64], step: usize) -> Result<Option<Tensor>> {
        let _guard = tch::no_grad_guard();
        let mut shape = rows.size();
        let mut parts = Vec::new();
        for (r, &n) in counts.iter().enumerate() {
            shape[0] = n;
            let mut part = if r == self.rank() { rows.f_contiguous()? } else { Tensor::f_empty(shape.as_slice(), (rows.kind(), rows.device()))? };
            self.group.broadcast(&mut part, r).map_err(self.err(step, "gathering the sharded classifier for a checkpoint"))?;
            if self.is_main() {
                parts.push(part.f_to_device(Device::Cpu)?);
            }
        }
        Ok(if self.is_main() { Some(Tensor::f_cat(&parts, 0)?) } else { None })
    }

    /// Fails on every rank, naming the ranks that differ, unless all ranks pass equal
    /// `values` (described by `names`).
    pub fn check_same(&self, names: &[&str], values: &[i64], step: usize) -> Result<()> {
        let mine = Tensor::f_from_slice(values)?.f_to_device(self.device)?;
        let all = self.group.all_gather(&mine).map_err(self.err(step, "comparing the ranks' training state"))?;
        let all: Vec<Vec<i64>> =
            all.iter().map(|t| Vec::<i64>::try_from(&t.f_to_device(Device::Cpu)?)).collect::<std::result::Result<_, _>>()?;
        let mut differences = Vec::new();
        for (r, theirs) in all.iter().enumerate().skip(1) {
            for ((name, a), b) in names.iter().zip(&all[0]).zip(theirs) {
                if a != b {
                    differences.push(format!("{name}: rank 0 has {a}, rank {r} has {b}"));
                }
            }
        }
        if differences.is_empty() {
            Ok(())
        } else {
            Err(TrainError::RanksDiffer { rank: self.rank(), differences: differences.join("; ") })
        }
    }

    /// Waits for every rank.
    pub fn barrier(&self, step: usize) -> Result<()> {
        self.group.barrier().map_err(self.err(step, "waiting for the other ranks to finish"))
    }
}

/// The processes that train one model together: this one alone, or the ranks of a process
/// group. The trainer calls every hook unconditionally; with one process each is a no-op.
#[derive(Debug)]
pub enum Replicas {
    One,
    Many {
        dist: Distributed,
        /// The non-trainable variables rank 0 shares after each step (batch-norm statistics:
        /// all but those the loss keeps in step itself).
        buffers: Vec<Tensor>,
        /// With `[parallel] overlap`: the gradients averaged during the backward pass.
        reducer: Option<GradReducer>,
    },
}

impl Replicas {
    pub fn world(&self) -> usize {
        match self {
            Replicas::One => 1,
            Replicas::Many { dist, .. } => dist.world(),
        }
    }

    pub fn rank(&self) -> usize {
        match self {
            Replicas::One => 0,
            Replicas::Many { dist, .. } => dist.rank(),
        }
    }

    /// Whether this process writes the run's files.
    pub fn is_main(&self) -> bool {
        self.rank() == 0
    }

    /// At the start of `fit`: fails unless every rank has the same `facts`, then gives every
    /// rank rank 0's model variables and momentum buffers.
    pub fn start(&self, facts: &[(&str, i64)], vars: &[Tensor], momentum: &[Tensor], step: usize) -> Result<()> {
        let Replicas::Many { dist, .. } = self else { return Ok(()) };
        let (names, values): (Vec<&str>, Vec<i64>) = facts.iter().copied().unzip();
        dist.check_same(&names, &values, step)?;
        dist.broadcast_flat(vars, step, "broadcasting rank 0's model")?;
        dist.broadcast_flat(momentum, step, "broadcasting rank 0's momentum buffers")
    }

    /// Sums the step's numbers (losses, correct count, stop flags) over the ranks, in place.
    pub fn sum_numbers(&self, numbers: &Tensor, step: usize) -> Result<()> {
        let Replicas::Many { dist, .. } = self else { return Ok(()) };
        dist.all_reduce_flat(std::slice::from_ref(numbers), 1.0, step, "summing the losses over the ranks")
    }

    /// Before the backward pass: arms the overlapped averaging, if any.
    pub fn before_backward(&mut self, step: usize) -> Result<()> {
        match self {
            Replicas::Many { dist, reducer: Some(r), .. } => r.prepare().map_err(dist.err(step, "averaging the gradients")),
            _ => Ok(()),
        }
    }

    /// After the backward pass: averages the gradients `grads` over the ranks, in place (with
    /// the overlap, waits for the buckets the backward pass started and writes them back).
    pub fn average_gradients(&mut self, grads: &[Tensor], step: usize) -> Result<()> {
        match self {
            Replicas::One => Ok(()),
            Replicas::Many { dist, reducer: Some(r), .. } => r.finish(1.0 / dist.world() as f64).map_err(dist.err(step, "averaging the gradients")),
            Replicas::Many { dist, reducer: None, .. } => dist.all_reduce_flat(grads, 1.0 / dist.world() as f64, step, "averaging the gradients"),
        }
    }

    /// After the optimiser's step: every rank gets rank 0's buffers.
    pub fn share_buffers(&self, step: usize) -> Result<()> {
        match self {
            Replicas::Many { dist, buffers, .. } if !buffers.is_empty() => {
                dist.broadcast_flat(buffers, step, "broadcasting rank 0's buffers")
            }
            _ => Ok(()),
        }
    }

    /// Waits for every rank.
    pub fn barrier(&self, step: usize) -> Result<()> {
        let Replicas::Many { dist, .. } = self else { return Ok(()) };
        dist.barrier(step)
    }

    /// The sum of `value` over the ranks.
    pub fn sum(&self, value: f64, step: usize, what: &'static str) -> Result<f64> {
        let Replicas::Many { dist, .. } = self else { return Ok(value) };
        let t = Tensor::from_slice(&[value]).f_to_device(dist.device)?;
        dist.all_reduce(&t, ReduceOp::Sum, step, what)?;
        Ok(f64::try_from(&t.f_to_device(Device::Cpu)?)?)
    }

    /// A class-sharded table whole, on rank 0 (see [`Distributed::gather_rows`]); `None` on
    /// the other ranks. With one process, the table itself.
    pub fn gather_rows(&self, rows: &Tensor, counts: &[i64], step: usize) -> Result<Option<Tensor>> {
        match self {
            Replicas::One => Ok(Some(rows.shallow_clone())),
            Replicas::Many { dist, .. } => dist.gather_rows(rows, counts, step),
        }
    }

    /// The ranks as the loss's `after_step` sees them, at `step`.
    pub fn for_loss(&self, step: usize) -> LossRanks<'_> {
        LossRanks { replicas: self, step }
    }
}

/// [`Replicas`] as a loss sees them ([`Ranks`]).
pub struct LossRanks<'a> {
    replicas: &'a Replicas,
    step: usize,
}

impl Ranks for LossRanks<'_> {
    fn world(&self) -> usize {
        self.replicas.world()
    }

    fn rank(&self) -> usize {
        self.replicas.rank()
    }

    fn gather_batch(&self, features: &Tensor, labels: &Tensor) -> facerec_losses::Result<(Tensor, Tensor)> {
        match self.replicas {
            Replicas::One => Ok((features.shallow_clone(), labels.shallow_clone())),
            Replicas::Many { dist, .. } => dist.gather_batch(features, labels, self.step).map_err(|e| LossError::Ranks(e.to_string())),
        }
    }

    fn broadcast_rows(&self, table: &Tensor, rows: &Tensor) -> facerec_losses::Result<()> {
        match self.replicas {
            Replicas::One => Ok(()),
            Replicas::Many { dist, .. } => dist.broadcast_rows(table, rows, self.step).map_err(|e| LossError::Ranks(e.to_string())),
        }
    }

    fn all_reduce(&self, t: &Tensor, op: Reduce) -> facerec_losses::Result<()> {
        let op = match op {
            Reduce::Sum => ReduceOp::Sum,
            Reduce::Max => ReduceOp::Max,
        };
        match self.replicas {
            Replicas::One => Ok(()),
            Replicas::Many { dist, .. } => {
                dist.all_reduce(t, op, self.step, "reducing the sharded softmax").map_err(|e| LossError::Ranks(e.to_string()))
            }
        }
    }

    fn step(&self) -> usize {
        self.step
    }
}

#[cfg(test)]
mod tests {
    use tch::{Device, Kind};

    use super::*;

    #[test]
    fn buckets_respect_the_cap_kind_and_order() {
        let f = |n: i64| Tensor::zeros([n], (Kind::Float, Device::Cpu));
        let d = |n: i64| Tensor::zeros([n], (Kind::Double, Device::Cpu));
        // 4-byte floats: 10 + 10 fit in 80 bytes, the third does not; a double starts a new one;
        // a tensor over the cap is alone.
        let ts = [f(10), f(10), f(5), d(2), d(2), f(100), f(1)];
        assert_eq!(buckets(&ts, 80), vec![0..2, 2..3, 3..5, 5..6, 6..7]);
        assert_eq!(buckets(&ts[..3], 1 << 20), vec![0..3]);
        assert!(buckets(&[], 80).is_empty());
    }

    #[test]
    fn per_rank_batch_needs_a_multiple_of_the_world() {
        assert_eq!(per_rank_batch(64, 2), Ok(32));
        let err = per_rank_batch(30, 4).unwrap_err();
        assert!(err.contains("optim.batch_size 30") && err.contains("world size 4"), "{err}");
    }
}
