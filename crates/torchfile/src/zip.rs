//! Just enough of the zip format for torch.save's archives: the central directory (zip64
//! too) and stored (uncompressed) entries, which is all that PyTorch's writer produces
//! (`caffe2/serialize/inline_container.cc`, over miniz, pads entries to 64-byte alignment
//! in the local header's extra field and never compresses). Every offset and length is
//! checked against the buffer: a damaged or cut archive is an [`ErrorKind`], never a panic.
//! Layout reference: PKWARE's APPNOTE.TXT, sections 4.3.7 to 4.3.16.

use std::collections::HashMap;

use crate::ErrorKind;

const LOCAL_HEADER: u32 = 0x0403_4b50;
const CENTRAL_HEADER: u32 = 0x0201_4b50;
const END_OF_CENTRAL_DIRECTORY: u32 = 0x0605_4b50;
const ZIP64_LOCATOR: u32 = 0x0706_4b50;
const ZIP64_END: u32 = 0x0606_4b50;

/// One entry of the central directory.
#[derive(Debug)]
pub(crate) struct Entry {
    pub name: String,
    method: u16,
    flags: u16,
    size: u64,
    local_header: u64,
}

/// A zip archive over a byte buffer: the central directory's entries, in order.
pub(crate) struct Archive<'a> {
    bytes: &'a [u8],
    pub entries: Vec<Entry>,
    by_name: HashMap<String, usize>,
}

fn bad(what: impl Into<String>) -> ErrorKind {
    ErrorKind::BadZip { what: what.into() }
}

/// Little-endian reads at checked offsets.
struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn at(bytes: &'a [u8], pos: u64, what: &str) -> Result<Self, ErrorKind> {
        match usize::try_from(pos) {
            Ok(pos) if pos <= bytes.len() => Ok(Self { bytes, pos }),
            _ => Err(bad(format!("{what} at byte {pos} lies past the end of the file ({} bytes)", bytes.len()))),
        }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], ErrorKind> {
        let end = self.pos.checked_add(n).filter(|&end| end <= self.bytes.len());
        let end = end.ok_or_else(|| bad(format!("a record at byte {} runs past the end of the file", self.pos)))?;
        let out = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    fn u16(&mut self) -> Result<u16, ErrorKind> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Result<u32, ErrorKind> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self) -> Result<u64, ErrorKind> {
        let b = self.take(8)?;
        let mut a = [0; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }
}

impl<'a> Archive<'a> {
    /// Reads the central directory. A missing end record (the zip's last bytes) most often
    /// means a file cut short, and says so.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, ErrorKind> {
        let end = find_end(bytes).ok_or_else(|| ErrorKind::Truncated {
            what: format!(
                "the zip archive has no end-of-central-directory record (its last bytes); the file ends at byte {}",
                bytes.len()
            ),
        })?;
        let mut c = Cursor::at(bytes, end as u64 + 4, "the end record")?;
        let _disk = c.u16()?;
        let _directory_disk = c.u16()?;
        let _entries_here = c.u16()?;
        let mut count = u64::from(c.u16()?);
        let mut directory_size = u64::from(c.u32()?);
        let mut directory = u64::from(c.u32()?);
        if count == 0xffff || directory_size == 0xffff_ffff || directory == 0xffff_ffff {
            (count, directory_size, directory) = zip64_end(bytes, end)?;
        }
        let directory_end = directory.checked_add(directory_size).filter(|&e| e <= bytes.len() as u64);
        if directory_end.is_none() {
            return Err(bad(format!(
                "the central directory (bytes {directory} + {directory_size}) lies past the end of the file ({} bytes)",
                bytes.len()
            )));
        }
        let mut c = Cursor::at(bytes, directory, "the central directory")?;
        // Each entry takes at least 46 bytes: a count beyond that is a lie, not an allocation.
        let mut entries = Vec::with_capacity(count.min(directory_size / 46) as usize);
        for _ in 0..count {
            entries.push(central_entry(&mut c)?);
        }
        let by_name = entries.iter().enumerate().map(|(i, e)| (e.name.clone(), i)).collect();
        Ok(Self { bytes, entries, by_name })
    }

    pub fn find(&self, name: &str) -> Option<&Entry> {
        self.by_name.get(name).map(|&i| &self.entries[i])
    }

    /// The bytes of a stored entry, found through its local header.
    pub fn data(&self, entry: &Entry) -> Result<&'a [u8], ErrorKind> {
        if entry.flags & 1 != 0 {
            return Err(bad(format!("entry '{}' is encrypted", entry.name)));
        }
        if entry.method != 0 {
            return Err(ErrorKind::Compressed { entry: entry.name.clone(), method: entry.method });
        }
        let mut c = Cursor::at(self.bytes, entry.local_header, "a local header")?;
        if c.u32()? != LOCAL_HEADER {
            return Err(bad(format!("entry '{}' has no local header at byte {}", entry.name, entry.local_header)));
        }
        c.take(22)?;
        let name_len = c.u16()? as usize;
        let extra_len = c.u16()? as usize;
        c.take(name_len + extra_len)?;
        let start = c.pos;
        let size = usize::try_from(entry.size).unwrap_or(usize::MAX);
        match start.checked_add(size).filter(|&end| end <= self.bytes.len()) {
            Some(end) => Ok(&self.bytes[start..end]),
            None => Err(ErrorKind::Truncated {
                what: format!(
                    "the file ends at byte {} inside zip entry '{}', which needs {} bytes from byte {start}",
                    self.bytes.len(),
                    entry.name,
                    entry.size
                ),
            }),
        }
    }
}

/// The end-of-central-directory record: the last signature whose comment length reaches
/// exactly to the end of the file.
fn find_end(bytes: &[u8]) -> Option<usize> {
    let last = bytes.len().checked_sub(22)?;
    let first = last.saturating_sub(0xffff);
    (first..=last).rev().find(|&pos| {
        let sig = u32::from_le_bytes([bytes[pos], bytes[pos + 1], bytes[pos + 2], bytes[pos + 3]]);
        let comment = u16::from_le_bytes([bytes[pos + 20], bytes[pos + 21]]) as usize;
        sig == END_OF_CENTRAL_DIRECTORY && pos + 22 + comment == bytes.len()
    })
}

/// Entry count, directory size and directory offset from the zip64 end record, whose
/// locator sits just before the ordinary end record.
fn zip64_end(bytes: &[u8], end: usize) -> Result<(u64, u64, u64), ErrorKind> {
    let locator = end.checked_sub(20).ok_or_else(|| bad("zip64 sizes without a zip64 locator"))?;
    let mut c = Cursor::at(bytes, locator as u64, "the zip64 locator")?;
    if c.u32()? != ZIP64_LOCATOR {
        return Err(bad("zip64 sizes without a zip64 locator"));
    }
    c.u32()?;
    let record = c.u64()?;
    let mut c = Cursor::at(bytes, record, "the zip64 end record")?;
    if c.u32()? != ZIP64_END {
        return Err(bad(format!("no zip64 end record at byte {record}")));
    }
    c.take(28)?;
    let count = c.u64()?;
    let size = c.u64()?;
    let offset = c.u64()?;
    Ok((count, size, offset))
}

fn central_entry(c: &mut Cursor) -> Result<Entry, ErrorKind> {
    let at = c.pos;
    if c.u32()? != CENTRAL_HEADER {
        return Err(bad(format!("no central directory entry at byte {at}")));
    }
    c.take(4)?;
    let flags = c.u16()?;
    let method = c.u16()?;
    c.take(8)?;
    let compressed = c.u32()?;
    let uncompressed = c.u32()?;
    let name_len = c.u16()? as usize;
    let extra_len = c.u16()? as usize;
    let comment_len = c.u16()? as usize;
    c.take(8)?;
    let local = c.u32()?;
    let name = String::from_utf8_lossy(c.take(name_len)?).into_owned();
    let extra = c.take(extra_len)?;
    c.take(comment_len)?;
    // The zip64 extra field holds, in this order, only the values saturated in the header.
    let (mut compressed, mut uncompressed, mut local) =
        (u64::from(compressed), u64::from(uncompressed), u64::from(local));
    if let Some(mut z) = zip64_extra(extra) {
        for value in [&mut uncompressed, &mut compressed, &mut local] {
            if *value == 0xffff_ffff {
                *value = z.u64().map_err(|_| bad(format!("entry '{name}' has a short zip64 extra field")))?;
            }
        }
    }
    if method == 0 && compressed != uncompressed {
        return Err(bad(format!("stored entry '{name}' has {compressed} bytes but claims {uncompressed}")));
    }
    Ok(Entry { name, method, flags, size: compressed, local_header: local })
}

/// The zip64 field (id 1) among an entry's extra fields.
fn zip64_extra(mut extra: &[u8]) -> Option<Cursor<'_>> {
    while extra.len() >= 4 {
        let id = u16::from_le_bytes([extra[0], extra[1]]);
        let len = u16::from_le_bytes([extra[2], extra[3]]) as usize;
        let body = extra.get(4..4 + len)?;
        if id == 1 {
            return Some(Cursor { bytes: body, pos: 0 });
        }
        extra = &extra[4 + len..];
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stored-entry archive written by hand, as miniz lays it out.
    fn archive(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut directory = Vec::new();
        for (name, data) in entries {
            let offset = out.len() as u32;
            let size = data.len() as u32;
            out.extend(LOCAL_HEADER.to_le_bytes());
            out.extend([0; 14]);
            out.extend(size.to_le_bytes());
            out.extend(size.to_le_bytes());
            out.extend((name.len() as u16).to_le_bytes());
            out.extend(3u16.to_le_bytes());
            out.extend(name.as_bytes());
            out.extend(b"pad");
            out.extend(*data);
            directory.extend(CENTRAL_HEADER.to_le_bytes());
            directory.extend([0; 12]);
            directory.extend([0; 4]);
            directory.extend(size.to_le_bytes());
            directory.extend(size.to_le_bytes());
            directory.extend((name.len() as u16).to_le_bytes());
            directory.extend([0; 12]);
            directory.extend(offset.to_le_bytes());
            directory.extend(name.as_bytes());
        }
        let start = out.len() as u32;
        out.extend(&directory);
        out.extend(END_OF_CENTRAL_DIRECTORY.to_le_bytes());
        out.extend([0; 4]);
        out.extend((entries.len() as u16).to_le_bytes());
        out.extend((entries.len() as u16).to_le_bytes());
        out.extend((directory.len() as u32).to_le_bytes());
        out.extend(start.to_le_bytes());
        out.extend([0; 2]);
        out
    }

    #[test]
    fn reads_stored_entries_past_their_padding() -> Result<(), ErrorKind> {
        let bytes = archive(&[("a/data.pkl", b"\x80\x02N."), ("a/data/0", b"0123")]);
        let zip = Archive::parse(&bytes)?;
        assert_eq!(zip.entries.len(), 2);
        assert_eq!(zip.data(zip.find("a/data/0").ok_or(bad("missing"))?)?, b"0123");
        assert_eq!(zip.data(&zip.entries[0])?, b"\x80\x02N.");
        assert!(zip.find("a/data/1").is_none());
        Ok(())
    }

    #[test]
    fn a_cut_archive_says_it_is_cut() {
        let bytes = archive(&[("a/data.pkl", b"\x80\x02N.")]);
        for len in 0..bytes.len() {
            match Archive::parse(&bytes[..len]).map(|zip| zip.entries) {
                Err(ErrorKind::Truncated { what }) => assert!(what.contains(&format!("ends at byte {len}")), "{what}"),
                other => panic!("{len}: {other:?}"),
            }
        }
    }

    #[test]
    fn a_compressed_entry_is_named() -> Result<(), ErrorKind> {
        let mut bytes = archive(&[("a/data.pkl", b"xy")]);
        // Method 8 (deflate) in the central directory, which starts after the local entry's
        // 30 + 10 (name) + 3 (extra) + 2 (data) bytes; the method is its bytes 10..12.
        bytes[45 + 10] = 8;
        let zip = Archive::parse(&bytes)?;
        let err = zip.data(&zip.entries[0]);
        assert!(matches!(err, Err(ErrorKind::Compressed { method: 8, .. })), "{err:?}");
        Ok(())
    }
}
