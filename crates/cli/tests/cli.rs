//! End-to-end tests of the `facerec` binary on real data (a small part of MNIST).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error>>;

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

fn mnist_config(dir: &Path, lambda: f64) -> Result<PathBuf> {
    let mnist = facerec_data::paths::require("mnist")?;
    let path = dir.join(format!("mnist_tiny_{lambda}.toml"));
    std::fs::write(
        &path,
        format!(
            r#"
seed = 3
[data]
kind = "mnist"
dir = "{}"
train_limit = 320
test_limit = 200
[model.backbone]
name = "lenet_pp"
[loss]
lambda = {lambda}
alpha = 0.5
[optim]
lr = 0.01
batch_size = 32
[schedule]
epochs = 1
"#,
            mnist.display()
        ),
    )?;
    Ok(path)
}

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
        for f in ["config.toml", "steps.jsonl", "metrics.jsonl", "model.safetensors"] {
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
    for sub in ["train", "summary", "completions"] {
        let out = facerec(&[sub, "--help"], Path::new("."));
        assert!(out.status.success());
        assert!(text(&out).contains("Example"), "{sub} --help has no examples");
    }
    let out = facerec(&["completions", "bash"], Path::new("."));
    assert!(String::from_utf8_lossy(&out.stdout).contains("facerec"));
}
