//! A scriptable RTMP player for the video-on-demand tests (`tests/vod.rs`), built on rml_rtmp's
//! handshake, chunk and message layers like [`crate::common::RtmpClient`], but keeping everything
//! a VOD test has to look at: every message with the instant it arrived, the full AMF0 values of
//! data messages (onMetaData, onPlayStatus) and whether their object was an ECMA array, each video
//! message's AVC packet type and composition time offset, and the level and description of every
//! onStatus. It can send the NetStream `pause` and `seek` commands on its play stream.
//!
//! Included by `tests/vod.rs` next to `mod common` (`#[path = "common/vod_client.rs"]`), so
//! `common/mod.rs` is left as it is. Every wait is bounded.
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use rml_rtmp::chunk_io::{ChunkDeserializer, ChunkSerializer};
use rml_rtmp::messages::{MessagePayload, RtmpMessage, UserControlEventType};
use rml_rtmp::rml_amf0::Amf0Value;
use rml_rtmp::time::RtmpTimestamp;

use crate::common::rtmp_handshake;

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

/// A message and when it was decoded.
#[derive(Debug, Clone)]
pub struct Received {
    pub msg: Msg,
    pub at: Instant,
}

pub struct VodClient {
    stream: TcpStream,
    ser: ChunkSerializer,
    de: ChunkDeserializer,
    closed: bool,
    results: Vec<(f64, String, Vec<Amf0Value>)>,
    next_tid: f64,
    bytes_in: u64,
    acked: u64,
    ack_window: Option<u32>,
    /// The message stream id of the play stream (from createStream).
    pub stream_id: u32,
    /// Everything received, in order.
    pub log: Vec<Received>,
    pub label: String,
}

fn amf_str(v: Option<&Amf0Value>) -> String {
    match v {
        Some(Amf0Value::Utf8String(s)) => s.clone(),
        _ => String::new(),
    }
}

/// A string property of an AMF0 object (or ECMA array, which rml_amf0 reads as an object).
pub fn prop_str(obj: &Amf0Value, key: &str) -> Option<String> {
    match obj {
        Amf0Value::Object(props) => match props.get(key) {
            Some(Amf0Value::Utf8String(s)) => Some(s.clone()),
            _ => None,
        },
        _ => None,
    }
}

/// A number property of an AMF0 object (or ECMA array).
pub fn prop_num(obj: &Amf0Value, key: &str) -> Option<f64> {
    match obj {
        Amf0Value::Object(props) => match props.get(key) {
            Some(Amf0Value::Number(n)) => Some(*n),
            _ => None,
        },
        _ => None,
    }
}

/// A boolean property of an AMF0 object (or ECMA array).
pub fn prop_bool(obj: &Amf0Value, key: &str) -> Option<bool> {
    match obj {
        Amf0Value::Object(props) => match props.get(key) {
            Some(Amf0Value::Boolean(b)) => Some(*b),
            _ => None,
        },
        _ => None,
    }
}

/// The AMF0 type marker of the value that follows the data message's name (and the
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

impl VodClient {
    /// Handshake, chunk size 4096, `connect` to `app`; Ok once the server answered `_result`
    /// with `NetConnection.Connect.Success`.
    pub fn connect(port: u16, app: &str, label: &str) -> Result<VodClient, String> {
        let (stream, rest) = rtmp_handshake(port, Duration::from_secs(5))?;
        let mut c = VodClient {
            stream,
            ser: ChunkSerializer::new(),
            de: ChunkDeserializer::new(),
            closed: false,
            results: Vec::new(),
            next_tid: 0.0,
            bytes_in: 0,
            acked: 0,
            ack_window: None,
            stream_id: 0,
            log: Vec::new(),
            label: label.to_string(),
        };
        if !rest.is_empty() {
            c.feed(&rest)?;
        }
        let packet = c
            .ser
            .set_max_chunk_size(4096, RtmpTimestamp::new(0))
            .map_err(|e| format!("{e:?}"))?;
        c.write(&packet.bytes)?;
        let mut props = HashMap::new();
        props.insert("app".to_string(), Amf0Value::Utf8String(app.to_string()));
        props.insert(
            "flashVer".to_string(),
            Amf0Value::Utf8String("LNX 9,0,124,2".into()),
        );
        props.insert(
            "tcUrl".to_string(),
            Amf0Value::Utf8String(format!("rtmp://127.0.0.1:{port}/{app}")),
        );
        props.insert("fpad".to_string(), Amf0Value::Boolean(false));
        props.insert("capabilities".to_string(), Amf0Value::Number(15.0));
        props.insert("audioCodecs".to_string(), Amf0Value::Number(4071.0));
        props.insert("videoCodecs".to_string(), Amf0Value::Number(252.0));
        props.insert("videoFunction".to_string(), Amf0Value::Number(1.0));
        props.insert("objectEncoding".to_string(), Amf0Value::Number(0.0));
        let tid = c.command_tid("connect", Amf0Value::Object(props), vec![], 0)?;
        let args = c.wait_result(tid, Duration::from_secs(5))?;
        let code = args
            .first()
            .and_then(|a| prop_str(a, "code"))
            .unwrap_or_default();
        if code != "NetConnection.Connect.Success" {
            return Err(format!("connect answered with code {code:?}"));
        }
        Ok(c)
    }

    /// Connect to `app`, then `createStream`, a 1 s buffer length and `play(name)`.
    pub fn player(port: u16, app: &str, name: &str, label: &str) -> Result<VodClient, String> {
        let mut c = VodClient::connect(port, app, label)?;
        c.play(name)?;
        Ok(c)
    }

    /// `createStream`, `SetBufferLength` 1000 ms, `play(name, -2)`. The answers arrive in `log`.
    pub fn play(&mut self, name: &str) -> Result<(), String> {
        let tid = self.command_tid("createStream", Amf0Value::Null, vec![], 0)?;
        let args = self.wait_result(tid, Duration::from_secs(5))?;
        self.stream_id = match args.first() {
            Some(Amf0Value::Number(n)) => *n as u32,
            other => {
                return Err(format!(
                    "createStream answered without a stream id: {other:?}"
                ))
            }
        };
        self.send(
            RtmpMessage::UserControl {
                event_type: UserControlEventType::SetBufferLength,
                stream_id: Some(self.stream_id),
                buffer_length: Some(1000),
                timestamp: None,
            },
            0,
        )?;
        self.command0(
            "play",
            vec![
                Amf0Value::Utf8String(name.to_string()),
                Amf0Value::Number(-2.0),
            ],
        )
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
        let msg = RtmpMessage::Amf0Command {
            command_name: name.to_string(),
            transaction_id: 0.0,
            command_object: Amf0Value::Null,
            additional_arguments: args,
        };
        let sid = self.stream_id;
        self.send(msg, sid)
    }

    fn command_tid(
        &mut self,
        name: &str,
        object: Amf0Value,
        args: Vec<Amf0Value>,
        stream_id: u32,
    ) -> Result<f64, String> {
        self.next_tid += 1.0;
        let tid = self.next_tid;
        let msg = RtmpMessage::Amf0Command {
            command_name: name.to_string(),
            transaction_id: tid,
            command_object: object,
            additional_arguments: args,
        };
        self.send(msg, stream_id)?;
        Ok(tid)
    }

    fn send(&mut self, msg: RtmpMessage, stream_id: u32) -> Result<(), String> {
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

    fn wait_result(&mut self, tid: f64, timeout: Duration) -> Result<Vec<Amf0Value>, String> {
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
                return Err(format!(
                    "server closed the connection; saw {}",
                    self.describe(0)
                ));
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "no answer to transaction {tid}; saw {}",
                    self.describe(0)
                ));
            }
            self.pump(Duration::from_millis(100))?;
        }
    }

    /// Reads what the socket has (waiting at most `wait`) and decodes it into `log`.
    pub fn pump(&mut self, wait: Duration) -> Result<(), String> {
        if self.closed {
            return Ok(());
        }
        let wait = wait.max(Duration::from_millis(1));
        self.stream.set_read_timeout(Some(wait)).ok();
        let mut buf = vec![0u8; 65536];
        match self.stream.read(&mut buf) {
            Ok(0) => {
                self.mark_closed();
                Ok(())
            }
            Ok(n) => self.feed(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => Ok(()),
            Err(_) => {
                self.mark_closed();
                Ok(())
            }
        }
    }

    fn mark_closed(&mut self) {
        if !self.closed {
            self.closed = true;
            self.push(Msg::Closed);
        }
    }

    fn push(&mut self, msg: Msg) {
        self.log.push(Received {
            msg,
            at: Instant::now(),
        });
    }

    fn feed(&mut self, bytes: &[u8]) -> Result<(), String> {
        self.bytes_in += bytes.len() as u64;
        let mut input = bytes;
        loop {
            let payload: MessagePayload = match self.de.get_next_message(input) {
                Ok(Some(p)) => p,
                Ok(None) => break,
                Err(e) => return Err(format!("cannot parse the server's RTMP chunks: {e:?}")),
            };
            input = &[];
            self.on_payload(payload)?;
        }
        if let Some(window) = self.ack_window {
            if window > 0 && self.bytes_in - self.acked >= window as u64 / 2 {
                self.acked = self.bytes_in;
                self.send(
                    RtmpMessage::Acknowledgement {
                        sequence_number: self.bytes_in as u32,
                    },
                    0,
                )?;
            }
        }
        Ok(())
    }

    fn on_payload(&mut self, payload: MessagePayload) -> Result<(), String> {
        let ts = payload.timestamp.value;
        match payload.type_id {
            8 => {
                let d = &payload.data;
                let b0 = d.first().copied().unwrap_or(0);
                self.push(Msg::Audio {
                    ts,
                    codec_id: b0 >> 4,
                    aac_type: d.get(1).copied().unwrap_or(0xff),
                    len: d.len(),
                });
                return Ok(());
            }
            9 => {
                let d = &payload.data;
                let b0 = d.first().copied().unwrap_or(0);
                let cts = if d.len() >= 5 {
                    let raw = ((d[2] as u32) << 16) | ((d[3] as u32) << 8) | d[4] as u32;
                    ((raw << 8) as i32) >> 8
                } else {
                    0
                };
                self.push(Msg::Video {
                    ts,
                    keyframe: b0 >> 4 == 1,
                    codec_id: b0 & 0x0f,
                    avc_type: d.get(1).copied().unwrap_or(0xff),
                    cts,
                    len: d.len(),
                });
                return Ok(());
            }
            _ => {}
        }
        let ecma = if payload.type_id == 18 {
            first_value_marker(&payload.data) == Some(0x08)
        } else {
            false
        };
        let msg = match payload.to_rtmp_message() {
            Ok(m) => m,
            Err(_) => return Ok(()),
        };
        match msg {
            RtmpMessage::SetChunkSize { size } => {
                self.de
                    .set_max_chunk_size(size as usize)
                    .map_err(|e| format!("{e:?}"))?;
            }
            RtmpMessage::WindowAcknowledgement { size } => self.ack_window = Some(size),
            RtmpMessage::UserControl {
                event_type,
                timestamp,
                ..
            } => {
                if event_type == UserControlEventType::PingRequest {
                    self.send(
                        RtmpMessage::UserControl {
                            event_type: UserControlEventType::PingResponse,
                            stream_id: None,
                            buffer_length: None,
                            timestamp,
                        },
                        0,
                    )?;
                }
                self.push(Msg::UserControl {
                    kind: format!("{event_type:?}"),
                });
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
                    self.push(Msg::Status {
                        code: prop_str(&info, "code").unwrap_or_default(),
                        level: prop_str(&info, "level").unwrap_or_default(),
                        description: prop_str(&info, "description").unwrap_or_default(),
                    });
                } else if (command_name == "_result" || command_name == "_error")
                    && transaction_id != 0.0
                {
                    self.results
                        .push((transaction_id, command_name, additional_arguments));
                } else {
                    self.push(Msg::Command { name: command_name });
                }
            }
            RtmpMessage::Amf0Data { mut values } => {
                let mut name = amf_str(values.first());
                if !values.is_empty() {
                    values.remove(0);
                }
                if name == "@setDataFrame" {
                    name = amf_str(values.first());
                    if !values.is_empty() {
                        values.remove(0);
                    }
                }
                self.push(Msg::Data {
                    name,
                    values,
                    ecma_array: ecma,
                });
            }
            _ => {}
        }
        Ok(())
    }

    pub fn is_closed(&self) -> bool {
        self.closed
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
            if self.closed {
                return None;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            if let Err(e) = self.pump(left.min(Duration::from_millis(100))) {
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
            if left.is_zero() || self.closed {
                return;
            }
            if let Err(e) = self.pump(left.min(Duration::from_millis(100))) {
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
    let mut out: Vec<String> = Vec::new();
    // (video, audio, first ts, last ts)
    let mut run: Option<(u64, u64, u32, u32)> = None;
    let flush = |run: &mut Option<(u64, u64, u32, u32)>, out: &mut Vec<String>| {
        if let Some((v, a, t0, t1)) = run.take() {
            out.push(format!("[{v} video + {a} audio, ts {t0}..{t1}]"));
        }
    };
    for r in log {
        match &r.msg {
            m if m.is_media_frame() => {
                let ts = m.ts().unwrap_or(0);
                let e = run.get_or_insert((0, 0, ts, ts));
                if m.is_video_frame() {
                    e.0 += 1;
                } else {
                    e.1 += 1;
                }
                e.3 = ts;
            }
            Msg::Video {
                ts,
                avc_type,
                keyframe,
                ..
            } => {
                flush(&mut run, &mut out);
                out.push(format!("video(avc_type {avc_type}, key {keyframe}) @{ts}"));
            }
            Msg::Audio { ts, aac_type, .. } => {
                flush(&mut run, &mut out);
                out.push(format!("audio(aac_type {aac_type}) @{ts}"));
            }
            Msg::Status {
                code,
                level,
                description,
            } => {
                flush(&mut run, &mut out);
                out.push(format!("onStatus {code} ({level}: {description})"));
            }
            Msg::Data {
                name,
                values,
                ecma_array,
            } => {
                flush(&mut run, &mut out);
                let first = values.first().map(|v| format!("{v:?}")).unwrap_or_default();
                let first: String = first.chars().take(600).collect();
                out.push(format!("data {name} (ecma {ecma_array}) {first}"));
            }
            other => {
                flush(&mut run, &mut out);
                out.push(format!("{other:?}"));
            }
        }
    }
    flush(&mut run, &mut out);
    out.join(", ")
}
