//! MP4 sample tables (`stts`, `ctts`, `stss`, `stsc`, `stsz`/`stz2`, `stco`/`co64`) expanded
//! into one [`Sample`] per sample.
//!
//! Invariants: a count is trusted only when the bytes that back it are there (a table's entries
//! inside its box; a fixed sample size times the count inside the file) and under
//! [`MAX_SAMPLES`]; every sample lies inside the file, or the file was cut
//! ([`VodError::Truncated`]).

use super::boxes::{be16, be32, be64, child, entries, missing, Be, FourCc};
use crate::vod::VodError;

/// Most samples per track (about 39 hours of 60 fps video); 24 bytes each in memory.
pub(super) const MAX_SAMPLES: u64 = 1 << 23;
/// Largest single sample (a 4K intra frame is a few MB).
pub(super) const MAX_SAMPLE_SIZE: u32 = 64 << 20;

/// Where one sample is and when it plays.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Sample {
    pub(super) offset: u64,
    pub(super) dts_us: i64,
    pub(super) size: u32,
    pub(super) cts_us: i32,
}

/// Every sample of a track, and what frame rate and bitrate need.
pub(super) struct SampleIndex {
    pub(super) samples: Vec<Sample>,
    /// Indices of the sync samples (`stss`), sorted; `None` when every sample is one.
    pub(super) sync: Option<Vec<u32>>,
    /// Sum of the samples' durations and sizes.
    pub(super) duration_us: u64,
    pub(super) bytes: u64,
}

/// The raw sample-table boxes of one track, checked for size.
pub(super) struct SampleTable<'a> {
    count: usize,
    /// Fixed size of every sample, or the width in bits of each `sizes` entry.
    fixed_size: u32,
    size_bits: u8,
    sizes: &'a [u8],
    stts: &'a [u8],
    ctts: Option<&'a [u8]>,
    stss: Option<&'a [u8]>,
    stsc: &'a [u8],
    chunk_offsets: &'a [u8],
    offset_bytes: usize,
}

impl<'a> SampleTable<'a> {
    pub(super) fn parse(stbl: &'a [u8], file_size: u64) -> Result<Self, VodError> {
        let (fixed_size, size_bits, count, sizes) = if let Some(stsz) = child(stbl, b"stsz")? {
            let mut r = Be::new(stsz, "stsz");
            r.skip(4)?;
            let fixed = r.u32()?;
            let count = u64::from(r.u32()?);
            if fixed != 0 && count.saturating_mul(u64::from(fixed)) > file_size {
                return Err(VodError::Corrupt(format!(
                    "stsz: {count} samples of {fixed} bytes exceed the file"
                )));
            }
            (fixed, 32, count, r.rest())
        } else if let Some(stz2) = child(stbl, b"stz2")? {
            let mut r = Be::new(stz2, "stz2");
            r.skip(7)?;
            let bits = r.u8()?;
            if !matches!(bits, 4 | 8 | 16) {
                return Err(VodError::Corrupt(format!("stz2 field size {bits}")));
            }
            (0, bits, u64::from(r.u32()?), r.rest())
        } else {
            return Err(missing("stsz", "stbl"));
        };
        if count > MAX_SAMPLES {
            return Err(VodError::Unsupported(format!(
                "{count} samples in one track (at most {MAX_SAMPLES})"
            )));
        }
        if fixed_size == 0 && (sizes.len() as u64) * 8 < count * u64::from(size_bits) {
            return Err(VodError::Corrupt(format!(
                "sample size table too short for {count} samples"
            )));
        }
        let table =
            |kind: &'static FourCc, entry_len: usize| -> Result<Option<&'a [u8]>, VodError> {
                child(stbl, kind)?
                    .map(|body| entries(body, kind, entry_len))
                    .transpose()
            };
        let (chunk_offsets, offset_bytes) = match (table(b"stco", 4)?, table(b"co64", 8)?) {
            (Some(stco), _) => (stco, 4),
            (None, Some(co64)) => (co64, 8),
            (None, None) => return Err(missing("stco", "stbl")),
        };
        Ok(SampleTable {
            count: count as usize,
            fixed_size,
            size_bits,
            sizes,
            stts: table(b"stts", 8)?.ok_or_else(|| missing("stts", "stbl"))?,
            ctts: table(b"ctts", 8)?,
            stss: table(b"stss", 4)?,
            stsc: table(b"stsc", 12)?.ok_or_else(|| missing("stsc", "stbl"))?,
            chunk_offsets,
            offset_bytes,
        })
    }

    fn size(&self, index: usize) -> u32 {
        if self.fixed_size != 0 {
            return self.fixed_size;
        }
        // In range: `parse` checked the table holds `count` entries.
        match self.size_bits {
            4 => {
                let b = self.sizes[index / 2];
                u32::from(if index % 2 == 0 { b >> 4 } else { b & 0x0f })
            }
            8 => u32::from(self.sizes[index]),
            16 => u32::from(be16(&self.sizes[index * 2..])),
            _ => be32(&self.sizes[index * 4..]),
        }
    }

    /// Expands the tables into one [`Sample`] per sample; `kind` names the track in errors.
    pub(super) fn build(
        &self,
        kind: &str,
        timescale: u32,
        offset_us: i64,
        file_size: u64,
    ) -> Result<SampleIndex, VodError> {
        let stsc_len = self.stsc.len() / 12;
        if stsc_len == 0 && self.count > 0 {
            return Err(VodError::Corrupt(format!("empty stsc in the {kind} track")));
        }
        let mut samples = Vec::with_capacity(self.count);
        let mut stts = Runs::new(self.stts);
        let mut ctts = Runs::new(self.ctts.unwrap_or_default());
        let chunk_count = self.chunk_offsets.len() / self.offset_bytes;
        let (mut stsc_index, mut dts, mut bytes) = (0usize, 0u64, 0u64);
        for chunk in 0..chunk_count {
            if samples.len() == self.count {
                break;
            }
            // The stsc entry in force: the last whose first chunk (1-based) is <= this one.
            while stsc_index + 1 < stsc_len
                && be32(&self.stsc[(stsc_index + 1) * 12..]) as usize <= chunk + 1
            {
                stsc_index += 1;
            }
            // In range: stsc holds stsc_len >= 1 entries of 12 bytes.
            let first_chunk = be32(&self.stsc[stsc_index * 12..]) as usize;
            if first_chunk > chunk + 1 {
                return Err(VodError::Corrupt(format!(
                    "stsc of the {kind} track does not cover chunk {}",
                    chunk + 1
                )));
            }
            let per_chunk = be32(&self.stsc[stsc_index * 12 + 4..]) as usize;
            let at = chunk * self.offset_bytes;
            let mut offset = if self.offset_bytes == 8 {
                be64(&self.chunk_offsets[at..])
            } else {
                u64::from(be32(&self.chunk_offsets[at..]))
            };
            for _ in 0..per_chunk.min(self.count - samples.len()) {
                let index = samples.len();
                let size = self.size(index);
                if size > MAX_SAMPLE_SIZE {
                    return Err(VodError::Corrupt(format!(
                        "{kind} sample {index} claims {size} bytes"
                    )));
                }
                let end = offset.saturating_add(u64::from(size));
                if end > file_size {
                    return Err(VodError::Truncated(format!(
                        "{kind} sample {index} ends at byte {end}, the file has {file_size}"
                    )));
                }
                let Some(delta) = stts.next() else {
                    return Err(VodError::Corrupt(format!(
                        "stts of the {kind} track covers {index} of {} samples",
                        self.count
                    )));
                };
                // ctts version 0 is unsigned on paper, but writers put negative offsets there too.
                let cts = ctts.next().map_or(0, |offset| i64::from(offset as i32));
                let cts_us = ticks_to_signed_us(cts, timescale);
                samples.push(Sample {
                    offset,
                    dts_us: ticks_to_us(dts, timescale).saturating_add(offset_us),
                    size,
                    cts_us: i32::try_from(cts_us).unwrap_or(if cts_us < 0 {
                        i32::MIN
                    } else {
                        i32::MAX
                    }),
                });
                dts += u64::from(delta);
                bytes += u64::from(size);
                offset = end;
            }
        }
        if samples.len() < self.count {
            return Err(VodError::Corrupt(format!(
                "stsc/stco of the {kind} track place {} of {} samples",
                samples.len(),
                self.count
            )));
        }
        let sync = match self.stss {
            None => None,
            Some(stss) => {
                let mut sync: Vec<u32> = stss
                    .chunks_exact(4)
                    .map(|n| be32(n).wrapping_sub(1))
                    .filter(|&i| (i as usize) < self.count)
                    .collect();
                sync.sort_unstable();
                sync.dedup();
                Some(sync)
            }
        };
        Ok(SampleIndex {
            samples,
            sync,
            duration_us: ticks_to_us(dts, timescale).max(0) as u64,
            bytes,
        })
    }
}

/// Walks run-length tables (`stts`, `ctts`: count, value) one sample at a time.
struct Runs<'a> {
    table: &'a [u8],
    left: u32,
    value: u32,
}

impl<'a> Runs<'a> {
    fn new(table: &'a [u8]) -> Self {
        Runs {
            table,
            left: 0,
            value: 0,
        }
    }
}

impl Iterator for Runs<'_> {
    type Item = u32;

    fn next(&mut self) -> Option<u32> {
        while self.left == 0 {
            let entry = self.table.get(..8)?;
            self.left = be32(entry);
            self.value = be32(&entry[4..]);
            self.table = &self.table[8..];
        }
        self.left -= 1;
        Some(self.value)
    }
}

pub(super) fn ticks_to_us(ticks: u64, timescale: u32) -> i64 {
    ticks_to_signed_us(i64::try_from(ticks).unwrap_or(i64::MAX), timescale)
}

fn ticks_to_signed_us(ticks: i64, timescale: u32) -> i64 {
    if timescale == 0 {
        return 0;
    }
    let us = i128::from(ticks) * 1_000_000 / i128::from(timescale);
    i64::try_from(us).unwrap_or(if us < 0 { i64::MIN } else { i64::MAX })
}
