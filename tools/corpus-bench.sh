#!/usr/bin/env bash
# Stores a corpus of real package files in a fresh Stowage and prints stored
# bytes (everything under the data dir: packs, staging and the RocksDB index),
# the ratio to the raw size and the ingest time; then, with --peers, runs
# ../shared/bench/peers.sh (restic, borg, casync) on the same folder.
# Usage: tools/corpus-bench.sh [CORPUS_DIR] [--peers]
set -euo pipefail
cd "$(dirname "$0")/.."
C=${1:-$HOME/.cache/stowage-dev-corpus}
[ -d "$C" ] || ../shared/corpus/fetch-dev-corpus.sh "$C"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/stowage/target}
cargo build --release --locked -q --bin stowage --bin stowage-load
B=$CARGO_TARGET_DIR/release
W=$(mktemp -d); trap 'kill $pid 2>/dev/null; rm -rf "$W"' EXIT
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
# The CLI and stowage-load find the daemon's admin token in its data dir.
export STOWAGE_DATA_DIR="$W/data"
"$B/stowage" serve --data-dir "$W/data" --listen "127.0.0.1:$port" 2>"$W/log" & pid=$!
until "$B/stowage" admin stats --addr "http://127.0.0.1:$port" >/dev/null 2>&1; do sleep 0.1; done
raw=$(du -sb "$C" | cut -f1)
"$B/stowage-load" --addr "http://127.0.0.1:$port" --mode corpus --dir "$C" --clients 2 > "$W/out.json"
secs=$(python3 -c "import json; print(json.load(open('$W/out.json'))['seconds'])")
"$B/stowage" admin stats --addr "http://127.0.0.1:$port" > "$W/stats.json"
kill -TERM $pid; wait $pid || true
stored=$(du -sb "$W/data" | cut -f1)
printf '%-22s %12d  %6.3f  %6.2fs\n' stowage "$stored" "$(echo "$stored/$raw" | bc -l)" "$secs"
echo "  stats: $(cat "$W/stats.json")"
if [ "${2:-}" = --peers ]; then ../shared/bench/peers.sh "$C"; fi
