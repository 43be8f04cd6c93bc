//! The one path from aligned crops to a backbone's input ([`crops_to_tensor`]), normalised as
//! the model asks ([`PixelNorm`]: caffe-face's `(p - 127.5) / 128` or insightface's
//! `(p - 127.5) / 127.5`).

use rayon::prelude::*;
use tch::Tensor;

pub use facerec_core::PixelNorm;

use crate::error::{DataError, Result};

/// The input a backbone takes for aligned crops: `[n, 3, height, width]` floats, each crop's
/// `HWC` RGB bytes made planar and normalised by `norm` (what `facerec embed`, `facerec
/// compare` and LFW evaluation give their backbone).
///
/// The crop cache's [`PixelSource`](crate::pixels::PixelSource) gives the same floats for the
/// same crops, but from bytes it stores planar already (`[C, H, W]`, as training reads them),
/// mirrored where asked; this takes crops as alignment makes them (`HWC`).
pub fn crops_to_tensor<C: AsRef<[u8]> + Sync>(crops: &[C], height: usize, width: usize, norm: PixelNorm) -> Result<Tensor> {
    let plane = height * width;
    let per = 3 * plane;
    if let Some((i, bad)) = crops.iter().enumerate().find(|(_, c)| c.as_ref().len() != per) {
        return Err(DataError::Invalid(format!(
            "crop {i} has {} bytes, not the {per} of a {height}x{width} RGB crop",
            bad.as_ref().len()
        )));
    }
    let mut out = vec![0f32; per * crops.len()];
    out.par_chunks_mut(per.max(1)).zip(crops.par_iter()).for_each(|(dst, hwc)| {
        for (i, px) in hwc.as_ref().chunks_exact(3).enumerate() {
            for (ch, &p) in px.iter().enumerate() {
                dst[ch * plane + i] = norm.apply(p);
            }
        }
    });
    Ok(Tensor::f_from_slice(&out)?.f_view([crops.len() as i64, 3, height as i64, width as i64])?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::align::hwc_to_chw;

    #[test]
    fn crops_to_tensor_is_planar_and_normalised_as_asked() -> Result<()> {
        // Two 2x3 crops holding every byte value somewhere: the tensor must equal, value for
        // value, `norm.apply_all(hwc_to_chw(crop))` of each crop one after the other.
        let (h, w) = (2, 3);
        let crops: Vec<Vec<u8>> = (0..2u32).map(|k| (0..18u32).map(|i| ((i * 97 + k * 131) % 256) as u8).collect()).collect();
        for norm in [PixelNorm::CAFFE_FACE, PixelNorm::INSIGHTFACE] {
            let want: Vec<f32> = crops.iter().flat_map(|c| norm.apply_all(&hwc_to_chw(c, h, w))).collect();
            let t = crops_to_tensor(&crops, h, w, norm)?;
            assert_eq!(t.size(), vec![2, 3, h as i64, w as i64]);
            assert_eq!(Vec::<f32>::try_from(t.flatten(0, -1))?, want);
        }
        // Byte 0 and 255 at the ends of the range.
        let ends = crops_to_tensor(&[[0u8, 255, 0]], 1, 1, PixelNorm::CAFFE_FACE)?;
        assert_eq!(Vec::<f32>::try_from(ends.flatten(0, -1))?, vec![-0.99609375, 0.99609375, -0.99609375]);
        let ends = crops_to_tensor(&[[0u8, 255, 0]], 1, 1, PixelNorm::INSIGHTFACE)?;
        assert_eq!(Vec::<f32>::try_from(ends.flatten(0, -1))?, vec![-1.0, 1.0, -1.0]);
        // No crops: an empty batch; a crop of another size: an error.
        assert_eq!(crops_to_tensor::<Vec<u8>>(&[], h, w, PixelNorm::CAFFE_FACE)?.size(), vec![0, 3, 2, 3]);
        assert!(crops_to_tensor(&[vec![0u8; 17]], h, w, PixelNorm::CAFFE_FACE).is_err());
        Ok(())
    }
}
