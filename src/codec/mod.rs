//! Codec glue: FLV tag bodies to and from [`crate::media`] frames, and what can be learnt from
//! codec configurations (H.264 decoder configuration, AAC AudioSpecificConfig, AMF metadata),
//! and H.264 RTP payloads for WebRTC viewers; [`audio`] transcodes AAC to Opus for them.
//!
//! Invariant: parsing never copies a payload; frames are `Bytes` slices of what was received
//! (transcoded audio is new data, made once per stream).

pub mod aac;
pub mod amf;
pub mod audio;
pub mod avc;
pub mod flv;
pub mod fmp4;
pub mod rtp;
pub mod vp8;

use thiserror::Error;

/// A codec payload that cannot be understood. Carries what was wrong for the log line.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum CodecError {
    #[error("{what}: truncated ({len} bytes)")]
    Truncated { what: &'static str, len: usize },
    #[error("{what}: {reason}")]
    Invalid { what: &'static str, reason: String },
}
