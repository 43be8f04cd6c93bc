//! Softmax + contrastive loss, the paper's model B (Wen et al. 2016, Sec. 4.2), after DeepID2
//! (Sun, Chen, Wang, Tang, "Deep Learning Face Representation by Joint
//! Identification-Verification", NIPS 2014, Eq. 2): pairs of the batch are pulled together when
//! they show one identity and pushed at least `margin` apart when they do not,
//!
//! `L_con = 1/|P| sum_{(i,j) in P} 1/2 ||x_i - x_j||^2 + 1/|N| sum_{(i,j) in N} 1/2 max(0, m - ||x_i - x_j||)^2`
//!
//! over every pair i < j of the batch, P the same-identity pairs and N the others. Each set is
//! averaged on its own (an empty set adds 0): in a batch of P identities x K images only
//! (K - 1) / (B - 1) of the pairs are positive, and a plain mean over all pairs would let the
//! negatives drown them. DeepID2 drew its pairs at random instead; P x K batches
//! (`optim.images_per_identity`) make sure that every batch has positives.
//!
//! `L = L_S + weight * L_con`. Under data parallelism the pairs are those of the global batch:
//! each rank gathers every rank's features, computes the same `L_con` and its gradient, and
//! hands autograd its own samples' share (times the world size, which the gradient averaging
//! divides out), so that 2 ranks of B/2 train as one process of B.

use serde::{Deserialize, Serialize};
use tch::{nn, Kind, Tensor};

use facerec_core::plugin::Plug;

use crate::error::Result;
use crate::loss::{Loss, LossConfig, LossOutput, LossSpec, OneProcess, Ranks, SolverStep, Term};
use crate::softmax::SoftmaxConfig;

/// `[loss] name = "contrastive"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContrastiveConfig {
    /// The contrastive term's weight in `L_S + weight * L_con`, `>= 0`.
    pub weight: f64,
    /// `m`: how far apart (Euclidean, in feature space) different identities are pushed, `>= 0`.
    pub margin: f64,
    /// The classification loss beside the contrastive term (softmax unless set).
    #[serde(default = "softmax_head")]
    pub head: LossConfig,
}

fn softmax_head() -> LossConfig {
    LossConfig::new(SoftmaxConfig {})
}

impl Plug for ContrastiveConfig {
    const NAME: &'static str = "contrastive";

    fn check(&self) -> std::result::Result<(), String> {
        if !(self.weight >= 0.0 && self.weight.is_finite()) {
            return Err(format!("loss.weight must be >= 0, got {}", self.weight));
        }
        if !(self.margin >= 0.0 && self.margin.is_finite()) {
            return Err(format!("loss.margin must be >= 0, got {}", self.margin));
        }
        if [Self::NAME, "center"].contains(&self.head.name()) {
            return Err(format!("loss.head: the head of the contrastive loss is a classification loss, not {}", self.head.name()));
        }
        Ok(())
    }
}

impl LossSpec for ContrastiveConfig {
    /// The head's variables under `p` (its classifier under `p / "head"`); the contrastive term
    /// has none.
    fn build(&self, p: &nn::Path, feature_dim: i64, num_classes: i64) -> Result<Box<dyn Loss>> {
        let head = self.head.build(p, feature_dim, num_classes)?;
        Ok(Box::new(Contrastive { head, weight: self.weight, margin: self.margin }))
    }
}

/// The head and the contrastive term.
#[derive(Debug)]
pub struct Contrastive {
    head: Box<dyn Loss>,
    weight: f64,
    margin: f64,
}

/// `L_con` of `features` `[n, dim]` with `labels` `[n]` (differentiable), by the formula of the
/// module docs.
pub fn contrastive_loss(features: &Tensor, labels: &Tensor, margin: f64) -> Result<Tensor> {
    let n = features.size()[0];
    let sq = features.f_square()?.f_sum_dim_intlist([1i64].as_slice(), true, features.kind())?; //  [n, 1]
    let gram = features.f_matmul(&features.f_tr()?)?; //                                             [n, n]
    let d2 = sq.f_add(&sq.f_tr()?)?.f_sub(&gram.f_mul_scalar(2.0)?)?.f_clamp_min(0.0)?;
    let pairs = Tensor::f_ones([n, n], (Kind::Bool, features.device()))?.f_triu(1)?; //            i < j
    let same = labels.f_unsqueeze(1)?.f_eq_tensor(&labels.f_unsqueeze(0)?)?;
    let positive = pairs.f_logical_and(&same)?.f_to_kind(features.kind())?;
    let negative = pairs.f_logical_and(&same.f_logical_not()?)?.f_to_kind(features.kind())?;
    // sqrt(d^2 + eps): finite gradients where two features coincide.
    let distance = d2.f_add_scalar(1e-12)?.f_sqrt()?;
    let pushed = distance.f_neg()?.f_add_scalar(margin)?.f_clamp_min(0.0)?.f_square()?;
    let mean_over = |values: &Tensor, mask: &Tensor| -> Result<Tensor> {
        let count = mask.f_sum(features.kind())?.f_clamp_min(1.0)?;
        Ok(values.f_mul(mask)?.f_sum(features.kind())?.f_div(&count)?.f_mul_scalar(0.5)?)
    };
    Ok(mean_over(&d2, &positive)?.f_add(&mean_over(&pushed, &negative)?)?)
}

impl Contrastive {
    /// `weight * L_con` of the global batch as an objective term for this rank's `features`:
    /// its value is `weight * L_con`, its gradient this rank's rows of `weight * dL_con/dx`
    /// times the world size. Returns the term and `L_con`, detached.
    fn term(&self, features: &Tensor, labels: &Tensor, ranks: &dyn Ranks) -> Result<(Tensor, Tensor)> {
        let (all, all_labels) = ranks.gather_batch(&features.f_detach()?, labels)?;
        let leaf = all.f_detach()?.f_set_requires_grad(true)?;
        let value = contrastive_loss(&leaf, &all_labels, self.margin)?;
        let grads = Tensor::f_run_backward(&[&value], &[&leaf], false, false)?;
        let world = ranks.world() as f64;
        let n = features.size()[0];
        let rank = ranks.rank() as i64;
        let mine = grads[0].f_narrow(0, rank * n, n)?.f_mul_scalar(world)?;
        // (x - x.detach()) is zero but carries the identity gradient (as center loss's term).
        let surrogate = features.f_sub(&features.f_detach()?)?.f_mul(&mine)?.f_sum(features.kind())?;
        let value = value.f_detach()?;
        Ok((surrogate.f_add(&value)?.f_mul_scalar(self.weight)?, value))
    }
}

impl Loss for Contrastive {
    fn forward(&self, features: &Tensor, labels: &Tensor) -> Result<LossOutput> {
        self.forward_ranks(features, labels, &OneProcess)
    }

    fn forward_ranks(&self, features: &Tensor, labels: &Tensor, ranks: &dyn Ranks) -> Result<LossOutput> {
        let mut out = self.head.forward_ranks(features, labels, ranks)?;
        let (term, value) = self.term(features, labels, ranks)?;
        out.objective = out.objective.f_add(&term)?;
        out.terms.push(value);
        Ok(out)
    }

    fn logits(&self, features: &Tensor) -> Result<Tensor> {
        self.head.logits(features)
    }

    fn terms(&self) -> Vec<Term> {
        let mut terms = self.head.terms();
        terms.push(Term::weighted("contrastive_loss", self.weight));
        terms
    }

    fn after_step(&self, features: &Tensor, labels: &Tensor, solver: SolverStep, ranks: &dyn Ranks) -> Result<()> {
        self.head.after_step(features, labels, solver, ranks)
    }

    fn synced_state(&self) -> Vec<&Tensor> {
        self.head.synced_state()
    }
}
