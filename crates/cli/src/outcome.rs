//! How a command ended, for scripts: exit codes, and the file a diverged run leaves behind so
//! that `facerec summary` can say what happened to it.

use std::path::Path;

use anyhow::Context;
use serde::{Deserialize, Serialize};

use facerec_train::TrainError;

/// Exit code of `facerec train` when the run diverged (a non-finite loss or weight).
pub const EXIT_DIVERGED: u8 = 3;

/// Exit code of `facerec compare` when the faces are of different people (0: the same person;
/// 1 is any error, 2 clap's usage errors).
pub const EXIT_DIFFERENT: u8 = 4;

/// The exit code for an error: [`EXIT_DIVERGED`] when a divergence is anywhere in its chain,
/// 1 otherwise.
pub fn exit_code(error: &anyhow::Error) -> u8 {
    let diverged = error.chain().any(|e| matches!(e.downcast_ref::<TrainError>(), Some(TrainError::Diverged { .. })));
    if diverged {
        EXIT_DIVERGED
    } else {
        1
    }
}

/// `<run>/diverged.json`: the step at which a run diverged, and the trainer's message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Diverged {
    pub step: usize,
    pub message: String,
}

impl Diverged {
    pub const FILE: &'static str = "diverged.json";

    pub fn write(&self, run_dir: &Path) -> anyhow::Result<()> {
        let path = run_dir.join(Self::FILE);
        facerec_data::fsutil::atomic_write_bytes(&path, serde_json::to_string_pretty(self)?.as_bytes())
            .with_context(|| format!("writing {}", path.display()))
    }

    /// The record of `run_dir`, if it diverged.
    pub fn read(run_dir: &Path) -> anyhow::Result<Option<Self>> {
        let path = run_dir.join(Self::FILE);
        if !path.is_file() {
            return Ok(None);
        }
        let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        Ok(Some(serde_json::from_str(&text).with_context(|| format!("{}: not a divergence record", path.display()))?))
    }
}
