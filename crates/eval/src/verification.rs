//! Face verification metrics over pairs: k-fold accuracy with the threshold of each fold chosen
//! on the others (the LFW protocol), optional PCA fitted on the training folds, and the ROC
//! over all pairs with AUC, EER and TAR at fixed FAR.
//!
//! Accuracy's std is the population std over folds (numpy's `np.std`, as LFW results are
//! usually reported). The ROC, AUC, EER, TAR and the score histograms use the scores the
//! accuracy uses: with PCA, each pair's cosine after the PCA fitted without its fold.
//!
//! With `n` different-person pairs the smallest non-zero FAR is `1/n`: a target FAR below it
//! (FAR 1e-4 with LFW's 3,000 or 1,500) can only be met by accepting no different-person pair
//! at all, so its TAR is the TAR at FAR 0, not at the target. Such entries are kept (readers
//! find every target) but marked `resolved: false`, said so in [`VerificationReport::tar_lines`],
//! and the ROC plot starts at `1/n`.

use facerec_core::run_files;
use ndarray::Array2;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

use crate::error::{EvalError, Result};
use crate::features::to_array2;
use crate::plot::{self, Figure};

/// One pair: rows of the feature matrix, whether it is the same person, its fold (0-based).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PairRef {
    pub a: usize,
    pub b: usize,
    pub same: bool,
    pub fold: usize,
}

/// A point of the ROC.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RocPoint {
    pub far: f64,
    pub tar: f64,
    pub threshold: f64,
}

/// TAR at a target FAR.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TarAtFar {
    pub far: f64,
    #[serde(deserialize_with = "nan::f64")]
    pub tar: f64,
    #[serde(deserialize_with = "nan::f64")]
    pub threshold: f64,
    /// Whether the different-person pairs can measure this FAR (`far >= 1/n`); when not, `tar`
    /// and `threshold` are those of FAR 0 (no different-person pair accepted). Reports written
    /// before this field existed read as resolved.
    #[serde(default = "resolved_before")]
    pub resolved: bool,
}

fn resolved_before() -> bool {
    true
}

/// JSON has no NaN: serde_json writes it as `null`, and these read `null` back as NaN, so that a
/// report with an undefined number (the std of one fold, say) reads back as it was.
pub(crate) mod nan {
    use serde::{Deserialize, Deserializer};

    pub fn f64<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
    }

    pub fn vec<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<f64>, D::Error> {
        Ok(Vec::<Option<f64>>::deserialize(d)?.into_iter().map(|v| v.unwrap_or(f64::NAN)).collect())
    }
}

/// Everything verification measures (`roc` and the scores are not written to reports).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VerificationReport {
    /// Folds evaluated, 1-based.
    pub folds: Vec<usize>,
    pub pairs: usize,
    pub pca: usize,
    /// Whether each fold's features had the mean feature of the other folds' pairs subtracted.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub subtract_mean: bool,
    /// With `subtract_mean`: the mean feature over both images of every evaluated pair (each
    /// fold's threshold was chosen on features less the mean of the other folds', which differs
    /// from this one by a fold's share). `facerec compare` subtracts it before applying the
    /// report's threshold, as the evaluation did.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mean_feature: Vec<f64>,
    #[serde(deserialize_with = "nan::vec")]
    pub fold_accuracy: Vec<f64>,
    #[serde(deserialize_with = "nan::vec")]
    pub fold_threshold: Vec<f64>,
    #[serde(deserialize_with = "nan::f64")]
    pub accuracy_mean: f64,
    #[serde(deserialize_with = "nan::f64")]
    pub accuracy_std: f64,
    #[serde(deserialize_with = "nan::f64")]
    pub auc: f64,
    #[serde(deserialize_with = "nan::f64")]
    pub eer: f64,
    /// Different-person pairs: the ROC's FAR moves in steps of `1 / negative_pairs`.
    #[serde(default)]
    pub negative_pairs: usize,
    /// The smallest non-zero FAR these pairs measure (`1 / negative_pairs`): where the ROC plot
    /// starts, and below which a TAR at FAR is not resolved.
    #[serde(default)]
    pub smallest_far: f64,
    pub tar_at_far: Vec<TarAtFar>,
    #[serde(skip)]
    pub roc: Vec<RocPoint>,
    #[serde(skip)]
    pub same_scores: Vec<f64>,
    #[serde(skip)]
    pub diff_scores: Vec<f64>,
}

impl VerificationReport {
    /// `lfw_roc.png` (the ROC on a log FAR axis from [`VerificationReport::smallest_far`], the
    /// FAR = 0 points left out, the resolved TAR-at-FAR targets marked with crosses) and
    /// `lfw_scores.png` (histograms of the same-person and different-person scores).
    pub fn figures(&self, name: &str) -> Vec<(&'static str, Figure)> {
        let roc: Vec<(f64, f64)> = self.roc.iter().filter(|p| p.far > 0.0).map(|p| (p.far, p.tar)).collect();
        let mut roc = plot::lines_figure(
            &format!("{name}: LFW ROC (acc {:.2}% +- {:.2}, AUC {:.4})", 100.0 * self.accuracy_mean, 100.0 * self.accuracy_std, self.auc),
            &format!(
                "false accept rate (from 1/{n}: {n} different-person pairs)",
                n = self.negative_pairs
            ),
            "true accept rate",
            true,
            &[(name.to_owned(), roc)],
        );
        if self.smallest_far > 0.0 && self.smallest_far.is_finite() {
            roc.x_range.0 = self.smallest_far;
            roc.x_range.1 = roc.x_range.1.max(10.0 * self.smallest_far);
        }
        let targets: Vec<&TarAtFar> = self.tar_at_far.iter().filter(|t| t.resolved).collect();
        if !targets.is_empty() {
            let names: Vec<String> = targets.iter().map(|t| format!("{:.0e}", t.far)).collect();
            roc.series.push(plot::Series {
                name: format!("TAR at FAR {}", names.join(", ")),
                colour: plotters::style::BLACK,
                marks: plot::Marks::Crosses(targets.iter().map(|t| (t.far, t.tar)).collect()),
            });
            let lowest = targets.iter().map(|t| t.tar).fold(f64::INFINITY, f64::min);
            roc.y_range.0 = roc.y_range.0.min(lowest - 0.02);
        }
        let scores = plot::histogram_figure(
            &format!("{name}: cosine scores of LFW pairs"),
            "cosine similarity",
            &[("same person".into(), self.same_scores.clone()), ("different people".into(), self.diff_scores.clone())],
            40,
        );
        vec![(run_files::LFW_ROC_PNG, roc), (run_files::LFW_SCORES_PNG, scores)]
    }

    /// One line per TAR-at-FAR target for the terminal: `TAR 97.53% at FAR 1e-3`, or, for a
    /// target the pairs cannot resolve, that it is not resolved and what was measured instead.
    pub fn tar_lines(&self) -> Vec<String> {
        self.tar_at_far
            .iter()
            .map(|t| {
                if t.resolved {
                    format!("TAR {:.2}% at FAR {:.0e}", 100.0 * t.tar, t.far)
                } else {
                    format!(
                        "TAR at FAR {:.0e}: not resolved ({} different-person pairs measure FAR down to 1/{} = {:.1e}); \
                         TAR at FAR 0 is {:.2}%",
                        t.far,
                        self.negative_pairs,
                        self.negative_pairs,
                        self.smallest_far,
                        100.0 * t.tar
                    )
                }
            })
            .collect()
    }

    /// The TAR at target `far` when it is one of the report's targets and resolved.
    pub fn resolved_tar(&self, far: f64) -> Option<f64> {
        self.tar_at_far.iter().find(|t| (t.far - far).abs() <= 1e-12 && t.resolved).map(|t| t.tar)
    }
}

/// Cosine similarity of each pair, from `[N, D]` features.
///
/// Works on one f32 copy of the rows with f64 accumulation, without feature-sized temporaries:
/// for LFW's 7,701 images x 1,024 dimensions the tensor route (convert to f64, normalise,
/// gather both sides) allocated some 250 MB and took most of the scoring time.
pub fn cosine_scores(features: &Tensor, pairs: &[PairRef]) -> Result<Vec<f64>> {
    Ok(cosine_of_rows(&to_array2::<f32>(features)?, pairs))
}

fn cosine_of_rows<T: Copy + Into<f64> + Send + Sync>(rows: &Array2<T>, pairs: &[PairRef]) -> Vec<f64> {
    let rows = rows.as_standard_layout(); // no copy: `to_array2` gives C order
    let (flat, d) = (rows.as_slice().expect("a standard-layout array is one slice"), rows.ncols());
    let row = |i: usize| &flat[i * d..(i + 1) * d];
    let norms: Vec<f64> = (0..rows.nrows()).into_par_iter().map(|i| dot(row(i), row(i)).sqrt().max(1e-12)).collect();
    pairs.par_iter().map(|p| dot(row(p.a), row(p.b)) / (norms[p.a] * norms[p.b])).collect()
}

/// Dot product accumulated in f64 over 8 independent lanes (so that it vectorises).
fn dot<T: Copy + Into<f64>>(a: &[T], b: &[T]) -> f64 {
    let mut lanes = [0.0f64; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f64 = ca.remainder().iter().zip(cb.remainder()).map(|(&x, &y)| x.into() * y.into()).sum();
    for (x, y) in ca.zip(cb) {
        for k in 0..8 {
            lanes[k] += x[k].into() * y[k].into();
        }
    }
    lanes.iter().sum::<f64>() + tail
}

/// Checks that `dims` principal components of `d`-dimensional features make sense.
fn check_pca_dims(dims: usize, d: usize) -> Result<()> {
    if dims == 0 || dims > d {
        return Err(EvalError::Invalid(format!("PCA to {dims} dimensions of {d}-d features")));
    }
    Ok(())
}

/// The `dims` leading eigenvectors of a symmetric `[D, D]` covariance, as columns `[D, dims]`.
fn principal_axes(cov: &Tensor, dims: usize) -> Result<Tensor> {
    let d = cov.size()[0];
    let (_, vectors) = cov.f_linalg_eigh("L")?; // ascending eigenvalues
    Ok(vectors.f_narrow(1, d - dims as i64, dims as i64)?)
}

/// How each fold's pairs are scored, beyond the cosine of the features.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Scoring {
    /// Principal components fitted on the other folds' images (0: no PCA).
    pub pca: usize,
    /// Subtract the mean feature of the other folds' pairs before the cosine (the protocol of
    /// SphereFace's and MobileFaceNet's LFW evaluation scripts).
    pub subtract_mean: bool,
}

impl Scoring {
    /// Plain cosine, or PCA to `pca` dimensions first when `pca > 0`.
    pub fn pca(pca: usize) -> Self {
        Scoring { pca, subtract_mean: false }
    }
}

/// Scores of every pair for each fold, after subtracting the mean feature of the pairs of the
/// other folds, as `evaluation_10_fold` in SphereFace's and MobileFaceNet_Pytorch's
/// `lfw_eval.py` does: the mean runs over both images of every training pair (an image in
/// several pairs counts several times), and the cosine of the centred features is the score.
fn centred_fold_scores(features: &Tensor, pairs: &[PairRef], folds: &[usize]) -> Result<Vec<Vec<f64>>> {
    let x = to_array2::<f64>(&features.f_to_kind(Kind::Double)?)?;
    let mut out = Vec::with_capacity(folds.len());
    for &test in folds {
        let mean = pairs_mean(&x, pairs.iter().filter(|p| p.fold != test));
        out.push(cosine_of_rows(&(&x - &mean), pairs));
    }
    Ok(out)
}

/// The mean of the rows of `x` over both images of each of `pairs` (an image in several pairs
/// counts several times).
fn pairs_mean<'a>(x: &ndarray::Array2<f64>, pairs: impl Iterator<Item = &'a PairRef>) -> ndarray::Array1<f64> {
    let mut sum = ndarray::Array1::<f64>::zeros(x.ncols());
    let mut n = 0usize;
    for p in pairs {
        sum += &x.row(p.a);
        sum += &x.row(p.b);
        n += 2;
    }
    sum / n.max(1) as f64
}

/// For each fold of `folds`, the pairs' cosine scores after a PCA to `dims` dimensions fitted
/// on the images of the *other* folds' pairs (each image once), as
/// `cosine_scores(&pca_project(features, fit, dims), pairs)` would give them, but without
/// refitting from scratch: the scatter of the fit set is the scatter of all pair images minus
/// that of the images only the held-out fold uses, so the `N x D x D` products are paid twice
/// in all instead of once per fold. What remains per fold is one `D x D` eigendecomposition.
fn pca_fold_scores(features: &Tensor, pairs: &[PairRef], folds: &[usize], dims: usize) -> Result<Vec<Vec<f64>>> {
    check_pca_dims(dims, features.size()[1] as usize)?;
    // Rows used by the pairs, and for each the single fold using it (None when several do).
    let mut owner: std::collections::BTreeMap<usize, Option<usize>> = Default::default();
    for p in pairs {
        for r in [p.a, p.b] {
            owner.entry(r).and_modify(|o| if *o != Some(p.fold) { *o = None }).or_insert(Some(p.fold));
        }
    }
    let used: Vec<i64> = owner.keys().map(|&r| r as i64).collect();
    let x = features.f_index_select(0, &Tensor::f_from_slice(&used)?)?.f_to_kind(Kind::Double)?;
    // Centre on the mean of all used rows first, for a well-conditioned scatter.
    let shift = x.f_mean_dim([0i64].as_slice(), true, Kind::Double)?;
    let y = x.f_sub(&shift)?;
    let scatter_all = y.f_tr()?.f_matmul(&y)?;
    let sum_all = y.f_sum_dim_intlist([0i64].as_slice(), true, Kind::Double)?;
    // Pairs renumbered into the rows of `y`.
    let position: std::collections::HashMap<usize, usize> = owner.keys().enumerate().map(|(i, &r)| (r, i)).collect();
    let local: Vec<PairRef> = pairs.iter().map(|p| PairRef { a: position[&p.a], b: position[&p.b], ..*p }).collect();
    let mut out = Vec::with_capacity(folds.len());
    for &test in folds {
        let only: Vec<i64> = owner.values().enumerate().filter(|(_, o)| **o == Some(test)).map(|(i, _)| i as i64).collect();
        let n = (used.len() - only.len()) as f64;
        let (scatter, sum) = if only.is_empty() {
            (scatter_all.shallow_clone(), sum_all.shallow_clone())
        } else {
            let held = y.f_index_select(0, &Tensor::f_from_slice(&only)?)?;
            (
                scatter_all.f_sub(&held.f_tr()?.f_matmul(&held)?)?,
                sum_all.f_sub(&held.f_sum_dim_intlist([0i64].as_slice(), true, Kind::Double)?)?,
            )
        };
        let mean = sum.f_div_scalar(n)?; // of the fit rows, relative to `shift`
        let cov = scatter.f_sub(&mean.f_tr()?.f_matmul(&mean)?.f_mul_scalar(n)?)?.f_div_scalar(n.max(2.0) - 1.0)?;
        let projected = y.f_sub(&mean)?.f_matmul(&principal_axes(&cov, dims)?)?;
        out.push(cosine_of_rows(&to_array2::<f64>(&projected)?, &local));
    }
    Ok(out)
}

/// PCA with `dims` components fitted on the rows `fit` of `features`; returns the projection
/// of all rows.
pub fn pca_project(features: &Tensor, fit: &[usize], dims: usize) -> Result<Tensor> {
    check_pca_dims(dims, features.size()[1] as usize)?;
    let x = features.f_to_kind(Kind::Double)?;
    let idx = Tensor::f_from_slice(&fit.iter().map(|&i| i as i64).collect::<Vec<_>>())?;
    let train = x.f_index_select(0, &idx)?;
    let mean = train.f_mean_dim([0i64].as_slice(), true, Kind::Double)?;
    let centred = train.f_sub(&mean)?;
    let cov = centred.f_tr()?.f_matmul(&centred)?.f_div_scalar(fit.len().max(2) as f64 - 1.0)?;
    Ok(x.f_sub(&mean)?.f_matmul(&principal_axes(&cov, dims)?)?)
}

/// The threshold maximising accuracy on `scores`/`same`, and that accuracy. Candidates are
/// midpoints between consecutive distinct scores (and below/above all).
pub fn best_threshold(scores: &[f64], same: &[bool]) -> (f64, f64) {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&i, &j| scores[i].total_cmp(&scores[j]));
    let n = scores.len();
    let positives = same.iter().filter(|&&s| s).count();
    // Threshold below everything: all predicted same -> correct = positives.
    let mut correct = positives;
    let mut best = (order.first().map_or(0.0, |&i| scores[i] - 1e-6), correct);
    let mut k = 0;
    while k < n {
        // Move the threshold above the group of equal scores starting at k.
        let v = scores[order[k]];
        while k < n && scores[order[k]] == v {
            if same[order[k]] {
                correct -= 1;
            } else {
                correct += 1;
            }
            k += 1;
        }
        let t = if k < n { (v + scores[order[k]]) / 2.0 } else { v + 1e-6 };
        if correct > best.1 {
            best = (t, correct);
        }
    }
    (best.0, best.1 as f64 / n.max(1) as f64)
}

/// Fraction of pairs classified right by `score >= threshold`.
pub fn accuracy_at(scores: &[f64], same: &[bool], threshold: f64) -> f64 {
    let correct = scores.iter().zip(same).filter(|(&s, &y)| (s >= threshold) == y).count();
    correct as f64 / scores.len().max(1) as f64
}

/// The ROC of `scores` (higher = more alike), one point per distinct threshold, from
/// (0, 0) to (1, 1).
pub fn roc(scores: &[f64], same: &[bool]) -> Vec<RocPoint> {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&i, &j| scores[j].total_cmp(&scores[i]));
    let p = same.iter().filter(|&&s| s).count().max(1) as f64;
    let n = same.iter().filter(|&&s| !s).count().max(1) as f64;
    let mut points = vec![RocPoint { far: 0.0, tar: 0.0, threshold: f64::INFINITY }];
    let (mut tp, mut fp) = (0usize, 0usize);
    let mut k = 0;
    while k < order.len() {
        let v = scores[order[k]];
        while k < order.len() && scores[order[k]] == v {
            if same[order[k]] {
                tp += 1;
            } else {
                fp += 1;
            }
            k += 1;
        }
        points.push(RocPoint { far: fp as f64 / n, tar: tp as f64 / p, threshold: v });
    }
    points
}

/// Area under the ROC (trapezoids).
pub fn auc(roc: &[RocPoint]) -> f64 {
    roc.windows(2).map(|w| (w[1].far - w[0].far) * (w[1].tar + w[0].tar) / 2.0).sum()
}

/// Equal error rate: where FAR = 1 - TAR, interpolated between ROC points.
pub fn eer(roc: &[RocPoint]) -> f64 {
    for w in roc.windows(2) {
        let d0 = (1.0 - w[0].tar) - w[0].far;
        let d1 = (1.0 - w[1].tar) - w[1].far;
        if d0 >= 0.0 && d1 <= 0.0 {
            let t = if d0 == d1 { 0.0 } else { d0 / (d0 - d1) };
            return w[0].far + t * (w[1].far - w[0].far);
        }
    }
    f64::NAN
}

/// The highest TAR with FAR at most `far` on the ROC of `negatives` different-person pairs,
/// `resolved` when `far >= 1/negatives` (with 3,000 different-person pairs the smallest
/// non-zero FAR is 1/3000, so FAR 1e-4 means "no false accept at all": not resolved).
pub fn tar_at_far(roc: &[RocPoint], far: f64, negatives: usize) -> TarAtFar {
    let resolved = negatives > 0 && far * negatives as f64 >= 1.0 - 1e-9;
    roc.iter()
        .filter(|p| p.far <= far + 1e-12)
        .max_by(|a, b| a.tar.total_cmp(&b.tar))
        .map(|p| TarAtFar { far, tar: p.tar, threshold: p.threshold, resolved })
        .unwrap_or(TarAtFar { far, tar: 0.0, threshold: f64::INFINITY, resolved })
}

/// The full protocol on `features` `[N, D]` and `pairs`, over `folds` (0-based; each tested with
/// the threshold, and PCA when `pca > 0`, fitted on the other folds of that list).
pub fn verify(features: &Tensor, pairs: &[PairRef], folds: &[usize], scoring: Scoring) -> Result<VerificationReport> {
    let Scoring { pca, subtract_mean } = scoring;
    if pca > 0 && subtract_mean {
        return Err(EvalError::Invalid("PCA centres the features on the training folds already: ask for PCA or for mean subtraction, not both".into()));
    }
    if folds.len() < 2 {
        return Err(EvalError::Invalid("verification needs at least 2 folds (thresholds come from the others)".into()));
    }
    let pairs: Vec<PairRef> = pairs.iter().copied().filter(|p| folds.contains(&p.fold)).collect();
    if pairs.is_empty() {
        return Err(EvalError::Invalid(format!("no pairs in folds {folds:?}")));
    }
    let raw = cosine_scores(features, &pairs)?;
    let same: Vec<bool> = pairs.iter().map(|p| p.same).collect();
    let pca_scores = if pca > 0 {
        Some(pca_fold_scores(features, &pairs, folds, pca)?)
    } else if subtract_mean {
        Some(centred_fold_scores(features, &pairs, folds)?)
    } else {
        None
    };
    let (mut fold_accuracy, mut fold_threshold) = (Vec::new(), Vec::new());
    for (f, &test) in folds.iter().enumerate() {
        let scores = pca_scores.as_ref().map_or(&raw, |s| &s[f]);
        let (train, held): (Vec<usize>, Vec<usize>) = (0..pairs.len()).partition(|&i| pairs[i].fold != test);
        let pick = |idx: &[usize]| -> (Vec<f64>, Vec<bool>) { (idx.iter().map(|&i| scores[i]).collect(), idx.iter().map(|&i| same[i]).collect()) };
        let (ts, ty) = pick(&train);
        let (hs, hy) = pick(&held);
        let (threshold, _) = best_threshold(&ts, &ty);
        fold_accuracy.push(accuracy_at(&hs, &hy, threshold));
        fold_threshold.push(threshold);
    }
    let k = fold_accuracy.len() as f64;
    let mean = fold_accuracy.iter().sum::<f64>() / k;
    let std = (fold_accuracy.iter().map(|a| (a - mean).powi(2)).sum::<f64>() / k).sqrt();
    // With PCA (or mean subtraction), each pair is scored as its fold's accuracy scored it:
    // after the PCA fitted on (the mean taken over) the other folds. The ROC and histograms
    // then describe the features the accuracy does.
    let scored: Vec<f64> = match &pca_scores {
        None => raw,
        Some(per_fold) => {
            let column: std::collections::HashMap<usize, usize> = folds.iter().enumerate().map(|(f, &fold)| (fold, f)).collect();
            pairs.iter().enumerate().map(|(i, p)| per_fold[column[&p.fold]][i]).collect()
        }
    };
    let curve = roc(&scored, &same);
    let negatives = same.iter().filter(|&&s| !s).count();
    let mean_feature = match subtract_mean {
        true => pairs_mean(&to_array2::<f64>(&features.f_to_kind(Kind::Double)?)?, pairs.iter()).to_vec(),
        false => Vec::new(),
    };
    Ok(VerificationReport {
        folds: folds.iter().map(|f| f + 1).collect(),
        pairs: pairs.len(),
        pca,
        subtract_mean,
        mean_feature,
        fold_accuracy,
        fold_threshold,
        accuracy_mean: mean,
        accuracy_std: std,
        auc: auc(&curve),
        eer: eer(&curve),
        negative_pairs: negatives,
        smallest_far: if negatives > 0 { 1.0 / negatives as f64 } else { f64::NAN },
        tar_at_far: [1e-2, 1e-3, 1e-4].iter().map(|&f| tar_at_far(&curve, f, negatives)).collect(),
        roc: curve,
        same_scores: scored.iter().zip(&same).filter(|(_, &s)| s).map(|(v, _)| *v).collect(),
        diff_scores: scored.iter().zip(&same).filter(|(_, &s)| !s).map(|(v, _)| *v).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_with_undefined_numbers_reads_back_as_written() {
        // One fold's std, and a TAR at a FAR no pair resolves, are NaN: JSON null on disk.
        let tar = TarAtFar { far: 1e-3, tar: f64::NAN, threshold: 0.5, resolved: false };
        let report = VerificationReport {
            folds: vec![1],
            pairs: 2,
            pca: 0,
            subtract_mean: false,
            mean_feature: Vec::new(),
            fold_accuracy: vec![1.0, f64::NAN],
            fold_threshold: vec![f64::NAN],
            accuracy_mean: 1.0,
            accuracy_std: f64::NAN,
            auc: 1.0,
            eer: 0.0,
            negative_pairs: 1,
            smallest_far: 1.0,
            tar_at_far: vec![tar],
            roc: Vec::new(),
            same_scores: Vec::new(),
            diff_scores: Vec::new(),
        };
        let json = serde_json::to_string(&report).unwrap();
        assert!(json.contains("\"accuracy_std\":null"), "{json}");
        let back: VerificationReport = serde_json::from_str(&json).unwrap();
        assert!(back.accuracy_std.is_nan() && back.fold_threshold[0].is_nan() && back.tar_at_far[0].tar.is_nan());
        assert_eq!((back.fold_accuracy[0], back.accuracy_mean, back.tar_at_far[0].threshold), (1.0, 1.0, 0.5));
        assert!(!back.tar_at_far[0].resolved);
        // A report from before `resolved` existed reads as resolved.
        let old = json.replace(",\"resolved\":false", "");
        assert!(serde_json::from_str::<VerificationReport>(&old).unwrap().tar_at_far[0].resolved);
    }

    #[test]
    fn threshold_and_accuracy_by_hand() {
        // scores: same 0.9, 0.8, 0.3 ; different 0.5, 0.2, 0.1
        let s = [0.9, 0.8, 0.3, 0.5, 0.2, 0.1];
        let y = [true, true, true, false, false, false];
        // best cut between 0.5 and 0.8 -> 5/6, or between 0.2 and 0.3 -> 5/6; the first found
        // from below is (0.2 + 0.3) / 2.
        let (t, acc) = best_threshold(&s, &y);
        assert!((acc - 5.0 / 6.0).abs() < 1e-12);
        assert!((t - 0.25).abs() < 1e-12, "{t}");
        assert!((accuracy_at(&s, &y, 0.65) - 5.0 / 6.0).abs() < 1e-12);
        assert!((accuracy_at(&s, &y, 0.95) - 0.5).abs() < 1e-12);
    }

    #[test]
    fn roc_auc_eer_tar_by_hand() {
        let s = [0.9, 0.8, 0.3, 0.5, 0.2, 0.1];
        let y = [true, true, true, false, false, false];
        let r = roc(&s, &y);
        // descending: .9 T, .8 T, .5 F, .3 T, .2 F, .1 F
        let pts: Vec<(f64, f64)> = r.iter().map(|p| (p.far, p.tar)).collect();
        let third = 1.0 / 3.0;
        let expected = [(0.0, 0.0), (0.0, third), (0.0, 2.0 * third), (third, 2.0 * third), (third, 1.0), (2.0 * third, 1.0), (1.0, 1.0)];
        for (a, b) in pts.iter().zip(expected) {
            assert!((a.0 - b.0).abs() < 1e-12 && (a.1 - b.1).abs() < 1e-12, "{pts:?}");
        }
        // AUC = P(score_same > score_diff) = 8/9 (pairs: .3 loses to .5 only)
        assert!((auc(&r) - 8.0 / 9.0).abs() < 1e-12);
        // EER: FRR = 1 - TAR meets FAR at 1/3
        assert!((eer(&r) - third).abs() < 1e-12, "{}", eer(&r));
        assert!((tar_at_far(&r, 0.0, 3).tar - 2.0 * third).abs() < 1e-12);
        assert!((tar_at_far(&r, 0.5, 3).tar - 1.0).abs() < 1e-12);
        // Three different-person pairs resolve FAR 1/3 and above, nothing below: FAR 0.3 gets
        // the TAR of FAR 0 and says it is not resolved.
        assert!(tar_at_far(&r, third, 3).resolved && tar_at_far(&r, 0.5, 3).resolved);
        let t = tar_at_far(&r, 0.3, 3);
        assert!(!t.resolved && (t.tar - 2.0 * third).abs() < 1e-12, "{t:?}");
        assert!(!tar_at_far(&r, 0.0, 3).resolved && !tar_at_far(&r, 0.5, 0).resolved);
    }

    #[test]
    fn folds_take_thresholds_from_the_others_and_pca_runs() {
        // Two clusters in 3-D; pairs within a cluster are "same".
        let f = Tensor::from_slice(&[1.0f32, 0.1, 0.0, 0.9, 0.0, 0.1, 0.0, 1.0, 0.1, 0.1, 0.9, 0.0]).view([4, 3]);
        let mut pairs = Vec::new();
        for fold in 0..3 {
            pairs.push(PairRef { a: 0, b: 1, same: true, fold });
            pairs.push(PairRef { a: 2, b: 3, same: true, fold });
            pairs.push(PairRef { a: 0, b: 2, same: false, fold });
            pairs.push(PairRef { a: 1, b: 3, same: false, fold });
        }
        let r = verify(&f, &pairs, &[0, 1, 2], Scoring::default()).unwrap();
        assert_eq!(r.fold_accuracy, vec![1.0, 1.0, 1.0]);
        assert_eq!(r.accuracy_std, 0.0);
        assert!((r.auc - 1.0).abs() < 1e-12);
        let r = verify(&f, &pairs, &[0, 2], Scoring::pca(2)).unwrap();
        assert_eq!(r.folds, vec![1, 3]);
        assert_eq!(r.pairs, 8);
        assert!(verify(&f, &pairs, &[0], Scoring::default()).is_err());
    }

    #[test]
    fn pca_per_fold_matches_refitting_each_fold_from_scratch() {
        // 40 images in 8-D, pairs over 4 folds; images 0-3 are shared by folds 0 and 1 (so the
        // "only this fold" bookkeeping is exercised both ways).
        tch::manual_seed(3);
        let f = Tensor::randn([40, 8], (Kind::Float, tch::Device::Cpu)).f_mul(&Tensor::from_slice(&[4.0f32, 3.0, 2.0, 1.5, 1.0, 0.5, 0.3, 0.1])).unwrap();
        let mut pairs = Vec::new();
        for fold in 0..4 {
            for k in 0..5 {
                let (a, b) = (4 + fold * 9 + k, 4 + fold * 9 + (k + 3) % 9);
                pairs.push(PairRef { a, b, same: k % 2 == 0, fold });
            }
        }
        pairs.push(PairRef { a: 0, b: 1, same: true, fold: 0 });
        pairs.push(PairRef { a: 2, b: 3, same: false, fold: 1 });
        pairs.push(PairRef { a: 0, b: 3, same: false, fold: 1 });
        let folds = [0, 1, 2, 3];
        let fast = pca_fold_scores(&f, &pairs, &folds, 3).unwrap();
        for (i, &test) in folds.iter().enumerate() {
            let mut fit: Vec<usize> = pairs.iter().filter(|p| p.fold != test).flat_map(|p| [p.a, p.b]).collect();
            fit.sort_unstable();
            fit.dedup();
            let direct = cosine_scores(&pca_project(&f, &fit, 3).unwrap(), &pairs).unwrap();
            for (x, y) in fast[i].iter().zip(&direct) {
                assert!((x - y).abs() < 1e-5, "fold {test}: {x} vs {y}");
            }
        }
    }

    #[test]
    fn cosine_scores_by_hand() {
        let f = Tensor::from_slice(&[3.0f32, 4.0, 1.0, 0.0, 0.0, 2.0]).view([3, 2]);
        let pairs = [PairRef { a: 0, b: 1, same: true, fold: 0 }, PairRef { a: 1, b: 2, same: false, fold: 0 }];
        let s = cosine_scores(&f, &pairs).unwrap();
        assert!((s[0] - 0.6).abs() < 1e-12 && s[1].abs() < 1e-12, "{s:?}");
    }
}
