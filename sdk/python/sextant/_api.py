"""Reading runs back: a small client for the read side of the API."""

from typing import Any, Dict, List, Optional, cast

from ._config import resolve_credentials
from ._http import Client, decode_float, quote_name


class Api:
    """Reads runs and series (``Api(url, api_key)``, or from ``SEXTANT_URL`` and
    ``SEXTANT_API_KEY``). Values come back as floats, NaN and infinities included."""

    def __init__(
        self, url: Optional[str] = None, api_key: Optional[str] = None, timeout: float = 30.0
    ) -> None:
        api_key, url = resolve_credentials(api_key, url)
        assert api_key is not None and url is not None
        self.client = Client(url, api_key, timeout=timeout)

    def run(self, run_id: str) -> Dict[str, Any]:
        """The run: status, params, tags, git and series summaries."""
        return cast(Dict[str, Any], self.client.call("GET", "/v1/runs/{}".format(run_id)))

    def runs(self, project: str, **filters: Any) -> List[Dict[str, Any]]:
        """The project's runs (``status=``, ``tag=``, ``name=``, ``sort=`` ...), every page."""
        runs: List[Dict[str, Any]] = []
        query: Dict[str, Any] = dict(filters)
        while True:
            page = self.client.call(
                "GET", "/v1/projects/{}/runs".format(quote_name(project)), query=query
            )
            runs.extend(page.get("runs", []))
            if not page.get("next_cursor"):
                return runs
            query["cursor"] = page["next_cursor"]

    def series(self, run_id: str, name: str) -> Dict[str, List[Any]]:
        """Every point of a series, in step order: ``steps``, ``timestamps`` and
        ``values`` (floats) or ``texts``."""
        out: Dict[str, List[Any]] = {"steps": [], "timestamps": []}
        query: Dict[str, Any] = {}
        while True:
            page = self.client.call(
                "GET", "/v1/runs/{}/series/{}".format(run_id, quote_name(name)), query=query
            )
            out["steps"].extend(page["steps"])
            out["timestamps"].extend(page["timestamps"])
            if "texts" in page:
                out.setdefault("texts", []).extend(page["texts"])
            else:
                out.setdefault("values", []).extend(decode_float(v) for v in page["values"])
            if page.get("next_cursor") is None:
                return out
            query = {"cursor": page["next_cursor"]}

    def abort(self, run_id: str) -> Dict[str, Any]:
        """Asks a run to stop."""
        return cast(Dict[str, Any], self.client.call("POST", "/v1/runs/{}/abort".format(run_id)))

    def artifacts(self, run_id: str) -> List[Dict[str, Any]]:
        answer = self.client.call("GET", "/v1/runs/{}/artifacts".format(run_id))
        return cast(List[Dict[str, Any]], answer["artifacts"])
