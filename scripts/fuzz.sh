#!/usr/bin/env bash
# Runs each cargo-fuzz target (fuzz/) for SECONDS (default 20; longer by hand, e.g.
# `scripts/fuzz.sh 3600`). Needs the nightly toolchain and cargo-fuzz; installs the
# latter if missing. The build (about ten minutes from scratch: every dependency is
# instrumented) is kept outside the checkout, so later runs only rebuild what changed.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-20}
if ! command -v cargo-fuzz >/dev/null 2>&1; then
  cargo install --locked cargo-fuzz
fi
# The fuzz crate sits outside the workspace (it needs nightly and sanitizer flags), so
# it has a lock file of its own; seeding it from the workspace's pins the dependencies
# it shares with the workspace to the versions the tests ran, and cargo only adds the
# fuzzer's. It is ignored by git, so a run leaves the tree clean.
cp Cargo.lock fuzz/Cargo.lock
export CARGO_TARGET_DIR=${SEXTANT_FUZZ_TARGET_DIR:-$HOME/.cache/sextant/fuzz-target}
log=$(mktemp)
trap 'rm -f "$log"' EXIT
for target in log_batch chunk_decode; do
  # A crash writes its input under fuzz/artifacts/ and fails the run.
  if ! cargo +nightly fuzz run --fuzz-dir fuzz -O "$target" -- \
    -max_total_time="$seconds" -rss_limit_mb=2048 -print_final_stats=1 >"$log" 2>&1; then
    tail -60 "$log"
    echo "fuzz target $target failed" >&2
    exit 1
  fi
  echo "$target: $(grep -E '^Done [0-9]+ runs' "$log")"
done
