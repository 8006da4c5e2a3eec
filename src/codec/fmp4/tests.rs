//! Init segments and fragments read back box by box: structure, timing, and what is skipped.

use super::*;
use crate::media::TrackInfo;

/// Decoder configuration written by ffmpeg/libx264 for 640x360 baseline level 3.0.
pub(super) const RECORD_640X360: &[u8] = &[
    0x01, 0x42, 0xc0, 0x1e, 0xff, 0xe1, 0x00, 0x19, 0x67, 0x42, 0xc0, 0x1e, 0xd9, 0x00, 0xa0, 0x2f,
    0xf9, 0x70, 0x11, 0x00, 0x00, 0x03, 0x00, 0x01, 0x00, 0x00, 0x03, 0x00, 0x3c, 0x0f, 0x16, 0x2e,
    0x48, 0x01, 0x00, 0x05, 0x68, 0xcb, 0x83, 0xcb, 0x20,
];
/// AAC-LC, 44.1 kHz, stereo.
pub(super) const ASC_44100_STEREO: &[u8] = &[0x12, 0x10];

pub(super) fn video_config() -> TrackConfig {
    TrackConfig {
        codec: Codec::H264,
        data: Bytes::from_static(RECORD_640X360),
        dts_us: 0,
        info: TrackInfo::default(),
    }
}

pub(super) fn audio_config(asc: &'static [u8]) -> TrackConfig {
    TrackConfig {
        codec: Codec::Aac,
        data: Bytes::from_static(asc),
        dts_us: 0,
        info: TrackInfo::default(),
    }
}

fn both() -> InitSegment {
    InitSegment::new(Some(&video_config()), Some(&audio_config(ASC_44100_STEREO))).expect("init")
}

/// An AVCC frame of one NAL unit of `len` bytes (4-byte length prefix).
fn avcc(len: usize, fill: u8) -> Bytes {
    let mut v = (len as u32).to_be_bytes().to_vec();
    v.resize(4 + len, fill);
    Bytes::from(v)
}

pub(super) fn video(dts_us: i64, cts_us: i32, keyframe: bool) -> Frame {
    Frame::new(Codec::H264, dts_us, cts_us, keyframe, avcc(20, 0x41))
}

pub(super) fn audio(dts_us: i64) -> Frame {
    Frame::new(
        Codec::Aac,
        dts_us,
        0,
        true,
        Bytes::from_static(&[0x21, 0x10, 0x05]),
    )
}

/// The boxes directly in `data`: type and body (after the 8-byte header).
fn children(data: &[u8]) -> Vec<([u8; 4], &[u8])> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos + 8 <= data.len() {
        let size = u32::from_be_bytes(data[pos..pos + 4].try_into().unwrap()) as usize;
        assert!(
            size >= 8 && pos + size <= data.len(),
            "box size {size} at {pos}"
        );
        out.push((
            data[pos + 4..pos + 8].try_into().unwrap(),
            &data[pos + 8..pos + size],
        ));
        pos += size;
    }
    assert_eq!(pos, data.len(), "trailing bytes");
    out
}

/// Bodies of the boxes of type `fourcc` directly in `data`.
fn all<'a>(data: &'a [u8], fourcc: &[u8; 4]) -> Vec<&'a [u8]> {
    children(data)
        .into_iter()
        .filter(|(t, _)| t == fourcc)
        .map(|(_, body)| body)
        .collect()
}

/// The body of the first box along `path`.
fn find<'a>(data: &'a [u8], path: &[&[u8; 4]]) -> &'a [u8] {
    let mut body = data;
    for fourcc in path {
        body = all(body, fourcc)
            .first()
            .copied()
            .unwrap_or_else(|| panic!("no {:?}", String::from_utf8_lossy(&fourcc[..])));
    }
    body
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes(b[at..at + 2].try_into().unwrap())
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(b[at..at + 4].try_into().unwrap())
}

#[derive(Debug, PartialEq)]
pub(super) struct Run {
    pub(super) track_id: u32,
    pub(super) base: u64,
    /// duration, size, flags, composition offset
    samples: Vec<(u32, u32, u32, i32)>,
    payloads: Vec<Vec<u8>>,
}

/// Reads every moof + mdat pair of a fragment: sequence numbers and the runs in them, with the
/// payloads found through the data offsets.
pub(super) fn read_fragment(data: &[u8]) -> (Vec<u32>, Vec<Run>) {
    let mut sequences = Vec::new();
    let mut runs = Vec::new();
    let mut pos = 0;
    let top = children(data);
    for pair in top.chunks(2) {
        let [(moof_type, moof), (mdat_type, mdat)] = pair else {
            panic!("moof without mdat");
        };
        assert_eq!((moof_type, mdat_type), (b"moof", b"mdat"));
        let moof_start = pos;
        pos += moof.len() + 8 + mdat.len() + 8;
        let mfhd = find(moof, &[b"mfhd"]);
        sequences.push(u32_at(mfhd, 4));
        for traf in all(moof, b"traf") {
            let tfhd = find(traf, &[b"tfhd"]);
            assert_eq!(u32_at(tfhd, 0), 0x0002_0000, "default-base-is-moof only");
            let tfdt = find(traf, &[b"tfdt"]);
            assert_eq!(tfdt[0], 1, "tfdt version 1");
            let trun = find(traf, &[b"trun"]);
            assert_eq!(trun[0], 1, "trun version 1");
            let flags = u32_at(trun, 0) & 0xff_ffff;
            let cto = flags & 0x800 != 0;
            assert_eq!(flags & !0x800, 0x701);
            let count = u32_at(trun, 4) as usize;
            let offset = i32::from_be_bytes(trun[8..12].try_into().unwrap()) as usize;
            let entry = if cto { 16 } else { 12 };
            assert_eq!(trun.len(), 12 + count * entry);
            let mut samples = Vec::new();
            let mut payloads = Vec::new();
            let mut at = moof_start + offset;
            for i in 0..count {
                let e = &trun[12 + i * entry..];
                let size = u32_at(e, 4);
                let c = if cto {
                    i32::from_be_bytes(e[12..16].try_into().unwrap())
                } else {
                    0
                };
                samples.push((u32_at(e, 0), size, u32_at(e, 8), c));
                payloads.push(data[at..at + size as usize].to_vec());
                at += size as usize;
            }
            runs.push(Run {
                track_id: u32_at(tfhd, 4),
                base: u64::from_be_bytes(tfdt[4..12].try_into().unwrap()),
                samples,
                payloads,
            });
        }
    }
    (sequences, runs)
}

fn one_run(data: &[u8]) -> Run {
    let (_, mut runs) = read_fragment(data);
    assert_eq!(runs.len(), 1, "{runs:?}");
    runs.remove(0)
}

#[test]
fn init_segment_has_ftyp_and_moov_for_both_tracks() {
    let init = both();
    let data = init.data();
    let top = children(data);
    assert_eq!(top.len(), 2);
    let (ftyp_type, ftyp) = top[0];
    assert_eq!(&ftyp_type, b"ftyp");
    assert_eq!(&ftyp[..4], b"iso5");
    assert_eq!(&ftyp[8..], b"iso5iso6mp41");

    let moov = find(data, &[b"moov"]);
    let mvhd = find(moov, &[b"mvhd"]);
    assert_eq!(u32_at(mvhd, mvhd.len() - 4), 3, "next track id");
    let traks = all(moov, b"trak");
    assert_eq!(traks.len(), 2);

    // Video: track 1, 90 kHz, avc1 640x360 carrying the record as received.
    let tkhd = find(traks[0], &[b"tkhd"]);
    assert_eq!(u32_at(tkhd, 12), 1);
    assert_eq!(u32_at(tkhd, 76), 640 << 16);
    assert_eq!(u32_at(tkhd, 80), 360 << 16);
    let mdhd = find(traks[0], &[b"mdia", b"mdhd"]);
    assert_eq!(u32_at(mdhd, 12), 90_000);
    assert_eq!(&find(traks[0], &[b"mdia", b"hdlr"])[8..12], b"vide");
    find(traks[0], &[b"mdia", b"minf", b"vmhd"]);
    find(traks[0], &[b"mdia", b"minf", b"dinf", b"dref"]);
    let stbl = find(traks[0], &[b"mdia", b"minf", b"stbl"]);
    for table in [b"stts", b"stsc", b"stco"] {
        assert_eq!(find(stbl, &[table]), &[0; 8], "empty {table:?}");
    }
    assert_eq!(find(stbl, &[b"stsz"]), &[0; 12]);
    let stsd = find(stbl, &[b"stsd"]);
    assert_eq!(u32_at(stsd, 4), 1);
    let avc1 = find(&stsd[8..], &[b"avc1"]);
    assert_eq!((u16_at(avc1, 24), u16_at(avc1, 26)), (640, 360));
    assert_eq!(find(&avc1[78..], &[b"avcC"]), RECORD_640X360);

    // Audio: track 2, at the AAC rate, mp4a with the ASC in its esds.
    let tkhd = find(traks[1], &[b"tkhd"]);
    assert_eq!(u32_at(tkhd, 12), 2);
    let mdhd = find(traks[1], &[b"mdia", b"mdhd"]);
    assert_eq!(u32_at(mdhd, 12), 44_100);
    assert_eq!(&find(traks[1], &[b"mdia", b"hdlr"])[8..12], b"soun");
    find(traks[1], &[b"mdia", b"minf", b"smhd"]);
    let stsd = find(traks[1], &[b"mdia", b"minf", b"stbl", b"stsd"]);
    let mp4a = find(&stsd[8..], &[b"mp4a"]);
    assert_eq!(u16_at(mp4a, 16), 2, "channels");
    assert_eq!(u32_at(mp4a, 24), 44_100 << 16);
    let esds = find(&mp4a[28..], &[b"esds"]);
    // ES descriptor, decoder config (MPEG-4 audio, audio stream), decoder specific info = ASC.
    assert_eq!(esds[4], 0x03);
    let es_len = (esds[8] & 0x7f) as usize;
    assert_eq!(esds.len(), 9 + es_len);
    assert_eq!(&esds[12..14], &[0x04, 0x80]);
    assert_eq!(&esds[17..19], &[0x40, 0x15]);
    assert_eq!(esds[30], 0x05);
    assert_eq!(esds[34] as usize, ASC_44100_STEREO.len());
    assert_eq!(&esds[35..37], ASC_44100_STEREO);
    assert_eq!(&esds[37..], &[0x06, 0x80, 0x80, 0x80, 0x01, 0x02]);

    let trexes = all(find(moov, &[b"mvex"]), b"trex");
    assert_eq!(trexes.len(), 2);
    assert_eq!((u32_at(trexes[0], 4), u32_at(trexes[1], 4)), (1, 2));
    assert_eq!(u32_at(trexes[0], 8), 1, "default sample description");
}

#[test]
fn mime_type_names_the_codecs() {
    assert_eq!(
        both().mime_codecs(),
        "video/mp4; codecs=\"avc1.42C01E,mp4a.40.2\""
    );
    let video_only = InitSegment::new(Some(&video_config()), None).expect("init");
    assert_eq!(
        video_only.mime_codecs(),
        "video/mp4; codecs=\"avc1.42C01E\""
    );
    assert!(video_only.has_video() && !video_only.has_audio());
    // HE-AAC 24 kHz mono, alone: an audio type, track 1 at the core rate.
    let audio_only = InitSegment::new(None, Some(&audio_config(&[0x2b, 0x08]))).expect("init");
    assert_eq!(audio_only.mime_codecs(), "audio/mp4; codecs=\"mp4a.40.5\"");
    let trak = find(audio_only.data(), &[b"moov", b"trak"]);
    assert_eq!(u32_at(find(trak, &[b"tkhd"]), 12), 1);
    assert_eq!(u32_at(find(trak, &[b"mdia", b"mdhd"]), 12), 24_000);
}

#[test]
fn unusable_configurations_are_errors() {
    assert!(InitSegment::new(None, None).is_err());
    let mut opus = audio_config(ASC_44100_STEREO);
    opus.codec = Codec::Opus;
    let err = InitSegment::new(None, Some(&opus)).expect_err("opus");
    assert!(err.to_string().contains("OPUS"), "{err}");
    let mut vp8 = video_config();
    vp8.codec = Codec::Vp8;
    assert!(InitSegment::new(Some(&vp8), None).is_err());
    let mut truncated = video_config();
    truncated.data = Bytes::from_static(&RECORD_640X360[..20]);
    assert!(InitSegment::new(Some(&truncated), None).is_err());
    // No PPS.
    let mut no_pps = RECORD_640X360[..34].to_vec();
    no_pps.push(0);
    let mut config = video_config();
    config.data = Bytes::from(no_pps);
    assert!(InitSegment::new(Some(&config), None).is_err());
    // An SPS the parser cannot read, no size in the track info either.
    let mut bad_sps = RECORD_640X360.to_vec();
    bad_sps[9..33].fill(0xff);
    config.data = Bytes::from(bad_sps);
    assert!(InitSegment::new(Some(&config), None).is_err());
    config.info.width = Some(320);
    config.info.height = Some(240);
    let init = InitSegment::new(Some(&config), None).expect("size from the track info");
    let tkhd = find(init.data(), &[b"moov", b"trak", b"tkhd"]);
    assert_eq!(u32_at(tkhd, 76), 320 << 16);
    assert!(InitSegment::new(None, Some(&audio_config(&[0x12]))).is_err());
}

#[test]
fn one_keyframe_is_one_fragment() {
    let init = both();
    let mut writer = FragmentWriter::new(&init);
    let frame = video(5_000_000, 80_000, true);
    let data = writer.fragment(&[&frame]).expect("fragment");
    let (sequences, runs) = read_fragment(&data);
    assert_eq!(sequences, vec![1]);
    assert_eq!(
        runs,
        vec![Run {
            track_id: 1,
            base: 0,
            // The first frame alone gets the default duration; its pts is 80 ms after its dts.
            samples: vec![(22_500, 24, FLAGS_SYNC, 7_200)],
            payloads: vec![frame.payload.to_vec()],
        }]
    );
    assert_eq!(writer.sequence_number(), 1);
    assert_eq!(writer.skipped_frames(), 0);
}

#[test]
fn payloads_are_shared_not_copied() {
    let mut writer = FragmentWriter::new(&both());
    let frames = [video(0, 0, true), audio(1_000)];
    let fragment = writer.fragment_parts(&frames).expect("fragment");
    assert_eq!(fragment.parts.len(), 3);
    assert_eq!(fragment.parts[1].as_ptr(), frames[0].payload.as_ptr());
    assert_eq!(fragment.parts[2].as_ptr(), frames[1].payload.as_ptr());
    let len = fragment.len();
    let bytes = fragment.into_bytes();
    assert_eq!(bytes.len(), len);
    let (_, runs) = read_fragment(&bytes);
    assert_eq!(runs.len(), 2);
    assert_eq!((runs[0].track_id, runs[1].track_id), (1, 2));
    assert_eq!(runs[1].base, 44, "1 ms at 44.1 kHz");
    assert_eq!(runs[1].samples, vec![(1024, 3, FLAGS_SYNC, 0)]);
    assert_eq!(runs[1].payloads, vec![frames[1].payload.to_vec()]);
}

#[test]
fn nothing_before_the_first_keyframe() {
    let mut writer = FragmentWriter::new(&both());
    assert!(writer.fragment(&[video(0, 0, false)]).is_none());
    assert!(writer.fragment(&[audio(10_000)]).is_none());
    // Audio a little before the keyframe is not written either.
    let data = writer
        .fragment(&[video(40_000, 0, true), audio(30_000), audio(50_000)])
        .expect("fragment");
    let (_, runs) = read_fragment(&data);
    assert_eq!(runs[0].base, 0);
    assert_eq!(runs[1].base, 441);
    assert_eq!(runs[1].samples.len(), 1);
    assert_eq!(writer.skipped_frames(), 3);
}

#[test]
fn audio_only_starts_at_its_first_frame() {
    let init = InitSegment::new(None, Some(&audio_config(ASC_44100_STEREO))).expect("init");
    let mut writer = FragmentWriter::new(&init);
    // Video frames have no track here.
    assert!(writer.fragment(&[video(0, 0, true)]).is_none());
    let run = one_run(&writer.fragment(&[audio(777_000)]).expect("fragment"));
    assert_eq!((run.track_id, run.base), (1, 0));
}

#[test]
fn b_frames_keep_their_composition_offsets() {
    let mut writer = FragmentWriter::new(&both());
    // I P B B at 25 fps, decode order, pts 80 200 120 160 ms ahead of the first dts.
    let frames = [
        video(1_000_000, 80_000, true),
        video(1_040_000, 160_000, false),
        video(1_080_000, 40_000, false),
        video(1_120_000, 40_000, false),
    ];
    let run = one_run(&writer.fragment(&frames).expect("fragment"));
    assert_eq!(run.base, 0);
    assert_eq!(
        run.samples,
        vec![
            (3600, 24, FLAGS_SYNC, 7200),
            (3600, 24, FLAGS_NON_SYNC, 14_400),
            (3600, 24, FLAGS_NON_SYNC, 3600),
            // The last one gets the estimate: here the 100 ms floor.
            (9000, 24, FLAGS_NON_SYNC, 3600),
        ]
    );
}

#[test]
fn negative_composition_offsets_are_kept() {
    let mut writer = FragmentWriter::new(&both());
    let run = one_run(
        &writer
            .fragment(&[video(0, 0, true), video(40_000, -20_000, false)])
            .expect("fragment"),
    );
    assert_eq!(run.samples[1].3, -1800);
}

#[test]
fn one_frame_fragments_follow_the_dts_without_drift() {
    let mut writer = FragmentWriter::new(&both());
    // 30 fps in whole microseconds (33 333, 66 666, 100 000...) and AAC at 44.1 kHz with
    // millisecond timestamps, as RTMP carries them.
    let mut video_bases = Vec::new();
    let mut audio_bases = Vec::new();
    for n in 0..3000i64 {
        let frame = video(n * 1_000_000 / 30, 0, n == 0);
        let run = one_run(&writer.fragment(&[&frame]).expect("video"));
        video_bases.push(run.base);
        if n > 0 {
            // The estimate: the 100 ms floor.
            assert_eq!(run.samples[0].0, 9000, "frame {n}");
        }
        let ms = n * 1024 * 1000 / 44_100;
        let run = one_run(&writer.fragment(&[audio(ms * 1000)]).expect("audio"));
        audio_bases.push(run.base);
        assert_eq!(run.samples[0].0, 1024);
    }
    for (n, (v, a)) in video_bases.iter().zip(&audio_bases).enumerate() {
        assert_eq!(*v, n as u64 * 3000, "video {n}");
        // Snapped onto the sample count, so consecutive frames neither overlap nor leave holes.
        assert_eq!(*a, n as u64 * 1024, "audio {n}");
    }
    let (sequence, skipped) = (writer.sequence_number(), writer.skipped_frames());
    assert_eq!((sequence, skipped), (6000, 0));
}

#[test]
fn audio_gaps_and_jumps_are_kept() {
    let init = InitSegment::new(None, Some(&audio_config(&[0x11, 0x88]))).expect("48k mono");
    let mut writer = FragmentWriter::new(&init);
    let frame_us = 1024 * 1_000_000 / 48_000; // 21 333
    let bases: Vec<u64> = [0, frame_us, 3 * frame_us, 4 * frame_us + 5_000]
        .iter()
        .map(|&dts| one_run(&writer.fragment(&[audio(dts)]).expect("fragment")).base)
        .collect();
    // A lost frame stays a hole; 5 ms of jitter is snapped.
    assert_eq!(bases, vec![0, 1024, 3072, 4096]);

    // Within one call the frame before a hole lasts up to the next one.
    let run = one_run(
        &writer
            .fragment(&[audio(5 * frame_us), audio(7 * frame_us)])
            .expect("fragment"),
    );
    assert_eq!(run.base, 5 * 1024);
    assert_eq!(run.samples[0].0, 2048);
    assert_eq!(run.samples[1].0, 1024);
}

#[test]
fn decode_times_strictly_increase() {
    let mut writer = FragmentWriter::new(&both());
    let frames = [
        video(0, 0, true),
        video(40_000, 40_000, false),
        // Same dts, then one going back: placed a tick after, presentation kept.
        video(40_000, 80_000, false),
        video(30_000, 120_000, false),
    ];
    let run = one_run(&writer.fragment(&frames).expect("fragment"));
    let decodes: Vec<i64> = run
        .samples
        .iter()
        .scan(run.base as i64, |t, s| {
            let d = *t;
            *t += i64::from(s.0);
            Some(d)
        })
        .collect();
    assert_eq!(decodes, vec![0, 3600, 3601, 3602]);
    let pts: Vec<i64> = decodes
        .iter()
        .zip(&run.samples)
        .map(|(d, s)| d + i64::from(s.3))
        .collect();
    assert_eq!(pts, vec![0, 7200, 10_800, 13_500]);
}

#[test]
fn estimated_video_duration_is_the_longest_recent_step() {
    let mut writer = FragmentWriter::new(&both());
    let mut dts = 0;
    let mut estimate = |writer: &mut FragmentWriter, step: i64| {
        dts += step;
        let frame = video(dts, 0, step == 0);
        one_run(&writer.fragment(&[frame]).expect("frame")).samples[0].0
    };
    // Nothing known yet: the default.
    assert_eq!(estimate(&mut writer, 0), 22_500);
    // A 5 fps camera: the longest of the last eight steps.
    let durations: Vec<u32> = [200_000, 200_000, 400_000, 200_000]
        .into_iter()
        .map(|step| estimate(&mut writer, step))
        .collect();
    assert_eq!(durations, vec![18_000, 18_000, 36_000, 36_000]);
    for _ in 0..6 {
        assert_eq!(estimate(&mut writer, 200_000), 36_000);
    }
    // Eight steps after it, the long one is forgotten.
    assert_eq!(estimate(&mut writer, 200_000), 18_000);
    // 30 fps: the 100 ms floor, so that three skipped frames are no discontinuity.
    for _ in 0..8 {
        estimate(&mut writer, 33_333);
    }
    assert_eq!(estimate(&mut writer, 33_333), 9000);
    // A long pause does not make every later estimate huge.
    assert_eq!(estimate(&mut writer, 3_600_000_000), 90_000);
}

#[test]
fn reset_continues_the_timeline() {
    let init = both();
    let mut writer = FragmentWriter::new(&init);
    writer
        .fragment(&[video(10_000_000, 0, true), video(10_040_000, 0, false)])
        .expect("first timeline");
    writer.fragment(&[audio(10_050_000)]).expect("audio");
    // Video ends at 140 ms (40 ms, then the 100 ms estimate); audio at 50 ms + 1024 samples.

    // A republish with a new resolution: timestamps restart at zero.
    let mut config = video_config();
    config.info.width = Some(1);
    let new_init =
        InitSegment::new(Some(&config), Some(&audio_config(&[0x11, 0x90]))).expect("new init");
    writer.reset(&new_init);
    assert!(
        writer.fragment(&[audio(0)]).is_none(),
        "waits for a keyframe"
    );
    let data = writer
        .fragment(&[video(0, 0, true), audio(10_000)])
        .expect("second timeline");
    let (sequences, runs) = read_fragment(&data);
    assert_eq!(sequences, vec![3]);
    assert_eq!(runs[0].base, 12_600, "140 ms at 90 kHz");
    // 48 kHz now: 150 ms.
    assert_eq!(runs[1].base, 7200);
}

#[test]
fn unusable_frames_are_skipped() {
    let mut writer = FragmentWriter::new(&both());
    let bad = [
        // Length prefix past the end, trailing bytes, empty, a codec without a track.
        Frame::new(
            Codec::H264,
            0,
            0,
            true,
            Bytes::from_static(&[0, 0, 0, 9, 1]),
        ),
        Frame::new(
            Codec::H264,
            0,
            0,
            true,
            Bytes::from_static(&[0, 0, 0, 1, 0x65, 0]),
        ),
        Frame::new(Codec::H264, 0, 0, true, Bytes::new()),
        Frame::new(Codec::Opus, 0, 0, true, Bytes::from_static(&[1, 2, 3])),
    ];
    assert!(writer.fragment(&bad).is_none());
    assert_eq!(writer.skipped_frames(), 4);
    let good = video(0, 0, true);
    let run = one_run(
        &writer
            .fragment(&[&bad[0], &good, &bad[1]])
            .expect("fragment"),
    );
    assert_eq!(run.samples.len(), 1);
    assert_eq!(writer.skipped_frames(), 6);
}

#[test]
fn large_calls_are_split_into_several_moofs() {
    let mut writer = FragmentWriter::new(&both());
    let mut frames = vec![video(0, 0, true)];
    frames.extend((1..2500).map(|n| audio(n * 1024 * 1_000_000 / 44_100)));
    let data = writer.fragment(&frames).expect("fragment");
    let (sequences, runs) = read_fragment(&data);
    assert_eq!(sequences, vec![1, 2, 3]);
    let counts: Vec<usize> = runs.iter().map(|r| r.samples.len()).collect();
    assert_eq!(counts, vec![1, 1023, 1024, 452]);
    // Each moof's tfdt is where the previous one's samples end.
    assert_eq!(runs[2].base, runs[1].base + 1023 * 1024);
    assert_eq!(runs[3].base, runs[2].base + 1024 * 1024);

    // A payload too large for any real frame is skipped.
    let huge = Frame::new(
        Codec::Aac,
        60_000_000,
        0,
        true,
        Bytes::from(vec![0; MAX_SAMPLE_BYTES + 1]),
    );
    assert!(writer.fragment(&[huge]).is_none());
}

#[test]
fn garbage_never_panics() {
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let codecs = [
        Codec::H264,
        Codec::Aac,
        Codec::Opus,
        Codec::Pcma,
        Codec::Vp8,
    ];
    for _ in 0..2000 {
        let len = (next() % 64) as usize;
        let bytes: Bytes = (0..len).map(|_| next() as u8).collect();
        let video = TrackConfig {
            codec: codecs[(next() % 5) as usize],
            data: bytes.clone(),
            dts_us: 0,
            info: TrackInfo::default(),
        };
        let audio = TrackConfig {
            codec: codecs[(next() % 5) as usize],
            data: bytes.slice(..len.min(3)),
            dts_us: 0,
            info: TrackInfo::default(),
        };
        let _ = InitSegment::new(Some(&video), None);
        let _ = InitSegment::new(None, Some(&audio));
        let _ = InitSegment::new(Some(&video), Some(&audio));
    }
    let mut writer = FragmentWriter::new(&both());
    for round in 0..5000 {
        let len = (next() % 40) as usize;
        let mut payload: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        if round % 3 == 0 && len >= 4 {
            // Well framed now and then, so that garbage timestamps get through.
            payload[..4].copy_from_slice(&(len as u32 - 4).to_be_bytes());
        }
        let dts = (next() as i64) >> (next() % 64);
        let cts = (next() as i32) >> (next() % 32);
        let frame = Frame::new(
            codecs[(next() % 3) as usize],
            dts,
            cts,
            next() % 2 == 0,
            Bytes::from(payload),
        );
        if let Some(data) = writer.fragment(&[frame]) {
            read_fragment(&data);
        }
        if round % 500 == 0 {
            writer.reset(&both());
        }
    }
    let extremes = [
        video(i64::MAX, i32::MAX, true),
        video(i64::MIN, i32::MIN, false),
        audio(i64::MAX),
        audio(i64::MIN),
    ];
    for frame in &extremes {
        if let Some(data) = writer.fragment(&[frame]) {
            read_fragment(&data);
        }
    }
}

#[test]
fn is_send() {
    fn send<T: Send + Sync>() {}
    send::<InitSegment>();
    send::<FragmentWriter>();
}
