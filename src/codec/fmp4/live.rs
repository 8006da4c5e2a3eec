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

#[cfg(test)]
mod tests {
    use super::super::tests::{
        audio, audio_config, read_fragment, video, video_config, ASC_44100_STEREO,
    };
    use super::*;
    use crate::media::TrackInfo;
    use bytes::Bytes;

    fn config(config: TrackConfig) -> MediaPacket {
        MediaPacket::Config(Arc::new(config))
    }

    fn frame(frame: Frame) -> MediaPacket {
        MediaPacket::Frame(Arc::new(frame))
    }

    fn opus_config() -> MediaPacket {
        config(TrackConfig {
            codec: Codec::Opus,
            data: Bytes::new(),
            dts_us: 0,
            info: TrackInfo::default(),
        })
    }

    /// What came out, as `I` (init with video/audio flags) and `F` (fragment) items.
    fn kinds(out: &[MuxOutput]) -> Vec<String> {
        out.iter()
            .map(|o| match o {
                MuxOutput::Init(init) => format!(
                    "I{}{}",
                    if init.has_video() { "v" } else { "" },
                    if init.has_audio() { "a" } else { "" }
                ),
                MuxOutput::Fragment(_) => "F".into(),
            })
            .collect()
    }

    fn push_all(muxer: &mut LiveMuxer, packets: &[MediaPacket], now: Instant) -> Vec<MuxOutput> {
        let mut out = Vec::new();
        for packet in packets {
            muxer.push(packet, now, &mut out);
        }
        out
    }

    /// The first decode time (tfdt) of the video run of a fragment.
    fn video_base(out: &MuxOutput) -> u64 {
        let MuxOutput::Fragment(fragment) = out else {
            panic!("not a fragment");
        };
        let data = fragment.clone().into_bytes();
        let (_, runs) = read_fragment(&data);
        runs.iter()
            .find(|r| r.track_id == 1)
            .expect("video run")
            .base
    }

    #[test]
    fn output_starts_with_an_init_segment_at_a_keyframe() {
        let now = Instant::now();
        let mut muxer = LiveMuxer::new();
        let out = push_all(
            &mut muxer,
            &[
                config(video_config()),
                config(audio_config(ASC_44100_STEREO)),
                frame(video(0, 0, false)),
                frame(audio(10_000)),
                frame(video(33_000, 0, true)),
                frame(audio(43_000)),
                frame(video(66_000, 0, false)),
            ],
            now,
        );
        assert_eq!(kinds(&out), ["Iva", "F", "F", "F"]);
    }

    #[test]
    fn a_start_waits_for_the_aac_made_from_other_audio() {
        let now = Instant::now();
        let mut muxer = LiveMuxer::new();
        let out = push_all(
            &mut muxer,
            &[
                config(video_config()),
                opus_config(),
                frame(video(0, 0, true)),
                frame(video(33_000, 0, false)),
            ],
            now,
        );
        assert!(out.is_empty(), "{:?}", kinds(&out));
        assert_eq!(muxer.hold_deadline(), Some(now + HOLD));
        let out = push_all(
            &mut muxer,
            &[config(audio_config(ASC_44100_STEREO)), frame(audio(40_000))],
            now,
        );
        assert_eq!(
            kinds(&out),
            ["Iva", "F"],
            "held frames go out in one fragment"
        );
        assert_eq!(muxer.hold_deadline(), None);
    }

    #[test]
    fn a_wait_that_runs_out_starts_without_the_missing_track() {
        let now = Instant::now();
        let mut muxer = LiveMuxer::new();
        let out = push_all(
            &mut muxer,
            &[
                config(video_config()),
                opus_config(),
                frame(video(0, 0, true)),
            ],
            now,
        );
        assert!(out.is_empty());
        let mut out = Vec::new();
        muxer.poll_hold(now + HOLD / 2, &mut out);
        assert!(out.is_empty());
        muxer.poll_hold(now + HOLD, &mut out);
        assert_eq!(kinds(&out), ["Iv", "F"]);
        // The AAC that comes later takes effect, with a new init segment, at the next keyframe.
        let out = push_all(
            &mut muxer,
            &[
                config(audio_config(ASC_44100_STEREO)),
                frame(video(33_000, 0, false)),
                frame(audio(40_000)),
                frame(video(1_000_000, 0, true)),
            ],
            now,
        );
        assert_eq!(kinds(&out), ["F", "Iva", "F"]);
    }

    #[test]
    fn new_parameters_bring_a_new_init_segment_at_the_next_keyframe() {
        let now = Instant::now();
        let mut muxer = LiveMuxer::new();
        let mut out = push_all(
            &mut muxer,
            &[config(video_config()), frame(video(0, 0, true))],
            now,
        );
        let mut changed = video_config();
        let mut record = changed.data.to_vec();
        record[3] = 0x1f;
        changed.data = Bytes::from(record);
        out.extend(push_all(
            &mut muxer,
            &[
                config(changed),
                frame(video(33_000, 0, false)),
                frame(video(66_000, 0, true)),
            ],
            now,
        ));
        assert_eq!(kinds(&out), ["Iv", "F", "F", "Iv", "F"]);
    }

    #[test]
    fn a_republish_continues_the_timeline_without_a_new_init() {
        let now = Instant::now();
        let mut muxer = LiveMuxer::new();
        let first = push_all(
            &mut muxer,
            &[
                config(video_config()),
                frame(video(5_000_000, 0, true)),
                frame(video(5_033_000, 0, false)),
            ],
            now,
        );
        let second = push_all(
            &mut muxer,
            &[
                MediaPacket::Unpublished,
                MediaPacket::Published { epoch: 2 },
                config(video_config()),
                frame(video(0, 0, false)),
                frame(video(0, 0, true)),
            ],
            now,
        );
        assert_eq!(kinds(&first), ["Iv", "F", "F"]);
        assert_eq!(
            kinds(&second),
            ["F"],
            "same parameters: no new init segment"
        );
        // The new publisher's clock restarts at 0; the viewer's timeline goes on.
        assert!(video_base(&second[0]) > video_base(&first[2]));
    }

    #[test]
    fn a_skip_resumes_at_the_next_keyframe_without_a_gap() {
        let now = Instant::now();
        let mut muxer = LiveMuxer::new();
        let out = push_all(
            &mut muxer,
            &[
                config(video_config()),
                frame(video(0, 0, true)),
                frame(video(33_000, 0, false)),
            ],
            now,
        );
        muxer.skip();
        let after = push_all(
            &mut muxer,
            &[
                frame(video(66_000, 0, false)),
                frame(video(5_000_000, 0, true)),
            ],
            now,
        );
        assert_eq!(kinds(&after), ["F"], "only the keyframe");
        let skipped_to = video_base(&after[0]);
        // Continued where the last fragment ended, not 5 s later.
        assert!(skipped_to < 90_000 * 2, "{skipped_to}");
        assert!(skipped_to > video_base(&out[2]));
    }

    #[test]
    fn other_codecs_are_ignored() {
        let now = Instant::now();
        let mut muxer = LiveMuxer::new();
        let vp8 = Frame::new(Codec::Vp8, 0, 0, true, Bytes::from_static(&[0x10, 0, 0]));
        let out = push_all(&mut muxer, &[frame(vp8)], now);
        assert!(out.is_empty());
        assert_eq!(muxer.hold_deadline(), None);
    }
}
