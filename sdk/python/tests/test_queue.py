"""Training code run by `sextant agent` logs into its queued job's run: `init` attaches
to the run named by SEXTANT_RUN_ID, the job's params win over the code's defaults, and
the output the agent already streams is not captured twice."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

import sextant
from conftest import Account, sdk_env, sextant_bin

TRAIN = """
import json, sys
import sextant

with sextant.init(params={"lr": 0.5, "epochs": 3}, system_metrics=False) as run:
    print("argv", " ".join(sys.argv[1:]))
    print("params", json.dumps(run.params, sort_keys=True))
    for step in range(3):
        run.log({"loss": 1.0 / (step + 1)}, step=step)
"""


def test_code_under_an_agent_logs_into_the_queued_run(
    account: Account, spool_dir: Path, tmp_path: Path
) -> None:
    script = tmp_path / "train.py"
    script.write_text(TRAIN)
    status, job = account.post(
        "/v1/projects/{}/queues/default/jobs".format(account.project),
        {"command": [sys.executable, str(script)], "params": {"lr": 0.1, "model": {"depth": 12}}},
    )
    assert status == 201, job
    run_id = job["run_id"]

    agent = subprocess.run(
        [
            str(sextant_bin()),
            "agent",
            "--project",
            account.project,
            "--name",
            "pytest-agent",
            "--exit-when-idle",
            "--poll-secs",
            "0.2",
        ],
        env=sdk_env(account, spool_dir),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert agent.returncode == 0, agent.stderr

    done = account.get("/v1/jobs/" + run_id)
    assert done["state"] == "done", done
    assert done["result"] == "succeeded"
    assert done["exit_code"] == 0
    run = account.run(run_id)
    assert run["status"] == "succeeded"
    assert run["name"] == job["run"]["name"], "the job's run keeps its name"
    assert run["params"] == {"lr": 0.1, "model/depth": 12, "epochs": 3}
    stdout = account.series(run_id, "stdout")["texts"]
    assert stdout == [
        "argv --lr 0.1 --model/depth 12",
        "params " + json.dumps({"epochs": 3, "lr": 0.1, "model/depth": 12}, sort_keys=True),
    ], "each line once: the agent streams it, the SDK does not capture it again"
    assert account.series(run_id, "loss")["values"] == [1.0, 0.5, 1.0 / 3]


def test_attaching_to_a_job_needs_online_mode(
    spool_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SEXTANT_RUN_ID", "run_01jobjobjobjobjobjobjobjob")
    with pytest.raises(sextant.ConfigError, match="SEXTANT_RUN_ID"):
        sextant.init(mode="offline")
