//! `facerec export MODEL --onnx out.onnx`: a trained backbone as an ONNX model, for
//! onnxruntime and the tools of insightface's model zoo (`facerec_onnx`).

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

pub const EXAMPLES: &str = "Examples:
  facerec export runs/lfw_faceresnet_small_center --onnx faceresnet.onnx
  facerec export models/mobilefacenet_casia.safetensors --onnx mfn.onnx

The model takes [batch, C, H, W] float RGB crops normalised as its metadata says (input_mean,
input_std: facerec's (p - 127.5) / 128), gives [batch, D] features (the batch dimension is
free), and has its batch norms folded into the convolutions. Running it with onnxruntime:
docs/getting-started.md.";

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// The backbone: a run directory (its model.safetensors) or a model.safetensors file.
    pub model: PathBuf,
    /// The ONNX file to write (opset 13, dynamic batch dimension).
    #[arg(long)]
    pub onnx: PathBuf,
}

pub fn run(args: ExportArgs) -> anyhow::Result<()> {
    if let Some(dir) = args.onnx.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let e = facerec_onnx::export_file(&args.model, &args.onnx).with_context(|| format!("exporting {}", args.model.display()))?;
    let meta = |key: &str| e.metadata.iter().find(|(k, _)| k == key).map_or("-", |(_, v)| v.as_str());
    println!(
        "{}: {} as ONNX (opset {}, {} nodes, {} parameters, {:.1} MB); batch norms: {} folded into weights, {} kept as Mul + Add",
        e.path.display(),
        e.backbone,
        facerec_onnx::OPSET,
        e.nodes,
        e.parameters,
        e.bytes as f64 / 1e6,
        e.folded.into_weights,
        e.folded.to_affine
    );
    println!(
        "input `{}`: [batch, {}, {}, {}] {} {}, (p - {}) / {}, crop {}; output `{}`: [batch, {}]; max abs diff to facerec on a test input {:.1e}",
        facerec_onnx::INPUT,
        e.input_shape[0],
        e.input_shape[1],
        e.input_shape[2],
        meta("input_layout"),
        meta("input_color"),
        meta("input_mean"),
        meta("input_std"),
        meta("crop_template"),
        facerec_onnx::OUTPUT,
        e.feature_dim,
        e.max_abs_diff
    );
    Ok(())
}
