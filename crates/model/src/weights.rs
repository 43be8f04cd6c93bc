//! Named tensors in safetensors files, with string metadata: the format of facerec's weights
//! and checkpoints. Names are PyTorch state-dict keys (`layer1.0.conv1.weight`), so a
//! `torch.nn.Module.load_state_dict(safetensors.torch.load_file(...))` reads them.
//!
//! Files written here carry a CRC-32 of their tensors (names and bytes, in name order) in the
//! metadata key `crc32`; reading verifies it when present, so a truncated or bit-flipped file
//! is reported rather than loaded.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use tch::{Device, Kind, Tensor};

use crate::error::{ModelError, Result};

/// Tensors by name, in a file's order.
pub type Named = Vec<(String, Tensor)>;
/// A safetensors file's `__metadata__` (string to string).
pub type Metadata = BTreeMap<String, String>;

/// The metadata key of the checksum.
pub const CRC_KEY: &str = "crc32";

/// Serialises tensors (any device, any layout) and metadata to safetensors bytes, adding the
/// `crc32` checksum.
pub fn to_bytes(tensors: &[(String, Tensor)], metadata: &BTreeMap<String, String>) -> Result<Vec<u8>> {
    let mut sorted: Vec<&(String, Tensor)> = tensors.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    let cpu: Vec<(String, Tensor, Vec<usize>, Dtype)> = sorted
        .iter()
        .map(|(name, t)| {
            let t = t.f_to_device(Device::Cpu)?.f_contiguous()?;
            let dtype = Dtype::try_from(t.kind())?;
            let shape = t.size().iter().map(|&d| d as usize).collect();
            Ok((name.clone(), t, shape, dtype))
        })
        .collect::<Result<_>>()?;
    let mut buffers = Vec::with_capacity(cpu.len());
    for (_, t, _, _) in &cpu {
        let mut data = vec![0u8; t.numel() * t.kind().elt_size_in_bytes()];
        t.f_copy_data_u8(&mut data, t.numel())?;
        buffers.push(data);
    }
    let views = cpu
        .iter()
        .zip(&buffers)
        .map(|((name, _, shape, dtype), data)| {
            TensorView::new(*dtype, shape.clone(), data)
                .map(|v| (name.as_str(), v))
                .map_err(|e| ModelError::Weights { path: name.into(), msg: format!("{e:?}") })
        })
        .collect::<Result<Vec<_>>>()?;
    let mut meta: HashMap<String, String> = metadata.clone().into_iter().collect();
    let crc = checksum(cpu.iter().zip(&buffers).map(|((name, ..), data)| (name.as_str(), data.as_slice())));
    meta.insert(CRC_KEY.to_owned(), format!("{crc:08x}"));
    safetensors::tensor::serialize(views, &Some(meta))
        .map_err(|e| ModelError::Weights { path: "<memory>".into(), msg: format!("{e:?}") })
}

/// Where the `backbone` metadata a model file needs is described.
pub const BACKBONE_METADATA_DOC: &str = "docs/getting-started.md, \"Models from elsewhere\"";

/// What a file that is not safetensors is, when it is one of PyTorch's `torch.save` formats:
/// a zip archive (PyTorch 1.6 and later) or a pickle (protocol 2 to 5, older PyTorch).
fn pytorch_format(bytes: &[u8]) -> Option<&'static str> {
    match bytes {
        [b'P', b'K', 3, 4, ..] => Some("a PyTorch checkpoint (torch.save's zip format, as .pt/.pth files are)"),
        [0x80, 2..=5, ..] => Some("a PyTorch checkpoint (a Python pickle, torch.save's legacy format)"),
        _ => None,
    }
}

/// Parses safetensors bytes into named CPU tensors (sorted by name) and their metadata.
/// `path` names the source in errors.
pub fn from_bytes(bytes: &[u8], path: &Path) -> Result<(Named, Metadata)> {
    let bad = |msg: String| ModelError::Weights { path: path.to_path_buf(), msg };
    let st = SafeTensors::deserialize(bytes).map_err(|e| match pytorch_format(bytes) {
        Some(kind) => bad(format!(
            "{kind}, not a facerec model file: make one from it with `facerec import {} --backbone NAME --out \
             model.safetensors` (see {BACKBONE_METADATA_DOC})",
            path.display()
        )),
        None => bad(format!("not a valid safetensors file: {e:?}")),
    })?;
    let (_, header) =
        SafeTensors::read_metadata(bytes).map_err(|e| bad(format!("bad safetensors header: {e:?}")))?;
    let metadata: BTreeMap<String, String> = header.metadata().clone().unwrap_or_default().into_iter().collect();
    let mut views = st.tensors();
    views.sort_by(|a, b| a.0.cmp(&b.0));
    if let Some(stored) = metadata.get(CRC_KEY) {
        let crc = checksum(views.iter().map(|(name, view)| (name.as_str(), view.data())));
        if format!("{crc:08x}") != *stored {
            return Err(bad(format!("checksum mismatch (stored {stored}, computed {crc:08x}): the file is corrupt")));
        }
    }
    let mut tensors = Vec::new();
    for (name, view) in views {
        let kind = Kind::try_from(view.dtype()).map_err(|e| bad(format!("{name}: {e}")))?;
        let size: Vec<i64> = view.shape().iter().map(|&d| d as i64).collect();
        tensors.push((name, Tensor::f_from_data_size(view.data(), &size, kind)?));
    }
    Ok((tensors, metadata))
}

/// CRC-32 over `name, bytes` pairs in the given order.
fn checksum<'a>(items: impl Iterator<Item = (&'a str, &'a [u8])>) -> u32 {
    let mut h = crc32fast::Hasher::new();
    for (name, data) in items {
        h.update(name.as_bytes());
        h.update(&(data.len() as u64).to_le_bytes());
        h.update(data);
    }
    h.finalize()
}

/// Reads a safetensors file.
pub fn load(path: &Path) -> Result<(Named, Metadata)> {
    let bytes = std::fs::read(path).map_err(|error| ModelError::Io { path: path.to_path_buf(), error })?;
    from_bytes(&bytes, path)
}

/// The variables of `vars` whose name starts with `prefix.`, with the prefix removed, sorted.
pub fn strip_prefix(vars: &HashMap<String, Tensor>, prefix: &str) -> Vec<(String, Tensor)> {
    let dotted = format!("{prefix}.");
    let mut out: Vec<(String, Tensor)> = vars
        .iter()
        .filter_map(|(k, v)| k.strip_prefix(&dotted).map(|s| (s.to_owned(), v.shallow_clone())))
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// `tensors` without BatchNorm's `num_batches_tracked`, which PyTorch state dicts carry and
/// facerec does not use (its BatchNorm has a fixed momentum, as PyTorch's by default).
pub fn without_batch_counts(tensors: Vec<(String, Tensor)>) -> Vec<(String, Tensor)> {
    tensors.into_iter().filter(|(k, _)| !k.ends_with("num_batches_tracked")).collect()
}

/// Copies `src` into the same-named tensors of `dst` (no gradient recorded). Every name of
/// `dst` must be present in `src` with the same shape, and `src` may hold no other names;
/// otherwise the error lists what is missing, unexpected or mis-shaped.
pub fn copy_into(dst: &[(String, Tensor)], src: &[(String, Tensor)], path: &Path) -> Result<()> {
    let src_map: HashMap<&str, &Tensor> = src.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let dst_names: std::collections::HashSet<&str> = dst.iter().map(|(k, _)| k.as_str()).collect();
    let missing: Vec<&str> = dst.iter().map(|(k, _)| k.as_str()).filter(|k| !src_map.contains_key(k)).collect();
    let extra: Vec<&str> = src.iter().map(|(k, _)| k.as_str()).filter(|k| !dst_names.contains(k)).collect();
    let mismatched: Vec<String> = dst
        .iter()
        .filter_map(|(k, v)| {
            let s = src_map.get(k.as_str())?;
            (s.size() != v.size()).then(|| format!("{k}: file {:?}, model {:?}", s.size(), v.size()))
        })
        .collect();
    let mut problems = Vec::new();
    if !missing.is_empty() {
        problems.push(format!("missing {}", list(&missing)));
    }
    if !extra.is_empty() {
        problems.push(format!("unexpected {}", list(&extra)));
    }
    if !mismatched.is_empty() {
        problems.push(format!("shape mismatch {}", mismatched.join("; ")));
    }
    if !problems.is_empty() {
        return Err(ModelError::Weights { path: path.to_path_buf(), msg: problems.join(", ") });
    }
    tch::no_grad(|| -> Result<()> {
        for (name, var) in dst {
            let mut var = var.shallow_clone();
            var.f_copy_(src_map[name.as_str()])?;
        }
        Ok(())
    })
}

fn list(names: &[&str]) -> String {
    const SHOW: usize = 8;
    let mut s = names.iter().take(SHOW).cloned().collect::<Vec<_>>().join(", ");
    if names.len() > SHOW {
        s.push_str(&format!(" and {} more", names.len() - SHOW));
    }
    format!("[{s}]")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_keeps_values_kinds_and_metadata() {
        let a = Tensor::from_slice(&[1.5f32, -2.0, 3.25, 0.0]).view([2, 2]);
        let b = Tensor::from_slice(&[7i64, 8, 9]);
        let t = Tensor::from_slice(&[1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0]).view([2, 3]).tr(); // non-contiguous
        let tensors = vec![("a".to_string(), a), ("b".to_string(), b), ("t".to_string(), t)];
        let meta = BTreeMap::from([("step".to_string(), "12".to_string())]);
        let bytes = to_bytes(&tensors, &meta).unwrap();
        let (back, meta2) = from_bytes(&bytes, Path::new("mem")).unwrap();
        assert_eq!(meta2["step"], "12");
        assert!(meta2.contains_key(CRC_KEY));
        assert_eq!(back.len(), 3);
        for ((n1, t1), (n2, t2)) in tensors.iter().zip(&back) {
            assert_eq!(n1, n2);
            assert_eq!(t1.kind(), t2.kind());
            assert!(t1.equal(t2), "{n1} differs");
        }
    }

    #[test]
    fn corrupt_bytes_are_an_error_naming_the_file() {
        let err = from_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json", Path::new("x.safetensors")).unwrap_err();
        assert!(err.to_string().starts_with("x.safetensors:"), "{err}");
    }

    #[test]
    fn flipped_bit_or_truncation_is_detected() {
        let tensors = vec![("w".to_string(), Tensor::from_slice(&[1.0f32, 2.0, 3.0]))];
        let bytes = to_bytes(&tensors, &BTreeMap::new()).unwrap();
        let mut flipped = bytes.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 0x10;
        let err = from_bytes(&flipped, Path::new("ck")).unwrap_err().to_string();
        assert!(err.contains("checksum mismatch"), "{err}");
        let err = from_bytes(&bytes[..bytes.len() - 4], Path::new("ck")).unwrap_err().to_string();
        assert!(err.starts_with("ck:"), "{err}");
    }

    #[test]
    fn copy_into_lists_missing_extra_and_mismatched() {
        let dst = vec![
            ("w".to_string(), Tensor::zeros([2], (Kind::Float, Device::Cpu))),
            ("v".to_string(), Tensor::zeros([3], (Kind::Float, Device::Cpu))),
        ];
        let src = vec![
            ("w".to_string(), Tensor::ones([2], (Kind::Float, Device::Cpu))),
            ("u".to_string(), Tensor::ones([1], (Kind::Float, Device::Cpu))),
        ];
        let err = copy_into(&dst, &src, Path::new("f")).unwrap_err().to_string();
        assert!(err.contains("missing [v]") && err.contains("unexpected [u]"), "{err}");
        let src = vec![
            ("w".to_string(), Tensor::ones([2], (Kind::Float, Device::Cpu))),
            ("v".to_string(), Tensor::ones([4], (Kind::Float, Device::Cpu))),
        ];
        let err = copy_into(&dst, &src, Path::new("f")).unwrap_err().to_string();
        assert!(err.contains("shape mismatch v"), "{err}");
        let src = vec![
            ("w".to_string(), Tensor::ones([2], (Kind::Float, Device::Cpu))),
            ("v".to_string(), Tensor::ones([3], (Kind::Float, Device::Cpu))),
        ];
        copy_into(&dst, &src, Path::new("f")).unwrap();
        assert_eq!(f64::try_from(dst[1].1.sum(Kind::Float)).unwrap(), 3.0);
    }
}
