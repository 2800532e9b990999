"""The spool: a directory per run where everything bound for the server waits until
the server has acknowledged it.

Layout of one run's directory (``<root>/<key>/``)::

    run.json                          the server, project, run id (or, offline, the run
                                      to create) and how far console lines got
    lock                              held (flock) by the process writing to the run
    batches/000000000007-<id>.json    a log batch, exactly the bytes to send
    ops/000000000008-image.json       an image, artifact or code snapshot to send,
    ops/000000000008.bin              with its bytes when they were copied
    rejected/                         what the server refused for good, kept to inspect
    finish.json                       the status to end the run with, once sent all

Every file is written to a temporary name, flushed to disk and renamed, so a crash
leaves either the whole file or nothing. A batch is removed only after the server
answered it with success, and is re-sent with the same bytes (so the same batch id and
content) until then, which the server stores exactly once.
"""

import json
import os
import shutil
import threading
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Union

try:  # POSIX
    import fcntl
except ImportError:  # pragma: no cover - Windows: locking is best effort
    fcntl = None  # type: ignore[assignment]

#: Whether the run's lock keeps every other process from sending its batches, so a
#: session's batches reach the server in order (see ``BatchBuilder``).
ORDERED = fcntl is not None

PathLike = Union[str, "os.PathLike[str]"]

META = "run.json"
FINISH = "finish.json"


def default_root() -> Path:
    """``$SEXTANT_SPOOL_DIR``, else ``$XDG_CACHE_HOME/sextant/spool``, else
    ``~/.cache/sextant/spool``."""
    explicit = os.environ.get("SEXTANT_SPOOL_DIR")
    if explicit:
        return Path(explicit).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME")
    base = Path(cache).expanduser() if cache else Path.home() / ".cache"
    return base / "sextant" / "spool"


def atomic_write(path: Path, data: bytes, durable: bool = True) -> None:
    """Writes ``data`` to ``path`` so that readers (and a crash) see all of it or none."""
    tmp = path.with_name(".tmp-{}-{}".format(os.getpid(), path.name))
    with open(tmp, "wb") as file:
        file.write(data)
        file.flush()
        if durable:
            os.fsync(file.fileno())
    os.replace(tmp, path)


def _seq_of(name: str) -> int:
    head = name.split("-", 1)[0].split(".", 1)[0]
    return int(head) if head.isdigit() else 0


class RunSpool:
    """One run's spool directory."""

    def __init__(self, path: PathLike) -> None:
        self.path = Path(path)
        self.batch_dir = self.path / "batches"
        self.ops_dir = self.path / "ops"
        self.rejected_dir = self.path / "rejected"
        self._lock_fd: Optional[int] = None
        self._seq_lock = threading.Lock()
        self._seq = 0
        self.meta: Dict[str, Any] = {}
        if (self.path / META).exists():
            self.meta = json.loads((self.path / META).read_text("utf-8"))
        self._seq = max([_seq_of(p.name) for p in self._listing()] + [0])

    # Creation and metadata.

    @classmethod
    def create(cls, root: PathLike, key: str, meta: Dict[str, Any]) -> "RunSpool":
        """Creates (or reopens) ``root/key`` with ``meta`` merged into its metadata."""
        path = Path(root) / key
        for sub in ("batches", "ops"):
            (path / sub).mkdir(parents=True, exist_ok=True)
        spool = cls(path)
        spool.meta.update(meta)
        spool.save_meta()
        return spool

    @property
    def key(self) -> str:
        return self.path.name

    def exists(self) -> bool:
        return (self.path / META).exists()

    def save_meta(self) -> None:
        atomic_write(self.path / META, json.dumps(self.meta, indent=1).encode("utf-8"))

    # Locking: one process at a time sends a run's spool.

    def try_lock(self) -> bool:
        """Takes the run's lock without waiting; False if another process holds it
        (or the directory is gone)."""
        if self._lock_fd is not None:
            return True
        try:
            fd = os.open(str(self.path / "lock"), os.O_RDWR | os.O_CREAT, 0o644)
        except OSError:
            return False
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                return False
        if not self.exists():  # removed by its owner while we waited
            os.close(fd)
            return False
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._lock_fd = fd
        return True

    def unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing releases the flock
            self._lock_fd = None

    @property
    def locked(self) -> bool:
        return self._lock_fd is not None

    # Batches.

    def next_seq(self) -> int:
        """The next number for a file; files sort in the order they were numbered."""
        with self._seq_lock:
            self._seq += 1
            return self._seq

    def write_batch(self, batch_id: str, body: bytes, durable: bool = True) -> Path:
        """Stores a batch before it is sent; answers its file."""
        path = self.batch_dir / "{:012d}-{}.json".format(self.next_seq(), batch_id)
        atomic_write(path, body, durable)
        return path

    def batches(self) -> List[Path]:
        """Unacknowledged batches, oldest first."""
        return self._files(self.batch_dir, ".json")

    def ack(self, path: Path) -> None:
        """The server has the batch (or op): forget it."""
        try:
            path.unlink()
        except FileNotFoundError:
            pass
        if path.parent == self.ops_dir:
            for blob in self.ops_dir.glob("{}.*".format(path.name.split("-", 1)[0])):
                if blob.suffix != ".json":
                    blob.unlink()

    def reject(self, path: Path, reason: str) -> Path:
        """The server refused the batch (or op) for good: keep it aside with why."""
        self.rejected_dir.mkdir(exist_ok=True)
        target = self.rejected_dir / path.name
        os.replace(path, target)
        if path.parent == self.ops_dir:
            for blob in self.ops_dir.glob("{}.*".format(path.name.split("-", 1)[0])):
                if blob.suffix != ".json":
                    os.replace(blob, self.rejected_dir / blob.name)
        (self.rejected_dir / (path.name + ".reason.txt")).write_text(reason + "\n", "utf-8")
        return target

    # Operations: images, artifacts, snapshots.

    def add_op(
        self,
        kind: str,
        payload: Dict[str, Any],
        data: Optional[bytes] = None,
        copy_from: Optional[PathLike] = None,
        suffix: str = ".bin",
    ) -> Path:
        """Queues an operation; its bytes (``data``, or a copy of the file
        ``copy_from``) are stored next to it and named in ``payload["file"]``."""
        seq = self.next_seq()
        payload = dict(payload)
        if data is not None or copy_from is not None:
            blob = self.ops_dir / "{:012d}{}".format(seq, suffix)
            if data is not None:
                atomic_write(blob, data)
            else:
                tmp = blob.with_name(".tmp-" + blob.name)
                shutil.copyfile(str(copy_from), str(tmp))
                os.replace(tmp, blob)
            payload["file"] = blob.name
        path = self.ops_dir / "{:012d}-{}.json".format(seq, kind)
        atomic_write(path, json.dumps(payload).encode("utf-8"))
        return path

    def ops(self) -> List[Path]:
        """Pending operations, oldest first."""
        return self._files(self.ops_dir, ".json")

    @staticmethod
    def read_op(path: Path) -> Dict[str, Any]:
        payload: Dict[str, Any] = json.loads(path.read_text("utf-8"))
        return payload

    @staticmethod
    def update_op(path: Path, payload: Dict[str, Any]) -> None:
        atomic_write(path, json.dumps(payload).encode("utf-8"))

    def op_file(self, payload: Dict[str, Any]) -> Path:
        """The bytes an operation carries: a copy in the spool or the original file."""
        if "file" in payload:
            return self.ops_dir / str(payload["file"])
        return Path(str(payload["source"]))

    # Finishing.

    def set_finish(self, status: str) -> None:
        atomic_write(
            self.path / FINISH,
            json.dumps({"status": status, "at": time.time()}).encode("utf-8"),
        )

    def finish_status(self) -> Optional[str]:
        try:
            return str(json.loads((self.path / FINISH).read_text("utf-8"))["status"])
        except (OSError, ValueError, KeyError):
            return None

    def clear_finish(self) -> None:
        try:
            (self.path / FINISH).unlink()
        except FileNotFoundError:
            pass

    def pending(self) -> Dict[str, int]:
        """How much is waiting: batches, ops, and whether the end is still to send."""
        return {
            "batches": len(self.batches()),
            "ops": len(self.ops()),
            "finish": 1 if self.finish_status() else 0,
        }

    def is_drained(self) -> bool:
        return not self.batches() and not self.ops() and self.finish_status() is None

    def remove(self) -> None:
        """Deletes the directory (everything in it was sent)."""
        shutil.rmtree(str(self.path), ignore_errors=True)
        self.unlock()

    # Helpers.

    def _files(self, directory: Path, suffix: str) -> List[Path]:
        try:
            names = [
                p for p in directory.iterdir() if p.name.endswith(suffix) and not p.name.startswith(".")
            ]
        except FileNotFoundError:
            return []
        return sorted(names, key=lambda p: p.name)

    def _listing(self) -> Iterator[Path]:
        for directory in (self.batch_dir, self.ops_dir, self.rejected_dir):
            if directory.is_dir():
                for entry in directory.iterdir():
                    if not entry.name.startswith("."):
                        yield entry


def list_spools(root: Optional[PathLike] = None) -> List[RunSpool]:
    """Every run directory under the spool root, oldest first."""
    base = Path(root) if root is not None else default_root()
    if not base.is_dir():
        return []
    spools = []
    for entry in sorted(base.iterdir(), key=lambda p: p.name):
        if entry.is_dir() and (entry / META).exists():
            try:
                spools.append(RunSpool(entry))
            except (OSError, ValueError):
                continue
    return spools
