#!/usr/bin/env bash
# Fan-out benchmark, side by side in one run: one publisher replays a 720p30 H.264 + AAC file
# (2 Mbit/s, 2 s GOP) in real time, each video frame stamped with the wall clock; N RTMP players
# play it from mediarouter and from nginx-rtmp (worker_processes 1), plus N WebSocket (fMP4)
# players from mediarouter. Server pinned to core 0, load (scripts/bench/loadgen) to core 1.
# Prints one table: per server what the players got (same frames everywhere, or nobody wins by
# dropping), the server's CPU per delivered GB and per player, memory per player, time to first
# frame and the delay each frame spent between publisher and player.
#
# usage: scripts/bench/fanout.sh [PLAYERS] [WINDOW_SECONDS]
#   MR_BIN / LOADGEN_BIN: use these binaries instead of building release ones.
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/bench/lib.sh
players=${1:-1000}
window=${2:-20}
ulimit -n "$(ulimit -Hn)"  # a socket per player, on each side

if ! command -v nginx >/dev/null || [[ ! -e /usr/lib/nginx/modules/ngx_rtmp_module.so ]]; then
  echo "installing nginx + rtmp module" >&2
  apt-get update -qq >&2 && apt-get install -y -qq --no-install-recommends nginx libnginx-mod-rtmp >&2
fi
command -v ffmpeg >/dev/null || bash scripts/install-test-deps.sh >&2
if [[ -z "${MR_BIN:-}" || -z "${LOADGEN_BIN:-}" ]]; then
  cargo build --release -p mediarouter -p mediarouter-loadgen >&2
fi
MR_BIN=${MR_BIN:-target/release/mediarouter}
LOADGEN_BIN=${LOADGEN_BIN:-target/release/loadgen}

media=$(bench_media)

work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  [[ -f $work/nginx/nginx.pid ]] && nginx -p "$work/nginx" -c "$work/nginx/nginx.conf" -s quit 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT


# run NAME RTMP_PORT "SERVER PIDS" KIND PLAYER_URL: the publisher, then the players (KIND rtmp
# or ws); the loadgen's JSON goes to $work/NAME.json
run() {
  local name=$1 port=$2 server_pids=$3 kind=$4 url=$5
  taskset -c 1 "$LOADGEN_BIN" publish --url "rtmp://127.0.0.1:$port/live/bench" --file "$media" \
    --seconds 100000 >"$work/$name-publish.log" 2>&1 &
  local publisher=$!
  pids+=($publisher)
  sleep 3
  local args=(play "--$kind" "$url" "--$kind-players" "$players" --window-s "$window" --warmup-s 6
    --ramp-per-s 250)
  for p in $server_pids; do args+=(--server-pid "$p"); done
  taskset -c 1 "$LOADGEN_BIN" "${args[@]}" >"$work/$name.json"
  kill "$publisher" 2>/dev/null || true
}

# mediarouter NAME KIND URL: a fresh server for each kind of player (memory counted from zero)
mediarouter() {
  MEDIAROUTER__SERVER__WORKERS=1 MEDIAROUTER__LOG__FILTER=warn MEDIAROUTER__RTMP__PORT=11935 \
  MEDIAROUTER__HTTP__PORT=18080 MEDIAROUTER__REST__PORT=18081 MEDIAROUTER__WEBRTC__ENABLED=false \
    taskset -c 0 "$MR_BIN" >"$work/$1-server.log" 2>&1 &
  local mr=$!
  pids+=($mr)
  wait_port 11935
  wait_port 18080
  run "$1" 11935 "$mr" "$2" "$3"
  kill "$mr"
  wait "$mr" 2>/dev/null || true
}

echo "mediarouter: $players RTMP players, ${window}s window" >&2
mediarouter mediarouter-rtmp rtmp rtmp://127.0.0.1:11935/live/bench
echo "mediarouter: $players WebSocket (fMP4) players, ${window}s window" >&2
mediarouter mediarouter-ws ws "ws://127.0.0.1:18080/ws/play?name=live/bench"

echo "nginx-rtmp: $players RTMP players, ${window}s window" >&2
mkdir -p "$work/nginx/logs"
cat >"$work/nginx/nginx.conf" <<CONF
load_module /usr/lib/nginx/modules/ngx_rtmp_module.so;
worker_processes 1; daemon on; pid $work/nginx/nginx.pid; error_log $work/nginx/error.log warn;
worker_rlimit_nofile 65536;
events { worker_connections 8192; }
rtmp { server { listen 127.0.0.1:12935; chunk_size 4096;
  application live { live on; record off; wait_key on; wait_video on; } } }
CONF
taskset -c 0 nginx -p "$work/nginx" -c "$work/nginx/nginx.conf"
wait_port 12935
master=$(cat "$work/nginx/nginx.pid")
nginx_pids="$master $(pgrep -P "$master" | tr '\n' ' ')"
for p in $nginx_pids; do taskset -pc 0 "$p" >/dev/null; done
run nginx-rtmp 12935 "$nginx_pids" rtmp rtmp://127.0.0.1:12935/live/bench

python3 scripts/bench/fanout_table.py "$work/mediarouter-rtmp.json" "$work/nginx-rtmp.json" \
  "$work/mediarouter-ws.json"
