//! Softmax + contrastive loss (model B): a hand-worked case, PyTorch on the same pairs
//! (scripts/reference/pair_losses.py), central finite differences, the global batch seen by
//! each of two simulated ranks, and the settings' errors.

use facerec_losses::contrastive::contrastive_loss;
use facerec_losses::{Loss, LossConfig, OneProcess, Ranks};
use tch::{nn, Device, Kind, Tensor};

mod common;
use common::Result;

fn rows(t: &Tensor) -> Vec<Vec<f64>> {
    Vec::<Vec<f64>>::try_from(t.to_kind(Kind::Double)).unwrap()
}

/// Softmax + contrastive with this weight and margin, in double precision.
fn build(weight: f64, margin: f64) -> (nn::VarStore, Box<dyn Loss>) {
    let config: LossConfig = toml::from_str(&format!("name = \"contrastive\"\nweight = {weight:?}\nmargin = {margin:?}")).unwrap();
    let mut vs = nn::VarStore::new(Device::Cpu);
    let loss = config.build(&vs.root(), 3, 4).unwrap();
    vs.set_kind(Kind::Double);
    (vs, loss)
}

/// Gives `to` the values of `from`'s variables of the same names.
fn copy_weights(to: &nn::VarStore, from: &nn::VarStore) {
    let from = from.variables();
    tch::no_grad(|| {
        for (name, t) in to.variables() {
            t.shallow_clone().copy_(&from[&name]);
        }
    });
}

#[test]
fn hand_worked_case() {
    // Pairs of (0,0) (3,4) (0,1), labels 0 0 1, margin 2: one positive pair at distance 5
    // (25 / 2); negatives at 1 ((2 - 1)^2 / 2) and sqrt(18) > 2 (0), mean 0.25.
    let x = Tensor::from_slice2(&[[0.0f64, 0.0], [3.0, 4.0], [0.0, 1.0]]);
    let y = Tensor::from_slice(&[0i64, 0, 1]);
    let value = f64::try_from(contrastive_loss(&x, &y, 2.0).unwrap()).unwrap();
    assert!((value - 12.75).abs() < 1e-9, "{value}");
    // No negative pair: the positive mean alone; a single identity-less pair set adds 0.
    let one = Tensor::from_slice(&[5i64, 5, 5]);
    let value = f64::try_from(contrastive_loss(&x, &one, 2.0).unwrap()).unwrap();
    assert!((value - (25.0 + 1.0 + 18.0) / 6.0).abs() < 1e-9, "{value}");
}

fn random_case(seed: i64) -> (Tensor, Tensor) {
    tch::manual_seed(seed);
    let x = Tensor::randn([8, 3], (Kind::Double, Device::Cpu)) * 1.5;
    (x, Tensor::from_slice(&[0i64, 1, 1, 0, 2, 3, 2, 1]))
}

#[test]
fn value_and_gradient_match_pytorch() -> Result {
    let (x, y) = random_case(4);
    let margin = 2.5;
    let case = serde_json::json!({"features": rows(&x), "labels": Vec::<i64>::try_from(&y)?, "margin": margin});
    let reference = common::reference("pair_losses.py", &case)?;
    // Through the loss's objective: value weight * L_con beside the softmax, gradient weight * dL_con/dx.
    let (_vs, loss) = build(0.3, margin);
    let xg = x.copy().set_requires_grad(true);
    let out = loss.forward(&xg, &y)?;
    assert_eq!(loss.terms().iter().map(|t| (t.name, t.weight)).collect::<Vec<_>>(), [("softmax_loss", 1.0), ("contrastive_loss", 0.3)]);
    let value = f64::try_from(&out.terms[1])?;
    let want = reference["loss"].as_f64().ok_or("loss")?;
    assert!((value - want).abs() < 1e-9, "facerec {value}, PyTorch {want}");
    let softmax = f64::try_from(&out.terms[0])?;
    assert!((f64::try_from(&out.objective)? - (softmax + 0.3 * value)).abs() < 1e-9);
    // The contrastive term's gradient: the objective's less the softmax's alone (same weights).
    let (vs2, plain) = build(0.0, margin);
    copy_weights(&vs2, &_vs);
    let xs = x.copy().set_requires_grad(true);
    plain.forward(&xs, &y)?.objective.backward();
    out.objective.backward();
    let grad = (xg.grad() - xs.grad()) / 0.3;
    let want: Vec<Vec<f64>> = serde_json::from_value(reference["grad"].clone())?;
    for (g, w) in rows(&grad).iter().flatten().zip(want.iter().flatten()) {
        assert!((g - w).abs() < 1e-9, "gradient {:?} vs PyTorch {want:?}", rows(&grad));
    }
    Ok(())
}

#[test]
fn gradient_matches_central_differences() {
    let (x, y) = random_case(8);
    let margin = 3.0;
    let leaf = x.copy().set_requires_grad(true);
    let grad = Tensor::run_backward(&[&contrastive_loss(&leaf, &y, margin).unwrap()], &[&leaf], false, false).remove(0);
    let at = |x: &Tensor| f64::try_from(contrastive_loss(x, &y, margin).unwrap()).unwrap();
    let h = 1e-6;
    for i in 0..8 {
        for j in 0..3 {
            let bumped = |d: f64| {
                let b = x.copy();
                let _ = b.get(i).get(j).fill_(f64::try_from(x.get(i).get(j)).unwrap() + d);
                b
            };
            let fd = (at(&bumped(h)) - at(&bumped(-h))) / (2.0 * h);
            let an = f64::try_from(grad.get(i).get(j)).unwrap();
            assert!((fd - an).abs() < 1e-6, "dL/dx[{i}][{j}]: finite difference {fd}, autograd {an}");
        }
    }
}

/// Rank `rank` of two, whose partner holds `other` (gathered in rank order).
struct TwoRanks {
    rank: usize,
    other: (Tensor, Tensor),
}

impl Ranks for TwoRanks {
    fn world(&self) -> usize {
        2
    }
    fn rank(&self) -> usize {
        self.rank
    }
    fn gather_batch(&self, features: &Tensor, labels: &Tensor) -> facerec_losses::Result<(Tensor, Tensor)> {
        let (f, l) = (&self.other.0, &self.other.1);
        Ok(match self.rank {
            0 => (Tensor::cat(&[features, f], 0), Tensor::cat(&[labels, l], 0)),
            _ => (Tensor::cat(&[f, features], 0), Tensor::cat(&[l, labels], 0)),
        })
    }
    fn broadcast_rows(&self, _table: &Tensor, _rows: &Tensor) -> facerec_losses::Result<()> {
        Ok(())
    }
    fn all_reduce(&self, _t: &Tensor, _op: facerec_losses::Reduce) -> facerec_losses::Result<()> {
        Err(facerec_losses::LossError::Ranks("not used by contrastive loss".into()))
    }
    fn step(&self) -> usize {
        0
    }
}

/// Each rank's term has the global batch's value, and its gradient is its rows of the
/// one-process gradient times 2 (which the ranks' gradient averaging halves).
#[test]
fn two_ranks_see_the_pairs_of_the_global_batch() -> Result {
    let (x, y) = random_case(12);
    let (_vs, loss) = build(0.5, 2.0);
    let whole = x.copy().set_requires_grad(true);
    let one = loss.forward_ranks(&whole, &y, &OneProcess)?;
    let (vs0, plain) = build(0.0, 2.0);
    copy_weights(&vs0, &_vs);
    let (one_con, one_grad) = {
        let x2 = x.copy().set_requires_grad(true);
        plain.forward(&x2, &y)?.objective.backward();
        one.objective.backward();
        (f64::try_from(&one.terms[1])?, whole.grad() - x2.grad())
    };
    for rank in [0usize, 1] {
        let (mine, theirs) = if rank == 0 { (0, 4) } else { (4, 0) };
        let local = x.narrow(0, mine, 4).copy().set_requires_grad(true);
        let ranks = TwoRanks { rank, other: (x.narrow(0, theirs, 4).copy(), y.narrow(0, theirs, 4)) };
        let out = loss.forward_ranks(&local, &y.narrow(0, mine, 4), &ranks)?;
        assert!((f64::try_from(&out.terms[1])? - one_con).abs() < 1e-12, "rank {rank}: the global batch's L_con");
        let lx = local.detach().copy().set_requires_grad(true);
        plain.forward(&lx, &y.narrow(0, mine, 4))?.objective.backward();
        out.objective.backward();
        let got = rows(&(local.grad() - lx.grad()));
        let want = rows(&(one_grad.narrow(0, mine, 4) * 2.0));
        for (g, w) in got.iter().flatten().zip(want.iter().flatten()) {
            assert!((g - w).abs() < 1e-12, "rank {rank}: {got:?} vs {want:?}");
        }
    }
    Ok(())
}

#[test]
fn settings_are_checked_with_their_key() {
    for (text, message) in [
        ("name = \"contrastive\"\nweight = -1.0\nmargin = 1.0", "loss.weight must be >= 0"),
        ("name = \"contrastive\"\nweight = 0.1\nmargin = -0.5", "loss.margin must be >= 0"),
        ("name = \"contrastive\"\nweight = 0.1\nmargin = 1.0\nhead = { name = \"center\", lambda = 0.1, alpha = 0.5 }", "loss.head"),
        ("name = \"contrastive\"\nweight = 0.1", "missing field `margin`"),
    ] {
        let err = toml::from_str::<LossConfig>(text).unwrap_err().to_string();
        assert!(err.contains(message), "{text}: {err}");
    }
    // Center loss beside softmax + contrastive: all three terms.
    let config: LossConfig =
        toml::from_str("lambda = 0.1\nalpha = 0.5\nhead = { name = \"contrastive\", weight = 0.2, margin = 1.0 }").unwrap();
    let vs = nn::VarStore::new(Device::Cpu);
    let loss = config.build(&vs.root(), 3, 4).unwrap();
    assert_eq!(loss.terms().iter().map(|t| t.name).collect::<Vec<_>>(), ["softmax_loss", "contrastive_loss", "center_loss"]);
}
