//! insightface's data formats, so that MS1MV2/MS1MV3/Glint360K training sets and its
//! evaluation sets can be used as they ship:
//!
//! - **MXNet RecordIO** (`train.rec` + `train.idx`), dmlc-core's format: each record is
//!   `magic 0xced7230a`, `lrec = cflag << 29 | length`, the data, zero padding to 4 bytes; a
//!   record whose data holds the magic word is split there (cflag 1 first, 2 middle, 3 last) and
//!   the magic restored on reading. `train.idx` lines are `key<TAB>byte offset`. Each record's data
//!   starts with mxnet's `IRHeader` (`flag: u32, label: f32, id: u64, id2: u64`, little endian);
//!   with `flag > 0` the label is `flag` float32 values following the header. Record 0 is
//!   insightface's header record, label `[first identity record, end of identity records]`;
//!   records `1..label[0]` are images (label = identity, data = JPEG of an aligned 112x112 face),
//!   and each identity record's label is its `[start, end)` range of image records.
//! - **Evaluation `.bin`** (`lfw.bin`, `cfp_fp.bin`, `agedb_30.bin`): a pickle of
//!   `(bins, issame_list)`, `bins` the encoded images (pair i is images 2i and 2i + 1). Read and
//!   written with `serde-pickle`: every protocol (0 to 5), Python 2's `str` (how insightface's
//!   files were made) read as bytes, as insightface's `pickle.load(f, encoding="bytes")` does.
//!
//! Both can be written from an identity-folder dataset too (for round-trip tests and for
//! tools that expect them).

use std::path::{Path, PathBuf};

use rayon::prelude::*;
use tch::Tensor;

use crate::error::{DataError, Result};
use crate::image_io::decode_rgb;
use crate::loader::Source;
use crate::normalize::PixelNorm;
use serde::ser::{Serialize, Serializer};
use serde_pickle::Value;

const MAGIC: u32 = 0xced7_230a;
const HEADER: usize = 24;

/// mxnet's `IRHeader` plus the label array when `flag > 0`.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordHeader {
    pub flag: u32,
    pub label: f32,
    pub id: u64,
    pub id2: u64,
    /// The `flag` float labels that follow the header when `flag > 0`.
    pub labels: Vec<f32>,
}

/// Splits a record's data into its header and payload (mxnet's `recordio.unpack`).
pub fn unpack(record: &[u8]) -> std::result::Result<(RecordHeader, &[u8]), String> {
    if record.len() < HEADER {
        return Err(format!("record of {} bytes is shorter than the 24-byte IRHeader", record.len()));
    }
    let u32_at = |i: usize| u32::from_le_bytes(record[i..i + 4].try_into().unwrap_or_default());
    let u64_at = |i: usize| u64::from_le_bytes(record[i..i + 8].try_into().unwrap_or_default());
    let flag = u32_at(0);
    let label = f32::from_le_bytes(record[4..8].try_into().unwrap_or_default());
    let (id, id2) = (u64_at(8), u64_at(16));
    let n = flag as usize;
    let end = n.checked_mul(4).and_then(|b| b.checked_add(HEADER)).filter(|&e| e <= record.len()).ok_or_else(|| {
        format!("IRHeader announces {n} labels but the record has {} bytes", record.len())
    })?;
    let labels = record[HEADER..end].chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
    Ok((RecordHeader { flag, label, id, id2, labels }, &record[end..]))
}

/// Packs a header (with `labels` when non-empty) and a payload (mxnet's `recordio.pack`).
pub fn pack(label: f32, labels: &[f32], id: u64, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER + 4 * labels.len() + payload.len());
    out.extend_from_slice(&(labels.len() as u32).to_le_bytes());
    out.extend_from_slice(&(if labels.is_empty() { label } else { 0.0 }).to_le_bytes());
    out.extend_from_slice(&id.to_le_bytes());
    out.extend_from_slice(&0u64.to_le_bytes());
    for l in labels {
        out.extend_from_slice(&l.to_le_bytes());
    }
    out.extend_from_slice(payload);
    out
}

/// Reads the record starting at `offset` of a `.rec` file's bytes.
pub fn read_record(rec: &[u8], offset: usize) -> std::result::Result<Vec<u8>, String> {
    let mut out = Vec::new();
    let mut pos = offset;
    let mut first = true;
    loop {
        let head = rec.get(pos..pos + 8).ok_or_else(|| format!("record header at byte {pos} is past the end"))?;
        let magic = u32::from_le_bytes(head[..4].try_into().unwrap_or_default());
        if magic != MAGIC {
            return Err(format!("no RecordIO magic at byte {pos} (found 0x{magic:08x})"));
        }
        let lrec = u32::from_le_bytes(head[4..8].try_into().unwrap_or_default());
        let (cflag, len) = (lrec >> 29, (lrec & ((1 << 29) - 1)) as usize);
        let data = rec.get(pos + 8..pos + 8 + len).ok_or_else(|| format!("record at byte {pos} is truncated"))?;
        if !first {
            out.extend_from_slice(&MAGIC.to_le_bytes());
        }
        out.extend_from_slice(data);
        pos += 8 + len.div_ceil(4) * 4;
        match (first, cflag) {
            (true, 0) | (false, 3) => return Ok(out),
            (true, 1) | (false, 2) => first = false,
            _ => return Err(format!("record part at byte {pos} has continuation flag {cflag} out of order")),
        }
    }
}

/// Appends one record to `out` the way dmlc-core's `RecordIOWriter::WriteRecord` does.
pub fn write_record(out: &mut Vec<u8>, data: &[u8]) {
    let magic = MAGIC.to_le_bytes();
    let encode = |cflag: u32, len: usize| ((cflag << 29) | len as u32).to_le_bytes();
    let lower = data.len() / 4 * 4;
    let mut start = 0;
    for i in (0..lower).step_by(4) {
        if data[i..i + 4] == magic {
            out.extend_from_slice(&magic);
            out.extend_from_slice(&encode(if start == 0 { 1 } else { 2 }, i - start));
            out.extend_from_slice(&data[start..i]);
            start = i + 4;
        }
    }
    out.extend_from_slice(&magic);
    out.extend_from_slice(&encode(if start != 0 { 3 } else { 0 }, data.len() - start));
    out.extend_from_slice(&data[start..]);
    out.resize(out.len() + (4 - data.len() % 4) % 4, 0);
}

/// An opened insightface RecordIO training set.
pub struct RecordIo {
    pub rec_path: PathBuf,
    rec: memmap2::Mmap,
    /// Byte offset of record `key`.
    offsets: std::collections::HashMap<u64, usize>,
    /// Image records: `(key, identity)`.
    pub images: Vec<(u64, i64)>,
    pub num_identities: i64,
}

impl RecordIo {
    /// Opens `train.rec` and its `.idx` (the same name with extension `idx`).
    pub fn open(rec_path: &Path) -> Result<Self> {
        let idx_path = rec_path.with_extension("idx");
        let text = std::fs::read_to_string(&idx_path).map_err(|e| DataError::io(&idx_path, e))?;
        let mut offsets = std::collections::HashMap::new();
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let mut f = line.split_whitespace();
            let (Some(k), Some(o), None) = (f.next(), f.next(), f.next()) else {
                return Err(DataError::line(&idx_path, i + 1, "expected `key<TAB>offset`"));
            };
            let (k, o) = match (k.parse::<u64>(), o.parse::<usize>()) {
                (Ok(k), Ok(o)) => (k, o),
                _ => return Err(DataError::line(&idx_path, i + 1, format!("{line:?}: key and offset must be integers"))),
            };
            offsets.insert(k, o);
        }
        let file = std::fs::File::open(rec_path).map_err(|e| DataError::io(rec_path, e))?;
        // SAFETY: the record file is only read; facerec never writes a file it has mapped.
        let rec = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| DataError::io(rec_path, e))?;
        let mut me = RecordIo { rec_path: rec_path.to_path_buf(), rec, offsets, images: Vec::new(), num_identities: 0 };
        me.index()?;
        Ok(me)
    }

    fn bad(&self, msg: String) -> DataError {
        DataError::format(&self.rec_path, msg)
    }

    /// The data of record `key`.
    pub fn record(&self, key: u64) -> Result<Vec<u8>> {
        let off = *self.offsets.get(&key).ok_or_else(|| self.bad(format!("no record {key} in the .idx file")))?;
        read_record(&self.rec, off).map_err(|m| self.bad(format!("record {key}: {m}")))
    }

    /// Finds the image records and their identities from the header record (or, without one,
    /// from every record's label).
    fn index(&mut self) -> Result<()> {
        let first = self.record(0)?;
        let (h, _) = unpack(&first).map_err(|m| self.bad(format!("record 0: {m}")))?;
        if h.flag > 0 && h.labels.len() >= 2 {
            let (img_end, id_end) = (h.labels[0] as u64, h.labels[1] as u64);
            let mut images = Vec::new();
            for (identity, key) in (img_end..id_end).enumerate() {
                let data = self.record(key)?;
                let (ih, _) = unpack(&data).map_err(|m| self.bad(format!("identity record {key}: {m}")))?;
                let [start, end] = ih.labels[..] else {
                    return Err(self.bad(format!("identity record {key}: expected a [start, end) label")));
                };
                images.extend((start as u64..end as u64).map(|k| (k, identity as i64)));
            }
            self.num_identities = (id_end - img_end) as i64;
            self.images = images;
        } else {
            let mut keys: Vec<u64> = self.offsets.keys().copied().collect();
            keys.sort_unstable();
            let mut images = Vec::new();
            for k in keys {
                let data = self.record(k)?;
                let (ih, _) = unpack(&data).map_err(|m| self.bad(format!("record {k}: {m}")))?;
                let label = if ih.flag > 0 { ih.labels[0] } else { ih.label };
                images.push((k, label as i64));
            }
            self.num_identities = images.iter().map(|i| i.1).max().map_or(0, |m| m + 1);
            self.images = images;
        }
        Ok(())
    }

    /// The encoded image and identity of image `i` (0-based over the image records).
    pub fn image(&self, i: usize) -> Result<(Vec<u8>, i64)> {
        let (key, label) = *self.images.get(i).ok_or_else(|| self.bad(format!("image {i} of {}", self.images.len())))?;
        let data = self.record(key)?;
        let (_, payload) = unpack(&data).map_err(|m| self.bad(format!("record {key}: {m}")))?;
        Ok((payload.to_vec(), label))
    }
}

/// Writes `train.rec` and `train.idx` in insightface's layout from encoded images and labels
/// `0..n_identities` (images of one identity contiguous and in label order, as insightface
/// expects).
pub fn write_recordio(rec_path: &Path, images: &[(Vec<u8>, i64)]) -> Result<()> {
    if images.windows(2).any(|w| w[1].1 < w[0].1) {
        return Err(DataError::Invalid("write_recordio: images must be sorted by identity".into()));
    }
    let n = images.len() as u64;
    let ids = images.last().map_or(0, |l| l.1 + 1) as u64;
    let mut rec = Vec::new();
    let mut idx = String::new();
    let mut put = |key: u64, data: Vec<u8>, rec: &mut Vec<u8>| {
        idx.push_str(&format!("{key}\t{}\n", rec.len()));
        write_record(rec, &data);
    };
    put(0, pack(0.0, &[(n + 1) as f32, (n + 1 + ids) as f32], 0, &[]), &mut rec);
    for (i, (bytes, label)) in images.iter().enumerate() {
        put(i as u64 + 1, pack(*label as f32, &[], i as u64 + 1, bytes), &mut rec);
    }
    for id in 0..ids {
        let start = images.iter().position(|x| x.1 == id as i64).map_or(0, |p| p as u64 + 1);
        let end = start + images.iter().filter(|x| x.1 == id as i64).count() as u64;
        put(n + 1 + id, pack(0.0, &[start as f32, end as f32], n + 1 + id, &[]), &mut rec);
    }
    facerec_core::fsutil::atomic_write_bytes(rec_path, &rec)?;
    Ok(facerec_core::fsutil::atomic_write_bytes(&rec_path.with_extension("idx"), idx.as_bytes())?)
}

/// How crops are stored in a `.rec` or `.bin`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Encoding {
    /// JPEG at quality 95, as insightface stores its sets.
    #[default]
    Jpeg,
    /// PNG: lossless, so that any decoder reads the same pixels (comparisons with another
    /// trainer reading the same file).
    Png,
}

/// One face as a `.rec` record holds it: the encoded image and its label.
pub type EncodedFace = (Vec<u8>, i64);

/// Aligns every image of `dataset` (in parallel) and encodes the crops (`encoding`), in dataset
/// order, as insightface stores them. Bad images fail or are skipped per `on_bad`.
pub fn aligned_encoded(
    dataset: &crate::dataset::FaceDataset,
    landmarks: &crate::landmarks::LandmarkFile,
    template: crate::align::Template,
    encoding: Encoding,
    on_bad: crate::landmarks::OnBad,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<(Vec<EncodedFace>, Vec<DataError>)> {
    let (h, w) = template.size();
    let encoded: Vec<Result<(Vec<u8>, i64)>> = dataset
        .samples
        .par_iter()
        .map(|s| {
            let crop = crate::cache::aligned_crop(dataset, s, landmarks, template)?;
            let img = image::RgbImage::from_raw(w, h, crop).ok_or_else(|| DataError::Invalid("crop size".into()))?;
            let mut bytes = Vec::new();
            let written = match encoding {
                Encoding::Jpeg => image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, 95).encode_image(&img),
                Encoding::Png => img.write_to(&mut std::io::Cursor::new(&mut bytes), image::ImageFormat::Png),
            };
            written.map_err(|e| DataError::Image { path: dataset.image_path(s), msg: e.to_string() })?;
            progress(1);
            Ok((bytes, s.label))
        })
        .collect();
    let mut out = Vec::new();
    let mut skipped = Vec::new();
    for r in encoded {
        match (r, on_bad) {
            (Ok(v), _) => out.push(v),
            (Err(e), crate::landmarks::OnBad::Fail) => return Err(e),
            (Err(e), crate::landmarks::OnBad::Skip) => skipped.push(e),
        }
    }
    Ok((out, skipped))
}

/// A training [`Source`] over a RecordIO set: JPEGs decoded (in parallel) per batch.
pub struct RecordIoSource {
    rec: RecordIo,
    /// The stored images' `[C, H, W]`.
    stored: [i64; 3],
    /// What the batches hold: the stored size, or the model's crop of it ([`RecordIoSource::fit_to`]).
    shape: [i64; 3],
    norm: PixelNorm,
}

impl RecordIoSource {
    /// The image size is the first image's; an image of another size fails its batch.
    pub fn new(rec: RecordIo) -> Result<Self> {
        if rec.images.is_empty() {
            return Err(DataError::format(&rec.rec_path, "no image records"));
        }
        let (bytes, _) = rec.image(0)?;
        let img = decode_rgb(&bytes, &rec.rec_path)?;
        let shape = [3, i64::from(img.height()), i64::from(img.width())];
        Ok(RecordIoSource { rec, stored: shape, shape, norm: PixelNorm::CAFFE_FACE })
    }

    /// The source with its batches normalised by `norm` (the model's).
    pub fn with_norm(self, norm: PixelNorm) -> Self {
        RecordIoSource { norm, ..self }
    }

    /// The source with its images cut to a model's `[3, H, W]` input: the images themselves
    /// when the sizes match, the caffe-face 112x96 crop (columns 8..104) of insightface's
    /// 112x112 ones for a 112x96 model (see [`crate::align::fit_aligned`]); another size is an
    /// error that says which.
    pub fn fit_to(self, shape: [i64; 3]) -> Result<Self> {
        let [c, h, w] = self.stored;
        // The crop fit_aligned would cut from an image of the stored size.
        let fits = shape[0] == c && crate::align::fit_aligned(&image::RgbImage::new(w as u32, h as u32), shape[1] as u32, shape[2] as u32).is_some();
        if !fits {
            return Err(DataError::format(
                &self.rec.rec_path,
                format!(
                    "its images are {h}x{w}, the model takes {}x{}: a 112x112 set (insightface's) trains 112x112 and \
                     112x96 models (the latter on columns 8..104, the caffe-face crop), a 112x96 set 112x96 models only",
                    shape[1], shape[2]
                ),
            ));
        }
        Ok(RecordIoSource { shape, ..self })
    }
}

impl Source for RecordIoSource {
    fn len(&self) -> usize {
        self.rec.images.len()
    }

    fn num_classes(&self) -> i64 {
        self.rec.num_identities
    }

    fn labels(&self) -> Vec<i64> {
        self.rec.images.iter().map(|&(_, label)| label).collect()
    }

    fn image_shape(&self) -> [i64; 3] {
        self.shape
    }

    fn load(&self, indices: &[usize], flips: &[bool]) -> Result<(Tensor, Tensor)> {
        let [c, h, w] = self.shape;
        let per = (c * h * w) as usize;
        let plane = (h * w) as usize;
        let mut pixels = vec![0f32; per * indices.len()];
        let labels: Vec<Result<i64>> = pixels
            .par_chunks_mut(per)
            .zip(indices.par_iter().zip(flips.par_iter()))
            .map(|(dst, (&i, &flip))| {
                let (bytes, label) = self.rec.image(i)?;
                let path = self.rec.rec_path.join(format!("#{i}"));
                let img = decode_rgb(&bytes, &path)?;
                if [3, i64::from(img.height()), i64::from(img.width())] != self.stored {
                    return Err(DataError::Image { path, msg: "image size differs from the rest of the set".into() });
                }
                let pixels = crate::align::fit_aligned(&img, h as u32, w as u32)
                    .ok_or_else(|| DataError::Image { path: path.clone(), msg: "cannot be cut to the model's input".into() })?;
                let width = w as usize;
                for (p, px) in pixels.chunks_exact(3).enumerate() {
                    let (y, x) = (p / width, p % width);
                    let x = if flip { width - 1 - x } else { x };
                    for ch in 0..3 {
                        dst[ch * plane + y * width + x] = self.norm.apply(px[ch]);
                    }
                }
                Ok(label)
            })
            .collect();
        let labels: Vec<i64> = labels.into_iter().collect::<Result<_>>()?;
        let images = Tensor::f_from_slice(&pixels)?.f_view([indices.len() as i64, c, h, w])?;
        Ok((images, Tensor::f_from_slice(&labels)?))
    }
}

/// An evaluation `.bin`: encoded images and, per pair of consecutive images, same or not.
#[derive(Debug, Clone, PartialEq)]
pub struct EvalBin {
    pub images: Vec<Vec<u8>>,
    pub issame: Vec<bool>,
}

impl EvalBin {
    /// Reads a `.bin` file.
    pub fn read(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
        Self::parse(&bytes).map_err(|m| DataError::format(path, m))
    }

    /// Parses `.bin` bytes.
    pub fn parse(bytes: &[u8]) -> std::result::Result<Self, String> {
        let value = serde_pickle::value_from_slice(bytes, serde_pickle::DeOptions::new())
            .map_err(|e| format!("not a readable pickle: {e}"))?;
        let Value::Tuple(items) = value else {
            return Err("expected a pickled (bins, issame_list) tuple".into());
        };
        let two_lists = || "expected a pickled (bins, issame_list) tuple of two lists".to_string();
        let [Value::List(bins), Value::List(same)] = <[Value; 2]>::try_from(items).map_err(|_| two_lists())? else {
            return Err(two_lists());
        };
        let images = bins
            .into_iter()
            .map(|v| match v {
                Value::Bytes(b) => Ok(b),
                _ => Err("bins must hold byte strings".to_string()),
            })
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let issame = same
            .iter()
            .map(|v| match v {
                Value::Bool(b) => Ok(*b),
                Value::I64(i) => Ok(*i != 0),
                _ => Err("issame_list must hold booleans".to_string()),
            })
            .collect::<std::result::Result<Vec<_>, _>>()?;
        if images.len() != 2 * issame.len() {
            return Err(format!("{} images for {} pairs (expected two per pair)", images.len(), issame.len()));
        }
        Ok(EvalBin { images, issame })
    }

    /// Writes the `.bin` file: pickle protocol 3, `(list of bytes, list of bools)`, which
    /// Python 3 reads with `pickle.load(f, encoding="bytes")` as insightface does.
    pub fn write(&self, path: &Path) -> Result<()> {
        let bins: Vec<PyBytes> = self.images.iter().map(|b| PyBytes(b)).collect();
        Ok(facerec_core::fsutil::atomic_write(path, |w| {
            serde_pickle::to_writer(w, &(bins, &self.issame), serde_pickle::SerOptions::new())
                .map_err(|e| std::io::Error::other(format!("pickling: {e}")))
        })?)
    }
}

/// An image as a Python `bytes` object (a plain `&[u8]` would pickle as a list of ints).
struct PyBytes<'a>(&'a [u8]);

impl Serialize for PyBytes<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_bytes(self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_holding_the_magic_word_are_split_and_restored() {
        let mut data = vec![1u8, 2, 3, 4];
        data.extend_from_slice(&MAGIC.to_le_bytes());
        data.extend_from_slice(&[9, 9]);
        data.extend_from_slice(&MAGIC.to_le_bytes()); // not 4-aligned: stays inside a part
        let mut rec = Vec::new();
        write_record(&mut rec, b"abc");
        let second = rec.len();
        write_record(&mut rec, &data);
        assert_eq!(rec.len() % 4, 0);
        assert_eq!(read_record(&rec, 0).unwrap(), b"abc");
        assert_eq!(read_record(&rec, second).unwrap(), data);
        // cflag 1 then 3
        assert_eq!(u32::from_le_bytes(rec[second + 4..second + 8].try_into().unwrap()) >> 29, 1);
        assert!(read_record(&rec[..rec.len() - 4], second).unwrap_err().contains("truncated"));
        assert!(read_record(&rec, 1).unwrap_err().contains("magic"));
    }

    #[test]
    fn eval_bins_round_trip_and_python2_pickles_read() {
        let bin = EvalBin { images: vec![b"abc".to_vec(), vec![7u8; 300]], issame: vec![true] };
        let mut bytes = Vec::new();
        serde_pickle::to_writer(&mut bytes, &(vec![PyBytes(b"abc"), PyBytes(&[7u8; 300])], vec![true]), Default::default())
            .unwrap();
        assert_eq!(EvalBin::parse(&bytes).unwrap(), bin);
        // (A Rust array would pickle as a tuple, which is not insightface's layout.)
        let mut tuple = Vec::new();
        serde_pickle::to_writer(&mut tuple, &(vec![PyBytes(b"ab"), PyBytes(b"c")], [true]), Default::default()).unwrap();
        assert!(EvalBin::parse(&tuple).unwrap_err().contains("two lists"));
        // Python 2, protocol 2, as insightface's files were written: (['ab', 'c'], [True]) with
        // `str` opcodes and memo puts (`pickle.loads(b, encoding="bytes")` gives
        // `([b'ab', b'c'], [True])`).
        let py2 = b"\x80\x02]q\x00(U\x02abq\x01U\x01cq\x02e]q\x03\x88a\x86q\x04.";
        let bin = EvalBin::parse(py2).unwrap();
        assert_eq!((bin.images, bin.issame), (vec![b"ab".to_vec(), b"c".to_vec()], vec![true]));
        // Python 3 writing bytes at protocol 2 goes through `_codecs.encode(text, "latin1")`.
        let py3_p2 = b"\x80\x02]q\x00(c_codecs\nencode\nq\x01X\x02\x00\x00\x00abq\x02X\x06\x00\x00\x00latin1q\x03\x86q\x04Rq\x05h\x01X\x01\x00\x00\x00cq\x06h\x03\x86q\x07Rq\x08e]q\x09\x88a\x86q\x0a.";
        assert_eq!(EvalBin::parse(py3_p2).unwrap().images, vec![b"ab".to_vec(), b"c".to_vec()]);
        assert!(EvalBin::parse(b"\x80\x02]").unwrap_err().contains("not a readable pickle"));
        assert!(EvalBin::parse(b"\x80\x02]q\x00U\x02aba]\x88a\x86.").unwrap_err().contains("two per pair"));
        assert!(EvalBin::parse(b"\x80\x02cnumpy\ncore\n)R.").is_err());
    }

    #[test]
    fn headers_pack_and_unpack_like_mxnet() {
        let r = pack(3.0, &[], 7, b"jpeg");
        let (h, p) = unpack(&r).unwrap();
        assert_eq!((h.flag, h.label, h.id, p), (0, 3.0, 7, &b"jpeg"[..]));
        let r = pack(0.0, &[5.0, 9.0], 0, b"");
        let (h, p) = unpack(&r).unwrap();
        assert_eq!((h.flag, h.labels.clone(), p.len()), (2, vec![5.0, 9.0], 0));
        assert!(unpack(&r[..25]).is_err());
    }
}
