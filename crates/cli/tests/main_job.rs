//! The README's first command, `scripts/mnist.sh`, end to end in a reduced form: every run of
//! the quick job and of the lambda sweep for a few steps on real MNIST, with one sweep point
//! forced to diverge. A change that breaks the first command fails here.

use std::path::Path;
use std::process::Command;

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error>>;

/// The lambda that diverges: the center term's gradient, lambda * (x_i - c_{y_i}), blows the
/// weights up within the first steps (with the quick job's gradient clipping turned off here:
/// clipped, even this lambda only moves the weights by a bounded step).
const DIVERGING: &str = "1e9";

#[test]
fn main_job_reports_every_run_and_survives_a_diverging_point() -> Result {
    facerec_data::paths::require("mnist")?;
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let runs = tempfile::tempdir()?;
    let lambdas = format!("0.001 0.1 1 {DIVERGING}");
    let out = Command::new("bash")
        .arg(repo.join("scripts/mnist.sh"))
        .args(["--no-setup", "--runs", runs.path().to_str().unwrap(), "--lambdas", &lambdas])
        .args(["--set", "schedule.steps=4", "--set", "schedule.warmup_steps=2", "--set", "schedule.milestones=[3]"])
        .args(["--set", "data.train_limit=1024", "--set", "data.test_limit=300", "--set", "threads=1"])
        .args(["--set", "log.every_steps=1", "--set", "optim.clip_grad_norm="])
        .env("FACEREC_BIN", env!("CARGO_BIN_EXE_facerec"))
        .env("RUST_LOG", "warn")
        .env_remove("RANK")
        .env_remove("WORLD_SIZE")
        .output()?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let all = format!("{stdout}\n--- stderr ---\n{stderr}");

    // The diverged point makes the exit code say "not everything ran", after the table.
    assert_eq!(out.status.code(), Some(1), "{all}");
    let diverged = format!("mnist_lenetpp_center_lambda{DIVERGING}");
    assert!(stderr.contains(&format!("1 of 6 runs did not finish: {diverged}")), "{all}");

    // Every other run trained, was tested and plotted, and is in the table.
    let finished = ["softmax", "center", "center_lambda0.001", "center_lambda0.1", "center_lambda1"];
    for name in finished.map(|n| format!("mnist_lenetpp_{n}")) {
        let run = runs.path().join(&name);
        for f in ["report.json", "features.png", "training.png", "model.safetensors"] {
            assert!(run.join(f).is_file(), "{name}: no {f}\n{all}");
        }
        let row = stdout.lines().find(|l| l.split_whitespace().next() == Some(name.as_str()));
        let row = row.ok_or_else(|| format!("{name} is not in the table\n{all}"))?;
        let acc: f64 = row.split_whitespace().nth(2).ok_or("short row")?.parse()?;
        assert!((0.0..=100.0).contains(&acc), "{row}");
        let steps = std::fs::read_to_string(run.join("steps.jsonl"))?;
        assert_eq!(steps.lines().count(), 4, "{name}: one line per step with log.every_steps=1");
    }

    // The diverged one is listed with the step it diverged at, and left a record of it.
    let row = stdout.lines().find(|l| l.starts_with(&diverged)).ok_or_else(|| format!("no row for {diverged}\n{all}"))?;
    assert!(row.contains("diverged at step"), "{row}");
    let record: serde_json::Value =
        serde_json::from_slice(&std::fs::read(runs.path().join(&diverged).join("diverged.json"))?)?;
    let step = record["step"].as_u64().ok_or("no step")?;
    assert!((1..=4).contains(&step), "{record}");
    assert!(row.contains(&format!("diverged at step {step}")), "{row}");
    Ok(())
}

#[test]
fn main_job_rejects_unknown_arguments() -> Result {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let out = Command::new("bash").arg(repo.join("scripts/mnist.sh")).arg("--bogus").output()?;
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown argument --bogus"));
    Ok(())
}
