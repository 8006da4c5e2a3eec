//! G.711 tables against known values and ffmpeg's decoder; both transcoders with real codecs on
//! the other end (fdk-aac and libopus decode what they make): tone, level, timing, gaps.

use std::process::Command;

use super::super::test_support::{self, push_all, rms, tones, Garbage, ToneCheck, LEFT_HZ, RATE};
use super::*;

const LAWS: [G711Law; 2] = [G711Law::ALaw, G711Law::MuLaw];
/// 20 ms at 8 kHz: the usual RTP packetisation of G.711.
const PAYLOAD: usize = 160;
const PAYLOAD_US: i64 = 20_000;
const AAC_FRAME_US: i64 = 1024 * 1_000_000 / 48_000;

/// `seconds` of 8 kHz audio: silence for `silent` seconds, then the (left) test tone.
fn tone(seconds: f64, silent: f64) -> Vec<i16> {
    tones(G711_SAMPLE_RATE, 1, seconds, silent)
}

/// G.711 encoding for the tests: the code whose decoded value is nearest.
fn encode(law: G711Law, pcm: &[i16]) -> Vec<u8> {
    let mut codes: Vec<(i16, u8)> = (0..=255u8).map(|c| (law.decode_sample(c), c)).collect();
    codes.sort_unstable();
    pcm.iter()
        .map(|&s| {
            let i = codes.partition_point(|&(v, _)| v < s);
            let above = codes.get(i);
            let below = i.checked_sub(1).map(|i| codes[i]);
            match (below, above) {
                (Some(b), Some(a)) if (s - b.0) as i32 <= (a.0 - s) as i32 => b.1,
                (_, Some(a)) => a.1,
                (Some(b), None) => b.1,
                (None, None) => unreachable!("256 codes"),
            }
        })
        .collect()
}

fn payloads(law: G711Law, pcm: &[i16]) -> Vec<Vec<u8>> {
    encode(law, pcm)
        .chunks(PAYLOAD)
        .map(<[u8]>::to_vec)
        .collect()
}

fn to_aac(t: &mut G711ToAac, payloads: &[Vec<u8>], start_us: i64) -> Vec<AacUnit> {
    push_all(payloads, start_us, PAYLOAD_US, |p, dts| t.push(p, dts))
}

fn to_opus(t: &mut G711ToOpus, payloads: &[Vec<u8>], start_us: i64) -> Vec<OpusPacket> {
    push_all(payloads, start_us, PAYLOAD_US, |p, dts| t.push(p, dts))
}

/// Decodes the (mono) AAC with fdk-aac, its output delay skipped: sample 0 is the first unit's
/// dts.
fn decode_aac(asc: &[u8], units: &[AacUnit]) -> Vec<f32> {
    test_support::to_f32(&test_support::decode_aac(asc, units, 1))
}

fn decode_opus(packets: &[OpusPacket]) -> Vec<f32> {
    test_support::decode_opus(packets, 1)
}

/// Half a second of steady tone from `from`: its frequency (within 20 Hz, searched in 10 Hz
/// steps up to 3.5 kHz) and a level within 20 % of the sine's.
fn assert_tone(decoded: &[f32], from: usize, what: &str) {
    let check = ToneCheck {
        step_hz: 10.0,
        max_hz: 3500.0,
        hz_tolerance: 20.0,
        level: (0.8, 1.2),
    };
    test_support::assert_steady_tone(&decoded[from..from + RATE / 2], LEFT_HZ, &check, what);
}

/// Where the tone starts in decoded 48 kHz audio, in µs from its first sample.
fn onset_us(decoded: &[f32]) -> i64 {
    let index = decoded
        .iter()
        .position(|x| x.abs() > 0.05)
        .expect("the tone");
    (index * 1_000_000 / RATE) as i64
}

#[test]
fn tables_hold_the_known_values() {
    let a = G711Law::ALaw;
    let u = G711Law::MuLaw;
    // Smallest steps, the extremes, and a middle segment.
    assert_eq!((a.decode_sample(0xd5), a.decode_sample(0x55)), (8, -8));
    assert_eq!(
        (a.decode_sample(0xaa), a.decode_sample(0x2a)),
        (32_256, -32_256)
    );
    assert_eq!(a.decode_sample(0x80), 5504);
    assert_eq!((u.decode_sample(0xff), u.decode_sample(0x7f)), (0, 0));
    assert_eq!(
        (u.decode_sample(0x80), u.decode_sample(0x00)),
        (32_124, -32_124)
    );
    assert_eq!((u.decode_sample(0xfe), u.decode_sample(0x7e)), (8, -8));
    assert_eq!(u.decode_sample(0xc0), 1884);
    for law in LAWS {
        // The sign bit alone flips the sign; each half is strictly monotonic in its line code
        // (A-law's even bits inverted first).
        let line = |magnitude: u8| match law {
            G711Law::ALaw => (0x80 | magnitude) ^ 0x55,
            G711Law::MuLaw => !magnitude,
        };
        let values: Vec<i16> = (0..128u8).map(|m| law.decode_sample(line(m))).collect();
        assert!(values.windows(2).all(|w| w[0] < w[1]), "{law:?} {values:?}");
        for c in 0..=255u8 {
            assert_eq!(law.decode_sample(c ^ 0x80), -law.decode_sample(c), "{c:#x}");
        }
    }
    let mut out = vec![1];
    G711Law::ALaw.decode(&[0xd5, 0x2a], &mut out);
    assert_eq!(out, vec![1, 8, -32_256]);
    assert_eq!(G711Law::from_codec(Codec::Pcmu), Some(G711Law::MuLaw));
    assert_eq!(G711Law::from_codec(Codec::Aac), None);
    assert_eq!(G711Law::ALaw.codec(), Codec::Pcma);
}

#[test]
fn tables_match_ffmpeg() {
    let dir = std::env::temp_dir().join(format!("mediarouter-g711-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch directory");
    let input = dir.join("codes.raw");
    std::fs::write(&input, (0..=255u8).collect::<Vec<u8>>()).expect("write");
    for (law, format) in [(G711Law::ALaw, "alaw"), (G711Law::MuLaw, "mulaw")] {
        let output = Command::new("ffmpeg")
            .args(["-v", "error", "-f", format, "-ar", "8000", "-ac", "1", "-i"])
            .arg(&input)
            .args(["-f", "s16le", "-"])
            .output()
            .unwrap_or_else(|e| {
                panic!("ffmpeg is required by this test and could not be run ({e}): install it (scripts/install-test-deps.sh)")
            });
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let theirs: Vec<i16> = output
            .stdout
            .chunks_exact(2)
            .map(|b| i16::from_le_bytes([b[0], b[1]]))
            .collect();
        let mut ours = Vec::new();
        law.decode(&(0..=255u8).collect::<Vec<u8>>(), &mut ours);
        assert_eq!(ours, theirs, "{law:?}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn g711_to_aac_keeps_the_tone_and_its_timing() {
    for law in LAWS {
        let mut t = G711ToAac::new(law).expect("transcoder");
        assert_eq!(t.law(), law);
        // AAC-LC, 48 kHz, mono.
        assert_eq!(&t.audio_specific_config()[..], &[0x11, 0x88]);
        let start = 5_000_000;
        let input = payloads(law, &tone(2.0, 0.5));
        let units = to_aac(&mut t, &input, start);
        for (n, unit) in units.iter().enumerate() {
            assert_eq!(
                unit.dts_us,
                start + (n as i64 * 1024 * 1_000_000 / 48_000),
                "unit {n}"
            );
            assert!(!unit.data.is_empty());
        }
        // All of the input but what waits in the resampler and the encoder.
        let output_us = units.len() as i64 * AAC_FRAME_US;
        assert!(
            output_us <= 2_000_000 && output_us > 2_000_000 - 4 * AAC_FRAME_US,
            "{output_us} µs out of 2 s"
        );
        let decoded = decode_aac(&t.audio_specific_config(), &units);
        // The tone starts 0.5 s in, and so it does in the output, within a frame.
        let onset = onset_us(&decoded);
        assert!(
            (onset - 500_000).abs() < AAC_FRAME_US,
            "{law:?}: tone at {onset} µs"
        );
        assert_tone(&decoded, RATE, &format!("{law:?}"));
    }
}

#[test]
fn g711_to_opus_keeps_the_tone_and_its_timing() {
    for law in LAWS {
        let mut t = G711ToOpus::new(law).expect("transcoder");
        assert_eq!((t.channels(), t.law()), (1, law));
        let start = -3_000_000;
        let input = payloads(law, &tone(2.0, 0.5));
        let packets = to_opus(&mut t, &input, start);
        // 20 ms in, 20 ms out: all but the resampler's few samples of look-ahead.
        assert_eq!(packets.len(), input.len() - 1);
        for (n, packet) in packets.iter().enumerate() {
            assert_eq!(packet.pts_us, start + n as i64 * 20_000);
            assert_eq!(packet.duration_us, 20_000);
        }
        let decoded = decode_opus(&packets);
        let onset = onset_us(&decoded);
        // Opus's own look-ahead (6.5 ms) comes on top.
        assert!(
            (onset - 500_000).abs() < 20_000,
            "{law:?}: tone at {onset} µs"
        );
        assert_tone(&decoded, RATE, &format!("{law:?}"));
    }
}

#[test]
fn lost_payloads_are_filled_and_duplicates_dropped() {
    let law = G711Law::ALaw;
    let input = payloads(law, &tone(2.0, 0.5));
    let mut reference = G711ToAac::new(law).expect("transcoder");
    let full = to_aac(&mut reference, &input, 0);

    let mut t = G711ToAac::new(law).expect("transcoder");
    let mut units = Vec::new();
    for (i, p) in input.iter().enumerate() {
        let dts = i as i64 * PAYLOAD_US;
        if (40..45).contains(&i) {
            continue; // lost: 100 ms of tone
        }
        units.extend(t.push(p, dts).expect("transcode"));
        if i % 7 == 0 {
            // A duplicate, and one a little late: both already covered.
            assert!(t.push(p, dts).expect("duplicate").is_empty());
            assert!(t.push(p, dts + 3_000).expect("late").is_empty());
        }
    }
    // The gap was filled: as many units, at the same times, as without the loss; after the gap
    // the audio is the same again.
    assert_eq!(units.len(), full.len());
    for (a, b) in units.iter().zip(&full) {
        assert_eq!(a.dts_us, b.dts_us);
    }
    let decoded = decode_aac(&t.audio_specific_config(), &units);
    assert_eq!(
        onset_us(&decoded),
        onset_us(&decode_aac(&t.audio_specific_config(), &full))
    );
    // Silence where the loss was (0.8 to 0.9 s; the codecs smear the edges), the tone after it.
    let gap = &decoded[RATE * 83 / 100..RATE * 87 / 100];
    assert!(rms(gap) < 0.01, "gap level {}", rms(gap));
    assert_tone(&decoded, RATE, "after a loss");

    // Same for Opus.
    let mut t = G711ToOpus::new(law).expect("transcoder");
    let mut packets = Vec::new();
    for (i, p) in input.iter().enumerate() {
        if !(40..45).contains(&i) {
            packets.extend(t.push(p, i as i64 * PAYLOAD_US).expect("transcode"));
        }
    }
    assert_eq!(packets.len(), input.len() - 1);
    assert_eq!(
        packets.last().map(|p| p.pts_us),
        Some((input.len() as i64 - 2) * 20_000)
    );
}

#[test]
fn timestamp_jumps_start_a_new_timeline() {
    let law = G711Law::MuLaw;
    let input = payloads(law, &tone(1.0, 0.0));
    let mut t = G711ToAac::new(law).expect("transcoder");
    let first = to_aac(&mut t, &input, 0);
    // Backwards (a republish) and far forwards (a camera reconnect).
    for start in [100_000, 60_000_000] {
        let units = to_aac(&mut t, &input, start);
        assert_eq!(units.len(), first.len());
        assert_eq!(units[0].dts_us, start);
        let decoded = decode_aac(&t.audio_specific_config(), &units);
        assert!(onset_us(&decoded) < AAC_FRAME_US, "the tone from the start");
    }
    let mut t = G711ToOpus::new(law).expect("transcoder");
    to_opus(&mut t, &input, 0);
    let packets = to_opus(&mut t, &input, 500_000);
    assert_eq!(packets[0].pts_us, 500_000);
    assert_eq!(packets.len(), input.len() - 1);
}

#[test]
fn odd_payload_sizes_keep_the_sample_clock() {
    let law = G711Law::ALaw;
    let pcm = encode(law, &tone(1.0, 0.0));
    let mut t = G711ToOpus::new(law).expect("transcoder");
    let mut packets = Vec::new();
    let mut at = 0;
    // 1 to 400 samples at a time, each stamped with its own first sample's time.
    for size in (1..400).cycle() {
        if at >= pcm.len() {
            break;
        }
        let end = (at + size).min(pcm.len());
        let dts = (at as i64 * 1_000_000) / 8000;
        packets.extend(t.push(&pcm[at..end], dts).expect("transcode"));
        assert!(t.push(&[], dts).expect("empty").is_empty());
        at = end;
    }
    assert_eq!(packets.len(), 49);
    for (n, packet) in packets.iter().enumerate() {
        assert_eq!(packet.pts_us, n as i64 * 20_000);
    }
    assert_tone(&decode_opus(&packets), 0, "odd sizes");
}

#[test]
fn garbage_never_panics() {
    let mut garbage = Garbage::new();
    for law in LAWS {
        let mut aac = G711ToAac::new(law).expect("transcoder");
        let mut opus = G711ToOpus::new(law).expect("transcoder");
        for _ in 0..1000 {
            let (bytes, dts) = garbage.input(1200);
            let _ = aac.push(&bytes, dts);
            let _ = opus.push(&bytes, dts);
        }
        for dts in [i64::MAX, i64::MIN, 0, i64::MAX - 1] {
            let _ = aac.push(&[0xd5; 160], dts);
            let _ = opus.push(&[0xd5; 160], dts);
        }
        // Still usable afterwards.
        let input = payloads(law, &tone(1.0, 0.0));
        let units = to_aac(&mut aac, &input, 1_000_000_000);
        assert_eq!(units[0].dts_us, 1_000_000_000);
        assert_tone(
            &decode_aac(&aac.audio_specific_config(), &units),
            4800,
            "after garbage",
        );
        let packets = to_opus(&mut opus, &input, 1_000_000_000);
        assert_eq!(packets[0].pts_us, 1_000_000_000);
    }
}

#[test]
fn is_send() {
    fn send<T: Send>() {}
    send::<G711ToAac>();
    send::<G711ToOpus>();
}
