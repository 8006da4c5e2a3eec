#!/usr/bin/env bash
# RTSP camera pulls per core: N pulls (REST rtsp/startup, one RTSP connection each) of a test
# camera, mediarouter on core 0; then the same N camera URLs relayed by one ffmpeg process each
# (`-c copy`, also on core 0), the usual way without a media server. The camera
# (scripts/bench/camera/replay_camera.py, gst-rtsp-server, on core 1) replays a pre-encoded
# 640x360 25 fps H.264 500 kbit/s + AAC 48 kHz loop (2 s GOP), encoded once and cached in
# target/bench-media/, to every client from one shared pipeline: each pull has its own URL (by
# query), nothing is encoded per client. Server and camera CPU from /proc over a steady window;
# every pull is checked to receive the camera's frame rate. Prints one table.
#
# usage: scripts/bench/pulls.sh [PULLS] [WINDOW_SECONDS]   (MR_BIN: use this server binary)
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/bench/lib.sh
pulls=${1:-200}
window=${2:-10}
ulimit -n "$(ulimit -Hn)"
command -v ffmpeg >/dev/null &&
  /usr/bin/python3 -c 'import gi; gi.require_version("GstRtspServer", "1.0")' 2>/dev/null ||
  bash scripts/install-test-deps.sh >&2
if [[ -z "${MR_BIN:-}" ]]; then cargo build --release -p mediarouter >&2; fi
MR_BIN=${MR_BIN:-target/release/mediarouter}

# A 16 s loop: 400 video frames and exactly 750 AAC frames at 48 kHz, so audio and video loop
# together (ffmpeg writes one more AAC frame; the camera drops it).
media=target/bench-media/camera-360p25
if [[ ! -s $media.h264 || ! -s $media.aac ]]; then
  mkdir -p "$(dirname "$media")"
  echo "encoding $media.h264 + .aac" >&2
  # -t on each output: the sine source never ends. Written under temporary names, so an
  # interrupted encode leaves nothing that looks cached.
  ffmpeg -hide_banner -loglevel error -nostdin -f lavfi -i testsrc2=size=640x360:rate=25 \
    -f lavfi -i sine=frequency=1000:sample_rate=48000 \
    -map 0:v -t 16 -c:v libx264 -profile:v main -preset veryfast -bf 0 -pix_fmt yuv420p \
    -b:v 500k -maxrate 500k -bufsize 1000k -g 50 -keyint_min 50 -sc_threshold 0 \
    -f h264 -y "$media.h264.part" \
    -map 1:a -t 16 -c:a aac -b:a 64k -ac 1 -ar 48000 -f adts -y "$media.aac.part"
  mv "$media.h264.part" "$media.h264"
  mv "$media.aac.part" "$media.aac"
fi
# What one pull receives each second: 25 video frames and 48000 / 1024 AAC frames.
camera_fps=25
camera_frames_per_s=$(python3 -c "print($camera_fps + 48000 / 1024)")

work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT
# CPU ticks (utime + stime) and resident KB of the given pids, each read in one pass: reading
# 300 processes one awk at a time takes longer than a second, which would stretch the window.
cpu() {
  local files; mapfile -t files < <(for p in "$@"; do [[ -r /proc/$p/stat ]] && echo "/proc/$p/stat"; done)
  ((${#files[@]})) || { echo 0; return; }
  awk '{t += $14 + $15} END {print t + 0}' "${files[@]}" 2>/dev/null || echo 0
}
rss() {
  local files; mapfile -t files < <(for p in "$@"; do [[ -r /proc/$p/status ]] && echo "/proc/$p/status"; done)
  ((${#files[@]})) || { echo 0; return; }
  awk '/^VmRSS/ {t += $2} END {print t + 0}' "${files[@]}" 2>/dev/null || echo 0
}
# RTSP connections the camera has open (ESTABLISHED sockets on its port)
camera_clients() { ss -Htn state established "( sport = :18554 )" | wc -l; }

taskset -c 1 /usr/bin/python3 scripts/bench/camera/replay_camera.py --port 18554 \
  --video "$media.h264" --audio "$media.aac" --fps "$camera_fps" >"$work/camera.log" 2>&1 &
camera=$!
pids+=($camera)
wait_port 18554
# camera URL of pull N: one camera, a URL of its own per pull (mediarouter keeps one pull per URL)
url() { echo "rtsp://127.0.0.1:18554/cam?n=$1"; }

echo "mediarouter: $pulls pulls" >&2
MEDIAROUTER__SERVER__WORKERS=1 MEDIAROUTER__LOG__FILTER=warn MEDIAROUTER__RTMP__PORT=11935 \
MEDIAROUTER__HTTP__PORT=18080 MEDIAROUTER__REST__PORT=18081 MEDIAROUTER__WEBRTC__ENABLED=false \
  taskset -c 0 "$MR_BIN" >"$work/server.log" 2>&1 &
mr=$!
pids+=($mr)
wait_port 18081
rss_before=$(rss "$mr")
for i in $(seq "$pulls"); do echo "{\"uri\":\"$(url "$i")\",\"name\":\"cam$i\"}"; done |
  xargs -P 10 -I{} -d '\n' curl -s -o /dev/null -X POST http://127.0.0.1:18081/rest-api/rtsp/startup -d '{}'
sleep 5
frames() { curl -s -X POST http://127.0.0.1:18081/rest-api/stream/find_all; }
frames >"$work/before.json"
c0=$(cpu "$mr"); k0=$(cpu "$camera"); sleep "$window"; c1=$(cpu "$mr"); k1=$(cpu "$camera")
frames >"$work/after.json"
rss_after=$(rss "$mr")
mr_clients=$(camera_clients)
kill "$mr"
wait "$mr" 2>/dev/null || true
# Until the camera has seen every pull go, its CPU would count their teardown.
for _ in $(seq 50); do [[ $(camera_clients) -eq 0 ]] && break; sleep 0.2; done

echo "ffmpeg: $pulls processes" >&2
ff=()
for i in $(seq "$pulls"); do
  taskset -c 0 ffmpeg -hide_banner -loglevel error -nostdin -rtsp_transport tcp \
    -i "$(url "$i")" -c copy -f null -progress "$work/ff-$i.progress" -stats_period 1 - \
    >/dev/null 2>&1 &
  ff+=($!)
  pids+=($!)
done
# video frames each ffmpeg has relayed so far and when it wrote that (its progress file's
# mtime: the report is up to a second old, too coarse to take the wall clock instead)
ff_frames() {
  for i in $(seq "$pulls"); do
    local f=$work/ff-$i.progress n
    n=$({ grep '^frame=' "$f" 2>/dev/null || echo frame=0; } | tail -n 1 | cut -d= -f2)
    echo "$n $(stat -c %.6Y "$f" 2>/dev/null || echo 0)"
  done
}
# Starting 200 ffmpeg processes on one core takes a while: wait until each has relayed video
# (30 s at most), then let the backlog of their start drain.
for _ in $(seq 60); do
  ff_frames | awk '$1 == 0 {z++} END {exit z > 0}' && break
  sleep 0.5
done
sleep 5
ff_frames >"$work/ff-before.txt"
f0=$(cpu "${ff[@]}"); k2=$(cpu "$camera"); sleep "$window"; f1=$(cpu "${ff[@]}"); k3=$(cpu "$camera")
ff_frames >"$work/ff-after.txt"
ff_rss=$(rss "${ff[@]}")
ff_clients=$(camera_clients)
running=0; for p in "${ff[@]}"; do kill -0 "$p" 2>/dev/null && running=$((running + 1)); done

python3 - "$pulls" "$window" "$work/before.json" "$work/after.json" "$c0" "$c1" "$rss_before" \
  "$rss_after" "$f0" "$f1" "$ff_rss" "$running" "$k0" "$k1" "$k2" "$k3" "$mr_clients" \
  "$ff_clients" "$camera_fps" "$camera_frames_per_s" "$work/ff-before.txt" "$work/ff-after.txt" <<'PY'
import json, sys
pulls, window = int(sys.argv[1]), float(sys.argv[2])
before = {s["name"]: s["frames_in"] for s in json.load(open(sys.argv[3]))}
after = {s["name"]: s["frames_in"] for s in json.load(open(sys.argv[4]))}
(c0, c1, rss0, rss1, f0, f1, ff_rss, running, k0, k1, k2, k3, mr_clients, ff_clients, fps,
 frames_per_s) = (float(x) for x in sys.argv[5:21])
ff_before = [[float(x) for x in line.split()] for line in open(sys.argv[21])]
ff_after = [[float(x) for x in line.split()] for line in open(sys.argv[22])]


def rate(per_s, expected):
    """(pulls getting at least 90 % of the expected frames per second, median frames per second)"""
    ok = sum(1 for r in per_s if r >= 0.9 * expected)
    median = sorted(per_s)[len(per_s) // 2] if per_s else 0
    return ok, median


# mediarouter counts video and audio frames; ffmpeg's progress counts video frames, each count
# over the time between its two reports.
mr_ok, mr_median = rate([(after[n] - before.get(n, 0)) / window for n in after], frames_per_s)
ff_ok, ff_median = rate([(n1 - n0) / (t1 - t0) if t1 > t0 else 0
                         for (n0, t0), (n1, t1) in zip(ff_before, ff_after)], fps)
mr_pct = (c1 - c0) / window
ff_pct = (f1 - f0) / window
print("| camera pulls | mediarouter | ffmpeg, one process per camera | ratio |")
print("|---|---|---|---|")
print(f"| RTSP connections at the camera | {mr_clients:.0f} | {ff_clients:.0f} | |")
print(f"| pulls at the camera's frame rate | {mr_ok}/{pulls} (median {mr_median:.1f} video + audio "
      f"frames/s of {frames_per_s:.1f}) | {ff_ok}/{pulls} (median {ff_median:.1f} video frames/s "
      f"of {fps:.0f}); {running:.0f} running | |")
print(f"| CPU, % of a core | {mr_pct:.1f} | {ff_pct:.1f} | {mr_pct / ff_pct:.2f} |")
print(f"| CPU per pull, % of a core | {mr_pct / pulls:.3f} | {ff_pct / pulls:.3f} | |")
print(f"| pulls per core | {pulls * 100 / mr_pct:.0f} | {pulls * 100 / ff_pct:.0f} | |")
print(f"| memory per pull, KB | {(rss1 - rss0) / pulls:.0f} | {ff_rss / pulls:.0f} | {(rss1 - rss0) / ff_rss:.2f} |")
print(f"| camera CPU (core 1), % of a core | {(k1 - k0) / window:.1f} | {(k3 - k2) / window:.1f} | |")
PY
