//! `.npy` files (numpy's format) as `ndarray` arrays, through `ndarray-npy`: what facerec
//! exchanges with Python (image crops as `u8`, embeddings as `f32`). This module only adds what
//! the library leaves to its caller: errors that name the file, an atomic write, and a parse that
//! checks the header against the bytes before anything is allocated, so that a hostile file is an
//! error rather than an abort.

use std::path::Path;

use ndarray::{Array, ArrayBase, ArrayView, Data, Dimension};
use ndarray_npy::{ViewElement, ViewNpyError, ViewNpyExt, WritableElement, WriteNpyExt};

use crate::error::{DataError, Result};

/// Deepest nesting of brackets accepted in a header (numpy writes 1: the shape tuple).
const MAX_HEADER_NESTING: usize = 16;

/// The `.npy` bytes of `array` (version 1.0 header, C order unless the array is in Fortran order).
pub fn to_bytes<A, S, D>(array: &ArrayBase<S, D>) -> std::result::Result<Vec<u8>, String>
where
    A: WritableElement,
    S: Data<Elem = A>,
    D: Dimension,
{
    let mut out = Vec::new();
    array.write_npy(&mut out).map_err(|e| e.to_string())?;
    Ok(out)
}

/// Writes `array` to `path` (through a temporary file renamed into place).
pub fn write<A, S, D>(path: &Path, array: &ArrayBase<S, D>) -> Result<()>
where
    A: WritableElement,
    S: Data<Elem = A>,
    D: Dimension,
{
    let bytes = to_bytes(array).map_err(|msg| DataError::format(path, msg))?;
    Ok(facerec_core::fsutil::atomic_write_bytes(path, &bytes)?)
}

/// Reads an array of element type `A` and dimension `D` (`Ix2`, or `IxDyn` for any) from
/// `path`; the array comes back in C order whatever the file's order.
pub fn read<A, D>(path: &Path) -> Result<Array<A, D>>
where
    A: ViewElement + Clone,
    D: Dimension,
{
    let bytes = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
    parse(&bytes).map_err(|msg| DataError::format(path, msg))
}

/// Parses `.npy` bytes into an array of element type `A` and dimension `D`, in C order.
pub fn parse<A, D>(bytes: &[u8]) -> std::result::Result<Array<A, D>, String>
where
    A: ViewElement + Clone,
    D: Dimension,
{
    let start = data_start(bytes)?;
    // ndarray-npy views the data in place, which needs it aligned for `A`: copy the bytes to
    // where the data lands on a 16-byte boundary unless it already does.
    let aligned: Vec<u8>;
    let buf = if bytes[start..].as_ptr().align_offset(16) == 0 {
        bytes
    } else {
        let mut v = vec![0u8; bytes.len() + 16];
        let shift = v[start..].as_ptr().align_offset(16);
        v[shift..shift + bytes.len()].copy_from_slice(bytes);
        aligned = v;
        &aligned[shift..shift + bytes.len()]
    };
    let view = ArrayView::<A, D>::view_npy(buf).map_err(|e| explain::<A>(e, D::NDIM))?;
    Ok(view.as_standard_layout().into_owned())
}

/// Where the data of a `.npy` file starts, after checking that its header fits in `bytes` and
/// nests brackets no deeper than numpy ever does (the header is a Python literal that
/// ndarray-npy parses recursively).
fn data_start(bytes: &[u8]) -> std::result::Result<usize, String> {
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err("not a .npy file".into());
    }
    let (len, at) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 if bytes.len() >= 12 => (u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize, 12),
        v => return Err(format!(".npy version {v} is not supported")),
    };
    let header = bytes.get(at..at + len).ok_or_else(|| format!("truncated .npy header ({len} bytes announced)"))?;
    let mut depth = 0usize;
    for &b in header {
        match b {
            b'(' | b'[' | b'{' => depth += 1,
            b')' | b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
        if depth > MAX_HEADER_NESTING {
            return Err("the .npy header nests too deep to be numpy's".into());
        }
    }
    Ok(at + len)
}

/// ndarray-npy's error in the words of a user who asked for `A` with `ndim` dimensions.
fn explain<A>(e: ViewNpyError, ndim: Option<usize>) -> String {
    let want = std::any::type_name::<A>();
    match e {
        ViewNpyError::WrongDescriptor(d) => format!("dtype {d} where {want} was expected"),
        ViewNpyError::NonNativeEndian => format!("big-endian data where little-endian {want} was expected"),
        ViewNpyError::WrongNdim(_, got) => {
            format!("a {got}-D array where {}-D was expected", ndim.map_or("any".into(), |n| n.to_string()))
        }
        ViewNpyError::MissingBytes(n) => format!("truncated: {n} bytes of data missing"),
        ViewNpyError::ExtraBytes(n) => format!("{n} bytes after the data"),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use ndarray::{array, Array2, ArrayD, Ix1, Ix2, IxDyn};

    use super::*;

    #[test]
    fn round_trip_and_errors() {
        let a: Array2<f32> = array![[1.0, 2.0, 3.0], [4.0, -5.5, 6.0]];
        let bytes = to_bytes(&a).unwrap();
        // numpy's layout: a version 1.0 header padded so that the data starts on 64 bytes
        assert_eq!(&bytes[..8], b"\x93NUMPY\x01\x00");
        assert_eq!((10 + u16::from_le_bytes([bytes[8], bytes[9]]) as usize) % 64, 0);
        assert_eq!(parse::<f32, Ix2>(&bytes).unwrap(), a);
        assert_eq!(parse::<f32, IxDyn>(&bytes).unwrap().shape(), &[2, 3]);
        // the same bytes at an odd address still parse (they are copied to an aligned buffer)
        let mut shifted = vec![0u8];
        shifted.extend_from_slice(&bytes);
        assert_eq!(parse::<f32, Ix2>(&shifted[1..]).unwrap(), a);
        let one = parse::<u8, Ix1>(&to_bytes(&array![1u8, 2, 3, 4, 5]).unwrap()).unwrap();
        assert_eq!(one.to_vec(), vec![1, 2, 3, 4, 5]);
        let err = parse::<f32, Ix2>(&bytes[..bytes.len() - 1]).unwrap_err();
        assert!(err.contains("1 bytes of data missing"), "{err}");
        let err = parse::<u8, Ix2>(&bytes).unwrap_err();
        assert!(err.contains("<f4") && err.contains("u8"), "{err}");
        let err = parse::<f32, Ix1>(&bytes).unwrap_err();
        assert!(err.contains("2-D array where 1-D"), "{err}");
        assert!(parse::<f32, IxDyn>(b"hello world").unwrap_err().contains("not a .npy"));
        let mut deep = b"\x93NUMPY\x01\x00\x40\x00".to_vec();
        deep.extend(std::iter::repeat_n(b'(', 63).chain([b'\n']));
        assert!(parse::<f32, IxDyn>(&deep).unwrap_err().contains("nests too deep"));
    }

    #[test]
    fn fortran_order_comes_back_in_c_order() {
        let a: Array2<f32> = array![[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]];
        let f = a.t().as_standard_layout().into_owned().reversed_axes(); // same values, F order
        assert!(!f.is_standard_layout());
        let back: ArrayD<f32> = parse(&to_bytes(&f).unwrap()).unwrap();
        assert!(back.is_standard_layout());
        assert_eq!(back.into_dimensionality::<Ix2>().unwrap(), a);
    }

    #[test]
    fn file_errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("e.npy");
        write(&path, &array![[1.0f32, 2.0]]).unwrap();
        assert_eq!(read::<f32, Ix2>(&path).unwrap(), array![[1.0f32, 2.0]]);
        let err = read::<f32, Ix1>(&path).unwrap_err().to_string();
        assert!(err.starts_with(&path.display().to_string()) && err.contains("2-D"), "{err}");
        let missing = dir.path().join("missing.npy");
        assert!(read::<f32, Ix2>(&missing).unwrap_err().to_string().contains("missing.npy"));
    }
}
