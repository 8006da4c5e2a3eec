//! Audio transcoding between RTMP/RTSP and WebRTC: AAC access units to 20 ms Opus packets at
//! 48 kHz for WebRTC viewers here, and Opus from WebRTC publishers to AAC-LC for RTMP and fMP4
//! players in [`opus_to_aac`] ([`OpusToAac`], with its own timing rules).
//!
//! [`AacToOpus`] decodes with fdk-aac (AAC-LC, HE-AAC, HE-AACv2), mixes to the Opus channel count
//! (mono stays mono, everything else becomes stereo), resamples to 48 kHz with a band-limited
//! polyphase filter ([`resample`]) and encodes with libopus. It is sans-IO: the caller owns the
//! task, feeds units with their decode timestamps and sends the packets on. One per stream, never
//! per viewer.
//!
//! Every transcoder here encodes through one of two shared encoders, which own the output side's
//! timing: `opus_encoder` (20 ms framing, libopus, packet clock) for [`AacToOpus`] and
//! [`G711ToOpus`], `aac_encoder` (fdk-aac AAC-LC, AudioSpecificConfig, priming compensation, unit
//! clock) for [`OpusToAac`] and [`G711ToAac`]. The transcoders keep the input side: decoding, gap
//! and jump detection, and where each timeline starts.
//!
//! Invariants of [`AacToOpus`]:
//! - Every packet holds 960 samples per channel (20 ms); a timeline's first packet carries the
//!   dts of the unit that started it and each later one exactly 20 000 µs more, so pts never goes
//!   backwards within a timeline.
//! - A new timeline starts at the first unit and whenever a dts misses the expected one (from the
//!   decoded sample count) by more than [`MAX_DTS_DRIFT_US`] either way; buffered audio is dropped
//!   then. A smaller forward gap (a lost unit) is filled with silence so that later packets stay
//!   in step with the input timestamps.
//! - The decoder's own output delay is discarded at each timeline start, so packet timestamps
//!   match the AAC timestamps of the same sound (Opus adds its 6.5 ms look-ahead on top, which
//!   RTP cannot signal and players do not compensate).
//! - A unit that cannot be decoded returns an error and changes nothing: the next one decodes.
//!   No input makes this module panic.

mod aac_encoder;
pub mod g711;
mod opus_encoder;
mod opus_to_aac;
#[cfg(test)]
mod opus_to_aac_tests;
mod resample;
#[cfg(test)]
mod test_support;
#[cfg(test)]
mod tests;

pub use self::aac_encoder::{AacUnit, AAC_FRAME_SAMPLES};
pub use self::g711::{G711Law, G711ToAac, G711ToOpus};
pub use self::opus_encoder::OpusPacket;
pub use self::opus_to_aac::OpusToAac;

use fdk_aac::dec::{Decoder, Transport};
use thiserror::Error;

use self::opus_encoder::OpusEncoder;
use self::resample::Resampler;
use super::aac::AudioSpecificConfig;

/// Opus's native rate, the only one WebRTC peers are sure to accept.
pub const OPUS_SAMPLE_RATE: u32 = 48_000;
/// Samples per channel in one Opus packet (20 ms at 48 kHz, the WebRTC default packetisation).
pub const OPUS_FRAME_SAMPLES: usize = 960;
/// Duration of one Opus packet.
pub const OPUS_FRAME_US: u32 = 20_000;
/// How far a unit's dts may stray from the one the sample count predicts before the transcoder
/// treats it as a new timeline (republish, camera reconnect) rather than jitter or a lost unit.
pub const MAX_DTS_DRIFT_US: i64 = 200_000;

const OPUS_BITRATE_MONO: i32 = 64_000;
const OPUS_BITRATE_STEREO: i32 = 96_000;
/// fdk-aac's own output buffer size: 8 channels of 2048 samples (an HE-AAC frame). A frame that
/// would not fit is reported by the decoder as an error rather than written.
const PCM_CAPACITY: usize = 8 * 2048;
/// The AAC spec's per-channel maximum (6144 bits) times fdk-aac's 8 output channels. Anything
/// longer is not an access unit, and would only partly fit the decoder's input buffer.
pub const MAX_ACCESS_UNIT_BYTES: usize = 8 * 768;
/// The highest AAC sampling rate; a decoder reporting more is not trusted.
const MAX_AAC_RATE: u32 = 96_000;

/// Why a configuration, an access unit or a packet could not be transcoded.
#[derive(Debug, Error)]
pub enum AudioError {
    #[error("unusable AAC AudioSpecificConfig: {0}")]
    Config(String),
    #[error("empty AAC access unit")]
    EmptyUnit,
    #[error("AAC access unit of {0} bytes is longer than any valid one ({MAX_ACCESS_UNIT_BYTES})")]
    UnitTooLarge(usize),
    #[error("AAC access unit could not be decoded: {0}")]
    Decode(&'static str),
    #[error("AAC decoder produced unusable audio: {0}")]
    DecodedFormat(String),
    #[error("Opus encoder: {0}")]
    Encode(#[from] opus::Error),
    #[error("unsupported channel count {0}: 1 or 2")]
    Channels(u8),
    #[error("empty Opus packet")]
    EmptyPacket,
    #[error("Opus packet of {0} samples per channel (2.5 to 120 ms at 48 kHz)")]
    PacketDuration(usize),
    #[error("Opus packet could not be decoded: {0}")]
    OpusDecode(opus::Error),
    #[error("AAC encoder: {0}")]
    AacEncode(String),
}

/// The sample-count clock of one timeline's input (the output's is in [`OpusEncoder`]).
#[derive(Debug)]
struct Timeline {
    /// Input time already converted to µs (folded in when the decoded rate changes).
    input_base_us: i64,
    /// Samples per channel at `input_rate` since `input_base_us`.
    input_samples: u64,
    input_rate: u32,
    /// Decoder output (samples per channel) still to discard: its delay line at the start.
    skip: usize,
}

impl Timeline {
    fn new(origin_us: i64, input_rate: u32, skip: usize) -> Self {
        Timeline {
            input_base_us: origin_us,
            input_samples: 0,
            input_rate,
            skip,
        }
    }

    /// The dts the next unit should carry if no unit was lost.
    fn expected_dts_us(&self) -> i64 {
        self.input_base_us
            .saturating_add(samples_to_us(self.input_samples, self.input_rate))
    }

    fn advance_input(&mut self, samples: usize, rate: u32) {
        if rate != self.input_rate {
            self.input_base_us = self.expected_dts_us();
            self.input_samples = 0;
            self.input_rate = rate;
        }
        self.input_samples = self.input_samples.saturating_add(samples as u64);
    }
}

fn samples_to_us(samples: u64, rate: u32) -> i64 {
    if rate == 0 {
        return 0;
    }
    let us = u128::from(samples) * 1_000_000 / u128::from(rate);
    i64::try_from(us).unwrap_or(i64::MAX)
}

/// What the decoder made of one access unit (the samples are in `AacToOpus::pcm`).
#[derive(Debug, Clone, Copy)]
struct Decoded {
    /// Samples per channel.
    samples: usize,
    channels: usize,
    rate: u32,
    /// The decoder's output delay in samples per channel.
    delay: usize,
}

/// AAC to Opus for one stream. See the module documentation for the timing rules.
pub struct AacToOpus {
    decoder: Decoder,
    /// Its clock starts at the dts of the unit that started the timeline.
    opus: OpusEncoder,
    /// Opus channel count (1 or 2), fixed at creation from the AudioSpecificConfig.
    channels: usize,
    /// Duration of the last decoded frame: a forward dts gap of half of it means a lost unit.
    frame_us: i64,
    /// The decoded rate `resampler` converts from (48 kHz: none needed).
    decoded_rate: u32,
    resampler: Option<Resampler>,
    timeline: Option<Timeline>,
    /// Scratch: the decoder's interleaved output.
    pcm: Vec<i16>,
    /// Scratch: one decoded frame (or inserted silence) as float in the Opus channel layout.
    mixed: Vec<f32>,
}

impl std::fmt::Debug for AacToOpus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AacToOpus")
            .field("channels", &self.channels)
            .field("decoded_rate", &self.decoded_rate)
            .field("timeline", &self.timeline)
            .field("opus", &self.opus)
            .finish_non_exhaustive()
    }
}

impl AacToOpus {
    /// `asc`: the AAC AudioSpecificConfig (the FLV AAC sequence header body / RTSP config).
    pub fn new(asc: &[u8]) -> Result<Self, AudioError> {
        let config =
            AudioSpecificConfig::parse(asc).map_err(|e| AudioError::Config(e.to_string()))?;
        if config.sample_rate == 0 || config.sample_rate > MAX_AAC_RATE {
            return Err(AudioError::Config(format!(
                "sampling rate {} Hz",
                config.sample_rate
            )));
        }
        // Mono stays mono. Parametric stereo (object type 29) is stereo behind a mono channel
        // configuration; 0 means a program config element, where only decoding tells.
        let channels = match (config.object_type, config.channels) {
            (29, _) => 2,
            (_, 1) => 1,
            _ => 2,
        };

        let mut decoder = Decoder::new(Transport::Raw);
        // Had opening failed (out of memory), the handle is null: config_raw then reports an
        // invalid handle before anything reads the stream info through it.
        decoder
            .config_raw(asc)
            .map_err(|e| AudioError::Config(e.message().to_string()))?;
        // fdk-aac mixes down with the stream's own downmix coefficients when it has them, which
        // beats guessing a channel layout here.
        decoder
            .set_max_output_channels(channels)
            .map_err(|e| AudioError::Config(e.message().to_string()))?;

        let bitrate = if channels == 1 {
            OPUS_BITRATE_MONO
        } else {
            OPUS_BITRATE_STEREO
        };

        Ok(AacToOpus {
            decoder,
            opus: OpusEncoder::new(channels, bitrate)?,
            channels,
            frame_us: samples_to_us(1024, config.sample_rate),
            decoded_rate: OPUS_SAMPLE_RATE,
            resampler: None,
            timeline: None,
            pcm: vec![0; PCM_CAPACITY],
            mixed: Vec::with_capacity(PCM_CAPACITY),
        })
    }

    /// 1 or 2, what the Opus stream carries.
    pub fn channels(&self) -> u8 {
        if self.channels == 1 {
            1
        } else {
            2
        }
    }

    /// One raw AAC access unit (no ADTS header) with its decode timestamp in microseconds.
    /// Returns the Opus packets completed by it (20 ms each, 48 kHz), possibly none.
    pub fn push(&mut self, aac: &[u8], dts_us: i64) -> Result<Vec<OpusPacket>, AudioError> {
        let frame = self.decode(aac)?;
        self.use_rate(frame.rate)?;
        self.frame_us = samples_to_us(frame.samples as u64, frame.rate).max(1);

        if let Some(timeline) = &self.timeline {
            let drift = dts_us.saturating_sub(timeline.expected_dts_us());
            if drift.saturating_abs() > MAX_DTS_DRIFT_US {
                self.timeline = None;
            } else if drift >= self.frame_us / 2 {
                // A lost unit: keep later packets in step with the input timestamps.
                let missing = u128::from(drift.unsigned_abs()) * u128::from(frame.rate) / 1_000_000;
                self.mixed.clear();
                self.mixed
                    .resize(usize::try_from(missing).unwrap_or(0) * self.channels, 0.0);
                self.feed_mixed(frame.rate);
            }
        }
        if self.timeline.is_none() {
            // A new timeline does not continue the old sound: drop it and start the encoder and
            // the resampler afresh. The decoder's delay line still holds old (or no) audio: the
            // first `delay` samples it outputs are skipped.
            if let Some(resampler) = &mut self.resampler {
                resampler.reset();
            }
            self.opus.restart(dts_us)?;
            self.timeline = Some(Timeline::new(dts_us, frame.rate, frame.delay));
        }

        let skip = self.timeline.as_mut().map_or(0, |timeline| {
            let skip = timeline.skip.min(frame.samples);
            timeline.skip -= skip;
            skip
        });
        mix(
            &self.pcm[skip * frame.channels..frame.samples * frame.channels],
            frame.channels,
            self.channels,
            &mut self.mixed,
        );
        self.feed_mixed(frame.rate);
        // The skipped samples are decoder latency, not stream time: the unit's whole duration
        // counts.
        if let Some(timeline) = &mut self.timeline {
            timeline.advance_input(skip, frame.rate);
        }
        self.opus.encode()
    }

    /// Decodes one unit into `self.pcm`.
    fn decode(&mut self, aac: &[u8]) -> Result<Decoded, AudioError> {
        if aac.is_empty() {
            return Err(AudioError::EmptyUnit);
        }
        if aac.len() > MAX_ACCESS_UNIT_BYTES {
            return Err(AudioError::UnitTooLarge(aac.len()));
        }
        let filled = self
            .decoder
            .fill(aac)
            .map_err(|e| AudioError::Decode(e.message()));
        // Decode even when the fill fell short, so that no leftover bytes reach the next unit.
        let decoded = self
            .decoder
            .decode_frame(&mut self.pcm)
            .map_err(|e| AudioError::Decode(e.message()));
        if filled? != aac.len() {
            return Err(AudioError::Decode(
                "the unit did not fit the decoder's input buffer",
            ));
        }
        decoded?;

        let info = self.decoder.stream_info();
        let frame = Decoded {
            samples: usize::try_from(info.frameSize).unwrap_or(0),
            channels: usize::try_from(info.numChannels).unwrap_or(0),
            rate: u32::try_from(info.sampleRate).unwrap_or(0),
            delay: usize::try_from(info.outputDelay).unwrap_or(0),
        };
        // fdk-aac checks these itself before writing the output; checked again because the
        // slicing below relies on them.
        if frame.channels == 0
            || frame.samples == 0
            || frame.channels * frame.samples > self.pcm.len()
        {
            return Err(AudioError::DecodedFormat(format!(
                "{} channels of {} samples",
                frame.channels, frame.samples
            )));
        }
        if frame.rate == 0 || frame.rate > MAX_AAC_RATE {
            return Err(AudioError::DecodedFormat(format!(
                "sampling rate {} Hz",
                frame.rate
            )));
        }
        Ok(frame)
    }

    /// Builds the resampler for a decoded rate: the first one, or a new one when the stream
    /// switches (HE-AAC's implicit SBR shows only in the audio).
    fn use_rate(&mut self, rate: u32) -> Result<(), AudioError> {
        if rate == self.decoded_rate {
            return Ok(());
        }
        self.resampler = if rate == OPUS_SAMPLE_RATE {
            None
        } else {
            let resampler = Resampler::new(rate, OPUS_SAMPLE_RATE, self.channels)
                .ok_or_else(|| AudioError::DecodedFormat(format!("sampling rate {rate} Hz")))?;
            Some(resampler)
        };
        self.decoded_rate = rate;
        Ok(())
    }

    /// Moves `self.mixed` (audio at `rate`) to the encoder at 48 kHz and counts it as input.
    fn feed_mixed(&mut self, rate: u32) {
        let pending = self.opus.pending();
        match &mut self.resampler {
            Some(resampler) => resampler.process(&self.mixed, pending),
            None => pending.extend_from_slice(&self.mixed),
        }
        if let Some(timeline) = &mut self.timeline {
            timeline.advance_input(self.mixed.len() / self.channels, rate);
        }
    }
}

/// Converts interleaved 16-bit audio with `from` channels to float with `to` (1 or 2) channels.
fn mix(pcm: &[i16], from: usize, to: usize, out: &mut Vec<f32>) {
    const SCALE: f32 = 1.0 / 32768.0;
    out.clear();
    match (from, to) {
        (f, t) if f == t => out.extend(pcm.iter().map(|&s| f32::from(s) * SCALE)),
        (1, _) => out.extend(pcm.iter().flat_map(|&s| {
            let v = f32::from(s) * SCALE;
            [v, v]
        })),
        // fdk-aac was asked for at most `to` channels, so these two are for a decoder that
        // ignored it: its output order puts front left and right first.
        (_, 1) => out.extend(
            pcm.chunks_exact(from)
                .map(|frame| (f32::from(frame[0]) + f32::from(frame[1])) * 0.5 * SCALE),
        ),
        _ => out.extend(
            pcm.chunks_exact(from)
                .flat_map(|frame| [f32::from(frame[0]) * SCALE, f32::from(frame[1]) * SCALE]),
        ),
    }
}
