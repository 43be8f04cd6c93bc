//! The parallel plan of a run: the processes that train it ([`Replicas`]) and, with `[parallel]
//! shard_head`, the variables each of them holds its own classes' rows of (the classifier, the
//! center table). The trainer asks the plan to average, clip, gather and cut; it never
//! branches on sharding itself, so that its step reads as Algorithm 1 whatever the plan.

use tch::{nn, Device, Tensor};

use facerec_dist::{GradReducer, ProcessGroup};
use facerec_losses::{ClassShard, Loss};

use crate::distributed::{Distributed, Replicas, BUCKET_BYTES, FIRST_BUCKET_BYTES};
use crate::error::Result;
use crate::optim::{self, Optimizer};
use crate::config::TrainConfig;

/// Which processes train the run, and which variables hold one rank's rows only.
pub(crate) struct Parallel {
    pub(crate) replicas: Replicas,
    /// This rank's classes, with `[parallel] shard_head`.
    shard: Option<ClassShard>,
    /// The variables that hold this rank's rows only, by name, sorted.
    sharded: Vec<String>,
}

impl Parallel {
    /// The plan of one process training alone (its classifier whole, or a shard of one).
    pub(crate) fn alone(shard: Option<ClassShard>, vs: &nn::VarStore, loss: &dyn Loss) -> Self {
        Parallel { replicas: Replicas::One, shard, sharded: sharded_names(vs, loss) }
    }

    /// The plan of one rank of a data-parallel run over `group`: the replicated parameters'
    /// gradient reducer (overlapped with the backward pass when configured) and the buffers
    /// rank 0 shares after each step.
    pub(crate) fn ranks(
        group: ProcessGroup,
        config: &TrainConfig,
        shard: Option<ClassShard>,
        vs: &nn::VarStore,
        loss: &dyn Loss,
        device: Device,
    ) -> std::result::Result<Self, String> {
        let sharded = sharded_names(vs, loss);
        // The hooks see each backward pass's own gradients: with micro-batches they would
        // average the last one's alone, so accumulation averages after the last backward.
        let reducer = match config.parallel.overlap && config.optim.gradient_accumulation == 1 {
            true => {
                // In the order the model created them (the VarStore's), which the backward pass
                // reverses.
                let params: Vec<Tensor> = vs.trainable_variables().into_iter().filter(|t| !holds_rows(loss, t)).collect();
                let reducer = GradReducer::new(&group, &params, BUCKET_BYTES, FIRST_BUCKET_BYTES)
                    .map_err(|e| format!("hooking the gradients for the overlapped all-reduce: {e}"))?;
                tracing::debug!(buckets = reducer.buckets(), "gradients averaged during the backward pass");
                Some(reducer)
            }
            false => None,
        };
        // Rank 0 shares the non-trainable variables (batch-norm statistics) after each step:
        // all but those the loss keeps in step itself and the sharded ones. By name: every rank
        // must broadcast them in the same order.
        let synced: Vec<_> = loss.synced_state().iter().map(|t| t.data_ptr()).collect();
        let mut buffers: Vec<(String, Tensor)> = vs
            .variables()
            .into_iter()
            .filter(|(k, t)| !t.requires_grad() && !synced.contains(&t.data_ptr()) && !sharded.contains(k))
            .collect();
        buffers.sort_by(|a, b| a.0.cmp(&b.0));
        let buffers = buffers.into_iter().map(|(_, t)| t).collect();
        Ok(Parallel { replicas: Replicas::Many { dist: Distributed::new(group, device), buffers, reducer }, shard, sharded })
    }

    /// Whether the variable `name` (or the optimiser state of such a variable) holds this
    /// rank's rows of a class-sharded table.
    pub(crate) fn is_sharded(&self, name: &str) -> bool {
        let variable = match optim::state_parameter(name) {
            Some(("step", _)) => return false, // a count, not rows
            Some((_, param)) => param,
            None => name,
        };
        self.sharded.iter().any(|s| s == variable)
    }

    /// The tensors of `named` that every rank holds whole (the same on every rank).
    pub(crate) fn replicated(&self, named: Vec<(String, Tensor)>) -> Vec<Tensor> {
        named.into_iter().filter(|(k, _)| !self.is_sharded(k)).map(|(_, t)| t).collect()
    }

    /// Averages the replicated parameters' gradients over the ranks; a sharded table's
    /// gradients are its rows' own.
    pub(crate) fn average_gradients(&mut self, optimizer: &Optimizer, step: usize) -> Result<()> {
        let grads: Vec<Tensor> = optimizer.params().filter(|(k, _)| !self.is_sharded(k)).map(|(_, p)| p.grad()).filter(Tensor::defined).collect();
        self.replicas.average_gradients(&grads, step)
    }

    /// The global norm of the gradients of the parameters `within` selects, those gradients
    /// scaled down to `max` when the norm exceeds it. The squares of a sharded table's rows are
    /// summed over the ranks, so that every rank sees the norm one process would.
    pub(crate) fn clip_gradients(
        &self,
        optimizer: &mut Optimizer,
        max: Option<f64>,
        within: impl Fn(&str) -> bool + Copy,
        step: usize,
    ) -> Result<f64> {
        if self.sharded.is_empty() {
            return optimizer.clip_grad_norm(max, within);
        }
        let (replicated, own) = optimizer.grad_square_sums(within, |name| self.is_sharded(name))?;
        let norm = (replicated + self.replicas.sum(own, step, "summing the sharded gradient norms")?).sqrt();
        if let Some(max) = max.filter(|&m| norm > m) {
            optimizer.scale_grads(max / (norm + 1e-6), within)?;
        }
        Ok(norm)
    }

    /// Whether `flag` is set on any rank holding a part of the model that differs between the
    /// ranks (a shard), else on this one: a check of the weights that every rank must agree on.
    pub(crate) fn on_any_shard(&self, flag: bool, step: usize, what: &'static str) -> Result<bool> {
        match self.sharded.is_empty() {
            true => Ok(flag),
            false => Ok(self.replicas.sum(f64::from(u8::from(flag)), step, what)? > 0.0),
        }
    }

    /// `named` with each class-sharded table replaced by the whole table on rank 0 (gathered
    /// from every rank; the other ranks keep their rows).
    pub(crate) fn whole_tables(&self, named: Vec<(String, Tensor)>, step: usize) -> Result<Vec<(String, Tensor)>> {
        let Some(shard) = self.shard.filter(|s| s.world > 1) else { return Ok(named) };
        let counts: Vec<i64> = (0..shard.world).map(|r| ClassShard::rows(shard.num_classes, r, shard.world)).map(|r| r.end - r.start).collect();
        let mut out = Vec::with_capacity(named.len());
        for (name, t) in named {
            let whole = match self.is_sharded(&name) {
                true => self.replicas.gather_rows(&t, &counts, step)?,
                false => None,
            };
            out.push((name, whole.unwrap_or(t)));
        }
        Ok(out)
    }

    /// `named` (a checkpoint's whole tables) with each class-sharded table cut to this rank's
    /// rows.
    pub(crate) fn my_rows(&self, named: Vec<(String, Tensor)>) -> std::result::Result<Vec<(String, Tensor)>, String> {
        let Some(shard) = self.shard else { return Ok(named) };
        named
            .into_iter()
            .map(|(name, t)| {
                if !self.is_sharded(&name) {
                    return Ok((name, t));
                }
                let rows = t.size().first().copied().unwrap_or(0);
                if rows != shard.num_classes {
                    return Err(format!("{name} has {rows} rows, one per class, but the training data has {} classes", shard.num_classes));
                }
                Ok((name, t.narrow(0, shard.start, shard.len())))
            })
            .collect()
    }
}

/// Whether `t` is one of the variables `loss` holds this rank's rows of only.
fn holds_rows(loss: &dyn Loss, t: &Tensor) -> bool {
    loss.sharded_variables().iter().any(|v| v.data_ptr() == t.data_ptr())
}

/// The names of the variables `loss` holds this rank's rows of only, sorted.
fn sharded_names(vs: &nn::VarStore, loss: &dyn Loss) -> Vec<String> {
    let mut sharded: Vec<String> = vs.variables().into_iter().filter(|(_, t)| holds_rows(loss, t)).map(|(k, _)| k).collect();
    sharded.sort();
    sharded
}
