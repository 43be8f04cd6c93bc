//! Weights from elsewhere: PyTorch `torch.save` checkpoints (zip and legacy formats, read by
//! `facerec-torchfile` without Python) and safetensors files, checked name by name and shape
//! by shape against a backbone and written as a facerec model file (`facerec import`), or used
//! to start a training run (`[model] init`).

use std::path::{Path, PathBuf};

use facerec_torchfile::{DType, RawTensor};
use tch::{nn, Device, Kind, Tensor};

use crate::backbone::BackboneConfig;
use crate::error::{ModelError, Result};
use crate::saved::{backbone_file, save_backbone};
use crate::weights;

/// Named weights read from a file, and where in it they were.
pub struct Weights {
    /// By state-dict name, BatchNorm's `num_batches_tracked` left out.
    pub tensors: Vec<(String, Tensor)>,
    /// What the file was, in words: `PyTorch checkpoint (legacy format), state dict under
    /// "net_state_dict"; epoch 68`.
    pub source: String,
    /// How many `num_batches_tracked` entries were left out.
    pub dropped: usize,
}

/// Reads the weights in `path`: a PyTorch checkpoint (see `facerec_torchfile`), or a
/// safetensors file (a facerec model file, or a run directory's `model.safetensors`).
pub fn read_weights(path: &Path) -> Result<Weights> {
    let path = backbone_file(path);
    let bytes = std::fs::read(&path).map_err(|error| ModelError::Io { path: path.clone(), error })?;
    let (tensors, source) = if facerec_torchfile::is_torch_file(&bytes) {
        let ck = facerec_torchfile::read_bytes(&bytes, &path).map_err(|e| ModelError::Weights { path: path.clone(), msg: e.kind.to_string() })?;
        let mut source = format!("PyTorch checkpoint ({} format), state dict ", ck.format);
        source += &match &ck.key {
            Some(key) => format!("under \"{key}\""),
            None => "at the top level".to_owned(),
        };
        if !ck.extra.is_empty() {
            let extra: Vec<String> = ck.extra.iter().map(|(k, v)| format!("{k} {v}")).collect();
            source += &format!("; {}", extra.join(", "));
        }
        let tensors = ck.tensors.into_iter().map(|(name, raw)| Ok((name.clone(), to_tensor(&raw, &name, &path)?))).collect::<Result<_>>()?;
        (tensors, source)
    } else if bytes.get(8) == Some(&b'{') {
        // safetensors: an 8-byte header length, then the JSON header.
        (weights::from_bytes(&bytes, &path)?.0, "safetensors file".to_owned())
    } else {
        let what = facerec_torchfile::read_bytes(&bytes, &path).err().map(|e| e.kind.to_string()).unwrap_or_default();
        return Err(ModelError::Weights { path, msg: format!("neither a safetensors file nor a PyTorch checkpoint ({what})") });
    };
    let before = tensors.len();
    let tensors = weights::without_batch_counts(tensors);
    Ok(Weights { dropped: before - tensors.len(), tensors, source })
}

fn to_tensor(raw: &RawTensor, name: &str, path: &Path) -> Result<Tensor> {
    let kind = match raw.dtype {
        DType::F32 => Kind::Float,
        DType::F64 => Kind::Double,
        DType::F16 => Kind::Half,
        DType::BF16 => Kind::BFloat16,
        DType::I64 => Kind::Int64,
        DType::I32 => Kind::Int,
        DType::I16 => Kind::Int16,
        DType::I8 => Kind::Int8,
        DType::U8 => Kind::Uint8,
        DType::Bool => Kind::Bool,
        other => {
            return Err(ModelError::Weights { path: path.to_path_buf(), msg: format!("{name}: dtype {} has no libtorch kind facerec reads", other.name()) })
        }
    };
    let shape: Vec<i64> = raw.shape.iter().map(|&d| d as i64).collect();
    Ok(Tensor::f_from_data_size(&raw.data, &shape, kind)?)
}

/// What [`import_backbone`] did.
pub struct Imported {
    /// What the source file was (see [`Weights::source`]).
    pub source: String,
    /// Tensors written (parameters and BatchNorm statistics).
    pub tensors: usize,
    /// `num_batches_tracked` entries left out.
    pub dropped: usize,
    pub out: PathBuf,
}

/// Builds the backbone `config` describes, fills it with the weights of `src` (every variable
/// present with its shape and nothing else, or an error listing what is missing, unexpected
/// or misshapen, and whether an entry's dtype cannot be converted) and writes it to `out` as a
/// facerec model file, which `eval`, `embed`, `compare` and `[model] init` read.
pub fn import_backbone(src: &Path, config: &BackboneConfig, out: &Path) -> Result<Imported> {
    let weights = read_weights(src)?;
    let vs = nn::VarStore::new(Device::Cpu);
    config.build(&vs.root())?;
    let mut vars: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    // copy_into's copy converts floats of another precision (a half-precision export) to the
    // model's f32.
    weights::copy_into(&vars, &weights.tensors, &backbone_file(src)).map_err(|e| match e {
        ModelError::Weights { path, msg } => ModelError::Weights {
            path,
            msg: format!("does not fit backbone {} ({}): {msg}", config.name(), weights.source),
        },
        other => other,
    })?;
    save_backbone(out, config, &vars)?;
    Ok(Imported { source: weights.source, tensors: vars.len(), dropped: weights.dropped, out: out.to_path_buf() })
}
