//! MTCNN face detection with five landmarks: Zhang, Zhang, Li and Qiao, *Joint Face Detection and
//! Alignment Using Multitask Cascaded Convolutional Networks*, IEEE Signal Processing Letters
//! 23(10), 2016 (arXiv:1604.02878).
//!
//! The three networks and the pipeline follow facenet-pytorch 2.6.0 (Tim Esler,
//! `facenet_pytorch/models/mtcnn.py` and `models/utils/detect_face.py`, itself a port of David
//! Sandberg's `facenet/src/align/detect_face.py`), whose weights `scripts/setup.sh` converts to
//! `data/mtcnn/{pnet,rnet,onet}.safetensors` with unchanged parameter names:
//!
//! 1. an image pyramid from `12 / min_face` down by `factor` while the short side is at least 12
//!    pixels, each level resampled with `interpolate(mode="area")` (here its exact equivalent,
//!    adaptive average pooling) and normalised as `(p - 127.5) * 0.0078125`;
//! 2. P-Net on each level; cells with face probability `>= thresholds[0]` become 12x12 windows
//!    mapped back to the image, NMS (IoU 0.5) per level and (IoU 0.7) across levels, box
//!    regression, boxes made square;
//! 3. R-Net on 24x24 crops: probability `> thresholds[1]`, NMS (IoU 0.7), regression, square;
//! 4. O-Net on 48x48 crops: probability `> thresholds[2]`, landmarks (the first five outputs are
//!    x, the next five y, as fractions of the box), regression, NMS over the smaller area (0.7).
//!
//! Crops are cut from the image clipped to its borders and resampled to the network's size, as
//! facenet-pytorch 2.6.0 does (the original MTCNN zero-pads boxes that cross the border instead).
//! One deliberate difference: a box that lies entirely outside the image is dropped before a
//! crop is taken; facenet-pytorch skips its crop but keeps the box, which shifts every later
//! box against the network outputs. NMS runs in plain Rust with the same overlap formulas as
//! the reference (torchvision's `nms` for stages 1-2, the `+1` pixel-inclusive "Min" overlap
//! for stage 3). Box arithmetic is in `f32`, as in the reference's float32 tensors.

use std::path::Path;

use facerec_data::landmarks::Landmarks;
use facerec_model::layers::{max_pool2, Conv2d, Linear, PRelu};
use facerec_model::weights;
use facerec_model::{ModelError, Result};
use image::RgbImage;
use tch::{nn, Device, Kind, Tensor};

/// Crops per forward pass of R-Net and O-Net (facenet-pytorch's `fixed_batch_process`).
const BATCH: usize = 512;

/// P-Net: a fully convolutional proposal network; each output cell sees a 12x12 window, with
/// stride 2.
#[derive(Debug)]
pub struct PNet {
    conv1: Conv2d,
    prelu1: PRelu,
    conv2: Conv2d,
    prelu2: PRelu,
    conv3: Conv2d,
    prelu3: PRelu,
    conv4_1: Conv2d,
    conv4_2: Conv2d,
}

impl PNet {
    pub fn new(p: &nn::Path) -> Self {
        PNet {
            conv1: Conv2d::new(p / "conv1", 3, 10, 3, 1, 0, true),
            prelu1: PRelu::new(p / "prelu1", 10),
            conv2: Conv2d::new(p / "conv2", 10, 16, 3, 1, 0, true),
            prelu2: PRelu::new(p / "prelu2", 16),
            conv3: Conv2d::new(p / "conv3", 16, 32, 3, 1, 0, true),
            prelu3: PRelu::new(p / "prelu3", 32),
            conv4_1: Conv2d::new(p / "conv4_1", 32, 2, 1, 1, 0, true),
            conv4_2: Conv2d::new(p / "conv4_2", 32, 4, 1, 1, 0, true),
        }
    }

    /// `[n, 3, h, w]` normalised images to (box regression `[n, 4, h', w']`, softmax
    /// probabilities `[n, 2, h', w']`, channel 1 = face), `h' = ceil((h - 2) / 2) - 4`.
    pub fn forward(&self, x: &Tensor) -> Result<(Tensor, Tensor)> {
        let x = self.prelu1.forward(&self.conv1.forward(x)?)?; // [n, 10, h-2, w-2]
        let x = max_pool2(&x)?; // [n, 10, ceil((h-2)/2), ...]
        let x = self.prelu2.forward(&self.conv2.forward(&x)?)?; // [n, 16, .-2, .-2]
        let x = self.prelu3.forward(&self.conv3.forward(&x)?)?; // [n, 32, .-2, .-2]
        let prob = self.conv4_1.forward(&x)?.f_softmax(1, Kind::Float)?; // [n, 2, h', w']
        let reg = self.conv4_2.forward(&x)?; // [n, 4, h', w']
        Ok((reg, prob))
    }
}

/// R-Net: refines 24x24 candidates.
#[derive(Debug)]
pub struct RNet {
    conv1: Conv2d,
    prelu1: PRelu,
    conv2: Conv2d,
    prelu2: PRelu,
    conv3: Conv2d,
    prelu3: PRelu,
    dense4: Linear,
    prelu4: PRelu,
    dense5_1: Linear,
    dense5_2: Linear,
}

impl RNet {
    pub fn new(p: &nn::Path) -> Self {
        RNet {
            conv1: Conv2d::new(p / "conv1", 3, 28, 3, 1, 0, true),
            prelu1: PRelu::new(p / "prelu1", 28),
            conv2: Conv2d::new(p / "conv2", 28, 48, 3, 1, 0, true),
            prelu2: PRelu::new(p / "prelu2", 48),
            conv3: Conv2d::new(p / "conv3", 48, 64, 2, 1, 0, true),
            prelu3: PRelu::new(p / "prelu3", 64),
            dense4: Linear::new(p / "dense4", 576, 128, true),
            prelu4: PRelu::new(p / "prelu4", 128),
            dense5_1: Linear::new(p / "dense5_1", 128, 2, true),
            dense5_2: Linear::new(p / "dense5_2", 128, 4, true),
        }
    }

    /// `[n, 3, 24, 24]` normalised crops to (box regression `[n, 4]`, probabilities `[n, 2]`).
    pub fn forward(&self, x: &Tensor) -> Result<(Tensor, Tensor)> {
        let x = self.prelu1.forward(&self.conv1.forward(x)?)?; // [n, 28, 22, 22]
        let x = max_pool3(&x)?; // [n, 28, 11, 11]
        let x = self.prelu2.forward(&self.conv2.forward(&x)?)?; // [n, 48, 9, 9]
        let x = max_pool3(&x)?; // [n, 48, 4, 4]
        let x = self.prelu3.forward(&self.conv3.forward(&x)?)?; // [n, 64, 3, 3]
        // The weights were converted from caffe's column-major blobs: flatten in (w, h, c)
        // order, as facenet-pytorch 2.6.0 does (`permute(0, 3, 2, 1)`).
        let x = x.f_permute([0, 3, 2, 1])?.f_contiguous()?.f_flatten(1, -1)?; // [n, 576]
        let x = self.prelu4.forward(&self.dense4.forward(&x)?)?; // [n, 128]
        let prob = self.dense5_1.forward(&x)?.f_softmax(1, Kind::Float)?; // [n, 2]
        let reg = self.dense5_2.forward(&x)?; // [n, 4]
        Ok((reg, prob))
    }
}

/// O-Net: the final 48x48 stage, with five landmarks.
#[derive(Debug)]
pub struct ONet {
    conv1: Conv2d,
    prelu1: PRelu,
    conv2: Conv2d,
    prelu2: PRelu,
    conv3: Conv2d,
    prelu3: PRelu,
    conv4: Conv2d,
    prelu4: PRelu,
    dense5: Linear,
    prelu5: PRelu,
    dense6_1: Linear,
    dense6_2: Linear,
    dense6_3: Linear,
}

impl ONet {
    pub fn new(p: &nn::Path) -> Self {
        ONet {
            conv1: Conv2d::new(p / "conv1", 3, 32, 3, 1, 0, true),
            prelu1: PRelu::new(p / "prelu1", 32),
            conv2: Conv2d::new(p / "conv2", 32, 64, 3, 1, 0, true),
            prelu2: PRelu::new(p / "prelu2", 64),
            conv3: Conv2d::new(p / "conv3", 64, 64, 3, 1, 0, true),
            prelu3: PRelu::new(p / "prelu3", 64),
            conv4: Conv2d::new(p / "conv4", 64, 128, 2, 1, 0, true),
            prelu4: PRelu::new(p / "prelu4", 128),
            dense5: Linear::new(p / "dense5", 1152, 256, true),
            prelu5: PRelu::new(p / "prelu5", 256),
            dense6_1: Linear::new(p / "dense6_1", 256, 2, true),
            dense6_2: Linear::new(p / "dense6_2", 256, 4, true),
            dense6_3: Linear::new(p / "dense6_3", 256, 10, true),
        }
    }

    /// `[n, 3, 48, 48]` normalised crops to (box regression `[n, 4]`, landmarks `[n, 10]`
    /// (x1..x5, y1..y5 as fractions of the box), probabilities `[n, 2]`).
    pub fn forward(&self, x: &Tensor) -> Result<(Tensor, Tensor, Tensor)> {
        let x = self.prelu1.forward(&self.conv1.forward(x)?)?; // [n, 32, 46, 46]
        let x = max_pool3(&x)?; // [n, 32, 23, 23]
        let x = self.prelu2.forward(&self.conv2.forward(&x)?)?; // [n, 64, 21, 21]
        let x = max_pool3(&x)?; // [n, 64, 10, 10]
        let x = self.prelu3.forward(&self.conv3.forward(&x)?)?; // [n, 64, 8, 8]
        let x = max_pool2(&x)?; // [n, 64, 4, 4]
        let x = self.prelu4.forward(&self.conv4.forward(&x)?)?; // [n, 128, 3, 3]
        let x = x.f_permute([0, 3, 2, 1])?.f_contiguous()?.f_flatten(1, -1)?; // [n, 1152], (w, h, c)
        let x = self.prelu5.forward(&self.dense5.forward(&x)?)?; // [n, 256]
        let prob = self.dense6_1.forward(&x)?.f_softmax(1, Kind::Float)?; // [n, 2]
        let reg = self.dense6_2.forward(&x)?; // [n, 4]
        let landmarks = self.dense6_3.forward(&x)?; // [n, 10]
        Ok((reg, landmarks, prob))
    }
}

/// 3x3 max pooling with stride 2, rounding up (`nn.MaxPool2d(3, 2, ceil_mode=True)`).
fn max_pool3(x: &Tensor) -> Result<Tensor> {
    Ok(x.f_max_pool2d([3, 3], [2, 2], [0, 0], [1, 1], true)?)
}

/// Detection settings; the defaults are facenet-pytorch's (and the paper's code's).
#[derive(Debug, Clone, PartialEq)]
pub struct MtcnnConfig {
    /// Smallest face side searched for, in pixels (20).
    pub min_face: f64,
    /// Scale step of the image pyramid (0.709, about 1/sqrt(2)).
    pub factor: f64,
    /// Face-probability thresholds of P-, R- and O-Net (0.6, 0.7, 0.7).
    pub thresholds: [f32; 3],
}

impl Default for MtcnnConfig {
    fn default() -> Self {
        MtcnnConfig { min_face: 20.0, factor: 0.709, thresholds: [0.6, 0.7, 0.7] }
    }
}

impl MtcnnConfig {
    fn validate(&self) -> Result<()> {
        if !(self.min_face.is_finite() && self.min_face > 0.0) {
            return Err(ModelError::Config(format!("mtcnn min_face must be positive, got {}", self.min_face)));
        }
        if !(self.factor > 0.0 && self.factor < 1.0) {
            return Err(ModelError::Config(format!("mtcnn factor must be in (0, 1), got {}", self.factor)));
        }
        if let Some(t) = self.thresholds.iter().find(|t| !(0.0..=1.0).contains(*t)) {
            return Err(ModelError::Config(format!("mtcnn thresholds must be in [0, 1], got {t}")));
        }
        Ok(())
    }
}

/// One detected face.
#[derive(Debug, Clone, PartialEq)]
pub struct Face {
    /// `[x1, y1, x2, y2]` in pixels.
    pub bbox: [f32; 4],
    /// O-Net's face probability.
    pub score: f32,
    /// Left eye, right eye, nose, left and right mouth corner, in pixels.
    pub landmarks: Landmarks,
}

impl Face {
    /// The centre of the box.
    pub fn centre(&self) -> [f32; 2] {
        [(self.bbox[0] + self.bbox[2]) / 2.0, (self.bbox[1] + self.bbox[3]) / 2.0]
    }
}

/// The face whose box centre is nearest the centre of a `width` x `height` image (the first,
/// i.e. the most probable, among equals); `None` when there is none.
pub fn nearest_to_centre(faces: &[Face], width: u32, height: u32) -> Option<&Face> {
    let (cx, cy) = (width as f32 / 2.0, height as f32 / 2.0);
    let dist = |f: &Face| {
        let [x, y] = f.centre();
        (x - cx).powi(2) + (y - cy).powi(2)
    };
    faces.iter().reduce(|best, f| if dist(f) < dist(best) { f } else { best })
}

/// The three networks with their weights, on one device.
#[derive(Debug)]
pub struct Mtcnn {
    pnet: PNet,
    rnet: RNet,
    onet: ONet,
    device: Device,
    config: MtcnnConfig,
    // The variables the networks' tensors live in.
    _stores: [nn::VarStore; 3],
}

impl Mtcnn {
    /// Loads `dir/{pnet,rnet,onet}.safetensors` (names and shapes checked strictly) onto
    /// `device`, with the default settings.
    pub fn load(dir: &Path, device: Device) -> Result<Self> {
        Self::load_with(dir, device, MtcnnConfig::default())
    }

    /// [`Mtcnn::load`] with other settings.
    pub fn load_with(dir: &Path, device: Device, config: MtcnnConfig) -> Result<Self> {
        config.validate()?;
        let (pvs, pnet) = load_net(dir, "pnet", device, PNet::new)?;
        let (rvs, rnet) = load_net(dir, "rnet", device, RNet::new)?;
        let (ovs, onet) = load_net(dir, "onet", device, ONet::new)?;
        Ok(Mtcnn { pnet, rnet, onet, device, config, _stores: [pvs, rvs, ovs] })
    }

    pub fn device(&self) -> Device {
        self.device
    }

    pub fn config(&self) -> &MtcnnConfig {
        &self.config
    }

    /// Every face in `image`, most probable first. An image too small for the smallest face
    /// (`min_face` pixels) has none.
    pub fn detect(&self, image: &RgbImage) -> Result<Vec<Face>> {
        let _guard = tch::no_grad_guard();
        let (w, h) = (image.width() as i64, image.height() as i64);
        if w == 0 || h == 0 {
            return Ok(Vec::new());
        }
        let img = Tensor::f_from_data_size(image.as_raw(), &[h, w, 3], Kind::Uint8)?
            .f_to_device(self.device)?
            .f_permute([2, 0, 1])?
            .f_to_kind(Kind::Float)?
            .f_unsqueeze(0)?; // [1, 3, h, w]
        let cands = self.proposals(&img, w, h)?;
        let Some(cands) = self.refine(&img, &cands, w, h)? else {
            return Ok(Vec::new());
        };
        self.output(&img, &cands, w, h)
    }

    /// Stage 1: P-Net over the pyramid of `img` (`[1, 3, h, w]`): candidate boxes, squared.
    fn proposals(&self, img: &Tensor, w: i64, h: i64) -> Result<Vec<Cand>> {
        let mut cands: Vec<Cand> = Vec::new();
        for scale in pyramid(w, h, self.config.min_face, self.config.factor) {
            let (hs, ws) = ((h as f64 * scale + 1.0) as i64, (w as f64 * scale + 1.0) as i64);
            let x = normalise(&img.f_adaptive_avg_pool2d([hs, ws])?)?;
            let (reg, prob) = self.pnet.forward(&x)?;
            let size = prob.size(); // [1, 2, h', w']
            let (ph, pw) = (size[2] as usize, size[3] as usize);
            let prob = to_vec(&prob.f_select(1, 1)?)?; // [h' * w']
            let reg = to_vec(&reg)?; // [4 * h' * w']
            let level = generate_boxes(&prob, &reg, ph, pw, scale as f32, self.config.thresholds[0]);
            let keep = nms(&level, 0.5, Overlap::Iou);
            cands.extend(keep.into_iter().map(|i| level[i]));
        }
        let keep = nms(&cands, 0.7, Overlap::Iou);
        let cands: Vec<Cand> = keep
            .into_iter()
            .map(|i| {
                let c = cands[i];
                // P-Net's regression is relative to the width without the +1.
                let (bw, bh) = (c.bbox[2] - c.bbox[0], c.bbox[3] - c.bbox[1]);
                let bbox = [
                    c.bbox[0] + c.reg[0] * bw,
                    c.bbox[1] + c.reg[1] * bh,
                    c.bbox[2] + c.reg[2] * bw,
                    c.bbox[3] + c.reg[3] * bh,
                ];
                Cand { bbox: square(bbox), score: c.score, reg: [0.0; 4] }
            })
            .collect();
        tracing::trace!(candidates = cands.len(), "mtcnn stage 1");
        Ok(cands)
    }

    /// Stage 2: R-Net on 24x24 crops of the candidates: those it passes, regressed and
    /// squared; `None` when no candidate overlaps the image.
    fn refine(&self, img: &Tensor, cands: &[Cand], w: i64, h: i64) -> Result<Option<Vec<Cand>>> {
        let (kept, crops) = self.crops(img, cands, w, h, 24)?;
        if kept.is_empty() {
            return Ok(None);
        }
        let mut regs = Vec::new();
        let mut probs = Vec::new();
        for chunk in crops.f_split(BATCH as i64, 0)? {
            let (reg, prob) = self.rnet.forward(&chunk)?;
            regs.extend(to_vec(&reg)?);
            probs.extend(to_vec(&prob)?);
        }
        let passed: Vec<Cand> = kept
            .iter()
            .enumerate()
            .filter(|&(k, _)| probs[2 * k + 1] > self.config.thresholds[1])
            .map(|(k, &i)| Cand { bbox: cands[i].bbox, score: probs[2 * k + 1], reg: reg_of(&regs, k) })
            .collect();
        let cands: Vec<Cand> = nms(&passed, 0.7, Overlap::Iou)
            .into_iter()
            .map(|i| {
                let c = passed[i];
                Cand { bbox: square(regress(c.bbox, c.reg)), score: c.score, reg: [0.0; 4] }
            })
            .collect();
        tracing::trace!(candidates = cands.len(), "mtcnn stage 2");
        Ok(Some(cands))
    }

    /// Stage 3: O-Net on 48x48 crops of the candidates: the faces it passes, with their
    /// landmarks; none when no candidate overlaps the image.
    fn output(&self, img: &Tensor, cands: &[Cand], w: i64, h: i64) -> Result<Vec<Face>> {
        let (kept, crops) = self.crops(img, cands, w, h, 48)?;
        if kept.is_empty() {
            return Ok(Vec::new());
        }
        let (mut regs, mut marks, mut probs) = (Vec::new(), Vec::new(), Vec::new());
        for chunk in crops.f_split(BATCH as i64, 0)? {
            let (reg, lm, prob) = self.onet.forward(&chunk)?;
            regs.extend(to_vec(&reg)?);
            marks.extend(to_vec(&lm)?);
            probs.extend(to_vec(&prob)?);
        }
        let mut faces = Vec::new();
        let mut boxes = Vec::new();
        for (k, &i) in kept.iter().enumerate() {
            let score = probs[2 * k + 1];
            if score <= self.config.thresholds[2] {
                continue;
            }
            let b = cands[i].bbox;
            // Landmarks are fractions of the box before regression, with the +1 width.
            let (bw, bh) = (b[2] - b[0] + 1.0, b[3] - b[1] + 1.0);
            let mut pts = [[0f32; 2]; 5];
            for (j, p) in pts.iter_mut().enumerate() {
                *p = [bw * marks[10 * k + j] + b[0] - 1.0, bh * marks[10 * k + 5 + j] + b[1] - 1.0];
            }
            let bbox = regress(b, reg_of(&regs, k));
            boxes.push(Cand { bbox, score, reg: [0.0; 4] });
            faces.push(Face { bbox, score, landmarks: Landmarks(pts) });
        }
        let faces: Vec<Face> = nms(&boxes, 0.7, Overlap::MinInclusive).into_iter().map(|i| faces[i].clone()).collect();
        tracing::trace!(faces = faces.len(), "mtcnn stage 3");
        Ok(faces)
    }

    /// The crops of `cands` that overlap the image, resampled to `size` x `size` and normalised
    /// (`[n, 3, size, size]`), with the indices of the candidates they belong to.
    fn crops(&self, img: &Tensor, cands: &[Cand], w: i64, h: i64, size: i64) -> Result<(Vec<usize>, Tensor)> {
        let mut kept = Vec::new();
        let mut crops = Vec::new();
        for (i, c) in cands.iter().enumerate() {
            if let Some([x0, y0, x1, y1]) = crop_window(&c.bbox, w, h) {
                let crop = img.f_narrow(2, y0, y1 - y0)?.f_narrow(3, x0, x1 - x0)?;
                crops.push(crop.f_adaptive_avg_pool2d([size, size])?);
                kept.push(i);
            }
        }
        if crops.is_empty() {
            return Ok((kept, Tensor::f_zeros([0, 3, size, size], (Kind::Float, self.device))?));
        }
        Ok((kept, normalise(&Tensor::f_cat(&crops, 0)?)?))
    }
}

/// Builds one network under a fresh variable store and fills it from `dir/<name>.safetensors`.
fn load_net<N>(dir: &Path, name: &str, device: Device, build: impl FnOnce(&nn::Path) -> N) -> Result<(nn::VarStore, N)> {
    let path = dir.join(format!("{name}.safetensors"));
    if !path.is_file() {
        return Err(ModelError::MissingWeights { path, hint: WEIGHTS_HINT });
    }
    let vs = nn::VarStore::new(device);
    let net = build(&vs.root());
    let (src, _) = weights::load(&path)?;
    let mut dst: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    dst.sort_by(|a, b| a.0.cmp(&b.0));
    weights::copy_into(&dst, &src, &path)?;
    Ok((vs, net))
}

/// What to do when the weights are missing.
const WEIGHTS_HINT: &str = "run scripts/setup.sh, which fetches facenet-pytorch 2.6.0's MTCNN weights from PyPI, \
     converts them to safetensors and links them as data/mtcnn";

/// A candidate box: `[x1, y1, x2, y2]`, probability, and the regression still to apply.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Cand {
    bbox: [f32; 4],
    score: f32,
    reg: [f32; 4],
}

/// The pyramid's scales: from `12 / min_face` down by `factor` while the short side, scaled,
/// is at least 12 pixels (P-Net's window).
fn pyramid(w: i64, h: i64, min_face: f64, factor: f64) -> Vec<f64> {
    let m = 12.0 / min_face;
    let mut minl = w.min(h) as f64 * m;
    let mut scale = m;
    let mut scales = Vec::new();
    while minl >= 12.0 {
        scales.push(scale);
        scale *= factor;
        minl *= factor;
    }
    scales
}

/// `(p - 127.5) * 0.0078125`: pixels to about [-1, 1].
fn normalise(x: &Tensor) -> Result<Tensor> {
    Ok(x.f_sub_scalar(127.5)?.f_mul_scalar(0.0078125)?)
}

/// A tensor's values, flattened, as `f32` on the CPU.
fn to_vec(t: &Tensor) -> Result<Vec<f32>> {
    let flat = t.f_to_device(Device::Cpu)?.f_to_kind(Kind::Float)?.f_contiguous()?.f_view([-1])?;
    Ok(Vec::<f32>::try_from(&flat)?)
}

/// P-Net cells (`prob`: `[h, w]`, `reg`: `[4, h, w]`, row-major) with probability `>= thresh`
/// as 12x12 windows in image coordinates (stride 2, at `scale`), in row-major cell order.
fn generate_boxes(prob: &[f32], reg: &[f32], h: usize, w: usize, scale: f32, thresh: f32) -> Vec<Cand> {
    const STRIDE: f32 = 2.0;
    const CELL: f32 = 12.0;
    let n = h * w;
    let mut out = Vec::new();
    for y in 0..h {
        for x in 0..w {
            let k = y * w + x;
            let score = prob[k];
            if score < thresh {
                continue;
            }
            let (fx, fy) = (x as f32, y as f32);
            out.push(Cand {
                bbox: [
                    ((STRIDE * fx + 1.0) / scale).floor(),
                    ((STRIDE * fy + 1.0) / scale).floor(),
                    ((STRIDE * fx + CELL) / scale).floor(),
                    ((STRIDE * fy + CELL) / scale).floor(),
                ],
                score,
                reg: [reg[k], reg[n + k], reg[2 * n + k], reg[3 * n + k]],
            });
        }
    }
    out
}

/// The regression of the `k`-th box of R- or O-Net's output (`[n, 4]`, flattened).
fn reg_of(regs: &[f32], k: usize) -> [f32; 4] {
    [regs[4 * k], regs[4 * k + 1], regs[4 * k + 2], regs[4 * k + 3]]
}

/// R- and O-Net's box regression: offsets are fractions of the pixel-inclusive side (`+1`).
fn regress(b: [f32; 4], reg: [f32; 4]) -> [f32; 4] {
    let (w, h) = (b[2] - b[0] + 1.0, b[3] - b[1] + 1.0);
    [b[0] + reg[0] * w, b[1] + reg[1] * h, b[2] + reg[2] * w, b[3] + reg[3] * h]
}

/// The square with the box's centre and its longer side (`rerec`).
fn square(b: [f32; 4]) -> [f32; 4] {
    let (w, h) = (b[2] - b[0], b[3] - b[1]);
    let l = w.max(h);
    let x1 = b[0] + w * 0.5 - l * 0.5;
    let y1 = b[1] + h * 0.5 - l * 0.5;
    [x1, y1, x1 + l, y1 + l]
}

/// The pixels `[x0, x1) x [y0, y1)` that a box covers inside a `w` x `h` image, as the
/// reference's `pad` computes them (coordinates truncated, the box taken as 1-based), or
/// `None` when it covers none.
fn crop_window(b: &[f32; 4], w: i64, h: i64) -> Option<[i64; 4]> {
    let x = (b[0].trunc() as i64).max(1);
    let y = (b[1].trunc() as i64).max(1);
    let ex = (b[2].trunc() as i64).min(w);
    let ey = (b[3].trunc() as i64).min(h);
    (ex > x - 1 && ey > y - 1).then_some([x - 1, y - 1, ex, ey])
}

/// How NMS measures the overlap of two boxes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Overlap {
    /// Intersection over union with continuous coordinates (torchvision's `nms`).
    Iou,
    /// Intersection over the smaller area, with pixel-inclusive sides (`+1`; the reference's
    /// `nms_numpy(..., 'Min')`).
    MinInclusive,
}

/// Greedy non-maximum suppression: the indices of the boxes kept, highest score first; a box
/// is suppressed when its overlap with a kept one exceeds `threshold`. Ties in score keep the
/// earlier box first.
fn nms(cands: &[Cand], threshold: f32, overlap: Overlap) -> Vec<usize> {
    let one = match overlap {
        Overlap::Iou => 0.0,
        Overlap::MinInclusive => 1.0,
    };
    let area = |b: &[f32; 4]| (b[2] - b[0] + one) * (b[3] - b[1] + one);
    let mut order: Vec<usize> = (0..cands.len()).collect();
    order.sort_by(|&a, &b| cands[b].score.total_cmp(&cands[a].score));
    let mut suppressed = vec![false; cands.len()];
    let mut keep = Vec::new();
    for (oi, &i) in order.iter().enumerate() {
        if suppressed[i] {
            continue;
        }
        keep.push(i);
        let bi = &cands[i].bbox;
        let ai = area(bi);
        for &j in &order[oi + 1..] {
            if suppressed[j] {
                continue;
            }
            let bj = &cands[j].bbox;
            let iw = (bi[2].min(bj[2]) - bi[0].max(bj[0]) + one).max(0.0);
            let ih = (bi[3].min(bj[3]) - bi[1].max(bj[1]) + one).max(0.0);
            let inter = iw * ih;
            let o = match overlap {
                Overlap::Iou => inter / (ai + area(bj) - inter),
                Overlap::MinInclusive => inter / ai.min(area(bj)),
            };
            if o > threshold {
                suppressed[j] = true;
            }
        }
    }
    keep
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cand(bbox: [f32; 4], score: f32) -> Cand {
        Cand { bbox, score, reg: [0.0; 4] }
    }

    #[test]
    fn pyramid_matches_facenet_pytorch_for_a_250px_image() {
        // detect_face with minsize 20, factor 0.709 on 250x250: m = 0.6, minl = 150, and levels
        // while 150 * 0.709^k >= 12, i.e. k = 0..=7 (150 * 0.709^7 = 13.5, ^8 = 9.6).
        let s = pyramid(250, 250, 20.0, 0.709);
        assert_eq!(s.len(), 8);
        assert!((s[0] - 0.6).abs() < 1e-12 && (s[7] - 0.6 * 0.709f64.powi(7)).abs() < 1e-12);
        // int(250 * 0.6 + 1) = 151 pixels at the first level.
        assert_eq!((250.0 * s[0] + 1.0) as i64, 151);
        assert!(pyramid(19, 400, 20.0, 0.709).is_empty());
    }

    #[test]
    fn generated_boxes_are_12px_cells_scaled_back() {
        // 2x3 map at scale 0.5: cell (x=2, y=1) has 0.9 -> q1 = floor((2*[2,1]+1)/0.5) = [10, 6],
        // q2 = floor((2*[2,1]+12)/0.5) = [32, 28]; cell (0, 0) at 0.6 is exactly the threshold.
        let prob = [0.6, 0.1, 0.2, 0.3, 0.4, 0.9];
        let reg: Vec<f32> = (0..24).map(|v| v as f32).collect();
        let b = generate_boxes(&prob, &reg, 2, 3, 0.5, 0.6);
        assert_eq!(b.len(), 2);
        assert_eq!(b[0].bbox, [2.0, 2.0, 24.0, 24.0]);
        assert_eq!(b[1].bbox, [10.0, 6.0, 32.0, 28.0]);
        assert_eq!(b[1].score, 0.9);
        assert_eq!(b[1].reg, [5.0, 11.0, 17.0, 23.0]);
    }

    #[test]
    fn nms_keeps_the_best_of_overlapping_boxes() {
        // IoU of [0,0,10,10] and [1,0,11,10]: 90 / 110 = 0.818 > 0.7; [20,20,30,30] is apart.
        let c = [cand([1.0, 0.0, 11.0, 10.0], 0.8), cand([0.0, 0.0, 10.0, 10.0], 0.9), cand([20.0, 20.0, 30.0, 30.0], 0.5)];
        assert_eq!(nms(&c, 0.7, Overlap::Iou), vec![1, 2]);
        // ... but 0.818 <= 0.85 keeps both.
        assert_eq!(nms(&c, 0.85, Overlap::Iou), vec![1, 0, 2]);
        // A small box inside a big one: IoU 16/100 is low, but over the smaller area
        // (pixel-inclusive: 5*5 / 5*5 = 1) it is suppressed.
        let c = [cand([0.0, 0.0, 9.0, 9.0], 0.9), cand([2.0, 2.0, 6.0, 6.0], 0.8)];
        assert_eq!(nms(&c, 0.7, Overlap::Iou), vec![0, 1]);
        assert_eq!(nms(&c, 0.7, Overlap::MinInclusive), vec![0]);
        assert!(nms(&[], 0.5, Overlap::Iou).is_empty());
    }

    #[test]
    fn square_regress_and_crop_window_follow_the_reference() {
        // rerec of a 10x20 box: side 20, centred on x = 5.
        assert_eq!(square([0.0, 0.0, 10.0, 20.0]), [-5.0, 0.0, 15.0, 20.0]);
        // bbreg: width 11 (pixel-inclusive), so +0.1 moves x1 by 1.1.
        let r = regress([0.0, 0.0, 10.0, 10.0], [0.1, 0.0, -0.1, 0.2]);
        assert!((r[0] - 1.1).abs() < 1e-6 && (r[2] - 8.9).abs() < 1e-6 && (r[3] - 12.2).abs() < 1e-6);
        // pad: truncation, 1-based clipping to a 100x50 image.
        assert_eq!(crop_window(&[-5.7, 3.9, 120.0, 40.2], 100, 50), Some([0, 2, 100, 40]));
        assert_eq!(crop_window(&[150.0, 10.0, 170.0, 30.0], 100, 50), None);
    }

    #[test]
    fn nearest_to_centre_prefers_the_central_face() {
        let face = |bbox: [f32; 4], score| Face { bbox, score, landmarks: Landmarks([[0.0; 2]; 5]) };
        let faces = [face([0.0, 0.0, 40.0, 40.0], 0.99), face([80.0, 80.0, 120.0, 120.0], 0.9)];
        assert_eq!(nearest_to_centre(&faces, 200, 200).map(|f| f.score), Some(0.9));
        assert!(nearest_to_centre(&[], 200, 200).is_none());
    }

    #[test]
    fn networks_have_facenet_pytorch_shapes() -> Result<()> {
        let vs = nn::VarStore::new(Device::Cpu);
        let (p, r, o) = (PNet::new(&(vs.root() / "p")), RNet::new(&(vs.root() / "r")), ONet::new(&(vs.root() / "o")));
        let (reg, prob) = p.forward(&Tensor::zeros([1, 3, 151, 151], (Kind::Float, Device::Cpu)))?;
        // 151 -> 149 -> pool 75 -> 73 -> 71.
        assert_eq!((reg.size(), prob.size()), (vec![1, 4, 71, 71], vec![1, 2, 71, 71]));
        let (reg, prob) = r.forward(&Tensor::zeros([2, 3, 24, 24], (Kind::Float, Device::Cpu)))?;
        assert_eq!((reg.size(), prob.size()), (vec![2, 4], vec![2, 2]));
        let (reg, lm, prob) = o.forward(&Tensor::zeros([2, 3, 48, 48], (Kind::Float, Device::Cpu)))?;
        assert_eq!((reg.size(), lm.size(), prob.size()), (vec![2, 4], vec![2, 10], vec![2, 2]));
        Ok(())
    }
}
