//! Typed settings: `settings/default.toml` compiled in, then an optional file, then
//! `MEDIAROUTER__SECTION__KEY` environment variables, each overriding the one before.
//!
//! Invariant: a loaded [`Settings`] is valid. Unknown keys, values of the wrong type, ports out of
//! range and unreadable files are errors that name the key or the file; nothing falls back
//! silently to a default.

use config::{Config, Environment, File, FileFormat, Map, Value, ValueKind};
use serde::Deserialize;
use std::path::Path;
use thiserror::Error;

/// The defaults, also shipped as `settings/default.toml`.
pub const DEFAULT_TOML: &str = include_str!("../settings/default.toml");
/// Prefix of environment overrides: `MEDIAROUTER__RTMP__PORT=1936`.
pub const ENV_PREFIX: &str = "MEDIAROUTER";

#[derive(Debug, Error)]
pub enum SettingsError {
    #[error("cannot read config file {path}: {reason}")]
    File { path: String, reason: String },
    #[error("unknown setting `{key}` (from {origin})")]
    UnknownKey { key: String, origin: String },
    #[error("invalid setting `{key}`: {reason}")]
    Invalid { key: String, reason: String },
    #[error("invalid settings: {0}")]
    Config(String),
}

#[derive(Debug, Clone, Deserialize)]
pub struct Settings {
    pub server: ServerSettings,
    pub log: LogSettings,
    pub rtmp: RtmpSettings,
    pub stream: StreamSettings,
    pub http: HttpSettings,
    pub rest: RestSettings,
    pub rtsp: RtspSettings,
    pub webrtc: WebrtcSettings,
    pub vod: VodSettings,
    pub websocket: WebsocketSettings,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ServerSettings {
    pub workers: usize,
}

#[derive(Debug, Clone, Deserialize)]
pub struct LogSettings {
    pub filter: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct RtmpSettings {
    pub enabled: bool,
    pub address: String,
    pub port: u16,
    pub default_app: String,
    pub chunk_size: u32,
    pub max_message_bytes: usize,
    pub handshake_timeout_ms: u64,
    pub idle_timeout_ms: u64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct StreamSettings {
    pub gop_cache_max_bytes: usize,
    pub fanout_capacity: usize,
    pub player_max_queued_bytes: usize,
    pub player_max_lag_ms: u64,
    pub play_wait_timeout_ms: u64,
    pub unpublish_grace_ms: u64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct HttpSettings {
    pub enabled: bool,
    pub address: String,
    pub port: u16,
    pub web_root: String,
    pub stream_list: bool,
}

#[derive(Debug, Clone, Deserialize)]
pub struct RestSettings {
    pub enabled: bool,
    pub address: String,
    pub port: u16,
}

/// Media over WebSocket: streams played as fMP4 at `ws://HOST:http.port/ws/play?name=NAME`.
#[derive(Debug, Clone, Deserialize)]
pub struct WebsocketSettings {
    pub enabled: bool,
    /// A player whose next frame is further behind the live edge than this skips to the next
    /// keyframe.
    pub max_delay_ms: u64,
    /// A player that answers no ping for this long is closed.
    pub keepalive_timeout_ms: u64,
    /// Kernel send buffer of a media socket: what the kernel holds beyond it hides a slow
    /// viewer from the server (and adds to its delay) until it is full.
    pub send_buffer_bytes: usize,
}

/// Video on demand: media files played over RTMP (`app/NAME`), or as a looping live stream
/// shared by every kind of player (`live_app/NAME`).
#[derive(Debug, Clone, Deserialize)]
pub struct VodSettings {
    /// Folder of the files, relative to the working directory unless absolute.
    pub root: String,
    pub app: String,
    pub live_app: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct RtspSettings {
    pub transport: String,
    pub fail_on_track_error: bool,
    pub connect_timeout_ms: u64,
    pub frame_timeout_ms: u64,
    pub on_demand_timeout_ms: u64,
    pub idle_stop_ms: u64,
    pub reconnect_min_ms: u64,
    pub reconnect_max_ms: u64,
    pub client_address: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct WebrtcSettings {
    pub enabled: bool,
    pub ice_addresses: String,
    pub public_ip: String,
    pub port_min: u16,
    pub port_max: u16,
    pub keepalive_timeout_ms: u64,
    pub connect_timeout_ms: u64,
    pub max_streams_per_session: usize,
    pub publisher_keyframe_interval_ms: u64,
}

impl WebrtcSettings {
    /// The configured host-candidate addresses (empty: choose automatically). Valid after
    /// [`Settings::load`].
    pub fn ice_addresses(&self) -> Vec<std::net::IpAddr> {
        self.ice_addresses
            .split(',')
            .map(str::trim)
            .filter(|a| !a.is_empty())
            .filter_map(|a| a.parse().ok())
            .collect()
    }
}

impl Settings {
    /// Loads the defaults, then `file` if given, then the environment variables in `env`
    /// (pass `std::env::vars()`; only `MEDIAROUTER__*` are read).
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Settings, SettingsError> {
        let defaults = Config::builder()
            .add_source(File::from_str(DEFAULT_TOML, FileFormat::Toml))
            .build()
            .map_err(|e| SettingsError::Config(format!("embedded defaults: {e}")))?;
        let known = flatten(&table(&defaults)?);

        let mut builder =
            Config::builder().add_source(File::from_str(DEFAULT_TOML, FileFormat::Toml));
        if let Some(path) = file {
            let text = std::fs::read_to_string(path).map_err(|e| SettingsError::File {
                path: path.display().to_string(),
                reason: e.to_string(),
            })?;
            let from_file = Config::builder()
                .add_source(File::from_str(&text, FileFormat::Toml))
                .build()
                .map_err(|e| SettingsError::File {
                    path: path.display().to_string(),
                    reason: e.to_string(),
                })?;
            check_known(&known, &from_file, &path.display().to_string())?;
            builder = builder.add_source(File::from_str(&text, FileFormat::Toml));
        }

        let prefix = format!("{ENV_PREFIX}__");
        let env_vars: Map<String, String> = env
            .into_iter()
            .filter(|(k, _)| k.starts_with(&prefix))
            .collect();
        let environment = Environment::with_prefix(ENV_PREFIX)
            .prefix_separator("__")
            .separator("__")
            .try_parsing(true)
            .source(Some(env_vars));
        let env_only = Config::builder()
            .add_source(environment.clone())
            .build()
            .map_err(config_error)?;
        check_known(&known, &env_only, "environment")?;
        builder = builder.add_source(environment);

        let merged = builder.build().map_err(config_error)?;
        let settings: Settings = merged.try_deserialize().map_err(config_error)?;
        settings.validate()?;
        Ok(settings)
    }

    /// Range checks that types alone cannot express.
    fn validate(&self) -> Result<(), SettingsError> {
        let invalid = |key: &str, reason: String| {
            Err(SettingsError::Invalid {
                key: key.into(),
                reason,
            })
        };
        for (key, port) in [
            ("rtmp.port", self.rtmp.port),
            ("http.port", self.http.port),
            ("rest.port", self.rest.port),
        ] {
            if port == 0 {
                return invalid(key, "0 is not a port (1..=65535)".into());
            }
        }
        for (key, app) in [
            ("vod.app", &self.vod.app),
            ("vod.live_app", &self.vod.live_app),
        ] {
            if app.is_empty() || app.contains('/') {
                return invalid(key, "must be one path segment, not empty".into());
            }
        }
        if self.vod.app == self.vod.live_app {
            return invalid("vod.live_app", "must differ from vod.app".into());
        }
        for (key, address) in [
            ("rtmp.address", &self.rtmp.address),
            ("http.address", &self.http.address),
            ("rest.address", &self.rest.address),
        ] {
            if address.parse::<std::net::IpAddr>().is_err() {
                return invalid(key, format!("'{address}' is not an IP address"));
            }
        }
        if !(128..=65536).contains(&self.rtmp.chunk_size) {
            return invalid(
                "rtmp.chunk_size",
                format!("{} is outside 128..=65536", self.rtmp.chunk_size),
            );
        }
        if !(65536..=16 * 1024 * 1024).contains(&self.rtmp.max_message_bytes) {
            return invalid(
                "rtmp.max_message_bytes",
                format!(
                    "{} is outside 65536..=16777216",
                    self.rtmp.max_message_bytes
                ),
            );
        }
        if self.rtmp.default_app.is_empty() || self.rtmp.default_app.contains('/') {
            return invalid(
                "rtmp.default_app",
                "must be a non-empty name without '/'".into(),
            );
        }
        if self.stream.fanout_capacity < 16 {
            return invalid("stream.fanout_capacity", "must be at least 16".into());
        }
        if self.stream.player_max_queued_bytes < 65536 {
            return invalid(
                "stream.player_max_queued_bytes",
                "must be at least 65536".into(),
            );
        }
        if !matches!(self.rtsp.transport.as_str(), "tcp" | "udp") {
            return invalid(
                "rtsp.transport",
                format!("'{}' is not tcp or udp", self.rtsp.transport),
            );
        }
        if !self.rtsp.client_address.is_empty() {
            return invalid(
                "rtsp.client_address",
                "binding camera connections to a local address is not supported: the RTSP \
                 library (retina 0.4) has no local-address option; leave it empty"
                    .into(),
            );
        }
        for address in self.webrtc.ice_addresses.split(',').map(str::trim) {
            if !address.is_empty() && address.parse::<std::net::IpAddr>().is_err() {
                return invalid(
                    "webrtc.ice_addresses",
                    format!("'{address}' is not an IP address"),
                );
            }
        }
        if !self.webrtc.public_ip.is_empty()
            && self.webrtc.public_ip.parse::<std::net::IpAddr>().is_err()
        {
            return invalid(
                "webrtc.public_ip",
                format!("'{}' is not an IP address", self.webrtc.public_ip),
            );
        }
        if self.webrtc.port_min == 0 || self.webrtc.port_min > self.webrtc.port_max {
            return invalid(
                "webrtc.port_min",
                "must be at least 1 and not exceed webrtc.port_max".into(),
            );
        }
        if self.webrtc.publisher_keyframe_interval_ms < 100 {
            return invalid(
                "webrtc.publisher_keyframe_interval_ms",
                "must be at least 100".into(),
            );
        }
        if self.webrtc.max_streams_per_session == 0 {
            return invalid(
                "webrtc.max_streams_per_session",
                "must be at least 1".into(),
            );
        }
        if self.rtsp.reconnect_min_ms > self.rtsp.reconnect_max_ms {
            return invalid(
                "rtsp.reconnect_min_ms",
                "must not exceed rtsp.reconnect_max_ms".into(),
            );
        }
        for (key, value) in [
            ("rtsp.connect_timeout_ms", self.rtsp.connect_timeout_ms),
            ("rtsp.frame_timeout_ms", self.rtsp.frame_timeout_ms),
            ("rtsp.reconnect_min_ms", self.rtsp.reconnect_min_ms),
            ("rtmp.handshake_timeout_ms", self.rtmp.handshake_timeout_ms),
            ("rtmp.idle_timeout_ms", self.rtmp.idle_timeout_ms),
            ("stream.player_max_lag_ms", self.stream.player_max_lag_ms),
            (
                "webrtc.keepalive_timeout_ms",
                self.webrtc.keepalive_timeout_ms,
            ),
            ("webrtc.connect_timeout_ms", self.webrtc.connect_timeout_ms),
        ] {
            if value == 0 {
                return invalid(key, "must be greater than 0".into());
            }
        }
        Ok(())
    }
}

fn config_error(e: config::ConfigError) -> SettingsError {
    SettingsError::Config(e.to_string())
}

fn check_known(known: &[String], config: &Config, origin: &str) -> Result<(), SettingsError> {
    let given = flatten(&table(config)?);
    match given.into_iter().find(|key| !known.contains(key)) {
        Some(key) => Err(SettingsError::UnknownKey {
            key,
            origin: origin.into(),
        }),
        None => Ok(()),
    }
}

fn table(config: &Config) -> Result<Map<String, Value>, SettingsError> {
    config.clone().try_deserialize().map_err(config_error)
}

/// Dotted names of every leaf key.
fn flatten(map: &Map<String, Value>) -> Vec<String> {
    fn walk(prefix: &str, map: &Map<String, Value>, out: &mut Vec<String>) {
        for (key, value) in map {
            let full = if prefix.is_empty() {
                key.clone()
            } else {
                format!("{prefix}.{key}")
            };
            match &value.kind {
                ValueKind::Table(inner) => walk(&full, inner, out),
                _ => out.push(full),
            }
        }
    }
    let mut out = Vec::new();
    walk("", map, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_load_alone() {
        let s = Settings::load(None, env(&[])).expect("defaults are valid");
        assert_eq!(s.rtmp.port, 1935);
        assert_eq!(s.http.port, 8080);
        assert_eq!(s.rest.port, 8081);
        assert_eq!(s.rtmp.default_app, "live");
    }

    #[test]
    fn environment_overrides() {
        let s = Settings::load(
            None,
            env(&[("MEDIAROUTER__RTMP__PORT", "1936"), ("OTHER", "x")]),
        )
        .expect("valid");
        assert_eq!(s.rtmp.port, 1936);
    }

    #[test]
    fn bad_values_name_the_key() {
        for (k, v, needle) in [
            ("MEDIAROUTER__RTMP__PORT", "abc", "rtmp.port"),
            ("MEDIAROUTER__RTMP__PORT", "70000", "rtmp.port"),
            ("MEDIAROUTER__RTMP__PORT", "0", "rtmp.port"),
            ("MEDIAROUTER__RTMP__PROT", "1", "rtmp.prot"),
            ("MEDIAROUTER__REST__ADDRESS", "nowhere", "rest.address"),
            (
                "MEDIAROUTER__RTSP__CLIENT_ADDRESS",
                "127.0.0.2",
                "rtsp.client_address",
            ),
            ("MEDIAROUTER__RTSP__TRANSPORT", "sctp", "rtsp.transport"),
        ] {
            let err = Settings::load(None, env(&[(k, v)]))
                .expect_err("must fail")
                .to_string();
            assert!(
                err.contains(needle),
                "{k}={v}: '{err}' does not name {needle}"
            );
        }
    }

    #[test]
    fn missing_file_is_named() {
        let err = Settings::load(Some(Path::new("/nonexistent/x.toml")), env(&[]))
            .expect_err("must fail")
            .to_string();
        assert!(err.contains("/nonexistent/x.toml"), "{err}");
    }
}
