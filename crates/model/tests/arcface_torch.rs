//! facerec's IResNet (depths 18 to 200) and arcface_torch's MobileFaceNet ("mbf") are
//! arcface_torch's own networks: a state dict that the reference (`backbones/iresnet.py`,
//! `backbones/mobilefacenet.py` in ../shared/reference/arcface_torch, run by PyTorch through
//! `scripts/reference/arcface_torch_ref.py`) saved with `torch.save` imports by name and gives the
//! reference's embeddings of real aligned LFW faces (eval mode and train-mode BatchNorm) to
//! 1e-4, and the model file facerec writes loads back into the reference with `strict=True`
//! and gives the same embeddings again.

use std::path::Path;
use std::process::Command;

use facerec_core::PixelNorm;
use facerec_data::align::Template;
use facerec_data::cache::aligned_crop;
use facerec_data::dataset::FaceDataset;
use facerec_data::landmarks::{LandmarkFile, OnBad};
use facerec_data::normalize::crops_to_tensor;
use facerec_model::import::import_backbone;
use facerec_model::iresnet::IresnetConfig;
use facerec_model::mbf::MbfConfig;
use facerec_model::saved::load_backbone;
use facerec_model::BackboneConfig;
use tch::{Device, Kind, Tensor};

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error>>;

/// Four real faces aligned to insightface's 112x112 template, normalised as insightface does.
fn faces() -> Result<Tensor> {
    let lfw = facerec_data::paths::require("lfw")?;
    let lms = LandmarkFile::read(&lfw.join("landmarks_5pt.tsv"), OnBad::Fail)?;
    let ds = FaceDataset::from_folders(&lfw.join("images"))?;
    let crops = ds.samples.iter().step_by(3000).take(4).map(|s| aligned_crop(&ds, s, &lms, Template::Insightface)).collect::<std::result::Result<Vec<_>, _>>()?;
    Ok(crops_to_tensor(&crops, 112, 112, PixelNorm::INSIGHTFACE)?)
}

fn save_npy(path: &Path, t: &Tensor) -> Result {
    let array: ndarray::ArrayD<f32> = (&t.to_kind(Kind::Float)).try_into()?;
    facerec_data::npy::write(path, &array)?;
    Ok(())
}

/// Runs the reference script; its stdout's JSON.
fn reference(args: &[&str]) -> Result<serde_json::Value> {
    let py = std::env::var("FACEREC_PYTHON").unwrap_or_else(|_| ".deps/venv/bin/python".into());
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/reference/arcface_torch_ref.py");
    let out = Command::new(&py).arg(script).args(args).output().map_err(|e| format!("{py}: {e}"))?;
    assert!(out.status.success(), "arcface_torch_ref.py {args:?}:\n{}", String::from_utf8_lossy(&out.stderr));
    Ok(serde_json::from_slice(&out.stdout)?)
}

/// Largest absolute difference between `ours` and the features the reference wrote to `path`.
fn max_diff(ours: &Tensor, path: &Path) -> Result<f64> {
    let theirs = facerec_data::npy::read::<f32, ndarray::Ix2>(path)?;
    assert_eq!([theirs.dim().0 as i64, theirs.dim().1 as i64], ours.size()[..], "feature shapes");
    Ok(f64::try_from((ours - Tensor::try_from(&theirs)?).abs().max().to_kind(Kind::Double))?)
}

/// The reference's network `network` against facerec's backbone `config`.
fn same_network(network: &str, config: BackboneConfig) -> Result {
    let dir = tempfile::tempdir()?;
    let x = faces()?;
    let inputs = dir.path().join("x.npy");
    save_npy(&inputs, &x)?;
    let out = dir.path().join("ref");
    let r = reference(&["backbone", "--network", network, "--seed", "3", "--inputs", inputs.to_str().unwrap(), "--out", out.to_str().unwrap()])?;

    // The reference's torch.save (zip) state dict, imported by name.
    let model = dir.path().join("model.safetensors");
    let imported = import_backbone(&out.join("ref.pt"), &config, &model)?;
    assert_eq!((imported.tensors + imported.dropped) as u64, r["tensors"].as_u64().unwrap_or(0), "{network}: every entry of the state dict");
    let loaded = load_backbone(&model, Device::Cpu, None)?;
    assert_eq!(loaded.config.pixel_norm(), PixelNorm::INSIGHTFACE);
    let eval = tch::no_grad(|| loaded.backbone.forward_t(&x, false))?;
    let train = tch::no_grad(|| loaded.backbone.forward_t(&x, true))?;
    let scale = f64::try_from(eval.abs().max().to_kind(Kind::Double))?;
    let scale_train = f64::try_from(train.abs().max().to_kind(Kind::Double))?;
    let (d_eval, d_train) = (max_diff(&eval, &out.join("eval.npy"))?, max_diff(&train, &out.join("train.npy"))?);
    eprintln!("{network}: facerec vs arcface_torch, eval {d_eval:.2e}, train-mode BN {d_train:.2e} (features up to {scale:.3e} / {scale_train:.3e})");
    assert!(scale > 0.1, "{network}: features this small would make the comparison meaningless");
    assert!(d_eval <= 1e-4 && d_train <= 1e-4, "{network}: max abs diff eval {d_eval}, train {d_train}");

    // facerec's model file into the reference, strict=True, and the same embeddings.
    let back = dir.path().join("back.npy");
    let r = reference(&["load", "--network", network, "--weights", model.to_str().unwrap(), "--inputs", inputs.to_str().unwrap(), "--out", back.to_str().unwrap()])?;
    assert_eq!(r["unexpected"], serde_json::json!([]), "{r}");
    let d_back = max_diff(&eval, &back)?;
    assert!(d_back <= 1e-4, "{network}: facerec's file in the reference: max abs diff {d_back}");
    Ok(())
}

fn iresnet(depth: u32) -> BackboneConfig {
    BackboneConfig::new(IresnetConfig { depth, ..Default::default() })
}

#[test]
fn iresnet18_is_arcface_torchs_r18() -> Result {
    same_network("r18", iresnet(18))
}

#[test]
fn iresnet34_is_arcface_torchs_r34() -> Result {
    same_network("r34", iresnet(34))
}

#[test]
fn iresnet50_is_arcface_torchs_r50() -> Result {
    same_network("r50", iresnet(50))
}

#[test]
fn iresnet100_is_arcface_torchs_r100() -> Result {
    same_network("r100", iresnet(100))
}

#[test]
fn iresnet200_is_arcface_torchs_r200() -> Result {
    same_network("r200", iresnet(200))
}

#[test]
fn mbf_is_arcface_torchs_mobilefacenet() -> Result {
    same_network("mbf", BackboneConfig::new(MbfConfig::default()))
}

/// A state dict of another depth: the error names the file and lists what does not fit.
#[test]
fn a_state_dict_of_another_depth_is_refused_with_what_does_not_fit() -> Result {
    let dir = tempfile::tempdir()?;
    let inputs = dir.path().join("x.npy");
    save_npy(&inputs, &Tensor::zeros([2, 3, 112, 112], (Kind::Float, Device::Cpu)))?;
    let out = dir.path().join("ref");
    reference(&["backbone", "--network", "r18", "--inputs", inputs.to_str().unwrap(), "--out", out.to_str().unwrap()])?;
    let err = match import_backbone(&out.join("ref.pt"), &iresnet(34), &dir.path().join("m.safetensors")) {
        Ok(_) => return Err("an r18 state dict imported as depth 34".into()),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("ref.pt") && err.contains("layer1.2.") && err.contains("missing"), "{err}");
    Ok(())
}
