"""Sending what is left in the spool: batches a crash or an outage kept from the
server, and runs logged offline. ``python -m sextant sync`` and ``sextant.sync()``
run it; ``sextant.init`` runs it in the background for earlier runs of its server.
"""

import logging
import os
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Set, Union

from ._config import connect, resolve_credentials
from ._http import Client, ConfigError, SextantError
from ._spool import RunSpool, default_root, list_spools
from ._uploader import Uploader

log = logging.getLogger("sextant")


def _normalize_url(url: Optional[str]) -> str:
    return (url or "").strip().rstrip("/").lower()


def retire(spool: RunSpool) -> None:
    """Removes a fully sent spool, keeping it (marked done) if something was refused."""
    if spool.rejected_dir.is_dir():
        spool.meta["done"] = True
        spool.save_meta()
        spool.unlock()
        log.warning("sextant: what the server refused is kept in %s", spool.rejected_dir)
    else:
        spool.remove()


def sync_spool(client: Client, spool: RunSpool, timeout: float) -> Dict[str, Any]:
    """Sends one spool (whose lock the caller holds) and removes it once empty."""
    uploader = Uploader(client, spool)
    result: Dict[str, Any] = {"spool": str(spool.path), "run_id": spool.meta.get("run_id")}
    try:
        drained = uploader.drain(deadline=time.monotonic() + timeout)
        result["ok"] = drained
        result["run_id"] = uploader.run_id
        if drained:
            retire(spool)
    except SextantError as error:  # AuthError included
        result["ok"] = False
        result["error"] = str(error)
    result.update(
        batches=uploader.sent_batches,
        points=uploader.sent_points,
        files=uploader.sent_ops,
        rejected=uploader.rejected,
    )
    return result


def sync_leftovers(
    client: Client,
    root: Path,
    exclude: Set[str],
    include_offline: bool = False,
    timeout: float = 120.0,
) -> List[Dict[str, Any]]:
    """Sends what earlier processes left in the spool for ``client``'s server (runs
    whose process has exited, so their lock is free). One summary per run."""
    results = []
    for spool in list_spools(root):
        meta = spool.meta
        if spool.key in exclude or meta.get("done"):
            continue
        if meta.get("mode") == "offline" and not include_offline:
            continue
        if _normalize_url(meta.get("url")) != _normalize_url(client.url):
            continue
        if not spool.try_lock():
            continue
        try:
            results.append(sync_spool(client, spool, timeout))
        finally:
            spool.unlock()
    return results


def sync_quietly(client: Client, root: Path, exclude: Set[str]) -> None:
    """``sync_leftovers`` for a background thread: failures are only logged."""
    try:
        for result in sync_leftovers(client, root, exclude):
            log.info("sextant: sent what an earlier process left: %s", result)
    except Exception:
        log.debug("sextant: syncing leftovers failed", exc_info=True)
    finally:
        client.close()


def sync(
    spool_dir: Optional[Union[str, "os.PathLike[str]"]] = None,
    url: Optional[str] = None,
    api_key: Optional[str] = None,
    offline: bool = True,
    online: bool = True,
    timeout: float = 300.0,
    only: Optional[List[str]] = None,
) -> List[Dict[str, Any]]:
    """Sends everything waiting in the spool and answers one summary per run
    (``{"spool", "run_id", "ok", "batches", "points", "files", "rejected"}``).

    Runs whose process is still alive (it holds their lock) are left to it. Each run
    goes to the server it was logged for, unless ``url`` (or, for offline runs logged
    without one, ``SEXTANT_URL``) says otherwise. ``only`` limits it to spools whose
    directory name or run id is listed.
    """
    root = Path(spool_dir).expanduser() if spool_dir is not None else default_root()
    key, env_url = resolve_credentials(api_key, None, need=False)
    if not key:
        raise ConfigError("sync needs an API key (api_key=... or SEXTANT_API_KEY)")
    clients: Dict[str, Client] = {}
    results: List[Dict[str, Any]] = []
    for spool in list_spools(root):
        meta = spool.meta
        if meta.get("done"):
            continue
        if only and spool.key not in only and meta.get("run_id") not in only:
            continue
        is_offline = meta.get("mode") == "offline"
        if (is_offline and not offline) or (not is_offline and not online):
            continue
        target = url or meta.get("url") or env_url
        if not target:
            results.append(
                {"spool": str(spool.path), "ok": False, "error": "no server URL: pass --url or set SEXTANT_URL"}
            )
            continue
        if not spool.try_lock():
            results.append({"spool": str(spool.path), "ok": False, "error": "in use by a running process"})
            continue
        try:
            normalized = _normalize_url(target)
            if normalized not in clients:
                clients[normalized] = connect(target, key, 30.0, time.monotonic() + 30.0)
            results.append(sync_spool(clients[normalized], spool, timeout))
        except SextantError as error:
            results.append({"spool": str(spool.path), "ok": False, "error": str(error)})
        finally:
            spool.unlock()
    for client in clients.values():
        client.close()
    return results
