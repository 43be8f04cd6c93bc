//! `facerec align`: a whole dataset to aligned crops, in parallel.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use clap::Args;

use facerec_data::align::Template;
use facerec_data::cache::{build, write_crops, BuildReport};
use facerec_data::dataset::FaceDataset;
use facerec_data::landmarks::{LandmarkFile, OnBad};

use crate::progress::Bar;

pub const EXAMPLES: &str = "Examples:
  facerec align --images data/lfw/images --landmarks data/lfw/landmarks_5pt.tsv --out aligned/lfw
  facerec align --images data/lfw/images --landmarks data/lfw/landmarks_5pt.tsv --out data/cache/lfw --cache
  facerec align --images photos --landmarks photos.tsv --out crops --template insightface --skip-bad";

#[derive(Debug, Args)]
pub struct AlignArgs {
    /// Root of the images (`<root>/<identity>/<image>`).
    #[arg(long)]
    pub images: PathBuf,
    /// Landmarks file (tab-separated: relative path, 10 coordinates, optional score).
    #[arg(long)]
    pub landmarks: PathBuf,
    /// Output folder: crops in the same layout, or the cache files with --cache.
    #[arg(long)]
    pub out: PathBuf,
    /// Read the images from a list file (`relative/path label` lines) instead of the folders.
    #[arg(long)]
    pub list: Option<PathBuf>,
    /// Crop layout.
    #[arg(long, value_enum, default_value = "caffe-face")]
    pub template: TemplateArg,
    /// Write one memory-mappable cache (crops.u8 + index.json) instead of image files.
    #[arg(long)]
    pub cache: bool,
    /// Image format of the crops.
    #[arg(long, value_enum, default_value = "png")]
    pub format: FormatArg,
    /// Skip images that cannot be read or aligned (and report them) instead of stopping.
    #[arg(long)]
    pub skip_bad: bool,
    /// Only the first N images.
    #[arg(long)]
    pub limit: Option<usize>,
    /// Worker threads [default: one per core].
    #[arg(long)]
    pub threads: Option<usize>,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum TemplateArg {
    CaffeFace,
    Insightface,
}

impl From<TemplateArg> for Template {
    fn from(t: TemplateArg) -> Self {
        match t {
            TemplateArg::CaffeFace => Template::CaffeFace,
            TemplateArg::Insightface => Template::Insightface,
        }
    }
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum FormatArg {
    Png,
    Jpg,
}

pub fn run(args: AlignArgs, quiet: bool) -> anyhow::Result<()> {
    if let Some(n) = args.threads {
        rayon::ThreadPoolBuilder::new().num_threads(n).build_global().context("starting the thread pool")?;
    }
    let mut dataset = match &args.list {
        Some(list) => FaceDataset::from_list(list, &args.images)?,
        None => FaceDataset::from_folders(&args.images)?,
    };
    if let Some(n) = args.limit {
        dataset.samples.truncate(n);
    }
    let on_bad = if args.skip_bad { OnBad::Skip } else { OnBad::Fail };
    let landmarks = LandmarkFile::read(&args.landmarks, on_bad)?;
    for e in &landmarks.skipped {
        tracing::warn!("skipped landmarks row: {e}");
    }
    let template: Template = args.template.into();
    let bar = Bar::new("align", dataset.len() as u64, quiet);
    let t0 = Instant::now();
    let report: BuildReport = if args.cache {
        build(&dataset, &landmarks, template, &args.out, on_bad, &|n| bar.inc(n))?
    } else {
        write_crops(&dataset, &landmarks, template, &args.out, matches!(args.format, FormatArg::Png), on_bad, &|n| bar.inc(n))?
    };
    drop(bar);
    let secs = t0.elapsed().as_secs_f64();
    for e in report.skipped.iter().take(20) {
        tracing::warn!("skipped: {e}");
    }
    println!(
        "aligned {} crops into {} in {secs:.2} s ({:.1} crops/s, {} threads){}",
        report.written,
        args.out.display(),
        report.written as f64 / secs,
        rayon::current_num_threads(),
        if report.skipped.is_empty() { String::new() } else { format!("; skipped {} bad images", report.skipped.len()) }
    );
    Ok(())
}
