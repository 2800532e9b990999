"""Sending a run's spool to the server: batches, images, artifacts, the end of the
run. Shared by the live background sender and ``python -m sextant sync``.

Each ``send_*`` method makes one attempt. It returns when the item is done with
(acknowledged, or refused for good and set aside in ``rejected/``) and raises a
retryable error (``TransientError``, 5xx/429 ``ApiError``) when it should be tried
again later with the very same bytes, or ``AuthError`` when the key is refused.
"""

import datetime
import functools
import hashlib
import logging
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, cast

from . import _codes as codes
from ._http import (
    ApiError,
    AuthError,
    Backoff,
    Client,
    SextantError,
    TransientError,
    call_with_retries,
    is_retryable,
    quote_name,
)
from ._spool import RunSpool

log = logging.getLogger("sextant")

# Upload URLs live 15 minutes; a multipart upload asks for fresh ones after 10.
URL_REFRESH_SECS = 10 * 60


def _rfc3339(unix: float) -> str:
    return datetime.datetime.fromtimestamp(unix, datetime.timezone.utc).strftime(
        "%Y-%m-%dT%H:%M:%SZ"
    )


def _same_run_request(run: Dict[str, Any], body: Dict[str, Any]) -> bool:
    """Whether ``run`` (as the server lists it) is what ``body`` asked to create."""
    if "name" in body and run.get("name") != body["name"]:
        return False
    if run.get("description", "") != body.get("description", ""):
        return False
    if sorted(run.get("tags") or []) != sorted(set(body.get("tags") or [])):
        return False
    return not run.get("series")


def create_run(
    client: Client,
    project: str,
    body: Dict[str, Any],
    deadline: Optional[float] = None,
    should_stop: Optional[Callable[[], bool]] = None,
) -> Dict[str, Any]:
    """Creates a run, retrying network failures and 5xx until ``deadline``.

    Creating a run has no idempotency key, so an attempt whose answer was lost may
    have created it: before trying again, the project's runs created since the first
    attempt are searched for one with this name, description and tags and no points,
    which is then taken instead of creating a second.
    """
    path = "/v1/projects/{}/runs".format(quote_name(project))
    started = time.time()
    ambiguous = [False]

    def attempt() -> Dict[str, Any]:
        if ambiguous[0]:
            query = {"created_after": _rfc3339(started - 5), "limit": 50}
            if body.get("name"):
                query["name"] = body["name"]
            listed = client.call("GET", path, query=query)
            for run in listed.get("runs", []):
                if _same_run_request(run, body):
                    return cast(Dict[str, Any], run)
        try:
            return cast(Dict[str, Any], client.call("POST", path, body))
        except (TransientError, ApiError) as error:
            if is_retryable(error):
                ambiguous[0] = True
            raise

    return call_with_retries(attempt, deadline=deadline, should_stop=should_stop)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class Uploader:
    """Sends one run's spool. Not thread-safe by itself: the live run gives batches to
    one thread and operations to another, which touch different files."""

    def __init__(
        self,
        client: Client,
        spool: RunSpool,
        on_abort: Optional[Callable[[], None]] = None,
    ) -> None:
        self.client = client
        self.spool = spool
        self.on_abort = on_abort
        self.abort_requested = False
        #: The run ended on the server (someone else ended it): nothing more is taken.
        self.ended: Optional[str] = None
        self.sent_batches = 0
        self.sent_points = 0
        self.sent_ops = 0
        self.rejected = 0

    @property
    def run_id(self) -> Optional[str]:
        return self.spool.meta.get("run_id")

    def _run_path(self, suffix: str = "") -> str:
        run_id = self.run_id
        if not run_id:
            raise SextantError("the run has not been created on the server yet")
        return "/v1/runs/{}{}".format(run_id, suffix)

    # The run itself.

    def ensure_run(
        self, deadline: Optional[float] = None, should_stop: Optional[Callable[[], bool]] = None
    ) -> str:
        """The run's id, creating the run first for a spool logged offline."""
        if self.run_id:
            return self.run_id
        create = self.spool.meta.get("create")
        if not create:
            raise SextantError("spool {} names no run".format(self.spool.path))
        run = create_run(
            self.client, create["project"], create["body"], deadline, should_stop
        )
        self.spool.meta["run_id"] = run["id"]
        self.spool.meta["synced_at"] = time.time()
        self.spool.save_meta()
        return str(run["id"])

    def _answer(self, answer: Any) -> None:
        if isinstance(answer, dict) and answer.get("abort_requested") and not self.abort_requested:
            self.abort_requested = True
            if self.on_abort is not None:
                try:
                    self.on_abort()
                except Exception:  # a user callback must not stop the sender
                    log.exception("sextant: the abort callback failed")

    def _refused(self, path: Path, error: ApiError, what: str) -> None:
        """Sets aside an item the server refused for good."""
        if error.code == codes.RUN_ENDED:
            if self.ended is None:
                log.warning(
                    "sextant: run %s has ended on the server; what it is still sent is "
                    "kept in %s",
                    self.run_id,
                    self.spool.rejected_dir,
                )
            self.ended = error.message or "ended"
        else:
            log.warning("sextant: the server refused %s: %s", what, error)
        self.rejected += 1
        self.spool.reject(path, str(error))

    def _classify(self, error: BaseException) -> None:
        """Re-raises what the caller must handle (retry later, or a refused key)."""
        if isinstance(error, AuthError) or (
            isinstance(error, (ApiError, TransientError)) and is_retryable(error)
        ):
            raise error

    # Batches.

    def send_batch(
        self, path: Optional[Path], body: Optional[bytes] = None
    ) -> Optional[Dict[str, Any]]:
        """Sends one spooled batch (the file's bytes, unchanged) and removes it once
        acknowledged. Answers the server's answer, or None if refused for good.
        (``path`` is None for a batch the spool could not store: ``body`` only.)"""
        if body is None:
            if path is None:
                return None
            try:
                body = path.read_bytes()
            except FileNotFoundError:
                return None  # already sent by another sender
        try:
            answer = self.client.request(
                "POST", self._run_path("/log"), raw_body=body
            ).json()
        except (ApiError, TransientError) as error:
            self._classify(error)
            assert isinstance(error, ApiError)
            if path is None:
                log.warning("sextant: the server refused a log batch: %s", error)
                self.rejected += 1
            else:
                self._refused(path, error, "a log batch ({})".format(path.name))
            return None
        if path is not None:
            self.spool.ack(path)
        self.sent_batches += 1
        self.sent_points += int(answer.get("accepted", 0)) if isinstance(answer, dict) else 0
        self._answer(answer)
        return cast(Optional[Dict[str, Any]], answer)

    def heartbeat(self) -> Dict[str, Any]:
        """Tells the server the run is alive; answers whether it should stop."""
        answer = self.client.call("POST", self._run_path("/log"), {"heartbeat": True})
        self._answer(answer)
        return cast(Dict[str, Any], answer)

    # Operations.

    def send_op(self, path: Path) -> None:
        """Performs one spooled operation (image, artifact) and removes it once done."""
        try:
            payload = self.spool.read_op(path)
        except FileNotFoundError:
            return
        kind = path.name.split("-", 1)[1][: -len(".json")]
        try:
            if kind == "image":
                self._send_image(path, payload)
            elif kind == "artifact":
                self._send_artifact(path, payload)
            else:
                raise ApiError(400, "unknown_op", "unknown spooled operation " + kind)
        except (ApiError, TransientError) as error:
            self._classify(error)
            assert isinstance(error, ApiError)
            self._refused(path, error, "{} {}".format(kind, payload.get("path") or payload.get("series")))
            return
        except FileNotFoundError as error:
            self.rejected += 1
            log.warning("sextant: cannot upload %s: %s", payload.get("path"), error)
            self.spool.reject(path, "file missing: {}".format(error))
            return
        self.spool.ack(path)
        self.sent_ops += 1

    def _send_image(self, path: Path, payload: Dict[str, Any]) -> None:
        series, step = payload["series"], int(payload["step"])
        # The server names an image by its series, step and bytes, so sending it again
        # after an attempt that got no answer stores and counts nothing twice.
        data = self.spool.op_file(payload).read_bytes()
        self.client.request(
            "POST",
            self._run_path("/images"),
            query={"series": series, "step": step},
            raw_body=data,
            content_type=payload.get("content_type", "application/octet-stream"),
        )

    def _send_artifact(self, path: Path, payload: Dict[str, Any]) -> None:
        source = self.spool.op_file(payload)
        if not payload.get("sha256"):  # uploaded from its original place: hashed now
            payload["size"] = source.stat().st_size
            payload["sha256"] = sha256_file(source)
            self.spool.update_op(path, payload)
        registration = {
            "path": payload["path"],
            "size": payload["size"],
            "sha256": payload["sha256"],
            "kind": payload.get("kind", "file"),
        }
        for field in ("step", "content_type"):
            if payload.get(field) is not None:
                registration[field] = payload[field]
        try:
            plan = self.client.call("POST", self._run_path("/artifacts"), registration)
        except ApiError as error:
            if error.code == codes.ARTIFACT_EXISTS and self._artifact_stored(payload):
                return  # an earlier attempt sealed it
            raise
        planned_at = time.monotonic()
        completion: Dict[str, Any] = {"path": payload["path"]}
        with open(source, "rb") as file:
            if "upload" in plan:
                upload = plan["upload"]
                self.client.put_file(
                    upload["url"], file, 0, int(payload["size"]), upload.get("headers")
                )
            else:
                if payload.get("upload_id") != plan["upload_id"]:
                    payload["upload_id"] = plan["upload_id"]
                    payload["etags"] = {}
                etags: Dict[str, str] = payload.setdefault("etags", {})
                part_size = int(plan["part_size"])
                urls = {str(part["number"]): part["url"] for part in plan["parts"]}
                for part in plan["parts"]:
                    number = str(part["number"])
                    if number in etags:
                        continue
                    if time.monotonic() - planned_at > URL_REFRESH_SECS:
                        # Upload URLs live minutes: registering again answers fresh
                        # ones for the same upload.
                        plan = self.client.call(
                            "POST", self._run_path("/artifacts"), registration
                        )
                        planned_at = time.monotonic()
                        urls = {str(p["number"]): p["url"] for p in plan["parts"]}
                    etag = self.client.put_file(
                        urls[number], file, (int(number) - 1) * part_size, int(part["size"])
                    )
                    if not etag:
                        raise TransientError("the blob store answered a part without an ETag")
                    etags[number] = etag
                    self.spool.update_op(path, payload)  # resumes after a crash
                completion["parts"] = [
                    {"number": int(n), "etag": e}
                    for n, e in sorted(etags.items(), key=lambda item: int(item[0]))
                ]
        # A large upload is checked a slice per call: complete until it is sealed.
        while True:
            sealed = self.client.call("POST", self._run_path("/artifacts/complete"), completion)
            if sealed.get("status") != "verifying":
                return

    def _artifact_stored(self, payload: Dict[str, Any]) -> bool:
        listed = self.client.call("GET", self._run_path("/artifacts"))
        for artifact in listed.get("artifacts", []):
            if artifact.get("path") == payload["path"]:
                return bool(str(artifact.get("sha256")) == payload["sha256"])
        return False

    # The end.

    def send_finish(self) -> None:
        """Ends the run with the status recorded in the spool."""
        status = self.spool.finish_status()
        if status is None:
            return
        try:
            self.client.call("PATCH", self._run_path(), {"status": status})
        except ApiError as error:
            if error.code != codes.RUN_ENDED or is_retryable(error):
                raise
            log.warning("sextant: run %s had already ended: %s", self.run_id, error.message)
        self.spool.clear_finish()

    # Everything.

    def drain(
        self,
        deadline: Optional[float] = None,
        should_stop: Optional[Callable[[], bool]] = None,
        finish: bool = True,
    ) -> bool:
        """Sends everything in the spool, retrying with backoff until ``deadline``
        (a ``time.monotonic()`` value; None waits as long as it takes). Answers
        whether the spool is now empty. ``AuthError`` propagates."""
        backoff = Backoff()

        def retrying(action: Callable[[], Any]) -> Any:
            result = call_with_retries(
                action, deadline=deadline, backoff=backoff, should_stop=should_stop
            )
            backoff.reset()
            return result

        try:
            if not self.run_id:
                self.ensure_run(deadline, should_stop)
            for path in self.spool.batches():
                retrying(functools.partial(self.send_batch, path))
            for path in self.spool.ops():
                retrying(functools.partial(self.send_op, path))
            if finish and not self.spool.batches() and not self.spool.ops():
                retrying(self.send_finish)
        except AuthError:
            raise
        except (TransientError, ApiError) as error:
            log.warning("sextant: gave up sending %s for now: %s", self.spool.path, error)
            return False
        return not self.spool.batches() and not self.spool.ops() and (
            not finish or self.spool.finish_status() is None
        )


def summarize(uploader: Uploader) -> List[str]:
    parts = []
    if uploader.sent_batches:
        parts.append("{} batches ({} points)".format(uploader.sent_batches, uploader.sent_points))
    if uploader.sent_ops:
        parts.append("{} files".format(uploader.sent_ops))
    if uploader.rejected:
        parts.append("{} refused".format(uploader.rejected))
    return parts
