//! The benchmark's publisher: replays a media file (MP4 or FLV, H.264 + AAC) over RTMP in real
//! time, in a loop, each video frame stamped with the wall clock when it is sent (see
//! [`crate::stamp`]).
//!
//! Invariants: frames leave at their file time (never early), in DTS order; timestamps keep
//! growing across loops; the stamp is taken just before the frame's write.

use crate::rtmp::{Conn, RtmpUrl};
use crate::stamp;
use mediarouter_core::codec::flv;
use mediarouter_core::media::{Frame, TrackConfig, TrackKind};
use mediarouter_core::vod::VodFile;
use serde_json::{json, Value};
use std::path::Path;
use std::time::{Duration, Instant};

/// A media file played in real time, in a loop, for every publisher of the load.
pub struct Replay {
    media: VodFile,
    loop_us: i64,
    start: Instant,
    end: Instant,
    offset_us: i64,
    first_dts: Option<i64>,
}

impl Replay {
    pub fn open(file: &Path) -> Result<Replay, String> {
        let media = VodFile::open(file).map_err(|e| format!("{}: {e}", file.display()))?;
        let loop_us = media.info().duration_ms as i64 * 1000;
        if loop_us <= 0 {
            return Err("the file has no duration".into());
        }
        let now = Instant::now();
        Ok(Replay {
            media,
            loop_us,
            start: now,
            end: now,
            offset_us: 0,
            first_dts: None,
        })
    }

    pub fn configs(&self) -> Vec<TrackConfig> {
        self.media.configs()
    }

    /// Starts the clock: frames are due from now on, for `seconds`.
    pub fn begin(&mut self, seconds: f64) {
        self.start = Instant::now();
        self.end = self.start + Duration::from_secs_f64(seconds);
    }

    pub fn elapsed_s(&self) -> f64 {
        self.start.elapsed().as_secs_f64()
    }

    /// The next frame and its time since the start (µs, growing across loops), once that time
    /// has come; `None` when the time is up.
    pub async fn next(&mut self) -> Result<Option<(Frame, i64)>, String> {
        while Instant::now() < self.end {
            let Some(frame) = self.media.next_frame().map_err(|e| e.to_string())? else {
                self.media.seek(0).map_err(|e| e.to_string())?;
                self.offset_us += self.loop_us;
                continue;
            };
            let first = *self.first_dts.get_or_insert(frame.dts_us);
            let at_us = frame.dts_us - first + self.offset_us;
            let due = self.start + Duration::from_micros(at_us.max(0) as u64);
            tokio::time::sleep_until(due.into()).await;
            return Ok(Some((frame, at_us)));
        }
        Ok(None)
    }
}

pub async fn run(url: &str, file: &Path, seconds: f64) -> Result<Value, String> {
    let url = RtmpUrl::parse(url)?;
    let mut replay = Replay::open(file)?;
    let mut conn = Conn::open(&url).await?;
    let stream = conn.publish(&url.name).await?;
    for config in replay.configs() {
        if let Some(header) = flv::config_header(&config) {
            let type_id = flv::message_type(config.codec);
            conn.send_media(stream, type_id, 0, header.as_slice(), &config.data)
                .await?;
        }
    }
    replay.begin(seconds);
    let (mut video, mut audio) = (0u64, 0u64);
    while let Some((frame, at_us)) = replay.next().await? {
        let Some(header) = flv::frame_header(&frame) else {
            continue;
        };
        let ts = (at_us / 1000) as u32;
        let type_id = flv::message_type(frame.codec);
        if frame.track() == TrackKind::Video {
            let body = stamp::stamped(&frame.payload);
            conn.send_media(stream, type_id, ts, header.as_slice(), &body)
                .await?;
            video += 1;
        } else {
            conn.send_media(stream, type_id, ts, header.as_slice(), &frame.payload)
                .await?;
            audio += 1;
        }
    }
    Ok(json!({ "video_frames": video, "audio_frames": audio, "seconds": replay.elapsed_s() }))
}
