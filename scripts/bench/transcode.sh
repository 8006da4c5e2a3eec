#!/usr/bin/env bash
# AAC -> Opus, the transcoder a stream runs for its WebRTC viewers: CPU per stream as a share of
# one core, mediarouter's transcoder (through `loadgen transcode`) next to ffmpeg doing the same
# (AAC decode, resample to 48 kHz, libopus encode) on the same file, both on core 1.
#
# usage: scripts/bench/transcode.sh [ROUNDS]   (LOADGEN_BIN: use this binary)
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/bench/lib.sh
rounds=${1:-5}
if [[ -z "${LOADGEN_BIN:-}" ]]; then
  cargo build --release -p mediarouter-loadgen >&2
fi
LOADGEN_BIN=${LOADGEN_BIN:-target/release/loadgen}
media=$(bench_media)

ours=$(taskset -c 1 "$LOADGEN_BIN" transcode --file "$media" --rounds "$rounds")
seconds=$(python3 -c "import json,sys; print(json.loads(sys.argv[1])['audio_seconds'] / $rounds)" "$ours")
# ffmpeg: the same audio, decoded, resampled and encoded to Opus (64 kbit/s as WebRTC uses).
cpu=$( { /usr/bin/time -f "%U %S" taskset -c 1 bash -c "for i in \$(seq $rounds); do \
  ffmpeg -hide_banner -loglevel error -nostdin -i $media -vn -c:a libopus -b:a 64k -ar 48000 -f null -; done" ; } 2>&1 | tail -1)
python3 - "$ours" "$seconds" "$rounds" "$cpu" <<'PY'
import json, sys
ours = json.loads(sys.argv[1])
seconds, rounds = float(sys.argv[2]), int(sys.argv[3])
user, system = (float(x) for x in sys.argv[4].split())
ffmpeg = (user + system) / (seconds * rounds) * 100
print("| AAC -> Opus, % of a core per stream | mediarouter | ffmpeg | ratio |")
print("|---|---|---|---|")
print(f"| {seconds:.0f} s of 44.1 kHz stereo AAC, {rounds} rounds | {ours['percent_of_a_core_per_stream']:.2f} | {ffmpeg:.2f} | {ours['percent_of_a_core_per_stream'] / ffmpeg:.2f} |")
PY
