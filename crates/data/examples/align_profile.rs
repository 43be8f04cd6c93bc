//! Where the time of `align` goes, per stage, single-threaded:
//! `cargo run --release -p facerec-data --example align_profile [N]`.

use std::time::{Duration, Instant};

use facerec_data::align::{align, hwc_to_chw, Template};
use facerec_data::image_io::decode_rgb;
use facerec_data::landmarks::{LandmarkFile, OnBad};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let n: usize = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(1000);
    let lfw = facerec_data::paths::require("lfw")?;
    let lms = LandmarkFile::read(&lfw.join("landmarks_5pt.tsv"), OnBad::Fail)?;
    let mut keys: Vec<_> = lms.entries.keys().cloned().collect();
    keys.sort();
    keys.truncate(n);
    let files: Vec<Vec<u8>> = keys.iter().map(|k| std::fs::read(lfw.join("images").join(k))).collect::<Result<_, _>>()?;
    let (mut t_dec, mut t_align, mut t_chw) = (Duration::ZERO, Duration::ZERO, Duration::ZERO);
    for (k, bytes) in keys.iter().zip(&files) {
        let t = Instant::now();
        let img = decode_rgb(bytes, k)?;
        t_dec += t.elapsed();
        let t = Instant::now();
        let crop = align(&img, &lms.entries[k].landmarks, Template::CaffeFace)?;
        t_align += t.elapsed();
        let t = Instant::now();
        std::hint::black_box(hwc_to_chw(&crop, 112, 96));
        t_chw += t.elapsed();
    }
    let per = |d: Duration| d.as_secs_f64() * 1e6 / n as f64;
    eprintln!("per image: decode {:.0} us, align {:.0} us, chw {:.0} us", per(t_dec), per(t_align), per(t_chw));
    Ok(())
}
