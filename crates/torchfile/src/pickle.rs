//! A pickle machine for what `torch.save` writes, and no more: it builds plain values
//! (numbers, strings, tuples, lists, dicts), records tensors and storages instead of
//! building them, and turns every other class into an opaque [`Node::Object`] that
//! remembers its class name. It never imports or runs anything.
//!
//! Opcodes follow CPython's `Lib/pickle.py` (protocols 0 to 5, the binary forms; of the text
//! forms only INT, LONG, GET and PUT); the callables modelled are those of
//! `torch/_utils.py` (`_rebuild_tensor`, `_rebuild_tensor_v2`, `_rebuild_tensor_v3`,
//! `_rebuild_parameter`) plus `collections.OrderedDict`, `torch.Size` and `set`.
//!
//! Containers live in an arena ([`Machine::heap`]) and values refer to them by index, so a
//! hostile pickle can build cycles or deep nesting without recursion or leaks, and memo
//! lookups copy no data. Every read is bounds-checked: bad input is an [`ErrorKind`].

use std::collections::HashMap;
use std::rc::Rc;

use crate::{DType, ErrorKind};

/// A pickled value. Containers, tensors and storages are indices into the [`Machine`].
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Value {
    None,
    Bool(bool),
    Int(i64),
    /// An int beyond 64 bits: its little-endian two's-complement bytes (LONG1, LONG4).
    BigInt(Rc<[u8]>),
    Float(f64),
    Str(Rc<str>),
    Bytes(Rc<[u8]>),
    /// A class or function named by GLOBAL / STACK_GLOBAL: `module.name`.
    Global(Rc<str>),
    Node(usize),
    Storage(usize),
    Tensor(usize),
}

/// A container or an opaque object in [`Machine::heap`].
#[derive(Debug)]
pub(crate) enum Node {
    Tuple(Vec<Value>),
    /// Lists, and sets (their order as pickled).
    List(Vec<Value>),
    /// Dicts and OrderedDicts, in insertion order; a key set twice appears twice.
    Dict(Vec<(Value, Value)>),
    /// An instance of a class this machine does not model. `items` collects what SETITEMS
    /// put into it (a dict subclass such as `defaultdict`); its other state is dropped.
    Object {
        class: Rc<str>,
        items: Vec<(Value, Value)>,
    },
}

/// A storage named by a persistent id: `('storage', storage_type, key, location, numel)`
/// in the zip format, with a sixth item, `view_metadata`, in the legacy one.
#[derive(Debug)]
pub(crate) struct StorageRef {
    /// The storage class without its module: `FloatStorage`, `UntypedStorage`, ...
    pub class: Rc<str>,
    /// The record name: `data/<key>` in a zip archive, or the legacy format's root key.
    pub key: Rc<str>,
    /// Legacy storage views (torch < 0.4): (offset, size) in elements of the root storage.
    pub view: Option<(u64, u64)>,
}

/// A tensor from `_rebuild_tensor*`: a strided view of a storage, in elements.
#[derive(Debug)]
pub(crate) struct TensorRef {
    pub storage: usize,
    /// The element type, or the torch name that is not one of [`DType`]'s.
    pub dtype: Result<DType, Rc<str>>,
    pub offset: u64,
    pub shape: Vec<u64>,
    pub stride: Vec<u64>,
    /// Its metadata sets the lazy negation or conjugation bit.
    pub lazy_bits: bool,
}

/// The values a file's pickles built, shared by the pickles of one file (the legacy format
/// writes several in a row); each [`Machine::load`] starts with an empty stack and memo.
pub(crate) struct Machine<'a> {
    bytes: &'a [u8],
    /// Where the pickle is, for messages: "data.pkl" or "the file".
    part: &'static str,
    pub heap: Vec<Node>,
    pub storages: Vec<StorageRef>,
    pub tensors: Vec<TensorRef>,
    pos: usize,
    op_at: usize,
    op: u8,
    stack: Vec<Value>,
    marks: Vec<usize>,
    memo: HashMap<u64, Value>,
}

impl<'a> Machine<'a> {
    pub fn new(bytes: &'a [u8], part: &'static str) -> Self {
        Self {
            bytes,
            part,
            heap: Vec::new(),
            storages: Vec::new(),
            tensors: Vec::new(),
            pos: 0,
            op_at: 0,
            op: 0,
            stack: Vec::new(),
            marks: Vec::new(),
            memo: HashMap::new(),
        }
    }

    /// Runs the pickle that starts at byte `start` up to its STOP: its value, and the
    /// byte after the STOP.
    pub fn load(&mut self, start: usize) -> Result<(Value, usize), ErrorKind> {
        self.pos = start;
        self.stack.clear();
        self.marks.clear();
        self.memo.clear();
        loop {
            self.op_at = self.pos;
            self.op = self.op_at_pos()?;
            if self.op == b'.' {
                let value = self.pop()?;
                return Ok((value, self.pos));
            }
            self.step()?;
        }
    }

    fn op_at_pos(&mut self) -> Result<u8, ErrorKind> {
        match self.bytes.get(self.pos) {
            Some(&op) => {
                self.pos += 1;
                Ok(op)
            }
            None => Err(ErrorKind::Truncated {
                what: format!(
                    "{} ends at byte {} inside a pickle, before its STOP opcode",
                    self.part,
                    self.bytes.len()
                ),
            }),
        }
    }

    fn step(&mut self) -> Result<(), ErrorKind> {
        let value = match self.op {
            0x80 => {
                let protocol = self.u8()?;
                if protocol > 5 {
                    return Err(self.bad(format!("pickle protocol {protocol}; Python writes 0 to 5")));
                }
                return Ok(());
            }
            0x95 => {
                self.take(8)?; // FRAME: a length hint
                return Ok(());
            }
            b'(' => {
                self.marks.push(self.stack.len());
                return Ok(());
            }
            b'0' => {
                if self.marks.last() == Some(&self.stack.len()) {
                    self.marks.pop();
                } else {
                    self.pop()?;
                }
                return Ok(());
            }
            b'1' => {
                self.pop_mark()?;
                return Ok(());
            }
            b'2' => self.top()?.clone(),
            b'N' => Value::None,
            0x88 => Value::Bool(true),
            0x89 => Value::Bool(false),
            b'J' => Value::Int(i64::from(i32::from_le_bytes(self.array()?))),
            b'K' => Value::Int(i64::from(self.u8()?)),
            b'M' => Value::Int(i64::from(u16::from_le_bytes(self.array()?))),
            0x8a => {
                let n = self.u8()? as usize;
                long(self.take(n)?)
            }
            0x8b => {
                let n = self.len32()?;
                long(self.take(n)?)
            }
            b'I' => match self.line()? {
                b"00" => Value::Bool(false),
                b"01" => Value::Bool(true),
                text => Value::Int(self.decimal(text)?),
            },
            b'L' => {
                let text = self.line()?;
                Value::Int(self.decimal(text.strip_suffix(b"L").unwrap_or(text))?)
            }
            b'G' => Value::Float(f64::from_be_bytes(self.array()?)),
            b'U' => {
                let n = self.u8()? as usize;
                Value::Str(python2_str(self.take(n)?))
            }
            b'T' => {
                let n = self.len32()?;
                Value::Str(python2_str(self.take(n)?))
            }
            b'X' => {
                let n = u32::from_le_bytes(self.array()?) as usize;
                Value::Str(String::from_utf8_lossy(self.take(n)?).into())
            }
            0x8c => {
                let n = self.u8()? as usize;
                Value::Str(String::from_utf8_lossy(self.take(n)?).into())
            }
            0x8d => {
                let n = self.len64()?;
                Value::Str(String::from_utf8_lossy(self.take(n)?).into())
            }
            b'C' => {
                let n = self.u8()? as usize;
                Value::Bytes(self.take(n)?.into())
            }
            b'B' => {
                let n = u32::from_le_bytes(self.array()?) as usize;
                Value::Bytes(self.take(n)?.into())
            }
            0x8e | 0x96 => {
                let n = self.len64()?;
                Value::Bytes(self.take(n)?.into())
            }
            b')' => self.alloc(Node::Tuple(Vec::new())),
            b't' => {
                let items = self.pop_mark()?;
                self.alloc(Node::Tuple(items))
            }
            0x85..=0x87 => {
                let n = usize::from(self.op - 0x84);
                let at = self.stack.len().checked_sub(n).filter(|&at| at >= self.floor());
                let at = at.ok_or_else(|| self.bad("stack underflow"))?;
                let items = self.stack.split_off(at);
                self.alloc(Node::Tuple(items))
            }
            b']' | 0x8f => self.alloc(Node::List(Vec::new())),
            b'l' | 0x91 => {
                let items = self.pop_mark()?;
                self.alloc(Node::List(items))
            }
            b'a' => {
                let item = self.pop()?;
                return self.append(vec![item]);
            }
            b'e' | 0x90 => {
                let items = self.pop_mark()?;
                return self.append(items);
            }
            b'}' => self.alloc(Node::Dict(Vec::new())),
            b'd' => {
                let items = self.pop_mark()?;
                let pairs = self.pairs(items)?;
                self.alloc(Node::Dict(pairs))
            }
            b's' => {
                let value = self.pop()?;
                let key = self.pop()?;
                return self.set_items(vec![(key, value)]);
            }
            b'u' => {
                let items = self.pop_mark()?;
                let pairs = self.pairs(items)?;
                return self.set_items(pairs);
            }
            b'q' => {
                let key = u64::from(self.u8()?);
                return self.put(key);
            }
            b'r' => {
                let key = u64::from(u32::from_le_bytes(self.array()?));
                return self.put(key);
            }
            0x94 => return self.put(self.memo.len() as u64),
            b'p' => {
                let text = self.line()?;
                let key = self.decimal(text)?;
                return self.put(key as u64);
            }
            b'h' => {
                let key = u64::from(self.u8()?);
                self.get(key)?
            }
            b'j' => {
                let key = u64::from(u32::from_le_bytes(self.array()?));
                self.get(key)?
            }
            b'g' => {
                let text = self.line()?;
                let key = self.decimal(text)?;
                self.get(key as u64)?
            }
            b'c' => {
                let module = String::from_utf8_lossy(self.line()?).into_owned();
                let name = String::from_utf8_lossy(self.line()?).into_owned();
                Value::Global(format!("{module}.{name}").into())
            }
            0x93 => {
                let name = self.pop()?;
                let module = self.pop()?;
                match (module, name) {
                    (Value::Str(module), Value::Str(name)) => Value::Global(format!("{module}.{name}").into()),
                    _ => return Err(self.bad("STACK_GLOBAL without two strings")),
                }
            }
            b'R' => {
                let args = self.pop()?;
                let callable = self.pop()?;
                self.call(&callable, &args, 0)?
            }
            0x81 => {
                let _args = self.pop()?;
                let class = self.pop()?;
                self.instance(&class)
            }
            0x92 => {
                let _kwargs = self.pop()?;
                let _args = self.pop()?;
                let class = self.pop()?;
                self.instance(&class)
            }
            b'b' => {
                // BUILD sets an object's state (an OrderedDict's _metadata, a module's
                // attributes): nothing this reader needs.
                self.pop()?;
                self.top()?;
                return Ok(());
            }
            b'Q' => {
                let id = self.pop()?;
                self.persistent_load(&id)?
            }
            code => {
                return Err(ErrorKind::UnsupportedOpcode {
                    name: opcode_name(code),
                    code,
                    offset: self.op_at,
                    part: self.part.to_owned(),
                })
            }
        };
        self.stack.push(value);
        Ok(())
    }

    // ----- reading the opcode's argument

    fn take(&mut self, n: usize) -> Result<&'a [u8], ErrorKind> {
        match self.pos.checked_add(n).filter(|&end| end <= self.bytes.len()) {
            Some(end) => {
                let out = &self.bytes[self.pos..end];
                self.pos = end;
                Ok(out)
            }
            None => Err(ErrorKind::Truncated {
                what: format!(
                    "{} ends at byte {} inside pickle opcode {} at byte {}, which needs {n} more bytes",
                    self.part,
                    self.bytes.len(),
                    opcode_name(self.op),
                    self.op_at
                ),
            }),
        }
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], ErrorKind> {
        let mut out = [0; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn u8(&mut self) -> Result<u8, ErrorKind> {
        Ok(self.take(1)?[0])
    }

    fn len32(&mut self) -> Result<usize, ErrorKind> {
        let n = i32::from_le_bytes(self.array()?);
        usize::try_from(n).map_err(|_| self.bad(format!("negative length {n}")))
    }

    fn len64(&mut self) -> Result<usize, ErrorKind> {
        // A length beyond memory runs past the end of the input just the same.
        Ok(usize::try_from(u64::from_le_bytes(self.array()?)).unwrap_or(usize::MAX))
    }

    /// A text argument, up to its newline.
    fn line(&mut self) -> Result<&'a [u8], ErrorKind> {
        let rest = self.bytes.get(self.pos..).unwrap_or_default();
        let n = rest.iter().position(|&b| b == b'\n').ok_or_else(|| ErrorKind::Truncated {
            what: format!(
                "{} ends at byte {} inside pickle opcode {} at byte {}, before its newline",
                self.part,
                self.bytes.len(),
                opcode_name(self.op),
                self.op_at
            ),
        })?;
        let line = self.take(n)?;
        self.pos += 1;
        Ok(line)
    }

    fn decimal(&self, text: &[u8]) -> Result<i64, ErrorKind> {
        let text = String::from_utf8_lossy(text);
        text.trim().parse().map_err(|_| self.bad(format!("'{text}' is not an integer that fits 64 bits")))
    }

    // ----- the stack, marks and memo

    fn bad(&self, what: impl Into<String>) -> ErrorKind {
        ErrorKind::BadPickle { offset: self.op_at, part: self.part.to_owned(), what: what.into() }
    }

    /// The lowest stack index the current opcode may pop: the innermost mark.
    fn floor(&self) -> usize {
        self.marks.last().copied().unwrap_or(0)
    }

    fn pop(&mut self) -> Result<Value, ErrorKind> {
        if self.stack.len() <= self.floor() {
            return Err(self.bad(format!("stack underflow in {}", opcode_name(self.op))));
        }
        self.stack.pop().ok_or_else(|| self.bad("stack underflow"))
    }

    fn top(&self) -> Result<&Value, ErrorKind> {
        match self.stack.last() {
            Some(value) if self.stack.len() > self.floor() => Ok(value),
            _ => Err(self.bad(format!("stack underflow in {}", opcode_name(self.op)))),
        }
    }

    fn pop_mark(&mut self) -> Result<Vec<Value>, ErrorKind> {
        let mark = self.marks.pop().ok_or_else(|| self.bad(format!("{} without a MARK", opcode_name(self.op))))?;
        Ok(self.stack.split_off(mark.min(self.stack.len())))
    }

    fn put(&mut self, key: u64) -> Result<(), ErrorKind> {
        let value = self.top()?.clone();
        self.memo.insert(key, value);
        Ok(())
    }

    fn get(&self, key: u64) -> Result<Value, ErrorKind> {
        self.memo.get(&key).cloned().ok_or_else(|| self.bad(format!("memo entry {key} was never stored")))
    }

    fn alloc(&mut self, node: Node) -> Value {
        self.heap.push(node);
        Value::Node(self.heap.len() - 1)
    }

    fn pairs(&self, items: Vec<Value>) -> Result<Vec<(Value, Value)>, ErrorKind> {
        if items.len() % 2 != 0 {
            return Err(self.bad("an odd number of items for a dict"));
        }
        let mut items = items.into_iter();
        Ok(std::iter::from_fn(|| Some((items.next()?, items.next()?))).collect())
    }

    fn append(&mut self, items: Vec<Value>) -> Result<(), ErrorKind> {
        let target = self.top()?.clone();
        match target {
            Value::Node(id) => match &mut self.heap[id] {
                Node::List(list) => list.extend(items),
                Node::Object { .. } => {} // a list subclass: its items are not needed
                _ => return Err(self.bad(format!("{} onto {}", opcode_name(self.op), self.describe(&target)))),
            },
            _ => return Err(self.bad(format!("{} onto {}", opcode_name(self.op), self.describe(&target)))),
        }
        Ok(())
    }

    fn set_items(&mut self, pairs: Vec<(Value, Value)>) -> Result<(), ErrorKind> {
        let target = self.top()?.clone();
        if let Value::Node(id) = target {
            if let Node::Dict(items) | Node::Object { items, .. } = &mut self.heap[id] {
                items.extend(pairs);
                return Ok(());
            }
        }
        Err(self.bad(format!("{} into {}", opcode_name(self.op), self.describe(&target))))
    }

    // ----- the few callables of torch.save's pickles

    /// REDUCE: `callable(*args)` for the callables modelled, an opaque object otherwise.
    fn call(&mut self, callable: &Value, args: &Value, depth: u32) -> Result<Value, ErrorKind> {
        let Value::Global(name) = callable else {
            let class = format!("(the result of calling {})", self.describe(callable));
            return Ok(self.alloc(Node::Object { class: class.into(), items: Vec::new() }));
        };
        let args = match args {
            Value::Node(id) => match &self.heap[*id] {
                Node::Tuple(items) | Node::List(items) => items.clone(),
                _ => return Err(self.bad(format!("the arguments of {name} are {}", self.describe(args)))),
            },
            _ => return Err(self.bad(format!("the arguments of {name} are {}", self.describe(args)))),
        };
        let value = match normalize(name).as_str() {
            "collections.OrderedDict" | "builtins.dict" => {
                let mut items = Vec::new();
                for pair in args.first().map(|items| self.sequence(items)).transpose()?.unwrap_or_default() {
                    match self.sequence(&pair)?.as_slice() {
                        [key, value] => items.push((key.clone(), value.clone())),
                        _ => return Err(self.bad(format!("{name} from something other than pairs"))),
                    }
                }
                self.alloc(Node::Dict(items))
            }
            "torch._utils._rebuild_tensor" | "torch._utils._rebuild_tensor_v2" => self.tensor(name, &args, None)?,
            "torch._utils._rebuild_tensor_v3" => {
                let dtype = args.get(6).ok_or_else(|| self.bad(format!("{name} without a dtype")))?;
                self.tensor(name, &args, Some(dtype))?
            }
            "torch._utils._rebuild_parameter" | "torch._utils._rebuild_parameter_with_state" => {
                args.first().cloned().ok_or_else(|| self.bad(format!("{name} without arguments")))?
            }
            // Tensor subclasses: (func, type, args, state); func rebuilds the tensor.
            "torch._tensor._rebuild_from_type" | "torch._tensor._rebuild_from_type_v2" if depth < 4 => {
                match args.as_slice() {
                    [func, _class, args, ..] => self.call(func, args, depth + 1)?,
                    _ => return Err(self.bad(format!("{name} with {} arguments", args.len()))),
                }
            }
            "torch.Size" => {
                let items = args.first().map(|items| self.sequence(items)).transpose()?.unwrap_or_default();
                self.alloc(Node::Tuple(items))
            }
            "builtins.set" | "builtins.frozenset" => {
                let items = args.first().map(|items| self.sequence(items)).transpose()?.unwrap_or_default();
                self.alloc(Node::List(items))
            }
            // Protocol 0 and 1 instances: _reconstructor(class, base, state).
            "copyreg._reconstructor" => match args.first() {
                Some(class) => self.instance(class),
                None => return Err(self.bad(format!("{name} without arguments"))),
            },
            _ => self.alloc(Node::Object { class: name.clone(), items: Vec::new() }),
        };
        Ok(value)
    }

    /// NEWOBJ: `class.__new__(class, *args)`; an opaque object unless the class is a dict.
    fn instance(&mut self, class: &Value) -> Value {
        match class {
            Value::Global(name) if matches!(normalize(name).as_str(), "collections.OrderedDict" | "builtins.dict") => {
                self.alloc(Node::Dict(Vec::new()))
            }
            Value::Global(name) => self.alloc(Node::Object { class: name.clone(), items: Vec::new() }),
            other => {
                let class = format!("(an instance of {})", self.describe(other));
                self.alloc(Node::Object { class: class.into(), items: Vec::new() })
            }
        }
    }

    /// `_rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad,
    /// backward_hooks[, metadata])`, `_rebuild_tensor` (the first four) and
    /// `_rebuild_tensor_v3` (a dtype before the metadata).
    fn tensor(&mut self, name: &str, args: &[Value], dtype: Option<&Value>) -> Result<Value, ErrorKind> {
        let [storage, offset, size, stride, ..] = args else {
            return Err(self.bad(format!("{name} with {} arguments", args.len())));
        };
        let &Value::Storage(storage) = storage else {
            return Err(self.bad(format!("{name} of {}, not a storage", self.describe(storage))));
        };
        let offset = self.count(offset, "storage offset")?;
        let shape = self.counts(size, "size")?;
        let stride = self.counts(stride, "stride")?;
        if shape.len() != stride.len() {
            return Err(self.bad(format!(
                "{name}: a size of {} dimensions but a stride of {}",
                shape.len(),
                stride.len()
            )));
        }
        let dtype = match dtype {
            Some(Value::Global(torch_name)) => {
                let short = torch_name.strip_prefix("torch.").unwrap_or(torch_name);
                DType::from_torch_name(short).ok_or_else(|| torch_name.clone())
            }
            Some(other) => return Err(self.bad(format!("{name} with {} for a dtype", self.describe(other)))),
            None => {
                let class = &self.storages[storage].class;
                DType::from_storage_class(class).ok_or_else(|| class.clone())
            }
        };
        let metadata = args.get(if name.ends_with("v3") { 7 } else { 6 });
        let lazy_bits = match metadata {
            Some(Value::Node(id)) => match &self.heap[*id] {
                Node::Dict(items) => items.iter().any(|(_, v)| *v == Value::Bool(true)),
                _ => false,
            },
            _ => false,
        };
        self.tensors.push(TensorRef { storage, dtype, offset, shape, stride, lazy_bits });
        Ok(Value::Tensor(self.tensors.len() - 1))
    }

    /// BINPERSID: torch's `persistent_load`. Storages become [`Value::Storage`]; the
    /// legacy format's `('module', class, source_file, source)` becomes the class.
    fn persistent_load(&mut self, id: &Value) -> Result<Value, ErrorKind> {
        let items = match id {
            Value::Node(node) => match &self.heap[*node] {
                Node::Tuple(items) => items.clone(),
                _ => Vec::new(),
            },
            _ => Vec::new(),
        };
        let tag = match items.first() {
            Some(Value::Str(tag)) => tag.to_string(),
            Some(Value::Bytes(tag)) => String::from_utf8_lossy(tag).into_owned(),
            _ => return Err(self.bad(format!("a persistent id that is {}, not a tagged tuple", self.describe(id)))),
        };
        match (tag.as_str(), items.as_slice()) {
            ("module", [_, class, ..]) => Ok(class.clone()),
            ("storage", [_, class, key, _location, _numel, view @ ..]) if view.len() <= 1 => {
                let class = match class {
                    Value::Global(name) if name.starts_with("torch.") => name.rsplit('.').next().unwrap_or(name).into(),
                    other => return Err(self.bad(format!("a storage whose type is {}", self.describe(other)))),
                };
                let key: Rc<str> = match key {
                    Value::Str(key) => key.clone(),
                    Value::Int(key) => key.to_string().into(),
                    other => return Err(self.bad(format!("a storage whose key is {}", self.describe(other)))),
                };
                let view = match view.first() {
                    None | Some(Value::None) => None,
                    Some(view) => match self.sequence(view)?.as_slice() {
                        [_view_key, offset, size] => {
                            Some((self.count(offset, "view offset")?, self.count(size, "view size")?))
                        }
                        _ => return Err(self.bad("a storage view that is not (key, offset, size)")),
                    },
                };
                self.storages.push(StorageRef { class, key, view });
                Ok(Value::Storage(self.storages.len() - 1))
            }
            _ => Err(self.bad(format!("a persistent id '{tag}' with {} items", items.len()))),
        }
    }

    // ----- reading values

    /// The items of a tuple or list.
    pub fn sequence(&self, value: &Value) -> Result<Vec<Value>, ErrorKind> {
        match value {
            Value::Node(id) => match &self.heap[*id] {
                Node::Tuple(items) | Node::List(items) => Ok(items.clone()),
                _ => Err(self.bad(format!("{} where a tuple belongs", self.describe(value)))),
            },
            _ => Err(self.bad(format!("{} where a tuple belongs", self.describe(value)))),
        }
    }

    fn count(&self, value: &Value, what: &str) -> Result<u64, ErrorKind> {
        match value {
            &Value::Int(n) if n >= 0 => Ok(n as u64),
            other => Err(self.bad(format!("a {what} of {}", self.describe(other)))),
        }
    }

    fn counts(&self, value: &Value, what: &str) -> Result<Vec<u64>, ErrorKind> {
        self.sequence(value)?.iter().map(|n| self.count(n, what)).collect()
    }

    /// A value's kind in words, for messages: "a tuple", "an object of class x.Y".
    pub fn describe(&self, value: &Value) -> String {
        match value {
            Value::None => "None".into(),
            Value::Bool(b) => format!("the bool {}", if *b { "True" } else { "False" }),
            Value::Int(n) => format!("the int {n}"),
            Value::BigInt(_) => "a big int".into(),
            Value::Float(x) => format!("the float {x:?}"),
            Value::Str(s) => format!("the string '{}'", s.chars().take(40).collect::<String>()),
            Value::Bytes(b) => format!("{} bytes", b.len()),
            Value::Global(name) => format!("the global {name}"),
            Value::Storage(_) => "a storage".into(),
            Value::Tensor(_) => "a tensor".into(),
            Value::Node(id) => match &self.heap[*id] {
                Node::Tuple(items) => format!("a tuple of {}", items_count(items.len())),
                Node::List(items) => format!("a list of {}", items_count(items.len())),
                Node::Dict(items) => format!("a dict of {}", items_count(items.len())),
                Node::Object { class, .. } => format!("an object of class {class}"),
            },
        }
    }
}

/// "1 item", "3 items".
fn items_count(n: usize) -> String {
    if n == 1 {
        "1 item".into()
    } else {
        format!("{n} items")
    }
}

/// An int from LONG1/LONG4's little-endian two's-complement bytes.
fn long(bytes: &[u8]) -> Value {
    if bytes.len() > 8 {
        return Value::BigInt(bytes.into());
    }
    let fill = if bytes.last().is_some_and(|&b| b & 0x80 != 0) { 0xff } else { 0 };
    let mut wide = [fill; 8];
    wide[..bytes.len()].copy_from_slice(bytes);
    Value::Int(i64::from_le_bytes(wide))
}

/// Python 2's `str` (SHORT_BINSTRING, BINSTRING): UTF-8 when it is, else Latin-1.
fn python2_str(bytes: &[u8]) -> Rc<str> {
    match std::str::from_utf8(bytes) {
        Ok(s) => s.into(),
        Err(_) => bytes.iter().map(|&b| char::from(b)).collect::<String>().into(),
    }
}

/// Python 2 module names as Python 3 knows them.
fn normalize(name: &str) -> String {
    if let Some(rest) = name.strip_prefix("__builtin__.") {
        format!("builtins.{rest}")
    } else if let Some(rest) = name.strip_prefix("copy_reg.") {
        format!("copyreg.{rest}")
    } else {
        name.to_owned()
    }
}

/// The name `pickletools` gives an opcode.
pub(crate) fn opcode_name(code: u8) -> &'static str {
    match code {
        b'(' => "MARK",
        b'.' => "STOP",
        b'0' => "POP",
        b'1' => "POP_MARK",
        b'2' => "DUP",
        b'F' => "FLOAT",
        b'I' => "INT",
        b'J' => "BININT",
        b'K' => "BININT1",
        b'L' => "LONG",
        b'M' => "BININT2",
        b'N' => "NONE",
        b'P' => "PERSID",
        b'Q' => "BINPERSID",
        b'R' => "REDUCE",
        b'S' => "STRING",
        b'T' => "BINSTRING",
        b'U' => "SHORT_BINSTRING",
        b'V' => "UNICODE",
        b'X' => "BINUNICODE",
        b'a' => "APPEND",
        b'b' => "BUILD",
        b'c' => "GLOBAL",
        b'd' => "DICT",
        b'}' => "EMPTY_DICT",
        b'e' => "APPENDS",
        b'g' => "GET",
        b'h' => "BINGET",
        b'i' => "INST",
        b'j' => "LONG_BINGET",
        b'l' => "LIST",
        b']' => "EMPTY_LIST",
        b'o' => "OBJ",
        b'p' => "PUT",
        b'q' => "BINPUT",
        b'r' => "LONG_BINPUT",
        b's' => "SETITEM",
        b't' => "TUPLE",
        b')' => "EMPTY_TUPLE",
        b'u' => "SETITEMS",
        b'G' => "BINFLOAT",
        0x80 => "PROTO",
        0x81 => "NEWOBJ",
        0x82 => "EXT1",
        0x83 => "EXT2",
        0x84 => "EXT4",
        0x85 => "TUPLE1",
        0x86 => "TUPLE2",
        0x87 => "TUPLE3",
        0x88 => "NEWTRUE",
        0x89 => "NEWFALSE",
        0x8a => "LONG1",
        0x8b => "LONG4",
        b'B' => "BINBYTES",
        b'C' => "SHORT_BINBYTES",
        0x8c => "SHORT_BINUNICODE",
        0x8d => "BINUNICODE8",
        0x8e => "BINBYTES8",
        0x8f => "EMPTY_SET",
        0x90 => "ADDITEMS",
        0x91 => "FROZENSET",
        0x92 => "NEWOBJ_EX",
        0x93 => "STACK_GLOBAL",
        0x94 => "MEMOIZE",
        0x95 => "FRAME",
        0x96 => "BYTEARRAY8",
        0x97 => "NEXT_BUFFER",
        0x98 => "READONLY_BUFFER",
        _ => "(not a pickle opcode)",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(bytes: &[u8]) -> Result<(Value, Machine<'_>), ErrorKind> {
        let mut machine = Machine::new(bytes, "the test");
        let (value, end) = machine.load(0)?;
        assert_eq!(end, bytes.len(), "STOP is the last byte");
        Ok((value, machine))
    }

    #[test]
    fn ints_of_every_width() -> Result<(), ErrorKind> {
        // pickle.dumps([-1, 255, 65535, 2**40, -2**63, True], protocol=2), then I01 by hand.
        let bytes = b"\x80\x02]q\x00(J\xff\xff\xff\xffK\xffM\xff\xff\x8a\x06\x00\x00\x00\x00\x00\x01\x8a\x08\x00\x00\x00\x00\x00\x00\x00\x80\x88I01\ne.";
        let (value, machine) = run(bytes)?;
        let want = [
            Value::Int(-1),
            Value::Int(255),
            Value::Int(65535),
            Value::Int(1 << 40),
            Value::Int(i64::MIN),
            Value::Bool(true),
            Value::Bool(true),
        ];
        assert_eq!(machine.sequence(&value)?, want);
        Ok(())
    }

    #[test]
    fn torchs_magic_number_is_a_big_int() -> Result<(), ErrorKind> {
        // pickle.dumps(0x1950a86a20f9469cfc6c, protocol=2)
        let (value, _) = run(b"\x80\x02\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19.")?;
        assert_eq!(value, Value::BigInt(b"l\xfc\x9cF\xf9 j\xa8P\x19".as_slice().into()));
        Ok(())
    }

    #[test]
    fn memo_shares_one_dict_that_is_filled_later() -> Result<(), ErrorKind> {
        // d = {}; (d, d): EMPTY_DICT BINPUT 0 BINGET 0 TUPLE2 BINPUT 1; then d[1] = 2 through
        // the memo (BINGET 0 BININT1 1 BININT1 2 SETITEM POP): both items see it.
        let bytes = b"\x80\x02}q\x00h\x00\x86q\x01h\x00K\x01K\x02s0.";
        let (value, machine) = run(bytes)?;
        let items = machine.sequence(&value)?;
        assert_eq!(items.len(), 2);
        assert_eq!(items[0], items[1], "both refer to the same arena node");
        let Value::Node(id) = items[1] else { panic!("{items:?}") };
        assert!(
            matches!(&machine.heap[id], Node::Dict(d) if d == &[(Value::Int(1), Value::Int(2))]),
            "{:?}",
            machine.heap[id]
        );
        Ok(())
    }

    #[test]
    fn an_unsupported_opcode_is_named_with_its_offset() {
        // Protocol 0's OBJ opcode after PROTO 2 and MARK.
        match run(b"\x80\x02(o.").map(|(value, _)| value) {
            Err(ErrorKind::UnsupportedOpcode { name, code, offset, .. }) => {
                assert_eq!((name, code, offset), ("OBJ", b'o', 3))
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn stack_underflow_is_an_error_not_a_panic() {
        for bytes in [
            &b"\x80\x02."[..],
            b"\x80\x02t.",
            b"\x80\x02(K\x01\x86.",
            b"\x80\x02K\x01s.",
            b"\x80\x02K\x01b.",
            b"\x80\x02h\x00.",
        ] {
            let err = run(bytes).map(|(value, _)| value).err();
            assert!(matches!(err, Some(ErrorKind::BadPickle { .. })), "{bytes:?}: {err:?}");
        }
    }

    #[test]
    fn deep_nesting_builds_no_recursion() -> Result<(), ErrorKind> {
        // 200,000 nested one-tuples: values refer to the arena by index, so dropping the
        // machine recurses nowhere.
        let mut bytes = b"\x80\x02)".to_vec();
        bytes.extend(std::iter::repeat_n(0x85, 200_000));
        bytes.push(b'.');
        let (_, machine) = run(&bytes)?;
        assert_eq!(machine.heap.len(), 200_001);
        Ok(())
    }
}
