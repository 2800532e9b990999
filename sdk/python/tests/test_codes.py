"""The SDK's error codes are the server's: every code it branches on is a value of the
server's published ``ErrorCode`` enum, and it branches on no code spelled out elsewhere."""

import json
import re
import urllib.request
from pathlib import Path

from sextant import _codes

from conftest import Server

SDK = Path(_codes.__file__).parent


def sdk_codes() -> dict:
    return {name: value for name, value in vars(_codes).items() if name.isupper()}


def test_every_code_the_sdk_acts_on_is_one_the_server_publishes(server: Server) -> None:
    with urllib.request.urlopen(server.url + "/openapi.json", timeout=30) as response:
        document = json.load(response)
    published = set(document["components"]["schemas"]["ErrorCode"]["enum"])
    assert sdk_codes(), "the SDK names the codes it acts on"
    unknown = {name: value for name, value in sdk_codes().items() if value not in published}
    assert not unknown, "codes the server never sends: {}".format(unknown)


def test_the_sdk_compares_error_codes_only_through_its_code_names() -> None:
    spelled_out = re.compile(r"""\.code\s*[!=]=\s*["']""")
    offenders = [
        "{}:{}".format(path.name, number)
        for path in sorted(SDK.glob("*.py"))
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if spelled_out.search(line)
    ]
    assert not offenders, offenders
