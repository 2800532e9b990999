//! Monthly budgets on both stores, on a clock the test moves: the hourly runs mail each
//! verified admin once per threshold and month; the hard stop refuses log calls past
//! the budget (429 `budget_exceeded`) and stores nothing of them until the budget is
//! raised or lifted; only admins set a budget, and a malformed one is refused.

use std::sync::Arc;

use reqwest::{Method, StatusCode};
use rust_decimal::Decimal;
use serde_json::{Value, json};
use sextant_domain::billing::PricePlan;
use sextant_domain::usage;
use sextant_edge::state::AppState;
use sextant_metering::MeteringHour;
use sextant_storage::clock::ManualClock;
use sextant_storage_local::OutboxMessage;
use sextant_tests::{PNG, Team, TestApp, aws_cases, cases, error_code, loss_batch};
use time::{Duration, OffsetDateTime};

/// Late in a month, so the test reaches the next one in a few hours of roll-ups.
const START: OffsetDateTime = time::macros::datetime!(2026-11-29 10:20 UTC);

/// A point costs a tenth of a cent from the first one: a 1.00 USD budget buys 1,000.
fn priced_plan() -> PricePlan {
    PricePlan {
        free_points: 0,
        per_million_points: Decimal::from(1000),
        ..PricePlan::default()
    }
}

/// `state` on a clock at `START` with the priced plan, served; a team whose admin has
/// verified their address, and a run of theirs.
async fn a_team_on_a_manual_clock(
    mut state: AppState,
) -> (TestApp, AppState, Arc<ManualClock>, Team, String) {
    let clock = Arc::new(ManualClock::starting_at(START));
    let mut settings = (*state.settings).clone();
    settings.plan = priced_plan();
    state.settings = Arc::new(settings);
    let (app, state) = TestApp::serving(state.with_clock(clock.clone())).await;
    let team = app.signup().await;
    let token = app.mailed_token(&team.email, "verify");
    let (status, body) = app.verify_email(&token).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let run = app.new_run(&team.api_key).await;
    (app, state, clock, team, run)
}

async fn put_budget(app: &TestApp, credential: &str, body: Value) -> (StatusCode, Value) {
    app.call(Method::PUT, "/v1/budget", Some(credential), Some(body))
        .await
}

/// An hour passes and the metering run for the hour that just ended runs, as the
/// schedule runs it a minute past the hour.
async fn an_hour_passes(state: &AppState, clock: &ManualClock) {
    clock.advance(Duration::HOUR);
    sextant_cli::metering(state)
        .run(MeteringHour::ending_at_or_before(state.now()))
        .await
        .expect("the metering run");
}

fn budget_letters(app: &TestApp) -> Vec<OutboxMessage> {
    app.outbox()
        .into_iter()
        .filter(|message| message.subject.contains("Sextant budget"))
        .collect()
}

async fn budget_letters_go_once_per_threshold_and_month_to_each_verified_admin(
    (state, _keep): (AppState, Box<dyn std::any::Any + Send>),
) {
    let (app, state, clock, team, run) = a_team_on_a_manual_clock(state).await;
    let key = &team.api_key;
    // An admin who has not verified their address, and a member: neither is mailed.
    app.add_member(&team, "admin").await;
    app.add_member(&team, "member").await;
    let (status, budget) = put_budget(
        &app,
        key,
        json!({"monthly_budget": "1", "hard_stop": false}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{budget}");
    assert_eq!(
        budget,
        json!({"month": "2026-11", "currency": "USD", "monthly_budget": "1.00",
               "hard_stop": false, "spent": "0.00", "percent": 0, "notified": [],
               "stopped": false})
    );

    app.log_ok(key, &run, loss_batch("a", 0, 300)).await;
    an_hour_passes(&state, &clock).await;
    assert!(budget_letters(&app).is_empty(), "30 % tells nobody");

    app.log_ok(key, &run, loss_batch("b", 300, 250)).await;
    an_hour_passes(&state, &clock).await;
    let letters = budget_letters(&app);
    assert_eq!(letters.len(), 1, "{letters:#?}");
    let letter = &letters[0];
    assert_eq!(letter.to, team.email);
    assert!(letter.subject.contains("50%") && letter.subject.contains("2026-11"));
    assert!(
        letter.text.contains("0.55 USD") && letter.text.contains("1.00 USD"),
        "{}",
        letter.text
    );
    assert!(
        letter.text.contains(&format!("{}/usage", app.base)),
        "{}",
        letter.text
    );
    // Run again, and an hour later: nothing more.
    sextant_cli::metering(&state)
        .run(MeteringHour::ending_at_or_before(state.now()))
        .await
        .unwrap();
    an_hour_passes(&state, &clock).await;
    assert_eq!(budget_letters(&app).len(), 1);

    app.log_ok(key, &run, loss_batch("c", 550, 300)).await;
    an_hour_passes(&state, &clock).await;
    app.log_ok(key, &run, loss_batch("d", 850, 200)).await;
    an_hour_passes(&state, &clock).await;
    an_hour_passes(&state, &clock).await;
    let subjects: Vec<String> = budget_letters(&app)
        .into_iter()
        .map(|letter| letter.subject)
        .collect();
    assert_eq!(subjects.len(), 3, "{subjects:#?}");
    assert!(subjects[1].contains("80%") && subjects[2].contains("100%"));
    // Without a hard stop, logging goes on past the budget.
    app.log_ok(key, &run, loss_batch("e", 1050, 10)).await;
    let (status, budget) = app.get("/v1/budget", key).await;
    assert_eq!(status, StatusCode::OK, "{budget}");
    assert_eq!(budget["notified"], json!([50, 80, 100]));
    assert_eq!(budget["spent"], "1.06");
    assert_eq!(budget["percent"], 106);
    assert_eq!(budget["stopped"], false);

    // A new month starts over: told again once its spend reaches a threshold.
    clock.set(time::macros::datetime!(2026-12-01 00:30 UTC));
    an_hour_passes(&state, &clock).await;
    assert_eq!(budget_letters(&app).len(), 3);
    let (_, december) = app.get("/v1/budget", key).await;
    assert_eq!(
        (&december["month"], &december["notified"]),
        (&json!("2026-12"), &json!([]))
    );
    app.log_ok(key, &run, loss_batch("f", 2000, 600)).await;
    an_hour_passes(&state, &clock).await;
    an_hour_passes(&state, &clock).await;
    let letters = budget_letters(&app);
    assert_eq!(letters.len(), 4);
    assert!(letters[3].subject.contains("50%") && letters[3].subject.contains("2026-12"));
}

async fn the_hard_stop_refuses_log_calls_past_the_budget_and_raising_or_lifting_it_lets_them_resume(
    (state, _keep): (AppState, Box<dyn std::any::Any + Send>),
) {
    let (app, state, clock, team, run) = a_team_on_a_manual_clock(state).await;
    let key = &team.api_key;
    let log = |id: &str, first: i64, points: i64| {
        let app = &app;
        let run = run.clone();
        let batch = loss_batch(id, first, points);
        async move { app.log(key, &run, batch).await }
    };
    let (status, body) = put_budget(
        &app,
        key,
        json!({"monthly_budget": "1.00", "hard_stop": true}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // The budget buys 1,000 points, and the stop holds at exactly that, before any
    // hourly run.
    assert_eq!(log("a", 0, 600).await.0, StatusCode::OK);
    let (status, body) = log("b", 600, 500).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_eq!(error_code(&body), "budget_exceeded");
    assert_eq!(
        app.loss_steps(key, &run).await,
        (0..600).collect::<Vec<_>>()
    );
    assert_eq!(log("c", 600, 400).await.0, StatusCode::OK);
    let (status, body) = log("d", 1000, 1).await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::TOO_MANY_REQUESTS, "budget_exceeded".to_owned())
    );
    let (status, body) = app.post_image(key, &run, "series=s&step=1", PNG).await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::TOO_MANY_REQUESTS, "budget_exceeded".to_owned())
    );

    // The run tells the admins, once (the thresholds passed together make one
    // letter), and the stop stays.
    an_hour_passes(&state, &clock).await;
    an_hour_passes(&state, &clock).await;
    let letters = budget_letters(&app);
    assert_eq!(letters.len(), 1, "{letters:#?}");
    assert!(letters[0].subject.contains("100%"));
    assert!(letters[0].text.contains("refused"), "{}", letters[0].text);
    let (_, budget) = app.get("/v1/budget", key).await;
    assert_eq!(budget["notified"], json!([50, 80, 100]));
    assert_eq!(
        (&budget["percent"], &budget["stopped"]),
        (&json!(100), &json!(true))
    );
    assert_eq!(log("e", 1000, 1).await.0, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        app.loss_steps(key, &run).await,
        (0..1000).collect::<Vec<_>>()
    );

    // Raised, logging resumes at once; the thresholds the spend is now below are
    // forgotten (reaching them again tells again).
    let (status, budget) = put_budget(
        &app,
        key,
        json!({"monthly_budget": "2.00", "hard_stop": true}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{budget}");
    assert_eq!(
        (&budget["notified"], &budget["stopped"]),
        (&json!([50]), &json!(false))
    );
    assert_eq!(log("f", 1000, 500).await.0, StatusCode::OK);
    // Lifted, nothing stops logging and the month's notices are gone.
    let (status, budget) = put_budget(
        &app,
        key,
        json!({"monthly_budget": null, "hard_stop": false}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{budget}");
    assert_eq!(
        (
            &budget["monthly_budget"],
            &budget["percent"],
            &budget["notified"]
        ),
        (&Value::Null, &Value::Null, &json!([]))
    );
    assert_eq!(log("g", 1500, 1000).await.0, StatusCode::OK);
    an_hour_passes(&state, &clock).await;
    assert_eq!(budget_letters(&app).len(), 1);
    assert_eq!(app.loss_steps(key, &run).await.len(), 2500);
}

/// A log call does not read the team's counters for a team found without a stop in
/// the last minute (`usage::Unstopped`): a stop set by another process (the hourly run
/// on Lambda) holds within that minute.
async fn a_stop_set_by_another_process_holds_within_a_minute(
    (state, _keep): (AppState, Box<dyn std::any::Any + Send>),
) {
    let (app, state, clock, team, run) = a_team_on_a_manual_clock(state).await;
    let key = &team.api_key;
    assert_eq!(
        app.log(key, &run, loss_batch("a", 0, 100)).await.0,
        StatusCode::OK
    );

    let elsewhere = AppState {
        marks: Arc::default(),
        ..state.clone()
    };
    let (elsewhere, _) = TestApp::serving(elsewhere).await;
    let (status, body) = put_budget(
        &elsewhere,
        key,
        json!({"monthly_budget": "0.10", "hard_stop": true}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["stopped"], true,
        "100 points spent the 0.10 budget: {body}"
    );

    clock.advance(Duration::seconds(30));
    assert_eq!(
        app.log(key, &run, loss_batch("b", 100, 10)).await.0,
        StatusCode::OK,
        "this process found no stop 30 s ago"
    );
    clock.advance(usage::UNSTOPPED_FOR);
    let (status, body) = app.log(key, &run, loss_batch("c", 110, 10)).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_eq!(error_code(&body), "budget_exceeded");
}

cases!(embedded, sextant_tests::embedded_state;
    budget_letters_go_once_per_threshold_and_month_to_each_verified_admin,
    the_hard_stop_refuses_log_calls_past_the_budget_and_raising_or_lifting_it_lets_them_resume,
    a_stop_set_by_another_process_holds_within_a_minute);
aws_cases!(dynamodb, sextant_tests::aws_state;
    budget_letters_go_once_per_threshold_and_month_to_each_verified_admin,
    the_hard_stop_refuses_log_calls_past_the_budget_and_raising_or_lifting_it_lets_them_resume);

#[tokio::test]
async fn only_admins_set_a_budget_and_a_malformed_one_is_refused_with_invalid_budget() {
    let app = TestApp::spawn().await;
    let team = app.signup().await;
    for role in ["member", "viewer"] {
        let key = app.key_with_role(&team, role).await;
        let (status, body) = put_budget(
            &app,
            &key,
            json!({"monthly_budget": "5", "hard_stop": false}),
        )
        .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{role}: {body}");
        assert_eq!(error_code(&body), "forbidden");
        let (status, body) = app.get("/v1/budget", &key).await;
        assert_eq!(status, StatusCode::OK, "{role}: {body}");
        assert_eq!(body["monthly_budget"], Value::Null);
    }
    for (amount, hard_stop) in [
        (json!("-1"), false),
        (json!("0"), false),
        (json!("1.001"), false),
        (json!("1e3"), false),
        (json!("1000000000000"), false),
        (json!("twenty"), false),
        (Value::Null, true),
    ] {
        let (status, body) = put_budget(
            &app,
            &team.api_key,
            json!({"monthly_budget": amount, "hard_stop": hard_stop}),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{amount}: {body}");
        assert_eq!(error_code(&body), "invalid_budget", "{amount}");
    }
    let (status, body) = put_budget(
        &app,
        &team.api_key,
        json!({"monthly_budget": 25, "hard_stop": false}),
    )
    .await;
    assert!(status.is_client_error(), "a number, not a string: {body}");
    let (_, budget) = app.get("/v1/budget", &team.api_key).await;
    assert_eq!(
        budget["monthly_budget"],
        Value::Null,
        "nothing refused was kept"
    );
}
