//! The LFW protocols on real LFW images and a (randomly initialised) Face-ResNet, checked against
//! independent numpy implementations (`scripts/reference/lfw_protocol.py` for verification, with
//! and without mirrored features and PCA; `scripts/reference/lfw_identification.py` for rank-1
//! and CMC), and their bad-input behaviour.
//!
//! The expected numbers all come from those scripts, run here on the features facerec computed:
//! what is compared is the protocol (pairing, mirror concatenation, PCA fitted on the other
//! folds, thresholds, gallery and probes, ranks), not the network.

use std::path::{Path, PathBuf};
use std::process::Command;

use facerec_data::align::Template;
use facerec_data::normalize::PixelNorm;
use facerec_eval::features::to_array2;
use facerec_eval::lfw::{verify_external, LfwEval, LfwEvalConfig};
use facerec_eval::verification::{Scoring, VerificationReport};
use facerec_model::face_resnet::FaceResnetConfig;
use facerec_model::{Backbone, BackboneConfig};
use tch::{nn, Device, Kind, Tensor};

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error>>;

/// Feature size of [`small_net`].
const DIM: i64 = 32;

fn lfw_config(cache: &Path, folds: Vec<usize>) -> Result<LfwEvalConfig> {
    let lfw = facerec_data::paths::require("lfw")?;
    Ok(LfwEvalConfig {
        images: lfw.join("images"),
        landmarks: lfw.join("landmarks_5pt.tsv"),
        pairs: lfw.join("pairs.txt"),
        folds,
        pca: 0,
        subtract_mean: false,
        flip: false,
        identification: false,
        open_set: false,
        cache_dir: cache.to_path_buf(),
        batch_size: 256,
    })
}

/// A small randomly initialised Face-ResNet (`DIM`-d features); its variables live in `vs`.
fn small_net(vs: &nn::VarStore) -> Result<Box<dyn Backbone>> {
    tch::manual_seed(5);
    let small = FaceResnetConfig { widths: [4, 8, 8, 16, 16], blocks: [0, 0, 0, 0], feature_dim: DIM, ..Default::default() };
    Ok(BackboneConfig::new(small).build(&vs.root())?)
}

/// Runs a reference script of `scripts/reference/` and parses the JSON it prints.
fn reference(script: &str, args: &[&str]) -> Result<serde_json::Value> {
    let python = std::env::var("FACEREC_PYTHON").unwrap_or_else(|_| ".deps/venv/bin/python".into());
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/reference").join(script);
    let out = Command::new(&python)
        .arg(&path)
        .args(args)
        .output()
        .map_err(|e| format!("cannot run {python} (the Python environment that scripts/setup.sh makes): {e}"))?;
    assert!(out.status.success(), "{}: {}", path.display(), String::from_utf8_lossy(&out.stderr));
    Ok(serde_json::from_slice(&out.stdout)?)
}

/// Writes `[N, D]` features as float32 `.npy` and returns its path as a string.
fn save(dir: &Path, name: &str, t: &Tensor) -> Result<String> {
    let path = dir.join(name);
    facerec_data::npy::write(&path, &to_array2::<f32>(t)?)?;
    Ok(path.to_str().ok_or("non-UTF-8 temp path")?.to_owned())
}

fn save_index(dir: &Path, paths: &[PathBuf]) -> Result<String> {
    let index = dir.join("index.txt");
    std::fs::write(&index, paths.iter().map(|p| format!("{}\n", p.display())).collect::<String>())?;
    Ok(index.to_str().ok_or("non-UTF-8 temp path")?.to_owned())
}

fn folds_arg(folds: &[usize]) -> String {
    folds.iter().map(usize::to_string).collect::<Vec<_>>().join(",")
}

/// Per-fold accuracy must be equal (each is a count over the fold's pairs), thresholds within
/// 1e-6 (PCA axes from an SVD there, from an eigendecomposition here), std equal to rounding.
fn assert_same_folds(ours: &VerificationReport, reference: &serde_json::Value, what: &str) {
    assert_eq!(reference["fold_accuracy"].as_array().map(Vec::len), Some(ours.fold_accuracy.len()), "{what}: {reference}");
    for (k, (acc, th)) in ours.fold_accuracy.iter().zip(&ours.fold_threshold).enumerate() {
        let ra = reference["fold_accuracy"][k].as_f64().unwrap();
        let rt = reference["fold_threshold"][k].as_f64().unwrap();
        assert_eq!(*acc, ra, "{what}: fold {} accuracy", ours.folds[k]);
        assert!((th - rt).abs() < 1e-6, "{what}: fold {} threshold {th} vs {rt}", ours.folds[k]);
    }
    assert!((ours.accuracy_std - reference["std"].as_f64().unwrap()).abs() < 1e-12, "{what}");
    assert!((ours.accuracy_mean - reference["mean"].as_f64().unwrap()).abs() < 1e-12, "{what}");
}

/// Largest absolute difference of two tensors.
fn max_diff(a: &Tensor, b: &Tensor) -> Result<f64> {
    Ok(f64::try_from((a - b).abs().max().to_kind(Kind::Double))?)
}

#[test]
fn verification_matches_an_independent_numpy_implementation() -> Result {
    let dir = tempfile::tempdir()?;
    let cfg = lfw_config(dir.path(), vec![2, 5, 9])?;
    let eval = LfwEval::new(&cfg, Template::CaffeFace, PixelNorm::CAFFE_FACE, &|_| {})?;
    let vs = nn::VarStore::new(Device::Cpu);
    let net = small_net(&vs)?;
    let report = eval.run(net.as_ref(), Device::Cpu)?;
    assert_eq!(report.verification.folds, vec![2, 5, 9]);
    assert_eq!(report.verification.pairs, 1800);
    assert!(report.protocol.contains("folds 2,5,9") && report.protocol.contains("other 2"), "{}", report.protocol);

    // The same features through the numpy reference.
    let rows: Vec<usize> = (0..eval.paths().len()).collect();
    let feats = eval.features(net.as_ref(), Device::Cpu, &rows)?;
    let n = feats.size()[0];
    let f = save(dir.path(), "f.npy", &feats)?;
    let index = save_index(dir.path(), eval.paths())?;
    let reference = reference("lfw_protocol.py", &["--features", &f, "--index", &index, "--pairs", cfg.pairs.to_str().unwrap(), "--folds", "2,5,9"])?;
    let v = &report.verification;
    assert_same_folds(v, &reference, "plain features");

    // Features from a file give the same result as features from the model.
    let ext = verify_external(&feats, eval.paths(), &cfg.pairs, &cfg.folds, Scoring::default())?;
    assert_eq!(ext.fold_accuracy, v.fold_accuracy);
    // ... and a missing row is an error that lists the image.
    let mut short: Vec<PathBuf> = eval.paths().to_vec();
    let dropped = short.remove(0);
    let err = verify_external(&feats.narrow(0, 1, n - 1), &short, &cfg.pairs, &cfg.folds, Scoring::default()).unwrap_err().to_string();
    assert!(err.contains("no feature row") && err.contains(&dropped.display().to_string()), "{err}");
    Ok(())
}

/// The paper's protocol in full (Wen et al. 2016, sec. 4.1 and 4.2): all 10 folds, features of
/// image and mirror concatenated, PCA fitted on the 9 training folds, threshold from the same 9.
#[test]
fn mirrored_features_and_pca_on_the_training_folds_match_numpy() -> Result {
    let dir = tempfile::tempdir()?;
    let mut cfg = lfw_config(dir.path(), Vec::new())?;
    cfg.flip = true;
    cfg.pca = 24;
    let eval = LfwEval::new(&cfg, Template::CaffeFace, PixelNorm::CAFFE_FACE, &|_| {})?;
    let vs = nn::VarStore::new(Device::Cpu);
    let net = small_net(&vs)?;
    let report = eval.run(net.as_ref(), Device::Cpu)?;
    let v = &report.verification;
    assert_eq!(v.folds, (1..=10).collect::<Vec<_>>());
    assert_eq!((v.pairs, v.pca), (6000, 24));
    assert!(report.protocol.contains("image+mirror concatenated") && report.protocol.contains("PCA to 24"), "{}", report.protocol);

    let rows: Vec<usize> = (0..eval.paths().len()).collect();
    let feats = eval.features(net.as_ref(), Device::Cpu, &rows)?;
    assert_eq!(feats.size(), vec![rows.len() as i64, 2 * DIM]);
    let (image, mirror) = (feats.narrow(1, 0, DIM), feats.narrow(1, DIM, DIM));

    // The second half is the backbone on the horizontally flipped crops (flipped here by
    // libtorch, not by the crop source), the first half the backbone on the crops themselves.
    let _guard = tch::no_grad_guard();
    for chunk in rows.chunks(1024) {
        let (at, len) = (chunk[0] as i64, chunk.len() as i64);
        let crops = eval.crops(chunk)?;
        let direct = net.forward_t(&crops, false)?;
        let flipped = net.forward_t(&crops.flip([3]), false)?;
        assert!(max_diff(&direct, &image.narrow(0, at, len))? < 1e-5, "rows {at}..: image features");
        assert!(max_diff(&flipped, &mirror.narrow(0, at, len))? < 1e-5, "rows {at}..: mirror features");
        // ... and a mirror is not the image (else the check above would prove nothing).
        assert!(max_diff(&direct, &flipped)? > 1e-3, "rows {at}..: mirrored crops give the image's features");
    }

    let (f, m) = (save(dir.path(), "image.npy", &image)?, save(dir.path(), "mirror.npy", &mirror)?);
    let index = save_index(dir.path(), eval.paths())?;
    let folds = folds_arg(&v.folds);
    let pairs = cfg.pairs.to_str().unwrap();
    let common = ["--features", &f, "--mirror", &m, "--index", &index, "--pairs", pairs, "--folds", &folds];

    // Mirror concatenation and PCA fitted per fold on the other nine.
    let with_pca = reference("lfw_protocol.py", &[&common[..], &["--pca", "24"]].concat())?;
    assert_eq!(with_pca["dims"].as_i64(), Some(2 * DIM));
    assert_same_folds(v, &with_pca, "mirror + PCA");
    // AUC (and with it the ROC, EER, TAR and histograms) from the same PCA'd held-out scores.
    let auc = with_pca["auc"].as_f64().ok_or("auc")?;
    assert!((v.auc - auc).abs() < 1e-9, "AUC with PCA: {} vs numpy {auc}", v.auc);
    // Mirror concatenation alone, through facerec's scoring of external features.
    let plain = reference("lfw_protocol.py", &common)?;
    let ours = verify_external(&feats, eval.paths(), &cfg.pairs, &[], Scoring::default())?;
    assert_same_folds(&ours, &plain, "mirror, no PCA");
    assert!((ours.auc - plain["auc"].as_f64().ok_or("auc")?).abs() < 1e-9, "AUC without PCA");
    assert_ne!(ours.auc, v.auc, "PCA changes the AUC too");
    // PCA changes the scores (else the comparison above would not test it).
    assert_ne!(ours.fold_threshold, v.fold_threshold);
    // The training folds' mean subtracted (SphereFace's and MobileFaceNet's protocol).
    let centred = reference("lfw_protocol.py", &[&common[..], &["--subtract-mean"]].concat())?;
    let ours_centred = verify_external(&feats, eval.paths(), &cfg.pairs, &[], Scoring { pca: 0, subtract_mean: true })?;
    assert_same_folds(&ours_centred, &centred, "mirror, mean subtracted");
    assert!((ours_centred.auc - centred["auc"].as_f64().ok_or("auc")?).abs() < 1e-9, "AUC with the mean subtracted");
    assert_ne!(ours_centred.fold_threshold, ours.fold_threshold, "subtracting the mean changes the scores");
    assert!(ours_centred.subtract_mean && !ours.subtract_mean);
    Ok(())
}

#[test]
fn identification_matches_an_independent_numpy_implementation() -> Result {
    let dir = tempfile::tempdir()?;
    let mut cfg = lfw_config(dir.path(), vec![3, 8])?;
    cfg.flip = true;
    cfg.identification = true;
    let eval = LfwEval::new(&cfg, Template::CaffeFace, PixelNorm::CAFFE_FACE, &|_| {})?;
    let vs = nn::VarStore::new(Device::Cpu);
    let net = small_net(&vs)?;
    let report = eval.run(net.as_ref(), Device::Cpu)?;
    let ours = report.identification.ok_or("identification was asked for")?;

    let rows: Vec<usize> = (0..eval.paths().len()).collect();
    let feats = eval.features(net.as_ref(), Device::Cpu, &rows)?;
    let (f, m) = (save(dir.path(), "image.npy", &feats.narrow(1, 0, DIM))?, save(dir.path(), "mirror.npy", &feats.narrow(1, DIM, DIM))?);
    let index = save_index(dir.path(), eval.paths())?;
    let theirs = reference(
        "lfw_identification.py",
        &["--features", &f, "--mirror", &m, "--index", &index, "--pairs", cfg.pairs.to_str().unwrap()]
            .into_iter()
            .chain(["--images", cfg.images.to_str().unwrap(), "--folds", "3,8", "--max-rank", "10"])
            .collect::<Vec<_>>(),
    )?;
    eprintln!("identification: ours {ours:?}\nnumpy {theirs}");
    assert_eq!(theirs["identities"].as_u64(), Some(ours.identities as u64));
    assert_eq!(theirs["gallery"].as_u64(), Some(ours.gallery as u64));
    assert_eq!(theirs["probes"].as_u64(), Some(ours.probes as u64));
    assert!(ours.probes > 100 && ours.gallery > 100, "{ours:?}");
    let cmc: Vec<f64> = theirs["cmc"].as_array().ok_or("no cmc")?.iter().filter_map(|x| x.as_f64()).collect();
    assert_eq!(cmc.len(), ours.cmc.len());
    // Fractions of the same probe count: equal up to the division's rounding.
    for (k, (a, b)) in ours.cmc.iter().zip(&cmc).enumerate() {
        assert!((a - b).abs() < 1e-12, "rank {}: {a} vs {b}", k + 1);
    }
    assert_eq!(ours.rank1, ours.cmc[0]);
    // A random network still ranks: the curve rises (else it would not tell ranks apart).
    assert!(ours.cmc[9] > ours.cmc[0], "{:?}", ours.cmc);
    Ok(())
}

/// The open-set protocols (crates/eval/src/open_set.rs) on a trained model's features: the
/// published MobileFaceNet (imported from data/pretrained) on every image of folds 3 and 8's
/// identities, with the mirror, against scripts/reference/lfw_open_set.py (float64 numpy,
/// full sorts instead of selection, the pairs from the upper triangle's indices).
#[test]
fn open_set_protocols_match_an_independent_numpy_implementation() -> Result {
    use facerec_model::import::import_backbone;
    use facerec_model::mobilefacenet::MobileFaceNetConfig;
    use facerec_model::saved::load_backbone;
    let dir = tempfile::tempdir()?;
    let ckpt = facerec_data::paths::require("pretrained")?.join("mobilefacenet_casia/mobilefacenet_casia_068.ckpt");
    let model = dir.path().join("mfn.safetensors");
    import_backbone(&ckpt, &BackboneConfig::new(MobileFaceNetConfig::default()), &model)?;
    let loaded = load_backbone(&model, Device::Cpu, None)?;
    let mut cfg = lfw_config(dir.path(), vec![3, 8])?;
    cfg.flip = true;
    cfg.open_set = true;
    let template = Template::for_input(loaded.config.input_shape())?;
    let eval = LfwEval::new(&cfg, template, loaded.config.pixel_norm(), &|_| {})?;
    let report = eval.run(loaded.backbone.as_ref(), Device::Cpu)?;
    assert!(report.identification.is_none(), "only what was asked for");
    let ours = report.open_set.ok_or("open set was asked for")?;

    let rows: Vec<usize> = (0..eval.paths().len()).collect();
    let feats = eval.features(loaded.backbone.as_ref(), Device::Cpu, &rows)?;
    let dim = loaded.backbone.feature_dim();
    let (f, m) = (save(dir.path(), "image.npy", &feats.narrow(1, 0, dim))?, save(dir.path(), "mirror.npy", &feats.narrow(1, dim, dim))?);
    let index = save_index(dir.path(), eval.paths())?;
    let theirs = reference(
        "lfw_open_set.py",
        &["--features", &f, "--mirror", &m, "--index", &index, "--pairs", cfg.pairs.to_str().unwrap()]
            .into_iter()
            .chain(["--images", cfg.images.to_str().unwrap(), "--folds", "3,8"])
            .collect::<Vec<_>>(),
    )?;
    for line in ours.lines() {
        eprintln!("{line}");
    }
    eprintln!("numpy: {theirs}
scored in {:.2} s", ours.seconds);
    let mut json = serde_json::to_value(&ours)?;
    json.as_object_mut().ok_or("an object")?.remove("seconds");
    // Counts and rates are equal (the same pairs above the same threshold); thresholds are the
    // same float64 cosines up to the matrix products' summation order.
    assert_close(&json, &theirs, "open_set")?;
    // The set is big enough to resolve what it reports: FAR 1e-4 over millions of pairs,
    // DIR at FAR 1 % over hundreds of impostor probes; and the model is far from chance.
    assert!(ours.verification.impostor_pairs > 1_000_000, "{:?}", ours.verification);
    let tar4 = ours.tar(1e-4).ok_or("TAR at FAR 1e-4 resolved")?;
    assert!(tar4 > 0.5, "a trained model: {tar4}");
    assert!(ours.dir(1e-2).ok_or("DIR at FAR 1 % resolved")? > 0.3, "{:?}", ours.identification);
    assert!(ours.identification.rank1 > 0.9, "{:?}", ours.identification);
    Ok(())
}

/// `ours` and `theirs` equal as JSON, numbers within 1e-12 (absolute) and integers exactly.
fn assert_close(ours: &serde_json::Value, theirs: &serde_json::Value, at: &str) -> Result {
    use serde_json::Value;
    match (ours, theirs) {
        (Value::Object(a), Value::Object(b)) => {
            let (mut ka, mut kb): (Vec<_>, Vec<_>) = (a.keys().collect(), b.keys().collect());
            ka.sort();
            kb.sort();
            assert_eq!(ka, kb, "{at}: fields");
            for k in ka {
                assert_close(&a[k], &b[k], &format!("{at}.{k}"))?;
            }
        }
        (Value::Array(a), Value::Array(b)) => {
            assert_eq!(a.len(), b.len(), "{at}: length");
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                assert_close(x, y, &format!("{at}[{i}]"))?;
            }
        }
        (Value::Number(a), Value::Number(b)) if a.is_u64() && b.is_u64() => assert_eq!(a, b, "{at}"),
        (Value::Number(a), Value::Number(b)) => {
            let (x, y) = (a.as_f64().ok_or(at.to_owned())?, b.as_f64().ok_or(at.to_owned())?);
            assert!((x - y).abs() < 1e-12, "{at}: {x} vs {y}");
        }
        (a, b) => assert_eq!(a, b, "{at}"),
    }
    Ok(())
}

#[test]
fn pairs_that_name_missing_images_are_listed() -> Result {
    let dir = tempfile::tempdir()?;
    let mut cfg = lfw_config(dir.path(), vec![1, 2])?;
    let pairs = dir.path().join("pairs.txt");
    std::fs::write(&pairs, "2\t1\nNo_Such_Person\t1\t2\nAaron_Peirsol\t1\tAbdullah_Gul\t1\nAaron_Peirsol\t1\t3\nAbdullah_Gul\t1\tAdrien_Brody\t99\n")?;
    cfg.pairs = pairs;
    let err = LfwEval::new(&cfg, Template::CaffeFace, PixelNorm::CAFFE_FACE, &|_| {}).err().ok_or("missing images must be an error")?.to_string();
    assert!(err.contains("3 image(s) of the pairs are missing"), "{err}");
    assert!(err.contains("No_Such_Person/No_Such_Person_0001.jpg") && err.contains("Adrien_Brody_0099.jpg"), "{err}");
    Ok(())
}

#[test]
fn the_report_after_training_reuses_the_last_evaluation_instead_of_scoring_again() -> Result {
    // A run's last periodic evaluation sees its final weights; the report that follows must
    // reuse that verification (the same numbers as metrics.jsonl, and no second pass over the
    // images). Shown here by asking for the report with another network than the one evaluated:
    // the verification is the evaluated one's, and identification (which the periodic
    // evaluation does not compute) comes from the network given.
    let dir = tempfile::tempdir()?;
    let cfg = LfwEvalConfig { identification: true, ..lfw_config(dir.path(), vec![1, 2])? };
    let mut eval = LfwEval::new(&cfg, Template::CaffeFace, PixelNorm::CAFFE_FACE, &|_| {})?;
    let (vs_a, vs_b) = (nn::VarStore::new(Device::Cpu), nn::VarStore::new(Device::Cpu));
    let net_a = small_net(&vs_a)?;
    tch::manual_seed(99);
    let small = FaceResnetConfig { widths: [4, 8, 8, 16, 16], blocks: [0, 0, 0, 0], feature_dim: DIM, ..Default::default() };
    let net_b = BackboneConfig::new(small).build(&vs_b.root())?;
    let metrics = eval.evaluate(net_a.as_ref(), Device::Cpu)?;
    let of_a = eval.run(net_a.as_ref(), Device::Cpu)?;
    let of_b = eval.run(net_b.as_ref(), Device::Cpu)?;
    assert_ne!(of_a.verification.fold_threshold, of_b.verification.fold_threshold, "two different networks");

    let embedded = std::cell::Cell::new(0u64);
    assert_eq!(eval.images_to_embed(), eval.paths().len(), "identification still needs every image");
    let report = eval.report(net_b.as_ref(), Device::Cpu, &|n| embedded.set(embedded.get() + n))?;
    assert_eq!(report.verification.fold_threshold, of_a.verification.fold_threshold, "the evaluation's verification");
    assert_eq!(report.verification.accuracy_mean, metrics[0].1);
    assert_eq!(embedded.get() as usize, eval.paths().len(), "progress counts every image embedded");
    let (ia, ib) = (report.identification.as_ref().ok_or("identification")?, of_b.identification.as_ref().ok_or("b")?);
    assert_eq!(ia.cmc, ib.cmc, "identification of the network given");
    // Used once: a second report scores afresh.
    let again = eval.report(net_b.as_ref(), Device::Cpu, &|_| {})?;
    assert_eq!(again.verification.fold_threshold, of_b.verification.fold_threshold);
    Ok(())
}

#[test]
fn periodic_evaluation_scores_the_open_set_once_and_the_report_reuses_it() -> Result {
    // With open_set the periodic evaluation embeds every image of the test identities and logs
    // the open-set rates; the report after training reuses them without embedding again.
    let dir = tempfile::tempdir()?;
    let cfg = LfwEvalConfig { open_set: true, ..lfw_config(dir.path(), vec![1, 2])? };
    let mut eval = LfwEval::new(&cfg, Template::CaffeFace, PixelNorm::CAFFE_FACE, &|_| {})?;
    let vs = nn::VarStore::new(Device::Cpu);
    let net = small_net(&vs)?;
    assert_eq!(eval.images_to_embed(), eval.paths().len(), "nothing evaluated yet");
    let metrics = eval.evaluate(net.as_ref(), Device::Cpu)?;
    let fresh = eval.run(net.as_ref(), Device::Cpu)?;
    let open = fresh.open_set.as_ref().ok_or("open set")?;
    let logged: std::collections::HashMap<String, f64> = metrics.into_iter().collect();
    assert_eq!(logged.get("lfw_open_rank1"), Some(&open.identification.rank1), "{logged:?}");
    assert_eq!(logged.get("lfw_open_tar_far1e-3").copied(), open.tar(1e-3), "{logged:?}");
    assert_eq!(logged.get("lfw_accuracy"), Some(&fresh.verification.accuracy_mean), "pairs scored on the same features");
    assert_eq!(eval.images_to_embed(), 0, "the evaluation scored everything the report needs");
    let embedded = std::cell::Cell::new(0u64);
    let report = eval.report(net.as_ref(), Device::Cpu, &|n| embedded.set(embedded.get() + n))?;
    assert_eq!(embedded.get(), 0);
    let reused = report.open_set.ok_or("open set in the report")?;
    assert_eq!((reused.verification, reused.identification), (open.verification.clone(), open.identification.clone()));
    Ok(())
}

#[test]
fn the_one_inference_path_batches_and_mirrors_as_plain_forwards_do() -> Result {
    use facerec_eval::features::{embed_batch, embed_rows};
    let vs = nn::VarStore::new(Device::Cpu);
    let net = small_net(&vs)?;
    tch::manual_seed(1);
    let x = Tensor::randn([5, 3, 112, 96], (Kind::Float, Device::Cpu));
    let both = embed_batch(net.as_ref(), &x, true, Device::Cpu)?;
    let _guard = tch::no_grad_guard();
    let direct = net.forward_t(&x, false)?;
    let mirror = net.forward_t(&x.flip([3]), false)?;
    assert_eq!(both.size(), [5, 2 * DIM]);
    assert!(max_diff(&both, &Tensor::cat(&[direct.shallow_clone(), mirror], 1))? < 1e-6, "image, then mirror");
    // In chunks of 2 (2, 2, 1), with progress counted per row.
    let rows: Vec<usize> = (0..5).collect();
    let done = std::cell::Cell::new(0);
    let crops = |c: &[usize]| -> facerec_eval::error::Result<Tensor> { Ok(x.narrow(0, c[0] as i64, c.len() as i64)) };
    let chunked = embed_rows(net.as_ref(), &rows, 2, false, Device::Cpu, crops, &|n| done.set(done.get() + n))?;
    assert!(max_diff(&chunked, &direct)? < 1e-5, "batching changes nothing");
    assert_eq!(done.get(), 5);
    let none = embed_rows(net.as_ref(), &[], 2, true, Device::Cpu, |_: &[usize]| unreachable!(), &|_| {})?;
    assert_eq!(none.size(), [0, 2 * DIM]);
    Ok(())
}
