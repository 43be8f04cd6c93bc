//! The crate graph has no back-edges (checked from Cargo's metadata by the same script that
//! prints it for docs/design.md), and evaluation does not depend on training.

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
