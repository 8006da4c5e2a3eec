//! The gate: decides whether a client may connect, publish or play, and tells the application's
//! backend what clients did. Local checks (application enabled, token) come from the sans-IO
//! [`mediarouter_core::access`]; the backend is asked over HTTP (awc) on the calling actor's
//! thread.
//!
//! Invariants: a decision never allows without a positive answer (no answer within the
//! application's `hook_timeout_ms` refuses); notifications are spawned, retried with backoff and
//! never awaited by a caller, so media never waits for a backend; at most
//! [`MAX_NOTIFICATIONS_IN_FLIGHT`] notifications are pending at once (more are dropped, logged).

use mediarouter_core::access::{self, Action, ClientFacts, Notice, Verdict};
use mediarouter_core::media::StreamName;
use mediarouter_core::settings::{AppSettings, Settings};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tracing::{debug, info, warn};

/// Pending notifications (all backends together) beyond which new ones are dropped.
pub const MAX_NOTIFICATIONS_IN_FLIGHT: usize = 4096;
/// Largest backend answer read.
const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// What a client was allowed.
#[derive(Clone, Debug, Default)]
pub struct Admission {
    /// Who holds the play (a private stream admits its first holder only).
    pub holder: String,
    /// A publish made the stream private (token claim or backend answer).
    pub private: bool,
}

/// Applications' options and the HTTP client of their backends; shared by every connection.
pub struct Gate {
    default_app: AppSettings,
    apps: BTreeMap<String, AppSettings>,
    in_flight: Arc<AtomicUsize>,
}

impl Gate {
    pub fn new(settings: &Settings) -> Arc<Gate> {
        Arc::new(Gate {
            default_app: settings.app.clone(),
            apps: settings.apps.clone(),
            in_flight: Arc::new(AtomicUsize::new(0)),
        })
    }

    /// The options of application `key`.
    pub fn app(&self, key: &str) -> &AppSettings {
        self.apps.get(key).unwrap_or(&self.default_app)
    }

    /// May this client connect to its application?
    pub async fn connect(&self, client: &ClientFacts) -> Result<(), String> {
        self.decide(Action::Connect, client, None, None)
            .await
            .map(|_| ())
    }

    /// May this client publish `stream` (`token`: one given with the publish)?
    pub async fn publish(
        &self,
        client: &ClientFacts,
        stream: &StreamName,
        token: Option<&str>,
    ) -> Result<Admission, String> {
        self.decide(Action::Publish, client, Some(stream), token)
            .await
    }

    /// May this client play `stream` (`token`: one given with the play)?
    pub async fn play(
        &self,
        client: &ClientFacts,
        stream: &StreamName,
        token: Option<&str>,
    ) -> Result<Admission, String> {
        self.decide(Action::Play, client, Some(stream), token).await
    }

    async fn decide(
        &self,
        action: Action,
        client: &ClientFacts,
        stream: Option<&StreamName>,
        token: Option<&str>,
    ) -> Result<Admission, String> {
        let app_key = stream.map_or(client.app.as_str(), |s| s.app.as_str());
        let app = self.app(app_key);
        let refused = |reason: String| {
            info!(peer = %client.address, session = %client.session_id, app = app_key,
                stream = stream.map(|s| s.name.as_str()).unwrap_or(""),
                action = action.as_str(), reason = %reason, "refused");
            reason
        };
        let claims = access::check_locally(app, action, stream, client.token(token), unix_now())
            .map_err(refused)?;
        let verdict = if app.hooks(action.as_str()) {
            let mut extra = Map::new();
            if let Some(claims) = &claims {
                extra.insert("token".into(), json!(claims));
            }
            let body = access::hook_body(action.as_str(), client, stream, extra);
            ask(app, &body).await
        } else {
            Verdict::default()
        };
        if let Some(reason) = verdict.refusal.clone() {
            return Err(refused(reason));
        }
        let private = action == Action::Publish
            && (claims.as_ref().is_some_and(|c| c.private) || verdict.private);
        let holder = access::holder(client, token, claims.as_ref(), &verdict);
        debug!(peer = %client.address, session = %client.session_id, app = app_key,
            stream = stream.map(|s| s.name.as_str()).unwrap_or(""),
            action = action.as_str(), %holder, private, "allowed");
        Ok(Admission { holder, private })
    }

    /// Tells the backend what a client did, if its application wants to hear it. Returns at
    /// once; the POST is retried in the background.
    pub fn notify(
        &self,
        notice: Notice,
        client: &ClientFacts,
        stream: Option<&StreamName>,
        reason: &str,
    ) {
        let app = self.app(stream.map_or(client.app.as_str(), |s| s.app.as_str()));
        if !app.hooks(notice.as_str()) {
            return;
        }
        if self.in_flight.fetch_add(1, Ordering::Relaxed) >= MAX_NOTIFICATIONS_IN_FLIGHT {
            self.in_flight.fetch_sub(1, Ordering::Relaxed);
            warn!(peer = %client.address, session = %client.session_id,
                event = notice.as_str(), "too many backend notifications pending: dropped");
            return;
        }
        let mut extra = Map::new();
        if !reason.is_empty() {
            extra.insert("reason".into(), json!(reason));
        }
        let body = access::hook_body(notice.as_str(), client, stream, extra);
        let app = app.clone();
        let in_flight = Arc::clone(&self.in_flight);
        let (peer, session) = (client.address.clone(), client.session_id.clone());
        actix_rt::spawn(async move {
            let mut backoff = Duration::from_millis(250);
            for attempt in 0..=app.notify_retries {
                if attempt > 0 {
                    actix_rt::time::sleep(backoff).await;
                    backoff *= 2;
                }
                match post(&app, &body).await {
                    Ok((status, _)) if (200..300).contains(&status) => break,
                    Ok((status, _)) => {
                        debug!(%peer, %session, event = %body["event"], status, attempt, "backend did not take a notification")
                    }
                    Err(e) => {
                        debug!(%peer, %session, event = %body["event"], attempt, "notification not delivered: {e}")
                    }
                }
                if attempt == app.notify_retries {
                    warn!(%peer, %session, event = %body["event"], url = %app.backend_url,
                        "backend notification given up after {} attempts", attempt + 1);
                }
            }
            in_flight.fetch_sub(1, Ordering::Relaxed);
        });
    }
}

thread_local! {
    /// One client per worker thread (awc clients are not `Send`): its pool keeps connections
    /// to the backends alive between hooks. Its own timeout is off: `post` bounds the whole
    /// exchange with the application's.
    static CLIENT: awc::Client = awc::Client::builder()
        .disable_redirects()
        .disable_timeout()
        .finish();
}

/// Asks the backend for a decision; an unreachable, slow or non-2xx backend refuses.
async fn ask(app: &AppSettings, body: &Value) -> Verdict {
    match post(app, body).await {
        Ok((status, answer)) => access::read_answer(status, &answer),
        Err(e) => {
            warn!(url = %app.backend_url, event = %body["event"], peer = %body["address"], "backend not asked: {e}");
            Verdict {
                refusal: Some(format!("the application's backend did not answer: {e}")),
                ..Verdict::default()
            }
        }
    }
}

/// POSTs `body` as JSON; returns the status and (at most [`MAX_ANSWER_BYTES`] of) the body,
/// all within the application's hook timeout.
async fn post(app: &AppSettings, body: &Value) -> Result<(u16, bytes::Bytes), String> {
    let timeout = Duration::from_millis(app.hook_timeout_ms);
    let exchange = async {
        let mut response = CLIENT
            .with(awc::Client::clone)
            .post(&app.backend_url)
            .insert_header((
                "user-agent",
                concat!("mediarouter/", env!("CARGO_PKG_VERSION")),
            ))
            .send_json(body)
            .await
            .map_err(|e| e.to_string())?;
        let status = response.status().as_u16();
        let answer = response
            .body()
            .limit(MAX_ANSWER_BYTES)
            .await
            .unwrap_or_default();
        Ok((status, answer))
    };
    actix_rt::time::timeout(timeout, exchange)
        .await
        .map_err(|_| format!("no answer within {} ms", app.hook_timeout_ms))?
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// One client's way through the gate for its publishes and plays: the gate, who the client is
/// and the token it gave with the request (if any).
#[derive(Clone)]
pub struct Pass {
    pub gate: Arc<Gate>,
    pub client: Arc<ClientFacts>,
    pub token: Option<String>,
}

impl Pass {
    pub async fn publish(&self, stream: &StreamName) -> Result<Admission, String> {
        self.gate
            .publish(&self.client, stream, self.token.as_deref())
            .await
    }

    pub async fn play(&self, stream: &StreamName) -> Result<Admission, String> {
        self.gate
            .play(&self.client, stream, self.token.as_deref())
            .await
    }
}
