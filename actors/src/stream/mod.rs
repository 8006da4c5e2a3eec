//! Stream actor: the control plane of one live stream. Knows its publisher and players, runs
//! the play-wait and unpublish-grace timers, counts bitrates, answers REST, and retires itself
//! through the registry when nobody is left. The media itself flows through [`MediaHub`].
//!
//! Invariants: at most one publisher; every attached player is either live or waiting with a
//! timer; a stream with neither publisher nor players asks the registry to remove it; a private
//! stream has one holder and every player it keeps is that holder's; each client that leaves
//! (player detached or stopped, publisher gone) is told to its application's backend once.

mod hub;
mod transcode;

pub use hub::MediaHub;

use crate::access::Gate;
use crate::messages::*;
use crate::registry::Registry;
use actix::prelude::*;
use mediarouter_core::access::{ClientFacts, Notice};
use mediarouter_core::codec::{flv, fmp4};
use mediarouter_core::media::StreamName;
use mediarouter_core::media::{Codec, TrackKind};
use mediarouter_core::settings::StreamSettings;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use tracing::{debug, info};

const STATS_INTERVAL: Duration = Duration::from_secs(1);

/// What a viewer other than a private stream's holder is told.
const PRIVATE_REFUSAL: &str = "the stream is private: another viewer holds it";

/// Keyframe requests reach the publisher at most this often, however many viewers ask: an
/// encoder flooded with requests sends nothing but keyframes.
const KEYFRAME_REQUEST_INTERVAL: Duration = Duration::from_millis(500);

struct PublisherEntry {
    peer: PeerId,
    protocol: Protocol,
    address: String,
    query: mediarouter_core::media::QueryParams,
    control: Recipient<PublisherCommand>,
    client: Option<Arc<ClientFacts>>,
}

/// A player's audio needs: the source's codec as it is if `takes` it, else `codec`.
struct AudioNeed {
    codec: Codec,
    takes: fn(Codec) -> bool,
}

struct PlayerEntry {
    protocol: Protocol,
    address: String,
    control: Recipient<PlayerCommand>,
    client: Arc<ClientFacts>,
    holder: String,
    /// Order of attachment: a stream made private keeps the holder attached first.
    attached: u64,
}

/// Who may play a private stream: the holder its publish named, else its first admitted holder,
/// for the stream's lifetime (a holder that leaves may come back; nobody else may take its
/// place).
#[derive(Default)]
struct Privacy {
    private: bool,
    holder: Option<String>,
}

pub struct Stream {
    name: StreamName,
    instance: u64,
    registry: Addr<Registry>,
    settings: Arc<StreamSettings>,
    gate: Arc<Gate>,
    hub: Arc<MediaHub>,
    publisher: Option<PublisherEntry>,
    privacy: Privacy,
    /// Publish epochs so far; a grace timer only fires for the epoch that started it.
    publish_count: u64,
    players: HashMap<PeerId, PlayerEntry>,
    /// Players attached so far (numbers `PlayerEntry::attached`).
    attach_count: u64,
    started_at: SystemTime,
    retiring: bool,
    bitrate_in_kbps: u64,
    bitrate_out_kbps: u64,
    last_bytes: (u64, u64),
    /// What each player that declared it needs of the audio.
    audio_demand: HashMap<PeerId, AudioNeed>,
    /// Running transcoders by (source codec, target codec): one per pair, while a player
    /// demands the target and the source's audio is in the other codec.
    transcoders: HashMap<(Codec, Codec), tokio::task::JoinHandle<()>>,
    last_keyframe_request: Option<Instant>,
}

impl Stream {
    pub fn new(
        name: StreamName,
        instance: u64,
        registry: Addr<Registry>,
        settings: Arc<StreamSettings>,
        gate: Arc<Gate>,
    ) -> Self {
        let hub = Arc::new(MediaHub::new(
            settings.gop_cache_max_bytes,
            settings.fanout_capacity,
        ));
        Stream {
            name,
            instance,
            registry,
            settings,
            gate,
            hub,
            publisher: None,
            privacy: Privacy::default(),
            publish_count: 0,
            players: HashMap::new(),
            attach_count: 0,
            started_at: SystemTime::now(),
            retiring: false,
            bitrate_in_kbps: 0,
            bitrate_out_kbps: 0,
            last_bytes: (0, 0),
            audio_demand: HashMap::new(),
            transcoders: HashMap::new(),
            last_keyframe_request: None,
        }
    }

    /// The player no longer takes part in the audio demand.
    fn release_audio(&mut self, peer: PeerId) {
        if self.audio_demand.remove(&peer).is_some() {
            self.sync_transcoders();
        }
    }

    /// Players whose transport cannot carry the stream's video (a WebRTC publisher's VP8 for
    /// RTMP's FLV and the WebSocket's fMP4) get a clear refusal rather than a stream without
    /// picture. Checked when a player declares its needs and every stats tick, since the video
    /// may appear after the player.
    fn refuse_uncarried_video(&mut self) {
        let Some(codec) = self.hub.configs().0.map(|c| c.codec) else {
            return;
        };
        let refused: Vec<(PeerId, &'static str)> = self
            .players
            .iter()
            .filter_map(|(peer, p)| {
                let (carried, transport) = match p.protocol {
                    Protocol::Rtmp => (flv::carries(codec), "RTMP"),
                    Protocol::Websocket => (fmp4::carries(codec), "MP4 over WebSocket"),
                    Protocol::Webrtc | Protocol::Rtsp | Protocol::File => return None,
                };
                (!carried).then_some((*peer, transport))
            })
            .collect();
        for (peer, transport) in refused {
            if let Some(player) = self.players.get(&peer) {
                info!(stream = %self.name, peer = %player.address, codec = %codec.name(), transport, "player refused: video codec its transport cannot carry");
            }
            self.stop_player(
                peer,
                "NetStream.Play.Failed",
                &format!(
                    "codec not supported: the stream's video is {}, which {transport} cannot carry; play it over WebRTC",
                    codec.name()
                ),
            );
        }
    }

    /// Runs exactly the transcoders the players need from the source's current audio codec.
    /// Called when the demand changes and every stats tick, which catches a source whose audio
    /// codec appears or changes (a publisher that arrives after its players, a republish).
    fn sync_transcoders(&mut self) {
        let source = self.hub.configs().1.map(|c| c.codec);
        let wanted: HashSet<(Codec, Codec)> = match source {
            Some(from) => self
                .audio_demand
                .values()
                .filter(|need| !(need.takes)(from))
                .map(|need| (from, need.codec))
                .collect(),
            None => HashSet::new(),
        };
        let name = &self.name;
        self.transcoders.retain(|(from, to), task| {
            if wanted.contains(&(*from, *to)) {
                return true;
            }
            task.abort();
            info!(stream = %name, from = %from.name(), to = %to.name(), "audio transcoder stopped: not needed");
            false
        });
        for (from, to) in wanted {
            if self.transcoders.contains_key(&(from, to)) {
                continue;
            }
            if let Some(task) = transcode::spawn(from, to, Arc::clone(&self.hub), name.clone()) {
                self.transcoders.insert((from, to), task);
            }
        }
    }

    fn stop_player(&mut self, peer: PeerId, code: &str, description: &str) {
        self.release_audio(peer);
        if let Some(player) = self.players.remove(&peer) {
            player.control.do_send(PlayerCommand::Stop {
                code: code.into(),
                description: description.into(),
            });
            self.gate
                .notify(Notice::Stop, &player.client, Some(&self.name), description);
        }
    }

    /// The publisher is gone (unpublished or stopped): its backend hears of it.
    fn publisher_left(&mut self, reason: &str) -> Option<PublisherEntry> {
        let publisher = self.publisher.take()?;
        self.hub.end_publish();
        if let Some(client) = &publisher.client {
            self.gate
                .notify(Notice::Unpublish, client, Some(&self.name), reason);
        }
        Some(publisher)
    }

    /// Whether `holder` may play: any holder on a public stream; on a private one, its first
    /// holder only (taken here when there is none yet).
    fn admits(&mut self, holder: &str) -> bool {
        if !self.privacy.private {
            return true;
        }
        match &self.privacy.holder {
            Some(bound) => bound == holder,
            None => {
                self.privacy.holder = Some(holder.to_string());
                true
            }
        }
    }

    /// A publish made the stream private: the holder it names takes it; players already
    /// attached (waiting for it, or left from an earlier publish) keep it only if they are its
    /// holder, the first attached of them if it has none yet.
    fn make_private(&mut self, named: Option<String>) {
        self.privacy.private = true;
        if named.is_some() {
            self.privacy.holder = named;
        }
        let mut players: Vec<(u64, PeerId, String)> = self
            .players
            .iter()
            .map(|(peer, p)| (p.attached, *peer, p.holder.clone()))
            .collect();
        players.sort();
        for (_, peer, holder) in players {
            if !self.admits(&holder) {
                self.stop_player(peer, "NetStream.Play.Failed", PRIVATE_REFUSAL);
            }
        }
    }

    /// Nobody left: ask the registry to remove this instance.
    fn retire_if_idle(&mut self, ctx: &mut Context<Self>) {
        if self.retiring || self.publisher.is_some() || !self.players.is_empty() {
            return;
        }
        self.retiring = true;
        debug!(stream = %self.name, "stream idle, retiring");
        self.registry
            .send(StreamIdle {
                name: self.name.clone(),
                instance: self.instance,
            })
            .into_actor(self)
            .map(|removed, _, ctx| {
                // If the registry is gone the process is shutting down: stop as well.
                if removed.unwrap_or(true) {
                    ctx.stop();
                }
            })
            .wait(ctx);
    }

    fn start_play_wait(&self, peer: PeerId, ctx: &mut Context<Self>) {
        let wait = Duration::from_millis(self.settings.play_wait_timeout_ms);
        ctx.run_later(wait, move |stream, ctx| {
            if stream.publisher.is_some() {
                return;
            }
            if let Some(player) = stream.players.get(&peer) {
                info!(stream = %stream.name, peer = %player.address, "no publisher within the play wait time");
                stream.stop_player(
                    peer,
                    "NetStream.Play.StreamNotFound",
                    &format!("Stream {} not found.", stream.name.name),
                );
                stream.retire_if_idle(ctx);
            }
        });
    }

    fn update_stats(&mut self) {
        let bytes_in = self.hub.bytes_in.load(Ordering::Relaxed);
        let bytes_out = self.hub.bytes_out.load(Ordering::Relaxed);
        let secs = STATS_INTERVAL.as_secs_f64();
        self.bitrate_in_kbps =
            ((bytes_in - self.last_bytes.0) as f64 * 8.0 / 1000.0 / secs).round() as u64;
        self.bitrate_out_kbps =
            ((bytes_out - self.last_bytes.1) as f64 * 8.0 / 1000.0 / secs).round() as u64;
        self.last_bytes = (bytes_in, bytes_out);
    }

    fn info(&self) -> StreamInfo {
        let (video, audio) = self.hub.configs();
        let b_frames = self.hub.has_b_frames();
        let view = |c: Option<Arc<mediarouter_core::media::TrackConfig>>| {
            c.map(|c| TrackView {
                codec: c.codec.name(),
                width: c.info.width,
                height: c.info.height,
                profile: c.info.profile.clone(),
                level: c.info.level.clone(),
                b_frames: (c.codec.track() == TrackKind::Video).then_some(b_frames),
                sample_rate: c.info.sample_rate,
                channels: c.info.channels,
            })
        };
        let mut players = PlayerCounts::default();
        for p in self.players.values() {
            match p.protocol {
                Protocol::Rtmp => players.rtmp += 1,
                Protocol::Webrtc => players.webrtc += 1,
                Protocol::Websocket => players.websocket += 1,
                // Cameras and files publish; they never play.
                Protocol::Rtsp | Protocol::File => {}
            }
            players.total += 1;
        }
        StreamInfo {
            name: self.name.name.clone(),
            app: self.name.app.clone(),
            status: match (&self.publisher, self.publish_count) {
                (Some(_), _) => "PUBLISHING",
                (None, 0) => "WAITING",
                (None, _) => "UNPUBLISHED",
            },
            publisher: self.publisher.as_ref().map(|p| PublisherInfo {
                protocol: p.protocol,
                address: p.address.clone(),
                query: p.query.0.iter().cloned().collect(),
            }),
            video: view(video),
            audio: view(audio),
            bitrate_in_kbps: self.bitrate_in_kbps,
            bitrate_out_kbps: self.bitrate_out_kbps,
            players,
            started_at: humantime::format_rfc3339_seconds(self.started_at).to_string(),
            frames_in: self.hub.frames_in.load(Ordering::Relaxed),
            gop_cache_frames: self.hub.gop_len(),
            private: self.privacy.private,
        }
    }
}

impl Actor for Stream {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        debug!(stream = %self.name, "stream created");
        ctx.run_interval(STATS_INTERVAL, |stream, _| {
            stream.update_stats();
            stream.refuse_uncarried_video();
            stream.sync_transcoders();
        });
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        for (_, task) in self.transcoders.drain() {
            task.abort();
        }
        info!(stream = %self.name, "stream closed");
    }
}

impl Handler<Publish> for Stream {
    type Result = Result<PublishGrant, StreamError>;

    fn handle(&mut self, msg: Publish, _: &mut Context<Self>) -> Self::Result {
        if self.retiring {
            return Err(StreamError::Retired);
        }
        if let Some(current) = &self.publisher {
            info!(stream = %self.name, peer = %msg.address, publisher = %current.address,
                "publish refused: name already publishing");
            return Err(StreamError::AlreadyPublishing(self.name.clone()));
        }
        self.publish_count += 1;
        let token = msg.peer.0;
        self.hub.begin_publish(token);
        info!(stream = %self.name, peer = %msg.address, protocol = ?msg.protocol,
            players = self.players.len(), "publishing");
        self.publisher = Some(PublisherEntry {
            peer: msg.peer,
            protocol: msg.protocol,
            address: msg.address,
            query: msg.query,
            control: msg.control,
            client: msg.client,
        });
        if msg.private {
            self.make_private(msg.holder);
        } else {
            self.privacy = Privacy::default();
        }
        Ok(PublishGrant {
            hub: Arc::clone(&self.hub),
            token,
        })
    }
}

impl Handler<Unpublish> for Stream {
    type Result = ();

    fn handle(&mut self, msg: Unpublish, ctx: &mut Context<Self>) {
        if self.publisher.as_ref().map(|p| p.peer) != Some(msg.peer) {
            return;
        }
        let publisher = self.publisher_left("unpublished");
        let address = publisher.map(|p| p.address).unwrap_or_default();
        info!(stream = %self.name, peer = %address, players = self.players.len(),
            grace_ms = self.settings.unpublish_grace_ms, "unpublished");
        if self.players.is_empty() {
            self.retire_if_idle(ctx);
            return;
        }
        let epoch = self.publish_count;
        let grace = Duration::from_millis(self.settings.unpublish_grace_ms);
        ctx.run_later(grace, move |stream, ctx| {
            if stream.publisher.is_some() || stream.publish_count != epoch {
                return;
            }
            let peers: Vec<PeerId> = stream.players.keys().copied().collect();
            if !peers.is_empty() {
                info!(stream = %stream.name, players = peers.len(), "no republish within the grace time");
            }
            for peer in peers {
                stream.stop_player(peer, "NetStream.Play.Stop", "Stream ended: publisher gone.");
            }
            stream.retire_if_idle(ctx);
        });
    }
}

impl Handler<Subscribe> for Stream {
    type Result = Result<Subscription, StreamError>;

    fn handle(&mut self, msg: Subscribe, ctx: &mut Context<Self>) -> Self::Result {
        if self.retiring {
            return Err(StreamError::Retired);
        }
        if !self.admits(&msg.holder) {
            info!(stream = %self.name, peer = %msg.address, "play refused: the stream is private");
            return Err(StreamError::Denied(PRIVATE_REFUSAL.into()));
        }
        let (snapshot, receiver) = self.hub.subscribe();
        let publishing = self.publisher.is_some();
        info!(stream = %self.name, peer = %msg.address, protocol = ?msg.protocol,
            publishing, snapshot = snapshot.len(), "player attached");
        if !publishing {
            self.start_play_wait(msg.peer, ctx);
        }
        self.players.insert(
            msg.peer,
            PlayerEntry {
                protocol: msg.protocol,
                address: msg.address,
                control: msg.control,
                client: msg.client,
                holder: msg.holder,
                attached: self.attach_count,
            },
        );
        self.attach_count += 1;
        Ok(Subscription {
            snapshot,
            receiver,
            bytes_out: Arc::clone(&self.hub.bytes_out),
            publishing,
            hub: Arc::clone(&self.hub),
        })
    }
}

impl Handler<Unsubscribe> for Stream {
    type Result = ();

    fn handle(&mut self, msg: Unsubscribe, ctx: &mut Context<Self>) {
        self.release_audio(msg.peer);
        if let Some(player) = self.players.remove(&msg.peer) {
            info!(stream = %self.name, peer = %player.address, players = self.players.len(), "player detached");
            self.gate.notify(
                Notice::Stop,
                &player.client,
                Some(&self.name),
                "player left",
            );
        }
        self.retire_if_idle(ctx);
    }
}

impl Handler<NeedAudio> for Stream {
    type Result = ();

    fn handle(&mut self, msg: NeedAudio, _: &mut Context<Self>) {
        if !self.players.contains_key(&msg.peer) {
            return;
        }
        self.audio_demand.insert(
            msg.peer,
            AudioNeed {
                codec: msg.codec,
                takes: msg.takes,
            },
        );
        self.refuse_uncarried_video();
        self.sync_transcoders();
    }
}

impl Handler<KeyframeRequest> for Stream {
    type Result = ();

    fn handle(&mut self, msg: KeyframeRequest, _: &mut Context<Self>) {
        let (Some(publisher), Some(player)) = (&self.publisher, self.players.get(&msg.peer)) else {
            return;
        };
        if self
            .last_keyframe_request
            .is_some_and(|at| at.elapsed() < KEYFRAME_REQUEST_INTERVAL)
        {
            return;
        }
        self.last_keyframe_request = Some(Instant::now());
        debug!(stream = %self.name, peer = %player.address, publisher = %publisher.address, "keyframe request passed to the publisher");
        publisher.control.do_send(PublisherCommand::RequestKeyframe);
    }
}

impl Handler<ToPublisher> for Stream {
    type Result = bool;

    fn handle(&mut self, msg: ToPublisher, _: &mut Context<Self>) -> bool {
        // Only a WebRTC publisher has a client that reads messages.
        let Some(publisher) = self
            .publisher
            .as_ref()
            .filter(|p| p.protocol == Protocol::Webrtc)
        else {
            return false;
        };
        debug!(stream = %self.name, publisher = %publisher.address, from = %msg.from, "viewer message to the publisher");
        publisher.control.do_send(PublisherCommand::Message {
            from: msg.from,
            data: msg.data,
        });
        true
    }
}

impl Handler<GetStreamInfo> for Stream {
    type Result = MessageResult<GetStreamInfo>;

    fn handle(&mut self, _: GetStreamInfo, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.info())
    }
}

impl Handler<TerminateStream> for Stream {
    type Result = ();

    fn handle(&mut self, msg: TerminateStream, ctx: &mut Context<Self>) {
        info!(stream = %self.name, reason = %msg.reason, players = self.players.len(), "terminating stream");
        if let Some(publisher) = self.publisher_left(&msg.reason) {
            publisher.control.do_send(PublisherCommand::Stop {
                reason: msg.reason.clone(),
            });
        }
        let peers: Vec<PeerId> = self.players.keys().copied().collect();
        for peer in peers {
            self.stop_player(
                peer,
                msg.player_code,
                &format!("Stream terminated: {}", msg.reason),
            );
        }
        self.retire_if_idle(ctx);
    }
}
