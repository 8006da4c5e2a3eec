//! Accepts RTMP connections and starts one connection actor per socket on a worker arbiter,
//! round-robin, so connections spread over the cores.

use super::connection::{ConnectionSettings, RtmpConnection};
use crate::messages::PeerId;
use crate::registry::Registry;
use actix::prelude::*;
use std::sync::Arc;
use tokio::net::TcpListener;
use tracing::{info, warn};

/// Accepts connections until the process ends.
pub async fn serve(
    listener: TcpListener,
    registry: Addr<Registry>,
    settings: Arc<ConnectionSettings>,
    workers: Vec<ArbiterHandle>,
) {
    if let Ok(address) = listener.local_addr() {
        info!(%address, "RTMP listening");
    }
    let mut next = 0usize;
    loop {
        let (socket, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors and the like: keep serving the others.
                warn!("RTMP accept failed: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = socket.set_nodelay(true);
        // A tokio socket belongs to the runtime that created it: hand it over as a std socket.
        let socket = match socket.into_std() {
            Ok(s) => s,
            Err(e) => {
                warn!(peer = %peer, "cannot hand over RTMP socket: {e}");
                continue;
            }
        };
        let worker = &workers[next % workers.len()];
        next = next.wrapping_add(1);
        let registry = registry.clone();
        let settings = Arc::clone(&settings);
        let started = worker.spawn(async move {
            match tokio::net::TcpStream::from_std(socket) {
                Ok(socket) => {
                    RtmpConnection::start_with(socket, peer, PeerId::next(), registry, settings);
                }
                Err(e) => warn!(peer = %peer, "cannot register RTMP socket: {e}"),
            }
        });
        if !started {
            warn!(peer = %peer, "worker thread gone; connection dropped");
        }
    }
}
