//! A described backbone to an ONNX model: [`export_file`] (a model file or run directory in,
//! an `.onnx` file out), [`export_backbone`] (a loaded backbone), [`model_proto`] (a graph to
//! the message) and [`input_metadata`] (the input convention written into the model).

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use prost::Message;
use tch::{Device, Kind, Tensor};

use facerec_data::align::Template;
use facerec_model::graph::{Folded, Graph, Op, Value};
use facerec_model::saved::{load_backbone, LoadedBackbone};
use facerec_model::BackboneConfig;

use crate::error::{OnnxError, Result};
use crate::proto::attribute_proto::AttributeType;
use crate::proto::tensor_proto::DataType;
use crate::proto::tensor_shape_proto::{dimension, Dimension};
use crate::proto::type_proto;
use crate::proto::{
    AttributeProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, StringStringEntryProto, TensorProto, TensorShapeProto, TypeProto,
    ValueInfoProto,
};

/// The ONNX operator set of exported models: every operation they use (Conv, Gemm, PRelu, Relu,
/// MaxPool with `ceil_mode`, Add, Mul, Flatten) has this opset's meaning in every later one.
pub const OPSET: i64 = 13;
/// ONNX IR version 7 (ONNX 1.8), the first that carries opset 13: the widest range of runtimes.
pub const IR_VERSION: i64 = 7;
/// The input's name (insightface's `torch2onnx.py` calls it `data` too).
pub const INPUT: &str = "data";
/// The output's name.
pub const OUTPUT: &str = "features";
/// The name of the batch dimension of the input and output (dynamic).
const BATCH: &str = "batch";

/// What [`export_backbone`] wrote.
#[derive(Debug, Clone)]
pub struct Exported {
    pub path: PathBuf,
    /// The backbone and its settings, as `facerec` prints them.
    pub backbone: String,
    /// The input `[C, H, W]` (after the batch dimension).
    pub input_shape: [i64; 3],
    pub feature_dim: i64,
    /// ONNX nodes in the graph.
    pub nodes: usize,
    /// Floats in the initializers (after folding).
    pub parameters: i64,
    pub folded: Folded,
    /// Size of the file.
    pub bytes: usize,
    /// Largest difference between the exported graph's features and `forward_t`'s on the
    /// check input, computed by libtorch.
    pub max_abs_diff: f64,
    /// The model's `metadata_props`.
    pub metadata: Vec<(String, String)>,
}

/// Exports the backbone saved in `model` (a model file, or a run directory's
/// `model.safetensors`) to `out`.
pub fn export_file(model: &Path, out: &Path) -> Result<Exported> {
    let loaded = load_backbone(model, Device::Cpu, None)?;
    export_backbone(&loaded, out)
}

/// Describes `loaded`'s graph, folds its batch norms, checks it against `forward_t` on a test
/// input, and writes it to `out` (atomically) as an ONNX model.
pub fn export_backbone(loaded: &LoadedBackbone, out: &Path) -> Result<Exported> {
    let backbone = loaded.backbone.as_ref();
    let mut graph = Graph::of(backbone, Some(&loaded.vs))?;
    let folded = graph.fold_batch_norms()?;
    let max_abs_diff = check_against_forward(loaded, &graph)?;
    let metadata = input_metadata(&loaded.config);
    let model = model_proto(&graph, &metadata, &format!("facerec {}", loaded.config))?;
    let bytes = model.encode_to_vec();
    facerec_core::fsutil::atomic_write_bytes(out, &bytes).map_err(OnnxError::Write)?;
    let onnx = model.graph.as_ref().map_or(&[][..], |g| g.initializer.as_slice());
    Ok(Exported {
        path: out.to_path_buf(),
        backbone: loaded.config.to_string(),
        input_shape: loaded.config.input_shape(),
        feature_dim: loaded.config.feature_dim(),
        nodes: model.graph.as_ref().map_or(0, |g| g.node.len()),
        parameters: onnx.iter().map(|t| t.dims.iter().product::<i64>()).sum(),
        folded,
        bytes: bytes.len(),
        max_abs_diff,
        metadata,
    })
}

/// Runs the (folded) graph and the backbone's `forward_t` on the same two deterministic
/// images and returns the largest difference of their features, or an error when the graph
/// does not compute what `forward_t` does (a difference above 1e-4 of the features' scale:
/// float32 rounding of the folded weights stays orders of magnitude below it).
fn check_against_forward(loaded: &LoadedBackbone, graph: &Graph) -> Result<f64> {
    let [c, h, w] = loaded.backbone.input_shape();
    let n = 2 * c * h * w;
    // A pattern in [-1, 1] that differs between images, channels and pixels; no RNG involved.
    let images = Tensor::f_arange(n, (Kind::Float, Device::Cpu))?.f_mul_scalar(0.37)?.f_sin()?.f_view([2, c, h, w])?;
    let expected = tch::no_grad(|| loaded.backbone.forward_t(&images.f_to_device(loaded.vs.device())?, false))?.f_to_device(Device::Cpu)?;
    let got = graph.run(&images)?;
    let backbone = loaded.config.name().to_owned();
    if got.size() != expected.size() {
        return Err(OnnxError::Disagrees { backbone, diff: f64::INFINITY, scale: f64::NAN });
    }
    let diff = f64::try_from(got.f_sub(&expected)?.f_abs()?.f_max()?)?;
    let scale = f64::try_from(expected.f_abs()?.f_max()?)?;
    if diff.is_nan() || diff > 1e-4 * scale.max(1.0) {
        return Err(OnnxError::Disagrees { backbone, diff, scale });
    }
    Ok(diff)
}

/// How to make the input of the model of `config`, and what it gives, as `metadata_props`:
///
/// | key | value |
/// | --- | --- |
/// | `input_layout` | `NCHW` |
/// | `input_color` | `RGB` (channels in that order), `gray`, or `N channels` |
/// | `input_size` | `HxW`, rows by columns: `112x96`, `112x112` |
/// | `input_mean`, `input_std` | each 0..255 value becomes `(p - mean) / std`: the backbone's pixel normalisation, `127.5`, `128` (caffe-face's) or `127.5`, `127.5` (insightface's: IResNet, mbf) |
/// | `crop_template` | `caffe_face_112x96`, `insightface_112x112`, or `none` (not a face crop) |
/// | `crop_landmarks` | the template's five points `[[x, y], ...]` in the crop's pixels (eyes, nose, mouth corners) |
/// | `crop_in_112x112` | `x0,y0,x1,y1`: where the input lies in insightface's 112x112 crop (`8,0,104,112` for 112x96) |
/// | `feature_dim` | length of the output vector |
/// | `facerec_backbone` | the backbone's config (JSON), as in facerec's model files |
pub fn input_metadata(config: &BackboneConfig) -> Vec<(String, String)> {
    let [c, h, w] = config.input_shape();
    let color = match c {
        3 => "RGB".to_owned(),
        1 => "gray".to_owned(),
        c => format!("{c} channels"),
    };
    let mut meta = vec![
        ("input_layout", "NCHW".to_owned()),
        ("input_color", color),
        ("input_size", format!("{h}x{w}")),
        ("input_mean", config.pixel_norm().mean.to_string()),
        ("input_std", config.pixel_norm().std.to_string()),
    ];
    match Template::for_input(config.input_shape()) {
        Ok(template) => {
            let (th, tw) = template.size();
            let name = match template {
                Template::CaffeFace => "caffe_face",
                Template::Insightface => "insightface",
            };
            let x0 = (112 - tw) / 2;
            meta.push(("crop_template", format!("{name}_{th}x{tw}")));
            meta.push(("crop_landmarks", serde_json::to_string(&template.points()).unwrap_or_default()));
            meta.push(("crop_in_112x112", format!("{x0},0,{},{th}", x0 + tw)));
        }
        Err(_) => meta.push(("crop_template", "none".to_owned())),
    }
    meta.push(("feature_dim", config.feature_dim().to_string()));
    meta.push(("facerec_backbone", serde_json::to_string(config).unwrap_or_default()));
    meta.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
}

/// `graph` as an ONNX model: input [`INPUT`] `[batch, C, H, W]` float, output [`OUTPUT`]
/// `[batch, D]`, the batch dimension named (dynamic); nodes and initializers named after the
/// graph's nodes (`layer1.0.conv1`, `layer1.0.conv1.weight`); `metadata` as `metadata_props`.
pub fn model_proto(graph: &Graph, metadata: &[(String, String)], doc: &str) -> Result<ModelProto> {
    let mut w = Writer::new(graph);
    for node in &graph.nodes {
        w.node(graph, node)?;
    }
    let input_shape = graph.shape(graph.input).to_vec();
    let output_shape = graph.shape(graph.output).to_vec();
    Ok(ModelProto {
        ir_version: Some(IR_VERSION),
        opset_import: vec![OperatorSetIdProto { domain: Some(String::new()), version: Some(OPSET) }],
        producer_name: Some("facerec".into()),
        producer_version: Some(env!("CARGO_PKG_VERSION").into()),
        doc_string: Some(doc.to_owned()),
        graph: Some(GraphProto {
            name: Some("facerec".into()),
            node: w.nodes,
            initializer: w.initializers,
            input: vec![value_info(INPUT, &input_shape)],
            output: vec![value_info(OUTPUT, &output_shape)],
            ..Default::default()
        }),
        metadata_props: metadata.iter().map(|(k, v)| StringStringEntryProto { key: Some(k.clone()), value: Some(v.clone()) }).collect(),
        ..Default::default()
    })
}

/// A float tensor `[batch, shape...]` with the batch dimension named.
fn value_info(name: &str, shape: &[i64]) -> ValueInfoProto {
    let mut dim = vec![Dimension { value: Some(dimension::Value::DimParam(BATCH.into())), ..Default::default() }];
    dim.extend(shape.iter().map(|&d| Dimension { value: Some(dimension::Value::DimValue(d)), ..Default::default() }));
    ValueInfoProto {
        name: Some(name.into()),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor { elem_type: Some(DataType::Float as i32), shape: Some(TensorShapeProto { dim }) })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The nodes and initializers written so far, and the ONNX name of each graph value.
struct Writer {
    nodes: Vec<NodeProto>,
    initializers: Vec<TensorProto>,
    /// The name of each value that has one.
    names: Vec<Option<String>>,
    output: Value,
    taken: HashSet<String>,
}

impl Writer {
    fn new(graph: &Graph) -> Self {
        let values = graph.nodes.iter().map(|n| n.output.index() + 1).chain([graph.input.index() + 1]).max().unwrap_or(1);
        let mut names = vec![None; values];
        names[graph.input.index()] = Some(INPUT.to_owned());
        let taken = HashSet::from([INPUT.to_owned(), OUTPUT.to_owned()]);
        Writer { nodes: Vec::new(), initializers: Vec::new(), names, output: graph.output, taken }
    }

    /// `base`, or `base_<n>` with the first free `n`.
    fn unique(&mut self, base: &str) -> String {
        let name = if self.taken.contains(base) { (1..).map(|n| format!("{base}_{n}")).find(|n| !self.taken.contains(n)).unwrap_or_default() } else { base.to_owned() };
        self.taken.insert(name.clone());
        name
    }

    /// An initializer named `<node>.<role>` holding `t` as `dims`.
    fn initializer(&mut self, node: &str, role: &str, t: &Tensor, dims: &[i64]) -> Result<String> {
        let name = self.unique(&format!("{node}.{role}"));
        let values = Vec::<f32>::try_from(t.f_to_kind(Kind::Float)?.f_contiguous()?.f_view([-1])?)?;
        self.initializers.push(TensorProto {
            name: Some(name.clone()),
            dims: dims.to_vec(),
            data_type: Some(DataType::Float as i32),
            raw_data: Some(values.iter().flat_map(|v| v.to_le_bytes()).collect()),
            ..Default::default()
        });
        Ok(name)
    }

    fn push(&mut self, name: &str, op_type: &str, inputs: Vec<String>, output: &str, attribute: Vec<AttributeProto>) {
        self.nodes.push(NodeProto {
            name: Some(name.to_owned()),
            op_type: Some(op_type.to_owned()),
            input: inputs,
            output: vec![output.to_owned()],
            attribute,
            ..Default::default()
        });
    }

    /// Writes `node` as one ONNX node (two for an affine: `Mul`, `Add`).
    fn node(&mut self, graph: &Graph, node: &facerec_model::graph::Node) -> Result<()> {
        let inputs: Vec<String> = node.inputs.iter().map(|v| self.names[v.index()].clone().unwrap_or_default()).collect();
        let out = if node.output == self.output { OUTPUT.to_owned() } else { self.unique(&node.name) };
        self.names[node.output.index()] = Some(out.clone());
        let x = inputs[0].clone();
        // A per-channel vector's dims for broadcasting over this node's input (`[C, 1, 1]` on
        // `[batch, C, H, W]`).
        let rank = graph.shape(node.inputs[0]).len();
        let per_channel = |t: &Tensor| -> Vec<i64> { std::iter::once(t.numel() as i64).chain(std::iter::repeat_n(1, rank.saturating_sub(1))).collect() };
        let name = node.name.as_str();
        match &node.op {
            Op::Conv { weight, bias, stride, padding, groups } => {
                let size = weight.size();
                let mut inputs = vec![x, self.initializer(name, "weight", weight, &size)?];
                if let Some(b) = bias {
                    inputs.push(self.initializer(name, "bias", b, &b.size())?);
                }
                let attrs = vec![
                    ints("kernel_shape", &size[2..]),
                    ints("strides", stride),
                    ints("pads", &[padding[0], padding[1], padding[0], padding[1]]),
                    ints("dilations", &[1, 1]),
                    int("group", *groups),
                ];
                self.push(name, "Conv", inputs, &out, attrs);
            }
            Op::Linear { weight, bias } => {
                let mut inputs = vec![x, self.initializer(name, "weight", weight, &weight.size())?];
                if let Some(b) = bias {
                    inputs.push(self.initializer(name, "bias", b, &b.size())?);
                }
                self.push(name, "Gemm", inputs, &out, vec![int("transB", 1)]);
            }
            Op::BatchNorm { weight, bias, mean, var, eps } => {
                let c = [weight.numel() as i64];
                let inputs = vec![
                    x,
                    self.initializer(name, "weight", weight, &c)?,
                    self.initializer(name, "bias", bias, &c)?,
                    self.initializer(name, "running_mean", mean, &c)?,
                    self.initializer(name, "running_var", var, &c)?,
                ];
                let epsilon = AttributeProto { name: Some("epsilon".into()), r#type: Some(AttributeType::Float as i32), f: Some(*eps as f32), ..Default::default() };
                self.push(name, "BatchNormalization", inputs, &out, vec![epsilon]);
            }
            Op::Affine { scale, shift } => {
                let scaled = self.unique(&format!("{name}.scaled"));
                let s = self.initializer(name, "scale", scale, &per_channel(scale))?;
                let t = self.initializer(name, "shift", shift, &per_channel(shift))?;
                self.push(&scaled, "Mul", vec![x, s], &scaled, vec![]);
                self.push(name, "Add", vec![scaled, t], &out, vec![]);
            }
            Op::PRelu { slope } => {
                let dims = if slope.numel() == 1 { vec![1] } else { per_channel(slope) };
                let s = self.initializer(name, "weight", slope, &dims)?;
                self.push(name, "PRelu", vec![x, s], &out, vec![]);
            }
            Op::Relu => self.push(name, "Relu", vec![x], &out, vec![]),
            Op::MaxPool { kernel, stride, padding, ceil_mode } => {
                let attrs = vec![
                    ints("kernel_shape", kernel),
                    ints("strides", stride),
                    ints("pads", &[padding[0], padding[1], padding[0], padding[1]]),
                    int("ceil_mode", i64::from(*ceil_mode)),
                ];
                self.push(name, "MaxPool", vec![x], &out, attrs);
            }
            Op::Add => self.push(name, "Add", inputs, &out, vec![]),
            Op::Flatten => self.push(name, "Flatten", vec![x], &out, vec![int("axis", 1)]),
        }
        Ok(())
    }
}

fn ints(name: &str, values: &[i64]) -> AttributeProto {
    AttributeProto { name: Some(name.into()), r#type: Some(AttributeType::Ints as i32), ints: values.to_vec(), ..Default::default() }
}

fn int(name: &str, value: i64) -> AttributeProto {
    AttributeProto { name: Some(name.into()), r#type: Some(AttributeType::Int as i32), i: Some(value), ..Default::default() }
}
