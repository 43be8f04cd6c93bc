//! The one inference path of facerec: a backbone over normalised crops in inference mode, with
//! the mirror image's features concatenated when asked ([`embed_batch`]; Wen et al. 2016,
//! sec. 4.1), batch by batch ([`extract`]). LFW and `.bin` evaluation, MNIST evaluation,
//! `facerec embed`, `compare` and `bench` all call these. Also: moving features between
//! libtorch tensors and host-side `ndarray` arrays.

use ndarray::{Array2, ArrayBase, Data, Ix2};
use tch::{Device, Kind, Tensor};

use facerec_model::Backbone;

use crate::error::{EvalError, Result};

/// Features of one batch of normalised crops `images` `[n, C, H, W]` (on any device), computed
/// on `device` without gradients: `[n, D]`, or with `flip` `[n, 2D]`, the image's features
/// followed by its horizontal mirror's. Float, on the CPU.
pub fn embed_batch(backbone: &dyn Backbone, images: &Tensor, flip: bool, device: Device) -> Result<Tensor> {
    let _guard = tch::no_grad_guard();
    let x = images.f_to_device(device)?;
    let mut parts = vec![backbone.forward_t(&x, false)?]; // [n, D]
    if flip {
        parts.push(backbone.forward_t(&x.f_flip([3])?, false)?); // [n, D], the mirror's
    }
    Ok(Tensor::f_cat(&parts, 1)?.f_to_device(Device::Cpu)?.f_to_kind(Kind::Float)?) // [n, D or 2D]
}

/// [`embed_batch`] over `rows` `batch` at a time, `crops(chunk)` giving the crops of each chunk
/// of rows; `progress` gets the rows done after each chunk. `[rows, D or 2D]`.
pub fn embed_rows(
    backbone: &dyn Backbone,
    rows: &[usize],
    batch: usize,
    flip: bool,
    device: Device,
    mut crops: impl FnMut(&[usize]) -> Result<Tensor>,
    progress: &dyn Fn(u64),
) -> Result<Tensor> {
    let mut out = Vec::new();
    for chunk in rows.chunks(batch.max(1)) {
        out.push(embed_batch(backbone, &crops(chunk)?, flip, device)?);
        progress(chunk.len() as u64);
    }
    if out.is_empty() {
        let dim = backbone.feature_dim() * if flip { 2 } else { 1 };
        return Ok(Tensor::f_zeros([0, dim], (Kind::Float, Device::Cpu))?);
    }
    Ok(Tensor::f_cat(&out, 0)?)
}

/// Features `[N, D]` (on the CPU, float) of `images` `[N, C, H, W]`, `batch` at a time.
pub fn extract(backbone: &dyn Backbone, images: &Tensor, batch: i64, device: Device) -> Result<Tensor> {
    let rows: Vec<usize> = (0..images.size()[0] as usize).collect();
    let crops = |chunk: &[usize]| Ok(images.f_narrow(0, chunk[0] as i64, chunk.len() as i64)?);
    embed_rows(backbone, &rows, batch.max(1) as usize, false, device, crops, &|_| {})
}

/// A `[N, D]` tensor (any device, any kind) as a host array of `T` (converted as libtorch
/// converts to `T`'s kind).
pub fn to_array2<T: tch::kind::Element + Copy>(t: &Tensor) -> Result<Array2<T>> {
    let size = t.size();
    if size.len() != 2 {
        return Err(EvalError::Invalid(format!("features must be [N, D], got {size:?}")));
    }
    let host = t.f_to_device(Device::Cpu)?.f_to_kind(T::KIND)?.f_contiguous()?;
    let a: ndarray::ArrayD<T> = (&host).try_into()?;
    a.into_dimensionality::<Ix2>().map_err(|e| EvalError::Invalid(format!("features of {size:?}: {e}")))
}

/// A host array `[N, D]` as a CPU tensor of the same element type.
pub fn from_array2<T: tch::kind::Element, S: Data<Elem = T>>(a: &ArrayBase<S, Ix2>) -> Result<Tensor> {
    let (n, d) = a.dim();
    let standard = a.as_standard_layout();
    let flat = standard.as_slice().ok_or_else(|| EvalError::Invalid("array not contiguous".into()))?;
    Ok(Tensor::f_from_slice(flat)?.f_view([n as i64, d as i64])?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arrays_and_tensors_round_trip() {
        let t = Tensor::from_slice(&[1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0]).view([2, 3]);
        let a = to_array2::<f32>(&t).unwrap();
        assert_eq!(a, ndarray::array![[1.0f32, 2.0, 3.0], [4.0, 5.0, 6.0]]);
        // a transposed (non-contiguous) tensor comes out in its logical order
        let at = to_array2::<f64>(&t.tr()).unwrap();
        assert_eq!(at, ndarray::array![[1.0, 4.0], [2.0, 5.0], [3.0, 6.0]]);
        let back = from_array2(&a.t()).unwrap();
        assert_eq!(back.size(), vec![3, 2]);
        assert_eq!(Vec::<f32>::try_from(back.flatten(0, -1)).unwrap(), vec![1.0, 4.0, 2.0, 5.0, 3.0, 6.0]);
        assert!(to_array2::<f32>(&Tensor::from_slice(&[1.0f32])).is_err());
    }
}
