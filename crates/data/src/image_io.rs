//! Reading images of any of the formats face datasets come in (JPEG, PNG, PGM/PPM, BMP) as
//! 8-bit RGB. The format is sniffed from the content, not the extension; grey images are
//! replicated to three channels. Unreadable, truncated or corrupt files are errors naming
//! the file.

use std::path::Path;

use image::{ImageReader, RgbImage};

use crate::error::{DataError, Result};

/// Extensions recognised as images when listing folders (lower case).
pub const IMAGE_EXTENSIONS: [&str; 6] = ["jpg", "jpeg", "png", "pgm", "ppm", "bmp"];

/// Whether `path` has one of [`IMAGE_EXTENSIONS`].
pub fn is_image_path(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

/// Decodes `bytes` (read from `path`, named in errors) to RGB.
pub fn decode_rgb(bytes: &[u8], path: &Path) -> Result<RgbImage> {
    let bad = |msg: String| DataError::Image { path: path.to_path_buf(), msg };
    if bytes.is_empty() {
        return Err(bad("the file is empty".into()));
    }
    let reader = ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| bad(e.to_string()))?;
    match reader.format() {
        None => return Err(bad("not a JPEG, PNG, PNM or BMP image".into())),
        Some(image::ImageFormat::Jpeg) if !jpeg_is_complete(bytes) => {
            return Err(bad("truncated JPEG: no end-of-image marker after the last scan".into()))
        }
        _ => {}
    }
    let img = reader.decode().map_err(|e| bad(e.to_string()))?;
    if img.width() == 0 || img.height() == 0 {
        return Err(bad("the image has no pixels".into()));
    }
    Ok(img.into_rgb8())
}

/// Whether a JPEG stream ends its last scan with an end-of-image marker (`FF D9`). The
/// decoder fills a truncated file with grey without complaint; in entropy-coded data `FF` is
/// always followed by `00` or a restart marker, so an EOI after the last start-of-scan
/// (`FF DA`) cannot be a false positive.
fn jpeg_is_complete(bytes: &[u8]) -> bool {
    let last_sos = bytes.windows(2).rposition(|w| w == [0xFF, 0xDA]);
    let last_eoi = bytes.windows(2).rposition(|w| w == [0xFF, 0xD9]);
    matches!((last_sos, last_eoi), (Some(s), Some(e)) if e > s)
}

/// Reads and decodes an image file to RGB.
pub fn read_rgb(path: &Path) -> Result<RgbImage> {
    let bytes = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
    decode_rgb(&bytes, path)
}

/// Writes `img` as a PNG file, atomically (see [`facerec_core::fsutil`]), creating its folder.
pub fn write_png(path: &Path, img: &RgbImage) -> Result<()> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| DataError::io(parent, e))?;
    }
    let mut bytes = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut bytes), image::ImageFormat::Png)
        .map_err(|e| DataError::Image { path: path.to_path_buf(), msg: e.to_string() })?;
    Ok(facerec_core::fsutil::atomic_write_bytes(path, &bytes)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn corrupt_and_truncated_images_are_errors_naming_the_file() {
        let p = Path::new("faces/x.jpg");
        for bytes in [&b""[..], b"definitely not an image", b"\xff\xd8\xff\xe0\x00\x10JFIF"] {
            let err = decode_rgb(bytes, p).unwrap_err().to_string();
            assert!(err.starts_with("faces/x.jpg: cannot decode image"), "{err}");
        }
        let err = read_rgb(Path::new("/no/such/file.png")).unwrap_err().to_string();
        assert!(err.contains("/no/such/file.png") && err.contains("not found"), "{err}");
    }

    #[test]
    fn truncated_jpeg_is_detected_and_complete_one_decodes() {
        let img = RgbImage::from_fn(32, 24, |x, y| image::Rgb([(x * 7) as u8, (y * 9) as u8, 100]));
        let mut jpeg = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 90).encode_image(&img).unwrap();
        assert_eq!(decode_rgb(&jpeg, Path::new("a.jpg")).unwrap().dimensions(), (32, 24));
        let err = decode_rgb(&jpeg[..jpeg.len() - 40], Path::new("a.jpg")).unwrap_err().to_string();
        assert!(err.contains("truncated JPEG"), "{err}");
    }

    #[test]
    fn grey_pgm_becomes_rgb() {
        // A 2x1 binary PGM: pixels 10 and 200.
        let pgm = b"P5\n2 1\n255\n\x0a\xc8";
        let img = decode_rgb(pgm, Path::new("g.pgm")).unwrap();
        assert_eq!((img.width(), img.height()), (2, 1));
        assert_eq!(img.as_raw(), &[10, 10, 10, 200, 200, 200]);
    }
}
