//! `facerec compare a.jpg b.jpg`: detect, align, embed, cosine, same or different.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::Args;
use tch::{Device, Kind, Tensor};

use facerec_data::align::{align, hwc_to_chw};
use facerec_data::image_io::read_rgb;
use facerec_data::normalize::normalize_u8;
use facerec_model::device::DeviceChoice;
use facerec_model::mtcnn::{nearest_to_centre, Mtcnn};
use facerec_model::saved::load_backbone;

use crate::commands::train::template_for;

pub const EXAMPLES: &str = "Examples:
  facerec compare a.jpg b.jpg --model runs/lfw_faceresnet_small_center/model.safetensors
  facerec compare a.jpg b.jpg --model model.safetensors --threshold 0.45";

#[derive(Debug, Args)]
pub struct CompareArgs {
    /// The two photos.
    pub a: PathBuf,
    pub b: PathBuf,
    /// The backbone (a run's model.safetensors).
    #[arg(long)]
    pub model: PathBuf,
    /// Decision threshold on the cosine similarity [default: from the run's lfw_report.json].
    #[arg(long)]
    pub threshold: Option<f64>,
    /// An LFW report to take the threshold from [default: lfw_report.json beside --model].
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// MTCNN weights folder.
    #[arg(long, default_value = "data/mtcnn")]
    pub weights: PathBuf,
    #[arg(long, default_value = "auto")]
    pub device: DeviceChoice,
}

/// The threshold the LFW evaluation chose (mean over folds), refusing a PCA-based one.
fn report_threshold(path: &Path) -> anyhow::Result<f64> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("{}: no LFW report to take a threshold from (pass --threshold)", path.display()))?;
    let r: serde_json::Value = serde_json::from_str(&text).with_context(|| format!("{}: not JSON", path.display()))?;
    let v = &r["verification"];
    if v["pca"].as_u64().unwrap_or(0) > 0 {
        bail!("{}: its thresholds are for PCA-projected features; pass --threshold", path.display());
    }
    let ts: Vec<f64> = v["fold_threshold"].as_array().map(|a| a.iter().filter_map(|t| t.as_f64()).collect()).unwrap_or_default();
    if ts.is_empty() {
        bail!("{}: no fold thresholds in the report", path.display());
    }
    Ok(ts.iter().sum::<f64>() / ts.len() as f64)
}

pub fn run(args: CompareArgs) -> anyhow::Result<()> {
    let device = args.device.resolve()?;
    let threshold = match args.threshold {
        Some(t) => t,
        None => {
            let report = args.report.clone().unwrap_or_else(|| args.model.with_file_name("lfw_report.json"));
            report_threshold(&report)?
        }
    };
    let loaded = load_backbone(&args.model, device, None).with_context(|| format!("loading {}", args.model.display()))?;
    let template = template_for(&loaded.config)?;
    let detector = Mtcnn::load(&args.weights, Device::Cpu)?;
    let [_, h, w] = loaded.backbone.input_shape();
    let mut embeddings = Vec::new();
    for path in [&args.a, &args.b] {
        let img = read_rgb(path)?;
        let faces = detector.detect(&img)?;
        let face = nearest_to_centre(&faces, img.width(), img.height())
            .with_context(|| format!("{}: no face found", path.display()))?;
        let crop = align(&img, &face.landmarks, template)?;
        let x = Tensor::f_from_slice(&normalize_u8(&hwc_to_chw(&crop, h as usize, w as usize)))?
            .f_view([1, 3, h, w])?
            .f_to_device(device)?;
        // Image and mirror, concatenated: the features the LFW protocol (and its threshold) uses.
        let f = tch::no_grad(|| -> anyhow::Result<Tensor> {
            let a = loaded.backbone.forward_t(&x, false)?;
            let b = loaded.backbone.forward_t(&x.f_flip([3])?, false)?;
            Ok(Tensor::f_cat(&[a, b], 1)?.f_to_kind(Kind::Double)?.f_to_device(Device::Cpu)?)
        })?;
        embeddings.push(f);
    }
    let (a, b) = (&embeddings[0], &embeddings[1]);
    let cos = f64::try_from(a.f_mul(b)?.f_sum(Kind::Double)?)?
        / (f64::try_from(a.f_norm()?)? * f64::try_from(b.f_norm()?)?).max(1e-12);
    let same = cos >= threshold;
    println!(
        "cosine similarity {cos:.4} {} threshold {threshold:.4}: {}",
        if same { ">=" } else { "<" },
        if same { "same person" } else { "different people" }
    );
    Ok(())
}
