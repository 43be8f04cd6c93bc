//! insightface's verification protocol for `.bin` sets (lfw, cfp_fp, agedb_30, ...), the numbers
//! arcface_torch logs and papers quote, as `recognition/arcface_torch/eval/verification.py`
//! computes them (its `test`, `evaluate`, `calculate_roc`, `calculate_accuracy`,
//! `calculate_val`):
//!
//! - each image's embedding and its mirror's are **summed**, the sum L2-normalised;
//! - **XNorm** is the mean L2 norm of all the raw embeddings (images and mirrors);
//! - pairs `(2i, 2i + 1)` are scored by the **squared Euclidean distance** of their embeddings
//!   (0 to 4), a pair predicted "same" below a threshold;
//! - sklearn's `KFold(10, shuffle=False)`: 10 folds of consecutive pairs (the first `n % 10`
//!   one pair larger); each fold's threshold is the first of `0, 0.01, ..., 3.99` with the
//!   best accuracy on the other nine, its accuracy measured on the fold; reported as the mean
//!   and the (population) standard deviation of the ten accuracies ("Accuracy-Flip");
//! - **VAL at FAR 1e-3** (`calculate_val`): for each fold, the threshold on the grid `0, 0.001,
//!   ..., 3.999` at which the other nine folds' FAR reaches 1e-3, by linear interpolation of
//!   the threshold over their FAR (0 when their FAR never reaches it); the fold's VAL (TAR) and
//!   FAR at that threshold; mean and standard deviation of VAL, mean of FAR.
//!
//! One point the reference leaves open: `calculate_val` interpolates with SciPy's
//! `interp1d(far, thresholds, kind="slinear")`, whose FAR values repeat (many thresholds accept
//! the same pairs), which recent SciPy refuses. Here each repeated FAR stands for the last (the
//! largest) of its thresholds, the one at which the FAR is about to rise: `crates/eval/tests/
//! insightface.rs` runs the reference with `interp1d` given the same de-duplicated points.

use ndarray::{Array2, Axis};
use serde::{Deserialize, Serialize};

use crate::verification::nan;

/// What insightface's protocol reports for one `.bin` set.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InsightfaceVerification {
    pub pairs: usize,
    pub folds: usize,
    /// Mean accuracy over the folds ("Accuracy-Flip" of arcface_torch's log).
    #[serde(deserialize_with = "nan::f64")]
    pub accuracy_mean: f64,
    /// Population standard deviation of the folds' accuracies.
    #[serde(deserialize_with = "nan::f64")]
    pub accuracy_std: f64,
    #[serde(deserialize_with = "nan::vec")]
    pub fold_accuracy: Vec<f64>,
    /// Each fold's threshold on the squared distance of normalised embeddings (0 to 4).
    #[serde(deserialize_with = "nan::vec")]
    pub fold_threshold: Vec<f64>,
    /// Mean L2 norm of the raw embeddings, images and mirrors.
    #[serde(deserialize_with = "nan::f64")]
    pub xnorm: f64,
    /// TAR (insightface's VAL) at FAR 1e-3: mean and standard deviation over the folds, and
    /// the mean FAR the folds' thresholds gave.
    #[serde(deserialize_with = "nan::f64")]
    pub val: f64,
    #[serde(deserialize_with = "nan::f64")]
    pub val_std: f64,
    #[serde(deserialize_with = "nan::f64")]
    pub far: f64,
}

impl InsightfaceVerification {
    /// The line arcface_torch's log prints, to the digits it prints them.
    pub fn log_line(&self) -> String {
        format!("XNorm: {:.6}, Accuracy-Flip: {:.5}+-{:.5}", self.xnorm, self.accuracy_mean, self.accuracy_std)
    }
}

/// sklearn's `KFold(n_splits, shuffle=False).split(range(n))`: the test indices of each fold,
/// consecutive, the first `n % n_splits` folds one larger.
pub fn kfold(n: usize, n_splits: usize) -> Vec<std::ops::Range<usize>> {
    let (base, extra) = (n / n_splits, n % n_splits);
    let mut start = 0;
    (0..n_splits)
        .map(|k| {
            let len = base + usize::from(k < extra);
            let fold = start..start + len;
            start += len;
            fold
        })
        .collect()
}

/// The protocol on the raw embeddings of the images (`orig`, row `2i` and `2i + 1` pair `i`) and
/// of their mirrors (`flip`), with `issame[i]` whether pair `i` is one person.
pub fn verify(orig: &Array2<f64>, flip: &Array2<f64>, issame: &[bool], n_folds: usize) -> InsightfaceVerification {
    let norms = |a: &Array2<f64>| a.map_axis(Axis(1), |r| r.dot(&r).sqrt());
    let all_norms: Vec<f64> = norms(orig).iter().chain(norms(flip).iter()).copied().collect();
    let xnorm = all_norms.iter().sum::<f64>() / all_norms.len().max(1) as f64;
    // sklearn.preprocessing.normalize: rows of norm 0 stay as they are.
    let mut emb = orig + flip;
    for mut row in emb.rows_mut() {
        let n = row.dot(&row).sqrt();
        if n > 0.0 {
            row /= n;
        }
    }
    let pairs = issame.len().min(emb.nrows() / 2);
    let dist: Vec<f64> = (0..pairs)
        .map(|i| {
            let d = &emb.row(2 * i) - &emb.row(2 * i + 1);
            d.dot(&d)
        })
        .collect();
    let same = &issame[..pairs];
    let folds = kfold(pairs, n_folds);
    let roc_grid: Vec<f64> = (0..400).map(|k| k as f64 * 0.01).collect();
    let val_grid: Vec<f64> = (0..4000).map(|k| k as f64 * 0.001).collect();
    let (mut fold_accuracy, mut fold_threshold, mut vals, mut fars) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for test in &folds {
        let train: Vec<usize> = (0..pairs).filter(|i| !test.contains(i)).collect();
        let test: Vec<usize> = test.clone().collect();
        // The first threshold of the best accuracy on the training folds (np.argmax).
        let mut best = (0usize, f64::NEG_INFINITY);
        for (t, &threshold) in roc_grid.iter().enumerate() {
            let acc = accuracy(threshold, &dist, same, &train);
            if acc > best.1 {
                best = (t, acc);
            }
        }
        fold_threshold.push(roc_grid[best.0]);
        fold_accuracy.push(accuracy(roc_grid[best.0], &dist, same, &test));
        let threshold = val_threshold(&val_grid, &dist, same, &train, 1e-3);
        let (val, far) = val_far(threshold, &dist, same, &test);
        vals.push(val);
        fars.push(far);
    }
    let (accuracy_mean, accuracy_std) = mean_std(&fold_accuracy);
    let (val, val_std) = mean_std(&vals);
    InsightfaceVerification {
        pairs,
        folds: folds.len(),
        accuracy_mean,
        accuracy_std,
        fold_accuracy,
        fold_threshold,
        xnorm,
        val,
        val_std,
        far: fars.iter().sum::<f64>() / fars.len().max(1) as f64,
    }
}

/// Mean and population standard deviation (numpy's `np.mean`, `np.std`).
fn mean_std(v: &[f64]) -> (f64, f64) {
    let n = v.len().max(1) as f64;
    let mean = v.iter().sum::<f64>() / n;
    (mean, (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n).sqrt())
}

/// `calculate_accuracy`'s accuracy of the pairs `idx`: pairs below `threshold` predicted same.
fn accuracy(threshold: f64, dist: &[f64], same: &[bool], idx: &[usize]) -> f64 {
    let right = idx.iter().filter(|&&i| (dist[i] < threshold) == same[i]).count();
    right as f64 / idx.len().max(1) as f64
}

/// `calculate_val_far`: the share of same-person pairs and of different-person pairs of `idx`
/// accepted (below `threshold`).
fn val_far(threshold: f64, dist: &[f64], same: &[bool], idx: &[usize]) -> (f64, f64) {
    let (mut ta, mut fa, mut n_same, mut n_diff) = (0usize, 0usize, 0usize, 0usize);
    for &i in idx {
        let accepted = dist[i] < threshold;
        if same[i] {
            n_same += 1;
            ta += usize::from(accepted);
        } else {
            n_diff += 1;
            fa += usize::from(accepted);
        }
    }
    (ta as f64 / n_same as f64, fa as f64 / n_diff as f64)
}

/// `calculate_val`'s threshold: where the pairs `idx`' FAR over `grid` reaches `target`, by
/// linear interpolation of the threshold over the FAR (each repeated FAR taken at its last
/// threshold, see the module's docs); 0 when the FAR never reaches the target.
fn val_threshold(grid: &[f64], dist: &[f64], same: &[bool], idx: &[usize], target: f64) -> f64 {
    let far: Vec<f64> = grid.iter().map(|&t| val_far(t, dist, same, idx).1).collect();
    if far.iter().cloned().fold(f64::NEG_INFINITY, f64::max) < target {
        return 0.0;
    }
    // The points (far, threshold), one per distinct FAR (the last threshold of each), in
    // increasing FAR (the FAR never falls as the threshold rises).
    let mut points: Vec<(f64, f64)> = Vec::new();
    for (&f, &t) in far.iter().zip(grid) {
        match points.last_mut() {
            Some(last) if last.0 == f => last.1 = t,
            _ => points.push((f, t)),
        }
    }
    let i = points.partition_point(|p| p.0 < target);
    match (i, points.get(i)) {
        (_, Some(p)) if p.0 == target => p.1,
        (0, _) => points[0].1,
        (_, Some(&(f1, t1))) => {
            let (f0, t0) = points[i - 1];
            t0 + (target - f0) * (t1 - t0) / (f1 - f0)
        }
        (_, None) => points[points.len() - 1].1,
    }
}

/// The protocol's embeddings of a `.bin`'s images, for scoring facerec's way too: each image's
/// and its mirror's summed, L2-normalised, as `[N, D]` float32.
pub fn summed_normalised(orig: &Array2<f64>, flip: &Array2<f64>) -> Array2<f32> {
    let mut emb = orig + flip;
    for mut row in emb.rows_mut() {
        let n = row.dot(&row).sqrt();
        if n > 0.0 {
            row /= n;
        }
    }
    emb.mapv(|v| v as f32)
}

/// Splits `[N, 2D]` features of images and mirrors (as [`crate::features::embed_rows`] with
/// `flip` gives them) into the images' and the mirrors' `[N, D]`.
pub fn split_flip(features: &Array2<f32>) -> (Array2<f64>, Array2<f64>) {
    let d = features.ncols() / 2;
    let to64 = |a: ndarray::ArrayView2<f32>| a.mapv(f64::from);
    (to64(features.slice(ndarray::s![.., ..d])), to64(features.slice(ndarray::s![.., d..])))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folds_are_sklearns_kfold() {
        // KFold(10).split(range(23)): 3, 3, 3, 2, ... consecutive.
        let f = kfold(23, 10);
        assert_eq!(f.iter().map(|r| r.len()).collect::<Vec<_>>(), [3, 3, 3, 2, 2, 2, 2, 2, 2, 2]);
        assert_eq!((f[0].start, f[9].end), (0, 23));
    }

    #[test]
    fn a_hand_worked_case() {
        // Four pairs in 2 folds, embeddings along x or y: same pairs at distance 0, different
        // pairs at distance 2 (orthogonal unit vectors). Fold 0 = pairs 0-1 (same, different),
        // fold 1 = pairs 2-3 (same, different). Any threshold in (0, 2] separates them: the
        // first on the grid that does is 0.01; accuracy 1 in both folds. Norms: 1 and 3 for
        // image and mirror, XNorm 2; sums normalised.
        let mut orig = Array2::zeros((8, 2));
        let rows = [[1.0, 0.0], [1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0], [0.0, 1.0], [0.0, 1.0], [1.0, 0.0]];
        for (i, r) in rows.iter().enumerate() {
            orig[[i, 0]] = r[0];
            orig[[i, 1]] = r[1];
        }
        let flip = &orig * 3.0;
        let v = verify(&orig, &flip, &[true, false, true, false], 2);
        assert_eq!((v.accuracy_mean, v.accuracy_std), (1.0, 0.0));
        assert_eq!(v.fold_threshold, [0.01, 0.01]);
        assert!((v.xnorm - 2.0).abs() < 1e-12);
        // The different pairs sit at distance 2 exactly: the FAR is 0 up to threshold 2.0 and 1
        // from 2.001; 1e-3 interpolates to 2.000001, which accepts every pair: VAL 1, FAR 1.
        assert_eq!((v.val, v.far), (1.0, 1.0));
    }

    #[test]
    fn the_val_threshold_interpolates_the_last_threshold_of_each_far() {
        // Three different pairs at distances 0.5, 1.5, 2.5: over the grid 0, 1, 2, 3 the FAR is
        // 0, 1/3, 2/3, 1. A target of 1/3 is met exactly at threshold 1; 0.5 lies halfway
        // between (1/3, 1) and (2/3, 2): 1.5.
        let grid = [0.0, 1.0, 2.0, 3.0];
        let dist = [0.5, 1.5, 2.5, 0.1, 0.1];
        let same = [false, false, false, true, true];
        let t = val_threshold(&grid, &dist, &same, &[0, 1, 2, 3, 4], 1.0 / 3.0);
        assert_eq!(t, 1.0);
        // Repeated FAR values: the grid 0, 0.5, 1, 1.5 gives FAR 0, 0, 1/3, 1/3: the points are
        // (0, 0.5) and (1/3, 1.5); 1/6 interpolates to 1.0.
        let t = val_threshold(&[0.0, 0.5, 1.0, 1.5], &dist, &same, &[0, 1, 2, 3, 4], 1.0 / 6.0);
        assert!((t - 1.0).abs() < 1e-12, "{t}");
        let t = val_threshold(&grid, &dist, &same, &[0, 1, 2, 3, 4], 0.5);
        assert!((t - 1.5).abs() < 1e-12, "{t}");
        // Never reached: 0.
        assert_eq!(val_threshold(&[0.0, 0.1], &dist, &same, &[0, 1, 2, 3, 4], 0.5), 0.0);
    }
}
