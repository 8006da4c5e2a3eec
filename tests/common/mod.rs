//! Test harness for the mediarouter end-to-end tests.
//!
//! Every test starts the real server binary (`target/debug/mediarouter`, or `$MEDIAROUTER_BIN`)
//! on its own free loopback ports and drives it with real clients: ffmpeg and ffprobe for media,
//! curl for the REST API, and [`RtmpClient`], a small scriptable RTMP client built on rml_rtmp's
//! handshake and chunk layers, where a test has to see individual RTMP messages.
//!
//! Every wait in here is bounded in time, and every process started here is killed when its
//! guard is dropped, so a failing test cannot hang the suite or leave processes behind.
#![allow(dead_code)]

use std::collections::{HashMap, HashSet, VecDeque};
use std::fs;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use rml_rtmp::chunk_io::{ChunkDeserializer, ChunkSerializer};
use rml_rtmp::handshake::{Handshake, HandshakeProcessResult, PeerType};
use rml_rtmp::messages::{MessagePayload, RtmpMessage, UserControlEventType};
use rml_rtmp::rml_amf0::Amf0Value;
use rml_rtmp::time::RtmpTimestamp;
use serde_json::Value;

/// The WebRTC tests' server settings and browser scenarios.
pub mod webrtc;
pub mod ws_media;

/// Frames per second of the test publisher's video.
pub const FPS: u32 = 30;
/// AAC frames per second at 44.1 kHz (1024 samples per frame).
pub const AAC_FPS: f64 = 44100.0 / 1024.0;

// ------------------------------------------------------------------------------------------------
// Paths, temp dirs, ports
// ------------------------------------------------------------------------------------------------

pub fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

pub fn ms(m: u64) -> Duration {
    Duration::from_millis(m)
}

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The server binary: `$MEDIAROUTER_BIN`, else `target/debug/mediarouter` (built once with
/// `cargo build --bin mediarouter` when it is missing).
pub fn server_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Ok(p) = std::env::var("MEDIAROUTER_BIN") {
            if !p.is_empty() {
                return PathBuf::from(p);
            }
        }
        let target = std::env::var("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|_| repo_root().join("target"));
        let bin = target.join("debug").join("mediarouter");
        if !bin.exists() {
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
            eprintln!(
                "[harness] {} missing: running cargo build --bin mediarouter",
                bin.display()
            );
            let status = Command::new(cargo)
                .args(["build", "--bin", "mediarouter"])
                .current_dir(repo_root())
                .status()
                .expect("run cargo build --bin mediarouter");
            assert!(status.success(), "cargo build --bin mediarouter failed");
        }
        assert!(bin.exists(), "server binary not found at {}", bin.display());
        bin
    })
    .clone()
}

/// A directory under the system temp dir, removed on drop unless the thread is panicking (then
/// it is kept for post-mortem and its path printed) or `MEDIAROUTER_TEST_KEEP` is set.
pub struct TempDir {
    pub path: PathBuf,
}

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: AtomicU64 = AtomicU64::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let path = std::env::temp_dir().join(format!(
            "mediarouter-test-{}-{}-{}-{}",
            tag,
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst),
            nanos
        ));
        fs::create_dir_all(&path).expect("create temp dir");
        TempDir { path }
    }

    pub fn join(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if thread::panicking() {
            eprintln!("[harness] keeping {} for inspection", self.path.display());
        } else if std::env::var_os("MEDIAROUTER_TEST_KEEP").is_some() {
            // Kept on request (logs of passing tests).
        } else {
            let _ = fs::remove_dir_all(&self.path);
        }
    }
}

/// A free TCP port on 127.0.0.1 (bound to port 0 and released). Ports handed out once in this
/// process are never handed out again, so tests running in parallel threads do not collide.
pub fn free_port() -> u16 {
    static USED: OnceLock<Mutex<HashSet<u16>>> = OnceLock::new();
    let used = USED.get_or_init(|| Mutex::new(HashSet::new()));
    for _ in 0..1000 {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let port = listener.local_addr().expect("local_addr").port();
        drop(listener);
        if used.lock().unwrap().insert(port) {
            return port;
        }
    }
    panic!("no free port found");
}

#[derive(Clone, Copy, Debug)]
pub struct Ports {
    pub rtmp: u16,
    pub http: u16,
    pub rest: u16,
}

impl Ports {
    pub fn free() -> Ports {
        Ports {
            rtmp: free_port(),
            http: free_port(),
            rest: free_port(),
        }
    }

    /// Environment overrides that put every listener of the server on these loopback ports.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            ("MEDIAROUTER__RTMP__ADDRESS".into(), "127.0.0.1".into()),
            ("MEDIAROUTER__RTMP__PORT".into(), self.rtmp.to_string()),
            ("MEDIAROUTER__HTTP__ADDRESS".into(), "127.0.0.1".into()),
            ("MEDIAROUTER__HTTP__PORT".into(), self.http.to_string()),
            ("MEDIAROUTER__REST__ADDRESS".into(), "127.0.0.1".into()),
            ("MEDIAROUTER__REST__PORT".into(), self.rest.to_string()),
        ]
    }
}

/// `("stream.play_wait_timeout_ms", "2000")` → `MEDIAROUTER__STREAM__PLAY_WAIT_TIMEOUT_MS=2000`.
/// A key that already starts with `MEDIAROUTER__` is taken as it is.
pub fn env_key(key: &str) -> String {
    if key.starts_with("MEDIAROUTER__") {
        key.to_string()
    } else {
        format!("MEDIAROUTER__{}", key.replace('.', "__").to_uppercase())
    }
}

/// A command for the server binary with a clean `MEDIAROUTER__*` environment, run from the
/// repository root (so the relative `web_root` resolves).
pub fn server_command(args: &[&str], env: &[(String, String)]) -> Command {
    let mut cmd = Command::new(server_bin());
    cmd.args(args).current_dir(repo_root()).stdin(Stdio::null());
    for (k, _) in std::env::vars() {
        if k.starts_with("MEDIAROUTER__") {
            cmd.env_remove(k);
        }
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

pub fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    let start = all.len().saturating_sub(lines);
    all[start..].join("\n")
}

pub fn port_accepts(port: u16) -> bool {
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    TcpStream::connect_timeout(&addr, Duration::from_millis(300)).is_ok()
}

// ------------------------------------------------------------------------------------------------
// The server under test
// ------------------------------------------------------------------------------------------------

pub struct Server {
    child: Option<Child>,
    pub ports: Ports,
    pub rtmp_port: u16,
    pub http_port: u16,
    pub rest_port: u16,
    pub log_path: PathBuf,
    pub dir: TempDir,
}

impl Server {
    /// Starts the server on free loopback ports, with setting overrides given as
    /// `("section.key", "value")` (or full `MEDIAROUTER__SECTION__KEY` names) passed as
    /// environment variables. Waits (at most 15 s) until the RTMP and REST ports accept.
    pub fn start(overrides: &[(&str, &str)]) -> Server {
        let mut last_err = String::new();
        // A port picked free may be taken by someone else before the server binds it: retry.
        for _attempt in 0..3 {
            let ports = Ports::free();
            let mut env = ports.env();
            for (k, v) in overrides {
                env.push((env_key(k), v.to_string()));
            }
            match Server::spawn(&[], &env, ports) {
                Ok(server) => return server,
                Err(e) => {
                    if e.to_lowercase().contains("in use") {
                        last_err = e;
                        continue;
                    }
                    panic!("{e}");
                }
            }
        }
        panic!("{last_err}");
    }

    /// Starts the server binary with these arguments and exactly this environment (no port
    /// overrides added), expecting its RTMP and REST listeners on `ports`.
    pub fn spawn(args: &[&str], env: &[(String, String)], ports: Ports) -> Result<Server, String> {
        let dir = TempDir::new("server");
        let log_path = dir.join("server.log");
        let log = fs::File::create(&log_path).expect("create server log");
        let log2 = log.try_clone().expect("clone log handle");
        let mut cmd = server_command(args, env);
        cmd.stdout(Stdio::from(log2)).stderr(Stdio::from(log));
        let child = cmd
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", server_bin().display()))?;
        let mut server = Server {
            child: Some(child),
            ports,
            rtmp_port: ports.rtmp,
            http_port: ports.http,
            rest_port: ports.rest,
            log_path,
            dir,
        };
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = server.child.as_mut().unwrap().try_wait().ok().flatten() {
                let log = server.log();
                server.child = None;
                return Err(format!(
                    "server exited before it was ready ({status}); args {args:?}; log:\n{}",
                    tail(&log, 60)
                ));
            }
            if port_accepts(ports.rtmp) && port_accepts(ports.rest) {
                return Ok(server);
            }
            if Instant::now() > deadline {
                let log = server.log();
                return Err(format!(
                    "server not ready within 15 s (rtmp {} rest {}); log:\n{}",
                    ports.rtmp,
                    ports.rest,
                    tail(&log, 60)
                ));
            }
            thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn log(&self) -> String {
        fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    /// Sends SIGTERM and waits (at most `within`) for the process to exit; its exit status,
    /// or `None` when it is still running.
    pub fn terminate(&mut self, within: Duration) -> Option<ExitStatus> {
        let child = self.child.as_mut()?;
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            thread::sleep(Duration::from_millis(50));
        }
        None
    }

    /// True while the server process runs.
    pub fn is_alive(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// `rtmp://127.0.0.1:PORT/live/NAME`
    pub fn url(&self, name: &str) -> String {
        format!("rtmp://127.0.0.1:{}/live/{}", self.rtmp_port, name)
    }

    /// `rtmp://127.0.0.1:PORT/APP/NAME`
    pub fn url_app(&self, app: &str, name: &str) -> String {
        format!("rtmp://127.0.0.1:{}/{}/{}", self.rtmp_port, app, name)
    }

    /// POST to the REST API of this server.
    pub fn rest(&self, path: &str, body: &str) -> (u16, Value) {
        rest(self.rest_port, path, body)
    }

    /// The stream object from `/rest-api/stream/find`, if the server answers 200.
    pub fn find_stream(&self, name: &str) -> Option<Value> {
        let (status, v) = self.rest(
            "stream/find",
            &serde_json::json!({ "name": name }).to_string(),
        );
        (status == 200).then_some(v)
    }

    /// Polls `find` until `pred` holds for the stream object (or `None` when not found); returns
    /// the last object seen. Bounded by `timeout`.
    pub fn wait_stream(
        &self,
        name: &str,
        timeout: Duration,
        pred: impl Fn(Option<&Value>) -> bool,
    ) -> (bool, Option<Value>) {
        let deadline = Instant::now() + timeout;
        loop {
            let v = self.find_stream(name);
            if pred(v.as_ref()) {
                return (true, v);
            }
            if Instant::now() > deadline {
                return (false, v);
            }
            thread::sleep(Duration::from_millis(250));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if thread::panicking() {
            eprintln!(
                "----- mediarouter log tail ({}) -----\n{}\n----- end of log -----",
                self.log_path.display(),
                tail(&self.log(), 80)
            );
        }
    }
}

/// Runs the server binary expecting it to stop by itself (bad settings). Returns its exit
/// status (None when it was still running after `timeout` and got killed), its stderr and the
/// time it ran.
pub fn run_server_to_exit(
    args: &[&str],
    env: &[(String, String)],
    timeout: Duration,
) -> (Option<ExitStatus>, String, Duration) {
    let dir = TempDir::new("exit");
    let err_path = dir.join("stderr.log");
    let mut cmd = server_command(args, env);
    cmd.stdout(Stdio::null())
        .stderr(Stdio::from(fs::File::create(&err_path).unwrap()));
    let started = Instant::now();
    let mut child = cmd.spawn().expect("start server binary");
    let status = wait_child(&mut child, timeout);
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    let elapsed = started.elapsed();
    (
        status,
        fs::read_to_string(&err_path).unwrap_or_default(),
        elapsed,
    )
}

fn wait_child(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        if Instant::now() > deadline {
            return None;
        }
        thread::sleep(Duration::from_millis(50));
    }
}

// ------------------------------------------------------------------------------------------------
// Child processes (ffmpeg, ffprobe)
// ------------------------------------------------------------------------------------------------

/// A child process whose stdout and stderr go to files; killed on drop.
pub struct Proc {
    pub name: String,
    child: Child,
    status: Option<ExitStatus>,
    pub started: Instant,
    pub stdout_path: PathBuf,
    pub stderr_path: PathBuf,
    _dir: TempDir,
}

impl Proc {
    pub fn spawn(name: &str, program: &str, args: &[String]) -> Proc {
        let dir = TempDir::new(name);
        let stdout_path = dir.join("stdout");
        let stderr_path = dir.join("stderr");
        let child = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::from(fs::File::create(&stdout_path).unwrap()))
            .stderr(Stdio::from(fs::File::create(&stderr_path).unwrap()))
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start {program}: {e} (run scripts/install-test-deps.sh)")
            });
        Proc {
            name: name.to_string(),
            child,
            status: None,
            started: Instant::now(),
            stdout_path,
            stderr_path,
            _dir: dir,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The exit status if the process has ended.
    pub fn try_status(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            if let Ok(Some(s)) = self.child.try_wait() {
                self.status = Some(s);
            }
        }
        self.status
    }

    pub fn is_running(&mut self) -> bool {
        self.try_status().is_none()
    }

    /// Waits at most `timeout` for the process to end.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = self.try_status() {
                return Some(s);
            }
            if Instant::now() > deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn kill(&mut self) {
        if self.try_status().is_none() {
            let _ = signal(self.pid(), "CONT");
            let _ = self.child.kill();
            if let Ok(s) = self.child.wait() {
                self.status = Some(s);
            }
        }
    }

    /// Sends a signal by name (`STOP`, `CONT`, `INT`, `TERM`) with kill(1).
    pub fn signal(&self, sig: &str) {
        assert!(signal(self.pid(), sig), "kill -{sig} {} failed", self.pid());
    }

    pub fn stdout(&self) -> String {
        fs::read_to_string(&self.stdout_path).unwrap_or_default()
    }

    pub fn stderr(&self) -> String {
        fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
        if thread::panicking() {
            let err = self.stderr();
            if !err.trim().is_empty() {
                eprintln!("----- {} stderr tail -----\n{}", self.name, tail(&err, 20));
            }
        }
    }
}

pub fn signal(pid: u32, sig: &str) -> bool {
    Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

pub fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}

/// ffmpeg options for the test pattern as its input: testsrc2 (`size`, `fps`) and a `tone_hz`
/// sine at 44.1 kHz, each read in real time when `realtime`, mapped video first, `seconds` long.
pub fn test_pattern_input(
    size: &str,
    fps: u32,
    tone_hz: u32,
    realtime: bool,
    seconds: u32,
) -> Vec<String> {
    let mut args = Vec::new();
    for input in [
        format!("testsrc2=size={size}:rate={fps}"),
        format!("sine=frequency={tone_hz}:sample_rate=44100"),
    ] {
        if realtime {
            args.push("-re".to_string());
        }
        args.extend(strings(&["-f", "lavfi", "-i", &input]));
    }
    args.extend(strings(&[
        "-map",
        "0:v",
        "-map",
        "1:a",
        "-t",
        &seconds.to_string(),
    ]));
    args
}

/// ffmpeg output options: libx264 with `x264` options, yuv420p, a keyframe exactly every `gop`
/// frames; AAC stereo 44.1 kHz at 96 kb/s.
pub fn h264_aac_output(x264: &[&str], gop: u32) -> Vec<String> {
    let gop = gop.to_string();
    let mut args = strings(&["-c:v", "libx264"]);
    args.extend(strings(x264));
    args.extend(strings(&[
        "-pix_fmt",
        "yuv420p",
        "-g",
        &gop,
        "-keyint_min",
        &gop,
        "-sc_threshold",
        "0",
        "-c:a",
        "aac",
        "-b:a",
        "96k",
        "-ac",
        "2",
        "-ar",
        "44100",
    ]));
    args
}

/// Real-time ffmpeg publisher: testsrc2 320x240 at 30 fps + 1 kHz sine, H.264 baseline
/// (ultrafast, zerolatency, 1 s GOP) + AAC 44.1 kHz stereo, FLV over RTMP, for `seconds`.
/// `extra` output options go after the defaults (so they can override them).
pub fn publish_ffmpeg(url: &str, seconds: u32, extra: &[&str]) -> Proc {
    publish_ffmpeg_sized(url, seconds, "320x240", extra)
}

pub fn publish_ffmpeg_sized(url: &str, seconds: u32, size: &str, extra: &[&str]) -> Proc {
    let mut args = strings(&["-hide_banner", "-nostdin", "-loglevel", "warning"]);
    args.extend(test_pattern_input(size, FPS, 1000, true, seconds));
    let x264 = [
        "-profile:v",
        "baseline",
        "-preset",
        "ultrafast",
        "-tune",
        "zerolatency",
        "-b:v",
        "600k",
    ];
    args.extend(h264_aac_output(&x264, FPS));
    args.extend(strings(extra));
    args.extend(strings(&["-f", "flv", url]));
    Proc::spawn("ffmpeg-publisher", "ffmpeg", &args)
}

/// x264 options for 8 Mbit/s constant bitrate (filler data): a stalled player's socket
/// buffers fill within a second or two.
pub const CBR_8M: [&str; 10] = [
    "-b:v",
    "8M",
    "-minrate",
    "8M",
    "-maxrate",
    "8M",
    "-bufsize",
    "2M",
    "-x264-params",
    "nal-hrd=cbr",
];

/// What an ffmpeg player decoded.
#[derive(Debug)]
pub struct Played {
    pub video: u64,
    pub audio: u64,
    pub stderr: String,
    /// None when the player was still running at its deadline and was killed.
    pub status: Option<ExitStatus>,
    pub elapsed: Duration,
}

impl Played {
    /// stderr lines that report errors (the player runs at `-loglevel error`, and decoder
    /// complaints such as missing PPS/SPS are printed as errors).
    pub fn error_lines(&self) -> Vec<String> {
        self.stderr
            .lines()
            .filter(|l| {
                let l = l.to_lowercase();
                l.contains("error") || l.contains("invalid") || l.contains("non-existing")
            })
            .map(|l| l.to_string())
            .collect()
    }

    pub fn success(&self) -> bool {
        self.status.map(|s| s.success()).unwrap_or(false)
    }
}

/// An ffmpeg player decoding `seconds` of the stream to framecrc (video mapped first, so stream
/// index 0 is video and 1 is audio).
pub struct Player {
    pub proc: Proc,
    pub seconds: u32,
}

/// An ffmpeg player (`name` in diagnostics) decoding `url` to framecrc, video mapped first, for
/// `seconds` (None: to the end of the stream), with `extra` output options.
pub fn spawn_framecrc_player(name: &str, url: &str, seconds: Option<u32>, extra: &[&str]) -> Proc {
    let mut args = strings(&[
        "-hide_banner",
        "-nostdin",
        "-loglevel",
        "error",
        "-rw_timeout",
        "20000000",
        "-i",
        url,
    ]);
    if let Some(s) = seconds {
        args.extend(strings(&["-t", &s.to_string()]));
    }
    args.extend(strings(&["-map", "0:v:0", "-map", "0:a:0?"]));
    args.extend(strings(extra));
    args.extend(strings(&["-f", "framecrc", "-"]));
    Proc::spawn(name, "ffmpeg", &args)
}

/// Waits for a framecrc player to end (at most `timeout`, then kills it) and reports.
pub fn finish_framecrc_player(mut proc: Proc, timeout: Duration) -> Played {
    let status = proc.wait_timeout(timeout);
    if status.is_none() {
        proc.kill();
    }
    let (video, audio) = count_framecrc(&proc.stdout());
    Played {
        video,
        audio,
        stderr: proc.stderr(),
        status,
        elapsed: proc.started.elapsed(),
    }
}

impl Player {
    pub fn spawn(url: &str, seconds: u32) -> Player {
        Player {
            proc: spawn_framecrc_player("ffmpeg-player", url, Some(seconds), &[]),
            seconds,
        }
    }

    /// (video frames, audio frames) decoded so far.
    pub fn counts(&self) -> (u64, u64) {
        count_framecrc(&self.proc.stdout())
    }

    /// Waits for the player to end (at most `timeout`, then kills it) and reports.
    pub fn finish(self, timeout: Duration) -> Played {
        finish_framecrc_player(self.proc, timeout)
    }
}

pub fn count_framecrc(out: &str) -> (u64, u64) {
    let mut v = 0;
    let mut a = 0;
    for line in out.lines() {
        if line.starts_with("0,") {
            v += 1;
        } else if line.starts_with("1,") {
            a += 1;
        }
    }
    (v, a)
}

/// Asserts that a player decoded about `seconds` of real-time video (>= 80 % of 30 fps) and audio
/// (>= 70 % of the AAC frame rate) with no decoder errors.
pub fn assert_decoded(label: &str, p: &Played, seconds: u32) {
    let min_v = (FPS * seconds) as f64 * 0.8;
    let min_a = AAC_FPS * seconds as f64 * 0.7;
    assert!(
        p.video as f64 >= min_v,
        "{label}: decoded {} video frames, expected >= {min_v} ({p:?})",
        p.video
    );
    assert!(
        p.audio as f64 >= min_a,
        "{label}: decoded {} audio frames, expected >= {min_a} ({p:?})",
        p.audio
    );
    let errors = p.error_lines();
    assert!(errors.is_empty(), "{label}: decode errors: {errors:?}");
}

/// Plays `seconds` of `url` with ffmpeg and returns what was decoded; the player is killed if it
/// has not ended `seconds + 20` s after its start.
pub fn play_count(url: &str, seconds: u32) -> Played {
    Player::spawn(url, seconds).finish(Duration::from_secs(seconds as u64 + 20))
}

/// One packet as ffprobe reports it.
#[derive(Debug, Clone)]
pub struct ProbePacket {
    pub flags: String,
    pub pts_time: Option<f64>,
    pub dts_time: Option<f64>,
}

/// The first `count` video packets a new player of `url` receives (ffprobe -show_packets),
/// or Err with ffprobe's stderr.
pub fn probe_video_packets(url: &str, count: u32) -> Result<Vec<ProbePacket>, String> {
    let args = strings(&[
        "-hide_banner",
        "-v",
        "error",
        "-rw_timeout",
        "15000000",
        "-select_streams",
        "v",
        "-show_entries",
        "packet=pts_time,dts_time,flags",
        "-read_intervals",
        &format!("%+#{count}"),
        "-of",
        "json",
        url,
    ]);
    let mut p = Proc::spawn("ffprobe", "ffprobe", &args);
    if p.wait_timeout(Duration::from_secs(25)).is_none() {
        p.kill();
        return Err(format!("ffprobe did not end within 25 s: {}", p.stderr()));
    }
    let out = p.stdout();
    let v: Value = serde_json::from_str(&out)
        .map_err(|e| format!("ffprobe output not JSON ({e}): {out} / {}", p.stderr()))?;
    let packets = v["packets"]
        .as_array()
        .ok_or_else(|| format!("no packets in ffprobe output: {out} / {}", p.stderr()))?;
    let num = |x: &Value| x.as_str().and_then(|s| s.parse::<f64>().ok());
    Ok(packets
        .iter()
        .map(|p| ProbePacket {
            flags: p["flags"].as_str().unwrap_or("").to_string(),
            pts_time: num(&p["pts_time"]),
            dts_time: num(&p["dts_time"]),
        })
        .collect())
}

// ------------------------------------------------------------------------------------------------
// REST
// ------------------------------------------------------------------------------------------------

/// POSTs `body` (JSON text, may be empty) to `http://127.0.0.1:PORT/rest-api/PATH` (a `path`
/// starting with `/` is used as it is) with curl. Returns the HTTP status and the body parsed as
/// JSON (`Value::String(raw)` when it is not JSON; status 0 when curl got no answer).
pub fn rest(port: u16, path: &str, body: &str) -> (u16, Value) {
    rest_timeout(port, path, body, Duration::from_secs(5))
}

/// [`rest`] with curl's `--max-time` set to `timeout` (for calls that wait, such as an RTSP
/// startup that answers once the camera answered).
pub fn rest_timeout(port: u16, path: &str, body: &str, timeout: Duration) -> (u16, Value) {
    let max_time = format!("{:.1}", timeout.as_secs_f64());
    let path = if path.starts_with('/') {
        path.to_string()
    } else {
        format!("/rest-api/{path}")
    };
    let url = format!("http://127.0.0.1:{port}{path}");
    let out = Command::new("curl")
        .args([
            "-s",
            "-o",
            "-",
            "-w",
            "\n%{http_code}",
            "--max-time",
            &max_time,
            "-X",
            "POST",
            "-H",
            "Content-Type: application/json",
            "--data-binary",
            body,
            &url,
        ])
        .stdin(Stdio::null())
        .output()
        .expect("run curl (run scripts/install-test-deps.sh)");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body_text, code) = match text.rfind('\n') {
        Some(i) => (&text[..i], text[i + 1..].trim()),
        None => ("", text.trim()),
    };
    let status = code.parse::<u16>().unwrap_or(0);
    let value =
        serde_json::from_str(body_text).unwrap_or_else(|_| Value::String(body_text.to_string()));
    (status, value)
}

/// `players.rtmp` of a stream object (-1 when absent).
pub fn rtmp_players(v: Option<&Value>) -> i64 {
    v.and_then(|v| v["players"]["rtmp"].as_i64()).unwrap_or(-1)
}

// ------------------------------------------------------------------------------------------------
// A scriptable RTMP connection, and the client of the live tests built on it
// ------------------------------------------------------------------------------------------------

/// A message from the server as an [`RtmpConn`] hands it on: everything but the protocol control
/// it answers itself (chunk size, acknowledgement window, pings) and the answers to its numbered
/// transactions.
#[derive(Debug, Clone)]
pub enum Incoming {
    /// `onStatus` with its info object's code, level and description.
    Status {
        code: String,
        level: String,
        description: String,
    },
    /// Any other AMF0 command (`_result` of transaction 0, `onBWDone`, ...).
    Command { name: String, transaction_id: f64 },
    /// AMF0 data: its name (after `@setDataFrame` if present), the values after the name, and
    /// whether the first of them was sent as an ECMA array (marker 0x08; AMF0 data messages only).
    Data {
        name: String,
        values: Vec<Amf0Value>,
        ecma_array: bool,
    },
    /// A video message: its timestamp and FLV video tag body.
    Video { timestamp: u32, data: Bytes },
    /// An audio message: its timestamp and FLV audio tag body.
    Audio { timestamp: u32, data: Bytes },
    /// A user control event (stream begin, EOF, ...).
    UserControl { kind: String },
    /// The server closed the connection (or reset it).
    Closed,
}

/// Where an [`RtmpConn`] puts what it reads: a client's own record of the session.
pub trait Inbox {
    fn put(&mut self, msg: Incoming);
    /// What has arrived, for error messages.
    fn seen(&self) -> String;
}

/// What differs between the clients on the wire.
pub struct ClientStyle {
    /// Properties of the connect command's object besides `app`, `tcUrl` and `objectEncoding`.
    pub connect_props: Vec<(&'static str, Amf0Value)>,
    /// Acknowledge once this fraction of the server's window has come in (1: the whole window).
    pub ack_divisor: u64,
    /// How long one read waits while an answer is awaited.
    pub poll: Duration,
}

/// An RTMP client connection on rml_rtmp's handshake, chunk and message layers: it sends
/// commands, answers pings, acknowledges, follows the server's chunk size and keeps the answers
/// to its numbered transactions; every other message goes to the caller's [`Inbox`].
pub struct RtmpConn {
    pub stream: TcpStream,
    ser: ChunkSerializer,
    de: ChunkDeserializer,
    closed: bool,
    results: Vec<(f64, String, Vec<Amf0Value>)>,
    next_tid: f64,
    bytes_in: u64,
    acked: u64,
    ack_window: Option<u32>,
    ack_divisor: u64,
    poll: Duration,
    /// The message stream id of the last createStream.
    pub stream_id: u32,
}

/// A string property of an AMF0 object (or ECMA array, which rml_amf0 reads as an object).
pub fn prop_str(obj: &Amf0Value, key: &str) -> Option<String> {
    prop(obj, key, |v| match v {
        Amf0Value::Utf8String(s) => Some(s.clone()),
        _ => None,
    })
}

/// A number property of an AMF0 object (or ECMA array).
pub fn prop_num(obj: &Amf0Value, key: &str) -> Option<f64> {
    prop(obj, key, |v| match v {
        Amf0Value::Number(n) => Some(*n),
        _ => None,
    })
}

/// A boolean property of an AMF0 object (or ECMA array).
pub fn prop_bool(obj: &Amf0Value, key: &str) -> Option<bool> {
    prop(obj, key, |v| match v {
        Amf0Value::Boolean(b) => Some(*b),
        _ => None,
    })
}

fn prop<T>(obj: &Amf0Value, key: &str, get: impl Fn(&Amf0Value) -> Option<T>) -> Option<T> {
    match obj {
        Amf0Value::Object(props) => props.get(key).and_then(get),
        _ => None,
    }
}

fn amf_str(v: Option<&Amf0Value>) -> String {
    match v {
        Some(Amf0Value::Utf8String(s)) => s.clone(),
        _ => String::new(),
    }
}

/// The AMF0 type marker of the value that follows a data message's name (and the
/// `@setDataFrame` prefix, if any), read from the raw payload.
fn first_value_marker(data: &[u8]) -> Option<u8> {
    let mut pos = 0usize;
    for _ in 0..2 {
        if data.get(pos) != Some(&0x02) {
            return None;
        }
        let len = u16::from_be_bytes([*data.get(pos + 1)?, *data.get(pos + 2)?]) as usize;
        let name = data.get(pos + 3..pos + 3 + len)?;
        pos += 3 + len;
        if name != b"@setDataFrame" {
            return data.get(pos).copied();
        }
    }
    None
}

/// Completes an RTMP handshake (as a client) on a fresh TCP connection. Returns the stream and
/// any bytes the server sent after its S2.
pub fn rtmp_handshake(port: u16, timeout: Duration) -> Result<(TcpStream, Vec<u8>), String> {
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(3))
        .map_err(|e| format!("connect: {e}"))?;
    stream.set_nodelay(true).ok();
    stream
        .set_read_timeout(Some(Duration::from_millis(200)))
        .map_err(|e| e.to_string())?;
    let mut hs = Handshake::new(PeerType::Client);
    let c0c1 = hs
        .generate_outbound_p0_and_p1()
        .map_err(|e| format!("{e:?}"))?;
    stream
        .write_all(&c0c1)
        .map_err(|e| format!("send C0C1: {e}"))?;
    let deadline = Instant::now() + timeout;
    let mut buf = vec![0u8; 8192];
    loop {
        if Instant::now() > deadline {
            return Err("handshake timed out".into());
        }
        let n = match stream.read(&mut buf) {
            Ok(0) => return Err("server closed during handshake".into()),
            Ok(n) => n,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => continue,
            Err(e) => return Err(format!("read during handshake: {e}")),
        };
        match hs
            .process_bytes(&buf[..n])
            .map_err(|e| format!("handshake: {e:?}"))?
        {
            HandshakeProcessResult::InProgress { response_bytes } => {
                if !response_bytes.is_empty() {
                    stream
                        .write_all(&response_bytes)
                        .map_err(|e| e.to_string())?;
                }
            }
            HandshakeProcessResult::Completed {
                response_bytes,
                remaining_bytes,
            } => {
                if !response_bytes.is_empty() {
                    stream
                        .write_all(&response_bytes)
                        .map_err(|e| e.to_string())?;
                }
                return Ok((stream, remaining_bytes));
            }
        }
    }
}

impl RtmpConn {
    /// Handshake, chunk size 4096, `connect` to `app`; Ok once the server answered `_result`
    /// with `NetConnection.Connect.Success`.
    pub fn connect(
        port: u16,
        app: &str,
        style: ClientStyle,
        inbox: &mut impl Inbox,
    ) -> Result<RtmpConn, String> {
        let (stream, rest) = rtmp_handshake(port, Duration::from_secs(5))?;
        let mut c = RtmpConn {
            stream,
            ser: ChunkSerializer::new(),
            de: ChunkDeserializer::new(),
            closed: false,
            results: Vec::new(),
            next_tid: 0.0,
            bytes_in: 0,
            acked: 0,
            ack_window: None,
            ack_divisor: style.ack_divisor,
            poll: style.poll,
            stream_id: 0,
        };
        if !rest.is_empty() {
            c.feed(&rest, inbox)?;
        }
        let packet = c
            .ser
            .set_max_chunk_size(4096, RtmpTimestamp::new(0))
            .map_err(|e| format!("{e:?}"))?;
        c.write(&packet.bytes)?;
        let mut props = HashMap::new();
        props.insert("app".to_string(), Amf0Value::Utf8String(app.to_string()));
        props.insert(
            "tcUrl".to_string(),
            Amf0Value::Utf8String(format!("rtmp://127.0.0.1:{port}/{app}")),
        );
        props.insert("objectEncoding".to_string(), Amf0Value::Number(0.0));
        for (k, v) in style.connect_props {
            props.insert(k.to_string(), v);
        }
        let tid = c.command("connect", Amf0Value::Object(props), vec![], 0, true)?;
        let args = c.wait_result(tid, Duration::from_secs(5), inbox)?;
        let code = args
            .first()
            .and_then(|a| prop_str(a, "code"))
            .unwrap_or_default();
        if code != "NetConnection.Connect.Success" {
            return Err(format!("connect answered with code {code:?}"));
        }
        Ok(c)
    }

    /// `createStream`; its stream id becomes `stream_id`.
    pub fn create_stream(&mut self, inbox: &mut impl Inbox) -> Result<u32, String> {
        let tid = self.command("createStream", Amf0Value::Null, vec![], 0, true)?;
        let args = self.wait_result(tid, Duration::from_secs(5), inbox)?;
        match args.first() {
            Some(Amf0Value::Number(n)) => {
                self.stream_id = *n as u32;
                Ok(self.stream_id)
            }
            other => Err(format!(
                "createStream result without a stream id: {other:?}"
            )),
        }
    }

    /// `createStream`, `SetBufferLength` 1000 ms and `play(name, -2)` (the name may carry a
    /// query string). Returns once the play command is sent; the answers go to `inbox`.
    pub fn play(&mut self, name: &str, inbox: &mut impl Inbox) -> Result<(), String> {
        let sid = self.create_stream(inbox)?;
        let msg = RtmpMessage::UserControl {
            event_type: UserControlEventType::SetBufferLength,
            stream_id: Some(sid),
            buffer_length: Some(1000),
            timestamp: None,
        };
        self.send(msg, 0)?;
        self.command(
            "play",
            Amf0Value::Null,
            vec![
                Amf0Value::Utf8String(name.to_string()),
                Amf0Value::Number(-2.0),
            ],
            sid,
            false,
        )?;
        Ok(())
    }

    /// Sends an AMF0 command with the next transaction id when `numbered`, else with 0; returns
    /// the transaction id.
    pub fn command(
        &mut self,
        name: &str,
        object: Amf0Value,
        args: Vec<Amf0Value>,
        stream_id: u32,
        numbered: bool,
    ) -> Result<f64, String> {
        let tid = if numbered {
            self.next_tid += 1.0;
            self.next_tid
        } else {
            0.0
        };
        let msg = RtmpMessage::Amf0Command {
            command_name: name.to_string(),
            transaction_id: tid,
            command_object: object,
            additional_arguments: args,
        };
        self.send(msg, stream_id)?;
        Ok(tid)
    }

    pub fn send(&mut self, msg: RtmpMessage, stream_id: u32) -> Result<(), String> {
        let payload = msg
            .into_message_payload(RtmpTimestamp::new(0), stream_id)
            .map_err(|e| format!("{e:?}"))?;
        let packet = self
            .ser
            .serialize(&payload, false, false)
            .map_err(|e| format!("{e:?}"))?;
        self.write(&packet.bytes)
    }

    fn write(&mut self, bytes: &[u8]) -> Result<(), String> {
        self.stream
            .write_all(bytes)
            .map_err(|e| format!("write to server: {e}"))
    }

    /// Waits for `_result`/`_error` of a transaction; everything else read meanwhile goes to
    /// `inbox`.
    pub fn wait_result(
        &mut self,
        tid: f64,
        timeout: Duration,
        inbox: &mut impl Inbox,
    ) -> Result<Vec<Amf0Value>, String> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(i) = self.results.iter().position(|(t, _, _)| *t == tid) {
                let (_, name, args) = self.results.remove(i);
                if name == "_result" {
                    return Ok(args);
                }
                return Err(format!("{name} for transaction {tid}: {args:?}"));
            }
            if self.closed {
                return Err(format!("server closed the connection; {}", inbox.seen()));
            }
            if Instant::now() > deadline {
                return Err(format!("no answer to transaction {tid}; {}", inbox.seen()));
            }
            self.read(self.poll, inbox)?;
        }
    }

    /// Reads what the socket has (waiting at most `wait`) and decodes it into `inbox`. On EOF or
    /// a socket error the connection is closed and `inbox` gets [`Incoming::Closed`], once.
    pub fn read(&mut self, wait: Duration, inbox: &mut impl Inbox) -> Result<(), String> {
        if self.closed {
            return Ok(());
        }
        let wait = wait.max(Duration::from_millis(1));
        self.stream.set_read_timeout(Some(wait)).ok();
        let mut buf = vec![0u8; 65536];
        match self.stream.read(&mut buf) {
            Ok(0) => {
                self.closed = true;
                inbox.put(Incoming::Closed);
                Ok(())
            }
            Ok(n) => self.feed(&buf[..n], inbox),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => Ok(()),
            Err(_) => {
                self.closed = true;
                inbox.put(Incoming::Closed);
                Ok(())
            }
        }
    }

    /// Decodes bytes from the server into `inbox`, answering pings and acknowledging.
    fn feed(&mut self, bytes: &[u8], inbox: &mut impl Inbox) -> Result<(), String> {
        self.bytes_in += bytes.len() as u64;
        let mut input = bytes;
        loop {
            let payload = match self.de.get_next_message(input) {
                Ok(Some(p)) => p,
                Ok(None) => break,
                Err(e) => return Err(format!("cannot parse the server's RTMP chunks: {e:?}")),
            };
            input = &[];
            if let Some(msg) = self.on_payload(payload)? {
                inbox.put(msg);
            }
        }
        if let Some(window) = self.ack_window {
            if window > 0 && self.bytes_in - self.acked >= window as u64 / self.ack_divisor {
                self.acked = self.bytes_in;
                let ack = RtmpMessage::Acknowledgement {
                    sequence_number: self.bytes_in as u32,
                };
                self.send(ack, 0)?;
            }
        }
        Ok(())
    }

    /// Handles one message: protocol control and transaction answers here, the rest returned.
    /// A message rml_rtmp cannot decode is dropped.
    fn on_payload(&mut self, payload: MessagePayload) -> Result<Option<Incoming>, String> {
        let timestamp = payload.timestamp.value;
        let ecma_array = payload.type_id == 18 && first_value_marker(&payload.data) == Some(0x08);
        let msg = match payload.to_rtmp_message() {
            Ok(m) => m,
            Err(_) => return Ok(None),
        };
        Ok(match msg {
            RtmpMessage::SetChunkSize { size } => {
                self.de
                    .set_max_chunk_size(size as usize)
                    .map_err(|e| format!("{e:?}"))?;
                None
            }
            RtmpMessage::WindowAcknowledgement { size } => {
                self.ack_window = Some(size);
                None
            }
            RtmpMessage::UserControl {
                event_type,
                timestamp: ts,
                ..
            } => {
                if event_type == UserControlEventType::PingRequest {
                    let pong = RtmpMessage::UserControl {
                        event_type: UserControlEventType::PingResponse,
                        stream_id: None,
                        buffer_length: None,
                        timestamp: ts,
                    };
                    self.send(pong, 0)?;
                }
                Some(Incoming::UserControl {
                    kind: format!("{event_type:?}"),
                })
            }
            RtmpMessage::Amf0Command {
                command_name,
                transaction_id,
                command_object,
                mut additional_arguments,
            } => {
                if command_name == "onStatus" {
                    let info = if additional_arguments.is_empty() {
                        command_object
                    } else {
                        additional_arguments.remove(0)
                    };
                    let text = |key| prop_str(&info, key).unwrap_or_default();
                    Some(Incoming::Status {
                        code: text("code"),
                        level: text("level"),
                        description: text("description"),
                    })
                } else if (command_name == "_result" || command_name == "_error")
                    && transaction_id != 0.0
                {
                    self.results
                        .push((transaction_id, command_name, additional_arguments));
                    None
                } else {
                    Some(Incoming::Command {
                        name: command_name,
                        transaction_id,
                    })
                }
            }
            RtmpMessage::Amf0Data { mut values } => {
                let mut take_name = || {
                    let name = amf_str(values.first());
                    if !values.is_empty() {
                        values.remove(0);
                    }
                    name
                };
                let mut name = take_name();
                if name == "@setDataFrame" {
                    name = take_name();
                }
                Some(Incoming::Data {
                    name,
                    values,
                    ecma_array,
                })
            }
            RtmpMessage::VideoData { data } => Some(Incoming::Video { timestamp, data }),
            RtmpMessage::AudioData { data } => Some(Incoming::Audio { timestamp, data }),
            _ => None,
        })
    }

    /// True once the server has closed this connection.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// Drains the socket (discarding what comes) until the server closes it; true if it did
    /// within `timeout`.
    pub fn wait_closed(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.closed {
                return true;
            }
            let mut buf = vec![0u8; 65536];
            match self.stream.read(&mut buf) {
                Ok(0) => self.closed = true,
                Ok(_) => {}
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(_) => self.closed = true,
            }
        }
        self.closed
    }
}

/// What the RTMP client saw from the server.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// `onStatus` with its info object's code/level/description.
    Status {
        code: String,
        level: String,
        description: String,
    },
    /// Any other AMF0 command (`_result`, `_error`, `onBWDone`, ...).
    Command { name: String, transaction_id: f64 },
    /// AMF0 data (`onMetaData`, `|RtmpSampleAccess`, ...): its first string.
    Data { name: String },
    Video {
        timestamp: u32,
        len: usize,
        keyframe: bool,
        sequence_header: bool,
    },
    Audio {
        timestamp: u32,
        len: usize,
        sequence_header: bool,
    },
    /// A user control event (stream begin, EOF, ...).
    UserControl { kind: String },
    /// The server closed the connection (or reset it).
    Closed,
}

impl Event {
    pub fn is_status(&self, wanted: &str) -> bool {
        matches!(self, Event::Status { code, .. } if code == wanted)
    }

    pub fn is_media(&self) -> bool {
        matches!(self, Event::Video { .. } | Event::Audio { .. })
    }
}

impl From<Incoming> for Event {
    fn from(msg: Incoming) -> Event {
        let head = |data: &Bytes| {
            (
                data.first().copied().unwrap_or(0),
                data.get(1).copied().unwrap_or(0xff),
            )
        };
        match msg {
            Incoming::Status {
                code,
                level,
                description,
            } => Event::Status {
                code,
                level,
                description,
            },
            Incoming::Command {
                name,
                transaction_id,
            } => Event::Command {
                name,
                transaction_id,
            },
            Incoming::Data { name, .. } => Event::Data { name },
            Incoming::Video { timestamp, data } => {
                let (b0, b1) = head(&data);
                Event::Video {
                    timestamp,
                    len: data.len(),
                    keyframe: b0 >> 4 == 1,
                    sequence_header: b0 & 0x0f == 7 && b1 == 0,
                }
            }
            Incoming::Audio { timestamp, data } => {
                let (b0, b1) = head(&data);
                Event::Audio {
                    timestamp,
                    len: data.len(),
                    sequence_header: b0 >> 4 == 10 && b1 == 0,
                }
            }
            Incoming::UserControl { kind } => Event::UserControl { kind },
            Incoming::Closed => Event::Closed,
        }
    }
}

/// The events not yet taken by [`RtmpClient::next_event`].
impl Inbox for VecDeque<Event> {
    fn put(&mut self, msg: Incoming) {
        self.push_back(msg.into());
    }

    fn seen(&self) -> String {
        format!("events {self:?}")
    }
}

/// How long one read of [`RtmpClient`] waits.
const RTMP_CLIENT_READ: Duration = Duration::from_millis(200);

/// The scripted RTMP client of the live tests: publishes or plays, and hands out what the server
/// sends as [`Event`]s, one at a time.
pub struct RtmpClient {
    pub conn: RtmpConn,
    pending: VecDeque<Event>,
    pub port: u16,
    pub app: String,
    /// Every event ever returned, for diagnostics.
    pub history: Vec<Event>,
}

impl RtmpClient {
    /// Handshake + `connect` to `app` (as FMLE); Ok once the server answered `_result` with
    /// `NetConnection.Connect.Success`.
    pub fn connect(port: u16, app: &str) -> Result<RtmpClient, String> {
        let style = ClientStyle {
            connect_props: vec![
                ("type", Amf0Value::Utf8String("nonprivate".into())),
                ("flashVer", Amf0Value::Utf8String("FMLE/3.0".into())),
            ],
            ack_divisor: 1,
            poll: RTMP_CLIENT_READ,
        };
        let mut pending = VecDeque::new();
        let conn = RtmpConn::connect(port, app, style, &mut pending)?;
        Ok(RtmpClient {
            conn,
            pending,
            port,
            app: app.to_string(),
            history: Vec::new(),
        })
    }

    /// `createStream` + `play(name)` (the name may carry a query string). Returns once the play
    /// command is sent; the server's answers arrive as events.
    pub fn play(&mut self, name: &str) -> Result<(), String> {
        self.conn.play(name, &mut self.pending)
    }

    /// `createStream` + `publish(name, "live")`. Returns once the publish command is sent.
    pub fn publish(&mut self, name: &str) -> Result<(), String> {
        let sid = self.conn.create_stream(&mut self.pending)?;
        let args = vec![
            Amf0Value::Utf8String(name.to_string()),
            Amf0Value::Utf8String("live".to_string()),
        ];
        self.conn
            .command("publish", Amf0Value::Null, args, sid, false)?;
        Ok(())
    }

    /// Connect + play in one go.
    pub fn player(port: u16, app: &str, name: &str) -> Result<RtmpClient, String> {
        let mut c = RtmpClient::connect(port, app)?;
        c.play(name)?;
        Ok(c)
    }

    /// The next event, waiting at most `timeout`. After the connection closed this keeps
    /// returning `Some(Event::Closed)`.
    pub fn next_event(&mut self, timeout: Duration) -> Option<Event> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(e) = self.pending.pop_front() {
                self.history.push(e.clone());
                return Some(e);
            }
            if self.conn.is_closed() {
                return Some(Event::Closed);
            }
            if Instant::now() >= deadline {
                return None;
            }
            if let Err(e) = self.conn.read(RTMP_CLIENT_READ, &mut self.pending) {
                panic!(
                    "RTMP client: {e}; events so far: {}",
                    summarize(&self.history)
                );
            }
        }
    }

    /// Reads events until one matches (returned with everything seen before it), or until
    /// `timeout` (Err with everything seen). A close ends the wait unless the predicate wants it.
    pub fn wait_for(
        &mut self,
        timeout: Duration,
        pred: impl Fn(&Event) -> bool,
    ) -> Result<(Event, Vec<Event>), Vec<Event>> {
        let deadline = Instant::now() + timeout;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next_event(left) {
                Some(e) if pred(&e) => return Ok((e, seen)),
                Some(Event::Closed) => {
                    seen.push(Event::Closed);
                    return Err(seen);
                }
                Some(e) => seen.push(e),
                None => return Err(seen),
            }
        }
    }

    /// Waits for an `onStatus` with this code.
    pub fn wait_status(&mut self, code: &str, timeout: Duration) -> Result<Vec<Event>, Vec<Event>> {
        self.wait_for(timeout, |e| e.is_status(code))
            .map(|(_, seen)| seen)
    }

    /// Counts the media messages (video, audio) received during `duration`; stops early on close.
    pub fn count_media(&mut self, duration: Duration) -> (u64, u64, bool) {
        let deadline = Instant::now() + duration;
        let (mut v, mut a) = (0, 0);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return (v, a, false);
            }
            match self.next_event(left) {
                Some(Event::Video { .. }) => v += 1,
                Some(Event::Audio { .. }) => a += 1,
                Some(Event::Closed) => return (v, a, true),
                Some(_) => {}
                None => return (v, a, false),
            }
        }
    }

    /// True once the server has closed this connection.
    pub fn is_closed(&self) -> bool {
        self.conn.is_closed()
    }

    /// Drains the socket (discarding events) until the server closes it; true if it did within
    /// `timeout`.
    pub fn wait_closed(&mut self, timeout: Duration) -> bool {
        self.conn.wait_closed(timeout)
    }
}

/// Waits until the server has a live stream `name` on `app`: a probing RTMP player receives a
/// video message. Panics with what it saw after `timeout`.
pub fn wait_live(port: u16, app: &str, name: &str, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    let mut last = String::new();
    while Instant::now() < deadline {
        match RtmpClient::player(port, app, name) {
            Ok(mut c) => {
                let left = deadline.saturating_duration_since(Instant::now());
                match c.wait_for(left, |e| matches!(e, Event::Video { .. })) {
                    Ok(_) => return,
                    Err(seen) => last = format!("probe player saw {}", summarize(&seen)),
                }
            }
            Err(e) => last = e,
        }
        thread::sleep(Duration::from_millis(200));
    }
    panic!("stream {app}/{name} not live within {timeout:?}: {last}");
}

/// A short description of a list of events: non-media events in full, runs of media messages
/// condensed to counts and timestamp ranges.
pub fn summarize(events: &[Event]) -> String {
    let mut text = Condensed::new(" ms");
    for e in events {
        match e {
            Event::Video {
                timestamp,
                keyframe,
                sequence_header: false,
                ..
            } if !*keyframe || text.in_run() => text.frame(true, *timestamp),
            Event::Audio {
                timestamp,
                sequence_header: false,
                ..
            } => text.frame(false, *timestamp),
            other => text.other(format!("{other:?}")),
        }
    }
    text.finish()
}

/// A description of a session built message by message: each run of media frames condensed to
/// `[V video + A audio, ts FIRST..LAST]` (timestamps followed by `unit`), everything else as
/// given, all joined by commas.
pub struct Condensed {
    out: Vec<String>,
    /// (video, audio, first ts, last ts) of the run going on.
    run: Option<(u64, u64, u32, u32)>,
    unit: &'static str,
}

impl Condensed {
    pub fn new(unit: &'static str) -> Condensed {
        Condensed {
            out: Vec::new(),
            run: None,
            unit,
        }
    }

    /// True while a run of media frames goes on.
    pub fn in_run(&self) -> bool {
        self.run.is_some()
    }

    /// A video (or audio) frame at `ts`: counted in the run going on, or starts one.
    pub fn frame(&mut self, video: bool, ts: u32) {
        let r = self.run.get_or_insert((0, 0, ts, ts));
        if video {
            r.0 += 1;
        } else {
            r.1 += 1;
        }
        r.3 = ts;
    }

    /// Anything else, described by `text`: ends the run going on.
    pub fn other(&mut self, text: String) {
        self.end_run();
        self.out.push(text);
    }

    pub fn finish(mut self) -> String {
        self.end_run();
        self.out.join(", ")
    }

    fn end_run(&mut self) {
        if let Some((v, a, t0, t1)) = self.run.take() {
            let unit = self.unit;
            self.out
                .push(format!("[{v} video + {a} audio, ts {t0}..{t1}{unit}]"));
        }
    }
}

/// Reads from a raw socket until the peer closes it (read returns 0 or an error). Returns
/// Some(bytes read before the close) or None when it was still open after `timeout`.
pub fn wait_socket_closed(stream: &mut TcpStream, timeout: Duration) -> Option<usize> {
    stream
        .set_read_timeout(Some(Duration::from_millis(100)))
        .ok();
    let deadline = Instant::now() + timeout;
    let mut total = 0;
    let mut buf = [0u8; 16384];
    while Instant::now() < deadline {
        match stream.read(&mut buf) {
            Ok(0) => return Some(total),
            Ok(n) => total += n,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => return Some(total),
        }
    }
    None
}

/// Half-closes our side of a socket (we will send nothing more).
pub fn shutdown_write(stream: &TcpStream) {
    let _ = stream.shutdown(Shutdown::Write);
}

/// Deterministic pseudo-random bytes (xorshift).
pub fn pseudo_random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// Asserts a condition about a path on disk exists (helper for config files).
pub fn write_file(path: &Path, text: &str) {
    fs::write(path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

// ------------------------------------------------------------------------------------------------
// RTSP cameras (scripts/rtsp_camera.py, a real gst-rtsp-server)
// ------------------------------------------------------------------------------------------------

/// The user name of the test cameras.
pub const CAMERA_USER: &str = "admin";
/// The password of the test cameras, raw.
pub const CAMERA_PASSWORD: &str = "p@ss:w0rd";
/// The password as it is written in a camera URL (`@` and `:` escaped).
pub const CAMERA_PASSWORD_ESCAPED: &str = "p%40ss%3Aw0rd";
/// A part of the password found in every spelling of it (raw, escaped, escaped twice): a text
/// that contains it leaks the password.
pub const CAMERA_PASSWORD_MARK: &str = "w0rd";
/// Frames per second of the test cameras.
pub const CAMERA_FPS: u32 = 25;

/// Percent-encodes every byte outside the URL-unreserved set (`A-Z a-z 0-9 - . _ ~`), so a whole
/// URL (with its `:`, `/`, `@`, `?` and `%`) becomes one path segment.
pub fn percent_encode_all(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// How to start a test camera. `Default` is a digest-auth camera (`admin` / `p@ss:w0rd`) at
/// `/cam`, x264 320x240 at 25 fps with a keyframe every second, and AAC audio.
#[derive(Clone, Debug)]
pub struct CameraOpts {
    pub path: String,
    /// `None`: no authentication.
    pub user: Option<String>,
    pub password: Option<String>,
    /// `digest`, `basic` or `none`.
    pub auth: String,
    /// `aac`, `pcma`, `pcmu` or `none`.
    pub audio: String,
    /// `x264` or `openh264`.
    pub encoder: String,
    pub size: String,
    pub gop: u32,
}

impl Default for CameraOpts {
    fn default() -> CameraOpts {
        CameraOpts {
            path: "/cam".into(),
            user: Some(CAMERA_USER.into()),
            password: Some(CAMERA_PASSWORD.into()),
            auth: "digest".into(),
            audio: "aac".into(),
            encoder: "x264".into(),
            size: "320x240".into(),
            gop: CAMERA_FPS,
        }
    }
}

impl CameraOpts {
    pub fn audio(mut self, audio: &str) -> CameraOpts {
        self.audio = audio.into();
        self
    }

    pub fn encoder(mut self, encoder: &str) -> CameraOpts {
        self.encoder = encoder.into();
        self
    }

    /// `digest`, `basic` or `none` (same user and password).
    pub fn auth(mut self, auth: &str) -> CameraOpts {
        self.auth = auth.into();
        self
    }

    pub fn no_auth(mut self) -> CameraOpts {
        self.user = None;
        self.password = None;
        self.auth = "none".into();
        self
    }
}

/// `scripts/rtsp_camera.py` run with Debian's `/usr/bin/python3` on a free loopback port; killed
/// on drop. It prints one JSON line per connect/request/close and keeps counters in a stats file.
pub struct Camera {
    proc: Option<Proc>,
    pub port: u16,
    pub opts: CameraOpts,
    pub stats_path: PathBuf,
    /// stdout of the runs before a kill, so [`Camera::events`] covers every run.
    past_stdout: String,
    dir: TempDir,
}

pub fn camera_script() -> PathBuf {
    repo_root().join("scripts").join("rtsp_camera.py")
}

impl Camera {
    /// Starts a camera on a free port and waits (at most 20 s) until it listens.
    pub fn start(opts: CameraOpts) -> Camera {
        let mut last = String::new();
        for _ in 0..3 {
            let port = free_port();
            let dir = TempDir::new("camera");
            let stats_path = dir.join("stats.json");
            let mut cam = Camera {
                proc: None,
                port,
                opts: opts.clone(),
                stats_path,
                past_stdout: String::new(),
                dir,
            };
            match cam.spawn(Duration::from_secs(20)) {
                Ok(()) => return cam,
                Err(e) => last = e,
            }
        }
        panic!("camera did not start: {last}");
    }

    fn spawn(&mut self, timeout: Duration) -> Result<(), String> {
        let _ = fs::remove_file(&self.stats_path);
        let mut args = vec![
            camera_script().display().to_string(),
            "--host".into(),
            "127.0.0.1".into(),
            "--port".into(),
            self.port.to_string(),
            "--path".into(),
            self.opts.path.clone(),
            "--auth".into(),
            self.opts.auth.clone(),
            "--audio".into(),
            self.opts.audio.clone(),
            "--encoder".into(),
            self.opts.encoder.clone(),
            "--size".into(),
            self.opts.size.clone(),
            "--fps".into(),
            CAMERA_FPS.to_string(),
            "--gop".into(),
            self.opts.gop.to_string(),
            "--stats-file".into(),
            self.stats_path.display().to_string(),
        ];
        if let (Some(u), Some(p)) = (&self.opts.user, &self.opts.password) {
            args.extend(["--user".into(), u.clone(), "--password".into(), p.clone()]);
        }
        if !Path::new("/usr/bin/python3").exists() {
            panic!("/usr/bin/python3 missing: run scripts/install-test-deps.sh");
        }
        let mut p = Proc::spawn("rtsp-camera", "/usr/bin/python3", &args);
        let deadline = Instant::now() + timeout;
        loop {
            if p.stdout().contains("\"event\": \"listening\"") {
                self.proc = Some(p);
                return Ok(());
            }
            if !p.is_running() {
                return Err(format!(
                    "camera on port {} exited: {}{} (run scripts/install-test-deps.sh)",
                    self.port,
                    p.stdout(),
                    tail(&p.stderr(), 20)
                ));
            }
            if Instant::now() > deadline {
                let err = tail(&p.stderr(), 20);
                p.kill();
                return Err(format!("camera not listening within {timeout:?}: {err}"));
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// `rtsp://admin:p%40ss%3Aw0rd@127.0.0.1:PORT/cam` (no user part without authentication).
    pub fn url(&self) -> String {
        match &self.opts.user {
            Some(u) => self.url_with(u, CAMERA_PASSWORD_ESCAPED),
            None => format!("rtsp://127.0.0.1:{}{}", self.port, self.opts.path),
        }
    }

    /// The camera URL with these credentials (`password` as written in the URL, escaped).
    pub fn url_with(&self, user: &str, password: &str) -> String {
        format!(
            "rtsp://{user}:{password}@127.0.0.1:{}{}",
            self.port, self.opts.path
        )
    }

    /// The stats snapshot of the current run (`Value::Null` before its first write).
    pub fn stats(&self) -> Value {
        fs::read_to_string(&self.stats_path)
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or(Value::Null)
    }

    /// RTSP connections accepted by the current run of the camera.
    pub fn total_connections(&self) -> u64 {
        self.stats()["total_connections"].as_u64().unwrap_or(0)
    }

    /// Connections open now on the current run.
    pub fn active_connections(&self) -> i64 {
        self.stats()["active"].as_i64().unwrap_or(0)
    }

    /// Every JSON event line the camera printed, over all its runs.
    pub fn events(&self) -> Vec<Value> {
        let mut text = self.past_stdout.clone();
        if let Some(p) = &self.proc {
            text.push_str(&p.stdout());
        }
        text.lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .collect()
    }

    /// The events named `name` (`connect`, `request`, `close`, `listening`).
    pub fn events_named(&self, name: &str) -> Vec<Value> {
        self.events()
            .into_iter()
            .filter(|e| e["event"] == name)
            .collect()
    }

    /// Polls the events until one matches; None after `timeout`.
    pub fn wait_event(&self, timeout: Duration, pred: impl Fn(&Value) -> bool) -> Option<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(e) = self.events().into_iter().find(|e| pred(e)) {
                return Some(e);
            }
            if Instant::now() > deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// Polls the current run's stats until `pred` holds; returns the last snapshot.
    pub fn wait_stats(&self, timeout: Duration, pred: impl Fn(&Value) -> bool) -> (bool, Value) {
        let deadline = Instant::now() + timeout;
        loop {
            let v = self.stats();
            if pred(&v) {
                return (true, v);
            }
            if Instant::now() > deadline {
                return (false, v);
            }
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// Kills the camera with SIGKILL (like pulling its cable: no TEARDOWN, no goodbye).
    pub fn kill(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.kill();
            self.past_stdout.push_str(&p.stdout());
        }
    }

    /// Starts the camera again on the same port (retrying the bind for up to 10 s).
    pub fn restart(&mut self) {
        self.kill();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match self.spawn(Duration::from_secs(20)) {
                Ok(()) => return,
                Err(e) if Instant::now() > deadline => {
                    panic!("camera could not restart on port {}: {e}", self.port)
                }
                Err(_) => thread::sleep(Duration::from_millis(300)),
            }
        }
    }

    pub fn is_running(&mut self) -> bool {
        self.proc.as_mut().is_some_and(|p| p.is_running())
    }

    /// The camera's stdout and stderr (current run) for failure messages.
    pub fn describe(&self) -> String {
        let mut text = self.past_stdout.clone();
        let mut err = String::new();
        if let Some(p) = &self.proc {
            text.push_str(&p.stdout());
            err = p.stderr();
        }
        format!(
            "camera on port {} events:\n{}\nstderr:\n{}",
            self.port,
            tail(&text, 40),
            tail(&err, 10)
        )
    }
}

impl Drop for Camera {
    fn drop(&mut self) {
        if thread::panicking() {
            eprintln!("----- {} -----", self.describe());
        }
        if let Some(mut p) = self.proc.take() {
            p.kill();
        }
    }
}

impl Server {
    /// POSTs to `/rest-api/rtsp/PATH` (waiting up to 30 s: a startup answers once the camera
    /// answered or its first attempt failed).
    pub fn rtsp(&self, path: &str, body: &Value) -> (u16, Value) {
        rest_timeout(
            self.rest_port,
            &format!("rtsp/{path}"),
            &body.to_string(),
            Duration::from_secs(30),
        )
    }

    /// The pull objects of `/rest-api/rtsp/find_all` (empty on 404; panics on any other answer).
    pub fn rtsp_pulls(&self) -> Vec<Value> {
        let (status, v) = self.rest("rtsp/find_all", "{}");
        match status {
            200 => v
                .as_array()
                .cloned()
                .unwrap_or_else(|| panic!("rtsp/find_all answered 200 without a JSON array: {v}")),
            404 => Vec::new(),
            _ => panic!("rtsp/find_all answered {status}: {v}"),
        }
    }

    /// Polls `rtsp/find_all` until `pred` holds for the list of pulls; returns the last list.
    pub fn wait_pulls(
        &self,
        timeout: Duration,
        pred: impl Fn(&[Value]) -> bool,
    ) -> (bool, Vec<Value>) {
        let deadline = Instant::now() + timeout;
        loop {
            let pulls = self.rtsp_pulls();
            if pred(&pulls) {
                return (true, pulls);
            }
            if Instant::now() > deadline {
                return (false, pulls);
            }
            thread::sleep(Duration::from_millis(250));
        }
    }

    /// The RTMP URL that plays a camera by its URL: `rtmp://.../live/` + the whole camera URL
    /// percent-encoded as one path segment.
    pub fn camera_play_url(&self, camera_url: &str) -> String {
        self.url(&percent_encode_all(camera_url))
    }
}

/// The pull whose masked `uri` points at this host:port/path (credentials and query ignored
/// unless `query` is given).
pub fn find_pull<'a>(pulls: &'a [Value], port: u16, path_and_query: &str) -> Option<&'a Value> {
    let wanted = format!("127.0.0.1:{port}{path_and_query}");
    pulls.iter().find(|p| {
        p["uri"]
            .as_str()
            .is_some_and(|u| u.ends_with(&wanted) && u.starts_with("rtsp://"))
    })
}

/// `mediarouter token --secret SECRET ARGS...`: the signed token it prints (checked to be a JWT).
pub fn mint_token(secret: &str, args: &[&str]) -> String {
    let mut all = vec!["token", "--secret", secret];
    all.extend_from_slice(args);
    let out = server_command(&all, &[])
        .output()
        .expect("run mediarouter token");
    assert!(
        out.status.success(),
        "mediarouter {all:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert_eq!(token.split('.').count(), 3, "not a JWT: {token}");
    token
}
