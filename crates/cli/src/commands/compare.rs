//! `facerec compare a.jpg b.jpg`: detect, align, embed, cosine, same or different; the
//! answer is also the exit code (0 same person, 4 different people, 1 error), and with
//! `--json` a JSON object on stdout.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::Args;
use tch::{Device, Kind, Tensor};

use facerec_data::align::Template;
use facerec_data::image_io::read_rgb;
use facerec_data::normalize::crops_to_tensor;
use facerec_model::device::DeviceChoice;
use facerec_eval::features::embed_batch;
use facerec_model::saved::{backbone_file, load_backbone};
use serde::{Deserialize, Serialize};

use facerec_experiment::RunDir;

use crate::faces::{detect_and_align, load_detector, WEIGHTS_HELP};
use crate::outcome::EXIT_DIFFERENT;

pub const EXAMPLES: &str = "Examples:
  facerec compare a.jpg b.jpg --model runs/lfw_faceresnet_small_center
  facerec compare a.jpg b.jpg --model model.safetensors --threshold 0.45 --no-flip
  facerec compare a.jpg b.jpg --model runs/x -q && echo same      # exit code 0: same person
  facerec compare a.jpg b.jpg --model runs/x --json               # {\"cosine\": ..., \"same\": ...}

Exit status: 0 same person, 4 different people, 1 error (a photo without a face, a missing
model, ...), 2 wrong arguments.";

#[derive(Debug, Args)]
pub struct CompareArgs {
    /// The two photos.
    pub a: PathBuf,
    pub b: PathBuf,
    /// The backbone: a run directory (its model.safetensors) or a model.safetensors file.
    #[arg(long)]
    pub model: PathBuf,
    /// Decision threshold on the cosine similarity [default: from the run's lfw_report.json].
    #[arg(long, allow_negative_numbers = true)]
    pub threshold: Option<f64>,
    /// An LFW report to take the threshold from [default: lfw_report.json of the run, or of
    /// <stem>_eval/ beside a model file outside a run, where `facerec eval --model` writes it].
    /// The features are then computed as that evaluation computed them (with the mirror or not).
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Use each image's features alone, without its mirror's (with --threshold; a report's
    /// threshold comes with its own setting).
    #[arg(long)]
    pub no_flip: bool,
    #[arg(long, help = WEIGHTS_HELP)]
    pub weights: Option<PathBuf>,
    /// Where the backbone runs: auto, cpu, cuda or cuda:N (MTCNN runs on the CPU).
    #[arg(long, default_value = "auto")]
    pub device: DeviceChoice,
    /// Print the result as one JSON object (a, b, cosine, threshold, threshold_from, flip,
    /// mirror_summed, mean_subtracted, same) instead of a sentence. The exit status is the same either way.
    #[arg(long)]
    pub json: bool,
}

/// `--json`'s output.
#[derive(Serialize)]
struct Verdict<'a> {
    a: &'a Path,
    b: &'a Path,
    cosine: f64,
    threshold: f64,
    /// The report the threshold comes from, or `"--threshold"`.
    threshold_from: String,
    /// Whether the features include the mirror images'.
    flip: bool,
    /// Whether image's and mirror's features are summed (insightface's .bin protocol) rather
    /// than concatenated.
    mirror_summed: bool,
    /// Whether the report's mean feature was subtracted before the cosine.
    mean_subtracted: bool,
    same: bool,
}

/// The parts of an LFW report (`facerec_eval::lfw::LfwReport`) a threshold needs.
#[derive(Deserialize)]
struct ReportThresholds {
    /// Absent in reports of features computed elsewhere (and of facerec before it was written).
    flip: Option<bool>,
    verification: FoldThresholds,
    /// Present in reports of insightface's .bin protocol, whose features sum the mirror's.
    #[serde(default)]
    insightface: Option<serde::de::IgnoredAny>,
}

#[derive(Deserialize)]
struct FoldThresholds {
    pca: usize,
    #[serde(default)]
    subtract_mean: bool,
    #[serde(default)]
    mean_feature: Vec<f64>,
    fold_threshold: Vec<Option<f64>>,
}

/// How a report's evaluation scored a pair, which `compare` repeats on its two faces.
struct ReportScoring {
    /// The mean over folds of the folds' thresholds.
    threshold: f64,
    /// Features of image and mirror concatenated.
    flip: bool,
    /// ... summed instead (insightface's .bin protocol).
    mirror_summed: bool,
    /// The mean feature subtracted before the cosine (`eval --subtract-mean`), if any.
    mean: Option<Vec<f64>>,
}

/// The threshold the LFW evaluation chose (mean over folds), whether its features include the
/// mirror's and the mean feature it subtracted; a PCA-based threshold, one for features
/// computed elsewhere or one of mean-subtracted scores without the mean are refused.
fn report_threshold(path: &Path) -> anyhow::Result<ReportScoring> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("{}: no LFW report to take a threshold from (pass --threshold)", path.display()))?;
    let r: ReportThresholds =
        serde_json::from_str(&text).with_context(|| format!("{}: not an LFW report of facerec eval", path.display()))?;
    if r.verification.pca > 0 {
        bail!("{}: its thresholds are for PCA-projected features; pass --threshold", path.display());
    }
    let Some(flip) = r.flip else {
        bail!(
            "{}: the report does not say whether its features include the mirror's (features computed \
             elsewhere, or a report of an older facerec: evaluate the model again with facerec eval); pass --threshold",
            path.display()
        );
    };
    let mean = match (r.verification.subtract_mean, r.verification.mean_feature) {
        (false, _) => None,
        (true, m) if m.is_empty() => bail!(
            "{}: its thresholds are for features less their mean, which the report does not hold (written by an \
             older facerec: evaluate the model again with facerec eval --subtract-mean); pass --threshold",
            path.display()
        ),
        (true, m) => Some(m),
    };
    let ts: Vec<f64> = r.verification.fold_threshold.into_iter().flatten().collect();
    if ts.is_empty() {
        bail!("{}: no fold thresholds in the report", path.display());
    }
    let mirror_summed = r.insightface.is_some();
    Ok(ReportScoring { threshold: ts.iter().sum::<f64>() / ts.len() as f64, flip: flip || mirror_summed, mirror_summed, mean })
}

/// Compares the two faces, prints the verdict and returns the exit code: 0 for the same
/// person, [`EXIT_DIFFERENT`] for different people.
pub fn run(args: CompareArgs) -> anyhow::Result<u8> {
    let device = args.device.resolve()?;
    let model = backbone_file(&args.model);
    let (scoring, threshold_from) = match args.threshold {
        Some(threshold) => (ReportScoring { threshold, flip: !args.no_flip, mirror_summed: false, mean: None }, "--threshold".to_owned()),
        None => {
            let report = match &args.report {
                Some(r) => r.clone(),
                None => {
                    // The report beside a model that is not there: say so, not that the report is missing.
                    if !model.is_file() {
                        bail!("{}: no such model file (--model takes a run directory or its model.safetensors)", model.display());
                    }
                    RunDir::model_reports(&args.model).join(facerec_core::run_files::LFW_REPORT)
                }
            };
            let scoring = report_threshold(&report)?;
            if args.no_flip && scoring.flip {
                bail!(
                    "{}: its threshold is for features of image and mirror; drop --no-flip or pass --threshold",
                    report.display()
                );
            }
            (scoring, report.display().to_string())
        }
    };
    let ReportScoring { threshold, flip, mirror_summed, mean } = scoring;
    let loaded = load_backbone(&model, device, None).with_context(|| format!("loading {}", model.display()))?;
    let template = Template::for_input(loaded.config.input_shape()).map_err(anyhow::Error::msg)?;
    let detector = load_detector(args.weights.as_deref(), Device::Cpu)?;
    let [_, h, w] = loaded.backbone.input_shape();
    let mut embeddings = Vec::new();
    for path in [&args.a, &args.b] {
        let crop = detect_and_align(&detector, &read_rgb(path)?, template, path)?;
        let x = crops_to_tensor(&[crop], h as usize, w as usize, loaded.config.pixel_norm())?; // [1, 3, h, w]
        // The image's features, then (with `flip`) its mirror's, as the LFW protocol takes them.
        let e = embed_batch(loaded.backbone.as_ref(), &x, flip, device)?.f_to_kind(Kind::Double)?.f_to_device(Device::Cpu)?;
        // insightface's protocol sums the two halves (image | mirror) instead.
        let e = match mirror_summed {
            true => {
                let halves = e.f_chunk(2, 1)?;
                halves[0].f_add(&halves[1])?
            }
            false => e,
        };
        // Less the evaluation's mean feature, when its threshold was chosen on centred features.
        embeddings.push(match &mean {
            Some(m) if m.len() as i64 != e.size()[1] => bail!(
                "{threshold_from}: its mean feature has {} numbers but this model's features have {}: the report is of another model",
                m.len(),
                e.size()[1]
            ),
            Some(m) => e.f_sub(&Tensor::from_slice(m).f_unsqueeze(0)?)?,
            None => e,
        });
    }
    let (a, b) = (&embeddings[0], &embeddings[1]);
    let cos = f64::try_from(a.f_mul(b)?.f_sum(Kind::Double)?)?
        / (f64::try_from(a.f_norm()?)? * f64::try_from(b.f_norm()?)?).max(1e-12);
    let same = cos >= threshold;
    if args.json {
        let verdict = Verdict { a: &args.a, b: &args.b, cosine: cos, threshold, threshold_from, flip, mirror_summed, mean_subtracted: mean.is_some(), same };
        println!("{}", serde_json::to_string(&verdict)?);
    } else {
        println!(
            "cosine similarity {cos:.4} {} threshold {threshold:.4}: {} ({})",
            if same { ">=" } else { "<" },
            if same { "same person" } else { "different people" },
            match (flip, mean.is_some()) {
                _ if mirror_summed => "features of image and mirror summed, as insightface's .bin protocol",
                (true, false) => "features of image and mirror",
                (false, false) => "features of the image alone",
                (true, true) => "features of image and mirror, less the evaluation's mean feature",
                (false, true) => "features of the image alone, less the evaluation's mean feature",
            }
        );
    }
    Ok(if same { 0 } else { EXIT_DIFFERENT })
}
