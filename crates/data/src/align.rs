//! Five-point face alignment: the least-squares similarity transform (rotation, uniform scale,
//! translation) from a face's landmarks to a fixed template, then a bilinear warp to the crop.
//!
//! The template is caffe-face's 112x96 one (Wen et al. 2016, Sec. 4.1: "faces are aligned by
//! similarity transformation" with landmarks from MTCNN); insightface's 112x112 template is the
//! same points shifted right by 8 pixels.
//!
//! The transform is the closed-form least-squares solution over `[a -b; b a]` and `t`, which is
//! the optimum Umeyama's method (used by skimage's `SimilarityTransform.estimate`) finds for
//! proper rotations. The warp samples like OpenCV's `warpAffine(..., INTER_LINEAR,
//! BORDER_CONSTANT)`, in the same fixed-point arithmetic: pixel centres at integer coordinates,
//! neighbours outside the image count as black. `scripts/reference/align_opencv.py` is the
//! independent check (see `tests/align_reference.rs`).

use image::RgbImage;
use serde::{Deserialize, Serialize};

use crate::error::{DataError, Result};
use crate::landmarks::Landmarks;

/// A crop layout: its size and where the five landmarks should land.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Template {
    /// caffe-face, 112 rows x 96 columns (the paper's Face-ResNet input).
    #[default]
    CaffeFace,
    /// insightface, 112 x 112 (IResNet input).
    Insightface,
}

/// caffe-face's 112x96 template points.
pub const CAFFE_FACE_112X96: [[f64; 2]; 5] = [
    [30.2946, 51.6963],
    [65.5318, 51.5014],
    [48.0252, 71.7366],
    [33.5493, 92.3655],
    [62.7299, 92.2041],
];

impl Template {
    /// `(height, width)` of the crop.
    pub fn size(self) -> (u32, u32) {
        match self {
            Template::CaffeFace => (112, 96),
            Template::Insightface => (112, 112),
        }
    }

    /// The template whose crops are `height` x `width`, if any.
    pub fn of_size(height: u32, width: u32) -> Option<Self> {
        [Template::CaffeFace, Template::Insightface].into_iter().find(|t| t.size() == (height, width))
    }

    /// The template of a backbone's `[C, H, W]` input: RGB crops of a template's size.
    pub fn for_input(shape: [i64; 3]) -> Result<Self, String> {
        let [c, h, w] = shape;
        let found = if c == 3 { u32::try_from(h).ok().zip(u32::try_from(w).ok()).and_then(|(h, w)| Self::of_size(h, w)) } else { None };
        found.ok_or_else(|| format!("no face crop template gives {shape:?} inputs (112x96 and 112x112 exist)"))
    }

    /// The five target points.
    pub fn points(self) -> [[f64; 2]; 5] {
        let dx = f64::from(self.x_offset());
        CAFFE_FACE_112X96.map(|[x, y]| [x + dx, y])
    }

    /// How many pixels right of caffe-face's the template puts the face (same rows).
    fn x_offset(self) -> u32 {
        match self {
            Template::CaffeFace => 0,
            Template::Insightface => 8,
        }
    }
}

/// The smallest ratio of the landmarks' spread across their main axis to their spread along
/// it (standard deviations) that [`Similarity::estimate`] accepts: below it the points are
/// (nearly) collinear. Real faces are far above it: the lowest among the 13,233 LFW rows of
/// `landmarks_5pt.tsv` is 0.38, caffe-face's template 0.80.
pub const MIN_SPREAD_RATIO: f64 = 0.05;

/// A 2x3 affine matrix `[[a, -b, tx], [b, a, ty]]` mapping source to crop coordinates.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Similarity {
    pub m: [[f64; 3]; 2],
}

impl Similarity {
    /// Least-squares similarity taking `src` onto `dst`. Fails for degenerate point sets:
    /// all points on one spot, three or more points on (or within
    /// [`MIN_SPREAD_RATIO`] of) one line, or an absurd scale.
    pub fn estimate(src: &[[f64; 2]], dst: &[[f64; 2]]) -> Result<Self> {
        let n = src.len();
        if n < 2 || n != dst.len() {
            return Err(DataError::Invalid(format!("similarity needs >= 2 matched points, got {n} and {}", dst.len())));
        }
        if src.iter().chain(dst).any(|p| !p[0].is_finite() || !p[1].is_finite()) {
            return Err(DataError::Invalid("landmarks hold a non-finite coordinate".into()));
        }
        let mean = |pts: &[[f64; 2]]| {
            let s = pts.iter().fold([0.0, 0.0], |acc, p| [acc[0] + p[0], acc[1] + p[1]]);
            [s[0] / n as f64, s[1] / n as f64]
        };
        let (ms, md) = (mean(src), mean(dst));
        let (mut num_a, mut num_b, mut var) = (0.0, 0.0, 0.0);
        let (mut sxx, mut syy, mut sxy) = (0.0, 0.0, 0.0);
        for (s, d) in src.iter().zip(dst) {
            let (sx, sy) = (s[0] - ms[0], s[1] - ms[1]);
            let (dx, dy) = (d[0] - md[0], d[1] - md[1]);
            num_a += sx * dx + sy * dy;
            num_b += sx * dy - sy * dx;
            var += sx * sx + sy * sy;
            (sxx, syy, sxy) = (sxx + sx * sx, syy + sy * sy, sxy + sx * sy);
        }
        if var < 1e-6 {
            return Err(DataError::Invalid("degenerate landmarks: all five points coincide".into()));
        }
        if n >= 3 {
            // Principal spreads of the points: the eigenvalues of their scatter matrix. On one
            // line the smaller is zero and the fit only pins the points' direction, not a face.
            let half_gap = (((sxx - syy) / 2.0).powi(2) + sxy * sxy).sqrt();
            let (major, minor) = (var / 2.0 + half_gap, (var / 2.0 - half_gap).max(0.0));
            let ratio = (minor / major).sqrt();
            if ratio < MIN_SPREAD_RATIO {
                return Err(DataError::Invalid(format!(
                    "degenerate landmarks: the points lie on one line (spread across it {ratio:.3} of \
                     the spread along it, at least {MIN_SPREAD_RATIO} needed)"
                )));
            }
        }
        let (a, b) = (num_a / var, num_b / var);
        let scale = (a * a + b * b).sqrt();
        if !(1e-3..=1e3).contains(&scale) {
            return Err(DataError::Invalid(format!("degenerate landmarks: the similarity scale is {scale:.3e}")));
        }
        let tx = md[0] - (a * ms[0] - b * ms[1]);
        let ty = md[1] - (b * ms[0] + a * ms[1]);
        Ok(Similarity { m: [[a, -b, tx], [b, a, ty]] })
    }

    /// The transform of `landmarks` onto `template`.
    pub fn to_template(landmarks: &Landmarks, template: Template) -> Result<Self> {
        let src = landmarks.0.map(|[x, y]| [f64::from(x), f64::from(y)]);
        Self::estimate(&src, &template.points())
    }

    /// The inverse map (crop to source), used to sample: `x = R^-1 (u - t)` with
    /// `R^-1 = [a b; -b a] / (a^2 + b^2)`.
    pub fn inverse(&self) -> [[f64; 3]; 2] {
        let [[a, _, tx], [b, _, ty]] = self.m;
        let det = a * a + b * b;
        let (ia, ib) = (a / det, b / det);
        [[ia, ib, -(ia * tx + ib * ty)], [-ib, ia, ib * tx - ia * ty]]
    }
}

/// Sub-pixel positions per pixel (OpenCV's `INTER_TAB_SIZE`): coordinates are rounded to
/// 1/32 pixel and the bilinear weights are exact integers.
const TAB_BITS: i64 = 5;
const TAB: i64 = 1 << TAB_BITS;
/// Fixed-point scale of the per-row coordinate arithmetic (OpenCV's `AB_BITS`).
const AB_BITS: i64 = 10;

/// Warps `img` into a `height x width` RGB crop (`HWC` bytes) through `sim`: bilinear,
/// outside pixels black. The arithmetic follows OpenCV's `warpAffine` (coordinates in fixed
/// point, rounded to 1/32 pixel; weights `(32 - fx)(32 - fy)` etc. summing to 1024; the sum
/// rounded), so crops agree with OpenCV's to within JPEG-decoder differences.
pub fn warp(img: &RgbImage, sim: &Similarity, height: u32, width: u32) -> Vec<u8> {
    let (w, h) = (img.width() as i64, img.height() as i64);
    let src = img.as_raw();
    let stride = (w * 3) as usize;
    let inv = sim.inverse();
    let scale = (1i64 << AB_BITS) as f64;
    let round_delta = (1i64 << AB_BITS) / TAB / 2;
    let adelta: Vec<i64> = (0..width as i64).map(|u| (inv[0][0] * u as f64 * scale).round() as i64).collect();
    let bdelta: Vec<i64> = (0..width as i64).map(|u| (inv[1][0] * u as f64 * scale).round() as i64).collect();
    let mut out = vec![0u8; (height * width * 3) as usize];
    for (v, row) in out.chunks_exact_mut(width as usize * 3).enumerate() {
        let x_row = ((inv[0][1] * v as f64 + inv[0][2]) * scale).round() as i64 + round_delta;
        let y_row = ((inv[1][1] * v as f64 + inv[1][2]) * scale).round() as i64 + round_delta;
        for (u, px) in row.chunks_exact_mut(3).enumerate() {
            let xq = (x_row + adelta[u]) >> (AB_BITS - TAB_BITS); // in 1/32 pixels
            let yq = (y_row + bdelta[u]) >> (AB_BITS - TAB_BITS);
            let (x0, y0) = (xq >> TAB_BITS, yq >> TAB_BITS);
            let (fx, fy) = ((xq & (TAB - 1)) as u32, (yq & (TAB - 1)) as u32);
            let weights = [(32 - fx) * (32 - fy), fx * (32 - fy), (32 - fx) * fy, fx * fy];
            if x0 >= 0 && y0 >= 0 && x0 + 1 < w && y0 + 1 < h {
                let i = (y0 * w + x0) as usize * 3;
                let (a, b) = (&src[i..i + 6], &src[i + stride..i + stride + 6]);
                for c in 0..3 {
                    let s = u32::from(a[c]) * weights[0]
                        + u32::from(a[c + 3]) * weights[1]
                        + u32::from(b[c]) * weights[2]
                        + u32::from(b[c + 3]) * weights[3];
                    px[c] = ((s + 512) >> 10) as u8;
                }
            } else if x0 >= -1 && y0 >= -1 && x0 < w && y0 < h {
                // On the border: neighbours outside the image are black.
                let at = |x: i64, y: i64, c: usize| -> u32 {
                    if x < 0 || y < 0 || x >= w || y >= h {
                        0
                    } else {
                        u32::from(src[(y * w + x) as usize * 3 + c])
                    }
                };
                for (c, out) in px.iter_mut().enumerate() {
                    let s = at(x0, y0, c) * weights[0]
                        + at(x0 + 1, y0, c) * weights[1]
                        + at(x0, y0 + 1, c) * weights[2]
                        + at(x0 + 1, y0 + 1, c) * weights[3];
                    *out = ((s + 512) >> 10) as u8;
                }
            }
        }
    }
    out
}

/// Aligns one face: similarity from `landmarks` to `template`, then the warp. `HWC` bytes.
pub fn align(img: &RgbImage, landmarks: &Landmarks, template: Template) -> Result<Vec<u8>> {
    let sim = Similarity::to_template(landmarks, template)?;
    let (h, w) = template.size();
    Ok(warp(img, &sim, h, w))
}

/// An aligned crop (`img`, made with one of the templates) as the input of a backbone that
/// takes `height` x `width` images: the crop itself when the sizes match, else the crop of the
/// other template cut from it. The 112x112 insightface template is caffe-face's 112x96 one shifted
/// right by 8 pixels, so columns 8..104 of an insightface crop are the caffe-face crop; the other
/// way round needs pixels the crop does not hold (`None`), as does any other size.
pub fn fit_aligned(img: &RgbImage, height: u32, width: u32) -> Option<Vec<u8>> {
    if (img.height(), img.width()) == (height, width) {
        return Some(img.as_raw().clone());
    }
    let from = Template::of_size(img.height(), img.width())?;
    let to = Template::of_size(height, width)?;
    // How far right `from` puts the face compared with `to`: the target's first column.
    let left = from.x_offset().checked_sub(to.x_offset())? as usize;
    let (w, want) = (img.width() as usize, width as usize);
    if height != img.height() || left + want > w {
        return None;
    }
    let rows = img.as_raw().chunks_exact(3 * w);
    Some(rows.flat_map(|row| &row[3 * left..3 * (left + want)]).copied().collect())
}

/// `HWC` RGB bytes to planar `CHW`.
pub fn hwc_to_chw(hwc: &[u8], height: usize, width: usize) -> Vec<u8> {
    let plane = height * width;
    let mut chw = vec![0u8; hwc.len()];
    for (i, px) in hwc.chunks_exact(3).enumerate() {
        chw[i] = px[0];
        chw[plane + i] = px[1];
        chw[2 * plane + i] = px[2];
    }
    chw
}

/// Mirrors an `HWC` RGB crop left to right.
pub fn flip_hwc(hwc: &[u8], width: usize) -> Vec<u8> {
    let mut out = vec![0u8; hwc.len()];
    for (drow, srow) in out.chunks_exact_mut(width * 3).zip(hwc.chunks_exact(width * 3)) {
        for (d, s) in drow.chunks_exact_mut(3).zip(srow.chunks_exact(3).rev()) {
            d.copy_from_slice(s);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recovers_a_known_similarity() {
        // dst = 2 * R(30 deg) * src + (5, -3)
        let (s, c) = (30f64.to_radians().sin(), 30f64.to_radians().cos());
        let src = [[1.0, 2.0], [4.0, 1.0], [3.0, 5.0], [0.0, 0.0], [7.0, 3.0]];
        let dst: Vec<[f64; 2]> =
            src.iter().map(|[x, y]| [2.0 * (c * x - s * y) + 5.0, 2.0 * (s * x + c * y) - 3.0]).collect();
        let sim = Similarity::estimate(&src, &dst).unwrap();
        let expect = [[2.0 * c, -2.0 * s, 5.0], [2.0 * s, 2.0 * c, -3.0]];
        for (row, want) in sim.m.iter().zip(&expect) {
            for (v, w) in row.iter().zip(want) {
                assert!((v - w).abs() < 1e-9, "{:?}", sim.m);
            }
        }
        // inverse composes to identity
        let inv = sim.inverse();
        let [x, y] = dst[2];
        let bx = inv[0][0] * x + inv[0][1] * y + inv[0][2];
        let by = inv[1][0] * x + inv[1][1] * y + inv[1][2];
        assert!((bx - 3.0).abs() < 1e-9 && (by - 5.0).abs() < 1e-9);
    }

    #[test]
    fn template_points_map_to_themselves_and_degenerate_sets_fail() {
        let t = Template::CaffeFace.points();
        let lm = Landmarks(t.map(|[x, y]| [x as f32, y as f32]));
        let sim = Similarity::to_template(&lm, Template::CaffeFace).unwrap();
        assert!((sim.m[0][0] - 1.0).abs() < 1e-5 && sim.m[1][0].abs() < 1e-5);
        let same = Landmarks([[10.0, 10.0]; 5]);
        assert!(Similarity::to_template(&same, Template::CaffeFace).unwrap_err().to_string().contains("coincide"));
        let nan = Landmarks([[f32::NAN, 1.0], [2.0, 3.0], [4.0, 5.0], [6.0, 7.0], [8.0, 9.0]]);
        assert!(Similarity::to_template(&nan, Template::CaffeFace).is_err());
        // Collinear: five points on y = 2x + 1, exactly and within 0.1 px of it (the spread
        // across the line is then about 0.001 of the spread along it).
        let line = Landmarks([[10.0, 21.0], [20.0, 41.0], [30.0, 61.0], [40.0, 81.0], [50.0, 101.0]]);
        let err = Similarity::to_template(&line, Template::CaffeFace).unwrap_err().to_string();
        assert!(err.contains("degenerate") && err.contains("one line"), "{err}");
        let nearly = Landmarks([[10.0, 21.1], [20.0, 40.9], [30.0, 61.0], [40.0, 81.1], [50.0, 100.9]]);
        assert!(Similarity::to_template(&nearly, Template::CaffeFace).unwrap_err().to_string().contains("one line"));
        // A face turned 90 degrees and shrunk is no less a face.
        let turned = Landmarks(t.map(|[x, y]| [(200.0 - y / 3.0) as f32, (x / 3.0) as f32]));
        assert!(Similarity::to_template(&turned, Template::CaffeFace).is_ok());
        // Two points always lie on a line: the ratio is not asked of them.
        assert!(Similarity::estimate(&[[0.0, 0.0], [1.0, 1.0]], &[[0.0, 0.0], [2.0, 2.0]]).is_ok());
        assert_eq!(Template::Insightface.points()[0][0], CAFFE_FACE_112X96[0][0] + 8.0);
    }

    #[test]
    fn identity_warp_copies_and_half_pixel_shift_averages() {
        let img = RgbImage::from_fn(4, 3, |x, y| image::Rgb([(10 * x + y) as u8, 0, 255]));
        let id = Similarity { m: [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]] };
        assert_eq!(warp(&img, &id, 3, 4), img.as_raw().clone());
        // Shift by half a pixel to the left: crop(u) = (src(u + .5)); interior values average.
        let shift = Similarity { m: [[1.0, 0.0, -0.5], [0.0, 1.0, 0.0]] };
        let out = warp(&img, &shift, 3, 4);
        // pixel (u=0, v=1): average of src (0,1)=1 and (1,1)=11 -> 6
        assert_eq!(out[4 * 3], 6);
        // right edge: (3.5, 1) blends src(3,1)=31 with the black border -> 15.5 -> 16
        assert_eq!(out[(4 + 3) * 3], 16);
    }

    #[test]
    fn flip_and_chw() {
        let hwc = [1, 2, 3, 4, 5, 6]; // one row, two pixels
        assert_eq!(flip_hwc(&hwc, 2), vec![4, 5, 6, 1, 2, 3]);
        assert_eq!(hwc_to_chw(&hwc, 1, 2), vec![1, 4, 2, 5, 3, 6]);
    }

    #[test]
    fn an_insightface_crop_holds_the_caffe_face_crop_at_columns_8_to_104() {
        // A smooth image (so that a 1/32-pixel rounding of the warp's coordinates moves a value by
        // at most one level) and a tilted face in it.
        let img = RgbImage::from_fn(250, 250, |x, y| image::Rgb([x as u8, y as u8, ((x + y) / 2) as u8]));
        let face = Landmarks([[100.3, 110.2], [148.9, 104.7], [126.1, 135.5], [106.0, 160.4], [146.2, 156.9]]);
        let caffe = align(&img, &face, Template::CaffeFace).unwrap();
        let insight = align(&img, &face, Template::Insightface).unwrap();
        let wide = RgbImage::from_raw(112, 112, insight).unwrap();
        let cut = fit_aligned(&wide, 112, 96).unwrap();
        assert_eq!(cut.len(), caffe.len());
        // The two warps see the same source points up to rounding of the shifted coordinates.
        let off = cut.iter().zip(&caffe).filter(|(a, b)| a != b).count();
        let worst = cut.iter().zip(&caffe).map(|(a, b)| a.abs_diff(*b)).max().unwrap();
        assert!(worst <= 1 && off * 1000 <= cut.len(), "{off} of {} values differ, by up to {worst}", cut.len());
        // Same size: the crop itself; caffe-face to insightface or other sizes: no.
        let narrow = RgbImage::from_raw(96, 112, caffe.clone()).unwrap();
        assert_eq!(fit_aligned(&narrow, 112, 96), Some(caffe));
        assert_eq!(fit_aligned(&narrow, 112, 112), None);
        assert_eq!(fit_aligned(&wide, 100, 96), None);
        assert_eq!(Template::of_size(112, 96), Some(Template::CaffeFace));
    }
}
