//! TensorBoard event files (`events.out.tfevents.*`), written without TensorFlow: TFRecord
//! framing (length, masked CRC-32C of the length, the bytes, masked CRC-32C of the bytes) around
//! `Event` protocol buffers carrying scalar summaries. `tensorboard --logdir runs/` shows them.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::error::{Result, TrainError};

/// CRC-32C (Castagnoli), from the `crc32c` crate: the CPU's CRC instruction where it has one
/// (SSE 4.2 on x86-64, detected at run time), else a table-driven software version.
fn crc32c(data: &[u8]) -> u32 {
    ::crc32c::crc32c(data)
}

fn masked_crc(data: &[u8]) -> u32 {
    let c = crc32c(data);
    (c.rotate_right(15)).wrapping_add(0xa282_ead8)
}

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn field_bytes(out: &mut Vec<u8>, field: u32, bytes: &[u8]) {
    varint(out, u64::from(field << 3 | 2));
    varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// An `Event` with wall time, step and either a file version or one scalar summary.
fn event(step: i64, file_version: Option<&str>, scalar: Option<(&str, f32)>) -> Vec<u8> {
    let wall = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0);
    let mut e = Vec::new();
    varint(&mut e, 1 << 3 | 1); // wall_time: double
    e.extend_from_slice(&wall.to_le_bytes());
    varint(&mut e, 2 << 3); // step: int64
    varint(&mut e, step as u64);
    if let Some(v) = file_version {
        field_bytes(&mut e, 3, v.as_bytes());
    }
    if let Some((tag, value)) = scalar {
        let mut val = Vec::new();
        field_bytes(&mut val, 1, tag.as_bytes()); // Summary.Value.tag
        varint(&mut val, 2 << 3 | 5); // simple_value: float
        val.extend_from_slice(&value.to_le_bytes());
        let mut summary = Vec::new();
        field_bytes(&mut summary, 1, &val); // Summary.value
        field_bytes(&mut e, 5, &summary); // Event.summary
    }
    e
}

/// One event file, appended to as training goes.
#[derive(Debug)]
pub struct EventWriter {
    path: PathBuf,
    file: File,
}

impl EventWriter {
    /// A new event file in `dir` (one per process start, as TensorFlow does).
    pub fn create(dir: &Path) -> Result<Self> {
        let secs = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        let path = dir.join(format!("events.out.tfevents.{secs}.facerec.{}", std::process::id()));
        let file = OpenOptions::new().create(true).append(true).open(&path).map_err(|e| TrainError::io(&path, e))?;
        let mut w = EventWriter { path, file };
        w.record(&event(0, Some("brain.Event:2"), None))?;
        Ok(w)
    }

    fn record(&mut self, data: &[u8]) -> Result<()> {
        let len = (data.len() as u64).to_le_bytes();
        let mut buf = Vec::with_capacity(data.len() + 16);
        buf.extend_from_slice(&len);
        buf.extend_from_slice(&masked_crc(&len).to_le_bytes());
        buf.extend_from_slice(data);
        buf.extend_from_slice(&masked_crc(data).to_le_bytes());
        self.file.write_all(&buf).map_err(|e| TrainError::io(&self.path, e))
    }

    /// Adds the scalar `tag` at `step`.
    pub fn scalar(&mut self, tag: &str, step: usize, value: f64) -> Result<()> {
        self.record(&event(step as i64, None, Some((tag, value as f32))))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_known_value() {
        // RFC 3720 test vector: 32 bytes of zeros -> 0x8a9136aa
        assert_eq!(crc32c(&[0u8; 32]), 0x8a91_36aa);
        assert_eq!(crc32c(b"123456789"), 0xe306_9283);
    }
}
