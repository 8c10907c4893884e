#!/usr/bin/env bash
# Runs the whole test suite (unit, property and integration tests against
# the real binary). Cargo's target dir lives outside the checkout so repeated
# runs on one machine reuse the RocksDB build; set CARGO_TARGET_DIR to override.
set -euo pipefail
cd "$(dirname "$0")/.."
tools/setup.sh --test
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/stowage/target}
cargo fmt --check
# Release profile: one RocksDB build serves tests, benches and the daemon.
cargo test --release --locked --all-targets
