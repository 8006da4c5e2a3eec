//! The STUN an ICE-lite agent needs (RFC 8489, RFC 8445 §2.5): check the server's Binding
//! requests and answer them. A lite agent never sends a request of its own.
//!
//! Invariants: only a request whose USERNAME is `our-ufrag:their-ufrag` and whose
//! MESSAGE-INTEGRITY verifies with our password is answered; the answer is a success response
//! with the same transaction id, XOR-MAPPED-ADDRESS (where the request came from),
//! MESSAGE-INTEGRITY (our password) and FINGERPRINT. Malformed input is refused, never trusted.

use hmac::{Hmac, Mac};
use sha1::Sha1;
use std::net::{IpAddr, SocketAddr};

const MAGIC_COOKIE: u32 = 0x2112_A442;
const BINDING_REQUEST: u16 = 0x0001;
const BINDING_SUCCESS: u16 = 0x0101;
const USERNAME: u16 = 0x0006;
const MESSAGE_INTEGRITY: u16 = 0x0008;
const XOR_MAPPED_ADDRESS: u16 = 0x0020;
const USE_CANDIDATE: u16 = 0x0025;
const FINGERPRINT: u16 = 0x8028;
const FINGERPRINT_XOR: u32 = 0x5354_554E;
const HEADER: usize = 20;
const HMAC_LEN: usize = 20;

const CRC32: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC);

/// A Binding request checked and answered.
#[derive(Debug)]
pub struct Answered {
    pub response: Vec<u8>,
    /// The controlling agent nominated this pair.
    pub use_candidate: bool,
}

/// Why a datagram got no answer.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    /// Not a Binding request (an indication, a response): nothing to answer.
    NotARequest,
    Malformed,
    WrongUsername,
    NoIntegrity,
    BadIntegrity,
}

fn hmac_sha1(key: &[u8], parts: &[&[u8]]) -> [u8; HMAC_LEN] {
    // HMAC takes keys of any length: `new_from_slice` cannot fail for it.
    let mut mac = match Hmac::<Sha1>::new_from_slice(key) {
        Ok(mac) => mac,
        Err(_) => return [0; HMAC_LEN],
    };
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

/// Checks a Binding request from `from` for `local_ufrag:remote_ufrag` and `local_pwd`, and
/// builds the success response.
pub fn answer(
    packet: &[u8],
    from: SocketAddr,
    local_ufrag: &str,
    remote_ufrag: &str,
    local_pwd: &str,
) -> Result<Answered, Refused> {
    if packet.len() < HEADER || packet[4..8] != MAGIC_COOKIE.to_be_bytes() {
        return Err(Refused::Malformed);
    }
    if u16::from_be_bytes([packet[0], packet[1]]) != BINDING_REQUEST {
        return Err(Refused::NotARequest);
    }
    let length = u16::from_be_bytes([packet[2], packet[3]]) as usize;
    if length % 4 != 0 || HEADER + length != packet.len() {
        return Err(Refused::Malformed);
    }
    let (mut username, mut integrity, mut use_candidate) = (None, None, false);
    let mut at = HEADER;
    while at + 4 <= packet.len() {
        let kind = u16::from_be_bytes([packet[at], packet[at + 1]]);
        let len = u16::from_be_bytes([packet[at + 2], packet[at + 3]]) as usize;
        let value = packet.get(at + 4..at + 4 + len).ok_or(Refused::Malformed)?;
        match kind {
            USERNAME => username = Some(value),
            // Attributes after MESSAGE-INTEGRITY (but FINGERPRINT) are not covered by it and
            // must be ignored: stop looking once it is found.
            MESSAGE_INTEGRITY => {
                integrity = Some((at, value));
                break;
            }
            USE_CANDIDATE => use_candidate = true,
            _ => {}
        }
        at += 4 + len.div_ceil(4) * 4;
    }
    let expected = format!("{local_ufrag}:{remote_ufrag}");
    if username != Some(expected.as_bytes()) {
        return Err(Refused::WrongUsername);
    }
    let (mi_at, mac) = integrity.ok_or(Refused::NoIntegrity)?;
    if mac.len() != HMAC_LEN {
        return Err(Refused::Malformed);
    }
    // The HMAC covers the message up to the attribute, with the header's length as if the
    // attribute were the last one.
    let covered = ((mi_at - HEADER + 4 + HMAC_LEN) as u16).to_be_bytes();
    let computed = hmac_sha1(
        local_pwd.as_bytes(),
        &[&packet[..2], &covered, &packet[4..mi_at]],
    );
    if computed[..] != *mac {
        return Err(Refused::BadIntegrity);
    }
    let mut transaction = [0u8; 12];
    transaction.copy_from_slice(&packet[8..20]);
    Ok(Answered {
        response: success(&transaction, from, local_pwd),
        use_candidate,
    })
}

/// A Binding success response for `transaction`, telling the requester it came from `from`.
fn success(transaction: &[u8; 12], from: SocketAddr, pwd: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER + 24 + 24 + 8);
    out.extend_from_slice(&BINDING_SUCCESS.to_be_bytes());
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(&MAGIC_COOKIE.to_be_bytes());
    out.extend_from_slice(transaction);
    let port = from.port() ^ (MAGIC_COOKIE >> 16) as u16;
    match from.ip() {
        IpAddr::V4(ip) => {
            out.extend_from_slice(&XOR_MAPPED_ADDRESS.to_be_bytes());
            out.extend_from_slice(&8u16.to_be_bytes());
            out.extend_from_slice(&[0, 0x01]);
            out.extend_from_slice(&port.to_be_bytes());
            let ip = u32::from(ip) ^ MAGIC_COOKIE;
            out.extend_from_slice(&ip.to_be_bytes());
        }
        IpAddr::V6(ip) => {
            out.extend_from_slice(&XOR_MAPPED_ADDRESS.to_be_bytes());
            out.extend_from_slice(&20u16.to_be_bytes());
            out.extend_from_slice(&[0, 0x02]);
            out.extend_from_slice(&port.to_be_bytes());
            let mut mask = [0u8; 16];
            mask[..4].copy_from_slice(&MAGIC_COOKIE.to_be_bytes());
            mask[4..].copy_from_slice(transaction);
            for (byte, m) in ip.octets().iter().zip(mask) {
                out.push(byte ^ m);
            }
        }
    }
    set_length(&mut out, 4 + HMAC_LEN);
    let mac = hmac_sha1(pwd.as_bytes(), &[&out]);
    out.extend_from_slice(&MESSAGE_INTEGRITY.to_be_bytes());
    out.extend_from_slice(&(HMAC_LEN as u16).to_be_bytes());
    out.extend_from_slice(&mac);
    set_length(&mut out, 8);
    let crc = CRC32.checksum(&out) ^ FINGERPRINT_XOR;
    out.extend_from_slice(&FINGERPRINT.to_be_bytes());
    out.extend_from_slice(&4u16.to_be_bytes());
    out.extend_from_slice(&crc.to_be_bytes());
    out
}

/// Sets the header's length to the attributes so far plus `more` bytes still to come.
fn set_length(message: &mut [u8], more: usize) {
    let length = (message.len() - HEADER + more) as u16;
    message[2..4].copy_from_slice(&length.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A Binding request as a full agent sends it, built here independently of `success`.
    fn request(username: &str, pwd: &str, use_candidate: bool) -> Vec<u8> {
        let mut m = Vec::new();
        m.extend_from_slice(&BINDING_REQUEST.to_be_bytes());
        m.extend_from_slice(&[0, 0]);
        m.extend_from_slice(&MAGIC_COOKIE.to_be_bytes());
        m.extend_from_slice(b"transaction1");
        let name = username.as_bytes();
        m.extend_from_slice(&USERNAME.to_be_bytes());
        m.extend_from_slice(&(name.len() as u16).to_be_bytes());
        m.extend_from_slice(name);
        m.resize(m.len().div_ceil(4) * 4, 0);
        // PRIORITY and ICE-CONTROLLING, as webrtc-rs and libnice send them.
        m.extend_from_slice(&[0x00, 0x24, 0, 4, 0x6e, 0, 0x1e, 0xff]);
        m.extend_from_slice(&[0x80, 0x2a, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8]);
        if use_candidate {
            m.extend_from_slice(&[0x00, 0x25, 0, 0]);
        }
        set_length(&mut m, 24);
        let mac = hmac_sha1(pwd.as_bytes(), &[&m]);
        m.extend_from_slice(&[0, 8, 0, 20]);
        m.extend_from_slice(&mac);
        set_length(&mut m, 8);
        let crc = CRC32.checksum(&m) ^ FINGERPRINT_XOR;
        m.extend_from_slice(&[0x80, 0x28, 0, 4]);
        m.extend_from_slice(&crc.to_be_bytes());
        m
    }

    const PWD: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn answers_a_valid_request_with_integrity_and_fingerprint() {
        let from: SocketAddr = "127.0.0.1:31000".parse().unwrap();
        let req = request("lg01:srv", PWD, true);
        let answered = answer(&req, from, "lg01", "srv", PWD).unwrap();
        assert!(answered.use_candidate);
        let r = &answered.response;
        assert_eq!(r[..2], BINDING_SUCCESS.to_be_bytes());
        assert_eq!(r[8..20], req[8..20]);
        assert_eq!(u16::from_be_bytes([r[2], r[3]]) as usize, r.len() - HEADER);
        // XOR-MAPPED-ADDRESS decodes back to the sender.
        assert_eq!(r[20..22], XOR_MAPPED_ADDRESS.to_be_bytes());
        let port = u16::from_be_bytes([r[26], r[27]]) ^ 0x2112;
        let ip = u32::from_be_bytes([r[28], r[29], r[30], r[31]]) ^ MAGIC_COOKIE;
        assert_eq!(
            (std::net::Ipv4Addr::from(ip), port),
            ([127, 0, 0, 1].into(), 31000)
        );
        // MESSAGE-INTEGRITY over the header (length up to it) and XOR-MAPPED-ADDRESS.
        assert_eq!(r[32..36], [0, 8, 0, 20]);
        let mut head = r[..32].to_vec();
        head[2..4].copy_from_slice(&((12 + 24) as u16).to_be_bytes());
        assert_eq!(r[36..56], hmac_sha1(PWD.as_bytes(), &[&head]));
        // FINGERPRINT: CRC-32 of everything before it, XOR 0x5354554E.
        assert_eq!(r[56..60], [0x80, 0x28, 0, 4]);
        let crc = CRC32.checksum(&r[..56]) ^ FINGERPRINT_XOR;
        assert_eq!(r[60..64], crc.to_be_bytes());
    }

    #[test]
    fn refuses_wrong_credentials_and_garbage() {
        let from: SocketAddr = "127.0.0.1:31000".parse().unwrap();
        let good = request("lg01:srv", PWD, false);
        assert!(
            !answer(&good, from, "lg01", "srv", PWD)
                .unwrap()
                .use_candidate
        );
        let wrong_user = request("lg02:srv", PWD, false);
        assert_eq!(
            answer(&wrong_user, from, "lg01", "srv", PWD).unwrap_err(),
            Refused::WrongUsername
        );
        let wrong_pwd = request("lg01:srv", "another password entirely", false);
        assert_eq!(
            answer(&wrong_pwd, from, "lg01", "srv", PWD).unwrap_err(),
            Refused::BadIntegrity
        );
        let mut flipped = good.clone();
        flipped[38] ^= 1; // inside PRIORITY, covered by the integrity
        assert_eq!(
            answer(&flipped, from, "lg01", "srv", PWD).unwrap_err(),
            Refused::BadIntegrity
        );
        assert_eq!(
            answer(&good[..good.len() - 4], from, "lg01", "srv", PWD).unwrap_err(),
            Refused::Malformed
        );
        let mut response = good.clone();
        response[..2].copy_from_slice(&BINDING_SUCCESS.to_be_bytes());
        assert_eq!(
            answer(&response, from, "lg01", "srv", PWD).unwrap_err(),
            Refused::NotARequest
        );
        // An attribute running past the end is malformed, not a panic.
        let mut long = good;
        long[22..24].copy_from_slice(&500u16.to_be_bytes());
        assert_eq!(
            answer(&long, from, "lg01", "srv", PWD).unwrap_err(),
            Refused::Malformed
        );
    }
}
