//! Checkpoints: everything an exact resume needs, in one safetensors file per save under
//! `<run>/checkpoints/step-<step>.safetensors`:
//! - every model variable (`backbone.*`, `head.*`, the center table `center.centers`),
//! - the optimiser's state (`<slot>.<parameter name>`: SGD's `momentum.*`, AdamW's `exp_avg.*`,
//!   `exp_avg_sq.*` and `step.*`; see [`crate::optim`]),
//! - in the metadata: the [`TrainState`] (step, epoch, position in the epoch, the epoch's and
//!   the logging interval's running sums), the world size and the config it was trained with
//!   (which holds the seed).
//!
//! Files are written atomically (temporary file, fsync, rename) and carry a checksum; loading
//! the latest falls back to the previous one when the newest is corrupt. The data order is a
//! function of `(seed, epoch)` and the learning rate of the step, so no RNG state is stored.
//! Checkpoints hold global state only, so any number of processes can resume from one.

use facerec_core::run_files;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tch::Tensor;

use facerec_model::weights;

use crate::error::{Result, TrainError};

/// Format tag in the metadata.
pub const FORMAT: &str = "facerec-checkpoint-1";

/// Where training is.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TrainState {
    /// Steps done.
    pub step: usize,
    /// Current epoch (0-based).
    pub epoch: usize,
    /// Samples of this epoch already consumed (over all ranks).
    pub samples_in_epoch: usize,
    /// Running sums over this epoch, for the epoch's mean loss and accuracy.
    pub epoch_loss_sum: f64,
    pub epoch_correct: f64,
    pub epoch_seen: f64,
    /// Seconds of training so far.
    pub elapsed_s: f64,
    /// Sums over the steps since the last line of `steps.jsonl` (each line reports their means).
    #[serde(default)]
    pub log_window: LogWindow,
}

/// Running sums over the steps of one logging interval.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LogWindow {
    pub steps: usize,
    pub loss: f64,
    /// Sums of the loss's terms by name (`softmax_loss`, `center_loss`, ...).
    #[serde(flatten)]
    pub terms: BTreeMap<String, f64>,
    pub correct: f64,
    pub seen: f64,
    /// Sum of the steps' gradient norms (before clipping).
    #[serde(default)]
    pub grad_norm: f64,
}

/// A loaded checkpoint.
#[derive(Debug)]
pub struct Checkpoint {
    pub path: PathBuf,
    pub state: TrainState,
    /// Model variables by name.
    pub model: Vec<(String, Tensor)>,
    /// The optimiser's state, `<slot>.<parameter name>`.
    pub optimizer: Vec<(String, Tensor)>,
    /// The config TOML the run was started with.
    pub config: String,
    pub world_size: usize,
    /// The classes of its classifier (absent from checkpoints of older versions).
    pub num_classes: Option<i64>,
}

/// The checkpoint folder of a run.
pub fn dir(run_dir: &Path) -> PathBuf {
    run_dir.join(run_files::CHECKPOINTS)
}

/// The file a checkpoint of `step` is written to.
pub fn path(run_dir: &Path, step: usize) -> PathBuf {
    dir(run_dir).join(file_name(step))
}

fn file_name(step: usize) -> String {
    format!("step-{step:08}.safetensors")
}

/// What a checkpoint holds of a run.
#[derive(Debug)]
pub struct Contents<'a> {
    pub state: &'a TrainState,
    /// Model variables by name (class-sharded tables whole).
    pub model: &'a [(String, Tensor)],
    /// The optimiser's state, `<slot>.<parameter name>`.
    pub optimizer: &'a [(String, Tensor)],
    /// The classes of the classifier.
    pub num_classes: i64,
}

/// Writes a checkpoint of `contents` and deletes all but the newest `keep`.
pub fn save(run_dir: &Path, contents: &Contents<'_>, config_toml: &str, world_size: usize, keep: usize) -> Result<PathBuf> {
    let Contents { state, model, optimizer, num_classes } = contents;
    let dir = dir(run_dir);
    std::fs::create_dir_all(&dir).map_err(|e| TrainError::io(&dir, e))?;
    let mut tensors: Vec<(String, Tensor)> = model.iter().map(|(k, v)| (k.clone(), v.shallow_clone())).collect();
    tensors.extend(optimizer.iter().map(|(k, v)| (k.clone(), v.shallow_clone())));
    let metadata = BTreeMap::from([
        ("format".to_owned(), FORMAT.to_owned()),
        ("state".to_owned(), serde_json::to_string(state).unwrap_or_default()),
        ("config".to_owned(), config_toml.to_owned()),
        ("world_size".to_owned(), world_size.to_string()),
        ("num_classes".to_owned(), num_classes.to_string()),
    ]);
    let bytes = weights::to_bytes(&tensors, &metadata)?;
    let path = dir.join(file_name(state.step));
    facerec_core::fsutil::atomic_write_bytes(&path, &bytes)?;
    for (_, old) in list(run_dir).into_iter().skip(keep) {
        if let Err(e) = std::fs::remove_file(&old) {
            tracing::warn!("cannot remove old checkpoint {}: {e}", old.display());
        }
    }
    Ok(path)
}

/// Removes temporary files a killed save left behind (`.step-*.tmp-<pid>`).
pub fn clean_temporaries(run_dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir(run_dir)) else { return };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with(".step-") && name.contains(".tmp-") {
            tracing::info!("removing {} left by an interrupted save", e.path().display());
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// Checkpoints of a run, newest first.
pub fn list(run_dir: &Path) -> Vec<(usize, PathBuf)> {
    let Ok(entries) = std::fs::read_dir(dir(run_dir)) else {
        return Vec::new();
    };
    let mut found: Vec<(usize, PathBuf)> = entries
        .filter_map(|e| {
            let path = e.ok()?.path();
            let name = path.file_name()?.to_str()?;
            let step = name.strip_prefix("step-")?.strip_suffix(".safetensors")?.parse().ok()?;
            Some((step, path))
        })
        .collect();
    found.sort_by_key(|f| std::cmp::Reverse(f.0));
    found
}

/// Reads and verifies one checkpoint file.
pub fn load(path: &Path) -> Result<Checkpoint> {
    let bad = |msg: String| TrainError::Checkpoint { path: path.to_path_buf(), msg };
    let (tensors, meta) = weights::load(path).map_err(|e| bad(e.to_string()))?;
    if meta.get("format").map(String::as_str) != Some(FORMAT) {
        return Err(bad(format!("not a facerec checkpoint (format {:?}, expected {FORMAT})", meta.get("format"))));
    }
    let state: TrainState = serde_json::from_str(meta.get("state").map(String::as_str).unwrap_or(""))
        .map_err(|e| bad(format!("bad training state: {e}")))?;
    let world_size = meta.get("world_size").and_then(|w| w.parse().ok()).unwrap_or(1);
    let (optimizer, model): (Vec<_>, Vec<_>) = tensors.into_iter().partition(|(k, _)| crate::optim::state_parameter(k).is_some());
    Ok(Checkpoint {
        path: path.to_path_buf(),
        state,
        model,
        optimizer,
        config: meta.get("config").cloned().unwrap_or_default(),
        world_size,
        num_classes: meta.get("num_classes").and_then(|n| n.parse().ok()),
    })
}

/// The newest checkpoint of a run that loads and verifies; corrupt ones are reported and
/// skipped. `None` when the run has no checkpoint at all.
pub fn latest_valid(run_dir: &Path) -> Result<Option<Checkpoint>> {
    let all = list(run_dir);
    let mut failures = Vec::new();
    for (_, path) in &all {
        match load(path) {
            Ok(ck) => {
                for f in &failures {
                    tracing::warn!("skipped corrupt checkpoint: {f}");
                }
                return Ok(Some(ck));
            }
            Err(e) => failures.push(e.to_string()),
        }
    }
    if all.is_empty() {
        Ok(None)
    } else {
        Err(TrainError::Checkpoint {
            path: dir(run_dir),
            msg: format!("no checkpoint could be loaded: {}", failures.join("; ")),
        })
    }
}
