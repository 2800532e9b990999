"""Nothing is lost and nothing is duplicated: the server killed and restarted in the
middle of a run, answers lost on the way back, a crashed training process whose
spool `python -m sextant sync` (or the next init) sends, and offline runs."""

import math
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Iterator, List

import pytest

import sextant
from conftest import Account, Proxy, Server, sdk_env, wait_for
from test_roundtrip import bits, png, quiet


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[Server]:
    """A server of this test's own, which it may kill."""
    server = Server(tmp_path / "data").start()
    yield server
    server.kill()


def check_exactly_once(account: Account, run_id: str, steps: int, names: List[str]) -> None:
    for name in names:
        series = account.series(run_id, name)
        assert series["steps"] == list(range(steps)), name
        assert [bits(v) for v in series["values"]] == [bits(value_at(name, s)) for s in range(steps)]


def value_at(name: str, step: int) -> float:
    if name == "loss":
        return 1.0 / (step + 1)
    if name == "acc":
        return math.nan if step % 97 == 0 else step / 3
    return float(step)


def test_server_killed_mid_run_every_point_arrives_exactly_once(
    own_server: Server, spool_dir: Path
) -> None:
    account = Account(own_server)
    proxy = Proxy(own_server.port)
    steps = 3000
    try:
        run = sextant.init(
            project=account.project, url=proxy.url, api_key=account.api_key,
            flush_interval=0.05, flush_points=200, **quiet(),
        )
        run._sender.backoff.maximum = 0.5  # retry often: the outage is short
        for step in range(steps):
            run.log({name: value_at(name, step) for name in ("loss", "acc", "step")}, step=step)
            if step % 100 == 0:
                run.log_text("log", "step {}".format(step), step=step)
            if step == 1000:
                wait_for(lambda: run._sender.spooled_batches > 3 and not run._sender.queue, 10,
                         what="some batches acknowledged before the kill")
                own_server.kill()  # SIGKILL, whatever it was doing
                proxy.target = None
                proxy.cut()
            if step == 2000:
                assert run._sender.queue, "batches wait in the spool while the server is down"
                assert list((run.spool_dir / "batches").iterdir())
                own_server.start()  # the same data directory, a new port
                proxy.target = own_server.port
            time.sleep(0.0005)
        assert run.finish(timeout=60)
        assert run._sender.failures > 0, "sending failed while the server was down"
        check_exactly_once(account, run.id, steps, ["loss", "acc", "step"])
        text = account.series(run.id, "log")
        assert text["texts"] == ["step {}".format(s) for s in range(0, steps, 100)]
        assert account.run(run.id)["status"] == "succeeded"
    finally:
        proxy.close()


def test_lost_answers_are_retried_without_duplicates(account: Account, spool_dir: Path) -> None:
    proxy = Proxy(account.server.port)
    try:
        run = sextant.init(
            project=account.project, url=proxy.url, api_key=account.api_key,
            flush_interval=0.05, **quiet(),
        )
        run._sender.backoff.initial = 0.05
        # The sender's first connection: the server stores the batch, the answer is lost.
        proxy.swallow_responses = 1
        for step in range(500):
            run.log({"loss": value_at("loss", step)}, step=step)
        wait_for(lambda: proxy.swallow_responses == 0, 5, what="a swallowed answer")
        for step in range(500, 1000):
            run.log({"loss": value_at("loss", step)}, step=step)
        assert run.finish(timeout=30)
        assert run._sender.failures >= 1, "the batch whose answer was lost was sent again"
        check_exactly_once(account, run.id, 1000, ["loss"])
    finally:
        proxy.close()


CRASHING_CHILD = textwrap.dedent(
    """
    import os, signal, sys, time, sextant
    run = sextant.init(name=sys.argv[1], flush_interval=0.05, system_metrics=False,
                       git=False, capture_output=False)
    print(run.id, flush=True)
    sys.stdin.readline()  # the parent takes the server away
    for step in range(int(sys.argv[2])):
        run.log({"loss": 1.0 / (step + 1), "step": float(step)}, step=step)
    run.log_text("log", "crashing now", step=0)
    time.sleep(0.5)  # spooled, not sent
    os.kill(os.getpid(), signal.SIGKILL)
    """
)


def crash_a_run(account: Account, proxy: Proxy, spool: Path, name: str, steps: int) -> str:
    """A training process that logs while the server is unreachable, then dies."""
    child = subprocess.Popen(
        [sys.executable, "-c", CRASHING_CHILD, name, str(steps)],
        env=sdk_env(account, spool, proxy.url),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None and child.stdin is not None
    run_id = child.stdout.readline().strip()
    assert run_id.startswith("run_"), run_id
    proxy.target = None
    proxy.cut()
    child.stdin.write("go\n")
    child.stdin.flush()
    assert child.wait(30) == -signal.SIGKILL
    proxy.target = account.server.port
    return run_id


def test_a_crashed_process_leaves_its_points_for_sync(account: Account, spool_dir: Path) -> None:
    proxy = Proxy(account.server.port)
    try:
        first = crash_a_run(account, proxy, spool_dir, "crash-1", 700)
        second = crash_a_run(account, proxy, spool_dir, "crash-2", 300)
        assert len(list(spool_dir.iterdir())) == 2
        assert "loss" not in account.run(first)["series"]

        # `python -m sextant sync RUN` sends one of them (the server's URL changed: --url).
        done = subprocess.run(
            [sys.executable, "-m", "sextant", "sync", first, "--url", account.url],
            env=sdk_env(account, spool_dir),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        assert "synced" in done.stdout and first in done.stdout
        check_exactly_once(account, first, 700, ["loss", "step"])
        assert account.series(first, "log")["texts"] == ["crashing now"]
        assert account.run(first)["status"] == "running"  # nobody ended it: it will read lost

        # The next init of the same server sends the other one in the background.
        with sextant.init(
            project=account.project, url=proxy.url, api_key=account.api_key, **quiet()
        ) as run:
            run.log({"x": 1.0})
            wait_for(lambda: len(list(spool_dir.iterdir())) == 1, 30, what="the leftover synced")
        check_exactly_once(account, second, 300, ["loss", "step"])
        assert not list(spool_dir.iterdir())
    finally:
        proxy.close()


def test_offline_run_then_sync_uploads_everything(
    account: Account, spool_dir: Path, tmp_path: Path
) -> None:
    weights = tmp_path / "weights.bin"
    weights.write_bytes(os.urandom(50_000))
    with sextant.init(
        project=account.project, name="offline-run", tags=["offline"], params={"lr": 0.5},
        mode="offline", capture_output=True, system_metrics=False, git=True, code=True,
    ) as run:
        assert run.id is None
        for step in range(2500):
            run.log({"loss": value_at("loss", step), "acc": value_at("acc", step)}, step=step)
        run.log_text("notes", "logged without a network")
        print("offline stdout")
        run.log_image("samples", png(), step=7)
        run.upload(weights, name="model/weights.bin", kind="model")
    assert account.runs() == [], "offline logs nothing to the server"
    (spool,) = list(spool_dir.iterdir())
    assert spool.name.startswith("offline-")

    status = subprocess.run(
        [sys.executable, "-m", "sextant", "status"], env=sdk_env(account, spool_dir),
        capture_output=True, text=True, timeout=60,
    )
    assert "offline" in status.stdout and "end=succeeded" in status.stdout

    done = subprocess.run(
        [sys.executable, "-m", "sextant", "sync"],
        env=sdk_env(account, spool_dir),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    (record,) = account.runs()
    assert record["name"] == "offline-run" and record["status"] == "succeeded"
    assert record["tags"] == ["offline"] and record["params"] == {"lr": 0.5}
    assert len(record["git"]["commit"]) == 40
    check_exactly_once(account, record["id"], 2500, ["loss", "acc"])
    assert account.series(record["id"], "notes")["texts"] == ["logged without a network"]
    assert account.series(record["id"], "stdout")["texts"] == ["offline stdout"]
    images = account.get("/v1/runs/{}/images/samples".format(record["id"]))["images"]
    assert [i["step"] for i in images] == [7]
    paths = sorted(a["path"] for a in account.get("/v1/runs/{}/artifacts".format(record["id"]))["artifacts"])
    assert paths == ["code/source.tar.gz", "model/weights.bin"]
    assert not list(spool_dir.iterdir()), "a synced run leaves nothing behind"

    again = subprocess.run(
        [sys.executable, "-m", "sextant", "sync"], env=sdk_env(account, spool_dir),
        capture_output=True, text=True, timeout=60,
    )
    assert again.returncode == 0 and "nothing to sync" in again.stdout
    assert len(account.runs()) == 1
