#!/usr/bin/env bash
# Builds the three functions for Lambda (provided.al2023, arm64) with cargo-lambda,
# which cross-compiles through zig. Zips land in target/lambda/<function>/bootstrap.zip.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo-lambda >/dev/null 2>&1; then
  python3 -m pip install --quiet cargo-lambda
fi
rustup target add aarch64-unknown-linux-gnu >/dev/null

cargo lambda build --release --arm64 --output-format zip \
  -p sextant-api -p sextant-ingest -p sextant-metering

for function in sextant-api sextant-ingest sextant-metering; do
  zip="target/lambda/$function/bootstrap.zip"
  test -s "$zip" || { echo "missing $zip" >&2; exit 1; }
  printf '%-18s %8d bytes\n' "$function" "$(stat -c %s "$zip")"
done
