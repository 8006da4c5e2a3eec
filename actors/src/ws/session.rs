//! One signalling session: a WebSocket speaking the JSON protocol of `web/sdk/PROTOCOL.md`.
//! It asks the application whether the client may connect, parses client messages, starts a
//! [`WebrtcViewer`] or [`WebrtcPublisher`] per stream (each asks the application for its own
//! play or publish), relays SDP and ICE between client and them, passes a viewer's `send` to its
//! stream's publisher, and forwards their statuses.
//!
//! Invariants: nothing but `connect` and `ping` is served before the application allowed the
//! connect (the session waits for that decision, and a refusal closes it); a bad message gets
//! an `error` message and changes nothing else; the session holds at most
//! `webrtc.max_streams_per_session` streams and passes at most `SENDS_PER_SECOND` messages;
//! a session silent for `webrtc.keepalive_timeout_ms` (no message, no pong) is closed; closing
//! the session, for any reason, stops every viewer it started and tells the backend.

use crate::access::{Gate, Pass};
use crate::messages::{FindStream, GetStreamInfo, StreamInfo};
use crate::registry::Registry;
use crate::webrtc::{
    PublisherSpec, ToClient, ViewerSignal, ViewerSpec, WebrtcContext, WebrtcPublisher, WebrtcViewer,
};
use actix::prelude::*;
use actix_web_actors::ws;
use mediarouter_core::access::{ClientFacts, Notice};
use mediarouter_core::media::QueryParams;
use mediarouter_core::webrtc::signalling::{
    ClientMessage, ProtocolError, ServerMessage, SessionStatus, StreamStatus,
};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::{debug, info};

/// Largest `send` payload (serialised): messages to a publisher are requests, not media.
const MAX_SEND_BYTES: usize = 8192;
/// `send` messages a session may pass on: this many per second, in bursts of `SEND_BURST`.
const SENDS_PER_SECOND: f64 = 10.0;
const SEND_BURST: f64 = 20.0;

/// What every session needs from the server.
pub struct SessionContext {
    pub registry: Addr<Registry>,
    pub webrtc: Arc<WebrtcContext>,
    pub default_app: String,
    pub gate: Arc<Gate>,
}

pub struct WsSession {
    id: String,
    address: String,
    context: Arc<SessionContext>,
    /// Query parameters of the signalling URL, for the application's backend.
    query: QueryParams,
    /// Set once the application allowed `connect`: the application of bare stream names.
    app: Option<String>,
    /// The client as the application's gate sees it (set with `app`).
    client: Option<Arc<ClientFacts>>,
    /// `send` messages this session may still pass on now (refilled over time).
    send_budget: f64,
    send_budget_at: Instant,
    /// Viewers and publishers of this session, by the client's stream id.
    streams: HashMap<String, Recipient<ViewerSignal>>,
    last_heard: Instant,
    closing: bool,
}

impl WsSession {
    pub fn new(address: String, query: QueryParams, context: Arc<SessionContext>) -> WsSession {
        WsSession {
            // Unique in the process (the counter) and not guessable (the random part): backends key
            // their bookkeeping on it, and private stream names may carry it.
            id: format!(
                "s-{}-{:08x}",
                crate::messages::PeerId::next().0,
                rand::random::<u32>()
            ),
            address,
            context,
            query,
            app: None,
            client: None,
            send_budget: SEND_BURST,
            send_budget_at: Instant::now(),
            streams: HashMap::new(),
            last_heard: Instant::now(),
            closing: false,
        }
    }

    fn send(&self, message: &ServerMessage, ctx: &mut ws::WebsocketContext<Self>) {
        ctx.text(message.to_json());
    }

    fn error(&self, error: ProtocolError, ctx: &mut ws::WebsocketContext<Self>) {
        debug!(session = %self.id, peer = %self.address, code = error.code, "signalling error: {}", error.message);
        self.send(&error.to_message(), ctx);
    }

    /// Says goodbye with a final session status and closes the socket.
    fn close(&mut self, status: SessionStatus, reason: &str, ctx: &mut ws::WebsocketContext<Self>) {
        if self.closing {
            return;
        }
        self.closing = true;
        info!(session = %self.id, peer = %self.address, reason, "signalling session closed");
        self.send(
            &ServerMessage::Session {
                status,
                session_id: None,
                server: None,
                keepalive_ms: None,
                reason: Some(reason.to_string()),
            },
            ctx,
        );
        ctx.close(Some(ws::CloseReason {
            code: ws::CloseCode::Normal,
            description: Some(reason.chars().take(100).collect()),
        }));
        ctx.stop();
    }

    fn on_text(&mut self, text: &str, ctx: &mut ws::WebsocketContext<Self>) {
        let message = match ClientMessage::parse(text) {
            Ok(message) => message,
            Err(e) => return self.error(e, ctx),
        };
        if self.app.is_none()
            && !matches!(message, ClientMessage::Connect { .. } | ClientMessage::Ping)
        {
            return self.error(
                ProtocolError::new("not_connected", "send 'connect' first", None),
                ctx,
            );
        }
        match message {
            ClientMessage::Connect {
                app_key,
                token,
                custom,
            } => self.on_connect(app_key, token, custom, ctx),
            ClientMessage::Play {
                stream_id,
                name,
                sdp,
                token,
            } => self.on_play(stream_id, name, sdp, token, ctx),
            ClientMessage::Publish {
                stream_id,
                name,
                sdp,
                token,
                private,
            } => self.on_publish(stream_id, name, sdp, (token, private), ctx),
            ClientMessage::Answer { stream_id, sdp } => {
                self.signal(&stream_id, ViewerSignal::Answer(sdp), ctx)
            }
            ClientMessage::Candidate {
                stream_id,
                candidate,
            } => self.signal(&stream_id, ViewerSignal::Candidate(candidate), ctx),
            ClientMessage::Stop { stream_id } => self.signal(
                &stream_id,
                ViewerSignal::Stop("stopped by client".into()),
                ctx,
            ),
            ClientMessage::Describe { name } => self.on_describe(name, ctx),
            ClientMessage::Send { stream_id, data } => {
                if data.to_string().len() > MAX_SEND_BYTES {
                    return self.error(
                        ProtocolError::new(
                            "bad_request",
                            format!("'data' is larger than {MAX_SEND_BYTES} bytes"),
                            Some(stream_id),
                        ),
                        ctx,
                    );
                }
                if !self.take_send_budget() {
                    return self.error(
                        ProtocolError::new(
                            "too_many_messages",
                            format!("at most {SENDS_PER_SECOND} 'send' per second"),
                            Some(stream_id),
                        ),
                        ctx,
                    );
                }
                let from = self.id.clone();
                self.signal(&stream_id, ViewerSignal::Send { from, data }, ctx)
            }
            ClientMessage::Ping => self.send(&ServerMessage::Pong, ctx),
            ClientMessage::Disconnect => {
                self.close(SessionStatus::Disconnected, "client disconnected", ctx)
            }
        }
    }

    fn on_connect(
        &mut self,
        app_key: Option<String>,
        token: Option<String>,
        custom: Option<serde_json::Value>,
        ctx: &mut ws::WebsocketContext<Self>,
    ) {
        if self.app.is_some() {
            return self.error(
                ProtocolError::new("bad_request", "already connected", Some("connect".into())),
                ctx,
            );
        }
        let app = app_key
            .or_else(|| self.query.get("appKey").map(str::to_string))
            .filter(|a| !a.trim().is_empty())
            .unwrap_or_else(|| self.context.default_app.clone());
        if app.contains('/') {
            return self.error(
                ProtocolError::new(
                    "bad_request",
                    "'appKey' must not contain '/'",
                    Some("connect".into()),
                ),
                ctx,
            );
        }
        let client = Arc::new(ClientFacts {
            session_id: self.id.clone(),
            protocol: "webrtc",
            address: self.address.clone(),
            app: app.clone(),
            query: self.query.clone(),
            custom,
            token,
        });
        let gate = Arc::clone(&self.context.gate);
        let asking = Arc::clone(&client);
        async move { gate.connect(&asking).await }
            .into_actor(self)
            .map(move |decision, session, ctx| {
                // The session waited for the backend, not for the client.
                session.last_heard = Instant::now();
                if let Err(reason) = decision {
                    return session.close(SessionStatus::Failed, &reason, ctx);
                }
                info!(session = %session.id, peer = %session.address, app = %app, "signalling session established");
                session.app = Some(app);
                session.client = Some(client);
                session.send(
                    &ServerMessage::Session {
                        status: SessionStatus::Established,
                        session_id: Some(session.id.clone()),
                        server: Some(format!("mediarouter {}", env!("CARGO_PKG_VERSION"))),
                        keepalive_ms: Some(session.context.webrtc.settings.keepalive_timeout_ms),
                        reason: None,
                    },
                    ctx,
                );
            })
            .wait(ctx);
    }

    /// The gate pass of a publish or play with `token`.
    fn pass(&self, token: Option<String>) -> Pass {
        Pass {
            gate: Arc::clone(&self.context.gate),
            client: self.client.clone().unwrap_or_default(),
            token,
        }
    }

    /// Refuses a stream id in use or one stream too many; true when the id may be taken.
    fn admit(&mut self, stream_id: &str, ctx: &mut ws::WebsocketContext<Self>) -> bool {
        if self.streams.contains_key(stream_id) {
            self.error(
                ProtocolError::new(
                    "duplicate_stream",
                    format!("stream '{stream_id}' is already in use in this session"),
                    Some(stream_id.to_string()),
                ),
                ctx,
            );
            return false;
        }
        let max = self.context.webrtc.settings.max_streams_per_session;
        if self.streams.len() >= max {
            self.error(
                ProtocolError::new(
                    "too_many_streams",
                    format!("a session holds at most {max} streams"),
                    Some(stream_id.to_string()),
                ),
                ctx,
            );
            return false;
        }
        true
    }

    fn on_publish(
        &mut self,
        stream_id: String,
        requested: String,
        sdp: String,
        (token, private): (Option<String>, bool),
        ctx: &mut ws::WebsocketContext<Self>,
    ) {
        if !self.admit(&stream_id, ctx) {
            return;
        }
        let app = self.app.as_deref().unwrap_or_default();
        let name = match super::requested_stream(&requested, app) {
            Ok((name, None)) => name,
            // A camera URL, parsable or not.
            _ => {
                return self.error(
                    ProtocolError::new(
                        "bad_request",
                        "a camera URL cannot be published to",
                        Some(stream_id),
                    ),
                    ctx,
                )
            }
        };
        info!(session = %self.id, peer = %self.address, stream = %name, id = %stream_id, "WebRTC publish requested");
        let publisher = WebrtcPublisher::new(PublisherSpec {
            stream_id: stream_id.clone(),
            name,
            address: self.address.clone(),
            offer: sdp,
            client: ctx.address().recipient(),
            registry: self.context.registry.clone(),
            context: Arc::clone(&self.context.webrtc),
            pass: self.pass(token),
            private,
        })
        .start();
        self.streams.insert(stream_id, publisher.recipient());
    }

    fn on_play(
        &mut self,
        stream_id: String,
        requested: String,
        sdp: Option<String>,
        token: Option<String>,
        ctx: &mut ws::WebsocketContext<Self>,
    ) {
        if !self.admit(&stream_id, ctx) {
            return;
        }
        let app = self.app.as_deref().unwrap_or_default();
        let (name, camera) = match super::requested_stream(&requested, app) {
            Ok(parsed) => parsed,
            Err(reason) => {
                return self.send(
                    &ServerMessage::Status {
                        stream_id,
                        name: requested.trim().chars().take(200).collect(),
                        status: StreamStatus::Failed,
                        reason: Some(reason),
                        info: None,
                    },
                    ctx,
                )
            }
        };
        info!(session = %self.id, peer = %self.address, stream = %name, id = %stream_id, "WebRTC play requested");
        let viewer = WebrtcViewer::new(ViewerSpec {
            stream_id: stream_id.clone(),
            name,
            camera,
            address: self.address.clone(),
            offer: sdp,
            client: ctx.address().recipient(),
            registry: self.context.registry.clone(),
            context: Arc::clone(&self.context.webrtc),
            pass: self.pass(token),
        })
        .start();
        self.streams.insert(stream_id, viewer.recipient());
    }

    /// Whether one more `send` fits the session's budget (and takes it).
    fn take_send_budget(&mut self) -> bool {
        let now = Instant::now();
        let refill = now.duration_since(self.send_budget_at).as_secs_f64() * SENDS_PER_SECOND;
        self.send_budget = (self.send_budget + refill).min(SEND_BURST);
        self.send_budget_at = now;
        if self.send_budget < 1.0 {
            return false;
        }
        self.send_budget -= 1.0;
        true
    }

    /// Answers with what the stream is now; the name in the answer is the one asked about.
    /// Only streams of applications anyone may play, and not private ones, are described:
    /// others are `NOT_FOUND`, as if absent, without a decision.
    fn on_describe(&mut self, requested: String, ctx: &mut ws::WebsocketContext<Self>) {
        let app = self.app.as_deref().unwrap_or_default();
        let name = match super::requested_stream(&requested, app) {
            Ok((name, _)) => name,
            Err(reason) => {
                return self.error(
                    ProtocolError::new("bad_request", reason, Some("describe".into())),
                    ctx,
                )
            }
        };
        let registry = self.context.registry.clone();
        let open = self.context.gate.open_for_play(&name.app);
        async move {
            if !open {
                return None;
            }
            let stream = registry.send(FindStream { name }).await.ok().flatten()?;
            stream
                .send(GetStreamInfo)
                .await
                .ok()
                .filter(|info| !info.private)
        }
        .into_actor(self)
        .map(move |info, session, ctx| session.send(&describe(requested, info), ctx))
        .spawn(ctx);
    }

    fn signal(
        &mut self,
        stream_id: &str,
        signal: ViewerSignal,
        ctx: &mut ws::WebsocketContext<Self>,
    ) {
        match self.streams.get(stream_id) {
            Some(viewer) => viewer.do_send(signal),
            None => self.error(
                ProtocolError::new(
                    "unknown_stream",
                    format!("no stream '{stream_id}' in this session"),
                    Some(stream_id.to_string()),
                ),
                ctx,
            ),
        }
    }
}

impl Actor for WsSession {
    type Context = ws::WebsocketContext<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        debug!(session = %self.id, peer = %self.address, "signalling socket opened");
        let timeout = Duration::from_millis(self.context.webrtc.settings.keepalive_timeout_ms);
        ctx.run_interval(timeout / 3, move |session, ctx| {
            if session.last_heard.elapsed() > timeout {
                session.close(SessionStatus::Disconnected, "keepalive timeout", ctx);
            } else {
                ctx.ping(b"");
            }
        });
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        for (_, viewer) in self.streams.drain() {
            viewer.do_send(ViewerSignal::Stop("session closed".into()));
        }
        if let Some(client) = &self.client {
            self.context
                .gate
                .notify(Notice::Disconnect, client, None, "session closed");
        }
        debug!(session = %self.id, peer = %self.address, "signalling socket closed");
    }
}

impl StreamHandler<Result<ws::Message, ws::ProtocolError>> for WsSession {
    fn handle(&mut self, msg: Result<ws::Message, ws::ProtocolError>, ctx: &mut Self::Context) {
        self.last_heard = Instant::now();
        match msg {
            Ok(ws::Message::Text(text)) => self.on_text(&text, ctx),
            Ok(ws::Message::Binary(_)) => self.error(
                ProtocolError::new(
                    "bad_request",
                    "binary frames are not part of the signalling protocol",
                    None,
                ),
                ctx,
            ),
            Ok(ws::Message::Ping(payload)) => ctx.pong(&payload),
            Ok(ws::Message::Pong(_)) | Ok(ws::Message::Nop) => {}
            Ok(ws::Message::Continuation(_)) => self.error(
                ProtocolError::new("bad_request", "fragmented messages are not supported", None),
                ctx,
            ),
            Ok(ws::Message::Close(_)) => {
                self.close(SessionStatus::Disconnected, "client closed the socket", ctx)
            }
            Err(e) => self.close(
                SessionStatus::Failed,
                &format!("WebSocket protocol error: {e}"),
                ctx,
            ),
        }
    }

    fn finished(&mut self, ctx: &mut Self::Context) {
        if !self.closing {
            info!(session = %self.id, peer = %self.address, "signalling socket gone");
        }
        ctx.stop();
    }
}

impl Handler<ToClient> for WsSession {
    type Result = ();

    fn handle(&mut self, msg: ToClient, ctx: &mut Self::Context) {
        if let ServerMessage::Status {
            stream_id, status, ..
        } = &msg.0
        {
            if status.is_final() {
                self.streams.remove(stream_id);
            }
        }
        if !self.closing {
            self.send(&msg.0, ctx);
        }
    }
}

/// The `description` of a stream (`None`: no such stream).
fn describe(name: String, info: Option<StreamInfo>) -> ServerMessage {
    let Some(info) = info else {
        return ServerMessage::Description {
            name,
            status: "NOT_FOUND",
            video: None,
            audio: None,
        };
    };
    let video = info.video.map(|v| {
        serde_json::json!({
            "codec": v.codec,
            "width": v.width,
            "height": v.height,
            "profile": v.profile,
            "bFrames": v.b_frames.unwrap_or(false),
        })
    });
    let audio = info.audio.map(|a| {
        serde_json::json!({
            "codec": a.codec,
            "sampleRate": a.sample_rate,
            "channels": a.channels,
        })
    });
    ServerMessage::Description {
        name,
        status: info.status,
        video,
        audio,
    }
}
