#!/usr/bin/env bash
# Quick start: builds and runs the daemon on embedded defaults
# (data in ./stowage-data, gRPC on 127.0.0.1:7420). Extra args go to `serve`.
set -euo pipefail
cd "$(dirname "$0")/.."
tools/setup.sh
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/stowage/target}
exec cargo run --release --locked --bin stowage -- serve "$@"
