//! The benchmark's publisher: replays a media file (MP4 or FLV, H.264 + AAC) over RTMP in real
//! time, in a loop, each video frame stamped with the wall clock when it is sent (see
//! [`crate::stamp`]).
//!
//! Invariants: frames leave at their file time (never early), in DTS order; timestamps keep
//! growing across loops; the stamp is taken just before the frame's write.

use crate::rtmp::{Conn, RtmpUrl};
use crate::stamp;
use bytes::{BufMut, BytesMut};
use mediarouter_core::codec::flv;
use mediarouter_core::media::TrackKind;
use mediarouter_core::vod::VodFile;
use serde_json::{json, Value};
use std::path::Path;
use std::time::{Duration, Instant};

pub async fn run(url: &str, file: &Path, seconds: f64) -> Result<Value, String> {
    let url = RtmpUrl::parse(url)?;
    let mut media = VodFile::open(file).map_err(|e| format!("{}: {e}", file.display()))?;
    let loop_us = media.info().duration_ms as i64 * 1000;
    if loop_us <= 0 {
        return Err("the file has no duration".into());
    }
    let mut conn = Conn::open(&url).await?;
    let stream = conn.publish(&url.name).await?;
    for config in media.configs() {
        if let Some(header) = flv::config_header(&config) {
            let type_id = flv::message_type(config.codec);
            conn.send_media(stream, type_id, 0, header.as_slice(), &config.data)
                .await?;
        }
    }
    let start = Instant::now();
    let end = start + Duration::from_secs_f64(seconds);
    let (mut offset_us, mut first_dts) = (0i64, None);
    let (mut video, mut audio) = (0u64, 0u64);
    while Instant::now() < end {
        let frame = match media.next_frame().map_err(|e| e.to_string())? {
            Some(frame) => frame,
            None => {
                media.seek(0).map_err(|e| e.to_string())?;
                offset_us += loop_us;
                continue;
            }
        };
        let first = *first_dts.get_or_insert(frame.dts_us);
        let at_us = frame.dts_us - first + offset_us;
        let due = start + Duration::from_micros(at_us.max(0) as u64);
        tokio::time::sleep_until(due.into()).await;
        let Some(header) = flv::frame_header(&frame) else {
            continue;
        };
        let ts = (at_us / 1000) as u32;
        let type_id = flv::message_type(frame.codec);
        if frame.track() == TrackKind::Video {
            let sei = stamp::sei(stamp::now_us());
            let mut body = BytesMut::with_capacity(sei.len() + frame.payload.len());
            body.put_slice(&sei);
            body.put_slice(&frame.payload);
            conn.send_media(stream, type_id, ts, header.as_slice(), &body.freeze())
                .await?;
            video += 1;
        } else {
            conn.send_media(stream, type_id, ts, header.as_slice(), &frame.payload)
                .await?;
            audio += 1;
        }
    }
    Ok(
        json!({ "video_frames": video, "audio_frames": audio, "seconds": start.elapsed().as_secs_f64() }),
    )
}
