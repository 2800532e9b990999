"""The examples run against a real server; an abort from the API stops the live one."""

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import REPO_ROOT, Account, sdk_env, wait_for

EXAMPLES = REPO_ROOT / "examples"


# Started from a terminal, or as a shell script's background job (`python train.py &`),
# which starts with SIGINT ignored.
@pytest.mark.parametrize("sigint", [signal.SIG_DFL, signal.SIG_IGN], ids=["foreground", "background"])
def test_abort_from_the_api_stops_a_running_example(
    account: Account, spool_dir: Path, sigint: signal.Handlers
) -> None:
    child = subprocess.Popen(
        [sys.executable, str(EXAMPLES / "sine_cosine.py"), "--sampling-rate", "50", "--amplitude", "2"],
        env=sdk_env(account, spool_dir),
        preexec_fn=lambda: signal.signal(signal.SIGINT, sigint),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert child.stdout is not None
        first = child.stdout.readline()
        assert first.startswith("run run_"), first
        run_id = first.split()[1].rstrip(":")

        def has_points() -> bool:
            series = account.run(run_id)["series"]
            return "sin" in series and series["sin"]["count"] >= 10

        wait_for(has_points, 20, what="the example's first points")
        record = account.run(run_id)
        assert record["status"] == "running"
        assert record["params"] == {"amplitude": 2.0, "sampling_rate": 50.0, "frequency": 0.1}

        status, _ = account.post("/v1/runs/{}/abort".format(run_id))
        assert status == 200
        aborted_at = time.monotonic()
        code = child.wait(30)
        output = child.stdout.read()
        assert code == 0, output
        assert "aborted from the API" in output
        assert time.monotonic() - aborted_at < 15
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()

    record = account.run(run_id)
    assert record["status"] == "aborted"
    sin = account.series(run_id, "sin")
    samples = account.series(run_id, "samples")
    assert sin["steps"] == list(range(len(sin["steps"])))
    assert samples["steps"] == sin["steps"], "a text line per sample"
    assert samples["texts"][1].startswith("t=0.02s sin=")
    assert not list(spool_dir.iterdir())


def test_train_toy_logs_and_finishes(account: Account, spool_dir: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / "train_toy.py"), "--epochs", "2", "--samples", "400"],
        env=sdk_env(account, spool_dir),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    (record,) = account.runs()
    assert record["status"] == "succeeded"
    assert record["params"]["model/kind"] == "logistic_regression"
    assert record["series"]["train/loss"]["count"] == 2 * 20  # 320 examples / 16 a batch
    assert record["series"]["val/acc"]["count"] == 2
    artifacts = account.get("/v1/runs/{}/artifacts".format(record["id"]))["artifacts"]
    kinds = {a["path"]: a["kind"] for a in artifacts}
    assert kinds["checkpoints/epoch-0.json"] == "checkpoint"
    assert kinds["checkpoints/epoch-1.json"] == "checkpoint"
    assert kinds["model/final.json"] == "model"
