//! Audio transcoders of one stream: the stream's AAC made into Opus for WebRTC viewers, once for
//! all of them, by a task that reads the stream's fan-out like a player and pushes the Opus
//! frames back into the same hub.
//!
//! Invariants: at most one transcoder per stream and target codec (the stream owns the task
//! and aborts it when the last viewer needing it leaves); it never blocks the fan-out (a lagging
//! transcoder skips, and its timestamps tell the encoder about the gap); Opus frames belong to
//! the publish epoch whose AAC they were made from.

use super::MediaHub;
use mediarouter_core::codec::audio::AacToOpus;
use mediarouter_core::media::{Codec, Frame, MediaPacket, StreamName};
use std::sync::Arc;
use tokio::sync::broadcast::error::RecvError;
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

/// Starts the AAC → Opus transcoder of a stream.
pub fn spawn_aac_to_opus(hub: Arc<MediaHub>, name: StreamName) -> JoinHandle<()> {
    info!(stream = %name, "AAC to Opus transcoder started");
    tokio::spawn(aac_to_opus(hub, name))
}

async fn aac_to_opus(hub: Arc<MediaHub>, name: StreamName) {
    let (snapshot, mut receiver) = hub.subscribe();
    let mut epoch = hub.epoch();
    let mut transcoder = None;
    let mut errors: u64 = 0;
    // Cached frames are in the past: only the configuration matters from the snapshot.
    for packet in &snapshot {
        if let MediaPacket::Config(config) = packet {
            if config.codec == Codec::Aac {
                transcoder = start(&config.data, &name);
            }
        }
    }
    loop {
        match receiver.recv().await {
            Ok(MediaPacket::Config(config)) if config.codec == Codec::Aac => {
                transcoder = start(&config.data, &name);
            }
            Ok(MediaPacket::Frame(frame)) if frame.codec == Codec::Aac => {
                let Some(t) = transcoder.as_mut() else {
                    continue;
                };
                match t.push(&frame.payload, frame.dts_us) {
                    Ok(packets) => {
                        for packet in packets {
                            hub.push_derived(
                                epoch,
                                Frame::new(Codec::Opus, packet.pts_us, 0, true, packet.data),
                            );
                        }
                    }
                    Err(e) => {
                        errors += 1;
                        if errors.is_power_of_two() {
                            warn!(stream = %name, errors, "AAC frame not transcoded: {e}");
                        }
                    }
                }
            }
            Ok(MediaPacket::Published { epoch: new }) => {
                epoch = new;
                // The new publisher sends its own configuration.
                transcoder = None;
            }
            Ok(_) => {}
            Err(RecvError::Lagged(n)) => {
                debug!(stream = %name, skipped = n, "transcoder behind the stream, skipping");
            }
            Err(RecvError::Closed) => break,
        }
    }
}

fn start(asc: &[u8], name: &StreamName) -> Option<AacToOpus> {
    match AacToOpus::new(asc) {
        Ok(t) => {
            debug!(stream = %name, channels = t.channels(), "AAC to Opus transcoder configured");
            Some(t)
        }
        Err(e) => {
            warn!(stream = %name, "AAC configuration cannot be transcoded to Opus: {e}");
            None
        }
    }
}
