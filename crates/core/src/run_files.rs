//! The names of the files in a run directory (`runs/<name>/`), in one place: the crates that
//! write them use these, and `facerec_experiment::RunDir` builds paths from them.

/// The resolved experiment config (the trainer).
pub const CONFIG: &str = "config.toml";
/// Losses every `log.every_steps` steps (the trainer).
pub const STEPS: &str = "steps.jsonl";
/// Evaluations and epoch ends (the trainer).
pub const METRICS: &str = "metrics.jsonl";
/// The checkpoints folder (the trainer).
pub const CHECKPOINTS: &str = "checkpoints";
/// The trained backbone (the trainer, at the end of a run).
pub const MODEL: &str = "model.safetensors";
/// Settings changed on a resume, with their steps.
pub const CHANGES: &str = "changes.jsonl";
/// Where and why a run diverged.
pub const DIVERGED: &str = "diverged.json";
/// The MNIST report and its scatter plot of the test features.
pub const MNIST_REPORT: &str = "report.json";
pub const FEATURES_PNG: &str = "features.png";
/// The training curves.
pub const TRAINING_PNG: &str = "training.png";
pub const EVALUATION_PNG: &str = "evaluation.png";
/// The LFW report and its plots.
pub const LFW_REPORT: &str = "lfw_report.json";
pub const LFW_ROC_PNG: &str = "lfw_roc.png";
pub const LFW_SCORES_PNG: &str = "lfw_scores.png";

/// Every file and folder above. TensorBoard's event files (found by their prefix) and the
/// `eval_*` folders of re-evaluations come on top.
pub const ALL: &[&str] = &[
    CONFIG, STEPS, METRICS, CHECKPOINTS, MODEL, CHANGES, DIVERGED, MNIST_REPORT, FEATURES_PNG, TRAINING_PNG,
    EVALUATION_PNG, LFW_REPORT, LFW_ROC_PNG, LFW_SCORES_PNG,
];
