//! `facerec info`: what libtorch runs on, which libtorch was loaded (version and file), and
//! whether the data and model files the commands read are where they look for them.

use std::path::{Path, PathBuf};

use facerec_data::paths::{data_dir, require};
use facerec_model::device::{describe, DeviceChoice};

/// What `facerec info` looks for under `data/`: a name and the files (relative to `data/`)
/// that must all be there.
const DATA: &[(&str, &[&str])] = &[
    (
        "MNIST",
        &["mnist/train-images-idx3-ubyte", "mnist/train-labels-idx1-ubyte", "mnist/t10k-images-idx3-ubyte", "mnist/t10k-labels-idx1-ubyte"],
    ),
    ("LFW images", &["lfw/images"]),
    ("LFW pairs.txt", &["lfw/pairs.txt"]),
    ("LFW landmarks", &["lfw/landmarks_5pt.tsv"]),
    ("MTCNN weights", &["mtcnn/pnet.safetensors", "mtcnn/rnet.safetensors", "mtcnn/onet.safetensors"]),
    ("AT&T faces", &["att_faces"]),
];

pub fn run() -> anyhow::Result<()> {
    let device = DeviceChoice::Auto.resolve()?;
    println!("facerec {}", env!("CARGO_PKG_VERSION"));
    println!("device: {}", describe(device));
    println!("cuda available: {}", tch::Cuda::is_available());
    println!("cudnn available: {}", tch::Cuda::cudnn_is_available());
    println!("libtorch threads: {}", tch::get_num_threads());
    match loaded_libtorch() {
        Some(lib) => println!(
            "libtorch: {} ({})",
            libtorch_version(&lib).unwrap_or_else(|| "version unknown (no version.py or build-version beside lib/)".into()),
            lib.display()
        ),
        None => println!("libtorch: libtorch_cpu.so not found in /proc/self/maps"),
    }
    let dir = data_dir();
    println!("data ({}):", absolute(&dir).display());
    for (name, files) in DATA {
        println!("  {name}: {}", data_status(files));
    }
    Ok(())
}

/// `found <path>` (the common folder of `files`), or `missing: <path>: not found (<what
/// provides it>)` for the first file that is not there (with how many are missing, when
/// several are looked for).
fn data_status(files: &[&str]) -> String {
    let missing: Vec<String> = files.iter().filter_map(|f| require(f).err()).map(|e| e.to_string()).collect();
    match missing.split_first() {
        None => {
            let first = data_dir().join(files[0]);
            let shown = if files.len() > 1 { first.parent().map(Path::to_path_buf).unwrap_or(first) } else { first };
            format!("found {}", absolute(&shown).display())
        }
        Some((first, [])) => format!("missing: {first}"),
        Some((first, rest)) => format!("missing {} of {} files, the first: {first}", rest.len() + 1, files.len()),
    }
}

/// `path` made absolute against the working directory, for a message that says where exactly.
fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

/// The `libtorch_cpu.so` this process has loaded (Linux: from `/proc/self/maps`).
fn loaded_libtorch() -> Option<PathBuf> {
    let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
    maps.lines().filter_map(|l| l.split_whitespace().nth(5)).find(|p| p.ends_with("/libtorch_cpu.so")).map(PathBuf::from)
}

/// The version of the libtorch whose `lib/` holds `lib`: PyTorch wheels have it in
/// `torch/version.py` (`__version__ = '2.13.0+cu130'`), the libtorch archives in
/// `libtorch/build-version`.
fn libtorch_version(lib: &Path) -> Option<String> {
    let root = lib.parent()?.parent()?;
    if let Ok(text) = std::fs::read_to_string(root.join("version.py")) {
        if let Some(v) = text.lines().find_map(|l| l.trim().strip_prefix("__version__")) {
            return Some(v.trim_start_matches([' ', '=']).trim().trim_matches(['\'', '"']).to_owned());
        }
    }
    std::fs::read_to_string(root.join("build-version")).ok().map(|v| v.trim().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_from_a_wheel_and_from_an_archive() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let wheel = dir.path().join("torch");
        std::fs::create_dir_all(wheel.join("lib"))?;
        std::fs::write(wheel.join("version.py"), "from typing import Optional\n__version__ = '2.13.0+cu130'\ndebug = False\n")?;
        assert_eq!(libtorch_version(&wheel.join("lib/libtorch_cpu.so")).as_deref(), Some("2.13.0+cu130"));
        let archive = dir.path().join("libtorch");
        std::fs::create_dir_all(archive.join("lib"))?;
        std::fs::write(archive.join("build-version"), "2.5.1+cpu\n")?;
        assert_eq!(libtorch_version(&archive.join("lib/libtorch_cpu.so")).as_deref(), Some("2.5.1+cpu"));
        assert_eq!(libtorch_version(&dir.path().join("elsewhere/lib/libtorch_cpu.so")), None);
        Ok(())
    }
}
