#!/usr/bin/env bash
# Builds (release) and runs the server, installing the native build tools first when missing.
# Arguments go to the server, e.g.:
#
#   bash scripts/run.sh --config my.toml
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-build-deps.sh
exec cargo run --release --bin mediarouter -- "$@"
