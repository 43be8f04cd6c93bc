//! Class-sharded losses against the unsharded ones: 2, 3 and 4 ranks as threads of this
//! process (the collectives done through shared memory), each holding its rows of the
//! classifier and center table, must give the unsharded loss's value, training accuracy,
//! feature gradients, classifier gradients and center update, for every loss that can be
//! sharded, with shards of unequal size (10 classes over 3 and 4 ranks).

use std::sync::{Arc, Barrier, Mutex};

use facerec_losses::{ClassShard, Loss, LossConfig, LossError, OneProcess, Ranks, Reduce, Sampling, SolverStep};
use tch::{nn, Device, Kind, Tensor};

const CLASSES: i64 = 10;
const DIM: i64 = 6;
/// The global batch, divisible by every world size tried.
const BATCH: i64 = 12;

/// The `[loss]` tables tried: each shardable loss, center loss with each kind of head and rule.
const LOSSES: &[(&str, &str)] = &[
    ("softmax", "name = \"softmax\""),
    ("center", "lambda = 0.1\nalpha = 0.5"),
    ("center, caffe's rule", "lambda = 0.1\nupdate = \"caffe\"\ndecay_mult = 2.0"),
    ("center, SGD rule", "lambda = 0.1\nupdate = \"sgd\"\nalpha = 0.3"),
    ("cosface", "name = \"cosface\"\nscale = 16.0\nmargin = 0.2"),
    ("arcface", "name = \"arcface\"\nscale = 16.0\nmargin = 0.3"),
    ("combined margin", "name = \"combined_margin\"\nscale = 16.0\nm1 = 1.0\nm2 = 0.3\nm3 = 0.1"),
    ("center on arcface, normalised", "lambda = 0.1\nalpha = 0.5\nnormalized = true\nhead = { name = \"arcface\", scale = 16.0, margin = 0.3 }"),
];

/// libtorch's generator is global to the process: the tests of this file take turns.
static SERIAL: Mutex<()> = Mutex::new(());

const SOLVER: SolverStep = SolverStep { lr: 0.1, momentum: 0.9, weight_decay: 5e-4 };

/// What threads playing the ranks of one world share: a barrier and one slot per rank.
struct Hub {
    barrier: Barrier,
    slots: Mutex<Vec<Option<Tensor>>>,
}

/// One thread's view of the world, as a loss sees it.
struct ThreadRanks {
    rank: usize,
    world: usize,
    hub: Arc<Hub>,
}

impl ThreadRanks {
    /// Every rank's `t`, in rank order.
    fn exchange(&self, t: &Tensor) -> Vec<Tensor> {
        self.hub.slots.lock().unwrap()[self.rank] = Some(t.copy());
        self.hub.barrier.wait();
        let all = self.hub.slots.lock().unwrap().iter().map(|s| s.as_ref().expect("every rank wrote").copy()).collect();
        self.hub.barrier.wait();
        all
    }
}

impl Ranks for ThreadRanks {
    fn world(&self) -> usize {
        self.world
    }
    fn rank(&self) -> usize {
        self.rank
    }
    fn gather_batch(&self, features: &Tensor, labels: &Tensor) -> facerec_losses::Result<(Tensor, Tensor)> {
        Ok((Tensor::cat(&self.exchange(features), 0), Tensor::cat(&self.exchange(labels), 0)))
    }
    fn broadcast_rows(&self, table: &Tensor, rows: &Tensor) -> facerec_losses::Result<()> {
        let all = self.exchange(&table.index_select(0, rows));
        let _ = table.shallow_clone().index_copy_(0, rows, &all[0]);
        Ok(())
    }
    fn all_reduce(&self, t: &Tensor, op: Reduce) -> facerec_losses::Result<()> {
        let all = self.exchange(t);
        let mut acc = all[0].copy();
        for other in &all[1..] {
            acc = match op {
                Reduce::Sum => acc + other,
                Reduce::Max => acc.maximum(other),
            };
        }
        t.shallow_clone().copy_(&acc);
        Ok(())
    }
    fn step(&self) -> usize {
        1
    }
}

/// A fixed random case: features, and labels covering every class.
fn case() -> (Tensor, Tensor) {
    tch::manual_seed(5);
    let x = Tensor::randn([BATCH, DIM], (Kind::Float, Device::Cpu)) * 2.0;
    let y = Tensor::from_slice(&[3i64, 0, 9, 3, 7, 1, 2, 9, 4, 5, 6, 8]);
    (x, y)
}

/// The unsharded loss built from seed 1, and a tensor of every variable by name.
fn unsharded(config: &LossConfig) -> (nn::VarStore, Box<dyn Loss>) {
    tch::manual_seed(1);
    let vs = nn::VarStore::new(Device::Cpu);
    let loss = config.build(&vs.root(), DIM, CLASSES).unwrap();
    (vs, loss)
}

/// The shards of `world` ranks, each built from seed 1 (so each starts as its rows of the
/// unsharded loss).
fn shards(config: &LossConfig, world: usize, sampling: Option<Sampling>) -> Vec<(nn::VarStore, Box<dyn Loss>)> {
    (0..world)
        .map(|rank| {
            tch::manual_seed(1);
            let vs = nn::VarStore::new(Device::Cpu);
            let shard = ClassShard::new(CLASSES, rank, world).unwrap();
            let loss = config.build_sharded(&vs.root(), DIM, &shard, sampling).unwrap();
            (vs, loss)
        })
        .collect()
}

fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
    f64::try_from((a - b).abs().max()).unwrap()
}

/// What one rank computed: its objective's value, terms, predictions, the gradient of its
/// features, its variables' gradients and values after the center update, by name.
struct RankResult {
    value: f64,
    terms: Vec<f64>,
    predictions: Tensor,
    feature_grad: Tensor,
    grads: Vec<(String, Tensor)>,
    after: Vec<(String, Tensor)>,
}

fn run_rank(vs: &nn::VarStore, loss: &dyn Loss, ranks: &dyn Ranks, x: &Tensor, y: &Tensor) -> RankResult {
    let x = x.copy().set_requires_grad(true);
    let out = loss.forward_ranks(&x, y, ranks).unwrap();
    out.objective.backward();
    let grads = vs.variables().into_iter().filter(|(_, t)| t.requires_grad()).map(|(k, t)| (k, t.grad().copy())).collect();
    loss.after_step(&x.detach(), y, SOLVER, ranks).unwrap();
    RankResult {
        value: f64::try_from(&out.objective).unwrap(),
        terms: out.terms.iter().map(|t| f64::try_from(t).unwrap()).collect(),
        predictions: out.predictions,
        feature_grad: x.grad(),
        grads,
        after: vs.variables().into_iter().map(|(k, t)| (k, t.copy())).collect(),
    }
}

/// Runs the shards as threads, rank r on samples `r * B / world ..`.
fn run_world(shards: Vec<(nn::VarStore, Box<dyn Loss>)>, x: &Tensor, y: &Tensor) -> Vec<RankResult> {
    let per = BATCH / shards.len() as i64;
    run_world_of(shards, x, y, per)
}

/// [`run_world`] with `per` samples a rank.
fn run_world_of(shards: Vec<(nn::VarStore, Box<dyn Loss>)>, x: &Tensor, y: &Tensor, per: i64) -> Vec<RankResult> {
    let world = shards.len();
    let hub = Arc::new(Hub { barrier: Barrier::new(world), slots: Mutex::new((0..world).map(|_| None).collect()) });
    let handles: Vec<_> = shards
        .into_iter()
        .enumerate()
        .map(|(rank, (vs, loss))| {
            let (x, y) = (x.narrow(0, rank as i64 * per, per).copy(), y.narrow(0, rank as i64 * per, per).copy());
            let ranks = ThreadRanks { rank, world, hub: hub.clone() };
            std::thread::spawn(move || run_rank(&vs, loss.as_ref(), &ranks, &x, &y))
        })
        .collect();
    handles.into_iter().map(|h| h.join().expect("a rank panicked")).collect()
}

/// The tables with one row per class are the sharded ones; the rest (none here) are whole.
fn rows_of(name: &str, whole: &Tensor, shard: &ClassShard) -> Tensor {
    assert_eq!(whole.size()[0], CLASSES, "{name} is a class table");
    whole.narrow(0, shard.start, shard.len())
}

#[test]
fn sharded_losses_equal_the_unsharded_ones_on_every_rank() {
    let _turn = SERIAL.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let (x, y) = case();
    for (what, table) in LOSSES {
        let config: LossConfig = toml::from_str(table).unwrap();
        let (vs, loss) = unsharded(&config);
        let one = run_rank(&vs, loss.as_ref(), &OneProcess, &x, &y);
        for world in [1usize, 2, 3, 4] {
            let per = BATCH / world as i64;
            for (rank, got) in run_world(shards(&config, world, None), &x, &y).into_iter().enumerate() {
                let at = format!("{what}, rank {rank} of {world}");
                let shard = ClassShard::new(CLASSES, rank, world).unwrap();
                // Every rank's objective is the global batch's loss; its terms too.
                assert!((got.value - one.value).abs() < 1e-5, "{at}: loss {} vs {}", got.value, one.value);
                assert_eq!(got.terms.len(), one.terms.len(), "{at}");
                for (a, b) in got.terms.iter().zip(&one.terms) {
                    assert!((a - b).abs() < 1e-5, "{at}: terms {:?} vs {:?}", got.terms, one.terms);
                }
                // Its own samples' predictions, and world times their gradient (the trainer
                // averages over the ranks).
                assert!(got.predictions.equal(&one.predictions.narrow(0, rank as i64 * per, per)), "{at}: predictions");
                let want = one.feature_grad.narrow(0, rank as i64 * per, per) * world as f64;
                assert!(max_diff(&got.feature_grad, &want) < 1e-6, "{at}: feature gradient off by {}", max_diff(&got.feature_grad, &want));
                // Its rows of the classifier's gradient, and of the tables after the center update.
                for (name, g) in &got.grads {
                    let whole = &one.grads.iter().find(|(k, _)| k == name).unwrap_or_else(|| panic!("{at}: {name}")).1;
                    let want = rows_of(name, whole, &shard);
                    assert!(max_diff(g, &want) < 1e-6, "{at}: gradient of {name} off by {}", max_diff(g, &want));
                }
                assert_eq!(got.after.len(), one.after.len(), "{at}: the same variables");
                for (name, t) in &got.after {
                    let whole = &one.after.iter().find(|(k, _)| k == name).unwrap_or_else(|| panic!("{at}: {name}")).1;
                    let want = rows_of(name, whole, &shard);
                    assert!(max_diff(t, &want) < 1e-6, "{at}: {name} after the step off by {}", max_diff(t, &want));
                }
            }
        }
    }
}

/// Partial FC on one rank: the softmax over the sampled classes alone, which always include the
/// batch's own; a rate of 1 is the exact loss.
#[test]
fn sampled_classes_give_the_softmax_over_those_classes() {
    let _turn = SERIAL.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let (x, _) = case();
    let config: LossConfig = toml::from_str("name = \"softmax\"").unwrap();
    let (vs, exact) = unsharded(&config);
    let weight = vs.variables()["head.fc.weight"].copy();
    let bias = vs.variables()["head.fc.bias"].copy();
    // Labels of 4 classes in a table of 10 at rate 0.5: 5 classes, the 4 and one other.
    let y4 = Tensor::from_slice(&[3i64, 0, 9, 3, 0, 3, 9, 9, 4, 4, 0, 3]);
    for (rate, classes) in [(1.0, CLASSES), (0.5, 5), (0.1, 4)] {
        let mut world = shards(&config, 1, Some(Sampling { rate, seed: 3 }));
        let (_vs, loss) = world.pop().unwrap();
        let out = loss.forward_ranks(&x, &y4, &OneProcess).unwrap();
        // Which classes: the logits of the sampled classes are the ones with nonzero gradient.
        out.objective.backward();
        let used: Vec<i64> = Vec::<f64>::try_from(_vs.variables()["head.fc.bias"].grad().abs())
            .unwrap()
            .iter()
            .enumerate()
            .filter(|(_, g)| **g > 0.0)
            .map(|(j, _)| j as i64)
            .collect();
        assert_eq!(used.len() as i64, classes, "rate {rate}: {used:?}");
        assert!([0, 3, 4, 9].iter().all(|c| used.contains(c)), "rate {rate}: the positives are used: {used:?}");
        // The loss is the cross-entropy over those classes' logits.
        let index = Tensor::from_slice(&used);
        let logits = x.linear(&weight.index_select(0, &index), Some(&bias.index_select(0, &index)));
        let target = y4.unsqueeze(1).eq_tensor(&index.unsqueeze(0)).to_kind(Kind::Int64).argmax(1, false);
        let want = f64::try_from(logits.cross_entropy_for_logits(&target)).unwrap();
        let got = f64::try_from(&out.terms[0]).unwrap();
        assert!((got - want).abs() < 1e-5, "rate {rate}: {got} vs {want}");
        if rate == 1.0 {
            let exact = f64::try_from(exact.forward(&x, &y4).unwrap().terms[0].shallow_clone()).unwrap();
            assert!((got - exact).abs() < 1e-6, "rate 1 is exact: {got} vs {exact}");
        }
    }
}

#[test]
fn what_cannot_be_sharded_says_so() {
    let _turn = SERIAL.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let shard = ClassShard::new(CLASSES, 0, 2).unwrap();
    let vs = nn::VarStore::new(Device::Cpu);
    for table in ["name = \"contrastive\"\nweight = 0.5\nmargin = 1.0", "name = \"sphereface\""] {
        let config: LossConfig = toml::from_str(table).unwrap();
        let err = config.build_sharded(&vs.root(), DIM, &shard, None).unwrap_err();
        assert!(matches!(err, LossError::Config(_)) && err.to_string().contains("cannot be sharded by class"), "{table}: {err}");
        // The message lists what can, as the registry answers it.
        assert!(err.to_string().contains("default settings: arcface, combined_margin, cosface, softmax;"), "{err}");
    }
    let mut listed = facerec_losses::shardable_loss_names();
    listed.sort_unstable();
    assert_eq!(listed, ["arcface", "combined_margin", "cosface", "softmax"]);
    // A shard's loss refuses to run as another rank, and its classifier has no whole logits.
    let config: LossConfig = toml::from_str("name = \"softmax\"").unwrap();
    let loss = config.build_sharded(&vs.root(), DIM, &shard, None).unwrap();
    let (x, y) = case();
    let err = loss.forward_ranks(&x, &y, &OneProcess).unwrap_err().to_string();
    assert!(err.contains("holds the classes of rank 0 of 2, but runs as rank 0 of 1"), "{err}");
    let err = loss.logits(&x).unwrap_err().to_string();
    assert!(err.contains("sharded over 2 ranks"), "{err}");
    let err = config.build_sharded(&vs.root(), DIM, &shard, Some(Sampling { rate: 0.0, seed: 0 })).unwrap_err().to_string();
    assert!(err.contains("sample_rate must be in (0, 1]"), "{err}");
}

/// Partial FC on 2 ranks: every rank reports the same, finite loss, and the gradient reaches
/// only the sampled rows of each shard: the batch's classes, and random others up to the rate.
#[test]
fn sampled_classes_on_two_ranks_agree() {
    let _turn = SERIAL.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let (x, _) = case();
    // Classes 0, 3, 4 (rank 0 holds 0-4) and 9 (rank 1 holds 5-9); at rate 0.5, floor(2.5) = 2
    // of each shard's 5 but at least the positives: rank 0 its 3, rank 1 class 9 and 1 other.
    let y = Tensor::from_slice(&[3i64, 0, 9, 3, 0, 3, 9, 9, 4, 4, 0, 3]);
    let config: LossConfig = toml::from_str("lambda = 0.1\nalpha = 0.5").unwrap();
    let results = run_world(shards(&config, 2, Some(Sampling { rate: 0.5, seed: 9 })), &x, &y);
    assert!(results[0].value.is_finite());
    assert_eq!(results[0].value, results[1].value, "every rank's objective is the global loss");
    let used = |rank: usize| -> Vec<usize> {
        let bias = &results[rank].grads.iter().find(|(k, _)| k == "head.fc.bias").unwrap().1;
        Vec::<f64>::try_from(bias.abs()).unwrap().iter().enumerate().filter(|(_, g)| **g > 0.0).map(|(j, _)| j).collect()
    };
    assert_eq!(used(0), [0, 3, 4]);
    let other = used(1);
    assert!(other.len() == 2 && other.contains(&4), "rank 1 (classes 5-9): {other:?}");
}

/// arcface_torch's `PartialFC_V2` with its `CombinedMarginLoss`, run by PyTorch on two Gloo
/// processes (`scripts/reference/arcface_torch_ref.py pfc`, the reference's own code from
/// ../shared/reference/arcface_torch) against facerec's class-sharded combined margin on two
/// ranks, from the same embeddings, labels and class weights (13 classes: shards of 7 and 6, as
/// both split them): ArcFace (m2 0.5, its gradient straight through the margin as
/// arcface_torch takes it) and CosFace (m3 0.4), every class and a sample rate of 0.5 (the
/// reference fed facerec's sampled classes): the same loss on every rank, the same gradients of
/// each rank's embeddings and of each rank's class weights.
#[test]
fn partial_fc_and_the_combined_margin_are_arcface_torchs_on_two_ranks() {
    let _turn = SERIAL.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    const C: i64 = 13;
    const D: i64 = 64;
    const B: i64 = 6;
    const WORLD: usize = 2;
    tch::manual_seed(21);
    let emb = Tensor::randn([WORLD as i64, B, D], (Kind::Float, Device::Cpu));
    let labels = Tensor::randint(C, [WORLD as i64, B], (Kind::Int64, Device::Cpu));
    let weight = Tensor::randn([C, D], (Kind::Float, Device::Cpu)) * 0.01;
    let py = std::env::var("FACEREC_PYTHON").unwrap_or_else(|_| ".deps/venv/bin/python".into());
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/reference/arcface_torch_ref.py");
    for (margins, rate) in [([1.0, 0.5, 0.0], 1.0), ([1.0, 0.0, 0.4], 1.0), ([1.0, 0.5, 0.0], 0.5)] {
        let what = format!("margins {margins:?}, sample rate {rate}");
        let dir = tempfile::tempdir().unwrap();
        let case = dir.path();
        emb.write_npy(case.join("emb.npy")).unwrap();
        labels.write_npy(case.join("labels.npy")).unwrap();
        weight.write_npy(case.join("weight.npy")).unwrap();
        let table = format!(
            "name = \"combined_margin\"\nscale = 64.0\nm1 = {}\nm2 = {}\nm3 = {}\nmargin_gradient = \"straight_through\"",
            margins[0], margins[1], margins[2]
        );
        let config: LossConfig = toml::from_str(&table).unwrap();
        let sampling = (rate < 1.0).then_some(Sampling { rate, seed: 4 });
        let world: Vec<(nn::VarStore, Box<dyn Loss>)> = (0..WORLD)
            .map(|rank| {
                let vs = nn::VarStore::new(Device::Cpu);
                let shard = ClassShard::new(C, rank, WORLD).unwrap();
                let loss = config.build_sharded(&vs.root(), D, &shard, sampling).unwrap();
                let mut w = vs.variables()["head.fc.weight"].shallow_clone();
                tch::no_grad(|| w.copy_(&weight.narrow(0, shard.start, shard.len())));
                // The classes this rank's sampling picks at step 1 (ThreadRanks' step), for the
                // reference to pick too.
                if let Some(s) = sampling {
                    let all = labels.flatten(0, -1);
                    let mine = all.masked_select(&all.ge(shard.start).logical_and(&all.lt(shard.end))) - shard.start;
                    let (positives, _, _) = mine.unique_dim(0, true, false, false);
                    if let Some(rows) = s.rows(&shard, &positives, 1).unwrap() {
                        rows.write_npy(case.join(format!("rows{rank}.npy"))).unwrap();
                    }
                }
                (vs, loss)
            })
            .collect();
        let results = run_world_of(world, &emb.flatten(0, 1), &labels.flatten(0, 1), B);
        // Each sample's loss, by hand on one process: below arcface_torch's cap of 69.08.
        let (x, y) = (emb.flatten(0, 1), labels.flatten(0, 1));
        let unit = |t: &Tensor| t / t.norm_scalaropt_dim(2, [1].as_slice(), true);
        let cos = unit(&x).matmul(&unit(&weight).tr());
        let target = cos.gather(1, &y.unsqueeze(1), false);
        let with_margin = (target.acos() * margins[0] + margins[1]).cos() - margins[2];
        let per_sample = (cos.scatter(1, &y.unsqueeze(1), &with_margin) * 64.0).log_softmax(1, Kind::Float).gather(1, &y.unsqueeze(1), false).neg();
        assert!(f64::try_from(per_sample.max()).unwrap() < 69.0, "{what}: a sample's loss past arcface_torch's cap");
        let out = std::process::Command::new(&py)
            .arg(&script)
            .args(["pfc", "--case", case.to_str().unwrap(), "--sample-rate", &rate.to_string(), "--margins"])
            .args(margins.map(|m| m.to_string()))
            .output()
            .unwrap();
        assert!(out.status.success(), "{what}: arcface_torch_ref.py pfc:\n{}", String::from_utf8_lossy(&out.stderr));
        let read = |name: String| Tensor::read_npy(case.join(name)).unwrap();
        for (rank, r) in results.iter().enumerate() {
            let theirs = f64::try_from(read(format!("loss{rank}.npy"))).unwrap();
            assert!((r.value - theirs).abs() <= 1e-5 * theirs.abs(), "{what}, rank {rank}: loss {} vs arcface_torch's {theirs}", r.value);
            let rel = |ours: &Tensor, theirs: &Tensor| max_diff(ours, theirs) / f64::try_from(theirs.abs().max()).unwrap();
            let g_emb = rel(&r.feature_grad, &read(format!("emb_grad{rank}.npy")));
            let ours_w = &r.grads.iter().find(|(k, _)| k == "head.fc.weight").unwrap().1;
            let g_w = rel(ours_w, &read(format!("weight_grad{rank}.npy")));
            eprintln!("{what}, rank {rank}: loss {:.6} ({theirs:.6}), embedding gradients within {g_emb:.1e}, class weights' {g_w:.1e} of their largest", r.value);
            assert!(g_emb <= 1e-5 && g_w <= 1e-5, "{what}, rank {rank}: gradients off by {g_emb:e} (embeddings), {g_w:e} (weights)");
        }
    }
}
