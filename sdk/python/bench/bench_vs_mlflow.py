"""Ingest over HTTP into one run, side by side: an MLflow tracking server and Sextant.

From the repository root:

    cargo build --release -p sextant-cli
    python3 -m pip install "mlflow==2.19.0" "sqlalchemy<2.1"
    python3 sdk/python/bench/bench_vs_mlflow.py --bin target/release/sextant

Both servers run on loopback, one after the other, and get the same requests: MLflow's
REST ``runs/log-batch`` with 1,000 metric rows a request (MLflow's limit), three
metrics a step, into one run, sent over one keep-alive connection from bodies encoded
before the clock starts, so that the figure is the server's, not the client's.
Sextant serves MLflow's REST API, so the only difference is the server behind it.
Sextant is also sent the same points through its own log endpoint, as its SDK sends
them (1,000 and 10,000 points a request). MLflow runs as its docs' local tracking
server does (``mlflow server`` with a SQLite backend store); Sextant is the embedded
``sextant serve`` (one process, the redb store), what a newcomer runs, with its rate
limits raised out of the way. Each figure is
points acknowledged per second; every point is read back (the metric histories) to
check it arrived exactly once.

Options: ``--points N`` per Sextant measurement, ``--mlflow-points N`` for MLflow
(far slower: the rate, not the total, is compared).
"""

import argparse
import http.client
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import List, Optional, Tuple

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_log import REPO_ROOT, server_binary, sign_up, start_server  # noqa: E402

METRICS = ("loss", "acc", "lr")
ROWS_A_REQUEST = 1_000


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_mlflow(workdir: Path) -> Tuple[subprocess.Popen, str]:
    port = free_port()
    log = open(workdir / "mlflow.log", "wb")
    process = subprocess.Popen(
        [
            sys.executable, "-m", "mlflow", "server",
            "--backend-store-uri", "sqlite:///{}".format(workdir / "mlflow.db"),
            "--default-artifact-root", str(workdir / "artifacts"),
            "--host", "127.0.0.1", "--port", str(port),
        ],
        stdout=log,
        stderr=log,
    )
    url = "http://127.0.0.1:{}".format(port)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url + "/health", timeout=2) as response:
                if response.status == 200:
                    return process, url
        except OSError:
            time.sleep(0.25)
    process.kill()
    raise SystemExit("mlflow server did not start:\n" + (workdir / "mlflow.log").read_text())


def rows(points: int) -> List[Tuple[str, float, int]]:
    steps = points // len(METRICS)
    return [
        (name, 1.0 / (step + 1) + index, step)
        for step in range(steps)
        for index, name in enumerate(METRICS)
    ]


def post_all(url: str, path_bodies: List[Tuple[str, bytes]], token: Optional[str]) -> float:
    """Sends every body over one keep-alive connection; answers the seconds it took."""
    parsed = urllib.parse.urlsplit(url)
    connection = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=120)
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = "Bearer " + token
    started = time.perf_counter()
    for path, body in path_bodies:
        connection.request("POST", path, body=body, headers=headers)
        response = connection.getresponse()
        answer = response.read()
        assert response.status == 200, (path, response.status, answer[:300])
    elapsed = time.perf_counter() - started
    connection.close()
    return elapsed


def new_run(url: str, token: Optional[str]) -> str:
    from mlflow.tracking import MlflowClient

    if token:
        os.environ["MLFLOW_TRACKING_TOKEN"] = token
    client = MlflowClient(tracking_uri=url)
    experiment = client.create_experiment("ingest-{}".format(time.time_ns()))
    return client.create_run(experiment).info.run_id


def check(url: str, run: str, steps: int) -> None:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=url)
    for name in METRICS:
        history = client.get_metric_history(run, name)
        assert len(history) == steps, (url, name, len(history), steps)
        assert len({m.step for m in history}) == steps, (url, name, "a step twice")


def mlflow_log_batch(url: str, points: int, token: Optional[str]) -> float:
    """Points/s through MLflow's REST log-batch, 1,000 rows a request."""
    run = new_run(url, token)
    table = rows(points)
    bodies = [
        (
            "/api/2.0/mlflow/runs/log-batch",
            json.dumps({
                "run_id": run,
                "metrics": [
                    {"key": name, "value": value, "timestamp": 1_700_000_000_000 + step, "step": step}
                    for name, value, step in table[start:start + ROWS_A_REQUEST]
                ],
            }).encode(),
        )
        for start in range(0, len(table), ROWS_A_REQUEST)
    ]
    elapsed = post_all(url, bodies, token)
    check(url, run, points // len(METRICS))
    return len(table) / elapsed


def sextant_log(url: str, points: int, per_request: int, token: str) -> float:
    """Points/s through Sextant's own log endpoint, as its SDK sends them."""
    run = new_run(url, token)
    steps = points // len(METRICS)
    steps_a_request = per_request // len(METRICS)
    bodies = []
    for first in range(0, steps, steps_a_request):
        span = range(first, min(steps, first + steps_a_request))
        series = {
            name: {
                "steps": list(span),
                "values": [1.0 / (step + 1) + index for step in span],
                "timestamps": [1_700_000_000 + step / 1000 for step in span],
            }
            for index, name in enumerate(METRICS)
        }
        body = {"batch_id": "b{}".format(first), "series": series}
        bodies.append(("/v1/runs/{}/log".format(run), json.dumps(body).encode()))
    elapsed = post_all(url, bodies, token)
    check(url, run, steps)
    return steps * len(METRICS) / elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bin", default=os.environ.get("SEXTANT_BIN", "target/release/sextant"))
    parser.add_argument("--points", type=int, default=600_000)
    parser.add_argument("--mlflow-points", type=int, default=60_000)
    args = parser.parse_args()
    binary = server_binary(args.bin, "cargo build --release -p sextant-cli")

    workdir = Path(tempfile.mkdtemp(prefix="sextant-vs-mlflow-"))
    try:
        mlflow_server, mlflow_url = start_mlflow(workdir)
        try:
            mlflow_rate = mlflow_log_batch(mlflow_url, args.mlflow_points, None)
        finally:
            mlflow_server.terminate()
            mlflow_server.wait(30)

        # Rate limits bound a team's share of a shared deployment, not what the server
        # can take, which is what this measures.
        for scope in ("TEAM", "KEY", "ADDRESS"):
            for limit in ("PER_MINUTE", "BURST"):
                os.environ["SEXTANT_RATE_{}_{}".format(scope, limit)] = "100000000"
        server, url = start_server(binary, workdir / "sextant")
        try:
            key = sign_up(url)
            same_api = mlflow_log_batch(url, args.points, key)
            native = {n: sextant_log(url, args.points, n, key) for n in (1_000, 10_000)}
        finally:
            server.terminate()
            server.wait(30)

        print("ingest into one run over HTTP (one keep-alive connection, bodies encoded beforehand):")
        print("  mlflow server (SQLite), MLflow log-batch of 1,000 rows: %8.0f points/s" % mlflow_rate)
        print("  sextant serve (%s):" % os.path.relpath(binary, REPO_ROOT))
        print("    MLflow log-batch of 1,000 rows:   %8.0f points/s, %4.0fx" % (same_api, same_api / mlflow_rate))
        for n, rate in native.items():
            print("    /v1 log, %6d points a request: %8.0f points/s, %4.0fx" % (n, rate, rate / mlflow_rate))
        return 0
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
