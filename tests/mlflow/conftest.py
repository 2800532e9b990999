"""Fixtures for the MLflow compatibility tests: the SDK tests' `sextant serve` and team
fixtures (one definition, loaded from there), and the stock MLflow client pointed at
the server with a team's API key."""

import importlib.util
from pathlib import Path
from typing import Iterator

import mlflow
import pytest

_spec = importlib.util.spec_from_file_location(
    "sextant_server_fixtures",
    Path(__file__).resolve().parents[2] / "sdk" / "python" / "tests" / "conftest.py",
)
assert _spec is not None and _spec.loader is not None
fixtures = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fixtures)

Account = fixtures.Account
Server = fixtures.Server
http = fixtures.http
server = fixtures.server


@pytest.fixture
def team(server: Server, monkeypatch: pytest.MonkeyPatch) -> Iterator[Account]:
    """A fresh team whose API key the MLflow client sends as MLFLOW_TRACKING_TOKEN."""
    account = Account(server)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", server.url)
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", account.api_key)
    # A refusal is an answer: no retries with backoff in tests.
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.delenv("MLFLOW_EXPERIMENT_NAME", raising=False)
    monkeypatch.delenv("MLFLOW_EXPERIMENT_ID", raising=False)
    mlflow.set_tracking_uri(server.url)
    # The fluent API remembers the experiment last set, which belonged to another team.
    monkeypatch.setattr(mlflow.tracking.fluent, "_active_experiment_id", None)
    yield account
    while mlflow.active_run() is not None:
        mlflow.end_run()
