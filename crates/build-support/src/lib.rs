//! Build-script helper shared by every facerec crate that links libtorch.
//!
//! `torch-sys` tells the linker where libtorch is (`-L`), but not the loader: a binary built
//! against the PyPI wheel would need `LD_LIBRARY_PATH` at run time. [`link_libtorch`] adds an
//! rpath for the wheel's `torch/lib` and for each `nvidia/*/lib` beside it, so `cargo test`,
//! `cargo bench` and `target/release/facerec` run with nothing exported.
//!
//! It also forces `libtorch_cuda.so` into the binary's `NEEDED` list. Rust links with
//! `--as-needed`, and since no Rust code calls a CUDA symbol directly, the linker would drop
//! the library: libtorch would then report no CUDA device even on a GPU machine.
//!
//! Call it from a `build.rs` of a crate that (directly) depends on `torch-sys`; cargo passes
//! that crate the `DEP_TCH_LIBTORCH_LIB` variable that `torch-sys`'s build script exports.
//! `cargo:rustc-link-arg` applies to the calling package's own binaries, tests, benches and
//! examples, which is why each such crate has this one-line build script.

use std::path::{Path, PathBuf};

/// Emits the cargo directives described in the crate docs (on standard output: cargo's
/// protocol for build scripts).
#[allow(clippy::print_stdout)]
pub fn link_libtorch() {
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    let Some(lib) = libtorch_lib_dir() else {
        println!(
            "cargo:warning=facerec-build: libtorch's lib directory is unknown \
             (DEP_TCH_LIBTORCH_LIB unset); binaries will need LD_LIBRARY_PATH"
        );
        return;
    };
    // The wheel lays libraries out as site-packages/{torch/lib, nvidia/<name>/lib}.
    let lib = std::fs::canonicalize(&lib).unwrap_or(lib);
    let mut dirs = vec![lib.clone()];
    dirs.extend(nvidia_lib_dirs(&lib));
    for dir in &dirs {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{}", dir.display());
    }
    if lib.join("libtorch_cuda.so").exists() {
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed");
        println!("cargo:rustc-link-arg=-L{}", lib.display());
        println!("cargo:rustc-link-arg=-ltorch_cuda");
        println!("cargo:rustc-link-arg=-Wl,--as-needed");
    }
}

/// The directory that holds `libtorch_cpu.so`, as torch-sys resolved it.
pub fn libtorch_lib_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("DEP_TCH_LIBTORCH_LIB") {
        return Some(PathBuf::from(dir));
    }
    std::env::var_os("LIBTORCH").map(|root| PathBuf::from(root).join("lib"))
}

/// `site-packages/nvidia/*/lib` for a `site-packages/torch/lib`, sorted for stable output.
fn nvidia_lib_dirs(torch_lib: &Path) -> Vec<PathBuf> {
    let Some(site_packages) = torch_lib.parent().and_then(Path::parent) else {
        return Vec::new();
    };
    let Ok(entries) = std::fs::read_dir(site_packages.join("nvidia")) else {
        return Vec::new();
    };
    let mut dirs: Vec<PathBuf> = entries
        .filter_map(|entry| entry.ok().map(|e| e.path().join("lib")))
        .filter(|dir| dir.is_dir())
        .collect();
    dirs.sort();
    dirs
}
