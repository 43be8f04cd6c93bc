//! End-to-end tests of the `facerec` binary on real data (a small part of MNIST).

use std::io::BufRead;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error>>;

/// The variables that would make `facerec train` join a distributed run.
const LAUNCH_VARS: [&str; 7] = ["RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "SLURM_PROCID", "SLURM_NTASKS"];

/// `facerec` with `args` in `cwd`, as a single process whatever launched the tests.
fn command(args: &[&str], cwd: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_facerec"));
    cmd.args(args).current_dir(cwd).env("RUST_LOG", "warn");
    for v in LAUNCH_VARS {
        cmd.env_remove(v);
    }
    cmd
}

fn facerec(args: &[&str], cwd: &Path) -> Output {
    command(args, cwd).output().expect("facerec runs")
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
    for sub in ["train", "launch", "summary", "completions"] {
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
    // `facerec eval` on the run reproduces the accuracy with the run's own settings.
    let out = facerec(&["eval", "runs/face", "-q"], dir.path());
    assert!(out.status.success(), "{}", text(&out));
    let again: serde_json::Value = serde_json::from_slice(&std::fs::read(run.join("lfw_report.json"))?)?;
    assert_eq!(again["verification"]["accuracy_mean"], report["verification"]["accuracy_mean"]);
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
    rank1.kill()?; // SIGKILL
    rank1.wait()?;
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
