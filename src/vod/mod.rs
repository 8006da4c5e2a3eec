//! Video on demand: media files (MP4 and FLV, H.264 + AAC) read as a sequence of frames.
//!
//! [`resolve`] turns a requested stream name into a file inside the media root; [`VodFile`] opens
//! it, says what onMetaData needs ([`VodInfo`]), hands out the decoder configurations and then
//! the frames of all tracks interleaved in DTS order, and seeks to keyframes.
//!
//! Invariants:
//! - Blocking IO, no clocks: the caller paces frames. One `VodFile` per viewer.
//! - Only the index lives in memory (for MP4 about 24 bytes per sample, for FLV 16 bytes per
//!   keyframe); each frame's payload is read from disk when it is asked for, so a file of any
//!   size plays in constant memory.
//! - Every size or count read from a file is checked against the file's size (and a sanity
//!   cap) before anything is allocated for it; bad data gives a [`VodError`], never a panic.
//! - Frames come out as the live path makes them: H.264 payloads in AVCC form with 4-byte NAL
//!   lengths, AAC payloads as raw access units, `dts_us` starting at 0 and never decreasing
//!   within a track, `cts_us` the composition offset.
//! - Tracks other than H.264 and AAC are skipped; a file with neither is
//!   [`VodError::Unsupported`].

mod flv;
mod metadata;
mod mp4;

pub use metadata::on_metadata;

#[cfg(test)]
mod flv_tests;
#[cfg(test)]
mod mp4_tests;
#[cfg(test)]
mod tests;

use crate::media::{Codec, Frame, TrackConfig};
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Component, Path, PathBuf};
use thiserror::Error;

/// Why a file cannot be found, opened or read. The `Display` text names no server path, so it
/// fits a log line and a NetStream status description alike.
#[derive(Debug, Error)]
pub enum VodError {
    /// No file under the media root has this name (or the root itself is missing).
    #[error("stream not found: {0}")]
    NotFound(String),
    /// The name tries to leave the media root (`..`, absolute path, symlink out of the root).
    #[error("stream refused: {0}")]
    Forbidden(String),
    /// The file's structure is invalid.
    #[error("corrupt media file: {0}")]
    Corrupt(String),
    /// The file ends before its structure says it should.
    #[error("truncated media file: {0}")]
    Truncated(String),
    /// A valid file this reader does not play (other format, codecs, fragmented MP4...).
    #[error("unsupported media file: {0}")]
    Unsupported(String),
    /// The operating system failed a read.
    #[error("media file read error: {0}")]
    Io(#[from] io::Error),
}

/// What the file says about itself: everything an onMetaData needs. Fields of an absent track
/// are 0 (the track's codec is `None`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct VodInfo {
    pub duration_ms: u64,
    pub width: u32,
    pub height: u32,
    pub frame_rate: f64,
    pub video_codec: Option<Codec>,
    pub audio_codec: Option<Codec>,
    pub video_bitrate_kbps: u32,
    pub audio_bitrate_kbps: u32,
    pub audio_sample_rate: u32,
    pub audio_channels: u8,
    /// Size of the file in bytes.
    pub file_size: u64,
}

/// Container format, told apart by content, never by extension.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VodFormat {
    Mp4,
    Flv,
}

/// One open media file and a read position in it.
pub struct VodFile {
    reader: Reader,
}

enum Reader {
    Mp4(mp4::Mp4Reader<File>),
    Flv(flv::FlvReader<File>),
}

impl VodFile {
    /// Opens `path` and reads its index (MP4 `moov`, FLV tag headers or onMetaData keyframes).
    pub fn open(path: &Path) -> Result<VodFile, VodError> {
        let mut file = File::open(path).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => VodError::NotFound(display_name(path)),
            _ => VodError::Io(e),
        })?;
        let file_size = file.metadata()?.len();
        let reader = match sniff(&mut file, file_size)? {
            VodFormat::Mp4 => Reader::Mp4(mp4::Mp4Reader::new(file, file_size)?),
            VodFormat::Flv => Reader::Flv(flv::FlvReader::new(file, file_size)?),
        };
        Ok(VodFile { reader })
    }

    pub fn format(&self) -> VodFormat {
        match &self.reader {
            Reader::Mp4(_) => VodFormat::Mp4,
            Reader::Flv(_) => VodFormat::Flv,
        }
    }

    pub fn info(&self) -> &VodInfo {
        match &self.reader {
            Reader::Mp4(r) => r.info(),
            Reader::Flv(r) => r.info(),
        }
    }

    /// Decoder configurations of the tracks that play (video first), each with `dts_us` 0:
    /// send them before the first frame and again after every seek.
    pub fn configs(&self) -> Vec<TrackConfig> {
        match &self.reader {
            Reader::Mp4(r) => r.configs(),
            Reader::Flv(r) => r.configs(),
        }
    }

    /// The next frame in DTS order across tracks, `None` at the end of the file.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, VodError> {
        match &mut self.reader {
            Reader::Mp4(r) => r.next_frame(),
            Reader::Flv(r) => r.next_frame(),
        }
    }

    /// Moves to the video keyframe at or before `target_ms` (the first one if the target is
    /// earlier); audio resumes from the same time. Returns that keyframe's time in ms, which is
    /// the DTS of the next frame [`VodFile::next_frame`] returns.
    pub fn seek(&mut self, target_ms: u64) -> Result<u64, VodError> {
        match &mut self.reader {
            Reader::Mp4(r) => r.seek(target_ms),
            Reader::Flv(r) => r.seek(target_ms),
        }
    }
}

/// Finds the file a player asked for: `NAME`, `NAME.mp4` or `NAME.flv` (the first that is a
/// regular file) inside `root`. The answer is canonical (symlinks resolved) and inside the
/// canonical root. Sub-folders are allowed; `..`, absolute names and symlinks that lead out of
/// the root are [`VodError::Forbidden`]; a missing file or root is [`VodError::NotFound`].
pub fn resolve(root: &Path, name: &str) -> Result<PathBuf, VodError> {
    if name.is_empty() {
        return Err(VodError::NotFound("empty stream name".into()));
    }
    if name.contains('\0') {
        return Err(VodError::Forbidden(format!("{name:?} holds a NUL byte")));
    }
    for component in Path::new(name).components() {
        match component {
            Component::Normal(_) | Component::CurDir => {}
            Component::ParentDir => {
                return Err(VodError::Forbidden(format!(
                    "{name:?} holds a '..' component"
                )))
            }
            Component::RootDir | Component::Prefix(_) => {
                return Err(VodError::Forbidden(format!("{name:?} is an absolute path")))
            }
        }
    }
    // Canonical forms on both sides so that a symlink anywhere (in the root's own path, in a
    // sub-folder, or the file itself) is judged by where it really leads.
    let root = root
        .canonicalize()
        .map_err(|_| VodError::NotFound(format!("{name:?} (the media root is missing)")))?;
    for candidate in [
        name.to_string(),
        format!("{name}.mp4"),
        format!("{name}.flv"),
    ] {
        // A missing file or a dangling symlink fails here: try the next candidate.
        let Ok(real) = root.join(&candidate).canonicalize() else {
            continue;
        };
        if !real.starts_with(&root) {
            return Err(VodError::Forbidden(format!(
                "{candidate:?} leads out of the media root"
            )));
        }
        if real.is_file() {
            return Ok(real);
        }
    }
    Err(VodError::NotFound(format!("{name:?}")))
}

/// The file's own name for messages: never the folders above it.
fn display_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Tells the format from the first bytes: the FLV signature, or the type of an ISO BMFF box.
fn sniff<R: Read + Seek>(src: &mut R, file_size: u64) -> Result<VodFormat, VodError> {
    let mut head = [0u8; 8];
    let len = head
        .len()
        .min(usize::try_from(file_size).unwrap_or(usize::MAX));
    src.seek(SeekFrom::Start(0))?;
    read_exact(src, &mut head[..len], "file header")?;
    if len >= 3 && &head[..3] == b"FLV" {
        return Ok(VodFormat::Flv);
    }
    const BOX_TYPES: [&[u8; 4]; 8] = [
        b"ftyp", b"moov", b"mdat", b"free", b"skip", b"wide", b"pdin", b"uuid",
    ];
    if len == 8 && BOX_TYPES.iter().any(|t| &head[4..8] == *t) {
        return Ok(VodFormat::Mp4);
    }
    if len < 8 {
        return Err(VodError::Truncated(format!("only {file_size} bytes")));
    }
    Err(VodError::Unsupported(
        "neither an FLV nor an MP4 (ISO BMFF) file".into(),
    ))
}

/// `read_exact` whose end-of-file becomes [`VodError::Truncated`] naming what was being read.
fn read_exact<R: Read>(src: &mut R, buf: &mut [u8], what: &str) -> Result<(), VodError> {
    src.read_exact(buf).map_err(|e| match e.kind() {
        io::ErrorKind::UnexpectedEof => VodError::Truncated(format!("end of file inside {what}")),
        _ => VodError::Io(e),
    })
}

/// `bytes * 8 / duration`, in kbit/s (bytes per millisecond times 8 is kbit/s).
fn kbps(bytes: u64, duration_us: u64) -> u32 {
    if duration_us == 0 {
        return 0;
    }
    let kbps = u128::from(bytes) * 8 * 1000 / u128::from(duration_us);
    u32::try_from(kbps).unwrap_or(u32::MAX)
}

/// Rewrites an H.264 sample's NAL lengths to 4 bytes (checking them when they already are).
fn to_avcc4(data: Vec<u8>, length_size: u8) -> Result<Vec<u8>, String> {
    let size = usize::from(length_size);
    if !(1..=4).contains(&size) {
        return Err(format!("NAL length size {length_size}"));
    }
    let mut count = 0usize;
    let mut pos = 0usize;
    while pos < data.len() {
        let Some(field) = data.get(pos..pos + size) else {
            return Err(format!("NAL length cut at byte {pos}"));
        };
        let len = field
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        pos += size;
        if len > data.len() - pos {
            return Err(format!("NAL unit of {len} bytes overruns the sample"));
        }
        pos += len;
        count += 1;
    }
    if size == 4 {
        return Ok(data);
    }
    let mut out = Vec::with_capacity(data.len() + count * (4 - size));
    let mut pos = 0usize;
    while let Some(field) = data.get(pos..pos + size) {
        let len = field
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        // Checked by the first pass: fits in u32 and inside the sample.
        out.extend_from_slice(&(len as u32).to_be_bytes());
        out.extend_from_slice(&data[pos + size..pos + size + len]);
        pos += size + len;
    }
    Ok(out)
}
