//! MP4 sample-table cases ffmpeg does not write by default, on a file built box by box: `co64`,
//! a fixed `stsz`, several `stsc` runs, `ctts` version 1 with a negative offset, an initial
//! empty edit, 2-byte NAL lengths; and tables that lie about their counts.

use super::mp4::Mp4Reader;
use super::to_avcc4;
use super::VodError;
use crate::media::{Codec, Frame};
use std::io::Cursor;

/// avcC of a 640x360 baseline stream (from ffmpeg), with 2-byte NAL lengths (0xfd).
const AVCC_2BYTE: &[u8] = &[
    0x01, 0x42, 0xc0, 0x1e, 0xfd, 0xe1, 0x00, 0x19, 0x67, 0x42, 0xc0, 0x1e, 0xd9, 0x00, 0xa0, 0x2f,
    0xf9, 0x70, 0x11, 0x00, 0x00, 0x03, 0x00, 0x01, 0x00, 0x00, 0x03, 0x00, 0x3c, 0x0f, 0x16, 0x2e,
    0x48, 0x01, 0x00, 0x04, 0x68, 0xcb, 0x83, 0xcb, 0x20,
];

/// Video samples with 2-byte NAL lengths.
const VIDEO: [&[u8]; 3] = [
    &[0, 3, 0x65, 1, 2],
    &[0, 2, 0x41, 9, 0, 1, 0x06],
    &[0, 1, 0x41],
];
const AUDIO_SAMPLE: usize = 10;
const MEDIA_START: u32 = 28; // ftyp (20) + mdat header (8)

fn bx(kind: &[u8; 4], parts: &[&[u8]]) -> Vec<u8> {
    let len: usize = 8 + parts.iter().map(|p| p.len()).sum::<usize>();
    let mut out = (len as u32).to_be_bytes().to_vec();
    out.extend_from_slice(kind);
    for part in parts {
        out.extend_from_slice(part);
    }
    out
}

fn full(kind: &[u8; 4], version: u8, parts: &[&[u8]]) -> Vec<u8> {
    let header = [version, 0, 0, 0];
    let mut all: Vec<&[u8]> = vec![&header[..]];
    all.extend_from_slice(parts);
    bx(kind, &all)
}

fn be(values: &[u32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_be_bytes()).collect()
}

/// Knobs that make the tables lie.
struct Knobs {
    audio_count: u32,
    video_stts_count: u32,
    audio_fixed_size: u32,
}

const HONEST: Knobs = Knobs {
    audio_count: 5,
    video_stts_count: 3,
    audio_fixed_size: AUDIO_SAMPLE as u32,
};

fn track(handler: &[u8; 4], timescale: u32, edts: Option<Vec<u8>>, stbl: &[Vec<u8>]) -> Vec<u8> {
    let mdhd = full(b"mdhd", 0, &[&be(&[0, 0, timescale, 0]), &[0; 4]]);
    let hdlr = full(b"hdlr", 0, &[&[0; 4], handler, &[0; 13]]);
    let stbl_parts: Vec<&[u8]> = stbl.iter().map(|b| &b[..]).collect();
    let minf = bx(b"minf", &[&bx(b"stbl", &stbl_parts)]);
    let mdia = bx(b"mdia", &[&mdhd, &hdlr, &minf]);
    match edts {
        Some(edts) => bx(b"trak", &[&edts, &mdia]),
        None => bx(b"trak", &[&mdia]),
    }
}

/// ftyp, mdat, moov. mdat: video chunk (v0 v1), audio chunk (a0 a1), audio chunk (a2 a3),
/// video chunk (v2), audio chunk (a4).
fn build(knobs: &Knobs) -> Vec<u8> {
    let audio = |i: usize| vec![i as u8; AUDIO_SAMPLE];
    let mut media = Vec::new();
    media.extend_from_slice(VIDEO[0]);
    media.extend_from_slice(VIDEO[1]);
    let audio_chunk1 = MEDIA_START + media.len() as u32;
    media.extend(audio(0));
    media.extend(audio(1));
    let audio_chunk2 = MEDIA_START + media.len() as u32;
    media.extend(audio(2));
    media.extend(audio(3));
    let video_chunk2 = MEDIA_START + media.len() as u32;
    media.extend_from_slice(VIDEO[2]);
    let audio_chunk3 = MEDIA_START + media.len() as u32;
    media.extend(audio(4));

    let mut avc1 = vec![0u8; 78];
    avc1[7] = 1;
    avc1[24..28].copy_from_slice(&[2, 128, 1, 104]); // 640x360
    let avc1 = bx(b"avc1", &[&avc1, &bx(b"avcC", &[AVCC_2BYTE])]);
    let video = track(
        b"vide",
        12800,
        // Empty edit of 500 ms (movie timescale 1000), then the media from its start.
        Some(bx(
            b"edts",
            &[&full(
                b"elst",
                0,
                &[&be(&[2, 500, u32::MAX, 1 << 16, 600, 0, 1 << 16])],
            )],
        )),
        &[
            full(b"stsd", 0, &[&be(&[1]), &avc1]),
            full(b"stts", 0, &[&be(&[1, knobs.video_stts_count, 512])]),
            full(b"ctts", 1, &[&be(&[3, 1, 1024, 1, -512i32 as u32, 1, 0])]),
            full(b"stss", 0, &[&be(&[2, 1, 3])]),
            full(b"stsc", 0, &[&be(&[2, 1, 2, 1, 2, 1, 1])]),
            full(b"stsz", 0, &[&be(&[0, 3, 5, 7, 3])]),
            full(b"stco", 0, &[&be(&[2, MEDIA_START, video_chunk2])]),
        ],
    );

    let mut mp4a = vec![0u8; 28];
    mp4a[7] = 1;
    mp4a[17] = 2; // channels
    mp4a[19] = 16; // sample size
    mp4a[24..28].copy_from_slice(&(44100u32 << 16).to_be_bytes());
    let esds = full(
        b"esds",
        0,
        &[&[
            0x03, 25, 0, 1, 0, // ES_Descriptor: id 1, no flags
            0x04, 17, 0x40, 0x15, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, // DecoderConfig: AAC
            0x05, 2, 0x12, 0x10, // AudioSpecificConfig: LC 44100 stereo
            0x06, 1, 2,
        ]],
    );
    let mp4a = bx(b"mp4a", &[&mp4a, &esds]);
    let co64: Vec<u8> = [
        3u64,
        audio_chunk1.into(),
        audio_chunk2.into(),
        audio_chunk3.into(),
    ]
    .iter()
    .enumerate()
    .flat_map(|(i, v)| {
        // The count is 32 bits; the offsets 64.
        if i == 0 {
            (*v as u32).to_be_bytes().to_vec()
        } else {
            v.to_be_bytes().to_vec()
        }
    })
    .collect();
    let audio = track(
        b"soun",
        1000,
        None,
        &[
            full(b"stsd", 0, &[&be(&[1]), &mp4a]),
            full(b"stts", 0, &[&be(&[1, 5, 20])]),
            full(b"stsc", 0, &[&be(&[2, 1, 2, 1, 3, 1, 1])]),
            full(
                b"stsz",
                0,
                &[&be(&[knobs.audio_fixed_size, knobs.audio_count])],
            ),
            full(b"co64", 0, &[&co64]),
        ],
    );
    let mut mvhd = be(&[0, 0, 1000, 600]);
    mvhd.resize(96, 0);
    let moov = bx(b"moov", &[&full(b"mvhd", 0, &[&mvhd]), &video, &audio]);
    let mut file = bx(b"ftyp", &[b"isom", &[0, 0, 2, 0], b"isom"]);
    file.extend(bx(b"mdat", &[&media]));
    file.extend(moov);
    file
}

fn open(data: Vec<u8>) -> Result<Mp4Reader<Cursor<Vec<u8>>>, VodError> {
    let len = data.len() as u64;
    Mp4Reader::new(Cursor::new(data), len)
}

fn frames(reader: &mut Mp4Reader<Cursor<Vec<u8>>>) -> Vec<Frame> {
    let mut out = Vec::new();
    while let Some(frame) = reader.next_frame().expect("frame") {
        out.push(frame);
    }
    out
}

#[test]
fn reads_every_table_variant() {
    let mut reader = open(build(&HONEST)).expect("valid file");
    let info = reader.info().clone();
    assert_eq!((info.width, info.height), (640, 360));
    assert_eq!(info.duration_ms, 600);
    assert_eq!((info.audio_sample_rate, info.audio_channels), (44100, 2));
    assert_eq!(info.frame_rate, 25.0);
    // 50 bytes of audio in 100 ms.
    assert_eq!(info.audio_bitrate_kbps, 4);
    let configs = reader.configs();
    assert_eq!(configs[0].data[4], 0xff, "avcC now says 4-byte lengths");
    assert_eq!(&configs[1].data[..], &[0x12, 0x10]);

    let got: Vec<(Codec, i64, i32, bool, Vec<u8>)> = frames(&mut reader)
        .into_iter()
        .map(|f| (f.codec, f.dts_us, f.cts_us, f.keyframe, f.payload.to_vec()))
        .collect();
    let a = |i: u8, ms: i64| (Codec::Aac, ms * 1000, 0, true, vec![i; AUDIO_SAMPLE]);
    let expected = vec![
        a(0, 0),
        a(1, 20),
        a(2, 40),
        a(3, 60),
        a(4, 80),
        (
            Codec::H264,
            500_000,
            80_000,
            true,
            vec![0, 0, 0, 3, 0x65, 1, 2],
        ),
        (
            Codec::H264,
            540_000,
            -40_000,
            false,
            vec![0, 0, 0, 2, 0x41, 9, 0, 0, 0, 1, 0x06],
        ),
        (Codec::H264, 580_000, 0, true, vec![0, 0, 0, 1, 0x41]),
    ];
    assert_eq!(got, expected);

    assert_eq!(reader.seek(560).expect("seek"), 500);
    let after: Vec<i64> = frames(&mut reader).iter().map(|f| f.dts_us).collect();
    assert_eq!(after, vec![500_000, 540_000, 580_000]);
    assert_eq!(reader.seek(10_000).expect("seek"), 580);
    assert_eq!(reader.seek(500).expect("seek"), 500);
    assert_eq!(
        frames(&mut reader).len(),
        3,
        "audio before the keyframe is not replayed"
    );
    // Before the first keyframe: the start of the file, every track from its first sample.
    assert_eq!(reader.seek(499).expect("seek"), 0);
    assert_eq!(frames(&mut reader).len(), 8);
}

#[test]
fn lying_tables_are_errors() {
    let corrupt = |knobs: Knobs, what: &str| match open(build(&knobs)) {
        Err(VodError::Corrupt(message)) => assert!(message.contains(what), "{message}"),
        Err(other) => panic!("{what}: {other}"),
        Ok(_) => panic!("{what}: accepted"),
    };
    // More samples than the chunks hold.
    corrupt(
        Knobs {
            audio_count: 6,
            ..HONEST
        },
        "place 5 of 6",
    );
    // Four billion samples of 10 bytes do not fit in a 300-byte file: refused before allocating.
    corrupt(
        Knobs {
            audio_count: u32::MAX,
            ..HONEST
        },
        "exceed the file",
    );
    corrupt(
        Knobs {
            video_stts_count: 2,
            ..HONEST
        },
        "stts of the video track covers 2 of 3",
    );
    // A sample that fits the file's size but not where it starts: the file must have been cut.
    let len = build(&HONEST).len() as u32;
    assert!(matches!(
        open(build(&Knobs {
            audio_fixed_size: len - 20,
            audio_count: 1,
            ..HONEST
        })),
        Err(VodError::Truncated(_))
    ));
}

#[test]
fn nal_lengths_are_rewritten_to_four_bytes() {
    assert_eq!(
        to_avcc4(vec![0, 2, 0x41, 9, 0, 1, 6], 2),
        Ok(vec![0, 0, 0, 2, 0x41, 9, 0, 0, 0, 1, 6])
    );
    assert_eq!(
        to_avcc4(vec![2, 0x41, 9, 1, 6], 1),
        Ok(vec![0, 0, 0, 2, 0x41, 9, 0, 0, 0, 1, 6])
    );
    let four = vec![0, 0, 0, 1, 0x65];
    assert_eq!(to_avcc4(four.clone(), 4), Ok(four));
    assert!(to_avcc4(vec![0, 0, 0, 9, 0x65], 4).is_err(), "overrun");
    assert!(to_avcc4(vec![0, 0, 0], 4).is_err(), "cut length");
    assert!(to_avcc4(vec![1, 2], 0).is_err(), "bad size");
    assert_eq!(to_avcc4(Vec::new(), 2), Ok(Vec::new()));
}
