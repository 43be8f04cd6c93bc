//! MobileFaceNet trained on real LFW faces (48 images of 8 people): its BatchNorm statistics
//! survive a stop and resume exactly, and `[model] init` starts it from the published
//! checkpoint (imported), with `optim.backbone_lr_mult = 0` keeping those weights; a
//! `schedule.freeze_backbone` phase trains the head alone, then everything.

use std::path::{Path, PathBuf};


use facerec_core::metrics::read_records;
use facerec_experiment::Config;
use facerec_model::import::import_backbone;
use facerec_model::mobilefacenet::MobileFaceNetConfig;
use facerec_model::BackboneConfig;
use facerec_train::Outcome;
use tch::Tensor;

mod common;
use common::{faces_config as config, train, Result};

/// libtorch's random generator, which initialises the weights, is one per process: the tests
/// of this file (threads of one process) take turns, so that a seed means one initialisation.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn turn() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

fn model(run: &Path) -> Result<Vec<(String, Tensor)>> {
    Ok(facerec_model::weights::load(&run.join("model.safetensors"))?.0)
}

fn get<'a>(tensors: &'a [(String, Tensor)], name: &str) -> Result<&'a Tensor> {
    Ok(tensors.iter().find(|(n, _)| n == name).map(|(_, t)| t).ok_or(format!("no {name}"))?)
}

#[test]
fn batchnorm_statistics_resume_exactly() -> Result {
    let _turn = turn();
    let dir = tempfile::tempdir()?;
    let cfg = config(dir.path(), "")?;
    let (full, part) = (dir.path().join("full"), dir.path().join("part"));
    assert_eq!(train(&cfg, &full, None, false)?, Outcome::Finished);
    assert_eq!(train(&cfg, &part, Some(5), false)?, Outcome::Interrupted);
    assert_eq!(train(&cfg, &part, None, true)?, Outcome::Finished);
    assert_eq!(losses(&full)?.len(), 8);
    assert_eq!(losses(&full)?, losses(&part)?, "resumed losses differ");
    let (a, b) = (model(&full)?, model(&part)?);
    assert_eq!(a.len(), b.len());
    for ((na, ta), (nb, tb)) in a.iter().zip(&b) {
        assert_eq!(na, nb);
        assert!(ta.equal(tb), "{na} differs after resume");
    }
    // The statistics moved from their start (mean 0, variance 1): the check above covers them.
    let mean = get(&a, "blocks.3.conv.4.running_mean")?;
    assert!(mean.abs().max().double_value(&[]) > 1e-3, "running_mean never moved");
    let var = get(&a, "linear7.bn.running_var")?;
    assert!((var - 1.0).abs().max().double_value(&[]) > 1e-3, "running_var never moved");
    Ok(())
}

#[test]
fn init_starts_from_the_imported_checkpoint_and_a_zero_rate_keeps_it() -> Result {
    let _turn = turn();
    let dir = tempfile::tempdir()?;
    let ckpt = facerec_data::paths::require("pretrained")?.join("mobilefacenet_casia/mobilefacenet_casia_068.ckpt");
    let imported = dir.path().join("mfn.safetensors");
    import_backbone(&ckpt, &BackboneConfig::new(MobileFaceNetConfig::default()), &imported)?;
    let with_init = |mult: &str| -> Result<Config> {
        let mut cfg = config(dir.path(), "")?;
        cfg.model.init = Some(imported.clone());
        cfg.optim.backbone_lr_mult = mult.parse()?;
        Ok(cfg)
    };
    let frozen = dir.path().join("frozen");
    train(&with_init("0")?, &frozen, None, false)?;
    let start = facerec_model::weights::load(&imported)?.0;
    let end = model(&frozen)?;
    for (name, t) in &start {
        let after = get(&end, name)?;
        if name.contains("running_") {
            assert!(!after.equal(t), "{name}: BatchNorm statistics follow the new data even when frozen");
        } else {
            assert!(after.equal(t), "{name} moved at backbone_lr_mult = 0");
        }
    }
    // At a small rate the backbone moves, but little, and the loss goes down from the start.
    let slow = dir.path().join("slow");
    train(&with_init("0.1")?, &slow, None, false)?;
    let w = "blocks.0.conv.0.weight";
    let moved = (get(&model(&slow)?, w)? - get(&start, w)?).abs().max().double_value(&[]);
    assert!(moved > 0.0 && moved < 0.05, "{w} moved by {moved}");
    Ok(())
}

#[test]
fn init_from_another_architecture_lists_what_does_not_fit() -> Result {
    let _turn = turn();
    let dir = tempfile::tempdir()?;
    let other = dir.path().join("other.safetensors");
    let face_resnet: BackboneConfig = toml::from_str("name = \"face_resnet\"\nwidths = [4, 8, 8, 16, 16]\nblocks = [0, 0, 0, 0]")?;
    let vs = tch::nn::VarStore::new(tch::Device::Cpu);
    face_resnet.build(&vs.root())?;
    let vars: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    facerec_model::saved::save_backbone(&other, &face_resnet, &vars)?;
    let mut cfg = config(dir.path(), "")?;
    cfg.model.init = Some(PathBuf::from(&other));
    let err = train(&cfg, &dir.path().join("run"), None, false).err().ok_or("trained from another architecture")?.to_string();
    assert!(err.contains("other.safetensors") && err.contains("missing [") && err.contains("unexpected ["), "{err}");
    assert!(err.contains("running_mean"), "{err}");
    Ok(())
}

fn checkpoint(run: &Path, step: usize) -> Result<Vec<(String, Tensor)>> {
    Ok(facerec_model::weights::load(&facerec_train::checkpoint::path(run, step))?.0)
}

fn losses(run: &Path) -> Result<Vec<f64>> {
    Ok(read_records(&run.join("steps.jsonl"))?.iter().map(|r| r["loss"].as_f64().unwrap_or(f64::NAN)).collect())
}

#[test]
fn a_frozen_backbone_phase_trains_the_head_alone_then_everything_and_resumes_across_its_end() -> Result {
    let _turn = turn();
    let dir = tempfile::tempdir()?;
    let with = |freeze: usize, mult: f64| -> Result<Config> {
        let mut cfg = config(dir.path(), "")?;
        (cfg.schedule.freeze_backbone, cfg.optim.backbone_lr_mult) = (freeze, mult);
        Ok(cfg)
    };
    // Its 4 frozen steps are 4 steps at a zero backbone rate, bit for bit (the head's gradient
    // does not depend on whether the backbone's is computed), but build no backbone momentum.
    let (frozen, zero, whole) = (dir.path().join("frozen"), dir.path().join("zero"), dir.path().join("whole"));
    assert_eq!(train(&with(4, 1.0)?, &frozen, Some(4), false)?, Outcome::Interrupted);
    assert_eq!(train(&with(0, 0.0)?, &zero, Some(4), false)?, Outcome::Interrupted);
    assert_eq!(losses(&frozen)?, losses(&zero)?);
    let (f4, z4) = (checkpoint(&frozen, 4)?, checkpoint(&zero, 4)?);
    let weights_only = |t: &[(String, Tensor)]| -> Vec<(String, Tensor)> {
        t.iter().filter(|(n, _)| !n.starts_with("momentum.")).map(|(n, t)| (n.clone(), t.shallow_clone())).collect()
    };
    let (fm, zm) = (weights_only(&f4), weights_only(&z4));
    assert_eq!(fm.len(), zm.len());
    for ((nf, tf), (nz, tz)) in fm.iter().zip(&zm) {
        assert_eq!(nf, nz);
        assert!(tf.equal(tz), "{nf}: the frozen phase differs from a zero backbone rate");
    }
    assert!(f4.iter().any(|(n, _)| n.starts_with("momentum.head.")), "the head has no momentum");
    assert!(!f4.iter().any(|(n, _)| n.starts_with("momentum.backbone.")), "a frozen backbone built momentum");
    assert!(z4.iter().any(|(n, _)| n.starts_with("momentum.backbone.")));
    // Unmoved from step 2 to 4, its BatchNorm statistics following the data; moving after.
    let f2 = checkpoint(&frozen, 2)?;
    let (w, bn) = ("backbone.blocks.0.conv.0.weight", "backbone.blocks.3.conv.4.running_mean");
    assert!(get(&f2, w)?.equal(get(&f4, w)?), "{w} moved while frozen");
    assert!(!get(&f2, bn)?.equal(get(&f4, bn)?), "{bn} stood still while frozen");
    assert!(get(&f2, "head.fc.weight")?.ne_tensor(get(&f4, "head.fc.weight")?).any().int64_value(&[]) == 1, "the head did not train");
    // Resumed at the phase's end, it finishes as a run never stopped does.
    assert_eq!(train(&with(4, 1.0)?, &frozen, None, true)?, Outcome::Finished);
    assert_eq!(train(&with(4, 1.0)?, &whole, None, false)?, Outcome::Finished);
    assert_eq!(losses(&frozen)?.len(), 8);
    assert_eq!(losses(&frozen)?, losses(&whole)?, "resumed losses differ");
    let (a, b) = (model(&frozen)?, model(&whole)?);
    for ((na, ta), (_, tb)) in a.iter().zip(&b) {
        assert!(ta.equal(tb), "{na} differs after resume");
    }
    let f8 = checkpoint(&frozen, 8)?;
    assert!(!get(&f4, w)?.equal(get(&f8, w)?), "{w} never thawed");
    Ok(())
}
