//! `facerec info`.

use facerec_model::device::{describe, DeviceChoice};

pub fn run() -> anyhow::Result<()> {
    let device = DeviceChoice::Auto.resolve()?;
    println!("facerec {}", env!("CARGO_PKG_VERSION"));
    println!("device: {}", describe(device));
    println!("cuda available: {}", tch::Cuda::is_available());
    println!("cudnn available: {}", tch::Cuda::cudnn_is_available());
    println!("libtorch threads: {}", tch::get_num_threads());
    Ok(())
}
