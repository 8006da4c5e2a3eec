//! Fragmented MP4 (ISO BMFF) for Media Source Extensions players (Chrome, Firefox, Safari and
//! iOS Safari's ManagedMediaSource): an [`InitSegment`] from a stream's track configurations,
//! then a [`FragmentWriter`] per viewer turning frames into `moof` + `mdat` fragments, latency
//! first (a fragment of one frame is the norm).
//!
//! Invariants:
//! - Tracks: H.264 (the avcC record as received, AVCC payloads passed as they are) and AAC (the
//!   AudioSpecificConfig as received, raw access units). Track id 1 is video, 2 audio; a lone
//!   track is 1. Timescales: 90 kHz video, the AAC sampling rate audio.
//! - Timeline: the first video keyframe (or, without video, the first audio frame) decodes at 0;
//!   every frame sits at its dts relative to it, converted to the track timescale from the
//!   absolute microsecond offset (never by adding rounded deltas), so nothing drifts and tracks
//!   stay in sync. After [`FragmentWriter::reset`] (a new init segment, or a new publisher
//!   timeline) the next keyframe decodes where the previous timeline ended, so one SourceBuffer
//!   plays on without a seek.
//! - Nothing is written before the first video keyframe of a timeline (MSE drops what precedes a
//!   random access point anyway), and no audio from before it.
//! - Per track, decode times strictly increase: a frame whose dts does not advance is placed one
//!   tick after its predecessor, its presentation time kept through the composition offset.
//! - Composition offsets are signed (trun version 1), so B-frames keep their presentation order.
//! - Durations: the next frame's dts when it is in the same call. The last frame of a call gets an
//!   estimate, and the next fragment's tfdt is its true decode time (a gap or an overlap, never a
//!   drift). Audio frames always last 1024 samples, and an audio dts within half a frame of the
//!   sample-count position is snapped to it, so millisecond timestamps (RTMP) neither overlap
//!   decoded audio (browsers trim overlaps: clicks) nor leave holes. Video gets the longest of its
//!   last eight dts steps but at least [`MIN_VIDEO_FRAME_US`] ([`DEFAULT_VIDEO_FRAME_US`] before
//!   there is a step): MSE treats a dts step of more than twice the previous frame's duration as
//!   a discontinuity and drops all video up to the next keyframe, while a duration that runs long
//!   is only overlapped by the next frame. The cost: a video-only SourceBuffer's `buffered` end
//!   runs up to that estimate past the last picture (with audio, whose durations are exact, the
//!   intersection hides it). An audio hole of more than two frames is such a discontinuity too,
//!   and Chrome then makes every track, video included, wait for a keyframe: audio sources
//!   should come without holes (the transcoders fill short losses with silence).
//! - A frame the writer cannot carry (a codec not in the init segment, an empty payload, AVCC
//!   whose length prefixes do not tile the payload, which makes Chrome fail the whole
//!   SourceBuffer) is skipped and counted; no input makes this module panic.

mod boxes;
#[cfg(test)]
mod client_tests;
pub mod live;
#[cfg(test)]
mod tests;

use std::borrow::Borrow;

use bytes::Bytes;

use self::boxes::{Boxes, SampleEntry, TrakSpec};
use super::aac::AudioSpecificConfig;
use super::avc::{sps_dimensions, AvcConfig};
use super::CodecError;
use crate::media::{Codec, Frame, TrackConfig};

/// The video timescale: the RTP clock rate, fine enough for every frame rate.
pub const VIDEO_TIMESCALE: u32 = 90_000;
/// Samples per channel in one AAC access unit (AAC-LC, and HE-AAC counted at its core rate).
const AAC_FRAME_SAMPLES: u32 = 1024;
/// The duration given to a video frame while no dts step is known yet (the first frame of a
/// timeline sent alone). Long on purpose: a step of up to twice this is then no discontinuity,
/// so even a 2 fps camera keeps its first GOP.
pub const DEFAULT_VIDEO_FRAME_US: i64 = 250_000;
/// The shortest estimated video duration: a source that skips frames (a busy encoder, a
/// WebRTC publisher, a camera) may step three frames at once at 30 fps and still be no
/// discontinuity. Measured in Chromium on a 30 fps stream skipping 3 frames every 50: 563 of
/// 564 pictures shown with this floor, 164 with the plain longest step.
pub const MIN_VIDEO_FRAME_US: i64 = 100_000;
/// The longest estimated video duration: a dts jump (a paused source) must not make every later
/// estimate huge.
pub const MAX_VIDEO_FRAME_US: i64 = 1_000_000;
/// Dts steps a video duration estimate looks back on.
const STEP_HISTORY: usize = 8;
/// Codec configurations are a few dozen bytes; anything near this is not one.
pub const MAX_CONFIG_BYTES: usize = 64 * 1024;
/// Larger than any real access unit (an 8K intra frame is a few MB); bounds every box size.
pub const MAX_SAMPLE_BYTES: usize = 16 * 1024 * 1024;
/// A call with more samples or bytes than this writes several moof + mdat pairs, so sizes and
/// data offsets always fit their 32-bit fields.
const MAX_SAMPLES_PER_MOOF: usize = 1024;
const MAX_MDAT_BYTES: usize = 64 * 1024 * 1024;

/// Sample flags (ISO 14496-12 8.8.3.1): depends on no other sample; a sync sample.
const FLAGS_SYNC: u32 = 0x0200_0000;
/// Depends on other samples; not a sync sample.
const FLAGS_NON_SYNC: u32 = 0x0101_0000;

/// What a fragment writer needs to know about one track of an init segment.
#[derive(Debug, Clone, PartialEq, Eq)]
struct TrackSetup {
    id: u32,
    codec: Codec,
    timescale: u32,
    /// Video: the AVCC length prefix size (from the avcC record).
    nal_length_size: u8,
}

/// Whether this writer carries a codec: H.264 video and AAC audio (other audio must be
/// transcoded to AAC first).
pub fn carries(codec: Codec) -> bool {
    matches!(codec, Codec::H264 | Codec::Aac)
}

/// The `ftyp` + `moov` that starts an MSE SourceBuffer, and its MIME type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitSegment {
    data: Bytes,
    mime: String,
    tracks: Vec<TrackSetup>,
}

impl InitSegment {
    /// From the stream's configurations: H.264 (`data` is the AVCDecoderConfigurationRecord)
    /// and/or AAC (`data` is the AudioSpecificConfig). At least one is needed.
    pub fn new(
        video: Option<&TrackConfig>,
        audio: Option<&TrackConfig>,
    ) -> Result<InitSegment, CodecError> {
        if video.is_none() && audio.is_none() {
            return Err(invalid("fMP4 init segment", "no track".into()));
        }
        let mut specs = Vec::with_capacity(2);
        let mut tracks = Vec::with_capacity(2);
        let mut codecs = Vec::with_capacity(2);
        // Both parsed before anything is written: the records must outlive the specs.
        let avc = video.map(video_track).transpose()?;
        let aac = audio.map(audio_track).transpose()?;

        if let (Some(config), Some((avc, width, height))) = (video, &avc) {
            let id = specs.len() as u32 + 1;
            codecs.push(avc_codec_string(avc, &config.data));
            tracks.push(TrackSetup {
                id,
                codec: Codec::H264,
                timescale: VIDEO_TIMESCALE,
                nal_length_size: avc.nal_length_size,
            });
            specs.push(TrakSpec {
                id,
                timescale: VIDEO_TIMESCALE,
                entry: SampleEntry::Avc {
                    width: *width,
                    height: *height,
                    record: &config.data,
                },
            });
        }
        if let (Some(config), Some(asc)) = (audio, &aac) {
            let id = specs.len() as u32 + 1;
            codecs.push(format!("mp4a.40.{}", asc.object_type));
            tracks.push(TrackSetup {
                id,
                codec: Codec::Aac,
                timescale: asc.sample_rate,
                nal_length_size: 0,
            });
            specs.push(TrakSpec {
                id,
                timescale: asc.sample_rate,
                entry: SampleEntry::Aac {
                    channels: sample_entry_channels(asc.channels),
                    sample_rate: asc.sample_rate,
                    asc: &config.data,
                },
            });
        }

        let mut b = Boxes::with_capacity(1024);
        boxes::ftyp(&mut b);
        let moov = b.start(b"moov");
        boxes::mvhd(&mut b, specs.len() as u32 + 1);
        for spec in &specs {
            boxes::trak(&mut b, spec);
        }
        let mvex = b.start(b"mvex");
        for spec in &specs {
            boxes::trex(&mut b, spec.id);
        }
        b.end(mvex);
        b.end(moov);

        let container = if video.is_some() { "video" } else { "audio" };
        Ok(InitSegment {
            data: Bytes::from(b.buf),
            mime: format!("{container}/mp4; codecs=\"{}\"", codecs.join(",")),
            tracks,
        })
    }

    /// The bytes to append first to the SourceBuffer.
    pub fn data(&self) -> &Bytes {
        &self.data
    }

    /// The MSE type for `MediaSource.isTypeSupported` / `addSourceBuffer` / `changeType`, such as
    /// `video/mp4; codecs="avc1.42C01F,mp4a.40.2"`.
    pub fn mime_codecs(&self) -> &str {
        &self.mime
    }

    pub fn has_video(&self) -> bool {
        self.tracks.iter().any(|t| t.codec == Codec::H264)
    }

    pub fn has_audio(&self) -> bool {
        self.tracks.iter().any(|t| t.codec == Codec::Aac)
    }
}

fn invalid(what: &'static str, reason: String) -> CodecError {
    CodecError::Invalid { what, reason }
}

/// The parsed record and the picture size of a video configuration.
fn video_track(config: &TrackConfig) -> Result<(AvcConfig, u16, u16), CodecError> {
    const WHAT: &str = "fMP4 video track";
    if config.codec != Codec::H264 {
        return Err(invalid(
            WHAT,
            format!("{} cannot be carried (H.264 only)", config.codec.name()),
        ));
    }
    if config.data.len() > MAX_CONFIG_BYTES {
        return Err(invalid(
            WHAT,
            format!("{} byte decoder configuration", config.data.len()),
        ));
    }
    let avc = AvcConfig::parse(&config.data)?;
    if avc.sps.is_empty() || avc.pps.is_empty() {
        return Err(invalid(
            WHAT,
            "the decoder configuration lacks an SPS or a PPS".into(),
        ));
    }
    if avc.nal_length_size == 3 {
        return Err(invalid(WHAT, "3-byte NAL unit lengths".into()));
    }
    // The SPS is what decoders believe; the track info is a fallback for an SPS that the parser
    // does not take.
    let (width, height) = avc
        .sps
        .first()
        .and_then(|sps| sps_dimensions(sps))
        .or_else(|| config.info.width.zip(config.info.height))
        .ok_or_else(|| invalid(WHAT, "picture size unknown".into()))?;
    match (u16::try_from(width), u16::try_from(height)) {
        (Ok(w), Ok(h)) if w > 0 && h > 0 => Ok((avc, w, h)),
        _ => Err(invalid(WHAT, format!("picture size {width}x{height}"))),
    }
}

fn audio_track(config: &TrackConfig) -> Result<AudioSpecificConfig, CodecError> {
    const WHAT: &str = "fMP4 audio track";
    if config.codec != Codec::Aac {
        return Err(invalid(
            WHAT,
            format!(
                "{} cannot be carried (AAC only: transcode first)",
                config.codec.name()
            ),
        ));
    }
    if config.data.len() > MAX_CONFIG_BYTES {
        return Err(invalid(
            WHAT,
            format!("{} byte AudioSpecificConfig", config.data.len()),
        ));
    }
    let asc = AudioSpecificConfig::parse(&config.data)?;
    if asc.sample_rate == 0 {
        return Err(invalid(WHAT, "sampling rate 0".into()));
    }
    Ok(asc)
}

/// The mp4a channel count for an AAC channel configuration. Decoders take the layout from the
/// AudioSpecificConfig; this field only has to be plausible (0 means a program config element).
fn sample_entry_channels(configuration: u8) -> u16 {
    match configuration {
        1..=6 => u16::from(configuration),
        7 => 8,
        _ => 2,
    }
}

/// `avc1.PPCCLL` (RFC 6381): profile, constraint flags and level of the SPS, which is what the
/// decoder will see (the record's copies of those bytes are a fallback).
fn avc_codec_string(avc: &AvcConfig, record: &[u8]) -> String {
    let parsed = [avc.profile_idc, avc.constraint_flags, avc.level_idc];
    let bytes = avc
        .sps
        .first()
        .and_then(|sps| sps.get(1..4))
        .or_else(|| record.get(1..4))
        .unwrap_or(&parsed);
    format!("avc1.{:02X}{:02X}{:02X}", bytes[0], bytes[1], bytes[2])
}

/// One or more `moof` + `mdat` pairs, as the parts to send in order: each pair's header (the moof
/// and the mdat box header) followed by the frames' payloads, shared, not copied.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Fragment {
    pub parts: Vec<Bytes>,
}

impl Fragment {
    /// Total length in bytes.
    pub fn len(&self) -> usize {
        self.parts.iter().map(Bytes::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.parts.iter().all(Bytes::is_empty)
    }

    /// The parts in one buffer (one copy of the payloads), for a transport that sends one.
    pub fn into_bytes(self) -> Bytes {
        if self.parts.len() == 1 {
            return self.parts.into_iter().next().unwrap_or_default();
        }
        let mut out = Vec::with_capacity(self.len());
        for part in &self.parts {
            out.extend_from_slice(part);
        }
        Bytes::from(out)
    }
}

/// The timing state of one track in a [`FragmentWriter`].
#[derive(Debug, Clone)]
struct Track {
    setup: TrackSetup,
    /// Decode time (track ticks) of the last sample written in this timeline.
    last_decode: Option<u64>,
    /// Video: the last dts steps in ticks (a ring, `steps_next` the next slot to fill).
    steps: [u64; STEP_HISTORY],
    steps_next: usize,
}

impl Track {
    fn new(setup: &TrackSetup) -> Self {
        Track {
            setup: setup.clone(),
            last_decode: None,
            steps: [0; STEP_HISTORY],
            steps_next: 0,
        }
    }

    fn is_video(&self) -> bool {
        self.setup.codec == Codec::H264
    }

    fn record_step(&mut self, step: u64) {
        self.steps[self.steps_next] = step;
        self.steps_next = (self.steps_next + 1) % STEP_HISTORY;
    }

    /// The duration of a sample whose successor is not known yet.
    fn estimated_duration(&self) -> u64 {
        if !self.is_video() {
            return u64::from(AAC_FRAME_SAMPLES);
        }
        let timescale = self.setup.timescale;
        let longest = self.steps.iter().copied().max().unwrap_or(0);
        let estimate = if longest == 0 {
            to_ticks(DEFAULT_VIDEO_FRAME_US, timescale)
        } else {
            longest.max(to_ticks(MIN_VIDEO_FRAME_US, timescale))
        };
        estimate.min(to_ticks(MAX_VIDEO_FRAME_US, timescale))
    }
}

/// A frame placed on its track's timeline, waiting to be written.
#[derive(Debug)]
struct Sample {
    /// Index in `FragmentWriter::tracks`.
    track: usize,
    decode: u64,
    duration: u32,
    composition_offset: i32,
    flags: u32,
    payload: Bytes,
}

/// Turns frames into movie fragments for one viewer, after that viewer got the
/// [`InitSegment`] the writer was made (or last reset) with. See the module documentation for
/// the timing rules.
#[derive(Debug, Clone)]
pub struct FragmentWriter {
    tracks: Vec<Track>,
    has_video: bool,
    /// The publisher dts that decodes at `start_us`: set by the first frame of a timeline.
    origin_us: Option<i64>,
    /// Output time (µs) where the current timeline starts.
    start_us: i64,
    /// Output time (µs) where the last samples written end: the next timeline's start.
    end_us: i64,
    /// mfhd sequence number of the last moof (the first is 1).
    sequence: u32,
    skipped: u64,
}

impl FragmentWriter {
    pub fn new(init: &InitSegment) -> Self {
        FragmentWriter {
            tracks: init.tracks.iter().map(Track::new).collect(),
            has_video: init.has_video(),
            origin_us: None,
            start_us: 0,
            end_us: 0,
            sequence: 0,
            skipped: 0,
        }
    }

    /// Starts a new timeline for a new init segment (sent to the viewer before the next
    /// fragment), or for the same one when the publisher's timestamps restart: the next video
    /// keyframe decodes where the last fragment ended. Sequence numbers continue.
    pub fn reset(&mut self, init: &InitSegment) {
        self.tracks = init.tracks.iter().map(Track::new).collect();
        self.has_video = init.has_video();
        self.origin_us = None;
        self.start_us = self.end_us;
    }

    /// The fragment carrying `frames` (in decode order per track, tracks interleaved as they
    /// come) in one buffer, or `None` if none of them could be written.
    pub fn fragment<F: Borrow<Frame>>(&mut self, frames: &[F]) -> Option<Bytes> {
        self.fragment_parts(frames).map(Fragment::into_bytes)
    }

    /// As [`FragmentWriter::fragment`], with the payloads left in their own buffers.
    pub fn fragment_parts<F: Borrow<Frame>>(&mut self, frames: &[F]) -> Option<Fragment> {
        let mut samples = Vec::with_capacity(frames.len());
        for frame in frames {
            match self.place(frame.borrow()) {
                Some(sample) => samples.push(sample),
                None => self.skipped = self.skipped.saturating_add(1),
            }
        }
        if samples.is_empty() {
            return None;
        }
        self.set_durations(&mut samples);

        let mut fragment = Fragment::default();
        let mut start = 0;
        let mut bytes = 0;
        for (i, sample) in samples.iter().enumerate() {
            if i > start
                && (i - start == MAX_SAMPLES_PER_MOOF
                    || bytes + sample.payload.len() > MAX_MDAT_BYTES)
            {
                self.write_moof(&samples[start..i], &mut fragment.parts);
                start = i;
                bytes = 0;
            }
            bytes += sample.payload.len();
        }
        self.write_moof(&samples[start..], &mut fragment.parts);
        Some(fragment)
    }

    /// Frames skipped so far: codecs outside the init segment, unusable payloads, frames before
    /// a timeline's first keyframe.
    pub fn skipped_frames(&self) -> u64 {
        self.skipped
    }

    /// The mfhd sequence number of the last fragment written (0 before the first).
    pub fn sequence_number(&self) -> u32 {
        self.sequence
    }

    /// Puts one frame on its track's timeline, or says it cannot be written.
    fn place(&mut self, frame: &Frame) -> Option<Sample> {
        let index = self
            .tracks
            .iter()
            .position(|t| t.setup.codec == frame.codec)?;
        let payload_len = frame.payload.len();
        if payload_len == 0 || payload_len > MAX_SAMPLE_BYTES {
            return None;
        }
        let video = self.tracks[index].is_video();
        if video && !avcc_framed(&frame.payload, self.tracks[index].setup.nal_length_size) {
            return None;
        }
        let origin_us = match self.origin_us {
            Some(origin) => origin,
            // MSE starts a video track at a random access point only, and audio from before the
            // first picture has nothing to play with.
            None if self.has_video && !(video && frame.keyframe) => return None,
            None => *self.origin_us.insert(frame.dts_us),
        };
        let track = &mut self.tracks[index];
        let timescale = track.setup.timescale;
        let t_us = frame
            .dts_us
            .saturating_sub(origin_us)
            .saturating_add(self.start_us);
        if t_us < 0 && track.last_decode.is_none() {
            // Before the timeline's start: only audio interleaved just ahead of the keyframe.
            return None;
        }
        let ticks = to_ticks(t_us.max(0), timescale);
        let decode = match track.last_decode {
            None => ticks,
            Some(last) => {
                let mut decode = ticks;
                if !video {
                    let expected = last.saturating_add(u64::from(AAC_FRAME_SAMPLES));
                    if ticks.abs_diff(expected) <= u64::from(AAC_FRAME_SAMPLES / 2) {
                        decode = expected;
                    }
                }
                let decode = decode.max(last.saturating_add(1));
                if video {
                    track.record_step(decode - last);
                }
                decode
            }
        };
        track.last_decode = Some(decode);

        let (composition_offset, flags) = if video {
            let pts_ticks =
                to_ticks_signed(t_us.saturating_add(i64::from(frame.cts_us)), timescale);
            let offset = i128::from(pts_ticks) - i128::from(decode);
            let offset = offset.clamp(i128::from(i32::MIN), i128::from(i32::MAX)) as i32;
            let flags = if frame.keyframe {
                FLAGS_SYNC
            } else {
                FLAGS_NON_SYNC
            };
            (offset, flags)
        } else {
            (0, FLAGS_SYNC)
        };
        Some(Sample {
            track: index,
            decode,
            duration: 0,
            composition_offset,
            flags,
            payload: frame.payload.clone(),
        })
    }

    /// Each sample lasts until the next one of its track; the last of each track gets its
    /// track's estimate. Also moves `end_us` to the end of what is written.
    fn set_durations(&mut self, samples: &mut [Sample]) {
        let mut next_decode: Vec<Option<u64>> = vec![None; self.tracks.len()];
        for sample in samples.iter_mut().rev() {
            let track = &self.tracks[sample.track];
            let duration = match next_decode[sample.track] {
                Some(next) => next.saturating_sub(sample.decode),
                None => {
                    let duration = track.estimated_duration();
                    let end = sample.decode.saturating_add(duration);
                    self.end_us = self.end_us.max(ticks_to_us(end, track.setup.timescale));
                    duration
                }
            };
            sample.duration = u32::try_from(duration).unwrap_or(u32::MAX);
            next_decode[sample.track] = Some(sample.decode);
        }
    }

    /// Writes one moof + mdat pair for `samples` (at most [`MAX_SAMPLES_PER_MOOF`], at most
    /// [`MAX_MDAT_BYTES`] of payload unless a single one).
    fn write_moof(&mut self, samples: &[Sample], parts: &mut Vec<Bytes>) {
        self.sequence = self.sequence.wrapping_add(1).max(1);
        let mut b = Boxes::with_capacity(128 + samples.len() * 16);
        let moof = b.start(b"moof");
        let mfhd = b.start_full(b"mfhd", 0, 0);
        b.u32(self.sequence);
        b.end(mfhd);

        // Where each trun's data offset goes, and where its data starts within the mdat.
        let mut offsets = Vec::with_capacity(self.tracks.len());
        let mut payloads = Vec::with_capacity(samples.len());
        let mut data_len = 0usize;
        for (index, track) in self.tracks.iter().enumerate() {
            let track_samples = || samples.iter().filter(move |s| s.track == index);
            let Some(first_decode) = track_samples().next().map(|s| s.decode) else {
                continue;
            };
            let count = track_samples().count();
            let video = track.is_video();
            let traf = b.start(b"traf");
            // default-base-is-moof: data offsets count from this moof's first byte.
            let tfhd = b.start_full(b"tfhd", 0, 0x02_0000);
            b.u32(track.setup.id);
            b.end(tfhd);
            let tfdt = b.start_full(b"tfdt", 1, 0);
            b.u64(first_decode);
            b.end(tfdt);
            // data offset, then per sample: duration, size, flags, composition offset (video).
            let flags =
                0x00_0001 | 0x00_0100 | 0x00_0200 | 0x00_0400 | if video { 0x00_0800 } else { 0 };
            let trun = b.start_full(b"trun", 1, flags);
            b.u32(count as u32);
            offsets.push((b.buf.len(), data_len));
            b.i32(0);
            for sample in track_samples() {
                b.u32(sample.duration);
                b.u32(sample.payload.len() as u32);
                b.u32(sample.flags);
                if video {
                    b.i32(sample.composition_offset);
                }
                data_len += sample.payload.len();
                payloads.push(sample.payload.clone());
            }
            b.end(trun);
            b.end(traf);
        }
        b.end(moof);

        let moof_len = b.buf.len();
        // mdat payloads are bounded (MAX_MDAT_BYTES, or one sample of MAX_SAMPLE_BYTES), so the
        // 32-bit size and the data offsets fit.
        let mdat_len = 8 + data_len;
        b.u32(mdat_len as u32);
        b.bytes(b"mdat");
        for (at, start) in offsets {
            b.patch_i32(at, (moof_len + 8 + start) as i32);
        }
        parts.push(Bytes::from(b.buf));
        parts.extend(payloads);
    }
}

/// Whether AVCC length prefixes of `size` bytes tile `payload` exactly: what browsers check
/// before decoding (Chrome fails the SourceBuffer otherwise).
fn avcc_framed(payload: &[u8], size: u8) -> bool {
    let size = usize::from(size);
    if !(1..=4).contains(&size) {
        return false;
    }
    let mut pos = 0usize;
    while pos < payload.len() {
        let Some(prefix) = payload.get(pos..pos + size) else {
            return false;
        };
        let len = prefix
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        pos = match pos.checked_add(size).and_then(|p| p.checked_add(len)) {
            Some(next) => next,
            None => return false,
        };
    }
    pos == payload.len()
}

/// Microseconds to ticks of `timescale`, rounded to nearest (`us` >= 0).
fn to_ticks(us: i64, timescale: u32) -> u64 {
    u64::try_from(to_ticks_signed(us, timescale)).unwrap_or(0)
}

fn to_ticks_signed(us: i64, timescale: u32) -> i64 {
    let ticks = (i128::from(us) * i128::from(timescale) + 500_000).div_euclid(1_000_000);
    i64::try_from(ticks).unwrap_or(if ticks < 0 { i64::MIN } else { i64::MAX })
}

/// Ticks back to microseconds, rounded up so that a timeline continuing there never overlaps.
fn ticks_to_us(ticks: u64, timescale: u32) -> i64 {
    if timescale == 0 {
        return 0;
    }
    let us = (u128::from(ticks) * 1_000_000).div_ceil(u128::from(timescale));
    i64::try_from(us).unwrap_or(i64::MAX)
}
