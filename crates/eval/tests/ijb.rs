//! IJB-B / IJB-C 1:1 verification (crates/eval/src/ijb.rs) against insightface's own
//! arcface_torch `eval_ijbc.py`, whose functions, test-mode statements and ROC/TAR loop
//! scripts/reference/ijb_verification.py takes out with `ast` and runs on the same image
//! features: a 216-image IJB-format set built from LFW by scripts/ijb_from_lfw.sh (seed 0, 40
//! identities, 91 templates, 608 pairs), features of the published MobileFaceNet (imported
//! from data/pretrained) with its mirror, and seeded random features, in all 8 test modes. Also: sklearn's roc_curve and
//! the script's TAR choice on scores full of ties; meta files that are wrong; and (ignored,
//! run by hand) the pair stage at IJB-C's scale.

use std::path::{Path, PathBuf};
use std::process::Command;

use facerec_data::align::Template;
use facerec_data::ijb::{IjbFiles, IjbMeta};
use facerec_eval::ijb::{extract_features, pair_scores, template_features, ModeResult, Modes, Roc, FARS};
use facerec_model::import::import_backbone;
use facerec_model::mobilefacenet::MobileFaceNetConfig;
use facerec_model::saved::load_backbone;
use facerec_model::BackboneConfig;
use ndarray::{Array1, Array2, Ix1, Ix2};
use tch::Device;

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error>>;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn python() -> String {
    std::env::var("FACEREC_PYTHON").unwrap_or_else(|_| ".deps/venv/bin/python".into())
}

/// scripts/reference/ijb_verification.py with `args`: its JSON.
fn reference(args: &[&str]) -> Result<serde_json::Value> {
    let script = repo().join("scripts/reference/ijb_verification.py");
    let out = Command::new(python()).arg(script).args(args).output()?;
    assert!(out.status.success(), "ijb_verification.py:\n{}", String::from_utf8_lossy(&out.stderr));
    Ok(serde_json::from_slice(&out.stdout)?)
}

/// The LFW-built set in `dir` (scripts/ijb_from_lfw.sh, seed 0).
fn lfw_set(dir: &Path) -> Result<PathBuf> {
    let lfw = facerec_data::paths::require("lfw")?;
    let set = dir.join("IJBC");
    let out = Command::new("bash")
        .arg(repo().join("scripts/ijb_from_lfw.sh"))
        .arg(&set)
        .arg("--lfw")
        .arg(&lfw)
        .env("FACEREC_PYTHON", python())
        .output()?;
    assert!(out.status.success(), "ijb_from_lfw.sh:\n{}", String::from_utf8_lossy(&out.stderr));
    Ok(set)
}

fn npy1(path: &Path) -> Result<Vec<f64>> {
    Ok(facerec_data::npy::read::<f64, Ix1>(path)?.to_vec())
}

fn max_diff(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max)
}

/// Our ROC of `scores` must be sklearn's (saved by the reference as `<stem>_fpr.npy` ...) value
/// for value, and our TAR choice the script's point for every FAR.
fn same_roc_as_sklearn(roc: &Roc, out: &Path, stem: &str, reference: &serde_json::Value) -> Result {
    let fpr = npy1(&out.join(format!("{stem}_fpr.npy")))?;
    let tpr = npy1(&out.join(format!("{stem}_tpr.npy")))?;
    let thr = npy1(&out.join(format!("{stem}_thr.npy")))?;
    assert_eq!(roc.fpr, fpr, "{stem}: fpr");
    assert_eq!(roc.tpr, tpr, "{stem}: tpr");
    assert_eq!(roc.thresholds, thr, "{stem}: thresholds");
    let indices: Vec<usize> = reference["indices"].as_array().ok_or("indices")?.iter().map(|v| v.as_u64().unwrap_or(0) as usize).collect();
    let ours: Vec<usize> = FARS.iter().map(|&f| roc.nearest(f)).collect();
    assert_eq!(ours, indices, "{stem}: the ROC point of each FAR");
    Ok(())
}

#[test]
fn pooling_scores_and_tar_are_eval_ijbcs_in_all_eight_modes() -> Result {
    let dir = tempfile::tempdir()?;
    let set = lfw_set(dir.path())?;
    let meta = IjbMeta::read(&IjbFiles::in_dir(&set, None)?)?;
    assert_eq!((meta.len(), meta.template_ids.len(), meta.pairs.len()), (216, 91, 608));
    let ckpt = facerec_data::paths::require("pretrained")?.join("mobilefacenet_casia/mobilefacenet_casia_068.ckpt");
    let model = dir.path().join("mfn.safetensors");
    import_backbone(&ckpt, &BackboneConfig::new(MobileFaceNetConfig::default()), &model)?;
    let loaded = load_backbone(&model, Device::Cpu, None)?;
    let template = Template::for_input(loaded.config.input_shape())?;
    let feats = extract_features(&meta, loaded.backbone.as_ref(), Device::Cpu, template, loaded.config.pixel_norm(), 64, &|_| {})?;
    let width = feats.len() / meta.len();
    assert_eq!(width, 2 * loaded.backbone.feature_dim() as usize);
    compare_with_eval_ijbc(dir.path(), &set, &meta, &feats, width)
}

#[test]
fn random_features_too() -> Result {
    // The MobileFaceNet's table is near 100 %; random features (seeded, 2 x 64-d, scale and
    // offset so that norms vary) give a table far from it, through every FAR's point.
    let dir = tempfile::tempdir()?;
    let set = lfw_set(dir.path())?;
    let meta = IjbMeta::read(&IjbFiles::in_dir(&set, None)?)?;
    let width = 128;
    let mut state = 0x853c49e6748fea9bu64;
    let feats: Vec<f32> = (0..meta.len() * width)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            ((state >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 0.8
        })
        .collect();
    compare_with_eval_ijbc(dir.path(), &set, &meta, &feats, width)
}

/// eval_ijbc.py's functions run on `feats` `[N, width]` of `meta`'s images, in all 8 modes,
/// against ours.
fn compare_with_eval_ijbc(dir: &Path, set: &Path, meta: &IjbMeta, feats: &[f32], width: usize) -> Result {
    let npy = dir.join("feats.npy");
    facerec_data::npy::write(&npy, &Array2::from_shape_vec((meta.len(), width), feats.to_vec())?)?;
    let out = dir.join("ref");
    std::fs::create_dir_all(&out)?;
    let r = reference(&["features", "--dir", &set.to_string_lossy(), "--target", "IJBC", "--features", &npy.to_string_lossy(), "--out", &out.to_string_lossy()])?;
    let (mut worst_template, mut worst_score, mut worst_auc) = (0f64, 0f64, 0f64);
    for m in Modes::all() {
        let label = m.label();
        let unique = facerec_data::npy::read::<i64, Ix1>(&out.join(format!("{label}_unique.npy")))?;
        assert_eq!(unique.to_vec(), meta.template_ids, "np.unique(templates)");
        let theirs = facerec_data::npy::read::<f64, Ix2>(&out.join(format!("{label}_templates.npy")))?;
        let ours = template_features(feats, meta, m)?;
        let d = width / 2;
        let dt = max_diff(&ours, theirs.as_slice().ok_or("layout")?);
        let their_scores = npy1(&out.join(format!("{label}_scores.npy")))?;
        let ours_scores = pair_scores(&ours, d, &meta.pairs.t1, &meta.pairs.t2);
        let ds = max_diff(&ours_scores, &their_scores);
        // float32 image and media sums in numpy's order (its pairwise sum for N0's norms), float64
        // template norms and dot products summed in another order: float64 rounding only
        assert!(dt < 1e-14 && ds < 1e-14, "{label}: template features differ by {dt:e}, scores by {ds:e}");
        worst_template = worst_template.max(dt);
        worst_score = worst_score.max(ds);
        // sklearn's curve and the script's choice, on the script's own scores: exactly
        let mine = &r[&label];
        same_roc_as_sklearn(&Roc::new(&their_scores, &meta.pairs.genuine)?, &out, &label, mine)?;
        // and the printed table from our scores: the same digits
        let result = ModeResult::new(m, &Roc::new(&ours_scores, &meta.pairs.genuine)?);
        let row: Vec<String> = result.tar_at_far.iter().map(|t| format!("{:.2}", 100.0 * t.tar)).collect();
        let printed: Vec<String> = mine["row"].as_array().ok_or("row")?.iter().map(|v| v.as_str().unwrap_or("").to_owned()).collect();
        assert_eq!(row, printed, "{label}: TAR table");
        let da = (result.auc - mine["auc"].as_f64().ok_or("auc")?).abs();
        assert!(da < 1e-12, "{label}: AUC {} vs {}", result.auc, mine["auc"]);
        worst_auc = worst_auc.max(da);
        eprintln!("{label}: TAR% {} (eval_ijbc.py: {}), AUC {:.6}; templates within {dt:.1e}, scores {ds:.1e}", row.join(" "), printed.join(" "), result.auc);
    }
    eprintln!("largest differences: template features {worst_template:e}, pair scores {worst_score:e}, AUC {worst_auc:e}");
    Ok(())
}

#[test]
fn roc_and_tar_choice_are_sklearns_and_eval_ijbcs_through_ties() -> Result {
    // 40,000 pairs, 1 in 8 genuine, scores rounded to 1/64 (a few hundred distinct values, so
    // long ties and vertical ROC segments whose two ends share an FPR): sklearn's roc_curve
    // and the script's TAR loop decide every tie.
    let n = 40_000;
    let mut state = 0x9e3779b97f4a7c15u64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 11) as f64 / (1u64 << 53) as f64
    };
    let mut scores = Vec::with_capacity(n);
    let mut genuine = Vec::with_capacity(n);
    for _ in 0..n {
        let g = next() < 0.125;
        let s = if g { 0.35 + 0.6 * next() } else { -0.2 + 0.7 * next() };
        scores.push((s * 64.0).round() / 64.0);
        genuine.push(g);
    }
    let dir = tempfile::tempdir()?;
    let (s, l) = (dir.path().join("s.npy"), dir.path().join("l.npy"));
    facerec_data::npy::write(&s, &Array1::from(scores.clone()))?;
    facerec_data::npy::write(&l, &Array1::from(genuine.iter().map(|&g| g as i64).collect::<Vec<_>>()))?;
    let r = reference(&["scores", "--scores", &s.to_string_lossy(), "--labels", &l.to_string_lossy(), "--out", &dir.path().to_string_lossy()])?;
    let roc = Roc::new(&scores, &genuine)?;
    let shared_fpr = roc.fpr.windows(2).filter(|w| w[0] == w[1]).count();
    assert!(shared_fpr > 10, "the scores make vertical segments ({shared_fpr})");
    same_roc_as_sklearn(&roc, dir.path(), "scores", &r["scores"])?;
    let result = ModeResult::new(Modes::default(), &roc);
    let row: Vec<String> = result.tar_at_far.iter().map(|t| format!("{:.2}", 100.0 * t.tar)).collect();
    let printed: Vec<String> = r["scores"]["row"].as_array().ok_or("row")?.iter().map(|v| v.as_str().unwrap_or("").to_owned()).collect();
    assert_eq!(row, printed);
    Ok(())
}

fn write_set(dir: &Path, tid_mid: &str, points: &str, pairs: &str) -> Result<IjbFiles> {
    std::fs::create_dir_all(dir.join("meta"))?;
    std::fs::create_dir_all(dir.join("loose_crop"))?;
    std::fs::write(dir.join("meta/ijbc_face_tid_mid.txt"), tid_mid)?;
    std::fs::write(dir.join("meta/ijbc_name_5pts_score.txt"), points)?;
    std::fs::write(dir.join("meta/ijbc_template_pair_label.txt"), pairs)?;
    Ok(IjbFiles::in_dir(dir, None)?)
}

#[test]
fn bad_meta_files_are_errors_naming_file_and_line() -> Result {
    let dir = tempfile::tempdir()?;
    let p = |name: &str| format!("{name} 1 2 3 4 5 6 7 8 9 10 0.9\n");
    let good_tid = "1.jpg 5 1\n2.jpg 5 2\n3.jpg 9 3\n";
    let good_pts = format!("{}{}{}", p("1.jpg"), p("2.jpg"), p("3.jpg"));
    let good_pairs = "5 9 0\n5 5 1\n";
    let files = write_set(dir.path(), good_tid, &good_pts, good_pairs)?;
    let meta = IjbMeta::read(&files)?;
    assert_eq!((meta.template_ids.clone(), meta.pairs.t1.clone(), meta.pairs.t2.clone()), (vec![5, 9], vec![0, 0], vec![1, 0]));
    let error = |tid: &str, pts: &str, pairs: &str| -> Result<String> {
        let files = write_set(dir.path(), tid, pts, pairs)?;
        Ok(IjbMeta::read(&files).err().ok_or("no error")?.to_string())
    };
    let e = error("1.jpg 5 1\n2.jpg 5\n3.jpg 9 3\n", &good_pts, good_pairs)?;
    assert!(e.contains("ijbc_face_tid_mid.txt:2:") && e.contains("expected 3 columns (image name, template id, media id), got 2"), "{e}");
    let e = error(good_tid, &format!("{}2.jpg 1 2 3 4 5 6 7 8 9 0.9\n{}", p("1.jpg"), p("3.jpg")), good_pairs)?;
    assert!(e.contains("ijbc_name_5pts_score.txt:2:") && e.contains("expected 12 columns") && e.contains("got 11"), "{e}");
    let e = error(good_tid, &good_pts, "5 9 0\n5 5 1\n5 12 0\n")?;
    assert!(e.contains("ijbc_template_pair_label.txt:3:") && e.contains("unknown template id 12"), "{e}");
    let e = error(good_tid, &good_pts, "5 9 x\n")?;
    assert!(e.contains("ijbc_template_pair_label.txt:1:") && e.contains("label \"x\" is not 1 (genuine) or 0 (impostor)"), "{e}");
    // the two image lists disagree: rows 2 and 3 swapped, a row missing, a row too many
    let e = error(good_tid, &format!("{}{}{}", p("1.jpg"), p("3.jpg"), p("2.jpg")), good_pairs)?;
    assert!(e.contains("ijbc_face_tid_mid.txt:2:") && e.contains("image \"2.jpg\" is row 2 of this file but row 3 (line 3)") && e.contains("ijbc_name_5pts_score.txt"), "{e}");
    let e = error(good_tid, &format!("{}{}", p("1.jpg"), p("2.jpg")), good_pairs)?;
    assert!(e.contains("ijbc_face_tid_mid.txt:3:") && e.contains("image \"3.jpg\" is not in"), "{e}");
    let e = error(good_tid, &format!("{good_pts}{}", p("4.jpg")), good_pairs)?;
    assert!(e.contains("ijbc_name_5pts_score.txt:4:") && e.contains("image \"4.jpg\" is not in"), "{e}");
    let e = error("1.jpg five 1\n", &p("1.jpg"), good_pairs)?;
    assert!(e.contains("ijbc_face_tid_mid.txt:1:") && e.contains("template id \"five\" is not an integer"), "{e}");
    Ok(())
}

/// The pair stage at IJB-C's size: 469,375 images (random 512-D features with mirrors, random
/// detector scores), 23,124 templates of 1-3 media, 15,658,489 pairs; template pooling, pair
/// scores and the ROC timed. Run by hand (docs/benchmarks.md):
/// `/usr/bin/time -v cargo test --release --locked -p facerec-eval --test ijb -- --ignored --nocapture ijbc_scale`
#[test]
#[ignore]
fn ijbc_scale_pair_stage() -> Result {
    let (images, templates, pairs, d) = (469_375usize, 23_124usize, 15_658_489usize, 512usize);
    let mut state = 0x2545f4914f6cdd1du64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let dir = tempfile::tempdir()?;
    let t0 = std::time::Instant::now();
    // meta files of that size, written and read as a user's would be
    let mut tid = String::with_capacity(images * 24);
    let mut pts = String::with_capacity(images * 80);
    for i in 0..images {
        let t = if i < templates { i } else { (next() % templates as u64) as usize };
        let m = t * 3 + (next() % 3) as usize;
        tid.push_str(&format!("{}.jpg {} {}\n", i + 1, 10 * t + 1, m));
        pts.push_str(&format!("{}.jpg 38.3 51.7 73.5 51.5 56.0 71.7 41.5 92.4 70.7 92.2 {:.6}\n", i + 1, (next() % 1000) as f64 / 1000.0));
    }
    let mut pl = String::with_capacity(pairs * 16);
    for k in 0..pairs {
        let a = next() % templates as u64;
        let b = next() % templates as u64;
        pl.push_str(&format!("{} {} {}\n", 10 * a + 1, 10 * b + 1, (k % 100 == 0) as u8));
    }
    let files = write_set(dir.path(), &tid, &pts, &pl)?;
    drop((tid, pts, pl));
    eprintln!("meta files written in {:.1} s", t0.elapsed().as_secs_f64());
    let t1 = std::time::Instant::now();
    let meta = IjbMeta::read(&files)?;
    let read = t1.elapsed().as_secs_f64();
    let feats: Vec<f32> = (0..images * 2 * d).map(|_| (next() >> 40) as f32 / (1u64 << 24) as f32 - 0.5).collect();
    let t2 = std::time::Instant::now();
    let tf = template_features(&feats, &meta, Modes::default())?;
    let pooled = t2.elapsed().as_secs_f64();
    drop(feats);
    let t3 = std::time::Instant::now();
    let scores = pair_scores(&tf, d, &meta.pairs.t1, &meta.pairs.t2);
    let scored = t3.elapsed().as_secs_f64();
    let t4 = std::time::Instant::now();
    let roc = Roc::new(&scores, &meta.pairs.genuine)?;
    let result = ModeResult::new(Modes::default(), &roc);
    let rocs = t4.elapsed().as_secs_f64();
    assert_eq!((meta.len(), meta.template_ids.len(), meta.pairs.len()), (images, templates, pairs));
    // the process's peak resident memory (Linux: VmHWM, in kB)
    let status = std::fs::read_to_string("/proc/self/status")?;
    let peak_kib: f64 = status.lines().find_map(|l| l.strip_prefix("VmHWM:")).and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok()).unwrap_or(f64::NAN);
    eprintln!(
        "IJB-C scale: meta read {read:.1} s, template pooling {pooled:.1} s, {pairs} pair scores {scored:.1} s, ROC {rocs:.1} s \
         ({} points), peak RSS {:.2} GiB; TAR@1e-4 {:.4} (random features)",
        roc.fpr.len(),
        peak_kib / (1024.0 * 1024.0),
        result.tar_at_far[2].tar
    );
    Ok(())
}
