"""Ingest over HTTP into one run, side by side: an MLflow tracking server and Sextant.

From the repository root:

    cargo build --release -p sextant-cli
    python3 -m pip install ./sdk/python "mlflow==2.19.0"
    python3 sdk/python/bench/bench_vs_mlflow.py --bin target/release/sextant

Both servers run on loopback in the same process tree, one after the other, and get
the same requests from the same client: MLflow's own ``MlflowClient.log_batch``,
1,000 metric rows a request (MLflow's limit), three metrics a step, into one run.
Sextant serves MLflow's REST API, so the only difference is the server behind it.
MLflow runs as its docs' local tracking server does (``mlflow server`` with a SQLite
backend store). Each server's figure is points acknowledged per second; every point is
read back (the metric histories) to check it arrived exactly once. Sextant is the
embedded ``sextant serve`` (one process, the redb store): what a newcomer runs.

Options: ``--points N`` per server, ``--mlflow-points N`` to give MLflow fewer
(it is far slower; the rate, not the total, is compared).
"""

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import List, Tuple

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_log import REPO_ROOT, request, start_server  # noqa: E402

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


def ingest(url: str, points: int) -> float:
    """Logs `points` into a new run of `url` as 1,000-row batches; answers points/s."""
    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=url)
    experiment = client.create_experiment("ingest-{}".format(time.time_ns()))
    run = client.create_run(experiment).info.run_id
    steps = points // len(METRICS)
    rows: List[Metric] = [
        Metric(name, 1.0 / (step + 1) + index, 1_700_000_000_000 + step, step)
        for step in range(steps)
        for index, name in enumerate(METRICS)
    ]
    started = time.perf_counter()
    for start in range(0, len(rows), ROWS_A_REQUEST):
        client.log_batch(run, metrics=rows[start:start + ROWS_A_REQUEST])
    elapsed = time.perf_counter() - started
    for name in METRICS:
        history = client.get_metric_history(run, name)
        assert len(history) == steps, (url, name, len(history), steps)
        assert len({m.step for m in history}) == steps, (url, name, "a step twice")
    return len(rows) / elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bin", default=os.environ.get("SEXTANT_BIN", "target/release/sextant"))
    parser.add_argument("--points", type=int, default=600_000)
    parser.add_argument("--mlflow-points", type=int, default=60_000)
    args = parser.parse_args()
    binary = Path(args.bin)
    binary = binary if binary.is_absolute() else REPO_ROOT / binary
    if not binary.exists():
        raise SystemExit("no server binary at {}: cargo build --release -p sextant-cli".format(binary))

    workdir = Path(tempfile.mkdtemp(prefix="sextant-vs-mlflow-"))
    try:
        mlflow_server, mlflow_url = start_mlflow(workdir)
        try:
            mlflow_rate = ingest(mlflow_url, args.mlflow_points)
        finally:
            mlflow_server.terminate()
            mlflow_server.wait(30)

        server, url = start_server(binary, workdir / "sextant")
        try:
            account = request(
                url + "/v1/signup",
                "POST",
                {"team": "Bench", "email": "bench@example.com", "password": "correct horse battery"},
            )
            os.environ["MLFLOW_TRACKING_TOKEN"] = account["api_key"]
            sextant_rate = ingest(url, args.points)
        finally:
            server.terminate()
            server.wait(30)

        print("ingest into one run over HTTP, MlflowClient.log_batch of %d rows:" % ROWS_A_REQUEST)
        print("  mlflow server (SQLite): %8.0f points/s (%d points)" % (mlflow_rate, args.mlflow_points))
        print("  sextant serve:          %8.0f points/s (%d points, %s)" % (
            sextant_rate, args.points, os.path.relpath(binary, REPO_ROOT)))
        print("  ratio: %.0fx" % (sextant_rate / mlflow_rate))
        return 0
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
