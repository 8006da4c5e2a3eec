//! `loadgen`: the load of the benchmarks in scripts/bench (see BENCHMARKS.md).
//!
//! - `loadgen publish --url rtmp://HOST:PORT/APP/NAME --file MEDIA [--seconds S]`: replays a
//!   file in real time, every video frame stamped with the time it was sent.
//! - `loadgen publish --rtp HOST:VIDEO_PORT,AUDIO_PORT --file MEDIA [--seconds S]`: the same,
//!   as plain RTP over UDP (H.264 pt 96, the AAC as Opus pt 111), for servers fed RTP (Janus).
//! - `loadgen play [--rtmp URL --rtmp-players N] [--ws URL --ws-players N] [--ramp-per-s R]
//!   [--warmup-s W] [--window-s T] [--server-pid PID]...`: attaches the players, waits W
//!   seconds, then measures for T seconds what every player receives, and what the server
//!   process(es) spent (CPU from /proc, memory growth since before the players came). Prints
//!   one JSON object.
//! - `loadgen play --webrtc ws://HOST:PORT/ws --webrtc-stream APP/NAME --webrtc-players N` and
//!   `loadgen play --janus http://HOST:PORT/janus --janus-mountpoint ID --janus-players N`
//!   (with the same options): lean WebRTC subscribers of mediarouter or of Janus' streaming
//!   plugin (see [`webrtc`]); the report adds packets, SRTP profiles, errors by kind, and the
//!   load's own CPU (a saturated load core makes the figures the load's, not the server's).
//!
//! - `loadgen transcode --file MEDIA [--rounds N]`: the CPU the server's AAC → Opus transcoder
//!   takes per stream (one runs per stream that has WebRTC viewers).
//!
//! Runs on one thread, so `taskset` puts the whole load on one core.

mod fmp4;
mod play;
mod publish;
mod rtmp;
mod rtp_publish;
mod stamp;
mod stats;
mod transcode;
mod webrtc;

use play::{Recorder, Window};
use serde_json::{json, Value};
use stats::Histogram;
use std::cell::RefCell;
use std::path::PathBuf;
use std::process::ExitCode;
use std::rc::Rc;
use std::time::{Duration, Instant};

/// Clock ticks per second of /proc's CPU times (USER_HZ, 100 on Linux).
const TICKS_PER_S: f64 = 100.0;

struct PlayOptions {
    rtmp: Option<String>,
    rtmp_players: usize,
    ws: Option<String>,
    ws_players: usize,
    webrtc: Option<String>,
    webrtc_stream: String,
    webrtc_players: usize,
    janus: Option<String>,
    janus_mountpoint: u64,
    janus_players: usize,
    ramp_per_s: f64,
    warmup_s: f64,
    window_s: f64,
    server_pids: Vec<u32>,
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("loadgen: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = match args.first().map(String::as_str) {
        Some("publish") => runtime.block_on(publish_command(&args[1..])),
        Some("transcode") => transcode_command(&args[1..]),
        Some("play") => parse_play(&args[1..]).and_then(|options| {
            let local = tokio::task::LocalSet::new();
            local.block_on(&runtime, play_command(options))
        }),
        _ => Err("usage: loadgen publish|play|transcode ... (see src/main.rs)".into()),
    };
    match result {
        Ok(report) => {
            println!("{report}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("loadgen: {e}");
            ExitCode::FAILURE
        }
    }
}

fn value<'a>(args: &'a [String], i: &mut usize) -> Result<&'a str, String> {
    *i += 1;
    args.get(*i)
        .map(String::as_str)
        .ok_or_else(|| format!("{} needs a value", args[*i - 1]))
}

fn number<T: std::str::FromStr>(text: &str) -> Result<T, String> {
    text.parse().map_err(|_| format!("not a number: {text}"))
}

async fn publish_command(args: &[String]) -> Result<Value, String> {
    let (mut url, mut rtp, mut file, mut seconds) = (None, None, None, 60.0);
    let mut i = 0;
    while i < args.len() {
        match args[i].as_str() {
            "--url" => url = Some(value(args, &mut i)?.to_string()),
            "--rtp" => rtp = Some(value(args, &mut i)?.to_string()),
            "--file" => file = Some(PathBuf::from(value(args, &mut i)?)),
            "--seconds" => seconds = number(value(args, &mut i)?)?,
            other => return Err(format!("unknown argument {other}")),
        }
        i += 1;
    }
    let file = file.ok_or("--file is required")?;
    match (url, rtp) {
        (Some(url), None) => publish::run(&url, &file, seconds).await,
        (None, Some(rtp)) => rtp_publish::run(&rtp, &file, seconds).await,
        _ => Err("publish wants one of --url or --rtp".into()),
    }
}

fn transcode_command(args: &[String]) -> Result<Value, String> {
    let (mut file, mut rounds) = (None, 3u32);
    let mut i = 0;
    while i < args.len() {
        match args[i].as_str() {
            "--file" => file = Some(PathBuf::from(value(args, &mut i)?)),
            "--rounds" => rounds = number(value(args, &mut i)?)?,
            other => return Err(format!("unknown argument {other}")),
        }
        i += 1;
    }
    transcode::aac_to_opus(&file.ok_or("--file is required")?, rounds.max(1))
}

fn parse_play(args: &[String]) -> Result<PlayOptions, String> {
    let mut o = PlayOptions {
        rtmp: None,
        rtmp_players: 0,
        ws: None,
        ws_players: 0,
        webrtc: None,
        webrtc_stream: "live/bench".into(),
        webrtc_players: 0,
        janus: None,
        janus_mountpoint: 1,
        janus_players: 0,
        ramp_per_s: 200.0,
        warmup_s: 5.0,
        window_s: 20.0,
        server_pids: Vec::new(),
    };
    let mut i = 0;
    while i < args.len() {
        match args[i].as_str() {
            "--rtmp" => o.rtmp = Some(value(args, &mut i)?.to_string()),
            "--rtmp-players" => o.rtmp_players = number(value(args, &mut i)?)?,
            "--ws" => o.ws = Some(value(args, &mut i)?.to_string()),
            "--ws-players" => o.ws_players = number(value(args, &mut i)?)?,
            "--webrtc" => o.webrtc = Some(value(args, &mut i)?.to_string()),
            "--webrtc-stream" => o.webrtc_stream = value(args, &mut i)?.to_string(),
            "--webrtc-players" => o.webrtc_players = number(value(args, &mut i)?)?,
            "--janus" => o.janus = Some(value(args, &mut i)?.to_string()),
            "--janus-mountpoint" => o.janus_mountpoint = number(value(args, &mut i)?)?,
            "--janus-players" => o.janus_players = number(value(args, &mut i)?)?,
            "--ramp-per-s" => o.ramp_per_s = number(value(args, &mut i)?)?,
            "--warmup-s" => o.warmup_s = number(value(args, &mut i)?)?,
            "--window-s" => o.window_s = number(value(args, &mut i)?)?,
            "--server-pid" => o.server_pids.push(number(value(args, &mut i)?)?),
            other => return Err(format!("unknown argument {other}")),
        }
        i += 1;
    }
    if o.ramp_per_s <= 0.0 || o.window_s <= 0.0 {
        return Err("--ramp-per-s and --window-s must be positive".into());
    }
    Ok(o)
}

async fn play_command(o: PlayOptions) -> Result<Value, String> {
    let rss_before = rss_kb(&o.server_pids);
    let window = Rc::new(Window {
        start: Default::default(),
        end: Default::default(),
    });
    let rtmp_delay = Rc::new(RefCell::new(Histogram::default()));
    let ws_delay = Rc::new(RefCell::new(Histogram::default()));
    let gap = Duration::from_secs_f64(1.0 / o.ramp_per_s);
    let mut rtmp_players = Vec::new();
    let mut ws_players = Vec::new();
    let rtmp_url = o.rtmp.as_deref().map(rtmp::RtmpUrl::parse).transpose()?;
    let total = o.rtmp_players + o.ws_players;
    for n in 0..total {
        // Interleave the kinds so both see the same ramp.
        let as_ws = o.ws.is_some()
            && (rtmp_url.is_none() || n % 2 == 1 || rtmp_players.len() >= o.rtmp_players);
        if as_ws && ws_players.len() < o.ws_players {
            let recorder = Recorder::new(Rc::clone(&window), Rc::clone(&ws_delay));
            let url = o.ws.clone().unwrap_or_default();
            ws_players.push(tokio::task::spawn_local(play::websocket(url, recorder)));
        } else if let Some(url) = rtmp_url
            .clone()
            .filter(|_| rtmp_players.len() < o.rtmp_players)
        {
            let recorder = Recorder::new(Rc::clone(&window), Rc::clone(&rtmp_delay));
            rtmp_players.push(tokio::task::spawn_local(play::rtmp(url, recorder)));
        }
        tokio::time::sleep(gap).await;
    }
    let (webrtc_players, janus_players) = webrtc_ramp(&o, &window, gap).await?;
    tokio::time::sleep(Duration::from_secs_f64(o.warmup_s)).await;
    let rss_after = rss_kb(&o.server_pids);
    let own_pid = [std::process::id()];
    let own_start = cpu_ticks(&own_pid);
    let drops_start = webrtc::own_udp_drops();
    let cpu_start = cpu_ticks(&o.server_pids);
    let started = Instant::now();
    window.start.set(Some(started));
    tokio::time::sleep(Duration::from_secs_f64(o.window_s)).await;
    let ended = Instant::now();
    window.end.set(Some(ended));
    let cpu_end = cpu_ticks(&o.server_pids);
    let own_s = cpu_ticks(&own_pid).saturating_sub(own_start) as f64 / TICKS_PER_S;
    let udp_drops = webrtc::own_udp_drops().saturating_sub(drops_start);
    let window_s = ended.duration_since(started).as_secs_f64();
    let finish = |handles: Vec<tokio::task::JoinHandle<stats::PlayerCount>>| async move {
        let mut counts = Vec::new();
        for handle in handles {
            // A player that gets nothing more would wait forever: it has had its window.
            match tokio::time::timeout(Duration::from_secs(5), handle).await {
                Ok(Ok(count)) => counts.push(count),
                _ => counts.push(stats::PlayerCount {
                    error: Some("still waiting for data after the window".into()),
                    ..Default::default()
                }),
            }
        }
        counts
    };
    let rtmp_counts = finish(rtmp_players).await;
    let ws_counts = finish(ws_players).await;
    let webrtc_counts = finish(webrtc_players.0).await;
    let janus_counts = finish(janus_players.0).await;
    let cpu_s = (cpu_end.saturating_sub(cpu_start)) as f64 / TICKS_PER_S;
    let players = (total + o.webrtc_players + o.janus_players).max(1) as f64;
    let mut report = json!({
        "window_s": window_s,
        "server": {
            "cpu_s": cpu_s,
            "cpu_percent": cpu_s / window_s * 100.0,
            "rss_before_kb": rss_before,
            "rss_after_kb": rss_after,
            "rss_per_player_kb": (rss_after as f64 - rss_before as f64) / players,
        },
        "loadgen": {
            "cpu_s": own_s,
            "cpu_percent": own_s / window_s * 100.0,
            "udp_drops": udp_drops,
        },
    });
    if o.rtmp_players > 0 {
        report["rtmp"] = stats::report(&rtmp_counts, &rtmp_delay.borrow(), window_s);
    }
    if o.ws_players > 0 {
        report["ws"] = stats::report(&ws_counts, &ws_delay.borrow(), window_s);
    }
    if o.webrtc_players > 0 {
        report["webrtc"] = webrtc::report(&webrtc_counts, &webrtc_players.1.borrow(), window_s);
    }
    if o.janus_players > 0 {
        report["janus"] = webrtc::report(&janus_counts, &janus_players.1.borrow(), window_s);
    }
    Ok(report)
}

/// Subscribers of one kind, and the histogram of their delays.
type Subscribers = (
    Vec<tokio::task::JoinHandle<stats::PlayerCount>>,
    Rc<RefCell<Histogram>>,
);

/// Starts the WebRTC subscribers (mediarouter's and Janus', interleaved), `gap` apart.
async fn webrtc_ramp(
    o: &PlayOptions,
    window: &Rc<Window>,
    gap: Duration,
) -> Result<(Subscribers, Subscribers), String> {
    let mut mediarouter: Subscribers = (Vec::new(), Rc::default());
    let mut janus: Subscribers = (Vec::new(), Rc::default());
    if o.webrtc_players + o.janus_players == 0 {
        return Ok((mediarouter, janus));
    }
    let identity = Rc::new(webrtc::Identity::new()?);
    let targets = [
        o.webrtc.clone().map(|url| webrtc::Target::Mediarouter {
            url,
            stream: o.webrtc_stream.clone(),
        }),
        o.janus.clone().map(|url| webrtc::Target::Janus {
            url,
            mountpoint: o.janus_mountpoint,
        }),
    ];
    let wanted = [o.webrtc_players, o.janus_players];
    if wanted[0] > 0 && targets[0].is_none() || wanted[1] > 0 && targets[1].is_none() {
        return Err("--webrtc-players needs --webrtc, --janus-players needs --janus".into());
    }
    for n in 0..wanted[0].max(wanted[1]) {
        for (kind, subscribers) in [&mut mediarouter, &mut janus].into_iter().enumerate() {
            if let (Some(target), true) = (&targets[kind], n < wanted[kind]) {
                let recorder = Recorder::new(Rc::clone(window), Rc::clone(&subscribers.1));
                let run = webrtc::run(target.clone(), Rc::clone(&identity), recorder);
                subscribers.0.push(tokio::task::spawn_local(run));
                tokio::time::sleep(gap).await;
            }
        }
    }
    Ok((mediarouter, janus))
}

/// utime + stime of the processes, in clock ticks (0 for a pid that is gone).
fn cpu_ticks(pids: &[u32]) -> u64 {
    pids.iter()
        .filter_map(|pid| std::fs::read_to_string(format!("/proc/{pid}/stat")).ok())
        .filter_map(|stat| {
            // Fields after the parenthesised command name; utime and stime are the 12th and
            // 13th of them (fields 14 and 15 of the whole line).
            let rest = &stat[stat.rfind(')')? + 2..];
            let fields: Vec<&str> = rest.split_whitespace().collect();
            Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
        })
        .sum()
}

/// Resident memory of the processes, in KiB.
fn rss_kb(pids: &[u32]) -> u64 {
    pids.iter()
        .filter_map(|pid| std::fs::read_to_string(format!("/proc/{pid}/status")).ok())
        .filter_map(|status| {
            let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
            line.split_whitespace().nth(1)?.parse::<u64>().ok()
        })
        .sum()
}
