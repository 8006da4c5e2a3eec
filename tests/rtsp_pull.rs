//! RTSP camera pull (issue #3), end to end: a real RTSP camera (`scripts/rtsp_camera.py`,
//! gst-rtsp-server with digest auth and the password `p@ss:w0rd`), the server pulling it, and
//! RTMP players (ffmpeg and the scripted client) playing it by camera URL or by stream name; the
//! REST API `/rest-api/rtsp/{startup,find_all,terminate}`; cameras that vanish, come back, never
//! answer or answer nonsense; on-demand pulls that time out or stop when idle; the settings.
//!
//! Each test starts its own server and cameras on free loopback ports, with short timeouts so
//! that it stays under a minute.

mod common;

use common::*;
use serde_json::{json, Value};
use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Instant;

/// The RTSP settings every test starts with (short, so tests stay quick); `extra` replaces or adds.
fn start_server(extra: &[(&str, &str)]) -> Server {
    let mut overrides: Vec<(&str, &str)> = vec![
        ("rtsp.connect_timeout_ms", "4000"),
        ("rtsp.on_demand_timeout_ms", "6000"),
        ("rtsp.idle_stop_ms", "3000"),
        ("rtsp.reconnect_min_ms", "500"),
        ("rtsp.reconnect_max_ms", "2000"),
    ];
    for (k, v) in extra {
        overrides.retain(|(k2, _)| k2 != k);
        overrides.push((k, v));
    }
    Server::start(&overrides)
}

fn assert_error_body(what: &str, body: &Value) {
    assert!(
        body["error"].as_str().is_some_and(|e| !e.trim().is_empty()),
        "{what}: expected a JSON body with a non-empty \"error\" string, got {body}"
    );
}

/// Asserts that no spelling of the camera password (raw, escaped, escaped twice) nor any of
/// `also` is in `text`.
fn assert_no_secret(what: &str, text: &str, also: &[&str]) {
    for secret in [CAMERA_PASSWORD_MARK].iter().chain(also.iter()) {
        if let Some(i) = text.find(secret) {
            let start = text[..i].char_indices().rev().nth(80).map_or(0, |(j, _)| j);
            let end = (i + secret.len() + 80).min(text.len());
            let end = (end..=text.len())
                .find(|&j| text.is_char_boundary(j))
                .unwrap_or(text.len());
            panic!(
                "{what} leaks a password ({secret:?}): ...{}...",
                &text[start..end]
            );
        }
    }
}

/// True when a pull object is the stream `name` of app `live` (its `name` is the stream name;
/// `live/NAME` is accepted here so that lookups work either way, the exact form is checked by
/// [`Problems::pull_name`]).
fn pull_is(pull: &Value, name: &str) -> bool {
    pull["name"] == name || pull["name"] == format!("live/{name}").as_str()
}

fn pull_named<'a>(pulls: &'a [Value], name: &str) -> Option<&'a Value> {
    pulls.iter().find(|p| pull_is(p, name))
}

/// Departures from the spec that do not stop the rest of a test from telling something useful:
/// collected, and asserted together at the end of the test.
#[derive(Default)]
struct Problems(Vec<String>);

impl Problems {
    fn check(&mut self, ok: bool, what: impl FnOnce() -> String) {
        if !ok {
            let w = what();
            eprintln!("[rtsp_pull] PROBLEM: {w}");
            self.0.push(w);
        }
    }

    /// The pull object's `name` is the stream name as given to startup (`cam1`, not `live/cam1`).
    fn pull_name(&mut self, pull: &Value, name: &str) {
        self.check(pull["name"] == name, || {
            format!("pull \"name\" should be the stream name {name:?}: {pull}")
        });
    }

    fn assert_none(self) {
        assert!(
            self.0.is_empty(),
            "{} problem(s):\n- {}",
            self.0.len(),
            self.0.join("\n- ")
        );
    }
}

/// The track of a pull object for a media kind (`video`, `audio`).
fn track<'a>(pull: &'a Value, media: &str) -> Option<&'a Value> {
    pull["tracks"]
        .as_array()
        .and_then(|t| t.iter().find(|t| t["media"] == media))
}

fn is_video(e: &Event) -> bool {
    matches!(
        e,
        Event::Video {
            sequence_header: false,
            ..
        }
    )
}

/// Minimum number of video frames for `seconds` of a 25 fps camera (half of them: a player
/// starts on a keyframe and the machine is small).
fn min_video(seconds: u32) -> u64 {
    (CAMERA_FPS * seconds / 2) as u64
}

fn assert_played(label: &str, p: &Played, seconds: u32) {
    assert!(
        p.video >= min_video(seconds),
        "{label}: decoded {} video frames, expected >= {} ({p:?})",
        p.video,
        min_video(seconds)
    );
    let errors = p.error_lines();
    assert!(errors.is_empty(), "{label}: decode errors: {errors:?}");
}

/// `codec_type` → `codec_name` of the streams ffprobe finds in `url`.
fn probe_codecs(url: &str) -> Result<Vec<(String, String)>, String> {
    let args: Vec<String> = [
        "-hide_banner",
        "-v",
        "error",
        "-rw_timeout",
        "15000000",
        "-show_entries",
        "stream=codec_type,codec_name",
        "-of",
        "json",
        url,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let mut p = Proc::spawn("ffprobe", "ffprobe", &args);
    if p.wait_timeout(secs(25)).is_none() {
        p.kill();
        return Err(format!("ffprobe did not end within 25 s: {}", p.stderr()));
    }
    let out = p.stdout();
    let v: Value = serde_json::from_str(&out)
        .map_err(|e| format!("ffprobe output not JSON ({e}): {out} / {}", p.stderr()))?;
    Ok(v["streams"]
        .as_array()
        .map(|s| {
            s.iter()
                .map(|s| {
                    (
                        s["codec_type"].as_str().unwrap_or("").to_string(),
                        s["codec_name"].as_str().unwrap_or("").to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default())
}

// ------------------------------------------------------------------------------------------------
// Cameras that are not cameras
// ------------------------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq)]
enum Nonsense {
    /// Answers every read with random bytes.
    Bytes,
    /// Answers OPTIONS properly, DESCRIBE with a 200 whose SDP is garbage, anything else with
    /// random bytes.
    BadSdp,
    /// A well-formed DESCRIBE answer whose only tracks are VP8 video and an unknown application
    /// stream (nothing an RTMP player can take); anything after it gets random bytes.
    NoSupportedTrack,
    /// Accepts connections and never says a word.
    Silent,
}

/// A TCP server on a free loopback port that plays a broken camera; stopped on drop.
struct FakeCamera {
    port: u16,
    connections: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl FakeCamera {
    fn start(mode: Nonsense) -> FakeCamera {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind fake camera");
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let connections = Arc::new(AtomicU64::new(0));
        let (stop2, conns2) = (stop.clone(), connections.clone());
        let handle = thread::spawn(move || {
            let mut workers = Vec::new();
            let deadline = Instant::now() + secs(120);
            while !stop2.load(Ordering::SeqCst) && Instant::now() < deadline {
                match listener.accept() {
                    Ok((sock, _)) => {
                        let n = conns2.fetch_add(1, Ordering::SeqCst);
                        let stop3 = stop2.clone();
                        workers.push(thread::spawn(move || {
                            fake_camera_connection(sock, mode, port, n, &stop3)
                        }));
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => thread::sleep(ms(20)),
                    Err(_) => thread::sleep(ms(20)),
                }
            }
            for w in workers {
                let _ = w.join();
            }
        });
        FakeCamera {
            port,
            connections,
            stop,
            handle: Some(handle),
        }
    }

    fn url(&self) -> String {
        format!(
            "rtsp://{CAMERA_USER}:{CAMERA_PASSWORD_ESCAPED}@127.0.0.1:{}/cam",
            self.port
        )
    }

    fn connections(&self) -> u64 {
        self.connections.load(Ordering::SeqCst)
    }
}

impl Drop for FakeCamera {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

fn garbage(seed: u64) -> Vec<u8> {
    let mut g = b"\x00\xffGARBAGE \x01\x02\r\n".to_vec();
    g.extend(pseudo_random_bytes(700, seed));
    g
}

fn rtsp_reply(cseq: &str, extra_headers: &str, body: &[u8]) -> Vec<u8> {
    let mut r = format!(
        "RTSP/1.0 200 OK\r\nCSeq: {cseq}\r\nServer: fake-camera\r\n{extra_headers}Content-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    r.extend_from_slice(body);
    r
}

/// Serves one connection of a [`FakeCamera`] until the peer closes it, the camera stops, or a
/// minute passed.
fn fake_camera_connection(
    mut sock: TcpStream,
    mode: Nonsense,
    port: u16,
    conn: u64,
    stop: &AtomicBool,
) {
    sock.set_nonblocking(false).ok();
    sock.set_read_timeout(Some(ms(100))).ok();
    let deadline = Instant::now() + secs(60);
    let mut buf: Vec<u8> = Vec::new();
    let mut chunk = [0u8; 4096];
    let mut seed = 0x5eed_0000 + conn * 1000;
    while !stop.load(Ordering::SeqCst) && Instant::now() < deadline {
        let n = match sock.read(&mut chunk) {
            Ok(0) => return,
            Ok(n) => n,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => continue,
            Err(_) => return,
        };
        seed += 1;
        match mode {
            Nonsense::Silent => continue,
            Nonsense::Bytes => {
                if sock.write_all(&garbage(seed)).is_err() {
                    return;
                }
                continue;
            }
            Nonsense::BadSdp | Nonsense::NoSupportedTrack => {}
        }
        buf.extend_from_slice(&chunk[..n]);
        // Whole requests (no request bodies expected from a client that plays).
        while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let request = String::from_utf8_lossy(&buf[..end]).to_string();
            buf.drain(..end + 4);
            let method = request.split_whitespace().next().unwrap_or("").to_string();
            let cseq = request
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.trim()
                        .eq_ignore_ascii_case("cseq")
                        .then(|| v.trim().to_string())
                })
                .unwrap_or_else(|| "1".into());
            let base = format!("Content-Base: rtsp://127.0.0.1:{port}/cam/\r\n");
            let reply = match (mode, method.as_str()) {
                (_, "OPTIONS") => rtsp_reply(
                    &cseq,
                    "Public: OPTIONS, DESCRIBE, SETUP, PLAY, TEARDOWN, GET_PARAMETER\r\n",
                    b"",
                ),
                (Nonsense::BadSdp, "DESCRIBE") => {
                    let mut body =
                        b"v=banana\r\nm=video ?? RTP/AVP zz\r\na=rtpmap:\x01\x02\r\n".to_vec();
                    body.extend(pseudo_random_bytes(200, seed));
                    rtsp_reply(
                        &cseq,
                        &format!("{base}Content-Type: application/sdp\r\n"),
                        &body,
                    )
                }
                (Nonsense::NoSupportedTrack, "DESCRIBE") => {
                    let sdp = "v=0\r\n\
                               o=- 1 1 IN IP4 127.0.0.1\r\n\
                               s=fake camera\r\n\
                               c=IN IP4 0.0.0.0\r\n\
                               t=0 0\r\n\
                               a=control:*\r\n\
                               m=video 0 RTP/AVP 98\r\n\
                               a=rtpmap:98 VP8/90000\r\n\
                               a=control:track1\r\n\
                               m=application 0 RTP/AVP 107\r\n\
                               a=rtpmap:107 x-nonsense/90000\r\n\
                               a=control:track2\r\n";
                    rtsp_reply(
                        &cseq,
                        &format!("{base}Content-Type: application/sdp\r\n"),
                        sdp.as_bytes(),
                    )
                }
                _ => garbage(seed),
            };
            if sock.write_all(&reply).is_err() {
                return;
            }
        }
    }
}

// ------------------------------------------------------------------------------------------------
// One connection per camera URL
// ------------------------------------------------------------------------------------------------

/// Three ffmpeg players ask for the same camera URL at once, then a REST startup asks for it too:
/// the camera sees exactly one RTSP connection (over TCP, the default transport), every player
/// decodes video, and no REST answer or log line shows the password.
#[test]
fn three_players_and_a_rest_startup_share_one_camera_connection() {
    let cam = Camera::start(CameraOpts::default());
    let server = start_server(&[]);
    let cam_url = cam.url();
    let play_url = server.camera_play_url(&cam_url);

    let players: Vec<Player> = (0..3).map(|_| Player::spawn(&play_url, 6)).collect();

    // One pull, playing, with the three viewers.
    let (ok, pulls) = server.wait_pulls(secs(15), |p| {
        p.len() == 1 && p[0]["status"] == "PLAYING" && p[0]["viewers"].as_u64() >= Some(3)
    });
    assert!(
        ok,
        "expected one PLAYING pull with 3 viewers, find_all shows {pulls:?}\n{}",
        cam.describe()
    );
    let pull = &pulls[0];
    let uri = pull["uri"].as_str().unwrap_or_default();
    assert!(
        uri.contains(&format!("127.0.0.1:{}/cam", cam.port)) && uri.contains("***"),
        "pull uri should be the camera URL with its password masked: {pull}"
    );
    assert_eq!(pull["on_demand"], true, "a pull started by players: {pull}");
    let video = track(pull, "video").unwrap_or_else(|| panic!("no video track: {pull}"));
    assert_eq!(video["codec"], "H264", "{pull}");
    assert_eq!(video["supported"], true, "{pull}");
    let audio = track(pull, "audio").unwrap_or_else(|| panic!("no audio track: {pull}"));
    assert_eq!(audio["codec"], "AAC", "{pull}");

    // A REST startup of the same URL does not open a second connection (409: already pulled,
    // or 200 if the server adopts the running pull).
    let (status, v) = server.rtsp("startup", &json!({ "uri": cam_url }));
    eprintln!("[rtsp_pull] startup of a URL players pull on demand: {status} {v}");
    assert!(
        status == 409 || status == 200,
        "startup of a URL players already pull: {status} {v}"
    );
    if status == 409 {
        assert_error_body("startup of an already pulled URL", &v);
    }
    let mut answers = vec![v.to_string(), json!(pulls).to_string()];
    answers.push(server.rest("stream/find_all", "{}").1.to_string());
    answers.push(server.rest("rtsp/find_all", "{}").1.to_string());

    for (i, p) in players.into_iter().enumerate() {
        let played = p.finish(secs(30));
        assert_played(&format!("player {i}"), &played, 6);
    }
    assert_eq!(
        cam.total_connections(),
        1,
        "three players and a REST startup of one camera URL must share ONE RTSP connection\n{}",
        cam.describe()
    );
    assert_eq!(cam.events_named("connect").len(), 1, "{}", cam.describe());
    let setups = cam
        .events()
        .into_iter()
        .filter(|e| e["event"] == "request" && e["method"] == "SETUP")
        .collect::<Vec<_>>();
    assert!(!setups.is_empty(), "no SETUP seen: {}", cam.describe());
    for s in &setups {
        let transport = s["transport"].as_str().unwrap_or_default();
        assert!(
            transport.contains("RTP/AVP/TCP"),
            "default transport is tcp (interleaved), camera saw SETUP {s}"
        );
    }
    for a in &answers {
        assert_no_secret("a REST answer", a, &[]);
    }
    assert_no_secret("the server log", &server.log(), &[]);
}

/// URLs that differ only in their query are different cameras: two pulls, two connections.
#[test]
fn urls_differing_in_query_are_different_pulls() {
    let cam = Camera::start(CameraOpts::default().no_auth());
    let server = start_server(&[]);
    let a = cam.url();
    let b = format!("{a}?channel=2");
    let pa = Player::spawn(&server.camera_play_url(&a), 4);
    let pb = Player::spawn(&server.camera_play_url(&b), 4);
    let (ok, pulls) = server.wait_pulls(secs(15), |p| {
        p.len() == 2 && p.iter().all(|p| p["status"] == "PLAYING")
    });
    assert!(
        ok,
        "expected two PLAYING pulls: {pulls:?}\n{}",
        cam.describe()
    );
    assert_played("player of the plain URL", &pa.finish(secs(30)), 4);
    assert_played("player of the URL with a query", &pb.finish(secs(30)), 4);
    assert_eq!(cam.total_connections(), 2, "{}", cam.describe());
    let queries: Vec<Value> = cam
        .events()
        .into_iter()
        .filter(|e| e["event"] == "request" && e["method"] == "DESCRIBE")
        .map(|e| e["query"].clone())
        .collect();
    assert!(
        queries.contains(&Value::Null) && queries.contains(&json!("channel=2")),
        "the camera should be asked once without and once with the query: {queries:?}"
    );
}

/// A stop (SIGTERM) with cameras being pulled ends every RTSP session cleanly: exit status 0 and
/// no panic in the log (a session dropped after its runtime is gone used to panic, once per pull).
#[test]
fn server_stops_cleanly_while_pulling_cameras() {
    let cam = Camera::start(CameraOpts::default().no_auth());
    let mut server = start_server(&[]);
    for channel in 1..=2 {
        let body = json!({ "uri": format!("{}?channel={channel}", cam.url()) });
        let (status, v) = server.rtsp("startup", &body);
        assert_eq!(status, 200, "startup of channel {channel}: {v}");
    }
    let (ok, pulls) = server.wait_pulls(secs(15), |p| {
        p.len() == 2 && p.iter().all(|p| p["status"] == "PLAYING")
    });
    assert!(ok, "expected two PLAYING pulls: {pulls:?}");
    let status = server.terminate(secs(10));
    let log = server.log();
    assert!(
        status.is_some_and(|s| s.success()),
        "exit status after SIGTERM: {status:?}; log:\n{}",
        tail(&log, 40)
    );
    assert!(
        !log.contains("panicked"),
        "panic while stopping:\n{}",
        tail(&log, 40)
    );
    let stopped = log
        .lines()
        .filter(|l| l.contains("RTSP pull stopped") && l.contains("server shutting down"))
        .count();
    assert_eq!(
        stopped,
        2,
        "both pulls stopped by the shutdown:\n{}",
        tail(&log, 40)
    );
}

// ------------------------------------------------------------------------------------------------
// REST API
// ------------------------------------------------------------------------------------------------

/// startup / find_all / terminate: answers, errors (400, 404, 409, 500 on a wrong password),
/// playing a REST pull by name and by URL, viewers told when it is terminated, and the password
/// in none of the answers nor in the log.
#[test]
fn rest_startup_find_all_terminate() {
    let cam = Camera::start(CameraOpts::default());
    let server = start_server(&[]);
    let cam_url = cam.url();
    let mut answers: Vec<String> = Vec::new();
    let mut problems = Problems::default();

    // Nothing pulled yet.
    for body in ["", "{}"] {
        let (status, v) = server.rest("rtsp/find_all", body);
        assert_eq!(status, 404, "find_all with no pulls (body {body:?}): {v}");
        assert_error_body("find_all with no pulls", &v);
    }

    // Bad URIs: 400.
    for body in [
        json!({ "uri": format!("http://127.0.0.1:{}/cam", cam.port) }),
        json!({ "uri": "not a uri" }),
        json!({ "uri": "rtsp://" }),
        json!({ "uri": 554 }),
        json!({ "name": "cam1" }),
        json!({}),
    ] {
        let (status, v) = server.rtsp("startup", &body);
        assert_eq!(status, 400, "startup with {body}: {v}");
        assert_error_body(&format!("startup with {body}"), &v);
    }
    let (status, v) = server.rest("rtsp/startup", "{not json");
    assert_eq!(status, 400, "startup with malformed JSON: {v}");
    assert_error_body("startup with malformed JSON", &v);
    assert!(server.rtsp_pulls().is_empty(), "bad startups left pulls");

    // A good startup answers once the camera plays.
    let started = Instant::now();
    let (status, v) = server.rtsp("startup", &json!({ "uri": cam_url, "name": "cam1" }));
    assert_eq!(status, 200, "startup: {v}\n{}", cam.describe());
    assert!(
        started.elapsed() < secs(15),
        "startup took {:?}",
        started.elapsed()
    );
    answers.push(v.to_string());
    assert_eq!(v["status"], "PLAYING", "{v}");
    problems.pull_name(&v, "cam1");
    assert_eq!(v["on_demand"], false, "{v}");
    assert_eq!(v["reconnects"], 0, "{v}");
    assert!(v["connected_since"].is_string(), "{v}");
    assert!(v["last_error"].is_null(), "{v}");
    let uri = v["uri"].as_str().unwrap_or_default();
    assert!(
        uri.starts_with("rtsp://")
            && uri.contains("***")
            && uri.contains(&format!("127.0.0.1:{}/cam", cam.port)),
        "uri should be masked: {v}"
    );
    let video = track(&v, "video").unwrap_or_else(|| panic!("no video track: {v}"));
    assert_eq!(video["codec"], "H264", "{v}");
    assert_eq!(video["supported"], true, "{v}");
    let audio = track(&v, "audio").unwrap_or_else(|| panic!("no audio track: {v}"));
    assert_eq!(audio["codec"], "AAC", "{v}");
    assert_eq!(audio["supported"], true, "{v}");

    // Same URL again: 409.
    let (status, v) = server.rtsp("startup", &json!({ "uri": cam_url, "name": "cam1" }));
    assert_eq!(status, 409, "second startup of the same URL: {v}");
    assert_error_body("second startup", &v);
    answers.push(v.to_string());

    // Listed, and a stream named cam1.
    let (status, v) = server.rest("rtsp/find_all", "{}");
    assert_eq!(status, 200, "find_all: {v}");
    answers.push(v.to_string());
    let list = v.as_array().cloned().unwrap_or_default();
    assert_eq!(list.len(), 1, "{v}");
    assert!(pull_is(&list[0], "cam1"), "{v}");
    let (status, v) = server.rest("stream/find_all", "{}");
    answers.push(v.to_string());
    assert_eq!(status, 200, "stream/find_all with a pulled camera: {v}");
    assert!(
        v.as_array()
            .is_some_and(|s| s.iter().any(|s| s["name"] == "cam1")),
        "stream/find_all should list cam1: {v}"
    );

    // Played by name (scripted client and ffmpeg) and by URL (joins the same pull).
    let mut by_name = RtmpClient::player(server.rtmp_port, "live", "cam1").expect("play cam1");
    by_name
        .wait_for(secs(10), is_video)
        .unwrap_or_else(|seen| panic!("cam1 player got no video: {}", summarize(&seen)));
    let ffmpeg_player = Player::spawn(&server.url("cam1"), 60);
    let mut by_url =
        RtmpClient::player(server.rtmp_port, "live", &percent_encode_all(&cam_url)).unwrap();
    by_url
        .wait_for(secs(10), is_video)
        .unwrap_or_else(|seen| panic!("player by URL got no video: {}", summarize(&seen)));
    let (ok, pulls) = server.wait_pulls(secs(10), |p| {
        p.len() == 1 && p[0]["viewers"].as_u64() >= Some(3)
    });
    assert!(ok, "expected 1 pull with 3 viewers: {pulls:?}");
    answers.push(json!(pulls).to_string());
    let deadline = Instant::now() + secs(10);
    while ffmpeg_player.counts().0 < 10 && Instant::now() < deadline {
        thread::sleep(ms(100));
    }
    assert!(
        ffmpeg_player.counts().0 >= 10,
        "ffmpeg player of cam1 decoded {:?}",
        ffmpeg_player.counts()
    );
    assert_eq!(
        cam.total_connections(),
        1,
        "players of a REST pull (by name and by URL) share its connection\n{}",
        cam.describe()
    );

    // Wrong password: 500 naming the reason; the pull stays and retries.
    let bad_url = cam.url_with(CAMERA_USER, "n0tIt%21Zq");
    let (status, v) = server.rtsp("startup", &json!({ "uri": bad_url, "name": "cam-bad" }));
    answers.push(v.to_string());
    assert_eq!(status, 500, "startup with a wrong password: {v}");
    assert_error_body("startup with a wrong password", &v);
    let err = v["error"].as_str().unwrap_or_default();
    assert!(
        err.contains("401") || err.to_lowercase().contains("unauthorized"),
        "the error should say 401 / Unauthorized: {v}"
    );
    let (status, v) = server.rest("rtsp/find_all", "{}");
    answers.push(v.to_string());
    assert_eq!(status, 200, "{v}");
    let list = v.as_array().cloned().unwrap_or_default();
    assert_eq!(list.len(), 2, "the failed pull stays (retrying): {v}");
    let bad = list
        .iter()
        .find(|p| pull_is(p, "cam-bad"))
        .unwrap_or_else(|| panic!("cam-bad not listed: {v}"));
    assert_ne!(bad["status"], "PLAYING", "{bad}");
    assert!(bad["last_error"].is_string(), "{bad}");
    let (status, v) = server.rtsp("startup", &json!({ "uri": bad_url }));
    answers.push(v.to_string());
    assert_eq!(status, 409, "startup of the retrying pull again: {v}");
    let (status, v) = server.rtsp("terminate", &json!({ "uri": bad_url }));
    answers.push(v.to_string());
    assert_eq!(status, 200, "terminate the failed pull: {v}");
    let (ok, pulls) = server.wait_pulls(secs(5), |p| p.len() == 1);
    assert!(
        ok,
        "after terminating cam-bad one pull should stay: {pulls:?}"
    );
    assert_eq!(pulls[0]["status"], "PLAYING", "{pulls:?}");

    // Terminate: the viewers are told, ffmpeg ends, the camera connection closes.
    let (status, v) = server.rtsp("terminate", &json!({ "uri": cam_url }));
    answers.push(v.to_string());
    assert_eq!(status, 200, "terminate: {v}");
    for (label, c) in [("by name", &mut by_name), ("by URL", &mut by_url)] {
        let told = c.wait_for(secs(10), |e| {
            e.is_status("NetStream.Play.UnpublishNotify")
                || e.is_status("NetStream.Play.Stop")
                || e.is_status("NetStream.Play.StreamNotFound")
                || matches!(e, Event::UserControl { kind } if kind.contains("StreamEof"))
                || *e == Event::Closed
        });
        assert!(
            told.is_ok(),
            "player {label} not told of the terminate: {}",
            summarize(&told.unwrap_err())
        );
    }
    let played = ffmpeg_player.finish(secs(10));
    assert!(
        played.status.is_some(),
        "ffmpeg player still running 10 s after terminate: {played:?}"
    );
    let (ok, stats) = cam.wait_stats(secs(10), |s| s["active"] == 0);
    assert!(ok, "camera connection still open after terminate: {stats}");

    // Gone.
    let (status, v) = server.rtsp("terminate", &json!({ "uri": cam_url }));
    assert_eq!(status, 404, "terminate of a pull that is gone: {v}");
    assert_error_body("terminate of a pull that is gone", &v);
    let (status, v) = server.rest("rtsp/find_all", "{}");
    assert_eq!(status, 404, "find_all after terminating everything: {v}");

    for a in &answers {
        assert_no_secret("a REST answer", a, &["n0tIt"]);
    }
    assert_no_secret("the server log", &server.log(), &["n0tIt"]);
    problems.assert_none();
}

// ------------------------------------------------------------------------------------------------
// Camera lost and back
// ------------------------------------------------------------------------------------------------

/// The camera is killed and restarted on the same port: the pull goes RECONNECTING, then PLAYING
/// again with `reconnects` >= 1; the scripted player that stayed attached gets UnpublishNotify,
/// then video again starting on a keyframe; a new ffmpeg player decodes.
#[test]
fn camera_killed_and_restarted_is_reconnected() {
    let mut cam = Camera::start(CameraOpts::default());
    let server = start_server(&[]);
    let cam_url = cam.url();
    let (status, v) = server.rtsp("startup", &json!({ "uri": cam_url, "name": "cam1" }));
    assert_eq!(status, 200, "startup: {v}\n{}", cam.describe());

    let mut watcher = RtmpClient::player(server.rtmp_port, "live", "cam1").expect("play cam1");
    watcher
        .wait_for(secs(10), is_video)
        .unwrap_or_else(|seen| panic!("no video before the kill: {}", summarize(&seen)));

    cam.kill();
    let (ok, pulls) = server.wait_pulls(secs(10), |p| {
        p.len() == 1 && p[0]["status"] == "RECONNECTING"
    });
    assert!(
        ok,
        "pull should be RECONNECTING once the camera died: {pulls:?}"
    );
    assert!(
        pulls[0]["last_error"].is_string() && pulls[0]["connected_since"].is_null(),
        "a RECONNECTING pull should say why and have no connected_since: {pulls:?}"
    );
    let mut problems = Problems::default();
    let told = watcher.wait_status("NetStream.Play.UnpublishNotify", secs(5));
    problems.check(told.is_ok(), || {
        format!(
            "the attached RTMP player should get NetStream.Play.UnpublishNotify when the camera is \
             lost; in 5 s it got: [{}]",
            summarize(told.as_ref().unwrap_err())
        )
    });
    assert!(!watcher.is_closed(), "the attached player was disconnected");

    // Down for a while (some reconnect attempts fail), then back on the same port.
    thread::sleep(ms(2500));
    assert!(
        server.rtsp_pulls().iter().all(|p| p["status"] != "PLAYING"),
        "pull PLAYING while the camera is down"
    );
    cam.restart();
    let (ok, pulls) = server.wait_pulls(secs(20), |p| {
        p.len() == 1 && p[0]["status"] == "PLAYING" && p[0]["reconnects"].as_u64() >= Some(1)
    });
    assert!(
        ok,
        "pull should be PLAYING again with reconnects >= 1: {pulls:?}\n{}",
        cam.describe()
    );
    assert!(pulls[0]["connected_since"].is_string(), "{pulls:?}");

    // The attached player resumes, on a keyframe.
    match watcher.wait_for(secs(15), is_video) {
        Ok((Event::Video { keyframe, .. }, seen)) => assert!(
            keyframe,
            "attached player should resume on a keyframe; saw {}",
            summarize(&seen)
        ),
        Ok(_) => unreachable!(),
        Err(seen) => panic!(
            "attached player got no video after the camera came back: {}",
            summarize(&seen)
        ),
    }
    let (v, _, closed) = watcher.count_media(secs(2));
    assert!(
        !closed && v >= 20,
        "attached player: {v} video in 2 s, closed {closed}"
    );

    // A new ffmpeg player decodes.
    assert_played("new player", &play_count(&server.url("cam1"), 3), 3);
    assert_eq!(
        cam.total_connections(),
        1,
        "the restarted camera should see one connection\n{}",
        cam.describe()
    );
    assert_no_secret("the server log", &server.log(), &[]);
    problems.assert_none();
}

// ------------------------------------------------------------------------------------------------
// Codecs
// ------------------------------------------------------------------------------------------------

/// Plays `cam` on demand and checks the audio codec end to end: the pull's audio track
/// (`rest_codec`), what an RTMP player sees (`ffmpeg_codec`), and decoded audio and video.
fn check_g711_camera(cam: &Camera, rest_codec: &str, ffmpeg_codec: &str) {
    let server = start_server(&[]);
    let play_url = server.camera_play_url(&cam.url());
    let player = Player::spawn(&play_url, 5);

    let (ok, pulls) = server.wait_pulls(secs(15), |p| p.len() == 1 && p[0]["status"] == "PLAYING");
    assert!(ok, "no PLAYING pull: {pulls:?}\n{}", cam.describe());
    let audio = track(&pulls[0], "audio").unwrap_or_else(|| panic!("no audio track: {pulls:?}"));
    assert_eq!(audio["codec"], rest_codec, "{pulls:?}");
    assert_eq!(audio["supported"], true, "{pulls:?}");

    let codecs = probe_codecs(&play_url).unwrap_or_else(|e| panic!("ffprobe: {e}"));
    assert!(
        codecs.contains(&("audio".into(), ffmpeg_codec.into())),
        "RTMP player should see {ffmpeg_codec} audio: {codecs:?}"
    );
    assert!(
        codecs.contains(&("video".into(), "h264".into())),
        "RTMP player should see h264 video: {codecs:?}"
    );

    let played = player.finish(secs(30));
    assert_played("player", &played, 5);
    assert!(played.audio > 0, "no G.711 audio decoded: {played:?}");
    assert_eq!(cam.total_connections(), 1, "{}", cam.describe());
    assert_no_secret("the server log", &server.log(), &[]);
}

/// A camera with G.711 A-law audio: the RTMP player gets FLV G.711 A-law (pcm_alaw) and decodes
/// audio and video.
#[test]
fn pcma_camera_audio_reaches_rtmp_player() {
    let cam = Camera::start(CameraOpts::default().audio("pcma"));
    check_g711_camera(&cam, "PCMA", "pcm_alaw");
}

/// Another camera make: OpenH264 video, G.711 u-law audio, basic authentication.
#[test]
fn openh264_pcmu_basic_auth_camera_plays() {
    let cam = Camera::start(
        CameraOpts::default()
            .audio("pcmu")
            .encoder("openh264")
            .auth("basic"),
    );
    check_g711_camera(&cam, "PCMU", "pcm_mulaw");
}

// ------------------------------------------------------------------------------------------------
// Broken and unreachable cameras
// ------------------------------------------------------------------------------------------------

/// "Cameras" that answer nonsense: each startup gets 500 with a reason, only that pull fails, and
/// a good camera pulled by the same server keeps playing.
#[test]
fn garbage_from_a_camera_fails_that_pull_alone() {
    let cam = Camera::start(CameraOpts::default());
    let server = start_server(&[("rtsp.connect_timeout_ms", "3000")]);
    let (status, v) = server.rtsp("startup", &json!({ "uri": cam.url(), "name": "good" }));
    assert_eq!(
        status,
        200,
        "startup of the good camera: {v}\n{}",
        cam.describe()
    );
    let mut watcher = RtmpClient::player(server.rtmp_port, "live", "good").expect("play good");
    watcher
        .wait_for(secs(10), is_video)
        .unwrap_or_else(|seen| panic!("no video from the good camera: {}", summarize(&seen)));

    let mut fakes = Vec::new();
    for (i, mode) in [
        Nonsense::Bytes,
        Nonsense::BadSdp,
        Nonsense::NoSupportedTrack,
    ]
    .into_iter()
    .enumerate()
    {
        let fake = FakeCamera::start(mode);
        let started = Instant::now();
        let name = format!("junk{i}");
        let (status, v) = server.rtsp("startup", &json!({ "uri": fake.url(), "name": name }));
        assert_eq!(status, 500, "startup of a {mode:?} camera: {v}");
        assert_error_body(&format!("startup of a {mode:?} camera"), &v);
        let err = v["error"].as_str().unwrap_or_default().to_lowercase();
        assert!(err.len() >= 8, "{mode:?}: error too terse to be clear: {v}");
        if mode == Nonsense::NoSupportedTrack {
            assert!(
                err.contains("track") || err.contains("codec") || err.contains("support"),
                "{mode:?}: the error should say no supported track: {v}"
            );
        }
        assert_no_secret("a REST answer", &v.to_string(), &[]);
        assert!(
            started.elapsed() < secs(12),
            "{mode:?}: startup answered after {:?}",
            started.elapsed()
        );
        assert!(
            fake.connections() >= 1,
            "{mode:?}: the server never connected"
        );
        // The good pull is unaffected.
        let (video, _, closed) = watcher.count_media(secs(1));
        assert!(
            !closed && video >= 10,
            "after the {mode:?} camera, the good stream's player got {video} video, closed {closed}"
        );
        fakes.push((fake, name));
    }

    // The failed pulls stay and retry with backoff (reconnect_min_ms 500, max 2000): a few
    // attempts in a few seconds, not a hot loop and not giving up.
    let before: Vec<u64> = fakes.iter().map(|(f, _)| f.connections()).collect();
    let window = Instant::now();
    thread::sleep(ms(4500));
    let pulls = server.rtsp_pulls();
    let good = pull_named(&pulls, "good").unwrap_or_else(|| panic!("good pull gone: {pulls:?}"));
    assert_eq!(good["status"], "PLAYING", "{pulls:?}");
    for ((fake, name), before) in fakes.iter().zip(&before) {
        let p = pull_named(&pulls, name)
            .unwrap_or_else(|| panic!("failed REST pull {name} should stay listed: {pulls:?}"));
        assert_ne!(p["status"], "PLAYING", "{p}");
        assert!(p["last_error"].is_string(), "{p}");
        assert!(p["reconnects"].as_u64() >= Some(1), "{p}");
        let attempts = fake.connections() - before;
        assert!(
            (1..=8).contains(&attempts),
            "{name}: {attempts} connection attempts in {:?} (backoff 500..2000 ms expects 2 to 5)",
            window.elapsed()
        );
    }

    // Terminated, they stop retrying.
    for (fake, _) in &fakes {
        let (status, v) = server.rtsp("terminate", &json!({ "uri": fake.url() }));
        assert_eq!(status, 200, "terminate of a retrying pull: {v}");
    }
    let after: Vec<u64> = fakes.iter().map(|(f, _)| f.connections()).collect();
    thread::sleep(ms(3000));
    for ((fake, name), after) in fakes.iter().zip(&after) {
        assert_eq!(
            fake.connections(),
            *after,
            "{name}: connection attempts after terminate"
        );
    }
    let (ok, pulls) = server.wait_pulls(secs(3), |p| p.len() == 1);
    assert!(ok, "only the good pull should remain: {pulls:?}");

    assert_played(
        "player of the good camera",
        &play_count(&server.url("good"), 3),
        3,
    );
    let (video, _, closed) = watcher.count_media(secs(1));
    assert!(
        !closed && video >= 10,
        "good stream's player: {video} video, closed {closed}"
    );
    assert_eq!(cam.total_connections(), 1, "{}", cam.describe());
    assert_no_secret("the server log", &server.log(), &[]);
}

/// REST startup of a camera that is not there (closed port) or never answers (accepts and says
/// nothing): 500 with a reason, the first within a few seconds, the second after
/// connect_timeout_ms; the pulls stay listed (retrying) until terminated.
#[test]
fn rest_startup_of_an_unreachable_camera_fails_with_a_reason() {
    let server = start_server(&[("rtsp.connect_timeout_ms", "3000")]);
    let closed_port = free_port();
    let closed_url =
        format!("rtsp://{CAMERA_USER}:{CAMERA_PASSWORD_ESCAPED}@127.0.0.1:{closed_port}/cam");
    let started = Instant::now();
    let (status, v) = server.rtsp("startup", &json!({ "uri": closed_url, "name": "closed" }));
    let took = started.elapsed();
    eprintln!("[rtsp_pull] startup of a closed port: {status} in {took:?}: {v}");
    assert_eq!(status, 500, "startup of a closed port: {v}");
    assert_error_body("startup of a closed port", &v);
    assert!(took < secs(3 + 3), "startup of a closed port took {took:?}");
    assert_no_secret("a REST answer", &v.to_string(), &[]);

    let silent = FakeCamera::start(Nonsense::Silent);
    let started = Instant::now();
    let (status, v) = server.rtsp("startup", &json!({ "uri": silent.url(), "name": "silent" }));
    let took = started.elapsed();
    eprintln!("[rtsp_pull] startup of a silent camera: {status} in {took:?}: {v}");
    assert_eq!(status, 500, "startup of a silent camera: {v}");
    assert_error_body("startup of a silent camera", &v);
    assert!(
        took >= ms(2500) && took < secs(3 + 4),
        "startup of a silent camera answered after {took:?} (connect_timeout_ms = 3000)"
    );
    assert_no_secret("a REST answer", &v.to_string(), &[]);

    let pulls = server.rtsp_pulls();
    assert_eq!(pulls.len(), 2, "{pulls:?}");
    assert!(pulls.iter().all(|p| p["status"] != "PLAYING"), "{pulls:?}");
    for url in [&closed_url, &silent.url()] {
        let (status, v) = server.rtsp("startup", &json!({ "uri": url }));
        assert_eq!(status, 409, "startup of a retrying pull: {v}");
        let (status, v) = server.rtsp("terminate", &json!({ "uri": url }));
        assert_eq!(status, 200, "terminate of a retrying pull: {v}");
    }
    let (ok, pulls) = server.wait_pulls(secs(3), |p| p.is_empty());
    assert!(ok, "terminated pulls still listed: {pulls:?}");
    assert_no_secret("the server log", &server.log(), &[]);
}

/// On-demand players of a camera that cannot be reached (a closed port, or a port that accepts
/// and never answers) fail within on_demand_timeout_ms plus a few seconds; the server keeps
/// serving others.
#[test]
fn on_demand_pull_of_an_unreachable_camera_fails_its_players() {
    // connect_timeout_ms stays long so that only on_demand_timeout_ms can end the silent wait.
    let server = start_server(&[
        ("rtsp.on_demand_timeout_ms", "3000"),
        ("rtsp.connect_timeout_ms", "10000"),
    ]);
    let closed_port = free_port();
    let silent = FakeCamera::start(Nonsense::Silent);
    let cam = Camera::start(CameraOpts::default().audio("none"));
    let closed_url =
        format!("rtsp://{CAMERA_USER}:{CAMERA_PASSWORD_ESCAPED}@127.0.0.1:{closed_port}/cam");
    let silent_url = silent.url();
    let wrong_password_url = cam.url_with(CAMERA_USER, "n0tIt");

    let started = Instant::now();
    let players = [
        (
            "closed port",
            Player::spawn(&server.camera_play_url(&closed_url), 10),
        ),
        (
            "silent camera",
            Player::spawn(&server.camera_play_url(&silent_url), 10),
        ),
        (
            "wrong password",
            Player::spawn(&server.camera_play_url(&wrong_password_url), 10),
        ),
    ];
    let mut scripted =
        RtmpClient::player(server.rtmp_port, "live", &percent_encode_all(&silent_url)).unwrap();

    let limit = secs(3 + 6);
    for (label, p) in players {
        let left = limit.saturating_sub(started.elapsed()) + secs(1);
        let played = p.finish(left);
        eprintln!(
            "[rtsp_pull] on-demand player of a {label}: ended {:?} after the start, status {:?}",
            started.elapsed(),
            played.status
        );
        assert!(
            played.status.is_some(),
            "{label}: ffmpeg player still waiting {:?} after it started (on_demand_timeout_ms = 3000): {played:?}",
            started.elapsed()
        );
        assert!(!played.success(), "{label}: player should fail: {played:?}");
        assert_eq!(played.video, 0, "{label}: {played:?}");
    }
    let left = limit.saturating_sub(started.elapsed()) + secs(1);
    let failed = scripted.wait_for(left, |e| {
        matches!(e, Event::Status { level, .. } if level == "error")
            || e.is_status("NetStream.Play.Stop")
            || *e == Event::Closed
    });
    assert!(
        failed.is_ok(),
        "scripted player of the silent camera not failed in time: {}",
        summarize(&failed.unwrap_err())
    );
    assert!(
        silent.connections() >= 1,
        "the server never tried the silent camera"
    );
    // Without viewers, the failed on-demand pulls are gone.
    let (ok, pulls) = server.wait_pulls(secs(3 + 3), |p| p.is_empty());
    assert!(ok, "failed on-demand pulls still listed: {pulls:?}");

    // Still serving: the camera plays on demand with the right password.
    let mut server = server;
    assert!(server.is_alive(), "server died");
    assert_played(
        "player of the camera with the right password",
        &play_count(&server.camera_play_url(&cam.url()), 3),
        3,
    );
    assert_no_secret("the server log", &server.log(), &["n0tIt"]);
}

/// The camera connections (peers) whose DESCRIBE asked for this query (`None`: no query).
fn peers_with_query(cam: &Camera, query: Option<&str>) -> Vec<String> {
    let mut peers: Vec<String> = cam
        .events()
        .into_iter()
        .filter(|e| e["event"] == "request" && e["method"] == "DESCRIBE")
        .filter(|e| e["query"].as_str() == query)
        .filter_map(|e| e["peer"].as_str().map(String::from))
        .collect();
    peers.dedup();
    peers
}

fn closed_peers(cam: &Camera) -> Vec<String> {
    cam.events_named("close")
        .into_iter()
        .filter_map(|e| e["peer"].as_str().map(String::from))
        .collect()
}

/// An on-demand pull outlives its last viewer by idle_stop_ms: a player that comes back within
/// it reuses the connection; after it the camera sees the connection close, the pull is gone,
/// and a new player opens a new connection. A REST-started pull without viewers keeps going.
#[test]
fn on_demand_pull_stops_after_its_last_viewer_leaves() {
    let cam = Camera::start(CameraOpts::default());
    let server = start_server(&[("rtsp.idle_stop_ms", "2000")]);
    let kept_url = format!("{}?keep=1", cam.url());
    let (status, v) = server.rtsp("startup", &json!({ "uri": kept_url, "name": "kept" }));
    assert_eq!(status, 200, "startup: {v}\n{}", cam.describe());
    let play_url = server.camera_play_url(&cam.url());

    assert_played("first player", &play_count(&play_url, 3), 3);
    // Back within idle_stop_ms: same connection.
    assert_played("second player", &play_count(&play_url, 3), 3);
    let left = Instant::now();
    let on_demand = peers_with_query(&cam, None);
    assert_eq!(
        on_demand.len(),
        1,
        "a player back within idle_stop_ms should reuse the pull\n{}",
        cam.describe()
    );

    let deadline = Instant::now() + secs(2 + 5);
    while !closed_peers(&cam).contains(&on_demand[0]) && Instant::now() < deadline {
        thread::sleep(ms(100));
    }
    let after = left.elapsed();
    assert!(
        closed_peers(&cam).contains(&on_demand[0]),
        "camera connection still open {after:?} after the last player left (idle_stop_ms = 2000)\n{}",
        cam.describe()
    );
    eprintln!("[rtsp_pull] on-demand pull closed {after:?} after its last player left");
    assert!(
        after >= ms(1000),
        "camera connection closed {after:?} after the last player left, before idle_stop_ms = 2000"
    );
    let (ok, pulls) = server.wait_pulls(secs(3), |p| p.len() == 1);
    assert!(ok, "stopped on-demand pull still listed: {pulls:?}");

    // The REST pull has had no viewer for longer than idle_stop_ms: it still plays.
    let kept = pull_named(&pulls, "kept").unwrap_or_else(|| panic!("REST pull gone: {pulls:?}"));
    assert_eq!(kept["status"], "PLAYING", "{kept}");
    assert_eq!(kept["on_demand"], false, "{kept}");
    let kept_peers = peers_with_query(&cam, Some("keep=1"));
    assert_eq!(kept_peers.len(), 1, "{}", cam.describe());
    assert!(
        !closed_peers(&cam).contains(&kept_peers[0]),
        "the REST pull's camera connection was closed without viewers\n{}",
        cam.describe()
    );

    // A new viewer starts the on-demand pull again.
    assert_played("player after the stop", &play_count(&play_url, 2), 2);
    assert_eq!(peers_with_query(&cam, None).len(), 2, "{}", cam.describe());
    assert_no_secret("the server log", &server.log(), &[]);
}

// ------------------------------------------------------------------------------------------------
// Settings
// ------------------------------------------------------------------------------------------------

/// UDP transport: the camera is asked for RTP over UDP and the player decodes.
#[test]
fn udp_transport_pull_plays() {
    let cam = Camera::start(CameraOpts::default());
    let server = start_server(&[("rtsp.transport", "udp")]);
    assert_played(
        "player over a UDP pull",
        &play_count(&server.camera_play_url(&cam.url()), 4),
        4,
    );
    let setups: Vec<Value> = cam
        .events()
        .into_iter()
        .filter(|e| e["event"] == "request" && e["method"] == "SETUP")
        .collect();
    assert!(!setups.is_empty(), "{}", cam.describe());
    for s in &setups {
        let t = s["transport"].as_str().unwrap_or_default();
        assert!(
            !t.contains("TCP") && t.contains("client_port"),
            "transport udp should SETUP RTP over UDP: {s}"
        );
    }
}

/// `rtsp.client_address` is not supported: any non-empty value stops the start, naming the key;
/// a bad transport does too; the empty default and `transport = "udp"` start.
#[test]
fn rtsp_settings_are_checked_at_start() {
    let ports = Ports::free();
    let mut env = ports.env();
    env.push((env_key("rtsp.client_address"), "127.0.0.1".into()));
    let (status, stderr, elapsed) = run_server_to_exit(&[], &env, secs(10));
    let status = status.unwrap_or_else(|| {
        panic!("server with rtsp.client_address still running after {elapsed:?}")
    });
    assert!(
        !status.success(),
        "server with rtsp.client_address should fail: {stderr}"
    );
    assert!(
        stderr.contains("rtsp.client_address"),
        "stderr should name rtsp.client_address: {stderr}"
    );

    let dir = TempDir::new("rtsp-settings");
    let file = dir.join("client_address.toml");
    write_file(&file, "[rtsp]\nclient_address = \"192.0.2.1\"\n");
    let (status, stderr, _) = run_server_to_exit(
        &["--config", file.to_str().unwrap()],
        &ports.env(),
        secs(10),
    );
    assert!(
        status.is_some_and(|s| !s.success()),
        "config file with rtsp.client_address should fail: {status:?} {stderr}"
    );
    assert!(stderr.contains("rtsp.client_address"), "{stderr}");

    let mut env = ports.env();
    env.push((env_key("rtsp.transport"), "http".into()));
    let (status, stderr, _) = run_server_to_exit(&[], &env, secs(10));
    assert!(
        status.is_some_and(|s| !s.success()),
        "rtsp.transport = http should fail: {status:?} {stderr}"
    );
    assert!(stderr.contains("rtsp.transport"), "{stderr}");

    let ok_file = dir.join("ok.toml");
    write_file(
        &ok_file,
        "[rtsp]\ntransport = \"udp\"\nclient_address = \"\"\nfail_on_track_error = true\n\
         connect_timeout_ms = 10000\non_demand_timeout_ms = 8000\nidle_stop_ms = 10000\n\
         reconnect_min_ms = 1000\nreconnect_max_ms = 30000\n",
    );
    let ports = Ports::free();
    let mut server = Server::spawn(
        &["--config", ok_file.to_str().unwrap()],
        &ports.env(),
        ports,
    )
    .unwrap_or_else(|e| panic!("server with every [rtsp] key set should start: {e}"));
    assert!(server.is_alive());
    let (status, v) = server.rest("rtsp/find_all", "{}");
    assert_eq!(status, 404, "find_all on a fresh server: {v}");
}
