//! What a file that is not a torch.save checkpoint looks like, from its first bytes, so that
//! the error can say "a safetensors file" rather than "bad magic".

/// A few words on what `bytes` hold: "the file is empty", "a safetensors file", "a text file
/// starting with ...", or the first bytes in hex.
pub(crate) fn describe(bytes: &[u8]) -> String {
    if bytes.is_empty() {
        return "the file is empty".into();
    }
    if let Some(header) = safetensors_header(bytes) {
        return format!("it is a safetensors file ({header} bytes of JSON header); read it with safetensors");
    }
    if bytes.starts_with(b"version https://git-lfs") {
        return "it is a Git LFS pointer, not the file itself (run `git lfs pull`)".into();
    }
    if bytes.starts_with(b"\x93NUMPY") {
        return "it is a NumPy .npy array".into();
    }
    if bytes.starts_with(b"\x89HDF\r\n\x1a\n") {
        return "it is an HDF5 file (Keras .h5?)".into();
    }
    if bytes.starts_with(b"\x1f\x8b") {
        return "it is gzip-compressed; decompress it first".into();
    }
    if bytes.starts_with(b"PK\x05\x06") {
        return "it is an empty zip archive".into();
    }
    if bytes.get(257..262) == Some(b"ustar") {
        return "it is a tar archive (PyTorch before 0.4 wrote checkpoints as tar archives, which this reader does not support)".into();
    }
    if bytes.first() == Some(&0x80) {
        return format!(
            "it looks like a pickle of protocol {}, which torch.save does not write",
            bytes.get(1).copied().unwrap_or(0)
        );
    }
    let head = &bytes[..bytes.len().min(64)];
    let text = match std::str::from_utf8(head) {
        Ok(text) => Some(text),
        // A multi-byte character cut by the 64-byte window.
        Err(e) if e.valid_up_to() + 4 > head.len() => std::str::from_utf8(&head[..e.valid_up_to()]).ok(),
        Err(_) => None,
    };
    match text {
        Some(text) if text.chars().all(|c| !c.is_control() || c.is_whitespace()) => {
            format!("it is a text file, starting {:?}", text.chars().take(40).collect::<String>())
        }
        _ => {
            let hex: Vec<String> = bytes.iter().take(8).map(|b| format!("{b:02x}")).collect();
            format!("it starts with the bytes {}", hex.join(" "))
        }
    }
}

/// The header length of a safetensors file: 8 bytes of little-endian length, then a JSON
/// object that fits in the file.
fn safetensors_header(bytes: &[u8]) -> Option<u64> {
    let len = u64::from_le_bytes(bytes.get(..8)?.try_into().ok()?);
    (bytes.get(8) == Some(&b'{') && len <= bytes.len() as u64 - 8).then_some(len)
}

#[cfg(test)]
mod tests {
    use super::describe;

    #[test]
    fn names_the_usual_suspects() {
        let mut safetensors = 2u64.to_le_bytes().to_vec();
        safetensors.extend(b"{}");
        assert!(describe(&safetensors).contains("safetensors"));
        assert_eq!(describe(b""), "the file is empty");
        assert!(describe(b"epoch,loss\n1,0.5\n").contains("text file, starting \"epoch,loss\\n1,0.5\\n\""));
        assert!(describe(b"version https://git-lfs.github.com/spec/v1\n").contains("git lfs pull"));
        assert!(describe(b"\x93NUMPY\x01\x00").contains(".npy"));
        assert!(describe(b"\x80\x01K\x01.").contains("protocol 1"));
        assert_eq!(
            describe(b"\x00\x01\x02\xff\xfe\x05\x06\x07\x08"),
            "it starts with the bytes 00 01 02 ff fe 05 06 07"
        );
    }
}
