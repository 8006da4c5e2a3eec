//! AAC AudioSpecificConfig (ISO 14496-3): object type, sample rate and channels.

use super::CodecError;
use crate::media::TrackInfo;

const SAMPLE_RATES: [u32; 13] = [
    96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350,
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AudioSpecificConfig {
    pub object_type: u8,
    pub sample_rate: u32,
    pub channels: u8,
}

impl AudioSpecificConfig {
    pub fn parse(data: &[u8]) -> Result<Self, CodecError> {
        if data.len() < 2 {
            return Err(CodecError::Truncated {
                what: "AudioSpecificConfig",
                len: data.len(),
            });
        }
        let bits = u16::from_be_bytes([data[0], data[1]]);
        let object_type = (bits >> 11) as u8;
        let frequency_index = ((bits >> 7) & 0x0f) as usize;
        let channels = ((bits >> 3) & 0x0f) as u8;
        let sample_rate = match frequency_index {
            0x0f => {
                // An explicit 24-bit frequency follows the index.
                let b = data.get(1..5).ok_or(CodecError::Truncated {
                    what: "AudioSpecificConfig",
                    len: data.len(),
                })?;
                let raw = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
                (raw >> 7) & 0x00ff_ffff
            }
            i => *SAMPLE_RATES.get(i).ok_or_else(|| CodecError::Invalid {
                what: "AudioSpecificConfig",
                reason: format!("reserved sampling frequency index {i}"),
            })?,
        };
        Ok(AudioSpecificConfig {
            object_type,
            sample_rate,
            channels,
        })
    }

    pub fn track_info(&self) -> TrackInfo {
        TrackInfo {
            sample_rate: Some(self.sample_rate),
            channels: Some(self.channels),
            profile: Some(
                match self.object_type {
                    1 => "AAC Main",
                    2 => "AAC LC",
                    5 => "HE-AAC",
                    29 => "HE-AACv2",
                    _ => "AAC",
                }
                .to_string(),
            ),
            ..TrackInfo::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_lc_44100_stereo() {
        let asc = AudioSpecificConfig::parse(&[0x12, 0x10]).expect("valid");
        assert_eq!(asc.object_type, 2);
        assert_eq!(asc.sample_rate, 44100);
        assert_eq!(asc.channels, 2);
    }

    #[test]
    fn parses_48000_mono_and_rejects_short() {
        let asc = AudioSpecificConfig::parse(&[0x11, 0x88]).expect("valid");
        assert_eq!((asc.sample_rate, asc.channels), (48000, 1));
        assert!(AudioSpecificConfig::parse(&[0x12]).is_err());
    }
}
