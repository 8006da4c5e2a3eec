//! The publisher's wall-clock stamp in each video frame: an H.264 SEI NAL unit (user data
//! unregistered, payload type 5) put in front of the frame's NAL units. Every server passes it
//! through untouched, so a player reads, per frame, when the publisher sent it.
//!
//! Invariant: the stamp holds no zero bytes (a fixed UUID without zeros, the time as 16 hex
//! digits), so no emulation-prevention byte is ever needed and it is read back at a fixed place.

/// Identifies our SEI among others an encoder may write.
const UUID: [u8; 16] = *b"mediarouter-tsUS";
/// NAL header (SEI), payload type 5, payload size (16 + 16), then UUID and 16 hex digits, then
/// the RBSP stop bit.
const NAL_LEN: usize = 1 + 1 + 1 + 16 + 16 + 1;

/// The SEI NAL unit, with its 4-byte AVCC length, stamped with `unix_us`.
pub fn sei(unix_us: u64) -> [u8; 4 + NAL_LEN] {
    let mut out = [0u8; 4 + NAL_LEN];
    out[..4].copy_from_slice(&(NAL_LEN as u32).to_be_bytes());
    out[4] = 0x06;
    out[5] = 5;
    out[6] = 32;
    out[7..23].copy_from_slice(&UUID);
    out[23..39].copy_from_slice(format!("{unix_us:016x}").as_bytes());
    out[39] = 0x80;
    out
}

/// An AVCC frame with our SEI, stamped now, in front of its NAL units.
pub fn stamped(avcc: &[u8]) -> bytes::Bytes {
    let sei = sei(now_us());
    let mut body = bytes::BytesMut::with_capacity(sei.len() + avcc.len());
    body.extend_from_slice(&sei);
    body.extend_from_slice(avcc);
    body.freeze()
}

/// The stamp of an AVCC frame (NAL units with 4-byte lengths) that starts with our SEI.
pub fn read(avcc: &[u8]) -> Option<u64> {
    let nal = avcc.get(4..4 + NAL_LEN)?;
    if nal[0] & 0x1f != 6 || nal[1] != 5 || nal[3..19] != UUID {
        return None;
    }
    let digits = std::str::from_utf8(&nal[19..35]).ok()?;
    u64::from_str_radix(digits, 16).ok()
}

/// Microseconds since the Unix epoch.
pub fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_stamp_reads_back() {
        let mut frame = super::sei(1_795_000_000_123_456).to_vec();
        frame.extend_from_slice(&[0, 0, 0, 2, 0x65, 0x88]);
        assert_eq!(super::read(&frame), Some(1_795_000_000_123_456));
        // The NAL unit itself (after its 4-byte length) never holds a zero byte.
        assert!(!super::sei(0x0001_0000_0000)[4..].contains(&0));
        assert_eq!(super::read(&frame[4..]), None);
    }
}
