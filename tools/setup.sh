#!/usr/bin/env bash
# Installs what building Stowage needs on Debian/Ubuntu when it is missing:
# libclang (RocksDB's bindgen) and a C++ compiler; with --test also moto's
# S3 server, which the S3 tests start, and chromium, which the report
# screenshot test runs. Safe to run again.
set -euo pipefail
need=()
ls /usr/lib/llvm-*/lib/libclang.so* /usr/lib/x86_64-linux-gnu/libclang*.so* >/dev/null 2>&1 || need+=(libclang-dev)
command -v c++ >/dev/null 2>&1 || need+=(g++)
command -v cargo >/dev/null 2>&1 || { echo "setup: cargo not found; install Rust (https://rustup.rs)" >&2; exit 1; }
if [ ${#need[@]} -gt 0 ]; then
  echo "setup: installing ${need[*]}" >&2
  SUDO=; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi
# The S3 integration tests (tests/it/s3.rs) run moto's standalone S3 server.
if [ "${1:-}" = --test ] && ! python3 -c 'import moto.server, flask, flask_cors' >/dev/null 2>&1; then
  if ! python3 -m pip --version >/dev/null 2>&1; then
    echo "setup: installing python3-pip" >&2
    SUDO=; [ "$(id -u)" = 0 ] || SUDO=sudo
    $SUDO apt-get update -qq && $SUDO apt-get install -y -qq python3 python3-pip >/dev/null
  fi
  echo "setup: installing moto[server] (S3 server for the tests)" >&2
  python3 -m pip install -q --disable-pip-version-check 'moto[server]' 2>/dev/null \
    || python3 -m pip install -q --disable-pip-version-check --break-system-packages 'moto[server]'
fi
# tests/it/operator.rs asks the daemon's reflection with Python's grpcio-reflection (v1alpha).
if [ "${1:-}" = --test ] && ! python3 -c 'import grpc, grpc_reflection' >/dev/null 2>&1; then
  echo "setup: installing grpcio-reflection (a v1alpha reflection client for the tests)" >&2
  python3 -m pip install -q --disable-pip-version-check grpcio grpcio-reflection 2>/dev/null \
    || python3 -m pip install -q --disable-pip-version-check --break-system-packages grpcio grpcio-reflection
fi
# tests/it/report_page.rs screenshots the HTML report with headless Chromium.
if [ "${1:-}" = --test ] && ! command -v chromium >/dev/null 2>&1; then
  echo "setup: installing chromium (the report screenshot test)" >&2
  SUDO=; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
fi
