//! One browser playing one stream over WebRTC: once the application allows the play, attaches
//! to the stream (pulling the camera if the name is a camera URL), waits for media, negotiates (answering the browser's offer, or
//! offering), trickles ICE both ways, then runs its media pump once the connection is up.
//!
//! Invariants: the client hears every status change of this stream and exactly one final one
//! (`STOPPED` or `FAILED` with a reason); stopping for any reason closes the peer connection,
//! aborts the pump, frees the UDP port and detaches from the stream (which also ends its need
//! for transcoded audio); webrtc-rs callbacks only forward events to this actor; the client's
//! `send` messages reach the stream's publisher, or the client hears why not.

use super::pump::{self, PumpEvent, PumpSpec, TrackOut};
use super::{PeerGuard, PeerRole, WebrtcContext};
use crate::access::{Attach, Pass};
use crate::messages::*;
use crate::registry::Registry;
use crate::stream::{MediaHub, Stream};
use actix::prelude::*;
use mediarouter_core::camera::CameraUrl;
use mediarouter_core::codec::rtp::H264Params;
use mediarouter_core::media::{Codec, MediaPacket, StreamName, TrackKind};
use mediarouter_core::webrtc::offer::{
    choose_audio, choose_h264, choose_vp8, offered_formats, AudioPlan,
};
use mediarouter_core::webrtc::signalling::{Candidate, ProtocolError, ServerMessage, StreamStatus};
use rtc::media_stream::MediaStreamTrack;
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodec, RTCRtpCodecParameters, RTCRtpCodingParameters, RTCRtpEncodingParameters,
    RtpCodecKind,
};
use serde_json::json;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast;
use tracing::{debug, info, warn};
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
use webrtc::media_stream::track_local::{TrackLocal, TrackLocalEvent};
use webrtc::peer_connection::{
    MediaEngine, PeerConnection, PeerConnectionEventHandler, RTCIceCandidateInit,
    RTCIceGatheringState, RTCPeerConnectionIceEvent, RTCPeerConnectionState, RTCSessionDescription,
};

/// Viewer → signalling session: a message for the client.
#[derive(Message)]
#[rtype(result = "()")]
pub struct ToClient(pub ServerMessage);

/// Signalling session → viewer: what the client said about this stream.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub enum ViewerSignal {
    Answer(String),
    Candidate(Option<Candidate>),
    /// Stop with this reason (client stop, session closed).
    Stop(String),
    /// Pass `data` from session `from` to the stream's publisher (signalling `send`).
    Send {
        from: String,
        data: serde_json::Value,
    },
}

/// webrtc-rs callbacks → viewer or publisher.
#[derive(Message)]
#[rtype(result = "()")]
pub(super) enum PeerEvent {
    Candidate(Option<RTCIceCandidateInit>),
    State(RTCPeerConnectionState),
    /// A track the remote peer sends (publishers).
    Track(Arc<dyn webrtc::media_stream::track_remote::TrackRemote>),
}

pub(super) struct EventForwarder(pub(super) Recipient<PeerEvent>);

pub(super) fn candidate_init(candidate: Candidate) -> RTCIceCandidateInit {
    RTCIceCandidateInit {
        candidate: candidate.candidate,
        sdp_mid: candidate.sdp_mid,
        sdp_mline_index: candidate.sdp_mline_index,
        username_fragment: candidate.username_fragment,
        ..Default::default()
    }
}

pub(super) fn candidate_message(init: RTCIceCandidateInit) -> Candidate {
    Candidate {
        candidate: init.candidate,
        sdp_mid: init.sdp_mid,
        sdp_mline_index: init.sdp_mline_index,
        username_fragment: init.username_fragment,
    }
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for EventForwarder {
    async fn on_ice_candidate(&self, event: RTCPeerConnectionIceEvent) {
        if let Ok(init) = event.candidate.to_json() {
            self.0.do_send(PeerEvent::Candidate(Some(init)));
        }
    }

    async fn on_ice_gathering_state_change(&self, state: RTCIceGatheringState) {
        if state == RTCIceGatheringState::Complete {
            self.0.do_send(PeerEvent::Candidate(None));
        }
    }

    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        self.0.do_send(PeerEvent::State(state));
    }

    async fn on_track(&self, track: Arc<dyn webrtc::media_stream::track_remote::TrackRemote>) {
        self.0.do_send(PeerEvent::Track(track));
    }
}

/// Codecs and tracks negotiated for this viewer.
struct Negotiated {
    video: Option<TrackOut>,
    audio: Option<TrackOut>,
    info: serde_json::Value,
}

pub struct WebrtcViewer {
    peer: PeerId,
    stream_id: String,
    name: StreamName,
    camera: Option<CameraUrl>,
    address: String,
    offer: Option<String>,
    client: Recipient<ToClient>,
    registry: Addr<Registry>,
    context: Arc<WebrtcContext>,
    pass: Pass,
    stream: Option<Addr<Stream>>,
    hub: Option<Arc<MediaHub>>,
    bytes_out: Option<Arc<AtomicU64>>,
    pc: Option<PeerGuard>,
    port: Option<u16>,
    /// Remote description applied: client candidates can be added.
    remote_set: bool,
    pending_candidates: Vec<RTCIceCandidateInit>,
    negotiated: Option<Negotiated>,
    connected: bool,
    pump: Option<tokio::task::JoinHandle<()>>,
    /// Passes the browser's keyframe requests on to the stream.
    feedback: Option<tokio::task::JoinHandle<()>>,
    finished: bool,
}

pub struct ViewerSpec {
    pub stream_id: String,
    pub name: StreamName,
    pub camera: Option<CameraUrl>,
    pub address: String,
    pub offer: Option<String>,
    pub client: Recipient<ToClient>,
    pub registry: Addr<Registry>,
    pub context: Arc<WebrtcContext>,
    /// Asked before the viewer subscribes.
    pub pass: Pass,
}

impl WebrtcViewer {
    pub fn new(spec: ViewerSpec) -> WebrtcViewer {
        WebrtcViewer {
            peer: PeerId::next(),
            stream_id: spec.stream_id,
            name: spec.name,
            camera: spec.camera,
            address: spec.address,
            offer: spec.offer,
            client: spec.client,
            registry: spec.registry,
            context: spec.context,
            pass: spec.pass,
            stream: None,
            hub: None,
            bytes_out: None,
            pc: None,
            port: None,
            remote_set: false,
            pending_candidates: Vec::new(),
            negotiated: None,
            connected: false,
            pump: None,
            feedback: None,
            finished: false,
        }
    }

    fn status(
        &self,
        status: StreamStatus,
        reason: Option<String>,
        info: Option<serde_json::Value>,
    ) {
        self.client.do_send(ToClient(ServerMessage::Status {
            stream_id: self.stream_id.clone(),
            name: self.shown_name(),
            status,
            reason,
            info,
        }));
    }

    /// Stream names as the client knows them; camera URLs without their credentials.
    fn shown_name(&self) -> String {
        match &self.camera {
            Some(camera) => camera.masked().to_string(),
            None => self.name.to_string(),
        }
    }

    /// Ends this viewer with its final status.
    fn finish(&mut self, status: StreamStatus, reason: String, ctx: &mut Context<Self>) {
        if self.finished {
            return;
        }
        self.finished = true;
        if status == StreamStatus::Failed {
            warn!(stream = %self.name, peer = %self.address, id = %self.stream_id, %reason, "WebRTC play failed");
        } else {
            info!(stream = %self.name, peer = %self.address, id = %self.stream_id, %reason, "WebRTC play stopped");
        }
        self.status(status, Some(reason), None);
        ctx.stop();
    }

    fn on_subscribed(
        &mut self,
        subscription: Subscription,
        stream: Addr<Stream>,
        name: StreamName,
        ctx: &mut Context<Self>,
    ) {
        self.name = name;
        self.stream = Some(stream);
        self.hub = Some(Arc::clone(&subscription.hub));
        self.bytes_out = Some(Arc::clone(&subscription.bytes_out));
        info!(stream = %self.name, peer = %self.address, id = %self.stream_id,
            publishing = subscription.publishing, "WebRTC viewer attached");
        let frames = || {
            subscription.snapshot.iter().filter_map(|p| match p {
                MediaPacket::Frame(frame) => Some(frame),
                _ => None,
            })
        };
        let has_video = frames().any(|f| f.track() == TrackKind::Video);
        let has_audio = frames().next().is_some();
        let receiver = subscription.receiver;
        async move {
            if has_video {
                Ok(())
            } else {
                wait_for_media(receiver, has_audio).await
            }
        }
        .into_actor(self)
        .map(|ready, viewer, ctx| match ready {
            Ok(()) => viewer.negotiate(ctx),
            Err(reason) => viewer.finish(StreamStatus::Failed, reason, ctx),
        })
        .spawn(ctx);
    }

    /// Chooses codecs from the offer and the stream, builds the peer connection and answers
    /// (or offers).
    fn negotiate(&mut self, ctx: &mut Context<Self>) {
        if self.finished {
            return;
        }
        let Some(hub) = self.hub.clone() else {
            return;
        };
        let (video_config, audio_config) = hub.configs();
        let params = video_config
            .as_ref()
            .filter(|c| c.codec == Codec::H264)
            .and_then(|c| H264Params::from_record(&c.data).ok());
        let video_codec = video_config.as_ref().map(|c| c.codec);
        let audio_source = audio_config.map(|c| c.codec).or_else(|| {
            // G.711 from FLV has no configuration: learn it from the frames.
            let (snapshot, _) = hub.subscribe();
            snapshot.iter().find_map(|p| match p {
                MediaPacket::Frame(f) if f.track() == TrackKind::Audio => Some(f.codec),
                _ => None,
            })
        });
        if let Some(codec) = video_codec.filter(|c| !matches!(c, Codec::H264 | Codec::Vp8)) {
            return self.finish(
                StreamStatus::Failed,
                format!(
                    "codec not supported: the stream's video is {}, WebRTC viewers get H.264 or VP8",
                    codec.name()
                ),
                ctx,
            );
        }
        let plan = match self.plan(params.as_ref(), video_codec, audio_source) {
            Ok(plan) => plan,
            Err(reason) => return self.finish(StreamStatus::Failed, reason, ctx),
        };
        let context = Arc::clone(&self.context);
        let forwarder: Arc<dyn PeerConnectionEventHandler> =
            Arc::new(EventForwarder(ctx.address().recipient()));
        let offer = self.offer.clone();
        let stream_label = self.name.to_string();
        async move {
            let mut engine = MediaEngine::default();
            for (codec, kind) in plan.codecs() {
                engine
                    .register_codec(codec, kind)
                    .map_err(|e| format!("codec registration: {e}"))?;
            }
            let (pc, port) = context.connect(PeerRole::Viewer, engine, forwarder).await?;
            let result = build_session(&pc.connection(), &plan, offer, &stream_label).await;
            let (sdp, video, audio) = result?;
            Ok((pc, port, sdp, video, audio, plan))
        }
        .into_actor(self)
        .map(|result, viewer, ctx| match result {
            Ok((pc, port, sdp, video, audio, plan)) => {
                viewer.pc = Some(pc);
                viewer.port = Some(port);
                let answered = viewer.offer.is_some();
                viewer.remote_set = answered;
                viewer.negotiated = Some(Negotiated {
                    video,
                    audio,
                    info: plan.info,
                });
                if plan.transcode_audio {
                    if let Some(stream) = &viewer.stream {
                        // The track is Opus now, whatever a republish brings.
                        stream.do_send(NeedAudio {
                            peer: viewer.peer,
                            codec: Codec::Opus,
                            takes: |codec| codec == Codec::Opus,
                        });
                    }
                }
                debug!(stream = %viewer.name, peer = %viewer.address, port, "WebRTC negotiated");
                let message = if answered {
                    ServerMessage::Answer {
                        stream_id: viewer.stream_id.clone(),
                        sdp,
                    }
                } else {
                    ServerMessage::Offer {
                        stream_id: viewer.stream_id.clone(),
                        sdp,
                    }
                };
                viewer.client.do_send(ToClient(message));
                viewer.flush_candidates();
                let timeout = Duration::from_millis(viewer.context.settings.connect_timeout_ms);
                ctx.run_later(timeout, |viewer, ctx| {
                    if !viewer.connected {
                        viewer.finish(
                            StreamStatus::Failed,
                            "peer connection failed: no ICE/DTLS connection in time".into(),
                            ctx,
                        );
                    }
                });
            }
            Err(reason) => viewer.finish(StreamStatus::Failed, reason, ctx),
        })
        .spawn(ctx);
    }

    /// What to put in the answer, from the client's offer (or our own preferences).
    fn plan(
        &self,
        params: Option<&H264Params>,
        video_codec: Option<Codec>,
        audio_source: Option<Codec>,
    ) -> Result<Plan, String> {
        let profile = params.map(|p| p.profile_level_id.as_str());
        let mut plan = Plan::default();
        match &self.offer {
            Some(offer) => {
                let formats = offered_formats(offer);
                match video_codec {
                    Some(Codec::Vp8) => {
                        let Some(vp8) = choose_vp8(&formats) else {
                            return Err(
                                "codec not supported: the stream is VP8 and the offer has no VP8"
                                    .into(),
                            );
                        };
                        plan.video = Some(codec_parameters(
                            "video/VP8",
                            vp8.payload_type,
                            90000,
                            0,
                            &vp8.fmtp,
                        ));
                    }
                    Some(_) => {
                        let Some(h264) = choose_h264(&formats, profile) else {
                            return Err(
                                "codec not supported: the offer has no H.264 with packetization-mode=1"
                                    .into(),
                            );
                        };
                        plan.video = Some(codec_parameters(
                            "video/H264",
                            h264.payload_type,
                            90000,
                            0,
                            &h264.fmtp,
                        ));
                    }
                    None => {}
                }
                if let Some((format, audio)) = choose_audio(&formats, audio_source) {
                    let mime = format!("audio/{}", format.encoding);
                    plan.audio = Some(codec_parameters(
                        &mime,
                        format.payload_type,
                        format.clock_rate,
                        format.channels,
                        &format.fmtp,
                    ));
                    plan.audio_codec = Some(match audio {
                        AudioPlan::Pass(codec) => codec,
                        AudioPlan::TranscodeToOpus => Codec::Opus,
                    });
                    plan.transcode_audio =
                        audio == AudioPlan::TranscodeToOpus && audio_source != Some(Codec::Opus);
                }
            }
            None => {
                match video_codec {
                    Some(Codec::Vp8) => {
                        plan.video = Some(codec_parameters("video/VP8", 96, 90000, 0, ""));
                    }
                    Some(_) => {
                        let profile = profile.unwrap_or("42e01f");
                        plan.video = Some(codec_parameters(
                            "video/H264",
                            102,
                            90000,
                            0,
                            &format!(
                                "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id={profile}"
                            ),
                        ));
                    }
                    None => {}
                }
                let (mime, pt, rate, channels, codec) = match audio_source {
                    Some(Codec::Pcma) => ("audio/PCMA", 8, 8000, 1, Codec::Pcma),
                    Some(Codec::Pcmu) => ("audio/PCMU", 0, 8000, 1, Codec::Pcmu),
                    _ => ("audio/opus", 111, 48000, 2, Codec::Opus),
                };
                plan.audio = Some(codec_parameters(
                    mime,
                    pt,
                    rate,
                    channels,
                    "minptime=10;useinbandfec=1",
                ));
                plan.audio_codec = Some(codec);
                plan.transcode_audio = codec == Codec::Opus && audio_source != Some(Codec::Opus);
            }
        }
        if plan.video.is_none() && plan.audio.is_none() {
            return Err(
                "codec not supported: nothing in the stream can be sent to this client".into(),
            );
        }
        plan.video_codec = video_codec.filter(|_| plan.video.is_some());
        plan.info = json!({
            "video": plan.video_codec.map(Codec::name),
            "videoProfile": plan.video.as_ref().map(|v| v.rtp_codec.sdp_fmtp_line.clone()),
            "audio": plan.audio.as_ref().map(|a| a.rtp_codec.mime_type.trim_start_matches("audio/").to_string()),
            "audioTranscoded": plan.transcode_audio,
        });
        Ok(plan)
    }

    fn flush_candidates(&mut self) {
        if !self.remote_set || self.pending_candidates.is_empty() {
            return;
        }
        let Some(pc) = self.pc.as_ref().map(PeerGuard::connection) else {
            return;
        };
        let candidates = std::mem::take(&mut self.pending_candidates);
        add_candidates(pc, candidates, self.name.clone(), self.address.clone());
    }

    fn start_pump(&mut self, ctx: &mut Context<Self>) {
        if self.pump.is_some() {
            return;
        }
        let (Some(hub), Some(negotiated), Some(bytes_out)) = (
            self.hub.clone(),
            self.negotiated.as_mut(),
            self.bytes_out.clone(),
        ) else {
            return;
        };
        let (events, receiver) = tokio::sync::mpsc::unbounded_channel();
        ctx.add_stream(tokio_stream::wrappers::UnboundedReceiverStream::new(
            receiver,
        ));
        if let (Some(video), Some(stream)) = (&negotiated.video, &self.stream) {
            self.feedback = Some(tokio::spawn(forward_keyframe_requests(
                Arc::clone(&video.track),
                stream.clone(),
                self.peer,
            )));
        }
        let spec = PumpSpec {
            hub,
            name: self.name.clone(),
            video: negotiated.video.take(),
            audio: negotiated.audio.take(),
            bytes_out,
            max_lag_ms: self.context.stream.player_max_lag_ms,
            max_backlog: self.context.settings.viewer_max_backlog,
            events,
        };
        let pc = self.pc.as_ref().map(PeerGuard::connection);
        self.pump = Some(tokio::spawn(async move {
            // The payload types are known for sure once the connection is up.
            let mut spec = spec;
            if let Some(pc) = pc {
                for sender in pc.get_senders().await {
                    let Ok(parameters) = sender.get_parameters().await else {
                        continue;
                    };
                    let Some(codec) = parameters.rtp_parameters.codecs.first() else {
                        continue;
                    };
                    for out in [spec.video.as_mut(), spec.audio.as_mut()]
                        .into_iter()
                        .flatten()
                    {
                        let track_ssrc = parameters
                            .encodings
                            .iter()
                            .any(|e| e.rtp_coding_parameters.ssrc == Some(out.ssrc));
                        if track_ssrc {
                            out.payload_type = codec.payload_type;
                        }
                    }
                }
            }
            pump::run(spec).await;
        }));
    }
}

/// Adds the client's ICE candidates to the connection, in order, in the background.
pub(super) fn add_candidates(
    pc: Arc<dyn PeerConnection>,
    candidates: Vec<RTCIceCandidateInit>,
    name: StreamName,
    address: String,
) {
    actix::spawn(async move {
        for candidate in candidates {
            if let Err(e) = pc.add_ice_candidate(candidate).await {
                debug!(stream = %name, peer = %address, "client ICE candidate refused: {e}");
            }
        }
    });
}

/// Reads the RTCP the browser sends about the video track (only keyframe requests get this far,
/// see `feedback.rs`) and asks the stream for a keyframe; ends with the track.
async fn forward_keyframe_requests(
    track: Arc<TrackLocalStaticRTP>,
    stream: Addr<Stream>,
    peer: PeerId,
) {
    while let Some(event) = track.poll().await {
        let TrackLocalEvent::OnRtcpPacket(packets) = event else {
            continue;
        };
        if packets
            .iter()
            .any(|p| super::feedback::is_keyframe_request(p.as_ref()))
        {
            stream.do_send(KeyframeRequest { peer });
        }
    }
}

/// The codecs of an answer and how the audio is fed.
#[derive(Default)]
struct Plan {
    video: Option<RTCRtpCodecParameters>,
    audio: Option<RTCRtpCodecParameters>,
    /// The stream's frames of this codec feed the video track.
    video_codec: Option<Codec>,
    /// The stream's frames of this codec feed the audio track.
    audio_codec: Option<Codec>,
    transcode_audio: bool,
    info: serde_json::Value,
}

impl Plan {
    fn codecs(&self) -> Vec<(RTCRtpCodecParameters, RtpCodecKind)> {
        let mut codecs = Vec::new();
        codecs.extend(self.video.clone().map(|c| (c, RtpCodecKind::Video)));
        codecs.extend(self.audio.clone().map(|c| (c, RtpCodecKind::Audio)));
        codecs
    }
}

pub(super) fn codec_parameters(
    mime: &str,
    payload_type: u8,
    clock_rate: u32,
    channels: u16,
    fmtp: &str,
) -> RTCRtpCodecParameters {
    RTCRtpCodecParameters {
        rtp_codec: RTCRtpCodec {
            mime_type: mime.to_string(),
            clock_rate,
            channels,
            sdp_fmtp_line: fmtp.to_string(),
            rtcp_feedback: vec![],
        },
        payload_type,
    }
}

fn local_track(
    codec: &RTCRtpCodecParameters,
    kind: RtpCodecKind,
    stream_label: &str,
) -> (Arc<TrackLocalStaticRTP>, u32) {
    let ssrc: u32 = rand::random();
    let kind_name = match kind {
        RtpCodecKind::Video => "video",
        _ => "audio",
    };
    let track = MediaStreamTrack::new(
        format!("mediarouter-{stream_label}"),
        format!("{kind_name}-{ssrc:08x}"),
        format!("{stream_label} {kind_name}"),
        kind,
        vec![RTCRtpEncodingParameters {
            rtp_coding_parameters: RTCRtpCodingParameters {
                ssrc: Some(ssrc),
                ..Default::default()
            },
            active: true,
            codec: codec.rtp_codec.clone(),
            ..Default::default()
        }],
    );
    (Arc::new(TrackLocalStaticRTP::new(track)), ssrc)
}

/// Adds the tracks and runs the offer/answer on the connection; returns our SDP.
async fn build_session(
    pc: &Arc<dyn PeerConnection>,
    plan: &Plan,
    offer: Option<String>,
    stream_label: &str,
) -> Result<(String, Option<TrackOut>, Option<TrackOut>), String> {
    if let Some(offer) = &offer {
        let description =
            RTCSessionDescription::offer(offer.clone()).map_err(|e| format!("bad offer: {e}"))?;
        pc.set_remote_description(description)
            .await
            .map_err(|e| format!("bad offer: {e}"))?;
    }
    let mut outs = [None, None];
    for (slot, (codec, kind, media)) in [
        plan.video
            .as_ref()
            .zip(plan.video_codec)
            .map(|(c, codec)| (c, RtpCodecKind::Video, codec)),
        plan.audio
            .as_ref()
            .zip(plan.audio_codec)
            .map(|(c, codec)| (c, RtpCodecKind::Audio, codec)),
    ]
    .into_iter()
    .enumerate()
    .filter_map(|(i, x)| x.map(|x| (i, x)))
    {
        let (track, ssrc) = local_track(codec, kind, stream_label);
        pc.add_track(Arc::clone(&track) as Arc<dyn TrackLocal>)
            .await
            .map_err(|e| format!("peer connection: {e}"))?;
        outs[slot] = Some(TrackOut {
            track,
            ssrc,
            payload_type: codec.payload_type,
            clock_rate: codec.rtp_codec.clock_rate,
            codec: media,
        });
    }
    let local = if offer.is_some() {
        pc.create_answer(None).await
    } else {
        pc.create_offer(None).await
    }
    .map_err(|e| format!("peer connection: {e}"))?;
    let sdp = local.sdp.clone();
    pc.set_local_description(local)
        .await
        .map_err(|e| format!("peer connection: {e}"))?;
    let [video, audio] = outs;
    Ok((sdp, video, audio))
}

/// Waits until the stream has media; the stream's own play-wait timer ends the wait with a
/// `PlayerCommand::Stop` if no publisher comes.
/// How long a stream that has started with audio gets to show its video before the viewer is
/// negotiated without video: a WebRTC publisher's audio arrives a little before its first
/// keyframe, and the answer can only offer what the stream is known to have.
const VIDEO_GRACE: Duration = Duration::from_millis(1500);

/// Waits until the stream has video, or has had audio (`audio_seen`: already) for
/// `VIDEO_GRACE` without any.
async fn wait_for_media(
    mut receiver: broadcast::Receiver<MediaPacket>,
    audio_seen: bool,
) -> Result<(), String> {
    let mut deadline = audio_seen.then(|| tokio::time::Instant::now() + VIDEO_GRACE);
    loop {
        let next = match deadline {
            Some(at) => match tokio::time::timeout_at(at, receiver.recv()).await {
                Ok(next) => next,
                Err(_) => return Ok(()),
            },
            None => receiver.recv().await,
        };
        match next {
            Ok(MediaPacket::Frame(frame)) if frame.track() == TrackKind::Video => return Ok(()),
            Ok(MediaPacket::Frame(_)) => {
                deadline.get_or_insert_with(|| tokio::time::Instant::now() + VIDEO_GRACE);
            }
            Err(broadcast::error::RecvError::Lagged(_)) => return Ok(()),
            Ok(_) => {}
            Err(broadcast::error::RecvError::Closed) => return Err("stream closed".into()),
        }
    }
}

impl Actor for WebrtcViewer {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.status(StreamStatus::Pending, None, None);
        let registry = self.registry.clone();
        let camera = self.camera.clone();
        let requested = self.name.clone();
        let who = Attach {
            peer: self.peer,
            protocol: Protocol::Webrtc,
            address: self.address.clone(),
        };
        let (pass, control) = (self.pass.clone(), ctx.address().recipient());
        async move {
            pass.play(&registry, requested, camera, who, control)
                .await
                .map_err(|e| match e {
                    StreamError::Denied(reason) => reason,
                    e => format!("stream unavailable: {e}"),
                })
        }
        .into_actor(self)
        .map(|result, viewer, ctx| match result {
            Ok((subscription, stream, key)) => viewer.on_subscribed(subscription, stream, key, ctx),
            Err(reason) => viewer.finish(StreamStatus::Failed, reason, ctx),
        })
        .spawn(ctx);
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        if !self.finished {
            self.status(StreamStatus::Stopped, Some("server stopped".into()), None);
        }
        for task in [self.pump.take(), self.feedback.take()]
            .into_iter()
            .flatten()
        {
            task.abort();
        }
        if let Some(stream) = self.stream.take() {
            stream.do_send(Unsubscribe { peer: self.peer });
        }
        // Dropping the guard closes the connection and frees its port.
        self.pc = None;
        debug!(stream = %self.name, peer = %self.address, port = ?self.port, "WebRTC viewer freed");
    }
}

impl Handler<ViewerSignal> for WebrtcViewer {
    type Result = ();

    fn handle(&mut self, msg: ViewerSignal, ctx: &mut Context<Self>) {
        match msg {
            ViewerSignal::Answer(sdp) => {
                let Some(pc) = self.pc.as_ref().map(PeerGuard::connection) else {
                    return;
                };
                if self.offer.is_some() || self.remote_set {
                    return;
                }
                async move {
                    let description = RTCSessionDescription::answer(sdp)
                        .map_err(|e| format!("bad answer: {e}"))?;
                    pc.set_remote_description(description)
                        .await
                        .map_err(|e| format!("bad answer: {e}"))
                }
                .into_actor(self)
                .map(|result, viewer, ctx| match result {
                    Ok(()) => {
                        viewer.remote_set = true;
                        viewer.flush_candidates();
                    }
                    Err(reason) => viewer.finish(StreamStatus::Failed, reason, ctx),
                })
                .spawn(ctx);
            }
            ViewerSignal::Candidate(Some(candidate)) => {
                self.pending_candidates.push(candidate_init(candidate));
                self.flush_candidates();
            }
            ViewerSignal::Candidate(None) => {}
            ViewerSignal::Stop(reason) => self.finish(StreamStatus::Stopped, reason, ctx),
            ViewerSignal::Send { from, data } => {
                let (stream, client) = (self.stream.clone(), self.client.clone());
                let stream_id = self.stream_id.clone();
                actix_rt::spawn(async move {
                    let delivered = match stream {
                        Some(stream) => stream.send(ToPublisher { from, data }).await,
                        None => Ok(false),
                    };
                    if delivered != Ok(true) {
                        client.do_send(ToClient(
                            ProtocolError::new(
                                "not_playing",
                                "nobody takes messages: the stream has no publisher now, or \
                                 one that is not a signalling client",
                                Some(stream_id),
                            )
                            .to_message(),
                        ));
                    }
                });
            }
        }
    }
}

impl Handler<PeerEvent> for WebrtcViewer {
    type Result = ();

    fn handle(&mut self, msg: PeerEvent, ctx: &mut Context<Self>) {
        match msg {
            PeerEvent::Candidate(candidate) => {
                let candidate = candidate.map(candidate_message);
                self.client.do_send(ToClient(ServerMessage::Candidate {
                    stream_id: self.stream_id.clone(),
                    candidate,
                }));
            }
            // Viewers receive nothing.
            PeerEvent::Track(_) => {}
            PeerEvent::State(state) => {
                debug!(stream = %self.name, peer = %self.address, %state, "peer connection state");
                match state {
                    RTCPeerConnectionState::Connected if !self.connected => {
                        self.connected = true;
                        self.start_pump(ctx);
                    }
                    RTCPeerConnectionState::Failed => {
                        self.finish(StreamStatus::Failed, "peer connection failed".into(), ctx)
                    }
                    RTCPeerConnectionState::Closed => {
                        self.finish(StreamStatus::Stopped, "peer connection closed".into(), ctx)
                    }
                    _ => {}
                }
            }
        }
    }
}

impl StreamHandler<PumpEvent> for WebrtcViewer {
    fn handle(&mut self, event: PumpEvent, ctx: &mut Context<Self>) {
        match event {
            PumpEvent::Playing | PumpEvent::Republished => {
                let info = self.negotiated.as_ref().map(|n| n.info.clone());
                if event == PumpEvent::Playing {
                    info!(stream = %self.name, peer = %self.address, id = %self.stream_id, "WebRTC playing");
                }
                self.status(StreamStatus::Playing, None, info);
            }
            PumpEvent::Unpublished => self.status(StreamStatus::Unpublished, None, None),
            PumpEvent::NotEnoughBandwidth { dropped } => {
                warn!(stream = %self.name, peer = %self.address, dropped, "WebRTC viewer behind, skipped to a keyframe");
                self.status(
                    StreamStatus::NotEnoughBandwidth,
                    Some(format!("{dropped} frames skipped")),
                    None,
                );
            }
            PumpEvent::Ended(reason) => {
                let status = if reason.starts_with("not enough bandwidth") {
                    StreamStatus::Failed
                } else {
                    StreamStatus::Stopped
                };
                self.finish(status, reason, ctx);
            }
        }
    }

    fn finished(&mut self, _: &mut Context<Self>) {}
}

impl Handler<PlayerCommand> for WebrtcViewer {
    type Result = ();

    fn handle(&mut self, msg: PlayerCommand, ctx: &mut Context<Self>) {
        // The stream already forgot this viewer.
        self.stream = None;
        let (status, reason) = msg.browser_status();
        self.finish(status, reason, ctx);
    }
}
