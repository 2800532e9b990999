"""Sextant's Python SDK: log ML runs (metrics, text, images, artifacts) without
slowing training down or losing a point.

    import sextant

    with sextant.init(project="whales", name="baseline", params={"lr": 3e-4}) as run:
        for step in range(1000):
            run.log({"train/loss": loss, "train/acc": acc}, step=step)
        run.upload("checkpoints/last.pt", kind="checkpoint", step=step)

Credentials come from ``api_key=``/``url=`` or ``SEXTANT_API_KEY``/``SEXTANT_URL``.
Everything logged is spooled to disk and sent in the background; ``python -m
sextant sync`` sends what a crash or an outage left behind (so does the next
``init``) and uploads runs logged with ``mode="offline"``.
"""

from ._api import Api
from ._http import ApiError, AuthError, ConfigError, SextantError, TransientError
from ._run import Run, init
from ._sync import sync
from ._version import __version__

__all__ = [
    "Api",
    "ApiError",
    "AuthError",
    "ConfigError",
    "Run",
    "SextantError",
    "TransientError",
    "__version__",
    "init",
    "sync",
]
