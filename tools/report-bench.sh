#!/usr/bin/env bash
# Capacity report at scale: fills a fresh Stowage with PACKAGES packages x 20
# versions x 5 files (1,000,000 files by default, as catalog-bench.sh: small
# blobs from a pool of 1,000, each published into about 1,000 packages),
# then times `stowage report` from the counters kept at write time, by each
# grouping, and `stowage report --recompute` (every file read, drift
# reported), and `stowage admin check`. The fill and a publish-existing run
# show what keeping the counters costs at write time (compare with
# catalog-bench.sh's figures in BENCHMARKS.md).
# Usage: tools/report-bench.sh [PACKAGES]
set -euo pipefail
cd "$(dirname "$0")/.."
PACKAGES=${1:-10000}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/stowage/target}
cargo build --release --locked -q --bin stowage --bin stowage-load
B=$CARGO_TARGET_DIR/release
W=$(mktemp -d); trap 'kill $pid 2>/dev/null; rm -rf "$W"' EXIT
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
export STOWAGE_DATA_DIR="$W/data" STOWAGE_ADDR="http://127.0.0.1:$port"
"$B/stowage" serve --data-dir "$W/data" --listen "127.0.0.1:$port" 2>"$W/log" & pid=$!
until "$B/stowage" admin stats >/dev/null 2>&1; do sleep 0.1; done
echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB, kernel $(uname -r), $(date -u +%FT%TZ)"
run() {
    echo "load: $(cut -d' ' -f1-3 /proc/loadavg)   stowage-load $*"
    "$B/stowage-load" --progress 30 "$@"
}
run --mode catalog-fill --packages "$PACKAGES" --clients 64
run --mode publish-existing --packages "$PACKAGES" --clients 64 --seconds 15
sleep 5
report() {
    local t0 t1
    t0=$(date +%s.%N)
    "$B/stowage" report --format json "$@" >"$W/report.json"
    t1=$(date +%s.%N)
    python3 - "$t0" "$t1" "$W/report.json" "$*" <<'PY'
import json, sys
t0, t1, out, args = float(sys.argv[1]), float(sys.argv[2]), json.load(open(sys.argv[3])), sys.argv[4]
files = sum(g["files"] + g["trash_files"] for g in out["groups"])
print(f"report {args}: {out['elapsed_ms']} ms in the daemon, {t1 - t0:.2f} s wall; "
      f"{len(out['groups'])} groups, {files} files in them, drift entries {len(out['drift'])}")
PY
}
for by in namespace project type; do report --by "$by"; done
report --by package --top 10
report --by package --namespace bench
report --by namespace --recompute
t0=$(date +%s.%N)
"$B/stowage" admin check >/dev/null
echo "admin check: $(python3 -c "print(round($(date +%s.%N)-$t0,2))") s"
echo "daemon RSS: $(awk '/VmRSS/ {print $2, $3}' /proc/$pid/status), data: $(du -sh "$W/data" | cut -f1)"
kill -TERM $pid; wait $pid || true
