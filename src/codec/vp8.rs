//! VP8 over RTP (RFC 7741): frames reassembled from a WebRTC publisher's packets, and frames
//! cut into packets for WebRTC viewers.
//!
//! Invariants: a frame comes out only when all its packets arrived in sequence (start bit on
//! the first, marker on the last, one timestamp); after a loss nothing comes out until the next
//! keyframe, because every VP8 interframe refers to the frames before it, and a keyframe
//! request is raised; the received payloads (descriptor included) travel with the frame so
//! viewers get the publisher's packets as they were.

use bytes::{Bytes, BytesMut};

/// One reassembled VP8 frame.
#[derive(Debug, Clone, PartialEq)]
pub struct Vp8Frame {
    /// The VP8 frame, without RTP payload descriptors.
    pub data: Bytes,
    pub keyframe: bool,
    pub rtp_timestamp: u32,
    /// The RTP payloads it came in, descriptors included.
    pub payloads: Vec<Bytes>,
    /// Width and height from a keyframe's header (scaling bits dropped).
    pub dimensions: Option<(u16, u16)>,
}

/// The RTP payload descriptor's fields that matter here, and where the VP8 data starts.
struct Descriptor {
    start_of_partition: bool,
    partition_index: u8,
    header_len: usize,
}

fn descriptor(payload: &[u8]) -> Option<Descriptor> {
    let first = *payload.first()?;
    let mut len = 1;
    if first & 0x80 != 0 {
        let extension = *payload.get(1)?;
        len += 1;
        if extension & 0x80 != 0 {
            // PictureID: 7 bits, or 15 when its M bit is set.
            let picture = *payload.get(len)?;
            len += if picture & 0x80 != 0 { 2 } else { 1 };
        }
        if extension & 0x40 != 0 {
            len += 1; // TL0PICIDX
        }
        if extension & 0x30 != 0 {
            len += 1; // TID / Y / KEYIDX
        }
    }
    (payload.len() > len).then_some(Descriptor {
        start_of_partition: first & 0x10 != 0,
        partition_index: first & 0x0f,
        header_len: len,
    })
}

/// Whether a VP8 frame is a keyframe, and its size if so (RFC 6386, 9.1).
pub fn frame_header(frame: &[u8]) -> Option<(bool, Option<(u16, u16)>)> {
    let first = *frame.first()?;
    let keyframe = first & 0x01 == 0;
    if !keyframe {
        return Some((false, None));
    }
    if frame.len() < 10 || frame[3..6] != [0x9d, 0x01, 0x2a] {
        return Some((true, None));
    }
    let width = u16::from_le_bytes([frame[6], frame[7]]) & 0x3fff;
    let height = u16::from_le_bytes([frame[8], frame[9]]) & 0x3fff;
    Some((true, Some((width, height))))
}

/// Reassembles VP8 frames from RTP packets in arrival order.
#[derive(Default)]
pub struct Vp8Depacketizer {
    data: BytesMut,
    payloads: Vec<Bytes>,
    timestamp: Option<u32>,
    last_sequence: Option<u16>,
    /// A loss happened: drop everything until the next keyframe starts.
    waiting_for_keyframe: bool,
    keyframe_request: bool,
    started: bool,
}

impl Vp8Depacketizer {
    pub fn new() -> Vp8Depacketizer {
        Vp8Depacketizer {
            waiting_for_keyframe: true,
            ..Default::default()
        }
    }

    /// True once after a loss or a broken packet: the publisher should send a keyframe.
    pub fn take_keyframe_request(&mut self) -> bool {
        std::mem::take(&mut self.keyframe_request)
    }

    fn drop_frame(&mut self) {
        self.data.clear();
        self.payloads.clear();
        self.timestamp = None;
    }

    fn lost(&mut self) {
        self.drop_frame();
        self.waiting_for_keyframe = true;
        self.keyframe_request = true;
    }

    /// Feeds one RTP packet; returns the frame it completes, if any.
    pub fn push(
        &mut self,
        payload: &Bytes,
        sequence: u16,
        timestamp: u32,
        marker: bool,
    ) -> Option<Vp8Frame> {
        let in_order = self
            .last_sequence
            .is_none_or(|last| last.wrapping_add(1) == sequence);
        self.last_sequence = Some(sequence);
        if !in_order && self.started {
            self.lost();
        }
        let Some(descriptor) = descriptor(payload) else {
            self.lost();
            return None;
        };
        let frame_start = descriptor.start_of_partition && descriptor.partition_index == 0;
        if frame_start {
            if self.timestamp.is_some() {
                // The previous frame never saw its marker: its last packet is gone.
                self.lost();
            }
            self.drop_frame();
            self.timestamp = Some(timestamp);
            self.started = true;
        } else if self.timestamp != Some(timestamp) {
            // A middle of a frame whose start we did not get.
            self.drop_frame();
            return None;
        }
        self.data
            .extend_from_slice(&payload[descriptor.header_len..]);
        self.payloads.push(payload.clone());
        if !marker {
            return None;
        }
        let data = self.data.split().freeze();
        let payloads = std::mem::take(&mut self.payloads);
        self.timestamp = None;
        let (keyframe, dimensions) = frame_header(&data)?;
        if self.waiting_for_keyframe {
            if !keyframe {
                self.keyframe_request = true;
                return None;
            }
            self.waiting_for_keyframe = false;
        }
        Some(Vp8Frame {
            data,
            keyframe,
            rtp_timestamp: timestamp,
            payloads,
            dimensions,
        })
    }
}

/// Cuts a VP8 frame into RTP payloads of at most `mtu` bytes, each with a one-byte descriptor
/// (start bit on the first, no picture id).
pub fn packetize_vp8(frame: &[u8], mtu: usize) -> Vec<Bytes> {
    let chunk = mtu.saturating_sub(1).max(1);
    frame
        .chunks(chunk)
        .enumerate()
        .map(|(i, part)| {
            let mut payload = BytesMut::with_capacity(part.len() + 1);
            payload.extend_from_slice(&[if i == 0 { 0x10 } else { 0x00 }]);
            payload.extend_from_slice(part);
            payload.freeze()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A keyframe header for 640x360 followed by `len` bytes of body.
    fn keyframe(len: usize) -> Vec<u8> {
        let mut frame = vec![0x50, 0x2a, 0x01, 0x9d, 0x01, 0x2a, 0x80, 0x02, 0x68, 0x01];
        frame.extend((0..len).map(|i| i as u8));
        frame
    }

    fn interframe(len: usize) -> Vec<u8> {
        let mut frame = vec![0x31, 0x02, 0x00];
        frame.extend((0..len).map(|i| (i * 7) as u8));
        frame
    }

    /// Packets as Chrome sends them: extended descriptor with a 15-bit picture id.
    fn packets(frame: &[u8], picture: u16) -> Vec<Bytes> {
        frame
            .chunks(500)
            .enumerate()
            .map(|(i, part)| {
                let mut p = vec![
                    if i == 0 { 0x90 } else { 0x80 },
                    0x80,
                    0x80 | (picture >> 8) as u8,
                    picture as u8,
                ];
                p.extend_from_slice(part);
                Bytes::from(p)
            })
            .collect()
    }

    fn feed(d: &mut Vp8Depacketizer, seq: &mut u16, frame: &[u8], ts: u32) -> Option<Vp8Frame> {
        let parts = packets(frame, *seq);
        let last = parts.len() - 1;
        let mut out = None;
        for (i, p) in parts.iter().enumerate() {
            out = d.push(p, *seq, ts, i == last);
            *seq = seq.wrapping_add(1);
        }
        out
    }

    #[test]
    fn keyframe_and_interframe_reassembled_with_their_packets() {
        let mut d = Vp8Depacketizer::new();
        let mut seq = 65530;
        let key = keyframe(1700);
        let frame = feed(&mut d, &mut seq, &key, 1000).expect("keyframe");
        assert!(frame.keyframe);
        assert_eq!(frame.data.to_vec(), key);
        assert_eq!(frame.dimensions, Some((640, 360)));
        assert_eq!(frame.payloads.len(), 4);
        assert_eq!(frame.payloads[0][0], 0x90);
        let inter = interframe(300);
        let frame = feed(&mut d, &mut seq, &inter, 4000).expect("interframe");
        assert!(!frame.keyframe);
        assert_eq!(frame.data.to_vec(), inter);
        assert_eq!(frame.rtp_timestamp, 4000);
        assert!(!d.take_keyframe_request());
    }

    #[test]
    fn starts_on_a_keyframe() {
        let mut d = Vp8Depacketizer::new();
        let mut seq = 1;
        assert_eq!(feed(&mut d, &mut seq, &interframe(50), 0), None);
        assert!(d.take_keyframe_request());
        assert!(feed(&mut d, &mut seq, &keyframe(50), 3000).is_some());
    }

    #[test]
    fn a_lost_packet_drops_frames_until_the_next_keyframe() {
        let mut d = Vp8Depacketizer::new();
        let mut seq = 100;
        assert!(feed(&mut d, &mut seq, &keyframe(100), 0).is_some());
        let parts = packets(&interframe(1200), 0);
        assert_eq!(d.push(&parts[0], seq, 3000, false), None);
        // parts[1] lost.
        assert_eq!(d.push(&parts[2], seq + 2, 3000, true), None);
        seq += 3;
        assert!(d.take_keyframe_request());
        assert_eq!(feed(&mut d, &mut seq, &interframe(10), 6000), None);
        let frame = feed(&mut d, &mut seq, &keyframe(10), 9000).expect("recovers");
        assert!(frame.keyframe);
    }

    #[test]
    fn garbage_is_refused_without_panic() {
        let mut d = Vp8Depacketizer::new();
        for (i, junk) in [
            &[][..],
            &[0x80],
            &[0x80, 0x80],
            &[0x90, 0x80, 0x80, 1],
            &[0x10],
        ]
        .iter()
        .enumerate()
        {
            assert_eq!(
                d.push(&Bytes::copy_from_slice(junk), i as u16, 0, true),
                None
            );
        }
        assert_eq!(frame_header(&[]), None);
        assert_eq!(frame_header(&[0x00, 1]), Some((true, None)));
    }

    #[test]
    fn packetized_frames_reassemble() {
        let key = keyframe(3000);
        let payloads = packetize_vp8(&key, 1200);
        assert_eq!(payloads.len(), 3);
        assert!(payloads.iter().all(|p| p.len() <= 1200));
        let mut d = Vp8Depacketizer::new();
        let last = payloads.len() - 1;
        let mut out = None;
        for (i, p) in payloads.iter().enumerate() {
            out = d.push(p, i as u16, 90, i == last);
        }
        assert_eq!(out.expect("frame").data.to_vec(), key);
    }
}
