//! The browser SDK's tokens (issue #8), end to end in headless Chromium: with an application
//! secret set, every publish and play needs a signed token; `tests/browser/sdk_access.mjs` plays
//! and publishes through `web/sdk/mediarouter.js` with and without them, over WebRTC and over the
//! media WebSocket, and prints what each case got.
//!
//! What must hold: the stream's `token` option goes with the play (WebRTC) and on the media
//! WebSocket's URL (`'ws'`, with the session's `appKey` for a bare name), the session's token is
//! used when the stream has none, a publish carries its token, and the refusals reach the page
//! with the server's reason.

mod common;

use common::webrtc::*;
use common::*;
use serde_json::Value;

const SECRET: &str = "sdk-access-secret-0123456789";

/// A token of the default application's secret (`mediarouter token`).
fn mint(stream: &str, action: &str) -> String {
    mint_token(
        SECRET,
        &["--stream", stream, "--action", action, "--ttl", "1h"],
    )
}

fn assert_plays(label: &str, c: &Value) {
    let want = if label.starts_with("publish") {
        "PUBLISHING"
    } else {
        "PLAYING"
    };
    assert_eq!(c["status"], want, "{label}: {c}");
    assert!(
        c["frames"].as_u64().unwrap_or(0) > 0,
        "{label}: no frame decoded (sent): {c}"
    );
}

fn assert_refused(label: &str, c: &Value, reason: &str) {
    assert_eq!(c["status"], "FAILED", "{label} must be refused: {c}");
    assert_eq!(c["reason"], reason, "{label}: {c}");
    assert!(
        c["error"].as_str().unwrap_or("").contains(reason),
        "{label}: the promise must reject with the reason: {c}"
    );
}

/// Plays and publishes through the SDK with and without tokens.
#[test]
fn sdk_tokens_go_with_plays_publishes_and_the_media_websocket() {
    let server = start_server(&[("app.token_secret", SECRET)]);
    let (name, publish_name) = ("tok", "pubtok");
    let play_token = mint(name, "play");
    let rtmp_url = format!("{}?token={}", server.url(name), mint(name, "publish"));
    let _publisher = publish_ffmpeg(&rtmp_url, 90, &[]);
    wait_publishing(&server, name);

    let r = run_script(
        "sdk_access.mjs",
        &args(&[
            "--base",
            &web_base(&server),
            "--name",
            name,
            "--play-token",
            &play_token,
            "--other-token",
            &mint("other", "play"),
            "--publish-name",
            publish_name,
            "--publish-token",
            &mint(publish_name, "publish"),
            "--deadline-ms",
            "150000",
        ]),
        secs(160),
    );
    let c = &r["cases"];
    let required = "a token is required";
    assert_refused("WebRTC play without a token", &c["webrtcNoToken"], required);
    assert_plays("WebRTC play, stream token", &c["webrtcStreamToken"]);
    assert_plays("WebRTC play, session token", &c["webrtcSessionToken"]);
    assert_refused(
        "WebRTC play, another stream's token",
        &c["webrtcOtherToken"],
        "the token is for another stream",
    );
    assert_refused("ws play without a token", &c["wsNoToken"], required);
    assert_plays("ws play, stream token", &c["wsStreamToken"]);
    assert_plays("ws play, session token", &c["wsSessionToken"]);
    for case in ["wsStreamToken", "wsSessionToken"] {
        let url = c[case]["wsUrl"].as_str().unwrap_or("");
        assert!(
            url.contains(&format!("name={name}"))
                && url.contains("appKey=live")
                && url.contains(&format!("token={play_token}")),
            "{case}: the media WebSocket URL: {url}"
        );
    }
    assert!(
        !c["wsNoToken"]["wsUrl"]
            .as_str()
            .unwrap_or("token=")
            .contains("token="),
        "no token on the URL without one: {}",
        c["wsNoToken"]
    );
    assert_refused("publish without a token", &c["publishNoToken"], required);
    assert_plays("publish, stream token", &c["publishToken"]);
}
