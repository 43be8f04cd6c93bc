//! Every built-in backbone exported to ONNX (`facerec_onnx::export_file`, what `facerec export
//! --onnx` calls), checked by the ONNX project's `onnx.checker` and run by onnxruntime (PyPI) on
//! real inputs at batch 1 and 32: aligned LFW crops for the face networks, MNIST digits for
//! LeNets++. The expected features are facerec's own `forward_t(images, false)` on the same
//! inputs, computed by libtorch from the unfolded weights; onnxruntime computes the exported
//! graph, batch norms folded, with its own kernels. The Python side is
//! `scripts/reference/check_onnx.py`; insightface's model-zoo check (`onnx_helper.py`) is run
//! from `../shared/reference`.
//!
//! The weights are random (seeded), batch-norm statistics included, so that folding them is
//! exercised (a fresh batch norm, mean 0 and variance 1, would fold to almost nothing), except
//! MobileFaceNet's, which are the published CASIA-WebFace checkpoint's.

use std::path::{Path, PathBuf};
use std::process::Command;

use facerec_data::align::{fit_aligned, Template};
use facerec_data::cache::aligned_crop;
use facerec_data::dataset::FaceDataset;
use facerec_data::landmarks::{LandmarkFile, OnBad};
use facerec_data::mnist::{Mnist, Split};
use facerec_data::normalize::crops_to_tensor;
use facerec_model::face_resnet::FaceResnetConfig;
use facerec_model::graph::{GraphBuilder, Value};
use facerec_model::import::import_backbone;
use facerec_model::iresnet::IresnetConfig;
use facerec_model::layers::{Conv2d, Linear};
use facerec_model::lenet_pp::LenetPpConfig;
use facerec_model::mbf::MbfConfig;
use facerec_model::mobilefacenet::MobileFaceNetConfig;
use facerec_model::saved::{load_backbone, save_backbone, LoadedBackbone};
use facerec_model::weights::strip_prefix;
use facerec_model::{Backbone, BackboneConfig, BackboneSpec, Plug};
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;
use tch::{nn, Device, Kind, Tensor};

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error>>;

/// The largest difference allowed between onnxruntime's features and facerec's: 1e-5, and for
/// features beyond +-1, 1e-5 of the largest one ([`allowed`]).
///
/// Float32 rounding is relative, and two float32 computations of a deep network differ by a few
/// parts in a million of its features whatever is exported. Measured on IResNet-50 (features up
/// to 3.96) and a narrow IResNet-200 (up to 4.20) from [`random_model`], 32 LFW crops:
/// onnxruntime running the graph *without* folding and without any graph optimisation (its own
/// BatchNormalization kernels) differs from facerec by 1.38e-5 and 2.34e-5; folded, 1.29e-5 and
/// 2.63e-5; and libtorch itself, running the folded graph against the unfolded `forward_t`,
/// 1.38e-5 and 2.36e-5. So an absolute 1e-5 is out of float32's reach for the deep IResNets at
/// the scale of trained features, with or without folding; 1e-5 of the scale is within it.
const TOLERANCE: f64 = 1e-5;

/// [`TOLERANCE`] for features whose largest absolute value is `scale`.
fn allowed(scale: f64) -> f64 {
    TOLERANCE * scale.max(1.0)
}

/// `n` aligned LFW crops (`HWC` RGB bytes) of `template`, spread over the dataset.
fn lfw_crops(template: Template, n: usize) -> Result<Vec<Vec<u8>>> {
    let lfw = facerec_data::paths::require("lfw")?;
    let lms = LandmarkFile::read(&lfw.join("landmarks_5pt.tsv"), OnBad::Fail)?;
    let ds = FaceDataset::from_folders(&lfw.join("images"))?;
    let step = ds.len() / n;
    Ok(ds.samples.iter().step_by(step).take(n).map(|s| aligned_crop(&ds, s, &lms, template)).collect::<std::result::Result<_, _>>()?)
}

/// 32 normalised crops of the backbone's input size, as `facerec embed` makes them.
fn lfw_inputs(config: &BackboneConfig) -> Result<Tensor> {
    let template = Template::for_input(config.input_shape())?;
    let (h, w) = template.size();
    Ok(crops_to_tensor(&lfw_crops(template, 32)?, h as usize, w as usize, config.pixel_norm())?)
}

/// The first 32 MNIST test digits, normalised as `config` wants.
fn mnist_inputs(config: &BackboneConfig) -> Result<Tensor> {
    let mut mnist = Mnist::load(&facerec_data::paths::require("mnist")?, Split::Test)?;
    mnist.truncate(32);
    Ok(mnist.to_tensors(config.pixel_norm())?.0)
}

/// A model file of `config` in `dir` with seeded random weights whose features have the scale
/// of a trained network's on `images`, so that a difference of 1e-5 means what it would for a
/// trained model:
///
/// - convolution and fully connected weights normal with He et al.'s (2015) variance for PReLU
///   networks, `2 / ((1 + 0.25^2) fan_in)`, which keeps activations at one scale from layer to
///   layer (facerec's caffe-xavier start shrinks them ~0.5x per PReLU layer: LeNets++'s 2-D
///   features came out below 0.05); biases uniform in +-0.1;
/// - batch norms with random scales (in [0.5, 1.5); a scale fixed at one, IResNet's `features`,
///   stays so) and shifts (+-0.2), and running statistics calibrated on `images` as training
///   leaves them: one forward pass in training mode (which normalises with the batch's own
///   statistics) moves each running mean and variance a tenth of the way to the batch's, from
///   which the batch's are recovered and stored. Without this, random statistics let IResNet's
///   residual sums grow by a factor per block (features of 1e13 at depth 200).
fn random_model(dir: &Path, config: &BackboneConfig, seed: i64, images: &Tensor) -> Result<PathBuf> {
    tch::manual_seed(seed);
    let vs = nn::VarStore::new(Device::Cpu);
    let backbone = config.build(&(vs.root() / "backbone"))?;
    // In name order: the same seed gives the same weights in every process.
    let vars: std::collections::BTreeMap<String, Tensor> = vs.variables().into_iter().collect();
    let uniform = |lo: f64, hi: f64, like: &Tensor| -> Result<Tensor> { Ok(like.f_rand_like()?.f_mul_scalar(hi - lo)?.f_add_scalar(lo)?) };
    let set = |t: &Tensor, value: Tensor| -> Result { Ok(t.shallow_clone().f_copy_(&value)?) };
    let bns: Vec<&str> = vars.keys().filter_map(|k| k.strip_suffix(".running_mean")).collect();
    let _guard = tch::no_grad_guard();
    for (name, t) in &vars {
        let is_bn = bns.iter().any(|bn| name.strip_prefix(bn).is_some_and(|rest| rest.starts_with('.')));
        if is_bn {
            continue;
        }
        if t.dim() >= 2 {
            let fan_in = t.size()[1..].iter().product::<i64>() as f64;
            set(t, t.f_randn_like()?.f_mul_scalar((2.0 / (1.0625 * fan_in)).sqrt())?)?;
        } else if name.ends_with(".bias") {
            set(t, uniform(-0.1, 0.1, t)?)?;
        }
    }
    for bn in &bns {
        let var = |suffix: &str| &vars[&format!("{bn}.{suffix}")];
        set(var("bias"), uniform(-0.2, 0.2, var("bias"))?)?;
        if var("weight").requires_grad() {
            set(var("weight"), uniform(0.5, 1.5, var("weight"))?)?;
        }
    }
    // Calibration: running <- 0.9 running + 0.1 batch, so batch = (after - 0.9 before) / 0.1.
    let before: Vec<(Tensor, Tensor)> = bns.iter().map(|bn| (vars[&format!("{bn}.running_mean")].copy(), vars[&format!("{bn}.running_var")].copy())).collect();
    if !bns.is_empty() {
        let _ = backbone.forward_t(images, true)?;
    }
    for (bn, (mean0, var0)) in bns.iter().zip(&before) {
        for (stat, old) in [("running_mean", mean0), ("running_var", var0)] {
            let t = &vars[&format!("{bn}.{stat}")];
            set(t, t.f_sub(&old.f_mul_scalar(0.9)?)?.f_div_scalar(0.1)?)?;
        }
    }
    let path = dir.join("model.safetensors");
    save_backbone(&path, config, &strip_prefix(&vs.variables(), "backbone"))?;
    Ok(path)
}

fn save_npy(path: &Path, t: &Tensor) -> Result {
    let array: ndarray::ArrayD<f32> = (&t.to_kind(Kind::Float).contiguous()).try_into()?;
    facerec_data::npy::write(path, &array)?;
    Ok(())
}

fn python(args: &[&str]) -> Result<Json> {
    let py = std::env::var("FACEREC_PYTHON").unwrap_or_else(|_| ".deps/venv/bin/python".into());
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/reference/check_onnx.py");
    let out = Command::new(&py).arg(script).args(args).output().map_err(|e| format!("{py}: {e}"))?;
    assert!(out.status.success(), "check_onnx.py {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    Ok(serde_json::from_slice(&out.stdout)?)
}

/// What one export gave.
struct Checked {
    exported: facerec_onnx::Exported,
    report: Json,
}

/// Exports `model`, runs facerec's `forward_t` and onnxruntime on `images` (batch 1 and the
/// whole batch), and checks what every export must be: valid for `onnx.checker`, opset >= 13,
/// no batch norm left, the batch dimension named, the input convention in the metadata, and
/// onnxruntime's features within [`allowed`] of facerec's.
fn export_and_run(model: &Path, images: &Tensor) -> Result<Checked> {
    let dir = model.parent().ok_or("model file without a folder")?;
    let loaded = load_backbone(model, Device::Cpu, None)?;
    let ours = tch::no_grad(|| loaded.backbone.forward_t(images, false))?;
    let onnx = dir.join("model.onnx");
    let exported = facerec_onnx::export_file(model, &onnx)?;
    let (xi, fi) = (dir.join("x.npy"), dir.join("f.npy"));
    save_npy(&xi, images)?;
    save_npy(&fi, &ours)?;
    let n = images.size()[0];
    let batches = format!("1,{n}");
    let r = python(&["run", "--model", onnx.to_str().ok_or("path")?, "--inputs", xi.to_str().ok_or("path")?, "--features", fi.to_str().ok_or("path")?, "--batches", &batches])?;
    let name = loaded.config.to_string();
    assert_eq!(r["checker"], "ok", "{name}: onnx.checker: {}", r["checker"]);
    assert!(r["opset"].as_i64() >= Some(13), "{name}: opset {}", r["opset"]);
    let ops: Vec<&str> = r["op_types"].as_array().ok_or("op_types")?.iter().filter_map(Json::as_str).collect();
    assert!(!ops.contains(&"BatchNormalization"), "{name}: batch norms left in the graph: {ops:?}");
    let [c, h, w] = loaded.config.input_shape();
    assert_eq!(r["input"]["dims"], serde_json::json!(["batch", c, h, w]), "{name}: input");
    assert_eq!(r["output"]["dims"], serde_json::json!(["batch", loaded.config.feature_dim()]), "{name}: output");
    let meta = &r["metadata"];
    assert_eq!(meta["input_layout"], "NCHW", "{name}: {meta}");
    // The backbone's own normalisation: caffe-face's 127.5 / 128, insightface's 127.5 / 127.5.
    let norm = loaded.config.pixel_norm();
    assert_eq!(meta["input_mean"], norm.mean.to_string(), "{name}: its PixelNorm");
    assert_eq!(meta["input_std"], norm.std.to_string(), "{name}: its PixelNorm");
    assert_eq!(meta["input_size"], format!("{h}x{w}"), "{name}");
    assert_eq!(meta["input_color"], if c == 3 { "RGB" } else { "gray" }, "{name}");
    assert_eq!(meta["feature_dim"], loaded.config.feature_dim().to_string());
    let rebuilt: BackboneConfig = serde_json::from_str(meta["facerec_backbone"].as_str().ok_or("facerec_backbone")?)?;
    assert_eq!(rebuilt, loaded.config, "the metadata's backbone config");
    for b in ["1".to_owned(), n.to_string()] {
        let run = &r["batches"][&b];
        let (diff, scale) = (run["max_abs_diff"].as_f64().ok_or("diff")?, run["max_abs"].as_f64().ok_or("max_abs")?);
        eprintln!("{name}, batch {b}: onnxruntime vs facerec max abs diff {diff:.2e} (features up to {scale:.2}); {} ONNX nodes, {:?}", r["nodes"], exported.folded);
        assert_eq!(run["shape"], serde_json::json!([b.parse::<i64>()?, loaded.config.feature_dim()]));
        assert!(scale > 0.1, "{name}: features this small would make the comparison meaningless");
        assert!(diff <= allowed(scale), "{name}, batch {b}: max abs diff {diff:e} > {:e}", allowed(scale));
    }
    Ok(Checked { exported, report: r })
}

#[test]
fn lenet_pp_on_mnist_digits() -> Result {
    let dir = tempfile::tempdir()?;
    let config = BackboneConfig::new(LenetPpConfig::default());
    let images = mnist_inputs(&config)?;
    let model = random_model(dir.path(), &config, 1, &images)?;
    let c = export_and_run(&model, &images)?;
    assert_eq!(c.report["metadata"]["crop_template"], "none");
    // 6 conv + 7 PReLU + 3 pool + flatten + fc.
    assert_eq!(c.report["nodes"], 18);
    assert_eq!((c.exported.folded.into_weights, c.exported.folded.to_affine), (0, 0));
    Ok(())
}

#[test]
fn face_resnet_small_on_lfw_crops() -> Result {
    let dir = tempfile::tempdir()?;
    // configs/lfw_faceresnet_small_center.toml's backbone.
    let config = BackboneConfig::new(FaceResnetConfig { widths: [8, 16, 32, 64, 128], blocks: [1, 1, 1, 1], feature_dim: 128, ..Default::default() });
    let images = lfw_inputs(&config)?;
    let model = random_model(dir.path(), &config, 2, &images)?;
    let c = export_and_run(&model, &images)?;
    assert_eq!(c.report["metadata"]["crop_template"], "caffe_face_112x96");
    assert_eq!(c.report["metadata"]["crop_in_112x112"], "8,0,104,112");
    Ok(())
}

#[test]
fn face_resnet_paper_size_on_lfw_crops() -> Result {
    let dir = tempfile::tempdir()?;
    let config = BackboneConfig::new(FaceResnetConfig::default());
    let images = lfw_inputs(&config)?;
    let model = random_model(dir.path(), &config, 3, &images)?;
    let c = export_and_run(&model, &images)?;
    // caffe-face's layout: 4 stage convolutions + 11 residual blocks of 2, 27 PReLUs, 4 pools,
    // 11 adds, flatten, fc5.
    assert_eq!(c.report["nodes"], 5 + 22 + 27 + 4 + 11 + 2);
    assert_eq!(c.exported.parameters, 27_536_800);
    Ok(())
}

/// The published CASIA-WebFace MobileFaceNet (the checkpoint `facerec import` reads): real
/// weights and batch-norm statistics, every batch norm after a convolution, so all folded.
#[test]
fn mobilefacenet_casia_weights_on_lfw_crops() -> Result {
    let dir = tempfile::tempdir()?;
    let config = BackboneConfig::new(MobileFaceNetConfig::default());
    let model = dir.path().join("model.safetensors");
    let ckpt = facerec_data::paths::require("pretrained")?.join("mobilefacenet_casia/mobilefacenet_casia_068.ckpt");
    import_backbone(&ckpt, &config, &model)?;
    let c = export_and_run(&model, &lfw_inputs(&config)?)?;
    // conv1, dw_conv1, 3 in each of 15 bottlenecks, conv2, linear7, linear1.
    assert_eq!((c.exported.folded.into_weights, c.exported.folded.to_affine), (50, 0));
    Ok(())
}

/// IResNet of `depth` with `base_width` (insightface's 64, or narrower to keep the deep ones
/// within a few seconds: every block, and so every fold, is there at any width): each
/// block's `bn1` reads the block's input, which the shortcut reads too, and precedes a padded
/// convolution, so it stays as Mul + Add; every other batch norm folds.
fn iresnet(depth: u32, base_width: i64) -> Result {
    let dir = tempfile::tempdir()?;
    let config = IresnetConfig { depth, base_width, ..Default::default() };
    let blocks: usize = config.layers()?.iter().sum();
    let config = BackboneConfig::new(config);
    let images = lfw_inputs(&config)?;
    let model = random_model(dir.path(), &config, i64::from(depth), &images)?;
    let c = export_and_run(&model, &images)?;
    assert_eq!(c.report["metadata"]["crop_template"], "insightface_112x112");
    // Stem bn1; per block bn2 and bn3; 4 downsample BNs; bn2 before fc; features after it.
    assert_eq!(c.exported.folded.into_weights, 1 + 2 * blocks + 4 + 2);
    assert_eq!(c.exported.folded.to_affine, blocks);
    Ok(())
}

#[test]
fn iresnet_18_on_lfw_crops() -> Result {
    iresnet(18, 64)
}

#[test]
fn iresnet_34_on_lfw_crops() -> Result {
    iresnet(34, 64)
}

#[test]
fn iresnet_50_on_lfw_crops() -> Result {
    iresnet(50, 64)
}

#[test]
fn iresnet_100_on_lfw_crops() -> Result {
    iresnet(100, 16)
}

#[test]
fn iresnet_200_on_lfw_crops() -> Result {
    iresnet(200, 16)
}

/// arcface_torch's MobileFaceNet (`mbf`): insightface's input convention in the metadata, and
/// every batch norm folded into the convolution or the linear layer before it.
#[test]
fn arcface_torch_mbf_on_lfw_crops() -> Result {
    let dir = tempfile::tempdir()?;
    let config = BackboneConfig::new(MbfConfig::default());
    let images = lfw_inputs(&config)?;
    let model = random_model(dir.path(), &config, 7, &images)?;
    let c = export_and_run(&model, &images)?;
    let meta = &c.report["metadata"];
    assert_eq!((meta["crop_template"].as_str(), meta["input_std"].as_str()), (Some("insightface_112x112"), Some("127.5")));
    // Stem, layers.1, 3 downsampling blocks of 3 convolutions, 4 + 6 + 2 residual blocks of 3,
    // conv_sep and the GDC: 49 convolutions, each with its batch norm; then the features' one.
    assert_eq!((c.exported.folded.into_weights, c.exported.folded.to_affine), (50, 0));
    Ok(())
}

/// The full-width IResNet-100 and -200 (65 M and 125 M parameters, 4.5 GB of activations at
/// batch 32): `cargo test --release -p facerec-onnx --test onnxruntime -- --ignored`.
#[test]
#[ignore = "a few minutes: the full-width deep IResNets"]
fn iresnet_100_and_200_full_width_on_lfw_crops() -> Result {
    iresnet(100, 64)?;
    iresnet(200, 64)
}

/// insightface's model-zoo check (`arcface_torch/onnx_helper.py`, run as it is) accepts the
/// exports with the two files it reads beside a model, written from the model's metadata as
/// docs/getting-started.md says: `pixel_norm.txt` (the model's: 127.5 and 128 for the
/// caffe-face lineage where the zoo assumes 127.5 and 127.5, IResNet's 127.5 and 127.5) and, for a 112x96 model, `crop.txt` (its columns 8..104 of the
/// zoo's 112x112 crops). Its own preprocessing (BGR images from cv2.imread, swapRB, mean,
/// scale) then gives facerec's features; without pixel_norm.txt it assumes 127.5 / 127.5
/// (the graph has no Sub and Mul at its front that would mean normalisation inside it).
#[test]
fn insightface_model_zoo_check_accepts_the_exports() -> Result {
    let dir = tempfile::tempdir()?;
    let crops = lfw_crops(Template::Insightface, 8)?;
    let mut pngs = Vec::new();
    for (i, crop) in crops.iter().enumerate() {
        let path = dir.path().join(format!("crop{i}.png"));
        image::RgbImage::from_raw(112, 112, crop.clone()).ok_or("crop size")?.save(&path)?;
        pngs.push(path.to_str().ok_or("path")?.to_owned());
    }
    let mobilefacenet = dir.path().join("mfn");
    std::fs::create_dir(&mobilefacenet)?;
    let mfn_model = mobilefacenet.join("model.safetensors");
    let ckpt = facerec_data::paths::require("pretrained")?.join("mobilefacenet_casia/mobilefacenet_casia_068.ckpt");
    import_backbone(&ckpt, &BackboneConfig::new(MobileFaceNetConfig::default()), &mfn_model)?;
    let r18 = dir.path().join("r18");
    std::fs::create_dir(&r18)?;
    let r18_config = BackboneConfig::new(IresnetConfig { depth: 18, ..Default::default() });
    let r18_model = random_model(&r18, &r18_config, 18, &lfw_inputs(&r18_config)?)?;
    for model in [mfn_model, r18_model] {
        let loaded = load_backbone(&model, Device::Cpu, None)?;
        let [_, h, w] = loaded.backbone.input_shape();
        // facerec's features of the same crops, as `facerec embed --aligned` computes them
        // (a 112x96 model takes columns 8..104 of a 112x112 crop).
        let fitted: Vec<Vec<u8>> = crops
            .iter()
            .map(|c| -> Result<Vec<u8>> {
                let img = image::RgbImage::from_raw(112, 112, c.clone()).ok_or("crop size")?;
                Ok(fit_aligned(&img, h as u32, w as u32).ok_or("no crop of the model's size")?)
            })
            .collect::<Result<_>>()?;
        let x = crops_to_tensor(&fitted, h as usize, w as usize, loaded.config.pixel_norm())?;
        let ours = tch::no_grad(|| loaded.backbone.forward_t(&x, false))?;
        let onnx = model.with_extension("onnx");
        facerec_onnx::export_file(&model, &onnx)?;
        let fi = model.with_file_name("f.npy");
        save_npy(&fi, &ours)?;
        let mut args = vec!["zoo", "--model", onnx.to_str().ok_or("path")?, "--features", fi.to_str().ok_or("path")?, "--crops"];
        args.extend(pngs.iter().map(String::as_str));
        let r = python(&args)?;
        let name = loaded.config.to_string();
        assert!(r["error"].is_null(), "{name}: the zoo's check says {}", r["error"]);
        let norm = loaded.config.pixel_norm();
        assert_eq!((r["input_mean"].as_f64(), r["input_std"].as_f64()), (Some(f64::from(norm.mean)), Some(f64::from(norm.std))), "{name}");
        assert_eq!(r["assumed_without_pixel_norm"], serde_json::json!([127.5, 127.5]), "{name}");
        assert_eq!(r["image_size"], serde_json::json!([w, h]), "{name}: the zoo's (width, height)");
        let (diff, scale) = (r["max_abs_diff"].as_f64().ok_or("diff")?, r["max_abs"].as_f64().ok_or("max_abs")?);
        eprintln!("{name} through onnx_helper.py: max abs diff {diff:.2e} (features up to {scale:.2}), {:.1} ms a face", r["ms_per_face"].as_f64().unwrap_or(f64::NAN));
        assert!(scale > 0.1 && diff <= allowed(scale), "{name}: max abs diff {diff:e} (features up to {scale})");
    }
    Ok(())
}

/// A backbone of a user's crate, for the two tests below: `conv` then `fc`, and a `describe`
/// that is missing or wrong.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct UserNetConfig {
    describe: String,
}

impl Plug for UserNetConfig {
    const NAME: &'static str = "user_net";
}

impl BackboneSpec for UserNetConfig {
    fn build(&self, p: &nn::Path) -> facerec_model::Result<Box<dyn Backbone>> {
        Ok(Box::new(UserNet { conv: Conv2d::new(p / "conv", 1, 4, 3, 1, 1, true), fc: Linear::new(p / "fc", 4 * 8 * 8, 3, true), describe: self.describe.clone() }))
    }
    fn input_shape(&self) -> [i64; 3] {
        [1, 8, 8]
    }
    fn feature_dim(&self) -> i64 {
        3
    }
}

#[derive(Debug)]
struct UserNet {
    conv: Conv2d,
    fc: Linear,
    describe: String,
}

impl Backbone for UserNet {
    fn forward_t(&self, images: &Tensor, _train: bool) -> facerec_model::Result<Tensor> {
        let x = self.conv.forward(images)?.f_relu()?;
        self.fc.forward(&x.f_flatten(1, -1)?)
    }
    fn feature_dim(&self) -> i64 {
        3
    }
    fn input_shape(&self) -> [i64; 3] {
        [1, 8, 8]
    }
    fn name(&self) -> &'static str {
        "user_net"
    }
    fn describe(&self, g: &mut GraphBuilder, input: Value) -> facerec_model::Result<Value> {
        match self.describe.as_str() {
            // forward_t's ReLU left out.
            "wrong" => {
                let x = g.conv(&self.conv, input)?;
                let x = g.flatten(x)?;
                g.linear(&self.fc, x)
            }
            _ => Err(facerec_model::ModelError::NotDescribed { backbone: self.name().into() }),
        }
    }
}

fn user_net(describe: &str) -> Result<LoadedBackbone> {
    let config = BackboneConfig::new(UserNetConfig { describe: describe.into() });
    let vs = nn::VarStore::new(Device::Cpu);
    let backbone = config.build(&vs.root())?;
    Ok(LoadedBackbone { vs, backbone, config })
}

#[test]
fn a_backbone_without_a_description_says_what_to_implement() -> Result {
    let dir = tempfile::tempdir()?;
    let out = dir.path().join("user.onnx");
    let err = facerec_onnx::export_backbone(&user_net("none")?, &out).err().ok_or("exported without a description")?.to_string();
    assert!(err.contains("backbone `user_net` does not describe its graph") && err.contains("implement `Backbone::describe`"), "{err}");
    assert!(!out.exists(), "nothing is written");
    Ok(())
}

#[test]
fn a_description_that_differs_from_forward_is_refused() -> Result {
    let dir = tempfile::tempdir()?;
    let out = dir.path().join("user.onnx");
    tch::manual_seed(5);
    let err = facerec_onnx::export_backbone(&user_net("wrong")?, &out).err().ok_or("exported a wrong description")?.to_string();
    assert!(err.contains("the graph it describes gives features") && err.contains("forward_t(images, false)"), "{err}");
    assert!(!out.exists(), "nothing is written");
    Ok(())
}
