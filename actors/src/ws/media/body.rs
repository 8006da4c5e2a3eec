//! The data path of one media WebSocket: the HTTP response body, a stream of WebSocket frames
//! the HTTP layer pulls whenever its socket takes more. It reads the stream's snapshot and
//! fan-out, makes fMP4 with a [`LiveMuxer`], and sends the player actor's statuses in between.
//!
//! Invariants: nothing is produced ahead of the socket (the body is pulled, so the only queue is
//! the fan-out ring and the HTTP layer's small write buffer); a frame further than
//! `max_delay` behind its track's live edge makes the player skip to the next keyframe; frame
//! payloads leave as the shared buffers they arrived in; after a close frame nothing more is
//! sent and the body ends; a live audio fragment of a stream with video may wait (at most
//! `audio_merge`) for the next video fragment to share its write, while a video fragment, a
//! status or anything queued before the audio is never held.

use super::status_json;
use crate::stream::MediaHub;
use bytes::{BufMut, Bytes, BytesMut};
use futures_util::Stream;
use mediarouter_core::codec::fmp4::live::{LiveMuxer, MuxOutput};
use mediarouter_core::media::{LagAction, LagTracker, MediaPacket, StreamName, TrackKind};
use mediarouter_core::webrtc::signalling::StreamStatus;
use serde_json::json;
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;
use tokio_stream::wrappers::BroadcastStream;
use tracing::{info, warn};

/// WebSocket opcodes (RFC 6455 5.2).
const TEXT: u8 = 0x1;
const BINARY: u8 = 0x2;
const CLOSE: u8 = 0x8;
const PING: u8 = 0x9;
const PONG: u8 = 0xa;

/// What the player actor asks of its body.
pub enum BodyCommand {
    /// Start sending a subscription's media.
    Play(Box<PlayFeed>),
    /// A text message (a status).
    Text(String),
    Ping,
    Pong(Bytes),
    /// Send `last` (a final status) if any, then a close frame, then end.
    Close {
        last: Option<String>,
        reason: String,
    },
}

pub struct PlayFeed {
    pub snapshot: Vec<MediaPacket>,
    pub receiver: broadcast::Receiver<MediaPacket>,
    pub hub: Arc<MediaHub>,
    pub bytes_out: Arc<AtomicU64>,
}

/// How the body keeps up, for the player actor's watchdog (the body cannot act while the HTTP
/// layer does not pull it, which is exactly when a viewer stops reading).
pub struct Progress {
    started: Instant,
    /// Milliseconds since `started` when the body last had nothing left to send.
    drained_ms: AtomicU64,
    /// The body is waiting for media (nothing to send), not for the socket.
    idle: AtomicBool,
}

impl Progress {
    pub fn new() -> Self {
        Progress {
            started: Instant::now(),
            drained_ms: AtomicU64::new(0),
            idle: AtomicBool::new(true),
        }
    }

    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// How long the body has had media it could not send, if it has.
    pub fn behind(&self) -> Option<Duration> {
        if self.idle.load(Ordering::Relaxed) {
            return None;
        }
        let since = self.drained_ms.load(Ordering::Relaxed);
        Some(Duration::from_millis(self.now_ms().saturating_sub(since)))
    }
}

struct Feed {
    snapshot: std::vec::IntoIter<MediaPacket>,
    live: BroadcastStream<MediaPacket>,
    hub: Arc<MediaHub>,
    bytes_out: Arc<AtomicU64>,
}

/// One packet from the feed, and whether it comes from the live fan-out (not the snapshot).
enum Next {
    Packet(MediaPacket, bool),
    Lagged(u64),
    Closed,
}

pub struct MediaBody {
    name: StreamName,
    peer: String,
    commands: mpsc::UnboundedReceiver<BodyCommand>,
    feed: Option<Feed>,
    muxer: LiveMuxer,
    muxed: Vec<MuxOutput>,
    out: VecDeque<Bytes>,
    hold: Option<Pin<Box<tokio::time::Sleep>>>,
    /// `out` holds only audio waiting for the next video fragment, until this timer fires.
    audio_hold: Option<Pin<Box<tokio::time::Sleep>>>,
    audio_merge: Duration,
    progress: Arc<Progress>,
    lag: LagTracker,
    max_delay_us: i64,
    /// A skip is under way (the viewer was told NOT_ENOUGH_BANDWIDTH).
    skipping: bool,
    /// PLAYING is due before the next init segment (the start, a republish).
    announce: bool,
    ended: bool,
}

/// How far a player may fall behind, and how long its audio may wait for video.
pub struct BodyLimits {
    pub max_delay: Duration,
    pub max_lag: Duration,
    pub audio_merge: Duration,
}

impl MediaBody {
    pub fn new(
        name: StreamName,
        peer: String,
        commands: mpsc::UnboundedReceiver<BodyCommand>,
        progress: Arc<Progress>,
        limits: BodyLimits,
    ) -> Self {
        MediaBody {
            name,
            peer,
            commands,
            feed: None,
            muxer: LiveMuxer::new(),
            muxed: Vec::new(),
            out: VecDeque::new(),
            hold: None,
            audio_hold: None,
            audio_merge: limits.audio_merge,
            progress,
            lag: LagTracker::new(limits.max_lag.as_millis() as u64),
            max_delay_us: limits.max_delay.as_micros() as i64,
            skipping: false,
            announce: true,
            ended: false,
        }
    }

    fn command(&mut self, command: BodyCommand) {
        // Statuses and pongs go out at once, with whatever audio was held.
        self.audio_hold = None;
        match command {
            BodyCommand::Play(feed) => {
                let feed = *feed;
                self.feed = Some(Feed {
                    snapshot: feed.snapshot.into_iter(),
                    live: BroadcastStream::new(feed.receiver),
                    hub: feed.hub,
                    bytes_out: feed.bytes_out,
                });
            }
            BodyCommand::Text(text) => self.frame(TEXT, Bytes::from(text)),
            BodyCommand::Ping => self.frame(PING, Bytes::new()),
            BodyCommand::Pong(payload) => self.frame(PONG, payload),
            BodyCommand::Close { last, reason } => self.close(last, &reason),
        }
    }

    /// Queues a last message and the close frame; nothing is sent after them.
    fn close(&mut self, last: Option<String>, reason: &str) {
        if self.ended {
            return;
        }
        if let Some(text) = last {
            self.frame(TEXT, Bytes::from(text));
        }
        let mut payload = BytesMut::with_capacity(2 + reason.len().min(120));
        payload.put_u16(1000);
        // A close reason is at most 123 bytes; cut on a character boundary.
        let cut: String = reason.chars().take(60).collect();
        payload.put_slice(&cut.as_bytes()[..cut.len().min(120)]);
        self.frame(CLOSE, payload.freeze());
        self.ended = true;
        self.feed = None;
        self.hold = None;
        self.audio_hold = None;
    }

    /// Queues one unfragmented frame (server frames are never masked).
    fn frame(&mut self, opcode: u8, payload: Bytes) {
        self.out
            .push_back(with_header(opcode, payload.len(), &payload));
    }

    fn status(
        &mut self,
        status: StreamStatus,
        reason: Option<&str>,
        info: Option<serde_json::Value>,
    ) {
        self.audio_hold = None;
        self.frame(
            TEXT,
            Bytes::from(status_json(&self.name, status, reason, info)),
        );
    }

    fn next(&mut self, cx: &mut Context<'_>) -> Poll<Next> {
        let Some(feed) = self.feed.as_mut() else {
            return Poll::Pending;
        };
        if let Some(packet) = feed.snapshot.next() {
            return Poll::Ready(Next::Packet(packet, false));
        }
        Pin::new(&mut feed.live)
            .poll_next(cx)
            .map(|item| match item {
                Some(Ok(packet)) => Next::Packet(packet, true),
                Some(Err(BroadcastStreamRecvError::Lagged(n))) => Next::Lagged(n),
                None => Next::Closed,
            })
    }

    fn packet(&mut self, packet: MediaPacket, live: bool) {
        if let (MediaPacket::Frame(frame), true) = (&packet, live) {
            let edge = self
                .feed
                .as_ref()
                .map_or(frame.dts_us, |f| f.hub.live_edge_us(frame.track()));
            if edge - frame.dts_us > self.max_delay_us {
                self.fell_behind(1);
                return;
            }
        }
        self.hold_audio(&packet, live);
        match &packet {
            MediaPacket::Published { .. } => self.announce = true,
            MediaPacket::Unpublished => self.status(
                StreamStatus::Unpublished,
                Some("publisher gone; waiting for a republish"),
                None,
            ),
            _ => {}
        }
        self.muxer.push(&packet, Instant::now(), &mut self.muxed);
        self.emit();
    }

    /// Starts or ends the wait of held audio for `packet`, before its output is queued: live
    /// audio of a stream with video waits when nothing else is queued, and joins audio already
    /// waiting; anything else ends the wait (a video fragment goes out at once, with the audio).
    fn hold_audio(&mut self, packet: &MediaPacket, live: bool) {
        let audio =
            matches!(packet, MediaPacket::Frame(frame) if frame.track() == TrackKind::Audio);
        let has_video = self.muxer.init().is_some_and(|init| init.has_video());
        if !(live && audio && has_video && !self.audio_merge.is_zero()) {
            self.audio_hold = None;
        } else if self.out.is_empty() {
            let deadline = tokio::time::Instant::now() + self.audio_merge;
            match self.audio_hold.as_mut() {
                Some(timer) => timer.as_mut().reset(deadline),
                None => self.audio_hold = Some(Box::pin(tokio::time::sleep_until(deadline))),
            }
        }
    }

    /// Whether `out` is held back for video; its timer wakes the body when the wait is over.
    fn audio_held(&mut self, cx: &mut Context<'_>) -> bool {
        let Some(timer) = self.audio_hold.as_mut() else {
            return false;
        };
        if timer.as_mut().poll(cx).is_pending() {
            return true;
        }
        self.audio_hold = None;
        false
    }

    /// Frames were skipped: resume at the next keyframe, tell the viewer once per episode.
    fn fell_behind(&mut self, count: u64) {
        self.muxer.skip();
        let now = self.progress.now_ms();
        if let LagAction::Log { dropped_since_log } = self.lag.dropped(now, count) {
            warn!(stream = %self.name, peer = %self.peer, dropped = dropped_since_log,
                dropped_total = self.lag.dropped_total(), "WebSocket player behind: skipping to the next keyframe");
        }
        if !self.skipping {
            self.skipping = true;
            self.status(
                StreamStatus::NotEnoughBandwidth,
                Some("behind the live stream: skipped to the next keyframe"),
                None,
            );
        }
    }

    /// Queues the muxer's output: an init segment goes as a text `init` then a binary message.
    /// PLAYING goes before the first output of a start (the first, and after a republish).
    fn emit(&mut self) {
        if self.muxed.is_empty() {
            return;
        }
        if std::mem::take(&mut self.announce) {
            self.announce_playing();
        }
        let mut bytes = 0u64;
        for output in std::mem::take(&mut self.muxed) {
            match output {
                MuxOutput::Init(init) => {
                    let header = json!({
                        "type": "init",
                        "mime": init.mime_codecs(),
                        "video": init.has_video().then_some("H264"),
                        "audio": init.has_audio().then_some("AAC"),
                    });
                    self.frame(TEXT, Bytes::from(header.to_string()));
                    bytes += init.data().len() as u64;
                    self.frame(BINARY, init.data().clone());
                }
                MuxOutput::Fragment(fragment) => {
                    let total = fragment.len();
                    bytes += total as u64;
                    let mut parts = fragment.parts.into_iter();
                    // The frame header goes in front of the first part (the small moof); the
                    // payloads follow as they are.
                    let first = parts.next().unwrap_or_default();
                    self.out.push_back(with_header(BINARY, total, &first));
                    self.out.extend(parts);
                }
            }
        }
        if let Some(feed) = &self.feed {
            feed.bytes_out.fetch_add(bytes, Ordering::Relaxed);
        }
    }

    /// PLAYING, with the tracks of the init segment the output starts with.
    fn announce_playing(&mut self) {
        let init = self.muxed.iter().find_map(|o| match o {
            MuxOutput::Init(init) => Some(init),
            MuxOutput::Fragment(_) => None,
        });
        let Some(init) = init.or(self.muxer.init()) else {
            return;
        };
        let b_frames = self.feed.as_ref().is_some_and(|f| f.hub.has_b_frames());
        let info = json!({
            "video": init.has_video().then_some("H264"),
            "audio": init.has_audio().then_some("AAC"),
            "bFrames": b_frames,
        });
        info!(stream = %self.name, peer = %self.peer, mime = init.mime_codecs(), "WebSocket player playing");
        self.status(StreamStatus::Playing, None, Some(info));
    }

    /// Runs a start that waits for a configuration out when its time is up.
    fn poll_hold(&mut self, cx: &mut Context<'_>) -> bool {
        let Some(deadline) = self.muxer.hold_deadline() else {
            self.hold = None;
            return false;
        };
        let deadline = tokio::time::Instant::from_std(deadline);
        let hold = self
            .hold
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        if hold.deadline() != deadline {
            hold.as_mut().reset(deadline);
        }
        if hold.as_mut().poll(cx).is_pending() {
            return false;
        }
        self.hold = None;
        self.muxer.poll_hold(Instant::now(), &mut self.muxed);
        self.emit();
        true
    }
}

impl Stream for MediaBody {
    type Item = Result<Bytes, actix_web::Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            if !this.audio_held(cx) {
                if let Some(bytes) = this.out.pop_front() {
                    return Poll::Ready(Some(Ok(bytes)));
                }
            }
            if this.ended {
                return Poll::Ready(None);
            }
            match this.commands.poll_recv(cx) {
                Poll::Ready(Some(command)) => {
                    this.command(command);
                    continue;
                }
                Poll::Ready(None) => {
                    this.close(None, "player closed");
                    continue;
                }
                Poll::Pending => {}
            }
            if this.poll_hold(cx) {
                continue;
            }
            match this.next(cx) {
                Poll::Ready(Next::Packet(packet, live)) => {
                    this.progress.idle.store(false, Ordering::Relaxed);
                    this.packet(packet, live);
                }
                Poll::Ready(Next::Lagged(n)) => {
                    this.progress.idle.store(false, Ordering::Relaxed);
                    this.fell_behind(n);
                }
                Poll::Ready(Next::Closed) => {
                    let last = status_json(
                        &this.name,
                        StreamStatus::Stopped,
                        Some("stream closed"),
                        None,
                    );
                    this.close(Some(last), "stream closed");
                }
                Poll::Pending => {
                    // Everything that came is sent (or in the HTTP layer's buffer, or is audio
                    // held for at most `audio_merge`): caught up.
                    let now = this.progress.now_ms();
                    this.progress.drained_ms.store(now, Ordering::Relaxed);
                    this.progress.idle.store(true, Ordering::Relaxed);
                    this.lag.caught_up();
                    this.skipping = false;
                    return Poll::Pending;
                }
            }
        }
    }
}

/// `payload` (the first `payload.len()` bytes of a message of `total` bytes) behind the header
/// of an unmasked, final frame.
fn with_header(opcode: u8, total: usize, payload: &[u8]) -> Bytes {
    let mut buf = BytesMut::with_capacity(10 + payload.len());
    buf.put_u8(0x80 | opcode);
    match total {
        0..=125 => buf.put_u8(total as u8),
        126..=0xffff => {
            buf.put_u8(126);
            buf.put_u16(total as u16);
        }
        _ => {
            buf.put_u8(127);
            buf.put_u64(total as u64);
        }
    }
    buf.put_slice(payload);
    buf.freeze()
}

#[cfg(test)]
mod tests {
    use super::with_header;

    #[test]
    fn frame_headers_follow_rfc_6455() {
        assert_eq!(&with_header(0x1, 2, b"hi")[..], &[0x81, 2, b'h', b'i']);
        let h = with_header(0x2, 300, &[]);
        assert_eq!(&h[..], &[0x82, 126, 1, 44]);
        let h = with_header(0x2, 70_000, &[]);
        assert_eq!(&h[..], &[0x82, 127, 0, 0, 0, 0, 0, 1, 0x11, 0x70]);
    }
}
