//! Compiles `cpp/shim.cpp` against the headers of the libtorch that torch-sys links (the PyPI
//! wheel's `torch/include`), with Gloo always and with NCCL when its headers and CUDA's are
//! found, and links the shim against the wheel's libraries: `libtorch_cpu.so` holds
//! ProcessGroupGloo and TCPStore, `libtorch_cuda.so` ProcessGroupNCCL.
//!
//! Gloo's own headers are not in the wheel: Debian's `libgloo-dev` supplies them
//! (`/usr/include/gloo`, or set `GLOO_INCLUDE`). NCCL needs `nvidia/nccl/include/nccl.h` and a
//! CUDA include folder with `cuda_runtime_api.h`, `crt/host_config.h` and CCCL's `nv/target`
//! (`nvidia/cu13/include` once `scripts/setup.sh` has added the wheel's crt and cccl headers, or
//! `$CUDA_HOME/include`). `FACEREC_DIST_NCCL=0` leaves NCCL out; `=1` makes its absence an error.

use std::path::{Path, PathBuf};

fn main() {
    facerec_build::link_libtorch();
    for f in ["cpp/shim.cpp", "cpp/shim.h"] {
        println!("cargo:rerun-if-changed={f}");
    }
    for v in ["LIBTORCH", "DEP_TCH_LIBTORCH_LIB", "DEP_FACEREC_OPS_INCLUDE", "GLOO_INCLUDE", "CUDA_HOME", "FACEREC_DIST_NCCL"] {
        println!("cargo:rerun-if-env-changed={v}");
    }

    let lib = facerec_build::libtorch_lib_dir().unwrap_or_else(|| fail("libtorch's lib directory is unknown (DEP_TCH_LIBTORCH_LIB and LIBTORCH unset)"));
    let lib = std::fs::canonicalize(&lib).unwrap_or(lib);
    let torch = lib.parent().map(Path::to_path_buf).unwrap_or_else(|| fail("libtorch's lib directory has no parent"));
    let include = torch.join("include");
    if !include.join("torch/csrc/distributed/c10d/ProcessGroupGloo.hpp").is_file() {
        fail(&format!("{} has no c10d headers (torch/csrc/distributed/c10d/ProcessGroupGloo.hpp)", include.display()));
    }
    let gloo = gloo_include().unwrap_or_else(|| {
        fail("Gloo's headers (gloo/config.h) were not found in /usr/include or $GLOO_INCLUDE: \
              install Debian's libgloo-dev (scripts/setup.sh does)")
    });

    let mut build = cc::Build::new();
    build
        .cpp(true)
        .pic(true)
        .warnings(false)
        .flag("-std=c++17")
        .flag("-w") // libtorch's headers warn about C++20 extensions under C++17
        .define("_GLIBCXX_USE_CXX11_ABI", "1")
        .define("GLOG_USE_GLOG_EXPORT", None)
        .define("USE_C10D_GLOO", None)
        .include(&include)
        .include(include.join("torch/csrc/api/include"))
        .include(&gloo)
        // guarded.h: the error convention shared with facerec-ops.
        .include(std::env::var("DEP_FACEREC_OPS_INCLUDE").unwrap_or_else(|_| fail("DEP_FACEREC_OPS_INCLUDE is unset (facerec-ops' build script sets it)")))
        .file("cpp/shim.cpp");

    let nccl = match std::env::var("FACEREC_DIST_NCCL").as_deref() {
        Ok("0") => None,
        want => match nccl_includes(&lib) {
            Ok(dirs) => Some(dirs),
            Err(missing) if want == Ok("1") => fail(&format!("FACEREC_DIST_NCCL=1 but {missing}")),
            Err(missing) => {
                println!("cargo:warning=facerec-dist: building without NCCL (CPU/Gloo only): {missing}");
                None
            }
        },
    };
    if let Some(dirs) = &nccl {
        build.define("USE_C10D_NCCL", None).includes(dirs);
    }
    build.compile("facerec_dist_shim");

    // After the static library, so that the linker resolves its symbols from these.
    println!("cargo:rustc-link-search=native={}", lib.display());
    println!("cargo:rustc-link-lib=dylib=torch_cpu");
    println!("cargo:rustc-link-lib=dylib=c10");
    if nccl.is_some() {
        println!("cargo:rustc-link-lib=dylib=torch_cuda");
        println!("cargo:rustc-link-lib=dylib=c10_cuda");
    }
}

fn fail(msg: &str) -> ! {
    eprintln!("facerec-dist: {msg}");
    panic!("facerec-dist: {msg}");
}

fn gloo_include() -> Option<PathBuf> {
    let candidates = std::env::var_os("GLOO_INCLUDE").map(PathBuf::from).into_iter().chain([PathBuf::from("/usr/include")]);
    candidates.into_iter().find(|dir| dir.join("gloo/config.h").is_file())
}

/// Include folders for ProcessGroupNCCL.hpp, or what is missing.
fn nccl_includes(torch_lib: &Path) -> Result<Vec<PathBuf>, String> {
    if !torch_lib.join("libtorch_cuda.so").is_file() {
        return Err(format!("{} has no libtorch_cuda.so (a CPU-only libtorch)", torch_lib.display()));
    }
    let nvidia = torch_lib.parent().and_then(Path::parent).map(|sp| sp.join("nvidia")).unwrap_or_default();
    let nccl = [nvidia.join("nccl/include")]
        .into_iter()
        .chain(std::env::var_os("CUDA_HOME").map(|h| PathBuf::from(h).join("include")))
        .find(|d| d.join("nccl.h").is_file())
        .ok_or_else(|| format!("nccl.h is neither in {} nor in $CUDA_HOME/include", nvidia.join("nccl/include").display()))?;
    let mut cuda_dirs: Vec<PathBuf> = ["cu13", "cu12", "cuda_runtime"].iter().map(|d| nvidia.join(d).join("include")).collect();
    cuda_dirs.extend(std::env::var_os("CUDA_HOME").map(|h| PathBuf::from(h).join("include")));
    // Rebuild with NCCL once scripts/setup.sh has added the missing headers.
    for dir in cuda_dirs.iter().filter(|d| d.is_dir()) {
        println!("cargo:rerun-if-changed={}", dir.display());
    }
    let needed = ["cuda_runtime_api.h", "crt/host_config.h", "nv/target"];
    let cuda = cuda_dirs
        .iter()
        .find(|d| needed.iter().all(|f| d.join(f).exists()))
        .ok_or_else(|| {
            format!(
                "no CUDA include folder with {} under {} or $CUDA_HOME/include (scripts/setup.sh \
                 installs the wheel's crt and cccl headers)",
                needed.join(", "),
                nvidia.display()
            )
        })?;
    Ok(vec![nccl, cuda.clone()])
}
