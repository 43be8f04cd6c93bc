//! A trained backbone on disk: `model.safetensors` with PyTorch parameter names and, in the
//! metadata, the backbone's config (JSON), so that it can be rebuilt without the experiment's
//! TOML, and the pixel normalisation its input takes (`pixel_norm`, e.g. `(p - 127.5) / 128`;
//! the config implies it, the key says it to readers of the file). `facerec embed`, `facerec eval` and the PyTorch interop script read this file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use tch::{nn, Device, Tensor};
use facerec_core::run_files;

use crate::backbone::{Backbone, BackboneConfig};
use crate::error::{ModelError, Result};
use crate::weights;

/// Format tag in the metadata.
pub const FORMAT: &str = "facerec-backbone-1";

/// A backbone with the variable store that owns its weights.
pub struct LoadedBackbone {
    pub vs: nn::VarStore,
    pub backbone: Box<dyn Backbone>,
    pub config: BackboneConfig,
}

/// Writes `tensors` (names without any prefix) and `config` to `path`, atomically.
pub fn save_backbone(path: &Path, config: &BackboneConfig, tensors: &[(String, Tensor)]) -> Result<()> {
    let meta = BTreeMap::from([
        ("format".to_owned(), FORMAT.to_owned()),
        ("backbone".to_owned(), serde_json::to_string(config).map_err(|e| ModelError::Config(e.to_string()))?),
        ("pixel_norm".to_owned(), config.pixel_norm().to_string()),
        ("input_shape".to_owned(), format!("{:?}", config.input_shape())),
    ]);
    let bytes = weights::to_bytes(tensors, &meta)?;
    facerec_core::fsutil::atomic_write_bytes(path, &bytes).map_err(|e| ModelError::Weights { path: path.to_path_buf(), msg: e.to_string() })
}

/// The backbone file `path` names: `path` itself, or `<path>/model.safetensors` for a run
/// directory.
pub fn backbone_file(path: &Path) -> PathBuf {
    if path.is_dir() {
        path.join(run_files::MODEL)
    } else {
        path.to_path_buf()
    }
}

/// Rebuilds the backbone saved in `path` (a file, or a run directory: see [`backbone_file`])
/// on `device`. With `config` given, it is used instead of the file's metadata (for weights
/// exported by other tools, e.g. from PyTorch).
pub fn load_backbone(path: &Path, device: Device, config: Option<&BackboneConfig>) -> Result<LoadedBackbone> {
    let path = &backbone_file(path);
    if !path.exists() {
        let hint = if path.ends_with(run_files::MODEL) && path.parent().is_some_and(Path::is_dir) {
            format!(
                "; a run directory holds {} once training has finished ({}/ hold unfinished runs)",
                run_files::MODEL,
                run_files::CHECKPOINTS
            )
        } else {
            String::new()
        };
        return Err(ModelError::Weights { path: path.clone(), msg: format!("no such model file{hint}") });
    }
    let (tensors, meta) = weights::load(path)?;
    let tensors = weights::without_batch_counts(tensors);
    let config = match config {
        Some(c) => c.clone(),
        None => {
            let json = meta.get("backbone").ok_or_else(|| ModelError::Weights {
                path: path.to_path_buf(),
                msg: format!(
                    "no backbone config in the file's metadata (key \"backbone\", which facerec writes into \
                     every model it saves): weights saved by other tools need it added (see {})",
                    weights::BACKBONE_METADATA_DOC
                ),
            })?;
            serde_json::from_str(json)
                .map_err(|e| ModelError::Weights { path: path.to_path_buf(), msg: format!("bad backbone config: {e}") })?
        }
    };
    let vs = nn::VarStore::new(device);
    let backbone = config.build(&vs.root())?;
    let mut vars: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    weights::copy_into(&vars, &tensors, path)?;
    Ok(LoadedBackbone { vs, backbone, config })
}
