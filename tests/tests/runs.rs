//! Runs over the real HTTP surface: creating, changing, ending and aborting them, the
//! lifecycle as heartbeats stop, the run table's filters, sorts and cursor, comparing
//! runs, deleting runs and projects, roles, and tenancy on every run endpoint.

use std::collections::BTreeSet;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sextant_cli::Backend;
use sextant_tests::{
    Team, TestApp, aws_cases, cases, error_code, fresh_aws_storage, text, without_elapsed_storage,
};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

async fn patch(app: &TestApp, key: &str, run: &str, body: Value) -> (StatusCode, Value) {
    app.call(
        Method::PATCH,
        &format!("/v1/runs/{run}"),
        Some(key),
        Some(body),
    )
    .await
}

async fn get_run(app: &TestApp, key: &str, run: &str) -> Value {
    let (status, body) = app.get(&format!("/v1/runs/{run}"), key).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

/// Logs `values` to series `name` at steps 0, 1, 2, ..., asserting it is accepted.
async fn log_values(app: &TestApp, key: &str, run: &str, name: &str, values: &[Value]) {
    let steps: Vec<usize> = (0..values.len()).collect();
    let (status, body) = app
        .log(
            key,
            run,
            json!({
                "batch_id": sextant_tests::unique("batch"),
                "series": {name: {"steps": steps, "values": values}},
            }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["accepted"], values.len(), "{body}");
}

async fn list(app: &TestApp, key: &str, project: &str, query: &str) -> Value {
    let (status, body) = app
        .get(&format!("/v1/projects/{project}/runs?{query}"), key)
        .await;
    assert_eq!(status, StatusCode::OK, "{query}: {body}");
    body
}

fn ids(list: &Value) -> Vec<String> {
    list["runs"]
        .as_array()
        .unwrap_or_else(|| panic!("no runs in {list}"))
        .iter()
        .map(|run| text(run, "id"))
        .collect()
}

fn id(run: &Value) -> String {
    text(run, "id")
}

fn timestamp(value: &Value) -> OffsetDateTime {
    OffsetDateTime::parse(value.as_str().expect("a timestamp string"), &Rfc3339)
        .unwrap_or_else(|_| panic!("not RFC 3339: {value}"))
}

/// A run id that is well formed but names no run.
fn ghost_run_id() -> String {
    format!("run_{}", ulid::Ulid::generate().to_string().to_lowercase())
}

async fn short_heartbeat_embedded() -> TestApp {
    TestApp::spawn_configured(Backend::Embedded, time::Duration::seconds(1)).await
}

async fn short_heartbeat_dynamodb() -> TestApp {
    let (config, _, _) = fresh_aws_storage().await;
    TestApp::spawn_configured(Backend::Aws(config), time::Duration::seconds(1)).await
}

cases!(embedded, sextant_tests::TestApp::spawn;
    a_new_run_gets_a_number_a_default_name_and_flattened_params,
    a_remote_url_loses_its_credentials_on_every_way_in,
    bad_new_runs_are_refused_with_clear_codes,
    patching_changes_name_description_tags_params_and_git,
    an_ended_run_refuses_other_statuses_and_points_but_not_the_same_status,
    a_queued_run_is_aborted_at_once_and_a_running_one_is_asked_to_stop,
    a_queued_run_starts_running_when_it_first_logs,
    the_run_table_filters_by_tag_status_name_and_creation_time,
    sorting_by_name_and_creation_time_goes_both_ways,
    sorting_by_a_param_puts_runs_without_it_last_in_both_directions,
    sorting_by_a_metric_uses_last_min_or_max_and_puts_missing_values_last,
    cursor_paging_neither_repeats_nor_skips_a_run_in_any_sort_order,
    bad_table_queries_get_clear_codes,
    runs_created_at_once_get_distinct_numbers,
    comparing_runs_lines_up_params_and_series_and_marks_differences,
    deleting_a_run_removes_it_and_its_series,
    deleting_a_project_deletes_its_runs_and_their_series,
    every_run_endpoint_answers_another_team_404_exactly_as_a_missing_run,
    a_viewer_reads_runs_and_series_but_cannot_change_anything,
    a_run_shows_what_it_cost_and_the_table_sums_the_runs_it_keeps,
    the_run_table_filters_by_param_conditions_of_every_type,
);

aws_cases!(dynamodb, sextant_tests::TestApp::spawn_on_aws;
    a_new_run_gets_a_number_a_default_name_and_flattened_params,
    a_remote_url_loses_its_credentials_on_every_way_in,
    patching_changes_name_description_tags_params_and_git,
    an_ended_run_refuses_other_statuses_and_points_but_not_the_same_status,
    a_queued_run_is_aborted_at_once_and_a_running_one_is_asked_to_stop,
    the_run_table_filters_by_tag_status_name_and_creation_time,
    sorting_by_a_metric_uses_last_min_or_max_and_puts_missing_values_last,
    cursor_paging_neither_repeats_nor_skips_a_run_in_any_sort_order,
    comparing_runs_lines_up_params_and_series_and_marks_differences,
    deleting_a_run_removes_it_and_its_series,
    deleting_a_project_deletes_its_runs_and_their_series,
    every_run_endpoint_answers_another_team_404_exactly_as_a_missing_run,
    a_run_shows_what_it_cost_and_the_table_sums_the_runs_it_keeps,
    the_run_table_filters_by_param_conditions_of_every_type,
);

cases!(embedded_with_a_one_second_heartbeat_timeout, super::short_heartbeat_embedded;
    a_silent_run_reads_as_lost_until_it_logs_again,
    an_abort_never_confirmed_reads_as_aborted_once_the_heartbeat_times_out,
);

aws_cases!(dynamodb_with_a_one_second_heartbeat_timeout, super::short_heartbeat_dynamodb;
    a_silent_run_reads_as_lost_until_it_logs_again,
    an_abort_never_confirmed_reads_as_aborted_once_the_heartbeat_times_out,
);

async fn a_new_run_gets_a_number_a_default_name_and_flattened_params(app: TestApp) {
    let team = app.signup().await;
    let key = &team.api_key;
    let project = app.create_project(key, "whales").await;

    let first = app.create_run(key, "whales", json!({})).await;
    assert!(id(&first).starts_with("run_"), "{first}");
    assert_eq!(first["project_id"], project.as_str());
    assert_eq!(first["number"], 1);
    assert_eq!(first["name"], "whales-1");
    assert_eq!(first["owner"], team.user_id.as_str());
    assert_eq!(first["status"], "running");
    assert_eq!(first["tags"], json!([]));
    assert_eq!(first["params"], json!({}));
    assert_eq!(first["series"], json!({}));
    assert_eq!(first["abort_requested"], false);
    assert!(first["ended_at"].is_null(), "{first}");
    let created = timestamp(&first["created_at"]);
    assert!((OffsetDateTime::now_utc() - created).abs() < time::Duration::minutes(1));
    assert_eq!(first["heartbeat_at"], first["created_at"]);

    // By id as well as by name; numbers go on counting.
    let second = app
        .create_run(
            key,
            &project,
            json!({
                "name": "baseline",
                "description": "the first try",
                "tags": ["b", "a", "a"],
                "params": {
                    "optimizer": {"name": "adam", "lr": 0.001, "betas": [0.9, 0.999]},
                    "epochs": 10,
                    "amp": true,
                    "seed": null,
                    "schedule/warmup": 0.1,
                },
                "git": {"commit": "abc123", "branch": "main", "remote": "git@example.com:w/w.git",
                        "message": "try adam", "dirty": true},
                "status": "queued",
            }),
        )
        .await;
    assert_eq!(second["number"], 2);
    assert_eq!(second["name"], "baseline");
    assert_eq!(second["description"], "the first try");
    assert_eq!(second["status"], "queued");
    assert_eq!(second["tags"], json!(["a", "b"]));
    assert_eq!(
        second["params"],
        json!({
            "optimizer/name": "adam",
            "optimizer/lr": 0.001,
            "optimizer/betas": "[0.9,0.999]",
            "epochs": 10,
            "amp": true,
            "schedule/warmup": 0.1,
        })
    );
    assert_eq!(
        second["git"],
        json!({"commit": "abc123", "branch": "main", "remote": "git@example.com:w/w.git",
               "message": "try adam", "dirty": true})
    );

    // Reading a run gives what creating it answered.
    assert_eq!(get_run(&app, key, &id(&first)).await, first);
    assert_eq!(get_run(&app, key, &id(&second)).await, second);
    let third = app
        .create_run(key, "whales", json!({"status": "running"}))
        .await;
    assert_eq!(
        (third["number"].clone(), third["name"].clone()),
        (json!(3), json!("whales-3"))
    );
}

/// CI clones put tokens in the remote's URL; a run shown to anyone with a share link
/// must not carry them, whichever way the git fields came in.
async fn a_remote_url_loses_its_credentials_on_every_way_in(app: TestApp) {
    let team = app.signup().await;
    let key = &team.api_key;
    let project = app.create_project(key, "ci").await;
    let leaky = "https://x-access-token:ghp_sekrit@github.com/whales/w.git";
    let clean = "https://github.com/whales/w.git";
    let created = app
        .create_run(key, &project, json!({"git": {"remote": leaky}}))
        .await;
    assert_eq!(created["git"]["remote"], clean);
    let (status, patched) = app
        .call(
            Method::PATCH,
            &format!("/v1/runs/{}", id(&created)),
            Some(key),
            Some(json!({"git": {"remote": leaky.replace("w.git", "v.git")}})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{patched}");
    assert_eq!(patched["git"]["remote"], clean.replace("w.git", "v.git"));
    let (status, job) = app
        .post(
            &format!("/v1/projects/{project}/queues/default/jobs"),
            key,
            json!({"command": ["true"], "git": {"remote": leaky}}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{job}");
    assert_eq!(job["run"]["git"]["remote"], clean);
    let run = id(&created);
    let (status, body) = app
        .call(
            Method::POST,
            "/api/2.0/mlflow/runs/set-tag",
            Some(key),
            Some(json!({"run_id": run, "key": "mlflow.source.git.repoURL", "value": leaky})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let read = get_run(&app, key, &run).await;
    assert_eq!(read["git"]["remote"], clean);
    let (status, share) = app
        .post(&format!("/v1/runs/{run}/shares"), key, json!({}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{share}");
    let (status, shared) = app
        .call(
            Method::GET,
            &format!("/v1/shared/{}", text(&share, "token")),
            None,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{shared}");
    assert!(!shared.to_string().contains("ghp_sekrit"), "{shared}");
}

async fn bad_new_runs_are_refused_with_clear_codes(app: TestApp) {
    let team = app.signup().await;
    let key = &team.api_key;
    app.create_project(key, "strict").await;
    let too_many_tags: Vec<String> = (0..101).map(|i| format!("t{i}")).collect();
    for (body, status, code) in [
        (json!({"status": "succeeded"}), 400, "invalid_status"),
        (json!({"status": "lost"}), 400, "invalid_status"),
        (json!({"status": "sleeping"}), 400, "invalid_request"),
        (json!({"tags": "one"}), 400, "invalid_request"),
        (json!({"tags": [1]}), 400, "invalid_request"),
        (json!({"params": [1, 2]}), 400, "invalid_request"),
        (json!({"name": 7}), 400, "invalid_request"),
        (json!({"colour": "blue"}), 400, "invalid_request"),
        (json!({"name": ""}), 400, "invalid_name"),
        (json!({"name": "   "}), 400, "invalid_name"),
        (json!({"name": "x".repeat(251)}), 400, "invalid_name"),
        (json!({"name": "line\nbreak"}), 400, "invalid_name"),
        (json!({"tags": [""]}), 400, "invalid_tag"),
        (json!({"tags": too_many_tags}), 400, "invalid_tag"),
        (
            json!({"params": {"s": "y".repeat(6_001)}}),
            400,
            "invalid_params",
        ),
        (
            json!({"params": {"a/b": 1, "a": {"b": 2}}}),
            400,
            "invalid_params",
        ),
        (json!({"params": {"": 1}}), 400, "invalid_params"),
        (
            json!({"description": "d".repeat(10_001)}),
            400,
            "invalid_description",
        ),
        (
            json!({"git": {"commit": "c".repeat(1_001)}}),
            400,
            "invalid_git",
        ),
    ] {
        let (got, response) = app
            .post("/v1/projects/strict/runs", key, body.clone())
            .await;
        assert_eq!(got.as_u16(), status, "{body}: {response}");
        assert_eq!(error_code(&response), code, "{body}");
    }
    let (status, response) = app.post("/v1/projects/nowhere/runs", key, json!({})).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(error_code(&response), "not_found");
    // Nothing refused was created, and numbering did not skip.
    let table = list(&app, key, "strict", "").await;
    assert_eq!(table["total"], 0, "{table}");
    let run = app.create_run(key, "strict", json!({})).await;
    assert_eq!(run["number"], 1);
}

async fn patching_changes_name_description_tags_params_and_git(app: TestApp) {
    let team = app.signup().await;
    let key = &team.api_key;
    app.create_project(key, "tuning").await;
    let run = app
        .create_run(
            key,
            "tuning",
            json!({"tags": ["keep", "drop"], "params": {"lr": 0.1, "optimizer": {"name": "sgd"}},
               "git": {"commit": "abc"}}),
        )
        .await;
    let run_id = id(&run);

    let (status, patched) = patch(
        &app,
        key,
        &run_id,
        json!({
            "name": "renamed",
            "description": "now with momentum",
            "tags": {"add": ["new", "keep"], "remove": ["drop", "never-there"]},
            "params": {"lr": null, "optimizer": {"momentum": 0.9}, "batch": 64},
            "git": {"commit": "def", "dirty": false},
        }),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{patched}");
    assert_eq!(patched["name"], "renamed");
    assert_eq!(patched["description"], "now with momentum");
    assert_eq!(patched["tags"], json!(["keep", "new"]));
    assert_eq!(
        patched["params"],
        json!({"optimizer/name": "sgd", "optimizer/momentum": 0.9, "batch": 64})
    );
    assert_eq!(patched["git"], json!({"commit": "def", "dirty": false}));
    assert_eq!(patched["number"], run["number"]);
    assert_eq!(patched["created_at"], run["created_at"]);
    assert_eq!(get_run(&app, key, &run_id).await, patched);

    // An empty patch changes nothing.
    let (status, same) = patch(&app, key, &run_id, json!({})).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(same["params"], patched["params"]);
    assert_eq!(same["tags"], patched["tags"]);

    for (body, status, code) in [
        (json!({"tags": ["x"]}), 400, "invalid_request"),
        (
            json!({"params": {"lr": [1, {"x": 2}]}, "nope": 1}),
            400,
            "invalid_request",
        ),
        (json!({"status": "lost"}), 400, "invalid_status"),
        (json!({"status": "bogus"}), 400, "invalid_request"),
        (json!({"status": "queued"}), 409, "invalid_transition"),
        (json!({"name": ""}), 400, "invalid_name"),
        (json!({"tags": {"add": [""]}}), 400, "invalid_tag"),
        (
            json!({"params": {"s": "y".repeat(6_001)}}),
            400,
            "invalid_params",
        ),
    ] {
        let (got, response) = patch(&app, key, &run_id, body.clone()).await;
        assert_eq!(got.as_u16(), status, "{body}: {response}");
        assert_eq!(error_code(&response), code, "{body}");
    }
    // A refused patch changed nothing, not even the parts that were valid.
    let (_, _) = patch(
        &app,
        key,
        &run_id,
        json!({"name": "half", "status": "queued"}),
    )
    .await;
    assert_eq!(get_run(&app, key, &run_id).await["name"], "renamed");
}

async fn an_ended_run_refuses_other_statuses_and_points_but_not_the_same_status(app: TestApp) {
    let team = app.signup().await;
    let key = &team.api_key;
    app.create_project(key, "ending").await;
    let run_id = id(&app.create_run(key, "ending", json!({})).await);
    log_values(&app, key, &run_id, "loss", &[json!(1.0), json!(0.5)]).await;

    let (status, ended) = patch(&app, key, &run_id, json!({"status": "succeeded"})).await;
    assert_eq!(status, StatusCode::OK, "{ended}");
    assert_eq!(ended["status"], "succeeded");
    let ended_at = timestamp(&ended["ended_at"]);
    assert!(ended_at >= timestamp(&ended["created_at"]));

    // Ending it again the same way is a harmless retry.
    let (status, again) = patch(&app, key, &run_id, json!({"status": "succeeded"})).await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(again["ended_at"], ended["ended_at"]);

    for status in ["failed", "running", "aborted", "queued"] {
        let (got, response) = patch(&app, key, &run_id, json!({"status": status})).await;
        assert_eq!(got, StatusCode::CONFLICT, "{status}: {response}");
        assert_eq!(error_code(&response), "run_ended");
    }
    let (got, response) = patch(&app, key, &run_id, json!({"status": "lost"})).await;
    assert_eq!(got, StatusCode::CONFLICT, "{response}");
    let (got, response) = app
        .log(
            key,
            &run_id,
            json!({"batch_id": "late", "series": {"loss": {"steps": [2], "values": [0.1]}}}),
        )
        .await;
    assert_eq!(got, StatusCode::CONFLICT, "{response}");
    assert_eq!(error_code(&response), "run_ended");
    let (got, response) = app.log(key, &run_id, json!({"heartbeat": true})).await;
    assert_eq!(got, StatusCode::CONFLICT, "{response}");
    assert_eq!(error_code(&response), "run_ended");
    let (got, response) = app
        .post(&format!("/v1/runs/{run_id}/abort"), key, json!({}))
        .await;
    assert_eq!(got, StatusCode::CONFLICT, "{response}");
    assert_eq!(error_code(&response), "run_ended");

    // Notes and tags may still be added to a finished run.
    let (status, tagged) = patch(
        &app,
        key,
        &run_id,
        json!({"tags": {"add": ["best"]}, "description": "keeper"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{tagged}");
    let now = get_run(&app, key, &run_id).await;
    assert_eq!(now["status"], "succeeded");
    assert_eq!(now["ended_at"], ended["ended_at"]);
    assert_eq!(now["tags"], json!(["best"]));
    assert_eq!(now["series"]["loss"]["count"], 2, "nothing late was stored");

    // Each ending status sets ended_at.
    for status in ["failed", "aborted"] {
        let other = id(&app.create_run(key, "ending", json!({})).await);
        let (got, ended) = patch(&app, key, &other, json!({"status": status})).await;
        assert_eq!(got, StatusCode::OK, "{ended}");
        assert_eq!(ended["status"], status);
        assert!(ended["ended_at"].is_string(), "{ended}");
    }
    // A queued run may start, or end without starting.
    let queued = id(&app
        .create_run(key, "ending", json!({"status": "queued"}))
        .await);
    let (got, body) = patch(&app, key, &queued, json!({"status": "queued"})).await;
    assert_eq!(
        (got, body["status"].clone()),
        (StatusCode::OK, json!("queued"))
    );
    let (got, body) = patch(&app, key, &queued, json!({"status": "running"})).await;
    assert_eq!(
        (got, body["status"].clone()),
        (StatusCode::OK, json!("running"))
    );
    assert!(body["ended_at"].is_null());
}

async fn a_queued_run_is_aborted_at_once_and_a_running_one_is_asked_to_stop(app: TestApp) {
    let team = app.signup().await;
    let key = &team.api_key;
    app.create_project(key, "aborts").await;

    let queued = id(&app
        .create_run(key, "aborts", json!({"status": "queued"}))
        .await);
    let (status, aborted) = app
        .post(&format!("/v1/runs/{queued}/abort"), key, json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{aborted}");
    assert_eq!(aborted["status"], "aborted");
    assert!(aborted["ended_at"].is_string(), "{aborted}");
    let (status, again) = app
        .post(&format!("/v1/runs/{queued}/abort"), key, json!({}))
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{again}");
    assert_eq!(error_code(&again), "run_ended");

    let running = id(&app.create_run(key, "aborts", json!({})).await);
    let calm = id(&app.create_run(key, "aborts", json!({})).await);
    let batch =
        |id: &str| json!({"batch_id": id, "series": {"loss": {"steps": [0], "values": [1.0]}}});
    let (_, before) = app.log(key, &running, batch("before")).await;
    assert_eq!(before, json!({"accepted": 1, "abort_requested": false}));

    let (status, asked) = app
        .post(&format!("/v1/runs/{running}/abort"), key, json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{asked}");
    assert_eq!(asked["status"], "running");
    assert_eq!(asked["abort_requested"], true);
    assert!(asked["ended_at"].is_null());
    // Asking twice is harmless.
    let (status, _) = app
        .post(&format!("/v1/runs/{running}/abort"), key, json!({}))
        .await;
    assert_eq!(status, StatusCode::OK);

    // The very next log response, and heartbeat, carry the request.
    let (status, next) = app.log(key, &running, batch("after")).await;
    assert_eq!(status, StatusCode::OK, "{next}");
    assert_eq!(next, json!({"accepted": 1, "abort_requested": true}));
    let (_, beat) = app.log(key, &running, json!({"heartbeat": true})).await;
    assert_eq!(beat, json!({"accepted": 0, "abort_requested": true}));
    // Another run is not affected.
    let (_, other) = app.log(key, &calm, batch("calm")).await;
    assert_eq!(other, json!({"accepted": 1, "abort_requested": false}));

    // The client confirms by ending the run as aborted.
    let (status, confirmed) = patch(&app, key, &running, json!({"status": "aborted"})).await;
    assert_eq!(status, StatusCode::OK, "{confirmed}");
    assert_eq!(confirmed["status"], "aborted");
    assert!(confirmed["ended_at"].is_string());
    assert_eq!(confirmed["series"]["loss"]["count"], 2);
    let (status, refused) = app.log(key, &running, batch("too-late")).await;
    assert_eq!(status, StatusCode::CONFLICT, "{refused}");
    assert_eq!(error_code(&refused), "run_ended");

    let missing = ghost_run_id();
    let (status, body) = app
        .post(&format!("/v1/runs/{missing}/abort"), key, json!({}))
        .await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::NOT_FOUND, "not_found".into())
    );
}

async fn a_queued_run_starts_running_when_it_first_logs(app: TestApp) {
    let team = app.signup().await;
    let key = &team.api_key;
    app.create_project(key, "queue").await;
    let by_heartbeat = id(&app
        .create_run(key, "queue", json!({"status": "queued"}))
        .await);
    let by_points = id(&app
        .create_run(key, "queue", json!({"status": "queued"}))
        .await);
    let (status, body) = app
        .log(key, &by_heartbeat, json!({"heartbeat": true}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(get_run(&app, key, &by_heartbeat).await["status"], "running");
    log_values(&app, key, &by_points, "loss", &[json!(1.0)]).await;
    assert_eq!(get_run(&app, key, &by_points).await["status"], "running");
}

async fn a_silent_run_reads_as_lost_until_it_logs_again(app: TestApp) {
    let team = app.signup().await;
    let key = &team.api_key;
    app.create_project(key, "silence").await;
    let quiet = id(&app.create_run(key, "silence", json!({})).await);
    let ended_later = id(&app.create_run(key, "silence", json!({})).await);
    let queued = id(&app
        .create_run(key, "silence", json!({"status": "queued"}))
        .await);
    let done = id(&app.create_run(key, "silence", json!({})).await);
    patch(&app, key, &done, json!({"status": "succeeded"})).await;

    tokio::time::sleep(std::time::Duration::from_millis(1_500)).await;

    let lost = get_run(&app, key, &quiet).await;
    assert_eq!(lost["status"], "lost", "{lost}");
    assert!(lost["ended_at"].is_null(), "{lost}");
    assert_eq!(get_run(&app, key, &queued).await["status"], "queued");
    assert_eq!(get_run(&app, key, &done).await["status"], "succeeded");
    let set = |list: &Value| ids(list).into_iter().collect::<BTreeSet<_>>();
    let expected: BTreeSet<String> = [quiet.clone(), ended_later.clone()].into();
    assert_eq!(
        set(&list(&app, key, "silence", "status=lost").await),
        expected
    );
    assert_eq!(
        list(&app, key, "silence", "status=running").await["total"],
        0
    );
    assert_eq!(
        set(&list(&app, key, "silence", "status=running,lost").await),
        expected
    );

    // Lost is read from silence; it cannot be set.
    let (status, body) = patch(&app, key, &quiet, json!({"status": "lost"})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(error_code(&body), "invalid_status");

    // A heartbeat brings it back; so do points.
    let (status, beat) = app.log(key, &quiet, json!({"heartbeat": true})).await;
    assert_eq!(status, StatusCode::OK, "{beat}");
    assert_eq!(beat, json!({"accepted": 0, "abort_requested": false}));
    let back = get_run(&app, key, &quiet).await;
    assert_eq!(back["status"], "running", "{back}");
    assert!(timestamp(&back["heartbeat_at"]) > timestamp(&lost["heartbeat_at"]));
    assert_eq!(
        ids(&list(&app, key, "silence", "status=running").await),
        vec![quiet.clone()]
    );

    // A lost run can still be ended by its client.
    let (status, ended) = patch(&app, key, &ended_later, json!({"status": "failed"})).await;
    assert_eq!(status, StatusCode::OK, "{ended}");
    assert_eq!(ended["status"], "failed");
    assert!(ended["ended_at"].is_string());

    // And points revive a lost run too.
    tokio::time::sleep(std::time::Duration::from_millis(1_500)).await;
    assert_eq!(get_run(&app, key, &quiet).await["status"], "lost");
    log_values(&app, key, &quiet, "loss", &[json!(0.5)]).await;
    assert_eq!(get_run(&app, key, &quiet).await["status"], "running");
}

async fn an_abort_never_confirmed_reads_as_aborted_once_the_heartbeat_times_out(app: TestApp) {
    let team = app.signup().await;
    let key = &team.api_key;
    app.create_project(key, "stuck").await;
    let run_id = id(&app.create_run(key, "stuck", json!({})).await);
    let lost_then_aborted = id(&app.create_run(key, "stuck", json!({})).await);
    let (status, asked) = app
        .post(&format!("/v1/runs/{run_id}/abort"), key, json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{asked}");
    let (_, beat) = app.log(key, &run_id, json!({"heartbeat": true})).await;
    assert_eq!(beat["abort_requested"], true);
    let last_heard = get_run(&app, key, &run_id).await["heartbeat_at"].clone();

    tokio::time::sleep(std::time::Duration::from_millis(1_500)).await;

    let aborted = get_run(&app, key, &run_id).await;
    assert_eq!(aborted["status"], "aborted", "{aborted}");
    assert_eq!(aborted["abort_requested"], true);
    // It ended when it was last heard from.
    assert_eq!(aborted["ended_at"], last_heard, "{aborted}");
    assert_eq!(
        ids(&list(&app, key, "stuck", "status=aborted").await),
        vec![run_id.clone()]
    );

    for batch in [
        json!({"heartbeat": true}),
        json!({"batch_id": "b", "series": {"loss": {"steps": [1], "values": [1.0]}}}),
    ] {
        let (status, body) = app.log(key, &run_id, batch).await;
        assert_eq!(status, StatusCode::CONFLICT, "{body}");
        assert_eq!(error_code(&body), "run_ended");
    }
    let (status, body) = patch(&app, key, &run_id, json!({"status": "aborted"})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "aborted");
    let (status, body) = patch(&app, key, &run_id, json!({"status": "succeeded"})).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(error_code(&body), "run_ended");
    let (status, body) = app
        .post(&format!("/v1/runs/{run_id}/abort"), key, json!({}))
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    let (_, compared) = app.get(&format!("/v1/compare?runs={run_id}"), key).await;
    assert_eq!(compared["runs"][0]["status"], "aborted", "{compared}");

    // Aborting a run that is already lost ends it at once: nobody will confirm.
    assert_eq!(
        get_run(&app, key, &lost_then_aborted).await["status"],
        "lost"
    );
    let (status, body) = app
        .post(
            &format!("/v1/runs/{lost_then_aborted}/abort"),
            key,
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "aborted", "{body}");
    assert!(body["ended_at"].is_string(), "{body}");
}

async fn the_run_table_filters_by_tag_status_name_and_creation_time(app: TestApp) {
    let team = app.signup().await;
    let key = &team.api_key;
    let project = app.create_project(key, "table").await;
    let mut runs = Vec::new();
    for (name, tags, status) in [
        ("ResNet-50 baseline", json!(["vision", "baseline"]), None),
        ("resnet-101", json!(["vision"]), Some("succeeded")),
        ("bert", json!(["nlp"]), Some("queued")),
        ("bert-large", json!(["nlp", "baseline"]), Some("failed")),
    ] {
        let create_status = if status == Some("queued") {
            "queued"
        } else {
            "running"
        };
        let run = app
            .create_run(
                key,
                "table",
                json!({"name": name, "tags": tags, "status": create_status}),
            )
            .await;
        if let Some(end) = status.filter(|s| *s != "queued") {
            let (got, body) = patch(&app, key, &id(&run), json!({"status": end})).await;
            assert_eq!(got, StatusCode::OK, "{body}");
        }
        runs.push(run);
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    // Another project's runs stay out of this table.
    app.create_project(key, "elsewhere").await;
    app.create_run(
        key,
        "elsewhere",
        json!({"name": "bert-elsewhere", "tags": ["nlp"]}),
    )
    .await;

    let [r1, r2, r3, r4] = [0, 1, 2, 3].map(|i| id(&runs[i]));
    let all = list(&app, key, "table", "").await;
    assert_eq!(all["total"], 4);
    assert!(all["next_cursor"].is_null());
    assert_eq!(
        ids(&all),
        [r4.as_str(), r3.as_str(), r2.as_str(), r1.as_str()],
        "newest first by default"
    );
    assert_eq!(all["runs"][1]["status"], "queued");
    assert_eq!(all["runs"][3]["name"], "ResNet-50 baseline");
    assert_eq!(
        ids(&list(&app, key, &project, "").await),
        ids(&all),
        "by id too"
    );

    let mid = |a: &Value, b: &Value| {
        let (a, b) = (timestamp(&a["created_at"]), timestamp(&b["created_at"]));
        let middle: OffsetDateTime = a + (b - a) / 2;
        middle.format(&Rfc3339).expect("formats")
    };
    let middle = mid(&runs[1], &runs[2]);
    let early = mid(&runs[0], &runs[1]);
    for (query, expected) in [
        ("tag=baseline".to_owned(), vec![&r4, &r1]),
        ("tag=vision&status=running".into(), vec![&r1]),
        ("status=succeeded,failed".into(), vec![&r4, &r2]),
        ("status=queued".into(), vec![&r3]),
        ("status=lost".into(), vec![]),
        ("name=RESNET".into(), vec![&r2, &r1]),
        ("name=bert&tag=baseline".into(), vec![&r4]),
        ("name=-".into(), vec![&r4, &r2, &r1]),
        ("tag=nothing".into(), vec![]),
        (format!("created_after={middle}"), vec![&r4, &r3]),
        (format!("created_before={middle}"), vec![&r2, &r1]),
        (
            format!("created_after={early}&created_before={middle}"),
            vec![&r2],
        ),
        (
            format!("created_after={middle}&tag=nlp&status=failed"),
            vec![&r4],
        ),
    ] {
        let table = list(&app, key, "table", &query).await;
        assert_eq!(ids(&table).iter().collect::<Vec<_>>(), expected, "{query}");
        assert_eq!(table["total"], expected.len(), "{query}");
    }
}

async fn sorting_by_name_and_creation_time_goes_both_ways(app: TestApp) {
    let team = app.signup().await;
    let key = &team.api_key;
    app.create_project(key, "names").await;
    let mut created = Vec::new();
    for name in ["charlie", "alpha", "bravo", "delta"] {
        created.push(id(&app
            .create_run(key, "names", json!({"name": name}))
            .await));
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let names = |table: &Value| -> Vec<String> {
        table["runs"]
            .as_array()
            .expect("runs")
            .iter()
            .map(|run| text(run, "name"))
            .collect()
    };
    let mut by_name = ["alpha", "bravo", "charlie", "delta"]
        .map(String::from)
        .to_vec();
    assert_eq!(names(&list(&app, key, "names", "sort=name").await), by_name);
    assert_eq!(
        names(&list(&app, key, "names", "sort=name:asc").await),
        by_name
    );
    by_name.reverse();
    assert_eq!(
        names(&list(&app, key, "names", "sort=name:desc").await),
        by_name
    );
    assert_eq!(
        ids(&list(&app, key, "names", "sort=created:asc").await),
        created
    );
    let mut newest_first = created.clone();
    newest_first.reverse();
    assert_eq!(
        ids(&list(&app, key, "names", "sort=created:desc").await),
        newest_first
    );
    assert_eq!(
        ids(&list(&app, key, "names", "sort=created").await),
        newest_first
    );
}

async fn sorting_by_a_param_puts_runs_without_it_last_in_both_directions(app: TestApp) {
    let team = app.signup().await;
    let key = &team.api_key;
    app.create_project(key, "params").await;
    for (name, params) in [
        (
            "lr-0.1",
            json!({"lr": 0.1, "optimizer": "sgd", "mixed": "b"}),
        ),
        ("lr-1", json!({"lr": 1, "optimizer": "adam", "mixed": true})),
        (
            "no-lr-a",
            json!({"optimizer": {"name": "nested"}, "mixed": 3}),
        ),
        ("lr-0.01", json!({"lr": 0.01, "mixed": 1.5})),
        (
            "lr-0.5",
            json!({"lr": 0.5, "optimizer": "adamw", "mixed": false}),
        ),
        ("no-lr-b", json!({})),
        ("lr-20", json!({"lr": 20})),
    ] {
        app.create_run(key, "params", json!({"name": name, "params": params}))
            .await;
    }
    let names = |table: &Value| -> Vec<String> {
        table["runs"]
            .as_array()
            .expect("runs")
            .iter()
            .map(|run| text(run, "name"))
            .collect()
    };
    let missing_last = |table: &Value, present: &[&str], missing: &[&str]| {
        let got = names(table);
        assert_eq!(got.len(), present.len() + missing.len(), "{got:?}");
        assert_eq!(&got[..present.len()], present, "{got:?}");
        let tail: BTreeSet<&str> = got[present.len()..].iter().map(String::as_str).collect();
        assert_eq!(tail, missing.iter().copied().collect(), "{got:?}");
    };
    let ascending = ["lr-0.01", "lr-0.1", "lr-0.5", "lr-1", "lr-20"];
    let mut descending = ascending;
    descending.reverse();
    let missing = ["no-lr-a", "no-lr-b"];
    missing_last(
        &list(&app, key, "params", "sort=param:lr:asc").await,
        &ascending,
        &missing,
    );
    missing_last(
        &list(&app, key, "params", "sort=param:lr:desc").await,
        &descending,
        &missing,
    );
    // Strings sort too; a nested parameter is its flattened name.
    missing_last(
        &list(&app, key, "params", "sort=param:optimizer:asc").await,
        &["lr-1", "lr-0.5", "lr-0.1"],
        &["no-lr-a", "no-lr-b", "lr-0.01", "lr-20"],
    );
    missing_last(
        &list(&app, key, "params", "sort=param:optimizer/name:desc").await,
        &["no-lr-a"],
        &["lr-0.1", "lr-1", "lr-0.01", "lr-0.5", "no-lr-b", "lr-20"],
    );
    // Numbers (integers and floats together), then booleans, then strings.
    missing_last(
        &list(&app, key, "params", "sort=param:mixed:asc").await,
        &["lr-0.01", "no-lr-a", "lr-0.5", "lr-1", "lr-0.1"],
        &["no-lr-b", "lr-20"],
    );
    // A filter and a sort together.
    let table = list(&app, key, "params", "sort=param:lr:asc&name=lr-0").await;
    assert_eq!(names(&table), ["lr-0.01", "lr-0.1", "lr-0.5"]);
}

async fn sorting_by_a_metric_uses_last_min_or_max_and_puts_missing_values_last(app: TestApp) {
    let team = app.signup().await;
    let key = &team.api_key;
    app.create_project(key, "metrics").await;
    let mut runs = std::collections::BTreeMap::new();
    for (name, loss) in [
        ("a", Some(vec![json!(3.0), json!(1.0), json!(2.0)])),
        ("b", Some(vec![json!(0.5), json!(4.0)])),
        ("c", None),
        ("d", Some(vec![json!("NaN")])),
        ("e", Some(vec![json!(5.0), json!(0.1)])),
        ("f", Some(vec![json!(-1.0), json!("Infinity")])),
    ] {
        let run = id(&app.create_run(key, "metrics", json!({"name": name})).await);
        if let Some(values) = loss {
            log_values(&app, key, &run, "train/loss", &values).await;
        }
        // Every run has some other metric, which must not matter.
        log_values(&app, key, &run, "other", &[json!(1.0)]).await;
        runs.insert(name, run);
    }
    let names = |query: &str| {
        let app = &app;
        let query = query.to_owned();
        async move {
            let table = list(app, key, "metrics", &query).await;
            table["runs"]
                .as_array()
                .expect("runs")
                .iter()
                .map(|run| text(run, "name"))
                .collect::<Vec<_>>()
        }
    };
    let check = |got: Vec<String>, present: &[&str], missing: &[&str], query: &str| {
        assert_eq!(got.len(), present.len() + missing.len(), "{query}: {got:?}");
        assert_eq!(&got[..present.len()], present, "{query}: {got:?}");
        let tail: BTreeSet<&str> = got[present.len()..].iter().map(String::as_str).collect();
        assert_eq!(tail, missing.iter().copied().collect(), "{query}: {got:?}");
    };
    // last: a 2, b 4, e 0.1, f +inf; d's last is NaN and sorts as missing; c has none.
    for (query, present, missing) in [
        (
            "sort=metric:train/loss:asc",
            vec!["e", "a", "b", "f"],
            vec!["c", "d"],
        ),
        (
            "sort=metric:train/loss:last:asc",
            vec!["e", "a", "b", "f"],
            vec!["c", "d"],
        ),
        (
            "sort=metric:train/loss:desc",
            vec!["f", "b", "a", "e"],
            vec!["c", "d"],
        ),
        (
            "sort=metric:train/loss:min:asc",
            vec!["f", "e", "b", "a"],
            vec!["c", "d"],
        ),
        (
            "sort=metric:train/loss:min:desc",
            vec!["a", "b", "e", "f"],
            vec!["c", "d"],
        ),
        (
            "sort=metric:train/loss:max:desc",
            vec!["f", "e", "b", "a"],
            vec!["c", "d"],
        ),
        (
            "sort=metric:train/loss:max:asc",
            vec!["a", "b", "e", "f"],
            vec!["c", "d"],
        ),
        (
            "sort=metric:never-logged:desc",
            vec![],
            vec!["a", "b", "c", "d", "e", "f"],
        ),
    ] {
        check(names(query).await, &present, &missing, query);
    }
    // Missing values stay last when paging, too.
    let first = list(&app, key, "metrics", "sort=metric:train/loss:asc&limit=5").await;
    let cursor = text(&first, "next_cursor");
    let rest = list(
        &app,
        key,
        "metrics",
        &format!("sort=metric:train/loss:asc&limit=5&cursor={cursor}"),
    )
    .await;
    assert_eq!(ids(&rest).len(), 1);
    assert!(
        ["c", "d"].iter().any(|n| runs[n] == ids(&rest)[0]),
        "{rest}"
    );
    assert!(rest["next_cursor"].is_null());
    // Cursors carry infinite values and missing ones alike.
    for sort in [
        "sort=metric:train/loss:desc",
        "sort=metric:train/loss:max:asc",
    ] {
        let whole = ids(&list(&app, key, "metrics", sort).await);
        assert_eq!(
            page_through(&app, key, "metrics", sort, 1).await,
            whole,
            "{sort}"
        );
    }
}

async fn runs_created_at_once_get_distinct_numbers(app: TestApp) {
    let team = app.signup().await;
    let key = &team.api_key;
    app.create_project(key, "rush").await;
    let created = futures::future::join_all(
        (0..12).map(|_| app.post("/v1/projects/rush/runs", key, json!({}))),
    )
    .await;
    let mut numbers = Vec::new();
    for (status, run) in created {
        assert_eq!(status, StatusCode::CREATED, "{run}");
        assert_eq!(run["name"], format!("rush-{}", run["number"]));
        numbers.push(run["number"].as_u64().expect("a number"));
    }
    numbers.sort_unstable();
    assert_eq!(numbers, (1..=12).collect::<Vec<_>>());
    assert_eq!(list(&app, key, "rush", "").await["total"], 12);
}

/// Pages through the table with `limit`, returning the ids in order.
async fn page_through(
    app: &TestApp,
    key: &str,
    project: &str,
    query: &str,
    limit: usize,
) -> Vec<String> {
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..100 {
        let mut full = format!("{query}&limit={limit}");
        if let Some(cursor) = &cursor {
            full.push_str(&format!("&cursor={cursor}"));
        }
        let page = list(app, key, project, &full).await;
        let page_ids = ids(&page);
        assert!(page_ids.len() <= limit, "{full}: {page}");
        seen.extend(page_ids);
        match page["next_cursor"].as_str() {
            Some(next) => {
                assert!(!next.is_empty());
                cursor = Some(next.to_owned());
            }
            None => return seen,
        }
    }
    panic!("{query}: paging did not end");
}

async fn cursor_paging_neither_repeats_nor_skips_a_run_in_any_sort_order(app: TestApp) {
    let team = app.signup().await;
    let key = &team.api_key;
    app.create_project(key, "pages").await;
    let mut all = BTreeSet::new();
    const RUNS: usize = 17;
    for i in 0..RUNS {
        let mut params = json!({"seed": i});
        if i % 5 != 0 {
            params["group"] = json!(i % 4);
        }
        let run = id(&app
            .create_run(
                key,
                "pages",
                json!({"name": format!("run-{}", i % 7), "params": params,
                   "tags": if i % 2 == 0 { json!(["even"]) } else { json!([]) }}),
            )
            .await);
        if i % 3 != 0 {
            // Ties on purpose: several runs share each value.
            log_values(&app, key, &run, "acc", &[json!((i % 4) as f64 / 4.0)]).await;
        }
        all.insert(run);
    }
    for (sort, limits) in [
        ("created", &[1, 5][..]),
        ("created:asc", &[5]),
        ("name", &[4]),
        ("name:desc", &[5]),
        ("param:group:asc", &[3, 7]),
        ("param:group:desc", &[5]),
        ("param:seed:desc", &[5]),
        ("metric:acc:asc", &[3, 7]),
        ("metric:acc:max:desc", &[5]),
    ] {
        let query = format!("sort={sort}");
        let whole = ids(&list(&app, key, "pages", &format!("{query}&limit=500")).await);
        assert_eq!(whole.len(), RUNS, "{sort}");
        for &limit in limits {
            let paged = page_through(&app, key, "pages", &query, limit).await;
            assert_eq!(paged, whole, "{sort} in pages of {limit}");
        }
        let unique: BTreeSet<String> = whole.iter().cloned().collect();
        assert_eq!(unique, all, "{sort}");
    }
    // With a filter, the pages cover exactly the filtered runs and say how many.
    let even = page_through(&app, key, "pages", "sort=param:group:asc&tag=even", 3).await;
    assert_eq!(even.len(), RUNS.div_ceil(2));
    let page = list(&app, key, "pages", "tag=even&limit=3").await;
    assert_eq!(page["total"], RUNS.div_ceil(2));
    assert_eq!(ids(&page).len(), 3);

    // Runs created while paging do not disturb the runs that did not change.
    let first = list(&app, key, "pages", "sort=created:desc&limit=10").await;
    let mut seen = ids(&first);
    for _ in 0..3 {
        app.create_run(key, "pages", json!({})).await;
    }
    let mut cursor = text(&first, "next_cursor");
    loop {
        let page = list(
            &app,
            key,
            "pages",
            &format!("sort=created:desc&limit=10&cursor={cursor}"),
        )
        .await;
        seen.extend(ids(&page));
        match page["next_cursor"].as_str() {
            Some(next) => cursor = next.to_owned(),
            None => break,
        }
    }
    assert_eq!(seen.len(), RUNS, "{seen:?}");
    assert_eq!(seen.into_iter().collect::<BTreeSet<_>>(), all);

    // A cursor belongs to its sort order.
    let named = list(&app, key, "pages", "sort=name&limit=2").await;
    let cursor = text(&named, "next_cursor");
    for query in [
        format!("sort=created&cursor={cursor}"),
        format!("cursor={cursor}"),
        "cursor=not-a-cursor".to_owned(),
        "sort=name&cursor=eyJub3QiOiJhIGN1cnNvciJ9".to_owned(),
    ] {
        let (status, body) = app
            .get(&format!("/v1/projects/pages/runs?{query}"), key)
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {body}");
        assert_eq!(error_code(&body), "invalid_cursor", "{query}");
    }
}

async fn bad_table_queries_get_clear_codes(app: TestApp) {
    let team = app.signup().await;
    let key = &team.api_key;
    app.create_project(key, "queries").await;
    app.create_run(key, "queries", json!({})).await;
    for (query, status, code) in [
        ("sort=bogus", 400, "invalid_sort"),
        ("sort=metric:", 400, "invalid_sort"),
        ("sort=param:", 400, "invalid_sort"),
        ("sort=created:sideways", 400, "invalid_sort"),
        ("sort=", 400, "invalid_sort"),
        ("limit=0", 400, "invalid_limit"),
        ("limit=501", 400, "invalid_limit"),
        ("status=bogus", 400, "invalid_status"),
        ("status=running,", 400, "invalid_status"),
        ("created_after=yesterday", 400, "invalid_query"),
        ("colour=blue", 400, "invalid_query"),
        ("cursor=%%%", 400, "invalid_cursor"),
    ] {
        let (got, body) = app
            .get(&format!("/v1/projects/queries/runs?{query}"), key)
            .await;
        assert_eq!(got.as_u16(), status, "{query}: {body}");
        assert_eq!(error_code(&body), code, "{query}");
    }
    // Any malformed limit is a 400.
    for query in ["limit=-1", "limit=many"] {
        let (got, body) = app
            .get(&format!("/v1/projects/queries/runs?{query}"), key)
            .await;
        assert_eq!(got, StatusCode::BAD_REQUEST, "{query}: {body}");
        error_code(&body);
    }
    for query in ["limit=1", "limit=500", "status=lost", "sort=metric:x:min"] {
        let (got, body) = app
            .get(&format!("/v1/projects/queries/runs?{query}"), key)
            .await;
        assert_eq!(got, StatusCode::OK, "{query}: {body}");
    }
    let (got, body) = app.get("/v1/projects/missing/runs", key).await;
    assert_eq!(
        (got, error_code(&body)),
        (StatusCode::NOT_FOUND, "not_found".into())
    );
}

async fn comparing_runs_lines_up_params_and_series_and_marks_differences(app: TestApp) {
    let team = app.signup().await;
    let key = &team.api_key;
    app.create_project(key, "compare").await;
    app.create_project(key, "compare-too").await;
    let a = app
        .create_run(
            key,
            "compare",
            json!({"name": "a", "tags": ["x"],
               "params": {"lr": 0.1, "batch": 32, "optimizer": {"name": "adam"}, "flag": true}}),
        )
        .await;
    let b = app
        .create_run(
            key,
            "compare",
            json!({"name": "b", "params": {"lr": 0.01, "batch": 32, "flag": true}}),
        )
        .await;
    let c = app
        .create_run(
            key,
            "compare-too",
            json!({"name": "c", "params": {"lr": 0.1, "batch": 32, "optimizer": {"name": "adam"},
                                       "extra": "yes", "flag": true}}),
        )
        .await;
    let [a_id, b_id, c_id] = [&a, &b, &c].map(id);
    log_values(&app, key, &a_id, "loss", &[json!(1.0), json!(0.25)]).await;
    log_values(&app, key, &a_id, "acc", &[json!(0.5)]).await;
    log_values(
        &app,
        key,
        &b_id,
        "loss",
        &[json!(2.0), json!("NaN"), json!(0.75)],
    )
    .await;
    patch(&app, key, &b_id, json!({"status": "succeeded"})).await;

    let (status, compared) = app
        .get(&format!("/v1/compare?runs={a_id},{b_id},{c_id}"), key)
        .await;
    assert_eq!(status, StatusCode::OK, "{compared}");
    let listed: Vec<_> = compared["runs"]
        .as_array()
        .expect("runs")
        .iter()
        .map(|r| text(r, "id"))
        .collect();
    assert_eq!(listed, [a_id.as_str(), b_id.as_str(), c_id.as_str()]);
    assert_eq!(
        compared["runs"][0],
        json!({"id": a_id, "name": "a", "project_id": a["project_id"], "status": "running",
               "tags": ["x"]})
    );
    assert_eq!(compared["runs"][1]["status"], "succeeded");
    assert_eq!(compared["runs"][2]["project_id"], c["project_id"]);
    let params = &compared["params"];
    assert_eq!(
        params["lr"],
        json!({"values": [0.1, 0.01, 0.1], "differs": true})
    );
    assert_eq!(
        params["batch"],
        json!({"values": [32, 32, 32], "differs": false})
    );
    assert_eq!(
        params["flag"],
        json!({"values": [true, true, true], "differs": false})
    );
    assert_eq!(
        params["optimizer/name"],
        json!({"values": ["adam", null, "adam"], "differs": true})
    );
    assert_eq!(
        params["extra"],
        json!({"values": [null, null, "yes"], "differs": true})
    );
    assert_eq!(params.as_object().expect("params").len(), 5, "{params}");

    let series = &compared["series"];
    assert_eq!(series.as_object().expect("series").len(), 2, "{series}");
    let loss = series["loss"].as_array().expect("one entry per run");
    assert_eq!(loss.len(), 3);
    assert_eq!(loss[0]["count"], 2);
    assert_eq!(loss[0]["last"], 0.25);
    assert_eq!(
        (loss[0]["min"].clone(), loss[0]["max"].clone()),
        (json!(0.25), json!(1.0))
    );
    assert_eq!(loss[1]["count"], 3);
    assert_eq!(loss[1]["last"], 0.75);
    assert_eq!(loss[1]["kind"], "numeric");
    assert!(loss[2].is_null());
    assert_eq!(series["acc"][0]["last"], 0.5);
    assert!(series["acc"][1].is_null() && series["acc"][2].is_null());
    // The summaries are the ones the series endpoint gives.
    let (_, a_series) = app.get(&format!("/v1/runs/{a_id}/series"), key).await;
    assert_eq!(loss[0], a_series["series"]["loss"]);

    // The same run twice is compared once; one run compares with itself.
    let (_, twice) = app
        .get(&format!("/v1/compare?runs={a_id},{a_id},{b_id}"), key)
        .await;
    assert_eq!(twice["runs"].as_array().expect("runs").len(), 2, "{twice}");
    let (_, alone) = app.get(&format!("/v1/compare?runs={a_id}"), key).await;
    assert_eq!(
        alone["params"]["lr"],
        json!({"values": [0.1], "differs": false})
    );

    let many = (0..51)
        .map(|_| ghost_run_id())
        .collect::<Vec<_>>()
        .join(",");
    let ghost = ghost_run_id();
    for (query, status, code) in [
        ("runs=".to_owned(), 400, "invalid_runs"),
        ("runs=,,".to_owned(), 400, "invalid_runs"),
        (format!("runs={many}"), 400, "invalid_runs"),
        ("".to_owned(), 400, "invalid_query"),
        (format!("runs={a_id},{ghost}"), 404, "not_found"),
        (format!("runs={a_id},nonsense"), 404, "not_found"),
    ] {
        let (got, body) = app.get(&format!("/v1/compare?{query}"), key).await;
        assert_eq!(got.as_u16(), status, "{query}: {body}");
        assert_eq!(error_code(&body), code, "{query}");
    }
}

async fn deleting_a_run_removes_it_and_its_series(app: TestApp) {
    let team = app.signup().await;
    let key = &team.api_key;
    app.create_project(key, "deleting").await;
    let doomed = id(&app
        .create_run(key, "deleting", json!({"name": "doomed"}))
        .await);
    let kept = id(&app
        .create_run(key, "deleting", json!({"name": "kept"}))
        .await);
    for run in [&doomed, &kept] {
        let values: Vec<Value> = (0..25_000).map(|i| json!(f64::from(i) * 0.5)).collect();
        log_values(&app, key, run, "train/loss", &values).await;
        let (status, body) = app
            .log(
                key,
                run,
                json!({"batch_id": "notes", "text": {"notes": [{"step": 0, "text": "hello"}]}}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }

    let (status, body) = app.delete(&format!("/v1/runs/{doomed}"), key).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    assert!(body.is_null());

    let routes = [
        (Method::GET, format!("/v1/runs/{doomed}"), None),
        (Method::GET, format!("/v1/runs/{doomed}/series"), None),
        (
            Method::GET,
            format!("/v1/runs/{doomed}/series/train/loss"),
            None,
        ),
        (
            Method::GET,
            format!("/v1/runs/{doomed}/series/train/loss?max_points=10"),
            None,
        ),
        (Method::GET, format!("/v1/runs/{doomed}/series/notes"), None),
        (
            Method::PATCH,
            format!("/v1/runs/{doomed}"),
            Some(json!({"name": "back"})),
        ),
        (
            Method::POST,
            format!("/v1/runs/{doomed}/abort"),
            Some(json!({})),
        ),
        (
            Method::POST,
            format!("/v1/runs/{doomed}/log"),
            Some(json!({"heartbeat": true})),
        ),
        (
            Method::POST,
            format!("/v1/runs/{doomed}/log"),
            Some(json!({"batch_id": "z", "series": {"x": {"steps": [1], "values": [1]}}})),
        ),
        (Method::GET, format!("/v1/compare?runs={doomed}"), None),
        (Method::DELETE, format!("/v1/runs/{doomed}"), None),
    ];
    for (method, path, body) in routes {
        let (status, response) = app.call(method.clone(), &path, Some(key), body).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{method} {path}: {response}");
        assert_eq!(error_code(&response), "not_found");
    }
    let table = list(&app, key, "deleting", "").await;
    assert_eq!(ids(&table), [kept.as_str()]);
    assert_eq!(table["total"], 1);

    // The other run keeps every point.
    let (status, series) = app
        .get(&format!("/v1/runs/{kept}/series/train/loss"), key)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(series["steps"].as_array().expect("steps").len(), 25_000);
    let (_, notes) = app.get(&format!("/v1/runs/{kept}/series/notes"), key).await;
    assert_eq!(notes["texts"], json!(["hello"]));
}

async fn deleting_a_project_deletes_its_runs_and_their_series(app: TestApp) {
    let team = app.signup().await;
    let key = &team.api_key;
    app.create_project(key, "doomed").await;
    app.create_project(key, "survivor").await;
    let mut runs = Vec::new();
    for _ in 0..3 {
        let run = id(&app.create_run(key, "doomed", json!({})).await);
        log_values(&app, key, &run, "loss", &[json!(1.0), json!(2.0)]).await;
        runs.push(run);
    }
    let survivor = id(&app.create_run(key, "survivor", json!({})).await);
    log_values(&app, key, &survivor, "loss", &[json!(3.0)]).await;

    let (status, body) = app.delete("/v1/projects/doomed", key).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    for run in &runs {
        for path in [
            format!("/v1/runs/{run}"),
            format!("/v1/runs/{run}/series"),
            format!("/v1/runs/{run}/series/loss"),
        ] {
            let (status, body) = app.get(&path, key).await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{path}: {body}");
        }
    }
    let (status, _) = app.get("/v1/projects/doomed/runs", key).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = app.get("/v1/projects/doomed", key).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = app.delete("/v1/projects/doomed", key).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // The other project is untouched; the name is free again, with a fresh table.
    assert_eq!(
        get_run(&app, key, &survivor).await["series"]["loss"]["count"],
        1
    );
    app.create_project(key, "doomed").await;
    assert_eq!(list(&app, key, "doomed", "").await["total"], 0);
    let fresh = app.create_run(key, "doomed", json!({})).await;
    assert_eq!(fresh["number"], 1);
    assert_eq!(fresh["name"], "doomed-1");
}

async fn every_run_endpoint_answers_another_team_404_exactly_as_a_missing_run(app: TestApp) {
    let a = app.signup().await;
    let b = app.signup().await;
    let a_project = app.create_project(&a.api_key, "secret").await;
    let a_run = id(&app
        .create_run(&a.api_key, "secret", json!({"name": "a's run"}))
        .await);
    log_values(
        &app,
        &a.api_key,
        &a_run,
        "train/loss",
        &[json!(1.0), json!(2.0)],
    )
    .await;
    let (status, body) = app
        .log(
            &a.api_key,
            &a_run,
            json!({"batch_id": "t", "text": {"notes": [{"step": 1, "text": "private"}]}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let a_before = get_run(&app, &a.api_key, &a_run).await;

    app.create_project(&b.api_key, "mine").await;
    let b_run = id(&app.create_run(&b.api_key, "mine", json!({})).await);
    let ghost_run = ghost_run_id();
    let ghost_project = format!("prj_{}", ulid::Ulid::generate().to_string().to_lowercase());

    let routes = |run: &str,
                  project_id: &str,
                  project_name: &str|
     -> Vec<(Method, String, Option<Value>)> {
        vec![
            (
                Method::POST,
                format!("/v1/projects/{project_id}/runs"),
                Some(json!({"name": "x"})),
            ),
            (
                Method::POST,
                format!("/v1/projects/{project_name}/runs"),
                Some(json!({})),
            ),
            (Method::GET, format!("/v1/projects/{project_id}/runs"), None),
            (
                Method::GET,
                format!("/v1/projects/{project_name}/runs?sort=name"),
                None,
            ),
            (Method::GET, format!("/v1/runs/{run}"), None),
            (
                Method::PATCH,
                format!("/v1/runs/{run}"),
                Some(json!({"name": "pwned"})),
            ),
            (
                Method::PATCH,
                format!("/v1/runs/{run}"),
                Some(json!({"status": "failed"})),
            ),
            (
                Method::POST,
                format!("/v1/runs/{run}/abort"),
                Some(json!({})),
            ),
            (
                Method::POST,
                format!("/v1/runs/{run}/log"),
                Some(json!({"heartbeat": true})),
            ),
            (
                Method::POST,
                format!("/v1/runs/{run}/log"),
                Some(
                    json!({"batch_id": "evil", "series": {"train/loss": {"steps": [9], "values": [9.0]}},
                            "text": {"notes": [{"step": 9, "text": "b was here"}]}}),
                ),
            ),
            (Method::GET, format!("/v1/runs/{run}/series"), None),
            (
                Method::GET,
                format!("/v1/runs/{run}/series/train/loss"),
                None,
            ),
            (
                Method::GET,
                format!("/v1/runs/{run}/series/train/loss?max_points=10"),
                None,
            ),
            (
                Method::GET,
                format!("/v1/runs/{run}/series/train/loss?from=0&to=1"),
                None,
            ),
            (Method::GET, format!("/v1/runs/{run}/series/notes"), None),
            (Method::GET, format!("/v1/runs/{run}/series/nothing"), None),
            (Method::GET, format!("/v1/compare?runs={run}"), None),
            (Method::GET, format!("/v1/compare?runs={b_run},{run}"), None),
            (Method::DELETE, format!("/v1/runs/{run}"), None),
            (Method::DELETE, format!("/v1/projects/{project_id}"), None),
            (Method::DELETE, format!("/v1/projects/{project_name}"), None),
        ]
    };
    let foreign = routes(&a_run, &a_project, "secret");
    let missing = routes(&ghost_run, &ghost_project, "ghost");
    for ((method, path, body), (_, ghost_path, ghost_body)) in foreign.into_iter().zip(missing) {
        let (status, response) = app
            .call(method.clone(), &path, Some(&b.api_key), body)
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{method} {path}: {response}");
        assert_eq!(error_code(&response), "not_found", "{method} {path}");
        let (ghost_status, ghost_response) = app
            .call(method.clone(), &ghost_path, Some(&b.api_key), ghost_body)
            .await;
        assert_eq!(
            (status, &response),
            (ghost_status, &ghost_response),
            "{method} {path} differs from {ghost_path}"
        );
    }
    // The exchanged token is no key to A's runs either.
    let (_, token) = app.post("/v1/auth/token", &b.api_key, json!({})).await;
    let (status, _) = app
        .log(&text(&token, "token"), &a_run, json!({"heartbeat": true}))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // A's run, series and project are as they were.
    let a_after = get_run(&app, &a.api_key, &a_run).await;
    assert_eq!(
        without_elapsed_storage(a_after),
        without_elapsed_storage(a_before)
    );
    let (_, notes) = app
        .get(&format!("/v1/runs/{a_run}/series/notes"), &a.api_key)
        .await;
    assert_eq!(notes["texts"], json!(["private"]));
    assert_eq!(list(&app, &a.api_key, "secret", "").await["total"], 1);
    // B's own table shows only B's run.
    assert_eq!(ids(&list(&app, &b.api_key, "mine", "").await), [b_run]);
}

async fn a_viewer_reads_runs_and_series_but_cannot_change_anything(app: TestApp) {
    let team: Team = app.signup().await;
    let key = &team.api_key;
    let viewer = app.key_with_role(&team, "viewer").await;
    app.create_project(key, "watched").await;
    let run = id(&app
        .create_run(key, "watched", json!({"params": {"lr": 0.1}}))
        .await);
    log_values(&app, key, &run, "loss", &[json!(1.0)]).await;
    let before = get_run(&app, key, &run).await;

    for path in [
        format!("/v1/runs/{run}"),
        "/v1/projects/watched/runs?sort=metric:loss".to_owned(),
        format!("/v1/runs/{run}/series"),
        format!("/v1/runs/{run}/series/loss"),
        format!("/v1/runs/{run}/series/loss?max_points=2"),
        format!("/v1/compare?runs={run}"),
    ] {
        let (status, body) = app.get(&path, &viewer).await;
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
    }
    for (method, path, body) in [
        (
            Method::POST,
            "/v1/projects/watched/runs".to_owned(),
            Some(json!({})),
        ),
        (
            Method::PATCH,
            format!("/v1/runs/{run}"),
            Some(json!({"name": "mine"})),
        ),
        (
            Method::PATCH,
            format!("/v1/runs/{run}"),
            Some(json!({"status": "failed"})),
        ),
        (
            Method::POST,
            format!("/v1/runs/{run}/abort"),
            Some(json!({})),
        ),
        (
            Method::POST,
            format!("/v1/runs/{run}/log"),
            Some(json!({"heartbeat": true})),
        ),
        (
            Method::POST,
            format!("/v1/runs/{run}/log"),
            Some(json!({"batch_id": "v", "series": {"loss": {"steps": [1], "values": [2.0]}}})),
        ),
        (Method::DELETE, format!("/v1/runs/{run}"), None),
        (Method::DELETE, "/v1/projects/watched".to_owned(), None),
    ] {
        let (status, response) = app.call(method.clone(), &path, Some(&viewer), body).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{method} {path}: {response}");
        assert_eq!(error_code(&response), "forbidden");
    }
    assert_eq!(
        without_elapsed_storage(get_run(&app, key, &run).await),
        without_elapsed_storage(before)
    );
}

/// Each run counts what it logged and stores, the run and the table show it priced,
/// and the table sums the runs its filter keeps on every page ("what did this sweep
/// cost?").
async fn a_run_shows_what_it_cost_and_the_table_sums_the_runs_it_keeps(app: TestApp) {
    let team = app.signup().await;
    let key = &team.api_key;
    app.create_project(key, "costs").await;
    let mut sweep = Vec::new();
    for (n, tags) in [(3, json!(["sweep"])), (5, json!(["sweep"])), (7, json!([]))] {
        let run = id(&app.create_run(key, "costs", json!({"tags": tags})).await);
        let values: Vec<Value> = (0..n).map(|i| json!(f64::from(i))).collect();
        log_values(&app, key, &run, "loss", &values).await;
        sweep.push(run);
    }
    let usage = |run: &Value| run["usage"].clone();
    let mut points = Vec::new();
    let mut stored = Vec::new();
    for (run, n) in sweep.iter().zip([3, 5, 7]) {
        let counted = usage(&get_run(&app, key, run).await);
        assert_eq!(counted["points"], n, "{counted}");
        assert!(counted["bytes"].as_u64().unwrap() > 0, "{counted}");
        // A few points and bytes for a moment cost less than a cent.
        assert_eq!(counted["cost"], "0.00", "{counted}");
        assert_eq!(counted["currency"], "USD", "{counted}");
        points.push(n);
        stored.push(counted["bytes"].as_u64().unwrap());
    }

    let table = list(&app, key, "costs", "tag=sweep&limit=1").await;
    assert_eq!(table["runs"].as_array().unwrap().len(), 1);
    assert_eq!(table["total"], 2);
    let filtered = &table["usage"];
    assert_eq!(filtered["points"], points[0] + points[1], "{table}");
    assert_eq!(filtered["bytes"], stored[0] + stored[1], "{table}");
    let shown = &table["runs"][0];
    let n = if id(shown) == sweep[0] { 0 } else { 1 };
    assert_eq!(shown["usage"]["points"], points[n], "{shown}");
    let everything = list(&app, key, "costs", "").await;
    assert_eq!(
        everything["usage"]["points"],
        points.iter().sum::<u64>(),
        "{everything}"
    );

    // A deleted run's usage was the team's; the table sums only the runs it shows.
    let (status, _) = app.delete(&format!("/v1/runs/{}", sweep[2]), key).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let after = list(&app, key, "costs", "").await;
    assert_eq!(after["usage"]["points"], points[0] + points[1], "{after}");
}

/// `param` holds conditions separated by `;` (`\;` inside one): numbers compare by
/// value, text and booleans by equality, and a run without the param passes only `!=`.
async fn the_run_table_filters_by_param_conditions_of_every_type(app: TestApp) {
    let team = app.signup().await;
    let key = &team.api_key;
    app.create_project(key, "conditions").await;
    let mut runs = Vec::new();
    for params in [
        json!({"lr": 0.001, "optimizer": "adam", "batch_size": 64, "amp": true, "note": "a;b"}),
        json!({"lr": 0.01, "optimizer": "sgd", "batch_size": 128, "amp": false}),
        json!({"lr": 0.0001, "model": {"depth": 12}}),
        json!({}),
    ] {
        runs.push(id(&app
            .create_run(key, "conditions", json!({"params": params}))
            .await));
    }
    for (conditions, kept) in [
        ("lr<=0.001", vec![0, 2]),
        ("lr<0.001", vec![2]),
        ("lr>0.001", vec![1]),
        ("lr>=1e-3", vec![0, 1]),
        ("lr=0.0010", vec![0]),
        ("lr!=0.001", vec![1, 2, 3]),
        ("optimizer=adam", vec![0]),
        ("optimizer!=adam", vec![1, 2, 3]),
        ("batch_size>=64;amp=true", vec![0]),
        ("amp=false", vec![1]),
        ("amp!=false", vec![0, 2, 3]),
        ("model/depth>10; lr < 0.1", vec![2]),
        ("note=a\\;b", vec![0]),
        ("lr<=0.001;;", vec![0, 2]),
    ] {
        let query = format!(
            "param={}",
            url::form_urlencoded::byte_serialize(conditions.as_bytes()).collect::<String>()
        );
        let table = list(&app, key, "conditions", &query).await;
        let got: BTreeSet<String> = ids(&table).into_iter().collect();
        let expected: BTreeSet<String> = kept.iter().map(|&i| runs[i].clone()).collect();
        assert_eq!(got, expected, "{conditions}");
        assert_eq!(table["total"], kept.len(), "{conditions}");
    }
    for bad in [
        "lr",
        "lr<adam",
        "=1",
        "lr=",
        "note=a\\b",
        "lr<0.1;optimizer",
    ] {
        let query = format!(
            "param={}",
            url::form_urlencoded::byte_serialize(bad.as_bytes()).collect::<String>()
        );
        let (status, body) = app
            .get(&format!("/v1/projects/conditions/runs?{query}"), key)
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
        assert_eq!(error_code(&body), "invalid_filter", "{bad}");
    }
}
