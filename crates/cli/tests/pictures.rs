//! End-to-end tests of what facerec shows rather than computes: the pictures a training run
//! draws, `facerec info`'s account of libtorch and the data, and help text that fits a terminal.

use std::path::{Path, PathBuf};

use facerec_eval::plot::{self, Marks};

mod common;
use common::{command, text, Result};

/// The line of `out` that starts (after indentation) with `prefix`.
fn line<'a>(out: &'a str, prefix: &str) -> &'a str {
    out.lines().find(|l| l.trim_start().starts_with(prefix)).unwrap_or_else(|| panic!("no line {prefix:?} in\n{out}"))
}

#[test]
fn info_names_the_libtorch_loaded_and_where_it_looked_for_the_data() -> Result {
    // An empty checkout: everything is missing, each line says where it looked and what
    // provides it.
    let empty = tempfile::tempdir()?;
    let out = command(&["info"], empty.path()).env("FACEREC_REPO", empty.path()).output()?;
    let all = text(&out);
    assert!(out.status.success(), "{all}");
    let data = empty.path().join("data");
    assert!(line(&all, "data (").contains(&data.display().to_string()), "{all}");
    for (name, looked) in [
        ("MNIST:", "mnist/train-images-idx3-ubyte"),
        ("LFW images:", "lfw/images"),
        ("LFW pairs.txt:", "lfw/pairs.txt"),
        ("LFW landmarks:", "lfw/landmarks_5pt.tsv"),
        ("MTCNN weights:", "mtcnn/pnet.safetensors"),
    ] {
        let l = line(&all, name);
        assert!(l.contains("missing") && l.contains(&data.join(looked).display().to_string()), "{l}");
        assert!(l.contains("scripts/setup.sh"), "{l}");
    }
    assert!(line(&all, "MNIST:").contains("missing 4 of 4 files"), "{all}");

    // The same files in place (empty ones: info checks that they are there, not what is in
    // them): each is found, at that path.
    let full = tempfile::tempdir()?;
    let data = full.path().join("data");
    for dir in ["mnist", "lfw/images", "mtcnn", "att_faces"] {
        std::fs::create_dir_all(data.join(dir))?;
    }
    for file in [
        "mnist/train-images-idx3-ubyte",
        "mnist/train-labels-idx1-ubyte",
        "mnist/t10k-images-idx3-ubyte",
        "mnist/t10k-labels-idx1-ubyte",
        "lfw/pairs.txt",
        "lfw/landmarks_5pt.tsv",
        "mtcnn/pnet.safetensors",
        "mtcnn/rnet.safetensors",
        "mtcnn/onet.safetensors",
    ] {
        std::fs::write(data.join(file), b"")?;
    }
    let out = command(&["info"], empty.path()).env("FACEREC_REPO", full.path()).output()?;
    let all = text(&out);
    assert!(out.status.success(), "{all}");
    for (name, at) in [
        ("MNIST:", "mnist"),
        ("LFW images:", "lfw/images"),
        ("LFW pairs.txt:", "lfw/pairs.txt"),
        ("LFW landmarks:", "lfw/landmarks_5pt.tsv"),
        ("MTCNN weights:", "mtcnn"),
        ("AT&T faces:", "att_faces"),
    ] {
        let l = line(&all, name);
        assert!(l.ends_with(&format!("found {}", data.join(at).display())), "{l}");
    }

    // libtorch: a version and the library file this process loaded, which exists.
    let l = line(&all, "libtorch:");
    let (version, file) = l.trim_start_matches("libtorch:").trim().split_once(" (").ok_or(l.to_owned())?;
    assert!(version.chars().next().is_some_and(|c| c.is_ascii_digit()) && version.contains('.'), "{l}");
    let file = PathBuf::from(file.trim_end_matches(')'));
    assert!(file.ends_with("libtorch_cpu.so") && file.is_file(), "{l}");
    Ok(())
}

#[test]
fn launch_examples_stay_on_one_line_each() -> Result {
    // clap wraps help at 100 columns when there is no terminal (as here): an example longer
    // than that is cut in the middle of its command.
    let out = command(&["launch", "--help"], Path::new(".")).env_remove("COLUMNS").output()?;
    let help = String::from_utf8(out.stdout)?;
    assert!(out.status.success(), "{help}");
    let examples = &help[help.find("Examples:").ok_or("no examples")?..];
    let commands: Vec<&str> = examples.lines().filter(|l| l.starts_with("  ")).collect();
    assert!(commands.len() >= 3, "{examples}");
    for c in &commands {
        let c = c.trim();
        assert!(c.starts_with("facerec launch ") || c.starts_with("torchrun "), "an example cut in two: {c:?}\n{examples}");
        assert!(c.contains("train configs/") && c.contains(".toml"), "{c:?}");
    }
    assert!(help.lines().all(|l| l.chars().count() <= 100), "{help}");
    Ok(())
}

/// How many pixels of a PNG have (to within 2 levels) the colour `c`.
fn count(png: &Path, (r, g, b): (u8, u8, u8)) -> Result<usize> {
    let img = image::open(png)?.to_rgb8();
    let want = [r, g, b];
    Ok(img.pixels().filter(|p| p.0.iter().zip(want).all(|(&a, b)| a.abs_diff(b) <= 2)).count())
}

#[test]
fn a_training_run_draws_its_one_evaluation_and_the_weighted_center_term() -> Result {
    // 10 steps and one evaluation (at the end of the epoch).
    let dir = tempfile::tempdir()?;
    let cfg = common::mnist_config(dir.path(), 0.01)?;
    let out = command(&["train", cfg.to_str().unwrap(), "--name", "tiny", "-q"], dir.path()).output()?;
    assert!(out.status.success(), "{}", text(&out));
    let run = dir.path().join("runs/tiny");
    let figures = plot::training_figures(&run)?;
    let by_file = |name: &str| figures.iter().find(|(p, _)| p == &run.join(name)).map(|(_, f)| f.clone());

    // evaluation.png: MNIST's accuracy and intra/inter ratio, one point each, drawn as markers
    // (a line of one point draws nothing: the plot used to be empty).
    let evaluation = by_file("evaluation.png").ok_or("no evaluation.png figure")?;
    let names: Vec<&str> = evaluation.series.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["intra_inter_ratio", "test_accuracy"]);
    for s in &evaluation.series {
        assert_eq!(s.len(), 1, "{}", s.name);
        assert!(matches!(s.marks, Marks::Line { markers: true, .. }), "{s:?}");
        // a marker (some 40 pixels) besides the legend's line (18 x 2)
        let n = count(&run.join("evaluation.png"), (s.colour.0, s.colour.1, s.colour.2))?;
        assert!(n > 36 + 30, "{}: {n} pixels of its colour", s.name);
    }
    assert_eq!(evaluation.x_ticks.as_deref(), Some([10.0].as_slice()), "one tick, at step 10");

    // training.png: the center curve is the weighted term, with the run's lambda.
    let training = by_file("training.png").ok_or("no training.png figure")?;
    assert!(training.series.iter().any(|s| s.name == "0.01 · center_loss"), "{training:?}");
    assert!(training.x_ticks.as_ref().is_some_and(|t| t.iter().all(|x| x.fract() == 0.0)));
    assert!(run.join("training.png").is_file());
    Ok(())
}
