"""The stock neptune-scale client (pinned in scripts/test.sh) logging to `sextant serve`,
read back through Sextant's own API."""

import math
import time
import urllib.parse
from datetime import datetime, timezone
from pathlib import Path

import pytest
from neptune_scale import Run

from conftest import Account, Errors, Server, http, neptune_token

STEPS = 10_000
PROJECT = "migrated"


def loss(step: int) -> float:
    return 2.5 * math.exp(-step / 2_000) + 0.05 * math.sin(step / 7)


def accuracy(step: int) -> float:
    return 1 - 0.9 * math.exp(-step / 3_000)


def learning_rate(step: int) -> float:
    return 0.1 * 0.5 ** (step // 2_500)


def only_run(account: Account) -> dict:
    runs = account.get("/v1/projects/{}/runs".format(PROJECT), {"limit": 500})["runs"]
    assert len(runs) == 1, runs
    return account.run(runs[0]["id"])


def series(account: Account, run_id: str, name: str) -> dict:
    return account.series(run_id, name)


def test_a_neptune_training_script_logs_to_sextant_unchanged_and_reads_back_exactly(
    team: Account, errors: Errors
) -> None:
    started = datetime(2026, 11, 30, 8, 0, tzinfo=timezone.utc)
    run = Run(
        run_id="resnet-lr-sweep-7",
        experiment_name="resnet-baseline",
        on_error_callback=errors,
        on_warning_callback=errors,
    )
    run.log_configs(
        {
            "parameters/lr": 0.1,
            "parameters/batch_size": 256,
            "parameters/optimizer": "sgd",
            "parameters/nesterov": True,
            "parameters/started": started,
            "parameters/augmentations": ["flip", "crop"],
        }
    )
    # Captured console lines are a string series a millionth of a step apart.
    print("training starts", flush=True)
    run.add_tags(["resnet", "baseline", "to-remove"])
    run.remove_tags(["to-remove"])
    for step in range(STEPS):
        run.log_metrics(
            {
                "train/loss": loss(step),
                "train/accuracy": accuracy(step),
                "train/lr": learning_rate(step),
            },
            step=step,
        )
        if step % 1_000 == 999:
            # Neptune's fractional steps: validation half-way through an epoch.
            run.log_metrics({"val/loss": loss(step) + 0.1}, step=step + 0.5)
            run.log_string_series({"notes": "checkpoint at {}".format(step)}, step=step)
    assert run.wait_for_processing(timeout=120) is True
    run.close()

    # The client resumes a run given its id again: the same Sextant run grows.
    resumed = Run(run_id="resnet-lr-sweep-7", on_error_callback=errors, on_warning_callback=errors)
    for step in range(STEPS, STEPS + 100):
        resumed.log_metrics({"train/loss": loss(step)}, step=step)
    # A config logged as a float cannot become a string: Neptune calls that a type
    # mismatch, and so does Sextant.
    resumed.log_configs({"parameters/lr": "fast"})
    assert resumed.wait_for_processing(timeout=120) is True
    resumed.close()

    names = errors.wait_for(lambda seen: "NeptuneAttributeTypeMismatch" in seen, timeout=30)
    assert names == ["NeptuneAttributeTypeMismatch"], names

    record = only_run(team)
    assert record["name"] == "resnet-baseline"
    assert record["params"] == {
        "parameters/lr": 0.1,
        "parameters/batch_size": 256,
        "parameters/optimizer": "sgd",
        "parameters/nesterov": True,
        "parameters/started": "2026-11-30T08:00:00Z",
        "parameters/augmentations": '["crop","flip"]',
    }
    assert sorted(record["tags"]) == ["baseline", "resnet"]

    loss_points = series(team, record["id"], "train/loss")
    assert loss_points["steps"] == list(range(STEPS + 100))
    assert loss_points["values"] == [loss(step) for step in range(STEPS + 100)]
    accuracy_points = series(team, record["id"], "train/accuracy")
    assert accuracy_points["values"] == [accuracy(step) for step in range(STEPS)]
    lr_points = series(team, record["id"], "train/lr")
    assert lr_points["values"] == [learning_rate(step) for step in range(STEPS)]

    # Fractional steps are kept in millionths of a step, and the series says so.
    val = series(team, record["id"], "val/loss")
    checkpoints = [step for step in range(STEPS) if step % 1_000 == 999]
    assert val["steps"] == [step * 1_000_000 + 500_000 for step in checkpoints]
    assert val["values"] == [loss(step) + 0.1 for step in checkpoints]
    assert record["series"]["val/loss"]["step_unit"] == "micro"
    assert record["series"]["train/loss"]["step_unit"] == "whole"

    notes = series(team, record["id"], "notes")
    assert notes["steps"] == checkpoints
    assert notes["texts"] == ["checkpoint at {}".format(step) for step in checkpoints]

    stdout = series(team, record["id"], "runtime/stdout")
    assert "training starts" in stdout["texts"], stdout
    assert record["series"]["runtime/stdout"]["step_unit"] == "micro"

    # Every point is metered like the SDK's.
    usage = team.get("/v1/usage")
    logged = 3 * STEPS + 100 + 2 * len(checkpoints) + len(stdout["texts"])
    assert usage["points"] == logged, usage


def test_a_revoked_key_stops_the_client_with_an_invalid_credentials_error(
    team: Account, errors: Errors
) -> None:
    status, key = team.post("/v1/api-keys", {"name": "neptune"})
    assert status == 201, key
    token = neptune_token(team.url, key["secret"])
    status, answer = http(
        "{}/v1/api-keys/{}".format(team.url, key["id"]), "DELETE", key=team.api_key
    )
    assert status in (200, 204), answer

    run = Run(
        run_id="after-revocation",
        api_token=token,
        on_error_callback=errors,
        on_warning_callback=errors,
        enable_console_log_capture=False,
    )
    run.log_metrics({"loss": 1.0}, step=0)
    names = errors.wait_for(lambda seen: "NeptuneInvalidCredentialsError" in seen, timeout=60)
    run.terminate()
    assert "NeptuneInvalidCredentialsError" in names, names
    runs = team.get("/v1/projects/{}/runs".format(PROJECT)) if _project_exists(team) else {"runs": []}
    assert runs["runs"] == []


def _project_exists(account: Account) -> bool:
    status, _ = http(
        "{}/v1/projects/{}".format(account.url, urllib.parse.quote(PROJECT)), key=account.api_key
    )
    return status == 200


def test_the_client_refreshes_its_short_lived_tokens_and_keeps_logging(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, errors: Errors
) -> None:
    # The client renews a token 30 s before it expires, so a 32-second token is
    # renewed every 2 s: a run of some seconds refreshes several times.
    monkeypatch.setenv("SEXTANT_ACCESS_TOKEN_TTL_SECS", "32")
    server = Server(tmp_path / "data").start()
    try:
        account = Account(server)
        monkeypatch.setenv("NEPTUNE_API_TOKEN", neptune_token(server.url, account.api_key))
        monkeypatch.setenv("NEPTUNE_PROJECT", "acme-at-neptune/" + PROJECT)
        monkeypatch.chdir(tmp_path)
        run = Run(run_id="short-tokens", on_error_callback=errors, on_warning_callback=errors)
        offset = server.log_path.stat().st_size

        def refreshes() -> int:
            # Refreshes that worked: a refused one sends the client back to its key.
            log = server.log_path.read_bytes()[offset:]
            return log.count(b'status=200 method=POST route="/api/backend/v1/authorization/token"')

        steps = 0
        deadline = time.monotonic() + 60
        while refreshes() < 3:
            assert time.monotonic() < deadline, "the client never refreshed its token"
            run.log_metrics({"loss": loss(steps)}, step=steps)
            steps += 1
            time.sleep(0.05)
        assert run.wait_for_processing(timeout=60) is True
        run.close()
        assert errors.names() == []
        record = only_run(account)
        assert series(account, record["id"], "loss")["values"] == [loss(s) for s in range(steps)]
    finally:
        server.stop()
