#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = facerec_torchfile::read_bytes(data, std::path::Path::new("ck.pt"));
});
