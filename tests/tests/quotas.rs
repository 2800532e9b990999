//! A plan's monthly point cap: log calls past it get 429 `quota_exceeded`, and nothing
//! of a refused call is stored or counted. On both storage backends.

use reqwest::StatusCode;
use serde_json::json;
use sextant_cli::Backend;
use sextant_domain::billing::PricePlan;
use sextant_tests::{
    PNG, TestApp, aws_cases, cases, error_code, fresh_aws_storage, loss_batch, text,
};

const CAP: u64 = 100;

fn capped_plan() -> PricePlan {
    PricePlan {
        monthly_points_cap: Some(CAP),
        ..PricePlan::default()
    }
}

async fn capped() -> TestApp {
    TestApp::spawn_adjusted(Backend::Embedded, |config| config.plan = capped_plan()).await
}

async fn capped_on_aws() -> TestApp {
    let (storage, _, _) = fresh_aws_storage().await;
    TestApp::spawn_adjusted(Backend::Aws(storage), |config| config.plan = capped_plan()).await
}

async fn points_past_the_cap_are_refused_and_nothing_of_them_is_stored(app: TestApp) {
    let team = app.signup().await;
    let key = &team.api_key;
    let run = app.new_run(key).await;
    let log = format!("/v1/runs/{run}/log");

    let (status, body) = app.post(&log, key, loss_batch("first", 0, 60)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = app.post(&log, key, loss_batch("too-many", 60, 41)).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_eq!(error_code(&body), "quota_exceeded");
    assert!(
        text(&body["error"], "message").contains("100 points a month"),
        "{body}"
    );
    assert_eq!(app.loss_steps(key, &run).await, (0..60).collect::<Vec<_>>());

    // Up to the cap exactly is fine, and a retry of a stored batch is answered as
    // before rather than refused.
    let (status, body) = app.post(&log, key, loss_batch("to-the-cap", 60, 40)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = app.post(&log, key, loss_batch("first", 0, 60)).await;
    assert_eq!(
        (status, body["accepted"].as_u64()),
        (StatusCode::OK, Some(60))
    );
    let (status, body) = app.post(&log, key, loss_batch("one-more", 100, 1)).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    let (status, body) = app.post_image(key, &run, "series=s&step=1", PNG).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_eq!(error_code(&body), "quota_exceeded");

    assert_eq!(
        app.loss_steps(key, &run).await,
        (0..100).collect::<Vec<_>>()
    );
    let (_, images) = app.get(&format!("/v1/runs/{run}/images"), key).await;
    assert_eq!(images["series"], json!({}), "{images}");
    let (_, listed) = app.get(&format!("/v1/runs/{run}/series"), key).await;
    assert_eq!(listed["series"]["loss"]["count"], 100, "{listed}");

    // Another team's month is its own.
    let other = app.signup().await;
    let other_run = app.new_run(&other.api_key).await;
    let (status, body) = app
        .post(
            &format!("/v1/runs/{other_run}/log"),
            &other.api_key,
            loss_batch("theirs", 0, 100),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

cases!(embedded, super::capped; points_past_the_cap_are_refused_and_nothing_of_them_is_stored);
aws_cases!(dynamodb, super::capped_on_aws; points_past_the_cap_are_refused_and_nothing_of_them_is_stored);

/// Every batch passes the early check while the month is under the cap; the commit's
/// condition is what keeps the total at the cap. (Embedded only: moto rolls a refused
/// transaction back by restoring a snapshot of the whole table, losing concurrent
/// writes.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_batches_racing_for_the_last_points_never_pass_the_cap() {
    let app = capped().await;
    let team = app.signup().await;
    let run = app.new_run(&team.api_key).await;
    let log = format!("/v1/runs/{run}/log");
    let (status, _) = app
        .post(&log, &team.api_key, loss_batch("base", 0, 40))
        .await;
    assert_eq!(status, StatusCode::OK);
    let attempts = (0..8).map(|i| {
        app.post(
            &log,
            &team.api_key,
            loss_batch(&format!("racer-{i}"), 100 * (i + 1), 20),
        )
    });
    let answers = futures::future::join_all(attempts).await;
    let stored = answers
        .iter()
        .filter(|(status, _)| *status == StatusCode::OK)
        .count();
    assert!(
        answers.iter().all(|(status, body)| *status == StatusCode::OK
            || error_code(body) == "quota_exceeded"),
        "{answers:?}"
    );
    assert_eq!(stored, 3, "{answers:?}");
    assert_eq!(app.loss_steps(&team.api_key, &run).await.len(), 100);
}
