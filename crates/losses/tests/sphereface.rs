//! SphereFace (A-Softmax): values against a plain loop of the paper's equation and against
//! sphereface_pytorch's formulation run by PyTorch (scripts/reference/margin_losses.py), the
//! gradient against central finite differences, the angles 0 and pi, the lambda annealing
//! through training steps, and the settings' errors.

use std::f64::consts::PI;

use facerec_losses::{Loss, LossConfig, OneProcess, SolverStep};
use tch::{nn, Device, Kind, Tensor};

mod common;
use common::Result;

const WEIGHTS: [[f64; 2]; 3] = [[2.0, 0.0], [0.0, 1.0], [-1.0, -1.0]];
/// Labels at both ends of the class range and between.
const LABELS: [i64; 3] = [0, 2, 1];
const FEATURES: [[f64; 2]; 3] = [[3.0, 4.0], [1.0, 0.0], [-0.4, -2.0]];
const SOLVER: SolverStep = SolverStep { lr: 0.1, momentum: 0.9, weight_decay: 5e-4 };

/// A-Softmax with margin `m` and the annealing at lambda `lambda` for every iteration
/// (`base = lambda_min = lambda`).
fn build(m: u32, lambda: f64) -> (nn::VarStore, Box<dyn Loss>) {
    let text = format!("name = \"sphereface\"\nmargin = {m}\nbase = {lambda:?}\nlambda_min = {lambda:?}");
    let config: LossConfig = toml::from_str(&text).unwrap();
    let mut vs = nn::VarStore::new(Device::Cpu);
    let loss = config.build(&vs.root(), 2, 3).unwrap();
    vs.set_kind(Kind::Double);
    tch::no_grad(|| vs.variables()["head.fc.weight"].shallow_clone().copy_(&Tensor::from_slice2(&WEIGHTS)));
    (vs, loss)
}

/// The mean over samples of `-log softmax(logits)[y]` with the target logit
/// `||x|| (lambda cos t + psi(t)) / (1 + lambda)`, by plain arithmetic.
fn by_hand(features: &[[f64; 2]], m: u32, lambda: f64) -> f64 {
    let mut total = 0.0;
    for (x, &y) in features.iter().zip(&LABELS) {
        let norm = (x[0] * x[0] + x[1] * x[1]).sqrt();
        let logits: Vec<f64> = WEIGHTS
            .iter()
            .enumerate()
            .map(|(j, w)| {
                let wn = (w[0] * w[0] + w[1] * w[1]).sqrt();
                let cos = (x[0] * w[0] + x[1] * w[1]) / (norm * wn);
                if j as i64 != y {
                    return norm * cos;
                }
                // The target's cosine is kept inside (-1, 1), where acos has a finite gradient.
                let cos = cos.clamp(-1.0 + 1e-7, 1.0 - 1e-7);
                let t = cos.acos();
                let k = (f64::from(m) * t / PI).floor().min(f64::from(m) - 1.0);
                let psi = (-1f64).powf(k) * (f64::from(m) * t).cos() - 2.0 * k;
                norm * (lambda * cos + psi) / (1.0 + lambda)
            })
            .collect();
        let denominator: f64 = logits.iter().map(|l| l.exp()).sum();
        total -= (logits[y as usize].exp() / denominator).ln();
    }
    total / features.len() as f64
}

fn value(loss: &dyn Loss, features: &[[f64; 2]]) -> f64 {
    f64::try_from(loss.forward(&Tensor::from_slice2(features), &Tensor::from_slice(&LABELS)).unwrap().objective).unwrap()
}

const CASES: [(u32, f64); 5] = [(4, 0.0), (4, 5.0), (2, 0.0), (3, 1.0), (1, 0.0)];

#[test]
fn values_are_the_papers_equation() {
    // (-0.4, -2) of class 1 lies near pi from its class: psi's last piece.
    for (m, lambda) in CASES {
        let (_vs, loss) = build(m, lambda);
        let (got, want) = (value(&*loss, &FEATURES), by_hand(&FEATURES, m, lambda));
        assert!((got - want).abs() < 1e-9 * want.abs().max(1.0), "m {m} lambda {lambda}: {got} vs {want}");
    }
}

#[test]
fn values_and_logits_match_pytorch() -> Result {
    for (m, lambda) in CASES {
        let case = serde_json::json!({"loss": "sphereface", "margin": m, "lambda": lambda, "features": FEATURES, "weights": WEIGHTS, "labels": LABELS});
        let reference = common::reference("margin_losses.py", &case)?;
        let (_vs, loss) = build(m, lambda);
        let (got, want) = (value(&*loss, &FEATURES), reference["loss"].as_f64().ok_or("loss")?);
        assert!((got - want).abs() <= 1e-5, "m {m} lambda {lambda}: facerec {got}, PyTorch {want}");
        common::assert_logits(&*loss, &FEATURES, &reference, &format!("m {m}"))?;
    }
    Ok(())
}

#[test]
fn gradients_match_central_differences() {
    // Away from the clamp and psi's joints, where the loss is smooth.
    let features = [[3.0, 4.0], [1.0, 0.5], [-0.4, 2.0]];
    for (m, lambda) in CASES {
        let (_vs, loss) = build(m, lambda);
        common::assert_gradient(&*loss, features, &LABELS, |f| by_hand(f, m, lambda), &format!("m {m} lambda {lambda}"));
    }
}

#[test]
fn angles_zero_and_pi_give_finite_losses_and_gradients() {
    let on = [[1.0, 0.0], [-1.0, -1.0], [0.0, 1.0]];
    let opposite = [[-1.0, 0.0], [1.0, 1.0], [0.0, -1.0]];
    for features in [on, opposite] {
        for (m, lambda) in CASES {
            let (_vs, loss) = build(m, lambda);
            let x = Tensor::from_slice2(&features).set_requires_grad(true);
            let out = loss.forward(&x, &Tensor::from_slice(&LABELS)).unwrap();
            let (got, want) = (f64::try_from(&out.objective).unwrap(), by_hand(&features, m, lambda));
            assert!((got - want).abs() < 1e-6 * want.abs().max(1.0), "m {m} at {features:?}: {got} vs {want}");
            out.objective.backward();
            let grad = Vec::<Vec<f64>>::try_from(x.grad()).unwrap();
            assert!(grad.iter().flatten().all(|g| g.is_finite()), "m {m} at {features:?}: {grad:?}");
        }
    }
}

/// Each training step advances the annealing: lambda = max(lambda_min, base (1 + gamma it)^-power);
/// the counter is a variable of the loss (in checkpoints), never trained.
#[test]
fn lambda_anneals_with_the_steps() {
    let text = "name = \"sphereface\"\nmargin = 4\nbase = 1000.0\ngamma = 0.5\npower = 1.0\nlambda_min = 20.0";
    let config: LossConfig = toml::from_str(text).unwrap();
    let mut vs = nn::VarStore::new(Device::Cpu);
    let loss = config.build(&vs.root(), 2, 3).unwrap();
    vs.set_kind(Kind::Double);
    tch::no_grad(|| vs.variables()["head.fc.weight"].shallow_clone().copy_(&Tensor::from_slice2(&WEIGHTS)));
    assert_eq!(vs.trainable_variables().len(), 1, "the counter is not trained");
    let (x, y) = (Tensor::from_slice2(&FEATURES), Tensor::from_slice(&LABELS));
    for it in 0..120 {
        let lambda = (1000.0 / (1.0 + 0.5 * f64::from(it))).max(20.0);
        let got = value(&*loss, &FEATURES);
        let want = by_hand(&FEATURES, 4, lambda);
        assert!((got - want).abs() < 1e-9 * want.abs().max(1.0), "iteration {it}: {got} vs {want} (lambda {lambda})");
        loss.after_step(&x, &y, SOLVER, &OneProcess).unwrap();
    }
    assert_eq!(f64::try_from(&vs.variables()["head.iteration"]).unwrap(), 120.0);
}

#[test]
fn settings_are_checked_with_their_key() {
    let parse = |text: &str| toml::from_str::<LossConfig>(text).map(|_| ()).unwrap_err().to_string();
    assert!(parse("name = \"sphereface\"\nmargin = 0").contains("loss.margin must be an integer from 1 to 5, got 0"));
    assert!(parse("name = \"sphereface\"\nmargin = 6").contains("loss.margin must be an integer from 1 to 5"));
    assert!(parse("name = \"sphereface\"\nmargin = 1.5").contains("margin"));
    assert!(parse("name = \"sphereface\"\ngamma = -0.1").contains("loss.gamma must be >= 0"));
    assert!(parse("name = \"sphereface\"\nlambda_min = nan").contains("loss.lambda_min must be >= 0"));
    let ok: LossConfig = toml::from_str("name = \"sphereface\"").unwrap();
    assert_eq!(ok.setting("margin").and_then(toml::Value::as_integer), Some(4));
}
