//! What the loss tests share: the PyTorch references of `scripts/reference`, and the checks of
//! a margin loss's logits and gradients on 2-D features.

// Each test file uses its own part of this module.
#![allow(dead_code)]

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use facerec_losses::Loss;
use tch::Tensor;

pub type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error>>;

/// Runs `scripts/reference/<script>` with facerec's Python (`FACEREC_PYTHON`, else the set-up
/// script's venv) on `case`, given as JSON on its stdin, and returns the JSON it prints.
pub fn reference(script: &str, case: &serde_json::Value) -> Result<serde_json::Value> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let python = std::env::var("FACEREC_PYTHON").map(Into::into).unwrap_or_else(|_| root.join(".deps/venv/bin/python"));
    let mut child = Command::new(&python).arg(root.join("scripts/reference").join(script)).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn()?;
    child.stdin.take().ok_or("stdin")?.write_all(case.to_string().as_bytes())?;
    let out = child.wait_with_output()?;
    assert!(out.status.success(), "{script} on {case}: {}", String::from_utf8_lossy(&out.stdout));
    Ok(serde_json::from_slice(&out.stdout)?)
}

/// The loss's logits at `features` against the reference's `logits`, within 1e-5.
pub fn assert_logits(loss: &dyn Loss, features: &[[f64; 2]], reference: &serde_json::Value, what: &str) -> Result {
    let logits = Vec::<Vec<f64>>::try_from(loss.logits(&Tensor::from_slice2(features))?)?;
    let want: Vec<Vec<f64>> = serde_json::from_value(reference["logits"].clone())?;
    for (a, b) in logits.iter().flatten().zip(want.iter().flatten()) {
        assert!((a - b).abs() <= 1e-5, "{what}: logits {logits:?} vs {want:?}");
    }
    Ok(())
}

/// Autograd's gradient of the loss's objective at `features` against central differences of
/// `by_hand` (the same loss by plain arithmetic).
pub fn assert_gradient(loss: &dyn Loss, features: [[f64; 2]; 3], labels: &[i64], by_hand: impl Fn(&[[f64; 2]; 3]) -> f64, what: &str) {
    let x = Tensor::from_slice2(&features).set_requires_grad(true);
    loss.forward(&x, &Tensor::from_slice(labels)).unwrap().objective.backward();
    let grad = x.grad();
    let eps = 1e-6;
    for i in 0..3 {
        for d in 0..2 {
            let (mut plus, mut minus) = (features, features);
            plus[i][d] += eps;
            minus[i][d] -= eps;
            let numeric = (by_hand(&plus) - by_hand(&minus)) / (2.0 * eps);
            let analytic = f64::try_from(grad.get(i as i64).get(d as i64)).unwrap();
            assert!((numeric - analytic).abs() < 1e-5 * numeric.abs().max(1.0), "{what} d/dx[{i}][{d}]: {analytic} vs {numeric}");
        }
    }
}
