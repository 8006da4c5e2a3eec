//! Real clients read what the writer makes: ffmpeg encodes a test stream (H.264 with B-frames,
//! AAC) to FLV, its tags go through [`crate::codec::flv`] and the writer, and ffprobe and ffmpeg
//! read the fMP4 back. Every packet must keep its decode and presentation time (B-frame order
//! included), every frame must decode, and nothing may be reported as an error.
//!
//! ffmpeg and ffprobe are required: `scripts/install-test-deps.sh` installs them.

use std::path::PathBuf;
use std::process::Command;

use bytes::Bytes;
use serde_json::Value;

use super::{FragmentWriter, InitSegment};
use crate::codec::flv::{parse_audio, parse_video, Tag};
use crate::media::{Frame, TrackConfig, TrackKind};

/// Runs a tool, failing the test with a clear message when it is missing or fails.
fn run(tool: &str, args: &[&str]) -> std::process::Output {
    let output = Command::new(tool).args(args).output().unwrap_or_else(|e| {
        panic!("{tool} is required by this test and could not be run ({e}): install ffmpeg (scripts/install-test-deps.sh)")
    });
    assert!(
        output.status.success(),
        "{tool} {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// A scratch directory, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Self {
        let dir =
            std::env::temp_dir().join(format!("mediarouter-fmp4-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("scratch directory");
        Scratch(dir)
    }

    fn path(&self, file: &str) -> String {
        self.0.join(file).to_string_lossy().into_owned()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// 2 s of testsrc2 at 25 fps (H.264 High, 2 B-frames, a keyframe a second) and a 1 kHz sine
/// (AAC-LC 44.1 kHz mono), as FLV.
fn encode_flv(path: &str) {
    run(
        "ffmpeg",
        &[
            "-v",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=320x240:rate=25",
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=1000:sample_rate=44100",
            "-t",
            "2",
            "-c:v",
            "libx264",
            "-pix_fmt",
            "yuv420p",
            "-bf",
            "2",
            "-g",
            "25",
            "-c:a",
            "aac",
            "-f",
            "flv",
            path,
        ],
    );
}

enum Item {
    Config(TrackConfig),
    Frame(Frame),
}

/// The tags of an FLV file as the RTMP ingest would see them.
fn read_flv(path: &str) -> Vec<Item> {
    let data = Bytes::from(std::fs::read(path).expect("read flv"));
    assert_eq!(&data[..3], b"FLV");
    let header = u32::from_be_bytes(data[5..9].try_into().unwrap()) as usize;
    let mut pos = header + 4;
    let mut items = Vec::new();
    while pos + 11 <= data.len() {
        let kind = data[pos];
        let size = u32::from_be_bytes([0, data[pos + 1], data[pos + 2], data[pos + 3]]) as usize;
        let ms = u32::from_be_bytes([data[pos + 7], data[pos + 4], data[pos + 5], data[pos + 6]]);
        let body = data.slice(pos + 11..pos + 11 + size);
        pos += 11 + size + 4;
        let dts_us = i64::from(ms) * 1000;
        let tag = match kind {
            8 => parse_audio(body, dts_us).expect("audio tag"),
            9 => parse_video(body, dts_us).expect("video tag"),
            _ => continue,
        };
        match tag {
            Tag::Config(config) => items.push(Item::Config(config)),
            Tag::Frame(frame) => items.push(Item::Frame(frame)),
            Tag::Skip => {}
        }
    }
    items
}

/// How frames are grouped into fragments.
#[derive(Clone, Copy)]
enum Grouping {
    /// One frame per fragment: the latency-first norm.
    OneFrame,
    /// Everything from a video keyframe to the next in one fragment (a GOP burst).
    Gop,
}

/// Writes the init segment and the fragments of `items` to `path`; returns the origin (the
/// first video keyframe's dts).
fn write_fmp4(items: &[Item], grouping: Grouping, path: &str) -> i64 {
    let config = |kind| {
        items.iter().find_map(|item| match item {
            Item::Config(c) if c.codec.track() == kind => Some(c),
            _ => None,
        })
    };
    let init = InitSegment::new(config(TrackKind::Video), config(TrackKind::Audio)).expect("init");
    // High profile (B-frames), AAC-LC.
    let mime = init.mime_codecs();
    assert!(
        mime.starts_with("video/mp4; codecs=\"avc1.6400") && mime.ends_with(",mp4a.40.2\""),
        "{mime}"
    );
    let mut writer = FragmentWriter::new(&init);
    let mut out = init.data().to_vec();
    let frames: Vec<&Frame> = items
        .iter()
        .filter_map(|item| match item {
            Item::Frame(f) => Some(f),
            Item::Config(_) => None,
        })
        .collect();
    let origin = frames
        .iter()
        .find(|f| f.is_video_keyframe())
        .expect("a keyframe")
        .dts_us;
    let mut group: Vec<&Frame> = Vec::new();
    for frame in frames {
        let flush = match grouping {
            Grouping::OneFrame => true,
            Grouping::Gop => frame.is_video_keyframe(),
        };
        if flush && !group.is_empty() {
            if let Some(bytes) = writer.fragment(&group) {
                out.extend_from_slice(&bytes);
            }
            group.clear();
        }
        group.push(frame);
    }
    if let Some(bytes) = writer.fragment(&group) {
        out.extend_from_slice(&bytes);
    }
    assert_eq!(writer.skipped_frames(), 0);
    std::fs::write(path, out).expect("write fmp4");
    origin
}

#[derive(Debug, Clone, PartialEq)]
struct Packet {
    video: bool,
    /// Microseconds.
    dts: i64,
    pts: i64,
    key: bool,
}

fn seconds_to_us(v: &Value) -> i64 {
    let s = v.as_str().expect("a time");
    (s.parse::<f64>().expect("a number") * 1e6).round() as i64
}

fn probe_packets(path: &str) -> Vec<Packet> {
    let output = run(
        "ffprobe",
        &[
            "-v",
            "error",
            "-show_entries",
            "packet=codec_type,pts_time,dts_time,flags",
            "-of",
            "json",
            path,
        ],
    );
    let json: Value = serde_json::from_slice(&output.stdout).expect("ffprobe json");
    json["packets"]
        .as_array()
        .expect("packets")
        .iter()
        .map(|p| Packet {
            video: p["codec_type"] == "video",
            dts: seconds_to_us(&p["dts_time"]),
            pts: seconds_to_us(&p["pts_time"]),
            key: p["flags"].as_str().is_some_and(|f| f.starts_with('K')),
        })
        .collect()
}

/// Presentation times of the decoded frames of one stream, in the order they come out.
fn probe_frames(path: &str, stream: &str) -> Vec<i64> {
    let output = run(
        "ffprobe",
        &[
            "-v",
            "error",
            "-select_streams",
            stream,
            "-show_entries",
            "frame=pts_time",
            "-of",
            "json",
            path,
        ],
    );
    let json: Value = serde_json::from_slice(&output.stdout).expect("ffprobe json");
    json["frames"]
        .as_array()
        .expect("frames")
        .iter()
        .map(|f| seconds_to_us(&f["pts_time"]))
        .collect()
}

/// Decoding the whole file reports nothing at all.
fn assert_decodes_cleanly(path: &str) {
    let output = run("ffmpeg", &["-v", "error", "-i", path, "-f", "null", "-"]);
    let errors = String::from_utf8_lossy(&output.stderr);
    assert!(errors.trim().is_empty(), "decoding {path}: {errors}");
}

fn check(grouping: Grouping, name: &str) {
    let scratch = Scratch::new(name);
    let flv = scratch.path("source.flv");
    let mp4 = scratch.path("out.mp4");
    encode_flv(&flv);
    let items = read_flv(&flv);
    let origin = write_fmp4(&items, grouping, &mp4);
    assert_decodes_cleanly(&mp4);

    let source = probe_packets(&flv);
    let written = probe_packets(&mp4);
    let (source_video, source_audio): (Vec<_>, Vec<_>) =
        source.iter().cloned().partition(|p| p.video);
    let (video, audio): (Vec<_>, Vec<_>) = written.iter().cloned().partition(|p| p.video);

    // Video: every packet, in decode order, at its FLV times less the origin, B-frames' pts
    // included, keyframes flagged.
    assert_eq!(video.len(), 50, "video packets");
    assert!(source_video.iter().any(|p| p.pts != p.dts), "B-frames");
    let expected: Vec<Packet> = source_video
        .iter()
        .map(|p| Packet {
            dts: p.dts - origin,
            pts: p.pts - origin,
            ..p.clone()
        })
        .collect();
    for (n, (got, want)) in video.iter().zip(&expected).enumerate() {
        assert!(
            (got.dts - want.dts).abs() <= 20
                && (got.pts - want.pts).abs() <= 20
                && got.key == want.key,
            "video packet {n}: {got:?}, expected {want:?}"
        );
    }

    // Audio: every packet from the origin on, each within a millisecond (FLV's resolution) of
    // its FLV time, 1024 samples apart.
    let expected_audio: Vec<i64> = source_audio
        .iter()
        .map(|p| p.dts - origin)
        .filter(|&t| t >= 0)
        .collect();
    assert_eq!(audio.len(), expected_audio.len(), "audio packets");
    assert!(audio.len() > 80, "{} audio packets", audio.len());
    for (n, (got, want)) in audio.iter().zip(&expected_audio).enumerate() {
        assert!(
            (got.dts - want).abs() <= 1000,
            "audio packet {n}: {got:?}, {want}"
        );
        let exact = (n as i64 * 1024 * 1_000_000 + 22_050) / 44_100;
        assert!(
            (got.dts - audio[0].dts - exact).abs() <= 1,
            "audio packet {n}: {got:?}"
        );
    }

    // Decoded: every picture, in presentation order, at the packets' presentation times.
    let frames = probe_frames(&mp4, "v");
    let mut pts: Vec<i64> = video.iter().map(|p| p.pts).collect();
    pts.sort_unstable();
    assert_eq!(frames.len(), 50, "decoded pictures");
    for (n, (got, want)) in frames.iter().zip(&pts).enumerate() {
        assert!(
            (got - want).abs() <= 20,
            "picture {n}: pts {got}, expected {want}"
        );
    }
    assert_eq!(
        probe_frames(&mp4, "a").len(),
        audio.len(),
        "decoded audio frames"
    );
}

#[test]
fn ffmpeg_reads_one_frame_fragments_of_a_b_frame_stream() {
    check(Grouping::OneFrame, "one-frame");
}

#[test]
fn ffmpeg_reads_gop_fragments_of_a_b_frame_stream() {
    check(Grouping::Gop, "gop");
}

#[test]
fn ffmpeg_reads_single_track_files() {
    let scratch = Scratch::new("single");
    let flv = scratch.path("source.flv");
    encode_flv(&flv);
    let items = read_flv(&flv);
    for kind in [TrackKind::Video, TrackKind::Audio] {
        let config = items.iter().find_map(|item| match item {
            Item::Config(c) if c.codec.track() == kind => Some(c),
            _ => None,
        });
        let init = match kind {
            TrackKind::Video => InitSegment::new(config, None),
            TrackKind::Audio => InitSegment::new(None, config),
        }
        .expect("init");
        let mut writer = FragmentWriter::new(&init);
        let mut out = init.data().to_vec();
        let mut count = 0;
        for item in &items {
            if let Item::Frame(frame) = item {
                if let Some(bytes) = writer.fragment(&[frame]) {
                    out.extend_from_slice(&bytes);
                    count += 1;
                }
            }
        }
        let path = scratch.path("single.mp4");
        std::fs::write(&path, out).expect("write");
        assert_decodes_cleanly(&path);
        let packets = probe_packets(&path);
        assert_eq!(packets.len(), count);
        let expected_video = kind == TrackKind::Video;
        assert!(packets.iter().all(|p| p.video == expected_video));
        let stream = if expected_video { "v" } else { "a" };
        assert_eq!(probe_frames(&path, stream).len(), count);
    }
}
