#!/usr/bin/env bash
# Crash soak: N kill -9 cycles under mixed load (puts, publishes, deletes,
# GC on short settings; every third cycle also kills the daemon during its
# startup). After each restart every acknowledged write is verified
# byte-exact and `stowage admin check` must pass; the soak stops at the first
# loss, mismatch or drift (exit 1, the data folder is kept for inspection).
# Prints acknowledged and verified counts per kind, per cycle and in total.
# The daemon listens on 127.0.0.1 only; the soak stops by itself.
# Usage: tools/crash-soak.sh [N] [SEED] [MAX_MINUTES]   (N defaults to 20; MAX_MINUTES
# stops earlier, after the cycle that passes it)
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-20}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/stowage/target}
cargo build --release --locked -q --bin stowage --bin stowage-load
B=$CARGO_TARGET_DIR/release
W=$(mktemp -d)
extra=()
[ -n "${2:-}" ] && extra+=(--seed "$2")
[ -n "${3:-}" ] && extra+=(--max-minutes "$3")
echo "machine: $(nproc) cores, kernel $(uname -r), $(date -u +%FT%TZ), commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
if "$B/stowage-load" --mode crash-soak --cycles "$N" --stowage-bin "$B/stowage" --work-dir "$W" "${extra[@]}"; then
    rm -rf "$W"
else
    echo "crash-soak FAILED; data and daemon.log kept in $W" >&2
    exit 1
fi
