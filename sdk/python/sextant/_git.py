"""The git state of the code a run executes, and a snapshot of that code.

The snapshot has the layout ``sextant upload --code`` writes (and ``sextant download
--code`` restores): a gzipped tar of the git-tracked files as they are in the working
tree (uncommitted edits included), ``uncommitted.diff`` against ``HEAD``, and
``sextant-snapshot.json`` with the commit, branch, remote and dirty flag.
"""

import gzip
import io
import json
import logging
import os
import subprocess
import sys
import tarfile
import time
import urllib.parse
from pathlib import Path
from typing import Any, Dict, Optional

log = logging.getLogger("sextant")

SNAPSHOT_PATH = "code/source.tar.gz"
#: Snapshots of more source than this are skipped (a repository holding data).
MAX_SNAPSHOT_SOURCE_BYTES = 100 * 1024 * 1024


def _git(root: Path, *args: str, timeout: float = 20.0) -> bytes:
    return subprocess.run(
        ["git", "-C", str(root)] + list(args),
        capture_output=True,
        timeout=timeout,
        check=True,
    ).stdout


def _text(root: Path, *args: str) -> str:
    return _git(root, *args).decode("utf-8", "replace").strip()


def code_dir() -> Path:
    """Where the running program's code is: the directory of the script Python runs
    (``python train.py``), else the working directory (``python -m package``, which
    runs from the project, and interactive sessions)."""
    main = sys.modules.get("__main__")
    script = getattr(main, "__file__", None)
    if script and getattr(main, "__spec__", None) is None:
        return Path(script).resolve().parent
    return Path.cwd()


def strip_credentials(remote: str) -> str:
    """A remote URL without a user or password in it."""
    try:
        parts = urllib.parse.urlsplit(remote)
    except ValueError:
        return remote
    if parts.scheme and "@" in parts.netloc:
        host = parts.netloc.rsplit("@", 1)[1]
        return urllib.parse.urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))
    return remote


def git_info(directory: Optional[Path] = None) -> Optional[Dict[str, Any]]:
    """``{root, commit, branch, remote?, dirty}`` of the repository holding
    ``directory``, or None outside a repository (or without git)."""
    directory = directory or code_dir()
    try:
        root = Path(_text(directory, "rev-parse", "--show-toplevel"))
        info: Dict[str, Any] = {
            "root": str(root),
            "commit": _text(root, "rev-parse", "HEAD"),
            "branch": _text(root, "rev-parse", "--abbrev-ref", "HEAD"),
            "dirty": bool(_git(root, "status", "--porcelain").strip()),
        }
    except (OSError, subprocess.SubprocessError):
        return None
    try:
        info["remote"] = strip_credentials(_text(root, "config", "--get", "remote.origin.url"))
    except (OSError, subprocess.SubprocessError):
        pass
    return info


def run_git_fields(info: Dict[str, Any]) -> Dict[str, Any]:
    """The ``git`` object of a run, from ``git_info``."""
    return {k: info[k] for k in ("commit", "branch", "remote", "dirty") if k in info}


def write_snapshot(info: Dict[str, Any], out: Path) -> Optional[int]:
    """Writes the snapshot of ``info["root"]`` to ``out``; answers its size, or None
    when there is too much source to snapshot."""
    root = Path(info["root"])
    names = [n for n in _git(root, "ls-files", "-z").decode("utf-8", "replace").split("\0") if n]
    files = []
    total = 0
    for name in names:
        path = root / name
        try:
            stat = path.lstat()
        except OSError:
            continue  # deleted in the working tree: not in the snapshot
        total += stat.st_size
        files.append((name, path))
    if total > MAX_SNAPSHOT_SOURCE_BYTES:
        log.warning(
            "sextant: not snapshotting the code: %d MB of tracked files (limit %d MB)",
            total // 2**20,
            MAX_SNAPSHOT_SOURCE_BYTES // 2**20,
        )
        return None
    diff = _git(root, "diff", "HEAD", timeout=60.0)
    meta = json.dumps(run_git_fields(info), indent=2).encode("utf-8")
    tmp = out.with_name(".tmp-" + out.name)
    with open(tmp, "wb") as raw:
        with gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as zipped:
            with tarfile.open(fileobj=zipped, mode="w", format=tarfile.GNU_FORMAT) as tar:
                for name, path in files:
                    try:
                        tar.add(str(path), arcname=name, recursive=False)
                    except OSError:
                        continue
                for name, data in (("uncommitted.diff", diff), ("sextant-snapshot.json", meta)):
                    member = tarfile.TarInfo(name)
                    member.size = len(data)
                    member.mode = 0o644
                    member.mtime = int(time.time())
                    tar.addfile(member, io.BytesIO(data))
    os.replace(tmp, out)
    return out.stat().st_size
