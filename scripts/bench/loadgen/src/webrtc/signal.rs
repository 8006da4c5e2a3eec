//! Signalling for one subscriber: gets the server's offer, gives it our answer, and keeps the
//! signalling session alive while the subscriber plays.
//!
//! - mediarouter: its WebSocket protocol (web/sdk/PROTOCOL.md): `connect`, `play` without SDP,
//!   the server's `offer`, our `answer`; the server's WebSocket pings are answered.
//! - Janus: the HTTP API of the streaming plugin: create a session, attach the plugin, `watch`
//!   the mountpoint, long-poll for the offer, `start` with our answer; a background long-poll
//!   keeps the session alive and reports a hangup.
//!
//! Invariants: [`Signal::next_event`] is cancel-safe (it is raced against the media socket): the
//! WebSocket reads into a buffer kept across calls, and Janus events come through a channel
//! from their own task. Trickled server candidates are read and dropped: an ICE-lite agent
//! never sends checks, it answers the server's from wherever they come.

use crate::play::{frame_at, masked_frame, ws_open};
use serde_json::{json, Value};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

/// Where a subscriber gets its offer.
#[derive(Clone, Debug)]
pub enum Target {
    /// mediarouter's signalling WebSocket (`ws://HOST:PORT/ws`) and the stream to play.
    Mediarouter { url: String, stream: String },
    /// Janus' HTTP API (`http://HOST:PORT/janus`) and the streaming mountpoint to watch.
    Janus { url: String, mountpoint: u64 },
}

/// An open signalling session.
pub enum Signal {
    Ws(WsSession),
    Janus(JanusSession),
}

impl Signal {
    /// Opens a session and asks for the stream: the session and the server's offer.
    pub async fn open(target: &Target) -> Result<(Signal, String), String> {
        match target {
            Target::Mediarouter { url, stream } => {
                let (session, offer) = WsSession::open(url, stream).await?;
                Ok((Signal::Ws(session), offer))
            }
            Target::Janus { url, mountpoint } => {
                let (session, offer) = JanusSession::open(url, *mountpoint).await?;
                Ok((Signal::Janus(session), offer))
            }
        }
    }

    pub async fn answer(&mut self, sdp: &str) -> Result<(), String> {
        match self {
            Signal::Ws(ws) => ws.answer(sdp).await,
            Signal::Janus(janus) => janus.answer(sdp).await,
        }
    }

    /// Waits for what the server says during the play: `Err` ends the subscriber.
    pub async fn next_event(&mut self) -> Result<(), String> {
        match self {
            Signal::Ws(ws) => ws.next_event().await,
            Signal::Janus(janus) => match janus.events.recv().await {
                Some(reason) => Err(reason),
                // The poller gave up quietly (the session is being closed): nothing more.
                None => std::future::pending().await,
            },
        }
    }

    /// Ends the session politely, so the server frees the peer at once.
    pub async fn close(self) {
        match self {
            Signal::Ws(mut ws) => {
                // `disconnect` ends the session; the server then closes the socket.
                let bye = masked_frame(1, br#"{"type":"disconnect"}"#);
                if ws.socket.write_all(&bye).await.is_ok() {
                    let mut sink = [0u8; 4096];
                    let drain = async {
                        while matches!(ws.socket.read(&mut sink).await, Ok(n) if n > 0) {}
                    };
                    let _ = tokio::time::timeout(Duration::from_secs(2), drain).await;
                }
            }
            Signal::Janus(janus) => {
                let body = json!({"janus": "destroy", "transaction": "bye"});
                let path = format!("{}/{}", janus.base.path, janus.session);
                let _ = janus.base.post(&path, &body).await;
                janus.poller.abort();
            }
        }
    }
}

/// A signalling WebSocket to mediarouter.
pub struct WsSession {
    socket: TcpStream,
    buf: Vec<u8>,
}

/// How long signalling may take before the subscriber gives up.
const SIGNAL_TIMEOUT: Duration = Duration::from_secs(20);

impl WsSession {
    async fn open(url: &str, stream: &str) -> Result<(WsSession, String), String> {
        let (socket, mut buf) = ws_open(url).await?;
        buf.shrink_to(16 * 1024);
        let mut ws = WsSession { socket, buf };
        ws.send(&json!({"type": "connect"})).await?;
        ws.send(&json!({"type": "play", "streamId": "v1", "name": stream}))
            .await?;
        let offer = tokio::time::timeout(SIGNAL_TIMEOUT, async {
            loop {
                let message = ws.next_message().await?;
                match message["type"].as_str() {
                    Some("offer") => {
                        return message["sdp"]
                            .as_str()
                            .map(str::to_string)
                            .ok_or_else(|| "an offer without sdp".to_string())
                    }
                    Some("session" | "status") if is_final(&message) => {
                        return Err(describe(&message))
                    }
                    Some("error") => return Err(describe(&message)),
                    _ => {}
                }
            }
        })
        .await
        .map_err(|_| "no offer from mediarouter within 20 s".to_string())??;
        Ok((ws, offer))
    }

    async fn send(&mut self, message: &Value) -> Result<(), String> {
        let frame = masked_frame(1, message.to_string().as_bytes());
        self.socket
            .write_all(&frame)
            .await
            .map_err(|e| format!("signalling: {e}"))
    }

    async fn answer(&mut self, sdp: &str) -> Result<(), String> {
        self.send(&json!({"type": "answer", "streamId": "v1", "sdp": sdp}))
            .await
    }

    /// The next JSON text message; answers pings on the way.
    async fn next_message(&mut self) -> Result<Value, String> {
        let mut chunk = [0u8; 4096];
        loop {
            while let Some((opcode, at, len)) = frame_at(&self.buf) {
                let payload: Vec<u8> = self.buf[at..at + len].to_vec();
                self.buf.drain(..at + len);
                match opcode {
                    1 => {
                        if let Ok(message) = serde_json::from_slice::<Value>(&payload) {
                            return Ok(message);
                        }
                    }
                    9 => {
                        let pong = masked_frame(0xA, &payload);
                        self.socket
                            .write_all(&pong)
                            .await
                            .map_err(|e| format!("signalling: {e}"))?;
                    }
                    8 => return Err("mediarouter closed the signalling WebSocket".into()),
                    _ => {}
                }
            }
            let n = self
                .socket
                .read(&mut chunk)
                .await
                .map_err(|e| format!("signalling: {e}"))?;
            if n == 0 {
                return Err("mediarouter closed the signalling connection".into());
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    async fn next_event(&mut self) -> Result<(), String> {
        let message = self.next_message().await?;
        if is_final(&message) {
            return Err(describe(&message));
        }
        Ok(())
    }
}

/// A `status` or `session` message that ends the play.
fn is_final(message: &Value) -> bool {
    matches!(
        message["status"].as_str(),
        Some("FAILED" | "STOPPED" | "DISCONNECTED")
    )
}

fn describe(message: &Value) -> String {
    let text = message.to_string();
    format!(
        "mediarouter: {}",
        text.chars().take(200).collect::<String>()
    )
}

/// `http://HOST:PORT/PATH` split for the small HTTP client below.
#[derive(Clone)]
struct HttpBase {
    host: String,
    path: String,
}

impl HttpBase {
    fn parse(url: &str) -> Result<HttpBase, String> {
        let rest = url.strip_prefix("http://").ok_or("not an http:// URL")?;
        let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
        Ok(HttpBase {
            host: host.to_string(),
            path: format!("/{}", path.trim_end_matches('/')),
        })
    }

    async fn post(&self, path: &str, body: &Value) -> Result<Value, String> {
        self.request("POST", path, Some(body)).await
    }

    async fn get(&self, path: &str) -> Result<Value, String> {
        self.request("GET", path, None).await
    }

    /// One request on its own connection (`Connection: close`): the JSON body of a 200 answer.
    async fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, String> {
        let body = body.map(Value::to_string).unwrap_or_default();
        let mut socket = TcpStream::connect(&self.host)
            .await
            .map_err(|e| format!("janus: connect {}: {e}", self.host))?;
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            self.host,
            body.len()
        );
        socket
            .write_all(request.as_bytes())
            .await
            .map_err(|e| format!("janus: {e}"))?;
        let mut answer = Vec::with_capacity(4096);
        socket
            .read_to_end(&mut answer)
            .await
            .map_err(|e| format!("janus: {e}"))?;
        let end = answer
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .ok_or("janus: no HTTP header in the answer")?;
        let head = String::from_utf8_lossy(&answer[..end]);
        let status = head.lines().next().unwrap_or_default();
        if !status.contains(" 200") {
            return Err(format!("janus: {method} {path}: {status}"));
        }
        let body = &answer[end + 4..];
        let chunked = head.lines().any(|l| {
            l.to_ascii_lowercase()
                .starts_with("transfer-encoding: chunked")
        });
        let body = if chunked {
            dechunk(body).ok_or("janus: bad chunked body")?
        } else {
            body.to_vec()
        };
        serde_json::from_slice(&body).map_err(|e| format!("janus: bad JSON: {e}"))
    }
}

/// The body of a chunked HTTP/1.1 answer (RFC 9112 §7.1), read to its end.
fn dechunk(mut chunked: &[u8]) -> Option<Vec<u8>> {
    let mut body = Vec::with_capacity(chunked.len());
    loop {
        let line_end = chunked.windows(2).position(|w| w == b"\r\n")?;
        let size = std::str::from_utf8(&chunked[..line_end]).ok()?;
        let size = size.split(';').next()?.trim();
        let size = usize::from_str_radix(size, 16).ok()?;
        if size == 0 {
            return Some(body);
        }
        body.extend_from_slice(chunked.get(line_end + 2..line_end + 2 + size)?);
        chunked = chunked.get(line_end + 2 + size + 2..)?;
    }
}

/// A Janus session with the streaming plugin attached.
pub struct JanusSession {
    base: HttpBase,
    session: u64,
    handle: u64,
    events: mpsc::UnboundedReceiver<String>,
    poller: tokio::task::JoinHandle<()>,
}

/// Janus' reason, for a reply that is not what was asked for.
fn janus_error(reply: &Value) -> String {
    let text = reply.to_string();
    format!("janus: {}", text.chars().take(200).collect::<String>())
}

impl JanusSession {
    async fn open(url: &str, mountpoint: u64) -> Result<(JanusSession, String), String> {
        let base = HttpBase::parse(url)?;
        let created = base
            .post(&base.path, &json!({"janus": "create", "transaction": "c"}))
            .await?;
        let session = created["data"]["id"]
            .as_u64()
            .ok_or_else(|| janus_error(&created))?;
        let session_path = format!("{}/{session}", base.path);
        let attached = base
            .post(
                &session_path,
                &json!({"janus": "attach", "plugin": "janus.plugin.streaming", "transaction": "a"}),
            )
            .await?;
        let handle = attached["data"]["id"]
            .as_u64()
            .ok_or_else(|| janus_error(&attached))?;
        let watch = json!({"janus": "message", "transaction": "w",
                           "body": {"request": "watch", "id": mountpoint}});
        let acked = base
            .post(&format!("{session_path}/{handle}"), &watch)
            .await?;
        if acked["janus"] != "ack" && acked["janus"] != "success" {
            return Err(janus_error(&acked));
        }
        let offer = tokio::time::timeout(SIGNAL_TIMEOUT, async {
            loop {
                let event = base.get(&format!("{session_path}?maxev=1")).await?;
                // With maxev the answer may be an array of events.
                let events = match event {
                    Value::Array(list) => list,
                    one => vec![one],
                };
                for event in events {
                    if let Some(sdp) = event["jsep"]["sdp"].as_str() {
                        return Ok(sdp.to_string());
                    }
                    let data = &event["plugindata"]["data"];
                    if data.get("error").is_some() || event["janus"] == "hangup" {
                        return Err(janus_error(&event));
                    }
                }
            }
        })
        .await
        .map_err(|_| "no offer from janus within 20 s".to_string())??;
        let (sender, events) = mpsc::unbounded_channel();
        let poller = tokio::task::spawn_local(poll(base.clone(), session_path, sender));
        Ok((
            JanusSession {
                base,
                session,
                handle,
                events,
                poller,
            },
            offer,
        ))
    }

    async fn answer(&mut self, sdp: &str) -> Result<(), String> {
        let start = json!({"janus": "message", "transaction": "s",
                           "body": {"request": "start"},
                           "jsep": {"type": "answer", "sdp": sdp}});
        let path = format!("{}/{}/{}", self.base.path, self.session, self.handle);
        let acked = self.base.post(&path, &start).await?;
        if acked["janus"] != "ack" && acked["janus"] != "success" {
            return Err(janus_error(&acked));
        }
        Ok(())
    }
}

/// Long-polls the session's events (each poll also keeps it alive: Janus ends a session that
/// asks nothing for 60 s) and passes on what ends the play.
async fn poll(base: HttpBase, session_path: String, events: mpsc::UnboundedSender<String>) {
    let path = format!("{session_path}?maxev=10");
    while !events.is_closed() {
        let reply = match base.get(&path).await {
            Ok(reply) => reply,
            Err(e) => {
                let _ = events.send(e);
                return;
            }
        };
        let list = match reply {
            Value::Array(list) => list,
            one => vec![one],
        };
        for event in list {
            let kind = event["janus"].as_str().unwrap_or_default();
            if kind == "hangup" || kind == "detached" || kind == "error" {
                let _ = events.send(janus_error(&event));
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn dechunks_janus_answers() {
        let body = b"44\r\n{\"janus\":\"success\",\"transaction\":\"c\",\"data\":{\"id\":5363794471846870}}\r\n0\r\n\r\n";
        let json = super::dechunk(body).unwrap();
        assert!(json.starts_with(b"{\"janus\"") && json.ends_with(b"}}"));
        let two = b"3\r\nabc\r\n2;ext=1\r\nde\r\n0\r\n\r\n";
        assert_eq!(super::dechunk(two).unwrap(), b"abcde");
        assert_eq!(super::dechunk(b"5\r\nab"), None);
        assert_eq!(super::dechunk(b"zz\r\n"), None);
    }
}
