//! `facerec summary`: the results table of finished runs.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use serde_json::Value;

#[derive(Debug, Args)]
pub struct SummaryArgs {
    /// Run directories (each with a report.json written by `facerec train`).
    #[arg(required = true)]
    pub runs: Vec<PathBuf>,
}

pub fn run(args: SummaryArgs) -> anyhow::Result<()> {
    let mut rows = Vec::new();
    for dir in &args.runs {
        let path = dir.join("report.json");
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("{}: no report (did `facerec train` finish for this run?)", path.display()))?;
        let r: Value = serde_json::from_str(&text).with_context(|| format!("{}: not valid JSON", path.display()))?;
        let num = |v: &Value| v.as_f64().unwrap_or(f64::NAN);
        rows.push([
            dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
            format!("{}", num(&r["lambda"])),
            format!("{:.2}", 100.0 * num(&r["test_accuracy"])),
            format!("{:.3}", num(&r["clusters"]["intra_to_mean"])),
            format!("{:.3}", num(&r["clusters"]["ratio"])),
            r["scatter_png"].as_str().unwrap_or("").to_owned(),
        ]);
    }
    let header = ["run", "lambda", "test acc %", "intra dist", "intra/inter", "scatter"];
    let widths: Vec<usize> =
        (0..header.len()).map(|i| rows.iter().map(|r| r[i].len()).chain([header[i].len()]).max().unwrap_or(0)).collect();
    let line = |cells: &[String]| {
        cells.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect::<Vec<_>>().join("  ").trim_end().to_owned()
    };
    println!("{}", line(&header.map(String::from)));
    println!("{}", widths.iter().map(|w| "-".repeat(*w)).collect::<Vec<_>>().join("  "));
    for r in &rows {
        println!("{}", line(r));
    }
    Ok(())
}
