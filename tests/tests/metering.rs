//! The hourly roll-up on both stores: each tenant's points of an hour counted once
//! (retried batches included), its storage integrated to the byte-second, rolling an hour up again changing
//! nothing, missed hours filled in, and tenants kept apart.

use serde_json::json;
use sextant_domain::artifacts;
use sextant_domain::billing;
use sextant_domain::calendar::{BillingMonth, hour_of};
use sextant_domain::credentials::Caller;
use sextant_domain::deletion;
use sextant_domain::metering;
use sextant_domain::projects::{self, ProjectName};
use sextant_domain::runs::{self, NewRun};
use sextant_edge::state::AppState;
use sextant_tests::{
    aws_state, embedded_state, log_points, run_on_a_manual_clock, signed_up_caller,
};
use time::{Duration, OffsetDateTime};

async fn rolls_up_each_tenants_points_once_and_changes_nothing_when_run_again(
    (state, _keep): (AppState, Box<dyn std::any::Any + Send>),
) {
    let first_hour = hour_of(OffsetDateTime::now_utc());
    let (a, b) = (
        signed_up_caller(&state).await,
        signed_up_caller(&state).await,
    );
    let mut runs = Vec::new();
    for caller in [&a, &b] {
        let project = projects::create(&state.store, caller, ProjectName::parse("p").unwrap())
            .await
            .unwrap();
        runs.push(
            runs::create(&state.store, caller, &project, NewRun::default())
                .await
                .unwrap()
                .id,
        );
    }
    let mut a_points = log_points(&state, &a, runs[0], "one", 1000).await;
    a_points += log_points(&state, &a, runs[0], "two", 500).await;
    // A retry stores and counts nothing.
    assert_eq!(log_points(&state, &a, runs[0], "two", 500).await, 501);
    let b_points = log_points(&state, &b, runs[1], "only", 10).await;
    assert_eq!((a_points, b_points), (1502, 11));

    // The test may straddle an hour: roll up every hour it touched.
    let last_hour = hour_of(OffsetDateTime::now_utc());
    let mut hour = first_hour;
    while hour <= last_hour {
        sextant_cli::metering(&state)
            .roll_up_hour(hour)
            .await
            .unwrap();
        hour += Duration::HOUR;
    }
    let window = (first_hour, last_hour + Duration::HOUR);
    let usage = |caller: Caller| {
        let state = state.clone();
        async move {
            metering::hourly(&state.store, &caller.tenant, window.0, window.1)
                .await
                .unwrap()
        }
    };
    let a_usage = usage(a.clone()).await;
    let b_usage = usage(b.clone()).await;
    assert_eq!(a_usage.iter().map(|h| h.points).sum::<u64>(), 1502);
    assert_eq!(b_usage.iter().map(|h| h.points).sum::<u64>(), 11);
    let a_bytes = a_usage.last().unwrap().storage_bytes;
    assert!(a_bytes > 0 && a_bytes > b_usage.last().unwrap().storage_bytes);

    // The month's usage sums the hours; the other team's are not in it.
    let month = BillingMonth::of(first_hour);
    let priced = billing::usage(&state.store, &state.settings.plan, &a.tenant, month)
        .await
        .unwrap();
    if BillingMonth::of(last_hour) == month {
        assert_eq!(priced.points, 1502);
        assert_eq!(
            priced.total,
            rust_decimal::Decimal::ZERO,
            "inside the free allowance"
        );
    }

    // Again: nothing is written, nothing changes.
    assert_eq!(
        sextant_cli::metering(&state)
            .roll_up_hour(last_hour)
            .await
            .unwrap(),
        0
    );
    assert_eq!(usage(a.clone()).await, a_usage);

    // Deleting the run releases its storage; the next hour samples the smaller figure.
    deletion::delete_run(&state.store, &a.tenant, runs[0])
        .await
        .unwrap();
    let next = last_hour + Duration::HOUR;
    let rolled = sextant_cli::metering(&state)
        .roll_up_through(next)
        .await
        .unwrap();
    // With no cursor yet, from the first hour anything happened in (the test may have
    // straddled an hour: its first log may be in its second).
    let first = *rolled.first().expect("hours rolled up");
    assert!(first >= first_hour && first <= last_hour, "{rolled:?}");
    let consecutive: Vec<OffsetDateTime> = (0..rolled.len() as i64)
        .map(|n| first + Duration::hours(n))
        .collect();
    assert_eq!(rolled, consecutive);
    assert_eq!(rolled.last(), Some(&next));
    let later = metering::hourly(&state.store, &a.tenant, next, next + Duration::HOUR)
        .await
        .unwrap();
    assert_eq!(later.len(), 1, "a storer is sampled even in an idle hour");
    assert_eq!((later[0].points, later[0].storage_bytes), (0, 0));

    // Three hours later, the missed hours are filled in, each once.
    let rolled = sextant_cli::metering(&state)
        .roll_up_through(next + Duration::hours(3))
        .await
        .unwrap();
    assert_eq!(rolled.len(), 3);
    let again = sextant_cli::metering(&state)
        .roll_up_through(next + Duration::hours(3))
        .await
        .unwrap();
    assert!(again.is_empty(), "{again:?}");

    // Rolling up a month's last hour closes its reports, once and for good.
    let last_of_month = month.end() - Duration::HOUR;
    sextant_cli::metering(&state)
        .roll_up_hour(last_of_month)
        .await
        .unwrap();
    let closed = billing::report(&state.store, &state.settings.plan, &b.tenant, month)
        .await
        .unwrap();
    assert_eq!(closed.status, billing::ReportStatus::Closed);
    assert_eq!(closed.closed_at, Some(month.end()));
    assert!(closed.to_csv().contains(",closed,logged points,"));
    let project = projects::find(&state.store, &b.tenant, "p").await.unwrap();
    let late_run = runs::create(&state.store, &b, &project, NewRun::default())
        .await
        .unwrap()
        .id;
    log_points(&state, &b, late_run, "late", 5).await;
    sextant_cli::metering(&state)
        .roll_up_hour(last_of_month)
        .await
        .unwrap();
    assert_eq!(
        billing::report(&state.store, &state.settings.plan, &b.tenant, month)
            .await
            .unwrap(),
        closed,
        "a closed report never changes"
    );
}

#[tokio::test]
async fn the_roll_up_on_the_embedded_store() {
    rolls_up_each_tenants_points_once_and_changes_nothing_when_run_again(embedded_state().await)
        .await;
}

#[ignore = "needs moto's server at SEXTANT_TEST_AWS_ENDPOINT; scripts/test.sh starts it"]
#[tokio::test]
async fn the_roll_up_on_dynamodb() {
    rolls_up_each_tenants_points_once_and_changes_nothing_when_run_again(aws_state().await).await;
}

#[tokio::test]
async fn usage_over_http_starts_at_zero_and_refuses_a_malformed_month() {
    let app = sextant_tests::TestApp::spawn().await;
    let team = app.signup().await;
    let (status, usage) = app.get("/v1/usage?month=2026-11", &team.api_key).await;
    assert_eq!(status, reqwest::StatusCode::OK, "{usage}");
    assert_eq!(usage["month"], "2026-11");
    assert_eq!(usage["points"], 0);
    assert_eq!(usage["total"], "0.00");
    assert_eq!(usage["currency"], "USD");
    let (status, body) = app.get("/v1/usage?month=2026-13", &team.api_key).await;
    assert_eq!(status, reqwest::StatusCode::BAD_REQUEST);
    assert_eq!(sextant_tests::error_code(&body), "invalid_month");
}

#[tokio::test]
async fn a_months_report_is_a_draft_until_closed_and_comes_as_json_or_csv() {
    let app = sextant_tests::TestApp::spawn().await;
    let team = app.signup().await;
    let (status, report) = app.get("/v1/billing/reports/2026-11", &team.api_key).await;
    assert_eq!(status, reqwest::StatusCode::OK, "{report}");
    assert_eq!(report["status"], "draft");
    assert_eq!(report["tenant_id"], team.tenant_id.as_str());
    assert_eq!(report["line_items"].as_array().unwrap().len(), 2);
    let csv = app
        .request(
            reqwest::Method::GET,
            "/v1/billing/reports/2026-11?format=csv",
            Some(&team.api_key),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(csv.headers()["content-type"], "text/csv; charset=utf-8");
    let text = csv.text().await.unwrap();
    assert!(text.starts_with("month,status,description"), "{text}");
    assert!(text.contains("2026-11,draft,total,"), "{text}");
    let (status, body) = app
        .get("/v1/billing/reports/2026-11?format=xml", &team.api_key)
        .await;
    assert_eq!(status, reqwest::StatusCode::BAD_REQUEST);
    assert_eq!(sextant_tests::error_code(&body), "invalid_format");
}

/// Both operator listings: usage, and reports with their deliveries.
#[tokio::test]
async fn only_the_operator_token_lists_every_tenants_usage_and_reports() {
    use sextant_domain::credentials::operator::OperatorTokenHash;
    let app = sextant_tests::TestApp::spawn_adjusted(sextant_cli::Backend::Embedded, |config| {
        config.operator_token = Some(OperatorTokenHash::of("the-operator"));
    })
    .await;
    let unconfigured = sextant_tests::TestApp::spawn().await;
    let team = app.signup().await;
    for listing in ["usage", "reports"] {
        let path = format!("/v1/admin/{listing}?month=2026-11");
        let path = path.as_str();
        let (status, listing) = app.get(path, "the-operator").await;
        assert_eq!(status, reqwest::StatusCode::OK, "{listing}");
        assert_eq!(listing, json!({"month": "2026-11", "tenants": []}));
        for credential in [
            team.api_key.as_str(),
            team.token.as_str(),
            "not-the-operator",
        ] {
            let (status, body) = app.get(path, credential).await;
            assert_eq!(status, reqwest::StatusCode::FORBIDDEN, "{path}: {body}");
            assert_eq!(sextant_tests::error_code(&body), "operator_only");
        }
        let (status, _) = app.call(reqwest::Method::GET, path, None, None).await;
        assert_eq!(status, reqwest::StatusCode::UNAUTHORIZED, "{path}");
        let (status, body) = app
            .get(&path.replace("2026-11", "November"), "the-operator")
            .await;
        assert_eq!(status, reqwest::StatusCode::BAD_REQUEST, "{path}");
        assert_eq!(sextant_tests::error_code(&body), "invalid_month");

        // A deployment without an operator token has no operator.
        let (status, body) = unconfigured.get(path, "the-operator").await;
        assert_eq!(status, reqwest::StatusCode::FORBIDDEN, "{path}: {body}");
    }
}

/// When the manual-clock tests start: mid-hour, mid-month.
const START: OffsetDateTime = time::macros::datetime!(2026-11-10 10:20 UTC);

/// A deployment whose metering first runs days after its first points (a server that
/// logged and stopped before its first hourly run, a function that failed its first
/// runs) bills them: the first roll-up starts at the first hour anything happened in.
async fn the_late_first_roll_up_bills_every_point(
    (state, _keep): (AppState, Box<dyn std::any::Any + Send>),
) {
    let (state, clock, caller, run) = run_on_a_manual_clock(state, START).await;
    let logged = log_points(&state, &caller, run, "early", 1000).await;
    clock.advance(Duration::hours(2));
    let later = log_points(&state, &caller, run, "later", 100).await;

    clock.advance(Duration::days(3));
    let through = hour_of(state.now()) - Duration::HOUR;
    let hours = sextant_cli::metering(&state)
        .roll_up_through(through)
        .await
        .unwrap();
    assert_eq!(
        hours.first(),
        Some(&hour_of(START)),
        "from the first point's hour"
    );
    assert_eq!(hours.last(), Some(&through));
    let usage = metering::hourly(
        &state.store,
        &caller.tenant,
        START,
        through + Duration::HOUR,
    )
    .await
    .unwrap();
    assert_eq!(usage.iter().map(|h| h.points).sum::<u64>(), logged + later);
    assert_eq!(usage.first().map(|h| h.points), Some(logged));
    assert!(
        usage.iter().all(|h| h.storage_bytes > 0),
        "every hour since samples the bytes"
    );
    let month = BillingMonth::of(START);
    let priced = billing::usage(&state.store, &state.settings.plan, &caller.tenant, month)
        .await
        .unwrap();
    assert_eq!(priced.points, logged + later);
}

#[tokio::test]
async fn the_late_first_roll_up_bills_every_point_on_the_embedded_store() {
    the_late_first_roll_up_bills_every_point(embedded_state().await).await;
}

#[ignore = "needs moto's server at SEXTANT_TEST_AWS_ENDPOINT; scripts/test.sh starts it"]
#[tokio::test]
async fn the_late_first_roll_up_bills_every_point_on_dynamodb() {
    the_late_first_roll_up_bills_every_point(aws_state().await).await;
}

/// Usage right after logging shows the points, marked provisional (read from the live
/// counters), in the usage answer and the draft report; the hourly roll-up makes them
/// final, and nothing counts twice.
async fn usage_right_after_logging_shows_the_points_as_provisional(
    (state, _keep): (AppState, Box<dyn std::any::Any + Send>),
) {
    let (state, clock, caller, run) = run_on_a_manual_clock(state, START).await;
    let month = BillingMonth::of(START);
    let plan = &state.settings.plan;
    let logged = log_points(&state, &caller, run, "now", 1000).await;

    let usage = billing::usage(&state.store, plan, &caller.tenant, month)
        .await
        .unwrap();
    assert_eq!(usage.points, logged);
    let provisional = usage.provisional.clone().expect("a provisional part");
    assert_eq!(provisional.since, hour_of(START));
    assert_eq!(provisional.points, logged);
    assert!(
        provisional.gb_hours > rust_decimal::Decimal::ZERO,
        "the bytes stored now"
    );
    assert!(usage.days.iter().all(|day| day.provisional));
    let draft = billing::report(&state.store, plan, &caller.tenant, month)
        .await
        .unwrap();
    assert_eq!(draft.points, logged);
    assert_eq!(draft.provisional, Some(provisional));

    // An hour on, the roll-up makes the hour final; the new hour is provisional.
    clock.advance(Duration::hours(1));
    let more = log_points(&state, &caller, run, "later", 10).await;
    sextant_cli::metering(&state)
        .roll_up_through(hour_of(START))
        .await
        .unwrap();
    let usage = billing::usage(&state.store, plan, &caller.tenant, month)
        .await
        .unwrap();
    assert_eq!(usage.points, logged + more, "each point counted once");
    let provisional = usage.provisional.expect("the new hour");
    assert_eq!(provisional.since, hour_of(START) + Duration::HOUR);
    assert_eq!(provisional.points, more);
    clock.advance(Duration::hours(1));
    sextant_cli::metering(&state)
        .roll_up_through(hour_of(state.now()) - Duration::HOUR)
        .await
        .unwrap();
    let usage = billing::usage(&state.store, plan, &caller.tenant, month)
        .await
        .unwrap();
    assert_eq!(usage.points, logged + more);
    assert_eq!(
        usage.provisional.map(|p| p.points),
        Some(0),
        "only the bytes of the hour under way are provisional"
    );
}

#[tokio::test]
async fn usage_right_after_logging_shows_the_points_as_provisional_on_the_embedded_store() {
    usage_right_after_logging_shows_the_points_as_provisional(embedded_state().await).await;
}

#[ignore = "needs moto's server at SEXTANT_TEST_AWS_ENDPOINT; scripts/test.sh starts it"]
#[tokio::test]
async fn usage_right_after_logging_shows_the_points_as_provisional_on_dynamodb() {
    usage_right_after_logging_shows_the_points_as_provisional(aws_state().await).await;
}

/// Storage is integrated, not sampled: artifacts stored and deleted at odd seconds
/// bill exactly their byte-seconds in each hour, whether the hour is rolled up right
/// after it ends (with changes already made in the next) or days later, and the run's
/// own counters come to the same.
async fn storage_bills_the_hand_integral_to_the_byte_second(
    (state, _keep): (AppState, Box<dyn std::any::Any + Send>),
) {
    let (state, clock, caller, run) = run_on_a_manual_clock(state, START).await;
    let hour = hour_of(START);
    let at =
        |minutes: i64, seconds: i64| hour + Duration::minutes(minutes) + Duration::seconds(seconds);
    let store = |path: &'static str, size: usize| {
        let state = state.clone();
        let tenant = caller.tenant;
        async move {
            artifacts::store(
                &state.store,
                &state.marks,
                &tenant,
                run,
                path,
                bytes::Bytes::from(vec![7u8; size]),
                None,
            )
            .await
            .unwrap();
        }
    };
    let delete = |path: &'static str| {
        let state = state.clone();
        let tenant = caller.tenant;
        async move {
            artifacts::delete(&state.store, &tenant, run, path)
                .await
                .unwrap()
        }
    };
    clock.set(at(7, 13));
    store("a", 1000).await;
    clock.set(at(51, 2));
    delete("a").await;
    clock.set(at(63, 30));
    store("b", 500).await;
    // The first hour is rolled up after the next has changed what is stored.
    clock.set(at(64, 0));
    sextant_cli::metering(&state)
        .roll_up_through(hour)
        .await
        .unwrap();
    clock.set(at(179, 59));
    store("c", 7).await;
    clock.set(at(180, 1));
    delete("b").await;
    clock.set(hour + Duration::days(3));
    sextant_cli::metering(&state)
        .roll_up_through(hour + Duration::hours(3))
        .await
        .unwrap();

    let by_hand = [
        1000 * (51 * 60 + 2 - (7 * 60 + 13)),
        500 * (3600 - 210),
        500 * 3600 + 7,
        7 * 3600 + 500,
    ];
    let hours = metering::hourly(
        &state.store,
        &caller.tenant,
        hour,
        hour + Duration::hours(4),
    )
    .await
    .unwrap();
    let recorded: Vec<(u64, Option<u64>)> = hours
        .iter()
        .map(|h| (h.storage_bytes, h.byte_seconds))
        .collect();
    assert_eq!(
        recorded,
        [
            (0, Some(by_hand[0])),
            (500, Some(by_hand[1])),
            (507, Some(by_hand[2])),
            (7, Some(by_hand[3])),
        ]
    );
    let month = BillingMonth::of(START);
    let report = billing::report(&state.store, &state.settings.plan, &caller.tenant, month)
        .await
        .unwrap();
    let total: u64 = by_hand.iter().sum();
    // The hours after the last one rolled up hold 7 bytes, provisionally.
    let provisional = report.provisional.as_ref().map_or(0, |p| p.byte_seconds);
    assert_eq!(report.byte_seconds, Some(total + provisional));
    assert_eq!(report.gb_hours, billing::gb_hours(total + provisional));

    let record = runs::load(&state.store, &caller.tenant, run)
        .await
        .unwrap()
        .record;
    let counted = runs::usage_of(&state.store, &caller.tenant, &record)
        .await
        .unwrap();
    assert_eq!(counted.bytes, 7);
    assert_eq!(counted.byte_seconds(hour + Duration::hours(4)), total);
}

#[tokio::test]
async fn storage_bills_the_hand_integral_to_the_byte_second_on_the_embedded_store() {
    storage_bills_the_hand_integral_to_the_byte_second(embedded_state().await).await;
}

#[ignore = "needs moto's server at SEXTANT_TEST_AWS_ENDPOINT; scripts/test.sh starts it"]
#[tokio::test]
async fn storage_bills_the_hand_integral_to_the_byte_second_on_dynamodb() {
    storage_bills_the_hand_integral_to_the_byte_second(aws_state().await).await;
}
