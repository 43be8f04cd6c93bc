//! The `.npy` format of numpy (version 1.0 headers), for the dtypes facerec exchanges with
//! Python: `u1` (image crops) and `<f4` (embeddings).

use std::path::Path;

use crate::error::{DataError, Result};

/// Element types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dtype {
    U8,
    F32,
}

impl Dtype {
    fn descr(self) -> &'static str {
        match self {
            Dtype::U8 => "|u1",
            Dtype::F32 => "<f4",
        }
    }

    fn size(self) -> usize {
        match self {
            Dtype::U8 => 1,
            Dtype::F32 => 4,
        }
    }
}

/// A C-order array read from a `.npy` file.
#[derive(Debug, Clone, PartialEq)]
pub struct NpyArray {
    pub dtype: Dtype,
    pub shape: Vec<usize>,
    /// Raw little-endian bytes.
    pub data: Vec<u8>,
}

impl NpyArray {
    /// The data as `f32` (for `<f4` arrays).
    pub fn to_f32(&self) -> Vec<f32> {
        self.data.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
    }
}

/// Encodes an array as `.npy` bytes.
pub fn encode(dtype: Dtype, shape: &[usize], data: &[u8]) -> Vec<u8> {
    let dims = match shape {
        [n] => format!("({n},)"),
        _ => format!("({})", shape.iter().map(usize::to_string).collect::<Vec<_>>().join(", ")),
    };
    let mut header = format!("{{'descr': '{}', 'fortran_order': False, 'shape': {dims}, }}", dtype.descr());
    // Pad so that the data starts on a 64-byte boundary, header ending in '\n'.
    let total = 10 + header.len() + 1;
    header.push_str(&" ".repeat((64 - total % 64) % 64));
    header.push('\n');
    let mut out = Vec::with_capacity(10 + header.len() + data.len());
    out.extend_from_slice(b"\x93NUMPY\x01\x00");
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(data);
    out
}

/// Writes `f32` values with the given shape.
pub fn write_f32(path: &Path, shape: &[usize], values: &[f32]) -> Result<()> {
    let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    crate::fsutil::atomic_write_bytes(path, &encode(Dtype::F32, shape, &bytes))
}

/// Reads a `.npy` file of `u1` or `<f4`, C order.
pub fn read(path: &Path) -> Result<NpyArray> {
    let bytes = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
    parse(&bytes).map_err(|msg| DataError::format(path, msg))
}

/// Parses `.npy` bytes.
pub fn parse(bytes: &[u8]) -> std::result::Result<NpyArray, String> {
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err("not a .npy file".into());
    }
    let (len, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 if bytes.len() >= 12 => (u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize, 12),
        v => return Err(format!(".npy version {v} is not supported")),
    };
    let header = bytes.get(start..start + len).ok_or("truncated .npy header")?;
    let header = std::str::from_utf8(header).map_err(|_| "the .npy header is not text")?;
    let field = |key: &str| -> Option<&str> {
        let i = header.find(&format!("'{key}'"))? + key.len() + 2;
        Some(header[i..].trim_start_matches([':', ' ']))
    };
    let descr = field("descr").ok_or("no descr in the .npy header")?;
    let dtype = if descr.starts_with("'|u1'") || descr.starts_with("'u1'") {
        Dtype::U8
    } else if descr.starts_with("'<f4'") {
        Dtype::F32
    } else {
        return Err(format!("dtype {} is not supported (u1, <f4)", descr.split(',').next().unwrap_or("")));
    };
    if field("fortran_order").is_some_and(|v| v.starts_with("True")) {
        return Err("Fortran-ordered arrays are not supported".into());
    }
    let shape_text = field("shape").ok_or("no shape in the .npy header")?;
    let inner = shape_text.strip_prefix('(').and_then(|s| s.split(')').next()).ok_or("bad shape in the .npy header")?;
    let shape: Vec<usize> = inner
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().map_err(|_| format!("bad dimension {s:?}")))
        .collect::<std::result::Result<_, _>>()?;
    let count = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d)).ok_or("shape overflows")?;
    let data = &bytes[start + len..];
    if data.len() != count * dtype.size() {
        return Err(format!("shape {shape:?} needs {} data bytes, file has {}", count * dtype.size(), data.len()));
    }
    Ok(NpyArray { dtype, shape, data: data.to_vec() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_errors() {
        let bytes = encode(Dtype::F32, &[2, 3], &[0u8; 24]);
        assert_eq!((10 + u16::from_le_bytes([bytes[8], bytes[9]]) as usize) % 64, 0);
        let a = parse(&bytes).unwrap();
        assert_eq!((a.dtype, a.shape.clone()), (Dtype::F32, vec![2, 3]));
        let one = parse(&encode(Dtype::U8, &[5], &[1, 2, 3, 4, 5])).unwrap();
        assert_eq!(one.shape, vec![5]);
        assert!(parse(&bytes[..bytes.len() - 1]).unwrap_err().contains("needs 24"));
        assert!(parse(b"hello world").is_err());
    }
}
