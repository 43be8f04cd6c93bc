//! `facerec new-plugin DIR`: a crate of your own that adds a backbone and a loss to facerec,
//! anywhere on disk, ready to build and run with nothing exported.
//!
//! Its sources are `examples/custom-backbone`'s (a two-layer perceptron and a label-smoothed
//! softmax, trained by that example's test), so the template is the example that facerec's
//! tests train. Around them it writes what a crate outside the checkout needs and the example
//! gets from the workspace: path dependencies on this checkout's crates, the build script that
//! gives its binary an rpath to libtorch (`facerec_build::link_libtorch`), a
//! `.cargo/config.toml` that tells `torch-sys` where libtorch is, the checkout's `Cargo.lock`
//! (the versions facerec is tested with), and a `data` link to the checkout's data. The files
//! are described in `docs/adding-a-backbone.md` section 4.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::Args;

pub const EXAMPLES: &str = "Examples:
  facerec new-plugin ~/my-facerec              # then: cd ~/my-facerec && cargo build --release
  facerec new-plugin ../acme-face --name acme-face
  cd ~/my-facerec && target/release/my-facerec train configs/tiny_mnist.toml";

#[derive(Debug, Args)]
pub struct NewPluginArgs {
    /// The folder to create (it must not exist, or be empty).
    pub dir: PathBuf,
    /// The crate's and binary's name [default: the folder's name].
    #[arg(long)]
    pub name: Option<String>,
    /// The facerec checkout to depend on [default: $FACEREC_REPO, else the checkout this
    /// binary was built in].
    #[arg(long)]
    pub facerec: Option<PathBuf>,
}

/// The example crate's files, as the template's sources.
const MAIN_RS: &str = include_str!("../../../../examples/custom-backbone/src/main.rs");
const BACKBONE_RS: &str = include_str!("../../../../examples/custom-backbone/src/tiny_mlp.rs");
const LOSS_RS: &str = include_str!("../../../../examples/custom-backbone/src/smoothed_softmax.rs");
const BUILD_RS: &str = include_str!("../../../../examples/custom-backbone/build.rs");
const CONFIG_TOML: &str = include_str!("../../../../examples/custom-backbone/configs/tiny_mnist.toml");

/// What `new-plugin` writes, by path inside the new crate.
pub struct PluginFiles {
    pub files: Vec<(&'static str, String)>,
}

impl PluginFiles {
    /// The crate `name` depending on the facerec checkout at `checkout`, with libtorch at
    /// `libtorch` (a folder holding `lib/libtorch_cpu.so`).
    pub fn new(name: &str, checkout: &Path, libtorch: &Path, lock: Option<String>) -> Self {
        let crates = checkout.join("crates");
        let dep = |c: &str| toml_string(&crates.join(c).display().to_string());
        let manifest = format!(
            r#"# A crate of your own that adds a backbone (src/tiny_mlp.rs) and a loss
# (src/smoothed_softmax.rs) to facerec; written by `facerec new-plugin`. Build it with
# `cargo build --release`; the binary is facerec with them: target/release/{name}.
[package]
name = "{name}"
version = "0.1.0"
edition = "2021"
publish = false

[[bin]]
name = "{name}"
path = "src/main.rs"

[dependencies]
facerec = {{ path = {cli} }}
facerec-model = {{ path = {model} }}
facerec-losses = {{ path = {losses} }}
tch = "0.26"
torch-sys = "0.26"
serde = {{ version = "1", features = ["derive"] }}

[build-dependencies]
# build.rs: an rpath to libtorch and the CUDA libraries in the binary (nothing to export).
facerec-build = {{ path = {build} }}

# A workspace of its own, wherever the folder is.
[workspace]

# facerec's release profile: the same code as facerec's own binary.
[profile.release]
debug = "line-tables-only"
"#,
            cli = dep("cli"),
            model = dep("model"),
            losses = dep("losses"),
            build = dep("build-support"),
        );
        let cargo_config = format!(
            "# Where torch-sys finds libtorch when this crate is built (facerec's scripts/setup.sh\n\
             # installed it); a LIBTORCH you export yourself wins over this one.\n\
             [env]\n\
             LIBTORCH = {}\n",
            toml_string(&libtorch.display().to_string())
        );
        let main_rs = MAIN_RS.replacen("`my-facerec`", &format!("`{name}`"), 1);
        let config = format!(
            "# tiny_mlp on MNIST with the label-smoothed softmax, both defined in this crate:\n\
             # `target/release/{name} train configs/tiny_mnist.toml` (MNIST from data/mnist, a link to\n\
             # facerec's data folder).\n{}",
            CONFIG_TOML.lines().skip_while(|l| l.starts_with('#')).collect::<Vec<_>>().join("\n") + "\n"
        );
        let readme = format!(
            "# {name}\n\nfacerec with a backbone and a loss of your own, written by `facerec new-plugin`.\n\n\
             ```sh\ncargo build --release\ntarget/release/{name} train configs/tiny_mnist.toml\n```\n\n\
             `src/tiny_mlp.rs` is the backbone, `src/smoothed_softmax.rs` the loss, `src/main.rs` registers\n\
             them and hands over to facerec's command line: every subcommand (`train`, `eval`, `embed`,\n\
             `compare`, `bench`, ...) takes them by name. See facerec's docs/adding-a-backbone.md and\n\
             docs/adding-a-loss.md (in {}).\n",
            checkout.display()
        );
        let mut files = vec![
            ("Cargo.toml", manifest),
            ("build.rs", BUILD_RS.to_owned()),
            (".cargo/config.toml", cargo_config),
            ("src/main.rs", main_rs),
            ("src/tiny_mlp.rs", BACKBONE_RS.to_owned()),
            ("src/smoothed_softmax.rs", LOSS_RS.to_owned()),
            ("configs/tiny_mnist.toml", config),
            ("README.md", readme),
            (".gitignore", "/target\n/runs\n/data\n".to_owned()),
        ];
        if let Some(lock) = lock {
            files.push(("Cargo.lock", lock));
        }
        PluginFiles { files }
    }
}

/// `s` as a TOML basic string.
fn toml_string(s: &str) -> String {
    toml::Value::String(s.to_owned()).to_string()
}

/// A crate name from a folder name: lower case, `-` for anything but letters, digits and `_`.
fn crate_name(dir: &Path) -> anyhow::Result<String> {
    let raw = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let name: String = raw.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' { c.to_ascii_lowercase() } else { '-' }).collect();
    let name = name.trim_matches('-').to_owned();
    if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
        bail!("{}: no crate name in the folder's name; pass --name", dir.display());
    }
    Ok(name)
}

/// The facerec checkout: `--facerec`, `$FACEREC_REPO`, or the one this binary was built from.
fn checkout(given: Option<&Path>) -> anyhow::Result<PathBuf> {
    let built_in = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let candidate = match (given, std::env::var_os("FACEREC_REPO").filter(|r| !r.is_empty())) {
        (Some(g), _) => g.to_path_buf(),
        (None, Some(repo)) => PathBuf::from(repo),
        (None, None) => built_in,
    };
    let dir = std::fs::canonicalize(&candidate).with_context(|| format!("{}: no facerec checkout there (pass --facerec)", candidate.display()))?;
    if !dir.join("crates/cli/Cargo.toml").is_file() || !dir.join("crates/build-support/Cargo.toml").is_file() {
        bail!("{}: not a facerec checkout (no crates/cli/Cargo.toml); pass --facerec", dir.display());
    }
    Ok(dir)
}

pub fn run(args: NewPluginArgs) -> anyhow::Result<()> {
    let name = match &args.name {
        Some(n) => n.clone(),
        None => crate_name(&args.dir)?,
    };
    if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') || name.is_empty() {
        bail!("--name {name:?}: a crate name is letters, digits, - and _");
    }
    if args.dir.exists() && std::fs::read_dir(&args.dir).with_context(|| format!("reading {}", args.dir.display()))?.next().is_some() {
        bail!("{}: exists and is not empty; new-plugin writes a new crate into an empty or new folder", args.dir.display());
    }
    let checkout = checkout(args.facerec.as_deref())?;
    let libtorch = match std::env::var_os("LIBTORCH").filter(|l| !l.is_empty()) {
        Some(l) => PathBuf::from(l),
        None => checkout.join(".deps/libtorch"),
    };
    if !libtorch.join("lib").is_dir() {
        bail!(
            "{}: no libtorch there (run scripts/setup.sh in {} first, or export LIBTORCH)",
            libtorch.display(),
            checkout.display()
        );
    }
    let lock = std::fs::read_to_string(checkout.join("Cargo.lock")).ok();
    let plugin = PluginFiles::new(&name, &checkout, &libtorch, lock);
    for (path, text) in &plugin.files {
        let path = args.dir.join(path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
        }
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    // MNIST, LFW and MTCNN's weights where facerec's defaults look for them (./data).
    let data = checkout.join("data");
    if data.is_dir() {
        std::os::unix::fs::symlink(&data, args.dir.join("data")).with_context(|| format!("linking {}/data", args.dir.display()))?;
    }
    println!(
        "{}: crate {name} (a backbone and a loss of your own, on facerec at {})\n  cd {} && cargo build --release && target/release/{name} train configs/tiny_mnist.toml",
        args.dir.display(),
        checkout.display(),
        args.dir.display()
    );
    Ok(())
}
