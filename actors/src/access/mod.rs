//! The gate: decides whether a client may connect, publish or play, and tells the application's
//! backend what clients did. Local checks (application enabled, token) come from the sans-IO
//! [`mediarouter_core::access`]; the backend is asked over HTTP (awc) on the calling actor's
//! thread. [`Pass`] is every protocol's one way to a stream: decision, then the registry.
//!
//! Invariants: a decision never allows without a positive answer (no answer within the
//! application's `hook_timeout_ms`, or an answer that cannot be read, refuses); a publish or
//! play in another application than the connection's is also a connect to that application;
//! a play is decided on the stream it will join (a camera's alias, not the URL asked for);
//! notifications are spawned, retried with capped backoff on a client of their own and never
//! awaited by a caller, so media and decisions never wait for them; at most
//! [`MAX_NOTIFICATIONS_IN_FLIGHT`] are pending at once (more are dropped, logged).

use crate::messages::*;
use crate::registry::{publish_stream, subscribe_player, Registry};
use crate::stream::Stream;
use actix::prelude::*;
use mediarouter_core::access::{self, Action, ClientFacts, Notice, Verdict};
use mediarouter_core::camera::CameraUrl;
use mediarouter_core::media::StreamName;
use mediarouter_core::settings::{AppSettings, Settings};
use serde_json::{json, Map, Value};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tracing::{debug, info, warn};

/// Pending notifications (all backends together) beyond which new ones are dropped.
pub const MAX_NOTIFICATIONS_IN_FLIGHT: usize = 4096;
/// Largest backend answer read; a longer one is unreadable (a decision then refuses).
const MAX_ANSWER_BYTES: usize = 64 * 1024;
/// Longest wait between two attempts of a notification.
const MAX_BACKOFF: Duration = Duration::from_secs(8);

/// What a client was allowed.
#[derive(Clone, Debug, Default)]
pub struct Admission {
    /// Who holds the play (a private stream admits one holder only).
    pub holder: String,
    /// A publish made the stream private (token claim or backend answer).
    pub private: bool,
    /// The holder a publish named for its private stream.
    pub named_holder: Option<String>,
}

/// Applications' options and the HTTP clients of their backends; shared by every connection.
pub struct Gate {
    settings: Arc<Settings>,
    in_flight: Arc<AtomicUsize>,
}

impl Gate {
    pub fn new(settings: &Settings) -> Arc<Gate> {
        Arc::new(Gate {
            settings: Arc::new(settings.clone()),
            in_flight: Arc::new(AtomicUsize::new(0)),
        })
    }

    /// The options of application `key`.
    pub fn app(&self, key: &str) -> &AppSettings {
        self.settings.app(key)
    }

    /// Whether anyone may look at `app`'s streams (no play token, no play hook): what a
    /// `describe` may tell without a decision.
    pub fn open_for_play(&self, app: &str) -> bool {
        let app = self.app(app);
        app.enabled && !app.needs_token("play") && !app.hooks("play")
    }

    /// May this client connect to its application?
    pub async fn connect(&self, client: &ClientFacts) -> Result<(), String> {
        self.decide(Action::Connect, client, &client.app, None, None)
            .await
            .map(|_| ())
    }

    /// May this client publish or play `stream` (`token`: one given with the request)? A
    /// stream of another application than the connection's needs that application's connect
    /// decision first.
    async fn admit(
        &self,
        action: Action,
        client: &ClientFacts,
        stream: &StreamName,
        token: Option<&str>,
    ) -> Result<Admission, String> {
        if stream.app != client.app {
            self.decide(Action::Connect, client, &stream.app, None, None)
                .await?;
        }
        self.decide(action, client, &stream.app, Some(stream), token)
            .await
    }

    async fn decide(
        &self,
        action: Action,
        client: &ClientFacts,
        app_key: &str,
        stream: Option<&StreamName>,
        token: Option<&str>,
    ) -> Result<Admission, String> {
        let app = self.app(app_key);
        let stream_name = stream.map(|s| s.name.as_str()).unwrap_or("");
        let refused = |reason: String| {
            info!(peer = %client.address, session = %client.session_id, app = app_key,
                stream = stream_name, action = action.as_str(), reason = %reason, "refused");
            reason
        };
        let claims = access::check_locally(app, action, stream, client.token(token), unix_now())
            .map_err(refused)?;
        let verdict = if app.hooks(action.as_str()) {
            let mut extra = Map::new();
            if let Some(claims) = &claims {
                extra.insert("token".into(), json!(claims));
            }
            let mut body = access::hook_body(action.as_str(), client, stream, extra);
            body["app"] = json!(app_key);
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
            stream = stream_name, action = action.as_str(), %holder, private, "allowed");
        Ok(Admission {
            holder,
            private,
            named_holder: access::named_holder(claims.as_ref(), &verdict),
        })
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
        let app_key = stream.map_or(client.app.as_str(), |s| s.app.as_str());
        let app = self.app(app_key);
        if !app.hooks(notice.as_str()) {
            return;
        }
        let stream_name = stream.map(|s| s.name.clone()).unwrap_or_default();
        let (peer, session) = (client.address.clone(), client.session_id.clone());
        if self.in_flight.fetch_add(1, Ordering::Relaxed) >= MAX_NOTIFICATIONS_IN_FLIGHT {
            self.in_flight.fetch_sub(1, Ordering::Relaxed);
            warn!(%peer, %session, stream = %stream_name, event = notice.as_str(),
                "too many backend notifications pending: dropped");
            return;
        }
        let mut extra = Map::new();
        if !reason.is_empty() {
            extra.insert("reason".into(), json!(reason));
        }
        let body = access::hook_body(notice.as_str(), client, stream, extra);
        let app = app.clone();
        let in_flight = Arc::clone(&self.in_flight);
        let event = notice.as_str();
        actix_rt::spawn(async move {
            let mut backoff = Duration::from_millis(250);
            for attempt in 0..=app.notify_retries {
                if attempt > 0 {
                    actix_rt::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
                match post(&NOTIFY_CLIENT, &app, &body).await {
                    Ok((status, _)) if (200..300).contains(&status) => break,
                    Ok((status, _)) => {
                        debug!(%peer, %session, stream = %stream_name, event, status, attempt,
                            "backend did not take a notification")
                    }
                    Err(e) => {
                        debug!(%peer, %session, stream = %stream_name, event, attempt,
                            "notification not delivered: {e}")
                    }
                }
                if attempt == app.notify_retries {
                    warn!(%peer, %session, stream = %stream_name, event,
                        "backend notification given up after {} attempts", attempt + 1);
                }
            }
            in_flight.fetch_sub(1, Ordering::Relaxed);
        });
    }
}

/// A player or publisher as the stream will know it.
pub struct Attach {
    pub peer: PeerId,
    pub protocol: Protocol,
    pub address: String,
}

/// One client's way through the gate to a stream: the gate, who the client is and the token it
/// gave with the request (if any).
#[derive(Clone)]
pub struct Pass {
    pub gate: Arc<Gate>,
    pub client: Arc<ClientFacts>,
    pub token: Option<String>,
}

impl Pass {
    /// Asks the application, then attaches the player to the stream it joins (a camera's pull
    /// is started only once allowed). Returns the subscription, the stream and its name.
    pub async fn play(
        &self,
        registry: &Addr<Registry>,
        requested: StreamName,
        camera: Option<CameraUrl>,
        who: Attach,
        control: Recipient<PlayerCommand>,
    ) -> Result<(Subscription, Addr<Stream>, StreamName), StreamError> {
        let decided_on = match &camera {
            Some(camera) => registry
                .send(PulledAs {
                    camera: camera.clone(),
                })
                .await
                .ok()
                .flatten()
                .unwrap_or_else(|| StreamName::new(crate::registry::CAMERA_APP, camera.masked())),
            None => requested.clone(),
        };
        let admission = self
            .decide(Action::Play, &decided_on)
            .await
            .map_err(StreamError::Denied)?;
        let request = Subscribe {
            peer: who.peer,
            protocol: who.protocol,
            address: who.address,
            control,
            client: Arc::clone(&self.client),
            holder: admission.holder,
        };
        let joined = subscribe_player(registry, requested, camera, request).await;
        if let Err(e) = &joined {
            // The backend allowed a play that did not happen: it hears of its end.
            self.gate.notify(
                Notice::Stop,
                &self.client,
                Some(&decided_on),
                &e.to_string(),
            );
        }
        joined
    }

    /// Asks the application, then takes the name. `asks_private`: the publisher itself wants a
    /// private stream.
    pub async fn publish(
        &self,
        registry: Addr<Registry>,
        name: StreamName,
        who: Attach,
        control: Recipient<PublisherCommand>,
        asks_private: bool,
    ) -> Result<(PublishGrant, Addr<Stream>), StreamError> {
        let admission = self
            .decide(Action::Publish, &name)
            .await
            .map_err(StreamError::Denied)?;
        let request = Publish {
            peer: who.peer,
            protocol: who.protocol,
            address: who.address,
            query: self.client.query.without("token"),
            control,
            client: Some(Arc::clone(&self.client)),
            private: admission.private || asks_private,
            holder: admission.named_holder,
        };
        let taken = publish_stream(registry, name.clone(), request).await;
        if let Err(e) = &taken {
            self.gate
                .notify(Notice::Unpublish, &self.client, Some(&name), &e.to_string());
        }
        taken
    }

    /// A play of a media file read for this client alone (RTMP `vod/...`): the decision only.
    pub async fn play_file(&self, name: &StreamName) -> Result<Admission, String> {
        self.decide(Action::Play, name).await
    }

    async fn decide(&self, action: Action, name: &StreamName) -> Result<Admission, String> {
        self.gate
            .admit(action, &self.client, name, self.token.as_deref())
            .await
    }
}

thread_local! {
    /// One client per worker thread (awc clients are not `Send`) for decisions: its pool keeps
    /// connections to the backends alive between hooks. Its own timeout is off: `post` bounds
    /// the whole exchange with the application's.
    static DECISION_CLIENT: awc::Client = client();
    /// Notifications have their own pool, so retries to a slow backend never hold up decisions.
    static NOTIFY_CLIENT: awc::Client = client();
}

fn client() -> awc::Client {
    // Idle connections are dropped before the backend's own keep-alive timeout is likely to
    // end them (Node's is 5 s): a connection the backend already closed is not picked up.
    let connector = awc::Connector::new().conn_keep_alive(Duration::from_secs(4));
    awc::Client::builder()
        .connector(connector)
        .disable_redirects()
        .disable_timeout()
        .finish()
}

/// Asks the backend for a decision; an unreachable, slow or non-2xx backend refuses.
async fn ask(app: &AppSettings, body: &Value) -> Verdict {
    match post(&DECISION_CLIENT, app, body).await {
        Ok((status, answer)) => access::read_answer(status, &answer),
        Err(e) => {
            warn!(event = %body["event"], peer = %body["address"], app = %body["app"],
                stream = %body["stream"], "backend not asked: {e}");
            Verdict {
                refusal: Some(format!("the application's backend did not answer: {e}")),
                ..Verdict::default()
            }
        }
    }
}

/// POSTs `body` as JSON; returns the status and the body (at most [`MAX_ANSWER_BYTES`]), all
/// within the application's hook timeout. A body that cannot be read is an error.
async fn post(
    client: &'static std::thread::LocalKey<awc::Client>,
    app: &AppSettings,
    body: &Value,
) -> Result<(u16, bytes::Bytes), String> {
    let timeout = Duration::from_millis(app.hook_timeout_ms);
    let send = || {
        client
            .with(awc::Client::clone)
            .post(&app.backend_url)
            .insert_header((
                "user-agent",
                concat!("mediarouter/", env!("CARGO_PKG_VERSION")),
            ))
            .send_json(body)
    };
    let exchange = async {
        // A pooled connection the backend closed meanwhile fails before any answer: the
        // request was not taken, so it goes once more, on a fresh connection.
        let mut response = match send().await {
            Err(awc::error::SendRequestError::Connect(_)) => send().await,
            sent => sent,
        }
        .map_err(|e| e.to_string())?;
        let status = response.status().as_u16();
        let promised = response
            .headers()
            .get(awc::http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse::<usize>().ok());
        let answer = response
            .body()
            .limit(MAX_ANSWER_BYTES)
            .await
            .map_err(|e| format!("unreadable answer: {e}"))?;
        // awc ends a body at an early close without an error: a cut answer is no answer.
        if promised.is_some_and(|len| answer.len() < len) {
            return Err("unreadable answer: cut short".into());
        }
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
