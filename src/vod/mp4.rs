//! MP4 / ISO BMFF (and QuickTime .mov) reader: the `moov` index in memory, samples read from
//! disk one at a time.
//!
//! Open: walk the top-level boxes (headers only) to find `moov` wherever it is (front with
//! `+faststart`, end by default) and to see that no box runs past the end of the file; read
//! `moov` (capped at [`MAX_MOOV`]); turn the first H.264 (`avc1`/`avc3` + `avcC`) and the first
//! AAC (`mp4a` + `esds`) track's sample tables (`stts`, `ctts` v0/v1, `stss`, `stsc`,
//! `stsz`/`stz2`, `stco`/`co64`) into one [`Sample`] (24 bytes) per sample. Other tracks are
//! skipped.
//!
//! Timing: a track's DTS are the `stts` runs in its own timescale converted to microseconds.
//! Edit lists: an initial empty edit delays the track by its duration, and the media start of
//! the first real edit moves the track earlier by that much (ffmpeg writes it for the B-frame
//! delay and the AAC priming samples). Durations of edits, further edits and rates are ignored:
//! the whole media plays. Then every track is shifted by the same amount so the earliest DTS is 0,
//! which keeps audio and video in sync (it gives the timestamps ffmpeg writes into FLV).
//!
//! Invariants: each sample lies inside the file (checked at open: a file cut anywhere fails to
//! open with [`VodError::Truncated`]); counts are checked against the bytes that back them before
//! any allocation; H.264 payloads are given out with 4-byte NAL lengths whatever the file uses.

mod boxes;
mod samples;

use super::{kbps, read_exact, to_avcc4, VodError, VodInfo};
use crate::codec::aac::AudioSpecificConfig;
use crate::codec::avc::AvcConfig;
use crate::media::{Codec, Frame, TrackConfig, TrackInfo};
use boxes::{child, missing, name, Be, Boxes, FourCc};
use bytes::Bytes;
use samples::{ticks_to_us, Sample, SampleTable};
use std::io::{Read, Seek, SeekFrom};

/// Largest `moov` read into memory. A two-hour 60 fps film needs a few MB; the cap keeps a
/// corrupt size from turning into a huge allocation.
const MAX_MOOV: u64 = 128 << 20;
struct Track {
    config: TrackConfig,
    samples: Vec<Sample>,
    /// Indices of the sync samples (`stss`), sorted; `None` when every sample is one.
    sync: Option<Vec<u32>>,
    /// NAL length size of H.264 samples on disk; 0 for audio.
    nal_length_size: u8,
    /// Sum of the samples' durations and sizes, for frame rate and bitrate.
    media_duration_us: u64,
    media_bytes: u64,
    next: usize,
}

impl Track {
    fn peek_dts(&self) -> Option<i64> {
        self.samples.get(self.next).map(|s| s.dts_us)
    }

    fn is_sync(&self, index: usize) -> bool {
        if self.config.codec != Codec::H264 {
            return true;
        }
        match &self.sync {
            None => true,
            Some(sync) => u32::try_from(index).is_ok_and(|i| sync.binary_search(&i).is_ok()),
        }
    }

    /// Index of the last sync sample at or before `target_us`, if there is one.
    fn sync_at_or_before(&self, target_us: i64) -> Option<usize> {
        let Some(sync) = &self.sync else {
            let after = self.samples.partition_point(|s| s.dts_us <= target_us);
            return after.checked_sub(1);
        };
        let dts = |i: u32| self.samples.get(i as usize).map_or(i64::MAX, |s| s.dts_us);
        let after = sync.partition_point(|&i| dts(i) <= target_us);
        after
            .checked_sub(1)
            .and_then(|k| sync.get(k))
            .map(|&i| i as usize)
    }
}

pub(super) struct Mp4Reader<R> {
    src: R,
    /// Where `src` stands, so samples that follow each other on disk need no seek.
    src_pos: Option<u64>,
    video: Option<Track>,
    audio: Option<Track>,
    info: VodInfo,
}

impl<R: Read + Seek> Mp4Reader<R> {
    pub(super) fn new(mut src: R, file_size: u64) -> Result<Self, VodError> {
        let (moov_offset, moov_len) = find_moov(&mut src, file_size)?;
        if moov_len > MAX_MOOV {
            return Err(VodError::Unsupported(format!(
                "moov box of {moov_len} bytes (at most {MAX_MOOV} accepted)"
            )));
        }
        let mut moov = vec![0u8; moov_len as usize];
        src.seek(SeekFrom::Start(moov_offset))?;
        read_exact(&mut src, &mut moov, "moov box")?;
        let movie = parse_moov(&moov, file_size)?;
        let (mut video, mut audio) = (movie.video, movie.audio);
        if video.is_none() && audio.is_none() {
            return Err(VodError::Unsupported(
                "no H.264 video or AAC audio track with samples".into(),
            ));
        }
        // One shift for all tracks keeps their relative timing (A/V sync) intact.
        let start = [&video, &audio]
            .iter()
            .filter_map(|t| t.as_ref().and_then(|t| t.samples.first()).map(|s| s.dts_us))
            .min()
            .unwrap_or(0);
        let mut end_us = 0;
        for track in [&mut video, &mut audio].into_iter().flatten() {
            for sample in &mut track.samples {
                // Saturating: absurd edit lists must not overflow.
                sample.dts_us = sample.dts_us.saturating_sub(start);
            }
            let last = track.samples.last().map_or(0, |s| s.dts_us);
            let first = track.samples.first().map_or(0, |s| s.dts_us);
            let span = u64::try_from(last - first).unwrap_or(0);
            let per_sample = track.media_duration_us / track.samples.len().max(1) as u64;
            let track_end = u64::try_from(first).unwrap_or(0).saturating_add(span);
            end_us = end_us.max(track_end.saturating_add(per_sample));
        }
        let mut info = VodInfo {
            duration_ms: if movie.duration_us > 0 {
                movie.duration_us / 1000
            } else {
                end_us / 1000
            },
            file_size,
            ..VodInfo::default()
        };
        if let Some(v) = &video {
            info.video_codec = Some(Codec::H264);
            info.width = v.config.info.width.unwrap_or(0);
            info.height = v.config.info.height.unwrap_or(0);
            if v.media_duration_us > 0 {
                info.frame_rate = v.samples.len() as f64 * 1e6 / v.media_duration_us as f64;
            }
            info.video_bitrate_kbps = kbps(v.media_bytes, v.media_duration_us);
        }
        if let Some(a) = &audio {
            info.audio_codec = Some(Codec::Aac);
            info.audio_sample_rate = a.config.info.sample_rate.unwrap_or(0);
            info.audio_channels = a.config.info.channels.unwrap_or(0);
            info.audio_bitrate_kbps = kbps(a.media_bytes, a.media_duration_us);
        }
        Ok(Mp4Reader {
            src,
            src_pos: None,
            video,
            audio,
            info,
        })
    }

    pub(super) fn info(&self) -> &VodInfo {
        &self.info
    }

    pub(super) fn configs(&self) -> Vec<TrackConfig> {
        [&self.video, &self.audio]
            .into_iter()
            .flatten()
            .map(|t| t.config.clone())
            .collect()
    }

    pub(super) fn next_frame(&mut self) -> Result<Option<Frame>, VodError> {
        let video_dts = self.video.as_ref().and_then(Track::peek_dts);
        let audio_dts = self.audio.as_ref().and_then(Track::peek_dts);
        // On equal DTS video goes first, so a player starting there gets its keyframe at once.
        let track = match (video_dts, audio_dts) {
            (Some(v), Some(a)) if a < v => self.audio.as_mut(),
            (Some(_), _) => self.video.as_mut(),
            (None, Some(_)) => self.audio.as_mut(),
            (None, None) => None,
        };
        let Some(track) = track else {
            return Ok(None);
        };
        let index = track.next;
        let Some(sample) = track.samples.get(index).copied() else {
            return Ok(None);
        };
        track.next += 1;
        let mut payload = vec![0u8; sample.size as usize];
        if self.src_pos != Some(sample.offset) {
            self.src.seek(SeekFrom::Start(sample.offset))?;
        }
        // Unknown until the read succeeds: a failed read leaves the position undefined.
        self.src_pos = None;
        read_exact(&mut self.src, &mut payload, "a sample")?;
        self.src_pos = Some(sample.offset + u64::from(sample.size));
        let codec = track.config.codec;
        if codec == Codec::H264 {
            payload = to_avcc4(payload, track.nal_length_size).map_err(|e| {
                VodError::Corrupt(format!(
                    "video sample {index} at offset {}: {e}",
                    sample.offset
                ))
            })?;
        }
        Ok(Some(Frame::new(
            codec,
            sample.dts_us,
            sample.cts_us,
            track.is_sync(index),
            Bytes::from(payload),
        )))
    }

    pub(super) fn seek(&mut self, target_ms: u64) -> Result<u64, VodError> {
        let target_us = i64::try_from(target_ms.saturating_mul(1000)).unwrap_or(i64::MAX);
        let landing = match (&self.video, &self.audio) {
            (Some(video), _) => video
                .sync_at_or_before(target_us)
                .and_then(|i| video.samples.get(i).map(|s| (i, s.dts_us))),
            (None, Some(audio)) => {
                let after = audio.samples.partition_point(|s| s.dts_us <= target_us);
                after
                    .checked_sub(1)
                    .and_then(|i| audio.samples.get(i).map(|s| (i, s.dts_us)))
            }
            (None, None) => None,
        };
        // Before the first keyframe (or with none at all) the start of the file is the place.
        let (index, position_us) = landing.unwrap_or((0, 0));
        let has_video = self.video.is_some();
        if let Some(video) = &mut self.video {
            video.next = index;
        }
        if let Some(audio) = &mut self.audio {
            audio.next = match landing {
                None => 0,
                Some(_) if !has_video => index,
                Some(_) => audio.samples.partition_point(|s| s.dts_us < position_us),
            };
        }
        Ok(u64::try_from(position_us).unwrap_or(0) / 1000)
    }
}

/// Walks the top-level boxes; returns the offset and length of `moov`'s body.
fn find_moov<R: Read + Seek>(src: &mut R, file_size: u64) -> Result<(u64, u64), VodError> {
    let mut pos = 0u64;
    let mut moov = None;
    let mut fragmented = false;
    while pos < file_size {
        let remaining = file_size - pos;
        if remaining < 8 {
            return Err(VodError::Truncated(format!(
                "box header at offset {pos} cut short"
            )));
        }
        let mut header = [0u8; 16];
        src.seek(SeekFrom::Start(pos))?;
        read_exact(src, &mut header[..8], "a box header")?;
        let kind: FourCc = [header[4], header[5], header[6], header[7]];
        let (header_len, size) =
            match u32::from_be_bytes([header[0], header[1], header[2], header[3]]) {
                0 => (8, remaining),
                1 => {
                    if remaining < 16 {
                        return Err(VodError::Truncated(format!(
                            "box header at offset {pos} cut short"
                        )));
                    }
                    read_exact(src, &mut header[8..16], "a box header")?;
                    let mut large = [0u8; 8];
                    large.copy_from_slice(&header[8..16]);
                    (16, u64::from_be_bytes(large))
                }
                n => (8, u64::from(n)),
            };
        if size < header_len {
            return Err(VodError::Corrupt(format!(
                "{} box at offset {pos} has size {size}",
                name(kind)
            )));
        }
        if size > remaining {
            return Err(VodError::Truncated(format!(
                "{} box at offset {pos} needs {size} bytes, the file has {remaining} left",
                name(kind)
            )));
        }
        match &kind {
            b"moov" if moov.is_none() => moov = Some((pos + header_len, size - header_len)),
            b"moof" => fragmented = true,
            _ => {}
        }
        pos += size;
    }
    match moov {
        Some(found) => Ok(found),
        None if fragmented => Err(VodError::Unsupported("fragmented MP4 without moov".into())),
        None => Err(VodError::Truncated(
            "no moov box (the file ends before its index)".into(),
        )),
    }
}

struct Movie {
    duration_us: u64,
    video: Option<Track>,
    audio: Option<Track>,
}

fn parse_moov(moov: &[u8], file_size: u64) -> Result<Movie, VodError> {
    let mvhd = child(moov, b"mvhd")?.ok_or_else(|| missing("mvhd", "moov"))?;
    let mut r = Be::new(mvhd, "mvhd");
    let (timescale, duration) = if r.u8()? == 1 {
        r.skip(3 + 16)?;
        (r.u32()?, r.u64()?)
    } else {
        r.skip(3 + 8)?;
        (r.u32()?, u64::from(r.u32()?))
    };
    let mut movie = Movie {
        // QuickTime writes all ones for "unknown".
        duration_us: if duration == u64::from(u32::MAX) || duration == u64::MAX {
            0
        } else {
            ticks_to_us(duration, timescale).max(0) as u64
        },
        video: None,
        audio: None,
    };
    let mut fragmented = false;
    for entry in Boxes::new(moov, "moov") {
        let (kind, body) = entry?;
        match &kind {
            b"trak" => {
                let Some(track) = parse_trak(body, timescale, file_size)? else {
                    continue;
                };
                let slot = match track.config.codec {
                    Codec::H264 => &mut movie.video,
                    _ => &mut movie.audio,
                };
                if slot.is_none() {
                    *slot = Some(track);
                }
            }
            b"mvex" => fragmented = true,
            _ => {}
        }
    }
    if fragmented && movie.video.is_none() && movie.audio.is_none() {
        return Err(VodError::Unsupported("fragmented MP4".into()));
    }
    Ok(movie)
}

/// What the sample description says about a track we can play.
struct Entry {
    config: TrackConfig,
    nal_length_size: u8,
}

/// A track, or `None` when it is not H.264 or AAC, or holds no samples.
fn parse_trak(
    trak: &[u8],
    movie_timescale: u32,
    file_size: u64,
) -> Result<Option<Track>, VodError> {
    let mdia = child(trak, b"mdia")?.ok_or_else(|| missing("mdia", "trak"))?;
    let hdlr = child(mdia, b"hdlr")?.ok_or_else(|| missing("hdlr", "mdia"))?;
    let handler = Be::new(hdlr, "hdlr").skip(8)?.fourcc()?;
    if &handler != b"vide" && &handler != b"soun" {
        return Ok(None);
    }
    let mdhd = child(mdia, b"mdhd")?.ok_or_else(|| missing("mdhd", "mdia"))?;
    let mut r = Be::new(mdhd, "mdhd");
    let timescale = if r.u8()? == 1 {
        r.skip(3 + 16)?.u32()?
    } else {
        r.skip(3 + 8)?.u32()?
    };
    if timescale == 0 {
        return Err(VodError::Corrupt("mdhd timescale is 0".into()));
    }
    let stbl = child(mdia, b"minf")?
        .map(|minf| child(minf, b"stbl"))
        .transpose()?
        .flatten()
        .ok_or_else(|| missing("stbl", "minf"))?;
    let stsd = child(stbl, b"stsd")?.ok_or_else(|| missing("stsd", "stbl"))?;
    let Some(entry) = parse_stsd(stsd)? else {
        return Ok(None);
    };
    let offset_us = match child(trak, b"edts")?
        .map(|edts| child(edts, b"elst"))
        .transpose()?
        .flatten()
    {
        Some(elst) => edit_offset_us(elst, movie_timescale, timescale)?,
        None => 0,
    };
    let kind = if entry.config.codec == Codec::H264 {
        "video"
    } else {
        "audio"
    };
    let index =
        SampleTable::parse(stbl, file_size)?.build(kind, timescale, offset_us, file_size)?;
    if index.samples.is_empty() {
        return Ok(None);
    }
    Ok(Some(Track {
        config: entry.config,
        samples: index.samples,
        sync: index.sync,
        nal_length_size: entry.nal_length_size,
        media_duration_us: index.duration_us,
        media_bytes: index.bytes,
        next: 0,
    }))
}

/// The first sample description, if it is H.264 with `avcC` or AAC with `esds`. Files with
/// several descriptions in one track (rare) play with the first.
fn parse_stsd(stsd: &[u8]) -> Result<Option<Entry>, VodError> {
    let mut r = Be::new(stsd, "stsd");
    r.skip(8)?;
    let Some(first) = Boxes::new(r.rest(), "stsd").next() else {
        return Ok(None);
    };
    let (kind, body) = first?;
    match &kind {
        b"avc1" | b"avc3" => {
            // VisualSampleEntry: 78 bytes of fields before the child boxes.
            let mut r = Be::new(body, "avc1");
            r.skip(24)?;
            let (width, height) = (r.u16()?, r.u16()?);
            r.skip(50)?;
            let Some(avcc) = child(r.rest(), b"avcC")? else {
                return Ok(None);
            };
            let parsed =
                AvcConfig::parse(avcc).map_err(|e| VodError::Corrupt(format!("avcC: {e}")))?;
            let mut data = avcc.to_vec();
            // Payloads go out with 4-byte lengths, so the record must say so too.
            if let Some(b) = data.get_mut(4) {
                *b |= 0x03;
            }
            let mut info = parsed.track_info();
            info.width = info.width.or(Some(u32::from(width)));
            info.height = info.height.or(Some(u32::from(height)));
            Ok(Some(Entry {
                config: config(Codec::H264, data, info),
                nal_length_size: parsed.nal_length_size,
            }))
        }
        b"mp4a" => {
            // AudioSampleEntry; QuickTime versions 1 and 2 add 16 and 36 bytes of fields.
            let mut r = Be::new(body, "mp4a");
            r.skip(8)?;
            let fields_len = match r.u16()? {
                0 => 28,
                1 => 44,
                2 => 64,
                v => return Err(VodError::Corrupt(format!("mp4a sample entry version {v}"))),
            };
            r.skip(6)?;
            let channels = r.u16()?;
            r.skip(fields_len - 18)?;
            let children = r.rest();
            let esds = match child(children, b"esds")? {
                Some(esds) => Some(esds),
                None => child(children, b"wave")?
                    .map(|wave| child(wave, b"esds"))
                    .transpose()?
                    .flatten(),
            };
            let Some(asc) = esds.map(esds_aac_config).transpose()?.flatten() else {
                return Ok(None);
            };
            let parsed = AudioSpecificConfig::parse(asc)
                .map_err(|e| VodError::Corrupt(format!("AudioSpecificConfig: {e}")))?;
            let mut info = parsed.track_info();
            if parsed.channels == 0 {
                info.channels = u8::try_from(channels).ok();
            }
            Ok(Some(Entry {
                config: config(Codec::Aac, asc.to_vec(), info),
                nal_length_size: 0,
            }))
        }
        _ => Ok(None),
    }
}

fn config(codec: Codec, data: Vec<u8>, info: TrackInfo) -> TrackConfig {
    TrackConfig {
        codec,
        data: Bytes::from(data),
        dts_us: 0,
        info,
    }
}

/// The AudioSpecificConfig inside an `esds` box, if its object type is AAC (MPEG-4 audio or
/// one of the MPEG-2 AAC profiles); `None` for MP3 and others.
fn esds_aac_config(esds: &[u8]) -> Result<Option<&[u8]>, VodError> {
    let mut r = Be::new(esds, "esds");
    r.skip(4)?;
    let mut es = descriptor(&mut r, 0x03)?;
    es.skip(2)?;
    let flags = es.u8()?;
    if flags & 0x80 != 0 {
        es.skip(2)?;
    }
    if flags & 0x40 != 0 {
        let url_len = es.u8()?;
        es.skip(usize::from(url_len))?;
    }
    if flags & 0x20 != 0 {
        es.skip(2)?;
    }
    let mut decoder = descriptor(&mut es, 0x04)?;
    let object_type = decoder.u8()?;
    if !matches!(object_type, 0x40 | 0x66 | 0x67 | 0x68) {
        return Ok(None);
    }
    decoder.skip(12)?;
    Ok(Some(descriptor(&mut decoder, 0x05)?.rest()))
}

/// Reads an MPEG-4 descriptor header of the expected tag; returns a reader over its body (cut
/// to what is there: some writers round the length up).
fn descriptor<'a>(r: &mut Be<'a>, tag: u8) -> Result<Be<'a>, VodError> {
    let found = r.u8()?;
    if found != tag {
        return Err(VodError::Corrupt(format!(
            "esds: descriptor tag {found:#x} where {tag:#x} was expected"
        )));
    }
    let mut len = 0usize;
    for _ in 0..4 {
        let b = r.u8()?;
        len = (len << 7) | usize::from(b & 0x7f);
        if b & 0x80 == 0 {
            break;
        }
    }
    let body = r.take(len.min(r.remaining()))?;
    Ok(Be::new(body, "esds"))
}

/// How much the edit list moves the track's media timeline (see the module doc).
fn edit_offset_us(elst: &[u8], movie_timescale: u32, timescale: u32) -> Result<i64, VodError> {
    let mut r = Be::new(elst, "elst");
    let version = r.u8()?;
    r.skip(3)?;
    let count = r.u32()?;
    let mut delay_us = 0i64;
    for _ in 0..count.min(2) {
        let (duration, media_time) = if version == 1 {
            (r.u64()?, r.u64()? as i64)
        } else {
            (u64::from(r.u32()?), i64::from(r.u32()? as i32))
        };
        r.skip(4)?;
        if media_time == -1 {
            if delay_us == 0 {
                delay_us = ticks_to_us(duration, movie_timescale);
                continue;
            }
            break;
        }
        return Ok(delay_us - ticks_to_us(media_time.max(0) as u64, timescale));
    }
    Ok(delay_us)
}
