//! What the audio tests share: the test tones and a click to encode, real decoders (libopus,
//! fdk-aac) for what the transcoders make, a Goertzel frequency finder and level checks, and
//! deterministic garbage.

use std::f64::consts::PI;

use fdk_aac::dec::{Decoder, Transport};

use super::{AacUnit, AudioError, OpusPacket, OPUS_FRAME_SAMPLES};

/// Left (or mono) and right test tones.
pub const LEFT_HZ: f64 = 1000.0;
pub const RIGHT_HZ: f64 = 440.0;
/// The tones' amplitude (of full scale).
pub const AMPLITUDE: f64 = 0.3;
/// The rate of everything the transcoders make, and so of everything measured here.
pub const RATE: usize = 48_000;

/// The level (RMS) of a sine at [`AMPLITUDE`].
pub fn sine_rms() -> f64 {
    AMPLITUDE / 2f64.sqrt()
}

/// `seconds` of the test tones at `rate`, interleaved (left only when mono), silent for the
/// first `silent` seconds.
pub fn tones(rate: u32, channels: usize, seconds: f64, silent: f64) -> Vec<i16> {
    let len = (seconds * f64::from(rate)) as usize;
    (0..len)
        .flat_map(|i| {
            let t = i as f64 / f64::from(rate);
            let sine = |hz: f64| {
                if t < silent {
                    0
                } else {
                    ((2.0 * PI * hz * t).sin() * AMPLITUDE * 32767.0) as i16
                }
            };
            [sine(LEFT_HZ), sine(RIGHT_HZ)].into_iter().take(channels)
        })
        .collect()
}

/// Two seconds of mono silence at `rate` with a 48-sample click (one sine period) at 1 s.
pub fn click(rate: usize) -> Vec<i16> {
    let mut pcm = vec![0i16; 2 * rate];
    for (i, s) in pcm[rate..rate + 48].iter_mut().enumerate() {
        *s = ((2.0 * PI * i as f64 / 48.0).sin() * 20_000.0) as i16;
    }
    pcm
}

/// Feeds every input to a transcoder's `push`, the n-th stamped `start_us + n * step_us`;
/// returns everything it made.
pub fn push_all<T>(
    inputs: &[Vec<u8>],
    start_us: i64,
    step_us: i64,
    mut push: impl FnMut(&[u8], i64) -> Result<Vec<T>, AudioError>,
) -> Vec<T> {
    let mut out = Vec::new();
    for (i, input) in inputs.iter().enumerate() {
        out.extend(push(input, start_us + i as i64 * step_us).expect("transcode"));
    }
    out
}

pub fn opus_channels(channels: usize) -> opus::Channels {
    if channels == 1 {
        opus::Channels::Mono
    } else {
        opus::Channels::Stereo
    }
}

/// Decodes Opus packets with libopus, each of them one 20 ms frame; returns interleaved 48 kHz
/// audio.
pub fn decode_opus(packets: &[OpusPacket], channels: u8) -> Vec<f32> {
    let mut decoder = opus::Decoder::new(RATE as u32, opus_channels(usize::from(channels)))
        .expect("opus decoder");
    let mut out = Vec::new();
    let mut frame = vec![0.0f32; 5760 * 2];
    for packet in packets {
        let n = decoder
            .decode_float(&packet.data, &mut frame, false)
            .expect("valid Opus");
        assert_eq!(n, OPUS_FRAME_SAMPLES, "samples per packet");
        out.extend_from_slice(&frame[..n * usize::from(channels)]);
    }
    out
}

/// Decodes raw AAC units with fdk-aac, each of them 1024 samples at 48 kHz in `channels`
/// channels; returns interleaved audio. The decoder's own output delay is skipped, so sample 0 is
/// the first unit's dts.
pub fn decode_aac(asc: &[u8], units: &[AacUnit], channels: usize) -> Vec<i16> {
    let mut decoder = Decoder::new(Transport::Raw);
    decoder.config_raw(asc).expect("valid ASC");
    let mut pcm = vec![0i16; 8 * 2048];
    let mut out = Vec::new();
    let mut skip = None;
    for unit in units {
        let filled = decoder.fill(&unit.data).expect("fill");
        assert_eq!(filled, unit.data.len());
        decoder.decode_frame(&mut pcm).expect("valid AAC");
        let info = decoder.stream_info();
        assert_eq!(
            (info.sampleRate, info.frameSize, info.numChannels as usize),
            (RATE as i32, 1024, channels)
        );
        let skip = skip.get_or_insert(info.outputDelay as usize * channels);
        let frame = &pcm[..1024 * channels];
        let from = (*skip).min(frame.len());
        *skip -= from;
        out.extend_from_slice(&frame[from..]);
    }
    out
}

/// 16-bit samples as floats of full scale 1.
pub fn to_f32(pcm: &[i16]) -> Vec<f32> {
    pcm.iter().map(|&s| f32::from(s) / 32768.0).collect()
}

/// One channel of interleaved audio.
pub fn channel(interleaved: &[f32], channels: usize, index: usize) -> Vec<f32> {
    interleaved
        .iter()
        .skip(index)
        .step_by(channels)
        .copied()
        .collect()
}

/// The index of the loudest sample (the last of equals).
pub fn peak(signal: &[f32]) -> usize {
    signal
        .iter()
        .enumerate()
        .max_by(|a, b| a.1.abs().total_cmp(&b.1.abs()))
        .map(|(i, _)| i)
        .expect("not empty")
}

/// The strongest frequency of 48 kHz audio by Goertzel power, searched in `step_hz` steps from
/// 100 Hz to `max_hz`.
pub fn dominant_hz_in(signal: &[f32], step_hz: f64, max_hz: f64) -> f64 {
    let power = |freq: f64| {
        let coeff = 2.0 * (2.0 * PI * freq / RATE as f64).cos();
        let (mut s1, mut s2) = (0.0f64, 0.0f64);
        for &x in signal {
            let s0 = f64::from(x) + coeff * s1 - s2;
            s2 = s1;
            s1 = s0;
        }
        s1 * s1 + s2 * s2 - coeff * s1 * s2
    };
    ((100.0 / step_hz) as u32..=(max_hz / step_hz) as u32)
        .map(|step| f64::from(step) * step_hz)
        .max_by(|a, b| power(*a).total_cmp(&power(*b)))
        .expect("candidates")
}

/// The strongest frequency (5 Hz steps, 100 Hz to 5 kHz) of 48 kHz audio.
pub fn dominant_hz(signal: &[f32]) -> f64 {
    dominant_hz_in(signal, 5.0, 5000.0)
}

pub fn rms(signal: &[f32]) -> f64 {
    (signal.iter().map(|&x| f64::from(x).powi(2)).sum::<f64>() / signal.len() as f64).sqrt()
}

/// How a steady tone is checked.
pub struct ToneCheck {
    /// The frequency search: steps and the highest candidate (from 100 Hz).
    pub step_hz: f64,
    pub max_hz: f64,
    /// How far the dominant frequency may be from the tone's.
    pub hz_tolerance: f64,
    /// The range (exclusive) of the level, relative to the sine's.
    pub level: (f64, f64),
}

/// Checks a stretch of steady tone: its dominant frequency and a level near the sine's.
pub fn assert_steady_tone(steady: &[f32], hz: f64, check: &ToneCheck, what: &str) {
    let found = dominant_hz_in(steady, check.step_hz, check.max_hz);
    assert!(
        (found - hz).abs() <= check.hz_tolerance,
        "{what}: dominant {found} Hz, expected {hz} Hz"
    );
    let level = rms(steady);
    let expected = sine_rms();
    assert!(
        level > expected * check.level.0 && level < expected * check.level.1,
        "{what}: level {level}, expected about {expected}"
    );
}

/// Checks one channel of decoded 48 kHz audio: past the codecs' start-up (encoder priming,
/// look-ahead), half a second of steady tone at `hz` (within 2 %) and a level within 30 % of the
/// sine's.
pub fn assert_tone(decoded: &[f32], channels: usize, index: usize, hz: f64, what: &str) {
    let samples = channel(decoded, channels, index);
    let steady = &samples[samples.len() / 4..samples.len() / 4 + RATE / 2];
    let check = ToneCheck {
        step_hz: 5.0,
        max_hz: 5000.0,
        hz_tolerance: hz * 0.02,
        level: (0.7, 1.3),
    };
    assert_steady_tone(steady, hz, &check, what);
}

/// Deterministic garbage: xorshift64 from a fixed seed.
pub struct Garbage(u64);

impl Garbage {
    pub fn new() -> Garbage {
        Garbage(0x2545_f491_4f6c_dd1d)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// Fewer than `max_len` random bytes and a timestamp of any size and sign.
    pub fn input(&mut self, max_len: u64) -> (Vec<u8>, i64) {
        let len = (self.next_u64() % max_len) as usize;
        let bytes = (0..len).map(|_| self.next_u64() as u8).collect();
        let ts = (self.next_u64() as i64) >> (self.next_u64() % 64);
        (bytes, ts)
    }
}
