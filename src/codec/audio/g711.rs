//! G.711 (ITU-T G.711: A-law and µ-law, 8 kHz mono, one byte a sample) from IP cameras: decoded
//! by table to 16-bit PCM, and transcoded for players that cannot take it: [`G711ToAac`] for
//! fMP4/MSE and RTMP players, [`G711ToOpus`] for browsers that do not offer PCMA/PCMU over
//! WebRTC. Both are sans-IO and made once per stream, like [`super::AacToOpus`].
//!
//! Both resample 8 kHz to 48 kHz with the band-limited resampler of [`super::resample`]. 48 kHz
//! for AAC too, rather than a rate nearer the source: every AAC decoder a browser uses takes it
//! (platform decoders are not all sure to take 8 or 16 kHz), and an AAC frame of 1024 samples
//! lasts 21 ms there against 64 ms at 16 kHz, which with the encoder's look-ahead would add about
//! 0.1 s of latency to the audio.
//!
//! Invariants (the timing rules of [`super::AacToOpus`] and [`super::OpusToAac`]):
//! - A timeline starts at the first payload and whenever a dts misses the one the sample count
//!   expects by more than [`MAX_DTS_DRIFT_US`] either way; buffered audio is dropped and the
//!   encoder starts afresh. A smaller forward gap of at least half a payload (lost packets) is
//!   filled with silence; a payload that far behind (duplicate, reordered) is dropped. Either
//!   way later output stays in step with the input timestamps.
//! - Output timestamps come from the sample count: AAC unit `n` of a timeline at
//!   `origin + n * 1024 / 48 kHz`, Opus packet `n` at `origin + n * 20 ms` (µs, rounded down
//!   from the count, never accumulated), where `origin` is the dts of the payload that started
//!   the timeline. AAC-LC and Opus have no reordering: dts is also pts.
//! - The AAC encoder's delay is compensated as in [`super::OpusToAac`] (silence lead-in plus
//!   dropped priming units): a unit's dts is the time of the first input sample it carries.
//!   Opus keeps its 6.5 ms look-ahead, as every WebRTC sender does.
//! - Any byte is a valid G.711 sample, so any payload decodes; an empty one changes nothing. No
//!   input makes this module panic.

#[cfg(test)]
#[path = "g711_tests.rs"]
mod tests;

use bytes::Bytes;
use fdk_aac::enc::{AudioObjectType, BitRate, ChannelMode, Encoder, EncoderParams, Transport};

use super::resample::Resampler;
use super::{
    samples_to_us, AacUnit, AudioError, OpusPacket, AAC_FRAME_SAMPLES, MAX_DTS_DRIFT_US,
    OPUS_FRAME_SAMPLES, OPUS_FRAME_US, OPUS_MAX_PACKET, OPUS_SAMPLE_RATE,
};
use crate::media::Codec;

/// G.711's only sampling rate.
pub const G711_SAMPLE_RATE: u32 = 8_000;
/// The source carries a 4 kHz band: AAC-LC spends few bits above it, so well under the 64 kb/s
/// of a full-band mono stream.
const AAC_BITRATE: u32 = 48_000;
/// Same reasoning for Opus, which is transparent for narrow-band audio at far less.
const OPUS_BITRATE: i32 = 32_000;
/// The AAC spec's maximum unit for one channel (6144 bits), used if the encoder reports nothing.
const AAC_MAX_UNIT_BYTES: usize = 768;
/// Jitter below this is never taken for a gap or a duplicate, however short the payloads
/// (millisecond timestamps, as FLV carries them, are off by up to 1 ms).
const MIN_GAP_US: i64 = 2_000;

/// Which of the two G.711 companding laws a payload uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum G711Law {
    /// A-law (PCMA, RTP payload type 8): Europe and most IP cameras.
    ALaw,
    /// µ-law (PCMU, RTP payload type 0): North America and Japan.
    MuLaw,
}

impl G711Law {
    /// The law of a PCMA or PCMU frame; `None` for any other codec.
    pub fn from_codec(codec: Codec) -> Option<G711Law> {
        match codec {
            Codec::Pcma => Some(G711Law::ALaw),
            Codec::Pcmu => Some(G711Law::MuLaw),
            _ => None,
        }
    }

    pub fn codec(self) -> Codec {
        match self {
            G711Law::ALaw => Codec::Pcma,
            G711Law::MuLaw => Codec::Pcmu,
        }
    }

    fn table(self) -> &'static [i16; 256] {
        match self {
            G711Law::ALaw => &ALAW_TO_LINEAR,
            G711Law::MuLaw => &MULAW_TO_LINEAR,
        }
    }

    /// One sample to 16-bit linear PCM.
    pub fn decode_sample(self, byte: u8) -> i16 {
        self.table()[usize::from(byte)]
    }

    /// Appends the samples of `payload` to `out` as 16-bit linear PCM (8 kHz mono).
    pub fn decode(self, payload: &[u8], out: &mut Vec<i16>) {
        let table = self.table();
        out.extend(payload.iter().map(|&b| table[usize::from(b)]));
    }
}

static ALAW_TO_LINEAR: [i16; 256] = alaw_table();
static MULAW_TO_LINEAR: [i16; 256] = mulaw_table();

const fn alaw_table() -> [i16; 256] {
    let mut table = [0i16; 256];
    let mut i = 0;
    while i < 256 {
        table[i] = alaw_to_linear(i as u8);
        i += 1;
    }
    table
}

const fn mulaw_table() -> [i16; 256] {
    let mut table = [0i16; 256];
    let mut i = 0;
    while i < 256 {
        table[i] = mulaw_to_linear(i as u8);
        i += 1;
    }
    table
}

/// A-law expansion (G.711 table 1): even bits are inverted on the line; a sign bit (set means
/// positive), a 3-bit segment and a 4-bit step, decoded to the middle of the step's interval.
/// The 13-bit result is scaled to 16 bits, so the extremes are ±32256.
const fn alaw_to_linear(code: u8) -> i16 {
    let a = code ^ 0x55;
    let step = ((a & 0x0f) as i16) << 4;
    let segment = (a & 0x70) >> 4;
    let magnitude = match segment {
        0 => step + 8,
        _ => (step + 0x108) << (segment - 1),
    };
    if a & 0x80 != 0 {
        magnitude
    } else {
        -magnitude
    }
}

/// µ-law expansion (G.711 table 2): all bits are inverted on the line; the biased (33) 14-bit
/// value is rebuilt from segment and step, scaled to 16 bits, so the extremes are ±32124.
const fn mulaw_to_linear(code: u8) -> i16 {
    const BIAS: i16 = 0x84;
    let u = !code;
    let segment = (u & 0x70) >> 4;
    let magnitude = ((((u & 0x0f) as i16) << 3) + BIAS) << segment;
    if u & 0x80 != 0 {
        BIAS - magnitude
    } else {
        magnitude - BIAS
    }
}

/// What a payload does to the timeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Placement {
    /// Its time is already covered: dropped.
    Late,
    /// It continues the timeline after `silence` samples (8 kHz) of lost audio.
    Continue { silence: usize },
    /// It starts a new timeline.
    Restart,
}

/// The input side both transcoders share: the 8 kHz sample clock, decoding and resampling.
#[derive(Debug)]
struct Input {
    law: G711Law,
    resampler: Resampler,
    /// dts of the payload that started the timeline, `None` before the first.
    origin_us: Option<i64>,
    /// 8 kHz samples taken in since the origin, decoded or silence.
    samples: u64,
    /// Scratch: one payload (and the silence before it) as float.
    decoded: Vec<f32>,
}

impl Input {
    fn new(law: G711Law) -> Result<Self, AudioError> {
        let resampler = Resampler::new(G711_SAMPLE_RATE, OPUS_SAMPLE_RATE, 1).ok_or_else(|| {
            AudioError::DecodedFormat(format!("no resampler from {G711_SAMPLE_RATE} Hz"))
        })?;
        Ok(Input {
            law,
            resampler,
            origin_us: None,
            samples: 0,
            decoded: Vec::with_capacity(G711_SAMPLE_RATE as usize / 10),
        })
    }

    fn place(&self, len: usize, dts_us: i64) -> Placement {
        let Some(origin_us) = self.origin_us else {
            return Placement::Restart;
        };
        let expected = origin_us.saturating_add(samples_to_us(self.samples, G711_SAMPLE_RATE));
        let drift = dts_us.saturating_sub(expected);
        if drift.saturating_abs() > MAX_DTS_DRIFT_US {
            return Placement::Restart;
        }
        let half_payload = (samples_to_us(len as u64, G711_SAMPLE_RATE) / 2).max(MIN_GAP_US);
        if drift <= -half_payload {
            Placement::Late
        } else if drift >= half_payload {
            // Within MAX_DTS_DRIFT_US, so a few thousand samples at most.
            let silence = drift * i64::from(G711_SAMPLE_RATE) / 1_000_000;
            Placement::Continue {
                silence: usize::try_from(silence).unwrap_or(0),
            }
        } else {
            Placement::Continue { silence: 0 }
        }
    }

    fn restart(&mut self, dts_us: i64) {
        self.origin_us = Some(dts_us);
        self.samples = 0;
        self.resampler.reset();
    }

    /// Decodes `silence` samples of nothing then `payload`, and appends them at 48 kHz to `out`.
    fn feed(&mut self, payload: &[u8], silence: usize, out: &mut Vec<f32>) {
        const SCALE: f32 = 1.0 / 32768.0;
        let table = self.law.table();
        self.decoded.clear();
        self.decoded.resize(silence, 0.0);
        self.decoded.extend(
            payload
                .iter()
                .map(|&b| f32::from(table[usize::from(b)]) * SCALE),
        );
        self.resampler.process(&self.decoded, out);
        self.samples = self
            .samples
            .saturating_add(silence as u64)
            .saturating_add(payload.len() as u64);
    }

    fn origin_us(&self) -> i64 {
        self.origin_us.unwrap_or(0)
    }
}

fn to_i16(sample: f32) -> i16 {
    // The resampler's overshoot on a full-scale edge can pass ±1.0.
    (sample * 32768.0).round().clamp(-32768.0, 32767.0) as i16
}

fn new_aac_encoder() -> Result<Encoder, AudioError> {
    Encoder::new(EncoderParams {
        bit_rate: BitRate::Cbr(AAC_BITRATE),
        sample_rate: OPUS_SAMPLE_RATE,
        transport: Transport::Raw,
        channels: ChannelMode::Mono,
        audio_object_type: AudioObjectType::Mpeg4LowComplexity,
    })
    .map_err(|e| AudioError::AacEncode(e.to_string()))
}

/// G.711 to AAC-LC (48 kHz mono) for one stream. See the module documentation for the timing
/// rules.
pub struct G711ToAac {
    input: Input,
    encoder: Encoder,
    asc: Bytes,
    /// Silence (samples) put before a timeline's first input so that it and the encoder's
    /// priming make whole units.
    lead_in: usize,
    /// Units made of priming and lead-in only, dropped at each timeline start.
    priming_units: u64,
    /// Units emitted in this timeline.
    units: u64,
    /// Units still to drop in this timeline.
    skip_units: u64,
    /// 48 kHz audio the encoder has not taken yet.
    pending: Vec<i16>,
    /// Scratch: one payload at 48 kHz.
    resampled: Vec<f32>,
    /// Scratch: one encoded unit.
    unit: Vec<u8>,
}

impl std::fmt::Debug for G711ToAac {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("G711ToAac")
            .field("law", &self.input.law)
            .field("origin_us", &self.input.origin_us)
            .field("units", &self.units)
            .finish_non_exhaustive()
    }
}

impl G711ToAac {
    pub fn new(law: G711Law) -> Result<Self, AudioError> {
        let encoder = new_aac_encoder()?;
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
            .max(AAC_MAX_UNIT_BYTES);
        Ok(G711ToAac {
            input: Input::new(law)?,
            encoder,
            asc,
            lead_in,
            priming_units: ((lead_in + delay) / AAC_FRAME_SAMPLES) as u64,
            units: 0,
            skip_units: 0,
            pending: Vec::with_capacity(4 * AAC_FRAME_SAMPLES),
            resampled: Vec::with_capacity(2 * AAC_FRAME_SAMPLES),
            unit: vec![0; max_unit],
        })
    }

    /// The AudioSpecificConfig of the output (AAC-LC, 48 kHz, mono): the FLV AAC sequence header
    /// body / the fMP4 esds decoder-specific info.
    pub fn audio_specific_config(&self) -> Bytes {
        self.asc.clone()
    }

    pub fn law(&self) -> G711Law {
        self.input.law
    }

    /// One G.711 payload (any number of samples) with its decode timestamp in µs. Returns the
    /// AAC access units completed by it (1024 samples each, raw, no ADTS), possibly none.
    pub fn push(&mut self, payload: &[u8], dts_us: i64) -> Result<Vec<AacUnit>, AudioError> {
        if payload.is_empty() {
            return Ok(Vec::new());
        }
        let silence = match self.input.place(payload.len(), dts_us) {
            Placement::Late => return Ok(Vec::new()),
            Placement::Continue { silence } => silence,
            Placement::Restart => {
                self.restart(dts_us)?;
                0
            }
        };
        self.resampled.clear();
        self.input.feed(payload, silence, &mut self.resampled);
        self.pending
            .extend(self.resampled.iter().map(|&s| to_i16(s)));
        self.encode_pending()
    }

    /// Starts a timeline at `dts_us`: a fresh encoder, nothing buffered but the lead-in.
    fn restart(&mut self, dts_us: i64) -> Result<(), AudioError> {
        if self.input.origin_us.is_some() {
            // fdk-aac cannot be reset, and its buffered audio belongs to the old timeline. Made
            // before anything changes, so that a failure leaves the transcoder as it was.
            self.encoder = new_aac_encoder()?;
        }
        self.input.restart(dts_us);
        self.pending.clear();
        self.pending.resize(self.lead_in, 0);
        self.units = 0;
        self.skip_units = self.priming_units;
        Ok(())
    }

    /// Encodes every whole unit `self.pending` completes.
    fn encode_pending(&mut self) -> Result<Vec<AacUnit>, AudioError> {
        let origin_us = self.input.origin_us();
        let mut units = Vec::with_capacity(self.pending.len() / AAC_FRAME_SAMPLES + 1);
        let mut start = 0;
        let mut result = Ok(());
        // fdk-aac takes what fits its input buffer and returns at most one unit per call, so it
        // is called until it neither takes nor returns anything; bounded all the same, so that a
        // misbehaving encoder cannot hang the task (what it left waits for the next payload).
        for _ in 0..self.pending.len() / AAC_FRAME_SAMPLES + 8 {
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
                if self.skip_units > 0 {
                    self.skip_units -= 1;
                } else {
                    let len = step.output_size.min(self.unit.len());
                    let samples = self.units.saturating_mul(AAC_FRAME_SAMPLES as u64);
                    units.push(AacUnit {
                        data: Bytes::copy_from_slice(&self.unit[..len]),
                        dts_us: origin_us.saturating_add(samples_to_us(samples, OPUS_SAMPLE_RATE)),
                    });
                    self.units = self.units.saturating_add(1);
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

/// G.711 to Opus (48 kHz mono, 20 ms packets) for one stream. See the module documentation for
/// the timing rules.
pub struct G711ToOpus {
    input: Input,
    encoder: opus::Encoder,
    /// Packets emitted in this timeline.
    packets: u64,
    /// 48 kHz audio not yet encoded (less than one packet between calls).
    pending: Vec<f32>,
    /// Scratch: one encoded packet.
    packet: Vec<u8>,
}

impl std::fmt::Debug for G711ToOpus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("G711ToOpus")
            .field("law", &self.input.law)
            .field("origin_us", &self.input.origin_us)
            .field("packets", &self.packets)
            .finish_non_exhaustive()
    }
}

impl G711ToOpus {
    pub fn new(law: G711Law) -> Result<Self, AudioError> {
        let mut encoder = opus::Encoder::new(
            OPUS_SAMPLE_RATE,
            opus::Channels::Mono,
            opus::Application::Audio,
        )?;
        encoder.set_bitrate(opus::Bitrate::Bits(OPUS_BITRATE))?;
        Ok(G711ToOpus {
            input: Input::new(law)?,
            encoder,
            packets: 0,
            pending: Vec::with_capacity(OPUS_FRAME_SAMPLES * 4),
            packet: vec![0; OPUS_MAX_PACKET],
        })
    }

    /// Always 1: G.711 is mono.
    pub fn channels(&self) -> u8 {
        1
    }

    pub fn law(&self) -> G711Law {
        self.input.law
    }

    /// One G.711 payload (any number of samples) with its decode timestamp in µs. Returns the
    /// Opus packets completed by it (20 ms each, 48 kHz mono), possibly none.
    pub fn push(&mut self, payload: &[u8], dts_us: i64) -> Result<Vec<OpusPacket>, AudioError> {
        if payload.is_empty() {
            return Ok(Vec::new());
        }
        let silence = match self.input.place(payload.len(), dts_us) {
            Placement::Late => return Ok(Vec::new()),
            Placement::Continue { silence } => silence,
            Placement::Restart => {
                // A new timeline does not continue the old sound.
                self.encoder.reset_state()?;
                self.input.restart(dts_us);
                self.pending.clear();
                self.packets = 0;
                0
            }
        };
        self.input.feed(payload, silence, &mut self.pending);
        self.encode_pending()
    }

    /// Encodes every complete 20 ms frame of `self.pending`.
    fn encode_pending(&mut self) -> Result<Vec<OpusPacket>, AudioError> {
        let origin_us = self.input.origin_us();
        let mut packets = Vec::with_capacity(self.pending.len() / OPUS_FRAME_SAMPLES);
        let mut start = 0;
        let mut result = Ok(());
        while self.pending.len() - start >= OPUS_FRAME_SAMPLES {
            let encoded = self.encoder.encode_float(
                &self.pending[start..start + OPUS_FRAME_SAMPLES],
                &mut self.packet,
            );
            start += OPUS_FRAME_SAMPLES;
            // A frame that fails to encode still takes its 20 ms, so later packets keep their
            // place on the timeline.
            let offset = self.packets.saturating_mul(u64::from(OPUS_FRAME_US));
            self.packets = self.packets.saturating_add(1);
            let pts_us = origin_us.saturating_add(i64::try_from(offset).unwrap_or(i64::MAX));
            match encoded {
                Ok(len) => packets.push(OpusPacket {
                    data: Bytes::copy_from_slice(&self.packet[..len.min(self.packet.len())]),
                    pts_us,
                    duration_us: OPUS_FRAME_US,
                }),
                Err(e) => result = Err(AudioError::Encode(e)),
            }
        }
        self.pending.drain(..start);
        result?;
        Ok(packets)
    }
}
