//! Video on demand over RTMP (#7), end to end with real clients.
//!
//! Fixtures are made by ffmpeg at test time in a temp dir that the server gets as `vod.root`:
//! H.264 (B-frames, a keyframe every second) + AAC stereo, as an MP4 with its moov at the end
//! (ffmpeg's default), an MP4 with its moov first, an FLV, and broken copies of them. The files
//! are described by ffprobe (packets, timestamps, keyframes, frame counts) and what the server
//! sends is compared with that:
//!
//! - ffmpeg and ffprobe as RTMP players see the file's duration, codecs and every video frame;
//! - a scripted RTMP player ([`vod_client::VodClient`]) sees Play.Reset, Play.Start, onMetaData,
//!   the sequence headers, then every frame with the file's timestamps and composition offsets,
//!   paced in real time after a short burst, then onPlayStatus Play.Complete and Play.Stop;
//! - pause/unpause and seek with their onStatus replies and the timestamps that follow;
//! - missing names, traversal and escaping symlinks are StreamNotFound; broken files fail with
//!   an error status while other players go on;
//! - `vod-live/NAME` is one looping live stream watched by two RTMP players and Chromium at once.

mod common;
#[path = "common/vod_client.rs"]
mod vod_client;

use common::webrtc::{args, assert_page_played, start_server, web_base, webrtc_players, Script};
use common::*;
use serde_json::Value;
use std::fs;
use std::path::{Path, PathBuf};
use std::thread::{self, sleep};
use std::time::{Duration, Instant};
use vod_client::{Msg, VodClient};

/// Frame rate of the fixtures' video.
const FIX_FPS: u32 = 25;
/// GOP length of the fixtures (a keyframe every 25 frames = 1 s).
const GOP_MS: u32 = 1000;

// ------------------------------------------------------------------------------------------------
// Fixtures
// ------------------------------------------------------------------------------------------------

/// Runs a tool to its end (killed after `timeout`); panics with its stderr unless it exits 0.
/// Returns its stdout.
fn run_ok(program: &str, args: &[String], timeout: Duration) -> String {
    let mut p = Proc::spawn(program, program, args);
    let status = p.wait_timeout(timeout);
    if status.is_none() {
        p.kill();
        panic!(
            "{program} {args:?} still running after {timeout:?}: {}",
            p.stderr()
        );
    }
    let status = status.unwrap();
    assert!(
        status.success(),
        "{program} {args:?} failed ({status}): {}",
        tail(&p.stderr(), 30)
    );
    p.stdout()
}

/// Encodes `seconds` of testsrc2 (`size`, 25 fps) + a 440 Hz tone into `out`: H.264 High with
/// 2 B-frames and a keyframe exactly every second, AAC 44.1 kHz stereo 96 kb/s. The container
/// follows the file name (`.mp4`: moov at the end unless `extra` says otherwise; `.flv`).
fn encode(out: &Path, seconds: u32, size: &str, extra: &[&str]) {
    let mut a = strings(&["-hide_banner", "-nostdin", "-loglevel", "error", "-y"]);
    a.extend(test_pattern_input(size, FIX_FPS, 440, false, seconds));
    let x264 = ["-preset", "veryfast", "-bf", "2"];
    a.extend(h264_aac_output(&x264, FIX_FPS));
    a.extend(strings(extra));
    a.push(out.display().to_string());
    run_ok("ffmpeg", &a, secs(90));
    assert!(out.exists(), "ffmpeg made no {}", out.display());
}

/// The top-level MP4 boxes of a file: (type, offset).
fn mp4_top_boxes(path: &Path) -> Vec<(String, u64)> {
    let data = fs::read(path).expect("read mp4");
    let mut out = Vec::new();
    let mut pos = 0usize;
    while pos + 8 <= data.len() {
        let size32 = u32::from_be_bytes(data[pos..pos + 4].try_into().unwrap()) as u64;
        let kind = String::from_utf8_lossy(&data[pos + 4..pos + 8]).to_string();
        let size = if size32 == 1 && pos + 16 <= data.len() {
            u64::from_be_bytes(data[pos + 8..pos + 16].try_into().unwrap())
        } else if size32 == 0 {
            (data.len() - pos) as u64
        } else {
            size32
        };
        out.push((kind, pos as u64));
        if size < 8 {
            break;
        }
        pos += size as usize;
    }
    out
}

fn box_offset(boxes: &[(String, u64)], kind: &str) -> Option<u64> {
    boxes.iter().find(|(k, _)| k == kind).map(|(_, o)| *o)
}

/// Asserts the MP4 has its moov after (`at_end`) or before its mdat.
fn assert_moov_position(path: &Path, at_end: bool) {
    let boxes = mp4_top_boxes(path);
    let moov = box_offset(&boxes, "moov");
    let mdat = box_offset(&boxes, "mdat");
    let (moov, mdat) = match (moov, mdat) {
        (Some(a), Some(b)) => (a, b),
        _ => panic!("fixture {} lacks moov or mdat: {boxes:?}", path.display()),
    };
    assert_eq!(
        moov > mdat,
        at_end,
        "fixture {}: moov at {moov}, mdat at {mdat}",
        path.display()
    );
}

/// One packet of a file as ffprobe lists it (times in ms).
#[derive(Clone, Debug)]
struct Pkt {
    dts: f64,
    pts: f64,
    key: bool,
    size: f64,
}

/// What ffprobe says about a media file.
#[derive(Clone, Debug)]
struct FileInfo {
    path: PathBuf,
    video: Vec<Pkt>,
    audio: Vec<Pkt>,
    /// Video frames decoded by `ffprobe -count_frames`.
    video_frames: u64,
    duration_s: f64,
    size: u64,
    video_bps: f64,
    audio_bps: f64,
}

impl FileInfo {
    fn probe(path: &Path) -> FileInfo {
        let out = run_ok(
            "ffprobe",
            &strings(&[
                "-v",
                "error",
                "-count_frames",
                "-show_entries",
                "packet=codec_type,pts_time,dts_time,flags,size:stream=codec_type,nb_read_frames:format=duration,size",
                "-of",
                "json",
                &path.display().to_string(),
            ]),
            secs(60),
        );
        let v: Value = serde_json::from_str(&out)
            .unwrap_or_else(|e| panic!("ffprobe of {} not JSON ({e}): {out}", path.display()));
        let num = |x: &Value| -> Option<f64> {
            x.as_str()
                .and_then(|s| s.parse::<f64>().ok())
                .or_else(|| x.as_f64())
        };
        let mut video = Vec::new();
        let mut audio = Vec::new();
        for p in v["packets"].as_array().expect("ffprobe packets") {
            let dts = num(&p["dts_time"]).map(|t| t * 1000.0);
            let pts = num(&p["pts_time"]).map(|t| t * 1000.0);
            let pkt = Pkt {
                dts: dts.or(pts).unwrap_or(0.0),
                pts: pts.or(dts).unwrap_or(0.0),
                key: p["flags"].as_str().is_some_and(|f| f.starts_with('K')),
                size: num(&p["size"]).unwrap_or(0.0),
            };
            match p["codec_type"].as_str() {
                Some("video") => video.push(pkt),
                Some("audio") => audio.push(pkt),
                _ => {}
            }
        }
        let streams = v["streams"].as_array().expect("ffprobe streams");
        let stream = |kind: &str| {
            streams
                .iter()
                .find(|s| s["codec_type"] == kind)
                .cloned()
                .unwrap_or(Value::Null)
        };
        let vs = stream("video");
        let duration_s = num(&v["format"]["duration"]).unwrap_or(0.0);
        // Bitrates from the packet sizes over the duration, as ffprobe computes them for MP4
        // (it gives none for an FLV's streams).
        let bps = |pkts: &[Pkt]| pkts.iter().map(|p| p.size).sum::<f64>() * 8.0 / duration_s;
        let (video_bps, audio_bps) = (bps(&video), bps(&audio));
        let info = FileInfo {
            path: path.to_path_buf(),
            video,
            audio,
            video_frames: num(&vs["nb_read_frames"]).unwrap_or(0.0) as u64,
            duration_s,
            size: fs::metadata(path).map(|m| m.len()).unwrap_or(0),
            video_bps,
            audio_bps,
        };
        assert!(
            info.video.len() > 10 && info.audio.len() > 10 && info.video_frames > 10,
            "fixture {} looks wrong: {} video / {} audio packets, {} frames",
            path.display(),
            info.video.len(),
            info.audio.len(),
            info.video_frames
        );
        info
    }

    /// Video DTS relative to the first video packet, in file order.
    fn video_rel(&self) -> Vec<f64> {
        relative_dts(&self.video)
    }

    fn audio_rel(&self) -> Vec<f64> {
        relative_dts(&self.audio)
    }

    /// Index of the keyframe at or before `target_ms` (relative video DTS).
    fn keyframe_at_or_before(&self, target_ms: u32) -> usize {
        let rel = self.video_rel();
        (0..self.video.len())
            .rev()
            .find(|&i| self.video[i].key && rel[i] <= target_ms as f64 + 0.5)
            .expect("a keyframe at or before the target")
    }
}

/// DTS relative to the first packet's.
fn relative_dts(packets: &[Pkt]) -> Vec<f64> {
    let d0 = packets[0].dts;
    packets.iter().map(|p| p.dts - d0).collect()
}

/// A media root with the files the tests play.
struct Library {
    dir: TempDir,
}

impl Library {
    fn new(tag: &str) -> Library {
        let dir = TempDir::new(tag);
        fs::create_dir_all(dir.join("media")).unwrap();
        Library { dir }
    }

    fn root(&self) -> PathBuf {
        self.dir.join("media")
    }

    fn root_str(&self) -> String {
        self.root().display().to_string()
    }

    fn file(&self, name: &str) -> PathBuf {
        self.root().join(name)
    }

    /// `media/NAME.mp4`: `seconds` at 320x240, moov at the end (checked).
    fn mp4(&self, name: &str, seconds: u32) -> FileInfo {
        self.mp4_with(name, seconds, &[])
    }

    /// `media/NAME.mp4` (moov at the end) encoded with `extra` output options.
    fn mp4_with(&self, name: &str, seconds: u32, extra: &[&str]) -> FileInfo {
        self.mp4_file(name, seconds, extra, true)
    }

    /// `media/NAME.mp4` with its moov first (`-movflags +faststart`).
    fn mp4_faststart(&self, name: &str, seconds: u32) -> FileInfo {
        self.mp4_file(name, seconds, &["-movflags", "+faststart"], false)
    }

    /// `media/NAME.mp4` at 320x240 with `extra` output options, its moov where it should be.
    fn mp4_file(&self, name: &str, seconds: u32, extra: &[&str], moov_at_end: bool) -> FileInfo {
        let p = self.file(&format!("{name}.mp4"));
        encode(&p, seconds, "320x240", extra);
        assert_moov_position(&p, moov_at_end);
        FileInfo::probe(&p)
    }

    /// `media/NAME.flv` at `size`.
    fn flv(&self, name: &str, seconds: u32, size: &str) -> FileInfo {
        let p = self.file(&format!("{name}.flv"));
        encode(&p, seconds, size, &["-f", "flv"]);
        FileInfo::probe(&p)
    }
}

// ------------------------------------------------------------------------------------------------
// Clients
// ------------------------------------------------------------------------------------------------

/// Plays `url` with ffmpeg for `seconds` or to its end (None, no `-t`: the server's Play.Stop
/// ends it), decoding every frame (`-fps_mode passthrough`, so nothing is dropped or duplicated)
/// to framecrc.
fn spawn_ffmpeg_player(url: &str, seconds: Option<u32>) -> Proc {
    let passthrough = ["-fps_mode", "passthrough"];
    spawn_framecrc_player("ffmpeg-vod-player", url, seconds, &passthrough)
}

/// ffmpeg plays `vod/clip` to its end (killed after 30 s).
fn ffmpeg_play_clip(server: &Server) -> Played {
    let proc_ = spawn_ffmpeg_player(&server.url_app("vod", "clip"), None);
    finish_framecrc_player(proc_, secs(30))
}

/// ffprobe of an RTMP URL: format duration and the streams.
fn probe_url(url: &str) -> Value {
    let out = run_ok(
        "ffprobe",
        &strings(&[
            "-v",
            "error",
            "-rw_timeout",
            "15000000",
            "-show_entries",
            "format=duration:stream=codec_type,codec_name,width,height,sample_rate,channels",
            "-of",
            "json",
            url,
        ]),
        secs(40),
    );
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("ffprobe {url}: not JSON ({e}): {out}"))
}

fn vod_player(server: &Server, app: &str, name: &str) -> VodClient {
    VodClient::player(server.rtmp_port, app, name, &format!("{app}/{name}"))
        .unwrap_or_else(|e| panic!("RTMP player {app}/{name}: {e}"))
}

/// Index of the first message at or after `from` matching `pred` (already received).
fn find(c: &VodClient, from: usize, pred: impl Fn(&Msg) -> bool) -> Option<usize> {
    (from..c.log.len()).find(|&i| pred(&c.log[i].msg))
}

/// Reads until Play.Stop (and then a little more, for an onPlayStatus that follows it), the
/// close, or `timeout`. Returns the index of Play.Stop.
fn play_to_stop(c: &mut VodClient, from: usize, timeout: Duration) -> Option<usize> {
    let stop = c.wait_status(from, "NetStream.Play.Stop", timeout);
    c.read_for(ms(500));
    stop
}

/// Compares timestamps received with the file's (relative, ms), each within 1.5 ms.
fn compare_ts(what: &str, got: &[u32], want: &[f64]) -> Result<(), String> {
    let n = got.len().min(want.len());
    for i in 0..n {
        if (got[i] as f64 - want[i]).abs() > 1.5 {
            let lo = i.saturating_sub(3);
            return Err(format!(
                "{what}: frame {i} has timestamp {} ms, the file says {:.1} ms \
                 (received {:?}, file {:?} around there)",
                got[i],
                want[i],
                &got[lo..(i + 4).min(got.len())],
                &want[lo..(i + 4).min(want.len())]
            ));
        }
    }
    if got.len() != want.len() {
        return Err(format!(
            "{what}: {} frames received, the file has {} (last received {:?}, file ends with {:?})",
            got.len(),
            want.len(),
            got.last(),
            want.last()
        ));
    }
    Ok(())
}

/// A player of `vod/clip` on a thread of its own, playing it to Play.Stop while a test does
/// something else to the server.
struct GoodPlayer(thread::JoinHandle<(usize, bool, String)>);

impl GoodPlayer {
    fn start(port: u16) -> GoodPlayer {
        GoodPlayer(thread::spawn(move || {
            let mut c = VodClient::player(port, "vod", "clip", "good").expect("good player");
            let stop = play_to_stop(&mut c, 0, secs(30));
            (
                c.video_frames(0, c.log.len()).len(),
                stop.is_some(),
                c.describe(0),
            )
        }))
    }

    /// Asserts the player reached Play.Stop with every video frame of `clip`.
    fn assert_played_to_the_end(self, clip: &FileInfo, who: &str) {
        let (frames, stopped, seen) = self.0.join().expect("good player thread");
        assert!(stopped, "{who} did not reach Play.Stop: {seen}");
        assert_eq!(
            frames,
            clip.video.len(),
            "{who} got {frames} video frames of {}: {seen}",
            clip.video.len()
        );
    }
}

fn status_codes(c: &VodClient) -> Vec<String> {
    c.log
        .iter()
        .filter_map(|r| match &r.msg {
            Msg::Status { code, .. } => Some(code.clone()),
            _ => None,
        })
        .collect()
}

// ------------------------------------------------------------------------------------------------
// Tests
// ------------------------------------------------------------------------------------------------

/// ffprobe over RTMP sees each file's duration and codecs, and ffmpeg decodes exactly the file's
/// video frames (ffprobe -count_frames on the file) and its audio, from an MP4 with its moov at
/// the end and from an FLV, three players at once, each taking at least ~2.5 s for 4 s of media
/// (paced, not dumped) and ending by itself when the file ends.
#[test]
fn ffmpeg_and_ffprobe_play_mp4_and_flv_files_with_duration_codecs_and_every_frame() {
    let lib = Library::new("vod-ffmpeg");
    let clip = lib.mp4("clip", 4);
    let other = lib.flv("other", 4, "256x144");
    let server = Server::start(&[("vod.root", &lib.root_str())]);

    let cases = [("clip", &clip, 320u64, 240u64), ("other", &other, 256, 144)];
    // Every player at once (one reader each), plus a second player of the same file.
    let players: Vec<(&str, &FileInfo, Proc)> = cases
        .iter()
        .map(|(name, info, _, _)| {
            (
                *name,
                *info,
                spawn_ffmpeg_player(&server.url_app("vod", name), None),
            )
        })
        .chain(std::iter::once((
            "clip (second player)",
            &clip,
            spawn_ffmpeg_player(&server.url_app("vod", "clip"), None),
        )))
        .collect();

    for (name, info, w, h) in cases {
        let url = server.url_app("vod", name);
        let v = probe_url(&url);
        let duration = v["format"]["duration"]
            .as_str()
            .and_then(|s| s.parse::<f64>().ok())
            .unwrap_or_else(|| panic!("ffprobe {url}: no duration: {v}"));
        assert!(
            (duration - info.duration_s).abs() <= 0.25,
            "ffprobe {url}: duration {duration} s, the file lasts {} s: {v}",
            info.duration_s
        );
        let streams = v["streams"].as_array().cloned().unwrap_or_default();
        let video = streams.iter().find(|s| s["codec_type"] == "video");
        let audio = streams.iter().find(|s| s["codec_type"] == "audio");
        let video = video.unwrap_or_else(|| panic!("ffprobe {url}: no video stream: {v}"));
        let audio = audio.unwrap_or_else(|| panic!("ffprobe {url}: no audio stream: {v}"));
        assert_eq!(video["codec_name"], "h264", "ffprobe {url}: {v}");
        assert_eq!(
            (video["width"].as_u64(), video["height"].as_u64()),
            (Some(w), Some(h)),
            "ffprobe {url}: {v}"
        );
        assert_eq!(audio["codec_name"], "aac", "ffprobe {url}: {v}");
        assert_eq!(audio["sample_rate"], "44100", "ffprobe {url}: {v}");
        assert_eq!(audio["channels"].as_u64(), Some(2), "ffprobe {url}: {v}");
    }

    for (name, info, proc_) in players {
        let played = finish_framecrc_player(proc_, secs(40));
        assert!(
            played.status.is_some(),
            "ffmpeg player of vod/{name} still running 40 s after its start (no Play.Stop?): {played:?}"
        );
        assert!(
            played.success(),
            "ffmpeg player of vod/{name} failed: {played:?}"
        );
        assert_eq!(
            played.video,
            info.video_frames,
            "ffmpeg decoded {} video frames from vod/{name}, ffprobe -count_frames counts {} in {}",
            played.video,
            info.video_frames,
            info.path.display()
        );
        let file_audio = info.audio.len() as u64;
        assert!(
            played.audio + 2 >= file_audio && played.audio <= file_audio + 1,
            "ffmpeg decoded {} audio frames from vod/{name}, the file has {file_audio} packets",
            played.audio
        );
        let errors = played.error_lines();
        assert!(errors.is_empty(), "vod/{name}: decode errors: {errors:?}");
        assert!(
            played.elapsed >= ms(2500),
            "vod/{name}: 4 s of media played out in {:?}: not paced in real time",
            played.elapsed
        );
    }
}

/// A scripted player of the MP4 (moov at the end) gets Play.Reset, Play.Start, onMetaData (an
/// ECMA array with the file's properties), both sequence headers, then every video frame with
/// the file's DTS (from 0) and composition offsets and all audio, paced in real time after a
/// burst; then onPlayStatus Play.Complete and Play.Stop. Also played by its full name.
#[test]
fn rtmp_player_of_mp4_gets_statuses_metadata_headers_and_file_timed_frames() {
    let lib = Library::new("vod-seq-mp4");
    let clip = lib.mp4("clip", 4);
    let server = Server::start(&[("vod.root", &lib.root_str())]);
    let a = check_full_play(&server, "clip", &clip, 320, 240);
    let b = check_full_play(&server, "clip.mp4", &clip, 320, 240);
    assert_ecma_metadata(&[a, b]);
}

/// The same for an FLV file, by its bare name and its full name.
#[test]
fn rtmp_player_of_flv_gets_statuses_metadata_headers_and_file_timed_frames() {
    let lib = Library::new("vod-seq-flv");
    let movie = lib.flv("movie", 4, "320x240");
    let server = Server::start(&[("vod.root", &lib.root_str())]);
    let a = check_full_play(&server, "movie", &movie, 320, 240);
    let b = check_full_play(&server, "movie.flv", &movie, 320, 240);
    assert_ecma_metadata(&[a, b]);
}

/// onMetaData's value must be an ECMA array (checked after everything else, so that a wrong
/// marker does not hide the other checks).
fn assert_ecma_metadata(results: &[Result<(), String>]) {
    let problems: Vec<&String> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    assert!(problems.is_empty(), "{problems:?}");
}

/// Plays a whole file and checks everything but the ECMA array marker of onMetaData, which
/// it returns as Err when wrong.
fn check_full_play(
    server: &Server,
    name: &str,
    info: &FileInfo,
    w: u32,
    h: u32,
) -> Result<(), String> {
    let label = format!("vod/{name}");
    let mut c = vod_player(server, "vod", name);
    let stop = play_to_stop(&mut c, 0, secs(25));
    let all = c.describe(0);
    let stop = stop.unwrap_or_else(|| panic!("{label}: no NetStream.Play.Stop within 25 s: {all}"));

    // Statuses and their order.
    let pos = |pred: &dyn Fn(&Msg) -> bool| find(&c, 0, pred);
    let reset = pos(&|m| m.is_status("NetStream.Play.Reset"))
        .unwrap_or_else(|| panic!("{label}: no NetStream.Play.Reset: {all}"));
    let start = pos(&|m| m.is_status("NetStream.Play.Start"))
        .unwrap_or_else(|| panic!("{label}: no NetStream.Play.Start: {all}"));
    let meta = pos(&|m| m.is_data("onMetaData"))
        .unwrap_or_else(|| panic!("{label}: no onMetaData: {all}"));
    let vhead = pos(&|m| m.is_video_header())
        .unwrap_or_else(|| panic!("{label}: no AVC sequence header: {all}"));
    let ahead = pos(&|m| m.is_audio_header())
        .unwrap_or_else(|| panic!("{label}: no AAC sequence header: {all}"));
    let first_frame =
        pos(&|m| m.is_media_frame()).unwrap_or_else(|| panic!("{label}: no media frame: {all}"));
    assert!(
        reset < start && start < meta,
        "{label}: expected Play.Reset, Play.Start, onMetaData in this order: {all}"
    );
    assert!(
        meta < vhead && meta < ahead && vhead < first_frame && ahead < first_frame,
        "{label}: expected onMetaData, then both sequence headers, before the first frame: {all}"
    );
    for r in &c.log {
        if let Msg::Status { level, code, .. } = &r.msg {
            assert_eq!(
                level, "status",
                "{label}: onStatus {code} with level {level}: {all}"
            );
        }
    }
    if let Msg::Video {
        codec_id, keyframe, ..
    } = c.log[vhead].msg
    {
        assert!(
            codec_id == 7 && keyframe,
            "{label}: AVC sequence header flags: {all}"
        );
    }
    let first_video = pos(&|m| m.is_video_frame()).unwrap();
    assert!(
        matches!(c.log[first_video].msg, Msg::Video { keyframe: true, .. }),
        "{label}: the first video frame is not a keyframe: {all}"
    );

    // onMetaData.
    let (values, ecma) = match &c.log[meta].msg {
        Msg::Data {
            values, ecma_array, ..
        } => (values.clone(), *ecma_array),
        _ => unreachable!(),
    };
    let md = values
        .first()
        .cloned()
        .unwrap_or_else(|| panic!("{label}: onMetaData without a value: {all}"));
    let n = |k: &str| {
        prop_num(&md, k).unwrap_or_else(|| panic!("{label}: onMetaData lacks number {k}: {md:?}"))
    };
    assert!(
        (n("duration") - info.duration_s).abs() <= 0.1,
        "{label}: onMetaData duration {} s, the file lasts {} s",
        n("duration"),
        info.duration_s
    );
    assert_eq!(
        (n("width"), n("height")),
        (w as f64, h as f64),
        "{label}: {md:?}"
    );
    assert!(
        (n("framerate") - FIX_FPS as f64).abs() < 0.5,
        "{label}: framerate: {md:?}"
    );
    assert_eq!(n("videocodecid"), 7.0, "{label}: {md:?}");
    assert_eq!(n("audiocodecid"), 10.0, "{label}: {md:?}");
    assert_eq!(n("audiosamplerate"), 44100.0, "{label}: {md:?}");
    assert_eq!(n("audiochannels"), 2.0, "{label}: {md:?}");
    assert_eq!(
        prop_bool(&md, "stereo"),
        Some(true),
        "{label}: stereo: {md:?}"
    );
    assert_eq!(n("filesize"), info.size as f64, "{label}: filesize: {md:?}");
    // Bitrates in kb/s, near what ffprobe computes for the file.
    let (vk, ak) = (info.video_bps / 1000.0, info.audio_bps / 1000.0);
    assert!(
        n("videodatarate") > vk * 0.6 && n("videodatarate") < vk * 1.5,
        "{label}: videodatarate {} kb/s, ffprobe says {vk:.0} kb/s: {md:?}",
        n("videodatarate")
    );
    assert!(
        n("audiodatarate") > ak * 0.6 && n("audiodatarate") < ak * 1.5,
        "{label}: audiodatarate {} kb/s, ffprobe says {ak:.0} kb/s: {md:?}",
        n("audiodatarate")
    );

    // Frames: every video frame with the file's DTS and composition offset; all audio.
    let video = c.video_frames(0, stop);
    let got_ts: Vec<u32> = video.iter().map(|v| v.1).collect();
    let rel = info.video_rel();
    assert!(
        got_ts.first().is_some_and(|&t| t <= 100),
        "{label}: video timestamps do not start at 0: {all}"
    );
    let got_rel: Vec<u32> = got_ts.iter().map(|t| t - got_ts[0]).collect();
    if let Err(e) = compare_ts(&format!("{label} video DTS"), &got_rel, &rel) {
        panic!("{e}\nsaw: {all}");
    }
    let want_cts: Vec<f64> = info.video.iter().map(|p| p.pts - p.dts).collect();
    for (i, v) in video.iter().enumerate() {
        assert!(
            (v.3 as f64 - want_cts[i]).abs() <= 1.5,
            "{label}: video frame {i} (ts {}) has composition offset {} ms, the file says {} ms",
            v.1,
            v.3,
            want_cts[i]
        );
        assert_eq!(
            v.2, info.video[i].key,
            "{label}: video frame {i} (ts {}) keyframe flag",
            v.1
        );
    }
    let audio = c.audio_frames(0, stop);
    let file_audio = info.audio_rel();
    assert!(
        audio.len() + 2 >= file_audio.len() && audio.len() <= file_audio.len(),
        "{label}: {} audio frames received, the file has {}: {all}",
        audio.len(),
        file_audio.len()
    );
    assert!(
        audio.windows(2).all(|w| w[1].1 >= w[0].1),
        "{label}: audio timestamps go backwards: {all}"
    );
    let a_last = (audio.last().unwrap().1 - audio[0].1) as f64;
    assert!(
        (a_last - file_audio.last().unwrap()).abs() <= 50.0,
        "{label}: audio spans {a_last} ms, the file's {} ms",
        file_audio.last().unwrap()
    );
    // Audio and video keep the file's relative placement (within 100 ms).
    let file_av = info.video[0].dts - info.audio[0].dts;
    let got_av = got_ts[0] as f64 - audio[0].1 as f64;
    assert!(
        (file_av - got_av).abs() <= 100.0,
        "{label}: first video minus first audio timestamp is {got_av} ms, {file_av} ms in the file"
    );

    // Pacing: a burst of about a second, then real time.
    let t0 = c.log[first_frame].at;
    let frames: Vec<(u32, Instant)> = c.log[..stop]
        .iter()
        .filter(|r| r.msg.is_media_frame())
        .map(|r| (r.msg.ts().unwrap(), r.at))
        .collect();
    let ts0 = frames[0].0 as i64;
    let max_ahead = frames
        .iter()
        .map(|(ts, at)| (*ts as i64 - ts0) - at.duration_since(t0).as_millis() as i64)
        .max()
        .unwrap();
    assert!(
        max_ahead <= 1600,
        "{label}: a frame arrived {max_ahead} ms ahead of real time (burst should be about 1 s)"
    );
    let span = frames.last().unwrap().1.duration_since(t0);
    assert!(
        span >= ms(2400) && span <= ms(info.duration_s as u64 * 1000 + 3000),
        "{label}: {} s of media arrived over {span:?}",
        info.duration_s
    );
    let burst_frame = frames
        .iter()
        .rev()
        .find(|(ts, _)| (*ts as i64 - ts0) <= 800)
        .unwrap();
    let burst_at = burst_frame.1.duration_since(t0);
    assert!(
        burst_at <= ms(500),
        "{label}: the frame at {} ms arrived {burst_at:?} after the first: no initial burst",
        burst_frame.0
    );

    // The end: onPlayStatus Play.Complete and Play.Stop, after the last frame.
    let last_frame = (0..c.log.len())
        .rev()
        .find(|&i| c.log[i].msg.is_media_frame())
        .unwrap();
    assert!(last_frame < stop, "{label}: media after Play.Stop: {all}");
    let complete = find(&c, 0, |m| m.is_data("onPlayStatus"))
        .unwrap_or_else(|| panic!("{label}: no onPlayStatus: {all}"));
    assert!(
        complete > last_frame,
        "{label}: onPlayStatus before the last frame: {all}"
    );
    if let Msg::Data { values, .. } = &c.log[complete].msg {
        let info = values
            .first()
            .cloned()
            .unwrap_or(rml_rtmp::rml_amf0::Amf0Value::Null);
        assert_eq!(
            prop_str(&info, "code").as_deref(),
            Some("NetStream.Play.Complete"),
            "{label}: onPlayStatus {values:?}"
        );
        assert_eq!(
            prop_str(&info, "level").as_deref(),
            Some("status"),
            "{label}: {values:?}"
        );
    }
    assert!(
        find(&c, 0, |m| m.is_error()).is_none(),
        "{label}: an error status: {all}"
    );
    eprintln!(
        "[vod] {label}: {} video + {} audio frames, burst ahead {max_ahead} ms, played over {span:?}",
        video.len(),
        audio.len()
    );
    if ecma {
        Ok(())
    } else {
        Err(format!(
            "{label}: onMetaData's value is an AMF0 object (marker 0x03), not an ECMA array \
             (marker 0x08): {md:?}"
        ))
    }
}

/// pause(true) → NetStream.Pause.Notify and no media while paused; pause(false) →
/// NetStream.Unpause.Notify and the media goes on from the frame after the last one delivered:
/// over the whole session every video frame of the file arrives once, in order.
#[test]
fn pause_stops_the_media_and_unpause_resumes_where_it_stopped() {
    let lib = Library::new("vod-pause");
    let long = lib.mp4("long", 8);
    let server = Server::start(&[("vod.root", &lib.root_str())]);
    let mut c = vod_player(&server, "vod", "long");

    let start = c
        .wait_status(0, "NetStream.Play.Start", secs(10))
        .unwrap_or_else(|| panic!("no Play.Start: {}", c.describe(0)));
    // Play on until the frame at 2.5 s has arrived (about 1.5 s after the start).
    c.wait_from(start, secs(10), |m| {
        m.is_video_frame() && m.ts().is_some_and(|t| t >= 2500)
    })
    .unwrap_or_else(|| panic!("no video at 2.5 s: {}", c.describe(0)));
    let before_pause = c.video_frames(0, c.log.len());
    let pos = before_pause.last().unwrap().1;
    c.pause(true, pos).expect("send pause");
    let notify = c
        .wait_status(start, "NetStream.Pause.Notify", secs(5))
        .unwrap_or_else(|| panic!("no NetStream.Pause.Notify: {}", c.describe(0)));
    let paused_at = c.log[notify].at;
    c.read_for(ms(2000));
    let while_paused: Vec<_> = c.log[notify + 1..]
        .iter()
        .filter(|r| r.msg.is_media_frame())
        .collect();
    assert!(
        while_paused.is_empty(),
        "{} media frames arrived after Pause.Notify: {}",
        while_paused.len(),
        c.describe(notify)
    );
    assert!(
        find(&c, notify, |m| m.is_status("NetStream.Play.Stop")
            || m.is_data("onPlayStatus")
            || m.is_status("NetStream.Play.Complete"))
        .is_none(),
        "the play ended while paused: {}",
        c.describe(notify)
    );
    let last_video_before = c.video_frames(0, notify + 1).last().unwrap().1;
    let last_audio_before = c.audio_frames(0, notify + 1).last().unwrap().1;

    let unpause_from = c.log.len();
    c.pause(false, last_video_before).expect("send unpause");
    let unotify = c
        .wait_status(unpause_from, "NetStream.Unpause.Notify", secs(5))
        .unwrap_or_else(|| panic!("no NetStream.Unpause.Notify: {}", c.describe(notify)));
    let first_after = c
        .wait_from(unotify, secs(5), |m| m.is_video_frame())
        .unwrap_or_else(|| panic!("no video after unpause: {}", c.describe(notify)));
    let resumed_after = c.log[first_after].at.duration_since(paused_at);
    let ts_after = c.log[first_after].msg.ts().unwrap();
    assert!(
        ts_after > last_video_before && ts_after <= last_video_before + 2 * 1000 / FIX_FPS,
        "the last video frame before the pause was at {last_video_before} ms, the first after \
         the unpause at {ts_after} ms: not resumed where it stopped: {}",
        c.describe(notify)
    );
    assert!(resumed_after >= ms(1900), "resumed after {resumed_after:?}");

    let stop = play_to_stop(&mut c, unotify, secs(20))
        .unwrap_or_else(|| panic!("no Play.Stop after the unpause: {}", c.describe(notify)));
    let first_audio_after = c
        .audio_frames(unotify, stop)
        .first()
        .map(|a| a.1)
        .unwrap_or_else(|| panic!("no audio after the unpause: {}", c.describe(notify)));
    assert!(
        first_audio_after + 50 >= last_audio_before && first_audio_after <= last_audio_before + 200,
        "audio before the pause ended at {last_audio_before} ms, resumed at {first_audio_after} ms"
    );
    // Every video frame of the file, once, in order, over the whole session.
    let all_video: Vec<u32> = c.video_frames(0, stop).iter().map(|v| v.1).collect();
    let got_rel: Vec<u32> = all_video.iter().map(|t| t - all_video[0]).collect();
    if let Err(e) = compare_ts("video over pause/unpause", &got_rel, &long.video_rel()) {
        panic!("{e}\nsaw: {}", c.describe(0));
    }
    assert!(
        find(&c, unotify, |m| m.is_data("onPlayStatus")).is_some(),
        "no onPlayStatus at the end: {}",
        c.describe(notify)
    );
}

/// seek(ms) → NetStream.Seek.Notify, then NetStream.Play.Start, then media from the video
/// keyframe at or before the target (≤ target, > target − GOP, and exactly the file's keyframe),
/// with the file's timestamps from there; forward then backward, then on to the end.
#[test]
fn seek_lands_on_the_keyframe_at_or_before_the_target_and_continues_from_there() {
    let lib = Library::new("vod-seek");
    let long = lib.mp4("long", 10);
    let server = Server::start(&[("vod.root", &lib.root_str())]);
    let mut c = vod_player(&server, "vod", "long");
    let rel = long.video_rel();

    let start = c
        .wait_status(0, "NetStream.Play.Start", secs(10))
        .unwrap_or_else(|| panic!("no Play.Start: {}", c.describe(0)));
    c.wait_from(start, secs(10), |m| m.is_video_frame())
        .unwrap_or_else(|| panic!("no video: {}", c.describe(0)));
    c.read_for(ms(300));

    let mut from = c.log.len();
    let mut after_seek = 0;
    for (round, target) in [6300u32, 2500, 8700].into_iter().enumerate() {
        c.seek(target).expect("send seek");
        let notify = c
            .wait_status(from, "NetStream.Seek.Notify", secs(5))
            .unwrap_or_else(|| {
                panic!(
                    "seek {target}: no NetStream.Seek.Notify: {}",
                    c.describe(from)
                )
            });
        let restart = c
            .wait_status(notify, "NetStream.Play.Start", secs(5))
            .unwrap_or_else(|| {
                panic!(
                    "seek {target}: no Play.Start after Seek.Notify: {}",
                    c.describe(from)
                )
            });
        let stale = find(&c, notify, |m| m.is_media_frame()).filter(|&i| i < restart);
        assert!(
            stale.is_none(),
            "seek {target}: media between Seek.Notify and Play.Start: {}",
            c.describe(from)
        );
        let first = c
            .wait_from(restart, secs(5), |m| m.is_video_frame())
            .unwrap_or_else(|| panic!("seek {target}: no video after it: {}", c.describe(from)));
        let ts = c.log[first].msg.ts().unwrap();
        let k = long.keyframe_at_or_before(target);
        assert!(
            ts <= target && ts + GOP_MS > target,
            "seek {target}: first video timestamp {ts} ms is not within the GOP before the \
             target: {}",
            c.describe(from)
        );
        assert!(
            matches!(c.log[first].msg, Msg::Video { keyframe: true, .. }),
            "seek {target}: the first video frame ({ts} ms) is not a keyframe: {}",
            c.describe(from)
        );
        assert!(
            (ts as f64 - rel[k]).abs() <= 1.5,
            "seek {target}: first video at {ts} ms, the file's keyframe at or before it is at \
             {} ms: {}",
            rel[k],
            c.describe(from)
        );
        let audio_first = c
            .wait_from(restart, secs(5), |m| m.is_audio_frame())
            .and_then(|i| c.log[i].msg.ts())
            .unwrap_or_else(|| panic!("seek {target}: no audio after it: {}", c.describe(from)));
        assert!(
            audio_first + GOP_MS + 200 > target && audio_first <= target + 1000,
            "seek {target}: first audio after it at {audio_first} ms: {}",
            c.describe(from)
        );
        if round < 2 {
            c.read_for(ms(700));
            // Timestamps go on from the keyframe as in the file.
            let got: Vec<u32> = c
                .video_frames(restart, c.log.len())
                .iter()
                .map(|v| v.1 - ts)
                .collect();
            let want: Vec<f64> = rel[k..].iter().map(|t| t - rel[k]).collect();
            assert!(
                got.len() >= 10,
                "seek {target}: only {} frames after it",
                got.len()
            );
            if let Err(e) = compare_ts(&format!("after seek {target}"), &got, &want[..got.len()]) {
                panic!("{e}\nsaw: {}", c.describe(from));
            }
        }
        after_seek = restart;
        from = c.log.len();
        eprintln!("[vod] seek {target}: first video {ts} ms, first audio {audio_first} ms");
    }
    // After the last seek: every frame from the keyframe to the end, then the end of play.
    let stop = play_to_stop(&mut c, after_seek, secs(15)).unwrap_or_else(|| {
        panic!(
            "no Play.Stop after the last seek: {}",
            c.describe(after_seek)
        )
    });
    let video = c.video_frames(after_seek, stop);
    let k = long.keyframe_at_or_before(8700);
    let got: Vec<u32> = video.iter().map(|v| v.1 - video[0].1).collect();
    let want: Vec<f64> = rel[k..].iter().map(|t| t - rel[k]).collect();
    if let Err(e) = compare_ts("after the last seek to the end", &got, &want) {
        panic!("{e}\nsaw: {}", c.describe(after_seek));
    }
    assert!(
        find(&c, after_seek, |m| m.is_data("onPlayStatus")).is_some(),
        "no onPlayStatus at the end: {}",
        c.describe(after_seek)
    );
}

/// Missing names, `..` traversal (also percent-encoded or behind a subdirectory), absolute
/// paths and symlinks leaving the root get onStatus error NetStream.Play.StreamNotFound, never
/// a frame of the file outside the root; a file inside the root still plays afterwards, on the
/// same server, over `vod` and `vod-live` alike.
#[test]
fn missing_files_traversal_absolute_paths_and_escaping_symlinks_are_not_found() {
    let lib = Library::new("vod-traversal");
    lib.mp4_faststart("clip", 2);
    fs::create_dir_all(lib.file("sub")).unwrap();
    let secret_dir = lib.dir.join("secret");
    fs::create_dir_all(&secret_dir).unwrap();
    let secret = secret_dir.join("secret.mp4");
    fs::copy(lib.file("clip.mp4"), &secret).unwrap();
    fs::copy(lib.file("clip.mp4"), secret_dir.join("secret")).unwrap();
    std::os::unix::fs::symlink(&secret, lib.file("link.mp4")).unwrap();
    std::os::unix::fs::symlink("../secret/secret.mp4", lib.file("rellink.mp4")).unwrap();
    std::os::unix::fs::symlink(&secret_dir, lib.file("linkdir")).unwrap();
    let server = Server::start(&[
        ("vod.root", &lib.root_str()),
        ("stream.play_wait_timeout_ms", "2000"),
    ]);

    let abs = secret.display().to_string();
    let abs_bare = secret_dir.join("secret").display().to_string();
    let names: Vec<String> = vec![
        "nothere".into(),
        "nothere.mp4".into(),
        "nothere.flv".into(),
        "../secret/secret".into(),
        "../secret/secret.mp4".into(),
        "sub/../../secret/secret".into(),
        "sub/../../secret/secret.mp4".into(),
        "%2e%2e/secret/secret".into(),
        "..%2Fsecret%2Fsecret".into(),
        "..\\secret\\secret".into(),
        abs.clone(),
        abs_bare.clone(),
        abs.trim_end_matches(".mp4").to_string(),
        "link".into(),
        "link.mp4".into(),
        "rellink".into(),
        "linkdir/secret".into(),
        "linkdir/secret.mp4".into(),
    ];
    for name in &names {
        let mut c = vod_player(&server, "vod", name);
        let i = c.wait_from(0, secs(6), |m| m.is_error() || m.is_media_frame());
        let all = c.describe(0);
        let i = i.unwrap_or_else(|| panic!("vod/{name}: no error status within 6 s: {all}"));
        assert!(
            c.log[i].msg.is_status("NetStream.Play.StreamNotFound"),
            "vod/{name}: expected NetStream.Play.StreamNotFound: {all}"
        );
        c.read_for(ms(300));
        assert!(
            find(&c, 0, |m| m.is_media()
                || m.is_status("NetStream.Play.Start"))
            .is_none(),
            "vod/{name}: media or Play.Start for a refused name: {}",
            c.describe(0)
        );
    }
    // Through vod-live too: whatever the answer, never a frame of the file outside the root.
    for name in ["../secret/secret", abs.as_str(), "link"] {
        let mut c = vod_player(&server, "vod-live", name);
        c.read_for(ms(3500));
        assert!(
            find(&c, 0, |m| m.is_media()).is_none(),
            "vod-live/{name}: media from outside the root: {}",
            c.describe(0)
        );
    }

    // The server still serves files inside the root.
    let mut c = vod_player(&server, "vod", "clip");
    c.wait_from(0, secs(10), |m| m.is_video_frame())
        .unwrap_or_else(|| panic!("vod/clip after the refusals: {}", c.describe(0)));
    let played = ffmpeg_play_clip(&server);
    assert!(
        played.success() && played.video > 40,
        "ffmpeg vod/clip: {played:?}"
    );
}

/// Broken files (an MP4 cut in its mdat, an FLV cut inside a tag, an MP4 whose moov is cut
/// away, an MP4 with impossible sample sizes, random bytes, an empty file) each end their
/// playback with onStatus error NetStream.Play.Failed (or StreamNotFound when they cannot be
/// opened) with a description and no Play.Complete, and no media after it; meanwhile another
/// player of a good file on the same server plays it to the end, and one more plays it after.
#[test]
fn truncated_and_corrupt_files_fail_cleanly_while_others_keep_playing() {
    let lib = Library::new("vod-broken");
    let clip = lib.mp4("clip", 4);
    let fast = lib.mp4_faststart("fast", 4);
    let flv = lib.flv("movie", 4, "320x240");

    // An MP4 with its moov first, cut in the middle of its mdat.
    let data = fs::read(&fast.path).unwrap();
    fs::write(lib.file("trunc_fast.mp4"), &data[..data.len() / 2]).unwrap();
    // An MP4 with its moov at the end, cut in half: no moov at all.
    let data = fs::read(&clip.path).unwrap();
    fs::write(lib.file("trunc_end.mp4"), &data[..data.len() / 2]).unwrap();
    // An FLV cut in the middle of a tag's body past its middle.
    let data = fs::read(&flv.path).unwrap();
    let cut = flv_cut_inside_tag(&data, data.len() / 2);
    fs::write(lib.file("trunc.flv"), &data[..cut]).unwrap();
    // An MP4 (moov first) whose first stsz gives every sample an impossible size.
    let mut data = fs::read(&fast.path).unwrap();
    corrupt_stsz(&mut data);
    fs::write(lib.file("corrupt.mp4"), &data).unwrap();
    fs::write(lib.file("garbage.mp4"), pseudo_random_bytes(100_000, 7)).unwrap();
    fs::write(lib.file("empty.flv"), b"").unwrap();

    let server = Server::start(&[("vod.root", &lib.root_str())]);
    let port = server.rtmp_port;

    // A good player all along.
    let good = GoodPlayer::start(port);
    sleep(ms(300));

    for name in [
        "trunc_fast",
        "trunc",
        "trunc_end",
        "corrupt",
        "garbage",
        "empty",
    ] {
        let mut c = vod_player(&server, "vod", name);
        let err = c.wait_from(0, secs(15), |m| m.is_error());
        let all = c.describe(0);
        let err = err.unwrap_or_else(|| panic!("vod/{name}: no error status within 15 s: {all}"));
        let (code, description) = match &c.log[err].msg {
            Msg::Status {
                code, description, ..
            } => (code.clone(), description.clone()),
            _ => unreachable!(),
        };
        assert!(
            code == "NetStream.Play.Failed" || code == "NetStream.Play.StreamNotFound",
            "vod/{name}: error status {code}: {all}"
        );
        assert!(
            !description.trim().is_empty(),
            "vod/{name}: {code} without a description: {all}"
        );
        assert!(
            find(&c, 0, |m| m.is_data("onPlayStatus")
                || m.is_status("NetStream.Play.Complete"))
            .is_none(),
            "vod/{name}: a broken file reported as complete: {all}"
        );
        c.read_for(ms(1000));
        let after = find(&c, err + 1, |m| m.is_media_frame());
        assert!(
            after.is_none(),
            "vod/{name}: media after {code}: {}",
            c.describe(0)
        );
        let frames = c.video_frames(0, c.log.len()).len();
        assert!(
            frames < fast.video.len(),
            "vod/{name}: {frames} video frames from a broken file"
        );
        eprintln!("[vod] {name}: {code} ({description}) after {frames} video frames");
    }

    good.assert_played_to_the_end(&clip, "the good player");
    let played = ffmpeg_play_clip(&server);
    assert!(
        played.success(),
        "ffmpeg after the broken files: {played:?}"
    );
    assert_eq!(
        played.video, clip.video_frames,
        "ffmpeg after the broken files: {played:?}"
    );
}

/// A file that is cut short while it plays (it passed every check when it was opened) ends
/// that playback with onStatus error NetStream.Play.Failed and a description, after some of
/// its frames and without Play.Complete; another player of another file goes on to its end.
#[test]
fn file_cut_short_while_playing_ends_with_play_failed() {
    let lib = Library::new("vod-shrink");
    let doomed = lib.mp4("doomed", 8);
    let clip = lib.mp4_faststart("clip", 4);
    let server = Server::start(&[("vod.root", &lib.root_str())]);
    let port = server.rtmp_port;
    let good = GoodPlayer::start(port);

    let mut c = vod_player(&server, "vod", "doomed");
    c.wait_from(0, secs(10), |m| m.is_video_frame())
        .unwrap_or_else(|| panic!("vod/doomed: no video: {}", c.describe(0)));
    // Cut the file to 40 % (its moov is at the end: the index is already read; the frames past
    // the cut, about 3 s in, cannot be).
    let size = fs::metadata(&doomed.path).unwrap().len();
    fs::OpenOptions::new()
        .write(true)
        .open(&doomed.path)
        .and_then(|f| f.set_len(size * 2 / 5))
        .expect("truncate the playing file");
    let cut_at = c.log.len();
    let err = c.wait_from(0, secs(15), |m| {
        m.is_error() || m.is_status("NetStream.Play.Stop") || m.is_data("onPlayStatus")
    });
    let all = c.describe(0);
    let err = err.unwrap_or_else(|| panic!("vod/doomed: no error status within 15 s: {all}"));
    assert!(
        c.log[err].msg.is_status("NetStream.Play.Failed"),
        "vod/doomed cut short while playing: expected NetStream.Play.Failed first: {all}"
    );
    if let Msg::Status { description, .. } = &c.log[err].msg {
        assert!(
            !description.trim().is_empty(),
            "Play.Failed without a description: {all}"
        );
    }
    c.read_for(ms(1000));
    assert!(
        find(&c, err + 1, |m| m.is_media_frame()).is_none(),
        "vod/doomed: media after Play.Failed: {}",
        c.describe(0)
    );
    let frames = c.video_frames(0, c.log.len()).len();
    assert!(
        frames > 0 && frames < doomed.video.len() * 3 / 4,
        "vod/doomed: {frames} of {} video frames before the failure (cut at message {cut_at}): {}",
        doomed.video.len(),
        c.describe(0)
    );
    eprintln!(
        "[vod] doomed: {} after {frames} video frames",
        c.describe(err)
    );

    good.assert_played_to_the_end(&clip, "the other player");
}

/// A WebRTC viewer (Chromium through the SDK) plays a file under `vod/NAME` too: H.264 decoded
/// and growing, AAC turned into Opus.
#[test]
fn vod_name_plays_in_chromium_over_webrtc() {
    let lib = Library::new("vod-webrtc");
    lib.mp4_with("clip", 4, &["-bf", "0", "-profile:v", "baseline"]);
    let server = start_server(&[("vod.root", &lib.root_str())]);
    let result = common::webrtc::run_script(
        "play.mjs",
        &args(&[
            "--base",
            &web_base(&server),
            "--name",
            "vod/clip",
            "--play-ms",
            "3000",
            "--first-frame-timeout-ms",
            "30000",
            "--deadline-ms",
            "90000",
        ]),
        secs(100),
    );
    assert_chromium_played(&result["pages"][0], "vod/clip", 3);
}

/// Chromium played `name` over WebRTC (video, and audio turned into Opus) and decoded at least
/// 60 % of the frames of `seconds` of it.
fn assert_chromium_played(page: &Value, name: &str, seconds: u64) {
    assert_page_played(&format!("Chromium {name}"), page, "opus", true);
    let growth = page["framesGrowth"].as_i64().unwrap_or(0);
    assert!(
        growth as f64 >= seconds as f64 * FIX_FPS as f64 * 0.6,
        "Chromium decoded {growth} frames in {seconds} s of {name}: {}",
        page["statsEnd"]
    );
}

/// An offset inside the body of the FLV tag that contains `near` (or the next tag).
fn flv_cut_inside_tag(data: &[u8], near: usize) -> usize {
    assert!(data.len() > 13 && &data[..3] == b"FLV", "not an FLV");
    let header = u32::from_be_bytes(data[5..9].try_into().unwrap()) as usize;
    let mut pos = header + 4;
    while pos + 11 <= data.len() {
        let size = u32::from_be_bytes([0, data[pos + 1], data[pos + 2], data[pos + 3]]) as usize;
        let end = pos + 11 + size;
        if end >= near && size > 16 {
            return pos + 11 + size / 2;
        }
        pos = end + 4;
    }
    panic!("no FLV tag around offset {near}");
}

/// Gives every entry of the first `stsz` box a size far beyond the file.
fn corrupt_stsz(data: &mut [u8]) {
    let at = data
        .windows(4)
        .position(|w| w == b"stsz")
        .expect("an stsz box");
    // size(4) 'stsz' version+flags(4) sample_size(4) sample_count(4) entries...
    let count = u32::from_be_bytes(data[at + 12..at + 16].try_into().unwrap()) as usize;
    assert!(count > 0, "stsz with a constant sample size");
    for i in 0..count {
        let o = at + 16 + 4 * i;
        data[o..o + 4].copy_from_slice(&0x7fff_fff0u32.to_be_bytes());
    }
}

/// `vod-live/NAME` is one live stream made of the file, looping: two RTMP players (a scripted
/// one and ffmpeg) and a Chromium WebRTC viewer watch it at once; REST shows the one stream with
/// all three; each player watches longer than the file and keeps getting frames across the loop,
/// with timestamps that keep increasing; ffmpeg and Chromium decode video all along.
#[test]
fn vod_live_loops_the_file_for_two_rtmp_players_and_a_chromium_viewer_at_once() {
    let lib = Library::new("vod-live");
    let clip = lib.mp4_with("clip", 4, &["-bf", "0", "-profile:v", "baseline"]);
    let server = start_server(&[("vod.root", &lib.root_str())]);
    const WATCH_S: u64 = 7;

    let mut script = Script::spawn(
        "play.mjs",
        &args(&[
            "--base",
            &web_base(&server),
            "--name",
            "vod-live/clip",
            "--play-ms",
            &(WATCH_S * 1000).to_string(),
            "--first-frame-timeout-ms",
            "30000",
            "--deadline-ms",
            "120000",
        ]),
    );
    let playing = script.wait_stderr("status=PLAYING", secs(60));
    let port = server.rtmp_port;
    let scripted = thread::spawn(move || {
        let mut c =
            VodClient::player(port, "vod-live", "clip", "vod-live scripted").expect("RTMP player");
        c.read_for(secs(WATCH_S));
        c
    });
    let ffmpeg = spawn_ffmpeg_player(&server.url_app("vod-live", "clip"), Some(WATCH_S as u32));

    // REST: one stream vod-live/clip with the three viewers.
    let body = serde_json::json!({"name": "clip", "app": "vod-live"}).to_string();
    let deadline = Instant::now() + secs(WATCH_S - 1);
    let mut last = Value::Null;
    let mut seen_all = false;
    while Instant::now() < deadline {
        let (status, v) = server.rest("stream/find", &body);
        if status == 200 && rtmp_players(Some(&v)) == 2 && webrtc_players(Some(&v)) == 1 {
            seen_all = true;
            break;
        }
        last = serde_json::json!({"status": status, "body": v});
        sleep(ms(200));
    }

    let c = scripted.join().expect("scripted player thread");
    let played = finish_framecrc_player(ffmpeg, secs(WATCH_S + 30));
    let result = script.finish(secs(120));
    let page = &result["pages"][0];
    assert!(playing, "Chromium never reported PLAYING: {}", page);

    // The scripted RTMP player.
    let all = c.describe(0);
    assert!(
        find(&c, 0, |m| m.is_status("NetStream.Play.Stop")
            || m.is_data("onPlayStatus")
            || m.is_error())
        .is_none(),
        "vod-live player: the live stream stopped or failed: {all}"
    );
    let video = c.video_frames(0, c.log.len());
    let min_frames = (WATCH_S as f64 * FIX_FPS as f64 * 0.75) as usize;
    assert!(
        video.len() >= min_frames && video.len() > clip.video.len(),
        "vod-live player: {} video frames in {WATCH_S} s of a {} s file (expected >= {min_frames} \
         and more than the file's {}): {all}",
        video.len(),
        clip.duration_s,
        clip.video.len()
    );
    for w in video.windows(2) {
        assert!(
            w[1].1 > w[0].1 && w[1].1 <= w[0].1 + 500,
            "vod-live player: video timestamp {} ms followed by {} ms: {all}",
            w[0].1,
            w[1].1
        );
    }
    let span = video.last().unwrap().1 - video[0].1;
    assert!(
        span as f64 > clip.duration_s * 1000.0 + 500.0,
        "vod-live player: timestamps span {span} ms, not past the file's end: {all}"
    );
    let audio = c.audio_frames(0, c.log.len());
    assert!(
        audio.len() as f64 >= WATCH_S as f64 * AAC_FPS * 0.7
            && audio.windows(2).all(|w| w[1].1 >= w[0].1),
        "vod-live player: {} audio frames, timestamps increasing: {all}",
        audio.len()
    );

    // ffmpeg decodes across the loop.
    assert!(played.success(), "ffmpeg vod-live player: {played:?}");
    let min_v = (WATCH_S as f64 * FIX_FPS as f64 * 0.75) as u64;
    assert!(
        played.video >= min_v && played.video > clip.video_frames,
        "ffmpeg decoded {} video frames of vod-live/clip in {WATCH_S} s (expected >= {min_v}): \
         {played:?}",
        played.video
    );
    let errors = played.error_lines();
    assert!(
        errors.is_empty(),
        "ffmpeg vod-live player: decode errors {errors:?}"
    );

    // Chromium over WebRTC.
    assert_chromium_played(page, "vod-live/clip", WATCH_S);

    assert!(
        seen_all,
        "REST never showed vod-live/clip with 2 RTMP and 1 WebRTC players; last: {last}"
    );
}

/// `vod.app` and `vod.live_app` rename the applications: the new names play the files, and
/// `vod` is then an ordinary live application (nobody publishes there: StreamNotFound after the
/// play wait).
#[test]
fn vod_app_names_come_from_the_settings() {
    let lib = Library::new("vod-apps");
    lib.mp4_faststart("clip", 3);
    let server = Server::start(&[
        ("vod.root", &lib.root_str()),
        ("vod.app", "films"),
        ("vod.live_app", "films-live"),
        ("stream.play_wait_timeout_ms", "1500"),
    ]);
    for app in ["films", "films-live"] {
        let mut c = vod_player(&server, app, "clip");
        c.wait_from(0, secs(10), |m| m.is_video_frame())
            .unwrap_or_else(|| panic!("{app}/clip: no video: {}", c.describe(0)));
    }
    let mut c = vod_player(&server, "vod", "clip");
    let i = c.wait_from(0, secs(8), |m| {
        m.is_status("NetStream.Play.StreamNotFound") || m.is_media()
    });
    assert!(
        i.is_some_and(|i| c.log[i].msg.is_status("NetStream.Play.StreamNotFound")),
        "vod/clip with vod.app = films: expected StreamNotFound after the play wait, saw {:?} / {}",
        status_codes(&c),
        c.describe(0)
    );
}
