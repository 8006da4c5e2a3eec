//! The WebSocket endpoint `/ws`: signalling sessions for browsers (see `web/sdk/PROTOCOL.md`).

mod session;

pub use session::{SessionContext, WsSession};

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
    ws::WsResponseBuilder::new(WsSession::new(address, context.into_inner()), &req, payload)
        .frame_size(MAX_FRAME_BYTES)
        .start()
}
