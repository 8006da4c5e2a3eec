#!/usr/bin/env bash
# Installs what building mediarouter needs beyond the Rust toolchain, when it is missing: cmake
# (the `opus` crate builds its bundled libopus with it), make (cmake's generator), pkg-config, and
# a C++ compiler (the `fdk-aac` crate compiles its bundled C++ sources). Idempotent, and prints
# nothing when everything is present. Debian 12; runs as root, or through sudo when it exists.
#
#   bash scripts/install-build-deps.sh
set -euo pipefail

# command-to-check => Debian package
declare -A NEED=(
  [cmake]=cmake
  [make]=make
  [pkg-config]=pkg-config
  [c++]=g++
)

missing=()
for cmd in "${!NEED[@]}"; do
  if ! command -v "$cmd" >/dev/null 2>&1; then
    missing+=("${NEED[$cmd]}")
  fi
done
[ "${#missing[@]}" -eq 0 ] && exit 0
mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then
    SUDO="sudo"
  else
    echo "install-build-deps: not root and no sudo; install by hand: ${missing[*]}" >&2
    exit 1
  fi
fi

echo "install-build-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
