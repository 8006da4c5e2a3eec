//! The write side of one RTMP connection: control replies from the connection actor and, while
//! playing, the stream's packets (or a file's, for video on demand) converted to RTMP chunks,
//! written with vectored IO.
//!
//! Invariants: payloads are never copied (chunks slice the shared frame); everything pending
//! since the last wake-up goes out in one `writev`; the queue is bounded by
//! `player_max_queued_bytes`: beyond it a live player's frames are skipped until the next video
//! keyframe, and a live player that stays behind longer than `player_max_lag_ms` is
//! disconnected, while a recorded player's reader is simply held back. A live player's audio
//! frames may wait (at most `rtmp.audio_merge_ms`) for the next video frame, to go out in the
//! same write: about half the writes, and the kernel's cost is per write more than per byte.

use crate::vod::Recorded;
use futures_util::Stream as _;
use mediarouter_core::codec::flv;
use mediarouter_core::media::{
    Codec, LagAction, LagTracker, MediaPacket, StreamName, Timeline, TrackKind,
};
use mediarouter_core::rtmp::session::{play_complete, status};
use mediarouter_core::rtmp::{csid, message_type, ChunkEncoder, MessageHeader, OutQueue};
use std::future::poll_fn;
use std::io::IoSlice;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::AsyncWrite;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::{broadcast, mpsc};
use tokio::time::Instant;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;
use tokio_stream::wrappers::BroadcastStream;
use tracing::{info, warn};

/// Slices per `writev` (well under IOV_MAX).
const MAX_IOV: usize = 256;
/// Packets handled per wake-up before yielding to other connections on this thread.
const BUDGET: usize = 512;

/// What the connection actor asks of its writer.
pub enum WriterCommand {
    /// Write these bytes (replies, statuses) in order with everything else.
    Send(OutQueue),
    /// Start sending a stream's media on message stream `stream_id`.
    Play(Box<PlayStart>),
    /// Stop sending media, after queuing `last_words` (a status).
    StopPlay { last_words: OutQueue },
}

pub struct PlayStart {
    pub stream_id: u32,
    pub name: StreamName,
    pub encoder: ChunkEncoder,
    /// Replies queued after the previous player's media is dropped and before this one's
    /// (a seek's statuses).
    pub prelude: OutQueue,
    pub snapshot: Vec<MediaPacket>,
    pub feed: Feed,
    pub bytes_out: Arc<AtomicU64>,
}

/// Where a player's media comes from.
pub enum Feed {
    /// A live stream's fan-out: timestamps rebased onto the player's own timeline, a player
    /// that falls behind skips to the next keyframe.
    Live(broadcast::Receiver<MediaPacket>),
    /// A file read for this player alone: the file's own timestamps, paced by the reader, no
    /// skipping (the bounded channel holds the reader back instead).
    Recorded(mpsc::Receiver<Recorded>),
}

enum Media {
    Live(BroadcastStream<MediaPacket>),
    Recorded(mpsc::Receiver<Recorded>),
}

/// One step of a player's media, whatever its feed.
enum Item {
    Packet(MediaPacket),
    Lagged(u64),
    /// The live stream is gone.
    Closed,
    /// The file ended (`Ok`, with its duration) or failed.
    FileEnd(Result<u64, String>),
    /// The reader let go of this feed (a seek replaced it, or playback stopped).
    Abandoned,
}

impl Media {
    fn poll_item(&mut self, cx: &mut Context<'_>) -> Poll<Item> {
        match self {
            Media::Live(stream) => Pin::new(stream).poll_next(cx).map(|item| match item {
                Some(Ok(packet)) => Item::Packet(packet),
                Some(Err(BroadcastStreamRecvError::Lagged(n))) => Item::Lagged(n),
                None => Item::Closed,
            }),
            Media::Recorded(receiver) => receiver.poll_recv(cx).map(|item| match item {
                Some(Recorded::Packet(packet)) => Item::Packet(packet),
                Some(Recorded::Complete { duration_ms }) => Item::FileEnd(Ok(duration_ms)),
                Some(Recorded::Failed(reason)) => Item::FileEnd(Err(reason)),
                None => Item::Abandoned,
            }),
        }
    }
}

#[derive(Clone, Copy)]
pub struct WriterLimits {
    pub max_queued_bytes: usize,
    pub max_lag_ms: u64,
    /// How long a live player's audio may wait for the next video frame; 0: never.
    pub audio_merge_ms: u64,
}

struct Player {
    stream_id: u32,
    name: StreamName,
    encoder: ChunkEncoder,
    media: Media,
    /// Live: the player's own rebased timeline. Recorded: unused, file timestamps go out as
    /// they are.
    timeline: Timeline,
    recorded: bool,
    /// Recorded: the last timestamp sent, for configurations and metadata.
    last_ms: u32,
    lag: LagTracker,
    waiting_for_keyframe: bool,
    has_video: bool,
    /// The one audio codec this player gets in this publish epoch: the source's when FLV
    /// carries it (G.711, AAC), else the AAC transcoded from it. A stream may carry both a
    /// source codec and AAC made from it for other players; FLV takes one.
    audio_codec: Option<Codec>,
    bytes_out: Arc<AtomicU64>,
}

pub struct Writer {
    socket: OwnedWriteHalf,
    commands: mpsc::Receiver<WriterCommand>,
    out: OutQueue,
    player: Option<Player>,
    limits: WriterLimits,
    peer: SocketAddr,
    started: Instant,
    tick: tokio::time::Interval,
    commands_closed: bool,
    /// Set while only merged audio is queued: the time (ms since `started`) it must go out by.
    hold_until: Option<u64>,
}

impl Writer {
    pub fn new(
        socket: OwnedWriteHalf,
        commands: mpsc::Receiver<WriterCommand>,
        limits: WriterLimits,
        peer: SocketAddr,
    ) -> Self {
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        Writer {
            socket,
            commands,
            out: OutQueue::new(),
            player: None,
            limits,
            peer,
            started: Instant::now(),
            tick,
            commands_closed: false,
            hold_until: None,
        }
    }

    /// Runs until the socket fails, the player must be dropped, or the actor closes the channel
    /// (then pending bytes are flushed, bounded by a timeout). Returns why it ended.
    pub async fn run(mut self) -> String {
        let reason = poll_fn(|cx| self.poll_run(cx)).await;
        if self.commands_closed && !self.out.is_empty() {
            let flush = poll_fn(|cx| self.poll_flush_all(cx));
            let _ = tokio::time::timeout(Duration::from_secs(2), flush).await;
        }
        reason
    }

    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    fn poll_run(&mut self, cx: &mut Context<'_>) -> Poll<String> {
        // Commands and the lag tick are rare: looked at once per wake-up (each poll that finds
        // nothing registers the waker, so nothing is missed); the media loop below is what runs
        // for every frame of every player.
        while let Poll::Ready(command) = self.commands.poll_recv(cx) {
            match command {
                Some(command) => self.handle_command(command),
                None => {
                    self.commands_closed = true;
                    return Poll::Ready("connection closed".into());
                }
            }
        }
        if self.tick.poll_tick(cx).is_ready() {
            // A tick that fired is armed again only by the next poll: do it now, so the writer
            // wakes every 500 ms whatever else happens (held audio relies on it).
            let _ = self.tick.poll_tick(cx);
            let now = self.now_ms();
            // A recorded player is held back, never dropped for being slow.
            if let Some(player) = self.player.as_mut().filter(|p| !p.recorded) {
                if self.out.len() > self.limits.max_queued_bytes {
                    player.lag.stalled(now);
                }
                if let Some(action) = player.lag.check(now) {
                    if let Some(reason) = player.verdict(action, self.peer) {
                        return Poll::Ready(reason);
                    }
                }
            }
        }
        let mut budget = BUDGET;
        loop {
            let mut progressed = false;
            let mut player_done = false;
            if let Some(player) = self.player.as_mut() {
                while budget > 0 {
                    // A recorded player waits for the socket instead of skipping frames.
                    if player.recorded && self.out.len() > self.limits.max_queued_bytes {
                        break;
                    }
                    let item = match player.media.poll_item(cx) {
                        Poll::Ready(item) => item,
                        Poll::Pending => break,
                    };
                    budget -= 1;
                    progressed = true;
                    let now = self.started.elapsed().as_millis() as u64;
                    let verdict = match item {
                        Item::Packet(packet) => {
                            if !player.may_hold(&packet, self.limits.audio_merge_ms) {
                                self.hold_until = None;
                            } else if self.out.is_empty() {
                                self.hold_until = Some(now + self.limits.audio_merge_ms);
                            }
                            // Else audio joins what is queued: held audio (still held), or
                            // bytes due now (a video frame queued in this same wake-up), which
                            // are never held back for audio that follows them.
                            player.packet(&packet, &mut self.out, self.limits.max_queued_bytes, now)
                        }
                        Item::Lagged(n) => {
                            player.waiting_for_keyframe = true;
                            player.lag.dropped(now, n)
                        }
                        Item::Closed => {
                            return Poll::Ready(format!("stream {} closed", player.name));
                        }
                        Item::FileEnd(end) => {
                            player.file_end(end, &mut self.out);
                            player_done = true;
                            break;
                        }
                        Item::Abandoned => {
                            player_done = true;
                            break;
                        }
                    };
                    if let Some(reason) = player.verdict(verdict, self.peer) {
                        return Poll::Ready(reason);
                    }
                }
            }
            if player_done {
                self.player = None;
            }
            // Held audio goes out with the next video frame, or at the first wake-up past its
            // deadline: the next packet while the stream flows, the 500 ms lag tick should it
            // fall silent.
            let holding = self.hold_until.is_some_and(|until| self.now_ms() < until);
            if !self.out.is_empty() && !holding {
                match self.poll_write_some(cx) {
                    Poll::Ready(Ok(())) => progressed = true,
                    Poll::Ready(Err(e)) => return Poll::Ready(e),
                    Poll::Pending => {}
                }
            }
            if !progressed {
                return Poll::Pending;
            }
            if budget == 0 {
                // Plenty left: let the other connections of this thread run first.
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
        }
    }

    fn handle_command(&mut self, command: WriterCommand) {
        // Replies and statuses go out at once, with whatever audio was held.
        self.hold_until = None;
        match command {
            WriterCommand::Send(mut bytes) => self.out.append(&mut bytes),
            WriterCommand::Play(start) => {
                let mut start = *start;
                // Whatever the previous player had not sent yet is dropped with it.
                self.player = None;
                self.out.append(&mut start.prelude);
                let (media, recorded) = match start.feed {
                    Feed::Live(receiver) => (Media::Live(BroadcastStream::new(receiver)), false),
                    Feed::Recorded(receiver) => (Media::Recorded(receiver), true),
                };
                let mut player = Player {
                    stream_id: start.stream_id,
                    name: start.name,
                    encoder: start.encoder,
                    media,
                    timeline: Timeline::new(),
                    recorded,
                    last_ms: 0,
                    lag: LagTracker::new(self.limits.max_lag_ms),
                    waiting_for_keyframe: true,
                    has_video: false,
                    audio_codec: None,
                    bytes_out: start.bytes_out,
                };
                for packet in &start.snapshot {
                    // The snapshot is bounded by the GOP cache: queue it whole.
                    player.packet(packet, &mut self.out, usize::MAX, 0);
                }
                self.player = Some(player);
            }
            WriterCommand::StopPlay { mut last_words } => {
                self.player = None;
                self.out.append(&mut last_words);
            }
        }
    }

    fn poll_write_some(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), String>> {
        let slices: Vec<IoSlice<'_>> = self.out.io_slices(MAX_IOV);
        match Pin::new(&mut self.socket).poll_write_vectored(cx, &slices) {
            Poll::Ready(Ok(0)) => Poll::Ready(Err("socket closed by peer".into())),
            Poll::Ready(Ok(n)) => {
                self.out.advance(n);
                if let Some(player) = self.player.as_mut() {
                    player.bytes_out.fetch_add(n as u64, Ordering::Relaxed);
                    if self.out.is_empty() {
                        player.lag.caught_up();
                    }
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(format!("write failed: {e}"))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn poll_flush_all(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        while !self.out.is_empty() {
            match self.poll_write_some(cx) {
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(_)) => return Poll::Ready(()),
                Poll::Pending => return Poll::Pending,
            }
        }
        let _ = Pin::new(&mut self.socket).poll_shutdown(cx);
        Poll::Ready(())
    }
}

impl Player {
    /// Converts one packet to chunks in `out`, or skips it when the player is behind.
    fn packet(
        &mut self,
        packet: &MediaPacket,
        out: &mut OutQueue,
        max_queued: usize,
        now: u64,
    ) -> LagAction {
        match packet {
            MediaPacket::Frame(frame) => {
                let is_video = frame.track() == TrackKind::Video;
                if !is_video && !self.takes_audio(frame.codec) {
                    return LagAction::Continue;
                }
                self.has_video |= is_video;
                if self.waiting_for_keyframe {
                    if frame.is_video_keyframe() || (!self.has_video && !is_video) {
                        self.waiting_for_keyframe = false;
                    } else {
                        return LagAction::Continue;
                    }
                }
                if out.len() > max_queued {
                    self.waiting_for_keyframe = true;
                    return self.lag.dropped(now, 1);
                }
                let Some(header) = flv::frame_header(frame) else {
                    return LagAction::Continue;
                };
                let timestamp = self.timestamp(frame.dts_us);
                let chunk_stream = if is_video { csid::VIDEO } else { csid::AUDIO };
                self.encoder.encode(
                    out,
                    MessageHeader {
                        csid: chunk_stream,
                        timestamp,
                        type_id: flv::message_type(frame.codec),
                        stream_id: self.stream_id,
                    },
                    header.as_slice(),
                    &frame.payload,
                );
            }
            MediaPacket::Config(config) => {
                let is_video = config.codec.track() == TrackKind::Video;
                if !is_video && !self.takes_audio(config.codec) {
                    return LagAction::Continue;
                }
                self.has_video |= is_video;
                if let Some(header) = flv::config_header(config) {
                    let timestamp = self.current_ms();
                    let chunk_stream = match config.codec.track() {
                        TrackKind::Video => csid::VIDEO,
                        TrackKind::Audio => csid::AUDIO,
                    };
                    self.encoder.encode(
                        out,
                        MessageHeader {
                            csid: chunk_stream,
                            timestamp,
                            type_id: flv::message_type(config.codec),
                            stream_id: self.stream_id,
                        },
                        header.as_slice(),
                        &config.data,
                    );
                }
            }
            MediaPacket::Metadata(metadata) => {
                let timestamp = self.current_ms();
                self.encoder.encode(
                    out,
                    MessageHeader {
                        csid: csid::DATA,
                        timestamp,
                        type_id: message_type::DATA_AMF0,
                        stream_id: self.stream_id,
                    },
                    &[],
                    &metadata.amf0,
                );
            }
            MediaPacket::Unpublished => {
                self.waiting_for_keyframe = true;
                self.status(
                    out,
                    "NetStream.Play.UnpublishNotify",
                    "publisher gone; waiting for a republish",
                );
            }
            MediaPacket::Published { .. } => {
                self.timeline.new_epoch();
                self.waiting_for_keyframe = true;
                self.has_video = false;
                self.audio_codec = None;
                self.status(out, "NetStream.Play.PublishNotify", "publisher is back");
            }
        }
        LagAction::Continue
    }

    /// Whether `packet` may wait for the next video frame before it is written: a live
    /// player's audio frame on a stream that has video.
    fn may_hold(&self, packet: &MediaPacket, audio_merge_ms: u64) -> bool {
        audio_merge_ms > 0
            && !self.recorded
            && self.has_video
            && matches!(packet, MediaPacket::Frame(frame) if frame.track() == TrackKind::Audio)
    }

    /// Whether audio of `codec` goes to this player: the first audio codec FLV carries that the
    /// epoch brings becomes the player's (the source's configuration comes before any made from
    /// it, in the snapshot as live), and no other.
    fn takes_audio(&mut self, codec: Codec) -> bool {
        if !flv::carries(codec) {
            return false;
        }
        *self.audio_codec.get_or_insert(codec) == codec
    }

    /// The RTMP timestamp of a frame: the file's own for a recorded player, the rebased
    /// timeline's for a live one.
    fn timestamp(&mut self, dts_us: i64) -> u32 {
        if self.recorded {
            self.last_ms = (dts_us.max(0) / 1000) as u32;
            self.last_ms
        } else {
            (self.timeline.map(dts_us) / 1000) as u32
        }
    }

    fn current_ms(&self) -> u32 {
        if self.recorded {
            self.last_ms
        } else {
            (self.timeline.last() / 1000) as u32
        }
    }

    /// The end of a recorded stream: completion statuses, or the reader's failure.
    fn file_end(&self, end: Result<u64, String>, out: &mut OutQueue) {
        let written = match end {
            Ok(duration_ms) => {
                info!(stream = %self.name, "file played to the end");
                play_complete(&self.encoder, out, self.stream_id, duration_ms, 0)
            }
            Err(reason) => {
                warn!(stream = %self.name, %reason, "file playback failed");
                status(
                    &self.encoder,
                    out,
                    self.stream_id,
                    "error",
                    "NetStream.Play.Failed",
                    &format!("{}: {reason}", self.name.name),
                )
            }
        };
        if let Err(e) = written {
            warn!(stream = %self.name, "cannot encode the end of playback: {e}");
        }
    }

    fn status(&self, out: &mut OutQueue, code: &str, description: &str) {
        let description = format!("{}: {description}", self.name.name);
        if let Err(e) = status(
            &self.encoder,
            out,
            self.stream_id,
            "status",
            code,
            &description,
        ) {
            warn!(stream = %self.name, "cannot encode {code}: {e}");
        }
    }

    /// Applies a lag verdict: logs, or returns the reason to disconnect.
    fn verdict(&mut self, action: LagAction, peer: SocketAddr) -> Option<String> {
        match action {
            LagAction::Continue => None,
            LagAction::Log { dropped_since_log } => {
                warn!(stream = %self.name, peer = %peer, dropped = dropped_since_log,
                    dropped_total = self.lag.dropped_total(), "player behind: skipping to the next keyframe");
                None
            }
            LagAction::Disconnect { behind_ms } => {
                info!(stream = %self.name, peer = %peer, behind_ms,
                    dropped_total = self.lag.dropped_total(), "disconnecting player that stays behind");
                Some(format!("player too slow: behind for {behind_ms} ms"))
            }
        }
    }
}
