//! Open-set protocols over every image of the test identities: a harder test on LFW's images
//! than its 6,000 pairs, in the spirit of LFW's BLUFR protocol (Liao et al., "A benchmark study
//! of large-scale unconstrained face recognition", IJCB 2014).
//!
//! - **Verification over all pairs**: every pair of distinct images among the test images is
//!   scored (cosine similarity); pairs of one identity are genuine, the rest impostors. TAR at
//!   FAR 1e-3, 1e-4 and 1e-5: with `n` impostor pairs, at most `floor(far * n)` of them may be
//!   accepted, so the threshold is the `floor(far * n) + 1`-th largest impostor score and a pair
//!   is accepted when its score is strictly above it (ties at the threshold are rejected, so the
//!   FAR reached is at most the target). A FAR below `1 / n` is not resolved (`None`).
//! - **Open-set identification**: the gallery holds one image of each identity with two or more
//!   images (its first row, which is its lowest-numbered image on LFW), the other images of those
//!   identities are genuine probes, and every image of an identity with one image is an impostor
//!   probe (its identity is not in the gallery). A genuine probe is identified at rank 1 when no
//!   gallery entry is strictly more similar than its own identity's. DIR at FAR `f`: the
//!   threshold lets at most `floor(f * m)` of the `m` impostor probes' best scores through (as
//!   above), and DIR is the fraction of genuine probes identified at rank 1 with their best score
//!   above it. Rank-1 alone is the closed-set rate (DIR at FAR 1).
//!
//! BLUFR differs: it draws 10 random splits of all of LFW into 3,000 training and ~6,000 test
//! identities, and its identification gallery is 1,000 random identities with the rest as
//! impostors. Here the test identities are those of the evaluated folds (identity-disjoint from
//! training in facerec's LFW protocol), with one deterministic split and no lists to download.
//!
//! Scores are computed in float64 blocks of rows, so a pair's score is the same however the
//! block boundaries fall; the impostor scores are kept (8 bytes a pair: 170 MB for the 21 million
//! pairs of LFW folds 1-5) to pick the thresholds by selection, not a sort.

use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

use crate::error::{EvalError, Result};

/// The FARs of all-pairs verification.
pub const VERIFICATION_FARS: [f64; 3] = [1e-3, 1e-4, 1e-5];
/// The FARs of open-set identification.
pub const IDENTIFICATION_FARS: [f64; 2] = [1e-2, 1e-1];
/// Rows of the similarity matrix computed at once.
const BLOCK: i64 = 1024;

/// TAR (or DIR) at one FAR.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RateAtFar {
    pub far: f64,
    /// `None` when the impostors cannot resolve the FAR (`far * impostors < 1`).
    pub rate: Option<f64>,
    /// Accepted when the score is strictly above it.
    pub threshold: Option<f64>,
    /// Impostors above the threshold (at most `floor(far * impostors)`).
    pub false_accepts: u64,
}

/// Verification over every pair of the test images.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AllPairs {
    pub genuine_pairs: u64,
    pub impostor_pairs: u64,
    pub tar_at_far: Vec<RateAtFar>,
}

/// Open-set identification with one gallery image per identity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OpenSetIdentification {
    pub gallery: usize,
    pub genuine_probes: usize,
    /// Probes of identities not in the gallery.
    pub impostor_probes: usize,
    /// Closed-set rank-1 of the genuine probes.
    pub rank1: f64,
    pub dir_at_far: Vec<RateAtFar>,
}

/// Both open-set protocols on one set of images.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OpenSetReport {
    pub images: usize,
    pub identities: usize,
    pub verification: AllPairs,
    pub identification: OpenSetIdentification,
    /// Seconds the scoring took (features given).
    pub seconds: f64,
}

impl OpenSetReport {
    /// The protocol's lines for a terminal or a log.
    pub fn lines(&self) -> Vec<String> {
        let v = &self.verification;
        let i = &self.identification;
        vec![
            format!(
                "open set, all pairs of {} images of {} identities ({} genuine, {} impostor): {}",
                self.images,
                self.identities,
                v.genuine_pairs,
                v.impostor_pairs,
                rates("TAR", &v.tar_at_far)
            ),
            format!(
                "open-set identification ({} gallery, {} genuine and {} impostor probes): rank-1 {:.2}%, {}",
                i.gallery,
                i.genuine_probes,
                i.impostor_probes,
                100.0 * i.rank1,
                rates("DIR", &i.dir_at_far)
            ),
        ]
    }

    /// The resolved rates as named metrics: `open_tar_far1e-3` .. `open_tar_far1e-5`,
    /// `open_rank1`, `open_dir_far1e-2`, `open_dir_far1e-1`.
    pub fn metrics(&self) -> Vec<(String, f64)> {
        let named = |what: &str, at: &[RateAtFar]| -> Vec<(String, f64)> {
            at.iter().filter_map(|r| r.rate.map(|v| (format!("open_{what}_far{:.0e}", r.far), v))).collect()
        };
        let mut m = named("tar", &self.verification.tar_at_far);
        if self.identification.rank1.is_finite() {
            m.push(("open_rank1".into(), self.identification.rank1));
        }
        m.extend(named("dir", &self.identification.dir_at_far));
        m
    }

    /// The TAR at `far` of all-pairs verification, where resolved.
    pub fn tar(&self, far: f64) -> Option<f64> {
        self.verification.tar_at_far.iter().find(|r| r.far == far).and_then(|r| r.rate)
    }

    /// The DIR at `far` of open-set identification, where resolved.
    pub fn dir(&self, far: f64) -> Option<f64> {
        self.identification.dir_at_far.iter().find(|r| r.far == far).and_then(|r| r.rate)
    }
}

fn rates(what: &str, at: &[RateAtFar]) -> String {
    at.iter()
        .map(|r| match r.rate {
            Some(v) => format!("{what} {:.2}% at FAR {:.0e}", 100.0 * v, r.far),
            None => format!("{what} at FAR {:.0e} unresolved", r.far),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Both protocols over `features` `[N, D]` (any float kind, on any device) with one label per
/// row. The gallery image of an identity is its first row.
pub fn open_set(features: &Tensor, labels: &[i64]) -> Result<OpenSetReport> {
    let t0 = std::time::Instant::now();
    let n = labels.len();
    if features.dim() != 2 || features.size()[0] as usize != n {
        return Err(EvalError::Invalid(format!("open set: {n} labels for features of shape {:?}", features.size())));
    }
    let x = unit_rows(features)?;
    let verification = all_pairs(&x, labels)?;
    let identification = identification(&x, labels)?;
    let identities = labels.iter().collect::<std::collections::HashSet<_>>().len();
    Ok(OpenSetReport { images: n, identities, verification, identification, seconds: t0.elapsed().as_secs_f64() })
}

/// L2-normalised float64 rows on the CPU.
fn unit_rows(features: &Tensor) -> Result<Tensor> {
    let f = features.f_to_kind(Kind::Double)?.f_to_device(tch::Device::Cpu)?;
    Ok(f.f_div(&f.f_norm_scalaropt_dim(2, [1i64].as_slice(), true)?.f_clamp_min(1e-12)?)?)
}

fn all_pairs(x: &Tensor, labels: &[i64]) -> Result<AllPairs> {
    let n = labels.len() as i64;
    let l = Tensor::f_from_slice(labels)?;
    let columns = Tensor::f_arange(n, (Kind::Int64, tch::Device::Cpu))?;
    let (mut genuine, mut impostor) = (Vec::<f64>::new(), Vec::<f64>::new());
    let xt = x.f_tr()?;
    for start in (0..n).step_by(BLOCK as usize) {
        let len = BLOCK.min(n - start);
        let rows = x.f_narrow(0, start, len)?;
        let sim = rows.f_matmul(&xt)?; // [len, n]
        let row_ids = columns.f_narrow(0, start, len)?.f_unsqueeze(1)?;
        let upper = columns.f_unsqueeze(0)?.f_gt_tensor(&row_ids)?; // j > i
        let same = l.f_narrow(0, start, len)?.f_unsqueeze(1)?.f_eq_tensor(&l.f_unsqueeze(0)?)?;
        let g = sim.f_masked_select(&upper.f_logical_and(&same)?)?;
        let i = sim.f_masked_select(&upper.f_logical_and(&same.f_logical_not()?)?)?;
        genuine.extend(Vec::<f64>::try_from(&g)?);
        impostor.extend(Vec::<f64>::try_from(&i)?);
    }
    let tar_at_far = VERIFICATION_FARS.iter().map(|&far| rate_at_far(far, &mut impostor, genuine.iter().map(|&s| (true, s)))).collect();
    Ok(AllPairs { genuine_pairs: genuine.len() as u64, impostor_pairs: impostor.len() as u64, tar_at_far })
}

fn identification(x: &Tensor, labels: &[i64]) -> Result<OpenSetIdentification> {
    let mut count = std::collections::HashMap::<i64, usize>::new();
    for &l in labels {
        *count.entry(l).or_default() += 1;
    }
    let mut column = std::collections::HashMap::<i64, i64>::new();
    let (mut gallery, mut genuine, mut impostor) = (Vec::new(), Vec::new(), Vec::new());
    for (row, &l) in labels.iter().enumerate() {
        if count[&l] == 1 {
            impostor.push(row as i64);
        } else if let std::collections::hash_map::Entry::Vacant(e) = column.entry(l) {
            e.insert(gallery.len() as i64);
            gallery.push(row as i64);
        } else {
            genuine.push(row as i64);
        }
    }
    let g = x.f_index_select(0, &Tensor::f_from_slice(&gallery)?)?;
    // Similarities `[probes, gallery]`.
    let against_gallery = |probes: &[i64]| -> Result<Tensor> {
        let p = x.f_index_select(0, &Tensor::f_from_slice(probes)?)?;
        Ok(p.f_matmul(&g.f_tr()?)?)
    };
    let (rank1, genuine_best) = if genuine.is_empty() || gallery.is_empty() {
        (Vec::new(), Vec::new())
    } else {
        let sim = against_gallery(&genuine)?;
        let truth: Vec<i64> = genuine.iter().map(|&r| column[&labels[r as usize]]).collect();
        let own = sim.f_gather(1, &Tensor::f_from_slice(&truth)?.f_unsqueeze(1)?, false)?;
        let beaten = sim.f_gt_tensor(&own)?.f_any_dim(1, false)?;
        (Vec::<bool>::try_from(&beaten.f_logical_not()?)?, Vec::<f64>::try_from(&own.f_squeeze_dim(1)?)?)
    };
    let mut impostor_best = if impostor.is_empty() || gallery.is_empty() { Vec::new() } else { Vec::<f64>::try_from(&against_gallery(&impostor)?.f_amax([1i64].as_slice(), false)?)? };
    let identified: Vec<(bool, f64)> = rank1.iter().copied().zip(genuine_best).collect();
    let dir_at_far =
        IDENTIFICATION_FARS.iter().map(|&far| rate_at_far(far, &mut impostor_best, identified.iter().copied())).collect();
    let rank1_rate = if rank1.is_empty() { f64::NAN } else { rank1.iter().filter(|&&c| c).count() as f64 / rank1.len() as f64 };
    Ok(OpenSetIdentification {
        gallery: gallery.len(),
        genuine_probes: genuine.len(),
        impostor_probes: impostor.len(),
        rank1: rank1_rate,
        dir_at_far,
    })
}

/// The rate at `far`: the threshold lets at most `floor(far * impostors)` impostor scores
/// through (strictly above it), and the rate is the fraction of `genuine` entries that count
/// (`true`) with a score above it. `impostors` is reordered.
fn rate_at_far(far: f64, impostors: &mut [f64], genuine: impl ExactSizeIterator<Item = (bool, f64)>) -> RateAtFar {
    let allowed = (far * impostors.len() as f64 + 1e-9).floor() as usize;
    let total = genuine.len();
    if allowed == 0 || allowed >= impostors.len() || total == 0 {
        return RateAtFar { far, rate: None, threshold: None, false_accepts: 0 };
    }
    // The (allowed + 1)-th largest impostor score.
    let (_, &mut threshold, _) = impostors.select_nth_unstable_by(allowed, |a, b| b.total_cmp(a));
    let false_accepts = impostors.iter().filter(|&&s| s > threshold).count() as u64;
    let accepted = genuine.filter(|&(counts, s)| counts && s > threshold).count();
    RateAtFar { far, rate: Some(accepted as f64 / total as f64), threshold: Some(threshold), false_accepts }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A case worked by hand: 2-D unit features at given angles, so every cosine is known.
    #[test]
    fn hand_worked_case() {
        // identity 0: 0 and 10 degrees; identity 1: 90 and 100; identity 2 (one image): 45.
        let deg = [0.0f64, 10.0, 90.0, 100.0, 45.0];
        let labels = [0i64, 0, 1, 1, 2];
        let f: Vec<f64> = deg.iter().flat_map(|d| [d.to_radians().cos(), d.to_radians().sin()]).collect();
        let r = open_set(&Tensor::from_slice(&f).view([5, 2]), &labels).unwrap();
        assert_eq!((r.images, r.identities), (5, 3));
        assert_eq!((r.verification.genuine_pairs, r.verification.impostor_pairs), (2, 8));
        // Impostor angles: 90, 100, 45 (0-90, 0-100, 0-45), 80, 90, 35 (10-...), 45, 55 (90-45,
        // 100-45). FAR 1e-3 of 8 pairs is unresolved.
        assert!(r.verification.tar_at_far.iter().all(|t| t.rate.is_none()));
        // Identification: gallery rows 0 and 2, genuine probes 1 (10 deg: own 0 deg, cos 10) and
        // 3 (100 deg: own 90 deg), impostor probe 4 (45 deg: best cos 45).
        let i = &r.identification;
        assert_eq!((i.gallery, i.genuine_probes, i.impostor_probes), (2, 2, 1));
        assert_eq!(i.rank1, 1.0);
        assert!(i.dir_at_far.iter().all(|d| d.rate.is_none()), "1 impostor probe resolves no FAR below 1");
        assert_eq!(r.metrics(), vec![("open_rank1".to_owned(), 1.0)], "only what is resolved");
        // Named by their FAR as the metrics of training logs are.
        let mut resolved = r.clone();
        resolved.verification.tar_at_far[1].rate = Some(0.5);
        resolved.identification.dir_at_far[0].rate = Some(0.25);
        let names: Vec<String> = resolved.metrics().into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["open_tar_far1e-4", "open_rank1", "open_dir_far1e-2"]);
    }

    #[test]
    fn thresholds_by_hand() {
        // 10 impostors 0.0 .. 0.9; FAR 0.2 lets 2 through: the threshold is the 3rd largest (0.7).
        let mut imp: Vec<f64> = (0..10).map(|i| i as f64 / 10.0).collect();
        let genuine = [(true, 0.95), (true, 0.75), (true, 0.7), (false, 0.99), (true, 0.1)];
        let r = rate_at_far(0.2, &mut imp, genuine.iter().copied());
        assert_eq!(r.threshold, Some(0.7));
        assert_eq!(r.false_accepts, 2);
        assert_eq!(r.rate, Some(2.0 / 5.0), "0.95 and 0.75 pass; 0.7 is not above; the false one does not count");
        // Ties at the threshold are rejected: FAR reached below the target.
        let mut tied = vec![0.5; 10];
        let r = rate_at_far(0.2, &mut tied, [(true, 0.6), (true, 0.5)].into_iter());
        assert_eq!((r.false_accepts, r.rate), (0, Some(0.5)));
    }

    #[test]
    fn a_wrong_shape_is_an_error() {
        let f = Tensor::zeros([3, 4], (Kind::Float, tch::Device::Cpu));
        assert!(open_set(&f, &[0, 1]).is_err());
    }
}
