//! Which codecs to answer a browser's offer with, given what the stream carries.
//!
//! Video: H.264 is passed through, so the answer must name an H.264 format the browser offered
//! with packetization-mode 1 (FU-A), preferably with the stream's own profile. Audio: G.711 goes
//! through untouched when the browser offered it; everything else reaches browsers as Opus
//! (passed through, or transcoded once per stream from AAC).
//!
//! Invariant: nothing here trusts the offer: unknown lines are skipped, numbers that do not
//! parse drop their format, and no choice is made that the browser did not offer.

use crate::media::Codec;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MediaKind {
    Audio,
    Video,
}

/// One `a=rtpmap` format of one media section of an offer, with its `a=fmtp` parameters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OfferedFormat {
    pub kind: MediaKind,
    pub payload_type: u8,
    /// Encoding name as written (`H264`, `opus`, `PCMA`...).
    pub encoding: String,
    pub clock_rate: u32,
    pub channels: u16,
    /// The `a=fmtp` parameters, as written.
    pub fmtp: String,
}

impl OfferedFormat {
    fn param(&self, key: &str) -> Option<&str> {
        self.fmtp.split(';').find_map(|kv| {
            let (k, v) = kv.split_once('=')?;
            (k.trim().eq_ignore_ascii_case(key)).then_some(v.trim())
        })
    }

    fn is(&self, encoding: &str) -> bool {
        self.encoding.eq_ignore_ascii_case(encoding)
    }
}

/// Every audio and video format of an SDP offer, in the order offered.
pub fn offered_formats(sdp: &str) -> Vec<OfferedFormat> {
    let mut formats: Vec<OfferedFormat> = Vec::new();
    let mut kind = None;
    // Index in `formats` where the current media section starts: rtpmap/fmtp lines refer to
    // payload types of their own section only.
    let mut section_start = 0;
    for line in sdp.lines().map(str::trim_end) {
        if let Some(media) = line.strip_prefix("m=") {
            kind = match media.split_whitespace().next() {
                Some("audio") => Some(MediaKind::Audio),
                Some("video") => Some(MediaKind::Video),
                _ => None,
            };
            section_start = formats.len();
            continue;
        }
        let Some(kind) = kind else { continue };
        if let Some(rtpmap) = line.strip_prefix("a=rtpmap:") {
            let Some((pt, codec)) = rtpmap.split_once(' ') else {
                continue;
            };
            let Ok(payload_type) = pt.trim().parse::<u8>() else {
                continue;
            };
            let mut parts = codec.trim().split('/');
            let encoding = parts.next().unwrap_or_default().to_string();
            let Some(Ok(clock_rate)) = parts.next().map(str::parse::<u32>) else {
                continue;
            };
            let channels = parts.next().and_then(|c| c.parse().ok()).unwrap_or(1);
            formats.push(OfferedFormat {
                kind,
                payload_type,
                encoding,
                clock_rate,
                channels,
                fmtp: String::new(),
            });
        } else if let Some(fmtp) = line.strip_prefix("a=fmtp:") {
            let Some((pt, params)) = fmtp.split_once(' ') else {
                continue;
            };
            let Ok(pt) = pt.trim().parse::<u8>() else {
                continue;
            };
            if let Some(format) = formats[section_start..]
                .iter_mut()
                .find(|f| f.payload_type == pt)
            {
                format.fmtp = params.trim().to_string();
            }
        }
    }
    formats
}

fn profile_bytes(profile_level_id: &str) -> Option<(u8, u8)> {
    if profile_level_id.len() != 6 {
        return None;
    }
    let profile = u8::from_str_radix(profile_level_id.get(0..2)?, 16).ok()?;
    let constraints = u8::from_str_radix(profile_level_id.get(2..4)?, 16).ok()?;
    Some((profile, constraints))
}

/// How well an offered H.264 profile suits a stream of profile `stream` (profile_idc,
/// constraint flags). Higher is better; the browser must decode what we pass through.
fn h264_score(offered: Option<(u8, u8)>, stream: Option<(u8, u8)>) -> u8 {
    let Some((profile, constraints)) = offered else {
        return 0;
    };
    let rank = |p: u8| match p {
        66 => 1,
        77 => 2,
        100 => 3,
        _ => 0,
    };
    match stream {
        Some(s) if s == (profile, constraints) => 6,
        // Same profile, and both constrained (constraint_set1: Constrained Baseline) or not.
        Some((sp, sc)) if sp == profile && (sc ^ constraints) & 0x40 == 0 => 5,
        Some((sp, _)) if sp == profile => 4,
        Some((sp, _)) if rank(profile) > rank(sp) && rank(sp) > 0 => 3,
        // Nothing known about the stream: the most widely decodable profile first.
        None if profile == 66 && constraints & 0x40 != 0 => 3,
        _ => 1,
    }
}

/// The H.264 format to answer with, for a stream whose SPS says `stream_profile_level_id`.
pub fn choose_h264<'a>(
    offered: &'a [OfferedFormat],
    stream_profile_level_id: Option<&str>,
) -> Option<&'a OfferedFormat> {
    let stream = stream_profile_level_id.and_then(profile_bytes);
    let mut best: Option<(&OfferedFormat, u8)> = None;
    for format in offered.iter().filter(|f| {
        f.kind == MediaKind::Video && f.is("H264") && f.param("packetization-mode") == Some("1")
    }) {
        let score = h264_score(
            format.param("profile-level-id").and_then(profile_bytes),
            stream,
        );
        if best.is_none_or(|(_, s)| score > s) {
            best = Some((format, score));
        }
    }
    best.map(|(f, _)| f)
}

/// The offered VP8 format, if any.
pub fn choose_vp8(offered: &[OfferedFormat]) -> Option<&OfferedFormat> {
    offered
        .iter()
        .find(|f| f.kind == MediaKind::Video && f.is("VP8") && f.clock_rate == 90000)
}

/// The video format a publisher's offer is answered with: H.264 when offered (RTMP players
/// can watch it), else VP8 (WebRTC viewers only).
pub fn choose_publish_video(offered: &[OfferedFormat]) -> Option<(Codec, &OfferedFormat)> {
    choose_h264(offered, None)
        .map(|f| (Codec::H264, f))
        .or_else(|| choose_vp8(offered).map(|f| (Codec::Vp8, f)))
}

/// How a viewer gets the stream's audio.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AudioPlan {
    /// The stream's own frames of this codec go out as they are.
    Pass(Codec),
    /// The stream's audio is transcoded (once per stream) to Opus.
    TranscodeToOpus,
}

/// The audio format to answer with and how to feed it, for a stream whose audio codec is
/// `source` (`None`: not known yet, assumed to need Opus). `None` when the browser offered
/// nothing we can send: the viewer then gets video only.
pub fn choose_audio(
    offered: &[OfferedFormat],
    source: Option<Codec>,
) -> Option<(&OfferedFormat, AudioPlan)> {
    let audio = |encoding: &str, rate: u32| {
        offered
            .iter()
            .find(|f| f.kind == MediaKind::Audio && f.is(encoding) && f.clock_rate == rate)
    };
    match source {
        Some(Codec::Pcma) => audio("PCMA", 8000).map(|f| (f, AudioPlan::Pass(Codec::Pcma))),
        Some(Codec::Pcmu) => audio("PCMU", 8000).map(|f| (f, AudioPlan::Pass(Codec::Pcmu))),
        Some(Codec::Opus) => audio("opus", 48000).map(|f| (f, AudioPlan::Pass(Codec::Opus))),
        Some(Codec::Aac) | None => audio("opus", 48000).map(|f| (f, AudioPlan::TranscodeToOpus)),
        Some(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The media sections of an offer by Chromium 156 with recvonly audio and video.
    const CHROMIUM_OFFER: &str = "v=0\r\n\
o=- 1 2 IN IP4 127.0.0.1\r\n\
s=-\r\n\
t=0 0\r\n\
m=video 9 UDP/TLS/RTP/SAVPF 96 97 102 103 106 107 108 109\r\n\
a=rtpmap:96 VP8/90000\r\n\
a=rtpmap:97 rtx/90000\r\n\
a=fmtp:97 apt=96\r\n\
a=rtpmap:102 H264/90000\r\n\
a=fmtp:102 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42001f\r\n\
a=rtpmap:103 rtx/90000\r\n\
a=rtpmap:106 H264/90000\r\n\
a=fmtp:106 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f\r\n\
a=rtpmap:107 H264/90000\r\n\
a=fmtp:107 level-asymmetry-allowed=1;packetization-mode=0;profile-level-id=42e01f\r\n\
a=rtpmap:108 H264/90000\r\n\
a=fmtp:108 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=4d001f\r\n\
a=rtpmap:109 H264/90000\r\n\
a=fmtp:109 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=640c1f\r\n\
m=audio 9 UDP/TLS/RTP/SAVPF 111 9 0 8\r\n\
a=rtpmap:111 opus/48000/2\r\n\
a=fmtp:111 minptime=10;useinbandfec=1\r\n\
a=rtpmap:9 G722/8000\r\n\
a=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:8 PCMA/8000\r\n";

    #[test]
    fn parses_formats_per_section() {
        let formats = offered_formats(CHROMIUM_OFFER);
        assert_eq!(formats.len(), 12);
        let opus = formats
            .iter()
            .find(|f| f.payload_type == 111)
            .expect("opus");
        assert_eq!(
            (opus.kind, opus.clock_rate, opus.channels),
            (MediaKind::Audio, 48000, 2)
        );
        assert_eq!(opus.fmtp, "minptime=10;useinbandfec=1");
        let pcma = formats.iter().find(|f| f.payload_type == 8).expect("pcma");
        assert_eq!(pcma.encoding, "PCMA");
    }

    #[test]
    fn h264_follows_the_stream_profile_among_offered_ones() {
        let formats = offered_formats(CHROMIUM_OFFER);
        let pick = |profile| choose_h264(&formats, profile).map(|f| f.payload_type);
        assert_eq!(pick(Some("42c01e")), Some(106), "constrained → constrained");
        assert_eq!(pick(Some("42001e")), Some(102), "baseline → baseline");
        assert_eq!(pick(Some("42e01f")), Some(106), "exact match wins");
        assert_eq!(pick(Some("4d401f")), Some(108), "main → main");
        assert_eq!(pick(Some("640028")), Some(109), "high → high");
        assert_eq!(pick(None), Some(106), "unknown → constrained baseline");
        assert_eq!(pick(Some("zz")), Some(106));
    }

    #[test]
    fn no_h264_with_fu_a_means_no_choice() {
        let offer = "m=video 9 UDP/TLS/RTP/SAVPF 96 107\r\na=rtpmap:96 VP8/90000\r\n\
a=rtpmap:107 H264/90000\r\na=fmtp:107 packetization-mode=0;profile-level-id=42e01f\r\n";
        assert_eq!(choose_h264(&offered_formats(offer), Some("42e01f")), None);
    }

    #[test]
    fn publishers_get_h264_when_offered_else_vp8() {
        let formats = offered_formats(CHROMIUM_OFFER);
        let pick = |formats: &[OfferedFormat]| {
            choose_publish_video(formats).map(|(codec, f)| (codec, f.payload_type))
        };
        assert_eq!(pick(&formats), Some((Codec::H264, 106)));
        let vp8_only: Vec<OfferedFormat> =
            formats.iter().filter(|f| !f.is("H264")).cloned().collect();
        assert_eq!(pick(&vp8_only), Some((Codec::Vp8, 96)));
        let neither: Vec<OfferedFormat> = vp8_only.into_iter().filter(|f| !f.is("VP8")).collect();
        assert_eq!(pick(&neither), None);
    }

    #[test]
    fn audio_passes_g711_and_opus_and_transcodes_aac() {
        let formats = offered_formats(CHROMIUM_OFFER);
        let plan = |source| choose_audio(&formats, source).map(|(f, p)| (f.payload_type, p));
        assert_eq!(
            plan(Some(Codec::Pcma)),
            Some((8, AudioPlan::Pass(Codec::Pcma)))
        );
        assert_eq!(
            plan(Some(Codec::Pcmu)),
            Some((0, AudioPlan::Pass(Codec::Pcmu)))
        );
        assert_eq!(
            plan(Some(Codec::Opus)),
            Some((111, AudioPlan::Pass(Codec::Opus)))
        );
        assert_eq!(
            plan(Some(Codec::Aac)),
            Some((111, AudioPlan::TranscodeToOpus))
        );
        assert_eq!(plan(None), Some((111, AudioPlan::TranscodeToOpus)));
        assert_eq!(plan(Some(Codec::FlvAudio(2))), None);
    }

    #[test]
    fn junk_offers_give_nothing() {
        for junk in [
            "",
            "m=video\r\na=rtpmap:x H264/90000",
            "a=rtpmap:96 H264/90000\r\n",
            "m=audio 9 X 1\r\na=rtpmap:300 opus/48000\r\na=rtpmap:1 opus/abc\r\n",
        ] {
            assert!(offered_formats(junk).is_empty(), "{junk:?}");
        }
    }
}
