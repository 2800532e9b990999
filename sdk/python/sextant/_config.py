"""Where the server is and which key to use, with clear errors when either is
missing, unreachable or refused."""

import os
from typing import Optional, Tuple

from ._http import AuthError, Client, ConfigError, SextantError, TransientError, call_with_retries


def resolve_credentials(
    api_key: Optional[str], url: Optional[str], need: bool = True
) -> Tuple[Optional[str], Optional[str]]:
    """The API key and server URL from the arguments, else ``SEXTANT_API_KEY`` and
    ``SEXTANT_URL``; with ``need``, a ``ConfigError`` naming what is missing."""
    api_key = api_key or os.environ.get("SEXTANT_API_KEY") or None
    url = url or os.environ.get("SEXTANT_URL") or None
    if need:
        missing = []
        if not api_key:
            missing.append("an API key (api_key=... or SEXTANT_API_KEY)")
        if not url:
            missing.append("the server's URL (url=... or SEXTANT_URL, e.g. http://127.0.0.1:8080)")
        if missing:
            raise ConfigError(
                "Sextant needs {} to log online; or log with mode=\"offline\" and upload "
                "later with `python -m sextant sync`".format(" and ".join(missing))
            )
    return api_key, url


def connect(url: str, api_key: str, timeout: float, deadline: float) -> Client:
    """A client whose key the server has accepted; clear errors when the server is
    unreachable or refuses the key."""
    client = Client(url, api_key, timeout=timeout)
    try:
        call_with_retries(lambda: client._bearer(), deadline=deadline)
    except AuthError as error:
        raise AuthError(
            error.status,
            error.code,
            "the Sextant server at {} refused the API key ({}): {}. Check SEXTANT_API_KEY "
            "or api_key=...".format(client.url, error.code, error.message),
            url=error.url,
        ) from None
    except TransientError as error:
        raise SextantError(
            "cannot reach the Sextant server at {}: {}. Is SEXTANT_URL right and the "
            "server up? (mode=\"offline\" logs without it)".format(client.url, error)
        ) from error
    return client
