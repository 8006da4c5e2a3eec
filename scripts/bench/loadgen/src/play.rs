//! The benchmark's players: many RTMP and WebSocket (fMP4) players in one thread, each counting
//! the frames and bytes it gets inside the measuring window and, from the publisher's stamps
//! (see [`crate::stamp`]), how long each video frame took from the publisher to it.
//!
//! Invariants: a player reads as fast as the server sends (no decoding, no copies beyond the
//! socket read), so the figures are the server's; counts and delays are taken only inside the
//! window, when every player is attached; a player's failure ends only that player.

use crate::fmp4;
use crate::rtmp::{describe, parse_command, Conn, RtmpUrl};
use crate::stamp;
use crate::stats::{Histogram, PlayerCount};
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Instant;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The measuring window, shared by all players.
pub struct Window {
    pub start: Cell<Option<Instant>>,
    pub end: Cell<Option<Instant>>,
}

impl Window {
    pub(crate) fn contains(&self, at: Instant) -> bool {
        self.start.get().is_some_and(|s| at >= s) && self.end.get().is_none_or(|e| at < e)
    }

    pub(crate) fn over(&self, at: Instant) -> bool {
        self.end.get().is_some_and(|e| at >= e)
    }
}

/// What one player adds to while it plays.
pub struct Recorder {
    pub window: Rc<Window>,
    pub delay: Rc<RefCell<Histogram>>,
    pub count: PlayerCount,
    opened: Instant,
}

impl Recorder {
    pub fn new(window: Rc<Window>, delay: Rc<RefCell<Histogram>>) -> Recorder {
        Recorder {
            window,
            delay,
            count: PlayerCount::default(),
            opened: Instant::now(),
        }
    }

    pub(crate) fn bytes(&mut self, n: usize) {
        if self.window.contains(Instant::now()) {
            self.count.bytes += n as u64;
        }
    }

    /// `frames` video frames arrived; `first` is the first one's AVCC bytes.
    fn video(&mut self, frames: u64, first: Option<&[u8]>) {
        self.video_stamped(frames, first.and_then(stamp::read));
    }

    /// `frames` video frames arrived; `sent_us` is the first one's stamp, if it had one.
    pub(crate) fn video_stamped(&mut self, frames: u64, sent_us: Option<u64>) {
        let now = Instant::now();
        if self.count.first_frame_us.is_none() {
            self.count.first_frame_us = Some(now.duration_since(self.opened).as_micros() as u64);
        }
        if !self.window.contains(now) {
            return;
        }
        self.count.video_frames += frames;
        if let Some(sent) = sent_us {
            self.delay
                .borrow_mut()
                .record(stamp::now_us().saturating_sub(sent));
        }
    }

    pub(crate) fn audio(&mut self, frames: u64) {
        if self.window.contains(Instant::now()) {
            self.count.audio_frames += frames;
        }
    }
}

/// Plays `url` over RTMP until the window is over.
pub async fn rtmp(url: RtmpUrl, mut rec: Recorder) -> PlayerCount {
    if let Err(e) = rtmp_session(&url, &mut rec).await {
        rec.count.error = Some(e);
    }
    rec.count
}

async fn rtmp_session(url: &RtmpUrl, rec: &mut Recorder) -> Result<(), String> {
    let mut conn = Conn::open(url).await?;
    conn.play(&url.name).await?;
    let mut seen = conn.received;
    loop {
        let message = conn.next_message().await?;
        rec.bytes((conn.received - seen) as usize);
        seen = conn.received;
        let body = &message.payload;
        match message.type_id {
            // Video: FLV header (5 bytes) then AVCC; sequence headers are not frames.
            9 if body.len() > 5 && body[1] == 1 => rec.video(1, Some(&body[5..])),
            // AAC raw frame (packet type 1).
            8 if body.len() > 2 && body[1] == 1 => rec.audio(1),
            20 => {
                let command = parse_command(body)?;
                let text = describe(&command.args);
                if text.contains("Failed") || text.contains("NotFound") {
                    return Err(text);
                }
            }
            _ => {}
        }
        if rec.window.over(Instant::now()) {
            return Ok(());
        }
    }
}

/// Plays `ws://HOST:PORT/PATH?QUERY` (the media WebSocket) until the window is over.
pub async fn websocket(url: String, mut rec: Recorder) -> PlayerCount {
    if let Err(e) = websocket_session(&url, &mut rec).await {
        rec.count.error = Some(e);
    }
    rec.count
}

async fn websocket_session(url: &str, rec: &mut Recorder) -> Result<(), String> {
    let (mut socket, mut buf) = ws_open(url).await?;
    let mut chunk = vec![0u8; 64 * 1024];
    let mut tracks = fmp4::Tracks::default();
    loop {
        while let Some((opcode, payload_at, len)) = frame_at(&buf) {
            let payload = &buf[payload_at..payload_at + len];
            match opcode {
                2 if fmp4::is_init(payload) => tracks = fmp4::Tracks::of_init(payload),
                2 => {
                    let fragment = fmp4::read_fragment(payload, &tracks);
                    if fragment.video_samples > 0 {
                        rec.video(fragment.video_samples, fragment.first_video);
                    }
                    rec.audio(fragment.audio_samples);
                }
                1 => {
                    let text = String::from_utf8_lossy(payload);
                    if text.contains("\"FAILED\"") || text.contains("\"STOPPED\"") {
                        return Err(text.chars().take(200).collect());
                    }
                }
                // Ping → masked pong with the same payload.
                9 => {
                    let pong = masked_frame(0xA, payload);
                    socket.write_all(&pong).await.map_err(|e| e.to_string())?;
                }
                8 => return Err("the server closed the WebSocket".into()),
                _ => {}
            }
            buf.drain(..payload_at + len);
        }
        if rec.window.over(Instant::now()) {
            return Ok(());
        }
        let n = socket.read(&mut chunk).await.map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("server closed the connection".into());
        }
        rec.bytes(n);
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Opens a WebSocket to `ws://HOST:PORT/PATH?QUERY`: the connected socket and whatever the server
/// sent after its handshake answer.
pub(crate) async fn ws_open(url: &str) -> Result<(TcpStream, Vec<u8>), String> {
    let rest = url.strip_prefix("ws://").ok_or("not a ws:// URL")?;
    let (host, path) = rest.split_once('/').ok_or("no path in the URL")?;
    let mut socket = TcpStream::connect(host)
        .await
        .map_err(|e| format!("connect {host}: {e}"))?;
    socket.set_nodelay(true).ok();
    let request = format!(
        "GET /{path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    socket
        .write_all(request.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut buf: Vec<u8> = Vec::with_capacity(256 * 1024);
    let mut chunk = vec![0u8; 16 * 1024];
    // The HTTP answer.
    let body_start = loop {
        let n = socket.read(&mut chunk).await.map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("closed during the WebSocket handshake".into());
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            if !buf.starts_with(b"HTTP/1.1 101") {
                let line = String::from_utf8_lossy(&buf[..end]);
                return Err(format!("no upgrade: {}", line.lines().next().unwrap_or("")));
            }
            break end + 4;
        }
    };
    buf.drain(..body_start);
    Ok((socket, buf))
}

/// A complete unmasked server frame at the start of `buf`: (opcode, payload offset, length).
pub(crate) fn frame_at(buf: &[u8]) -> Option<(u8, usize, usize)> {
    let (b0, b1) = (*buf.first()?, *buf.get(1)?);
    let (len, at) = match b1 & 0x7f {
        126 => (u16::from_be_bytes([*buf.get(2)?, *buf.get(3)?]) as usize, 4),
        127 => {
            let bytes: [u8; 8] = buf.get(2..10)?.try_into().ok()?;
            (u64::from_be_bytes(bytes) as usize, 10)
        }
        n => (n as usize, 2),
    };
    (buf.len() >= len.checked_add(at)?).then_some((b0 & 0x0f, at, len))
}

/// A client frame (clients must mask; a zero mask keeps the payload as it is), at most 65535
/// bytes of payload (SDP fits; longer payloads are cut).
pub(crate) fn masked_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let payload = &payload[..payload.len().min(u16::MAX as usize)];
    let mut out = Vec::with_capacity(payload.len() + 8);
    out.push(0x80 | opcode);
    if payload.len() < 126 {
        out.push(0x80 | payload.len() as u8);
    } else {
        out.push(0x80 | 126);
        out.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    }
    out.extend_from_slice(&[0, 0, 0, 0]);
    out.extend_from_slice(payload);
    out
}
