//! RTSP pull actor: one per camera URL. Publishes the camera into its stream like any
//! publisher, reconnects with backoff when the camera is lost, and reports its state to REST.
//!
//! The retina session runs as a future of this actor and pushes frames straight into the
//! stream's hub (no per-frame messages). A reconnect starts a new publish epoch on the same
//! grant, so players stay attached and resume on the next keyframe.
//!
//! Invariants: the camera password is used only for the RTSP session, never logged or reported
//! (every log line and REST answer uses the masked URL); an on-demand pull stops when its
//! viewers are gone or when its camera cannot be reached in time; a REST pull lives until
//! terminated.

use crate::messages::*;
use crate::registry::{publish_stream, Registry};
use crate::stream::{MediaHub, Stream};
use actix::prelude::*;
use bytes::Bytes;
use futures_util::StreamExt;
use mediarouter_core::camera::CameraUrl;
use mediarouter_core::codec::aac::AudioSpecificConfig;
use mediarouter_core::codec::avc::AvcConfig;
use mediarouter_core::media::{Codec, Frame, StreamName, TrackConfig, TrackInfo};
use mediarouter_core::settings::RtspSettings;
use retina::client::{
    Credentials, PlayOptions, Session, SessionOptions, SetupOptions, TcpTransportOptions,
    Transport, UdpTransportOptions,
};
use retina::codec::{CodecItem, FrameFormat, ParametersRef};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::oneshot;
use tracing::{info, warn};

/// The first line of a retina error: the rest is connection detail for debugging.
fn short(e: impl std::fmt::Display) -> String {
    let text = e.to_string();
    text.lines().next().unwrap_or_default().trim().to_string()
}

/// Errors in a row tolerated from one track when `fail_on_track_error` is off.
const MAX_TRACK_ERRORS: u32 = 50;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PullStatus {
    Connecting,
    Playing,
    Reconnecting,
}

impl PullStatus {
    fn as_str(self) -> &'static str {
        match self {
            PullStatus::Connecting => "CONNECTING",
            PullStatus::Playing => "PLAYING",
            PullStatus::Reconnecting => "RECONNECTING",
        }
    }
}

pub struct RtspPull {
    instance: u64,
    camera: CameraUrl,
    stream_name: StreamName,
    on_demand: bool,
    registry: Addr<Registry>,
    settings: Arc<RtspSettings>,
    stream: Option<Addr<Stream>>,
    hub: Option<(Arc<MediaHub>, u64)>,
    status: PullStatus,
    tracks: Vec<TrackReport>,
    connected_since: Option<SystemTime>,
    ever_played: bool,
    reconnects: u64,
    failures_in_row: u32,
    last_error: Option<String>,
    first_attempt: Option<Result<(), String>>,
    waiters: Vec<oneshot::Sender<Result<PullInfo, String>>>,
    session: Option<SpawnHandle>,
    viewers: usize,
    idle_since: Option<Instant>,
    created: Instant,
    stopping: bool,
}

/// The camera answered PLAY with these tracks.
#[derive(Message)]
#[rtype(result = "()")]
struct CameraPlaying {
    tracks: Vec<TrackReport>,
}

impl RtspPull {
    pub fn new(
        instance: u64,
        camera: CameraUrl,
        stream_name: StreamName,
        on_demand: bool,
        registry: Addr<Registry>,
        settings: Arc<RtspSettings>,
    ) -> Self {
        RtspPull {
            instance,
            camera,
            stream_name,
            on_demand,
            registry,
            settings,
            stream: None,
            hub: None,
            status: PullStatus::Connecting,
            tracks: Vec::new(),
            connected_since: None,
            ever_played: false,
            reconnects: 0,
            failures_in_row: 0,
            last_error: None,
            first_attempt: None,
            waiters: Vec::new(),
            session: None,
            viewers: 0,
            idle_since: None,
            created: Instant::now(),
            stopping: false,
        }
    }

    fn info(&self) -> PullInfo {
        PullInfo {
            uri: self.camera.masked().to_string(),
            name: self.stream_name.name.clone(),
            app: self.stream_name.app.clone(),
            status: self.status.as_str(),
            tracks: self.tracks.clone(),
            viewers: self.viewers,
            connected_since: self
                .connected_since
                .map(|t| humantime::format_rfc3339_seconds(t).to_string()),
            reconnects: self.reconnects,
            on_demand: self.on_demand,
            last_error: self.last_error.clone(),
        }
    }

    fn settle_first_attempt(&mut self, result: Result<(), String>) {
        if self.first_attempt.is_some() {
            return;
        }
        self.first_attempt = Some(result.clone());
        let answer = result.map(|()| self.info());
        for waiter in self.waiters.drain(..) {
            let _ = waiter.send(answer.clone());
        }
    }

    /// Ends the pull: the stream is terminated with `player_code` for its players.
    fn stop(&mut self, reason: &str, player_code: &'static str, ctx: &mut Context<Self>) {
        if self.stopping {
            return;
        }
        self.stopping = true;
        info!(camera = %self.camera.masked(), stream = %self.stream_name, reason, "RTSP pull stopped");
        self.settle_first_attempt(Err(reason.to_string()));
        if let Some(handle) = self.session.take() {
            ctx.cancel_future(handle);
        }
        if let Some(stream) = self.stream.take() {
            stream.do_send(TerminateStream {
                reason: reason.to_string(),
                player_code,
            });
        }
        ctx.stop();
    }

    fn connect(&mut self, ctx: &mut Context<Self>) {
        if self.stopping {
            return;
        }
        let Some((hub, token)) = self.hub.clone() else {
            return;
        };
        let camera = self.camera.clone();
        let settings = Arc::clone(&self.settings);
        let me = ctx.address();
        // The stream began the first epoch when it granted the publish; each reconnect begins
        // the next one, so players rebase their timestamps.
        let new_epoch = self.ever_played;
        let run = run_camera(camera, settings, hub, token, new_epoch, me);
        let handle = ctx.spawn(run.into_actor(self).map(|result, pull, ctx| {
            pull.session = None;
            pull.session_ended(result, ctx);
        }));
        self.session = Some(handle);
    }

    fn session_ended(&mut self, result: Result<(), String>, ctx: &mut Context<Self>) {
        if self.stopping {
            return;
        }
        let reason = result.err().unwrap_or_else(|| "session ended".into());
        warn!(camera = %self.camera.masked(), stream = %self.stream_name, reason = %reason, "camera lost or unreachable");
        self.last_error = Some(reason.clone());
        self.settle_first_attempt(Err(reason));
        if self.status == PullStatus::Playing {
            if let Some((hub, token)) = &self.hub {
                // Viewers hear UnpublishNotify and stay attached for the reconnect.
                hub.interrupt(*token);
            }
        }
        self.status = PullStatus::Reconnecting;
        self.connected_since = None;
        self.failures_in_row += 1;
        let delay = backoff(
            self.settings.reconnect_min_ms,
            self.settings.reconnect_max_ms,
            self.failures_in_row,
        );
        ctx.run_later(delay, |pull, ctx| {
            pull.reconnects += 1;
            pull.connect(ctx);
        });
    }

    /// Once a second: viewer count, on-demand idle stop and on-demand give-up.
    fn watch(&mut self, ctx: &mut Context<Self>) {
        if self.on_demand && !self.ever_played {
            let limit = Duration::from_millis(self.settings.on_demand_timeout_ms);
            if self.created.elapsed() > limit {
                let reason = format!(
                    "camera unreachable: {}",
                    self.last_error.as_deref().unwrap_or("no answer")
                );
                self.stop(&reason, "NetStream.Play.Failed", ctx);
                return;
            }
        }
        let Some(stream) = self.stream.clone() else {
            return;
        };
        stream
            .send(GetStreamInfo)
            .into_actor(self)
            .map(|info, pull, ctx| {
                let Ok(info) = info else {
                    pull.stop("stream gone", "NetStream.Play.Stop", ctx);
                    return;
                };
                pull.viewers = info.players.total;
                if !pull.on_demand || pull.viewers > 0 {
                    pull.idle_since = None;
                    return;
                }
                let since = *pull.idle_since.get_or_insert_with(Instant::now);
                if since.elapsed() > Duration::from_millis(pull.settings.idle_stop_ms) {
                    pull.stop("no viewers left", "NetStream.Play.Stop", ctx);
                }
            })
            .spawn(ctx);
    }
}

impl Actor for RtspPull {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        info!(camera = %self.camera.masked(), stream = %self.stream_name, on_demand = self.on_demand, "RTSP pull starting");
        ctx.run_interval(Duration::from_secs(1), |pull, ctx| pull.watch(ctx));
        let registry = self.registry.clone();
        let name = self.stream_name.clone();
        let request = Publish {
            peer: PeerId::next(),
            protocol: Protocol::Rtsp,
            address: self.camera.masked().to_string(),
            query: Default::default(),
            control: ctx.address().recipient(),
            client: None,
            private: false,
            holder: None,
        };
        publish_stream(registry, name, request)
            .into_actor(self)
            .map(|result, pull, ctx| match result {
                Ok((grant, stream)) => {
                    pull.stream = Some(stream);
                    pull.hub = Some((grant.hub, grant.token));
                    pull.connect(ctx);
                }
                Err(e) => pull.stop(
                    &format!("cannot publish the camera: {e}"),
                    "NetStream.Play.Failed",
                    ctx,
                ),
            })
            .wait(ctx);
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        self.registry.do_send(PullStopped {
            key: self.camera.key().to_string(),
            instance: self.instance,
        });
    }
}

impl Handler<CameraPlaying> for RtspPull {
    type Result = ();

    fn handle(&mut self, msg: CameraPlaying, _: &mut Context<Self>) {
        info!(camera = %self.camera.masked(), stream = %self.stream_name, tracks = msg.tracks.len(), "camera playing");
        self.status = PullStatus::Playing;
        self.tracks = msg.tracks;
        self.connected_since = Some(SystemTime::now());
        self.ever_played = true;
        self.failures_in_row = 0;
        self.settle_first_attempt(Ok(()));
    }
}

impl Handler<GetPullInfo> for RtspPull {
    type Result = MessageResult<GetPullInfo>;

    fn handle(&mut self, _: GetPullInfo, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.info())
    }
}

impl Handler<AwaitFirstAttempt> for RtspPull {
    type Result = ResponseFuture<Result<PullInfo, String>>;

    fn handle(&mut self, _: AwaitFirstAttempt, _: &mut Context<Self>) -> Self::Result {
        if let Some(result) = self.first_attempt.clone() {
            let answer = result.map(|()| self.info());
            return Box::pin(async move { answer });
        }
        let (tx, rx) = oneshot::channel();
        self.waiters.push(tx);
        Box::pin(async move {
            rx.await
                .unwrap_or_else(|_| Err("pull stopped before the camera answered".into()))
        })
    }
}

impl Handler<StopPull> for RtspPull {
    type Result = ();

    fn handle(&mut self, msg: StopPull, ctx: &mut Context<Self>) {
        self.stop(&msg.reason, "NetStream.Play.Stop", ctx);
    }
}

impl Handler<PublisherCommand> for RtspPull {
    type Result = ();

    fn handle(&mut self, msg: PublisherCommand, ctx: &mut Context<Self>) {
        match msg {
            PublisherCommand::Stop { reason } => {
                // The stream is already ending; do not terminate it a second time.
                self.stream = None;
                self.stop(&reason, "NetStream.Play.Stop", ctx);
            }
            // RTSP has no keyframe request; the camera's GOP length rules.
            PublisherCommand::RequestKeyframe | PublisherCommand::Message { .. } => {}
        }
    }
}

/// Delay before reconnect attempt `failures` (1-based): min doubling to max, ±20 % jitter.
fn backoff(min_ms: u64, max_ms: u64, failures: u32) -> Duration {
    let doubled = min_ms.saturating_mul(1u64 << failures.saturating_sub(1).min(20));
    let base = doubled.min(max_ms);
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let jitter_range = base / 5;
    let jitter = if jitter_range == 0 {
        0
    } else {
        u64::from(nanos) % (2 * jitter_range)
    };
    Duration::from_millis(base - jitter_range + jitter)
}

fn codec_of(media: &str, encoding: &str) -> Option<Codec> {
    match (media, encoding) {
        ("video", "h264") => Some(Codec::H264),
        ("audio", "mpeg4-generic") => Some(Codec::Aac),
        ("audio", "pcma") => Some(Codec::Pcma),
        ("audio", "pcmu") => Some(Codec::Pcmu),
        _ => None,
    }
}

/// The codec configuration a track's parameters describe, when there is one.
fn track_config(
    codec: Codec,
    parameters: Option<ParametersRef<'_>>,
    clock_rate: u32,
    channels: Option<u16>,
    dts_us: i64,
) -> Option<TrackConfig> {
    let (data, info) = match (codec, parameters) {
        (Codec::H264, Some(ParametersRef::Video(v))) => {
            let data = Bytes::copy_from_slice(v.extra_data());
            let info = AvcConfig::parse(&data)
                .map(|c| c.track_info())
                .unwrap_or_default();
            (data, info)
        }
        (Codec::Aac, Some(ParametersRef::Audio(a))) => {
            let data = Bytes::copy_from_slice(a.extra_data());
            let info = AudioSpecificConfig::parse(&data)
                .map(|c| c.track_info())
                .unwrap_or_default();
            (data, info)
        }
        (Codec::Pcma | Codec::Pcmu, _) => (
            Bytes::new(),
            TrackInfo {
                sample_rate: Some(clock_rate),
                channels: Some(channels.unwrap_or(1).min(255) as u8),
                ..TrackInfo::default()
            },
        ),
        _ => return None,
    };
    Some(TrackConfig {
        codec,
        data,
        dts_us,
        info,
    })
}

/// One connection to the camera: DESCRIBE/SETUP/PLAY, then frames into the hub until the
/// camera is lost. Returns why it ended.
async fn run_camera(
    camera: CameraUrl,
    settings: Arc<RtspSettings>,
    hub: Arc<MediaHub>,
    token: u64,
    new_epoch: bool,
    pull: Addr<RtspPull>,
) -> Result<(), String> {
    let connect_timeout = Duration::from_millis(settings.connect_timeout_ms);
    let connect = async {
        let creds = camera.credentials().map(|(user, pass)| Credentials {
            username: user.to_string(),
            password: pass.to_string(),
        });
        let options = SessionOptions::default()
            .creds(creds)
            .user_agent(format!("mediarouter/{}", env!("CARGO_PKG_VERSION")));
        let mut session = Session::describe(camera.without_credentials().clone(), options)
            .await
            .map_err(short)?;
        let mut reports = Vec::new();
        let mut chosen: Vec<(usize, Codec, u32, Option<u16>)> = Vec::new();
        for (i, stream) in session.streams().iter().enumerate() {
            let codec = codec_of(stream.media(), stream.encoding_name());
            let channels = stream.channels().map(|c| c.get());
            reports.push(TrackReport {
                media: stream.media().to_string(),
                codec: codec
                    .map_or_else(|| stream.encoding_name().to_ascii_uppercase(), |c| c.name()),
                supported: codec.is_some(),
                clock_rate: Some(stream.clock_rate_hz()),
                channels,
            });
            let Some(codec) = codec else { continue };
            // One track per kind: the first video and the first audio.
            if chosen.iter().all(|(_, c, _, _)| c.track() != codec.track()) {
                chosen.push((i, codec, stream.clock_rate_hz(), channels));
            }
        }
        if chosen.is_empty() {
            let found: Vec<String> = reports
                .iter()
                .map(|t| format!("{} {}", t.media, t.codec))
                .collect();
            return Err(format!(
                "no supported track (camera offers: {})",
                found.join(", ")
            ));
        }
        let transport = match settings.transport.as_str() {
            "udp" => Transport::Udp(UdpTransportOptions::default()),
            _ => Transport::Tcp(TcpTransportOptions::default()),
        };
        for (i, ..) in &chosen {
            let options = SetupOptions::default()
                .transport(transport.clone())
                .frame_format(FrameFormat::MP4);
            session.setup(*i, options).await.map_err(short)?;
        }
        let playing = session
            .play(PlayOptions::default())
            .await
            .map_err(short)?
            .demuxed()
            .map_err(short)?;
        Ok((playing, reports, chosen))
    };
    let (mut session, reports, chosen) = tokio::time::timeout(connect_timeout, connect)
        .await
        .map_err(|_| {
            format!(
                "camera did not answer within {} ms",
                settings.connect_timeout_ms
            )
        })??;

    if new_epoch {
        hub.begin_publish(token);
    }
    for (i, codec, clock_rate, channels) in &chosen {
        let parameters = session.streams().get(*i).and_then(|s| s.parameters());
        if let Some(config) = track_config(*codec, parameters, *clock_rate, *channels, 0) {
            hub.push_config(token, config);
        }
    }
    pull.do_send(CameraPlaying { tracks: reports });

    let frame_timeout = Duration::from_millis(settings.frame_timeout_ms);
    let mut errors_in_row = 0u32;
    loop {
        let item = match tokio::time::timeout(frame_timeout, session.next()).await {
            Err(_) => {
                return Err(format!(
                    "camera sent nothing for {} ms",
                    settings.frame_timeout_ms
                ))
            }
            Ok(None) => return Err("camera closed the session".into()),
            Ok(Some(Err(e))) => {
                errors_in_row += 1;
                if settings.fail_on_track_error || errors_in_row > MAX_TRACK_ERRORS {
                    return Err(format!("track error: {}", short(e)));
                }
                warn!(camera = %camera.masked(), "track error, frame dropped: {}", short(e));
                continue;
            }
            Ok(Some(Ok(item))) => item,
        };
        errors_in_row = 0;
        let (stream_id, timestamp, keyframe, data, new_parameters) = match item {
            CodecItem::VideoFrame(f) => {
                let new_parameters = f.has_new_parameters();
                (
                    f.stream_id(),
                    f.timestamp(),
                    f.is_random_access_point(),
                    f.into_data(),
                    new_parameters,
                )
            }
            CodecItem::AudioFrame(f) => {
                (f.stream_id(), f.timestamp(), true, f.data().to_vec(), false)
            }
            _ => continue,
        };
        let Some((_, codec, clock_rate, channels)) = chosen.iter().find(|(i, ..)| *i == stream_id)
        else {
            continue;
        };
        let dts_us =
            timestamp.elapsed().saturating_mul(1_000_000) / i64::from(timestamp.clock_rate().get());
        if new_parameters {
            let parameters = session
                .streams()
                .get(stream_id)
                .and_then(|s| s.parameters());
            if let Some(config) = track_config(*codec, parameters, *clock_rate, *channels, dts_us) {
                hub.push_config(token, config);
            }
        }
        hub.push_frame(
            token,
            Frame::new(*codec, dts_us, 0, keyframe, Bytes::from(data)),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_the_cap_with_bounded_jitter() {
        for (failures, base) in [
            (1u32, 1000u64),
            (2, 2000),
            (3, 4000),
            (6, 30000),
            (40, 30000),
        ] {
            let d = backoff(1000, 30000, failures).as_millis() as u64;
            assert!(
                d >= base * 8 / 10 && d <= base * 12 / 10,
                "failure {failures}: {d} ms"
            );
        }
    }
}
