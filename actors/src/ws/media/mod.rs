//! The media WebSocket `/ws/play?name=NAME`: a live stream as fragmented MP4 for Media Source
//! Extensions players (see "Media over WebSocket" in `web/sdk/PROTOCOL.md`).
//!
//! Each connection is a [`MediaPlayer`] actor (control: the stream, statuses, the client's
//! frames) and a [`MediaBody`] (data: the response body the HTTP layer pulls, so the socket's
//! pace sets the body's). They talk over one unbounded channel that carries only a handful of
//! commands per playback; media never goes through it.

mod body;
mod player;

use self::body::{BodyLimits, MediaBody, Progress};
use self::player::{MediaPlayer, PlayerSpec};
use crate::access::{Gate, Pass};
use crate::messages::PeerId;
use crate::registry::Registry;
use actix::prelude::*;
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use actix_web_actors::ws::{self, Frame, ProtocolError};
use bytes::BytesMut;
use futures_util::{Stream, StreamExt};
use mediarouter_core::access::ClientFacts;
use mediarouter_core::media::{QueryParams, StreamName};
use mediarouter_core::settings::WebsocketSettings;
use mediarouter_core::webrtc::signalling::StreamStatus;
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::codec::Decoder;
use tracing::debug;

/// Largest frame a client may send: it has nothing to send but a stop or a close.
const MAX_CLIENT_FRAME_BYTES: usize = 64 * 1024;

/// What every media WebSocket needs from the server.
pub struct MediaContext {
    pub registry: Addr<Registry>,
    pub default_app: String,
    pub settings: WebsocketSettings,
    /// `stream.player_max_lag_ms`.
    pub max_lag_ms: u64,
    pub gate: Arc<Gate>,
}

/// The socket descriptor of an HTTP connection, recorded when it is accepted (see
/// [`record_socket`]).
#[derive(Clone, Copy)]
pub struct ConnectionSocket(RawFd);

/// `HttpServer::on_connect` hook: remembers each connection's socket descriptor, so a media
/// WebSocket can take its own handle on the socket.
pub fn record_socket(connection: &dyn std::any::Any, data: &mut actix_web::dev::Extensions) {
    if let Some(tcp) = connection.downcast_ref::<actix_web::rt::net::TcpStream>() {
        data.insert(ConnectionSocket(tcp.as_raw_fd()));
    }
}

/// A handle of our own on the request's connection socket, with Nagle off (fragments are small
/// and latency matters) and the kernel's send buffer bounded (media queued there is invisible
/// to the slow-viewer policy).
fn own_socket(req: &HttpRequest, send_buffer_bytes: usize) -> Option<std::net::TcpStream> {
    let ConnectionSocket(fd) = *req.conn_data::<ConnectionSocket>()?;
    // SAFETY: the descriptor belongs to the connection this request arrived on, which the HTTP
    // layer keeps open at least until the handler returns; it is only borrowed to duplicate it.
    let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
    let socket = std::net::TcpStream::from(borrowed.try_clone_to_owned().ok()?);
    let _ = socket.set_nodelay(true);
    let _ = socket2::SockRef::from(&socket).set_send_buffer_size(send_buffer_bytes);
    Some(socket)
}

pub async fn play(
    req: HttpRequest,
    payload: web::Payload,
    context: web::Data<MediaContext>,
) -> Result<HttpResponse, actix_web::Error> {
    let query = QueryParams::parse(req.query_string());
    let requested = query.get("name").map(|n| n.trim()).unwrap_or_default();
    if requested.is_empty() {
        return Ok(bad_request(
            "query parameter 'name' is missing: /ws/play?name=live/test",
        ));
    }
    if query.get("appKey").is_some_and(|k| k.contains('/')) {
        return Ok(bad_request("'appKey' is one application name, without '/'"));
    }
    let app = query
        .get("appKey")
        .filter(|k| !k.is_empty())
        .unwrap_or(&context.default_app);
    let (name, camera) = match super::requested_stream(requested, app) {
        Ok(parsed) => parsed,
        Err(reason) => return Ok(bad_request(&reason)),
    };
    // The connection belongs to the application of the one stream it plays.
    let app = name.app.clone();
    let mut response = ws::handshake(&req)?;
    let address = req
        .peer_addr()
        .map(|a| a.to_string())
        .unwrap_or_else(|| "unknown".into());
    debug!(stream = %name, peer = %address, "media WebSocket opened");

    let context = context.into_inner();
    let peer = PeerId::next();
    let pass = Pass {
        gate: Arc::clone(&context.gate),
        client: Arc::new(ClientFacts {
            session_id: format!("ws-{}", peer.0),
            protocol: "websocket",
            address: address.clone(),
            app,
            query,
            custom: None,
            token: None,
        }),
        token: None,
    };
    let (commands, receiver) = mpsc::unbounded_channel();
    let progress = Arc::new(Progress::new());
    let body = MediaBody::new(
        name.clone(),
        address.clone(),
        receiver,
        Arc::clone(&progress),
        BodyLimits {
            max_delay: Duration::from_millis(context.settings.max_delay_ms),
            max_lag: Duration::from_millis(context.max_lag_ms),
            audio_merge: Duration::from_millis(context.settings.audio_merge_ms),
        },
    );
    let spec = PlayerSpec {
        peer,
        pass,
        name,
        camera,
        address,
        socket: own_socket(&req, context.settings.send_buffer_bytes),
        context,
        body: commands,
        progress,
    };
    MediaPlayer::create(move |ctx| {
        ctx.add_stream(client_frames(payload));
        MediaPlayer::new(spec)
    });
    Ok(response.streaming(body))
}

fn bad_request(reason: &str) -> HttpResponse {
    HttpResponse::build(StatusCode::BAD_REQUEST)
        .content_type("text/plain; charset=utf-8")
        .body(format!("{reason}\n"))
}

/// The client's WebSocket frames, decoded from the request payload.
fn client_frames(payload: web::Payload) -> impl Stream<Item = Result<Frame, ProtocolError>> {
    let codec = actix_http::ws::Codec::new().max_size(MAX_CLIENT_FRAME_BYTES);
    futures_util::stream::unfold(
        (payload, codec, BytesMut::new(), false),
        |(mut payload, mut codec, mut buf, failed)| async move {
            if failed {
                return None;
            }
            loop {
                match codec.decode(&mut buf) {
                    Ok(Some(frame)) => return Some((Ok(frame), (payload, codec, buf, false))),
                    Ok(None) => {}
                    // After a protocol error the rest of the input means nothing.
                    Err(e) => return Some((Err(e), (payload, codec, buf, true))),
                }
                match payload.next().await {
                    Some(Ok(bytes)) => buf.extend_from_slice(&bytes),
                    Some(Err(e)) => {
                        let error = ProtocolError::Io(std::io::Error::other(e.to_string()));
                        return Some((Err(error), (payload, codec, buf, true)));
                    }
                    None => return None,
                }
            }
        },
    )
}

/// A `status` message of the media WebSocket (the signalling one without `streamId`).
pub fn status_json(
    name: &StreamName,
    status: StreamStatus,
    reason: Option<&str>,
    info: Option<serde_json::Value>,
) -> String {
    let mut message = serde_json::json!({
        "type": "status",
        "name": name.to_string(),
        "status": status,
    });
    if let Some(reason) = reason {
        message["reason"] = reason.into();
    }
    if let Some(info) = info {
        message["info"] = info;
    }
    message.to_string()
}
