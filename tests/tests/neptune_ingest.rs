//! Neptune's ingest protocol, spoken as `neptune-scale` speaks it (protobuf bodies, the
//! access token its key trades for), on both stores. The rules:
//!
//! - an operation acts only in its caller's team: the workspace in `workspace/project`
//!   chooses nothing, and a `run_id` another team used names nothing of theirs;
//! - a member's or admin's credential writes, a viewer's is refused; a revoked key's
//!   access token makes no run at once, and logs (the data plane) until it expires;
//! - an operation sent again (the client retries) is stored once;
//! - a refused field is reported in its request's status, and the others are stored.

use reqwest::{Method, StatusCode};
use serde_json::Value;
use sextant_api::neptune::api_token;
use sextant_neptune_proto::{
    BulkRequestStatus, Code, CreateRun, IngestCode, Message, ModifySet, ModifyStringSet, Operation,
    RequestId, RequestIdList, RunOperation, SetOperation, Step, StringSet, SubmitResponse,
    Timestamp, UpdateRunSnapshot, UpdateRunSnapshots, modify_set, value,
};
use sextant_tests::{Team, TestApp, aws_cases, cases, text};

const INGEST: &str = "/api/client/v1/ingest";

/// The access token the client trades the team's key for.
async fn access_token(app: &TestApp, key: &str) -> String {
    let response = app
        .client
        .get(app.url("/api/backend/v1/authorization/oauth-token"))
        .header("X-Neptune-Api-Token", api_token(&app.base, key))
        .send()
        .await
        .expect("the server answers");
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.expect("JSON");
    text(&body, "accessToken")
}

async fn post(app: &TestApp, path: &str, token: &str, body: Vec<u8>) -> (StatusCode, Vec<u8>) {
    let response = app
        .request(Method::POST, path, Some(token))
        .header("content-type", "application/x-protobuf")
        .body(body)
        .send()
        .await
        .expect("the server answers");
    let status = response.status();
    (status, response.bytes().await.expect("a body").to_vec())
}

/// Submits an operation; answers its request id.
async fn submit(app: &TestApp, token: &str, operation: &RunOperation) -> String {
    let (status, body) = post(app, INGEST, token, operation.encode_to_vec()).await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    let answer = SubmitResponse::decode(body.as_slice()).expect("a SubmitResponse");
    assert_eq!(answer.request_ids.len(), 1, "{answer:?}");
    answer.request_ids[0].clone()
}

/// The status of each request id, as `(grpc code, count, ingest code)` per entry.
async fn check(app: &TestApp, token: &str, ids: &[&str]) -> Vec<Vec<(Code, i64, IngestCode)>> {
    let list = RequestIdList {
        ids: ids
            .iter()
            .map(|id| RequestId {
                value: (*id).to_owned(),
            })
            .collect(),
    };
    let path = format!("{INGEST}/check?projectIdentifier=ws%2Fproject");
    let (status, body) = post(app, &path, token, list.encode_to_vec()).await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    BulkRequestStatus::decode(body.as_slice())
        .expect("a BulkRequestStatus")
        .statuses
        .into_iter()
        .map(|status| {
            status
                .code_by_count
                .into_iter()
                .map(|entry| {
                    (
                        Code::try_from(entry.code).expect("a code"),
                        entry.count,
                        IngestCode::try_from(entry.detail).expect("an ingest code"),
                    )
                })
                .collect()
        })
        .collect()
}

/// The refusals in a status: `(ingest code, count)`, without the stored fields.
fn refusals(status: &[(Code, i64, IngestCode)]) -> Vec<(IngestCode, i64)> {
    status
        .iter()
        .filter(|(code, ..)| *code != Code::Ok)
        .map(|&(_, count, detail)| (detail, count))
        .collect()
}

fn create(project: &str, run_id: &str, experiment: &str) -> RunOperation {
    RunOperation {
        project: project.to_owned(),
        run_id: run_id.to_owned(),
        operation: Some(Operation::Create(CreateRun {
            experiment_id: Some(experiment.to_owned()),
            creation_time: Some(Timestamp {
                seconds: 1_764_576_000,
                nanos: 0,
            }),
            ..CreateRun::default()
        })),
        ..RunOperation::default()
    }
}

fn update(project: &str, run_id: &str, snapshots: Vec<UpdateRunSnapshot>) -> RunOperation {
    RunOperation {
        project: project.to_owned(),
        run_id: run_id.to_owned(),
        operation: Some(Operation::UpdateBatch(UpdateRunSnapshots { snapshots })),
        ..RunOperation::default()
    }
}

fn step(whole: u64, micro: u64) -> Option<Step> {
    Some(Step { whole, micro })
}

fn float(value: f64) -> sextant_neptune_proto::Value {
    sextant_neptune_proto::Value {
        value: Some(value::Value::Float64(value)),
    }
}

fn string(value: &str) -> sextant_neptune_proto::Value {
    sextant_neptune_proto::Value {
        value: Some(value::Value::String(value.to_owned())),
    }
}

/// One point of each of `series` at `step`, stamped.
fn points(
    step: Option<Step>,
    series: &[(&str, sextant_neptune_proto::Value)],
) -> UpdateRunSnapshot {
    UpdateRunSnapshot {
        step,
        timestamp: Some(Timestamp {
            seconds: 1_764_576_060,
            nanos: 500_000_000,
        }),
        append: series
            .iter()
            .map(|(name, value)| ((*name).to_owned(), value.clone()))
            .collect(),
        ..UpdateRunSnapshot::default()
    }
}

/// The one run of a team's project `project`.
async fn only_run(app: &TestApp, team: &Team, project: &str) -> Value {
    let (status, listed) = app
        .get(&format!("/v1/projects/{project}/runs"), &team.api_key)
        .await;
    assert_eq!(status, StatusCode::OK, "{listed}");
    let runs = listed["runs"].as_array().expect("runs");
    assert_eq!(runs.len(), 1, "{listed}");
    let (status, run) = app
        .get(&format!("/v1/runs/{}", text(&runs[0], "id")), &team.api_key)
        .await;
    assert_eq!(status, StatusCode::OK, "{run}");
    run
}

async fn series(app: &TestApp, team: &Team, run: &str, name: &str) -> Value {
    let (status, page) = app
        .get(&format!("/v1/runs/{run}/series/{name}"), &team.api_key)
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    page
}

async fn an_operation_sent_again_is_stored_once(app: TestApp) {
    let team = app.signup().await;
    let token = access_token(&app, &team.api_key).await;
    let created = submit(&app, &token, &create("acme/vision", "run-1", "baseline")).await;
    // The client resumes a run by creating it again.
    let again = submit(&app, &token, &create("acme/vision", "run-1", "baseline")).await;
    let snapshots = (0..100)
        .map(|i| points(step(i, 0), &[("loss", float(1.0 / (i + 1) as f64))]))
        .collect();
    let operation = update("acme/vision", "run-1", snapshots);
    let first = submit(&app, &token, &operation).await;
    let retried = submit(&app, &token, &operation).await;
    assert_eq!(first, retried, "a retry is the same request");
    // One snapshot alone (`update`, not `update_batch`).
    let single = RunOperation {
        project: "acme/vision".into(),
        run_id: "run-1".into(),
        operation: Some(Operation::Update(points(
            step(100, 0),
            &[("loss", float(0.001))],
        ))),
        ..RunOperation::default()
    };
    let one = submit(&app, &token, &single).await;
    for status in check(&app, &token, &[&created, &again, &first, &one]).await {
        assert_eq!(refusals(&status), [], "{status:?}");
    }

    let run = only_run(&app, &team, "vision").await;
    assert_eq!(run["name"], "baseline");
    assert_eq!(run["created_at"], "2025-12-01T08:00:00Z");
    assert_eq!(run["series"]["loss"]["count"], 101, "{run}");
    let loss = series(&app, &team, &text(&run, "id"), "loss").await;
    assert_eq!(loss["steps"].as_array().unwrap().len(), 101);
    assert_eq!(loss["timestamps"][0], 1_764_576_060.5);
    let (_, usage) = app.get("/v1/usage", &team.api_key).await;
    assert_eq!(usage["points"], 101, "{usage}");
}

async fn a_refused_field_is_reported_and_the_rest_of_its_request_stored(app: TestApp) {
    let team = app.signup().await;
    let token = access_token(&app, &team.api_key).await;
    submit(&app, &token, &create("acme/vision", "run-1", "baseline")).await;
    let mut configs = UpdateRunSnapshot::default();
    configs.assign.insert("lr".into(), float(0.1));
    configs.assign.insert("sys/owner".into(), string("mallory"));
    configs.modify_sets.insert(
        "sys/tags".into(),
        ModifySet {
            r#type: Some(modify_set::Type::String(ModifyStringSet {
                values: [
                    ("resnet".to_owned(), SetOperation::Add as i32),
                    ("sweep".to_owned(), SetOperation::Add as i32),
                ]
                .into(),
            })),
        },
    );
    let first = update(
        "acme/vision",
        "run-1",
        vec![configs, points(step(1, 0), &[("loss", float(0.5))])],
    );
    let first = submit(&app, &token, &first).await;

    let mut retyped = UpdateRunSnapshot::default();
    retyped.assign.insert("lr".into(), string("fast"));
    retyped.assign.insert("loss".into(), float(1.0));
    retyped.assign.insert(
        "layers".into(),
        sextant_neptune_proto::Value {
            value: Some(value::Value::StringSet(StringSet {
                values: vec!["conv".into(), "bn".into()],
            })),
        },
    );
    let second = update(
        "acme/vision",
        "run-1",
        vec![
            retyped,
            // Text into a numeric series, and a fraction into a series of whole steps.
            points(step(2, 0), &[("loss", string("oops")), ("acc", float(0.7))]),
            points(step(2, 500_000), &[("loss", float(0.25))]),
            // A series whose first points have fractions counts millionths.
            points(step(0, 250_000), &[("val/loss", float(0.9))]),
            points(step(1, 0), &[("val/loss", float(0.8))]),
        ],
    );
    let second = submit(&app, &token, &second).await;

    let statuses = check(&app, &token, &[&first, &second, "not-one-of-ours"]).await;
    assert_eq!(
        refusals(&statuses[0]),
        [(IngestCode::FieldPathNonWritable, 1)]
    );
    assert_eq!(
        refusals(&statuses[1]),
        [
            (IngestCode::FieldTypeConflicting, 3),
            (IngestCode::SeriesStepInvalid, 1),
        ]
    );
    assert_eq!(statuses[2], [(Code::NotFound, 1, IngestCode::Ok)]);

    let run = only_run(&app, &team, "vision").await;
    assert_eq!(run["params"]["lr"], 0.1, "{run}");
    assert_eq!(run["params"]["layers"], r#"["bn","conv"]"#);
    assert!(run["params"].get("loss").is_none());
    assert_eq!(run["tags"], serde_json::json!(["resnet", "sweep"]));
    let id = text(&run, "id");
    assert_eq!(
        series(&app, &team, &id, "loss").await["values"],
        serde_json::json!([0.5])
    );
    assert_eq!(
        series(&app, &team, &id, "acc").await["steps"],
        serde_json::json!([2])
    );
    assert_eq!(run["series"]["val/loss"]["step_unit"], "micro");
    assert_eq!(
        series(&app, &team, &id, "val/loss").await["steps"],
        serde_json::json!([250_000, 1_000_000])
    );
}

async fn an_operation_acts_only_in_its_callers_team(app: TestApp) {
    let a = app.signup().await;
    let b = app.signup().await;
    let a_token = access_token(&app, &a.api_key).await;
    let b_token = access_token(&app, &b.api_key).await;
    submit(
        &app,
        &a_token,
        &create("shared-name/vision", "run-1", "a's"),
    )
    .await;
    let a_points = update(
        "shared-name/vision",
        "run-1",
        vec![points(step(0, 0), &[("loss", float(1.0))])],
    );
    submit(&app, &a_token, &a_points).await;

    // B names the same workspace, project and run: none of it is A's.
    let b_points = update(
        "shared-name/vision",
        "run-1",
        vec![points(step(0, 0), &[("loss", float(2.0))])],
    );
    let no_project = submit(&app, &b_token, &b_points).await;
    submit(
        &app,
        &b_token,
        &create("shared-name/vision", "b-other", "b's other"),
    )
    .await;
    let no_run = submit(&app, &b_token, &b_points).await;
    let statuses = check(&app, &b_token, &[&no_project, &no_run]).await;
    assert_eq!(refusals(&statuses[0]), [(IngestCode::ProjectNotFound, 1)]);
    assert_eq!(refusals(&statuses[1]), [(IngestCode::RunNotFound, 1)]);
    submit(
        &app,
        &b_token,
        &create("shared-name/vision", "run-1", "b's"),
    )
    .await;
    submit(&app, &b_token, &b_points).await;

    let a_run = only_run(&app, &a, "vision").await;
    let (_, b_runs) = app.get("/v1/projects/vision/runs", &b.api_key).await;
    let b_run = b_runs["runs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|run| run["name"] == "b's")
        .expect("b's run")
        .clone();
    assert_ne!(a_run["id"], b_run["id"]);
    assert_eq!(a_run["name"], "a's");
    assert_eq!(b_run["name"], "b's");
    let loss = series(&app, &a, &text(&a_run, "id"), "loss").await;
    assert_eq!(loss["values"], serde_json::json!([1.0]));
}

async fn a_run_deleted_in_sextant_is_made_anew_when_the_client_resumes_it(app: TestApp) {
    let team = app.signup().await;
    let token = access_token(&app, &team.api_key).await;
    submit(&app, &token, &create("acme/vision", "run-1", "first")).await;
    let first = only_run(&app, &team, "vision").await;
    let (status, _) = app
        .call(
            Method::DELETE,
            &format!("/v1/runs/{}", text(&first, "id")),
            Some(&team.api_key),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    // The client, unaware, logs on: the run is gone, so its points find none.
    let late = update(
        "acme/vision",
        "run-1",
        vec![points(step(0, 0), &[("loss", float(1.0))])],
    );
    let refused = submit(&app, &token, &late).await;
    assert_eq!(
        refusals(&check(&app, &token, &[&refused]).await[0]),
        [(IngestCode::RunNotFound, 1)]
    );
    // Run again, it creates the run anew, and logs to it.
    submit(&app, &token, &create("acme/vision", "run-1", "second")).await;
    let mut again = late.clone();
    if let Some(Operation::UpdateBatch(batch)) = &mut again.operation {
        batch.snapshots[0].append.insert("loss".into(), float(2.0));
    }
    submit(&app, &token, &again).await;
    let second = only_run(&app, &team, "vision").await;
    assert_ne!(second["id"], first["id"]);
    assert_eq!(second["name"], "second");
    let loss = series(&app, &team, &text(&second, "id"), "loss").await;
    assert_eq!(loss["values"], serde_json::json!([2.0]));
}

async fn a_viewer_cannot_ingest_and_a_revoked_key_creates_nothing(app: TestApp) {
    let team = app.signup().await;
    let viewer = app.key_with_role(&team, "viewer").await;
    let viewer_token = access_token(&app, &viewer).await;
    let create_op = create("acme/vision", "run-1", "baseline").encode_to_vec();
    let (status, _) = post(&app, INGEST, &viewer_token, create_op.clone()).await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    let (id, key) = app.new_api_key(&team, "neptune").await;
    let token = access_token(&app, &key).await;
    submit(
        &app,
        &token,
        &create("acme/vision", "made-before", "before"),
    )
    .await;
    assert_eq!(app.revoke_api_key(&team, &id).await, StatusCode::NO_CONTENT);
    // Creating is the control plane: the revoked key makes nothing, at once.
    let (status, _) = post(&app, INGEST, &token, create_op.clone()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // Logging is the data plane, as the SDK's: the token logs to the run it made until
    // it expires (at most `access_token_ttl`).
    let points_op = update(
        "acme/vision",
        "made-before",
        vec![points(step(0, 0), &[("loss", float(1.0))])],
    );
    submit(&app, &token, &points_op).await;
    let (status, _) = post(&app, INGEST, "", create_op).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, listed) = app.get("/v1/projects/vision/runs", &team.api_key).await;
    assert_eq!(status, StatusCode::OK);
    let names: Vec<String> = listed["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|run| text(run, "name"))
        .collect();
    assert_eq!(names, ["before"], "nothing was made after the revocation");
}

async fn a_body_that_is_not_an_operation_is_refused(app: TestApp) {
    let team = app.signup().await;
    let token = access_token(&app, &team.api_key).await;
    let (status, body) = post(&app, INGEST, &token, b"{\"not\": \"protobuf\"}".to_vec()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let body: Value = serde_json::from_slice(&body).expect("a JSON error");
    assert_eq!(body["error"]["code"], "invalid_request", "{body}");
    let empty = RunOperation {
        project: "acme/vision".into(),
        run_id: "run-1".into(),
        ..RunOperation::default()
    };
    let (status, _) = post(&app, INGEST, &token, empty.encode_to_vec()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    // A check takes a team's credential, and a RequestIdList.
    let check_path = format!("{INGEST}/check?projectIdentifier=acme%2Fvision");
    let (status, _) = post(
        &app,
        &check_path,
        "",
        RequestIdList::default().encode_to_vec(),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = post(&app, &check_path, &token, b"\xff\xff".to_vec()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

macro_rules! on_both_stores {
    ($($case:ident),+ $(,)?) => {
        cases!(embedded, sextant_tests::TestApp::spawn; $($case),+);
        aws_cases!(dynamodb, sextant_tests::TestApp::spawn_on_aws; $($case),+);
    };
}

on_both_stores!(
    an_operation_sent_again_is_stored_once,
    a_refused_field_is_reported_and_the_rest_of_its_request_stored,
    an_operation_acts_only_in_its_callers_team,
    a_run_deleted_in_sextant_is_made_anew_when_the_client_resumes_it,
    a_viewer_cannot_ingest_and_a_revoked_key_creates_nothing,
    a_body_that_is_not_an_operation_is_refused,
);

/// `sextant serve` takes the largest requests Neptune's client sends (16 MiB), past the
/// 6 MB every other route takes, and stores them across as many log batches as needed.
#[tokio::test]
async fn serve_takes_the_clients_largest_requests_and_refuses_larger_ones() {
    let app = TestApp::spawn().await;
    let team = app.signup().await;
    let token = access_token(&app, &team.api_key).await;
    submit(&app, &token, &create("acme/vision", "big", "big")).await;
    // 300,000 points (more than one log batch holds) in about 9 MB.
    let snapshots: Vec<UpdateRunSnapshot> = (0..300_000)
        .map(|i| points(step(i, 0), &[("train/loss", float(i as f64))]))
        .collect();
    let operation = update("acme/vision", "big", snapshots);
    let body = operation.encode_to_vec();
    assert!(body.len() > 6 * 1024 * 1024, "{} bytes", body.len());
    let id = submit(&app, &token, &operation).await;
    assert_eq!(refusals(&check(&app, &token, &[&id]).await[0]), []);
    let run = only_run(&app, &team, "vision").await;
    assert_eq!(run["series"]["train/loss"]["count"], 300_000);

    let (status, _) = post(
        &app,
        INGEST,
        &token,
        vec![0; sextant_api::neptune::MAX_INGEST_BYTES + 1],
    )
    .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
}
