//! `scripts/paired.py`, the paired comparison docs/results.md quotes: its per-seed differences,
//! t statistics and p-values against SciPy's `ttest_rel` on the same numbers, read from reports
//! in the format `facerec train` writes (a kept copy of a real one, numbers changed).

use std::path::Path;
use std::process::Command;

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error>>;

fn root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

fn python() -> String {
    std::env::var("FACEREC_PYTHON").unwrap_or_else(|_| root().join(".deps/venv/bin/python").display().to_string())
}

/// A real report with its accuracy, TAR at FAR 1e-3 and open-set TAR at FAR 1e-4 replaced.
fn report(template: &serde_json::Value, acc: f64, tar: f64, open: f64) -> serde_json::Value {
    let mut r = template.clone();
    r["verification"]["accuracy_mean"] = acc.into();
    for t in r["verification"]["tar_at_far"].as_array_mut().into_iter().flatten() {
        if t["far"].as_f64() == Some(1e-3) {
            t["tar"] = tar.into();
        }
    }
    for t in r["open_set"]["verification"]["tar_at_far"].as_array_mut().into_iter().flatten() {
        if t["far"].as_f64() == Some(1e-4) {
            t["rate"] = open.into();
        }
    }
    r
}

#[test]
fn paired_t_tests_are_scipys_on_every_measure_the_reports_share() -> Result {
    let template: serde_json::Value = serde_json::from_slice(&std::fs::read(root().join("docs/runs/twophase/pretrained.json"))?)?;
    let dir = tempfile::tempdir()?;
    // Three seeds of A and B; B - A accuracy +1, +2, +3 points (t = 2 / (1 / sqrt 3) = 3.46,
    // p = 0.074 by hand from the t table), TAR mixed, open-set TAR differences +0.5, +0.7, +0.2.
    let a = [(0.90, 0.30, 0.10), (0.91, 0.35, 0.12), (0.92, 0.32, 0.11)];
    let b = [(0.91, 0.33, 0.105), (0.93, 0.34, 0.127), (0.95, 0.36, 0.112)];
    let mut args = vec![root().join("scripts/paired.py").display().to_string(), "--a".into()];
    let write = |name: String, (acc, tar, open): (f64, f64, f64)| -> Result<String> {
        let path = dir.path().join(name);
        std::fs::write(&path, serde_json::to_vec(&report(&template, acc, tar, open))?)?;
        Ok(path.display().to_string())
    };
    for (i, m) in a.iter().enumerate() {
        args.push(write(format!("a{i}.json"), *m)?);
    }
    args.push("--b".into());
    for (i, m) in b.iter().enumerate() {
        args.push(write(format!("b{i}.json"), *m)?);
    }
    let out = Command::new(python()).args(&args).output()?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("acc: B - A per seed +1.00, +2.00, +3.00; mean +2.00, paired t = 3.46 (2 df), p = 0.074"), "{text}");
    // The same numbers through SciPy.
    let scipy = "import sys, json; from scipy.stats import ttest_rel\n\
        a, b = json.loads(sys.argv[1]), json.loads(sys.argv[2])\n\
        for k in range(3):\n    r = ttest_rel([100 * y[k] for y in b], [100 * x[k] for x in a])\n    print(f'{r.statistic:.2f} {r.pvalue:.3f}')";
    let js = |v: &[(f64, f64, f64)]| serde_json::to_string(&v.iter().map(|m| [m.0, m.1, m.2]).collect::<Vec<_>>()).unwrap();
    let out = Command::new(python()).args(["-c", scipy, &js(&a), &js(&b)]).output()?;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let want: Vec<String> = String::from_utf8(out.stdout)?.lines().map(str::to_owned).collect();
    for (key, line) in ["acc", "tar1e-3", "open_tar1e-04"].iter().zip(&want) {
        let (t, p) = line.split_once(' ').ok_or("scipy's line")?;
        let got = text.lines().find(|l| l.starts_with(&format!("{key}:"))).ok_or(format!("no {key} line in {text}"))?;
        assert!(got.contains(&format!("paired t = {t} (2 df), p = {p}")), "{key}: SciPy says t = {t}, p = {p}; paired.py: {got}");
    }
    // AUC is the template's in every report: equal differences get no t statistic.
    assert!(text.contains("auc: B - A per seed +0.00, +0.00, +0.00; mean +0.00; the differences are equal, no t-test"), "{text}");
    // Measures every report shares, the open set's included; a missing report is an error.
    assert!(text.contains("| open_tar1e-03 | open_tar1e-04 | open_tar1e-05 | open_dir1% | open_rank1 |"), "{text}");
    let out = Command::new(python()).args([&args[0], "--a", "nowhere", "--b", &args[5]]).output()?;
    assert!(!out.status.success());
    Ok(())
}
