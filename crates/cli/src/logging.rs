//! Logs to stderr through `tracing`, with progress bars (tracing-indicatif) that log lines do
//! not tear. `RUST_LOG` overrides the level.

use tracing_indicatif::IndicatifLayer;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::EnvFilter;

pub fn init(quiet: bool, verbose: u8) {
    let level = match (quiet, verbose) {
        (true, _) => "warn",
        (false, 0) => "info",
        (false, 1) => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    let indicatif = IndicatifLayer::new().with_max_progress_bars(4, None);
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(indicatif.get_stderr_writer())
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .compact();
    let registry = tracing_subscriber::registry().with(filter).with(fmt);
    if quiet {
        registry.init();
    } else {
        registry.with(indicatif).init();
    }
}
