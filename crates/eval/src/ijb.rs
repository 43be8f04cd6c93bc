//! IJB-B / IJB-C 1:1 template verification as insightface's arcface_torch `eval_ijbc.py`
//! computes it (`recognition/arcface_torch/eval_ijbc.py` of deepinsight/insightface; Maze et
//! al. 2018, "IARPA Janus Benchmark - C"):
//!
//! 1. image features: the features of each aligned image and of its mirror (`[N, 2D]`, image
//!    then mirror), taken as the mode says ([`Modes`]): F1 sums the two halves (F0 takes the
//!    image's alone); N0 L2-normalises each image's feature (N1 keeps its norm, a quality weight:
//!    eval_ijbc.py's `use_norm_score = True`); D1 multiplies it by the detector's faceness score;
//! 2. media pooling: inside a template, the mean of the images of each media (a video's frames,
//!    or one still), then the template's feature = the sum of its media's means, L2-normalised
//!    (`image2template_feature`);
//! 3. a pair's score = the dot product of its two template features (`verification`), computed
//!    100,000 pairs at a time as eval_ijbc.py does (IJB-C has 15.7 million pairs);
//! 4. the ROC as sklearn's `roc_curve` makes it (thresholds at the distinct scores, collinear
//!    points dropped: `drop_intermediate=True`), and TAR at FAR 1e-6 ... 1e-1 each taken at the
//!    ROC point whose FPR is nearest the target, ties to the one with the larger TPR (the script's
//!    `min(zip(abs(fpr - x), range(len(fpr))))` over the flipped curve).
//!
//! Numerics follow numpy's: image and media features in `f32` (media means and template sums
//! added row after row, as numpy reduces along axis 0; N0's norms by numpy's pairwise sum
//! along a row, [`pairwise_sum`]), template features and scores in `f64`
//! (`template_feats` is `np.zeros`, float64). crates/eval/tests/ijb.rs checks all of it against
//! eval_ijbc.py's own functions.

use std::path::Path;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use tch::Device;

use facerec_data::align::Template;
use facerec_data::ijb::IjbMeta;
use facerec_data::normalize::PixelNorm;
use facerec_model::Backbone;

use crate::error::{EvalError, Result};
use crate::plot;

/// The FARs eval_ijbc.py's table reports (`x_labels`).
pub const FARS: [f64; 6] = [1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1];

/// Pairs scored at a time (eval_ijbc.py's `batchsize`).
pub const PAIR_BATCH: usize = 100_000;

/// eval_ijbc.py's test mode: `use_flip_test` (F), `use_norm_score` (N), `use_detector_score`
/// (D); its defaults are all on (F1 N1 D1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Modes {
    /// F1: image and mirror features summed; F0: the image's alone.
    pub flip: bool,
    /// N1: each image's feature keeps its norm; N0: it is L2-normalised first.
    pub norm_score: bool,
    /// D1: each image's feature is multiplied by its detector score.
    pub detector_score: bool,
}

impl Default for Modes {
    fn default() -> Self {
        Modes { flip: true, norm_score: true, detector_score: true }
    }
}

impl Modes {
    /// All eight, F1N1D1 first.
    pub fn all() -> Vec<Modes> {
        let mut out = Vec::new();
        for flip in [true, false] {
            for norm_score in [true, false] {
                for detector_score in [true, false] {
                    out.push(Modes { flip, norm_score, detector_score });
                }
            }
        }
        out
    }

    /// `F1N1D1`.
    pub fn label(self) -> String {
        format!("F{}N{}D{}", self.flip as u8, self.norm_score as u8, self.detector_score as u8)
    }

    /// Parses `F1N1D1` (any case; `F`, `N`, `D` each followed by 0 or 1, in this order).
    pub fn parse(text: &str) -> std::result::Result<Modes, String> {
        let t = text.trim().to_ascii_uppercase();
        let b = t.as_bytes();
        let bit = |c: u8| match c {
            b'0' => Some(false),
            b'1' => Some(true),
            _ => None,
        };
        if b.len() == 6 && b[0] == b'F' && b[2] == b'N' && b[4] == b'D' {
            if let (Some(flip), Some(norm_score), Some(detector_score)) = (bit(b[1]), bit(b[3]), bit(b[5])) {
                return Ok(Modes { flip, norm_score, detector_score });
            }
        }
        Err(format!("{text:?} is not a test mode: F, N and D each followed by 0 or 1, as F1N1D1 (eval_ijbc.py's default) or F1N0D0"))
    }
}

/// The feature eval_ijbc.py pools of one image, from its row `[2D]` (image then mirror) and its
/// detector score, written into `out` `[D]`.
pub fn image_feature(row: &[f32], score: f32, modes: Modes, out: &mut [f32]) {
    let d = row.len() / 2;
    if modes.flip {
        for (o, (a, b)) in out.iter_mut().zip(row[..d].iter().zip(&row[d..])) {
            *o = a + b;
        }
    } else {
        out.copy_from_slice(&row[..d]);
    }
    if !modes.norm_score {
        // numpy: x / np.sqrt(np.sum(x ** 2, -1, keepdims=True)), all in float32
        let squares: Vec<f32> = out.iter().map(|&v| v * v).collect();
        let norm = pairwise_sum(&squares).sqrt();
        for v in out.iter_mut() {
            *v /= norm;
        }
    }
    if modes.detector_score {
        for v in out.iter_mut() {
            *v *= score;
        }
    }
}

/// numpy's float32 sum along a contiguous axis (`pairwise_sum` of its loops): fewer than 8
/// values one after the other; up to 128 in eight interleaved partial sums added as
/// `((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))`, then the rest; more split in two halves
/// (the first a multiple of 8 long).
pub fn pairwise_sum(a: &[f32]) -> f32 {
    let n = a.len();
    if n < 8 {
        let mut res = -0.0f32;
        for &v in a {
            res += v;
        }
        res
    } else if n <= 128 {
        let mut r = [0f32; 8];
        r.copy_from_slice(&a[..8]);
        let mut i = 8;
        while i < n - n % 8 {
            for k in 0..8 {
                r[k] += a[i + k];
            }
            i += 8;
        }
        let mut res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
        for &v in &a[i..] {
            res += v;
        }
        res
    } else {
        let mut n2 = n / 2;
        n2 -= n2 % 8;
        pairwise_sum(&a[..n2]) + pairwise_sum(&a[n2..])
    }
}

/// Template features `[templates, D]` (row `t` for `meta.template_ids[t]`), L2-normalised, from
/// the image features `[N, 2D]` of `meta`'s images (`image2template_feature`).
pub fn template_features(features: &[f32], meta: &IjbMeta, modes: Modes) -> Result<Vec<f64>> {
    let n = meta.len();
    if n == 0 || !features.len().is_multiple_of(n) || !(features.len() / n).is_multiple_of(2) {
        return Err(EvalError::Invalid(format!(
            "{} feature values are not [{n}, 2D] (each image's features and its mirror's) for the {n} images of {}",
            features.len(),
            meta.files.name_5pts_score.display()
        )));
    }
    let width = features.len() / n;
    let d = width / 2;
    let templates = meta.template_ids.len();
    // images grouped by template, then media id, then row: the order numpy visits them in
    let mut order: Vec<u32> = (0..n as u32).collect();
    order.par_sort_unstable_by_key(|&i| (meta.template_of[i as usize], meta.medias[i as usize], i));
    let mut starts = vec![0usize; templates + 1];
    for &i in &order {
        starts[meta.template_of[i as usize] as usize + 1] += 1;
    }
    for t in 0..templates {
        starts[t + 1] += starts[t];
    }
    let mut out = vec![0f64; templates * d];
    out.par_chunks_mut(d.max(1)).enumerate().for_each(|(t, dst)| {
        let images = &order[starts[t]..starts[t + 1]];
        let mut template = vec![0f32; d];
        let mut media = vec![0f32; d];
        let mut image = vec![0f32; d];
        let mut k = 0;
        while k < images.len() {
            let m = meta.medias[images[k] as usize];
            let mut count = 0usize;
            media.iter_mut().for_each(|v| *v = 0.0);
            while k < images.len() && meta.medias[images[k] as usize] == m {
                let i = images[k] as usize;
                image_feature(&features[i * width..(i + 1) * width], meta.scores[i], modes, &mut image);
                for (a, b) in media.iter_mut().zip(&image) {
                    *a += b;
                }
                count += 1;
                k += 1;
            }
            // np.mean in float32: the sum divided by the count
            for (a, b) in template.iter_mut().zip(&media) {
                *a += b / count as f32;
            }
        }
        // sklearn.preprocessing.normalize: a zero row stays zero
        let norm = template.iter().map(|&v| f64::from(v) * f64::from(v)).sum::<f64>().sqrt();
        let norm = if norm == 0.0 { 1.0 } else { norm };
        for (o, &v) in dst.iter_mut().zip(&template) {
            *o = f64::from(v) / norm;
        }
    });
    Ok(out)
}

/// The score of each pair: the dot product of its templates' features `[templates, D]`
/// (`verification`), [`PAIR_BATCH`] pairs at a time over the cores.
pub fn pair_scores(template_features: &[f64], dim: usize, t1: &[u32], t2: &[u32]) -> Vec<f64> {
    let mut scores = vec![0f64; t1.len()];
    scores.par_chunks_mut(PAIR_BATCH).enumerate().for_each(|(c, out)| {
        let base = c * PAIR_BATCH;
        for (k, s) in out.iter_mut().enumerate() {
            let a = &template_features[t1[base + k] as usize * dim..][..dim];
            let b = &template_features[t2[base + k] as usize * dim..][..dim];
            *s = a.iter().zip(b).map(|(x, y)| x * y).sum();
        }
    });
    scores
}

/// sklearn's `roc_curve(labels, scores)` (drop_intermediate=True): `fpr`, `tpr` and
/// `thresholds`, the first point `(0, 0)` at threshold infinity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Roc {
    pub fpr: Vec<f64>,
    pub tpr: Vec<f64>,
    pub thresholds: Vec<f64>,
    pub positives: usize,
    pub negatives: usize,
}

impl Roc {
    /// The ROC of `scores` with `genuine` the pairs of one person. Errors on a NaN score or when
    /// one kind of pair is missing.
    pub fn new(scores: &[f64], genuine: &[bool]) -> Result<Roc> {
        if scores.len() != genuine.len() {
            return Err(EvalError::Invalid(format!("{} scores for {} labels", scores.len(), genuine.len())));
        }
        if let Some(i) = scores.iter().position(|s| s.is_nan()) {
            return Err(EvalError::Invalid(format!("pair {} scores NaN (a NaN feature?)", i + 1)));
        }
        let positives = genuine.iter().filter(|&&g| g).count();
        let negatives = genuine.len() - positives;
        if positives == 0 || negatives == 0 {
            return Err(EvalError::Invalid(format!(
                "an ROC needs genuine and impostor pairs: {positives} genuine, {negatives} impostor"
            )));
        }
        // descending scores; the order inside a tie does not change the counts at its end
        let mut sorted: Vec<(f64, bool)> = scores.iter().copied().zip(genuine.iter().copied()).collect();
        sorted.par_sort_unstable_by(|a, b| b.0.total_cmp(&a.0));
        // Each distinct score's (fps, tps, threshold) streamed through drop_intermediate: a
        // point stays when it is the first or last, or where the second difference of fps or
        // of tps is not zero.
        let mut fps_out = Vec::new();
        let mut tps_out = Vec::new();
        let mut thr_out = Vec::new();
        let mut window: Vec<(u64, u64, f64)> = Vec::with_capacity(3);
        let mut keep = |p: (u64, u64, f64)| {
            fps_out.push(p.0);
            tps_out.push(p.1);
            thr_out.push(p.2);
        };
        let (mut tp, mut fp) = (0u64, 0u64);
        for (i, &(s, g)) in sorted.iter().enumerate() {
            if g {
                tp += 1;
            } else {
                fp += 1;
            }
            let last = i + 1 == sorted.len();
            if !last && sorted[i + 1].0 == s {
                continue;
            }
            let p = (fp, tp, s);
            match window.len() {
                0 => {
                    keep(p);
                    window.push(p);
                }
                1 => window.push(p),
                _ => {
                    let (a, b) = (window[0], window[1]);
                    let bend = (p.0 as i64 - 2 * b.0 as i64 + a.0 as i64) != 0 || (p.1 as i64 - 2 * b.1 as i64 + a.1 as i64) != 0;
                    if bend {
                        keep(b);
                    }
                    window[0] = b;
                    window[1] = p;
                }
            }
        }
        if window.len() == 2 {
            keep(window[1]);
        }
        let mut fpr = Vec::with_capacity(fps_out.len() + 1);
        let mut tpr = Vec::with_capacity(fps_out.len() + 1);
        let mut thresholds = Vec::with_capacity(fps_out.len() + 1);
        fpr.push(0.0);
        tpr.push(0.0);
        thresholds.push(f64::INFINITY);
        let (n, p) = (negatives as f64, positives as f64);
        for k in 0..fps_out.len() {
            fpr.push(fps_out[k] as f64 / n);
            tpr.push(tps_out[k] as f64 / p);
            thresholds.push(thr_out[k]);
        }
        Ok(Roc { fpr, tpr, thresholds, positives, negatives })
    }

    /// The point eval_ijbc.py reports for `far`: the one whose FPR is nearest `far`, of those
    /// the last on the curve (the largest TPR). Its index into `fpr`.
    pub fn nearest(&self, far: f64) -> usize {
        // `min(zip(abs(fpr - far), range(len(fpr))))` over the flipped curve: the first of the
        // flipped minima, the last of the curve's
        let mut best = self.fpr.len() - 1;
        let mut best_gap = (self.fpr[best] - far).abs();
        for j in (0..self.fpr.len() - 1).rev() {
            let gap = (self.fpr[j] - far).abs();
            if gap < best_gap {
                best = j;
                best_gap = gap;
            }
        }
        best
    }

    /// sklearn's `auc(fpr, tpr)` (the trapezoid rule).
    pub fn auc(&self) -> f64 {
        self.fpr.windows(2).zip(self.tpr.windows(2)).map(|(x, y)| (x[1] - x[0]) * (y[0] + y[1]) / 2.0).sum()
    }
}

/// One cell of the table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TarAtFar {
    /// The target.
    pub far: f64,
    /// TPR of the point taken.
    pub tar: f64,
    /// The FPR of that point (a target below 1 / impostor pairs is not reached: this says so).
    pub fpr: f64,
    /// The score threshold of that point.
    pub threshold: f64,
}

/// The result of one test mode.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModeResult {
    pub mode: String,
    pub modes: Modes,
    pub tar_at_far: Vec<TarAtFar>,
    pub auc: f64,
    /// Points of the ROC for the plot (FPR > 0), at most [`PLOT_POINTS`].
    pub roc: Vec<(f64, f64)>,
}

/// Points of each ROC the report keeps.
pub const PLOT_POINTS: usize = 2000;

impl ModeResult {
    /// The table row and curve of `roc`.
    pub fn new(modes: Modes, roc: &Roc) -> ModeResult {
        let tar_at_far = FARS
            .iter()
            .map(|&far| {
                let k = roc.nearest(far);
                TarAtFar { far, tar: roc.tpr[k], fpr: roc.fpr[k], threshold: roc.thresholds[k] }
            })
            .collect();
        let points: Vec<(f64, f64)> = roc.fpr.iter().zip(&roc.tpr).filter(|p| *p.0 > 0.0).map(|(&f, &t)| (f, t)).collect();
        let step = points.len().div_ceil(PLOT_POINTS).max(1);
        let mut curve: Vec<(f64, f64)> = points.iter().step_by(step).copied().collect();
        if let (Some(last), Some(kept)) = (points.last(), curve.last()) {
            if last != kept {
                curve.push(*last);
            }
        }
        ModeResult { mode: modes.label(), modes, tar_at_far, auc: roc.auc(), roc: curve }
    }
}

/// What `facerec eval --ijb` writes (`<set>_report.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IjbReport {
    /// `IJBC` or `IJBB`.
    pub set: String,
    pub protocol: String,
    /// Where the features came from (a model file or a .npy).
    pub features: String,
    pub images: usize,
    pub templates: usize,
    pub pairs: usize,
    pub genuine_pairs: usize,
    pub impostor_pairs: usize,
    pub results: Vec<ModeResult>,
}

/// The protocol in words.
pub const PROTOCOL: &str = "IJB 1:1 template verification as insightface's arcface_torch eval_ijbc.py: image features \
    (image + mirror for F1), L2-normalised for N0, times the detector score for D1; media means summed into each \
    template, L2-normalised; cosine of template pairs; sklearn's roc_curve; TAR at each FAR taken at the ROC point \
    whose FPR is nearest it";

/// Scores `meta`'s pairs on the image features `[N, 2D]` in each mode of `modes`.
pub fn evaluate(features: &[f32], meta: &IjbMeta, modes: &[Modes], source: &str) -> Result<IjbReport> {
    let n = meta.len();
    let dim = features.len() / n.max(1) / 2;
    let mut results = Vec::new();
    for &m in modes {
        let t0 = std::time::Instant::now();
        let templates = template_features(features, meta, m)?;
        let t1 = t0.elapsed().as_secs_f64();
        let scores = pair_scores(&templates, dim, &meta.pairs.t1, &meta.pairs.t2);
        let t2 = t0.elapsed().as_secs_f64();
        let roc = Roc::new(&scores, &meta.pairs.genuine)?;
        tracing::info!(mode = %m.label(), "templates {t1:.1} s, pairs {:.1} s, ROC {:.1} s", t2 - t1, t0.elapsed().as_secs_f64() - t2);
        results.push(ModeResult::new(m, &roc));
    }
    let genuine = meta.pairs.genuine.iter().filter(|&&g| g).count();
    Ok(IjbReport {
        set: meta.files.name.clone(),
        protocol: PROTOCOL.to_owned(),
        features: source.to_owned(),
        images: n,
        templates: meta.template_ids.len(),
        pairs: meta.pairs.len(),
        genuine_pairs: genuine,
        impostor_pairs: meta.pairs.len() - genuine,
        results,
    })
}

impl IjbReport {
    /// `<set>_report.json` (`ijbc_report.json`).
    pub fn report_file(set: &str) -> String {
        format!("{}_report.json", set.to_ascii_lowercase())
    }

    /// `<set>_roc.png`.
    pub fn roc_file(set: &str) -> String {
        format!("{}_roc.png", set.to_ascii_lowercase())
    }

    /// The table eval_ijbc.py prints (TAR in %, two decimals), one row per mode.
    pub fn table(&self, name: &str) -> Vec<String> {
        let mut lines = vec![format!("{:<28}{}", "Methods", FARS.iter().map(|f| format!("{:>8}", format!("{f:.0e}"))).collect::<String>())];
        for r in &self.results {
            let cells: String = r.tar_at_far.iter().map(|t| format!("{:>8.2}", 100.0 * t.tar)).collect();
            lines.push(format!("{:<28}{cells}", format!("{name}-{}-{}", self.set, r.mode)));
        }
        lines
    }

    /// The ROC figure (FAR on a log axis from 1e-6, as eval_ijbc.py's plot).
    pub fn figure(&self, name: &str) -> plot::Figure {
        let curves: Vec<(String, Vec<(f64, f64)>)> =
            self.results.iter().map(|r| (format!("{} {} (AUC {:.4}%)", name, r.mode, 100.0 * r.auc), r.roc.clone())).collect();
        let mut fig = plot::lines_figure(
            &format!("{name}: ROC on {} ({} template pairs)", self.set, self.pairs),
            &format!("false positive rate (from 1/{n}: {n} impostor pairs)", n = self.impostor_pairs),
            "true positive rate",
            true,
            &curves,
        );
        fig.x_range = (1e-6_f64.max(1.0 / self.impostor_pairs.max(1) as f64 / 2.0), 1.0);
        let low = self.results.iter().flat_map(|r| r.tar_at_far.iter().map(|t| t.tar)).fold(1.0f64, f64::min);
        fig.y_range = ((low - 0.05).max(0.0), 1.0);
        if let Some(first) = self.results.first() {
            fig.series.push(plot::Series {
                name: format!("{} TAR at FAR 1e-6..1e-1", first.mode),
                colour: plotters::style::BLACK,
                marks: plot::Marks::Crosses(first.tar_at_far.iter().filter(|t| t.fpr > 0.0).map(|t| (t.fpr, t.tar)).collect()),
            });
        }
        fig
    }

    /// Writes `<set>_report.json` and `<set>_roc.png` into `dir`.
    pub fn write(&self, dir: &Path, name: &str) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(|e| EvalError::Io { path: dir.to_path_buf(), error: e })?;
        let json = serde_json::to_vec_pretty(self).map_err(|e| EvalError::Invalid(e.to_string()))?;
        facerec_core::fsutil::atomic_write_bytes(&dir.join(Self::report_file(&self.set)), &json)?;
        self.figure(name).draw(&dir.join(Self::roc_file(&self.set)))?;
        Ok(())
    }
}

/// Features `[N, 2D]` (image, then mirror) of every image of `meta`: read, aligned to
/// `template` by its five points, normalised by `norm`, `batch` at a time through the one
/// embedding path ([`crate::features::Embedder`]); `progress` gets the images done.
pub fn extract_features(
    meta: &IjbMeta,
    backbone: &dyn Backbone,
    device: Device,
    template: Template,
    norm: PixelNorm,
    batch: usize,
    progress: &dyn Fn(u64),
) -> Result<Vec<f32>> {
    let embedder = crate::features::Embedder::new(backbone, device)?;
    let (h, w) = template.size();
    let rows: Vec<usize> = (0..meta.len()).collect();
    let mut out: Vec<f32> = Vec::new();
    for chunk in rows.chunks(batch.max(1)) {
        let crops: Vec<Vec<u8>> = chunk
            .par_iter()
            .map(|&i| {
                let path = meta.image_path(i);
                let img = facerec_data::image_io::read_rgb(&path)?;
                facerec_data::align::align(&img, &meta.landmarks[i], template).map_err(|e| {
                    EvalError::Input {
                        path: meta.files.name_5pts_score.clone(),
                        msg: format!("line {}: aligning {}: {e}", meta.lines[i], path.display()),
                    }
                })
            })
            .collect::<Result<_>>()?;
        let x = facerec_data::normalize::crops_to_tensor(&crops, h as usize, w as usize, norm)?;
        let f = embedder.batch(&x, true)?; // [n, 2D]
        out.extend(crate::features::to_array2::<f32>(&f)?.iter().copied());
        progress(chunk.len() as u64);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roc_is_sklearns_documented_example_and_the_nearest_point_prefers_the_larger_tpr() {
        // sklearn.metrics.roc_curve's docstring: y = [1, 1, 2, 2] (2 positive), scores
        // [0.1, 0.4, 0.35, 0.8] -> fpr [0, 0, 0.5, 0.5, 1], tpr [0, 0.5, 0.5, 1, 1],
        // thresholds [inf, 0.8, 0.4, 0.35, 0.1].
        let roc = Roc::new(&[0.1, 0.4, 0.35, 0.8], &[false, false, true, true]).unwrap();
        assert_eq!(roc.fpr, [0.0, 0.0, 0.5, 0.5, 1.0]);
        assert_eq!(roc.tpr, [0.0, 0.5, 0.5, 1.0, 1.0]);
        assert_eq!(roc.thresholds, [f64::INFINITY, 0.8, 0.4, 0.35, 0.1]);
        assert_eq!(roc.auc(), 0.75);
        // FAR 0.4 is nearest 0.5, reached at points 2 and 3: the script takes 3 (TPR 1)
        assert_eq!(roc.nearest(0.4), 3);
        assert_eq!(roc.nearest(1e-6), 1, "FPR 0 at points 0 and 1: TPR 0.5");
        // collinear points are dropped: four impostors then four genuine, all distinct
        let roc = Roc::new(&[8.0, 7.0, 6.0, 5.0, 4.0, 3.0, 2.0, 1.0], &[true, true, true, true, false, false, false, false]).unwrap();
        assert_eq!(roc.fpr, [0.0, 0.0, 0.0, 1.0]);
        assert_eq!(roc.tpr, [0.0, 0.25, 1.0, 1.0]);
        assert!(Roc::new(&[0.5, f64::NAN], &[true, false]).is_err());
        assert!(Roc::new(&[0.5, 0.2], &[true, true]).is_err());
    }

    #[test]
    fn modes_read_and_print_as_eval_ijbcs_names() {
        assert_eq!(Modes::parse("f1n0d1"), Ok(Modes { flip: true, norm_score: false, detector_score: true }));
        assert_eq!(Modes::default().label(), "F1N1D1");
        assert!(Modes::parse("F1N1").is_err() && Modes::parse("F2N1D1").is_err());
        assert_eq!(Modes::all().len(), 8);
        // N0: the image feature L2-normalised, D1: then times the score; F1: halves added
        let mut out = [0f32; 2];
        image_feature(&[3.0, 0.0, 0.0, 4.0], 0.5, Modes { flip: true, norm_score: false, detector_score: true }, &mut out);
        assert_eq!(out, [0.3, 0.4]);
        image_feature(&[3.0, 0.0, 0.0, 4.0], 0.5, Modes { flip: false, norm_score: true, detector_score: false }, &mut out);
        assert_eq!(out, [3.0, 0.0]);
    }
}
