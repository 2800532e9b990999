"""The stock MLflow client against `sextant serve`: everyday training code runs
unchanged, and what it logs is Sextant's like anything else."""

import hashlib
import time
import urllib.parse
from pathlib import Path

import mlflow
import numpy as np
import pytest
from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag, ViewType
from mlflow.exceptions import MlflowException

from conftest import Account, Server, http


def error_code(raised: pytest.ExceptionInfo) -> str:
    return raised.value.error_code


def test_everyday_training_code_logs_through_the_stock_client_and_reads_back_in_sextant(
    team: Account, tmp_path: Path
) -> None:
    mlflow.set_experiment("mnist")
    with mlflow.start_run(run_name="baseline") as run:
        run_id = run.info.run_id
        mlflow.log_param("lr", 1e-05)
        mlflow.log_params({"batch_size": 32, "optimizer": "adam", "amp": True})
        for step in range(10):
            mlflow.log_metric("loss", 1.0 / (step + 1), step=step)
        mlflow.log_metrics({"acc": 0.9, "val/acc": 0.85}, step=9)
        now = int(time.time() * 1000)
        MlflowClient().log_batch(
            run_id,
            metrics=[Metric("loss", 0.05, now, 10), Metric("acc", 0.95, now, 10)],
            params=[Param("epochs", "10")],
            tags=[RunTag("stage", "dev")],
        )
        mlflow.set_tag("team", "vision")
        mlflow.set_tags({"priority": "high", "mlflow.note.content": "first try"})
        (tmp_path / "model.txt").write_text("weights")
        mlflow.log_artifact(str(tmp_path / "model.txt"))
        plots = tmp_path / "plots"
        (plots / "val").mkdir(parents=True)
        (plots / "loss.svg").write_text("<svg/>")
        (plots / "val" / "acc.svg").write_text("<svg></svg>")
        mlflow.log_artifacts(str(plots), artifact_path="plots")
    mlflow.start_run(run_name="worse").__exit__(None, None, None)
    with mlflow.start_run(run_name="worse-still"):
        mlflow.log_params({"optimizer": "sgd"})
        mlflow.log_metric("acc", 0.5, step=0)

    client = MlflowClient()
    found = mlflow.search_runs(
        experiment_names=["mnist"],
        filter_string="metrics.acc > 0.6 and params.optimizer = 'adam' and tags.team = 'vision'",
        order_by=["metrics.loss ASC"],
        output_format="list",
    )
    assert [r.info.run_id for r in found] == [run_id]
    ordered = mlflow.search_runs(
        experiment_names=["mnist"], order_by=["metrics.acc DESC"], output_format="list"
    )
    assert [r.info.run_name for r in ordered] == ["baseline", "worse-still", "worse"]

    history = client.get_metric_history(run_id, "loss")
    assert [m.step for m in history] == list(range(11))
    assert history[3].value == pytest.approx(0.25)
    assert history[10].value == 0.05

    fetched = client.get_run(run_id)
    assert fetched.info.status == "FINISHED"
    assert fetched.info.end_time >= fetched.info.start_time
    assert fetched.data.params == {
        "lr": "1e-05",
        "batch_size": "32",
        "optimizer": "adam",
        "amp": "True",
        "epochs": "10",
    }
    assert fetched.data.metrics == {"loss": 0.05, "acc": 0.95, "val/acc": 0.85}
    assert fetched.data.tags["team"] == "vision"
    assert fetched.data.tags["mlflow.runName"] == "baseline"
    listed = {f.path: f.is_dir for f in client.list_artifacts(run_id)}
    assert listed == {"model.txt": False, "plots": True}
    assert {f.path for f in client.list_artifacts(run_id, "plots")} == {
        "plots/loss.svg",
        "plots/val",
    }
    downloaded = mlflow.artifacts.download_artifacts(run_id=run_id, dst_path=str(tmp_path / "dl"))
    assert (Path(downloaded) / "plots" / "val" / "acc.svg").read_text() == "<svg></svg>"
    assert (Path(downloaded) / "model.txt").read_text() == "weights"

    # The same run through Sextant's own API: typed parameters, key-value tags, series,
    # artifacts with their checksums.
    sextant = team.run(run_id)
    assert sextant["status"] == "succeeded"
    assert sextant["name"] == "baseline"
    assert sextant["description"] == "first try"
    assert sextant["params"]["lr"] == 1e-05
    assert sextant["params"]["batch_size"] == 32
    assert sextant["params"]["amp"] is True
    assert sextant["params"]["optimizer"] == "adam"
    assert {"team=vision", "priority=high", "stage=dev", "mlflow.source.type=LOCAL"} <= set(
        sextant["tags"]
    )
    assert sextant["series"]["loss"]["count"] == 11
    loss = team.series(run_id, "loss")
    assert loss["steps"] == list(range(11))
    artifacts = team.get("/v1/runs/{}/artifacts".format(run_id))["artifacts"]
    sums = {a["path"]: a["sha256"] for a in artifacts}
    assert sums["model.txt"] == hashlib.sha256(b"weights").hexdigest()
    assert set(sums) == {"model.txt", "plots/loss.svg", "plots/val/acc.svg"}
    project = team.get("/v1/projects/mnist")
    assert sextant["project_id"] == project["id"]


def test_a_step_logged_twice_keeps_both_values_as_mlflow_does(team: Account) -> None:
    with mlflow.start_run() as run:
        mlflow.log_metric("lr", 0.1)
        mlflow.log_metric("lr", 0.01)
        mlflow.log_metric("lr", 0.001, step=1)
    history = MlflowClient().get_metric_history(run.info.run_id, "lr")
    assert [(m.step, m.value) for m in history] == [(0, 0.1), (0, 0.01), (1, 0.001)]


def test_parameters_cannot_change_once_logged(team: Account) -> None:
    with mlflow.start_run() as run:
        mlflow.log_param("lr", 0.1)
        mlflow.log_param("lr", 0.1)
        with pytest.raises(MlflowException) as raised:
            mlflow.log_param("lr", 0.2)
        assert error_code(raised) == "INVALID_PARAMETER_VALUE"
        assert "Changing param values is not allowed" in raised.value.message
    assert MlflowClient().get_run(run.info.run_id).data.params == {"lr": "0.1"}


def test_batches_over_mlflows_limits_are_refused_whole(team: Account) -> None:
    client = MlflowClient()
    with mlflow.start_run() as run:
        run_id = run.info.run_id
        # The client splits big batches itself; the limit is for other clients.
        metrics = [{"key": "m", "value": 1.0, "timestamp": 0, "step": i} for i in range(1001)]
        status, answer = http(
            team.url + "/api/2.0/mlflow/runs/log-batch",
            "POST",
            {"run_id": run_id, "metrics": metrics},
            key=team.api_key,
        )
        assert status == 400 and answer["error_code"] == "INVALID_PARAMETER_VALUE", answer
        assert "at most 1000 metrics" in answer["message"]
        with pytest.raises(MlflowException):
            client.log_batch(
                run_id,
                metrics=[Metric("ok", 1.0, 0, 0), Metric("bad#name", 1.0, 0, 0)],
                params=[Param("p", "1")],
            )
    data = client.get_run(run_id).data
    assert data.metrics == {} and data.params == {}


def test_non_finite_metric_values_round_trip(team: Account) -> None:
    with mlflow.start_run() as run:
        mlflow.log_metrics({"nan": float("nan"), "inf": float("inf")}, step=0)
    history = MlflowClient().get_metric_history(run.info.run_id, "nan")
    assert np.isnan(history[0].value)
    assert MlflowClient().get_metric_history(run.info.run_id, "inf")[0].value == float("inf")


def test_experiments_are_created_found_renamed_tagged_deleted_and_restored(team: Account) -> None:
    client = MlflowClient()
    assert client.get_experiment_by_name("nope") is None
    experiment_id = client.create_experiment("vision", tags={"owner": "ana"})
    with pytest.raises(MlflowException) as raised:
        client.create_experiment("vision")
    assert error_code(raised) == "RESOURCE_ALREADY_EXISTS"
    client.set_experiment_tag(experiment_id, "goal", "sota")
    client.rename_experiment(experiment_id, "vision-2")
    experiment = client.get_experiment_by_name("vision-2")
    assert experiment.experiment_id == experiment_id
    assert experiment.tags == {"owner": "ana", "goal": "sota"}
    assert client.get_experiment_by_name("vision") is None

    client.delete_experiment(experiment_id)
    assert client.get_experiment(experiment_id).lifecycle_stage == "deleted"
    assert [e.name for e in client.search_experiments(view_type=ViewType.DELETED_ONLY)] == [
        "vision-2"
    ]
    assert "vision-2" not in [p["name"] for p in team.get("/v1/projects")["projects"]]
    with pytest.raises(MlflowException):
        client.create_run(experiment_id)
    client.restore_experiment(experiment_id)
    found = client.search_experiments(filter_string="name LIKE 'vision%' and tags.owner = 'ana'")
    assert [e.experiment_id for e in found] == [experiment_id]


def test_runs_are_updated_deleted_restored_and_searched_page_by_page(team: Account) -> None:
    client = MlflowClient()
    experiment_id = client.create_experiment("sweep")
    ids = []
    for i in range(5):
        run = client.create_run(experiment_id, run_name="trial-{}".format(i))
        client.log_metric(run.info.run_id, "score", float(i), step=0)
        client.set_terminated(run.info.run_id, status="FAILED" if i == 4 else "FINISHED")
        ids.append(run.info.run_id)
    client.update_run(ids[0], name="renamed")
    assert client.get_run(ids[0]).info.run_name == "renamed"
    assert client.get_run(ids[4]).info.status == "FAILED"

    pages, token = [], None
    while True:
        page = client.search_runs(
            [experiment_id], order_by=["metrics.score DESC"], max_results=2, page_token=token
        )
        pages.append([r.info.run_id for r in page])
        token = page.token
        if not token:
            break
    assert pages == [[ids[4], ids[3]], [ids[2], ids[1]], [ids[0]]]
    failed = client.search_runs([experiment_id], filter_string="attributes.status = 'FAILED'")
    assert [r.info.run_id for r in failed] == [ids[4]]

    client.delete_run(ids[1])
    active = client.search_runs([experiment_id])
    assert ids[1] not in [r.info.run_id for r in active]
    deleted = client.search_runs([experiment_id], run_view_type=ViewType.DELETED_ONLY)
    assert [r.info.run_id for r in deleted] == [ids[1]]
    assert ids[1] not in [r["id"] for r in team.get("/v1/projects/sweep/runs")["runs"]]
    with pytest.raises(MlflowException):
        client.set_tag(ids[1], "x", "y")
    client.restore_run(ids[1])
    assert client.get_run(ids[1]).info.lifecycle_stage == "active"

    client.set_tag(ids[2], "note", "keep")
    client.delete_tag(ids[2], "note")
    assert "note" not in client.get_run(ids[2]).data.tags
    with pytest.raises(MlflowException) as raised:
        client.delete_tag(ids[2], "note")
    assert error_code(raised) == "RESOURCE_DOES_NOT_EXIST"


def test_dataset_inputs_become_lineage(team: Account) -> None:
    dataset = mlflow.data.from_numpy(np.arange(12).reshape(6, 2), source="s3://bucket/train.npy")
    with mlflow.start_run() as run:
        mlflow.log_input(dataset, context="training")
    inputs = MlflowClient().get_run(run.info.run_id).inputs.dataset_inputs
    assert len(inputs) == 1
    assert inputs[0].dataset.name == dataset.name
    assert inputs[0].dataset.digest == dataset.digest
    assert {t.key: t.value for t in inputs[0].tags}["mlflow.data.context"] == "training"
    lineage = team.get("/v1/runs/{}/inputs".format(run.info.run_id))["inputs"]
    assert len(lineage) == 1 and "dataset" in lineage[0]


def test_the_bulk_interval_history_samples_evenly_and_keeps_the_ends(team: Account) -> None:
    client = MlflowClient()
    with mlflow.start_run() as run:
        for chunk in range(0, 1000, 250):
            client.log_batch(
                run.info.run_id,
                metrics=[Metric("loss", 1.0 / (s + 1), 0, s) for s in range(chunk, chunk + 250)],
            )
    query = urllib.parse.urlencode(
        {
            "run_ids": run.info.run_id,
            "metric_key": "loss",
            "max_results": 5,
            "start_step": 0,
            "end_step": 999,
        }
    )
    status, answer = http(
        team.url + "/api/2.0/mlflow/metrics/get-history-bulk-interval?" + query,
        key=team.api_key,
    )
    assert status == 200, answer
    assert [m["step"] for m in answer["metrics"]] == [0, 250, 500, 749, 999]


def test_basic_auth_with_the_key_as_password_works_and_a_wrong_key_is_unauthenticated(
    team: Account, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_TOKEN")
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "anyone")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", team.api_key)
    assert MlflowClient().create_experiment("via-basic-auth")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "sxt_key_wrong")
    with pytest.raises(MlflowException) as raised:
        MlflowClient().get_experiment_by_name("via-basic-auth")
    assert error_code(raised) == "UNAUTHENTICATED"


def test_another_teams_runs_and_artifacts_do_not_exist_for_a_team(
    team: Account, server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with mlflow.start_run() as run:
        (tmp_path / "secret.txt").write_text("ours")
        mlflow.log_artifact(str(tmp_path / "secret.txt"))
    run_id, experiment_id = run.info.run_id, run.info.experiment_id
    other = Account(server, project="theirs")
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", other.api_key)
    client = MlflowClient()
    with pytest.raises(MlflowException) as raised:
        client.get_run(run_id)
    assert error_code(raised) == "RESOURCE_DOES_NOT_EXIST"
    with pytest.raises(MlflowException):
        client.get_experiment(experiment_id)
    with pytest.raises(MlflowException):
        client.log_metric(run_id, "x", 1.0)
    with pytest.raises(MlflowException):
        client.search_runs([experiment_id])
    artifact = "{}/api/2.0/mlflow-artifacts/artifacts/{}/{}/artifacts/secret.txt".format(
        server.url, experiment_id, run_id
    )
    status, answer = http(artifact, key=other.api_key)
    assert status == 404 and answer["error_code"] == "RESOURCE_DOES_NOT_EXIST"
    status, answer = http(artifact, "PUT", raw=b"overwrite", key=other.api_key)
    assert status == 404
    status, _ = http(artifact, key=team.api_key)
    assert status == 200


def test_errors_take_mlflows_shape(team: Account) -> None:
    status, answer = http(
        team.url + "/api/2.0/mlflow/runs/get?run_id=run_nope", key=team.api_key
    )
    assert status == 404
    assert answer["error_code"] == "RESOURCE_DOES_NOT_EXIST" and answer["message"]
    status, answer = http(
        team.url + "/api/2.0/mlflow/runs/search",
        "POST",
        {"experiment_ids": ["0"], "filter": "metrics.acc >"},
        key=team.api_key,
    )
    assert status == 400 and answer["error_code"] == "INVALID_PARAMETER_VALUE"
    status, answer = http(team.url + "/api/2.0/mlflow/runs/get?run_id=x")
    assert status == 401 and answer["error_code"] == "UNAUTHENTICATED"
    status, answer = http(team.url + "/api/2.0/mlflow/no/such/endpoint", key=team.api_key)
    assert status == 404 and answer["error_code"] == "ENDPOINT_NOT_FOUND"


def test_a_large_artifact_uploads_in_parts_straight_to_storage(
    team: Account, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_ENABLE_PROXY_MULTIPART_UPLOAD", "true")
    monkeypatch.setenv("MLFLOW_MULTIPART_UPLOAD_MINIMUM_FILE_SIZE", "1")
    monkeypatch.setenv("MLFLOW_MULTIPART_UPLOAD_CHUNK_SIZE", str(5 * 1024 * 1024))
    # Above the function's 6 MiB body limit: only the parts' own URLs can take it.
    content = np.random.default_rng(7).bytes(11 * 1024 * 1024 + 17)
    checkpoint = tmp_path / "checkpoint.bin"
    checkpoint.write_bytes(content)
    with mlflow.start_run() as run:
        mlflow.log_artifact(str(checkpoint), artifact_path="ckpt")
        mlflow.log_artifact(str(checkpoint), artifact_path="ckpt")
    run_id = run.info.run_id
    artifacts = team.get("/v1/runs/{}/artifacts".format(run_id))["artifacts"]
    assert [(a["path"], a["size"], a["sha256"]) for a in artifacts] == [
        ("ckpt/checkpoint.bin", len(content), hashlib.sha256(content).hexdigest())
    ]
    downloaded = mlflow.artifacts.download_artifacts(
        run_id=run_id, artifact_path="ckpt/checkpoint.bin", dst_path=str(tmp_path / "dl")
    )
    assert Path(downloaded).read_bytes() == content
