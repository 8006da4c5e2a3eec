//! Band-limited sample-rate conversion by a rational ratio (polyphase windowed-sinc FIR), for the
//! AAC rates (8 to 96 kHz) to Opus's 48 kHz.
//!
//! Invariants: output sample `j` is the input signal at time `j / out_rate` (the filter's group
//! delay is compensated, so sample counts on both sides describe the same timeline); the output
//! holds exactly the samples whose filter window the input has filled, so it lags the input by
//! half a window (under 1 ms at 44.1 kHz); no allocation per call once the buffers have grown.

/// Stopband attenuation the filter is designed for. Well below what lossy AAC in and lossy Opus
/// out can reveal, and it keeps the filter short.
const ATTENUATION_DB: f64 = 80.0;
/// Filter taps per output sample when not decimating; more taps buy a narrower transition band
/// (about 3.5 kHz at 44.1 kHz: flat to 20.5 kHz) for linear cost.
const BASE_TAPS: usize = 64;
/// Upper bound on the interpolation factor, i.e. on the coefficient table (`phases * taps`). Every
/// AAC rate to 48 kHz needs at most 640 (11.025 kHz); a rate reducing to more is refused.
const MAX_PHASES: usize = 1024;
/// Images of the input spectrum that land above this are inaudible and may be left in the
/// transition band; keeping them there lets the passband reach 20 kHz from 44.1 kHz.
const AUDIBLE_LIMIT_HZ: f64 = 20_000.0;

/// A streaming resampler for interleaved `f32` audio with a fixed channel count.
#[derive(Debug)]
pub struct Resampler {
    /// Interpolation factor L: output rate / gcd.
    up: usize,
    /// Decimation factor M: input rate / gcd.
    down: usize,
    taps: usize,
    /// `up` rows of `taps` coefficients. Row `p` holds the taps of phase `p` in reverse, so that an
    /// output is a plain dot product with a contiguous run of input samples.
    coeffs: Vec<f32>,
    /// Per channel, the input not yet passed by the filter window, preceded at the start by
    /// `taps - 1` zeros standing for the silence before the first sample.
    history: Vec<Vec<f32>>,
    /// Index in `history` of the first input sample under the window for the next output.
    pos: usize,
    /// Filter phase (0..up) of the next output.
    phase: usize,
}

impl Resampler {
    /// A resampler from `in_rate` to `out_rate` Hz, or `None` when the ratio needs a coefficient
    /// table larger than [`MAX_PHASES`] rows (rates no AAC stream uses) or a rate is zero.
    pub fn new(in_rate: u32, out_rate: u32, channels: usize) -> Option<Self> {
        if in_rate == 0 || out_rate == 0 || channels == 0 {
            return None;
        }
        let g = gcd(in_rate, out_rate);
        let up = (out_rate / g) as usize;
        let down = (in_rate / g) as usize;
        if up > MAX_PHASES {
            return None;
        }
        // Decimating needs the filter to span proportionally more input samples for the same
        // transition width in output terms.
        let taps = BASE_TAPS * in_rate.div_ceil(out_rate).max(1) as usize;
        let coeffs = design(f64::from(in_rate), f64::from(out_rate), up, taps);
        let mut resampler = Resampler {
            up,
            down,
            taps,
            coeffs,
            history: vec![Vec::new(); channels],
            pos: 0,
            phase: 0,
        };
        resampler.reset();
        Some(resampler)
    }

    /// Forgets all input, as if newly created.
    pub fn reset(&mut self) {
        for channel in &mut self.history {
            channel.clear();
            channel.resize(self.taps - 1, 0.0);
        }
        // Output 0 sits at upsampled index `centre`, which puts the filter's centre on input 0.
        let centre = (self.up * self.taps - 1) / 2;
        self.pos = centre / self.up;
        self.phase = centre % self.up;
    }

    pub fn channels(&self) -> usize {
        self.history.len()
    }

    /// Takes interleaved input (a whole number of frames) and appends to `out` every interleaved
    /// output frame that the input received so far makes computable.
    pub fn process(&mut self, input: &[f32], out: &mut Vec<f32>) {
        let channels = self.channels();
        for (c, channel) in self.history.iter_mut().enumerate() {
            channel.extend(input.iter().skip(c).step_by(channels));
        }
        let available = self.history.first().map_or(0, Vec::len);
        while self.pos + self.taps <= available {
            let row = &self.coeffs[self.phase * self.taps..(self.phase + 1) * self.taps];
            for channel in &self.history {
                out.push(dot(row, &channel[self.pos..self.pos + self.taps]));
            }
            self.phase += self.down;
            self.pos += self.phase / self.up;
            self.phase %= self.up;
        }
        // Drop what the window has passed, so `history` stays about one window long.
        let consumed = self.pos.min(available);
        for channel in &mut self.history {
            channel.drain(..consumed);
        }
        self.pos -= consumed;
    }
}

/// Dot product in eight independent lanes, which the compiler turns into SIMD (a single
/// accumulator would force one strictly ordered float addition per tap).
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [0.0f32; 8];
    let mut a_chunks = a.chunks_exact(8);
    let mut b_chunks = b.chunks_exact(8);
    for (x, y) in a_chunks.by_ref().zip(b_chunks.by_ref()) {
        for i in 0..8 {
            lanes[i] += x[i] * y[i];
        }
    }
    let tail: f32 = a_chunks
        .remainder()
        .iter()
        .zip(b_chunks.remainder())
        .map(|(x, y)| x * y)
        .sum();
    lanes.iter().sum::<f32>() + tail
}

/// The Kaiser-windowed sinc low-pass at `in_rate * up`, split into `up` phases of `taps`
/// coefficients (each reversed, each scaled to unit DC gain so no phase adds a ripple).
fn design(in_rate: f64, out_rate: f64, up: usize, taps: usize) -> Vec<f32> {
    let beta = 0.1102 * (ATTENUATION_DB - 8.7);
    // Kaiser's estimate of the transition width this length reaches at that attenuation.
    let transition = (ATTENUATION_DB - 7.95) * in_rate / (14.36 * taps as f64);
    // The stopband starts where aliasing would begin (the output's Nyquist frequency) or, when
    // interpolating, where images of the input spectrum would become audible.
    let stop = (out_rate / 2.0).min((in_rate / 2.0).max(in_rate - AUDIBLE_LIMIT_HZ));
    let cutoff = (stop - transition / 2.0).max(0.25 * in_rate.min(out_rate));
    let fc = cutoff / (in_rate * up as f64);

    let len = up * taps;
    let centre = (len - 1) as f64 / 2.0;
    let i0_beta = bessel_i0(beta);
    let prototype: Vec<f64> = (0..len)
        .map(|k| {
            let x = k as f64 - centre;
            let r = x / centre;
            let window = bessel_i0(beta * (1.0 - r * r).max(0.0).sqrt()) / i0_beta;
            2.0 * fc * sinc(2.0 * fc * x) * window
        })
        .collect();

    let mut coeffs = vec![0.0f32; len];
    for phase in 0..up {
        let row: Vec<f64> = (0..taps).map(|t| prototype[phase + t * up]).collect();
        let sum: f64 = row.iter().sum();
        let gain = if sum.abs() > f64::EPSILON {
            1.0 / sum
        } else {
            0.0
        };
        for (t, value) in row.iter().enumerate() {
            coeffs[phase * taps + (taps - 1 - t)] = (value * gain) as f32;
        }
    }
    coeffs
}

fn sinc(x: f64) -> f64 {
    if x.abs() < 1e-12 {
        1.0
    } else {
        let px = std::f64::consts::PI * x;
        px.sin() / px
    }
}

/// Modified Bessel function of the first kind, order 0 (power series; converges fast for the
/// arguments a Kaiser window uses).
fn bessel_i0(x: f64) -> f64 {
    let half = x / 2.0;
    let mut term = 1.0;
    let mut sum = 1.0;
    for k in 1..64 {
        let f = half / k as f64;
        term *= f * f;
        sum += term;
        if term < sum * 1e-16 {
            break;
        }
    }
    sum
}

fn gcd(mut a: u32, mut b: u32) -> u32 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::f64::consts::PI;

    fn sine(freq: f64, rate: u32, len: usize, channels: usize) -> Vec<f32> {
        (0..len)
            .flat_map(|i| {
                let v = (2.0 * PI * freq * i as f64 / f64::from(rate)).sin() as f32 * 0.5;
                std::iter::repeat_n(v, channels)
            })
            .collect()
    }

    /// Resamples in uneven chunks, as decoded AAC frames arrive.
    fn run(r: &mut Resampler, input: &[f32]) -> Vec<f32> {
        let channels = r.channels();
        let mut out = Vec::new();
        for chunk in input.chunks(1021 * channels) {
            r.process(chunk, &mut out);
        }
        out
    }

    /// Amplitude of `freq` in a signal (a single-bin DFT, normalised so a sine of amplitude A
    /// gives A).
    fn amplitude(signal: &[f32], freq: f64, rate: u32) -> f64 {
        let (mut re, mut im) = (0.0, 0.0);
        for (i, &s) in signal.iter().enumerate() {
            let phase = 2.0 * PI * freq * i as f64 / f64::from(rate);
            re += f64::from(s) * phase.cos();
            im += f64::from(s) * phase.sin();
        }
        2.0 * (re * re + im * im).sqrt() / signal.len() as f64
    }

    fn db(ratio: f64) -> f64 {
        20.0 * ratio.log10()
    }

    #[test]
    fn keeps_audible_tones_at_their_level_and_frequency() {
        for in_rate in [8000, 16000, 22050, 32000, 44100, 96000] {
            for freq in [440.0, 1000.0, 3000.0] {
                let mut r = Resampler::new(in_rate, 48000, 2).expect("AAC rate");
                let out = run(&mut r, &sine(freq, in_rate, in_rate as usize, 2));
                let left: Vec<f32> = out.iter().step_by(2).copied().collect();
                let steady = &left[4800..43200];
                let gain = amplitude(steady, freq, 48000) / 0.5;
                assert!(
                    db(gain).abs() < 0.1,
                    "{in_rate} Hz, {freq} Hz tone: gain {} dB",
                    db(gain)
                );
            }
        }
    }

    #[test]
    fn output_count_follows_the_ratio_and_is_not_delayed() {
        let mut r = Resampler::new(44100, 48000, 1).expect("AAC rate");
        let mut input = vec![0.0f32; 44100];
        // An impulse at input 22050 (0.5 s) must peak at output 24000 (0.5 s).
        input[22050] = 1.0;
        let out = run(&mut r, &input);
        let lag = r.taps; // samples held back for the window, at most
        assert!(
            out.len() <= 48000 && out.len() + lag * 2 >= 48000,
            "{}",
            out.len()
        );
        let peak = out
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .map(|(i, _)| i)
            .expect("not empty");
        assert_eq!(peak, 24000);
    }

    #[test]
    fn passes_the_top_of_the_band_and_rejects_aliases() {
        // 44.1 kHz: flat to 19 kHz (within 0.5 dB).
        let mut r = Resampler::new(44100, 48000, 1).expect("AAC rate");
        let out = run(&mut r, &sine(19000.0, 44100, 44100, 1));
        let gain = amplitude(&out[4800..43200], 19000.0, 48000) / 0.5;
        assert!(db(gain).abs() < 0.5, "19 kHz: {} dB", db(gain));

        // 96 kHz: a 30 kHz tone would alias to 18 kHz; it must be gone.
        let mut r = Resampler::new(96000, 48000, 1).expect("AAC rate");
        let out = run(&mut r, &sine(30000.0, 96000, 96000, 1));
        let alias = amplitude(&out[4800..43200], 18000.0, 48000) / 0.5;
        assert!(db(alias) < -70.0, "alias at {} dB", db(alias));

        // 16 kHz: the image of a 3 kHz tone (at 13 kHz) must be gone.
        let mut r = Resampler::new(16000, 48000, 1).expect("AAC rate");
        let out = run(&mut r, &sine(3000.0, 16000, 16000, 1));
        let image = amplitude(&out[4800..43200], 13000.0, 48000) / 0.5;
        assert!(db(image) < -70.0, "image at {} dB", db(image));
    }

    #[test]
    fn refuses_ratios_that_would_need_a_huge_table() {
        assert!(Resampler::new(44101, 48000, 2).is_none());
        assert!(Resampler::new(0, 48000, 2).is_none());
        assert!(Resampler::new(44100, 48000, 0).is_none());
        assert!(Resampler::new(7350, 48000, 2).is_some());
        assert!(Resampler::new(11025, 48000, 2).is_some());
    }

    #[test]
    fn reset_forgets_the_input() {
        let mut r = Resampler::new(32000, 48000, 1).expect("AAC rate");
        let mut fresh = Resampler::new(32000, 48000, 1).expect("AAC rate");
        let _ = run(&mut r, &sine(1000.0, 32000, 5000, 1));
        r.reset();
        let input = sine(700.0, 32000, 5000, 1);
        assert_eq!(run(&mut r, &input), run(&mut fresh, &input));
    }
}
