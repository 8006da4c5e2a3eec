//! FLV file reader: tags read one at a time, their bodies turned into frames by
//! [`crate::codec::flv`] exactly as the live RTMP path does.
//!
//! Open: read the tags at the head of the file (onMetaData, the AVC and AAC sequence headers,
//! the first frame's timestamp). If onMetaData carries a usable `keyframes` index (times and file
//! positions), a duration and what the bitrates need, that is the seek index (checked against
//! the tag it points at when a seek uses it; on a mismatch the tags are indexed after all);
//! otherwise every tag header is walked (bodies are skipped with a seek, only their first two
//! bytes are read) to index the H.264 keyframes (or, without video, an audio tag a second) and
//! to count sizes.
//!
//! Invariants: the index holds 16 bytes per entry; a tag body is read whole only to play it (and,
//! at open, for onMetaData and the first sequence headers), at most 16 MB (the format's limit)
//! and only once the whole tag is known to be inside the file; frames start at DTS 0 (the first
//! frame's timestamp is subtracted) and a timestamp going back is held at the track's last one;
//! H.264 NAL lengths other than 4 bytes are rewritten; only H.264 and AAC frames of tracks whose
//! sequence header was found come out, and sequence headers met later (a mid-file change) are
//! not played: [`FlvReader::configs`] holds the first ones.

use super::{kbps, read_exact, to_avcc4, VodError, VodInfo};
use crate::codec::amf::reader::{self as amf, Value};
use crate::codec::avc::AvcConfig;
use crate::codec::flv::{parse_audio, parse_video, Tag};
use crate::media::{Codec, Frame, TrackConfig};
use bytes::Bytes;
use std::io::{BufReader, Read, Seek, SeekFrom};

const TAG_AUDIO: u8 = 8;
const TAG_VIDEO: u8 = 9;
const TAG_SCRIPT: u8 = 18;
const TAG_HEADER_LEN: u64 = 11;
/// Each tag is followed by the 4-byte size of the tag before it.
const PREVIOUS_TAG_SIZE_LEN: u64 = 4;
/// Larger script tags are not read for metadata (onMetaData with a big index is ~100 KB).
const MAX_METADATA: u32 = 4 << 20;
/// The head scan stops this long after the first frame even without both sequence headers.
const HEAD_SCAN_MS: u32 = 3000;
/// Without video, the index gets an audio tag about this often.
const AUDIO_INDEX_MS: u32 = 1000;

/// A place to resume from: a tag's raw timestamp and file offset.
#[derive(Clone, Copy, Debug, PartialEq)]
struct IndexPoint {
    ms: u32,
    offset: u64,
}

/// One tag header.
struct TagHead {
    kind: u8,
    size: u32,
    ms: u32,
}

/// What walking the tags found.
#[derive(Default)]
struct Scan {
    video_config: Option<TrackConfig>,
    audio_config: Option<TrackConfig>,
    metadata: Option<Value>,
    /// Raw timestamp of the first H.264 or AAC frame.
    first_ms: Option<u32>,
    video: Stats,
    audio: Stats,
    keyframes: Vec<IndexPoint>,
    audio_points: Vec<IndexPoint>,
}

#[derive(Default)]
struct Stats {
    frames: u64,
    bytes: u64,
    first_ms: Option<u32>,
    last_ms: u32,
}

impl Stats {
    fn add(&mut self, ms: u32, bytes: u64) {
        self.frames += 1;
        self.bytes += bytes;
        self.first_ms.get_or_insert(ms);
        self.last_ms = self.last_ms.max(ms);
    }

    /// Timestamp after the last frame (its own duration guessed from the average).
    fn end_ms(&self) -> u64 {
        let first = u64::from(self.first_ms.unwrap_or(0));
        let last = u64::from(self.last_ms);
        let step = (last - first.min(last)) / self.frames.saturating_sub(1).max(1);
        last + step
    }
}

/// A buffered reader that knows its position, so short forward skips stay in the buffer.
struct Source<R> {
    inner: BufReader<R>,
    pos: Option<u64>,
}

impl<R: Read + Seek> Source<R> {
    fn goto(&mut self, offset: u64) -> Result<(), VodError> {
        match self.pos {
            Some(pos) if pos == offset => {}
            Some(pos) if offset > pos && offset - pos < 1 << 20 => {
                self.inner.seek_relative((offset - pos) as i64)?;
            }
            _ => {
                self.inner.seek(SeekFrom::Start(offset))?;
            }
        }
        self.pos = Some(offset);
        Ok(())
    }

    fn read(&mut self, buf: &mut [u8], what: &str) -> Result<(), VodError> {
        let start = self.pos.take();
        read_exact(&mut self.inner, buf, what)?;
        self.pos = start.map(|p| p + buf.len() as u64);
        Ok(())
    }

    /// Reads and checks the tag header at `offset`: the whole tag must lie inside the file.
    fn tag_head(&mut self, offset: u64, file_size: u64) -> Result<TagHead, VodError> {
        if file_size.saturating_sub(offset) < TAG_HEADER_LEN {
            return Err(VodError::Truncated(format!(
                "FLV tag header at offset {offset} cut short"
            )));
        }
        let mut h = [0u8; TAG_HEADER_LEN as usize];
        self.goto(offset)?;
        self.read(&mut h, "an FLV tag header")?;
        if h[0] & 0x20 != 0 {
            return Err(VodError::Unsupported("encrypted FLV tags".into()));
        }
        let kind = h[0] & 0x1f;
        if !matches!(kind, TAG_AUDIO | TAG_VIDEO | TAG_SCRIPT) {
            return Err(VodError::Corrupt(format!(
                "FLV tag of type {kind} at offset {offset}"
            )));
        }
        let size = u32::from_be_bytes([0, h[1], h[2], h[3]]);
        // A tag counts only with the PreviousTagSize that follows it.
        let end = offset + TAG_HEADER_LEN + u64::from(size) + PREVIOUS_TAG_SIZE_LEN;
        if end > file_size {
            return Err(VodError::Truncated(format!(
                "FLV tag at offset {offset} ends at byte {end}, the file has {file_size}"
            )));
        }
        Ok(TagHead {
            kind,
            size,
            ms: u32::from_be_bytes([h[7], h[4], h[5], h[6]]),
        })
    }

    fn body(&mut self, size: u32) -> Result<Bytes, VodError> {
        let mut body = vec![0u8; size as usize];
        self.read(&mut body, "an FLV tag")?;
        Ok(Bytes::from(body))
    }
}

pub(super) struct FlvReader<R> {
    src: Source<R>,
    file_size: u64,
    first_tag: u64,
    /// Offset of the next tag to play.
    pos: u64,
    /// Raw timestamp that becomes DTS 0.
    base_ms: u32,
    video_config: Option<TrackConfig>,
    audio_config: Option<TrackConfig>,
    /// NAL length size of the file's H.264 frames; others than 4 are rewritten to 4.
    nal_length_size: u8,
    index: Vec<IndexPoint>,
    /// The index came from onMetaData: checked against the tags when used.
    pub(super) index_from_metadata: bool,
    /// After a seek, audio stored just after the keyframe but timed before it is dropped.
    audio_from_us: i64,
    /// Last DTS given out per track (video, audio): a timestamp that goes back in the file is
    /// held at it, so DTS never decrease within a track.
    last_dts_us: [i64; 2],
    info: VodInfo,
}

impl<R: Read + Seek> FlvReader<R> {
    pub(super) fn new(src: R, file_size: u64) -> Result<Self, VodError> {
        let mut src = Source {
            inner: BufReader::new(src),
            pos: None,
        };
        let mut header = [0u8; 9];
        if file_size < 9 {
            return Err(VodError::Truncated("FLV header cut short".into()));
        }
        src.goto(0)?;
        src.read(&mut header, "the FLV header")?;
        let data_offset = u64::from(u32::from_be_bytes([
            header[5], header[6], header[7], header[8],
        ]));
        if data_offset < 9 || data_offset > file_size {
            return Err(VodError::Corrupt(format!("FLV header size {data_offset}")));
        }
        let first_tag = data_offset + PREVIOUS_TAG_SIZE_LEN;
        let head = scan(&mut src, file_size, first_tag, true)?;
        let from_metadata = metadata_index(&head, first_tag, file_size);
        let (scan, index, walked) = match from_metadata {
            Some(index) => (head, index, false),
            None => {
                let full = scan(&mut src, file_size, first_tag, false)?;
                let mut full = full;
                let index = if full.video_config.is_some() {
                    std::mem::take(&mut full.keyframes)
                } else {
                    std::mem::take(&mut full.audio_points)
                };
                (full, index, true)
            }
        };
        if scan.video_config.is_none() && scan.audio_config.is_none() {
            return Err(VodError::Unsupported(
                "no H.264 video or AAC audio sequence header".into(),
            ));
        }
        let base_ms = scan.first_ms.unwrap_or(0);
        let info = info(&scan, base_ms, file_size, walked);
        let mut video_config = scan.video_config;
        let mut nal_length_size = 4;
        if let Some(config) = &mut video_config {
            // Parsed once already by parse_video, so this succeeds; 4 if it somehow did not.
            nal_length_size = AvcConfig::parse(&config.data).map_or(4, |c| c.nal_length_size);
            if nal_length_size != 4 {
                // Frames go out with 4-byte lengths, so the record must say so too.
                let mut data = config.data.to_vec();
                if let Some(b) = data.get_mut(4) {
                    *b |= 0x03;
                }
                config.data = Bytes::from(data);
            }
        }
        Ok(FlvReader {
            src,
            file_size,
            first_tag,
            pos: first_tag,
            base_ms,
            video_config,
            audio_config: scan.audio_config,
            nal_length_size,
            index,
            index_from_metadata: !walked,
            audio_from_us: 0,
            last_dts_us: [0; 2],
            info,
        })
    }

    pub(super) fn info(&self) -> &VodInfo {
        &self.info
    }

    pub(super) fn configs(&self) -> Vec<TrackConfig> {
        [&self.video_config, &self.audio_config]
            .into_iter()
            .flatten()
            .map(|c| TrackConfig {
                dts_us: 0,
                ..c.clone()
            })
            .collect()
    }

    pub(super) fn next_frame(&mut self) -> Result<Option<Frame>, VodError> {
        while self.pos < self.file_size {
            let offset = self.pos;
            let head = self.src.tag_head(offset, self.file_size)?;
            self.pos = offset + TAG_HEADER_LEN + u64::from(head.size) + PREVIOUS_TAG_SIZE_LEN;
            if head.kind == TAG_SCRIPT {
                continue;
            }
            let body = self.src.body(head.size)?;
            let dts_us = (i64::from(head.ms) - i64::from(self.base_ms)).max(0) * 1000;
            let parsed = if head.kind == TAG_VIDEO {
                parse_video(body, dts_us)
            } else {
                parse_audio(body, dts_us)
            };
            let tag = parsed
                .map_err(|e| VodError::Corrupt(format!("FLV tag at offset {offset}: {e}")))?;
            let Tag::Frame(mut frame) = tag else {
                continue;
            };
            if frame.codec == Codec::H264 && self.nal_length_size != 4 {
                let payload = to_avcc4(frame.payload.to_vec(), self.nal_length_size)
                    .map_err(|e| VodError::Corrupt(format!("FLV tag at offset {offset}: {e}")))?;
                frame.payload = Bytes::from(payload);
            }
            let playable = match frame.codec {
                Codec::H264 => self.video_config.is_some(),
                Codec::Aac => self.audio_config.is_some() && frame.dts_us >= self.audio_from_us,
                _ => false,
            };
            if playable {
                let last = &mut self.last_dts_us[usize::from(frame.codec == Codec::Aac)];
                frame.dts_us = frame.dts_us.max(*last);
                *last = frame.dts_us;
                return Ok(Some(frame));
            }
        }
        Ok(None)
    }

    pub(super) fn seek(&mut self, target_ms: u64) -> Result<u64, VodError> {
        let target =
            u32::try_from(target_ms.saturating_add(u64::from(self.base_ms))).unwrap_or(u32::MAX);
        let after = self.index.partition_point(|p| p.ms <= target);
        // Before the first keyframe (or with no index at all) the start of the file is the place.
        let Some(point) = after
            .checked_sub(1)
            .and_then(|i| self.index.get(i))
            .copied()
        else {
            self.pos = self.first_tag;
            self.audio_from_us = 0;
            self.last_dts_us = [0; 2];
            return Ok(0);
        };
        let head = self.src.tag_head(point.offset, self.file_size)?;
        let mut first = [0u8; 2];
        if head.size >= 2 {
            self.src.read(&mut first, "an FLV tag")?;
        }
        // An H.264 keyframe (frame type 1, codec 7, AVC NALU packet) or, without video, AAC.
        let fits = if self.video_config.is_some() {
            head.kind == TAG_VIDEO && first == [0x17, 1]
        } else {
            head.kind == TAG_AUDIO && first[0] >> 4 == 10 && first[1] == 1
        };
        if !fits {
            if !self.index_from_metadata {
                return Err(VodError::Corrupt(format!(
                    "FLV tag at offset {} is no longer the one indexed",
                    point.offset
                )));
            }
            // onMetaData's index does not match the tags: index them ourselves, once.
            let full = scan(&mut self.src, self.file_size, self.first_tag, false)?;
            self.index = if self.video_config.is_some() {
                full.keyframes
            } else {
                full.audio_points
            };
            self.index_from_metadata = false;
            return self.seek(target_ms);
        }
        let position_ms = u64::from(head.ms.saturating_sub(self.base_ms));
        self.pos = point.offset;
        self.audio_from_us = i64::try_from(position_ms * 1000).unwrap_or(i64::MAX);
        self.last_dts_us = [0; 2];
        Ok(position_ms)
    }
}

/// Walks the tags from `first_tag`: the whole file, or with `head_only` just until the sequence
/// headers and the first frame are known.
fn scan<R: Read + Seek>(
    src: &mut Source<R>,
    file_size: u64,
    first_tag: u64,
    head_only: bool,
) -> Result<Scan, VodError> {
    let mut scan = Scan::default();
    let mut pos = first_tag;
    while pos < file_size {
        let head = src.tag_head(pos, file_size)?;
        let offset = pos;
        pos = offset + TAG_HEADER_LEN + u64::from(head.size) + PREVIOUS_TAG_SIZE_LEN;
        if head.kind == TAG_SCRIPT {
            if scan.metadata.is_none() && head.size <= MAX_METADATA {
                scan.metadata = amf::on_metadata(&src.body(head.size)?);
            }
            continue;
        }
        let mut first = [0u8; 2];
        let peek = (head.size as usize).min(2);
        src.read(&mut first[..peek], "an FLV tag")?;
        if peek < 2 {
            continue;
        }
        let is_config = if head.kind == TAG_VIDEO {
            // Plain AVC (codec 7, no enhanced-RTMP header bit); frame type 5 is not media.
            if first[0] & 0x8f != 7 || (first[0] >> 4) & 0x07 == 5 {
                continue;
            }
            match first[1] {
                0 => true,
                1 => {
                    scan.video
                        .add(head.ms, u64::from(head.size.saturating_sub(5)));
                    if (first[0] >> 4) & 0x07 == 1 {
                        scan.keyframes.push(IndexPoint {
                            ms: head.ms,
                            offset,
                        });
                    }
                    false
                }
                _ => continue,
            }
        } else {
            if first[0] >> 4 != 10 {
                continue;
            }
            if first[1] == 0 {
                true
            } else {
                let last = scan.audio_points.last().map(|p| p.ms);
                if last.is_none_or(|last| head.ms >= last.saturating_add(AUDIO_INDEX_MS)) {
                    scan.audio_points.push(IndexPoint {
                        ms: head.ms,
                        offset,
                    });
                }
                scan.audio
                    .add(head.ms, u64::from(head.size.saturating_sub(2)));
                false
            }
        };
        let slot = if head.kind == TAG_VIDEO {
            &mut scan.video_config
        } else {
            &mut scan.audio_config
        };
        if !is_config {
            scan.first_ms.get_or_insert(head.ms);
        } else if slot.is_none() {
            src.goto(offset + TAG_HEADER_LEN)?;
            let body = src.body(head.size)?;
            let parsed = if head.kind == TAG_VIDEO {
                parse_video(body, 0)
            } else {
                parse_audio(body, 0)
            };
            match parsed {
                Ok(Tag::Config(config)) => *slot = Some(config),
                Ok(_) => {}
                Err(e) => {
                    return Err(VodError::Corrupt(format!(
                        "FLV sequence header at offset {offset}: {e}"
                    )))
                }
            }
        }
        if head_only {
            let configs = scan.video_config.is_some() && scan.audio_config.is_some();
            let first = scan.first_ms;
            if (configs && first.is_some())
                || first.is_some_and(|f| head.ms > f.saturating_add(HEAD_SCAN_MS))
            {
                break;
            }
        }
    }
    Ok(scan)
}

/// onMetaData's keyframe index, if it is there, consistent, and the metadata has what
/// [`info`] needs without a walk.
fn metadata_index(head: &Scan, first_tag: u64, file_size: u64) -> Option<Vec<IndexPoint>> {
    let meta = head.metadata.as_ref()?;
    let positive = |key: &str| meta.number(key).is_some_and(|n| n > 0.0);
    let enough = positive("duration")
        && (head.video_config.is_none()
            || positive("framerate") && (positive("videodatarate") || positive("videosize")))
        && (head.audio_config.is_none() || positive("audiodatarate") || positive("audiosize"));
    if !enough || head.video_config.is_none() {
        return None;
    }
    let keyframes = meta.get("keyframes")?;
    let times = keyframes.numbers("times")?;
    let positions = keyframes.numbers("filepositions")?;
    if times.is_empty() || times.len() != positions.len() {
        return None;
    }
    let mut index = Vec::with_capacity(times.len());
    for (&time, &position) in times.iter().zip(&positions) {
        let offset = position as u64;
        let ms = (time * 1000.0).round();
        let previous = index.last().map(|p: &IndexPoint| p.offset);
        if !(0.0..=f64::from(u32::MAX)).contains(&ms)
            || position.fract() != 0.0
            || offset < first_tag
            || offset >= file_size
            || previous.is_some_and(|p| offset <= p)
        {
            return None;
        }
        index.push(IndexPoint {
            ms: ms as u32,
            offset,
        });
    }
    Some(index)
}

fn info(scan: &Scan, base_ms: u32, file_size: u64, walked: bool) -> VodInfo {
    let meta = |key: &str| {
        scan.metadata
            .as_ref()
            .and_then(|m| m.number(key))
            .filter(|n| *n > 0.0)
    };
    let walked_end = if scan.video.frames > 0 || scan.audio.frames > 0 {
        scan.video
            .end_ms()
            .max(scan.audio.end_ms())
            .saturating_sub(u64::from(base_ms))
    } else {
        0
    };
    let duration_ms = meta("duration").map_or(walked_end, |d| (d * 1000.0) as u64);
    let duration_us = duration_ms.saturating_mul(1000);
    let mut info = VodInfo {
        duration_ms,
        file_size,
        ..VodInfo::default()
    };
    // From metadata when the walk could not say: datarate, else size over duration.
    let bitrate = |rate: &str, size: &str| {
        meta(rate).map_or_else(
            || meta(size).map_or(0, |s| kbps(s as u64, duration_us)),
            |r| r as u32,
        )
    };
    if let Some(config) = &scan.video_config {
        info.video_codec = Some(Codec::H264);
        info.width = config
            .info
            .width
            .or(meta("width").map(|w| w as u32))
            .unwrap_or(0);
        info.height = config
            .info
            .height
            .or(meta("height").map(|h| h as u32))
            .unwrap_or(0);
        let v = &scan.video;
        let span_ms = v.last_ms.saturating_sub(v.first_ms.unwrap_or(0));
        info.frame_rate = if walked && v.frames > 1 && span_ms > 0 {
            (v.frames - 1) as f64 * 1000.0 / f64::from(span_ms)
        } else {
            meta("framerate").unwrap_or(0.0)
        };
        info.video_bitrate_kbps = if walked {
            kbps(v.bytes, duration_us)
        } else {
            bitrate("videodatarate", "videosize")
        };
    }
    if let Some(config) = &scan.audio_config {
        info.audio_codec = Some(Codec::Aac);
        info.audio_sample_rate = config.info.sample_rate.unwrap_or(0);
        info.audio_channels = config.info.channels.unwrap_or(0);
        info.audio_bitrate_kbps = if walked {
            kbps(scan.audio.bytes, duration_us)
        } else {
            bitrate("audiodatarate", "audiosize")
        };
    }
    info
}
