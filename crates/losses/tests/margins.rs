//! The margin losses (CosFace, ArcFace, the combined margin): values against plain loops of the
//! papers' equations and against PyTorch (scripts/reference/margin_losses.py), gradients
//! against central finite differences, the angles 0 and pi (ArcFace's fallback), and their
//! settings' errors.

use std::f64::consts::PI;

use tch::{nn, Device, Tensor};

use facerec_losses::arcface::ArcFaceConfig;
use facerec_losses::combined_margin::CombinedMarginConfig;
use facerec_losses::cosface::CosFaceConfig;
use facerec_losses::{Loss, LossConfig};

mod common;
use common::Result;

const WEIGHTS: [[f64; 2]; 3] = [[1.0, 0.0], [0.0, 1.0], [-1.0, -1.0]];
/// Labels at both ends of the class range and between.
const LABELS: [i64; 3] = [0, 2, 1];
const FEATURES: [[f64; 2]; 3] = [[3.0, 4.0], [1.0, 0.0], [0.0, -2.0]];

/// A margin on the target class's cosine, by plain arithmetic.
#[derive(Debug, Clone, Copy)]
enum Margin {
    Cos(f64),
    Arc { m: f64, easy: bool },
    Combined(f64, f64, f64),
}

impl Margin {
    fn target(self, cos: f64) -> f64 {
        let clamped = cos.clamp(-1.0 + 1e-7, 1.0 - 1e-7);
        match self {
            Margin::Cos(m) => cos - m,
            Margin::Arc { m, easy } => {
                let theta = clamped.acos();
                let fits = if easy { clamped > 0.0 } else { theta + m < PI };
                match (fits, easy) {
                    (true, _) => (theta + m).cos(),
                    (false, true) => clamped,
                    (false, false) => clamped - m * m.sin(),
                }
            }
            Margin::Combined(m1, m2, m3) => (m1 * clamped.acos() + m2).cos() - m3,
        }
    }

    fn config(self, scale: f64) -> LossConfig {
        match self {
            Margin::Cos(margin) => LossConfig::new(CosFaceConfig { scale, margin }),
            Margin::Arc { m, easy } => LossConfig::new(ArcFaceConfig { scale, margin: m, easy_margin: easy }),
            Margin::Combined(m1, m2, m3) => LossConfig::new(CombinedMarginConfig { scale, m1, m2, m3, margin_gradient: Default::default() }),
        }
    }

    /// The case as scripts/reference/margin_losses.py reads it.
    fn case(self, scale: f64, features: &[[f64; 2]]) -> String {
        let loss = match self {
            Margin::Cos(m) => format!("\"loss\": \"cosface\", \"margin\": {m}"),
            Margin::Arc { m, easy } => format!("\"loss\": \"arcface\", \"margin\": {m}, \"easy_margin\": {easy}"),
            Margin::Combined(m1, m2, m3) => format!("\"loss\": \"combined_margin\", \"m1\": {m1}, \"m2\": {m2}, \"m3\": {m3}"),
        };
        format!("{{{loss}, \"scale\": {scale}, \"features\": {features:?}, \"weights\": {WEIGHTS:?}, \"labels\": {LABELS:?}}}")
    }
}

/// The mean over samples of `-log softmax(s * cos with the target's margin)[y]`, by plain loops.
fn by_hand(features: &[[f64; 2]], scale: f64, margin: Margin) -> f64 {
    let unit = |v: [f64; 2]| {
        let n = (v[0] * v[0] + v[1] * v[1]).sqrt();
        [v[0] / n, v[1] / n]
    };
    let mut total = 0.0;
    for (x, &y) in features.iter().zip(&LABELS) {
        let x = unit(*x);
        let logits: Vec<f64> = WEIGHTS
            .iter()
            .enumerate()
            .map(|(j, w)| {
                let w = unit(*w);
                let cos = x[0] * w[0] + x[1] * w[1];
                scale * if j as i64 == y { margin.target(cos) } else { cos }
            })
            .collect();
        let denominator: f64 = logits.iter().map(|l| l.exp()).sum();
        total -= (logits[y as usize].exp() / denominator).ln();
    }
    total / features.len() as f64
}

fn build(margin: Margin, scale: f64) -> (nn::VarStore, Box<dyn Loss>) {
    let mut vs = nn::VarStore::new(Device::Cpu);
    let loss = margin.config(scale).build(&vs.root(), 2, 3).unwrap();
    vs.double();
    tch::no_grad(|| vs.variables()["head.fc.weight"].shallow_clone().copy_(&Tensor::from_slice2(&WEIGHTS)));
    (vs, loss)
}

fn value(margin: Margin, scale: f64, features: &[[f64; 2]]) -> f64 {
    let (_vs, loss) = build(margin, scale);
    let out = loss.forward(&Tensor::from_slice2(features), &Tensor::from_slice(&LABELS)).unwrap();
    assert_eq!(f64::try_from(&out.terms[0]).unwrap(), f64::try_from(&out.objective).unwrap());
    f64::try_from(&out.objective).unwrap()
}

const CASES: [(Margin, f64); 6] = [
    (Margin::Cos(0.3), 2.0),
    (Margin::Cos(0.35), 64.0),
    (Margin::Arc { m: 0.5, easy: false }, 4.0),
    (Margin::Arc { m: 0.5, easy: true }, 4.0),
    (Margin::Combined(1.0, 0.3, 0.2), 8.0),
    (Margin::Combined(1.35, 0.0, 0.0), 8.0),
];

#[test]
fn values_are_the_papers_equations() {
    // The sample (0, -2) of class 1 sits at pi from its class: ArcFace's fallback branch.
    for (margin, scale) in CASES {
        let (got, want) = (value(margin, scale, &FEATURES), by_hand(&FEATURES, scale, margin));
        assert!((got - want).abs() < 1e-9 * want.abs().max(1.0), "{margin:?} s {scale}: {got} vs {want}");
    }
    // The logits for accuracy are s cos, without the margin.
    let (_vs, loss) = build(Margin::Arc { m: 0.5, easy: false }, 4.0);
    let logits = loss.logits(&Tensor::from_slice2(&FEATURES)).unwrap();
    assert!((f64::try_from(logits.get(0).get(0)).unwrap() - 4.0 * 0.6).abs() < 1e-12);
}

#[test]
fn values_and_logits_match_pytorch() -> Result {
    for (margin, scale) in CASES {
        let reference = common::reference("margin_losses.py", &serde_json::from_str(&margin.case(scale, &FEATURES))?)?;
        let want = reference["loss"].as_f64().ok_or("loss")?;
        let got = value(margin, scale, &FEATURES);
        assert!((got - want).abs() <= 1e-5, "{margin:?} s {scale}: facerec {got}, PyTorch {want}");
        let (_vs, loss) = build(margin, scale);
        common::assert_logits(&*loss, &FEATURES, &reference, &format!("{margin:?}"))?;
    }
    Ok(())
}

#[test]
fn gradients_match_central_differences() {
    // Away from the clamp and the fallback's switch, where the loss is smooth.
    let features = [[3.0, 4.0], [1.0, 0.5], [-0.4, 2.0]];
    for (margin, scale) in CASES {
        let (_vs, loss) = build(margin, scale);
        common::assert_gradient(&*loss, features, &LABELS, |f| by_hand(f, scale, margin), &format!("{margin:?}"));
    }
}

#[test]
fn angles_zero_and_pi_give_finite_losses_and_gradients() {
    // Each sample exactly on its class's direction (angle 0), then exactly opposite (pi).
    let on = [[1.0, 0.0], [-1.0, -1.0], [0.0, 1.0]];
    let opposite = [[-1.0, 0.0], [1.0, 1.0], [0.0, -1.0]];
    for features in [on, opposite] {
        for (margin, scale) in CASES {
            let (_vs, loss) = build(margin, scale);
            let x = Tensor::from_slice2(&features).set_requires_grad(true);
            let out = loss.forward(&x, &Tensor::from_slice(&LABELS)).unwrap();
            let got = f64::try_from(&out.objective).unwrap();
            let want = by_hand(&features, scale, margin);
            assert!((got - want).abs() < 1e-6 * want.abs().max(1.0), "{margin:?} at {features:?}: {got} vs {want}");
            out.objective.backward();
            let grad = Vec::<Vec<f64>>::try_from(x.grad()).unwrap();
            assert!(grad.iter().flatten().all(|g| g.is_finite()), "{margin:?} at {features:?}: {grad:?}");
        }
    }
    // At pi ArcFace's target is cos t - m sin m (below cos t), not cos(t + m), which would rise.
    let m = 0.5;
    assert!((Margin::Arc { m, easy: false }.target(-1.0) - (-1.0 - m * m.sin())).abs() < 1e-6);
}

#[test]
fn the_combined_margin_covers_cosface_and_arcface() {
    // Equal up to the combined margin's clamp of the cosine into (-1, 1) (1e-7).
    let close = |a: f64, b: f64| (a - b).abs() < 1e-6 * a.abs().max(1.0);
    // CosFace's margin m is m3 = m.
    assert!(close(value(Margin::Combined(1.0, 0.0, 0.35), 8.0, &FEATURES), value(Margin::Cos(0.35), 8.0, &FEATURES)));
    // ArcFace's margin is m2 where no sample needs the fallback (each within pi - m of its class).
    let features = [[3.0, 4.0], [-1.0, -0.5], [-0.4, 2.0]];
    let arc = value(Margin::Arc { m: 0.5, easy: false }, 8.0, &features);
    assert!((value(Margin::Combined(1.0, 0.5, 0.0), 8.0, &features) - arc).abs() < 1e-6, "{arc}");
}

#[test]
fn settings_are_checked_with_their_key() {
    let parse = |text: &str| toml::from_str::<LossConfig>(text).map(|_| ()).unwrap_err().to_string();
    assert!(parse("name = \"cosface\"\nmargin = 1.2").contains("loss.margin must be in [0, 1), got 1.2"));
    assert!(parse("name = \"cosface\"\nscale = 0").contains("loss.scale must be > 0"));
    assert!(parse("name = \"cosface\"\nmargins = 0.3").contains("margins"));
    assert!(parse("name = \"arcface\"\nmargin = 2.0").contains("loss.margin must be in [0, pi/2) radians"));
    assert!(parse("name = \"arcface\"\nscale = -1").contains("loss.scale must be > 0"));
    assert!(parse("name = \"combined_margin\"\nm1 = 0.5").contains("loss.m1 must be >= 1"));
    assert!(parse("name = \"combined_margin\"\nm3 = 1.5").contains("loss.m3 must be in [0, 1)"));
    let ok: LossConfig = toml::from_str("name = \"arcface\"").unwrap();
    assert_eq!(ok.setting("margin").and_then(toml::Value::as_float), Some(0.5));
    assert_eq!(ok.setting("easy_margin").and_then(toml::Value::as_bool), Some(false));
}

/// docs/adding-a-loss.md shows CosFace's file whole and its registry line: both as the code is.
#[test]
fn docs_show_the_code_as_it_is() -> Result {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let doc = std::fs::read_to_string(root.join("docs/adding-a-loss.md"))?;
    let file = std::fs::read_to_string(root.join("crates/losses/src/cosface.rs"))?;
    let blocks: Vec<&str> = doc.split("```rust\n").skip(1).filter_map(|b| b.split("```").next()).collect();
    assert!(blocks.contains(&file.as_str()), "docs/adding-a-loss.md's copy of crates/losses/src/cosface.rs differs from the file");
    let registry = std::fs::read_to_string(root.join("crates/losses/src/loss.rs"))?;
    let line = "    registry.add(erase::<CosFaceConfig>);\n";
    assert!(registry.contains(line) && blocks.contains(&line), "the registry line of the docs is not the code's");
    Ok(())
}
