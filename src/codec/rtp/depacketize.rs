//! H.264 in from WebRTC publishers ([`H264Depacketizer`]): single NAL, STAP-A and FU-A payloads
//! back into AVCC access units (4-byte length prefixes), plus an AVCDecoderConfigurationRecord
//! built from the SPS/PPS seen in band.
//!
//! Invariants: only whole, decodable units come out: after any loss (a sequence gap inside or
//! between units, a malformed payload, a unit over [`MAX_ACCESS_UNIT_BYTES`]) everything is
//! dropped until the next intact IDR with known parameter sets, and one keyframe request is
//! raised (again after each second of RTP time while still waiting, in case the request or its
//! answer was lost); late and duplicate packets are ignored, never spliced back; memory is
//! bounded by one unit; no input panics.

use super::{nal_type, NAL_AUD, NAL_FILLER, NAL_FU_A, NAL_IDR, NAL_PPS, NAL_SPS, NAL_STAP_A};
use bytes::{BufMut, Bytes, BytesMut};
use h264_reader::nal::sps::{ChromaFormat, SeqParameterSet};
use h264_reader::rbsp::{decode_nal, BitReader};
use std::ops::Range;

/// Largest access unit the depacketizer assembles. Far above any real frame (a 4K intra frame at
/// a high bitrate is a few MiB), so only a broken or hostile publisher reaches it.
pub const MAX_ACCESS_UNIT_BYTES: usize = 8 << 20;

/// RTP clock ticks (90 kHz, so one second) between keyframe requests while still waiting for an
/// IDR: the request (RTCP) or the keyframe itself may be lost, and browsers send no periodic ones.
const KEYFRAME_REREQUEST_TICKS: u32 = 90_000;

/// A packet at most this many behind the newest is late (reordered) or a duplicate and ignored;
/// farther behind is taken as a sequence restart. The value of RFC 3550 appendix A.1.
const MAX_MISORDER: u16 = 100;

/// One access unit rebuilt from RTP packets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccessUnit {
    /// NAL units with 4-byte big-endian length prefixes; SPS, PPS and SEI kept, AUD and filler
    /// dropped.
    pub avcc: Bytes,
    /// Holds an IDR slice.
    pub keyframe: bool,
    /// RTP timestamp of its packets (90 kHz clock, wrapping).
    pub rtp_timestamp: u32,
}

/// Rebuilds access units from the RTP payloads of one H.264 stream (one SSRC). Sans-IO: the caller
/// feeds every received packet in arrival order; when a `push` returns a unit it first takes the
/// config ([`H264Depacketizer::take_config`]), then forwards the unit; after every `push` it sends
/// a PLI if [`H264Depacketizer::take_keyframe_request`] says so.
#[derive(Debug, Default)]
pub struct H264Depacketizer {
    last_sequence: Option<u16>,
    unit: Option<Assembly>,
    /// An IDR was emitted since the start or the last loss: units referring to earlier pictures
    /// can be decoded by players. Until then only an IDR may go out.
    synced: bool,
    sps: Vec<Bytes>,
    pps: Vec<Bytes>,
    record: Option<Bytes>,
    record_changed: bool,
    keyframe_request: bool,
    /// RTP timestamp of the last keyframe request, to repeat it at most once per second.
    last_request: Option<u32>,
}

/// The access unit being reassembled.
#[derive(Debug)]
struct Assembly {
    timestamp: u32,
    avcc: BytesMut,
    keyframe: bool,
    /// Holds a slice (NAL types 1 to 5): a unit of only parameter sets or SEI is no frame.
    has_slice: bool,
    /// Offset of the length prefix of the FU-A NAL unit being reassembled, patched at its end.
    fragment: Option<usize>,
    sps: Vec<Range<usize>>,
    pps: Vec<Range<usize>>,
    /// Lost or malformed: its bytes are freed at once, the rest of it is skipped.
    damaged: bool,
    /// Complete (marker seen) but not returned yet, as that `push` already returned one.
    ended: bool,
}

impl H264Depacketizer {
    pub fn new() -> Self {
        Self::default()
    }

    /// One RTP packet's payload with its header fields. Returns a completed access unit when
    /// one ends (marker bit, or a new timestamp starts one). Damaged units and, after a loss,
    /// units before the next IDR are dropped. When one packet ends two units (a sender that
    /// left out a marker bit, then a one-packet unit with it), the second comes out on the next
    /// call, so nothing intact is lost.
    pub fn push(
        &mut self,
        payload: &[u8],
        sequence: u16,
        timestamp: u32,
        marker: bool,
    ) -> Option<AccessUnit> {
        let mut out = None;
        if self.unit.as_ref().is_some_and(|u| u.ended) {
            out = self.finish();
        }
        let gap = match self.last_sequence {
            None => false,
            Some(last) => {
                let ahead = sequence.wrapping_sub(last);
                // A late packet's slot was already counted as a loss when its successor came;
                // splicing it back would need a reorder buffer for little gain.
                if ahead == 0 || ahead > u16::MAX - MAX_MISORDER {
                    return out;
                }
                ahead != 1
            }
        };
        self.last_sequence = Some(sequence);
        if gap {
            // The lost packets may be the tail of the open unit or the head of the one this
            // packet belongs to: neither can be trusted.
            self.unit = None;
            self.lost(timestamp);
        } else if self.unit.as_ref().is_some_and(|u| u.timestamp != timestamp) {
            // `out` is empty here: an ended unit was finished above, leaving no open one.
            out = self.finish();
        }
        let unit = self
            .unit
            .get_or_insert_with(|| Assembly::new(timestamp, gap));
        if !unit.damaged {
            unit.add_payload(payload);
        }
        if marker {
            if out.is_none() {
                out = self.finish();
            } else {
                unit.ended = true;
            }
        }
        out
    }

    /// A new AVCDecoderConfigurationRecord when the SPS/PPS seen in band changed (first time
    /// included); the caller pushes it as the stream's video config before the next unit.
    /// Parameter sets only count once the unit carrying them arrived intact, so the config taken
    /// right after a `push` belongs with the unit that `push` returned, never with an older one.
    pub fn take_config(&mut self) -> Option<Bytes> {
        if !std::mem::take(&mut self.record_changed) {
            return None;
        }
        self.record.clone()
    }

    /// True once after a loss made the decoder unable to continue (a gap in sequence numbers
    /// inside or between units): the caller asks the publisher for a keyframe (PLI), rate-limited
    /// by the caller. Raised again after each second of RTP time without a usable IDR.
    pub fn take_keyframe_request(&mut self) -> bool {
        std::mem::take(&mut self.keyframe_request)
    }

    /// Closes the open unit: returns it if intact and decodable by players.
    fn finish(&mut self) -> Option<AccessUnit> {
        let unit = self.unit.take()?;
        if unit.damaged || unit.fragment.is_some() {
            self.lost(unit.timestamp);
            return None;
        }
        let avcc = shrink(unit.avcc);
        // Parameter sets of an intact unit are good even when the unit is not forwarded: some
        // senders put them in a unit of their own ahead of the IDR.
        let sps = unit.sps.iter().map(|r| avcc.slice(r.clone())).collect();
        let pps = unit.pps.iter().map(|r| avcc.slice(r.clone())).collect();
        self.update_params(sps, pps);
        if !unit.has_slice {
            return None;
        }
        if !self.synced {
            if !unit.keyframe || self.record.is_none() {
                self.request_again(unit.timestamp);
                return None;
            }
            self.synced = true;
        }
        Some(AccessUnit {
            avcc,
            keyframe: unit.keyframe,
            rtp_timestamp: unit.timestamp,
        })
    }

    fn lost(&mut self, timestamp: u32) {
        if self.synced {
            self.synced = false;
            self.raise(timestamp);
        } else {
            self.request_again(timestamp);
        }
    }

    fn request_again(&mut self, timestamp: u32) {
        // Either direction counts: timestamps restart with a new encoder, and B-frames (not
        // sent by browsers) would step back a little.
        let due = self.last_request.is_none_or(|last| {
            (timestamp.wrapping_sub(last) as i32).unsigned_abs() >= KEYFRAME_REREQUEST_TICKS
        });
        if due {
            self.raise(timestamp);
        }
    }

    fn raise(&mut self, timestamp: u32) {
        self.keyframe_request = true;
        self.last_request = Some(timestamp);
    }

    /// A unit's SPS and PPS replace the known ones (each kind only if the unit has any).
    fn update_params(&mut self, sps: Vec<Bytes>, pps: Vec<Bytes>) {
        if sps.is_empty() && pps.is_empty() {
            return;
        }
        // Counts as the record can hold them: 5 bits of SPS, 8 bits of PPS.
        let sps = if sps.is_empty() {
            self.sps.clone()
        } else {
            distinct(sps, 31)
        };
        let pps = if pps.is_empty() {
            self.pps.clone()
        } else {
            distinct(pps, 255)
        };
        if sps == self.sps && pps == self.pps {
            return;
        }
        // A record that cannot be built (no PPS yet, an SPS too short to hold its profile)
        // leaves the last good one in force.
        if let Some(record) = avc_record(&sps, &pps) {
            self.record = Some(record);
            self.record_changed = true;
        }
        self.sps = sps;
        self.pps = pps;
    }
}

impl Assembly {
    fn new(timestamp: u32, damaged: bool) -> Assembly {
        Assembly {
            timestamp,
            avcc: BytesMut::new(),
            keyframe: false,
            has_slice: false,
            fragment: None,
            sps: Vec::new(),
            pps: Vec::new(),
            damaged,
            ended: false,
        }
    }

    fn add_payload(&mut self, payload: &[u8]) {
        let Some(&first) = payload.first() else {
            return;
        };
        let ok = match first & 0x1f {
            // Any other packet while a FU-A is open means its end was never sent.
            1..=23 => self.fragment.is_none() && self.add_nal(payload),
            NAL_STAP_A => self.fragment.is_none() && self.add_stap_a(&payload[1..]),
            NAL_FU_A => self.add_fu_a(payload),
            // Reserved types: RFC 6184 section 5.2 has receivers ignore them.
            0 | 30 | 31 => true,
            // STAP-B, MTAP16, MTAP24 and FU-B exist only in interleaved mode, never negotiated.
            _ => false,
        };
        if !ok {
            self.damage();
        }
    }

    fn damage(&mut self) {
        self.damaged = true;
        self.avcc = BytesMut::new();
        self.fragment = None;
        self.sps.clear();
        self.pps.clear();
    }

    fn fits(&self, more: usize) -> bool {
        self.avcc.len().saturating_add(more) <= MAX_ACCESS_UNIT_BYTES
    }

    /// Appends one whole NAL unit (from a single NAL packet or a STAP-A).
    fn add_nal(&mut self, nal: &[u8]) -> bool {
        let kind = nal_type(nal);
        match kind {
            0 | 30 | 31 | NAL_AUD | NAL_FILLER => return true,
            // Aggregates and fragments do not nest.
            24..=29 => return false,
            _ => {}
        }
        if !self.fits(4 + nal.len()) {
            return false;
        }
        // Fits in u32: bounded by MAX_ACCESS_UNIT_BYTES just above.
        self.avcc.put_u32(nal.len() as u32);
        let start = self.avcc.len();
        self.avcc.put_slice(nal);
        self.note(kind, start..self.avcc.len());
        true
    }

    /// STAP-A body: NAL units, each after a 16-bit size. Anything that does not add up exactly
    /// is malformed, as a decoder fed a guess would show garbage.
    fn add_stap_a(&mut self, mut rest: &[u8]) -> bool {
        if rest.is_empty() {
            return false;
        }
        while !rest.is_empty() {
            let [a, b, tail @ ..] = rest else {
                return false;
            };
            let size = u16::from_be_bytes([*a, *b]) as usize;
            if size == 0 || size > tail.len() || !self.add_nal(&tail[..size]) {
                return false;
            }
            rest = &tail[size..];
        }
        true
    }

    /// FU-A: the NAL unit is rebuilt in place behind a length prefix written at its start and
    /// patched at its end, so fragments are copied once.
    fn add_fu_a(&mut self, payload: &[u8]) -> bool {
        let [indicator, header, body @ ..] = payload else {
            return false;
        };
        let (start, end, kind) = (header & 0x80 != 0, header & 0x40 != 0, header & 0x1f);
        // Start and end in one fragment is forbidden by RFC 6184 but unambiguous: accepted.
        if start {
            if self.fragment.is_some() || matches!(kind, 0 | 24..=31) || !self.fits(5) {
                return false;
            }
            self.fragment = Some(self.avcc.len());
            self.avcc.put_u32(0);
            self.avcc.put_u8((indicator & 0xe0) | kind);
        } else {
            let Some(at) = self.fragment else {
                return false;
            };
            if nal_type(&self.avcc[at + 4..]) != kind {
                return false;
            }
        }
        if !self.fits(body.len()) {
            return false;
        }
        self.avcc.put_slice(body);
        if end {
            let Some(at) = self.fragment.take() else {
                return false;
            };
            let len = self.avcc.len() - at - 4;
            // Fits in u32: bounded by MAX_ACCESS_UNIT_BYTES.
            self.avcc[at..at + 4].copy_from_slice(&(len as u32).to_be_bytes());
            if matches!(kind, NAL_AUD | NAL_FILLER) {
                self.avcc.truncate(at);
            } else {
                self.note(kind, at + 4..self.avcc.len());
            }
        }
        true
    }

    fn note(&mut self, kind: u8, nal: Range<usize>) {
        // A record stores parameter set lengths in 16 bits; a bigger one is junk anyway.
        let storable = nal.len() <= u16::MAX as usize;
        match kind {
            1..=5 => {
                self.has_slice = true;
                self.keyframe |= kind == NAL_IDR;
            }
            NAL_SPS if storable => self.sps.push(nal),
            NAL_PPS if storable => self.pps.push(nal),
            _ => {}
        }
    }
}

/// Freezes a finished unit without keeping the growth slack: units live on in the GOP cache,
/// which counts their length, not their allocation.
fn shrink(avcc: BytesMut) -> Bytes {
    if avcc.capacity() - avcc.len() <= avcc.len() / 8 {
        return avcc.freeze();
    }
    let mut vec = Vec::from(avcc);
    vec.shrink_to_fit();
    Bytes::from(vec)
}

/// The first `max` distinct sets, in order (a unit may repeat one).
fn distinct(sets: Vec<Bytes>, max: usize) -> Vec<Bytes> {
    let mut out: Vec<Bytes> = Vec::with_capacity(sets.len().min(max));
    for set in sets {
        if out.len() < max && !out.contains(&set) {
            out.push(set);
        }
    }
    out
}

/// AVCDecoderConfigurationRecord (ISO 14496-15 5.3.3.1) with 4-byte NAL lengths, profile,
/// constraints and level from the first SPS. None without a PPS or with an SPS too short.
/// Expects at most 31 SPS, 255 PPS, each under 64 KiB (as [`H264Depacketizer`] keeps them).
fn avc_record(sps: &[Bytes], pps: &[Bytes]) -> Option<Bytes> {
    let first = sps.first()?;
    if pps.is_empty() || first.len() < 4 {
        return None;
    }
    let size = 7 + 4 + sps.iter().chain(pps).map(|s| 2 + s.len()).sum::<usize>();
    let mut record = BytesMut::with_capacity(size);
    record.put_u8(1);
    record.put_slice(&first[1..4]);
    record.put_u8(0xfc | 3); // reserved bits, lengthSizeMinusOne = 3
    record.put_u8(0xe0 | sps.len() as u8);
    for set in sps {
        record.put_u16(set.len() as u16);
        record.put_slice(set);
    }
    record.put_u8(pps.len() as u8);
    for set in pps {
        record.put_u16(set.len() as u16);
        record.put_slice(set);
    }
    // The record's syntax adds chroma format and bit depths for these profiles; readers that
    // follow it to the letter expect them.
    if matches!(first[1], 100 | 110 | 122 | 144) {
        if let Some([chroma, luma, chroma_depth]) = chroma_info(first) {
            record.put_u8(0xfc | chroma);
            record.put_u8(0xf8 | luma);
            record.put_u8(0xf8 | chroma_depth);
            record.put_u8(0); // numOfSequenceParameterSetExt
        }
    }
    Some(record.freeze())
}

/// chroma_format_idc, bit_depth_luma_minus8 and bit_depth_chroma_minus8 of an SPS NAL unit.
fn chroma_info(sps_nal: &[u8]) -> Option<[u8; 3]> {
    let rbsp = decode_nal(sps_nal).ok()?;
    let sps = SeqParameterSet::from_bits(BitReader::new(&rbsp[..])).ok()?;
    let info = &sps.chroma_info;
    let chroma = match info.chroma_format {
        ChromaFormat::Monochrome => 0,
        ChromaFormat::YUV420 => 1,
        ChromaFormat::YUV422 => 2,
        ChromaFormat::YUV444 => 3,
        ChromaFormat::Invalid(_) => return None,
    };
    let (luma, chroma_depth) = (info.bit_depth_luma_minus8, info.bit_depth_chroma_minus8);
    (luma < 8 && chroma_depth < 8).then_some([chroma, luma, chroma_depth])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::avc::AvcConfig;
    use crate::codec::rtp::fixtures::*;
    use crate::codec::rtp::packetize::split_avcc;
    use crate::codec::rtp::{packetize_h264, H264Params, DEFAULT_MTU};

    fn slice(kind: u8, len: usize, seed: u8) -> Vec<u8> {
        std::iter::once(0x60 | kind)
            .chain((0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)))
            .collect()
    }

    fn idr(len: usize) -> Vec<u8> {
        slice(NAL_IDR, len, 7)
    }

    fn p_slice(len: usize, seed: u8) -> Vec<u8> {
        slice(1, len, seed)
    }

    fn params_640() -> H264Params {
        H264Params::from_record(RECORD_640X360).expect("valid record")
    }

    fn stap_a(nals: &[&[u8]]) -> Bytes {
        let mut out = vec![0x60 | NAL_STAP_A];
        for nal in nals {
            out.extend_from_slice(&(nal.len() as u16).to_be_bytes());
            out.extend_from_slice(nal);
        }
        Bytes::from(out)
    }

    /// The RTP side of a publisher: consecutive sequence numbers, one timestamp per unit
    /// (30 fps on the 90 kHz clock), the marker on each unit's last packet.
    struct Sender {
        sequence: u16,
        timestamp: u32,
    }

    impl Sender {
        fn new(sequence: u16) -> Sender {
            Sender {
                sequence,
                timestamp: u32::MAX - 5000,
            }
        }

        /// Sends one unit's payloads except those at the indices in `lose`.
        fn send_lossy(
            &mut self,
            d: &mut H264Depacketizer,
            payloads: &[Bytes],
            lose: &[usize],
        ) -> Vec<AccessUnit> {
            let mut out = Vec::new();
            for (i, payload) in payloads.iter().enumerate() {
                if !lose.contains(&i) {
                    let marker = i + 1 == payloads.len();
                    out.extend(d.push(payload, self.sequence, self.timestamp, marker));
                }
                self.sequence = self.sequence.wrapping_add(1);
            }
            self.timestamp = self.timestamp.wrapping_add(3000);
            out
        }

        fn send(&mut self, d: &mut H264Depacketizer, payloads: &[Bytes]) -> Vec<AccessUnit> {
            self.send_lossy(d, payloads, &[])
        }

        /// Packetizes an AVCC frame with the 640x360 parameter sets and sends it.
        fn frame(&mut self, d: &mut H264Depacketizer, frame: &Bytes) -> Vec<AccessUnit> {
            let keyframe = split_avcc(frame, 4).iter().any(|n| nal_type(n) == NAL_IDR);
            let payloads = packetize_h264(frame, keyframe, Some(&params_640()), DEFAULT_MTU);
            self.send(d, &payloads)
        }
    }

    /// A depacketizer that has emitted a first IDR (with its config taken).
    fn synced(tx: &mut Sender) -> H264Depacketizer {
        let mut d = H264Depacketizer::new();
        assert_eq!(tx.frame(&mut d, &avcc(&[&idr(2000)])).len(), 1);
        assert!(d.take_config().is_some());
        assert!(!d.take_keyframe_request());
        d
    }

    /// Every emitted unit is well-formed AVCC with nothing that has no place in a frame.
    fn assert_valid_avcc(avcc: &[u8]) {
        assert!(avcc.len() <= MAX_ACCESS_UNIT_BYTES);
        let mut rest = avcc;
        assert!(!rest.is_empty(), "no empty units");
        while !rest.is_empty() {
            let len = u32::from_be_bytes(rest[..4].try_into().expect("4 bytes")) as usize;
            assert!(
                len >= 1 && 4 + len <= rest.len(),
                "length prefix within the unit"
            );
            let kind = nal_type(&rest[4..]);
            assert!(
                !matches!(kind, 0 | NAL_AUD | NAL_FILLER | 24..=31),
                "type {kind}"
            );
            rest = &rest[4 + len..];
        }
    }

    #[test]
    fn round_trips_through_the_packetizer_across_sequence_wrap() {
        let mut d = H264Depacketizer::new();
        let mut tx = Sender::new(65_530);
        let big_idr = idr(5000);
        let frames: Vec<(Bytes, Bytes)> = vec![
            // The packetizer puts the stream's SPS/PPS in front of an IDR.
            (
                avcc(&[&big_idr]),
                avcc(&[SPS_640X360, PPS_640X360, &big_idr]),
            ),
            // SEI is kept, the AUD dropped on the way out.
            (
                avcc(&[&[0x09, 0xf0], &[0x06, 5, 5], &p_slice(300, 1)]),
                avcc(&[&[0x06, 5, 5], &p_slice(300, 1)]),
            ),
            (avcc(&[&p_slice(4000, 2)]), avcc(&[&p_slice(4000, 2)])),
            (
                avcc(&[&p_slice(10, 3), &p_slice(2500, 4), &p_slice(20, 5)]),
                avcc(&[&p_slice(10, 3), &p_slice(2500, 4), &p_slice(20, 5)]),
            ),
            (avcc(&[&p_slice(1, 6)]), avcc(&[&p_slice(1, 6)])),
        ];
        for (i, (sent, expected)) in frames.iter().enumerate() {
            let timestamp = tx.timestamp;
            let units = tx.frame(&mut d, sent);
            assert_eq!(units.len(), 1, "frame {i}");
            assert_eq!(units[0].avcc, expected, "frame {i}");
            assert_eq!(units[0].keyframe, i == 0);
            assert_eq!(units[0].rtp_timestamp, timestamp);
            let config = d.take_config();
            if i == 0 {
                let record = config.expect("config with the first unit");
                assert_eq!(&record[..], RECORD_640X360, "same bytes as ffmpeg writes");
                assert_eq!(H264Params::from_record(&record), Ok(params_640()));
                let info = AvcConfig::parse(&record).expect("parses").track_info();
                assert_eq!((info.width, info.height), (Some(640), Some(360)));
            } else {
                assert_eq!(config, None, "unchanged parameter sets give no new config");
            }
        }
        assert!(tx.sequence < 100, "the sequence number wrapped");
        assert!(tx.timestamp < 20_000, "the timestamp wrapped");
        assert!(!d.take_keyframe_request());
    }

    #[test]
    fn stap_a_parameter_sets_in_front_of_a_fragmented_idr_as_chromium_sends() {
        let mut d = H264Depacketizer::new();
        let mut tx = Sender::new(1);
        let key = idr(3000);
        let mut payloads = vec![stap_a(&[SPS_640X360, PPS_640X360])];
        payloads.extend(packetize_h264(&avcc(&[&key]), true, None, DEFAULT_MTU));
        assert_eq!(payloads.len(), 4, "STAP-A and three FU-A fragments");
        let units = tx.send(&mut d, &payloads);
        assert_eq!(units.len(), 1);
        assert!(units[0].keyframe);
        assert_eq!(units[0].avcc, avcc(&[SPS_640X360, PPS_640X360, &key]));
        assert_eq!(d.take_config().as_deref(), Some(RECORD_640X360));

        let p = p_slice(50, 9);
        let units = tx.send(&mut d, &[Bytes::from(p.clone())]);
        assert_eq!(units[0].avcc, avcc(&[&p]));
        assert!(!units[0].keyframe);
        // A STAP-A may carry slices too, and reserved types are ignored.
        let units = tx.send(
            &mut d,
            &[stap_a(&[&p, &[0x06, 1]]), Bytes::from_static(&[0x1e, 1])],
        );
        assert_eq!(units[0].avcc, avcc(&[&p, &[0x06, 1]]));
        assert!(!d.take_keyframe_request());
    }

    #[test]
    fn lost_fragment_drops_everything_until_the_next_idr_and_asks_once() {
        let mut tx = Sender::new(40_000);
        let mut d = synced(&mut tx);
        let big_p = avcc(&[&p_slice(3000, 1)]);
        let payloads = packetize_h264(&big_p, false, None, DEFAULT_MTU);
        assert_eq!(payloads.len(), 3);
        assert!(tx.send_lossy(&mut d, &payloads, &[1]).is_empty());
        assert!(d.take_keyframe_request());
        assert!(!d.take_keyframe_request(), "raised once");
        for seed in 0..5 {
            assert!(tx.frame(&mut d, &avcc(&[&p_slice(100, seed)])).is_empty());
            assert!(!d.take_keyframe_request(), "not again within a second");
        }
        let key = idr(100);
        let units = tx.frame(&mut d, &avcc(&[&key]));
        assert_eq!(units.len(), 1);
        assert!(units[0].keyframe);
        assert_eq!(units[0].avcc, avcc(&[SPS_640X360, PPS_640X360, &key]));
        assert_eq!(d.take_config(), None, "same parameter sets");
        assert_eq!(tx.frame(&mut d, &big_p).len(), 1, "decoding goes on");
        assert!(!d.take_keyframe_request());
    }

    #[test]
    fn gaps_between_units_count_as_loss() {
        // The marker packet of a unit lost: that unit and the next are dropped.
        let mut tx = Sender::new(7);
        let mut d = synced(&mut tx);
        let payloads = packetize_h264(&avcc(&[&p_slice(2000, 1)]), false, None, DEFAULT_MTU);
        assert!(tx.send_lossy(&mut d, &payloads, &[1]).is_empty());
        assert!(tx.frame(&mut d, &avcc(&[&p_slice(10, 2)])).is_empty());
        assert!(d.take_keyframe_request());

        // A whole unit lost between two intact ones: the decoder misses a reference.
        let mut d = synced(&mut tx);
        assert_eq!(tx.frame(&mut d, &avcc(&[&p_slice(10, 3)])).len(), 1);
        assert!(tx
            .send_lossy(&mut d, &[Bytes::from(p_slice(10, 4))], &[0])
            .is_empty());
        assert!(tx.frame(&mut d, &avcc(&[&p_slice(10, 5)])).is_empty());
        assert!(d.take_keyframe_request());
        assert_eq!(tx.frame(&mut d, &avcc(&[&idr(10)])).len(), 1);
    }

    #[test]
    fn keyframe_request_repeats_each_second_while_waiting() {
        let mut tx = Sender::new(0);
        let mut d = synced(&mut tx);
        assert!(tx
            .send_lossy(&mut d, &[Bytes::from(p_slice(10, 0))], &[0])
            .is_empty());
        let mut raised = Vec::new();
        for frame in 1..=45u8 {
            assert!(tx.frame(&mut d, &avcc(&[&p_slice(10, frame)])).is_empty());
            if d.take_keyframe_request() {
                raised.push(frame);
            }
        }
        // The loss surfaced at frame 1 (3000 ticks apart); a second later, frame 31.
        assert_eq!(raised, vec![1, 31]);
    }

    #[test]
    fn nothing_before_a_first_idr_with_parameter_sets() {
        let mut d = H264Depacketizer::new();
        let mut tx = Sender::new(100);
        assert!(tx.send(&mut d, &[Bytes::from(p_slice(10, 1))]).is_empty());
        assert!(
            d.take_keyframe_request(),
            "joined mid-stream: ask for a keyframe"
        );
        // An IDR is useless to players without SPS/PPS.
        assert!(tx.send(&mut d, &[Bytes::from(idr(10))]).is_empty());
        // Parameter sets in a unit of their own still count.
        assert!(tx
            .send(&mut d, &[stap_a(&[SPS_640X360, PPS_640X360])])
            .is_empty());
        assert_eq!(d.take_config().as_deref(), Some(RECORD_640X360));
        let units = tx.send(&mut d, &[Bytes::from(idr(10))]);
        assert_eq!(units.len(), 1);
        assert_eq!(units[0].avcc, avcc(&[&idr(10)]));
    }

    #[test]
    fn config_comes_once_per_change_of_parameter_sets() {
        let mut d = H264Depacketizer::new();
        let mut tx = Sender::new(9);
        let key = idr(10);
        let with_sets = |pps: &[u8]| avcc(&[SPS_640X360, pps, &key]);
        assert_eq!(tx.frame(&mut d, &with_sets(PPS_640X360)).len(), 1);
        assert_eq!(d.take_config().as_deref(), Some(RECORD_640X360));
        assert_eq!(d.take_config(), None);
        assert_eq!(tx.frame(&mut d, &with_sets(PPS_640X360)).len(), 1);
        assert_eq!(d.take_config(), None, "repeated sets are no change");

        let other_pps: &[u8] = &[0x68, 0xcb, 0x83, 0xcb, 0x20];
        assert_eq!(tx.frame(&mut d, &with_sets(other_pps)).len(), 1);
        let record = d.take_config().expect("the PPS changed");
        let config = AvcConfig::parse(&record).expect("parses");
        assert_eq!(config.sps, vec![SPS_640X360.to_vec()]);
        assert_eq!(config.pps, vec![other_pps.to_vec()]);
        assert_eq!(config.nal_length_size, 4);

        let units = tx.send(
            &mut d,
            &[
                stap_a(&[SPS_HIGH_320X240, PPS_HIGH_320X240]),
                Bytes::from(key),
            ],
        );
        assert_eq!(units.len(), 1);
        let record = d.take_config().expect("new SPS");
        assert_eq!(
            &record[..],
            RECORD_HIGH_320X240,
            "same bytes as ffmpeg writes"
        );
        let info = AvcConfig::parse(&record).expect("parses").track_info();
        assert_eq!((info.width, info.height), (Some(320), Some(240)));
        assert_eq!(info.profile.as_deref(), Some("High"));
        let params = H264Params::from_record(&record).expect("round trip");
        assert_eq!(params.profile_level_id, "64000d");
        assert_eq!(params.sps, vec![Bytes::from_static(SPS_HIGH_320X240)]);
        assert_eq!(params.pps, vec![Bytes::from_static(PPS_HIGH_320X240)]);
    }

    #[test]
    fn a_new_timestamp_ends_a_unit_without_marker_and_nothing_is_lost() {
        let mut tx = Sender::new(65_534);
        let mut d = synced(&mut tx);
        let (a, b, c) = (p_slice(5, 1), p_slice(5, 2), p_slice(5, 3));
        let d_frags = packetize_h264(&avcc(&[&p_slice(1500, 4)]), false, None, DEFAULT_MTU);
        let (s, t) = (tx.sequence, tx.timestamp);
        assert_eq!(d.push(&a, s, t, false), None);
        let got = d.push(&b, s.wrapping_add(1), t + 1, true).expect("a");
        assert_eq!((got.avcc, got.rtp_timestamp), (avcc(&[&a]), t));
        // b ended too; it comes out with the next packet.
        let got = d.push(&c, s.wrapping_add(2), t + 2, true).expect("b");
        assert_eq!((got.avcc, got.rtp_timestamp), (avcc(&[&b]), t + 1));
        let got = d.push(&d_frags[0], s.wrapping_add(3), t + 3, false);
        assert_eq!(got.expect("c").avcc, avcc(&[&c]));
        let got = d.push(&d_frags[1], s.wrapping_add(4), t + 3, true);
        assert_eq!(got.expect("d").avcc, avcc(&[&p_slice(1500, 4)]));
        assert!(!d.take_keyframe_request());
    }

    #[test]
    fn duplicates_are_ignored_and_reordering_is_loss() {
        let mut tx = Sender::new(3);
        let mut d = synced(&mut tx);
        let frame = avcc(&[&p_slice(3000, 1)]);
        let payloads = packetize_h264(&frame, false, None, DEFAULT_MTU);
        let (s, t) = (tx.sequence, tx.timestamp);
        assert_eq!(d.push(&payloads[0], s, t, false), None);
        assert_eq!(d.push(&payloads[0], s, t, false), None, "duplicate");
        assert_eq!(d.push(&payloads[1], s + 1, t, false), None);
        let got = d.push(&payloads[2], s + 2, t, true).expect("whole unit");
        assert_eq!(got.avcc, frame);

        let t = t.wrapping_add(3000);
        assert_eq!(d.push(&payloads[0], s + 3, t, false), None);
        assert_eq!(d.push(&payloads[2], s + 5, t, true), None, "gap");
        assert_eq!(d.push(&payloads[1], s + 4, t, false), None, "late");
        assert!(d.take_keyframe_request());

        // A jump far back is a restarted sender, not a late packet: resync at its next IDR.
        let mut tx = Sender::new(s.wrapping_sub(1000));
        assert!(tx.frame(&mut d, &avcc(&[&idr(10)])).is_empty());
        assert_eq!(tx.frame(&mut d, &avcc(&[&idr(10)])).len(), 1);
    }

    #[test]
    fn malformed_payloads_damage_the_unit() {
        let bad: [&[u8]; 9] = [
            &[NAL_STAP_A, 0, 5, 0x41],        // NAL runs past the packet
            &[NAL_STAP_A, 0, 0],              // empty NAL
            &[NAL_STAP_A, 0, 2, 0x41, 1, 0],  // dangling size byte
            &[NAL_STAP_A],                    // nothing aggregated
            &[NAL_STAP_A, 0, 2, NAL_FU_A, 1], // nested fragment
            &[NAL_FU_A, 0x01, 1, 2],          // middle without start
            &[NAL_FU_A],                      // no FU header
            &[NAL_FU_A, 0x9c, 1],             // fragment of a fragment
            &[25, 0, 0, 0, 2, 0x41, 1],       // STAP-B: interleaved mode only
        ];
        for payload in bad {
            let mut tx = Sender::new(1);
            let mut d = synced(&mut tx);
            let units = tx.send(
                &mut d,
                &[Bytes::from(p_slice(10, 1)), Bytes::copy_from_slice(payload)],
            );
            assert!(units.is_empty(), "{payload:?}");
            assert!(d.take_keyframe_request(), "{payload:?}");
        }
        // A FU-A never ended: cut by the next packet, or by the marker.
        let frags = packetize_h264(&avcc(&[&p_slice(3000, 1)]), false, None, DEFAULT_MTU);
        for unit in [
            vec![
                frags[0].clone(),
                frags[1].clone(),
                Bytes::from(p_slice(5, 2)),
            ],
            vec![frags[0].clone(), frags[1].clone()],
        ] {
            let mut tx = Sender::new(1);
            let mut d = synced(&mut tx);
            assert!(tx.send(&mut d, &unit).is_empty());
            assert!(d.take_keyframe_request());
        }
    }

    #[test]
    fn oversized_unit_is_dropped_with_a_keyframe_request() {
        let mut tx = Sender::new(60_000);
        let mut d = synced(&mut tx);
        let body = vec![0x55u8; DEFAULT_MTU - 2];
        let count = MAX_ACCESS_UNIT_BYTES / body.len() + 2;
        let mut payloads = Vec::with_capacity(count);
        for i in 0..count {
            let mut fragment = vec![0x60 | NAL_FU_A, NAL_IDR];
            if i == 0 {
                fragment[1] |= 0x80;
            }
            if i + 1 == count {
                fragment[1] |= 0x40;
            }
            fragment.extend_from_slice(&body);
            payloads.push(Bytes::from(fragment));
        }
        assert!(tx.send(&mut d, &payloads).is_empty());
        assert!(d.take_keyframe_request());
        assert_eq!(tx.frame(&mut d, &avcc(&[&idr(10)])).len(), 1);
    }

    #[test]
    fn random_input_never_panics_and_yields_only_valid_units() {
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut d = H264Depacketizer::new();
        let (mut sequence, mut timestamp) = (0u16, 0u32);
        let (mut units, mut configs) = (0, 0);
        for _ in 0..100_000 {
            let r = next();
            sequence = match r % 32 {
                0 => next() as u16,
                1 => sequence.wrapping_sub((r >> 8) as u16 % 4),
                _ => sequence.wrapping_add(1),
            };
            timestamp = match (r >> 16) % 16 {
                0 => next() as u32,
                1..=4 => timestamp.wrapping_add(3000),
                _ => timestamp,
            };
            let len = if (r >> 24) % 8 == 0 {
                (next() % 1500) as usize
            } else {
                (next() % 24) as usize
            };
            let mut payload: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            // Steer toward the interesting types; the rest stays random.
            match (r >> 32) % 8 {
                0 => payload = stap_a(&[SPS_640X360, PPS_640X360]).to_vec(),
                1 if len > 4 => payload[..2].copy_from_slice(&[0x67, [66, 100][len % 2]]),
                2 if len > 0 => payload[0] = 0x60 | NAL_STAP_A,
                3 if len > 1 => payload[0] = 0x60 | NAL_FU_A,
                4 if len > 0 => payload[0] = 0x65,
                5 if len > 0 => payload[0] = 0x41,
                _ => {}
            }
            let marker = (r >> 40) % 3 == 0;
            if let Some(unit) = d.push(&payload, sequence, timestamp, marker) {
                assert_valid_avcc(&unit.avcc);
                units += 1;
            }
            if let Some(record) = d.take_config() {
                let config = AvcConfig::parse(&record).expect("records we build parse");
                assert_eq!(config.nal_length_size, 4);
                configs += 1;
            }
            d.take_keyframe_request();
        }
        assert!(
            units > 100 && configs > 10,
            "{units} units, {configs} configs"
        );
    }
}
