#!/usr/bin/env bash
# The one test command: installs missing test dependencies, builds the server binary, runs every
# test of the workspace (unit tests of the sans-IO core, and the end-to-end tests in tests/ that
# drive target/debug/mediarouter with ffmpeg, ffprobe, curl and a scripted RTMP client).
#
#   bash scripts/test.sh [extra cargo test arguments, e.g. a test name filter]
#
# TEST_THREADS (default 2) bounds how many tests of one test binary run at once: each end-to-end
# test runs real-time ffmpeg encoders and decoders, sized for a 2-core machine.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-build-deps.sh
bash scripts/install-test-deps.sh

echo "==> cargo build --workspace --bins"
cargo build --workspace --bins

export MEDIAROUTER_BIN="${MEDIAROUTER_BIN:-${CARGO_TARGET_DIR:-$PWD/target}/debug/mediarouter}"
echo "==> cargo test --workspace (test threads: ${TEST_THREADS:-2})"
log="$(mktemp /tmp/mediarouter-test-output.XXXXXX)"
trap 'rm -f "$log"' EXIT
set +e
cargo test --workspace --no-fail-fast "$@" -- --test-threads="${TEST_THREADS:-2}" 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
set -e

# One closing line summing every test binary's "test result:" line.
awk '/^test result:/ {
       for (i = 2; i <= NF; i++) {
         if ($i ~ /^passed;?$/)  p += $(i - 1)
         if ($i ~ /^failed;?$/)  f += $(i - 1)
         if ($i ~ /^ignored;?$/) s += $(i - 1)
       }
     }
     END { printf "tests: %d passed, %d failed, %d skipped\n", p, f, s }' "$log"
exit "$rc"
