//! The three center updates (`loss.update`): caffe-face's against a plain loop of caffe's SGD
//! solver on the layer's gradient, the pytorch-center-loss way against that repository's own
//! code run by PyTorch (scripts/reference/center_updates.py), and their settings' errors.

use facerec_losses::{CenterLoss, CenterRule, LossConfig, OneProcess, SolverStep};
use tch::{nn, Device, Kind, Tensor};

mod common;
use common::Result;

fn rows(t: &Tensor) -> Vec<Vec<f64>> {
    Vec::<Vec<f64>>::try_from(t.to_kind(Kind::Double)).unwrap()
}

/// A double-precision table of `k` classes x `dim` moved by `rule`, its centers random.
fn table(k: i64, dim: i64, lambda: f64, rule: CenterRule) -> (nn::VarStore, CenterLoss) {
    let mut vs = nn::VarStore::new(Device::Cpu);
    let cl = CenterLoss::with_rule(&vs.root(), k, dim, lambda, rule).unwrap();
    vs.set_kind(Kind::Double);
    tch::no_grad(|| cl.centers().shallow_clone().copy_(&Tensor::randn([k, dim], (Kind::Double, Device::Cpu))));
    (vs, cl)
}

fn assert_close(got: &[Vec<f64>], want: &[Vec<f64>], tol: f64, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}");
    for (j, (g, w)) in got.iter().zip(want).enumerate() {
        for (d, (a, b)) in g.iter().zip(w).enumerate() {
            assert!((a - b).abs() <= tol, "{what} [{j}][{d}]: {a} vs {b}");
        }
    }
}

/// caffe's SGD solver (`Regularize`, `ComputeUpdateValue`, `Update`) on caffe-face's center
/// gradient, three steps at changing learning rates: every row moves, absent classes by
/// momentum and decay alone.
#[test]
fn caffe_update_is_caffes_solver_on_the_layers_gradient() {
    tch::manual_seed(5);
    let (k, dim, m) = (6usize, 3usize, 20usize);
    let (lr_mult, decay_mult) = (1.5, 2.0);
    let (_vs, cl) = table(k as i64, dim as i64, 0.01, CenterRule::Caffe { lr_mult, decay_mult });
    let mut centers = rows(cl.centers());
    let start = centers.clone();
    let mut history = vec![vec![0.0; dim]; k];
    for (step, lr) in [0.1, 0.1, 0.01].into_iter().enumerate() {
        let solver = SolverStep { lr, momentum: 0.9, weight_decay: 5e-4 };
        let x = Tensor::randn([m as i64, dim as i64], (Kind::Double, Device::Cpu));
        // Classes 0..4 only: 4 and 5 never appear.
        let y = Tensor::randint(4, [m as i64], (Kind::Int64, Device::Cpu));
        let (xs, ys) = (rows(&x), Vec::<i64>::try_from(&y).unwrap());
        for j in 0..k {
            let members: Vec<usize> = (0..m).filter(|&i| ys[i] == j as i64).collect();
            for d in 0..dim {
                // center_loss_layer.cpp's backward: variation_sum / (count + 1).
                let dc = members.iter().map(|&i| centers[j][d] - xs[i][d]).sum::<f64>() / (1.0 + members.len() as f64);
                let diff = dc + solver.weight_decay * decay_mult * centers[j][d];
                history[j][d] = solver.momentum * history[j][d] + solver.lr * lr_mult * diff;
                centers[j][d] -= history[j][d];
            }
        }
        cl.update(&x, &y, solver).unwrap();
        assert_close(&rows(cl.centers()), &centers, 1e-12, &format!("centers after step {}", step + 1));
    }
    assert_ne!(rows(cl.centers())[5], start[5], "momentum and decay move absent classes too, as in caffe");
}

/// With no momentum and no decay, caffe-face's first step is Eq. 4 at alpha = lr x lr_mult.
#[test]
fn caffes_first_step_without_momentum_is_eq4() {
    tch::manual_seed(9);
    let x = Tensor::randn([12, 4], (Kind::Double, Device::Cpu));
    let y = Tensor::randint(5, [12], (Kind::Int64, Device::Cpu));
    let (_a, paper) = table(5, 4, 0.1, CenterRule::Paper { alpha: 0.3 });
    let (_b, caffe) = table(5, 4, 0.1, CenterRule::Caffe { lr_mult: 3.0, decay_mult: 0.0 });
    tch::no_grad(|| caffe.centers().shallow_clone().copy_(paper.centers()));
    paper.update_centers(&x, &y).unwrap();
    caffe.update(&x, &y, SolverStep { lr: 0.1, momentum: 0.9, weight_decay: 5e-4 }).unwrap();
    assert_close(&rows(caffe.centers()), &rows(paper.centers()), 1e-12, "caffe's first step vs Eq. 4");
}

/// `update = "sgd"` with lambda = 2 weight_cent and alpha = 2 lr_cent reproduces
/// pytorch-center-loss's training step, run by PyTorch: the loss, the features' gradient and
/// the centers after each of three steps.
#[test]
fn sgd_update_matches_pytorch_center_loss() -> Result {
    let (weight_cent, lr_cent) = (0.05, 0.5);
    tch::manual_seed(21);
    let (_vs, cl) = table(4, 3, 2.0 * weight_cent, CenterRule::Sgd { lr: 2.0 * lr_cent });
    let steps: Vec<(Tensor, Tensor)> =
        (0..3).map(|_| (Tensor::randn([10, 3], (Kind::Double, Device::Cpu)), Tensor::randint(3, [10], (Kind::Int64, Device::Cpu)))).collect();
    let case = serde_json::json!({
        "centers": rows(cl.centers()),
        "weight_cent": weight_cent,
        "lr_cent": lr_cent,
        "steps": steps.iter().map(|(x, y)| serde_json::json!({"features": rows(x), "labels": Vec::<i64>::try_from(y).unwrap()})).collect::<Vec<_>>(),
    });
    let reference: Vec<serde_json::Value> = serde_json::from_value(common::reference("center_updates.py", &case)?)?;
    for (i, ((x, y), want)) in steps.iter().zip(&reference).enumerate() {
        let x = x.copy().set_requires_grad(true);
        let forward = cl.forward(&x, y)?;
        // Their L_C has no 1/2 (and adds 1e-12 for each other class's masked distance).
        let loss = 2.0 * f64::try_from(&forward.loss)?;
        assert!((loss - want["loss"].as_f64().ok_or("loss")?).abs() < 1e-9, "step {i}: loss {loss} vs {}", want["loss"]);
        forward.objective.backward();
        let grad: Vec<Vec<f64>> = serde_json::from_value(want["feature_grad"].clone())?;
        assert_close(&rows(&x.grad()), &grad, 1e-12, &format!("feature gradient at step {i}"));
        cl.update(&x.detach(), y, SolverStep { lr: 0.1, momentum: 0.9, weight_decay: 5e-4 })?;
        let centers: Vec<Vec<f64>> = serde_json::from_value(want["centers"].clone())?;
        assert_close(&rows(cl.centers()), &centers, 1e-12, &format!("centers after step {i}"));
    }
    Ok(())
}

/// The caffe rule's momentum history is a variable of the loss (so checkpoints hold it); the
/// other rules add none, and none is trainable.
#[test]
fn only_caffes_rule_keeps_a_momentum_table() {
    for (text, names) in [
        ("lambda = 0.1\nalpha = 0.5", vec!["center.centers", "head.fc.bias", "head.fc.weight"]),
        ("lambda = 0.1\nalpha = 0.5\nupdate = \"sgd\"", vec!["center.centers", "head.fc.bias", "head.fc.weight"]),
        ("lambda = 0.1\nupdate = \"caffe\"", vec!["center.centers", "center.momentum", "head.fc.bias", "head.fc.weight"]),
    ] {
        let config: LossConfig = toml::from_str(text).unwrap();
        let vs = nn::VarStore::new(Device::Cpu);
        let loss = config.build(&vs.root(), 2, 3).unwrap();
        let mut got: Vec<String> = vs.variables().into_keys().collect();
        got.sort();
        assert_eq!(got, names, "{text}");
        assert_eq!(vs.trainable_variables().len(), 2, "{text}: only the classifier is trained by the optimiser");
        assert_eq!(loss.synced_state().len(), names.len() - 2, "{text}");
        let (x, y) = (Tensor::from_slice2(&[[1.0f32, 2.0], [0.5, -1.0]]), Tensor::from_slice(&[0i64, 2]));
        loss.after_step(&x, &y, SolverStep { lr: 0.1, momentum: 0.9, weight_decay: 0.0 }, &OneProcess).unwrap();
        let moved = rows(loss.centers().unwrap());
        assert!(moved[0][0] > 0.0 && moved[2][1] < 0.0 && moved[1] == [0.0, 0.0], "{text}: {moved:?}");
    }
}

#[test]
fn settings_are_checked_with_their_key() {
    for (text, message) in [
        ("lambda = 0.1\nupdate = \"caffe\"\nalpha = 0.5", "loss.alpha has no meaning with update = \"caffe\""),
        ("lambda = 0.1\nalpha = 0.5\nlr_mult = 2.0", "loss.lr_mult is a setting of update = \"caffe\", not of update = \"paper\""),
        ("lambda = 0.1\nalpha = 0.5\nupdate = \"sgd\"\ndecay_mult = 2.0", "loss.decay_mult is a setting of update = \"caffe\""),
        ("lambda = 0.1", "loss.alpha is required with update = \"paper\""),
        ("lambda = 0.1\nupdate = \"sgd\"", "loss.alpha is required with update = \"sgd\""),
        ("lambda = 0.1\nalpha = 1.5", "loss.alpha must be in [0, 1]"),
        ("lambda = 0.1\nalpha = 1.5\nupdate = \"sgd\"", ""),
        ("lambda = 0.1\nalpha = -1.0\nupdate = \"sgd\"", "loss.alpha (the centers' SGD learning rate) must be >= 0"),
        ("lambda = 0.1\nupdate = \"caffe\"\nlr_mult = -1.0", "loss.lr_mult must be >= 0"),
        ("lambda = 0.1\nupdate = \"caffe\"\ndecay_mult = nan", "loss.decay_mult must be >= 0"),
        ("lambda = 0.1\nalpha = 0.5\nupdate = \"adam\"", "unknown variant `adam`, expected one of `paper`, `caffe`, `sgd`"),
    ] {
        let result = toml::from_str::<LossConfig>(text);
        match (result, message) {
            (Ok(_), "") => {}
            (Ok(_), _) => panic!("{text}: accepted, expected {message:?}"),
            (Err(e), _) => assert!(!message.is_empty() && e.to_string().contains(message), "{text}: {e}"),
        }
    }
}
