#!/usr/bin/env bash
# RTSP camera pulls per core: N pulls (REST rtsp/startup, one RTSP connection each) of test
# cameras (scripts/rtsp_camera.py: 640x360 25 fps H.264 500 kbit/s + AAC; one camera process per
# 20 pulls, as one gst-rtsp-server process does not serve hundreds of clients; on core 1), mediarouter
# on core 0; then the same N cameras relayed by one ffmpeg process each (`-c copy`, also on core
# 0), the usual way without a media server. Server CPU from /proc over a steady window, every pull
# checked to be receiving frames. Prints one table.
#
# usage: scripts/bench/pulls.sh [PULLS] [WINDOW_SECONDS]   (MR_BIN: use this server binary)
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/bench/lib.sh
pulls=${1:-200}
window=${2:-10}
ulimit -n "$(ulimit -Hn)"
command -v ffmpeg >/dev/null && /usr/bin/python3 -c 'import gi' 2>/dev/null || bash scripts/install-test-deps.sh >&2
if [[ -z "${MR_BIN:-}" ]]; then cargo build --release -p mediarouter >&2; fi
MR_BIN=${MR_BIN:-target/release/mediarouter}
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT
# CPU seconds (utime + stime) of the given pids
cpu() { local t=0; for p in "$@"; do t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null || echo 0))); done; echo "$t"; }
rss() { local t=0; for p in "$@"; do t=$((t + $(awk '/VmRSS/ {print $2}' "/proc/$p/status" 2>/dev/null || echo 0))); done; echo "$t"; }

cameras=$(( (pulls + 19) / 20 ))
for c in $(seq 0 $((cameras - 1))); do
  taskset -c 1 /usr/bin/python3 scripts/rtsp_camera.py --port $((18554 + c)) --auth none \
    --audio aac --size 640x360 --fps 25 --bitrate 500 >"$work/camera-$c.log" 2>&1 &
  pids+=($!)
done
for c in $(seq 0 $((cameras - 1))); do wait_port $((18554 + c)); done
# camera URL of pull N
url() { echo "rtsp://127.0.0.1:$((18554 + $1 % cameras))/cam?n=$1"; }

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
c0=$(cpu "$mr"); sleep "$window"; c1=$(cpu "$mr")
frames >"$work/after.json"
rss_after=$(rss "$mr")
kill "$mr"

echo "ffmpeg: $pulls processes" >&2
ff=()
for i in $(seq "$pulls"); do
  taskset -c 0 ffmpeg -hide_banner -loglevel error -nostdin -rtsp_transport tcp \
    -i "$(url "$i")" -c copy -f null - >/dev/null 2>&1 &
  ff+=($!)
  pids+=($!)
done
sleep 8
f0=$(cpu "${ff[@]}"); sleep "$window"; f1=$(cpu "${ff[@]}")
ff_rss=$(rss "${ff[@]}")
running=0; for p in "${ff[@]}"; do kill -0 "$p" 2>/dev/null && running=$((running + 1)); done

python3 - "$pulls" "$window" "$work/before.json" "$work/after.json" "$c0" "$c1" "$rss_before" "$rss_after" "$f0" "$f1" "$ff_rss" "$running" <<'PY'
import json, sys
pulls, window = int(sys.argv[1]), float(sys.argv[2])
before = {s["name"]: s["frames_in"] for s in json.load(open(sys.argv[3]))}
after = {s["name"]: s["frames_in"] for s in json.load(open(sys.argv[4]))}
c0, c1, rss0, rss1, f0, f1, ff_rss, running = (float(x) for x in sys.argv[5:13])
deltas = [after[n] - before.get(n, 0) for n in after]
# At least the camera's 25 video frames a second (its audio adds more).
receiving = sum(1 for d in deltas if d >= 0.9 * 25 * window)
median_fps = sorted(deltas)[len(deltas) // 2] / window if deltas else 0
mr_pct = (c1 - c0) / 100 / window * 100
ff_pct = (f1 - f0) / 100 / window * 100
print("| camera pulls | mediarouter | ffmpeg, one process per camera | ratio |")
print("|---|---|---|---|")
print(f"| pulls receiving frames (median {median_fps:.0f} frames/s each) | {receiving}/{pulls} | {int(running)}/{pulls} running | |")
print(f"| CPU, % of a core | {mr_pct:.1f} | {ff_pct:.1f} | {mr_pct / ff_pct:.2f} |")
print(f"| CPU per pull, % of a core | {mr_pct / pulls:.3f} | {ff_pct / pulls:.3f} | |")
print(f"| pulls per core | {pulls * 100 / mr_pct:.0f} | {pulls * 100 / ff_pct:.0f} | |")
print(f"| memory per pull, KB | {(rss1 - rss0) / pulls:.0f} | {ff_rss / pulls:.0f} | {(rss1 - rss0) / ff_rss:.2f} |")
PY
