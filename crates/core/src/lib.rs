//! The base of facerec's crate graph: what every other crate shares and nothing else. It
//! depends on no facerec crate, so that the others never need `facerec-data` for it.
//!
//! - [`torch_message`]: libtorch's error message without its C++ stack trace;
//! - [`fsutil`]: writing files atomically, with [`CoreError`] naming the file on failure;
//! - [`metrics`]: JSON-lines files (`steps.jsonl`, `metrics.jsonl`), written and read back;
//! - [`run_files`]: the names of the files in a run directory;
//! - [`pixels`]: how a model scales its input pixels ([`pixels::PixelNorm`]).

pub mod error;
pub mod fsutil;
pub mod metrics;
pub mod pixels;
pub mod plugin;
pub mod run_files;

pub use error::{CoreError, Result};
pub use pixels::{Arithmetic, PixelNorm};

/// libtorch's message without the C++ stack trace that follows it ("Exception raised from ...").
pub fn torch_message(e: &tch::TchError) -> String {
    let full = e.to_string();
    match full.find("\nException raised from") {
        Some(i) => full[..i].to_owned(),
        None => full,
    }
}
