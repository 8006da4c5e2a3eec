//! RTMP server session, sans IO: bytes in, events and reply bytes out.
//!
//! It runs the handshake (rml_rtmp), decodes chunks with bounds, answers the protocol-level
//! messages itself (acknowledgements, pings, createStream) and turns what needs a decision into
//! [`SessionEvent`]s: connect, publish, play, media, metadata, stream close. The owner answers
//! with `accept_*`/`reject_*` and [`status`]. Nothing here panics on peer input: every malformed
//! message is either ignored (when harmless) or a [`SessionError`] that closes the connection.

use super::chunk::{ChunkDecoder, ChunkEncoder, ChunkError, MessageHeader, RawMessage};
use super::out::OutQueue;
use super::{csid, message_type};
use crate::codec::amf;
use crate::media::{split_query, Metadata, QueryParams};
use bytes::Bytes;
use rml_amf0::Amf0Value;
use rml_rtmp::handshake::{Handshake, HandshakeProcessResult, PeerType};
use rml_rtmp::messages::{
    MessagePayload, PeerBandwidthLimitType, RtmpMessage, UserControlEventType,
};
use rml_rtmp::time::RtmpTimestamp;
use thiserror::Error;

/// Window acknowledgement size and peer bandwidth announced to clients.
const WINDOW_SIZE: u32 = 5_000_000;

#[derive(Debug, Error)]
pub enum SessionError {
    #[error("handshake failed: {0}")]
    Handshake(String),
    #[error("chunk stream: {0}")]
    Chunk(#[from] ChunkError),
    #[error("protocol: {0}")]
    Protocol(String),
}

/// What the peer asked for or sent, in order of arrival.
#[derive(Debug, Clone, PartialEq)]
pub enum SessionEvent {
    ConnectRequested {
        app: String,
        query: QueryParams,
        tc_url: Option<String>,
        transaction_id: f64,
    },
    PublishRequested {
        stream_id: u32,
        name: String,
        query: QueryParams,
        publish_type: String,
    },
    PlayRequested {
        stream_id: u32,
        name: String,
        query: QueryParams,
        start_ms: f64,
    },
    /// deleteStream / closeStream: whatever that message stream did (publish or play) ends.
    StreamClosed {
        stream_id: u32,
    },
    /// FCUnpublish: the publisher of `name` is done.
    Unpublish {
        name: String,
    },
    Video {
        stream_id: u32,
        timestamp: u32,
        body: Bytes,
    },
    Audio {
        stream_id: u32,
        timestamp: u32,
        body: Bytes,
    },
    Metadata {
        stream_id: u32,
        metadata: Metadata,
    },
    Pause {
        stream_id: u32,
        paused: bool,
        position_ms: f64,
    },
    Seek {
        stream_id: u32,
        position_ms: f64,
    },
}

pub struct ServerSession {
    handshake: Option<Handshake>,
    decoder: ChunkDecoder,
    encoder: ChunkEncoder,
    chunk_size: u32,
    connected: bool,
    /// A connect came in (its answer may wait for the application's decision): commands that
    /// follow it are decoded and queued by the owner, not refused.
    connect_requested: bool,
    next_stream_id: u32,
    bytes_received: u64,
    last_ack_at: u64,
    peer_window: Option<u32>,
}

impl ServerSession {
    /// `chunk_size` is announced after connect; messages above `max_message_bytes` are refused.
    pub fn new(chunk_size: u32, max_message_bytes: usize) -> Self {
        ServerSession {
            handshake: Some(Handshake::new(PeerType::Server)),
            decoder: ChunkDecoder::new(max_message_bytes),
            encoder: ChunkEncoder::default(),
            chunk_size,
            connected: false,
            connect_requested: false,
            next_stream_id: 1,
            bytes_received: 0,
            last_ack_at: 0,
            peer_window: None,
        }
    }

    /// The encoder in force for this connection (chunk size announced to the peer).
    pub fn encoder(&self) -> ChunkEncoder {
        self.encoder
    }

    pub fn is_connected(&self) -> bool {
        self.connected
    }

    pub fn handshake_done(&self) -> bool {
        self.handshake.is_none()
    }

    /// Feeds received bytes; replies go to `out`, decisions come back as events.
    pub fn handle_input(
        &mut self,
        data: &[u8],
        out: &mut OutQueue,
    ) -> Result<Vec<SessionEvent>, SessionError> {
        self.bytes_received += data.len() as u64;
        let mut events = Vec::new();
        if let Some(handshake) = self.handshake.as_mut() {
            let result = handshake
                .process_bytes(data)
                .map_err(|e| SessionError::Handshake(format!("{e:?}")))?;
            match result {
                HandshakeProcessResult::InProgress { response_bytes } => {
                    out.push(Bytes::from(response_bytes));
                    return Ok(events);
                }
                HandshakeProcessResult::Completed {
                    response_bytes,
                    remaining_bytes,
                } => {
                    out.push(Bytes::from(response_bytes));
                    self.handshake = None;
                    self.decoder.push(&remaining_bytes);
                }
            }
        } else {
            self.decoder.push(data);
        }
        while let Some(message) = self.decoder.next_message()? {
            self.handle_message(message, out, &mut events)?;
        }
        self.acknowledge(out)?;
        Ok(events)
    }

    fn acknowledge(&mut self, out: &mut OutQueue) -> Result<(), SessionError> {
        let Some(window) = self.peer_window else {
            return Ok(());
        };
        if self.bytes_received - self.last_ack_at >= u64::from(window) {
            self.last_ack_at = self.bytes_received;
            let sequence_number = (self.bytes_received & 0xffff_ffff) as u32;
            self.send(
                out,
                csid::CONTROL,
                0,
                RtmpMessage::Acknowledgement { sequence_number },
            )?;
        }
        Ok(())
    }

    fn handle_message(
        &mut self,
        message: RawMessage,
        out: &mut OutQueue,
        events: &mut Vec<SessionEvent>,
    ) -> Result<(), SessionError> {
        let stream_id = message.stream_id;
        match message.type_id {
            message_type::VIDEO => events.push(SessionEvent::Video {
                stream_id,
                timestamp: message.timestamp,
                body: message.payload,
            }),
            message_type::AUDIO => events.push(SessionEvent::Audio {
                stream_id,
                timestamp: message.timestamp,
                body: message.payload,
            }),
            message_type::DATA_AMF0 => self.handle_data(stream_id, &message.payload, events),
            message_type::DATA_AMF3 if !message.payload.is_empty() => {
                self.handle_data(stream_id, &message.payload.slice(1..), events)
            }
            message_type::COMMAND_AMF0 => {
                self.handle_command(stream_id, message.payload, out, events)?
            }
            message_type::COMMAND_AMF3 if !message.payload.is_empty() => {
                self.handle_command(stream_id, message.payload.slice(1..), out, events)?
            }
            message_type::AGGREGATE => {
                for sub in split_aggregate(&message)? {
                    self.handle_message(sub, out, events)?;
                }
            }
            message_type::ABORT if message.payload.len() >= 4 => {
                let p = &message.payload;
                self.decoder
                    .abort(u32::from_be_bytes([p[0], p[1], p[2], p[3]]));
            }
            _ => self.handle_control(message, out)?,
        }
        Ok(())
    }

    fn handle_control(
        &mut self,
        message: RawMessage,
        out: &mut OutQueue,
    ) -> Result<(), SessionError> {
        let payload = MessagePayload {
            timestamp: RtmpTimestamp::new(message.timestamp),
            type_id: message.type_id,
            message_stream_id: message.stream_id,
            data: message.payload,
        };
        let Ok(parsed) = payload.to_rtmp_message() else {
            // Malformed control messages of kinds we do not need are ignored, as other servers do.
            return Ok(());
        };
        match parsed {
            RtmpMessage::SetChunkSize { size } => self.decoder.set_chunk_size(size)?,
            RtmpMessage::WindowAcknowledgement { size } => {
                self.peer_window = (size > 0).then_some(size);
            }
            RtmpMessage::UserControl {
                event_type: UserControlEventType::PingRequest,
                timestamp,
                ..
            } => self.send(
                out,
                csid::CONTROL,
                0,
                RtmpMessage::UserControl {
                    event_type: UserControlEventType::PingResponse,
                    stream_id: None,
                    buffer_length: None,
                    timestamp,
                },
            )?,
            _ => {}
        }
        Ok(())
    }

    fn handle_data(&mut self, stream_id: u32, body: &Bytes, events: &mut Vec<SessionEvent>) {
        if let Some(metadata) = amf::metadata_from_data_message(body) {
            events.push(SessionEvent::Metadata {
                stream_id,
                metadata,
            });
        }
    }

    fn handle_command(
        &mut self,
        stream_id: u32,
        body: Bytes,
        out: &mut OutQueue,
        events: &mut Vec<SessionEvent>,
    ) -> Result<(), SessionError> {
        let values = amf::deserialize(&body)
            .map_err(|e| SessionError::Protocol(format!("undecodable command: {e}")))?;
        let mut values = values.into_iter();
        let Some(Amf0Value::Utf8String(name)) = values.next() else {
            return Err(SessionError::Protocol("command without a name".into()));
        };
        let transaction_id = match values.next() {
            Some(Amf0Value::Number(n)) => n,
            _ => 0.0,
        };
        let command_object = values.next().unwrap_or(Amf0Value::Null);
        let args: Vec<Amf0Value> = values.collect();
        let arg_string = |i: usize| match args.get(i) {
            Some(Amf0Value::Utf8String(s)) => Some(s.clone()),
            _ => None,
        };
        let arg_number = |i: usize| match args.get(i) {
            Some(Amf0Value::Number(n)) => Some(*n),
            _ => None,
        };

        if name != "connect" && !self.connect_requested {
            return Err(SessionError::Protocol(format!("'{name}' before connect")));
        }
        match name.as_str() {
            "connect" => {
                if self.connect_requested {
                    return Err(SessionError::Protocol("second connect".into()));
                }
                self.connect_requested = true;
                let props = match command_object {
                    Amf0Value::Object(props) => props,
                    _ => Default::default(),
                };
                let text = |key: &str| match props.get(key) {
                    Some(Amf0Value::Utf8String(s)) => Some(s.clone()),
                    _ => None,
                };
                let (app, query) = split_query(&text("app").unwrap_or_default());
                events.push(SessionEvent::ConnectRequested {
                    app: app.trim_matches('/').to_string(),
                    query,
                    tc_url: text("tcUrl"),
                    transaction_id,
                });
            }
            "createStream" => {
                let id = self.next_stream_id;
                self.next_stream_id += 1;
                self.command(
                    out,
                    0,
                    "_result",
                    transaction_id,
                    Amf0Value::Null,
                    vec![Amf0Value::Number(f64::from(id))],
                )?;
            }
            "publish" => {
                let raw = arg_string(0).unwrap_or_default();
                let (name, query) = split_query(&raw);
                events.push(SessionEvent::PublishRequested {
                    stream_id,
                    name,
                    query,
                    publish_type: arg_string(1).unwrap_or_else(|| "live".into()),
                });
            }
            "play" => {
                let raw = arg_string(0).unwrap_or_default();
                let (name, query) = split_query(&raw);
                events.push(SessionEvent::PlayRequested {
                    stream_id,
                    name,
                    query,
                    start_ms: arg_number(1).unwrap_or(-2.0),
                });
            }
            "deleteStream" => {
                let id = arg_number(0).map_or(stream_id, |n| n as u32);
                events.push(SessionEvent::StreamClosed { stream_id: id });
            }
            "closeStream" => events.push(SessionEvent::StreamClosed { stream_id }),
            "FCUnpublish" => {
                let (name, _) = split_query(&arg_string(0).unwrap_or_default());
                events.push(SessionEvent::Unpublish { name });
                self.reply_if_asked(out, transaction_id)?;
            }
            "releaseStream" | "FCPublish" => self.reply_if_asked(out, transaction_id)?,
            "pause" | "pauseRaw" => {
                let paused = matches!(args.first(), Some(Amf0Value::Boolean(true)));
                events.push(SessionEvent::Pause {
                    stream_id,
                    paused,
                    position_ms: arg_number(1).unwrap_or(0.0),
                });
            }
            "seek" => events.push(SessionEvent::Seek {
                stream_id,
                position_ms: arg_number(0).unwrap_or(0.0),
            }),
            // receiveAudio, receiveVideo, getStreamLength, _checkbw and friends need no answer here.
            _ => {}
        }
        Ok(())
    }

    fn reply_if_asked(
        &mut self,
        out: &mut OutQueue,
        transaction_id: f64,
    ) -> Result<(), SessionError> {
        if transaction_id > 0.0 {
            self.command(
                out,
                0,
                "_result",
                transaction_id,
                Amf0Value::Null,
                vec![Amf0Value::Undefined],
            )?;
        }
        Ok(())
    }

    /// Accepts a connect: window size, bandwidth, chunk size, then the `_result`.
    pub fn accept_connect(
        &mut self,
        out: &mut OutQueue,
        transaction_id: f64,
    ) -> Result<(), SessionError> {
        self.send(
            out,
            csid::CONTROL,
            0,
            RtmpMessage::WindowAcknowledgement { size: WINDOW_SIZE },
        )?;
        self.send(
            out,
            csid::CONTROL,
            0,
            RtmpMessage::SetPeerBandwidth {
                size: WINDOW_SIZE,
                limit_type: PeerBandwidthLimitType::Dynamic,
            },
        )?;
        self.send(
            out,
            csid::CONTROL,
            0,
            RtmpMessage::SetChunkSize {
                size: self.chunk_size,
            },
        )?;
        self.encoder = ChunkEncoder::new(self.chunk_size as usize);
        let properties = amf::object(&[
            ("fmsVer", amf::string("FMS/3,5,7,7009")),
            ("capabilities", Amf0Value::Number(31.0)),
        ]);
        let mut info = amf::status_object(
            "status",
            "NetConnection.Connect.Success",
            "Connection succeeded.",
        );
        if let Amf0Value::Object(props) = &mut info {
            props.insert("objectEncoding".into(), Amf0Value::Number(0.0));
        }
        self.command(out, 0, "_result", transaction_id, properties, vec![info])?;
        self.connected = true;
        Ok(())
    }

    /// Refuses a connect with `NetConnection.Connect.Rejected`; the owner then closes.
    pub fn reject_connect(
        &mut self,
        out: &mut OutQueue,
        transaction_id: f64,
        description: &str,
    ) -> Result<(), SessionError> {
        let info = amf::status_object("error", "NetConnection.Connect.Rejected", description);
        self.command(
            out,
            0,
            "_error",
            transaction_id,
            Amf0Value::Null,
            vec![info],
        )
    }

    /// Publish accepted: StreamBegin and `NetStream.Publish.Start`.
    pub fn accept_publish(
        &mut self,
        out: &mut OutQueue,
        stream_id: u32,
        name: &str,
    ) -> Result<(), SessionError> {
        self.stream_begin(out, stream_id)?;
        status(
            &self.encoder,
            out,
            stream_id,
            "status",
            "NetStream.Publish.Start",
            &format!("{name} is now published."),
        )
    }

    /// Play accepted: StreamBegin, `NetStream.Play.Reset`, `NetStream.Play.Start` and
    /// `|RtmpSampleAccess`. Media follows from the player's writer.
    pub fn accept_play(
        &mut self,
        out: &mut OutQueue,
        stream_id: u32,
        name: &str,
    ) -> Result<(), SessionError> {
        self.stream_begin(out, stream_id)?;
        status(
            &self.encoder,
            out,
            stream_id,
            "status",
            "NetStream.Play.Reset",
            &format!("Playing and resetting {name}."),
        )?;
        status(
            &self.encoder,
            out,
            stream_id,
            "status",
            "NetStream.Play.Start",
            &format!("Started playing {name}."),
        )?;
        let access = RtmpMessage::Amf0Data {
            values: vec![
                amf::string("|RtmpSampleAccess"),
                Amf0Value::Boolean(true),
                Amf0Value::Boolean(true),
            ],
        };
        self.send(out, csid::DATA, stream_id, access)
    }

    fn stream_begin(&mut self, out: &mut OutQueue, stream_id: u32) -> Result<(), SessionError> {
        self.send(
            out,
            csid::CONTROL,
            0,
            RtmpMessage::UserControl {
                event_type: UserControlEventType::StreamBegin,
                stream_id: Some(stream_id),
                buffer_length: None,
                timestamp: None,
            },
        )
    }

    fn command(
        &mut self,
        out: &mut OutQueue,
        stream_id: u32,
        name: &str,
        transaction_id: f64,
        command_object: Amf0Value,
        additional_arguments: Vec<Amf0Value>,
    ) -> Result<(), SessionError> {
        let message = RtmpMessage::Amf0Command {
            command_name: name.to_string(),
            transaction_id,
            command_object,
            additional_arguments,
        };
        self.send(out, csid::COMMAND, stream_id, message)
    }

    fn send(
        &self,
        out: &mut OutQueue,
        csid: u32,
        stream_id: u32,
        message: RtmpMessage,
    ) -> Result<(), SessionError> {
        send_message(&self.encoder, out, csid, stream_id, 0, message)
    }
}

/// Queues one rml_rtmp message with `encoder`.
pub fn send_message(
    encoder: &ChunkEncoder,
    out: &mut OutQueue,
    csid: u32,
    stream_id: u32,
    timestamp: u32,
    message: RtmpMessage,
) -> Result<(), SessionError> {
    let payload = message
        .into_message_payload(RtmpTimestamp::new(timestamp), stream_id)
        .map_err(|e| SessionError::Protocol(format!("cannot serialise reply: {e:?}")))?;
    let header = MessageHeader {
        csid,
        timestamp,
        type_id: payload.type_id,
        stream_id,
    };
    encoder.encode(out, header, &[], &payload.data);
    Ok(())
}

/// Queues an `onStatus` for a message stream (used by the session and by players' writers).
pub fn status(
    encoder: &ChunkEncoder,
    out: &mut OutQueue,
    stream_id: u32,
    level: &str,
    code: &str,
    description: &str,
) -> Result<(), SessionError> {
    let message = RtmpMessage::Amf0Command {
        command_name: "onStatus".into(),
        transaction_id: 0.0,
        command_object: Amf0Value::Null,
        additional_arguments: vec![amf::status_object(level, code, description)],
    };
    send_message(encoder, out, csid::COMMAND, stream_id, 0, message)
}

/// Queues the end of a recorded stream: the `onPlayStatus` data message with
/// `NetStream.Play.Complete` (what Flash's NetStream reports as the end of a file), then
/// `onStatus` `NetStream.Play.Stop`.
pub fn play_complete(
    encoder: &ChunkEncoder,
    out: &mut OutQueue,
    stream_id: u32,
    duration_ms: u64,
    bytes: u64,
) -> Result<(), SessionError> {
    let info = amf::object(&[
        ("level", amf::string("status")),
        ("code", amf::string("NetStream.Play.Complete")),
        ("duration", Amf0Value::Number(duration_ms as f64 / 1000.0)),
        ("bytes", Amf0Value::Number(bytes as f64)),
    ]);
    let message = RtmpMessage::Amf0Data {
        values: vec![amf::string("onPlayStatus"), info],
    };
    send_message(encoder, out, csid::DATA, stream_id, 0, message)?;
    status(
        encoder,
        out,
        stream_id,
        "status",
        "NetStream.Play.Stop",
        "Stopped playing: end of file.",
    )
}

/// Splits an aggregate message (a run of FLV tags) into its messages. Timestamps of the parts
/// are relative to the first part and rebased onto the aggregate's own timestamp.
fn split_aggregate(message: &RawMessage) -> Result<Vec<RawMessage>, SessionError> {
    let body = &message.payload;
    let mut parts = Vec::new();
    let mut pos = 0;
    let mut first_ts: Option<u32> = None;
    while pos + 11 <= body.len() {
        let h = &body[pos..pos + 11];
        let type_id = h[0];
        let size = (usize::from(h[1]) << 16) | (usize::from(h[2]) << 8) | usize::from(h[3]);
        let ts = (u32::from(h[7]) << 24)
            | (u32::from(h[4]) << 16)
            | (u32::from(h[5]) << 8)
            | u32::from(h[6]);
        let start = pos + 11;
        let end = start + size;
        if end > body.len() {
            return Err(SessionError::Protocol(
                "aggregate message part overruns the message".into(),
            ));
        }
        let base = *first_ts.get_or_insert(ts);
        parts.push(RawMessage {
            timestamp: message.timestamp.wrapping_add(ts.wrapping_sub(base)),
            type_id,
            stream_id: message.stream_id,
            payload: body.slice(start..end),
        });
        // Each tag is followed by its 4-byte PreviousTagSize.
        pos = end + 4;
    }
    Ok(parts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aggregate_parts_are_rebased() {
        let mut body = Vec::new();
        for (ts, data) in [(1000u32, [9u8, 1]), (1040, [9, 2])] {
            body.extend_from_slice(&[9, 0, 0, 2]);
            body.extend_from_slice(&[(ts >> 16) as u8, (ts >> 8) as u8, ts as u8, 0, 0, 0, 0]);
            body.extend_from_slice(&data);
            body.extend_from_slice(&[0, 0, 0, 13]);
        }
        let parts = split_aggregate(&RawMessage {
            timestamp: 5000,
            type_id: message_type::AGGREGATE,
            stream_id: 1,
            payload: Bytes::from(body),
        })
        .expect("valid aggregate");
        assert_eq!(parts.len(), 2);
        assert_eq!((parts[0].timestamp, parts[1].timestamp), (5000, 5040));
        assert_eq!(&parts[1].payload[..], &[9, 2]);
    }

    #[test]
    fn garbage_fails_the_handshake_without_panic() {
        let mut session = ServerSession::new(4096, 1 << 20);
        let mut out = OutQueue::new();
        let result = session.handle_input(&[0x42; 1600], &mut out);
        assert!(result.is_err(), "RTMP version byte 0x42 must be refused");
    }
}
