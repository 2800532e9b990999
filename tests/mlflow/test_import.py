"""`sextant import mlflow` from a real `mlflow server` on loopback and from an
`mlruns` directory written by the stock client: everything arrives exactly (typed
params, tags, every metric point, statuses and times, dataset inputs, artifacts and
logged models byte for byte), runs in MLflow's trash stay behind unless asked for,
importing again duplicates nothing, a half-imported run is redone, and an import held
back by Sextant's rate limit waits it out."""

import hashlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterator, List, Tuple

import mlflow
import numpy as np
import pytest
from mlflow import MlflowClient
from mlflow.entities import DatasetInput, InputTag, LoggedModelOutput, Metric, Param, RunTag

from conftest import Account, fixtures, http

# The proxy's body limit is 6 MiB: this file must go the native way.
BIG_FILE_BYTES = 7 * 1024 * 1024 + 123
HOUR_MS = 3_600_000
STATUSES = {"FINISHED": "succeeded", "FAILED": "failed", "KILLED": "aborted", "RUNNING": "running"}
# MLflow tags that are fields of a Sextant run, not tags.
FIELD_TAGS = {"mlflow.runName", "mlflow.note.content"}


@dataclass
class Source:
    """A populated MLflow store and what an import of it should bring."""

    uri: str
    # Source run id -> run name, for the runs that must arrive.
    expected: Dict[str, str] = field(default_factory=dict)
    # Source run ids of the runs in MLflow's trash.
    trashed: List[str] = field(default_factory=list)

    def run_named(self, name: str) -> str:
        return next(run_id for run_id, run_name in self.expected.items() if run_name == name)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def populate(uri: str, files: Path) -> Source:
    """Two experiments of runs logged with the stock client: params (a float among
    them), tags, a note, metrics with a step logged twice and non-finite values, a
    dataset input, artifacts in nested directories with one above the proxy's body
    limit, a logged model, and a failed, a killed, a still running and a deleted run."""
    client = MlflowClient(tracking_uri=uri)
    source = Source(uri)
    start = int(time.time() * 1000) - 2 * HOUR_MS
    vision = client.create_experiment("vision")
    nlp = client.create_experiment("nlp")

    baseline = client.create_run(
        vision,
        run_name="baseline",
        start_time=start,
        tags={"team": "vision", "mlflow.note.content": "first try"},
    ).info.run_id
    client.log_batch(
        baseline,
        params=[
            Param("lr", "1e-05"),
            Param("batch_size", "32"),
            Param("optimizer", "adam"),
            Param("amp", "True"),
        ],
        tags=[RunTag("stage", "dev"), RunTag("note with spaces", "a=b")],
    )
    loss = [Metric("train/loss", 1.0 / (s + 1), start + 1000 + s, s) for s in range(300)]
    loss.append(Metric("train/loss", 0.001, start + 2000, 299))  # step 299 again
    loss.append(Metric("train/loss", float("nan"), start + 2001, 300))
    for at in range(0, len(loss), 100):
        client.log_batch(baseline, metrics=loss[at : at + 100])
    acc = [Metric("acc", 0.5 + s / 100, start + 3000 + s, s) for s in range(20)]
    client.log_batch(baseline, metrics=acc)
    dataset = mlflow.data.from_numpy(np.arange(10).reshape(5, 2), name="toy")
    context = InputTag("mlflow.data.context", "training")
    client.log_inputs(baseline, datasets=[DatasetInput(dataset._to_mlflow_entity(), [context])])
    (files / "model.txt").write_text("weights")
    (files / "plots" / "val").mkdir(parents=True)
    (files / "plots" / "loss.svg").write_text("<svg/>")
    (files / "plots" / "val" / "acc.svg").write_text("<svg></svg>")
    (files / "big").mkdir()
    (files / "big" / "weights.bin").write_bytes(os.urandom(BIG_FILE_BYTES))
    client.log_artifact(baseline, str(files / "model.txt"))
    client.log_artifacts(baseline, str(files / "plots"), artifact_path="plots")
    client.log_artifacts(baseline, str(files / "big"), artifact_path="checkpoints/big")
    # MLflow 3 keeps a logged model's files apart from the run's artifacts.
    (files / "classifier" / "data").mkdir(parents=True)
    (files / "classifier" / "MLmodel").write_text("flavors: {}\n")
    (files / "classifier" / "data" / "model.pkl").write_bytes(os.urandom(1000))
    model = client.create_logged_model(vision, name="classifier", source_run_id=baseline)
    client.log_model_artifacts(model.model_id, str(files / "classifier"))
    client.finalize_logged_model(model.model_id, "READY")
    client.log_outputs(baseline, [LoggedModelOutput(model.model_id, step=0)])
    client.set_terminated(baseline, "FINISHED", end_time=start + HOUR_MS)
    source.expected[baseline] = "baseline"

    diverged = client.create_run(vision, run_name="diverged", start_time=start + 10).info.run_id
    client.log_param(diverged, "lr", "0.5")
    client.log_metric(diverged, "train/loss", float("inf"), timestamp=start + 20, step=0)
    client.set_terminated(diverged, "FAILED", end_time=start + 30)
    source.expected[diverged] = "diverged"

    bert = client.create_run(nlp, run_name="bert", start_time=start + 40).info.run_id
    client.log_param(bert, "model", "bert-base")
    client.log_metric(bert, "val/f1", 0.7, timestamp=start + 50, step=1)
    client.set_terminated(bert, "KILLED", end_time=start + 60)
    source.expected[bert] = "bert"

    live = client.create_run(nlp, run_name="still-running", start_time=start + 70).info.run_id
    client.log_metric(live, "tokens", 1e9, timestamp=start + 80, step=5)
    source.expected[live] = "still-running"

    gone = client.create_run(nlp, run_name="deleted", start_time=start + 90).info.run_id
    client.log_param(gone, "junk", "yes")
    client.set_terminated(gone, "FINISHED", end_time=start + 95)
    client.delete_run(gone)
    source.trashed.append(gone)
    return source


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Source]:
    """A real `mlflow server` (SQLite store, proxied artifacts) on a free loopback
    port, populated once for this module's tests."""
    root = tmp_path_factory.mktemp("mlflow-server")
    port = free_port()
    url = "http://127.0.0.1:{}".format(port)
    log = open(root / "server.log", "wb")
    process = subprocess.Popen(
        [
            sys.executable, "-m", "mlflow", "server",
            "--host", "127.0.0.1",
            "--port", str(port),
            "--workers", "1",
            "--backend-store-uri", "sqlite:///{}".format(root / "mlflow.db"),
            "--artifacts-destination", str(root / "artifacts"),
        ],
        stdout=log,
        stderr=log,
        cwd=root,
        # A group of its own: the server forks workers, all stopped at the end.
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(url + "/health", timeout=2) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                log_text = (root / "server.log").read_text(errors="replace")
                raise RuntimeError("mlflow server did not start:\n" + log_text[-3000:])
            time.sleep(0.2)
        files = root / "files"
        files.mkdir()
        yield populate(url, files)
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(15)
        log.close()


def sextant(team: Account, *args: str) -> str:
    """Runs the `sextant` command against the team's server; answers its stdout."""
    env = dict(os.environ, SEXTANT_URL=team.url, SEXTANT_API_KEY=team.api_key)
    for name in ("MLFLOW_TRACKING_TOKEN", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
        env.pop(name, None)
    done = subprocess.run(
        [str(fixtures.sextant_bin()), *args], capture_output=True, text=True, env=env, timeout=300
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def run_import(team: Account, source: str, project: str, *extra: str) -> str:
    return sextant(team, "import", "mlflow", "--from", source, "--project", project, *extra)


def imported_runs(team: Account, project: str, trashed: bool = False) -> Dict[str, Any]:
    """The project's runs by the source run they came from (each once, or the test fails)."""
    query: Dict[str, Any] = {"limit": 500}
    if trashed:
        query["trashed"] = "true"
    found: Dict[str, Any] = {}
    for run in team.get("/v1/projects/{}/runs".format(project), query)["runs"]:
        prefix = "imported.mlflow_run_id="
        sources = [tag[len(prefix) :] for tag in run["tags"] if tag.startswith(prefix)]
        assert len(sources) == 1, run
        assert sources[0] not in found, "run {} was imported twice".format(sources[0])
        found[sources[0]] = run
    return found


def float_key(value: Any) -> str:
    """A metric value comparable across NaN and the infinities (strings in JSON)."""
    return repr(float(value))


def source_history(client: MlflowClient, run_id: str, key: str) -> List[Tuple[int, int, str]]:
    history = client.get_metric_history(run_id, key)
    return sorted((m.step, m.timestamp, float_key(m.value)) for m in history)


def sextant_history(team: Account, run_id: str, key: str) -> List[Tuple[int, int, str]]:
    series = team.series(run_id, key)
    points = zip(series["steps"], series["timestamps"], series["values"])
    return sorted((step, round(ts * 1000), float_key(value)) for step, ts, value in points)


def checksums(local: Path, prefix: str = "") -> Dict[str, str]:
    return {
        prefix + str(path.relative_to(local)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in local.rglob("*")
        if path.is_file()
    }


def source_files(source: Source, run: Any, into: Path) -> Dict[str, str]:
    """Path -> SHA-256 of every file the import should bring for a run: its artifacts,
    and each logged model's below `models/<name>/`."""
    client = MlflowClient(tracking_uri=source.uri)
    files = checksums(Path(client.download_artifacts(run.info.run_id, "", str(into / "run"))))
    for output in run.outputs.model_outputs:
        model = client.get_logged_model(output.model_id)
        local = mlflow.artifacts.download_artifacts(
            artifact_uri=model.artifact_location,
            dst_path=str(into / model.model_id),
            tracking_uri=source.uri,
        )
        files.update(checksums(Path(local), "models/{}/".format(model.name)))
    return files


def described(inputs: Any) -> List[Any]:
    """Dataset inputs as MLflow describes them: the dataset and the input's tags."""
    return [
        (i.dataset.name, i.dataset.digest, i.dataset.source, [(t.key, t.value) for t in i.tags])
        for i in inputs.dataset_inputs
    ]


def assert_imported_exactly(team: Account, source: Source, project: str, tmp: Path) -> Any:
    """Every expected run is in the project once, equal to its source in all the import
    carries; answers them by source run id."""
    src = MlflowClient(tracking_uri=source.uri)
    dst = MlflowClient(tracking_uri=team.url)
    runs = imported_runs(team, project)
    assert set(runs) == set(source.expected)
    for source_id, name in source.expected.items():
        want = src.get_run(source_id)
        run = team.run(runs[source_id]["id"])
        got = dst.get_run(run["id"])
        experiment = src.get_experiment(want.info.experiment_id).name
        assert run["name"] == name
        assert run["status"] == STATUSES[want.info.status]
        assert got.info.start_time == want.info.start_time
        assert got.info.end_time == want.info.end_time
        # Params read back as the same text through MLflow (and are typed in Sextant).
        assert got.data.params == want.data.params
        provenance = {"imported.mlflow_run_id": source_id, "imported.mlflow_experiment": experiment}
        assert got.data.tags == {**want.data.tags, **provenance}
        tags = {k: v for k, v in {**want.data.tags, **provenance}.items() if k not in FIELD_TAGS}
        assert set(run["tags"]) == {"{}={}".format(k, v) for k, v in tags.items()}

        # Every metric point: step, value and timestamp, repeated steps included.
        assert set(run["series"]) == set(want.data.metrics)
        for key in want.data.metrics:
            assert sextant_history(team, run["id"], key) == source_history(src, source_id, key)

        assert described(got.inputs) == described(want.inputs)

        want_files = source_files(source, want, tmp / source_id)
        listing = team.get("/v1/runs/{}/artifacts".format(run["id"]))["artifacts"]
        assert {a["path"]: a["sha256"] for a in listing} == want_files
        assert all(a["status"] == "ready" for a in listing)
        models = {a["path"] for a in listing if a["kind"] == "model"}
        assert models == {path for path in want_files if path.startswith("models/")}
    return runs


def test_an_mlflow_server_is_imported_exactly_and_a_second_import_duplicates_nothing(
    team: Account, mlflow_server: Source, tmp_path: Path
) -> None:
    started = time.monotonic()
    summary = run_import(team, mlflow_server.uri, "imported")
    elapsed = time.monotonic() - started
    assert "4 imported, 0 already imported, 1 in the source's trash left out" in summary, summary
    runs = assert_imported_exactly(team, mlflow_server, "imported", tmp_path / "first")
    points = sum(
        series["count"]
        for run in runs.values()
        for series in team.run(run["id"])["series"].values()
    )
    assert "metric points  {}\n".format(points) in summary, summary
    assert "artifacts      6 (" in summary, summary  # 4 of the run, 2 of its model

    baseline = team.run(runs[mlflow_server.run_named("baseline")]["id"])
    assert baseline["params"] == {"lr": 1e-05, "batch_size": 32, "optimizer": "adam", "amp": True}
    assert isinstance(baseline["params"]["lr"], float)
    assert baseline["description"] == "first try"
    assert baseline["series"]["train/loss"]["count"] == 302
    assert len(team.get("/v1/runs/{}/inputs".format(baseline["id"]))["inputs"]) == 1
    # The large file, downloaded and checked against its SHA-256 by the command.
    big = tmp_path / "weights.bin"
    sextant(team, "download", baseline["id"], "checkpoints/big/weights.bin", "--to", str(big))
    assert big.stat().st_size == BIG_FILE_BYTES
    # Nothing of the deleted run arrived, in the trash or out of it.
    assert not set(mlflow_server.trashed) & set(imported_runs(team, "imported", trashed=True))
    print("\nimported {} metric points and {} artifact bytes in {:.2f} s".format(
        points, BIG_FILE_BYTES, elapsed))

    again = run_import(team, mlflow_server.uri, "imported")
    assert "0 imported, 4 already imported" in again, again
    assert "metric points  0\n" in again, again
    after = assert_imported_exactly(team, mlflow_server, "imported", tmp_path / "again")
    assert {k: r["id"] for k, r in after.items()} == {k: r["id"] for k, r in runs.items()}


def test_a_run_left_half_imported_is_deleted_and_imported_again(
    team: Account, mlflow_server: Source, tmp_path: Path
) -> None:
    # What an import interrupted in the middle of a run leaves: the run, marked
    # incomplete, with part of its points.
    bert = mlflow_server.run_named("bert")
    dst = MlflowClient(tracking_uri=team.url)
    half = dst.create_run(
        dst.create_experiment("resumed"),
        run_name="bert",
        tags={
            "imported.mlflow_run_id": bert,
            "imported.mlflow_experiment": "nlp",
            "imported.incomplete": "true",
        },
    ).info.run_id
    dst.log_metric(half, "val/f1", 0.7, step=1)

    summary = run_import(team, mlflow_server.uri, "resumed", "--experiment", "nlp")
    assert "2 imported, 0 already imported" in summary, summary
    assert http(team.url + "/v1/runs/" + half, key=team.api_key)[0] == 404
    nlp = Source(
        mlflow_server.uri,
        {bert: "bert", mlflow_server.run_named("still-running"): "still-running"},
    )
    assert_imported_exactly(team, nlp, "resumed", tmp_path)


def test_runs_in_mlflows_trash_go_to_sextants_trash_when_asked(
    team: Account, mlflow_server: Source
) -> None:
    args = ("--experiment", "nlp", "--include-deleted")
    summary = run_import(team, mlflow_server.uri, "everything", *args)
    assert "3 imported" in summary, summary
    trashed = imported_runs(team, "everything", trashed=True)
    assert set(trashed) == set(mlflow_server.trashed)
    gone = team.run(trashed[mlflow_server.trashed[0]]["id"])
    assert (gone["params"], gone["status"]) == ({"junk": "yes"}, "succeeded")
    assert len(imported_runs(team, "everything")) == 2
    again = run_import(team, mlflow_server.uri, "everything", *args)
    assert "0 imported, 3 already imported" in again, again


def test_an_mlruns_directory_written_by_the_stock_client_is_imported_exactly(
    team: Account, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # MLflow 3 keeps its file store for old data, behind this switch (and warns).
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    files = tmp_path / "files"
    files.mkdir()
    mlruns = tmp_path / "mlruns"
    source = populate("file:" + str(mlruns), files)
    summary = run_import(team, str(mlruns), "from-files")
    assert "4 imported, 0 already imported, 1 in the source's trash left out" in summary, summary
    assert_imported_exactly(team, source, "from-files", tmp_path / "check")
    again = run_import(team, "file://" + str(mlruns), "from-files")
    assert "0 imported, 4 already imported" in again, again


def test_an_import_held_back_by_the_rate_limit_waits_and_completes(
    mlflow_server: Source, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Five requests a second, in bursts of five: the import needs several times that.
    monkeypatch.setenv("SEXTANT_RATE_KEY_PER_MINUTE", "300")
    monkeypatch.setenv("SEXTANT_RATE_KEY_BURST", "5")
    limited = fixtures.Server(tmp_path / "limited").start()
    try:
        team = Account(limited)
        summary = run_import(team, mlflow_server.uri, "limited", "--experiment", "nlp")
        assert "2 imported, 0 already imported" in summary, summary
        assert "metric points  2\n" in summary, summary
        assert "status=429" in limited.log_path.read_text()
        expected = {mlflow_server.run_named("bert"), mlflow_server.run_named("still-running")}
        assert set(imported_runs(team, "limited")) == expected
    finally:
        limited.stop()
