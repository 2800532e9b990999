"""``sextant.init`` and the ``Run`` it answers."""

import _thread
import atexit
import hashlib
import json
import logging
import os
import posixpath
import signal
import sys
import threading
import time
import uuid
import weakref
from pathlib import Path, PurePosixPath
from typing import (
    IO,
    Any,
    Callable,
    Dict,
    Iterable,
    List,
    Mapping,
    Optional,
    Type,
    Union,
)

from . import _codes as codes
from ._config import connect, resolve_credentials
from ._console import ConsoleCapture
from ._git import SNAPSHOT_PATH, code_dir, git_info, run_git_fields, write_snapshot
from ._http import ApiError, AuthError, Client, ConfigError, SextantError
from ._sender import (
    MAX_TEXT_BYTES,
    BatchBuilder,
    OpsWorker,
    Row,
    Sender,
    split_text,
    valid_series_name,
)
from ._spool import RunSpool, atomic_write, default_root, list_spools
from ._system import SystemMonitor
from ._sync import retire, sync_quietly
from ._uploader import Uploader, create_run

log = logging.getLogger("sextant")

MAX_IMAGE_BYTES = 5 * 1024 * 1024
ARTIFACT_KINDS = ("file", "checkpoint", "model", "dataset", "code")
END_STATUSES = ("succeeded", "failed", "aborted")
_PNG = b"\x89PNG\r\n\x1a\n"
_JPEG = b"\xff\xd8\xff"

ImageLike = Union[bytes, bytearray, memoryview, str, "os.PathLike[str]", IO[bytes], Any]
AbortCallback = Callable[["Run"], None]


_time = time.time


# Exits: `with` blocks see their exception; otherwise an uncaught exception is
# remembered here for the interpreter-exit handler.
_uncaught: Optional[Type[BaseException]] = None
_live_runs: "weakref.WeakSet[Run]" = weakref.WeakSet()
_hooks_installed = False


def _install_hooks() -> None:
    global _hooks_installed
    if _hooks_installed:
        return
    _hooks_installed = True
    previous = sys.excepthook

    def excepthook(kind: Type[BaseException], value: BaseException, tb: Any) -> None:
        global _uncaught
        _uncaught = kind
        previous(kind, value, tb)

    sys.excepthook = excepthook
    atexit.register(_finish_all_at_exit)
    _let_aborts_interrupt()


# Set by a run asked to stop, just before it interrupts the main thread.
_abort_interrupt_pending = False


def _let_aborts_interrupt() -> None:
    """Background jobs of shell scripts (``python train.py &``, under nohup too) start
    with SIGINT ignored, and then ``_thread.interrupt_main`` does nothing: an abort from
    the server could not stop the run. Where SIGINT is ignored, a handler takes its
    place that still ignores SIGINT from outside but raises KeyboardInterrupt for an
    abort."""
    if threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:
        return

    def interrupt_on_abort_only(signum: int, frame: Any) -> None:
        global _abort_interrupt_pending
        if _abort_interrupt_pending:
            _abort_interrupt_pending = False
            raise KeyboardInterrupt

    signal.signal(signal.SIGINT, interrupt_on_abort_only)


def _finish_all_at_exit() -> None:
    for run in list(_live_runs):
        if run._pid != os.getpid():
            continue  # a forked child: the run belongs to the parent
        if _uncaught is None:
            status = None
        elif issubclass(_uncaught, KeyboardInterrupt):
            status = "aborted"
        else:
            status = "failed"
        try:
            run.finish(status)
        except BaseException:  # exiting anyway; the spool keeps what was not sent
            log.exception("sextant: could not finish run %s at exit", run.id)


def _image_bytes(image: ImageLike) -> bytes:
    if isinstance(image, (bytes, bytearray, memoryview)):
        return bytes(image)
    if isinstance(image, (str, os.PathLike)):
        return Path(image).read_bytes()
    if hasattr(image, "read"):
        return bytes(image.read())
    if hasattr(image, "save"):  # a PIL image, without depending on Pillow
        import io

        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        return buffer.getvalue()
    raise TypeError(
        "log_image takes PNG or JPEG bytes, a path to such a file, a binary file object "
        "or a PIL image, not {}".format(type(image).__name__)
    )


def _as_step(step: Any) -> int:
    """A step as the API takes it: a 64-bit integer (numpy integers and integral
    floats are accepted)."""
    try:
        value = int(step)
    except (TypeError, ValueError):
        raise TypeError("a step is an integer, not {!r}".format(step)) from None
    if value != step:
        raise TypeError("a step is an integer, not {!r}".format(step))
    if not -(2**63) <= value < 2**63:
        raise ValueError("a step is a 64-bit integer; {} is out of range".format(value))
    return value


def _artifact_path(path: Path, name: Optional[str]) -> str:
    if name is not None:
        return name
    given = PurePosixPath(path.as_posix())
    if given.is_absolute() or ".." in given.parts:
        return path.name
    return posixpath.normpath(given.as_posix())


def _copy_hashing(source: Path, target: Path) -> str:
    digest = hashlib.sha256()
    tmp = target.with_name(".tmp-" + target.name)
    with open(source, "rb") as reader, open(tmp, "wb") as writer:
        for block in iter(lambda: reader.read(1 << 20), b""):
            digest.update(block)
            writer.write(block)
    os.replace(tmp, target)
    return digest.hexdigest()


class Run:
    """A run being logged. Made by ``sextant.init``; use it as a context manager, or
    call ``finish()`` (at the latest, interpreter exit finishes it)."""

    def __init__(
        self,
        *,
        spool: RunSpool,
        client: Optional[Client],
        project: str,
        run_id: Optional[str],
        name: Optional[str],
        mode: str,
        on_abort: Optional[AbortCallback],
        flush_interval: float,
        flush_points: int,
        heartbeat_interval: float,
        finish_timeout: float,
        kinds: Optional[Dict[str, str]] = None,
        first_step: int = 0,
        console_steps: Optional[Dict[str, int]] = None,
        system_step: int = 0,
        max_batch_points: int = 50_000,
        durable: bool = True,
        params: Optional[Dict[str, Any]] = None,
        ends_run: bool = True,
    ) -> None:
        self._spool = spool
        self._client = client
        self.project = project
        self._run_id = run_id
        self.name = name
        self.mode = mode
        self._on_abort_callback = on_abort
        self._finish_timeout = finish_timeout
        self._pid = os.getpid()

        # The hot path's state: rows buffered for the spooler (the list is never
        # replaced), and a lock only for the console's line counters.
        self._lock = threading.Lock()
        self._buf: List[Row] = []
        self._pending = 0
        self._flush_points = flush_points
        self._step = first_step
        self._closed = False
        self._warned_closed = False

        self._params = dict(params or {})
        self._ends_run = ends_run
        self._console_steps = dict(console_steps or {})
        self._system_step = system_step
        self._abort_requested = False
        self._finished = False
        self._finishing = False
        self._finish_lock = threading.Lock()
        self._finish_result: Optional[bool] = None
        self._console: Optional[ConsoleCapture] = None
        self._system: Optional[SystemMonitor] = None
        self._snapshot_thread: Optional[threading.Thread] = None
        self._status: Optional[str] = None

        self._uploader = (
            Uploader(client, spool, on_abort=self._on_abort) if client is not None else None
        )
        self._sender = Sender(
            spool,
            self._uploader,
            self._take,
            BatchBuilder(max_points=max_batch_points, kinds=kinds),
            flush_interval=flush_interval,
            heartbeat_interval=heartbeat_interval,
            durable=durable,
        )
        self._wake = self._sender.wake
        self._ops = OpsWorker(spool, self._uploader)

    # Identity.

    @property
    def id(self) -> Optional[str]:
        """The run's id on the server (None for an offline run not yet synced)."""
        return self._run_id

    @property
    def spool_dir(self) -> Path:
        """Where this run's data waits until the server acknowledges it."""
        return self._spool.path

    @property
    def params(self) -> Dict[str, Any]:
        """The run's params, nested names flattened (``model/depth``): under an agent,
        the queued job's, with those given to ``init`` filling in what it lacks."""
        return dict(self._params)

    @property
    def abort_requested(self) -> bool:
        """Whether the run was asked to stop (``POST /v1/runs/{run}/abort``)."""
        return self._abort_requested

    @property
    def finished(self) -> bool:
        return self._finished

    def __repr__(self) -> str:
        return "<sextant.Run {} {!r} project={!r} mode={}>".format(
            self._run_id or self._spool.key, self.name, self.project, self.mode
        )

    # Logging: the hot path.

    def log(self, data: Mapping[str, Any], step: Optional[int] = None) -> None:
        """Logs numbers (``{"train/loss": 0.25, ...}``) at ``step``.

        Never blocks on the network or the disk: the values are appended to an
        in-memory buffer and sent in the background. Without ``step``, the step after
        the last one logged is used. Values are anything ``float()`` takes; NaN and
        infinities are kept.
        """
        # The hot path: no lock. Appending to the list is atomic, and the spooler
        # takes rows with a copy and a delete of that many (each atomic as well).
        if step is None:
            step = self._step
        elif type(step) is not int:
            step = _as_step(step)
        self._step = step + 1
        if self._closed:
            self._log_after_finish()
            return
        self._buf.append((step, _time(), dict(data)))
        pending = self._pending + len(data)
        self._pending = pending
        if pending >= self._flush_points:
            self._wake.set()

    def log_text(self, name: str, text: str, step: Optional[int] = None) -> None:
        """Logs a line of text to the text series ``name`` at ``step`` (default: the
        current step). Lines over 64 KiB are split."""
        if not isinstance(text, str):
            text = str(text)
        if self._closed:
            self._log_after_finish()
            return
        if step is not None and type(step) is not int:
            step = _as_step(step)
        # A huge text becomes several lines now, so that batches can be cut between them.
        pieces = split_text(text) if len(text) > MAX_TEXT_BYTES // 4 else [text]
        if step is None:
            step = max(self._step - 1, 0)
        now = _time()
        self._buf.extend([(step, now, name, piece) for piece in pieces])
        self._pending += len(pieces)
        if self._pending >= self._flush_points:
            self._wake.set()

    def _take(self) -> List[Row]:
        buffer = self._buf
        rows = buffer[:]
        del buffer[: len(rows)]  # rows appended meanwhile stay for the next take
        self._pending = 0
        return rows

    def _log_after_finish(self) -> None:
        if not self._warned_closed:
            self._warned_closed = True
            log.warning("sextant: run %s has finished; logging to it is ignored", self)

    def _console_line(self, stream: str, line: str) -> None:
        with self._lock:
            if self._closed:
                return
            step = self._console_steps.get(stream, 0)
            self._console_steps[stream] = step + 1
            self._buf.append((step, _time(), stream, line))
            self._pending += 1

    def _system_metrics(self, metrics: Dict[str, float], step: int) -> None:
        if not self._closed:
            self._buf.append((step, _time(), metrics))
            self._pending += len(metrics)

    # Images and files.

    def log_image(self, name: str, image: ImageLike, step: Optional[int] = None) -> None:
        """Logs a PNG or JPEG image (bytes, a path, a binary file or a PIL image) to
        the image series ``name`` at ``step`` (default: the current step). The image
        is spooled and uploaded in the background."""
        if not valid_series_name(name):
            raise ValueError(
                "image series names are 1 to 250 bytes of letters, digits, _ - . / : and "
                "spaces: {!r}".format(name)
            )
        data = _image_bytes(image)
        if data.startswith(_PNG):
            content_type, suffix = "image/png", ".png"
        elif data.startswith(_JPEG):
            content_type, suffix = "image/jpeg", ".jpg"
        else:
            raise ValueError("log_image takes PNG or JPEG images")
        if len(data) > MAX_IMAGE_BYTES:
            raise ValueError("an image is at most 5 MiB; this one is {} bytes".format(len(data)))
        if self._closed:
            self._log_after_finish()
            return
        step = max(self._step - 1, 0) if step is None else _as_step(step)
        self._spool.add_op(
            "image",
            {"series": name, "step": int(step), "size": len(data), "content_type": content_type},
            data=data,
            suffix=suffix,
        )
        self._ops.wake.set()

    def upload(
        self,
        path: Union[str, "os.PathLike[str]"],
        name: Optional[str] = None,
        kind: str = "file",
        step: Optional[int] = None,
        content_type: Optional[str] = None,
        copy: bool = True,
        wait: bool = False,
        timeout: Optional[float] = None,
    ) -> str:
        """Uploads a file as an artifact of the run; answers its artifact path.

        The artifact path is ``name``, else ``path`` as given when it is relative (so
        ``upload("checkpoints/last.pt")`` stores ``checkpoints/last.pt``), else the
        file's name. ``kind`` is file, checkpoint, model, dataset or code; ``step``
        lets a checkpoint be found by step.

        With ``copy`` (the default) the file is copied into the spool first, so it can
        be overwritten right away (the next checkpoint) and the upload survives an
        outage or a crash; ``copy=False`` uploads from ``path``, which must then stay
        unchanged until uploaded. The upload happens in the background; ``wait=True``
        blocks until it is done (and raises if the server refused it).
        """
        source = Path(path)
        if not source.is_file():
            raise FileNotFoundError("no file at {}".format(source))
        if kind not in ARTIFACT_KINDS:
            raise ValueError("kind is one of {}".format(", ".join(ARTIFACT_KINDS)))
        if self._closed:
            raise SextantError("run {} has finished; nothing more can be uploaded".format(self))
        artifact = _artifact_path(source, name)
        payload: Dict[str, Any] = {
            "path": artifact,
            "kind": kind,
            "step": None if step is None else _as_step(step),
            "content_type": content_type,
        }
        if copy:
            seq = self._spool.next_seq()
            blob = self._spool.ops_dir / "{:012d}.bin".format(seq)
            payload["sha256"] = _copy_hashing(source, blob)
            payload["size"] = blob.stat().st_size
            payload["file"] = blob.name
            op = self._spool.ops_dir / "{:012d}-artifact.json".format(seq)
            atomic_write(op, json.dumps(payload).encode("utf-8"))
        else:
            payload["source"] = str(source.resolve())
            payload["size"] = source.stat().st_size
            payload["sha256"] = None  # hashed by the uploader, off this thread
            op = self._spool.add_op("artifact", payload)
        self._ops.wake.set()
        if wait and self.mode == "online":
            if not self._ops.wait_idle(timeout):
                raise SextantError("the upload of {} has not finished yet".format(artifact))
            reason = self._spool.rejected_dir / (op.name + ".reason.txt")
            if reason.exists():
                raise SextantError(
                    "the server refused {}: {}".format(artifact, reason.read_text().strip())
                )
        return artifact

    def _snapshot(self, info: Dict[str, Any]) -> None:
        try:
            seq = self._spool.next_seq()
            blob = self._spool.ops_dir / "{:012d}.tar.gz".format(seq)
            size = write_snapshot(info, blob)
            if size is None:
                return
            digest = hashlib.sha256(blob.read_bytes()).hexdigest()
            payload = {
                "path": SNAPSHOT_PATH,
                "kind": "code",
                "size": size,
                "sha256": digest,
                "content_type": "application/gzip",
                "file": blob.name,
            }
            atomic_write(
                self._spool.ops_dir / "{:012d}-artifact.json".format(seq),
                json.dumps(payload).encode("utf-8"),
            )
            self._ops.wake.set()
        except Exception as error:
            log.warning("sextant: no code snapshot: %s", error)

    # Lifecycle.

    def _start(
        self,
        capture_output: bool,
        system_metrics: bool,
        system_interval: float,
        git: Optional[Dict[str, Any]],
        code: bool,
    ) -> None:
        self._sender.start()
        if self._uploader is not None:
            self._ops.start()
        if capture_output:
            self._console = ConsoleCapture(self._console_line)
            self._console.start()
        if system_metrics:
            self._system = SystemMonitor(
                self._system_metrics, system_interval, first_step=self._system_step
            )
            self._system.start()
        if git is not None and code:
            self._snapshot_thread = threading.Thread(
                target=self._snapshot, args=(git,), name="sextant-snapshot", daemon=True
            )
            self._snapshot_thread.start()
        _install_hooks()
        _live_runs.add(self)

    def _on_abort(self) -> None:
        """Called by the sender when a response says the run was asked to stop."""
        self._abort_requested = True
        log.warning("sextant: run %s was asked to stop; ending it as aborted", self._run_id)
        callback = self._on_abort_callback
        if callback is None:
            if not self._finishing:
                global _abort_interrupt_pending
                _abort_interrupt_pending = True
                _thread.interrupt_main()
        else:
            threading.Thread(
                target=callback, args=(self,), name="sextant-abort", daemon=True
            ).start()

    def finish(self, status: Optional[str] = None, timeout: Optional[float] = None) -> bool:
        """Sends everything logged, then ends the run with ``status`` (default
        ``succeeded``, or ``aborted`` if an abort was requested). Waits at most
        ``timeout`` seconds (default ``finish_timeout`` of ``init``); what could not be
        sent stays in the spool for ``python -m sextant sync`` or the next ``init``.
        Answers whether everything reached the server. Calling it again does nothing.
        Under ``sextant agent`` the run is not ended here: the agent ends it from the
        command's exit status.
        """
        with self._finish_lock:
            if self._finished or self._finishing:
                return bool(self._finish_result)
            self._finishing = True
        if status is None:
            status = "aborted" if self._abort_requested else "succeeded"
        if status not in END_STATUSES:
            self._finishing = False
            raise ValueError("status is one of {}".format(", ".join(END_STATUSES)))
        self._status = status
        timeout = self._finish_timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        try:
            if self._console is not None:
                self._console.stop()
            if self._system is not None:
                self._system.stop()
            if self._snapshot_thread is not None:
                self._snapshot_thread.join(max(0.0, deadline - time.monotonic()))
            with self._lock:
                self._closed = True
            # Under an agent the agent ends the run from the exit status, once it has
            # stored every line printed, the traceback after the end of a failed run
            # included.
            if self._ends_run:
                self._spool.set_finish(status)
            ok = self._deliver(deadline)
        finally:
            self._finished = True
            _live_runs.discard(self)
        self._finish_result = ok
        return ok

    def _deliver(self, deadline: float) -> bool:
        if self._uploader is None:  # offline
            self._sender.stop(0.0)
            self._spool.meta["finished_at"] = time.time()
            self._spool.save_meta()
            self._spool.unlock()
            log.warning(
                "sextant: offline run saved in %s; upload it with `python -m sextant sync`",
                self._spool.path,
            )
            return False
        sent = self._sender.stop(max(0.0, deadline - time.monotonic()))
        uploaded = self._ops.stop(max(0.0, deadline - time.monotonic()))
        drained = False
        if sent and uploaded:
            try:
                drained = self._uploader.drain(deadline=deadline)
            except AuthError as error:
                log.warning("sextant: %s", error)
        if drained:
            retire(self._spool)
        else:
            pending = self._spool.pending()
            self._spool.unlock()
            log.warning(
                "sextant: could not send everything for run %s before the timeout "
                "(%d batches, %d files left); they are kept in %s and sent by "
                "`python -m sextant sync` or the next sextant.init",
                self._run_id,
                pending["batches"],
                pending["ops"],
                self._spool.path,
            )
        if self._client is not None:
            self._client.close()
        return drained

    def __enter__(self) -> "Run":
        return self

    def __exit__(self, kind: Optional[Type[BaseException]], value: Any, tb: Any) -> None:
        if kind is None:
            status = None
        elif issubclass(kind, KeyboardInterrupt):
            status = "aborted"
        elif issubclass(kind, SystemExit) and getattr(value, "code", None) in (0, None):
            status = None
        else:
            status = "failed"
        self.finish(status)


def _flat_params(params: Mapping[str, Any], prefix: str = "") -> Dict[str, Any]:
    """Params with nested names joined by ``/``, as the server stores them."""
    flat: Dict[str, Any] = {}
    for key, value in params.items():
        name = prefix + str(key)
        if isinstance(value, Mapping):
            flat.update(_flat_params(value, name + "/"))
        else:
            flat[name] = value
    return flat


def init(
    project: Optional[str] = None,
    name: Optional[str] = None,
    tags: Optional[Iterable[str]] = None,
    params: Optional[Mapping[str, Any]] = None,
    description: Optional[str] = None,
    *,
    run_id: Optional[str] = None,
    api_key: Optional[str] = None,
    url: Optional[str] = None,
    mode: Optional[str] = None,
    spool_dir: Optional[Union[str, "os.PathLike[str]"]] = None,
    on_abort: Optional[AbortCallback] = None,
    capture_output: Optional[bool] = None,
    system_metrics: bool = True,
    system_interval: float = 5.0,
    git: Optional[bool] = None,
    code: Optional[bool] = None,
    flush_interval: float = 5.0,
    flush_points: int = 10_000,
    heartbeat_interval: float = 15.0,
    finish_timeout: float = 60.0,
    timeout: float = 30.0,
    init_timeout: float = 30.0,
    sync_leftovers_on_init: bool = True,
    durable: bool = True,
) -> Run:
    """Starts (or, with ``run_id``, resumes) a run and answers it.

    ``project`` (or ``SEXTANT_PROJECT``) is created if missing. ``params`` nest
    (``{"model": {"depth": 12}}`` is stored as ``model/depth``). Credentials come from
    ``api_key``/``url`` or ``SEXTANT_API_KEY``/``SEXTANT_URL``.

    ``mode`` is ``"online"`` (default, or ``SEXTANT_MODE``) or ``"offline"``: log to
    the spool only, for ``python -m sextant sync`` later.

    ``on_abort(run)`` is called (on its own thread) when the run is asked to stop from
    the API; by default the main thread is interrupted (``KeyboardInterrupt``) and the
    run ends ``aborted``. Opt-outs: ``capture_output`` (stdout/stderr as the text
    series ``stdout``/``stderr``), ``system_metrics`` (every ``system_interval``
    seconds), ``git`` (commit, branch, remote, dirty) and ``code`` (a snapshot of the
    tracked files, uploaded as ``code/source.tar.gz``).

    Under ``sextant agent`` (``SEXTANT_RUN_ID`` set, and no ``run_id``), the run is
    the queued job's: ``init`` attaches to it instead of creating one, its params win
    over ``params`` (which only fill in names the job lacks; read them back from
    ``run.params``), its name stays, ``capture_output``, ``git`` and ``code`` default to
    off, since the agent already streams the output and the job has its snapshot, and
    the run is left for the agent to end from the command's exit status.

    Batches are sent every ``flush_interval`` seconds, or as soon as ``flush_points``
    points wait; a heartbeat goes out after ``heartbeat_interval`` quiet seconds.
    """
    mode = (mode or os.environ.get("SEXTANT_MODE") or "online").lower()
    if mode not in ("online", "offline"):
        raise ConfigError('mode is "online" or "offline", not {!r}'.format(mode))
    job_run = None if run_id is not None else os.environ.get("SEXTANT_RUN_ID") or None
    if job_run is not None:
        if mode == "offline":
            raise ConfigError(
                'SEXTANT_RUN_ID names a queued job\'s run to attach to, which needs mode="online"'
            )
        run_id = job_run
    under_agent = job_run is not None
    capture_output = not under_agent if capture_output is None else capture_output
    git = not under_agent if git is None else git
    code = not under_agent if code is None else code
    project = project or os.environ.get("SEXTANT_PROJECT")
    if not project and run_id is None:
        raise ConfigError("sextant.init needs a project (project=... or SEXTANT_PROJECT)")
    if run_id is not None and mode == "offline":
        raise ConfigError("resuming a run (run_id=...) needs mode=\"online\"")
    api_key, url = resolve_credentials(api_key, url, need=mode == "online")
    root = Path(spool_dir).expanduser() if spool_dir is not None else default_root()
    session = uuid.uuid4().hex[:12]
    tag_list = list(tags or [])
    params = dict(params or {})

    info = git_info(code_dir()) if git else None
    body: Dict[str, Any] = {}
    if name is not None:
        body["name"] = name
    if description is not None:
        body["description"] = description
    if tag_list:
        body["tags"] = tag_list
    if params:
        body["params"] = params
    if info is not None:
        body["git"] = run_git_fields(info)

    client: Optional[Client] = None
    kinds: Dict[str, str] = {}
    first_step = 0
    console_steps: Dict[str, int] = {}
    system_step = 0
    meta: Dict[str, Any] = {
        "version": 1,
        "url": url,
        "project": project,
        "mode": mode,
        "session": session,
        "pid": os.getpid(),
        "started_at": time.time(),
        "name": name,
    }
    if mode == "online":
        assert url is not None and api_key is not None
        deadline = time.monotonic() + init_timeout
        client = connect(url, api_key, timeout, deadline)
        if run_id is None:
            assert project is not None
            try:
                run = create_run(client, project, body, deadline)
            except ApiError as error:
                if error.status != 404:
                    raise
                log.info("sextant: creating project %s", project)
                try:
                    client.call("POST", "/v1/projects", {"name": project})
                except ApiError as exists:
                    if exists.code != codes.PROJECT_EXISTS:
                        raise
                run = create_run(client, project, body, deadline)
        else:
            try:
                run = client.call("GET", "/v1/runs/{}".format(run_id))
            except ApiError as error:
                if error.status == 404:
                    raise ConfigError("there is no run {} on {}".format(run_id, client.url)) from None
                raise
            if run["status"] in END_STATUSES:
                raise SextantError(
                    "run {} has ended ({}); an ended run takes no more points".format(
                        run_id, run["status"]
                    )
                )
            changes: Dict[str, Any] = {}
            # A queued job's run keeps what it was enqueued with.
            for field in ("git",) if under_agent else ("name", "description", "params", "git"):
                if field in body:
                    changes[field] = body[field]
            if under_agent:
                given = run.get("params") or {}
                defaults = {k: v for k, v in _flat_params(params).items() if k not in given}
                if defaults:
                    changes["params"] = defaults
            if tag_list:
                changes["tags"] = {"add": tag_list}
            if changes:
                run = client.call("PATCH", "/v1/runs/{}".format(run_id), changes)
            for summary_name, summary in (run.get("series") or {}).items():
                kinds[summary_name] = summary.get("kind", "numeric")
                after = int(summary.get("last_step", -1)) + 1
                if summary_name in ("stdout", "stderr"):
                    console_steps[summary_name] = after
                elif summary_name.startswith("system/"):
                    system_step = max(system_step, after)
                elif summary.get("kind") == "numeric":
                    first_step = max(first_step, after)
            # An earlier process of this run may have left an end to send: this one
            # takes over the run, so that end must not be sent.
            for leftover in list_spools(root):
                if leftover.meta.get("run_id") == run_id and leftover.try_lock():
                    leftover.clear_finish()
                    leftover.unlock()
        run_id = str(run["id"])
        name = str(run.get("name", name))
        run_params = run.get("params") or {}
        meta.update(run_id=run_id, name=name, project=project or run.get("project_id"))
        key = "{}.{}".format(run_id, session)
    else:
        run_params = _flat_params(params)
        meta["create"] = {"project": project, "body": body}
        key = "offline-{}-{}".format(time.strftime("%Y%m%d-%H%M%S"), session)

    spool = RunSpool.create(root, key, meta)
    if not spool.try_lock():  # pragma: no cover - a fresh directory
        raise SextantError("cannot lock the spool directory {}".format(spool.path))
    result = Run(
        spool=spool,
        client=client,
        project=str(meta["project"]),
        run_id=run_id,
        name=name,
        mode=mode,
        on_abort=on_abort,
        flush_interval=flush_interval,
        flush_points=flush_points,
        heartbeat_interval=heartbeat_interval,
        finish_timeout=finish_timeout,
        kinds=kinds,
        first_step=first_step,
        console_steps=console_steps,
        system_step=system_step,
        durable=durable,
        params=run_params,
        ends_run=not under_agent,
    )
    result._start(capture_output, system_metrics, system_interval, info, code)
    if client is not None and sync_leftovers_on_init:
        helper = Client(client.url, client.api_key, timeout=timeout)
        threading.Thread(
            target=sync_quietly,
            args=(helper, root, {key}),
            name="sextant-sync",
            daemon=True,
        ).start()
    return result
