//! Center loss checked three independent ways: a case worked by hand, finite differences of
//! the loss, and a plain-loop implementation of the paper's Eq. 4 on random data.

use facerec_losses::{CenterLoss, CenterLossConfig, LossError, SoftmaxLoss};
use tch::{nn, Device, Kind, Tensor};

/// The optimiser's state as the trainer passes it (the paper's update does not use it).
const SOLVER: facerec_losses::SolverStep = facerec_losses::SolverStep { lr: 0.1, momentum: 0.9, weight_decay: 5e-4 };

fn t2(rows: &[[f64; 2]]) -> Tensor {
    let flat: Vec<f64> = rows.iter().flatten().copied().collect();
    Tensor::from_slice(&flat).view([rows.len() as i64, 2])
}

fn rows(t: &Tensor) -> Vec<Vec<f64>> {
    let t = t.to_kind(Kind::Double);
    (0..t.size()[0]).map(|i| Vec::<f64>::try_from(t.get(i)).unwrap()).collect()
}

/// A center loss over 3 classes of 2-D features with the given centers (double precision).
fn center_loss(vs: &mut nn::VarStore, centers: &[[f64; 2]], lambda: f64, alpha: f64) -> CenterLoss {
    let cl = CenterLoss::new(&vs.root(), centers.len() as i64, 2, CenterLossConfig { lambda, alpha }).unwrap();
    to_double(vs);
    tch::no_grad(|| cl.centers().shallow_clone().copy_(&t2(centers).to_kind(cl.centers().kind())));
    cl
}

fn double_store() -> nn::VarStore {
    nn::VarStore::new(Device::Cpu)
}

/// Variables are created as float; tests compute in double.
fn to_double(vs: &mut nn::VarStore) {
    vs.set_kind(Kind::Double);
}

#[test]
fn hand_worked_value_gradient_and_center_step() {
    // x = (1,2), (3,4), (0,0); y = 0, 1, 0; c0 = (1,1), c1 = (2,2), c2 = (5,5) (absent).
    let mut vs = double_store();
    let cl = center_loss(&mut vs, &[[1.0, 1.0], [2.0, 2.0], [5.0, 5.0]], 0.1, 0.5);
    let x = t2(&[[1.0, 2.0], [3.0, 4.0], [0.0, 0.0]]);
    let y = Tensor::from_slice(&[0i64, 1, 0]);

    // x - c: (0,1), (1,2), (-1,-1); squared norms 1, 5, 2; L_C = 8 / (2 * 3) = 4/3.
    let (value, grad) = cl.value_and_grad(&x, &y).unwrap();
    assert!((f64::try_from(&value).unwrap() - 4.0 / 3.0).abs() < 1e-12);
    // gradient (x - c) / 3
    let expected = [[0.0, 1.0 / 3.0], [1.0 / 3.0, 2.0 / 3.0], [-1.0 / 3.0, -1.0 / 3.0]];
    for (g, e) in rows(&grad).iter().zip(expected) {
        assert!((g[0] - e[0]).abs() < 1e-12 && (g[1] - e[1]).abs() < 1e-12, "{g:?} vs {e:?}");
    }

    // Eq. 4 with alpha 0.5:
    // class 0: sum (c0 - x) = (0,-1) + (1,1) = (1,0); / (1 + 2) = (1/3, 0); c0 = (1 - 1/6, 1).
    // class 1: (c1 - x) = (-1,-2); / (1 + 1) = (-0.5,-1); c1 = (2.25, 2.5).
    // class 2: absent, stays (5,5).
    cl.update_centers(&x, &y).unwrap();
    let c = rows(cl.centers());
    let expected = [[1.0 - 1.0 / 6.0, 1.0], [2.25, 2.5], [5.0, 5.0]];
    for (got, e) in c.iter().zip(expected) {
        assert!((got[0] - e[0]).abs() < 1e-12 && (got[1] - e[1]).abs() < 1e-12, "{got:?} vs {e:?}");
    }
}

#[test]
fn feature_gradient_matches_finite_differences() {
    tch::manual_seed(3);
    let mut vs = double_store();
    let cl = CenterLoss::new(&vs.root(), 4, 5, CenterLossConfig { lambda: 0.7, alpha: 0.5 }).unwrap();
    to_double(&mut vs);
    tch::no_grad(|| cl.centers().shallow_clone().copy_(&Tensor::randn([4, 5], (Kind::Double, Device::Cpu))));
    let x = Tensor::randn([6, 5], (Kind::Double, Device::Cpu));
    let y = Tensor::from_slice(&[0i64, 3, 3, 1, 0, 3]);
    let (_, grad) = cl.value_and_grad(&x, &y).unwrap();
    let loss_at = |x: &Tensor| f64::try_from(cl.value_and_grad(x, &y).unwrap().0).unwrap();
    let h = 1e-6;
    for i in 0..6 {
        for j in 0..5 {
            let bump = |d: f64| {
                let xp = x.copy();
                let _ = xp.get(i).get(j).fill_(f64::try_from(x.get(i).get(j)).unwrap() + d);
                xp
            };
            let fd = (loss_at(&bump(h)) - loss_at(&bump(-h))) / (2.0 * h);
            let an = f64::try_from(grad.get(i).get(j)).unwrap();
            assert!((fd - an).abs() < 1e-7, "d L_C / d x[{i}][{j}]: finite difference {fd}, analytic {an}");
        }
    }

    // The objective term carries value lambda * L_C and gradient lambda * grad to x only.
    let xg = x.copy().set_requires_grad(true);
    let out = cl.forward(&xg, &y).unwrap();
    out.objective.backward();
    let diff = f64::try_from((xg.grad() - &grad * 0.7).abs().max()).unwrap();
    assert!(diff < 1e-12, "autograd through the objective differs from lambda * grad by {diff}");
    let v = f64::try_from(&out.objective).unwrap();
    assert!((v - 0.7 * f64::try_from(&out.loss).unwrap()).abs() < 1e-12);
    assert!(!cl.centers().requires_grad(), "centers must stay out of autograd");
    assert!(vs.trainable_variables().is_empty(), "the center table must not be trainable");
}

#[test]
fn center_update_matches_a_plain_loop_over_eq4() {
    tch::manual_seed(11);
    let (k, dim, m, alpha) = (7usize, 3usize, 40usize, 0.35);
    let mut vs = double_store();
    let cl = CenterLoss::new(&vs.root(), k as i64, dim as i64, CenterLossConfig { lambda: 1.0, alpha }).unwrap();
    to_double(&mut vs);
    tch::no_grad(|| cl.centers().shallow_clone().copy_(&Tensor::randn([k as i64, dim as i64], (Kind::Double, Device::Cpu))));
    let x = Tensor::randn([m as i64, dim as i64], (Kind::Double, Device::Cpu));
    // labels drawn from 0..5 only, so classes 5 and 6 are absent
    let y = Tensor::randint(5, [m as i64], (Kind::Int64, Device::Cpu));

    let c0 = rows(cl.centers());
    let xs = rows(&x);
    let ys = Vec::<i64>::try_from(&y).unwrap();
    let mut expected = c0.clone();
    for j in 0..k {
        let members: Vec<usize> = (0..m).filter(|&i| ys[i] == j as i64).collect();
        for d in 0..dim {
            let s: f64 = members.iter().map(|&i| c0[j][d] - xs[i][d]).sum();
            expected[j][d] = c0[j][d] - alpha * s / (1.0 + members.len() as f64);
        }
    }
    cl.update_centers(&x, &y).unwrap();
    let got = rows(cl.centers());
    for j in 0..k {
        for d in 0..dim {
            assert!((got[j][d] - expected[j][d]).abs() < 1e-12, "center {j}[{d}]: {} vs {}", got[j][d], expected[j][d]);
        }
    }
    assert_eq!(got[5], c0[5]);
    assert_eq!(got[6], c0[6]);
}

#[test]
fn bad_labels_and_shapes_are_errors() {
    let vs = nn::VarStore::new(Device::Cpu);
    let cl = CenterLoss::new(&vs.root(), 3, 2, CenterLossConfig::default()).unwrap();
    let x = Tensor::zeros([2, 2], (Kind::Float, Device::Cpu));
    let err = cl.forward(&x, &Tensor::from_slice(&[0i64, 3])).unwrap_err();
    assert!(matches!(err, LossError::Label { label: 3, classes: 3 }), "{err}");
    let err = cl.forward(&x, &Tensor::from_slice(&[0i64])).unwrap_err();
    assert!(err.to_string().contains("labels"), "{err}");
    let err = cl.forward(&Tensor::zeros([2, 5], (Kind::Float, Device::Cpu)), &Tensor::from_slice(&[0i64, 1])).unwrap_err();
    assert!(err.to_string().contains("center table"), "{err}");
    for (lambda, alpha) in [(-0.1, 0.5), (0.1, 1.5), (f64::NAN, 0.5), (0.1, -0.01)] {
        assert!(CenterLoss::new(&(vs.root() / "x"), 3, 2, CenterLossConfig { lambda, alpha }).is_err());
    }
}

#[test]
fn softmax_loss_is_mean_cross_entropy() {
    let mut vs = double_store();
    let sm = SoftmaxLoss::new(&vs.root(), 2, 3);
    to_double(&mut vs);
    tch::no_grad(|| {
        sm.fc.weight.shallow_clone().copy_(&Tensor::from_slice(&[1.0, 0.0, 0.0, 1.0, 1.0, 1.0]).view([3, 2]));
        let _ = sm.fc.bias.as_ref().unwrap().shallow_clone().fill_(0.0);
    });
    let x = t2(&[[1.0, 2.0], [0.0, -1.0]]);
    let y = Tensor::from_slice(&[2i64, 0]);
    let out = sm.forward(&x, &y).unwrap();
    // logits (1,2,3) and (0,-1,-1); CE = log-sum-exp - logit[y]
    let lse = |l: [f64; 3]| l.iter().map(|v| v.exp()).sum::<f64>().ln();
    let expected = ((lse([1.0, 2.0, 3.0]) - 3.0) + (lse([0.0, -1.0, -1.0]) - 0.0)) / 2.0;
    assert!((f64::try_from(&out.loss).unwrap() - expected).abs() < 1e-12);
}

#[test]
fn center_loss_beside_a_margin_loss_on_normalised_features() {
    // [loss] name = "center", head = arcface, normalized = true: the terms are the head's and
    // the center term; with zero centers and unit features L_C = 1/(2M) sum ||x_i||^2 = 1/2.
    let config: facerec_losses::LossConfig =
        toml::from_str("lambda = 0.2\nalpha = 0.5\nnormalized = true\n[head]\nname = \"arcface\"\nscale = 8.0").unwrap();
    let vs = nn::VarStore::new(Device::Cpu);
    let loss = config.build(&vs.root(), 2, 3).unwrap();
    assert_eq!(loss.terms().iter().map(|t| (t.name, t.weight)).collect::<Vec<_>>(), [("arcface_loss", 1.0), ("center_loss", 0.2)]);
    let mut names: Vec<String> = vs.variables().into_keys().collect();
    names.sort();
    assert_eq!(names, ["center.centers", "head.fc.weight"], "the head's classifier and the center table");
    let features = Tensor::from_slice2(&[[3.0f32, 4.0], [0.0, -2.0], [1.0, 0.0]]);
    let labels = Tensor::from_slice(&[0i64, 2, 1]);
    let out = loss.forward(&features, &labels).unwrap();
    let (head, center) = (f64::try_from(&out.terms[0]).unwrap(), f64::try_from(&out.terms[1]).unwrap());
    assert!((center - 0.5).abs() < 1e-6, "{center}");
    assert!((f64::try_from(&out.objective).unwrap() - (head + 0.2 * center)).abs() < 1e-5);
    // Eq. 4 moves each center towards its class's unit feature: alpha * x / (1 + 1).
    loss.after_step(&features, &labels, SOLVER, &facerec_losses::OneProcess).unwrap();
    let centers = rows(loss.centers().unwrap());
    for (c, want) in centers.iter().zip([[0.15, 0.2], [0.25, 0.0], [0.0, -0.25]]) {
        assert!(c.iter().zip(want).all(|(a, b)| (a - b).abs() < 1e-6), "{centers:?}");
    }
    // The head of center loss cannot be center loss again.
    let err = toml::from_str::<facerec_losses::LossConfig>("lambda = 0.1\nalpha = 0.5\n[head]\nname = \"center\"\nlambda = 0.1\nalpha = 0.5")
        .unwrap_err()
        .to_string();
    assert!(err.contains("loss.head"), "{err}");
}
