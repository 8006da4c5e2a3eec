//! Bad input on the RTMP port closes only the connection that sent it: a publisher and a player
//! running at the same time keep working, and the server stays up.

mod common;

use common::*;
use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;

fn connect(port: u16) -> TcpStream {
    let s = TcpStream::connect(("127.0.0.1", port)).expect("connect to the RTMP port");
    s.set_nodelay(true).ok();
    s
}

/// Random bytes (the first one is not an RTMP version byte).
fn random_bytes(port: u16) -> Result<(), String> {
    let mut s = connect(port);
    let mut junk = pseudo_random_bytes(8192, 0x5eed);
    junk[0] = 0xfa;
    let _ = s.write_all(&junk);
    match wait_socket_closed(&mut s, secs(5)) {
        Some(_) => Ok(()),
        None => Err("random bytes: connection still open after 5 s".into()),
    }
}

/// C0 and half of C1, then our side is shut: the server must drop the half handshake.
fn truncated_handshake_then_eof(port: u16) -> Result<(), String> {
    let mut s = connect(port);
    let mut c0c1 = vec![3u8];
    c0c1.extend(pseudo_random_bytes(768, 7));
    s.write_all(&c0c1).map_err(|e| e.to_string())?;
    shutdown_write(&s);
    match wait_socket_closed(&mut s, secs(5)) {
        Some(_) => Ok(()),
        None => Err("truncated handshake + EOF: connection still open after 5 s".into()),
    }
}

/// C0 and half of C1, and then silence: dropped after `rtmp.handshake_timeout_ms` (2 s here).
fn truncated_handshake_then_silence(port: u16) -> Result<(), String> {
    let mut s = connect(port);
    let mut c0c1 = vec![3u8];
    c0c1.extend(pseudo_random_bytes(768, 9));
    s.write_all(&c0c1).map_err(|e| e.to_string())?;
    match wait_socket_closed(&mut s, secs(8)) {
        Some(_) => Ok(()),
        None => Err("truncated handshake: still open 8 s later (handshake timeout is 2 s)".into()),
    }
}

/// A real handshake, then a type-0 chunk header declaring a 4,000,000-byte message (above
/// `rtmp.max_message_bytes`, 1 MiB here), followed by some of its bytes.
fn oversized_message(port: u16) -> Result<(), String> {
    let (mut s, _) = rtmp_handshake(port, secs(5))?;
    let len: u32 = 4_000_000;
    let mut chunk = vec![
        0x03, // fmt 0, chunk stream 3
        0,
        0,
        0, // timestamp
        (len >> 16) as u8,
        (len >> 8) as u8,
        len as u8,
        20, // AMF0 command
        0,
        0,
        0,
        0, // message stream id
    ];
    chunk.extend(pseudo_random_bytes(128, 11));
    let _ = s.write_all(&chunk);
    // Keep sending continuation chunks for a while, as a real sender of a big message would.
    for i in 0..16 {
        let mut more = vec![0xc3u8];
        more.extend(pseudo_random_bytes(128, 100 + i));
        if s.write_all(&more).is_err() {
            break;
        }
    }
    match wait_socket_closed(&mut s, secs(5)) {
        Some(_) => Ok(()),
        None => Err("oversized message: connection still open after 5 s".into()),
    }
}

/// A real handshake, then a `connect` command whose object nests 120,000 levels deep (840 KB,
/// under the 1 MiB message limit here): enough to overflow a thread's stack in a decoder that
/// recurses without bound. The server must refuse it and close only this connection.
fn deeply_nested_command(port: u16) -> Result<(), String> {
    let (mut s, _) = rtmp_handshake(port, secs(5))?;
    const LEVELS: usize = 120_000;
    let mut body = vec![0x02, 0x00, 0x07];
    body.extend_from_slice(b"connect");
    body.extend_from_slice(&[0x00, 0x3f, 0xf0, 0, 0, 0, 0, 0, 0]); // transaction 1.0
    for _ in 0..LEVELS {
        body.extend_from_slice(&[0x03, 0x00, 0x01, b'a']);
    }
    body.push(0x05);
    for _ in 0..LEVELS {
        body.extend_from_slice(&[0x00, 0x00, 0x09]);
    }
    let len = body.len() as u32;
    let mut message = vec![
        0x03, // fmt 0, chunk stream 3
        0,
        0,
        0,
        (len >> 16) as u8,
        (len >> 8) as u8,
        len as u8,
        20, // AMF0 command
        0,
        0,
        0,
        0,
    ];
    for (i, chunk) in body.chunks(128).enumerate() {
        if i > 0 {
            message.push(0xc3);
        }
        message.extend_from_slice(chunk);
    }
    let _ = s.write_all(&message);
    match wait_socket_closed(&mut s, secs(5)) {
        Some(_) => Ok(()),
        None => Err("deeply nested command: connection still open after 5 s".into()),
    }
}

#[test]
fn bad_input_closes_only_that_connection() {
    let mut server = Server::start(&[
        ("rtmp.handshake_timeout_ms", "2000"),
        ("rtmp.max_message_bytes", "1048576"),
    ]);
    let url = server.url("solid");
    let mut publisher = publish_ffmpeg(&url, 50, &[]);
    wait_live(server.rtmp_port, "live", "solid", secs(15));
    // A player that runs through all the bad input below.
    let player = Player::spawn(&url, 20);
    let mut scripted = RtmpClient::player(server.rtmp_port, "live", "solid").expect("RTMP player");
    scripted
        .wait_for(secs(5), |e| matches!(e, Event::Video { .. }))
        .unwrap_or_else(|seen| panic!("no video: {}", summarize(&seen)));

    let mut failures = Vec::new();
    for (name, attack) in [
        (
            "random bytes",
            random_bytes as fn(u16) -> Result<(), String>,
        ),
        ("truncated handshake + EOF", truncated_handshake_then_eof),
        (
            "truncated handshake + silence",
            truncated_handshake_then_silence,
        ),
        ("oversized message", oversized_message),
        ("deeply nested command", deeply_nested_command),
        ("random bytes again", random_bytes),
    ] {
        if let Err(e) = attack(server.rtmp_port) {
            failures.push(format!("{name}: {e}"));
        }
        assert!(server.is_alive(), "server died after {name}");
        // The scripted player kept receiving through it.
        let (v, _, closed) = scripted.count_media(Duration::from_millis(500));
        assert!(!closed, "the scripted player was closed after {name}");
        assert!(v > 0, "the scripted player got no video after {name}");
    }
    assert!(
        failures.is_empty(),
        "bad connections not closed: {failures:?}"
    );

    assert!(
        publisher.is_running(),
        "publisher cut by bad input: {}",
        publisher.stderr()
    );
    let played = player.finish(secs(40));
    assert!(
        played.success(),
        "player running through bad input failed: {played:?}"
    );
    assert_decoded("player running through bad input", &played, 20);

    let after = play_count(&url, 3);
    assert_decoded("player after bad input", &after, 3);
    assert!(server.is_alive());
    let (status, v) = server.rest("stream/find", r#"{"name":"solid"}"#);
    assert_eq!(status, 200, "{v}");
}

#[test]
fn oversized_message_with_default_limit_closes_the_connection() {
    let mut server = Server::start(&[]);
    // 16,777,215 bytes declared: above the default 8 MiB limit.
    let (mut s, _) = rtmp_handshake(server.rtmp_port, secs(5)).expect("handshake");
    let mut chunk = vec![0x03, 0, 0, 0, 0xff, 0xff, 0xff, 9, 1, 0, 0, 0];
    chunk.extend(pseudo_random_bytes(128, 3));
    let _ = s.write_all(&chunk);
    assert!(
        wait_socket_closed(&mut s, secs(5)).is_some(),
        "connection declaring a 16 MiB message still open after 5 s"
    );
    assert!(server.is_alive());
    // A new client still gets through.
    RtmpClient::connect(server.rtmp_port, "live").expect("connect after bad input");
}

#[test]
fn many_bad_connections_at_once_leave_the_server_serving() {
    let mut server = Server::start(&[("rtmp.handshake_timeout_ms", "2000")]);
    let mut sockets: Vec<TcpStream> = (0..50)
        .map(|i| {
            let mut s = connect(server.rtmp_port);
            let mut junk = pseudo_random_bytes(1000 + i * 10, i as u64 + 1);
            junk[0] = if i % 2 == 0 { 3 } else { 0xff };
            let _ = s.write_all(&junk);
            s
        })
        .collect();
    // All of them are dropped by the (2 s) handshake timeout at the latest: one shared deadline.
    let deadline = std::time::Instant::now() + secs(8);
    let open: usize = sockets
        .iter_mut()
        .map(|s| {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            usize::from(wait_socket_closed(s, left.max(Duration::from_millis(50))).is_none())
        })
        .sum();
    assert_eq!(
        open, 0,
        "{open} of 50 bad connections still open after the handshake timeout"
    );
    assert!(server.is_alive());
    let url = server.url("after");
    let _publisher = publish_ffmpeg(&url, 20, &[]);
    wait_live(server.rtmp_port, "live", "after", secs(15));
    let played = play_count(&url, 3);
    assert_decoded("player after 50 bad connections", &played, 3);
}

#[test]
fn idle_connection_is_dropped_after_idle_timeout() {
    let mut server = Server::start(&[("rtmp.idle_timeout_ms", "2000")]);
    // Handshake and connect, then neither publish nor play nor send anything.
    let mut idle = RtmpClient::connect(server.rtmp_port, "live").expect("connect");
    let started = std::time::Instant::now();
    assert!(
        idle.wait_closed(secs(10)),
        "idle connection still open 10 s later (idle_timeout_ms = 2000)"
    );
    let after = started.elapsed();
    assert!(
        after >= Duration::from_millis(1500),
        "idle connection dropped after {after:?}, before the idle timeout"
    );
    assert!(server.is_alive());
}
