//! Registry actor: the control plane's directory. Maps stream names to Stream actors, camera
//! URLs to RTSP pulls and `vod-live` names to file loops, creates them on first use and removes
//! them when they end. Never touches a frame.
//!
//! Invariants: at most one Stream instance per name is registered; a stream stops only after
//! the registry removed it, so a lookup never returns a stream that will not answer. At most
//! one pull per camera key (normalised URL with credentials): every viewer of a camera shares
//! one RTSP connection.

use crate::access::Gate;
use crate::messages::*;
use crate::rtsp::RtspPull;
use crate::stream::Stream;
use crate::vod::FileLoop;
use actix::prelude::*;
use mediarouter_core::camera::CameraUrl;
use mediarouter_core::media::StreamName;
use mediarouter_core::settings::{RtspSettings, StreamSettings, VodSettings};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Application of camera streams that have no alias.
pub const CAMERA_APP: &str = "rtsp";

struct PullEntry {
    instance: u64,
    pull: Addr<RtspPull>,
    stream: StreamName,
}

pub struct Registry {
    settings: Arc<StreamSettings>,
    gate: Arc<Gate>,
    rtsp: Arc<RtspSettings>,
    default_app: String,
    vod: Arc<VodSettings>,
    streams: BTreeMap<StreamName, (u64, Addr<Stream>)>,
    /// Files played as live streams, by stream name.
    file_loops: BTreeMap<StreamName, Addr<FileLoop>>,
    pulls: BTreeMap<String, PullEntry>,
    next_instance: u64,
    /// Shutting down: no new camera pulls.
    closing: bool,
}

impl Registry {
    pub fn new(
        settings: Arc<StreamSettings>,
        gate: Arc<Gate>,
        rtsp: Arc<RtspSettings>,
        default_app: String,
        vod: Arc<VodSettings>,
    ) -> Self {
        Registry {
            settings,
            gate,
            rtsp,
            default_app,
            vod,
            streams: BTreeMap::new(),
            file_loops: BTreeMap::new(),
            pulls: BTreeMap::new(),
            next_instance: 1,
            closing: false,
        }
    }

    fn instance(&mut self) -> u64 {
        self.next_instance += 1;
        self.next_instance
    }
}

impl Actor for Registry {
    type Context = Context<Self>;
}

impl Handler<FindOrCreateStream> for Registry {
    type Result = MessageResult<FindOrCreateStream>;

    fn handle(&mut self, msg: FindOrCreateStream, ctx: &mut Context<Self>) -> Self::Result {
        if let Some((_, addr)) = self.streams.get(&msg.name) {
            if addr.connected() {
                return MessageResult(addr.clone());
            }
        }
        let instance = self.instance();
        let stream = Stream::new(
            msg.name.clone(),
            instance,
            ctx.address(),
            Arc::clone(&self.settings),
            Arc::clone(&self.gate),
        )
        .start();
        self.streams.insert(msg.name, (instance, stream.clone()));
        MessageResult(stream)
    }
}

impl Handler<FindStream> for Registry {
    type Result = Option<Addr<Stream>>;

    fn handle(&mut self, msg: FindStream, _: &mut Context<Self>) -> Self::Result {
        self.streams.get(&msg.name).map(|(_, addr)| addr.clone())
    }
}

impl Handler<ListStreams> for Registry {
    type Result = MessageResult<ListStreams>;

    fn handle(&mut self, _: ListStreams, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.streams.values().map(|(_, a)| a.clone()).collect())
    }
}

impl Handler<StreamIdle> for Registry {
    type Result = bool;

    fn handle(&mut self, msg: StreamIdle, _: &mut Context<Self>) -> bool {
        match self.streams.get(&msg.name) {
            Some((instance, _)) if *instance == msg.instance => {
                self.streams.remove(&msg.name);
                true
            }
            // Not (or no longer) the registered instance: it has no business running.
            _ => true,
        }
    }
}

impl Handler<PlayTarget> for Registry {
    type Result = ResponseActFuture<Self, Result<StreamName, StreamError>>;

    fn handle(&mut self, msg: PlayTarget, _: &mut Context<Self>) -> Self::Result {
        let requested = msg.requested;
        let file_as_live = requested.app == self.vod.live_app
            || (requested.app == self.vod.app && msg.protocol != Protocol::Rtmp);
        if !file_as_live {
            return Box::pin(fut::ready(Ok(requested)));
        }
        let name = StreamName::new(self.vod.live_app.clone(), requested.name.clone());
        if self.file_loops.get(&name).is_some_and(Addr::connected) {
            return Box::pin(fut::ready(Ok(name)));
        }
        let root = std::path::PathBuf::from(&self.vod.root);
        Box::pin(crate::vod::open(root, requested.name).into_actor(self).map(
            move |opened, registry, ctx| {
                let file = opened.map_err(|e| StreamError::NotFound(e.to_string()))?;
                // Another player may have started it while this one opened the file.
                if !registry.file_loops.get(&name).is_some_and(Addr::connected) {
                    let file_loop = FileLoop::new(name.clone(), file, ctx.address()).start();
                    registry.file_loops.insert(name.clone(), file_loop);
                }
                Ok(name)
            },
        ))
    }
}

impl Handler<PulledAs> for Registry {
    type Result = Option<StreamName>;

    fn handle(&mut self, msg: PulledAs, _: &mut Context<Self>) -> Self::Result {
        self.pulls
            .get(msg.camera.key())
            .filter(|e| e.pull.connected())
            .map(|e| e.stream.clone())
    }
}

impl Handler<EnsurePull> for Registry {
    type Result = Result<PullHandle, PullError>;

    fn handle(&mut self, msg: EnsurePull, ctx: &mut Context<Self>) -> Self::Result {
        if self.closing {
            return Err(PullError::ShuttingDown);
        }
        let key = msg.camera.key().to_string();
        if let Some(entry) = self.pulls.get(&key).filter(|e| e.pull.connected()) {
            if !msg.on_demand {
                return Err(PullError::AlreadyPulled(msg.camera.masked().to_string()));
            }
            return Ok(PullHandle {
                pull: entry.pull.clone(),
                stream: entry.stream.clone(),
            });
        }
        let stream = match &msg.alias {
            Some(alias) => StreamName::new(self.default_app.clone(), alias.clone()),
            None => {
                // Cameras that differ only in credentials mask alike: number the later ones.
                let masked = msg.camera.masked();
                let mut name = StreamName::new(CAMERA_APP, masked);
                let mut n = 1;
                while self.pulls.values().any(|e| e.stream == name) {
                    n += 1;
                    name = StreamName::new(CAMERA_APP, format!("{masked}#{n}"));
                }
                name
            }
        };
        let instance = self.instance();
        let pull = RtspPull::new(
            instance,
            msg.camera,
            stream.clone(),
            msg.on_demand,
            ctx.address(),
            Arc::clone(&self.rtsp),
        )
        .start();
        self.pulls.insert(
            key,
            PullEntry {
                instance,
                pull: pull.clone(),
                stream: stream.clone(),
            },
        );
        Ok(PullHandle { pull, stream })
    }
}

impl Handler<ListPulls> for Registry {
    type Result = MessageResult<ListPulls>;

    fn handle(&mut self, _: ListPulls, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.pulls.values().map(|e| e.pull.clone()).collect())
    }
}

impl Handler<ClosePulls> for Registry {
    type Result = MessageResult<ClosePulls>;

    fn handle(&mut self, _: ClosePulls, _: &mut Context<Self>) -> Self::Result {
        self.closing = true;
        MessageResult(self.pulls.values().map(|e| e.pull.clone()).collect())
    }
}

impl Handler<FindPull> for Registry {
    type Result = Option<Addr<RtspPull>>;

    fn handle(&mut self, msg: FindPull, _: &mut Context<Self>) -> Self::Result {
        self.pulls.get(&msg.key).map(|e| e.pull.clone())
    }
}

impl Handler<PullStopped> for Registry {
    type Result = ();

    fn handle(&mut self, msg: PullStopped, _: &mut Context<Self>) {
        if self
            .pulls
            .get(&msg.key)
            .is_some_and(|e| e.instance == msg.instance)
        {
            self.pulls.remove(&msg.key);
        }
    }
}

/// Finds or creates the stream and runs `op` on it, asking again while it is retiring.
/// Returns `op`'s answer with the stream that gave it.
pub async fn with_stream<T, F, Fut>(
    registry: &Addr<Registry>,
    name: &StreamName,
    op: F,
) -> Result<(T, Addr<Stream>), StreamError>
where
    F: Fn(Addr<Stream>) -> Fut,
    Fut: std::future::Future<Output = Result<Result<T, StreamError>, MailboxError>>,
{
    for _ in 0..20 {
        let Ok(stream) = registry
            .send(FindOrCreateStream { name: name.clone() })
            .await
        else {
            return Err(StreamError::Retired);
        };
        match op(stream.clone()).await {
            Ok(Err(StreamError::Retired)) | Err(_) => {
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
            Ok(result) => return result.map(|answer| (answer, stream)),
        }
    }
    Err(StreamError::Retired)
}

/// A publisher's way in: takes `name` with `request` (refused while someone else publishes it).
/// Returns the grant and the stream.
pub async fn publish_stream(
    registry: Addr<Registry>,
    name: StreamName,
    request: Publish,
) -> Result<(PublishGrant, Addr<Stream>), StreamError> {
    with_stream(&registry, &name, |stream| {
        let request = request.clone();
        async move { stream.send(request).await }
    })
    .await
}

/// A player's way in: for a camera URL, its pull (started on demand, one per URL) first names
/// the stream; then the player subscribes to it. Returns the subscription, the stream and its
/// name.
pub async fn subscribe_player(
    registry: &Addr<Registry>,
    requested: StreamName,
    camera: Option<CameraUrl>,
    request: Subscribe,
) -> Result<(Subscription, Addr<Stream>, StreamName), StreamError> {
    let key = match camera {
        Some(camera) => match registry
            .send(EnsurePull {
                camera,
                alias: None,
                on_demand: true,
            })
            .await
        {
            Ok(Ok(handle)) => handle.stream,
            // On-demand pulls are never refused; only a registry that is gone fails here.
            _ => return Err(StreamError::Retired),
        },
        None => registry
            .send(PlayTarget {
                requested,
                protocol: request.protocol,
            })
            .await
            .map_err(|_| StreamError::Retired)??,
    };
    let (subscription, stream) = with_stream(registry, &key, |stream| {
        let request = request.clone();
        async move { stream.send(request).await }
    })
    .await?;
    Ok((subscription, stream, key))
}
