//! Port 8080: the web pages and JS SDK from `http.web_root`, the WebSocket signalling endpoint
//! `/ws`, the media WebSocket `/ws/play`, and (with `http.stream_list`) read-only copies of the REST listings for the Streams
//! page. Nothing here can change the server's state except through a signalling session.

use crate::http::rest::{self, RestState};
use crate::ws::media::MediaContext;
use crate::ws::{self, SessionContext};
use actix_web::{web, HttpResponse};
use std::path::PathBuf;
use std::sync::Arc;

pub struct WebState {
    pub web_root: PathBuf,
    /// The signalling endpoint, when WebRTC is enabled.
    pub signalling: Option<Arc<SessionContext>>,
    /// The media WebSocket, when `websocket.enabled` is on.
    pub media: Option<Arc<MediaContext>>,
    /// The read-only listings, when `http.stream_list` is on.
    pub listings: Option<Arc<RestState>>,
}

pub fn configure(cfg: &mut web::ServiceConfig, state: &WebState) {
    if let Some(context) = &state.signalling {
        cfg.app_data(web::Data::from(Arc::clone(context)))
            .route("/ws", web::get().to(ws::signalling));
    }
    if let Some(context) = &state.media {
        cfg.app_data(web::Data::from(Arc::clone(context)))
            .route("/ws/play", web::get().to(ws::media::play));
    }
    if let Some(listings) = &state.listings {
        rest::configure_listings(cfg, Arc::clone(listings));
    }
    if state.web_root.is_dir() {
        cfg.service(actix_files::Files::new("/", &state.web_root).index_file("index.html"));
    } else {
        cfg.default_service(web::to(|| async {
            HttpResponse::NotFound()
                .content_type("text/plain; charset=utf-8")
                .body("mediarouter: web pages not found (set http.web_root)\n")
        }));
    }
}
