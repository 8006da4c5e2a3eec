//! Camera URLs (`rtsp://user:pass@host:554/path?query`): parsed, normalised into the key that
//! identifies one camera, stripped of credentials for the RTSP library, and masked for logs and
//! REST answers.
//!
//! Invariants: [`CameraUrl::key`] differs whenever path, query or credentials differ; the
//! password appears only in [`CameraUrl::credentials`] and the key, never in
//! [`CameraUrl::masked`] or [`CameraUrl::without_credentials`].

use percent_encoding::percent_decode_str;
use url::Url;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CameraUrl {
    key: String,
    without_credentials: Url,
    masked: String,
    username: Option<String>,
    password: Option<String>,
}

impl CameraUrl {
    /// Parses `rtsp://` or `rtsps://` URLs; credentials may be percent-escaped (`p%40ss`).
    pub fn parse(raw: &str) -> Result<CameraUrl, String> {
        let mut url = Url::parse(raw.trim()).map_err(|e| format!("not a URL: {e}"))?;
        if !matches!(url.scheme(), "rtsp" | "rtsps") {
            return Err(format!(
                "scheme '{}' is not rtsp:// or rtsps://",
                url.scheme()
            ));
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err("the URL has no host".into());
        }
        // Host names are case-insensitive; the url crate leaves them as given for rtsp.
        let host = url.host_str().unwrap_or_default().to_ascii_lowercase();
        url.set_host(Some(&host))
            .map_err(|e| format!("bad host '{host}': {e}"))?;
        if url.port().is_none() {
            let default_port = if url.scheme() == "rtsps" { 322 } else { 554 };
            url.set_port(Some(default_port))
                .map_err(|_| "cannot set the default port".to_string())?;
        }
        url.set_fragment(None);
        let decode = |s: &str| percent_decode_str(s).decode_utf8_lossy().into_owned();
        let username = (!url.username().is_empty()).then(|| decode(url.username()));
        let password = url.password().map(decode);
        let key = url.to_string();

        let mut without_credentials = url.clone();
        // Both calls only fail for URLs that cannot have credentials; rtsp URLs with a host can.
        let _ = without_credentials.set_username("");
        let _ = without_credentials.set_password(None);
        let mut masked = url.clone();
        if password.is_some() {
            let _ = masked.set_password(Some("***"));
        }
        Ok(CameraUrl {
            key,
            without_credentials,
            masked: masked.to_string(),
            username,
            password,
        })
    }

    /// Identity of the camera: one pull per key.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The URL to hand to the RTSP client (credentials go separately).
    pub fn without_credentials(&self) -> &Url {
        &self.without_credentials
    }

    /// The URL with the password replaced by `***`: safe for logs and REST answers.
    pub fn masked(&self) -> &str {
        &self.masked
    }

    /// Decoded user name and password, when the URL has them.
    pub fn credentials(&self) -> Option<(&str, &str)> {
        self.username
            .as_deref()
            .map(|user| (user, self.password.as_deref().unwrap_or("")))
    }
}

/// True when a stream name asks for a camera rather than a published stream.
pub fn is_camera_url(name: &str) -> bool {
    let lower = name.get(..8).unwrap_or(name).to_ascii_lowercase();
    lower.starts_with("rtsp://") || lower.starts_with("rtsps://")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_credentials_and_masks_them() {
        let cam =
            CameraUrl::parse("rtsp://admin:p%40ss%3Aw0rd@127.0.0.1:8554/cam?x=1").expect("valid");
        assert_eq!(cam.credentials(), Some(("admin", "p@ss:w0rd")));
        assert_eq!(cam.masked(), "rtsp://admin:***@127.0.0.1:8554/cam?x=1");
        assert_eq!(
            cam.without_credentials().as_str(),
            "rtsp://127.0.0.1:8554/cam?x=1"
        );
        assert!(!cam.masked().contains("p%40ss"));
    }

    #[test]
    fn normalises_default_port_and_case() {
        let a = CameraUrl::parse("RTSP://Camera.LOCAL/stream").expect("valid");
        let b = CameraUrl::parse("rtsp://camera.local:554/stream").expect("valid");
        assert_eq!(a.key(), b.key());
        assert_eq!(a.credentials(), None);
    }

    #[test]
    fn different_path_query_or_credentials_are_different_cameras() {
        let base = CameraUrl::parse("rtsp://u:p@h/a").expect("valid");
        for other in ["rtsp://u:p@h/b", "rtsp://u:p@h/a?x", "rtsp://u:q@h/a"] {
            assert_ne!(
                base.key(),
                CameraUrl::parse(other).expect("valid").key(),
                "{other}"
            );
        }
    }

    #[test]
    fn refuses_other_schemes_and_garbage() {
        assert!(CameraUrl::parse("http://h/a").is_err());
        assert!(CameraUrl::parse("not a url").is_err());
        assert!(CameraUrl::parse("rtsp://").is_err());
        assert!(is_camera_url("RTSP://h/a"));
        assert!(!is_camera_url("live"));
    }
}
