#!/usr/bin/env bash
# Installs what the test suite needs, when it is missing. Idempotent and quick when everything
# is present. Runs as root on Debian 12 (uses sudo when not root and sudo exists).
#
#   bash scripts/install-test-deps.sh
set -euo pipefail

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
    echo "install-test-deps: not root and no sudo; install the packages below by hand" >&2
  fi
fi

# command-to-check => Debian package
declare -A NEED=(
  [ffmpeg]=ffmpeg          # publisher and players (libx264, aac)
  [ffprobe]=ffmpeg         # first-packet checks
  [curl]=curl              # REST API calls
  [cmake]=cmake            # native builds of some crates (e.g. bundled libopus, later)
  [pkg-config]=pkg-config
)
# Later issues add their peers here, for example:
#   [chromium]=chromium            # WebRTC / MSE playback in a headless browser (+ fonts-liberation)
#   [gst-launch-1.0]=gstreamer1.0-tools   # RTSP camera stand-in (+ plugins, gir1.2-gst-rtsp-server-1.0, python3-gi)

missing=()
for cmd in "${!NEED[@]}"; do
  if ! command -v "$cmd" >/dev/null 2>&1; then
    missing+=("${NEED[$cmd]}")
  fi
done

# Deduplicate.
if [ "${#missing[@]}" -gt 0 ]; then
  mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
fi

if [ "${#missing[@]}" -eq 0 ]; then
  echo "install-test-deps: all present (ffmpeg, ffprobe, curl, cmake, pkg-config)"
else
  echo "install-test-deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# ffmpeg must have the encoders the tests publish with.
encoders="$(ffmpeg -hide_banner -encoders 2>/dev/null || true)"
if ! grep -q libx264 <<<"$encoders"; then
  echo "install-test-deps: this ffmpeg has no libx264 encoder" >&2
  exit 1
fi
