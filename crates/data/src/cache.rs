//! Aligned face crops, prepared once: decoding, landmark lookup and alignment run in parallel
//! on rayon; the result is either image files (`facerec align --out`) or a compact cache that
//! training and evaluation memory-map without decoding a JPEG again:
//!
//! - `crops.u8`: `N x 3 x H x W` bytes (planar RGB), image `i` at offset `i * 3 * H * W`;
//! - `index.json`: template, shape, identities, and per image its path and label, plus a
//!   fingerprint of what it was made from.
//!
//! Both files are written to temporary names and renamed (the index last), so a crash never
//! leaves a cache that looks complete. A cache whose fingerprint differs from the request is
//! rebuilt.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::align::{align, hwc_to_chw, Template};
use crate::dataset::{FaceDataset, Sample};
use crate::error::{DataError, Result};
use crate::image_io::read_rgb;
use crate::landmarks::{LandmarkFile, OnBad};
use crate::pixels::{PixelSource, Pixels};

const VERSION: u32 = 1;
/// Images aligned per parallel chunk (bounds memory while writing in order).
const CHUNK: usize = 256;

/// The aligned crop (`HWC` RGB) of one sample.
pub fn aligned_crop(dataset: &FaceDataset, sample: &Sample, landmarks: &LandmarkFile, template: Template) -> Result<Vec<u8>> {
    let path = dataset.image_path(sample);
    let entry = landmarks.entries.get(&sample.path).ok_or_else(|| DataError::Landmarks {
        path: path.clone(),
        msg: "no landmarks for this image (detect them with `facerec detect`, or pass --skip-bad)".into(),
    })?;
    let img = read_rgb(&path)?;
    align(&img, &entry.landmarks, template).map_err(|e| DataError::Landmarks { path, msg: e.to_string() })
}

/// What a build did.
#[derive(Debug, Default)]
pub struct BuildReport {
    pub written: usize,
    /// Images left out under [`OnBad::Skip`], each with its reason.
    pub skipped: Vec<DataError>,
}

/// The metadata of a cache.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CacheIndex {
    pub version: u32,
    pub template: Template,
    /// `[C, H, W]` of one crop.
    pub shape: [i64; 3],
    pub identities: Vec<String>,
    pub paths: Vec<PathBuf>,
    pub labels: Vec<i64>,
    pub fingerprint: u64,
}

/// A fingerprint of the inputs of a cache: template, samples and their landmarks. It names the
/// cache's folder and is stored in its index, so it must not change with the platform or the Rust
/// version (as `DefaultHasher` may): it is the first 8 bytes, read little-endian, of the SHA-256
/// of this encoding (strings as UTF-8 preceded by their byte length as a u64, numbers
/// little-endian):
///
/// `"facerec crop cache"`, `VERSION` (u32), the template's config name (`caffe_face`), the
/// dataset root; then per sample its path (as stored, relative to the root), its label (i64), and
/// a byte 0 (no landmarks) or 1 followed by the ten landmark coordinates (f32, x then y).
pub fn fingerprint(dataset: &FaceDataset, landmarks: &LandmarkFile, template: Template) -> u64 {
    fn text(h: &mut Sha256, s: &str) {
        h.update((s.len() as u64).to_le_bytes());
        h.update(s.as_bytes());
    }
    let mut h = Sha256::new();
    text(&mut h, "facerec crop cache");
    h.update(VERSION.to_le_bytes());
    text(
        &mut h,
        match template {
            Template::CaffeFace => "caffe_face",
            Template::Insightface => "insightface",
        },
    );
    text(&mut h, &dataset.root.to_string_lossy());
    for s in &dataset.samples {
        text(&mut h, &s.path.to_string_lossy());
        h.update(s.label.to_le_bytes());
        match landmarks.entries.get(&s.path) {
            None => h.update([0u8]),
            Some(e) => {
                h.update([1u8]);
                for v in e.landmarks.0.as_flattened() {
                    h.update(v.to_le_bytes());
                }
            }
        }
    }
    let mut first = [0u8; 8];
    first.copy_from_slice(&h.finalize()[..8]);
    u64::from_le_bytes(first)
}

/// Runs `f` over the samples in chunks, in parallel within a chunk, handing each result to
/// `sink` in dataset order. Under [`OnBad::Fail`] the first error (in order) stops everything.
fn for_each_aligned<T: Send>(
    dataset: &FaceDataset,
    on_bad: OnBad,
    progress: &(dyn Fn(u64) + Sync),
    f: impl Fn(&Sample) -> Result<T> + Sync,
    mut sink: impl FnMut(&Sample, T) -> Result<()>,
) -> Result<Vec<DataError>> {
    let mut skipped = Vec::new();
    for chunk in dataset.samples.chunks(CHUNK) {
        let results: Vec<Result<T>> = chunk
            .par_iter()
            .map(|s| {
                let r = f(s);
                progress(1);
                r
            })
            .collect();
        for (sample, r) in chunk.iter().zip(results) {
            match (r, on_bad) {
                (Ok(v), _) => sink(sample, v)?,
                (Err(e), OnBad::Fail) => return Err(e),
                (Err(e), OnBad::Skip) => skipped.push(e),
            }
        }
    }
    Ok(skipped)
}

/// Builds the crop cache of `dataset` in `dir`.
pub fn build(
    dataset: &FaceDataset,
    landmarks: &LandmarkFile,
    template: Template,
    dir: &Path,
    on_bad: OnBad,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<BuildReport> {
    std::fs::create_dir_all(dir).map_err(|e| DataError::io(dir, e))?;
    let (h, w) = template.size();
    let crops_path = dir.join("crops.u8");
    let tmp = dir.join(format!(".crops.u8.tmp-{}", std::process::id()));
    let file = std::fs::File::create(&tmp).map_err(|e| DataError::io(&tmp, e))?;
    let mut out = std::io::BufWriter::with_capacity(1 << 22, file);
    let (mut paths, mut labels) = (Vec::new(), Vec::new());
    let result = for_each_aligned(
        dataset,
        on_bad,
        progress,
        |s| aligned_crop(dataset, s, landmarks, template).map(|hwc| hwc_to_chw(&hwc, h as usize, w as usize)),
        |s, chw| {
            out.write_all(&chw).map_err(|e| DataError::io(&tmp, e))?;
            paths.push(s.path.clone());
            labels.push(s.label);
            Ok(())
        },
    );
    let finish = |out: std::io::BufWriter<std::fs::File>| -> std::io::Result<()> {
        let file = out.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()
    };
    let skipped = match result.and_then(|s| finish(out).map(|_| s).map_err(|e| DataError::io(&tmp, e))) {
        Ok(s) => s,
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
    };
    if paths.is_empty() {
        let _ = std::fs::remove_file(&tmp);
        return Err(DataError::Invalid(format!("{}: no image could be aligned", dataset.root.display())));
    }
    // Remove a stale index first: between the two renames no complete-looking cache exists.
    let index_path = dir.join("index.json");
    let _ = std::fs::remove_file(&index_path);
    std::fs::rename(&tmp, &crops_path).map_err(|e| DataError::io(&crops_path, e))?;
    let index = CacheIndex {
        version: VERSION,
        template,
        shape: [3, h as i64, w as i64],
        identities: dataset.identities.clone(),
        paths,
        labels,
        fingerprint: fingerprint(dataset, landmarks, template),
    };
    let json = serde_json::to_vec(&index).map_err(|e| DataError::Invalid(e.to_string()))?;
    facerec_core::fsutil::atomic_write_bytes(&index_path, &json)?;
    Ok(BuildReport { written: index.paths.len(), skipped })
}

/// An opened (memory-mapped) crop cache.
pub struct CropCache {
    pub dir: PathBuf,
    pub index: CacheIndex,
    pixels: Pixels,
}

impl CropCache {
    /// Opens and checks a cache directory.
    pub fn open(dir: &Path) -> Result<Self> {
        let index_path = dir.join("index.json");
        let bytes = std::fs::read(&index_path).map_err(|e| DataError::io(&index_path, e))?;
        let index: CacheIndex =
            serde_json::from_slice(&bytes).map_err(|e| DataError::format(&index_path, format!("bad cache index: {e}")))?;
        if index.version != VERSION || index.paths.len() != index.labels.len() {
            return Err(DataError::format(&index_path, "cache index of another version or inconsistent"));
        }
        let crops = dir.join("crops.u8");
        let file = std::fs::File::open(&crops).map_err(|e| DataError::io(&crops, e))?;
        // SAFETY: the cache is written once by `build` and then only read; facerec never
        // modifies a mapped cache in place (a rebuild renames a new file over it).
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| DataError::io(&crops, e))?;
        let per = index.shape.iter().product::<i64>() as usize;
        if map.len() != per * index.paths.len() {
            return Err(DataError::format(
                &crops,
                format!("{} bytes, expected {} crops of {per} bytes: the cache is damaged, delete it", map.len(), index.paths.len()),
            ));
        }
        Ok(CropCache { dir: dir.to_path_buf(), index, pixels: Pixels::Mapped(map) })
    }

    /// Opens the cache in `dir` if it was made from these inputs, else builds it.
    pub fn open_or_build(
        dataset: &FaceDataset,
        landmarks: &LandmarkFile,
        template: Template,
        dir: &Path,
        on_bad: OnBad,
        progress: &(dyn Fn(u64) + Sync),
    ) -> Result<(Self, Option<BuildReport>)> {
        let want = fingerprint(dataset, landmarks, template);
        if let Ok(cache) = Self::open(dir) {
            if cache.index.fingerprint == want {
                return Ok((cache, None));
            }
            tracing::info!("{}: cache made from other inputs, rebuilding", dir.display());
        }
        let report = build(dataset, landmarks, template, dir, on_bad, progress)?;
        Ok((Self::open(dir)?, Some(report)))
    }

    /// [`CropCache::open_or_build`] in a sub-folder of `root` named after the template and the
    /// inputs' fingerprint, so that caches of different datasets live side by side.
    pub fn open_or_build_in(
        dataset: &FaceDataset,
        landmarks: &LandmarkFile,
        template: Template,
        root: &Path,
        on_bad: OnBad,
        progress: &(dyn Fn(u64) + Sync),
    ) -> Result<(Self, Option<BuildReport>)> {
        let name = format!("{template:?}-{:016x}", fingerprint(dataset, landmarks, template)).to_lowercase();
        Self::open_or_build(dataset, landmarks, template, &root.join(name), on_bad, progress)
    }

    pub fn len(&self) -> usize {
        self.index.paths.len()
    }

    pub fn is_empty(&self) -> bool {
        self.index.paths.is_empty()
    }

    /// Position of each image path in the cache.
    pub fn positions(&self) -> std::collections::HashMap<PathBuf, usize> {
        self.index.paths.iter().enumerate().map(|(i, p)| (p.clone(), i)).collect()
    }

    /// A training source over the crops.
    pub fn into_source(self) -> Result<PixelSource> {
        let n = self.index.identities.len() as i64;
        PixelSource::new(self.pixels, self.index.labels, n, self.index.shape)
    }
}

/// Writes aligned crops as image files under `out`, in the dataset's folder layout (PNG when
/// `png`, else JPEG quality 95, extension changed to match).
pub fn write_crops(
    dataset: &FaceDataset,
    landmarks: &LandmarkFile,
    template: Template,
    out: &Path,
    png: bool,
    on_bad: OnBad,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<BuildReport> {
    let (h, w) = template.size();
    let written = AtomicUsize::new(0);
    let skipped = for_each_aligned(
        dataset,
        on_bad,
        progress,
        |s| {
            let hwc = aligned_crop(dataset, s, landmarks, template)?;
            let dst = out.join(&s.path).with_extension(if png { "png" } else { "jpg" });
            if let Some(parent) = dst.parent() {
                std::fs::create_dir_all(parent).map_err(|e| DataError::io(parent, e))?;
            }
            let img = image::RgbImage::from_raw(w, h, hwc).ok_or_else(|| DataError::Invalid("crop size".into()))?;
            let mut bytes = Vec::new();
            let enc = if png {
                img.write_to(&mut std::io::Cursor::new(&mut bytes), image::ImageFormat::Png)
            } else {
                image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, 95).encode_image(&img)
            };
            enc.map_err(|e| DataError::Image { path: dst.clone(), msg: e.to_string() })?;
            facerec_core::fsutil::atomic_write_bytes(&dst, &bytes)?;
            written.fetch_add(1, Ordering::Relaxed);
            Ok(())
        },
        |_, ()| Ok(()),
    )?;
    Ok(BuildReport { written: written.into_inner(), skipped })
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::landmarks::{LandmarkEntry, Landmarks};

    #[test]
    fn fingerprint_is_the_specified_hash_of_the_inputs() {
        let dataset = FaceDataset {
            root: PathBuf::from("/data/faces"),
            samples: vec![
                Sample { path: PathBuf::from("Ann/Ann_0001.jpg"), label: 0 },
                Sample { path: PathBuf::from("Bob/Bob_0001.jpg"), label: 1 },
            ],
            identities: vec!["Ann".into(), "Bob".into()],
        };
        let points = [[30.5, 51.25], [65.5, 51.5], [48.0, 71.75], [33.5, 92.25], [62.75, 92.0]];
        let entry = LandmarkEntry { landmarks: Landmarks(points), score: Some(0.9) };
        let landmarks =
            LandmarkFile { entries: HashMap::from([(PathBuf::from("Ann/Ann_0001.jpg"), entry)]), skipped: Vec::new() };
        // The same encoding with Python's hashlib (Bob has no landmarks):
        //   import hashlib, struct
        //   h = hashlib.sha256()
        //   def text(s): b = s.encode(); h.update(struct.pack('<Q', len(b)) + b)
        //   text("facerec crop cache"); h.update(struct.pack('<I', 1)); text("caffe_face"); text("/data/faces")
        //   text("Ann/Ann_0001.jpg"); h.update(struct.pack('<q', 0))
        //   h.update(b'\x01' + struct.pack('<10f', 30.5, 51.25, 65.5, 51.5, 48.0, 71.75, 33.5, 92.25, 62.75, 92.0))
        //   text("Bob/Bob_0001.jpg"); h.update(struct.pack('<q', 1)); h.update(b'\x00')
        //   hex(struct.unpack('<Q', h.digest()[:8])[0])  # 0x7cf8a5a8e20b4c58
        assert_eq!(VERSION, 1, "the pinned value below encodes version 1");
        let fp = fingerprint(&dataset, &landmarks, Template::CaffeFace);
        assert_eq!(fp, 0x7cf8_a5a8_e20b_4c58);
        // Every input counts.
        assert_ne!(fingerprint(&dataset, &landmarks, Template::Insightface), fp);
        let relabelled = FaceDataset {
            samples: vec![dataset.samples[0].clone(), Sample { label: 0, ..dataset.samples[1].clone() }],
            ..dataset.clone()
        };
        assert_ne!(fingerprint(&relabelled, &landmarks, Template::CaffeFace), fp);
        assert_ne!(fingerprint(&dataset, &LandmarkFile { entries: HashMap::new(), skipped: Vec::new() }, Template::CaffeFace), fp);
    }
}
