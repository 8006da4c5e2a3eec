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

# apt-get update at most once per run.
APT_UPDATED=""
apt_update_once() {
  if [ -z "$APT_UPDATED" ]; then
    $SUDO apt-get update -qq
    APT_UPDATED=1
  fi
}

# Installs Debian packages without recommends, updating the package lists first (once).
apt_install() {
  export DEBIAN_FRONTEND=noninteractive
  apt_update_once
  $SUDO apt-get install -y -qq --no-install-recommends "$@"
}

# command-to-check => Debian package
declare -A NEED=(
  [ffmpeg]=ffmpeg          # publisher and players (libx264, aac)
  [ffprobe]=ffmpeg         # first-packet checks
  [curl]=curl              # REST API calls
  [cmake]=cmake            # the opus crate's bundled libopus (scripts/install-build-deps.sh too)
  [pkg-config]=pkg-config
)

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
  apt_install "${missing[@]}"
fi

# ffmpeg must have the encoders the tests publish with.
encoders="$(ffmpeg -hide_banner -encoders 2>/dev/null || true)"
if ! grep -q libx264 <<<"$encoders"; then
  echo "install-test-deps: this ffmpeg has no libx264 encoder" >&2
  exit 1
fi

# The RTSP camera stand-in (scripts/rtsp_camera.py): gst-rtsp-server driven from Debian's
# /usr/bin/python3 through GObject introspection, with the GStreamer elements its pipelines use
# (x264enc: ugly; openh264enc, h264parse: bad; avenc_aac: libav; alawenc, mulawenc, rtp payloaders:
# good; videotestsrc, audiotestsrc: base). Checked without apt when everything is there.
GST_PKGS=(gir1.2-gst-rtsp-server-1.0 python3-gi gstreamer1.0-tools gstreamer1.0-plugins-base
          gstreamer1.0-plugins-good gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly
          gstreamer1.0-libav)
GST_ELEMENTS=(videotestsrc audiotestsrc x264enc openh264enc h264parse avenc_aac alawenc mulawenc
              rtph264pay rtpmp4gpay rtppcmapay rtppcmupay)
camera_ready() {
  [ -x /usr/bin/python3 ] || return 1
  /usr/bin/python3 - <<'PY' >/dev/null 2>&1 || return 1
import gi
gi.require_version('Gst', '1.0'); gi.require_version('GstRtspServer', '1.0'); gi.require_version('GstRtsp', '1.0')
from gi.repository import Gst, GstRtspServer, GstRtsp
PY
  command -v gst-inspect-1.0 >/dev/null 2>&1 || return 1
  local e
  for e in "${GST_ELEMENTS[@]}"; do
    gst-inspect-1.0 --exists "$e" >/dev/null 2>&1 || return 1
  done
}
if camera_ready; then
  echo "install-test-deps: RTSP camera (gst-rtsp-server, python3-gi, GStreamer plugins) present"
else
  echo "install-test-deps: installing the RTSP camera's packages: ${GST_PKGS[*]}"
  apt_install "${GST_PKGS[@]}"
  if ! camera_ready; then
    echo "install-test-deps: GStreamer RTSP server or one of these elements is still missing:" \
      "${GST_ELEMENTS[*]}" >&2
    exit 1
  fi
fi

# Browser tests (tests/webrtc_play.rs): Debian's Chromium with fonts, driven by playwright-core
# (which never downloads a browser here), and Node.js to run the scenarios in tests/browser. Their
# npm packages are installed from tests/browser/package-lock.json, again only when it changed.
if command -v chromium >/dev/null 2>&1 && dpkg -s fonts-liberation >/dev/null 2>&1; then
  echo "install-test-deps: chromium and fonts-liberation present"
else
  echo "install-test-deps: installing chromium fonts-liberation"
  apt_install chromium fonts-liberation
fi
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  echo "install-test-deps: installing nodejs npm"
  apt_install nodejs npm
fi
node_major="$(node -p 'process.versions.node.split(".")[0]')"
if [ "$node_major" -lt 20 ]; then
  echo "install-test-deps: node $(node --version) is too old for playwright-core 1.65 (needs >= 20)" >&2
  exit 1
fi
BROWSER_DIR="$(cd "$(dirname "$0")/.." && pwd)/tests/browser"
lock_sum="$(sha256sum "$BROWSER_DIR/package-lock.json" | cut -d' ' -f1)"
stamp="$BROWSER_DIR/node_modules/.installed-lock-sha256"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$lock_sum" ] \
   && [ -f "$BROWSER_DIR/node_modules/playwright-core/package.json" ] \
   && [ -f "$BROWSER_DIR/node_modules/ws/package.json" ]; then
  echo "install-test-deps: browser test packages (playwright-core, ws) present"
else
  echo "install-test-deps: npm ci in tests/browser"
  (cd "$BROWSER_DIR" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error)
  echo "$lock_sum" >"$stamp"
fi
