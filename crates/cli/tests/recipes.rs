//! The field's recipes shipped in `configs/` (arcface_torch's MS1MV3, Glint360K and WebFace4M
//! ones, and the paper's model C on CASIA-WebFace) train a few steps as their users would run
//! them: through `facerec launch` on 2 ranks with the class-sharded head, on a small `.rec` of
//! LFW crops in insightface's 112x112 layout (which the 112x96 Face-ResNet trains on cut to its
//! caffe-face crop), the data path set with `--set`.

use std::net::TcpListener;
use std::path::Path;

mod common;
use common::{facerec, text, Result};

/// 64 LFW faces of 16 identities as a 112x112 `.rec` (JPEG, as insightface ships them).
fn small_rec(dir: &Path) -> Result<std::path::PathBuf> {
    let lfw = facerec_data::paths::require("lfw")?;
    let ds = facerec_data::dataset::FaceDataset::from_folders(&lfw.join("images"))?;
    let mut by_label = std::collections::BTreeMap::<i64, Vec<&std::path::PathBuf>>::new();
    for s in &ds.samples {
        by_label.entry(s.label).or_default().push(&s.path);
    }
    let list: String = by_label.values().filter(|paths| paths.len() >= 4).take(16).flat_map(|paths| &paths[..4]).map(|p| format!("{}\n", p.display())).collect();
    let list_path = dir.join("list.txt");
    std::fs::write(&list_path, list)?;
    let rec = dir.join("small.rec");
    let (images, landmarks) = (lfw.join("images"), lfw.join("landmarks_5pt.tsv"));
    let out = facerec(
        &["convert", "--images", images.to_str().unwrap(), "--list", list_path.to_str().unwrap(), "--landmarks", landmarks.to_str().unwrap(),
          "--to-rec", rec.to_str().unwrap(), "-q"],
        dir,
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("64 112x112 crops") && text(&out).contains("of 16 identities"), "{}", text(&out));
    Ok(rec)
}

#[test]
fn every_recipe_trains_a_few_steps_on_two_ranks_with_the_sharded_head() -> Result {
    let dir = tempfile::tempdir()?;
    let rec = small_rec(dir.path())?;
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    for recipe in ["ms1mv3_iresnet50_arcface", "glint360k_iresnet100_cosface", "webface4m_iresnet100_cosface", "casia_faceresnet_center"] {
        let config = repo.join("configs").join(format!("{recipe}.toml"));
        let run = dir.path().join(recipe);
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port().to_string();
        let mut args = vec!["launch", "--nproc", "2", "--master-port", &port, "--", "train", config.to_str().unwrap(), "--run-dir", run.to_str().unwrap(), "-q"];
        let rec_set = format!("data.rec={}", rec.display());
        let sets = [rec_set.as_str(), "eval.bin=[]", "schedule.epochs=", "schedule.steps=2", "schedule.milestones=[1]", "optim.batch_size=8", "precision=\"fp32\"", "threads=1", "log.every_steps=1"];
        let sets: Vec<&str> = sets.into_iter().filter(|s| !s.starts_with("schedule.milestones") || recipe.starts_with("casia")).collect();
        for s in &sets {
            args.extend(["--set", s]);
        }
        let out = facerec(&args, dir.path());
        assert!(out.status.success(), "{recipe}:\n{}", text(&out));
        let steps = facerec_core::metrics::read_records(&run.join("steps.jsonl"))?;
        let losses: Vec<f64> = steps.iter().filter_map(|r| r["loss"].as_f64()).collect();
        assert_eq!(losses.len(), 2, "{recipe}: {steps:?}");
        assert!(losses.iter().all(|l| l.is_finite() && *l > 0.0), "{recipe}: {losses:?}");
        let ck = facerec_train::checkpoint::load(&facerec_train::checkpoint::path(&run, 2))?;
        assert_eq!(ck.world_size, 2, "{recipe}");
        assert!(run.join("model.safetensors").is_file(), "{recipe}");
    }
    // Without its data the recipe says what to set.
    let out = facerec(&["train", repo.join("configs/ms1mv3_iresnet50_arcface.toml").to_str().unwrap()], dir.path());
    assert!(!out.status.success() && text(&out).contains("--set data.rec="), "{}", text(&out));
    Ok(())
}
