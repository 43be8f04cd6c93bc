//! How a model wants its input pixels scaled: `(p - mean) / std` of each byte `p`. A backbone
//! states its own ([`PixelNorm::CAFFE_FACE`] for the caffe-face models, LeNets++ and
//! MobileFaceNet of the paper's lineage; [`PixelNorm::INSIGHTFACE`] for insightface's IResNet
//! and MobileFaceNet), every path from bytes to a backbone's input applies the model's, and saved
//! and exported models record it, so that nothing downstream guesses: the two differ by 4e-3 of
//! the input, enough to move embeddings past a 1e-4 check.

/// `(p - mean) / std`, the same for the three channels, in the float arithmetic of the
/// pipeline the convention comes from ([`Arithmetic`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PixelNorm {
    pub mean: f32,
    pub std: f32,
    pub arithmetic: Arithmetic,
}

/// How `(p - mean) / std` is computed in float32. The conventions agree in exact arithmetic
/// but not to the last bit, and a randomly initialised deep network turns one-ulp input
/// differences into 1e-3 differences of its early layers' gradients (measured on IResNet-18):
/// a model is fed its inputs as its own pipeline computes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arithmetic {
    /// caffe's data layer: `(p - mean) * scale`, `scale = 1 / std`.
    Caffe,
    /// torchvision's `ToTensor` then `Normalize(mean / 255, std / 255)`:
    /// `(p / 255 - mean / 255) / (std / 255)` (arcface_torch's `dataset.py`).
    Torchvision,
}

impl PixelNorm {
    /// caffe-face's `mean_value: 127.5`, `scale: 0.0078125`: bytes into [-0.996, 0.996].
    pub const CAFFE_FACE: PixelNorm = PixelNorm { mean: 127.5, std: 128.0, arithmetic: Arithmetic::Caffe };
    /// insightface's (arcface_torch's `dataset.py` and model zoo): bytes into [-1, 1].
    pub const INSIGHTFACE: PixelNorm = PixelNorm { mean: 127.5, std: 127.5, arithmetic: Arithmetic::Torchvision };

    /// The normalised value of one byte.
    #[inline]
    pub fn apply(self, p: u8) -> f32 {
        match self.arithmetic {
            Arithmetic::Caffe => (f32::from(p) - self.mean) * (1.0 / self.std),
            Arithmetic::Torchvision => (f32::from(p) / 255.0 - self.mean / 255.0) / (self.std / 255.0),
        }
    }

    /// Normalises a slice of bytes.
    pub fn apply_all(self, pixels: &[u8]) -> Vec<f32> {
        pixels.iter().map(|&p| self.apply(p)).collect()
    }
}

/// `(p - 127.5) / 128`, as metadata and messages write it.
impl std::fmt::Display for PixelNorm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "(p - {}) / {}", self.mean, self.std)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_two_conventions_by_hand() {
        // (0 - 127.5) / 128 = -0.99609375; (255 - 127.5) / 127.5 = 1.
        assert_eq!(PixelNorm::CAFFE_FACE.apply(0), -0.99609375);
        assert_eq!(PixelNorm::CAFFE_FACE.apply(255), 0.99609375);
        assert_eq!(PixelNorm::INSIGHTFACE.apply(255), 1.0);
        assert_eq!(PixelNorm::INSIGHTFACE.apply(0), -1.0);
        assert_eq!(PixelNorm::INSIGHTFACE.to_string(), "(p - 127.5) / 127.5");
        // torchvision's arithmetic, bit for bit: ((p / 255) - 0.5) / 0.5 in float32.
        for p in 0..=255u8 {
            let torchvision = ((f32::from(p) / 255.0) - 0.5) / 0.5;
            assert_eq!(PixelNorm::INSIGHTFACE.apply(p).to_bits(), torchvision.to_bits(), "byte {p}");
        }
    }
}
