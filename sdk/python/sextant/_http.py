"""The HTTP client: persistent connections on ``http.client``, the server's error
envelope turned into exceptions, access tokens traded for the API key, and the retry
policy (exponential backoff with jitter that honours ``Retry-After``).
"""

import http.client
import json
import math
import random
import socket
import ssl
import threading
import time
import urllib.parse
from typing import IO, Any, Callable, Dict, Mapping, Optional, Tuple, TypeVar, Union

from . import _codes as codes
from ._version import __version__

T = TypeVar("T")

USER_AGENT = "sextant-python/" + __version__


class SextantError(Exception):
    """Base class of every error the SDK raises."""


class ConfigError(SextantError):
    """Missing or invalid configuration (no API key, no server URL, bad arguments)."""


class ApiError(SextantError):
    """The server answered with an error status.

    ``code`` and ``message`` come from the server's ``{"error": {...}}`` envelope;
    ``retry_after`` holds the ``Retry-After`` header in seconds when one was sent.
    """

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        retry_after: Optional[float] = None,
        url: str = "",
    ) -> None:
        super().__init__("{} ({}): {}".format(code, status, message))
        self.status = status
        self.code = code
        self.message = message
        self.retry_after = retry_after
        self.url = url


class AuthError(ApiError):
    """The credential was refused (401) or lacks the role for the call (403)."""


class TransientError(SextantError):
    """The request did not get an answer: the connection failed, was reset or timed
    out. The request may or may not have reached the server."""


def is_retryable(error: BaseException) -> bool:
    """Whether sending the same request again later may succeed: network failures,
    5xx, 429 and the server's optimistic-concurrency 409."""
    if isinstance(error, TransientError):
        return True
    if isinstance(error, ApiError) and not isinstance(error, AuthError):
        return (
            error.status >= 500
            or error.status in (408, 429)
            or error.code == codes.CONCURRENT_UPDATE
        )
    return False


def parse_retry_after(value: Optional[str]) -> Optional[float]:
    """``Retry-After`` in seconds: delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
        return max(0.0, seconds) if math.isfinite(seconds) else None
    except ValueError:
        pass
    try:
        from email.utils import parsedate_to_datetime

        when = parsedate_to_datetime(value)
        return max(0.0, when.timestamp() - time.time())
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


class Backoff:
    """Delays between attempts: ``initial``, doubling up to ``maximum``, each with up
    to ``jitter`` (a fraction) added at random, so many clients do not retry in step.
    A server's ``Retry-After`` is honoured: the delay is never shorter than it."""

    def __init__(
        self,
        initial: float = 0.5,
        maximum: float = 30.0,
        factor: float = 2.0,
        jitter: float = 0.2,
        rng: Optional[random.Random] = None,
    ) -> None:
        self.initial = initial
        self.maximum = maximum
        self.factor = factor
        self.jitter = jitter
        self.failures = 0
        self._rng = rng or random.Random()

    def next_delay(self, retry_after: Optional[float] = None) -> float:
        """The delay before the next attempt, after one more failure."""
        base = min(self.maximum, self.initial * (self.factor ** self.failures))
        self.failures += 1
        delay = base * (1.0 + self.jitter * self._rng.random())
        if retry_after is not None:
            delay = max(delay, retry_after)
        return delay

    def reset(self) -> None:
        """Forgets past failures, after a success."""
        self.failures = 0


def call_with_retries(
    attempt: Callable[[], T],
    deadline: Optional[float] = None,
    backoff: Optional[Backoff] = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    should_stop: Optional[Callable[[], bool]] = None,
) -> T:
    """Calls ``attempt`` until it succeeds or fails with an error that is not
    retryable, sleeping by ``backoff`` in between; gives up (raising the last error)
    once the next attempt would start after ``deadline`` (a ``clock`` value)."""
    backoff = backoff or Backoff()
    while True:
        try:
            return attempt()
        except (TransientError, ApiError) as error:
            if not is_retryable(error):
                raise
            retry_after = error.retry_after if isinstance(error, ApiError) else None
            delay = backoff.next_delay(retry_after)
            if deadline is not None and clock() + delay > deadline:
                raise
            if should_stop is not None and should_stop():
                raise
            sleep(delay)


# Floats --------------------------------------------------------------------------

_NONFINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


def encode_float(value: float) -> Union[float, str]:
    """A float as the API carries it: a number, or "NaN", "Infinity", "-Infinity"."""
    if value - value == 0.0:
        return value
    if value != value:
        return "NaN"
    return "Infinity" if value > 0 else "-Infinity"


def decode_float(value: Union[float, int, str, None]) -> float:
    """A value as the API answers it, back to a float."""
    if isinstance(value, str):
        return _NONFINITE[value]
    if value is None:
        return math.nan
    return float(value)


def dumps(body: Any) -> bytes:
    """Compact JSON; refuses bare NaN/Infinity, which are not JSON."""
    return json.dumps(body, separators=(",", ":"), allow_nan=False, ensure_ascii=False).encode(
        "utf-8"
    )


# The client ----------------------------------------------------------------------


class Response:
    """A complete HTTP answer."""

    def __init__(self, status: int, headers: Mapping[str, str], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    def json(self) -> Any:
        return json.loads(self.body.decode("utf-8")) if self.body else None


class _RangeReader:
    """``length`` bytes of a file from ``offset``, read in blocks by ``http.client``."""

    def __init__(self, file: IO[bytes], offset: int, length: int) -> None:
        file.seek(offset)
        self._file = file
        self._left = length

    def read(self, size: int = -1) -> bytes:
        if self._left <= 0:
            return b""
        if size < 0 or size > self._left:
            size = self._left
        chunk = self._file.read(size)
        self._left -= len(chunk)
        return chunk


def _error_from(response: Response, url: str) -> ApiError:
    code, message = "http_{}".format(response.status), "the server answered {}".format(
        response.status
    )
    try:
        error = response.json()["error"]
        code, message = str(error["code"]), str(error.get("message", ""))
    except (ValueError, KeyError, TypeError, AttributeError):
        pass
    retry_after = parse_retry_after(response.headers.get("retry-after"))
    cls = AuthError if response.status in (401, 403) else ApiError
    return cls(response.status, code, message, retry_after, url)


class Client:
    """A Sextant server and the API key to act with.

    Thread-safe: each thread keeps its own persistent connection. Control-plane calls
    and log batches carry a 15-minute access token traded for the API key (verified by
    the server without a database read); the key itself is sent only to trade it.
    """

    def __init__(
        self,
        url: str,
        api_key: str,
        timeout: float = 30.0,
        use_tokens: bool = True,
    ) -> None:
        parsed = urllib.parse.urlsplit(url.strip())
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise ConfigError(
                "the Sextant URL must look like http(s)://host[:port], not {!r}".format(url)
            )
        self.url = urllib.parse.urlunsplit(
            (parsed.scheme, parsed.netloc, parsed.path.rstrip("/"), "", "")
        )
        self._base_path = parsed.path.rstrip("/")
        self.api_key = api_key
        self.timeout = timeout
        self._use_tokens = use_tokens
        self._token: Optional[str] = None
        self._token_expires = 0.0
        self._token_lock = threading.Lock()
        self._local = threading.local()

    # Connections.

    def _connection(self, scheme: str, netloc: str) -> http.client.HTTPConnection:
        pool: Dict[Tuple[str, str], http.client.HTTPConnection] = getattr(
            self._local, "pool", None
        ) or {}
        self._local.pool = pool
        connection = pool.get((scheme, netloc))
        if connection is None:
            if scheme == "https":
                connection = http.client.HTTPSConnection(
                    netloc,
                    timeout=self.timeout,
                    context=ssl.create_default_context(),
                    blocksize=1 << 20,
                )
            else:
                connection = http.client.HTTPConnection(
                    netloc, timeout=self.timeout, blocksize=1 << 20
                )
            pool[(scheme, netloc)] = connection
        return connection

    def _drop(self, scheme: str, netloc: str) -> None:
        pool = getattr(self._local, "pool", {})
        connection = pool.pop((scheme, netloc), None)
        if connection is not None:
            connection.close()

    def close(self) -> None:
        """Closes this thread's connections."""
        for connection in getattr(self._local, "pool", {}).values():
            connection.close()
        self._local.pool = {}

    def raw(
        self,
        method: str,
        url: str,
        body: Union[bytes, "_RangeReader", None] = None,
        headers: Optional[Mapping[str, str]] = None,
    ) -> Response:
        """Sends one request to an absolute URL and reads the whole answer. Network
        failures raise ``TransientError``; HTTP errors are returned, not raised."""
        parts = urllib.parse.urlsplit(url)
        target = parts.path or "/"
        if parts.query:
            target += "?" + parts.query
        all_headers = {"User-Agent": USER_AGENT}
        all_headers.update(headers or {})
        if isinstance(body, bytes):
            all_headers["Content-Length"] = str(len(body))
        for attempt in (0, 1):
            connection = self._connection(parts.scheme, parts.netloc)
            reused = connection.sock is not None
            try:
                connection.request(method, target, body=body, headers=all_headers)
                answer = connection.getresponse()
                data = answer.read()
                response = Response(
                    answer.status, {k.lower(): v for k, v in answer.getheaders()}, data
                )
                if answer.will_close:
                    self._drop(parts.scheme, parts.netloc)
                return response
            except (http.client.HTTPException, OSError) as error:
                self._drop(parts.scheme, parts.netloc)
                # A kept-alive connection the server closed while idle fails on first
                # use without the request being read: send it once more on a new one.
                stale = isinstance(
                    error,
                    (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError),
                )
                if attempt == 0 and reused and stale and isinstance(body, (bytes, type(None))):
                    continue
                if isinstance(error, socket.timeout):
                    raise TransientError("{} {} timed out".format(method, url)) from error
                raise TransientError(
                    "{} {} failed: {}".format(method, url, error or type(error).__name__)
                ) from error
        raise AssertionError("unreachable")

    # Credentials.

    def _bearer(self, refresh: bool = False) -> str:
        if not self._use_tokens:
            return self.api_key
        with self._token_lock:
            if refresh:
                self._token = None
            if self._token is None or time.time() > self._token_expires:
                response = self.raw(
                    "POST",
                    self.url + "/v1/auth/token",
                    b"",
                    {"Authorization": "Bearer " + self.api_key},
                )
                if response.status == 200:
                    answer = response.json()
                    self._token = answer["token"]
                    # Renewed well before the 15 minutes are up.
                    self._token_expires = time.time() + 10 * 60
                else:
                    error = _error_from(response, self.url + "/v1/auth/token")
                    if error.code == codes.API_KEY_REQUIRED:
                        # A session or job token rather than a key: used as it is.
                        self._use_tokens = False
                        return self.api_key
                    raise error
            return self._token or self.api_key

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        query: Optional[Mapping[str, Any]] = None,
        raw_body: Optional[bytes] = None,
        content_type: str = "application/json",
    ) -> Response:
        """An API call (``path`` under the base URL), authenticated; returns the
        successful answer or raises ``ApiError``/``AuthError``/``TransientError``."""
        url = self.url + path
        if query:
            url += "?" + urllib.parse.urlencode(
                {k: v for k, v in query.items() if v is not None}
            )
        data = raw_body if raw_body is not None else (dumps(body) if body is not None else b"")
        for attempt in (0, 1):
            headers = {
                "Authorization": "Bearer " + self._bearer(refresh=attempt == 1),
                "Accept": "application/json",
            }
            if data or body is not None:
                headers["Content-Type"] = content_type
            response = self.raw(method, url, data, headers)
            if response.status == 401 and attempt == 0 and self._use_tokens:
                continue  # the access token may have expired: trade the key again
            if response.status >= 400:
                raise _error_from(response, url)
            return response
        raise AssertionError("unreachable")

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        query: Optional[Mapping[str, Any]] = None,
    ) -> Any:
        """An API call answering its JSON body."""
        return self.request(method, path, body, query).json()

    def put_file(
        self,
        url: str,
        file: IO[bytes],
        offset: int,
        length: int,
        headers: Optional[Mapping[str, str]] = None,
    ) -> Optional[str]:
        """Uploads ``length`` bytes of ``file`` from ``offset`` to a presigned URL
        (without credentials) with the ``headers`` its plan names; answers the
        ``ETag``."""
        all_headers = {"Content-Length": str(length), "Content-Type": "application/octet-stream"}
        all_headers.update(headers or {})
        response = self.raw("PUT", url, _RangeReader(file, offset, length), all_headers)
        if response.status >= 400:
            raise _error_from(response, url.split("?")[0])
        return response.headers.get("etag")


def quote_name(name: str) -> str:
    """A series name or artifact path as a URL path (slashes kept)."""
    return urllib.parse.quote(name, safe="/:")
