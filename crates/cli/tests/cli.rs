//! End-to-end tests of the `facerec` binary on real data (a small part of MNIST, a few LFW
//! images).

use std::io::BufRead;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use facerec_data::landmarks::{LandmarkFile, OnBad};

mod common;
use common::{command, facerec, mnist_config, random_face_model, text, Result};

#[test]
fn train_writes_report_scatter_and_summary_prints_the_table() -> Result {
    let dir = tempfile::tempdir()?;
    for lambda in [0.0, 0.01] {
        let cfg = mnist_config(dir.path(), lambda)?;
        let out = facerec(&["train", cfg.to_str().unwrap(), "--name", &format!("r{lambda}"), "-q"], dir.path());
        assert!(out.status.success(), "{}", text(&out));
        assert!(text(&out).contains("test accuracy"), "{}", text(&out));
        let run = dir.path().join("runs").join(format!("r{lambda}"));
        let png = std::fs::read(run.join("features.png"))?;
        assert_eq!(&png[1..4], b"PNG");
        let report: serde_json::Value = serde_json::from_slice(&std::fs::read(run.join("report.json"))?)?;
        let acc = report["test_accuracy"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&acc));
        assert_eq!(report["steps"], 10);
        for f in ["config.toml", "steps.jsonl", "metrics.jsonl", "model.safetensors", "training.png", "evaluation.png"] {
            assert!(run.join(f).exists(), "missing {f}");
        }
    }
    let out = facerec(&["summary", "runs/r0", "runs/r0.01"], dir.path());
    assert!(out.status.success(), "{}", text(&out));
    let table = String::from_utf8(out.stdout)?;
    assert!(table.lines().next().unwrap().starts_with("run"), "{table}");
    assert_eq!(table.lines().count(), 4, "{table}");
    assert!(table.contains("features.png"));
    Ok(())
}

#[test]
fn summary_lists_runs_without_results_and_prints_the_rest() -> Result {
    let dir = tempfile::tempdir()?;
    let cfg = mnist_config(dir.path(), 0.01)?;
    let cfg = cfg.to_str().unwrap();
    for name in ["done", "stopped"] {
        let out = facerec(&["train", cfg, "--name", name, "-q", "--set", "checkpoint.every_steps=4"], dir.path());
        assert!(out.status.success(), "{}", text(&out));
    }
    // A run stopped after its last checkpoint has checkpoints but no report.
    std::fs::remove_file(dir.path().join("runs/stopped/report.json"))?;
    std::fs::create_dir_all(dir.path().join("runs/empty"))?;
    let out = facerec(&["summary", "runs/done", "runs/stopped", "runs/empty", "runs/missing"], dir.path());
    assert!(out.status.success(), "{}", text(&out));
    let table = String::from_utf8(out.stdout)?;
    let row = |name: &str| table.lines().find(|l| l.split_whitespace().next() == Some(name)).unwrap_or_default().to_owned();
    assert!(row("done").contains("features.png"), "{table}");
    assert!(row("stopped").contains("unfinished: checkpoint at step 10"), "{table}");
    assert!(row("empty").contains("unfinished: no checkpoint and no report"), "{table}");
    assert!(row("missing").contains("no such run directory"), "{table}");
    Ok(())
}

#[test]
fn existing_run_needs_resume_or_overwrite_and_resume_finishes_it() -> Result {
    let dir = tempfile::tempdir()?;
    let cfg = mnist_config(dir.path(), 0.01)?;
    let cfg = cfg.to_str().unwrap();
    assert!(facerec(&["train", cfg, "--name", "x", "-q"], dir.path()).status.success());
    let out = facerec(&["train", cfg, "--name", "x", "-q"], dir.path());
    assert!(!out.status.success());
    assert!(text(&out).contains("--resume"), "{}", text(&out));
    let out = facerec(&["train", cfg, "--name", "x", "--resume", "-q"], dir.path());
    assert!(out.status.success(), "{}", text(&out));
    let out = facerec(&["train", cfg, "--name", "x", "--overwrite", "-q"], dir.path());
    assert!(out.status.success(), "{}", text(&out));
    Ok(())
}

#[test]
fn resume_refuses_changed_training_settings_unless_allowed_and_records_them() -> Result {
    let dir = tempfile::tempdir()?;
    let cfg = mnist_config(dir.path(), 0.01)?;
    let cfg = cfg.to_str().unwrap();
    let run = dir.path().join("runs/x");
    assert!(facerec(&["train", cfg, "--name", "x", "-q"], dir.path()).status.success());
    let trained_with = std::fs::read_to_string(run.join("config.toml"))?;
    // 320 images, batch 32, 1 epoch: the checkpoint is at step 10.
    let longer = ["--set", "schedule.epochs=2", "--set", "loss.lambda=0.5"];
    let mut args = vec!["train", cfg, "--name", "x", "--resume", "-q"];
    args.extend(longer);
    let out = facerec(&args, dir.path());
    let msg = text(&out);
    assert!(!out.status.success(), "{msg}");
    assert!(msg.contains("loss.lambda 0.01 -> 0.5") && msg.contains("schedule.epochs 1 -> 2"), "{msg}");
    assert!(msg.contains("--allow-changes"), "{msg}");
    assert_eq!(std::fs::read_to_string(run.join("config.toml"))?, trained_with, "a refused resume changes nothing");
    assert!(!run.join("changes.jsonl").exists());
    // Logging settings may change freely, but the run has finished: nothing to do.
    let out = facerec(&["train", cfg, "--name", "x", "--resume", "-q", "--set", "log.every_steps=2"], dir.path());
    assert!(out.status.success() && text(&out).contains("finished already"), "{}", text(&out));
    assert!(!run.join("changes.jsonl").exists());
    // Allowed, the run goes on with the new settings, and each change (the free one too) is
    // recorded at step 10.
    args.extend(["--allow-changes", "--set", "log.every_steps=2"]);
    let out = facerec(&args, dir.path());
    assert!(out.status.success(), "{}", text(&out));
    let changes: Vec<serde_json::Value> =
        std::fs::read_to_string(run.join("changes.jsonl"))?.lines().map(serde_json::from_str).collect::<std::result::Result<_, _>>()?;
    let keys: Vec<(&str, u64)> = changes.iter().map(|c| (c["key"].as_str().unwrap_or(""), c["step"].as_u64().unwrap_or(0))).collect();
    assert_eq!(keys, [("log.every_steps", 10), ("loss.lambda", 10), ("schedule.epochs", 10)], "{changes:?}");
    assert_eq!(changes[1]["to"], "0.5");
    let report = read_json(&run.join("report.json"))?;
    assert_eq!(report["steps"], 20, "trained on to the second epoch");
    Ok(())
}

/// The files of a run directory with their contents and modification times.
fn snapshot(run: &Path) -> Result<Vec<(PathBuf, Vec<u8>, std::time::SystemTime)>> {
    let mut files = Vec::new();
    let mut dirs = vec![run.to_path_buf()];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d)? {
            let p = e?.path();
            if p.is_dir() {
                dirs.push(p);
            } else {
                let modified = std::fs::metadata(&p)?.modified()?;
                files.push((p.clone(), std::fs::read(&p)?, modified));
            }
        }
    }
    files.sort();
    Ok(files)
}

#[test]
fn resuming_a_finished_run_says_so_and_touches_nothing() -> Result {
    let dir = tempfile::tempdir()?;
    let cfg = mnist_config(dir.path(), 0.01)?;
    let cfg = cfg.to_str().unwrap();
    let run = dir.path().join("runs/x");
    assert!(facerec(&["train", cfg, "--name", "x", "-q"], dir.path()).status.success());
    let before = snapshot(&run)?;
    let out = command(&["train", cfg, "--name", "x", "--resume"], dir.path()).env("RUST_LOG", "info").output()?;
    let msg = text(&out);
    assert!(out.status.success(), "{msg}");
    assert!(msg.contains("finished already (step 10)") && msg.contains("nothing to do"), "{msg}");
    assert!(!msg.contains("resumed from"), "no resume happened: {msg}");
    assert!(snapshot(&run)? == before, "a finished run's files must stay as they were");
    // A run whose report is missing (its last evaluation failed, say) is not finished: the
    // resume evaluates and reports it, once, and logs that it resumed once.
    std::fs::remove_file(run.join("report.json"))?;
    let out = command(&["train", cfg, "--name", "x", "--resume"], dir.path()).env("RUST_LOG", "info").output()?;
    let msg = text(&out);
    assert!(out.status.success() && run.join("report.json").is_file(), "{msg}");
    assert_eq!((msg.matches("resumed from").count(), msg.matches("resuming from").count()), (1, 0), "{msg}");
    Ok(())
}

#[test]
fn a_launched_run_records_the_device_as_configured_and_resumes_alone_without_spurious_changes() -> Result {
    let dir = tempfile::tempdir()?;
    let cfg = mnist_config(dir.path(), 0.01)?;
    let port = free_port().to_string();
    let out = facerec(&["launch", "--nproc", "2", "--master-port", &port, "--", "train", cfg.to_str().unwrap(), "--name", "dp"], dir.path());
    assert!(out.status.success(), "{}", text(&out));
    let run = dir.path().join("runs/dp");
    let written = std::fs::read_to_string(run.join("config.toml"))?;
    assert!(written.contains("device = \"auto\""), "the rank's own device is not a setting of the run:\n{written}");
    // Resumed by a plain train for a second epoch: the one change recorded is the one made.
    let out = facerec(&["train", cfg.to_str().unwrap(), "--name", "dp", "--resume", "--allow-changes", "--set", "schedule.epochs=2", "-q"], dir.path());
    assert!(out.status.success(), "{}", text(&out));
    let changes = std::fs::read_to_string(run.join("changes.jsonl"))?;
    assert_eq!(changes.lines().count(), 1, "{changes}");
    assert!(changes.contains("schedule.epochs"), "{changes}");
    Ok(())
}

#[test]
fn a_sharded_mnist_run_that_could_not_be_evaluated_is_refused_before_the_first_step() -> Result {
    let dir = tempfile::tempdir()?;
    let cfg = mnist_config(dir.path(), 0.01)?;
    let port = free_port().to_string();
    let out = facerec(
        &["launch", "--nproc", "2", "--master-port", &port, "--", "train", cfg.to_str().unwrap(), "--name", "s", "--set", "parallel.shard_head=true"],
        dir.path(),
    );
    let msg = text(&out);
    assert!(!out.status.success(), "{msg}");
    assert!(msg.contains("parallel.shard_head") && msg.contains("2 ranks") && msg.contains("shard_head = false"), "{msg}");
    assert!(!dir.path().join("runs/s/steps.jsonl").exists(), "refused before the first step: {msg}");
    // One process holds every class: the same config trains and is evaluated.
    let out = facerec(&["train", cfg.to_str().unwrap(), "--name", "one", "--set", "parallel.shard_head=true", "-q"], dir.path());
    assert!(out.status.success(), "{}", text(&out));
    Ok(())
}

#[test]
fn eval_ijb_on_the_lfw_built_set_prints_the_table_and_writes_report_and_roc() -> Result {
    // scripts/ijb_from_lfw.sh's set (seed 0): 216 LFW images, 91 templates, 608 pairs.
    let lfw = facerec_data::paths::require("lfw")?;
    let dir = tempfile::tempdir()?;
    let set = dir.path().join("IJBC");
    let py = std::env::var("FACEREC_PYTHON").unwrap_or_else(|_| ".deps/venv/bin/python".into());
    let made = std::process::Command::new("bash")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/ijb_from_lfw.sh"))
        .arg(&set)
        .arg("--lfw")
        .arg(&lfw)
        .env("FACEREC_PYTHON", py)
        .output()?;
    assert!(made.status.success(), "{}", text(&made));
    random_face_model(&dir.path().join("models/m.safetensors"))?;
    let s = set.to_str().ok_or("path")?;
    let modes = ["--ijb-modes", "F1N1D1,F0N0D0"];
    let mut args = vec!["eval", "--model", "models/m.safetensors", "--ijb", s, "--save-features", "f.npy", "-q"];
    args.extend(modes);
    let out = facerec(&args, dir.path());
    assert!(out.status.success(), "{}", text(&out));
    let t = text(&out);
    assert!(t.contains("IJBC: 216 images, 91 templates, 608 template pairs (62 genuine, 546 impostor)"), "{t}");
    assert!(t.contains("m-IJBC-F1N1D1") && t.contains("m-IJBC-F0N0D0") && t.contains("1e-4"), "{t}");
    assert!(t.contains("models/m_eval/ijbc_report.json"), "{t}");
    let reports = dir.path().join("models/m_eval");
    let png = std::fs::read(reports.join("ijbc_roc.png"))?;
    assert!(png.starts_with(b"\x89PNG"), "ijbc_roc.png is a PNG");
    let report = read_json(&reports.join("ijbc_report.json"))?;
    let results = report["results"].as_array().ok_or("results")?;
    assert_eq!(results.len(), 2);
    assert_eq!((report["pairs"].as_u64(), report["impostor_pairs"].as_u64()), (Some(608), Some(546)));
    let tars = |r: &serde_json::Value| -> Vec<f64> {
        r["tar_at_far"].as_array().map(|a| a.iter().filter_map(|t| t["tar"].as_f64()).collect()).unwrap_or_default()
    };
    assert_eq!(tars(&results[0]).len(), 6);
    // the table's row is the report's, to the printed digit
    let row: String = tars(&results[0]).iter().map(|v| format!("{:>8.2}", 100.0 * v)).collect();
    assert!(t.contains(&row), "{row:?} in {t}");
    // the saved features, [216, 2 x 16], rescored without the model: the same report
    let f = facerec_data::npy::read::<f32, ndarray::Ix2>(&dir.path().join("f.npy"))?;
    assert_eq!(f.dim(), (216, 32));
    let mut args = vec!["eval", "--ijb", s, "--features", "f.npy", "--out", "again", "-q"];
    args.extend(modes);
    let out = facerec(&args, dir.path());
    assert!(out.status.success(), "{}", text(&out));
    let again = read_json(&dir.path().join("again/ijbc_report.json"))?;
    assert_eq!(again["results"], report["results"]);
    // mistakes are named
    let out = facerec(&["eval", "--ijb", s, "--features", "f.npy", "--ijb-modes", "F2N1D1", "-q"], dir.path());
    assert!(!out.status.success() && text(&out).contains("\"F2N1D1\" is not a test mode"), "{}", text(&out));
    facerec_data::npy::write(&dir.path().join("bad.npy"), &ndarray::Array2::<f32>::zeros((3, 4)))?;
    let out = facerec(&["eval", "--ijb", s, "--features", "bad.npy", "-q"], dir.path());
    assert!(!out.status.success() && text(&out).contains("bad.npy: [3, 4] features where [216, 2D] was expected"), "{}", text(&out));
    Ok(())
}

#[test]
fn eval_of_a_model_file_writes_beside_it_and_compare_finds_the_report_there() -> Result {
    let mtcnn = facerec_data::paths::require("mtcnn")?;
    let lfw = facerec_data::paths::require("lfw")?;
    let dir = tempfile::tempdir()?;
    random_face_model(&dir.path().join("models/m.safetensors"))?;
    let out = facerec(&["eval", "--model", "models/m.safetensors", "--folds", "1,2", "--subtract-mean", "-q"], dir.path());
    assert!(out.status.success(), "{}", text(&out));
    let reports = dir.path().join("models/m_eval");
    assert!(text(&out).contains("models/m_eval/lfw_report.json"), "{}", text(&out));
    for f in ["lfw_report.json", "lfw_roc.png", "lfw_scores.png"] {
        assert!(reports.join(f).is_file(), "missing {f}");
        assert!(!dir.path().join(f).exists(), "{f} written into the working directory");
    }
    let report = read_json(&reports.join("lfw_report.json"))?;
    let mean: Vec<f64> = report["verification"]["mean_feature"].as_array().ok_or("no mean feature")?.iter().filter_map(|v| v.as_f64()).collect();
    assert_eq!(mean.len(), 32, "16-d features of image and mirror");

    // compare finds the report beside the model and scores as the evaluation did: the mirror's
    // features concatenated, the report's mean feature subtracted.
    let (a, b) = (lfw.join("images/Zico/Zico_0001.jpg"), lfw.join("images/Zico/Zico_0002.jpg"));
    let compare = |extra: &[&str]| -> Result<serde_json::Value> {
        let mut args = vec!["compare", a.to_str().unwrap(), b.to_str().unwrap(), "--model", "models/m.safetensors", "--json"];
        args.extend(["--weights", mtcnn.to_str().unwrap(), "-q"]);
        args.extend(extra);
        let o = facerec(&args, dir.path());
        assert!(matches!(o.status.code(), Some(0 | 4)), "{}", text(&o));
        Ok(serde_json::from_slice(&o.stdout)?)
    };
    let verdict = compare(&[])?;
    assert!(verdict["threshold_from"].as_str().unwrap_or("").ends_with("models/m_eval/lfw_report.json"), "{verdict}");
    assert_eq!(verdict["mean_subtracted"], true, "{verdict}");
    // The same two faces embedded by `facerec embed` (MTCNN, image and mirror), centred by hand.
    let out = facerec(
        &["embed", "--model", "models/m.safetensors", "--images", a.to_str().unwrap(), b.to_str().unwrap(), "--flip",
          "--weights", mtcnn.to_str().unwrap(), "--out", "two.npy", "-q"],
        dir.path(),
    );
    assert!(out.status.success(), "{}", text(&out));
    let e = facerec_data::npy::read::<f32, ndarray::Ix2>(&dir.path().join("two.npy"))?;
    let centred: Vec<Vec<f64>> = (0..2).map(|r| e.row(r).iter().zip(&mean).map(|(x, m)| f64::from(*x) - m).collect()).collect();
    let dot = |u: &[f64], v: &[f64]| u.iter().zip(v).map(|(x, y)| x * y).sum::<f64>();
    let cos = dot(&centred[0], &centred[1]) / (dot(&centred[0], &centred[0]) * dot(&centred[1], &centred[1])).sqrt();
    let got = verdict["cosine"].as_f64().ok_or("no cosine")?;
    assert!((got - cos).abs() < 1e-4, "compare {got} vs centred by hand {cos}");
    // With a threshold given there is no report, and the plain cosine differs.
    let plain = compare(&["--threshold", "0.5"])?;
    assert_eq!(plain["mean_subtracted"], false);
    assert!((plain["cosine"].as_f64().unwrap_or(0.0) - got).abs() > 1e-6, "{plain} vs {verdict}");
    Ok(())
}

#[test]
fn bad_config_fails_before_any_work_with_file_and_key() -> Result {
    let dir = tempfile::tempdir()?;
    let cfg = mnist_config(dir.path(), 0.01)?;
    std::fs::write(&cfg, std::fs::read_to_string(&cfg)?.replace("alpha = 0.5", "alpha = 2.0"))?;
    let out = facerec(&["train", cfg.to_str().unwrap(), "-q"], dir.path());
    assert!(!out.status.success());
    let msg = text(&out);
    assert!(msg.contains("error:") && msg.contains("mnist_tiny_0.01.toml") && msg.contains("loss.alpha"), "{msg}");
    assert!(!dir.path().join("runs").exists(), "nothing may be written for a bad config");
    let out = facerec(&["train", "no-such.toml"], dir.path());
    assert!(!out.status.success());
    assert!(text(&out).contains("no-such.toml"));
    Ok(())
}

#[test]
fn info_reports_the_device_and_cuda_linking() {
    let out = facerec(&["info"], Path::new("."));
    assert!(out.status.success());
    let s = text(&out);
    assert!(s.contains("device: ") && s.contains("libtorch_cuda loaded"), "{s}");
}

#[test]
fn every_subcommand_has_help_with_examples() {
    for sub in ["train", "launch", "align", "detect", "compare", "convert", "embed", "eval", "export", "bench", "summary", "plot", "new-plugin", "completions"] {
        let out = facerec(&[sub, "--help"], Path::new("."));
        assert!(out.status.success());
        assert!(text(&out).contains("Example"), "{sub} --help has no examples");
    }
    let out = facerec(&["completions", "bash"], Path::new("."));
    assert!(String::from_utf8_lossy(&out.stdout).contains("facerec"));
}

#[test]
fn face_training_evaluates_on_lfw_and_eval_rescores_the_run() -> Result {
    // The shipped face config, shrunk to a few steps of a tiny network and two test folds.
    let dir = tempfile::tempdir()?;
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let data = facerec_data::paths::require("lfw")?;
    let cfg = repo.join("configs/lfw_faceresnet_small_center.toml");
    let cache = dir.path().join("cache");
    let sets = [
        format!("data.images={}", data.join("images").display()),
        format!("data.landmarks={}", data.join("landmarks_5pt.tsv").display()),
        format!("data.exclude_pairs.pairs={}", data.join("pairs.txt").display()),
        "data.exclude_pairs.folds=[1,2]".into(),
        format!("data.cache_dir={}", cache.display()),
        "data.min_images=20".into(),
        format!("eval.lfw.images={}", data.join("images").display()),
        format!("eval.lfw.landmarks={}", data.join("landmarks_5pt.tsv").display()),
        format!("eval.lfw.pairs={}", data.join("pairs.txt").display()),
        "eval.lfw.folds=[1,2]".into(),
        "eval.lfw.identification=false".into(),
        "eval.lfw.flip=false".into(),
        format!("eval.lfw.cache_dir={}", cache.display()),
        "model.backbone.widths=[4,8,8,16,16]".into(),
        "model.backbone.blocks=[0,0,0,0]".into(),
        "model.backbone.feature_dim=16".into(),
        "schedule.epochs=".into(),
        "schedule.steps=4".into(),
        "schedule.milestones=[]".into(),
        "optim.batch_size=16".into(),
    ];
    // Two insightface .bin sets evaluated beside LFW, each under its own name.
    let (wide, narrow) = lfw_bins(dir.path())?;
    let sets: Vec<String> = sets
        .into_iter()
        .chain([format!(
            "eval.bin=[{{name = \"b112\", path = \"{}\"}}, {{name = \"b96\", path = \"{}\"}}]",
            wide.display(),
            narrow.display()
        )])
        .collect();
    let mut args = vec!["train".to_string(), cfg.display().to_string(), "--name".into(), "face".into(), "-q".into()];
    for s in &sets {
        args.push("--set".into());
        args.push(s.clone());
    }
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = facerec(&argv, dir.path());
    assert!(out.status.success(), "{}", text(&out));
    let msg = text(&out);
    assert!(msg.contains("LFW verification") && msg.contains("folds 1,2"), "{msg}");
    let run = dir.path().join("runs/face");
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(run.join("lfw_report.json"))?)?;
    let acc = report["verification"]["accuracy_mean"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&acc));
    assert_eq!(report["verification"]["pairs"], 1200);
    for f in ["lfw_roc.png", "lfw_scores.png", "model.safetensors"] {
        assert!(run.join(f).exists(), "missing {f}");
    }
    // The last evaluation has every set's metrics; a .bin set's accuracy is what `facerec eval
    // --bin` finds for the trained model.
    let metrics = std::fs::read_to_string(run.join("metrics.jsonl"))?;
    let last: serde_json::Value = serde_json::from_str(metrics.lines().rfind(|l| l.contains("\"eval\"")).ok_or("no eval record")?)?;
    for key in ["lfw_accuracy", "b112_accuracy", "b112_auc", "b96_accuracy", "b96_accuracy_std"] {
        assert!(last[key].is_number(), "{key} missing from {last}");
    }
    let out = facerec(&["eval", "--model", "runs/face", "--bin", narrow.to_str().unwrap(), "--out", "b96", "-q"], dir.path());
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(read_json(&dir.path().join("b96/lfw_report.json"))?["verification"]["accuracy_mean"], last["b96_accuracy"]);
    // `facerec eval` on the run reproduces the accuracy with the run's own settings.
    let out = facerec(&["eval", "runs/face", "-q"], dir.path());
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("open set, all pairs of") && text(&out).contains("open-set identification"), "{}", text(&out));
    let again: serde_json::Value = serde_json::from_slice(&std::fs::read(run.join("lfw_report.json"))?)?;
    assert_eq!(again["verification"]["accuracy_mean"], report["verification"]["accuracy_mean"]);
    // With other settings it writes beside the run's report, which stays as training left it.
    let before = std::fs::read(run.join("lfw_report.json"))?;
    let out = facerec(&["eval", "runs/face", "--pca", "8", "-q"], dir.path());
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("runs/face/eval_pca8/lfw_report.json"), "{}", text(&out));
    let pca: serde_json::Value = serde_json::from_slice(&std::fs::read(run.join("eval_pca8/lfw_report.json"))?)?;
    assert_eq!(pca["verification"]["pca"], 8);
    assert!(run.join("eval_pca8/lfw_roc.png").exists());
    assert_eq!(std::fs::read(run.join("lfw_report.json"))?, before, "the run's own report must stay");

    // `facerec summary` lists the face run with its LFW accuracy and fold std.
    let out = facerec(&["summary", "runs/face"], dir.path());
    assert!(out.status.success(), "{}", text(&out));
    let table = String::from_utf8(out.stdout)?;
    let std = report["verification"]["accuracy_std"].as_f64().unwrap();
    let cell = format!("{:.2} ± {:.2}", 100.0 * acc, 100.0 * std);
    assert!(table.contains("LFW acc %") && table.contains(&cell), "expected {cell}:\n{table}");
    // 600 different-person pairs cannot measure FAR 1e-3, and identification was not asked
    // for: the table says so, never NaN. The open-set protocols (on by default) fill theirs.
    let row = table.lines().find(|l| l.starts_with("face")).ok_or("no row of the run")?;
    assert!(!row.contains("NaN") && row.contains("not resolved") && row.contains(" - "), "{table}");
    let tar4 = report["open_set"]["verification"]["tar_at_far"][1]["rate"].as_f64().ok_or("open-set TAR at FAR 1e-4")?;
    assert!(table.contains("open-set TAR@FAR=1e-4 %") && row.contains(&format!("{:.2}", 100.0 * tar4)), "{tar4}:\n{table}");

    // `facerec embed` + `facerec eval --features` (the path for other models' embeddings) gives
    // the same accuracy as evaluating the model directly.
    let pairs = facerec_data::lfw::Pairs::read(&data.join("pairs.txt"))?;
    let list = dir.path().join("pair_images.txt");
    std::fs::write(&list, pairs.images(&[0, 1]).iter().map(|p| format!("{}\n", p.display())).collect::<String>())?;
    let (images, landmarks) = (data.join("images"), data.join("landmarks_5pt.tsv"));
    let out = facerec(
        &["embed", "--model", "runs/face/model.safetensors", "--images", images.to_str().unwrap(), "--list",
          list.to_str().unwrap(), "--landmarks", landmarks.to_str().unwrap(), "--out", "emb.npy", "-q"],
        dir.path(),
    );
    assert!(out.status.success(), "{}", text(&out));
    let out = facerec(&["eval", "--features", "emb.npy", "--index", "emb.txt", "--folds", "1,2", "--pairs", data.join("pairs.txt").to_str().unwrap()], dir.path());
    assert!(out.status.success(), "{}", text(&out));
    let expected = format!("{:.2}%", 100.0 * acc);
    assert!(text(&out).contains(&expected), "expected {expected}: {}", text(&out));

    // `facerec compare` takes the run's threshold and decides consistently with it.
    let mtcnn = facerec_data::paths::require("mtcnn")?;
    let img = |p: &str| images.join(p).display().to_string();
    for (a, b) in [("Zico/Zico_0001.jpg", "Zico/Zico_0002.jpg"), ("Zico/Zico_0001.jpg", "Aaron_Eckhart/Aaron_Eckhart_0001.jpg")] {
        let out = facerec(
            &["compare", &img(a), &img(b), "--model", "runs/face/model.safetensors", "--weights", mtcnn.to_str().unwrap(), "-q"],
            dir.path(),
        );
        let code = out.status.code();
        let line = String::from_utf8(out.stdout.clone())?;
        let nums: Vec<f64> = line.split_whitespace().filter_map(|w| w.trim_end_matches(':').parse().ok()).collect();
        assert!(nums.len() >= 2, "{}", text(&out));
        let (cos, th) = (nums[0], nums[1]);
        assert!((-1.0..=1.0).contains(&cos), "{line}");
        assert_eq!(line.contains("same person"), cos >= th, "{line}");
        // The verdict is also the exit status: 0 same person, 4 different people.
        assert_eq!(code, Some(if cos >= th { 0 } else { 4 }), "{line}");
    }

    // insightface .bin round trip: LFW pairs to lfw.bin, then `eval --bin` on it.
    let pairs_small = dir.path().join("pairs_small.txt");
    let all = std::fs::read_to_string(data.join("pairs.txt"))?;
    let lines: Vec<&str> = all.lines().collect();
    // 2 folds of 3 same + 3 different pairs, taken from the real file.
    let small = format!("2\t3\n{}\n{}\n{}\n{}\n", lines[1..4].join("\n"), lines[301..304].join("\n"), lines[601..604].join("\n"), lines[901..904].join("\n"));
    std::fs::write(&pairs_small, small)?;
    let out = facerec(
        &["convert", "--images", images.to_str().unwrap(), "--landmarks", landmarks.to_str().unwrap(), "--pairs",
          pairs_small.to_str().unwrap(), "--to-bin", "small.bin", "--template", "caffe-face", "-q"],
        dir.path(),
    );
    assert!(out.status.success(), "{}", text(&out));
    // Fewer than 10 folds: the kinds alternate within each fold, so that insightface's split
    // into 10 consecutive folds sees both (in file order: same x3, different x3, ...).
    let bin = facerec_data::insightface::EvalBin::read(&dir.path().join("small.bin"))?;
    assert_eq!(bin.issame, [true, false].repeat(6));
    // --folds writes those folds only, the pairs of fold 2 being lines 7-12 of the file.
    let out = facerec(
        &["convert", "--images", images.to_str().unwrap(), "--landmarks", landmarks.to_str().unwrap(), "--pairs",
          pairs_small.to_str().unwrap(), "--folds", "2", "--to-bin", "fold2.bin", "--template", "caffe-face", "-q"],
        dir.path(),
    );
    assert!(out.status.success(), "{}", text(&out));
    let fold2 = facerec_data::insightface::EvalBin::read(&dir.path().join("fold2.bin"))?;
    assert_eq!(fold2.issame, [true, false].repeat(3));
    assert_eq!(fold2.images[..2], bin.images[12..14], "fold 2's first pair");
    let out = facerec(
        &["convert", "--images", images.to_str().unwrap(), "--landmarks", landmarks.to_str().unwrap(), "--pairs",
          pairs_small.to_str().unwrap(), "--folds", "3", "--to-bin", "fold3.bin", "-q"],
        dir.path(),
    );
    assert!(!out.status.success() && text(&out).contains("--folds: fold 3 is not in 1..=2"), "{}", text(&out));
    let out = facerec(&["eval", "--model", "runs/face/model.safetensors", "--bin", "small.bin", "--protocol", "facerec", "-q"], dir.path());
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("over 12 pairs"), "{}", text(&out));
    // By default, insightface's protocol: its log line; a TAR at FAR 1e-3 that 12 pairs in 10
    // folds cannot give is said to be undefined, not printed as NaN.
    let out = facerec(&["eval", "--model", "runs/face/model.safetensors", "--bin", "small.bin", "-q"], dir.path());
    assert!(out.status.success(), "{}", text(&out));
    let said = text(&out);
    assert!(said.contains("XNorm: ") && said.contains("Accuracy-Flip: ") && said.contains("12 pairs"), "{said}");
    assert!(said.contains("undefined") && !said.contains("NaN"), "{said}");
    Ok(())
}

/// Three LFW images in two identity folders, a corrupt JPEG and a blank PNG (no face).
fn detect_folder(dir: &Path) -> Result<(PathBuf, Vec<PathBuf>)> {
    let lfw = facerec_data::paths::require("lfw")?.join("images");
    let rels: Vec<PathBuf> = ["Aaron_Eckhart/Aaron_Eckhart_0001.jpg", "Zico/Zico_0001.jpg", "Zico/Zico_0002.jpg"]
        .iter()
        .map(PathBuf::from)
        .collect();
    let root = dir.join("images");
    for rel in &rels {
        std::fs::create_dir_all(root.join(rel.parent().unwrap()))?;
        std::fs::copy(lfw.join(rel), root.join(rel))?;
    }
    std::fs::create_dir_all(root.join("Broken"))?;
    std::fs::write(root.join("Broken/Broken_0001.jpg"), b"\xff\xd8\xff\xe0 not really a JPEG")?;
    image::RgbImage::from_pixel(160, 160, image::Rgb([90, 90, 90])).save(root.join("Zico/Zico_9999.png"))?;
    Ok((root, rels))
}

#[test]
fn detect_writes_landmarks_and_skips_bad_images_only_when_asked() -> Result {
    let weights = facerec_data::paths::require("mtcnn")?;
    let lfw = facerec_data::paths::require("lfw")?;
    let dir = tempfile::tempdir()?;
    let (root, rels) = detect_folder(dir.path())?;
    let out_tsv = dir.path().join("out.tsv");
    let args = |weights: &Path, extra: &[&str]| -> Vec<String> {
        let mut a: Vec<String> = vec!["detect".into(), "--images".into(), root.display().to_string()];
        a.extend(["--out".into(), out_tsv.display().to_string(), "--weights".into(), weights.display().to_string()]);
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    };
    let run = |a: Vec<String>| facerec(&a.iter().map(String::as_str).collect::<Vec<_>>(), dir.path());

    // Without --skip-bad the corrupt file (first in sorted order) is an error naming it.
    let out = run(args(&weights, &["-q"]));
    assert!(!out.status.success());
    let msg = text(&out);
    assert!(msg.contains("Broken_0001.jpg") && msg.contains("--skip-bad"), "{msg}");
    assert!(!out_tsv.exists(), "nothing may be written when an image fails");

    let compare = lfw.join("landmarks_5pt.tsv");
    let out = run(args(&weights, &["-q", "--skip-bad", "--compare", compare.to_str().unwrap()]));
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8(out.stdout)?;
    assert!(stdout.contains("landmarks of 3 of 5 images"), "{stdout}");
    assert!(stdout.contains("skipped 2 images (1 without a face, 1 undecodable)"), "{stdout}");
    assert!(stdout.contains("Broken_0001.jpg") && stdout.contains("Zico_9999.png: no face found"), "{stdout}");
    assert!(stdout.contains("on 3 images"), "{stdout}");

    let ours = LandmarkFile::read(&out_tsv, OnBad::Fail)?;
    let theirs = LandmarkFile::read(&compare, OnBad::Fail)?;
    assert_eq!(ours.entries.len(), 3);
    for rel in &rels {
        let (a, b) = (&ours.entries[rel], &theirs.entries[rel]);
        let score = a.score.ok_or("no score")?;
        assert!(score > 0.7 && score <= 1.0, "{}: score {score}", rel.display());
        for (p, q) in a.landmarks.0.iter().zip(&b.landmarks.0) {
            let d = ((p[0] - q[0]).powi(2) + (p[1] - q[1]).powi(2)).sqrt();
            assert!(d < 12.0, "{}: {p:?} vs {q:?}", rel.display());
        }
    }

    // Missing weights: the error says how to get them.
    let out = run(args(Path::new("no-such-dir"), &["-q"]));
    assert!(!out.status.success());
    assert!(text(&out).contains("scripts/setup.sh"), "{}", text(&out));
    Ok(())
}

// --- Data-parallel training: facerec launch, and ranks that fail --------------------------------

/// A TCP port that was free a moment ago.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
}

/// Overrides that make the tiny MNIST config train (nearly) forever on one thread, with a step
/// logged each step and no evaluation.
fn endless() -> Vec<String> {
    ["schedule.epochs=", "schedule.steps=1000000", "eval.disabled=true", "log.every_steps=1", "threads=1"]
        .iter()
        .flat_map(|s| ["--set".to_string(), s.to_string()])
        .collect()
}

/// Steps logged so far in a run directory.
fn steps_logged(run: &Path) -> usize {
    std::fs::read_to_string(run.join("steps.jsonl")).map_or(0, |s| s.lines().count())
}

/// Waits for `child` at most `limit`; kills it and returns `None` when it is still running.
fn wait_at_most(child: &mut Child, limit: Duration) -> Result<Option<ExitStatus>> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if let Some(status) = child.try_wait()? {
            return Ok(Some(status));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.kill()?;
    child.wait()?;
    Ok(None)
}

fn wait_for(what: &str, limit: Duration, mut done: impl FnMut() -> bool) -> Result {
    let start = Instant::now();
    while !done() {
        if start.elapsed() > limit {
            return Err(format!("gave up waiting for {what} after {limit:?}").into());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

#[test]
fn launch_trains_on_two_processes_and_only_rank_0_reports() -> Result {
    let dir = tempfile::tempdir()?;
    let cfg = mnist_config(dir.path(), 0.01)?;
    let port = free_port().to_string();
    let out = facerec(
        &["launch", "--nproc", "2", "--master-port", &port, "--", "train", cfg.to_str().unwrap(), "--name", "dp", "--set", "threads=1"],
        dir.path(),
    );
    let msg = text(&out);
    assert!(out.status.success(), "{msg}");
    let stdout = String::from_utf8(out.stdout)?;
    assert!(stdout.lines().any(|l| l.starts_with("[rank 0] runs/dp: test accuracy")), "{msg}");
    assert!(!stdout.contains("[rank 1] runs/dp"), "only rank 0 reports: {msg}");
    let run = dir.path().join("runs/dp");
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(run.join("report.json"))?)?;
    assert_eq!(report["steps"], 10, "320 images, global batch 32: 10 steps of 16 per rank");
    let ck = facerec_train::checkpoint::load(&facerec_train::checkpoint::path(&run, 10))?;
    assert_eq!(ck.world_size, 2);
    Ok(())
}

/// Two launches on this machine as two "nodes" of two ranks each (`--nnodes 2 --node-rank K`,
/// the loopback interface as the network) train exactly as one launch of four ranks: the same
/// losses and, bit for bit, the same weights and momentum (the same world, ranks and Gloo
/// collectives; only the processes' parents differ).
#[test]
fn two_nodes_of_two_ranks_train_as_one_launch_of_four() -> Result {
    let dir = tempfile::tempdir()?;
    let cfg = mnist_config(dir.path(), 0.01)?;
    let cfg = cfg.to_str().unwrap();
    let port = free_port().to_string();
    let one = facerec(&["launch", "--nproc", "4", "--master-port", &port, "--", "train", cfg, "--name", "one", "--set", "threads=1"], dir.path());
    assert!(one.status.success(), "{}", text(&one));

    let port = free_port().to_string();
    let node = |k: &str| {
        command(
            &["launch", "--nnodes", "2", "--node-rank", k, "--nproc", "2", "--master-addr", "127.0.0.1", "--master-port", &port]
                .into_iter()
                .chain(["--timeout", "120", "--", "train", cfg, "--name", "two", "--set", "threads=1"])
                .collect::<Vec<_>>(),
            dir.path(),
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    };
    let (node1, node0) = (node("1")?, node("0")?); // node 1 first: its ranks wait for the store
    let (out0, out1) = (node0.wait_with_output()?, node1.wait_with_output()?);
    assert!(out0.status.success() && out1.status.success(), "node 0:\n{}\nnode 1:\n{}", text(&out0), text(&out1));
    let stdout1 = String::from_utf8_lossy(&out1.stdout) + String::from_utf8_lossy(&out1.stderr);
    // Node 1 starts global ranks 2 and 3 (which print nothing: only rank 0 reports).
    assert!(stdout1.contains("[launch] rank 2: pid") && stdout1.contains("[launch] rank 3: pid"), "{stdout1}");
    assert!(!stdout1.contains("[launch] rank 0") && !stdout1.contains("[launch] rank 1"), "{stdout1}");

    let losses = |run: &str| -> Result<Vec<(u64, f64)>> {
        let text = std::fs::read_to_string(dir.path().join("runs").join(run).join("steps.jsonl"))?;
        text.lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l)?;
                Ok((v["step"].as_u64().ok_or("no step")?, v["loss"].as_f64().ok_or("no loss")?))
            })
            .collect()
    };
    let one_losses = losses("one")?;
    assert!(!one_losses.is_empty());
    assert_eq!(one_losses, losses("two")?, "the logged losses differ");
    let [a, b] = ["one", "two"].map(|run| facerec_train::checkpoint::load(&facerec_train::checkpoint::path(&dir.path().join("runs").join(run), 10)));
    let (a, b) = (a?, b?);
    assert_eq!((a.world_size, b.world_size), (4, 4));
    for ((name, x), (other, y)) in a.model.iter().chain(&a.optimizer).zip(b.model.iter().chain(&b.optimizer)) {
        assert_eq!(name, other);
        assert!(x.equal(y), "{name} differs between one launch of 4 and two nodes of 2");
    }
    Ok(())
}

#[test]
fn launch_refuses_node_settings_that_cannot_meet() -> Result {
    let dir = tempfile::tempdir()?;
    for (args, expected) in [
        (vec!["--nnodes", "2", "--node-rank", "2"], "--node-rank 2 is not a node of --nnodes 2"),
        (vec!["--nnodes", "2", "--node-rank", "1", "--master-port", "0"], "works on one node only"),
        (vec!["--nnodes", "0"], "--nnodes must be at least 1"),
    ] {
        let mut all = vec!["launch", "--nproc", "1"];
        all.extend(args);
        all.extend(["--", "info"]);
        let out = facerec(&all, dir.path());
        assert!(!out.status.success() && text(&out).contains(expected), "{all:?}: {}", text(&out));
    }
    Ok(())
}

#[test]
fn a_gpu_that_is_not_there_is_a_clear_error_before_any_work() -> Result {
    // cuda:63: no machine this runs on has 64 GPUs, with or without CUDA.
    let dir = tempfile::tempdir()?;
    let cfg = mnist_config(dir.path(), 0.01)?;
    let out = facerec(&["train", cfg.to_str().unwrap(), "--set", "device=cuda:63"], dir.path());
    let msg = text(&out);
    assert!(!out.status.success());
    assert!(msg.contains("device cuda:63 asked for, but libtorch sees") && msg.contains("facerec info"), "{msg}");
    assert!(!msg.contains("backbone configuration"), "{msg}");
    assert!(!dir.path().join("runs").exists(), "nothing may be written");
    Ok(())
}

#[test]
fn bench_under_launch_times_each_ranks_share_with_the_training_checks() -> Result {
    // `facerec bench` under `facerec launch` sets up its rank as training does (the same
    // device choice and checks, crates/experiment/src/run.rs): 2 ranks time their halves of the
    // global batch, and a batch the world cannot split is refused.
    let dir = tempfile::tempdir()?;
    let cfg = mnist_config(dir.path(), 0.01)?;
    let port = free_port().to_string();
    let bench = |batch: &str| {
        let args = ["launch", "--nproc", "2", "--master-port", &port, "--", "bench", cfg.to_str().unwrap(), "--steps", "2", "--batch", batch, "--threads", "1"];
        facerec(&args, dir.path())
    };
    let out = bench("32");
    let msg = text(&out);
    assert!(out.status.success(), "{msg}");
    assert!(msg.contains("batch 32 over 2 ranks on cpu") && msg.contains("images/s"), "{msg}");
    let out = bench("33");
    let msg = text(&out);
    assert!(!out.status.success() && msg.contains("optim.batch_size 33") && msg.contains("world size 2"), "{msg}");
    Ok(())
}

#[test]
fn a_global_batch_the_world_cannot_split_fails_before_any_work() -> Result {
    let dir = tempfile::tempdir()?;
    let cfg = mnist_config(dir.path(), 0.01)?;
    let out = command(&["train", cfg.to_str().unwrap()], dir.path())
        .envs([("RANK", "0"), ("WORLD_SIZE", "3"), ("MASTER_ADDR", "127.0.0.1"), ("MASTER_PORT", "1")])
        .output()?;
    let msg = text(&out);
    assert!(!out.status.success());
    assert!(msg.contains("optim.batch_size 32") && msg.contains("world size 3"), "{msg}");
    assert!(!dir.path().join("runs").exists(), "nothing may be written");
    Ok(())
}

#[test]
fn a_killed_rank_makes_the_other_fail_clearly_not_hang() -> Result {
    // Two ranks started by hand (no launcher to clean up); rank 1 is SIGKILLed mid-training.
    // Rank 0 must exit non-zero with an error that names the step and the cause, long before
    // its 60 s timeout: Gloo sees the dead peer's closed connection.
    let dir = tempfile::tempdir()?;
    let cfg = mnist_config(dir.path(), 0.01)?;
    let port = free_port().to_string();
    let mut ranks = Vec::new();
    for rank in ["0", "1"] {
        let mut args = vec!["train".to_string(), cfg.display().to_string(), "--name".into(), "kill".into()];
        args.extend(endless());
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        let child = command(&argv, dir.path())
            .envs([("RANK", rank), ("WORLD_SIZE", "2"), ("LOCAL_RANK", rank), ("MASTER_ADDR", "127.0.0.1")])
            .envs([("MASTER_PORT", port.as_str()), ("FACEREC_DIST_TIMEOUT", "60")])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        ranks.push(child);
    }
    let run = dir.path().join("runs/kill");
    let started = wait_for("3 logged steps", Duration::from_secs(60), || steps_logged(&run) >= 3);
    let mut rank0 = ranks.remove(0);
    let mut rank1 = ranks.remove(0);
    if let Err(e) = started {
        for r in [&mut rank0, &mut rank1] {
            let _ = r.kill();
            let _ = r.wait();
        }
        return Err(e);
    }
    // SIGKILL (an error only if it had exited already: rank 0's outcome below tells).
    let _ = rank1.kill();
    let _ = rank1.wait();
    let t0 = Instant::now();
    let status = wait_at_most(&mut rank0, Duration::from_secs(30))?;
    let waited = t0.elapsed();
    let out = rank0.wait_with_output()?;
    let msg = text(&out);
    let status = status.ok_or_else(|| format!("rank 0 still running 30 s after rank 1 died:\n{msg}"))?;
    assert!(!status.success(), "{msg}");
    assert!(msg.contains("error: distributed training, step") && msg.contains("rank 0 of 2"), "{msg}");
    assert!(msg.contains("another rank has exited"), "{msg}");
    assert!(waited < Duration::from_secs(15), "rank 0 took {waited:?} to notice");
    Ok(())
}

/// Sends `signal` to every process of the group `pgid` (a terminal's Ctrl-C does this).
fn signal_group(pgid: u32, signal: libc::c_int) {
    // SAFETY: signals a process group this test created (its leader is a live child).
    assert_eq!(unsafe { libc::kill(-(pgid as libc::pid_t), signal) }, 0, "signalling group {pgid}");
}

#[test]
fn ctrl_c_to_the_whole_group_under_launch_checkpoints_every_rank_and_exits_130() -> Result {
    // As a terminal does: SIGINT to the launcher's whole process group, once.
    use std::os::unix::process::CommandExt;
    let dir = tempfile::tempdir()?;
    let cfg = mnist_config(dir.path(), 0.01)?;
    let port = free_port().to_string();
    let cfg_arg = cfg.display().to_string();
    let mut args = vec!["launch", "--nproc", "2", "--master-port", &port, "--timeout", "60", "--", "train", &cfg_arg];
    args.extend(["--name", "ctrl_c"]);
    let rest = endless();
    args.extend(rest.iter().map(String::as_str));
    let mut launcher = command(&args, dir.path()).process_group(0).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn()?;
    let run = dir.path().join("runs/ctrl_c");
    if let Err(e) = wait_for("3 logged steps", Duration::from_secs(60), || steps_logged(&run) >= 3) {
        launcher.kill()?;
        let out = launcher.wait_with_output()?;
        return Err(format!("{e}: {}", text(&out)).into());
    }
    signal_group(launcher.id(), libc::SIGINT);
    let status = wait_at_most(&mut launcher, Duration::from_secs(60))?;
    let out = launcher.wait_with_output()?;
    let msg = text(&out);
    let status = status.ok_or_else(|| format!("the launch still runs 60 s after Ctrl-C:\n{msg}"))?;
    assert_eq!(status.code(), Some(130), "{msg}");
    assert!(!msg.contains("interrupted twice") && !msg.contains("SIGSEGV"), "{msg}");
    assert!(msg.contains("[rank 0] interrupted at step") && msg.contains("--resume"), "{msg}");
    let ck = facerec_train::checkpoint::latest_valid(&run)?.ok_or_else(|| format!("no checkpoint after Ctrl-C:\n{msg}"))?;
    assert_eq!(ck.world_size, 2);
    Ok(())
}

#[test]
fn a_single_train_under_a_group_wide_ctrl_c_exits_130_and_twice_exits_at_once() -> Result {
    use std::os::unix::process::CommandExt;
    let dir = tempfile::tempdir()?;
    let cfg = mnist_config(dir.path(), 0.01)?;
    let cfg_arg = cfg.display().to_string();
    for (name, signals) in [("once", 1), ("twice", 2)] {
        let mut args = vec!["train", cfg_arg.as_str(), "--name", name];
        let rest = endless();
        args.extend(rest.iter().map(String::as_str));
        let mut child = command(&args, dir.path()).process_group(0).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn()?;
        let run = dir.path().join("runs").join(name);
        if let Err(e) = wait_for("3 logged steps", Duration::from_secs(60), || steps_logged(&run) >= 3) {
            child.kill()?;
            return Err(e);
        }
        for _ in 0..signals {
            signal_group(child.id(), libc::SIGINT);
            std::thread::sleep(Duration::from_millis(5));
        }
        let status = wait_at_most(&mut child, Duration::from_secs(60))?;
        let out = child.wait_with_output()?;
        let msg = text(&out);
        let status = status.ok_or_else(|| format!("{name}: still running 60 s after Ctrl-C:\n{msg}"))?;
        // Exit code 130 either way, never a crash; a single Ctrl-C leaves a checkpoint.
        assert_eq!(status.code(), Some(130), "{name}: {status:?}\n{msg}");
        if signals == 1 {
            assert!(msg.contains("interrupted at step"), "{msg}");
            assert!(facerec_train::checkpoint::latest_valid(&run)?.is_some(), "{msg}");
        }
    }
    Ok(())
}

#[test]
fn launch_stops_every_rank_when_one_dies() -> Result {
    let dir = tempfile::tempdir()?;
    let cfg = mnist_config(dir.path(), 0.01)?;
    let port = free_port().to_string();
    let mut args = vec!["launch", "--nproc", "2", "--master-port", &port, "--timeout", "60", "--", "train"];
    let cfg_arg = cfg.display().to_string();
    args.extend([cfg_arg.as_str(), "--name", "launch_kill"]);
    let rest = endless();
    args.extend(rest.iter().map(String::as_str));
    let mut launcher = command(&args, dir.path()).stdout(Stdio::null()).stderr(Stdio::piped()).spawn()?;
    // The launcher names its ranks' pids on stderr; keep reading it on a thread.
    let stderr = launcher.stderr.take().ok_or("stderr")?;
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr).lines().map_while(std::result::Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut lines = Vec::new();
    let pid_of = |lines: &[String], rank: usize| -> Option<i32> {
        let prefix = format!("[launch] rank {rank}: pid ");
        lines.iter().find_map(|l| l.strip_prefix(&prefix)?.split_whitespace().next()?.parse().ok())
    };
    let run = dir.path().join("runs/launch_kill");
    let ready = wait_for("3 logged steps", Duration::from_secs(60), || {
        lines.extend(rx.try_iter());
        steps_logged(&run) >= 3
    });
    let (Ok(()), Some(pid0), Some(pid1)) = (ready, pid_of(&lines, 0), pid_of(&lines, 1)) else {
        launcher.kill()?;
        return Err(format!("the launch did not start: {lines:?}").into());
    };
    // SAFETY: rank 1 is a live child of the launcher, which has not reaped it.
    assert_eq!(unsafe { libc::kill(pid1, libc::SIGKILL) }, 0);
    let status = wait_at_most(&mut launcher, Duration::from_secs(30))?;
    reader.join().map_err(|_| "reader")?;
    lines.extend(rx.try_iter());
    let msg = lines.join("\n");
    let status = status.ok_or_else(|| format!("the launcher still runs 30 s after rank 1 died:\n{msg}"))?;
    assert!(!status.success(), "{msg}");
    assert!(msg.contains("error: rank ") && msg.contains(" of 2 ") && msg.contains("the other ranks were stopped"), "{msg}");
    // Rank 0 is gone too (reaped by the launcher).
    // SAFETY: signal 0 only asks whether the pid exists.
    assert_ne!(unsafe { libc::kill(pid0, 0) }, 0, "rank 0 (pid {pid0}) survived the launcher");
    Ok(())
}

// --- Issue 17: compare's features, .bin sets of the other template, eval --out, --overwrite,
// error chains ------------------------------------------------------------------------------


/// Ten pairs of LFW's fold 1 (five same, five different) as two insightface `.bin` sets of PNG
/// crops aligned with the landmarks file: `lfw112.bin` (insightface template, 112x112) and
/// `lfw96.bin` (caffe-face, 112x96).
fn lfw_bins(dir: &Path) -> Result<(PathBuf, PathBuf)> {
    use facerec_data::align::{align, Template};
    let lfw = facerec_data::paths::require("lfw")?;
    let pairs = facerec_data::lfw::Pairs::read(&lfw.join("pairs.txt"))?;
    let landmarks = LandmarkFile::read(&lfw.join("landmarks_5pt.tsv"), OnBad::Fail)?;
    let fold: Vec<_> = pairs.of_folds(&[0]);
    let chosen: Vec<_> =
        fold.iter().filter(|p| p.same).take(5).chain(fold.iter().filter(|p| !p.same).take(5)).collect();
    let mut paths = Vec::new();
    for template in [Template::Insightface, Template::CaffeFace] {
        let (h, w) = template.size();
        let mut bin = facerec_data::insightface::EvalBin { images: Vec::new(), issame: Vec::new() };
        for p in &chosen {
            for rel in [&p.a, &p.b] {
                let img = facerec_data::image_io::read_rgb(&lfw.join("images").join(rel))?;
                let crop = align(&img, &landmarks.entries[rel].landmarks, template)?;
                let crop = image::RgbImage::from_raw(w, h, crop).ok_or("crop size")?;
                let mut png = Vec::new();
                crop.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)?;
                bin.images.push(png);
            }
            bin.issame.push(p.same);
        }
        let path = dir.join(format!("lfw{w}.bin"));
        bin.write(&path)?;
        paths.push(path);
    }
    Ok((paths[0].clone(), paths[1].clone()))
}

fn read_json(path: &Path) -> Result<serde_json::Value> {
    Ok(serde_json::from_slice(&std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?)?)
}

#[test]
fn eval_scores_a_112x112_bin_with_a_112x96_model_and_writes_the_report_to_out() -> Result {
    let dir = tempfile::tempdir()?;
    random_face_model(&dir.path().join("m/model.safetensors"))?;
    let (wide, narrow) = lfw_bins(dir.path())?;
    for (bin, out) in [(&wide, "r112"), (&narrow, "r96")] {
        let o = facerec(
            &["eval", "--model", "m/model.safetensors", "--bin", bin.to_str().unwrap(), "--protocol", "facerec", "--out", out, "-q"],
            dir.path(),
        );
        assert!(o.status.success(), "{}", text(&o));
        assert!(text(&o).contains("over 10 pairs"), "{}", text(&o));
        for f in ["lfw_report.json", "lfw_roc.png", "lfw_scores.png"] {
            assert!(dir.path().join(out).join(f).is_file(), "{out}/{f} missing");
        }
    }
    // Columns 8..104 of the 112x112 crops are the 112x96 crops (up to the rounding of a few
    // pixels by the warp): the same scores, so the same thresholds and accuracy.
    let (a, b) = (read_json(&dir.path().join("r112/lfw_report.json"))?, read_json(&dir.path().join("r96/lfw_report.json"))?);
    assert_eq!(a["flip"], true);
    assert!(a["protocol"].as_str().unwrap().contains("lfw112.bin"), "{}", a["protocol"]);
    let (va, vb) = (&a["verification"], &b["verification"]);
    assert_eq!(va["accuracy_mean"], vb["accuracy_mean"]);
    let (ta, tb) = (va["fold_threshold"].as_array().unwrap(), vb["fold_threshold"].as_array().unwrap());
    assert_eq!(ta.len(), 10);
    for (x, y) in ta.iter().zip(tb) {
        let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
        assert!((x - y).abs() < 1e-2, "thresholds {ta:?} vs {tb:?}");
    }
    // Without --out nothing is written.
    let o = facerec(&["eval", "--model", "m/model.safetensors", "--bin", wide.to_str().unwrap(), "-q"], dir.path());
    assert!(o.status.success(), "{}", text(&o));
    assert!(!dir.path().join("lfw_report.json").exists());
    Ok(())
}

#[test]
fn compare_computes_the_features_its_threshold_was_chosen_on() -> Result {
    let mtcnn = facerec_data::paths::require("mtcnn")?;
    let images = facerec_data::paths::require("lfw")?.join("images");
    let dir = tempfile::tempdir()?;
    random_face_model(&dir.path().join("m/model.safetensors"))?;
    let (wide, _) = lfw_bins(dir.path())?;
    for (out, extra) in [("flip", &["--protocol", "facerec"][..]), ("noflip", &["--protocol", "facerec", "--no-flip"]), ("insightface", &[])] {
        let mut args = vec!["eval", "--model", "m/model.safetensors", "--bin", wide.to_str().unwrap(), "--out", out, "-q"];
        args.extend(extra);
        let o = facerec(&args, dir.path());
        assert!(o.status.success(), "{}", text(&o));
    }
    let (a, b) = (images.join("Zico/Zico_0001.jpg"), images.join("Zico/Zico_0002.jpg"));
    let compare = |extra: &[&str]| -> Result<(f64, f64, String)> {
        let mut args = vec!["compare", a.to_str().unwrap(), b.to_str().unwrap(), "--model", "m/model.safetensors"];
        args.extend(["--weights", mtcnn.to_str().unwrap(), "-q"]);
        args.extend(extra);
        let o = facerec(&args, dir.path());
        // 0: same person, 4: different people (a random model may say either).
        assert!(matches!(o.status.code(), Some(0 | 4)), "{}", text(&o));
        let line = String::from_utf8(o.stdout)?;
        let nums: Vec<f64> = line.split_whitespace().filter_map(|w| w.trim_end_matches(':').parse().ok()).collect();
        Ok((nums[0], nums[1], line))
    };
    let mean_threshold = |out: &str| -> Result<f64> {
        let r = read_json(&dir.path().join(out).join("lfw_report.json"))?;
        let ts: Vec<f64> = r["verification"]["fold_threshold"].as_array().unwrap().iter().filter_map(|t| t.as_f64()).collect();
        Ok(ts.iter().sum::<f64>() / ts.len() as f64)
    };
    // A report of image+mirror features: compare uses the mirror too, as without a report.
    let (cos_flip, th, line) = compare(&["--report", "flip/lfw_report.json"])?;
    assert!(line.contains("features of image and mirror"), "{line}");
    assert!((th - mean_threshold("flip")?).abs() < 1e-4, "{line}");
    assert_eq!(compare(&["--threshold", "0.5"])?.0, cos_flip);
    // A report made without the mirror: compare leaves it out too.
    let (cos_plain, th, line) = compare(&["--report", "noflip/lfw_report.json"])?;
    assert!(line.contains("features of the image alone"), "{line}");
    assert!((th - mean_threshold("noflip")?).abs() < 1e-4, "{line}");
    assert_eq!(compare(&["--threshold", "0.5", "--no-flip"])?.0, cos_plain);
    assert_ne!(cos_flip, cos_plain, "the two settings must compute different features");
    // A report of insightface's protocol: image and mirror features summed, as `facerec embed
    // --flip`'s two halves added by hand.
    let (cos_sum, th, line) = compare(&["--report", "insightface/lfw_report.json"])?;
    assert!(line.contains("summed"), "{line}");
    assert!((th - mean_threshold("insightface")?).abs() < 1e-4, "{line}");
    let o = facerec(
        &["embed", "--model", "m/model.safetensors", "--images", a.to_str().unwrap(), b.to_str().unwrap(), "--flip",
          "--weights", mtcnn.to_str().unwrap(), "--out", "two.npy", "-q"],
        dir.path(),
    );
    assert!(o.status.success(), "{}", text(&o));
    let e = facerec_data::npy::read::<f32, ndarray::Ix2>(&dir.path().join("two.npy"))?;
    let d = e.ncols() / 2;
    let summed: Vec<Vec<f64>> = (0..2).map(|r| (0..d).map(|j| f64::from(e[[r, j]]) + f64::from(e[[r, d + j]])).collect()).collect();
    let dot = |u: &[f64], v: &[f64]| u.iter().zip(v).map(|(x, y)| x * y).sum::<f64>();
    let by_hand = dot(&summed[0], &summed[1]) / (dot(&summed[0], &summed[0]) * dot(&summed[1], &summed[1])).sqrt();
    assert!((cos_sum - by_hand).abs() < 1e-4, "compare {cos_sum} vs summed by hand {by_hand}");
    // Asking for other features than the report's threshold was chosen on is refused.
    let o = facerec(
        &["compare", a.to_str().unwrap(), b.to_str().unwrap(), "--model", "m/model.safetensors", "--report", "flip/lfw_report.json", "--no-flip"],
        dir.path(),
    );
    assert!(!o.status.success());
    assert!(text(&o).contains("--threshold"), "{}", text(&o));
    Ok(())
}

/// An `.npy` of `[rows, cols]` little-endian float32, written by hand (format 1.0).
fn write_npy_f32(path: &Path, rows: usize, cols: usize, data: &[f32]) -> Result {
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({rows}, {cols}), }}");
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    for v in data {
        bytes.extend_from_slice(&v.to_le_bytes());
    }
    std::fs::write(path, bytes)?;
    Ok(())
}

/// Pseudo-random features (8-d) for the images of LFW's folds 1 and 2: `feats.npy` and
/// `feats.txt`.
fn folds12_features(dir: &Path) -> Result<PathBuf> {
    let pairs = facerec_data::lfw::Pairs::read(&facerec_data::paths::require("lfw")?.join("pairs.txt"))?;
    let images = pairs.images(&[0, 1]);
    let mut state = 12345u64;
    let data: Vec<f32> = (0..images.len() * 8)
        .map(|_| {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (state >> 40) as f32 / (1u64 << 24) as f32 - 0.5
        })
        .collect();
    write_npy_f32(&dir.join("feats.npy"), images.len(), 8, &data)?;
    std::fs::write(dir.join("feats.txt"), images.iter().map(|p| format!("{}\n", p.display())).collect::<String>())?;
    Ok(dir.join("feats.npy"))
}

#[test]
fn eval_features_writes_its_report_to_out_and_compare_will_not_guess_its_features() -> Result {
    let pairs = facerec_data::paths::require("lfw")?.join("pairs.txt");
    let dir = tempfile::tempdir()?;
    folds12_features(dir.path())?;
    let o = facerec(
        &["eval", "--features", "feats.npy", "--index", "feats.txt", "--folds", "1,2", "--pairs", pairs.to_str().unwrap(), "--out", "ext"],
        dir.path(),
    );
    assert!(o.status.success(), "{}", text(&o));
    for f in ["lfw_report.json", "lfw_roc.png", "lfw_scores.png"] {
        assert!(dir.path().join("ext").join(f).is_file(), "ext/{f} missing");
    }
    let report = read_json(&dir.path().join("ext/lfw_report.json"))?;
    let acc = report["verification"]["accuracy_mean"].as_f64().unwrap();
    assert!(text(&o).contains(&format!("{:.2}%", 100.0 * acc)), "{}", text(&o));
    assert_eq!(report["verification"]["pairs"], 1200);
    assert!(report["flip"].is_null() && report["protocol"].as_str().unwrap().contains("feats.npy"), "{report}");
    // Features computed elsewhere: compare cannot know how to compute them, and says so before
    // any work (the model is not even read).
    let o = facerec(&["compare", "a.jpg", "b.jpg", "--model", "none.safetensors", "--report", "ext/lfw_report.json"], dir.path());
    assert!(!o.status.success());
    assert!(text(&o).contains("ext/lfw_report.json") && text(&o).contains("--threshold"), "{}", text(&o));
    Ok(())
}

#[test]
fn overwrite_clears_every_file_a_run_wrote() -> Result {
    let pairs = facerec_data::paths::require("lfw")?.join("pairs.txt");
    let dir = tempfile::tempdir()?;
    let cfg = mnist_config(dir.path(), 0.01)?;
    let cfg = cfg.to_str().unwrap();
    // Everything a run writes: an MNIST run's files, and an LFW report in the run directory
    // (as `facerec eval <run>` writes it), from features to keep the test quick.
    assert!(facerec(&["train", cfg, "--name", "x", "-q"], dir.path()).status.success());
    folds12_features(dir.path())?;
    let o = facerec(
        &["eval", "--features", "feats.npy", "--index", "feats.txt", "--folds", "1,2", "--pairs", pairs.to_str().unwrap(), "--out", "runs/x"],
        dir.path(),
    );
    assert!(o.status.success(), "{}", text(&o));
    // A re-evaluation beside the run's report (as `facerec eval RUN --pca 8` writes it), and a
    // resume with a changed setting (recorded in changes.jsonl).
    let o = facerec(
        &["eval", "--features", "feats.npy", "--index", "feats.txt", "--folds", "1,2", "--pairs", pairs.to_str().unwrap(), "--out", "runs/x/eval_pca8"],
        dir.path(),
    );
    assert!(o.status.success(), "{}", text(&o));
    let o = facerec(&["train", cfg, "--name", "x", "--resume", "--allow-changes", "--set", "schedule.epochs=2", "-q"], dir.path());
    assert!(o.status.success(), "{}", text(&o));
    let run = dir.path().join("runs/x");
    std::fs::write(run.join("notes.txt"), "the user's own file")?;
    let listing = || -> Result<Vec<String>> {
        let mut names: Vec<String> =
            std::fs::read_dir(&run)?.map(|e| Ok(e?.file_name().to_string_lossy().into_owned())).collect::<Result<_>>()?;
        names.sort();
        Ok(names)
    };
    let before = listing()?;
    for f in ["checkpoints", "report.json", "features.png", "training.png", "lfw_report.json", "lfw_roc.png", "eval_pca8", "changes.jsonl"] {
        assert!(before.iter().any(|n| n == f), "{f} missing from {before:?}");
    }
    assert!(before.iter().any(|n| n.starts_with("events.out.tfevents.")), "{before:?}");
    // `--overwrite` with data that cannot be read: the old run is gone before the data fails.
    let empty = dir.path().join("no-mnist-here");
    std::fs::create_dir(&empty)?;
    let o = facerec(&["train", cfg, "--name", "x", "--overwrite", "--set", &format!("data.dir={}", empty.display()), "-q"], dir.path());
    assert!(!o.status.success(), "{}", text(&o));
    assert_eq!(listing()?, vec!["notes.txt".to_string()], "left behind by --overwrite (run wrote {before:?})");
    Ok(())
}

#[test]
fn error_chains_say_each_cause_once() -> Result {
    // From the command line.
    let dir = tempfile::tempdir()?;
    let o = facerec(&["train", "nope.toml"], dir.path());
    assert!(!o.status.success());
    let err = String::from_utf8(o.stderr)?;
    assert_eq!(err.matches("No such file or directory").count(), 1, "{err}");
    assert!(err.contains("nope.toml"), "{err}");

    // Every variant of every crate's error that wraps another error, as `main` prints it.
    let io = || std::io::Error::other("disk on fire");
    let torch = || tch::TchError::Torch("shape mismatch".into());
    let ops = || facerec_ops::OpsError::Op("shape mismatch".into());
    let path = PathBuf::from("x.bin");
    let errors: Vec<anyhow::Error> = vec![
        facerec_core::CoreError::Io { path: path.clone(), error: io() }.into(),
        facerec_data::DataError::Io { path: path.clone(), error: io() }.into(),
        facerec_data::DataError::Torch(torch()).into(),
        facerec_model::ModelError::Io { path: path.clone(), error: io() }.into(),
        facerec_model::ModelError::Torch(torch()).into(),
        facerec_model::ModelError::Ops(ops()).into(),
        facerec_losses::LossError::Torch(torch()).into(),
        facerec_train::TrainError::Io { path: path.clone(), error: io() }.into(),
        facerec_train::TrainError::Torch(torch()).into(),
        facerec_train::TrainError::Ops(ops()).into(),
        facerec_train::TrainError::Core(facerec_core::CoreError::Io { path: path.clone(), error: io() }).into(),
        facerec_train::TrainError::Data(facerec_data::DataError::Io { path: path.clone(), error: io() }).into(),
        facerec_train::TrainError::Model(facerec_model::ModelError::Ops(ops())).into(),
        facerec_eval::EvalError::Io { path: path.clone(), error: io() }.into(),
        facerec_eval::EvalError::Torch(torch()).into(),
        facerec_eval::EvalError::Core(facerec_core::CoreError::Io { path: path.clone(), error: io() }).into(),
        facerec_eval::EvalError::Data(facerec_data::DataError::Torch(torch())).into(),
        facerec_experiment::ExperimentError::Train(facerec_train::TrainError::Io { path: path.clone(), error: io() }).into(),
        facerec_experiment::ExperimentError::Eval(facerec_eval::EvalError::Io { path: path.clone(), error: io() }).into(),
        facerec_experiment::ExperimentError::Io { path: path.clone(), error: io() }.into(),
        facerec_train::TrainError::from(tch::TchError::Torch("shape mismatch".into())).into(),
    ];
    for e in errors {
        let shown = format!("{:#}", e.context("reading x.bin"));
        let cause = if shown.contains("disk on fire") { "disk on fire" } else { "shape mismatch" };
        assert_eq!(shown.matches(cause).count(), 1, "{shown}");
    }
    Ok(())
}

/// `facerec export` of a run directory that has no model yet says which file is missing and
/// writes nothing; of a model file it writes an ONNX model that the five lines of Python in
/// docs/getting-started.md (taken from the page and run as they are, with onnxruntime) turn
/// into the features `facerec embed --aligned` gives for the same real aligned crop.
#[test]
fn export_to_onnx_and_the_documented_python_give_embeds_features() -> Result {
    let dir = tempfile::tempdir()?;
    std::fs::create_dir_all(dir.path().join("runs/unfinished/checkpoints"))?;
    let o = facerec(&["export", "runs/unfinished", "--onnx", "faceresnet.onnx"], dir.path());
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let err = text(&o);
    assert!(err.contains("runs/unfinished/model.safetensors: no such model file") && err.contains("once training has finished"), "{err}");
    assert!(!dir.path().join("faceresnet.onnx").exists());

    random_face_model(&dir.path().join("m/model.safetensors"))?;
    let o = facerec(&["export", "m/model.safetensors", "--onnx", "faceresnet.onnx"], dir.path());
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("opset 13") && text(&o).contains("(p - 127.5) / 128"), "{}", text(&o));

    // A real aligned crop, and facerec's features of it.
    let lfw = facerec_data::paths::require("lfw")?;
    let ds = facerec_data::dataset::FaceDataset::from_folders(&lfw.join("images"))?;
    let lms = LandmarkFile::read(&lfw.join("landmarks_5pt.tsv"), OnBad::Fail)?;
    let crop = facerec_data::cache::aligned_crop(&ds, &ds.samples[100], &lms, facerec_data::align::Template::CaffeFace)?;
    std::fs::create_dir(dir.path().join("crops"))?;
    let img = image::RgbImage::from_raw(96, 112, crop).ok_or("a 112x96 crop")?;
    facerec_data::image_io::write_png(&dir.path().join("crops/crop.png"), &img)?;
    std::fs::copy(dir.path().join("crops/crop.png"), dir.path().join("crop.png"))?;
    let o = facerec(&["embed", "--model", "m/model.safetensors", "--images", "crops", "--aligned", "--out", "e.npy", "-q"], dir.path());
    assert!(o.status.success(), "{}", text(&o));
    let ours = facerec_data::npy::read::<f32, ndarray::Ix2>(&dir.path().join("e.npy"))?;

    let page = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/getting-started.md"))?;
    let start = page.find("```python\nimport cv2, numpy as np, onnxruntime").ok_or("no onnxruntime example in getting-started.md")? + "```python\n".len();
    let code = &page[start..start + page[start..].find("```").ok_or("unterminated example")?];
    assert_eq!(code.lines().count(), 5, "the example is five lines:\n{code}");
    let script = format!("{code}import json; print(json.dumps(features.tolist()))\n");
    let py = std::env::var("FACEREC_PYTHON").unwrap_or_else(|_| ".deps/venv/bin/python".into());
    let o = std::process::Command::new(&py).args(["-c", &script]).current_dir(dir.path()).output()?;
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let theirs: Vec<Vec<f64>> = serde_json::from_slice(&o.stdout)?;
    assert_eq!((theirs.len(), theirs[0].len()), ours.dim());
    let diff = theirs[0].iter().zip(ours.row(0)).map(|(a, &b)| (a - f64::from(b)).abs()).fold(0.0, f64::max);
    assert!(diff <= 1e-5, "onnxruntime vs facerec embed: max abs diff {diff:e}");
    Ok(())
}

/// `facerec bench MODEL --extract` times a trained model's features on aligned crops (what
/// `scripts/bench_onnx.sh` compares with onnxruntime), the first --batch of them repeated; a
/// config's fresh model takes no crops.
#[test]
fn bench_extract_times_a_trained_model_on_aligned_crops() -> Result {
    let dir = tempfile::tempdir()?;
    random_face_model(&dir.path().join("m/model.safetensors"))?;
    std::fs::create_dir(dir.path().join("crops"))?;
    for i in 0..2u8 {
        let img = image::RgbImage::from_fn(96, 112, |x, y| image::Rgb([(x * 2) as u8, (y * 2) as u8, i * 100]));
        facerec_data::image_io::write_png(&dir.path().join(format!("crops/{i}.png")), &img)?;
    }
    let o = facerec(&["bench", "m", "--extract", "--no-mirror", "--images", "crops", "--batch", "3", "--steps", "1", "--threads", "1"], dir.path());
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("feature extraction (image) batch 3 on cpu") && text(&o).contains("images/s"), "{}", text(&o));
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let cfg = repo.join("configs/lfw_faceresnet_small_center.toml");
    let o = facerec(&["bench", cfg.to_str().unwrap(), "--extract", "--images", "crops"], dir.path());
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("--images is for a trained model"), "{}", text(&o));
    Ok(())
}
