//! One viewer's playback of a media file: reads it frame by frame, paces it in real time after
//! a short burst, and obeys pause and seek.
//!
//! Invariants: frames go out in file order with the file's timestamps; nothing is read ahead of
//! the bounded feed, so a slow viewer holds the reader back instead of filling memory; a pause
//! stops the clock (the reader resumes where it was, not where real time would be); a seek
//! hands the viewer a fresh feed starting on the keyframe at or before the target, so nothing
//! read before the seek is played after it; the end of the file and a read error are said in
//! the feed, after the last frame.

use crate::messages::PeerId;
use actix::prelude::*;
use mediarouter_core::media::{MediaPacket, StreamName};
use mediarouter_core::vod::{on_metadata, resolve, VodError, VodFile};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{debug, info, warn};

/// Media sent ahead of real time at the start and after a seek, so the player's buffer fills
/// at once.
const BURST: Duration = Duration::from_millis(1000);
/// Frames between the reader and the viewer's writer.
const FEED_FRAMES: usize = 16;

/// What a recorded player's writer receives.
pub enum Recorded {
    Packet(MediaPacket),
    /// The file played to its end.
    Complete {
        duration_ms: u64,
    },
    /// The file could not be read on.
    Failed(String),
}

/// The start of playback (or of playback after a seek): what the player needs first, and the
/// feed of what follows.
pub struct VodStart {
    pub position_ms: u64,
    pub snapshot: Vec<MediaPacket>,
    pub feed: mpsc::Receiver<Recorded>,
}

/// Reader → connection: a seek was done (or failed).
#[derive(Message)]
#[rtype(result = "()")]
pub struct VodSeeked {
    pub stream_id: u32,
    pub start: Result<VodStart, String>,
}

enum Control {
    Pause(bool),
    Seek(u64),
}

/// A running playback; dropping it stops the reader.
pub struct VodPlayback {
    control: mpsc::UnboundedSender<Control>,
    task: JoinHandle<()>,
}

impl VodPlayback {
    /// Starts reading `file` for the viewer `peer`; seeks are answered to `events`.
    pub fn start(
        file: VodFile,
        name: StreamName,
        peer: PeerId,
        stream_id: u32,
        events: Recipient<VodSeeked>,
    ) -> (VodPlayback, VodStart) {
        let (control, control_rx) = mpsc::unbounded_channel();
        let (feed, start) = feed_from(&file, 0);
        let reader = Reader {
            file,
            name,
            peer,
            stream_id,
            events,
            feed,
            pacer: Pacer::new(0),
        };
        let task = tokio::spawn(reader.run(control_rx));
        (VodPlayback { control, task }, start)
    }

    pub fn pause(&self, paused: bool) {
        let _ = self.control.send(Control::Pause(paused));
    }

    pub fn seek(&self, position_ms: u64) {
        let _ = self.control.send(Control::Seek(position_ms));
    }
}

impl Drop for VodPlayback {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Resolves `name` inside `root` and opens the file, on a blocking thread.
pub async fn open(root: PathBuf, name: String) -> Result<VodFile, VodError> {
    tokio::task::spawn_blocking(move || VodFile::open(&resolve(&root, &name)?))
        .await
        .unwrap_or_else(|e| Err(VodError::Corrupt(format!("reader task failed: {e}"))))
}

/// A new feed, and the packets a player needs before the frames from `position_ms`.
fn feed_from(file: &VodFile, position_ms: u64) -> (mpsc::Sender<Recorded>, VodStart) {
    let (feed, receiver) = mpsc::channel(FEED_FRAMES);
    let mut snapshot = vec![MediaPacket::Metadata(Arc::new(on_metadata(file.info())))];
    snapshot.extend(
        file.configs()
            .into_iter()
            .map(|c| MediaPacket::Config(Arc::new(c))),
    );
    let start = VodStart {
        position_ms,
        snapshot,
        feed: receiver,
    };
    (feed, start)
}

/// Real-time pacing of file timestamps: when a frame is due.
struct Pacer {
    /// When the frame at `origin_us` is due (burst included).
    base: Instant,
    origin_us: i64,
    paused_at: Option<Instant>,
}

impl Pacer {
    fn new(position_ms: u64) -> Pacer {
        Pacer {
            base: Instant::now(),
            origin_us: position_ms as i64 * 1000,
            paused_at: None,
        }
    }

    fn due(&self, dts_us: i64) -> Instant {
        let ahead = Duration::from_micros((dts_us - self.origin_us).max(0) as u64);
        (self.base + ahead)
            .checked_sub(BURST)
            .unwrap_or(self.base)
            .max(self.base)
    }

    fn pause(&mut self, paused: bool) {
        match (paused, self.paused_at) {
            (true, None) => self.paused_at = Some(Instant::now()),
            (false, Some(at)) => {
                // The clock stood still while paused; the burst is not given again.
                self.base += at.elapsed();
                self.paused_at = None;
            }
            _ => {}
        }
    }
}

struct Reader {
    file: VodFile,
    name: StreamName,
    peer: PeerId,
    stream_id: u32,
    events: Recipient<VodSeeked>,
    feed: mpsc::Sender<Recorded>,
    pacer: Pacer,
}

impl Reader {
    async fn run(mut self, mut control: mpsc::UnboundedReceiver<Control>) {
        let mut next: Option<MediaPacket> = None;
        let mut ended = false;
        loop {
            if next.is_none() && !ended {
                match self.file.next_frame() {
                    Ok(Some(frame)) => next = Some(MediaPacket::Frame(Arc::new(frame))),
                    Ok(None) => {
                        ended = true;
                        let duration_ms = self.file.info().duration_ms;
                        info!(stream = %self.name, peer = %self.peer, "file read to the end");
                        let _ = self.feed.send(Recorded::Complete { duration_ms }).await;
                    }
                    Err(e) => {
                        warn!(stream = %self.name, peer = %self.peer, "file read failed: {e}");
                        let _ = self.feed.send(Recorded::Failed(e.to_string())).await;
                        return;
                    }
                }
            }
            let due = match (&next, self.pacer.paused_at) {
                (Some(MediaPacket::Frame(frame)), None) => Some(self.pacer.due(frame.dts_us)),
                _ => None,
            };
            tokio::select! {
                command = control.recv() => match command {
                    None => return,
                    Some(Control::Pause(paused)) => {
                        debug!(stream = %self.name, peer = %self.peer, paused, "pause");
                        self.pacer.pause(paused);
                    }
                    Some(Control::Seek(target_ms)) => {
                        next = None;
                        ended = false;
                        self.seek(target_ms);
                    }
                },
                _ = tokio::time::sleep_until(due.unwrap_or_else(Instant::now)), if due.is_some() => {
                    if let Some(packet) = next.take() {
                        // An error means the writer let go of this feed: wait for a seek or
                        // the end of playback.
                        let _ = self.feed.send(Recorded::Packet(packet)).await;
                    }
                }
            }
        }
    }

    fn seek(&mut self, target_ms: u64) {
        let start = match self.file.seek(target_ms) {
            Ok(position_ms) => {
                info!(stream = %self.name, peer = %self.peer, target_ms, position_ms, "seek");
                let (feed, start) = feed_from(&self.file, position_ms);
                self.feed = feed;
                let paused = self.pacer.paused_at.is_some();
                self.pacer = Pacer::new(position_ms);
                self.pacer.pause(paused);
                Ok(start)
            }
            Err(e) => {
                warn!(stream = %self.name, peer = %self.peer, target_ms, "seek failed: {e}");
                Err(e.to_string())
            }
        };
        self.events.do_send(VodSeeked {
            stream_id: self.stream_id,
            start,
        });
    }
}
