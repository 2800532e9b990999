"""Fixtures for the Neptune compatibility tests: the SDK tests' `sextant serve` and team
fixtures (one definition, loaded from there), a `NEPTUNE_API_TOKEN` made by
`sextant neptune-token`, and a collector for the errors the client reports."""

import importlib.util
import os
import subprocess
import threading
import time
from pathlib import Path
from typing import Callable, Iterator, List, Optional

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
sextant_bin = fixtures.sextant_bin


def neptune_token(url: str, api_key: str) -> str:
    """What a team pastes into NEPTUNE_API_TOKEN: `sextant neptune-token`'s output."""
    env = dict(os.environ, SEXTANT_URL=url, SEXTANT_API_KEY=api_key)
    return subprocess.run(
        [str(sextant_bin()), "neptune-token"], env=env, check=True, capture_output=True, text=True
    ).stdout.strip()


class Errors:
    """What the client hands its error and warning callbacks."""

    def __init__(self) -> None:
        self.seen: List[BaseException] = []
        self._lock = threading.Lock()

    def __call__(self, error: BaseException, _last_seen: Optional[float] = None) -> None:
        with self._lock:
            self.seen.append(error)

    def names(self) -> List[str]:
        with self._lock:
            return [type(error).__name__ for error in self.seen]

    def wait_for(self, predicate: Callable[[List[str]], bool], timeout: float = 60) -> List[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate(self.names()):
                break
            time.sleep(0.2)
        return self.names()


@pytest.fixture
def team(server: Server, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Account]:
    """A fresh team whose API key, wrapped by `sextant neptune-token`, is the client's
    NEPTUNE_API_TOKEN; NEPTUNE_PROJECT keeps the workspace it had at Neptune."""
    account = Account(server)
    monkeypatch.setenv("NEPTUNE_API_TOKEN", neptune_token(server.url, account.api_key))
    monkeypatch.setenv("NEPTUNE_PROJECT", "acme-at-neptune/migrated")
    # The client keeps its operation log under the working directory.
    monkeypatch.chdir(tmp_path)
    yield account


@pytest.fixture
def errors() -> Errors:
    return Errors()
