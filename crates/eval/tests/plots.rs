//! What facerec's plots show: the figure descriptions that the drawing consumes (series, their
//! names, colours and point counts, axis ranges), and the PNGs themselves, decoded, for the
//! colours each series must put on the page. The expected values are worked out by hand in the
//! comments from the inputs given here.

use std::path::Path;

use facerec_eval::clusters::ClusterStats;
use facerec_eval::mnist::MnistReport;
use facerec_eval::plot::{self, class_colour, Figure, Legend, Marks, XAxis, BAR_OPACITY, DOT_OPACITY};
use facerec_eval::verification::{verify, PairRef, VerificationReport};
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
    Ok(verify(&f, &pairs, &[0, 1], 0)?)
}

#[test]
fn lfw_figures_show_the_roc_and_both_score_sets() -> Result {
    let report = small_report()?;
    let figures = report.figures("m");
    let names: Vec<&str> = figures.iter().map(|(n, _)| *n).collect();
    assert_eq!(names, ["lfw_roc.png", "lfw_scores.png"]);

    // ROC, descending scores .9T .8T .7T .6F .3F .2T .1F .0F: points (FAR, TAR) = (0,0) (0,1/4)
    // (0,2/4) (0,3/4) (1/4,3/4) (2/4,3/4) (2/4,1) (3/4,1) (1,1); on the log axis the four at
    // FAR 0 are left out: 5 points, FAR 0.25..1, TAR 0.75..1.
    let roc: &Figure = &figures[0].1;
    assert_eq!((roc.x_axis, roc.legend, roc.series.len()), (XAxis::Log, Legend::LowerRight, 1));
    assert_eq!(roc.series[0].points(), &[(0.25, 0.75), (0.5, 0.75), (0.5, 1.0), (0.75, 1.0), (1.0, 1.0)]);
    assert!(roc.x_range.0 > 0.0 && roc.x_range.0 < 0.25 && roc.x_range.1 >= 10.0 * roc.x_range.0, "{:?}", roc.x_range);
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

#[test]
fn training_curves_plot_the_losses_and_the_accuracies_that_were_logged() -> Result {
    let dir = tempfile::tempdir()?;
    // Three steps with softmax and center loss, the center loss zero at first.
    std::fs::write(
        dir.path().join("steps.jsonl"),
        "{\"step\":1,\"loss\":2.5,\"softmax_loss\":2.5,\"center_loss\":0.0}\n\
         {\"step\":2,\"loss\":2.0,\"softmax_loss\":1.8,\"center_loss\":0.2}\n\
         {\"step\":3,\"loss\":1.5,\"softmax_loss\":1.4,\"center_loss\":0.1}\n",
    )?;
    // Two evaluations with an accuracy, its std (not plotted) and an AUC (not an accuracy), and
    // a record of another kind.
    std::fs::write(
        dir.path().join("metrics.jsonl"),
        "{\"kind\":\"eval\",\"step\":2,\"lfw_accuracy\":0.6,\"lfw_accuracy_std\":0.1,\"lfw_auc\":0.7}\n\
         {\"kind\":\"train\",\"step\":2,\"lfw_accuracy\":0.0}\n\
         {\"kind\":\"eval\",\"step\":3,\"lfw_accuracy\":0.7,\"lfw_accuracy_std\":0.1,\"lfw_auc\":0.8}\n",
    )?;
    let figures = plot::training_figures(dir.path())?;
    assert_eq!(figures.len(), 2);
    let (path, losses) = &figures[0];
    assert_eq!(path, &dir.path().join("training.png"));
    let names: Vec<(&str, usize)> = losses.series.iter().map(|s| (s.name.as_str(), s.len())).collect();
    assert_eq!(names, [("loss", 3), ("softmax loss", 3), ("center loss", 3)]);
    assert_eq!(losses.series[2].points(), &[(1.0, 0.0), (2.0, 0.2), (3.0, 0.1)]);
    assert_within(losses.x_range, 1.0, 3.0, "steps");
    assert_within(losses.y_range, 0.0, 2.5, "losses");
    // Drawn, each loss curve is on the page in its colour, and no fourth one.
    losses.draw(&dir.path().join("training.png"))?;
    let found = pixels(&dir.path().join("training.png"))?;
    for s in &losses.series {
        let n = count(&found, blended(s.colour, 1.0));
        assert!(n > MORE_THAN_A_LEGEND, "{}: {n} pixels", s.name);
    }
    assert_eq!(count(&found, blended(class_colour(3), 1.0)), 0);
    let (path, accuracy) = &figures[1];
    assert_eq!(path, &dir.path().join("evaluation.png"));
    assert_eq!(accuracy.series.len(), 1);
    assert_eq!(accuracy.series[0].name, "lfw_accuracy");
    assert_eq!(accuracy.series[0].points(), &[(2.0, 0.6), (3.0, 0.7)]);

    // Without a center loss (all zero) its curve is left out.
    std::fs::write(dir.path().join("steps.jsonl"), "{\"step\":1,\"loss\":2.5,\"softmax_loss\":2.5,\"center_loss\":0.0}\n")?;
    std::fs::remove_file(dir.path().join("metrics.jsonl"))?;
    let figures = plot::training_figures(dir.path())?;
    assert_eq!(figures.len(), 1);
    assert_eq!(figures[0].1.series.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(), ["loss", "softmax loss"]);
    let written = plot::training_curves(dir.path())?;
    assert_eq!(written, [dir.path().join("training.png")]);
    let found = pixels(&written[0])?;
    assert!(count(&found, blended(class_colour(0), 1.0)) > 0 && count(&found, blended(class_colour(1), 1.0)) > 0);
    assert_eq!(count(&found, blended(class_colour(2), 1.0)), 0, "no third curve");
    Ok(())
}
