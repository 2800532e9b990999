#!/usr/bin/env bash
# The project workspace page in headless Chromium (tests/benches/workspace.rs): 50 runs
# × 12 metrics of 100,000 points; time to every chart drawn and bytes transferred, cold
# and warm, and zooms. Prints its figures beside the goals (1.5 s, 2 MB, 150 ms); fails
# only when it cannot measure. The first run seeds 60,000,000 points (minutes) into
# target/bench-data/, which later runs reuse. Installs nothing: it needs python3 (for
# tests/workloads/curves.py) and Debian's Chromium and ChromeDriver, which
# scripts/test.sh installs, or `apt-get install chromium chromium-driver`; set
# SEXTANT_CHROMIUM and SEXTANT_CHROMEDRIVER for others.
set -euo pipefail
cd "$(dirname "$0")/.."

chromium=${SEXTANT_CHROMIUM:-/usr/bin/chromium}
chromedriver=${SEXTANT_CHROMEDRIVER:-/usr/bin/chromedriver}
for tool in "$chromium" "$chromedriver"; do
  if [ ! -x "$tool" ]; then
    echo "$tool is missing: apt-get install chromium chromium-driver (scripts/test.sh" \
      "installs them), or set SEXTANT_CHROMIUM and SEXTANT_CHROMEDRIVER" >&2
    exit 2
  fi
done
if ! command -v python3 >/dev/null 2>&1; then
  echo "python3 is missing: the bench draws its points from tests/workloads/curves.py" >&2
  exit 2
fi
export SEXTANT_CHROMIUM="$chromium" SEXTANT_CHROMEDRIVER="$chromedriver"
exec cargo bench -p sextant-tests --bench workspace
