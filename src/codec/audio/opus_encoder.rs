//! The Opus encoder every transcoder to Opus shares ([`super::AacToOpus`],
//! [`super::G711ToOpus`]): 48 kHz float audio gathered into 20 ms frames, encoded with libopus,
//! packet timestamps from a packet count. The caller keeps its own input clock (gaps, jumps) and
//! tells this one where each timeline starts.
//!
//! Invariants:
//! - Every packet holds [`OPUS_FRAME_SAMPLES`] samples per channel (20 ms); packet `n` of a
//!   timeline carries `origin + n * 20 000` µs, where `origin` is what [`OpusEncoder::restart`]
//!   was given, so pts never goes backwards within a timeline. Opus keeps its 6.5 ms
//!   look-ahead, which RTP cannot signal and players do not compensate.
//! - Less than one frame is left pending between calls; a restart drops it and resets libopus.
//! - A frame that fails to encode still takes its 20 ms, so later packets keep their place on
//!   the timeline; the error is returned in place of the call's packets. No input makes this
//!   module panic.

use bytes::Bytes;

use super::{AudioError, OPUS_FRAME_SAMPLES, OPUS_FRAME_US, OPUS_SAMPLE_RATE};

/// libopus's recommended output buffer; a 20 ms packet never exceeds 1275 bytes.
const OPUS_MAX_PACKET: usize = 4000;

/// One Opus packet ready for RTP: `pts_us` on the input's timeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpusPacket {
    pub data: Bytes,
    pub pts_us: i64,
    pub duration_us: u32,
}

/// libopus at 48 kHz in 20 ms frames, with the packet clock of the module documentation.
pub(super) struct OpusEncoder {
    encoder: opus::Encoder,
    /// 1 or 2: the layout of the input samples and of the packets.
    channels: usize,
    clock: PacketClock,
    /// 48 kHz interleaved audio not yet encoded (less than one frame between calls).
    pending: Vec<f32>,
    /// Scratch: one encoded packet.
    packet: Vec<u8>,
}

/// The packet clock of one timeline.
#[derive(Debug, Default)]
struct PacketClock {
    /// pts of the timeline's first packet.
    origin_us: i64,
    /// Packets emitted (or failed) so far in this timeline.
    packets: u64,
}

impl PacketClock {
    /// Counts one 20 ms frame and returns its pts.
    fn next_pts_us(&mut self) -> i64 {
        let offset = self.packets.saturating_mul(u64::from(OPUS_FRAME_US));
        self.packets = self.packets.saturating_add(1);
        self.origin_us
            .saturating_add(i64::try_from(offset).unwrap_or(i64::MAX))
    }
}

/// The codec handle and the buffers tell nothing useful: only the clock is shown.
impl std::fmt::Debug for OpusEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("OpusEncoder").field(&self.clock).finish()
    }
}

impl OpusEncoder {
    /// `channels`: 1 or 2 (anything else is taken for 2); `bitrate`: in bits/s.
    pub(super) fn new(channels: usize, bitrate: i32) -> Result<Self, AudioError> {
        let (channels, opus_channels) = if channels == 1 {
            (1, opus::Channels::Mono)
        } else {
            (2, opus::Channels::Stereo)
        };
        let mut encoder =
            opus::Encoder::new(OPUS_SAMPLE_RATE, opus_channels, opus::Application::Audio)?;
        encoder.set_bitrate(opus::Bitrate::Bits(bitrate))?;
        Ok(OpusEncoder {
            encoder,
            channels,
            clock: PacketClock::default(),
            pending: Vec::with_capacity(OPUS_FRAME_SAMPLES * channels * 4),
            packet: vec![0; OPUS_MAX_PACKET],
        })
    }

    /// Starts a timeline whose first packet carries `origin_us`: libopus afresh, nothing
    /// pending. On error nothing has changed.
    pub(super) fn restart(&mut self, origin_us: i64) -> Result<(), AudioError> {
        // A new timeline does not continue the old sound.
        self.encoder.reset_state()?;
        self.pending.clear();
        self.clock = PacketClock {
            origin_us,
            packets: 0,
        };
        Ok(())
    }

    /// The interleaved 48 kHz audio waiting for [`OpusEncoder::encode`]: append to it.
    pub(super) fn pending(&mut self) -> &mut Vec<f32> {
        &mut self.pending
    }

    /// Encodes every complete 20 ms frame of the pending audio.
    pub(super) fn encode(&mut self) -> Result<Vec<OpusPacket>, AudioError> {
        let frame_len = OPUS_FRAME_SAMPLES * self.channels;
        let mut packets = Vec::with_capacity(self.pending.len() / frame_len);
        let mut start = 0;
        let mut result = Ok(());
        while self.pending.len() - start >= frame_len {
            let encoded = self
                .encoder
                .encode_float(&self.pending[start..start + frame_len], &mut self.packet);
            start += frame_len;
            // A frame that fails to encode still takes its 20 ms, so later packets keep their
            // place on the timeline.
            let pts_us = self.clock.next_pts_us();
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
