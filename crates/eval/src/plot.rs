//! PNG plots with plotters (bitmap backend, DejaVu Sans embedded so that no system font is
//! needed): the 2-D feature scatter of the paper's Fig. 2/3, ROC curves, score histograms and
//! training curves.
//!
//! Every plot is first described by a [`Figure`] (its series with their names, colours and
//! points, the axis ranges): [`Figure::draw`] draws exactly that, and tests read it to check what
//! a plot shows without looking at pixels.

use facerec_core::metrics::LossTerms;
use facerec_core::run_files;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Once;

use plotters::coord::ranged1d::{DefaultFormatting, DiscreteRanged, KeyPointHint, SegmentValue, ValueFormatter};
use plotters::coord::types::RangedCoordf64;
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

/// Opacity of scatter dots (dense clusters stay readable).
pub const DOT_OPACITY: f64 = 0.6;
/// Opacity of histogram bars (two overlaid sets stay visible).
pub const BAR_OPACITY: f64 = 0.5;
/// Opacity of the raw values under a smoothed curve ([`Marks::Faint`]).
pub const FAINT_OPACITY: f64 = 0.25;
/// Width in pixels of an ordinary curve; an emphasised one (the total loss) is drawn wider.
pub const LINE_WIDTH: u32 = 2;
/// Width in pixels of the total loss in `training.png`, drawn under the thinner curves of its
/// parts so that it shows on both sides of them.
pub const TOTAL_WIDTH: u32 = 3 * LINE_WIDTH;
/// Radius in pixels of the markers of a [`Marks::Line`] with `markers` (one point shows too).
pub const MARKER_RADIUS: u32 = 4;

/// The x axis of a figure.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum XAxis {
    Linear,
    Log,
    /// `n` equal bins over the x range, for [`Marks::Bars`].
    Bins(usize),
}

/// Where the legend goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Legend {
    UpperRight,
    MiddleRight,
    LowerRight,
    /// The corner (or edge middle) where the legend's box covers the fewest data points, as
    /// matplotlib's `loc="best"`: for curves whose end could be anywhere.
    Best,
}

/// The places [`Legend::Best`] tries, in order of preference (the first of equals wins), as
/// the fractions of the plot area its box starts at: `(x, y)` of the box's left and top edges
/// measured from the left and from the top, each a weight of the room the box leaves.
const LEGEND_PLACES: [(SeriesLabelPosition, f64, f64); 8] = [
    (SeriesLabelPosition::UpperRight, 1.0, 0.0),
    (SeriesLabelPosition::UpperLeft, 0.0, 0.0),
    (SeriesLabelPosition::LowerRight, 1.0, 1.0),
    (SeriesLabelPosition::LowerLeft, 0.0, 1.0),
    (SeriesLabelPosition::MiddleRight, 1.0, 0.5),
    (SeriesLabelPosition::MiddleLeft, 0.0, 0.5),
    (SeriesLabelPosition::UpperMiddle, 0.5, 0.0),
    (SeriesLabelPosition::LowerMiddle, 0.5, 1.0),
];

/// How one series is drawn, with its data.
#[derive(Debug, Clone, PartialEq)]
pub enum Marks {
    /// Filled dots of radius 1 at [`DOT_OPACITY`] (a scatter of features).
    Dots(Vec<(f64, f64)>),
    /// Crosses 3 pixels wide (learned class centers).
    Crosses(Vec<(f64, f64)>),
    /// A polyline `width` pixels wide, with a filled circle of [`MARKER_RADIUS`] on each point
    /// when `markers` is set (so that a series of one point shows).
    Line { points: Vec<(f64, f64)>, width: u32, markers: bool },
    /// Dots of radius 2 at [`FAINT_OPACITY`], left out of the legend: the raw values under a
    /// smoothed curve of the same colour.
    Faint(Vec<(f64, f64)>),
    /// A histogram of `values` on the figure's bins, binned by plotters (`Histogram`) when drawn;
    /// `fractions[i]` is the share of the values in bin `i` as plotters bins them.
    Bars { values: Vec<f64>, fractions: Vec<f64> },
}

/// One named, coloured series.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub name: String,
    pub colour: RGBColor,
    pub marks: Marks,
}

impl Series {
    /// Number of points (or of values, for a histogram).
    pub fn len(&self) -> usize {
        match &self.marks {
            Marks::Dots(p) | Marks::Crosses(p) | Marks::Faint(p) | Marks::Line { points: p, .. } => p.len(),
            Marks::Bars { values, .. } => values.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The points of a dot, cross or line series (none for a histogram).
    pub fn points(&self) -> &[(f64, f64)] {
        match &self.marks {
            Marks::Dots(p) | Marks::Crosses(p) | Marks::Faint(p) | Marks::Line { points: p, .. } => p,
            Marks::Bars { .. } => &[],
        }
    }
}

/// Everything a plot shows.
#[derive(Debug, Clone, PartialEq)]
pub struct Figure {
    pub title: String,
    /// Width and height in pixels.
    pub size: (u32, u32),
    pub x_label: String,
    pub y_label: String,
    pub x_axis: XAxis,
    /// `(low, high)` of each axis.
    pub x_range: (f64, f64),
    /// Where a linear x axis has its ticks and labels, when not where plotters puts them (whole
    /// numbers for steps: see [`integer_ticks`]).
    pub x_ticks: Option<Vec<f64>>,
    pub y_range: (f64, f64),
    pub legend: Legend,
    pub series: Vec<Series>,
}

fn plot_err(path: &Path, e: impl std::fmt::Display) -> EvalError {
    EvalError::Plot { path: path.to_path_buf(), msg: e.to_string() }
}

/// The finite range of `values`, widened by 5 % on each side (or `(-1, 1)` when there is none).
fn bounds(values: impl Iterator<Item = f64>) -> (f64, f64) {
    padded_bounds(values, 1e-3)
}

/// [`bounds`] with at least `min_pad` on each side.
fn padded_bounds(values: impl Iterator<Item = f64>, min_pad: f64) -> (f64, f64) {
    let (lo, hi) = values.filter(|v| v.is_finite()).fold((f64::MAX, f64::MIN), |(lo, hi), v| (lo.min(v), hi.max(v)));
    if lo > hi {
        return (-1.0, 1.0);
    }
    let pad = ((hi - lo) * 0.05).max(min_pad);
    (lo - pad, hi + pad)
}

/// Ticks on whole numbers in `lo..=hi`, 1, 2 or 5 times a power of ten apart, at most 10 of them
/// (the x axis of step counts: no tick at step 1.5).
pub fn integer_ticks(lo: f64, hi: f64) -> Vec<f64> {
    if !(lo.is_finite() && hi.is_finite()) || hi < lo {
        return Vec::new();
    }
    let (first, last) = (lo.ceil(), hi.floor());
    let mut step = 1.0f64;
    'search: loop {
        for m in [1.0, 2.0, 5.0] {
            let s = step * m;
            if ((last / s).floor() - (first / s).ceil()) < 10.0 {
                step = s;
                break 'search;
            }
        }
        step *= 10.0;
    }
    let mut ticks = Vec::new();
    let mut k = (first / step).ceil();
    while k * step <= last {
        ticks.push(k * step + 0.0); // -0 is 0 (a label "-0" otherwise)
        k += 1.0;
    }
    ticks
}

/// Exponential moving average of the `y` of `points` with span `span` points (weight
/// `w = 1 - 2 / (span + 1)`), without the start-up bias: point `t` is
/// `sum_i w^i y[t-i] / sum_i w^i` (pandas' `ewm(span=span, adjust=True).mean()`). Span 1 gives
/// the points back.
pub fn ema(points: &[(f64, f64)], span: f64) -> Vec<(f64, f64)> {
    let w = 1.0 - 2.0 / (span.max(1.0) + 1.0);
    let (mut num, mut den) = (0.0, 0.0);
    points
        .iter()
        .map(|&(x, y)| {
            num = w * num + y;
            den = w * den + 1.0;
            (x, num / den)
        })
        .collect()
}

/// [`ema`] forwards and then backwards over the result: the backward pass undoes the forward
/// pass's lag (about `span / 2` points behind), so the line runs through the points instead of
/// trailing them (as scipy's `filtfilt` does for a filter).
pub fn ema_centred(points: &[(f64, f64)], span: f64) -> Vec<(f64, f64)> {
    let forward = ema(points, span);
    let mut backward = ema(&forward.into_iter().rev().collect::<Vec<_>>(), span);
    backward.reverse();
    backward
}

/// The span of [`ema`] for `n` logged points: a 25th of them (about 10 lines of the usual 250),
/// at least 1 (no smoothing of a handful).
pub fn smoothing_span(n: usize) -> f64 {
    (n as f64 / 25.0).max(1.0)
}

/// The bins of a histogram over `lo..hi`, as plotters' discrete coordinate: grid points
/// `lo + k * width` for `k` in `0..bins`, a value falling into the last grid point at or below
/// it (values at or above the last one into the last bin, values below `lo` into none). The
/// range ends half a bin after the last grid point so that rounding cannot add a point.
fn bin_coord(lo: f64, hi: f64, bins: usize) -> impl DiscreteRanged<ValueType = f64> + ValueFormatter<f64> + Clone {
    let width = (hi - lo) / bins as f64;
    (lo..lo + (bins as f64 - 0.5) * width).step(width).use_floor()
}

/// The share of `values` in each bin of [`bin_coord`] (NaN and infinite values are left out).
fn bin_fractions(values: &[f64], lo: f64, hi: f64, bins: usize) -> Vec<f64> {
    let coord = bin_coord(lo, hi, bins);
    let mut counts = vec![0usize; coord.size()];
    for v in values.iter().filter(|v| v.is_finite()) {
        if let Some(i) = coord.index_of(v) {
            counts[i] += 1;
        }
    }
    let total = values.len().max(1) as f64;
    counts.into_iter().map(|c| c as f64 / total).collect()
}

/// Scatter of 2-D features, one series and colour per class present in `labels` (in label
/// order, coloured with [`class_colour`] of the label), and `centers` (if any) as black crosses.
pub fn scatter_2d_figure(title: &str, points: &[(f32, f32)], labels: &[i64], centers: Option<&[(f32, f32)]>) -> Figure {
    let wide = |p: &(f32, f32)| (f64::from(p.0), f64::from(p.1));
    let all = || points.iter().chain(centers.unwrap_or(&[])).map(wide);
    let classes: BTreeSet<i64> = labels.iter().copied().collect();
    let mut series: Vec<Series> = classes
        .iter()
        .map(|&c| Series {
            name: c.to_string(),
            colour: class_colour(c.max(0) as usize),
            marks: Marks::Dots(points.iter().zip(labels).filter(|(_, &l)| l == c).map(|(p, _)| wide(p)).collect()),
        })
        .collect();
    if let Some(centers) = centers {
        series.push(Series { name: "centers".into(), colour: BLACK, marks: Marks::Crosses(centers.iter().map(wide).collect()) });
    }
    Figure {
        title: title.to_owned(),
        size: (900, 900),
        x_label: String::new(),
        y_label: String::new(),
        x_axis: XAxis::Linear,
        x_range: bounds(all().map(|p| p.0)),
        x_ticks: None,
        y_range: bounds(all().map(|p| p.1)),
        legend: Legend::UpperRight,
        series,
    }
}

/// Scatter of 2-D features coloured by class, with `centers` (if any) as black crosses.
pub fn scatter_2d(path: &Path, title: &str, points: &[(f32, f32)], labels: &[i64], centers: Option<&[(f32, f32)]>) -> Result<()> {
    scatter_2d_figure(title, points, labels, centers).draw(path)
}

/// Several named curves (ROC curves, loss curves), coloured by position; on a log x axis the
/// points with x <= 0 are left out.
pub fn lines_figure(title: &str, x_label: &str, y_label: &str, log_x: bool, curves: &[(String, Vec<(f64, f64)>)]) -> Figure {
    let series: Vec<Series> = curves
        .iter()
        .enumerate()
        .map(|(i, (name, pts))| Series {
            name: name.clone(),
            colour: class_colour(i),
            marks: Marks::Line {
                points: pts.iter().copied().filter(|p| !log_x || p.0 > 0.0).collect(),
                width: LINE_WIDTH,
                markers: false,
            },
        })
        .collect();
    let (x0, x1) = bounds(series.iter().flat_map(|s| s.points().iter().map(|p| p.0)));
    let x_range = if log_x {
        let lo = x0.max(1e-6);
        (lo, x1.max(lo * 10.0))
    } else {
        (x0, x1)
    };
    Figure {
        title: title.to_owned(),
        size: (900, 650),
        x_label: x_label.to_owned(),
        y_label: y_label.to_owned(),
        x_axis: if log_x { XAxis::Log } else { XAxis::Linear },
        x_range,
        x_ticks: None,
        y_range: bounds(series.iter().flat_map(|s| s.points().iter().map(|p| p.1))),
        legend: Legend::LowerRight,
        series,
    }
}

/// Line plot of several named curves (ROC curves, loss curves).
pub fn lines(path: &Path, title: &str, x_label: &str, y_label: &str, log_x: bool, curves: &[(String, Vec<(f64, f64)>)]) -> Result<()> {
    lines_figure(title, x_label, y_label, log_x, curves).draw(path)
}

/// Overlaid histograms of named value sets (same-person vs different-person scores) on `bins`
/// common bins, each bar the fraction of its set.
pub fn histogram_figure(title: &str, x_label: &str, sets: &[(String, Vec<f64>)], bins: usize) -> Figure {
    let bins = bins.max(1);
    let (lo, hi) = bounds(sets.iter().flat_map(|(_, v)| v.iter().copied()));
    let series: Vec<Series> = sets
        .iter()
        .enumerate()
        .map(|(i, (name, values))| Series {
            name: name.clone(),
            colour: class_colour(i),
            marks: Marks::Bars { values: values.clone(), fractions: bin_fractions(values, lo, hi, bins) },
        })
        .collect();
    let top = series
        .iter()
        .flat_map(|s| match &s.marks {
            Marks::Bars { fractions, .. } => fractions.clone(),
            _ => Vec::new(),
        })
        .fold(0.0f64, f64::max);
    Figure {
        title: title.to_owned(),
        size: (900, 650),
        x_label: x_label.to_owned(),
        y_label: "fraction of pairs".to_owned(),
        x_axis: XAxis::Bins(bins),
        x_range: (lo, hi),
        x_ticks: None,
        y_range: (0.0, if top > 0.0 { top * 1.05 } else { 1.0 }),
        legend: Legend::UpperRight,
        series,
    }
}

/// Overlaid histograms of named score sets (same-person vs different-person scores).
pub fn histograms(path: &Path, title: &str, x_label: &str, sets: &[(String, Vec<f64>)], bins: usize) -> Result<()> {
    histogram_figure(title, x_label, sets, bins).draw(path)
}

impl Figure {
    /// Where the legend is drawn; [`Legend::Best`] resolved on the data.
    pub fn legend_position(&self) -> SeriesLabelPosition {
        match self.legend {
            Legend::UpperRight => SeriesLabelPosition::UpperRight,
            Legend::MiddleRight => SeriesLabelPosition::MiddleRight,
            Legend::LowerRight => SeriesLabelPosition::LowerRight,
            Legend::Best => {
                let covered: Vec<usize> = LEGEND_PLACES.iter().map(|&(_, fx, fy)| self.points_under_legend(fx, fy)).collect();
                let best = covered.iter().enumerate().min_by_key(|&(i, n)| (*n, i)).map_or(0, |(i, _)| i);
                LEGEND_PLACES[best].0.clone()
            }
        }
    }

    /// How many data points (and midpoints of line segments, so that a line crossing the box
    /// counts) lie under the legend's box placed at `(fx, fy)` (see [`LEGEND_PLACES`]). The box's
    /// size is estimated from the entries and their labels as [`draw_legend`] draws them: rows of
    /// about 20 pixels, 7 pixels a character and 40 for the sample, in a plot area of the
    /// figure's size less its margins and label areas.
    pub fn points_under_legend(&self, fx: f64, fy: f64) -> usize {
        let entries: Vec<&Series> = self.series.iter().filter(|s| !matches!(s.marks, Marks::Faint(_))).collect();
        let widest = entries.iter().map(|s| s.name.chars().count()).max().unwrap_or(0) as f64;
        let (plot_w, plot_h) = ((self.size.0 as f64 - 95.0).max(1.0), (self.size.1 as f64 - 100.0).max(1.0));
        let (w, h) = (((widest * 7.0 + 50.0) / plot_w).min(1.0), ((entries.len() as f64 * 20.0 + 12.0) / plot_h).min(1.0));
        let (left, top) = (fx * (1.0 - w), fy * (1.0 - h));
        let x_frac = |x: f64| match self.x_axis {
            XAxis::Log => (x.ln() - self.x_range.0.ln()) / (self.x_range.1.ln() - self.x_range.0.ln()),
            _ => (x - self.x_range.0) / (self.x_range.1 - self.x_range.0),
        };
        let y_frac = |y: f64| (self.y_range.1 - y) / (self.y_range.1 - self.y_range.0); // from the top
        let under = |&(x, y): &(f64, f64)| {
            let (u, v) = (x_frac(x), y_frac(y));
            u >= left && u <= left + w && v >= top && v <= top + h
        };
        self.series
            .iter()
            .map(|s| {
                let p = s.points();
                let mids = p.windows(2).map(|ab| ((ab[0].0 + ab[1].0) / 2.0, (ab[0].1 + ab[1].1) / 2.0));
                p.iter().filter(|q| under(q)).count() + mids.filter(|q| under(q)).count()
            })
            .sum()
    }

    /// Draws the figure into a PNG at `path`.
    pub fn draw(&self, path: &Path) -> Result<()> {
        register_font();
        let root = BitMapBackend::new(path, self.size).into_drawing_area();
        root.fill(&WHITE).map_err(|e| plot_err(path, e))?;
        let mut builder = ChartBuilder::on(&root);
        builder.caption(&self.title, ("sans-serif", 24)).margin(15).x_label_area_size(45).y_label_area_size(65);
        let (x0, x1) = self.x_range;
        let (y0, y1) = self.y_range;
        let position = self.legend_position();
        // The same drawing ([`Figure::draw_on`]) on a linear and on a logarithmic x coordinate.
        match (self.x_axis, &self.x_ticks) {
            (XAxis::Linear, None) => {
                let chart = builder.build_cartesian_2d(x0..x1, y0..y1).map_err(|e| plot_err(path, e))?;
                self.draw_on(chart, path, position)?;
            }
            (XAxis::Linear, Some(ticks)) => {
                let x = Ticked { axis: (x0..x1).into(), ticks: ticks.clone() };
                let chart = builder.build_cartesian_2d(x, y0..y1).map_err(|e| plot_err(path, e))?;
                self.draw_on(chart, path, position)?;
            }
            (XAxis::Log, None) => {
                let chart = builder.build_cartesian_2d((x0..x1).log_scale(), y0..y1).map_err(|e| plot_err(path, e))?;
                self.draw_on(chart, path, position)?;
            }
            (XAxis::Log, Some(_)) => return Err(plot_err(path, "ticks of their own are for a linear x axis")),
            (XAxis::Bins(bins), _) => self.draw_histograms(builder, path, bins, position)?,
        }
        root.present().map_err(|e| plot_err(path, e))?;
        Ok(())
    }

    /// The mesh, every dot, cross and line series, and the legend, on a chart of any x
    /// coordinate.
    fn draw_on<'a, DB, X>(&self, mut chart: ChartContext<'a, DB, Cartesian2d<X, RangedCoordf64>>, path: &Path, position: SeriesLabelPosition) -> Result<()>
    where
        DB: DrawingBackend + 'a,
        X: Ranged<ValueType = f64> + ValueFormatter<f64>,
    {
        let mut mesh = chart.configure_mesh();
        mesh.x_desc(&self.x_label).y_desc(&self.y_label).label_style(("sans-serif", 14));
        if self.x_ticks.is_some() {
            mesh.x_label_formatter(&|x| format!("{x}")); // 640, not 640.0
        }
        if matches!(self.x_axis, XAxis::Bins(_)) || self.x_label.is_empty() {
            mesh.disable_mesh();
        }
        mesh.draw().map_err(|e| plot_err(path, e))?;
        for s in &self.series {
            let colour = s.colour;
            let drawn = match &s.marks {
                Marks::Dots(pts) => chart
                    .draw_series(pts.iter().map(|p| Circle::new(*p, 1, colour.mix(DOT_OPACITY).filled())))
                    .map_err(|e| plot_err(path, e))?
                    .legend(move |(x, y)| Circle::new((x, y), 5, colour.filled())),
                Marks::Crosses(pts) => chart
                    .draw_series(pts.iter().map(|p| Cross::new(*p, 8, colour.stroke_width(3))))
                    .map_err(|e| plot_err(path, e))?
                    .legend(move |(x, y)| Cross::new((x, y), 6, colour.stroke_width(2))),
                Marks::Faint(pts) => {
                    chart
                        .draw_series(pts.iter().map(|p| Circle::new(*p, 2, colour.mix(FAINT_OPACITY).filled())))
                        .map_err(|e| plot_err(path, e))?;
                    continue; // not in the legend: the smoothed curve stands for it
                }
                Marks::Line { points, width, markers } => {
                    let width = *width;
                    if *markers {
                        chart
                            .draw_series(points.iter().map(|p| Circle::new(*p, MARKER_RADIUS, colour.filled())))
                            .map_err(|e| plot_err(path, e))?;
                    }
                    chart
                        .draw_series(LineSeries::new(points.iter().copied(), colour.stroke_width(width)))
                        .map_err(|e| plot_err(path, e))?
                        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], colour.stroke_width(width)))
                }
                Marks::Bars { .. } => {
                    return Err(plot_err(path, "a histogram needs a binned x axis"));
                }
            };
            drawn.label(s.name.clone());
        }
        draw_legend(&mut chart, position, path)
    }

    /// The bars of every histogram series, binned by plotters' `Histogram` on [`bin_coord`].
    fn draw_histograms<DB: DrawingBackend>(
        &self,
        mut builder: ChartBuilder<'_, '_, DB>,
        path: &Path,
        bins: usize,
        position: SeriesLabelPosition,
    ) -> Result<()> {
        let (x0, x1) = self.x_range;
        let (y0, y1) = self.y_range;
        let coord = bin_coord(x0, x1, bins);
        let mut chart = builder.build_cartesian_2d(coord.into_segmented(), y0..y1).map_err(|e| plot_err(path, e))?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_desc(&self.x_label)
            .y_desc(&self.y_label)
            .x_label_formatter(&|v| match v {
                SegmentValue::Exact(x) | SegmentValue::CenterOf(x) => format!("{x:.2}"),
                SegmentValue::Last => String::new(),
            })
            .label_style(("sans-serif", 14))
            .draw()
            .map_err(|e| plot_err(path, e))?;
        for s in &self.series {
            let Marks::Bars { values, .. } = &s.marks else {
                return Err(plot_err(path, format!("series {:?} is not a histogram on a binned x axis", s.name)));
            };
            let colour = s.colour;
            let share = 1.0 / values.len().max(1) as f64;
            chart
                .draw_series(
                    Histogram::vertical(&chart)
                        .style(colour.mix(BAR_OPACITY).filled())
                        .margin(0)
                        .data(values.iter().filter(|v| v.is_finite()).map(|&v| (v, share))),
                )
                .map_err(|e| plot_err(path, e))?
                .label(s.name.clone())
                .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 18, y + 5)], colour.mix(BAR_OPACITY).filled()));
        }
        draw_legend(&mut chart, position, path)
    }
}

/// A linear f64 axis with its ticks where [`Figure::x_ticks`] says (plotters' `WithKeyPoints`
/// does this too, but an f64 axis wrapped in it cannot be formatted).
struct Ticked {
    axis: RangedCoordf64,
    ticks: Vec<f64>,
}

impl Ranged for Ticked {
    type FormatOption = DefaultFormatting;
    type ValueType = f64;

    fn map(&self, value: &f64, limit: (i32, i32)) -> i32 {
        self.axis.map(value, limit)
    }

    fn key_points<Hint: KeyPointHint>(&self, hint: Hint) -> Vec<f64> {
        // The ticks for labels and the bold grid; no light grid lines between them.
        if hint.weight().allow_light_points() {
            Vec::new()
        } else {
            self.ticks.clone()
        }
    }

    fn range(&self) -> std::ops::Range<f64> {
        self.axis.range()
    }
}

/// The legend box of every figure, on any chart coordinate.
fn draw_legend<'a, DB: DrawingBackend + 'a, CT: plotters::coord::CoordTranslate>(
    chart: &mut ChartContext<'a, DB, CT>,
    position: SeriesLabelPosition,
    path: &Path,
) -> Result<()> {
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .label_font(("sans-serif", 14))
        .position(position)
        .draw()
        .map_err(|e| plot_err(path, e))
}

/// Whether a metric of `metrics.jsonl`'s evaluation records goes into `evaluation.png`: the
/// accuracies (their `_std` companions left out) and the intra/inter-class distance ratio of
/// MNIST's features (lower = more compact clusters).
fn is_evaluation_curve(key: &str) -> bool {
    (key.contains("accuracy") && !key.ends_with("_std")) || key.contains("ratio")
}

/// The figures of `training.png` and `evaluation.png` of a run directory, with the files they
/// go to. A file whose records are missing gives no figure.
///
/// `training.png` (from `steps.jsonl`) has the losses over steps, ticks on whole steps: each
/// loss as faint raw points under its [`ema_centred`] (span [`smoothing_span`]); the total loss first
/// and [`TOTAL_WIDTH`] wide, then over it one curve per term of the run's loss, each times its
/// weight (from `metrics.jsonl`'s [`LossTerms`] records; see [`loss_curves`]), so that the
/// terms add up to the total and no curve hides it.
///
/// `evaluation.png` (from `metrics.jsonl`'s `"kind": "eval"` records) has each accuracy and
/// ratio metric (see [`is_evaluation_curve`]) over steps, every evaluation a marker on the line
/// (a single evaluation is a point, not an empty plot).
pub fn training_figures(run_dir: &Path) -> Result<Vec<(PathBuf, Figure)>> {
    use facerec_core::metrics::read_records;
    let mut figures = Vec::new();
    let metrics_path = run_dir.join(run_files::METRICS);
    let metrics = if metrics_path.exists() { read_records(&metrics_path)? } else { Vec::new() };
    let steps_path = run_dir.join(run_files::STEPS);
    if steps_path.exists() {
        let figure = losses_figure(&read_records(&steps_path)?, &LossTerms::find(&metrics));
        figures.push((run_dir.join(run_files::TRAINING_PNG), figure));
    }
    let evals: Vec<_> = metrics.into_iter().filter(|r| r.get("kind").and_then(|k| k.as_str()) == Some("eval")).collect();
    if let Some(figure) = evaluation_figure(&evals) {
        figures.push((run_dir.join(run_files::EVALUATION_PNG), figure));
    }
    Ok(figures)
}

/// `training.png`'s figure of the records of `steps.jsonl` (see [`training_figures`]).
/// `terms`: the run's [`LossTerms`] records.
pub fn losses_figure(records: &[Record], terms: &[LossTerms]) -> Figure {
    let curves = loss_curves(records, terms);
    let mut raw = Vec::new();
    let mut smooth = Vec::new();
    for (i, LossCurve { name, points, colour }) in curves.iter().enumerate() {
        raw.push(Series { name: format!("{name} (raw)"), colour: *colour, marks: Marks::Faint(points.clone()) });
        smooth.push(Series {
            name: name.clone(),
            colour: *colour,
            marks: Marks::Line {
                points: ema_centred(points, smoothing_span(points.len())),
                width: if i == 0 { TOTAL_WIDTH } else { LINE_WIDTH },
                markers: false,
            },
        });
    }
    let span = smoothing_span(curves[0].points.len());
    let series: Vec<Series> = raw.into_iter().chain(smooth).collect();
    step_figure(
        &if span > 1.0 {
            format!("training losses (lines: smoothed over about {span:.0} log lines; dots: each line)")
        } else {
            "training losses".to_owned()
        },
        "loss",
        // A run's losses fall from the upper left, but not always: a fine-tuned model's may
        // rise at the end (a new head) and a short run's stay high on the right.
        Legend::Best,
        series,
    )
}

/// One loss of `training.png`.
struct LossCurve {
    name: String,
    /// `(step, value)`.
    points: Vec<(f64, f64)>,
    colour: RGBColor,
}

/// The columns of `steps.jsonl` that are not loss terms.
const STEP_FIELDS: [&str; 8] = ["step", "epoch", "lr", "loss", "accuracy", "grad_norm", "steps_averaged", "elapsed_s"];

/// The losses of `training.png`: the total loss, then each term of the loss times its weight.
///
/// The terms and weights are those of the run's [`LossTerms`] records, each from its step on
/// (a resume may change a weight): a term's legend gives its weights (`0.003 · center_loss`,
/// `0.003→0.01 · center_loss` when a resume changed it). A run without such records (written
/// before facerec recorded them) has its term columns drawn as logged, "weight unknown".
fn loss_curves(records: &[Record], terms: &[LossTerms]) -> Vec<LossCurve> {
    let mut curves = vec![LossCurve { name: String::new(), points: points_of(records, "loss"), colour: class_colour(0) }];
    let mut labels = Vec::new();
    if terms.is_empty() {
        let mut names: Vec<&str> = Vec::new();
        for k in records.iter().flat_map(|r| r.keys()) {
            if !STEP_FIELDS.contains(&k.as_str()) && !names.contains(&k.as_str()) {
                names.push(k);
            }
        }
        for name in names {
            labels.push(name.to_owned());
            curves.push(LossCurve { name: format!("{name} (weight unknown)"), points: points_of(records, name), colour: class_colour(curves.len()) });
        }
    } else {
        let mut names: Vec<&str> = Vec::new();
        for t in terms.iter().flat_map(|r| &r.terms) {
            if !names.contains(&t.name.as_str()) {
                names.push(&t.name);
            }
        }
        for name in names {
            // The weight of the record in force at each step: the last one written before it.
            let weight_at = |step: f64| {
                let record = terms.iter().rev().find(|r| (r.step as f64) < step).unwrap_or(&terms[0]);
                record.terms.iter().find(|t| t.name == name).map_or(0.0, |t| t.weight)
            };
            let points: Vec<(f64, f64)> = points_of(records, name).into_iter().map(|(x, y)| (x, weight_at(x) * y)).collect();
            let mut weights: Vec<f64> = Vec::new();
            for w in terms.iter().filter_map(|r| r.terms.iter().find(|t| t.name == name)).map(|t| t.weight) {
                if weights.last() != Some(&w) {
                    weights.push(w);
                }
            }
            let label = match weights.as_slice() {
                [w] if *w == 1.0 => name.to_owned(),
                ws => format!("{} · {name}", ws.iter().map(|w| w.to_string()).collect::<Vec<_>>().join("→")),
            };
            labels.push(label.clone());
            curves.push(LossCurve { name: label, points, colour: class_colour(curves.len()) });
        }
    }
    // Drawn in this order: the total first and wide, so that the thinner term curves drawn
    // over it leave it showing where they meet it (a single term is the total itself). Without
    // weights the terms need not add up to it.
    curves[0].name = match terms.is_empty() || labels.is_empty() {
        true => "loss".to_owned(),
        false => format!("loss = {}", labels.join(" + ")),
    };
    curves
}

/// `evaluation.png`'s figure of the evaluation records of `metrics.jsonl` (see
/// [`training_figures`]); `None` when they hold no point to draw.
fn evaluation_figure(records: &[Record]) -> Option<Figure> {
    let keys: BTreeSet<String> = records.iter().flat_map(|r| r.keys().filter(|k| is_evaluation_curve(k)).cloned()).collect();
    let series: Vec<Series> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| Series {
            name: k.clone(),
            colour: class_colour(i),
            marks: Marks::Line {
                points: points_of(records, k),
                width: LINE_WIDTH,
                markers: true,
            },
        })
        .collect();
    if !series.iter().any(|s| !s.is_empty()) {
        return None;
    }
    // Accuracies near the top, ratios near the bottom: the legend between them.
    let (y_label, legend) = if keys.iter().any(|k| k.contains("ratio")) {
        ("accuracy, intra/inter ratio", Legend::MiddleRight)
    } else {
        ("accuracy", Legend::LowerRight)
    };
    Some(step_figure("evaluation during training", y_label, legend, series))
}

/// A record of `steps.jsonl` or `metrics.jsonl`.
type Record = serde_json::Map<String, serde_json::Value>;

/// `(step, key)` of each record that has both as numbers.
fn points_of(records: &[Record], key: &str) -> Vec<(f64, f64)> {
    records.iter().filter_map(|r| Some((r.get("step")?.as_f64()?, r.get(key)?.as_f64()?))).collect()
}

/// A figure of `series` over training steps: the x axis padded by at least half a step (one
/// step shows), its ticks on whole steps ([`integer_ticks`]).
fn step_figure(title: &str, y_label: &str, legend: Legend, series: Vec<Series>) -> Figure {
    let x_range = padded_bounds(series.iter().flat_map(|s| s.points().iter().map(|p| p.0)), 0.5);
    Figure {
        title: title.to_owned(),
        size: (900, 650),
        x_label: "step".to_owned(),
        y_label: y_label.to_owned(),
        x_axis: XAxis::Linear,
        x_range,
        x_ticks: Some(integer_ticks(x_range.0, x_range.1)),
        y_range: bounds(series.iter().flat_map(|s| s.points().iter().map(|p| p.1))),
        legend,
        series,
    }
}

/// Draws [`training_figures`] into the run directory; returns the files written.
pub fn training_curves(run_dir: &Path) -> Result<Vec<PathBuf>> {
    let mut written = Vec::new();
    for (path, figure) in training_figures(run_dir)? {
        figure.draw(&path)?;
        written.push(path);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_bins_by_hand() {
        // Values 0, 0.1, 0.2, 0.9, 1.0 widen to (-0.05, 1.05); 4 bins of 0.275 start at
        // -0.05, 0.225, 0.5, 0.775: counts 3, 0, 0, 2 -> fractions .6, 0, 0, .4.
        let f = histogram_figure("t", "x", &[("a".into(), vec![0.0, 0.1, 0.2, 0.9, 1.0])], 4);
        let Marks::Bars { fractions, .. } = &f.series[0].marks else { panic!("{f:?}") };
        assert_eq!(fractions.len(), 4);
        let want = [0.6, 0.0, 0.0, 0.4];
        assert!(fractions.iter().zip(want).all(|(a, b)| (a - b).abs() < 1e-12), "{fractions:?}");
        assert!((f.x_range.0 + 0.05).abs() < 1e-12 && (f.x_range.1 - 1.05).abs() < 1e-12, "{:?}", f.x_range);
        assert!((f.y_range.1 - 0.6 * 1.05).abs() < 1e-12);
        // A value on a bin edge goes to the bin above it (floor), NaN nowhere.
        assert_eq!(bin_fractions(&[0.5, f64::NAN], 0.0, 1.0, 2), vec![0.0, 0.5]);
        // Many bins: exactly `bins` of them, whatever the rounding of the range.
        for bins in [3, 7, 10, 40, 97] {
            assert_eq!(bin_fractions(&[0.3], -0.1, 0.7, bins).len(), bins);
        }
    }

    #[test]
    fn the_training_legend_goes_where_the_curves_are_not() {
        // A fine-tuning run's losses: they fall, then climb to the top right at the last steps
        // (the shape that the upper-right legend used to cover), and the mirror image.
        let records = |rising_end: bool| -> Vec<Record> {
            (1..=200)
                .map(|step| {
                    let t = step as f64 / 200.0;
                    let loss = if rising_end { 2.0 - 1.5 * t + 3.0 * (t - 0.8).max(0.0) * 8.0 } else { 0.5 + 2.0 * t * t };
                    let mut r = Record::new();
                    r.insert("step".into(), step.into());
                    r.insert("loss".into(), loss.into());
                    r.insert("softmax_loss".into(), (0.9 * loss).into());
                    r
                })
                .collect()
        };
        for rising_end in [true, false] {
            let figure = losses_figure(&records(rising_end), &[]);
            assert_eq!(figure.legend, Legend::Best);
            let upper_right = figure.points_under_legend(1.0, 0.0);
            assert!(upper_right > 0, "the data reach the upper right corner here");
            let chosen = figure.legend_position();
            let (_, fx, fy) = LEGEND_PLACES.iter().find(|p| p.0 == chosen).expect("a listed place").clone();
            assert_eq!(figure.points_under_legend(fx, fy), 0, "{chosen:?} covers curves");
            assert_ne!(chosen, SeriesLabelPosition::UpperRight);
        }
    }

    #[test]
    fn term_weights_apply_from_the_step_they_were_recorded_at() {
        // A center-loss run resumed at step 2 with lambda 0.01 -> 0.1: steps 1-2 weigh the
        // center term by 0.01, steps 3-4 by 0.1; the legend names both weights.
        let records: Vec<Record> = (1..=4)
            .map(|step| {
                let mut r = Record::new();
                r.insert("step".into(), step.into());
                r.insert("softmax_loss".into(), 2.0.into());
                r.insert("center_loss".into(), 10.0.into());
                r.insert("loss".into(), (2.0 + if step <= 2 { 0.1 } else { 1.0 }).into());
                r
            })
            .collect();
        let terms = |step, lambda| LossTerms::new(step, [("softmax_loss".to_owned(), 1.0), ("center_loss".to_owned(), lambda)]);
        let curves = loss_curves(&records, &[terms(0, 0.01), terms(2, 0.1)]);
        let names: Vec<&str> = curves.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["loss = softmax_loss + 0.01→0.1 · center_loss", "softmax_loss", "0.01→0.1 · center_loss"]);
        let center: Vec<f64> = curves[2].points.iter().map(|p| p.1).collect();
        assert!(center.iter().zip([0.1, 0.1, 1.0, 1.0]).all(|(a, b)| (a - b).abs() < 1e-12), "{center:?}");
        // Without records (a run from before they were written): the columns as logged, in
        // the records' (alphabetical) order.
        let curves = loss_curves(&records, &[]);
        let names: Vec<&str> = curves.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["loss", "center_loss (weight unknown)", "softmax_loss (weight unknown)"]);
    }

    #[test]
    fn log_axis_leaves_out_non_positive_x() {
        let f = lines_figure("roc", "far", "tar", true, &[("m".into(), vec![(0.0, 0.0), (0.01, 0.5), (1.0, 1.0)])]);
        assert_eq!(f.x_axis, XAxis::Log);
        assert_eq!(f.series[0].points(), &[(0.01, 0.5), (1.0, 1.0)]);
        assert!(f.x_range.0 > 0.0 && f.x_range.0 < 0.01 && f.x_range.1 >= 1.0, "{:?}", f.x_range);
    }
}
