//! The media WebSocket `/ws/play` (#6) at the protocol level: statuses, init segments and
//! fragments that ffprobe decodes, AAC made from a camera's G.711 (while RTMP players keep the
//! G.711), a new init segment on a republish with another resolution, slow and stalled viewers,
//! and bad requests. Browsers playing it (MSE) are in `ws_play.rs`.

mod common;

use common::ws_media::{decode_errors, probe_frame_counts, WsMediaClient, WsMessage};
use common::*;
use std::time::{Duration, Instant};

fn websocket_players(v: Option<&serde_json::Value>) -> i64 {
    v.and_then(|v| v["players"]["websocket"].as_i64())
        .unwrap_or(-1)
}

/// x264 high profile with two B-frames, a keyframe every second.
const B_FRAMES: [&str; 8] = [
    "-profile:v",
    "high",
    "-bf",
    "2",
    "-tune",
    "film",
    "-preset",
    "veryfast",
];

#[test]
fn a_b_frame_stream_arrives_as_fmp4_that_ffprobe_decodes() {
    let server = Server::start(&[]);
    let _publisher = publish_ffmpeg(&server.url("bf"), 30, &B_FRAMES);
    wait_live(server.rtmp_port, "live", "bf", secs(15));
    let (ok, v) = server.wait_stream("bf", secs(10), |v| {
        v.is_some_and(|v| v["video"]["b_frames"] == true)
    });
    assert!(ok, "REST should flag the stream's B-frames: {v:?}");

    let mut client = WsMediaClient::play(server.http_port, "live/bf").expect("media socket");
    let mut got = client.receive(secs(1));
    let (ok, v) = server.wait_stream("bf", secs(5), |v| websocket_players(v) == 1);
    assert!(ok, "REST should count one websocket player: {v:?}");
    client.receive_into(&mut got, secs(4));

    assert_eq!(
        got.status_names()[..2],
        ["PENDING", "PLAYING"],
        "{:?}",
        got.statuses
    );
    let playing = &got.statuses[1];
    assert_eq!(playing["name"], "live/bf");
    assert_eq!(playing["info"]["video"], "H264", "{playing}");
    assert_eq!(playing["info"]["audio"], "AAC", "{playing}");
    assert_eq!(playing["info"]["bFrames"], true, "{playing}");
    assert_eq!(got.inits.len(), 1, "{:?}", got.inits);
    let mime = got.inits[0]["mime"].as_str().unwrap_or_default();
    assert!(
        mime.starts_with("video/mp4; codecs=\"avc1.64") && mime.contains("mp4a.40.2"),
        "{mime}"
    );
    assert_eq!(&got.media[4..8], b"ftyp", "the init segment comes first");
    let first = got.first_fragment.expect("fragments");
    eprintln!(
        "first fragment {first:?} after the socket opened; {} fragments",
        got.fragments
    );
    assert!(
        first < secs(2),
        "the GOP cache should start the player at once: {first:?}"
    );

    let dir = TempDir::new("ws-bf");
    let file = got.save(&dir, "bf.mp4");
    let counts = probe_frame_counts(&file);
    eprintln!("ffprobe: {counts:?}");
    // 5 s of 30 fps plus the GOP cache's head start; audio 44.1 kHz in 1024-sample frames.
    assert!(counts.of("h264") >= 120, "{counts:?}");
    assert!(counts.of("aac") >= 170, "{counts:?}");
    let errors = decode_errors(&file);
    assert!(errors.is_empty(), "decode errors: {errors}");

    drop(client);
    let (ok, v) = server.wait_stream("bf", secs(5), |v| websocket_players(v) == 0);
    assert!(
        ok,
        "the closed socket's player should leave the stream: {v:?}"
    );
}

/// A camera's G.711 goes to MSE players as AAC (transcoded once for the stream), while an RTMP
/// player of the same stream keeps getting only the G.711, not both codecs.
#[test]
fn a_g711_camera_plays_with_aac_while_rtmp_keeps_g711() {
    let cam = Camera::start(CameraOpts::default().audio("pcma"));
    let server = Server::start(&[]);
    let mut client = WsMediaClient::play(server.http_port, &cam.url()).expect("media socket");
    let got = client.receive(secs(6));
    assert!(
        got.status_names().contains(&"PLAYING".to_string()),
        "{:?}\n{}",
        got.statuses,
        cam.describe()
    );
    let init = got.inits.last().expect("an init segment");
    assert_eq!(init["audio"], "AAC", "{init}");

    // An RTMP player of the same camera while the WebSocket player (and its AAC) goes on.
    let mut client2 = WsMediaClient::play(server.http_port, &cam.url()).expect("second socket");
    let rtmp = Player::spawn(&server.camera_play_url(&cam.url()), 4);
    let got2 = client2.receive(secs(5));
    let played = rtmp.finish(secs(30));
    // G.711 comes in packets of 128 ms: count only that audio decodes.
    assert!(played.success() && played.video >= 75, "{played:?}");
    assert!(played.audio > 0, "RTMP player decoded no audio: {played:?}");

    let dir = TempDir::new("ws-g711");
    for (label, received) in [("first", &got), ("second", &got2)] {
        let counts = probe_frame_counts(&received.save(&dir, &format!("{label}.mp4")));
        eprintln!("{label} WebSocket player: {counts:?}");
        // 48 kHz AAC: 47 frames a second; allow for the transcoder's start.
        assert!(counts.of("aac") >= 100, "{label}: AAC frames {counts:?}");
        assert!(counts.of("h264") >= 75, "{label}: video frames {counts:?}");
    }
    let codecs = std::process::Command::new("ffprobe")
        .args(["-v", "error", "-rw_timeout", "15000000", "-show_entries"])
        .args(["stream=codec_name", "-of", "csv=p=0"])
        .arg(server.camera_play_url(&cam.url()))
        .output()
        .expect("ffprobe");
    let codecs = String::from_utf8_lossy(&codecs.stdout).to_string();
    let mut codecs: Vec<&str> = codecs.lines().map(str::trim).collect();
    codecs.sort();
    assert_eq!(
        codecs,
        ["h264", "pcm_alaw"],
        "RTMP gets one audio codec, the camera's"
    );
}

#[test]
fn a_republish_with_another_resolution_brings_a_new_init_segment() {
    republish_from_320x240_to("640x480", 2);
}

#[test]
fn a_republish_with_the_same_parameters_goes_on_without_a_new_init_segment() {
    republish_from_320x240_to("320x240", 1);
}

/// A player of a 320x240 publisher that leaves and comes back at `size`: UNPUBLISHED, PLAYING
/// again, `inits` init segments in all, and fragments after the comeback.
fn republish_from_320x240_to(size: &str, inits: usize) {
    let server = Server::start(&[("stream.unpublish_grace_ms", "8000")]);
    let url = server.url("resize");
    let mut first = publish_ffmpeg_sized(&url, 4, "320x240", &[]);
    wait_live(server.rtmp_port, "live", "resize", secs(15));
    let mut client = WsMediaClient::play(server.http_port, "resize").expect("media socket");
    let mut got = client.receive(secs(2));
    first.wait_timeout(secs(10));
    let _second = publish_ffmpeg_sized(&url, 10, size, &[]);
    let started = Instant::now();
    while got.status_names().len() < 4 && started.elapsed() < secs(15) && got.close.is_none() {
        client.receive_into(&mut got, Duration::from_millis(500));
    }
    let before = got.fragments;
    client.receive_into(&mut got, secs(2));
    let statuses = got.status_names();
    eprintln!("statuses {statuses:?}, inits {:?}", got.inits);
    assert_eq!(
        statuses,
        ["PENDING", "PLAYING", "UNPUBLISHED", "PLAYING"],
        "{:?}",
        got.statuses
    );
    assert_eq!(got.inits.len(), inits, "{:?}", got.inits);
    assert!(
        got.fragments >= before + 40,
        "fragments must go on after the republish: {before} then {}",
        got.fragments
    );
    assert!(got.close.is_none(), "{:?}", got.close);
}

/// A viewer that stops reading skips, then is disconnected after `stream.player_max_lag_ms`;
/// a reading viewer and an RTMP player of the same stream are not slowed.
#[test]
fn a_stalled_websocket_player_is_dropped_and_does_not_slow_others() {
    let server = Server::start(&[
        ("stream.player_max_lag_ms", "2000"),
        ("websocket.max_delay_ms", "1000"),
    ]);
    let url = server.url("stall");
    let _publisher = publish_ffmpeg(&url, 40, &CBR_8M);
    wait_live(server.rtmp_port, "live", "stall", secs(15));
    let mut stalled = WsMediaClient::play(server.http_port, "stall").expect("stalled socket");
    let got = stalled.receive(Duration::from_millis(1500));
    assert!(
        got.fragments > 0,
        "the stalled-to-be player got nothing: {got:?}"
    );
    // `stalled` never reads again.
    let stalled_at = Instant::now();
    let rtmp = Player::spawn(&url, 20);
    let mut reader = WsMediaClient::play(server.http_port, "stall").expect("reading socket");
    let (ok, v) = server.wait_stream("stall", secs(10), |v| websocket_players(v) == 2);
    assert!(ok, "two websocket players: {v:?}");

    let mut read = reader.receive(secs(1));
    let (ok, v) = server.wait_stream("stall", secs(30), |v| websocket_players(v) == 1);
    let dropped_after = stalled_at.elapsed();
    eprintln!("stalled WebSocket player dropped {dropped_after:?} after it stopped reading");
    assert!(ok, "the stalled player was not dropped: {v:?}");
    assert!(
        dropped_after >= Duration::from_millis(1500),
        "{dropped_after:?}"
    );

    reader.receive_into(&mut read, secs(8));
    assert!(
        read.close.is_none(),
        "the reading player was closed: {:?}",
        read.close
    );
    assert!(
        !read
            .status_names()
            .contains(&"NOT_ENOUGH_BANDWIDTH".to_string()),
        "the reading player had to skip: {:?}",
        read.statuses
    );
    // About 10 s at 30 fps plus audio, one frame per fragment.
    assert!(
        read.fragments >= 400,
        "reading player starved: {} fragments",
        read.fragments
    );
    let played = rtmp.finish(secs(45));
    assert_decoded(
        "RTMP player next to a stalled WebSocket player",
        &played,
        20,
    );

    // The stalled client finds its connection ended once it drains what was buffered.
    let deadline = Instant::now() + secs(20);
    while !stalled.closed && Instant::now() < deadline {
        if let Some(WsMessage::Close(..)) = stalled.next(secs(1)) {
            break;
        }
    }
    assert!(
        stalled.closed,
        "the stalled player's connection is still open"
    );
}

/// A viewer whose link is slower than the stream skips to keyframes (told NOT_ENOUGH_BANDWIDTH)
/// and keeps playing what it gets: fragments that still decode, from keyframes on.
#[test]
fn a_slow_websocket_player_skips_to_keyframes_and_plays_on() {
    let server = Server::start(&[("websocket.max_delay_ms", "1000")]);
    let url = server.url("slow");
    let _publisher = publish_ffmpeg(&url, 30, &CBR_8M);
    wait_live(server.rtmp_port, "live", "slow", secs(15));
    let mut slow =
        WsMediaClient::open_with(server.http_port, "name=slow", Some(64 * 1024)).expect("socket");
    // About 2.6 Mbit/s against 8.
    slow.throttle(16 * 1024, Duration::from_millis(50));
    let got = slow.receive(secs(10));
    let statuses = got.status_names();
    eprintln!("slow player: {statuses:?}, {} fragments", got.fragments);
    assert!(
        statuses.contains(&"NOT_ENOUGH_BANDWIDTH".to_string()),
        "{statuses:?}"
    );
    assert!(got.close.is_none() && !slow.closed, "{:?}", got.close);
    assert!(got.fragments > 100, "{} fragments", got.fragments);
    let errors = decode_errors(&got.save(&TempDir::new("ws-slow"), "slow.mp4"));
    assert!(
        errors.is_empty(),
        "what a slow player got must decode: {errors}"
    );
}

#[test]
fn bad_requests_get_clear_answers_and_break_nothing() {
    let server = Server::start(&[("stream.play_wait_timeout_ms", "1500")]);
    let _publisher = publish_ffmpeg(&server.url("fine"), 30, &[]);
    wait_live(server.rtmp_port, "live", "fine", secs(15));
    let mut watcher = WsMediaClient::play(server.http_port, "fine").expect("watcher");
    let mut watched = watcher.receive(secs(1));
    assert!(watched.fragments > 0, "{watched:?}");

    for (query, expected) in [
        ("", "'name' is missing"),
        ("name=", "'name' is missing"),
        ("name=rtsp%3A%2F%2F%5B%3A%3A1", "bad camera URL"),
    ] {
        let refused = WsMediaClient::open(server.http_port, query).err();
        let refused = refused.unwrap_or_else(|| panic!("query {query:?} was accepted"));
        assert!(refused.starts_with("HTTP/1.1 400"), "{query:?}: {refused}");
        assert!(refused.contains(expected), "{query:?}: {refused}");
    }
    // Not a WebSocket upgrade at all.
    let (status, _) = http_get(server.http_port, "/ws/play?name=fine");
    assert_eq!(status, 400, "a plain GET of the media socket");

    // An unknown stream: PENDING, then FAILED after the play wait, then the close.
    let mut unknown = WsMediaClient::play(server.http_port, "nobody").expect("socket");
    let got = unknown.receive(secs(5));
    assert_eq!(
        got.status_names(),
        ["PENDING", "FAILED"],
        "{:?}",
        got.statuses
    );
    assert_eq!(got.statuses[1]["reason"], "stream not found");
    assert!(got.close.is_some() && got.fragments == 0, "{got:?}");

    // Garbage instead of WebSocket frames: that socket ends, nothing else does.
    let mut junk = WsMediaClient::play(server.http_port, "fine").expect("socket");
    junk.receive(Duration::from_millis(500));
    junk.send_raw(&[0xff; 64]);
    junk.send_raw(b"GET / HTTP/1.1\r\n\r\n");
    let got = junk.receive(secs(4));
    assert!(
        junk.closed,
        "the server should end a socket sending garbage: {:?}",
        got.statuses
    );

    // A client stop: STOPPED, then the close.
    let mut stopper = WsMediaClient::play(server.http_port, "fine").expect("socket");
    stopper.receive(Duration::from_millis(500));
    stopper.send_frame(0x1, br#"{"type":"stop"}"#);
    let got = stopper.receive(secs(3));
    let last = got.statuses.last().expect("a status");
    assert_eq!(last["status"], "STOPPED", "{:?}", got.statuses);
    assert_eq!(last["reason"], "stopped by client");
    assert!(got.close.is_some(), "{got:?}");

    watcher.receive_into(&mut watched, secs(3));
    assert!(watched.close.is_none(), "{:?}", watched.close);
    assert!(
        watched.fragments > 150,
        "the watcher stalled: {}",
        watched.fragments
    );
    let (ok, v) = server.wait_stream("fine", secs(5), |v| websocket_players(v) == 1);
    assert!(ok, "only the watcher is left: {v:?}");
}

/// A plain HTTP GET: the status code and body.
fn http_get(port: u16, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream.set_read_timeout(Some(secs(5))).expect("timeout");
    let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).expect("send");
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    let status = answer
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, answer)
}
