//! ISO BMFF box writing (ISO 14496-12) for the init segment and the movie fragments: a growable
//! buffer with size back-patching, and the sample entries (avc1/avcC, mp4a/esds, ISO 14496-14/15).
//!
//! Invariant: every box is closed by [`Boxes::end`], which writes its 32-bit size; callers keep
//! every box far below 4 GiB (configurations are bounded by [`super::MAX_CONFIG_BYTES`], moofs by
//! the samples per fragment), so the size always fits.

/// A box being written: where its size goes.
#[derive(Debug, Clone, Copy)]
#[must_use = "a box must be closed with Boxes::end"]
pub(super) struct Open(usize);

/// An output buffer that boxes are written into.
#[derive(Debug, Default)]
pub(super) struct Boxes {
    pub buf: Vec<u8>,
}

impl Boxes {
    pub fn with_capacity(capacity: usize) -> Self {
        Boxes {
            buf: Vec::with_capacity(capacity),
        }
    }

    /// Opens a plain box; its size is written by [`Boxes::end`].
    pub fn start(&mut self, fourcc: &[u8; 4]) -> Open {
        let at = self.buf.len();
        self.buf.extend_from_slice(&[0; 4]);
        self.buf.extend_from_slice(fourcc);
        Open(at)
    }

    /// Opens a full box (version and 24-bit flags after the type).
    pub fn start_full(&mut self, fourcc: &[u8; 4], version: u8, flags: u32) -> Open {
        let open = self.start(fourcc);
        self.u32((u32::from(version) << 24) | (flags & 0x00ff_ffff));
        open
    }

    pub fn end(&mut self, open: Open) {
        let size = u32::try_from(self.buf.len() - open.0).unwrap_or(u32::MAX);
        self.buf[open.0..open.0 + 4].copy_from_slice(&size.to_be_bytes());
    }

    pub fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }

    pub fn u16(&mut self, v: u16) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }

    pub fn u32(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }

    pub fn i32(&mut self, v: i32) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }

    pub fn u64(&mut self, v: u64) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }

    pub fn bytes(&mut self, v: &[u8]) {
        self.buf.extend_from_slice(v);
    }

    pub fn zeros(&mut self, n: usize) {
        self.buf.resize(self.buf.len() + n, 0);
    }

    /// Overwrites a 32-bit value written earlier (the trun data offset, known once the moof is).
    pub fn patch_i32(&mut self, at: usize, v: i32) {
        self.buf[at..at + 4].copy_from_slice(&v.to_be_bytes());
    }
}

/// The unity transformation matrix of mvhd and tkhd (16.16 and 2.30 fixed point).
const UNITY_MATRIX: [u32; 9] = [0x0001_0000, 0, 0, 0, 0x0001_0000, 0, 0, 0, 0x4000_0000];

/// ISO 639-2 "und" packed as three 5-bit letters: the language of a track nobody labelled.
const LANGUAGE_UNDETERMINED: u16 = 0x55c4;

pub(super) fn ftyp(b: &mut Boxes) {
    let open = b.start(b"ftyp");
    // iso5 is the first brand with default-base-is-moof and tfdt (what MSE requires); iso6 adds
    // nothing needed but is what browsers' own MSE examples declare; mp41 for old parsers.
    b.bytes(b"iso5");
    b.u32(512);
    for brand in [b"iso5", b"iso6", b"mp41"] {
        b.bytes(brand);
    }
    b.end(open);
}

pub(super) fn mvhd(b: &mut Boxes, next_track_id: u32) {
    let open = b.start_full(b"mvhd", 0, 0);
    b.u32(0); // creation time
    b.u32(0); // modification time
    b.u32(1000); // timescale: only the (zero) duration uses it
    b.u32(0); // duration: unknown, a live stream
    b.u32(0x0001_0000); // rate 1.0
    b.u16(0x0100); // volume 1.0
    b.zeros(10);
    for v in UNITY_MATRIX {
        b.u32(v);
    }
    b.zeros(24); // pre_defined
    b.u32(next_track_id);
    b.end(open);
}

/// What the trak of one track needs.
pub(super) struct TrakSpec<'a> {
    pub id: u32,
    pub timescale: u32,
    pub entry: SampleEntry<'a>,
}

pub(super) enum SampleEntry<'a> {
    Avc {
        width: u16,
        height: u16,
        /// The AVCDecoderConfigurationRecord, as received.
        record: &'a [u8],
    },
    Aac {
        channels: u16,
        sample_rate: u32,
        /// The AudioSpecificConfig, as received.
        asc: &'a [u8],
    },
}

pub(super) fn trak(b: &mut Boxes, spec: &TrakSpec<'_>) {
    let video = matches!(spec.entry, SampleEntry::Avc { .. });
    let trak = b.start(b"trak");

    // Enabled and in the movie.
    let tkhd = b.start_full(b"tkhd", 0, 0x000003);
    b.u32(0); // creation time
    b.u32(0); // modification time
    b.u32(spec.id);
    b.u32(0); // reserved
    b.u32(0); // duration
    b.zeros(8);
    b.u16(0); // layer
    b.u16(0); // alternate group
    b.u16(if video { 0 } else { 0x0100 }); // volume
    b.u16(0);
    for v in UNITY_MATRIX {
        b.u32(v);
    }
    let (width, height) = match spec.entry {
        SampleEntry::Avc { width, height, .. } => (width, height),
        SampleEntry::Aac { .. } => (0, 0),
    };
    b.u32(u32::from(width) << 16);
    b.u32(u32::from(height) << 16);
    b.end(tkhd);

    let mdia = b.start(b"mdia");
    let mdhd = b.start_full(b"mdhd", 0, 0);
    b.u32(0);
    b.u32(0);
    b.u32(spec.timescale);
    b.u32(0);
    b.u16(LANGUAGE_UNDETERMINED);
    b.u16(0);
    b.end(mdhd);

    let hdlr = b.start_full(b"hdlr", 0, 0);
    b.u32(0);
    b.bytes(if video { b"vide" } else { b"soun" });
    b.zeros(12);
    b.bytes(if video {
        b"VideoHandler\0"
    } else {
        b"SoundHandler\0"
    });
    b.end(hdlr);

    let minf = b.start(b"minf");
    if video {
        let vmhd = b.start_full(b"vmhd", 0, 1);
        b.zeros(8); // graphics mode, opcolor
        b.end(vmhd);
    } else {
        let smhd = b.start_full(b"smhd", 0, 0);
        b.zeros(4); // balance, reserved
        b.end(smhd);
    }
    let dinf = b.start(b"dinf");
    let dref = b.start_full(b"dref", 0, 0);
    b.u32(1);
    // Flag 1: the media is in this file.
    let url = b.start_full(b"url ", 0, 1);
    b.end(url);
    b.end(dref);
    b.end(dinf);

    let stbl = b.start(b"stbl");
    let stsd = b.start_full(b"stsd", 0, 0);
    b.u32(1);
    sample_entry(b, &spec.entry);
    b.end(stsd);
    // The sample tables are empty: every sample lives in a movie fragment.
    for fourcc in [b"stts", b"stsc", b"stco"] {
        let table = b.start_full(fourcc, 0, 0);
        b.u32(0);
        b.end(table);
    }
    let stsz = b.start_full(b"stsz", 0, 0);
    b.u32(0); // sample size: per sample
    b.u32(0); // sample count
    b.end(stsz);
    b.end(stbl);
    b.end(minf);
    b.end(mdia);
    b.end(trak);
}

fn sample_entry(b: &mut Boxes, entry: &SampleEntry<'_>) {
    match *entry {
        SampleEntry::Avc {
            width,
            height,
            record,
        } => {
            let avc1 = b.start(b"avc1");
            b.zeros(6);
            b.u16(1); // data reference index
            b.zeros(16); // pre_defined, reserved
            b.u16(width);
            b.u16(height);
            b.u32(0x0048_0000); // 72 dpi
            b.u32(0x0048_0000);
            b.u32(0);
            b.u16(1); // frame count
            b.zeros(32); // compressor name
            b.u16(0x0018); // depth: colour, no alpha
            b.u16(0xffff); // pre_defined -1
            let avcc = b.start(b"avcC");
            b.bytes(record);
            b.end(avcc);
            b.end(avc1);
        }
        SampleEntry::Aac {
            channels,
            sample_rate,
            asc,
        } => {
            let mp4a = b.start(b"mp4a");
            b.zeros(6);
            b.u16(1); // data reference index
            b.zeros(8);
            b.u16(channels);
            b.u16(16); // sample size
            b.zeros(4);
            // 16.16 fixed point: rates above 65535 Hz do not fit and are written as 0, as ffmpeg
            // does (decoders take the rate from the AudioSpecificConfig).
            let rate = u16::try_from(sample_rate).unwrap_or(0);
            b.u32(u32::from(rate) << 16);
            esds(b, asc);
            b.end(mp4a);
        }
    }
}

/// The elementary stream descriptor of an AAC track (ISO 14496-1 descriptors, 14496-14 box).
fn esds(b: &mut Boxes, asc: &[u8]) {
    let esds = b.start_full(b"esds", 0, 0);
    let decoder_specific = descriptor_len(asc.len());
    // Object type, stream type, buffer size, two bitrates; then the decoder-specific info.
    let decoder_config = 13 + decoder_specific;
    // ES_ID and flags; the decoder config; the SL config (one byte of payload).
    let es = 3 + descriptor_len(decoder_config) + descriptor_len(1);

    descriptor_header(b, 0x03, es); // ES_Descriptor
    b.u16(0); // ES_ID: the track id says it
    b.u8(0); // no dependency, URL or OCR stream

    descriptor_header(b, 0x04, decoder_config); // DecoderConfigDescriptor
    b.u8(0x40); // object type: MPEG-4 Audio
    b.u8(0x15); // stream type 5 (audio) << 2, upstream 0, reserved 1
    b.bytes(&[0, 0, 0]); // buffer size: unknown
    b.u32(0); // max bitrate: unknown
    b.u32(0); // average bitrate: unknown (variable)

    descriptor_header(b, 0x05, asc.len()); // DecoderSpecificInfo
    b.bytes(asc);

    descriptor_header(b, 0x06, 1); // SLConfigDescriptor
    b.u8(0x02); // predefined: MP4 files
    b.end(esds);
}

/// Bytes a descriptor with `payload` bytes takes: tag, 4-byte length, payload.
fn descriptor_len(payload: usize) -> usize {
    1 + 4 + payload
}

/// A descriptor's tag and its length in the 4-byte expandable form (7 bits a byte, high bit set
/// on all but the last), which every parser reads and which keeps the sizes above simple.
fn descriptor_header(b: &mut Boxes, tag: u8, len: usize) {
    b.u8(tag);
    let len = u32::try_from(len).unwrap_or(0).min(0x0fff_ffff);
    b.u8(0x80 | ((len >> 21) & 0x7f) as u8);
    b.u8(0x80 | ((len >> 14) & 0x7f) as u8);
    b.u8(0x80 | ((len >> 7) & 0x7f) as u8);
    b.u8((len & 0x7f) as u8);
}

pub(super) fn trex(b: &mut Boxes, track_id: u32) {
    let trex = b.start_full(b"trex", 0, 0);
    b.u32(track_id);
    b.u32(1); // default sample description index
    b.u32(0); // default duration: every trun says
    b.u32(0); // default size: every trun says
    b.u32(0); // default flags: every trun says
    b.end(trex);
}
