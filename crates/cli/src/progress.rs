//! Progress bars drawn by tracing-indicatif, so that log lines never tear them.

use tracing_indicatif::span_ext::IndicatifSpanExt;

/// A progress bar over `len` items (nothing when quiet).
pub struct Bar {
    span: Option<tracing::Span>,
}

impl Bar {
    pub fn new(name: &'static str, len: u64, quiet: bool) -> Self {
        let span = (!quiet).then(|| {
            let span = tracing::info_span!("progress", task = name);
            span.pb_set_style(&style("{msg} [{elapsed_precise}] {wide_bar:.cyan/blue} {pos}/{len}, eta {eta}"));
            span.pb_set_length(len);
            span.pb_set_message(name);
            span.pb_start();
            span
        });
        Bar { span }
    }

    /// A counter without a known end.
    pub fn counter(name: &'static str, quiet: bool) -> Self {
        let span = (!quiet).then(|| {
            let span = tracing::info_span!("progress", task = name);
            span.pb_set_style(&style("{msg} [{elapsed_precise}] {pos} done ({per_sec})"));
            span.pb_set_message(name);
            span.pb_start();
            span
        });
        Bar { span }
    }

    pub fn inc(&self, n: u64) {
        if let Some(s) = &self.span {
            s.pb_inc(n);
        }
    }

    pub fn set_position(&self, pos: u64) {
        if let Some(s) = &self.span {
            s.pb_set_position(pos);
        }
    }

    pub fn set_message(&self, msg: &str) {
        if let Some(s) = &self.span {
            s.pb_set_message(msg);
        }
    }
}

fn style(template: &str) -> indicatif::ProgressStyle {
    indicatif::ProgressStyle::with_template(template).unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
}
