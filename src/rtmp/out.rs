//! Output queue of byte segments for one socket: headers and shared payload slices in order,
//! written with vectored IO and advanced by however many bytes the socket took.

use bytes::{Buf, Bytes};
use std::collections::VecDeque;
use std::io::IoSlice;

#[derive(Debug, Default)]
pub struct OutQueue {
    segments: VecDeque<Bytes>,
    len: usize,
}

impl OutQueue {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn push(&mut self, segment: Bytes) {
        if !segment.is_empty() {
            self.len += segment.len();
            self.segments.push_back(segment);
        }
    }

    pub fn append(&mut self, other: &mut OutQueue) {
        self.len += other.len;
        self.segments.append(&mut other.segments);
        other.len = 0;
    }

    /// Bytes waiting to be written.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Up to `max` slices from the front, for one vectored write.
    pub fn io_slices(&self, max: usize) -> Vec<IoSlice<'_>> {
        self.segments
            .iter()
            .take(max)
            .map(|s| IoSlice::new(s))
            .collect()
    }

    /// Drops `written` bytes from the front.
    pub fn advance(&mut self, mut written: usize) {
        self.len -= written.min(self.len);
        while written > 0 {
            let Some(front) = self.segments.front_mut() else {
                return;
            };
            if front.len() <= written {
                written -= front.len();
                self.segments.pop_front();
            } else {
                front.advance(written);
                written = 0;
            }
        }
    }

    /// Everything queued as one buffer (tests and small control writes).
    pub fn to_vec(&self) -> Vec<u8> {
        self.segments
            .iter()
            .flat_map(|s| s.iter().copied())
            .collect()
    }

    pub fn clear(&mut self) {
        self.segments.clear();
        self.len = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advances_across_segments() {
        let mut q = OutQueue::new();
        q.push(Bytes::from_static(b"abc"));
        q.push(Bytes::new());
        q.push(Bytes::from_static(b"defg"));
        assert_eq!(q.len(), 7);
        assert_eq!(q.io_slices(8).len(), 2);
        q.advance(4);
        assert_eq!(q.to_vec(), b"efg");
        assert_eq!(q.len(), 3);
        q.advance(3);
        assert!(q.is_empty());
    }
}
