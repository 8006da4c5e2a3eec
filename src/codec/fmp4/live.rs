//! A live stream's packets made into what one MSE viewer needs: init segments and fragments.
//! [`LiveMuxer`] follows the stream's configurations and publish epochs, chooses when an init
//! segment is due, and feeds a [`FragmentWriter`].
//!
//! Invariants:
//! - Output starts at a video keyframe (or, in a stream without video, at an audio frame) with
//!   an init segment before it; a new init segment comes only at such a start, when the tracks'
//!   configurations differ from the last one sent.
//! - A start waits (frames held, at most [`HOLD`] of wall time and [`MAX_HELD_FRAMES`]) for the
//!   configuration it lacks: the AAC made from a source's Opus or G.711 appears only once its
//!   transcoder runs, and a WebRTC publisher's audio comes before its video. What is known when
//!   the wait ends goes into the init segment.
//! - After a skip (the viewer fell behind) or a new publish epoch, output resumes at the next
//!   keyframe on a continued timeline ([`FragmentWriter::reset`]): the viewer's buffer has no
//!   gap, so playback never stalls on one.
//! - Only H.264 video and AAC audio are taken; any other codec's packets are ignored.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{carries, FragmentWriter, InitSegment};
use crate::media::{Codec, Frame, MediaPacket, TrackConfig, TrackKind};

/// Longest wait for a missing configuration before output starts without it.
pub const HOLD: Duration = Duration::from_millis(1000);
/// Most frames held while waiting (a GOP snapshot of a high frame rate stream).
pub const MAX_HELD_FRAMES: usize = 1024;

/// What the viewer gets next.
#[derive(Debug)]
pub enum MuxOutput {
    /// An init segment; the fragments after it belong to it.
    Init(InitSegment),
    /// One or more frames as `moof` + `mdat` (the payloads shared, not copied).
    Fragment(super::Fragment),
}

#[derive(Debug)]
pub struct LiveMuxer {
    video: Option<Arc<TrackConfig>>,
    audio: Option<Arc<TrackConfig>>,
    /// An audio configuration of any codec came in this epoch: AAC for this viewer exists or
    /// will (a transcoder's), so a start waits a little for it.
    audio_expected: bool,
    /// The configurations changed since the init segment last sent.
    configs_changed: bool,
    sent: Option<InitSegment>,
    writer: Option<FragmentWriter>,
    /// Writing fragments (false: waiting for a start point).
    running: bool,
    /// The next start continues the timeline of a previous one.
    resume: bool,
    held: Vec<Arc<Frame>>,
    hold_since: Option<Instant>,
}

impl Default for LiveMuxer {
    fn default() -> Self {
        Self::new()
    }
}

impl LiveMuxer {
    pub fn new() -> Self {
        LiveMuxer {
            video: None,
            audio: None,
            audio_expected: false,
            configs_changed: false,
            sent: None,
            writer: None,
            running: false,
            resume: false,
            held: Vec::new(),
            hold_since: None,
        }
    }

    /// The init segment last sent, if any.
    pub fn init(&self) -> Option<&InitSegment> {
        self.sent.as_ref()
    }

    /// When a start that waits for a configuration goes ahead without it: call
    /// [`LiveMuxer::poll_hold`] then.
    pub fn hold_deadline(&self) -> Option<Instant> {
        self.hold_since.map(|since| since + HOLD)
    }

    /// The viewer fell behind: output stops until the next start point.
    pub fn skip(&mut self) {
        self.stop_running();
    }

    fn stop_running(&mut self) {
        if self.running {
            self.resume = true;
        }
        self.running = false;
        self.held.clear();
        self.hold_since = None;
    }

    /// Takes one packet of the stream; appends what the viewer gets now to `out`.
    pub fn push(&mut self, packet: &MediaPacket, now: Instant, out: &mut Vec<MuxOutput>) {
        match packet {
            MediaPacket::Config(config) => self.config(config),
            MediaPacket::Frame(frame) => self.frame(frame, now, out),
            MediaPacket::Published { .. } => {
                self.video = None;
                self.audio = None;
                self.audio_expected = false;
                self.configs_changed = true;
                self.stop_running();
                // A new publisher's clock: the writer's timeline must restart even when the
                // configurations come back the same.
                self.resume = self.writer.is_some();
            }
            MediaPacket::Unpublished => self.stop_running(),
            MediaPacket::Metadata(_) => {}
        }
    }

    /// Ends a wait that ran out: output starts with what is known.
    pub fn poll_hold(&mut self, now: Instant, out: &mut Vec<MuxOutput>) {
        if self.hold_deadline().is_some_and(|at| now >= at) {
            self.start(out);
        }
    }

    fn config(&mut self, config: &Arc<TrackConfig>) {
        let slot = match config.codec.track() {
            TrackKind::Audio => {
                self.audio_expected = true;
                if config.codec != Codec::Aac {
                    return;
                }
                &mut self.audio
            }
            TrackKind::Video => {
                if config.codec != Codec::H264 {
                    return;
                }
                &mut self.video
            }
        };
        if slot
            .as_ref()
            .is_some_and(|old| old.data == config.data && old.codec == config.codec)
        {
            return;
        }
        *slot = Some(Arc::clone(config));
        self.configs_changed = true;
    }

    fn frame(&mut self, frame: &Arc<Frame>, now: Instant, out: &mut Vec<MuxOutput>) {
        if !carries(frame.codec) {
            return;
        }
        let is_video = frame.track() == TrackKind::Video;
        if self.running {
            if frame.is_video_keyframe() && self.configs_changed {
                // New parameters take effect at a keyframe: a new init segment goes first.
                self.running = false;
                self.resume = true;
            } else {
                self.write(&[Arc::clone(frame)], out);
                return;
            }
        }
        if frame.is_video_keyframe() {
            self.held.clear();
            self.held.push(Arc::clone(frame));
        } else if self.held.first().is_some_and(|f| f.is_video_keyframe())
            || (self.video.is_none() && !is_video)
        {
            // After a keyframe everything goes along; without video yet, audio may start.
            self.held.push(Arc::clone(frame));
        } else {
            return;
        }
        self.hold_since.get_or_insert(now);
        if self.ready() || self.held.len() >= MAX_HELD_FRAMES {
            self.start(out);
        }
    }

    /// Whether a start needs no more waiting: video with its keyframe, and the AAC
    /// configuration if audio is coming.
    fn ready(&self) -> bool {
        let starts_on_keyframe = self.held.first().is_some_and(|f| f.is_video_keyframe());
        let audio_known = self.audio.is_some() || !self.audio_expected;
        self.video.is_some() && starts_on_keyframe && audio_known
    }

    /// Starts output with the held frames: an init segment if the configurations changed,
    /// then the frames.
    fn start(&mut self, out: &mut Vec<MuxOutput>) {
        self.hold_since = None;
        let held = std::mem::take(&mut self.held);
        if held.is_empty() {
            return;
        }
        // Video without a keyframe first cannot start; an audio-only start leaves video out.
        let video = self
            .video
            .as_deref()
            .filter(|_| held[0].is_video_keyframe());
        let Ok(init) = InitSegment::new(video, self.audio.as_deref()) else {
            return;
        };
        if self.sent.as_ref() != Some(&init) {
            match self.writer.as_mut() {
                Some(writer) => writer.reset(&init),
                None => self.writer = Some(FragmentWriter::new(&init)),
            }
            out.push(MuxOutput::Init(init.clone()));
            self.sent = Some(init);
        } else if self.resume {
            if let Some(writer) = self.writer.as_mut() {
                writer.reset(&init);
            }
        }
        self.configs_changed = false;
        self.resume = false;
        self.running = true;
        self.write(&held, out);
    }

    fn write(&mut self, frames: &[Arc<Frame>], out: &mut Vec<MuxOutput>) {
        if let Some(fragment) = self
            .writer
            .as_mut()
            .and_then(|writer| writer.fragment_parts(frames))
        {
            out.push(MuxOutput::Fragment(fragment));
        }
    }
}
