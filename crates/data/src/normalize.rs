//! Pixel normalisation of caffe-face: `(p - 127.5) / 128` (its `mean_value: 127.5`,
//! `scale: 0.0078125`), mapping bytes into [-0.996, 0.996]; and the one path from aligned crops
//! to a backbone's input ([`crops_to_tensor`]).

use rayon::prelude::*;
use tch::Tensor;

use crate::error::{DataError, Result};

/// The value subtracted from each byte (caffe-face's `mean_value`). Every facerec backbone
/// takes its input normalised this way; exported models record it (`input_mean`).
pub const PIXEL_MEAN: f32 = 127.5;
/// The divisor after the subtraction (caffe-face's `scale: 0.0078125` is its inverse);
/// insightface's models use 127.5 instead. Exported models record it (`input_std`).
pub const PIXEL_STD: f32 = 128.0;

/// The normalised value of one byte.
#[inline]
pub fn normalize_pixel(p: u8) -> f32 {
    (f32::from(p) - PIXEL_MEAN) * (1.0 / PIXEL_STD)
}

/// Normalises a slice of bytes.
pub fn normalize_u8(pixels: &[u8]) -> Vec<f32> {
    pixels.iter().map(|&p| normalize_pixel(p)).collect()
}

/// The input a backbone takes for aligned crops: `[n, 3, height, width]` floats, each crop's
/// `HWC` RGB bytes made planar and normalised by [`normalize_pixel`] (what `facerec embed`,
/// `facerec compare` and `.bin` evaluation give their backbone).
///
/// The crop cache's [`PixelSource`](crate::pixels::PixelSource) gives the same floats for the
/// same crops, but from bytes it stores planar already (`[C, H, W]`, as training reads them),
/// mirrored where asked; this takes crops as alignment makes them (`HWC`).
pub fn crops_to_tensor<C: AsRef<[u8]> + Sync>(crops: &[C], height: usize, width: usize) -> Result<Tensor> {
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
                dst[ch * plane + i] = normalize_pixel(p);
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
    fn crops_to_tensor_is_planar_normalize_u8() -> Result<()> {
        // Two 2x3 crops holding every byte value somewhere: the tensor must equal, value for
        // value, `normalize_u8(hwc_to_chw(crop))` of each crop one after the other.
        let (h, w) = (2, 3);
        let crops: Vec<Vec<u8>> = (0..2u32).map(|k| (0..18u32).map(|i| ((i * 97 + k * 131) % 256) as u8).collect()).collect();
        let want: Vec<f32> = crops.iter().flat_map(|c| normalize_u8(&hwc_to_chw(c, h, w))).collect();
        let t = crops_to_tensor(&crops, h, w)?;
        assert_eq!(t.size(), vec![2, 3, h as i64, w as i64]);
        assert_eq!(Vec::<f32>::try_from(t.flatten(0, -1))?, want);
        // Byte 0 and 255 at the ends of the range.
        let ends = crops_to_tensor(&[[0u8, 255, 0]], 1, 1)?;
        assert_eq!(Vec::<f32>::try_from(ends.flatten(0, -1))?, vec![-0.99609375, 0.99609375, -0.99609375]);
        // No crops: an empty batch; a crop of another size: an error.
        assert_eq!(crops_to_tensor::<Vec<u8>>(&[], h, w)?.size(), vec![0, 3, 2, 3]);
        assert!(crops_to_tensor(&[vec![0u8; 17]], h, w).is_err());
        Ok(())
    }
}
