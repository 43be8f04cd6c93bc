//! The one error type of `facerec-model`.

/// What can go wrong building, running, saving or loading a backbone.
///
/// A variant that wraps another error (I/O, libtorch) prints that error's message itself and does
/// not also return it as `source()`: `main` prints the chain with `{:#}`, which would say it twice.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("invalid backbone configuration: {0}")]
    Config(String),
    /// The config asks for a CUDA device that libtorch does not see.
    #[error("device cuda:{asked} asked for, but libtorch sees {seen} CUDA device(s) (`facerec info` says what it sees; device = \"auto\" or \"cpu\" trains without one)")]
    NoSuchDevice { asked: usize, seen: i64 },
    #[error("{backbone} expects input [batch, {}, {}, {}], got {got:?}", .expected[0], .expected[1], .expected[2])]
    InputShape { backbone: &'static str, expected: [i64; 3], got: Vec<i64> },
    /// A backbone that cannot be exported: it does not describe its graph.
    #[error(
        "backbone `{backbone}` does not describe its graph, so it cannot be exported: implement \
         `Backbone::describe` beside its `forward_t`, writing the same layers with \
         facerec_model::graph::GraphBuilder (conv, batch_norm, prelu, relu, max_pool2, add, flatten, \
         linear, or push for any other operation of the vocabulary); see docs/adding-a-backbone.md, \
         section 5"
    )]
    NotDescribed { backbone: String },
    /// A graph description that does not hold together (shapes, inputs), naming the node.
    #[error("graph: {0}")]
    Graph(String),
    #[error("{path}: {msg}")]
    Weights { path: std::path::PathBuf, msg: String },
    #[error("{path}: not found; {hint}")]
    MissingWeights { path: std::path::PathBuf, hint: &'static str },
    #[error("{path}: {error}")]
    Io {
        path: std::path::PathBuf,
        error: std::io::Error,
    },
    #[error("libtorch: {}", facerec_core::torch_message(.0))]
    Torch(tch::TchError),
    /// An operation of facerec-ops (PReLU) failed; the message is libtorch's.
    #[error("libtorch: {0}")]
    Ops(facerec_ops::OpsError),
}

/// `Result` with [`ModelError`].
pub type Result<T, E = ModelError> = std::result::Result<T, E>;

// By hand rather than `#[from]`, which would also make the wrapped error the `source()`.
impl From<tch::TchError> for ModelError {
    fn from(e: tch::TchError) -> Self {
        ModelError::Torch(e)
    }
}

impl From<facerec_ops::OpsError> for ModelError {
    fn from(e: facerec_ops::OpsError) -> Self {
        ModelError::Ops(e)
    }
}
