//! RTMP publish/play end to end, with real clients: ffmpeg publishes H.264 + AAC in real time,
//! ffmpeg/ffprobe and a scriptable RTMP client play.

mod common;

use common::*;
use std::thread::sleep;
use std::time::{Duration, Instant};

#[test]
fn three_players_joining_at_different_moments_decode_video_and_audio() {
    let server = Server::start(&[]);
    let url = server.url("three");
    let mut publisher = publish_ffmpeg(&url, 40, &[]);
    wait_live(server.rtmp_port, "live", "three", secs(15));

    let a = Player::spawn(&url, 6);
    sleep(Duration::from_millis(2000));
    let b = Player::spawn(&url, 6);
    sleep(Duration::from_millis(2300));
    let c = Player::spawn(&url, 6);
    sleep(Duration::from_millis(700));
    // A late player's first video packet must be a keyframe, with timestamps starting at 0
    // (the stream has run for several seconds by now).
    let packets = probe_video_packets(&url, 5).expect("ffprobe the stream");
    assert!(!packets.is_empty(), "ffprobe saw no video packet");
    assert!(
        packets[0].flags.starts_with('K'),
        "late player's first video packet is not a keyframe: {packets:?}"
    );
    let first_ts = packets[0]
        .pts_time
        .or(packets[0].dts_time)
        .unwrap_or(f64::MAX);
    assert!(
        first_ts < 1.0,
        "late player's timestamps do not start near 0 (first video pts {first_ts}): {packets:?}"
    );

    for (label, player) in [("player A", a), ("player B", b), ("player C (late)", c)] {
        let played = player.finish(secs(30));
        assert!(played.success(), "{label} failed: {played:?}");
        assert_decoded(label, &played, 6);
    }
    assert!(
        publisher.is_running(),
        "publisher ended early: {}",
        publisher.stderr()
    );
}

#[test]
fn late_rtmp_player_gets_metadata_and_sequence_headers_then_cached_keyframe() {
    let server = Server::start(&[]);
    let url = server.url("gop");
    // A 10 s GOP: the only keyframe of the first 10 s is at the very start, so a player joining
    // a few seconds in can only start at once if the server replays its GOP cache.
    let _publisher = publish_ffmpeg(&url, 40, &["-g", "300", "-keyint_min", "300"]);
    wait_live(server.rtmp_port, "live", "gop", secs(15));
    sleep(Duration::from_millis(2500));

    let mut client = RtmpClient::player(server.rtmp_port, "live", "gop").expect("RTMP player");
    let asked = Instant::now();
    let (first_key, before) = client
        .wait_for(secs(8), |e| {
            matches!(
                e,
                Event::Video {
                    keyframe: true,
                    sequence_header: false,
                    ..
                }
            )
        })
        .unwrap_or_else(|seen| panic!("no keyframe within 8 s; saw {}", summarize(&seen)));
    let waited = asked.elapsed();
    assert!(
        waited < Duration::from_millis(2000),
        "first keyframe took {waited:?}: the GOP cache was not replayed"
    );

    let media_pos = |pred: &dyn Fn(&Event) -> bool| before.iter().position(pred);
    let play_start = media_pos(&|e| e.is_status("NetStream.Play.Start"));
    let metadata = media_pos(&|e| matches!(e, Event::Data { name } if name == "onMetaData"));
    let video_header = media_pos(&|e| {
        matches!(
            e,
            Event::Video {
                sequence_header: true,
                ..
            }
        )
    });
    let audio_header = media_pos(&|e| {
        matches!(
            e,
            Event::Audio {
                sequence_header: true,
                ..
            }
        )
    });
    let first_media = media_pos(&|e| e.is_media());
    let first_frame = media_pos(&|e| {
        matches!(
            e,
            Event::Video {
                sequence_header: false,
                ..
            } | Event::Audio {
                sequence_header: false,
                ..
            }
        )
    });
    assert!(
        play_start.is_some(),
        "no NetStream.Play.Start before media: {}",
        summarize(&before)
    );
    let metadata = metadata
        .unwrap_or_else(|| panic!("no onMetaData before the keyframe: {}", summarize(&before)));
    let video_header = video_header.unwrap_or_else(|| {
        panic!(
            "no AVC sequence header before the keyframe: {}",
            summarize(&before)
        )
    });
    let audio_header = audio_header.unwrap_or_else(|| {
        panic!(
            "no AAC sequence header before the keyframe: {}",
            summarize(&before)
        )
    });
    assert!(
        first_frame.is_none(),
        "media frames before the first keyframe: {}",
        summarize(&before)
    );
    assert!(
        metadata < first_media.unwrap(),
        "onMetaData does not come before the media: {}",
        summarize(&before)
    );
    assert!(play_start.unwrap() < first_media.unwrap());
    let _ = (video_header, audio_header);

    if let Event::Video { timestamp, .. } = first_key {
        assert!(
            timestamp < 500,
            "a late player's timestamps should start at 0, first keyframe at {timestamp} ms"
        );
    }
    // The cached GOP (~4 s of frames) arrives as a burst, then the stream goes on in real time.
    let (v, a, closed) = client.count_media(Duration::from_millis(1500));
    assert!(!closed, "server closed the player");
    assert!(
        v >= 60,
        "expected the cached GOP as a burst, got {v} video frames in 1.5 s"
    );
    assert!(a > 0, "no audio after the keyframe");
}

#[test]
fn duplicate_publish_is_refused_while_the_first_keeps_flowing() {
    let server = Server::start(&[]);
    let url = server.url("dup");
    let mut first = publish_ffmpeg(&url, 40, &[]);
    wait_live(server.rtmp_port, "live", "dup", secs(15));

    // A second ffmpeg publisher on the same name fails.
    let mut second = publish_ffmpeg(&url, 20, &[]);
    let status = second.wait_timeout(secs(10));
    let status = status.unwrap_or_else(|| {
        panic!(
            "second publisher still running after 10 s: {}",
            second.stderr()
        )
    });
    assert!(
        !status.success(),
        "second publisher exited 0: {}",
        second.stderr()
    );

    // A scripted publisher is told NetStream.Publish.BadName.
    let mut client = RtmpClient::connect(server.rtmp_port, "live").expect("connect");
    client.publish("dup").expect("send publish");
    let seen = client
        .wait_for(secs(5), |e| matches!(e, Event::Status { .. }))
        .unwrap_or_else(|seen| {
            panic!(
                "no onStatus for the duplicate publish: {}",
                summarize(&seen)
            )
        });
    assert!(
        seen.0.is_status("NetStream.Publish.BadName"),
        "duplicate publish answered {:?}",
        seen.0
    );

    assert!(
        first.is_running(),
        "first publisher was cut: {}",
        first.stderr()
    );
    let played = play_count(&url, 3);
    assert!(
        played.success(),
        "player after the refused publish failed: {played:?}"
    );
    assert_decoded("player after duplicate publish", &played, 3);
    assert!(
        first.is_running(),
        "first publisher was cut: {}",
        first.stderr()
    );
}

#[test]
fn unpublish_notifies_players_and_republish_resumes_them() {
    let server = Server::start(&[("stream.unpublish_grace_ms", "20000")]);
    let url = server.url("again");
    let mut first = publish_ffmpeg(&url, 8, &[]);
    wait_live(server.rtmp_port, "live", "again", secs(15));

    let mut scripted = RtmpClient::player(server.rtmp_port, "live", "again").expect("RTMP player");
    scripted
        .wait_for(secs(5), |e| matches!(e, Event::Video { .. }))
        .unwrap_or_else(|seen| panic!("scripted player got no video: {}", summarize(&seen)));
    let mut ffplayer = Player::spawn(&url, 60);

    // The first publisher ends by itself after 8 s of media.
    first
        .wait_timeout(secs(20))
        .unwrap_or_else(|| panic!("publisher did not end: {}", first.stderr()));
    scripted
        .wait_status("NetStream.Play.UnpublishNotify", secs(10))
        .unwrap_or_else(|seen| {
            panic!(
                "no UnpublishNotify after the publisher left: {}",
                summarize(&seen)
            )
        });
    // ffmpeg takes UnpublishNotify as the end of the stream.
    let ended = ffplayer.proc.wait_timeout(secs(10));
    assert!(
        ended.is_some(),
        "ffmpeg player still running 10 s after the unpublish"
    );
    let (v, _) = ffplayer.counts();
    assert!(
        v > 30,
        "ffmpeg player decoded only {v} frames before the unpublish"
    );

    // A player that joins while the stream is unpublished waits for the republish.
    let waiting = Player::spawn(&url, 4);
    sleep(Duration::from_millis(1500));
    let second = publish_ffmpeg(&url, 30, &[]);

    // The scripted player stayed attached and gets media again.
    let resumed = scripted.wait_for(secs(10), |e| matches!(e, Event::Video { .. }));
    if let Err(seen) = resumed {
        panic!(
            "scripted player not resumed by the republish: {}",
            summarize(&seen)
        );
    }
    assert!(!scripted.is_closed());
    let (v, a, closed) = scripted.count_media(secs(2));
    assert!(
        !closed && v > 30 && a > 0,
        "resumed player: video {v} audio {a} closed {closed}"
    );

    let played = waiting.finish(secs(30));
    assert!(
        played.success(),
        "player waiting for the republish failed: {played:?}"
    );
    assert_decoded("player waiting for the republish", &played, 4);

    // A publisher that vanishes without unpublishing (killed) is noticed the same way.
    second.signal("KILL");
    scripted
        .wait_status("NetStream.Play.UnpublishNotify", secs(10))
        .unwrap_or_else(|seen| {
            panic!(
                "no UnpublishNotify after the publisher was killed: {}",
                summarize(&seen)
            )
        });
    assert!(!scripted.is_closed());
}

#[test]
fn play_before_publish_times_out_with_stream_not_found() {
    let server = Server::start(&[("stream.play_wait_timeout_ms", "2000")]);

    let mut scripted = RtmpClient::player(server.rtmp_port, "live", "nobody").expect("RTMP player");
    let asked = Instant::now();
    scripted
        .wait_status("NetStream.Play.StreamNotFound", secs(10))
        .unwrap_or_else(|seen| panic!("no StreamNotFound within 10 s: {}", summarize(&seen)));
    let waited = asked.elapsed();
    assert!(
        waited >= Duration::from_millis(1500) && waited <= Duration::from_millis(6000),
        "StreamNotFound after {waited:?}, expected after the 2 s play wait"
    );

    let played = Player::spawn(&server.url("nobody2"), 3).finish(secs(15));
    assert!(
        played.status.is_some(),
        "ffmpeg player still waiting after 15 s"
    );
    assert!(
        !played.success(),
        "ffmpeg player of a missing stream exited 0: {played:?}"
    );
    assert_eq!(played.video, 0);
    assert!(
        played.elapsed >= Duration::from_millis(1500),
        "ffmpeg player failed before the play wait ended: {played:?}"
    );
}

#[test]
fn play_before_publish_starts_when_the_publisher_arrives() {
    let server = Server::start(&[("stream.play_wait_timeout_ms", "10000")]);
    let url = server.url("early?token=abc");
    let player = Player::spawn(&server.url("early"), 4);
    sleep(Duration::from_millis(2000));
    let _publisher = publish_ffmpeg(&url, 30, &[]);
    let played = player.finish(secs(30));
    assert!(played.success(), "early player failed: {played:?}");
    assert_decoded("player started before the publisher", &played, 4);
}

#[test]
fn two_streams_at_once_including_b_frames_play_without_errors() {
    let server = Server::start(&[]);
    let plain = server.url("plain");
    let bframes = server.url("bframes");
    let _p1 = publish_ffmpeg(&plain, 30, &[]);
    // High profile with B-frames: composition time offsets must survive the trip.
    let _p2 = publish_ffmpeg(
        &bframes,
        30,
        &["-profile:v", "high", "-tune", "film", "-bf", "2"],
    );
    wait_live(server.rtmp_port, "live", "plain", secs(15));
    wait_live(server.rtmp_port, "live", "bframes", secs(15));

    let a = Player::spawn(&plain, 5);
    let b = Player::spawn(&bframes, 5);
    let packets = probe_video_packets(&bframes, 12).expect("ffprobe the B-frame stream");
    assert!(packets[0].flags.starts_with('K'), "{packets:?}");
    let reordered = packets.iter().any(|p| match (p.pts_time, p.dts_time) {
        (Some(pts), Some(dts)) => pts > dts + 0.001,
        _ => false,
    });
    assert!(
        reordered,
        "no packet with pts > dts: composition time offsets were lost: {packets:?}"
    );
    assert_decoded("player of the plain stream", &a.finish(secs(30)), 5);
    assert_decoded("player of the B-frame stream", &b.finish(secs(30)), 5);

    let (status, all) = server.rest("stream/find_all", "{}");
    assert_eq!(status, 200, "{all}");
    let mut names: Vec<&str> = all
        .as_array()
        .map(|a| a.iter().filter_map(|s| s["name"].as_str()).collect())
        .unwrap_or_default();
    names.sort();
    assert_eq!(names, ["bframes", "plain"], "{all}");
}
