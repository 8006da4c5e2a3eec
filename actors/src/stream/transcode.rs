//! Audio transcoders of one stream: AAC made into Opus for WebRTC viewers, Opus (WebRTC
//! publishers) made into AAC for RTMP and WebSocket players, and G.711 (cameras) made into AAC
//! for WebSocket players, each once for all players that need it, by a task that reads the
//! stream's fan-out like a player and pushes its output back into the same hub.
//!
//! Invariants: at most one transcoder per stream and target codec (the stream owns the task
//! and aborts it when the last viewer needing it leaves); it never blocks the fan-out (a lagging
//! transcoder skips, and its timestamps tell the encoder about the gap); output belongs to the
//! publish epoch its input came from; a transcoder only reads the source's own audio (checked
//! against the hub's source configuration), never another transcoder's output.

use super::MediaHub;
use bytes::Bytes;
use mediarouter_core::codec::audio::{AacToOpus, AudioError, G711Law, G711ToAac, OpusToAac};
use mediarouter_core::media::{Codec, Frame, MediaPacket, StreamName, TrackConfig};
use std::sync::Arc;
use tokio::sync::broadcast::error::RecvError;
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

/// One direction of audio transcoding, as the shared loop below drives it.
trait AudioTranscoder: Send + Sized + 'static {
    /// The source codecs it takes.
    const INPUT: &'static [Codec];
    const OUTPUT: Codec;
    /// Made for the source's own audio configuration.
    fn create(source: &TrackConfig) -> Result<Self, AudioError>;
    /// The configuration players need before the output frames (AAC's AudioSpecificConfig).
    fn output_config(&self) -> Option<Bytes>;
    /// Output payloads with their timestamps, for one input frame.
    fn push(&mut self, payload: &[u8], dts_us: i64) -> Result<Vec<(Bytes, i64)>, AudioError>;
}

impl AudioTranscoder for AacToOpus {
    const INPUT: &'static [Codec] = &[Codec::Aac];
    const OUTPUT: Codec = Codec::Opus;

    fn create(source: &TrackConfig) -> Result<Self, AudioError> {
        AacToOpus::new(&source.data)
    }

    fn output_config(&self) -> Option<Bytes> {
        None
    }

    fn push(&mut self, payload: &[u8], dts_us: i64) -> Result<Vec<(Bytes, i64)>, AudioError> {
        Ok(AacToOpus::push(self, payload, dts_us)?
            .into_iter()
            .map(|p| (p.data, p.pts_us))
            .collect())
    }
}

impl AudioTranscoder for OpusToAac {
    const INPUT: &'static [Codec] = &[Codec::Opus];
    const OUTPUT: Codec = Codec::Aac;

    fn create(_: &TrackConfig) -> Result<Self, AudioError> {
        // WebRTC always signals opus/48000/2; a mono sender decodes fine as stereo.
        OpusToAac::new(2)
    }

    fn output_config(&self) -> Option<Bytes> {
        Some(self.audio_specific_config())
    }

    fn push(&mut self, payload: &[u8], dts_us: i64) -> Result<Vec<(Bytes, i64)>, AudioError> {
        Ok(OpusToAac::push(self, payload, dts_us)?
            .into_iter()
            .map(|u| (u.data, u.dts_us))
            .collect())
    }
}

impl AudioTranscoder for G711ToAac {
    const INPUT: &'static [Codec] = &[Codec::Pcma, Codec::Pcmu];
    const OUTPUT: Codec = Codec::Aac;

    fn create(source: &TrackConfig) -> Result<Self, AudioError> {
        // G.711 has no configuration bytes: the codec names the law.
        let law = G711Law::from_codec(source.codec)
            .ok_or_else(|| AudioError::Config(format!("{} is not G.711", source.codec.name())))?;
        G711ToAac::new(law)
    }

    fn output_config(&self) -> Option<Bytes> {
        Some(self.audio_specific_config())
    }

    fn push(&mut self, payload: &[u8], dts_us: i64) -> Result<Vec<(Bytes, i64)>, AudioError> {
        Ok(G711ToAac::push(self, payload, dts_us)?
            .into_iter()
            .map(|u| (u.data, u.dts_us))
            .collect())
    }
}

/// Starts the transcoder of a stream's audio from `from` to `to`, if there is one for that
/// pair: AAC → Opus (RTMP/RTSP sources, WebRTC viewers), Opus → AAC (WebRTC publishers, RTMP
/// and WebSocket players), G.711 → AAC (cameras, WebSocket players).
pub fn spawn(
    from: Codec,
    to: Codec,
    hub: Arc<MediaHub>,
    name: StreamName,
) -> Option<JoinHandle<()>> {
    let task = match (from, to) {
        (Codec::Aac, Codec::Opus) => tokio::spawn(transcode::<AacToOpus>(hub, name.clone())),
        (Codec::Opus, Codec::Aac) => tokio::spawn(transcode::<OpusToAac>(hub, name.clone())),
        (Codec::Pcma | Codec::Pcmu, Codec::Aac) => {
            tokio::spawn(transcode::<G711ToAac>(hub, name.clone()))
        }
        _ => return None,
    };
    info!(stream = %name, from = %from.name(), to = %to.name(), "audio transcoder started");
    Some(task)
}

/// Reads the stream like a player (cached frames are in the past: only what comes next) and
/// pushes the transcoded audio back. The transcoder is made at the first input frame from the
/// source's configuration, and made again when that configuration or the publisher changes.
async fn transcode<T: AudioTranscoder>(hub: Arc<MediaHub>, name: StreamName) {
    let (_, mut receiver) = hub.subscribe();
    let mut epoch = hub.epoch();
    let mut transcoder: Option<T> = None;
    let mut errors: u64 = 0;
    loop {
        match receiver.recv().await {
            Ok(MediaPacket::Frame(frame)) if T::INPUT.contains(&frame.codec) => {
                if transcoder.is_none() {
                    transcoder = create::<T>(&hub, epoch, frame.dts_us, &name);
                }
                let Some(t) = transcoder.as_mut() else {
                    continue;
                };
                match t.push(&frame.payload, frame.dts_us) {
                    Ok(outputs) => {
                        for (payload, dts_us) in outputs {
                            hub.push_derived(
                                epoch,
                                Frame::new(T::OUTPUT, dts_us, 0, true, payload),
                            );
                        }
                    }
                    Err(e) => {
                        errors += 1;
                        if errors.is_power_of_two() {
                            warn!(stream = %name, errors, from = %frame.codec.name(), "audio frame not transcoded: {e}");
                        }
                    }
                }
            }
            Ok(MediaPacket::Config(config)) if T::INPUT.contains(&config.codec) => {
                // The source changed its audio: start over with the new configuration.
                transcoder = None;
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

/// A transcoder for the source's audio, if the source's audio is `T::INPUT` (frames of that
/// codec made by another transcoder are not a source), with its output configuration pushed.
fn create<T: AudioTranscoder>(
    hub: &MediaHub,
    epoch: u32,
    dts_us: i64,
    name: &StreamName,
) -> Option<T> {
    let source = hub.configs().1.filter(|c| T::INPUT.contains(&c.codec))?;
    match T::create(&source) {
        Ok(t) => {
            if let Some(data) = t.output_config() {
                hub.push_derived_config(
                    epoch,
                    TrackConfig {
                        codec: T::OUTPUT,
                        data,
                        dts_us,
                        info: Default::default(),
                    },
                );
            }
            Some(t)
        }
        Err(e) => {
            warn!(stream = %name, from = %source.codec.name(), "audio cannot be transcoded: {e}");
            None
        }
    }
}
