//! One lean WebRTC subscriber on one UDP socket: ICE-lite (answers the server's checks), a DTLS
//! client (`setup:active`) that exports the SRTP keys, then counting of the RTP it receives.
//!
//! Invariants: every datagram is sorted by its first byte (RFC 7983: 0..=3 STUN, 20..=63 DTLS,
//! 128..=191 RTP/RTCP); RTP is counted from its clear header, and only the packets that start a
//! video frame are decrypted, until the publisher's stamp (or a slice) is found — so the cost
//! per packet stays a header read. The SRTP context sees only those packets: its rollover
//! estimate holds because they come less than 2^15 sequence numbers apart, and it keeps no
//! replay window (none is needed to count). DTLS goes to the address the first valid check
//! came from; the server's certificate must match the offer's fingerprint before any key is
//! used. Counts are taken inside the measuring window only.

use super::rtp::{self, Scan};
use super::sdp::{self, Local, Plan};
use super::signal::{Signal, Target};
use super::stun;
use crate::play::Recorder;
use crate::stats::PlayerCount;
use bytes::BytesMut;
use rtc_dtls::config::{ConfigBuilder, ExtendedMasterSecretType};
use rtc_dtls::crypto::Certificate;
use rtc_dtls::crypto_provider::RTCCryptoProvider;
use rtc_dtls::endpoint::{Endpoint, EndpointEvent};
use rtc_dtls::extension::extension_use_srtp::SrtpProtectionProfile;
use rtc_srtp::context::Context;
use rtc_srtp::protection_profile::ProtectionProfile;
use sha2::{Digest, Sha256};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::UdpSocket;

/// How long the server has for its first ICE check after our answer, and then for the DTLS
/// handshake.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// Receive buffer of each subscriber's socket, in bytes.
const RECEIVE_BUFFER: usize = 1 << 20;
/// How long DTLS waits for a check with USE-CANDIDATE before it starts on the first pair.
const NOMINATION_WAIT: Duration = Duration::from_secs(1);

/// The certificate and crypto every subscriber of this process uses (one is enough: the
/// servers pin it per peer connection through the SDP fingerprint).
pub struct Identity {
    provider: Arc<dyn RTCCryptoProvider>,
    certificate: Certificate,
    /// `AB:CD:...`: SHA-256 of the certificate.
    fingerprint: String,
}

/// `AB:CD:...` of a DER certificate.
fn fingerprint(der: &[u8]) -> String {
    let hash = Sha256::digest(der);
    let hex: Vec<String> = hash.iter().map(|b| format!("{b:02X}")).collect();
    hex.join(":")
}

impl Identity {
    pub fn new() -> Result<Identity, String> {
        let provider =
            rtc_dtls::crypto_provider::default_provider().map_err(|e| format!("crypto: {e}"))?;
        let certificate =
            Certificate::generate_self_signed(vec!["loadgen".to_string()], provider.crypto())
                .map_err(|e| format!("certificate: {e}"))?;
        let der = certificate
            .certificate
            .first()
            .ok_or("certificate: empty chain")?;
        let fingerprint = fingerprint(der.as_ref());
        Ok(Identity {
            provider,
            certificate,
            fingerprint,
        })
    }

    /// `bytes` random bytes as hex (ICE credentials).
    fn random_hex(&self, bytes: usize) -> Result<String, String> {
        let mut buf = vec![0u8; bytes];
        self.provider
            .random()
            .fill(&mut buf)
            .map_err(|e| format!("random: {e}"))?;
        Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
    }
}

/// Subscribes to `target` and counts what arrives until the window is over.
pub async fn run(target: Target, identity: Rc<Identity>, mut rec: Recorder) -> PlayerCount {
    if let Err(e) = session(&target, &identity, &mut rec).await {
        rec.count.error = Some(e);
    }
    rec.count
}

async fn session(target: &Target, identity: &Identity, rec: &mut Recorder) -> Result<(), String> {
    let (mut signal, offer) = Signal::open(target).await?;
    let result = play(&mut signal, &offer, identity, rec).await;
    signal.close().await;
    result
}

/// Our socket: on the address of the server's first host candidate when it is one of ours
/// (Janus gathers on no loopback interface, and its ICE agent pairs no loopback candidate with
/// its own), else on 127.0.0.1. Either way the kernel delivers through the loopback device.
async fn bind(offer: &sdp::Offer) -> Result<UdpSocket, String> {
    let mut socket = None;
    if let Some(ip) = offer.candidate_ips.first() {
        socket = UdpSocket::bind((*ip, 0)).await.ok();
    }
    let socket = match socket {
        Some(socket) => socket,
        None => UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .map_err(|e| format!("udp: {e}"))?,
    };
    // The default buffer holds under 100 datagrams (0.4 s of a 2 Mbit/s stream): a server
    // that sends in bursts would make the load drop what it sent. Best effort: the kernel caps
    // it at net.core.rmem_max, and the report counts the drops.
    let _ = socket2::SockRef::from(&socket).set_recv_buffer_size(RECEIVE_BUFFER);
    Ok(socket)
}

async fn play(
    signal: &mut Signal,
    offer: &str,
    identity: &Identity,
    rec: &mut Recorder,
) -> Result<(), String> {
    let offer = sdp::parse(offer)?;
    let socket = bind(&offer).await?;
    let local_addr = socket.local_addr().map_err(|e| format!("udp: {e}"))?;
    let IpAddr::V4(ip) = local_addr.ip() else {
        return Err("udp: not an IPv4 socket".into());
    };
    let ufrag = format!("lg{}", identity.random_hex(4)?);
    let pwd = identity.random_hex(16)?;
    let (answer, plan) = sdp::answer(
        &offer,
        &Local {
            ip,
            ice_ufrag: &ufrag,
            ice_pwd: &pwd,
            fingerprint: &identity.fingerprint,
            port: local_addr.port(),
        },
    )?;
    signal.answer(&answer).await?;
    let mut peer = Peer {
        identity,
        socket: &socket,
        local_addr,
        ufrag,
        pwd,
        remote_ufrag: offer.ice_ufrag,
        remote_fingerprint: offer.fingerprint,
        plan,
        answered: Instant::now(),
        first_check: None,
        checked_from: None,
        refused: None,
        dtls: None,
        srtp: None,
        tag_len: 0,
        last_timestamp: None,
        looking: false,
        stamp: None,
    };
    let mut buf = vec![0u8; 2048];
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    loop {
        tokio::select! {
            ready = socket.readable() => {
                ready.map_err(|e| format!("udp: {e}"))?;
                loop {
                    match socket.try_recv_from(&mut buf) {
                        Ok((n, from)) => peer.datagram(&buf[..n], from, rec)?,
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                        Err(e) => return Err(format!("udp: {e}")),
                    }
                }
            }
            event = signal.next_event() => event?,
            _ = tick.tick() => peer.timers(Instant::now())?,
        }
        if rec.window.over(Instant::now()) {
            return Ok(());
        }
    }
}

struct Peer<'a> {
    identity: &'a Identity,
    socket: &'a UdpSocket,
    local_addr: SocketAddr,
    ufrag: String,
    pwd: String,
    remote_ufrag: String,
    remote_fingerprint: String,
    plan: Plan,
    answered: Instant,
    first_check: Option<Instant>,
    /// Where the first valid check came from.
    checked_from: Option<SocketAddr>,
    /// Why the last check we did not answer was refused (reported if none ever passes).
    refused: Option<stun::Refused>,
    /// The DTLS association and the server address it runs with.
    dtls: Option<(Endpoint, SocketAddr)>,
    srtp: Option<Context>,
    tag_len: usize,
    /// RTP timestamp of the video frame being received.
    last_timestamp: Option<u32>,
    /// Still looking for the stamp in this frame's packets.
    looking: bool,
    stamp: Option<u64>,
}

impl Peer<'_> {
    fn datagram(
        &mut self,
        data: &[u8],
        from: SocketAddr,
        rec: &mut Recorder,
    ) -> Result<(), String> {
        match data.first() {
            Some(0..=3) => self.stun(data, from),
            Some(20..=63) => self.dtls(data, from, rec),
            Some(128..=191) => {
                self.media(data, rec);
                Ok(())
            }
            _ => Ok(()),
        }
    }

    fn send(&self, data: &[u8], to: SocketAddr) {
        // A full socket buffer drops the datagram like the network would; ICE and DTLS
        // retransmit.
        let _ = self.socket.try_send_to(data, to);
    }

    fn stun(&mut self, data: &[u8], from: SocketAddr) -> Result<(), String> {
        match stun::answer(data, from, &self.ufrag, &self.remote_ufrag, &self.pwd) {
            Ok(answered) => {
                self.send(&answered.response, from);
                if self.first_check.is_none() {
                    self.first_check = Some(Instant::now());
                    self.checked_from = Some(from);
                }
                // The server takes DTLS only on the pair it nominates: wait for that (or, in
                // `timers`, give up waiting and use the first pair).
                if self.dtls.is_none() && answered.use_candidate {
                    self.connect_dtls(from)?;
                }
            }
            Err(stun::Refused::NotARequest) => {}
            Err(refused) => self.refused = Some(refused),
        }
        Ok(())
    }

    fn connect_dtls(&mut self, remote: SocketAddr) -> Result<(), String> {
        let config = ConfigBuilder::default()
            .with_crypto_provider(Arc::clone(&self.identity.provider))
            .with_certificates(vec![self.identity.certificate.clone()])
            .with_srtp_protection_profiles(vec![
                SrtpProtectionProfile::Srtp_Aead_Aes_128_Gcm,
                SrtpProtectionProfile::Srtp_Aes128_Cm_Hmac_Sha1_80,
            ])
            .with_extended_master_secret(ExtendedMasterSecretType::Request)
            // No CA vouches for a WebRTC peer: its certificate is checked against the offer's
            // fingerprint once the handshake is done, before any key is used.
            .with_insecure_skip_verify(true)
            .build(true, Some(remote))
            .map_err(|e| format!("DTLS config: {e}"))?;
        let mut endpoint = Endpoint::new(self.local_addr, Default::default(), None);
        endpoint
            .connect(Instant::now(), remote, Arc::new(config), None)
            .map_err(|e| format!("DTLS connect: {e}"))?;
        self.dtls = Some((endpoint, remote));
        self.flush();
        Ok(())
    }

    fn flush(&mut self) {
        let Some((endpoint, _)) = &mut self.dtls else {
            return;
        };
        while let Some(out) = endpoint.poll_transmit() {
            let _ = self
                .socket
                .try_send_to(&out.message, out.transport.peer_addr);
        }
    }

    fn dtls(&mut self, data: &[u8], from: SocketAddr, rec: &mut Recorder) -> Result<(), String> {
        let Some((endpoint, remote)) = &mut self.dtls else {
            return Ok(());
        };
        if from != *remote {
            return Ok(());
        }
        let read = endpoint.read(Instant::now(), from, None, BytesMut::from(data));
        self.flush();
        let events = match read {
            Ok(events) => events,
            // Once keys are out, a bad record (a late retransmission) changes nothing.
            Err(_) if self.srtp.is_some() => return Ok(()),
            Err(e) => return Err(format!("DTLS handshake: {e}")),
        };
        for event in events {
            match event {
                EndpointEvent::HandshakeComplete => self.keys(rec)?,
                EndpointEvent::PeerClosed => return Err("the server closed DTLS".into()),
                _ => {}
            }
        }
        Ok(())
    }

    /// The handshake is done: check the server's certificate, then make the SRTP context.
    fn keys(&mut self, rec: &mut Recorder) -> Result<(), String> {
        let Some((endpoint, remote)) = &self.dtls else {
            return Ok(());
        };
        let state = endpoint
            .get_connection_state(*remote)
            .ok_or("DTLS: no state after the handshake")?;
        let presented = state
            .peer_certificates
            .first()
            .map(|der| fingerprint(der))
            .ok_or("DTLS: the server presented no certificate")?;
        if !presented.eq_ignore_ascii_case(&self.remote_fingerprint) {
            return Err(format!(
                "DTLS: the server's certificate {presented} is not the offer's {}",
                self.remote_fingerprint
            ));
        }
        let (profile, name, tag_len) = match state.srtp_protection_profile() {
            SrtpProtectionProfile::Srtp_Aead_Aes_128_Gcm => {
                (ProtectionProfile::AeadAes128Gcm, "AEAD_AES_128_GCM", 16)
            }
            SrtpProtectionProfile::Srtp_Aes128_Cm_Hmac_Sha1_80 => (
                ProtectionProfile::Aes128CmHmacSha1_80,
                "AES128_CM_HMAC_SHA1_80",
                10,
            ),
            other => return Err(format!("DTLS: SRTP profile {other:?} was not offered")),
        };
        let mut config = rtc_srtp::config::Config {
            profile,
            ..Default::default()
        };
        let material = state
            .export_keying_material(
                rtc_srtp::config::LABEL_EXTRACTOR_DTLS_SRTP,
                &[],
                config.keying_material_len(),
            )
            .map_err(|e| format!("DTLS-SRTP export: {e}"))?;
        config
            .set_session_keys_from_keying_material(material.as_ref(), true)
            .map_err(|e| format!("DTLS-SRTP keys: {e}"))?;
        let context = Context::new(
            &config.keys.remote_master_key,
            &config.keys.remote_master_salt,
            profile,
            None,
            None,
            self.identity.provider.crypto(),
        )
        .map_err(|e| format!("SRTP: {e}"))?;
        self.srtp = Some(context);
        self.tag_len = tag_len;
        rec.count.srtp_profile = Some(name);
        Ok(())
    }

    fn media(&mut self, data: &[u8], rec: &mut Recorder) {
        rec.bytes(data.len());
        if rtp::is_rtcp(data) {
            return;
        }
        let Some(header) = rtp::header(data) else {
            return;
        };
        let in_window = rec.window.contains(Instant::now());
        if in_window {
            let payload = data.len().saturating_sub(header.payload_at + self.tag_len);
            rec.count.payload_bytes += payload as u64;
        }
        if header.payload_type == self.plan.video_pt {
            if in_window {
                rec.count.video_packets += 1;
            }
            if self.last_timestamp != Some(header.timestamp) {
                self.last_timestamp = Some(header.timestamp);
                self.looking = true;
                self.stamp = None;
            }
            if self.looking {
                self.look_for_stamp(data, header.payload_at, in_window, rec);
            }
            if header.marker {
                rec.video_stamped(1, self.stamp.take());
                self.looking = false;
            }
        } else if Some(header.payload_type) == self.plan.audio_pt {
            if in_window {
                rec.count.audio_packets += 1;
            }
            rec.audio(1);
        }
    }

    fn look_for_stamp(
        &mut self,
        data: &[u8],
        payload_at: usize,
        in_window: bool,
        rec: &mut Recorder,
    ) {
        let Some(srtp) = &mut self.srtp else {
            return;
        };
        match srtp.decrypt_rtp(data) {
            Ok(plain) => match rtp::scan(plain.get(payload_at..).unwrap_or_default()) {
                Scan::Stamp(sent) => {
                    self.stamp = Some(sent);
                    self.looking = false;
                }
                Scan::Continue => {}
                Scan::Stop => self.looking = false,
            },
            Err(_) => {
                if in_window {
                    rec.count.decrypt_errors += 1;
                }
                self.looking = false;
            }
        }
    }

    fn timers(&mut self, now: Instant) -> Result<(), String> {
        let Some(first_check) = self.first_check else {
            if now.duration_since(self.answered) > CONNECT_TIMEOUT {
                return Err(match &self.refused {
                    Some(why) => format!("ICE: every check from the server was refused: {why:?}"),
                    None => "ICE: no check from the server within 15 s of the answer".into(),
                });
            }
            return Ok(());
        };
        if self.srtp.is_some() {
            return Ok(());
        }
        if now.duration_since(first_check) > CONNECT_TIMEOUT {
            return Err("DTLS: no handshake within 15 s of the first ICE check".into());
        }
        if self.dtls.is_none() && now.duration_since(first_check) > NOMINATION_WAIT {
            if let Some(from) = self.checked_from {
                self.connect_dtls(from)?;
            }
        }
        if let Some((endpoint, remote)) = &mut self.dtls {
            if endpoint.poll_timeout(remote).is_some_and(|at| at <= now) {
                endpoint
                    .handle_timeout(*remote, now)
                    .map_err(|e| format!("DTLS handshake: {e}"))?;
            }
        }
        self.flush();
        Ok(())
    }
}
