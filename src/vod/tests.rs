//! VOD reader tests on files made by the real ffmpeg at test time, checked against ffprobe.
//! Without ffmpeg these tests fail (they do not skip): the fixtures cannot be made otherwise.

use super::to_avcc4;
use super::*;
use crate::codec::aac::AudioSpecificConfig;
use crate::codec::avc::AvcConfig;
use crate::media::TrackKind;
use std::process::Command;
use std::sync::OnceLock;

const INPUTS: &[&str] = &[
    "-f",
    "lavfi",
    "-i",
    "testsrc2=size=320x240:rate=25",
    "-f",
    "lavfi",
    "-i",
    "sine=frequency=440:sample_rate=44100",
    "-t",
    "3",
];

/// The fixtures and the ffmpeg options that make them.
const FIXTURES: &[(&str, &[&str])] = &[
    // ffmpeg's default: moov after mdat.
    (
        "bframes.mp4",
        &["-c:v", "libx264", "-g", "25", "-bf", "2", "-c:a", "aac"],
    ),
    (
        "faststart.mp4",
        &[
            "-c:v",
            "libx264",
            "-g",
            "25",
            "-bf",
            "2",
            "-c:a",
            "aac",
            "-movflags",
            "+faststart",
        ],
    ),
    (
        "nobframes.mp4",
        &["-c:v", "libx264", "-g", "25", "-bf", "0", "-c:a", "aac"],
    ),
    (
        "bframes.flv",
        &["-c:v", "libx264", "-g", "25", "-bf", "2", "-c:a", "aac"],
    ),
    (
        "indexed.flv",
        &[
            "-c:v",
            "libx264",
            "-g",
            "25",
            "-bf",
            "2",
            "-c:a",
            "aac",
            "-flvflags",
            "add_keyframe_index",
        ],
    ),
    // MP2 audio in MP4: a track this reader skips.
    (
        "mp2audio.mp4",
        &["-c:v", "libx264", "-g", "25", "-c:a", "mp2"],
    ),
    ("audioonly.mp4", &["-vn", "-c:a", "aac"]),
];

/// The H.264 + AAC files every general check runs on.
const PLAYABLE: &[&str] = &[
    "bframes.mp4",
    "faststart.mp4",
    "nobframes.mp4",
    "bframes.flv",
    "indexed.flv",
];

fn run(program: &str, args: &[&str]) -> String {
    let output = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!(
            "cannot run {program} ({e}): the VOD tests make their fixtures with ffmpeg and check \
             them with ffprobe; install ffmpeg (scripts/test.sh does)"
        )
        });
    assert!(
        output.status.success(),
        "{program} {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

const FIXTURE_PREFIX: &str = "mediarouter-vod-";

/// Removes the fixture folders of earlier test runs (their process is gone).
fn remove_stale_fixtures(temp: &Path) {
    let Ok(entries) = std::fs::read_dir(temp) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name.strip_prefix(FIXTURE_PREFIX) else {
            continue;
        };
        if pid.parse::<u32>().is_ok() && !Path::new("/proc").join(pid).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// Folder holding every fixture, made once per test run.
fn fixtures() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let temp = std::env::temp_dir();
        remove_stale_fixtures(&temp);
        let dir = temp.join(format!("{FIXTURE_PREFIX}{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        for (name, options) in FIXTURES {
            let out = dir.join(name);
            let mut args = vec!["-v", "error", "-y"];
            args.extend_from_slice(INPUTS);
            args.extend_from_slice(options);
            let out_str = out.to_str().expect("utf-8 temp path");
            args.push(out_str);
            run("ffmpeg", &args);
        }
        dir
    })
}

fn fixture(name: &str) -> PathBuf {
    fixtures().join(name)
}

/// What ffprobe says about a file.
struct Probe {
    duration_ms: u64,
    video_frames: usize,
    video_keyframes: usize,
    audio_frames: usize,
}

fn probe(path: &Path) -> Probe {
    let path = path.to_str().expect("utf-8 path");
    let number = |args: &[&str]| -> String {
        let mut all = vec!["-v", "error"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["-of", "csv=p=0", path]);
        run("ffprobe", &all).trim().to_string()
    };
    let duration: f64 = number(&["-show_entries", "format=duration"])
        .parse()
        .expect("duration");
    let video_frames = number(&[
        "-count_frames",
        "-select_streams",
        "v",
        "-show_entries",
        "stream=nb_read_frames",
    ])
    .parse()
    .unwrap_or(0);
    let audio_frames = number(&[
        "-count_packets",
        "-select_streams",
        "a",
        "-show_entries",
        "stream=nb_read_packets",
    ])
    .parse()
    .unwrap_or(0);
    let flags = number(&["-select_streams", "v", "-show_entries", "packet=flags"]);
    Probe {
        duration_ms: (duration * 1000.0).round() as u64,
        video_frames,
        video_keyframes: flags.lines().filter(|l| l.starts_with('K')).count(),
        audio_frames,
    }
}

fn read_all(file: &mut VodFile) -> Vec<Frame> {
    let mut frames = Vec::new();
    while let Some(frame) = file.next_frame().expect("frame") {
        frames.push(frame);
    }
    frames
}

fn video(frames: &[Frame]) -> Vec<&Frame> {
    frames
        .iter()
        .filter(|f| f.track() == TrackKind::Video)
        .collect()
}

/// NAL units of an AVCC payload with 4-byte lengths; panics if it is not one.
fn nal_types(payload: &[u8]) -> Vec<u8> {
    let checked = to_avcc4(payload.to_vec(), 4).expect("AVCC with 4-byte lengths");
    assert_eq!(checked, payload);
    let mut types = Vec::new();
    let mut pos = 0;
    while pos < payload.len() {
        let len = u32::from_be_bytes(payload[pos..pos + 4].try_into().expect("4 bytes")) as usize;
        types.push(payload[pos + 4] & 0x1f);
        pos += 4 + len;
    }
    types
}

#[test]
fn files_match_ffprobe() {
    for name in PLAYABLE {
        let path = fixture(name);
        let expected = probe(&path);
        let mut file = VodFile::open(&path).unwrap_or_else(|e| panic!("{name}: {e}"));
        let format = if name.ends_with(".flv") {
            VodFormat::Flv
        } else {
            VodFormat::Mp4
        };
        assert_eq!(file.format(), format, "{name}");
        let info = file.info().clone();
        assert!(
            info.duration_ms.abs_diff(expected.duration_ms) <= 100,
            "{name}: duration {} ms, ffprobe {} ms",
            info.duration_ms,
            expected.duration_ms
        );
        assert_eq!((info.width, info.height), (320, 240), "{name}");
        assert_eq!(info.video_codec, Some(Codec::H264), "{name}");
        assert_eq!(info.audio_codec, Some(Codec::Aac), "{name}");
        assert!((info.frame_rate - 25.0).abs() < 0.5, "{name}: {info:?}");
        assert_eq!((info.audio_sample_rate, info.audio_channels), (44100, 1));
        assert!(info.video_bitrate_kbps > 50, "{name}: {info:?}");
        assert!(info.audio_bitrate_kbps > 20, "{name}: {info:?}");
        assert_eq!(
            info.file_size,
            std::fs::metadata(&path).expect("size").len()
        );

        let configs = file.configs();
        assert_eq!(configs.len(), 2, "{name}");
        let avc = AvcConfig::parse(&configs[0].data).expect("avcC");
        assert_eq!((configs[0].codec, avc.nal_length_size), (Codec::H264, 4));
        assert_eq!(configs[0].info.width, Some(320));
        let asc = AudioSpecificConfig::parse(&configs[1].data).expect("ASC");
        assert_eq!((configs[1].codec, asc.sample_rate), (Codec::Aac, 44100));

        let frames = read_all(&mut file);
        let videos = video(&frames);
        assert_eq!(videos.len(), expected.video_frames, "{name}: video frames");
        assert_eq!(
            frames.len() - videos.len(),
            expected.audio_frames,
            "{name}: audio frames"
        );
        assert_eq!(
            videos.iter().filter(|f| f.keyframe).count(),
            expected.video_keyframes,
            "{name}: keyframes"
        );
        assert!(videos[0].keyframe, "{name}: first video frame");
        assert!(nal_types(&videos[0].payload).contains(&5), "{name}: IDR");
        for v in &videos {
            nal_types(&v.payload);
        }
        assert_eq!(frames.iter().map(|f| f.dts_us).min(), Some(0), "{name}");
        for kind in [TrackKind::Video, TrackKind::Audio] {
            let dts: Vec<i64> = frames
                .iter()
                .filter(|f| f.track() == kind)
                .map(|f| f.dts_us)
                .collect();
            assert!(dts.windows(2).all(|w| w[0] < w[1]), "{name}: {kind:?} dts");
        }
        assert!(frames
            .iter()
            .filter(|f| f.track() == TrackKind::Audio)
            .all(|f| f.keyframe && f.cts_us == 0 && !f.payload.is_empty()));
        let with_offset = videos.iter().filter(|f| f.cts_us > 0).count();
        if name.starts_with("nobframes") {
            assert_eq!(with_offset, 0, "{name}: no B-frames, no offsets");
        } else {
            assert!(with_offset > videos.len() / 2, "{name}: B-frame offsets");
            // The first frame shows 2 frames after it is decoded (two B-frames).
            assert_eq!(videos[0].cts_us, 80_000, "{name}");
        }
    }
}

/// MP4 and FLV of the same content give the same timestamps (ffmpeg's FLV muxer applies the
/// edit lists the same way the MP4 reader does).
#[test]
fn mp4_and_flv_timestamps_agree() {
    // Per track: at equal milliseconds the two files may order audio and video differently.
    let stamps = |name: &str, kind: TrackKind| -> Vec<(i64, i32)> {
        let mut file = VodFile::open(&fixture(name)).expect("open");
        read_all(&mut file)
            .iter()
            .filter(|f| f.track() == kind)
            .map(|f| (f.dts_us / 1000, f.cts_us / 1000))
            .collect()
    };
    for kind in [TrackKind::Video, TrackKind::Audio] {
        let (mp4, flv) = (stamps("bframes.mp4", kind), stamps("bframes.flv", kind));
        assert_eq!(mp4.len(), flv.len());
        for (m, f) in mp4.iter().zip(&flv) {
            assert!(
                m.0.abs_diff(f.0) <= 1 && m.1.abs_diff(f.1) <= 1,
                "{m:?} {f:?}"
            );
        }
    }
}

#[test]
fn seek_lands_on_keyframe_at_or_before_target() {
    for name in PLAYABLE {
        let mut file = VodFile::open(&fixture(name)).expect("open");
        let all = read_all(&mut file);
        let videos = video(&all);
        let keyframes: Vec<u64> = videos
            .iter()
            .filter(|f| f.keyframe)
            .map(|f| f.dts_us as u64 / 1000)
            .collect();
        for target in [1500u64, 0, 999, 1000, 2500, 60_000] {
            // Before the first keyframe: the start of the file.
            let landing = keyframes.iter().copied().filter(|&k| k <= target).max();
            let position = file.seek(target).expect("seek");
            assert_eq!(position, landing.unwrap_or(0), "{name}: seek {target}");
            let rest = read_all(&mut file);
            let first_video = rest.iter().find(|f| f.track() == TrackKind::Video);
            let first_video = first_video.expect("video after seek");
            assert!(first_video.keyframe, "{name}");
            assert_eq!(
                first_video.dts_us as u64 / 1000,
                landing.unwrap_or(keyframes[0]),
                "{name}"
            );
            let skipped = videos.iter().take_while(|f| f.dts_us < first_video.dts_us);
            assert_eq!(video(&rest).len(), videos.len() - skipped.count(), "{name}");
            assert!(rest.iter().all(|f| f.dts_us as u64 / 1000 >= position));
            assert!(rest.iter().any(|f| f.track() == TrackKind::Audio), "{name}");
        }
        // Back to the start plays everything again.
        assert_eq!(file.seek(0).expect("seek"), 0);
        assert_eq!(read_all(&mut file).len(), all.len(), "{name}");
    }
}

#[test]
fn audio_only_and_skipped_tracks() {
    let mut file = VodFile::open(&fixture("audioonly.mp4")).expect("open");
    assert_eq!(file.info().video_codec, None);
    assert_eq!(file.info().width, 0);
    assert_eq!(file.configs().len(), 1);
    let expected = probe(&fixture("audioonly.mp4")).audio_frames;
    assert_eq!(read_all(&mut file).len(), expected);
    let position = file.seek(1500).expect("seek");
    assert!((1450..=1500).contains(&position), "{position}");
    assert_eq!(
        file.next_frame()
            .expect("frame")
            .map(|f| f.dts_us as u64 / 1000),
        Some(position)
    );

    let path = fixture("mp2audio.mp4");
    let mut file = VodFile::open(&path).expect("open");
    assert_eq!(file.info().audio_codec, None);
    assert_eq!(file.info().audio_sample_rate, 0);
    let frames = read_all(&mut file);
    assert_eq!(frames.len(), probe(&path).video_frames);
    assert!(frames.iter().all(|f| f.codec == Codec::H264));
}

#[test]
fn format_is_told_by_content() {
    let dir = fixtures().join("sniff");
    std::fs::create_dir_all(&dir).expect("dir");
    let disguised = dir.join("really-flv.mp4");
    std::fs::copy(fixture("bframes.flv"), &disguised).expect("copy");
    assert_eq!(
        VodFile::open(&disguised).expect("open").format(),
        VodFormat::Flv
    );
    let garbage = dir.join("garbage.mp4");
    std::fs::write(&garbage, b"this is not a media file at all").expect("write");
    assert!(matches!(
        VodFile::open(&garbage),
        Err(VodError::Unsupported(_))
    ));
    let empty = dir.join("empty.flv");
    std::fs::write(&empty, b"").expect("write");
    assert!(matches!(VodFile::open(&empty), Err(VodError::Truncated(_))));
    assert!(matches!(
        VodFile::open(&dir.join("missing.mp4")),
        Err(VodError::NotFound(_))
    ));
}

/// Offset of the first top-level box of this type in an MP4 file.
fn box_offset(data: &[u8], kind: &[u8; 4]) -> usize {
    let mut pos = 0;
    while pos + 8 <= data.len() {
        let size = u32::from_be_bytes(data[pos..pos + 4].try_into().expect("4")) as usize;
        if &data[pos + 4..pos + 8] == kind {
            return pos;
        }
        pos += size;
    }
    panic!("no {kind:?} box");
}

/// Opens and plays a file to the end; the error, if any.
fn play(path: &Path) -> Option<VodError> {
    let mut file = match VodFile::open(path) {
        Ok(file) => file,
        Err(e) => return Some(e),
    };
    let _ = file.seek(1500);
    let _ = file.seek(0);
    loop {
        match file.next_frame() {
            Ok(Some(_)) => {}
            Ok(None) => return None,
            Err(e) => return Some(e),
        }
    }
}

#[test]
fn truncated_files_fail_cleanly() {
    let dir = fixtures().join("cut");
    std::fs::create_dir_all(&dir).expect("dir");
    let cut = |source: &str, at: usize, label: &str| -> PathBuf {
        let data = std::fs::read(fixture(source)).expect("read");
        let path = dir.join(format!("{label}-{source}"));
        std::fs::write(&path, &data[..at]).expect("write");
        path
    };
    let end = std::fs::read(fixture("bframes.mp4")).expect("read");
    let front = std::fs::read(fixture("faststart.mp4")).expect("read");
    let (end_mdat, end_moov) = (box_offset(&end, b"mdat"), box_offset(&end, b"moov"));
    let (front_moov, front_mdat) = (box_offset(&front, b"moov"), box_offset(&front, b"mdat"));
    let cases = [
        cut("bframes.mp4", (end_mdat + end_moov) / 2, "mdat"),
        cut("bframes.mp4", end_moov + (end.len() - end_moov) / 2, "moov"),
        cut("faststart.mp4", (front_moov + front_mdat) / 2, "moov"),
        cut("faststart.mp4", (front_mdat + front.len()) / 2, "mdat"),
        cut("bframes.flv", 70_000, "middle"),
    ];
    for path in &cases {
        let error = play(path);
        assert!(
            matches!(error, Some(VodError::Truncated(_))),
            "{}: {error:?}",
            path.display()
        );
        let text = error.map(|e| e.to_string()).unwrap_or_default();
        assert!(text.starts_with("truncated media file: "), "{text}");
    }
    // Cut at any point: an error (for the FLV with an index in its metadata, possibly only when
    // playback reaches the cut), never a panic or a silent success. An FLV cut between two tags
    // is a valid, shorter FLV: those cuts may play.
    for source in ["bframes.mp4", "faststart.mp4", "bframes.flv", "indexed.flv"] {
        let data = std::fs::read(fixture(source)).expect("read");
        let boundaries: Vec<usize> = if source.ends_with(".flv") {
            flv_tags(&data).iter().map(|t| t.0).collect()
        } else {
            Vec::new()
        };
        for at in (0..data.len() - 16).step_by(997) {
            // One file per source, overwritten: the fixture folder stays small.
            let path = cut(source, at, "any");
            let error = play(&path);
            assert!(
                error.is_some() || boundaries.contains(&at),
                "{source} cut at {at} played"
            );
        }
    }
}

/// Tiny deterministic generator for byte corruption.
fn lcg(state: &mut u64) -> u64 {
    *state = state
        .wrapping_mul(6_364_136_223_846_793_005)
        .wrapping_add(1_442_695_040_888_963_407);
    *state >> 33
}

#[test]
fn corrupt_files_never_panic() {
    let dir = fixtures().join("corrupt");
    std::fs::create_dir_all(&dir).expect("dir");
    let mut state = 7u64;
    for source in ["faststart.mp4", "bframes.mp4", "bframes.flv", "indexed.flv"] {
        let data = std::fs::read(fixture(source)).expect("read");
        // Corrupt the index (moov, or the FLV head and tag headers) where it hurts most.
        let (start, len) = if source.ends_with(".mp4") {
            let moov = box_offset(&data, b"moov");
            let size = u32::from_be_bytes(data[moov..moov + 4].try_into().expect("4")) as usize;
            (moov, size)
        } else {
            (0, data.len())
        };
        for round in 0..150 {
            let mut bad = data.clone();
            for _ in 0..1 + round % 4 {
                let at = start + lcg(&mut state) as usize % len;
                bad[at] = match lcg(&mut state) % 3 {
                    0 => 0xff,
                    1 => 0,
                    _ => lcg(&mut state) as u8,
                };
            }
            let path = dir.join(source);
            std::fs::write(&path, &bad).expect("write");
            // Any outcome but a panic is fine; errors must say something.
            if let Some(e) = play(&path) {
                assert!(!e.to_string().is_empty());
            }
        }
    }
}

#[test]
fn resolve_stays_inside_the_root() {
    let base = fixtures().join("resolve");
    let root = base.join("media");
    let outside = base.join("outside");
    std::fs::create_dir_all(root.join("sub")).expect("dir");
    std::fs::create_dir_all(&outside).expect("dir");
    for file in [
        root.join("a.mp4"),
        root.join("a.flv"),
        root.join("plain"),
        root.join("sub/b.flv"),
        outside.join("secret.mp4"),
    ] {
        std::fs::write(file, b"x").expect("write");
    }
    let link = |target: &Path, name: &str| {
        let at = root.join(name);
        let _ = std::fs::remove_file(&at);
        std::os::unix::fs::symlink(target, at).expect("symlink");
    };
    link(&outside.join("secret.mp4"), "escape.mp4");
    link(&outside, "outdir");
    link(&root.join("a.mp4"), "alias.mp4");
    link(&base.join("nowhere"), "dangling.mp4");
    let root_real = root.canonicalize().expect("root");

    let ok = |name: &str| resolve(&root, name).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(ok("a"), root_real.join("a.mp4"), "NAME.mp4 before NAME.flv");
    assert_eq!(ok("a.flv"), root_real.join("a.flv"));
    assert_eq!(ok("plain"), root_real.join("plain"));
    assert_eq!(ok("sub/b"), root_real.join("sub/b.flv"));
    assert_eq!(ok("./a"), root_real.join("a.mp4"));
    assert_eq!(ok("alias"), root_real.join("a.mp4"));

    for name in [
        "../x",
        "../outside/secret",
        "sub/../a",
        "/etc/passwd",
        "escape",
        "escape.mp4",
        "outdir/secret",
    ] {
        assert!(
            matches!(resolve(&root, name), Err(VodError::Forbidden(_))),
            "{name}: {:?}",
            resolve(&root, name)
        );
    }
    for name in ["", "missing", "sub", "dangling"] {
        assert!(
            matches!(resolve(&root, name), Err(VodError::NotFound(_))),
            "{name:?}: {:?}",
            resolve(&root, name)
        );
    }
    assert!(matches!(
        resolve(&base.join("no-such-root"), "a"),
        Err(VodError::NotFound(_))
    ));
    // Messages name what was asked, never the server's folders.
    let message = resolve(&root, "escape").expect_err("refused").to_string();
    assert!(
        !message.contains(base.to_str().expect("utf-8")),
        "{message}"
    );
}

/// (offset, tag type, timestamp) of every tag of an FLV file.
fn flv_tags(data: &[u8]) -> Vec<(usize, u8, u32)> {
    let mut tags = Vec::new();
    let mut pos = 13;
    while pos + 11 <= data.len() {
        let size = u32::from_be_bytes([0, data[pos + 1], data[pos + 2], data[pos + 3]]) as usize;
        let ms = u32::from_be_bytes([data[pos + 7], data[pos + 4], data[pos + 5], data[pos + 6]]);
        tags.push((pos, data[pos] & 0x1f, ms));
        pos += 11 + size + 4;
    }
    tags
}

fn flv_index_from_metadata(file: &VodFile) -> bool {
    match &file.reader {
        Reader::Flv(flv) => flv.index_from_metadata,
        Reader::Mp4(_) => panic!("not an FLV"),
    }
}

#[test]
fn flv_index_from_metadata_is_used_and_checked() {
    assert!(flv_index_from_metadata(
        &VodFile::open(&fixture("indexed.flv")).expect("open")
    ));
    assert!(!flv_index_from_metadata(
        &VodFile::open(&fixture("bframes.flv")).expect("open")
    ));

    // Point the metadata's second keyframe (1 s) at an audio tag: the reader must notice when
    // it seeks there, index the tags itself and still land on the real keyframe.
    let mut data = std::fs::read(fixture("indexed.flv")).expect("read");
    let audio_tag = flv_tags(&data)
        .into_iter()
        .find(|&(_, kind, ms)| kind == 8 && ms > 1100)
        .expect("an audio tag")
        .0;
    let key = data
        .windows(13)
        .position(|w| w == b"filepositions")
        .expect("filepositions in onMetaData");
    // Key, strict-array marker and count, then each number is a marker and 8 bytes.
    let second = key + 13 + 5 + 9 + 1;
    data[second..second + 8].copy_from_slice(&(audio_tag as f64).to_be_bytes());
    let dir = fixtures().join("badindex");
    std::fs::create_dir_all(&dir).expect("dir");
    let path = dir.join("badindex.flv");
    std::fs::write(&path, &data).expect("write");
    let mut file = VodFile::open(&path).expect("open");
    assert!(flv_index_from_metadata(&file));
    assert_eq!(file.seek(1500).expect("seek"), 1000);
    assert!(!flv_index_from_metadata(&file), "re-indexed from the tags");
    let frame = file.next_frame().expect("frame").expect("a frame");
    assert!(frame.is_video_keyframe() && frame.dts_us == 1_000_000);
}

/// A reader moves into whatever task or thread plays it.
#[test]
fn vod_file_is_send() {
    fn send<T: Send + 'static>() {}
    send::<VodFile>();
    send::<VodError>();
}
