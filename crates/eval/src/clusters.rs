//! How compact and how separated the classes are in feature space: the numbers behind the
//! paper's Fig. 2/3 (softmax alone) versus Fig. 3 (softmax + center loss).

use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

use crate::error::{EvalError, Result};

/// Intra- and inter-class distances of a set of features.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ClusterStats {
    /// Mean over samples of ||x_i - m_{y_i}||, m_j the mean feature of class j.
    pub intra_to_mean: f64,
    /// Mean over samples of ||x_i - c_{y_i}||, c_j the learned center (center-loss runs).
    pub intra_to_center: Option<f64>,
    /// Mean over pairs of classes of ||m_j - m_k||.
    pub inter_means: f64,
    /// `intra_to_mean / inter_means`: scale-free compactness (smaller is tighter).
    pub ratio: f64,
    /// Mean feature norm (softmax features grow without bound; center loss holds them).
    pub mean_norm: f64,
}

/// Computes [`ClusterStats`] of `features` `[N, d]` with `labels` `[N]` in `0..k`, and
/// optionally learned `centers` `[k, d]`.
pub fn cluster_stats(features: &Tensor, labels: &Tensor, k: i64, centers: Option<&Tensor>) -> Result<ClusterStats> {
    let x = features.f_to_kind(Kind::Double)?;
    let n = x.size()[0];
    if n == 0 || labels.size() != [n] {
        return Err(EvalError::Invalid(format!(
            "cluster stats need features [N, d] and labels [N], got {:?} and {:?}",
            x.size(),
            labels.size()
        )));
    }
    let d = x.size()[1];
    let sums = Tensor::f_zeros([k, d], (Kind::Double, x.device()))?.f_index_add(0, labels, &x)?;
    let counts = Tensor::f_zeros([k], (Kind::Double, x.device()))?.f_index_add(
        0,
        labels,
        &Tensor::f_ones([n], (Kind::Double, x.device()))?,
    )?;
    let present = counts.f_gt(0.0)?;
    let means = sums.f_div(&counts.f_clamp_min(1.0)?.f_unsqueeze(1)?)?;
    let dist = |c: &Tensor| -> Result<f64> {
        let c = c.f_to_kind(Kind::Double)?.f_to_device(x.device())?.f_index_select(0, labels)?;
        Ok(f64::try_from(x.f_sub(&c)?.f_norm_scalaropt_dim(2, [1i64].as_slice(), false)?.f_mean(Kind::Double)?)?)
    };
    let intra_to_mean = dist(&means)?;
    let intra_to_center = centers.map(dist).transpose()?;
    let m = means.f_index_select(0, &present.f_nonzero()?.f_squeeze_dim(1)?)?;
    let km = m.size()[0];
    let inter_means = if km > 1 {
        let pd = m.f_unsqueeze(0)?.f_sub(&m.f_unsqueeze(1)?)?.f_norm_scalaropt_dim(2, [2i64].as_slice(), false)?;
        f64::try_from(pd.f_sum(Kind::Double)?)? / (km * (km - 1)) as f64
    } else {
        0.0
    };
    let mean_norm = f64::try_from(x.f_norm_scalaropt_dim(2, [1i64].as_slice(), false)?.f_mean(Kind::Double)?)?;
    Ok(ClusterStats {
        intra_to_mean,
        intra_to_center,
        inter_means,
        ratio: if inter_means > 0.0 { intra_to_mean / inter_means } else { f64::NAN },
        mean_norm,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_worked_two_classes() {
        // class 0: (0,0), (2,0) -> mean (1,0), distances 1, 1
        // class 1: (0,3), (0,5) -> mean (0,4), distances 1, 1
        // inter: |(1,0) - (0,4)| = sqrt(17); ratio 1 / sqrt(17)
        let x = Tensor::from_slice(&[0.0f32, 0.0, 2.0, 0.0, 0.0, 3.0, 0.0, 5.0]).view([4, 2]);
        let y = Tensor::from_slice(&[0i64, 0, 1, 1]);
        let c = Tensor::from_slice(&[0.0f32, 0.0, 0.0, 3.0]).view([2, 2]);
        let s = cluster_stats(&x, &y, 3, Some(&c)).unwrap();
        assert!((s.intra_to_mean - 1.0).abs() < 1e-12);
        assert!((s.inter_means - 17f64.sqrt()).abs() < 1e-12);
        assert!((s.ratio - 1.0 / 17f64.sqrt()).abs() < 1e-12);
        // to centers (0,0) and (0,3): 0, 2, 0, 2 -> 1
        assert!((s.intra_to_center.unwrap() - 1.0).abs() < 1e-12);
        assert!((s.mean_norm - (0.0 + 2.0 + 3.0 + 5.0) / 4.0).abs() < 1e-12);
    }
}
