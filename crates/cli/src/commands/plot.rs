//! `facerec plot`: curves of several runs (or JSON-lines files with the same records) in one
//! figure, e.g. two runs' losses step by step, or facerec's against another trainer's.

use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::Args;

use facerec_eval::plot::{lines_figure, Legend};

pub const EXAMPLES: &str = "Examples:
  facerec plot runs/a runs/b --out losses.png                    # the runs' losses by step
  facerec plot runs/a runs/b --key lfw_accuracy --file metrics.jsonl --out acc.png
  facerec plot facerec=runs/x/steps.jsonl arcface_torch=ref.jsonl --out curves.png";

#[derive(Debug, Args)]
pub struct PlotArgs {
    /// Curves: run directories (their steps.jsonl, or --file) or JSON-lines files with a
    /// `step` and the key in each record, each optionally named `NAME=PATH` (default: the
    /// folder's or file's name).
    #[arg(required = true)]
    pub curves: Vec<String>,
    /// The record key to plot over `step`.
    #[arg(long, default_value = "loss")]
    pub key: String,
    /// The file of a run directory to read.
    #[arg(long, default_value = facerec_core::run_files::STEPS)]
    pub file: String,
    /// The figure's title [default: the key by step].
    #[arg(long)]
    pub title: Option<String>,
    /// The PNG to write.
    #[arg(long)]
    pub out: PathBuf,
}

pub fn run(args: PlotArgs) -> anyhow::Result<()> {
    let mut curves = Vec::new();
    for spec in &args.curves {
        let (name, path) = match spec.split_once('=') {
            Some((name, path)) => (name.to_owned(), PathBuf::from(path)),
            None => {
                let path = PathBuf::from(spec);
                let name = path.file_stem().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| spec.clone());
                (name, path)
            }
        };
        let file = if path.is_dir() { path.join(&args.file) } else { path };
        let records = facerec_core::metrics::read_records(&file).with_context(|| format!("reading {}", file.display()))?;
        let points: Vec<(f64, f64)> = records.iter().filter_map(|r| Some((r.get("step")?.as_f64()?, r.get(&args.key)?.as_f64()?))).collect();
        if points.is_empty() {
            bail!("{}: no record has both `step` and `{}`", file.display(), args.key);
        }
        curves.push((name, points));
    }
    let title = args.title.clone().unwrap_or_else(|| format!("{} by step", args.key));
    let mut figure = lines_figure(&title, "step", &args.key, false, &curves);
    figure.legend = Legend::Best;
    if let Some(dir) = args.out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    figure.draw(&args.out)?;
    println!("{}: {} curves of {}", args.out.display(), curves.len(), args.key);
    Ok(())
}
