//! [`RunDir`]: the files of a run directory. Their names are `facerec_core::run_files`'s
//! constants, which the crates that write them use too.
//!
//! ```text
//! runs/<name>/
//!   config.toml           the resolved config                      (trainer)
//!   steps.jsonl           losses every log.every_steps steps       (trainer)
//!   metrics.jsonl         evaluations and epoch ends               (trainer)
//!   events.out.tfevents.* the same for TensorBoard                 (trainer)
//!   checkpoints/          step-NNNNNNNN.safetensors                (trainer)
//!   model.safetensors     the trained backbone                     (trainer, at the end)
//!   changes.jsonl         settings changed on a resume             (provenance)
//!   diverged.json         the step a run diverged at               (the train command)
//!   training.png, evaluation.png                                   (plots)
//!   report.json, features.png                                      (MNIST report)
//!   lfw_report.json, lfw_roc.png, lfw_scores.png                   (LFW report)
//!   eval_<what differs>/  re-evaluations with other settings       (facerec eval RUN)
//! ```

use std::path::{Path, PathBuf};

use facerec_core::run_files as files;

/// A run directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunDir {
    dir: PathBuf,
}

impl RunDir {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        RunDir { dir: dir.into() }
    }

    /// The run a model belongs to: `RUN` for `RUN/model.safetensors`, or for `RUN` itself,
    /// when `RUN/config.toml` is there (a model file elsewhere is a bare model).
    pub fn of_model(model: &Path) -> Option<RunDir> {
        let dir = match model.is_dir() {
            true => model,
            false if model.file_name().is_some_and(|n| n == files::MODEL) => model.parent()?,
            false => return None,
        };
        let dir = if dir.as_os_str().is_empty() { Path::new(".") } else { dir };
        dir.join(files::CONFIG).is_file().then(|| RunDir::new(dir))
    }

    /// Where the evaluation reports of the model at `model` go (`facerec eval --model`), and
    /// where `facerec compare --model` finds the threshold: the run directory of a run's model
    /// ([`RunDir::of_model`]), else `<stem>_eval/` beside a bare model file
    /// (`models/mfn.safetensors` -> `models/mfn_eval/`), never the current directory.
    pub fn model_reports(model: &Path) -> PathBuf {
        if let Some(run) = RunDir::of_model(model) {
            return run.dir;
        }
        let file = if model.is_dir() { model.join(files::MODEL) } else { model.to_path_buf() };
        let stem = file.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "model".into());
        file.with_file_name(format!("{stem}_eval"))
    }

    /// `runs/<name>`, the name being `name` or the config file's stem.
    pub fn for_config(config_path: &Path, name: Option<&str>) -> Self {
        let stem = name
            .map(str::to_owned)
            .or_else(|| config_path.file_stem().map(|s| s.to_string_lossy().into_owned()))
            .unwrap_or_else(|| "run".to_owned());
        RunDir::new(PathBuf::from("runs").join(stem))
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// The directory's name, for reports.
    pub fn name(&self) -> String {
        self.dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
    }

    pub fn config(&self) -> PathBuf {
        self.dir.join(files::CONFIG)
    }
    pub fn steps(&self) -> PathBuf {
        self.dir.join(files::STEPS)
    }
    pub fn metrics(&self) -> PathBuf {
        self.dir.join(files::METRICS)
    }
    pub fn checkpoints(&self) -> PathBuf {
        self.dir.join(files::CHECKPOINTS)
    }
    pub fn model(&self) -> PathBuf {
        self.dir.join(files::MODEL)
    }
    pub fn changes(&self) -> PathBuf {
        self.dir.join(files::CHANGES)
    }
    pub fn diverged(&self) -> PathBuf {
        self.dir.join(files::DIVERGED)
    }
    pub fn mnist_report(&self) -> PathBuf {
        self.dir.join(files::MNIST_REPORT)
    }
    pub fn features_png(&self) -> PathBuf {
        self.dir.join(files::FEATURES_PNG)
    }
    pub fn lfw_report(&self) -> PathBuf {
        self.dir.join(files::LFW_REPORT)
    }

    /// The folder of a re-evaluation with other settings: `eval_<label>`.
    pub fn eval_dir(&self, label: &str) -> PathBuf {
        self.dir.join(format!("eval_{label}"))
    }

    /// Every path of this directory a run wrote: `run_files::ALL` that exist, TensorBoard's
    /// event files, temporaries of an interrupted atomic write (`.<file>.tmp-<pid>`) and the
    /// folders of re-evaluations (`eval_*/` holding a report). The user's own files are not
    /// among them.
    pub fn written(&self) -> Vec<PathBuf> {
        let extra = std::fs::read_dir(&self.dir).into_iter().flatten().flatten().map(|e| e.path()).filter(|p| {
            let name = p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            let temporary = name.strip_prefix('.').and_then(|n| n.split_once(".tmp-")).is_some_and(|(f, _)| files::ALL.contains(&f));
            temporary || (name.starts_with("eval_") && p.join(files::LFW_REPORT).is_file())
        });
        files::ALL
            .iter()
            .map(|f| self.dir.join(f))
            .filter(|p| p.exists())
            .chain(facerec_train::tensorboard::event_files(&self.dir))
            .chain(extra)
            .collect()
    }
}
