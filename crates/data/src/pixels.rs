//! A [`Source`] over images already decoded to bytes: MNIST in memory, or the memory-mapped
//! cache of aligned face crops. Images are stored `[C, H, W]` (planar); a batch is assembled in
//! parallel on rayon, normalised as the model asks ([`PixelNorm`], caffe-face's `(p - 127.5) /
//! 128` unless told otherwise) and mirrored where asked.

use std::ops::Deref;

use rayon::prelude::*;
use tch::Tensor;

use crate::error::{DataError, Result};
use crate::loader::Source;
use crate::normalize::PixelNorm;

/// Where the bytes live.
pub enum Pixels {
    Owned(Vec<u8>),
    Mapped(memmap2::Mmap),
}

impl Deref for Pixels {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            Pixels::Owned(v) => v,
            Pixels::Mapped(m) => m,
        }
    }
}

impl From<Vec<u8>> for Pixels {
    fn from(v: Vec<u8>) -> Self {
        Pixels::Owned(v)
    }
}

/// `N` images of `[C, H, W]` bytes with their labels.
pub struct PixelSource {
    pixels: Pixels,
    labels: Vec<i64>,
    num_classes: i64,
    shape: [i64; 3],
    norm: PixelNorm,
}

impl PixelSource {
    pub fn new(pixels: Pixels, labels: Vec<i64>, num_classes: i64, shape: [i64; 3]) -> Result<Self> {
        let per = shape.iter().product::<i64>() as usize;
        if per == 0 || pixels.len() != per * labels.len() {
            return Err(DataError::Invalid(format!(
                "{} bytes do not hold {} images of {shape:?}",
                pixels.len(),
                labels.len()
            )));
        }
        if let Some(&bad) = labels.iter().find(|&&l| l < 0 || l >= num_classes) {
            return Err(DataError::Invalid(format!("label {bad} outside 0..{num_classes}")));
        }
        Ok(PixelSource { pixels, labels, num_classes, shape, norm: PixelNorm::CAFFE_FACE })
    }

    /// The source with its batches normalised by `norm` (the model's).
    pub fn with_norm(self, norm: PixelNorm) -> Self {
        PixelSource { norm, ..self }
    }

    pub fn labels(&self) -> &[i64] {
        &self.labels
    }

    /// The bytes of image `i`.
    pub fn image(&self, i: usize) -> &[u8] {
        let per = self.shape.iter().product::<i64>() as usize;
        &self.pixels[i * per..(i + 1) * per]
    }

    /// Normalised `[B, C, H, W]` floats of the given images (all of them in order when
    /// `indices` is `None`), without the labels.
    pub fn images_tensor(&self, indices: &[usize], flips: &[bool]) -> Result<Tensor> {
        let [c, h, w] = self.shape;
        let per = (c * h * w) as usize;
        let mut out = vec![0f32; per * indices.len()];
        let norm = self.norm;
        out.par_chunks_mut(per).zip(indices.par_iter().zip(flips.par_iter())).for_each(|(dst, (&i, &flip))| {
            let src = self.image(i);
            if flip {
                for (drow, srow) in dst.chunks_exact_mut(w as usize).zip(src.chunks_exact(w as usize)) {
                    for (d, &s) in drow.iter_mut().zip(srow.iter().rev()) {
                        *d = norm.apply(s);
                    }
                }
            } else {
                for (d, &s) in dst.iter_mut().zip(src) {
                    *d = norm.apply(s);
                }
            }
        });
        Ok(Tensor::f_from_slice(&out)?.f_view([indices.len() as i64, c, h, w])?)
    }
}

impl Source for PixelSource {
    fn len(&self) -> usize {
        self.labels.len()
    }

    fn num_classes(&self) -> i64 {
        self.num_classes
    }

    fn labels(&self) -> Vec<i64> {
        self.labels.clone()
    }

    fn image_shape(&self) -> [i64; 3] {
        self.shape
    }

    fn load(&self, indices: &[usize], flips: &[bool]) -> Result<(Tensor, Tensor)> {
        if let Some(&bad) = indices.iter().find(|&&i| i >= self.labels.len()) {
            return Err(DataError::Invalid(format!("sample {bad} of {}", self.labels.len())));
        }
        let labels: Vec<i64> = indices.iter().map(|&i| self.labels[i]).collect();
        Ok((self.images_tensor(indices, flips)?, Tensor::f_from_slice(&labels)?))
    }
}
