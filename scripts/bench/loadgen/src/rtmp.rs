//! A lean RTMP client on tokio for load: handshake (rml_rtmp), commands and control messages
//! written with the core's chunk encoder, everything read with the core's zero-copy chunk
//! decoder. Enough to `connect`, `createStream`, `play` or `publish` against any RTMP server.
//!
//! Invariants: the peer's chunk size, acknowledgement window and pings are honoured inside
//! [`Conn::next_message`]; callers see only commands and media; every wait is bounded by the
//! caller's timeout.

use bytes::Bytes;
use mediarouter_core::codec::amf;
use mediarouter_core::rtmp::{ChunkDecoder, ChunkEncoder, MessageHeader, OutQueue, RawMessage};
use rml_amf0::Amf0Value;
use rml_rtmp::handshake::{Handshake, HandshakeProcessResult, PeerType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const CHUNK_SIZE: usize = 4096;
const READ_BUFFER: usize = 64 * 1024;
const CSID_COMMAND: u32 = 3;
const CSID_AUDIO: u32 = 4;
const CSID_VIDEO: u32 = 6;

/// `rtmp://HOST:PORT/APP/NAME?QUERY` taken apart.
#[derive(Clone, Debug)]
pub struct RtmpUrl {
    pub address: String,
    pub app: String,
    /// The stream name with its query string.
    pub name: String,
}

impl RtmpUrl {
    pub fn parse(url: &str) -> Result<RtmpUrl, String> {
        let rest = url
            .strip_prefix("rtmp://")
            .ok_or_else(|| format!("not an rtmp:// URL: {url}"))?;
        let (host, path) = rest.split_once('/').ok_or("no application in the URL")?;
        let (app, name) = path.split_once('/').ok_or("no stream name in the URL")?;
        let address = if host.contains(':') {
            host.to_string()
        } else {
            format!("{host}:1935")
        };
        Ok(RtmpUrl {
            address,
            app: app.to_string(),
            name: name.to_string(),
        })
    }
}

pub struct Conn {
    socket: TcpStream,
    decoder: ChunkDecoder,
    encoder: ChunkEncoder,
    buffer: Vec<u8>,
    next_transaction: f64,
    bytes_in: u64,
    acked_at: u64,
    window: u64,
    /// Total bytes read from the socket.
    pub received: u64,
}

/// A command the server sent: name, transaction id and arguments after the command object.
pub struct Command {
    pub name: String,
    pub transaction: f64,
    pub args: Vec<Amf0Value>,
}

impl Conn {
    /// TCP connect, handshake and `connect` to the URL's application.
    pub async fn open(url: &RtmpUrl) -> Result<Conn, String> {
        let mut socket = TcpStream::connect(&url.address)
            .await
            .map_err(|e| format!("connect {}: {e}", url.address))?;
        socket.set_nodelay(true).ok();
        let rest = handshake(&mut socket).await?;
        let mut conn = Conn {
            socket,
            decoder: ChunkDecoder::new(16 * 1024 * 1024),
            encoder: ChunkEncoder::new(128),
            buffer: vec![0; READ_BUFFER],
            next_transaction: 1.0,
            bytes_in: 0,
            acked_at: 0,
            window: 2_500_000,
            received: 0,
        };
        conn.decoder.push(&rest);
        conn.control(1, &(CHUNK_SIZE as u32).to_be_bytes()).await?;
        conn.encoder = ChunkEncoder::new(CHUNK_SIZE);
        let tc_url = format!("rtmp://{}/{}", url.address, url.app);
        let object = amf::object(&[
            ("app", amf::string(&url.app)),
            ("type", amf::string("nonprivate")),
            ("flashVer", amf::string("FMLE/3.0 (compatible; loadgen)")),
            ("tcUrl", amf::string(&tc_url)),
        ]);
        let tid = conn.command(0, "connect", object, vec![]).await?;
        let answer = conn.wait_result(tid).await?;
        if answer.name != "_result" {
            return Err(format!("connect refused: {}", describe(&answer.args)));
        }
        Ok(conn)
    }

    /// `createStream` and its message stream id.
    pub async fn create_stream(&mut self) -> Result<u32, String> {
        let tid = self
            .command(0, "createStream", Amf0Value::Null, vec![])
            .await?;
        let answer = self.wait_result(tid).await?;
        match answer.args.first() {
            Some(Amf0Value::Number(id)) => Ok(*id as u32),
            _ => Err("createStream answered without a stream id".into()),
        }
    }

    /// `play(name)` on a new stream; returns once sent (media follows).
    pub async fn play(&mut self, name: &str) -> Result<u32, String> {
        let stream = self.create_stream().await?;
        self.command(
            stream,
            "play",
            Amf0Value::Null,
            vec![amf::string(name), Amf0Value::Number(-2.0)],
        )
        .await?;
        // SetBufferLength, as players send it.
        let mut event = vec![0, 3];
        event.extend_from_slice(&stream.to_be_bytes());
        event.extend_from_slice(&1000u32.to_be_bytes());
        self.control(4, &event).await?;
        Ok(stream)
    }

    /// `publish(name, "live")`; returns once the server said `NetStream.Publish.Start`.
    pub async fn publish(&mut self, name: &str) -> Result<u32, String> {
        let stream = self.create_stream().await?;
        self.command(
            stream,
            "publish",
            Amf0Value::Null,
            vec![amf::string(name), amf::string("live")],
        )
        .await?;
        loop {
            let message = self.next_message().await?;
            if message.type_id != 20 {
                continue;
            }
            let command = parse_command(&message.payload)?;
            if command.name == "onStatus" {
                let text = describe(&command.args);
                if text.contains("NetStream.Publish.Start") {
                    return Ok(stream);
                }
                return Err(format!("publish refused: {text}"));
            }
        }
    }

    /// Sends one media message (type 8 audio, 9 video) of `header` + `payload`.
    pub async fn send_media(
        &mut self,
        stream: u32,
        type_id: u8,
        timestamp_ms: u32,
        header: &[u8],
        payload: &Bytes,
    ) -> Result<(), String> {
        let csid = if type_id == 9 { CSID_VIDEO } else { CSID_AUDIO };
        let mut out = OutQueue::new();
        self.encoder.encode(
            &mut out,
            MessageHeader {
                csid,
                timestamp: timestamp_ms,
                type_id,
                stream_id: stream,
            },
            header,
            payload,
        );
        self.write(out).await
    }

    async fn write(&mut self, out: OutQueue) -> Result<(), String> {
        self.socket
            .write_all(&out.to_vec())
            .await
            .map_err(|e| format!("write: {e}"))
    }

    async fn control(&mut self, type_id: u8, body: &[u8]) -> Result<(), String> {
        let mut out = OutQueue::new();
        self.encoder.encode(
            &mut out,
            MessageHeader {
                csid: 2,
                timestamp: 0,
                type_id,
                stream_id: 0,
            },
            body,
            &Bytes::new(),
        );
        self.write(out).await
    }

    async fn command(
        &mut self,
        stream: u32,
        name: &str,
        object: Amf0Value,
        args: Vec<Amf0Value>,
    ) -> Result<f64, String> {
        let tid = self.next_transaction;
        self.next_transaction += 1.0;
        let mut values = vec![amf::string(name), Amf0Value::Number(tid), object];
        values.extend(args);
        let body = rml_amf0::serialize(&values).map_err(|e| format!("{e:?}"))?;
        let mut out = OutQueue::new();
        self.encoder.encode(
            &mut out,
            MessageHeader {
                csid: CSID_COMMAND,
                timestamp: 0,
                type_id: 20,
                stream_id: stream,
            },
            &[],
            &Bytes::from(body),
        );
        self.write(out).await?;
        Ok(tid)
    }

    async fn wait_result(&mut self, tid: f64) -> Result<Command, String> {
        loop {
            let message = self.next_message().await?;
            if message.type_id != 20 {
                continue;
            }
            let command = parse_command(&message.payload)?;
            if (command.name == "_result" || command.name == "_error") && command.transaction == tid
            {
                return Ok(command);
            }
        }
    }

    /// The next command, data or media message; control messages are handled here.
    pub async fn next_message(&mut self) -> Result<RawMessage, String> {
        loop {
            match self.decoder.next_message().map_err(|e| e.to_string())? {
                Some(message) => match message.type_id {
                    1 => {
                        let size = be_u32(&message.payload)?;
                        self.decoder
                            .set_chunk_size(size)
                            .map_err(|e| e.to_string())?;
                    }
                    5 => self.window = u64::from(be_u32(&message.payload)?).max(1),
                    // Ping request → ping response with the same timestamp.
                    4 if message.payload.get(..2) == Some(&[0, 6]) => {
                        let mut pong = vec![0, 7];
                        pong.extend_from_slice(&message.payload[2..]);
                        self.control(4, &pong).await?;
                    }
                    2..=6 => {}
                    _ => return Ok(message),
                },
                None => {
                    let n = self
                        .socket
                        .read(&mut self.buffer)
                        .await
                        .map_err(|e| format!("read: {e}"))?;
                    if n == 0 {
                        return Err("server closed the connection".into());
                    }
                    self.received += n as u64;
                    self.bytes_in += n as u64;
                    self.decoder.push(&self.buffer[..n]);
                    if self.bytes_in - self.acked_at >= self.window / 2 {
                        self.acked_at = self.bytes_in;
                        let sequence = (self.bytes_in as u32).to_be_bytes();
                        self.control(3, &sequence).await?;
                    }
                }
            }
        }
    }
}

async fn handshake(socket: &mut TcpStream) -> Result<Vec<u8>, String> {
    let mut hs = Handshake::new(PeerType::Client);
    let c0c1 = hs
        .generate_outbound_p0_and_p1()
        .map_err(|e| format!("{e:?}"))?;
    socket
        .write_all(&c0c1)
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    let mut buf = vec![0u8; 8192];
    loop {
        let n = socket
            .read(&mut buf)
            .await
            .map_err(|e| format!("handshake: {e}"))?;
        if n == 0 {
            return Err("closed during the handshake".into());
        }
        match hs
            .process_bytes(&buf[..n])
            .map_err(|e| format!("handshake: {e:?}"))?
        {
            HandshakeProcessResult::InProgress { response_bytes } => {
                socket
                    .write_all(&response_bytes)
                    .await
                    .map_err(|e| format!("handshake: {e}"))?;
            }
            HandshakeProcessResult::Completed {
                response_bytes,
                remaining_bytes,
            } => {
                socket
                    .write_all(&response_bytes)
                    .await
                    .map_err(|e| format!("handshake: {e}"))?;
                return Ok(remaining_bytes);
            }
        }
    }
}

fn be_u32(payload: &[u8]) -> Result<u32, String> {
    payload
        .get(..4)
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
        .ok_or_else(|| "short control message".into())
}

pub fn parse_command(payload: &[u8]) -> Result<Command, String> {
    let mut values = amf::deserialize(payload)?.into_iter();
    let name = match values.next() {
        Some(Amf0Value::Utf8String(name)) => name,
        _ => return Err("command without a name".into()),
    };
    let transaction = match values.next() {
        Some(Amf0Value::Number(n)) => n,
        _ => 0.0,
    };
    let _command_object = values.next();
    Ok(Command {
        name,
        transaction,
        args: values.collect(),
    })
}

/// `code: description` of the first status object among `args`.
pub fn describe(args: &[Amf0Value]) -> String {
    for arg in args {
        if let Amf0Value::Object(props) = arg {
            let text = |key: &str| match props.get(key) {
                Some(Amf0Value::Utf8String(s)) => s.clone(),
                _ => String::new(),
            };
            return format!("{}: {}", text("code"), text("description"));
        }
    }
    format!("{args:?}")
}
