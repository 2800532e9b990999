#!/usr/bin/env bash
# Runs every test: installs what the tests need (moto, Chromium and ChromeDriver, the
# SAM CLI), validates the SAM template, starts moto's server on a free loopback port for
# the DynamoDB/S3 adapter tests, runs the workspace tests, stops moto.
set -euo pipefail
cd "$(dirname "$0")/.."

# A pinned moto: 5.2.0 and 5.2.1 answer CompleteMultipartUpload with an XML root the
# AWS SDK cannot parse (getmoto/moto#10055).
moto_version=5.2.5
if [ "$(python3 -c 'import importlib.metadata as m; print(m.version("moto"))' 2>/dev/null)" != "$moto_version" ] \
  || ! command -v moto_server >/dev/null 2>&1; then
  python3 -m pip install --quiet "moto[server]==$moto_version"
fi
# The browser test (cli/tests/browser.rs) drives Debian's Chromium through its ChromeDriver.
if [ ! -x /usr/bin/chromedriver ] || [ ! -x /usr/bin/chromium ]; then
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then sudo=sudo; fi
  $sudo apt-get update -qq
  $sudo env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -qq --no-install-recommends chromium chromium-driver
fi
export SEXTANT_CHROMIUM=/usr/bin/chromium SEXTANT_CHROMEDRIVER=/usr/bin/chromedriver
sam_version=1.170.0
if [ "$(python3 -c 'import importlib.metadata as m; print(m.version("aws-sam-cli"))' 2>/dev/null)" != "$sam_version" ]; then
  python3 -m pip install --quiet "aws-sam-cli==$sam_version"
fi
# Lints with cfn-lint too; needs no AWS account.
SAM_CLI_TELEMETRY=0 AWS_DEFAULT_REGION=us-east-1 sam validate --lint -t infra/template.yaml
if ! command -v cargo-nextest >/dev/null 2>&1; then
  cargo install --locked cargo-nextest
fi

port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')
moto_log=$(mktemp)
moto_server -H 127.0.0.1 -p "$port" >"$moto_log" 2>&1 &
moto_pid=$!
trap 'kill "$moto_pid" 2>/dev/null || true; wait "$moto_pid" 2>/dev/null || true; rm -f "$moto_log"' EXIT

for _ in $(seq 1 100); do
  if curl -sf "http://127.0.0.1:$port/moto-api/" >/dev/null 2>&1; then break; fi
  if ! kill -0 "$moto_pid" 2>/dev/null; then cat "$moto_log"; echo "moto_server failed to start" >&2; exit 1; fi
  sleep 0.1
done

# Dummy credentials for the emulator; the endpoint keeps every request on loopback.
export SEXTANT_TEST_AWS_ENDPOINT="http://127.0.0.1:$port"
export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1
unset AWS_PROFILE AWS_SESSION_TOKEN

# The tests that need the emulator are marked ignored, so a plain `cargo test` on a
# fresh clone reports them skipped; here moto runs, so they run too. The smoke test
# needs a deployed stage (SEXTANT_URL): filtered out by name, it shows in the
# summary as the one test skipped.
cargo nextest run --workspace --no-fail-fast --run-ignored all -E 'not test(/^smoke_/)' "$@"
# nextest does not run doctests.
cargo test --workspace --doc --quiet
# The log-batch parser and the chunk decoder under libFuzzer, briefly.
scripts/fuzz.sh 20

# The HTTP contract, fuzzed from the OpenAPI document against a real `sextant serve`.
scripts/contract.sh

# The Python SDK, tested against a real `sextant serve` that its fixtures start.
cargo build --quiet -p sextant-cli
python3 -m pip install --quiet ./sdk/python pytest
SEXTANT_BIN=target/debug/sextant python3 -m pytest -q sdk/python/tests

# The stock MLflow client (and, for the import tests, a real `mlflow server`) against
# `sextant serve`. MLflow lives in its own virtual environment: its pins would clash
# with the SAM CLI's in the system interpreter.
mlflow_version=3.17.2
mlflow_env=target/mlflow-venv
if [ "$("$mlflow_env/bin/python" -c 'import importlib.metadata as m; print(m.version("mlflow"))' 2>/dev/null)" != "$mlflow_version" ]; then
  python3 -m venv "$mlflow_env"
  "$mlflow_env/bin/python" -m pip install --quiet "mlflow==$mlflow_version" pytest
fi
SEXTANT_BIN=target/debug/sextant "$mlflow_env/bin/python" -m pytest -q tests/mlflow

# The stock neptune-scale client against `sextant serve`, in a virtual environment of
# its own: the client pins its own protobuf and httpx.
neptune_version=0.30.0
neptune_env=target/neptune-venv
if [ "$("$neptune_env/bin/python" -c 'import importlib.metadata as m; print(m.version("neptune-scale"))' 2>/dev/null)" != "$neptune_version" ]; then
  python3 -m venv "$neptune_env"
  "$neptune_env/bin/python" -m pip install --quiet "neptune-scale==$neptune_version" pytest
fi
SEXTANT_BIN=target/debug/sextant "$neptune_env/bin/python" -m pytest -q tests/neptune
