#!/usr/bin/python3
"""A fake IP camera for tests and manual tries: a real RTSP server (GStreamer's gst-rtsp-server).

Runs under Debian's /usr/bin/python3 (it needs python3-gi and gir1.2-gst-rtsp-server-1.0; see
scripts/install-test-deps.sh). One shared encoding pipeline serves every client: a moving ball
(H.264, one keyframe every --gop frames) and a 1 kHz tone (AAC, G.711 A-law or u-law, or none).

    /usr/bin/python3 scripts/rtsp_camera.py --port 8554 --path /cam \\
        --user admin --password 'p@ss:w0rd' --auth digest --audio aac --stats-file /tmp/cam.json

    ffmpeg -rtsp_transport tcp -i 'rtsp://admin:p%40ss%3Aw0rd@127.0.0.1:8554/cam' -t 5 -f null -

stdout: one JSON line per event, flushed at once:
    {"event": "listening", "url": ..., "auth": ..., "audio": ..., "encoder": ..., "pid": ...}
    {"event": "connect", "peer": "127.0.0.1:40312", ...}
    {"event": "request", "method": "SETUP", "peer": ..., "path": "/cam/stream=0",
     "query": ..., "transport": "RTP/AVP/TCP;unicast;interleaved=0-1", "user_agent": ...}
    {"event": "close", "peer": ..., ...}
each with "t" (unix time), "active" (open connections) and "total" (connections ever accepted).

--stats-file F: a JSON snapshot rewritten (atomically) after every event:
    {"active": N, "total_connections": N, "closes": N, "requests": {"describe": N, ...},
     "clients": ["127.0.0.1:40312", ...], "sessions": N, "pid": N}
total_connections is the number to assert "one RTSP connection per camera URL".

SIGTERM or SIGINT stops it cleanly (exit 0). Binding reuses the address, so a camera killed with
SIGKILL can be restarted on the same port at once.
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
gi.require_version('GstRtsp', '1.0')
from gi.repository import GLib, Gst, GstRtsp, GstRtspServer  # noqa: E402

METHODS = ('options', 'describe', 'setup', 'play', 'pause', 'teardown', 'get-parameter',
           'set-parameter', 'announce', 'record')


def parse_args():
    ap = argparse.ArgumentParser(description='Fake IP camera (RTSP server) for mediarouter tests')
    ap.add_argument('--host', default='127.0.0.1', help='address to listen on (default 127.0.0.1)')
    ap.add_argument('--port', type=int, default=8554, help='RTSP port (default 8554)')
    ap.add_argument('--path', default='/cam', help='mount path (default /cam)')
    ap.add_argument('--user', default=None, help='user name; no auth without it')
    ap.add_argument('--password', default=None, help='password (raw, e.g. p@ss:w0rd)')
    ap.add_argument('--auth', choices=('digest', 'basic', 'none'), default='digest',
                    help='authentication method when --user is given (default digest)')
    ap.add_argument('--audio', choices=('aac', 'pcma', 'pcmu', 'none'), default='aac',
                    help='audio track (default aac)')
    ap.add_argument('--encoder', choices=('x264', 'openh264'), default='x264',
                    help='H.264 encoder (default x264)')
    ap.add_argument('--size', default='640x360', help='video size WxH (default 640x360)')
    ap.add_argument('--fps', type=int, default=25, help='frames per second (default 25)')
    ap.add_argument('--gop', type=int, default=25, help='frames between keyframes (default 25)')
    ap.add_argument('--bitrate', type=int, default=800, help='video kbit/s (default 800)')
    ap.add_argument('--stats-file', default=None, help='JSON snapshot file rewritten on each event')
    a = ap.parse_args()
    if a.auth != 'none' and a.user and a.password is None:
        ap.error('--password is needed with --user (or use --auth none)')
    try:
        w, h = (int(x) for x in a.size.split('x'))
    except ValueError:
        ap.error(f'--size must be WxH, got {a.size!r}')
    a.width, a.height = w, h
    if not a.path.startswith('/'):
        a.path = '/' + a.path
    return a


def launch_line(a):
    venc = {
        'x264': (f'x264enc tune=zerolatency speed-preset=ultrafast key-int-max={a.gop} '
                 f'bitrate={a.bitrate} ! video/x-h264,profile=baseline'),
        'openh264': (f'openh264enc bitrate={a.bitrate * 1000} gop-size={a.gop} complexity=low ! '
                     'h264parse'),
    }[a.encoder]
    tone = 'audiotestsrc is-live=true freq=1000 wave=sine volume=0.3 ! audioconvert ! audioresample'
    audio = {
        'aac': (f'{tone} ! audio/x-raw,rate=44100,channels=2 ! avenc_aac ! '
                'rtpmp4gpay name=pay1 pt=97'),
        'pcma': f'{tone} ! audio/x-raw,rate=8000,channels=1 ! alawenc ! rtppcmapay name=pay1 pt=8',
        'pcmu': f'{tone} ! audio/x-raw,rate=8000,channels=1 ! mulawenc ! rtppcmupay name=pay1 pt=0',
        'none': '',
    }[a.audio]
    return (f'( videotestsrc is-live=true pattern=ball ! '
            f'video/x-raw,width={a.width},height={a.height},framerate={a.fps}/1 ! videoconvert ! '
            f'{venc} ! rtph264pay name=pay0 pt=96 config-interval=-1 {audio} )')


def main():
    a = parse_args()
    Gst.init(None)
    st = {'active': 0, 'total_connections': 0, 'closes': 0, 'requests': {}, 'clients': [],
          'pid': os.getpid()}
    server = GstRtspServer.RTSPServer()

    def write_stats():
        # Runs on the main loop: touching the session pool inside a client callback deadlocks.
        if a.stats_file:
            snap = dict(st, sessions=server.get_session_pool().get_n_sessions())
            tmp = a.stats_file + '.tmp'
            with open(tmp, 'w') as f:
                json.dump(snap, f)
            os.replace(tmp, a.stats_file)
        return False

    def emit(ev, **kw):
        line = dict(kw, event=ev, t=round(time.time(), 3), active=st['active'],
                    total=st['total_connections'])
        print(json.dumps(line), flush=True)
        if a.stats_file:
            GLib.idle_add(write_stats)

    def on_request(_client, ctx, method, peer):
        st['requests'][method] = st['requests'].get(method, 0) + 1
        extra = {}
        try:  # what was asked for: path and query of the request URL, and SETUP's transport
            if ctx.uri is not None:
                extra['path'] = ctx.uri.abspath
                if ctx.uri.query:
                    extra['query'] = ctx.uri.query
            if ctx.request is not None:
                for name, field in (('transport', GstRtsp.RTSPHeaderField.TRANSPORT),
                                    ('user_agent', GstRtsp.RTSPHeaderField.USER_AGENT)):
                    res, value = ctx.request.get_header(field, 0)
                    if res == GstRtsp.RTSPResult.OK and value:
                        extra[name] = value
        except Exception:  # noqa: BLE001 - details are only for the log
            pass
        emit('request', method=method.upper(), peer=peer, **extra)

    def on_closed(_client, peer):
        st['active'] -= 1
        st['closes'] += 1
        emit('close', peer=peer)

    def on_connected(_srv, client):
        peer = '?'
        try:
            sa = client.get_connection().get_read_socket().get_remote_address()
            peer = f'{sa.get_address().to_string()}:{sa.get_port()}'
        except Exception:  # noqa: BLE001 - a peer name is only for the log
            pass
        st['active'] += 1
        st['total_connections'] += 1
        st['clients'].append(peer)
        emit('connect', peer=peer)
        for m in METHODS:
            try:
                client.connect(f'{m}-request', on_request, m, peer)
            except TypeError:
                pass  # a signal this gst-rtsp-server version does not have
        client.connect('closed', on_closed, peer)

    server.set_address(a.host)
    server.set_service(str(a.port))
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(launch_line(a))
    factory.set_shared(True)  # one pipeline, N clients
    server.get_mount_points().add_factory(a.path, factory)
    if a.auth != 'none' and a.user:
        auth = GstRtspServer.RTSPAuth()
        token = GstRtspServer.RTSPToken()
        token.set_string('media.factory.role', a.user)
        if a.auth == 'basic':
            auth.add_basic(GstRtspServer.RTSPAuth.make_basic(a.user, a.password), token)
            auth.set_supported_methods(GstRtsp.RTSPAuthMethod.BASIC)
        else:
            auth.add_digest(a.user, a.password, token)
            # RTSPAuthMethod is a GEnum in the typelib: one method only from Python.
            auth.set_supported_methods(GstRtsp.RTSPAuthMethod.DIGEST)
        server.set_auth(auth)
        factory.add_role_from_structure(Gst.Structure.from_string(
            f'{a.user}, media.factory.access=(boolean)true, '
            'media.factory.construct=(boolean)true')[0])
    server.connect('client-connected', on_connected)
    if server.attach(None) == 0:
        print(json.dumps({'event': 'error', 'error': f'cannot bind {a.host}:{a.port}'}),
              flush=True)
        sys.exit(f'rtsp_camera: cannot bind {a.host}:{a.port}')
    # Drop idle sessions of clients that vanished without TEARDOWN.
    GLib.timeout_add_seconds(2, lambda: (server.get_session_pool().cleanup(), True)[1])
    emit('listening', url=f'rtsp://{a.host}:{a.port}{a.path}', auth=a.auth if a.user else 'none',
         audio=a.audio, encoder=a.encoder, pid=os.getpid())
    loop = GLib.MainLoop()
    for s in (signal.SIGTERM, signal.SIGINT):
        GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, s, loop.quit)
    loop.run()
    emit('stopped')
    write_stats()


if __name__ == '__main__':
    main()
