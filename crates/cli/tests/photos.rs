//! End-to-end tests of the commands for one's own photos (issue 19): `detect`, `align`,
//! `convert` and `embed` on a flat folder, files, patterns and lists; `embed` finding faces as
//! `compare` does; `compare`'s exit status and JSON; defaults found from any directory;
//! errors that name the real cause; help that stays on one line. Real LFW images and MTCNN
//! weights; a test without its data fails naming what is missing.

use std::path::{Path, PathBuf};
use std::process::Command;

use facerec_data::landmarks::{LandmarkFile, OnBad};

mod common;
use common::{command, facerec, text, Result};


fn s(p: &Path) -> &str {
    p.to_str().expect("a UTF-8 path")
}

/// The LFW images the tests use: two of Zico, one of Aaron Eckhart.
const PHOTOS: [&str; 3] = ["Zico/Zico_0001.jpg", "Zico/Zico_0002.jpg", "Aaron_Eckhart/Aaron_Eckhart_0001.jpg"];

/// `dir/flat/` with the three [`PHOTOS`] side by side (no identity folders), as someone's own
/// photos would be.
fn flat_folder(dir: &Path) -> Result<PathBuf> {
    let lfw = facerec_data::paths::require("lfw")?.join("images");
    let flat = dir.join("flat");
    std::fs::create_dir_all(&flat)?;
    for rel in PHOTOS {
        let from = lfw.join(rel);
        std::fs::copy(&from, flat.join(Path::new(rel).file_name().ok_or("a file name")?))
            .map_err(|e| format!("{}: {e}", from.display()))?;
    }
    Ok(flat)
}

/// A small Face-ResNet (112x96) with random weights, saved as `dir/model.safetensors`, as a
/// run directory holds it.
fn random_face_model(dir: &Path) -> Result {
    common::random_face_model(&dir.join("model.safetensors"))
}

fn read_rows(npy: &Path) -> Result<Vec<Vec<f32>>> {
    let a: ndarray::Array2<f32> = facerec_data::npy::read(npy)?;
    Ok(a.outer_iter().map(|r| r.to_vec()).collect())
}

fn norm(v: &[f32]) -> f64 {
    v.iter().map(|&x| f64::from(x).powi(2)).sum::<f64>().sqrt()
}

#[test]
fn detect_align_and_convert_take_a_flat_folder_files_patterns_and_lists() -> Result {
    let weights = facerec_data::paths::require("mtcnn")?;
    let dir = tempfile::tempdir()?;
    flat_folder(dir.path())?;
    let w = s(&weights);

    // A flat folder: every photo gets landmarks, keyed by its name in the folder.
    let o = facerec(&["detect", "--images", "flat", "--out", "flat.tsv", "--weights", w, "-q"], dir.path());
    assert!(o.status.success(), "{}", text(&o));
    let lm = LandmarkFile::read(&dir.path().join("flat.tsv"), OnBad::Fail)?;
    let mut keys: Vec<String> = lm.entries.keys().map(|k| k.display().to_string()).collect();
    keys.sort();
    assert_eq!(keys, ["Aaron_Eckhart_0001.jpg", "Zico_0001.jpg", "Zico_0002.jpg"]);

    // A pattern facerec expands itself, and files as the shell would give them: the same keys.
    let o = facerec(&["detect", "--images", "flat/Zico_*.jpg", "--out", "zico.tsv", "--weights", w, "-q"], dir.path());
    assert!(o.status.success(), "{}", text(&o));
    let zico = LandmarkFile::read(&dir.path().join("zico.tsv"), OnBad::Fail)?;
    assert_eq!(zico.entries.len(), 2);
    for (k, v) in &zico.entries {
        assert_eq!(lm.entries[k].landmarks, v.landmarks, "{}", k.display());
    }
    let o = facerec(&["detect", "--images", "flat/Zico_0001.jpg", "flat/Zico_0002.jpg", "--out", "files.tsv", "--weights", w, "-q"], dir.path());
    assert!(o.status.success(), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("relative to flat"), "{}", text(&o));
    assert_eq!(LandmarkFile::read(&dir.path().join("files.tsv"), OnBad::Fail)?.entries.len(), 2);

    // align: the flat folder with its landmarks, and a list of some of its photos.
    let o = facerec(&["align", "--images", "flat", "--landmarks", "flat.tsv", "--out", "crops", "-q"], dir.path());
    assert!(o.status.success(), "{}", text(&o));
    for name in ["Aaron_Eckhart_0001.png", "Zico_0001.png", "Zico_0002.png"] {
        let crop = image::open(dir.path().join("crops").join(name))?;
        assert_eq!((crop.width(), crop.height()), (96, 112), "{name}");
    }
    std::fs::write(dir.path().join("list.txt"), "Zico_0002.jpg\n")?;
    let o = facerec(&["align", "--images", "flat", "--list", "list.txt", "--landmarks", "flat.tsv", "--out", "one", "-q"], dir.path());
    assert!(o.status.success(), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("aligned 1 crops"), "{}", text(&o));

    // convert: each photo of a flat folder is its own identity.
    let o = facerec(&["convert", "--images", "flat", "--landmarks", "flat.tsv", "--to-rec", "out/flat.rec", "-q"], dir.path());
    assert!(o.status.success(), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("3 112x112 crops"), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("of 3 identities"), "{}", text(&o));
    assert!(dir.path().join("out/flat.idx").is_file());

    // Nothing there: the error names the input.
    let o = facerec(&["detect", "--images", "flat/*.png", "--out", "x.tsv", "--weights", w], dir.path());
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("flat/*.png: no image files match"), "{}", text(&o));
    Ok(())
}

#[test]
fn embed_finds_faces_as_compare_does_and_normalizes_on_request() -> Result {
    let weights = facerec_data::paths::require("mtcnn")?;
    let dir = tempfile::tempdir()?;
    flat_folder(dir.path())?;
    random_face_model(&dir.path().join("run"))?;
    let w = s(&weights);

    // No landmarks: MTCNN finds the faces. The model is given as a run directory.
    let o = facerec(&["embed", "--model", "run", "--images", "flat", "--out", "raw.npy", "--weights", w, "-q"], dir.path());
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("not normalised"), "{}", text(&o));
    let raw = read_rows(&dir.path().join("raw.npy"))?;
    let index = std::fs::read_to_string(dir.path().join("raw.txt"))?;
    assert_eq!(index.lines().collect::<Vec<_>>(), ["Aaron_Eckhart_0001.jpg", "Zico_0001.jpg", "Zico_0002.jpg"]);
    assert_eq!(raw.len(), 3);
    assert!(raw.iter().any(|r| (norm(r) - 1.0).abs() > 1e-3), "raw features happen to have unit norm");

    let o = facerec(&["embed", "--model", "run", "--images", "flat", "--out", "unit.npy", "--weights", w, "--normalize", "-q"], dir.path());
    assert!(o.status.success(), "{}", text(&o));
    let unit = read_rows(&dir.path().join("unit.npy"))?;
    for (r, u) in raw.iter().zip(&unit) {
        assert!((norm(u) - 1.0).abs() < 1e-5, "norm {}", norm(u));
        let n = norm(r);
        for (a, b) in r.iter().zip(u) {
            assert!((f64::from(*a) / n - f64::from(*b)).abs() < 1e-5);
        }
    }

    // compare's cosine of the two Zico photos is the cosine of embed's rows: the same
    // detection, alignment and features.
    let o = facerec(
        &["compare", "flat/Zico_0001.jpg", "flat/Zico_0002.jpg", "--model", "run", "--threshold", "0", "--no-flip", "--json", "--weights", w, "-q"],
        dir.path(),
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout)?;
    let dot: f64 = unit[1].iter().zip(&unit[2]).map(|(a, b)| f64::from(*a) * f64::from(*b)).sum();
    let cos = v["cosine"].as_f64().ok_or("no cosine")?;
    assert!((cos - dot).abs() < 1e-4, "compare {cos} vs embed {dot}");

    // A photo without a face: an error naming it, or left out with --skip-bad.
    image::RgbImage::from_pixel(160, 160, image::Rgb([90, 90, 90])).save(dir.path().join("flat/blank.png"))?;
    let o = facerec(&["embed", "--model", "run", "--images", "flat", "--out", "b.npy", "--weights", w, "-q"], dir.path());
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("blank.png: no face found") && text(&o).contains("--skip-bad"), "{}", text(&o));
    let o = facerec(&["embed", "--model", "run", "--images", "flat", "--out", "b.npy", "--weights", w, "--skip-bad", "-q"], dir.path());
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("blank.png: no face found") && text(&o).contains("1 images skipped"), "{}", text(&o));
    assert_eq!(read_rows(&dir.path().join("b.npy"))?.len(), 3);
    Ok(())
}

#[test]
fn compare_says_same_or_different_in_its_exit_status_and_json() -> Result {
    let weights = facerec_data::paths::require("mtcnn")?;
    let dir = tempfile::tempdir()?;
    let flat = flat_folder(dir.path())?;
    random_face_model(&dir.path().join("run"))?;
    let (a, b) = (flat.join("Zico_0001.jpg"), flat.join("Aaron_Eckhart_0001.jpg"));
    let compare = |threshold: &str, extra: &[&str]| {
        let mut args = vec!["compare", s(&a), s(&b), "--model", "run", "--threshold", threshold, "--weights", s(&weights), "-q"];
        args.extend(extra);
        facerec(&args, dir.path())
    };
    // Every cosine is at least -1 and at most 1.
    let same = compare("-1.5", &[]);
    assert_eq!(same.status.code(), Some(0), "{}", text(&same));
    assert!(text(&same).contains("same person"), "{}", text(&same));
    let different = compare("1.5", &[]);
    assert_eq!(different.status.code(), Some(4), "{}", text(&different));
    assert!(text(&different).contains("different people"), "{}", text(&different));
    let json = compare("1.5", &["--json"]);
    assert_eq!(json.status.code(), Some(4), "{}", text(&json));
    let v: serde_json::Value = serde_json::from_slice(&json.stdout)?;
    assert_eq!(v["same"], false);
    assert_eq!(v["threshold"], 1.5);
    assert_eq!(v["threshold_from"], "--threshold");
    assert_eq!(v["flip"], true);
    assert!(v["cosine"].as_f64().is_some_and(|c| (-1.0..=1.0).contains(&c)), "{v}");
    // An error is 1, not a verdict.
    let o = facerec(&["compare", "nope.jpg", s(&b), "--model", "run", "--threshold", "0.3", "--weights", s(&weights)], dir.path());
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    // The help says so.
    let help = text(&facerec(&["compare", "--help"], dir.path()));
    assert!(help.contains("0 same person, 4 different people, 1 error"), "{help}");
    Ok(())
}

#[test]
fn loading_errors_name_the_real_cause() -> Result {
    let dir = tempfile::tempdir()?;
    let d = dir.path();
    // A missing model is a missing model, not a missing lfw_report.json.
    let o = facerec(&["compare", "a.jpg", "b.jpg", "--model", "missing.safetensors"], d);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("missing.safetensors: no such model file") && !text(&o).contains("lfw_report"), "{}", text(&o));
    // A run directory without a model yet.
    std::fs::create_dir_all(d.join("unfinished"))?;
    let o = facerec(&["compare", "a.jpg", "b.jpg", "--model", "unfinished", "--threshold", "0.4"], d);
    assert!(text(&o).contains("unfinished/model.safetensors: no such model file; a run directory"), "{}", text(&o));

    // Weights without facerec's backbone metadata: the error says what the file lacks and
    // where adding it is described, not an option that does not exist.
    let bytes = facerec_model::weights::to_bytes(&[("w".to_owned(), tch::Tensor::zeros([2], (tch::Kind::Float, tch::Device::Cpu)))], &Default::default())?;
    std::fs::write(d.join("bare.safetensors"), bytes)?;
    let o = facerec(&["embed", "--model", "bare.safetensors", "--images", "x.jpg", "--aligned", "--out", "e.npy"], d);
    let msg = text(&o);
    assert!(msg.contains("no backbone config") && msg.contains("\"backbone\"") && msg.contains("Models from elsewhere"), "{msg}");
    assert!(!msg.contains("explicitly"), "{msg}");

    // PyTorch checkpoints, saved by PyTorch itself in both of its formats.
    let python = std::env::var("FACEREC_PYTHON")
        .map_err(|_| "FACEREC_PYTHON is not set: it names the Python with torch that scripts/setup.sh installs (.cargo/config.toml sets it)")?;
    let script = "import torch\n\
        torch.save({'conv1.weight': torch.zeros(2)}, 'zip.pth')\n\
        torch.save({'conv1.weight': torch.zeros(2)}, 'legacy.pth', _use_new_zipfile_serialization=False)\n";
    let py = Command::new(&python).arg("-c").arg(script).current_dir(d).output().map_err(|e| format!("{python}: {e}"))?;
    assert!(py.status.success(), "{python}: {}", text(&py));
    for (file, kind) in [("zip.pth", "zip format"), ("legacy.pth", "pickle")] {
        let o = facerec(&["compare", "a.jpg", "b.jpg", "--model", file, "--threshold", "0.4"], d);
        let msg = text(&o);
        assert!(msg.contains("a PyTorch checkpoint") && msg.contains(kind) && msg.contains(&format!("facerec import {file} --backbone")), "{file}: {msg}");
        assert!(!msg.contains("HeaderTooLarge"), "{file}: {msg}");
    }
    Ok(())
}

#[test]
fn defaults_are_found_from_any_directory() -> Result {
    // data/mtcnn and data/lfw of the checkout whose target/ holds the binary, whatever the
    // working directory, without FACEREC_REPO.
    facerec_data::paths::require("mtcnn")?;
    let photo = facerec_data::paths::require("lfw")?.join("images").join(PHOTOS[0]);
    let elsewhere = tempfile::tempdir()?;
    let o = command(&["detect", "--images", s(&photo), "--out", "x.tsv", "-q"], elsewhere.path()).env_remove("FACEREC_REPO").output()?;
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(LandmarkFile::read(&elsewhere.path().join("x.tsv"), OnBad::Fail)?.entries.len(), 1);
    Ok(())
}

#[test]
fn a_converted_set_is_evaluated_by_a_112x96_model() -> Result {
    let lfw = facerec_data::paths::require("lfw")?;
    let dir = tempfile::tempdir()?;
    random_face_model(&dir.path().join("run"))?;
    // Fold 1's first five same and five different pairs, as one fold of five.
    let pairs = std::fs::read_to_string(lfw.join("pairs.txt"))?;
    let lines: Vec<&str> = pairs.lines().collect();
    let mut small = String::from("1\t5\n");
    for l in lines[1..6].iter().chain(&lines[301..306]) {
        small.push_str(l);
        small.push('\n');
    }
    std::fs::write(dir.path().join("pairs.txt"), small)?;
    let images = lfw.join("images");
    let landmarks = lfw.join("landmarks_5pt.tsv");
    // The default template (insightface's 112x112)...
    let o = facerec(&["convert", "--images", s(&images), "--landmarks", s(&landmarks), "--pairs", "pairs.txt", "--to-bin", "lfw.bin", "-q"], dir.path());
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("10 pairs of 112x112 crops (for eval --bin of models of 112x112 and 112x96 inputs)"), "{}", text(&o));
    // ... is scored by the shipped models' 112x96 input.
    let o = facerec(&["eval", "--model", "run", "--bin", "lfw.bin", "-q"], dir.path());
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("Accuracy-Flip") && text(&o).contains("10 pairs"), "{}", text(&o));
    // A 112x96 set cannot serve a 112x112 model: the error says which set does.
    let o = facerec(
        &["convert", "--images", s(&images), "--landmarks", s(&landmarks), "--pairs", "pairs.txt", "--to-bin", "lfw96.bin", "--template", "caffe-face", "-q"],
        dir.path(),
    );
    assert!(o.status.success(), "{}", text(&o));
    common::random_face_model_of(&dir.path().join("run112/model.safetensors"), [3, 112, 112])?;
    let o = facerec(&["eval", "--model", "run112", "--bin", "lfw96.bin", "-q"], dir.path());
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("image 0 is 112x96, the model takes 112x112 crops") && text(&o).contains("without --template caffe-face"), "{}", text(&o));
    // --to-bin reads the pairs' paths under one folder and says so when given something else.
    let o = facerec(&["convert", "--images", "a.jpg", "b.jpg", "--landmarks", s(&landmarks), "--pairs", "pairs.txt", "--to-bin", "x.bin"], dir.path());
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("--to-bin needs --images to be one folder"), "{}", text(&o));
    Ok(())
}

#[test]
fn help_examples_stay_on_one_line_and_the_completion_path_agrees_with_the_readme() -> Result {
    let here = Path::new(".");
    for sub in ["detect", "align", "convert", "embed", "compare", "completions"] {
        for columns in [Some("100"), None] {
            let mut cmd = command(&[sub, "--help"], here);
            match columns {
                Some(c) => cmd.env("COLUMNS", c),
                None => cmd.env_remove("COLUMNS"), // not a terminal: clap's 100
            };
            let o = cmd.output()?;
            assert!(o.status.success());
            let help = String::from_utf8(o.stdout)?;
            let examples = help.split_once("Example").ok_or_else(|| format!("{sub} --help has no examples"))?.1;
            // Every line of the block under "Example(s):" is a whole command.
            for line in examples.lines().skip(1).take_while(|l| !l.trim().is_empty()) {
                assert!(line.starts_with("  facerec "), "{sub} --help at {columns:?} columns wraps an example: {line:?}\n{help}");
            }
        }
    }
    let readme_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../README.md");
    let readme = std::fs::read_to_string(&readme_path)?;
    let target = |text: &str| -> Option<String> {
        let after = text.split_once("completions bash > ")?.1;
        Some(after.split_whitespace().next()?.to_owned())
    };
    let help = String::from_utf8(facerec(&["completions", "--help"], here).stdout)?;
    let (ours, theirs) = (target(&help).ok_or("no path in completions --help")?, target(&readme).ok_or("no path in README.md")?);
    assert_eq!(ours, theirs, "completions --help and {} name different files", readme_path.display());
    Ok(())
}
