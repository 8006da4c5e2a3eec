//! What the WebRTC end-to-end tests (`webrtc_play.rs`, `webrtc_publish.rs`) share: a server
//! with its own small WebRTC UDP port range and host candidates on 127.0.0.1 only, and the
//! browser scenarios of `tests/browser/*.mjs` (Node scripts driving headless Chromium) run as
//! child processes whose one JSON result line is parsed, with helpers to read the statuses a
//! page saw.

use super::*;
use serde_json::Value;
use std::collections::HashSet;
use std::net::UdpSocket;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};
use std::thread::sleep;
use std::time::{Duration, Instant};

/// UDP ports per server: each viewer's peer takes one or two.
pub const UDP_RANGE: u16 = 24;

/// A range of `UDP_RANGE` consecutive UDP ports, all free now on 0.0.0.0 and never handed out
/// before in this process. Taken below the kernel's ephemeral range (32768+), from an offset that
/// depends on the process id, so that concurrent test processes rarely pick the same one.
pub fn udp_range() -> (u16, u16) {
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    static USED: OnceLock<Mutex<HashSet<u16>>> = OnceLock::new();
    let used = USED.get_or_init(|| Mutex::new(HashSet::new()));
    const LOW: u32 = 20000;
    const SLOTS: u32 = (32000 - LOW) / UDP_RANGE as u32;
    let _ = NEXT.compare_exchange(
        u32::MAX,
        std::process::id() % SLOTS,
        Ordering::SeqCst,
        Ordering::SeqCst,
    );
    for _ in 0..SLOTS {
        let slot = NEXT.fetch_add(1, Ordering::SeqCst) % SLOTS;
        let min = (LOW + slot * UDP_RANGE as u32) as u16;
        let max = min + UDP_RANGE - 1;
        if used.lock().unwrap().contains(&min) {
            continue;
        }
        let all_free = (min..=max).all(|p| UdpSocket::bind(("0.0.0.0", p)).is_ok());
        if all_free && used.lock().unwrap().insert(min) {
            return (min, max);
        }
    }
    panic!("no free UDP port range of {UDP_RANGE} ports between {LOW} and 32000");
}

/// Starts the server on free ports with WebRTC host candidates on 127.0.0.1 only and its own UDP
/// range, plus `extra` overrides (`("section.key", "value")`, passed as environment variables;
/// `webrtc.ice_addresses` is a comma-separated string).
pub fn start_server(extra: &[(&str, &str)]) -> Server {
    let (port_min, port_max) = udp_range();
    let (port_min, port_max) = (port_min.to_string(), port_max.to_string());
    let mut overrides: Vec<(&str, &str)> = vec![
        ("webrtc.ice_addresses", "127.0.0.1"),
        ("webrtc.port_min", &port_min),
        ("webrtc.port_max", &port_max),
    ];
    for (k, v) in extra {
        overrides.retain(|(k2, _)| k2 != k);
        overrides.push((k, v));
    }
    let server = Server::start(&overrides);
    eprintln!(
        "[webrtc] server: rtmp {} http {} rest {} udp {port_min}-{port_max} {extra:?}",
        server.rtmp_port, server.http_port, server.rest_port
    );
    server
}

pub fn web_base(server: &Server) -> String {
    format!("http://127.0.0.1:{}", server.http_port)
}

/// `players.webrtc` of a stream object (-1 when absent or not found).
pub fn webrtc_players(v: Option<&Value>) -> i64 {
    v.and_then(|v| v["players"]["webrtc"].as_i64())
        .unwrap_or(-1)
}

/// Waits (bounded by `timeout`) until REST's stream object of `name` (`None`: not listed)
/// satisfies `pred`; panics with `failure` and the last object seen otherwise. Returns it.
pub fn assert_stream(
    server: &Server,
    name: &str,
    timeout: Duration,
    pred: impl Fn(Option<&Value>) -> bool,
    failure: &str,
) -> Option<Value> {
    let (ok, v) = server.wait_stream(name, timeout, pred);
    assert!(ok, "{failure}: {v:?}");
    v
}

/// Waits until REST shows the stream publishing with its video known.
pub fn wait_publishing(server: &Server, name: &str) -> Value {
    let (ok, v) = server.wait_stream(name, Duration::from_secs(20), |v| {
        v.is_some_and(|v| v["status"] == "PUBLISHING" && v["video"]["width"].as_u64().is_some())
    });
    assert!(ok, "stream {name} not publishing within 20 s: {v:?}");
    v.unwrap()
}

// ------------------------------------------------------------------------------------------------
// The Node scripts
// ------------------------------------------------------------------------------------------------

pub fn browser_dir() -> PathBuf {
    repo_root().join("tests").join("browser")
}

/// Checks once that node, the scripts' packages and Chromium are there.
pub fn check_browser_deps() {
    static CHECKED: OnceLock<()> = OnceLock::new();
    CHECKED.get_or_init(|| {
        let hint = "run scripts/install-test-deps.sh";
        let node = std::process::Command::new("node").arg("--version").output();
        assert!(
            node.as_ref().is_ok_and(|o| o.status.success()),
            "node not found: {hint}"
        );
        for pkg in ["playwright-core", "ws"] {
            let p = browser_dir()
                .join("node_modules")
                .join(pkg)
                .join("package.json");
            assert!(p.exists(), "{} missing: {hint}", p.display());
        }
        let chromium = std::env::var("CHROMIUM_BIN").unwrap_or_else(|_| "/usr/bin/chromium".into());
        assert!(
            std::path::Path::new(&chromium).exists(),
            "{chromium} missing: {hint}"
        );
    });
}

/// A running browser scenario (`node tests/browser/SCRIPT args...`).
pub struct Script {
    pub proc: Proc,
    pub script: String,
}

impl Script {
    pub fn spawn(script: &str, args: &[String]) -> Script {
        check_browser_deps();
        let mut all = vec![browser_dir().join(script).display().to_string()];
        all.extend(args.iter().cloned());
        eprintln!("[webrtc] node {}", all.join(" "));
        Script {
            proc: Proc::spawn(&format!("node-{script}"), "node", &all),
            script: script.to_string(),
        }
    }

    /// Waits (bounded) until the script's stderr contains `marker`.
    pub fn wait_stderr(&mut self, marker: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self.proc.stderr().contains(marker) {
                return true;
            }
            if !self.proc.is_running() || Instant::now() > deadline {
                return self.proc.stderr().contains(marker);
            }
            sleep(Duration::from_millis(50));
        }
    }

    /// Waits (bounded) until the script's stderr contains `marker`; panics with `failure` and the
    /// stderr's tail otherwise.
    pub fn expect_stderr(&mut self, marker: &str, timeout: Duration, failure: &str) {
        assert!(
            self.wait_stderr(marker, timeout),
            "{failure}: {}",
            tail(&self.proc.stderr(), 30)
        );
    }

    pub fn is_running(&mut self) -> bool {
        self.proc.is_running()
    }

    /// Waits for the end (killing it after `timeout`) and parses its JSON line. Panics with the
    /// script's stderr on a harness error (non-zero exit, no JSON, deadline).
    pub fn finish(mut self, timeout: Duration) -> Value {
        let status = self.proc.wait_timeout(timeout);
        if status.is_none() {
            self.proc.kill();
        }
        let stderr = self.proc.stderr();
        eprintln!(
            "----- {} stderr -----\n{}\n----- end -----",
            self.script,
            tail(&stderr, 60)
        );
        let status = status
            .unwrap_or_else(|| panic!("{} still running after {timeout:?}: killed", self.script));
        assert!(
            status.success(),
            "{} failed ({status}): harness error, see its stderr above",
            self.script
        );
        let out = self.proc.stdout();
        let line = out
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or_else(|| panic!("{} printed no result line", self.script));
        let v: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("{} result is not JSON ({e}): {line}", self.script));
        eprintln!("[webrtc] {} result: {}", self.script, brief(&v));
        v
    }
}

pub fn run_script(script: &str, args: &[String], timeout: Duration) -> Value {
    Script::spawn(script, args).finish(timeout)
}

pub fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

/// The arguments of a scenario on `server`'s web port for the stream `name`: `--base URL --name
/// NAME`, then `extra`.
pub fn scenario_args(server: &Server, name: &str, extra: &[&str]) -> Vec<String> {
    let mut all = args(&["--base", &web_base(server), "--name", name]);
    all.extend(args(extra));
    all
}

/// The result with long SDP-like strings cut, for failure messages.
pub fn brief(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 6000 {
        format!("{}...", s.chars().take(6000).collect::<String>())
    } else {
        s
    }
}

/// The statuses a page saw, as "STATUS(reason)" strings.
pub fn status_list(page: &Value) -> Vec<String> {
    page["statuses"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|s| match s["reason"].as_str() {
                    Some(r) => format!("{}({r})", s["status"].as_str().unwrap_or("?")),
                    None => s["status"].as_str().unwrap_or("?").to_string(),
                })
                .collect()
        })
        .unwrap_or_default()
}

pub fn has_status(page: &Value, status: &str) -> bool {
    page["statuses"]
        .as_array()
        .is_some_and(|a| a.iter().any(|s| s["status"] == status))
}

/// The time (ms since play) of the first `status` at or after index `from`, with its index.
pub fn status_at(page: &Value, status: &str, from: usize) -> Option<(usize, u64)> {
    page["statuses"].as_array().and_then(|a| {
        a.iter()
            .enumerate()
            .skip(from)
            .find(|(_, s)| s["status"] == status)
            .map(|(i, s)| (i, s["t"].as_u64().unwrap_or(0)))
    })
}

/// Asserts that a page of play.mjs played: PLAYING, H.264 decoded and growing, audio of
/// `audio_codec` with samples, and (unless `stopped` is false) STOPPED at the end.
pub fn assert_page_played(label: &str, page: &Value, audio_codec: &str, stopped: bool) {
    let statuses = status_list(page);
    assert!(
        has_status(page, "PLAYING"),
        "{label}: never PLAYING; statuses {statuses:?}; session {}; errors {}",
        page["sessionStatuses"],
        page["errors"]
    );
    let first = &page["firstStats"];
    assert!(
        page["ttffMs"].is_u64(),
        "{label}: no frame decoded within the wait; statuses {statuses:?}; last stats {first}"
    );
    assert_eq!(
        first["videoCodec"], "H264",
        "{label}: inbound-rtp video codec: {first}"
    );
    let (a, b) = (&page["statsStart"], &page["statsEnd"]);
    let growth = page["framesGrowth"].as_i64().unwrap_or(-1);
    assert!(
        growth > 0,
        "{label}: framesDecoded did not grow while playing ({a} -> {b}); statuses {statuses:?}"
    );
    assert!(
        b["framesDecoded"].as_u64().unwrap_or(0) > 0,
        "{label}: no frame decoded: {b}"
    );
    assert_eq!(
        b["audioCodec"], audio_codec,
        "{label}: inbound-rtp audio codec: {b}"
    );
    assert!(
        b["audioSamples"].as_u64().unwrap_or(0) > 0 && page["samplesGrowth"].as_i64() > Some(0),
        "{label}: no audio samples received (totalSamplesReceived {a} -> {b})"
    );
    if stopped {
        assert_eq!(
            page["status"], "STOPPED",
            "{label}: final status after stop; statuses {statuses:?}"
        );
    }
}
