//! The one error type of `facerec-onnx`.

use facerec_model::ModelError;

/// What can go wrong exporting a backbone.
///
/// A variant that wraps another error (model, I/O, libtorch) prints that error's message itself
/// and does not also return it as `source()`: `main` prints the chain with `{:#}`, which would
/// say it twice.
#[derive(Debug, thiserror::Error)]
pub enum OnnxError {
    /// Loading the model, or describing its graph (a backbone without a description says what
    /// to implement).
    #[error("{0}")]
    Model(ModelError),
    /// The described graph does not compute what `forward_t` does.
    #[error(
        "backbone `{backbone}`: the graph it describes gives features up to {diff:.3e} away from its forward_t's \
         (which reach {scale:.3e}) on a test input: describe() must compute what forward_t(images, false) does, \
         layer by layer"
    )]
    Disagrees { backbone: String, diff: f64, scale: f64 },
    /// Writing the model file (the message names it).
    #[error("{0}")]
    Write(facerec_core::CoreError),
    #[error("libtorch: {}", facerec_core::torch_message(.0))]
    Torch(tch::TchError),
}

/// `Result` with [`OnnxError`].
pub type Result<T, E = OnnxError> = std::result::Result<T, E>;

// By hand rather than `#[from]`, which would also make the wrapped error the `source()`.
impl From<ModelError> for OnnxError {
    fn from(e: ModelError) -> Self {
        OnnxError::Model(e)
    }
}

impl From<tch::TchError> for OnnxError {
    fn from(e: tch::TchError) -> Self {
        OnnxError::Torch(e)
    }
}
