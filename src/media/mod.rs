//! Media model shared by every protocol: stream names, codecs, frames and the packets a stream
//! fans out to its players.
//!
//! Invariants: a [`Frame`]'s payload is immutable and shared (`Bytes` inside an `Arc`); no player
//! ever copies it. Timestamps are microseconds on the publisher's clock; players rebase them.

mod gop;
mod lag;
mod name;
mod timeline;

pub use gop::GopCache;
pub use lag::{LagAction, LagTracker};
pub use name::{decode, split_query, QueryParams, StreamName};
pub use timeline::Timeline;

use bytes::Bytes;
use std::sync::{Arc, OnceLock};

/// Which kind of track a frame belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TrackKind {
    Video,
    Audio,
}

/// Codec of a frame's payload, which also fixes the payload's format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Codec {
    /// H.264; payload is AVCC: NAL units each prefixed with a 4-byte big-endian length.
    H264,
    /// VP8 (WebRTC publishers); payload is one VP8 frame. WebRTC only: FLV cannot carry it.
    Vp8,
    /// AAC; payload is one raw access unit (no ADTS header).
    Aac,
    /// G.711 A-law samples.
    Pcma,
    /// G.711 µ-law samples.
    Pcmu,
    /// Opus; payload is one Opus packet.
    Opus,
    /// A video codec only RTMP understands (Sorenson, VP6, enhanced RTMP...): the payload is the
    /// whole FLV video tag body, passed through to RTMP players untouched.
    FlvVideo(u8),
    /// An audio codec only RTMP understands: the whole FLV audio tag body.
    FlvAudio(u8),
}

impl Codec {
    pub fn track(self) -> TrackKind {
        match self {
            Codec::H264 | Codec::Vp8 | Codec::FlvVideo(_) => TrackKind::Video,
            Codec::Aac | Codec::Pcma | Codec::Pcmu | Codec::Opus | Codec::FlvAudio(_) => {
                TrackKind::Audio
            }
        }
    }

    /// Name used in REST answers and logs.
    pub fn name(self) -> String {
        match self {
            Codec::H264 => "H264".into(),
            Codec::Vp8 => "VP8".into(),
            Codec::Aac => "AAC".into(),
            Codec::Pcma => "PCMA".into(),
            Codec::Pcmu => "PCMU".into(),
            Codec::Opus => "OPUS".into(),
            Codec::FlvVideo(id) => format!("FLV_VIDEO_{id}"),
            Codec::FlvAudio(id) => format!("FLV_AUDIO_{id}"),
        }
    }
}

/// One access unit of one track, shared by every player of a stream.
#[derive(Clone, Debug, PartialEq)]
pub struct Frame {
    pub codec: Codec,
    /// Decode timestamp in microseconds (publisher clock).
    pub dts_us: i64,
    /// Presentation minus decode time in microseconds (B-frames make it positive).
    pub cts_us: i32,
    /// A frame a decoder can start from (IDR for H.264; every audio frame).
    pub keyframe: bool,
    pub payload: Bytes,
    /// RTP payloads of this frame, made by the first WebRTC viewer that sends it and reused by
    /// all the others (see [`crate::codec::rtp`]).
    pub rtp_payloads: OnceLock<Vec<Bytes>>,
}

impl Frame {
    pub fn new(codec: Codec, dts_us: i64, cts_us: i32, keyframe: bool, payload: Bytes) -> Frame {
        Frame {
            codec,
            dts_us,
            cts_us,
            keyframe,
            payload,
            rtp_payloads: OnceLock::new(),
        }
    }

    pub fn track(&self) -> TrackKind {
        self.codec.track()
    }

    /// Starting point for a new player: a video keyframe.
    pub fn is_video_keyframe(&self) -> bool {
        self.keyframe && self.track() == TrackKind::Video
    }
}

/// Decoder configuration of a track, sent to every player before any frame of that track and
/// again whenever it changes.
#[derive(Clone, Debug, PartialEq)]
pub struct TrackConfig {
    pub codec: Codec,
    /// AVCDecoderConfigurationRecord for H.264, AudioSpecificConfig for AAC.
    pub data: Bytes,
    /// Timestamp at which the configuration took effect (microseconds, publisher clock).
    pub dts_us: i64,
    pub info: TrackInfo,
}

/// What is known about a track from its configuration, for REST answers and other protocols.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TrackInfo {
    pub width: Option<u32>,
    pub height: Option<u32>,
    pub profile: Option<String>,
    pub level: Option<String>,
    pub sample_rate: Option<u32>,
    pub channels: Option<u8>,
}

/// Stream metadata (RTMP onMetaData): kept as the publisher's AMF0 values, passed on as they are.
#[derive(Clone, Debug, PartialEq)]
pub struct Metadata {
    /// The AMF0 encoding of `onMetaData` followed by its object (without `@setDataFrame`).
    pub amf0: Bytes,
}

/// What a stream fans out to its players, in order. Cheap to clone: everything heavy is an `Arc`.
#[derive(Clone, Debug)]
pub enum MediaPacket {
    Frame(Arc<Frame>),
    Config(Arc<TrackConfig>),
    Metadata(Arc<Metadata>),
    /// The publisher left; players stay attached for the grace time.
    Unpublished,
    /// A publisher (re)started: the epoch changes, timestamps may restart.
    Published {
        epoch: u32,
    },
}

impl MediaPacket {
    /// Bytes of media this packet carries, for queue accounting.
    pub fn payload_len(&self) -> usize {
        match self {
            MediaPacket::Frame(f) => f.payload.len(),
            MediaPacket::Config(c) => c.data.len(),
            MediaPacket::Metadata(m) => m.amf0.len(),
            MediaPacket::Unpublished | MediaPacket::Published { .. } => 0,
        }
    }
}
