//! The data plane of one stream: codec configs, metadata, GOP cache and the bounded fan-out.
//!
//! Invariants: the publisher pushes frames here directly (no mailbox); every push and every
//! subscribe happen under one short lock, so a new player's snapshot and receiver meet exactly;
//! only the publisher holding the current token can push; the fan-out ring is bounded and a
//! player that falls behind sees `Lagged` instead of slowing anyone.

use mediarouter_core::media::{Frame, GopCache, MediaPacket, Metadata, TrackConfig, TrackKind};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::broadcast;

pub struct MediaHub {
    state: Mutex<HubState>,
    sender: broadcast::Sender<MediaPacket>,
    pub bytes_in: AtomicU64,
    pub frames_in: AtomicU64,
    pub bytes_out: Arc<AtomicU64>,
    /// Decode time of the newest source frame per track (video, audio; publisher clock): how far
    /// behind the live edge a player is, whatever its transport buffers. Per track because a
    /// publisher's tracks need not share a clock origin.
    live_edge_us: [AtomicI64; 2],
}

struct HubState {
    gop: GopCache,
    video_config: Option<Arc<TrackConfig>>,
    audio_config: Option<Arc<TrackConfig>>,
    /// Configuration of transcoded audio (AAC made from Opus), apart from the source's own so
    /// that no transcoder takes another's output for its input.
    derived_audio_config: Option<Arc<TrackConfig>>,
    metadata: Option<Arc<Metadata>>,
    /// A video frame of this publish epoch had a composition offset: the stream has B-frames
    /// (which WebRTC players in browsers cannot play smoothly).
    b_frames: bool,
    /// Token of the publisher allowed to push; 0 when nobody publishes.
    token: u64,
    epoch: u32,
}

impl MediaHub {
    pub fn new(gop_cache_max_bytes: usize, fanout_capacity: usize) -> Self {
        let (sender, _) = broadcast::channel(fanout_capacity);
        MediaHub {
            state: Mutex::new(HubState {
                gop: GopCache::new(gop_cache_max_bytes),
                video_config: None,
                audio_config: None,
                derived_audio_config: None,
                metadata: None,
                b_frames: false,
                token: 0,
                epoch: 0,
            }),
            sender,
            bytes_in: AtomicU64::new(0),
            frames_in: AtomicU64::new(0),
            bytes_out: Arc::new(AtomicU64::new(0)),
            live_edge_us: [AtomicI64::new(0), AtomicI64::new(0)],
        }
    }

    fn lock(&self) -> MutexGuard<'_, HubState> {
        // A panic while holding this lock would be a bug in this module; the state stays
        // usable (it holds no invariant across the lock that a panic could break).
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts a publish epoch for `token`; players are told and rebase their timestamps.
    pub fn begin_publish(&self, token: u64) {
        let mut state = self.lock();
        state.token = token;
        state.epoch += 1;
        state.gop.reset();
        state.video_config = None;
        state.audio_config = None;
        state.derived_audio_config = None;
        state.metadata = None;
        state.b_frames = false;
        let epoch = state.epoch;
        let _ = self.sender.send(MediaPacket::Published { epoch });
    }

    /// Ends the current publish epoch: later pushes with the old token are ignored.
    pub fn end_publish(&self) {
        let mut state = self.lock();
        if state.token != 0 {
            state.token = 0;
            state.gop.reset();
            let _ = self.sender.send(MediaPacket::Unpublished);
        }
    }

    /// The publisher is still this stream's, but its source is gone for now (a camera being
    /// reconnected): players are told and wait for the next epoch.
    pub fn interrupt(&self, token: u64) {
        let mut state = self.lock();
        if state.token == token {
            state.gop.reset();
            let _ = self.sender.send(MediaPacket::Unpublished);
        }
    }

    pub fn push_frame(&self, token: u64, frame: Frame) {
        let frame = Arc::new(frame);
        let mut state = self.lock();
        if state.token != token {
            return;
        }
        self.bytes_in
            .fetch_add(frame.payload.len() as u64, Ordering::Relaxed);
        self.frames_in.fetch_add(1, Ordering::Relaxed);
        self.live_edge_us[track_index(frame.track())].store(frame.dts_us, Ordering::Relaxed);
        if frame.cts_us != 0 && frame.track() == TrackKind::Video {
            state.b_frames = true;
        }
        state.gop.push(&frame);
        let _ = self.sender.send(MediaPacket::Frame(frame));
    }

    /// A frame made from the stream's own (a transcoder's output), for the epoch it was made
    /// in: dropped if that epoch has ended. Not counted as input.
    pub fn push_derived(&self, epoch: u32, frame: Frame) {
        let frame = Arc::new(frame);
        let mut state = self.lock();
        if state.token == 0 || state.epoch != epoch {
            return;
        }
        state.gop.push(&frame);
        let _ = self.sender.send(MediaPacket::Frame(frame));
    }

    /// The configuration of transcoded audio, for the epoch it was made in.
    pub fn push_derived_config(&self, epoch: u32, config: TrackConfig) {
        let config = Arc::new(config);
        let mut state = self.lock();
        if state.token == 0 || state.epoch != epoch {
            return;
        }
        state.derived_audio_config = Some(Arc::clone(&config));
        let _ = self.sender.send(MediaPacket::Config(config));
    }

    /// The current publish epoch (counts publishes; 0 before the first).
    pub fn epoch(&self) -> u32 {
        self.lock().epoch
    }

    pub fn push_config(&self, token: u64, config: TrackConfig) {
        let mut state = self.lock();
        if state.token != token {
            return;
        }
        let config = Arc::new(config);
        let slot = match config.codec.track() {
            TrackKind::Video => &mut state.video_config,
            TrackKind::Audio => &mut state.audio_config,
        };
        if slot
            .as_ref()
            .is_some_and(|old| old.data == config.data && old.codec == config.codec)
        {
            // Encoders repeat sequence headers; only a change matters to players.
            return;
        }
        let video_changed = config.codec.track() == TrackKind::Video && slot.is_some();
        *slot = Some(Arc::clone(&config));
        if video_changed {
            // Cached frames were coded with the old parameters.
            state.gop.clear();
        }
        let _ = self.sender.send(MediaPacket::Config(config));
    }

    pub fn push_metadata(&self, token: u64, metadata: Metadata) {
        let mut state = self.lock();
        if state.token != token {
            return;
        }
        let metadata = Arc::new(metadata);
        state.metadata = Some(Arc::clone(&metadata));
        let _ = self.sender.send(MediaPacket::Metadata(metadata));
    }

    /// Snapshot (metadata, configs, GOP) and a receiver for everything after it.
    pub fn subscribe(&self) -> (Vec<MediaPacket>, broadcast::Receiver<MediaPacket>) {
        let state = self.lock();
        let mut snapshot = Vec::with_capacity(state.gop.len() + 3);
        snapshot.extend(state.metadata.clone().map(MediaPacket::Metadata));
        snapshot.extend(state.video_config.clone().map(MediaPacket::Config));
        snapshot.extend(state.audio_config.clone().map(MediaPacket::Config));
        snapshot.extend(state.derived_audio_config.clone().map(MediaPacket::Config));
        snapshot.extend(state.gop.snapshot());
        (snapshot, self.sender.subscribe())
    }

    /// The source's own video and audio configurations (never transcoded ones).
    pub fn configs(&self) -> (Option<Arc<TrackConfig>>, Option<Arc<TrackConfig>>) {
        let state = self.lock();
        (state.video_config.clone(), state.audio_config.clone())
    }

    /// Whether this publish epoch's video has B-frames (seen so far).
    pub fn has_b_frames(&self) -> bool {
        self.lock().b_frames
    }

    /// Decode time of the newest source frame of a track, in the publisher's clock.
    pub fn live_edge_us(&self, track: TrackKind) -> i64 {
        self.live_edge_us[track_index(track)].load(Ordering::Relaxed)
    }

    pub fn gop_len(&self) -> usize {
        self.lock().gop.len()
    }
}

fn track_index(track: TrackKind) -> usize {
    match track {
        TrackKind::Video => 0,
        TrackKind::Audio => 1,
    }
}
