//! Every experiment shipped in `configs/` parses, validates and builds its loss: a misspelt key
//! or an out-of-range value in a shipped config fails here, not in a user's first run.

use std::path::Path;

use facerec_experiment::Config;
use tch::{nn, Device};

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error>>;

#[test]
fn every_shipped_config_parses_and_builds_its_loss() -> Result {
    // The configs' paths are relative to the checkout (this file is the only test of its binary,
    // so changing the directory disturbs no other test).
    std::env::set_current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("../.."))?;
    let tmp = tempfile::tempdir()?;
    let rec = tmp.path().join("train.rec");
    let image = image::RgbImage::from_pixel(112, 112, image::Rgb([90, 120, 150]));
    let mut png = Vec::new();
    image.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)?;
    facerec_data::insightface::write_recordio(&rec, &[(png.clone(), 0), (png, 1)])?;
    let mut names = Vec::new();
    for entry in std::fs::read_dir("configs")? {
        let path = entry?.path();
        if path.extension().is_none_or(|e| e != "toml") {
            continue;
        }
        // A recipe for a training set of the field (MS1MV3, Glint360K, ...) names where the set
        // usually lives; without it the config is refused with what to set, and with any .rec
        // it loads.
        let text = std::fs::read_to_string(&path)?;
        let sets = match text.contains("kind = \"record_io\"") {
            true => {
                // The LFW recipe's .rec is made by scripts/lfw_rec.sh: where it was, the missing
                // set is one that surely is not there.
                let table: toml::Table = text.parse()?;
                let default = table.get("data").and_then(|d| d.get("rec")).and_then(|r| r.as_str()).map(Path::new);
                let missing = tmp.path().join("missing.rec");
                let unset = match default.is_some_and(Path::exists) {
                    true => vec![format!("data.rec={}", missing.display())],
                    false => Vec::new(),
                };
                let err = Config::load(&path, &unset).err().ok_or(format!("{}: loads without its .rec", path.display()))?.to_string();
                assert!(err.contains("data.rec") && err.contains("--set data.rec="), "{}: {err}", path.display());
                vec![format!("data.rec={}", rec.display()), "eval.bin=[]".to_owned()]
            }
            false => Vec::new(),
        };
        let config = Config::load(&path, &sets).map_err(|e| format!("{}: {e}", path.display()))?;
        let vs = nn::VarStore::new(Device::Cpu);
        config
            .loss
            .build(&vs.root(), config.model.backbone.feature_dim(), 10)
            .map_err(|e| format!("{}: loss {}: {e}", path.display(), config.loss.name()))?;
        names.push(config.loss.name().to_owned());
    }
    // The configs of the comparison in docs/results.md are among them (model A is center loss
    // at lambda 0, so that A and C differ in one number).
    for loss in ["center", "contrastive", "cosface", "arcface"] {
        assert!(names.iter().any(|n| n == loss), "no shipped config trains with {loss}: {names:?}");
    }
    Ok(())
}
