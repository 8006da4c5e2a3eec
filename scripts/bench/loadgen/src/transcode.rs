//! The cost of the audio transcoders a stream runs for its players (AAC → Opus for WebRTC
//! viewers, Opus → AAC for RTMP and WebSocket ones): the AAC track of a media file through the
//! server's own transcoder, timed on this thread's CPU clock, as a share of one core per stream
//! in real time.
//!
//! Invariant: the figure is this thread's CPU time (/proc/thread-self/stat), not wall time, so
//! other load on the machine does not inflate it.

use mediarouter_core::codec::audio::AacToOpus;
use mediarouter_core::media::Codec;
use mediarouter_core::vod::VodFile;
use serde_json::{json, Value};
use std::path::Path;
use std::time::Instant;

/// Transcodes the file's AAC `rounds` times over; returns the cost per stream.
pub fn aac_to_opus(file: &Path, rounds: u32) -> Result<Value, String> {
    let mut media = VodFile::open(file).map_err(|e| format!("{}: {e}", file.display()))?;
    let asc = media
        .configs()
        .into_iter()
        .find(|c| c.codec == Codec::Aac)
        .ok_or("the file has no AAC track")?
        .data;
    let mut frames = Vec::new();
    while let Some(frame) = media.next_frame().map_err(|e| e.to_string())? {
        if frame.codec == Codec::Aac {
            frames.push(frame);
        }
    }
    let (first, last) = match (frames.first(), frames.last()) {
        (Some(f), Some(l)) => (f.dts_us, l.dts_us),
        _ => return Err("the file has no AAC frames".into()),
    };
    // Each AAC frame lasts 1024 samples: the audio's length is its last frame's end.
    let frame_us = (last - first) / (frames.len().max(2) as i64 - 1);
    let audio_s = ((last - first + frame_us) as f64 / 1e6) * f64::from(rounds);
    let (started, cpu_before) = (Instant::now(), thread_cpu_s());
    let mut packets = 0usize;
    for round in 0..i64::from(rounds) {
        let mut transcoder = AacToOpus::new(&asc).map_err(|e| e.to_string())?;
        let offset = round * (last - first + frame_us);
        for frame in &frames {
            packets += transcoder
                .push(&frame.payload, frame.dts_us + offset)
                .map_err(|e| e.to_string())?
                .len();
        }
    }
    let cpu_s = thread_cpu_s() - cpu_before;
    Ok(json!({
        "audio_seconds": audio_s,
        "wall_seconds": started.elapsed().as_secs_f64(),
        "cpu_seconds": cpu_s,
        "opus_packets": packets,
        "percent_of_a_core_per_stream": cpu_s / audio_s * 100.0,
        "streams_per_core": audio_s / cpu_s,
    }))
}

/// This thread's user + system CPU time in seconds (clock ticks of 10 ms).
fn thread_cpu_s() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/thread-self/stat") else {
        return 0.0;
    };
    let Some(close) = stat.rfind(')') else {
        return 0.0;
    };
    let fields: Vec<&str> = stat[close + 2..].split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}
