//! insightface's `.bin` protocol against insightface's own code: the published MobileFaceNet
//! (data/pretrained, imported) embeds 600 LFW pairs written as a `.bin` (as
//! `facerec convert --to-bin` writes it), and the same set re-pickled by Python the way
//! insightface's files are; facerec's numbers (crates/eval/src/insightface.rs) and those of
//! arcface_torch's `eval/verification.py` run on the same embeddings
//! (`scripts/reference/insightface_verification.py`) agree to the digits arcface_torch's log
//! prints (`XNorm: %f, Accuracy-Flip: %1.5f+-%1.5f`), and TAR at FAR 1e-3 to 1e-9.

use std::path::Path;
use std::process::Command;

use facerec_data::align::Template;
use facerec_data::dataset::{FaceDataset, Sample};
use facerec_data::insightface::{aligned_encoded, Encoding, EvalBin};
use facerec_data::landmarks::{LandmarkFile, OnBad};
use facerec_data::lfw::Pairs;
use facerec_eval::insightface::{split_flip, verify};
use facerec_eval::lfw::BinSet;
use facerec_model::import::import_backbone;
use facerec_model::mobilefacenet::MobileFaceNetConfig;
use facerec_model::saved::load_backbone;
use facerec_model::BackboneConfig;
use tch::Device;

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error>>;

fn python(args: &[&str]) -> Result<serde_json::Value> {
    let py = std::env::var("FACEREC_PYTHON").unwrap_or_else(|_| ".deps/venv/bin/python".into());
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/reference/insightface_verification.py");
    let out = Command::new(&py).arg(script).args(args).output().map_err(|e| format!("{py}: {e}"))?;
    assert!(out.status.success(), "insightface_verification.py:\n{}", String::from_utf8_lossy(&out.stderr));
    Ok(serde_json::from_slice(&out.stdout)?)
}

/// 600 LFW pairs as a `.bin` of 112x112 JPEG crops, as `facerec convert --to-bin` writes it:
/// the first 30 same-person and 30 different-person pairs of each of the ten folds, in file
/// order, so that each of the protocol's ten folds of consecutive pairs is one LFW fold's part
/// (as in insightface's lfw.bin, where each is a whole LFW fold).
fn lfw_bin(path: &Path) -> Result {
    let lfw = facerec_data::paths::require("lfw")?;
    let pairs = Pairs::read(&lfw.join("pairs.txt"))?;
    let mut taken = std::collections::HashMap::<(usize, bool), usize>::new();
    let pairs: Vec<_> = pairs
        .pairs
        .iter()
        .filter(|p| {
            let n = taken.entry((p.fold, p.same)).or_default();
            *n += 1;
            *n <= 30
        })
        .collect();
    let samples: Vec<Sample> = pairs.iter().flat_map(|p| [p.a.clone(), p.b.clone()]).map(|path| Sample { path, label: 0 }).collect();
    let identities = vec!["x".to_owned()];
    let ds = FaceDataset { root: lfw.join("images"), samples, identities };
    let landmarks = LandmarkFile::read(&lfw.join("landmarks_5pt.tsv"), OnBad::Fail)?;
    let (images, _) = aligned_encoded(&ds, &landmarks, Template::Insightface, Encoding::Jpeg, OnBad::Fail, &|_| {})?;
    let bin = EvalBin { images: images.into_iter().map(|(b, _)| b).collect(), issame: pairs.iter().map(|p| p.same).collect() };
    Ok(bin.write(path)?)
}

#[test]
fn bin_numbers_are_insightfaces_to_the_printed_digit() -> Result {
    let dir = tempfile::tempdir()?;
    let ckpt = facerec_data::paths::require("pretrained")?.join("mobilefacenet_casia/mobilefacenet_casia_068.ckpt");
    let model = dir.path().join("mfn.safetensors");
    import_backbone(&ckpt, &BackboneConfig::new(MobileFaceNetConfig::default()), &model)?;
    let loaded = load_backbone(&model, Device::Cpu, None)?;
    let bin = dir.path().join("lfw12.bin");
    lfw_bin(&bin)?;
    // The same set pickled by Python as insightface's are (protocol 2, a tuple of a list of
    // bytes and a list of bools): read alike.
    let repickled = dir.path().join("lfw12_py.bin");
    let py = std::env::var("FACEREC_PYTHON").unwrap_or_else(|_| ".deps/venv/bin/python".into());
    let code = format!(
        "import pickle; b, s = pickle.load(open('{}', 'rb'), encoding='bytes'); pickle.dump((list(b), [bool(x) for x in s]), open('{}', 'wb'), protocol=2)",
        bin.display(),
        repickled.display()
    );
    assert!(Command::new(&py).args(["-c", &code]).status()?.success());
    assert_eq!(EvalBin::read(&bin)?, EvalBin::read(&repickled)?);

    let set = BinSet::load(&repickled, loaded.backbone.input_shape(), loaded.config.pixel_norm())?;
    let feats = set.features(loaded.backbone.as_ref(), Device::Cpu, true, 128)?;
    let (orig, flip) = split_flip(&facerec_eval::features::to_array2::<f32>(&feats)?);
    let ours = verify(&orig, &flip, set.issame(), 10);
    let save = |name: &str, a: ndarray::ArrayD<f64>| -> Result<String> {
        let path = dir.path().join(name);
        facerec_data::npy::write(&path, &a)?;
        Ok(path.display().to_string())
    };
    let issame: ndarray::ArrayD<f64> = ndarray::Array1::from_iter(set.issame().iter().map(|&s| f64::from(u8::from(s)))).into_dyn();
    let (o, f, s) = (save("o.npy", orig.clone().into_dyn())?, save("f.npy", flip.into_dyn())?, save("s.npy", issame)?);
    let theirs = python(&["--orig", &o, "--flip", &f, "--issame", &s])?;
    eprintln!("facerec:       {}\narcface_torch: {}", ours.log_line(), theirs["log"]);
    assert!(ours.accuracy_mean > 0.95, "the published model scores about 98 %: {}", ours.log_line());
    assert_eq!(ours.log_line(), theirs["log"].as_str().unwrap_or(""));
    for (name, value) in [("val", ours.val), ("val_std", ours.val_std), ("far", ours.far)] {
        let want = theirs[name].as_f64().ok_or(name)?;
        assert!((value - want).abs() < 1e-9, "{name}: facerec {value}, verification.py {want}");
    }
    // serde_json reads floats to within an ulp (no float_roundtrip): equal to 1e-12.
    let folds: Vec<f64> = theirs["fold_accuracy"].as_array().ok_or("folds")?.iter().filter_map(|v| v.as_f64()).collect();
    assert_eq!(ours.fold_accuracy.len(), folds.len());
    assert!(ours.fold_accuracy.iter().zip(&folds).all(|(a, b)| (a - b).abs() < 1e-12), "{:?} vs {folds:?}", ours.fold_accuracy);
    Ok(())
}
