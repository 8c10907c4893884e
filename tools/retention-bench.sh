#!/usr/bin/env bash
# Retention at scale: fills a fresh Stowage with PACKAGES packages x 20
# versions x 5 files (1,000,000 files by default, see catalog-bench.sh), sets
# a policy keeping the 5 newest versions of each package, then times the
# plan (dry run, with the dedup-aware bytes freed), the sweep, the purge and
# a GC run, sampling the daemon's RSS during the plan. ListVersions latency
# is measured idle and again while the sweep runs (at the default
# sweep_rate, 2,000 deletions/s). Ends with a GC run on the same store once
# nothing is dead.
# Usage: tools/retention-bench.sh [PACKAGES]
set -euo pipefail
cd "$(dirname "$0")/.."
PACKAGES=${1:-10000}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/stowage/target}
cargo build --release --locked -q --bin stowage --bin stowage-load
B=$CARGO_TARGET_DIR/release
W=$(mktemp -d); trap 'kill $pid 2>/dev/null; rm -rf "$W"' EXIT
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat >"$W/stowage.toml" <<TOML
data_dir = "$W/data"
listen = "127.0.0.1:$port"
[gc]
interval = "0s"
grace = "0s"
pack_delete_delay = "0s"
[retention]
sweep_interval = "0s"
sweep_rate = 2000
TOML
echo 0 >"$W/clock"
export STOWAGE_DATA_DIR="$W/data" STOWAGE_ADDR="http://127.0.0.1:$port"
STOWAGE_CLOCK_OFFSET_FILE="$W/clock" "$B/stowage" serve --config "$W/stowage.toml" 2>"$W/log" & pid=$!
until "$B/stowage" admin stats >/dev/null 2>&1; do sleep 0.1; done
echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB, kernel $(uname -r), $(date -u +%FT%TZ)"
rss() { awk '/VmRSS/ {print $2}' /proc/$pid/status; }
"$B/stowage-load" --mode catalog-fill --packages "$PACKAGES" --clients 64 --progress 60
cat >"$W/policy.toml" <<TOML
name = "keep-5"
namespace = "bench"
versions = { keep_latest = 5 }
TOML
"$B/stowage" retention set "$W/policy.toml"
sleep 5
echo "daemon RSS before the plan: $(rss) kB"
( peak=0; while kill -0 $pid 2>/dev/null; do r=$(rss); [ "$r" -gt "$peak" ] && peak=$r && echo "$peak" >"$W/peak"; sleep 0.05; done ) & sampler=$!
echo "load: $(cut -d' ' -f1-3 /proc/loadavg)   stowage retention plan --json"
t0=$(date +%s.%N)
"$B/stowage" retention plan --json | tail -1
t1=$(date +%s.%N)
kill $sampler 2>/dev/null || true
echo "plan wall time: $(python3 -c "print(round($t1-$t0,2))") s (CLI included); daemon RSS peak during the plan: $(cat "$W/peak") kB"
timed() { local t0; t0=$(date +%s.%N); "$@"; echo "  ($(python3 -c "print(round($(date +%s.%N)-$t0,2))") s)"; }
lv() { "$B/stowage-load" --mode list-versions --packages "$PACKAGES" --clients 8 --seconds 10 --page-size 20; }
echo "load: $(cut -d' ' -f1-3 /proc/loadavg)   ListVersions, idle"
lv
echo "load: $(cut -d' ' -f1-3 /proc/loadavg)   stowage retention sweep --json | tail -1, and ListVersions during it"
t0=$(date +%s.%N)
"$B/stowage" retention sweep --json | tail -1 >"$W/sweep.json" & sweep=$!
sleep 1
lv
wait $sweep
cat "$W/sweep.json"
echo "  sweep: $(python3 -c "print(round($(date +%s.%N)-$t0,2))") s"
echo $((31 * 24 * 3600 * 1000)) >"$W/clock"
echo "stowage admin purge"
timed "$B/stowage" admin purge
echo "stowage gc --json"
timed "$B/stowage" gc --json
echo "stowage gc --json (nothing dead)"
timed "$B/stowage" gc --json
echo "stats: $("$B/stowage" admin stats)"
echo "daemon RSS: $(rss) kB, data: $(du -sh "$W/data" | cut -f1)"
kill -TERM $pid; wait $pid || true
