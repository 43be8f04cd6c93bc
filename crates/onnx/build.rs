//! Links libtorch (facerec-build), and generates the ONNX message types from `proto/onnx.proto`
//! with prost-build, the `.proto` compiled by protox (pure Rust: no `protoc` on the machine).

fn main() {
    facerec_build::link_libtorch();
    println!("cargo:rerun-if-changed=proto/onnx.proto");
    let descriptors = protox::compile(["proto/onnx.proto"], ["proto"]).unwrap_or_else(|e| panic!("compiling proto/onnx.proto: {e}"));
    prost_build::Config::new()
        .compile_fds(descriptors)
        .unwrap_or_else(|e| panic!("generating the ONNX types from proto/onnx.proto: {e}"));
}
