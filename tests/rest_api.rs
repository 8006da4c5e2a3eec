//! The REST API (`POST /rest-api/...` with JSON bodies), driven with curl against a server with
//! real ffmpeg publishers and players.

mod common;

use common::*;
use serde_json::{json, Value};

fn assert_error_body(what: &str, body: &Value) {
    assert!(
        body["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{what}: expected a JSON body with a non-empty \"error\" string, got {body}"
    );
}

#[test]
fn find_all_is_404_without_streams() {
    let server = Server::start(&[]);
    for body in ["", "{}"] {
        let (status, v) = server.rest("stream/find_all", body);
        assert_eq!(
            status, 404,
            "find_all with body {body:?} and no streams: {v}"
        );
        assert_error_body("find_all without streams", &v);
    }
}

#[test]
fn live_stream_is_described_by_find_and_find_all() {
    let server = Server::start(&[]);
    let url = format!(
        "rtmp://127.0.0.1:{}/live/rest?room=a%20b&token=secret",
        server.rtmp_port
    );
    let mut publisher = publish_ffmpeg_sized(&url, 45, "640x360", &[]);

    // Publishing, with codec details known once the sequence headers went through.
    let (ok, v) = server.wait_stream("rest", secs(15), |v| {
        v.is_some_and(|v| {
            v["status"] == "PUBLISHING" && v["video"].is_object() && v["audio"].is_object()
        })
    });
    assert!(
        ok,
        "stream never PUBLISHING with video and audio: {v:?}\n{}",
        publisher.stderr()
    );
    let s = v.unwrap();
    assert_eq!(s["name"], "rest", "{s}");
    assert_eq!(s["app"], "live", "{s}");
    assert_eq!(s["video"]["codec"], "H264", "{s}");
    assert_eq!(s["video"]["width"], 640, "{s}");
    assert_eq!(s["video"]["height"], 360, "{s}");
    assert!(s["video"]["profile"].is_string(), "{s}");
    assert!(s["video"]["level"].is_string(), "{s}");
    assert!(
        s["video"]["profile"]
            .as_str()
            .unwrap()
            .to_lowercase()
            .contains("baseline"),
        "publisher sends H.264 baseline: {s}"
    );
    assert_eq!(s["audio"]["codec"], "AAC", "{s}");
    assert_eq!(s["audio"]["sample_rate"], 44100, "{s}");
    assert_eq!(s["audio"]["channels"], 2, "{s}");
    assert_eq!(s["publisher"]["protocol"], "rtmp", "{s}");
    let address = s["publisher"]["address"].as_str().unwrap_or_default();
    assert!(address.starts_with("127.0.0.1:"), "publisher address: {s}");
    // Query parameters are decoded; a token never shows.
    assert_eq!(
        s["publisher"]["query"]["room"], "a b",
        "publisher query: {s}"
    );
    assert!(
        s["publisher"]["query"].get("token").is_none(),
        "publisher query: {s}"
    );
    let started = s["started_at"].as_str().unwrap_or_default();
    assert!(
        started.len() >= 20 && started.as_bytes()[4] == b'-' && started.contains('T'),
        "started_at is not RFC 3339: {s}"
    );
    assert_eq!(s["players"]["rtmp"], 0, "{s}");
    assert_eq!(s["players"]["total"], 0, "{s}");

    // find with the app given explicitly, and find_all listing it.
    let (status, v) = server.rest(
        "stream/find",
        &json!({"name": "rest", "app": "live"}).to_string(),
    );
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["name"], "rest");
    let (status, all) = server.rest("stream/find_all", "{}");
    assert_eq!(status, 200, "{all}");
    let list = all
        .as_array()
        .unwrap_or_else(|| panic!("find_all is not an array: {all}"));
    assert_eq!(list.len(), 1, "{all}");
    assert_eq!(list[0]["name"], "rest");
    assert_eq!(list[0]["status"], "PUBLISHING");
    let (status, _) = server.rest("stream/find_all", "");
    assert_eq!(status, 200, "find_all with an empty body");

    // A player shows up in the counts while it plays, and bitrates are measured.
    let player = Player::spawn(&server.url("rest"), 10);
    let (ok, v) = server.wait_stream("rest", secs(10), |v| rtmp_players(v) == 1);
    assert!(ok, "players.rtmp never 1 while a player plays: {v:?}");
    let s = v.unwrap();
    assert_eq!(s["players"]["total"], 1, "{s}");
    assert_eq!(s["players"]["webrtc"], 0, "{s}");
    assert_eq!(s["players"]["websocket"], 0, "{s}");
    let (ok, v) = server.wait_stream("rest", secs(8), |v| {
        v.is_some_and(|v| {
            v["bitrate_in_kbps"].as_f64().unwrap_or(0.0) > 50.0
                && v["bitrate_out_kbps"].as_f64().unwrap_or(0.0) > 50.0
        })
    });
    assert!(
        ok,
        "bitrates not measured (600k video published, one player): {v:?}"
    );
    let played = player.finish(secs(30));
    assert_decoded("REST test player", &played, 10);
    let (ok, v) = server.wait_stream("rest", secs(8), |v| rtmp_players(v) == 0);
    assert!(
        ok,
        "players.rtmp not back to 0 after the player left: {v:?}"
    );
    assert!(publisher.is_running());
}

#[test]
fn find_unknown_stream_is_404() {
    let server = Server::start(&[]);
    let (status, v) = server.rest("stream/find", r#"{"name":"nope"}"#);
    assert_eq!(status, 404, "{v}");
    assert_error_body("find unknown", &v);
    let (status, v) = server.rest("stream/find", r#"{"name":"nope","app":"other"}"#);
    assert_eq!(status, 404, "{v}");
    assert_error_body("find unknown on another app", &v);
}

#[test]
fn terminate_cuts_the_publisher_and_tells_players() {
    let server = Server::start(&[]);
    let url = server.url("cut");
    let mut publisher = publish_ffmpeg(&url, 45, &[]);
    wait_live(server.rtmp_port, "live", "cut", secs(15));
    let mut scripted = RtmpClient::player(server.rtmp_port, "live", "cut").expect("RTMP player");
    scripted
        .wait_for(secs(5), |e| matches!(e, Event::Video { .. }))
        .unwrap_or_else(|seen| panic!("no video before terminate: {}", summarize(&seen)));

    let (status, v) = server.rest("stream/terminate", r#"{"name":"nope"}"#);
    assert_eq!(status, 404, "terminate unknown: {v}");
    assert_error_body("terminate unknown", &v);

    let (status, v) = server.rest("stream/terminate", r#"{"name":"cut"}"#);
    assert_eq!(status, 200, "terminate: {v}");

    // The publisher's connection is cut: ffmpeg fails.
    let ended = publisher.wait_timeout(secs(10));
    assert!(
        ended.is_some(),
        "publisher still running 10 s after terminate"
    );
    // The player is told (UnpublishNotify, a stop or EOF status, or a close).
    let told = scripted.wait_for(secs(10), |e| match e {
        Event::Status { code, .. } => {
            code.contains("Unpublish") || code.contains("Stop") || code.contains("EOF")
        }
        Event::Closed => true,
        _ => false,
    });
    assert!(
        told.is_ok(),
        "player not told of the terminate: {:?}",
        told.err()
    );

    let (ok, v) = server.wait_stream("cut", secs(10), |v| {
        v.is_none_or(|v| v["status"] != "PUBLISHING")
    });
    assert!(ok, "stream still PUBLISHING after terminate: {v:?}");

    // The name is free again: a new publisher is accepted and plays.
    let _again = publish_ffmpeg(&url, 30, &[]);
    let (ok, v) = server.wait_stream("cut", secs(15), |v| {
        v.is_some_and(|v| v["status"] == "PUBLISHING")
    });
    assert!(ok, "republish after terminate not PUBLISHING: {v:?}");
    let played = play_count(&url, 3);
    assert_decoded("player after terminate + republish", &played, 3);
}

#[test]
fn bad_requests_get_json_errors() {
    let server = Server::start(&[]);
    for (path, body) in [
        ("stream/find", "{not json"),
        ("stream/find", "{}"),
        ("stream/find", r#"{"app":"live"}"#),
        ("stream/find", r#"{"name":42}"#),
        ("stream/terminate", "[1,2"),
        ("stream/terminate", "{}"),
    ] {
        let (status, v) = server.rest(path, body);
        assert_eq!(status, 400, "POST {path} {body:?}: {v}");
        assert_error_body(&format!("POST {path} {body:?}"), &v);
    }
    for path in ["/rest-api/nope", "/rest-api/stream/nope", "/nope"] {
        let (status, v) = server.rest(path, "{}");
        assert_eq!(status, 404, "POST {path}: {v}");
        assert_error_body(&format!("POST {path}"), &v);
    }
}

#[test]
fn waiting_and_unpublished_statuses() {
    let server = Server::start(&[
        ("stream.play_wait_timeout_ms", "20000"),
        ("stream.unpublish_grace_ms", "20000"),
    ]);
    // A player before any publisher: the stream is WAITING, with no publisher.
    let mut player = RtmpClient::player(server.rtmp_port, "live", "st").expect("RTMP player");
    let (ok, v) = server.wait_stream("st", secs(5), |v| {
        v.is_some_and(|v| v["status"] == "WAITING")
    });
    assert!(
        ok,
        "a player waiting for a publisher: expected status WAITING, got {v:?}"
    );
    let s = v.unwrap();
    assert!(s["publisher"].is_null(), "{s}");
    assert_eq!(s["players"]["rtmp"], 1, "{s}");

    // Published for 4 s.
    let mut publisher = publish_ffmpeg(&server.url("st"), 4, &[]);
    let (ok, v) = server.wait_stream("st", secs(10), |v| {
        v.is_some_and(|v| v["status"] == "PUBLISHING")
    });
    assert!(ok, "never PUBLISHING: {v:?}");
    player
        .wait_for(secs(5), |e| matches!(e, Event::Video { .. }))
        .unwrap_or_else(|seen| panic!("waiting player got no video: {}", summarize(&seen)));

    // The publisher leaves while the player stays: UNPUBLISHED.
    publisher.wait_timeout(secs(15)).expect("publisher ends");
    let (ok, v) = server.wait_stream("st", secs(5), |v| {
        v.is_some_and(|v| v["status"] == "UNPUBLISHED")
    });
    assert!(
        ok,
        "publisher gone with a player attached: expected UNPUBLISHED, got {v:?}"
    );
    let s = v.unwrap();
    assert!(s["publisher"].is_null(), "{s}");
    assert_eq!(s["players"]["rtmp"], 1, "{s}");
    assert!(!player.is_closed());
}

#[test]
fn player_counts_follow_many_short_players() {
    let server = Server::start(&[]);
    let url = server.url("churn");
    let _publisher = publish_ffmpeg(&url, 40, &[]);
    wait_live(server.rtmp_port, "live", "churn", secs(15));
    let steady = Player::spawn(&url, 12);
    for round in 0..5 {
        let mut batch: Vec<RtmpClient> = (0..6)
            .map(|_| RtmpClient::player(server.rtmp_port, "live", "churn").expect("RTMP player"))
            .collect();
        for c in batch.iter_mut() {
            c.wait_for(secs(5), |e| matches!(e, Event::Video { .. }))
                .unwrap_or_else(|seen| panic!("round {round}: no video: {}", summarize(&seen)));
        }
        let (ok, v) = server.wait_stream("churn", secs(5), |v| rtmp_players(v) >= 7);
        assert!(
            ok,
            "round {round}: 6 short players + 1 steady not counted: {v:?}"
        );
        drop(batch);
    }
    let (ok, v) = server.wait_stream("churn", secs(8), |v| rtmp_players(v) == 1);
    assert!(ok, "short players not uncounted after they left: {v:?}");
    let played = steady.finish(secs(30));
    assert_decoded("steady player through the churn", &played, 12);
    let (ok, v) = server.wait_stream("churn", secs(8), |v| rtmp_players(v) == 0);
    assert!(ok, "players.rtmp not 0 after everyone left: {v:?}");
}
