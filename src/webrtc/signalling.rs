//! Messages of the WebSocket signalling protocol (`web/sdk/PROTOCOL.md`), parsed and written.
//!
//! Invariants: parsing never panics and tells apart the four ways a message can be wrong (not
//! JSON, no type, an unknown type, bad fields), so the client gets a precise error; every
//! server message serialises to one JSON object with a `type`.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Longest `streamId` a client may choose.
pub const MAX_STREAM_ID_LEN: usize = 64;

/// An ICE candidate as browsers write it (`RTCIceCandidateInit`).
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Candidate {
    pub candidate: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sdp_mid: Option<String>,
    #[serde(
        rename = "sdpMLineIndex",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub sdp_mline_index: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username_fragment: Option<String>,
}

/// What a client may send.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(
    tag = "type",
    rename_all = "lowercase",
    rename_all_fields = "camelCase"
)]
pub enum ClientMessage {
    Connect {
        #[serde(default)]
        app_key: Option<String>,
        #[serde(default)]
        token: Option<String>,
        #[serde(default)]
        custom: Option<Value>,
    },
    Play {
        stream_id: String,
        name: String,
        #[serde(default)]
        sdp: Option<String>,
        /// A token for this play (else the connect's).
        #[serde(default)]
        token: Option<String>,
    },
    /// Publish the client's media under `name`; `sdp` is its offer (sendonly tracks).
    Publish {
        stream_id: String,
        name: String,
        sdp: String,
        /// A token for this publish (else the connect's).
        #[serde(default)]
        token: Option<String>,
        /// Only one viewer may play the stream (the first admitted).
        #[serde(default)]
        private: bool,
    },
    Answer {
        stream_id: String,
        sdp: String,
    },
    Candidate {
        stream_id: String,
        /// `None` (JSON null): end of candidates.
        candidate: Option<Candidate>,
    },
    Stop {
        stream_id: String,
    },
    /// What the stream `name` is now (codecs, B-frames): lets a client choose its transport.
    Describe {
        name: String,
    },
    /// A message for the publisher of the stream this session plays as `stream_id` (a viewer
    /// asking its broadcaster for something); delivered when the publisher is a signalling
    /// client, as `message`.
    Send {
        stream_id: String,
        data: Value,
    },
    Ping,
    Disconnect,
}

const CLIENT_TYPES: &[&str] = &[
    "connect",
    "play",
    "publish",
    "answer",
    "candidate",
    "stop",
    "describe",
    "send",
    "ping",
    "disconnect",
];

/// Why a client message was refused; becomes an `error` message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProtocolError {
    pub code: &'static str,
    pub message: String,
    /// The message type or stream id the error is about.
    pub reference: Option<String>,
}

impl ProtocolError {
    pub fn new(code: &'static str, message: impl Into<String>, reference: Option<String>) -> Self {
        ProtocolError {
            code,
            message: message.into(),
            reference,
        }
    }

    pub fn to_message(&self) -> ServerMessage {
        ServerMessage::Error {
            code: self.code,
            message: self.message.clone(),
            reference: self.reference.clone(),
        }
    }
}

impl ClientMessage {
    /// Parses one text frame.
    pub fn parse(text: &str) -> Result<ClientMessage, ProtocolError> {
        let value: Value = serde_json::from_str(text)
            .map_err(|e| ProtocolError::new("bad_json", e.to_string(), None))?;
        let Some(kind) = value.get("type").and_then(Value::as_str) else {
            return Err(ProtocolError::new(
                "bad_request",
                "a message must be a JSON object with a string 'type'",
                None,
            ));
        };
        if !CLIENT_TYPES.contains(&kind) {
            let shown: String = kind.chars().take(64).collect();
            return Err(ProtocolError::new(
                "unknown_type",
                format!("unknown message type '{shown}'"),
                Some(shown),
            ));
        }
        let kind = kind.to_string();
        let message: ClientMessage = serde_json::from_value(value).map_err(|e| {
            ProtocolError::new("bad_request", format!("{kind}: {e}"), Some(kind.clone()))
        })?;
        message.check()?;
        Ok(message)
    }

    /// The stream this message is about, if any.
    pub fn stream_id(&self) -> Option<&str> {
        match self {
            ClientMessage::Play { stream_id, .. }
            | ClientMessage::Publish { stream_id, .. }
            | ClientMessage::Answer { stream_id, .. }
            | ClientMessage::Candidate { stream_id, .. }
            | ClientMessage::Stop { stream_id } => Some(stream_id),
            _ => None,
        }
    }

    fn check(&self) -> Result<(), ProtocolError> {
        if let Some(id) = self.stream_id() {
            if id.is_empty() || id.len() > MAX_STREAM_ID_LEN {
                return Err(ProtocolError::new(
                    "bad_request",
                    format!("'streamId' must be 1 to {MAX_STREAM_ID_LEN} characters"),
                    None,
                ));
            }
        }
        if let ClientMessage::Play {
            name, stream_id, ..
        }
        | ClientMessage::Publish {
            name, stream_id, ..
        } = self
        {
            if name.trim().is_empty() {
                return Err(ProtocolError::new(
                    "bad_request",
                    "'name' must not be empty",
                    Some(stream_id.clone()),
                ));
            }
        }
        if let ClientMessage::Describe { name } = self {
            if name.trim().is_empty() {
                return Err(ProtocolError::new(
                    "bad_request",
                    "'name' must not be empty",
                    Some("describe".into()),
                ));
            }
        }
        Ok(())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SessionStatus {
    Established,
    Disconnected,
    Failed,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum StreamStatus {
    Pending,
    Playing,
    Publishing,
    Unpublished,
    NotEnoughBandwidth,
    Stopped,
    Failed,
}

impl StreamStatus {
    /// After this status the stream id is free again.
    pub fn is_final(self) -> bool {
        matches!(self, StreamStatus::Stopped | StreamStatus::Failed)
    }
}

/// What the server sends.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(
    tag = "type",
    rename_all = "lowercase",
    rename_all_fields = "camelCase"
)]
pub enum ServerMessage {
    Session {
        status: SessionStatus,
        #[serde(skip_serializing_if = "Option::is_none")]
        session_id: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        server: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        keepalive_ms: Option<u64>,
        #[serde(skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    Status {
        stream_id: String,
        name: String,
        status: StreamStatus,
        #[serde(skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        info: Option<Value>,
    },
    Offer {
        stream_id: String,
        sdp: String,
    },
    Answer {
        stream_id: String,
        sdp: String,
    },
    Candidate {
        stream_id: String,
        candidate: Option<Candidate>,
    },
    /// Answer to `describe`: `status` is the stream's (`PUBLISHING`, `WAITING`, `UNPUBLISHED`)
    /// or `NOT_FOUND`; `video` and `audio` describe its tracks when it has them.
    Description {
        name: String,
        status: &'static str,
        #[serde(skip_serializing_if = "Option::is_none")]
        video: Option<Value>,
        #[serde(skip_serializing_if = "Option::is_none")]
        audio: Option<Value>,
    },
    Error {
        code: &'static str,
        message: String,
        #[serde(rename = "ref", skip_serializing_if = "Option::is_none")]
        reference: Option<String>,
    },
    Pong,
    /// A viewer's `send` to this publisher: `stream_id` is the publisher's own stream id,
    /// `from` the viewer's session id.
    Message {
        stream_id: String,
        from: String,
        data: Value,
    },
}

impl ServerMessage {
    pub fn to_json(&self) -> String {
        // Serialising these plain structs cannot fail: no maps with non-string keys, no floats
        // that JSON cannot hold.
        serde_json::to_string(self)
            .unwrap_or_else(|e| format!(r#"{{"type":"error","code":"internal","message":"{e}"}}"#))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_client_messages() {
        let m = ClientMessage::parse(r#"{"type":"connect","appKey":"live","custom":{"a":1}}"#)
            .expect("valid connect");
        assert!(matches!(m, ClientMessage::Connect { app_key: Some(ref k), .. } if k == "live"));
        let m =
            ClientMessage::parse(r#"{"type":"play","streamId":"v1","name":"test","sdp":"v=0"}"#)
                .expect("valid play");
        assert_eq!(m.stream_id(), Some("v1"));
        let m = ClientMessage::parse(r#"{"type":"candidate","streamId":"v1","candidate":null}"#)
            .expect("end of candidates");
        assert!(matches!(
            m,
            ClientMessage::Candidate {
                candidate: None,
                ..
            }
        ));
        let m = ClientMessage::parse(
            r#"{"type":"candidate","streamId":"v1","candidate":{"candidate":"candidate:1 1 udp 1 127.0.0.1 5 typ host","sdpMid":"0","sdpMLineIndex":0}}"#,
        )
        .expect("candidate");
        assert!(
            matches!(m, ClientMessage::Candidate { candidate: Some(ref c), .. } if c.sdp_mline_index == Some(0))
        );
    }

    #[test]
    fn tells_apart_the_ways_a_message_is_wrong() {
        let code = |text: &str| ClientMessage::parse(text).expect_err("must fail").code;
        assert_eq!(code("{not json"), "bad_json");
        assert_eq!(code("[1,2]"), "bad_request");
        assert_eq!(code(r#"{"type":5}"#), "bad_request");
        assert_eq!(code(r#"{"type":"dance"}"#), "unknown_type");
        assert_eq!(code(r#"{"type":"play","name":"x"}"#), "bad_request");
        assert_eq!(
            code(r#"{"type":"play","streamId":"","name":"x"}"#),
            "bad_request"
        );
        assert_eq!(
            code(r#"{"type":"play","streamId":"a","name":" "}"#),
            "bad_request"
        );
        let long = format!(r#"{{"type":"stop","streamId":"{}"}}"#, "x".repeat(65));
        assert_eq!(code(&long), "bad_request");
        let err = ClientMessage::parse(r#"{"type":"dance"}"#).expect_err("unknown");
        assert_eq!(err.reference.as_deref(), Some("dance"));
    }

    #[test]
    fn server_messages_are_camel_case_json() {
        let json = ServerMessage::Status {
            stream_id: "v1".into(),
            name: "live/test".into(),
            status: StreamStatus::NotEnoughBandwidth,
            reason: None,
            info: None,
        }
        .to_json();
        assert_eq!(
            json,
            r#"{"type":"status","streamId":"v1","name":"live/test","status":"NOT_ENOUGH_BANDWIDTH"}"#
        );
        let json = ProtocolError::new("unknown_stream", "no", Some("v9".into()))
            .to_message()
            .to_json();
        assert_eq!(
            json,
            r#"{"type":"error","code":"unknown_stream","message":"no","ref":"v9"}"#
        );
        let json = ServerMessage::Candidate {
            stream_id: "v1".into(),
            candidate: None,
        }
        .to_json();
        assert_eq!(
            json,
            r#"{"type":"candidate","streamId":"v1","candidate":null}"#
        );
    }
}
