//! Who may connect, publish and play: the sans-IO half of applications, backend hooks and signed
//! tokens. The actors' gate (`actors/src/access`) asks the backend over HTTP; what to send, how
//! to read the answer and what a token allows are decided here.
//!
//! Invariants: a decision allows only on a positive answer (enabled application, valid token
//! where one is needed, 2xx from the backend where it is asked); every refusal carries a reason
//! a client can be shown; nothing here panics on a client's or a backend's input.

pub mod token;

use crate::media::{QueryParams, StreamName};
use crate::settings::AppSettings;
use serde_json::{json, Map, Value};
use token::{Claims, TokenError};

/// Longest reason taken from a backend's answer.
const MAX_REASON_CHARS: usize = 200;

/// What a client asks for; each is a decision (allow or refuse).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Connect,
    Publish,
    Play,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Connect => "connect",
            Action::Publish => "publish",
            Action::Play => "play",
        }
    }
}

/// What a client did; each is a notification (the backend's answer changes nothing).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Notice {
    /// A player stopped playing.
    Stop,
    /// A publisher stopped publishing.
    Unpublish,
    /// A connection ended.
    Disconnect,
}

impl Notice {
    pub fn as_str(self) -> &'static str {
        match self {
            Notice::Stop => "stop",
            Notice::Unpublish => "unpublish",
            Notice::Disconnect => "disconnect",
        }
    }
}

/// The client a decision or notification is about: what the backend is told.
#[derive(Clone, Debug, Default)]
pub struct ClientFacts {
    /// Unique per connection: lets a backend tie a play to its connect and disconnect.
    pub session_id: String,
    /// `rtmp`, `webrtc` or `websocket`.
    pub protocol: &'static str,
    /// The client's IP address and port.
    pub address: String,
    /// The application the connection named (or the default one).
    pub app: String,
    /// Query parameters of the URL(s) the client gave, in order (connect's first).
    pub query: QueryParams,
    /// Custom fields of a signalling `connect`.
    pub custom: Option<Value>,
    /// The token the connection carries (signalling `connect`), if any.
    pub token: Option<String>,
}

impl ClientFacts {
    /// The token for a publish or play: the one given with it, else the last `token` query
    /// parameter (a stream URL's comes after its connect URL's), else the connection's.
    pub fn token<'a>(&'a self, given: Option<&'a str>) -> Option<&'a str> {
        given
            .filter(|t| !t.is_empty())
            .or_else(|| {
                self.query
                    .0
                    .iter()
                    .rev()
                    .find(|(k, _)| k == "token")
                    .map(|(_, v)| v.as_str())
            })
            .or(self.token.as_deref())
    }
}

/// The JSON POSTed to a backend. `stream` is `None` for connect and disconnect; `extra` adds
/// fields (a token's claims, a stop's reason).
pub fn hook_body(
    event: &str,
    client: &ClientFacts,
    stream: Option<&StreamName>,
    extra: Map<String, Value>,
) -> Value {
    // A later value wins, as in `ClientFacts::token`: a stream URL's over its connect URL's.
    let mut query = Map::new();
    for (key, value) in &client.query.0 {
        query.insert(key.clone(), json!(value));
    }
    let mut body = json!({
        "event": event,
        "sessionId": client.session_id,
        "protocol": client.protocol,
        "address": client.address,
        "app": stream.map_or(client.app.as_str(), |s| s.app.as_str()),
        "query": query,
    });
    if let Some(stream) = stream {
        body["stream"] = json!(stream.name);
    }
    if let Some(custom) = &client.custom {
        body["custom"] = custom.clone();
    }
    if let Value::Object(fields) = &mut body {
        fields.extend(extra);
    }
    body
}

/// A backend's answer to a decision.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Verdict {
    /// Set when refused: what the client is told.
    pub refusal: Option<String>,
    /// A publish answer's `"private": true`: the stream is played by one holder only.
    pub private: bool,
    /// A play answer's `"client"`: names the holder (else the session is).
    pub client: Option<String>,
}

/// Reads a backend's HTTP answer: 2xx allows (its JSON body may add `private` and `client`),
/// anything else refuses with the body's `reason` (JSON) or the status.
pub fn read_answer(status: u16, body: &[u8]) -> Verdict {
    let json: Option<Value> = serde_json::from_slice(body).ok();
    let field = |key: &str| json.as_ref().and_then(|j| j.get(key));
    if (200..300).contains(&status) {
        return Verdict {
            refusal: None,
            private: field("private").and_then(Value::as_bool).unwrap_or(false),
            client: field("client")
                .and_then(Value::as_str)
                .map(|c| c.chars().take(MAX_REASON_CHARS).collect()),
        };
    }
    let reason = field("reason")
        .and_then(Value::as_str)
        .map(|r| r.chars().take(MAX_REASON_CHARS).collect::<String>())
        .filter(|r| !r.trim().is_empty())
        .unwrap_or_else(|| format!("refused by the application's backend (HTTP {status})"));
    Verdict {
        refusal: Some(reason),
        ..Verdict::default()
    }
}

/// The checks that need no backend, made first: the application is enabled and, when it asks
/// for one, the token is valid for this action on this stream. Returns the token's claims when
/// one was checked.
pub fn check_locally(
    app: &AppSettings,
    action: Action,
    stream: Option<&StreamName>,
    token: Option<&str>,
    now_unix: u64,
) -> Result<Option<Claims>, String> {
    if !app.enabled {
        return Err("this application is not enabled".into());
    }
    let Some(stream) = stream.filter(|_| app.needs_token(action.as_str())) else {
        return Ok(None);
    };
    let token = token
        .ok_or(TokenError::Missing)
        .map_err(|e| e.to_string())?;
    let claims =
        token::verify(app.token_secret.as_bytes(), token, now_unix).map_err(|e| e.to_string())?;
    claims
        .allow(&stream.app, &stream.name, action.as_str())
        .map_err(|e| e.to_string())?;
    Ok(Some(claims))
}

/// The holder a decision names: a token's `client` claim, else the backend's `client`. On a
/// private publish it is the only one who may play; on a play, who plays.
pub fn named_holder(claims: Option<&Claims>, verdict: &Verdict) -> Option<String> {
    claims
        .and_then(|c| c.client.as_deref())
        .or(verdict.client.as_deref())
        .map(|tag| format!("client:{tag}"))
}

/// Who a play was allowed to: a private stream is played by this holder only. A token's or
/// the backend's client tag names a person across connections; otherwise one token (`given`
/// with the play, else the connection's), or one session, is the holder.
pub fn holder(
    client: &ClientFacts,
    given: Option<&str>,
    claims: Option<&Claims>,
    verdict: &Verdict,
) -> String {
    if let Some(named) = named_holder(claims, verdict) {
        return named;
    }
    match (claims, client.token(given)) {
        (Some(_), Some(token)) => format!("token:{}", token.rsplit('.').next().unwrap_or(token)),
        _ => format!("session:{}", client.session_id),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::Settings;

    fn app(secret: &str) -> AppSettings {
        let mut app = Settings::load(None, Vec::new()).expect("defaults").app;
        app.token_secret = secret.into();
        app
    }

    fn client(query: &str) -> ClientFacts {
        ClientFacts {
            session_id: "rtmp-7".into(),
            protocol: "rtmp",
            address: "127.0.0.1:5000".into(),
            app: "live".into(),
            query: QueryParams::parse(query),
            custom: None,
            token: None,
        }
    }

    #[test]
    fn a_backend_allows_only_with_2xx() {
        assert_eq!(read_answer(200, b""), Verdict::default());
        let v = read_answer(204, br#"{"private":true,"client":"p1"}"#);
        assert!(v.refusal.is_none() && v.private);
        assert_eq!(v.client.as_deref(), Some("p1"));
        assert_eq!(
            read_answer(403, br#"{"reason":"no entry"}"#)
                .refusal
                .as_deref(),
            Some("no entry")
        );
        let v = read_answer(302, b"<html>");
        assert!(v.refusal.expect("refused").contains("HTTP 302"));
        assert!(read_answer(500, &[0xff, 0xfe]).refusal.is_some());
    }

    #[test]
    fn tokens_are_checked_only_where_the_application_asks() {
        let name = StreamName::new("live", "doctor");
        assert_eq!(
            check_locally(&app(""), Action::Play, Some(&name), None, 0),
            Ok(None)
        );
        let secured = app("0123456789abcdef");
        assert_eq!(
            check_locally(&secured, Action::Play, Some(&name), None, 0),
            Err("a token is required".into())
        );
        assert_eq!(
            check_locally(&secured, Action::Connect, None, None, 0),
            Ok(None)
        );
        let token = token::mint(
            b"0123456789abcdef",
            &Claims {
                stream: "doctor".into(),
                action: "play".into(),
                exp: 100,
                app: None,
                client: None,
                private: false,
            },
        );
        assert!(check_locally(&secured, Action::Play, Some(&name), Some(&token), 99).is_ok());
        assert_eq!(
            check_locally(&secured, Action::Publish, Some(&name), Some(&token), 99),
            Err("the token does not allow publish".into())
        );
        let mut disabled = app("");
        disabled.enabled = false;
        assert!(check_locally(&disabled, Action::Connect, None, None, 0).is_err());
    }

    #[test]
    fn the_stream_token_wins_over_the_connection_token() {
        let mut c = client("token=connect-level&x=1&token=stream-level");
        c.token = Some("session-level".into());
        assert_eq!(c.token(None), Some("stream-level"));
        assert_eq!(c.token(Some("given")), Some("given"));
        let body = hook_body("play", &c, Some(&StreamName::new("live", "s")), Map::new());
        assert_eq!(body["query"]["token"], "stream-level");
        assert_eq!(body["stream"], "s");
        assert_eq!(body["sessionId"], "rtmp-7");
        c.query = QueryParams::default();
        assert_eq!(c.token(None), Some("session-level"));
    }

    #[test]
    fn holders_name_a_person_a_token_or_a_session() {
        let c = client("token=aaa.bbb.sig");
        let claims = Claims {
            stream: "s".into(),
            action: "play".into(),
            exp: 1,
            app: None,
            client: None,
            private: false,
        };
        let none = Verdict::default();
        assert_eq!(holder(&c, None, Some(&claims), &none), "token:sig");
        assert_eq!(
            holder(&c, Some("x.y.given"), Some(&claims), &none),
            "token:given"
        );
        let tagged = Claims {
            client: Some("p1".into()),
            ..claims
        };
        assert_eq!(holder(&c, None, Some(&tagged), &none), "client:p1");
        assert_eq!(holder(&c, None, None, &none), "session:rtmp-7");
    }
}
