//! `facerec embed`: images to embeddings (.npy + index, or safetensors).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::Args;
use rayon::prelude::*;
use tch::{Device, Kind, Tensor};

use facerec_data::align::{hwc_to_chw, Template};
use facerec_data::cache::aligned_crop;
use facerec_data::dataset::{FaceDataset, Sample};
use facerec_data::image_io::{is_image_path, read_rgb};
use facerec_data::landmarks::{LandmarkFile, OnBad};
use facerec_data::normalize::normalize_u8;
use facerec_model::device::DeviceChoice;
use facerec_model::saved::load_backbone;

use crate::commands::train::template_for;
use crate::progress::Bar;

pub const EXAMPLES: &str = "Examples:
  facerec embed --model runs/x/model.safetensors --images data/lfw/images \\
      --landmarks data/lfw/landmarks_5pt.tsv --out lfw.npy      # lfw.npy + lfw.txt (paths)
  facerec embed --model runs/x/model.safetensors --images crops/ --aligned --out crops.safetensors";

#[derive(Debug, Args)]
pub struct EmbedArgs {
    /// The backbone (a run's model.safetensors).
    #[arg(long)]
    pub model: PathBuf,
    /// A folder (searched recursively) or image files.
    #[arg(long, num_args = 1.., required = true)]
    pub images: Vec<PathBuf>,
    /// Only these images: a file of paths relative to the --images folder, one per line.
    #[arg(long)]
    pub list: Option<PathBuf>,
    /// Landmarks to align with (paths relative to the --images folder).
    #[arg(long, required_unless_present = "aligned")]
    pub landmarks: Option<PathBuf>,
    /// The images are already aligned crops of the model's input size.
    #[arg(long)]
    pub aligned: bool,
    /// Output: `.npy` (with the row paths in a `.txt` beside it) or `.safetensors`.
    #[arg(long)]
    pub out: PathBuf,
    /// Concatenate the embedding of each image's mirror (as the LFW protocol does).
    #[arg(long)]
    pub flip: bool,
    #[arg(long, default_value_t = 128)]
    pub batch: usize,
    #[arg(long, default_value = "auto")]
    pub device: DeviceChoice,
}

/// Image files under `inputs`, with the root their relative paths are taken from.
fn collect(inputs: &[PathBuf]) -> anyhow::Result<(PathBuf, Vec<PathBuf>)> {
    if let [dir] = inputs {
        if dir.is_dir() {
            let mut files = Vec::new();
            let mut stack = vec![dir.clone()];
            while let Some(d) = stack.pop() {
                for e in std::fs::read_dir(&d).with_context(|| format!("reading {}", d.display()))? {
                    let p = e?.path();
                    if p.is_dir() {
                        stack.push(p);
                    } else if is_image_path(&p) {
                        files.push(p.strip_prefix(dir)?.to_path_buf());
                    }
                }
            }
            files.sort();
            return Ok((dir.clone(), files));
        }
    }
    for p in inputs {
        if !p.is_file() {
            bail!("{}: not an image file", p.display());
        }
    }
    Ok((PathBuf::new(), inputs.to_vec()))
}

/// Normalised `[C, H, W]` pixels of one sample.
fn pixels(ds: &FaceDataset, s: &Sample, landmarks: Option<&LandmarkFile>, template: Template, shape: [i64; 3]) -> anyhow::Result<Vec<f32>> {
    let (h, w) = (shape[1] as usize, shape[2] as usize);
    let hwc = match landmarks {
        Some(l) => aligned_crop(ds, s, l, template)?,
        None => {
            let path = ds.image_path(s);
            let img = read_rgb(&path)?;
            if (img.height() as usize, img.width() as usize) != (h, w) {
                bail!("{}: {}x{} is not an aligned {h}x{w} crop", path.display(), img.height(), img.width());
            }
            img.into_raw()
        }
    };
    Ok(normalize_u8(&hwc_to_chw(&hwc, h, w)))
}

pub fn run(args: EmbedArgs, quiet: bool) -> anyhow::Result<()> {
    let device = args.device.resolve()?;
    let loaded = load_backbone(&args.model, device, None).with_context(|| format!("loading {}", args.model.display()))?;
    let shape = loaded.backbone.input_shape();
    let template = template_for(&loaded.config)?;
    let (root, files) = match &args.list {
        Some(list) => {
            let [root] = &args.images[..] else { bail!("--list needs one --images folder") };
            let text = std::fs::read_to_string(list).with_context(|| format!("reading {}", list.display()))?;
            let files: Vec<PathBuf> = text.lines().map(str::trim).filter(|l| !l.is_empty()).map(PathBuf::from).collect();
            let missing: Vec<String> = files.iter().filter(|f| !root.join(f).is_file()).map(|f| f.display().to_string()).collect();
            if !missing.is_empty() {
                bail!("{}: {} listed image(s) do not exist under {}: {}", list.display(), missing.len(), root.display(),
                    missing.iter().take(10).cloned().collect::<Vec<_>>().join(", "));
            }
            (root.clone(), files)
        }
        None => collect(&args.images)?,
    };
    if files.is_empty() {
        bail!("no images found in {:?}", args.images);
    }
    let landmarks = match &args.landmarks {
        Some(p) if !args.aligned => Some(LandmarkFile::read(p, OnBad::Fail)?),
        _ => None,
    };
    let ds = FaceDataset {
        root,
        samples: files.iter().map(|p| Sample { path: p.clone(), label: 0 }).collect(),
        identities: vec![String::new()],
    };
    let bar = Bar::new("embed", ds.len() as u64, quiet);
    let per = shape.iter().product::<i64>() as usize;
    let mut out = Vec::new();
    let _guard = tch::no_grad_guard();
    for chunk in ds.samples.chunks(args.batch.max(1)) {
        let px: Vec<Vec<f32>> = chunk.par_iter().map(|s| pixels(&ds, s, landmarks.as_ref(), template, shape)).collect::<anyhow::Result<_>>()?;
        let flat: Vec<f32> = px.into_iter().flatten().collect();
        let x = Tensor::f_from_slice(&flat)?.f_view([(flat.len() / per) as i64, shape[0], shape[1], shape[2]])?.f_to_device(device)?;
        let mut parts = vec![loaded.backbone.forward_t(&x, false)?];
        if args.flip {
            parts.push(loaded.backbone.forward_t(&x.f_flip([3])?, false)?);
        }
        out.push(Tensor::f_cat(&parts, 1)?.f_to_device(Device::Cpu)?.f_to_kind(Kind::Float)?);
        bar.inc(chunk.len() as u64);
    }
    drop(bar);
    let emb = Tensor::f_cat(&out, 0)?;
    let (n, d) = (emb.size()[0] as usize, emb.size()[1] as usize);
    write(&args.out, &emb, &files)?;
    println!("{n} embeddings of {d} dimensions written to {}", args.out.display());
    Ok(())
}

fn write(out: &Path, emb: &Tensor, files: &[PathBuf]) -> anyhow::Result<()> {
    let paths: Vec<String> = files.iter().map(|p| p.display().to_string()).collect();
    match out.extension().and_then(|e| e.to_str()) {
        Some("npy") => {
            facerec_data::npy::write(out, &facerec_eval::features::to_array2::<f32>(emb)?)?;
            let index = out.with_extension("txt");
            facerec_data::fsutil::atomic_write_bytes(&index, (paths.join("\n") + "\n").as_bytes())?;
        }
        Some("safetensors") => {
            let meta = BTreeMap::from([("paths".to_owned(), serde_json::to_string(&paths)?)]);
            let bytes = facerec_model::weights::to_bytes(&[("embeddings".to_owned(), emb.shallow_clone())], &meta)?;
            facerec_data::fsutil::atomic_write_bytes(out, &bytes)?;
        }
        _ => bail!("{}: the output must end in .npy or .safetensors", out.display()),
    }
    Ok(())
}
