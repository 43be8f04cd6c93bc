//! The reports a run leaves in its directory, as types: written with serde and read back by
//! `facerec summary`, `compare` and `eval` the same way. (The LFW report is
//! `facerec_eval::lfw::LfwReport`.)

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use facerec_eval::clusters::ClusterStats;

use crate::error::{ExperimentError, Result};

/// `report.json` of an MNIST run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MnistRunReport {
    /// The config file the run was started from.
    pub config: PathBuf,
    /// `loss.lambda` and `loss.alpha`, for losses that have them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lambda: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alpha: Option<f64>,
    pub steps: usize,
    pub epochs: usize,
    pub train_seconds: f64,
    pub data_wait_seconds: f64,
    pub test_accuracy: f64,
    pub clusters: ClusterStats,
    pub scatter_png: PathBuf,
}

/// `diverged.json`: the step at which a run diverged, and the trainer's message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Diverged {
    pub step: usize,
    pub message: String,
}

/// Writes `value` as pretty JSON to `path`, atomically.
pub fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let json = serde_json::to_vec_pretty(value).map_err(|e| ExperimentError::io(path, e.into()))?;
    facerec_core::fsutil::atomic_write_bytes(path, &json).map_err(|e| ExperimentError::Run { path: path.to_path_buf(), msg: e.to_string() })
}

/// Reads a report written by [`write_json`]; `None` when there is no such file.
pub fn read_json<T: DeserializeOwned>(path: &Path) -> Result<Option<T>> {
    if !path.is_file() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(path).map_err(|e| ExperimentError::io(path, e))?;
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| ExperimentError::Run { path: path.to_path_buf(), msg: format!("not a facerec report: {e}") })
}
