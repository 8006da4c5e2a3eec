//! The WebSocket endpoints: `/ws`, signalling sessions for browsers, and `/ws/play`, media as
//! fMP4 for MSE players (see `web/sdk/PROTOCOL.md`).

pub mod media;
mod session;

pub use session::{SessionContext, WsSession};

use mediarouter_core::camera::{is_camera_url, CameraUrl};
use mediarouter_core::media::{QueryParams, StreamName};

/// The stream a client names: a camera URL (its stream under `rtsp/`), `app/name`, or a bare
/// name in `app`. Errs on a camera URL that does not parse.
pub fn requested_stream(
    requested: &str,
    app: &str,
) -> Result<(StreamName, Option<CameraUrl>), String> {
    let requested = requested.trim();
    if is_camera_url(requested) {
        let camera = CameraUrl::parse(requested).map_err(|e| format!("bad camera URL: {e}"))?;
        return Ok((StreamName::new("rtsp", camera.masked()), Some(camera)));
    }
    let name = match requested.split_once('/') {
        Some((app, name)) if !app.is_empty() && !name.is_empty() => StreamName::new(app, name),
        _ => StreamName::new(app, requested.trim_matches('/')),
    };
    Ok((name, None))
}

use actix_web::{web, HttpRequest, HttpResponse};
use actix_web_actors::ws;

/// Largest WebSocket frame accepted: SDP offers are a few kilobytes; anything much bigger is
/// junk and ends the session with a protocol error.
const MAX_FRAME_BYTES: usize = 1024 * 1024;

pub async fn signalling(
    req: HttpRequest,
    payload: web::Payload,
    context: web::Data<SessionContext>,
) -> Result<HttpResponse, actix_web::Error> {
    let address = req
        .peer_addr()
        .map(|a| a.to_string())
        .unwrap_or_else(|| "unknown".into());
    let query = QueryParams::parse(req.query_string());
    ws::WsResponseBuilder::new(
        WsSession::new(address, query, context.into_inner()),
        &req,
        payload,
    )
    .frame_size(MAX_FRAME_BYTES)
    .start()
}
