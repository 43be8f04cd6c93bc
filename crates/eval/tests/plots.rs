//! What facerec's plots show: the figure descriptions that the drawing consumes (series, their
//! names, colours and point counts, axis ranges), and the PNGs themselves, decoded, for the
//! colours each series must put on the page. The expected values are worked out by hand in the
//! comments from the inputs given here.

use std::path::Path;

use facerec_eval::clusters::ClusterStats;
use facerec_eval::mnist::MnistReport;
use facerec_eval::lfw::LfwReport;
use facerec_eval::plot::{self, class_colour, Figure, Legend, Marks, XAxis, BAR_OPACITY, DOT_OPACITY, FAINT_OPACITY, LINE_WIDTH, TOTAL_WIDTH};
use facerec_eval::verification::{verify, PairRef, Scoring, VerificationReport};
use plotters::style::RGBColor;
use tch::Tensor;

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error>>;

/// The pixels of a PNG.
fn pixels(path: &Path) -> Result<Vec<[u8; 3]>> {
    let img = image::open(path)?.to_rgb8();
    Ok(img.pixels().map(|p| p.0).collect())
}

/// `c` drawn at `opacity` over white, as the bitmap backend blends it (to within 2 levels).
fn blended(c: RGBColor, opacity: f64) -> [f64; 3] {
    let mix = |v: u8| opacity * f64::from(v) + (1.0 - opacity) * 255.0;
    [mix(c.0), mix(c.1), mix(c.2)]
}

/// How many pixels have (to within 2 levels) the colour `want`.
fn count(found: &[[u8; 3]], want: [f64; 3]) -> usize {
    found.iter().filter(|p| p.iter().zip(want).all(|(&a, b)| (f64::from(a) - b).abs() <= 2.0)).count()
}

/// Fewer pixels than a curve or a bar of these figures covers, more than its legend sample
/// (a legend line is 18 x 2 pixels, a legend bar 18 x 10): a count above it is the data's.
const MORE_THAN_A_LEGEND: usize = 400;

fn assert_within(range: (f64, f64), lo: f64, hi: f64, what: &str) {
    assert!(range.0 < lo && range.1 > hi, "{what}: range {range:?} does not hold {lo}..{hi}");
    // 5 % padding on each side, no more.
    let pad = (hi - lo) * 0.05;
    assert!((lo - range.0 - pad).abs() < 1e-6 && (range.1 - hi - pad).abs() < 1e-6, "{what}: range {range:?} for {lo}..{hi}");
}

#[test]
fn scatter_has_one_series_and_one_colour_per_class() -> Result {
    // Classes 0, 2 and 4 (no 1 or 3) with 4, 3 and 2 points, and two centers; x spans -2..3,
    // y spans -1..4 (the centers included).
    let points = [(0.0, 0.0), (0.2, 0.1), (0.1, 0.3), (-0.2, 0.2), (2.0, 2.0), (2.2, 1.9), (1.8, 2.1), (-2.0, 3.0), (-1.8, 3.2)];
    let labels = [0, 0, 0, 0, 2, 2, 2, 4, 4];
    let centers = [(0.0f32, -1.0f32), (3.0, 4.0)];
    let f = plot::scatter_2d_figure("features", &points, &labels, Some(&centers));
    let summary: Vec<(&str, usize, RGBColor)> = f.series.iter().map(|s| (s.name.as_str(), s.len(), s.colour)).collect();
    assert_eq!(
        summary,
        vec![("0", 4, class_colour(0)), ("2", 3, class_colour(2)), ("4", 2, class_colour(4)), ("centers", 2, RGBColor(0, 0, 0))]
    );
    assert!(matches!(f.series[0].marks, Marks::Dots(_)) && matches!(f.series[3].marks, Marks::Crosses(_)));
    assert_eq!(f.series[1].points(), &[(2.0, 2.0), (2.2f32 as f64, 1.9f32 as f64), (1.8f32 as f64, 2.1f32 as f64)]);
    assert_within(f.x_range, -2.0, 3.0, "x");
    assert_within(f.y_range, -1.0, 4.0, "y");

    // On the page: each class's colour, opaque in the legend and at DOT_OPACITY in the dots;
    // the colours of the classes that are not there appear nowhere.
    let dir = tempfile::tempdir()?;
    let png = dir.path().join("scatter.png");
    f.draw(&png)?;
    let found = pixels(&png)?;
    for c in [0, 2, 4] {
        assert!(count(&found, blended(class_colour(c), 1.0)) > 0, "legend of class {c}");
        // (the legend's circles are opaque: these pixels are the dots')
        assert!(count(&found, blended(class_colour(c), DOT_OPACITY)) > 0, "dots of class {c}");
    }
    for c in [1, 3] {
        assert_eq!(count(&found, blended(class_colour(c), 1.0)), 0, "class {c} is not in the data");
        assert_eq!(count(&found, blended(class_colour(c), DOT_OPACITY)), 0, "class {c} is not in the data");
    }
    Ok(())
}

#[test]
fn a_scatter_of_one_class_is_one_colour() -> Result {
    // Counter-check of the test above: if every point were drawn as class 0, the colours of
    // classes 2 and 4 would be missing, and that test would fail.
    let points = [(0.0, 0.0), (1.0, 1.0), (2.0, 0.5)];
    let f = plot::scatter_2d_figure("one", &points, &[0, 0, 0], None);
    assert_eq!(f.series.len(), 1);
    let dir = tempfile::tempdir()?;
    let png = dir.path().join("one.png");
    f.draw(&png)?;
    let found = pixels(&png)?;
    assert!(count(&found, blended(class_colour(0), DOT_OPACITY)) > 0);
    assert_eq!(count(&found, blended(class_colour(2), DOT_OPACITY)) + count(&found, blended(class_colour(4), DOT_OPACITY)), 0);
    Ok(())
}

#[test]
fn mnist_scatter_takes_the_first_two_feature_dimensions() -> Result {
    // 3-D features of digits 7, 7, 1: the scatter shows (x, y) = the first two columns.
    let features = Tensor::from_slice(&[1.0f32, 2.0, 9.0, 3.0, 4.0, 9.0, -1.0, 0.5, 9.0]).view([3, 3]);
    let report = MnistReport {
        accuracy: 1.0,
        clusters: ClusterStats { intra_to_mean: 0.0, intra_to_center: None, inter_means: 0.0, ratio: 0.0, mean_norm: 0.0 },
        features,
        labels: Tensor::from_slice(&[7i64, 7, 1]),
    };
    let centers = Tensor::from_slice(&[0.0f32, 0.0, 5.0, 5.0]).view([2, 2]);
    let f = report.scatter_figure("mnist", Some(&centers))?;
    let names: Vec<&str> = f.series.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["1", "7", "centers"]);
    assert_eq!(f.series[0].points(), &[(-1.0, 0.5)]);
    assert_eq!(f.series[1].points(), &[(1.0, 2.0), (3.0, 4.0)]);
    assert_eq!(f.series[1].colour, class_colour(7));
    assert_eq!(f.series[2].points(), &[(0.0, 0.0), (5.0, 5.0)]);
    assert_within(f.x_range, -1.0, 5.0, "x");
    Ok(())
}

/// Scores of 8 pairs in 2 folds: same-person 0.9, 0.8, 0.7, 0.2 and different 0.6, 0.3, 0.1, 0.0
/// (as cosines of unit 2-D vectors at those angles' cosines).
fn small_report() -> Result<VerificationReport> {
    let scores = [0.9, 0.8, 0.7, 0.2, 0.6, 0.3, 0.1, 0.0];
    let mut feats = Vec::new();
    let mut pairs = Vec::new();
    for (i, s) in scores.iter().enumerate() {
        let angle = f64::acos(*s);
        feats.extend([1.0f32, 0.0, angle.cos() as f32, angle.sin() as f32]);
        pairs.push(PairRef { a: 2 * i, b: 2 * i + 1, same: i < 4, fold: i % 2 });
    }
    let f = Tensor::from_slice(&feats).view([16, 2]);
    Ok(verify(&f, &pairs, &[0, 1], Scoring::default())?)
}

#[test]
fn lfw_figures_show_the_roc_and_both_score_sets() -> Result {
    let report = small_report()?;
    let figures = report.figures("m");
    let names: Vec<&str> = figures.iter().map(|(n, _)| *n).collect();
    assert_eq!(names, ["lfw_roc.png", "lfw_scores.png"]);

    // ROC, descending scores .9T .8T .7T .6F .3F .2T .1F .0F: points (FAR, TAR) = (0,0) (0,1/4)
    // (0,2/4) (0,3/4) (1/4,3/4) (2/4,3/4) (2/4,1) (3/4,1) (1,1); on the log axis the four at
    // FAR 0 are left out: 5 points, FAR 0.25..1, TAR 0.75..1. Four different-person pairs
    // resolve FAR down to 1/4, where the axis starts; none of the targets 1e-2..1e-4 is
    // resolved, so no target is marked.
    let roc: &Figure = &figures[0].1;
    assert_eq!((roc.x_axis, roc.legend, roc.series.len()), (XAxis::Log, Legend::LowerRight, 1));
    assert_eq!(roc.series[0].points(), &[(0.25, 0.75), (0.5, 0.75), (0.5, 1.0), (0.75, 1.0), (1.0, 1.0)]);
    assert_eq!(roc.x_range.0, 0.25);
    assert!(roc.x_range.1 >= 10.0 * roc.x_range.0, "{:?}", roc.x_range);
    assert!(report.tar_at_far.iter().all(|t| !t.resolved), "{:?}", report.tar_at_far);
    assert_within(roc.y_range, 0.75, 1.0, "ROC y");
    assert!(roc.title.contains("AUC"), "{}", roc.title);

    // Scores 0.0..0.9 padded to -0.045..0.945 in 40 bins: each set has 4 values; every bar is
    // a quarter, so the y axis ends at 0.25 * 1.05.
    let hist: &Figure = &figures[1].1;
    assert_eq!(hist.x_axis, XAxis::Bins(40));
    assert_within(hist.x_range, 0.0, 0.9, "scores x");
    assert!((hist.y_range.1 - 0.25 * 1.05).abs() < 1e-12, "{:?}", hist.y_range);
    let sets: Vec<(&str, usize)> = hist.series.iter().map(|s| (s.name.as_str(), s.len())).collect();
    assert_eq!(sets, [("same person", 4), ("different people", 4)]);
    for s in &hist.series {
        let Marks::Bars { fractions, .. } = &s.marks else { panic!("{s:?}") };
        assert_eq!(fractions.len(), 40);
        assert_eq!(fractions.iter().filter(|&&x| x > 0.0).count(), 4, "{}: four distinct scores, four bars", s.name);
        assert!((fractions.iter().sum::<f64>() - 1.0).abs() < 1e-12);
    }

    // Drawn, the histogram shows both sets' bar colours, the ROC one curve.
    let dir = tempfile::tempdir()?;
    for (file, figure) in &figures {
        figure.draw(&dir.path().join(file))?;
    }
    // The two sets' bars do not overlap (their scores fall in different bins).
    let found = pixels(&dir.path().join("lfw_scores.png"))?;
    for s in &hist.series {
        let n = count(&found, blended(s.colour, BAR_OPACITY));
        assert!(n > MORE_THAN_A_LEGEND, "bars of {}: {n} pixels", s.name);
    }
    let found = pixels(&dir.path().join("lfw_roc.png"))?;
    let n = count(&found, blended(roc.series[0].colour, 1.0));
    assert!(n > MORE_THAN_A_LEGEND, "ROC line: {n} pixels");
    assert_eq!(count(&found, blended(class_colour(1), 1.0)), 0, "one curve only");
    Ok(())
}

/// The series of a figure by name.
fn series<'f>(f: &'f Figure, name: &str) -> &'f plot::Series {
    f.series.iter().find(|s| s.name == name).unwrap_or_else(|| panic!("no series {name:?} in {:?}", names(f)))
}

fn names(f: &Figure) -> Vec<&str> {
    f.series.iter().map(|s| s.name.as_str()).collect()
}

fn width(s: &plot::Series) -> u32 {
    match &s.marks {
        Marks::Line { width, .. } => *width,
        other => panic!("{} is not a line: {other:?}", s.name),
    }
}

#[test]
fn training_curves_plot_the_losses_and_the_accuracies_that_were_logged() -> Result {
    let dir = tempfile::tempdir()?;
    // Three steps with softmax and center loss (lambda 0.5, recorded in metrics.jsonl as the
    // trainer records it), the center loss zero at first.
    std::fs::write(
        dir.path().join("steps.jsonl"),
        "{\"step\":1,\"loss\":2.5,\"softmax_loss\":2.5,\"center_loss\":0.0}\n\
         {\"step\":2,\"loss\":1.9,\"softmax_loss\":1.8,\"center_loss\":0.2}\n\
         {\"step\":3,\"loss\":1.45,\"softmax_loss\":1.4,\"center_loss\":0.1}\n",
    )?;
    // The loss's terms, two evaluations with an accuracy, its std (not plotted) and an AUC (not
    // an accuracy), and a record of another kind.
    std::fs::write(
        dir.path().join("metrics.jsonl"),
        "{\"kind\":\"loss_terms\",\"step\":0,\"terms\":[{\"name\":\"softmax_loss\",\"weight\":1.0},{\"name\":\"center_loss\",\"weight\":0.5}]}\n\
         {\"kind\":\"eval\",\"step\":2,\"lfw_accuracy\":0.6,\"lfw_accuracy_std\":0.1,\"lfw_auc\":0.7}\n\
         {\"kind\":\"train\",\"step\":2,\"lfw_accuracy\":0.0}\n\
         {\"kind\":\"eval\",\"step\":3,\"lfw_accuracy\":0.7,\"lfw_accuracy_std\":0.1,\"lfw_auc\":0.8}\n",
    )?;
    let figures = plot::training_figures(dir.path())?;
    assert_eq!(figures.len(), 2);
    let (path, losses) = &figures[0];
    assert_eq!(path, &dir.path().join("training.png"));
    // Raw points first (faint, not in the legend), then the smoothed curves: the total first
    // and widest, the terms over it, each times its weight (which its legend gives); the
    // weighted terms add up to the total.
    let center = "0.5 · center_loss";
    let total = "loss = softmax_loss + 0.5 · center_loss";
    assert_eq!(
        names(losses),
        [format!("{total} (raw)"), "softmax_loss (raw)".into(), format!("{center} (raw)"), total.into(), "softmax_loss".into(), center.into()]
    );
    assert!(matches!(series(losses, "softmax_loss (raw)").marks, Marks::Faint(_)));
    assert_eq!(series(losses, &format!("{center} (raw)")).points(), &[(1.0, 0.0), (2.0, 0.1), (3.0, 0.05)]);
    let (t, s, c) = (series(losses, total).points(), series(losses, "softmax_loss").points(), series(losses, center).points());
    for ((t, s), c) in t.iter().zip(s).zip(c) {
        assert!((t.1 - s.1 - c.1).abs() < 1e-12, "{t:?} = {s:?} + {c:?}");
    }
    assert!(width(series(losses, total)) > width(series(losses, "softmax_loss")));
    assert_eq!((width(series(losses, total)), width(series(losses, center))), (TOTAL_WIDTH, LINE_WIDTH));
    // Three log lines are too few to smooth: the curves go through the raw points.
    assert_eq!(series(losses, center).points(), &[(1.0, 0.0), (2.0, 0.1), (3.0, 0.05)]);
    // Steps 1..3 padded by half a step, ticks on whole steps only.
    assert_eq!(losses.x_range, (0.5, 3.5));
    assert_eq!(losses.x_ticks.as_deref(), Some([1.0, 2.0, 3.0].as_slice()));
    assert_within(losses.y_range, 0.0, 2.5, "losses");
    // Drawn, each loss curve is on the page in its colour, the raw points faintly, and no
    // fourth colour.
    losses.draw(&dir.path().join("training.png"))?;
    let found = pixels(&dir.path().join("training.png"))?;
    for s in losses.series.iter().filter(|s| matches!(s.marks, Marks::Line { .. })) {
        let n = count(&found, blended(s.colour, 1.0));
        assert!(n > MORE_THAN_A_LEGEND, "{}: {n} pixels", s.name);
        assert!(count(&found, blended(s.colour, FAINT_OPACITY)) > 0, "raw points of {}", s.name);
    }
    assert_eq!(count(&found, blended(class_colour(3), 1.0)), 0);
    let (path, accuracy) = &figures[1];
    assert_eq!(path, &dir.path().join("evaluation.png"));
    assert_eq!(accuracy.series.len(), 1);
    assert_eq!(accuracy.series[0].name, "lfw_accuracy");
    assert_eq!(accuracy.series[0].points(), &[(2.0, 0.6), (3.0, 0.7)]);
    assert!(matches!(accuracy.series[0].marks, Marks::Line { markers: true, .. }));
    assert_eq!(accuracy.x_ticks.as_deref(), Some([2.0, 3.0].as_slice()));

    // A run from before the terms were recorded (no metrics.jsonl): its term columns as
    // logged, saying that their weights are unknown, and a total that does not claim to be
    // their sum.
    std::fs::write(
        dir.path().join("steps.jsonl"),
        "{\"step\":1,\"loss\":2.5,\"softmax_loss\":2.5,\"center_loss\":0.0}\n\
         {\"step\":2,\"loss\":1.5,\"softmax_loss\":1.5,\"center_loss\":0.0}\n",
    )?;
    std::fs::remove_file(dir.path().join("metrics.jsonl"))?;
    let figures = plot::training_figures(dir.path())?;
    assert_eq!(figures.len(), 1);
    let (unknown_c, unknown_s) = ("center_loss (weight unknown)", "softmax_loss (weight unknown)");
    assert_eq!(
        names(&figures[0].1),
        ["loss (raw)".to_owned(), format!("{unknown_c} (raw)"), format!("{unknown_s} (raw)"), "loss".into(), unknown_c.into(), unknown_s.into()]
    );
    let written = plot::training_curves(dir.path())?;
    assert_eq!(written, [dir.path().join("training.png")]);
    let found = pixels(&written[0])?;
    for c in [0, 1, 2] {
        let n = count(&found, blended(class_colour(c), 1.0));
        assert!(n > MORE_THAN_A_LEGEND, "curve {c}: {n} pixels");
    }
    assert_eq!(count(&found, blended(class_colour(3), 1.0)), 0, "no fourth curve");
    Ok(())
}

#[test]
fn long_runs_are_smoothed_over_faint_raw_points() -> Result {
    // 250 log lines alternating 1 and 3 around a fall from 3 to 2: the smoothed total stays far
    // closer to the trend than the raw points (span 250 / 25 = 10 lines).
    let dir = tempfile::tempdir()?;
    let mut lines = String::new();
    for i in 0..250 {
        let trend = 3.0 - i as f64 / 250.0;
        let loss = trend + if i % 2 == 0 { 1.0 } else { -1.0 };
        lines.push_str(&format!("{{\"step\":{},\"loss\":{loss},\"softmax_loss\":{loss},\"center_loss\":0.0}}\n", 4 * (i + 1)));
    }
    std::fs::write(dir.path().join("steps.jsonl"), lines)?;
    let figures = plot::training_figures(dir.path())?;
    let f = &figures[0].1;
    assert_eq!(series(f, "loss (raw)").len(), 250);
    let smooth = series(f, "loss").points();
    assert_eq!(smooth.len(), 250);
    // Past the start-up, each smoothed point is within 0.2 of the trend, the raw ones 1 away: an
    // EMA of span 10 (w = 9/11) damps the alternation +-1 to (1 - w) / (1 + w) = 0.1 and lags
    // the trend (slope 1/250 a line) by w / (1 - w) = 4.5 lines, 0.018.
    for (i, p) in smooth.iter().enumerate().skip(20) {
        let trend = 3.0 - i as f64 / 250.0;
        assert!((p.1 - trend).abs() < 0.2 + 0.01, "step {}: {} against {trend}", p.0, p.1);
    }
    assert!(f.title.contains("smoothed over"), "{}", f.title);
    // Ticks: steps 4..1000, whole numbers, at most 10.
    let ticks = f.x_ticks.clone().unwrap_or_default();
    assert!(!ticks.is_empty() && ticks.len() <= 10 && ticks.iter().all(|t| t.fract() == 0.0), "{ticks:?}");
    Ok(())
}

#[test]
fn ema_and_integer_ticks_by_hand() {
    // Span 3: w = 1 - 2/4 = 0.5. y = 4, 0, 2: 4; (0 + 0.5*4) / 1.5 = 4/3; (2 + 0.5*0 + 0.25*4)
    // / 1.75 = 3 / 1.75 = 12/7 (pandas: Series([4, 0, 2]).ewm(span=3).mean()).
    let e = plot::ema(&[(1.0, 4.0), (2.0, 0.0), (3.0, 2.0)], 3.0);
    let want = [4.0, 4.0 / 3.0, 12.0 / 7.0];
    assert!(e.iter().zip(want).all(|(a, b)| (a.1 - b).abs() < 1e-12), "{e:?}");
    assert_eq!(plot::ema(&[(1.0, 4.0), (2.0, 0.0)], 1.0), [(1.0, 4.0), (2.0, 0.0)]);
    // The centred one is the backward pass over the forward one: over 4, 4/3, 12/7 backwards,
    // 12/7; (4/3 + 0.5 * 12/7) / 1.5 = (28/21 + 18/21) / 1.5 = 46/31.5 = 92/63; (4 + 0.5 *
    // 4/3 + 0.25 * 12/7) / 1.75 = (84/21 + 14/21 + 9/21) / 1.75 = 107/36.75 = 428/147.
    let c = plot::ema_centred(&[(1.0, 4.0), (2.0, 0.0), (3.0, 2.0)], 3.0);
    let want = [428.0 / 147.0, 92.0 / 63.0, 12.0 / 7.0];
    assert!(c.iter().zip(want).all(|(a, b)| (a.1 - b).abs() < 1e-12), "{c:?}");
    // A falling line is not shifted: inside, the centred average stays on it, where the
    // forward one trails it (above it) by about span / 2 points.
    let line: Vec<(f64, f64)> = (0..200).map(|i| (i as f64, 100.0 - i as f64)).collect();
    let (fwd, mid) = (plot::ema(&line, 9.0), plot::ema_centred(&line, 9.0));
    assert!((fwd[100].1 - line[100].1 - 4.0).abs() < 0.01, "forward lags by 4 points: {:?}", fwd[100]);
    assert!((mid[100].1 - line[100].1).abs() < 1e-6, "centred: {:?}", mid[100]);
    assert_eq!(plot::integer_ticks(0.5, 3.5), [1.0, 2.0, 3.0]);
    assert_eq!(plot::integer_ticks(1.5, 2.5), [2.0]);
    assert_eq!(plot::integer_ticks(-32.0, 672.0), [0.0, 100.0, 200.0, 300.0, 400.0, 500.0, 600.0]);
    assert_eq!(format!("{}", plot::integer_ticks(-32.0, 672.0)[0]), "0", "a tick at 0, not -0");
    assert_eq!(plot::integer_ticks(0.0, 15.0), [0.0, 2.0, 4.0, 6.0, 8.0, 10.0, 12.0, 14.0]);
}

#[test]
fn one_evaluation_is_a_visible_point_and_mnist_shows_the_cluster_ratio() -> Result {
    // One evaluation of an MNIST run (the keys its evaluator logs): accuracy and the
    // intra/inter ratio are plotted, intra_to_mean (a distance, not a ratio) is not.
    let dir = tempfile::tempdir()?;
    std::fs::write(
        dir.path().join("metrics.jsonl"),
        "{\"kind\":\"eval\",\"step\":640,\"test_accuracy\":0.98,\"intra_to_mean\":3.5,\"intra_inter_ratio\":0.06}\n",
    )?;
    let figures = plot::training_figures(dir.path())?;
    assert_eq!(figures.len(), 1);
    let (path, f) = &figures[0];
    assert_eq!(path, &dir.path().join("evaluation.png"));
    assert_eq!(names(f), ["intra_inter_ratio", "test_accuracy"]);
    assert_eq!(series(f, "test_accuracy").points(), &[(640.0, 0.98)]);
    assert_eq!(series(f, "intra_inter_ratio").points(), &[(640.0, 0.06)]);
    assert!(f.y_label.contains("ratio"), "{}", f.y_label);
    assert_eq!(f.x_ticks.as_deref(), Some([640.0].as_slice()));
    // Drawn, each one-point series shows as a marker: its colour covers more pixels than in
    // the same figure without markers, where only the legend's line has it (a line of one
    // point draws nothing).
    f.draw(path)?;
    let found = pixels(path)?;
    let mut bare = f.clone();
    for s in &mut bare.series {
        if let Marks::Line { markers, .. } = &mut s.marks {
            *markers = false;
        }
    }
    let bare_png = dir.path().join("bare.png");
    bare.draw(&bare_png)?;
    let without = pixels(&bare_png)?;
    for s in &f.series {
        let (n, legend) = (count(&found, blended(s.colour, 1.0)), count(&without, blended(s.colour, 1.0)));
        // a filled circle of radius 4: some 40 pixels of full colour
        assert!(n >= legend + 30, "{}: {n} pixels, {legend} of them the legend's", s.name);
    }
    Ok(())
}

/// A report of 3,000 pairs, 1,500 of them of different people: same-person scores
/// 0.5 + 0.5 i / 1500, different-person ones -0.5 + 1.05 i / 1500 (i = 0..1499; the top ones
/// above the lowest same-person scores).
fn report_1500() -> Result<VerificationReport> {
    let mut feats = Vec::new();
    let mut pairs = Vec::new();
    for i in 0..3000 {
        let same = i < 1500;
        let k = (i % 1500) as f64;
        let score: f64 = if same { 0.5 + 0.5 * k / 1500.0 } else { -0.5 + 1.05 * k / 1500.0 };
        let angle = score.acos();
        feats.extend([1.0f32, 0.0, angle.cos() as f32, angle.sin() as f32]);
        pairs.push(PairRef { a: 2 * i, b: 2 * i + 1, same, fold: i % 5 });
    }
    let f = Tensor::from_slice(&feats).view([6000, 2]);
    Ok(verify(&f, &pairs, &[0, 1, 2, 3, 4], Scoring::default())?)
}

#[test]
fn tar_at_far_is_only_reported_where_the_pairs_resolve_it() -> Result {
    // 1,500 different-person pairs: FARs move in steps of 1/1500 = 6.7e-4. FAR 1e-2 and 1e-3
    // are resolved (15 and 1.5 pairs), 1e-4 is not (0.15 of a pair: only FAR 0 meets it).
    let report = report_1500()?;
    assert_eq!(report.negative_pairs, 1500);
    assert!((report.smallest_far - 1.0 / 1500.0).abs() < 1e-15);
    let resolved: Vec<(f64, bool)> = report.tar_at_far.iter().map(|t| (t.far, t.resolved)).collect();
    assert_eq!(resolved, [(1e-2, true), (1e-3, true), (1e-4, false)]);
    assert_eq!(report.resolved_tar(1e-4), None);
    assert!(report.resolved_tar(1e-3).is_some());
    let lines = report.tar_lines();
    assert!(lines[1].starts_with("TAR ") && lines[1].ends_with("% at FAR 1e-3"), "{lines:?}");
    assert!(lines[2].starts_with("TAR at FAR 1e-4: not resolved (1500 different-person pairs"), "{lines:?}");

    // The ROC starts at 1/1500 and marks the two resolved targets only.
    let figures = report.figures("m");
    let roc = &figures[0].1;
    assert!((roc.x_range.0 - 1.0 / 1500.0).abs() < 1e-15, "{:?}", roc.x_range);
    assert!(roc.series[0].points().iter().all(|p| p.0 >= roc.x_range.0));
    assert_eq!(roc.series.len(), 2);
    assert_eq!(roc.series[1].name, "TAR at FAR 1e-2, 1e-3");
    let marked: Vec<f64> = roc.series[1].points().iter().map(|p| p.0).collect();
    assert_eq!(marked, [1e-2, 1e-3]);
    assert!(roc.x_label.contains("1500 different-person pairs"), "{}", roc.x_label);

    // In lfw_report.json: the fields readers use (far, tar, threshold) stay, `resolved` marks
    // each target, and the pair count and resolution are there.
    let dir = tempfile::tempdir()?;
    let report = LfwReport { protocol: "test".into(), flip: Some(false), verification: report, identification: None, open_set: None, insightface: None };
    report.write(dir.path(), "m")?;
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.path().join("lfw_report.json"))?)?;
    let v = &json["verification"];
    assert_eq!(v["negative_pairs"], 1500);
    assert!((v["smallest_far"].as_f64().unwrap_or(0.0) - 1.0 / 1500.0).abs() < 1e-15);
    let t = &v["tar_at_far"][2];
    assert_eq!((t["far"].as_f64(), t["resolved"].as_bool()), (Some(1e-4), Some(false)));
    assert!(t["tar"].is_number() && v["tar_at_far"][1]["resolved"] == true);
    assert!(dir.path().join("lfw_roc.png").is_file());
    Ok(())
}
