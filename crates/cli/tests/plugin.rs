//! A crate of your own, outside the checkout, as docs/adding-a-backbone.md section 4 says:
//! `facerec new-plugin` writes it, the docs show the files it writes, and it builds with cargo
//! and trains its own backbone and loss with nothing exported (no LIBTORCH, no
//! LD_LIBRARY_PATH, no FACEREC_REPO: a user's shell).

use std::path::{Path, PathBuf};
use std::process::Command;

mod common;
use common::{facerec, text, Result};

fn checkout() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().expect("the checkout")
}

/// The fenced blocks of section 4 of `doc` (a section from its `## 4.` heading to the next
/// `## `), dedented, with their language.
fn section_4_blocks(doc: &str) -> Vec<(String, String)> {
    let text = std::fs::read_to_string(checkout().join("docs").join(doc)).expect("the doc");
    let start = text.find("## 4.").expect("a section 4");
    let section = &text[start..];
    let section = &section[..section[3..].find("\n## ").map_or(section.len(), |i| i + 3)];
    let mut blocks = Vec::new();
    let mut open: Option<(String, usize, Vec<String>)> = None;
    for line in section.lines() {
        let trimmed = line.trim_start();
        match (&mut open, trimmed.strip_prefix("```")) {
            (None, Some(lang)) => open = Some((lang.to_owned(), line.len() - trimmed.len(), Vec::new())),
            (Some(_), Some("")) => {
                let (lang, _, lines) = open.take().unwrap_or_default();
                blocks.push((lang, lines.join("\n") + "\n"));
            }
            (Some((_, indent, lines)), _) => lines.push(line.get(*indent..).unwrap_or("").to_owned()),
            (None, None) => {}
        }
    }
    blocks
}

/// A command with the environment of a user's fresh shell: PATH and HOME (and where rustup and
/// cargo live, when set), nothing of this test's cargo.
fn clean(program: impl AsRef<std::ffi::OsStr>, cwd: &Path) -> Command {
    let mut cmd = Command::new(program);
    cmd.current_dir(cwd).env_clear();
    for keep in ["PATH", "HOME", "RUSTUP_HOME", "CARGO_HOME", "RUSTUP_TOOLCHAIN"] {
        if let Some(v) = std::env::var_os(keep) {
            cmd.env(keep, v);
        }
    }
    cmd
}

#[test]
fn new_plugin_writes_a_crate_that_builds_and_trains_outside_the_checkout() -> Result {
    let tmp = tempfile::tempdir()?;
    assert!(!tmp.path().starts_with(checkout()), "the crate must be outside the checkout");
    let crate_dir = tmp.path().join("plugin-check"); // not my-facerec: the example builds that binary into target/
    let out = facerec(&["new-plugin", crate_dir.to_str().ok_or("utf-8")?, "-q"], tmp.path());
    assert!(out.status.success(), "{}", text(&out));
    for f in ["Cargo.toml", "Cargo.lock", "build.rs", ".cargo/config.toml", "src/main.rs", "src/tiny_mlp.rs", "src/smoothed_softmax.rs", "configs/tiny_mnist.toml", "README.md"] {
        assert!(crate_dir.join(f).is_file(), "new-plugin did not write {f}");
    }
    assert!(crate_dir.join("data/mnist").exists(), "data links to the checkout's data");
    // Into a folder that holds files: refused, nothing overwritten.
    let again = facerec(&["new-plugin", crate_dir.to_str().ok_or("utf-8")?], tmp.path());
    assert!(!again.status.success() && text(&again).contains("not empty"), "{}", text(&again));

    // The docs show the files it writes, with the checkout's path as /path/to/facerec.
    let shown = |f: &str| -> Result<String> {
        Ok(std::fs::read_to_string(crate_dir.join(f))?.replace(&checkout().display().to_string(), "/path/to/facerec"))
    };
    let blocks = section_4_blocks("adding-a-backbone.md");
    let kinds = [
        ("src/main.rs", "facerec::main()"),
        ("Cargo.toml", "[dependencies]"),
        ("build.rs", "link_libtorch"),
        (".cargo/config.toml", "LIBTORCH"),
    ];
    for (file, marker) in kinds {
        let (_, block) = blocks.iter().find(|(_, b)| b.contains(marker)).ok_or(format!("no block of {file} in section 4"))?;
        assert!(shown(file)?.contains(block.as_str()), "docs/adding-a-backbone.md shows a {file} that new-plugin does not write:\n{block}\nwritten:\n{}", shown(file)?);
    }
    // The example's sources are the template's (one source for both).
    for f in ["src/tiny_mlp.rs", "src/smoothed_softmax.rs", "build.rs"] {
        assert_eq!(std::fs::read_to_string(crate_dir.join(f))?, std::fs::read_to_string(checkout().join("examples/custom-backbone").join(f))?);
    }

    // cargo builds it as a user would: in its folder, nothing exported. The checkout's own
    // target folder lends it the facerec crates already built (the same sources, versions and
    // profile), so only the crate itself compiles.
    let target = checkout().join("target");
    let build = clean("cargo", &crate_dir).args(["build", "--release", "--offline"]).env("CARGO_TARGET_DIR", &target).output()?;
    assert!(build.status.success(), "cargo build of the new crate failed:\n{}", text(&build));
    let bin = target.join("release/plugin-check");

    // It trains its own backbone and loss on MNIST (through the data link), run from its folder.
    let train = clean(&bin, &crate_dir)
        .args(["train", "configs/tiny_mnist.toml", "-q", "--set", "schedule.steps=20", "--set", "schedule.milestones=[]"])
        .args(["--set", "data.train_limit=640", "--set", "data.test_limit=200"])
        .output()?;
    assert!(train.status.success(), "{} train failed:\n{}", bin.display(), text(&train));
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(crate_dir.join("runs/tiny_mnist/report.json"))?)?;
    assert_eq!(report["steps"], 20);
    assert!(crate_dir.join("runs/tiny_mnist/model.safetensors").is_file());
    Ok(())
}
