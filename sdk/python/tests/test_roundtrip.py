"""A run logged through the SDK reads back exactly over the HTTP API."""

import hashlib
import math
import struct
import sys
import time
import zlib
from pathlib import Path
from typing import Any, List

import pytest

import sextant
from conftest import Account, Server, http, wait_for


def png(width: int = 2, height: int = 2) -> bytes:
    """A tiny valid PNG."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    raw = b"".join(b"\x00" + b"\xff\x00\x00" * width for _ in range(height))
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


def bits(value: Any) -> bytes:
    """A value as the API answers it, to its exact float bits."""
    number = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}.get(value, value)
    return struct.pack("<d", float(number))


def quiet(**extra: Any) -> dict:
    options = dict(system_metrics=False, git=False, code=False, capture_output=False)
    options.update(extra)
    return options


SPECIAL: List[float] = [
    0.0,
    -0.0,
    1.5,
    -2.25,
    math.pi,
    1e-300,
    5e-324,
    1.7976931348623157e308,
    math.nan,
    math.inf,
    -math.inf,
    0.1 + 0.2,
    123456789.0,
]


def test_logged_run_reads_back_exactly(account: Account, spool_dir: Path, tmp_path: Path) -> None:
    checkpoint = tmp_path / "model.bin"
    checkpoint.write_bytes(bytes(range(256)) * 100)
    image = png()
    started = time.time()
    with sextant.init(
        project=account.project,
        name="exact",
        tags=["benchmark", "exact"],
        params={"lr": 3e-4, "model": {"depth": 12, "act": "gelu"}, "amp": True},
        description="read back bit for bit",
        url=account.url,
        api_key=account.api_key,
        **quiet(capture_output=True),
    ) as run:
        for step, value in enumerate(SPECIAL):
            run.log({"train/loss": value, "train/acc": step / 10, "odd name: x.y-z": -step}, step=step)
        run.log({"train/loss": 42.0}, step=3)  # a repeated step keeps both values
        run.log({"ints": 7, "bools": True}, step=100.0)  # an integral float step is fine
        with pytest.raises(TypeError):
            run.log({"ints": 8}, step=1.5)
        run.log_text("notes", 'héllo ✓ "quoted"\ttab', step=5)
        run.log_text("notes", "x" * (70 * 1024), step=6)  # over 64 KiB: split in two lines
        print("a printed line")
        print("no newline yet", end="")
        run.log_image("samples", image, step=2)
        stored = run.upload(checkpoint, name="checkpoints/model.bin", kind="checkpoint", step=12, wait=True)
        assert stored == "checkpoints/model.bin"
        run_id = run.id
    assert run.finished
    assert not any(spool_dir.iterdir()), "a fully sent run leaves nothing in the spool"

    record = account.run(run_id)
    assert record["status"] == "succeeded"
    assert record["name"] == "exact"
    assert record["description"] == "read back bit for bit"
    assert sorted(record["tags"]) == ["benchmark", "exact"]
    assert record["params"] == {"lr": 3e-4, "model/depth": 12, "model/act": "gelu", "amp": True}

    loss = account.series(run_id, "train/loss")
    expected_steps = list(range(len(SPECIAL)))
    expected_steps.insert(4, 3)
    assert loss["steps"] == expected_steps
    got = [bits(v) for v in loss["values"]]
    want = [bits(v) for v in SPECIAL]
    assert got[:3] == want[:3] and got[5:] == want[4:]
    assert sorted(got[3:5]) == sorted([want[3], bits(42.0)])
    for timestamp in loss["timestamps"]:
        assert started - 1 <= timestamp <= time.time() + 1

    acc = account.series(run_id, "train/acc")
    assert [bits(v) for v in acc["values"]] == [bits(s / 10) for s in range(len(SPECIAL))]
    odd = account.series(run_id, "odd name: x.y-z")
    assert [bits(v) for v in odd["values"]] == [bits(-s) for s in range(len(SPECIAL))]
    assert account.series(run_id, "ints")["values"] == [7.0]
    assert account.series(run_id, "bools")["values"] == [1.0]

    notes = account.series(run_id, "notes")
    assert notes["steps"] == [5, 6, 6]
    assert notes["texts"][0] == 'héllo ✓ "quoted"\ttab'
    assert "".join(notes["texts"][1:]) == "x" * (70 * 1024)
    stdout = account.series(run_id, "stdout")
    assert stdout["texts"] == ["a printed line", "no newline yet"]
    assert stdout["steps"] == [0, 1]

    images = account.get("/v1/runs/{}/images/samples".format(run_id))["images"]
    assert [(i["step"], i["size"], i["content_type"]) for i in images] == [(2, len(image), "image/png")]
    artifacts = account.get("/v1/runs/{}/artifacts".format(run_id))["artifacts"]
    (artifact,) = artifacts
    assert artifact["path"] == "checkpoints/model.bin"
    assert artifact["kind"] == "checkpoint" and artifact["step"] == 12
    assert artifact["sha256"] == hashlib.sha256(checkpoint.read_bytes()).hexdigest()


def test_stdout_is_still_printed(account: Account, spool_dir: Path, capsys: pytest.CaptureFixture) -> None:
    with sextant.init(
        project=account.project, url=account.url, api_key=account.api_key, **quiet(capture_output=True)
    ) as run:
        print("progress\r50%\r100%")
        print("to stderr", file=sys.stderr)
    captured = capsys.readouterr()
    assert "to stderr" in captured.err and "100%" in captured.out
    assert account.series(run.id, "stdout")["texts"] == ["100%"]
    assert account.series(run.id, "stderr")["texts"] == ["to stderr"]


def test_exception_fails_the_run_and_ctrl_c_aborts_it(account: Account, spool_dir: Path) -> None:
    options = dict(project=account.project, url=account.url, api_key=account.api_key, **quiet())
    with pytest.raises(ZeroDivisionError):
        with sextant.init(name="boom", **options) as run:
            run.log({"x": 1.0})
            1 / 0
    assert account.run(run.id)["status"] == "failed"
    with pytest.raises(KeyboardInterrupt):
        with sextant.init(name="ctrl-c", **options) as run:
            raise KeyboardInterrupt
    assert account.run(run.id)["status"] == "aborted"
    manual = sextant.init(name="manual", **options)
    manual.log({"x": 2.0})
    assert manual.finish()
    assert manual.finish()  # again: nothing more
    manual.log({"x": 3.0})  # after the end: ignored with a warning
    assert account.run(manual.id)["status"] == "succeeded"
    assert account.series(manual.id, "x")["values"] == [2.0]


def test_resume_continues_a_run(account: Account, spool_dir: Path) -> None:
    status, created = account.post(
        "/v1/projects/{}/runs".format(account.project), {"name": "resumable", "params": {"a": 1}}
    )
    assert status == 201
    run_id = created["id"]
    status, _ = account.post(
        "/v1/runs/{}/log".format(run_id),
        {"batch_id": "first", "series": {"loss": {"steps": [0, 1, 2], "values": [3.0, 2.0, 1.0]}}},
    )
    assert status == 200
    with sextant.init(
        run_id=run_id, params={"b": 2}, tags=["resumed"], url=account.url, api_key=account.api_key, **quiet()
    ) as run:
        assert run.id == run_id
        run.log({"loss": 0.5})  # no step: continues after the last one
        run.log({"loss": 0.25})
    record = account.run(run_id)
    assert record["status"] == "succeeded"
    assert record["params"] == {"a": 1, "b": 2}
    assert record["tags"] == ["resumed"]
    loss = account.series(run_id, "loss")
    assert loss["steps"] == [0, 1, 2, 3, 4]
    assert loss["values"] == [3.0, 2.0, 1.0, 0.5, 0.25]
    with pytest.raises(sextant.SextantError, match="has ended"):
        sextant.init(run_id=run_id, url=account.url, api_key=account.api_key, **quiet())


def test_credentials_errors_are_clear(account: Account, spool_dir: Path) -> None:
    with pytest.raises(sextant.ConfigError, match="SEXTANT_API_KEY.*SEXTANT_URL"):
        sextant.init(project="p", **quiet())
    with pytest.raises(sextant.AuthError, match="refused the API key"):
        sextant.init(project="p", url=account.url, api_key="sxt_key_nope_nope", **quiet())
    port = Server._healthy  # any closed port will do: bind one and close it
    import socket

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    closed = sock.getsockname()[1]
    sock.close()
    del port
    started = time.monotonic()
    with pytest.raises(sextant.SextantError, match="cannot reach"):
        sextant.init(
            project="p",
            url="http://127.0.0.1:{}".format(closed),
            api_key=account.api_key,
            init_timeout=1.0,
            **quiet(),
        )
    assert time.monotonic() - started < 10


def test_missing_project_is_created_and_git_recorded(account: Account, spool_dir: Path) -> None:
    with sextant.init(
        project="fresh-project", url=account.url, api_key=account.api_key,
        system_metrics=False, capture_output=False, git=True, code=True,
    ) as run:
        run.log({"x": 1.0})
    record = account.run(run.id)
    assert record["status"] == "succeeded"
    # The tests live in a git repository: its state and a snapshot are on the run.
    assert len(record["git"]["commit"]) == 40
    artifacts = account.get("/v1/runs/{}/artifacts".format(run.id))["artifacts"]
    assert [a["path"] for a in artifacts if a["kind"] == "code"] == ["code/source.tar.gz"]


def test_heartbeats_and_system_metrics(tmp_path: Path, spool_dir: Path) -> None:
    server = Server(tmp_path / "hb", heartbeat_timeout=2).start()
    try:
        account = Account(server)
        run = sextant.init(
            project=account.project, url=account.url, api_key=account.api_key,
            heartbeat_interval=0.3, system_interval=0.2,
            **quiet(system_metrics=True),
        )
        run.log({"x": 1.0})
        time.sleep(3.0)  # longer than the server's heartbeat timeout
        assert account.run(run.id)["status"] == "running"
        run.finish()
        record = account.run(run.id)
        assert record["status"] == "succeeded"
        system = [name for name in record["series"] if name.startswith("system/")]
        assert "system/cpu_percent" in system and "system/memory_percent" in system
        assert record["series"]["system/cpu_percent"]["count"] >= 5

        # Without heartbeats a run reads as lost.
        status, silent = account.post("/v1/projects/{}/runs".format(account.project), {})
        wait_for(lambda: account.run(silent["id"])["status"] == "lost", 6, what="lost")
    finally:
        server.stop()


def test_abort_callback(account: Account, spool_dir: Path) -> None:
    calls = []
    run = sextant.init(
        project=account.project, url=account.url, api_key=account.api_key,
        on_abort=calls.append, flush_interval=0.1, **quiet(),
    )
    run.log({"x": 1.0})
    status, _ = http(account.url + "/v1/runs/{}/abort".format(run.id), "POST", {}, account.api_key)
    assert status == 200
    for step in range(100):
        run.log({"x": float(step)}, step=step)
        if calls:
            break
        time.sleep(0.05)
    wait_for(lambda: calls, 5, what="the abort callback")
    assert calls == [run] and run.abort_requested
    run.finish()  # the default status after an abort request
    assert account.run(run.id)["status"] == "aborted"


def test_large_artifacts_go_multipart(account: Account, spool_dir: Path, tmp_path: Path) -> None:
    big = tmp_path / "big.bin"
    block = bytes(random_block())
    with open(big, "wb") as file:
        for _ in range(65):  # 65 MiB: above the single-upload limit
            file.write(block)
    started = time.monotonic()
    with sextant.init(
        project=account.project, url=account.url, api_key=account.api_key, **quiet()
    ) as run:
        run.upload(big, name="checkpoints/big.bin", kind="checkpoint", step=3, copy=False, wait=True)
    (artifact,) = account.get("/v1/runs/{}/artifacts".format(run.id))["artifacts"]
    assert artifact["size"] == 65 * 2**20
    digest = hashlib.sha256()
    with open(big, "rb") as file:
        for chunk in iter(lambda: file.read(1 << 20), b""):
            digest.update(chunk)
    assert artifact["sha256"] == digest.hexdigest()
    assert time.monotonic() - started < 60


def random_block() -> bytes:
    import os

    return os.urandom(2**20)


EXITING_CHILD = """
import sys, sextant
run = sextant.init(name=sys.argv[1], system_metrics=False, git=False, capture_output=False)
print(run.id, flush=True)
for step in range(1000):
    run.log({"x": float(step)}, step=step)
if sys.argv[1] == "raises":
    raise RuntimeError("training broke")
"""


@pytest.mark.parametrize("how,status", [("exits", "succeeded"), ("raises", "failed")])
def test_interpreter_exit_finishes_the_run(
    account: Account, spool_dir: Path, how: str, status: str
) -> None:
    import subprocess

    from conftest import sdk_env

    done = subprocess.run(
        [sys.executable, "-c", EXITING_CHILD, how],
        env=sdk_env(account, spool_dir),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == (0 if how == "exits" else 1), done.stderr
    run_id = done.stdout.split()[0]
    record = account.run(run_id)
    assert record["status"] == status
    assert record["series"]["x"]["count"] == 1000
    assert not list(spool_dir.iterdir())
