//! One browser publishing its camera and microphone over WebRTC: once the application allows the
//! publish, takes the stream name in the registry (private if asked), passes viewers' messages
//! to its client, answers the browser's offer (H.264 and Opus), and turns the received RTP into the
//! stream's frames: H.264 access units with a decoder configuration built from the in-band
//! SPS/PPS (H.264 is chosen whenever offered, so RTMP players can watch), or VP8 frames that
//! keep the packets they came in, and Opus packets as they are.
//!
//! Invariants: the name is held before any media is accepted and a name in use is refused with
//! FAILED; both tracks share one timeline (each track's first packet is placed at its arrival
//! time), so lip sync survives; the publisher is asked for keyframes (PLI) after a loss, when
//! a viewer asks (already rate-limited by the stream), and every
//! `webrtc.publisher_keyframe_interval_ms`, so GOPs stay short, never twice within
//! `KEYFRAME_MIN_GAP`; stopping for any reason unpublishes and closes the peer connection.

use super::viewer::{EventForwarder, PeerEvent, ToClient, ViewerSignal};
use super::{PeerGuard, PeerRole, WebrtcContext};
use crate::access::{Attach, Pass};
use crate::messages::*;
use crate::registry::Registry;
use crate::stream::{MediaHub, Stream};
use actix::prelude::*;
use bytes::Bytes;
use mediarouter_core::codec::avc::AvcConfig;
use mediarouter_core::codec::rtp::H264Depacketizer;
use mediarouter_core::codec::vp8::Vp8Depacketizer;
use mediarouter_core::media::{Codec, Frame, StreamName, TrackConfig, TrackInfo};
use mediarouter_core::webrtc::offer::{choose_publish_video, offered_formats, MediaKind};
use mediarouter_core::webrtc::signalling::{ProtocolError, ServerMessage, StreamStatus};
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtp_transceiver::rtp_sender::RtpCodecKind;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::{debug, info, warn};
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};
use webrtc::peer_connection::{
    MediaEngine, PeerConnectionEventHandler, RTCIceCandidateInit, RTCSessionDescription,
};

/// The shortest gap between two keyframe requests to the browser, whoever asks.
const KEYFRAME_MIN_GAP: Duration = Duration::from_millis(250);
/// After a loss, the shortest gap since the previous request.
const KEYFRAME_AFTER_LOSS_GAP: Duration = Duration::from_millis(500);

pub struct PublisherSpec {
    pub stream_id: String,
    pub name: StreamName,
    pub address: String,
    pub offer: String,
    pub client: Recipient<ToClient>,
    pub registry: Addr<Registry>,
    pub context: Arc<WebrtcContext>,
    /// Asked before the publisher takes the name.
    pub pass: Pass,
    /// The publisher asked for a private stream.
    pub private: bool,
}

pub struct WebrtcPublisher {
    peer: PeerId,
    spec: PublisherSpec,
    stream: Option<Addr<Stream>>,
    grant: Option<(Arc<MediaHub>, u64)>,
    pc: Option<PeerGuard>,
    started: Instant,
    connected: bool,
    publishing: bool,
    readers: Vec<tokio::task::JoinHandle<()>>,
    /// Client ICE candidates not yet added (the connection is made after the name is held).
    pending_candidates: Vec<RTCIceCandidateInit>,
    /// Viewers asked for a keyframe: the video track's reader sends a PLI.
    keyframe_wanted: Arc<tokio::sync::Notify>,
    finished: bool,
}

/// Reader task → publisher: the first frame was pushed.
#[derive(Message)]
#[rtype(result = "()")]
struct MediaFlowing;

impl WebrtcPublisher {
    pub fn new(spec: PublisherSpec) -> WebrtcPublisher {
        WebrtcPublisher {
            peer: PeerId::next(),
            spec,
            stream: None,
            grant: None,
            pc: None,
            started: Instant::now(),
            connected: false,
            publishing: false,
            readers: Vec::new(),
            pending_candidates: Vec::new(),
            keyframe_wanted: Arc::new(tokio::sync::Notify::new()),
            finished: false,
        }
    }

    fn status(&self, status: StreamStatus, reason: Option<String>) {
        self.spec.client.do_send(ToClient(ServerMessage::Status {
            stream_id: self.spec.stream_id.clone(),
            name: self.spec.name.to_string(),
            status,
            reason,
            info: None,
        }));
    }

    fn finish(&mut self, status: StreamStatus, reason: String, ctx: &mut Context<Self>) {
        if self.finished {
            return;
        }
        self.finished = true;
        info!(stream = %self.spec.name, peer = %self.spec.address, id = %self.spec.stream_id, %reason, "WebRTC publish ended");
        self.status(status, Some(reason));
        ctx.stop();
    }

    fn negotiate(&mut self, ctx: &mut Context<Self>) {
        let formats = offered_formats(&self.spec.offer);
        let Some((video_codec, video)) = choose_publish_video(&formats) else {
            return self.finish(
                StreamStatus::Failed,
                "codec not supported: publish H.264 (packetization-mode=1) or VP8; the offer has neither"
                    .into(),
                ctx,
            );
        };
        let video = video.clone();
        let video_mime = match video_codec {
            Codec::Vp8 => "video/VP8",
            _ => "video/H264",
        };
        let opus = formats
            .iter()
            .find(|f| {
                f.kind == MediaKind::Audio
                    && f.encoding.eq_ignore_ascii_case("opus")
                    && f.clock_rate == 48000
            })
            .cloned();
        let context = Arc::clone(&self.spec.context);
        let forwarder: Arc<dyn PeerConnectionEventHandler> =
            Arc::new(EventForwarder(ctx.address().recipient()));
        let offer = self.spec.offer.clone();
        async move {
            let mut engine = MediaEngine::default();
            let mut codecs = vec![(
                super::viewer::codec_parameters(
                    video_mime,
                    video.payload_type,
                    90000,
                    0,
                    &video.fmtp,
                ),
                RtpCodecKind::Video,
            )];
            if let Some(opus) = &opus {
                codecs.push((
                    super::viewer::codec_parameters(
                        "audio/opus",
                        opus.payload_type,
                        48000,
                        2,
                        &opus.fmtp,
                    ),
                    RtpCodecKind::Audio,
                ));
            }
            for (codec, kind) in codecs {
                engine
                    .register_codec(codec, kind)
                    .map_err(|e| format!("codec registration: {e}"))?;
            }
            let (pc, _port) = context
                .connect(PeerRole::Publisher, engine, forwarder)
                .await?;
            let description =
                RTCSessionDescription::offer(offer).map_err(|e| format!("bad offer: {e}"))?;
            pc.set_remote_description(description)
                .await
                .map_err(|e| format!("bad offer: {e}"))?;
            let answer = pc
                .create_answer(None)
                .await
                .map_err(|e| format!("peer connection: {e}"))?;
            let sdp = answer.sdp.clone();
            pc.set_local_description(answer)
                .await
                .map_err(|e| format!("peer connection: {e}"))?;
            Ok::<_, String>((pc, sdp))
        }
        .into_actor(self)
        .map(|result, publisher, ctx| match result {
            Ok((pc, sdp)) => {
                publisher.pc = Some(pc);
                publisher.flush_candidates();
                publisher
                    .spec
                    .client
                    .do_send(ToClient(ServerMessage::Answer {
                        stream_id: publisher.spec.stream_id.clone(),
                        sdp,
                    }));
                let timeout =
                    Duration::from_millis(publisher.spec.context.settings.connect_timeout_ms);
                ctx.run_later(timeout, |publisher, ctx| {
                    if !publisher.connected {
                        publisher.finish(
                            StreamStatus::Failed,
                            "peer connection failed: no ICE/DTLS connection in time".into(),
                            ctx,
                        );
                    }
                });
            }
            Err(reason) => publisher.finish(StreamStatus::Failed, reason, ctx),
        })
        .spawn(ctx);
    }

    fn flush_candidates(&mut self) {
        let Some(pc) = self.pc.as_ref().map(PeerGuard::connection) else {
            return;
        };
        let candidates = std::mem::take(&mut self.pending_candidates);
        if !candidates.is_empty() {
            let (name, address) = (self.spec.name.clone(), self.spec.address.clone());
            super::viewer::add_candidates(pc, candidates, name, address);
        }
    }

    fn read_track(&mut self, track: Arc<dyn TrackRemote>, ctx: &mut Context<Self>) {
        let Some((hub, token)) = self.grant.clone() else {
            return;
        };
        let reader = TrackReader {
            hub,
            token,
            name: self.spec.name.clone(),
            started: self.started,
            flowing: ctx.address().recipient(),
            keyframe_wanted: Arc::clone(&self.keyframe_wanted),
            keyframe_interval: Duration::from_millis(
                self.spec.context.settings.publisher_keyframe_interval_ms,
            ),
        };
        self.readers.push(tokio::spawn(reader.run(track)));
    }
}

struct TrackReader {
    hub: Arc<MediaHub>,
    token: u64,
    name: StreamName,
    /// Publish start: every track's first packet is placed at its arrival time after it.
    started: Instant,
    flowing: Recipient<MediaFlowing>,
    keyframe_wanted: Arc<tokio::sync::Notify>,
    /// Browsers send keyframes only when asked: one request at least this often.
    keyframe_interval: Duration,
}

/// Unwraps 32-bit RTP timestamps into a monotonic tick count.
struct Unwrapper {
    last: Option<u32>,
    ticks: i64,
}

impl Unwrapper {
    fn ticks(&mut self, timestamp: u32) -> i64 {
        if let Some(last) = self.last {
            self.ticks += i64::from(timestamp.wrapping_sub(last) as i32);
        }
        self.last = Some(timestamp);
        self.ticks
    }

    /// Ticks of an earlier (or equal) timestamp, without moving on.
    fn at(&self, timestamp: u32) -> i64 {
        match self.last {
            Some(last) => self.ticks + i64::from(timestamp.wrapping_sub(last) as i32),
            None => 0,
        }
    }
}

/// What one remote track's packets are turned into.
enum Depacketizer {
    H264(H264Depacketizer),
    Vp8 {
        depacketizer: Vp8Depacketizer,
        dimensions: Option<(u16, u16)>,
    },
    Opus {
        announced: bool,
    },
}

impl Depacketizer {
    fn for_mime(mime: &str) -> Option<Depacketizer> {
        match mime {
            "video/h264" => Some(Depacketizer::H264(H264Depacketizer::new())),
            "video/vp8" => Some(Depacketizer::Vp8 {
                depacketizer: Vp8Depacketizer::new(),
                dimensions: None,
            }),
            "audio/opus" => Some(Depacketizer::Opus { announced: false }),
            _ => None,
        }
    }

    fn is_video(&self) -> bool {
        !matches!(self, Depacketizer::Opus { .. })
    }

    /// Pushes what `packet` completes into the hub; `time_us` maps an RTP timestamp of this
    /// track to the stream's time. Returns whether a frame was pushed.
    fn packet(
        &mut self,
        reader: &TrackReader,
        packet: &rtc::rtp::Packet,
        time_us: impl Fn(u32) -> i64,
    ) -> bool {
        let header = &packet.header;
        let frame = match self {
            Depacketizer::H264(depacketizer) => {
                let unit = depacketizer.push(
                    &packet.payload,
                    header.sequence_number,
                    header.timestamp,
                    header.marker,
                );
                if let Some(record) = depacketizer.take_config() {
                    let info = AvcConfig::parse(&record)
                        .map(|c| c.track_info())
                        .unwrap_or_default();
                    reader.configure(Codec::H264, record, info, time_us(header.timestamp));
                }
                // A unit may come out with the packet after it: it keeps its own timestamp.
                unit.map(|unit| {
                    let time = time_us(unit.rtp_timestamp);
                    Frame::new(Codec::H264, time, 0, unit.keyframe, unit.avcc)
                })
            }
            Depacketizer::Vp8 {
                depacketizer,
                dimensions,
            } => {
                let frame = depacketizer.push(
                    &packet.payload,
                    header.sequence_number,
                    header.timestamp,
                    header.marker,
                );
                frame.map(|vp8| {
                    let time = time_us(vp8.rtp_timestamp);
                    if vp8.dimensions.is_some() && vp8.dimensions != *dimensions {
                        *dimensions = vp8.dimensions;
                        let info = TrackInfo {
                            width: vp8.dimensions.map(|(w, _)| u32::from(w)),
                            height: vp8.dimensions.map(|(_, h)| u32::from(h)),
                            ..TrackInfo::default()
                        };
                        reader.configure(Codec::Vp8, Bytes::new(), info, time);
                    }
                    let frame = Frame::new(Codec::Vp8, time, 0, vp8.keyframe, vp8.data);
                    // Viewers get the publisher's own packets.
                    let _ = frame.rtp_payloads.set(vp8.payloads);
                    frame
                })
            }
            Depacketizer::Opus { announced } => {
                if !*announced {
                    *announced = true;
                    // Opus has no decoder configuration, but REST and players want to know
                    // the audio track: an empty one announces it.
                    let info = TrackInfo {
                        sample_rate: Some(48000),
                        channels: Some(2),
                        ..TrackInfo::default()
                    };
                    reader.configure(Codec::Opus, Bytes::new(), info, 0);
                }
                let time = time_us(header.timestamp);
                Some(Frame::new(
                    Codec::Opus,
                    time,
                    0,
                    true,
                    packet.payload.clone(),
                ))
            }
        };
        match frame {
            Some(frame) => {
                reader.hub.push_frame(reader.token, frame);
                true
            }
            None => false,
        }
    }

    /// True once after a loss: the browser should send a keyframe.
    fn take_keyframe_request(&mut self) -> bool {
        match self {
            Depacketizer::H264(d) => d.take_keyframe_request(),
            Depacketizer::Vp8 { depacketizer, .. } => depacketizer.take_keyframe_request(),
            Depacketizer::Opus { .. } => false,
        }
    }
}

impl TrackReader {
    fn configure(&self, codec: Codec, data: Bytes, info: TrackInfo, dts_us: i64) {
        debug!(stream = %self.name, codec = %codec.name(), width = ?info.width, height = ?info.height, "publisher track configuration");
        self.hub.push_config(
            self.token,
            TrackConfig {
                codec,
                data,
                dts_us,
                info,
            },
        );
    }

    async fn run(self, track: Arc<dyn TrackRemote>) {
        let Some(ssrc) = track.ssrcs().await.first().copied() else {
            return;
        };
        let Some(codec) = track.codec(ssrc).await else {
            return;
        };
        let mime = codec.mime_type.to_ascii_lowercase();
        let clock = i64::from(codec.clock_rate.max(1));
        let Some(mut depacketizer) = Depacketizer::for_mime(&mime) else {
            warn!(stream = %self.name, codec = %mime, "WebRTC publisher track of an unsupported codec ignored");
            return;
        };
        info!(stream = %self.name, codec = %mime, ssrc, "WebRTC publisher track");
        let mut unwrap = Unwrapper {
            last: None,
            ticks: 0,
        };
        let mut offset_us: Option<i64> = None;
        let mut last_pli = Instant::now();
        let mut flowing_told = false;
        let video = depacketizer.is_video();
        if video {
            send_pli(&track, ssrc).await;
        }
        loop {
            let event = tokio::select! {
                event = track.poll() => event,
                _ = self.keyframe_wanted.notified(), if video => {
                    if last_pli.elapsed() >= KEYFRAME_MIN_GAP {
                        send_pli(&track, ssrc).await;
                        last_pli = Instant::now();
                    }
                    continue;
                }
            };
            let Some(event) = event else {
                break;
            };
            let TrackRemoteEvent::OnRtpPacket(packet) = event else {
                if matches!(event, TrackRemoteEvent::OnEnded) {
                    break;
                }
                continue;
            };
            let ticks = unwrap.ticks(packet.header.timestamp);
            let offset = *offset_us.get_or_insert_with(|| {
                self.started.elapsed().as_micros() as i64 - ticks * 1_000_000 / clock
            });
            let pushed = depacketizer.packet(&self, &packet, |timestamp| {
                offset + unwrap.at(timestamp) * 1_000_000 / clock
            });
            if video {
                let since = last_pli.elapsed();
                if (depacketizer.take_keyframe_request() && since >= KEYFRAME_AFTER_LOSS_GAP)
                    || since >= self.keyframe_interval
                {
                    send_pli(&track, ssrc).await;
                    last_pli = Instant::now();
                }
            }
            if pushed && !flowing_told {
                flowing_told = true;
                self.flowing.do_send(MediaFlowing);
            }
        }
        debug!(stream = %self.name, codec = %mime, "WebRTC publisher track ended");
    }
}

async fn send_pli(track: &Arc<dyn TrackRemote>, media_ssrc: u32) {
    let pli = PictureLossIndication {
        sender_ssrc: 0,
        media_ssrc,
    };
    if let Err(e) = track.write_rtcp(vec![Box::new(pli)]).await {
        debug!("keyframe request not sent: {e}");
    }
}

impl Actor for WebrtcPublisher {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.status(StreamStatus::Pending, None);
        let who = Attach {
            peer: self.peer,
            protocol: Protocol::Webrtc,
            address: self.spec.address.clone(),
        };
        let (pass, asks_private) = (self.spec.pass.clone(), self.spec.private);
        let (registry, name) = (self.spec.registry.clone(), self.spec.name.clone());
        let control = ctx.address().recipient();
        async move {
            pass.publish(registry, name, who, control, asks_private)
                .await
        }
        .into_actor(self)
        .map(|result, publisher, ctx| match result {
            Ok((grant, stream)) => {
                publisher.grant = Some((grant.hub, grant.token));
                publisher.stream = Some(stream);
                publisher.negotiate(ctx);
            }
            Err(StreamError::AlreadyPublishing(name)) => publisher.finish(
                StreamStatus::Failed,
                format!("name in use: {name} is already being published"),
                ctx,
            ),
            Err(StreamError::Denied(reason)) => publisher.finish(StreamStatus::Failed, reason, ctx),
            Err(e) => publisher.finish(StreamStatus::Failed, format!("publish refused: {e}"), ctx),
        })
        .spawn(ctx);
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        if !self.finished {
            self.status(StreamStatus::Stopped, Some("server stopped".into()));
        }
        for reader in self.readers.drain(..) {
            reader.abort();
        }
        if let Some(stream) = self.stream.take() {
            stream.do_send(Unpublish { peer: self.peer });
        }
        // Dropping the guard closes the connection and frees its port.
        self.pc = None;
    }
}

impl Handler<ViewerSignal> for WebrtcPublisher {
    type Result = ();

    fn handle(&mut self, msg: ViewerSignal, ctx: &mut Context<Self>) {
        match msg {
            ViewerSignal::Candidate(Some(candidate)) => {
                // Candidates that come before the connection exists wait for it.
                self.pending_candidates
                    .push(super::viewer::candidate_init(candidate));
                self.flush_candidates();
            }
            ViewerSignal::Candidate(None) | ViewerSignal::Answer(_) => {}
            ViewerSignal::Send { .. } => self.spec.client.do_send(ToClient(
                ProtocolError::new(
                    "bad_request",
                    "'send' goes to the publisher of a stream this session plays",
                    Some(self.spec.stream_id.clone()),
                )
                .to_message(),
            )),
            ViewerSignal::Stop(reason) => self.finish(StreamStatus::Stopped, reason, ctx),
        }
    }
}

impl Handler<PeerEvent> for WebrtcPublisher {
    type Result = ();

    fn handle(&mut self, msg: PeerEvent, ctx: &mut Context<Self>) {
        match msg {
            PeerEvent::Candidate(candidate) => {
                self.spec.client.do_send(ToClient(ServerMessage::Candidate {
                    stream_id: self.spec.stream_id.clone(),
                    candidate: candidate.map(super::viewer::candidate_message),
                }));
            }
            PeerEvent::State(state) => {
                use webrtc::peer_connection::RTCPeerConnectionState as State;
                match state {
                    State::Connected => self.connected = true,
                    State::Failed => {
                        self.finish(StreamStatus::Failed, "peer connection failed".into(), ctx)
                    }
                    State::Closed | State::Disconnected if self.connected => self.finish(
                        StreamStatus::Stopped,
                        "publisher connection lost".into(),
                        ctx,
                    ),
                    _ => {}
                }
            }
            PeerEvent::Track(track) => self.read_track(track, ctx),
        }
    }
}

impl Handler<MediaFlowing> for WebrtcPublisher {
    type Result = ();

    fn handle(&mut self, _: MediaFlowing, _: &mut Context<Self>) {
        if !self.publishing {
            self.publishing = true;
            info!(stream = %self.spec.name, peer = %self.spec.address, "WebRTC publishing");
            self.status(StreamStatus::Publishing, None);
        }
    }
}

impl Handler<PublisherCommand> for WebrtcPublisher {
    type Result = ();

    fn handle(&mut self, msg: PublisherCommand, ctx: &mut Context<Self>) {
        match msg {
            PublisherCommand::Stop { reason } => {
                // The stream already let go of this publisher.
                self.stream = None;
                warn!(stream = %self.spec.name, peer = %self.spec.address, %reason, "WebRTC publisher cut by the server");
                self.finish(StreamStatus::Stopped, reason, ctx);
            }
            PublisherCommand::RequestKeyframe => self.keyframe_wanted.notify_one(),
            PublisherCommand::Message { from, data } => {
                self.spec.client.do_send(ToClient(ServerMessage::Message {
                    stream_id: self.spec.stream_id.clone(),
                    from,
                    data,
                }))
            }
        }
    }
}
