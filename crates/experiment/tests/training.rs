//! Training on real MNIST data (a small part of it): determinism, exact resume, learning,
//! divergence handling and config errors.

use std::path::Path;

use facerec_train::checkpoint;
use facerec_core::metrics::read_records;
use facerec_experiment::Config;
use facerec_train::{Outcome, TrainError};

mod common;
use common::Result;

fn config_text(mnist: &Path, extra: &str) -> String {
    format!(
        r#"
seed = 7
threads = 1
[data]
kind = "mnist"
dir = "{}"
train_limit = 512
test_limit = 100
[model.backbone]
name = "lenet_pp"
[loss]
lambda = 0.01
alpha = 0.5
[optim]
lr = 0.01
batch_size = 32
[schedule]
epochs = 2
milestones = [1]
[checkpoint]
every_steps = 5
keep = 10
[log]
every_steps = 1
{extra}
"#,
        mnist.display()
    )
}

fn config(extra: &str) -> Result<Config> {
    let mnist = facerec_data::paths::require("mnist")?;
    Ok(Config::parse(&config_text(&mnist, extra), Path::new("test.toml"), &[])?)
}

/// Trains `config` in `dir`; `stop_at` sets the stop flag once that step is reached.
fn train(config: Config, dir: &Path, stop_at: Option<usize>, resume: bool) -> Result<Outcome> {
    common::train(&config, dir, stop_at, resume)
}

fn losses(dir: &Path) -> Result<Vec<(u64, f64)>> {
    Ok(read_records(&dir.join("steps.jsonl"))?
        .iter()
        .map(|r| (r["step"].as_u64().unwrap(), r["loss"].as_f64().unwrap()))
        .collect())
}

#[test]
fn same_seed_same_losses_and_learning_happens() -> Result {
    let (a, b) = (tempfile::tempdir()?, tempfile::tempdir()?);
    train(config("")?, a.path(), None, false)?;
    train(config("")?, b.path(), None, false)?;
    let (la, lb) = (losses(a.path())?, losses(b.path())?);
    assert_eq!(la.len(), 32, "16 steps per epoch, 2 epochs");
    assert_eq!(la, lb, "two runs with one seed must match exactly on CPU");
    let first: f64 = la[..4].iter().map(|l| l.1).sum::<f64>() / 4.0;
    let last: f64 = la[la.len() - 4..].iter().map(|l| l.1).sum::<f64>() / 4.0;
    assert!(last < first, "loss did not go down: {first} -> {last}");
    assert!(a.path().join("model.safetensors").exists());
    assert!(a.path().join("config.toml").exists());
    Ok(())
}

#[test]
fn bf16_autocast_trains_close_to_fp32_and_keeps_float32_weights() -> Result {
    // Six steps: CPUs without bf16 instructions emulate it, slowly.
    let mnist = facerec_data::paths::require("mnist")?;
    let short = |precision: &str| -> Result<Config> {
        let sets = ["schedule.epochs=", "schedule.steps=6", "schedule.milestones=[]", precision].map(String::from);
        Ok(Config::parse(&config_text(&mnist, ""), Path::new("test.toml"), &sets)?)
    };
    let (a, b) = (tempfile::tempdir()?, tempfile::tempdir()?);
    train(short("precision=fp32")?, a.path(), None, false)?;
    train(short("precision=bf16")?, b.path(), None, false)?;
    let (la, lb) = (losses(a.path())?, losses(b.path())?);
    assert_eq!((la.len(), lb.len()), (6, 6));
    // Same weights and batches; bf16 rounding in the backbone only.
    for ((_, x), (_, y)) in la.iter().zip(&lb) {
        assert!(y.is_finite() && (x - y).abs() < 0.1 * x, "fp32 {x} vs bf16 {y}");
    }
    assert_ne!(la, lb, "bf16 must actually change the arithmetic");
    let (_, ck) = checkpoint::list(b.path()).pop().ok_or("no checkpoint")?;
    for (name, t) in &checkpoint::load(&ck)?.model {
        assert_eq!(t.kind(), tch::Kind::Float, "{name} is not float32");
    }
    Ok(())
}

/// Exact resume, with the paper's center update and with caffe-face's (whose momentum table
/// must come back from the checkpoint).
#[test]
fn stopped_and_resumed_run_matches_uninterrupted_run() -> Result {
    let mnist = facerec_data::paths::require("mnist")?;
    let caffe = ["loss.alpha=", "loss.update=\"caffe\"", "loss.decay_mult=2.0"].map(String::from);
    for sets in [&[][..], &caffe[..]] {
        let config = || Config::parse(&config_text(&mnist, ""), Path::new("test.toml"), sets);
        let (full, part) = (tempfile::tempdir()?, tempfile::tempdir()?);
        assert_eq!(train(config()?, full.path(), None, false)?, Outcome::Finished);
        // Stop mid-epoch (step 11 of 16) and mid-momentum, then resume from that checkpoint.
        assert_eq!(train(config()?, part.path(), Some(11), false)?, Outcome::Interrupted);
        let ck = checkpoint::list(part.path());
        assert_eq!(ck[0].0, 11, "interrupt must write a checkpoint at the step it stopped");
        assert_eq!(train(config()?, part.path(), None, true)?, Outcome::Finished);
        assert_eq!(losses(full.path())?, losses(part.path())?, "{sets:?}: resumed losses differ");
        // And the final weights, centers and caffe's momentum are identical.
        let (wa, _) = facerec_model::weights::load(&full.path().join("model.safetensors"))?;
        let (wb, _) = facerec_model::weights::load(&part.path().join("model.safetensors"))?;
        for ((na, ta), (nb, tb)) in wa.iter().zip(&wb) {
            assert_eq!(na, nb);
            assert!(ta.equal(tb), "{sets:?}: {na} differs after resume");
        }
        let last = |dir: &Path| -> Result<checkpoint::Checkpoint> { Ok(checkpoint::load(&checkpoint::list(dir).pop().ok_or("no checkpoint")?.1)?) };
        let (a, b) = (last(full.path())?, last(part.path())?);
        let names: Vec<&String> = a.model.iter().map(|(n, _)| n).filter(|n| n.contains("center")).collect();
        assert_eq!(names.len(), 1 + sets.len().min(1), "{sets:?}: the checkpoint's center tables: {names:?}");
        for ((na, ta), (nb, tb)) in a.model.iter().zip(&b.model) {
            assert_eq!(na, nb);
            assert!(ta.equal(tb), "{sets:?}: checkpoint variable {na} differs after resume");
        }
    }
    Ok(())
}

#[test]
fn corrupt_latest_checkpoint_falls_back_to_the_previous_one() -> Result {
    let dir = tempfile::tempdir()?;
    train(config("")?, dir.path(), None, false)?;
    let all = checkpoint::list(dir.path());
    assert!(all.len() >= 2);
    let newest = &all[0].1;
    let bytes = std::fs::read(newest)?;
    std::fs::write(newest, &bytes[..bytes.len() / 2])?; // truncated
    let ck = checkpoint::latest_valid(dir.path())?.expect("a valid checkpoint");
    assert_eq!(ck.path, all[1].1);
    assert!(checkpoint::load(newest).unwrap_err().to_string().contains(&newest.display().to_string()));
    Ok(())
}

#[test]
fn divergence_stops_with_advice() -> Result {
    let dir = tempfile::tempdir()?;
    let cfg = config("")?;
    let cfg = Config { optim: facerec_train::config::OptimConfig { lr: 1e8, ..cfg.optim }, ..cfg };
    let err = train(cfg, dir.path(), None, false).unwrap_err();
    let err = err.downcast::<TrainError>()?;
    assert!(matches!(*err, TrainError::Diverged { .. }), "{err}");
    let msg = err.to_string();
    assert!(msg.contains("optim.lr") && msg.contains("loss.lambda"), "{msg}");
    // Every checkpoint left behind loads and holds finite weights.
    for (_, p) in checkpoint::list(dir.path()) {
        let ck = checkpoint::load(&p)?;
        for (name, t) in &ck.model {
            assert!(bool::try_from(t.isfinite().all())?, "{name} in {} is not finite", p.display());
        }
    }
    Ok(())
}

/// `[loss] name = "nan_gradient_at"`: the softmax loss plus `sqrt(0 * x)`, a term whose value is
/// 0 and whose gradient is NaN, from step `step` on.
mod nan_gradient {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use facerec_losses::{Loss, LossConfig, LossOutput, LossSpec, SoftmaxConfig};
    use serde::{Deserialize, Serialize};
    use tch::{nn, Tensor};

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub struct NanGradientAt {
        pub step: usize,
    }

    impl facerec_model::Plug for NanGradientAt {
        const NAME: &'static str = "nan_gradient_at";
    }

    impl LossSpec for NanGradientAt {
        fn build(&self, p: &nn::Path, feature_dim: i64, num_classes: i64) -> facerec_losses::Result<Box<dyn Loss>> {
            let softmax = LossConfig::new(SoftmaxConfig {}).build(p, feature_dim, num_classes)?;
            Ok(Box::new(Poisoned { softmax, at: self.step, calls: AtomicUsize::new(0) }))
        }
    }

    #[derive(Debug)]
    struct Poisoned {
        softmax: Box<dyn Loss>,
        at: usize,
        calls: AtomicUsize,
    }

    impl Loss for Poisoned {
        fn forward(&self, features: &Tensor, labels: &Tensor) -> facerec_losses::Result<LossOutput> {
            let mut out = self.softmax.forward(features, labels)?;
            if self.calls.fetch_add(1, Ordering::SeqCst) + 1 >= self.at {
                out.objective = out.objective.f_add(&features.f_mul_scalar(0.0)?.f_sqrt()?.f_sum(tch::Kind::Float)?)?;
            }
            Ok(out)
        }
        fn logits(&self, features: &Tensor) -> facerec_losses::Result<Tensor> {
            self.softmax.logits(features)
        }
        fn terms(&self) -> Vec<facerec_losses::Term> {
            self.softmax.terms()
        }
    }
}

#[test]
fn a_non_finite_gradient_stops_the_run_before_the_step() -> Result {
    facerec_losses::register_loss::<nan_gradient::NanGradientAt>();
    let mnist = facerec_data::paths::require("mnist")?;
    let text = config_text(&mnist, "").replace("lambda = 0.01\nalpha = 0.5", "name = \"nan_gradient_at\"\nstep = 7");
    let dir = tempfile::tempdir()?;
    let err = train(Config::parse(&text, Path::new("test.toml"), &[])?, dir.path(), None, false).unwrap_err();
    let err = err.downcast::<TrainError>()?;
    let TrainError::Diverged { step, what, value, .. } = &*err else { panic!("{err}") };
    assert_eq!(*step, 7, "{err}");
    assert!(what.contains("gradient norm") && value.is_nan(), "{err}");
    // The loss of step 7 was finite but is not logged past step 6; checkpoint 5 is kept, finite.
    assert_eq!(losses(dir.path())?.last().map(|l| l.0), Some(6));
    assert_eq!(checkpoint::list(dir.path()).iter().map(|c| c.0).collect::<Vec<_>>(), [5]);
    for (name, t) in &checkpoint::load(&checkpoint::list(dir.path())[0].1)?.model {
        assert!(bool::try_from(t.isfinite().all())?, "{name} is not finite");
    }
    Ok(())
}

#[test]
fn config_errors_name_the_file_and_key() -> Result {
    let mnist = facerec_data::paths::require("mnist")?;
    let text = config_text(&mnist, "");
    let cases: Vec<(String, &str)> = vec![
        (text.replace("lambda = 0.01", "lamda = 0.01"), "lamda"),
        (text.replace("lambda = 0.01", "lambda = \"high\""), "lambda"),
        (text.replace("lambda = 0.01", "lambda = -1.0"), "loss.lambda must be >= 0"),
        (text.replace("alpha = 0.5", "alpha = 1.5"), "loss.alpha must be in [0, 1]"),
        (text.replace("batch_size = 32", "batch_size = 0"), "optim.batch_size"),
        (text.replace(&mnist.display().to_string(), "/no/such/mnist"), "/no/such/mnist"),
        (text.replace("name = \"lenet_pp\"", "name = \"lenet\""), "lenet"),
        (text.replace("milestones = [1]", "milestones = [1, 1]"), "milestones must increase"),
        (text.replace("epochs = 2", "epochs = 2\nsteps = 3"), "not both"),
        (text.replace("epochs = 2", "epochs = 2\nfreeze_backbone = 2"), "schedule.freeze_backbone (2) must be shorter than the run (2)"),
    ];
    for (bad, expected) in cases {
        let err = Config::parse(&bad, Path::new("configs/x.toml"), &[]).unwrap_err().to_string();
        assert!(err.starts_with("configs/x.toml:"), "{err}");
        assert!(err.contains(expected), "expected {expected:?} in: {err}");
    }
    // Overrides are checked the same way.
    let err = Config::parse(&text, Path::new("c.toml"), &["loss.lambda=-2".into()]).unwrap_err().to_string();
    assert!(err.contains("loss.lambda"), "{err}");
    let ok = Config::parse(&text, Path::new("c.toml"), &["loss.lambda=0.5".into()])?;
    assert_eq!(ok.loss.setting("lambda").and_then(toml::Value::as_float), Some(0.5));
    // An empty value removes a key.
    let ok = Config::parse(&text, Path::new("c.toml"), &["schedule.epochs=".into(), "schedule.steps=7".into(), "schedule.milestones=[4]".into()])?;
    assert_eq!((ok.schedule.epochs, ok.schedule.steps), (None, Some(7)));
    Ok(())
}

#[test]
fn resuming_mid_epoch_with_another_batch_size_is_refused() -> Result {
    let dir = tempfile::tempdir()?;
    assert_eq!(train(config("")?, dir.path(), Some(3), false)?, Outcome::Interrupted);
    let cfg = config("")?;
    let cfg = Config { optim: facerec_train::config::OptimConfig { batch_size: 64, ..cfg.optim }, ..cfg };
    let err = train(cfg, dir.path(), None, true).unwrap_err().to_string();
    assert!(err.contains("batch size"), "{err}");
    Ok(())
}

#[test]
fn tensorboard_reads_the_event_file() -> Result {
    let dir = tempfile::tempdir()?;
    train(config("")?, dir.path(), None, false)?;
    let event = std::fs::read_dir(dir.path())?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.file_name().unwrap().to_string_lossy().starts_with("events.out.tfevents"))
        .ok_or("no event file")?;
    let python = std::env::var("FACEREC_PYTHON").unwrap_or_else(|_| ".deps/venv/bin/python".into());
    let code = format!(
        "from tensorboard.backend.event_processing.event_accumulator import EventAccumulator as E\n\
         a = E('{}'); a.Reload()\n\
         s = a.Scalars('train/loss'); print(len(s), s[0].step, s[-1].step, round(s[-1].value, 4))",
        event.display()
    );
    let out = std::process::Command::new(&python).args(["-c", &code]).output()?;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let got = String::from_utf8(out.stdout)?;
    let last = *losses(dir.path())?.last().unwrap();
    assert_eq!(got.trim(), format!("32 1 32 {}", (last.1 * 1e4).round() / 1e4), "TensorBoard saw: {got}");
    Ok(())
}

#[test]
fn resume_drops_the_tensorboard_events_past_the_checkpoint() -> Result {
    // A run that logged 32 steps but kept no checkpoint after step 10 (as if it crashed before
    // writing them) resumes from step 10 and logs steps 11..32 again.
    let dir = tempfile::tempdir()?;
    train(config("")?, dir.path(), None, false)?;
    for (step, path) in checkpoint::list(dir.path()) {
        if step > 10 {
            std::fs::remove_file(path)?;
        }
    }
    assert_eq!(train(config("")?, dir.path(), None, true)?, Outcome::Finished);
    // TensorBoard's own reader over the directory, without its clean-up of out-of-order steps
    // (other readers, such as its Rust data server, do not have one): each step once, with the
    // values of steps.jsonl.
    let python = std::env::var("FACEREC_PYTHON").unwrap_or_else(|_| ".deps/venv/bin/python".into());
    let code = format!(
        "from tensorboard.backend.event_processing.event_accumulator import EventAccumulator as E\n\
         a = E('{}', purge_orphaned_data=False); a.Reload()\n\
         print(' '.join(f'{{s.step}}:{{s.value!r}}' for s in a.Scalars('train/loss')))",
        dir.path().display()
    );
    let out = std::process::Command::new(&python).args(["-c", &code]).output()?;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let got: Vec<(u64, f64)> = String::from_utf8(out.stdout)?
        .split_whitespace()
        .map(|w| {
            let (s, v) = w.split_once(':').ok_or("step:value")?;
            Ok((s.parse()?, v.parse()?))
        })
        .collect::<Result<_>>()?;
    let logged = losses(dir.path())?;
    assert_eq!(got.iter().map(|g| g.0).collect::<Vec<_>>(), (1..=32).collect::<Vec<_>>(), "TensorBoard saw: {got:?}");
    for ((step, tb), (_, json)) in got.iter().zip(&logged) {
        assert!((tb - json).abs() <= 1e-6 * json.abs().max(1.0), "step {step}: TensorBoard {tb}, steps.jsonl {json}");
    }
    Ok(())
}

/// An evaluator that fails at every call after its first `ok` ones, counting its calls.
struct FailingAfter {
    ok: usize,
    calls: usize,
}

impl facerec_train::Evaluator for FailingAfter {
    fn evaluate(&mut self, _model: &facerec_train::ModelParts<'_>) -> facerec_train::Result<Vec<(String, f64)>> {
        self.calls += 1;
        match self.calls > self.ok {
            true => Err(TrainError::Evaluation("the test set is unreadable".into())),
            false => Ok(vec![("score".into(), 1.0)]),
        }
    }
}

/// An evaluation that fails never costs the training before it: the weights are saved (a
/// checkpoint, and at the end of the run the model) before the error, which says where.
#[test]
fn a_failing_evaluation_keeps_the_weights_it_could_not_score() -> Result {
    // Evaluated at the end only (the period is past the run's 32 steps), and failing there.
    let dir = tempfile::tempdir()?;
    let cfg = config("[eval]\nevery_steps = 1000")?;
    let data = cfg.open_train()?;
    let mut trainer = facerec_train::Trainer::new(cfg.train_config(), dir.path(), data.source.num_classes())?;
    let mut failing = FailingAfter { ok: 0, calls: 0 };
    let err = trainer.fit(data.source.clone(), data.flip, Some(&mut failing), &mut ()).unwrap_err().to_string();
    let last = checkpoint::path(dir.path(), 32);
    assert!(last.is_file() && dir.path().join("model.safetensors").is_file(), "the trained weights were lost: {err}");
    assert!(err.contains("unreadable") && err.contains(&last.display().to_string()) && err.contains("model.safetensors"), "{err}");
    assert!(err.contains("--resume"), "{err}");
    // Mid-run (every 7 steps, the second evaluation fails at step 14; checkpoints every 5):
    // step 14's weights are saved, the model is not written (the run did not end).
    let dir = tempfile::tempdir()?;
    let cfg = config("[eval]\nevery_steps = 7")?;
    let mut trainer = facerec_train::Trainer::new(cfg.train_config(), dir.path(), data.source.num_classes())?;
    let mut failing = FailingAfter { ok: 1, calls: 0 };
    let err = trainer.fit(data.source, data.flip, Some(&mut failing), &mut ()).unwrap_err().to_string();
    assert_eq!(checkpoint::list(dir.path())[0].0, 14, "{err}");
    assert!(!dir.path().join("model.safetensors").exists());
    assert!(err.contains(&checkpoint::path(dir.path(), 14).display().to_string()) && !err.contains("model.safetensors"), "{err}");
    Ok(())
}

/// `[model] init` starts a run; a resume takes the weights from its checkpoint and neither
/// reads the file (it may be gone) nor counts dropping the key as a change of training.
#[test]
fn model_init_is_not_read_again_on_resume() -> Result {
    let (first, run) = (tempfile::tempdir()?, tempfile::tempdir()?);
    train(config("")?, first.path(), None, false)?;
    let init = first.path().join("init.safetensors");
    std::fs::rename(first.path().join("model.safetensors"), &init)?;
    let mut with_init = config("")?;
    with_init.model.init = Some(init.clone());
    assert_eq!(train(with_init.clone(), run.path(), Some(10), false)?, Outcome::Interrupted);
    std::fs::remove_file(&init)?;
    // The config still names the file that is gone: resumed from the checkpoint all the same.
    assert_eq!(train(with_init.clone(), run.path(), Some(20), true)?, Outcome::Interrupted);
    // Without the key (and without allowing changes): resumed, the change recorded as free.
    assert_eq!(train(config("")?, run.path(), None, true)?, Outcome::Finished);
    let changes = std::fs::read_to_string(run.path().join("changes.jsonl"))?;
    assert!(changes.contains("\"key\":\"model.init\"") && changes.contains("\"step\":20"), "{changes}");
    // A run that starts with the file gone is an error naming it.
    let fresh = tempfile::tempdir()?;
    let err = train(with_init, fresh.path(), None, false).unwrap_err().to_string();
    assert!(err.contains(&init.display().to_string()), "{err}");
    Ok(())
}

/// arcface_torch's polynomial schedule with a warm-up, stopped mid-run and resumed: every
/// step's rate in steps.jsonl is the rate arcface_torch's own `PolynomialLRWarmup` gives that
/// step (scripts/reference/optim_schedules.py runs it), to 1e-12 of the base rate.
#[test]
fn a_resumed_polynomial_run_follows_arcface_torchs_rates_at_every_step() -> Result {
    let mnist = facerec_data::paths::require("mnist")?;
    let sets = ["schedule.kind=\"polynomial\"", "schedule.milestones=[]", "schedule.warmup_steps=4"].map(String::from);
    let config = || Config::parse(&config_text(&mnist, ""), Path::new("test.toml"), &sets);
    let dir = tempfile::tempdir()?;
    assert_eq!(train(config()?, dir.path(), Some(11), false)?, Outcome::Interrupted);
    assert_eq!(train(config()?, dir.path(), None, true)?, Outcome::Finished);
    let rates: Vec<f64> = read_records(&dir.path().join("steps.jsonl"))?.iter().map(|r| r["lr"].as_f64().unwrap_or(f64::NAN)).collect();
    assert_eq!(rates.len(), 32, "2 epochs of 16 steps, one line each");
    let py = std::env::var("FACEREC_PYTHON").unwrap_or_else(|_| ".deps/venv/bin/python".into());
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/reference/optim_schedules.py");
    let out = std::process::Command::new(&py)
        .arg(script)
        .args(["polynomial", "--base", "0.01", "--warmup", "4", "--total", "32", "--steps", "32"])
        .output()?;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let reference: Vec<f64> = serde_json::from_slice(&out.stdout)?;
    for (step, (ours, theirs)) in rates.iter().zip(&reference).enumerate() {
        assert!((ours - theirs).abs() <= 1e-14, "step {}: facerec {ours}, arcface_torch {theirs}", step + 1);
    }
    Ok(())
}

/// training.png draws the run's own loss: for each kind of loss, one curve per named term with
/// its weight in the legend, none empty, and the weighted terms adding up to the total loss
/// at every logged step (the weights are the ones the objective used).
#[test]
fn every_loss_plots_its_own_terms_with_their_weights() -> Result {
    let kinds: [(&str, &[(&str, f64)]); 8] = [
        ("name = \"softmax\"", &[("softmax_loss", 1.0)]),
        ("lambda = 0.01\nalpha = 0.5", &[("softmax_loss", 1.0), ("center_loss", 0.01)]),
        ("lambda = 0.02\nalpha = 0.5\nnormalized = true\n[loss.head]\nname = \"arcface\"\nscale = 8.0", &[("arcface_loss", 1.0), ("center_loss", 0.02)]),
        ("name = \"cosface\"\nscale = 8.0", &[("cosface_loss", 1.0)]),
        ("name = \"arcface\"\nscale = 8.0", &[("arcface_loss", 1.0)]),
        ("name = \"sphereface\"", &[("sphereface_loss", 1.0)]),
        ("name = \"combined_margin\"\nscale = 8.0", &[("combined_margin_loss", 1.0)]),
        ("name = \"contrastive\"\nweight = 0.3\nmargin = 1.0", &[("softmax_loss", 1.0), ("contrastive_loss", 0.3)]),
    ];
    let mnist = facerec_data::paths::require("mnist")?;
    for (table, want) in kinds {
        let text = config_text(&mnist, "").replace("[loss]\nlambda = 0.01\nalpha = 0.5", &format!("[loss]\n{table}")).replace(
            "[schedule]\nepochs = 2\nmilestones = [1]",
            "[schedule]\nsteps = 4",
        );
        let config = Config::parse(&text, Path::new("test.toml"), &[]).map_err(|e| format!("{table}: {e}"))?;
        let dir = tempfile::tempdir()?;
        assert_eq!(train(config, dir.path(), None, false)?, Outcome::Finished, "{table}");
        let figures = facerec_eval::plot::training_figures(dir.path())?;
        let (_, figure) = figures.iter().find(|(p, _)| p.ends_with("training.png")).ok_or("no training.png figure")?;
        let lines: Vec<_> = figure.series.iter().filter(|s| !s.name.ends_with("(raw)")).collect();
        assert!(figure.series.iter().all(|s| !s.is_empty()), "{table}: an empty series in {:?}", figure.series);
        let labels: Vec<String> = want.iter().map(|(n, w)| if *w == 1.0 { n.to_string() } else { format!("{w} · {n}") }).collect();
        let names: Vec<&str> = lines.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names[0], format!("loss = {}", labels.join(" + ")), "{table}");
        assert_eq!(&names[1..], labels.iter().map(String::as_str).collect::<Vec<_>>(), "{table}");
        // The raw points: the weighted terms add up to the total at every step.
        let raw: Vec<&[(f64, f64)]> = figure.series.iter().filter(|s| s.name.ends_with("(raw)")).map(|s| s.points()).collect();
        assert_eq!(raw.len(), want.len() + 1, "{table}");
        assert_eq!(raw[0].len(), 4, "{table}: one point per step");
        for (i, &(step, total)) in raw[0].iter().enumerate() {
            let sum: f64 = raw[1..].iter().map(|r| r[i].1).sum();
            assert!((sum - total).abs() <= 1e-5 * total.abs().max(1.0), "{table}: step {step}: terms add to {sum}, loss {total}");
        }
    }
    Ok(())
}
