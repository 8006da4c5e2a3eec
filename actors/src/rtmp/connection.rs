//! RTMP connection actor: one per TCP connection. Reads the socket into the sans-IO
//! [`ServerSession`], asks the application (connect, then each publish and play, through the
//! gate's [`Pass`]) and the registry and streams for decisions, pushes a publisher's media into
//! its stream's hub, and hands a player's subscription to the connection's [`Writer`].
//!
//! Invariants: events are handled strictly in arrival order, also across an asynchronous
//! connect/publish/play decision (later events wait in a queue bounded in count and bytes);
//! the application is the first segment of the connect's path; a stopping connection always
//! detaches from its streams, and its backend hears the disconnect if the connect was allowed;
//! peer input never panics, it closes this connection at worst.

use super::writer::{Feed, PlayStart, Writer, WriterCommand, WriterLimits};
use crate::access::{Attach, Gate, Pass};
use crate::messages::*;
use crate::registry::Registry;
use crate::stream::{MediaHub, Stream};
use crate::vod::{self, VodPlayback, VodSeeked};
use actix::prelude::*;
use bytes::BytesMut;
use mediarouter_core::access::{ClientFacts, Notice};
use mediarouter_core::camera::{is_camera_url, CameraUrl};
use mediarouter_core::codec::flv::{self, Tag};
use mediarouter_core::media::{Codec, QueryParams, StreamName};
use mediarouter_core::rtmp::session::status;
use mediarouter_core::rtmp::{OutQueue, ServerSession, SessionEvent};
use mediarouter_core::settings::{RtmpSettings, StreamSettings, VodSettings};
use mediarouter_core::vod::VodError;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_util::codec::{BytesCodec, FramedRead};
use tracing::{debug, info, warn};

/// Events allowed to wait behind a pending decision before the peer is considered abusive.
const MAX_PENDING_EVENTS: usize = 4096;
/// Media bytes allowed to wait behind a pending decision (a backend may take seconds).
const MAX_PENDING_BYTES: usize = 32 * 1024 * 1024;
const WRITER_QUEUE: usize = 256;

pub struct ConnectionSettings {
    pub rtmp: RtmpSettings,
    pub stream: StreamSettings,
    pub vod: VodSettings,
    pub gate: Arc<Gate>,
}

struct Publishing {
    stream_id: u32,
    name: StreamName,
    stream: Addr<Stream>,
    hub: Arc<MediaHub>,
    token: u64,
    bad_tags: u64,
}

struct Playing {
    stream_id: u32,
    name: StreamName,
    source: PlaySource,
    /// The client as its play was decided (the stream URL's query included).
    client: Arc<ClientFacts>,
}

enum PlaySource {
    /// A live stream this connection is subscribed to.
    Live(Addr<Stream>),
    /// A media file read for this connection alone.
    File(VodPlayback),
}

impl Playing {
    /// Leaves the source: unsubscribes from a live stream (which tells the backend); a file's
    /// reader stops when dropped, and the backend hears of it here.
    fn leave(self, peer: PeerId, gate: &Gate) {
        match self.source {
            PlaySource::Live(stream) => stream.do_send(Unsubscribe { peer }),
            PlaySource::File(_) => {
                gate.notify(Notice::Stop, &self.client, Some(&self.name), "player left")
            }
        }
    }
}

pub struct RtmpConnection {
    peer: PeerId,
    address: SocketAddr,
    registry: Addr<Registry>,
    settings: Arc<ConnectionSettings>,
    session: ServerSession,
    writer: mpsc::Sender<WriterCommand>,
    /// The application the connect named (its first path segment).
    app: Option<String>,
    /// The rest of the connect's path (`rtmp://HOST/APP/SUB/NAME`: `SUB`), put before every
    /// stream name so the application is always the first segment.
    name_prefix: Option<String>,
    connect_query: QueryParams,
    /// The application allowed the connect: its backend hears the disconnect.
    admitted: bool,
    /// Bytes of media waiting in `pending` behind a decision.
    pending_bytes: usize,
    publishing: Option<Publishing>,
    playing: Option<Playing>,
    pending: VecDeque<SessionEvent>,
    deciding: bool,
    last_input: Instant,
    closing: bool,
}

/// Why a file play was not started.
enum FileRefusal {
    Denied(String),
    File(VodError),
}

/// The writer ended (socket error, slow player, peer gone) with this reason.
#[derive(Message)]
#[rtype(result = "()")]
struct WriterEnded(String);

impl RtmpConnection {
    pub fn start_with(
        socket: TcpStream,
        address: SocketAddr,
        peer: PeerId,
        registry: Addr<Registry>,
        settings: Arc<ConnectionSettings>,
    ) -> Addr<Self> {
        let (read, write) = socket.into_split();
        RtmpConnection::create(move |ctx| {
            ctx.add_stream(FramedRead::with_capacity(
                read,
                BytesCodec::new(),
                64 * 1024,
            ));
            let (tx, rx) = mpsc::channel(WRITER_QUEUE);
            let limits = WriterLimits {
                max_queued_bytes: settings.stream.player_max_queued_bytes,
                max_lag_ms: settings.stream.player_max_lag_ms,
                audio_merge_ms: settings.rtmp.audio_merge_ms,
            };
            let me = ctx.address();
            actix_rt::spawn(async move {
                let reason = Writer::new(write, rx, limits, address).run().await;
                me.do_send(WriterEnded(reason));
            });
            RtmpConnection {
                peer,
                address,
                registry,
                session: ServerSession::new(
                    settings.rtmp.chunk_size,
                    settings.rtmp.max_message_bytes,
                ),
                settings,
                writer: tx,
                app: None,
                name_prefix: None,
                connect_query: QueryParams::default(),
                admitted: false,
                pending_bytes: 0,
                publishing: None,
                playing: None,
                pending: VecDeque::new(),
                deciding: false,
                last_input: Instant::now(),
                closing: false,
            }
        })
    }

    fn close(&mut self, ctx: &mut Context<Self>, reason: &str) {
        if !self.closing {
            self.closing = true;
            info!(peer = %self.address, id = %self.peer, reason, "RTMP connection closed");
            ctx.stop();
        }
    }

    fn send(&mut self, out: OutQueue, ctx: &mut Context<Self>) {
        if out.is_empty() {
            return;
        }
        self.command(WriterCommand::Send(out), ctx);
    }

    fn command(&mut self, command: WriterCommand, ctx: &mut Context<Self>) {
        if self.writer.try_send(command).is_err() {
            self.close(ctx, "writer queue full or closed");
        }
    }

    fn on_input(&mut self, data: &[u8], ctx: &mut Context<Self>) {
        self.last_input = Instant::now();
        let mut out = OutQueue::new();
        let result = self.session.handle_input(data, &mut out);
        self.send(out, ctx);
        match result {
            Ok(events) => {
                self.pending_bytes += events.iter().map(media_bytes).sum::<usize>();
                self.pending.extend(events);
                if self.pending.len() > MAX_PENDING_EVENTS || self.pending_bytes > MAX_PENDING_BYTES
                {
                    self.close(ctx, "too many messages while a decision is pending");
                    return;
                }
                self.run_pending(ctx);
            }
            Err(e) if !self.session.handshake_done() => {
                // Port scanners and garbage land here; not worth a warning each.
                info!(peer = %self.address, id = %self.peer, "RTMP handshake refused: {e}");
                self.close(ctx, "bad handshake");
            }
            Err(e) => {
                warn!(peer = %self.address, id = %self.peer, "RTMP protocol error: {e}");
                self.close(ctx, "protocol error");
            }
        }
    }

    fn run_pending(&mut self, ctx: &mut Context<Self>) {
        while !self.deciding && !self.closing {
            let Some(event) = self.pending.pop_front() else {
                return;
            };
            self.pending_bytes = self.pending_bytes.saturating_sub(media_bytes(&event));
            self.on_event(event, ctx);
        }
    }

    fn on_event(&mut self, event: SessionEvent, ctx: &mut Context<Self>) {
        match event {
            SessionEvent::ConnectRequested {
                app,
                query,
                tc_url,
                transaction_id,
            } => {
                // An `appKey` parameter names the application when the path cannot.
                let path = match query.get("appKey").filter(|k| !k.is_empty()) {
                    Some(key) => key.to_string(),
                    None if app.is_empty() => self.settings.rtmp.default_app.clone(),
                    None => app,
                };
                let (app, prefix) = match path.trim_matches('/').split_once('/') {
                    Some((app, rest)) => (app.to_string(), Some(rest.to_string())),
                    None => (path.trim_matches('/').to_string(), None),
                };
                // The connect URL's query may hold a token: not for the log.
                let tc_url = tc_url.as_deref().unwrap_or("");
                let tc_url = tc_url.split('?').next().unwrap_or(tc_url);
                info!(peer = %self.address, id = %self.peer, app = %app, tc_url, "RTMP connect");
                if query.get("appKey").is_some_and(|k| k.contains('/')) {
                    self.app = Some(app);
                    return self.reject_connect(
                        transaction_id,
                        "'appKey' is one application name, without '/'",
                        ctx,
                    );
                }
                self.app = Some(app);
                self.name_prefix = prefix.filter(|p| !p.is_empty());
                self.connect_query = query;
                self.request_connect(transaction_id, ctx);
            }
            SessionEvent::PublishRequested {
                stream_id,
                name,
                query,
                ..
            } => self.request_publish(stream_id, name, query, ctx),
            SessionEvent::PlayRequested {
                stream_id,
                name,
                query,
                ..
            } => self.request_play(stream_id, name, query, ctx),
            SessionEvent::StreamClosed { stream_id } => {
                if self
                    .publishing
                    .as_ref()
                    .is_some_and(|p| p.stream_id == stream_id)
                {
                    self.stop_publishing("deleteStream");
                }
                if self
                    .playing
                    .as_ref()
                    .is_some_and(|p| p.stream_id == stream_id)
                {
                    self.stop_playing(OutQueue::new(), ctx);
                }
            }
            SessionEvent::Unpublish { name } => {
                if self
                    .publishing
                    .as_ref()
                    .is_some_and(|p| p.name.name == name)
                {
                    self.stop_publishing("FCUnpublish");
                }
            }
            SessionEvent::Video {
                stream_id,
                timestamp,
                body,
            } => self.ingest(stream_id, timestamp, body, true),
            SessionEvent::Audio {
                stream_id,
                timestamp,
                body,
            } => self.ingest(stream_id, timestamp, body, false),
            SessionEvent::Metadata {
                stream_id,
                metadata,
            } => {
                if let Some(p) = self
                    .publishing
                    .as_ref()
                    .filter(|p| p.stream_id == stream_id)
                {
                    debug!(stream = %p.name, peer = %self.address, "metadata updated");
                    p.hub.push_metadata(p.token, metadata);
                }
            }
            SessionEvent::Pause {
                stream_id, paused, ..
            } => self.pause(stream_id, paused, ctx),
            SessionEvent::Seek {
                stream_id,
                position_ms,
            } => {
                // Pause and seek concern files; a live stream ignores them.
                if let Some(file) = self.playing_file(stream_id) {
                    file.seek(position_ms.max(0.0) as u64);
                }
            }
        }
    }

    fn stream_name(&self, name: &str) -> Option<StreamName> {
        let app = self.app.clone()?;
        Some(match &self.name_prefix {
            Some(prefix) => StreamName::new(app, format!("{prefix}/{name}")),
            None => StreamName::new(app, name),
        })
    }

    /// The gate pass of a publish or play whose stream URL had `query`.
    fn pass(&self, query: QueryParams) -> Pass {
        Pass {
            gate: Arc::clone(&self.settings.gate),
            client: Arc::new(self.client(query)),
            token: None,
        }
    }

    fn attach(&self) -> Attach {
        Attach {
            peer: self.peer,
            protocol: Protocol::Rtmp,
            address: self.address.to_string(),
        }
    }

    /// Answers the connect with `NetConnection.Connect.Rejected` and closes.
    fn reject_connect(&mut self, transaction_id: f64, reason: &str, ctx: &mut Context<Self>) {
        let mut out = OutQueue::new();
        let _ = self
            .session
            .reject_connect(&mut out, transaction_id, reason);
        self.send(out, ctx);
        self.close(ctx, "connect refused");
    }

    /// The client as the application's gate sees it; `query` (a stream URL's) follows the
    /// connect URL's.
    fn client(&self, query: QueryParams) -> ClientFacts {
        let mut all_query = self.connect_query.clone();
        all_query.extend(query);
        ClientFacts {
            session_id: format!("rtmp-{}", self.peer.0),
            protocol: "rtmp",
            address: self.address.to_string(),
            app: self.app.clone().unwrap_or_default(),
            query: all_query,
            custom: None,
            token: None,
        }
    }

    /// Asks the application whether this connection may connect: answers `_result` or
    /// `NetConnection.Connect.Rejected` (and closes).
    fn request_connect(&mut self, transaction_id: f64, ctx: &mut Context<Self>) {
        self.deciding = true;
        let gate = Arc::clone(&self.settings.gate);
        let client = self.client(QueryParams::default());
        async move { gate.connect(&client).await }
            .into_actor(self)
            .map(move |decision, conn, ctx| {
                conn.deciding = false;
                let mut out = OutQueue::new();
                match decision {
                    Ok(()) => match conn.session.accept_connect(&mut out, transaction_id) {
                        Ok(()) => {
                            conn.admitted = true;
                            conn.send(out, ctx);
                        }
                        Err(e) => {
                            warn!(peer = %conn.address, "cannot answer connect: {e}");
                            conn.close(ctx, "connect failed");
                        }
                    },
                    // Nothing else of this client is answered.
                    Err(reason) => return conn.reject_connect(transaction_id, &reason, ctx),
                }
                conn.run_pending(ctx);
            })
            .spawn(ctx);
    }

    fn refuse(&mut self, stream_id: u32, code: &str, description: &str, ctx: &mut Context<Self>) {
        self.notify(stream_id, "error", code, description, ctx);
    }

    /// Sends one `onStatus` on a message stream.
    fn notify(
        &mut self,
        stream_id: u32,
        level: &str,
        code: &str,
        description: &str,
        ctx: &mut Context<Self>,
    ) {
        let mut out = OutQueue::new();
        let encoder = self.session.encoder();
        if status(&encoder, &mut out, stream_id, level, code, description).is_ok() {
            self.send(out, ctx);
        }
    }

    fn request_publish(
        &mut self,
        stream_id: u32,
        name: String,
        query: QueryParams,
        ctx: &mut Context<Self>,
    ) {
        let Some(stream_name) = self.stream_name(&name).filter(|_| !name.is_empty()) else {
            self.refuse(
                stream_id,
                "NetStream.Publish.BadName",
                "A stream name is required.",
                ctx,
            );
            return;
        };
        if self.publishing.is_some() {
            self.refuse(
                stream_id,
                "NetStream.Publish.BadName",
                "This connection already publishes.",
                ctx,
            );
            return;
        }
        // Only the stream URL's own query may ask for privacy, not the connect's.
        let asks_private = matches!(query.get("private"), Some("true" | "1" | "yes"));
        let pass = self.pass(query);
        self.deciding = true;
        let (registry, who) = (self.registry.clone(), self.attach());
        let control = ctx.address().recipient();
        let key = stream_name.clone();
        let fut = async move {
            pass.publish(registry, key, who, control, asks_private)
                .await
        };
        fut.into_actor(self)
            .map(move |result, conn, ctx| {
                conn.deciding = false;
                match result {
                    Ok((grant, stream)) => {
                        let mut out = OutQueue::new();
                        let _ = conn.session.accept_publish(&mut out, stream_id, &stream_name.name);
                        conn.send(out, ctx);
                        info!(stream = %stream_name, peer = %conn.address, "RTMP publish started");
                        conn.publishing = Some(Publishing {
                            stream_id,
                            name: stream_name,
                            stream,
                            hub: grant.hub,
                            token: grant.token,
                            bad_tags: 0,
                        });
                    }
                    Err(StreamError::Denied(reason)) => {
                        conn.refuse(stream_id, "NetStream.Publish.Denied", &reason, ctx);
                    }
                    Err(StreamError::AlreadyPublishing(_)) => {
                        info!(stream = %stream_name, peer = %conn.address, "RTMP publish refused: already publishing");
                        conn.refuse(
                            stream_id,
                            "NetStream.Publish.BadName",
                            &format!("Stream {} is already publishing.", stream_name.name),
                            ctx,
                        );
                    }
                    _ => {
                        conn.refuse(stream_id, "NetStream.Publish.Failed", "Server busy, try again.", ctx);
                    }
                }
                conn.run_pending(ctx);
            })
            .spawn(ctx);
    }

    fn request_play(
        &mut self,
        stream_id: u32,
        name: String,
        query: QueryParams,
        ctx: &mut Context<Self>,
    ) {
        let Some(requested) = self.stream_name(&name).filter(|_| !name.is_empty()) else {
            self.refuse(
                stream_id,
                "NetStream.Play.StreamNotFound",
                "A stream name is required.",
                ctx,
            );
            return;
        };
        if self.playing.is_some() {
            self.refuse(
                stream_id,
                "NetStream.Play.Failed",
                "This connection already plays a stream.",
                ctx,
            );
            return;
        }
        let pass = self.pass(query);
        if let Some(file) = self.file_name(&requested) {
            return self.request_file(stream_id, file, pass, ctx);
        }
        let camera = if is_camera_url(&name) {
            match CameraUrl::parse(&name) {
                Ok(camera) => Some(camera),
                Err(e) => {
                    info!(peer = %self.address, "bad camera URL in play: {e}");
                    self.refuse(
                        stream_id,
                        "NetStream.Play.StreamNotFound",
                        &format!("Bad camera URL: {e}"),
                        ctx,
                    );
                    return;
                }
            }
        } else {
            None
        };
        self.deciding = true;
        let (registry, who) = (self.registry.clone(), self.attach());
        let control = ctx.address().recipient();
        let client = Arc::clone(&pass.client);
        let fut = async move {
            match pass
                .play(&registry, requested.clone(), camera, who, control)
                .await
            {
                Ok((subscription, stream, key)) => (Ok((subscription, stream)), key),
                Err(e) => (Err(e), requested),
            }
        };
        fut.into_actor(self)
            .map(move |(result, stream_name), conn, ctx| {
                conn.deciding = false;
                match result {
                    Ok((subscription, stream)) => {
                        // Audio FLV cannot carry (a WebRTC publisher's Opus) reaches RTMP
                        // players as AAC.
                        stream.do_send(NeedAudio {
                            peer: conn.peer,
                            codec: Codec::Aac,
                            takes: flv::carries,
                        });
                        let mut out = OutQueue::new();
                        let _ = conn
                            .session
                            .accept_play(&mut out, stream_id, &stream_name.name);
                        conn.send(out, ctx);
                        info!(stream = %stream_name, peer = %conn.address,
                            waiting = !subscription.publishing, "RTMP play started");
                        conn.command(
                            WriterCommand::Play(Box::new(PlayStart {
                                stream_id,
                                name: stream_name.clone(),
                                encoder: conn.session.encoder(),
                                prelude: OutQueue::new(),
                                snapshot: subscription.snapshot,
                                feed: Feed::Live(subscription.receiver),
                                bytes_out: subscription.bytes_out,
                            })),
                            ctx,
                        );
                        conn.playing = Some(Playing {
                            stream_id,
                            name: stream_name,
                            source: PlaySource::Live(stream),
                            client,
                        });
                    }
                    Err(StreamError::Denied(reason)) => {
                        conn.refuse(stream_id, "NetStream.Play.Failed", &reason, ctx)
                    }
                    Err(StreamError::NotFound(reason)) => conn.refuse(
                        stream_id,
                        "NetStream.Play.StreamNotFound",
                        &format!("{}: {reason}", stream_name.name),
                        ctx,
                    ),
                    _ => conn.refuse(
                        stream_id,
                        "NetStream.Play.Failed",
                        "Server busy, try again.",
                        ctx,
                    ),
                }
                conn.run_pending(ctx);
            })
            .spawn(ctx);
    }

    /// The file a play of `vod/...` names. Clients split a URL's path into app and name at
    /// different slashes (`vod/sub` + `clip`, or `vod` + `sub/clip`), so both are joined back.
    /// Only the app decides: whatever the name holds, `resolve` keeps it inside the root.
    fn file_name(&self, requested: &StreamName) -> Option<StreamName> {
        let vod_app = &self.settings.vod.app;
        let folder = requested.app.strip_prefix(vod_app.as_str())?;
        // Flash's `mp4:clip.mp4` names the container in front (ffmpeg writes it for `.mp4`
        // URLs); the file is found by its own name.
        let name = ["mp4:", "flv:", "f4v:"]
            .iter()
            .find_map(|prefix| requested.name.strip_prefix(prefix))
            .unwrap_or(&requested.name);
        match folder.strip_prefix('/') {
            Some(folder) => Some(StreamName::new(vod_app.clone(), format!("{folder}/{name}"))),
            None if folder.is_empty() => Some(StreamName::new(vod_app.clone(), name)),
            None => None,
        }
    }

    /// Plays a media file of `vod.root` on its own reader.
    fn request_file(
        &mut self,
        stream_id: u32,
        name: StreamName,
        pass: Pass,
        ctx: &mut Context<Self>,
    ) {
        self.deciding = true;
        let root = PathBuf::from(&self.settings.vod.root);
        let client = Arc::clone(&pass.client);
        let file_name = name.clone();
        async move {
            if let Err(reason) = pass.play_file(&file_name).await {
                return Err(FileRefusal::Denied(reason));
            }
            vod::open(root, file_name.name.clone())
                .await
                .map_err(FileRefusal::File)
        }
        .into_actor(self)
        .map(move |opened, conn, ctx| {
            conn.deciding = false;
            match opened {
                Ok(file) => {
                    let mut out = OutQueue::new();
                    let _ = conn.session.accept_play(&mut out, stream_id, &name.name);
                    conn.send(out, ctx);
                    let info = file.info();
                    info!(stream = %name, peer = %conn.address, duration_ms = info.duration_ms,
                            width = info.width, height = info.height, "RTMP file playback started");
                    let (playback, start) = VodPlayback::start(
                        file,
                        name.clone(),
                        conn.peer,
                        stream_id,
                        ctx.address().recipient(),
                    );
                    conn.play_file_from(stream_id, &name, start, OutQueue::new(), ctx);
                    conn.playing = Some(Playing {
                        stream_id,
                        name,
                        source: PlaySource::File(playback),
                        client,
                    });
                }
                Err(FileRefusal::Denied(reason)) => {
                    conn.refuse(stream_id, "NetStream.Play.Failed", &reason, ctx)
                }
                Err(FileRefusal::File(e)) => {
                    let code = match e {
                        VodError::NotFound(_) | VodError::Forbidden(_) => {
                            "NetStream.Play.StreamNotFound"
                        }
                        _ => "NetStream.Play.Failed",
                    };
                    info!(stream = %name, peer = %conn.address, code, "file not played: {e}");
                    conn.refuse(stream_id, code, &format!("{}: {e}", name.name), ctx);
                }
            }
            conn.run_pending(ctx);
        })
        .spawn(ctx);
    }

    /// Hands the writer a file's feed, after `prelude` (a seek's statuses).
    fn play_file_from(
        &mut self,
        stream_id: u32,
        name: &StreamName,
        start: vod::reader::VodStart,
        prelude: OutQueue,
        ctx: &mut Context<Self>,
    ) {
        let command = WriterCommand::Play(Box::new(PlayStart {
            stream_id,
            name: name.clone(),
            encoder: self.session.encoder(),
            prelude,
            snapshot: start.snapshot,
            feed: Feed::Recorded(start.feed),
            bytes_out: Arc::new(AtomicU64::new(0)),
        }));
        self.command(command, ctx);
    }

    fn playing_file(&self, stream_id: u32) -> Option<&VodPlayback> {
        match self.playing.as_ref() {
            Some(Playing {
                stream_id: id,
                source: PlaySource::File(file),
                ..
            }) if *id == stream_id => Some(file),
            _ => None,
        }
    }

    fn pause(&mut self, stream_id: u32, paused: bool, ctx: &mut Context<Self>) {
        let Some(file) = self.playing_file(stream_id) else {
            return;
        };
        file.pause(paused);
        let (code, what) = if paused {
            ("NetStream.Pause.Notify", "Paused")
        } else {
            ("NetStream.Unpause.Notify", "Unpaused")
        };
        let name = self.playing.as_ref().map(|p| p.name.name.clone());
        let description = format!("{what} {}.", name.unwrap_or_default());
        self.notify(stream_id, "status", code, &description, ctx);
    }

    fn ingest(&mut self, stream_id: u32, timestamp: u32, body: bytes::Bytes, video: bool) {
        let Some(p) = self
            .publishing
            .as_mut()
            .filter(|p| p.stream_id == stream_id)
        else {
            return;
        };
        let dts_us = i64::from(timestamp) * 1000;
        let parsed = if video {
            flv::parse_video(body, dts_us)
        } else {
            flv::parse_audio(body, dts_us)
        };
        match parsed {
            Ok(Tag::Frame(frame)) => p.hub.push_frame(p.token, frame),
            Ok(Tag::Config(config)) => {
                info!(stream = %p.name, peer = %self.address, codec = %config.codec.name(),
                    width = ?config.info.width, height = ?config.info.height,
                    sample_rate = ?config.info.sample_rate, "codec configuration");
                p.hub.push_config(p.token, config);
            }
            Ok(Tag::Skip) => {}
            Err(e) => {
                p.bad_tags += 1;
                if p.bad_tags.is_power_of_two() {
                    warn!(stream = %p.name, peer = %self.address, bad_tags = p.bad_tags, "malformed media tag skipped: {e}");
                }
            }
        }
    }

    fn stop_publishing(&mut self, why: &str) {
        if let Some(p) = self.publishing.take() {
            info!(stream = %p.name, peer = %self.address, why, "RTMP publish ended");
            p.stream.do_send(Unpublish { peer: self.peer });
        }
    }

    fn stop_playing(&mut self, last_words: OutQueue, ctx: &mut Context<Self>) {
        if let Some(p) = self.playing.take() {
            debug!(stream = %p.name, peer = %self.address, "RTMP play ended");
            p.leave(self.peer, &self.settings.gate);
            self.command(WriterCommand::StopPlay { last_words }, ctx);
        }
    }
}

impl Actor for RtmpConnection {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        debug!(peer = %self.address, id = %self.peer, "RTMP connection accepted");
        let handshake = Duration::from_millis(self.settings.rtmp.handshake_timeout_ms);
        ctx.run_later(handshake, |conn, ctx| {
            if !conn.session.is_connected() {
                conn.close(ctx, "no handshake and connect in time");
            }
        });
        let idle = Duration::from_millis(self.settings.rtmp.idle_timeout_ms);
        ctx.run_interval(Duration::from_secs(1).min(idle), move |conn, ctx| {
            if conn.playing.is_none() && conn.last_input.elapsed() > idle {
                conn.close(ctx, "idle timeout");
            }
        });
    }

    fn stopping(&mut self, _: &mut Self::Context) -> Running {
        self.stop_publishing("connection closed");
        if let Some(p) = self.playing.take() {
            p.leave(self.peer, &self.settings.gate);
        }
        if self.admitted {
            let client = self.client(QueryParams::default());
            self.settings
                .gate
                .notify(Notice::Disconnect, &client, None, "connection closed");
        }
        Running::Stop
    }
}

impl StreamHandler<Result<BytesMut, std::io::Error>> for RtmpConnection {
    fn handle(&mut self, item: Result<BytesMut, std::io::Error>, ctx: &mut Context<Self>) {
        match item {
            Ok(data) => self.on_input(&data, ctx),
            Err(e) => self.close(ctx, &format!("read failed: {e}")),
        }
    }

    fn finished(&mut self, ctx: &mut Context<Self>) {
        self.close(ctx, "peer closed the connection");
    }
}

impl Handler<VodSeeked> for RtmpConnection {
    type Result = ();

    fn handle(&mut self, msg: VodSeeked, ctx: &mut Context<Self>) {
        let Some(name) = self
            .playing_file(msg.stream_id)
            .and(self.playing.as_ref())
            .map(|p| p.name.clone())
        else {
            return;
        };
        let encoder = self.session.encoder();
        let mut out = OutQueue::new();
        match msg.start {
            Ok(start) => {
                let notify = format!("Seeking {} to {} ms.", name.name, start.position_ms);
                let started = format!("Started playing {}.", name.name);
                let written = status(
                    &encoder,
                    &mut out,
                    msg.stream_id,
                    "status",
                    "NetStream.Seek.Notify",
                    &notify,
                )
                .and_then(|()| {
                    status(
                        &encoder,
                        &mut out,
                        msg.stream_id,
                        "status",
                        "NetStream.Play.Start",
                        &started,
                    )
                });
                if written.is_ok() {
                    self.play_file_from(msg.stream_id, &name, start, out, ctx);
                }
            }
            Err(reason) => {
                let description = format!("{}: seek failed: {reason}", name.name);
                self.refuse(msg.stream_id, "NetStream.Seek.Failed", &description, ctx);
            }
        }
    }
}

impl Handler<WriterEnded> for RtmpConnection {
    type Result = ();

    fn handle(&mut self, msg: WriterEnded, ctx: &mut Context<Self>) {
        self.close(ctx, &msg.0);
    }
}

impl Handler<PublisherCommand> for RtmpConnection {
    type Result = ();

    fn handle(&mut self, msg: PublisherCommand, ctx: &mut Context<Self>) {
        match msg {
            PublisherCommand::Stop { reason } => {
                if let Some(p) = self.publishing.take() {
                    self.notify(
                        p.stream_id,
                        "status",
                        "NetStream.Unpublish.Success",
                        &reason,
                        ctx,
                    );
                    info!(stream = %p.name, peer = %self.address, reason = %reason, "publisher cut");
                }
                self.close(ctx, "publisher cut by the server");
            }
            // An RTMP encoder cannot be asked for a keyframe; its GOPs are what they are.
            PublisherCommand::RequestKeyframe | PublisherCommand::Message { .. } => {}
        }
    }
}

impl Handler<PlayerCommand> for RtmpConnection {
    type Result = ();

    fn handle(&mut self, msg: PlayerCommand, ctx: &mut Context<Self>) {
        match msg {
            PlayerCommand::Stop { code, description } => {
                let Some(p) = self.playing.as_ref() else {
                    return;
                };
                info!(stream = %p.name, peer = %self.address, code = %code, "player stopped by the stream");
                let level = if code.ends_with("StreamNotFound") || code.ends_with("Failed") {
                    "error"
                } else {
                    "status"
                };
                let mut last_words = OutQueue::new();
                let _ = status(
                    &self.session.encoder(),
                    &mut last_words,
                    p.stream_id,
                    level,
                    &code,
                    &description,
                );
                // The stream already forgot this player: just stop the media.
                self.playing = None;
                self.command(WriterCommand::StopPlay { last_words }, ctx);
            }
        }
    }
}

/// Media bytes an event holds (what a pending decision makes the connection keep).
fn media_bytes(event: &SessionEvent) -> usize {
    match event {
        SessionEvent::Video { body, .. } | SessionEvent::Audio { body, .. } => body.len(),
        _ => 0,
    }
}
