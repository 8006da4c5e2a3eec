//! REST API under `/rest-api`, JSON in and out. Handlers only ask the registry and streams (and
//! the applications' secrets, to mint tokens).
//!
//! Invariants: with `rest.api_key` set, no request reaches a handler without it (401 instead),
//! on the REST port and on the web port's listings alike; every answer is JSON; a malformed body
//! is a 400 with `{"error": ...}`, an unknown stream or path a 404 with the same shape; nothing
//! a client sends can panic a handler; a publisher's token never shows in a stream's `query`.

use crate::access::Gate;
use crate::messages::*;
use crate::registry::Registry;
use actix::dev::ToEnvelope;
use actix::prelude::*;
use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::middleware::{from_fn, Next};
use actix_web::{web, HttpResponse};
use mediarouter_core::access::token::TokenRequest;
use mediarouter_core::camera::CameraUrl;
use mediarouter_core::media::StreamName;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::sync::Arc;
use tracing::info;

pub struct RestState {
    pub registry: Addr<Registry>,
    pub default_app: String,
    /// How long `rtsp/startup` waits for the camera's first answer.
    pub first_attempt_timeout: std::time::Duration,
    /// `rest.api_key`: when set, every request on the REST port must carry it.
    pub api_key: Option<String>,
    /// The applications (their token secrets, for `token/create`).
    pub gate: Arc<Gate>,
}

pub fn configure(cfg: &mut web::ServiceConfig, state: Arc<RestState>) {
    cfg.app_data(web::Data::from(state))
        .service(
            web::scope("/rest-api")
                .wrap(from_fn(require_api_key))
                .route("/stream/find_all", web::post().to(find_all))
                .route("/stream/find", web::post().to(find))
                .route("/stream/terminate", web::post().to(terminate))
                .route("/rtsp/startup", web::post().to(rtsp_startup))
                .route("/rtsp/find_all", web::post().to(rtsp_find_all))
                .route("/rtsp/terminate", web::post().to(rtsp_terminate))
                .route("/token/create", web::post().to(token_create)),
        )
        .default_service(web::to(not_found));
}

/// Only the two listings, read-only, for the web port's Streams page.
pub fn configure_listings(cfg: &mut web::ServiceConfig, state: Arc<RestState>) {
    cfg.app_data(web::Data::from(state)).service(
        web::scope("/rest-api")
            .wrap(from_fn(require_api_key))
            .route("/stream/find_all", web::post().to(find_all))
            .route("/rtsp/find_all", web::post().to(rtsp_find_all)),
    );
}

/// Lets a request through only with the API key (when one is set), as `Authorization: Bearer
/// KEY` or `X-API-Key: KEY`; others get 401 and reach no handler.
async fn require_api_key(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    // `configure` always registers the state; without it, refuse rather than let through.
    let expected = match req.app_data::<web::Data<RestState>>() {
        Some(state) => state.api_key.clone(),
        None => Some(String::new()),
    };
    let Some(expected) = expected else {
        return next.call(req).await.map(|r| r.map_into_left_body());
    };
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|v| !v.is_empty())
    };
    let given = header("x-api-key").or_else(|| {
        header("authorization").and_then(|v| {
            let (scheme, key) = v.split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| key.trim())
        })
    });
    if given.is_some_and(|given| {
        !expected.is_empty() && same_secret(given.as_bytes(), expected.as_bytes())
    }) {
        return next.call(req).await.map(|r| r.map_into_left_body());
    }
    let peer = req.peer_addr().map(|a| a.to_string()).unwrap_or_default();
    info!(%peer, path = req.path(), "REST request refused: no valid API key");
    let reason = if given.is_some() {
        "the API key is not valid"
    } else {
        "an API key is required: send 'Authorization: Bearer KEY' or 'X-API-Key: KEY'"
    };
    Ok(req
        .into_response(error(StatusCode::UNAUTHORIZED, reason))
        .map_into_right_body())
}

/// Compares secrets in time independent of where they differ.
fn same_secret(given: &[u8], expected: &[u8]) -> bool {
    given.len() == expected.len()
        && given
            .iter()
            .zip(expected)
            .fold(0u8, |diff, (a, b)| diff | (a ^ b))
            == 0
}

pub fn error(status: StatusCode, message: impl Into<String>) -> HttpResponse {
    HttpResponse::build(status).json(json!({ "error": message.into() }))
}

async fn not_found(req: actix_web::HttpRequest) -> HttpResponse {
    error(
        StatusCode::NOT_FOUND,
        format!("no such endpoint: {} {}", req.method(), req.path()),
    )
}

#[derive(Deserialize)]
struct StreamRequest {
    name: String,
    app: Option<String>,
}

/// Parses `{"name": ..., "app"?: ...}` into a stream name, or says why it is a bad request.
fn stream_name(body: &[u8], default_app: &str) -> Result<StreamName, String> {
    let request: StreamRequest =
        serde_json::from_slice(body).map_err(|e| format!("invalid request body: {e}"))?;
    if request.name.is_empty() {
        return Err("'name' must not be empty".into());
    }
    let app = request.app.unwrap_or_else(|| default_app.to_string());
    Ok(StreamName::new(app, request.name))
}

fn unavailable() -> HttpResponse {
    error(StatusCode::SERVICE_UNAVAILABLE, "server is shutting down")
}

/// `find_all` takes no parameters, but a body that is there must still be JSON.
fn malformed_optional_body(body: &[u8]) -> Option<HttpResponse> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return None;
    }
    serde_json::from_slice::<serde_json::Value>(body)
        .err()
        .map(|e| {
            error(
                StatusCode::BAD_REQUEST,
                format!("invalid request body: {e}"),
            )
        })
}

/// Asks every actor for its description: 200 with the list, or 404 with `none` when empty.
/// An actor that stopped between the listing and the question is simply not listed.
async fn describe_all<A, M>(actors: Vec<Addr<A>>, question: M, none: &str) -> HttpResponse
where
    A: Actor + Handler<M>,
    A::Context: ToEnvelope<A, M>,
    M: Message + Clone + Send + 'static,
    M::Result: Serialize + Send,
{
    let mut infos = Vec::with_capacity(actors.len());
    for actor in actors {
        if let Ok(info) = actor.send(question.clone()).await {
            infos.push(info);
        }
    }
    if infos.is_empty() {
        return error(StatusCode::NOT_FOUND, none);
    }
    HttpResponse::Ok().json(infos)
}

async fn find_all(state: web::Data<RestState>, body: web::Bytes) -> HttpResponse {
    if let Some(response) = malformed_optional_body(&body) {
        return response;
    }
    match state.registry.send(ListStreams).await {
        Ok(streams) => describe_all(streams, GetStreamInfo, "no streams").await,
        Err(_) => unavailable(),
    }
}

async fn lookup(
    state: &RestState,
    body: &[u8],
) -> Result<(StreamName, Addr<crate::stream::Stream>), Box<HttpResponse>> {
    let name = stream_name(body, &state.default_app)
        .map_err(|reason| Box::new(error(StatusCode::BAD_REQUEST, reason)))?;
    match state.registry.send(FindStream { name: name.clone() }).await {
        Ok(Some(stream)) => Ok((name, stream)),
        Ok(None) => Err(Box::new(error(
            StatusCode::NOT_FOUND,
            format!("stream {name} not found"),
        ))),
        Err(_) => Err(Box::new(unavailable())),
    }
}

async fn find(state: web::Data<RestState>, body: web::Bytes) -> HttpResponse {
    let (name, stream) = match lookup(&state, &body).await {
        Ok(found) => found,
        Err(response) => return *response,
    };
    match stream.send(GetStreamInfo).await {
        Ok(info) => HttpResponse::Ok().json(info),
        Err(_) => error(StatusCode::NOT_FOUND, format!("stream {name} not found")),
    }
}

async fn terminate(state: web::Data<RestState>, body: web::Bytes) -> HttpResponse {
    let (name, stream) = match lookup(&state, &body).await {
        Ok(found) => found,
        Err(response) => return *response,
    };
    let request = TerminateStream {
        reason: "terminated through the REST API".into(),
        player_code: "NetStream.Play.Stop",
    };
    match stream.send(request).await {
        Ok(()) => HttpResponse::Ok().json(json!({ "terminated": name.to_string() })),
        Err(_) => error(StatusCode::NOT_FOUND, format!("stream {name} not found")),
    }
}

#[derive(Deserialize)]
struct PullRequest {
    uri: String,
    name: Option<String>,
}

/// Parses `{"uri": ..., "name"?: ...}`, or says why it is a bad request.
fn pull_request(body: &[u8]) -> Result<(CameraUrl, Option<String>), String> {
    let request: PullRequest =
        serde_json::from_slice(body).map_err(|e| format!("invalid request body: {e}"))?;
    let camera = CameraUrl::parse(&request.uri).map_err(|e| format!("bad camera uri: {e}"))?;
    if let Some(name) = &request.name {
        if name.is_empty() || name.contains('/') || name.contains("://") {
            return Err("'name' must be a non-empty name without '/'".into());
        }
    }
    Ok((camera, request.name))
}

async fn rtsp_startup(state: web::Data<RestState>, body: web::Bytes) -> HttpResponse {
    let (camera, alias) = match pull_request(&body) {
        Ok(request) => request,
        Err(reason) => return error(StatusCode::BAD_REQUEST, reason),
    };
    let masked = camera.masked().to_string();
    let request = EnsurePull {
        camera,
        alias,
        on_demand: false,
    };
    let handle = match state.registry.send(request).await {
        Ok(Ok(handle)) => handle,
        Ok(Err(e)) => return error(StatusCode::CONFLICT, e.to_string()),
        Err(_) => return unavailable(),
    };
    let first = tokio::time::timeout(
        state.first_attempt_timeout,
        handle.pull.send(AwaitFirstAttempt),
    );
    match first.await {
        Ok(Ok(Ok(info))) => HttpResponse::Ok().json(info),
        Ok(Ok(Err(reason))) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("camera {masked} cannot be pulled: {reason} (the pull keeps retrying until terminated)"),
        ),
        Ok(Err(_)) => error(StatusCode::INTERNAL_SERVER_ERROR, format!("camera {masked}: pull stopped")),
        Err(_) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("camera {masked} did not answer in time (the pull keeps retrying until terminated)"),
        ),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenBody {
    stream: String,
    action: String,
    app: Option<String>,
    /// Valid in every application of the same secret (default: in `app` only).
    #[serde(default)]
    any_app: bool,
    ttl_seconds: Option<u64>,
    client: Option<String>,
    #[serde(default)]
    private: bool,
}

/// Mints a token with the application's secret: `{"stream", "action", "app"?, "ttl_seconds"?
/// (3600), "client"?, "private"?, "any_app"?}` → `{"token", "claims"}`.
async fn token_create(state: web::Data<RestState>, body: web::Bytes) -> HttpResponse {
    let request: TokenBody = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("bad token request: {e}")),
    };
    let app = request.app.unwrap_or_else(|| state.default_app.clone());
    let request = TokenRequest {
        stream: request.stream,
        action: request.action,
        bind_app: !request.any_app,
        ttl_seconds: request.ttl_seconds.unwrap_or(3600),
        client: request.client,
        private: request.private,
        app,
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    match request.mint(&state.gate.app(&request.app).token_secret, now) {
        Ok((token, claims)) => HttpResponse::Ok().json(json!({ "token": token, "claims": claims })),
        Err(reason) => error(StatusCode::BAD_REQUEST, reason),
    }
}

async fn rtsp_find_all(state: web::Data<RestState>, body: web::Bytes) -> HttpResponse {
    if let Some(response) = malformed_optional_body(&body) {
        return response;
    }
    match state.registry.send(ListPulls).await {
        Ok(pulls) => describe_all(pulls, GetPullInfo, "no pulls").await,
        Err(_) => unavailable(),
    }
}

async fn rtsp_terminate(state: web::Data<RestState>, body: web::Bytes) -> HttpResponse {
    let (camera, _) = match pull_request(&body) {
        Ok(request) => request,
        Err(reason) => return error(StatusCode::BAD_REQUEST, reason),
    };
    let masked = camera.masked().to_string();
    let found = state.registry.send(FindPull {
        key: camera.key().to_string(),
    });
    let Ok(found) = found.await else {
        return unavailable();
    };
    let Some(pull) = found else {
        return error(StatusCode::NOT_FOUND, format!("no pull of camera {masked}"));
    };
    let stop = StopPull {
        reason: "terminated through the REST API".into(),
    };
    match pull.send(stop).await {
        Ok(()) => HttpResponse::Ok().json(json!({ "terminated": masked })),
        Err(_) => error(StatusCode::NOT_FOUND, format!("no pull of camera {masked}")),
    }
}
