//! The LFW protocol on real LFW images and a (randomly initialised) Face-ResNet, checked against
//! an independent numpy implementation (`scripts/reference/lfw_protocol.py`), and its
//! bad-input behaviour.

use std::path::{Path, PathBuf};
use std::process::Command;

use facerec_data::align::Template;
use facerec_eval::lfw::{verify_external, LfwEval};
use facerec_model::face_resnet::FaceResnetConfig;
use facerec_model::BackboneConfig;
use facerec_train::config::LfwEvalConfig;
use tch::{nn, Device};

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error>>;

fn lfw_config(cache: &Path, folds: Vec<usize>) -> Result<LfwEvalConfig> {
    let lfw = facerec_data::paths::require("lfw")?;
    Ok(LfwEvalConfig {
        images: lfw.join("images"),
        landmarks: lfw.join("landmarks_5pt.tsv"),
        pairs: lfw.join("pairs.txt"),
        folds,
        pca: 0,
        flip: false,
        identification: false,
        cache_dir: cache.to_path_buf(),
        batch_size: 256,
    })
}

#[test]
fn verification_matches_an_independent_numpy_implementation() -> Result {
    let dir = tempfile::tempdir()?;
    let cfg = lfw_config(dir.path(), vec![2, 5, 9])?;
    let eval = LfwEval::new(&cfg, Template::CaffeFace, &|_| {})?;
    tch::manual_seed(5);
    let vs = nn::VarStore::new(Device::Cpu);
    let small = FaceResnetConfig { widths: [4, 8, 8, 16, 16], blocks: [0, 0, 0, 0], feature_dim: 32, ..Default::default() };
    let net = BackboneConfig::FaceResnet(small).build(&vs.root())?;
    let report = eval.run(net.as_ref(), Device::Cpu)?;
    assert_eq!(report.verification.folds, vec![2, 5, 9]);
    assert_eq!(report.verification.pairs, 1800);
    assert!(report.protocol.contains("folds 2,5,9") && report.protocol.contains("other 2"), "{}", report.protocol);

    // The same features through the numpy reference.
    let rows: Vec<usize> = (0..eval.paths().len()).collect();
    let feats = eval.features(net.as_ref(), Device::Cpu, &rows)?;
    let (n, d) = (feats.size()[0] as usize, feats.size()[1] as usize);
    let values = Vec::<f32>::try_from(feats.flatten(0, -1))?;
    let npy = dir.path().join("f.npy");
    facerec_data::npy::write_f32(&npy, &[n, d], &values)?;
    let index = dir.path().join("index.txt");
    std::fs::write(&index, eval.paths().iter().map(|p| format!("{}\n", p.display())).collect::<String>())?;
    let python = std::env::var("FACEREC_PYTHON").unwrap_or_else(|_| ".deps/venv/bin/python".into());
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/reference/lfw_protocol.py");
    let out = Command::new(&python)
        .arg(script)
        .args(["--features", npy.to_str().unwrap(), "--index", index.to_str().unwrap()])
        .args(["--pairs", cfg.pairs.to_str().unwrap(), "--folds", "2,5,9"])
        .output()
        .map_err(|e| format!("cannot run {python} (run scripts/setup.sh): {e}"))?;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let reference: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let v = &report.verification;
    for (k, (acc, th)) in v.fold_accuracy.iter().zip(&v.fold_threshold).enumerate() {
        let ra = reference["fold_accuracy"][k].as_f64().unwrap();
        let rt = reference["fold_threshold"][k].as_f64().unwrap();
        assert_eq!(*acc, ra, "fold {k} accuracy");
        assert!((th - rt).abs() < 1e-6, "fold {k} threshold {th} vs {rt}");
    }
    assert!((v.accuracy_std - reference["std"].as_f64().unwrap()).abs() < 1e-12);

    // Features from a file give the same result as features from the model.
    let ext = verify_external(&feats, eval.paths(), &cfg.pairs, &cfg.folds, 0)?;
    assert_eq!(ext.fold_accuracy, v.fold_accuracy);
    // ... and a missing row is an error that lists the image.
    let mut short: Vec<PathBuf> = eval.paths().to_vec();
    let dropped = short.remove(0);
    let err = verify_external(&feats.narrow(0, 1, n as i64 - 1), &short, &cfg.pairs, &cfg.folds, 0)
        .unwrap_err()
        .to_string();
    assert!(err.contains("no feature row") && err.contains(&dropped.display().to_string()), "{err}");
    Ok(())
}

#[test]
fn pairs_that_name_missing_images_are_listed() -> Result {
    let dir = tempfile::tempdir()?;
    let mut cfg = lfw_config(dir.path(), vec![1, 2])?;
    let pairs = dir.path().join("pairs.txt");
    std::fs::write(&pairs, "2\t1\nNo_Such_Person\t1\t2\nAaron_Peirsol\t1\tAbdullah_Gul\t1\nAaron_Peirsol\t1\t3\nAbdullah_Gul\t1\tAdrien_Brody\t99\n")?;
    cfg.pairs = pairs;
    let err = LfwEval::new(&cfg, Template::CaffeFace, &|_| {}).err().ok_or("missing images must be an error")?.to_string();
    assert!(err.contains("3 image(s) of the pairs are missing"), "{err}");
    assert!(err.contains("No_Such_Person/No_Such_Person_0001.jpg") && err.contains("Adrien_Brody_0099.jpg"), "{err}");
    Ok(())
}
