//! GOP cache: the packets since the last video keyframe, so a new player starts at once on a
//! picture it can decode.
//!
//! Invariants: when non-empty and the stream has video, the first cached frame is a video
//! keyframe; the cached payload bytes never exceed the configured bound (a GOP that outgrows it is
//! dropped until the next keyframe). Audio-only streams keep a short tail of audio frames.

use super::{Frame, MediaPacket, TrackKind};
use std::collections::VecDeque;
use std::sync::Arc;

/// Audio frames kept for audio-only streams (about one second of AAC).
const AUDIO_ONLY_FRAMES: usize = 48;

#[derive(Debug)]
pub struct GopCache {
    frames: VecDeque<Arc<Frame>>,
    bytes: usize,
    max_bytes: usize,
    has_video: bool,
    /// The current GOP outgrew the bound: drop frames until the next keyframe.
    overflowed: bool,
}

impl GopCache {
    pub fn new(max_bytes: usize) -> Self {
        GopCache {
            frames: VecDeque::new(),
            bytes: 0,
            max_bytes,
            has_video: false,
            overflowed: false,
        }
    }

    /// Adds a frame; a video keyframe starts a new GOP.
    pub fn push(&mut self, frame: &Arc<Frame>) {
        if frame.track() == TrackKind::Video {
            if !self.has_video {
                self.has_video = true;
                self.clear();
            }
            if frame.keyframe {
                self.clear();
            }
        }
        if self.has_video && (self.overflowed || self.frames.is_empty() && !frame.keyframe) {
            // Nothing to start from until a keyframe arrives.
            return;
        }
        if self.bytes + frame.payload.len() > self.max_bytes {
            self.clear();
            self.overflowed = self.has_video;
            return;
        }
        self.bytes += frame.payload.len();
        self.frames.push_back(Arc::clone(frame));
        if !self.has_video {
            while self.frames.len() > AUDIO_ONLY_FRAMES {
                if let Some(old) = self.frames.pop_front() {
                    self.bytes -= old.payload.len();
                }
            }
        }
    }

    /// Forgets everything, e.g. when the publisher leaves or the video configuration changes.
    pub fn clear(&mut self) {
        self.frames.clear();
        self.bytes = 0;
        self.overflowed = false;
    }

    /// Forgets everything including whether the stream had video (a new publisher).
    pub fn reset(&mut self) {
        self.clear();
        self.has_video = false;
    }

    /// The cached frames as packets, oldest first.
    pub fn snapshot(&self) -> impl Iterator<Item = MediaPacket> + '_ {
        self.frames
            .iter()
            .map(|f| MediaPacket::Frame(Arc::clone(f)))
    }

    pub fn len(&self) -> usize {
        self.frames.len()
    }

    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::Codec;
    use bytes::Bytes;

    fn frame(codec: Codec, key: bool, len: usize, dts: i64) -> Arc<Frame> {
        Arc::new(Frame::new(codec, dts, 0, key, Bytes::from(vec![0u8; len])))
    }

    #[test]
    fn starts_at_last_keyframe() {
        let mut gop = GopCache::new(1 << 20);
        gop.push(&frame(Codec::H264, false, 10, 0));
        assert!(gop.is_empty(), "no keyframe yet");
        gop.push(&frame(Codec::H264, true, 10, 1));
        gop.push(&frame(Codec::Aac, true, 5, 2));
        gop.push(&frame(Codec::H264, false, 10, 3));
        gop.push(&frame(Codec::H264, true, 10, 4));
        gop.push(&frame(Codec::Aac, true, 5, 5));
        let first: Vec<_> = gop.snapshot().collect();
        assert_eq!(first.len(), 2);
        match &first[0] {
            MediaPacket::Frame(f) => assert!(f.is_video_keyframe() && f.dts_us == 4),
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(gop.bytes(), 15);
    }

    #[test]
    fn oversized_gop_is_dropped_until_next_keyframe() {
        let mut gop = GopCache::new(25);
        gop.push(&frame(Codec::H264, true, 10, 0));
        gop.push(&frame(Codec::H264, false, 10, 1));
        gop.push(&frame(Codec::H264, false, 10, 2));
        assert!(gop.is_empty());
        gop.push(&frame(Codec::H264, false, 1, 3));
        assert!(gop.is_empty(), "still waiting for a keyframe");
        gop.push(&frame(Codec::H264, true, 10, 4));
        assert_eq!(gop.len(), 1);
        assert!(gop.bytes() <= 25);
    }

    #[test]
    fn audio_only_keeps_a_short_tail() {
        let mut gop = GopCache::new(1 << 20);
        for i in 0..100 {
            gop.push(&frame(Codec::Aac, true, 4, i));
        }
        assert_eq!(gop.len(), AUDIO_ONLY_FRAMES);
        assert_eq!(gop.bytes(), AUDIO_ONLY_FRAMES * 4);
    }
}
