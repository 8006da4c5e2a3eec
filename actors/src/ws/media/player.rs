//! The control side of one media WebSocket: an actor that attaches the player to its stream
//! (pulling a camera on demand, starting a file loop), asks for AAC audio, hands the media to
//! the [`MediaBody`](super::body::MediaBody), reads the client's frames and answers its pings,
//! and ends the playback with a final status.
//!
//! Invariants: nothing is sent but statuses until the application allowed the connection and
//! the play; the stream learns of the player's departure (`Unsubscribe`) whatever ends it; a
//! viewer whose body has had media it could not send for `stream.player_max_lag_ms` is told
//! and, if its socket does not take even that, cut off at the TCP level; a client silent for
//! `websocket.keepalive_timeout_ms` (no pong) is closed.

use super::body::{BodyCommand, PlayFeed, Progress};
use super::{status_json, MediaContext};
use crate::access::{Attach, Pass};
use crate::messages::*;
use crate::stream::Stream;
use actix::prelude::*;
use actix_web_actors::ws::{Frame, ProtocolError};
use mediarouter_core::access::Notice;
use mediarouter_core::camera::CameraUrl;
use mediarouter_core::media::{Codec, StreamName};
use mediarouter_core::webrtc::signalling::StreamStatus;
use std::net::Shutdown;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tracing::{debug, info};

/// How often the watchdog looks at the body's progress.
const WATCHDOG_INTERVAL: Duration = Duration::from_millis(500);
/// After its final status, how long a player's socket gets to take it before it is cut.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

pub struct MediaPlayer {
    peer: PeerId,
    name: StreamName,
    camera: Option<CameraUrl>,
    address: String,
    context: Arc<MediaContext>,
    pass: Pass,
    /// The application allowed the connection: its backend hears the disconnect.
    connected: bool,
    body: mpsc::UnboundedSender<BodyCommand>,
    progress: Arc<Progress>,
    /// A second handle on the connection's socket: the only way to end a connection whose
    /// peer stopped reading (the HTTP layer then never pulls the body again).
    socket: Option<std::net::TcpStream>,
    stream: Option<Addr<Stream>>,
    last_heard: Instant,
    finished: bool,
}

pub struct PlayerSpec {
    pub peer: PeerId,
    /// Asked (connect, then play) before the player subscribes.
    pub pass: Pass,
    pub name: StreamName,
    pub camera: Option<CameraUrl>,
    pub address: String,
    pub context: Arc<MediaContext>,
    pub body: mpsc::UnboundedSender<BodyCommand>,
    pub progress: Arc<Progress>,
    pub socket: Option<std::net::TcpStream>,
}

impl MediaPlayer {
    pub fn new(spec: PlayerSpec) -> Self {
        MediaPlayer {
            peer: spec.peer,
            pass: spec.pass,
            connected: false,
            name: spec.name,
            camera: spec.camera,
            address: spec.address,
            context: spec.context,
            body: spec.body,
            progress: spec.progress,
            socket: spec.socket,
            stream: None,
            last_heard: Instant::now(),
            finished: false,
        }
    }

    fn send(&self, command: BodyCommand) {
        // The body gone means the connection is gone; the actor stops on its own then.
        let _ = self.body.send(command);
    }

    /// Ends the playback with a final status; the socket is cut if it does not take it.
    fn finish(&mut self, status: StreamStatus, reason: String, ctx: &mut Context<Self>) {
        if self.finished {
            return;
        }
        self.finished = true;
        info!(stream = %self.name, peer = %self.address, status = ?status, %reason, "WebSocket player ended");
        let last = status_json(&self.name, status, Some(&reason), None);
        self.send(BodyCommand::Close {
            last: Some(last),
            reason,
        });
        self.stop_after_grace(ctx);
    }

    /// Gives the socket `CLOSE_GRACE` to take what is queued, then cuts it and stops.
    fn stop_after_grace(&self, ctx: &mut Context<Self>) {
        ctx.run_later(CLOSE_GRACE, |player, ctx| {
            player.cut();
            ctx.stop();
        });
    }

    /// Ends the TCP connection under the HTTP layer.
    fn cut(&mut self) {
        if let Some(socket) = self.socket.take() {
            let _ = socket.shutdown(Shutdown::Both);
        }
    }

    fn on_subscribed(&mut self, subscription: Subscription, stream: Addr<Stream>, key: StreamName) {
        info!(stream = %key, peer = %self.address, publishing = subscription.publishing, "WebSocket player attached");
        self.name = key;
        // MSE takes AAC: Opus (WebRTC publishers) and G.711 (cameras) are transcoded.
        stream.do_send(NeedAudio {
            peer: self.peer,
            codec: Codec::Aac,
            takes: |codec| codec == Codec::Aac,
        });
        self.stream = Some(stream);
        self.send(BodyCommand::Play(Box::new(PlayFeed {
            snapshot: subscription.snapshot,
            receiver: subscription.receiver,
            hub: subscription.hub,
            bytes_out: subscription.bytes_out,
        })));
    }

    /// Looks at the body's progress and the client's liveness.
    fn watch(&mut self, ctx: &mut Context<Self>) {
        if self.finished {
            return;
        }
        let max_lag = Duration::from_millis(self.context.max_lag_ms);
        if let Some(behind) = self.progress.behind().filter(|b| *b > max_lag) {
            info!(stream = %self.name, peer = %self.address, behind_ms = behind.as_millis() as u64,
                "disconnecting WebSocket player that stays behind");
            self.finish(
                StreamStatus::Failed,
                format!("not enough bandwidth: behind for {} ms", behind.as_millis()),
                ctx,
            );
            return;
        }
        let keepalive = Duration::from_millis(self.context.settings.keepalive_timeout_ms);
        if self.last_heard.elapsed() > keepalive {
            self.finish(StreamStatus::Failed, "keepalive timeout".into(), ctx);
        }
    }
}

impl MediaPlayer {
    /// Asks the application for the play, then attaches to the stream.
    fn subscribe(&mut self, ctx: &mut Context<Self>) {
        if self.finished {
            return;
        }
        let registry = self.context.registry.clone();
        let who = Attach {
            peer: self.peer,
            protocol: Protocol::Websocket,
            address: self.address.clone(),
        };
        let (pass, control) = (self.pass.clone(), ctx.address().recipient());
        let (requested, camera) = (self.name.clone(), self.camera.clone());
        async move { pass.play(&registry, requested, camera, who, control).await }
            .into_actor(self)
            .map(|result, player, ctx| match result {
                Ok((subscription, stream, key)) if !player.finished => {
                    player.on_subscribed(subscription, stream, key)
                }
                Ok((_, stream, _)) => stream.do_send(Unsubscribe { peer: player.peer }),
                Err(StreamError::Denied(reason)) => {
                    player.finish(StreamStatus::Failed, reason, ctx)
                }
                Err(e) => player.finish(
                    StreamStatus::Failed,
                    format!("stream unavailable: {e}"),
                    ctx,
                ),
            })
            .spawn(ctx);
    }
}

impl Actor for MediaPlayer {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        let pending = status_json(&self.name, StreamStatus::Pending, None, None);
        self.send(BodyCommand::Text(pending));
        // The body goes when the connection goes: so does the player.
        let body = self.body.clone();
        async move { body.closed().await }
            .into_actor(self)
            .map(|_, player, ctx| {
                debug!(stream = %player.name, peer = %player.address, "media WebSocket closed");
                ctx.stop();
            })
            .spawn(ctx);
        ctx.run_interval(WATCHDOG_INTERVAL, |player, ctx| player.watch(ctx));
        let ping_every = Duration::from_millis(self.context.settings.keepalive_timeout_ms / 3);
        ctx.run_interval(ping_every.max(Duration::from_millis(100)), |player, _| {
            player.send(BodyCommand::Ping)
        });

        let pass = self.pass.clone();
        async move { pass.gate.connect(&pass.client).await }
            .into_actor(self)
            .map(|decision, player, ctx| match decision {
                Ok(()) => {
                    player.connected = true;
                    player.subscribe(ctx);
                }
                Err(reason) => player.finish(StreamStatus::Failed, reason, ctx),
            })
            .spawn(ctx);
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        if let Some(stream) = self.stream.take() {
            stream.do_send(Unsubscribe { peer: self.peer });
        }
        if self.connected {
            self.pass.gate.notify(
                Notice::Disconnect,
                &self.pass.client,
                None,
                "connection closed",
            );
        }
        self.cut();
    }
}

impl Handler<PlayerCommand> for MediaPlayer {
    type Result = ();

    fn handle(&mut self, msg: PlayerCommand, ctx: &mut Context<Self>) {
        // The stream already forgot this player.
        self.stream = None;
        let (status, reason) = msg.browser_status();
        self.finish(status, reason, ctx);
    }
}

/// Frames from the client: pongs and pings keep it alive, `{"type":"stop"}` and a close end
/// the playback; nothing else is expected and nothing else changes anything.
impl StreamHandler<Result<Frame, ProtocolError>> for MediaPlayer {
    fn handle(&mut self, frame: Result<Frame, ProtocolError>, ctx: &mut Context<Self>) {
        self.last_heard = Instant::now();
        match frame {
            Ok(Frame::Ping(payload)) => self.send(BodyCommand::Pong(payload)),
            Ok(Frame::Text(text)) if is_stop(&text) => {
                self.finish(StreamStatus::Stopped, "stopped by client".into(), ctx)
            }
            Ok(Frame::Close(_)) => {
                self.finished = true;
                self.send(BodyCommand::Close {
                    last: None,
                    reason: "client closed".into(),
                });
            }
            Ok(_) => {}
            Err(e) => self.finish(
                StreamStatus::Failed,
                format!("WebSocket protocol error: {e}"),
                ctx,
            ),
        }
    }

    fn finished(&mut self, ctx: &mut Context<Self>) {
        // The client's side ended: nobody reads what would follow.
        if !self.finished {
            self.finished = true;
            self.send(BodyCommand::Close {
                last: None,
                reason: "client gone".into(),
            });
        }
        self.stop_after_grace(ctx);
    }
}

fn is_stop(text: &[u8]) -> bool {
    serde_json::from_slice::<serde_json::Value>(text)
        .ok()
        .and_then(|v| v.get("type").and_then(|t| t.as_str()).map(|t| t == "stop"))
        .unwrap_or(false)
}
