//! The `onMetaData` a player of a media file gets: what Flash-era clients (NetStream's
//! onMetaData callback) and ffmpeg read for duration, size, frame rate, codecs and bitrates.
//!
//! Invariant: the result is an AMF0 `onMetaData` name followed by an ECMA array, the form
//! encoders and ffmpeg write, so it travels as [`Metadata`] like a live publisher's. The AMF0
//! library has no ECMA array: it is framed here, its values serialised by the library.

use super::VodInfo;
use crate::media::{Codec, Metadata};
use bytes::Bytes;
use rml_amf0::Amf0Value;

/// FLV codec ids, as onMetaData names them.
const FLV_H264: f64 = 7.0;
const FLV_AAC: f64 = 10.0;
const ECMA_ARRAY: u8 = 0x08;
const OBJECT_END: [u8; 3] = [0x00, 0x00, 0x09];

pub fn on_metadata(info: &VodInfo) -> Metadata {
    let mut props: Vec<(&str, f64)> = vec![("duration", info.duration_ms as f64 / 1000.0)];
    if info.video_codec == Some(Codec::H264) {
        props.extend([
            ("width", f64::from(info.width)),
            ("height", f64::from(info.height)),
            ("framerate", info.frame_rate),
            ("videocodecid", FLV_H264),
            ("videodatarate", f64::from(info.video_bitrate_kbps)),
        ]);
    }
    if info.audio_codec == Some(Codec::Aac) {
        props.extend([
            ("audiocodecid", FLV_AAC),
            ("audiodatarate", f64::from(info.audio_bitrate_kbps)),
            ("audiosamplerate", f64::from(info.audio_sample_rate)),
            ("audiochannels", f64::from(info.audio_channels)),
        ]);
    }
    props.push(("filesize", info.file_size as f64));
    let mut entries: Vec<(&str, Amf0Value)> = props
        .into_iter()
        .map(|(k, v)| (k, Amf0Value::Number(v)))
        .collect();
    if info.audio_codec == Some(Codec::Aac) {
        entries.push(("stereo", Amf0Value::Boolean(info.audio_channels > 1)));
    }
    let mut amf0 = Vec::with_capacity(256);
    amf0.extend_from_slice(&[0x02, 0x00, 0x0a]);
    amf0.extend_from_slice(b"onMetaData");
    amf0.push(ECMA_ARRAY);
    amf0.extend_from_slice(&(entries.len() as u32).to_be_bytes());
    for (key, value) in entries {
        amf0.extend_from_slice(&(key.len() as u16).to_be_bytes());
        amf0.extend_from_slice(key.as_bytes());
        // Numbers and booleans always serialise.
        amf0.extend(rml_amf0::serialize(&vec![value]).unwrap_or_default());
    }
    amf0.extend_from_slice(&OBJECT_END);
    Metadata {
        amf0: Bytes::from(amf0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::amf::metadata_from_data_message;

    #[test]
    fn metadata_names_what_players_read() {
        let info = VodInfo {
            duration_ms: 4_040,
            width: 320,
            height: 240,
            frame_rate: 25.0,
            video_codec: Some(Codec::H264),
            audio_codec: Some(Codec::Aac),
            video_bitrate_kbps: 300,
            audio_bitrate_kbps: 128,
            audio_sample_rate: 44_100,
            audio_channels: 2,
            file_size: 200_000,
        };
        let metadata = on_metadata(&info);
        assert!(metadata_from_data_message(&metadata.amf0).is_some());
        assert_eq!(metadata.amf0[13], ECMA_ARRAY);
        // The library reads an ECMA array as an object.
        let values = rml_amf0::deserialize(&mut &metadata.amf0[..]).expect("AMF0");
        let Amf0Value::Object(properties) = &values[1] else {
            panic!("not an object: {values:?}");
        };
        let number = |k: &str| match properties.get(k) {
            Some(Amf0Value::Number(n)) => *n,
            other => panic!("{k}: {other:?}"),
        };
        assert_eq!(number("duration"), 4.04);
        assert_eq!((number("width"), number("height")), (320.0, 240.0));
        assert_eq!(
            (number("videocodecid"), number("audiocodecid")),
            (7.0, 10.0)
        );
        assert_eq!(number("audiosamplerate"), 44_100.0);
        assert_eq!(properties.get("stereo"), Some(&Amf0Value::Boolean(true)));
    }
}
