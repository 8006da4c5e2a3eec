//! Real codecs on both ends: sines encoded to AAC with fdk-aac's encoder, transcoded, and the Opus
//! output decoded with libopus and measured.

use fdk_aac::enc::{AudioObjectType, BitRate, ChannelMode, Encoder, EncoderParams, Transport};

use super::test_support::*;
use super::*;

/// An AAC stream: its AudioSpecificConfig and its access units with their dts.
struct Aac {
    asc: Vec<u8>,
    units: Vec<(Vec<u8>, i64)>,
}

/// An fdk-aac encoder of raw AAC with its AudioSpecificConfig and information.
fn aac_encoder(
    rate: u32,
    channels: usize,
    bit_rate: u32,
    aot: AudioObjectType,
) -> (Encoder, Vec<u8>, fdk_aac::enc::InfoStruct) {
    let encoder = Encoder::new(EncoderParams {
        bit_rate: BitRate::Cbr(bit_rate),
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
    (encoder, asc, info)
}

/// `seconds` of the test tones encoded by fdk-aac, units stamped by sample count as a publisher
/// would.
fn encode_aac(rate: u32, channels: usize, seconds: f64, aot: AudioObjectType) -> Aac {
    let bit_rate = if channels == 2 { 128_000 } else { 64_000 }.min(rate * 4);
    let (encoder, asc, info) = aac_encoder(rate, channels, bit_rate, aot);
    let frame = info.frameLength as usize;

    let pcm = tones(rate, channels, seconds, 0.0);

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
    let steady = &mono[mono.len() / 4..mono.len() / 4 + RATE / 2];
    let found = dominant_hz(steady);
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
    let (encoder, asc, info) = aac_encoder(rate, 1, 128_000, AudioObjectType::Mpeg4LowComplexity);
    // The encoder's own priming delays the click too; the decoder must add nothing.
    let priming = info.nDelay as usize;
    let pcm = click(rate as usize);
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
    let peak = peak(&decode_opus(&packets, 1));
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
    let mut garbage = Garbage::new();
    for round in 0..3000 {
        let (bytes, dts) = garbage.input(800);
        let _ = t.push(&bytes, dts);
        if round % 100 == 0 {
            // Good units in between, with extreme timestamps too.
            for (unit, dts) in &aac.units[..5] {
                let _ = t.push(unit, dts.saturating_add(i64::MAX - 1_000_000));
                let _ = t.push(unit, i64::MIN + dts);
            }
        }
        let _ = AacToOpus::new(&bytes[..bytes.len().min(8)]);
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
