//! The idx file format of MNIST (<http://yann.lecun.com/exdb/mnist/>): a big-endian header
//! `[0, 0, type, ndims]`, `ndims` big-endian `u32` dimensions, then the data, row-major.
//! Only unsigned bytes (type `0x08`) occur in MNIST and only they are supported.

use std::path::Path;

use crate::error::{read_file, DataError, Result};

/// An idx array of unsigned bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdxArray {
    pub dims: Vec<usize>,
    pub data: Vec<u8>,
}

impl IdxArray {
    /// Reads and validates an idx file.
    pub fn read(path: &Path) -> Result<Self> {
        let bytes = read_file(path, " (run scripts/setup.sh to fetch MNIST)")?;
        Self::parse(&bytes).map_err(|msg| DataError::format(path, msg))
    }

    /// Parses idx bytes; the error says what was expected and what was found.
    pub fn parse(bytes: &[u8]) -> std::result::Result<Self, String> {
        if bytes.len() < 4 {
            return Err(format!("idx header needs 4 bytes, file has {}", bytes.len()));
        }
        if bytes[0] != 0 || bytes[1] != 0 {
            return Err(format!(
                "not an idx file: magic starts {:02x} {:02x}, expected 00 00",
                bytes[0], bytes[1]
            ));
        }
        if bytes[2] != 0x08 {
            return Err(format!(
                "idx element type 0x{:02x} is not supported (expected 0x08, unsigned byte)",
                bytes[2]
            ));
        }
        let ndims = usize::from(bytes[3]);
        if ndims == 0 {
            return Err("idx file declares 0 dimensions".into());
        }
        let header = 4 + 4 * ndims;
        if bytes.len() < header {
            return Err(format!(
                "idx header with {ndims} dimensions needs {header} bytes, file has {}",
                bytes.len()
            ));
        }
        let dims: Vec<usize> = bytes[4..header]
            .chunks_exact(4)
            .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]) as usize)
            .collect();
        let expected = dims
            .iter()
            .try_fold(1usize, |acc, &d| acc.checked_mul(d))
            .ok_or_else(|| format!("idx dimensions {dims:?} overflow"))?;
        let got = bytes.len() - header;
        if got != expected {
            let what = if got < expected { "truncated" } else { "has trailing bytes" };
            return Err(format!(
                "idx file {what}: dimensions {dims:?} need {expected} data bytes, found {got}"
            ));
        }
        Ok(IdxArray { dims, data: bytes[header..].to_vec() })
    }

    /// Serialises back to idx bytes (used by tests and fuzz corpora).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = vec![0, 0, 0x08, self.dims.len() as u8];
        for &d in &self.dims {
            out.extend_from_slice(&(d as u32).to_be_bytes());
        }
        out.extend_from_slice(&self.data);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> IdxArray {
        IdxArray { dims: vec![2, 3], data: vec![1, 2, 3, 4, 5, 6] }
    }

    #[test]
    fn round_trips() {
        let a = sample();
        assert_eq!(IdxArray::parse(&a.to_bytes()).unwrap(), a);
    }

    #[test]
    fn rejects_truncated_and_trailing_data() {
        let bytes = sample().to_bytes();
        let err = IdxArray::parse(&bytes[..bytes.len() - 1]).unwrap_err();
        assert!(err.contains("truncated") && err.contains("need 6"), "{err}");
        let mut long = bytes.clone();
        long.push(0);
        assert!(IdxArray::parse(&long).unwrap_err().contains("trailing"));
    }

    #[test]
    fn rejects_bad_headers() {
        assert!(IdxArray::parse(&[0, 0]).unwrap_err().contains("4 bytes"));
        assert!(IdxArray::parse(&[1, 0, 8, 1, 0, 0, 0, 0]).unwrap_err().contains("magic"));
        assert!(IdxArray::parse(&[0, 0, 0x0d, 1, 0, 0, 0, 0]).unwrap_err().contains("0x0d"));
        assert!(IdxArray::parse(&[0, 0, 8, 3, 0, 0]).unwrap_err().contains("needs 16 bytes"));
        let huge = [0, 0, 8, 4, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255];
        assert!(IdxArray::parse(&huge).is_err());
    }
}
