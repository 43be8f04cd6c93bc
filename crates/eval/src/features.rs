//! The one inference path of facerec: a backbone over normalised crops in inference mode, with
//! the mirror image's features concatenated when asked ([`Embedder`], [`embed_batch`]; Wen et
//! al. 2016, sec. 4.1), batch by batch ([`embed_rows`], [`extract`]). LFW and `.bin`
//! evaluation, MNIST evaluation, `facerec embed`, `compare` and `bench` all call these. Also:
//! moving features between libtorch tensors and host-side `ndarray` arrays.

use ndarray::{Array2, ArrayBase, Data, Ix2};
use tch::{Device, Kind, Tensor};

use facerec_model::{Backbone, Graph, ModelError};

use crate::error::{EvalError, Result};

/// A backbone ready to compute features. On the CPU, a backbone that describes its graph runs
/// it as [`Graph::for_inference`] prepares it (batch norms folded, channels-last convolutions:
/// what puts facerec at or above onnxruntime's speed on the exported model, except for the
/// Face-ResNets at batch 1, docs/benchmarks.md); one
/// that does not, or on a GPU, runs its `forward_t`. Made once for many batches: it copies the
/// weights as they are when it is made.
pub struct Embedder<'a> {
    backbone: &'a dyn Backbone,
    graph: Option<Graph>,
    device: Device,
}

impl<'a> Embedder<'a> {
    pub fn new(backbone: &'a dyn Backbone, device: Device) -> Result<Self> {
        let graph = match device {
            Device::Cpu => match Graph::for_inference(backbone) {
                Ok(graph) => Some(graph),
                Err(ModelError::NotDescribed { .. }) => None,
                Err(e) => return Err(e.into()),
            },
            _ => None,
        };
        Ok(Embedder { backbone, graph, device })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(match &self.graph {
            Some(graph) => {
                // The graph is described for the backbone's input; forward_t says so itself.
                facerec_model::check_input(self.backbone.name(), self.backbone.input_shape(), x)?;
                graph.run(x)?
            }
            None => self.backbone.forward_t(x, false)?,
        })
    }

    /// Features of one batch of normalised crops `images` `[n, C, H, W]` (on any device),
    /// without gradients: `[n, D]`, or with `flip` `[n, 2D]`, the image's features followed by
    /// its horizontal mirror's. Float, on the CPU.
    pub fn batch(&self, images: &Tensor, flip: bool) -> Result<Tensor> {
        let _guard = tch::no_grad_guard();
        let x = images.f_to_device(self.device)?;
        let mut parts = vec![self.forward(&x)?]; // [n, D]
        if flip {
            parts.push(self.forward(&x.f_flip([3])?)?); // [n, D], the mirror's
        }
        Ok(Tensor::f_cat(&parts, 1)?.f_to_device(Device::Cpu)?.f_to_kind(Kind::Float)?) // [n, D or 2D]
    }
}

/// [`Embedder::batch`] of one batch (for many, make the [`Embedder`] once).
pub fn embed_batch(backbone: &dyn Backbone, images: &Tensor, flip: bool, device: Device) -> Result<Tensor> {
    Embedder::new(backbone, device)?.batch(images, flip)
}

/// [`embed_batch`] over `rows` `batch` at a time, `crops(chunk)` giving the crops of each chunk
/// of rows; `progress` gets the rows done after each chunk. `[rows, D or 2D]`.
pub fn embed_rows(
    backbone: &dyn Backbone,
    rows: &[usize],
    batch: usize,
    flip: bool,
    device: Device,
    mut crops: impl FnMut(&[usize]) -> Result<Tensor>,
    progress: &dyn Fn(u64),
) -> Result<Tensor> {
    let embedder = Embedder::new(backbone, device)?;
    let mut out = Vec::new();
    for chunk in rows.chunks(batch.max(1)) {
        out.push(embedder.batch(&crops(chunk)?, flip)?);
        progress(chunk.len() as u64);
    }
    if out.is_empty() {
        let dim = backbone.feature_dim() * if flip { 2 } else { 1 };
        return Ok(Tensor::f_zeros([0, dim], (Kind::Float, Device::Cpu))?);
    }
    Ok(Tensor::f_cat(&out, 0)?)
}

/// Features `[N, D]` (on the CPU, float) of `images` `[N, C, H, W]`, `batch` at a time.
pub fn extract(backbone: &dyn Backbone, images: &Tensor, batch: i64, device: Device) -> Result<Tensor> {
    let rows: Vec<usize> = (0..images.size()[0] as usize).collect();
    let crops = |chunk: &[usize]| Ok(images.f_narrow(0, chunk[0] as i64, chunk.len() as i64)?);
    embed_rows(backbone, &rows, batch.max(1) as usize, false, device, crops, &|_| {})
}

/// A `[N, D]` tensor (any device, any kind) as a host array of `T` (converted as libtorch
/// converts to `T`'s kind).
pub fn to_array2<T: tch::kind::Element + Copy>(t: &Tensor) -> Result<Array2<T>> {
    let size = t.size();
    if size.len() != 2 {
        return Err(EvalError::Invalid(format!("features must be [N, D], got {size:?}")));
    }
    let host = t.f_to_device(Device::Cpu)?.f_to_kind(T::KIND)?.f_contiguous()?;
    let a: ndarray::ArrayD<T> = (&host).try_into()?;
    a.into_dimensionality::<Ix2>().map_err(|e| EvalError::Invalid(format!("features of {size:?}: {e}")))
}

/// A host array `[N, D]` as a CPU tensor of the same element type.
pub fn from_array2<T: tch::kind::Element, S: Data<Elem = T>>(a: &ArrayBase<S, Ix2>) -> Result<Tensor> {
    let (n, d) = a.dim();
    let standard = a.as_standard_layout();
    let flat = standard.as_slice().ok_or_else(|| EvalError::Invalid("array not contiguous".into()))?;
    Ok(Tensor::f_from_slice(flat)?.f_view([n as i64, d as i64])?)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// On the CPU a backbone that describes itself runs its folded, channels-last graph: the
    /// features are `forward_t`'s to float32 rounding (an IResNet whose batch norms have random
    /// statistics, so that folding changes the arithmetic); one that does not describe itself
    /// runs its `forward_t`, exactly.
    #[test]
    fn the_cpu_path_runs_the_folded_graph_or_forward_t() -> Result<()> {
        use facerec_model::iresnet::IresnetConfig;
        use facerec_model::BackboneConfig;
        use tch::nn;
        tch::manual_seed(4);
        let vs = nn::VarStore::new(Device::Cpu);
        let config = IresnetConfig { layers: Some([1, 1, 1, 1]), base_width: 8, feature_dim: 16, input_size: 32, ..Default::default() };
        let net = BackboneConfig::new(config).build(&vs.root())?;
        tch::no_grad(|| {
            for (name, mut t) in vs.variables() {
                if name.ends_with("running_var") {
                    t.copy_(&(Tensor::rand_like(&t) + 0.5));
                } else if name.ends_with("running_mean") {
                    t.copy_(&(Tensor::rand_like(&t) - 0.5));
                }
            }
        });
        let x = Tensor::randn([3, 3, 32, 32], (Kind::Float, Device::Cpu));
        let embedder = Embedder::new(net.as_ref(), Device::Cpu)?;
        assert!(embedder.graph.is_some());
        let ours = embedder.batch(&x, false)?;
        let direct = tch::no_grad(|| net.forward_t(&x, false))?;
        let (diff, scale) = (f64::try_from((&ours - &direct).abs().max())?, f64::try_from(direct.abs().max())?);
        assert!(scale > 0.1 && diff <= 1e-5 * scale, "max abs diff {diff} at features up to {scale}");

        #[derive(Debug)]
        struct Undescribed;
        impl Backbone for Undescribed {
            fn forward_t(&self, x: &Tensor, _train: bool) -> facerec_model::Result<Tensor> {
                Ok(x.f_flatten(1, -1)?.f_mul_scalar(2.0)?)
            }
            fn feature_dim(&self) -> i64 {
                12
            }
            fn input_shape(&self) -> [i64; 3] {
                [3, 2, 2]
            }
            fn name(&self) -> &'static str {
                "undescribed"
            }
        }
        let y = Tensor::randn([2, 3, 2, 2], (Kind::Float, Device::Cpu));
        let plain = Embedder::new(&Undescribed, Device::Cpu)?;
        assert!(plain.graph.is_none());
        assert_eq!(plain.batch(&y, false)?, y.flatten(1, -1) * 2.0);
        Ok(())
    }

    #[test]
    fn arrays_and_tensors_round_trip() {
        let t = Tensor::from_slice(&[1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0]).view([2, 3]);
        let a = to_array2::<f32>(&t).unwrap();
        assert_eq!(a, ndarray::array![[1.0f32, 2.0, 3.0], [4.0, 5.0, 6.0]]);
        // a transposed (non-contiguous) tensor comes out in its logical order
        let at = to_array2::<f64>(&t.tr()).unwrap();
        assert_eq!(at, ndarray::array![[1.0, 4.0], [2.0, 5.0], [3.0, 6.0]]);
        let back = from_array2(&a.t()).unwrap();
        assert_eq!(back.size(), vec![3, 2]);
        assert_eq!(Vec::<f32>::try_from(back.flatten(0, -1)).unwrap(), vec![1.0, 4.0, 2.0, 5.0, 3.0, 6.0]);
        assert!(to_array2::<f32>(&Tensor::from_slice(&[1.0f32])).is_err());
    }
}
