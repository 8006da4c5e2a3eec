//! The SDP of a receive-only, ICE-lite subscriber: what it needs from the server's offer, and the
//! answer it gives.
//!
//! Invariants: the answer accepts one H.264 format (packetization-mode=1) and one Opus format,
//! each on the offer's own m-line with the offer's mid and payload type, `recvonly`, bundled on
//! one transport (one socket, one host candidate); every other m-line is rejected (port 0) and
//! left out of the bundle. An offer without BUNDLE, without ICE credentials or without an H.264
//! format we can take is refused with a reason, never guessed at.

use std::net::Ipv4Addr;

/// What the subscriber takes from the server's offer.
#[derive(Debug, Default)]
pub struct Offer {
    pub ice_ufrag: String,
    pub ice_pwd: String,
    /// `sha-256` fingerprint of the server's DTLS certificate, as written (`AB:CD:...`).
    pub fingerprint: String,
    pub ice_lite: bool,
    pub bundle: Vec<String>,
    pub media: Vec<Media>,
    /// Addresses of the server's IPv4 host candidates in the offer (none when it trickles).
    pub candidate_ips: Vec<Ipv4Addr>,
}

/// One m-line of the offer.
#[derive(Debug, Default)]
pub struct Media {
    pub kind: String,
    pub proto: String,
    pub formats: Vec<String>,
    pub mid: String,
    /// (payload type, `a=rtpmap` value after the payload type), in the offer's order.
    pub rtpmaps: Vec<(u8, String)>,
    /// (payload type, `a=fmtp` parameters).
    pub fmtps: Vec<(u8, String)>,
}

impl Media {
    fn fmtp(&self, pt: u8) -> Option<&str> {
        self.fmtps
            .iter()
            .find(|(p, _)| *p == pt)
            .map(|(_, f)| f.as_str())
    }
}

/// Our side of the answer.
pub struct Local<'a> {
    /// Address of our one host candidate.
    pub ip: Ipv4Addr,
    pub ice_ufrag: &'a str,
    pub ice_pwd: &'a str,
    /// `AB:CD:...` of our certificate.
    pub fingerprint: &'a str,
    pub port: u16,
}

/// What the answer accepted: the payload types to count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    pub video_pt: u8,
    pub audio_pt: Option<u8>,
}

/// Reads the parts of an offer the subscriber needs.
pub fn parse(text: &str) -> Result<Offer, String> {
    let mut offer = Offer::default();
    // Session-level credentials and fingerprint hold for every m-line without their own.
    let (mut ufrag, mut pwd, mut fingerprint) = (None, None, None);
    for line in text.lines() {
        let line = line.trim_end();
        if let Some(m) = line.strip_prefix("m=") {
            let mut parts = m.split_whitespace();
            offer.media.push(Media {
                kind: parts.next().unwrap_or_default().to_string(),
                proto: parts.nth(1).unwrap_or_default().to_string(),
                formats: parts.map(str::to_string).collect(),
                ..Default::default()
            });
            continue;
        }
        let Some(attribute) = line.strip_prefix("a=") else {
            continue;
        };
        let (key, value) = attribute.split_once(':').unwrap_or((attribute, ""));
        let value = value.trim();
        match key {
            "ice-ufrag" if ufrag.is_none() => ufrag = Some(value.to_string()),
            "ice-pwd" if pwd.is_none() => pwd = Some(value.to_string()),
            "ice-lite" => offer.ice_lite = true,
            "fingerprint" if fingerprint.is_none() => {
                if let Some(("sha-256", hex)) = value.split_once(' ') {
                    fingerprint = Some(hex.trim().to_string());
                }
            }
            "group" => {
                if let Some(mids) = value.strip_prefix("BUNDLE") {
                    offer.bundle = mids.split_whitespace().map(str::to_string).collect();
                }
            }
            "candidate" => {
                // foundation component transport priority address port "typ" type
                let fields: Vec<&str> = value.split_whitespace().collect();
                if let (Some(ip), Some(&"host")) = (fields.get(4), fields.get(7)) {
                    if let Ok(ip) = ip.parse::<Ipv4Addr>() {
                        if !offer.candidate_ips.contains(&ip) {
                            offer.candidate_ips.push(ip);
                        }
                    }
                }
            }
            "mid" => {
                if let Some(media) = offer.media.last_mut() {
                    media.mid = value.to_string();
                }
            }
            "rtpmap" | "fmtp" => {
                let (Some(media), Some((pt, rest))) =
                    (offer.media.last_mut(), value.split_once(' '))
                else {
                    continue;
                };
                let Ok(pt) = pt.parse::<u8>() else {
                    continue;
                };
                let list = if key == "rtpmap" {
                    &mut media.rtpmaps
                } else {
                    &mut media.fmtps
                };
                list.push((pt, rest.trim().to_string()));
            }
            _ => {}
        }
    }
    offer.ice_ufrag = ufrag.ok_or("the offer has no a=ice-ufrag")?;
    offer.ice_pwd = pwd.ok_or("the offer has no a=ice-pwd")?;
    offer.fingerprint = fingerprint.ok_or("the offer has no sha-256 a=fingerprint")?;
    Ok(offer)
}

/// The first H.264 format with packetization-mode=1 of a video m-line.
fn h264(media: &Media) -> Option<u8> {
    media.rtpmaps.iter().find_map(|(pt, map)| {
        let mode_1 = media.fmtp(*pt).is_some_and(|f| {
            f.split(';')
                .any(|p| p.trim().eq_ignore_ascii_case("packetization-mode=1"))
        });
        (map.to_ascii_lowercase().starts_with("h264/90000") && mode_1).then_some(*pt)
    })
}

/// The first Opus format of an audio m-line.
fn opus(media: &Media) -> Option<u8> {
    media.rtpmaps.iter().find_map(|(pt, map)| {
        map.to_ascii_lowercase()
            .starts_with("opus/48000")
            .then_some(*pt)
    })
}

/// The answer to `offer`, and what it accepted.
pub fn answer(offer: &Offer, local: &Local<'_>) -> Result<(String, Plan), String> {
    if offer.ice_lite {
        // Two lite agents never check connectivity: nobody would send the first request.
        return Err("the server is ICE-lite too: nobody would start the checks".into());
    }
    if offer.bundle.is_empty() {
        return Err("the offer does not bundle its media (no a=group:BUNDLE)".into());
    }
    let mut accepted: Vec<(usize, u8)> = Vec::new();
    let (mut video_pt, mut audio_pt) = (None, None);
    for (i, media) in offer.media.iter().enumerate() {
        if !offer.bundle.contains(&media.mid) {
            continue;
        }
        match media.kind.as_str() {
            "video" if video_pt.is_none() => {
                if let Some(pt) = h264(media) {
                    video_pt = Some(pt);
                    accepted.push((i, pt));
                }
            }
            "audio" if audio_pt.is_none() => {
                if let Some(pt) = opus(media) {
                    audio_pt = Some(pt);
                    accepted.push((i, pt));
                }
            }
            _ => {}
        }
    }
    let video_pt = video_pt.ok_or("the offer has no H.264 with packetization-mode=1")?;
    let mut sdp = String::with_capacity(2048);
    let mids: Vec<&str> = accepted
        .iter()
        .map(|(i, _)| offer.media[*i].mid.as_str())
        .collect();
    let (ip, port) = (local.ip, local.port);
    sdp.push_str(&format!(
        "v=0\r\no=- {port} 1 IN IP4 {ip}\r\ns=-\r\nt=0 0\r\na=ice-lite\r\n\
         a=group:BUNDLE {}\r\n",
        mids.join(" ")
    ));
    for (i, media) in offer.media.iter().enumerate() {
        let Some((_, pt)) = accepted.iter().find(|(at, _)| *at == i) else {
            let format = media.formats.first().map_or("0", String::as_str);
            sdp.push_str(&format!(
                "m={} 0 {} {format}\r\nc=IN IP4 0.0.0.0\r\na=mid:{}\r\na=inactive\r\n",
                media.kind, media.proto, media.mid
            ));
            continue;
        };
        sdp.push_str(&format!(
            "m={kind} {port} {proto} {pt}\r\nc=IN IP4 {ip}\r\na=mid:{mid}\r\n\
             a=ice-ufrag:{ufrag}\r\na=ice-pwd:{pwd}\r\na=fingerprint:sha-256 {fp}\r\n\
             a=setup:active\r\na=recvonly\r\na=rtcp-mux\r\n",
            kind = media.kind,
            proto = media.proto,
            mid = media.mid,
            ufrag = local.ice_ufrag,
            pwd = local.ice_pwd,
            fp = local.fingerprint,
        ));
        if let Some((_, map)) = media.rtpmaps.iter().find(|(p, _)| p == pt) {
            sdp.push_str(&format!("a=rtpmap:{pt} {map}\r\n"));
        }
        if let Some(fmtp) = media.fmtp(*pt) {
            sdp.push_str(&format!("a=fmtp:{pt} {fmtp}\r\n"));
        }
        sdp.push_str(&format!(
            "a=candidate:1 1 udp 2130706431 {ip} {port} typ host\r\na=end-of-candidates\r\n"
        ));
    }
    Ok((sdp, Plan { video_pt, audio_pt }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An offer mediarouter (webrtc-rs 0.21) sent to a `play` without SDP, as captured.
    const MEDIAROUTER: &str = "v=0\r\no=- 176425724938025580 122084262 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n\
a=fingerprint:sha-256 50:56:7A:E2:EC:57:6E:80:94:E7:11:11:BF:4D:AF:C8:27:8A:C9:AA:CF:D4:34:3E:F6:8C:D2:FA:DF:AE:FE:7C\r\n\
a=extmap-allow-mixed\r\na=group:BUNDLE 0 1\r\nm=video 9 UDP/TLS/RTP/SAVPF 102\r\nc=IN IP4 0.0.0.0\r\n\
a=setup:actpass\r\na=mid:0\r\na=ice-ufrag:nVlYSGAmPRaknYNM\r\na=ice-pwd:aSyMFsdmZHWBKwHwQfnUDAlZmOBXrcfE\r\n\
a=rtcp-mux\r\na=rtcp-rsize\r\na=rtpmap:102 H264/90000\r\n\
a=fmtp:102 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=4d401f\r\n\
a=rtcp-fb:102 nack\r\na=rtcp-fb:102 nack pli\r\na=ssrc:3240996792 cname:mediarouter-live/bench\r\na=sendrecv\r\n\
m=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\na=setup:actpass\r\na=mid:1\r\n\
a=ice-ufrag:nVlYSGAmPRaknYNM\r\na=ice-pwd:aSyMFsdmZHWBKwHwQfnUDAlZmOBXrcfE\r\na=rtcp-mux\r\na=rtcp-rsize\r\n\
a=rtpmap:111 opus/48000/2\r\na=fmtp:111 minptime=10;useinbandfec=1\r\na=ssrc:344850790 cname:mediarouter-live/bench\r\n\
a=sendrecv\r\n";

    /// The streaming plugin of Janus 1.1 (Debian), mountpoint with H.264 + RTX and Opus, as
    /// captured (trimmed of its extmaps and ssrc lines), plus a data channel m-line.
    const JANUS: &str = "v=0\r\no=- 1795276493133242 1 IN IP4 192.0.2.2\r\ns=Mountpoint 1\r\nt=0 0\r\n\
a=group:BUNDLE v a d\r\na=ice-options:trickle\r\n\
a=fingerprint:sha-256 18:90:DA:BD:38:72:9F:48:E5:EE:1A:C5:BC:52:DE:72:D3:64:E6:C1:DC:75:C4:5E:56:E9:3D:5C:16:01:0C:9E\r\n\
m=video 9 UDP/TLS/RTP/SAVPF 96 97\r\nc=IN IP4 192.0.2.2\r\na=sendonly\r\na=mid:v\r\na=rtcp-mux\r\n\
a=ice-ufrag:fjFM\r\na=ice-pwd:alnacR4/Wc59NCwqMnY/L4\r\na=setup:actpass\r\na=rtpmap:96 H264/90000\r\n\
a=rtcp-fb:96 nack\r\na=fmtp:96 profile-level-id=4d401f;packetization-mode=1\r\na=rtpmap:97 rtx/90000\r\n\
a=fmtp:97 apt=96\r\na=candidate:1 1 udp 2015363327 192.0.2.2 22917 typ host\r\na=end-of-candidates\r\n\
m=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 192.0.2.2\r\na=sendonly\r\na=mid:a\r\na=rtcp-mux\r\n\
a=ice-ufrag:fjFM\r\na=ice-pwd:alnacR4/Wc59NCwqMnY/L4\r\na=setup:actpass\r\na=rtpmap:111 opus/48000/2\r\n\
a=fmtp:111 stereo=1;sprop-stereo=1\r\n\
m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\nc=IN IP4 192.0.2.2\r\na=mid:d\r\na=sctp-port:5000\r\n";

    fn local() -> Local<'static> {
        Local {
            ip: Ipv4Addr::LOCALHOST,
            ice_ufrag: "lg0001",
            ice_pwd: "0123456789abcdef0123456789abcdef",
            fingerprint: "AA:BB",
            port: 40000,
        }
    }

    #[test]
    fn answers_a_mediarouter_offer() {
        let offer = parse(MEDIAROUTER).unwrap();
        assert_eq!(offer.ice_ufrag, "nVlYSGAmPRaknYNM");
        assert_eq!(offer.ice_pwd, "aSyMFsdmZHWBKwHwQfnUDAlZmOBXrcfE");
        assert!(offer.fingerprint.starts_with("50:56:7A"));
        assert!(!offer.ice_lite);
        assert!(offer.candidate_ips.is_empty());
        let (sdp, plan) = answer(&offer, &local()).unwrap();
        assert_eq!(
            plan,
            Plan {
                video_pt: 102,
                audio_pt: Some(111)
            }
        );
        assert!(sdp.contains("\r\na=ice-lite\r\n"));
        assert!(sdp.contains("\r\na=group:BUNDLE 0 1\r\n"));
        assert!(sdp.contains("\r\nm=video 40000 UDP/TLS/RTP/SAVPF 102\r\n"));
        assert!(sdp.contains("\r\nm=audio 40000 UDP/TLS/RTP/SAVPF 111\r\n"));
        assert!(sdp.contains(
            "\r\na=fmtp:102 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=4d401f\r\n"
        ));
        assert_eq!(sdp.matches("a=setup:active\r\n").count(), 2);
        assert_eq!(sdp.matches("a=recvonly\r\n").count(), 2);
        assert_eq!(sdp.matches("a=ice-ufrag:lg0001\r\n").count(), 2);
        assert_eq!(sdp.matches("a=fingerprint:sha-256 AA:BB\r\n").count(), 2);
        assert!(sdp.contains("a=candidate:1 1 udp 2130706431 127.0.0.1 40000 typ host\r\n"));
        assert!(sdp.ends_with("\r\n"));
    }

    #[test]
    fn answers_a_janus_offer_and_rejects_what_it_does_not_take() {
        let offer = parse(JANUS).unwrap();
        assert_eq!(offer.bundle, ["v", "a", "d"]);
        assert_eq!(offer.candidate_ips, [Ipv4Addr::new(192, 0, 2, 2)]);
        let (sdp, plan) = answer(&offer, &local()).unwrap();
        assert_eq!(plan.video_pt, 96);
        assert_eq!(plan.audio_pt, Some(111));
        // RTX is not taken; the data channel m-line is rejected and out of the bundle.
        assert!(sdp.contains("\r\nm=video 40000 UDP/TLS/RTP/SAVPF 96\r\nc="));
        assert!(!sdp.contains("rtx"));
        assert!(sdp.contains("\r\na=group:BUNDLE v a\r\n"));
        assert!(sdp.contains(
            "\r\nm=application 0 UDP/DTLS/SCTP webrtc-datachannel\r\nc=IN IP4 0.0.0.0\r\na=mid:d\r\na=inactive\r\n"
        ));
        assert!(sdp.contains("\r\na=mid:v\r\n") && sdp.contains("\r\na=mid:a\r\n"));
    }

    #[test]
    fn refuses_what_it_cannot_answer() {
        let no_mode_1 = MEDIAROUTER.replace("packetization-mode=1", "packetization-mode=0");
        let offer = parse(&no_mode_1).unwrap();
        assert!(answer(&offer, &local()).unwrap_err().contains("H.264"));
        let lite = MEDIAROUTER.replace("a=extmap-allow-mixed", "a=ice-lite");
        assert!(answer(&parse(&lite).unwrap(), &local())
            .unwrap_err()
            .contains("ICE-lite"));
        assert!(parse(&MEDIAROUTER.replace("ice-pwd", "ice-pass")).is_err());
    }
}
