//! Failure behaviour of `facerec train` as a user meets it: SIGKILL at random moments
//! (including during checkpoint saves), Ctrl-C, a full disk, an unwritable run directory.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use facerec_train::checkpoint;
use facerec_core::metrics::read_records;

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error>>;

fn config(dir: &Path, steps: usize) -> Result<PathBuf> {
    let mnist = facerec_data::paths::require("mnist")?;
    let path = dir.join("tiny.toml");
    std::fs::write(
        &path,
        format!(
            r#"
seed = 11
threads = 1
[data]
kind = "mnist"
dir = "{}"
train_limit = 640
test_limit = 100
[model.backbone]
name = "lenet_pp"
[loss]
lambda = 0.01
alpha = 0.5
[optim]
lr = 0.01
batch_size = 32
[schedule]
steps = {steps}
[checkpoint]
every_steps = 1
keep = 3
[eval]
disabled = true
[log]
every_steps = 1
"#,
            mnist.display()
        ),
    )?;
    Ok(path)
}

fn train_cmd(cfg: &Path, run: &Path, extra: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_facerec"));
    c.args(["-q", "train", cfg.to_str().unwrap(), "--run-dir", run.to_str().unwrap()]).args(extra);
    c.env("RUST_LOG", "error");
    c
}

fn losses(run: &Path) -> Result<Vec<(u64, f64)>> {
    Ok(read_records(&run.join("steps.jsonl"))?
        .iter()
        .map(|r| (r["step"].as_u64().unwrap(), r["loss"].as_f64().unwrap()))
        .collect())
}

/// Kills a training run with SIGKILL at pseudo-random moments, `rounds` times, resuming after
/// each; every time a loadable checkpoint must be left, and the finished run must match an
/// uninterrupted one exactly. `FACEREC_KILL_ROUNDS` sets the number of kills (default 8).
#[test]
fn sigkill_at_random_moments_never_loses_the_latest_checkpoint() -> Result {
    let rounds: usize = std::env::var("FACEREC_KILL_ROUNDS").ok().and_then(|s| s.parse().ok()).unwrap_or(8);
    let dir = tempfile::tempdir()?;
    let steps = 20 + 4 * rounds;
    let cfg = config(dir.path(), steps)?;
    let clean = dir.path().join("clean");
    assert!(train_cmd(&cfg, &clean, &[]).stdout(Stdio::null()).status()?.success());

    let run = dir.path().join("killed");
    let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
    let (mut kills, mut during_save) = (0, 0);
    let mut first = true;
    while kills < rounds {
        let mut child = train_cmd(&cfg, &run, if first { &[] } else { &["--resume"] })
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        first = false;
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let delay = Duration::from_millis(600 + seed % 1800);
        let t0 = Instant::now();
        while t0.elapsed() < delay {
            if child.try_wait()?.is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        if child.try_wait()?.is_some() {
            break; // finished before the kill
        }
        child.kill()?; // SIGKILL
        child.wait()?;
        kills += 1;
        let leftovers = std::fs::read_dir(checkpoint::dir(&run))
            .map(|d| d.flatten().filter(|e| e.file_name().to_string_lossy().contains(".tmp-")).count())
            .unwrap_or(0);
        if leftovers > 0 {
            during_save += 1;
        }
        if !checkpoint::list(&run).is_empty() {
            let ck = checkpoint::latest_valid(&run)?.ok_or("no checkpoint")?;
            assert!(ck.state.step >= 1);
        }
    }
    eprintln!("{kills} kills, {during_save} of them during a checkpoint save");
    let out = train_cmd(&cfg, &run, &["--resume"]).output()?;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(losses(&clean)?, losses(&run)?, "a killed and resumed run must match the uninterrupted one");
    Ok(())
}

#[cfg(unix)]
#[test]
fn ctrl_c_writes_a_checkpoint_and_exits_130() -> Result {
    let dir = tempfile::tempdir()?;
    let cfg = config(dir.path(), 400)?;
    let run = dir.path().join("run");
    let child = train_cmd(&cfg, &run, &[]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn()?;
    let t0 = Instant::now();
    while losses(&run).map(|l| l.len()).unwrap_or(0) < 3 {
        assert!(t0.elapsed() < Duration::from_secs(60), "training did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(Command::new("kill").args(["-INT", &child.id().to_string()]).status()?.success());
    let out = child.wait_with_output()?;
    // 130: stopped by Ctrl-C, so `train && eval` does not go on with a half-trained model.
    assert_eq!(out.status.code(), Some(130), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("interrupted at step") && stdout.contains("--resume"), "{stdout}");
    let newest = checkpoint::latest_valid(&run)?.ok_or("no checkpoint after Ctrl-C")?;
    assert!(newest.state.step < 400);
    assert_eq!(newest.state.step as u64, losses(&run)?.last().unwrap().0);
    Ok(())
}

#[cfg(unix)]
#[test]
fn full_disk_is_a_clear_error_and_leaves_no_partial_checkpoint() -> Result {
    let dir = tempfile::tempdir()?;
    let cfg = config(dir.path(), 5)?;
    let run = dir.path().join("run");
    // A 1 MiB file-size limit (SIGXFSZ ignored) makes the ~6 MB checkpoint write fail with
    // EFBIG, as a full disk fails with ENOSPC.
    let bin = env!("CARGO_BIN_EXE_facerec");
    let script = format!(
        "trap '' XFSZ; ulimit -f 1024; exec {bin} -q train {} --run-dir {}",
        cfg.display(),
        run.display()
    );
    let out = Command::new("sh").args(["-c", &script]).env("RUST_LOG", "error").output()?;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("error:") && err.contains("step-00000001.safetensors"), "{err}");
    assert!(err.contains("File too large") || err.contains("No space"), "{err}");
    let files: Vec<String> = std::fs::read_dir(checkpoint::dir(&run))?.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
    assert!(files.is_empty(), "partial files left: {files:?}");
    Ok(())
}

#[test]
fn unwritable_run_directory_is_a_clear_error() -> Result {
    let dir = tempfile::tempdir()?;
    let cfg = config(dir.path(), 5)?;
    let blocker = dir.path().join("a-file");
    std::fs::write(&blocker, "not a directory")?;
    let run = blocker.join("run");
    let out = train_cmd(&cfg, &run, &[]).output()?;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("a-file/run") && err.contains("Not a directory"), "{err}");
    Ok(())
}
