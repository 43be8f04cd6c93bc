//! PNG plots with plotters (bitmap backend, DejaVu Sans embedded so that no system font is
//! needed): the 2-D feature scatter of the paper's Fig. 2/3, ROC curves and score histograms.

use std::path::Path;
use std::sync::Once;

use plotters::prelude::*;
use plotters::style::FontStyle;

use crate::error::{EvalError, Result};

static FONT: Once = Once::new();

fn register_font() {
    FONT.call_once(|| {
        // The embedded font is valid TrueType; registration cannot fail for it.
        let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, dejavu::sans::regular());
    });
}

/// Ten distinguishable colours (matplotlib's tab10), repeated for more classes.
pub fn class_colour(class: usize) -> RGBColor {
    const TAB10: [(u8, u8, u8); 10] = [
        (31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
        (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207),
    ];
    let (r, g, b) = TAB10[class % 10];
    RGBColor(r, g, b)
}

fn plot_err(path: &Path, e: impl std::fmt::Display) -> EvalError {
    EvalError::Plot { path: path.to_path_buf(), msg: e.to_string() }
}

fn bounds(values: impl Iterator<Item = f32>) -> (f32, f32) {
    let (lo, hi) = values.filter(|v| v.is_finite()).fold((f32::MAX, f32::MIN), |(lo, hi), v| (lo.min(v), hi.max(v)));
    if lo > hi {
        return (-1.0, 1.0);
    }
    let pad = ((hi - lo) * 0.05).max(1e-3);
    (lo - pad, hi + pad)
}

/// Scatter of 2-D features coloured by class, with `centers` (if any) as black crosses.
pub fn scatter_2d(
    path: &Path,
    title: &str,
    points: &[(f32, f32)],
    labels: &[i64],
    centers: Option<&[(f32, f32)]>,
) -> Result<()> {
    register_font();
    let root = BitMapBackend::new(path, (900, 900)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| plot_err(path, e))?;
    let all = || points.iter().chain(centers.unwrap_or(&[]));
    let (x0, x1) = bounds(all().map(|p| p.0));
    let (y0, y1) = bounds(all().map(|p| p.1));
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 24))
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(x0..x1, y0..y1)
        .map_err(|e| plot_err(path, e))?;
    chart.configure_mesh().disable_mesh().label_style(("sans-serif", 14)).draw().map_err(|e| plot_err(path, e))?;
    let classes = labels.iter().copied().max().unwrap_or(0).max(0) as usize + 1;
    for c in 0..classes {
        let colour = class_colour(c);
        let pts = points.iter().zip(labels).filter(|(_, &l)| l == c as i64).map(|(p, _)| *p);
        chart
            .draw_series(pts.map(|p| Circle::new(p, 1, colour.mix(0.6).filled())))
            .map_err(|e| plot_err(path, e))?
            .label(format!("{c}"))
            .legend(move |(x, y)| Circle::new((x, y), 5, colour.filled()));
    }
    if let Some(centers) = centers {
        chart
            .draw_series(centers.iter().map(|&p| Cross::new(p, 8, BLACK.stroke_width(3))))
            .map_err(|e| plot_err(path, e))?
            .label("centers")
            .legend(|(x, y)| Cross::new((x, y), 6, BLACK.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .label_font(("sans-serif", 14))
        .position(SeriesLabelPosition::UpperRight)
        .draw()
        .map_err(|e| plot_err(path, e))?;
    root.present().map_err(|e| plot_err(path, e))?;
    Ok(())
}

/// Line plot of several named curves (ROC curves, loss curves).
pub fn lines(
    path: &Path,
    title: &str,
    x_label: &str,
    y_label: &str,
    log_x: bool,
    curves: &[(String, Vec<(f64, f64)>)],
) -> Result<()> {
    register_font();
    let root = BitMapBackend::new(path, (900, 650)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| plot_err(path, e))?;
    let xs = || curves.iter().flat_map(|(_, c)| c.iter().map(|p| p.0)).filter(|x| !log_x || *x > 0.0);
    let ys = || curves.iter().flat_map(|(_, c)| c.iter().map(|p| p.1));
    let (x0, x1) = bounds(xs().map(|v| v as f32));
    let (y0, y1) = bounds(ys().map(|v| v as f32));
    let mut builder = ChartBuilder::on(&root);
    builder.caption(title, ("sans-serif", 24)).margin(15).x_label_area_size(45).y_label_area_size(65);
    macro_rules! draw {
        ($chart:expr) => {{
            let mut chart = $chart;
            chart
                .configure_mesh()
                .x_desc(x_label)
                .y_desc(y_label)
                .label_style(("sans-serif", 14))
                .draw()
                .map_err(|e| plot_err(path, e))?;
            for (i, (name, pts)) in curves.iter().enumerate() {
                let colour = class_colour(i);
                let pts: Vec<(f64, f64)> = pts.iter().copied().filter(|p| !log_x || p.0 > 0.0).collect();
                chart
                    .draw_series(LineSeries::new(pts, colour.stroke_width(2)))
                    .map_err(|e| plot_err(path, e))?
                    .label(name.clone())
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], colour.stroke_width(2)));
            }
            chart
                .configure_series_labels()
                .background_style(WHITE.mix(0.8))
                .border_style(BLACK)
                .label_font(("sans-serif", 14))
                .position(SeriesLabelPosition::LowerRight)
                .draw()
                .map_err(|e| plot_err(path, e))?;
        }};
    }
    if log_x {
        let lo = (x0 as f64).max(1e-6);
        let chart = builder
            .build_cartesian_2d((lo..(x1 as f64).max(lo * 10.0)).log_scale(), (y0 as f64)..(y1 as f64))
            .map_err(|e| plot_err(path, e))?;
        draw!(chart);
    } else {
        let chart = builder.build_cartesian_2d((x0 as f64)..(x1 as f64), (y0 as f64)..(y1 as f64)).map_err(|e| plot_err(path, e))?;
        draw!(chart);
    }
    root.present().map_err(|e| plot_err(path, e))?;
    Ok(())
}

/// Overlaid histograms of named score sets (same-person vs different-person scores).
pub fn histograms(path: &Path, title: &str, x_label: &str, sets: &[(String, Vec<f64>)], bins: usize) -> Result<()> {
    let (lo, hi) = bounds(sets.iter().flat_map(|(_, v)| v.iter().map(|&x| x as f32)));
    let (lo, hi) = (lo as f64, hi as f64);
    let width = (hi - lo) / bins as f64;
    let curves: Vec<(String, Vec<(f64, f64)>)> = sets
        .iter()
        .map(|(name, values)| {
            let mut counts = vec![0usize; bins];
            for &v in values {
                let b = (((v - lo) / width) as usize).min(bins - 1);
                counts[b] += 1;
            }
            let total = values.len().max(1) as f64;
            let pts = counts
                .iter()
                .enumerate()
                .flat_map(|(i, &c)| {
                    let (a, b) = (lo + i as f64 * width, lo + (i + 1) as f64 * width);
                    let h = c as f64 / total;
                    [(a, h), (b, h)]
                })
                .collect();
            (name.clone(), pts)
        })
        .collect();
    lines(path, title, x_label, "fraction of pairs", false, &curves)
}

/// `training.png` (losses over steps, from `steps.jsonl`) and `evaluation.png` (each evaluation
/// metric that is an accuracy over steps, from `metrics.jsonl`) in a run directory. Returns the
/// files written.
pub fn training_curves(run_dir: &Path) -> Result<Vec<std::path::PathBuf>> {
    use facerec_train::metrics::read_records;
    let mut written = Vec::new();
    let steps_path = run_dir.join("steps.jsonl");
    if steps_path.exists() {
        let records = read_records(&steps_path)?;
        let series = |key: &str| -> Vec<(f64, f64)> {
            records.iter().filter_map(|r| Some((r.get("step")?.as_f64()?, r.get(key)?.as_f64()?))).collect()
        };
        let mut curves = vec![("loss".to_owned(), series("loss")), ("softmax loss".to_owned(), series("softmax_loss"))];
        let center = series("center_loss");
        if center.iter().any(|p| p.1 != 0.0) {
            curves.push(("center loss".to_owned(), center));
        }
        let path = run_dir.join("training.png");
        lines(&path, "training losses", "step", "loss", false, &curves)?;
        written.push(path);
    }
    let metrics_path = run_dir.join("metrics.jsonl");
    if metrics_path.exists() {
        let records: Vec<_> = read_records(&metrics_path)?
            .into_iter()
            .filter(|r| r.get("kind").and_then(|k| k.as_str()) == Some("eval"))
            .collect();
        let keys: std::collections::BTreeSet<String> =
            records.iter().flat_map(|r| r.keys().filter(|k| k.contains("accuracy") && !k.ends_with("_std")).cloned()).collect();
        let curves: Vec<(String, Vec<(f64, f64)>)> = keys
            .iter()
            .map(|k| (k.clone(), records.iter().filter_map(|r| Some((r.get("step")?.as_f64()?, r.get(k)?.as_f64()?))).collect()))
            .collect();
        if curves.iter().any(|c| !c.1.is_empty()) {
            let path = run_dir.join("evaluation.png");
            lines(&path, "evaluation during training", "step", "accuracy", false, &curves)?;
            written.push(path);
        }
    }
    Ok(written)
}
