//! RTMP protocol state, sans IO: chunk decoding with bounds, zero-copy chunk encoding for media,
//! and the server session that answers connect/createStream/publish/play.
//!
//! rml_rtmp supplies the handshake and the message (de)serialisers; chunking is done here
//! because players must share frame payloads (no per-player copy) and the server must send
//! statuses rml_rtmp's session cannot (BadName, UnpublishNotify, StreamNotFound).

pub mod chunk;
pub mod out;
pub mod session;

pub use chunk::{ChunkDecoder, ChunkEncoder, ChunkError, MessageHeader, RawMessage};
pub use out::OutQueue;
pub use session::{ServerSession, SessionError, SessionEvent};

/// RTMP message type ids used here.
pub mod message_type {
    pub const SET_CHUNK_SIZE: u8 = 1;
    pub const ABORT: u8 = 2;
    pub const AUDIO: u8 = 8;
    pub const VIDEO: u8 = 9;
    pub const DATA_AMF3: u8 = 15;
    pub const COMMAND_AMF3: u8 = 17;
    pub const DATA_AMF0: u8 = 18;
    pub const COMMAND_AMF0: u8 = 20;
    pub const AGGREGATE: u8 = 22;
}

/// Chunk stream ids of outgoing messages. Every message goes out with a full (type 0) header,
/// so the choice only keeps kinds apart for readers of captures.
pub mod csid {
    pub const CONTROL: u32 = 2;
    pub const COMMAND: u32 = 3;
    pub const AUDIO: u32 = 4;
    pub const DATA: u32 = 5;
    pub const VIDEO: u32 = 6;
}
