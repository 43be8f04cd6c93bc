//! Reads PyTorch `torch.save` checkpoints into named raw tensors, in pure Rust: no
//! libtorch, no Python, nothing of the file executed.
//!
//! ```no_run
//! let checkpoint = facerec_torchfile::read("model.pt".as_ref())?;
//! for (name, tensor) in &checkpoint.tensors {
//!     eprintln!("{name}: {} {:?}", tensor.dtype, tensor.shape);
//! }
//! # Ok::<(), facerec_torchfile::Error>(())
//! ```
//!
//! # The two formats
//!
//! Both are described by `torch/serialization.py` (`_save` and `_load` for the zip format,
//! `_legacy_save` and `_legacy_load` for the other) and `torch/_utils.py`.
//!
//! **Zip** (the default since torch 1.6): a zip archive of stored entries, all under one top
//! folder named after the file: `<name>/data.pkl` (the pickled object, protocol 2 unless
//! `pickle_protocol` says otherwise), `<name>/data/<key>` (each storage's raw bytes),
//! `<name>/byteorder` (`little` or `big`; absent in old files, which are little-endian),
//! `<name>/version` and a few more. Tensors pickle as `_rebuild_tensor_v2(storage,
//! storage_offset, size, stride, requires_grad, backward_hooks)`, where `storage` is a
//! persistent id `('storage', torch.FloatStorage, key, location, numel)`. Dtypes without a
//! typed storage class (uint16, uint32, uint64) pickle as `_rebuild_tensor_v3` of a
//! `torch.UntypedStorage` with the dtype as an argument.
//!
//! **Legacy** (`_use_new_zipfile_serialization=False`, and files from torch 0.4 to 1.5): pickles
//! one after another: the magic number `0x1950a86a20f9469cfc6c`, the protocol version 1001,
//! a `sys_info` dict (byte order, type sizes), the object itself (persistent ids
//! `('storage', storage_type, root_key, location, numel, view_metadata)`), and the list of
//! storage keys; then each of those storages in that order, as an 8-byte little-endian
//! element count followed by count x element size bytes. (torch < 0.4's tar archives are
//! not supported.)
//!
//! # What comes out
//!
//! The state dict ([`Checkpoint::tensors`]), found as [`read_bytes`] explains, each tensor
//! copied out of its storage into contiguous row-major bytes, whatever its offset and
//! strides: a transposed or broadcast tensor saved as is, or several tensors sharing one
//! storage, read as `tensor.contiguous()` would. A pickled `nn.Module` or any other class
//! is never built, only named: the error says to save `model.state_dict()` instead. Bad
//! input of any kind (cut short, damaged, not a checkpoint at all) is an [`Error`] whose
//! message starts with the file's path, never a panic.

mod error;
mod pickle;
mod sniff;
mod tensor;
mod zip;

use std::collections::HashMap;
use std::fmt;
use std::path::Path;

pub use error::{Error, ErrorKind, Result};
pub use tensor::{DType, RawTensor};

use pickle::{Machine, Node, Value};

/// The top-level keys under which a state dict is looked for, in this order, when the
/// checkpoint is not a state dict itself (`{"epoch": 68, "net_state_dict": ...}`).
pub const STATE_DICT_KEYS: [&str; 8] =
    ["state_dict", "net_state_dict", "model_state_dict", "model", "net", "module", "state", "params"];

/// Which of torch.save's formats a checkpoint is in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// A zip archive (torch >= 1.6's default).
    Zip,
    /// A sequence of pickles, then raw storages (`_use_new_zipfile_serialization=False`).
    Legacy,
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Zip => "zip",
            Self::Legacy => "legacy",
        })
    }
}

/// A checkpoint's state dict, and what else its top level holds.
#[derive(Clone, Debug)]
pub struct Checkpoint {
    /// Name -> tensor, in the state dict's order, without DataParallel's `module.` prefix.
    pub tensors: Vec<(String, RawTensor)>,
    /// The top-level key the state dict was under (`net_state_dict`); `None` when the
    /// checkpoint's top level holds the tensors itself.
    pub key: Option<String>,
    pub format: Format,
    /// The top level's other entries that are numbers, strings, bools or None, as Python
    /// would print them: `("epoch", "68")`.
    pub extra: Vec<(String, String)>,
}

impl Checkpoint {
    /// The tensor of that name.
    pub fn get(&self, name: &str) -> Option<&RawTensor> {
        self.tensors.iter().find(|(n, _)| n == name).map(|(_, t)| t)
    }
}

/// Reads a checkpoint file: [`read_bytes`] of its contents.
pub fn read(path: &Path) -> Result<Checkpoint> {
    let bytes = std::fs::read(path).map_err(|e| Error { path: path.to_owned(), kind: ErrorKind::Io(e) })?;
    read_bytes(&bytes, path)
}

/// Reads a checkpoint from its bytes; `path` only names it in errors.
///
/// The state dict is the top-level object when that is a dict whose values are all tensors;
/// otherwise the first of [`STATE_DICT_KEYS`] whose value is a dict holding tensors; otherwise
/// the one top-level value that is such a dict, if there is exactly one; otherwise the top
/// level itself if some of its values are tensors. Non-tensor entries of a state dict are
/// skipped. When every name starts with `module.` (`nn.DataParallel`), that prefix goes.
pub fn read_bytes(bytes: &[u8], path: &Path) -> Result<Checkpoint> {
    parse(bytes).map_err(|kind| Error { path: path.to_owned(), kind })
}

/// Whether `bytes` start like a torch.save checkpoint: a zip archive's local header, or a
/// pickle of protocol 2 to 5. A cheap sniff: an `.npz` passes too, and [`read_bytes`]
/// then says what it is.
pub fn is_torch_file(bytes: &[u8]) -> bool {
    bytes.starts_with(b"PK\x03\x04") || matches!(bytes, [0x80, 2..=5, ..])
}

fn parse(bytes: &[u8]) -> Result<Checkpoint, ErrorKind> {
    if bytes.starts_with(b"PK\x03\x04") {
        read_zip(bytes)
    } else if is_torch_file(bytes) {
        read_legacy(bytes)
    } else {
        Err(ErrorKind::NotTorch { looks_like: sniff::describe(bytes) })
    }
}

/// Where each storage's bytes are, by key.
enum Records<'a> {
    Zip { archive: zip::Archive<'a>, prefix: String },
    Legacy(HashMap<String, &'a [u8]>),
}

impl<'a> Records<'a> {
    fn get(&self, key: &str) -> Result<&'a [u8], ErrorKind> {
        match self {
            Self::Zip { archive, prefix } => {
                let entry = format!("{prefix}/data/{key}");
                match archive.find(&entry) {
                    Some(found) => archive.data(found),
                    None => {
                        Err(ErrorKind::MissingStorage { key: key.into(), looked_for: format!("zip entry '{entry}'") })
                    }
                }
            }
            Self::Legacy(records) => records.get(key).copied().ok_or_else(|| ErrorKind::MissingStorage {
                key: key.into(),
                looked_for: "record of it after the pickle".into(),
            }),
        }
    }
}

fn read_zip(bytes: &[u8]) -> Result<Checkpoint, ErrorKind> {
    let archive = zip::Archive::parse(bytes)?;
    let pickle = archive.entries.iter().find(|e| e.name.ends_with("/data.pkl") && e.name.matches('/').count() == 1);
    let Some(pickle) = pickle else {
        let names: Vec<&str> = archive.entries.iter().take(5).map(|e| e.name.as_str()).collect();
        let npz = if archive.entries.iter().any(|e| e.name.ends_with(".npy")) { " (a NumPy .npz?)" } else { "" };
        return Err(ErrorKind::NotTorch {
            looks_like: format!("it is a zip archive without a data.pkl{npz}; its first entries: {}", names.join(", ")),
        });
    };
    let prefix = pickle.name.trim_end_matches("/data.pkl").to_owned();
    if archive.find(&format!("{prefix}/constants.pkl")).is_some()
        || archive.entries.iter().any(|e| e.name.starts_with(&format!("{prefix}/code/")))
    {
        return Err(ErrorKind::TorchScript);
    }
    if let Some(entry) = archive.find(&format!("{prefix}/byteorder")) {
        match archive.data(entry)? {
            b"little" => {}
            b"big" => return Err(ErrorKind::BigEndian),
            other => {
                return Err(ErrorKind::Malformed { what: format!("byteorder is {:?}", String::from_utf8_lossy(other)) })
            }
        }
    }
    let mut machine = Machine::new(archive.data(pickle)?, "data.pkl");
    let (top, _) = machine.load(0)?;
    finish(&machine, &top, &Records::Zip { archive, prefix }, Format::Zip)
}

/// `pickle.dumps(0x1950a86a20f9469cfc6c)`'s LONG1 bytes.
const MAGIC_NUMBER: [u8; 10] = [0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19];
const PROTOCOL_VERSION: i64 = 1001;

fn read_legacy(bytes: &[u8]) -> Result<Checkpoint, ErrorKind> {
    let mut machine = Machine::new(bytes, "the file");
    let (magic, at) = machine.load(0)?;
    if magic != Value::BigInt(MAGIC_NUMBER.as_slice().into()) {
        return Err(ErrorKind::NotTorch {
            looks_like: format!(
                "it is a Python pickle, but not one torch.save wrote: it holds {} where torch writes its magic number",
                machine.describe(&magic)
            ),
        });
    }
    let (version, at) = machine.load(at)?;
    if version != Value::Int(PROTOCOL_VERSION) {
        return Err(ErrorKind::Malformed {
            what: format!(
                "legacy protocol version {}, where torch writes {PROTOCOL_VERSION}",
                machine.describe(&version)
            ),
        });
    }
    let (sys_info, at) = machine.load(at)?;
    if lookup(&machine, &sys_info, "little_endian") == Some(&Value::Bool(false)) {
        return Err(ErrorKind::BigEndian);
    }
    let (top, at) = machine.load(at)?;
    let (keys, mut at) = machine.load(at)?;

    // The storages follow in the order of `keys`, each sized by its class's element size
    // (the class of its first use: reversed, so that the first insert is the last).
    let classes: HashMap<&str, &str> = machine.storages.iter().rev().map(|s| (&*s.key, &*s.class)).collect();
    let mut records = HashMap::new();
    for key in machine.sequence(&keys)? {
        let key = match key {
            Value::Str(key) => key.to_string(),
            Value::Int(key) => key.to_string(),
            other => {
                return Err(ErrorKind::Malformed {
                    what: format!("a storage key that is {}", machine.describe(&other)),
                })
            }
        };
        let class = classes.get(key.as_str()).ok_or_else(|| ErrorKind::Malformed {
            what: format!("storage '{key}' is listed after the pickle, but nothing in the pickle uses it"),
        })?;
        let size = tensor::storage_element_size(class)
            .ok_or_else(|| ErrorKind::UnknownDtype { of: format!("storage '{key}'"), name: (*class).to_owned() })?;
        let cut = |what: String| ErrorKind::Truncated {
            what: format!("the file ends at byte {} inside {what}", bytes.len()),
        };
        let header =
            bytes.get(at..at + 8).ok_or_else(|| cut(format!("the element count of storage '{key}' at byte {at}")))?;
        let count = u64::from_le_bytes(header.try_into().unwrap_or_default());
        let start = at + 8;
        let need = count.saturating_mul(size as u64);
        let end = usize::try_from(need).ok().and_then(|need| start.checked_add(need)).filter(|&end| end <= bytes.len());
        let end = end.ok_or_else(|| cut(format!("storage '{key}', which needs {need} bytes from byte {start}")))?;
        records.insert(key, &bytes[start..end]);
        at = end;
    }
    finish(&machine, &top, &Records::Legacy(records), Format::Legacy)
}

/// The value under a string key of a dict.
fn lookup<'m>(machine: &'m Machine, dict: &Value, key: &str) -> Option<&'m Value> {
    lookup_items(dict_items(machine, dict)?, key)
}

/// The items of a dict, or of an object that SETITEMS filled (a dict subclass).
fn dict_items<'m>(machine: &'m Machine, value: &Value) -> Option<&'m [(Value, Value)]> {
    match value {
        Value::Node(id) => match &machine.heap[*id] {
            Node::Dict(items) => Some(items),
            Node::Object { items, .. } if !items.is_empty() => Some(items),
            _ => None,
        },
        _ => None,
    }
}

fn holds_tensors(items: &[(Value, Value)]) -> bool {
    items.iter().any(|(_, v)| matches!(v, Value::Tensor(_)))
}

/// A dict key as a name: strings as they are, ints in decimal.
fn key_name(key: &Value) -> Option<String> {
    match key {
        Value::Str(s) => Some(s.to_string()),
        Value::Int(n) => Some(n.to_string()),
        _ => None,
    }
}

/// The class of an opaque object (a pickled `nn.Module`), if that is what `value` is.
fn object_class(machine: &Machine, value: &Value) -> Option<String> {
    match value {
        Value::Node(id) => match &machine.heap[*id] {
            Node::Object { class, items } if items.is_empty() => Some(class.to_string()),
            _ => None,
        },
        _ => None,
    }
}

/// A dict's items, in order.
type Items<'m> = &'m [(Value, Value)];

/// The state dict (see [`read_bytes`]) and the key it is under.
fn locate<'m>(machine: &'m Machine, top: Items<'m>) -> Result<(Option<String>, Items<'m>), ErrorKind> {
    if !top.is_empty() && top.iter().all(|(_, v)| matches!(v, Value::Tensor(_))) {
        return Ok((None, top));
    }
    let tensor_dict = |value: &Value| dict_items(machine, value).filter(|items| holds_tensors(items));
    for wanted in STATE_DICT_KEYS {
        if let Some(items) = lookup_items(top, wanted).and_then(tensor_dict) {
            return Ok((Some(wanted.to_owned()), items));
        }
    }
    let mut dicts = top.iter().filter_map(|(k, v)| Some((key_name(k)?, tensor_dict(v)?)));
    if let (Some((key, items)), None) = (dicts.next(), dicts.next()) {
        return Ok((Some(key), items));
    }
    if holds_tensors(top) {
        return Ok((None, top));
    }
    for wanted in STATE_DICT_KEYS {
        if let Some(class) = lookup_items(top, wanted).and_then(|v| object_class(machine, v)) {
            return Err(ErrorKind::PickledObject { class, at: Some(wanted.to_owned()) });
        }
    }
    let mut keys: Vec<String> = top
        .iter()
        .take(20)
        .map(|(k, v)| format!("'{}' ({})", key_name(k).unwrap_or_else(|| machine.describe(k)), machine.describe(v)))
        .collect();
    if top.len() > 20 {
        keys.push(format!("and {} more", top.len() - 20));
    }
    let found = if keys.is_empty() {
        "the checkpoint is an empty dict".to_owned()
    } else {
        format!("top-level keys {}", keys.join(", "))
    };
    Err(ErrorKind::NoStateDict { found })
}

fn lookup_items<'m>(items: &'m [(Value, Value)], key: &str) -> Option<&'m Value> {
    items.iter().find(|(k, _)| matches!(k, Value::Str(s) if &**s == key)).map(|(_, v)| v)
}

/// Python's repr of a scalar, for [`Checkpoint::extra`] (strings without quotes).
fn scalar(value: &Value) -> Option<String> {
    Some(match value {
        Value::None => "None".into(),
        Value::Bool(b) => (if *b { "True" } else { "False" }).into(),
        Value::Int(n) => n.to_string(),
        Value::Float(x) => format!("{x:?}"),
        Value::Str(s) => s.to_string(),
        _ => return None,
    })
}

fn finish(machine: &Machine, top: &Value, records: &Records, format: Format) -> Result<Checkpoint, ErrorKind> {
    let Some(top_items) = dict_items(machine, top) else {
        return Err(match (object_class(machine, top), top) {
            (Some(class), _) => ErrorKind::PickledObject { class, at: None },
            (None, Value::Tensor(_)) => {
                ErrorKind::NoStateDict { found: "the checkpoint is a single tensor (torch.save(tensor))".into() }
            }
            (None, other) => ErrorKind::NoStateDict { found: format!("the checkpoint is {}", machine.describe(other)) },
        });
    };
    let (key, items) = locate(machine, top_items)?;
    let extra = top_items
        .iter()
        .filter_map(|(k, v)| Some((key_name(k)?, scalar(v)?)))
        .filter(|(k, _)| Some(k) != key.as_ref())
        .collect();

    let mut tensors: Vec<(String, RawTensor)> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    for (name, value) in items {
        let (Some(name), &Value::Tensor(t)) = (key_name(name), value) else { continue };
        let tensor = materialize(machine, t, records, &name)?;
        match index.get(&name) {
            Some(&i) => tensors[i].1 = tensor, // a key set twice: the last value, the first place
            None => {
                index.insert(name.clone(), tensors.len());
                tensors.push((name, tensor));
            }
        }
    }
    if !tensors.is_empty() && tensors.iter().all(|(name, _)| name.starts_with("module.")) {
        for (name, _) in &mut tensors {
            name.drain(.."module.".len());
        }
    }
    Ok(Checkpoint { tensors, key, format, extra })
}

/// A tensor's bytes out of its storage.
fn materialize(machine: &Machine, t: usize, records: &Records, name: &str) -> Result<RawTensor, ErrorKind> {
    let t = &machine.tensors[t];
    let bad = |what: String| ErrorKind::BadTensor { name: name.to_owned(), what };
    if t.lazy_bits {
        return Err(bad(
            "its metadata sets the lazy negation or conjugation bit; save tensor.resolve_neg().resolve_conj()".into(),
        ));
    }
    let dtype = t
        .dtype
        .clone()
        .map_err(|dtype| ErrorKind::UnknownDtype { of: format!("tensor '{name}'"), name: dtype.to_string() })?;
    let storage = &machine.storages[t.storage];
    let mut bytes = records.get(&storage.key)?;
    if let Some((offset, size)) = storage.view {
        let element = tensor::storage_element_size(&storage.class).unwrap_or(1) as u64;
        let range = offset.checked_mul(element).zip(offset.checked_add(size).and_then(|end| end.checked_mul(element)));
        bytes = range
            .and_then(|(start, end)| bytes.get(usize::try_from(start).ok()?..usize::try_from(end).ok()?))
            .ok_or_else(|| {
                bad(format!("its storage view ({offset} + {size} elements) lies outside storage '{}'", storage.key))
            })?;
    }
    let data = tensor::gather(bytes, dtype.size(), t.offset, &t.shape, &t.stride).map_err(bad)?;
    let shape = t
        .shape
        .iter()
        .map(|&d| usize::try_from(d))
        .collect::<Result<_, _>>()
        .map_err(|_| bad("a dimension beyond usize".into()))?;
    Ok(RawTensor { dtype, shape, data })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sniffs_both_formats_and_nothing_else() {
        assert!(is_torch_file(b"PK\x03\x04rest"));
        assert!(is_torch_file(b"\x80\x02\x8a\x0a"));
        assert!(is_torch_file(b"\x80\x05"));
        assert!(!is_torch_file(b"\x80\x01"));
        assert!(!is_torch_file(b"\x80"));
        assert!(!is_torch_file(b"PK\x05\x06"));
        assert!(!is_torch_file(b""));
    }

    #[test]
    fn a_plain_pickle_is_not_a_checkpoint() {
        // pickle.dumps({'a': 1}, protocol=2)
        let err = read_bytes(b"\x80\x02}q\x00X\x01\x00\x00\x00aq\x01K\x01s.", Path::new("x.pkl")).err();
        let message = err.map(|e| e.to_string()).unwrap_or_default();
        assert!(message.starts_with("x.pkl: not a PyTorch checkpoint: it is a Python pickle"), "{message}");
        assert!(message.contains("holds a dict of 1 item where"), "{message}");
    }
}
