//! TensorBoard event files (`events.out.tfevents.*`), written without TensorFlow: TFRecord
//! framing (length, masked CRC-32C of the length, the bytes, masked CRC-32C of the bytes) around
//! `Event` protocol buffers carrying scalar summaries. `tensorboard --logdir runs/` shows them.
//! A resumed run first drops the events past its checkpoint's step ([`truncate_after`]), as it
//! does with the JSON-lines metrics.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::error::{Result, TrainError};

/// Every event file's name starts with this (TensorBoard finds them by it).
pub const FILE_PREFIX: &str = "events.out.tfevents.";

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

/// Appends `data` to `out` as one TFRecord.
fn frame(out: &mut Vec<u8>, data: &[u8]) {
    let len = (data.len() as u64).to_le_bytes();
    out.extend_from_slice(&len);
    out.extend_from_slice(&masked_crc(&len).to_le_bytes());
    out.extend_from_slice(data);
    out.extend_from_slice(&masked_crc(data).to_le_bytes());
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
        let path = dir.join(format!("{FILE_PREFIX}{secs}.facerec.{}", std::process::id()));
        let file = OpenOptions::new().create(true).append(true).open(&path).map_err(|e| TrainError::io(&path, e))?;
        let mut w = EventWriter { path, file };
        w.record(&event(0, Some("brain.Event:2"), None))?;
        Ok(w)
    }

    fn record(&mut self, data: &[u8]) -> Result<()> {
        let mut buf = Vec::with_capacity(data.len() + 16);
        frame(&mut buf, data);
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

/// The event files in `dir`, sorted by name (none if `dir` cannot be read).
pub fn event_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_file() && p.file_name().is_some_and(|n| n.to_string_lossy().starts_with(FILE_PREFIX)))
        .collect();
    files.sort();
    files
}

/// Splits a TFRecord file into its records, stopping at the first one that is cut short or
/// fails its checksums (only a crash mid-write leaves one).
fn records(bytes: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut rest = bytes;
    while rest.len() >= 12 {
        let (len_bytes, tail) = rest.split_at(8);
        if masked_crc(len_bytes).to_le_bytes() != tail[..4] {
            break;
        }
        let len = u64::from_le_bytes(len_bytes.try_into().unwrap_or_default());
        let Some(end) = usize::try_from(len).ok().and_then(|l| l.checked_add(16)).filter(|&e| e <= rest.len()) else {
            break;
        };
        let data = &rest[12..end - 4];
        if masked_crc(data).to_le_bytes() != rest[end - 4..end] {
            break;
        }
        out.push(data);
        rest = &rest[end..];
    }
    out
}

fn read_varint(bytes: &mut &[u8]) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let (&b, rest) = bytes.split_first()?;
        *bytes = rest;
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

/// The `step` of an `Event` (0 when absent, as protobuf defaults it); `None` if it does not parse.
fn event_step(mut bytes: &[u8]) -> Option<i64> {
    let mut step = 0;
    while !bytes.is_empty() {
        let key = read_varint(&mut bytes)?;
        let skip = match key & 7 {
            0 => {
                let v = read_varint(&mut bytes)?;
                if key >> 3 == 2 {
                    step = v as i64;
                }
                0
            }
            1 => 8,
            2 => usize::try_from(read_varint(&mut bytes)?).ok()?,
            5 => 4,
            _ => return None,
        };
        bytes = bytes.get(skip..)?;
    }
    Some(step)
}

/// Rewrites the event files of `dir` keeping only the events of steps up to `step` (a record
/// that is cut short or does not parse is dropped too). Files with nothing to drop are left
/// untouched.
pub fn truncate_after(dir: &Path, step: usize) -> Result<()> {
    for path in event_files(dir) {
        let bytes = std::fs::read(&path).map_err(|e| TrainError::io(&path, e))?;
        let all = records(&bytes);
        let kept: Vec<&[u8]> = all
            .iter()
            .copied()
            .filter(|r| event_step(r).is_some_and(|s| usize::try_from(s).is_ok_and(|s| s <= step)))
            .collect();
        let whole: usize = all.iter().map(|r| r.len() + 16).sum();
        if kept.len() == all.len() && whole == bytes.len() {
            continue;
        }
        let mut out = Vec::with_capacity(bytes.len());
        for r in kept {
            frame(&mut out, r);
        }
        facerec_core::fsutil::atomic_write_bytes(&path, &out)?;
    }
    Ok(())
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

    #[test]
    fn truncation_keeps_the_events_up_to_a_step_and_drops_a_torn_tail() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| TrainError::io("tempdir", e))?;
        let mut w = EventWriter::create(dir.path())?;
        for step in 1..=10 {
            w.scalar("train/loss", step, 1.0 / step as f64)?;
        }
        let path = w.path().to_path_buf();
        drop(w);
        let steps = |p: &Path| -> Vec<i64> {
            let bytes = std::fs::read(p).unwrap_or_default();
            records(&bytes).iter().map(|r| event_step(r).unwrap_or(-1)).collect()
        };
        assert_eq!(steps(&path), (0..=10).collect::<Vec<_>>(), "file version at step 0, then the scalars");
        let before = std::fs::read(&path).map_err(|e| TrainError::io(&path, e))?;

        truncate_after(dir.path(), 10)?;
        assert_eq!(std::fs::read(&path).ok(), Some(before.clone()), "nothing past step 10: untouched");

        // A crash mid-write leaves half a record.
        let mut torn = before.clone();
        torn.extend_from_slice(&before[before.len() - 30..before.len() - 10]);
        std::fs::write(&path, &torn).map_err(|e| TrainError::io(&path, e))?;
        truncate_after(dir.path(), 6)?;
        assert_eq!(steps(&path), (0..=6).collect::<Vec<_>>());
        let after = std::fs::read(&path).map_err(|e| TrainError::io(&path, e))?;
        assert!(before.starts_with(&after), "the kept records are unchanged");
        assert_eq!(event_files(dir.path()), vec![path]);
        Ok(())
    }
}
