//! H.264 decoder configuration (AVCDecoderConfigurationRecord, ISO 14496-15): SPS/PPS and what
//! they say about the picture.

use super::CodecError;
use crate::media::TrackInfo;
use h264_reader::nal::sps::SeqParameterSet;
use h264_reader::rbsp::{decode_nal, BitReader};

/// The parameter sets and NAL length size of an AVCDecoderConfigurationRecord.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AvcConfig {
    pub profile_idc: u8,
    pub constraint_flags: u8,
    pub level_idc: u8,
    pub nal_length_size: u8,
    pub sps: Vec<Vec<u8>>,
    pub pps: Vec<Vec<u8>>,
}

impl AvcConfig {
    pub fn parse(record: &[u8]) -> Result<AvcConfig, CodecError> {
        let truncated = || CodecError::Truncated {
            what: "AVC decoder configuration",
            len: record.len(),
        };
        if record.len() < 6 {
            return Err(truncated());
        }
        if record[0] != 1 {
            return Err(CodecError::Invalid {
                what: "AVC decoder configuration",
                reason: format!("version {} (expected 1)", record[0]),
            });
        }
        let mut pos = 5;
        let read_sets = |count: usize, pos: &mut usize| -> Result<Vec<Vec<u8>>, CodecError> {
            let mut sets = Vec::with_capacity(count);
            for _ in 0..count {
                let len_bytes = record.get(*pos..*pos + 2).ok_or_else(truncated)?;
                let len = u16::from_be_bytes([len_bytes[0], len_bytes[1]]) as usize;
                let set = record.get(*pos + 2..*pos + 2 + len).ok_or_else(truncated)?;
                sets.push(set.to_vec());
                *pos += 2 + len;
            }
            Ok(sets)
        };
        let sps_count = (record[pos] & 0x1f) as usize;
        pos += 1;
        let sps = read_sets(sps_count, &mut pos)?;
        let pps_count = *record.get(pos).ok_or_else(truncated)? as usize;
        pos += 1;
        let pps = read_sets(pps_count, &mut pos)?;
        Ok(AvcConfig {
            profile_idc: record[1],
            constraint_flags: record[2],
            level_idc: record[3],
            nal_length_size: (record[4] & 0x03) + 1,
            sps,
            pps,
        })
    }

    /// Resolution from the first SPS, profile and level from the record.
    pub fn track_info(&self) -> TrackInfo {
        let dimensions = self.sps.first().and_then(|sps| sps_dimensions(sps));
        TrackInfo {
            width: dimensions.map(|d| d.0),
            height: dimensions.map(|d| d.1),
            profile: Some(profile_name(self.profile_idc, self.constraint_flags).to_string()),
            level: Some(format!("{}.{}", self.level_idc / 10, self.level_idc % 10)),
            ..TrackInfo::default()
        }
    }
}

/// Width and height in pixels from an SPS NAL unit (header byte included).
pub fn sps_dimensions(sps_nal: &[u8]) -> Option<(u32, u32)> {
    let rbsp = decode_nal(sps_nal).ok()?;
    let sps = SeqParameterSet::from_bits(BitReader::new(&rbsp[..])).ok()?;
    sps.pixel_dimensions().ok()
}

fn profile_name(profile_idc: u8, constraint_flags: u8) -> &'static str {
    match profile_idc {
        66 if constraint_flags & 0x40 != 0 => "Constrained Baseline",
        66 => "Baseline",
        77 => "Main",
        88 => "Extended",
        100 => "High",
        110 => "High 10",
        122 => "High 4:2:2",
        244 => "High 4:4:4",
        _ => "Unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decoder configuration written by ffmpeg/libx264 for 640x360 baseline level 3.0.
    pub const RECORD_640X360: &[u8] = &[
        0x01, 0x42, 0xc0, 0x1e, 0xff, 0xe1, 0x00, 0x19, 0x67, 0x42, 0xc0, 0x1e, 0xd9, 0x00, 0xa0,
        0x2f, 0xf9, 0x70, 0x11, 0x00, 0x00, 0x03, 0x00, 0x01, 0x00, 0x00, 0x03, 0x00, 0x3c, 0x0f,
        0x16, 0x2e, 0x48, 0x01, 0x00, 0x05, 0x68, 0xcb, 0x83, 0xcb, 0x20,
    ];

    #[test]
    fn parses_record_and_sps() {
        let config = AvcConfig::parse(RECORD_640X360).expect("valid record");
        assert_eq!(config.nal_length_size, 4);
        assert_eq!(config.sps.len(), 1);
        // The whole PPS, through its RBSP stop bit in the last byte, and nothing after it.
        assert_eq!(config.pps, vec![vec![0x68, 0xcb, 0x83, 0xcb, 0x20]]);
        let info = config.track_info();
        assert_eq!((info.width, info.height), (Some(640), Some(360)));
        assert_eq!(info.profile.as_deref(), Some("Constrained Baseline"));
        assert_eq!(info.level.as_deref(), Some("3.0"));
    }

    #[test]
    fn rejects_truncated_record() {
        assert!(AvcConfig::parse(&RECORD_640X360[..20]).is_err());
        assert!(AvcConfig::parse(&[1, 2]).is_err());
    }
}
