#!/usr/bin/env bash
# WebRTC fan-out benchmark, side by side in one run: the same 720p30 H.264 + AAC file (2 Mbit/s,
# 2 s GOP, each video frame stamped with the wall clock by the publisher) served to N WebRTC
# subscribers by mediarouter and by Janus 1.1 (Debian package, streaming plugin). Server pinned
# to core 0, load (scripts/bench/loadgen: publisher and subscribers) to core 1.
#
# - mediarouter (server.workers = 1) is fed over RTMP (`loadgen publish --url`); it packetizes
#   the H.264 and transcodes the AAC to Opus itself (one transcoder per stream).
# - Janus is fed plain RTP (`loadgen publish --rtp`): the same frames and stamps, packetized by
#   mediarouter's own packetizer and the AAC transcoded by mediarouter's own AacToOpus in the
#   publisher, so Janus only relays (its job: it cannot take RTMP). The transcoding is therefore
#   on mediarouter's side of the ledger only (~0.8 % of a core, BENCHMARKS.md).
# - Janus runs a thread (GLib loop) per handle plus its own; `taskset -c 0` puts all of them on
#   core 0, like mediarouter's single worker: the fairness rule is the core, not the threads.
# Prints one table: per server what the subscribers got (the same frames everywhere, or nobody
# wins by dropping), packets delivered per second, the server's CPU per delivered packet and per
# subscriber, memory per subscriber, time to first frame and the delay of each frame from the
# publisher's send to the subscriber's receipt.
#
# usage: scripts/bench/webrtc.sh [SUBSCRIBERS] [WINDOW_SECONDS]
#   MR_BIN / LOADGEN_BIN: use these binaries instead of building release ones.
#   RAMP_PER_S: subscribers started per second (default 50).
#   MR_RTMP_PORT / MR_HTTP_PORT / MR_REST_PORT: mediarouter's ports (11935 / 18080 / 18081).
#   KEEP_WORK=1: keep the logs and reports (the directory is printed).
#   JANUS_EVENT_LOOPS=N: Janus with a pool of N event loops instead of a thread per handle.
#   VIDEO_KBPS: the source's video bit rate (default 2000; the goal is stated at 1500).
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/bench/lib.sh
source scripts/bench/janus/janus.sh
subscribers=${1:-500}
window=${2:-20}
ramp=${RAMP_PER_S:-50}
rtmp_port=${MR_RTMP_PORT:-11935} http_port=${MR_HTTP_PORT:-18080} rest_port=${MR_REST_PORT:-18081}
ulimit -n "$(ulimit -Hn)"  # a socket per subscriber, on each side

ensure_janus
command -v ffmpeg >/dev/null || bash scripts/install-test-deps.sh >&2
if [[ -z "${MR_BIN:-}" || -z "${LOADGEN_BIN:-}" ]]; then
  flock /tmp/cargo.lock cargo build --release -p mediarouter -p mediarouter-loadgen >&2
fi

media=$(bench_media "${VIDEO_KBPS:-2000}")

work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [[ -n ${KEEP_WORK:-} ]]; then echo "logs and reports kept in $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT
# Copies: a build started meanwhile (target/ is shared) must not swap a binary mid-run.
cp "${MR_BIN:-target/release/mediarouter}" "$work/mediarouter"
cp "${LOADGEN_BIN:-target/release/loadgen}" "$work/loadgen"
MR_BIN=$work/mediarouter
LOADGEN_BIN=$work/loadgen

# run NAME SERVER_PID PUBLISH_ARGS PLAY_ARGS: the publisher (left running 3 s first so the
# server has the stream and a GOP), then the subscribers; the loadgen's JSON goes to
# $work/NAME.json.
run() {
  local name=$1 server=$2 publish=$3 play=$4
  # shellcheck disable=SC2086  # the argument strings are word lists
  taskset -c 1 "$LOADGEN_BIN" publish $publish --file "$media" --seconds 100000 \
    >"$work/$name-publish.log" 2>&1 &
  local publisher=$!
  pids+=($publisher)
  sleep 3
  # The server's thread count in the middle of the window.
  (sleep "$(awk "BEGIN { print $subscribers / $ramp + 6 + $window / 2 }")"
   awk '/^Threads:/ { print $2 }' "/proc/$server/status" >"$work/$name-threads" 2>/dev/null) &
  pids+=($!)
  # shellcheck disable=SC2086
  taskset -c 1 "$LOADGEN_BIN" play $play --window-s "$window" --warmup-s 6 --ramp-per-s "$ramp" \
    --server-pid "$server" >"$work/$name.json"
  kill "$publisher" 2>/dev/null || true
}

echo "mediarouter: $subscribers WebRTC subscribers, ${window}s window" >&2
MEDIAROUTER__SERVER__WORKERS=1 MEDIAROUTER__LOG__FILTER=warn MEDIAROUTER__RTMP__PORT=$rtmp_port \
MEDIAROUTER__HTTP__PORT=$http_port MEDIAROUTER__REST__PORT=$rest_port \
MEDIAROUTER__WEBRTC__ICE_ADDRESSES=127.0.0.1 MEDIAROUTER__WEBRTC__PORT_MIN=21000 \
MEDIAROUTER__WEBRTC__PORT_MAX=21999 \
  taskset -c 0 "$MR_BIN" >"$work/mediarouter-server.log" 2>&1 &
mr=$!
pids+=($mr)
# Another process on these ports would answer wait_port: check that ours is the one up.
if ! wait_port "$rtmp_port" || ! wait_port "$http_port" || ! kill -0 "$mr" 2>/dev/null; then
  echo "mediarouter did not start:" >&2
  tail -5 "$work/mediarouter-server.log" >&2
  exit 1
fi
run mediarouter "$mr" "--url rtmp://127.0.0.1:$rtmp_port/live/bench" \
  "--webrtc ws://127.0.0.1:$http_port/ws --webrtc-stream live/bench --webrtc-players $subscribers"
kill "$mr"
wait "$mr" 2>/dev/null || true

echo "Janus: $subscribers WebRTC subscribers, ${window}s window" >&2
start_janus "$work/janus.log" 0
pids+=("$janus_pid")
drops_before=$(janus_source_drops)
run janus "$janus_pid" "--rtp 127.0.0.1:15004,15006" \
  "--janus http://127.0.0.1:18088/janus --janus-mountpoint 1 --janus-players $subscribers"
drops=$(( $(janus_source_drops) - drops_before ))
kill "$janus_pid"
wait "$janus_pid" 2>/dev/null || true

for f in mediarouter-server janus; do
  if grep -qiE "error|panic" "$work/$f.log"; then
    echo "$f log (errors):" >&2
    grep -iE "error|panic" "$work/$f.log" | sort | uniq -c | sort -rn | head -5 >&2
  fi
done
python3 scripts/bench/webrtc_table.py "$work/mediarouter.json" "$work/janus.json" \
  --janus-source-drops "$drops" --threads "$(cat "$work/mediarouter-threads")" \
  "$(cat "$work/janus-threads")"
