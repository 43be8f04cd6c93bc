//! Metrics as JSON lines in the run directory: `steps.jsonl` (every `log.every_steps` steps)
//! and `metrics.jsonl` (each evaluation and epoch end). Each line is one flat JSON object with a
//! `step` field; a resumed run first drops the lines past its checkpoint's step.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use crate::error::{CoreError, Result};

fn io(path: &Path, error: std::io::Error) -> CoreError {
    CoreError::Io { path: path.to_path_buf(), error }
}

/// An append-only JSON-lines file.
#[derive(Debug)]
pub struct JsonLines {
    path: PathBuf,
    file: File,
}

impl JsonLines {
    /// Opens (creating) `path` for appending.
    pub fn open(path: &Path) -> Result<Self> {
        let file = OpenOptions::new().create(true).append(true).open(path).map_err(|e| io(path, e))?;
        Ok(JsonLines { path: path.to_path_buf(), file })
    }

    /// Appends one record and flushes it.
    pub fn write(&mut self, record: &Map<String, Value>) -> Result<()> {
        let mut line = serde_json::to_string(record).map_err(|e| io(&self.path, e.into()))?;
        line.push('\n');
        self.file.write_all(line.as_bytes()).map_err(|e| io(&self.path, e))
    }

    /// Rewrites `path` keeping only records whose `step` is at most `step` (and lines that
    /// do not parse are dropped: they can only be a line cut short by a crash).
    pub fn truncate_after(path: &Path, step: usize) -> Result<()> {
        if !path.exists() {
            return Ok(());
        }
        let kept: Vec<String> = read_records(path)?
            .into_iter()
            .filter(|r| r.get("step").and_then(Value::as_u64).is_some_and(|s| s as usize <= step))
            .map(|r| serde_json::to_string(&r).unwrap_or_default())
            .collect();
        let mut text = kept.join("\n");
        if !text.is_empty() {
            text.push('\n');
        }
        crate::fsutil::atomic_write_bytes(path, text.as_bytes())?;
        Ok(())
    }
}

/// Reads every record of a JSON-lines file, skipping lines that do not parse.
pub fn read_records(path: &Path) -> Result<Vec<Map<String, Value>>> {
    let file = File::open(path).map_err(|e| io(path, e))?;
    let mut out = Vec::new();
    for line in BufReader::new(file).lines() {
        let line = line.map_err(|e| io(path, e))?;
        if let Ok(Value::Object(map)) = serde_json::from_str(&line) {
            out.push(map);
        }
    }
    Ok(out)
}

/// Builds a record from `(key, number)` pairs.
pub fn record(fields: &[(&str, f64)]) -> Map<String, Value> {
    fields
        .iter()
        .map(|(k, v)| {
            let value = if v.fract() == 0.0 && v.abs() < 9e15 && (*k == "step" || *k == "epoch") {
                Value::from(*v as i64)
            } else {
                serde_json::Number::from_f64(*v).map(Value::Number).unwrap_or(Value::Null)
            };
            ((*k).to_owned(), value)
        })
        .collect()
}

/// The `kind` of `metrics.jsonl`'s record of the loss's terms ([`LossTerms`]).
pub const LOSS_TERMS: &str = "loss_terms";

/// One term of a training objective as `metrics.jsonl` records it: its `steps.jsonl` column
/// and its weight in the objective (`loss = sum weight * term`).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TermWeight {
    pub name: String,
    pub weight: f64,
}

/// The record of `metrics.jsonl` (`"kind": "loss_terms"`) that names the loss's terms and their
/// weights from `step` on: written when a run starts and each time it resumes (a resume may
/// change a weight, e.g. `--set loss.lambda=...`), read by the training plot.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LossTerms {
    pub kind: String,
    pub step: usize,
    pub terms: Vec<TermWeight>,
}

impl LossTerms {
    /// The record of `terms` (name, weight) from `step` on.
    pub fn new(step: usize, terms: impl IntoIterator<Item = (String, f64)>) -> Self {
        LossTerms { kind: LOSS_TERMS.to_owned(), step, terms: terms.into_iter().map(|(name, weight)| TermWeight { name, weight }).collect() }
    }

    /// The records of this kind among `records` (of `metrics.jsonl`), in order; a record of the
    /// kind that does not parse is skipped.
    pub fn find(records: &[Map<String, Value>]) -> Vec<LossTerms> {
        records
            .iter()
            .filter(|r| r.get("kind").and_then(Value::as_str) == Some(LOSS_TERMS))
            .filter_map(|r| serde_json::from_value(Value::Object(r.clone())).ok())
            .collect()
    }

    /// As a JSON-lines record.
    pub fn to_record(&self) -> Map<String, Value> {
        match serde_json::to_value(self) {
            Ok(Value::Object(map)) => map,
            _ => Map::new(),
        }
    }
}
