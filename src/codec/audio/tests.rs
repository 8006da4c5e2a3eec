//! Real codecs on both ends: sines encoded to AAC with fdk-aac's encoder, transcoded, and the Opus
//! output decoded with libopus and measured.

use std::f64::consts::PI;

use fdk_aac::enc::{AudioObjectType, BitRate, ChannelMode, Encoder, EncoderParams, Transport};

use super::*;

/// Left (or mono) and right test tones.
const LEFT_HZ: f64 = 1000.0;
const RIGHT_HZ: f64 = 440.0;
const AMPLITUDE: f64 = 0.3;

/// An AAC stream: its AudioSpecificConfig and its access units with their dts.
struct Aac {
    asc: Vec<u8>,
    units: Vec<(Vec<u8>, i64)>,
}

/// `seconds` of the test tones encoded by fdk-aac, units stamped by sample count as a publisher
/// would.
fn encode_aac(rate: u32, channels: usize, seconds: f64, aot: AudioObjectType) -> Aac {
    let encoder = Encoder::new(EncoderParams {
        bit_rate: BitRate::Cbr(if channels == 2 { 128_000 } else { 64_000 }.min(rate * 4)),
        sample_rate: rate,
        transport: Transport::Raw,
        channels: if channels == 2 {
            ChannelMode::Stereo
        } else {
            ChannelMode::Mono
        },
        audio_object_type: aot,
    })
    .expect("fdk-aac encoder");
    let info = encoder.info().expect("encoder info");
    let asc = info.confBuf[..info.confSize as usize].to_vec();
    let frame = info.frameLength as usize;

    let len = (seconds * f64::from(rate)) as usize;
    let pcm: Vec<i16> = (0..len)
        .flat_map(|i| {
            let t = i as f64 / f64::from(rate);
            let left = ((2.0 * PI * LEFT_HZ * t).sin() * AMPLITUDE * 32767.0) as i16;
            let right = ((2.0 * PI * RIGHT_HZ * t).sin() * AMPLITUDE * 32767.0) as i16;
            [left, right].into_iter().take(channels)
        })
        .collect();

    let mut units = Vec::new();
    let mut out = vec![0u8; 8192];
    let mut rest = &pcm[..];
    while !rest.is_empty() {
        let step = encoder.encode(rest, &mut out).expect("encode");
        rest = &rest[step.input_consumed..];
        if step.output_size > 0 {
            let dts = (units.len() * frame) as i64 * 1_000_000 / i64::from(rate);
            units.push((out[..step.output_size].to_vec(), dts));
        }
        if step.input_consumed == 0 && step.output_size == 0 {
            break;
        }
    }
    Aac { asc, units }
}

fn lc(rate: u32, channels: usize, seconds: f64) -> Aac {
    encode_aac(rate, channels, seconds, AudioObjectType::Mpeg4LowComplexity)
}

/// Transcodes every unit, shifting its dts by `offset_us`.
fn transcode_all(t: &mut AacToOpus, units: &[(Vec<u8>, i64)], offset_us: i64) -> Vec<OpusPacket> {
    let mut packets = Vec::new();
    for (unit, dts) in units {
        packets.extend(t.push(unit, dts + offset_us).expect("transcode"));
    }
    packets
}

/// Decodes Opus packets with libopus; returns interleaved 48 kHz audio.
fn decode_opus(packets: &[OpusPacket], channels: u8) -> Vec<f32> {
    let mut decoder = opus::Decoder::new(
        48_000,
        if channels == 1 {
            opus::Channels::Mono
        } else {
            opus::Channels::Stereo
        },
    )
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

fn channel(interleaved: &[f32], channels: usize, index: usize) -> Vec<f32> {
    interleaved
        .iter()
        .skip(index)
        .step_by(channels)
        .copied()
        .collect()
}

/// The strongest frequency (5 Hz steps, 100 Hz to 5 kHz) by Goertzel power.
fn dominant_hz(signal: &[f32], rate: f64) -> f64 {
    let power = |freq: f64| {
        let coeff = 2.0 * (2.0 * PI * freq / rate).cos();
        let (mut s1, mut s2) = (0.0f64, 0.0f64);
        for &x in signal {
            let s0 = f64::from(x) + coeff * s1 - s2;
            s2 = s1;
            s1 = s0;
        }
        s1 * s1 + s2 * s2 - coeff * s1 * s2
    };
    (20..=1000)
        .map(|step| f64::from(step) * 5.0)
        .max_by(|a, b| power(*a).total_cmp(&power(*b)))
        .expect("candidates")
}

fn rms(signal: &[f32]) -> f64 {
    (signal.iter().map(|&x| f64::from(x).powi(2)).sum::<f64>() / signal.len() as f64).sqrt()
}

/// Checks one channel of decoded Opus audio: the tone's frequency and a level near the sine's.
fn assert_tone(decoded: &[f32], channels: usize, index: usize, hz: f64, what: &str) {
    let samples = channel(decoded, channels, index);
    // Past the codecs' start-up (encoder priming, Opus look-ahead), half a second of steady tone.
    let steady = &samples[samples.len() / 4..samples.len() / 4 + 24_000];
    let found = dominant_hz(steady, 48_000.0);
    assert!(
        (found - hz).abs() <= hz * 0.02,
        "{what}: dominant {found} Hz, expected {hz} Hz"
    );
    let level = rms(steady);
    let expected = AMPLITUDE / 2f64.sqrt();
    assert!(
        level > expected * 0.7 && level < expected * 1.3,
        "{what}: level {level}, expected about {expected}"
    );
}

/// Packet timing: `first` then exactly 20 ms apart, each 20 ms long.
fn assert_timing(packets: &[OpusPacket], first: i64) {
    assert_eq!(packets.first().map(|p| p.pts_us), Some(first));
    for (i, packet) in packets.iter().enumerate() {
        assert_eq!(packet.pts_us, first + i as i64 * 20_000, "packet {i}");
        assert_eq!(packet.duration_us, 20_000);
    }
}

fn check_transcode(rate: u32, channels: usize) {
    let aac = lc(rate, channels, 2.0);
    let mut t = AacToOpus::new(&aac.asc).expect("valid ASC");
    assert_eq!(usize::from(t.channels()), channels);
    let start = 5_000_000;
    let packets = transcode_all(&mut t, &aac.units, start);
    assert_timing(&packets, start);
    // All of the input but the decoder delay and what waits for a whole packet.
    let input_us = aac.units.len() as i64 * 1024 * 1_000_000 / i64::from(rate);
    let output_us = packets.len() as i64 * 20_000;
    assert!(
        output_us <= input_us && output_us > input_us - 150_000,
        "{output_us} µs out of {input_us} µs in"
    );

    let decoded = decode_opus(&packets, t.channels());
    assert_tone(&decoded, channels, 0, LEFT_HZ, "left");
    if channels == 2 {
        assert_tone(&decoded, channels, 1, RIGHT_HZ, "right");
    }
}

#[test]
fn transcodes_44100_stereo() {
    check_transcode(44_100, 2);
}

#[test]
fn transcodes_48000_stereo() {
    check_transcode(48_000, 2);
}

#[test]
fn transcodes_16000_mono() {
    check_transcode(16_000, 1);
}

#[test]
fn transcodes_he_aac_v2_to_stereo() {
    // Parametric stereo: a mono channel configuration that decodes to two channels.
    let aac = encode_aac(44_100, 2, 2.0, AudioObjectType::Mpeg4HeAacV2);
    let mut t = AacToOpus::new(&aac.asc).expect("valid ASC");
    assert_eq!(t.channels(), 2);
    let packets = transcode_all(&mut t, &aac.units, 0);
    assert_timing(&packets, 0);
    let decoded = decode_opus(&packets, 2);
    // Parametric stereo keeps the tones but not their separation: check the mix.
    let mono: Vec<f32> = decoded.chunks_exact(2).map(|f| f[0] + f[1]).collect();
    let steady = &mono[mono.len() / 4..mono.len() / 4 + 24_000];
    let found = dominant_hz(steady, 48_000.0);
    assert!(
        (found - LEFT_HZ).abs() < 20.0 || (found - RIGHT_HZ).abs() < 10.0,
        "dominant {found} Hz"
    );
    assert!(rms(steady) > 0.1, "level {}", rms(steady));
}

#[test]
fn decoder_delay_is_not_added_to_the_timeline() {
    // A click at 1 s of input must come out at 1 s of output: the decoder's delay is skipped.
    let rate = 48_000u32;
    let encoder = Encoder::new(EncoderParams {
        bit_rate: BitRate::Cbr(128_000),
        sample_rate: rate,
        transport: Transport::Raw,
        channels: ChannelMode::Mono,
        audio_object_type: AudioObjectType::Mpeg4LowComplexity,
    })
    .expect("fdk-aac encoder");
    let info = encoder.info().expect("encoder info");
    let asc = info.confBuf[..info.confSize as usize].to_vec();
    // The encoder's own priming delays the click too; the decoder must add nothing.
    let priming = info.nDelay as usize;
    let mut pcm = vec![0i16; 2 * rate as usize];
    for (i, s) in pcm[rate as usize..rate as usize + 48]
        .iter_mut()
        .enumerate()
    {
        *s = ((2.0 * PI * i as f64 / 48.0).sin() * 20_000.0) as i16;
    }
    let mut t = AacToOpus::new(&asc).expect("valid ASC");
    let mut packets = Vec::new();
    let mut out = vec![0u8; 8192];
    let mut units = 0i64;
    for chunk in pcm.chunks(1024) {
        let step = encoder.encode(chunk, &mut out).expect("encode");
        if step.output_size > 0 {
            packets.extend(
                t.push(&out[..step.output_size], units * 1024 * 1_000_000 / 48_000)
                    .expect("transcode"),
            );
            units += 1;
        }
    }
    let decoded = decode_opus(&packets, 1);
    let peak = decoded
        .iter()
        .enumerate()
        .max_by(|a, b| a.1.abs().total_cmp(&b.1.abs()))
        .map(|(i, _)| i)
        .expect("not empty");
    // Opus's look-ahead (6.5 ms) is left in; anything near the AAC decoder delay (≥ 21 ms) is not.
    let expected = rate as usize + priming;
    assert!(
        peak >= expected && peak < expected + 48 + 480,
        "click at {peak}, expected just after {expected}"
    );
}

#[test]
fn timestamp_jumps_start_a_new_timeline() {
    let aac = lc(44_100, 2, 1.0);
    for jump in [10_000_000i64, -30_000_000, 250_000] {
        let mut t = AacToOpus::new(&aac.asc).expect("valid ASC");
        let before = transcode_all(&mut t, &aac.units, 60_000_000);
        assert_timing(&before, 60_000_000);
        let restart = 60_000_000 + aac.units.last().expect("units").1 + jump;
        let after = transcode_all(&mut t, &aac.units, restart);
        assert_timing(&after, restart);
        assert!(
            after.len() + 5 >= before.len(),
            "{} then {}",
            before.len(),
            after.len()
        );
    }
}

#[test]
fn jitter_and_lost_units_keep_the_packet_timeline() {
    let aac = lc(44_100, 2, 2.0);
    let mut t = AacToOpus::new(&aac.asc).expect("valid ASC");
    let mut packets = Vec::new();
    for (i, (unit, dts)) in aac.units.iter().enumerate() {
        // FLV-like millisecond rounding with ±3 ms of jitter, and every 20th unit lost.
        if i % 20 == 10 {
            continue;
        }
        let jitter = [0, 3_000, -2_000, 1_000][i % 4];
        let dts = (dts + jitter) / 1000 * 1000;
        packets.extend(t.push(unit, dts).expect("transcode"));
    }
    assert_timing(&packets, 0);
    // Lost units became silence, so the output still spans the input.
    let input_us = aac.units.len() as i64 * 1024 * 1_000_000 / 44_100;
    let output_us = packets.len() as i64 * 20_000;
    assert!(
        output_us > input_us - 150_000,
        "{output_us} µs out of {input_us} µs in"
    );
}

#[test]
fn a_corrupt_unit_is_an_error_and_the_next_one_decodes() {
    let aac = lc(44_100, 2, 2.0);
    let mut t = AacToOpus::new(&aac.asc).expect("valid ASC");
    let mut packets = Vec::new();
    for (i, (unit, dts)) in aac.units.iter().enumerate() {
        if i % 10 == 5 {
            let garbage: Vec<u8> = (0..300u32).map(|b| (b * 7919 % 251) as u8).collect();
            assert!(matches!(t.push(&garbage, *dts), Err(AudioError::Decode(_))));
            assert!(matches!(t.push(&[], *dts), Err(AudioError::EmptyUnit)));
            assert!(matches!(
                t.push(&vec![0x21; 10_000], *dts),
                Err(AudioError::UnitTooLarge(10_000))
            ));
        }
        packets.extend(t.push(unit, *dts).expect("a good unit decodes"));
    }
    assert_timing(&packets, 0);
    let decoded = decode_opus(&packets, 2);
    assert_tone(&decoded, 2, 0, LEFT_HZ, "left");
    assert_tone(&decoded, 2, 1, RIGHT_HZ, "right");
}

#[test]
fn random_bytes_never_panic() {
    let aac = lc(22_050, 2, 0.5);
    let mut t = AacToOpus::new(&aac.asc).expect("valid ASC");
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for round in 0..3000 {
        let len = (next() % 800) as usize;
        let bytes: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        let dts = (next() as i64) >> (next() % 64);
        let _ = t.push(&bytes, dts);
        if round % 100 == 0 {
            // Good units in between, with extreme timestamps too.
            for (unit, dts) in &aac.units[..5] {
                let _ = t.push(unit, dts.saturating_add(i64::MAX - 1_000_000));
                let _ = t.push(unit, i64::MIN + dts);
            }
        }
        let _ = AacToOpus::new(&bytes[..len.min(8)]);
    }
    // Still usable afterwards.
    let packets = transcode_all(&mut t, &aac.units, 1_000_000_000);
    assert_timing(&packets, 1_000_000_000);
}

#[test]
fn an_unusable_audio_specific_config_is_an_error() {
    for asc in [
        &[][..],
        &[0x12][..],             // truncated
        &[0xff, 0xff, 0xff][..], // escape object type, reserved values
        &[0x0a, 0x10][..],       // AAC Main: fdk-aac does not decode it
        &[0x17, 0x10][..],       // reserved sampling frequency index 14
        &[0x12, 0x78][..],       // reserved channel configuration 15
    ] {
        assert!(
            matches!(AacToOpus::new(asc), Err(AudioError::Config(_))),
            "{asc:02x?}"
        );
    }
}

#[test]
fn is_send() {
    fn send<T: Send>() {}
    send::<AacToOpus>();
}
