//! WebRTC publishing from the browser (issue #5), end to end with real clients: headless
//! Chromium (Debian's `chromium` driven by playwright-core) publishes its fake camera and
//! microphone through the browser SDK (`Stream.publish()` in `web/sdk/mediarouter.js`, loaded
//! from the server's own web port) and the signalling WebSocket `/ws` (`web/sdk/PROTOCOL.md`,
//! "Publishing a stream over WebRTC"); other Chromium pages play it back over WebRTC, ffmpeg
//! plays it over RTMP (H.264 passed through, Opus transcoded to AAC), and the REST API describes
//! it meanwhile. The Video Chat (`chat.html`) and Two-Way Streaming (`twoway.html`) pages are
//! clicked through as a user does.
//!
//! The browser side is `tests/browser/publish.mjs` (one mode per scenario; parameters on the
//! command line, one JSON line of measured results on stdout, diagnostics on stderr). Every
//! server here gets its own small UDP port range and host candidates on 127.0.0.1 only
//! (`common::webrtc`).

mod common;

use common::webrtc::*;
use common::*;
use serde_json::Value;
use std::time::Duration;

fn publish_args(server: &Server, name: &str, mode: &str, extra: &[&str]) -> Vec<String> {
    scenario_args(server, name, &[&["--mode", mode][..], extra].concat())
}

/// Runs publish.mjs in `mode` to its end (killed after `timeout`) and returns its result.
fn run_publish(
    server: &Server,
    name: &str,
    mode: &str,
    extra: &[&str],
    timeout: Duration,
) -> Value {
    run_script(
        "publish.mjs",
        &publish_args(server, name, mode, extra),
        timeout,
    )
}

/// Starts publish.mjs in `mode` with a hold (`--until-file`; `extra` gives its `--hold-ms`) and
/// waits until the scenario holds; the hold ends with `HoldFile::release`.
fn spawn_holding(server: &Server, name: &str, mode: &str, extra: &[&str]) -> (Script, HoldFile) {
    let hold = HoldFile::new();
    let until = hold.arg();
    let all = [&["--until-file", until.as_str()][..], extra].concat();
    let mut script = Script::spawn("publish.mjs", &publish_args(server, name, mode, &all));
    script.expect_stderr(
        "phase=holding",
        secs(60),
        "the scenario never reached its hold",
    );
    (script, hold)
}

/// Asserts REST lists no stream `name` (within 10 s).
fn assert_gone(server: &Server, name: &str, failure: &str) {
    assert_stream(server, name, secs(10), |v| v.is_none(), failure);
}

/// A file whose appearance ends a scenario's hold (`--until-file`).
struct HoldFile {
    _dir: TempDir,
    path: std::path::PathBuf,
}

impl HoldFile {
    fn new() -> HoldFile {
        let dir = TempDir::new("publish-hold");
        let path = dir.join("release");
        HoldFile { _dir: dir, path }
    }

    fn arg(&self) -> String {
        self.path.display().to_string()
    }

    fn release(&self) {
        write_file(&self.path, "go\n");
    }
}

/// Asserts that a page of publish.mjs published: PUBLISHING, H.264 with packetization-mode=1
/// and Opus on the wire, frames sent.
fn assert_published(label: &str, page: &Value) {
    let statuses = status_list(page);
    let publish = &page["publish"];
    assert_eq!(
        publish["status"], "PUBLISHING",
        "{label}: publish() did not reach PUBLISHING: {publish}; statuses {statuses:?}; errors {}",
        page["errors"]
    );
    assert_eq!(
        publish["previewAttached"], true,
        "{label}: the local preview is not on the display: {publish}"
    );
    let local: Vec<&str> = publish["local"]
        .as_array()
        .map(|a| a.iter().filter_map(|t| t["kind"].as_str()).collect())
        .unwrap_or_default();
    assert!(
        local.contains(&"video") && local.contains(&"audio"),
        "{label}: local tracks {local:?}"
    );
}

/// Asserts the sender statistics of a publishing page: H.264 (packetization-mode=1) and Opus
/// chosen, frames sent.
fn assert_outbound(label: &str, stats: &Value) {
    assert_eq!(
        stats["videoCodec"], "H264",
        "{label}: outbound video: {stats}"
    );
    let fmtp = stats["videoFmtp"].as_str().unwrap_or_default();
    assert!(
        fmtp.contains("packetization-mode=1"),
        "{label}: outbound H.264 format {fmtp:?}"
    );
    assert_eq!(
        stats["audioCodec"], "opus",
        "{label}: outbound audio: {stats}"
    );
    assert!(
        stats["framesSent"].as_u64().unwrap_or(0) > 0,
        "{label}: no frame sent: {stats}"
    );
}

/// The local tracks the SDK acquired are stopped once the publish ended.
fn assert_tracks_ended(label: &str, states: &Value) {
    let states = states.as_array().cloned().unwrap_or_default();
    assert!(
        !states.is_empty() && states.iter().all(|s| s == "ended"),
        "{label}: local tracks after the end: {states:?}"
    );
}

/// Asserts that the publish of a page of publish.mjs was refused: FAILED with a reason that
/// contains `reason_part`, never PUBLISHING, and the local tracks (`tracks`) ended. Returns the
/// reason.
fn assert_refused<'a>(label: &str, page: &'a Value, reason_part: &str, tracks: &Value) -> &'a str {
    let statuses = status_list(page);
    assert_eq!(page["status"], "FAILED", "{label}: {statuses:?}");
    let reason = page["publish"]["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains(reason_part),
        "{label}: FAILED reason {reason:?}, expected {reason_part:?}"
    );
    assert!(
        !statuses.iter().any(|s| s == "PUBLISHING"),
        "{label} was PUBLISHING: {statuses:?}"
    );
    assert_tracks_ended(label, tracks);
    reason
}

/// Asserts that a page of the duplicate scenario went on after the refused duplicate: still
/// `status`, and its frames (`growth`: sent or decoded since) grew.
fn assert_goes_on(label: &str, page: &Value, status: &str, growth: &str) {
    assert_eq!(
        page["statusAfter"],
        status,
        "{label} after the refused duplicate: {:?}",
        status_list(page)
    );
    assert!(
        page[growth].as_i64().unwrap_or(0) > 0,
        "{label}: no more frames after the refused duplicate ({growth}): {page}"
    );
}

// ------------------------------------------------------------------------------------------------
// a. Publish, play back in a second page, REST
// ------------------------------------------------------------------------------------------------

/// Chromium publishes; a second page plays it over WebRTC: H.264 decoded and growing, Opus audio
/// samples. Meanwhile REST shows the stream with a webrtc publisher, H.264 with its size, Opus,
/// an input bitrate and the WebRTC viewer. After both stop, REST has no stream. Prints the time
/// from play() to the first decoded frame.
#[test]
fn chromium_publishes_and_a_second_page_plays_it() {
    let server = start_server(&[]);
    let (script, hold) = spawn_holding(
        &server,
        "doctor",
        "publish-play",
        &[
            "--play-ms",
            "3000",
            "--hold-ms",
            "30000",
            "--deadline-ms",
            "100000",
        ],
    );
    let (ok, rest) = server.wait_stream("doctor", secs(10), |v| {
        v.is_some_and(|v| {
            v["bitrate_in_kbps"].as_f64().unwrap_or(0.0) > 0.0
                && webrtc_players(Some(v)) == 1
                && v["audio"]["codec"].is_string()
        })
    });
    hold.release();
    let result = script.finish(secs(100));
    assert!(
        ok,
        "REST while publishing and played: no bitrate, audio or viewer: {rest:?}"
    );
    let s = rest.unwrap();
    eprintln!("[webrtc_publish] REST while publishing: {s}");
    assert_eq!(s["status"], "PUBLISHING", "{s}");
    assert_eq!(s["publisher"]["protocol"], "webrtc", "{s}");
    assert_eq!(s["video"]["codec"], "H264", "{s}");
    assert!(
        s["video"]["width"].as_u64().unwrap_or(0) > 0
            && s["video"]["height"].as_u64().unwrap_or(0) > 0,
        "REST video size: {s}"
    );
    assert_eq!(s["audio"]["codec"], "OPUS", "{s}");
    assert_eq!(s["audio"]["sample_rate"], 48000, "{s}");

    let pub_page = &result["pub"];
    assert_published("publisher", pub_page);
    assert_outbound("publisher", &pub_page["stats"]);
    assert_eq!(
        pub_page["afterStop"],
        "STOPPED",
        "publisher after stop: {:?}",
        status_list(pub_page)
    );
    assert_tracks_ended("publisher", &pub_page["localTracksAfterStop"]);

    let viewer = &result["viewer"];
    assert_page_played("viewer", viewer, "opus", true);
    let end = &viewer["statsEnd"];
    assert!(
        end["width"].as_u64().unwrap_or(0) > 0 && end["height"].as_u64().unwrap_or(0) > 0,
        "decoded size: {end}"
    );
    println!(
        "[webrtc_publish] WebRTC publish -> WebRTC play: PUBLISHING after {} ms; viewer: first \
         decoded frame {} ms after play() (frame callback {} ms), {} frames and {} audio samples \
         in {} ms, {}x{}, packets lost {}",
        pub_page["publish"]["publishMs"],
        viewer["ttffMs"],
        viewer["firstVideoFrameMs"],
        viewer["framesGrowth"],
        viewer["samplesGrowth"],
        3000,
        end["width"],
        end["height"],
        end["packetsLost"]
    );

    assert_gone(
        &server,
        "doctor",
        "REST still lists the stream after both stopped",
    );
}

/// A viewer that starts playing before the browser publishes waits (PENDING), then gets the
/// publish with its video: H.264 decoded, not only the audio.
#[test]
fn viewer_waiting_before_the_publish_gets_video() {
    let server = start_server(&[]);
    let result = run_publish(
        &server,
        "early",
        "publish-play",
        &[
            "--viewer-first",
            "--play-ms",
            "3000",
            "--deadline-ms",
            "100000",
        ],
        secs(110),
    );
    assert_published("publisher", &result["pub"]);
    let viewer = &result["viewer"];
    let statuses = status_list(viewer);
    assert!(
        statuses.first().is_some_and(|s| s == "PENDING"),
        "the viewer did not wait: {statuses:?}"
    );
    assert!(
        viewer["tracks"]
            .as_array()
            .is_some_and(|t| t.iter().any(|k| k == "video")),
        "the viewer that waited got no video track (tracks {}): the server answered without \
         video",
        viewer["tracks"]
    );
    assert_page_played("viewer that waited", viewer, "opus", true);
}

/// A viewer's keyframe requests reach the publisher: with the periodic requests pushed out of
/// the way (`webrtc.publisher_keyframe_interval_ms` = 60 s), the publishing browser receives
/// no PLI while its viewer decodes normally, and receives one (and encodes a keyframe) once the
/// viewer throws frames away and asks for a keyframe.
#[test]
fn viewer_keyframe_requests_reach_the_publisher() {
    let server = start_server(&[("webrtc.publisher_keyframe_interval_ms", "60000")]);
    let result = run_publish(
        &server,
        "keyframes",
        "keyframe",
        &[
            "--play-ms",
            "2000",
            "--drop-ms",
            "4000",
            "--deadline-ms",
            "100000",
        ],
        secs(110),
    );
    let (playing, dropping) = (&result["playing"], &result["dropping"]);
    assert!(
        playing["framesDecoded"].as_i64().unwrap_or(0) > 20,
        "the viewer did not decode normally first: {playing}"
    );
    assert_eq!(
        (
            playing["viewerPliSent"].as_i64(),
            playing["publisherPliReceived"].as_i64()
        ),
        (Some(0), Some(0)),
        "keyframe requests while nothing was lost: {playing}"
    );
    assert!(
        dropping["viewerPliSent"].as_i64().unwrap_or(0) >= 1,
        "Chromium sent no keyframe request while its frames were dropped: {dropping}"
    );
    assert!(
        dropping["publisherPliReceived"].as_i64().unwrap_or(0) >= 1,
        "the viewer's keyframe request did not reach the publisher: {dropping}"
    );
    assert!(
        dropping["publisherKeyframes"].as_i64().unwrap_or(0) >= 1,
        "the publisher encoded no keyframe after the request: {dropping}"
    );
}

// ------------------------------------------------------------------------------------------------
// b. Publish, play over RTMP (Opus -> AAC)
// ------------------------------------------------------------------------------------------------

/// Chromium publishes; ffmpeg plays the stream over RTMP: ffprobe sees H.264 and AAC, and the
/// player decodes about 4 s of video and audio frames without decoder errors.
#[test]
fn chromium_publish_plays_in_ffmpeg_over_rtmp_h264_and_aac() {
    let server = start_server(&[]);
    let (script, hold) = spawn_holding(
        &server,
        "tortoise",
        "publish",
        &[
            "--play-ms",
            "1000",
            "--hold-ms",
            "60000",
            "--deadline-ms",
            "100000",
        ],
    );
    let url = server.url("tortoise");
    let probe = ffprobe_streams(&url);
    let player = Player::spawn(&url, 4);
    let played = player.finish(secs(30));
    let (_, during) = server.wait_stream("tortoise", secs(1), |_| true);
    hold.release();
    let result = script.finish(secs(60));
    assert_published("publisher", &result["pub"]);
    assert_outbound("publisher", &result["pub"]["statsEnd"]);

    let codecs: Vec<(String, String)> = probe
        .iter()
        .map(|s| {
            (
                s["codec_type"].as_str().unwrap_or("?").to_string(),
                s["codec_name"].as_str().unwrap_or("?").to_string(),
            )
        })
        .collect();
    eprintln!("[webrtc_publish] ffprobe over RTMP: {codecs:?}; REST {during:?}");
    assert!(
        codecs.contains(&("video".into(), "h264".into())),
        "RTMP video: {codecs:?}"
    );
    assert!(
        codecs.contains(&("audio".into(), "aac".into())),
        "RTMP audio (Opus transcoded to AAC): {codecs:?}"
    );
    println!(
        "[webrtc_publish] WebRTC publish -> RTMP play (ffmpeg, 4 s): {} video frames, {} AAC \
         frames decoded",
        played.video, played.audio
    );
    // The fake camera sends about 20 fps; AAC at 48 kHz is 46.9 frames/s.
    assert!(
        played.video >= 30,
        "RTMP player decoded {} video frames in 4 s: {played:?}",
        played.video
    );
    assert!(
        played.audio >= 90,
        "RTMP player decoded {} audio frames in 4 s: {played:?}",
        played.audio
    );
    let errors = played.error_lines();
    assert!(errors.is_empty(), "RTMP player decode errors: {errors:?}");
}

/// `ffprobe -show_streams` of `url`: the stream objects (empty when ffprobe failed).
fn ffprobe_streams(url: &str) -> Vec<Value> {
    let out = std::process::Command::new("timeout")
        .args([
            "20",
            "ffprobe",
            "-v",
            "error",
            "-rw_timeout",
            "15000000",
            "-show_entries",
            "stream=codec_type,codec_name,width,height,sample_rate,channels",
            "-of",
            "json",
            url,
        ])
        .output()
        .expect("run ffprobe (run scripts/install-test-deps.sh)");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    if v["streams"].as_array().is_none() {
        eprintln!(
            "[webrtc_publish] ffprobe failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    v["streams"].as_array().cloned().unwrap_or_default()
}

// ------------------------------------------------------------------------------------------------
// c. Two-way call on the Video Chat page
// ------------------------------------------------------------------------------------------------

/// Two tabs of the Video Chat page: alice starts first (bob is not publishing: her play fails
/// with "stream not found" after the short play wait and the page tries again), bob joins 4 s
/// later. Each tab publishes and decodes the other's video and audio; Hang up stops both.
#[test]
fn video_chat_page_two_way_call() {
    let server = start_server(&[("stream.play_wait_timeout_ms", "1500")]);
    let result = run_publish(
        &server,
        "call",
        "chat",
        &[
            "--second-delay-ms",
            "4000",
            "--play-ms",
            "3000",
            "--deadline-ms",
            "120000",
        ],
        secs(130),
    );
    let pages = result["pages"].as_array().expect("pages");
    assert_eq!(pages.len(), 2);
    for page in pages {
        let label = page["label"].as_str().unwrap_or("?");
        let log = &page["page"]["log"];
        assert_eq!(
            page["publishStatus"], "PUBLISHING",
            "{label}: own publish; page {}",
            page["page"]
        );
        assert_eq!(
            page["playStatus"], "PLAYING",
            "{label}: play of the other; log {log}"
        );
        let remote = &page["remoteStats"];
        assert_eq!(
            remote["videoCodec"], "H264",
            "{label}: remote video {remote}"
        );
        assert!(
            page["remoteFramesGrowth"].as_i64().unwrap_or(0) > 0,
            "{label} decodes none of the other's video frames ({} -> {remote}); log {log}",
            page["firstRemoteStats"]
        );
        assert!(
            page["remoteSamplesGrowth"].as_i64().unwrap_or(0) > 0,
            "{label}: no audio from the other: {remote}"
        );
        assert!(
            page["page"]["remoteVideo"][0].as_u64().unwrap_or(0) > 0,
            "{label}: the remote <video> has no size: {}",
            page["page"]
        );
        assert!(
            page["page"]["localVideo"][0].as_u64().unwrap_or(0) > 0,
            "{label}: the local preview has no size: {}",
            page["page"]
        );
        assert_eq!(
            page["afterHangup"]["publish"], "STOPPED",
            "{label} after Hang up"
        );
        assert_eq!(
            page["afterHangup"]["play"], "STOPPED",
            "{label} after Hang up"
        );
        eprintln!(
            "[webrtc_publish] chat {label}: +{} remote frames, +{} samples in 3 s, {} retries",
            page["remoteFramesGrowth"], page["remoteSamplesGrowth"], page["page"]["retries"]
        );
    }
    assert!(
        pages[0]["page"]["retries"].as_u64().unwrap_or(0) >= 1,
        "alice started 4 s before bob with a 1.5 s play wait: the page should have retried; log {}",
        pages[0]["page"]["log"]
    );
    assert_gone(
        &server,
        "call_alice",
        "REST still lists alice's stream after the hang up",
    );
}

// ------------------------------------------------------------------------------------------------
// d. The publisher's tab is closed
// ------------------------------------------------------------------------------------------------

/// The publishing tab is closed (no stop message, the socket just ends): the viewer page gets
/// UNPUBLISHED at once, then STOPPED when the 3 s grace ends; REST then lists no stream.
#[test]
fn publisher_tab_closed_tells_the_viewer_and_frees_the_stream() {
    let server = start_server(&[("stream.unpublish_grace_ms", "3000")]);
    let mut script = Script::spawn(
        "publish.mjs",
        &publish_args(
            &server,
            "leaver",
            "close",
            &[
                "--play-ms",
                "2000",
                "--grace-wait-ms",
                "20000",
                "--deadline-ms",
                "100000",
            ],
        ),
    );
    script.expect_stderr("viewer status=PLAYING", secs(60), "the viewer never played");
    assert_stream(
        &server,
        "leaver",
        secs(5),
        |v| webrtc_players(v) == 1,
        "REST players.webrtc while the viewer plays",
    );
    let result = script.finish(secs(100));
    assert_published("publisher", &result["pub"]);
    let viewer = &result["viewer"];
    assert_page_played("viewer", viewer, "opus", false);
    let after: Vec<(String, u64, String)> = viewer["after"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|s| {
                    (
                        s["status"].as_str().unwrap_or("?").to_string(),
                        s["t"].as_u64().unwrap_or(0),
                        s["reason"].as_str().unwrap_or("").to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    let closed_at = viewer["closedAt"].as_u64().unwrap_or(0);
    let unpublished = after.iter().find(|s| s.0 == "UNPUBLISHED");
    let stopped = after.iter().find(|s| s.0 == "STOPPED");
    assert!(
        unpublished.is_some() && stopped.is_some(),
        "expected UNPUBLISHED then STOPPED after the publisher's tab closed: {after:?}"
    );
    let (u, s) = (unpublished.unwrap(), stopped.unwrap());
    assert!(
        u.1 <= closed_at + 5000,
        "UNPUBLISHED {} ms after the tab closed: {after:?}",
        u.1 - closed_at
    );
    assert!(
        s.1 >= u.1 + 2000,
        "STOPPED came {} ms after UNPUBLISHED, before the 3 s grace: {after:?}",
        s.1 - u.1
    );
    assert!(
        !after.iter().any(|x| x.0 == "FAILED"),
        "the viewer failed: {after:?}"
    );
    eprintln!(
        "[webrtc_publish] tab closed: UNPUBLISHED after {} ms, STOPPED ({}) after {} ms",
        u.1 - closed_at,
        s.2,
        s.1 - closed_at
    );
    assert_gone(&server, "leaver", "REST still lists the stream");
    let (status, all) = server.rest("stream/find_all", "{}");
    assert!(
        status == 404 || all.as_array().is_some_and(|a| a.is_empty()),
        "find_all after the publisher left and the viewer stopped: {status} {all}"
    );
    assert!(
        server.log().contains("WebRTC publish ended"),
        "the server did not log the end of the publish"
    );
}

// ------------------------------------------------------------------------------------------------
// e. A name in use, a codec the server does not take
// ------------------------------------------------------------------------------------------------

/// A second page publishing a name already published is refused with FAILED "name in use" (and
/// the SDK releases its camera); the first publisher goes on: its frames sent and a viewer's
/// decoded frames keep growing, both still PUBLISHING / PLAYING.
#[test]
fn duplicate_publish_is_refused_and_the_first_goes_on() {
    let server = start_server(&[]);
    let result = run_publish(
        &server,
        "lecture",
        "duplicate",
        &["--play-ms", "3000", "--deadline-ms", "100000"],
        secs(110),
    );
    assert_published("first publisher", &result["pub"]);
    let second = &result["second"];
    let reason = assert_refused(
        "second publisher",
        second,
        "name in use",
        &second["localTracksAfterFail"],
    );

    let first = &result["pub"];
    assert_goes_on(
        "first publisher",
        first,
        "PUBLISHING",
        "framesSentGrowthAfter",
    );
    let viewer = &result["viewer"];
    assert_goes_on("viewer", viewer, "PLAYING", "framesGrowthAfter");
    eprintln!(
        "[webrtc_publish] duplicate refused ({reason}); first publisher +{} frames sent, viewer \
         +{} frames decoded in 3 s after",
        first["framesSentGrowthAfter"], viewer["framesGrowthAfter"]
    );
}

/// A publish forced to VP8 (`videoCodec: 'VP8'`: the offer has no H.264) is taken: a WebRTC
/// viewer decodes VP8 (passed through) and Opus, while an RTMP player, which FLV cannot serve
/// VP8 to, is refused with NetStream.Play.Failed saying so.
#[test]
fn vp8_publish_plays_over_webrtc_and_rtmp_players_are_refused() {
    let server = start_server(&[]);
    let (script, hold) = spawn_holding(
        &server,
        "vp8cam",
        "publish-play",
        &[
            "--video-codec",
            "VP8",
            "--play-ms",
            "3000",
            "--hold-ms",
            "30000",
            "--deadline-ms",
            "100000",
        ],
    );
    let rest = server.find_stream("vp8cam");
    let rtmp = RtmpClient::player(server.rtmp_port, "live", "vp8cam").map(|mut c| {
        let r = c.wait_for(secs(10), |e| {
            matches!(e, Event::Status { code, .. } if code.starts_with("NetStream.Play."))
                && !e.is_status("NetStream.Play.Reset")
                && !e.is_status("NetStream.Play.Start")
        });
        let media = c.history.iter().filter(|e| e.is_media()).count();
        (r, media)
    });
    hold.release();
    let result = script.finish(secs(100));
    eprintln!("[webrtc_publish] VP8 stream on REST: {rest:?}");
    assert_eq!(
        rest.as_ref().map(|v| v["video"]["codec"].clone()),
        Some(Value::from("VP8")),
        "REST video codec of a VP8 publish: {rest:?}"
    );

    let pub_page = &result["pub"];
    assert_published("VP8 publisher", pub_page);
    assert_eq!(
        pub_page["stats"]["videoCodec"], "VP8",
        "outbound: {}",
        pub_page["stats"]
    );
    let viewer = &result["viewer"];
    let end = &viewer["statsEnd"];
    assert_eq!(end["videoCodec"], "VP8", "viewer inbound video: {end}");
    assert!(
        viewer["framesGrowth"].as_i64().unwrap_or(0) > 0,
        "the viewer decoded no VP8 frames: {} -> {end}; statuses {:?}",
        viewer["statsStart"],
        status_list(viewer)
    );
    assert_eq!(end["audioCodec"], "opus", "{end}");
    assert!(viewer["samplesGrowth"].as_i64().unwrap_or(0) > 0, "{end}");

    let (answer, media) = rtmp.expect("RTMP player connects");
    let (event, _) = answer.unwrap_or_else(|seen| {
        panic!(
            "the RTMP player of a VP8 stream got no play status: {}",
            summarize(&seen)
        )
    });
    eprintln!("[webrtc_publish] RTMP player of VP8: {event:?} ({media} media messages before)");
    match &event {
        Event::Status {
            code, description, ..
        } => {
            assert_eq!(code, "NetStream.Play.Failed", "{event:?}");
            assert!(
                description.contains("codec not supported") && description.contains("VP8"),
                "{event:?}"
            );
        }
        other => panic!("{other:?}"),
    }
}

/// A publish forced to VP9 (an offer with neither H.264 nor VP8) is refused with FAILED
/// "codec not supported", the SDK releases the camera, and REST lists no stream.
#[test]
fn vp9_only_publish_is_refused_with_codec_not_supported() {
    let server = start_server(&[]);
    let result = run_publish(
        &server,
        "vp9cam",
        "publish",
        &["--video-codec", "VP9", "--deadline-ms", "60000"],
        secs(70),
    );
    let page = &result["pub"];
    assert_refused(
        "VP9-only publisher",
        page,
        "codec not supported",
        &page["publish"]["localAfter"],
    );
    assert!(server.find_stream("vp9cam").is_none(), "REST lists vp9cam");
}

// ------------------------------------------------------------------------------------------------
// f. The Two-Way Streaming page
// ------------------------------------------------------------------------------------------------

/// The Two-Way Streaming page clicked through: Publish a name (PUBLISHING, frames sent shown),
/// Play the same name back (PLAYING, resolution and growing decoded frames shown, H.264 + Opus
/// both ways), a second tab plays it too; the Stop buttons end both with STOPPED.
#[test]
fn two_way_streaming_page_publishes_and_plays_back() {
    let server = start_server(&[]);
    let result = run_publish(
        &server,
        "mirror",
        "twoway-page",
        &["--play-ms", "2000", "--deadline-ms", "100000"],
        secs(110),
    );
    let p = &result["page"];
    assert_eq!(p["publishStatus"], "PUBLISHING", "{p}");
    assert_eq!(p["playStatus"], "PLAYING", "{p}");
    assert_eq!(
        p["statsShown"], true,
        "the page never showed its stats: {p}"
    );
    let (stats, later) = (&p["stats"], &p["statsLater"]);
    let resolution = stats["playResolution"].as_str().unwrap_or_default();
    assert!(
        resolution.split('x').count() == 2 && resolution != "–",
        "played resolution shown: {stats}"
    );
    assert_eq!(stats["publishCodec"], "H264 + opus", "{stats}");
    assert_eq!(stats["playCodecs"], "H264 + opus", "{stats}");
    assert!(
        later["playFrames"].as_u64().unwrap_or(0) > stats["playFrames"].as_u64().unwrap_or(0),
        "decoded frames shown do not grow: {stats} -> {later}"
    );
    assert!(
        later["publishFrames"].as_u64().unwrap_or(0) > stats["publishFrames"].as_u64().unwrap_or(0),
        "frames sent shown do not grow: {stats} -> {later}"
    );
    assert!(
        p["remoteVideo"][0].as_u64().unwrap_or(0) > 0
            && p["localVideo"][0].as_u64().unwrap_or(0) > 0,
        "videos without a size: local {} remote {}",
        p["localVideo"],
        p["remoteVideo"]
    );
    assert_eq!(p["otherPlayStatus"], "PLAYING", "second tab: {p}");
    assert!(
        p["otherPlayFrames"].as_u64().unwrap_or(0) > 0,
        "second tab decoded nothing: {p}"
    );
    assert_eq!(p["otherAfterStop"], "STOPPED", "{p}");
    assert_eq!(p["playAfterStop"], "STOPPED", "{p}");
    assert_eq!(p["publishAfterStop"], "STOPPED", "{p}");
    assert_gone(&server, "mirror", "REST still lists the stream after Stop");
}
