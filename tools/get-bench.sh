#!/usr/bin/env bash
# Get of optimized blobs, end to end through the daemon: for a few package
# files of the corpus (a large and a mid-size wheel, a crate and an npm
# tarball, each one gzip stream, and a tar.gz of the typescript package's
# contents made by Python's gzip, so stock zlib recreates it), prints Get
# throughput of the raw blob, of its recipe uncached (optimize.cache_size =
# 0: every Get recreates it) and cached, and the first byte's latency.
# Each figure is `stowage-load --mode get --blob H --clients 1` for SECS s.
# Usage: tools/get-bench.sh [CORPUS_DIR] [SECS]
set -euo pipefail
cd "$(dirname "$0")/.."
C=${1:-$HOME/.cache/stowage-dev-corpus}
SECS=${2:-8}
[ -d "$C" ] || ../shared/corpus/fetch-dev-corpus.sh "$C"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/stowage/target}
cargo build --release --locked -q --bin stowage --bin stowage-load
B=$CARGO_TARGET_DIR/release
W=$(mktemp -d); pid=; trap 'kill $pid 2>/dev/null; rm -rf "$W"' EXIT

files=(
  "$C"/pypi/numpy-2.0.2-*.whl
  "$C"/pypi/botocore-1.34.102-*.whl
  "$C"/crates/regex-1.10.6.crate
  "$C"/npm/lodash-4.17.21.tgz
)
# One large gzip stream stock zlib made (level 9, as Python's tarfile).
mkdir -p "$W/ts"
tar -xzf "$C"/npm/typescript-5.4.5.tgz -C "$W/ts"
python3 - "$W/ts" "$W/typescript-5.4.5-py.tar.gz" <<'EOF'
import sys, tarfile
with tarfile.open(sys.argv[2], "w:gz", format=tarfile.PAX_FORMAT) as t:
    t.add(sys.argv[1] + "/package", arcname="package")
EOF
files+=("$W/typescript-5.4.5-py.tar.gz")

start() { # cache_size
  printf 'pack_max_age = "1s"\n[gc]\ninterval = "0s"\ngrace = "0s"\n[optimize]\nenabled = false\ncache_size = "%s"\n' "$1" > "$W/config.toml"
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  export STOWAGE_ADDR="http://127.0.0.1:$port" STOWAGE_DATA_DIR="$W/data"
  "$B/stowage" serve --config "$W/config.toml" --data-dir "$W/data" --listen "127.0.0.1:$port" 2>>"$W/log" & pid=$!
  until "$B/stowage" admin stats >/dev/null 2>&1; do sleep 0.1; done
}
stop() { kill -TERM $pid; wait $pid || true; pid=; }
get() { # blake3 -> "MB/s first_byte_p50_ms"
  "$B/stowage-load" --mode get --blob "$1" --namespace default --clients 1 --seconds "$SECS" --size 4KiB \
    | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["mb_per_s"], d["first_byte_p50_ms"], d["ops"])'
}

start 0
declare -A hash raw
for f in "${files[@]}"; do
  hash[$f]=$("$B/stowage" blob put "$f" | python3 -c 'import json,sys; print(json.load(sys.stdin)["blake3"])')
  raw[$f]=$(get "${hash[$f]}")
done
"$B/stowage" optimize >/dev/null
declare -A uncached
for f in "${files[@]}"; do uncached[$f]=$(get "${hash[$f]}"); done
stop
start 1GiB
echo "machine: $(nproc) cores, $(date -u +%FT%TZ), commit $(git rev-parse --short HEAD), $SECS s per figure, 1 client"
printf '%-44s %10s %9s %9s %12s %9s %13s\n' file bytes raw_MB/s opt_MB/s opt_first_ms cached_MB/s raw_first_ms
for f in "${files[@]}"; do
  get "${hash[$f]}" >/dev/null  # fills the cache
  read -r rm rf _ <<<"${raw[$f]}"; read -r um uf un <<<"${uncached[$f]}"; read -r cm _ _ <<<"$(get "${hash[$f]}")"
  printf '%-44s %10s %9s %9s %12s %9s %13s\n' "$(basename "$f" | cut -c1-44)" "$(stat -c %s "$f")" "$rm" "$um" "$uf" "$cm" "$rf"
done
stop
