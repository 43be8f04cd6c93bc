//! A backbone's inference graph in a small vocabulary of operations (ONNX's, with PyTorch's
//! weight layouts), described by the backbone itself ([`Backbone::describe`], written beside
//! its `forward_t` so that the two read alike) and exported by `facerec-onnx` (`facerec export
//! --onnx`). No protobuf here: this crate knows the operations, the exporter knows the format.
//!
//! [`GraphBuilder`] records the operations on [`Value`]s (the input, or an operation's output),
//! checking shapes as it goes, and names each node after its weight's variable
//! (`layer1.0.conv1`), so an exported graph reads like the state dict. [`Graph::run`] computes
//! a graph with libtorch, which is how the exporter checks a description against `forward_t`,
//! and [`Graph::fold_batch_norms`] folds each inference-mode batch norm into the convolution
//! or fully connected layer beside it, once, for every exporter.
//!
//! [`Backbone::describe`]: crate::Backbone::describe

use std::collections::{HashMap, HashSet};

use tch::{nn, Kind, Tensor};

use crate::backbone::Backbone;
use crate::error::{ModelError, Result};
use crate::layers::{BatchNorm, Conv2d, Linear, PRelu};

/// A tensor of the graph: its input, or the output of one of its nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Value(usize);

impl Value {
    /// The value's number: 0 for the input, then one per node in the order they were added.
    pub fn index(self) -> usize {
        self.0
    }
}

/// One operation on `[batch, ...]` tensors, with its weights (float32, on the CPU).
#[derive(Debug)]
pub enum Op {
    /// 2-D convolution, weight `[out, in / groups, kh, kw]` (PyTorch's layout; `groups = in`
    /// is a depthwise convolution), the same padding on both sides of each axis.
    Conv { weight: Tensor, bias: Option<Tensor>, stride: [i64; 2], padding: [i64; 2], groups: i64 },
    /// Fully connected, `x W^T + b` with weight `[out, in]` (ONNX `Gemm` with `transB`).
    Linear { weight: Tensor, bias: Option<Tensor> },
    /// Batch norm over dimension 1 with its running statistics (inference mode).
    BatchNorm { weight: Tensor, bias: Tensor, mean: Tensor, var: Tensor, eps: f64 },
    /// `x * scale[c] + shift[c]` over dimension 1: a batch norm that [`Graph::fold_batch_norms`]
    /// could not fold into a neighbour (one before a padded convolution).
    Affine { scale: Tensor, shift: Tensor },
    /// Parametric ReLU, one slope per channel (dimension 1) or one for all.
    PRelu { slope: Tensor },
    Relu,
    /// Max pooling; `ceil_mode` rounds the output size up as caffe and PyTorch's `ceil_mode` do.
    MaxPool { kernel: [i64; 2], stride: [i64; 2], padding: [i64; 2], ceil_mode: bool },
    /// The sum of two values of the same shape (a residual connection).
    Add,
    /// `[batch, d1, d2, ...]` to `[batch, d1 * d2 * ...]`.
    Flatten,
}

impl Op {
    /// The operation's name in messages and in generated node names.
    pub fn kind(&self) -> &'static str {
        match self {
            Op::Conv { .. } => "conv",
            Op::Linear { .. } => "linear",
            Op::BatchNorm { .. } => "batch_norm",
            Op::Affine { .. } => "affine",
            Op::PRelu { .. } => "prelu",
            Op::Relu => "relu",
            Op::MaxPool { .. } => "max_pool",
            Op::Add => "add",
            Op::Flatten => "flatten",
        }
    }
}

/// An operation applied to values, giving one value.
#[derive(Debug)]
pub struct Node {
    /// Unique in the graph: the layer's variable path (`layer1.0.conv1`) or `<kind>_<n>`.
    pub name: String,
    pub op: Op,
    pub inputs: Vec<Value>,
    pub output: Value,
}

/// A described backbone: the input `[batch, C, H, W]`, the nodes in the order they compute,
/// and the value that holds the features.
#[derive(Debug)]
pub struct Graph {
    pub nodes: Vec<Node>,
    pub input: Value,
    pub output: Value,
    /// The shape of every value without its batch dimension.
    shapes: Vec<Vec<i64>>,
}

/// What [`Graph::fold_batch_norms`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Folded {
    /// Batch norms folded into the weights of a convolution or fully connected layer.
    pub into_weights: usize,
    /// Batch norms left as a per-channel [`Op::Affine`].
    pub to_affine: usize,
}

/// Records a backbone's operations; see the module's documentation.
pub struct GraphBuilder {
    nodes: Vec<Node>,
    shapes: Vec<Vec<i64>>,
    /// Variable names by the address of their data, to name nodes after their layers.
    var_names: HashMap<usize, String>,
    taken: HashSet<String>,
}

impl GraphBuilder {
    /// A builder for images `[batch, C, H, W]` of `input = [C, H, W]`, naming layers after the
    /// variables of `vs` (the store the backbone was built in; without it, nodes are named
    /// after their operation); returns the input's value too.
    pub fn new(input: [i64; 3], vs: Option<&nn::VarStore>) -> (Self, Value) {
        let var_names = vs.map(|vs| vs.variables().into_iter().map(|(name, t)| (t.data_ptr() as usize, name)).collect()).unwrap_or_default();
        let builder = GraphBuilder { nodes: Vec::new(), shapes: vec![input.to_vec()], var_names, taken: HashSet::new() };
        (builder, Value(0))
    }

    /// The shape of `x` without its batch dimension.
    pub fn shape(&self, x: Value) -> &[i64] {
        &self.shapes[x.0]
    }

    /// `conv`, as its `forward` computes it.
    pub fn conv(&mut self, conv: &Conv2d, x: Value) -> Result<Value> {
        let op = Op::Conv {
            weight: detached(&conv.weight)?,
            bias: conv.bias.as_ref().map(detached).transpose()?,
            stride: [conv.stride; 2],
            padding: [conv.padding; 2],
            groups: conv.groups,
        };
        self.push_named(&conv.weight, op, &[x])
    }

    /// `linear`, as its `forward` computes it (on `[batch, in]` values: flatten first).
    pub fn linear(&mut self, linear: &Linear, x: Value) -> Result<Value> {
        let op = Op::Linear { weight: detached(&linear.weight)?, bias: linear.bias.as_ref().map(detached).transpose()? };
        self.push_named(&linear.weight, op, &[x])
    }

    /// `bn` in inference mode (its running statistics).
    pub fn batch_norm(&mut self, bn: &BatchNorm, x: Value) -> Result<Value> {
        let op = Op::BatchNorm {
            weight: detached(&bn.weight)?,
            bias: detached(&bn.bias)?,
            mean: detached(&bn.running_mean)?,
            var: detached(&bn.running_var)?,
            eps: bn.eps,
        };
        self.push_named(&bn.bias, op, &[x])
    }

    pub fn prelu(&mut self, prelu: &PRelu, x: Value) -> Result<Value> {
        self.push_named(&prelu.weight, Op::PRelu { slope: detached(&prelu.weight)? }, &[x])
    }

    pub fn relu(&mut self, x: Value) -> Result<Value> {
        self.push(None, Op::Relu, &[x])
    }

    /// [`crate::layers::max_pool2`]: 2x2, stride 2, rounding up.
    pub fn max_pool2(&mut self, x: Value) -> Result<Value> {
        self.push(None, Op::MaxPool { kernel: [2, 2], stride: [2, 2], padding: [0, 0], ceil_mode: true }, &[x])
    }

    /// `a + b`, of one shape.
    pub fn add(&mut self, a: Value, b: Value) -> Result<Value> {
        self.push(None, Op::Add, &[a, b])
    }

    /// `[batch, ...]` to `[batch, features]`, as `f_flatten(1, -1)`.
    pub fn flatten(&mut self, x: Value) -> Result<Value> {
        self.push(None, Op::Flatten, &[x])
    }

    /// Any operation of the vocabulary with weights of your own (a layer facerec does not
    /// have), named `name` (made unique) or after its kind.
    pub fn push(&mut self, name: Option<&str>, op: Op, inputs: &[Value]) -> Result<Value> {
        let base = name.map_or_else(|| op.kind().to_owned(), str::to_owned);
        let name = self.unique(base, name.is_none());
        let shapes: Vec<&[i64]> = inputs.iter().map(|v| self.shapes.get(v.0).map(Vec::as_slice)).collect::<Option<_>>().ok_or_else(|| {
            ModelError::Graph(format!("{name}: an input is not a value of this graph"))
        })?;
        let shape = output_shape(&op, &shapes).map_err(|msg| ModelError::Graph(format!("{name} ({}): {msg}", op.kind())))?;
        let output = Value(self.shapes.len());
        self.shapes.push(shape);
        self.nodes.push(Node { name, op, inputs: inputs.to_vec(), output });
        Ok(output)
    }

    /// The graph whose features are `output`.
    pub fn finish(self, input: Value, output: Value) -> Graph {
        Graph { nodes: self.nodes, input, output, shapes: self.shapes }
    }

    /// [`Self::push`] named after the layer that owns `param` (`layer1.0.conv1` for the
    /// variable `layer1.0.conv1.weight`).
    fn push_named(&mut self, param: &Tensor, op: Op, inputs: &[Value]) -> Result<Value> {
        let layer = self.var_names.get(&(param.data_ptr() as usize)).map(|n| n.rsplit_once('.').map_or(n.as_str(), |(l, _)| l).to_owned());
        self.push(layer.as_deref(), op, inputs)
    }

    /// `base`, or `base_<n>` with the first free `n` (always numbered when `numbered`).
    fn unique(&mut self, base: String, numbered: bool) -> String {
        let name = if !numbered && !self.taken.contains(&base) {
            base
        } else {
            (0..).map(|n| format!("{base}_{n}")).find(|n| !self.taken.contains(n)).unwrap_or(base)
        };
        self.taken.insert(name.clone());
        name
    }
}

/// A copy of a layer's tensor for the graph: float32 on the CPU, outside autograd.
fn detached(t: &Tensor) -> Result<Tensor> {
    Ok(t.f_detach_copy()?.f_to_device(tch::Device::Cpu)?.f_to_kind(Kind::Float)?)
}

/// The shape (without batch) that `op` gives for inputs of `shapes`, or why it cannot apply.
fn output_shape(op: &Op, shapes: &[&[i64]]) -> std::result::Result<Vec<i64>, String> {
    let arity = if matches!(op, Op::Add) { 2 } else { 1 };
    if shapes.len() != arity {
        return Err(format!("takes {arity} input(s), got {}", shapes.len()));
    }
    let x = shapes[0];
    let channels = |len: i64, what: &str| {
        if x.first() == Some(&len) || (len == 1 && matches!(op, Op::PRelu { .. })) {
            Ok(x.to_vec())
        } else {
            Err(format!("{what} of {len} channels on an input of shape {x:?}"))
        }
    };
    match op {
        Op::Conv { weight, bias, stride, padding, groups } => {
            let w = weight.size();
            let &[cin, h, wd] = x else { return Err(format!("needs [C, H, W] inputs, got {x:?}")) };
            if w.len() != 4 || *groups < 1 || w[1] * groups != cin || w[0] % groups != 0 {
                return Err(format!("weight {w:?} in {groups} group(s) does not take {cin} channels"));
            }
            if bias.as_ref().is_some_and(|b| b.size() != [w[0]]) {
                return Err(format!("bias is not [{}]", w[0]));
            }
            let side = |n: i64, k: i64, s: i64, p: i64| (n + 2 * p - k).div_euclid(s) + 1;
            let (ho, wo) = (side(h, w[2], stride[0], padding[0]), side(wd, w[3], stride[1], padding[1]));
            if ho < 1 || wo < 1 || stride.iter().any(|&s| s < 1) {
                return Err(format!("a {}x{} kernel with stride {stride:?} and padding {padding:?} leaves no output of {h}x{wd}", w[2], w[3]));
            }
            Ok(vec![w[0], ho, wo])
        }
        Op::Linear { weight, bias } => {
            let w = weight.size();
            if w.len() != 2 || x != [w[1]] {
                return Err(format!("weight {w:?} does not take inputs of shape {x:?} (flatten first)"));
            }
            if bias.as_ref().is_some_and(|b| b.size() != [w[0]]) {
                return Err(format!("bias is not [{}]", w[0]));
            }
            Ok(vec![w[0]])
        }
        Op::BatchNorm { weight, bias, mean, var, .. } => {
            let c = weight.size1().map_err(|e| e.to_string())?;
            if [bias, mean, var].iter().any(|t| t.size() != [c]) {
                return Err("weight, bias, mean and variance differ in size".into());
            }
            channels(c, "batch norm")
        }
        Op::Affine { scale, shift } => {
            let c = scale.size1().map_err(|e| e.to_string())?;
            if shift.size() != [c] {
                return Err("scale and shift differ in size".into());
            }
            channels(c, "affine")
        }
        Op::PRelu { slope } => channels(slope.size1().map_err(|e| e.to_string())?, "slopes"),
        Op::Relu => Ok(x.to_vec()),
        Op::MaxPool { kernel, stride, padding, ceil_mode } => {
            let &[c, h, w] = x else { return Err(format!("needs [C, H, W] inputs, got {x:?}")) };
            let side = |n: i64, i: usize| pool_side(n, kernel[i], stride[i], padding[i], *ceil_mode);
            let (ho, wo) = (side(h, 0), side(w, 1));
            if ho < 1 || wo < 1 {
                return Err(format!("a {kernel:?} pool leaves no output of {h}x{w}"));
            }
            Ok(vec![c, ho, wo])
        }
        Op::Add => {
            if shapes[0] != shapes[1] {
                return Err(format!("shapes {:?} and {:?} differ", shapes[0], shapes[1]));
            }
            Ok(x.to_vec())
        }
        Op::Flatten => Ok(vec![x.iter().product()]),
    }
}

/// PyTorch's pooled size: rounded down, or up with `ceil_mode` unless the last window would
/// start in the right padding.
fn pool_side(n: i64, k: i64, s: i64, p: i64, ceil_mode: bool) -> i64 {
    let span = n + 2 * p - k;
    let mut out = if ceil_mode { (span + s - 1).div_euclid(s) + 1 } else { span.div_euclid(s) + 1 };
    if ceil_mode && (out - 1) * s >= n + p {
        out -= 1;
    }
    out
}

impl Graph {
    /// The graph `backbone` describes, its nodes named after the variables of `vs`.
    pub fn of(backbone: &dyn Backbone, vs: Option<&nn::VarStore>) -> Result<Graph> {
        let (mut g, input) = GraphBuilder::new(backbone.input_shape(), vs);
        let output = backbone.describe(&mut g, input)?;
        Ok(g.finish(input, output))
    }

    /// The graph of `backbone` (its weights as they are now) as facerec's inference runs it on
    /// the CPU: batch norms folded, convolution weights in channels-last order, the layout
    /// [`Graph::run`] gives images, in which oneDNN's convolutions do not reorder their input
    /// and output (1.1-1.8x faster than `forward_t`'s channel-major tensors on the CI machine,
    /// docs/benchmarks.md). The features agree with `forward_t`'s to float32 rounding (a few
    /// parts in a million).
    pub fn for_inference(backbone: &dyn Backbone) -> Result<Graph> {
        let mut graph = Graph::of(backbone, None)?;
        graph.fold_batch_norms()?;
        for node in &mut graph.nodes {
            if let Op::Conv { weight, .. } = &mut node.op {
                *weight = channels_last(weight)?;
            }
        }
        Ok(graph)
    }

    /// The shape of `x` without its batch dimension.
    pub fn shape(&self, x: Value) -> &[i64] {
        &self.shapes[x.0]
    }

    /// The nodes that read each value, by value.
    fn readers(&self) -> Vec<Vec<usize>> {
        let mut readers = vec![Vec::new(); self.shapes.len()];
        for (i, node) in self.nodes.iter().enumerate() {
            for v in &node.inputs {
                readers[v.0].push(i);
            }
        }
        readers
    }

    /// Computes the graph on `images` `[batch, C, H, W]` with libtorch (inference: batch norms
    /// use their running statistics), freeing each value after its last reader. The images are
    /// laid out channels-last (`[N, H, W, C]` in memory, the same tensor logically), which every
    /// operation of the vocabulary keeps and a flatten undoes.
    pub fn run(&self, images: &Tensor) -> Result<Tensor> {
        let _guard = tch::no_grad_guard();
        let mut left: Vec<usize> = self.readers().iter().map(Vec::len).collect();
        left[self.output.0] += 1;
        let mut values: Vec<Option<Tensor>> = (0..self.shapes.len()).map(|_| None).collect();
        values[self.input.0] = Some(if images.dim() == 4 { channels_last(images)? } else { images.shallow_clone() });
        for node in &self.nodes {
            let inputs: Vec<Tensor> = node
                .inputs
                .iter()
                .map(|v| values[v.0].as_ref().map(Tensor::shallow_clone).ok_or_else(|| ModelError::Graph(format!("{} reads a value not computed before it", node.name))))
                .collect::<Result<_>>()?;
            let y = apply(&node.op, &inputs)?;
            for v in &node.inputs {
                left[v.0] -= 1;
                if left[v.0] == 0 {
                    values[v.0] = None;
                }
            }
            values[node.output.0] = Some(y);
        }
        values[self.output.0].take().ok_or_else(|| ModelError::Graph("the output is not computed by any node".into()))
    }

    /// Folds every batch norm into the weights beside it where that is exact: into the
    /// convolution or fully connected layer that feeds it (`W' = W s`, `b' = (b - mean) s +
    /// beta`, with `s = gamma / sqrt(var + eps)`), or into the fully connected layer it feeds
    /// (directly or through a flatten: `W' = W diag(s)`, `b' = b + W t`). One before a padded
    /// convolution cannot be folded into it (the padding would see the shift), nor into the
    /// layer before it when that layer's output is also read elsewhere (IResNet's `bn1`
    /// reads a block's input, which the shortcut reads too): it becomes [`Op::Affine`].
    /// The arithmetic is in float64, the weights stored back as float32.
    pub fn fold_batch_norms(&mut self) -> Result<Folded> {
        let mut folded = Folded::default();
        while let Some(i) = self.nodes.iter().position(|n| matches!(n.op, Op::BatchNorm { .. })) {
            let (scale, shift) = bn_scale_shift(&self.nodes[i].op)?;
            let (x, y) = (self.nodes[i].inputs[0], self.nodes[i].output);
            match self.fold_target(i) {
                Fold::IntoProducer(j) => {
                    fold_into_output(&mut self.nodes[j].op, &scale, &shift)?;
                    self.nodes[j].output = y;
                    self.nodes.remove(i);
                    folded.into_weights += 1;
                }
                Fold::IntoLinear(r) => {
                    let per_channel = self.shapes[x.0].iter().skip(1).product::<i64>();
                    fold_into_input(&mut self.nodes[r].op, &scale, &shift, per_channel)?;
                    self.nodes.remove(i);
                    for v in self.nodes.iter_mut().flat_map(|n| n.inputs.iter_mut()).filter(|v| **v == y) {
                        *v = x;
                    }
                    folded.into_weights += 1;
                }
                Fold::Affine => {
                    self.nodes[i].op = Op::Affine { scale: to_float(&scale)?, shift: to_float(&shift)? };
                    folded.to_affine += 1;
                }
            }
        }
        Ok(folded)
    }

    /// Where the batch norm at node `i` can go.
    fn fold_target(&self, i: usize) -> Fold {
        let readers = self.readers();
        let only_reader = |v: Value| (readers[v.0].len() == 1 && v != self.output).then(|| readers[v.0][0]);
        let (x, y) = (self.nodes[i].inputs[0], self.nodes[i].output);
        let producer = self.nodes.iter().position(|n| n.output == x);
        if let (Some(j), Some(_)) = (producer, only_reader(x)) {
            if matches!(self.nodes[j].op, Op::Conv { .. } | Op::Linear { .. }) {
                return Fold::IntoProducer(j);
            }
        }
        // The fully connected layer it feeds, directly or through one flatten.
        let mut next = y;
        while let Some(r) = only_reader(next) {
            match self.nodes[r].op {
                Op::Linear { .. } => return Fold::IntoLinear(r),
                Op::Flatten if next == y => next = self.nodes[r].output,
                _ => break,
            }
        }
        Fold::Affine
    }
}

/// Where a batch norm goes: into the weights of the node that feeds it, or of the fully
/// connected node it feeds, or kept as an affine.
enum Fold {
    IntoProducer(usize),
    IntoLinear(usize),
    Affine,
}

/// `t` `[N, C, H, W]` with channels-last strides (PyTorch's `memory_format=torch.channels_last`):
/// the same values, laid out `[N, H, W, C]` in memory.
fn channels_last(t: &Tensor) -> Result<Tensor> {
    Ok(t.f_permute([0, 2, 3, 1])?.f_contiguous()?.f_permute([0, 3, 1, 2])?)
}

/// `scale = gamma / sqrt(var + eps)` and `shift = beta - mean * scale`, in float64.
fn bn_scale_shift(op: &Op) -> Result<(Tensor, Tensor)> {
    let Op::BatchNorm { weight, bias, mean, var, eps } = op else { unreachable!("only batch norms are folded") };
    let d = |t: &Tensor| t.f_to_kind(Kind::Double);
    let scale = d(weight)?.f_div(&d(var)?.f_add_scalar(*eps)?.f_sqrt()?)?;
    let shift = d(bias)?.f_sub(&d(mean)?.f_mul(&scale)?)?;
    Ok((scale, shift))
}

fn to_float(t: &Tensor) -> Result<Tensor> {
    Ok(t.f_to_kind(Kind::Float)?)
}

/// A batch norm after `op` (convolution or fully connected), in its weights.
fn fold_into_output(op: &mut Op, scale: &Tensor, shift: &Tensor) -> Result<()> {
    let (weight, bias) = match op {
        Op::Conv { weight, bias, .. } | Op::Linear { weight, bias } => (weight, bias),
        _ => unreachable!("folded into a convolution or fully connected layer only"),
    };
    let w = weight.f_to_kind(Kind::Double)?;
    let mut per_out = vec![-1i64];
    per_out.extend(std::iter::repeat_n(1, w.dim() - 1));
    let b = match bias {
        Some(b) => b.f_to_kind(Kind::Double)?,
        None => scale.f_zeros_like()?,
    };
    *weight = to_float(&w.f_mul(&scale.f_view(per_out.as_slice())?)?)?;
    *bias = Some(to_float(&b.f_mul(scale)?.f_add(shift)?)?);
    Ok(())
}

/// A batch norm before a fully connected layer whose input has `per_channel` elements per
/// channel (channel-major, as a flatten of `[C, H, W]` gives), in its weights.
fn fold_into_input(op: &mut Op, scale: &Tensor, shift: &Tensor, per_channel: i64) -> Result<()> {
    let Op::Linear { weight, bias } = op else { unreachable!("folded into a fully connected layer only") };
    let w = weight.f_to_kind(Kind::Double)?; // [out, in]
    let s = scale.f_repeat_interleave_self_int(per_channel, Some(0), None)?; // [in]
    let t = shift.f_repeat_interleave_self_int(per_channel, Some(0), None)?; // [in]
    let b = match bias {
        Some(b) => b.f_to_kind(Kind::Double)?,
        None => Tensor::f_zeros([w.size()[0]], (Kind::Double, tch::Device::Cpu))?,
    };
    *bias = Some(to_float(&b.f_add(&w.f_mv(&t)?)?)?);
    *weight = to_float(&w.f_mul(&s.f_unsqueeze(0)?)?)?;
    Ok(())
}

/// One operation with libtorch, as the layers' `forward` computes it in inference mode.
fn apply(op: &Op, inputs: &[Tensor]) -> Result<Tensor> {
    let x = &inputs[0];
    // A per-channel vector shaped to broadcast over dimension 1 of `x`.
    let channel = |t: &Tensor| -> Result<Tensor> {
        let mut shape = vec![-1i64];
        shape.extend(std::iter::repeat_n(1, x.dim().saturating_sub(2)));
        Ok(t.f_view(shape.as_slice())?)
    };
    Ok(match op {
        Op::Conv { weight, bias, stride, padding, groups } => x.f_conv2d(weight, bias.as_ref(), *stride, *padding, [1, 1], *groups)?,
        Op::Linear { weight, bias } => x.f_linear(weight, bias.as_ref())?,
        Op::BatchNorm { weight, bias, mean, var, eps } => x.f_batch_norm(Some(weight), Some(bias), Some(mean), Some(var), false, 0.1, *eps, true)?,
        Op::Affine { scale, shift } => x.f_mul(&channel(scale)?)?.f_add(&channel(shift)?)?,
        Op::PRelu { slope } => facerec_ops::prelu(x, slope)?,
        Op::Relu => x.f_relu()?,
        Op::MaxPool { kernel, stride, padding, ceil_mode } => x.f_max_pool2d(*kernel, *stride, *padding, [1, 1], *ceil_mode)?,
        Op::Add => x.f_add(&inputs[1])?,
        Op::Flatten => x.f_flatten(1, -1)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    /// A conv -> BN -> PReLU -> BN -> flatten -> linear -> BN stack, plus a BN whose input
    /// is read twice (it cannot be folded), with random statistics: folded, the graph computes
    /// what it computed before (float32 arithmetic of the two forms differs by rounding only).
    #[test]
    fn folding_keeps_what_the_graph_computes() -> Result<()> {
        tch::manual_seed(3);
        let vs = nn::VarStore::new(Device::Cpu);
        let p = vs.root();
        let conv = Conv2d::new(&p / "conv", 3, 8, 3, 1, 1, false);
        let bn_a = BatchNorm::new(&p / "bn_a", 8, 1e-5, true);
        let prelu = PRelu::new(&p / "prelu", 8);
        let bn_b = BatchNorm::new(&p / "bn_b", 8, 1e-5, true);
        let bn_c = BatchNorm::new(&p / "bn_c", 8, 1e-5, true);
        let fc = Linear::new(&p / "fc", 8 * 6 * 5, 4, true);
        let bn_d = BatchNorm::new(&p / "bn_d", 4, 1e-5, true);
        tch::no_grad(|| {
            for (name, mut t) in vs.variables() {
                let r = Tensor::rand(t.size(), (Kind::Float, Device::Cpu));
                if name.ends_with("running_var") || (name.ends_with(".weight") && name.starts_with("bn")) {
                    t.copy_(&(r + 0.5)); // scales and variances in [0.5, 1.5)
                } else if name.starts_with("bn") {
                    t.copy_(&(r - 0.5)); // shifts and means in [-0.5, 0.5)
                }
            }
        });
        let (mut g, input) = GraphBuilder::new([3, 6, 5], Some(&vs));
        let x = g.conv(&conv, input)?;
        let x = g.batch_norm(&bn_a, x)?;
        let x = g.prelu(&prelu, x)?;
        let y = g.batch_norm(&bn_b, x)?; // x is read by the shortcut too: an affine
        let x = g.add(x, y)?;
        let x = g.batch_norm(&bn_c, x)?;
        let x = g.flatten(x)?;
        let x = g.linear(&fc, x)?;
        let out = g.batch_norm(&bn_d, x)?;
        let mut graph = g.finish(input, out);
        assert_eq!(graph.nodes[0].name, "conv");
        assert_eq!(graph.shape(graph.output), [4]);
        let images = Tensor::randn([5, 3, 6, 5], (Kind::Float, Device::Cpu));
        let before = graph.run(&images)?;
        assert_eq!(graph.fold_batch_norms()?, Folded { into_weights: 3, to_affine: 1 });
        let kinds: Vec<&str> = graph.nodes.iter().map(|n| n.op.kind()).collect();
        assert_eq!(kinds, ["conv", "prelu", "affine", "add", "flatten", "linear"]);
        let after = graph.run(&images)?;
        let diff = f64::try_from((&after - &before).abs().max())?;
        let scale = f64::try_from(before.abs().max())?;
        assert!(scale > 0.1 && diff <= 1e-5 * scale, "max abs diff {diff} at features up to {scale}");
        Ok(())
    }

    #[test]
    fn shapes_are_checked_as_the_graph_is_described() {
        let vs = nn::VarStore::new(Device::Cpu);
        let conv = Conv2d::new(vs.root() / "conv", 3, 8, 3, 1, 0, true);
        let fc = Linear::new(vs.root() / "fc", 10, 2, true);
        let (mut g, input) = GraphBuilder::new([1, 28, 28], Some(&vs));
        let err = g.conv(&conv, input).unwrap_err().to_string();
        assert!(err.contains("conv (conv)") && err.contains("does not take 1 channels"), "{err}");
        let (mut g, input) = GraphBuilder::new([3, 7, 7], Some(&vs));
        let x = g.conv(&conv, input).unwrap();
        assert_eq!(g.shape(x), [8, 5, 5]);
        let pooled = g.max_pool2(x).unwrap();
        assert_eq!(g.shape(pooled), [8, 3, 3]); // caffe's rounding up
        let err = g.linear(&fc, x).unwrap_err().to_string();
        assert!(err.contains("flatten first"), "{err}");
    }

    /// PyTorch's `MaxPool2d(2, 2, ceil_mode=True)` sizes, from `torch.nn.functional.max_pool2d`
    /// on inputs of these sides: 7 -> 4, 28 -> 14, 1 -> 1; and with padding 1 and kernel 3,
    /// stride 2 (ceil): 6 -> 4, 5 -> 3.
    #[test]
    fn pool_sizes_round_as_pytorch() {
        assert_eq!(pool_side(7, 2, 2, 0, true), 4);
        assert_eq!(pool_side(28, 2, 2, 0, true), 14);
        assert_eq!(pool_side(1, 2, 2, 0, true), 1);
        assert_eq!(pool_side(7, 2, 2, 0, false), 3);
        assert_eq!(pool_side(6, 3, 2, 1, true), 4);
        assert_eq!(pool_side(5, 3, 2, 1, true), 3);
    }
}
