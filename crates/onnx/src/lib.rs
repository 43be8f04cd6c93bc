//! facerec backbones as ONNX models (`facerec export MODEL --onnx out.onnx`): the graph a
//! backbone describes ([`facerec_model::Backbone::describe`]), its batch norms folded into the
//! convolutions and fully connected layers, checked against the backbone's own `forward_t`, and
//! written as an ONNX `ModelProto` (opset [`OPSET`], a dynamic batch dimension) whose
//! `metadata_props` say how to make its input: layout, colour order, size, pixel normalisation
//! and crop template ([`input_metadata`]; `docs/getting-started.md` shows them in use).
//!
//! The message types are generated from the ONNX project's own `onnx.proto` (in `proto/`) by
//! prost-build, the `.proto` compiled by protox, so no `protoc` binary is needed.

mod error;
mod export;

/// The ONNX message types, generated from `proto/onnx.proto`.
#[allow(clippy::all, missing_docs)]
pub mod proto {
    include!(concat!(env!("OUT_DIR"), "/onnx.rs"));
}

pub use error::{OnnxError, Result};
pub use export::{export_backbone, export_file, input_metadata, model_proto, Exported, INPUT, IR_VERSION, OPSET, OUTPUT};
