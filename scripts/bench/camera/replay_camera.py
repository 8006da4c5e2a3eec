#!/usr/bin/python3
"""Benchmark camera: one RTSP server (gst-rtsp-server) replaying a pre-encoded H.264 + AAC loop to
any number of clients, each on its own URL, without encoding anything.

Runs under Debian's /usr/bin/python3 (python3-gi, gir1.2-gst-rtsp-server-1.0; see
scripts/install-test-deps.sh). Used by scripts/bench/pulls.sh, which encodes the files once:

    /usr/bin/python3 scripts/bench/camera/replay_camera.py --port 46554 \\
        --video target/bench-media/camera-360p25.h264 --audio target/bench-media/camera-360p25.aac
    ffmpeg -rtsp_transport tcp -i 'rtsp://127.0.0.1:46554/cam?n=7' -t 5 -f null -

--video: H.264 Annex-B elementary stream (no B-frames), played at --fps; --audio: AAC in ADTS.

Invariants:
- One media for every client: URLs of --path that differ by their query (how the benchmark makes
  each pull a separate camera for mediarouter) share one pipeline, so the cost per client is
  packet copies to its socket, never an encoder or a demuxer.
- Real time with continuous timestamps: frame i of the loop is stamped start + i / fps (audio:
  start + i * 1024 / rate), i counting on across loops, so RTP timestamps never jump back and the
  stream looks like a live camera. Frames are pushed at most LEAD ahead of the clock.
- A/V stay together across loops when the audio covers exactly the video's loop (pulls.sh makes a
  16 s loop: 400 frames at 25 fps and 750 AAC frames at 48 kHz); extra audio frames are dropped.
- A client that does not read its socket loses packets (gst-rtsp-server's drop-backlog, set
  explicitly here) instead of stalling the others or growing a queue without bound.

stdout: JSON lines, flushed at once: {"event": "listening", ...} at start, {"event": "status",
"active": N, "total": N, "video_frames": N, "audio_frames": N} every 5 s while it changes.
SIGTERM or SIGINT stops it (exit 0).
"""
import argparse
import json
import os
import signal
import sys
import time

import gi

gi.require_version('Gst', '1.0')
gi.require_version('GstRtspServer', '1.0')
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402

# How far ahead of the pipeline clock frames are pushed: absorbs the main loop's timer jitter.
LEAD_NS = 50 * Gst.MSECOND
ADTS_RATES = (96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000,
              7350)


def parse_args():
    ap = argparse.ArgumentParser(description='RTSP camera replaying a pre-encoded loop')
    ap.add_argument('--host', default='127.0.0.1', help='address to listen on (default 127.0.0.1)')
    ap.add_argument('--port', type=int, default=46554, help='RTSP port (default 46554)')
    ap.add_argument('--path', default='/cam', help='mount path (default /cam)')
    ap.add_argument('--video', required=True, help='H.264 Annex-B elementary stream')
    ap.add_argument('--audio', default=None, help='AAC ADTS stream (none: video only)')
    ap.add_argument('--fps', type=int, default=25, help='video frame rate (default 25)')
    a = ap.parse_args()
    if not a.path.startswith('/'):
        a.path = '/' + a.path
    return a


def nal_units(data):
    """NAL units of an Annex-B stream (start codes and trailing zero bytes removed)."""
    units, pos = [], data.find(b'\x00\x00\x01')
    while pos >= 0:
        start = pos + 3
        nxt = data.find(b'\x00\x00\x01', start)
        unit = data[start:nxt if nxt >= 0 else len(data)]
        units.append(unit.rstrip(b'\x00'))
        pos = nxt
    return [u for u in units if u]


def access_units(data):
    """Annex-B access units: a frame starts at an AUD, SPS, PPS or SEI after a slice, or at a
    slice with first_mb_in_slice 0 (ue(v) 0 is a single 1 bit) after a slice."""
    frames, current, has_slice = [], [], False
    for unit in nal_units(data):
        kind = unit[0] & 0x1f
        first_slice = kind in (1, 5) and len(unit) > 1 and unit[1] & 0x80
        if has_slice and (kind in (6, 7, 8, 9) or first_slice):
            frames.append(current)
            current, has_slice = [], False
        current.append(unit)
        has_slice = has_slice or kind in (1, 5)
    if current and has_slice:
        frames.append(current)
    return [b''.join(b'\x00\x00\x00\x01' + u for u in f) for f in frames]


def adts_frames(data):
    """(sample rate, channels, frames) of an ADTS stream; stops at the first broken header."""
    frames, pos, rate, channels = [], 0, None, None
    while pos + 7 <= len(data) and data[pos] == 0xff and data[pos + 1] & 0xf0 == 0xf0:
        length = ((data[pos + 3] & 3) << 11) | (data[pos + 4] << 3) | (data[pos + 5] >> 5)
        if length < 7 or pos + length > len(data):
            break
        if rate is None:
            index = (data[pos + 2] >> 2) & 0xf
            rate = ADTS_RATES[index] if index < len(ADTS_RATES) else None
            channels = ((data[pos + 2] & 1) << 2) | (data[pos + 3] >> 6)
        frames.append(data[pos:pos + length])
        pos += length
    return rate, channels, frames


def launch_line(with_audio, fps):
    video = ('appsrc name=v is-live=true format=time do-timestamp=false '
             f'caps=video/x-h264,stream-format=byte-stream,alignment=au,framerate={fps}/1 ! '
             'h264parse ! rtph264pay name=pay0 pt=96 config-interval=-1')
    audio = ('appsrc name=a is-live=true format=time do-timestamp=false '
             'caps=audio/mpeg,mpegversion=4,stream-format=adts ! aacparse ! '
             'rtpmp4gpay name=pay1 pt=97') if with_audio else ''
    return f'( {video} {audio} )'


class SharedFactory(GstRtspServer.RTSPMediaFactory):
    """A shared factory keys media by the whole URL (query included): one key makes every
    client of this mount share the one pipeline."""

    def do_gen_key(self, _url):
        return 'shared'


class Replayer:
    """Pushes the loop into the current media's appsrcs on its schedule (see the invariants)."""

    def __init__(self, video, audio, fps, rate):
        self.tracks = [('v', video, Gst.SECOND, fps)]
        if audio:
            self.tracks.append(('a', audio, 1024 * Gst.SECOND, rate))
        self.media = None
        self.pushed = {'v': 0, 'a': 0}

    def attach(self, media):
        pipeline = media.get_element()
        self.media = {'pipeline': pipeline, 'start': None, 'next': {'v': 0, 'a': 0},
                      'src': {name: pipeline.get_by_name(name) for name, *_ in self.tracks}}
        media.connect('unprepared', self.detach)

    def detach(self, media):
        if self.media and self.media['pipeline'] == media.get_element():
            self.media = None

    def tick(self):
        m = self.media
        if m is None:
            return True
        pipeline = m['pipeline']
        clock = pipeline.get_clock()
        if clock is None or pipeline.get_state(0)[1] != Gst.State.PLAYING:
            return True
        now = clock.get_time() - pipeline.get_base_time()
        if m['start'] is None:
            m['start'] = now
        for name, frames, unit, per in self.tracks:
            while True:
                i = m['next'][name]
                # Integer nanoseconds from the frame index: no rounding error piles up.
                pts = m['start'] + i * unit // per
                if pts > now + LEAD_NS:
                    break
                buf = Gst.Buffer.new_wrapped(frames[i % len(frames)])
                buf.pts = buf.dts = pts
                buf.duration = (i + 1) * unit // per - i * unit // per
                m['src'][name].emit('push-buffer', buf)
                m['next'][name] = i + 1
                self.pushed[name] += 1
        return True


def main():
    a = parse_args()
    Gst.init(None)
    with open(a.video, 'rb') as f:
        video = access_units(f.read())
    if not video:
        sys.exit(f'replay_camera: no H.264 access units in {a.video}')
    audio, rate, channels = [], None, None
    if a.audio:
        with open(a.audio, 'rb') as f:
            rate, channels, audio = adts_frames(f.read())
        if not audio or not rate:
            sys.exit(f'replay_camera: no ADTS frames in {a.audio}')
    loop_s = len(video) / a.fps
    if audio:
        # Audio beyond the video's loop would drift against it by that much every loop.
        audio = audio[:max(1, round(loop_s * rate / 1024))]
    replayer = Replayer(video, audio, a.fps, rate)

    st = {'active': 0, 'total': 0}

    def on_closed(_client):
        st['active'] -= 1

    def on_connected(_server, client):
        st['active'] += 1
        st['total'] += 1
        client.set_property('drop-backlog', True)
        client.connect('closed', on_closed)

    server = GstRtspServer.RTSPServer()
    server.set_address(a.host)
    server.set_service(str(a.port))
    server.set_backlog(1024)  # hundreds of clients connect at once when a benchmark starts
    factory = SharedFactory()
    factory.set_launch(launch_line(bool(audio), a.fps))
    factory.set_shared(True)
    factory.connect('media-configure', lambda _f, media: replayer.attach(media))
    server.get_mount_points().add_factory(a.path, factory)
    server.connect('client-connected', on_connected)
    if server.attach(None) == 0:
        sys.exit(f'replay_camera: cannot bind {a.host}:{a.port}')
    GLib.timeout_add(10, replayer.tick)
    # Drop the sessions of clients that vanished without TEARDOWN.
    GLib.timeout_add_seconds(2, lambda: (server.get_session_pool().cleanup(), True)[1])
    last = {}

    def status():
        now = dict(st, video_frames=replayer.pushed['v'], audio_frames=replayer.pushed['a'])
        if now != last:
            print(json.dumps(dict(now, event='status', t=round(time.time(), 3))), flush=True)
            last.clear()
            last.update(now)
        return True

    GLib.timeout_add_seconds(5, status)
    print(json.dumps({
        'event': 'listening', 'url': f'rtsp://{a.host}:{a.port}{a.path}', 'pid': os.getpid(),
        'video_frames': len(video), 'fps': a.fps, 'audio_frames': len(audio),
        'audio_rate': rate, 'audio_channels': channels, 'loop_s': loop_s,
        'av_drift_ms_per_loop': round((len(audio) * 1024 / rate - loop_s) * 1000, 3)
        if audio else None}), flush=True)
    loop = GLib.MainLoop()
    for s in (signal.SIGTERM, signal.SIGINT):
        GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, s, loop.quit)
    loop.run()


if __name__ == '__main__':
    main()
