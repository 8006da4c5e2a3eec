//! The AAC-LC encoder every transcoder to AAC shares ([`super::OpusToAac`],
//! [`super::G711ToAac`]): fdk-aac at 48 kHz, raw transport (no ADTS; the AudioSpecificConfig
//! travels apart), with the encoder's delay compensated and unit timestamps from a sample clock.
//! The caller keeps its own input clock (gaps, duplicates, jumps) and tells this one where each
//! timeline starts.
//!
//! Invariants:
//! - Every unit holds [`AAC_FRAME_SAMPLES`] samples per channel; unit `n` of a timeline carries
//!   `origin + n * 1024 / 48 kHz` (µs, rounded down from the sample count, so rounding never
//!   accumulates), where `origin` is what [`AacEncoder::restart`] was given. AAC-LC has no
//!   reordering: the dts is also the pts.
//! - The encoder's delay is compensated: each timeline starts with just enough silence (the
//!   lead-in) that priming plus silence fills whole units, and those units are dropped. A unit's
//!   dts is then the time of the first input sample it carries. The dropped priming means a
//!   player's decoder lacks the first unit's overlap: a timeline's first ~10 ms fade in.
//! - fdk-aac cannot be reset: every timeline after the first gets a new encoder, made before
//!   anything else changes, so that a failure leaves the encoder as it was.
//! - An encoder error is returned in place of the call's units; what the encoder took is gone,
//!   what it did not take waits for the next call. No input makes this module panic or loop
//!   without bound.

use bytes::Bytes;
use fdk_aac::enc::{AudioObjectType, BitRate, ChannelMode, Encoder, EncoderParams, Transport};

use super::{samples_to_us, AudioError, OPUS_SAMPLE_RATE};

/// Samples per channel in one AAC-LC access unit.
pub const AAC_FRAME_SAMPLES: usize = 1024;
/// The AAC spec's maximum unit for one channel (6144 bits), used if the encoder reports nothing.
const AAC_MAX_UNIT_BYTES_PER_CHANNEL: usize = 768;
/// The encoder's output rate: 48 kHz, the Opus rate, which every AAC decoder a browser uses takes.
const AAC_SAMPLE_RATE: u32 = OPUS_SAMPLE_RATE;

/// One raw AAC-LC access unit (no ADTS header), 1024 samples per channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AacUnit {
    pub data: Bytes,
    pub dts_us: i64,
}

/// fdk-aac AAC-LC at 48 kHz with the delay compensation and unit clock of the module
/// documentation.
pub(super) struct AacEncoder {
    encoder: Encoder,
    /// 1 or 2: the layout of the input samples and of the output.
    channels: usize,
    bitrate: u32,
    asc: Bytes,
    /// Silence (samples per channel) put before a timeline's first input so that it and the
    /// encoder's priming make whole units.
    lead_in: usize,
    /// Units made of priming and lead-in only, dropped at each timeline start.
    priming_units: u64,
    /// The timeline's unit clock; `None` before the first, while the encoder holds no audio.
    clock: Option<UnitClock>,
    /// Interleaved 48 kHz audio the encoder has not taken yet.
    pending: Vec<i16>,
    /// Scratch: one encoded unit.
    unit: Vec<u8>,
}

/// The unit clock of one timeline: what to drop, and the dts of what is kept.
#[derive(Debug)]
struct UnitClock {
    /// dts of the timeline's first unit.
    origin_us: i64,
    /// Units emitted in this timeline.
    units: u64,
    /// Units still to drop: the encoder's priming and the lead-in.
    skip_units: u64,
}

impl UnitClock {
    /// Counts one encoded unit: `None` if it is to be dropped, else its dts.
    fn next_dts_us(&mut self) -> Option<i64> {
        if self.skip_units > 0 {
            self.skip_units -= 1;
            return None;
        }
        let samples = self.units.saturating_mul(AAC_FRAME_SAMPLES as u64);
        self.units = self.units.saturating_add(1);
        Some(
            self.origin_us
                .saturating_add(samples_to_us(samples, AAC_SAMPLE_RATE)),
        )
    }
}

/// The codec handle and the buffers tell nothing useful: only the clock is shown.
impl std::fmt::Debug for AacEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("AacEncoder").field(&self.clock).finish()
    }
}

fn new_encoder(channels: usize, bitrate: u32) -> Result<Encoder, AudioError> {
    let mode = if channels == 1 {
        ChannelMode::Mono
    } else {
        ChannelMode::Stereo
    };
    Encoder::new(EncoderParams {
        bit_rate: BitRate::Cbr(bitrate),
        sample_rate: AAC_SAMPLE_RATE,
        transport: Transport::Raw,
        channels: mode,
        audio_object_type: AudioObjectType::Mpeg4LowComplexity,
    })
    .map_err(|e| AudioError::AacEncode(e.to_string()))
}

impl AacEncoder {
    /// `channels`: 1 or 2 (anything else is taken for 2); `bitrate`: constant, in bits/s.
    pub(super) fn new(channels: usize, bitrate: u32) -> Result<Self, AudioError> {
        let channels = if channels == 1 { 1 } else { 2 };
        let encoder = new_encoder(channels, bitrate)?;
        let info = encoder
            .info()
            .map_err(|e| AudioError::AacEncode(e.to_string()))?;
        let conf_len = usize::try_from(info.confSize)
            .unwrap_or(0)
            .min(info.confBuf.len());
        let asc = Bytes::copy_from_slice(&info.confBuf[..conf_len]);
        if asc.is_empty() || usize::try_from(info.frameLength).ok() != Some(AAC_FRAME_SAMPLES) {
            return Err(AudioError::AacEncode(format!(
                "unexpected encoder setup: {} byte config, {} samples per frame",
                asc.len(),
                info.frameLength
            )));
        }
        let delay = usize::try_from(info.nDelay).unwrap_or(0);
        let lead_in = (AAC_FRAME_SAMPLES - delay % AAC_FRAME_SAMPLES) % AAC_FRAME_SAMPLES;
        let max_unit = usize::try_from(info.maxOutBufBytes)
            .unwrap_or(0)
            .max(AAC_MAX_UNIT_BYTES_PER_CHANNEL * channels);
        Ok(AacEncoder {
            encoder,
            channels,
            bitrate,
            asc,
            lead_in,
            priming_units: ((lead_in + delay) / AAC_FRAME_SAMPLES) as u64,
            clock: None,
            // Room for the longest Opus packet (120 ms) on top of a lead-in and a partial unit.
            pending: Vec::with_capacity(8 * AAC_FRAME_SAMPLES * channels),
            unit: vec![0; max_unit],
        })
    }

    /// The AudioSpecificConfig of the output (AAC-LC, 48 kHz, the channel count): the FLV AAC
    /// sequence header body / the fMP4 esds decoder-specific info.
    pub(super) fn audio_specific_config(&self) -> Bytes {
        self.asc.clone()
    }

    /// Starts a timeline whose first unit carries `origin_us`: a fresh encoder (after the first
    /// timeline), nothing buffered but the lead-in silence. On error nothing has changed.
    pub(super) fn restart(&mut self, origin_us: i64) -> Result<(), AudioError> {
        if self.clock.is_some() {
            // fdk-aac cannot be reset, and its buffered audio belongs to the old timeline.
            self.encoder = new_encoder(self.channels, self.bitrate)?;
        }
        self.clock = Some(UnitClock {
            origin_us,
            units: 0,
            skip_units: self.priming_units,
        });
        self.pending.clear();
        self.pending.resize(self.lead_in * self.channels, 0);
        Ok(())
    }

    /// The interleaved 48 kHz audio waiting for [`AacEncoder::encode`]: append to it, and take
    /// back only what was appended since the last call.
    pub(super) fn pending(&mut self) -> &mut Vec<i16> {
        &mut self.pending
    }

    /// Encodes every whole unit the pending audio completes (none before the first timeline).
    pub(super) fn encode(&mut self) -> Result<Vec<AacUnit>, AudioError> {
        let Some(clock) = &mut self.clock else {
            return Ok(Vec::new());
        };
        let frame = AAC_FRAME_SAMPLES * self.channels;
        let mut units = Vec::with_capacity(self.pending.len() / frame + 1);
        let mut start = 0;
        let mut result = Ok(());
        // fdk-aac takes what fits its input buffer and returns at most one unit per call, so it
        // is called until it neither takes nor returns anything. Bounded all the same: a
        // misbehaving encoder must not hang the task; what it left waits for the next call.
        for _ in 0..self.pending.len() / frame + 8 {
            let step = match self.encoder.encode(&self.pending[start..], &mut self.unit) {
                Ok(step) => step,
                Err(e) => {
                    result = Err(AudioError::AacEncode(e.to_string()));
                    break;
                }
            };
            start = start
                .saturating_add(step.input_consumed)
                .min(self.pending.len());
            if step.output_size > 0 {
                if let Some(dts_us) = clock.next_dts_us() {
                    let len = step.output_size.min(self.unit.len());
                    units.push(AacUnit {
                        data: Bytes::copy_from_slice(&self.unit[..len]),
                        dts_us,
                    });
                }
            } else if step.input_consumed == 0 {
                break;
            }
        }
        self.pending.drain(..start);
        result?;
        Ok(units)
    }
}
