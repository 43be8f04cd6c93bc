//! How a command ended, for scripts: exit codes.

use facerec_experiment::ExperimentError;
use facerec_train::TrainError;

/// Exit code of `facerec train` when the run diverged (a non-finite loss or weight).
pub const EXIT_DIVERGED: u8 = 3;

/// Exit code of `facerec compare` when the faces are of different people (0: the same person;
/// 1 is any error, 2 clap's usage errors).
pub const EXIT_DIFFERENT: u8 = 4;

/// Exit code of `facerec train` and `facerec launch` when Ctrl-C (SIGINT) stopped the run
/// (128 + SIGINT, as shells and most tools report it): a checkpoint was written, but the model
/// is not trained to the end, so `facerec train ... && facerec eval ...` stops there.
pub const EXIT_INTERRUPTED: u8 = 130;

/// The run was stopped by an interrupt after its checkpoint was written. The command has already
/// said so (the step, the checkpoint, how to resume); `main` only turns this into
/// [`EXIT_INTERRUPTED`].
#[derive(Debug)]
pub struct Interrupted;

impl std::fmt::Display for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("interrupted")
    }
}

impl std::error::Error for Interrupted {}

/// The exit code for an error: [`EXIT_INTERRUPTED`] for an interrupt, [`EXIT_DIVERGED`] when a
/// divergence is anywhere in its chain, 1 otherwise.
pub fn exit_code(error: &anyhow::Error) -> u8 {
    if error.downcast_ref::<Interrupted>().is_some() {
        return EXIT_INTERRUPTED;
    }
    let diverged = error.chain().any(|e| {
        matches!(e.downcast_ref::<TrainError>(), Some(TrainError::Diverged { .. }))
            || e.downcast_ref::<ExperimentError>().and_then(ExperimentError::diverged_at).is_some()
    });
    if diverged {
        EXIT_DIVERGED
    } else {
        1
    }
}
