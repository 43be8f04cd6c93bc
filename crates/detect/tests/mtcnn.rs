//! MTCNN on real LFW images, with the weights `scripts/setup.sh` converts from facenet-pytorch
//! 2.6.0 (`data/mtcnn`):
//! - against facenet-pytorch's own `detect_face` (`scripts/reference/mtcnn_facenet.py`, run on
//!   the same decoded pixels): the same faces, boxes, scores and landmarks;
//! - against `landmarks_5pt.tsv`, made by another detector (YuNet): every image has a face, and
//!   the landmarks lie within a few pixels of YuNet's;
//! - missing or mismatched weight files are errors that name the file.

use std::path::{Path, PathBuf};
use std::process::Command;

use facerec_data::dataset::FaceDataset;
use facerec_data::image_io::read_rgb;
use facerec_data::landmarks::{LandmarkFile, Landmarks, OnBad};
use facerec_data::npy;
use facerec_detect::mtcnn::{nearest_to_centre, Face, Mtcnn};
use tch::Device;

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error>>;

fn weights() -> Result<PathBuf> {
    Ok(facerec_data::paths::require("mtcnn")?)
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn python() -> PathBuf {
    PathBuf::from(std::env::var("FACEREC_PYTHON").unwrap_or_else(|_| ".deps/venv/bin/python".into()))
}

/// `n` LFW images spread evenly over the identity folders (sorted), as paths relative to
/// `images/`.
fn spread_sample(images: &Path, n: usize) -> Result<Vec<PathBuf>> {
    let ds = FaceDataset::from_folders(images)?;
    let step = (ds.samples.len() / n).max(1);
    Ok(ds.samples.iter().step_by(step).take(n).map(|s| s.path.clone()).collect())
}

/// Mean distance, in pixels, between corresponding points.
fn mean_distance(a: &Landmarks, b: &Landmarks) -> f32 {
    a.0.iter().zip(&b.0).map(|(p, q)| ((p[0] - q[0]).powi(2) + (p[1] - q[1]).powi(2)).sqrt()).sum::<f32>() / 5.0
}

fn median(mut v: Vec<f32>) -> f32 {
    v.sort_by(f32::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

#[test]
fn landmarks_are_close_to_the_shared_lfw_file() -> Result {
    let lfw = facerec_data::paths::require("lfw")?;
    let reference = LandmarkFile::read(&lfw.join("landmarks_5pt.tsv"), OnBad::Fail)?;
    let mtcnn = Mtcnn::load(&weights()?, Device::Cpu)?;
    let picked = spread_sample(&lfw.join("images"), 40)?;
    assert_eq!(picked.len(), 40);
    let mut per_image = Vec::new();
    let mut per_point = Vec::new();
    for rel in &picked {
        let img = read_rgb(&lfw.join("images").join(rel))?;
        let faces = mtcnn.detect(&img)?;
        let face = nearest_to_centre(&faces, img.width(), img.height())
            .ok_or_else(|| format!("{}: no face found", rel.display()))?;
        assert!(face.score > 0.7 && face.score <= 1.0, "{}: score {}", rel.display(), face.score);
        let theirs = &reference.entries.get(rel).ok_or_else(|| format!("{}: not in landmarks_5pt.tsv", rel.display()))?.landmarks;
        per_image.push(mean_distance(&face.landmarks, theirs));
        for (p, q) in face.landmarks.0.iter().zip(&theirs.0) {
            per_point.push(((p[0] - q[0]).powi(2) + (p[1] - q[1]).powi(2)).sqrt());
        }
        // The landmarks lie inside the face box.
        let [x1, y1, x2, y2] = face.bbox;
        for [x, y] in face.landmarks.0 {
            assert!(x > x1 && x < x2 && y > y1 && y < y2, "{}: landmark ({x}, {y}) outside {:?}", rel.display(), face.bbox);
        }
    }
    let (med_image, med_point) = (median(per_image.clone()), median(per_point.clone()));
    let worst = per_image.iter().cloned().fold(0.0, f32::max);
    eprintln!(
        "MTCNN vs landmarks_5pt.tsv on {} LFW images: median of per-image mean distance {med_image:.2} px, \
         median point distance {med_point:.2} px, worst image {worst:.2} px",
        picked.len()
    );
    // Measured: 3.9 px median, 6.8 px worst (the two detectors place the points differently;
    // MTCNN matches facenet-pytorch to 1e-4 px, see below). A broken pipeline (x and y swapped,
    // features flattened in the wrong order, boxes not scaled back, unnormalised input) is off
    // by tens of pixels or finds no face.
    assert!(med_image < 5.0, "median landmark distance {med_image:.2} px");
    assert!(worst < 15.0, "worst image {worst:.2} px");
    Ok(())
}

#[test]
fn detections_match_facenet_pytorch() -> Result {
    let lfw = facerec_data::paths::require("lfw")?;
    let package = repo().join(".deps/facenet-pytorch-2.6.0");
    assert!(package.join("facenet_pytorch").is_dir(), "{}: not found (run scripts/setup.sh)", package.display());
    let mtcnn = Mtcnn::load(&weights()?, Device::Cpu)?;
    let picked = spread_sample(&lfw.join("images"), 8)?;
    let dir = tempfile::tempdir()?;
    let mut ours: Vec<Vec<Face>> = Vec::new();
    let mut arrays = Vec::new();
    for (i, rel) in picked.iter().enumerate() {
        let img = read_rgb(&lfw.join("images").join(rel))?;
        let path = dir.path().join(format!("{i}.npy"));
        let (w, h) = (img.width() as usize, img.height() as usize);
        npy::write(&path, &ndarray::ArrayView3::from_shape((h, w, 3), img.as_raw().as_slice())?)?;
        arrays.push(path);
        ours.push(mtcnn.detect(&img)?);
    }
    let out = Command::new(python())
        .arg(repo().join("scripts/reference/mtcnn_facenet.py"))
        .arg("--package")
        .arg(&package)
        .args(&arrays)
        .output()
        .map_err(|e| format!("cannot run {} (run scripts/setup.sh): {e}", python().display()))?;
    assert!(out.status.success(), "reference script failed: {}", String::from_utf8_lossy(&out.stderr));
    let lines: Vec<serde_json::Value> =
        String::from_utf8(out.stdout)?.lines().map(serde_json::from_str).collect::<std::result::Result<_, _>>()?;
    assert_eq!(lines.len(), picked.len());
    let mut worst = 0.0f64;
    let mut faces = 0;
    for ((rel, ours), theirs) in picked.iter().zip(&ours).zip(&lines) {
        let boxes = theirs["boxes"].as_array().ok_or("no boxes")?;
        let probs = theirs["probs"].as_array().ok_or("no probs")?;
        let points = theirs["points"].as_array().ok_or("no points")?;
        assert_eq!(ours.len(), boxes.len(), "{}: ours {ours:?}, facenet-pytorch {theirs}", rel.display());
        for (k, face) in ours.iter().enumerate() {
            faces += 1;
            // A value missing from the reference counts as infinitely far (NaN would be ignored
            // by `max`).
            let num = |v: &serde_json::Value| v.as_f64().unwrap_or(f64::INFINITY);
            for (c, &v) in face.bbox.iter().enumerate() {
                worst = worst.max((f64::from(v) - num(&boxes[k][c])).abs());
            }
            for (j, point) in face.landmarks.0.iter().enumerate() {
                for (c, &v) in point.iter().enumerate() {
                    worst = worst.max((f64::from(v) - num(&points[k][j][c])).abs());
                }
            }
            let dp = (f64::from(face.score) - num(&probs[k])).abs();
            assert!(dp < 1e-4, "{}: face {k}: score {} vs {}: ours {ours:?}, facenet-pytorch {theirs}", rel.display(), face.score, probs[k]);
        }
        assert!(worst < 0.01, "{}: coordinates differ by {worst} px: ours {ours:?}, facenet-pytorch {theirs}", rel.display());
    }
    eprintln!("{faces} faces in {} LFW images agree with facenet-pytorch within {worst:.2e} px", picked.len());
    assert!(faces >= picked.len());
    Ok(())
}

#[test]
fn missing_weights_name_the_file_and_the_fix() -> Result {
    let dir = tempfile::tempdir()?;
    let err = Mtcnn::load(dir.path(), Device::Cpu).unwrap_err().to_string();
    let pnet = dir.path().join("pnet.safetensors");
    assert!(err.starts_with(&format!("{}: not found", pnet.display())), "{err}");
    assert!(err.contains("scripts/setup.sh"), "{err}");
    Ok(())
}

#[test]
fn mismatched_weights_are_an_error_naming_the_file() -> Result {
    let src = weights()?;
    let dir = tempfile::tempdir()?;
    for net in ["pnet", "rnet", "onet"] {
        std::fs::copy(src.join(format!("{net}.safetensors")), dir.path().join(format!("{net}.safetensors")))?;
    }
    // R-Net's weights where O-Net's should be.
    std::fs::copy(src.join("rnet.safetensors"), dir.path().join("onet.safetensors"))?;
    let err = Mtcnn::load(dir.path(), Device::Cpu).unwrap_err().to_string();
    assert!(err.starts_with(&dir.path().join("onet.safetensors").display().to_string()), "{err}");
    assert!(err.contains("missing [conv4.bias") && err.contains("shape mismatch conv1.bias"), "{err}");
    Ok(())
}

#[test]
fn tiny_and_blank_images_have_no_face() -> Result {
    let mtcnn = Mtcnn::load(&weights()?, Device::Cpu)?;
    assert!(mtcnn.detect(&image::RgbImage::new(10, 300))?.is_empty());
    assert!(mtcnn.detect(&image::RgbImage::from_pixel(120, 90, image::Rgb([128, 128, 128])))?.is_empty());
    Ok(())
}
