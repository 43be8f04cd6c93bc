//! The run's log: its lines through `tracing` on every rank, and on the rank that writes the
//! run's files (rank 0, or the only process) its records: `config.toml`, `steps.jsonl`,
//! `metrics.jsonl` (the loss's terms and weights, each epoch's and each evaluation's numbers)
//! and TensorBoard events.

use std::path::{Path, PathBuf};

use facerec_core::metrics::{record, JsonLines, LossTerms};
use facerec_core::run_files;

use crate::error::{Result, TrainError};
use crate::observe::{EpochLine, Evaluation, LogLine, Observer, RunStart};
use crate::tensorboard::EventWriter;

/// An [`Observer`] that logs a run and writes its records.
pub struct RunLog {
    dir: PathBuf,
    writes_files: bool,
    files: Option<Files>,
}

struct Files {
    steps: JsonLines,
    metrics: JsonLines,
    events: EventWriter,
}

impl RunLog {
    /// The log of the run in `dir`; only with `writes_files` does it write there.
    pub fn new(dir: &Path, writes_files: bool) -> Self {
        RunLog { dir: dir.to_path_buf(), writes_files, files: None }
    }

    /// Drops every record after `step` from the run's files: a run resumed from the checkpoint
    /// of `step` rewrites what came after it.
    pub fn truncate_after(dir: &Path, step: usize) -> Result<()> {
        JsonLines::truncate_after(&dir.join(run_files::STEPS), step)?;
        JsonLines::truncate_after(&dir.join(run_files::METRICS), step)?;
        crate::tensorboard::truncate_after(dir, step)
    }
}

/// `name=value` pairs for a log line.
fn shown<'a>(pairs: impl IntoIterator<Item = (&'a str, f64)>) -> String {
    pairs.into_iter().map(|(k, v)| format!("{k}={v:.4}")).collect::<Vec<_>>().join(" ")
}

impl Observer for RunLog {
    fn on_start(&mut self, start: &RunStart<'_>) -> Result<()> {
        if !self.writes_files {
            return Ok(());
        }
        let config = self.dir.join(run_files::CONFIG);
        std::fs::write(&config, start.config).map_err(|e| TrainError::io(config, e))?;
        let steps = JsonLines::open(&self.dir.join(run_files::STEPS))?;
        let mut metrics = JsonLines::open(&self.dir.join(run_files::METRICS))?;
        // The loss's terms and weights from this step on, for training.png.
        let terms = start.terms.iter().map(|&(name, weight)| (name.to_owned(), weight));
        metrics.write(&LossTerms::new(start.start_step, terms).to_record())?;
        self.files = Some(Files { steps, metrics, events: EventWriter::create(&self.dir)? });
        Ok(())
    }

    fn on_log(&mut self, l: &LogLine<'_>) -> Result<()> {
        let terms = shown(l.terms.iter().map(|&(k, v)| (k.trim_end_matches("_loss"), v)));
        // tracing's levels are static per call site: one call site each.
        macro_rules! step_line {
            ($level:expr) => {
                tracing::event!(
                    $level,
                    step = l.step,
                    epoch = l.epoch,
                    lr = l.lr,
                    loss = format!("{:.4}", l.loss),
                    acc = format!("{:.3}", l.accuracy),
                    grad_norm = format!("{:.3}", l.grad_norm),
                    "step {terms}"
                )
            };
        }
        if l.announce {
            step_line!(tracing::Level::INFO);
        } else {
            step_line!(tracing::Level::DEBUG);
        }
        let Some(files) = &mut self.files else { return Ok(()) };
        let mut fields = vec![("step", l.step as f64), ("epoch", l.epoch as f64), ("lr", l.lr), ("loss", l.loss)];
        fields.extend(l.terms.iter().copied());
        fields.extend([("accuracy", l.accuracy), ("grad_norm", l.grad_norm), ("steps_averaged", l.steps_averaged as f64), ("elapsed_s", l.elapsed_s)]);
        files.steps.write(&record(&fields))?;
        let scalars = [("loss", l.loss)].into_iter().chain(l.terms.iter().copied()).chain([("accuracy", l.accuracy), ("grad_norm", l.grad_norm), ("lr", l.lr)]);
        for (tag, v) in scalars {
            files.events.scalar(&format!("train/{tag}"), l.step, v)?;
        }
        Ok(())
    }

    fn on_epoch(&mut self, l: &EpochLine<'_>) -> Result<()> {
        tracing::info!(
            epoch = l.epoch,
            train_loss = format!("{:.4}", l.train_loss),
            train_acc = format!("{:.4}", l.train_accuracy),
            "epoch done {}",
            shown(l.eval.iter().map(|(k, v)| (k.as_str(), *v)))
        );
        let Some(files) = &mut self.files else { return Ok(()) };
        let mut fields = vec![
            ("step", l.step as f64),
            ("epoch", l.epoch as f64),
            ("train_loss", l.train_loss),
            ("train_accuracy", l.train_accuracy),
            ("elapsed_s", l.elapsed_s),
        ];
        fields.extend(l.eval.iter().map(|(k, v)| (k.as_str(), *v)));
        files.metrics.write(&record(&fields))?;
        Ok(())
    }

    fn on_eval(&mut self, e: &Evaluation<'_>) -> Result<()> {
        tracing::info!(step = e.step, "eval {}", shown(e.metrics.iter().map(|(k, v)| (k.as_str(), *v))));
        let Some(files) = &mut self.files else { return Ok(()) };
        let mut fields = vec![("step", e.step as f64), ("epoch", e.epoch as f64)];
        fields.extend(e.metrics.iter().map(|(k, v)| (k.as_str(), *v)));
        let mut rec = record(&fields);
        rec.insert("kind".into(), "eval".into());
        files.metrics.write(&rec)?;
        for (k, v) in e.metrics {
            files.events.scalar(&format!("eval/{k}"), e.step, *v)?;
        }
        Ok(())
    }
}
