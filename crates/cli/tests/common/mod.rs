//! Helpers shared by the CLI's end-to-end test binaries (`mod common;` in each): running the
//! `facerec` binary as a single process, its output as text, a tiny MNIST config and a small
//! random face model. Not every binary uses every helper.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error>>;

/// The variables that would make `facerec train` join a distributed run.
pub const LAUNCH_VARS: [&str; 7] = ["RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "SLURM_PROCID", "SLURM_NTASKS"];

/// `facerec` with `args` in `cwd`, as a single process whatever launched the tests.
pub fn command(args: &[&str], cwd: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_facerec"));
    cmd.args(args).current_dir(cwd).env("RUST_LOG", "warn");
    for v in LAUNCH_VARS {
        cmd.env_remove(v);
    }
    cmd
}

/// Runs [`command`] to the end.
pub fn facerec(args: &[&str], cwd: &Path) -> Output {
    command(args, cwd).output().expect("facerec runs")
}

/// stdout and stderr, for assertions and their messages.
pub fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// A one-epoch LeNets++ config on 320 MNIST images (10 steps of 32), tested on 200, with
/// center loss weighted `lambda`.
pub fn mnist_config(dir: &Path, lambda: f64) -> Result<PathBuf> {
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

/// A small Face-ResNet (112x96, 16-d) with random weights, saved as a backbone file at `path`.
pub fn random_face_model(path: &Path) -> Result {
    random_face_model_of(path, [3, 112, 96])
}

/// [`random_face_model`] taking `input_shape` crops (`[3, 112, 112]`: insightface's template).
pub fn random_face_model_of(path: &Path, input_shape: [i64; 3]) -> Result {
    use facerec_model::face_resnet::FaceResnetConfig;
    let config = facerec_model::BackboneConfig::new(FaceResnetConfig {
        widths: [4, 8, 8, 16, 16],
        blocks: [0, 0, 0, 0],
        feature_dim: 16,
        input_shape,
    });
    std::fs::create_dir_all(path.parent().ok_or("a file path")?)?;
    tch::manual_seed(5);
    let vs = tch::nn::VarStore::new(tch::Device::Cpu);
    config.build(&(vs.root() / "backbone"))?;
    let vars = facerec_model::weights::strip_prefix(&vs.variables(), "backbone");
    facerec_model::saved::save_backbone(path, &config, &vars)?;
    Ok(())
}
