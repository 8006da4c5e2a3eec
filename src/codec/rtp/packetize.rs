//! H.264 out to WebRTC viewers: RTP payloads of an AVCC access unit ([`packetize_h264`]), made
//! once per frame and shared by every viewer, each of which only stamps its own RTP header on
//! them.
//!
//! Invariants: a NAL unit that fits the MTU goes out as a single-NAL packet that is a `Bytes`
//! slice of the frame (no copy); a bigger one is split into FU-A fragments of at most `mtu`
//! bytes; an IDR access unit without SPS/PPS in band gets the stream's SPS and PPS in front, so a
//! viewer can start decoding at any keyframe; access unit delimiters and filler are dropped.

use super::{nal_type, NAL_AUD, NAL_FILLER, NAL_FU_A, NAL_IDR, NAL_SPS};
use crate::codec::avc::AvcConfig;
use crate::codec::CodecError;
use bytes::{BufMut, Bytes, BytesMut};

/// Largest RTP payload we produce: fits a 1280-byte IPv6 minimum MTU with RTP, SRTP and
/// header-extension overhead, like browsers do.
pub const DEFAULT_MTU: usize = 1200;

/// Parameter sets of a stream, ready to be put in band before IDR frames.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct H264Params {
    pub sps: Vec<Bytes>,
    pub pps: Vec<Bytes>,
    /// Bytes of each NAL unit length prefix in the stream's frames (AVCC: usually 4).
    pub nal_length_size: u8,
    /// `profile-level-id` as SDP wants it (six hex digits), from the first SPS.
    pub profile_level_id: String,
}

impl H264Params {
    /// From an AVCDecoderConfigurationRecord (FLV sequence header, RTSP/MP4 avcC).
    pub fn from_record(record: &[u8]) -> Result<H264Params, CodecError> {
        let config = AvcConfig::parse(record)?;
        Ok(H264Params {
            profile_level_id: format!(
                "{:02x}{:02x}{:02x}",
                config.profile_idc, config.constraint_flags, config.level_idc
            ),
            sps: config.sps.into_iter().map(Bytes::from).collect(),
            pps: config.pps.into_iter().map(Bytes::from).collect(),
            nal_length_size: config.nal_length_size,
        })
    }
}

/// Splits one AVCC access unit into RTP payloads, in sending order. The caller sets the marker
/// bit on the last one. A malformed length prefix ends the unit at what was readable.
pub fn packetize_h264(
    frame: &Bytes,
    keyframe: bool,
    params: Option<&H264Params>,
    mtu: usize,
) -> Vec<Bytes> {
    // Below a few dozen bytes FU-A makes no sense; a tiny MTU is a configuration slip.
    let mtu = mtu.max(64);
    let length_size = params.map_or(4, |p| p.nal_length_size.clamp(1, 4) as usize);
    let nals = split_avcc(frame, length_size);
    let has_idr = keyframe || nals.iter().any(|n| nal_type(n) == NAL_IDR);
    let has_sps = nals.iter().any(|n| nal_type(n) == NAL_SPS);
    let mut out = Vec::with_capacity(frame.len() / mtu.max(1) + nals.len() + 2);
    if has_idr && !has_sps {
        if let Some(params) = params {
            for set in params.sps.iter().chain(params.pps.iter()) {
                push_nal(&mut out, set, mtu);
            }
        }
    }
    for nal in nals {
        if matches!(nal_type(&nal), NAL_AUD | NAL_FILLER) {
            continue;
        }
        push_nal(&mut out, &nal, mtu);
    }
    out
}

/// NAL units of an AVCC access unit, as zero-copy slices.
pub(super) fn split_avcc(frame: &Bytes, length_size: usize) -> Vec<Bytes> {
    let mut nals = Vec::new();
    let mut pos = 0;
    while pos + length_size <= frame.len() {
        let len = frame[pos..pos + length_size]
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | *b as usize);
        pos += length_size;
        if len == 0 {
            continue;
        }
        if pos + len > frame.len() {
            break;
        }
        nals.push(frame.slice(pos..pos + len));
        pos += len;
    }
    nals
}

fn push_nal(out: &mut Vec<Bytes>, nal: &Bytes, mtu: usize) {
    if nal.is_empty() {
        return;
    }
    if nal.len() <= mtu {
        out.push(nal.clone());
        return;
    }
    // FU-A: the NAL header is replaced by an indicator (F and NRI bits of the original, type
    // 28) and a fragment header (start/end bits and the original type).
    let header = nal[0];
    let indicator = (header & 0xe0) | NAL_FU_A;
    let body = &nal[1..];
    let chunk = mtu.saturating_sub(2).max(1);
    let count = body.len().div_ceil(chunk);
    for (i, piece) in body.chunks(chunk).enumerate() {
        let mut fragment = BytesMut::with_capacity(piece.len() + 2);
        let mut fu_header = header & 0x1f;
        if i == 0 {
            fu_header |= 0x80;
        }
        if i + 1 == count {
            fu_header |= 0x40;
        }
        fragment.put_u8(indicator);
        fragment.put_u8(fu_header);
        fragment.put_slice(piece);
        out.push(fragment.freeze());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::rtp::fixtures::avcc;
    use crate::codec::rtp::NAL_PPS;

    fn params() -> H264Params {
        H264Params {
            sps: vec![Bytes::from_static(&[0x67, 0x42, 0xc0, 0x1e])],
            pps: vec![Bytes::from_static(&[0x68, 0xcb])],
            nal_length_size: 4,
            profile_level_id: "42c01e".into(),
        }
    }

    /// Reassembles payloads the way a receiver does, to check nothing is lost or reordered.
    fn depacketize(payloads: &[Bytes]) -> Vec<Vec<u8>> {
        let mut nals = Vec::new();
        let mut current: Option<Vec<u8>> = None;
        for p in payloads {
            if p[0] & 0x1f == NAL_FU_A {
                let (indicator, header) = (p[0], p[1]);
                if header & 0x80 != 0 {
                    current = Some(vec![(indicator & 0xe0) | (header & 0x1f)]);
                }
                current
                    .as_mut()
                    .expect("start fragment first")
                    .extend_from_slice(&p[2..]);
                if header & 0x40 != 0 {
                    nals.push(current.take().expect("open fragment"));
                }
            } else {
                nals.push(p.to_vec());
            }
        }
        nals
    }

    #[test]
    fn small_nals_are_zero_copy_slices() {
        let frame = avcc(&[&[0x09, 0xf0], &[0x41, 1, 2, 3]]);
        let out = packetize_h264(&frame, false, Some(&params()), DEFAULT_MTU);
        assert_eq!(out.len(), 1, "AUD dropped, one slice left");
        assert_eq!(&out[0][..], &[0x41, 1, 2, 3]);
        let frame_range = frame.as_ptr() as usize..frame.as_ptr() as usize + frame.len();
        assert!(frame_range.contains(&(out[0].as_ptr() as usize)));
    }

    #[test]
    fn idr_gets_parameter_sets_in_front_unless_in_band() {
        let idr: &[u8] = &[0x65, 9, 9];
        let out = packetize_h264(&avcc(&[idr]), true, Some(&params()), DEFAULT_MTU);
        let types: Vec<u8> = out.iter().map(|p| p[0] & 0x1f).collect();
        assert_eq!(types, vec![NAL_SPS, NAL_PPS, NAL_IDR]);

        let in_band = avcc(&[&[0x67, 1], &[0x68, 2], idr]);
        let out = packetize_h264(&in_band, true, Some(&params()), DEFAULT_MTU);
        assert_eq!(out.len(), 3, "the frame's own SPS/PPS are kept, none added");
        assert_eq!(&out[0][..], &[0x67, 1]);
    }

    #[test]
    fn big_nals_become_fu_a_fragments_within_the_mtu() {
        let big: Vec<u8> = std::iter::once(0x65)
            .chain((0..5000u32).map(|i| i as u8))
            .collect();
        let frame = avcc(&[&[0x06, 5, 5], &big]);
        let out = packetize_h264(&frame, true, Some(&params()), 1000);
        assert!(out.iter().all(|p| p.len() <= 1000));
        let nals = depacketize(&out);
        assert_eq!(nals.len(), 4, "SPS, PPS, SEI, IDR");
        assert_eq!(nals[3], big);
        assert_eq!(out[3][1] & 0x80, 0x80, "first fragment has the start bit");
        assert_eq!(
            out.last().expect("fragments")[1] & 0x40,
            0x40,
            "last has the end bit"
        );
    }

    #[test]
    fn malformed_lengths_do_not_panic() {
        for junk in [
            &[0u8, 0, 0][..],
            &[0, 0, 0, 200, 1, 2][..],
            &[0xff; 9][..],
            &[][..],
        ] {
            let out = packetize_h264(&Bytes::copy_from_slice(junk), true, None, DEFAULT_MTU);
            assert!(out.len() <= 1);
        }
        assert!(packetize_h264(&avcc(&[&[0x41]]), false, None, 0).len() == 1);
    }

    #[test]
    fn profile_level_id_from_record() {
        let record = [
            0x01, 0x42, 0xc0, 0x1e, 0xff, 0xe1, 0x00, 0x02, 0x67, 0x42, 0x01, 0x00, 0x02, 0x68,
            0xcb,
        ];
        let p = H264Params::from_record(&record).expect("valid record");
        assert_eq!(p.profile_level_id, "42c01e");
        assert_eq!(p.sps.len(), 1);
        assert_eq!(&p.pps[0][..], &[0x68, 0xcb]);
    }
}
