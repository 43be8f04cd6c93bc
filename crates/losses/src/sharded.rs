//! Class-sharded classification losses: model parallelism over the classes, for training with
//! hundreds of thousands to millions of identities (`[parallel] shard_head = true`;
//! `docs/distributed.md`).
//!
//! Each of N ranks holds a contiguous range of the classes (a [`ClassShard`], split as
//! arcface_torch's `PartialFC_V2` splits them: `C / N` each, one more for the first `C % N`
//! ranks) of the classifier, of its momentum and of the center table. A step:
//!
//! 1. the ranks' features and labels are all-gathered: every rank sees the global batch `X`;
//! 2. each rank computes the logits of its classes, `[global batch, classes of the shard]`,
//!    with the margin (CosFace, ArcFace, ...) on the target logit where it owns the label;
//! 3. the softmax cross-entropy is computed exactly across the shards: the rows' maxima are
//!    all-reduced (max), then the sums of `exp(logit - max)` and the target logits
//!    (sum); its gradient with respect to the logits, `softmax - onehot`, is local;
//! 4. the center term is computed by the rank that owns each sample's class, on the gathered
//!    features (the value all-reduced with the sums above);
//! 5. each rank back-propagates its part to `X` (a local autograd pass), the `[global batch,
//!    dim]` feature gradients are all-reduced, and each rank keeps the rows of its own samples,
//!    which the trainer's backward pass carries into the backbone;
//! 6. after the step, Eq. 4 moves the centers of the classes each rank owns, from the gathered
//!    batch: no rank ever holds more than its own rows.
//!
//! Every rank's objective is the loss of the whole global batch, and its backbone gradient is
//! `world` times the gradient with respect to its own samples, so that the trainer's averaging
//! of backbone gradients over the ranks gives the global batch's gradient; the sharded
//! variables' gradients are those of the global loss and are not averaged. With one rank
//! (`world = 1`) the same code computes the unsharded loss.
//!
//! **Partial FC** ([`Sampling`], An et al., "Partial FC", ICCVW 2021): with a sample rate
//! `r < 1` each rank uses, at each step, the classes of its shard that are labels of the
//! global batch plus a random sample of its other classes, `max(positives, floor(r * shard))`
//! classes in all (arcface_torch's count), seeded by `(seed, step, rank)`. The softmax then runs over the sampled
//! classes only (an approximation, by design); unsampled rows get a zero gradient (they still
//! move by their momentum and weight decay, as any SGD parameter with a zero gradient does).
//! The training accuracy is then the accuracy among the sampled classes.

use std::ops::Range;
use std::sync::Arc;

use tch::{nn, Device, Kind, Tensor};

use crate::center::CenterLoss;
use crate::error::{LossError, Result};
use crate::loss::{Loss, LossOutput, OneProcess, Ranks, Reduce, SolverStep, Term};
use crate::margin::unit_rows;
use crate::softmax::check_labels;

/// The classes one rank holds of a class-sharded classifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClassShard {
    /// All classes, over all ranks.
    pub num_classes: i64,
    pub rank: usize,
    pub world: usize,
    /// This rank's classes are `start..end`.
    pub start: i64,
    pub end: i64,
}

impl ClassShard {
    /// Rank `rank`'s classes of `num_classes` split over `world` ranks ([`ClassShard::rows`]);
    /// every rank must get at least one class.
    pub fn new(num_classes: i64, rank: usize, world: usize) -> Result<Self> {
        if rank >= world {
            return Err(LossError::Config(format!("rank {rank} is not a rank of a world of {world}")));
        }
        if num_classes < world as i64 {
            return Err(LossError::Config(format!(
                "{num_classes} classes cannot be sharded over {world} ranks: every rank needs at least one class \
                 (train with [parallel] shard_head = false)"
            )));
        }
        let Range { start, end } = Self::rows(num_classes, rank, world);
        Ok(ClassShard { num_classes, rank, world, start, end })
    }

    /// The whole table, on one rank.
    pub fn whole(num_classes: i64) -> Self {
        ClassShard { num_classes, rank: 0, world: 1, start: 0, end: num_classes }
    }

    /// Rank `rank`'s classes, as arcface_torch's `PartialFC_V2` assigns them: `C / world` each
    /// (integer division), the first `C % world` ranks one more, in rank order. So a rank's rows
    /// are the rows of its `checkpoint_gpu_<rank>.pt` there.
    pub fn rows(num_classes: i64, rank: usize, world: usize) -> Range<i64> {
        let (world, rank) = (world.max(1) as i64, rank as i64);
        let (per, extra) = (num_classes / world, num_classes % world);
        let start = per * rank + rank.min(extra);
        start..start + per + i64::from(rank < extra)
    }

    /// How many classes this rank holds.
    pub fn len(&self) -> i64 {
        self.end - self.start
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Partial FC's class sampling: the share of each shard's classes a step uses, and the seed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sampling {
    /// In (0, 1]; 1 uses every class.
    pub rate: f64,
    pub seed: u64,
}

impl Sampling {
    /// The classes of `shard` step `step` uses (indices into the shard, ascending), `None` for
    /// all of them: the positives `positives` (the shard's classes among the global batch's
    /// labels, as shard indices, sorted and unique) and a random sample of the others seeded by
    /// `(seed, step, rank)`, `max(positives, floor(rate * shard))` in all, as arcface_torch's
    /// `PartialFC_V2.sample` picks them (random keys, the positives' set above any, top k,
    /// sorted; its keys come from `torch.rand`, these from SplitMix64).
    pub fn rows(&self, shard: &ClassShard, positives: &Tensor, step: usize) -> Result<Option<Tensor>> {
        let n = shard.len();
        let wanted = ((self.rate * n as f64).floor() as i64).max(positives.size()[0]);
        if wanted >= n {
            return Ok(None);
        }
        let mut rng = SplitMix64::new(self.seed ^ (step as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ ((shard.rank as u64) << 48));
        let keys: Vec<f32> = (0..n).map(|_| rng.next_f32()).collect();
        let keys = Tensor::f_from_slice(&keys)?.f_to_device(positives.device())?;
        // Positives get keys above any random one, so the top `wanted` holds all of them.
        let keys = keys.f_index_fill(0, positives, 2.0)?;
        let (_, chosen) = keys.f_topk(wanted, 0, true, false)?;
        let (rows, _) = chosen.f_sort(0, false)?;
        Ok(Some(rows))
    }
}

/// A classifier over the classes of a [`ClassShard`]: what a loss gives [`ShardedLoss`].
pub trait ShardHead: std::fmt::Debug + Send {
    /// The `[batch, K]` logits of `features` for the shard's classes `rows` (indices into the
    /// shard; every class of the shard when `None`), with the loss's margin applied at
    /// `targets` (`[batch]`: the column of each sample's class among those `K`, -1 where it is
    /// not one of them); and the same logits without the margin (for predictions).
    fn logits(&self, features: &Tensor, targets: &Tensor, rows: Option<&Tensor>) -> Result<(Tensor, Tensor)>;
    /// The logits of every class of the shard, without margin.
    fn plain_logits(&self, features: &Tensor) -> Result<Tensor>;
    /// The name the loss's term is logged under (`softmax_loss`, `arcface_loss`, ...).
    fn term_name(&self) -> &'static str;
    /// The variables with one row per class of the shard.
    fn variables(&self) -> Vec<&Tensor>;
}

/// A trainable `[shard.len(), dim]` variable `name` under `p` initialised as rows
/// `shard.start..shard.end` of a `[num_classes, dim]` variable built with `init`: for a uniform
/// init, libtorch's generator draws the numbers of the rows before and after the shard (in
/// chunks, dropped) as well, so a shard starts as that part of the unsharded table built from
/// the same seed, and the generator ends where the unsharded build leaves it.
pub fn shard_rows(p: &nn::Path, name: &str, shard: &ClassShard, dim: i64, init: nn::Init) -> Result<Tensor> {
    let var = p.f_var(name, &[shard.len(), dim], nn::Init::Const(0.0))?;
    match init {
        nn::Init::Const(value) => {
            let _ = tch::no_grad(|| var.shallow_clone().f_fill_(value))?;
        }
        nn::Init::Uniform { lo, up } => tch::no_grad(|| -> Result<()> {
            skip_uniform(shard.start * dim, lo, up)?;
            let _ = var.shallow_clone().f_uniform_(lo, up)?;
            skip_uniform((shard.num_classes - shard.end) * dim, lo, up)
        })?,
        other => return Err(LossError::Config(format!("a sharded variable cannot be initialised with {other:?}"))),
    }
    Ok(var)
}

/// Draws `n` uniform floats from libtorch's CPU generator and drops them.
fn skip_uniform(n: i64, lo: f64, up: f64) -> Result<()> {
    const CHUNK: i64 = 1 << 22;
    if n <= 0 {
        return Ok(());
    }
    let buffer = Tensor::f_empty([n.min(CHUNK)], (Kind::Float, Device::Cpu))?;
    let mut left = n;
    while left > 0 {
        let k = left.min(CHUNK);
        let _ = buffer.f_narrow(0, 0, k)?.f_uniform_(lo, up)?;
        left -= k;
    }
    Ok(())
}

/// The softmax loss's classifier over a shard: `x W^T + b`.
#[derive(Debug)]
pub struct LinearShard {
    weight: Tensor,
    bias: Option<Tensor>,
    term: &'static str,
}

impl LinearShard {
    /// `weight: [shard, dim]` (caffe's xavier, as [`facerec_model::layers::Linear`]) and, with
    /// `bias`, `bias: [shard]` under `p`.
    pub fn new(p: &nn::Path, dim: i64, shard: &ClassShard, bias: bool, term: &'static str) -> Result<Self> {
        let weight = shard_rows(p, "weight", shard, dim, facerec_model::layers::caffe_xavier(dim))?;
        let bias = if bias { Some(p.f_var("bias", &[shard.len()], nn::Init::Const(0.0))?) } else { None };
        Ok(LinearShard { weight, bias, term })
    }
}

/// `t`'s rows `rows`, or `t` itself.
fn select(t: &Tensor, rows: Option<&Tensor>) -> Result<Tensor> {
    Ok(match rows {
        Some(r) => t.f_index_select(0, r)?,
        None => t.shallow_clone(),
    })
}

impl ShardHead for LinearShard {
    fn logits(&self, features: &Tensor, _targets: &Tensor, rows: Option<&Tensor>) -> Result<(Tensor, Tensor)> {
        let bias = self.bias.as_ref().map(|b| select(b, rows)).transpose()?;
        let logits = features.f_linear(&select(&self.weight, rows)?, bias.as_ref())?;
        Ok((logits.shallow_clone(), logits))
    }

    fn plain_logits(&self, features: &Tensor) -> Result<Tensor> {
        Ok(features.f_linear(&self.weight, self.bias.as_ref())?)
    }

    fn term_name(&self) -> &'static str {
        self.term
    }

    fn variables(&self) -> Vec<&Tensor> {
        std::iter::once(&self.weight).chain(&self.bias).collect()
    }
}

/// A margin on the target cosine (CosFace's `c - m`, ArcFace's `cos(t + m)`, ...).
pub type Margin = Arc<dyn Fn(&Tensor) -> Result<Tensor> + Send + Sync>;

/// The margin losses' classifier over a shard: `s cos(x, W_j)`, the target's cosine replaced by
/// the margin function of it.
pub struct CosineShard {
    weight: Tensor,
    scale: f64,
    margin: Margin,
    term: &'static str,
}

impl std::fmt::Debug for CosineShard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CosineShard").field("weight", &self.weight.size()).field("scale", &self.scale).field("term", &self.term).finish()
    }
}

impl CosineShard {
    /// `weight: [shard, dim]` under `p`, initialised as [`crate::margin::CosineClassifier`]'s.
    pub fn new(p: &nn::Path, dim: i64, shard: &ClassShard, scale: f64, margin: Margin, term: &'static str) -> Result<Self> {
        let weight = shard_rows(p, "weight", shard, dim, facerec_model::layers::caffe_xavier(dim))?;
        Ok(CosineShard { weight, scale, margin, term })
    }
}

impl ShardHead for CosineShard {
    fn logits(&self, features: &Tensor, targets: &Tensor, rows: Option<&Tensor>) -> Result<(Tensor, Tensor)> {
        let cos = unit_rows(features)?.f_matmul(&unit_rows(&select(&self.weight, rows)?)?.f_tr()?)?; // [batch, K]
        let owned = targets.f_ge(0)?.f_unsqueeze(1)?; //                                            [batch, 1]
        let index = targets.f_clamp_min(0)?.f_unsqueeze(1)?;
        let target = cos.f_gather(1, &index, false)?;
        let with_margin = (self.margin)(&target)?.f_where_self(&owned, &target)?;
        let logits = cos.f_scatter(1, &index, &with_margin)?.f_mul_scalar(self.scale)?;
        Ok((logits, cos.f_mul_scalar(self.scale)?))
    }

    fn plain_logits(&self, features: &Tensor) -> Result<Tensor> {
        Ok(unit_rows(features)?.f_matmul(&unit_rows(&self.weight)?.f_tr()?)?.f_mul_scalar(self.scale)?)
    }

    fn term_name(&self) -> &'static str {
        self.term
    }

    fn variables(&self) -> Vec<&Tensor> {
        vec![&self.weight]
    }
}

/// A center table over the classes of a shard, with its settings: the center term of
/// [`ShardedLoss`].
#[derive(Debug)]
pub struct ShardCenters {
    /// `[shard, dim]` (and caffe's momentum), moved by the table's rule.
    pub table: CenterLoss,
    /// The term on L2-normalised features.
    pub normalized: bool,
}

/// A classification loss (and, for center loss, its center term) over a [`ClassShard`]: see
/// the module docs.
#[derive(Debug)]
pub struct ShardedLoss {
    head: Box<dyn ShardHead>,
    /// `Some` for center loss: `Some(None)` when lambda is 0 (the term logged as 0).
    center: Option<Option<ShardCenters>>,
    shard: ClassShard,
    sampling: Option<Sampling>,
}

/// What [`ShardedLoss`] computes of a global batch before the backward pass.
struct Pass {
    /// The objective: the global loss's value; gradients for the shard's variables and, through
    /// this rank's features, for the backbone.
    objective: Tensor,
    /// `[classification loss, center term]`, detached.
    values: Tensor,
    predictions: Tensor,
}

impl ShardedLoss {
    /// `center`: `None` for a classification loss alone; `Some(None)` for center loss with
    /// lambda 0; `Some(Some(table))` for center loss.
    pub fn new(head: Box<dyn ShardHead>, center: Option<Option<ShardCenters>>, shard: ClassShard, sampling: Option<Sampling>) -> Result<Self> {
        if let Some(s) = sampling {
            if !(s.rate > 0.0 && s.rate <= 1.0) {
                return Err(LossError::Config(format!("parallel.sample_rate must be in (0, 1], got {}", s.rate)));
            }
        }
        if let Some(Some(c)) = &center {
            let rows = c.table.centers().size()[0];
            if rows != shard.len() {
                return Err(LossError::Config(format!("the center table has {rows} rows but the shard {} classes", shard.len())));
            }
        }
        Ok(ShardedLoss { head, center, shard, sampling: sampling.filter(|s| s.rate < 1.0) })
    }

    /// The classes of the shard this step uses (see [`Sampling::rows`]), `None` for all.
    fn sample(&self, positives: &Tensor, step: usize) -> Result<Option<Tensor>> {
        match self.sampling {
            Some(sampling) => sampling.rows(&self.shard, positives, step),
            None => Ok(None),
        }
    }

    fn center_term(&self) -> Option<&ShardCenters> {
        self.center.as_ref().and_then(Option::as_ref)
    }

    /// The features the center term sees.
    fn center_features(&self, features: &Tensor) -> Result<Tensor> {
        match self.center_term() {
            Some(c) if c.normalized => unit_rows(features),
            _ => Ok(features.shallow_clone()),
        }
    }

    /// `[batch]` bool: which of `labels` are classes of this shard.
    fn owns(&self, labels: &Tensor) -> Result<Tensor> {
        Ok(labels.f_ge(self.shard.start)?.f_logical_and(&labels.f_lt(self.shard.end)?)?)
    }

    fn check_world(&self, ranks: &dyn Ranks) -> Result<()> {
        if ranks.world() != self.shard.world || ranks.rank() != self.shard.rank {
            return Err(LossError::Config(format!(
                "this loss holds the classes of rank {} of {}, but runs as rank {} of {}",
                self.shard.rank,
                self.shard.world,
                ranks.rank(),
                ranks.world()
            )));
        }
        Ok(())
    }

    fn pass(&self, features: &Tensor, labels: &Tensor, ranks: &dyn Ranks) -> Result<Pass> {
        self.check_world(ranks)?;
        check_labels(labels, features, self.shard.num_classes)?;
        let (world, rank, batch) = (self.shard.world as i64, self.shard.rank as i64, features.size()[0]);
        let (gathered, all_labels) = ranks.gather_batch(&features.f_detach()?, labels)?;
        let global = all_labels.size()[0]; //                                          M, the global batch
        let x = gathered.f_detach()?.f_set_requires_grad(true)?; //                 [M, dim], a leaf
        let owned = self.owns(&all_labels)?;
        let local = all_labels.f_sub_scalar(self.shard.start)?.f_where_scalarother(&owned, -1)?; // [M], -1: not ours
        let owned_rows = owned.f_nonzero()?.f_squeeze_dim(1)?; //                  samples whose class we hold
        let owned_labels = local.f_index_select(0, &owned_rows)?;
        let rows = if self.sampling.is_some() {
            let (positives, _, _) = owned_labels.f_internal_unique2(true, false, false)?;
            self.sample(&positives, ranks.step())?
        } else {
            None
        };
        // Each sample's column among the logits: its class's position among `rows`.
        let targets = match &rows {
            None => local.shallow_clone(),
            Some(r) => {
                let at = local.f_clamp_min(0)?.f_searchsorted(r, false, false, "left", None::<&Tensor>)?.f_clamp_max(r.size()[0] - 1)?;
                at.f_where_scalarother(&owned, -1)?
            }
        };
        let (logits, plain) = self.head.logits(&x, &targets, rows.as_ref())?; //        [M, K]
        // The center term on the samples whose class this rank holds: their features (in the
        // graph) and their offsets from their centers, x_i - c_{y_i} (detached).
        let center = match self.center_term() {
            Some(c) => {
                let xc = self.center_features(&x)?.f_index_select(0, &owned_rows)?;
                let d = xc.f_detach()?.f_sub(&c.table.centers().f_index_select(0, &owned_labels)?)?;
                Some((c.table.lambda(), xc, d))
            }
            None => None,
        };

        let offsets = center.as_ref().map(|(_, _, d)| d);
        let (gradient, values) = tch::no_grad(|| exact_cross_entropy(&logits.f_detach()?, &targets, offsets, ranks))?;
        // sum(logits * gradient), without a product the size of the logits.
        let mut surrogate = logits.f_reshape([-1])?.f_dot(&gradient.f_reshape([-1])?)?;
        if let Some((lambda, xc, d)) = &center {
            // lambda * L_C's gradient on the owned samples' features: lambda (x_i - c_{y_i}) / M.
            surrogate = surrogate.f_add(&xc.f_mul(d)?.f_sum(Kind::Float)?.f_mul_scalar(lambda / global as f64)?)?;
        }
        // This rank's part of d loss / d X, summed over the ranks; our samples' rows, times the
        // world (the trainer averages backbone gradients over the ranks).
        let mut grads = Tensor::f_run_backward(&[&surrogate], &[&x], true, false)?;
        let dx = grads.pop().ok_or_else(|| LossError::Config("autograd returned no feature gradient".into()))?.f_contiguous()?;
        ranks.all_reduce(&dx, Reduce::Sum)?;
        let mine = dx.f_narrow(0, rank * batch, batch)?.f_mul_scalar(world as f64)?;
        let backbone = features.f_sub(&features.f_detach()?)?.f_mul(&mine)?.f_sum(Kind::Float)?;
        let lambda = center.as_ref().map_or(0.0, |(lambda, _, _)| *lambda);
        let value = values.f_get(0)?.f_add(&values.f_get(1)?.f_mul_scalar(lambda)?)?;
        let objective = surrogate.f_sub(&surrogate.f_detach()?)?.f_add(&backbone)?.f_add(&value)?;
        let predictions = self.predictions(&plain.f_detach()?, rows.as_ref(), ranks)?.f_narrow(0, rank * batch, batch)?;
        Ok(Pass { objective, values, predictions })
    }

    /// The global arg-max of every gathered sample's logits: each rank's best class and its
    /// logit, gathered, the first rank with the largest logit winning (as `argmax` takes the
    /// first maximum, the lowest class).
    fn predictions(&self, plain: &Tensor, rows: Option<&Tensor>, ranks: &dyn Ranks) -> Result<Tensor> {
        let (best, at) = plain.f_max_dim(1, false)?;
        let class = match rows {
            Some(r) => r.f_index_select(0, &at)?,
            None => at,
        }
        .f_add_scalar(self.shard.start)?;
        let m = class.size()[0];
        let (values, classes) = ranks.gather_batch(&best.f_unsqueeze(1)?, &class)?;
        let values = values.f_reshape([self.shard.world as i64, m])?;
        let classes = classes.f_reshape([self.shard.world as i64, m])?;
        let winner = values.f_argmax(0, true)?; //                                  [1, M], first maximum
        Ok(classes.f_gather(0, &winner, false)?.f_squeeze_dim(0)?)
    }
}

impl Loss for ShardedLoss {
    fn forward(&self, features: &Tensor, labels: &Tensor) -> Result<LossOutput> {
        self.forward_ranks(features, labels, &OneProcess)
    }

    fn forward_ranks(&self, features: &Tensor, labels: &Tensor, ranks: &dyn Ranks) -> Result<LossOutput> {
        let pass = self.pass(features, labels, ranks)?;
        let mut terms = vec![pass.values.f_get(0)?];
        if self.center.is_some() {
            terms.push(pass.values.f_get(1)?);
        }
        Ok(LossOutput { objective: pass.objective, predictions: pass.predictions, terms })
    }

    /// The logits of every class: only with one rank, which holds them all.
    fn logits(&self, features: &Tensor) -> Result<Tensor> {
        if self.shard.world > 1 {
            return Err(LossError::Config(format!(
                "the classifier is sharded over {} ranks (this one holds classes {}..{}): no rank can compute every \
                 class's logit; evaluate on features (LFW, identification) or train with [parallel] shard_head = false",
                self.shard.world, self.shard.start, self.shard.end
            )));
        }
        self.head.plain_logits(features)
    }

    fn terms(&self) -> Vec<Term> {
        let mut terms = vec![Term::unit(self.head.term_name())];
        if let Some(center) = &self.center {
            terms.push(Term::weighted("center_loss", center.as_ref().map_or(0.0, |c| c.table.lambda())));
        }
        terms
    }

    /// Eq. 4 (or the table's rule) on the centers of this rank's classes, from the samples of
    /// the gathered global batch that belong to them.
    fn after_step(&self, features: &Tensor, labels: &Tensor, solver: SolverStep, ranks: &dyn Ranks) -> Result<()> {
        let Some(c) = self.center_term() else { return Ok(()) };
        self.check_world(ranks)?;
        let (x, y) = ranks.gather_batch(&self.center_features(features)?, labels)?;
        let owned = self.owns(&y)?.f_nonzero()?.f_squeeze_dim(1)?;
        let local = y.f_index_select(0, &owned)?.f_sub_scalar(self.shard.start)?;
        c.table.update_of_batch(&x.f_index_select(0, &owned)?, &local, solver, y.size()[0])
    }

    fn centers(&self) -> Option<&Tensor> {
        self.center_term().map(|c| c.table.centers())
    }

    fn sharded_variables(&self) -> Vec<&Tensor> {
        let mut vars = self.head.variables();
        if let Some(c) = self.center_term() {
            vars.extend(c.table.state());
        }
        vars
    }
}

/// SplitMix64 (Steele, Lea, Flood 2014): a small seeded generator, the same on every machine.
struct SplitMix64(u64);

impl SplitMix64 {
    fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn next_f32(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }
}

/// The exact mean cross-entropy over every rank's classes of the logits `z` `[M, K]` (each
/// rank its `K` classes; `targets` the column of each sample's class, -1 where another rank
/// holds it): the max, then the sums of exp and the target logits, all-reduced in one go with
/// the center term's sum of squared `offsets` (x_i - c_{y_i} of the samples this rank holds).
/// Returns the gradient of the loss with respect to `z`, `(softmax - onehot) / M`, and the
/// values `[cross-entropy, L_C]`.
fn exact_cross_entropy(z: &Tensor, targets: &Tensor, offsets: Option<&Tensor>, ranks: &dyn Ranks) -> Result<(Tensor, Tensor)> {
    let global = z.size()[0];
    let max = z.f_amax([1i64].as_slice(), false)?.f_contiguous()?; //          [M]
    ranks.all_reduce(&max, Reduce::Max)?;
    // In place from here on: at a million classes each [M, K] block is hundreds of MB.
    let mut e = z.f_sub(&max.f_unsqueeze(1)?)?;
    let _ = e.f_exp_()?;
    let index = targets.f_clamp_min(0)?.f_unsqueeze(1)?;
    let is_target = targets.f_ge(0)?;
    let target = z.f_gather(1, &index, false)?.f_squeeze_dim(1)?.f_where_scalarother(&is_target, 0.0)?;
    // [sum exp (M), target logit (M), center term (1)], summed over the ranks in one go.
    let center_sum = match offsets {
        Some(d) => d.f_square()?.f_sum(Kind::Float)?.f_reshape([1])?,
        None => Tensor::f_zeros([1], (Kind::Float, z.device()))?,
    };
    let sums = Tensor::f_cat(&[e.f_sum_dim_intlist([1i64].as_slice(), false, Kind::Float)?, target, center_sum], 0)?;
    ranks.all_reduce(&sums, Reduce::Sum)?;
    let (sum_exp, target) = (sums.f_narrow(0, 0, global)?, sums.f_narrow(0, global, global)?);
    let loss = sum_exp.f_log()?.f_add(&max)?.f_sub(&target)?.f_mean(Kind::Float)?;
    let center = sums.f_narrow(0, 2 * global, 1)?.f_div_scalar(2.0 * global as f64)?.f_squeeze()?;
    // d(mean cross-entropy)/d logits = (softmax - onehot) / M.
    let onehot = is_target.f_to_kind(Kind::Float)?.f_unsqueeze(1)?;
    let _ = e.f_div_(&sum_exp.f_unsqueeze(1)?)?.f_scatter_add_(1, &index, &onehot.f_neg()?)?.f_div_scalar_(global as f64)?;
    Ok((e, Tensor::f_stack(&[loss, center], 0)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_cover_the_classes_once_and_differ_by_one_at_most() {
        for (classes, world) in [(10, 4), (10, 3), (7, 7), (1_000_000, 8), (5, 2)] {
            let shards: Vec<ClassShard> = (0..world).map(|r| ClassShard::new(classes, r, world).unwrap()).collect();
            assert_eq!(shards[0].start, 0);
            assert_eq!(shards[world - 1].end, classes);
            for pair in shards.windows(2) {
                assert_eq!(pair[0].end, pair[1].start);
            }
            let sizes: Vec<i64> = shards.iter().map(ClassShard::len).collect();
            assert!(sizes.iter().max().unwrap() - sizes.iter().min().unwrap() <= 1, "{sizes:?}");
        }
        // arcface_torch's PartialFC_V2: 10 // 4 = 2 each, the first 10 % 4 = 2 ranks one more:
        // 3, 3, 2, 2 at 0, 3, 6, 8.
        let rows: Vec<_> = (0..4).map(|r| ClassShard::rows(10, r, 4)).collect();
        assert_eq!(rows, [0..3, 3..6, 6..8, 8..10]);
        let err = ClassShard::new(3, 0, 4).unwrap_err().to_string();
        assert!(err.contains("3 classes cannot be sharded over 4 ranks"), "{err}");
    }

    #[test]
    fn a_shard_starts_as_its_rows_of_the_unsharded_table_and_leaves_the_generator_alike() {
        let init = facerec_model::layers::caffe_xavier(5);
        tch::manual_seed(3);
        let vs = nn::VarStore::new(Device::Cpu);
        let whole = vs.root().var("w", &[11, 5], init);
        let after = Tensor::rand([4], (Kind::Float, Device::Cpu));
        for (rank, world) in [(0, 3), (1, 3), (2, 3), (0, 1)] {
            tch::manual_seed(3);
            let vs = nn::VarStore::new(Device::Cpu);
            let shard = ClassShard::new(11, rank, world).unwrap();
            let part = shard_rows(&vs.root(), "w", &shard, 5, init).unwrap();
            assert!(part.equal(&whole.narrow(0, shard.start, shard.len())), "rank {rank} of {world}");
            assert!(Tensor::rand([4], (Kind::Float, Device::Cpu)).equal(&after), "generator after rank {rank} of {world}");
        }
    }

    #[test]
    fn sampling_keeps_the_positives_and_is_seeded() {
        let head = LinearShard { weight: Tensor::zeros([100, 2], (Kind::Float, Device::Cpu)), bias: None, term: "softmax_loss" };
        let loss = ShardedLoss::new(Box::new(head), None, ClassShard::whole(100), Some(Sampling { rate: 0.1, seed: 7 })).unwrap();
        let positives = Tensor::from_slice(&[3i64, 50, 99]);
        let a = loss.sample(&positives, 1).unwrap().unwrap();
        assert_eq!(a.size(), [10]);
        let kept = Vec::<i64>::try_from(&a).unwrap();
        assert!([3, 50, 99].iter().all(|p| kept.contains(p)), "{kept:?}");
        assert!(kept.windows(2).all(|w| w[0] < w[1]), "sorted and unique: {kept:?}");
        assert!(a.equal(&loss.sample(&positives, 1).unwrap().unwrap()), "same step, same sample");
        assert!(!a.equal(&loss.sample(&positives, 2).unwrap().unwrap()), "another step, another sample");
        // More positives than the rate allows: all of them, nothing else.
        let many = Tensor::arange(20, (Kind::Int64, Device::Cpu));
        assert!(loss.sample(&many, 1).unwrap().unwrap().equal(&many));
    }
}
