//! Property-based fuzzing of the checkpoint reader (CI's bounded stand-in for the cargo-fuzz
//! target `fuzz/fuzz_targets/torchfile.rs`): arbitrary bytes behind either format's header,
//! pickle opcode soup, and real checkpoints spliced with either give a checkpoint or an
//! error naming the file, never a panic. The committed corpus (`fuzz/corpus/torchfile`,
//! written by `scripts/reference/torch_save_fixtures.py --corpus`) is replayed: `valid_*`
//! files must read, the others must not. `FACEREC_FUZZ_CASES` raises the case count.

use std::path::{Path, PathBuf};

use facerec_torchfile::{read_bytes, ErrorKind};
use proptest::prelude::*;

fn cases() -> u32 {
    std::env::var("FACEREC_FUZZ_CASES").ok().and_then(|s| s.parse().ok()).unwrap_or(256)
}

fn corpus() -> Vec<(PathBuf, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/torchfile");
    let mut files: Vec<(PathBuf, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| {
            let path = entry.unwrap_or_else(|e| panic!("{}: {e}", dir.display())).path();
            let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            (path, bytes)
        })
        .collect();
    files.sort();
    assert!(files.len() >= 2, "corpus {} is missing its seeds", dir.display());
    files
}

/// The two valid seeds, zip then legacy.
fn valid() -> Vec<Vec<u8>> {
    corpus()
        .into_iter()
        .filter(|(p, _)| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("valid")))
        .map(|(_, b)| b)
        .collect()
}

/// Bytes drawn mostly from pickle opcodes and the small arguments they take.
fn opcode_soup() -> impl Strategy<Value = Vec<u8>> {
    let opcodes = b"(.012NIJKLMQRTUXabcdehjlpqrstu}])GCB\x80\x81\x85\x86\x87\x88\x89\x8a\x8b\x8c\x8d\x8e\x8f\x90\x91\x92\x93\x94\x95\x96";
    let byte = prop_oneof![3 => proptest::sample::select(opcodes.to_vec()), 1 => 0u8..8, 1 => any::<u8>()];
    proptest::collection::vec(byte, 0..256)
}

#[test]
fn corpus_replays_and_hostile_cases_are_rejected() {
    for (path, bytes) in corpus() {
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        match read_bytes(&bytes, &path) {
            Ok(checkpoint) => {
                assert!(name.starts_with("valid"), "{name} should be rejected");
                assert_eq!(checkpoint.tensors.len(), 2, "{name}");
                assert_eq!(checkpoint.key.as_deref(), Some("state_dict"), "{name}");
            }
            Err(e) => {
                assert!(!name.starts_with("valid"), "{name}: {e}");
                assert!(e.to_string().starts_with(&path.display().to_string()), "{e}");
                if name.starts_with("module") {
                    assert!(
                        matches!(&e.kind, ErrorKind::PickledObject { class, .. } if class == "torch.nn.modules.linear.Linear"),
                        "{e}"
                    );
                }
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_behind_a_header_never_panic(header in 0usize..3, data in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let mut bytes = [&b""[..], b"PK\x03\x04", b"\x80\x02"][header].to_vec();
        bytes.extend(data);
        let _ = read_bytes(&bytes, Path::new("x.pt"));
    }

    #[test]
    fn opcode_soup_never_panics(soup in opcode_soup()) {
        let mut bytes = b"\x80\x02".to_vec();
        bytes.extend(soup);
        let _ = read_bytes(&bytes, Path::new("x.pt"));
    }

    #[test]
    fn spliced_checkpoints_never_panic(which in 0usize..2, at in 0usize..4096, cut in 0usize..64, soup in opcode_soup()) {
        // A real checkpoint with `cut` bytes at `at` replaced by soup (at any length).
        let good = &valid()[which];
        let at = at % good.len();
        let mut bytes = good[..at].to_vec();
        bytes.extend(soup);
        bytes.extend(good.get(at + cut..).unwrap_or_default());
        let _ = read_bytes(&bytes, Path::new("x.pt"));
    }

    #[test]
    fn every_truncation_is_an_error(which in 0usize..2, cut in 0usize..10_000) {
        let good = &valid()[which];
        let cut = cut % good.len();
        prop_assert!(read_bytes(&good[..cut], Path::new("x.pt")).is_err());
    }
}
