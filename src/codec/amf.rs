//! AMF0 helpers: decoding what peers send (bounded, see [`reader`]), keeping a publisher's
//! onMetaData as received, and building command replies.

pub mod reader;

use crate::media::Metadata;
use bytes::Bytes;
use rml_amf0::Amf0Value;
use std::collections::HashMap;

/// `@setDataFrame` as an AMF0 string: marker 0x02, length 13, the text.
const SET_DATA_FRAME: &[u8] = b"\x02\x00\x0d@setDataFrame";
const ON_METADATA: &str = "onMetaData";

/// Decodes AMF0 values sent by a peer. Bodies nested deeper than [`reader`] allows (or not
/// AMF0 at all) are refused before `rml_amf0`, which would recurse through them without limit.
pub fn deserialize(body: &[u8]) -> Result<Vec<Amf0Value>, String> {
    if !reader::well_formed(body) {
        return Err("not AMF0, or nested too deep".into());
    }
    rml_amf0::deserialize(&mut &body[..]).map_err(|e| format!("{e:?}"))
}

/// Recognises `@setDataFrame onMetaData {...}` or `onMetaData {...}` in an AMF0 data message and
/// keeps the `onMetaData {...}` part byte for byte (key order and types preserved).
pub fn metadata_from_data_message(body: &Bytes) -> Option<Metadata> {
    let rest = if body.starts_with(SET_DATA_FRAME) {
        body.slice(SET_DATA_FRAME.len()..)
    } else {
        body.clone()
    };
    let values = deserialize(&rest).ok()?;
    match values.first() {
        Some(Amf0Value::Utf8String(name)) if name == ON_METADATA => Some(Metadata { amf0: rest }),
        _ => None,
    }
}

/// Builds an onStatus info object.
pub fn status_object(level: &str, code: &str, description: &str) -> Amf0Value {
    object(&[
        ("level", string(level)),
        ("code", string(code)),
        ("description", string(description)),
    ])
}

pub fn string(s: &str) -> Amf0Value {
    Amf0Value::Utf8String(s.to_string())
}

pub fn object(props: &[(&str, Amf0Value)]) -> Amf0Value {
    Amf0Value::Object(
        props
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect::<HashMap<_, _>>(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(values: Vec<Amf0Value>) -> Bytes {
        Bytes::from(rml_amf0::serialize(&values).expect("serializable"))
    }

    #[test]
    fn deep_nesting_is_refused_before_decoding() {
        let mut deep = vec![0x02, 0x00, 0x07];
        deep.extend_from_slice(b"connect");
        for _ in 0..100_000 {
            deep.extend_from_slice(&[0x03, 0x00, 0x01, b'a']);
        }
        deep.push(0x05);
        for _ in 0..100_000 {
            deep.extend_from_slice(&[0x00, 0x00, 0x09]);
        }
        assert!(deserialize(&deep).is_err());
        assert!(metadata_from_data_message(&Bytes::from(deep)).is_none());
        let command = encode(vec![
            string("connect"),
            Amf0Value::Number(1.0),
            object(&[("app", string("live"))]),
        ]);
        assert_eq!(deserialize(&command).map(|v| v.len()), Ok(3));
    }

    #[test]
    fn strips_set_data_frame_and_keeps_the_rest() {
        let inner = encode(vec![
            string("onMetaData"),
            object(&[("width", Amf0Value::Number(640.0))]),
        ]);
        let mut with_prefix = SET_DATA_FRAME.to_vec();
        with_prefix.extend_from_slice(&inner);
        let meta = metadata_from_data_message(&Bytes::from(with_prefix)).expect("metadata");
        assert_eq!(meta.amf0, inner);
        assert_eq!(
            metadata_from_data_message(&inner).map(|m| m.amf0),
            Some(inner)
        );
    }

    #[test]
    fn ignores_other_data_and_garbage() {
        let other = encode(vec![string("onCuePoint")]);
        assert!(metadata_from_data_message(&other).is_none());
        assert!(metadata_from_data_message(&Bytes::from_static(&[0xff, 1, 2])).is_none());
    }
}
