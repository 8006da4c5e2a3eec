#!/usr/bin/env bash
# Checks the benchmarks' Janus with a real WebRTC client: Janus (pinned to core 0) fed by
# `loadgen publish --rtp` (core 1), headless Chromium (core 1) watching mountpoint 1 through the
# HTTP API from a page served by http://127.0.0.1; prints check.mjs's JSON line (video frames
# decoded per second, audio samples per second, Janus's CPU with this one viewer) and Janus's
# CPU with the publisher alone.
#
# usage: scripts/bench/janus/check.sh [SECONDS]   (LOADGEN_BIN: use this loadgen binary)
set -euo pipefail
cd "$(dirname "$0")/../../.."
source scripts/bench/lib.sh
source scripts/bench/janus/janus.sh
seconds=${1:-20}
ensure_janus
[[ -d tests/browser/node_modules/playwright-core ]] || (cd tests/browser && npm install --no-audit --no-fund >&2)
if [[ -z "${LOADGEN_BIN:-}" ]]; then
  flock /tmp/cargo.lock cargo build --release -p mediarouter-loadgen >&2
fi
LOADGEN_BIN=${LOADGEN_BIN:-target/release/loadgen}
media=target/bench-media/720p30-2m.mp4
[[ -s $media ]] || { echo "$media missing: run scripts/bench/webrtc.sh once" >&2; exit 1; }

work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

start_janus "$work/janus.log"
pids+=("$janus_pid")
taskset -c 1 "$LOADGEN_BIN" publish --rtp 127.0.0.1:15004,15006 --file "$media" --seconds 100000 \
  >"$work/publish.log" 2>&1 &
pids+=($!)
page_port=18090
python3 -m http.server "$page_port" --bind 127.0.0.1 --directory scripts/bench/janus \
  >"$work/http.log" 2>&1 &
pids+=($!)
wait_port "$page_port"
sleep 3
ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
before=$(ticks "$janus_pid")
sleep 10
idle=$(( $(ticks "$janus_pid") - before ))
echo "Janus CPU, publisher only: $(awk "BEGIN { print $idle / 10 }") % of a core" >&2
drops=$(janus_source_drops)
status=0
taskset -c 1 node scripts/bench/janus/check.mjs --page "http://127.0.0.1:$page_port/viewer.html" \
  --janus http://127.0.0.1:18088/janus --seconds "$seconds" --server-pid "$janus_pid" || status=$?
echo "RTP datagrams dropped at Janus's sockets during the check: $(( $(janus_source_drops) - drops ))" >&2
grep -E "ERR|WARN" "$work/janus.log" | grep -v "has been disabled\|mDNS" | head -5 >&2 || true
exit "$status"
