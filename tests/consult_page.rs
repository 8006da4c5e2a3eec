//! The Consultation page (`web/consult.html`, issue #8's private streams and viewer messages),
//! end to end in headless Chromium: `tests/browser/consult.mjs` drives three tabs of the page (a
//! doctor, patients A and B) as people click it and prints what each saw; the assertions are
//! here.
//!
//! What must hold: the doctor's broadcast plays for both patients; A's request (a `send` on the
//! broadcast) reaches the doctor's page with A's session id; the private session the doctor
//! starts plays for A alone; B, playing A's private name directly through the SDK, is refused
//! ("the stream is private: another viewer holds it") while A and both broadcasts play on; a
//! `send` the server cannot pass on gets an error; ending the session tells A's page.

mod common;

use common::webrtc::*;
use common::*;
use serde_json::Value;
use std::sync::Mutex;

/// Frames a video must at least decode in a 3 s window (the fake camera sends 30 fps; three tabs
/// and the server share two cores).
const MIN_FRAMES: i64 = 30;
/// Seconds currentTime must at least advance in a 3 s window.
const MIN_ADVANCE: f64 = 1.5;
/// The refusal of a second viewer of a private stream.
const PRIVATE_REFUSAL: &str = "the stream is private: another viewer holds it";

/// One scenario at a time: each runs three Chromium tabs that decode video.
static BROWSER: Mutex<()> = Mutex::new(());

fn run_consult(server: &Server, room: &str, extra: &[&str]) -> Value {
    let mut all = args(&[
        "--base",
        &web_base(server),
        "--room",
        room,
        "--window-ms",
        "3000",
        "--deadline-ms",
        "150000",
    ]);
    all.extend(args(extra));
    run_script("consult.mjs", &all, secs(170))
}

fn text(v: &Value) -> &str {
    v.as_str().unwrap_or("")
}

/// Asserts that a measuring window of a video saw it play: decoded frames (the SDK's
/// framesDecoded and the element's totalVideoFrames) and currentTime advancing.
fn assert_window_played(label: &str, w: &Value, r: &Value) {
    let frames = w["framesDecoded"].as_i64().unwrap_or(-1);
    assert!(
        frames >= MIN_FRAMES,
        "{label}: {frames} frames decoded in {} ms, expected >= {MIN_FRAMES}: {w}\nresult: {}",
        w["ms"],
        brief(r)
    );
    assert!(
        w["totalVideoFrames"].as_i64().unwrap_or(0) > 0,
        "{label}: the video element's totalVideoFrames did not grow: {w}"
    );
    let advanced = w["currentTime"].as_f64().unwrap_or(-1.0);
    assert!(
        advanced >= MIN_ADVANCE,
        "{label}: currentTime advanced {advanced} s in {} ms: {w}",
        w["ms"]
    );
    assert_eq!(
        w["end"]["status"], "PLAYING",
        "{label}: status at the end: {w}"
    );
}

/// The numbers of a run, for the issue note.
fn report(what: &str, r: &Value) {
    let w = |v: &Value| {
        format!(
            "{} frames decoded / {} presented / currentTime +{} s in {} ms",
            v["framesDecoded"], v["presented"], v["currentTime"], v["ms"]
        )
    };
    let st = &r["steps"];
    let t = |name: &str| st[name]["t"].as_i64().unwrap_or(-1);
    eprintln!(
        "[consult] {what}: doctor PUBLISHING at {} ms, patients PLAYING at {} ms; A asked at {} ms, \
         the doctor's page listed it at {} ms, Start clicked at {} ms, the private publish live at \
         {} ms, A's private video PLAYING at {} ms, first private frame at {} ms; B refused in {} \
         ms.\n  A broadcast: {}\n  B broadcast: {}\n  A private: {}\n  after B's try: A private {}; \
         A broadcast {}; B broadcast {}",
        t("doctor-broadcasting"),
        t("patients-playing"),
        t("a-asked"),
        t("request-listed"),
        t("doctor-started"),
        t("doctor-private-state"),
        t("a-private-status"),
        t("a-private-frames"),
        r["b"]["intrusion"]["settledMs"],
        w(&r["a"]["broadcastWindow1"]),
        w(&r["b"]["broadcastWindow1"]),
        w(&r["a"]["privateWindow1"]),
        w(&r["a"]["privateWindow2"]),
        w(&r["a"]["broadcastWindow3"]),
        w(&r["b"]["broadcastWindow2"]),
    );
}

/// Asserts the private session from A's request to A's private video playing.
fn assert_private_session_plays(r: &Value, room: &str) {
    let (doctor, a, b) = (&r["doctor"], &r["a"], &r["b"]);
    assert_eq!(
        doctor["broadcastStatus"], "PUBLISHING",
        "the doctor's broadcast: {doctor}"
    );
    assert_eq!(a["broadcastStatus"], "PLAYING", "A's broadcast: {a}");
    assert_eq!(b["broadcastStatus"], "PLAYING", "B's broadcast: {b}");
    assert_window_played("A's broadcast", &a["broadcastWindow1"], r);
    assert_window_played("B's broadcast", &b["broadcastWindow1"], r);
    assert_eq!(
        a["askDisabledBefore"], false,
        "Ask must be enabled while the broadcast plays"
    );

    let waiting = &a["waiting"];
    assert_eq!(
        waiting["hintState"], "waiting",
        "A's page after Ask: {waiting}"
    );
    assert!(
        text(&waiting["hint"]).contains("waiting for the doctor"),
        "A's page after Ask: {waiting}"
    );
    assert_eq!(waiting["privateStatus"], "PENDING", "{waiting}");
    assert_eq!(waiting["askDisabled"], true, "Ask while waiting: {waiting}");

    let a_id = text(&a["sessionId"]);
    assert!(a_id.starts_with("s-"), "A's session id: {a}");
    let request = &r["request"];
    assert!(
        request.is_object(),
        "the doctor's page never listed a request from A's session {a_id}: {}",
        brief(r)
    );
    assert_eq!(
        request["patient"], "Alice",
        "the request names the patient: {request}"
    );
    assert_eq!(request["count"], 1, "one request listed: {request}");
    assert_eq!(request["state"], "requested", "{request}");
    assert_eq!(
        request["afterStart"]["state"], "live",
        "the private publish after Start: {request}"
    );
    assert_eq!(request["afterStart"]["status"], "PUBLISHING", "{request}");

    assert_eq!(
        a["privateName"],
        format!("clinic/{room}-private-{a_id}"),
        "A's private name"
    );
    assert_eq!(
        a["privateStatus"], "PLAYING",
        "A's private video: {} ({}); page log {}",
        a["privateStatus"], a["privateReason"], r["logs"]["a"]
    );
    assert!(
        a["privateFirstFrame"].is_object(),
        "A's private video decoded no frame: {a}"
    );
    assert_eq!(a["livehint"]["state"], "live", "{}", a["livehint"]);
    assert_window_played("A's private video", &a["privateWindow1"], r);
    assert_window_played(
        "A's broadcast during the private session",
        &a["broadcastWindow2"],
        r,
    );
}

/// Asserts the server's list (the Streams page's source) and B's refusal, and that everything
/// played on after it.
fn assert_private_to_one_viewer(r: &Value, room: &str) {
    let (a, b) = (&r["a"], &r["b"]);
    let private_name = format!("{room}-private-{}", text(&a["sessionId"]));
    let rest = r["steps"]["rest"]["streams"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let find = |name: &str| {
        rest.iter()
            .find(|s| s["app"] == "clinic" && s["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("clinic/{name} not listed by find_all: {rest:?}"))
    };
    let (broadcast, private) = (find(room), find(&private_name));
    assert_eq!(broadcast["private"], false, "the broadcast: {broadcast}");
    assert_eq!(private["private"], true, "the private session: {private}");
    assert_eq!(
        private["players"]["webrtc"], 1,
        "the private session's players: {private}"
    );
    assert_eq!(
        broadcast["players"]["webrtc"], 2,
        "the broadcast's players: {broadcast}"
    );

    let intrusion = &b["intrusion"];
    assert_eq!(
        intrusion["status"], "FAILED",
        "B playing A's private name must fail: {intrusion}"
    );
    assert_eq!(intrusion["reason"], PRIVATE_REFUSAL, "{intrusion}");
    assert!(
        !intrusion["statuses"]
            .as_array()
            .is_some_and(|a| a.iter().any(|s| s["status"] == "PLAYING")),
        "B's play of A's private name was PLAYING at some point: {intrusion}"
    );
    assert!(
        text(&intrusion["error"]).contains(PRIVATE_REFUSAL),
        "play() must reject with the reason: {intrusion}"
    );
    let send = &intrusion["send"];
    assert_eq!(
        send["errors"][0]["code"], "unknown_stream",
        "a send on the refused (ended) play: {send}"
    );

    assert_eq!(a["privateStatusAfter"], "PLAYING", "A after B's try: {a}");
    assert_window_played("A's private video after B's try", &a["privateWindow2"], r);
    assert_window_played("A's broadcast after B's try", &a["broadcastWindow3"], r);
    assert_eq!(b["broadcastStatusAfter"], "PLAYING", "B after its try: {b}");
    assert_window_played("B's broadcast after its try", &b["broadcastWindow2"], r);
}

/// The doctor's page: the whole consultation, clicked (see the module doc), and the end of the
/// private session as both sides see it.
#[test]
fn consultation_private_session_for_one_patient() {
    let _one = BROWSER.lock().unwrap_or_else(|e| e.into_inner());
    let server = start_server(&[]);
    let room = "r1";
    let r = run_consult(&server, room, &[]);
    report("consultation", &r);
    assert_private_session_plays(&r, room);
    assert_private_to_one_viewer(&r, room);

    // A publish cannot send: the SDK throws; sent by hand, the server answers bad_request and
    // the broadcast goes on.
    let send = &r["doctor"]["send"];
    assert!(
        text(&send["thrown"]).contains("publish cannot send"),
        "the SDK's send() on a publish: {send}"
    );
    assert_eq!(
        send["errors"][0]["code"], "bad_request",
        "the server's answer to a send on a publish: {send}"
    );
    assert_eq!(send["broadcastStatus"], "PUBLISHING", "{send}");

    // The doctor ends it: A's page says so and may ask again; the broadcast goes on.
    let end = &r["a"]["afterEnd"];
    assert_eq!(end["hintState"], "ended", "A's page after End: {end}");
    assert_eq!(end["askDisabled"], false, "Ask after End: {end}");
    assert_eq!(
        end["broadcastStatus"], "PLAYING",
        "A's broadcast after End: {end}"
    );
    assert_eq!(
        r["request"]["afterEnd"]["state"], "ended",
        "the doctor's request after End: {}",
        r["request"]
    );
    assert_eq!(r["doctor"]["broadcastStatusAtEnd"], "PUBLISHING");
    assert!(
        server.log().contains("play refused: the stream is private"),
        "the server did not log B's refusal"
    );
}

/// The doctor starts the session after the server's play wait (2 s here) has run out: A's page
/// plays the private name again by itself, still PENDING, and gets the session when it starts.
#[test]
fn consultation_patient_waits_past_the_play_wait() {
    let _one = BROWSER.lock().unwrap_or_else(|e| e.into_inner());
    let server = start_server(&[("stream.play_wait_timeout_ms", "2000")]);
    let room = "late";
    let r = run_consult(&server, room, &["--doctor-delay-ms", "5000"]);
    report("consultation, the doctor 5 s late", &r);
    let a = &r["a"];
    assert!(
        a["privateWaitsBeforeStart"].as_i64().unwrap_or(0) >= 1,
        "A's page did not play the private name again after the play wait: {a}"
    );
    assert_eq!(
        a["privateStatusBeforeStart"], "PENDING",
        "A's private status while waiting past the play wait: {a}"
    );
    assert_private_session_plays(&r, room);
    assert_private_to_one_viewer(&r, room);
}

/// An application that refuses every session: the doctor's page shows FAILED with the server's
/// reason, and the SDK's connect() rejects with exactly that reason after the session emitted
/// FAILED with it.
#[test]
fn consultation_refused_session_shows_the_reason() {
    let _one = BROWSER.lock().unwrap_or_else(|e| e.into_inner());
    let server = start_server(&[("app.enabled", "false")]);
    let r = run_consult(&server, "r1", &["--mode", "refused"]);
    let reason = "this application is not enabled";
    let page = &r["page"];
    assert_eq!(page["status"], "FAILED", "the doctor's badge: {page}");
    assert_eq!(page["reason"], reason, "the doctor's page: {page}");
    assert_eq!(page["startEnabled"], true, "Enter after a refusal: {page}");
    let sdk = &r["sdk"];
    assert_eq!(sdk["connected"], false, "connect() must reject: {sdk}");
    assert_eq!(sdk["message"], reason, "connect()'s error message: {sdk}");
    assert_eq!(sdk["status"], "FAILED", "connect()'s error status: {sdk}");
    assert_eq!(sdk["reason"], reason, "connect()'s error reason: {sdk}");
    assert_eq!(sdk["sessionStatus"], "FAILED", "{sdk}");
    let events = sdk["events"].as_array().cloned().unwrap_or_default();
    assert!(
        events
            .iter()
            .any(|e| e["status"] == "FAILED" && e["reason"] == reason),
        "the session's status events: {events:?}"
    );
}
