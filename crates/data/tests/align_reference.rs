//! facerec's alignment against an independent implementation (numpy Umeyama + OpenCV
//! `warpAffine`, `scripts/reference/align_opencv.py`) on real LFW images: the mean absolute
//! difference must stay within one grey level.

use std::path::{Path, PathBuf};
use std::process::Command;

use facerec_data::align::{align, Template};
use facerec_data::image_io::read_rgb;
use facerec_data::landmarks::{LandmarkFile, OnBad};
use facerec_data::npy;

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error>>;

fn python() -> PathBuf {
    PathBuf::from(std::env::var("FACEREC_PYTHON").unwrap_or_else(|_| ".deps/venv/bin/python".into()))
}

fn reference_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/reference/align_opencv.py")
}

fn compare(template: Template, every: usize) -> Result {
    let lfw = facerec_data::paths::require("lfw")?;
    let landmarks_path = lfw.join("landmarks_5pt.tsv");
    let lms = LandmarkFile::read(&landmarks_path, OnBad::Fail)?;
    let mut rels: Vec<&PathBuf> = lms.entries.keys().collect();
    rels.sort();
    let picked: Vec<&PathBuf> = rels.into_iter().step_by(every).collect();
    let dir = tempfile::tempdir()?;
    let list = dir.path().join("list.txt");
    std::fs::write(&list, picked.iter().map(|p| format!("{}\n", p.display())).collect::<String>())?;
    let out = dir.path().join("crops.npy");
    let status = Command::new(python())
        .arg(reference_script())
        .args(["--images", lfw.join("images").to_str().unwrap()])
        .args(["--landmarks", landmarks_path.to_str().unwrap()])
        .args(["--list", list.to_str().unwrap(), "--out", out.to_str().unwrap()])
        .args(["--template", if template == Template::CaffeFace { "caffe_face" } else { "insightface" }])
        .status()
        .map_err(|e| format!("cannot run {} (run scripts/setup.sh): {e}", python().display()))?;
    assert!(status.success(), "reference script failed");
    let reference = npy::read::<u8, ndarray::Ix4>(&out)?;
    let (h, w) = template.size();
    assert_eq!(reference.shape(), &[picked.len(), h as usize, w as usize, 3]);
    let per = (h * w * 3) as usize;
    let mut worst = 0.0f64;
    let mut total = 0.0f64;
    for (i, rel) in picked.iter().enumerate() {
        let img = read_rgb(&lfw.join("images").join(rel))?;
        let ours = align(&img, &lms.entries[*rel].landmarks, template)?;
        let theirs = reference.index_axis(ndarray::Axis(0), i);
        let theirs = theirs.as_slice().ok_or("crops not in C order")?;
        let mad = ours.iter().zip(theirs).map(|(&a, &b)| (f64::from(a) - f64::from(b)).abs()).sum::<f64>() / per as f64;
        worst = worst.max(mad);
        total += mad;
        assert!(mad <= 1.0, "{}: mean absolute difference {mad:.3} grey levels", rel.display());
    }
    let mean = total / picked.len() as f64;
    eprintln!("{template:?}: {} LFW images, mean abs diff {mean:.3}, worst image {worst:.3} grey levels", picked.len());
    assert!(mean <= 1.0);
    Ok(())
}

#[test]
fn caffe_face_crops_match_opencv_within_one_grey_level() -> Result {
    compare(Template::CaffeFace, 200) // 67 images spread over the alphabet
}

#[test]
fn insightface_crops_match_opencv_within_one_grey_level() -> Result {
    compare(Template::Insightface, 1000)
}
