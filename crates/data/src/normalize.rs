//! Pixel normalisation of caffe-face: `(p - 127.5) / 128` (its `mean_value: 127.5`,
//! `scale: 0.0078125`), mapping bytes into [-0.996, 0.996].

/// The normalised value of one byte.
#[inline]
pub fn normalize_pixel(p: u8) -> f32 {
    (f32::from(p) - 127.5) * (1.0 / 128.0)
}

/// Normalises a slice of bytes.
pub fn normalize_u8(pixels: &[u8]) -> Vec<f32> {
    pixels.iter().map(|&p| normalize_pixel(p)).collect()
}
