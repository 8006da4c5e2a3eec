//! H.264 over RTP (RFC 6184, packetization-mode 1) in both directions, between the AVCC access
//! units (NAL units behind big-endian length prefixes) the rest of the server carries and the RTP
//! payloads of WebRTC peers.
//!
//! - `packetize`, out to WebRTC viewers ([`packetize_h264`]): an access unit split into single
//!   NAL and FU-A payloads, made once per frame and shared by every viewer.
//! - `depacketize`, in from WebRTC publishers ([`H264Depacketizer`]): single NAL, STAP-A and FU-A
//!   payloads back into whole, decodable access units and a decoder configuration record.
//!
//! This module holds only what both directions share: the NAL unit types they look at and
//! `nal_type`. Each submodule's documentation states its own invariants.

mod depacketize;
mod packetize;

pub use depacketize::{AccessUnit, H264Depacketizer, MAX_ACCESS_UNIT_BYTES};
pub use packetize::{packetize_h264, H264Params, DEFAULT_MTU};

const NAL_IDR: u8 = 5;
const NAL_SPS: u8 = 7;
const NAL_PPS: u8 = 8;
const NAL_AUD: u8 = 9;
const NAL_FILLER: u8 = 12;
const NAL_STAP_A: u8 = 24;
const NAL_FU_A: u8 = 28;

/// The type of a NAL unit: the low five bits of its header byte, 0 for an empty one.
fn nal_type(nal: &[u8]) -> u8 {
    nal.first().map_or(0, |b| b & 0x1f)
}

/// Test data shared by the packetizer's and the depacketizer's tests.
#[cfg(test)]
mod fixtures {
    use bytes::Bytes;

    /// An AVCC access unit: each NAL unit behind a 4-byte big-endian length.
    pub fn avcc(nals: &[&[u8]]) -> Bytes {
        let mut out = Vec::new();
        for nal in nals {
            out.extend_from_slice(&(nal.len() as u32).to_be_bytes());
            out.extend_from_slice(nal);
        }
        Bytes::from(out)
    }

    /// SPS, PPS and the avcC record ffmpeg 6 (libx264, mp4 muxer) wrote for 640x360 constrained
    /// baseline level 3.0 and for 320x240 High (whose record carries chroma format and depths).
    pub const SPS_640X360: &[u8] = &[
        0x67, 0x42, 0xc0, 0x1e, 0xda, 0x02, 0x80, 0xbf, 0xe5, 0xc0, 0x44, 0x00, 0x00, 0x03, 0x00,
        0x04, 0x00, 0x00, 0x03, 0x00, 0xf2, 0x3c, 0x58, 0xba, 0x80,
    ];
    pub const PPS_640X360: &[u8] = &[0x68, 0xce, 0x0f, 0xc8];
    pub const RECORD_640X360: &[u8] = &[
        0x01, 0x42, 0xc0, 0x1e, 0xff, 0xe1, 0x00, 0x19, 0x67, 0x42, 0xc0, 0x1e, 0xda, 0x02, 0x80,
        0xbf, 0xe5, 0xc0, 0x44, 0x00, 0x00, 0x03, 0x00, 0x04, 0x00, 0x00, 0x03, 0x00, 0xf2, 0x3c,
        0x58, 0xba, 0x80, 0x01, 0x00, 0x04, 0x68, 0xce, 0x0f, 0xc8,
    ];
    pub const SPS_HIGH_320X240: &[u8] = &[
        0x67, 0x64, 0x00, 0x0d, 0xac, 0xd9, 0x41, 0x41, 0xfb, 0x01, 0x10, 0x00, 0x00, 0x03, 0x00,
        0x10, 0x00, 0x00, 0x03, 0x03, 0xc0, 0xf1, 0x42, 0x99, 0x60,
    ];
    pub const PPS_HIGH_320X240: &[u8] = &[0x68, 0xeb, 0xe3, 0xcb, 0x22, 0xc0];
    pub const RECORD_HIGH_320X240: &[u8] = &[
        0x01, 0x64, 0x00, 0x0d, 0xff, 0xe1, 0x00, 0x19, 0x67, 0x64, 0x00, 0x0d, 0xac, 0xd9, 0x41,
        0x41, 0xfb, 0x01, 0x10, 0x00, 0x00, 0x03, 0x00, 0x10, 0x00, 0x00, 0x03, 0x03, 0xc0, 0xf1,
        0x42, 0x99, 0x60, 0x01, 0x00, 0x06, 0x68, 0xeb, 0xe3, 0xcb, 0x22, 0xc0, 0xfd, 0xf8, 0xf8,
        0x00,
    ];
}
