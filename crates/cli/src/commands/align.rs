//! `facerec align`: a whole dataset to aligned crops, in parallel. With `--preview DIR`, each
//! crop is also written with the template's five points and the face's own landmarks (mapped
//! by the fitted similarity) drawn on it (imageproc), to check the alignment by eye.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use clap::Args;
use image::{Rgb, RgbImage};
use imageproc::drawing::{draw_cross_mut, draw_filled_rect_mut};
use imageproc::rect::Rect;
use rayon::prelude::*;

use facerec_data::align::{Similarity, Template};
use facerec_data::cache::{aligned_crop, build, write_crops, BuildReport};
use facerec_data::dataset::FaceDataset;
use facerec_data::landmarks::{LandmarkFile, Landmarks, OnBad};

use crate::args::TemplateArg;
use crate::faces::{select_images, IMAGES_HELP};
use crate::progress::Bar;

pub const EXAMPLES: &str = "Examples:
  facerec align --images data/lfw/images --landmarks data/lfw/landmarks_5pt.tsv --out aligned/lfw
  facerec align --images data/lfw/images --landmarks data/lfw/landmarks_5pt.tsv --out lfw --cache
  facerec align --images photos --landmarks photos.tsv --out crops --template insightface
  facerec align --images 'photos/*.jpg' --landmarks photos.tsv --out crops --preview preview/";

/// `--preview` colours: the template's points, and the face's landmarks after alignment.
pub const TEMPLATE_COLOUR: Rgb<u8> = Rgb([0, 255, 0]);
pub const LANDMARK_COLOUR: Rgb<u8> = Rgb([255, 0, 0]);

#[derive(Debug, Args)]
pub struct AlignArgs {
    #[arg(long, num_args = 1.., required = true, help = IMAGES_HELP)]
    pub images: Vec<PathBuf>,
    /// Landmarks file (tab-separated: path relative to the images' folder, 10 coordinates,
    /// optional score), as `facerec detect` writes it for the same --images.
    #[arg(long)]
    pub landmarks: PathBuf,
    /// Output folder: crops in the same layout, or the cache files with --cache.
    #[arg(long)]
    pub out: PathBuf,
    /// Only these images: a list file of paths relative to the --images folder, one per line
    /// (`path` or `path label`).
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
    /// Also write each crop as a PNG under DIR (same layout) with the template's five points
    /// drawn as green (0, 255, 0) crosses over the face's own landmarks, mapped into the crop,
    /// as red (255, 0, 0) 3x3 squares: where they part, the similarity could not fit the face.
    #[arg(long, value_name = "DIR")]
    pub preview: Option<PathBuf>,
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
    let mut dataset = select_images(&args.images, args.list.as_deref())?;
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
    if let Some(dir) = &args.preview {
        let written = write_previews(&dataset, &landmarks, template, dir, on_bad)?;
        println!("wrote {written} previews into {}", dir.display());
    }
    Ok(())
}

/// Writes the preview of every image of `dataset` under `dir` (see [`AlignArgs::preview`]);
/// images that cannot be aligned are skipped under [`OnBad::Skip`] (the alignment itself has
/// reported them already). Returns how many were written.
fn write_previews(dataset: &FaceDataset, landmarks: &LandmarkFile, template: Template, dir: &Path, on_bad: OnBad) -> anyhow::Result<usize> {
    let (height, width) = template.size();
    let written: Vec<bool> = dataset
        .samples
        .par_iter()
        .map(|sample| -> anyhow::Result<bool> {
            let crop = match aligned_crop(dataset, sample, landmarks, template) {
                Ok(hwc) => hwc,
                Err(_) if matches!(on_bad, OnBad::Skip) => return Ok(false),
                Err(e) => return Err(e.into()),
            };
            let crop = RgbImage::from_raw(width, height, crop).context("aligned crop of the wrong size")?;
            let entry = landmarks.entries.get(&sample.path).context("landmarks vanished")?;
            let sim = Similarity::to_template(&entry.landmarks, template)?;
            let path = dir.join(&sample.path).with_extension("png");
            facerec_data::image_io::write_png(&path, &draw_preview(crop, &entry.landmarks, &sim, template))?;
            Ok(true)
        })
        .collect::<anyhow::Result<_>>()?;
    Ok(written.into_iter().filter(|&w| w).count())
}

/// `crop` with the face's `landmarks`, mapped by `sim`, as red 3x3 squares, and the template's
/// points over them as green crosses (a pixel and its four neighbours).
pub fn draw_preview(mut crop: RgbImage, landmarks: &Landmarks, sim: &Similarity, template: Template) -> RgbImage {
    let [[a, b, tx], [c, d, ty]] = sim.m;
    for [x, y] in landmarks.0.map(|[x, y]| [f64::from(x), f64::from(y)]) {
        let (u, v) = (a * x + b * y + tx, c * x + d * y + ty);
        draw_filled_rect_mut(&mut crop, Rect::at(u.round() as i32 - 1, v.round() as i32 - 1).of_size(3, 3), LANDMARK_COLOUR);
    }
    for [x, y] in template.points() {
        draw_cross_mut(&mut crop, TEMPLATE_COLOUR, x.round() as i32, y.round() as i32);
    }
    crop
}
