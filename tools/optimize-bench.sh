#!/usr/bin/env bash
# Package-aware optimization on a corpus of real package files: for the
# whole corpus and for each package family (files named FAMILY-VERSION…),
# stores the files in a fresh Stowage, runs `stowage optimize` and GC, and
# prints bytes in, stored before and after (everything under the data dir:
# packs, staging and the RocksDB index), the optimizer's time, and its
# deflate streams by method, and the chunks stored as deltas.
# Usage: tools/optimize-bench.sh [CORPUS_DIR] [FAMILY...]
# Each file is published as a version of its package, as a registry would
# (BENCH_PUT=blob stores them as bare blobs instead, with no catalog to
# find a previous version by). STOWAGE_OPTIMIZE_DELTA_DEPTH=N sets the
# daemon's optimize.delta_depth (0: no deltas).
set -euo pipefail
cd "$(dirname "$0")/.."
C=${1:-$HOME/.cache/stowage-dev-corpus}
shift || true
[ -d "$C" ] || ../shared/corpus/fetch-dev-corpus.sh "$C"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/stowage/target}
cargo build --release --locked -q --bin stowage
S=$CARGO_TARGET_DIR/release/stowage
W=$(mktemp -d); pid=; trap 'kill $pid 2>/dev/null; rm -rf "$W"' EXIT
families=("$@")
if [ ${#families[@]} -eq 0 ]; then
  mapfile -t families < <(find "$C" -type f -printf '%f\n' | sed -E 's/-[0-9].*//' | sort -u)
fi
printf '%-12s %5s %12s %12s %12s %7s %7s %8s  %s\n' family files raw stored_raw stored_opt before after opt_s "streams zlib/preflate/opaque"
publish() { # file: published as a version of its package (FAMILY-VERSION…)
  local name family rest version ty
  name=$(basename "$1"); family=$(echo "$name" | sed -E 's/-[0-9].*//')
  rest=${name#"$family"-}; version=${rest%%-*}; version=${version%.tgz}; version=${version%.crate}; version=${version%.whl}
  case $name in *.whl) ty=pypi ;; *.tgz) ty=npm ;; *.crate) ty=cargo ;; *) ty=generic ;; esac
  "$S" publish -n bench -p corpus -t "$ty" --name "$family" --version "$version" "$1" >/dev/null
}
run() { # name files...
  local name=$1; shift
  rm -rf "$W/data"; mkdir -p "$W/data"
  printf 'pack_max_age = "1s"\n[gc]\ninterval = "0s"\ngrace = "0s"\ncompact_threshold = 0.0\npack_delete_delay = "0s"\n[optimize]\nenabled = false\n' > "$W/config.toml"
  local port; port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  export STOWAGE_ADDR="http://127.0.0.1:$port" STOWAGE_DATA_DIR="$W/data"
  "$S" serve --config "$W/config.toml" --data-dir "$W/data" --listen "127.0.0.1:$port" 2>"$W/log" & pid=$!
  until "$S" admin stats >/dev/null 2>&1; do sleep 0.1; done
  local raw; raw=$(cat "$@" | wc -c)
  if [ "${BENCH_PUT:-publish}" = blob ]; then
    "$S" blob put "$@" >/dev/null
  else
    local f
    for f in "$@"; do publish "$f"; done
  fi
  sleep 2; "$S" gc >/dev/null  # the open pack is sealed after 1 s
  local before; before=$(du -sb "$W/data" | cut -f1)
  local t0; t0=$(date +%s.%N)
  "$S" optimize --json | tail -1 > "$W/opt.json"
  local secs; secs=$(echo "$(date +%s.%N) - $t0" | bc -l)
  sleep 2; "$S" gc >/dev/null
  kill -TERM $pid; wait $pid || true; pid=
  local after; after=$(du -sb "$W/data" | cut -f1)
  local streams; streams=$(python3 -c "import json; p=json.load(open('$W/opt.json')); print('%d/%d/%d  optimized %d of %d, %d deltas' % (p['zlib_streams'], p['preflate_streams'], p['opaque_streams'], p['optimized'], p['total'], p.get('deltas', 0)))")
  printf '%-12s %5d %12d %12d %12d %7.3f %7.3f %8.1f  %s\n' "$name" $# "$raw" "$before" "$after" \
    "$(echo "$before/$raw" | bc -l)" "$(echo "$after/$raw" | bc -l)" "$secs" "$streams"
}
for f in "${families[@]}"; do
  mapfile -t files < <(find "$C" -type f -name "$f-[0-9]*" | sort)
  run "$f" "${files[@]}"
done
mapfile -t all < <(find "$C" -type f | sort)
run all "${all[@]}"
