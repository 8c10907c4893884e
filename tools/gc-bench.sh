#!/usr/bin/env bash
# GC and compaction benchmark. Uploads unique 16 MiB blobs for SECONDS,
# publishing every KEEP-th (kept) while the rest end their 2 s upload lease
# (garbage), then purges and runs `stowage gc`: collection, compaction of
# every pack with dead bytes (the live blobs are copied) and deletion of the
# old packs. Prints each step's JSON; compaction speed = bytes_copied over
# the run's elapsed_ms (collection and deletion included, so a low bound).
# Then a second run on the same store with nothing dead, to show a run's
# time follows the dead data, not the store's size.
# Usage: tools/gc-bench.sh [SECONDS] [KEEP]
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-20}
KEEP=${2:-2}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/stowage/target}
cargo build --release --locked -q --bin stowage --bin stowage-load
B=$CARGO_TARGET_DIR/release
W=$(mktemp -d); trap 'kill $pid 2>/dev/null; rm -rf "$W"' EXIT
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat >"$W/stowage.toml" <<TOML
data_dir = "$W/data"
listen = "127.0.0.1:$port"
upload_lease = "2s"
pack_max_age = "1s"
[gc]
interval = "0s"
grace = "0s"
compact_threshold = 0.1
max_repack_bytes = "64GiB"
pack_delete_delay = "0s"
TOML
export STOWAGE_DATA_DIR="$W/data" STOWAGE_ADDR="http://127.0.0.1:$port"
"$B/stowage" serve --config "$W/stowage.toml" 2>"$W/log" & pid=$!
until "$B/stowage" admin stats >/dev/null 2>&1; do sleep 0.1; done
echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB, kernel $(uname -r), $(date -u +%FT%TZ)"
"$B/stowage-load" --mode put-new --clients 2 --seconds "$SECS" --keep-every "$KEEP"
sleep 3
"$B/stowage" admin purge
sleep 2
echo "before: $("$B/stowage" admin stats)"
echo "store:  $(du -sm "$W/data/packs" | cut -f1) MiB in $(ls "$W/data/packs" | wc -l) packs"
echo "load: $(cut -d' ' -f1-3 /proc/loadavg)   stowage gc"
"$B/stowage" gc --json | tee "$W/gc.json"
python3 -c "import json; r=json.load(open('$W/gc.json')); print('compaction: %.0f MB/s of live data copied (%d MB in %d ms, whole run)' % (r['bytes_copied']/1e3/max(r['elapsed_ms'],1), r['bytes_copied']/1e6, r['elapsed_ms']))"
echo "after:  $("$B/stowage" admin stats)"
echo "store:  $(du -sm "$W/data/packs" | cut -f1) MiB in $(ls "$W/data/packs" | wc -l) packs"
echo "nothing dead: $("$B/stowage" gc --json)"
echo "daemon RSS: $(awk '/VmRSS/ {print $2, $3}' /proc/$pid/status)"
kill -TERM $pid; wait $pid || true
