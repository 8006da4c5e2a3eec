//! Typed settings: `settings/default.toml` compiled in, then an optional file, then
//! `MEDIAROUTER__SECTION__KEY` environment variables, each overriding the one before.
//!
//! Invariant: a loaded [`Settings`] is valid. Unknown keys, values of the wrong type, ports out of
//! range and unreadable files are errors that name the key or the file; nothing falls back
//! silently to a default.

use config::{Config, Environment, File, FileFormat, Map, Value, ValueKind};
use serde::Deserialize;
use std::collections::BTreeMap;
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
    /// The default application: options of every application without an `[apps.KEY]` table.
    pub app: AppSettings,
    /// Applications with options of their own, by key (`[apps.KEY]`; keys a table leaves out
    /// take the built-in defaults of `[app]`, not the values `[app]` was given).
    #[serde(default)]
    pub apps: BTreeMap<String, AppSettings>,
}

/// Who may use an application, and how its backend is asked (`[app]`, `[apps.KEY]`).
#[derive(Debug, Clone, Deserialize)]
pub struct AppSettings {
    /// false: every client of the application is refused.
    pub enabled: bool,
    /// Backend hooks are POSTed here; empty: no hooks.
    pub backend_url: String,
    /// Events sent to the backend, comma-separated (connect, publish, play: decisions; stop,
    /// unpublish, disconnect: notifications).
    pub hooks: String,
    /// A decision not answered within this time is a refusal.
    pub hook_timeout_ms: u64,
    /// Further attempts of a notification the backend did not take.
    pub notify_retries: u32,
    /// HMAC-SHA256 secret of the application's tokens; empty: no tokens.
    pub token_secret: String,
    /// Actions that need a token when a secret is set, comma-separated (publish, play).
    pub token_actions: String,
}

impl AppSettings {
    /// Whether `event` (connect, publish, play, stop, unpublish, disconnect) goes to the backend.
    pub fn hooks(&self, event: &str) -> bool {
        !self.backend_url.is_empty() && list_has(&self.hooks, event)
    }

    /// Whether `action` (publish, play) needs a token.
    pub fn needs_token(&self, action: &str) -> bool {
        !self.token_secret.is_empty() && list_has(&self.token_actions, action)
    }
}

impl Settings {
    /// The options of application `key`.
    pub fn app(&self, key: &str) -> &AppSettings {
        self.apps.get(key).unwrap_or(&self.app)
    }
}

fn list_has(list: &str, item: &str) -> bool {
    list.split(',').any(|entry| entry.trim() == item)
}

/// Events a backend may be sent.
pub const HOOK_EVENTS: [&str; 6] = [
    "connect",
    "publish",
    "play",
    "stop",
    "unpublish",
    "disconnect",
];

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
    pub audio_merge_ms: u64,
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
    /// When set, every REST request must carry it (`Authorization: Bearer KEY` or `X-API-Key`).
    pub api_key: String,
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
    /// A live player's audio waits up to this long for the next video frame, to share its write.
    pub audio_merge_ms: u64,
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
    pub viewer_max_backlog: usize,
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
        let defaults_table = table(&defaults)?;
        let known = flatten(&defaults_table);
        let mut app_keys = Vec::new();

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
            app_keys.extend(app_keys_of(&from_file)?);
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
        app_keys.extend(app_keys_of(&env_only)?);
        builder = builder.add_source(environment);
        // An [apps.KEY] table takes the built-in [app] values for the keys it leaves out.
        if let Some(ValueKind::Table(app_defaults)) = defaults_table.get("app").map(|v| &v.kind) {
            for key in &app_keys {
                for (field, value) in app_defaults {
                    builder = builder
                        .set_default(format!("apps.{key}.{field}"), value.clone())
                        .map_err(config_error)?;
                }
            }
        }

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
        for (key, merge_ms) in [
            ("rtmp.audio_merge_ms", self.rtmp.audio_merge_ms),
            ("websocket.audio_merge_ms", self.websocket.audio_merge_ms),
        ] {
            if merge_ms > 100 {
                return invalid(key, format!("{merge_ms} is above 100"));
            }
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
        if !(16..=65536).contains(&self.webrtc.viewer_max_backlog) {
            return invalid(
                "webrtc.viewer_max_backlog",
                format!("{} is outside 16..=65536", self.webrtc.viewer_max_backlog),
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
        for (key, app) in std::iter::once(("app".to_string(), &self.app))
            .chain(self.apps.iter().map(|(k, a)| (format!("apps.{k}"), a)))
        {
            app.validate(&key)?;
        }
        for key in self.apps.keys() {
            if key.is_empty() || key.contains(['/', '?', '.']) {
                return invalid(
                    &format!("apps.{key}"),
                    "an application key is one path segment without '/', '?' or '.'".into(),
                );
            }
        }
        if !self.rest.api_key.is_empty() && self.rest.api_key.len() < 16 {
            return invalid("rest.api_key", "use at least 16 characters".into());
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

impl AppSettings {
    fn validate(&self, section: &str) -> Result<(), SettingsError> {
        let invalid = |key: &str, reason: String| {
            Err(SettingsError::Invalid {
                key: format!("{section}.{key}"),
                reason,
            })
        };
        if !self.backend_url.is_empty() {
            match url::Url::parse(&self.backend_url) {
                Ok(url) if url.scheme() == "http" && url.host().is_some() => {}
                Ok(_) => {
                    return invalid(
                        "backend_url",
                        "must be an http:// URL (put a TLS proxy in front of an https backend)"
                            .into(),
                    )
                }
                Err(e) => return invalid("backend_url", format!("not a URL: {e}")),
            }
        }
        for event in self.hooks.split(',').map(str::trim) {
            if !event.is_empty() && !HOOK_EVENTS.contains(&event) {
                return invalid(
                    "hooks",
                    format!("'{event}' is not one of {}", HOOK_EVENTS.join(", ")),
                );
            }
        }
        for action in self.token_actions.split(',').map(str::trim) {
            if !action.is_empty() && !matches!(action, "publish" | "play") {
                return invalid(
                    "token_actions",
                    format!("'{action}' is not publish or play"),
                );
            }
        }
        if !(1..=60_000).contains(&self.hook_timeout_ms) {
            return invalid("hook_timeout_ms", "must be within 1..=60000".into());
        }
        if self.notify_retries > 10 {
            return invalid("notify_retries", "must be at most 10".into());
        }
        if !self.token_secret.is_empty() && self.token_secret.len() < 16 {
            return invalid(
                "token_secret",
                "use at least 16 characters (a short secret is guessed)".into(),
            );
        }
        Ok(())
    }
}

fn config_error(e: config::ConfigError) -> SettingsError {
    SettingsError::Config(e.to_string())
}

fn check_known(known: &[String], config: &Config, origin: &str) -> Result<(), SettingsError> {
    let given = flatten(&table(config)?);
    let is_known = |key: &String| {
        known.contains(key)
            || key
                .strip_prefix("apps.")
                .and_then(|rest| rest.split_once('.'))
                .is_some_and(|(_, field)| known.contains(&format!("app.{field}")))
    };
    match given.into_iter().find(|key| !is_known(key)) {
        Some(key) => Err(SettingsError::UnknownKey {
            key,
            origin: origin.into(),
        }),
        None => Ok(()),
    }
}

/// Keys of the `[apps.KEY]` tables in `config`.
fn app_keys_of(config: &Config) -> Result<Vec<String>, SettingsError> {
    Ok(match table(config)?.get("apps").map(|v| &v.kind) {
        Some(ValueKind::Table(apps)) => apps.keys().cloned().collect(),
        _ => Vec::new(),
    })
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

    /// Loading with `key=value` in the environment fails with a message naming `needle`.
    fn assert_refused_naming(key: &str, value: &str, needle: &str) {
        let err = Settings::load(None, env(&[(key, value)]))
            .expect_err("must fail")
            .to_string();
        assert!(
            err.contains(needle),
            "{key}={value}: '{err}' does not name {needle}"
        );
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
            (
                "MEDIAROUTER__RTMP__AUDIO_MERGE_MS",
                "101",
                "rtmp.audio_merge_ms",
            ),
            (
                "MEDIAROUTER__WEBSOCKET__AUDIO_MERGE_MS",
                "250",
                "websocket.audio_merge_ms",
            ),
        ] {
            assert_refused_naming(k, v, needle);
        }
    }

    #[test]
    fn applications_take_built_in_defaults_for_keys_they_leave_out() {
        let dir = std::env::temp_dir().join(format!("mr-apps-{}.toml", std::process::id()));
        std::fs::write(
            &dir,
            "[app]\nenabled = false\n[apps.key1]\nbackend_url = \"http://127.0.0.1:9/hook\"\n",
        )
        .expect("temp file");
        let s = Settings::load(
            Some(&dir),
            env(&[("MEDIAROUTER__APPS__KEY2__TOKEN_SECRET", "0123456789abcdef")]),
        );
        let _ = std::fs::remove_file(&dir);
        let s = s.expect("valid");
        assert!(!s.app("unlisted").enabled);
        let key1 = s.app("key1");
        assert!(key1.enabled, "built-in default, not [app]'s false");
        assert!(key1.hooks("play") && key1.hooks("disconnect"));
        assert_eq!(key1.hook_timeout_ms, 3000);
        assert!(!key1.needs_token("play"));
        let key2 = s.app("key2");
        assert!(key2.needs_token("play") && key2.needs_token("publish"));
        assert!(!key2.hooks("play"));
    }

    #[test]
    fn bad_application_settings_name_the_key() {
        for (k, v, needle) in [
            (
                "MEDIAROUTER__APPS__K__BACKEND_URL",
                "ftp://x",
                "apps.k.backend_url",
            ),
            ("MEDIAROUTER__APPS__K__HOOKS", "play,jump", "apps.k.hooks"),
            ("MEDIAROUTER__APPS__K__COLOUR", "red", "apps.k.colour"),
            (
                "MEDIAROUTER__APP__TOKEN_SECRET",
                "short",
                "app.token_secret",
            ),
            (
                "MEDIAROUTER__APP__TOKEN_ACTIONS",
                "play,stop",
                "app.token_actions",
            ),
            ("MEDIAROUTER__REST__API_KEY", "short", "rest.api_key"),
        ] {
            assert_refused_naming(k, v, needle);
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
