//! Opus to AAC for RTMP and fMP4 players of WebRTC publishers: Opus packets (RTP payloads) in,
//! raw AAC-LC access units at 48 kHz out.
//!
//! [`OpusToAac`] decodes with libopus at 48 kHz (the Opus rate, so no resampling) and encodes
//! with fdk-aac (AAC-LC, raw transport: no ADTS, the AudioSpecificConfig travels apart). It is
//! sans-IO: the caller feeds packets with their presentation times and sends the units on. One
//! per stream, never per viewer.
//!
//! Invariants:
//! - Every unit holds 1024 samples per channel; a timeline's first unit carries the pts of the
//!   packet that started it and unit `n` exactly `origin + n * 1024 / 48 kHz` (µs, rounded down
//!   from the sample count, so rounding never accumulates): dts never goes backwards within a
//!   timeline, and AAC-LC has no reordering, so dts is also the pts.
//! - The encoder's delay is compensated by the shared [`AacEncoder`] (lead-in silence, dropped
//!   priming units): a unit's dts is the time of the first input sample it carries (Opus's own
//!   look-ahead, which RTP cannot signal, is left in, as every WebRTC receiver leaves it). The
//!   dropped priming means a player's decoder lacks the first unit's overlap: a timeline's first
//!   ~10 ms fade in.
//! - A new timeline starts at the first packet and whenever a pts misses the expected one (from
//!   the sample count) by more than [`MAX_DTS_DRIFT_US`] either way; buffered audio is dropped
//!   and both codecs start afresh. A smaller forward gap of at least half a packet (lost
//!   packets) is filled by libopus's concealment (in-band FEC when the next packet carries it),
//!   a packet that far behind (duplicate, or reordered after its gap was filled) is dropped:
//!   either way later units stay in step with the input timestamps.
//! - A malformed packet returns an error and changes nothing (packets are parsed before any
//!   state moves): the next one decodes. No input makes this module panic.

use bytes::Bytes;

use super::aac_encoder::{AacEncoder, AacUnit};
use super::{samples_to_us, AudioError, MAX_DTS_DRIFT_US, OPUS_SAMPLE_RATE};

/// The longest Opus packet (120 ms at 48 kHz), the decoder's output bound.
const OPUS_MAX_PACKET_SAMPLES: usize = 5760;
const AAC_BITRATE_MONO: u32 = 64_000;
const AAC_BITRATE_STEREO: u32 = 128_000;

/// The sample-count clock of one timeline's input (the output's is in [`AacEncoder`]).
#[derive(Debug)]
struct Timeline {
    /// pts of the packet that started the timeline: the dts of its first unit.
    origin_us: i64,
    /// 48 kHz samples per channel taken in since `origin_us`, decoded or concealed.
    input_samples: u64,
}

impl Timeline {
    /// The pts the next packet should carry if none was lost.
    fn expected_pts_us(&self) -> i64 {
        self.origin_us
            .saturating_add(samples_to_us(self.input_samples, OPUS_SAMPLE_RATE))
    }
}

/// Opus to AAC for one stream. See the module documentation for the timing rules.
pub struct OpusToAac {
    decoder: opus::Decoder,
    /// Decodes straight into its pending audio; its clock starts at the timeline's origin.
    aac: AacEncoder,
    /// 1 or 2: decoded, encoded and signalled alike.
    channels: usize,
    timeline: Option<Timeline>,
}

impl std::fmt::Debug for OpusToAac {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpusToAac")
            .field("channels", &self.channels)
            .field("timeline", &self.timeline)
            .field("aac", &self.aac)
            .finish_non_exhaustive()
    }
}

impl OpusToAac {
    /// `channels`: 1 or 2, what the Opus stream carries (WebRTC signals opus/48000/2; decode to
    /// stereo when unsure: libopus upmixes mono packets).
    pub fn new(channels: u8) -> Result<Self, AudioError> {
        let opus_channels = match channels {
            1 => opus::Channels::Mono,
            2 => opus::Channels::Stereo,
            other => return Err(AudioError::Channels(other)),
        };
        let channels = usize::from(channels);
        let decoder =
            opus::Decoder::new(OPUS_SAMPLE_RATE, opus_channels).map_err(AudioError::OpusDecode)?;
        let bitrate = if channels == 1 {
            AAC_BITRATE_MONO
        } else {
            AAC_BITRATE_STEREO
        };
        Ok(OpusToAac {
            decoder,
            aac: AacEncoder::new(channels, bitrate)?,
            channels,
            timeline: None,
        })
    }

    /// The AAC AudioSpecificConfig of the output (AAC-LC, 48 kHz, `channels`): the FLV AAC
    /// sequence header body / the fMP4 esds decoder-specific info.
    pub fn audio_specific_config(&self) -> Bytes {
        self.aac.audio_specific_config()
    }

    /// 1 or 2, as given to [`OpusToAac::new`].
    pub fn channels(&self) -> u8 {
        if self.channels == 1 {
            1
        } else {
            2
        }
    }

    /// One Opus packet (RTP payload) with its presentation time in µs. Returns the AAC access
    /// units completed by it (1024 samples each, raw, no ADTS), possibly none.
    pub fn push(&mut self, opus: &[u8], pts_us: i64) -> Result<Vec<AacUnit>, AudioError> {
        // The opus crate reads an empty packet as a lost one: that is for `conceal` to ask.
        if opus.is_empty() {
            return Err(AudioError::EmptyPacket);
        }
        // Parsing first, so that a malformed packet changes nothing.
        let samples =
            opus::packet::get_nb_samples(opus, OPUS_SAMPLE_RATE).map_err(AudioError::OpusDecode)?;
        if samples == 0 || samples > OPUS_MAX_PACKET_SAMPLES {
            return Err(AudioError::PacketDuration(samples));
        }
        // At least 2.5 ms: libopus rejects shorter frames.
        let packet_us = samples_to_us(samples as u64, OPUS_SAMPLE_RATE);
        let half_packet_us = packet_us / 2;

        let mut missing = 0;
        let mut restart = true;
        if let Some(timeline) = &self.timeline {
            let drift = pts_us.saturating_sub(timeline.expected_pts_us());
            if drift.saturating_abs() <= MAX_DTS_DRIFT_US {
                restart = false;
                if drift <= -half_packet_us {
                    // Its time is already covered (a duplicate, or a late packet whose gap was
                    // concealed): taking it would push everything after it late.
                    return Ok(Vec::new());
                }
                if drift >= half_packet_us {
                    // Whole packets were lost, most likely as long as this one: rounding to them
                    // keeps timestamp jitter out of the fill, and lets libopus use this packet's
                    // FEC, which it does only for a gap of at least one packet.
                    let lost = (drift + half_packet_us) / packet_us;
                    missing = u64::try_from(lost).unwrap_or(0) * samples as u64;
                }
            }
        }
        if restart {
            self.restart(pts_us)?;
        }
        if missing > 0 {
            self.conceal(opus, missing);
        }
        self.decode(opus, samples)?;
        self.aac.encode()
    }

    /// Starts a timeline at `pts_us`: fresh codecs, nothing buffered but the lead-in silence.
    fn restart(&mut self, pts_us: i64) -> Result<(), AudioError> {
        // First, as the one step that can fail (a new fdk-aac encoder): a failure leaves the
        // transcoder as it was.
        self.aac.restart(pts_us)?;
        if self.timeline.is_some() {
            // libopus's reset always succeeds.
            self.decoder.reset_state().map_err(AudioError::OpusDecode)?;
        }
        self.timeline = Some(Timeline {
            origin_us: pts_us,
            input_samples: 0,
        });
        Ok(())
    }

    /// Fills `samples` (whole packets, so a multiple of the 2.5 ms libopus requires) of lost
    /// audio before `next`: libopus conceals and, when `next` carries in-band FEC for the packet
    /// just before it, recovers that one.
    fn conceal(&mut self, next: &[u8], samples: u64) {
        let Some(timeline) = &mut self.timeline else {
            return;
        };
        let Ok(samples) = usize::try_from(samples) else {
            return;
        };
        let pending = self.aac.pending();
        let start = pending.len();
        pending.resize(start + samples * self.channels, 0);
        // libopus fills exactly the size asked for; if it fails, the silence already in place
        // stands in: time must advance either way.
        let _ = self.decoder.decode(next, &mut pending[start..], true);
        timeline.input_samples = timeline.input_samples.saturating_add(samples as u64);
    }

    /// Decodes one packet of `samples` per channel onto the encoder's pending audio.
    fn decode(&mut self, opus: &[u8], samples: usize) -> Result<(), AudioError> {
        let pending = self.aac.pending();
        let start = pending.len();
        pending.resize(start + samples * self.channels, 0);
        let decoded = self.decoder.decode(opus, &mut pending[start..], false);
        let decoded = match decoded {
            Ok(n) if n <= samples => n,
            Ok(_) => samples,
            Err(e) => {
                pending.truncate(start);
                return Err(AudioError::OpusDecode(e));
            }
        };
        pending.truncate(start + decoded * self.channels);
        if let Some(timeline) = &mut self.timeline {
            timeline.input_samples = timeline.input_samples.saturating_add(decoded as u64);
        }
        Ok(())
    }
}
