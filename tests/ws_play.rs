//! Playback over the media WebSocket (issue #6), end to end with real clients: headless Chromium
//! (Debian's `chromium` driven by playwright-core) plays streams through the browser SDK with
//! transport 'ws' (`web/sdk/mse.js`: fMP4 from `/ws/play` appended to a MediaSource) or 'auto'
//! (the SDK asks the server to `describe` the stream and takes 'ws' for H.264 with B-frames);
//! ffmpeg publishes over RTMP, the GStreamer RTSP camera (`scripts/rtsp_camera.py`) is played by
//! its URL, and another Chromium page publishes its fake camera and microphone over WebRTC.
//!
//! The browser side is `tests/browser/ws_play.mjs` (and `pages.mjs` for the Player page): it
//! prints one JSON line with what it measured per page: the transport in use, the statuses, the
//! time from play() to the first decoded frame, and (after a settling second) over a window of a
//! few seconds the growth of frames decoded and dropped (getVideoPlaybackQuality), of currentTime
//! and of the decoded audio (webkitAudioDecodedByteCount), and the buffer ahead of currentTime.

mod common;

use common::webrtc::*;
use common::*;
use serde_json::Value;
use std::thread::sleep;
use std::time::Instant;

/// Frames a 3 s window must at least decode (30 fps streams, 25 fps camera).
const MIN_FRAMES: i64 = 40;
/// Seconds the buffer ahead of currentTime may hold at the end of the window.
const MAX_BUFFER_SECONDS: f64 = 1.5;

/// ws_play.mjs on `server` for `name`, one page per transport of `transports` (`ws,auto`).
fn ws_args(server: &Server, name: &str, transports: &str, extra: &[&str]) -> Vec<String> {
    let mut all = vec!["--transport", transports, "--deadline-ms", "120000"];
    all.extend_from_slice(extra);
    scenario_args(server, name, &all)
}

fn run_ws(server: &Server, name: &str, transports: &str, extra: &[&str]) -> Value {
    run_script(
        "ws_play.mjs",
        &ws_args(server, name, transports, extra),
        secs(130),
    )
}

/// `players.websocket` of a stream object (-1 when absent or not found).
fn ws_players(v: Option<&Value>) -> i64 {
    v.and_then(|v| v["players"]["websocket"].as_i64())
        .unwrap_or(-1)
}

fn num(v: &Value) -> f64 {
    v.as_f64().unwrap_or(-1.0)
}

/// Asserts that a page of ws_play.mjs played over 'ws': PLAYING (the event saying 'ws'), a first
/// frame, over the window frames decoded > MIN_FRAMES, few dropped (< 10 %), currentTime moving,
/// with `audio` the init's audio track and decoded audio growing, a buffer under 1.5 s at the
/// end, and STOPPED after the stop.
fn assert_ws_played(label: &str, page: &Value, audio: bool) {
    let statuses = status_list(page);
    assert_eq!(
        page["transport"], "ws",
        "{label}: transport in use; statuses {statuses:?}"
    );
    let playing = page["statuses"]
        .as_array()
        .and_then(|a| a.iter().find(|s| s["status"] == "PLAYING"));
    let playing = playing.unwrap_or_else(|| {
        panic!(
            "{label}: never PLAYING; statuses {statuses:?}; session {}",
            page["sessionStatuses"]
        )
    });
    assert_eq!(
        playing["transport"], "ws",
        "{label}: the PLAYING event's transport: {playing}"
    );
    assert!(
        page["ttffMs"].is_u64(),
        "{label}: no frame decoded within the wait; statuses {statuses:?}; last stats {}",
        page["firstStats"]
    );
    let (a, b) = (&page["statsStart"], &page["statsEnd"]);
    assert_eq!(b["videoCodec"], "H264", "{label}: init video: {b}");
    let frames = page["framesGrowth"].as_i64().unwrap_or(-1);
    let dropped = page["droppedGrowth"].as_i64().unwrap_or(-1);
    assert!(
        frames > MIN_FRAMES,
        "{label}: {frames} frames decoded in the {} s window, expected > {MIN_FRAMES} ({a} -> {b}); \
         statuses {statuses:?}",
        page["seconds"]
    );
    assert!(
        dropped >= 0 && (dropped as f64) < 0.1 * frames as f64,
        "{label}: {dropped} of {frames} frames dropped (>= 10 %): {a} -> {b}"
    );
    let advanced = num(&page["currentTimeGrowth"]);
    assert!(
        advanced > 0.5 * num(&page["seconds"]),
        "{label}: currentTime advanced {advanced} s in a {} s window: {a} -> {b}",
        page["seconds"]
    );
    if audio {
        assert_eq!(
            b["audio"], true,
            "{label}: the init has no audio track: {b}"
        );
        assert_eq!(b["audioCodec"], "AAC", "{label}: init audio: {b}");
        assert!(
            num(&b["audioDecodedBytes"]) > 0.0 && num(&page["audioDecodedGrowth"]) > 0.0,
            "{label}: no audio decoded (webkitAudioDecodedByteCount {} -> {})",
            a["audioDecodedBytes"],
            b["audioDecodedBytes"]
        );
    }
    let buffer = num(&page["bufferEnd"]);
    assert!(
        (0.0..MAX_BUFFER_SECONDS).contains(&buffer),
        "{label}: {buffer} s buffered ahead of currentTime at the end (max over the window {}), \
         expected < {MAX_BUFFER_SECONDS}",
        page["bufferMax"]
    );
    assert_eq!(
        page["status"], "STOPPED",
        "{label}: final status after stop; statuses {statuses:?}"
    );
    assert!(
        !statuses[..statuses.len() - 1]
            .iter()
            .any(|s| s.starts_with("FAILED") || s.starts_with("STOPPED")),
        "{label}: ended before the client's stop: {statuses:?}"
    );
}

/// The measured numbers of a page, printed for the issue note.
fn report_numbers(what: &str, page: &Value) {
    let line = format!(
        "[ws_play] {what}: first decoded frame {} ms after play() (frame callback {} ms, PLAYING \
         after {:?} ms); window {} s: frames +{}, dropped +{}, currentTime +{} s, jumps +{}; \
         buffer end {} s (avg {}, max {}); whole play: {} frames, {} dropped, {} jumps; {}x{} \
         {} kbps",
        page["ttffMs"],
        page["firstVideoFrameMs"],
        status_at(page, "PLAYING", 0).map(|x| x.1),
        page["seconds"],
        page["framesGrowth"],
        page["droppedGrowth"],
        page["currentTimeGrowth"],
        page["jumpsGrowth"],
        page["bufferEnd"],
        page["bufferAvg"],
        page["bufferMax"],
        page["statsEnd"]["framesDecoded"],
        page["statsEnd"]["framesDropped"],
        page["statsEnd"]["jumps"],
        page["statsEnd"]["width"],
        page["statsEnd"]["height"],
        page["statsEnd"]["bitrateKbps"],
    );
    eprintln!("{line}");
}

/// A real-time ffmpeg RTMP publisher of H.264 High with B-frames (`-bf 2`, 2 s GOP) + AAC.
fn publish_bframes(url: &str, seconds: u32) -> Proc {
    let mut args = strings(&["-hide_banner", "-nostdin", "-loglevel", "warning"]);
    args.extend(test_pattern_input("640x360", FPS, 1000, true, seconds));
    let x264 = [
        "-profile:v",
        "high",
        "-preset",
        "veryfast",
        "-bf",
        "2",
        "-b:v",
        "1000k",
    ];
    args.extend(h264_aac_output(&x264, 2 * FPS));
    args.extend(strings(&["-f", "flv", url]));
    Proc::spawn("ffmpeg-bframes", "ffmpeg", &args)
}

// ------------------------------------------------------------------------------------------------
// a. RTMP baseline H.264 + AAC
// ------------------------------------------------------------------------------------------------

/// An ffmpeg RTMP stream (H.264 baseline, 2 s GOP, + AAC) plays in Chromium over the media
/// WebSocket: frames decode and keep coming with few dropped, currentTime moves, AAC decodes,
/// the buffer stays short; REST counts the WebSocket player while it plays and none after the
/// stop. The same stream with transport 'auto' plays over WebRTC (no B-frames).
#[test]
fn rtmp_baseline_plays_over_ws_and_auto_picks_webrtc() {
    let server = start_server(&[]);
    let _publisher = publish_ffmpeg_sized(
        &server.url("test"),
        90,
        "640x360",
        &["-g", "60", "-keyint_min", "60"],
    );
    wait_publishing(&server, "test");

    let mut script = Script::spawn(
        "ws_play.mjs",
        &ws_args(&server, "test", "ws,auto", &["--play-ms", "3000"]),
    );
    let mut max_ws = -1;
    let deadline = Instant::now() + secs(60);
    while script.is_running() && Instant::now() < deadline && max_ws < 1 {
        max_ws = max_ws.max(ws_players(server.find_stream("test").as_ref()));
        sleep(ms(200));
    }
    let result = script.finish(secs(130));
    let page = &result["pages"][0];
    report_numbers("RTMP baseline 640x360 over ws", page);
    assert_ws_played("ws page", page, true);
    assert_eq!(
        page["videoSize"],
        serde_json::json!([640, 360]),
        "video size"
    );
    assert_eq!(max_ws, 1, "REST players.websocket while a browser plays");

    let auto = &result["pages"][1];
    assert_eq!(
        auto["transport"],
        "webrtc",
        "'auto' on a stream without B-frames: statuses {:?}",
        status_list(auto)
    );
    assert!(
        has_status(auto, "PLAYING") && auto["ttffMs"].is_u64(),
        "'auto' (webrtc) did not play: {:?}",
        status_list(auto)
    );
    assert_stream(
        &server,
        "test",
        secs(10),
        |v| ws_players(v) == 0,
        "REST players.websocket after stop",
    );
}

// ------------------------------------------------------------------------------------------------
// b. H.264 with B-frames: over ws, and 'auto' picks ws
// ------------------------------------------------------------------------------------------------

/// An ffmpeg RTMP stream of H.264 High with B-frames (+ AAC) plays over the media WebSocket in
/// order (few dropped frames, currentTime moving); with transport 'auto' the SDK asks the server
/// (`describe`: bFrames true) and plays it over 'ws' too.
#[test]
fn rtmp_bframes_plays_over_ws_and_auto_picks_ws() {
    let server = start_server(&[]);
    let _publisher = publish_bframes(&server.url("bframes"), 90);
    wait_publishing(&server, "bframes");
    let (ok, v) = server.wait_stream("bframes", secs(10), |v| {
        v.is_some_and(|v| v["video"]["b_frames"] == true)
    });
    eprintln!("[ws_play] REST video of the B-frame stream (bFrames seen: {ok}): {v:?}");

    let result = run_ws(&server, "bframes", "ws,auto", &["--play-ms", "3000"]);
    let page = &result["pages"][0];
    report_numbers("RTMP H.264 High with B-frames 640x360 over ws", page);
    assert_ws_played("ws page", page, true);
    let auto = &result["pages"][1];
    report_numbers("RTMP B-frames, transport auto", auto);
    assert_eq!(
        auto["transport"],
        "ws",
        "'auto' on a B-frame stream must pick ws: statuses {:?}",
        status_list(auto)
    );
    assert_ws_played("auto page", auto, true);
}

// ------------------------------------------------------------------------------------------------
// c. A camera by its URL
// ------------------------------------------------------------------------------------------------

/// The RTSP camera (H.264 + AAC, digest auth) played over the media WebSocket by its rtsp:// URL:
/// frames decode, the init has audio and it decodes; one camera connection; the password shows
/// nowhere in the server's log.
#[test]
fn camera_by_url_plays_over_ws() {
    let cam = Camera::start(CameraOpts::default());
    let server = start_server(&[
        ("rtsp.connect_timeout_ms", "4000"),
        ("rtsp.on_demand_timeout_ms", "8000"),
    ]);
    let result = run_ws(&server, &cam.url(), "ws", &["--play-ms", "3000"]);
    let page = &result["pages"][0];
    report_numbers("camera 320x240 25 fps by URL over ws", page);
    assert_ws_played("camera page", page, true);
    assert_eq!(page["videoSize"], serde_json::json!([320, 240]));
    assert_eq!(cam.total_connections(), 1, "{}", cam.describe());
    assert!(
        !server.log().contains(CAMERA_PASSWORD_MARK),
        "the server log shows the camera password"
    );
}

// ------------------------------------------------------------------------------------------------
// d. A WebRTC publish played over ws (Opus -> AAC)
// ------------------------------------------------------------------------------------------------

/// A Chromium page publishes its fake camera and microphone over WebRTC (H.264 + Opus); another
/// page plays it over the media WebSocket: frames decode and AAC audio (transcoded from the Opus
/// by the server) decodes.
#[test]
fn webrtc_publish_plays_over_ws_with_aac() {
    let server = start_server(&[]);
    let result = run_ws(&server, "doctor", "ws", &["--publish", "--play-ms", "3000"]);
    let publish = &result["publish"];
    assert!(
        has_status(publish, "PUBLISHING"),
        "the WebRTC publish: {publish}"
    );
    let page = &result["pages"][0];
    report_numbers("WebRTC publish (fake camera, H.264 + Opus) over ws", page);
    assert_ws_played("ws page", page, true);
}

// ------------------------------------------------------------------------------------------------
// e. Republish in another size
// ------------------------------------------------------------------------------------------------

/// The publisher (320x240) leaves and, within the grace, another publishes the name at 640x480:
/// the ws player goes UNPUBLISHED then PLAYING, gets a second init segment, its video becomes
/// 640 wide and frames keep decoding; it never ends before its stop.
#[test]
fn republish_in_another_size_sends_a_new_init_and_plays_on() {
    let server = start_server(&[("stream.unpublish_grace_ms", "20000")]);
    let mut first = publish_ffmpeg(&server.url("resize"), 90, &[]);
    wait_publishing(&server, "resize");
    let mut script = Script::spawn(
        "ws_play.mjs",
        &ws_args(
            &server,
            "resize",
            "ws",
            &[
                "--wait-inits",
                "2",
                "--wait-width",
                "640",
                "--wait-ms",
                "45000",
                "--play-ms",
                "3000",
            ],
        ),
    );
    script.expect_stderr(
        "status=PLAYING",
        secs(40),
        "the ws player never reached PLAYING",
    );
    sleep(ms(2000));
    first.kill();
    script.expect_stderr(
        "status=UNPUBLISHED",
        secs(15),
        "no UNPUBLISHED after the publisher left",
    );
    let _second = publish_ffmpeg_sized(&server.url("resize"), 90, "640x480", &[]);
    let result = script.finish(secs(130));
    let page = &result["pages"][0];
    let statuses = status_list(page);
    report_numbers("after a republish 320x240 -> 640x480 over ws", page);
    let wait = &page["waitInits"];
    assert_eq!(
        wait["seen"], true,
        "no second init with a 640 wide video: {wait}; statuses {statuses:?}"
    );
    assert!(
        wait["stats"]["inits"].as_u64() >= Some(2),
        "inits: {}",
        wait["stats"]
    );
    assert_eq!(page["videoSize"], serde_json::json!([640, 480]));
    let (pi, _) = status_at(page, "PLAYING", 0).expect("PLAYING");
    let (ui, _) = status_at(page, "UNPUBLISHED", pi).expect("UNPUBLISHED after PLAYING");
    assert!(
        status_at(page, "PLAYING", ui).is_some(),
        "no PLAYING after UNPUBLISHED: {statuses:?}"
    );
    // The window after the new size: the same checks as a first play.
    assert_ws_played("ws page after the republish", page, true);
}

// ------------------------------------------------------------------------------------------------
// f. The Player page
// ------------------------------------------------------------------------------------------------

/// The Player page with "WebSocket (MSE)" chosen: Play, PLAYING, the transport field shows ws,
/// the stats show 640x360, a frame rate and decoded frames, Unmute works, Stop ends it.
#[test]
fn player_page_plays_over_ws() {
    let server = start_server(&[]);
    let _publisher = publish_ffmpeg_sized(&server.url("test"), 90, "640x360", &[]);
    wait_publishing(&server, "test");
    let r = run_script(
        "pages.mjs",
        &scenario_args(
            &server,
            "test",
            &[
                "--transport",
                "ws",
                "--player-only",
                "--deadline-ms",
                "90000",
            ],
        ),
        secs(100),
    );
    let player = &r["player"];
    eprintln!("[ws_play] Player page over ws: {player}");
    assert_eq!(player["status"], "PLAYING", "Player page: {player}");
    assert_eq!(player["transport"], "ws", "transport field: {player}");
    assert_eq!(player["resolution"], "640x360", "{player}");
    assert!(
        player["fps"].as_f64().unwrap_or(0.0) > 0.0,
        "frame rate: {player}"
    );
    let frames: u64 = player["framesDecoded"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    assert!(frames > 0, "frames decoded: {player}");
    assert_eq!(player["videoCodec"], "H264", "{player}");
    assert_eq!(player["audioCodec"], "AAC", "{player}");
    assert_eq!(player["videoMuted"], false, "Unmute clicked: {player}");
    assert_eq!(player["videoPaused"], false, "{player}");
    assert_eq!(player["afterStop"], "STOPPED", "after Stop: {player}");
    assert!(
        player["url"]
            .as_str()
            .is_some_and(|u| u.contains("transport=ws")),
        "the page URL keeps the transport: {player}"
    );
}

// ------------------------------------------------------------------------------------------------
// g. Unknown stream
// ------------------------------------------------------------------------------------------------

/// Playing a name nobody publishes over 'ws' ends FAILED "stream not found" once
/// `stream.play_wait_timeout_ms` (1.5 s here) has passed, without PLAYING.
#[test]
fn unknown_stream_over_ws_fails_with_not_found() {
    let server = start_server(&[("stream.play_wait_timeout_ms", "1500")]);
    let result = run_ws(
        &server,
        "nobody_publishes_this",
        "ws",
        &["--first-frame-timeout-ms", "15000"],
    );
    let page = &result["pages"][0];
    let statuses = status_list(page);
    assert_eq!(page["status"], "FAILED", "statuses {statuses:?}");
    let last = page["statuses"].as_array().unwrap().last().unwrap();
    assert_eq!(last["reason"], "stream not found", "{last}");
    assert!(
        !has_status(page, "PLAYING"),
        "an unknown stream must not be PLAYING: {statuses:?}"
    );
    let t = last["t"].as_u64().unwrap_or(0);
    assert!(
        t >= 1000,
        "FAILED after {t} ms: before the server's 1.5 s play wait"
    );
    eprintln!("[ws_play] unknown stream over ws: FAILED after {t} ms ({statuses:?})");
}
