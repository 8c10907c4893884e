#!/usr/bin/env bash
# Runs one cargo-fuzz target for a while and prints libFuzzer's final stats.
#   tools/fuzz.sh pack|manifest|index_keys|request|expand|recipe [seconds, default 600]
# Needs the nightly toolchain (installed here if missing) and cargo-fuzz.
set -euo pipefail
target=${1:?usage: tools/fuzz.sh pack|manifest|index_keys|request|expand|recipe [seconds]}
secs=${2:-600}
root=$(cd "$(dirname "$0")/.." && pwd)
main_target=${CARGO_TARGET_DIR:-$root/target}

rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked

# Link the RocksDB library the main release build made, so the fuzz build
# (different compiler flags, so a separate build) does not compile it again.
lib=$(ls "$main_target"/release/build/librocksdb-sys-*/out/librocksdb.a 2>/dev/null | head -1 || true)
if [ -n "$lib" ]; then
    export ROCKSDB_LIB_DIR=${lib%/librocksdb.a} ROCKSDB_STATIC=1 RUSTFLAGS="-C link-arg=-lstdc++"
fi
export CARGO_TARGET_DIR=${FUZZ_TARGET_DIR:-$main_target/../fuzz-target}

corpus=$root/fuzz/corpus/$target
mkdir -p "$corpus"
dirs=("$corpus")
for extra in seeds regressions; do
    [ -d "$root/fuzz/$extra/$target" ] && dirs+=("$root/fuzz/$extra/$target")
done
cd "$root/fuzz"
# -s none: the code under test is safe Rust (the C it calls, zstd, is not
# instrumented either way); -a: debug assertions, so overflows are findings.
exec cargo +nightly fuzz run -s none -a "$target" "${dirs[@]}" -- \
    -max_total_time="$secs" -max_len=80000 -timeout=10 -print_final_stats=1
