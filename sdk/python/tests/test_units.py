"""Unit tests of the spool, the retry policy, batch building and the sender, against a
scripted fake server (no `sextant serve` needed)."""

import http.server
import json
import math
import random
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

import pytest

from sextant._console import Tee
from sextant._http import (
    ApiError,
    AuthError,
    Backoff,
    Client,
    TransientError,
    call_with_retries,
    is_retryable,
    parse_retry_after,
)
from sextant._sender import BatchBuilder, Sender, split_text, valid_series_name
from sextant._spool import RunSpool, list_spools
from sextant._uploader import Uploader

# The spool ---------------------------------------------------------------------


def test_spool_keeps_batches_in_order_until_acknowledged(tmp_path: Path) -> None:
    spool = RunSpool.create(tmp_path, "run_x.s1", {"run_id": "run_x", "url": "http://h"})
    first = spool.write_batch("b-1", b'{"a":1}')
    second = spool.write_batch("b-2", b'{"a":2}')
    assert spool.batches() == [first, second]
    assert first.read_bytes() == b'{"a":1}'
    assert not [p for p in spool.batch_dir.iterdir() if p.name.startswith(".tmp")]

    spool.ack(first)
    spool.ack(first)  # twice is harmless
    assert spool.batches() == [second]
    spool.reject(second, "invalid_series_name (400): nope")
    assert spool.batches() == []
    assert (spool.rejected_dir / second.name).read_bytes() == b'{"a":2}'
    assert "invalid_series_name" in (spool.rejected_dir / (second.name + ".reason.txt")).read_text()

    # Reopened (another process), it continues the numbering and keeps the metadata.
    again = RunSpool(spool.path)
    assert again.meta["run_id"] == "run_x"
    third = again.write_batch("b-3", b"{}")
    assert third.name > second.name


def test_spool_ops_keep_their_bytes_until_done(tmp_path: Path) -> None:
    spool = RunSpool.create(tmp_path, "k", {})
    source = tmp_path / "file.bin"
    source.write_bytes(b"x" * 1000)
    op = spool.add_op("artifact", {"path": "a/b"}, copy_from=source)
    payload = spool.read_op(op)
    assert spool.op_file(payload).read_bytes() == b"x" * 1000
    image = spool.add_op("image", {"series": "s"}, data=b"png", suffix=".png")
    assert spool.ops() == [op, image]
    spool.ack(op)
    assert not spool.op_file(payload).exists()
    assert spool.ops() == [image]


def test_spool_lock_is_exclusive_and_finish_is_recorded(tmp_path: Path) -> None:
    spool = RunSpool.create(tmp_path, "k", {"run_id": "r"})
    other = RunSpool(spool.path)
    assert spool.try_lock()
    assert not other.try_lock(), "a second holder is refused while the first lives"
    spool.unlock()
    assert other.try_lock()
    other.unlock()

    assert spool.finish_status() is None and spool.is_drained()
    spool.set_finish("succeeded")
    assert RunSpool(spool.path).finish_status() == "succeeded"
    assert not spool.is_drained()
    spool.clear_finish()
    assert [s.key for s in list_spools(tmp_path)] == ["k"]
    spool.remove()
    assert list_spools(tmp_path) == []


# Retry policy ------------------------------------------------------------------


def test_backoff_grows_caps_and_honours_retry_after() -> None:
    backoff = Backoff(initial=0.5, maximum=4.0, jitter=0.0)
    assert [backoff.next_delay() for _ in range(6)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    assert backoff.next_delay(retry_after=30.0) == 30.0
    backoff.reset()
    assert backoff.next_delay() == 0.5
    jittery = Backoff(initial=1.0, maximum=1.0, jitter=0.2, rng=random.Random(1))
    delays = [jittery.next_delay() for _ in range(50)]
    assert all(1.0 <= d <= 1.2 for d in delays) and len(set(delays)) > 1


def test_retry_after_parsing() -> None:
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after(" 0.5 ") == 0.5
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # in the past


def test_what_is_retried() -> None:
    assert is_retryable(TransientError("reset"))
    assert is_retryable(ApiError(503, "unavailable", "", 2.0))
    assert is_retryable(ApiError(429, "throttled", ""))
    assert is_retryable(ApiError(500, "internal", ""))
    assert is_retryable(ApiError(409, "concurrent_update", ""))
    assert not is_retryable(ApiError(409, "run_ended", ""))
    assert not is_retryable(ApiError(400, "invalid_series_name", ""))
    assert not is_retryable(AuthError(401, "unauthorized", ""))


def test_call_with_retries_sleeps_by_the_backoff_and_gives_up_at_the_deadline() -> None:
    now = [0.0]
    sleeps: List[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        now[0] += seconds

    attempts = iter(
        [ApiError(503, "unavailable", "", retry_after=7.0), TransientError("reset"), "done"]
    )

    def attempt() -> str:
        outcome = next(attempts)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    backoff = Backoff(initial=1.0, jitter=0.0)
    assert call_with_retries(attempt, backoff=backoff, sleep=sleep, clock=lambda: now[0]) == "done"
    assert sleeps == [7.0, 2.0]  # Retry-After, then the backoff's next step

    def always_down() -> None:
        raise TransientError("down")

    now[0], sleeps[:] = 0.0, []
    with pytest.raises(TransientError):
        call_with_retries(
            always_down, deadline=10.0, backoff=Backoff(initial=1.0, jitter=0.0),
            sleep=sleep, clock=lambda: now[0],
        )
    assert sleeps == [1.0, 2.0, 4.0] and now[0] == 7.0  # the next (8 s) would pass 10 s
    with pytest.raises(ApiError):
        call_with_retries(lambda: (_ for _ in ()).throw(ApiError(400, "bad", "")), sleep=sleep)


# Batch building ----------------------------------------------------------------


def test_batches_are_columnar_with_api_floats_and_unique_ids() -> None:
    builder = BatchBuilder(session="s")
    rows = [
        (0, 10.0, {"loss": 1.0, "acc": math.nan}),
        (1, 11.0, {"loss": -math.inf, "acc": 0.5}),
        (1, 11.5, "log", "hello"),
        (2, 12.0, {"acc": 2, "bad#name": 1.0, "text?": 3.0}),
    ]
    ((batch_id, body, points),) = builder.build(rows)
    assert batch_id == "s-1" and points == 6
    parsed = json.loads(body)
    assert parsed["batch_id"] == "s-1"
    assert (parsed["session"], parsed["sequence"]) == ("s", 1)
    assert parsed["series"]["loss"] == {"steps": [0, 1], "values": [1.0, "-Infinity"], "timestamps": [10.0, 11.0]}
    assert parsed["series"]["acc"] == {"steps": [0, 1, 2], "values": ["NaN", 0.5, 2.0], "timestamps": [10.0, 11.0, 12.0]}
    assert parsed["text"] == {"log": [{"step": 1, "text": "hello", "timestamp": 11.5}]}
    assert "bad#name" not in parsed["series"] and "text?" not in parsed["series"]
    # A name is numbers or text: logging text under "loss" is dropped, not sent.
    ((second_id, body2, _),) = builder.build([(3, 13.0, "loss", "oops"), (3, 13.0, {"loss": 0.0})])
    assert second_id == "s-2"
    assert json.loads(body2)["sequence"] == 2
    assert "text" not in json.loads(body2)


def test_batches_are_numbered_in_their_session_only_where_the_spool_lock_holds() -> None:
    rows = [(0, 1.0, {"loss": 1.0})]
    ((_, numbered, _),) = BatchBuilder(session="s", numbered=True).build(rows)
    ((_, plain, _),) = BatchBuilder(session="s", numbered=False).build(rows)
    assert json.loads(numbered)["sequence"] == 1
    assert "session" not in json.loads(plain) and "sequence" not in json.loads(plain)
    assert BatchBuilder().numbered == (sys.platform != "win32")


def test_batches_are_split_by_points_and_bytes() -> None:
    builder = BatchBuilder(max_points=1000, max_bytes=10_000, session="s")
    rows = [(i, 1.0, {"a": float(i), "b": float(i)}) for i in range(2000)]
    batches = builder.build(rows)
    assert sum(points for _, _, points in batches) == 4000
    assert all(len(body) <= 10_000 for _, body, _ in batches)
    steps = [s for _, body, _ in batches for s in json.loads(body)["series"]["a"]["steps"]]
    assert steps == list(range(2000))
    assert len({batch_id for batch_id, _, _ in batches}) == len(batches)


def test_text_is_split_on_characters_and_names_checked() -> None:
    text = "é" * 40_000  # 80,000 bytes
    pieces = split_text(text)
    assert "".join(pieces) == text and all(len(p.encode()) <= 64 * 1024 for p in pieces)
    assert valid_series_name("train/loss: top-1.x")
    assert not valid_series_name("") and not valid_series_name("a#b") and not valid_series_name("x" * 251)


def test_console_tee_keeps_printing_and_takes_final_redraws() -> None:
    lines: List[Tuple[str, str]] = []

    class Out:
        def __init__(self) -> None:
            self.text = ""

        def write(self, text: str) -> int:
            self.text += text
            return len(text)

    out = Out()
    tee = Tee(out, "stdout", lambda name, line: lines.append((name, line)))  # type: ignore[arg-type]
    tee.write("a\nb")
    tee.write("c\r\n10%\r50%")
    tee.write("\r100%\n")
    tee.write("tail")
    tee.flush_partial()
    assert out.text == "a\nbc\r\n10%\r50%\r100%\ntail"
    assert [line for _, line in lines] == ["a", "bc", "100%", "tail"]


# The sender against a scripted server --------------------------------------------


class FakeServer:
    """Answers POST /v1/runs/{run}/log from a script of (status, headers, body);
    records every request. Once the script runs out it accepts everything."""

    def __init__(self) -> None:
        self.requests: List[Dict[str, Any]] = []
        self.script: List[Tuple[int, Dict[str, str], Dict[str, Any]]] = []
        self.times: List[float] = []
        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                body = json.loads(self.rfile.read(length) or b"null")
                fake.requests.append({"path": self.path, "body": body})
                fake.times.append(time.monotonic())
                if fake.script:
                    status, headers, answer = fake.script.pop(0)
                else:
                    points = sum(len(c["steps"]) for c in (body or {}).get("series", {}).values())
                    status, headers, answer = 200, {}, {"accepted": points, "abort_requested": False}
                data = json.dumps(answer).encode()
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = "http://127.0.0.1:{}".format(self.httpd.server_address[1])
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def batch_ids(self) -> List[str]:
        return [r["body"]["batch_id"] for r in self.requests if r["body"] and "batch_id" in r["body"]]

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def fake() -> Iterator[FakeServer]:
    server = FakeServer()
    yield server
    server.close()


def uploader_for(fake: FakeServer, tmp_path: Path, on_abort: Optional[Callable[[], None]] = None) -> Uploader:
    spool = RunSpool.create(tmp_path, "run_1.s", {"run_id": "run_1", "url": fake.url})
    return Uploader(Client(fake.url, "key", timeout=5, use_tokens=False), spool, on_abort)


def unavailable(retry_after: str = "1") -> Tuple[int, Dict[str, str], Dict[str, Any]]:
    return 503, {"Retry-After": retry_after}, {"error": {"code": "unavailable", "message": "throttled"}}


def test_a_retried_batch_is_the_same_batch_after_retry_after(fake: FakeServer, tmp_path: Path) -> None:
    uploader = uploader_for(fake, tmp_path)
    path = uploader.spool.write_batch("s-1", b'{"batch_id":"s-1","series":{"x":{"steps":[1],"values":[2.0]}}}')
    fake.script = [unavailable("1"), unavailable("1")]
    assert uploader.drain(deadline=time.monotonic() + 30)
    assert fake.batch_ids() == ["s-1", "s-1", "s-1"]
    assert fake.requests[0]["body"] == fake.requests[2]["body"]
    gaps = [b - a for a, b in zip(fake.times, fake.times[1:])]
    assert all(gap >= 0.95 for gap in gaps), gaps  # Retry-After: 1 honoured
    assert not path.exists() and uploader.sent_points == 1


def test_refused_batches_are_set_aside_and_auth_errors_keep_them(fake: FakeServer, tmp_path: Path) -> None:
    uploader = uploader_for(fake, tmp_path)
    bad = uploader.spool.write_batch("s-1", b'{"batch_id":"s-1"}')
    good = uploader.spool.write_batch("s-2", b'{"batch_id":"s-2"}')
    fake.script = [(400, {}, {"error": {"code": "invalid_series_name", "message": "no"}})]
    assert uploader.drain(deadline=time.monotonic() + 10)
    assert not bad.exists() and not good.exists()
    assert (uploader.spool.rejected_dir / bad.name).exists() and uploader.rejected == 1

    kept = uploader.spool.write_batch("s-3", b'{"batch_id":"s-3"}')
    fake.script = [(401, {}, {"error": {"code": "unauthorized", "message": "revoked"}})]
    with pytest.raises(AuthError):
        uploader.drain(deadline=time.monotonic() + 10)
    assert kept.exists(), "a refused key keeps the batch for a later sync"

    fake.script = [(409, {}, {"error": {"code": "run_ended", "message": "the run has ended (succeeded)"}})]
    assert uploader.drain(deadline=time.monotonic() + 10)
    assert uploader.ended and not kept.exists()


def test_the_sender_spools_through_an_outage_and_sends_each_batch_once(
    fake: FakeServer, tmp_path: Path
) -> None:
    aborts: List[bool] = []
    uploader = uploader_for(fake, tmp_path, on_abort=lambda: aborts.append(True))
    buffer: List[Any] = []
    lock = threading.Lock()

    def take() -> List[Any]:
        with lock:
            rows = buffer[:]
            del buffer[:]
        return rows

    sender = Sender(
        uploader.spool, uploader, take, BatchBuilder(session="s"),
        flush_interval=0.05, heartbeat_interval=0, backoff=Backoff(initial=0.05, maximum=0.2),
    )
    fake.script = [unavailable("0")] * 5 + [(500, {}, {"error": {"code": "internal", "message": ""}})] * 5
    sender.start()
    for step in range(300):
        with lock:
            buffer.append((step, 1.0, {"x": float(step)}))
        time.sleep(0.001)
    fake.script.append((200, {}, {"accepted": 0, "abort_requested": True}))
    assert sender.stop(timeout=20)
    assert sender.failures == 10
    ids = fake.batch_ids()
    distinct = sorted(set(ids), key=ids.index)
    accepted_steps: List[int] = []
    seen = set()
    for request in fake.requests[10:]:
        if request["body"]["batch_id"] not in seen:
            seen.add(request["body"]["batch_id"])
            accepted_steps += request["body"]["series"]["x"]["steps"]
    assert sorted(accepted_steps) == list(range(300)), "every point, once"
    assert len(distinct) == sender.spooled_batches
    assert ids[:11] == [ids[0]] * 11, "the first batch is retried unchanged"
    assert uploader.spool.batches() == []
    assert aborts == [True]


# System metrics ---------------------------------------------------------------------


def test_system_sampler_reads_cpu_memory_and_nvidia_smi(tmp_path: Path) -> None:
    from sextant import _system

    fake = tmp_path / "nvidia-smi"
    fake.write_text("#!/bin/sh\necho '87, 1024, 16384, 65, 250.5'\necho '3, 0, 16384, 40, [N/A]'\n")
    fake.chmod(0o755)
    gpus = _system.gpu_query(str(fake))
    assert gpus[0] == {
        "utilization_percent": 87.0, "memory_used_mb": 1024.0, "memory_percent": 6.25,
        "temperature_c": 65.0, "power_w": 250.5,
    }
    assert "power_w" not in gpus[1]

    sampler = _system.SystemSampler(gpu=False)
    sampler._nvidia_smi = str(fake)
    # /proc/stat counts in clock ticks: a sample taken before the next tick has no CPU
    # figure to give (the sampler leaves it out), so spend CPU until one has passed.
    deadline = time.monotonic() + 5
    while _system._read_cpu_times() == sampler._cpu and time.monotonic() < deadline:
        sum(i * i for i in range(20_000))
    sample = sampler.sample()
    assert 0.0 <= sample["system/process_cpu_percent"]
    assert sample["system/gpu0/utilization_percent"] == 87.0
    assert sample["system/gpu1/memory_used_mb"] == 0.0
    if Path("/proc/meminfo").exists():
        assert 0.0 < sample["system/memory_percent"] < 100.0
        assert "system/cpu_percent" in sample and sample["system/process_memory_mb"] > 1


# Git ---------------------------------------------------------------------------


def test_a_remote_url_loses_its_credentials_before_it_leaves_the_machine() -> None:
    from sextant._git import strip_credentials

    assert (
        strip_credentials("https://x-access-token:ghp_abc@github.com/o/r.git")
        == "https://github.com/o/r.git"
    )
    assert strip_credentials("https://ghp_abc@github.com/o/r") == "https://github.com/o/r"
    assert strip_credentials("git@github.com:o/r.git") == "git@github.com:o/r.git"
    assert strip_credentials("https://github.com/o/r.git") == "https://github.com/o/r.git"
