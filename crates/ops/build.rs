//! Compiles `cpp/ops.cpp` against the headers of the libtorch that torch-sys links (the PyPI
//! wheel's `torch/include`) and links it against the wheel's `libtorch_cpu.so`, `libc10.so` and
//! `libgomp.so.1` (libtorch's OpenMP runtime).

use std::path::Path;

fn main() {
    facerec_build::link_libtorch();
    // For dependents' C++ (facerec-dist's shim): the error convention of cpp/guarded.h.
    let cpp = Path::new(env!("CARGO_MANIFEST_DIR")).join("cpp");
    println!("cargo:include={}", cpp.display());
    for f in ["cpp/ops.cpp", "cpp/ops.h", "cpp/guarded.h"] {
        println!("cargo:rerun-if-changed={f}");
    }
    for v in ["LIBTORCH", "DEP_TCH_LIBTORCH_LIB"] {
        println!("cargo:rerun-if-env-changed={v}");
    }
    let lib = facerec_build::libtorch_lib_dir()
        .unwrap_or_else(|| fail("libtorch's lib directory is unknown (DEP_TCH_LIBTORCH_LIB and LIBTORCH unset)"));
    let lib = std::fs::canonicalize(&lib).unwrap_or(lib);
    let include = lib.parent().map(|torch| torch.join("include")).unwrap_or_else(|| fail("libtorch's lib directory has no parent"));
    if !include.join("torch/csrc/autograd/custom_function.h").is_file() {
        fail(&format!("{} has no libtorch C++ headers (torch/csrc/autograd/custom_function.h)", include.display()));
    }
    cc::Build::new()
        .cpp(true)
        .pic(true)
        .warnings(false)
        .flag("-std=c++17")
        .flag("-w") // libtorch's headers warn about C++20 extensions under C++17
        // at::parallel_for is inline OpenMP in this libtorch (AT_PARALLEL_OPENMP): without
        // -fopenmp it would run on one thread. The runtime is the wheel's libgomp (below).
        .flag("-fopenmp")
        // Lets gcc turn the selects of PReLU's backward into vector blends (it keeps them as
        // branches while floating-point exceptions are observable); nothing here reads them.
        .flag("-fno-trapping-math")
        .define("_GLIBCXX_USE_CXX11_ABI", "1")
        .define("GLOG_USE_GLOG_EXPORT", None)
        .include(&include)
        .include(include.join("torch/csrc/api/include"))
        .file("cpp/ops.cpp")
        .compile("facerec_ops");
    // After the static library, so that the linker resolves its symbols from these.
    println!("cargo:rustc-link-search=native={}", Path::new(&lib).display());
    println!("cargo:rustc-link-lib=dylib=torch_cpu");
    println!("cargo:rustc-link-lib=dylib=c10");
    // The OpenMP runtime libtorch_cpu itself uses (torch/lib/libgomp.so.1), so that there is one
    // thread pool, not gcc's second copy.
    println!("cargo:rustc-link-lib=dylib:+verbatim=libgomp.so.1");
}

fn fail(msg: &str) -> ! {
    eprintln!("facerec-ops: {msg}");
    panic!("facerec-ops: {msg}");
}
