#!/usr/bin/env bash
# Single-byte flips in the index's tables (RocksDB .sst files): which does
# Stowage notice? Builds a small store (blobs and a catalog), lets RocksDB
# write its tables (a restart replays the log into them), then, for K offsets
# spread evenly over each table (first and last byte included), on a fresh
# copy of the data: flips one byte, starts the daemon and runs
# `stowage admin check`. Prints one line per flip (refused to start / check
# failed / unnoticed) and the totals. Loopback only; stops by itself.
# Usage: tools/sst-flip-survey.sh [K]   (K flips per table, default 11)
#        STOWAGE_BIN=/other/stowage tools/sst-flip-survey.sh   (survey another daemon build)
#        BIN_DIR=/dir tools/sst-flip-survey.sh   (prebuilt stowage and stowage-load, no cargo)
set -euo pipefail
cd "$(dirname "$0")/.."
K=${1:-11}
if [ -n "${BIN_DIR:-}" ]; then
    B=$BIN_DIR
else
    export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/stowage/target}
    cargo build --release --locked -q --bin stowage --bin stowage-load
    B=$CARGO_TARGET_DIR/release
fi
S=${STOWAGE_BIN:-$B/stowage}
W=$(mktemp -d); pid=; trap '[ -n "$pid" ] && kill -9 $pid 2>/dev/null; rm -rf "$W"' EXIT
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
export STOWAGE_ADDR="http://127.0.0.1:$port"
conf() { mkdir -p "$1"; printf 'data_dir = "%s/data"\nlisten = "127.0.0.1:%s"\n' "$1" "$port" >"$1/stowage.toml"; }
# Starts the daemon on $1; sets r to "up" or "refused".
start() {
    "$S" serve --config "$1/stowage.toml" 2>>"$1/log" & pid=$!
    r=timeout
    for _ in $(seq 200); do
        if ! kill -0 $pid 2>/dev/null; then wait $pid || true; pid=; r=refused; return; fi
        if STOWAGE_DATA_DIR="$1/data" "$S" admin stats >/dev/null 2>&1; then r=up; return; fi
        sleep 0.1
    done
}
stop() { if [ -n "$pid" ]; then kill -TERM $pid; wait $pid || true; pid=; fi; }
conf "$W/base"
start "$W/base"; [ "$r" = up ]
STOWAGE_DATA_DIR="$W/base/data" "$B/stowage-load" --mode catalog-fill --packages 300 --versions-per-package 2 \
    --files-per-version 2 --pool 400 --clients 4 >/dev/null 2>&1
stop
start "$W/base"; [ "$r" = up ]; stop
echo "tables: $(ls "$W/base/data/index/"*.sst | wc -l), $(du -cb "$W/base/data/index/"*.sst | tail -1 | cut -f1) bytes; $K flips each; binary $S"
total=0; refused=0; failed=0; unnoticed=0
for sst in "$W/base/data/index/"*.sst; do
    size=$(stat -c %s "$sst")
    for i in $(seq 0 $((K - 1))); do
        off=$(( (size - 1) * i / (K - 1) ))
        rm -rf "$W/try"; cp -a "$W/base" "$W/try"; conf "$W/try"; : >"$W/try/log"
        python3 -c 'import sys; f=open(sys.argv[1],"r+b"); f.seek(int(sys.argv[2])); b=f.read(1); f.seek(int(sys.argv[2])); f.write(bytes([b[0]^0x40]))' \
            "$W/try/data/index/$(basename "$sst")" "$off"
        total=$((total + 1))
        start "$W/try"
        if [ "$r" = refused ]; then
            refused=$((refused + 1)); what="refused to start: $(grep -o 'error: .\{0,140\}' "$W/try/log" | head -1)"
        elif out=$(STOWAGE_DATA_DIR="$W/try/data" "$S" admin check --json 2>&1); then
            unnoticed=$((unnoticed + 1)); what="unnoticed (daemon up, admin check clean)"
        else
            failed=$((failed + 1)); what="admin check failed: $(echo "$out" | tail -1 | cut -c1-140)"
        fi
        stop
        echo "$(basename "$sst") offset $off of $size: $what"
    done
done
echo "flips: $total; refused to start: $refused; admin check failed: $failed; unnoticed: $unnoticed"
