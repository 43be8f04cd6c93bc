#![no_main]
use facerec_data::landmarks::{LandmarkFile, OnBad};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let _ = LandmarkFile::parse(&text, std::path::Path::new("l.tsv"), OnBad::Fail);
    let _ = LandmarkFile::parse(&text, std::path::Path::new("l.tsv"), OnBad::Skip);
});
