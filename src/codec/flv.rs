//! FLV tag bodies (as carried in RTMP audio/video messages) to frames and configurations, and
//! the few header bytes that turn a frame back into a tag body for RTMP players.
//!
//! Invariants: the payload of a parsed frame is a slice of the received body (no copy); for
//! codecs only RTMP understands the whole body is kept so it passes through untouched.

use super::aac::AudioSpecificConfig;
use super::avc::AvcConfig;
use super::CodecError;
use crate::media::{Codec, Frame, TrackConfig, TrackInfo};
use bytes::Bytes;

const VIDEO_CODEC_AVC: u8 = 7;
const AUDIO_FORMAT_PCMA: u8 = 7;
const AUDIO_FORMAT_PCMU: u8 = 8;
const AUDIO_FORMAT_AAC: u8 = 10;
/// Enhanced RTMP: the high bit of a video tag's first byte announces a FourCC header.
const VIDEO_EX_HEADER: u8 = 0x80;

/// What one FLV audio or video tag body holds.
#[derive(Debug, PartialEq)]
pub enum Tag {
    Frame(Frame),
    Config(TrackConfig),
    /// Nothing a player needs (end of sequence, video info frames, empty bodies).
    Skip,
}

/// Parses a video tag body received at `dts_us`.
pub fn parse_video(body: Bytes, dts_us: i64) -> Result<Tag, CodecError> {
    let Some(&first) = body.first() else {
        return Ok(Tag::Skip);
    };
    let frame_type = (first >> 4) & 0x07;
    let keyframe = frame_type == 1;
    if first & VIDEO_EX_HEADER != 0 {
        // Enhanced RTMP: pass through; packet type 0 is the sequence start (a configuration).
        return Ok(if first & 0x0f == 0 {
            opaque_config(Codec::FlvVideo(first), body, dts_us)
        } else {
            opaque_frame(Codec::FlvVideo(first), body, dts_us, keyframe)
        });
    }
    if frame_type == 5 {
        return Ok(Tag::Skip);
    }
    let codec_id = first & 0x0f;
    if codec_id != VIDEO_CODEC_AVC {
        return Ok(opaque_frame(
            Codec::FlvVideo(codec_id),
            body,
            dts_us,
            keyframe,
        ));
    }
    if body.len() < 5 {
        return Err(CodecError::Truncated {
            what: "AVC video tag",
            len: body.len(),
        });
    }
    let cts_ms = i24(&body[2..5]);
    match body[1] {
        0 => {
            let data = body.slice(5..);
            let info = AvcConfig::parse(&data)?.track_info();
            Ok(Tag::Config(TrackConfig {
                codec: Codec::H264,
                data,
                dts_us,
                info,
            }))
        }
        1 => Ok(Tag::Frame(Frame::new(
            Codec::H264,
            dts_us,
            cts_ms.saturating_mul(1000),
            keyframe,
            body.slice(5..),
        ))),
        _ => Ok(Tag::Skip),
    }
}

/// Parses an audio tag body received at `dts_us`.
pub fn parse_audio(body: Bytes, dts_us: i64) -> Result<Tag, CodecError> {
    let Some(&first) = body.first() else {
        return Ok(Tag::Skip);
    };
    let format = first >> 4;
    let frame = |codec, payload| Tag::Frame(Frame::new(codec, dts_us, 0, true, payload));
    match format {
        AUDIO_FORMAT_AAC => {
            if body.len() < 2 {
                return Err(CodecError::Truncated {
                    what: "AAC audio tag",
                    len: body.len(),
                });
            }
            if body[1] == 0 {
                let data = body.slice(2..);
                let info = AudioSpecificConfig::parse(&data)?.track_info();
                Ok(Tag::Config(TrackConfig {
                    codec: Codec::Aac,
                    data,
                    dts_us,
                    info,
                }))
            } else {
                Ok(frame(Codec::Aac, body.slice(2..)))
            }
        }
        AUDIO_FORMAT_PCMA => Ok(frame(Codec::Pcma, body.slice(1..))),
        AUDIO_FORMAT_PCMU => Ok(frame(Codec::Pcmu, body.slice(1..))),
        _ => Ok(frame(Codec::FlvAudio(format), body)),
    }
}

fn opaque_frame(codec: Codec, body: Bytes, dts_us: i64, keyframe: bool) -> Tag {
    Tag::Frame(Frame::new(codec, dts_us, 0, keyframe, body))
}

fn opaque_config(codec: Codec, body: Bytes, dts_us: i64) -> Tag {
    Tag::Config(TrackConfig {
        codec,
        data: body,
        dts_us,
        info: TrackInfo::default(),
    })
}

fn i24(b: &[u8]) -> i32 {
    let raw = (i32::from(b[0]) << 16) | (i32::from(b[1]) << 8) | i32::from(b[2]);
    // Sign-extend from 24 bits.
    (raw << 8) >> 8
}

/// The bytes that precede a payload in an FLV tag body (at most 5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TagHeader {
    bytes: [u8; 5],
    len: u8,
}

impl TagHeader {
    fn new(prefix: &[u8]) -> Self {
        let mut bytes = [0u8; 5];
        bytes[..prefix.len()].copy_from_slice(prefix);
        TagHeader {
            bytes,
            len: prefix.len() as u8,
        }
    }

    pub fn as_slice(&self) -> &[u8] {
        &self.bytes[..self.len as usize]
    }
}

/// RTMP message type of a codec: 9 for video, 8 for audio.
pub fn message_type(codec: Codec) -> u8 {
    match codec.track() {
        crate::media::TrackKind::Video => 9,
        crate::media::TrackKind::Audio => 8,
    }
}

/// Header that turns a frame into an FLV tag body; `None` for codecs FLV cannot carry.
pub fn frame_header(frame: &Frame) -> Option<TagHeader> {
    match frame.codec {
        Codec::H264 => {
            let cts = (frame.cts_us / 1000).to_be_bytes();
            let kind = if frame.keyframe { 0x17 } else { 0x27 };
            Some(TagHeader::new(&[kind, 1, cts[1], cts[2], cts[3]]))
        }
        Codec::Aac => Some(TagHeader::new(&[0xaf, 1])),
        Codec::Pcma => Some(TagHeader::new(&[0x72])),
        Codec::Pcmu => Some(TagHeader::new(&[0x82])),
        Codec::FlvVideo(_) | Codec::FlvAudio(_) => Some(TagHeader::new(&[])),
        Codec::Opus | Codec::Vp8 => None,
    }
}

/// Whether FLV carries frames of this codec.
pub fn carries(codec: Codec) -> bool {
    !matches!(codec, Codec::Opus | Codec::Vp8)
}

/// Header that turns a configuration into an FLV sequence header; `None` when FLV has none.
pub fn config_header(config: &TrackConfig) -> Option<TagHeader> {
    match config.codec {
        Codec::H264 => Some(TagHeader::new(&[0x17, 0, 0, 0, 0])),
        Codec::Aac => Some(TagHeader::new(&[0xaf, 0])),
        Codec::FlvVideo(_) | Codec::FlvAudio(_) => Some(TagHeader::new(&[])),
        Codec::Pcma | Codec::Pcmu | Codec::Opus | Codec::Vp8 => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn avc_frame_round_trips_through_header() {
        let body = Bytes::from_static(&[0x27, 1, 0xff, 0xff, 0xd8, 0, 0, 0, 1, 0x41]);
        let Tag::Frame(frame) = parse_video(body.clone(), 40_000).expect("valid") else {
            panic!("expected a frame");
        };
        assert_eq!(frame.codec, Codec::H264);
        assert_eq!(frame.cts_us, -40_000);
        assert!(!frame.keyframe);
        assert_eq!(&frame.payload[..], &body[5..]);
        let header = frame_header(&frame).expect("H.264 fits FLV");
        let mut rebuilt = header.as_slice().to_vec();
        rebuilt.extend_from_slice(&frame.payload);
        assert_eq!(rebuilt, body.to_vec());
    }

    #[test]
    fn aac_config_and_frame() {
        let Tag::Config(config) =
            parse_audio(Bytes::from_static(&[0xaf, 0, 0x12, 0x10]), 0).expect("valid")
        else {
            panic!("expected config");
        };
        assert_eq!(config.info.sample_rate, Some(44100));
        assert_eq!(
            config_header(&config).map(|h| h.as_slice().to_vec()),
            Some(vec![0xaf, 0])
        );
        let Tag::Frame(frame) = parse_audio(Bytes::from_static(&[0xaf, 1, 9, 9]), 5).expect("ok")
        else {
            panic!("expected frame");
        };
        assert_eq!(
            (frame.codec, &frame.payload[..]),
            (Codec::Aac, &[9u8, 9][..])
        );
    }

    #[test]
    fn truncated_and_unknown_tags() {
        assert!(parse_video(Bytes::from_static(&[0x17, 1]), 0).is_err());
        assert!(parse_audio(Bytes::from_static(&[0xaf]), 0).is_err());
        assert_eq!(parse_video(Bytes::new(), 0), Ok(Tag::Skip));
        let Tag::Frame(vp6) = parse_video(Bytes::from_static(&[0x14, 1, 2]), 0).expect("ok") else {
            panic!("expected opaque frame");
        };
        assert_eq!(vp6.codec, Codec::FlvVideo(4));
        assert_eq!(frame_header(&vp6).map(|h| h.as_slice().len()), Some(0));
    }
}
