//! The IJB-B / IJB-C 1:1 verification release as insightface's `eval_ijbc.py` reads it
//! (`recognition/arcface_torch/eval_ijbc.py`: `read_template_media_list`,
//! `read_template_pair_list`, and the image list of `get_image_feature`):
//!
//! ```text
//! IJBC/loose_crop/1.jpg ...                      the face crops
//! IJBC/meta/ijbc_face_tid_mid.txt                image name, template id, media id
//! IJBC/meta/ijbc_name_5pts_score.txt             image name, x1 y1 ... x5 y5, detector score
//! IJBC/meta/ijbc_template_pair_label.txt         template id, template id, label (1 genuine, 0 impostor)
//! ```
//!
//! Columns are separated by spaces. The reference joins the first two files by row: row `i` of
//! the template list and row `i` of the image list are one image; here the two must name the
//! same image on each row (an error says which row does not). A pair naming a template that no
//! image belongs to is an error too (the reference would score it as template 0, or fail with
//! an `IndexError`). Every error names the file and line and says what was expected.
//!
//! The pair list of IJB-C holds 15.7 million lines: it is read line by line into template
//! indices (`u32`) and labels, 9 bytes a pair.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use crate::error::{DataError, Result};
use crate::landmarks::Landmarks;

/// The sets `eval_ijbc.py` knows (`--target`).
pub const SETS: [&str; 2] = ["IJBC", "IJBB"];

/// Where one IJB set's files are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IjbFiles {
    /// The set: `IJBC` or `IJBB`.
    pub name: String,
    /// `<dir>/loose_crop`: the images the image list names.
    pub images: PathBuf,
    /// `<dir>/meta/<name>_face_tid_mid.txt`.
    pub face_tid_mid: PathBuf,
    /// `<dir>/meta/<name>_template_pair_label.txt`.
    pub template_pair_label: PathBuf,
    /// `<dir>/meta/<name>_name_5pts_score.txt`.
    pub name_5pts_score: PathBuf,
}

impl IjbFiles {
    /// The files of set `name` (`IJBC` or `IJBB`, any case) in `dir`, or, without a name, of
    /// the one set whose template list `dir/meta` holds. Checks that they exist.
    pub fn in_dir(dir: &Path, name: Option<&str>) -> Result<Self> {
        let meta = dir.join("meta");
        let name = match name {
            Some(n) => {
                let upper = n.to_ascii_uppercase();
                if !SETS.contains(&upper.as_str()) {
                    return Err(DataError::Invalid(format!("unknown IJB set {n:?}: IJBC or IJBB")));
                }
                upper
            }
            None => {
                let found: Vec<&str> =
                    SETS.iter().copied().filter(|s| meta.join(format!("{}_face_tid_mid.txt", s.to_ascii_lowercase())).is_file()).collect();
                match found.as_slice() {
                    [one] => (*one).to_owned(),
                    [] => {
                        return Err(DataError::Missing {
                            path: meta.join("ijbc_face_tid_mid.txt"),
                            hint: format!(
                                " (nor {}: an IJB release has loose_crop/ and meta/<set>_face_tid_mid.txt, \
                                 meta/<set>_template_pair_label.txt, meta/<set>_name_5pts_score.txt for set ijbc or ijbb)",
                                meta.join("ijbb_face_tid_mid.txt").display()
                            ),
                        })
                    }
                    _ => return Err(DataError::Invalid(format!("{} holds both IJBC and IJBB: say which (--ijb-name)", meta.display()))),
                }
            }
        };
        let lower = name.to_ascii_lowercase();
        let files = IjbFiles {
            images: dir.join("loose_crop"),
            face_tid_mid: meta.join(format!("{lower}_face_tid_mid.txt")),
            template_pair_label: meta.join(format!("{lower}_template_pair_label.txt")),
            name_5pts_score: meta.join(format!("{lower}_name_5pts_score.txt")),
            name,
        };
        for path in [&files.face_tid_mid, &files.template_pair_label, &files.name_5pts_score] {
            if !path.is_file() {
                return Err(DataError::Missing { path: path.clone(), hint: " (a file of the IJB release's meta/ folder)".into() });
            }
        }
        Ok(files)
    }
}

/// `<set>_face_tid_mid.txt`: each row's image, template id and media id.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FaceTemplates {
    pub names: Vec<String>,
    pub templates: Vec<i64>,
    pub medias: Vec<i64>,
    /// The line each row was read from (1-based).
    pub lines: Vec<usize>,
}

/// `<set>_name_5pts_score.txt`: each row's image, five landmarks and detector score.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FacePoints {
    pub names: Vec<String>,
    pub landmarks: Vec<Landmarks>,
    pub scores: Vec<f32>,
    /// The line each row was read from (1-based).
    pub lines: Vec<usize>,
}

/// `<set>_template_pair_label.txt`, each template given as its index among the sorted
/// distinct template ids ([`IjbMeta::template_ids`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TemplatePairs {
    pub t1: Vec<u32>,
    pub t2: Vec<u32>,
    /// Label 1 (one person).
    pub genuine: Vec<bool>,
}

impl TemplatePairs {
    pub fn len(&self) -> usize {
        self.genuine.len()
    }

    pub fn is_empty(&self) -> bool {
        self.genuine.is_empty()
    }
}

/// The most fields of a line the files have (the image list's 12), and one more to see that a
/// line has too many.
const MAX_FIELDS: usize = 13;

/// Calls `each(line_number, fields, count)` for every line of `path` that holds anything
/// (blank lines are skipped, as pandas' `read_csv` skips them), fields split on spaces and tabs:
/// the first [`MAX_FIELDS`] of them, and how many the line has.
fn for_each_row(path: &Path, mut each: impl FnMut(usize, &[&str], usize) -> Result<()>) -> Result<()> {
    let file = File::open(path).map_err(|e| DataError::io(path, e))?;
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let mut buf = Vec::with_capacity(256);
    let mut line = 0usize;
    loop {
        buf.clear();
        let n = reader.read_until(b'\n', &mut buf).map_err(|e| DataError::io(path, e))?;
        if n == 0 {
            return Ok(());
        }
        line += 1;
        let text = std::str::from_utf8(&buf).map_err(|_| DataError::line(path, line, "not UTF-8 text"))?;
        let mut fields = [""; MAX_FIELDS];
        let mut count = 0;
        for (k, f) in text.split_ascii_whitespace().enumerate() {
            if k < MAX_FIELDS {
                fields[k] = f;
            }
            count = k + 1;
        }
        if count > 0 {
            each(line, &fields[..count.min(MAX_FIELDS)], count)?;
        }
    }
}

fn integer(path: &Path, line: usize, what: &str, field: &str) -> Result<i64> {
    field.parse().map_err(|_| DataError::line(path, line, format!("{what} {field:?} is not an integer")))
}

/// A float32 as numpy makes it from the text (`np.float32(float(field))`: parsed as a double,
/// then rounded).
fn number(path: &Path, line: usize, what: &str, field: &str) -> Result<f32> {
    match field.parse::<f64>() {
        Ok(v) if v.is_finite() && (v as f32).is_finite() => Ok(v as f32),
        _ => Err(DataError::line(path, line, format!("{what} {field:?} is not a number"))),
    }
}

/// Reads `<set>_face_tid_mid.txt`: `name template_id media_id` per line.
pub fn read_face_tid_mid(path: &Path) -> Result<FaceTemplates> {
    let mut out = FaceTemplates::default();
    for_each_row(path, |line, f, count| {
        if count != 3 {
            return Err(DataError::line(path, line, format!("expected 3 columns (image name, template id, media id), got {count}")));
        }
        out.templates.push(integer(path, line, "template id", f[1])?);
        out.medias.push(integer(path, line, "media id", f[2])?);
        out.names.push(f[0].to_owned());
        out.lines.push(line);
        Ok(())
    })?;
    Ok(out)
}

/// Reads `<set>_name_5pts_score.txt`: `name x1 y1 x2 y2 x3 y3 x4 y4 x5 y5 score` per line
/// (left eye, right eye, nose tip, left and right mouth corners, in the image's pixels).
pub fn read_name_5pts_score(path: &Path) -> Result<FacePoints> {
    let mut out = FacePoints::default();
    for_each_row(path, |line, f, count| {
        if count != 12 {
            return Err(DataError::line(
                path,
                line,
                format!("expected 12 columns (image name, 10 numbers for the 5 landmarks x1 y1 ... x5 y5, detector score), got {count}"),
            ));
        }
        let mut points = [[0f32; 2]; 5];
        for k in 0..10 {
            points[k / 2][k % 2] = number(path, line, &format!("landmark number {} (column {})", k + 1, k + 2), f[k + 1])?;
        }
        out.scores.push(number(path, line, "detector score (column 12)", f[11])?);
        out.landmarks.push(Landmarks(points));
        out.names.push(f[0].to_owned());
        out.lines.push(line);
        Ok(())
    })?;
    Ok(out)
}

/// Reads `<set>_template_pair_label.txt`: `template_id template_id label` per line, label 1
/// for one person and 0 for two; each template id must be in `index` (template id -> index),
/// the templates of `templates_file` (named in the error).
pub fn read_template_pairs(path: &Path, index: &HashMap<i64, u32>, templates_file: &Path) -> Result<TemplatePairs> {
    let mut out = TemplatePairs::default();
    for_each_row(path, |line, f, count| {
        if count != 3 {
            return Err(DataError::line(path, line, format!("expected 3 columns (template id, template id, label 1 or 0), got {count}")));
        }
        let mut t = [0u32; 2];
        for (k, slot) in t.iter_mut().enumerate() {
            let id = integer(path, line, "template id", f[k])?;
            *slot = *index.get(&id).ok_or_else(|| {
                DataError::line(path, line, format!("unknown template id {id}: no image of {} belongs to it", templates_file.display()))
            })?;
        }
        let genuine = match f[2] {
            "1" => true,
            "0" => false,
            other => return Err(DataError::line(path, line, format!("label {other:?} is not 1 (genuine) or 0 (impostor)"))),
        };
        out.t1.push(t[0]);
        out.t2.push(t[1]);
        out.genuine.push(genuine);
        Ok(())
    })?;
    Ok(out)
}

/// An IJB set's meta files, read and joined: image `i` is row `i` of both image files.
#[derive(Debug, Clone)]
pub struct IjbMeta {
    pub files: IjbFiles,
    /// Image names (relative to `files.images`), in the files' order: the order of image
    /// features.
    pub names: Vec<String>,
    pub landmarks: Vec<Landmarks>,
    /// The detector score of each image (`faceness_scores`).
    pub scores: Vec<f32>,
    /// The line of `name_5pts_score` each image is on (for errors about its image).
    pub lines: Vec<usize>,
    /// Each image's template, as its index into `template_ids`.
    pub template_of: Vec<u32>,
    /// Each image's media id.
    pub medias: Vec<i64>,
    /// The distinct template ids, sorted (`np.unique(templates)`).
    pub template_ids: Vec<i64>,
    pub pairs: TemplatePairs,
}

impl IjbMeta {
    /// Reads the three meta files of `files` and checks that they agree.
    pub fn read(files: &IjbFiles) -> Result<Self> {
        let t0 = std::time::Instant::now();
        let tid_mid = read_face_tid_mid(&files.face_tid_mid)?;
        let points = read_name_5pts_score(&files.name_5pts_score)?;
        check_same_images(&tid_mid, &points, files)?;
        let mut template_ids = tid_mid.templates.clone();
        template_ids.sort_unstable();
        template_ids.dedup();
        if template_ids.len() > u32::MAX as usize {
            return Err(DataError::format(&files.face_tid_mid, "more than 2^32 templates"));
        }
        let index: HashMap<i64, u32> = template_ids.iter().enumerate().map(|(i, &t)| (t, i as u32)).collect();
        let template_of = tid_mid.templates.iter().map(|t| index[t]).collect();
        tracing::info!(images = points.names.len(), templates = template_ids.len(), "read {} and {}", files.face_tid_mid.display(), files.name_5pts_score.display());
        let pairs = read_template_pairs(&files.template_pair_label, &index, &files.face_tid_mid)?;
        if pairs.is_empty() {
            return Err(DataError::format(&files.template_pair_label, "no template pairs"));
        }
        tracing::info!(pairs = pairs.len(), "read {} ({:.1} s for the meta files)", files.template_pair_label.display(), t0.elapsed().as_secs_f64());
        Ok(IjbMeta {
            files: files.clone(),
            names: points.names,
            landmarks: points.landmarks,
            scores: points.scores,
            lines: points.lines,
            template_of,
            medias: tid_mid.medias,
            template_ids,
            pairs,
        })
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// The file of image `i`.
    pub fn image_path(&self, i: usize) -> PathBuf {
        self.files.images.join(&self.names[i])
    }
}

/// Row `i` of the template list and row `i` of the image list must be one image.
fn check_same_images(tid_mid: &FaceTemplates, points: &FacePoints, files: &IjbFiles) -> Result<()> {
    if tid_mid.names.is_empty() {
        return Err(DataError::format(&files.face_tid_mid, "no images"));
    }
    let first_row: HashMap<&str, usize> =
        points.names.iter().enumerate().rev().map(|(i, n)| (n.as_str(), i)).collect();
    for (i, name) in tid_mid.names.iter().enumerate() {
        if points.names.get(i) == Some(name) {
            continue;
        }
        let line = tid_mid.lines[i];
        let msg = match (first_row.get(name.as_str()), points.names.get(i)) {
            (None, _) => format!("image {name:?} is not in {}", files.name_5pts_score.display()),
            (Some(&j), Some(other)) => format!(
                "image {name:?} is row {} of this file but row {} (line {}) of {}, whose row {} is {other:?}: \
                 the two files must list the same images in the same order",
                i + 1,
                j + 1,
                points.lines[j],
                files.name_5pts_score.display(),
                i + 1
            ),
            (Some(&j), None) => format!("image {name:?} is row {} of this file but row {} of {}", i + 1, j + 1, files.name_5pts_score.display()),
        };
        return Err(DataError::line(&files.face_tid_mid, line, msg));
    }
    if let Some(extra) = points.names.get(tid_mid.names.len()) {
        let line = points.lines[tid_mid.names.len()];
        return Err(DataError::line(
            &files.name_5pts_score,
            line,
            format!("image {extra:?} is not in {} (it lists {} images)", files.face_tid_mid.display(), tid_mid.names.len()),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn reads_rows_skipping_blank_lines_and_tolerating_tabs_and_crlf() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(dir.path(), "t.txt", "1.jpg 1 10\r\n\n2.jpg\t1  11\n3.jpg 7 12");
        let t = read_face_tid_mid(&p).unwrap();
        assert_eq!(t.names, ["1.jpg", "2.jpg", "3.jpg"]);
        assert_eq!(t.templates, [1, 1, 7]);
        assert_eq!(t.medias, [10, 11, 12]);
        assert_eq!(t.lines, [1, 3, 4]);
        let p = write(dir.path(), "p.txt", "a.jpg 1 2 3 4 5 6 7 8 9 10 0.5\n");
        let f = read_name_5pts_score(&p).unwrap();
        assert_eq!(f.landmarks[0].0, [[1.0, 2.0], [3.0, 4.0], [5.0, 6.0], [7.0, 8.0], [9.0, 10.0]]);
        assert_eq!(f.scores, [0.5]);
    }
}
