#!/usr/bin/env bash
# Renders the HTML capacity report of a small sample store (three
# namespaces, four package types, two weeks of daily snapshots on the
# daemon's test clock) and takes screenshots of it and of project acme/web's
# with headless Chromium, installing Debian's chromium if it is missing.
# Fails if the page does not render to a non-trivial PNG.
# Usage: tools/report-screenshot.sh [OUT_DIR]   (default: ./report-sample)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=$(realpath -m "${1:-report-sample}")
mkdir -p "$OUT"
if ! command -v chromium >/dev/null; then
    sudo=$(command -v sudo || true)
    $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium
fi
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/stowage/target}
cargo build --release --locked -q --bin stowage
B=$CARGO_TARGET_DIR/release
W=$(mktemp -d); trap 'kill $pid 2>/dev/null; rm -rf "$W"' EXIT
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
echo 0 >"$W/clock"
export STOWAGE_DATA_DIR="$W/data" STOWAGE_ADDR="http://127.0.0.1:$port"
STOWAGE_CLOCK_OFFSET_FILE="$W/clock" "$B/stowage" serve --data-dir "$W/data" --listen "127.0.0.1:$port" 2>"$W/log" & pid=$!
until "$B/stowage" admin stats >/dev/null 2>&1; do sleep 0.1; done
pub() { # ns project type name version file bytes seed
    head -c "$7" <(python3 -c "import random,sys; r=random.Random($8); sys.stdout.buffer.write(r.randbytes($7))") >"$W/f"
    "$B/stowage" publish -n "$1" -p "$2" -t "$3" --name "$4" --version "$5" --file-name "$6" "$W/f" >/dev/null
}
for day in $(seq 0 13); do
    echo $((day * 24 * 3600 * 1000)) >"$W/clock"
    pub acme web npm "@acme/ui" "1.$day.0" ui.tgz $((200000 + day * 30000)) $((day % 5))
    pub acme api maven "com.acme:core" "2.$day" core.jar $((400000 + day * 50000)) $((100 + day))
    pub beta lib pypi requests-lite "0.$day" "lite-0.$day.whl" 150000 $((200 + day % 3))
    [ $((day % 3)) = 0 ] && pub gamma img generic base-image "$day" layer.tar 900000 $((300 + day))
    [ $((day % 4)) = 1 ] && pub acme web npm "@acme/icons" "0.$day.0" icons.tgz 120000 $((400 + day))
    "$B/stowage" report --format json >/dev/null   # takes the day's snapshot
done
"$B/stowage" report --format html --output "$OUT/report.html"
# Without the networking flags Chromium waits for services it cannot reach.
shot() { # html png
    timeout 120 chromium --headless --no-sandbox --disable-gpu --disable-dev-shm-usage --disable-quic \
        --no-first-run --disable-background-networking --disable-component-update --disable-sync \
        --disable-extensions --hide-scrollbars --user-data-dir="$W/chromium-profile" --window-size=1000,3400 \
        --screenshot="$2" "file://$1" 2>"$W/chromium.log" || { cat "$W/chromium.log"; exit 1; }
}
shot "$OUT/report.html" "$OUT/report.png"
"$B/stowage" report --format html -n acme -p web --output "$OUT/report-acme-web.html"
shot "$OUT/report-acme-web.html" "$OUT/report-acme-web.png"
size=$(stat -c %s "$OUT/report.png")
[ "$size" -gt 20000 ] || { echo "screenshot is only $size bytes"; exit 1; }
echo "rendered $OUT/report.html ($(stat -c %s "$OUT/report.html") bytes) to $OUT/report.png ($size bytes)"
kill -TERM $pid; wait $pid || true
