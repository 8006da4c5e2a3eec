//! A player that stops reading does not slow the others, and is disconnected once it has stayed
//! behind for `stream.player_max_lag_ms`.

mod common;

use common::*;
use std::time::{Duration, Instant};

#[test]
fn stalled_players_do_not_slow_others_and_get_disconnected() {
    let server = Server::start(&[
        ("stream.player_max_lag_ms", "2000"),
        ("stream.player_max_queued_bytes", "262144"),
    ]);
    let url = server.url("stall");
    let _publisher = publish_ffmpeg(&url, 60, &CBR_8M);
    wait_live(server.rtmp_port, "live", "stall", secs(15));

    // Stalled player 1: a scripted client that plays, receives some video, then never reads.
    let mut raw = RtmpClient::player(server.rtmp_port, "live", "stall").expect("RTMP player");
    raw.wait_for(secs(5), |e| matches!(e, Event::Video { .. }))
        .unwrap_or_else(|seen| panic!("stalled-to-be player got no video: {}", summarize(&seen)));
    // Stalled player 2: an ffmpeg player frozen with SIGSTOP once it is playing.
    let mut frozen = Player::spawn(&url, 60);
    // The player that must not be slowed down, started at the same time.
    let good = Player::spawn(&url, 25);
    let deadline = Instant::now() + secs(10);
    while frozen.counts().0 < 10 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        frozen.counts().0 >= 10,
        "ffmpeg player never started: {}",
        frozen.proc.stderr()
    );
    frozen.proc.signal("STOP");
    let stalled_at = Instant::now();

    let (ok, v) = server.wait_stream("stall", secs(10), |v| rtmp_players(v) >= 3);
    assert!(ok, "expected 3 RTMP players (2 stalled + 1 good): {v:?}");

    // Both stalled players are dropped while the good one keeps playing.
    let (ok, v) = server.wait_stream("stall", secs(40), |v| rtmp_players(v) == 1);
    let dropped_after = stalled_at.elapsed();
    eprintln!("stalled players dropped {dropped_after:?} after the SIGSTOP; last find: {v:?}");
    assert!(
        ok,
        "stalled players not disconnected {dropped_after:?} after they stopped reading \
         (player_max_lag_ms = 2000): {v:?}"
    );
    assert!(
        dropped_after >= Duration::from_millis(1500),
        "stalled players dropped after only {dropped_after:?}, before player_max_lag_ms"
    );

    let played = good.finish(secs(45));
    assert!(played.success(), "good player failed: {played:?}");
    assert_decoded("player next to stalled players", &played, 25);
    assert!(
        played.elapsed <= secs(25 + 10),
        "good player was slowed down: 25 s of media took {:?}",
        played.elapsed
    );

    // The scripted client finds its connection closed once it drains what was buffered.
    assert!(
        raw.wait_closed(secs(20)),
        "the stalled scripted player's connection is still open"
    );
    // The frozen ffmpeg, resumed, finds its connection closed and ends long before its 60 s.
    frozen.proc.signal("CONT");
    let ended = frozen.proc.wait_timeout(secs(20));
    assert!(
        ended.is_some(),
        "resumed ffmpeg player still running: it was not disconnected"
    );
}

#[test]
fn a_stalled_player_with_default_settings_does_not_slow_others() {
    let server = Server::start(&[]);
    let url = server.url("calm");
    let _publisher = publish_ffmpeg(&url, 40, &[]);
    wait_live(server.rtmp_port, "live", "calm", secs(15));
    let mut raw = RtmpClient::player(server.rtmp_port, "live", "calm").expect("RTMP player");
    raw.wait_for(secs(5), |e| matches!(e, Event::Video { .. }))
        .unwrap_or_else(|seen| panic!("no video: {}", summarize(&seen)));
    // `raw` never reads again.
    let played = play_count(&url, 12);
    assert!(played.success(), "{played:?}");
    assert_decoded("player next to a stalled one", &played, 12);
    assert!(
        played.elapsed <= secs(12 + 8),
        "player slowed down: {:?}",
        played.elapsed
    );
    drop(raw);
}
