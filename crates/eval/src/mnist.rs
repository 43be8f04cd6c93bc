//! Evaluation of the paper's MNIST toy experiment: test accuracy, cluster compactness, and the
//! scatter plot of the 2-D test features (Wen et al. 2016, Fig. 2 and 3).

use std::path::Path;

use serde::Serialize;
use tch::{Device, Kind, Tensor};

use facerec_data::mnist::{Mnist, Split};
use facerec_losses::Loss;
use facerec_model::Backbone;

use crate::clusters::{cluster_stats, ClusterStats};
use crate::error::Result;
use crate::features::{extract, to_array2};
use crate::plot::{scatter_2d_figure, Figure};

/// The MNIST test set, ready to evaluate models on.
pub struct MnistEval {
    images: Tensor,
    labels: Tensor,
}

/// What [`MnistEval::run`] measures.
#[derive(Debug, Serialize)]
pub struct MnistReport {
    pub accuracy: f64,
    pub clusters: ClusterStats,
    /// Test features `[N, d]`.
    #[serde(skip)]
    pub features: Tensor,
    #[serde(skip)]
    pub labels: Tensor,
}

impl MnistEval {
    /// Loads the test split from `dir`, the first `limit` images when given, normalised by
    /// `norm` (the model's).
    pub fn load(dir: &Path, limit: Option<usize>, norm: facerec_data::normalize::PixelNorm) -> Result<Self> {
        let mut test = Mnist::load(dir, Split::Test)?;
        if let Some(n) = limit {
            test.truncate(n);
        }
        let (images, labels) = test.to_tensors(norm)?;
        Ok(MnistEval { images, labels })
    }

    /// Accuracy (of the loss's classifier), cluster statistics (around the loss's centers, where
    /// it has them) and features of a model on the test set.
    pub fn run(&self, backbone: &dyn Backbone, loss: &dyn Loss, device: Device) -> Result<MnistReport> {
        let _guard = tch::no_grad_guard();
        let features = extract(backbone, &self.images, 500, device)?;
        let logits = loss.logits(&features.f_to_device(device)?)?.f_to_device(Device::Cpu)?;
        let correct = logits.f_argmax(-1, false)?.f_eq_tensor(&self.labels)?.f_sum(Kind::Float)?;
        let accuracy = f64::try_from(correct)? / self.labels.size()[0].max(1) as f64;
        let clusters = cluster_stats(&features, &self.labels, 10, loss.centers())?;
        Ok(MnistReport { accuracy, clusters, features, labels: self.labels.shallow_clone() })
    }
}

impl MnistReport {
    /// The scatter of the 2-D features (the first two dimensions of wider ones), one colour per
    /// digit, with `centers` marked.
    pub fn scatter_figure(&self, title: &str, centers: Option<&Tensor>) -> Result<Figure> {
        let xy = |t: &Tensor| -> Result<Vec<(f32, f32)>> {
            let a = to_array2::<f32>(&t.f_narrow(1, 0, 2)?)?;
            Ok(a.rows().into_iter().map(|r| (r[0], r[1])).collect())
        };
        let points = xy(&self.features)?;
        let labels = Vec::<i64>::try_from(&self.labels)?;
        let centers = centers.map(xy).transpose()?;
        Ok(scatter_2d_figure(title, &points, &labels, centers.as_deref()))
    }

    /// Draws [`MnistReport::scatter_figure`] into `path`.
    pub fn write_scatter(&self, path: &Path, title: &str, centers: Option<&Tensor>) -> Result<()> {
        self.scatter_figure(title, centers)?.draw(path)
    }
}

impl MnistEval {
    /// The periodic evaluation during training: test accuracy and the cluster statistics.
    pub fn evaluate(&self, backbone: &dyn Backbone, loss: &dyn Loss, device: Device) -> Result<Vec<(String, f64)>> {
        let r = self.run(backbone, loss, device)?;
        Ok(vec![
            ("test_accuracy".into(), r.accuracy),
            ("intra_to_mean".into(), r.clusters.intra_to_mean),
            ("intra_inter_ratio".into(), r.clusters.ratio),
        ])
    }
}
