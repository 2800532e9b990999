//! The MLflow tracking API over both storage backends: what the stock client does
//! (tests/mlflow runs the client itself against `sextant serve`), as raw requests, so
//! the DynamoDB and S3 adapters carry it too. Also: MLflow's points count against the
//! plan like any other, and another team's ids answer as missing.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sextant_cli::Backend;
use sextant_domain::billing::PricePlan;
use sextant_tests::{TestApp, aws_cases, cases, fresh_aws_storage, sha256_hex, text};

async fn call(
    app: &TestApp,
    key: &str,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    app.call(method, &format!("/api/2.0/mlflow/{path}"), Some(key), body)
        .await
}

async fn post_ok(app: &TestApp, key: &str, path: &str, body: Value) -> Value {
    let (status, answer) = call(app, key, Method::POST, path, Some(body)).await;
    assert_eq!(status, StatusCode::OK, "{path}: {answer}");
    answer
}

async fn get_ok(app: &TestApp, key: &str, path: &str) -> Value {
    let (status, answer) = call(app, key, Method::GET, path, None).await;
    assert_eq!(status, StatusCode::OK, "{path}: {answer}");
    answer
}

fn mlflow_error(answer: &Value) -> &str {
    assert!(
        answer["message"].is_string(),
        "not an MLflow error: {answer}"
    );
    answer["error_code"].as_str().expect("an error code")
}

async fn a_run_logged_through_mlflow_reads_back_through_both_apis(app: TestApp) {
    let team = app.signup().await;
    let key = &team.api_key;
    let created = post_ok(
        &app,
        key,
        "experiments/create",
        json!({"name": "mnist", "tags": [{"key": "owner", "value": "ana"}]}),
    )
    .await;
    let experiment = text(&created, "experiment_id");
    // A rename moves the project's name lookup in the same transaction.
    post_ok(
        &app,
        key,
        "experiments/update",
        json!({"experiment_id": experiment, "new_name": "mnist-v2"}),
    )
    .await;
    let found = get_ok(
        &app,
        key,
        "experiments/get-by-name?experiment_name=mnist-v2",
    )
    .await;
    assert_eq!(found["experiment"]["experiment_id"], experiment.as_str());
    assert_eq!(
        found["experiment"]["tags"],
        json!([{"key": "owner", "value": "ana"}])
    );

    let start = 1_700_000_000_000_i64;
    let run = post_ok(
        &app,
        key,
        "runs/create",
        json!({
            "experiment_id": experiment,
            "start_time": start,
            "run_name": "baseline",
            "tags": [
                {"key": "mlflow.user", "value": "ana"},
                {"key": "mlflow.source.git.commit", "value": "abc123"},
            ],
        }),
    )
    .await;
    let run_id = text(&run["run"]["info"], "run_id");
    assert_eq!(run["run"]["info"]["start_time"], start);
    post_ok(
        &app,
        key,
        "runs/log-batch",
        json!({
            "run_id": run_id,
            "params": [{"key": "lr", "value": "1e-05"}, {"key": "layers", "value": "4"}],
            "tags": [{"key": "team", "value": "vision"}],
            "metrics": [
                {"key": "loss", "value": 1.0, "timestamp": start + 1_000, "step": 0},
                {"key": "loss", "value": 0.5, "timestamp": start + 2_000, "step": 1},
                {"key": "loss", "value": 0.4, "timestamp": start + 3_000, "step": 1},
                {"key": "acc", "value": "NaN", "timestamp": start + 3_000, "step": 1},
            ],
        }),
    )
    .await;
    post_ok(&app, key, "runs/log-metric", json!({"run_id": run_id, "key": "loss", "value": 0.25, "timestamp": start + 4_000, "step": 2})).await;
    post_ok(
        &app,
        key,
        "runs/update",
        json!({"run_id": run_id, "status": "FINISHED", "end_time": start + 60_000}),
    )
    .await;

    let history = get_ok(
        &app,
        key,
        &format!("metrics/get-history?run_id={run_id}&metric_key=loss&max_results=2"),
    )
    .await;
    assert_eq!(
        history["metrics"].as_array().unwrap().len(),
        2,
        "a page holds max_results, ending inside step 1 if it must: {history}"
    );
    let token = text(&history, "next_page_token");
    let rest = get_ok(
        &app,
        key,
        &format!("metrics/get-history?run_id={run_id}&metric_key=loss&page_token={token}"),
    )
    .await;
    assert_eq!(
        rest["metrics"],
        json!([
            {"key": "loss", "value": 0.4, "timestamp": start + 3_000, "step": 1},
            {"key": "loss", "value": 0.25, "timestamp": start + 4_000, "step": 2},
        ])
    );
    assert!(rest.get("next_page_token").is_none());

    let searched = post_ok(&app, key, "runs/search", json!({
        "experiment_ids": [experiment],
        "filter": "metrics.loss < 0.3 and params.lr = '1e-05' and tags.team = 'vision' and attributes.status = 'FINISHED'",
        "order_by": ["start_time DESC"],
    }))
    .await;
    assert_eq!(searched["runs"].as_array().unwrap().len(), 1, "{searched}");
    let mlflow_run = &searched["runs"][0];
    assert_eq!(mlflow_run["info"]["end_time"], start + 60_000);
    let tags: Vec<(String, String)> = mlflow_run["data"]["tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (text(t, "key"), text(t, "value")))
        .collect();
    for expected in [
        ("team", "vision"),
        ("mlflow.user", "ana"),
        ("mlflow.runName", "baseline"),
        ("mlflow.source.git.commit", "abc123"),
    ] {
        assert!(
            tags.contains(&(expected.0.into(), expected.1.into())),
            "{expected:?} in {tags:?}"
        );
    }

    let (status, sextant) = app.get(&format!("/v1/runs/{run_id}"), key).await;
    assert_eq!(status, StatusCode::OK, "{sextant}");
    assert_eq!(sextant["status"], "succeeded");
    assert_eq!(sextant["created_at"], "2023-11-14T22:13:20Z");
    assert_eq!(sextant["ended_at"], "2023-11-14T22:14:20Z");
    assert_eq!(sextant["params"], json!({"lr": 1e-05, "layers": 4}));
    assert_eq!(sextant["git"]["commit"], "abc123");
    assert_eq!(sextant["series"]["loss"]["count"], 4);
    assert_eq!(sextant["series"]["acc"]["last"], "NaN");
    let tags = sextant["tags"].as_array().unwrap();
    assert!(
        tags.contains(&json!("team=vision")) && tags.contains(&json!("mlflow.user=ana")),
        "{tags:?}"
    );

    // Artifacts through the proxy land as Sextant artifacts, and a re-upload replaces.
    let artifact = format!(
        "/api/2.0/mlflow-artifacts/artifacts/{experiment}/{run_id}/artifacts/model/weights.bin"
    );
    for bytes in [&b"first"[..], &b"second version"[..]] {
        let response = app
            .request(Method::PUT, &artifact, Some(key))
            .body(bytes.to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }
    let (status, listed) = app.get(&format!("/v1/runs/{run_id}/artifacts"), key).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(listed["artifacts"].as_array().unwrap().len(), 1, "{listed}");
    assert_eq!(
        listed["artifacts"][0]["sha256"],
        sha256_hex(b"second version")
    );
    let (status, files) = app
        .call(
            Method::GET,
            &format!(
                "/api/2.0/mlflow-artifacts/artifacts?path={experiment}/{run_id}/artifacts/model"
            ),
            Some(key),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        files["files"],
        json!([{"path": "weights.bin", "is_dir": false, "file_size": 14}])
    );
    let downloaded = app
        .request(Method::GET, &artifact, Some(key))
        .send()
        .await
        .unwrap();
    assert_eq!(downloaded.status(), StatusCode::OK);
    assert_eq!(&downloaded.bytes().await.unwrap()[..], b"second version");

    // A share shows the run to anyone holding its URL, as it shows any run.
    let (status, created) = app
        .post(&format!("/v1/runs/{run_id}/shares"), key, json!({}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let (status, shared) = app
        .call(
            Method::GET,
            &format!("/v1/shared/{}", text(&created, "token")),
            None,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{shared}");
    // As the team reads it, but for what it cost, which is the team's business.
    let mut as_the_team_reads_it = sextant.clone();
    as_the_team_reads_it["usage"].take();
    assert_eq!(shared["run"], as_the_team_reads_it);

    // Deleting through MLflow is the trash: hidden from Sextant's run table, restorable.
    post_ok(&app, key, "runs/delete", json!({"run_id": run_id})).await;
    let (_, table) = app.get("/v1/projects/mnist-v2/runs", key).await;
    assert_eq!(table["total"], 0);
    let (_, trash) = app
        .get("/v1/projects/mnist-v2/runs?trashed=true", key)
        .await;
    assert_eq!(trash["runs"][0]["id"], run_id.as_str());
    post_ok(&app, key, "runs/restore", json!({"run_id": run_id})).await;
    let (_, table) = app.get("/v1/projects/mnist-v2/runs", key).await;
    assert_eq!(table["total"], 1);
}

async fn another_teams_experiments_and_runs_answer_as_missing(app: TestApp) {
    let (owner, intruder) = (app.signup().await, app.signup().await);
    let created = post_ok(
        &app,
        &owner.api_key,
        "experiments/create",
        json!({"name": "secret"}),
    )
    .await;
    let experiment = text(&created, "experiment_id");
    let run = post_ok(
        &app,
        &owner.api_key,
        "runs/create",
        json!({"experiment_id": experiment}),
    )
    .await;
    let run_id = text(&run["run"]["info"], "run_id");
    let key = &intruder.api_key;
    let attempts = [
        (
            Method::GET,
            format!("experiments/get?experiment_id={experiment}"),
            None,
        ),
        (Method::GET, format!("runs/get?run_id={run_id}"), None),
        (
            Method::GET,
            format!("metrics/get-history?run_id={run_id}&metric_key=loss"),
            None,
        ),
        (
            Method::POST,
            "runs/log-metric".into(),
            Some(json!({"run_id": run_id, "key": "x", "value": 1.0, "timestamp": 0})),
        ),
        (
            Method::POST,
            "runs/set-tag".into(),
            Some(json!({"run_id": run_id, "key": "x", "value": "y"})),
        ),
        (
            Method::POST,
            "runs/delete".into(),
            Some(json!({"run_id": run_id})),
        ),
        (
            Method::POST,
            "runs/create".into(),
            Some(json!({"experiment_id": experiment})),
        ),
        (
            Method::POST,
            "experiments/delete".into(),
            Some(json!({"experiment_id": experiment})),
        ),
        (
            Method::POST,
            "runs/search".into(),
            Some(json!({"experiment_ids": [experiment]})),
        ),
    ];
    for (method, path, body) in attempts {
        let (status, answer) = call(&app, key, method, &path, body).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}: {answer}");
        assert_eq!(mlflow_error(&answer), "RESOURCE_DOES_NOT_EXIST", "{path}");
    }
    let (status, _) = app
        .call(
            Method::GET,
            &format!("/api/2.0/mlflow-artifacts/artifacts?path={experiment}/{run_id}/artifacts"),
            Some(key),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, still) = call(
        &app,
        &owner.api_key,
        Method::GET,
        &format!("runs/get?run_id={run_id}"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(still["run"]["info"]["lifecycle_stage"], "active");
}

async fn a_viewer_reads_but_cannot_write(app: TestApp) {
    let team = app.signup().await;
    let viewer = app.key_with_role(&team, "viewer").await;
    let created = post_ok(
        &app,
        &team.api_key,
        "experiments/create",
        json!({"name": "shared"}),
    )
    .await;
    let experiment = text(&created, "experiment_id");
    get_ok(
        &app,
        &viewer,
        &format!("experiments/get?experiment_id={experiment}"),
    )
    .await;
    let (status, answer) = call(
        &app,
        &viewer,
        Method::POST,
        "runs/create",
        Some(json!({"experiment_id": experiment})),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(mlflow_error(&answer), "PERMISSION_DENIED");
}

async fn a_proxied_multipart_upload_is_measured_when_it_completes(app: TestApp) {
    let team = app.signup().await;
    let key = &team.api_key;
    let run = post_ok(&app, key, "runs/create", json!({})).await;
    let info = &run["run"]["info"];
    let (experiment, run_id) = (text(info, "experiment_id"), text(info, "run_id"));
    let directory = format!("{experiment}/{run_id}/artifacts/ckpt");
    let mpu = |step: &str| format!("/api/2.0/mlflow-artifacts/mpu/{step}/{directory}");
    let (status, created) = app
        .call(
            Method::POST,
            &mpu("create"),
            Some(key),
            Some(json!({"path": "/home/ana/model.bin", "num_parts": 2})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{created}");
    let parts = [vec![7u8; 5 * 1024 * 1024], b"tail".to_vec()];
    let mut uploaded = Vec::new();
    for (credential, body) in created["credentials"]
        .as_array()
        .unwrap()
        .iter()
        .zip(&parts)
    {
        let response = app
            .client
            .put(text(credential, "url"))
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert!(response.status().is_success(), "{}", response.status());
        let etag = response.headers()["etag"].to_str().unwrap().to_owned();
        uploaded.push(json!({"part_number": credential["part_number"], "etag": etag}));
    }
    let (status, answer) = app
        .call(Method::POST, &mpu("complete"), Some(key), Some(json!({"path": "/home/ana/model.bin", "upload_id": created["upload_id"], "parts": uploaded})))
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let (_, listed) = app.get(&format!("/v1/runs/{run_id}/artifacts"), key).await;
    let whole = parts.concat();
    assert_eq!(listed["artifacts"][0]["path"], "ckpt/model.bin");
    assert_eq!(listed["artifacts"][0]["size"], whole.len());
    assert_eq!(listed["artifacts"][0]["sha256"], sha256_hex(&whole));

    // An aborted upload leaves nothing behind.
    let (_, created) = app
        .call(
            Method::POST,
            &mpu("create"),
            Some(key),
            Some(json!({"path": "other.bin", "num_parts": 1})),
        )
        .await;
    let (status, _) = app
        .call(
            Method::POST,
            &mpu("abort"),
            Some(key),
            Some(json!({"path": "other.bin", "upload_id": created["upload_id"]})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, listed) = app.get(&format!("/v1/runs/{run_id}/artifacts"), key).await;
    assert_eq!(listed["artifacts"].as_array().unwrap().len(), 1);
}

/// The stock client retries a request whose answer it lost; MLflow itself keeps
/// identical metric rows once. Either way a retried request must not store (and bill)
/// its points twice.
async fn a_retried_metric_request_stores_its_points_once(app: TestApp) {
    let team = app.signup().await;
    let key = &team.api_key;
    let run = post_ok(&app, key, "runs/create", json!({})).await;
    let run_id = text(&run["run"]["info"], "run_id");
    let batch = json!({"run_id": run_id, "metrics": [
        {"key": "loss", "value": 0.5, "timestamp": 1_700_000_000_000_i64, "step": 1},
        {"key": "loss", "value": 0.25, "timestamp": 1_700_000_001_000_i64, "step": 2},
        // No timestamp: the server times it, and a retry must still match.
        {"key": "lr", "value": 0.1, "step": 1},
    ]});
    for _ in 0..3 {
        post_ok(&app, key, "runs/log-batch", batch.clone()).await;
    }
    let metric = json!({"run_id": run_id, "key": "acc", "value": 0.9, "timestamp": 1, "step": 7});
    let untimed = json!({"run_id": run_id, "key": "acc", "value": 0.95, "step": 8});
    for _ in 0..2 {
        post_ok(&app, key, "runs/log-metric", metric.clone()).await;
        post_ok(&app, key, "runs/log-metric", untimed.clone()).await;
    }
    // Another value at the same step is a point of its own.
    let changed = json!({"run_id": run_id, "key": "acc", "value": 0.8, "timestamp": 1, "step": 7});
    post_ok(&app, key, "runs/log-metric", changed).await;
    let (_, read) = app.get(&format!("/v1/runs/{run_id}"), key).await;
    assert_eq!(read["series"]["loss"]["count"], 2, "{read}");
    assert_eq!(read["series"]["lr"]["count"], 1, "{read}");
    assert_eq!(read["series"]["acc"]["count"], 3, "{read}");
    let history = get_ok(
        &app,
        key,
        &format!("metrics/get-history?run_id={run_id}&metric_key=acc"),
    )
    .await;
    assert_eq!(
        history["metrics"].as_array().expect("metrics").len(),
        3,
        "{history}"
    );
}

/// A search's work is bounded by what it names: its filter's length and how many
/// experiments it spans. Naming one experiment twice reads it once.
async fn a_search_is_bounded_by_its_filter_and_experiments(app: TestApp) {
    let team = app.signup().await;
    let key = &team.api_key;
    let created = post_ok(&app, key, "experiments/create", json!({"name": "bounded"})).await;
    let experiment = text(&created, "experiment_id");
    post_ok(
        &app,
        key,
        "runs/create",
        json!({"experiment_id": experiment, "run_name": "only"}),
    )
    .await;

    let twice = post_ok(
        &app,
        key,
        "runs/search",
        json!({"experiment_ids": [experiment, experiment]}),
    )
    .await;
    assert_eq!(twice["runs"].as_array().expect("runs").len(), 1, "{twice}");

    // The longest accepted filter still answers, however its LIKE pattern is built.
    let pattern = "%_".repeat(1000);
    let longest = format!("tags.`mlflow.runName` LIKE '{pattern}'");
    assert!(longest.len() <= 4096);
    post_ok(
        &app,
        key,
        "runs/search",
        json!({"experiment_ids": [experiment], "filter": longest}),
    )
    .await;

    let oversized = format!("tags.`mlflow.runName` LIKE '{}'", "%".repeat(4096));
    let (status, answer) = call(
        &app,
        key,
        Method::POST,
        "runs/search",
        Some(json!({"experiment_ids": [experiment], "filter": oversized})),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert_eq!(mlflow_error(&answer), "INVALID_PARAMETER_VALUE", "{answer}");

    let many: Vec<String> = (0..101).map(|n| n.to_string()).collect();
    let (status, answer) = call(
        &app,
        key,
        Method::POST,
        "runs/search",
        Some(json!({"experiment_ids": many})),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert_eq!(mlflow_error(&answer), "INVALID_PARAMETER_VALUE", "{answer}");
}

cases!(embedded, sextant_tests::TestApp::spawn;
    a_run_logged_through_mlflow_reads_back_through_both_apis,
    a_retried_metric_request_stores_its_points_once,
    a_search_is_bounded_by_its_filter_and_experiments,
    another_teams_experiments_and_runs_answer_as_missing,
    a_viewer_reads_but_cannot_write,
    a_proxied_multipart_upload_is_measured_when_it_completes,
);
aws_cases!(on_aws, sextant_tests::TestApp::spawn_on_aws;
    a_run_logged_through_mlflow_reads_back_through_both_apis,
    a_retried_metric_request_stores_its_points_once,
    a_search_is_bounded_by_its_filter_and_experiments,
    another_teams_experiments_and_runs_answer_as_missing,
    a_proxied_multipart_upload_is_measured_when_it_completes,
);

const CAP: u64 = 5;

async fn spawn_capped(backend: Backend) -> TestApp {
    let plan = PricePlan {
        monthly_points_cap: Some(CAP),
        ..PricePlan::default()
    };
    TestApp::spawn_adjusted(backend, |config| config.plan = plan).await
}

/// The cap is enforced by the counter every committed batch adds to, so reaching it
/// through MLflow shows MLflow's points are counted (and billed) like the SDK's.
async fn points_logged_through_mlflow_count_against_the_plan(app: TestApp) {
    let team = app.signup().await;
    let key = &team.api_key;
    let run = post_ok(&app, key, "runs/create", json!({})).await;
    let run_id = text(&run["run"]["info"], "run_id");
    let metrics: Vec<Value> = (0..CAP)
        .map(|step| json!({"key": "m", "value": 1.0, "timestamp": 0, "step": step}))
        .collect();
    post_ok(
        &app,
        key,
        "runs/log-batch",
        json!({"run_id": run_id, "metrics": metrics}),
    )
    .await;
    let (status, answer) = call(
        &app,
        key,
        Method::POST,
        "runs/log-metric",
        Some(json!({"run_id": run_id, "key": "m", "value": 2.0, "timestamp": 0})),
    )
    .await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{answer}");
    assert_eq!(mlflow_error(&answer), "REQUEST_LIMIT_EXCEEDED");
    // The default experiment `0` is the team's Default project.
    let (_, usage_run) = app.get(&format!("/v1/runs/{run_id}"), key).await;
    assert_eq!(usage_run["series"]["m"]["count"], CAP);
    let (status, project) = app.get("/v1/projects/Default", key).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(usage_run["project_id"], project["id"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn points_logged_through_mlflow_count_against_the_plan_on_the_embedded_store() {
    points_logged_through_mlflow_count_against_the_plan(spawn_capped(Backend::Embedded).await)
        .await;
}

#[ignore = "needs moto's server at SEXTANT_TEST_AWS_ENDPOINT; scripts/test.sh starts it"]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn points_logged_through_mlflow_count_against_the_plan_on_dynamodb() {
    let (storage, _, _) = fresh_aws_storage().await;
    points_logged_through_mlflow_count_against_the_plan(spawn_capped(Backend::Aws(storage)).await)
        .await;
}
