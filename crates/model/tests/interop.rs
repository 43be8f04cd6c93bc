//! facerec's weights in PyTorch and PyTorch's in facerec: the same Face-ResNet computed by both
//! on real aligned LFW faces gives the same embeddings (max abs diff <= 1e-4), and so does the
//! published MobileFaceNet checkpoint, imported by facerec and loaded by `torch.load`.
//! The PyTorch side is `scripts/reference/{models,check_interop}.py`.

use std::path::{Path, PathBuf};
use std::process::Command;

use facerec_data::align::Template;
use facerec_data::cache::aligned_crop;
use facerec_data::dataset::FaceDataset;
use facerec_data::landmarks::{LandmarkFile, OnBad};
use facerec_data::normalize::crops_to_tensor;
use facerec_model::face_resnet::FaceResnetConfig;
use facerec_model::import::import_backbone;
use facerec_model::mobilefacenet::MobileFaceNetConfig;
use facerec_model::saved::{load_backbone, save_backbone};
use facerec_model::weights::strip_prefix;
use facerec_model::BackboneConfig;
use tch::{nn, Device, Kind, Tensor};

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error>>;

/// Eight real aligned faces, normalised, `[8, 3, 112, 96]`.
fn faces() -> Result<Tensor> {
    let lfw = facerec_data::paths::require("lfw")?;
    let lms = LandmarkFile::read(&lfw.join("landmarks_5pt.tsv"), OnBad::Fail)?;
    let ds = FaceDataset::from_folders(&lfw.join("images"))?;
    let crops = ds.samples.iter().step_by(1500).take(8).map(|s| aligned_crop(&ds, s, &lms, Template::CaffeFace)).collect::<std::result::Result<Vec<_>, _>>()?;
    Ok(crops_to_tensor(&crops, 112, 96, facerec_core::PixelNorm::CAFFE_FACE)?)
}

fn save_npy(path: &Path, t: &Tensor) -> Result {
    let array: ndarray::ArrayD<f32> = (&t.to_kind(Kind::Float)).try_into()?;
    facerec_data::npy::write(path, &array)?;
    Ok(())
}

fn python(args: &[&str]) -> Result<serde_json::Value> {
    let py = std::env::var("FACEREC_PYTHON").unwrap_or_else(|_| ".deps/venv/bin/python".into());
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/reference/check_interop.py");
    let out = Command::new(&py).arg(script).args(args).output().map_err(|e| format!("{py}: {e}"))?;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    Ok(serde_json::from_slice(&out.stdout)?)
}

/// Largest absolute difference between `ours` and the `[N, dim]` features PyTorch wrote to `path`.
fn max_diff_to_npy(ours: &Tensor, path: &Path) -> Result<f64> {
    let theirs = facerec_data::npy::read::<f32, ndarray::Ix2>(path)?;
    assert_eq!([theirs.dim().0 as i64, theirs.dim().1 as i64], ours.size()[..], "feature shapes");
    Ok(f64::try_from((ours - Tensor::try_from(&theirs)?).abs().max().to_kind(Kind::Double))?)
}

fn config() -> BackboneConfig {
    BackboneConfig::new(FaceResnetConfig { widths: [8, 16, 32, 32, 64], blocks: [1, 1, 2, 1], feature_dim: 64, ..Default::default() })
}

#[test]
fn facerec_weights_give_the_same_embeddings_in_pytorch() -> Result {
    let dir = tempfile::tempdir()?;
    tch::manual_seed(9);
    let vs = nn::VarStore::new(Device::Cpu);
    let net = config().build(&(vs.root() / "backbone"))?;
    let path: PathBuf = dir.path().join("model.safetensors");
    save_backbone(&path, &config(), &strip_prefix(&vs.variables(), "backbone"))?;
    let x = faces()?;
    let ours = tch::no_grad(|| net.forward_t(&x, false))?;
    let (xi, fi) = (dir.path().join("x.npy"), dir.path().join("f.npy"));
    save_npy(&xi, &x)?;
    save_npy(&fi, &ours)?;
    let r = python(&["load", "--weights", path.to_str().unwrap(), "--inputs", xi.to_str().unwrap(), "--features", fi.to_str().unwrap()])?;
    let diff = r["max_abs_diff"].as_f64().unwrap();
    eprintln!("facerec -> PyTorch: max abs diff {diff:.2e}");
    assert!(diff <= 1e-4, "max abs diff {diff}");
    Ok(())
}

#[test]
fn pytorch_weights_load_by_name_and_give_the_same_embeddings() -> Result {
    let dir = tempfile::tempdir()?;
    let x = faces()?;
    let xi = dir.path().join("x.npy");
    save_npy(&xi, &x)?;
    let (w, fi) = (dir.path().join("torch.safetensors"), dir.path().join("f.npy"));
    let cfg_json = serde_json::to_string(&config())?;
    python(&["export", "--config", &cfg_json, "--out", w.to_str().unwrap(), "--inputs", xi.to_str().unwrap(), "--features", fi.to_str().unwrap()])?;
    // No facerec metadata in a PyTorch file: without a config it is a clear error ...
    let err = load_backbone(&w, Device::Cpu, None).err().ok_or("loaded without a config")?.to_string();
    assert!(err.contains("no backbone config"), "{err}");
    // ... with one it loads by name.
    let loaded = load_backbone(&w, Device::Cpu, Some(&config()))?;
    let ours = tch::no_grad(|| loaded.backbone.forward_t(&x, false))?;
    assert_eq!(ours.size(), [8, 64]);
    let diff = max_diff_to_npy(&ours, &fi)?;
    eprintln!("PyTorch -> facerec: max abs diff {diff:.2e}");
    assert!(diff <= 1e-4, "max abs diff {diff}");
    Ok(())
}

/// The shared MobileFaceNet checkpoint (legacy `torch.save` format), imported by facerec and
/// run on real crops, against the same file loaded by `torch.load` into the PyTorch twin.
#[test]
fn imported_mobilefacenet_gives_pytorchs_embeddings() -> Result {
    let ckpt = facerec_data::paths::require("pretrained")?.join("mobilefacenet_casia/mobilefacenet_casia_068.ckpt");
    let dir = tempfile::tempdir()?;
    let config = BackboneConfig::new(MobileFaceNetConfig::default());
    let model = dir.path().join("mfn.safetensors");
    let imported = import_backbone(&ckpt, &config, &model)?;
    assert_eq!((imported.tensors, imported.dropped), (283, 50));
    assert!(imported.source.contains("legacy format") && imported.source.contains("net_state_dict"), "{}", imported.source);
    let loaded = load_backbone(&model, Device::Cpu, None)?;
    let x = faces()?;
    let ours = tch::no_grad(|| loaded.backbone.forward_t(&x, false))?;
    assert_eq!(ours.size(), [8, 128]);
    let (xi, fi) = (dir.path().join("x.npy"), dir.path().join("f.npy"));
    save_npy(&xi, &x)?;
    save_npy(&fi, &ours)?;
    let cfg_json = serde_json::to_string(&config)?;
    let r = python(&["checkpoint", "--checkpoint", ckpt.to_str().unwrap(), "--config", &cfg_json, "--inputs", xi.to_str().unwrap(), "--features", fi.to_str().unwrap()])?;
    let (diff, scale) = (r["max_abs_diff"].as_f64().unwrap(), r["max_abs"].as_f64().unwrap());
    eprintln!("MobileFaceNet, facerec vs PyTorch: max abs diff {diff:.2e} (features up to {scale:.2})");
    assert!(scale > 0.1, "features this small would make the comparison meaningless");
    assert!(diff <= 1e-4, "max abs diff {diff}");
    // The faces are told apart: features of different people are not near-duplicates.
    let f = ours.f_div(&ours.f_norm_scalaropt_dim(2, [1].as_slice(), true)?)?;
    let cos = f.f_matmul(&f.f_tr()?)?;
    let off_diag = f64::try_from(cos.f_sub(&Tensor::eye(8, (Kind::Float, Device::Cpu)))?.f_abs()?.f_max()?)?;
    assert!(off_diag < 0.9, "max cosine between different images {off_diag}");
    Ok(())
}

/// A checkpoint in torch.save's zip format (PyTorch >= 1.6's default), the state dict under
/// `model` with DataParallel's `module.` prefix, as training scripts write them: imported, it
/// gives the twin's embeddings.
#[test]
fn a_zip_checkpoint_written_by_torch_imports_and_gives_its_embeddings() -> Result {
    let dir = tempfile::tempdir()?;
    let x = faces()?;
    let xi = dir.path().join("x.npy");
    save_npy(&xi, &x)?;
    let (ck, fi) = (dir.path().join("mfn.pt"), dir.path().join("f.npy"));
    let config = BackboneConfig::new(MobileFaceNetConfig { input_size: [112, 96], feature_dim: 64 });
    let cfg_json = serde_json::to_string(&config)?;
    python(&["export", "--torch-save", "--config", &cfg_json, "--out", ck.to_str().unwrap(), "--inputs", xi.to_str().unwrap(), "--features", fi.to_str().unwrap()])?;
    assert_eq!(&std::fs::read(&ck)?[..2], b"PK", "torch.save wrote its zip format");
    let model = dir.path().join("mfn.safetensors");
    let imported = import_backbone(&ck, &config, &model)?;
    assert!(imported.source.contains("zip format") && imported.source.contains("under \"model\""), "{}", imported.source);
    let loaded = load_backbone(&model, Device::Cpu, None)?;
    let ours = tch::no_grad(|| loaded.backbone.forward_t(&x, false))?;
    let diff = max_diff_to_npy(&ours, &fi)?;
    eprintln!("MobileFaceNet from a zip checkpoint: max abs diff {diff:.2e}");
    assert!(diff <= 1e-4, "max abs diff {diff}");
    Ok(())
}
