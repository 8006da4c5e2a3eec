//! A minimal WebSocket client for the media WebSocket `/ws/play` (RFC 6455 over a blocking
//! TcpStream): it reads the server's statuses, init segments and fragments as they come, so
//! tests can check the protocol and hand the fMP4 to ffprobe. Browsers are tested separately.

use serde_json::Value;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// One message from the server.
#[derive(Debug)]
pub enum WsMessage {
    Text(Value),
    Binary(Vec<u8>),
    Close(u16, String),
    Ping,
}

pub struct WsMediaClient {
    stream: TcpStream,
    buf: Vec<u8>,
    pub closed: bool,
    /// A slow reader: at most this many bytes per read, then a pause.
    throttle: Option<(usize, Duration)>,
}

/// Everything a client read in a while.
#[derive(Debug, Default)]
pub struct Received {
    pub statuses: Vec<Value>,
    pub inits: Vec<Value>,
    /// The init segments and fragments in order: an fMP4 file ffprobe reads.
    pub media: Vec<u8>,
    pub fragments: usize,
    pub close: Option<(u16, String)>,
    /// When the first fragment arrived, from the start of the read.
    pub first_fragment: Option<Duration>,
}

impl Received {
    pub fn status_names(&self) -> Vec<String> {
        self.statuses
            .iter()
            .map(|s| s["status"].as_str().unwrap_or("?").to_string())
            .collect()
    }
}

impl WsMediaClient {
    /// Opens `/ws/play` with this query string; `Err` carries the HTTP status line and body of a
    /// refused upgrade.
    pub fn open(http_port: u16, query: &str) -> Result<WsMediaClient, String> {
        Self::open_with(http_port, query, None)
    }

    /// As [`WsMediaClient::open`], with a small kernel receive buffer when given: on loopback
    /// the kernel would otherwise absorb seconds of media for a slow reader, which a real slow
    /// link does not.
    pub fn open_with(
        http_port: u16,
        query: &str,
        receive_buffer: Option<usize>,
    ) -> Result<WsMediaClient, String> {
        let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
            .map_err(|e| format!("socket: {e}"))?;
        if let Some(bytes) = receive_buffer {
            socket
                .set_recv_buffer_size(bytes)
                .map_err(|e| format!("SO_RCVBUF: {e}"))?;
        }
        let address: std::net::SocketAddr = ([127, 0, 0, 1], http_port).into();
        socket
            .connect(&address.into())
            .map_err(|e| format!("connect: {e}"))?;
        let mut stream: TcpStream = socket.into();
        stream
            .set_read_timeout(Some(Duration::from_millis(200)))
            .map_err(|e| e.to_string())?;
        let request = format!(
            "GET /ws/play?{query} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
             Sec-WebSocket-Version: 13\r\n\r\n"
        );
        stream
            .write_all(request.as_bytes())
            .map_err(|e| format!("send: {e}"))?;
        let mut client = WsMediaClient {
            stream,
            buf: Vec::new(),
            closed: false,
            throttle: None,
        };
        let deadline = Instant::now() + Duration::from_secs(5);
        let end = loop {
            if let Some(at) = client.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break at + 4;
            }
            if Instant::now() > deadline || !client.fill()? {
                return Err(format!(
                    "no HTTP answer: {}",
                    String::from_utf8_lossy(&client.buf)
                ));
            }
        };
        let head = String::from_utf8_lossy(&client.buf[..end]).to_string();
        if !head.starts_with("HTTP/1.1 101") {
            // Give the body a moment to arrive for the message.
            let _ = client.fill();
            return Err(String::from_utf8_lossy(&client.buf).to_string());
        }
        client.buf.drain(..end);
        Ok(client)
    }

    pub fn play(http_port: u16, name: &str) -> Result<WsMediaClient, String> {
        Self::open(
            http_port,
            &format!("name={}", super::percent_encode_all(name)),
        )
    }

    /// Reads at most `bytes` at a time with a `pause` after each read: a viewer on a link
    /// slower than the stream.
    pub fn throttle(&mut self, bytes: usize, pause: Duration) {
        self.throttle = Some((bytes.clamp(1, 65536), pause));
    }

    /// Reads what the socket has; false at end of stream.
    fn fill(&mut self) -> Result<bool, String> {
        let mut chunk = [0u8; 65536];
        let limit = match self.throttle {
            Some((bytes, pause)) => {
                std::thread::sleep(pause);
                bytes
            }
            None => chunk.len(),
        };
        match self.stream.read(&mut chunk[..limit]) {
            Ok(0) => {
                self.closed = true;
                Ok(false)
            }
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                Ok(true)
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                Ok(true)
            }
            Err(_) => {
                self.closed = true;
                Ok(false)
            }
        }
    }

    /// The next message, waiting at most `timeout`.
    pub fn next(&mut self, timeout: Duration) -> Option<WsMessage> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(message) = self.parse() {
                return Some(message);
            }
            if self.closed || Instant::now() > deadline {
                return None;
            }
            if !self.fill().unwrap_or(false) {
                return self.parse();
            }
        }
    }

    fn parse(&mut self) -> Option<WsMessage> {
        if self.buf.len() < 2 {
            return None;
        }
        let opcode = self.buf[0] & 0x0f;
        assert_eq!(self.buf[1] & 0x80, 0, "server frames must not be masked");
        let (len, offset) = match self.buf[1] & 0x7f {
            126 if self.buf.len() >= 4 => {
                (u16::from_be_bytes([self.buf[2], self.buf[3]]) as usize, 4)
            }
            127 if self.buf.len() >= 10 => {
                let mut b = [0u8; 8];
                b.copy_from_slice(&self.buf[2..10]);
                (u64::from_be_bytes(b) as usize, 10)
            }
            126 | 127 => return None,
            n => (n as usize, 2),
        };
        if self.buf.len() < offset + len {
            return None;
        }
        let payload: Vec<u8> = self.buf[offset..offset + len].to_vec();
        self.buf.drain(..offset + len);
        Some(match opcode {
            0x1 => WsMessage::Text(
                serde_json::from_slice(&payload)
                    .unwrap_or_else(|e| panic!("text message is not JSON ({e}): {payload:?}")),
            ),
            0x2 => WsMessage::Binary(payload),
            0x8 => {
                let code = payload
                    .get(..2)
                    .map_or(0, |c| u16::from_be_bytes([c[0], c[1]]));
                let reason =
                    String::from_utf8_lossy(payload.get(2..).unwrap_or_default()).to_string();
                self.closed = true;
                WsMessage::Close(code, reason)
            }
            0x9 => {
                self.send_frame(0xa, &payload);
                WsMessage::Ping
            }
            other => panic!("unexpected opcode {other}"),
        })
    }

    /// Sends one masked frame (clients must mask).
    pub fn send_frame(&mut self, opcode: u8, payload: &[u8]) {
        let _ = self.stream.write_all(&client_frame(opcode, payload));
    }

    pub fn send_raw(&mut self, bytes: &[u8]) {
        let _ = self.stream.write_all(bytes);
    }

    /// Reads for `duration` (or until the server closes), sorting what comes.
    pub fn receive(&mut self, duration: Duration) -> Received {
        let mut got = Received::default();
        self.receive_into(&mut got, duration);
        got
    }

    pub fn receive_into(&mut self, got: &mut Received, duration: Duration) {
        let started = Instant::now();
        let deadline = started + duration;
        // The binary message after an `init` text is the init segment.
        let mut init_next = false;
        while Instant::now() < deadline {
            match self.next(deadline.saturating_duration_since(Instant::now())) {
                Some(WsMessage::Text(v)) => match v["type"].as_str() {
                    Some("status") => got.statuses.push(v),
                    Some("init") => {
                        got.inits.push(v);
                        init_next = true;
                    }
                    _ => panic!("unexpected text message {v}"),
                },
                Some(WsMessage::Binary(data)) => {
                    if !std::mem::take(&mut init_next) {
                        got.fragments += 1;
                        got.first_fragment.get_or_insert_with(|| started.elapsed());
                    }
                    got.media.extend_from_slice(&data);
                }
                Some(WsMessage::Close(code, reason)) => {
                    got.close = Some((code, reason));
                    return;
                }
                Some(WsMessage::Ping) => {}
                None if self.closed => return,
                None => {}
            }
        }
    }
}

/// Decoded frames per codec that ffprobe finds in an fMP4 file.
#[derive(Debug)]
pub struct FrameCounts(pub Vec<(String, u64)>);

impl FrameCounts {
    /// Frames of `codec` (ffprobe's `codec_name`), 0 when there is no such stream.
    pub fn of(&self, codec: &str) -> u64 {
        self.0
            .iter()
            .find(|(c, _)| c == codec)
            .map_or(0, |(_, n)| *n)
    }
}

impl Received {
    /// Writes what came (init segments and fragments) to `dir/name`: an fMP4 file.
    pub fn save(&self, dir: &super::TempDir, name: &str) -> std::path::PathBuf {
        let file = dir.join(name);
        std::fs::write(&file, &self.media).expect("write the received media");
        file
    }
}

/// What ffprobe decodes of an fMP4 file, per codec.
pub fn probe_frame_counts(path: &std::path::Path) -> FrameCounts {
    let out = std::process::Command::new("ffprobe")
        .args(["-v", "error", "-count_frames", "-show_entries"])
        .arg("stream=codec_name,nb_read_frames")
        .args(["-of", "csv=p=0"])
        .arg(path)
        .output()
        .expect("ffprobe runs");
    FrameCounts(
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|line| {
                let (codec, count) = line.split_once(',')?;
                Some((codec.to_string(), count.trim().parse().ok()?))
            })
            .collect(),
    )
}

/// What ffmpeg reports decoding a file at its error level (empty: a clean decode).
pub fn decode_errors(path: &std::path::Path) -> String {
    let decode = std::process::Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(path)
        .args(["-f", "null", "-"])
        .output()
        .expect("ffmpeg runs");
    String::from_utf8_lossy(&decode.stderr).trim().to_string()
}

/// One final, masked client frame (RFC 6455: clients must mask) of up to 64 KiB.
pub fn client_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mask = [0x12u8, 0x34, 0x56, 0x78];
    let mut frame = vec![0x80 | opcode];
    match payload.len() {
        n @ 0..=125 => frame.push(0x80 | n as u8),
        n => {
            frame.push(0x80 | 126);
            frame.extend_from_slice(&(n as u16).to_be_bytes());
        }
    }
    frame.extend_from_slice(&mask);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    frame
}
