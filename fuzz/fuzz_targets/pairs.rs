#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let _ = facerec_data::lfw::Pairs::parse(&text, std::path::Path::new("pairs.txt"));
});
