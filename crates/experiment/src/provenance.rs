//! Resuming a run as it was trained: a resume whose config (or `--set`) changes what is trained
//! is refused unless allowed, and every change, allowed or free, is recorded with the step it
//! takes effect in `<run>/changes.jsonl`.

use std::path::{Path, PathBuf};

use serde_json::Map;

use facerec_core::metrics::JsonLines;
use facerec_train::Trainer;

use crate::config::{config_changes, Config, ConfigChange};
use crate::error::{ExperimentError, Result};
use crate::run_dir::RunDir;

/// Loads the newest valid checkpoint of `run` into `trainer`, if there is one, and returns its
/// path. Refuses a checkpoint trained with other settings that alter training unless
/// `allow_changes`; records every change in [`RunDir::changes`] (rank 0).
pub fn resume(trainer: &mut Trainer, run: &RunDir, allow_changes: bool) -> Result<Option<PathBuf>> {
    let Some(ck) = trainer.latest_checkpoint()? else { return Ok(None) };
    trainer.check_resumable(&ck)?;
    let bad = |msg: String| ExperimentError::Checkpoint { path: ck.path.clone(), msg };
    let changes = config_changes(&normalised(&ck.config), &trainer.config().resolved).map_err(bad)?;
    let altering: Vec<String> = changes.iter().filter(|c| c.alters_training()).map(ToString::to_string).collect();
    if !altering.is_empty() && !allow_changes {
        return Err(bad(format!(
            "the run was trained with other settings ({}): resume it as it was trained (its \
             config.toml, without those --set), or allow the change (facerec train --allow-changes), \
             which records it in changes.jsonl",
            altering.join(", ")
        )));
    }
    let (path, step) = (ck.path.clone(), ck.state.step);
    trainer.restore(ck)?;
    if trainer.is_main() {
        record_changes(&run.changes(), step, &changes)?;
    }
    for c in &changes {
        tracing::warn!(step, "resuming with a changed setting: {c}");
    }
    Ok(Some(path))
}

/// A checkpoint's config as this version of facerec writes it (defaults it did not write then,
/// like `loss.name`, filled in), so that only real changes differ; the text as stored when it
/// no longer parses.
fn normalised(stored: &str) -> String {
    toml::from_str::<Config>(stored).map(|c| c.to_toml()).unwrap_or_else(|_| stored.to_owned())
}

/// Keeps the records of `path` made before `step` and appends `changes` at `step` (a record at
/// or past `step` belongs to a resume whose later part was lost, or is the same change being
/// recorded again). No checkpoint is at step 0, so `step - 1` is the last step kept.
fn record_changes(path: &Path, step: usize, changes: &[ConfigChange]) -> Result<()> {
    JsonLines::truncate_after(path, step.saturating_sub(1))?;
    if changes.is_empty() {
        return Ok(());
    }
    let mut log = JsonLines::open(path)?;
    for c in changes {
        let mut r = Map::new();
        r.insert("step".into(), step.into());
        r.insert("key".into(), c.key.clone().into());
        r.insert("from".into(), c.from.clone().into());
        r.insert("to".into(), c.to.clone().into());
        log.write(&r)?;
    }
    Ok(())
}
