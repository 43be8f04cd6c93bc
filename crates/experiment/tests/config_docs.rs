//! `docs/configuration.md` lists every key the config structs accept: each variant of every
//! section is filled in, serialised, and each dotted key path must appear in the page.

use std::path::Path;

use facerec_experiment::Config;

const FULL: &str = r#"
description = "x"
seed = 1
device = "cpu"
threads = 1
[data]
kind = "faces"
images = "i"
list = "l"
landmarks = "m"
template = "caffe_face"
cache_dir = "c"
flip = true
min_images = 2
skip_bad = true
[data.exclude_pairs]
pairs = "p"
folds = [1]
[model]
init = "Cargo.toml"
[model.backbone]
name = "face_resnet"
[loss]
lambda = 0.1
alpha = 0.5
[optim]
lr = 0.1
batch_size = 2
backbone_lr_mult = 0.1
[schedule]
epochs = 2
freeze_backbone = 1
[eval.lfw]
images = "i"
landmarks = "m"
pairs = "p"
subtract_mean = true
[[eval.bin]]
name = "cfp_fp"
path = "b"
"#;

fn keys(prefix: &str, t: &toml::Table, out: &mut Vec<String>) {
    for (k, v) in t {
        let path = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
        match v {
            toml::Value::Table(inner) => keys(&path, inner, out),
            // An array of tables (`[[eval.bin]]`): the keys of its tables.
            toml::Value::Array(items) if items.iter().all(toml::Value::is_table) && !items.is_empty() => {
                for item in items.iter().filter_map(toml::Value::as_table) {
                    keys(&path, item, out);
                }
            }
            _ => out.push(path),
        }
    }
}

#[test]
fn every_config_key_is_documented() {
    let doc = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/configuration.md")).unwrap();
    let variants = [
        ("", ""),
        ("kind = \"faces\"", "kind = \"mnist\"\ndir = \"d\"\ntrain_limit = 1\ntest_limit = 1\n#"),
        ("kind = \"faces\"", "kind = \"record_io\"\nrec = \"r\"\n#"),
        ("name = \"face_resnet\"", "name = \"lenet_pp\""),
        ("name = \"face_resnet\"", "name = \"iresnet\"\nlayers = [1, 1, 1, 1]"),
        ("name = \"face_resnet\"", "name = \"mobilefacenet\""),
        ("lambda = 0.1\nalpha = 0.5", "name = \"softmax\""),
        ("lambda = 0.1\nalpha = 0.5", "name = \"cosface\""),
        ("lambda = 0.1\nalpha = 0.5", "name = \"arcface\""),
        ("lambda = 0.1\nalpha = 0.5", "name = \"combined_margin\""),
        ("lambda = 0.1\nalpha = 0.5", "name = \"sphereface\""),
        ("lambda = 0.1\nalpha = 0.5", "name = \"contrastive\"\nweight = 0.1\nmargin = 1.0"),
        ("lambda = 0.1\nalpha = 0.5", "lambda = 0.1\nupdate = \"caffe\"\nlr_mult = 1.0\ndecay_mult = 2.0"),
        ("batch_size = 2", "batch_size = 2\nimages_per_identity = 2"),
        ("batch_size = 2", "batch_size = 2\nname = \"adamw\"\nbetas = [0.9, 0.99]\neps = 1e-6"),
        ("name = \"face_resnet\"", "name = \"mbf\""),
        ("[schedule]", "[schedule]\nkind = \"polynomial\"\npower = 2.0"),
        ("[schedule]", "[parallel]\nshard_head = true\nsample_rate = 0.1\noverlap = false\n[schedule]"),
    ];
    let mut all = Vec::new();
    for (from, to) in variants {
        let mut text = FULL.replace(from, to);
        if to.ends_with('#') {
            // Drop the faces-only lines that follow.
            let start = text.find(to).unwrap() + to.len();
            let end = text.find("[model.backbone]").unwrap();
            text.replace_range(start..end, "\n");
        }
        let cfg: Config = toml::from_str(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        let table: toml::Table = toml::from_str(&toml::to_string(&cfg).unwrap()).unwrap();
        keys("", &table, &mut all);
    }
    all.sort();
    all.dedup();
    let missing: Vec<&String> = all.iter().filter(|k| k.as_str() != "data.kind" && k.as_str() != "model.backbone.name" && !doc.contains(&format!("`{k}`"))).collect();
    assert!(missing.is_empty(), "docs/configuration.md does not document: {missing:?}");
    assert!(all.len() > 40, "only {} keys found", all.len());
}
