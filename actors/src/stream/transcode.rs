//! Audio transcoders of one stream: AAC made into Opus for WebRTC viewers, and Opus (WebRTC
//! publishers) made into AAC for RTMP players, each once for all players that need it, by a
//! task that reads the stream's fan-out like a player and pushes its output back into the same
//! hub.
//!
//! Invariants: at most one transcoder per stream and target codec (the stream owns the task
//! and aborts it when the last viewer needing it leaves); it never blocks the fan-out (a lagging
//! transcoder skips, and its timestamps tell the encoder about the gap); output belongs to the
//! publish epoch its input came from; a transcoder only reads the source's own audio (checked
//! against the hub's source configuration), never another transcoder's output.

use super::MediaHub;
use mediarouter_core::codec::audio::{AacToOpus, OpusToAac};
use mediarouter_core::media::{Codec, Frame, MediaPacket, StreamName, TrackConfig};
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
            if config.codec == Codec::Aac && is_source(&hub, config) {
                transcoder = start(&config.data, &name);
            }
        }
    }
    loop {
        match receiver.recv().await {
            Ok(MediaPacket::Config(config)) if config.codec == Codec::Aac => {
                if is_source(&hub, &config) {
                    transcoder = start(&config.data, &name);
                }
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

/// Whether `config` is the source's own audio configuration (not a transcoder's).
fn is_source(hub: &MediaHub, config: &TrackConfig) -> bool {
    hub.configs()
        .1
        .is_some_and(|source| source.codec == config.codec && source.data == config.data)
}

/// Starts the Opus → AAC transcoder of a stream (WebRTC publisher, RTMP players).
pub fn spawn_opus_to_aac(hub: Arc<MediaHub>, name: StreamName) -> JoinHandle<()> {
    info!(stream = %name, "Opus to AAC transcoder started");
    tokio::spawn(opus_to_aac(hub, name))
}

async fn opus_to_aac(hub: Arc<MediaHub>, name: StreamName) {
    let (_, mut receiver) = hub.subscribe();
    let mut epoch = hub.epoch();
    let mut transcoder: Option<OpusToAac> = None;
    let mut errors: u64 = 0;
    loop {
        match receiver.recv().await {
            Ok(MediaPacket::Frame(frame)) if frame.codec == Codec::Opus => {
                if transcoder.is_none() {
                    let source_is_opus = hub.configs().1.is_some_and(|c| c.codec == Codec::Opus);
                    if !source_is_opus {
                        continue;
                    }
                    match OpusToAac::new(2) {
                        Ok(t) => {
                            hub.push_derived_config(
                                epoch,
                                TrackConfig {
                                    codec: Codec::Aac,
                                    data: t.audio_specific_config(),
                                    dts_us: frame.dts_us,
                                    info: Default::default(),
                                },
                            );
                            transcoder = Some(t);
                        }
                        Err(e) => {
                            warn!(stream = %name, "Opus to AAC transcoder cannot start: {e}");
                            return;
                        }
                    }
                }
                let Some(t) = transcoder.as_mut() else {
                    continue;
                };
                match t.push(&frame.payload, frame.dts_us) {
                    Ok(units) => {
                        for unit in units {
                            hub.push_derived(
                                epoch,
                                Frame::new(Codec::Aac, unit.dts_us, 0, true, unit.data),
                            );
                        }
                    }
                    Err(e) => {
                        errors += 1;
                        if errors.is_power_of_two() {
                            warn!(stream = %name, errors, "Opus packet not transcoded: {e}");
                        }
                    }
                }
            }
            Ok(MediaPacket::Published { epoch: new }) => {
                epoch = new;
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
