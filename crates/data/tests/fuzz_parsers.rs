//! Property-based fuzzing of every parser of `facerec-data` (CI's bounded stand-in for the
//! cargo-fuzz targets in `fuzz/`): arbitrary bytes and mutations of real inputs must give a
//! value or an error, never a panic or a hang. The committed corpus (`fuzz/corpus/<target>/`,
//! real and hostile cases) is replayed too. `FACEREC_FUZZ_CASES` raises the case count.

use std::path::{Path, PathBuf};

use facerec_data::dataset::FaceDataset;
use facerec_data::idx::IdxArray;
use facerec_data::image_io::decode_rgb;
use facerec_data::landmarks::{LandmarkFile, OnBad};
use facerec_data::lfw::Pairs;
use facerec_data::npy;
use ndarray::IxDyn;
use proptest::prelude::*;

fn corpus(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus").join(target);
    let mut files: Vec<(PathBuf, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| {
            let p = e.unwrap().path();
            let bytes = std::fs::read(&p).unwrap();
            (p, bytes)
        })
        .collect();
    files.sort();
    assert!(!files.is_empty(), "empty corpus {}", dir.display());
    files
}

/// Runs every parser on `data`; any panic fails the test.
fn all_parsers(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let _ = IdxArray::parse(data);
    let _ = npy::parse::<f32, IxDyn>(data);
    let _ = npy::parse::<u8, IxDyn>(data);
    let _ = Pairs::parse(&text, Path::new("pairs.txt"));
    let _ = LandmarkFile::parse(&text, Path::new("l.tsv"), OnBad::Fail);
    let _ = LandmarkFile::parse(&text, Path::new("l.tsv"), OnBad::Skip);
    let _ = FaceDataset::parse_list(&text, Path::new("list.txt"), Path::new("."));
    let _ = decode_rgb(data, Path::new("x.img"));
    let _ = facerec_data::insightface::EvalBin::parse(data);
    let _ = facerec_data::insightface::read_record(data, 0);
    let _ = facerec_data::insightface::unpack(data);
}

fn cases() -> u32 {
    std::env::var("FACEREC_FUZZ_CASES").ok().and_then(|s| s.parse().ok()).unwrap_or(256)
}

/// A mutation: flip bytes, cut, or insert.
fn mutate(seed: &[u8], ops: &[(u8, usize, u8)]) -> Vec<u8> {
    let mut v = seed.to_vec();
    for &(op, pos, byte) in ops {
        if v.is_empty() {
            v.push(byte);
            continue;
        }
        let i = pos % v.len();
        match op % 4 {
            0 => v[i] ^= byte | 1,
            1 => v.truncate(i),
            2 => v.insert(i, byte),
            _ => {
                const SPECIAL: &[u8] = b"\t\n 0-.eE9\xff";
                v[i] = SPECIAL[byte as usize % SPECIAL.len()];
            }
        }
    }
    v
}

#[test]
fn corpus_replays_without_panics_and_hostile_cases_are_rejected() {
    for target in ["idx", "npy", "pairs", "landmarks", "list", "image"] {
        for (path, bytes) in corpus(target) {
            all_parsers(&bytes);
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            let text = String::from_utf8_lossy(&bytes);
            let ok = match target {
                "idx" => IdxArray::parse(&bytes).is_ok(),
                "npy" => npy::parse::<f32, IxDyn>(&bytes).is_ok() || npy::parse::<u8, IxDyn>(&bytes).is_ok(),
                "pairs" => Pairs::parse(&text, &path).is_ok(),
                "landmarks" => LandmarkFile::parse(&text, &path, OnBad::Fail).is_ok(),
                "list" => FaceDataset::parse_list(&text, &path, Path::new(".")).is_ok(),
                _ => decode_rgb(&bytes, &path).is_ok(),
            };
            let expect_ok = name.starts_with("valid") || name.starts_with("real");
            assert_eq!(ok, expect_ok, "{target}/{name}: parsed {ok}, expected {expect_ok}");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..4096)) {
        all_parsers(&data);
    }

    #[test]
    fn mutated_real_inputs_never_panic(
        which in 0usize..1000,
        ops in proptest::collection::vec((any::<u8>(), any::<usize>(), any::<u8>()), 1..8),
    ) {
        let seeds: Vec<Vec<u8>> = ["idx", "npy", "pairs", "landmarks", "list", "image"]
            .iter()
            .flat_map(|t| corpus(t).into_iter().map(|(_, b)| b))
            .collect();
        let seed = &seeds[which % seeds.len()];
        all_parsers(&mutate(seed, &ops));
    }

    #[test]
    fn valid_idx_round_trips(dims in proptest::collection::vec(1usize..5, 1..4), byte in any::<u8>()) {
        let n: usize = dims.iter().product();
        let a = IdxArray { dims, data: vec![byte; n] };
        prop_assert_eq!(IdxArray::parse(&a.to_bytes()).unwrap(), a);
    }

    #[test]
    fn valid_landmark_rows_round_trip(coords in proptest::collection::vec(-1e4f32..1e4, 10)) {
        let row: Vec<String> = coords.iter().map(|c| format!("{c:.1}")).collect();
        let text = format!("x/y.jpg\t{}\n", row.join("\t"));
        let f = LandmarkFile::parse(&text, Path::new("l.tsv"), OnBad::Fail).unwrap();
        let got = f.entries[Path::new("x/y.jpg")].landmarks.0;
        for (k, c) in coords.iter().enumerate() {
            prop_assert!((got[k / 2][k % 2] - c).abs() <= 0.051);
        }
    }
}
