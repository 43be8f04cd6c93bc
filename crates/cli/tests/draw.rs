//! `facerec detect --draw` and `facerec align --preview` on real LFW photos: the images they
//! write have the input's (or the crop's) size, the drawing colours where the landmarks and the
//! template points are, and the photo everywhere else.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use facerec_data::align::{Similarity, Template};
use facerec_data::landmarks::{LandmarkFile, OnBad};
use image::{Rgb, RgbImage};

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error>>;

const GREEN: Rgb<u8> = Rgb([0, 255, 0]);
const RED: Rgb<u8> = Rgb([255, 0, 0]);

fn facerec(args: &[&str], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_facerec"))
        .args(args)
        .current_dir(cwd)
        .env("RUST_LOG", "warn")
        .output()
        .expect("facerec runs")
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// Copies these LFW images into `<dir>/images`, keeping their relative paths.
fn lfw_copy(dir: &Path, rels: &[&str]) -> Result<(PathBuf, Vec<PathBuf>)> {
    let lfw = facerec_data::paths::require("lfw")?.join("images");
    let root = dir.join("images");
    let rels: Vec<PathBuf> = rels.iter().map(PathBuf::from).collect();
    for rel in &rels {
        std::fs::create_dir_all(root.join(rel.parent().ok_or("no folder")?))?;
        std::fs::copy(lfw.join(rel), root.join(rel))?;
    }
    Ok((root, rels))
}

fn read(path: &Path) -> Result<RgbImage> {
    Ok(facerec_data::image_io::read_rgb(path)?)
}

fn px(img: &RgbImage, x: f64, y: f64) -> Rgb<u8> {
    *img.get_pixel(x.round() as u32, y.round() as u32)
}

#[test]
fn detect_draw_marks_the_kept_face_on_each_photo() -> Result {
    let weights = facerec_data::paths::require("mtcnn")?;
    let dir = tempfile::tempdir()?;
    let (root, rels) = lfw_copy(dir.path(), &["Aaron_Eckhart/Aaron_Eckhart_0001.jpg", "Zico/Zico_0002.jpg"])?;
    let (tsv, drawn) = (dir.path().join("out.tsv"), dir.path().join("drawn"));
    let out = facerec(
        &[
            "detect", "--images", root.to_str().unwrap(), "--out", tsv.to_str().unwrap(),
            "--weights", weights.to_str().unwrap(), "--draw", drawn.to_str().unwrap(), "-q",
        ],
        dir.path(),
    );
    assert!(out.status.success(), "{}", text(&out));
    let found = LandmarkFile::read(&tsv, OnBad::Fail)?;
    assert_eq!(found.entries.len(), 2);
    for rel in &rels {
        let photo = read(&root.join(rel))?;
        let img = read(&drawn.join(rel).with_extension("png"))?;
        assert_eq!(img.dimensions(), photo.dimensions(), "{}", rel.display());
        // The written landmarks are dots of radius 2 in the kept face's colour (the file keeps
        // 0.1 px, the dot covers rounding either way).
        for [x, y] in found.entries[rel].landmarks.0 {
            assert_eq!(px(&img, x.into(), y.into()), GREEN, "{}: landmark ({x}, {y})", rel.display());
        }
        // The rest is the photo: boxes, labels and dots change a small part of it.
        let changed = img.pixels().zip(photo.pixels()).filter(|(a, b)| a != b).count();
        let total = (img.width() * img.height()) as usize;
        assert!(changed > 100 && changed < total / 10, "{}: {changed} of {total} pixels changed", rel.display());
    }
    Ok(())
}

#[test]
fn align_preview_draws_the_template_points_on_each_crop() -> Result {
    let lfw = facerec_data::paths::require("lfw")?;
    let dir = tempfile::tempdir()?;
    let (root, rels) = lfw_copy(
        dir.path(),
        &["Aaron_Peirsol/Aaron_Peirsol_0001.jpg", "Abdullah_Gul/Abdullah_Gul_0002.jpg", "Zico/Zico_0001.jpg"],
    )?;
    let all = LandmarkFile::read(&lfw.join("landmarks_5pt.tsv"), OnBad::Fail)?;
    let rows: Vec<_> = rels.iter().map(|r| (r.clone(), all.entries[r].clone())).collect();
    let tsv = dir.path().join("landmarks.tsv");
    LandmarkFile::write(&tsv, &rows)?;

    let mut red_seen = 0;
    for (template, arg, size) in [(Template::CaffeFace, "caffe-face", (96, 112)), (Template::Insightface, "insightface", (112, 112))] {
        let (crops, preview) = (dir.path().join(format!("crops-{arg}")), dir.path().join(format!("preview-{arg}")));
        let out = facerec(
            &[
                "align", "--images", root.to_str().unwrap(), "--landmarks", tsv.to_str().unwrap(),
                "--out", crops.to_str().unwrap(), "--template", arg, "--preview", preview.to_str().unwrap(), "-q",
            ],
            dir.path(),
        );
        assert!(out.status.success(), "{}", text(&out));
        assert!(text(&out).contains("wrote 3 previews"), "{}", text(&out));
        for (rel, entry) in &rows {
            let crop = read(&crops.join(rel).with_extension("png"))?;
            let img = read(&preview.join(rel).with_extension("png"))?;
            assert_eq!(img.dimensions(), size, "{}", rel.display());
            // Every template point is the centre of a green cross.
            for [x, y] in template.points() {
                assert_eq!(px(&img, x, y), GREEN, "{arg} {}: template point ({x}, {y})", rel.display());
            }
            // The face's landmarks, mapped into the crop, are red squares unless a cross covers them.
            let [[a, b, tx], [c, d, ty]] = Similarity::to_template(&entry.landmarks, template)?.m;
            for [x, y] in entry.landmarks.0.map(|[x, y]| [f64::from(x), f64::from(y)]) {
                let p = px(&img, a * x + b * y + tx, c * x + d * y + ty);
                assert!(p == RED || p == GREEN, "{arg} {}: landmark at ({x}, {y}) is {p:?}", rel.display());
                red_seen += usize::from(p == RED);
            }
            // Everything else is the crop: at most five crosses (5 px) and five squares (9 px).
            let changed: Vec<Rgb<u8>> = img.pixels().zip(crop.pixels()).filter(|(a, b)| a != b).map(|(a, _)| *a).collect();
            assert!((5..=70).contains(&changed.len()), "{arg} {}: {} pixels changed", rel.display(), changed.len());
            assert!(changed.iter().all(|p| *p == RED || *p == GREEN), "{arg} {}: other colours drawn", rel.display());
        }
    }
    assert!(red_seen > 0, "no mapped landmark is visible beside the template's crosses");
    Ok(())
}
