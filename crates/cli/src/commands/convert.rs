//! `facerec convert`: identity folders (or LFW pairs) to insightface's formats.

use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::Args;

use facerec_data::dataset::{FaceDataset, Sample};
use facerec_data::insightface::{aligned_jpegs, write_recordio, EvalBin};
use facerec_data::landmarks::{LandmarkFile, OnBad};
use facerec_data::lfw::{identity_of, Pairs};

use crate::commands::align::TemplateArg;
use crate::progress::Bar;

pub const EXAMPLES: &str = "Examples:
  facerec convert --images data/lfw/images --landmarks data/lfw/landmarks_5pt.tsv --to-rec out/train.rec
  facerec convert --images data/lfw/images --landmarks data/lfw/landmarks_5pt.tsv \\
      --pairs data/lfw/pairs.txt --to-bin out/lfw.bin";

#[derive(Debug, Args)]
pub struct ConvertArgs {
    /// Root of the images (`<root>/<identity>/<image>`).
    #[arg(long)]
    pub images: PathBuf,
    /// Landmarks file for the alignment.
    #[arg(long)]
    pub landmarks: PathBuf,
    /// Write an insightface training set: `<path>.rec` and `<path>.idx`.
    #[arg(long, required_unless_present = "to_bin")]
    pub to_rec: Option<PathBuf>,
    /// Write an insightface evaluation `.bin` of the pairs in --pairs (in file order).
    #[arg(long, requires = "pairs")]
    pub to_bin: Option<PathBuf>,
    /// LFW-style pairs file for --to-bin.
    #[arg(long)]
    pub pairs: Option<PathBuf>,
    /// Crop layout (insightface sets are 112x112).
    #[arg(long, value_enum, default_value = "insightface")]
    pub template: TemplateArg,
    /// Keep identities with at least this many images (--to-rec).
    #[arg(long, default_value_t = 1)]
    pub min_images: usize,
    /// Skip images that cannot be read or aligned instead of stopping (--to-rec).
    #[arg(long)]
    pub skip_bad: bool,
}

pub fn run(args: ConvertArgs, quiet: bool) -> anyhow::Result<()> {
    let template = args.template.into();
    let on_bad = if args.skip_bad { OnBad::Skip } else { OnBad::Fail };
    let landmarks = LandmarkFile::read(&args.landmarks, on_bad)?;
    if let Some(rec) = &args.to_rec {
        let ds = FaceDataset::from_folders(&args.images)?.filter_identities(|_| true, args.min_images);
        let bar = Bar::new("convert", ds.len() as u64, quiet);
        let (images, skipped) = aligned_jpegs(&ds, &landmarks, template, on_bad, &|n| bar.inc(n))?;
        drop(bar);
        if let Some(dir) = rec.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        write_recordio(rec, &images)?;
        println!(
            "wrote {} and {}: {} images of {} identities{}",
            rec.display(),
            rec.with_extension("idx").display(),
            images.len(),
            ds.num_identities(),
            if skipped.is_empty() { String::new() } else { format!(" ({} skipped)", skipped.len()) }
        );
    }
    if let Some(bin) = &args.to_bin {
        let pairs = Pairs::read(args.pairs.as_ref().context("--to-bin needs --pairs")?)?;
        let folds: Vec<usize> = (0..pairs.folds).collect();
        pairs.check_images(&args.images, &folds)?;
        let samples: Vec<Sample> = pairs.pairs.iter().flat_map(|p| [p.a.clone(), p.b.clone()]).map(|path| Sample { path, label: 0 }).collect();
        let identities = samples.iter().map(|s| identity_of(&s.path)).collect();
        let ds = FaceDataset { root: args.images.clone(), samples, identities };
        let bar = Bar::new("convert", ds.len() as u64, quiet);
        let (images, skipped) = aligned_jpegs(&ds, &landmarks, template, OnBad::Fail, &|n| bar.inc(n))?;
        drop(bar);
        if !skipped.is_empty() {
            bail!("{} pair images could not be aligned", skipped.len());
        }
        let out = EvalBin { images: images.into_iter().map(|(b, _)| b).collect(), issame: pairs.pairs.iter().map(|p| p.same).collect() };
        out.write(bin)?;
        println!("wrote {}: {} pairs", bin.display(), out.issame.len());
    }
    Ok(())
}
