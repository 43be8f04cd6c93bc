//! `facerec convert`: photos (a folder, files, patterns or a list, see `facerec_data::inputs`)
//! or LFW pairs to insightface's formats.

use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::Args;

use facerec_data::align::Template;
use facerec_data::dataset::{FaceDataset, Sample};
use facerec_data::insightface::{aligned_encoded, write_recordio, Encoding, EvalBin};
use facerec_data::landmarks::{LandmarkFile, OnBad};
use facerec_data::lfw::{disjoint_train_set, identity_of, zero_based_folds, Pairs};

use crate::args::TemplateArg;
use crate::faces::select_images;
use crate::progress::Bar;

pub const EXAMPLES: &str = "Examples:
  facerec convert --images data/lfw/images --landmarks data/lfw/landmarks_5pt.tsv --to-rec lfw.rec
  facerec convert --images photos/ --landmarks photos_5pt.tsv --to-rec photos.rec --min-images 2
  facerec convert --images data/lfw/images --landmarks lfw.tsv --pairs pairs.txt --to-bin lfw.bin
  facerec convert --images lfw --landmarks 5.tsv --to-rec a.rec --exclude-pairs p --exclude-folds 1
  facerec eval --model runs/x --bin lfw.bin      # 112x112 crops; 112x96 models get columns 8..104";

#[derive(Debug, Args)]
pub struct ConvertArgs {
    /// Images (--to-bin: the folder the pairs' paths are relative to). A folder (searched
    /// recursively), image files, or patterns such as 'photos/*.jpg'; identities are the
    /// sub-folders (<folder>/<identity>/<image>), or each image's file stem for images directly
    /// in the folder.
    #[arg(long, num_args = 1.., required = true)]
    pub images: Vec<PathBuf>,
    /// Only these images (--to-rec): a list file of paths relative to the --images folder, one
    /// per line (`path` or `path label`).
    #[arg(long)]
    pub list: Option<PathBuf>,
    /// Landmarks file for the alignment (paths relative to the images' folder), as `facerec
    /// detect` writes it for the same --images.
    #[arg(long)]
    pub landmarks: PathBuf,
    /// Write an insightface training set: `<path>.rec` and `<path>.idx`.
    #[arg(long, required_unless_present = "to_bin")]
    pub to_rec: Option<PathBuf>,
    /// Write an insightface evaluation `.bin` of the pairs in --pairs. insightface scores a
    /// .bin in 10 folds of consecutive pairs: with all 10 folds of LFW the pairs keep their
    /// file order (each tenth one fold, as insightface's lfw.bin); with other --folds each
    /// fold's same- and different-person pairs alternate, so that every tenth holds both.
    #[arg(long, requires = "pairs")]
    pub to_bin: Option<PathBuf>,
    /// LFW-style pairs file for --to-bin.
    #[arg(long)]
    pub pairs: Option<PathBuf>,
    /// Only these folds of --pairs (--to-bin), 1-based, comma-separated (e.g. 1,2,3,4,5: the
    /// test folds of the identity-disjoint protocol); every fold when not given.
    #[arg(long, value_delimiter = ',', requires = "to_bin")]
    pub folds: Vec<usize>,
    /// Crop layout. insightface (112x112) is the layout of insightface's own sets. Its .bin
    /// serves models of both input sizes: `facerec eval --bin` gives a 112x96 model (the
    /// paper's Face-ResNet, caffe-face) columns 8..104 of each crop, its caffe-face crop; a
    /// caffe-face (112x96) .bin serves 112x96 models only. A .rec trains (`data.kind =
    /// "record_io"`) models of its own crop size: caffe-face for the shipped 112x96 configs.
    #[arg(long, value_enum, default_value = "insightface")]
    pub template: TemplateArg,
    /// Keep identities with at least this many images (--to-rec).
    #[arg(long, default_value_t = 1)]
    pub min_images: usize,
    /// Leave out every identity of these folds (--exclude-folds) of an LFW pairs file
    /// (--to-rec): the identity-disjoint training split the face configs train on.
    #[arg(long, requires = "exclude_folds")]
    pub exclude_pairs: Option<PathBuf>,
    /// Folds of --exclude-pairs, 1-based, comma-separated (e.g. 1,2,3,4,5).
    #[arg(long, value_delimiter = ',', requires = "exclude_pairs")]
    pub exclude_folds: Vec<usize>,
    /// How crops are stored: jpeg (quality 95, as insightface's sets) or png (lossless: any
    /// decoder reads the same pixels).
    #[arg(long, value_enum, default_value = "jpeg")]
    pub encoding: EncodingArg,
    /// Skip images that cannot be read or aligned instead of stopping (--to-rec).
    #[arg(long)]
    pub skip_bad: bool,
}

pub fn run(args: ConvertArgs, quiet: bool) -> anyhow::Result<()> {
    let template: Template = args.template.into();
    let (h, w) = template.size();
    // What the output is good for: a .bin is scored by `facerec eval --bin`, which cuts the
    // 112x96 crop from a 112x112 one; a .rec trains models of its own crop size only.
    let serves = |bin: bool| match (template, bin) {
        (Template::Insightface, true) => "for eval --bin of models of 112x112 and 112x96 inputs",
        (Template::Insightface, false) => "for training models of 112x112 inputs; --template caffe-face for 112x96 ones",
        (Template::CaffeFace, _) => "for models of 112x96 inputs only",
    };
    let on_bad = if args.skip_bad { OnBad::Skip } else { OnBad::Fail };
    let landmarks = LandmarkFile::read(&args.landmarks, on_bad)?;
    if let Some(rec) = &args.to_rec {
        let all = select_images(&args.images, args.list.as_deref())?;
        let ds = match &args.exclude_pairs {
            Some(path) => {
                let pairs = Pairs::read(path)?;
                let folds = zero_based_folds(&args.exclude_folds, pairs.folds, "--exclude-folds").map_err(anyhow::Error::msg)?;
                disjoint_train_set(&all, &pairs, &folds, args.min_images)
            }
            None => all.filter_identities(|_| true, args.min_images),
        };
        if ds.is_empty() {
            bail!("no identity has --min-images {} images", args.min_images);
        }
        let bar = Bar::new("convert", ds.len() as u64, quiet);
        let (images, skipped) = aligned_encoded(&ds, &landmarks, template, args.encoding.into(), on_bad, &|n| bar.inc(n))?;
        drop(bar);
        if let Some(dir) = rec.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        write_recordio(rec, &images)?;
        println!(
            "wrote {} and {}: {} {h}x{w} crops ({}) of {} identities{}",
            rec.display(),
            rec.with_extension("idx").display(),
            images.len(),
            serves(false),
            ds.num_identities(),
            if skipped.is_empty() { String::new() } else { format!(" ({} skipped)", skipped.len()) }
        );
    }
    if let Some(bin) = &args.to_bin {
        let pairs = Pairs::read(args.pairs.as_ref().context("--to-bin needs --pairs")?)?;
        let root = match &args.images[..] {
            [root] if root.is_dir() => root,
            _ => bail!("--to-bin needs --images to be one folder, the one the paths of {} are relative to", pairs_path(&args)),
        };
        let folds = match &args.folds[..] {
            [] => (0..pairs.folds).collect(),
            given => zero_based_folds(given, pairs.folds, "--folds").map_err(anyhow::Error::msg)?,
        };
        pairs.check_images(root, &folds)?;
        let ordered = pairs.bin_order(&folds);
        let samples: Vec<Sample> = ordered.iter().flat_map(|p| [p.a.clone(), p.b.clone()]).map(|path| Sample { path, label: 0 }).collect();
        let identities = samples.iter().map(|s| identity_of(&s.path)).collect();
        let ds = FaceDataset { root: root.clone(), samples, identities };
        let bar = Bar::new("convert", ds.len() as u64, quiet);
        let (images, skipped) = aligned_encoded(&ds, &landmarks, template, args.encoding.into(), OnBad::Fail, &|n| bar.inc(n))?;
        drop(bar);
        if !skipped.is_empty() {
            bail!("{} pair images could not be aligned", skipped.len());
        }
        let out = EvalBin { images: images.into_iter().map(|(b, _)| b).collect(), issame: ordered.iter().map(|p| p.same).collect() };
        out.write(bin)?;
        println!("wrote {}: {} pairs of {h}x{w} crops ({})", bin.display(), out.issame.len(), serves(true));
    }
    Ok(())
}

fn pairs_path(args: &ConvertArgs) -> String {
    args.pairs.as_ref().map(|p| p.display().to_string()).unwrap_or_default()
}

/// `--encoding`.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum EncodingArg {
    Jpeg,
    Png,
}

impl From<EncodingArg> for Encoding {
    fn from(e: EncodingArg) -> Self {
        match e {
            EncodingArg::Jpeg => Encoding::Jpeg,
            EncodingArg::Png => Encoding::Png,
        }
    }
}
