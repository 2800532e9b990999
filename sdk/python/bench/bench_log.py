"""Benchmark of the Python SDK's hot path and delivery rate.

From the repository root:

    cargo build -p sextant-cli
    python3 -m pip install ./sdk/python
    python3 sdk/python/bench/bench_log.py

Options: ``--bin PATH`` for another server binary (e.g. an optimised one, built
with ``cargo build --profile bench -p sextant-cli``, at ``target/release/sextant``),
``--calls N`` for the call-cost sample, ``--points N`` for the delivery run.

It starts ``sextant serve`` on a temporary data directory and a free loopback port,
signs up, and measures:

1. The cost of one ``run.log({"loss": ..., "acc": ..., "lr": ...}, step=i)`` in the
   training thread, on a live online run whose background sender is running: each
   call is timed on its own with ``time.perf_counter_ns`` and the median (and p90,
   p99) over ``--calls`` calls is reported side by side with the same measurement
   of an empty function taking the same arguments (the baseline: a Python call and
   the timer itself). Also the amortised cost in a tight loop, which includes the
   share of the GIL that the sender takes to encode and send what the loop logs.
2. Sustained delivery: ``--points`` points logged as fast as the loop goes (3
   metrics a call), timed from the first call until ``run.finish()`` returns, when
   the server has acknowledged every batch; the run's point counts are then read
   back to check that all of them arrived exactly once.

Figures measured on the 2-core development machine (Python 3.11):

- ``run.log`` with 3 metrics: median 1.2 us per call (empty function: 0.12 us);
  amortised in a tight loop 5 to 8 us a call, because the background threads that
  encode and send those points share the GIL with the loop.
- Delivery: about 180,000 points/s to the debug build of the server, about 450,000
  points/s to the optimised one (then the SDK's own encoding is the limit).
"""

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import json
import time
import urllib.request
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

REPO_ROOT = Path(__file__).resolve().parents[3]


def request(url: str, method: str = "GET", body: Any = None, key: Optional[str] = None) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    if key:
        req.add_header("Authorization", "Bearer " + key)
    with urllib.request.urlopen(req, timeout=30) as response:
        return json.loads(response.read())


def server_binary(arg: str, build: str) -> Path:
    """The server binary ``arg`` names (relative to the repository root), or exit
    saying how to build it."""
    binary = Path(arg)
    binary = binary if binary.is_absolute() else REPO_ROOT / binary
    if not binary.exists():
        raise SystemExit("no server binary at {}: {}".format(binary, build))
    return binary


def sign_up(url: str) -> str:
    """A new team on the server at ``url``; answers its API key."""
    account = request(
        url + "/v1/signup",
        "POST",
        {"team": "Bench", "email": "bench@example.com", "password": "correct horse battery"},
    )
    return account["api_key"]


def start_server(binary: Path, data_dir: Path) -> Tuple[subprocess.Popen, str]:
    log_path = data_dir.parent / "server.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [str(binary), "serve", "--addr", "127.0.0.1:0", "--data-dir", str(data_dir)],
            stdout=log,
            stderr=log,
        )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        match = re.search(r"url=(http://127\.0\.0\.1:\d+)", log_path.read_text("utf-8", "replace"))
        if match:
            return process, match.group(1)
        if process.poll() is not None:
            break
        time.sleep(0.05)
    process.kill()
    raise SystemExit("sextant serve did not start:\n" + log_path.read_text("utf-8", "replace"))


def per_call_ns(function: Any, calls: int) -> List[int]:
    clock = time.perf_counter_ns
    timings = []
    for i in range(calls):
        metrics = {"loss": 1.0 / (i + 1), "acc": 0.5, "lr": 3e-4}
        started = clock()
        function(metrics, step=i)
        timings.append(clock() - started)
    return timings


def tight_loop_ns(function: Any, calls: int) -> float:
    started = time.perf_counter_ns()
    for i in range(calls):
        function({"loss": 1.0 / (i + 1), "acc": 0.5, "lr": 3e-4}, step=i)
    return (time.perf_counter_ns() - started) / calls


def summary(timings: List[int]) -> Dict[str, float]:
    ordered = sorted(timings)
    return {
        "median": statistics.median(ordered),
        "p90": ordered[int(0.9 * len(ordered))],
        "p99": ordered[int(0.99 * len(ordered))],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bin", default=os.environ.get("SEXTANT_BIN", "target/debug/sextant"))
    parser.add_argument("--calls", type=int, default=200_000)
    parser.add_argument("--points", type=int, default=1_500_000)
    args = parser.parse_args()
    binary = server_binary(args.bin, "cargo build -p sextant-cli")

    import sextant

    workdir = Path(tempfile.mkdtemp(prefix="sextant-bench-"))
    server, url = start_server(binary, workdir / "data")
    try:
        key = sign_up(url)
        options: Dict[str, Any] = dict(
            url=url,
            api_key=key,
            spool_dir=str(workdir / "spool"),
            capture_output=False,
            system_metrics=False,
            git=False,
            code=False,
        )

        # 1. The cost of one call.
        def empty(metrics: Dict[str, float], step: Optional[int] = None) -> None:
            pass

        run = sextant.init(project="bench", name="call-cost", **options)
        per_call_ns(empty, 10_000)  # warm up
        per_call_ns(run.log, 10_000)
        baseline = summary(per_call_ns(empty, args.calls))
        logged = summary(per_call_ns(run.log, args.calls))
        tight_empty = tight_loop_ns(empty, args.calls)
        tight_log = tight_loop_ns(run.log, args.calls)
        run.finish()
        print("run.log({3 metrics}, step=i), %d calls, each timed (ns):" % args.calls)
        print("  %-22s median %6.0f   p90 %6.0f   p99 %6.0f" % ("empty function:", baseline["median"], baseline["p90"], baseline["p99"]))
        print("  %-22s median %6.0f   p90 %6.0f   p99 %6.0f" % ("run.log:", logged["median"], logged["p90"], logged["p99"]))
        print("  run.log minus baseline: median %.0f ns = %.2f us" % (
            logged["median"] - baseline["median"], (logged["median"] - baseline["median"]) / 1000))
        print("  tight loop, amortised per call (sender sharing the GIL): empty %.0f ns, run.log %.0f ns" % (tight_empty, tight_log))

        # 2. Sustained delivery.
        calls = args.points // 3
        run = sextant.init(project="bench", name="throughput", **options)
        started = time.perf_counter()
        log = run.log
        for i in range(calls):
            log({"loss": 1.0 / (i + 1), "acc": 0.5, "lr": 3e-4}, step=i)
        logged_at = time.perf_counter()
        assert run.finish(timeout=600), "not everything was delivered"
        done = time.perf_counter()
        series = request(url + "/v1/runs/{}".format(run.id), key=key)["series"]
        counts = {name: series[name]["count"] for name in ("loss", "acc", "lr")}
        assert all(count == calls for count in counts.values()), counts
        points = 3 * calls
        print("delivery: %d points (%d calls of 3 metrics) to a local `sextant serve` (%s)" % (
            points, calls, os.path.relpath(binary, REPO_ROOT)))
        print("  logging loop took %.2f s (%.0f points/s offered)" % (logged_at - started, points / (logged_at - started)))
        print("  all acknowledged after %.2f s: %.0f points/s sustained, every point read back once" % (
            done - started, points / (done - started)))
        return 0
    finally:
        server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
