//! Element types, and the copy of a strided view out of its storage into a contiguous,
//! row-major buffer (what `tensor.contiguous()` does).

use std::fmt;

/// A tensor's element type. Data is always little-endian.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DType {
    F32,
    F64,
    F16,
    BF16,
    I64,
    I32,
    I16,
    I8,
    U8,
    Bool,
    /// torch >= 2.3's unsigned types, saved as untyped storages (`_rebuild_tensor_v3`).
    U16,
    U32,
    U64,
}

impl DType {
    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            Self::F64 | Self::I64 | Self::U64 => 8,
            Self::F32 | Self::I32 | Self::U32 => 4,
            Self::F16 | Self::BF16 | Self::I16 | Self::U16 => 2,
            Self::I8 | Self::U8 | Self::Bool => 1,
        }
    }

    /// torch's name without `torch.`: `float32`, `int64`, `bool`, ...
    pub fn name(self) -> &'static str {
        match self {
            Self::F32 => "float32",
            Self::F64 => "float64",
            Self::F16 => "float16",
            Self::BF16 => "bfloat16",
            Self::I64 => "int64",
            Self::I32 => "int32",
            Self::I16 => "int16",
            Self::I8 => "int8",
            Self::U8 => "uint8",
            Self::Bool => "bool",
            Self::U16 => "uint16",
            Self::U32 => "uint32",
            Self::U64 => "uint64",
        }
    }

    /// From a typed storage class (`FloatStorage`, ...); `UntypedStorage` holds bytes.
    pub fn from_storage_class(class: &str) -> Option<Self> {
        Some(match class {
            "FloatStorage" => Self::F32,
            "DoubleStorage" => Self::F64,
            "HalfStorage" => Self::F16,
            "BFloat16Storage" => Self::BF16,
            "LongStorage" => Self::I64,
            "IntStorage" => Self::I32,
            "ShortStorage" => Self::I16,
            "CharStorage" => Self::I8,
            "ByteStorage" | "UntypedStorage" => Self::U8,
            "BoolStorage" => Self::Bool,
            _ => return None,
        })
    }

    /// From a `torch.dtype` attribute name (`float32`, `float`, `long`, ...).
    pub fn from_torch_name(name: &str) -> Option<Self> {
        Some(match name {
            "float32" | "float" => Self::F32,
            "float64" | "double" => Self::F64,
            "float16" | "half" => Self::F16,
            "bfloat16" => Self::BF16,
            "int64" | "long" => Self::I64,
            "int32" | "int" => Self::I32,
            "int16" | "short" => Self::I16,
            "int8" => Self::I8,
            "uint8" => Self::U8,
            "bool" => Self::Bool,
            "uint16" => Self::U16,
            "uint32" => Self::U32,
            "uint64" => Self::U64,
            _ => return None,
        })
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Bytes per element of any storage class torch.save may write, including those without a
/// [`DType`], so that the legacy format's records of those can be stepped over.
pub(crate) fn storage_element_size(class: &str) -> Option<usize> {
    DType::from_storage_class(class).map(DType::size).or(match class {
        "ComplexDoubleStorage" => Some(16),
        "ComplexFloatStorage" => Some(8),
        "QInt32Storage" => Some(4),
        "QInt8Storage" | "QUInt8Storage" | "QUInt4x2Storage" | "QUInt2x4Storage" => Some(1),
        _ => None,
    })
}

/// A tensor's values: contiguous, row-major, little-endian.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawTensor {
    pub dtype: DType,
    /// Empty for a 0-d tensor (one element).
    pub shape: Vec<usize>,
    /// `numel() * dtype.size()` bytes.
    pub data: Vec<u8>,
}

impl RawTensor {
    /// The number of elements: the product of the shape (1 for a 0-d tensor).
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
}

/// A tensor that reads fewer storage bytes than it fills (a broadcast view, stride 0) may
/// fill at most this much, so that a damaged size cannot ask for terabytes.
const MAX_BROADCAST_BYTES: u64 = 1 << 30;

/// The elements of the view (`offset`, `shape`, `stride`, in elements of `size` bytes) of
/// `storage`, copied out in row-major order. Errors are messages for [`crate::ErrorKind::BadTensor`].
pub(crate) fn gather(
    storage: &[u8],
    size: usize,
    offset: u64,
    shape: &[u64],
    stride: &[u64],
) -> Result<Vec<u8>, String> {
    let overflow = || "its size overflows 64 bits".to_string();
    let numel = shape.iter().try_fold(1u64, |n, &d| n.checked_mul(d)).ok_or_else(overflow)?;
    let bytes = numel.checked_mul(size as u64).ok_or_else(overflow)?;
    if numel == 0 {
        return Ok(Vec::new());
    }
    // The last element read, and the storage bytes the view spans.
    let last = shape.iter().zip(stride).try_fold(offset, |at, (&d, &s)| at.checked_add((d - 1).checked_mul(s)?));
    let end = last.and_then(|last| last.checked_add(1)?.checked_mul(size as u64)).ok_or_else(overflow)?;
    if end > storage.len() as u64 {
        return Err(format!(
            "its view (offset {offset}, shape {shape:?}, stride {stride:?}) reads up to byte {end} of a storage of {} bytes",
            storage.len()
        ));
    }
    let span = end - offset * size as u64;
    if bytes > span && bytes > MAX_BROADCAST_BYTES {
        return Err(format!("it broadcasts {span} bytes of storage to {bytes} bytes, more than this reader allows ({MAX_BROADCAST_BYTES})"));
    }
    let mut out = Vec::new();
    let len = usize::try_from(bytes).map_err(|_| overflow())?;
    out.try_reserve_exact(len).map_err(|_| format!("cannot allocate its {bytes} bytes"))?;

    // Every index below is within `end`, checked above, so no slice can panic.
    let (offset, size) = (offset as usize, size);
    let shape: Vec<usize> = shape.iter().map(|&d| d as usize).collect();
    let stride: Vec<usize> = stride.iter().map(|&s| s as usize).collect();
    let row_major = (0..shape.len()).all(|i| shape[i] == 1 || stride[i] == shape[i + 1..].iter().product::<usize>());
    if row_major {
        out.extend_from_slice(&storage[offset * size..offset * size + len]);
        return Ok(out);
    }
    let Some((&inner, outer)) = shape.split_last() else {
        return Ok(out); // 0-d tensors are row-major, copied above
    };
    let inner_stride = stride[outer.len()];
    let mut index = vec![0usize; outer.len()];
    loop {
        let base = offset + index.iter().zip(&stride).map(|(i, s)| i * s).sum::<usize>();
        if inner_stride == 1 {
            out.extend_from_slice(&storage[base * size..(base + inner) * size]);
        } else {
            for j in 0..inner {
                let at = (base + j * inner_stride) * size;
                out.extend_from_slice(&storage[at..at + size]);
            }
        }
        // The next index of the outer dimensions, last fastest.
        let mut d = outer.len();
        loop {
            if d == 0 {
                return Ok(out);
            }
            d -= 1;
            index[d] += 1;
            if index[d] < outer[d] {
                break;
            }
            index[d] = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::gather;

    /// Storage of bytes 0..n, one-byte elements: the output lists the indices read.
    fn storage(n: u8) -> Vec<u8> {
        (0..n).collect()
    }

    #[test]
    fn views_read_what_numpy_would() -> Result<(), String> {
        // numpy.arange(12).reshape(3, 4).T.ravel()
        assert_eq!(gather(&storage(12), 1, 0, &[4, 3], &[1, 4])?, [0, 4, 8, 1, 5, 9, 2, 6, 10, 3, 7, 11]);
        // numpy.arange(24).reshape(4, 6)[1:, 2]: offset 8, stride 6
        assert_eq!(gather(&storage(24), 1, 8, &[3], &[6])?, [8, 14, 20]);
        // numpy.broadcast_to(arange(2)[:, None], (2, 3)): strides (1, 0)
        assert_eq!(gather(&storage(2), 1, 0, &[2, 3], &[1, 0])?, [0, 0, 0, 1, 1, 1]);
        // 0-d at offset 5; an empty tensor; a contiguous slice with two-byte elements
        assert_eq!(gather(&storage(8), 1, 5, &[], &[])?, [5]);
        assert_eq!(gather(&storage(0), 4, 0, &[0, 3], &[3, 1])?, Vec::<u8>::new());
        assert_eq!(gather(&storage(8), 2, 1, &[2], &[1])?, [2, 3, 4, 5]);
        Ok(())
    }

    #[test]
    fn views_past_the_storage_or_absurd_sizes_are_errors() {
        assert!(gather(&storage(12), 1, 1, &[3, 4], &[4, 1]).is_err_and(|e| e.contains("reads up to byte 13")));
        assert!(gather(&storage(4), 4, 0, &[2], &[1]).is_err());
        assert!(gather(&storage(4), 1, 0, &[u64::MAX, 2], &[1, 1]).is_err_and(|e| e.contains("overflows")));
        assert!(gather(&storage(4), 4, 0, &[1 << 40], &[0]).is_err_and(|e| e.contains("broadcasts")));
    }
}
