//! What the players saw: per-player counts and shared histograms of delays, summarised as JSON.
//!
//! Invariant: recording is O(1) and allocation-free (fixed buckets), so a thousand players on one
//! core spend their time reading sockets, not counting.

use serde_json::{json, Value};

/// Buckets of 50 µs up to 100 ms, then of 5 ms up to 10 s; beyond: the last bucket.
const FINE_US: u64 = 50;
const FINE_BUCKETS: usize = 2000;
const COARSE_US: u64 = 5000;
const COARSE_BUCKETS: usize = 1980;

/// A histogram of durations in microseconds.
pub struct Histogram {
    counts: Vec<u64>,
    total: u64,
    max_us: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            counts: vec![0; FINE_BUCKETS + COARSE_BUCKETS],
            total: 0,
            max_us: 0,
        }
    }
}

impl Histogram {
    pub fn record(&mut self, us: u64) {
        let fine_end = FINE_US * FINE_BUCKETS as u64;
        let bucket = if us < fine_end {
            (us / FINE_US) as usize
        } else {
            (FINE_BUCKETS + ((us - fine_end) / COARSE_US) as usize).min(self.counts.len() - 1)
        };
        self.counts[bucket] += 1;
        self.total += 1;
        self.max_us = self.max_us.max(us);
    }

    /// Upper edge of the bucket holding quantile `q` (0..=1), in milliseconds.
    fn quantile_ms(&self, q: f64) -> f64 {
        if self.total == 0 {
            return 0.0;
        }
        let rank = ((self.total as f64) * q).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, count) in self.counts.iter().enumerate() {
            seen += count;
            if seen >= rank {
                let edge_us = if i < FINE_BUCKETS {
                    (i as u64 + 1) * FINE_US
                } else {
                    FINE_US * FINE_BUCKETS as u64 + (i - FINE_BUCKETS + 1) as u64 * COARSE_US
                };
                return edge_us.min(self.max_us) as f64 / 1000.0;
            }
        }
        self.max_us as f64 / 1000.0
    }

    pub fn summary(&self) -> Value {
        json!({
            "samples": self.total,
            "p50_ms": self.quantile_ms(0.50),
            "p90_ms": self.quantile_ms(0.90),
            "p99_ms": self.quantile_ms(0.99),
            "max_ms": self.max_us as f64 / 1000.0,
        })
    }
}

/// What one player counted.
#[derive(Default, Clone, Debug)]
pub struct PlayerCount {
    pub video_frames: u64,
    pub audio_frames: u64,
    pub bytes: u64,
    /// From the start of the connection to the first video frame.
    pub first_frame_us: Option<u64>,
    /// Why it stopped early, if it did.
    pub error: Option<String>,
    /// WebRTC subscribers: RTP packets of each kind, and their payload bytes (without RTP
    /// header and SRTP tag), inside the window.
    pub video_packets: u64,
    pub audio_packets: u64,
    pub payload_bytes: u64,
    /// WebRTC subscribers: the SRTP protection profile DTLS negotiated, and the frame starts
    /// whose SRTP packets did not decrypt.
    pub srtp_profile: Option<&'static str>,
    pub decrypt_errors: u64,
}

/// min / median / max of a list.
fn spread(mut values: Vec<u64>) -> Value {
    if values.is_empty() {
        return json!(null);
    }
    values.sort_unstable();
    json!({
        "min": values[0],
        "median": values[values.len() / 2],
        "max": values[values.len() - 1],
    })
}

/// Everything the players of one protocol saw.
pub fn report(players: &[PlayerCount], delay: &Histogram, window_s: f64) -> Value {
    let mut first = Histogram::default();
    for us in players.iter().filter_map(|p| p.first_frame_us) {
        first.record(us);
    }
    let errors: Vec<&str> = players.iter().filter_map(|p| p.error.as_deref()).collect();
    let bytes: u64 = players.iter().map(|p| p.bytes).sum();
    json!({
        "players": players.len(),
        "played": players.iter().filter(|p| p.video_frames > 0).count(),
        "errors": errors.len(),
        "first_error": errors.first(),
        "video_frames": spread(players.iter().map(|p| p.video_frames).collect()),
        "audio_frames": spread(players.iter().map(|p| p.audio_frames).collect()),
        "bytes": bytes,
        "mbit_per_s": bytes as f64 * 8.0 / window_s / 1e6,
        "first_frame": first.summary(),
        "delay": delay.summary(),
    })
}
