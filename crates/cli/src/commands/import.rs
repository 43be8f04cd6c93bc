//! `facerec import`: a backbone's weights from a PyTorch checkpoint (`torch.save`, zip or
//! legacy format) or a safetensors file, checked against the backbone and written as a facerec
//! model file.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

use facerec_experiment::config::apply_override;
use facerec_model::import::import_backbone;
use facerec_model::saved::load_backbone;
use facerec_model::BackboneConfig;
use tch::Device;

pub const EXAMPLES: &str = "Examples:
  facerec import data/pretrained/mobilefacenet_casia/mobilefacenet_casia_068.ckpt \\
      --backbone mobilefacenet --out models/mobilefacenet_casia.safetensors
  facerec import arcface_r50.pth --backbone iresnet --set depth=50 --out models/r50.safetensors
  facerec eval --model models/mobilefacenet_casia.safetensors --folds 1,2,3,4,5,6,7,8,9,10";

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The checkpoint: a `torch.save` file (.pt, .pth, .ckpt; the state dict at the top level
    /// or under `state_dict`, `net_state_dict`, `model`, ...) or a safetensors file.
    pub checkpoint: PathBuf,
    /// The backbone the weights are for, by its config name (`mobilefacenet`, `iresnet`, ...;
    /// an unknown name is an error that lists the known ones).
    #[arg(long)]
    pub backbone: String,
    /// A setting of the backbone, as in its `[model.backbone]` table, e.g. `--set
    /// input_size=[112,112]` (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub settings: Vec<String>,
    /// The facerec model file to write.
    #[arg(long)]
    pub out: PathBuf,
}

pub fn run(args: ImportArgs) -> anyhow::Result<()> {
    let mut table = toml::Table::new();
    table.insert("name".into(), toml::Value::String(args.backbone.clone()));
    for setting in &args.settings {
        apply_override(&mut table, setting).map_err(anyhow::Error::msg)?;
    }
    let config: BackboneConfig = toml::Value::Table(table).try_into().with_context(|| format!("backbone `{}`", args.backbone))?;
    if let Some(dir) = args.out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let imported = import_backbone(&args.checkpoint, &config, &args.out)?;
    // Read back as eval and embed will.
    load_backbone(&imported.out, Device::Cpu, None).with_context(|| format!("reading back {}", imported.out.display()))?;
    println!(
        "{}: {} tensors of backbone {} ({} num_batches_tracked left out), from {}",
        imported.out.display(),
        imported.tensors,
        config,
        imported.dropped,
        imported.source
    );
    Ok(())
}
