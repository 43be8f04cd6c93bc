//! What several test files of this crate share: a small real face-training config.

use std::path::Path;

use facerec_experiment::Config;

pub type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error>>;

const PEOPLE: [&str; 8] = [
    "Ariel_Sharon",
    "Colin_Powell",
    "Donald_Rumsfeld",
    "George_W_Bush",
    "Gerhard_Schroeder",
    "Hugo_Chavez",
    "Junichiro_Koizumi",
    "Tony_Blair",
];

/// A config training MobileFaceNet on six images each of [`PEOPLE`] (batch 16, 8 steps, a
/// checkpoint every 2), its list file and crop cache in `dir`; `extra` is appended.
pub fn faces_config(dir: &Path, extra: &str) -> Result<Config> {
    let lfw = facerec_data::paths::require("lfw")?;
    let list = dir.join("list.txt");
    let lines: Vec<String> = PEOPLE.iter().flat_map(|p| (1..=6).map(move |i| format!("{p}/{p}_{i:04}.jpg {p}"))).collect();
    std::fs::write(&list, lines.join("\n"))?;
    let text = format!(
        r#"
seed = 3
threads = 1
[data]
kind = "faces"
images = "{images}"
list = "{list}"
landmarks = "{landmarks}"
cache_dir = "{cache}"
[model.backbone]
name = "mobilefacenet"
[loss]
lambda = 0.003
alpha = 0.5
[optim]
lr = 0.05
batch_size = 16
[schedule]
steps = 8
[checkpoint]
every_steps = 2
keep = 10
[eval]
disabled = true
[log]
every_steps = 1
{extra}
"#,
        images = lfw.join("images").display(),
        list = list.display(),
        landmarks = lfw.join("landmarks_5pt.tsv").display(),
        cache = dir.join("cache").display(),
    );
    Ok(Config::parse(&text, &dir.join("mfn.toml"), &[])?)
}

