//! A real HTTP backend for the access-control tests (issue #8): a small threaded HTTP/1.1 server
//! on 127.0.0.1 (std only) that records every request's JSON body and answers each one as the
//! test's closure decides: allow (2xx, maybe with a JSON body), deny (any other status with a
//! `reason`), hang for a while (a backend that does not answer in time), answer after a while,
//! or write raw bytes (an answer that cannot be read, such as a body cut short).
//!
//! Connections are kept alive (several requests per connection are served in order) unless the
//! request asks for `Connection: close`. Every thread ends when the [`Backend`] is dropped.

use serde_json::{json, Value};
use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// How the backend answers one request.
#[derive(Clone, Debug)]
pub enum Answer {
    /// This HTTP status with this JSON body.
    Json(u16, Value),
    /// No answer for this long (then a 200 and the connection closed): a backend that hangs.
    Hang(Duration),
    /// This answer, after this long: a slow backend.
    After(Duration, Box<Answer>),
    /// These bytes as the whole response, then the connection closed (a status line and
    /// headers that promise more body than follows: an answer that cannot be read).
    Raw(Vec<u8>),
}

impl Answer {
    /// 200 with `{}`.
    pub fn allow() -> Answer {
        Answer::Json(200, json!({}))
    }

    /// 200 with this JSON body (`{"private": true}`, `{"client": "tag"}`).
    pub fn allow_with(body: Value) -> Answer {
        Answer::Json(200, body)
    }

    /// 403 with `{"reason": reason}`.
    pub fn deny(reason: &str) -> Answer {
        Answer::Json(403, json!({ "reason": reason }))
    }

    /// `answer` after `delay`.
    pub fn after(delay: Duration, answer: Answer) -> Answer {
        Answer::After(delay, Box::new(answer))
    }

    /// A 200 whose head announces `Content-Length: announced` but whose body is `body` only
    /// (shorter), the connection closed after it.
    pub fn truncated(announced: usize, body: &str) -> Answer {
        Answer::Raw(
            format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\
                 Content-Length: {announced}\r\nConnection: close\r\n\r\n{body}"
            )
            .into_bytes(),
        )
    }
}

/// One request the backend received.
#[derive(Clone, Debug)]
pub struct Hook {
    pub method: String,
    pub path: String,
    pub content_type: String,
    /// The body parsed as JSON (`Value::String(raw)` when it is not JSON).
    pub body: Value,
}

type Decide = Arc<dyn Fn(&Value) -> Answer + Send + Sync>;

/// The backend: listening from [`Backend::start`] until dropped.
pub struct Backend {
    pub port: u16,
    hooks: Arc<Mutex<Vec<Hook>>>,
    stop: Arc<AtomicBool>,
    acceptor: Option<thread::JoinHandle<()>>,
}

/// How long one socket read waits before the stop flag is looked at again.
const POLL: Duration = Duration::from_millis(50);
/// Largest request head or body taken.
const MAX_REQUEST_BYTES: usize = 1 << 20;

impl Backend {
    /// Listens on a free loopback port; `decide` chooses the answer to each request's body.
    pub fn start(decide: impl Fn(&Value) -> Answer + Send + Sync + 'static) -> Backend {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the backend");
        listener
            .set_nonblocking(true)
            .expect("non-blocking listener");
        let port = listener.local_addr().expect("backend address").port();
        let hooks = Arc::new(Mutex::new(Vec::new()));
        let decide: Decide = Arc::new(decide);
        let stop = Arc::new(AtomicBool::new(false));
        let acceptor = {
            let (hooks, decide, stop) = (hooks.clone(), decide.clone(), stop.clone());
            thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    match listener.accept() {
                        Ok((socket, _)) => {
                            let (hooks, decide, stop) =
                                (hooks.clone(), decide.clone(), stop.clone());
                            thread::spawn(move || serve(socket, &hooks, &decide, &stop));
                        }
                        Err(e) if e.kind() == ErrorKind::WouldBlock => thread::sleep(POLL / 5),
                        Err(_) => thread::sleep(POLL),
                    }
                }
            })
        };
        Backend {
            port,
            hooks,
            stop,
            acceptor: Some(acceptor),
        }
    }

    /// A backend that allows everything.
    pub fn allow_all() -> Backend {
        Backend::start(|_| Answer::allow())
    }

    /// The URL to give the server as `backend_url`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/hooks", self.port)
    }

    /// Every request received so far, in order of arrival.
    pub fn requests(&self) -> Vec<Hook> {
        self.hooks.lock().unwrap().clone()
    }

    /// The bodies of every request so far.
    pub fn hooks(&self) -> Vec<Value> {
        self.requests().into_iter().map(|h| h.body).collect()
    }

    /// The bodies whose `event` is `event`.
    pub fn events(&self, event: &str) -> Vec<Value> {
        self.hooks()
            .into_iter()
            .filter(|b| b["event"] == event)
            .collect()
    }

    /// Waits (bounded) until a request body matches; returns it.
    pub fn wait_hook(&self, timeout: Duration, pred: impl Fn(&Value) -> bool) -> Option<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(b) = self.hooks().into_iter().find(|b| pred(b)) {
                return Some(b);
            }
            if Instant::now() > deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// One line per request (event, protocol, app/stream, session), for failure messages.
    pub fn describe(&self) -> String {
        let lines: Vec<String> = self
            .hooks()
            .iter()
            .map(|b| {
                format!(
                    "{} {} {}/{} {} {}",
                    b["event"].as_str().unwrap_or("?"),
                    b["protocol"].as_str().unwrap_or("?"),
                    b["app"].as_str().unwrap_or("?"),
                    b["stream"].as_str().unwrap_or("-"),
                    b["sessionId"].as_str().unwrap_or("?"),
                    b["query"]
                )
            })
            .collect();
        format!(
            "backend got {} requests:\n{}",
            lines.len(),
            lines.join("\n")
        )
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.acceptor.take() {
            let _ = t.join();
        }
        if thread::panicking() {
            eprintln!("----- {} -----", self.describe());
        }
    }
}

/// Serves the requests of one connection in order until the peer closes it, asks to, or the
/// backend stops.
fn serve(mut socket: TcpStream, hooks: &Mutex<Vec<Hook>>, decide: &Decide, stop: &AtomicBool) {
    let _ = socket.set_nonblocking(false);
    let _ = socket.set_read_timeout(Some(POLL));
    let mut buf: Vec<u8> = Vec::new();
    loop {
        let Some(head_end) = read_until(&mut socket, &mut buf, stop, |b| {
            b.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4)
        }) else {
            return;
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
        buf.drain(..head_end);
        let mut lines = head.split("\r\n");
        let mut first = lines.next().unwrap_or_default().split(' ');
        let (method, path) = (
            first.next().unwrap_or_default().to_string(),
            first.next().unwrap_or_default().to_string(),
        );
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        let header = |name: &str| {
            headers
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
                .unwrap_or_default()
        };
        let body = if header("transfer-encoding").eq_ignore_ascii_case("chunked") {
            match read_chunked(&mut socket, &mut buf, stop) {
                Some(body) => body,
                None => return,
            }
        } else {
            let len: usize = header("content-length").parse().unwrap_or(0);
            if len > MAX_REQUEST_BYTES
                || read_until(&mut socket, &mut buf, stop, |b| {
                    (b.len() >= len).then_some(len)
                })
                .is_none()
            {
                return;
            }
            buf.drain(..len).collect()
        };
        let body: Value = serde_json::from_slice(&body)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).to_string()));
        hooks.lock().unwrap().push(Hook {
            method,
            path,
            content_type: header("content-type"),
            body: body.clone(),
        });
        let mut decided = decide(&body);
        while let Answer::After(delay, answer) = decided {
            wait(delay, stop);
            decided = *answer;
        }
        let (status, answer, close) = match decided {
            Answer::Json(status, answer) => (
                status,
                answer.to_string(),
                header("connection").eq_ignore_ascii_case("close"),
            ),
            Answer::Hang(duration) => {
                wait(duration, stop);
                (200, "{}".to_string(), true)
            }
            Answer::Raw(bytes) => {
                let _ = socket.write_all(&bytes);
                return;
            }
            Answer::After(..) => unreachable!("unwrapped above"),
        };
        let response = format!(
            "HTTP/1.1 {status} {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
             Connection: {}\r\n\r\n{answer}",
            reason_phrase(status),
            answer.len(),
            if close { "close" } else { "keep-alive" }
        );
        if socket.write_all(response.as_bytes()).is_err() || close {
            return;
        }
    }
}

/// Sleeps for `duration`, or until the backend stops.
fn wait(duration: Duration, stop: &AtomicBool) {
    let until = Instant::now() + duration;
    while Instant::now() < until && !stop.load(Ordering::SeqCst) {
        thread::sleep(POLL.min(until.saturating_duration_since(Instant::now())));
    }
}

/// Reads into `buf` until `complete` finds what it needs (returning its answer); None when the
/// peer closed, the request grew too big or the backend stops.
fn read_until(
    socket: &mut TcpStream,
    buf: &mut Vec<u8>,
    stop: &AtomicBool,
    complete: impl Fn(&[u8]) -> Option<usize>,
) -> Option<usize> {
    let mut chunk = [0u8; 16384];
    loop {
        if let Some(n) = complete(buf) {
            return Some(n);
        }
        if stop.load(Ordering::SeqCst) || buf.len() > MAX_REQUEST_BYTES {
            return None;
        }
        match socket.read(&mut chunk) {
            Ok(0) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => return None,
        }
    }
}

/// A chunked body (`Transfer-Encoding: chunked`), taken out of `buf`.
fn read_chunked(socket: &mut TcpStream, buf: &mut Vec<u8>, stop: &AtomicBool) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line_end = read_until(socket, buf, stop, |b| {
            b.windows(2).position(|w| w == b"\r\n").map(|i| i + 2)
        })?;
        let line = String::from_utf8_lossy(&buf[..line_end - 2]).to_string();
        buf.drain(..line_end);
        let size = usize::from_str_radix(line.split(';').next()?.trim(), 16).ok()?;
        let need = size + 2;
        read_until(socket, buf, stop, |b| (b.len() >= need).then_some(need))?;
        body.extend_from_slice(&buf[..size]);
        buf.drain(..need);
        if size == 0 {
            return Some(body);
        }
    }
}

fn reason_phrase(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        500 => "Internal Server Error",
        _ => "Status",
    }
}
