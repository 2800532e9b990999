#!/usr/bin/env bash
# Fuzzes the HTTP contract: schemathesis generates requests from the OpenAPI document
# that `sextant serve` publishes, valid and invalid, sends them with a real API key,
# and checks every answer: no 5xx, only documented statuses and content types, bodies
# (errors included) matching their schemas, invalid input refused. Bounded by
# EXAMPLES per operation (default 25) and a time budget.
set -euo pipefail
cd "$(dirname "$0")/.."
examples=${1:-25}

# In a virtual environment of its own: its pins would clash with the SAM CLI's.
version=4.32.5
env=target/schemathesis-venv
if [ "$("$env/bin/python" -c 'import importlib.metadata as m; print(m.version("schemathesis"))' 2>/dev/null)" != "$version" ]; then
  python3 -m venv "$env"
  "$env/bin/python" -m pip install --quiet "schemathesis==$version"
fi
cargo build --quiet -p sextant-cli

data=$(mktemp -d)
log=$(mktemp)
report=$(mktemp -d)
# The fuzzer is one client sending as fast as it can; the limits under test here are
# the handlers', not the rate limiter's (tests/tests/rate_limits.rs covers that).
SEXTANT_RATE_KEY_PER_MINUTE=1000000 SEXTANT_RATE_KEY_BURST=100000 \
  SEXTANT_RATE_TEAM_PER_MINUTE=1000000 SEXTANT_RATE_TEAM_BURST=100000 \
  RUST_LOG=info target/debug/sextant serve --addr 127.0.0.1:0 --data-dir "$data" 2>"$log" &
server=$!
trap 'kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; rm -rf "$data" "$log" "$report"' EXIT

base=""
for _ in $(seq 1 100); do
  base=$(grep -o 'url=http://[^ ]*' "$log" | head -1 | sed 's/^url=//; s:/$::' || true)
  if [ -n "$base" ]; then break; fi
  if ! kill -0 "$server" 2>/dev/null; then cat "$log"; echo "sextant serve failed to start" >&2; exit 1; fi
  sleep 0.1
done
if [ -z "$base" ]; then cat "$log"; echo "sextant serve never said where it serves" >&2; exit 1; fi

api() {
  curl -sf -X POST "$base$1" -H 'content-type: application/json' ${key:+-H "authorization: Bearer $key"} -d "$2"
}
field() { python3 -c "import json, sys; print(json.load(sys.stdin)['$1'])"; }
key=""
key=$(api /v1/signup '{"email": "contract@example.com", "password": "correct horse battery staple", "team": "contract"}' | field api_key)
# A project and a run with a series, so generated requests reach the handlers' logic
# instead of stopping at 404.
project=$(api /v1/projects '{"name": "contract"}' | field id)
run=$(api "/v1/projects/$project/runs" '{"name": "fuzzed"}' | field id)
api "/v1/runs/$run/log" '{"batch_id": "b1", "series": {"loss": {"steps": [0, 1], "values": [1.0, 0.5]}}}' >/dev/null
cat >"$report/schemathesis.toml" <<TOML
[parameters]
"path.project" = "$project"
"path.run" = "$run"
"path.name" = "loss"
TOML

# The checks of the issue's goal: no 5xx; only documented statuses, content types and
# headers; every body, errors included, matching its schema; credentials required
# where the document says so; unsupported methods refused. Left out:
# positive_data_acceptance and negative_data_rejection, because the document gives the
# shape of each body and not every rule the server checks (series and tag names,
# parameter nesting, byte limits, timestamps), so schema-valid bodies are refused and
# the other way round by design; use_after_free and ensure_resource_availability,
# which follow OpenAPI links the document does not declare; object_level_authorization,
# which needs a second tenant: the isolation sweep (tests/tests/isolation.rs) holds
# every operation to that.
# Four operations are not fuzzed: revoking API keys (the fuzzer finds its own key's
# id in the key list, revokes it and meets only 401s from then on), deleting the team
# (should it ever guess the name, likewise), and deleting the project or the run above
# (every later case would meet 404). tests/tests cover them.
# One worker: on Python 3.11.7, hypothesis parsing lambda sources in two threads at once
# can crash CPython's parser ("AST constructor recursion depth mismatch"),
# which schemathesis reports as a failing operation. The run takes seconds either way.
status=0
timeout 900 "$env/bin/st" --config-file "$report/schemathesis.toml" run "$base/openapi.json" \
  --header "Authorization: Bearer $key" \
  --checks all \
  --exclude-checks positive_data_acceptance,negative_data_rejection,use_after_free,ensure_resource_availability,object_level_authorization \
  --exclude-operation-id revoke_api_key \
  --exclude-operation-id delete_team \
  --exclude-operation-id delete_project \
  --exclude-operation-id delete_run \
  --max-examples "$examples" \
  --seed 20261204 \
  --workers 1 \
  --request-timeout 30 \
  --report junit --report-junit-path "$report/junit.xml" \
  --output-truncate true || status=$?
python3 - "$report/junit.xml" <<'EOF'
import sys, xml.etree.ElementTree as ET
root = ET.parse(sys.argv[1]).getroot()
suites = [root] if root.tag == "testsuite" else list(root)
tests = sum(int(s.get("tests", 0)) for s in suites)
failures = sum(int(s.get("failures", 0)) + int(s.get("errors", 0)) for s in suites)
print(f"schemathesis: {tests} operations tested, {failures} failing")
EOF
if grep -q ' ERROR \| panicked' "$log"; then
  grep ' ERROR \| panicked' "$log" | head -20
  echo "the server logged errors during the contract run" >&2
  status=1
fi
exit "$status"
