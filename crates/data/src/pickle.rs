//! Just enough of Python's pickle format for insightface's evaluation `.bin` files: a tuple of
//! a list of byte strings (encoded images) and a list of booleans, written by Python 2
//! (`str` opcodes) or Python 3 (`bytes` opcodes), protocols 2 to 5. Anything else is a clear
//! error, never a panic.

/// The values such a file holds.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Bytes(Vec<u8>),
    Bool(bool),
    Int(i64),
    None,
    List(Vec<Value>),
    Tuple(Vec<Value>),
    Str(String),
    /// A `module.name` reference (only `_codecs.encode` is ever called).
    Global(String, String),
}

/// Reads one pickled value.
pub fn loads(data: &[u8]) -> Result<Value, String> {
    let mut stack: Vec<Value> = Vec::new();
    let mut marks: Vec<usize> = Vec::new();
    let mut memo: std::collections::HashMap<u32, Value> = std::collections::HashMap::new();
    let mut pos = 0usize;
    let take = |pos: &mut usize, n: usize| -> Result<&[u8], String> {
        let end = pos.checked_add(n).filter(|&e| e <= data.len()).ok_or("pickle ends early")?;
        let s = &data[*pos..end];
        *pos = end;
        Ok(s)
    };
    let u32le = |b: &[u8]| u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    loop {
        let op = *take(&mut pos, 1)?.first().ok_or("pickle ends early")?;
        match op {
            0x80 => {
                take(&mut pos, 1)?; // PROTO n
            }
            0x95 => {
                take(&mut pos, 8)?; // FRAME length
            }
            b'.' => return stack.pop().ok_or_else(|| "STOP on an empty stack".into()),
            b'(' => marks.push(stack.len()),
            b')' => stack.push(Value::Tuple(Vec::new())),
            b']' => stack.push(Value::List(Vec::new())),
            b'N' => stack.push(Value::None),
            0x88 => stack.push(Value::Bool(true)),
            0x89 => stack.push(Value::Bool(false)),
            b'K' => stack.push(Value::Int(i64::from(take(&mut pos, 1)?[0]))),
            b'M' => {
                let b = take(&mut pos, 2)?;
                stack.push(Value::Int(i64::from(u16::from_le_bytes([b[0], b[1]]))));
            }
            b'J' => stack.push(Value::Int(i64::from(u32le(take(&mut pos, 4)?) as i32))),
            // SHORT_BINSTRING, SHORT_BINBYTES, BINSTRING, BINBYTES, BINBYTES8
            b'U' | b'C' => {
                let n = take(&mut pos, 1)?[0] as usize;
                stack.push(Value::Bytes(take(&mut pos, n)?.to_vec()));
            }
            b'T' | b'B' => {
                let n = u32le(take(&mut pos, 4)?) as usize;
                stack.push(Value::Bytes(take(&mut pos, n)?.to_vec()));
            }
            0x8e => {
                let b = take(&mut pos, 8)?;
                let n = usize::try_from(u64::from_le_bytes(b.try_into().map_err(|_| "bad length")?)).map_err(|_| "too long")?;
                stack.push(Value::Bytes(take(&mut pos, n)?.to_vec()));
            }
            b'X' => {
                let n = u32le(take(&mut pos, 4)?) as usize;
                let s = std::str::from_utf8(take(&mut pos, n)?).map_err(|_| "BINUNICODE is not UTF-8")?;
                stack.push(Value::Str(s.to_owned()));
            }
            0x8c => {
                let n = take(&mut pos, 1)?[0] as usize;
                let s = std::str::from_utf8(take(&mut pos, n)?).map_err(|_| "SHORT_BINUNICODE is not UTF-8")?;
                stack.push(Value::Str(s.to_owned()));
            }
            b'c' => {
                let mut line = || -> Result<String, String> {
                    let rest = &data[pos..];
                    let end = rest.iter().position(|&b| b == b'\n').ok_or("GLOBAL without newline")?;
                    pos += end + 1;
                    Ok(String::from_utf8_lossy(&rest[..end]).into_owned())
                };
                let module = line()?;
                let name = line()?;
                stack.push(Value::Global(module, name));
            }
            0x93 => {
                let (Some(Value::Str(name)), Some(Value::Str(module))) = (stack.pop(), stack.pop()) else {
                    return Err("STACK_GLOBAL without two strings".into());
                };
                stack.push(Value::Global(module, name));
            }
            b'R' => {
                let args = stack.pop().ok_or("REDUCE on an empty stack")?;
                let callable = stack.pop().ok_or("REDUCE on a short stack")?;
                match (callable, args) {
                    (Value::Global(m, n), Value::Tuple(a)) if m == "_codecs" && n == "encode" => match &a[..] {
                        [Value::Str(text), Value::Str(enc)] if enc == "latin1" || enc == "latin-1" => {
                            let bytes = text.chars().map(|c| u8::try_from(u32::from(c)).map_err(|_| "non-latin1 text")).collect::<Result<Vec<u8>, _>>()?;
                            stack.push(Value::Bytes(bytes));
                        }
                        [] => stack.push(Value::Bytes(Vec::new())),
                        _ => return Err("_codecs.encode with unexpected arguments".into()),
                    },
                    (Value::Global(m, n), _) => {
                        return Err(format!("pickle calls {m}.{n}, which is not supported (only lists of bytes and booleans)"))
                    }
                    _ => return Err("REDUCE of something that is not a global".into()),
                }
            }
            b'a' => {
                let v = stack.pop().ok_or("APPEND on an empty stack")?;
                match stack.last_mut() {
                    Some(Value::List(l)) => l.push(v),
                    _ => return Err("APPEND to something that is not a list".into()),
                }
            }
            b'e' => {
                let m = marks.pop().ok_or("APPENDS without MARK")?;
                if m > stack.len() || m == 0 {
                    return Err("APPENDS with a bad MARK".into());
                }
                let items = stack.split_off(m);
                match stack.last_mut() {
                    Some(Value::List(l)) => l.extend(items),
                    _ => return Err("APPENDS to something that is not a list".into()),
                }
            }
            b't' => {
                let m = marks.pop().ok_or("TUPLE without MARK")?;
                if m > stack.len() {
                    return Err("TUPLE with a bad MARK".into());
                }
                let items = stack.split_off(m);
                stack.push(Value::Tuple(items));
            }
            0x85..=0x87 => {
                let n = (op - 0x84) as usize; // TUPLE1..3
                if stack.len() < n {
                    return Err("TUPLEn on a short stack".into());
                }
                let items = stack.split_off(stack.len() - n);
                stack.push(Value::Tuple(items));
            }
            b'q' => {
                let k = u32::from(take(&mut pos, 1)?[0]);
                memo.insert(k, stack.last().cloned().ok_or("PUT on an empty stack")?);
            }
            b'r' => {
                let k = u32le(take(&mut pos, 4)?);
                memo.insert(k, stack.last().cloned().ok_or("PUT on an empty stack")?);
            }
            0x94 => {
                let k = memo.len() as u32;
                memo.insert(k, stack.last().cloned().ok_or("MEMOIZE on an empty stack")?);
            }
            b'h' => {
                let k = u32::from(take(&mut pos, 1)?[0]);
                stack.push(memo.get(&k).cloned().ok_or("GET of an unknown memo key")?);
            }
            b'j' => {
                let k = u32le(take(&mut pos, 4)?);
                stack.push(memo.get(&k).cloned().ok_or("GET of an unknown memo key")?);
            }
            other => {
                return Err(format!(
                    "pickle opcode 0x{other:02x} at byte {} is not supported (only lists of bytes and booleans)",
                    pos - 1
                ))
            }
        }
    }
}

/// Pickles a tuple `(list of bytes, list of bools)` with protocol 4 opcodes (Python 3 reads it
/// with `pickle.load(f, encoding="bytes")`, as insightface does).
pub fn dumps_bins_issame(bins: &[Vec<u8>], issame: &[bool]) -> Vec<u8> {
    let mut out = vec![0x80, 4];
    out.push(b']');
    for chunk in bins.chunks(1000) {
        out.push(b'(');
        for b in chunk {
            if b.len() < 256 {
                out.push(b'C');
                out.push(b.len() as u8);
            } else {
                out.push(b'B');
                out.extend_from_slice(&(b.len() as u32).to_le_bytes());
            }
            out.extend_from_slice(b);
        }
        out.push(b'e');
    }
    out.push(b']');
    for chunk in issame.chunks(1000) {
        out.push(b'(');
        out.extend(chunk.iter().map(|&s| if s { 0x88 } else { 0x89 }));
        out.push(b'e');
    }
    out.push(0x86); // TUPLE2
    out.push(b'.');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_python2_opcodes() {
        let bins = vec![b"abc".to_vec(), vec![7u8; 300]];
        let v = loads(&dumps_bins_issame(&bins, &[true, false])).unwrap();
        assert_eq!(
            v,
            Value::Tuple(vec![
                Value::List(bins.iter().cloned().map(Value::Bytes).collect()),
                Value::List(vec![Value::Bool(true), Value::Bool(false)]),
            ])
        );
        // Python 2, protocol 2: (['ab'], [True]) with memo puts
        let py2 = b"\x80\x02]q\x00U\x02abq\x01a]q\x02\x88a\x86q\x03.";
        let v = loads(py2).unwrap();
        assert_eq!(v, Value::Tuple(vec![Value::List(vec![Value::Bytes(b"ab".to_vec())]), Value::List(vec![Value::Bool(true)])]));
        assert!(loads(b"\x80\x02]").unwrap_err().contains("ends early"));
        assert!(loads(b"\x80\x02cnumpy\ncore\n)R.").unwrap_err().contains("not supported"));
    }
}
