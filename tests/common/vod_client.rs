//! A scriptable RTMP player for the video-on-demand tests (`tests/vod.rs`), on the same connection
//! as [`crate::common::RtmpClient`] ([`RtmpConn`]), but keeping everything a VOD test has to look
//! at: every message with the instant it arrived, the full AMF0 values of
//! data messages (onMetaData, onPlayStatus) and whether their object was an ECMA array, each video
//! message's AVC packet type and composition time offset, and the level and description of every
//! onStatus. It can send the NetStream `pause` and `seek` commands on its play stream.
//!
//! Included by `tests/vod.rs` next to `mod common` (`#[path = "common/vod_client.rs"]`), so the
//! other tests do not build it. Every wait is bounded.
#![allow(dead_code)]

use std::time::{Duration, Instant};

use rml_rtmp::rml_amf0::Amf0Value;

use crate::common::{ClientStyle, Condensed, Inbox, Incoming, RtmpConn};

/// One message from the server, decoded.
#[derive(Debug, Clone, PartialEq)]
pub enum Msg {
    /// `onStatus` with its info object's code, level and description.
    Status {
        code: String,
        level: String,
        description: String,
    },
    /// An AMF0 data message: its name (after `@setDataFrame` if present), the values after the
    /// name, and whether the first of them was sent as an ECMA array (marker 0x08).
    Data {
        name: String,
        values: Vec<Amf0Value>,
        ecma_array: bool,
    },
    /// Any other AMF0 command (`_result` of a transaction nobody waits for, `onBWDone`, ...).
    Command {
        name: String,
    },
    /// A video message. `avc_type` is the AVCPacketType (0 sequence header, 1 NALUs, 2 end of
    /// sequence); `cts` the composition time offset in ms.
    Video {
        ts: u32,
        keyframe: bool,
        codec_id: u8,
        avc_type: u8,
        cts: i32,
        len: usize,
    },
    /// An audio message; `aac_type` is the AACPacketType (0 sequence header, 1 raw).
    Audio {
        ts: u32,
        codec_id: u8,
        aac_type: u8,
        len: usize,
    },
    UserControl {
        kind: String,
    },
    /// The server closed the connection (or reset it).
    Closed,
}

impl Msg {
    pub fn is_status(&self, wanted: &str) -> bool {
        matches!(self, Msg::Status { code, .. } if code == wanted)
    }
    /// An onStatus of level `error`.
    pub fn is_error(&self) -> bool {
        matches!(self, Msg::Status { level, .. } if level == "error")
    }
    pub fn is_data(&self, wanted: &str) -> bool {
        matches!(self, Msg::Data { name, .. } if name == wanted)
    }
    /// A video message carrying a coded frame (not a sequence header or end of sequence).
    pub fn is_video_frame(&self) -> bool {
        matches!(self, Msg::Video { avc_type: 1, .. })
    }
    /// An audio message carrying a coded frame (not the AAC sequence header).
    pub fn is_audio_frame(&self) -> bool {
        matches!(self, Msg::Audio { aac_type, .. } if *aac_type != 0)
    }
    pub fn is_media(&self) -> bool {
        matches!(self, Msg::Video { .. } | Msg::Audio { .. })
    }
    pub fn is_media_frame(&self) -> bool {
        self.is_video_frame() || self.is_audio_frame()
    }
    pub fn is_video_header(&self) -> bool {
        matches!(self, Msg::Video { avc_type: 0, .. })
    }
    pub fn is_audio_header(&self) -> bool {
        matches!(self, Msg::Audio { aac_type: 0, .. })
    }
    pub fn ts(&self) -> Option<u32> {
        match self {
            Msg::Video { ts, .. } | Msg::Audio { ts, .. } => Some(*ts),
            _ => None,
        }
    }
}

impl From<Incoming> for Msg {
    fn from(msg: Incoming) -> Msg {
        match msg {
            Incoming::Status {
                code,
                level,
                description,
            } => Msg::Status {
                code,
                level,
                description,
            },
            Incoming::Data {
                name,
                values,
                ecma_array,
            } => Msg::Data {
                name,
                values,
                ecma_array,
            },
            Incoming::Command { name, .. } => Msg::Command { name },
            Incoming::Video {
                timestamp: ts,
                data: d,
            } => {
                let b0 = d.first().copied().unwrap_or(0);
                let cts = if d.len() >= 5 {
                    let raw = ((d[2] as u32) << 16) | ((d[3] as u32) << 8) | d[4] as u32;
                    ((raw << 8) as i32) >> 8
                } else {
                    0
                };
                Msg::Video {
                    ts,
                    keyframe: b0 >> 4 == 1,
                    codec_id: b0 & 0x0f,
                    avc_type: d.get(1).copied().unwrap_or(0xff),
                    cts,
                    len: d.len(),
                }
            }
            Incoming::Audio {
                timestamp: ts,
                data: d,
            } => Msg::Audio {
                ts,
                codec_id: d.first().copied().unwrap_or(0) >> 4,
                aac_type: d.get(1).copied().unwrap_or(0xff),
                len: d.len(),
            },
            Incoming::UserControl { kind } => Msg::UserControl { kind },
            Incoming::Closed => Msg::Closed,
        }
    }
}

/// A message and when it was decoded.
#[derive(Debug, Clone)]
pub struct Received {
    pub msg: Msg,
    pub at: Instant,
}

/// The log of a [`VodClient`]: every message, stamped when it was decoded.
impl Inbox for Vec<Received> {
    fn put(&mut self, msg: Incoming) {
        self.push(Received {
            msg: msg.into(),
            at: Instant::now(),
        });
    }

    fn seen(&self) -> String {
        format!("saw {}", describe_msgs(self))
    }
}

/// How long a [`VodClient`] read waits at most.
const POLL: Duration = Duration::from_millis(100);

pub struct VodClient {
    conn: RtmpConn,
    /// Everything received, in order.
    pub log: Vec<Received>,
    pub label: String,
}

impl VodClient {
    /// Handshake, chunk size 4096, `connect` to `app` (as a Flash player); Ok once the server
    /// answered `_result` with `NetConnection.Connect.Success`.
    pub fn connect(port: u16, app: &str, label: &str) -> Result<VodClient, String> {
        let number = Amf0Value::Number;
        let style = ClientStyle {
            connect_props: vec![
                ("flashVer", Amf0Value::Utf8String("LNX 9,0,124,2".into())),
                ("fpad", Amf0Value::Boolean(false)),
                ("capabilities", number(15.0)),
                ("audioCodecs", number(4071.0)),
                ("videoCodecs", number(252.0)),
                ("videoFunction", number(1.0)),
            ],
            ack_divisor: 2,
            poll: POLL,
        };
        let mut log = Vec::new();
        let conn = RtmpConn::connect(port, app, style, &mut log)?;
        Ok(VodClient {
            conn,
            log,
            label: label.to_string(),
        })
    }

    /// Connect to `app`, then `createStream`, a 1 s buffer length and `play(name)`.
    pub fn player(port: u16, app: &str, name: &str, label: &str) -> Result<VodClient, String> {
        let mut c = VodClient::connect(port, app, label)?;
        c.play(name)?;
        Ok(c)
    }

    /// `createStream`, `SetBufferLength` 1000 ms, `play(name, -2)`. The answers arrive in `log`.
    pub fn play(&mut self, name: &str) -> Result<(), String> {
        self.conn.play(name, &mut self.log)
    }

    /// NetStream `pause` (transaction 0, null, pause flag, position in ms) on the play stream.
    pub fn pause(&mut self, pause: bool, position_ms: u32) -> Result<(), String> {
        self.command0(
            "pause",
            vec![
                Amf0Value::Boolean(pause),
                Amf0Value::Number(position_ms as f64),
            ],
        )
    }

    /// NetStream `seek` (transaction 0, null, position in ms) on the play stream.
    pub fn seek(&mut self, position_ms: u32) -> Result<(), String> {
        self.command0("seek", vec![Amf0Value::Number(position_ms as f64)])
    }

    /// An AMF0 command with transaction id 0 and a null command object on the play stream.
    pub fn command0(&mut self, name: &str, args: Vec<Amf0Value>) -> Result<(), String> {
        let sid = self.conn.stream_id;
        self.conn
            .command(name, Amf0Value::Null, args, sid, false)
            .map(|_| ())
    }

    /// Reads what the socket has (waiting at most `wait`) and decodes it into `log`.
    pub fn pump(&mut self, wait: Duration) -> Result<(), String> {
        self.conn.read(wait, &mut self.log)
    }

    pub fn is_closed(&self) -> bool {
        self.conn.is_closed()
    }

    /// Index (in `log`) of the first message at or after `from` matching `pred`, reading until
    /// `timeout`. None on timeout or when the connection closed without a match.
    pub fn wait_from(
        &mut self,
        from: usize,
        timeout: Duration,
        pred: impl Fn(&Msg) -> bool,
    ) -> Option<usize> {
        let deadline = Instant::now() + timeout;
        let mut scanned = from;
        loop {
            while scanned < self.log.len() {
                if pred(&self.log[scanned].msg) {
                    return Some(scanned);
                }
                scanned += 1;
            }
            if self.conn.is_closed() {
                return None;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            if let Err(e) = self.pump(left.min(POLL)) {
                panic!("{}: {e}; saw {}", self.label, self.describe(0));
            }
        }
    }

    /// Index of the first onStatus with this code at or after `from`.
    pub fn wait_status(&mut self, from: usize, code: &str, timeout: Duration) -> Option<usize> {
        self.wait_from(from, timeout, |m| m.is_status(code))
    }

    /// Reads (recording everything) for `duration`, or until the connection closes.
    pub fn read_for(&mut self, duration: Duration) {
        let deadline = Instant::now() + duration;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || self.conn.is_closed() {
                return;
            }
            if let Err(e) = self.pump(left.min(POLL)) {
                panic!("{}: {e}; saw {}", self.label, self.describe(0));
            }
        }
    }

    /// The video frames (not headers) in `log[from..to]`: (index, timestamp, keyframe, cts).
    pub fn video_frames(&self, from: usize, to: usize) -> Vec<(usize, u32, bool, i32)> {
        self.log[from..to.min(self.log.len())]
            .iter()
            .enumerate()
            .filter_map(|(i, r)| match r.msg {
                Msg::Video {
                    ts,
                    keyframe,
                    avc_type: 1,
                    cts,
                    ..
                } => Some((from + i, ts, keyframe, cts)),
                _ => None,
            })
            .collect()
    }

    /// The audio frames (not headers) in `log[from..to]`: (index, timestamp).
    pub fn audio_frames(&self, from: usize, to: usize) -> Vec<(usize, u32)> {
        self.log[from..to.min(self.log.len())]
            .iter()
            .enumerate()
            .filter(|(_, r)| r.msg.is_audio_frame())
            .map(|(i, r)| (from + i, r.msg.ts().unwrap_or(0)))
            .collect()
    }

    /// A short description of `log[from..]`: non-media messages in full (data messages by name
    /// and first value), runs of media condensed to counts and timestamp ranges.
    pub fn describe(&self, from: usize) -> String {
        describe_msgs(self.log.get(from..).unwrap_or(&[]))
    }
}

pub fn describe_msgs(log: &[Received]) -> String {
    let mut text = Condensed::new("");
    for r in log {
        let m = &r.msg;
        if m.is_media_frame() {
            text.frame(m.is_video_frame(), m.ts().unwrap_or(0));
            continue;
        }
        text.other(match m {
            Msg::Video {
                ts,
                avc_type,
                keyframe,
                ..
            } => format!("video(avc_type {avc_type}, key {keyframe}) @{ts}"),
            Msg::Audio { ts, aac_type, .. } => format!("audio(aac_type {aac_type}) @{ts}"),
            Msg::Status {
                code,
                level,
                description,
            } => format!("onStatus {code} ({level}: {description})"),
            Msg::Data {
                name,
                values,
                ecma_array,
            } => {
                let first = values.first().map(|v| format!("{v:?}")).unwrap_or_default();
                let first: String = first.chars().take(600).collect();
                format!("data {name} (ecma {ecma_array}) {first}")
            }
            other => format!("{other:?}"),
        });
    }
    text.finish()
}
