#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let p = std::path::Path::new("list.txt");
    let _ = facerec_data::dataset::FaceDataset::parse_list(&text, p, std::path::Path::new("."));
});
