//! Checkpoints written by PyTorch itself, read back and compared byte for byte with what
//! `torch.load` gives. The fixtures and their expected values are written at test time by
//! `scripts/reference/torch_save_fixtures.py` (the Python of `FACEREC_PYTHON`, default
//! `.deps/venv/bin/python`, with torch and safetensors); the shared MobileFaceNet checkpoint
//! is `$FACEREC_DATA/pretrained/mobilefacenet_casia` (default `../shared/data`). Without
//! either, the tests fail: they do not skip.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use facerec_torchfile::{is_torch_file, read, read_bytes, Checkpoint, DType, ErrorKind, Format};
use safetensors::{Dtype, SafeTensors};

type Result<T = (), E = Box<dyn std::error::Error>> = std::result::Result<T, E>;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The shared checkpoint folder: `$FACEREC_DATA` as scripts/setup.sh reads it.
fn shared_checkpoint() -> PathBuf {
    let data = std::env::var_os("FACEREC_DATA").map(PathBuf::from).unwrap_or_else(|| root().join("../shared/data"));
    data.join("pretrained/mobilefacenet_casia/mobilefacenet_casia_068.ckpt")
}

/// The fixtures folder, written once per test run by the fixture script (one folder per
/// build profile, so that a debug and a release run at once do not overwrite each other's).
fn fixtures() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let profile = if cfg!(debug_assertions) { "debug" } else { "release" };
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("torchfile-fixtures-{profile}"));
        let python = std::env::var_os("FACEREC_PYTHON")
            .map(PathBuf::from)
            .unwrap_or_else(|| root().join(".deps/venv/bin/python"));
        let mut command = Command::new(&python);
        command.arg(root().join("scripts/reference/torch_save_fixtures.py")).arg(&dir);
        if shared_checkpoint().exists() {
            command.arg("--checkpoint").arg(shared_checkpoint());
        }
        let out =
            command.output().unwrap_or_else(|e| panic!("cannot run {}: {e} (set FACEREC_PYTHON)", python.display()));
        assert!(out.status.success(), "torch_save_fixtures.py failed:\n{}", String::from_utf8_lossy(&out.stderr));
        dir
    })
}

fn dtype_of(dtype: Dtype) -> Result<DType> {
    Ok(match dtype {
        Dtype::BOOL => DType::Bool,
        Dtype::U8 => DType::U8,
        Dtype::I8 => DType::I8,
        Dtype::I16 => DType::I16,
        Dtype::U16 => DType::U16,
        Dtype::F16 => DType::F16,
        Dtype::BF16 => DType::BF16,
        Dtype::I32 => DType::I32,
        Dtype::U32 => DType::U32,
        Dtype::F32 => DType::F32,
        Dtype::F64 => DType::F64,
        Dtype::I64 => DType::I64,
        Dtype::U64 => DType::U64,
        other => return Err(format!("no DType for {other:?}").into()),
    })
}

/// Every tensor of `expected` (a safetensors file of torch.load's tensors, made contiguous)
/// is in `checkpoint` with the same dtype, shape and bytes, and there are no others.
fn assert_same_tensors(checkpoint: &Checkpoint, expected: &Path) -> Result {
    let bytes = std::fs::read(expected)?;
    let expected = SafeTensors::deserialize(&bytes)?;
    assert_eq!(checkpoint.tensors.len(), expected.len(), "tensor count");
    for (name, want) in expected.tensors() {
        let got = checkpoint.get(&name).ok_or_else(|| format!("{name} is missing"))?;
        assert_eq!(got.dtype, dtype_of(want.dtype())?, "{name}");
        assert_eq!(got.shape, want.shape(), "{name}");
        assert!(got.data == want.data(), "{name}: the bytes differ from torch.load's");
    }
    Ok(())
}

/// The state dict's order in the fixture script: TinyNet's state_dict(), then the extras.
const NAMES: [&str; 25] = [
    "conv.weight",
    "bn.weight",
    "bn.bias",
    "bn.running_mean",
    "bn.running_var",
    "bn.num_batches_tracked",
    "fc.weight",
    "fc.bias",
    "extra.f64",
    "extra.f16",
    "extra.bf16",
    "extra.i32",
    "extra.i16",
    "extra.i8",
    "extra.u8",
    "extra.u16",
    "extra.bool",
    "extra.scalar_f32",
    "extra.transposed",
    "extra.column",
    "extra.broadcast",
    "shared.a",
    "shared.b",
    "extra.empty",
    "extra.parameter",
];

const NESTED: [(&str, Format); 4] = [
    ("zip_nested.pt", Format::Zip),
    ("legacy_nested.pt", Format::Legacy),
    ("zip_proto4.pt", Format::Zip),
    ("legacy_proto4.pt", Format::Legacy),
];

#[test]
fn both_formats_hold_what_torch_load_gives() -> Result {
    for (file, format) in NESTED {
        let checkpoint = read(&fixtures().join(file))?;
        assert_eq!(checkpoint.format, format, "{file}");
        assert_eq!(checkpoint.key.as_deref(), Some("state_dict"), "{file}");
        let extra: Vec<(&str, &str)> = checkpoint.extra.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(extra, [("epoch", "3"), ("lr", "0.1"), ("tag", "fixture")], "{file}");
        let names: Vec<&str> = checkpoint.tensors.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, NAMES, "{file}: names in the state dict's order, _metadata skipped");
        assert_same_tensors(&checkpoint, &fixtures().join("expected.safetensors"))?;
    }
    Ok(())
}

/// f32 values as little-endian bytes.
fn f32s(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

#[test]
fn scalars_views_and_shared_storages_by_hand() -> Result {
    // The values the fixture script writes, worked out by hand: base = arange(12) * 0.5.
    let checkpoint = read(&fixtures().join("legacy_nested.pt"))?;
    let get = |name: &str| checkpoint.get(name).ok_or(format!("{name} is missing"));
    let steps = get("bn.num_batches_tracked")?;
    assert_eq!(
        (steps.dtype, steps.shape.as_slice(), steps.data.as_slice()),
        (DType::I64, &[][..], &7i64.to_le_bytes()[..])
    );
    let shared_a = get("shared.a")?; // base[2:6]
    assert_eq!((shared_a.shape.as_slice(), &shared_a.data), (&[4][..], &f32s(&[1.0, 1.5, 2.0, 2.5])));
    let shared_b = get("shared.b")?; // base[6:].view(2, 3)
    assert_eq!((shared_b.shape.as_slice(), &shared_b.data), (&[2, 3][..], &f32s(&[3.0, 3.5, 4.0, 4.5, 5.0, 5.5])));
    let broadcast = get("extra.broadcast")?; // [[1], [2]] expanded to 2 x 3
    assert_eq!((broadcast.shape.as_slice(), &broadcast.data), (&[2, 3][..], &f32s(&[1.0, 1.0, 1.0, 2.0, 2.0, 2.0])));
    let scalar = get("extra.scalar_f32")?;
    assert_eq!((scalar.shape.as_slice(), scalar.numel(), &scalar.data), (&[][..], 1, &f32s(&[2.5])));
    assert_eq!(get("extra.u16")?.data, [1, 0, 0xff, 0xff]); // [1, 65535], _rebuild_tensor_v3
    assert_eq!(get("extra.i8")?.data, [0x80, 0x7f]); // [-128, 127]
    assert_eq!(get("extra.bool")?.data, [1, 0, 1, 0, 0, 1]);
    assert_eq!(get("extra.u8")?.data, [250, 251, 252, 253, 254, 255]);
    let empty = get("extra.empty")?;
    assert_eq!((empty.shape.as_slice(), empty.data.len()), (&[0, 3][..], 0));
    let transposed = get("extra.transposed")?;
    assert_eq!((transposed.shape.as_slice(), transposed.data.len()), (&[5, 3][..], 60));
    Ok(())
}

#[test]
fn dataparallel_prefix_is_stripped() -> Result {
    let checkpoint = read(&fixtures().join("dataparallel.pt"))?;
    assert_eq!((checkpoint.key.as_deref(), checkpoint.extra.len()), (None, 0));
    let names: Vec<&str> = checkpoint.tensors.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, NAMES);
    assert_same_tensors(&checkpoint, &fixtures().join("expected.safetensors"))
}

#[test]
fn a_legacy_storage_view_reads_its_slice() -> Result {
    // Storage 'root' = arange(10); its view is elements 4..10; the tensor is 2 x 2 at offset 1
    // of the view: [[5, 6], [7, 8]], as torch.load reads it (legacy_view.safetensors).
    let checkpoint = read(&fixtures().join("legacy_view.pt"))?;
    let w = checkpoint.get("w").ok_or("w is missing")?;
    assert_eq!((w.shape.as_slice(), &w.data), (&[2, 2][..], &f32s(&[5.0, 6.0, 7.0, 8.0])));
    assert_same_tensors(&checkpoint, &fixtures().join("legacy_view.safetensors"))
}

#[test]
fn a_state_dict_under_another_key_is_found_when_it_is_the_only_one() -> Result {
    let checkpoint = read(&fixtures().join("other_key.pt"))?;
    assert_eq!(checkpoint.key.as_deref(), Some("ema_weights"));
    assert_eq!(checkpoint.extra, [("step".to_string(), "10".to_string())]);
    let names: Vec<&str> = checkpoint.tensors.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["w", "b"]);
    Ok(())
}

#[test]
fn without_a_state_dict_the_error_lists_the_top_level_keys() {
    let path = fixtures().join("no_state_dict.pt");
    let message = read(&path).err().map(|e| e.to_string()).unwrap_or_default();
    assert_eq!(
        message,
        format!(
            "{}: no state dict (a dict of name -> tensor) found: top-level keys 'epoch' (the int 5), \
             'best' (the float 0.9), 'optimizer' (a dict of 1 item)",
            path.display()
        )
    );
}

#[test]
fn a_torchscript_archive_is_named() {
    let err = read(&fixtures().join("torchscript.pt")).err();
    assert!(matches!(&err, Some(e) if matches!(e.kind, ErrorKind::TorchScript)), "{err:?}");
}

#[test]
fn a_pickled_module_says_to_save_the_state_dict() {
    for file in ["module.pt", "module_legacy.pt"] {
        let path = fixtures().join(file);
        let err = read(&path).err();
        assert!(
            matches!(&err, Some(e) if matches!(&e.kind, ErrorKind::PickledObject { class, at: None } if class == "__main__.TinyNet")),
            "{file}: {err:?}"
        );
        let message = err.map(|e| e.to_string()).unwrap_or_default();
        assert_eq!(
            message,
            format!(
                "{}: holds a pickled Python object of class __main__.TinyNet, not a state dict; save model.state_dict() instead",
                path.display()
            )
        );
    }
}

#[test]
fn other_files_are_not_checkpoints_and_say_what_they_are() -> Result {
    let dir = fixtures();
    std::fs::write(dir.join("notes.txt"), "epoch 68: loss 0.5\n")?;
    std::fs::write(dir.join("empty.pt"), "")?;
    for (file, says) in [
        ("expected.safetensors", "it is a safetensors file"),
        ("notes.txt", "it is a text file, starting \"epoch 68: loss 0.5\\n\""),
        ("empty.pt", "the file is empty"),
    ] {
        let path = dir.join(file);
        assert!(!is_torch_file(&std::fs::read(&path)?), "{file}");
        let err = read(&path).err().ok_or(format!("{file} was read"))?;
        assert!(matches!(err.kind, ErrorKind::NotTorch { .. }), "{file}: {err:?}");
        let message = err.to_string();
        assert!(message.starts_with(&format!("{}: not a PyTorch checkpoint: {says}", path.display())), "{message}");
    }
    let missing = dir.join("no such file.pt");
    assert!(read(&missing).is_err_and(
        |e| matches!(e.kind, ErrorKind::Io(_)) && e.to_string().starts_with(&missing.display().to_string())
    ));
    Ok(())
}

#[test]
fn every_truncation_is_an_error_that_says_so() -> Result {
    for (file, _) in NESTED {
        let bytes = std::fs::read(fixtures().join(file))?;
        assert!(is_torch_file(&bytes), "{file}");
        for len in 0..bytes.len() {
            let err =
                read_bytes(&bytes[..len], Path::new(file)).err().ok_or(format!("{file} cut at {len} was read"))?;
            let message = err.to_string();
            assert!(message.starts_with(&format!("{file}: ")), "{message}");
            match err.kind {
                // Too short to be recognised: "PK\x03" or a lone 0x80.
                ErrorKind::NotTorch { .. } => assert!(len < 4, "{file} cut at {len}: {message}"),
                ErrorKind::Truncated { what } => {
                    assert!(what.contains(&format!("ends at byte {len}")), "{file} cut at {len}: {what}")
                }
                _ => panic!("{file} cut at {len}: {message}"),
            }
        }
    }
    Ok(())
}

#[test]
fn damaged_bytes_never_panic() -> Result {
    // Each byte of each fixture replaced, in turn, by its complement, its low bit flipped,
    // 0x00 or 0xff: read_bytes may succeed or fail, but must return.
    for file in ["zip_nested.pt", "legacy_nested.pt", "legacy_proto4.pt", "module.pt"] {
        let original = std::fs::read(fixtures().join(file))?;
        let mut bytes = original.clone();
        for at in 0..bytes.len() {
            let damaged = [original[at] ^ 0xff, original[at] ^ 0x01, 0x00, 0xff][at % 4];
            bytes[at] = damaged;
            let outcome = std::panic::catch_unwind(|| read_bytes(&bytes, Path::new(file)).is_ok());
            assert!(outcome.is_ok(), "{file} with byte {at} set to {damaged:#04x} panicked");
            bytes[at] = original[at];
        }
    }
    Ok(())
}

#[test]
fn the_shared_mobilefacenet_checkpoint_matches_params_tsv_and_torch_load() -> Result {
    let path = shared_checkpoint();
    assert!(path.exists(), "{} is missing: set FACEREC_DATA to the folder holding pretrained/", path.display());
    let checkpoint = read(&path)?;
    assert_eq!(checkpoint.format, Format::Legacy);
    assert_eq!(checkpoint.key.as_deref(), Some("net_state_dict"));
    assert!(checkpoint.extra.contains(&("epoch".into(), "68".into())), "{:?}", checkpoint.extra);

    // params.tsv: name, shape as AxBxC (empty for a 0-d tensor), dtype; one line a tensor.
    let tsv = std::fs::read_to_string(path.with_file_name("params.tsv"))?;
    let rows: Vec<Vec<&str>> = tsv.lines().filter(|l| !l.starts_with('#')).map(|l| l.split('\t').collect()).collect();
    assert_eq!(rows.len(), 333);
    assert_eq!(checkpoint.tensors.len(), rows.len());
    for ((name, tensor), row) in checkpoint.tensors.iter().zip(&rows) {
        let shape: Vec<usize> =
            row[1].split('x').filter(|d| !d.is_empty()).map(str::parse).collect::<Result<_, _>>()?;
        assert_eq!((name.as_str(), &tensor.shape, tensor.dtype.name()), (row[0], &shape, row[2]));
        assert_eq!(tensor.data.len(), tensor.numel() * tensor.dtype.size(), "{name}");
    }

    // torch.load's values, written by the fixture script.
    let extra: serde_json::Value = serde_json::from_slice(&std::fs::read(fixtures().join("checkpoint_extra.json"))?)?;
    assert_eq!(extra["key"], "net_state_dict");
    assert_eq!(extra["extra"]["epoch"], 68);
    assert_same_tensors(&checkpoint, &fixtures().join("checkpoint_expected.safetensors"))
}

#[test]
fn truncations_of_the_shared_checkpoint_say_where_it_ends() -> Result {
    let path = shared_checkpoint();
    let bytes = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    // 200 cuts spread over the file, plus the last bytes one by one.
    let cuts = (0..200).map(|i| 2 + i * (bytes.len() - 2) / 200).chain(bytes.len() - 16..bytes.len());
    for len in cuts {
        match read_bytes(&bytes[..len], &path).map_err(|e| e.kind) {
            Err(ErrorKind::Truncated { what }) => assert!(what.contains(&format!("ends at byte {len}")), "{what}"),
            other => panic!("cut at {len}: {:?}", other.map(|c| c.tensors.len())),
        }
    }
    // One cut inside a storage, spelled out: the last storage's bytes end the file.
    let err = read_bytes(&bytes[..bytes.len() - 1], &path).err().map(|e| e.to_string()).unwrap_or_default();
    assert!(err.contains(&format!("cut short: the file ends at byte {} inside storage '", bytes.len() - 1)), "{err}");
    Ok(())
}
