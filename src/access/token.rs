//! Signed tokens: who may publish or play which stream until when, for deployments without a
//! backend. A token is a JSON Web Token signed with HMAC-SHA256 (`HS256`) under the
//! application's secret, so any JWT library can mint one; `mediarouter token` does too.
//!
//! Claims: `stream` (the name within the application), `action` (`publish` or `play`), `exp`
//! (expiry, Unix seconds), optionally `app` (must then match), `client` (a tag naming who holds
//! it) and `private` (on a publish token: the stream is played by one holder only).
//!
//! Invariants: only `HS256` is accepted (never `none`, never another algorithm); the signature
//! is checked in constant time before any claim is read; malformed input is an error, never a
//! panic.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use thiserror::Error;

/// Longest token accepted: a real one is a few hundred bytes.
pub const MAX_TOKEN_LEN: usize = 4096;

const HEADER: &str = r#"{"alg":"HS256","typ":"JWT"}"#;

/// What a token allows.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub stream: String,
    pub action: String,
    pub exp: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub private: bool,
}

/// Why a token was refused; the message is what the client is told.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum TokenError {
    #[error("a token is required")]
    Missing,
    #[error("the token is malformed")]
    Malformed,
    #[error("the token's algorithm is not HS256")]
    Algorithm,
    #[error("the token's signature is not valid")]
    Signature,
    #[error("the token has expired")]
    Expired,
    #[error("the token is for another stream")]
    OtherStream,
    #[error("the token is for another application")]
    OtherApp,
    #[error("the token does not allow {0}")]
    OtherAction(String),
}

/// What to put in a new token (`mediarouter token`, REST `token/create`).
#[derive(Clone, Debug)]
pub struct TokenRequest {
    pub stream: String,
    pub action: String,
    /// The application whose secret signs (named in the token when `bind_app`).
    pub app: String,
    pub bind_app: bool,
    pub ttl_seconds: u64,
    pub client: Option<String>,
    pub private: bool,
}

impl TokenRequest {
    /// Checks the request and signs it with `secret` (the application's `token_secret`);
    /// returns the token and its claims.
    pub fn mint(&self, secret: &str, now_unix: u64) -> Result<(String, Claims), String> {
        if self.stream.trim().is_empty() {
            return Err("a stream name is required".into());
        }
        if !matches!(self.action.as_str(), "publish" | "play") {
            return Err(format!("action '{}' is not publish or play", self.action));
        }
        if secret.is_empty() {
            return Err(format!(
                "application '{}' has no token_secret (set app.token_secret or \
                 apps.{}.token_secret)",
                self.app, self.app
            ));
        }
        let claims = Claims {
            stream: self.stream.clone(),
            action: self.action.clone(),
            exp: now_unix.saturating_add(self.ttl_seconds),
            app: self.bind_app.then(|| self.app.clone()),
            client: self.client.clone().filter(|c| !c.is_empty()),
            private: self.private,
        };
        Ok((mint(secret.as_bytes(), &claims), claims))
    }
}

/// Signs `claims` with `secret`.
pub fn mint(secret: &[u8], claims: &Claims) -> String {
    // Serialising a struct of strings, numbers and bools cannot fail.
    let payload = serde_json::to_vec(claims).expect("claims serialise");
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(HEADER),
        URL_SAFE_NO_PAD.encode(payload)
    );
    let signature = URL_SAFE_NO_PAD.encode(mac(secret, &signing_input).finalize().into_bytes());
    format!("{signing_input}.{signature}")
}

/// Checks `token`'s signature and expiry (against `now`, Unix seconds) and returns its claims.
pub fn verify(secret: &[u8], token: &str, now: u64) -> Result<Claims, TokenError> {
    let token = token.trim();
    if token.is_empty() {
        return Err(TokenError::Missing);
    }
    if token.len() > MAX_TOKEN_LEN {
        return Err(TokenError::Malformed);
    }
    let (signing_input, signature) = token.rsplit_once('.').ok_or(TokenError::Malformed)?;
    let (header, payload) = signing_input.split_once('.').ok_or(TokenError::Malformed)?;
    let header: serde_json::Value = decode_json(header)?;
    if header.get("alg").and_then(|a| a.as_str()) != Some("HS256") {
        return Err(TokenError::Algorithm);
    }
    let signature = URL_SAFE_NO_PAD
        .decode(signature)
        .map_err(|_| TokenError::Malformed)?;
    mac(secret, signing_input)
        .verify_slice(&signature)
        .map_err(|_| TokenError::Signature)?;
    let claims: Claims = decode_json(payload)?;
    if claims.exp <= now {
        return Err(TokenError::Expired);
    }
    Ok(claims)
}

impl Claims {
    /// Whether these claims allow `action` on stream `name` of application `app`.
    pub fn allow(&self, app: &str, name: &str, action: &str) -> Result<(), TokenError> {
        if self.app.as_deref().is_some_and(|a| a != app) {
            return Err(TokenError::OtherApp);
        }
        if self.stream != name {
            return Err(TokenError::OtherStream);
        }
        if self.action != action {
            return Err(TokenError::OtherAction(action.to_string()));
        }
        Ok(())
    }
}

fn mac(secret: &[u8], input: &str) -> Hmac<Sha256> {
    // HMAC takes keys of any length.
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(input.as_bytes());
    mac
}

fn decode_json<T: serde::de::DeserializeOwned>(part: &str) -> Result<T, TokenError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| TokenError::Malformed)?;
    serde_json::from_slice(&bytes).map_err(|_| TokenError::Malformed)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"0123456789abcdef-secret";
    const NOW: u64 = 1_800_000_000;

    fn claims(stream: &str, action: &str, exp: u64) -> Claims {
        Claims {
            stream: stream.into(),
            action: action.into(),
            exp,
            app: None,
            client: Some("patient-7".into()),
            private: false,
        }
    }

    #[test]
    fn a_minted_token_verifies_and_allows_what_it_says() {
        let token = mint(SECRET, &claims("doctor", "play", NOW + 60));
        let got = verify(SECRET, &token, NOW).expect("valid");
        assert_eq!(got.client.as_deref(), Some("patient-7"));
        assert_eq!(got.allow("live", "doctor", "play"), Ok(()));
        assert_eq!(
            got.allow("live", "other", "play"),
            Err(TokenError::OtherStream)
        );
        assert_eq!(
            got.allow("live", "doctor", "publish"),
            Err(TokenError::OtherAction("publish".into()))
        );
    }

    #[test]
    fn expired_tampered_and_foreign_tokens_are_refused() {
        let token = mint(SECRET, &claims("doctor", "play", NOW + 60));
        assert_eq!(verify(SECRET, &token, NOW + 60), Err(TokenError::Expired));
        assert_eq!(
            verify(b"another-secret-of-16", &token, NOW),
            Err(TokenError::Signature)
        );
        // The payload swapped for one naming another stream: the signature no longer fits.
        let forged = mint(b"attacker-secret-1234", &claims("other", "play", NOW + 60));
        let parts: Vec<&str> = token.split('.').collect();
        let forged_parts: Vec<&str> = forged.split('.').collect();
        let spliced = format!("{}.{}.{}", parts[0], forged_parts[1], parts[2]);
        assert_eq!(verify(SECRET, &spliced, NOW), Err(TokenError::Signature));
        let mut flipped = token.clone().into_bytes();
        let last = flipped.len() - 2;
        flipped[last] = if flipped[last] == b'A' { b'B' } else { b'A' };
        let flipped = String::from_utf8(flipped).expect("ascii");
        assert!(verify(SECRET, &flipped, NOW).is_err());
    }

    #[test]
    fn only_hs256_is_accepted() {
        let none_header = URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#);
        let payload = URL_SAFE_NO_PAD
            .encode(serde_json::to_vec(&claims("doctor", "play", NOW + 60)).expect("json"));
        assert_eq!(
            verify(SECRET, &format!("{none_header}.{payload}."), NOW),
            Err(TokenError::Algorithm)
        );
    }

    #[test]
    fn garbage_is_malformed_not_a_panic() {
        for junk in ["x", "a.b", "a.b.c", "..", "é.é.é", "eyJ.eyJ.!!!"] {
            assert!(verify(SECRET, junk, NOW).is_err(), "{junk}");
        }
        assert_eq!(verify(SECRET, " ", NOW), Err(TokenError::Missing));
        assert_eq!(
            verify(SECRET, &"a".repeat(MAX_TOKEN_LEN + 1), NOW),
            Err(TokenError::Malformed)
        );
    }

    #[test]
    fn app_claim_binds_the_application() {
        let mut c = claims("doctor", "play", NOW + 60);
        c.app = Some("clinic".into());
        assert_eq!(c.allow("clinic", "doctor", "play"), Ok(()));
        assert_eq!(c.allow("live", "doctor", "play"), Err(TokenError::OtherApp));
    }
}
