//! facerec's application layer, under the `facerec` binary: what an experiment is and where
//! its results go.
//!
//! - [`config`]: the experiment's TOML schema, composed of the crates' own sections, with
//!   `--set` overrides and their checks;
//! - [`data`]: the `[data]` section, opened as a training source;
//! - [`run_dir`]: [`RunDir`], the one place that names the files of a run directory;
//! - [`provenance`]: resuming a run only with the settings it was trained with, or recording
//!   each change;
//! - [`evaluators`]: the evaluations that go with a run's data, several at once, behind the
//!   trainer's `Evaluator`;
//! - [`report`]: the reports a run writes, as types that commands read back;
//! - [`run`]: a training run end to end, as `facerec train` starts it.

pub mod config;
pub mod data;
pub mod error;
pub mod evaluators;
pub mod provenance;
pub mod report;
pub mod run;
pub mod run_dir;

pub use config::Config;
pub use error::{ExperimentError, Result};
pub use run_dir::RunDir;
