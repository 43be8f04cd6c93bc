//! What a run reports as it goes, to whoever observes it: the CLI's progress bar, a test that
//! stops a run at a given step, and [`RunLog`](crate::run_log::RunLog), which writes the log
//! lines and the run's record files (`config.toml`, `steps.jsonl`, `metrics.jsonl`,
//! TensorBoard events). The trainer computes the numbers; observers decide where they go.

use std::time::Duration;

use crate::error::Result;

/// Observes a run. Every hook does nothing by default; an error from one stops the run (the
/// trainer keeps the weights it has, as after any failure).
pub trait Observer {
    /// Before the first step (of this process's part of the run, when resumed).
    fn on_start(&mut self, _start: &RunStart<'_>) -> Result<()> {
        Ok(())
    }
    /// After every step.
    fn on_step(&mut self, _stats: &StepStats) -> Result<()> {
        Ok(())
    }
    /// Every `log.every_steps` steps and at the last one: the means since the previous line.
    fn on_log(&mut self, _line: &LogLine<'_>) -> Result<()> {
        Ok(())
    }
    /// At the end of each epoch.
    fn on_epoch(&mut self, _line: &EpochLine<'_>) -> Result<()> {
        Ok(())
    }
    /// After each evaluation.
    fn on_eval(&mut self, _eval: &Evaluation<'_>) -> Result<()> {
        Ok(())
    }
}

/// An observer that ignores everything.
impl Observer for () {}

/// Two observers, each told everything (the first first).
pub struct Both<'a>(pub &'a mut dyn Observer, pub &'a mut dyn Observer);

impl Observer for Both<'_> {
    fn on_start(&mut self, start: &RunStart<'_>) -> Result<()> {
        self.0.on_start(start)?;
        self.1.on_start(start)
    }
    fn on_step(&mut self, stats: &StepStats) -> Result<()> {
        self.0.on_step(stats)?;
        self.1.on_step(stats)
    }
    fn on_log(&mut self, line: &LogLine<'_>) -> Result<()> {
        self.0.on_log(line)?;
        self.1.on_log(line)
    }
    fn on_epoch(&mut self, line: &EpochLine<'_>) -> Result<()> {
        self.0.on_epoch(line)?;
        self.1.on_epoch(line)
    }
    fn on_eval(&mut self, eval: &Evaluation<'_>) -> Result<()> {
        self.0.on_eval(eval)?;
        self.1.on_eval(eval)
    }
}

/// How a run starts.
#[derive(Debug, Clone)]
pub struct RunStart<'a> {
    /// Steps done already (those of the checkpoint a resumed run starts from), and in all.
    pub start_step: usize,
    pub total_steps: usize,
    /// The run's configuration as resolved (what `config.toml` holds).
    pub config: &'a str,
    /// The loss's named terms and their weights in the objective, from this step on.
    pub terms: Vec<(&'static str, f64)>,
}

/// What one step did.
#[derive(Debug, Clone, PartialEq)]
pub struct StepStats {
    /// Steps done after this one.
    pub step: usize,
    pub epoch: usize,
    pub lr: f64,
    /// The objective (`L_S + lambda * L_C` for center loss).
    pub loss: f64,
    /// The loss's terms by name (`softmax_loss`, `center_loss`).
    pub terms: Vec<(&'static str, f64)>,
    /// Training accuracy of the batch.
    pub accuracy: f64,
    pub batch_size: usize,
    /// Wall time of the step, data wait excluded.
    pub step_time: Duration,
    /// Time the step waited for its batch.
    pub data_wait: Duration,
}

/// A line of the training log: the means over the `steps_averaged` steps since the previous
/// line, and the learning rate of the last of them.
#[derive(Debug, Clone, PartialEq)]
pub struct LogLine<'a> {
    pub step: usize,
    pub epoch: usize,
    pub lr: f64,
    pub loss: f64,
    pub terms: &'a [(&'static str, f64)],
    pub accuracy: f64,
    pub grad_norm: f64,
    pub steps_averaged: usize,
    /// Training time of the run so far, resumed parts included.
    pub elapsed_s: f64,
    /// One of the about ten lines of the run worth showing on a terminal.
    pub announce: bool,
}

/// The end of an epoch: the training loss and accuracy over it, with the last evaluation's
/// metrics.
#[derive(Debug, Clone, PartialEq)]
pub struct EpochLine<'a> {
    pub step: usize,
    pub epoch: usize,
    pub train_loss: f64,
    pub train_accuracy: f64,
    pub elapsed_s: f64,
    pub eval: &'a [(String, f64)],
}

/// An evaluation's metrics.
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation<'a> {
    pub step: usize,
    pub epoch: usize,
    pub metrics: &'a [(String, f64)],
}
