#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = facerec_data::npy::parse::<f32, ndarray::IxDyn>(data);
    let _ = facerec_data::npy::parse::<u8, ndarray::IxDyn>(data);
});
