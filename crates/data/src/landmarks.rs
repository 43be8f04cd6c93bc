//! Five-point facial landmarks (left eye, right eye, nose tip, left and right mouth corners)
//! and the tab-separated file that holds them, one image a row:
//! `relative/path  x1 y1 x2 y2 x3 y3 x4 y4 x5 y5  [score]`, lines starting with `#` ignored
//! (the format of `../shared/data/lfw/landmarks_5pt.tsv`).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::error::{DataError, Result};

/// Five `(x, y)` points in pixels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Landmarks(pub [[f32; 2]; 5]);

/// One row of a landmarks file.
#[derive(Debug, Clone, PartialEq)]
pub struct LandmarkEntry {
    pub landmarks: Landmarks,
    /// Detector confidence, when the file has one.
    pub score: Option<f32>,
}

/// What to do with bad rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnBad {
    /// Stop at the first bad row with an error naming file and line.
    #[default]
    Fail,
    /// Skip bad rows; they are returned with the parse result.
    Skip,
}

/// A parsed landmarks file.
#[derive(Debug, Default)]
pub struct LandmarkFile {
    pub entries: HashMap<PathBuf, LandmarkEntry>,
    /// Rows skipped under [`OnBad::Skip`], each an error naming file and line.
    pub skipped: Vec<DataError>,
}

impl LandmarkFile {
    /// Reads a landmarks file.
    pub fn read(path: &Path, on_bad: OnBad) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| DataError::io(path, e))?;
        Self::parse(&text, path, on_bad)
    }

    /// Parses landmarks text; `path` names it in errors.
    pub fn parse(text: &str, path: &Path, on_bad: OnBad) -> Result<Self> {
        let mut out = LandmarkFile::default();
        for (i, line) in text.lines().enumerate() {
            let line_no = i + 1;
            let trimmed = line.trim();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            match parse_row(trimmed) {
                Ok((rel, entry)) => {
                    if out.entries.insert(rel.clone(), entry).is_some() {
                        let err = DataError::line(path, line_no, format!("{} is listed twice", rel.display()));
                        if on_bad == OnBad::Fail {
                            return Err(err);
                        }
                        out.skipped.push(err);
                    }
                }
                Err(msg) => {
                    let err = DataError::line(path, line_no, msg);
                    match on_bad {
                        OnBad::Fail => return Err(err),
                        OnBad::Skip => out.skipped.push(err),
                    }
                }
            }
        }
        Ok(out)
    }

    /// Writes entries (sorted by path) in the same format, with a header line.
    pub fn write(path: &Path, entries: &[(PathBuf, LandmarkEntry)]) -> Result<()> {
        let mut sorted: Vec<&(PathBuf, LandmarkEntry)> = entries.iter().collect();
        sorted.sort_by(|a, b| a.0.cmp(&b.0));
        let mut text = String::from(
            "# image\tleft_eye_x\tleft_eye_y\tright_eye_x\tright_eye_y\tnose_x\tnose_y\t\
             mouth_left_x\tmouth_left_y\tmouth_right_x\tmouth_right_y\tscore\n",
        );
        for (p, e) in sorted {
            text.push_str(&p.to_string_lossy());
            for [x, y] in e.landmarks.0 {
                let _ = write!(text, "\t{x:.1}\t{y:.1}");
            }
            match e.score {
                Some(s) => {
                    let _ = writeln!(text, "\t{s:.3}");
                }
                None => text.push('\n'),
            }
        }
        Ok(facerec_core::fsutil::atomic_write_bytes(path, text.as_bytes())?)
    }
}

fn parse_row(line: &str) -> std::result::Result<(PathBuf, LandmarkEntry), String> {
    let fields: Vec<&str> = line.split('\t').map(str::trim).collect();
    // Tolerate space-separated files too, when the path has no spaces.
    let fields = if fields.len() == 1 { line.split_whitespace().collect() } else { fields };
    let numbers = fields.len().saturating_sub(1);
    if numbers != 10 && numbers != 11 {
        return Err(format!(
            "expected a path, 10 numbers for 5 landmarks and an optional score, got {numbers} numbers"
        ));
    }
    let path = fields[0];
    if path.is_empty() {
        return Err("empty image path".into());
    }
    let mut values = [0f32; 11];
    for (k, f) in fields[1..].iter().enumerate() {
        let v: f32 = f.parse().map_err(|_| format!("field {} ({f:?}) is not a number", k + 2))?;
        if !v.is_finite() {
            return Err(format!("field {} is {v}, expected a finite number", k + 2));
        }
        values[k] = v;
    }
    let mut pts = [[0f32; 2]; 5];
    for (j, p) in pts.iter_mut().enumerate() {
        *p = [values[2 * j], values[2 * j + 1]];
    }
    let score = (numbers == 11).then_some(values[10]);
    Ok((PathBuf::from(path), LandmarkEntry { landmarks: Landmarks(pts), score }))
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "# header\nA/A_0001.jpg\t98.4\t114.4\t148.9\t115.2\t116.9\t137.3\t101.1\t161.4\t145.4\t161.5\t0.941\n";

    #[test]
    fn parses_the_shared_format_and_round_trips() {
        let f = LandmarkFile::parse(GOOD, Path::new("l.tsv"), OnBad::Fail).unwrap();
        let e = &f.entries[Path::new("A/A_0001.jpg")];
        assert_eq!(e.landmarks.0[0], [98.4, 114.4]);
        assert_eq!(e.landmarks.0[4], [145.4, 161.5]);
        assert_eq!(e.score, Some(0.941));
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("out.tsv");
        LandmarkFile::write(&p, &[(PathBuf::from("A/A_0001.jpg"), e.clone())]).unwrap();
        let back = LandmarkFile::read(&p, OnBad::Fail).unwrap();
        assert_eq!(back.entries[Path::new("A/A_0001.jpg")], *e);
    }

    #[test]
    fn bad_rows_name_file_and_line_or_are_skipped() {
        let cases = [
            ("x.jpg\t1\t2\t3\n", "got 3 numbers"),
            ("x.jpg\t1\t2\t3\t4\t5\t6\t7\t8\t9\tten\n", "is not a number"),
            ("x.jpg\t1\t2\t3\t4\t5\t6\t7\t8\t9\tNaN\n", "finite"),
            ("x.jpg\t1\t2\t3\t4\t5\t6\t7\t8\t9\tinf\n", "finite"),
        ];
        for (row, expected) in cases {
            let text = format!("{GOOD}{row}");
            let err = LandmarkFile::parse(&text, Path::new("lm.tsv"), OnBad::Fail).unwrap_err().to_string();
            assert!(err.starts_with("lm.tsv:3: "), "{err}");
            assert!(err.contains(expected), "{err}");
            let f = LandmarkFile::parse(&text, Path::new("lm.tsv"), OnBad::Skip).unwrap();
            assert_eq!(f.entries.len(), 1);
            assert_eq!(f.skipped.len(), 1);
        }
        let dup = format!("{GOOD}{}", GOOD.lines().nth(1).unwrap());
        let err = LandmarkFile::parse(&dup, Path::new("lm.tsv"), OnBad::Fail).unwrap_err().to_string();
        assert!(err.contains("listed twice"), "{err}");
    }
}
