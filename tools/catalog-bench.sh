#!/usr/bin/env bash
# Catalog scale benchmark: fills a fresh Stowage with PACKAGES packages x 20
# versions x 5 files (1,000,000 files by default), published by BLAKE3 from a
# pool of small blobs, then measures ListVersions latency and the sustained
# rate of PublishFile of existing blobs. Prints the load average before each
# run (the figures are only meaningful on an otherwise idle machine), the
# JSON line of each run, and the daemon's RSS and data size.
# Usage: tools/catalog-bench.sh [PACKAGES] [SECONDS]
#   env CLIENTS (default 64) for the fill and publish runs, LIST_CLIENTS (8).
set -euo pipefail
cd "$(dirname "$0")/.."
PACKAGES=${1:-10000}
SECS=${2:-15}
CLIENTS=${CLIENTS:-64}
LIST_CLIENTS=${LIST_CLIENTS:-8}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/stowage/target}
cargo build --release --locked -q --bin stowage --bin stowage-load
B=$CARGO_TARGET_DIR/release
W=$(mktemp -d); trap 'kill $pid 2>/dev/null; rm -rf "$W"' EXIT
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
# The CLI and stowage-load find the daemon's admin token in its data dir.
export STOWAGE_DATA_DIR="$W/data"
"$B/stowage" serve --data-dir "$W/data" --listen "127.0.0.1:$port" 2>"$W/log" & pid=$!
until "$B/stowage" admin stats --addr "http://127.0.0.1:$port" >/dev/null 2>&1; do sleep 0.1; done
export STOWAGE_ADDR="http://127.0.0.1:$port"
echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB, kernel $(uname -r), $(date -u +%FT%TZ)"
run() {
    echo "load: $(cut -d' ' -f1-3 /proc/loadavg)   stowage-load $*"
    "$B/stowage-load" --progress 30 "$@"
}
run --mode catalog-fill --packages "$PACKAGES" --clients "$CLIENTS"
run --mode list-versions --packages "$PACKAGES" --clients "$LIST_CLIENTS" --seconds "$SECS" --page-size 20
run --mode list-versions --packages "$PACKAGES" --clients "$LIST_CLIENTS" --seconds "$SECS" --page-size 10 --second-page 0.5
run --mode publish-existing --packages "$PACKAGES" --clients "$CLIENTS" --seconds "$SECS"
run --mode publish-existing --packages "$PACKAGES" --clients "$CLIENTS" --seconds "$SECS" --new-versions
echo "daemon RSS: $(awk '/VmRSS/ {print $2, $3}' /proc/$pid/status), data: $(du -sh "$W/data" | cut -f1)"
kill -TERM $pid; wait $pid || true
