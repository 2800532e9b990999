"""Fixtures: a real `sextant serve` on a temporary data directory and a free loopback
port, a fresh team (API key) and project per test, a raw HTTP helper independent of
the SDK, and a loopback TCP proxy that keeps one port while the server behind it is
killed and restarted."""

import json
import os
import re
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple

import pytest

REPO_ROOT = Path(__file__).resolve().parents[3]
PASSWORD = "correct horse battery staple"


def sextant_bin() -> Path:
    configured = Path(os.environ.get("SEXTANT_BIN", "target/debug/sextant"))
    path = configured if configured.is_absolute() else REPO_ROOT / configured
    if not path.exists():
        pytest.exit(
            "no sextant binary at {} (build it with `cargo build -p sextant-cli` or set "
            "SEXTANT_BIN)".format(path),
            returncode=2,
        )
    return path


class Server:
    """A `sextant serve` process; `kill()` and `start()` again on the same data dir."""

    def __init__(
        self, data_dir: Path, heartbeat_timeout: int = 600, env: Optional[Dict[str, str]] = None
    ) -> None:
        self.data_dir = data_dir
        self.heartbeat_timeout = heartbeat_timeout
        # More environment for the server: a store of its own (`--store aws`).
        self.env = env or {}
        self.process: Optional[subprocess.Popen] = None
        self.url = ""
        self.port = 0
        self.log_path = data_dir.parent / (data_dir.name + ".log")

    def start(self, timeout: float = 30.0) -> "Server":
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            [
                str(sextant_bin()),
                "serve",
                "--addr",
                "127.0.0.1:0",
                "--data-dir",
                str(self.data_dir),
                "--heartbeat-timeout-secs",
                str(self.heartbeat_timeout),
            ],
            stdout=log,
            stderr=log,
            env=dict(os.environ, NO_COLOR="1", RUST_LOG="info", **self.env),
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.log_path.read_bytes()[offset:].decode("utf-8", "replace")
            matches = re.findall(r"url=http://127\.0\.0\.1:(\d+)", text)
            if matches and self.process.poll() is None:
                port = int(matches[-1])
                if self._healthy(port):
                    self.port = port
                    self.url = "http://127.0.0.1:{}".format(port)
                    return self
            if self.process.poll() is not None:
                raise RuntimeError("sextant serve exited:\n" + text[-2000:])
            time.sleep(0.05)
        self.kill()
        raise RuntimeError("sextant serve did not start in time")

    @staticmethod
    def _healthy(port: int) -> bool:
        try:
            with urllib.request.urlopen("http://127.0.0.1:{}/healthz".format(port), timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    def kill(self) -> None:
        """SIGKILL: no graceful shutdown."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)
        self.process = None

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self.process = None


def http(
    url: str,
    method: str = "GET",
    body: Any = None,
    key: Optional[str] = None,
    raw: Optional[bytes] = None,
    content_type: str = "application/json",
) -> Tuple[int, Any]:
    """A request with urllib (not the SDK); answers (status, JSON or bytes)."""
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    request = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        request.add_header("Content-Type", content_type)
    if key:
        request.add_header("Authorization", "Bearer " + key)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            payload = response.read()
            status = response.status
    except urllib.error.HTTPError as error:
        payload = error.read()
        status = error.code
    try:
        return status, json.loads(payload) if payload else None
    except ValueError:
        return status, payload


class Account:
    """A team with an API key and a project on a server."""

    def __init__(self, server: Server, project: str = "whales") -> None:
        self.server = server
        email = "t-{}@example.com".format(uuid.uuid4().hex[:10])
        status, answer = http(
            server.url + "/v1/signup",
            "POST",
            {"team": "Team " + email, "email": email, "password": PASSWORD},
        )
        assert status == 201, answer
        self.api_key = answer["api_key"]
        self.project = project
        status, answer = http(server.url + "/v1/projects", "POST", {"name": project}, self.api_key)
        assert status == 201, answer

    @property
    def url(self) -> str:
        return self.server.url

    def through(self, server: Server) -> "Account":
        """The same team and key, read through another server (a replica)."""
        other = object.__new__(Account)
        other.server, other.api_key, other.project = server, self.api_key, self.project
        return other

    def get(self, path: str, query: Optional[Dict[str, Any]] = None) -> Any:
        """Reads as a patient client does: a 429 (a test that lowered the rate limit
        and spent the key's burst) is waited out, for at most ten seconds."""
        url = self.server.url + path
        if query:
            url += "?" + urllib.parse.urlencode(query)
        for _ in range(10):
            status, answer = http(url, key=self.api_key)
            if status != 429:
                break
            time.sleep(1)
        assert status == 200, (path, status, answer)
        return answer

    def post(self, path: str, body: Any = None) -> Tuple[int, Any]:
        return http(self.server.url + path, "POST", body if body is not None else {}, self.api_key)

    def runs(self) -> List[Dict[str, Any]]:
        return self.get("/v1/projects/{}/runs".format(self.project), {"limit": 500})["runs"]

    def run(self, run_id: str) -> Dict[str, Any]:
        return self.get("/v1/runs/" + run_id)

    def series(self, run_id: str, name: str) -> Dict[str, Any]:
        """Every point of a series, exact (following pages)."""
        out: Dict[str, Any] = {"steps": [], "timestamps": []}
        query: Dict[str, Any] = {}
        while True:
            page = self.get(
                "/v1/runs/{}/series/{}".format(run_id, urllib.parse.quote(name, safe="/")), query
            )
            out["steps"] += page["steps"]
            out["timestamps"] += page["timestamps"]
            key = "texts" if "texts" in page else "values"
            out.setdefault(key, []).extend(page[key])
            if page.get("next_after") is None:
                return out
            query["after"] = page["next_after"]


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One server for the tests that do not kill it."""
    instance = Server(tmp_path_factory.mktemp("server") / "data").start()
    yield instance
    instance.stop()


@pytest.fixture
def account(server: Server) -> Account:
    return Account(server)


@pytest.fixture
def spool_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "spool"
    monkeypatch.setenv("SEXTANT_SPOOL_DIR", str(path))
    return path


@pytest.fixture(autouse=True)
def _no_ambient_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "SEXTANT_URL",
        "SEXTANT_API_KEY",
        "SEXTANT_PROJECT",
        "SEXTANT_MODE",
        "SEXTANT_RUN_ID",
        "SEXTANT_PARAMS",
    ):
        monkeypatch.delenv(name, raising=False)


def sdk_env(account: Account, spool: Path, url: Optional[str] = None) -> Dict[str, str]:
    """The environment a subprocess using the SDK needs."""
    env = dict(os.environ)
    env.update(
        SEXTANT_URL=url or account.url,
        SEXTANT_API_KEY=account.api_key,
        SEXTANT_PROJECT=account.project,
        SEXTANT_SPOOL_DIR=str(spool),
        PYTHONUNBUFFERED="1",
    )
    return env


class Proxy:
    """A loopback TCP relay on a fixed port to a server port that may change. With
    no target, connections are accepted and closed at once (the server is "down").
    `swallow_responses = n` makes the next n connections relay their request but
    close without relaying the response (the answer is lost after the server acted).
    """

    def __init__(self, target: Optional[int]) -> None:
        self.target = target
        self.swallow_responses = 0
        self.connections = 0
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self.port = self._listener.getsockname()[1]
        self.url = "http://127.0.0.1:{}".format(self.port)
        self._closed = False
        self._sockets: List[socket.socket] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            self.connections += 1
            target = self.target
            if target is None:
                client.close()
                continue
            try:
                upstream = socket.create_connection(("127.0.0.1", target), timeout=5)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            swallow = False
            with self._lock:
                if self.swallow_responses > 0:
                    self.swallow_responses -= 1
                    swallow = True
                self._sockets += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream, False), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, swallow), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket, swallow: bool) -> None:
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                if swallow:
                    break  # the server answered: drop the answer and the connection
                sink.sendall(data)
        except OSError:
            pass
        for sock in (source, sink):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()

    def cut(self) -> None:
        """Closes every relayed connection now."""
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()

    def close(self) -> None:
        self._closed = True
        self._listener.close()
        self.cut()


def wait_for(predicate: Any, timeout: float, interval: float = 0.1, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for " + what)
        time.sleep(interval)
