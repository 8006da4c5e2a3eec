//! A small, bounded AMF0 reader: onMetaData of FLV files, and the check every AMF0 body a peer
//! sends passes before `rml_amf0` decodes it.
//!
//! Why not `rml_amf0` alone: it recurses without limit, so a few hundred kilobytes of nested
//! objects (an RTMP command, a script tag) overflow a thread's stack and abort the process. This
//! one limits nesting to [`MAX_DEPTH`], allocates only for values whose bytes are present, and
//! returns `None` on anything odd.

/// Far deeper than commands and metadata ever nest (onMetaData's `keyframes` object holds
/// arrays: depth 3), far shallower than any stack.
const MAX_DEPTH: usize = 32;

#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Number(f64),
    Bool(bool),
    String(String),
    /// Objects and ECMA arrays, in file order.
    Object(Vec<(String, Value)>),
    Array(Vec<Value>),
    /// Null, undefined, dates and the other values onMetaData does not need.
    Other,
}

impl Value {
    pub fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Value::Object(props) => props.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    pub fn number(&self, key: &str) -> Option<f64> {
        match self.get(key) {
            Some(Value::Number(n)) if n.is_finite() => Some(*n),
            _ => None,
        }
    }

    /// The numbers of an array property; `None` if it is missing or holds anything else.
    pub fn numbers(&self, key: &str) -> Option<Vec<f64>> {
        match self.get(key) {
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| match v {
                    Value::Number(n) if n.is_finite() => Some(*n),
                    _ => None,
                })
                .collect(),
            _ => None,
        }
    }
}

/// The object of an `onMetaData` script tag body, if that is what the body holds.
pub fn on_metadata(body: &[u8]) -> Option<Value> {
    let mut r = body;
    match value(&mut r, 0)? {
        Value::String(name) if name == "onMetaData" => {}
        _ => return None,
    }
    match value(&mut r, 0)? {
        object @ Value::Object(_) => Some(object),
        _ => None,
    }
}

/// Whether `body` is a run of AMF0 values this reader can walk: known types, nesting within
/// [`MAX_DEPTH`], every length present.
pub fn well_formed(body: &[u8]) -> bool {
    let mut r = body;
    while !r.is_empty() {
        if value(&mut r, 0).is_none() {
            return false;
        }
    }
    true
}

fn take<'a>(r: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
    if r.len() < n {
        return None;
    }
    let (head, tail) = r.split_at(n);
    *r = tail;
    Some(head)
}

fn u16_be(r: &mut &[u8]) -> Option<usize> {
    let b = take(r, 2)?;
    Some(usize::from(u16::from_be_bytes([b[0], b[1]])))
}

fn u32_be(r: &mut &[u8]) -> Option<usize> {
    let b = take(r, 4)?;
    usize::try_from(u32::from_be_bytes([b[0], b[1], b[2], b[3]])).ok()
}

fn string(r: &mut &[u8], len: usize) -> Option<String> {
    Some(String::from_utf8_lossy(take(r, len)?).into_owned())
}

fn value(r: &mut &[u8], depth: usize) -> Option<Value> {
    if depth > MAX_DEPTH {
        return None;
    }
    let marker = *take(r, 1)?.first()?;
    Some(match marker {
        0x00 => {
            let b = take(r, 8)?;
            let mut raw = [0u8; 8];
            raw.copy_from_slice(b);
            Value::Number(f64::from_be_bytes(raw))
        }
        0x01 => Value::Bool(*take(r, 1)?.first()? != 0),
        0x02 => {
            let len = u16_be(r)?;
            Value::String(string(r, len)?)
        }
        0x03 => Value::Object(properties(r, depth)?),
        0x05 | 0x06 => Value::Other,
        0x08 => {
            // ECMA array: the count is advisory, the end marker is what counts.
            take(r, 4)?;
            Value::Object(properties(r, depth)?)
        }
        0x0a => {
            let count = u32_be(r)?;
            // Each value takes at least one byte: a count beyond the bytes left is a lie.
            if count > r.len() {
                return None;
            }
            let mut items = Vec::with_capacity(count);
            for _ in 0..count {
                items.push(value(r, depth + 1)?);
            }
            Value::Array(items)
        }
        0x0b => {
            take(r, 10)?;
            Value::Other
        }
        0x0c => {
            let len = u32_be(r)?;
            Value::String(string(r, len)?)
        }
        _ => return None,
    })
}

fn properties(r: &mut &[u8], depth: usize) -> Option<Vec<(String, Value)>> {
    let mut props = Vec::new();
    loop {
        let len = u16_be(r)?;
        if len == 0 && r.first() == Some(&0x09) {
            take(r, 1)?;
            return Some(props);
        }
        let key = string(r, len)?;
        let value = value(r, depth + 1)?;
        props.push((key, value));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn number(n: f64) -> Vec<u8> {
        let mut out = vec![0x00];
        out.extend_from_slice(&n.to_be_bytes());
        out
    }

    fn key(k: &str) -> Vec<u8> {
        let mut out = (k.len() as u16).to_be_bytes().to_vec();
        out.extend_from_slice(k.as_bytes());
        out
    }

    #[test]
    fn reads_metadata_with_keyframes() {
        let mut body = vec![0x02, 0x00, 0x0a];
        body.extend_from_slice(b"onMetaData");
        body.extend_from_slice(&[0x08, 0, 0, 0, 2]);
        body.extend(key("duration"));
        body.extend(number(3.5));
        body.extend(key("keyframes"));
        body.push(0x03);
        body.extend(key("times"));
        body.extend_from_slice(&[0x0a, 0, 0, 0, 2]);
        body.extend(number(0.0));
        body.extend(number(1.0));
        body.extend_from_slice(&[0, 0, 0x09, 0, 0, 0x09]);
        let meta = on_metadata(&body).expect("metadata");
        assert_eq!(meta.number("duration"), Some(3.5));
        let keyframes = meta.get("keyframes").expect("keyframes");
        assert_eq!(keyframes.numbers("times"), Some(vec![0.0, 1.0]));
        assert_eq!(keyframes.numbers("filepositions"), None);
    }

    #[test]
    fn refuses_deep_nesting_lying_counts_and_garbage() {
        let mut deep = vec![0x02, 0x00, 0x0a];
        deep.extend_from_slice(b"onMetaData");
        for _ in 0..100_000 {
            deep.extend_from_slice(&[0x03, 0x00, 0x01, b'a']);
        }
        assert_eq!(on_metadata(&deep), None);
        assert!(!well_formed(&deep));
        assert!(well_formed(&[0x02, 0x00, 0x01, b'a', 0x05]));
        let mut lying = vec![0x02, 0x00, 0x0a];
        lying.extend_from_slice(b"onMetaData");
        lying.extend_from_slice(&[0x03, 0x00, 0x01, b'a', 0x0a, 0xff, 0xff, 0xff, 0xff, 0x00]);
        assert_eq!(on_metadata(&lying), None);
        assert_eq!(on_metadata(&[0x02, 0x00]), None);
        assert_eq!(on_metadata(&[]), None);
    }
}
