//! Running a backbone over many images in batches, in inference mode, and moving features
//! between libtorch tensors and host-side `ndarray` arrays.

use ndarray::{Array2, ArrayBase, Data, Ix2};
use tch::{Device, Kind, Tensor};

use facerec_model::Backbone;

use crate::error::{EvalError, Result};

/// Features `[N, dim]` (on the CPU, float) of `images` `[N, C, H, W]`, `batch` at a time.
pub fn extract(backbone: &dyn Backbone, images: &Tensor, batch: i64, device: Device) -> Result<Tensor> {
    let _guard = tch::no_grad_guard();
    let n = images.size()[0];
    let mut out = Vec::new();
    let mut start = 0;
    while start < n {
        let len = batch.min(n - start);
        let x = images.f_narrow(0, start, len)?.f_to_device(device)?;
        out.push(backbone.forward_t(&x, false)?.f_to_device(Device::Cpu)?.f_to_kind(Kind::Float)?);
        start += len;
    }
    if out.is_empty() {
        return Ok(Tensor::f_zeros([0, backbone.feature_dim()], (Kind::Float, Device::Cpu))?);
    }
    Ok(Tensor::f_cat(&out, 0)?)
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
