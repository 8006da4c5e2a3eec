//! The benchmark's publisher as plain RTP over UDP, for servers fed that way (Janus's streaming
//! plugin): replays the same file as [`crate::publish`] in real time, in a loop, with the same
//! stamp in every video frame, so the delay a WebRTC subscriber measures means the same whether
//! the server was fed RTMP (mediarouter) or RTP (Janus).
//!
//! - Video: H.264 packetized by the server's own packetizer (`packetize_h264`: single NAL units
//!   and FU-A, packetization-mode 1, payloads of at most 1200 bytes, SPS and PPS in front of
//!   every keyframe so that a subscriber joining late can start at the next one), payload type
//!   96, 90 kHz clock, marker bit on the last packet of each frame.
//! - Audio: the file's AAC through the server's own `AacToOpus` (what mediarouter runs for its
//!   WebRTC viewers), payload type 111, 48 kHz clock, one RTP packet per 20 ms Opus packet.
//!
//! Invariants: frames leave at their file time (never early), in DTS order, each frame's
//! packets in one burst as a camera or encoder sends them; the stamp is taken just before the
//! frame is packetized; SSRCs are fixed, sequence numbers and timestamps keep growing (modulo
//! 2^16 / 2^32) across loops of the file, so the receiver sees one unbroken stream.

use crate::publish::Replay;
use crate::stamp;
use bytes::{BufMut, BytesMut};
use mediarouter_core::codec::audio::AacToOpus;
use mediarouter_core::codec::rtp::{packetize_h264, H264Params, DEFAULT_MTU};
use mediarouter_core::media::Codec;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::path::Path;
use tokio::net::UdpSocket;

pub const VIDEO_PT: u8 = 96;
pub const AUDIO_PT: u8 = 111;
/// Fixed, so a server that locks onto the first SSRC it sees on a port keeps the stream after
/// the publisher restarts ("mr" + track number).
pub const VIDEO_SSRC: u32 = 0x6d72_0001;
pub const AUDIO_SSRC: u32 = 0x6d72_0002;
const VIDEO_CLOCK_HZ: i64 = 90_000;
const AUDIO_CLOCK_HZ: i64 = 48_000;

/// `HOST:VIDEO_PORT,AUDIO_PORT` (both on the same host) into the two destinations.
pub fn parse_destinations(text: &str) -> Result<(SocketAddr, SocketAddr), String> {
    let bad = || format!("--rtp wants HOST:VIDEO_PORT,AUDIO_PORT, not {text}");
    let (video, audio_port) = text.split_once(',').ok_or_else(bad)?;
    let video: SocketAddr = video.parse().map_err(|_| bad())?;
    let audio_port: u16 = audio_port.parse().map_err(|_| bad())?;
    Ok((video, SocketAddr::new(video.ip(), audio_port)))
}

/// One RTP stream's header state.
struct RtpStream {
    destination: SocketAddr,
    payload_type: u8,
    ssrc: u32,
    seq: u16,
    packets: u64,
    bytes: u64,
    /// Packets the kernel refused (UDP has no flow control; counted, not fatal).
    send_errors: u64,
}

impl RtpStream {
    fn new(destination: SocketAddr, payload_type: u8, ssrc: u32) -> RtpStream {
        RtpStream {
            destination,
            payload_type,
            ssrc,
            seq: 0,
            packets: 0,
            bytes: 0,
            send_errors: 0,
        }
    }

    /// Sends one packet with a 12-byte RTP header (no CSRC, no extension) in front of `payload`.
    async fn send(
        &mut self,
        socket: &UdpSocket,
        buf: &mut BytesMut,
        payload: &[u8],
        timestamp: u32,
        marker: bool,
    ) {
        buf.clear();
        buf.put_u8(0x80);
        buf.put_u8(self.payload_type | if marker { 0x80 } else { 0 });
        buf.put_u16(self.seq);
        buf.put_u32(timestamp);
        buf.put_u32(self.ssrc);
        buf.put_slice(payload);
        self.seq = self.seq.wrapping_add(1);
        match socket.send_to(buf, self.destination).await {
            Ok(_) => {
                self.packets += 1;
                self.bytes += buf.len() as u64;
            }
            Err(_) => self.send_errors += 1,
        }
    }

    fn report(&self) -> Value {
        json!({ "packets": self.packets, "bytes": self.bytes, "send_errors": self.send_errors })
    }
}

/// Microseconds to an RTP clock, wrapping as RTP timestamps do.
fn rtp_time(us: i64, clock_hz: i64) -> u32 {
    (us.max(0) as i128 * clock_hz as i128 / 1_000_000) as u32
}

pub async fn run(destinations: &str, file: &Path, seconds: f64) -> Result<Value, String> {
    let (video_to, audio_to) = parse_destinations(destinations)?;
    let mut replay = Replay::open(file)?;
    let configs = replay.configs();
    let params = configs
        .iter()
        .find(|c| c.codec == Codec::H264)
        .map(|c| H264Params::from_record(&c.data))
        .transpose()
        .map_err(|e| format!("H.264 configuration: {e}"))?
        .ok_or("the file has no H.264 track")?;
    let mut transcoder = configs
        .iter()
        .find(|c| c.codec == Codec::Aac)
        .map(|c| AacToOpus::new(&c.data))
        .transpose()
        .map_err(|e| format!("AAC configuration: {e}"))?;
    let bind: SocketAddr = if video_to.is_ipv4() {
        "0.0.0.0:0"
    } else {
        "[::]:0"
    }
    .parse()
    .map_err(|e| format!("{e}"))?;
    let socket = UdpSocket::bind(bind).await.map_err(|e| e.to_string())?;
    let mut video = RtpStream::new(video_to, VIDEO_PT, VIDEO_SSRC);
    let mut audio = RtpStream::new(audio_to, AUDIO_PT, AUDIO_SSRC);
    let mut buf = BytesMut::with_capacity(12 + DEFAULT_MTU);

    replay.begin(seconds);
    let (mut video_frames, mut audio_frames, mut transcode_errors) = (0u64, 0u64, 0u64);
    while let Some((frame, at_us)) = replay.next().await? {
        match frame.codec {
            Codec::H264 => {
                let body = stamp::stamped(&frame.payload);
                let payloads = packetize_h264(&body, frame.keyframe, Some(&params), DEFAULT_MTU);
                // RTP carries presentation time.
                let timestamp = rtp_time(at_us + i64::from(frame.cts_us), VIDEO_CLOCK_HZ);
                let last = payloads.len().saturating_sub(1);
                for (i, payload) in payloads.iter().enumerate() {
                    video
                        .send(&socket, &mut buf, payload, timestamp, i == last)
                        .await;
                }
                video_frames += 1;
            }
            Codec::Aac => {
                let Some(transcoder) = transcoder.as_mut() else {
                    continue;
                };
                audio_frames += 1;
                // The Opus packets carry their own clock, which starts at this unit's time.
                match transcoder.push(&frame.payload, at_us) {
                    Ok(packets) => {
                        for packet in packets {
                            let timestamp = rtp_time(packet.pts_us, AUDIO_CLOCK_HZ);
                            audio
                                .send(&socket, &mut buf, &packet.data, timestamp, false)
                                .await;
                        }
                    }
                    // A unit the decoder rejects is a gap in the audio, not a reason to stop.
                    Err(_) => transcode_errors += 1,
                }
            }
            _ => {}
        }
    }
    Ok(json!({
        "video_frames": video_frames,
        "audio_frames": audio_frames,
        "video": video.report(),
        "audio": audio.report(),
        "transcode_errors": transcode_errors,
        "profile_level_id": params.profile_level_id,
        "seconds": replay.elapsed_s(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destinations_share_the_host() {
        let (video, audio) = parse_destinations("127.0.0.1:15004,15006").expect("valid");
        assert_eq!(
            video,
            "127.0.0.1:15004".parse::<SocketAddr>().expect("addr")
        );
        assert_eq!(
            audio,
            "127.0.0.1:15006".parse::<SocketAddr>().expect("addr")
        );
        assert!(parse_destinations("127.0.0.1:15004").is_err());
        assert!(parse_destinations("127.0.0.1,15006").is_err());
    }

    #[test]
    fn rtp_clocks_wrap() {
        assert_eq!(rtp_time(1_000_000, VIDEO_CLOCK_HZ), 90_000);
        assert_eq!(rtp_time(20_000, AUDIO_CLOCK_HZ), 960);
        // 2^32 ticks of 90 kHz is about 13.25 hours: the timestamp wraps, it does not saturate.
        let wrap_us = (1i64 << 32) * 1_000_000 / VIDEO_CLOCK_HZ;
        assert!(rtp_time(wrap_us + 1_000_000, VIDEO_CLOCK_HZ) < 100_000);
    }
}
