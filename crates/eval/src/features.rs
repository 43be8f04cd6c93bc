//! Running a backbone over many images in batches, in inference mode.

use tch::{Device, Kind, Tensor};

use facerec_model::Backbone;

use crate::error::Result;

/// Features `[N, dim]` (on the CPU, float) of `images` `[N, C, H, W]`, `batch` at a time.
pub fn extract(backbone: &dyn Backbone, images: &Tensor, batch: i64, device: Device) -> Result<Tensor> {
    let _guard = tch::no_grad_guard();
    let n = images.size()[0];
    let mut out = Vec::new();
    let mut start = 0;
    while start < n {
        let len = batch.min(n - start);
        let x = images.f_narrow(0, start, len)?.f_to_device(device)?;
        out.push(backbone.forward_t(&x, false)?.f_to_device(Device::Cpu)?.f_to_kind(Kind::Float)?);
        start += len;
    }
    if out.is_empty() {
        return Ok(Tensor::f_zeros([0, backbone.feature_dim()], (Kind::Float, Device::Cpu))?);
    }
    Ok(Tensor::f_cat(&out, 0)?)
}
