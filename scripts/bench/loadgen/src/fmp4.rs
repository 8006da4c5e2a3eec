//! Just enough of fragmented MP4 for the WebSocket players: which track is video (from the init
//! segment), and per `moof`+`mdat` fragment how many video and audio samples it holds and where
//! its first video sample's bytes are (to read the publisher's stamp).
//!
//! Invariant: malformed input yields zero counts, never a panic (every read is bounds-checked).

use std::collections::HashMap;

/// Track ids of the stream by kind, from an init segment.
#[derive(Default)]
pub struct Tracks {
    video: HashMap<u32, bool>,
}

/// What one fragment holds.
pub struct Fragment<'a> {
    pub video_samples: u64,
    pub audio_samples: u64,
    /// The first video sample (AVCC), if any.
    pub first_video: Option<&'a [u8]>,
}

pub fn is_init(segment: &[u8]) -> bool {
    segment.get(4..8) == Some(b"ftyp")
}

impl Tracks {
    pub fn of_init(segment: &[u8]) -> Tracks {
        let mut tracks = Tracks::default();
        for (kind, moov) in boxes(segment) {
            if kind != *b"moov" {
                continue;
            }
            for (kind, trak) in boxes(moov) {
                if kind != *b"trak" {
                    continue;
                }
                let (mut id, mut video) = (None, false);
                for (kind, content) in boxes(trak) {
                    match &kind {
                        b"tkhd" => {
                            let at = if content.first() == Some(&1) { 20 } else { 12 };
                            id = be32(content, at);
                        }
                        b"mdia" => {
                            for (kind, content) in boxes(content) {
                                if &kind == b"hdlr" {
                                    video = content.get(8..12) == Some(b"vide");
                                }
                            }
                        }
                        _ => {}
                    }
                }
                if let Some(id) = id {
                    tracks.video.insert(id, video);
                }
            }
        }
        tracks
    }
}

/// Reads a `moof`+`mdat` fragment (offsets in `trun` are from the start of the `moof`).
pub fn read_fragment<'a>(fragment: &'a [u8], tracks: &Tracks) -> Fragment<'a> {
    let mut out = Fragment {
        video_samples: 0,
        audio_samples: 0,
        first_video: None,
    };
    for (kind, moof) in boxes(fragment) {
        if kind != *b"moof" {
            continue;
        }
        for (kind, traf) in boxes(moof) {
            if kind != *b"traf" {
                continue;
            }
            let mut track = None;
            for (kind, content) in boxes(traf) {
                match &kind {
                    b"tfhd" => track = be32(content, 4),
                    b"trun" => {
                        let video = track.and_then(|t| tracks.video.get(&t)).copied() == Some(true);
                        let Some((count, first)) = trun(content) else {
                            continue;
                        };
                        if video {
                            out.video_samples += u64::from(count);
                            if out.first_video.is_none() {
                                out.first_video = first
                                    .and_then(|(at, len)| fragment.get(at..at.checked_add(len)?));
                            }
                        } else {
                            out.audio_samples += u64::from(count);
                        }
                    }
                    _ => {}
                }
            }
        }
    }
    out
}

/// A `trun`'s sample count and its first sample's (offset, size) when both are given.
fn trun(content: &[u8]) -> Option<(u32, Option<(usize, usize)>)> {
    let flags = be32(content, 0)? & 0x00ff_ffff;
    let count = be32(content, 4)?;
    let mut at = 8;
    let mut offset = None;
    if flags & 0x1 != 0 {
        offset = Some(be32(content, at)? as i32);
        at += 4;
    }
    if flags & 0x4 != 0 {
        at += 4;
    }
    if flags & 0x100 != 0 {
        at += 4;
    }
    let size = if flags & 0x200 != 0 {
        be32(content, at)
    } else {
        None
    };
    let first = match (offset, size) {
        (Some(o), Some(s)) if o >= 0 => Some((o as usize, s as usize)),
        _ => None,
    };
    Some((count, first))
}

/// The boxes directly inside `data`: (type, content).
fn boxes(data: &[u8]) -> impl Iterator<Item = ([u8; 4], &[u8])> {
    let mut at = 0usize;
    std::iter::from_fn(move || {
        let size = be32(data, at)? as usize;
        let kind: [u8; 4] = data.get(at + 4..at + 8)?.try_into().ok()?;
        let (header, size) = match size {
            1 => (
                16,
                u64::from_be_bytes(data.get(at + 8..at + 16)?.try_into().ok()?) as usize,
            ),
            0 => (8, data.len() - at),
            n => (8, n),
        };
        let content = data.get(at + header..at.checked_add(size)?)?;
        at += size.max(header);
        Some((kind, content))
    })
}

fn be32(data: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(data.get(at..at + 4)?.try_into().ok()?))
}
