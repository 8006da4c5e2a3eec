//! ISO BMFF boxes held in memory: iterating children, finding one, reading big-endian fields.
//!
//! Invariant: every read is bounds-checked; running off a box is [`VodError::Corrupt`], never a
//! panic.

use crate::vod::VodError;

pub(super) type FourCc = [u8; 4];

/// The entries of a full box with a 32-bit entry count, checked to fit in the box.
pub(super) fn entries<'a>(
    body: &'a [u8],
    kind: &FourCc,
    entry_len: usize,
) -> Result<&'a [u8], VodError> {
    let mut r = Be::new(body, "table");
    r.skip(4)?;
    let count = r.u32()? as usize;
    let len = count
        .checked_mul(entry_len)
        .filter(|&len| len <= r.remaining())
        .ok_or_else(|| {
            VodError::Corrupt(format!("{}: {count} entries overrun the box", name(*kind)))
        })?;
    r.take(len)
}

pub(super) fn missing(kind: &str, parent: &str) -> VodError {
    VodError::Corrupt(format!("no {kind} box in {parent}"))
}

pub(super) fn name(kind: FourCc) -> String {
    kind.iter()
        .map(|&b| if b.is_ascii_graphic() { b as char } else { '?' })
        .collect()
}

/// First child box of the given type.
pub(super) fn child<'a>(data: &'a [u8], kind: &FourCc) -> Result<Option<&'a [u8]>, VodError> {
    for entry in Boxes::new(data, "a box") {
        let (found, body) = entry?;
        if &found == kind {
            return Ok(Some(body));
        }
    }
    Ok(None)
}

/// The child boxes in an in-memory box body.
pub(super) struct Boxes<'a> {
    data: &'a [u8],
    parent: &'static str,
    failed: bool,
}

impl<'a> Boxes<'a> {
    pub(super) fn new(data: &'a [u8], parent: &'static str) -> Self {
        Boxes {
            data,
            parent,
            failed: false,
        }
    }
}

impl<'a> Iterator for Boxes<'a> {
    type Item = Result<(FourCc, &'a [u8]), VodError>;

    fn next(&mut self) -> Option<Self::Item> {
        // Fewer than 8 bytes left is padding (QuickTime ends some lists with 4 zero bytes).
        if self.failed || self.data.len() < 8 {
            return None;
        }
        let data = self.data;
        let kind: FourCc = [data[4], data[5], data[6], data[7]];
        let (header, size) = match be32(data) {
            0 => (8, data.len()),
            1 => match data.get(8..16) {
                Some(large) => (16, usize::try_from(be64(large)).unwrap_or(usize::MAX)),
                None => (16, 0),
            },
            n => (8, n as usize),
        };
        if size < header || size > data.len() {
            self.failed = true;
            return Some(Err(VodError::Corrupt(format!(
                "{} box of {size} bytes does not fit in {} ({} bytes left)",
                name(kind),
                self.parent,
                data.len()
            ))));
        }
        self.data = &data[size..];
        Some(Ok((kind, &data[header..size])))
    }
}

/// Big-endian reads from a box body; running off its end is [`VodError::Corrupt`].
pub(super) struct Be<'a> {
    data: &'a [u8],
    pos: usize,
    what: &'static str,
}

impl<'a> Be<'a> {
    pub(super) fn new(data: &'a [u8], what: &'static str) -> Self {
        Be { data, pos: 0, what }
    }

    pub(super) fn take(&mut self, n: usize) -> Result<&'a [u8], VodError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&end| end <= self.data.len())
            .ok_or_else(|| VodError::Corrupt(format!("{} box too short", self.what)))?;
        let bytes = &self.data[self.pos..end];
        self.pos = end;
        Ok(bytes)
    }

    pub(super) fn skip(&mut self, n: usize) -> Result<&mut Self, VodError> {
        self.take(n)?;
        Ok(self)
    }

    pub(super) fn remaining(&self) -> usize {
        self.data.len() - self.pos
    }

    pub(super) fn rest(&self) -> &'a [u8] {
        &self.data[self.pos..]
    }

    pub(super) fn u8(&mut self) -> Result<u8, VodError> {
        Ok(self.take(1)?[0])
    }

    pub(super) fn u16(&mut self) -> Result<u16, VodError> {
        Ok(be16(self.take(2)?))
    }

    pub(super) fn u32(&mut self) -> Result<u32, VodError> {
        Ok(be32(self.take(4)?))
    }

    pub(super) fn u64(&mut self) -> Result<u64, VodError> {
        Ok(be64(self.take(8)?))
    }

    pub(super) fn fourcc(&mut self) -> Result<FourCc, VodError> {
        let b = self.take(4)?;
        Ok([b[0], b[1], b[2], b[3]])
    }
}

// Callers pass slices of at least the width read (checked lengths or `Be::take`).
pub(super) fn be16(b: &[u8]) -> u16 {
    u16::from_be_bytes([b[0], b[1]])
}

pub(super) fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

pub(super) fn be64(b: &[u8]) -> u64 {
    u64::from_be_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]])
}
