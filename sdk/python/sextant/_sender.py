"""The background side of a live run: turning buffered rows into columnar batches,
spooling them, sending them with retries, heartbeats, and uploading files.

The training thread only appends rows to a list under a lock (``Run.log``); the
sender thread takes the rows every ``flush_interval`` seconds (sooner once
``flush_points`` points wait), writes them to the spool as batches with fresh batch
ids, and sends the spooled batches oldest first. A batch that fails with a network
error, a 5xx or a 429 is sent again, unchanged, after a backoff (at least the
server's ``Retry-After``); new rows keep being spooled meanwhile, so memory stays
bounded and a crash loses nothing already spooled.
"""

import collections
import json
import logging
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Deque, Dict, List, Optional, Sequence, Set, Tuple

from . import _codes as codes
from ._http import ApiError, AuthError, Backoff, TransientError, encode_float, is_retryable
from ._spool import ORDERED, RunSpool
from ._uploader import Uploader

log = logging.getLogger("sextant")

#: A row: (step, timestamp, {name: value}) for numbers, (step, timestamp, name, text)
#: for a text line.
Row = Tuple[Any, ...]

MAX_TEXT_BYTES = 64 * 1024
MAX_SERIES = 1000
_NAME_PUNCTUATION = frozenset("_-./: ")
_FLOAT_ONLY = {float}


def valid_series_name(name: Any) -> bool:
    """What the server takes as a series name: 1 to 250 bytes of letters, digits,
    ``_ - . / :`` and spaces."""
    return (
        isinstance(name, str)
        and 0 < len(name.encode("utf-8")) <= 250
        and all(c.isalnum() or c in _NAME_PUNCTUATION for c in name)
    )


def split_text(text: str, limit: int = MAX_TEXT_BYTES) -> List[str]:
    """Splits a text into pieces of at most ``limit`` UTF-8 bytes, on characters."""
    data = text.encode("utf-8")
    if len(data) <= limit:
        return [text]
    pieces = []
    start = 0
    while start < len(data):
        end = min(len(data), start + limit)
        while end < len(data) and (data[end] & 0xC0) == 0x80:  # not mid-character
            end -= 1
        pieces.append(data[start:end].decode("utf-8"))
        start = end
    return pieces


class BatchBuilder:
    """Turns rows into log batches: columnar series, text lines, a unique batch id.

    Names the server would refuse (invalid, or used as the other kind) are dropped
    with a warning, once per name, rather than making the whole batch fail.

    With ``numbered`` (where the spool's lock keeps a second process from sending the
    same batches), each batch also declares its ``session`` and ``sequence``: the
    sender sends them in order, one at a time, so the server keeps one record per
    session rather than one per batch.
    """

    def __init__(
        self,
        max_points: int = 50_000,
        max_bytes: int = 5_000_000,
        kinds: Optional[Dict[str, str]] = None,
        session: Optional[str] = None,
        numbered: bool = ORDERED,
    ) -> None:
        self.max_points = max_points
        self.max_bytes = max_bytes
        self.kinds: Dict[str, str] = dict(kinds or {})
        self.session = session or uuid.uuid4().hex[:16]
        self.numbered = numbered
        self._count = 0
        self._warned: Set[Tuple[str, str]] = set()

    def _warn(self, name: str, why: str) -> None:
        if (name, why) not in self._warned:
            self._warned.add((name, why))
            log.warning("sextant: dropping points of %r: %s", name, why)

    def _accept(self, name: Any, kind: str) -> bool:
        known = self.kinds.get(name)
        if known == kind:
            return True
        if known is not None:
            self._warn(name, "the series already holds {} points".format(known))
            return False
        if len(self.kinds) >= MAX_SERIES:
            self._warn(str(name), "a run has at most {} series".format(MAX_SERIES))
            return False
        if not valid_series_name(name):
            self._warn(
                str(name),
                "series names are 1 to 250 bytes of letters, digits, _ - . / : and spaces",
            )
            return False
        self.kinds[name] = kind
        return True

    def _next_head(self) -> Tuple[str, bytes]:
        """The next batch's id, and the start of its body naming it."""
        self._count += 1
        batch_id = "{}-{}".format(self.session, self._count)
        head = '{"batch_id":"%s",' % batch_id
        if self.numbered:
            head += '"session":"%s","sequence":%d,' % (self.session, self._count)
        return batch_id, head.encode("ascii")

    def columns(self, rows: Sequence[Row]) -> Tuple[List[str], int]:
        """The encoded ``series`` and ``text`` fields for ``rows``, and how many
        points they hold.

        JSON is written by hand: the step and timestamp of a row are formatted once
        for all its values (timestamps to the millisecond), and values go through
        ``float.__repr__`` (the shortest text that reads back to the same bits),
        which is most of the cost.
        """
        series: Dict[str, Tuple[List[str], List[float], List[str]]] = {}
        text: Dict[str, List[str]] = {}
        points = 0
        # Consecutive rows logging the same names (a training loop's usual shape) are
        # transposed at once; their steps and timestamps are formatted once per row.
        segment: List[Row] = []
        segment_keys: Tuple[Any, ...] = ()
        for row in rows + [(None,)]:  # type: ignore[operator]
            if len(row) == 3:
                keys = tuple(row[2])
                if keys == segment_keys:
                    segment.append(row)
                    continue
            if segment:
                points += self._numeric_segment(segment, segment_keys, series)
                segment = []
                segment_keys = ()
            if len(row) == 3:
                segment, segment_keys = [row], keys
            elif len(row) == 4:
                step, timestamp, name, line = row
                lines = text.get(name)
                if lines is None:
                    if not self._accept(name, "text"):
                        continue
                    lines = text[name] = []
                for piece in split_text(line):
                    lines.append(
                        '{{"step":{},"text":{},"timestamp":{}}}'.format(
                            int(step), json.dumps(piece, ensure_ascii=False), "%.3f" % timestamp
                        )
                    )
                    points += 1
        fields = []
        if series:
            fields.append(
                '"series":{'
                + ",".join(
                    '{}:{{"steps":[{}],"values":[{}],"timestamps":[{}]}}'.format(
                        json.dumps(name, ensure_ascii=False),
                        ",".join(c[0]),
                        _floats(c[1]),
                        ",".join(c[2]),
                    )
                    for name, c in series.items()
                    if c[0]
                )
                + "}"
            )
        if text:
            fields.append(
                '"text":{'
                + ",".join(
                    "{}:[{}]".format(json.dumps(name, ensure_ascii=False), ",".join(lines))
                    for name, lines in text.items()
                    if lines
                )
                + "}"
            )
        return fields, points

    def _numeric_segment(
        self,
        rows: List[Row],
        keys: Tuple[Any, ...],
        series: Dict[str, Tuple[List[str], List[float], List[str]]],
    ) -> int:
        """Adds rows that all log ``keys`` (in that order) to the columns."""
        steps = [str(row[0]) for row in rows]
        times = ["%.3f" % row[1] for row in rows]
        points = 0
        for name, values in zip(keys, zip(*[tuple(row[2].values()) for row in rows])):
            column = series.get(name)
            if column is None:
                if not self._accept(name, "numeric"):
                    continue
                column = series[name] = ([], [], [])
            if set(map(type, values)) == _FLOAT_ONLY:
                column[0].extend(steps)
                column[1].extend(values)
                column[2].extend(times)
                points += len(values)
                continue
            for step, value, when in zip(steps, values, times):
                if type(value) is not float:
                    try:
                        value = float(value)
                    except (TypeError, ValueError, OverflowError):
                        self._warn(name, "{!r} is not a number".format(value))
                        continue
                column[0].append(step)
                column[1].append(value)
                column[2].append(when)
                points += 1
        return points

    def build(self, rows: Sequence[Row]) -> List[Tuple[str, bytes, int]]:
        """Batches for ``rows``: ``(batch_id, body, points)``, each under the point
        and byte limits."""
        groups: List[Sequence[Row]] = []
        start, count = 0, 0
        for index, row in enumerate(rows):
            count += len(row[2]) if len(row) == 3 else 1
            if count >= self.max_points:
                groups.append(rows[start : index + 1])
                start, count = index + 1, 0
        if start < len(rows):
            groups.append(rows[start:])
        batches: List[Tuple[str, bytes, int]] = []
        for group in groups:
            self._build_group(group, batches)
        return batches

    def _build_group(self, rows: Sequence[Row], out: List[Tuple[str, bytes, int]]) -> None:
        fields, points = self.columns(rows)
        if points == 0 or not fields:
            return
        encoded = ",".join(fields).encode("utf-8")
        if len(encoded) > self.max_bytes and len(rows) > 1:
            middle = len(rows) // 2
            self._build_group(rows[:middle], out)
            self._build_group(rows[middle:], out)
            return
        batch_id, head = self._next_head()
        body = head + encoded + b"}"
        out.append((batch_id, body, points))


def _floats(values: List[float]) -> str:
    """Floats as the API's JSON: shortest round-trip numbers; NaN and infinities as
    the strings "NaN", "Infinity", "-Infinity"."""
    joined = ",".join(map(float.__repr__, values))
    if "n" in joined:  # only "nan" and "inf" spell an n
        joined = ",".join(
            float.__repr__(v) if v - v == 0.0 else '"{}"'.format(encode_float(v)) for v in values
        )
    return joined


class Sender:
    """Two threads per run: the spooler turns buffered rows into batches on disk every
    ``flush_interval`` seconds (or when woken because ``flush_points`` wait), and the
    network thread sends spooled batches oldest first, retrying with backoff, and
    sends heartbeats. Encoding the next batch thus overlaps the server's work on the
    previous one.

    ``take`` hands over the rows buffered since its last call. With ``uploader``
    None (offline), batches are only spooled.
    """

    def __init__(
        self,
        spool: RunSpool,
        uploader: Optional[Uploader],
        take: Callable[[], List[Row]],
        builder: BatchBuilder,
        flush_interval: float = 5.0,
        heartbeat_interval: float = 15.0,
        durable: bool = True,
        backoff: Optional[Backoff] = None,
    ) -> None:
        self.spool = spool
        self.uploader = uploader
        self.take = take
        self.builder = builder
        self.flush_interval = flush_interval
        self.heartbeat_interval = heartbeat_interval
        self.durable = durable
        self.backoff = backoff or Backoff()
        #: Set by the training thread when ``flush_points`` points wait.
        self.wake = threading.Event()
        self._net_wake = threading.Event()
        #: Spooled batches not yet acknowledged, oldest first, with their bytes while
        #: the queue is short (afterwards they are read back from the spool). The
        #: spooler appends, the network thread pops.
        self.queue: Deque[Tuple[Optional[Path], Optional[bytes]]] = collections.deque(
            (path, None) for path in spool.batches()
        )
        self.retry_at = 0.0
        self.last_contact = time.monotonic()
        self.spooled_points = 0
        self.spooled_batches = 0
        self.last_error: Optional[BaseException] = None
        #: Failed attempts so far (each retried later with the same batch).
        self.failures = 0
        self._flush_lock = threading.Lock()
        self._stopping = False
        self._spooler_done = False
        self._deadline = 0.0
        self._auth_warned = False
        self._disk_warned = False
        self._spooler = threading.Thread(target=self._spool_loop, name="sextant-spooler", daemon=True)
        self._network = threading.Thread(target=self._send_loop, name="sextant-sender", daemon=True)

    def start(self) -> None:
        self._spooler.start()
        if self.uploader is not None:
            self._network.start()

    @property
    def alive(self) -> bool:
        return self._spooler.is_alive() or self._network.is_alive()

    # The spooler.

    def flush(self) -> int:
        """Spools whatever rows are buffered; answers how many points."""
        with self._flush_lock:
            rows = self.take()
            if not rows:
                return 0
            points = 0
            for batch_id, body, count in self.builder.build(rows):
                path: Optional[Path]
                try:
                    path = self.spool.write_batch(batch_id, body, self.durable)
                except OSError as error:
                    # A full or broken disk: keep the batch in memory and send it anyway.
                    if not self._disk_warned:
                        self._disk_warned = True
                        log.warning("sextant: cannot write to the spool (%s); batches are "
                                    "kept in memory only", error)
                    path = None
                keep = path is None or len(self.queue) < 16
                self.queue.append((path, body if keep else None))
                points += count
                self.spooled_batches += 1
                self._net_wake.set()
            self.spooled_points += points
            return points

    def _spool_loop(self) -> None:
        while not self._stopping:
            self.wake.wait(self.flush_interval)
            self.wake.clear()
            try:
                self.flush()
            except Exception:  # never let a bug silently stop the spooler
                log.exception("sextant: the spooler hit an unexpected error")
                time.sleep(0.5)
        try:
            self.flush()
        finally:
            self._spooler_done = True
            self._net_wake.set()

    # The network thread.

    def _blocked(self) -> bool:
        return self.uploader is None or self.uploader.ended is not None

    def _failed(self, error: BaseException, now: float) -> None:
        self.last_error = error
        self.failures += 1
        if isinstance(error, AuthError):
            if not self._auth_warned:
                self._auth_warned = True
                log.warning(
                    "sextant: the server refuses the API key (%s); points are kept in %s",
                    error,
                    self.spool.path,
                )
            self.retry_at = now + 60.0
            return
        retry_after = error.retry_after if isinstance(error, ApiError) else None
        delay = self.backoff.next_delay(retry_after)
        log.debug("sextant: sending failed (%s); trying again in %.1fs", error, delay)
        self.retry_at = now + delay

    def send_pending(self) -> None:
        """Sends queued batches in order until one fails or the backoff holds."""
        uploader = self.uploader
        if uploader is None:
            return
        while self.queue and not self._blocked() and time.monotonic() >= self.retry_at:
            path, body = self.queue[0]
            try:
                uploader.send_batch(path, body)
            except (TransientError, ApiError) as error:
                self._failed(error, time.monotonic())
                return
            self.queue.popleft()
            self.backoff.reset()
            self.last_error = None
            self.last_contact = time.monotonic()
        if self.uploader is not None and self.uploader.ended is not None:
            # The run ended on the server: what is left can never be taken.
            while self.queue:
                path, _ = self.queue.popleft()
                if path is not None and path.exists():
                    self.spool.reject(path, codes.RUN_ENDED)

    def _heartbeat(self, now: float) -> None:
        if (
            self.uploader is None
            or self._blocked()
            or self.queue
            or self.heartbeat_interval <= 0
            or now < self.retry_at
            or now - self.last_contact < self.heartbeat_interval
        ):
            return
        try:
            self.uploader.heartbeat()
        except (TransientError, ApiError) as error:
            if isinstance(error, ApiError) and not is_retryable(error) and not isinstance(
                error, AuthError
            ):
                if error.code == codes.RUN_ENDED:
                    self.uploader.ended = error.message
                self.last_contact = now
                return
            self._failed(error, now)
            return
        self.backoff.reset()
        self.last_contact = time.monotonic()

    def _send_loop(self) -> None:
        while True:
            now = time.monotonic()
            timeout = 3600.0
            if self.queue and not self._blocked():
                timeout = self.retry_at - now
            if self.heartbeat_interval > 0:
                timeout = min(timeout, self.last_contact + self.heartbeat_interval - now)
            if self._stopping:
                timeout = min(timeout, self._deadline - now)
            if timeout > 0:
                self._net_wake.wait(timeout)
            self._net_wake.clear()
            try:
                self.send_pending()
                self._heartbeat(time.monotonic())
            except Exception:  # never let a bug silently stop the sender
                log.exception("sextant: the sender hit an unexpected error")
                time.sleep(0.5)
            if self._stopping and self._spooler_done and (
                not self.queue
                or self._blocked()
                or time.monotonic() >= self._deadline
                or isinstance(self.last_error, AuthError)
            ):
                return

    def stop(self, timeout: float) -> bool:
        """Spools what is buffered and sends what is queued, for at most ``timeout``
        seconds; answers whether everything was acknowledged."""
        self._deadline = time.monotonic() + timeout
        self._stopping = True
        self.wake.set()
        self._net_wake.set()
        if self._spooler.is_alive():
            self._spooler.join(timeout + 5.0)
        else:
            self.flush()
            self._spooler_done = True
        if self._network.is_alive():
            self._net_wake.set()
            self._network.join(max(0.0, self._deadline - time.monotonic()) + 5.0)
        return not self.queue


class OpsWorker:
    """The thread that uploads spooled images and artifacts, one at a time, in order,
    with its own backoff, so a large checkpoint never holds up metrics."""

    def __init__(self, spool: RunSpool, uploader: Optional[Uploader]) -> None:
        self.spool = spool
        self.uploader = uploader
        self.wake = threading.Event()
        self.backoff = Backoff()
        self.retry_at = 0.0
        self.last_error: Optional[BaseException] = None
        self.done = threading.Condition()
        self._stopping = False
        self._deadline = 0.0
        self._thread = threading.Thread(target=self._loop, name="sextant-files", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run_once(self) -> bool:
        """Sends pending operations; answers False when one must wait for a retry."""
        assert self.uploader is not None
        for path in self.spool.ops():
            if self.uploader.ended is not None and not path.name.endswith("-artifact.json"):
                self.spool.reject(path, codes.RUN_ENDED)
                continue
            try:
                self.uploader.send_op(path)
            except (TransientError, ApiError) as error:
                self.last_error = error
                retry_after = error.retry_after if isinstance(error, ApiError) else None
                delay = 60.0 if isinstance(error, AuthError) else self.backoff.next_delay(retry_after)
                self.retry_at = time.monotonic() + delay
                log.debug("sextant: upload failed (%s); trying again in %.1fs", error, delay)
                return False
            self.backoff.reset()
            self.last_error = None
            with self.done:
                self.done.notify_all()
        return True

    def _loop(self) -> None:
        while True:
            now = time.monotonic()
            timeout = max(0.0, self.retry_at - now) if self.retry_at > now else None
            if self._stopping:
                timeout = max(0.0, min(timeout if timeout is not None else 1e9, self._deadline - now))
            self.wake.wait(timeout)
            self.wake.clear()
            idle = True
            if time.monotonic() >= self.retry_at:
                try:
                    idle = self._run_once()
                except Exception:
                    log.exception("sextant: the file uploader hit an unexpected error")
                    time.sleep(0.5)
            with self.done:
                self.done.notify_all()
            if self._stopping and (
                (idle and not self.spool.ops())
                or time.monotonic() >= self._deadline
                or isinstance(self.last_error, AuthError)
            ):
                return

    def wait_idle(self, timeout: Optional[float] = None) -> bool:
        """Waits until no operation is pending (for ``upload(wait=True)``)."""
        end = None if timeout is None else time.monotonic() + timeout
        with self.done:
            while self.spool.ops():
                left = None if end is None else end - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self.wake.set()
                self.done.wait(left if left is not None else 1.0)
        return True

    def stop(self, timeout: float) -> bool:
        self._deadline = time.monotonic() + timeout
        self._stopping = True
        self.wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout + 5.0)
        return not self.spool.ops()
