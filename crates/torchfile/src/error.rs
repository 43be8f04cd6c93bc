//! The crate's error: the file's path and what went wrong in it ([`ErrorKind`]).

use std::path::PathBuf;

/// A checkpoint that could not be read. Its message starts with the file's path.
#[derive(Debug, thiserror::Error)]
#[error("{}: {kind}", path.display())]
pub struct Error {
    /// The file (or the name given to [`crate::read_bytes`]).
    pub path: PathBuf,
    /// What is wrong with it.
    pub kind: ErrorKind,
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What is wrong with a checkpoint; [`Error`] adds the path.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ErrorKind {
    #[error("cannot read the file: {0}")]
    Io(std::io::Error),
    /// Neither of torch.save's formats; `looks_like` says what the first bytes look like.
    #[error("not a PyTorch checkpoint: {looks_like}")]
    NotTorch { looks_like: String },
    /// The file ends early: `what` says where and inside what.
    #[error("cut short: {what}")]
    Truncated { what: String },
    #[error("unsupported pickle opcode {name} (0x{code:02x}) at byte {offset} of {part}")]
    UnsupportedOpcode { name: &'static str, code: u8, offset: usize, part: String },
    #[error("malformed pickle at byte {offset} of {part}: {what}")]
    BadPickle { offset: usize, part: String, what: String },
    #[error("malformed zip archive: {what}")]
    BadZip { what: String },
    #[error("zip entry '{entry}' is compressed (method {method}); torch.save stores entries uncompressed")]
    Compressed { entry: String, method: u16 },
    /// A tensor's storage without its bytes; `looked_for` says where they should be.
    #[error("storage '{key}' is missing: there is no {looked_for}")]
    MissingStorage { key: String, looked_for: String },
    #[error("malformed checkpoint: {what}")]
    Malformed { what: String },
    /// A storage or dtype this reader does not know (complex, quantized, float8, ...).
    /// `of` is "tensor 'name'" or "storage 'key'".
    #[error("{of} has the unknown or unsupported type '{name}'")]
    UnknownDtype { of: String, name: String },
    #[error("the checkpoint was written on a big-endian machine; only little-endian checkpoints are supported")]
    BigEndian,
    #[error("tensor '{name}': {what}")]
    BadTensor { name: String, what: String },
    /// `torch.save(model)` rather than `torch.save(model.state_dict())`.
    #[error(
        "holds a pickled Python object of class {class}{}, not a state dict; save model.state_dict() instead",
        under(at)
    )]
    PickledObject { class: String, at: Option<String> },
    #[error("is a TorchScript archive (torch.jit.save), not a torch.save checkpoint; load it with torch.jit.load and torch.save its state_dict()")]
    TorchScript,
    /// No dict of name -> tensor where one is looked for; `found` says what there is.
    #[error("no state dict (a dict of name -> tensor) found: {found}")]
    NoStateDict { found: String },
}

/// " under 'key'" for a message, or nothing.
fn under(key: &Option<String>) -> String {
    key.as_ref().map(|k| format!(" under '{k}'")).unwrap_or_default()
}
