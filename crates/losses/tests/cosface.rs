//! CosFace's loss against a hand computation with plain loops, its gradient against finite
//! differences, and its settings checked when a config is read.

use tch::{nn, Device, Kind, Tensor};

use facerec_losses::cosface::CosFaceConfig;
use facerec_losses::{Loss, LossConfig};

const FEATURES: [[f64; 2]; 3] = [[3.0, 4.0], [1.0, 0.0], [0.0, -2.0]];
const WEIGHTS: [[f64; 2]; 3] = [[1.0, 0.0], [0.0, 1.0], [-1.0, -1.0]];
const LABELS: [i64; 3] = [0, 2, 1];

/// Eq. 4 of the paper with plain loops: mean over samples of
/// `-log(e^{s(cos_y - m)} / (e^{s(cos_y - m)} + sum_{j != y} e^{s cos_j}))`.
fn by_hand(features: &[[f64; 2]], scale: f64, margin: f64) -> f64 {
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
                scale * if j as i64 == y { cos - margin } else { cos }
            })
            .collect();
        let denominator: f64 = logits.iter().map(|l| l.exp()).sum();
        total -= (logits[y as usize].exp() / denominator).ln();
    }
    total / features.len() as f64
}

fn loss(scale: f64, margin: f64) -> (nn::VarStore, Box<dyn Loss>) {
    let mut vs = nn::VarStore::new(Device::Cpu);
    let loss = LossConfig::new(CosFaceConfig { scale, margin }).build(&vs.root(), 2, 3).unwrap();
    vs.double();
    tch::no_grad(|| vs.variables()["head.fc.weight"].shallow_clone().copy_(&Tensor::from_slice2(&WEIGHTS)));
    (vs, loss)
}

fn features() -> Tensor {
    Tensor::from_slice2(&FEATURES).to_kind(Kind::Double)
}

#[test]
fn the_loss_is_the_papers_equation() {
    let labels = Tensor::from_slice(&LABELS);
    for (scale, margin) in [(2.0, 0.3), (64.0, 0.35), (1.0, 0.0)] {
        let (_vs, l) = loss(scale, margin);
        let out = l.forward(&features(), &labels).unwrap();
        let got = f64::try_from(&out.objective).unwrap();
        let want = by_hand(&FEATURES, scale, margin);
        assert!((got - want).abs() < 1e-9 * want.abs().max(1.0), "s {scale} m {margin}: {got} vs {want}");
        assert_eq!(f64::try_from(&out.terms[0]).unwrap(), got);
        // The logits for accuracy are s cos, without the margin.
        let logits = l.logits(&features()).unwrap();
        let expected = 0.6 * scale; // sample 0 (3, 4)/5 against class 0 (1, 0)
        assert!((f64::try_from(logits.get(0).get(0)).unwrap() - expected).abs() < 1e-12);
    }
}

#[test]
fn the_gradient_matches_finite_differences() {
    let labels = Tensor::from_slice(&LABELS);
    let (_vs, l) = loss(4.0, 0.35);
    let x = features().set_requires_grad(true);
    l.forward(&x, &labels).unwrap().objective.backward();
    let grad = x.grad();
    let eps = 1e-6;
    for i in 0..3 {
        for d in 0..2 {
            let mut plus = FEATURES;
            let mut minus = FEATURES;
            plus[i][d] += eps;
            minus[i][d] -= eps;
            let numeric = (by_hand(&plus, 4.0, 0.35) - by_hand(&minus, 4.0, 0.35)) / (2.0 * eps);
            let analytic = f64::try_from(grad.get(i as i64).get(d as i64)).unwrap();
            assert!((numeric - analytic).abs() < 1e-6, "d/dx[{i}][{d}]: {analytic} vs {numeric}");
        }
    }
}

#[test]
fn settings_are_checked_with_their_key() {
    let parse = |text: &str| toml::from_str::<LossConfig>(text).map(|_| ()).unwrap_err().to_string();
    assert!(parse("name = \"cosface\"\nmargin = 1.2").contains("loss.margin must be in [0, 1), got 1.2"));
    assert!(parse("name = \"cosface\"\nscale = 0").contains("loss.scale must be > 0"));
    assert!(parse("name = \"cosface\"\nmargins = 0.3").contains("margins"));
    let ok: LossConfig = toml::from_str("name = \"cosface\"").unwrap();
    assert_eq!(ok.setting("scale").and_then(toml::Value::as_float), Some(64.0));
}
