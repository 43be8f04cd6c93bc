//! `facerec`: train and evaluate face recognition models with center loss (Wen et al., ECCV
//! 2016) on libtorch. Subcommands stay thin: parse, call the library crates, print.
//!
//! The binary's `main` is [`main`] here, so that a crate of your own can be `facerec` with
//! more backbones and losses: register them, then hand over (see `examples/custom-backbone`
//! and `docs/adding-a-backbone.md`):
//!
//! ```ignore
//! fn main() -> std::process::ExitCode {
//!     // facerec_model::register_backbone::<MyNetConfig>();
//!     // facerec_losses::register_loss::<MyLossConfig>();
//!     facerec::main()
//! }
//! ```

// Printing results is this binary's job.
#![allow(clippy::print_stdout)]

mod args;
mod commands;
mod faces;
mod logging;
mod outcome;
mod progress;

use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

/// Face recognition with center loss (Wen et al., ECCV 2016) on libtorch.
#[derive(Debug, Parser)]
#[command(name = "facerec", version, propagate_version = true, arg_required_else_help = true)]
#[command(after_help = "Examples:\n  facerec train configs/mnist_lenetpp_center.toml\n  \
    facerec summary runs/mnist_*\n  facerec detect --images data/lfw/images --out lfw_5pt.tsv\n  facerec info")]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Only warnings and errors on stderr, no progress bars.
    #[arg(short, long, global = true)]
    quiet: bool,
    /// More log output (-v debug, -vv trace).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Train a model from an experiment config (TOML).
    ///
    /// Exit codes: 0 trained to the end; 130 stopped by Ctrl-C after writing a checkpoint
    /// (continue with --resume; a second Ctrl-C exits at once, without one); 3 diverged (a
    /// non-finite loss, recorded in <run>/diverged.json); 1 any other error.
    #[command(after_help = commands::train::EXAMPLES)]
    Train(commands::train::TrainArgs),
    /// Run a command (train) as N data-parallel processes on this machine, torchrun-style.
    ///
    /// Ctrl-C reaches every rank once: they checkpoint and stop at the same step, and the launch
    /// exits with 130 (a second Ctrl-C stops them at once, without a checkpoint). When a rank
    /// fails, the others are stopped and the launch exits with 1.
    #[command(after_help = commands::launch::EXAMPLES)]
    Launch(commands::launch::LaunchArgs),
    /// Align a dataset's faces to crops (image files or a training cache), in parallel.
    #[command(after_help = commands::align::EXAMPLES)]
    Align(commands::align::AlignArgs),
    /// Compare the faces of two photos: same person or not.
    #[command(after_help = commands::compare::EXAMPLES)]
    Compare(commands::compare::CompareArgs),
    /// Convert identity folders or LFW pairs to insightface's RecordIO / .bin formats.
    #[command(after_help = commands::convert::EXAMPLES)]
    Convert(commands::convert::ConvertArgs),
    /// Compute embeddings of images with a trained backbone.
    #[command(after_help = commands::embed::EXAMPLES)]
    Embed(commands::embed::EmbedArgs),
    /// Evaluate a model on LFW (verification, ROC, identification).
    #[command(after_help = commands::eval::EXAMPLES)]
    Eval(commands::eval::EvalArgs),
    /// Export a trained backbone as an ONNX model (for onnxruntime), batch norms folded.
    #[command(after_help = commands::export::EXAMPLES)]
    Export(commands::export::ExportArgs),
    /// Make a facerec model file from a PyTorch checkpoint (torch.save) or safetensors weights.
    #[command(after_help = commands::import::EXAMPLES)]
    Import(commands::import::ImportArgs),
    /// Find faces with MTCNN and write their 5-point landmarks (one face per image).
    #[command(after_help = commands::detect::EXAMPLES)]
    Detect(commands::detect::DetectArgs),
    /// Print the results tables of runs (MNIST and face runs), listing unfinished ones.
    #[command(after_help = "Example:\n  facerec summary runs/mnist_lenetpp_softmax runs/mnist_lenetpp_center")]
    Summary(commands::summary::SummaryArgs),
    /// Draw curves of several runs (their losses, accuracies, ...) in one figure.
    #[command(after_help = commands::plot::EXAMPLES)]
    Plot(commands::plot::PlotArgs),
    /// Time training steps of a config's model on synthetic batches.
    #[command(after_help = commands::bench::EXAMPLES)]
    Bench(commands::bench::BenchArgs),
    /// Write a crate of your own that adds a backbone and a loss to facerec (a template to
    /// edit), ready to build and run anywhere on disk.
    #[command(after_help = commands::new_plugin::EXAMPLES)]
    NewPlugin(commands::new_plugin::NewPluginArgs),
    /// Show the device libtorch runs on, the libtorch loaded, and whether the data is in place.
    Info,
    /// Print a shell completion script.
    #[command(after_help = "Example (bash-completion loads it in new shells; mkdir -p the folder first):\n  \
        facerec completions bash > ~/.local/share/bash-completion/completions/facerec")]
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
}

/// The `facerec` command line: parses the arguments, runs the subcommand, and returns its exit
/// status. Backbones and losses registered before the call are available to every subcommand.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    // Ranks other than 0 of a data-parallel run log warnings and errors only.
    let quiet = cli.quiet
        || (matches!(cli.command, Command::Train(_))
            && facerec_dist::DistConfig::from_env().ok().flatten().is_some_and(|d| d.rank > 0));
    logging::init(quiet, cli.verbose);
    // Commands that run models keep freed tensor memory mapped (see facerec_ops::memory):
    // the same large blocks come back every step.
    if matches!(cli.command, Command::Train(_) | Command::Bench(_) | Command::Eval(_) | Command::Embed(_) | Command::Compare(_)) {
        let kept = facerec_ops::memory::keep_freed_memory();
        tracing::debug!(kept, "malloc keeps freed memory for reuse");
    }
    let result = match cli.command {
        Command::Train(args) => commands::train::run(args, quiet),
        Command::Launch(args) => commands::launch::run(args),
        Command::Align(args) => commands::align::run(args, cli.quiet),
        // Its verdict is its exit status (see outcome::EXIT_DIFFERENT).
        Command::Compare(args) => match commands::compare::run(args) {
            Ok(code) => return ExitCode::from(code),
            Err(e) => Err(e),
        },
        Command::Convert(args) => commands::convert::run(args, cli.quiet),
        Command::Embed(args) => commands::embed::run(args, cli.quiet),
        Command::Eval(args) => commands::eval::run(args, cli.quiet),
        Command::Detect(args) => commands::detect::run(args, cli.quiet),
        Command::Export(args) => commands::export::run(args),
        Command::Import(args) => commands::import::run(args),
        Command::Summary(args) => commands::summary::run(args),
        Command::Plot(args) => commands::plot::run(args),
        Command::Bench(args) => commands::bench::run(args),
        Command::NewPlugin(args) => commands::new_plugin::run(args),
        Command::Info => commands::info::run(),
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "facerec", &mut std::io::stdout());
            Ok(())
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let code = outcome::exit_code(&e);
            // An interrupted command has already said where it stopped and how to go on.
            if code != outcome::EXIT_INTERRUPTED {
                eprintln!("error: {e:#}");
            }
            ExitCode::from(code)
        }
    }
}
