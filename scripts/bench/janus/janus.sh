# Shell helpers to run the benchmarks' Janus (sourced by scripts/bench/webrtc.sh and check.sh).
# Janus runs from this directory's configuration only (`-F`: nothing under /etc/janus is read),
# as whoever runs the script: it binds no privileged port (HTTP API 127.0.0.1:18088, RTP in on
# 127.0.0.1:15004/15006, ICE/SRTP on 22000-22999) and needs no capability.

janus_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

# Installs Debian's janus package when it is missing.
ensure_janus() {
  if ! command -v janus >/dev/null; then
    echo "installing janus" >&2
    apt-get update -qq >&2 && apt-get install -y -qq janus >&2
  fi
}

# The address Janus gathers its ICE candidates on. Janus never gathers on loopback interfaces,
# so `ice_enforce_list = 127.0.0.1` leaves it with nothing to enforce and it falls back to every
# interface; instead it is held to this host's primary IPv4 address, which the kernel delivers
# through the loopback device all the same (local route table): no packet leaves the machine.
janus_ice_address() {
  local addr
  addr=$(ip -4 -o route get 1.1.1.1 2>/dev/null | sed -n 's/.* src \([0-9.]*\).*/\1/p')
  [[ -n $addr ]] || addr=$(ip -4 -o addr show scope global | awk '{print $4}' | cut -d/ -f1 | head -1)
  echo "${addr:-127.0.0.1}"
}

# start_janus LOG [CPU_LIST]: starts Janus (pinned to CPU_LIST, default 0), waits for its HTTP
# API, sets janus_pid. JANUS_EVENT_LOOPS=N: a pool of N event loops (a configuration copy next
# to LOG).
start_janus() {
  local log=$1 cpus=${2:-0}
  if curl -s -m 1 -o /dev/null http://127.0.0.1:18088/janus; then
    echo "something already listens on 127.0.0.1:18088 (another Janus?)" >&2
    return 1
  fi
  local conf=$janus_dir
  if [[ -n ${JANUS_EVENT_LOOPS:-} ]]; then
    # A pool of N loop threads shared by the handles instead of one thread per handle.
    conf=$(dirname "$log")/janus-conf
    mkdir -p "$conf"
    cp "$janus_dir"/*.jcfg "$conf/"
    sed -i "s/^general: {/general: {\n\tevent_loops = $JANUS_EVENT_LOOPS/" "$conf/janus.jcfg"
  fi
  taskset -c "$cpus" janus -F "$conf" -E "$(janus_ice_address)" -o >"$log" 2>&1 &
  janus_pid=$!
  for _ in $(seq 100); do
    if curl -sf -m 1 -X POST -d '{"janus":"info","transaction":"up"}' \
      http://127.0.0.1:18088/janus >/dev/null 2>&1; then
      return 0
    fi
    kill -0 "$janus_pid" 2>/dev/null || break
    sleep 0.1
  done
  kill "$janus_pid" 2>/dev/null || true
  echo "Janus did not start:" >&2
  tail -20 "$log" >&2
  return 1
}

# Datagrams the kernel dropped at Janus's RTP sockets (its receive buffers were full): the
# source's loss, before Janus saw it. Sums the drops column of /proc/net/udp for 15004/15006.
janus_source_drops() {
  # Local ports are hex in /proc/net/udp: 15004 = 3A9C, 15006 = 3A9E.
  awk '$2 ~ /:(3A9C|3A9E)$/ { d += $NF } END { print d + 0 }' /proc/net/udp
}
