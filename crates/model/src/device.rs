//! Picking the device to run on: CUDA when libtorch sees a GPU, the CPU otherwise.

use serde::{Deserialize, Serialize};
use tch::Device;

use crate::error::{ModelError, Result};

/// The `device` setting of a config or command line: `"auto"` (the first GPU if there is one,
/// else the CPU), `"cpu"`, `"cuda"` or `"cuda:N"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum DeviceChoice {
    #[default]
    Auto,
    Cpu,
    Cuda(usize),
}

impl std::str::FromStr for DeviceChoice {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "auto" => Ok(DeviceChoice::Auto),
            "cpu" => Ok(DeviceChoice::Cpu),
            "cuda" => Ok(DeviceChoice::Cuda(0)),
            _ => s
                .strip_prefix("cuda:")
                .and_then(|i| i.parse().ok())
                .map(DeviceChoice::Cuda)
                .ok_or_else(|| format!("unknown device {s:?}: expected \"auto\", \"cpu\", \"cuda\" or \"cuda:N\"")),
        }
    }
}

impl TryFrom<String> for DeviceChoice {
    type Error = String;

    fn try_from(s: String) -> std::result::Result<Self, String> {
        s.parse()
    }
}

impl From<DeviceChoice> for String {
    fn from(d: DeviceChoice) -> String {
        match d {
            DeviceChoice::Auto => "auto".into(),
            DeviceChoice::Cpu => "cpu".into(),
            DeviceChoice::Cuda(i) => format!("cuda:{i}"),
        }
    }
}

impl DeviceChoice {
    /// Resolves to a tch device, failing when a GPU was asked for and is not there.
    pub fn resolve(self) -> Result<Device> {
        match self {
            DeviceChoice::Auto => Ok(Device::cuda_if_available()),
            DeviceChoice::Cpu => Ok(Device::Cpu),
            DeviceChoice::Cuda(cuda) => {
                let n = tch::Cuda::device_count();
                if (cuda as i64) < n {
                    Ok(Device::Cuda(cuda))
                } else {
                    Err(ModelError::NoSuchDevice { asked: cuda, seen: n })
                }
            }
        }
    }
}

/// Whether libtorch's CUDA library is loaded in this process (the build forces it in with
/// `--no-as-needed`; without it libtorch would never see a GPU).
pub fn cuda_linked() -> bool {
    std::fs::read_to_string("/proc/self/maps").is_ok_and(|maps| maps.contains("libtorch_cuda.so"))
}

/// One line on what libtorch runs on: the device, threads, and whether CUDA was linked.
pub fn describe(device: Device) -> String {
    let cuda = if cuda_linked() { "libtorch_cuda loaded" } else { "libtorch_cuda not loaded" };
    match device {
        Device::Cuda(i) => format!(
            "cuda:{i} ({} GPU(s) visible, cuDNN {}, {cuda})",
            tch::Cuda::device_count(),
            if tch::Cuda::cudnn_is_available() { "on" } else { "off" }
        ),
        _ => format!("cpu ({} threads, {cuda}, {} CUDA device(s))", tch::get_num_threads(), tch::Cuda::device_count()),
    }
}
