//! The example crate's backbone and loss train through facerec's own config, trainer and CLI
//! (`my-facerec train`), and the model it saves loads again wherever the backbone is
//! registered.

use std::path::Path;
use std::process::Command;

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error>>;

#[path = "../src/tiny_mlp.rs"]
mod tiny_mlp;

fn my_facerec(args: &[&str]) -> Result<std::process::Output> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    Ok(Command::new(env!("CARGO_BIN_EXE_my-facerec")).current_dir(root).args(args).output()?)
}

#[test]
fn a_backbone_and_a_loss_from_another_crate_train_save_and_load() -> Result {
    let dir = tempfile::tempdir()?;
    let run = dir.path().join("run");
    let run_arg = run.to_string_lossy().into_owned();
    let out = my_facerec(&[
        "train",
        "examples/custom-backbone/configs/tiny_mnist.toml",
        "--set", "schedule.steps=30",
        "--set", "schedule.milestones=[20]",
        "--set", "data.train_limit=512",
        "--set", "data.test_limit=200",
        "--set", "log.every_steps=5",
        "--run-dir", &run_arg,
        "-q",
    ])?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "my-facerec train failed:\n{stderr}");

    // The trainer logged the custom loss's own term, and it came down.
    let steps: Vec<serde_json::Value> =
        std::fs::read_to_string(run.join("steps.jsonl"))?.lines().map(serde_json::from_str).collect::<std::result::Result<_, _>>()?;
    assert_eq!(steps.len(), 6, "a line every 5 of 30 steps");
    let term = |i: usize| steps[i]["smoothed_loss"].as_f64().ok_or("no smoothed_loss in steps.jsonl");
    assert!(term(5)? < term(0)?, "the loss falls: {} -> {}", term(0)?, term(5)?);
    assert!(steps[0].get("softmax_loss").is_none(), "only the loss's own terms are logged");
    let config = std::fs::read_to_string(run.join("config.toml"))?;
    assert!(config.contains("name = \"tiny_mlp\"") && config.contains("hidden = 64"), "{config}");
    assert!(config.contains("name = \"smoothed_softmax\""), "{config}");
    let report: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(run.join("report.json"))?)?;
    let accuracy = report["test_accuracy"].as_f64().ok_or("no test accuracy")?;
    assert!(accuracy > 0.3, "30 steps learn something of 10 classes: {accuracy}");

    // The saved model names its backbone; with the backbone registered it loads and runs.
    facerec_model::register_backbone::<tiny_mlp::TinyMlpConfig>();
    let loaded = facerec_model::saved::load_backbone(&run, tch::Device::Cpu, None)?;
    assert_eq!(loaded.config.name(), "tiny_mlp");
    let features = loaded.backbone.forward_t(&tch::Tensor::zeros([3, 1, 28, 28], (tch::Kind::Float, tch::Device::Cpu)), false)?;
    assert_eq!(features.size(), [3, 16]);

    // Its `describe` makes it exportable by the binary, like the built-in backbones.
    let onnx = dir.path().join("tiny.onnx");
    let out = my_facerec(&["export", &run_arg, "--onnx", &onnx.to_string_lossy()])?;
    assert!(out.status.success(), "my-facerec export failed:\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("tiny_mlp"), "{}", String::from_utf8_lossy(&out.stdout));
    assert!(std::fs::metadata(&onnx)?.len() > 4 * 784 * 64, "the weights are in the file");
    Ok(())
}

#[test]
fn unknown_names_list_the_registered_plugs() -> Result {
    let out = my_facerec(&["train", "examples/custom-backbone/configs/tiny_mnist.toml", "--set", "model.backbone.name=tiny_mpl"])?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("unknown backbone `tiny_mpl`") && stderr.contains("`lenet_pp`, `mbf`, `mobilefacenet`, `tiny_mlp`"), "{stderr}");
    let out = my_facerec(&["train", "examples/custom-backbone/configs/tiny_mnist.toml", "--set", "loss.smoothing=1.5"])?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("loss.smoothing must be in [0, 1), got 1.5"), "{stderr}");
    Ok(())
}
