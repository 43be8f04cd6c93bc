//! Property-based fuzzing of the safetensors reader behind weights and checkpoints: arbitrary
//! bytes, corrupted real files and the committed corpus (`fuzz/corpus/checkpoint`) give an
//! error naming the file, never a panic; every single-bit flip in a tensor is caught by the
//! checksum. `FACEREC_FUZZ_CASES` raises the case count.

use std::collections::BTreeMap;
use std::path::Path;

use facerec_model::weights::{from_bytes, to_bytes};
use proptest::prelude::*;
use tch::Tensor;

fn cases() -> u32 {
    std::env::var("FACEREC_FUZZ_CASES").ok().and_then(|s| s.parse().ok()).unwrap_or(256)
}

fn valid_file() -> Vec<u8> {
    let tensors = vec![
        ("a.weight".to_string(), Tensor::from_slice(&[1.0f32, 2.0, 3.0, 4.0]).view([2, 2])),
        ("b".to_string(), Tensor::from_slice(&[7i64, 8])),
    ];
    to_bytes(&tensors, &BTreeMap::from([("step".to_string(), "3".to_string())])).unwrap()
}

#[test]
fn corpus_replays_without_panics() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/checkpoint");
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        let bytes = std::fs::read(&p).unwrap();
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        match from_bytes(&bytes, &p) {
            Ok(_) => assert!(name.starts_with("valid"), "{name} should be rejected"),
            Err(e) => {
                assert!(!name.starts_with("valid"), "{name}: {e}");
                assert!(e.to_string().contains(&p.display().to_string()), "{e}");
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let _ = from_bytes(&data, Path::new("x"));
    }

    #[test]
    fn truncation_is_always_an_error(cut in 0usize..10_000) {
        let good = valid_file();
        let cut = cut % good.len();
        prop_assert!(from_bytes(&good[..cut], Path::new("x")).is_err());
    }

    #[test]
    fn any_flipped_data_bit_is_detected(bit in 0usize..(8 * 32)) {
        // The data section (after the 8-byte length and the JSON header) holds 32 bytes:
        // 4 floats and 2 int64.
        let mut bytes = valid_file();
        let start = 8 + u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
        assert_eq!(bytes.len() - start, 32);
        bytes[start + bit / 8] ^= 1 << (bit % 8);
        let err = from_bytes(&bytes, Path::new("x")).unwrap_err().to_string();
        prop_assert!(err.contains("checksum mismatch"), "{}", err);
    }
}
