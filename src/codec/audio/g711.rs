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
//! - Output timestamps come from the sample count of the shared encoders (`aac_encoder`,
//!   `opus_encoder`): AAC unit `n` of a timeline at `origin + n * 1024 / 48 kHz`, Opus packet
//!   `n` at `origin + n * 20 ms` (µs, rounded down from the count, never accumulated), where
//!   `origin` is the dts of the payload that started the timeline. AAC-LC and Opus have no
//!   reordering: dts is also pts.
//! - The AAC encoder's delay is compensated as in [`super::OpusToAac`] (silence lead-in plus
//!   dropped priming units): a unit's dts is the time of the first input sample it carries.
//!   Opus keeps its 6.5 ms look-ahead, as every WebRTC sender does.
//! - Any byte is a valid G.711 sample, so any payload decodes; an empty one changes nothing. No
//!   input makes this module panic.

#[cfg(test)]
#[path = "g711_tests.rs"]
mod tests;

use bytes::Bytes;

use super::aac_encoder::{AacEncoder, AacUnit};
use super::opus_encoder::{OpusEncoder, OpusPacket};
use super::resample::Resampler;
use super::{samples_to_us, AudioError, MAX_DTS_DRIFT_US, OPUS_SAMPLE_RATE};
use crate::media::Codec;

/// G.711's only sampling rate.
pub const G711_SAMPLE_RATE: u32 = 8_000;
/// The source carries a 4 kHz band: AAC-LC spends few bits above it, so well under the 64 kb/s
/// of a full-band mono stream.
const AAC_BITRATE: u32 = 48_000;
/// Same reasoning for Opus, which is transparent for narrow-band audio at far less.
const OPUS_BITRATE: i32 = 32_000;
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

/// The output side of a G.711 transcoder: one of the shared encoders.
trait Output {
    type Item;
    /// Starts a timeline at `origin_us`; on error nothing has changed.
    fn restart(&mut self, origin_us: i64) -> Result<(), AudioError>;
    /// Takes 48 kHz mono audio.
    fn take(&mut self, audio: &[f32]);
    /// Encodes what the audio taken so far completes.
    fn encode(&mut self) -> Result<Vec<Self::Item>, AudioError>;
}

impl Output for AacEncoder {
    type Item = AacUnit;

    fn restart(&mut self, origin_us: i64) -> Result<(), AudioError> {
        AacEncoder::restart(self, origin_us)
    }

    fn take(&mut self, audio: &[f32]) {
        self.pending().extend(audio.iter().map(|&s| to_i16(s)));
    }

    fn encode(&mut self) -> Result<Vec<AacUnit>, AudioError> {
        AacEncoder::encode(self)
    }
}

impl Output for OpusEncoder {
    type Item = OpusPacket;

    fn restart(&mut self, origin_us: i64) -> Result<(), AudioError> {
        OpusEncoder::restart(self, origin_us)
    }

    fn take(&mut self, audio: &[f32]) {
        self.pending().extend_from_slice(audio);
    }

    fn encode(&mut self) -> Result<Vec<OpusPacket>, AudioError> {
        OpusEncoder::encode(self)
    }
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
    /// Scratch: the same at 48 kHz.
    resampled: Vec<f32>,
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
            resampled: Vec::with_capacity(OPUS_SAMPLE_RATE as usize / 10),
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

    /// One payload for `output`: dropped if late, else put on the timeline (a new one, output
    /// first, when it starts one; silence before it for lost audio) and encoded.
    fn push<O: Output>(
        &mut self,
        payload: &[u8],
        dts_us: i64,
        output: &mut O,
    ) -> Result<Vec<O::Item>, AudioError> {
        if payload.is_empty() {
            return Ok(Vec::new());
        }
        let silence = match self.place(payload.len(), dts_us) {
            Placement::Late => return Ok(Vec::new()),
            Placement::Continue { silence } => silence,
            Placement::Restart => {
                // The output first: if it fails, nothing has changed.
                output.restart(dts_us)?;
                self.origin_us = Some(dts_us);
                self.samples = 0;
                self.resampler.reset();
                0
            }
        };
        self.feed(payload, silence);
        output.take(&self.resampled);
        output.encode()
    }

    /// Decodes `silence` samples of nothing then `payload` into `self.resampled` at 48 kHz.
    fn feed(&mut self, payload: &[u8], silence: usize) {
        const SCALE: f32 = 1.0 / 32768.0;
        let table = self.law.table();
        self.decoded.clear();
        self.decoded.resize(silence, 0.0);
        self.decoded.extend(
            payload
                .iter()
                .map(|&b| f32::from(table[usize::from(b)]) * SCALE),
        );
        self.resampled.clear();
        self.resampler.process(&self.decoded, &mut self.resampled);
        self.samples = self
            .samples
            .saturating_add(silence as u64)
            .saturating_add(payload.len() as u64);
    }
}

fn to_i16(sample: f32) -> i16 {
    // The resampler's overshoot on a full-scale edge can pass ±1.0.
    (sample * 32768.0).round().clamp(-32768.0, 32767.0) as i16
}

/// G.711 to AAC-LC (48 kHz mono) for one stream. See the module documentation for the timing
/// rules.
pub struct G711ToAac {
    input: Input,
    aac: AacEncoder,
}

impl std::fmt::Debug for G711ToAac {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("G711ToAac")
            .field("law", &self.input.law)
            .field("aac", &self.aac)
            .finish_non_exhaustive()
    }
}

impl G711ToAac {
    pub fn new(law: G711Law) -> Result<Self, AudioError> {
        Ok(G711ToAac {
            aac: AacEncoder::new(1, AAC_BITRATE)?,
            input: Input::new(law)?,
        })
    }

    /// The AudioSpecificConfig of the output (AAC-LC, 48 kHz, mono): the FLV AAC sequence header
    /// body / the fMP4 esds decoder-specific info.
    pub fn audio_specific_config(&self) -> Bytes {
        self.aac.audio_specific_config()
    }

    pub fn law(&self) -> G711Law {
        self.input.law
    }

    /// One G.711 payload (any number of samples) with its decode timestamp in µs. Returns the
    /// AAC access units completed by it (1024 samples each, raw, no ADTS), possibly none.
    pub fn push(&mut self, payload: &[u8], dts_us: i64) -> Result<Vec<AacUnit>, AudioError> {
        self.input.push(payload, dts_us, &mut self.aac)
    }
}

/// G.711 to Opus (48 kHz mono, 20 ms packets) for one stream. See the module documentation for
/// the timing rules.
pub struct G711ToOpus {
    input: Input,
    opus: OpusEncoder,
}

impl std::fmt::Debug for G711ToOpus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("G711ToOpus")
            .field("law", &self.input.law)
            .field("opus", &self.opus)
            .finish_non_exhaustive()
    }
}

impl G711ToOpus {
    pub fn new(law: G711Law) -> Result<Self, AudioError> {
        Ok(G711ToOpus {
            opus: OpusEncoder::new(1, OPUS_BITRATE)?,
            input: Input::new(law)?,
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
        self.input.push(payload, dts_us, &mut self.opus)
    }
}
