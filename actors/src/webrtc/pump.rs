//! The media pump of one WebRTC viewer: reads the stream's fan-out, stamps RTP headers on the
//! frames' shared payloads and writes them to the viewer's tracks.
//!
//! Invariants: it starts on a fresh GOP snapshot, so the first video frame sent is a keyframe
//! (with SPS/PPS in band); the cached frames of that snapshot go out with squeezed timestamps
//! so the browser shows them at once instead of adding the GOP's age as delay; RTP timestamps
//! follow the player's rebased, monotonic timeline across republishes; sequence numbers never
//! skip; a viewer that falls behind the fan-out (the ring overtook it, or more than
//! `max_backlog` packets wait for it) skips to the next keyframe and is reported, then dropped
//! if it stays behind.

use crate::stream::MediaHub;
use bytes::Bytes;
use mediarouter_core::codec::rtp::{packetize_h264, H264Params, DEFAULT_MTU};
use mediarouter_core::codec::vp8::packetize_vp8;
use mediarouter_core::media::{
    Codec, Frame, LagAction, LagTracker, MediaPacket, StreamName, Timeline, TrackKind,
};
use rtc::rtp;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::broadcast::error::RecvError;
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
use webrtc::media_stream::track_local::TrackLocal;

/// Spacing of the cached frames sent at start: fast enough to look instant, distinct enough
/// for the browser's jitter buffer.
const BURST_SPACING_US: i64 = 1_000;

/// One outgoing track of the viewer.
pub struct TrackOut {
    pub track: Arc<TrackLocalStaticRTP>,
    pub ssrc: u32,
    pub payload_type: u8,
    pub clock_rate: u32,
    /// The stream's frames of this codec go to this track.
    pub codec: Codec,
}

/// What the pump tells its viewer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PumpEvent {
    /// The first frame went out.
    Playing,
    Unpublished,
    Republished,
    /// Frames were skipped because the viewer could not keep up.
    NotEnoughBandwidth {
        dropped: u64,
    },
    /// The pump ended (stream closed, viewer too slow, connection gone).
    Ended(String),
}

pub struct PumpSpec {
    pub hub: Arc<MediaHub>,
    pub name: StreamName,
    pub video: Option<TrackOut>,
    pub audio: Option<TrackOut>,
    pub bytes_out: Arc<AtomicU64>,
    pub max_lag_ms: u64,
    /// Packets waiting in the fan-out beyond which the viewer skips to the next keyframe.
    pub max_backlog: usize,
    pub events: tokio::sync::mpsc::UnboundedSender<PumpEvent>,
}

struct Sender {
    out: TrackOut,
    sequence: u16,
    /// Random start of the RTP timestamps, as RFC 3550 asks.
    base: u32,
}

impl Sender {
    fn new(out: TrackOut) -> Sender {
        Sender {
            out,
            sequence: rand::random(),
            base: rand::random(),
        }
    }

    fn timestamp(&self, time_us: i64) -> u32 {
        let ticks = i128::from(time_us) * i128::from(self.out.clock_rate) / 1_000_000;
        self.base.wrapping_add(ticks as u32)
    }

    /// Sends payloads as one frame; false when the connection is gone.
    async fn send(&mut self, payloads: &[Bytes], time_us: i64) -> bool {
        let timestamp = self.timestamp(time_us);
        let last = payloads.len().saturating_sub(1);
        for (i, payload) in payloads.iter().enumerate() {
            let packet = rtp::Packet {
                header: rtp::header::Header {
                    version: 2,
                    marker: i == last && self.out.codec.track() == TrackKind::Video,
                    payload_type: self.out.payload_type,
                    sequence_number: self.sequence,
                    timestamp,
                    ssrc: self.out.ssrc,
                    ..Default::default()
                },
                payload: payload.clone(),
            };
            self.sequence = self.sequence.wrapping_add(1);
            if self.out.track.write_rtp(packet).await.is_err() {
                return false;
            }
        }
        true
    }
}

pub async fn run(spec: PumpSpec) {
    let reason = Pump::new(&spec).run(&spec).await;
    let _ = spec.events.send(PumpEvent::Ended(reason));
}

struct Pump {
    video: Option<Sender>,
    audio: Option<Sender>,
    params: Option<H264Params>,
    timeline: Timeline,
    lag: LagTracker,
    waiting_for_keyframe: bool,
    /// Skipping frames until the backlog is down to a quarter of the limit, or a keyframe comes
    /// within the limit.
    draining: bool,
    /// The backlog has been near zero once: what queued up during the GOP burst at the start
    /// does not count as falling behind.
    near_live: bool,
    playing: bool,
    started: Instant,
}

impl Pump {
    fn new(spec: &PumpSpec) -> Pump {
        let take = |t: &Option<TrackOut>| {
            t.as_ref().map(|t| {
                Sender::new(TrackOut {
                    track: Arc::clone(&t.track),
                    ssrc: t.ssrc,
                    payload_type: t.payload_type,
                    clock_rate: t.clock_rate,
                    codec: t.codec,
                })
            })
        };
        Pump {
            video: take(&spec.video),
            audio: take(&spec.audio),
            params: None,
            timeline: Timeline::new(),
            lag: LagTracker::new(spec.max_lag_ms),
            waiting_for_keyframe: spec.video.is_some(),
            draining: false,
            near_live: false,
            playing: false,
            started: Instant::now(),
        }
    }

    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    async fn run(&mut self, spec: &PumpSpec) -> String {
        let (snapshot, mut receiver) = spec.hub.subscribe();
        if let Err(reason) = self.burst(&snapshot, spec).await {
            return reason;
        }
        loop {
            let packet = match receiver.recv().await {
                Ok(packet) => packet,
                Err(RecvError::Lagged(n)) => {
                    self.waiting_for_keyframe = self.video.is_some();
                    let action = self.lag.dropped(self.now_ms(), n);
                    if let Some(reason) = self.verdict(action, spec) {
                        return reason;
                    }
                    continue;
                }
                Err(RecvError::Closed) => return format!("stream {} closed", spec.name),
            };
            // The ring holds seconds of media: a viewer the server cannot keep up with (its CPU
            // is short) would fall that far behind before the ring overtakes it.
            let backlog = receiver.len();
            self.near_live |= backlog <= spec.max_backlog / 4;
            if self.near_live && !self.draining && backlog > spec.max_backlog {
                self.draining = true;
                self.waiting_for_keyframe = self.video.is_some();
            }
            if self.draining {
                let keyframe =
                    matches!(&packet, MediaPacket::Frame(f) if f.keyframe && self.is_video(f));
                if backlog <= spec.max_backlog / 4 || (keyframe && backlog <= spec.max_backlog) {
                    self.draining = false;
                    // Live again: waiting for the next keyframe is not being behind.
                    self.lag.caught_up();
                } else if matches!(packet, MediaPacket::Frame(_)) {
                    // Frames only: configurations and publish events still apply.
                    let action = self.lag.dropped(self.now_ms(), 1);
                    if let Some(reason) = self.verdict(action, spec) {
                        return reason;
                    }
                    continue;
                }
            }
            if let Err(reason) = self.packet(&packet, None, spec).await {
                return reason;
            }
            if let Some(action) = self.lag.check(self.now_ms()) {
                if let Some(reason) = self.verdict(action, spec) {
                    return reason;
                }
            }
        }
    }

    /// The snapshot's cached video frames, squeezed to end at the latest one's time; cached
    /// audio is left out (it would only play as a burst of stale sound).
    async fn burst(&mut self, snapshot: &[MediaPacket], spec: &PumpSpec) -> Result<(), String> {
        let video_frames = snapshot
            .iter()
            .filter(|p| matches!(p, MediaPacket::Frame(f) if self.is_video(f)))
            .count() as i64;
        let last_dts = snapshot.iter().rev().find_map(|p| match p {
            MediaPacket::Frame(f) if self.is_video(f) => Some(f.dts_us),
            _ => None,
        });
        let mut index = 0;
        for packet in snapshot {
            match packet {
                MediaPacket::Frame(f) if self.is_video(f) => {
                    let squeezed = last_dts.unwrap_or(f.dts_us)
                        - (video_frames - 1 - index) * BURST_SPACING_US;
                    index += 1;
                    self.packet(packet, Some(squeezed.min(f.dts_us)), spec)
                        .await?;
                }
                MediaPacket::Frame(_) => {}
                _ => self.packet(packet, None, spec).await?,
            }
        }
        Ok(())
    }

    fn is_video(&self, frame: &Frame) -> bool {
        self.video
            .as_ref()
            .is_some_and(|v| v.out.codec == frame.codec)
    }

    fn verdict(&mut self, action: LagAction, spec: &PumpSpec) -> Option<String> {
        match action {
            LagAction::Continue => None,
            LagAction::Log { dropped_since_log } => {
                let _ = spec.events.send(PumpEvent::NotEnoughBandwidth {
                    dropped: dropped_since_log,
                });
                None
            }
            LagAction::Disconnect { behind_ms } => Some(format!(
                "not enough bandwidth: behind the stream for {behind_ms} ms, {} frames skipped",
                self.lag.dropped_total()
            )),
        }
    }

    /// Sends one packet of the stream; `dts_override` replaces the frame's time (burst).
    async fn packet(
        &mut self,
        packet: &MediaPacket,
        dts_override: Option<i64>,
        spec: &PumpSpec,
    ) -> Result<(), String> {
        match packet {
            MediaPacket::Frame(frame) => {
                let is_video = self.is_video(frame);
                let is_audio = self
                    .audio
                    .as_ref()
                    .is_some_and(|a| a.out.codec == frame.codec);
                if !is_video && !is_audio {
                    return Ok(());
                }
                if self.waiting_for_keyframe {
                    if is_video && frame.keyframe {
                        self.waiting_for_keyframe = false;
                    } else {
                        return Ok(());
                    }
                }
                let time = self.timeline.map(dts_override.unwrap_or(frame.dts_us));
                let (sender, payloads, time) = if is_video {
                    let params = self.params.as_ref();
                    // Made once per frame for all viewers (a WebRTC publisher's VP8 frames
                    // come with their own).
                    let payloads = frame.rtp_payloads.get_or_init(|| match frame.codec {
                        Codec::Vp8 => packetize_vp8(&frame.payload, DEFAULT_MTU),
                        _ => packetize_h264(&frame.payload, frame.keyframe, params, DEFAULT_MTU),
                    });
                    let pts = time + i64::from(frame.cts_us.max(0));
                    (self.video.as_mut(), payloads.as_slice(), pts)
                } else {
                    (
                        self.audio.as_mut(),
                        std::slice::from_ref(&frame.payload),
                        time,
                    )
                };
                let Some(sender) = sender else {
                    return Ok(());
                };
                if !sender.send(payloads, time).await {
                    return Err("peer connection closed".into());
                }
                let bytes: usize = payloads.iter().map(Bytes::len).sum();
                spec.bytes_out.fetch_add(bytes as u64, Ordering::Relaxed);
                self.lag.caught_up();
                if !self.playing {
                    self.playing = true;
                    let _ = spec.events.send(PumpEvent::Playing);
                }
            }
            MediaPacket::Config(config) if config.codec == Codec::H264 => {
                self.params = H264Params::from_record(&config.data).ok();
            }
            MediaPacket::Published { .. } => {
                self.timeline.new_epoch();
                self.waiting_for_keyframe = self.video.is_some();
                let _ = spec.events.send(PumpEvent::Republished);
            }
            MediaPacket::Unpublished => {
                let _ = spec.events.send(PumpEvent::Unpublished);
            }
            _ => {}
        }
        Ok(())
    }
}
