//! The LFW protocols end to end: which images the pairs need, their aligned crops (cached),
//! features of image and mirror, verification over the chosen folds and, optionally,
//! identification on the identities of those folds.
//!
//! Protocols (see `../shared/README.md`): the standard View-2 10-fold protocol (all folds), the
//! identity-disjoint one (train on identities outside folds 1-5, test on folds 1-5 with
//! thresholds from the other four), and leave-one-fold-out variants. A report always states
//! its folds and settings next to its numbers.

use facerec_core::run_files;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tch::{Device, Tensor};

use facerec_data::align::Template;
use facerec_data::cache::CropCache;
use facerec_data::dataset::{FaceDataset, Sample};
use facerec_data::landmarks::{LandmarkFile, OnBad};
use facerec_data::lfw::{identity_of, Pairs};
use facerec_data::normalize::{crops_to_tensor, PixelNorm};
use facerec_data::pixels::PixelSource;
use facerec_model::Backbone;
use facerec_data::lfw::zero_based_folds;

use crate::error::{EvalError, Result};
use crate::features::embed_rows;
use crate::identification::{identify, IdentificationReport};
use crate::insightface::InsightfaceVerification;
use crate::open_set::{open_set, OpenSetReport};
use crate::verification::{verify, PairRef, Scoring, VerificationReport};

/// `[eval.lfw]`: the LFW verification protocol (Wen et al. Sec. 4.2): features of image and
/// mirror concatenated, optional PCA fitted on the training folds, cosine similarity, the
/// threshold of each fold chosen on the other folds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LfwEvalConfig {
    /// LFW `images/` root.
    pub images: PathBuf,
    pub landmarks: PathBuf,
    pub pairs: PathBuf,
    /// Folds to evaluate, 1-based; empty = all of them.
    #[serde(default)]
    pub folds: Vec<usize>,
    /// PCA dimensions fitted on the training folds' images; 0 = no PCA.
    #[serde(default)]
    pub pca: usize,
    /// Subtract the mean feature of the training folds' pairs before the cosine (SphereFace's
    /// and MobileFaceNet's LFW scripts do); not with `pca`, which centres the features anyway.
    #[serde(default)]
    pub subtract_mean: bool,
    /// Concatenate the features of each image and its mirror.
    #[serde(default = "default_true")]
    pub flip: bool,
    /// Also report identification (rank-1, CMC) on the evaluated folds' identities.
    #[serde(default)]
    pub identification: bool,
    /// Also report the open-set protocols over every image of the evaluated folds' identities
    /// (crate::open_set: TAR at FAR 1e-3..1e-5 over all pairs, open-set identification) in the
    /// final report; periodic evaluation stays on the pairs.
    #[serde(default = "default_true")]
    pub open_set: bool,
    /// Where the aligned crops of the evaluation images are cached.
    #[serde(default = "default_cache_dir")]
    pub cache_dir: PathBuf,
    /// Images per forward pass.
    #[serde(default = "default_eval_batch")]
    pub batch_size: usize,
}

fn default_true() -> bool {
    true
}
fn default_cache_dir() -> PathBuf {
    PathBuf::from("data/cache")
}
fn default_eval_batch() -> usize {
    128
}

impl LfwEvalConfig {
    /// Paths exist and numbers are sane; the message names the key.
    pub fn validate(&self) -> std::result::Result<(), String> {
        for (key, path) in [("eval.lfw.images", &self.images), ("eval.lfw.landmarks", &self.landmarks), ("eval.lfw.pairs", &self.pairs)] {
            if !path.exists() {
                return Err(format!("{key}: {} does not exist (run scripts/setup.sh for LFW)", path.display()));
            }
        }
        if self.folds.contains(&0) {
            return Err("eval.lfw.folds: folds are 1-based".into());
        }
        if self.folds.len() == 1 {
            return Err(format!(
                "eval.lfw.folds = {:?}: verification needs at least 2 folds (the threshold of each fold is \
                 chosen on the others)",
                self.folds
            ));
        }
        let mut sorted = self.folds.clone();
        sorted.sort_unstable();
        if let Some(w) = sorted.windows(2).find(|w| w[0] == w[1]) {
            return Err(format!("eval.lfw.folds = {:?}: fold {} is listed twice", self.folds, w[0]));
        }
        if self.batch_size == 0 {
            return Err("eval.lfw.batch_size must be at least 1".into());
        }
        if self.subtract_mean && self.pca > 0 {
            return Err("eval.lfw.subtract_mean: PCA (eval.lfw.pca) centres the features already; set one of the two".into());
        }
        Ok(())
    }

    /// How pairs are scored: PCA, mean subtraction or plain cosine.
    pub fn scoring(&self) -> Scoring {
        Scoring { pca: self.pca, subtract_mean: self.subtract_mean }
    }
}

/// What one evaluation found, with the protocol spelled out.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LfwReport {
    pub protocol: String,
    /// Whether each feature is the image's and its mirror's concatenated (`eval.lfw.flip`), as
    /// `facerec compare` must compute them to use the thresholds (summed instead when
    /// `insightface` is present: that protocol's features); `None` for features computed
    /// elsewhere.
    pub flip: Option<bool>,
    pub verification: VerificationReport,
    pub identification: Option<IdentificationReport>,
    /// The open-set protocols over every image of the test identities (`eval.lfw.open_set`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub open_set: Option<OpenSetReport>,
    /// A `.bin` set scored by insightface's protocol: its numbers (the headline ones then;
    /// `verification` holds facerec's ROC, AUC and EER of the same features).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub insightface: Option<InsightfaceVerification>,
}

/// LFW, prepared for evaluating models.
pub struct LfwEval {
    config: LfwEvalConfig,
    source: PixelSource,
    /// Image paths of the cache rows.
    paths: Vec<PathBuf>,
    /// Pairs over cache rows.
    pairs: Vec<PairRef>,
    folds: Vec<usize>,
    /// Cache rows used by the pairs (sorted).
    pair_rows: Vec<usize>,
    /// The verification (and open-set protocols, when configured) of the last periodic
    /// evaluation ([`LfwEval::evaluate`]): a training
    /// run ends with one of its final weights, which [`LfwEval::report`] reuses.
    last: Option<(VerificationReport, Option<OpenSetReport>)>,
}

/// The features a protocol scores, in words: `image+mirror concatenated features, PCA to 64
/// fitted on the training folds`.
pub fn features_in_words(flip: bool, scoring: Scoring) -> String {
    format!(
        "{}features{}",
        if flip { "image+mirror concatenated " } else { "" },
        if scoring.pca > 0 {
            format!(", PCA to {} fitted on the training folds", scoring.pca)
        } else if scoring.subtract_mean {
            ", the training folds' mean feature subtracted".to_owned()
        } else {
            String::new()
        }
    )
}

fn list_some(items: &[String]) -> String {
    let shown: Vec<&str> = items.iter().take(10).map(String::as_str).collect();
    format!("{}{}", shown.join(", "), if items.len() > 10 { format!(" and {} more", items.len() - 10) } else { String::new() })
}

/// Folds of a config (1-based, empty = all) as 0-based indices.
pub fn resolve_folds(folds: &[usize], pairs: &Pairs) -> Result<Vec<usize>> {
    if folds.is_empty() {
        return Ok((0..pairs.folds).collect());
    }
    zero_based_folds(folds, pairs.folds, "eval.lfw.folds").map_err(EvalError::Invalid)
}

impl LfwEval {
    /// Reads the pairs, checks that every image they need exists and has landmarks (the error
    /// lists the ones that do not), and aligns them into the crop cache (once).
    pub fn new(config: &LfwEvalConfig, template: Template, norm: PixelNorm, progress: &(dyn Fn(u64) + Sync)) -> Result<Self> {
        let pairs = Pairs::read(&config.pairs)?;
        let folds = resolve_folds(&config.folds, &pairs)?;
        pairs.check_images(&config.images, &folds)?;
        let mut needed: Vec<PathBuf> = pairs.images(&folds);
        if config.identification || config.open_set {
            let test_ids: HashSet<String> = pairs.identities_in(&folds);
            for id in &test_ids {
                let dir = config.images.join(id);
                let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
                    .map_err(|e| EvalError::Io { path: dir.clone(), error: e })?
                    .filter_map(|e| e.ok().map(|e| PathBuf::from(id).join(e.file_name())))
                    .filter(|p| facerec_data::image_io::is_image_path(p))
                    .collect();
                if files.len() >= 2 {
                    needed.append(&mut files);
                }
            }
            needed.sort();
            needed.dedup();
        }
        let landmarks = LandmarkFile::read(&config.landmarks, OnBad::Fail)?;
        let missing: Vec<String> =
            needed.iter().filter(|p| !landmarks.entries.contains_key(*p)).map(|p| p.display().to_string()).collect();
        if !missing.is_empty() {
            return Err(EvalError::Input {
                path: config.landmarks.clone(),
                msg: format!("no landmarks for {} evaluation image(s): {}", missing.len(), list_some(&missing)),
            });
        }
        let identities: Vec<String> = needed.iter().map(|p| identity_of(p)).collect::<std::collections::BTreeSet<_>>().into_iter().collect();
        let label: HashMap<&str, i64> = identities.iter().enumerate().map(|(i, n)| (n.as_str(), i as i64)).collect();
        let samples =
            needed.iter().map(|p| Sample { path: p.clone(), label: label[identity_of(p).as_str()] }).collect();
        let dataset = FaceDataset { root: config.images.clone(), samples, identities };
        let (cache, _) = CropCache::open_or_build_in(&dataset, &landmarks, template, &config.cache_dir, OnBad::Fail, progress)?;
        let positions = cache.positions();
        let paths = cache.index.paths.clone();
        let pair_refs: Vec<PairRef> = pairs
            .of_folds(&folds)
            .iter()
            .map(|p| PairRef { a: positions[&p.a], b: positions[&p.b], same: p.same, fold: p.fold })
            .collect();
        let mut pair_rows: Vec<usize> = pair_refs.iter().flat_map(|p| [p.a, p.b]).collect();
        pair_rows.sort_unstable();
        pair_rows.dedup();
        Ok(LfwEval { config: config.clone(), source: cache.into_source()?.with_norm(norm), paths, pairs: pair_refs, folds, pair_rows, last: None })
    }

    /// The LFW-relative image path of each cache row.
    pub fn paths(&self) -> &[PathBuf] {
        &self.paths
    }

    /// The protocol in words.
    pub fn protocol(&self) -> String {
        let folds: Vec<String> = self.folds.iter().map(|f| (f + 1).to_string()).collect();
        format!(
            "LFW View-2 pairs, folds {} ({} pairs); threshold of each fold chosen on the other {}; \
             cosine similarity of {}",
            folds.join(","),
            self.pairs.len(),
            self.folds.len() - 1,
            features_in_words(self.config.flip, self.config.scoring())
        )
    }

    /// Features `[rows, D]` (or `[rows, 2D]` with the mirror) of the given cache rows.
    pub fn features(&self, backbone: &dyn Backbone, device: Device, rows: &[usize]) -> Result<Tensor> {
        self.features_with_progress(backbone, device, rows, &|_| {})
    }

    /// [`LfwEval::features`], calling `progress` with the number of images done after each batch.
    pub fn features_with_progress(
        &self,
        backbone: &dyn Backbone,
        device: Device,
        rows: &[usize],
        progress: &dyn Fn(u64),
    ) -> Result<Tensor> {
        embed_rows(backbone, rows, self.config.batch_size, self.config.flip, device, |chunk| self.crops(chunk), progress)
    }

    /// How many images [`LfwEval::report`] computes features of (for a progress bar).
    pub fn images_to_embed(&self) -> usize {
        match &self.last {
            Some((_, open)) if !self.config.identification && (open.is_some() || !self.config.open_set) => 0,
            _ => self.paths.len(),
        }
    }

    /// The normalised crops `[rows, C, H, W]` of the given cache rows, as the backbone sees them
    /// (unmirrored).
    pub fn crops(&self, rows: &[usize]) -> Result<Tensor> {
        Ok(self.source.images_tensor(rows, &vec![false; rows.len()])?)
    }

    /// Verification only (what periodic evaluation runs).
    pub fn verify_model(&self, backbone: &dyn Backbone, device: Device) -> Result<VerificationReport> {
        let feats = self.features(backbone, device, &self.pair_rows)?;
        let row_of: HashMap<usize, usize> = self.pair_rows.iter().enumerate().map(|(i, &r)| (r, i)).collect();
        let pairs: Vec<PairRef> =
            self.pairs.iter().map(|p| PairRef { a: row_of[&p.a], b: row_of[&p.b], ..*p }).collect();
        verify(&feats, &pairs, &self.folds, self.config.scoring())
    }

    /// Verification and (when configured) identification.
    pub fn run(&self, backbone: &dyn Backbone, device: Device) -> Result<LfwReport> {
        self.fresh_report(backbone, device, &|_| {})
    }

    /// [`LfwEval::run`], with `progress` told the images embedded.
    fn fresh_report(&self, backbone: &dyn Backbone, device: Device, progress: &dyn Fn(u64)) -> Result<LfwReport> {
        let feats = self.all_features(backbone, device, progress)?;
        let verification = verify(&feats, &self.pairs, &self.folds, self.config.scoring())?;
        self.complete(verification, None, Some(&feats), backbone, device, progress)
    }

    /// The report of the model the last periodic evaluation saw (at the end of training: its
    /// final weights, which `backbone` must be), reusing that evaluation's verification and
    /// open-set protocols instead of computing them again; without one, as [`LfwEval::run`].
    /// `progress` gets the images embedded ([`LfwEval::images_to_embed`] in all).
    pub fn report(&mut self, backbone: &dyn Backbone, device: Device, progress: &dyn Fn(u64)) -> Result<LfwReport> {
        match self.last.take() {
            Some((verification, open)) => self.complete(verification, open, None, backbone, device, progress),
            None => self.fresh_report(backbone, device, progress),
        }
    }

    /// A report from `verification` (and `open`, the open-set protocols when already scored),
    /// adding identification and the open-set protocols as configured, on `feats` of all cache
    /// rows (computed here when needed and not given).
    fn complete(
        &self,
        verification: VerificationReport,
        open: Option<OpenSetReport>,
        feats: Option<&Tensor>,
        backbone: &dyn Backbone,
        device: Device,
        progress: &dyn Fn(u64),
    ) -> Result<LfwReport> {
        let mut report =
            LfwReport { protocol: self.protocol(), flip: Some(self.config.flip), verification, identification: None, open_set: None, insightface: None };
        let open = open.filter(|_| self.config.open_set);
        let need_open = self.config.open_set && open.is_none();
        report.open_set = open;
        if !self.config.identification && !need_open {
            return Ok(report);
        }
        let computed;
        let feats = match feats {
            Some(f) => f,
            None => {
                computed = self.all_features(backbone, device, progress)?;
                &computed
            }
        };
        let labels = self.source.labels();
        if self.config.identification {
            report.identification = Some(identify(feats, labels, 10)?);
        }
        if need_open {
            report.open_set = Some(self.open_set(feats)?);
        }
        Ok(report)
    }

    /// Features of every cache row.
    fn all_features(&self, backbone: &dyn Backbone, device: Device, progress: &dyn Fn(u64)) -> Result<Tensor> {
        let all: Vec<usize> = (0..self.paths.len()).collect();
        self.features_with_progress(backbone, device, &all, progress)
    }

    /// The open-set protocols on `feats` of every cache row.
    fn open_set(&self, feats: &Tensor) -> Result<OpenSetReport> {
        let r = open_set(feats, self.source.labels())?;
        tracing::debug!("open-set protocols scored in {:.2} s", r.seconds);
        Ok(r)
    }
}

impl LfwEval {
    /// The periodic evaluation during training: verification's accuracy, AUC and (where
    /// resolved) TAR at FAR 1e-3 of the model as it is now, named `lfw_*`, and with
    /// `open_set` the open-set protocols' resolved rates (`lfw_open_tar_far1e-4`,
    /// `lfw_open_rank1`, `lfw_open_dir_far1e-2`, ...; every image of the test identities is
    /// embedded then, not only the pairs'). Kept for [`LfwEval::report`].
    pub fn evaluate(&mut self, backbone: &dyn Backbone, device: Device) -> Result<Vec<(String, f64)>> {
        let (r, open) = if self.config.open_set {
            let feats = self.all_features(backbone, device, &|_| {})?;
            (verify(&feats, &self.pairs, &self.folds, self.config.scoring())?, Some(self.open_set(&feats)?))
        } else {
            (self.verify_model(backbone, device)?, None)
        };
        let mut metrics = vec![
            ("lfw_accuracy".into(), r.accuracy_mean),
            ("lfw_accuracy_std".into(), r.accuracy_std),
            ("lfw_auc".into(), r.auc),
        ];
        // Only where the different-person pairs resolve it (1,000 of them or more).
        if let Some(tar) = r.resolved_tar(1e-3) {
            metrics.push(("lfw_tar_far1e-3".into(), tar));
        }
        if let Some(o) = &open {
            metrics.extend(o.metrics().into_iter().map(|(name, v)| (format!("lfw_{name}"), v)));
        }
        self.last = Some((r, open));
        Ok(metrics)
    }
}

/// How a `.bin` set is scored.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BinProtocol {
    /// insightface's `eval/verification.py` ([`crate::insightface`]): the numbers arcface_torch
    /// logs and papers quote next to lfw, cfp_fp, agedb_30.
    #[default]
    Insightface,
    /// facerec's LFW protocol on the set's pairs (features of image and mirror concatenated,
    /// cosine, each fold's threshold chosen on the other nine, PCA or mean subtraction if asked).
    Facerec,
}

impl BinProtocol {
    pub fn name(self) -> &'static str {
        match self {
            BinProtocol::Insightface => "insightface",
            BinProtocol::Facerec => "facerec",
        }
    }
}

/// A `.bin` set scored: facerec's verification (ROC, AUC, EER, and its accuracy under
/// [`BinProtocol::Facerec`]) and, under [`BinProtocol::Insightface`], insightface's numbers.
#[derive(Debug, Clone)]
pub struct BinResult {
    pub verification: VerificationReport,
    pub insightface: Option<InsightfaceVerification>,
}

impl BinResult {
    /// The set's accuracy under its protocol (mean, std over the folds).
    pub fn accuracy(&self) -> (f64, f64) {
        match &self.insightface {
            Some(i) => (i.accuracy_mean, i.accuracy_std),
            None => (self.verification.accuracy_mean, self.verification.accuracy_std),
        }
    }
}

/// An insightface `.bin` set read and decoded once into the crops a backbone of one input
/// shape takes, for scoring it again and again (the periodic evaluation during training).
pub struct BinSet {
    /// `H x W x 3` crops, two per pair.
    crops: Vec<Vec<u8>>,
    issame: Vec<bool>,
    /// `[C, H, W]` of the crops.
    shape: [i64; 3],
    /// The model's pixel normalisation.
    norm: PixelNorm,
}

impl BinSet {
    /// Reads `path` and decodes its images to crops of `shape`, for a model whose input is
    /// normalised by `norm`: images already aligned, pair `i` = images `2i` and `2i + 1`. A
    /// 112x96 model scores a 112x112 set on columns 8..104 of its crops (see
    /// `facerec_data::align::fit_aligned`).
    pub fn load(path: &Path, shape: [i64; 3], norm: PixelNorm) -> Result<Self> {
        let bin = facerec_data::insightface::EvalBin::read(path)?;
        let mut crops = Vec::with_capacity(bin.images.len());
        for (i, bytes) in bin.images.iter().enumerate() {
            let img = facerec_data::image_io::decode_rgb(bytes, &path.join(format!("#{i}")))?;
            // A 112x112 (insightface) crop holds the 112x96 (caffe-face) one.
            let Some(hwc) = facerec_data::align::fit_aligned(&img, shape[1] as u32, shape[2] as u32) else {
                return Err(EvalError::Input {
                    path: path.to_path_buf(),
                    msg: format!(
                        "image {i} is {}x{}, the model takes {}x{} crops: a 112x112 set (facerec convert's \
                         default template, insightface's) serves 112x112 and 112x96 models; a 112x96 set \
                         (--template caffe-face) serves 112x96 models only, so make this one again with \
                         `facerec convert ... --to-bin` without --template caffe-face",
                        img.height(),
                        img.width(),
                        shape[1],
                        shape[2]
                    ),
                });
            };
            crops.push(hwc);
        }
        Ok(BinSet { crops, issame: bin.issame, shape, norm })
    }

    /// The set scored by `protocol` (under insightface's, `flip` and `scoring` are its own:
    /// mirrors summed, no PCA; facerec's scores on its features the ROC, AUC and EER).
    pub fn evaluate(&self, backbone: &dyn Backbone, device: Device, protocol: BinProtocol, flip: bool, scoring: Scoring, batch: usize) -> Result<BinResult> {
        if protocol == BinProtocol::Facerec {
            return Ok(BinResult { verification: self.verify(backbone, device, flip, scoring, batch)?, insightface: None });
        }
        let feats = self.features(backbone, device, true, batch)?; // [N, 2D]: image | mirror
        let (orig, mirror) = crate::insightface::split_flip(&crate::features::to_array2::<f32>(&feats)?);
        let insightface = crate::insightface::verify(&orig, &mirror, &self.issame, 10);
        let summed = crate::features::from_array2(&crate::insightface::summed_normalised(&orig, &mirror))?;
        let verification = self.score(&summed, Scoring::default())?;
        Ok(BinResult { verification, insightface: Some(insightface) })
    }

    /// Features of every image of the set, `[N, D]` (`[N, 2D]` with the mirror's).
    pub fn features(&self, backbone: &dyn Backbone, device: Device, flip: bool, batch: usize) -> Result<Tensor> {
        let [_, h, w] = self.shape;
        let rows: Vec<usize> = (0..self.crops.len()).collect();
        let crops = |chunk: &[usize]| {
            let chunk: Vec<&[u8]> = chunk.iter().map(|&i| self.crops[i].as_slice()).collect();
            Ok(crops_to_tensor(&chunk, h as usize, w as usize, self.norm)?)
        };
        embed_rows(backbone, &rows, batch, flip, device, crops, &|_| {})
    }

    /// Whether each pair is one person.
    pub fn issame(&self) -> &[bool] {
        &self.issame
    }

    /// facerec's protocol on `feats` of the set's images: 10 folds of consecutive pairs.
    fn score(&self, feats: &Tensor, scoring: Scoring) -> Result<VerificationReport> {
        let per_fold = (self.issame.len() / 10).max(1);
        let pairs: Vec<PairRef> = self
            .issame
            .iter()
            .enumerate()
            .map(|(i, &same)| PairRef { a: 2 * i, b: 2 * i + 1, same, fold: (i / per_fold).min(9) })
            .collect();
        let folds: Vec<usize> = (0..10).filter(|f| pairs.iter().any(|p| p.fold == *f)).collect();
        verify(feats, &pairs, &folds, scoring)
    }

    /// Verification of `backbone` (of the input shape the set was loaded for) on the set.
    pub fn verify(&self, backbone: &dyn Backbone, device: Device, flip: bool, scoring: Scoring, batch: usize) -> Result<VerificationReport> {
        self.score(&self.features(backbone, device, flip, batch)?, scoring)
    }
}

/// Verification of features computed elsewhere: `features` `[N, D]` whose row `i` belongs to
/// `index[i]` (a path relative to the LFW images root, `Name/Name_0001.jpg`). Pairs that refer to
/// an image without a row are an error that lists them.
pub fn verify_external(features: &Tensor, index: &[PathBuf], pairs_path: &Path, folds: &[usize], scoring: Scoring) -> Result<VerificationReport> {
    let pairs = Pairs::read(pairs_path)?;
    let folds = resolve_folds(folds, &pairs)?;
    if features.size()[0] as usize != index.len() {
        return Err(EvalError::Invalid(format!("{} feature rows but {} index lines", features.size()[0], index.len())));
    }
    // Keyed by the path's bytes (hashing a `Path` walks its components: 3x slower here).
    let row: HashMap<&std::ffi::OsStr, usize> =
        index.iter().enumerate().map(|(i, p)| (p.strip_prefix("./").unwrap_or(p).as_os_str(), i)).collect();
    let chosen = pairs.of_folds(&folds);
    let missing: BTreeMap<String, ()> = chosen
        .iter()
        .flat_map(|p| [&p.a, &p.b])
        .filter(|p| !row.contains_key(p.as_os_str()))
        .map(|p| (p.display().to_string(), ()))
        .collect();
    if !missing.is_empty() {
        let names: Vec<String> = missing.into_keys().collect();
        return Err(EvalError::Input {
            path: pairs_path.to_path_buf(),
            msg: format!("{} image(s) of the pairs have no feature row: {}", names.len(), list_some(&names)),
        });
    }
    let refs: Vec<PairRef> = chosen
        .iter()
        .map(|p| PairRef { a: row[p.a.as_os_str()], b: row[p.b.as_os_str()], same: p.same, fold: p.fold })
        .collect();
    verify(features, &refs, &folds, scoring)
}

impl LfwReport {
    /// Writes `lfw_report.json` and the figures of [`VerificationReport::figures`] into `dir`.
    pub fn write(&self, dir: &Path, name: &str) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(|e| EvalError::Io { path: dir.to_path_buf(), error: e })?;
        let json = serde_json::to_vec_pretty(self).map_err(|e| EvalError::Invalid(e.to_string()))?;
        facerec_core::fsutil::atomic_write_bytes(&dir.join(run_files::LFW_REPORT), &json)?;
        for (file, figure) in self.verification.figures(name) {
            figure.draw(&dir.join(file))?;
        }
        Ok(())
    }
}
