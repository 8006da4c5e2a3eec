//! Access control (issue #8), end to end with real clients: applications (`[app]`,
//! `[apps.KEY]`), backend hooks answered by a real HTTP backend started by the test
//! (`common/backend.rs`), signed tokens minted by `mediarouter token`, private streams and the
//! REST API key.
//!
//! Clients: ffmpeg and ffprobe (publish, play, "Server error: REASON"), the scripted RTMP client
//! of `common` (exact `onStatus` codes and descriptions, media messages counted), a raw RTMP
//! connect (the `_error` of a refused connect and the close after it), the media WebSocket
//! client of `common/ws_media.rs` (`/ws/play`), a small signalling client on `/ws` written here,
//! and headless Chromium (`tests/browser/play.mjs`) for a WebRTC play the backend allowed.

mod common;

#[path = "common/backend.rs"]
mod backend;

use backend::{Answer, Backend};
use common::webrtc::{assert_page_played, run_script, scenario_args, wait_publishing};
use common::ws_media::{client_frame, Received, WsMediaClient};
use common::*;
use rml_rtmp::chunk_io::{ChunkDeserializer, ChunkSerializer};
use rml_rtmp::messages::RtmpMessage;
use rml_rtmp::rml_amf0::Amf0Value;
use rml_rtmp::time::RtmpTimestamp;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The token secret of the tests' applications.
const SECRET: &str = "access-test-secret-0123456789";
/// The REST API key of the API key test.
const API_KEY: &str = "rest-api-key-0123456789abcdef";

// ------------------------------------------------------------------------------------------------
// Helpers
// ------------------------------------------------------------------------------------------------

/// Starts a server with these overrides (owned values, for URLs and ports built at run time).
fn start(overrides: &[(&str, String)]) -> Server {
    let o: Vec<(&str, &str)> = overrides.iter().map(|(k, v)| (*k, v.as_str())).collect();
    Server::start(&o)
}

/// Starts a server with WebRTC on loopback (its own UDP range) and these overrides.
fn start_webrtc(overrides: &[(&str, String)]) -> Server {
    let o: Vec<(&str, &str)> = overrides.iter().map(|(k, v)| (*k, v.as_str())).collect();
    common::webrtc::start_server(&o)
}

/// `mediarouter token --secret SECRET ARGS...`: the token it prints.
fn mint(args: &[&str]) -> String {
    mint_token(SECRET, args)
}

/// A token for `action` on `stream` (one hour).
fn token_for(stream: &str, action: &str) -> String {
    mint(&["--stream", stream, "--action", action])
}

/// The first `onStatus` of level `error` with its code and description, if any.
fn error_status(events: &[Event]) -> Option<(String, String)> {
    events.iter().find_map(|e| match e {
        Event::Status {
            code,
            level,
            description,
        } if level == "error" => Some((code.clone(), description.clone())),
        _ => None,
    })
}

fn media_messages(events: &[Event]) -> usize {
    events.iter().filter(|e| e.is_media()).count()
}

fn has_video(events: &[Event]) -> bool {
    events.iter().any(|e| matches!(e, Event::Video { .. }))
}

/// Plays `name` (which may carry a query) in `app` with the scripted RTMP client: everything up
/// to the first video message or error status (at most 15 s), then `linger` more of what comes.
fn rtmp_play(port: u16, app: &str, name: &str, linger: Duration) -> Vec<Event> {
    let mut c = RtmpClient::player(port, app, name)
        .unwrap_or_else(|e| panic!("RTMP play of {app}/{name}: {e}"));
    rtmp_play_on(&mut c, linger)
}

fn rtmp_play_on(c: &mut RtmpClient, linger: Duration) -> Vec<Event> {
    let mut seen = match c.wait_for(secs(15), |e| {
        matches!(e, Event::Video { .. })
            || matches!(e, Event::Status { level, .. } if level == "error")
    }) {
        Ok((e, mut seen)) => {
            seen.push(e);
            seen
        }
        Err(seen) => seen,
    };
    let deadline = Instant::now() + linger;
    while let Some(e) = c.next_event(deadline.saturating_duration_since(Instant::now())) {
        let closed = e == Event::Closed;
        seen.push(e);
        if closed {
            break;
        }
    }
    seen
}

/// Asserts an RTMP play was refused with `NetStream.Play.Failed` and this description, and that
/// not one media message arrived (watching 1.5 s after the refusal).
fn assert_rtmp_play_refused(port: u16, app: &str, name: &str, reason: &str) {
    let events = rtmp_play(port, app, name, ms(1500));
    assert_eq!(
        error_status(&events),
        Some(("NetStream.Play.Failed".to_string(), reason.to_string())),
        "play of {app}/{name}: {}",
        summarize(&events)
    );
    assert_eq!(
        media_messages(&events),
        0,
        "a refused player got media: {}",
        summarize(&events)
    );
}

/// Asserts an RTMP play gets video and no error status.
fn assert_rtmp_plays(port: u16, app: &str, name: &str) {
    let events = rtmp_play(port, app, name, ms(0));
    assert!(
        has_video(&events) && error_status(&events).is_none(),
        "play of {app}/{name} should get video: {}",
        summarize(&events)
    );
}

/// Publishes with the scripted RTMP client and returns the first error status (None when
/// `NetStream.Publish.Start` came).
fn rtmp_publish_refusal(port: u16, app: &str, name: &str) -> Option<(String, String)> {
    let mut c =
        RtmpClient::connect(port, app).unwrap_or_else(|e| panic!("RTMP connect to {app}: {e}"));
    c.publish(name).expect("send publish");
    let (e, seen) = c
        .wait_for(secs(10), |e| matches!(e, Event::Status { .. }))
        .unwrap_or_else(|seen| panic!("no answer to publish {name}: {}", summarize(&seen)));
    match e {
        Event::Status { ref code, .. } if code == "NetStream.Publish.Start" => None,
        other => error_status(&[other]).or_else(|| panic!("publish {name}: {seen:?}")),
    }
}

/// An ffmpeg publisher expected to be refused: it exits non-zero within 15 s and its stderr
/// has `Server error: REASON`.
fn assert_ffmpeg_publish_refused(url: &str, reason: &str) {
    let mut p = publish_ffmpeg(url, 10, &[]);
    let status = p.wait_timeout(secs(15));
    let stderr = p.stderr();
    assert!(
        status.is_some_and(|s| !s.success()),
        "ffmpeg publishing {url} should fail: {status:?} {stderr}"
    );
    assert!(
        stderr.contains(&format!("Server error: {reason}")),
        "ffmpeg publishing {url} should print the reason '{reason}': {stderr}"
    );
}

/// Waits until REST shows `name` (in the default application) publishing.
fn wait_published(server: &Server, name: &str, publisher: &mut Proc) {
    let (ok, v) = server.wait_stream(name, secs(20), |v| {
        v.is_some_and(|v| v["status"] == "PUBLISHING" && v["video"]["width"].is_u64())
    });
    assert!(
        ok,
        "{name} not publishing within 20 s: {v:?}\n{}",
        publisher.stderr()
    );
}

/// What a media WebSocket player got until the server closed it (at most `timeout`).
fn ws_play(server: &Server, query: &str, timeout: Duration) -> Received {
    let mut c = WsMediaClient::open(server.http_port, query)
        .unwrap_or_else(|e| panic!("/ws/play?{query}: {e}"));
    c.receive(timeout)
}

/// Asserts a media WebSocket play was refused: PENDING, then FAILED with `reason`, the socket
/// closed, and never an init segment or a binary message.
fn assert_ws_refused(server: &Server, query: &str, reason: &str) {
    let started = Instant::now();
    let got = ws_play(server, query, secs(10));
    assert_eq!(
        got.status_names(),
        ["PENDING", "FAILED"],
        "/ws/play?{query}: {:?}",
        got.statuses
    );
    assert_eq!(
        got.statuses[1]["reason"], reason,
        "/ws/play?{query}: {:?}",
        got.statuses
    );
    assert!(
        got.inits.is_empty() && got.media.is_empty() && got.fragments == 0,
        "a refused WebSocket player got media: inits {:?}, {} bytes",
        got.inits,
        got.media.len()
    );
    assert!(
        started.elapsed() < secs(9),
        "the refused socket was not closed: {got:?}"
    );
}

/// Asserts a media WebSocket play gets PLAYING, an init segment and fragments within 6 s.
fn assert_ws_plays(server: &Server, query: &str) {
    let mut c = WsMediaClient::open(server.http_port, query)
        .unwrap_or_else(|e| panic!("/ws/play?{query}: {e}"));
    let mut got = Received::default();
    let deadline = Instant::now() + secs(6);
    while got.fragments < 10 && got.close.is_none() && !c.closed && Instant::now() < deadline {
        c.receive_into(&mut got, ms(300));
    }
    assert!(
        got.status_names()
            .starts_with(&["PENDING".into(), "PLAYING".into()])
            && got.inits.len() == 1
            && got.fragments >= 10,
        "/ws/play?{query} should play: statuses {:?}, inits {:?}, {} fragments",
        got.statuses,
        got.inits,
        got.fragments
    );
}

/// POSTs `body` to `/rest-api/PATH` with these extra headers with curl: (status, JSON body).
fn rest_with_headers(port: u16, path: &str, body: &str, headers: &[&str]) -> (u16, Value) {
    let mut cmd = Command::new("curl");
    cmd.args(["-s", "-o", "-", "-w", "\n%{http_code}", "--max-time", "5"])
        .args(["-X", "POST", "-H", "Content-Type: application/json"]);
    for h in headers {
        cmd.args(["-H", h]);
    }
    let out = cmd
        .args(["--data-binary", body])
        .arg(format!("http://127.0.0.1:{port}/rest-api/{path}"))
        .stdin(Stdio::null())
        .output()
        .expect("run curl");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", text.as_str()));
    (
        code.trim().parse().unwrap_or(0),
        serde_json::from_str(body).unwrap_or_else(|_| Value::String(body.to_string())),
    )
}

// ------------------------------------------------------------------------------------------------
// A raw RTMP connect: the exact answer to `connect`, and whether the server closes after it
// ------------------------------------------------------------------------------------------------

#[derive(Debug)]
struct ConnectAnswer {
    /// `_result` or `_error`.
    command: String,
    code: String,
    description: String,
    /// From sending `connect` to its answer.
    elapsed: Duration,
    /// The server closed the connection within 3 s of its answer.
    closed: bool,
}

/// The `connect` command (transaction 1) with this `app` property (which may carry a query
/// string) and the matching tcUrl.
fn connect_command(port: u16, app: &str) -> RtmpMessage {
    let props: HashMap<String, Amf0Value> = [
        ("app", Amf0Value::Utf8String(app.into())),
        (
            "tcUrl",
            Amf0Value::Utf8String(format!("rtmp://127.0.0.1:{port}/{app}")),
        ),
        ("objectEncoding", Amf0Value::Number(0.0)),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    RtmpMessage::Amf0Command {
        command_name: "connect".into(),
        transaction_id: 1.0,
        command_object: Amf0Value::Object(props),
        additional_arguments: vec![],
    }
}

/// Handshake, then `connect` with this `app` property (which may carry a query string).
fn rtmp_connect_raw(port: u16, app: &str) -> ConnectAnswer {
    let (mut socket, mut input) = rtmp_handshake(port, secs(5)).expect("RTMP handshake");
    let mut ser = ChunkSerializer::new();
    let mut de = ChunkDeserializer::new();
    let connect = connect_command(port, app);
    let payload = connect
        .into_message_payload(RtmpTimestamp::new(0), 0)
        .expect("connect payload");
    let packet = ser
        .serialize(&payload, false, false)
        .expect("connect chunk");
    let sent = Instant::now();
    socket.write_all(&packet.bytes).expect("send connect");
    socket.set_read_timeout(Some(ms(100))).ok();
    let mut answer: Option<ConnectAnswer> = None;
    let mut buf = vec![0u8; 65536];
    loop {
        let mut bytes: &[u8] = &input;
        while let Some(p) = de.get_next_message(bytes).expect("server RTMP chunks") {
            bytes = &[];
            match p.to_rtmp_message() {
                Ok(RtmpMessage::SetChunkSize { size }) => {
                    de.set_max_chunk_size(size as usize).expect("chunk size");
                }
                Ok(RtmpMessage::Amf0Command {
                    command_name,
                    transaction_id,
                    mut additional_arguments,
                    ..
                }) if transaction_id == 1.0 && answer.is_none() => {
                    let info = additional_arguments.pop().unwrap_or(Amf0Value::Null);
                    answer = Some(ConnectAnswer {
                        command: command_name,
                        code: prop_str(&info, "code").unwrap_or_default(),
                        description: prop_str(&info, "description").unwrap_or_default(),
                        elapsed: sent.elapsed(),
                        closed: false,
                    });
                }
                _ => {}
            }
        }
        input.clear();
        if let Some(a) = &answer {
            if sent.elapsed() > a.elapsed + secs(3) {
                return answer.unwrap();
            }
        } else if sent.elapsed() > secs(15) {
            panic!("no answer to connect({app}) within 15 s");
        }
        match socket.read(&mut buf) {
            Ok(0) => {
                let mut a = answer.unwrap_or_else(|| panic!("connect({app}): closed unanswered"));
                a.closed = true;
                return a;
            }
            Ok(n) => input.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) => {
                let mut a =
                    answer.unwrap_or_else(|| panic!("connect({app}): {e} before an answer"));
                a.closed = true;
                return a;
            }
        }
    }
}

// ------------------------------------------------------------------------------------------------
// A small signalling client (`/ws`, JSON text frames; web/sdk/PROTOCOL.md)
// ------------------------------------------------------------------------------------------------

struct Signal {
    socket: TcpStream,
    buf: Vec<u8>,
    closed: bool,
    /// Every message received, in order.
    seen: Vec<Value>,
}

impl Signal {
    /// Opens `ws://127.0.0.1:HTTP/ws` + `query` (e.g. `?ticket=1`, or empty).
    fn open(http_port: u16, query: &str) -> Signal {
        let mut socket = TcpStream::connect(("127.0.0.1", http_port)).expect("connect /ws");
        socket.set_read_timeout(Some(ms(100))).ok();
        let request = format!(
            "GET /ws{query} HTTP/1.1\r\nHost: 127.0.0.1:{http_port}\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
             Sec-WebSocket-Version: 13\r\n\r\n"
        );
        socket.write_all(request.as_bytes()).expect("send upgrade");
        let mut s = Signal {
            socket,
            buf: Vec::new(),
            closed: false,
            seen: Vec::new(),
        };
        let deadline = Instant::now() + secs(5);
        let end = loop {
            if let Some(i) = s.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            assert!(
                Instant::now() < deadline && s.fill(),
                "no upgrade answer on /ws: {}",
                String::from_utf8_lossy(&s.buf)
            );
        };
        let head = String::from_utf8_lossy(&s.buf[..end]).to_string();
        assert!(head.starts_with("HTTP/1.1 101"), "upgrade refused: {head}");
        s.buf.drain(..end);
        s
    }

    /// Reads what the socket has (false once it is closed).
    fn fill(&mut self) -> bool {
        let mut chunk = [0u8; 65536];
        match self.socket.read(&mut chunk) {
            Ok(0) => self.closed = true,
            Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => self.closed = true,
        }
        !self.closed
    }

    fn send_frame(&mut self, opcode: u8, payload: &[u8]) {
        let _ = self.socket.write_all(&client_frame(opcode, payload));
    }

    fn send(&mut self, msg: Value) {
        self.send_frame(0x1, msg.to_string().as_bytes());
    }

    /// One frame out of the buffer: Some(Some(json)) for a text message, Some(None) for a
    /// control frame, None when incomplete.
    fn parse(&mut self) -> Option<Option<Value>> {
        let b = &self.buf;
        if b.len() < 2 {
            return None;
        }
        let (len, offset) = match b[1] & 0x7f {
            126 if b.len() >= 4 => (u16::from_be_bytes([b[2], b[3]]) as usize, 4),
            127 if b.len() >= 10 => (
                u64::from_be_bytes(b[2..10].try_into().unwrap()) as usize,
                10,
            ),
            126 | 127 => return None,
            n => (n as usize, 2),
        };
        if b.len() < offset + len {
            return None;
        }
        let opcode = b[0] & 0x0f;
        let payload = b[offset..offset + len].to_vec();
        self.buf.drain(..offset + len);
        Some(match opcode {
            0x1 => {
                let v: Value = serde_json::from_slice(&payload).expect("signalling JSON");
                self.seen.push(v.clone());
                Some(v)
            }
            0x8 => {
                self.closed = true;
                None
            }
            0x9 => {
                self.send_frame(0xa, &payload);
                None
            }
            _ => None,
        })
    }

    /// The next text message within `timeout`.
    fn next(&mut self, timeout: Duration) -> Option<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            while let Some(frame) = self.parse() {
                if frame.is_some() {
                    return frame;
                }
            }
            if self.closed || Instant::now() >= deadline {
                return None;
            }
            self.fill();
        }
    }

    /// The first message matching `pred` within `timeout`.
    fn wait(&mut self, timeout: Duration, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            match self.next(deadline.saturating_duration_since(Instant::now())) {
                Some(v) if pred(&v) => return v,
                Some(_) => {}
                None => panic!(
                    "signalling: no matching message within {timeout:?} (closed: {}); seen {}",
                    self.closed,
                    self.seen_brief()
                ),
            }
        }
    }

    /// Everything that comes within `duration` (or until the socket closes).
    fn collect(&mut self, duration: Duration) -> Vec<Value> {
        let deadline = Instant::now() + duration;
        let mut got = Vec::new();
        while let Some(v) = self.next(deadline.saturating_duration_since(Instant::now())) {
            got.push(v);
        }
        got
    }

    /// Sends `connect` and returns the `session` answer.
    fn connect(&mut self, connect: Value) -> Value {
        self.send(connect);
        self.wait(secs(10), |v| v["type"] == "session")
    }

    /// The statuses and other messages seen, SDPs cut short.
    fn seen_brief(&self) -> String {
        let list: Vec<String> = self
            .seen
            .iter()
            .map(|v| {
                let mut v = v.clone();
                if let Some(sdp) = v.get_mut("sdp") {
                    *sdp = json!("<sdp>");
                }
                v.to_string()
            })
            .collect();
        list.join(" ")
    }
}

/// Plays `name` on a connected session as `stream_id` (server-offer mode: no sdp), with `token`
/// when given; returns the final status if refused, or the server's offer.
fn signal_play(s: &mut Signal, stream_id: &str, name: &str, token: Option<&str>) -> Value {
    let mut play = json!({"type": "play", "streamId": stream_id, "name": name});
    if let Some(t) = token {
        play["token"] = json!(t);
    }
    s.send(play);
    let first = s.wait(secs(10), |v| v["streamId"] == stream_id);
    assert_eq!(
        (first["type"].as_str(), first["status"].as_str()),
        (Some("status"), Some("PENDING")),
        "the first answer to play {name} is PENDING: {}",
        s.seen_brief()
    );
    s.wait(secs(15), |v| {
        v["streamId"] == stream_id
            && (v["type"] == "offer" || matches!(v["status"].as_str(), Some("FAILED" | "STOPPED")))
    })
}

/// Asserts a signalling play was refused with FAILED and `reason`, and no offer followed.
fn assert_signal_play_refused(
    s: &mut Signal,
    stream_id: &str,
    name: &str,
    token: Option<&str>,
    reason: &str,
) {
    let answer = signal_play(s, stream_id, name, token);
    assert_eq!(
        (answer["status"].as_str(), answer["reason"].as_str()),
        (Some("FAILED"), Some(reason)),
        "play {name}: {}",
        s.seen_brief()
    );
    let after = s.collect(ms(1000));
    assert!(
        !s.seen.iter().any(|v| v["streamId"] == stream_id
            && matches!(v["type"].as_str(), Some("offer" | "answer" | "candidate"))),
        "a refused play got an offer: {} (then {after:?})",
        s.seen_brief()
    );
}

/// Asserts a signalling play was allowed: the server sent its offer (H.264 in it).
fn assert_signal_play_offered(s: &mut Signal, stream_id: &str, name: &str, token: Option<&str>) {
    let answer = signal_play(s, stream_id, name, token);
    assert_eq!(
        answer["type"],
        "offer",
        "play {name} should get an offer: {}",
        s.seen_brief()
    );
    assert!(
        answer["sdp"]
            .as_str()
            .is_some_and(|sdp| sdp.contains("H264")),
        "the offer has no H.264: {answer}"
    );
}

// ------------------------------------------------------------------------------------------------
// 1. Backend decisions: RTMP publish and play
// ------------------------------------------------------------------------------------------------

/// The backend allows one RTMP publish and refuses another: ffmpeg prints the backend's reason
/// and exits, the refused name never appears in REST, the allowed one plays.
#[test]
fn backend_allows_and_denies_rtmp_publish() {
    let backend = Backend::start(|b| {
        if b["event"] == "publish" && b["stream"] == "forbidden" {
            Answer::deny("publishing forbidden is not allowed here")
        } else {
            Answer::allow()
        }
    });
    let server = start(&[("app.backend_url", backend.url())]);

    assert_ffmpeg_publish_refused(
        &server.url("forbidden"),
        "publishing forbidden is not allowed here",
    );
    assert!(
        server.find_stream("forbidden").is_none(),
        "a refused publish left a stream: {:?}",
        server.find_stream("forbidden")
    );
    let mut publisher = publish_ffmpeg(&server.url("allowed"), 30, &[]);
    wait_published(&server, "allowed", &mut publisher);
    assert_rtmp_plays(server.rtmp_port, "live", "allowed");

    // Both publishers were asked, as RTMP clients of `live`.
    for stream in ["forbidden", "allowed"] {
        let hook = backend
            .events("publish")
            .into_iter()
            .find(|b| b["stream"] == stream)
            .unwrap_or_else(|| panic!("no publish hook for {stream}: {}", backend.describe()));
        assert_eq!(
            (hook["protocol"].as_str(), hook["app"].as_str()),
            (Some("rtmp"), Some("live")),
            "{hook}"
        );
    }
    let request = &backend.requests()[0];
    assert_eq!(request.method, "POST");
    assert_eq!(request.path, "/hooks");
    assert!(
        request.content_type.starts_with("application/json"),
        "{request:?}"
    );
}

/// The backend refuses an RTMP play: `NetStream.Play.Failed` with the backend's reason as the
/// description, and not a single video or audio message; another viewer of the same stream,
/// allowed, gets video. ffmpeg as a refused player prints the reason.
#[test]
fn backend_denies_rtmp_play_with_its_reason_and_no_media() {
    let backend = Backend::start(|b| {
        if b["event"] == "play" && b["query"]["viewer"] == "mallory" {
            Answer::deny("mallory may not watch")
        } else {
            Answer::allow()
        }
    });
    let server = start(&[("app.backend_url", backend.url())]);
    let mut publisher = publish_ffmpeg(&server.url("show"), 40, &[]);
    wait_published(&server, "show", &mut publisher);

    assert_rtmp_play_refused(
        server.rtmp_port,
        "live",
        "show?viewer=mallory",
        "mallory may not watch",
    );
    assert_rtmp_plays(server.rtmp_port, "live", "show?viewer=alice");

    let played = play_count(&format!("{}?viewer=mallory", server.url("show")), 2);
    assert!(
        played.video == 0
            && played
                .stderr
                .contains("Server error: mallory may not watch"),
        "ffmpeg as a refused player: {played:?}"
    );
    let plays = backend.events("play");
    assert!(
        plays.iter().any(|b| b["query"]["viewer"] == "alice")
            && plays
                .iter()
                .filter(|b| b["query"]["viewer"] == "mallory")
                .count()
                == 2,
        "{}",
        backend.describe()
    );
}

// ------------------------------------------------------------------------------------------------
// 2. Backend decisions: WebRTC (signalling and Chromium) and the media WebSocket
// ------------------------------------------------------------------------------------------------

/// WebRTC plays asked of the backend: a refused play gets FAILED with the backend's reason and
/// no offer; an allowed one gets PENDING then the server's offer on the same session; and
/// Chromium, through the SDK, plays an allowed stream with decoded H.264 and Opus. The backend
/// saw the browser's connect and play as `webrtc`, then its stop and disconnect.
#[test]
fn backend_decides_webrtc_plays() {
    let backend = Backend::start(|b| {
        if b["event"] == "play" && b["stream"] == "vip" {
            Answer::deny("vip needs an invitation")
        } else {
            Answer::allow()
        }
    });
    let server = start_webrtc(&[("app.backend_url", backend.url())]);
    let _vip = publish_ffmpeg(&server.url("vip"), 90, &[]);
    let _open = publish_ffmpeg(&server.url("open"), 90, &[]);
    wait_publishing(&server, "vip");
    wait_publishing(&server, "open");

    let mut s = Signal::open(server.http_port, "");
    let session = s.connect(json!({"type": "connect"}));
    assert_eq!(session["status"], "ESTABLISHED", "{session}");
    assert_signal_play_refused(&mut s, "v1", "vip", None, "vip needs an invitation");
    assert_signal_play_offered(&mut s, "v2", "open", None);
    drop(s);

    let before = backend.hooks().len();
    let result = run_script(
        "play.mjs",
        &scenario_args(
            &server,
            "open",
            &["--play-ms", "2000", "--deadline-ms", "90000"],
        ),
        secs(100),
    );
    assert_page_played("Chromium page", &result["pages"][0], "opus", true);
    let browser_play = backend.hooks()[before..]
        .iter()
        .find(|b| b["event"] == "play" && b["protocol"] == "webrtc")
        .cloned()
        .unwrap_or_else(|| panic!("the browser's play was not asked: {}", backend.describe()));
    assert_eq!(browser_play["stream"], "open", "{browser_play}");
    let session = browser_play["sessionId"].clone();
    for event in ["connect", "stop", "disconnect"] {
        assert!(
            backend
                .wait_hook(secs(10), |b| b["event"] == event
                    && b["sessionId"] == session)
                .is_some(),
            "no {event} hook for the browser's session {session}: {}",
            backend.describe()
        );
    }
}

/// The media WebSocket asks the backend too: a refused connect and a refused play end with
/// PENDING then FAILED (the backend's reason) and a closed socket, never an init segment or a
/// binary message; an allowed viewer of the same stream gets its fMP4.
#[test]
fn backend_denies_media_websocket_plays() {
    let backend = Backend::start(|b| match b["event"].as_str() {
        Some("connect") if b["query"]["ticket"] == "bad" => Answer::deny("your ticket is void"),
        Some("play") if b["query"]["seat"] == "none" => {
            Answer::Json(402, json!({"reason": "buy a seat first"}))
        }
        _ => Answer::allow(),
    });
    let server = start(&[("app.backend_url", backend.url())]);
    let mut publisher = publish_ffmpeg(&server.url("film"), 40, &[]);
    wait_published(&server, "film", &mut publisher);

    assert_ws_refused(&server, "name=film&ticket=bad", "your ticket is void");
    assert_ws_refused(&server, "name=live/film&seat=none", "buy a seat first");
    assert_ws_plays(&server, "name=live/film&seat=12");
    let play = backend
        .events("play")
        .into_iter()
        .find(|b| b["query"]["seat"] == "none")
        .unwrap_or_else(|| panic!("{}", backend.describe()));
    assert_eq!(
        (
            play["protocol"].as_str(),
            play["app"].as_str(),
            play["stream"].as_str()
        ),
        (Some("websocket"), Some("live"), Some("film")),
        "{play}"
    );
    assert!(
        !backend
            .events("play")
            .iter()
            .any(|b| b["query"]["ticket"] == "bad"),
        "a client whose connect was refused was asked about its play: {}",
        backend.describe()
    );
}

// ------------------------------------------------------------------------------------------------
// 3. A backend that does not answer
// ------------------------------------------------------------------------------------------------

/// What a hanging backend's refusals looked like: the RTMP connect's answer, and the signalling
/// session's answer with the time it took and whether the socket was closed after it.
struct HangRefusals {
    rtmp: ConnectAnswer,
    session: Value,
    session_elapsed: Duration,
    session_closed: bool,
}

/// A backend that hangs for 8 s, a server whose `hook_timeout_ms` is 500: an RTMP connect and a
/// signalling connect, each waiting for its refusal.
fn refusals_by_a_hanging_backend() -> HangRefusals {
    let backend = Backend::start(|_| Answer::Hang(secs(8)));
    let server = start_webrtc(&[
        ("app.backend_url", backend.url()),
        ("app.hook_timeout_ms", "500".into()),
    ]);
    let rtmp = rtmp_connect_raw(server.rtmp_port, "live");
    eprintln!("[access] RTMP connect to a hanging backend: {rtmp:?}");
    let mut s = Signal::open(server.http_port, "");
    let started = Instant::now();
    let session = s.connect(json!({"type": "connect"}));
    let session_elapsed = started.elapsed();
    eprintln!(
        "[access] signalling connect to a hanging backend: {session} after {session_elapsed:?}"
    );
    s.collect(secs(3));
    assert_eq!(backend.events("connect").len(), 2, "{}", backend.describe());
    HangRefusals {
        rtmp,
        session,
        session_elapsed,
        session_closed: s.closed,
    }
}

/// A backend that hangs (8 s) past `hook_timeout_ms` (500): an RTMP connect is rejected
/// (`NetConnection.Connect.Rejected`, saying the backend did not answer) and closed, a signalling
/// connect FAILS the same way and is closed, both after the timeout and long before the backend
/// would have answered.
#[test]
fn a_backend_that_hangs_refuses_after_the_hook_timeout() {
    let r = refusals_by_a_hanging_backend();
    let prefix = "the application's backend did not answer: ";
    assert_eq!(
        (r.rtmp.command.as_str(), r.rtmp.code.as_str()),
        ("_error", "NetConnection.Connect.Rejected"),
        "{:?}",
        r.rtmp
    );
    assert!(r.rtmp.description.starts_with(prefix), "{:?}", r.rtmp);
    assert!(
        r.rtmp.closed,
        "the rejected connection stays open: {:?}",
        r.rtmp
    );
    for (what, elapsed) in [("RTMP", r.rtmp.elapsed), ("signalling", r.session_elapsed)] {
        assert!(
            elapsed >= ms(500) && elapsed < ms(3000),
            "{what} connect refused after {elapsed:?} (timeout 500 ms, the backend answers after 8 s)"
        );
    }
    assert_eq!(r.session["status"], "FAILED", "{}", r.session);
    assert!(
        r.session["reason"]
            .as_str()
            .is_some_and(|m| m.starts_with(prefix)),
        "{}",
        r.session
    );
    assert!(r.session_closed, "the FAILED session was not closed");
}

/// The refusal names the timeout: "the application's backend did not answer: no answer within
/// 500 ms".
#[test]
fn a_hanging_backend_refusal_names_the_timeout() {
    let r = refusals_by_a_hanging_backend();
    let reason = "the application's backend did not answer: no answer within 500 ms";
    assert_eq!(r.rtmp.description, reason, "{:?}", r.rtmp);
    assert_eq!(r.session["reason"], reason, "{}", r.session);
}

// ------------------------------------------------------------------------------------------------
// 4. What the backend is told
// ------------------------------------------------------------------------------------------------

/// The hook bodies: connect, publish and play carry the session id, protocol, client address,
/// application, stream and query parameters (connect URL's and stream URL's), a signalling
/// connect's custom field; after the clients leave, the backend hears unpublish, stop and
/// disconnect for the same session ids.
#[test]
fn hook_bodies_name_the_client_and_notifications_follow_it() {
    let backend = Backend::allow_all();
    let server = start_webrtc(&[("app.backend_url", backend.url())]);

    // Publisher: ffmpeg with a query on its stream URL.
    let mut publisher = publish_ffmpeg(&format!("{}?room=7", server.url("lobby")), 60, &[]);
    wait_published(&server, "lobby", &mut publisher);
    let publish = backend
        .wait_hook(secs(5), |b| b["event"] == "publish")
        .expect("publish hook");
    let pub_session = publish["sessionId"].as_str().unwrap().to_string();
    assert!(pub_session.starts_with("rtmp-"), "{publish}");
    assert_eq!(publish["protocol"], "rtmp", "{publish}");
    assert_eq!(publish["app"], "live", "{publish}");
    assert_eq!(publish["stream"], "lobby", "{publish}");
    assert_eq!(publish["query"], json!({"room": "7"}), "{publish}");
    let connect = backend
        .events("connect")
        .into_iter()
        .find(|b| b["sessionId"] == pub_session.as_str())
        .unwrap_or_else(|| panic!("no connect of the publisher: {}", backend.describe()));
    assert_eq!(connect["address"], publish["address"], "{connect}");
    assert!(
        connect.get("stream").is_none(),
        "connect names no stream: {connect}"
    );

    // An RTMP player with a query on its connect URL and one on its stream URL.
    let mut player = RtmpClient::connect(server.rtmp_port, "live?who=p1").expect("connect");
    let player_address = player.conn.stream.local_addr().unwrap().to_string();
    player.play("lobby?seat=3").expect("play");
    let events = rtmp_play_on(&mut player, ms(0));
    assert!(has_video(&events), "{}", summarize(&events));
    let play = backend
        .events("play")
        .into_iter()
        .find(|b| b["protocol"] == "rtmp")
        .unwrap_or_else(|| panic!("no RTMP play hook: {}", backend.describe()));
    let player_session = play["sessionId"].as_str().unwrap().to_string();
    assert_eq!(play["address"], player_address.as_str(), "{play}");
    assert_eq!(play["app"], "live", "{play}");
    assert_eq!(play["stream"], "lobby", "{play}");
    assert_eq!(play["query"], json!({"who": "p1", "seat": "3"}), "{play}");
    let player_connect = backend
        .events("connect")
        .into_iter()
        .find(|b| b["sessionId"] == player_session.as_str())
        .unwrap_or_else(|| panic!("no connect of the player: {}", backend.describe()));
    assert_eq!(
        player_connect["query"],
        json!({"who": "p1"}),
        "{player_connect}"
    );
    assert_eq!(player_connect["address"], player_address.as_str());
    assert_ne!(player_session, pub_session);

    // A signalling session with a URL query and a custom field.
    let mut s = Signal::open(server.http_port, "?ticket=42");
    let session = s.connect(json!({"type": "connect", "custom": {"user": "ann", "level": 3}}));
    assert_eq!(session["status"], "ESTABLISHED", "{session}");
    let signal_session = session["sessionId"].as_str().unwrap().to_string();
    let connect = backend
        .events("connect")
        .into_iter()
        .find(|b| b["protocol"] == "webrtc")
        .unwrap_or_else(|| panic!("no webrtc connect: {}", backend.describe()));
    assert_eq!(connect["sessionId"], signal_session.as_str(), "{connect}");
    assert_eq!(
        connect["custom"],
        json!({"user": "ann", "level": 3}),
        "{connect}"
    );
    assert_eq!(connect["query"], json!({"ticket": "42"}), "{connect}");
    assert_eq!(connect["app"], "live", "{connect}");
    assert_signal_play_offered(&mut s, "v1", "lobby", None);
    let webrtc_play = backend
        .events("play")
        .into_iter()
        .find(|b| b["protocol"] == "webrtc")
        .unwrap_or_else(|| panic!("no webrtc play: {}", backend.describe()));
    assert_eq!(webrtc_play["sessionId"], signal_session.as_str());
    assert_eq!(webrtc_play["stream"], "lobby");
    assert_eq!(webrtc_play["custom"], json!({"user": "ann", "level": 3}));

    // A media WebSocket player.
    let mut ws = WsMediaClient::open(server.http_port, "name=lobby&seat=9").expect("ws");
    let got = ws.receive(secs(2));
    assert!(got.fragments > 0, "{:?}", got.statuses);
    let ws_play_hook = backend
        .events("play")
        .into_iter()
        .find(|b| b["protocol"] == "websocket")
        .unwrap_or_else(|| panic!("no websocket play: {}", backend.describe()));
    let ws_session = ws_play_hook["sessionId"].as_str().unwrap().to_string();
    assert_eq!(
        ws_play_hook["query"],
        json!({"name": "lobby", "seat": "9"}),
        "{ws_play_hook}"
    );
    assert!(
        backend
            .events("connect")
            .iter()
            .any(|b| b["sessionId"] == ws_session.as_str() && b["protocol"] == "websocket"),
        "{}",
        backend.describe()
    );

    // Everyone leaves: the notifications follow, for the same sessions (in any order).
    drop(player);
    drop(s);
    drop(ws);
    publisher.kill();
    let expected = [
        ("unpublish", &pub_session),
        ("disconnect", &pub_session),
        ("stop", &player_session),
        ("disconnect", &player_session),
        ("stop", &signal_session),
        ("disconnect", &signal_session),
        ("stop", &ws_session),
        ("disconnect", &ws_session),
    ];
    for (event, session) in expected {
        let hook = backend
            .wait_hook(secs(10), |b| {
                b["event"] == event && b["sessionId"] == session.as_str()
            })
            .unwrap_or_else(|| panic!("no {event} for session {session}: {}", backend.describe()));
        if event != "disconnect" {
            assert_eq!(hook["stream"], "lobby", "{hook}");
        }
        assert!(
            hook["reason"].is_string(),
            "a notification has a reason: {hook}"
        );
    }
    // Each notification once (the backend took every one with 200).
    for (event, session) in expected {
        let n = backend
            .hooks()
            .iter()
            .filter(|b| b["event"] == event && b["sessionId"] == session.as_str())
            .count();
        assert_eq!(
            n,
            1,
            "{event} of {session} sent {n} times: {}",
            backend.describe()
        );
    }
}

/// An application with its own backend (`[apps.key1]`) while the default application stays
/// open: clients of `key1/...` (by path, by the connect URL's `appKey`, by `/ws/play`'s
/// `appKey`) are asked and refused as it says; clients of `live/...` are never asked.
#[test]
fn an_application_of_its_own_asks_its_backend_and_others_stay_open() {
    let backend = Backend::start(|b| {
        if b["event"] == "publish" && b["stream"] == "nopub" {
            Answer::deny("key1 does not take nopub")
        } else {
            Answer::allow()
        }
    });
    let server = start(&[("apps.key1.backend_url", backend.url())]);

    // The default application: nobody asked.
    let mut open = publish_ffmpeg(&server.url("free"), 40, &[]);
    wait_published(&server, "free", &mut open);
    assert_rtmp_plays(server.rtmp_port, "live", "free");
    assert_ws_plays(&server, "name=free");
    assert!(
        backend.hooks().is_empty(),
        "clients of live were asked: {}",
        backend.describe()
    );

    // key1 by path: asked; its refusal applies.
    assert_ffmpeg_publish_refused(&server.url_app("key1", "nopub"), "key1 does not take nopub");
    let mut keyed = publish_ffmpeg(&server.url_app("key1", "cam"), 40, &[]);
    wait_live(server.rtmp_port, "key1", "cam", secs(20));
    assert!(
        backend
            .events("publish")
            .iter()
            .any(|b| b["app"] == "key1" && b["stream"] == "cam"),
        "{}",
        backend.describe()
    );
    assert!(
        backend.hooks().iter().all(|b| b["app"] == "key1"),
        "only key1 is asked: {}",
        backend.describe()
    );

    // key1 by the connect URL's appKey, and by /ws/play's appKey.
    let before = backend.hooks().len();
    let c = RtmpClient::connect(server.rtmp_port, "whatever?appKey=key1").expect("connect");
    let connect = backend.hooks()[before..]
        .iter()
        .find(|b| b["event"] == "connect")
        .cloned()
        .unwrap_or_else(|| panic!("appKey connect not asked: {}", backend.describe()));
    assert_eq!(connect["app"], "key1", "{connect}");
    drop(c);
    assert_ws_plays(&server, "name=cam&appKey=key1");
    assert!(
        backend
            .events("play")
            .iter()
            .any(|b| b["protocol"] == "websocket" && b["app"] == "key1" && b["stream"] == "cam"),
        "{}",
        backend.describe()
    );
    assert!(
        backend.hooks().iter().all(|b| b["app"] == "key1"),
        "only key1 is asked: {}",
        backend.describe()
    );
    keyed.kill();
}

/// `/ws/play?name=key1/x` is a client of `key1`, as `rtmp://HOST/key1/x` and
/// `/ws/play?name=x&appKey=key1` are: with only `key1` enabled (`[app] enabled = false`, the
/// "allow only the listed applications" setup of settings/default.toml) it plays, and key1's
/// backend is asked for its connect.
#[test]
fn media_websocket_app_slash_name_is_a_client_of_that_application() {
    let backend = Backend::allow_all();
    let server = start(&[
        ("app.enabled", "false".into()),
        ("apps.key1.enabled", "true".into()),
        ("apps.key1.backend_url", backend.url()),
    ]);
    let _publisher = publish_ffmpeg(&server.url_app("key1", "x"), 40, &[]);
    wait_live(server.rtmp_port, "key1", "x", secs(20));
    assert_ws_plays(&server, "name=x&appKey=key1");
    assert_ws_plays(&server, "name=key1/x");
    let connect = backend.wait_hook(secs(5), |b| {
        b["event"] == "connect" && b["protocol"] == "websocket" && b["query"]["name"] == "key1/x"
    });
    assert!(
        connect.is_some_and(|c| c["app"] == "key1"),
        "{}",
        backend.describe()
    );
}

// ------------------------------------------------------------------------------------------------
// 5. Signed tokens
// ------------------------------------------------------------------------------------------------

/// The same token with its signature changed, one character in its middle.
fn flip_signature(token: &str) -> String {
    let (head, sig) = token.rsplit_once('.').unwrap();
    let mut sig = sig.to_string().into_bytes();
    let i = sig.len() / 2;
    sig[i] = if sig[i] == b'A' { b'B' } else { b'A' };
    format!("{head}.{}", String::from_utf8(sig).unwrap())
}

/// `token`'s header and signature around another token's payload.
fn splice_payload(token: &str, other: &str) -> String {
    let parts: Vec<&str> = token.split('.').collect();
    let other_parts: Vec<&str> = other.split('.').collect();
    format!("{}.{}.{}", parts[0], other_parts[1], parts[2])
}

/// Tokens over RTMP: a publish needs a valid publish token; a play needs a valid play token
/// (ffmpeg and the scripted client play with one); expired, other-stream, wrong-action,
/// other-application, tampered, spliced and malformed tokens are each refused with their reason
/// and no media.
#[test]
fn tokens_over_rtmp() {
    let server = start(&[("app.token_secret", SECRET.into())]);
    let port = server.rtmp_port;

    assert_eq!(
        rtmp_publish_refusal(port, "live", "doc"),
        Some((
            "NetStream.Publish.Denied".into(),
            "a token is required".into()
        ))
    );
    let play_token = token_for("doc", "play");
    assert_eq!(
        rtmp_publish_refusal(port, "live", &format!("doc?token={play_token}")),
        Some((
            "NetStream.Publish.Denied".into(),
            "the token does not allow publish".into()
        ))
    );
    let publish_token = token_for("doc", "publish");
    let mut publisher = publish_ffmpeg(
        &format!("{}?token={publish_token}", server.url("doc")),
        60,
        &[],
    );
    wait_published(&server, "doc", &mut publisher);

    // Valid: the scripted client and ffmpeg play.
    assert_rtmp_plays(port, "live", &format!("doc?token={play_token}"));
    let played = play_count(&format!("{}?token={play_token}", server.url("doc")), 2);
    assert!(
        played.success() && played.video >= 30 && played.audio > 0,
        "ffmpeg with a valid play token: {played:?}"
    );

    let other_claims = mint(&[
        "--stream", "doc", "--action", "play", "--ttl", "2h", "--client", "x",
    ]);
    let cases = [
        ("no token", "doc".to_string(), "a token is required"),
        (
            "expired",
            format!(
                "doc?token={}",
                mint(&["--stream", "doc", "--action", "play", "--ttl", "0s"])
            ),
            "the token has expired",
        ),
        (
            "other stream",
            format!("doc?token={}", token_for("other", "play")),
            "the token is for another stream",
        ),
        (
            "publish token",
            format!("doc?token={publish_token}"),
            "the token does not allow play",
        ),
        (
            "bound to another application",
            format!(
                "doc?token={}",
                mint(&["--stream", "doc", "--action", "play", "--app", "key1",])
            ),
            "the token is for another application",
        ),
        (
            "flipped signature",
            format!("doc?token={}", flip_signature(&play_token)),
            "the token's signature is not valid",
        ),
        (
            "spliced payload",
            format!("doc?token={}", splice_payload(&play_token, &other_claims)),
            "the token's signature is not valid",
        ),
        (
            "malformed",
            "doc?token=not-a-token".to_string(),
            "the token is malformed",
        ),
    ];
    for (what, name, reason) in &cases {
        eprintln!("[access] RTMP play with {what}");
        assert_rtmp_play_refused(port, "live", name, reason);
    }
    // ffmpeg shows the reason.
    let played = play_count(&format!("{}?{}", server.url("doc"), "token=not-a-token"), 2);
    assert!(
        played.video == 0
            && played
                .stderr
                .contains("Server error: the token is malformed"),
        "{played:?}"
    );
}

/// Tokens over the media WebSocket and signalling: `&token=` on `/ws/play`, `token` in a
/// signalling play, or the connect's token for the session's plays.
#[test]
fn tokens_over_websocket_and_signalling() {
    let server = start_webrtc(&[("app.token_secret", SECRET.into())]);
    let publish_token = token_for("cast", "publish");
    let mut publisher = publish_ffmpeg(
        &format!("{}?token={publish_token}", server.url("cast")),
        60,
        &[],
    );
    wait_published(&server, "cast", &mut publisher);
    let play_token = token_for("cast", "play");
    let expired = mint(&["--stream", "cast", "--action", "play", "--ttl", "0s"]);

    // Media WebSocket.
    assert_ws_plays(&server, &format!("name=cast&token={play_token}"));
    assert_ws_refused(&server, "name=cast", "a token is required");
    assert_ws_refused(
        &server,
        &format!("name=cast&token={}", token_for("other", "play")),
        "the token is for another stream",
    );
    assert_ws_refused(
        &server,
        &format!("name=live/cast&token={expired}"),
        "the token has expired",
    );
    assert_ws_refused(
        &server,
        &format!("name=cast&token={}", flip_signature(&play_token)),
        "the token's signature is not valid",
    );

    // Signalling: a token with the play, and a session's connect token.
    let mut s = Signal::open(server.http_port, "");
    assert_eq!(
        s.connect(json!({"type": "connect"}))["status"],
        "ESTABLISHED"
    );
    assert_signal_play_refused(&mut s, "v1", "cast", None, "a token is required");
    assert_signal_play_refused(
        &mut s,
        "v2",
        "cast",
        Some(&expired),
        "the token has expired",
    );
    assert_signal_play_offered(&mut s, "v3", "cast", Some(&play_token));
    let mut s2 = Signal::open(server.http_port, "");
    let session = s2.connect(json!({"type": "connect", "token": play_token}));
    assert_eq!(session["status"], "ESTABLISHED", "{session}");
    assert_signal_play_offered(&mut s2, "v1", "cast", None);
}

/// `token_actions = "publish"`: publishing needs a token, playing does not. With a backend as
/// well, the publish hook carries the checked token's claims; a play hook, no token.
#[test]
fn token_actions_publish_leaves_play_open() {
    let backend = Backend::allow_all();
    let server = start(&[
        ("app.token_secret", SECRET.into()),
        ("app.token_actions", "publish".into()),
        ("app.backend_url", backend.url()),
    ]);
    assert_eq!(
        rtmp_publish_refusal(server.rtmp_port, "live", "desk"),
        Some((
            "NetStream.Publish.Denied".into(),
            "a token is required".into()
        ))
    );
    assert!(
        backend.events("publish").is_empty(),
        "a publish without its token reached the backend: {}",
        backend.describe()
    );
    let token = mint(&[
        "--stream", "desk", "--action", "publish", "--client", "studio",
    ]);
    let mut publisher = publish_ffmpeg(&format!("{}?token={token}", server.url("desk")), 40, &[]);
    wait_published(&server, "desk", &mut publisher);
    assert_rtmp_plays(server.rtmp_port, "live", "desk");
    let played = play_count(&server.url("desk"), 2);
    assert!(
        played.success() && played.video >= 30,
        "ffmpeg without a token: {played:?}"
    );
    assert_ws_plays(&server, "name=desk");

    let publish = &backend.events("publish")[0];
    let claims = &publish["token"];
    assert_eq!(
        (
            claims["stream"].as_str(),
            claims["action"].as_str(),
            claims["client"].as_str()
        ),
        (Some("desk"), Some("publish"), Some("studio")),
        "{publish}"
    );
    assert!(claims["exp"].as_u64().is_some(), "{publish}");
    let plays = backend.events("play");
    assert!(
        plays.len() >= 3 && plays.iter().all(|b| b.get("token").is_none()),
        "plays checked no token: {}",
        backend.describe()
    );
}

// ------------------------------------------------------------------------------------------------
// 6. Private streams
// ------------------------------------------------------------------------------------------------

/// A private publish token: viewer A (play token tagged "a") plays; viewer B (a valid token
/// tagged "b") is refused while A plays, over RTMP and the media WebSocket, and still after A
/// left; A comes back (a new connection, a new token with the same tag). REST shows private.
#[test]
fn a_private_stream_admits_its_first_holder_only() {
    let server = start(&[("app.token_secret", SECRET.into())]);
    let publish_token = mint(&["--stream", "consult", "--action", "publish", "--private"]);
    let mut publisher = publish_ffmpeg(
        &format!("{}?token={publish_token}", server.url("consult")),
        60,
        &[],
    );
    wait_published(&server, "consult", &mut publisher);
    let (ok, v) = server.wait_stream("consult", secs(5), |v| {
        v.is_some_and(|v| v["private"] == true)
    });
    assert!(ok, "REST should show the stream private: {v:?}");

    let token_a = mint(&["--stream", "consult", "--action", "play", "--client", "a"]);
    let token_b = mint(&["--stream", "consult", "--action", "play", "--client", "b"]);
    let private = "the stream is private: another viewer holds it";

    let mut a = RtmpClient::player(
        server.rtmp_port,
        "live",
        &format!("consult?token={token_a}"),
    )
    .expect("viewer A");
    let events = rtmp_play_on(&mut a, ms(0));
    assert!(has_video(&events), "viewer A: {}", summarize(&events));

    assert_rtmp_play_refused(
        server.rtmp_port,
        "live",
        &format!("consult?token={token_b}"),
        private,
    );
    assert_ws_refused(&server, &format!("name=consult&token={token_b}"), private);
    let (v, _, closed) = a.count_media(secs(1));
    assert!(v > 0 && !closed, "viewer A goes on while B is refused");

    // A leaves: B is still refused; A comes back with a new token of the same tag.
    drop(a);
    let (ok, v) = server.wait_stream("consult", secs(10), |v| rtmp_players(v) == 0);
    assert!(ok, "viewer A did not leave: {v:?}");
    assert_rtmp_play_refused(
        server.rtmp_port,
        "live",
        &format!("consult?token={token_b}"),
        private,
    );
    let token_a2 = mint(&[
        "--stream", "consult", "--action", "play", "--client", "a", "--ttl", "2h",
    ]);
    assert_ne!(token_a, token_a2);
    assert_rtmp_plays(
        server.rtmp_port,
        "live",
        &format!("consult?token={token_a2}"),
    );
    assert_ws_plays(&server, &format!("name=consult&token={token_a}"));
}

/// A private stream whose first viewer's token has no client tag: the token itself holds it,
/// on any connection and protocol (RTMP `?token=`, `/ws/play` `&token=`, a signalling connect's
/// token); another valid token is refused.
#[test]
fn a_private_stream_held_by_an_untagged_token_admits_that_token_anywhere() {
    let server = start_webrtc(&[("app.token_secret", SECRET.into())]);
    let publish_token = mint(&["--stream", "room", "--action", "publish", "--private"]);
    let mut publisher = publish_ffmpeg(
        &format!("{}?token={publish_token}", server.url("room")),
        60,
        &[],
    );
    wait_published(&server, "room", &mut publisher);
    let held = token_for("room", "play");
    let other = mint(&["--stream", "room", "--action", "play", "--ttl", "2h"]);
    assert_ne!(held, other);
    let private = "the stream is private: another viewer holds it";

    assert_rtmp_plays(server.rtmp_port, "live", &format!("room?token={held}"));
    assert_rtmp_plays(server.rtmp_port, "live", &format!("room?token={held}"));
    assert_ws_plays(&server, &format!("name=room&token={held}"));
    let mut s = Signal::open(server.http_port, "");
    let session = s.connect(json!({"type": "connect", "token": held}));
    assert_eq!(session["status"], "ESTABLISHED", "{session}");
    assert_signal_play_offered(&mut s, "v1", "room", None);

    assert_rtmp_play_refused(
        server.rtmp_port,
        "live",
        &format!("room?token={other}"),
        private,
    );
    assert_ws_refused(&server, &format!("name=room&token={other}"), private);
}

/// The same, the stream first held through a token given in a signalling `play`: that token
/// holds it, so it plays again on another session and over RTMP.
#[test]
fn a_private_stream_held_through_a_signalling_play_token_admits_that_token() {
    let server = start_webrtc(&[("app.token_secret", SECRET.into())]);
    let publish_token = mint(&["--stream", "room", "--action", "publish", "--private"]);
    let mut publisher = publish_ffmpeg(
        &format!("{}?token={publish_token}", server.url("room")),
        60,
        &[],
    );
    wait_published(&server, "room", &mut publisher);
    let held = token_for("room", "play");
    let mut s = Signal::open(server.http_port, "");
    assert_eq!(
        s.connect(json!({"type": "connect"}))["status"],
        "ESTABLISHED"
    );
    assert_signal_play_offered(&mut s, "v1", "room", Some(&held));
    let mut s2 = Signal::open(server.http_port, "");
    assert_eq!(
        s2.connect(json!({"type": "connect"}))["status"],
        "ESTABLISHED"
    );
    assert_signal_play_offered(&mut s2, "v1", "room", Some(&held));
    assert_rtmp_plays(server.rtmp_port, "live", &format!("room?token={held}"));
}

/// A stream made private by the backend's publish answer (`{"private": true}`), its holder named
/// by the play answer (`{"client": ...}`); and one made private by its publisher's URL
/// (`?private=true`), held by its first player's session.
#[test]
fn a_backend_answer_or_the_publish_url_makes_a_stream_private() {
    let backend = Backend::start(|b| match b["event"].as_str() {
        Some("publish") if b["stream"] == "byhook" => Answer::allow_with(json!({"private": true})),
        Some("play") => match b["query"]["who"].as_str() {
            Some(who) => Answer::allow_with(json!({ "client": who })),
            None => Answer::allow(),
        },
        _ => Answer::allow(),
    });
    let server = start(&[("app.backend_url", backend.url())]);
    let private = "the stream is private: another viewer holds it";

    let mut by_hook = publish_ffmpeg(&server.url("byhook"), 60, &[]);
    let mut by_url = publish_ffmpeg(&format!("{}?private=true", server.url("byurl")), 60, &[]);
    let mut public = publish_ffmpeg(&server.url("public"), 60, &[]);
    wait_published(&server, "byhook", &mut by_hook);
    wait_published(&server, "byurl", &mut by_url);
    wait_published(&server, "public", &mut public);
    let (status, all) = server.rest("stream/find_all", "{}");
    assert_eq!(status, 200, "{all}");
    let privacy: HashMap<String, Value> = all
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["name"].as_str().unwrap().to_string(),
                s["private"].clone(),
            )
        })
        .collect();
    assert_eq!(privacy["byhook"], true, "{all}");
    assert_eq!(privacy["byurl"], true, "{all}");
    assert_eq!(privacy["public"], false, "{all}");

    // By the backend: "ann" holds it, "bob" is refused, ann plays again on another connection.
    let mut ann = RtmpClient::player(server.rtmp_port, "live", "byhook?who=ann").expect("ann");
    assert!(has_video(&rtmp_play_on(&mut ann, ms(0))));
    assert_rtmp_play_refused(server.rtmp_port, "live", "byhook?who=bob", private);
    assert_rtmp_plays(server.rtmp_port, "live", "byhook?who=ann");

    // By the URL: the first session holds it; any other session is refused.
    let mut first = RtmpClient::player(server.rtmp_port, "live", "byurl").expect("first");
    assert!(has_video(&rtmp_play_on(&mut first, ms(0))));
    assert_rtmp_play_refused(server.rtmp_port, "live", "byurl", private);
    assert_ws_refused(&server, "name=byurl", private);

    // A public stream takes everyone.
    assert_rtmp_plays(server.rtmp_port, "live", "public?who=bob");
    assert_rtmp_plays(server.rtmp_port, "live", "public?who=ann");
    let (v, _, closed) = ann.count_media(ms(500));
    assert!(v > 0 && !closed, "ann's first connection goes on");
    let (v, _, closed) = first.count_media(ms(500));
    assert!(v > 0 && !closed, "the URL stream's holder goes on");
}

// ------------------------------------------------------------------------------------------------
// 7. The REST API key
// ------------------------------------------------------------------------------------------------

/// With `rest.api_key`: no key → 401, a wrong key → 401 (both with a JSON error); the key as
/// `Authorization: Bearer` or `X-API-Key` → the handler's answer (200 with the stream list).
#[test]
fn the_rest_api_needs_its_key() {
    let server = start(&[("rest.api_key", API_KEY.into())]);
    let mut publisher = publish_ffmpeg(&server.url("keyed"), 40, &[]);
    wait_live(server.rtmp_port, "live", "keyed", secs(20));
    let port = server.rest_port;
    let bearer = format!("Authorization: Bearer {API_KEY}");
    let x_key = format!("X-API-Key: {API_KEY}");

    for (what, headers) in [
        ("no key", vec![]),
        (
            "wrong bearer",
            vec!["Authorization: Bearer rest-api-key-0123456789abcdeX"],
        ),
        ("wrong X-API-Key", vec!["X-API-Key: nope"]),
        ("basic auth", vec!["Authorization: Basic cmVzdDprZXk="]),
    ] {
        let (status, body) = rest_with_headers(port, "stream/find_all", "{}", &headers);
        assert_eq!(status, 401, "{what}: {body}");
        assert!(
            body["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{what}: a JSON error: {body}"
        );
    }
    let (status, body) = rest_with_headers(port, "stream/terminate", r#"{"name":"keyed"}"#, &[]);
    assert_eq!(status, 401, "terminate without a key: {body}");
    assert!(
        publisher.is_running(),
        "a refused terminate cut the publisher"
    );

    for (what, header) in [("bearer", &bearer), ("X-API-Key", &x_key)] {
        let (status, body) = rest_with_headers(port, "stream/find_all", "{}", &[header]);
        assert_eq!(status, 200, "{what}: {body}");
        assert_eq!(body[0]["name"], "keyed", "{what}: {body}");
        let (status, body) =
            rest_with_headers(port, "stream/find", r#"{"name":"keyed"}"#, &[header]);
        assert_eq!(
            (status, body["name"].as_str()),
            (200, Some("keyed")),
            "{body}"
        );
    }
}

// ------------------------------------------------------------------------------------------------
// 8. A disabled application
// ------------------------------------------------------------------------------------------------

/// `[apps.closed] enabled = false`: an RTMP connect to it is rejected
/// (`NetConnection.Connect.Rejected`) and closed, ffmpeg shows why, a signalling connect with
/// `appKey: closed` FAILS, a media WebSocket play of `closed/...` FAILS; `live` is untouched.
#[test]
fn a_disabled_application_rejects_its_clients() {
    let server = start_webrtc(&[("apps.closed.enabled", "false".into())]);
    let reason = "this application is not enabled";

    let answer = rtmp_connect_raw(server.rtmp_port, "closed");
    assert_eq!(
        (
            answer.command.as_str(),
            answer.code.as_str(),
            answer.description.as_str()
        ),
        ("_error", "NetConnection.Connect.Rejected", reason),
        "{answer:?}"
    );
    assert!(
        answer.closed,
        "the rejected connection stays open: {answer:?}"
    );
    let answer = rtmp_connect_raw(server.rtmp_port, "live");
    assert_eq!(
        (answer.command.as_str(), answer.code.as_str()),
        ("_result", "NetConnection.Connect.Success"),
        "{answer:?}"
    );
    assert!(!answer.closed, "{answer:?}");

    assert_ffmpeg_publish_refused(&server.url_app("closed", "x"), reason);
    let mut publisher = publish_ffmpeg(&server.url("x"), 40, &[]);
    wait_published(&server, "x", &mut publisher);

    let mut s = Signal::open(server.http_port, "");
    let session = s.connect(json!({"type": "connect", "appKey": "closed"}));
    assert_eq!(
        (session["status"].as_str(), session["reason"].as_str()),
        (Some("FAILED"), Some(reason)),
        "{session}"
    );
    s.collect(secs(3));
    assert!(s.closed, "the FAILED session was not closed");
    assert_ws_refused(&server, "name=closed/x", reason);
    assert_ws_refused(&server, "name=x&appKey=closed", reason);
    assert_ws_plays(&server, "name=live/x");
}

// ------------------------------------------------------------------------------------------------
// 9. The access review's mends (commit 770abc5)
// ------------------------------------------------------------------------------------------------

/// Polls REST `find` of `app`/`name` (20 s) until it is publishing with its video known;
/// returns the stream object.
fn wait_published_in(server: &Server, app: &str, name: &str, publisher: &mut Proc) -> Value {
    let body = json!({"app": app, "name": name}).to_string();
    let deadline = Instant::now() + secs(20);
    loop {
        let (status, v) = server.rest("stream/find", &body);
        if status == 200 && v["status"] == "PUBLISHING" && v["video"]["width"].is_u64() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "{app}/{name} not publishing within 20 s: {status} {v}\n{}",
            publisher.stderr()
        );
        std::thread::sleep(ms(250));
    }
}

/// The `publisher.query` of every stream REST lists, by `app/name`.
fn publisher_queries(server: &Server) -> HashMap<String, Value> {
    let (status, all) = server.rest("stream/find_all", "{}");
    assert_eq!(status, 200, "{all}");
    all.as_array()
        .unwrap_or_else(|| panic!("find_all is not a list: {all}"))
        .iter()
        .map(|s| {
            (
                format!(
                    "{}/{}",
                    s["app"].as_str().unwrap(),
                    s["name"].as_str().unwrap()
                ),
                s["publisher"]["query"].clone(),
            )
        })
        .collect()
}

/// What a raw RTMP client saw after writing `connect`, `createStream` and `play` in one go.
#[derive(Debug, Default)]
struct Pipelined {
    /// The connect's answer: `_result` or `_error`, its code, and when it came (from the send).
    connect: Option<(String, String, Duration)>,
    /// `createStream` was answered with `_result`.
    stream_created: bool,
    /// Every `onStatus` (code, description), in order.
    statuses: Vec<(String, String)>,
    video: usize,
    audio: usize,
    /// The server closed the connection.
    closed: bool,
}

impl Pipelined {
    fn has_status(&self, code: &str) -> bool {
        self.statuses.iter().any(|(c, _)| c == code)
    }
}

/// Handshake, then `connect` (this `app` property), `createStream` and `play(name)` on message
/// stream 1 written back to back, without waiting for any answer (as a hurried client does);
/// then reads until `videos` video messages came, the server closed, or 15 s passed.
fn rtmp_play_pipelined(port: u16, app: &str, name: &str, videos: usize) -> Pipelined {
    let (mut socket, mut input) = rtmp_handshake(port, secs(5)).expect("RTMP handshake");
    let mut ser = ChunkSerializer::new();
    let mut de = ChunkDeserializer::new();
    let command = |name: &str, tid: f64, args: Vec<Amf0Value>| RtmpMessage::Amf0Command {
        command_name: name.into(),
        transaction_id: tid,
        command_object: Amf0Value::Null,
        additional_arguments: args,
    };
    let messages = [
        (connect_command(port, app), 0),
        (command("createStream", 2.0, vec![]), 0),
        (
            command(
                "play",
                0.0,
                vec![Amf0Value::Utf8String(name.into()), Amf0Value::Number(-2.0)],
            ),
            1,
        ),
    ];
    let mut bytes = Vec::new();
    for (message, stream_id) in messages {
        let payload = message
            .into_message_payload(RtmpTimestamp::new(0), stream_id)
            .expect("command payload");
        let packet = ser
            .serialize(&payload, false, false)
            .expect("command chunk");
        bytes.extend_from_slice(&packet.bytes);
    }
    let sent = Instant::now();
    socket.write_all(&bytes).expect("send the commands");
    socket.set_read_timeout(Some(ms(100))).ok();
    let mut seen = Pipelined::default();
    let mut buf = vec![0u8; 65536];
    while seen.video < videos && sent.elapsed() < secs(15) {
        let mut chunk: &[u8] = &input;
        while let Some(p) = de.get_next_message(chunk).expect("server RTMP chunks") {
            chunk = &[];
            match p.to_rtmp_message() {
                Ok(RtmpMessage::SetChunkSize { size }) => {
                    de.set_max_chunk_size(size as usize).expect("chunk size");
                }
                Ok(RtmpMessage::Amf0Command {
                    command_name,
                    transaction_id,
                    mut additional_arguments,
                    ..
                }) => {
                    let info = additional_arguments.pop().unwrap_or(Amf0Value::Null);
                    let text = |key| prop_str(&info, key).unwrap_or_default();
                    if command_name == "onStatus" {
                        seen.statuses.push((text("code"), text("description")));
                    } else if transaction_id == 1.0 && seen.connect.is_none() {
                        seen.connect = Some((command_name, text("code"), sent.elapsed()));
                    } else if transaction_id == 2.0 && command_name == "_result" {
                        seen.stream_created = true;
                    }
                }
                Ok(RtmpMessage::VideoData { .. }) => seen.video += 1,
                Ok(RtmpMessage::AudioData { .. }) => seen.audio += 1,
                _ => {}
            }
        }
        input.clear();
        match socket.read(&mut buf) {
            Ok(0) => {
                seen.closed = true;
                break;
            }
            Ok(n) => input.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => {
                seen.closed = true;
                break;
            }
        }
    }
    seen
}

/// Fix: a publisher's token never shows. Whether it came on the stream URL
/// (`live/x?token=T&room=7`) or on the connect URL (ffmpeg `-rtmp_app 'live?token=T&org=9'`,
/// which puts it in the connect's tcUrl too), REST `find_all` and `find` show the publisher's
/// other parameters but no `token`, and the server log holds no part of the token.
#[test]
fn a_publish_token_shows_neither_in_rest_nor_in_the_log() {
    let server = start(&[("app.token_secret", SECRET.into())]);
    let on_stream = token_for("x", "publish");
    let on_connect = token_for("y", "publish");
    let mut x = publish_ffmpeg(
        &format!("{}?token={on_stream}&room=7", server.url("x")),
        40,
        &[],
    );
    let connect_app = format!("live?token={on_connect}&org=9");
    let mut y = publish_ffmpeg(
        &format!("{}?room=8", server.url("y")),
        40,
        &["-rtmp_app", &connect_app],
    );
    wait_published(&server, "x", &mut x);
    wait_published(&server, "y", &mut y);

    let queries = publisher_queries(&server);
    assert_eq!(queries["live/x"], json!({"room": "7"}), "{queries:?}");
    assert_eq!(
        queries["live/y"],
        json!({"org": "9", "room": "8"}),
        "{queries:?}"
    );
    for name in ["x", "y"] {
        let v = server.find_stream(name).expect("find");
        let query = &v["publisher"]["query"];
        assert!(
            query.is_object() && query.get("token").is_none(),
            "find {name} shows a token: {v}"
        );
    }

    let log = server.log();
    assert!(
        log.contains("RTMP connect") && log.contains("RTMP publish started"),
        "the log should record the connects and publishes: {}",
        tail(&log, 20)
    );
    for (what, token) in [("stream URL", &on_stream), ("connect URL", &on_connect)] {
        let signature = token.rsplit('.').next().unwrap();
        let leaks: Vec<&str> = log.lines().filter(|l| l.contains(signature)).collect();
        assert!(
            leaks.is_empty(),
            "the log shows the {what}'s token: {leaks:#?}"
        );
    }
}

/// Fix: a play of another application's stream needs that application's connect. A signalling
/// session connected to the open `live` (`appKey: live`, its backend-less connect allowed) that
/// plays `key1/x` makes key1's backend hear a `connect` (app key1, the session's `custom`)
/// before the `play`; when that backend refuses the connect, the play FAILS with its reason,
/// gets no offer, and the play is never asked.
#[test]
fn a_play_in_another_application_needs_that_applications_connect() {
    let backend = Backend::start(|b| {
        if b["event"] == "connect" && b["custom"]["user"] == "eve" {
            Answer::deny("eve may not join key1")
        } else {
            Answer::allow()
        }
    });
    let server = start_webrtc(&[("apps.key1.backend_url", backend.url())]);
    let mut publisher = publish_ffmpeg(&server.url_app("key1", "x"), 60, &[]);
    wait_published_in(&server, "key1", "x", &mut publisher);
    let session_hooks = |id: &str| -> Vec<Value> {
        backend
            .hooks()
            .into_iter()
            .filter(|b| b["sessionId"] == id)
            .collect()
    };

    let mut ann = Signal::open(server.http_port, "");
    let session =
        ann.connect(json!({"type": "connect", "appKey": "live", "custom": {"user": "ann"}}));
    assert_eq!(session["status"], "ESTABLISHED", "{session}");
    let ann_id = session["sessionId"].as_str().unwrap().to_string();
    assert!(
        session_hooks(&ann_id).is_empty(),
        "a connect to live asked key1's backend: {}",
        backend.describe()
    );
    assert_signal_play_offered(&mut ann, "v1", "key1/x", None);
    let hooks = session_hooks(&ann_id);
    let events: Vec<&str> = hooks.iter().map(|b| b["event"].as_str().unwrap()).collect();
    assert_eq!(
        events[..2.min(events.len())],
        ["connect", "play"],
        "key1's backend hears the connect before the play: {}",
        backend.describe()
    );
    assert_eq!(
        (
            hooks[0]["app"].as_str(),
            hooks[0]["protocol"].as_str(),
            &hooks[0]["custom"]
        ),
        (Some("key1"), Some("webrtc"), &json!({"user": "ann"})),
        "{}",
        hooks[0]
    );
    assert_eq!(
        (hooks[1]["app"].as_str(), hooks[1]["stream"].as_str()),
        (Some("key1"), Some("x")),
        "{}",
        hooks[1]
    );

    let mut eve = Signal::open(server.http_port, "");
    let session =
        eve.connect(json!({"type": "connect", "appKey": "live", "custom": {"user": "eve"}}));
    assert_eq!(session["status"], "ESTABLISHED", "live is open: {session}");
    let eve_id = session["sessionId"].as_str().unwrap().to_string();
    assert_signal_play_refused(&mut eve, "v1", "key1/x", None, "eve may not join key1");
    let events: Vec<Value> = session_hooks(&eve_id)
        .iter()
        .map(|b| json!([b["event"], b["app"]]))
        .collect();
    assert_eq!(
        events,
        [json!(["connect", "key1"])],
        "eve's play is not asked after her connect to key1 was refused: {}",
        backend.describe()
    );
}

/// Fix: the RTMP application is the first segment of the connect's path. With
/// `[apps.key1] token_secret` and `[app]` open, `rtmp://HOST/key1/sub/x` (ffmpeg: app
/// `key1/sub`, stream `x`) is stream `sub/x` of key1: refused without a token (ffmpeg and the
/// scripted client), published with key1's token for `sub/x`, listed by REST as app `key1`,
/// name `sub/x`, and played by either spelling with a play token. An `appKey` with a `/` on the
/// connect URL is rejected (`NetConnection.Connect.Rejected`) and closed.
#[test]
fn the_rtmp_application_is_the_first_path_segment() {
    let server = start(&[("apps.key1.token_secret", SECRET.into())]);
    let port = server.rtmp_port;
    let required = "a token is required";

    assert_ffmpeg_publish_refused(&server.url_app("key1", "sub/x"), required);
    assert_eq!(
        rtmp_publish_refusal(port, "key1/sub", "x"),
        Some(("NetStream.Publish.Denied".into(), required.into()))
    );
    let publish = mint(&["--app", "key1", "--stream", "sub/x", "--action", "publish"]);
    let mut publisher = publish_ffmpeg(
        &format!("{}?token={publish}", server.url_app("key1", "sub/x")),
        40,
        &[],
    );
    wait_published_in(&server, "key1", "sub/x", &mut publisher);
    let listed: Vec<String> = publisher_queries(&server).into_keys().collect();
    assert_eq!(listed, ["key1/sub/x"], "REST lists app key1, name sub/x");
    let (_, v) = server.rest("stream/find", r#"{"app":"key1","name":"sub/x"}"#);
    assert_eq!(
        (v["app"].as_str(), v["name"].as_str()),
        (Some("key1"), Some("sub/x")),
        "{v}"
    );

    let play = mint(&["--app", "key1", "--stream", "sub/x", "--action", "play"]);
    assert_rtmp_play_refused(port, "key1/sub", "x", required);
    assert_rtmp_plays(port, "key1/sub", &format!("x?token={play}"));
    assert_rtmp_plays(port, "key1", &format!("sub/x?token={play}"));

    let answer = rtmp_connect_raw(port, "live?appKey=a/b");
    assert_eq!(
        (
            answer.command.as_str(),
            answer.code.as_str(),
            answer.description.as_str()
        ),
        (
            "_error",
            "NetConnection.Connect.Rejected",
            "'appKey' is one application name, without '/'"
        ),
        "{answer:?}"
    );
    assert!(
        answer.closed,
        "the rejected connection stays open: {answer:?}"
    );
}

/// Fix: a private publish token with `--client a` names the stream's holder. Viewer "b" (a play
/// token tagged "b") attached first, then viewer "a", both waiting for the stream; when the
/// private publish comes, "b" is stopped with the private refusal before any media and "a"
/// plays; a later "b" is refused over RTMP and the media WebSocket.
#[test]
fn a_private_publish_token_names_its_holder_over_players_waiting_first() {
    let server = start(&[
        ("app.token_secret", SECRET.into()),
        ("stream.play_wait_timeout_ms", "30000".into()),
    ]);
    let private = "the stream is private: another viewer holds it";
    let token_a = mint(&["--stream", "desk", "--action", "play", "--client", "a"]);
    let token_b = mint(&["--stream", "desk", "--action", "play", "--client", "b"]);

    let mut b = RtmpClient::player(server.rtmp_port, "live", &format!("desk?token={token_b}"))
        .expect("viewer b");
    let (ok, v) = server.wait_stream("desk", secs(10), |v| rtmp_players(v) == 1);
    assert!(ok, "viewer b does not wait for the stream: {v:?}");
    let mut a = RtmpClient::player(server.rtmp_port, "live", &format!("desk?token={token_a}"))
        .expect("viewer a");
    let (ok, v) = server.wait_stream("desk", secs(10), |v| {
        v.is_some_and(|v| v["status"] == "WAITING") && rtmp_players(v) == 2
    });
    assert!(ok, "both viewers wait for the stream: {v:?}");

    let publish = mint(&[
        "--stream",
        "desk",
        "--action",
        "publish",
        "--private",
        "--client",
        "a",
    ]);
    let publisher = publish_ffmpeg(&format!("{}?token={publish}", server.url("desk")), 60, &[]);
    let events = rtmp_play_on(&mut b, ms(1500));
    assert_eq!(
        error_status(&events),
        Some(("NetStream.Play.Failed".to_string(), private.to_string())),
        "viewer b, attached first, is not the named holder: {}",
        summarize(&events)
    );
    assert_eq!(
        media_messages(&events),
        0,
        "b got media: {}",
        summarize(&events)
    );
    let events = rtmp_play_on(&mut a, ms(0));
    assert!(
        has_video(&events) && error_status(&events).is_none(),
        "viewer a, the named holder, plays: {}\n{}",
        summarize(&events),
        publisher.stderr()
    );

    assert_rtmp_play_refused(
        server.rtmp_port,
        "live",
        &format!("desk?token={token_b}"),
        private,
    );
    assert_ws_refused(&server, &format!("name=desk&token={token_b}"), private);
    let (v, _, closed) = a.count_media(ms(500));
    assert!(v > 0 && !closed, "viewer a goes on");
}

/// The reason a client is told when the backend's answer could not be read.
const UNREADABLE: &str = "the application's backend did not answer: unreadable answer";

/// Asserts an RTMP publish was refused as unreadable: the scripted client gets
/// `NetStream.Publish.Denied` with the reason, ffmpeg prints it, and no stream appears.
fn assert_publish_refused_unreadable(server: &Server, name: &str) {
    let refusal = rtmp_publish_refusal(server.rtmp_port, "live", name);
    assert!(
        refusal.as_ref().is_some_and(
            |(code, why)| code == "NetStream.Publish.Denied" && why.starts_with(UNREADABLE)
        ),
        "publish {name}: {refusal:?}"
    );
    assert_ffmpeg_publish_refused(&server.url(name), UNREADABLE);
    assert!(
        server.find_stream(name).is_none(),
        "a refused publish left a stream: {:?}",
        server.find_stream(name)
    );
}

/// Fix: a 2xx answer that cannot be read refuses (it used to count as an empty allow). A body
/// over 64 KiB refuses a publish (ffmpeg prints the reason, no stream appears) and a play (the
/// reason, no media); a readable 200 still allows.
#[test]
fn an_oversized_backend_answer_refuses() {
    let oversized = || Answer::allow_with(json!({"padding": "x".repeat(70 * 1024)}));
    let backend = Backend::start(move |b| match b["event"].as_str() {
        Some("publish") if b["stream"] == "big" => oversized(),
        Some("play") if b["query"]["answer"] == "big" => oversized(),
        _ => Answer::allow(),
    });
    let server = start(&[("app.backend_url", backend.url())]);
    let port = server.rtmp_port;
    assert_publish_refused_unreadable(&server, "big");

    let mut publisher = publish_ffmpeg(&server.url("show"), 40, &[]);
    wait_published(&server, "show", &mut publisher);
    let events = rtmp_play(port, "live", "show?answer=big", ms(1500));
    let refusal = error_status(&events);
    assert!(
        refusal.as_ref().is_some_and(
            |(code, why)| code == "NetStream.Play.Failed" && why.starts_with(UNREADABLE)
        ),
        "a play answered with 70 KiB: {}",
        summarize(&events)
    );
    assert_eq!(media_messages(&events), 0, "{}", summarize(&events));
    assert_rtmp_plays(port, "live", "show?answer=small");
}

/// A 2xx answer whose body is cut short refuses: the backend answers a publish `200` with
/// `Content-Length: 100`, sends 10 bytes (`{"private"`) and closes the connection; whatever the
/// lost part said (privacy, say) is unknown, so the publish is refused as unreadable.
#[test]
fn a_backend_answer_cut_short_refuses() {
    let backend = Backend::start(|b| match b["event"].as_str() {
        Some("publish") if b["stream"] == "cut" => Answer::truncated(100, r#"{"private""#),
        _ => Answer::allow(),
    });
    let server = start(&[("app.backend_url", backend.url())]);
    assert_publish_refused_unreadable(&server, "cut");
}

/// Fix: commands sent right after `connect`, before its answer, wait for the decision instead
/// of dropping the connection. A raw client writes connect, createStream and play back to back
/// while the backend takes 800 ms to allow the connect: the connect is answered `_result` after
/// the backend's delay, the play starts and media arrives. When the backend refuses that
/// connect (as late), the queued play is never served: `_error`, closed, no media.
#[test]
fn commands_after_a_pending_connect_wait_for_its_decision() {
    let delay = ms(800);
    let backend =
        Backend::start(
            move |b| match (b["event"].as_str(), b["query"]["pace"].as_str()) {
                (Some("connect"), Some("slow")) => Answer::after(delay, Answer::allow()),
                (Some("connect"), Some("slow-refusal")) => {
                    Answer::after(delay, Answer::deny("not this client"))
                }
                _ => Answer::allow(),
            },
        );
    let server = start(&[("app.backend_url", backend.url())]);
    let mut publisher = publish_ffmpeg(&server.url("pipe"), 40, &[]);
    wait_published(&server, "pipe", &mut publisher);

    let seen = rtmp_play_pipelined(server.rtmp_port, "live?pace=slow", "pipe", 10);
    let (command, code, elapsed) = seen.connect.clone().unwrap_or_default();
    assert_eq!(
        (command.as_str(), code.as_str()),
        ("_result", "NetConnection.Connect.Success"),
        "{seen:?}"
    );
    assert!(
        elapsed >= ms(700),
        "the connect was answered before the backend's decision ({elapsed:?}): the test did not \
         send its commands while the decision was pending"
    );
    assert!(
        seen.stream_created
            && seen.has_status("NetStream.Play.Start")
            && seen.video >= 10
            && !seen.closed,
        "the pipelined play should go on: {seen:?}"
    );
    let play = backend
        .events("play")
        .into_iter()
        .find(|b| b["query"]["pace"] == "slow")
        .unwrap_or_else(|| panic!("the pipelined play was not asked: {}", backend.describe()));
    assert_eq!(play["stream"], "pipe", "{play}");

    let seen = rtmp_play_pipelined(server.rtmp_port, "live?pace=slow-refusal", "pipe", 1);
    assert_eq!(
        seen.connect
            .as_ref()
            .map(|(command, code, _)| (command.as_str(), code.as_str())),
        Some(("_error", "NetConnection.Connect.Rejected")),
        "{seen:?}"
    );
    assert!(
        seen.closed
            && seen.video == 0
            && seen.audio == 0
            && !seen.has_status("NetStream.Play.Start"),
        "a play queued behind a refused connect was served: {seen:?}"
    );
    assert!(
        !backend
            .events("play")
            .iter()
            .any(|b| b["query"]["pace"] == "slow-refusal"),
        "{}",
        backend.describe()
    );
}

/// Fix: a viewer's `send` goes to WebRTC publishers only and is rate-limited. On a stream an
/// RTMP client publishes, a `send` is answered with an `error` `not_playing` (ref: the stream
/// id); a burst of 40 sends passes about 20 (each answered `not_playing`) and the rest get
/// `too_many_messages`; the session stays up, and once the budget refills a `send` passes
/// again.
#[test]
fn signalling_send_needs_a_webrtc_publisher_and_is_rate_limited() {
    let server = start_webrtc(&[]);
    let mut publisher = publish_ffmpeg(&server.url("talk"), 60, &[]);
    wait_published(&server, "talk", &mut publisher);
    let mut s = Signal::open(server.http_port, "");
    assert_eq!(
        s.connect(json!({"type": "connect"}))["status"],
        "ESTABLISHED"
    );
    assert_signal_play_offered(&mut s, "v1", "talk", None);
    let send = |s: &mut Signal, n: usize| {
        s.send(json!({"type": "send", "streamId": "v1", "data": {"kind": "hand", "n": n}}))
    };

    send(&mut s, 0);
    let error = s.wait(secs(5), |v| v["type"] == "error");
    assert_eq!(
        (error["code"].as_str(), error["ref"].as_str()),
        (Some("not_playing"), Some("v1")),
        "{error}"
    );

    const BURST: usize = 40;
    for n in 1..=BURST {
        send(&mut s, n);
    }
    let mut codes: HashMap<String, usize> = HashMap::new();
    for _ in 0..BURST {
        let error = s.wait(secs(10), |v| v["type"] == "error");
        *codes
            .entry(error["code"].as_str().unwrap_or("?").to_string())
            .or_default() += 1;
    }
    let passed = codes.get("not_playing").copied().unwrap_or(0);
    let limited = codes.get("too_many_messages").copied().unwrap_or(0);
    assert!(
        passed + limited == BURST && (15..=22).contains(&passed) && limited >= 10,
        "a burst of {BURST} sends after one: {codes:?}"
    );
    assert!(!s.closed, "errors never end the session");

    // The budget refills (10 a second): a later send passes again.
    let deadline = Instant::now() + secs(5);
    loop {
        std::thread::sleep(ms(200));
        send(&mut s, 0);
        let error = s.wait(secs(5), |v| v["type"] == "error");
        if error["code"] == "not_playing" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the send budget never refilled: {error}"
        );
    }
}

/// Fix: a signalling `describe` tells only of streams anyone may play. While all are
/// publishing, a stream of an application with a token secret or a play hook, and a private
/// stream, are `NOT_FOUND` (nothing about them); a public stream of the open application is
/// `PUBLISHING` with its video.
#[test]
fn describe_tells_only_of_streams_anyone_may_play() {
    let backend = Backend::allow_all();
    let server = start(&[
        ("apps.sec.token_secret", SECRET.into()),
        ("apps.hooked.backend_url", backend.url()),
    ]);
    let token = mint(&["--app", "sec", "--stream", "cam", "--action", "publish"]);
    let mut sec = publish_ffmpeg(
        &format!("{}?token={token}", server.url_app("sec", "cam")),
        60,
        &[],
    );
    let mut hooked = publish_ffmpeg(&server.url_app("hooked", "cam"), 60, &[]);
    let mut open = publish_ffmpeg(&server.url("cam"), 60, &[]);
    let mut private = publish_ffmpeg(&format!("{}?private=true", server.url("priv")), 60, &[]);
    wait_published_in(&server, "sec", "cam", &mut sec);
    wait_published_in(&server, "hooked", "cam", &mut hooked);
    wait_published(&server, "cam", &mut open);
    wait_published(&server, "priv", &mut private);

    let mut s = Signal::open(server.http_port, "");
    assert_eq!(
        s.connect(json!({"type": "connect"}))["status"],
        "ESTABLISHED"
    );
    for (name, status) in [
        ("cam", "PUBLISHING"),
        ("live/cam", "PUBLISHING"),
        ("sec/cam", "NOT_FOUND"),
        ("hooked/cam", "NOT_FOUND"),
        ("priv", "NOT_FOUND"),
    ] {
        s.send(json!({"type": "describe", "name": name}));
        let d = s.wait(secs(5), |v| v["type"] == "description" && v["name"] == name);
        assert_eq!(d["status"], status, "describe {name}: {d}");
        assert_eq!(
            d.get("video").is_some(),
            status == "PUBLISHING",
            "describe {name}: {d}"
        );
    }
}

/// Fix: `mediarouter token` binds a token to its application by default. A publish token minted
/// with `--app live` publishes in live and is refused in `other` (same secret) with "the token
/// is for another application"; one minted with `--any-app` publishes in both. REST
/// `token/create` binds likewise unless asked `any_app`.
#[test]
fn a_token_is_bound_to_its_application_unless_minted_for_any() {
    let server = start(&[("app.token_secret", SECRET.into())]);
    let port = server.rtmp_port;
    let bound = mint(&["--app", "live", "--stream", "x", "--action", "publish"]);
    let any = mint(&[
        "--app",
        "live",
        "--stream",
        "y",
        "--action",
        "publish",
        "--any-app",
    ]);
    assert_eq!(
        rtmp_publish_refusal(port, "live", &format!("x?token={bound}")),
        None
    );
    assert_eq!(
        rtmp_publish_refusal(port, "other", &format!("x?token={bound}")),
        Some((
            "NetStream.Publish.Denied".into(),
            "the token is for another application".into()
        ))
    );
    assert_eq!(
        rtmp_publish_refusal(port, "live", &format!("y?token={any}")),
        None
    );
    assert_eq!(
        rtmp_publish_refusal(port, "other", &format!("y?token={any}")),
        None
    );

    let (status, v) = server.rest(
        "token/create",
        r#"{"app":"live","stream":"x","action":"play"}"#,
    );
    assert_eq!(
        (status, v["claims"]["app"].as_str()),
        (200, Some("live")),
        "{v}"
    );
    let (status, v) = server.rest(
        "token/create",
        r#"{"app":"live","stream":"x","action":"play","any_app":true}"#,
    );
    assert_eq!(status, 200, "{v}");
    assert!(v["claims"].get("app").is_none(), "{v}");
}

/// Fix: the REST API key check reads the headers leniently but fails closed. The scheme of
/// `Authorization` in any case (`bearer`, `BEARER`), spaces around the key, and an empty
/// `X-API-Key:` next to a valid Bearer all reach the handler (404: no stream yet); an empty
/// `X-API-Key` alone, or a Bearer without a key, is 401.
#[test]
fn the_rest_api_key_headers_are_read_leniently() {
    let server = start(&[("rest.api_key", API_KEY.into())]);
    let port = server.rest_port;
    let lower = format!("Authorization: bearer {API_KEY}");
    let spaced = format!("Authorization:   BEARER    {API_KEY}   ");
    let bearer = format!("Authorization: Bearer {API_KEY}");
    for (what, headers, expected) in [
        ("lower-case scheme", vec![lower.as_str()], 404),
        (
            "upper-case scheme, extra spaces",
            vec![spaced.as_str()],
            404,
        ),
        (
            "empty X-API-Key with a valid Bearer",
            vec!["X-API-Key;", bearer.as_str()],
            404,
        ),
        ("empty X-API-Key alone", vec!["X-API-Key;"], 401),
        ("a Bearer without a key", vec!["Authorization: Bearer"], 401),
    ] {
        let (status, body) = rest_with_headers(port, "stream/find_all", "{}", &headers);
        assert_eq!(status, expected, "{what}: {body}");
        assert!(body["error"].is_string(), "{what}: a JSON error: {body}");
    }
}
