//! What several test files of this crate share: a training run stopped and resumed at will,
//! and a small real face-training config.
#![allow(dead_code)]

use std::path::Path;
use std::sync::Arc;

use facerec_experiment::{Config, RunDir};
use facerec_train::{Observer, Outcome, StepStats, Trainer};

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
    // Written once: the ranks of a distributed test call this too, while the others read it.
    let text = lines.join("\n");
    if std::fs::read_to_string(&list).ok().as_deref() != Some(text.as_str()) {
        std::fs::write(&list, text)?;
    }
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


/// Trains `config` into `run`, from its `[model] init` when it has one; `stop_at` stops after
/// that step (with a checkpoint); `resume` continues from the latest checkpoint.
pub fn train(config: &Config, run: &Path, stop_at: Option<usize>, resume: bool) -> Result<Outcome> {
    struct StopAt(Option<usize>, Arc<std::sync::atomic::AtomicBool>);
    impl Observer for StopAt {
        fn on_step(&mut self, s: &StepStats) -> facerec_train::Result<()> {
            if Some(s.step) == self.0 {
                self.1.store(true, std::sync::atomic::Ordering::SeqCst);
            }
            Ok(())
        }
    }
    let data = config.open_train()?;
    let mut trainer = Trainer::new(config.train_config(), run, data.source.num_classes())?;
    let resumed = facerec_experiment::run::start_or_resume(&mut trainer, &config.model, &RunDir::new(run), resume, false)?;
    if resume && resumed.is_none() {
        return Err("no checkpoint to resume".into());
    }
    let mut obs = StopAt(stop_at, trainer.stop_flag());
    Ok(trainer.fit(data.source, data.flip, None, &mut obs)?.outcome)
}
