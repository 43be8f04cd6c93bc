//! Closed-set identification: one gallery image per identity, the others are probes; each probe
//! is ranked against the gallery by cosine similarity. Rank-1 accuracy and the CMC curve.

use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

use crate::error::{EvalError, Result};

/// Rank-1 and the cumulative match characteristic.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IdentificationReport {
    pub identities: usize,
    pub gallery: usize,
    pub probes: usize,
    #[serde(deserialize_with = "crate::verification::nan::f64")]
    pub rank1: f64,
    /// `cmc[k]`: fraction of probes whose identity is within the top `k + 1`.
    pub cmc: Vec<f64>,
}

/// Identification over `features` `[N, D]` with `labels`: the first row of each label (in row
/// order) is its gallery image, the other rows are probes. Labels with one image only are
/// gallery distractors. CMC up to `max_rank`.
pub fn identify(features: &Tensor, labels: &[i64], max_rank: usize) -> Result<IdentificationReport> {
    let n = labels.len();
    if features.size()[0] as usize != n {
        return Err(EvalError::Invalid("one label per feature row".into()));
    }
    let mut gallery_of = std::collections::HashMap::new();
    let (mut gallery, mut probes) = (Vec::new(), Vec::new());
    for (i, &l) in labels.iter().enumerate() {
        if let std::collections::hash_map::Entry::Vacant(e) = gallery_of.entry(l) {
            e.insert(gallery.len());
            gallery.push(i as i64);
        } else {
            probes.push(i as i64);
        }
    }
    if probes.is_empty() {
        return Err(EvalError::Invalid("identification needs identities with at least two images".into()));
    }
    let f = features.f_to_kind(Kind::Float)?;
    let f = f.f_div(&f.f_norm_scalaropt_dim(2, [1i64].as_slice(), true)?.f_clamp_min(1e-12)?)?;
    let g = f.f_index_select(0, &Tensor::f_from_slice(&gallery)?)?;
    let p = f.f_index_select(0, &Tensor::f_from_slice(&probes)?)?;
    let sim = p.f_matmul(&g.f_tr()?)?; // [probes, gallery]
    let truth: Vec<i64> = probes.iter().map(|&i| gallery_of[&labels[i as usize]] as i64).collect();
    let truth_t = Tensor::f_from_slice(&truth)?.f_unsqueeze(1)?;
    let true_sim = sim.f_gather(1, &truth_t, false)?; // [probes, 1]
    // rank = 1 + number of gallery entries more similar than the true one
    let ranks = sim.f_gt_tensor(&true_sim)?.f_sum_dim_intlist([1i64].as_slice(), false, Kind::Int64)?;
    let ranks = Vec::<i64>::try_from(&ranks)?;
    let cmc: Vec<f64> = (0..max_rank)
        .map(|k| ranks.iter().filter(|&&r| r <= k as i64).count() as f64 / ranks.len() as f64)
        .collect();
    Ok(IdentificationReport { identities: gallery.len(), gallery: gallery.len(), probes: probes.len(), rank1: cmc[0], cmc })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranks_by_hand() {
        // identities 0, 1, 2 with galleries e0, e1, e2 (unit axes); probes:
        // p(0) = (0.9, 0.5, 0) -> rank 1 ; p(1) = (0.8, 0.6, 0) -> identity 1 ranks 2nd
        let f = Tensor::from_slice(&[
            1.0f32, 0.0, 0.0, //
            0.0, 1.0, 0.0, //
            0.0, 0.0, 1.0, //
            0.9, 0.5, 0.0, //
            0.8, 0.6, 0.0,
        ])
        .view([5, 3]);
        let r = identify(&f, &[0, 1, 2, 0, 1], 3).unwrap();
        assert_eq!((r.gallery, r.probes), (3, 2));
        assert_eq!(r.cmc, vec![0.5, 1.0, 1.0]);
    }
}
