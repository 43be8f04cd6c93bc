//! `facerec eval`: LFW verification (and identification) of a trained model, or of features
//! computed by any other model, with the same protocol.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::Args;

use facerec_data::align::Template;
use facerec_data::ijb::{IjbFiles, IjbMeta};
use facerec_data::npy::{RowReader, RowWriter};
use facerec_eval::ijb::{extract_features, IjbReport, Modes};
use facerec_eval::lfw::{features_in_words, verify_external, BinProtocol, BinResult, BinSet, LfwEval, LfwEvalConfig, LfwReport};
use facerec_model::device::DeviceChoice;
use facerec_model::saved::load_backbone;
use facerec_experiment::{Config, RunDir};

use crate::progress::Bar;

pub const EXAMPLES: &str = "Examples:
  facerec eval runs/lfw_faceresnet_small_center                 # the run's [eval.lfw] settings
  facerec eval runs/lfw_faceresnet_small_center --folds 1,2,3,4,5,6,7,8,9,10 --pca 128
  facerec eval --model other/model.safetensors --identification --out runs/other_eval
  facerec eval --features emb.npy --index emb_paths.txt --folds 1,2,3,4,5
  facerec eval --model runs/x/model.safetensors --bin lfw.bin
  facerec eval --model runs/x/model.safetensors --ijb /data/IJB_release/IJBC   # TAR at FAR 1e-6..1e-1
  facerec eval --ijb /data/IJB_release/IJBB --ijb-name IJBB --features ijbb_feats.npy --ijb-modes all";

#[derive(Debug, Args)]
pub struct EvalArgs {
    /// A run directory: its model.safetensors and the [eval.lfw] settings of its config.toml.
    pub run: Option<PathBuf>,
    /// A backbone file (model.safetensors) instead of a run.
    #[arg(long, conflicts_with = "features")]
    pub model: Option<PathBuf>,
    /// Score features computed elsewhere: a .npy of [N, D] float32 ... (with --ijb: [N, 2D],
    /// each image's features then its mirror's, in the order of the set's image list)
    #[arg(long)]
    pub features: Option<PathBuf>,
    /// ... with one LFW-relative image path per row (`Name/Name_0001.jpg`).
    #[arg(long)]
    pub index: Option<PathBuf>,
    /// Evaluate on an insightface `.bin` (lfw.bin, cfp_fp.bin, agedb_30.bin) instead of LFW's files.
    #[arg(long, conflicts_with = "features")]
    pub bin: Option<PathBuf>,
    /// Evaluate on an IJB-B / IJB-C release (the folder holding loose_crop/ and meta/): 1:1
    /// template verification as insightface's eval_ijbc.py, TAR at FAR 1e-6 ... 1e-1.
    #[arg(long, conflicts_with_all = ["bin", "index"])]
    pub ijb: Option<PathBuf>,
    /// Which set of --ijb: IJBC or IJBB [default: the one whose meta files the folder holds].
    #[arg(long, requires = "ijb")]
    pub ijb_name: Option<String>,
    /// eval_ijbc.py's test modes, comma-separated: F1/F0 (mirror features added or not),
    /// N1/N0 (image features keep their norm, or are L2-normalised), D1/D0 (times the detector
    /// score or not), as F1N1D1 (eval_ijbc.py's default, what its published tables use), or
    /// "all" for the eight.
    #[arg(long, value_delimiter = ',', default_value = "F1N1D1", requires = "ijb")]
    pub ijb_modes: Vec<String>,
    /// With --ijb and a model: also save the image features, [N, 2D] float32, for --features.
    #[arg(long, requires = "ijb", conflicts_with = "features")]
    pub save_features: Option<PathBuf>,
    /// How a --bin set is scored: insightface (its eval/verification.py: the numbers
    /// arcface_torch logs and papers quote) or facerec (the LFW protocol on its pairs).
    #[arg(long, value_enum, default_value = "insightface", requires = "bin")]
    pub protocol: ProtocolArg,
    /// LFW images root [default: data/lfw/images].
    #[arg(long)]
    pub images: Option<PathBuf>,
    /// Landmarks file [default: data/lfw/landmarks_5pt.tsv].
    #[arg(long)]
    pub landmarks: Option<PathBuf>,
    /// Pairs file [default: data/lfw/pairs.txt].
    #[arg(long)]
    pub pairs: Option<PathBuf>,
    /// Folds to evaluate, 1-based, comma-separated [default: the run's, else all 10].
    #[arg(long, value_delimiter = ',')]
    pub folds: Vec<usize>,
    /// PCA dimensions fitted on the training folds (0: none).
    #[arg(long)]
    pub pca: Option<usize>,
    /// Subtract the mean feature of the training folds' pairs before the cosine, as the LFW
    /// scripts of SphereFace and MobileFaceNet do (not with --pca).
    #[arg(long, conflicts_with = "pca")]
    pub subtract_mean: bool,
    /// Use the image's features alone, without its mirror.
    #[arg(long)]
    pub no_flip: bool,
    /// Also report identification (rank-1, CMC to rank 10).
    #[arg(long)]
    pub identification: bool,
    /// Leave out the open-set protocols over every image of the test identities (TAR at FAR
    /// 1e-3..1e-5 over all pairs, open-set identification; on by default).
    #[arg(long)]
    pub no_open_set: bool,
    /// Where to write lfw_report.json and the plots [default: the run directory when the
    /// settings are the run's own, RUN/eval_<what differs> (e.g. eval_pca64) when they are not,
    /// so the run's report stays (also for a run's model given as --model); for a model file
    /// outside a run, <stem>_eval/ beside it (models/m.safetensors -> models/m_eval/), where
    /// `facerec compare --model` looks; with --features or --bin, only when given].
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// "auto", "cpu", "cuda" or "cuda:N".
    #[arg(long, default_value = "auto")]
    pub device: DeviceChoice,
}

fn default_lfw(args: &EvalArgs) -> LfwEvalConfig {
    let lfw = facerec_data::paths::data_dir().join("lfw");
    LfwEvalConfig {
        images: lfw.join("images"),
        landmarks: lfw.join("landmarks_5pt.tsv"),
        pairs: lfw.join("pairs.txt"),
        folds: Vec::new(),
        pca: 0,
        subtract_mean: false,
        flip: true,
        identification: args.identification,
        open_set: true,
        cache_dir: facerec_data::paths::data_dir().join("cache"),
        batch_size: 128,
    }
}

pub fn run(args: EvalArgs, quiet: bool) -> anyhow::Result<()> {
    let run_config = match &args.run {
        Some(run) => {
            let path = RunDir::new(run).config();
            Some(Config::load(&path, &[]).with_context(|| format!("reading the run's config {}", path.display()))?)
        }
        None => None,
    };
    if let Some(dir) = &args.ijb {
        return ijb(&args, dir, quiet);
    }
    let lfw = settings(&args, run_config.as_ref());
    if let Some(features) = &args.features {
        let index_path = args.index.as_ref().context("--features needs --index")?;
        return external(features, index_path, &lfw, args.out.as_deref());
    }
    let model_path = match (&args.model, &args.run) {
        (Some(m), _) => m.clone(),
        (None, Some(run)) => RunDir::new(run).model(),
        (None, None) => bail!("give a run directory, --model or --features (see --help)"),
    };
    let device = args.device.resolve()?;
    let loaded = load_backbone(&model_path, device, None).with_context(|| format!("loading {}", model_path.display()))?;
    if let Some(bin) = &args.bin {
        let set = BinSet::load(bin, loaded.backbone.input_shape(), loaded.config.pixel_norm())?;
        let r = set.evaluate(loaded.backbone.as_ref(), device, args.protocol.into(), lfw.flip, lfw.scoring(), lfw.batch_size)?;
        return report_bin(bin, r, &lfw, args.out.as_deref(), &model_path);
    }
    lfw.validate().map_err(anyhow::Error::msg)?;
    let template = Template::for_input(loaded.config.input_shape()).map_err(anyhow::Error::msg)?;
    let mut eval = {
        let bar = Bar::counter("aligning LFW evaluation images", quiet);
        LfwEval::new(&lfw, template, loaded.config.pixel_norm(), &|n| bar.inc(n))?
    };
    let t0 = std::time::Instant::now();
    let report = {
        let bar = Bar::new("LFW features", eval.images_to_embed() as u64, quiet);
        eval.report(loaded.backbone.as_ref(), device, &|n| bar.inc(n))?
    };
    let trained_with = run_config.as_ref().and_then(|c| c.eval.lfw.as_ref());
    let out = match (&args.out, &args.run) {
        (Some(out), _) => out.clone(),
        (None, Some(run)) => reevaluation_dir(run, trained_with, &lfw),
        (None, None) => model_reports(&model_path, &lfw),
    };
    report.write(&out, &run_name(&model_path))?;
    print_report(&report, &out);
    tracing::info!("evaluated in {:.1} s", t0.elapsed().as_secs_f64());
    Ok(())
}

/// The settings: the run's [eval.lfw], else defaults; flags override.
fn settings(args: &EvalArgs, run_config: Option<&Config>) -> LfwEvalConfig {
    let mut lfw = run_config.and_then(|c| c.eval.lfw.clone()).unwrap_or_else(|| default_lfw(args));
    if let Some(p) = &args.images {
        lfw.images = p.clone();
    }
    if let Some(p) = &args.landmarks {
        lfw.landmarks = p.clone();
    }
    if let Some(p) = &args.pairs {
        lfw.pairs = p.clone();
    }
    if !args.folds.is_empty() {
        lfw.folds = args.folds.clone();
    }
    if let Some(k) = args.pca {
        lfw.pca = k;
        lfw.subtract_mean = false;
    }
    lfw.subtract_mean |= args.subtract_mean;
    lfw.flip &= !args.no_flip;
    lfw.identification |= args.identification;
    lfw.open_set &= !args.no_open_set;
    lfw
}

/// Prints the scores `r` of the model at `model_path` on the `.bin` at `bin`, and writes its
/// report into `out` when given.
fn report_bin(bin: &Path, r: BinResult, lfw: &LfwEvalConfig, out: Option<&Path>, model_path: &Path) -> anyhow::Result<()> {
    let v = r.verification;
    let protocol = match &r.insightface {
        Some(i) => {
            println!(
                "{}: {} (insightface's .bin protocol: {} pairs, 10 folds of consecutive pairs); {}; AUC {:.4}, EER {:.2}%",
                bin.display(),
                i.log_line(),
                i.pairs,
                if i.val.is_finite() {
                    format!("TAR {:.2}% +- {:.2} at FAR {:.1e}", 100.0 * i.val, 100.0 * i.val_std, i.far)
                } else {
                    "TAR at FAR 1e-3 undefined (a fold without pairs of one kind)".to_owned()
                },
                v.auc,
                100.0 * v.eer
            );
            format!(
                "insightface .bin {}, {} pairs, insightface's eval/verification.py: features of image and mirror summed and \
                 L2-normalised, squared distances thresholded on 0, 0.01, ..., 3.99, each of 10 folds of consecutive pairs \
                 with the threshold best on the other 9 (accuracy mean and std over the folds); TAR at FAR 1e-3 by its \
                 calculate_val; verification: facerec's ROC, AUC and EER of the same features",
                bin.display(),
                i.pairs
            )
        }
        None => {
            println!(
                "{}: {:.2}% +- {:.2} over {} pairs (facerec's protocol: 10 folds of consecutive pairs), AUC {:.4}, EER {:.2}%",
                bin.display(),
                100.0 * v.accuracy_mean,
                100.0 * v.accuracy_std,
                v.pairs,
                v.auc,
                100.0 * v.eer
            );
            format!(
                "insightface .bin {}, {} pairs in {} folds of consecutive pairs; facerec's protocol: threshold of each fold \
                 chosen on the other {}; cosine similarity of {}",
                bin.display(),
                v.pairs,
                v.folds.len(),
                v.folds.len().saturating_sub(1),
                features_in_words(lfw.flip, lfw.scoring())
            )
        }
    };
    if let Some(out) = out {
        // insightface's protocol always takes the mirror (summed, which `insightface` says).
        let flip = Some(r.insightface.is_some() || lfw.flip);
        let report = LfwReport { protocol, flip, verification: v, identification: None, open_set: None, insightface: r.insightface };
        report.write(out, &run_name(model_path))?;
        println!("report: {}", RunDir::new(out).lfw_report().display());
    }
    Ok(())
}

/// Where `facerec eval RUN` writes without `--out`: the run directory itself when the settings
/// are the run's own (the same report again), else `RUN/eval_<what differs>` (e.g.
/// `eval_pca64`), so that a re-evaluation never replaces the report the run was trained with
/// (which `facerec compare` takes its threshold from). `--out RUN` replaces it on purpose.
fn reevaluation_dir(run: &Path, trained_with: Option<&LfwEvalConfig>, now: &LfwEvalConfig) -> PathBuf {
    let Some(then) = trained_with else { return run.to_path_buf() };
    let mut parts = Vec::new();
    if then.folds != now.folds {
        parts.push(if now.folds.is_empty() {
            "folds_all".to_owned()
        } else {
            format!("folds{}", now.folds.iter().map(usize::to_string).collect::<Vec<_>>().join("-"))
        });
    }
    if then.pca != now.pca {
        parts.push(if now.pca == 0 { "nopca".to_owned() } else { format!("pca{}", now.pca) });
    }
    if then.subtract_mean != now.subtract_mean {
        parts.push(if now.subtract_mean { "meansub" } else { "nomeansub" }.to_owned());
    }
    if then.flip != now.flip {
        parts.push(if now.flip { "flip" } else { "noflip" }.to_owned());
    }
    if then.identification != now.identification {
        parts.push(if now.identification { "identification" } else { "noidentification" }.to_owned());
    }
    if then.open_set != now.open_set {
        parts.push(if now.open_set { "openset" } else { "noopenset" }.to_owned());
    }
    if (&then.images, &then.landmarks, &then.pairs) != (&now.images, &now.landmarks, &now.pairs) {
        parts.push("otherdata".to_owned());
    }
    if parts.is_empty() {
        run.to_path_buf()
    } else {
        RunDir::new(run).eval_dir(&parts.join("_"))
    }
}

/// Where `facerec eval --model FILE` writes without `--out`: beside a model file outside a run
/// ([`RunDir::model_reports`], where `facerec compare` looks), and for a run's model beside
/// the run's report as `facerec eval RUN` would with these settings, never over it.
fn model_reports(model: &Path, now: &LfwEvalConfig) -> PathBuf {
    let Some(run) = RunDir::of_model(model) else { return RunDir::model_reports(model) };
    let trained_with = Config::load(&run.config(), &[]).ok().and_then(|c| c.eval.lfw);
    match trained_with {
        Some(then) => reevaluation_dir(run.path(), Some(&then), now),
        None => run.eval_dir("lfw"),
    }
}

/// The name plots give a model: its run directory's, or a bare model file's stem.
fn run_name(model_path: &Path) -> String {
    if let Some(run) = RunDir::of_model(model_path) {
        return std::fs::canonicalize(run.path()).map(|p| RunDir::new(p).name()).unwrap_or_else(|_| run.name());
    }
    let named = if model_path.is_dir() { model_path.file_name() } else { model_path.file_stem() };
    named.map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
}

fn external(features: &Path, index_path: &Path, lfw: &LfwEvalConfig, out: Option<&Path>) -> anyhow::Result<()> {
    // float32 [N, D]; another dtype or shape is an error that names the file
    let arr = facerec_data::npy::read::<f32, ndarray::Ix2>(features)?;
    let index: Vec<PathBuf> = std::fs::read_to_string(index_path)
        .with_context(|| format!("reading {}", index_path.display()))?
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| PathBuf::from(l.trim()))
        .collect();
    let t = facerec_eval::features::from_array2(&arr)?;
    let t0 = std::time::Instant::now();
    let v = verify_external(&t, &index, &lfw.pairs, &lfw.folds, lfw.scoring())?;
    println!(
        "LFW verification of {}: {:.2}% +- {:.2} over folds {:?} ({} pairs), AUC {:.4}, EER {:.2}% (scored in {:.1} ms)",
        features.display(),
        100.0 * v.accuracy_mean,
        100.0 * v.accuracy_std,
        v.folds,
        v.pairs,
        v.auc,
        100.0 * v.eer,
        t0.elapsed().as_secs_f64() * 1e3
    );
    if let Some(out) = out {
        let protocol = format!(
            "LFW View-2 pairs, folds {} ({} pairs); threshold of each fold chosen on the other {}; cosine \
             similarity of {} from {} (computed elsewhere)",
            v.folds.iter().map(usize::to_string).collect::<Vec<_>>().join(","),
            v.pairs,
            v.folds.len().saturating_sub(1),
            features_in_words(false, lfw.scoring()),
            features.display()
        );
        let report = LfwReport { protocol, flip: None, verification: v, identification: None, open_set: None, insightface: None };
        let name = features.file_stem().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        report.write(out, &name)?;
        println!("report: {}", RunDir::new(out).lfw_report().display());
    }
    Ok(())
}

fn print_report(report: &LfwReport, out: &Path) {
    let v = &report.verification;
    println!("protocol: {}", report.protocol);
    println!("accuracy: {:.2}% +- {:.2} (per fold: {})", 100.0 * v.accuracy_mean, 100.0 * v.accuracy_std,
        v.fold_accuracy.iter().map(|a| format!("{:.1}", 100.0 * a)).collect::<Vec<_>>().join(" "));
    println!("AUC {:.4}, EER {:.2}%", v.auc, 100.0 * v.eer);
    for line in v.tar_lines() {
        println!("{line}");
    }
    if let Some(i) = &report.identification {
        println!("identification: rank-1 {:.2}%, rank-5 {:.2}%, rank-10 {:.2}% ({} gallery, {} probes)",
            100.0 * i.rank1, 100.0 * i.cmc[4], 100.0 * i.cmc[9], i.gallery, i.probes);
    }
    if let Some(o) = &report.open_set {
        for line in o.lines() {
            println!("{line}");
        }
    }
    println!("report: {}", RunDir::new(out).lfw_report().display());
}

/// `facerec eval --ijb DIR`: image features from the model (or --features), pooled and scored
/// as eval_ijbc.py does in each asked mode; the table printed, the report and ROC written.
fn ijb(args: &EvalArgs, dir: &Path, quiet: bool) -> anyhow::Result<()> {
    let files = IjbFiles::in_dir(dir, args.ijb_name.as_deref())?;
    let modes = if args.ijb_modes.iter().any(|m| m.eq_ignore_ascii_case("all")) {
        Modes::all()
    } else {
        args.ijb_modes.iter().map(|m| Modes::parse(m)).collect::<Result<Vec<_>, _>>().map_err(anyhow::Error::msg)?
    };
    let meta = IjbMeta::read(&files)?;
    let t0 = std::time::Instant::now();
    let (features, source, out, name) = match &args.features {
        Some(path) => {
            let features = read_ijb_features(path, meta.len())?;
            let out = args.out.clone().unwrap_or_else(|| RunDir::model_reports(path));
            (features, path.display().to_string(), out, run_name(path))
        }
        None => {
            let model_path = match (&args.model, &args.run) {
                (Some(m), _) => m.clone(),
                (None, Some(run)) => RunDir::new(run).model(),
                (None, None) => bail!("--ijb needs a run directory, --model or --features"),
            };
            let device = args.device.resolve()?;
            let loaded = load_backbone(&model_path, device, None).with_context(|| format!("loading {}", model_path.display()))?;
            let template = Template::for_input(loaded.config.input_shape()).map_err(anyhow::Error::msg)?;
            let features = {
                let bar = Bar::new("IJB image features", meta.len() as u64, quiet);
                extract_features(&meta, loaded.backbone.as_ref(), device, template, loaded.config.pixel_norm(), 128, &|n| bar.inc(n))?
            };
            tracing::info!("{} images embedded in {:.1} s", meta.len(), t0.elapsed().as_secs_f64());
            if let Some(save) = &args.save_features {
                let width = features.len() / meta.len();
                let mut w = RowWriter::create(save, meta.len(), width)?;
                w.write_rows(&features)?;
                w.finish()?;
                println!("features: {}", save.display());
            }
            let label = files.name.to_ascii_lowercase();
            let out = match (&args.out, &args.run, RunDir::of_model(&model_path)) {
                (Some(out), _, _) => out.clone(),
                (None, Some(run), _) => RunDir::new(run).eval_dir(&label),
                (None, None, Some(run)) => run.eval_dir(&label),
                (None, None, None) => RunDir::model_reports(&model_path),
            };
            (features, model_path.display().to_string(), out, run_name(&model_path))
        }
    };
    let report = facerec_eval::ijb::evaluate(&features, &meta, &modes, &source)?;
    report.write(&out, &name)?;
    println!(
        "{}: {} images, {} templates, {} template pairs ({} genuine, {} impostor); TAR (%) at FAR, eval_ijbc.py's protocol:",
        files.name, report.images, report.templates, report.pairs, report.genuine_pairs, report.impostor_pairs
    );
    for line in report.table(&name) {
        println!("{line}");
    }
    println!("report: {}", out.join(IjbReport::report_file(&files.name)).display());
    Ok(())
}

/// A `[N, 2D]` float .npy of the N images of an IJB set, read a block of rows at a time.
fn read_ijb_features(path: &Path, images: usize) -> anyhow::Result<Vec<f32>> {
    let mut r = RowReader::open(path)?;
    let (rows, cols) = r.shape();
    if rows != images || cols % 2 != 0 || cols == 0 {
        bail!(
            "{}: [{rows}, {cols}] features where [{images}, 2D] was expected (each of the set's {images} images: its features, then its mirror's)",
            path.display()
        );
    }
    let mut all = Vec::with_capacity(rows * cols);
    let mut block = Vec::new();
    while r.read_rows(4096, &mut block)? > 0 {
        all.extend_from_slice(&block);
    }
    Ok(all)
}

/// `--protocol`.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum ProtocolArg {
    Insightface,
    Facerec,
}

impl From<ProtocolArg> for BinProtocol {
    fn from(p: ProtocolArg) -> Self {
        match p {
            ProtocolArg::Insightface => BinProtocol::Insightface,
            ProtocolArg::Facerec => BinProtocol::Facerec,
        }
    }
}
