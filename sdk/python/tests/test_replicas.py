"""Two `sextant serve --store aws` replicas over one table and bucket (moto's server on
loopback, which `scripts/test.sh` starts): four SDK writers spread over both, one
replica killed mid-run and restarted, and every point stored once, the run table
the same from either replica, and the month's report billing each point once after
both replicas' hourly runs rolled its hour up."""

import base64
import datetime
import os
import subprocess
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any, Dict, Iterator, List, Tuple

import pytest

import sextant
from conftest import Account, Proxy, Server, sextant_bin, wait_for
from test_durability import check_exactly_once, value_at
from test_roundtrip import quiet

ENDPOINT = os.environ.get("SEXTANT_TEST_AWS_ENDPOINT")
SERIES = ["loss", "acc", "step"]
STEPS = 1500
WRITERS = 4

pytestmark = pytest.mark.skipif(
    not ENDPOINT, reason="needs moto's server at SEXTANT_TEST_AWS_ENDPOINT; scripts/test.sh starts it"
)


def deployment_env() -> Dict[str, str]:
    """What every replica (and every metering run) of one fresh deployment reads."""
    name = "replicas-" + uuid.uuid4().hex[:12]
    return {
        "SEXTANT_STORE": "aws",
        "SEXTANT_TABLE": name,
        "SEXTANT_BUCKET": name,
        "SEXTANT_AWS_ENDPOINT_URL": str(ENDPOINT),
        "SEXTANT_JWT_KEYS": "replicas:" + base64.b64encode(os.urandom(32)).decode(),
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_REGION": "us-east-1",
    }


def run_sextant(env: Dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(sextant_bin()), *args],
        env=dict(os.environ, **env),
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.fixture
def replicas(tmp_path: Path) -> Iterator[Tuple[Dict[str, str], Server, Server]]:
    env = deployment_env()
    made = run_sextant(env, "admin", "create-table")
    assert made.returncode == 0, made.stderr
    # moto takes an unsigned CreateBucket.
    urllib.request.urlopen(
        urllib.request.Request("{}/{}".format(ENDPOINT, env["SEXTANT_BUCKET"]), method="PUT"),
        timeout=10,
    ).close()
    a = Server(tmp_path / "a", env=env).start()
    b = Server(tmp_path / "b", env=env).start()
    yield env, a, b
    a.kill()
    b.kill()


def without_elapsed_storage(value: Any) -> Any:
    """What the API answers, without what grows by the second on its own."""
    if isinstance(value, dict):
        return {k: without_elapsed_storage(v) for k, v in value.items() if k != "byte_seconds"}
    if isinstance(value, list):
        return [without_elapsed_storage(v) for v in value]
    return value


def test_four_writers_over_two_replicas_one_killed_store_and_bill_every_point_once(
    replicas: Tuple[Dict[str, str], Server, Server], spool_dir: Path
) -> None:
    env, a, b = replicas
    account = Account(a)
    # The load balancer's two routes: one to each replica.
    routes = [Proxy(a.port), Proxy(b.port)]
    runs: List[Any] = []
    try:
        for n in range(WRITERS):
            run = sextant.init(
                project=account.project, name="writer-{}".format(n),
                url=routes[n % 2].url, api_key=account.api_key,
                flush_interval=0.05, flush_points=200, **quiet(),
            )
            run._sender.backoff.maximum = 0.5  # retry often: the outage is short
            runs.append(run)
        for step in range(STEPS):
            for run in runs:
                run.log({name: value_at(name, step) for name in SERIES}, step=step)
            if step == 500:
                wait_for(lambda: all(r._sender.spooled_batches > 2 for r in runs), 20,
                         what="batches acknowledged on both replicas before the kill")
                a.kill()  # SIGKILL, whatever it was doing
                routes[0].target = None
                routes[0].cut()
            if step == 1000:
                a.start()  # another data directory would do as well: it keeps nothing
                routes[0].target = a.port
            time.sleep(0.0005)
        for run in runs:
            assert run.finish(timeout=90)
        assert any(run._sender.failures > 0 for run in runs), "sending failed while A was down"
    finally:
        for route in routes:
            route.close()

    # Every point once, read through either replica, and the same run table from both.
    via_a, via_b = account.through(a), account.through(b)
    for reader in (via_a, via_b):
        for run in runs:
            check_exactly_once(reader, run.id, STEPS, SERIES)
    assert without_elapsed_storage(via_a.runs()) == without_elapsed_storage(via_b.runs())
    points = WRITERS * STEPS * len(SERIES)
    assert via_b.get("/v1/usage")["points"] == points

    # Each replica's hourly run, at once, for the hour the points were logged in (as if
    # it had ended: nothing more is logged): the hour is rolled up once, and the
    # month's report bills each point once.
    now = datetime.datetime.now(datetime.timezone.utc)
    month = now.strftime("%Y-%m")
    hour_end = now.replace(minute=0, second=0, microsecond=0) + datetime.timedelta(hours=1)
    through = hour_end.strftime("%Y-%m-%dT%H:%M:%SZ")
    started = time.monotonic()
    metering = [
        subprocess.Popen(
            [str(sextant_bin()), "meter", "--through", through],
            env=dict(os.environ, **env),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for _replica in (a, b)
    ]
    for process in metering:
        hours, errors = process.communicate(timeout=600)
        assert process.returncode == 0, errors
        assert hours.split(), "each run rolled up the hour"
    print("metering took {:.1f} s".format(time.monotonic() - started))
    report = via_a.get("/v1/billing/reports/{}".format(month))
    assert report["points"] == points, report
    assert "provisional" not in report, report
    assert via_b.get("/v1/billing/reports/{}".format(month)) == report
