//! Real codecs on both ends: sines encoded to Opus with libopus in 20 ms packets, transcoded, and
//! the AAC output decoded with fdk-aac and measured.

use super::test_support::*;
use super::*;

/// 20 ms at 48 kHz: the WebRTC packetisation.
const PACKET_SAMPLES: usize = 960;
const PACKET_US: i64 = 20_000;

/// Encodes interleaved audio into 20 ms Opus packets as a browser would.
fn encode_opus(pcm: &[i16], channels: usize, encoder: &mut opus::Encoder) -> Vec<Vec<u8>> {
    let mut out = vec![0u8; 4000];
    pcm.chunks_exact(PACKET_SAMPLES * channels)
        .map(|frame| {
            let len = encoder.encode(frame, &mut out).expect("opus encode");
            out[..len].to_vec()
        })
        .collect()
}

fn opus_encoder(channels: usize) -> opus::Encoder {
    let mut encoder = opus::Encoder::new(
        RATE as u32,
        opus_channels(channels),
        opus::Application::Audio,
    )
    .expect("opus encoder");
    encoder
        .set_bitrate(opus::Bitrate::Bits(48_000 * channels as i32))
        .expect("bitrate");
    encoder
}

fn opus_tones(channels: usize, seconds: f64) -> Vec<Vec<u8>> {
    encode_opus(
        &tones(RATE as u32, channels, seconds, 0.0),
        channels,
        &mut opus_encoder(channels),
    )
}

/// Transcodes every packet, stamped `start_us` + 20 ms each.
fn transcode_all(t: &mut OpusToAac, packets: &[Vec<u8>], start_us: i64) -> Vec<AacUnit> {
    push_all(packets, start_us, PACKET_US, |p, pts| t.push(p, pts))
}

/// Where unit `n` of a timeline starting at `origin_us` must sit: from the sample count.
fn unit_dts(origin_us: i64, n: usize) -> i64 {
    origin_us + (n * 1024 * 1_000_000 / RATE) as i64
}

/// Units numbered from `origin_us` without a gap, each exactly where its sample count says.
fn assert_timing(units: &[AacUnit], origin_us: i64) {
    assert_eq!(units.first().map(|u| u.dts_us), Some(origin_us));
    for (n, unit) in units.iter().enumerate() {
        assert_eq!(unit.dts_us, unit_dts(origin_us, n), "unit {n}");
        assert!(!unit.data.is_empty(), "unit {n} is empty");
    }
}

fn check_transcode(channels: u8) {
    let packets = opus_tones(usize::from(channels), 2.0);
    let mut t = OpusToAac::new(channels).expect("transcoder");
    assert_eq!(t.channels(), channels);
    let start = 7_000_000;
    let units = transcode_all(&mut t, &packets, start);
    assert_timing(&units, start);
    // All of the input but what waits in the encoder (its delay and a partial unit).
    let input = packets.len() * PACKET_SAMPLES;
    let output = units.len() * 1024;
    assert!(
        output <= input && output + 3 * 1024 > input,
        "{output} samples out of {input} in"
    );

    let channels = usize::from(channels);
    let decoded = to_f32(&decode_aac(&t.audio_specific_config(), &units, channels));
    assert_tone(&decoded, channels, 0, LEFT_HZ, "left");
    if channels == 2 {
        assert_tone(&decoded, channels, 1, RIGHT_HZ, "right");
    }
}

#[test]
fn transcodes_stereo() {
    check_transcode(2);
}

#[test]
fn transcodes_mono() {
    check_transcode(1);
}

#[test]
fn a_mono_stream_decoded_as_stereo_has_the_tone_on_both_sides() {
    let packets = opus_tones(1, 2.0);
    let mut t = OpusToAac::new(2).expect("transcoder");
    let units = transcode_all(&mut t, &packets, 0);
    assert_timing(&units, 0);
    let decoded = to_f32(&decode_aac(&t.audio_specific_config(), &units, 2));
    assert_tone(&decoded, 2, 0, LEFT_HZ, "left");
    assert_tone(&decoded, 2, 1, LEFT_HZ, "right");
}

#[test]
fn the_audio_specific_config_is_aac_lc_48khz() {
    // Object type 2, frequency index 3 (48 kHz), channel configuration 1 or 2.
    let stereo = OpusToAac::new(2).expect("stereo");
    assert_eq!(&stereo.audio_specific_config()[..], &[0x11, 0x90]);
    let mono = OpusToAac::new(1).expect("mono");
    assert_eq!(&mono.audio_specific_config()[..], &[0x11, 0x88]);
    for channels in [0, 3, 6, 255] {
        assert!(matches!(
            OpusToAac::new(channels),
            Err(AudioError::Channels(c)) if c == channels
        ));
    }
}

#[test]
fn the_encoder_delay_is_not_added_to_the_timeline() {
    // A click 1 s after the first packet's pts must decode 1 s after the first unit's dts.
    let pcm = click(RATE);
    let mut encoder = opus_encoder(1);
    // Opus's look-ahead delays the click in any Opus decoder: RTP cannot signal it.
    let lookahead = encoder.get_lookahead().expect("lookahead") as usize;
    let packets = encode_opus(&pcm, 1, &mut encoder);
    let mut t = OpusToAac::new(1).expect("transcoder");
    let start = 3_000_000;
    let units = transcode_all(&mut t, &packets, start);
    assert_timing(&units, start);
    let peak = peak(&to_f32(&decode_aac(&t.audio_specific_config(), &units, 1)));
    // Within the 1 ms burst; the AAC priming (≥ 1024 samples) would be far off.
    let expected = RATE + lookahead;
    assert!(
        peak + 8 >= expected && peak < expected + 56,
        "click at {peak}, expected just after {expected}"
    );
}

#[test]
fn timestamp_jumps_start_a_new_timeline() {
    let packets = opus_tones(2, 1.0);
    let end = 60_000_000 + packets.len() as i64 * PACKET_US;
    for jump in [10_000_000i64, -30_000_000, 250_000, -250_000] {
        let mut t = OpusToAac::new(2).expect("transcoder");
        let before = transcode_all(&mut t, &packets, 60_000_000);
        assert_timing(&before, 60_000_000);
        let restart = end + jump;
        let after = transcode_all(&mut t, &packets, restart);
        assert_timing(&after, restart);
        assert_eq!(after.len(), before.len(), "jump {jump}");
    }
}

/// Transcodes a mono tone with every 10th packet lost (from the 6th) and every 25th delivered
/// twice, checks that the timeline holds, and returns the level of each lost packet's time
/// relative to the tone's.
fn transcode_with_losses(mut encoder: opus::Encoder) -> Vec<f64> {
    let pcm = tones(RATE as u32, 1, 2.0, 0.0);
    let packets = encode_opus(&pcm, 1, &mut encoder);
    let lookahead = encoder.get_lookahead().expect("lookahead") as usize;
    let mut t = OpusToAac::new(1).expect("transcoder");
    let mut units = Vec::new();
    for (i, packet) in packets.iter().enumerate() {
        // ±3 ms of jitter, as a publisher stamping from a clock might add.
        let pts = i as i64 * PACKET_US + [0, 3_000, -2_000, 1_000][i % 4];
        if i % 10 == 5 {
            continue;
        }
        units.extend(t.push(packet, pts).expect("transcode"));
        if i % 25 == 3 {
            assert_eq!(t.push(packet, pts).expect("duplicate"), Vec::new());
        }
    }
    // Lost time was filled, duplicates dropped: the units still span the input.
    assert_timing(&units, 0);
    let input = packets.len() * PACKET_SAMPLES;
    assert!(
        units.len() * 1024 <= input && units.len() * 1024 + 3 * 1024 > input,
        "{} units",
        units.len()
    );

    let decoded = to_f32(&decode_aac(&t.audio_specific_config(), &units, 1));
    let steady = &decoded[RATE / 2..RATE];
    assert!((dominant_hz(steady) - LEFT_HZ).abs() <= 20.0);
    let tone = sine_rms();
    (15..packets.len() - 5)
        .step_by(10)
        .map(|lost| {
            let from = lost * PACKET_SAMPLES + lookahead;
            rms(&decoded[from..from + PACKET_SAMPLES]) / tone
        })
        .collect()
}

#[test]
fn lost_packets_are_concealed_and_duplicates_dropped() {
    // CELT, the music mode: libopus conceals by repeating the last pitch period.
    let levels = transcode_with_losses(opus_encoder(1));
    assert!(levels.iter().all(|&l| l > 0.4), "levels {levels:.2?}");
}

#[test]
fn lost_packets_are_recovered_from_in_band_fec() {
    // SILK carries FEC (CELT does not): the voice mode at a speech bitrate. Concealment alone
    // brings this tone to a half or less; FEC restores it. libopus stops sending FEC for this
    // tone after about a second, so only the first losses are checked.
    let mut encoder =
        opus::Encoder::new(RATE as u32, opus::Channels::Mono, opus::Application::Voip)
            .expect("opus encoder");
    encoder
        .set_bitrate(opus::Bitrate::Bits(32_000))
        .expect("bitrate");
    encoder.set_inband_fec(true).expect("fec");
    encoder.set_packet_loss_perc(20).expect("loss");
    let levels = transcode_with_losses(encoder);
    assert!(levels[..3].iter().all(|&l| l > 0.8), "levels {levels:.2?}");
}

#[test]
fn a_corrupt_packet_is_an_error_and_the_next_one_decodes() {
    let packets = opus_tones(2, 2.0);
    let mut t = OpusToAac::new(2).expect("transcoder");
    let mut units = Vec::new();
    for (i, packet) in packets.iter().enumerate() {
        let pts = i as i64 * PACKET_US;
        if i % 10 == 5 {
            assert!(matches!(t.push(&[], pts), Err(AudioError::EmptyPacket)));
            // Code 3 without its frame count; two equal frames in an odd length; 49 frames.
            for garbage in [&[0x03][..], &[0x01, 0, 0, 0], &[0x03, 0x31, 0, 0]] {
                assert!(
                    matches!(t.push(garbage, pts), Err(AudioError::OpusDecode(_))),
                    "{garbage:02x?}"
                );
            }
            // Code 3 announcing no frames at all.
            assert!(matches!(
                t.push(&[0x03, 0x00], pts),
                Err(AudioError::PacketDuration(0))
            ));
        }
        units.extend(t.push(packet, pts).expect("a good packet decodes"));
    }
    assert_timing(&units, 0);
    let decoded = to_f32(&decode_aac(&t.audio_specific_config(), &units, 2));
    assert_tone(&decoded, 2, 0, LEFT_HZ, "left");
    assert_tone(&decoded, 2, 1, RIGHT_HZ, "right");
}

#[test]
fn random_bytes_never_panic() {
    let packets = opus_tones(2, 0.2);
    let mut t = OpusToAac::new(2).expect("transcoder");
    let mut garbage = Garbage::new();
    for round in 0..3000 {
        let (bytes, pts) = garbage.input(400);
        let _ = t.push(&bytes, pts);
        if round % 100 == 0 {
            // Good packets in between, with extreme timestamps too.
            for (i, packet) in packets[..5].iter().enumerate() {
                let offset = i as i64 * PACKET_US;
                let _ = t.push(packet, i64::MAX - 1_000_000 + offset);
                let _ = t.push(packet, i64::MIN + offset);
            }
        }
        let _ = OpusToAac::new(garbage.next_u64() as u8);
    }
    // Still usable afterwards.
    let packets = opus_tones(2, 0.5);
    let units = transcode_all(&mut t, &packets, 1_000_000_000);
    assert_timing(&units, 1_000_000_000);
}

#[test]
fn is_send() {
    fn send<T: Send>() {}
    send::<OpusToAac>();
}
