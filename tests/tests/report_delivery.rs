//! Closed monthly reports delivered to the operator's webhook, on both stores, through
//! the real HTTP sender to a receiver on loopback: a receiver that fails its first
//! answers still acknowledges each report exactly once, no retry comes before its
//! back-off, two runs at once send a report once, and a run that dies after closing a
//! month leaves no report undelivered.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Value, json};
use sextant_domain::billing::{self, ReportStatus};
use sextant_domain::calendar::BillingMonth;
use sextant_domain::error::Error;
use sextant_domain::metering;
use sextant_domain::report_delivery::{
    self, DeliveryRun, DeliveryState, ReportDelivery, ReportWebhook, RetryPolicy, WebhookSecret,
};
use sextant_edge::state::AppState;
use sextant_metering::{HttpReportSender, Metering, MeteringHour};
use sextant_storage::clock::{Clock, ManualClock};
use sextant_tests::{aws_cases, cases, log_points, run_on_a_manual_clock, signed_up_run};
use time::{Duration, OffsetDateTime};

const SECRET: &str = "whsec_loopback_receiver_secret";
/// Late in November, so closing the month rolls up a few hours, not weeks.
const START: OffsetDateTime = time::macros::datetime!(2026-11-30 21:20 UTC);
/// How far a signature's timestamp may be from the receiver's clock.
const TOLERANCE_SECS: i64 = 300;

/// Checks a `Sextant-Signature` as the README tells a receiver to, apart from the
/// domain's code: the timestamp is recent, and the HMAC-SHA256 of `"{t}.{body}"`
/// under the secret matches `v1` (compared in constant time).
fn verify(secret: &str, header: &str, body: &[u8], now: i64) -> Result<(), &'static str> {
    let (mut t, mut v1) = (None, None);
    for part in header.split(',') {
        match part.split_once('=') {
            Some(("t", value)) => t = value.parse::<i64>().ok(),
            Some(("v1", value)) => v1 = hex::decode(value).ok(),
            _ => {}
        }
    }
    let (Some(t), Some(v1)) = (t, v1) else {
        return Err("malformed");
    };
    if (now - t).abs() > TOLERANCE_SECS {
        return Err("stale");
    }
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).expect("any key");
    mac.update(format!("{t}.").as_bytes());
    mac.update(body);
    mac.verify_slice(&v1).map_err(|_| "mismatch")
}

/// What the receiver saw of one idempotency key.
#[derive(Debug, Default, Clone)]
struct Seen {
    /// The receiver's clock at each POST.
    posts: Vec<OffsetDateTime>,
    /// Answered 2xx and booked: a receiver books a key once.
    booked: u32,
    /// Answered 2xx to a key booked already, booking nothing.
    repeats: u32,
    /// The last envelope and its signature header.
    last: Option<(Bytes, String)>,
}

/// A webhook receiver on loopback that answers 500 to the first `fail_first` POSTs of
/// each key and 200 after, refusing (400) any whose signature does not verify.
#[derive(Debug)]
struct Receiver {
    clock: Arc<ManualClock>,
    fail_first: usize,
    keys: Mutex<BTreeMap<String, Seen>>,
    bad_signatures: Mutex<u32>,
}

impl Receiver {
    async fn spawn(clock: Arc<ManualClock>, fail_first: usize) -> (Arc<Self>, String) {
        let receiver = Arc::new(Self {
            clock,
            fail_first,
            keys: Mutex::default(),
            bad_signatures: Mutex::default(),
        });
        let router = axum::Router::new()
            .route("/hooks/sextant", axum::routing::post(receive))
            .with_state(receiver.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hooks/sextant", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, router).await });
        (receiver, url)
    }

    fn seen(&self, key: &str) -> Seen {
        self.keys
            .lock()
            .unwrap()
            .get(key)
            .cloned()
            .unwrap_or_default()
    }

    fn posts(&self, keys: &[String]) -> Vec<usize> {
        keys.iter().map(|key| self.seen(key).posts.len()).collect()
    }
}

async fn receive(
    State(receiver): State<Arc<Receiver>>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let (key, signature) = (header("idempotency-key"), header("sextant-signature"));
    let now = receiver.clock.now();
    if verify(SECRET, &signature, &body, now.unix_timestamp()).is_err() {
        *receiver.bad_signatures.lock().unwrap() += 1;
        return StatusCode::BAD_REQUEST;
    }
    let mut keys = receiver.keys.lock().unwrap();
    let seen = keys.entry(key).or_default();
    seen.posts.push(now);
    seen.last = Some((body, signature));
    if seen.posts.len() <= receiver.fail_first {
        return StatusCode::INTERNAL_SERVER_ERROR;
    }
    if seen.booked == 0 {
        seen.booked = 1;
    } else {
        seen.repeats += 1;
    }
    StatusCode::OK
}

/// The server's metering with the webhook at `url`: the real HTTP sender, and quick
/// tries 10 ms apart so the test does not wait seconds.
fn metering_to(state: &AppState, url: &str) -> Metering {
    Metering {
        webhook: Some(ReportWebhook {
            sender: Arc::new(
                HttpReportSender::new(url, sextant_metering::WEBHOOK_TIMEOUT).unwrap(),
            ),
            secret: WebhookSecret::new(SECRET).unwrap(),
            retry: RetryPolicy {
                quick_waits: vec![std::time::Duration::from_millis(10)],
                ..RetryPolicy::default()
            },
        }),
        ..sextant_cli::metering(state)
    }
}

/// The hourly run as the schedule makes it at the clock's time.
async fn run_now(metering: &Metering, clock: &ManualClock) -> sextant_metering::RunReport {
    metering
        .run(MeteringHour::ending_at_or_before(clock.now()))
        .await
        .expect("a metering run")
}

async fn listing(state: &AppState, month: BillingMonth) -> Vec<ReportDelivery> {
    report_delivery::listing(&state.store, &state.settings.plan, month)
        .await
        .expect("the listing")
}

/// Three teams log in November; its reports close at the run after the month ends.
/// The receiver fails each key's first four POSTs: two runs of two quick tries fail,
/// each run waiting out its back-off, and the third run's first try is acknowledged,
/// by one of two runs made at once. Nothing is sent after that.
async fn each_report_is_acknowledged_once_though_the_receiver_fails_its_first_answers(
    (state, _keep): (AppState, Box<dyn std::any::Any + Send>),
) {
    let (state, clock, first, run) = run_on_a_manual_clock(state, START).await;
    let mut teams = vec![(first, run)];
    for _ in 0..2 {
        teams.push(signed_up_run(&state).await);
    }
    for (n, (caller, run)) in teams.iter().enumerate() {
        log_points(&state, caller, *run, "b", 10 * (n + 1)).await;
    }
    let (receiver, url) = Receiver::spawn(clock.clone(), 4).await;
    let metering = metering_to(&state, &url);
    let month = BillingMonth::of(START);
    let keys: Vec<String> = teams
        .iter()
        .map(|(caller, _)| report_delivery::idempotency_key(caller.tenant.id(), month))
        .collect();

    // Before the month ends nothing is due.
    run_now(&metering, &clock).await;
    assert_eq!(receiver.posts(&keys), [0, 0, 0]);

    // The run a minute after the month ends closes it and tries each report twice.
    clock.set(month.end() + Duration::MINUTE);
    let report = run_now(&metering, &clock).await;
    assert_eq!(
        report.deliveries,
        DeliveryRun {
            delivered: 0,
            failed: 3
        }
    );
    assert_eq!(receiver.posts(&keys), [2, 2, 2]);
    let rows = listing(&state, month).await;
    assert_eq!(rows.len(), 3);
    for row in &rows {
        assert_eq!(row.totals.status, ReportStatus::Closed);
        assert_eq!(row.delivery, Some(DeliveryState::Pending));
        assert_eq!(row.attempts, 2);
        assert_eq!(row.last_error.as_deref(), Some("http_500"));
        assert_eq!(row.next_attempt_at, Some(clock.now() + Duration::MINUTE));
        assert_eq!(row.delivered_at, None);
    }

    // No retry before its back-off: at once, and 59 seconds on, nothing is sent.
    run_now(&metering, &clock).await;
    clock.advance(Duration::seconds(59));
    run_now(&metering, &clock).await;
    assert_eq!(receiver.posts(&keys), [2, 2, 2]);

    // A minute on, two more tries fail; the back-off doubles to two minutes.
    clock.advance(Duration::seconds(1));
    let report = run_now(&metering, &clock).await;
    assert_eq!(report.deliveries.failed, 3);
    assert_eq!(receiver.posts(&keys), [4, 4, 4]);
    for row in listing(&state, month).await {
        assert_eq!(row.attempts, 4);
        assert_eq!(
            row.next_attempt_at,
            Some(clock.now() + Duration::minutes(2))
        );
    }
    clock.advance(Duration::seconds(119));
    run_now(&metering, &clock).await;
    assert_eq!(receiver.posts(&keys), [4, 4, 4]);

    // Two runs at once: each report is sent once, acknowledged once, recorded once.
    clock.advance(Duration::seconds(1));
    let (one, other) = tokio::join!(metering.deliver_reports(), metering.deliver_reports());
    let (one, other) = (one.unwrap(), other.unwrap());
    assert_eq!(one.delivered + other.delivered, 3, "{one:?} {other:?}");
    assert_eq!(one.failed + other.failed, 0);
    assert_eq!(receiver.posts(&keys), [5, 5, 5]);
    let delivered_at = clock.now();
    for (row, key) in listing(&state, month).await.iter().zip(&keys) {
        assert_eq!(row.delivery, Some(DeliveryState::Delivered));
        assert_eq!(row.attempts, 5);
        assert_eq!(
            row.last_error.as_deref(),
            Some("http_500"),
            "the last failure"
        );
        assert_eq!(row.next_attempt_at, None);
        assert_eq!(row.delivered_at, Some(delivered_at));
        assert_eq!(
            *key,
            report_delivery::idempotency_key(row.totals.tenant_id, month)
        );
    }

    // Acknowledged reports are never sent again, however many runs follow.
    for _ in 0..3 {
        clock.advance(Duration::hours(7));
        let report = run_now(&metering, &clock).await;
        assert_eq!(report.deliveries, DeliveryRun::default());
    }
    for (key, (caller, _)) in keys.iter().zip(&teams) {
        let seen = receiver.seen(key);
        assert_eq!(seen.posts.len(), 5, "{key}");
        assert_eq!((seen.booked, seen.repeats), (1, 0), "{key}");
        // The body is the envelope of the closed report, as the team reads it.
        let (body, signature) = seen.last.expect("a POST");
        let envelope: Value = serde_json::from_slice(&body).unwrap();
        let report = billing::report(&state.store, &state.settings.plan, &caller.tenant, month)
            .await
            .unwrap();
        assert_eq!(
            envelope,
            json!({"id": key, "type": "report.closed", "report": report})
        );
        assert_eq!(envelope["report"]["status"], "closed");
        // Tampering with the body, or another secret, is detected.
        let at = delivered_at.unix_timestamp();
        assert_eq!(verify(SECRET, &signature, &body, at), Ok(()));
        let mut tampered = body.to_vec();
        tampered.extend_from_slice(b" ");
        assert_eq!(verify(SECRET, &signature, &tampered, at), Err("mismatch"));
        assert_eq!(
            verify("another_secret_of_16_bytes", &signature, &body, at),
            Err("mismatch")
        );
        assert_eq!(
            verify(SECRET, &signature, &body, at + TOLERANCE_SECS + 1),
            Err("stale")
        );
    }
    assert_eq!(*receiver.bad_signatures.lock().unwrap(), 0);

    // The listing as CSV, a row per tenant.
    let csv = report_delivery::to_csv(&listing(&state, month).await).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 4, "{csv}");
    assert!(lines[0].starts_with("tenant_id,team,status,total,currency,delivery,attempts"));
    assert!(
        lines[1..]
            .iter()
            .all(|line| line.contains(",closed,") && line.contains(",delivered,5,http_500,")),
        "{csv}"
    );
}

/// A run closes the month and dies before it schedules the deliveries (and before it
/// moves the roll-up's cursor past the month): the next run schedules and delivers
/// every report.
async fn a_run_that_dies_after_closing_the_month_leaves_no_report_undelivered(
    (state, _keep): (AppState, Box<dyn std::any::Any + Send>),
) {
    let (state, clock, caller, run) = run_on_a_manual_clock(state, START).await;
    log_points(&state, &caller, run, "b", 7).await;
    let month = BillingMonth::of(START);
    clock.set(month.end() + Duration::MINUTE);
    let died = metering::roll_up_through(&state.store, month.end() - Duration::HOUR, &|month| {
        let state = state.clone();
        async move {
            billing::close_month(&state.store, &state.settings.plan, month).await?;
            Err::<(), Error>(Error::internal(anyhow::anyhow!("the run died")))
        }
    })
    .await;
    assert!(died.is_err());
    let rows = listing(&state, month).await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].totals.status, ReportStatus::Closed);
    assert_eq!(rows[0].delivery, None, "not scheduled");

    let (receiver, url) = Receiver::spawn(clock.clone(), 0).await;
    let report = run_now(&metering_to(&state, &url), &clock).await;
    assert_eq!(report.deliveries.delivered, 1);
    let key = report_delivery::idempotency_key(caller.tenant.id(), month);
    let seen = receiver.seen(&key);
    assert_eq!((seen.posts.len(), seen.booked), (1, 1));
    assert_eq!(
        listing(&state, month).await[0].delivery,
        Some(DeliveryState::Delivered)
    );
}

/// Without a webhook, closed reports wait, pending and untried; the first run with one
/// delivers them.
async fn reports_closed_without_a_webhook_wait_pending_until_one_is_configured(
    (state, _keep): (AppState, Box<dyn std::any::Any + Send>),
) {
    let (state, clock, caller, run) = run_on_a_manual_clock(state, START).await;
    log_points(&state, &caller, run, "b", 3).await;
    let month = BillingMonth::of(START);
    clock.set(month.end() + Duration::MINUTE);
    let report = run_now(&sextant_cli::metering(&state), &clock).await;
    assert_eq!(report.deliveries, DeliveryRun::default());
    let rows = listing(&state, month).await;
    assert_eq!(rows[0].delivery, Some(DeliveryState::Pending));
    assert_eq!((rows[0].attempts, rows[0].last_error.as_deref()), (0, None));

    clock.advance(Duration::hours(1));
    let (receiver, url) = Receiver::spawn(clock.clone(), 0).await;
    let report = run_now(&metering_to(&state, &url), &clock).await;
    assert_eq!(report.deliveries.delivered, 1);
    let key = report_delivery::idempotency_key(caller.tenant.id(), month);
    assert_eq!(receiver.seen(&key).booked, 1);
}

cases!(
    embedded,
    sextant_tests::embedded_state;
    each_report_is_acknowledged_once_though_the_receiver_fails_its_first_answers,
    a_run_that_dies_after_closing_the_month_leaves_no_report_undelivered,
    reports_closed_without_a_webhook_wait_pending_until_one_is_configured,
);

aws_cases!(
    dynamodb,
    sextant_tests::aws_state;
    each_report_is_acknowledged_once_though_the_receiver_fails_its_first_answers,
    a_run_that_dies_after_closing_the_month_leaves_no_report_undelivered,
    reports_closed_without_a_webhook_wait_pending_until_one_is_configured,
);
