//! RTP as the subscriber reads it: the clear header of every packet (RFC 3550), and the
//! publisher's stamp (see [`crate::stamp`]) in the H.264 payload (RFC 6184) of a frame's first
//! packets.
//!
//! Invariants: nothing here allocates or panics on any input; the stamp is looked for only in
//! NAL units that come before a frame's slices (parameter sets, SEI, access unit delimiters),
//! so a scan stops at the first slice it meets.

use crate::stamp;

/// The fixed part of an RTP header, and where its payload starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub marker: bool,
    pub payload_type: u8,
    pub timestamp: u32,
    /// Offset of the payload: after CSRCs and the header extension.
    pub payload_at: usize,
}

/// Whether a datagram that starts like RTP (RFC 7983: 128..=191) is RTCP (RFC 5761: packet
/// types 192..=223 sit where RTP has marker + payload type).
pub fn is_rtcp(packet: &[u8]) -> bool {
    packet.get(1).is_some_and(|b| (192..=223).contains(b))
}

/// Parses the header of an RTP packet (version 2).
pub fn header(packet: &[u8]) -> Option<Header> {
    let (b0, b1) = (*packet.first()?, *packet.get(1)?);
    if b0 >> 6 != 2 {
        return None;
    }
    let timestamp = u32::from_be_bytes(packet.get(4..8)?.try_into().ok()?);
    let mut payload_at = 12 + 4 * (b0 & 0x0f) as usize;
    if b0 & 0x10 != 0 {
        let words = packet.get(payload_at + 2..payload_at + 4)?;
        payload_at += 4 + 4 * u16::from_be_bytes([words[0], words[1]]) as usize;
    }
    (packet.len() >= payload_at).then_some(Header {
        marker: b1 & 0x80 != 0,
        payload_type: b1 & 0x7f,
        timestamp,
        payload_at,
    })
}

/// What the start of a frame told about its stamp.
#[derive(Debug, PartialEq, Eq)]
pub enum Scan {
    /// The publisher's stamp: microseconds since the Unix epoch.
    Stamp(u64),
    /// Only NAL units that may precede the stamp (SPS, PPS, AUD, other SEI): look in the next
    /// packet of the frame.
    Continue,
    /// A slice or a fragment came first: this frame carries no stamp.
    Stop,
}

/// The verdict on one NAL unit (`nal` from its header byte on).
fn scan_nal(nal: &[u8]) -> Scan {
    match nal.first().map(|h| h & 0x1f) {
        Some(6) => {
            // `stamp::read` takes AVCC: four length bytes (not read), then the NAL unit.
            let mut avcc = [0u8; 64];
            let n = nal.len().min(avcc.len() - 4);
            avcc[4..4 + n].copy_from_slice(&nal[..n]);
            stamp::read(&avcc[..4 + n]).map_or(Scan::Continue, Scan::Stamp)
        }
        Some(7..=9) => Scan::Continue,
        _ => Scan::Stop,
    }
}

/// Looks for the stamp in the (decrypted) H.264 payload of one packet: a single NAL unit, a
/// STAP-A of several, or the first fragment (FU-A) of one.
pub fn scan(payload: &[u8]) -> Scan {
    let Some(&indicator) = payload.first() else {
        return Scan::Stop;
    };
    match indicator & 0x1f {
        1..=23 => scan_nal(payload),
        24 => {
            let mut at = 1;
            while let Some(size) = payload.get(at..at + 2) {
                let size = u16::from_be_bytes([size[0], size[1]]) as usize;
                let Some(nal) = payload.get(at + 2..at + 2 + size) else {
                    return Scan::Stop;
                };
                match scan_nal(nal) {
                    Scan::Continue => at += 2 + size,
                    verdict => return verdict,
                }
            }
            Scan::Continue
        }
        28 => {
            let Some(&fu_header) = payload.get(1) else {
                return Scan::Stop;
            };
            if fu_header & 0x80 == 0 {
                return Scan::Stop;
            }
            // The NAL header is the indicator's F and NRI with the fragment header's type; the
            // stamp lies well within the first fragment.
            let mut nal = [0u8; 48];
            nal[0] = (indicator & 0xe0) | (fu_header & 0x1f);
            let rest = payload.get(2..).unwrap_or_default();
            let n = rest.len().min(nal.len() - 1);
            nal[1..1 + n].copy_from_slice(&rest[..n]);
            scan_nal(&nal[..1 + n])
        }
        _ => Scan::Stop,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SENT: u64 = 1_795_000_000_123_456;

    /// The stamp's NAL unit, without its AVCC length.
    fn sei() -> Vec<u8> {
        stamp::sei(SENT)[4..].to_vec()
    }

    fn stap_a(nals: &[&[u8]]) -> Vec<u8> {
        let mut out = vec![0x78];
        for nal in nals {
            out.extend_from_slice(&(nal.len() as u16).to_be_bytes());
            out.extend_from_slice(nal);
        }
        out
    }

    #[test]
    fn finds_the_stamp_alone_in_a_stap_a_and_in_a_first_fragment() {
        assert_eq!(scan(&sei()), Scan::Stamp(SENT));
        let sps = [0x67, 0x4d, 0x40, 0x1f, 0x96];
        let pps = [0x68, 0xee, 0x3c, 0x80];
        let idr = [0x65, 0x88, 0x84, 0x00];
        assert_eq!(
            scan(&stap_a(&[&sps, &pps, &sei(), &idr])),
            Scan::Stamp(SENT)
        );
        assert_eq!(scan(&stap_a(&[&sps, &pps])), Scan::Continue);
        assert_eq!(scan(&stap_a(&[&sps, &idr, &sei()])), Scan::Stop);
        // FU-A: indicator (NRI of the SEI, type 28), header (start, type 6), then the SEI's
        // payload after its NAL header.
        let unit = sei();
        let mut fu = vec![(unit[0] & 0xe0) | 28, 0x80 | 6];
        fu.extend_from_slice(&unit[1..]);
        fu.extend_from_slice(&[0x55; 900]);
        assert_eq!(scan(&fu), Scan::Stamp(SENT));
        // A middle fragment, a parameter set alone, an IDR slice.
        fu[1] = 6;
        assert_eq!(scan(&fu), Scan::Stop);
        assert_eq!(scan(&sps), Scan::Continue);
        assert_eq!(scan(&idr), Scan::Stop);
        // Another SEI (an encoder's) is passed over; truncated input never panics.
        assert_eq!(scan(&[0x06, 0x05, 0x02, 0xaa, 0xbb, 0x80]), Scan::Continue);
        assert_eq!(scan(&[0x78, 0x00, 0x40, 0x67]), Scan::Stop);
        assert_eq!(scan(&[0x7c]), Scan::Stop);
        assert_eq!(scan(&[]), Scan::Stop);
    }

    #[test]
    fn reads_headers_with_csrcs_and_extensions() {
        let mut packet = vec![0x80, 0x80 | 102, 0, 1, 0, 0, 0x0b, 0xb8, 1, 2, 3, 4, 0x65];
        assert_eq!(
            header(&packet),
            Some(Header {
                marker: true,
                payload_type: 102,
                timestamp: 3000,
                payload_at: 12
            })
        );
        // One CSRC and a one-word extension.
        packet = vec![
            0x91, 111, 0, 1, 0, 0, 0, 1, 1, 2, 3, 4, 9, 9, 9, 9, 0xbe, 0xde, 0, 1,
        ];
        packet.extend_from_slice(&[0x10, 0xff, 0, 0, 0xfc]);
        let h = header(&packet).unwrap();
        assert_eq!((h.marker, h.payload_type, h.payload_at), (false, 111, 24));
        assert_eq!(header(&packet[..18]), None);
        assert_eq!(header(&[0x40, 0]), None);
        assert!(is_rtcp(&[0x80, 200]) && !is_rtcp(&[0x80, 0x80 | 102]));
    }
}
