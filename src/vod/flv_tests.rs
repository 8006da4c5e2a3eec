//! FLV cases ffmpeg does not write: timestamps past 24 bits that do not start at 0, 2-byte NAL
//! lengths, codecs this reader skips, script tags between frames, a missing last PreviousTagSize.

use super::flv::FlvReader;
use super::VodError;
use crate::media::{Codec, Frame};
use std::io::Cursor;

/// avcC of a 640x360 baseline stream (from ffmpeg), with 2-byte NAL lengths (0xfd).
const AVCC_2BYTE: &[u8] = &[
    0x01, 0x42, 0xc0, 0x1e, 0xfd, 0xe1, 0x00, 0x19, 0x67, 0x42, 0xc0, 0x1e, 0xd9, 0x00, 0xa0, 0x2f,
    0xf9, 0x70, 0x11, 0x00, 0x00, 0x03, 0x00, 0x01, 0x00, 0x00, 0x03, 0x00, 0x3c, 0x0f, 0x16, 0x2e,
    0x48, 0x01, 0x00, 0x04, 0x68, 0xcb, 0x83, 0xcb, 0x20,
];
/// First timestamp: needs the extended timestamp byte.
const BASE: u32 = (1 << 24) + 5000;

fn tag(kind: u8, ms: u32, body: &[u8]) -> Vec<u8> {
    let mut out = vec![kind];
    out.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    out.extend_from_slice(&ms.to_be_bytes()[1..]);
    out.push((ms >> 24) as u8);
    out.extend_from_slice(&[0, 0, 0]);
    out.extend_from_slice(body);
    out.extend_from_slice(&((11 + body.len()) as u32).to_be_bytes());
    out
}

fn with(prefix: &[u8], rest: &[u8]) -> Vec<u8> {
    [prefix, rest].concat()
}

fn build() -> Vec<u8> {
    let mut file = b"FLV\x01\x05\x00\x00\x00\x09\x00\x00\x00\x00".to_vec();
    for t in [
        tag(9, BASE, &with(&[0x17, 0, 0, 0, 0], AVCC_2BYTE)),
        tag(8, BASE, &[0xaf, 0, 0x12, 0x10]),
        tag(9, BASE, &[0x17, 1, 0, 0, 80, 0, 3, 0x65, 1, 2]),
        tag(8, BASE + 10, &[0xaf, 1, 7, 7]),
        // VP6 video and MP3 audio: skipped.
        tag(9, BASE + 20, &[0x14, 0, 0]),
        tag(8, BASE + 30, &[0x2f, 1, 2, 3]),
        tag(18, BASE + 40, &[0x02, 0, 3, b'c', b'u', b'e']),
        tag(9, BASE + 40, &[0x27, 1, 0, 0, 0, 0, 1, 0x41]),
        tag(9, BASE + 1040, &[0x17, 1, 0, 0, 0, 0, 1, 0x65]),
    ] {
        file.extend(t);
    }
    file
}

fn open(data: Vec<u8>) -> Result<FlvReader<Cursor<Vec<u8>>>, VodError> {
    let len = data.len() as u64;
    FlvReader::new(Cursor::new(data), len)
}

fn frames(reader: &mut FlvReader<Cursor<Vec<u8>>>) -> Vec<Frame> {
    let mut out = Vec::new();
    while let Some(frame) = reader.next_frame().expect("frame") {
        out.push(frame);
    }
    out
}

#[test]
fn plays_rebased_converted_and_filtered() {
    let mut reader = open(build()).expect("valid file");
    assert!(!reader.index_from_metadata);
    let info = reader.info().clone();
    assert_eq!((info.width, info.height), (640, 360));
    assert_eq!(info.video_codec, Some(Codec::H264));
    assert_eq!(info.audio_codec, Some(Codec::Aac));
    assert!(info.duration_ms >= 1040, "{info:?}");
    let configs = reader.configs();
    assert_eq!(configs[0].data[4], 0xff, "avcC now says 4-byte lengths");

    let got: Vec<(Codec, i64, i32, bool, Vec<u8>)> = frames(&mut reader)
        .into_iter()
        .map(|f| (f.codec, f.dts_us, f.cts_us, f.keyframe, f.payload.to_vec()))
        .collect();
    let expected = vec![
        (Codec::H264, 0, 80_000, true, vec![0, 0, 0, 3, 0x65, 1, 2]),
        (Codec::Aac, 10_000, 0, true, vec![7, 7]),
        (Codec::H264, 40_000, 0, false, vec![0, 0, 0, 1, 0x41]),
        (Codec::H264, 1_040_000, 0, true, vec![0, 0, 0, 1, 0x65]),
    ];
    assert_eq!(got, expected);

    assert_eq!(reader.seek(1100).expect("seek"), 1040);
    assert_eq!(frames(&mut reader).len(), 1);
    assert_eq!(reader.seek(1039).expect("seek"), 0);
    assert_eq!(frames(&mut reader).len(), 4);
}

#[test]
fn cut_and_broken_files_are_errors() {
    let good = build();
    let cut = good[..good.len() - 2].to_vec();
    assert!(matches!(open(cut), Err(VodError::Truncated(_))));
    let mut bad_type = good.clone();
    bad_type[13] = 0x07;
    assert!(matches!(open(bad_type), Err(VodError::Corrupt(_))));
    let mut encrypted = good.clone();
    encrypted[13] |= 0x20;
    assert!(matches!(open(encrypted), Err(VodError::Unsupported(_))));
    let mut header = good;
    header[8] = 200;
    assert!(open(header).is_err());
    let no_codecs = [
        b"FLV\x01\x05\x00\x00\x00\x09\x00\x00\x00\x00".to_vec(),
        tag(9, 0, &[0x14, 0, 0]),
    ]
    .concat();
    assert!(matches!(open(no_codecs), Err(VodError::Unsupported(_))));
}
