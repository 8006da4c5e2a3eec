//! WebRTC playback (issue #4), end to end with real clients: headless Chromium (Debian's
//! `chromium` driven by playwright-core) plays streams through the browser SDK
//! (`web/sdk/mediarouter.js`, loaded from the server's own web port) and the signalling
//! WebSocket `/ws` (`web/sdk/PROTOCOL.md`); ffmpeg publishes over RTMP; the GStreamer RTSP camera
//! (`scripts/rtsp_camera.py`) is pulled by URL; a raw `ws` client misbehaves on the signalling
//! socket.
//!
//! The browser side lives in `tests/browser/*.mjs` (Node scripts, installed with their
//! `package-lock.json` by `scripts/install-test-deps.sh`): each takes its parameters on the
//! command line, prints one JSON line of measured results on stdout and diagnostics on stderr.
//! These tests start the server and the media sources, run a script, and assert on what it
//! measured (codecs, decoded frames, audio samples, statuses and their reasons), and on what the
//! REST API says meanwhile.
//!
//! Every server here gets its own small UDP port range (`webrtc.port_min`/`port_max`) and host
//! candidates on 127.0.0.1 only (`webrtc.ice_addresses`).

mod common;

use common::webrtc::*;
use common::*;
use serde_json::{json, Value};
use std::thread::sleep;
use std::time::{Duration, Instant};

/// Asserts REST counts `n` WebRTC viewers of `name` (within `timeout`).
fn assert_webrtc_viewers(server: &Server, name: &str, n: i64, timeout: Duration, failure: &str) {
    assert_stream(server, name, timeout, |v| webrtc_players(v) == n, failure);
}

// ------------------------------------------------------------------------------------------------
// a. RTMP stream (H.264 + AAC) in Chromium: H.264 passed through, AAC -> Opus
// ------------------------------------------------------------------------------------------------

/// An ffmpeg RTMP stream (H.264 baseline + AAC) plays in Chromium through the SDK: inbound-rtp
/// video H264 with framesDecoded growing, audio opus with samples, 640x360; REST counts the
/// WebRTC viewer while it plays and 0 after stop. Prints the time from play() to the first
/// decoded frame.
#[test]
fn rtmp_stream_plays_in_chromium_h264_and_opus() {
    let server = start_server(&[]);
    let _publisher = publish_ffmpeg_sized(&server.url("test"), 60, "640x360", &[]);
    wait_publishing(&server, "test");

    let mut script = Script::spawn(
        "play.mjs",
        &scenario_args(
            &server,
            "test",
            &["--play-ms", "4000", "--deadline-ms", "90000"],
        ),
    );
    // REST counts the viewer while it plays.
    let mut max_webrtc = -1;
    let deadline = Instant::now() + secs(60);
    while script.is_running() && Instant::now() < deadline {
        max_webrtc = max_webrtc.max(webrtc_players(server.find_stream("test").as_ref()));
        if max_webrtc >= 1 {
            break;
        }
        sleep(ms(200));
    }
    let result = script.finish(secs(90));
    let page = &result["pages"][0];
    assert_page_played("page", page, "opus", true);
    let end = &page["statsEnd"];
    assert_eq!(
        (end["width"].as_u64(), end["height"].as_u64()),
        (Some(640), Some(360)),
        "decoded size: {end}"
    );
    assert!(
        page["tracks"].as_array().is_some_and(|t| t.len() >= 2),
        "expected an audio and a video track: {}",
        page["tracks"]
    );
    assert_eq!(
        max_webrtc, 1,
        "REST players.webrtc while a browser plays (max seen)"
    );
    let stopped = status_at(page, "STOPPED", 0);
    assert!(stopped.is_some(), "no STOPPED: {:?}", status_list(page));

    println!(
        "[webrtc_play] time to first decoded frame (play() -> getStats framesDecoded > 0): {} ms; \
         first video frame callback: {} ms; PLAYING after {:?} ms; packets lost {}",
        page["ttffMs"],
        page["firstVideoFrameMs"],
        status_at(page, "PLAYING", 0).map(|x| x.1),
        end["packetsLost"]
    );
    eprintln!(
        "[webrtc_play] TTFF {} ms (frame callback {} ms)",
        page["ttffMs"], page["firstVideoFrameMs"]
    );

    // After stop, the server freed the viewer.
    assert_webrtc_viewers(
        &server,
        "test",
        0,
        secs(10),
        "REST players.webrtc after stop",
    );
}

/// The server-offer mode of the protocol (play without sdp: the server offers, the client
/// answers) plays too.
#[test]
fn server_offer_mode_plays() {
    let server = start_server(&[]);
    let _publisher = publish_ffmpeg(&server.url("offer"), 60, &[]);
    wait_publishing(&server, "offer");
    let result = run_script(
        "play.mjs",
        &scenario_args(
            &server,
            "offer",
            &[
                "--server-offer",
                "--play-ms",
                "2000",
                "--deadline-ms",
                "90000",
            ],
        ),
        secs(100),
    );
    assert_page_played("server-offer page", &result["pages"][0], "opus", true);
}

// ------------------------------------------------------------------------------------------------
// b. A camera (H.264 + PCMA) by URL: 3 browsers + 2 RTMP players, one camera connection
// ------------------------------------------------------------------------------------------------

/// A digest-auth camera with G.711 A-law audio, played by its URL in three Chromium pages and
/// by two ffmpeg RTMP players at once: every browser decodes H.264 and receives PCMA (passed
/// through), the RTMP players decode video, and the camera saw exactly one RTSP connection.
#[test]
fn camera_by_url_plays_in_three_browsers_and_two_rtmp_players_on_one_connection() {
    let cam = Camera::start(CameraOpts::default().audio("pcma"));
    let server = start_server(&[
        ("rtsp.connect_timeout_ms", "4000"),
        ("rtsp.on_demand_timeout_ms", "8000"),
        ("rtsp.idle_stop_ms", "5000"),
    ]);
    let cam_url = cam.url();
    let rtmp_url = server.camera_play_url(&cam_url);

    let players: Vec<Player> = (0..2).map(|_| Player::spawn(&rtmp_url, 10)).collect();
    let mut script = Script::spawn(
        "play.mjs",
        &scenario_args(
            &server,
            &cam_url,
            &[
                "--pages",
                "3",
                "--play-ms",
                "3000",
                "--deadline-ms",
                "100000",
            ],
        ),
    );
    let mut max_viewers = 0;
    let deadline = Instant::now() + secs(60);
    while script.is_running() && Instant::now() < deadline {
        let pulls = server.rtsp_pulls();
        if let Some(p) = find_pull(&pulls, cam.port, "/cam") {
            max_viewers = max_viewers.max(p["viewers"].as_u64().unwrap_or(0));
        }
        sleep(ms(300));
    }
    let result = script.finish(secs(100));
    for (i, page) in result["pages"].as_array().unwrap().iter().enumerate() {
        assert_page_played(&format!("browser {i}"), page, "PCMA", true);
    }
    for (i, p) in players.into_iter().enumerate() {
        let played = p.finish(secs(40));
        let min_video = (CAMERA_FPS * 10) as u64 / 2;
        assert!(
            played.video >= min_video,
            "RTMP player {i}: decoded {} video frames, expected >= {min_video}: {played:?}",
            played.video
        );
        assert!(played.audio > 0, "RTMP player {i}: no audio: {played:?}");
    }
    eprintln!("[webrtc_play] camera pull viewers (max seen on REST): {max_viewers}");
    assert_eq!(
        cam.total_connections(),
        1,
        "3 browsers and 2 RTMP players of one camera URL must share ONE RTSP connection\n{}",
        cam.describe()
    );
    assert!(
        !server.log().contains(CAMERA_PASSWORD_MARK),
        "the server log shows the camera password"
    );
}

// ------------------------------------------------------------------------------------------------
// c. Unknown stream
// ------------------------------------------------------------------------------------------------

/// Playing a name nobody publishes ends with FAILED and a reason saying "not found", once
/// `stream.play_wait_timeout_ms` has passed.
#[test]
fn unknown_stream_fails_with_not_found() {
    let server = start_server(&[("stream.play_wait_timeout_ms", "1500")]);
    let result = run_script(
        "play.mjs",
        &scenario_args(
            &server,
            "nobody_publishes_this",
            &[
                "--first-frame-timeout-ms",
                "15000",
                "--deadline-ms",
                "60000",
            ],
        ),
        secs(70),
    );
    let page = &result["pages"][0];
    let statuses = status_list(page);
    assert_eq!(page["status"], "FAILED", "statuses {statuses:?}");
    let last = page["statuses"].as_array().unwrap().last().unwrap();
    let reason = last["reason"].as_str().unwrap_or_default().to_lowercase();
    assert!(
        reason.contains("not found"),
        "FAILED reason should say not found: {last}"
    );
    assert!(
        !has_status(page, "PLAYING"),
        "an unknown stream must not be PLAYING: {statuses:?}"
    );
    assert!(page["ttffMs"].is_null(), "decoded frames of nothing?");
    eprintln!(
        "[webrtc_play] unknown stream: FAILED after {} ms ({statuses:?})",
        last["t"]
    );
}

// ------------------------------------------------------------------------------------------------
// d. Publisher gone: UNPUBLISHED, then STOPPED after the grace, or PLAYING again on republish
// ------------------------------------------------------------------------------------------------

/// The publisher leaves: the browser gets UNPUBLISHED, then STOPPED when
/// `stream.unpublish_grace_ms` ends without a republish; REST then counts no WebRTC viewer.
#[test]
fn publisher_gone_unpublished_then_stopped_after_grace() {
    let server = start_server(&[("stream.unpublish_grace_ms", "3000")]);
    let mut publisher = publish_ffmpeg(&server.url("gone"), 60, &[]);
    wait_publishing(&server, "gone");
    let mut script = Script::spawn(
        "play.mjs",
        &scenario_args(
            &server,
            "gone",
            &[
                "--wait-for",
                "UNPUBLISHED,STOPPED",
                "--wait-for-ms",
                "40000",
                "--no-stop",
                "--deadline-ms",
                "90000",
            ],
        ),
    );
    script.expect_stderr(
        "status=PLAYING",
        secs(40),
        "the browser never reached PLAYING",
    );
    sleep(ms(1500));
    publisher.kill();
    let result = script.finish(secs(90));
    let page = &result["pages"][0];
    let statuses = status_list(page);
    assert_eq!(
        page["waitFor"]["seen"], true,
        "expected UNPUBLISHED then STOPPED after the publisher left: {statuses:?}"
    );
    let (pi, _) = status_at(page, "PLAYING", 0).expect("PLAYING");
    let (ui, ut) = status_at(page, "UNPUBLISHED", pi).expect("UNPUBLISHED after PLAYING");
    let (_, st) = status_at(page, "STOPPED", ui).expect("STOPPED after UNPUBLISHED");
    assert!(
        !statuses[..ui]
            .iter()
            .any(|s| s.starts_with("FAILED") || s.starts_with("STOPPED")),
        "ended before UNPUBLISHED: {statuses:?}"
    );
    // The grace is 3 s: STOPPED must not follow UNPUBLISHED at once.
    assert!(
        st >= ut + 1000,
        "STOPPED {st} ms came too soon after UNPUBLISHED {ut} ms for a 3 s grace: {statuses:?}"
    );
    eprintln!(
        "[webrtc_play] publisher gone: {statuses:?} (STOPPED {} ms after UNPUBLISHED)",
        st - ut
    );
    assert_stream(
        &server,
        "gone",
        secs(10),
        |v| webrtc_players(v) <= 0,
        "REST still counts a WebRTC viewer",
    );
}

/// The publisher leaves and a new one publishes the same name within the grace: the browser goes
/// UNPUBLISHED, then PLAYING again, and decodes new frames.
#[test]
fn republish_within_grace_resumes_playing() {
    let server = start_server(&[("stream.unpublish_grace_ms", "20000")]);
    let mut first = publish_ffmpeg(&server.url("again"), 60, &[]);
    wait_publishing(&server, "again");
    let mut script = Script::spawn(
        "play.mjs",
        &scenario_args(
            &server,
            "again",
            &[
                "--wait-for",
                "UNPUBLISHED,PLAYING",
                "--wait-for-ms",
                "45000",
                "--play-ms",
                "2000",
                "--deadline-ms",
                "100000",
            ],
        ),
    );
    script.expect_stderr(
        "status=PLAYING",
        secs(40),
        "the browser never reached PLAYING",
    );
    sleep(ms(1500));
    first.kill();
    script.expect_stderr(
        "status=UNPUBLISHED",
        secs(15),
        "no UNPUBLISHED after the publisher left",
    );
    let _second = publish_ffmpeg(&server.url("again"), 60, &[]);
    let result = script.finish(secs(100));
    let page = &result["pages"][0];
    let statuses = status_list(page);
    assert_eq!(
        page["waitFor"]["seen"], true,
        "expected UNPUBLISHED then PLAYING again on republish: {statuses:?}"
    );
    let before = page["waitFor"]["framesBefore"].as_u64().unwrap_or(0);
    let after = page["waitFor"]["framesAfter"].as_u64().unwrap_or(0);
    assert!(
        after > before,
        "no new frame decoded after the republish ({before} -> {after}): {statuses:?}"
    );
    assert!(
        page["framesGrowth"].as_i64() > Some(0),
        "frames did not keep growing after the resume: {} -> {}",
        page["statsStart"],
        page["statsEnd"]
    );
    assert!(
        !statuses[..statuses.len() - 1]
            .iter()
            .any(|s| s.starts_with("FAILED") || s.starts_with("STOPPED")),
        "ended before the client's stop: {statuses:?}"
    );
    assert_eq!(page["status"], "STOPPED", "{statuses:?}");
}

// ------------------------------------------------------------------------------------------------
// e. Bad input on the signalling socket
// ------------------------------------------------------------------------------------------------

fn error_code(probe: &Value) -> String {
    probe["answer"]["code"]
        .as_str()
        .unwrap_or("<no error answer>")
        .to_string()
}

/// A raw WebSocket client sends: a play before connect, malformed JSON, an unknown type, a stop
/// of an unknown streamId, a play without name, a binary garbage frame and 100 KB of junk text.
/// Each gets an `error` with the protocol's code, the session stays open (ping -> pong), and the
/// same session then plays in Chromium; the server is still up.
#[test]
fn bad_signalling_input_gets_errors_and_the_session_still_plays() {
    let mut server = start_server(&[]);
    let _publisher = publish_ffmpeg(&server.url("test"), 60, &[]);
    wait_publishing(&server, "test");
    let r = run_script(
        "ws_raw.mjs",
        &scenario_args(
            &server,
            "test",
            &["--scenario", "bad-input", "--deadline-ms", "90000"],
        ),
        secs(100),
    );
    let p = &r["probes"];
    assert_eq!(
        error_code(&p["before_connect"]),
        "not_connected",
        "{}",
        p["before_connect"]
    );
    assert_eq!(
        r["established"], true,
        "connect after the bad start: {}",
        r["session"]
    );
    assert_eq!(error_code(&p["bad_json"]), "bad_json", "{}", p["bad_json"]);
    assert_eq!(
        error_code(&p["unknown_type"]),
        "unknown_type",
        "{}",
        p["unknown_type"]
    );
    assert_eq!(
        p["unknown_type"]["answer"]["ref"], "dance",
        "{}",
        p["unknown_type"]
    );
    assert_eq!(
        error_code(&p["unknown_stream"]),
        "unknown_stream",
        "{}",
        p["unknown_stream"]
    );
    assert_eq!(
        p["unknown_stream"]["answer"]["ref"], "v9",
        "{}",
        p["unknown_stream"]
    );
    assert_eq!(
        error_code(&p["missing_name"]),
        "bad_request",
        "{}",
        p["missing_name"]
    );
    for key in ["binary", "junk_100k"] {
        assert!(
            p[key]["answer"]["type"] == "error",
            "{key}: expected an error answer, got {}",
            p[key]
        );
    }
    for (key, probe) in p.as_object().unwrap() {
        assert_eq!(probe["closed"], false, "{key} closed the session: {probe}");
        assert!(
            probe["answer"]["message"].is_string(),
            "{key}: an error carries a message: {probe}"
        );
    }
    assert_eq!(r["pong"], true, "no pong after the bad input");
    let play = &r["play"];
    let statuses: Vec<&str> = play["statuses"]
        .as_array()
        .map(|a| a.iter().filter_map(|s| s["status"].as_str()).collect())
        .unwrap_or_default();
    assert!(
        statuses.contains(&"PLAYING"),
        "the session that got junk could not play: {play}"
    );
    assert!(
        play["stats"]["framesDecoded"].as_u64().unwrap_or(0) > 0,
        "Chromium decoded no frame on the session that got junk: {play}"
    );
    assert_eq!(play["stats"]["videoCodec"], "H264", "{play}");
    assert_eq!(r["stop"]["status"], "STOPPED", "stop answer: {}", r["stop"]);
    assert!(r["closed"].is_null(), "socket closed: {}", r["closed"]);
    assert!(server.is_alive(), "the server died");
    assert_webrtc_viewers(
        &server,
        "test",
        0,
        secs(10),
        "REST players.webrtc after stop",
    );
}

/// Junk sent through the SDK's own socket (malformed JSON, binary, 100 KB of text) comes back as
/// session `error` events; the session stays ESTABLISHED, answers a ping, and plays.
#[test]
fn sdk_session_survives_junk_and_plays() {
    let server = start_server(&[]);
    let _publisher = publish_ffmpeg(&server.url("junk"), 60, &[]);
    wait_publishing(&server, "junk");
    let result = run_script(
        "play.mjs",
        &scenario_args(
            &server,
            "junk",
            &[
                "--junk-first",
                "--play-ms",
                "2000",
                "--deadline-ms",
                "90000",
            ],
        ),
        secs(100),
    );
    let page = &result["pages"][0];
    let junk = &page["junk"];
    assert!(
        junk["errors"].as_array().is_some_and(|e| e.len() >= 3),
        "expected an error event for each of 3 junk frames: {junk}"
    );
    assert!(junk["pongMs"].is_u64(), "no pong after junk: {junk}");
    assert_eq!(junk["sessionStatus"], "ESTABLISHED", "{junk}");
    assert_page_played("page after junk", page, "opus", true);
}

// ------------------------------------------------------------------------------------------------
// f. Keepalive
// ------------------------------------------------------------------------------------------------

/// A raw client playing in Chromium answers the server's pings by hand for a while (kept), then
/// goes silent: the server closes it within `webrtc.keepalive_timeout_ms` (2 s here, with slack),
/// frees the peer (the page's frames stop) and REST counts 0 WebRTC viewers again.
#[test]
fn silent_session_is_dropped_after_keepalive_timeout() {
    let server = start_server(&[("webrtc.keepalive_timeout_ms", "2000")]);
    let _publisher = publish_ffmpeg(&server.url("test"), 60, &[]);
    wait_publishing(&server, "test");
    let mut script = Script::spawn(
        "ws_raw.mjs",
        &scenario_args(
            &server,
            "test",
            &[
                "--scenario",
                "silent",
                "--alive-ms",
                "5000",
                "--close-timeout-ms",
                "15000",
                "--deadline-ms",
                "90000",
            ],
        ),
    );
    script.expect_stderr("phase=alive", secs(45), "the raw client never played");
    assert_webrtc_viewers(
        &server,
        "test",
        1,
        secs(4),
        "REST players.webrtc while the raw client plays",
    );
    let r = script.finish(secs(90));
    assert_eq!(r["established"], true, "{}", brief(&r));
    assert_eq!(r["keepaliveMs"], 2000, "session keepaliveMs");
    assert!(
        r["framesAlive"]["framesDecoded"].as_u64().unwrap_or(0) > 0,
        "the raw session's peer decoded nothing: {}",
        r["framesAlive"]
    );
    assert_eq!(
        r["alive"]["closed"], false,
        "the server closed a session that answered its pings: {}",
        r["alive"]
    );
    assert!(
        r["alive"]["pings"].as_u64().unwrap_or(0) >= 1,
        "no ping from the server in {} ms with a 2 s keepalive: {}",
        r["alive"]["ms"],
        r["alive"]
    );
    assert!(
        !r["closed"].is_null(),
        "the server did not close a silent session within 15 s"
    );
    let after = r["closedAfterSilentMs"].as_u64().unwrap();
    assert!(
        after <= 10000,
        "closed {after} ms after the client went silent (keepalive 2 s)"
    );
    eprintln!("[webrtc_play] silent session closed after {after} ms of silence");
    assert_eq!(
        r["media"]["growthAfterClose"], 0,
        "frames still arrive after the session was dropped: {}",
        r["media"]
    );
    assert_webrtc_viewers(
        &server,
        "test",
        0,
        secs(5),
        "REST players.webrtc after the silent session was dropped",
    );
}

// ------------------------------------------------------------------------------------------------
// g. The Player and Streams pages
// ------------------------------------------------------------------------------------------------

/// The Player page clicked through (name, Play, PLAYING, stats with 640x360 and a frame rate,
/// Stop, STOPPED); the Streams page lists the RTMP stream and a camera pull, and their Play links
/// open the Player that plays them.
#[test]
fn player_and_streams_pages_play() {
    let cam = Camera::start(CameraOpts::default());
    let server = start_server(&[]);
    let _publisher = publish_ffmpeg_sized(&server.url("test"), 90, "640x360", &[]);
    wait_publishing(&server, "test");
    let (status, v) = server.rtsp("startup", &json!({ "uri": cam.url(), "name": "cam1" }));
    assert_eq!(status, 200, "rtsp/startup: {v}");
    let (status, v) = rest(server.http_port, "stream/find_all", "{}");
    eprintln!(
        "[webrtc_play] web port stream/find_all: {status} {}",
        brief(&v)
    );

    let r = run_script(
        "pages.mjs",
        &scenario_args(
            &server,
            "test",
            &["--camera", "cam1", "--deadline-ms", "150000"],
        ),
        secs(160),
    );
    let player = &r["player"];
    assert_eq!(player["status"], "PLAYING", "Player page: {player}");
    assert_eq!(
        player["resolution"], "640x360",
        "Player page stats: {player}"
    );
    assert!(
        player["fps"].as_f64().unwrap_or(0.0) > 0.0,
        "Player page frame rate: {player}"
    );
    assert_eq!(player["videoCodec"], "H264", "{player}");
    assert_eq!(player["audioCodec"], "opus", "{player}");
    assert_eq!(player["videoMuted"], false, "Unmute clicked: {player}");
    assert_eq!(
        player["videoPaused"], false,
        "video plays unmuted: {player}"
    );
    assert_eq!(player["afterStop"], "STOPPED", "after Stop: {player}");

    let listed = &r["streams"];
    assert!(
        listed["errors"].as_array().is_some_and(|e| e.is_empty()),
        "the Streams page could not list: {}",
        listed["errors"]
    );
    let names: Vec<&str> = listed["streams"]
        .as_array()
        .map(|a| a.iter().filter_map(|s| s["name"].as_str()).collect())
        .unwrap_or_default();
    assert!(names.contains(&"test"), "Streams page lists {names:?}");
    let cameras: Vec<&str> = listed["cameras"]
        .as_array()
        .map(|a| a.iter().filter_map(|s| s["name"].as_str()).collect())
        .unwrap_or_default();
    assert!(
        cameras.contains(&"cam1"),
        "Streams page camera pulls: {cameras:?}"
    );
    let text = listed.to_string();
    assert!(
        !text.contains(CAMERA_PASSWORD_MARK),
        "the Streams page shows the camera password: {text}"
    );

    let link = &r["streamLink"];
    assert_eq!(link["clicked"], true, "no Play link for the stream: {link}");
    assert_eq!(
        link["status"], "PLAYING",
        "Player opened from the Streams page: {link}"
    );
    assert_eq!(link["resolution"], "640x360", "{link}");
    let cam_link = &r["cameraLink"];
    assert_eq!(
        cam_link["clicked"], true,
        "no Play link for the camera: {cam_link}"
    );
    assert_eq!(
        cam_link["status"], "PLAYING",
        "camera from the Streams page: {cam_link}"
    );
    assert_eq!(cam_link["resolution"], "320x240", "{cam_link}");
    assert_eq!(cam.total_connections(), 1, "{}", cam.describe());
}
