//! RTMP chunk stream (RTMP spec 5.3): a bounded decoder and a zero-copy encoder.
//!
//! Decoder invariants: a message longer than `max_message_bytes` is an error (the connection is
//! closed, nothing is buffered for it); partial messages across all chunk streams never hold more
//! than twice that; at most `MAX_CHUNK_STREAMS` chunk streams are tracked. Completed payloads are
//! frozen `Bytes` handed on without further copies.
//!
//! Encoder invariants: every message starts with a type 0 header (so no header state is shared
//! between the control path and the media path); payload bytes are never copied, only sliced.

use super::out::OutQueue;
use bytes::{Buf, BufMut, Bytes, BytesMut};
use std::collections::HashMap;
use thiserror::Error;

const DEFAULT_CHUNK_SIZE: usize = 128;
const MAX_CHUNK_STREAMS: usize = 64;
const EXTENDED_TIMESTAMP: u32 = 0x00ff_ffff;
/// Largest chunk size a peer may announce (the spec's 31-bit limit would let one chunk be 2 GB).
pub const MAX_CHUNK_SIZE: usize = 16 * 1024 * 1024;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum ChunkError {
    #[error("message of {len} bytes exceeds the limit of {max} bytes")]
    MessageTooLarge { len: usize, max: usize },
    #[error("chunk on stream {csid} continues a message that never started")]
    NoPreviousHeader { csid: u32 },
    #[error("more than {MAX_CHUNK_STREAMS} chunk streams in use")]
    TooManyChunkStreams,
    #[error("invalid chunk size {0}")]
    InvalidChunkSize(u32),
}

/// One complete message as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawMessage {
    pub timestamp: u32,
    pub type_id: u8,
    pub stream_id: u32,
    pub payload: Bytes,
}

#[derive(Debug, Default)]
struct ChunkStream {
    timestamp: u32,
    delta: u32,
    length: u32,
    type_id: u8,
    stream_id: u32,
    extended: bool,
    partial: Option<BytesMut>,
}

#[derive(Debug)]
pub struct ChunkDecoder {
    buffer: BytesMut,
    chunk_size: usize,
    max_message_bytes: usize,
    partial_bytes: usize,
    streams: HashMap<u32, ChunkStream>,
}

impl ChunkDecoder {
    pub fn new(max_message_bytes: usize) -> Self {
        ChunkDecoder {
            buffer: BytesMut::with_capacity(8192),
            chunk_size: DEFAULT_CHUNK_SIZE,
            max_message_bytes,
            partial_bytes: 0,
            streams: HashMap::new(),
        }
    }

    pub fn push(&mut self, data: &[u8]) {
        self.buffer.extend_from_slice(data);
    }

    /// Applies the peer's SetChunkSize.
    pub fn set_chunk_size(&mut self, size: u32) -> Result<(), ChunkError> {
        let size_usize = size as usize;
        if size == 0 || size_usize > MAX_CHUNK_SIZE {
            return Err(ChunkError::InvalidChunkSize(size));
        }
        self.chunk_size = size_usize;
        Ok(())
    }

    /// Drops a partially received message (the peer's Abort message).
    pub fn abort(&mut self, csid: u32) {
        if let Some(partial) = self.streams.get_mut(&csid).and_then(|s| s.partial.take()) {
            self.partial_bytes -= partial.len();
        }
    }

    /// Bytes received but not yet part of a complete chunk or message.
    pub fn buffered(&self) -> usize {
        self.buffer.len() + self.partial_bytes
    }

    /// Decodes chunks until a message completes or the input runs out.
    pub fn next_message(&mut self) -> Result<Option<RawMessage>, ChunkError> {
        loop {
            match self.next_chunk()? {
                ChunkOutcome::NeedMore => return Ok(None),
                ChunkOutcome::Message(m) => return Ok(Some(m)),
                ChunkOutcome::Partial => continue,
            }
        }
    }

    fn next_chunk(&mut self) -> Result<ChunkOutcome, ChunkError> {
        let buf = &self.buffer[..];
        let Some(&b0) = buf.first() else {
            return Ok(ChunkOutcome::NeedMore);
        };
        let fmt = b0 >> 6;
        let (csid, mut pos) = match b0 & 0x3f {
            0 => match buf.get(1) {
                Some(&b1) => (64 + u32::from(b1), 2),
                None => return Ok(ChunkOutcome::NeedMore),
            },
            1 => match buf.get(1..3) {
                Some(b) => (64 + u32::from(b[0]) + 256 * u32::from(b[1]), 3),
                None => return Ok(ChunkOutcome::NeedMore),
            },
            id => (u32::from(id), 1),
        };
        let header_len = [11, 7, 3, 0][fmt as usize];
        let Some(header) = buf.get(pos..pos + header_len) else {
            return Ok(ChunkOutcome::NeedMore);
        };
        pos += header_len;

        if !self.streams.contains_key(&csid) {
            if fmt != 0 {
                return Err(ChunkError::NoPreviousHeader { csid });
            }
            if self.streams.len() >= MAX_CHUNK_STREAMS {
                return Err(ChunkError::TooManyChunkStreams);
            }
        }
        let previous = self.streams.get(&csid);
        let mut state = ChunkStreamHeader::from(previous);
        let ts_field = if fmt < 3 { u24(&header[0..3]) } else { 0 };
        if fmt <= 1 {
            state.length = u24(&header[3..6]);
            state.type_id = header[6];
        }
        if fmt == 0 {
            state.stream_id = u32::from_le_bytes([header[7], header[8], header[9], header[10]]);
        }
        let extended = if fmt < 3 {
            ts_field == EXTENDED_TIMESTAMP
        } else {
            state.extended
        };
        let ext_value = if extended {
            let Some(b) = buf.get(pos..pos + 4) else {
                return Ok(ChunkOutcome::NeedMore);
            };
            pos += 4;
            Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
        } else {
            None
        };
        let length = state.length as usize;
        if length > self.max_message_bytes {
            return Err(ChunkError::MessageTooLarge {
                len: length,
                max: self.max_message_bytes,
            });
        }
        let already = previous
            .and_then(|s| s.partial.as_ref())
            .map_or(0, |p| p.len());
        let continuing = fmt == 3 && already > 0;
        let take = (length - if continuing { already } else { 0 }).min(self.chunk_size);
        if buf.len() < pos + take {
            return Ok(ChunkOutcome::NeedMore);
        }

        // The whole chunk is here: commit the header and consume it.
        let field = ext_value.unwrap_or(ts_field);
        if !continuing {
            match fmt {
                0 => {
                    state.timestamp = field;
                    state.delta = field;
                }
                1 | 2 => {
                    state.delta = field;
                    state.timestamp = state.timestamp.wrapping_add(field);
                }
                _ => state.timestamp = state.timestamp.wrapping_add(state.delta),
            }
        }
        state.extended = extended;
        self.buffer.advance(pos);
        let data = self.buffer.split_to(take);

        let stream = self.streams.entry(csid).or_default();
        let mut partial = match stream.partial.take() {
            Some(p) if continuing => p,
            Some(dropped) => {
                // A new message header before the last one completed: the old one is abandoned.
                self.partial_bytes -= dropped.len();
                BytesMut::new()
            }
            None => BytesMut::new(),
        };
        stream.timestamp = state.timestamp;
        stream.delta = state.delta;
        stream.length = state.length;
        stream.type_id = state.type_id;
        stream.stream_id = state.stream_id;
        stream.extended = state.extended;

        if partial.is_empty() && data.len() == length {
            return Ok(ChunkOutcome::Message(RawMessage {
                timestamp: state.timestamp,
                type_id: state.type_id,
                stream_id: state.stream_id,
                payload: data.freeze(),
            }));
        }
        if self.partial_bytes + data.len() > 2 * self.max_message_bytes {
            return Err(ChunkError::MessageTooLarge {
                len: self.partial_bytes + data.len(),
                max: 2 * self.max_message_bytes,
            });
        }
        self.partial_bytes += data.len();
        partial.put(data);
        if partial.len() == length {
            self.partial_bytes -= partial.len();
            return Ok(ChunkOutcome::Message(RawMessage {
                timestamp: state.timestamp,
                type_id: state.type_id,
                stream_id: state.stream_id,
                payload: partial.freeze(),
            }));
        }
        stream.partial = Some(partial);
        Ok(ChunkOutcome::Partial)
    }
}

enum ChunkOutcome {
    NeedMore,
    Partial,
    Message(RawMessage),
}

/// Header fields of a chunk stream, copied so a chunk can be parsed before it is committed.
struct ChunkStreamHeader {
    timestamp: u32,
    delta: u32,
    length: u32,
    type_id: u8,
    stream_id: u32,
    extended: bool,
}

impl From<Option<&ChunkStream>> for ChunkStreamHeader {
    fn from(s: Option<&ChunkStream>) -> Self {
        match s {
            Some(s) => ChunkStreamHeader {
                timestamp: s.timestamp,
                delta: s.delta,
                length: s.length,
                type_id: s.type_id,
                stream_id: s.stream_id,
                extended: s.extended,
            },
            None => ChunkStreamHeader {
                timestamp: 0,
                delta: 0,
                length: 0,
                type_id: 0,
                stream_id: 0,
                extended: false,
            },
        }
    }
}

fn u24(b: &[u8]) -> u32 {
    (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2])
}

/// Where and when one outgoing message goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MessageHeader {
    pub csid: u32,
    /// Milliseconds on the receiver's timeline.
    pub timestamp: u32,
    pub type_id: u8,
    pub stream_id: u32,
}

/// Splits outgoing messages into chunks. Copy it freely: it holds only the chunk size.
#[derive(Debug, Clone, Copy)]
pub struct ChunkEncoder {
    chunk_size: usize,
}

impl Default for ChunkEncoder {
    fn default() -> Self {
        ChunkEncoder {
            chunk_size: DEFAULT_CHUNK_SIZE,
        }
    }
}

impl ChunkEncoder {
    pub fn new(chunk_size: usize) -> Self {
        ChunkEncoder { chunk_size }
    }

    pub fn chunk_size(&self) -> usize {
        self.chunk_size
    }

    /// Queues one message made of `prefix` (a few header bytes, copied) followed by `payload`
    /// (shared, sliced). Chunk headers go into small segments of their own.
    pub fn encode(
        &self,
        out: &mut OutQueue,
        header: MessageHeader,
        prefix: &[u8],
        payload: &Bytes,
    ) {
        let MessageHeader {
            csid,
            timestamp,
            type_id,
            stream_id,
        } = header;
        let total = prefix.len() + payload.len();
        let extended = timestamp >= EXTENDED_TIMESTAMP;
        let mut head = BytesMut::with_capacity(16 + prefix.len());
        put_basic_header(&mut head, 0, csid);
        head.put_uint(u64::from(timestamp.min(EXTENDED_TIMESTAMP)), 3);
        head.put_uint(total as u64, 3);
        head.put_u8(type_id);
        head.put_u32_le(stream_id);
        if extended {
            head.put_u32(timestamp);
        }
        head.put_slice(prefix);

        let first_payload = self
            .chunk_size
            .saturating_sub(prefix.len())
            .min(payload.len());
        if prefix.len() > self.chunk_size {
            // Only with absurdly small chunk sizes; never with the sizes this server announces.
            let mut whole = BytesMut::with_capacity(total);
            whole.put_slice(prefix);
            whole.put_slice(payload);
            return self.encode(out, header, &[], &whole.freeze());
        }
        out.push(head.freeze());
        out.push(payload.slice(..first_payload));
        let mut pos = first_payload;
        while pos < payload.len() {
            let end = (pos + self.chunk_size).min(payload.len());
            out.push(continuation_header(csid, extended.then_some(timestamp)));
            out.push(payload.slice(pos..end));
            pos = end;
        }
    }
}

fn put_basic_header(buf: &mut BytesMut, fmt: u8, csid: u32) {
    match csid {
        2..=63 => buf.put_u8((fmt << 6) | csid as u8),
        64..=319 => {
            buf.put_u8(fmt << 6);
            buf.put_u8((csid - 64) as u8);
        }
        _ => {
            buf.put_u8((fmt << 6) | 1);
            buf.put_u16_le((csid - 64) as u16);
        }
    }
}

/// Type 3 header between the chunks of one message. Static for the usual chunk stream ids.
fn continuation_header(csid: u32, extended_timestamp: Option<u32>) -> Bytes {
    static TYPE3: [u8; 64] = {
        let mut t = [0u8; 64];
        let mut i = 0;
        while i < 64 {
            t[i] = 0xc0 | i as u8;
            i += 1;
        }
        t
    };
    match (csid, extended_timestamp) {
        (2..=63, None) => Bytes::from_static(&TYPE3[csid as usize..=csid as usize]),
        (_, ts) => {
            let mut head = BytesMut::with_capacity(8);
            put_basic_header(&mut head, 3, csid);
            if let Some(ts) = ts {
                head.put_u32(ts);
            }
            head.freeze()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rml_rtmp::chunk_io::{ChunkDeserializer, ChunkSerializer};
    use rml_rtmp::messages::MessagePayload;
    use rml_rtmp::time::RtmpTimestamp;

    fn header(csid: u32, timestamp: u32, type_id: u8) -> MessageHeader {
        MessageHeader {
            csid,
            timestamp,
            type_id,
            stream_id: 1,
        }
    }

    fn payload(len: usize) -> Bytes {
        Bytes::from((0..len).map(|i| i as u8).collect::<Vec<_>>())
    }

    #[test]
    fn encoder_output_is_read_by_rml_rtmp() {
        let enc = ChunkEncoder::new(128);
        let mut out = OutQueue::new();
        let data = payload(300);
        enc.encode(
            &mut out,
            header(6, 0x0100_0000, 9),
            &[0x17, 1, 0, 0, 0],
            &data,
        );
        let mut de = ChunkDeserializer::new();
        let msg = de
            .get_next_message(&out.to_vec())
            .expect("valid chunks")
            .expect("one message");
        assert_eq!(msg.type_id, 9);
        assert_eq!(msg.timestamp, RtmpTimestamp::new(0x0100_0000));
        assert_eq!(&msg.data[..5], &[0x17, 1, 0, 0, 0]);
        assert_eq!(&msg.data[5..], &data[..]);
    }

    #[test]
    fn decoder_reads_rml_rtmp_chunks_fed_byte_by_byte() {
        let mut ser = ChunkSerializer::new();
        let mut bytes = Vec::new();
        for (i, ts) in [10u32, 50, 90, 0x0100_0000].iter().enumerate() {
            let msg = MessagePayload {
                timestamp: RtmpTimestamp::new(*ts),
                message_stream_id: 1,
                type_id: 9,
                data: payload(200 + i),
            };
            bytes.extend(ser.serialize(&msg, false, false).expect("ok").bytes);
        }
        let mut de = ChunkDecoder::new(1 << 20);
        let mut got = Vec::new();
        for b in bytes {
            de.push(&[b]);
            while let Some(m) = de.next_message().expect("valid") {
                got.push(m);
            }
        }
        let stamps: Vec<u32> = got.iter().map(|m| m.timestamp).collect();
        assert_eq!(stamps, vec![10, 50, 90, 0x0100_0000]);
        assert_eq!(got[3].payload, payload(203));
        assert_eq!(de.buffered(), 0);
    }

    #[test]
    fn interleaved_chunk_streams_are_reassembled() {
        let enc = ChunkEncoder::new(128);
        let mut a = OutQueue::new();
        let mut b = OutQueue::new();
        enc.encode(&mut a, header(4, 1, 8), &[], &payload(200));
        enc.encode(&mut b, header(6, 2, 9), &[], &payload(150));
        let (a, b) = (a.to_vec(), b.to_vec());
        // First chunk of A, all of B, rest of A.
        let first_a = 12 + 128;
        let mut wire = a[..first_a].to_vec();
        wire.extend_from_slice(&b);
        wire.extend_from_slice(&a[first_a..]);
        let mut de = ChunkDecoder::new(1 << 20);
        de.push(&wire);
        let m1 = de.next_message().expect("ok").expect("B");
        let m2 = de.next_message().expect("ok").expect("A");
        assert_eq!((m1.type_id, m1.payload.len()), (9, 150));
        assert_eq!((m2.type_id, m2.payload.len()), (8, 200));
    }

    #[test]
    fn oversized_message_is_refused_before_buffering() {
        let mut de = ChunkDecoder::new(1000);
        // Type 0 header on csid 3 declaring 0xffffff bytes.
        de.push(&[0x03, 0, 0, 0, 0xff, 0xff, 0xff, 20, 0, 0, 0, 0, 1, 2]);
        assert!(matches!(
            de.next_message(),
            Err(ChunkError::MessageTooLarge { .. })
        ));
    }

    #[test]
    fn continuation_without_start_is_an_error() {
        let mut de = ChunkDecoder::new(1000);
        de.push(&[0xc7, 1, 2, 3]);
        assert_eq!(
            de.next_message(),
            Err(ChunkError::NoPreviousHeader { csid: 7 })
        );
    }

    #[test]
    fn chunk_size_bounds() {
        let mut de = ChunkDecoder::new(1000);
        assert!(de.set_chunk_size(0).is_err());
        assert!(de.set_chunk_size(0x7fff_ffff).is_err());
        assert!(de.set_chunk_size(4096).is_ok());
    }
}
