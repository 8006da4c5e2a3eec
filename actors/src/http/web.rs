//! Web pages and the JS SDK from `http.web_root`, served as static files on port 8080.
//! The WebSocket signalling endpoint (`/ws`) joins here with the WebRTC work.

use actix_web::{web, HttpResponse};
use std::path::PathBuf;

pub fn configure(cfg: &mut web::ServiceConfig, web_root: PathBuf) {
    if web_root.is_dir() {
        cfg.service(actix_files::Files::new("/", web_root).index_file("index.html"));
    } else {
        cfg.default_service(web::to(|| async {
            HttpResponse::NotFound()
                .content_type("text/plain; charset=utf-8")
                .body("mediarouter: web pages not found (set http.web_root)\n")
        }));
    }
}
