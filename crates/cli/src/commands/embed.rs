//! `facerec embed`: images to embeddings (.npy + index, or safetensors). The faces are aligned
//! with a landmarks file, taken as they are (`--aligned`), or found and aligned with MTCNN as
//! `facerec compare` does (the default without `--landmarks`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context};
use clap::Args;
use rayon::prelude::*;
use tch::{Device, Tensor};

use facerec_data::align::{fit_aligned, Template};
use facerec_data::cache::aligned_crop;
use facerec_data::dataset::{FaceDataset, Sample};
use facerec_data::image_io::read_rgb;
use facerec_data::landmarks::{LandmarkFile, OnBad};
use facerec_data::normalize::crops_to_tensor;
use facerec_detect::mtcnn::Mtcnn;
use facerec_eval::features::Embedder;
use facerec_model::device::DeviceChoice;
use facerec_model::saved::{backbone_file, load_backbone};

use crate::faces::{detect_and_align, load_detector, select_images, IMAGES_HELP, WEIGHTS_HELP};
use crate::progress::Bar;

pub const EXAMPLES: &str = "Examples:
  facerec embed --model runs/x --images photos/ --out photos.npy     # MTCNN finds the faces
  facerec embed --model runs/x --images 'photos/*.jpg' --out p.npy --normalize --skip-bad
  facerec embed --model runs/x --images data/lfw/images --landmarks lfw_5pt.tsv --out lfw.npy
  facerec embed --model runs/x/model.safetensors --images crops/ --aligned --out crops.safetensors

The .npy holds one row per image; the .txt beside it names the rows' images, relative to the
images' folder. Embeddings are the backbone's raw features unless --normalize is given.";

#[derive(Debug, Args)]
pub struct EmbedArgs {
    /// The backbone: a run directory (its model.safetensors) or a model.safetensors file.
    #[arg(long)]
    pub model: PathBuf,
    #[arg(long, num_args = 1.., required = true, help = IMAGES_HELP)]
    pub images: Vec<PathBuf>,
    /// Only these images: a list file of paths relative to the --images folder, one per line
    /// (`path` or `path label`).
    #[arg(long)]
    pub list: Option<PathBuf>,
    /// Landmarks to align with (paths relative to the images' folder, as `facerec detect`
    /// writes them) [default: find each face with MTCNN, as `facerec compare` does: the face
    /// nearest the image centre].
    #[arg(long, conflicts_with = "aligned")]
    pub landmarks: Option<PathBuf>,
    /// The images are already aligned crops of the model's input size (or 112x112 insightface
    /// crops for a 112x96 model, which gets their columns 8..104).
    #[arg(long)]
    pub aligned: bool,
    #[arg(long, help = WEIGHTS_HELP)]
    pub weights: Option<PathBuf>,
    /// Output: `.npy` (with the row paths in a `.txt` beside it) or `.safetensors`.
    #[arg(long)]
    pub out: PathBuf,
    /// Concatenate the embedding of each image's mirror (as the LFW protocol does).
    #[arg(long)]
    pub flip: bool,
    /// Scale each embedding (with --flip, the concatenation) to unit L2 norm, as insightface
    /// and facenet deliver theirs; their dot products are then cosine similarities. Off by
    /// default: the rows are the backbone's raw features (center loss acts on those).
    #[arg(long)]
    pub normalize: bool,
    /// Leave out images that cannot be read or aligned, or (without --landmarks and --aligned)
    /// show no face, naming them, instead of failing.
    #[arg(long)]
    pub skip_bad: bool,
    #[arg(long, default_value_t = 128)]
    pub batch: usize,
    #[arg(long, default_value = "auto")]
    pub device: DeviceChoice,
}

/// How an image becomes an aligned crop.
enum Crops {
    Landmarks(LandmarkFile),
    Aligned,
    Detect(Box<Mtcnn>),
}

impl Crops {
    /// The way `args` ask for: a landmarks file, the images as they are, or MTCNN.
    fn for_args(args: &EmbedArgs) -> anyhow::Result<Self> {
        Ok(match (&args.landmarks, args.aligned) {
            (Some(p), _) => Crops::Landmarks(LandmarkFile::read(p, OnBad::Fail)?),
            (None, true) => Crops::Aligned,
            (None, false) => Crops::Detect(Box::new(load_detector(args.weights.as_deref(), Device::Cpu)?)),
        })
    }

    /// The aligned HWC crops of `chunk`, one result per sample: decoded in parallel, detected
    /// (MTCNN) in order.
    fn of(&self, ds: &FaceDataset, chunk: &[Sample], template: Template) -> Vec<anyhow::Result<Vec<u8>>> {
        let (h, w) = template.size();
        match self {
            Crops::Landmarks(l) => chunk.par_iter().map(|s| Ok(aligned_crop(ds, s, l, template)?)).collect(),
            Crops::Aligned => chunk.par_iter().map(|s| read_aligned(&ds.image_path(s), h, w)).collect(),
            Crops::Detect(detector) => {
                let images: Vec<_> = chunk.par_iter().map(|s| read_rgb(&ds.image_path(s))).collect();
                images
                    .into_iter()
                    .zip(chunk)
                    .map(|(img, s)| {
                        detect_and_align(detector, &img?, template, &ds.image_path(s))
                    })
                    .collect()
            }
        }
    }
}

/// The `HWC` bytes of the aligned crop in `path` as a `h` x `w` model takes it (a 112x112 crop
/// gives a 112x96 model its columns 8..104), as `--aligned` reads images.
pub fn read_aligned(path: &Path, h: u32, w: u32) -> anyhow::Result<Vec<u8>> {
    let img = read_rgb(path)?;
    fit_aligned(&img, h, w)
        .ok_or_else(|| anyhow!("{}: {}x{} is not an aligned {h}x{w} crop (nor a 112x112 one holding it)", path.display(), img.height(), img.width()))
}

pub fn run(args: EmbedArgs, quiet: bool) -> anyhow::Result<()> {
    if !matches!(args.out.extension().and_then(|e| e.to_str()), Some("npy" | "safetensors")) {
        bail!("{}: the output must end in .npy or .safetensors", args.out.display());
    }
    let device = args.device.resolve()?;
    let model = backbone_file(&args.model);
    let loaded = load_backbone(&model, device, None).with_context(|| format!("loading {}", model.display()))?;
    let [_, h, w] = loaded.backbone.input_shape();
    let template = Template::for_input(loaded.config.input_shape()).map_err(anyhow::Error::msg)?;
    let ds = select_images(&args.images, args.list.as_deref())?;
    let crops = Crops::for_args(&args)?;
    let embedder = Embedder::new(loaded.backbone.as_ref(), device)?;
    let bar = Bar::new("embed", ds.len() as u64, quiet);
    let mut out = Vec::new();
    let mut files: Vec<PathBuf> = Vec::with_capacity(ds.len());
    let mut skipped: Vec<String> = Vec::new();
    for chunk in ds.samples.chunks(args.batch.max(1)) {
        let mut good: Vec<Vec<u8>> = Vec::with_capacity(chunk.len());
        for (s, crop) in chunk.iter().zip(crops.of(&ds, chunk, template)) {
            match crop {
                Ok(hwc) => {
                    good.push(hwc);
                    files.push(s.path.clone());
                }
                Err(e) if args.skip_bad => skipped.push(format!("{e:#}")),
                Err(e) => bail!("{e:#} (pass --skip-bad to leave such images out)"),
            }
        }
        bar.inc(chunk.len() as u64);
        if good.is_empty() {
            continue;
        }
        let x = crops_to_tensor(&good, h as usize, w as usize, loaded.config.pixel_norm())?; // [batch, 3, h, w]
        let mut emb = embedder.batch(&x, args.flip)?; // [batch, D or 2D]
        if args.normalize {
            let norm = emb.f_norm_scalaropt_dim(2, [1], true)?.f_clamp_min(1e-12)?; // [batch, 1]
            emb = emb.f_div(&norm)?;
        }
        out.push(emb);
    }
    drop(bar);
    for e in &skipped {
        println!("skipped {e}");
    }
    if out.is_empty() {
        bail!("none of the {} images gave an embedding", ds.len());
    }
    let emb = Tensor::f_cat(&out, 0)?;
    let (n, d) = (emb.size()[0] as usize, emb.size()[1] as usize);
    write(&args.out, &emb, &files)?;
    println!(
        "{n} embeddings of {d} dimensions ({}) written to {}, image paths relative to {}{}",
        if args.normalize { "L2-normalised" } else { "not normalised" },
        args.out.display(),
        ds.root.display(),
        if skipped.is_empty() { String::new() } else { format!("; {} images skipped", skipped.len()) }
    );
    Ok(())
}

fn write(out: &Path, emb: &Tensor, files: &[PathBuf]) -> anyhow::Result<()> {
    let paths: Vec<String> = files.iter().map(|p| p.display().to_string()).collect();
    match out.extension().and_then(|e| e.to_str()) {
        Some("npy") => {
            facerec_data::npy::write(out, &facerec_eval::features::to_array2::<f32>(emb)?)?;
            let index = out.with_extension("txt");
            facerec_core::fsutil::atomic_write_bytes(&index, (paths.join("\n") + "\n").as_bytes())?;
        }
        Some("safetensors") => {
            let meta = BTreeMap::from([("paths".to_owned(), serde_json::to_string(&paths)?)]);
            let bytes = facerec_model::weights::to_bytes(&[("embeddings".to_owned(), emb.shallow_clone())], &meta)?;
            facerec_core::fsutil::atomic_write_bytes(out, &bytes)?;
        }
        _ => bail!("{}: the output must end in .npy or .safetensors", out.display()),
    }
    Ok(())
}
