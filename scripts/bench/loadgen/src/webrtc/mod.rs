//! Lean WebRTC subscribers for the fan-out benchmark: hundreds on one core, each a receive-only
//! ICE-lite peer on a UDP socket of its own, signalled by mediarouter's WebSocket protocol or
//! Janus' HTTP API (streaming plugin), counting RTP packets, frames and bytes, and the delay of
//! each video frame from the publisher's stamp.
//!
//! - [`sdp`]: the offer's parts we need, and our answer (ICE-lite, `setup:active`, recvonly,
//!   H.264 packetization-mode=1 + Opus, one host candidate).
//! - [`stun`]: checks and answers the server's Binding requests.
//! - [`peer`]: the subscriber: ICE-lite, DTLS client, SRTP keys, counting.
//! - [`rtp`]: RTP headers and the stamp in an H.264 payload.
//! - [`signal`]: the two signalling adapters.
//!
//! Invariants: a subscriber never panics on what a server sends and ends only itself; the
//! report says how many failed and why.

mod peer;
mod rtp;
mod sdp;
mod signal;
mod stun;

pub use peer::{run, Identity};
pub use signal::Target;

use crate::stats::{self, Histogram, PlayerCount};
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// Datagrams the kernel dropped at this process's UDP sockets because their receive buffers
/// were full (the drops column of /proc/net/udp, for the sockets among /proc/self/fd): loss
/// that is the load's, not the server's.
pub fn own_udp_drops() -> u64 {
    let Ok(fds) = std::fs::read_dir("/proc/self/fd") else {
        return 0;
    };
    let inodes: std::collections::HashSet<String> = fds
        .filter_map(|fd| std::fs::read_link(fd.ok()?.path()).ok())
        .filter_map(|target| {
            let target = target.to_string_lossy().into_owned();
            Some(
                target
                    .strip_prefix("socket:[")?
                    .strip_suffix(']')?
                    .to_string(),
            )
        })
        .collect();
    let Ok(table) = std::fs::read_to_string("/proc/net/udp") else {
        return 0;
    };
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            // Field 9 is the inode, the last one the drops.
            let drops = fields.last()?.parse::<u64>().ok()?;
            inodes.contains(*fields.get(9)?).then_some(drops)
        })
        .sum()
}

/// Distinct errors shown in a report, with how many subscribers had each.
const ERRORS_SHOWN: usize = 5;

/// What the subscribers of one server saw: [`stats::report`] plus packets (for CPU per
/// packet), the SRTP profiles negotiated and the subscribers' errors.
pub fn report(players: &[PlayerCount], delay: &Histogram, window_s: f64) -> Value {
    let mut report = stats::report(players, delay, window_s);
    let video: u64 = players.iter().map(|p| p.video_packets).sum();
    let audio: u64 = players.iter().map(|p| p.audio_packets).sum();
    let payload: u64 = players.iter().map(|p| p.payload_bytes).sum();
    let mut profiles: BTreeMap<&str, usize> = BTreeMap::new();
    for p in players {
        *profiles
            .entry(p.srtp_profile.unwrap_or("none"))
            .or_default() += 1;
    }
    let mut errors: BTreeMap<&str, usize> = BTreeMap::new();
    for e in players.iter().filter_map(|p| p.error.as_deref()) {
        *errors.entry(e).or_default() += 1;
    }
    let mut errors: Vec<(&str, usize)> = errors.into_iter().collect();
    errors.sort_by_key(|(_, n)| std::cmp::Reverse(*n));
    errors.truncate(ERRORS_SHOWN);
    report["video_packets"] = json!(video);
    report["audio_packets"] = json!(audio);
    report["packets_per_s"] = json!((video + audio) as f64 / window_s);
    report["payload_mbit_per_s"] = json!(payload as f64 * 8.0 / window_s / 1e6);
    report["decrypt_errors"] = json!(players.iter().map(|p| p.decrypt_errors).sum::<u64>());
    report["srtp_profiles"] = json!(profiles);
    report["error_kinds"] = errors
        .into_iter()
        .map(|(e, n)| json!({"error": e, "subscribers": n}))
        .collect();
    report
}
