//! The crate graph has no back-edges (checked from Cargo's metadata by the same script that
//! prints it for docs/design.md), and evaluation does not depend on training; the workspace
//! that scripts/build_for_torch.sh generates for the GPU machine's torch 2.11 resolves.

use std::path::Path;
use std::process::Command;

#[test]
fn no_crate_depends_on_one_above_it() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let out = Command::new(root.join("scripts/crate-graph.sh")).output().expect("running scripts/crate-graph.sh");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    let eval = stdout.lines().find(|l| l.starts_with("facerec-eval ")).expect("facerec-eval in the graph");
    assert!(!eval.contains("facerec-train"), "{eval}");
    let model = stdout.lines().find(|l| l.starts_with("facerec-model ")).expect("facerec-model in the graph");
    assert!(!model.contains("facerec-data"), "{model}");
    let design = std::fs::read_to_string(root.join("docs/design.md")).expect("docs/design.md");
    for line in stdout.lines() {
        assert!(design.contains(line.trim_end()), "docs/design.md does not show the crate graph as it is: {line}");
    }
}

/// The generated workspace of `scripts/build_for_torch.sh 2.11.0` (the repository's manifest
/// with tch 0.24.0, the crates linked) resolves with every workspace member and tch 0.24.0. The
/// build itself (5 GB of torch 2.11 and a full compile) is the script's, run before the GPU
/// check (docs/benchmarks.md).
#[test]
fn the_torch_2_11_workspace_resolves() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let out = Command::new(root.join("scripts/build_for_torch.sh"))
        .args(["--manifest-only", "2.11.0"])
        .output()
        .expect("running scripts/build_for_torch.sh");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let metadata = |manifest: &Path, args: &[&str]| -> serde_json::Value {
        let out = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .args(["metadata", "--format-version", "1"])
            .args(args)
            .arg("--manifest-path")
            .arg(manifest)
            .output()
            .expect("running cargo metadata");
        assert!(out.status.success(), "cargo metadata on {}: {}", manifest.display(), String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).expect("cargo metadata's JSON")
    };
    let meta = metadata(&root.join("target/torch-2.11.0/ws/Cargo.toml"), &[]);
    let version_of = |name: &str| {
        meta["packages"].as_array().unwrap().iter().find(|p| p["name"] == name).map(|p| p["version"].as_str().unwrap().to_owned())
    };
    assert_eq!(version_of("tch").as_deref(), Some("0.24.0"));
    assert_eq!(version_of("torch-sys").as_deref(), Some("0.24.0"));
    let members = meta["workspace_members"].as_array().unwrap().len();
    let ours = metadata(&root.join("Cargo.toml"), &["--no-deps"]);
    assert_eq!(members, ours["workspace_members"].as_array().unwrap().len(), "the generated workspace lost members");
}
