#!/usr/bin/env bash
# Glass-to-glass delay, publisher to a viewer's display, for the WebSocket (fMP4/MSE) and WebRTC
# paths: ffmpeg publishes frames stamped with the wall clock over RTMP (H.264 baseline without
# B-frames, then high profile with B-frames, both with AAC), headless Chromium plays each with
# each transport and reads the stamps back from the frames it displays. Prints one table.
#
# usage: scripts/bench/latency.sh [SECONDS]   (MR_BIN=path to use another server binary)
set -euo pipefail
cd "$(dirname "$0")/../.."
seconds=${1:-15}
if [[ -z "${MR_BIN:-}" ]]; then
  cargo build --release --bin mediarouter >&2
  MR_BIN=target/release/mediarouter
fi
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

rtmp=41935 http=48080
MEDIAROUTER__RTMP__PORT=$rtmp MEDIAROUTER__HTTP__PORT=$http MEDIAROUTER__REST__PORT=48081 \
MEDIAROUTER__WEBRTC__PORT_MIN=41000 MEDIAROUTER__WEBRTC__PORT_MAX=41099 \
MEDIAROUTER__WEBRTC__ICE_ADDRESSES=127.0.0.1 MEDIAROUTER__LOG__FILTER=warn \
  "$MR_BIN" >"$work/server.log" 2>&1 &
pids+=($!)
for _ in $(seq 50); do (exec 3<>/dev/tcp/127.0.0.1/$http) 2>/dev/null && break; sleep 0.2; done

publish() { # name, x264 options...
  local name=$1; shift
  python3 scripts/bench/stamp_source.py 640 360 30 $((seconds * 2 + 40)) |
    ffmpeg -hide_banner -loglevel error -f rawvideo -pix_fmt gray -s 640x360 -r 30 -i - \
      -re -f lavfi -i sine=frequency=440:sample_rate=48000 \
      -c:v libx264 -pix_fmt yuv420p -g 60 "$@" -c:a aac -b:a 64k \
      -f flv "rtmp://127.0.0.1:$rtmp/live/$name" 2>"$work/ffmpeg-$name.log" &
  pids+=($!)
}

publish lat-baseline -profile:v baseline -preset ultrafast -tune zerolatency
publish lat-bframes -profile:v high -preset veryfast -bf 2 -x264-params rc-lookahead=5
sleep 4
printf "%-14s %-9s %7s %7s %9s %7s %7s %7s %7s %10s\n" stream transport frames misread first_ms p50_ms p90_ms p99_ms max_ms buffer_s
for name in lat-baseline lat-bframes; do
  for transport in ws webrtc; do
    line=$(node scripts/bench/latency.mjs --http-port $http --name "live/$name" \
      --transport $transport --seconds "$seconds" 2>>"$work/browser.log" | tail -1)
    python3 - "$name" "$transport" "$line" <<'PY'
import json, sys
name, transport, line = sys.argv[1:4]
r = json.loads(line) if line.startswith("{") else {"ok": False, "error": line}
if not r.get("ok"):
    print(f"{name:<14} {transport:<9} failed: {r.get('error')}")
else:
    buf = r.get("bufferSeconds")
    buf = f"{buf:.2f}" if isinstance(buf, (int, float)) else "-"
    print(f"{name:<14} {r['transport']:<9} {r['frames']:>7} {r['badReads']:>7} {r['firstFrameMs']:>9} {r['p50']:>7} {r['p90']:>7} {r['p99']:>7} {r['max']:>7} {buf:>10}")
PY
  done
done
