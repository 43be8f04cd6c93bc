//! Experiment configuration: one TOML file per experiment in `configs/`. Parsing rejects
//! unknown keys and wrong types (with the line), [`Config::validate`] rejects out-of-range
//! values (with the key), both before any work starts. The resolved config is written into the
//! run directory.
//!
//! The schema is composed of the crates' own sections: `[data]` ([`DataConfig`], here),
//! `[model.backbone]` (`facerec-model`), `[loss]` (`facerec-losses`), `[optim]`, `[schedule]`,
//! `[checkpoint]`, `[log]` (`facerec-train`), `[eval.lfw]` (`facerec-eval`) and `[[eval.bin]]`.

use std::path::Path;

use serde::{Deserialize, Serialize};

use facerec_eval::lfw::LfwEvalConfig;
use facerec_losses::LossConfig;
use facerec_model::device::DeviceChoice;
use facerec_model::BackboneConfig;
use facerec_train::config::{CheckpointConfig, Every, LogConfig, OptimConfig, ParallelConfig, Precision, ScheduleConfig, TrainConfig};

use crate::data::DataConfig;
use crate::error::{ExperimentError, Result};
use crate::evaluators::BinEvalConfig;

/// A whole experiment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Free text shown in reports.
    #[serde(default)]
    pub description: String,
    /// Seeds initialisation, data order and augmentation.
    #[serde(default)]
    pub seed: u64,
    /// `"auto"`, `"cpu"`, `"cuda"` or `"cuda:N"`.
    #[serde(default)]
    pub device: DeviceChoice,
    /// libtorch intra-op threads; 0 keeps libtorch's default (one per core).
    #[serde(default)]
    pub threads: usize,
    /// `"fp32"`, or `"bf16"`: the backbone's forward (and so its backward) under bfloat16
    /// autocast; the classifier, the losses, the center update and the weights stay float32.
    #[serde(default)]
    pub precision: Precision,
    pub data: DataConfig,
    pub model: ModelConfig,
    /// `[loss] name = "center"` (the default) or `"softmax"`, with that loss's settings.
    pub loss: LossConfig,
    pub optim: OptimConfig,
    pub schedule: ScheduleConfig,
    #[serde(default)]
    pub checkpoint: CheckpointConfig,
    #[serde(default)]
    pub eval: EvalConfig,
    #[serde(default)]
    pub log: LogConfig,
    /// How the ranks of a multi-process run share the classifier (class sharding, Partial FC).
    #[serde(default)]
    pub parallel: ParallelConfig,
}

/// `[model]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    pub backbone: BackboneConfig,
    /// Start the backbone from these weights (a facerec model file or run directory, a
    /// safetensors file, or a PyTorch checkpoint); names and shapes must match the backbone's
    /// exactly. Used when a run starts, not when it resumes (the checkpoint has the weights).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init: Option<std::path::PathBuf>,
}

impl ModelConfig {
    /// The backbone's name as written in configs.
    pub fn backbone_name(&self) -> String {
        self.backbone.name().to_owned()
    }
}

/// `[eval]`: the periodic evaluation during training.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvalConfig {
    /// Evaluate every this many steps; 0 at the end of each epoch only.
    #[serde(default)]
    pub every_steps: usize,
    /// Turn the periodic evaluation off.
    #[serde(default)]
    pub disabled: bool,
    /// LFW verification (face models).
    pub lfw: Option<LfwEvalConfig>,
    /// insightface `.bin` verification sets (face models), each under its own name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub bin: Vec<BinEvalConfig>,
}

impl Config {
    /// Reads, overrides (`key.path=value`, TOML values), parses and validates a config file.
    pub fn load(path: &Path, overrides: &[String]) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| ExperimentError::io(path, e))?;
        Self::parse(&text, path, overrides)
    }

    /// [`Config::load`] from a string; `path` names it in errors.
    pub fn parse(text: &str, path: &Path, overrides: &[String]) -> Result<Self> {
        let err = |msg: String| ExperimentError::Config { path: path.to_path_buf(), msg };
        let config: Config = if overrides.is_empty() {
            toml::from_str(text).map_err(|e| err(at_plug_key(text, &e).unwrap_or_else(|| e.to_string()).trim_end().to_owned()))?
        } else {
            let mut value: toml::Table = toml::from_str(text).map_err(|e| err(e.to_string().trim_end().to_owned()))?;
            let before = schedule_unit(&value);
            for o in overrides {
                apply_override(&mut value, o).map_err(err)?;
            }
            let sets_milestones = overrides.iter().any(|o| o.split_once('=').is_some_and(|(k, _)| k.trim() == "schedule.milestones"));
            if !sets_milestones {
                check_milestone_unit(before, &value).map_err(err)?;
            }
            // Round-trip through text so that errors still name the key.
            let text = toml::to_string(&value).map_err(|e| err(e.to_string()))?;
            toml::from_str(&text).map_err(|e| err(format!("after --set overrides: {}", e.to_string().trim_end())))?
        };
        config.validate().map_err(err)?;
        Ok(config)
    }

    /// Range checks; the message names the key.
    pub fn validate(&self) -> std::result::Result<(), String> {
        self.optim.validate()?;
        self.schedule.validate()?;
        self.parallel.validate()?;
        if self.checkpoint.keep == 0 {
            return Err("checkpoint.keep must be at least 1".into());
        }
        if self.log.every_steps == Some(0) {
            return Err("log.every_steps must be at least 1".into());
        }
        if let Some(lfw) = &self.eval.lfw {
            lfw.validate()?;
            let dims = self.model.backbone.feature_dim() as usize * if lfw.flip { 2 } else { 1 };
            if lfw.pca > dims {
                return Err(format!(
                    "eval.lfw.pca = {}: the features have {dims} dimensions (model.backbone.feature_dim {}{})",
                    lfw.pca,
                    self.model.backbone.feature_dim(),
                    if lfw.flip { ", twice with the mirror" } else { "" }
                ));
            }
        }
        // The data before the .bin sets: a recipe's first error names its training set.
        let model_shape = self.model.backbone.input_shape();
        self.data.validate(model_shape)?;
        let mut names = std::collections::BTreeSet::new();
        for b in &self.eval.bin {
            b.validate()?;
            if !names.insert(&b.name) {
                return Err(format!("eval.bin: the name {:?} is used twice", b.name));
            }
        }
        Ok(())
    }

    /// The training split of `[data]`, normalised as the model's input (see
    /// [`DataConfig::open_train_with_progress`]).
    pub fn open_train(&self) -> Result<crate::data::TrainSet> {
        self.open_train_with_progress(&|_| {})
    }

    /// [`Config::open_train`], reporting alignment progress (images done).
    pub fn open_train_with_progress(&self, progress: &(dyn Fn(u64) + Sync)) -> Result<crate::data::TrainSet> {
        let backbone = &self.model.backbone;
        self.data.open_train_with_progress(backbone.input_shape(), backbone.pixel_norm(), progress)
    }

    /// Whether `[model] init` names a file that is there: checked when a run starts, not when
    /// it resumes (its checkpoint holds the weights, and the file may be gone by then).
    pub fn check_init(&self) -> std::result::Result<(), String> {
        match self.model.init.as_ref().filter(|p| !p.exists()) {
            Some(init) => Err(format!("model.init: {} does not exist", init.display())),
            None => Ok(()),
        }
    }

    /// Whether a run of this config can train and be evaluated on `world` ranks. An MNIST run
    /// is scored by its classifier (test accuracy on the logits of every class), which no rank
    /// of a class-sharded head holds: refused before the first step rather than after the last.
    pub fn check_world(&self, world: usize) -> std::result::Result<(), String> {
        if world > 1 && self.parallel.shard_head && matches!(self.data, DataConfig::Mnist(_)) {
            return Err(format!(
                "parallel.shard_head: an MNIST run is evaluated by its classifier's logits (test accuracy), and \
                 with the classifier sharded over {world} ranks no rank has every class's logit; train it with \
                 parallel.shard_head = false (the ranks then hold the whole classifier) or in one process. Face \
                 runs, evaluated on features, shard"
            ));
        }
        Ok(())
    }

    /// The resolved config as TOML (what is written into the run directory).
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_else(|e| format!("# cannot serialise config: {e}\n"))
    }

    /// What the trainer is built from.
    pub fn train_config(&self) -> TrainConfig {
        // Ranks may run on different devices of one machine; everything else must match.
        let fingerprint = Config { device: DeviceChoice::Auto, ..self.clone() }.to_toml();
        TrainConfig {
            seed: self.seed,
            device: self.device,
            threads: self.threads,
            precision: self.precision,
            backbone: self.model.backbone.clone(),
            loss: self.loss.clone(),
            optim: self.optim.clone(),
            schedule: self.schedule.clone(),
            checkpoint: self.checkpoint.clone(),
            log: self.log.clone(),
            parallel: self.parallel.clone(),
            evaluate: if self.eval.disabled { Every::Never } else { Every::from_steps(self.eval.every_steps) },
            shuffle: self.data.shuffle(),
            resolved: self.to_toml(),
            fingerprint: crc32fast::hash(fingerprint.as_bytes()),
        }
    }
}

/// toml's error `e` for `text`, pointed at the key it names when it names one inside a plug's
/// table (`[loss]`, `[model.backbone]`, `[loss.head]`). Those tables are parsed through their
/// registry after toml has read them, so toml's error points at the table's header; this finds
/// the key (`unknown field `lambd``, or `lambda: ...`) in that table and renders the error as
/// toml renders one at the key's line. `None` when the error is not of that kind.
fn at_plug_key(text: &str, e: &toml::de::Error) -> Option<String> {
    let span = e.span()?;
    let message = e.message();
    let key = match message.strip_prefix("unknown field `") {
        Some(rest) => rest.split_once('`')?.0,
        None => message.split_once(": ").map(|(k, _)| k).filter(|k| !k.is_empty() && k.chars().all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c)))?,
    };
    let doc = toml::de::DeTable::parse(text).ok()?;
    let table = table_at(doc.get_ref(), &span)?;
    let key_span = find_key(table, key.split('.').next_back().unwrap_or(key))?;
    let (line, column) = (text[..key_span.start].matches('\n').count(), text[..key_span.start].rsplit('\n').next().unwrap_or("").chars().count());
    let content = text.lines().nth(line).unwrap_or_default();
    let gutter = " ".repeat((line + 1).to_string().len() + 1);
    let carets = "^".repeat(key_span.len().clamp(1, content.chars().count().saturating_sub(column).max(1)));
    Some(format!(
        "TOML parse error at line {}, column {}\n{gutter}|\n{} | {content}\n{gutter}|{}{carets}\n{message}\n",
        line + 1,
        column + 1,
        line + 1,
        " ".repeat(column + 1)
    ))
}

/// The table of `doc` (at any depth) that toml's error span `span` designates: the one whose
/// span is `span`, else the one that starts where it does.
fn table_at<'a, 'i>(doc: &'a toml::de::DeTable<'i>, span: &std::ops::Range<usize>) -> Option<&'a toml::de::DeTable<'i>> {
    fn walk<'a, 'i>(t: &'a toml::de::DeTable<'i>, hit: &dyn Fn(&std::ops::Range<usize>) -> bool) -> Option<&'a toml::de::DeTable<'i>> {
        t.values().find_map(|v| match v.get_ref() {
            toml::de::DeValue::Table(inner) if hit(&v.span()) => Some(inner),
            toml::de::DeValue::Table(inner) => walk(inner, hit),
            _ => None,
        })
    }
    walk(doc, &|s| s == span).or_else(|| walk(doc, &|s| s.start == span.start))
}

/// The span of `key` in `table` or in a table inside it.
fn find_key(table: &toml::de::DeTable<'_>, key: &str) -> Option<std::ops::Range<usize>> {
    table.iter().find(|(k, _)| k.get_ref() == key).map(|(k, _)| k.span()).or_else(|| {
        table.values().find_map(|v| match v.get_ref() {
            toml::de::DeValue::Table(inner) => find_key(inner, key),
            _ => None,
        })
    })
}

/// Sets `a.b.c = value` in a TOML table; `value` is parsed as a TOML value, or taken as a
/// string when it does not parse (so `--set data.root=/x/y` works unquoted). An empty value
/// (`--set schedule.epochs=`) removes the key.
pub fn apply_override(table: &mut toml::Table, assignment: &str) -> std::result::Result<(), String> {
    let (key, raw) = assignment
        .split_once('=')
        .ok_or_else(|| format!("override {assignment:?} is not of the form key.path=value"))?;
    if raw.trim().is_empty() {
        let parts: Vec<&str> = key.trim().split('.').collect();
        let (last, path) = parts.split_last().ok_or_else(|| format!("override {assignment:?} has an empty key"))?;
        let mut cur = &mut *table;
        for part in path {
            cur = cur.get_mut(*part).and_then(toml::Value::as_table_mut).ok_or_else(|| format!("override {key}: no table {part}"))?;
        }
        cur.remove(*last);
        return Ok(());
    }
    let value: toml::Value = toml::from_str::<toml::Table>(&format!("v = {raw}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_owned()));
    let parts: Vec<&str> = key.trim().split('.').collect();
    let mut cur = table;
    for (i, part) in parts.iter().enumerate() {
        if i + 1 == parts.len() {
            cur.insert((*part).to_owned(), value);
            return Ok(());
        }
        cur = cur
            .entry((*part).to_owned())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()))
            .as_table_mut()
            .ok_or_else(|| format!("override {key}: {part} is not a table"))?;
    }
    Err(format!("override {assignment:?} has an empty key"))
}

/// One setting that differs between the config a checkpoint was written with and the config a
/// run resumes with. Values are TOML (`None`: the key is absent on that side).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConfigChange {
    pub key: String,
    pub from: Option<String>,
    pub to: Option<String>,
}

impl ConfigChange {
    /// Keys (or key prefixes, ending in `.`) whose change leaves what is trained alone: how a
    /// run is described, logged, checkpointed and evaluated, and where it runs.
    /// (`parallel.shard_head` computes the same loss, sharded or not; `parallel.overlap` the same
    /// gradient sums.)
    const FREE: [&'static str; 9] =
        ["description", "threads", "device", "log.", "checkpoint.", "eval.", "parallel.shard_head", "parallel.overlap", "model.init"];

    /// Whether the change alters the training (the data, model, loss, optimiser or schedule).
    pub fn alters_training(&self) -> bool {
        !Self::FREE.iter().any(|f| if f.ends_with('.') { self.key.starts_with(f) } else { self.key == *f })
    }
}

impl std::fmt::Display for ConfigChange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let side = |v: &Option<String>| v.clone().unwrap_or_else(|| "(unset)".into());
        write!(f, "{} {} -> {}", self.key, side(&self.from), side(&self.to))
    }
}

/// The settings that differ between two resolved configs (TOML texts as [`Config::to_toml`]
/// writes them), by dotted key, in key order. Arrays are compared whole.
pub fn config_changes(from: &str, to: &str) -> std::result::Result<Vec<ConfigChange>, String> {
    fn flatten(prefix: &str, table: &toml::Table, out: &mut std::collections::BTreeMap<String, String>) {
        for (k, v) in table {
            let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
            match v {
                toml::Value::Table(t) => flatten(&key, t, out),
                other => {
                    out.insert(key, other.to_string());
                }
            }
        }
    }
    let parse = |text: &str| -> std::result::Result<_, String> {
        let table: toml::Table = toml::from_str(text).map_err(|e| format!("reading a config: {e}"))?;
        let mut flat = std::collections::BTreeMap::new();
        flatten("", &table, &mut flat);
        Ok(flat)
    };
    let (a, b) = (parse(from)?, parse(to)?);
    let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    Ok(keys
        .into_iter()
        .filter(|k| a.get(*k) != b.get(*k))
        .map(|k| ConfigChange { key: k.clone(), from: a.get(k).cloned(), to: b.get(k).cloned() })
        .collect())
}

/// A schedule's unit and length as written: `("epochs", 10)` or `("steps", 500)`.
fn schedule_unit(table: &toml::Table) -> Option<(&'static str, i64)> {
    let schedule = table.get("schedule")?.as_table()?;
    ["epochs", "steps"].into_iter().find_map(|unit| Some((unit, schedule.get(unit)?.as_integer()?)))
}

/// Refuses overrides that switch the schedule from `before` (its unit as written) to another
/// unit in `table` while the milestones, written in the old unit, are left as they are: `[6, 9]`
/// epochs would silently become steps 6 and 9, dropping the rate 100x within the first ten steps.
fn check_milestone_unit(before: Option<(&'static str, i64)>, table: &toml::Table) -> std::result::Result<(), String> {
    let (Some((old_unit, old_len)), Some((new_unit, new_len))) = (before, schedule_unit(table)) else { return Ok(()) };
    let milestones: Vec<i64> = table
        .get("schedule")
        .and_then(|s| s.get("milestones"))
        .and_then(toml::Value::as_array)
        .map(|a| a.iter().filter_map(toml::Value::as_integer).collect())
        .unwrap_or_default();
    if old_unit == new_unit || milestones.is_empty() {
        return Ok(());
    }
    let scaled: Vec<String> = milestones.iter().map(|m| (m * new_len / old_len.max(1)).to_string()).collect();
    Err(format!(
        "--set changes the schedule from {old_unit} (schedule.{old_unit} = {old_len}) to {new_unit} \
         (schedule.{new_unit} = {new_len}), but schedule.milestones {milestones:?} count {old_unit}: \
         give them in {new_unit} too, e.g. --set \"schedule.milestones=[{}]\" (the same fractions of \
         the run), or --set \"schedule.milestones=[]\" for none",
        scaled.join(", ")
    ))
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    const MINIMAL: &str = r#"
[data]
kind = "mnist"
dir = "nowhere"
[model.backbone]
name = "lenet_pp"
[loss]
lambda = 0.01
alpha = 0.5
[optim]
lr = 0.05
batch_size = 128
[schedule]
steps = 640
"#;

    fn error_of(overrides: &[&str]) -> String {
        let overrides: Vec<String> = overrides.iter().map(|s| s.to_string()).collect();
        Config::parse(MINIMAL, Path::new("x.toml"), &overrides).unwrap_err().to_string()
    }

    #[test]
    fn a_setting_turned_back_to_its_default_is_recorded_with_the_default() {
        // Resolved configs spell out the defaults of [parallel], so a resume that turns
        // shard_head off records `true -> false`, not `true -> (unset)`.
        let with = |sets: &[&str]| {
            let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
            let mut text: toml::Table = toml::from_str(MINIMAL).unwrap();
            for s in &sets {
                apply_override(&mut text, s).unwrap();
            }
            // Parsed without validation (the data folder does not exist), then written back.
            toml::from_str::<Config>(&toml::to_string(&text).unwrap()).unwrap().to_toml()
        };
        let changes = config_changes(&with(&["parallel.shard_head=true"]), &with(&[])).unwrap();
        let shown: Vec<String> = changes.iter().map(ToString::to_string).collect();
        assert_eq!(shown, ["parallel.shard_head true -> false"]);
        let changes = config_changes(&with(&["optim.backbone_lr_mult=0.1"]), &with(&[])).unwrap();
        assert_eq!(changes[0].to.as_deref(), Some("1.0"), "{changes:?}");
    }

    #[test]
    fn a_misspelt_key_inside_a_plug_table_is_reported_at_its_own_line() {
        // Lines of MINIMAL: 1 is empty, [model.backbone] is 5, [loss] 7, lambda 8, alpha 9.
        let cases = [
            (MINIMAL.replace("alpha = 0.5", "alpah = 0.5"), "alpah", 9),
            (MINIMAL.replace("name = \"lenet_pp\"", "name = \"lenet_pp\"\nfeature_dimm = 2"), "feature_dimm", 7),
            (MINIMAL.replace("lambda = 0.01", "lambda = \"high\""), "lambda", 8),
        ];
        for (text, key, line) in cases {
            let msg = Config::parse(&text, Path::new("x.toml"), &[]).unwrap_err().to_string();
            assert!(msg.contains(&format!("at line {line}, column 1")), "{key}: {msg}");
            assert!(msg.contains(&format!("{line} | {key} =")) && msg.contains(key), "{key}: {msg}");
        }
        // The same as a key of a plain section is reported: [optim] at its own line too.
        let msg = Config::parse(&MINIMAL.replace("lr = 0.05", "lr = 0.05\nmomentun = 0.9"), Path::new("x.toml"), &[]).unwrap_err().to_string();
        assert!(msg.contains("at line 12, column 1") && msg.contains("momentun"), "{msg}");
    }

    #[test]
    fn clip_and_log_settings_are_checked_with_their_key() {
        for bad in ["optim.clip_grad_norm=0", "optim.clip_grad_norm=-1", "optim.clip_grad_norm=nan"] {
            let msg = error_of(&[bad]);
            assert!(msg.contains("x.toml") && msg.contains("optim.clip_grad_norm must be > 0"), "{bad}: {msg}");
        }
        assert!(error_of(&["log.every_steps=0"]).contains("log.every_steps must be at least 1"));
        // Valid settings get as far as the data check.
        let msg = error_of(&["optim.clip_grad_norm=5", "schedule.warmup_steps=128"]);
        assert!(msg.contains("data.dir"), "{msg}");
    }

    #[test]
    fn switching_the_schedule_unit_needs_milestones_in_the_new_unit() {
        let epochs = MINIMAL.replace("steps = 640", "epochs = 10\nmilestones = [6, 9]");
        let parse = |overrides: &[&str]| {
            let overrides: Vec<String> = overrides.iter().map(|s| s.to_string()).collect();
            Config::parse(&epochs, Path::new("x.toml"), &overrides).unwrap_err().to_string()
        };
        // The documented way to shorten a run would turn epochs 6 and 9 into steps 6 and 9.
        let msg = parse(&["schedule.epochs=", "schedule.steps=500"]);
        assert!(msg.contains("x.toml") && msg.contains("schedule.milestones [6, 9] count epochs"), "{msg}");
        assert!(msg.contains("schedule.milestones=[300, 450]"), "the same fractions of 500 steps: {msg}");
        // Giving the milestones (or none), or keeping the unit, passes this check (and stops
        // at the data check, which comes later).
        for ok in [
            &["schedule.epochs=", "schedule.steps=500", "schedule.milestones=[300, 450]"][..],
            &["schedule.epochs=", "schedule.steps=500", "schedule.milestones=[]"],
            &["schedule.epochs=20"],
        ] {
            let msg = parse(ok);
            assert!(msg.contains("data.dir"), "{ok:?}: {msg}");
        }
    }

    #[test]
    fn config_changes_name_each_key_and_tell_training_from_bookkeeping() {
        let from = "seed = 1\n[loss]\nlambda = 0.01\nalpha = 0.5\n[log]\nevery_steps = 5\n";
        let to = "seed = 1\nthreads = 2\n[loss]\nlambda = 0.5\nalpha = 0.5\n[log]\nevery_steps = 9\n";
        let changes = config_changes(from, to).unwrap();
        let shown: Vec<String> = changes.iter().map(ToString::to_string).collect();
        assert_eq!(shown, ["log.every_steps 5 -> 9", "loss.lambda 0.01 -> 0.5", "threads (unset) -> 2"]);
        let altering: Vec<&str> = changes.iter().filter(|c| c.alters_training()).map(|c| c.key.as_str()).collect();
        assert_eq!(altering, ["loss.lambda"]);
        assert!(config_changes(from, from).unwrap().is_empty());
    }

    #[test]
    fn lfw_folds_that_can_only_fail_after_training_are_refused_up_front() {
        // Any existing paths do for this check.
        let here = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        let lfw = |folds: Vec<usize>| LfwEvalConfig {
            images: here.clone(),
            landmarks: here.join("Cargo.toml"),
            pairs: here.join("Cargo.toml"),
            folds,
            pca: 0,
            subtract_mean: false,
            flip: true,
            identification: false,
            open_set: false,
            cache_dir: PathBuf::from("data/cache"),
            batch_size: 8,
        };
        let msg = lfw(vec![1]).validate().unwrap_err();
        assert!(msg.contains("eval.lfw.folds = [1]") && msg.contains("at least 2 folds"), "{msg}");
        let msg = lfw(vec![1, 3, 1]).validate().unwrap_err();
        assert!(msg.contains("fold 1 is listed twice"), "{msg}");
        for ok in [vec![], vec![1, 2], vec![10, 3, 5]] {
            assert_eq!(lfw(ok.clone()).validate(), Ok(()), "{ok:?}");
        }
        // PCA to more dimensions than the features have (LeNets++: 2, 4 with the mirror).
        let paths = [
            format!("eval.lfw.images={}", here.display()),
            format!("eval.lfw.landmarks={}", here.join("Cargo.toml").display()),
            format!("eval.lfw.pairs={}", here.join("Cargo.toml").display()),
        ];
        let with = |extra: &str| {
            let mut o: Vec<&str> = paths.iter().map(String::as_str).collect();
            o.push(extra);
            error_of(&o)
        };
        let msg = with("eval.lfw.pca=5");
        assert!(msg.contains("eval.lfw.pca = 5: the features have 4 dimensions"), "{msg}");
        assert!(with("eval.lfw.pca=4").contains("data.dir"), "4 fits; the data check comes next");
    }
}
