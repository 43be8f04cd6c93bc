//! `facerec summary`: the results table of finished runs.
//!
//! MNIST runs (`report.json`) get test accuracy and cluster statistics; face runs
//! (`lfw_report.json`) get the LFW verification and identification numbers, and runs that
//! differ only in their seed are summarised as mean ± standard deviation over the seeds. Runs
//! without a report are listed with what became of them (diverged at a step, interrupted with
//! a checkpoint), so that one failed run never hides the others' results.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;
use facerec_eval::lfw::LfwReport;
use facerec_eval::open_set::OpenSetReport;
use facerec_experiment::report::{self, Diverged, MnistRunReport};
use facerec_experiment::{Config, RunDir};
use facerec_train::checkpoint;

#[derive(Debug, Args)]
pub struct SummaryArgs {
    /// Run directories (finished ones hold a report.json or lfw_report.json written by
    /// `facerec train`; the others are listed as diverged or unfinished).
    #[arg(required = true)]
    pub runs: Vec<PathBuf>,
}

pub fn run(args: SummaryArgs) -> anyhow::Result<()> {
    let mut mnist = Vec::new();
    let mut faces = Vec::new();
    let mut unfinished = Vec::new();
    for dir in &args.runs {
        let run = RunDir::new(dir);
        if run.mnist_report().is_file() {
            mnist.push(dir);
        } else if run.lfw_report().is_file() {
            faces.push(dir);
        } else {
            unfinished.push(vec![run_name(dir), unfinished_status(dir)?]);
        }
    }
    let mut tables = 0;
    if !mnist.is_empty() {
        mnist_table(&mnist)?;
        tables += 1;
    }
    if !faces.is_empty() {
        if tables > 0 {
            println!();
        }
        face_table(&faces)?;
        tables += 1;
    }
    if !unfinished.is_empty() {
        if tables > 0 {
            println!();
        }
        print_table(&["run without results", "status"], &unfinished);
    }
    Ok(())
}

/// What became of a run directory that has no report: diverged (and where), stopped with a
/// checkpoint, or not started.
fn unfinished_status(dir: &Path) -> anyhow::Result<String> {
    if !dir.is_dir() {
        return Ok("no such run directory".into());
    }
    if let Some(d) = report::read_json::<Diverged>(&RunDir::new(dir).diverged())? {
        return Ok(format!("diverged at step {}", d.step));
    }
    Ok(match checkpoint::list(dir).first() {
        Some((step, _)) => format!("unfinished: checkpoint at step {step} (continue with `facerec train --resume`)"),
        None => "unfinished: no checkpoint and no report".into(),
    })
}

fn run_name(dir: &Path) -> String {
    dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
}

fn mnist_table(runs: &[&PathBuf]) -> anyhow::Result<()> {
    let mut rows = Vec::new();
    for dir in runs {
        let path = RunDir::new(dir).mnist_report();
        let r: MnistRunReport = report::read_json(&path)?.with_context(|| format!("{}: no report", path.display()))?;
        rows.push(vec![
            run_name(dir),
            r.lambda.map(|l| l.to_string()).unwrap_or_else(|| "-".into()),
            format!("{:.2}", 100.0 * r.test_accuracy),
            format!("{:.3}", r.clusters.intra_to_mean),
            format!("{:.3}", r.clusters.ratio),
            r.scatter_png.display().to_string(),
        ]);
    }
    print_table(&["run", "lambda", "test acc %", "intra dist", "intra/inter", "scatter"], &rows);
    Ok(())
}

/// One face run's numbers, in percent.
struct FaceRow {
    name: String,
    /// The run's config without its seed: runs with the same key are seeds of one setting.
    key: String,
    lambda: f64,
    alpha: f64,
    seed: u64,
    /// LFW accuracy, AUC, TAR at FAR 1e-3, rank-1, and the open-set protocols' TAR at FAR 1e-4
    /// over all pairs and DIR at FAR 1 %.
    values: [Measure; 6],
    accuracy_std: f64,
}

impl FaceRow {
    /// The row of the run in `dir`, from its `lfw_report.json` and `config.toml`.
    fn read(dir: &Path) -> anyhow::Result<FaceRow> {
        let run = RunDir::new(dir);
        let report: LfwReport =
            report::read_json(&run.lfw_report())?.with_context(|| format!("{}: no report", run.lfw_report().display()))?;
        let config_path = run.config();
        let config = Config::load(&config_path, &[])?;
        let mut keyed = config.clone();
        keyed.seed = 0;
        keyed.description.clear();
        let v = &report.verification;
        Ok(FaceRow {
            name: run_name(dir),
            key: toml::to_string(&keyed).with_context(|| format!("{}: serialising the config", config_path.display()))?,
            lambda: config.loss.setting("lambda").and_then(toml::Value::as_float).unwrap_or(f64::NAN),
            alpha: config.loss.setting("alpha").and_then(toml::Value::as_float).unwrap_or(f64::NAN),
            seed: config.seed,
            values: [
                Measure::Percent(100.0 * v.accuracy_mean),
                Measure::Percent(100.0 * v.auc),
                v.resolved_tar(1e-3).map_or(Measure::NotResolved, |t| Measure::Percent(100.0 * t)),
                report.identification.as_ref().map_or(Measure::NotMeasured, |i| Measure::Percent(100.0 * i.rank1)),
                open_set_measure(report.open_set.as_ref(), |o| o.tar(1e-4)),
                open_set_measure(report.open_set.as_ref(), |o| o.dir(1e-2)),
            ],
            accuracy_std: 100.0 * v.accuracy_std,
        })
    }

    /// The row's cells under [`FACE_HEADER`].
    fn cells(&self) -> Vec<String> {
        vec![
            self.name.clone(),
            setting_cell(self.lambda),
            setting_cell(self.alpha),
            self.seed.to_string(),
            match self.values[0] {
                Measure::Percent(acc) => format!("{acc:.2} ± {:.2}", self.accuracy_std),
                other => other.cell(),
            },
            self.values[1].cell(),
            self.values[2].cell(),
            self.values[3].cell(),
            self.values[4].cell(),
            self.values[5].cell(),
        ]
    }
}

/// A number of the open-set protocols: not measured without them, not resolved where the
/// impostors cannot resolve its FAR.
fn open_set_measure(report: Option<&OpenSetReport>, rate: impl Fn(&OpenSetReport) -> Option<f64>) -> Measure {
    match report {
        None => Measure::NotMeasured,
        Some(o) => rate(o).map_or(Measure::NotResolved, |v| Measure::Percent(100.0 * v)),
    }
}

/// A number of a face report as the tables show it: a percentage, or what the report says
/// instead of one (never NaN).
#[derive(Debug, Clone, Copy, PartialEq)]
enum Measure {
    Percent(f64),
    /// A TAR at a FAR below what the report's different-person pairs can measure.
    NotResolved,
    /// Not in the report (identification was not asked for).
    NotMeasured,
}

impl Measure {
    fn cell(self) -> String {
        match self {
            Measure::Percent(v) if v.is_finite() => format!("{v:.2}"),
            Measure::Percent(_) | Measure::NotMeasured => "-".into(),
            Measure::NotResolved => "not resolved".into(),
        }
    }

    /// Mean ± sample standard deviation over seeds; what the runs say instead when any of
    /// them has no number (an average of the runs that have one would hide the others).
    fn over_seeds(group: &[Measure]) -> String {
        let values: Option<Vec<f64>> = group.iter().map(|m| if let Measure::Percent(v) = m { Some(*v) } else { None }).collect();
        match values {
            Some(v) => {
                let (m, s) = mean_std(v.into_iter());
                format!("{m:.2} ± {s:.2}")
            }
            None if group.contains(&Measure::NotResolved) => "not resolved".into(),
            None => "-".into(),
        }
    }
}

/// A loss setting's cell: `-` where the run's loss has no such key (softmax; caffe-face's
/// center update has no alpha).
fn setting_cell(value: f64) -> String {
    if value.is_nan() {
        "-".into()
    } else {
        format!("{value}")
    }
}

/// The columns of both face tables.
const FACE_HEADER: [&str; 10] = [
    "run",
    "lambda",
    "alpha",
    "seed",
    "LFW acc %",
    "AUC %",
    "TAR@FAR=1e-3 %",
    "rank-1 %",
    "open-set TAR@FAR=1e-4 %",
    "DIR@FAR=1% %",
];

fn face_table(runs: &[&PathBuf]) -> anyhow::Result<()> {
    let rows = runs.iter().map(|dir| FaceRow::read(dir)).collect::<anyhow::Result<Vec<_>>>()?;
    print_table(&FACE_HEADER, &rows.iter().map(FaceRow::cells).collect::<Vec<_>>());

    // Settings run with several seeds: mean ± sample standard deviation over the seeds.
    let multi: Vec<_> = seed_groups(&rows).into_iter().filter(|g| g.len() > 1).collect();
    if multi.is_empty() {
        return Ok(());
    }
    println!("\nover seeds (mean ± sample std; the fold std of each run is in the table above):");
    print_table(&FACE_HEADER, &multi.iter().map(|g| seed_cells(g)).collect::<Vec<_>>());
    Ok(())
}

/// The rows grouped by setting (their config without the seed), in the order of each
/// setting's first row.
fn seed_groups(rows: &[FaceRow]) -> Vec<Vec<&FaceRow>> {
    let mut groups: Vec<(&str, Vec<&FaceRow>)> = Vec::new();
    for r in rows {
        match groups.iter_mut().find(|(k, _)| *k == r.key) {
            Some((_, g)) => g.push(r),
            None => groups.push((&r.key, vec![r])),
        }
    }
    groups.into_iter().map(|(_, g)| g).collect()
}

/// The cells of a setting run with several seeds: its name without the seed, and the mean ±
/// sample standard deviation of each number.
fn seed_cells(group: &[&FaceRow]) -> Vec<String> {
    let mut cells = vec![
        group[0].name.trim_end_matches(|c: char| c.is_ascii_digit() || c == '_').trim_end_matches("_seed").to_owned(),
        setting_cell(group[0].lambda),
        setting_cell(group[0].alpha),
        format!("{} seeds", group.len()),
    ];
    for i in 0..6 {
        cells.push(Measure::over_seeds(&group.iter().map(|r| r.values[i]).collect::<Vec<_>>()));
    }
    cells
}

fn mean_std(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let v: Vec<f64> = values.collect();
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    let var = if v.len() > 1 { v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0) } else { 0.0 };
    (mean, var.sqrt())
}

fn print_table(header: &[&str], rows: &[Vec<String>]) {
    let widths: Vec<usize> = (0..header.len())
        .map(|i| rows.iter().map(|r| r[i].chars().count()).chain([header[i].chars().count()]).max().unwrap_or(0))
        .collect();
    let line = |cells: &[String]| {
        cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c}{}", " ".repeat(w - c.chars().count())))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_owned()
    };
    println!("{}", line(&header.iter().map(|h| h.to_string()).collect::<Vec<_>>()));
    println!("{}", widths.iter().map(|w| "-".repeat(*w)).collect::<Vec<_>>().join("  "));
    for r in rows {
        println!("{}", line(r));
    }
}
