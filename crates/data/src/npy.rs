//! `.npy` files (numpy's format) as `ndarray` arrays, through `ndarray-npy`: what facerec
//! exchanges with Python (image crops as `u8`, embeddings as `f32`). This module only adds what
//! the library leaves to its caller: errors that name the file, an atomic write, and a parse that
//! checks the header against the bytes before anything is allocated, so that a hostile file is an
//! error rather than an abort.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

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

/// A 2-D float `.npy` (`<f4` or `<f8`, C order) read a block of rows at a time, as `f32`: for
/// feature files too large to hold twice (IJB-C's 469,375 images with their mirrors at 512
/// dimensions are 1.9 GB). ndarray-npy reads or views whole arrays only, so the header is
/// parsed here (the three keys numpy writes).
pub struct RowReader {
    reader: BufReader<File>,
    path: PathBuf,
    rows: usize,
    cols: usize,
    double: bool,
    read: usize,
    bytes: Vec<u8>,
}

impl RowReader {
    /// Opens `path` and checks its header and length.
    pub fn open(path: &Path) -> Result<Self> {
        let file = File::open(path).map_err(|e| DataError::io(path, e))?;
        let len = file.metadata().map_err(|e| DataError::io(path, e))?.len();
        let mut reader = BufReader::with_capacity(1 << 20, file);
        let mut head = [0u8; 12];
        reader.read_exact(&mut head[..10]).map_err(|_| DataError::format(path, "not a .npy file"))?;
        if &head[..6] != b"\x93NUMPY" {
            return Err(DataError::format(path, "not a .npy file"));
        }
        let (header_len, at) = match head[6] {
            1 => (u16::from_le_bytes([head[8], head[9]]) as usize, 10),
            2 | 3 => {
                reader.read_exact(&mut head[10..12]).map_err(|e| DataError::io(path, e))?;
                (u32::from_le_bytes([head[8], head[9], head[10], head[11]]) as usize, 12)
            }
            v => return Err(DataError::format(path, format!(".npy version {v} is not supported"))),
        };
        if header_len > 1 << 20 {
            return Err(DataError::format(path, format!("a .npy header of {header_len} bytes is not numpy's")));
        }
        let mut header = vec![0u8; header_len];
        reader.read_exact(&mut header).map_err(|_| DataError::format(path, "truncated .npy header"))?;
        let header = String::from_utf8_lossy(&header);
        let (descr, fortran, shape) = parse_header(&header).map_err(|msg| DataError::format(path, msg))?;
        let double = match descr.as_str() {
            "<f4" => false,
            "<f8" => true,
            other => return Err(DataError::format(path, format!("dtype {other} where float32 (<f4) or float64 (<f8) was expected"))),
        };
        let [rows, cols] = shape[..] else {
            return Err(DataError::format(path, format!("a {}-D array where 2-D was expected", shape.len())));
        };
        if fortran && rows > 1 && cols > 1 {
            return Err(DataError::format(path, "Fortran order: write it in C order (np.ascontiguousarray)"));
        }
        let item = if double { 8 } else { 4 };
        let data = rows.checked_mul(cols).and_then(|n| n.checked_mul(item)).ok_or_else(|| DataError::format(path, "shape too large"))?;
        let want = (at + header_len + data) as u64;
        if len != want {
            let msg = if len < want { format!("truncated: {} bytes of data missing", want - len) } else { format!("{} bytes after the data", len - want) };
            return Err(DataError::format(path, msg));
        }
        Ok(RowReader { reader, path: path.to_path_buf(), rows, cols, double, read: 0, bytes: Vec::new() })
    }

    /// `(rows, columns)`.
    pub fn shape(&self) -> (usize, usize) {
        (self.rows, self.cols)
    }

    /// Reads the next rows, at most `max`, into `out` (replacing what it held), row after row;
    /// how many were read (0 at the end).
    pub fn read_rows(&mut self, max: usize, out: &mut Vec<f32>) -> Result<usize> {
        let n = max.min(self.rows - self.read);
        let item = if self.double { 8 } else { 4 };
        self.bytes.resize(n * self.cols * item, 0);
        self.reader.read_exact(&mut self.bytes).map_err(|e| DataError::io(&self.path, e))?;
        out.clear();
        if self.double {
            out.extend(self.bytes.chunks_exact(8).map(|b| f64::from_le_bytes(b.try_into().unwrap_or_default()) as f32));
        } else {
            out.extend(self.bytes.chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap_or_default())));
        }
        self.read += n;
        Ok(n)
    }
}

/// `descr`, `fortran_order` and `shape` of a `.npy` header (`{'descr': '<f4', 'fortran_order':
/// False, 'shape': (2, 3), }`).
fn parse_header(header: &str) -> std::result::Result<(String, bool, Vec<usize>), String> {
    let after = |key: &str| -> std::result::Result<&str, String> {
        let at = header.find(&format!("'{key}'")).or_else(|| header.find(&format!("\"{key}\""))).ok_or_else(|| format!("the .npy header has no {key}"))?;
        let rest = &header[at + key.len() + 2..];
        Ok(rest.trim_start().strip_prefix(':').ok_or_else(|| format!("the .npy header's {key} has no value"))?.trim_start())
    };
    let d = after("descr")?;
    let quote = d.chars().next().filter(|c| *c == '\'' || *c == '"').ok_or("the .npy header's descr is not a string")?;
    let descr = d[1..].split(quote).next().unwrap_or_default().to_owned();
    let f = after("fortran_order")?;
    let fortran = if f.starts_with("True") {
        true
    } else if f.starts_with("False") {
        false
    } else {
        return Err("the .npy header's fortran_order is not True or False".into());
    };
    let s = after("shape")?;
    let inner = s.strip_prefix('(').and_then(|s| s.split(')').next()).ok_or("the .npy header's shape is not a tuple")?;
    let shape = inner
        .split(',')
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .map(|d| d.trim_end_matches('L').parse::<usize>().map_err(|_| format!("the .npy header's shape has {d:?}")))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    Ok((descr, fortran, shape))
}

/// A 2-D `float32` `.npy` of a known shape written a block of rows at a time (numpy's version
/// 1.0 header, C order), into a temporary file renamed into place by [`RowWriter::finish`].
pub struct RowWriter {
    writer: BufWriter<File>,
    tmp: PathBuf,
    path: PathBuf,
    rows: usize,
    cols: usize,
    written: usize,
}

impl RowWriter {
    /// Starts `path`, a `[rows, cols]` array.
    pub fn create(path: &Path, rows: usize, cols: usize) -> Result<Self> {
        let name = path.file_name().ok_or_else(|| DataError::Invalid(format!("{}: not a file path", path.display())))?;
        let tmp = path.with_file_name(format!(".{}.tmp-{}", name.to_string_lossy(), std::process::id()));
        let file = File::create(&tmp).map_err(|e| DataError::io(&tmp, e))?;
        let mut writer = BufWriter::with_capacity(1 << 20, file);
        let mut dict = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({rows}, {cols}), }}");
        // numpy pads the header with spaces and a newline so that the data starts on 64 bytes.
        let total = (10 + dict.len() + 1).div_ceil(64) * 64;
        dict.extend(std::iter::repeat_n(' ', total - 10 - dict.len() - 1));
        dict.push('\n');
        let mut head = b"\x93NUMPY\x01\x00".to_vec();
        head.extend_from_slice(&(dict.len() as u16).to_le_bytes());
        head.extend_from_slice(dict.as_bytes());
        writer.write_all(&head).map_err(|e| DataError::io(&tmp, e))?;
        Ok(RowWriter { writer, tmp, path: path.to_path_buf(), rows, cols, written: 0 })
    }

    /// Appends whole rows (`data.len()` a multiple of the columns).
    pub fn write_rows(&mut self, data: &[f32]) -> Result<()> {
        if self.cols == 0 || !data.len().is_multiple_of(self.cols) || self.written + data.len() / self.cols > self.rows {
            return Err(DataError::Invalid(format!(
                "{}: {} values are not whole rows of {} within the {} rows announced",
                self.path.display(),
                data.len(),
                self.cols,
                self.rows
            )));
        }
        let bytes: Vec<u8> = data.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.writer.write_all(&bytes).map_err(|e| DataError::io(&self.tmp, e))?;
        self.written += data.len() / self.cols;
        Ok(())
    }

    /// Checks that every row was written and puts the file in place.
    pub fn finish(mut self) -> Result<()> {
        if self.written != self.rows {
            return Err(DataError::Invalid(format!("{}: {} of {} rows written", self.path.display(), self.written, self.rows)));
        }
        self.writer.flush().map_err(|e| DataError::io(&self.tmp, e))?;
        self.writer.get_ref().sync_all().map_err(|e| DataError::io(&self.tmp, e))?;
        std::fs::rename(&self.tmp, &self.path).map_err(|e| DataError::io(&self.path, e))?;
        self.written = usize::MAX; // renamed: nothing for drop to remove
        Ok(())
    }
}

impl Drop for RowWriter {
    fn drop(&mut self) {
        if self.written != usize::MAX {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
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
    fn rows_stream_in_and_out() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.npy");
        let a: Array2<f32> = Array2::from_shape_fn((7, 3), |(i, j)| (i * 3 + j) as f32 - 4.5);
        let mut w = RowWriter::create(&path, 7, 3).unwrap();
        w.write_rows(a.slice(ndarray::s![..4, ..]).as_slice().unwrap()).unwrap();
        assert!(w.write_rows(&[1.0, 2.0]).is_err(), "not whole rows");
        w.write_rows(a.slice(ndarray::s![4.., ..]).as_slice().unwrap()).unwrap();
        w.finish().unwrap();
        // what ndarray-npy reads (numpy's layout: data on 64 bytes)
        assert_eq!(read::<f32, Ix2>(&path).unwrap(), a);
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!((10 + u16::from_le_bytes([bytes[8], bytes[9]]) as usize) % 64, 0);
        // read back 3 rows at a time, from float32 and from float64 files
        let (f4, f8) = (dir.path().join("f4.npy"), dir.path().join("f8.npy"));
        write(&f4, &a).unwrap();
        write(&f8, &a.mapv(f64::from)).unwrap();
        for p in [f4, f8] {
            let mut r = RowReader::open(&p).unwrap();
            assert_eq!(r.shape(), (7, 3));
            let (mut all, mut block) = (Vec::new(), Vec::new());
            let mut sizes = Vec::new();
            loop {
                let n = r.read_rows(3, &mut block).unwrap();
                if n == 0 {
                    break;
                }
                sizes.push(n);
                all.extend_from_slice(&block);
            }
            assert_eq!(sizes, [3, 3, 1]);
            assert_eq!(all, a.iter().copied().collect::<Vec<_>>());
        }
        // a writer dropped unfinished leaves nothing behind
        let unfinished = dir.path().join("u.npy");
        drop(RowWriter::create(&unfinished, 2, 2).unwrap());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 3, "r.npy, f4.npy, f8.npy");
        // errors name the file
        let p = dir.path().join("i.npy");
        write(&p, &array![[1u8, 2]]).unwrap();
        let err = RowReader::open(&p).err().unwrap().to_string();
        assert!(err.contains("i.npy") && err.contains("|u1") && err.contains("<f4"), "{err}");
        write(&p, &array![1.0f32, 2.0]).unwrap();
        assert!(RowReader::open(&p).err().unwrap().to_string().contains("1-D array where 2-D"));
        let mut cut = std::fs::read(&path).unwrap();
        cut.pop();
        std::fs::write(&p, &cut).unwrap();
        assert!(RowReader::open(&p).err().unwrap().to_string().contains("1 bytes of data missing"));
        assert_eq!(parse_header("{'descr': '<f8', 'fortran_order': True, 'shape': (5,), }").unwrap(), ("<f8".into(), true, vec![5]));
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
