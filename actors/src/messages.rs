//! Every message between actors, in one place. Each says who sends it and what it returns.
//!
//! Frames never travel as actor messages: publishers push them into the stream's
//! [`MediaHub`](crate::stream::MediaHub) and players read them from its bounded fan-out.

use crate::rtsp::RtspPull;
use crate::stream::{MediaHub, Stream};
use actix::prelude::*;
use mediarouter_core::access::ClientFacts;
use mediarouter_core::camera::CameraUrl;
use mediarouter_core::media::{MediaPacket, QueryParams, StreamName};
use mediarouter_core::webrtc::signalling::StreamStatus;
use serde::Serialize;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::sync::broadcast;

/// Identity of one connection (publisher or player) for the lifetime of the process.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PeerId(pub u64);

impl PeerId {
    pub fn next() -> PeerId {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        PeerId(NEXT.fetch_add(1, Ordering::Relaxed))
    }
}

impl fmt::Display for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// Protocol of a publisher or player, as shown in REST answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Rtmp,
    /// A camera pulled over RTSP (as a publisher).
    Rtsp,
    /// A browser (or other WebRTC peer) signalled over the WebSocket.
    Webrtc,
    /// A media file played as a live stream (as a publisher).
    File,
    /// A browser playing fMP4 over a media WebSocket (as a player).
    Websocket,
}

/// Why a stream refused a publisher or player.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StreamError {
    #[error("stream {0} is already publishing")]
    AlreadyPublishing(StreamName),
    /// The stream is shutting down; ask the registry again.
    #[error("stream is closing")]
    Retired,
    /// Nothing can be played under this name (a media file that is missing or unreadable).
    #[error("{0}")]
    NotFound(String),
    /// Refused by the application (backend, token) or by a private stream.
    #[error("{0}")]
    Denied(String),
}

/// Players → Registry: the stream a play of `requested` attaches to. Files played as live
/// streams (`vod.live_app/NAME`, and `vod.app/NAME` for players other than RTMP) get their
/// publisher started here; other names are their own stream.
#[derive(Message)]
#[rtype(result = "Result<StreamName, StreamError>")]
pub struct PlayTarget {
    pub requested: StreamName,
    pub protocol: Protocol,
}

// ---- Registry ----

/// Connections → Registry: the stream of this name, created if missing. Returns its address.
#[derive(Message)]
#[rtype(result = "Addr<Stream>")]
pub struct FindOrCreateStream {
    pub name: StreamName,
}

/// REST → Registry: the stream of this name if it exists.
#[derive(Message)]
#[rtype(result = "Option<Addr<Stream>>")]
pub struct FindStream {
    pub name: StreamName,
}

/// REST → Registry: every stream, sorted by name.
#[derive(Message)]
#[rtype(result = "Vec<Addr<Stream>>")]
pub struct ListStreams;

/// Stream → Registry: nobody publishes or plays; remove me if I am still the registered
/// instance. Returns true when removed (the stream then stops).
#[derive(Message)]
#[rtype(result = "bool")]
pub struct StreamIdle {
    pub name: StreamName,
    pub instance: u64,
}

// ---- Stream ----

/// Publisher connection → Stream: start publishing. Returns the hub to push media into and
/// the token that identifies this publisher to it.
#[derive(Message, Clone)]
#[rtype(result = "Result<PublishGrant, StreamError>")]
pub struct Publish {
    pub peer: PeerId,
    pub protocol: Protocol,
    /// Peer address, or the masked camera URL for pulls.
    pub address: String,
    pub query: QueryParams,
    pub control: Recipient<PublisherCommand>,
    /// The client, when one asked (not for cameras and files): its backend hears `unpublish`.
    pub client: Option<Arc<ClientFacts>>,
    /// Played by one holder only (see [`Subscribe::holder`]).
    pub private: bool,
    /// The holder the publish named (its token's or its backend's `client`); `None`: the first
    /// player admitted.
    pub holder: Option<String>,
}

pub struct PublishGrant {
    pub hub: Arc<MediaHub>,
    pub token: u64,
}

/// Publisher connection → Stream: the publisher left (unpublish, disconnect).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Unpublish {
    pub peer: PeerId,
}

/// Player connection → Stream: attach a player. Returns the snapshot (metadata, configs, GOP)
/// and the fan-out receiver, taken together so no packet falls between them.
#[derive(Message, Clone)]
#[rtype(result = "Result<Subscription, StreamError>")]
pub struct Subscribe {
    pub peer: PeerId,
    pub protocol: Protocol,
    pub address: String,
    pub control: Recipient<PlayerCommand>,
    /// The client: its backend hears `stop` when this player leaves.
    pub client: Arc<ClientFacts>,
    /// Who the play was allowed to (`Gate::play`): a private stream takes its first holder
    /// only.
    pub holder: String,
}

pub struct Subscription {
    pub snapshot: Vec<MediaPacket>,
    pub receiver: broadcast::Receiver<MediaPacket>,
    /// Counter of bytes sent to players, shared by all players of the stream.
    pub bytes_out: Arc<AtomicU64>,
    pub publishing: bool,
    /// The stream's data plane, for players that take a fresh snapshot later (a WebRTC viewer
    /// starts its media only once its connection is up).
    pub hub: Arc<MediaHub>,
}

/// Player → Stream: the audio this player can take. When the source's audio is in a codec the
/// player does not take, the stream transcodes it to `codec` — one transcoder per source and
/// target codec, shared by all such players, running only while one is attached (the demand
/// ends with the player's `Unsubscribe`) and only while the source's audio needs it (a player
/// may subscribe before the publisher arrives).
#[derive(Message)]
#[rtype(result = "()")]
pub struct NeedAudio {
    pub peer: PeerId,
    pub codec: mediarouter_core::media::Codec,
    /// Whether the player takes a source audio codec as it is.
    pub takes: fn(mediarouter_core::media::Codec) -> bool,
}

/// Player → Stream: the player's decoder asked for a keyframe (a WebRTC viewer's PLI or FIR).
/// The stream passes it on to a publisher that can make one, rate-limited.
#[derive(Message)]
#[rtype(result = "()")]
pub struct KeyframeRequest {
    pub peer: PeerId,
}

/// Player connection → Stream: the player left.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Unsubscribe {
    pub peer: PeerId,
}

/// REST → Stream: a description of the stream.
#[derive(Message, Clone)]
#[rtype(result = "StreamInfo")]
pub struct GetStreamInfo;

/// REST or a failing camera pull → Stream: cut the publisher, tell the players (with
/// `player_code`, e.g. `NetStream.Play.Stop`), end the stream.
#[derive(Message)]
#[rtype(result = "()")]
pub struct TerminateStream {
    pub reason: String,
    pub player_code: &'static str,
}

// ---- RTSP pulls ----

/// Players and REST → Registry: the pull of this camera, started if missing. A REST start
/// (`on_demand: false`) of a camera already pulled is refused.
#[derive(Message)]
#[rtype(result = "Result<PullHandle, PullError>")]
pub struct EnsurePull {
    pub camera: CameraUrl,
    pub alias: Option<String>,
    pub on_demand: bool,
}

/// Players → Registry: the stream this camera's running pull publishes to, if it is pulled now
/// (a REST-started pull publishes under its alias). Lets a play be decided on the stream it
/// will join.
#[derive(Message)]
#[rtype(result = "Option<StreamName>")]
pub struct PulledAs {
    pub camera: CameraUrl,
}

pub struct PullHandle {
    pub pull: Addr<RtspPull>,
    pub stream: StreamName,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum PullError {
    #[error("camera {0} is already pulled")]
    AlreadyPulled(String),
    #[error("the server is shutting down")]
    ShuttingDown,
}

/// main → Registry at shutdown: refuse new camera pulls from now on; answers every pull, for
/// main to stop.
#[derive(Message)]
#[rtype(result = "Vec<Addr<RtspPull>>")]
pub struct ClosePulls;

/// REST → Registry: every pull.
#[derive(Message)]
#[rtype(result = "Vec<Addr<RtspPull>>")]
pub struct ListPulls;

/// REST → Registry: the pull of this camera key, if any.
#[derive(Message)]
#[rtype(result = "Option<Addr<RtspPull>>")]
pub struct FindPull {
    pub key: String,
}

/// Pull → Registry: I stopped; forget me if I am still the registered instance.
#[derive(Message)]
#[rtype(result = "()")]
pub struct PullStopped {
    pub key: String,
    pub instance: u64,
}

/// REST → Pull: a description of the pull.
#[derive(Message, Clone)]
#[rtype(result = "PullInfo")]
pub struct GetPullInfo;

/// REST → Pull: answers once the first connection attempt succeeded (the pull's description)
/// or failed (the reason).
#[derive(Message)]
#[rtype(result = "Result<PullInfo, String>")]
pub struct AwaitFirstAttempt;

/// REST → Pull: stop pulling and end the stream.
#[derive(Message)]
#[rtype(result = "()")]
pub struct StopPull {
    pub reason: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct PullInfo {
    pub uri: String,
    /// Stream name (the alias, or the masked URL) within `app`.
    pub name: String,
    pub app: String,
    pub status: &'static str,
    pub tracks: Vec<TrackReport>,
    pub viewers: usize,
    pub connected_since: Option<String>,
    pub reconnects: u64,
    pub on_demand: bool,
    pub last_error: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct TrackReport {
    pub media: String,
    pub codec: String,
    pub supported: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub clock_rate: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub channels: Option<u16>,
}

// ---- Commands from a stream to its connections ----

/// Stream → publisher connection.
#[derive(Message, Debug, Clone)]
#[rtype(result = "()")]
pub enum PublisherCommand {
    /// Stop publishing and close the connection.
    Stop { reason: String },
    /// A player needs a keyframe. Only publishers that can ask their encoder for one (WebRTC)
    /// act on it; the stream already limits how often it comes.
    RequestKeyframe,
    /// A viewer's message (signalling `send`) for the publisher's client; only publishers with
    /// a client that reads messages (WebRTC) pass it on.
    Message {
        from: String,
        data: serde_json::Value,
    },
}

/// Viewer → Stream: pass `data` from session `from` to the publisher. Returns false when the
/// stream has no publisher now.
#[derive(Message)]
#[rtype(result = "bool")]
pub struct ToPublisher {
    pub from: String,
    pub data: serde_json::Value,
}

/// Stream → player connection.
#[derive(Message, Debug, Clone)]
#[rtype(result = "()")]
pub enum PlayerCommand {
    /// End playback with this status code (e.g. `NetStream.Play.StreamNotFound`).
    Stop { code: String, description: String },
}

impl PlayerCommand {
    /// The final status of a browser player (WebRTC, WebSocket) told to stop: `FAILED` with
    /// the reason for a missing stream or a refusal, else `STOPPED`.
    pub fn browser_status(self) -> (StreamStatus, String) {
        match self {
            PlayerCommand::Stop { code, .. } if code.ends_with("StreamNotFound") => {
                (StreamStatus::Failed, "stream not found".into())
            }
            PlayerCommand::Stop { code, description } if code.ends_with("Failed") => {
                (StreamStatus::Failed, description)
            }
            PlayerCommand::Stop { description, .. } => (StreamStatus::Stopped, description),
        }
    }
}

// ---- REST view ----

#[derive(Debug, Clone, Serialize)]
pub struct StreamInfo {
    pub name: String,
    pub app: String,
    pub status: &'static str,
    pub publisher: Option<PublisherInfo>,
    pub video: Option<TrackView>,
    pub audio: Option<TrackView>,
    pub bitrate_in_kbps: u64,
    pub bitrate_out_kbps: u64,
    pub players: PlayerCounts,
    pub started_at: String,
    pub frames_in: u64,
    pub gop_cache_frames: usize,
    /// Played by one holder only.
    pub private: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct PublisherInfo {
    pub protocol: Protocol,
    pub address: String,
    pub query: std::collections::BTreeMap<String, String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct TrackView {
    pub codec: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub width: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub height: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub level: Option<String>,
    /// Video: whether B-frames (frames with a composition offset) came in this publish.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub b_frames: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sample_rate: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub channels: Option<u8>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct PlayerCounts {
    pub rtmp: usize,
    pub webrtc: usize,
    pub websocket: usize,
    pub total: usize,
}
