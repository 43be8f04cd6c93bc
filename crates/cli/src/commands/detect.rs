//! `facerec detect`: MTCNN over photos (a folder, files, patterns or a list: see
//! `facerec_data::inputs`), one 5-point landmarks row per image (the face whose box centre is
//! nearest the image centre), written in the format of `landmarks_5pt.tsv` so that alignment
//! can use it. With `--draw DIR`, each photo is also
//! written with its faces drawn on it (imageproc): box, five landmarks and score.

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use ab_glyph::FontRef;
use anyhow::{bail, Context};
use clap::Args;
use image::{Rgb, RgbImage};
use imageproc::drawing::{draw_filled_circle_mut, draw_hollow_rect_mut, draw_text_mut};
use imageproc::rect::Rect;
use rayon::prelude::*;
use tracing_indicatif::span_ext::IndicatifSpanExt;

use facerec_data::landmarks::{LandmarkEntry, LandmarkFile, Landmarks, OnBad};
use facerec_detect::mtcnn::{nearest_to_centre, Face, Mtcnn};
use facerec_model::device::{describe, DeviceChoice};

use crate::faces::{load_detector, select_images, IMAGES_HELP, WEIGHTS_HELP};

pub const EXAMPLES: &str = "Examples:
  facerec detect --images data/lfw/images --out lfw_mtcnn.tsv
  facerec detect --images photos/ --out photos_5pt.tsv --skip-bad
  facerec detect --images 'photos/*.jpg' --out photos_5pt.tsv --draw photos_drawn/
  facerec detect --images data/lfw/images --out s.tsv --every 13 --compare lfw_mtcnn.tsv";

/// Images decoded ahead of the detector, per batch.
const DECODE_BATCH: usize = 64;
/// Log progress every this many images.
const LOG_EVERY: usize = 500;
/// Names of skipped images printed.
const SHOW_SKIPPED: usize = 5;
/// `--draw` colours: the face whose landmarks are written, and any other face.
pub const KEPT_COLOUR: Rgb<u8> = Rgb([0, 255, 0]);
pub const OTHER_COLOUR: Rgb<u8> = Rgb([255, 255, 0]);

#[derive(Debug, Args)]
pub struct DetectArgs {
    #[arg(long, num_args = 1.., required = true, help = IMAGES_HELP)]
    pub images: Vec<PathBuf>,
    /// Only these images: a list file of paths relative to the --images folder, one per line
    /// (`path` or `path label`).
    #[arg(long)]
    pub list: Option<PathBuf>,
    /// Landmarks file to write (tab-separated, paths relative to the images' folder, score last).
    #[arg(long)]
    pub out: PathBuf,
    #[arg(long, help = WEIGHTS_HELP)]
    pub weights: Option<PathBuf>,
    /// Skip images that cannot be decoded or show no face (counted and named) instead of failing.
    #[arg(long)]
    pub skip_bad: bool,
    /// Where the networks run: cpu, cuda, cuda:N or auto.
    #[arg(long, default_value = "cpu")]
    pub device: DeviceChoice,
    /// libtorch's intra-op threads for the networks. MTCNN's tensors are small and gain little
    /// from more threads; on a busy machine extra threads mostly wait on each other (measured
    /// on 2 shared cores: 90-120 ms per LFW image with 1 thread, 370-1300 ms with 2). Images
    /// are decoded on the other cores meanwhile.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(i32).range(1..))]
    pub threads: i32,
    /// Only every N-th image (in sorted order), for a quick sample.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
    pub every: u64,
    /// Another landmarks file for the same images: print the distance to it.
    #[arg(long, value_name = "TSV")]
    pub compare: Option<PathBuf>,
    /// Also write each decoded photo, with its faces drawn, as a PNG under DIR in the same
    /// layout: box, five landmarks (radius-2 dots) and score, green (0, 255, 0) for the face
    /// whose landmarks are written, yellow (255, 255, 0) for the others.
    #[arg(long, value_name = "DIR")]
    pub draw: Option<PathBuf>,
}

/// Why an image got no landmarks.
enum Bad {
    Decode(String),
    NoFace,
}

pub fn run(args: DetectArgs, quiet: bool) -> anyhow::Result<()> {
    tch::set_num_threads(args.threads);
    let device = args.device.resolve()?;
    let mtcnn = load_detector(args.weights.as_deref(), device)?;
    let dataset = select_images(&args.images, args.list.as_deref())?;
    let rels: Vec<PathBuf> =
        dataset.samples.iter().step_by(args.every as usize).map(|s| s.path.clone()).collect();
    let total = rels.len();
    tracing::info!("detecting faces in {total} images under {} on {}", dataset.root.display(), describe(device));
    let span = progress_span(quiet, total);
    let font = match &args.draw {
        Some(_) => Some(FontRef::try_from_slice(dejavu::sans::regular()).context("loading the DejaVu Sans font")?),
        None => None,
    };
    let start = Instant::now();
    let pass = Pass { mtcnn: &mtcnn, root: &dataset.root, args: &args, font: font.as_ref(), span: span.as_ref(), start };
    let found = pass.run(&rels)?;
    drop(span);

    LandmarkFile::write(&args.out, &found.entries).with_context(|| format!("writing {}", args.out.display()))?;
    let elapsed = start.elapsed().as_secs_f64();
    println!(
        "{}: landmarks of {} of {total} images, paths relative to {} ({:.1} ms per image, {:.1} ms of it detection)",
        args.out.display(),
        found.entries.len(),
        dataset.root.display(),
        1e3 * elapsed / total.max(1) as f64,
        1e3 * found.detect_time.as_secs_f64() / found.detected.max(1) as f64,
    );
    print_skipped(&found.skipped);
    if let Some(other) = &args.compare {
        compare(&found.entries, other)?;
    }
    Ok(())
}

/// The progress bar of the detection (none when `quiet`).
fn progress_span(quiet: bool, total: usize) -> Option<tracing::Span> {
    let span = (!quiet).then(|| tracing::info_span!("detect"))?;
    span.pb_set_style(
        &indicatif::ProgressStyle::with_template("{span_name} [{elapsed_precise}] {wide_bar:.cyan/blue} {pos}/{len} images, eta {eta}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    span.pb_set_length(total as u64);
    span.pb_start();
    Some(span)
}

/// One pass of the detector over the images: what it runs with.
struct Pass<'a> {
    mtcnn: &'a Mtcnn,
    /// The folder the images' relative paths start from.
    root: &'a Path,
    args: &'a DetectArgs,
    /// For `--draw`.
    font: Option<&'a FontRef<'a>>,
    span: Option<&'a tracing::Span>,
    start: Instant,
}

/// What a pass found.
struct Found {
    entries: Vec<(PathBuf, LandmarkEntry)>,
    skipped: Vec<(PathBuf, Bad)>,
    /// Images the networks ran on, and the time they took.
    detected: usize,
    detect_time: Duration,
}

impl Pass<'_> {
    /// Detects the faces of `rels` in order, failing at the first bad image unless
    /// `--skip-bad`.
    fn run(&self, rels: &[PathBuf]) -> anyhow::Result<Found> {
        let total = rels.len();
        let mut found = Found { entries: Vec::with_capacity(total), skipped: Vec::new(), detected: 0, detect_time: Duration::ZERO };
        let mut done = 0usize;
        // A second thread decodes the next batches (in parallel, on rayon's pool) while this one
        // runs the networks.
        let (tx, rx) = mpsc::sync_channel::<Vec<(PathBuf, Result<RgbImage, String>)>>(2);
        let root = self.root;
        std::thread::scope(|scope| -> anyhow::Result<()> {
            scope.spawn(move || decode_ahead(root, rels, &tx));
            for (rel, img) in rx.into_iter().flatten() {
                let landmarks = match img {
                    Ok(img) => self.landmarks(&rel, img, &mut found)?,
                    Err(msg) => Err(Bad::Decode(msg)),
                };
                self.record(rel, landmarks, &mut found)?;
                done += 1;
                if let Some(span) = self.span {
                    span.pb_inc(1);
                }
                if done.is_multiple_of(LOG_EVERY) {
                    let rate = done as f64 / self.start.elapsed().as_secs_f64();
                    tracing::info!("{done}/{total} images, {rate:.1} images/s, {} skipped", found.skipped.len());
                }
            }
            Ok(())
        })?;
        Ok(found)
    }

    /// The landmarks of the face nearest the centre of `img` (drawn with `--draw`), timed into
    /// `found`.
    fn landmarks(&self, rel: &Path, img: RgbImage, found: &mut Found) -> anyhow::Result<Result<LandmarkEntry, Bad>> {
        let t = Instant::now();
        let faces = self.mtcnn.detect(&img).with_context(|| format!("detecting faces in {}", self.root.join(rel).display()))?;
        found.detect_time += t.elapsed();
        found.detected += 1;
        let kept = nearest_to_centre(&faces, img.width(), img.height());
        if let (Some(dir), Some(font)) = (&self.args.draw, self.font) {
            let path = dir.join(rel).with_extension("png");
            facerec_data::image_io::write_png(&path, &draw_faces(img, &faces, kept, font))?;
        }
        Ok(kept.map(|f| LandmarkEntry { landmarks: f.landmarks, score: Some(f.score) }).ok_or(Bad::NoFace))
    }

    /// Keeps an image's landmarks, or skips it (`--skip-bad`), or fails.
    fn record(&self, rel: PathBuf, landmarks: Result<LandmarkEntry, Bad>, found: &mut Found) -> anyhow::Result<()> {
        match landmarks {
            Ok(entry) => found.entries.push((rel, entry)),
            Err(bad) if self.args.skip_bad => {
                tracing::debug!("skipping {}", rel.display());
                found.skipped.push((rel, bad));
            }
            Err(Bad::NoFace) => {
                bail!("{}: no face found (pass --skip-bad to skip such images)", self.root.join(&rel).display())
            }
            Err(Bad::Decode(msg)) => bail!("{msg} (pass --skip-bad to skip such images)"),
        }
        Ok(())
    }
}

/// Decodes the images `rels` under `root`, [`DECODE_BATCH`] at a time in parallel, and sends
/// each batch to `tx` until the receiver stops listening.
fn decode_ahead(root: &Path, rels: &[PathBuf], tx: &mpsc::SyncSender<Vec<(PathBuf, Result<RgbImage, String>)>>) {
    for chunk in rels.chunks(DECODE_BATCH) {
        let decoded = chunk
            .par_iter()
            .map(|rel| {
                let img = facerec_data::image_io::read_rgb(&root.join(rel)).map_err(|e| e.to_string());
                (rel.clone(), img)
            })
            .collect();
        if tx.send(decoded).is_err() {
            return; // the detector stopped early with an error
        }
    }
}

/// The count of skipped images by cause, and the first [`SHOW_SKIPPED`] of them.
fn print_skipped(skipped: &[(PathBuf, Bad)]) {
    if skipped.is_empty() {
        return;
    }
    let no_face = skipped.iter().filter(|(_, b)| matches!(b, Bad::NoFace)).count();
    println!("skipped {} images ({no_face} without a face, {} undecodable):", skipped.len(), skipped.len() - no_face);
    for (rel, bad) in skipped.iter().take(SHOW_SKIPPED) {
        match bad {
            Bad::NoFace => println!("  {}: no face found", rel.display()),
            Bad::Decode(msg) => println!("  {msg}"),
        }
    }
    if skipped.len() > SHOW_SKIPPED {
        println!("  and {} more", skipped.len() - SHOW_SKIPPED);
    }
}

/// `img` with every face drawn: the others in [`OTHER_COLOUR`] first, then `kept` in
/// [`KEPT_COLOUR`], its landmarks last so that nothing covers them.
pub fn draw_faces(mut img: RgbImage, faces: &[Face], kept: Option<&Face>, font: &FontRef) -> RgbImage {
    let is_kept = |f: &Face| kept.is_some_and(|k| std::ptr::eq(k, f));
    let others = faces.iter().filter(|f| !is_kept(f)).map(|f| (f, OTHER_COLOUR));
    for (face, colour) in others.chain(kept.map(|f| (f, KEPT_COLOUR))) {
        let [x1, y1, x2, y2] = face.bbox.map(|v| v.round() as i32);
        let rect = Rect::at(x1, y1).of_size((x2 - x1).max(1) as u32, (y2 - y1).max(1) as u32);
        draw_hollow_rect_mut(&mut img, rect, colour);
        // The score above the box, or inside it at the top edge of the image.
        let label_y = if y1 >= 14 { y1 - 14 } else { y1 + 2 };
        draw_text_mut(&mut img, colour, x1 + 2, label_y, 12.0, font, &format!("{:.2}", face.score));
        for [x, y] in face.landmarks.0 {
            draw_filled_circle_mut(&mut img, (x.round() as i32, y.round() as i32), 2, colour);
        }
    }
    img
}

/// Prints the median and mean, over the images in both, of the mean distance between
/// corresponding landmarks.
fn compare(entries: &[(PathBuf, LandmarkEntry)], other: &Path) -> anyhow::Result<()> {
    let theirs = LandmarkFile::read(other, OnBad::Fail)?;
    let mut dist: Vec<f32> = entries
        .iter()
        .filter_map(|(rel, e)| theirs.entries.get(rel).map(|t| mean_distance(&e.landmarks, &t.landmarks)))
        .collect();
    if dist.is_empty() {
        bail!("{}: none of the {} images is listed", other.display(), entries.len());
    }
    dist.sort_by(f32::total_cmp);
    let n = dist.len();
    let median = if n % 2 == 1 { dist[n / 2] } else { (dist[n / 2 - 1] + dist[n / 2]) / 2.0 };
    let mean = dist.iter().sum::<f32>() / n as f32;
    println!(
        "vs {} on {n} images: mean landmark distance per image, median {median:.2} px, mean {mean:.2} px, max {:.2} px",
        other.display(),
        dist[n - 1]
    );
    Ok(())
}

/// Mean distance between corresponding points, in pixels.
fn mean_distance(a: &Landmarks, b: &Landmarks) -> f32 {
    a.0.iter().zip(&b.0).map(|(p, q)| ((p[0] - q[0]).powi(2) + (p[1] - q[1]).powi(2)).sqrt()).sum::<f32>() / 5.0
}
