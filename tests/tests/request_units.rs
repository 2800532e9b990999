//! DynamoDB request units are counted from item sizes (`storage::capacity`), so one
//! workload must cost exactly the same on DynamoDB (moto) as on the embedded store:
//! the embedded figures of `benches/cost.rs` stand for what a deployment is billed.
//! And logging must stay within a write budget per point, so that a change making
//! every batch dearer fails here rather than on the AWS bill.

use std::sync::Arc;

use sextant_edge::auth;

use sextant_domain::accounts::{self, DisplayName, Email};
use sextant_domain::credentials::jwt::Keyring;
use sextant_domain::credentials::password::Password;
use sextant_domain::projects::{self, ProjectName};
use sextant_domain::runs::{self, NewRun};
use sextant_domain::series::batch::{self, LogBatch};
use sextant_domain::series::{self, Points, StepRange};
use sextant_edge::state::{AppState, Settings};
use sextant_storage::Storage;
use sextant_storage::clock::ManualClock;
use sextant_storage_local::EmbeddedKv;
use sextant_tests::capacity::{KvUsage, MeteredKv};
use sextant_tests::workload::{Series, batches, points_in};
use sextant_tests::{fresh_aws_storage, local_blobs_with_routes, unique};

/// Steps of the one run logged: 2,000 steps of `curves`, 8,280 points, in batches of
/// 50 steps (about 200 points, what the SDK sends a live run every five seconds).
const STEPS: usize = 2_000;
const WINDOW: i64 = 50;

/// Write units per logged point at about 200 points a batch, five seconds apart,
/// creating the run and settling the last batches included. Measured: 0.0535 (443 WRU
/// for 8,280 points in 40 batches: the first batch committed whole, since it starts the
/// seven series; 39 hot batches of about 6 WRU, each a batch record and a hot item
/// billed twice as a transaction; four rounds, each one chunk item a series, a marker
/// and a commit rewriting the run record and two counters). Before hot batches the
/// same workload cost about 17 WRU a batch. The budget leaves about 30% for growth;
/// more than that is a regression to explain, or a budget to raise on purpose.
const WRU_PER_POINT_BUDGET: f64 = 0.07;

/// Training curves shaped like the standard workload's (seven series, losses decaying
/// with noise, a learning-rate schedule, evaluations every 50 steps), generated here
/// so the test needs nothing outside the repository.
fn curves(steps: usize) -> Vec<Series> {
    let mut noise_state: u64 = 0x5EED;
    let mut noise = move || {
        noise_state = noise_state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (noise_state >> 11) as f64 / (1u64 << 53) as f64 - 0.5
    };
    let every = |stride: usize| (0..steps as i64).step_by(stride).collect::<Vec<i64>>();
    let mut series = Vec::new();
    let mut push = |name: &str, steps: Vec<i64>, value: &mut dyn FnMut(f64) -> f64| {
        let values = steps.iter().map(|&step| value(step as f64)).collect();
        let timestamps = steps
            .iter()
            .map(|&step| 1.8e9 + step as f64 * 0.25)
            .collect();
        series.push(Series {
            run: 0,
            name: name.to_owned(),
            steps,
            values,
            timestamps,
        });
    };
    push("train/loss", every(1), &mut |s| {
        2.5 * (-s / 700.0).exp() + 0.3 + 0.05 * noise()
    });
    push("train/accuracy", every(1), &mut |s| {
        0.95 - 0.85 * (-s / 500.0).exp() + 0.01 * noise()
    });
    push("train/lr", every(1), &mut |s| {
        3e-4 * (0.5 * (1.0 + (s / 2000.0 * std::f64::consts::PI).cos()))
    });
    push("train/grad_norm", every(1), &mut |s| {
        1.0 + 4.0 * (-s / 300.0).exp() + 0.3 * noise()
    });
    push("val/loss", every(50), &mut |s| {
        2.6 * (-s / 700.0).exp() + 0.35 + 0.02 * noise()
    });
    push("val/accuracy", every(50), &mut |s| {
        0.93 - 0.8 * (-s / 500.0).exp() + 0.01 * noise()
    });
    push("system/gpu_util", every(10), &mut |_| 0.9 + 0.1 * noise());
    series
}

/// Logs the workload, retries its last batch, and reads one series back as a chart
/// and exactly; answers what that cost, from the first run on.
async fn workload_cost(storage: Storage) -> (KvUsage, u64) {
    let kv = Arc::new(MeteredKv::new(storage.kv));
    let keyring = Keyring::new(&[("units".to_owned(), vec![5; 32])]).expect("keyring");
    // A clock the test moves, so timestamps stored in items have the same length on
    // both stores; sign-up reads the system clock, so it is not counted. Settled as on
    // Lambda, whose bill this is.
    let clock = Arc::new(ManualClock::starting_at(
        time::macros::datetime!(2026-11-05 13:20 UTC),
    ));
    let state = AppState::new(
        Storage {
            kv: kv.clone(),
            blobs: storage.blobs,
        },
        keyring,
        Settings::new(None),
    )
    .with_clock(clock.clone())
    .deferring_settlement();
    let signed_up = accounts::signup(
        &state.store,
        state.sessions(),
        DisplayName::parse("team", "Units").unwrap(),
        Email::parse(&format!("{}@example.com", unique("units"))).unwrap(),
        Password::parse("a long enough password".into()).unwrap(),
        std::net::IpAddr::from(std::net::Ipv4Addr::LOCALHOST),
    )
    .await
    .expect("signup");
    let caller = auth::authenticate(
        &state,
        &signed_up.api_key,
        sextant_domain::credentials::Plane::Control,
    )
    .await
    .expect("authenticate");
    let project = projects::create(&state.store, &caller, ProjectName::parse("units").unwrap())
        .await
        .expect("project");
    kv.take();

    let run = runs::create(&state.store, &caller, &project, NewRun::default())
        .await
        .expect("run")
        .id;
    let workload = curves(STEPS);
    let bodies = batches(&workload, 0, WINDOW);
    let parse = |body: &[u8]| serde_json::from_slice::<LogBatch>(body).expect("a batch");
    for body in &bodies {
        batch::log(
            &state.store,
            state.intake(),
            &caller.tenant,
            run,
            parse(body),
        )
        .await
        .expect("logged");
        clock.advance(time::Duration::seconds(5));
    }
    // A retry is answered from the batch's record and stores nothing.
    let last = bodies.last().expect("a batch");
    batch::log(
        &state.store,
        state.intake(),
        &caller.tenant,
        run,
        parse(last),
    )
    .await
    .expect("retried");
    // The hourly run settles what no write settled.
    clock.advance(time::Duration::minutes(2));
    series::hot::settle_due(&state.store, state.meter(), &caller.tenant, run)
        .await
        .expect("settled");

    let record = runs::load(&state.store, &caller.tenant, run)
        .await
        .unwrap()
        .record;
    let read = |limit| {
        series::read::<Points>(
            &state.store,
            &caller.tenant,
            &record,
            "train/loss",
            series::Window {
                limit,
                ..Default::default()
            },
        )
    };
    let (chart, _) = series::read_downsampled(
        &state.store,
        &caller.tenant,
        &record,
        "train/loss",
        StepRange::default(),
        100,
    )
    .await
    .unwrap();
    assert!(chart.len() <= 100);
    let exact = read(Some(series::EXACT_PAGE_POINTS)).await.unwrap();
    assert_eq!(exact.points.len(), STEPS);
    (kv.take(), points_in(&workload))
}

#[ignore = "needs moto's server at SEXTANT_TEST_AWS_ENDPOINT; scripts/test.sh starts it"]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_logged_workload_costs_the_same_units_on_dynamodb_as_on_the_embedded_store_and_stays_within_budget()
 {
    let (blobs, dir) = local_blobs_with_routes().await;
    let embedded = EmbeddedKv::open(&dir.path().join("store.redb")).expect("store");
    let (on_embedded, points) = workload_cost(Storage {
        kv: Arc::new(embedded),
        blobs,
    })
    .await;
    let (_, dynamo, s3) = fresh_aws_storage().await;
    let (on_dynamodb, _) = workload_cost(Storage {
        kv: Arc::new(dynamo),
        blobs: Arc::new(s3),
    })
    .await;

    assert_eq!(
        on_embedded.by_operation, on_dynamodb.by_operation,
        "the embedded store and DynamoDB were counted differently"
    );
    assert!(on_embedded.write_units() > 0 && on_embedded.read_units() > 0);
    let per_point = on_embedded.write_units() as f64 / points as f64;
    assert!(
        per_point <= WRU_PER_POINT_BUDGET,
        "logging {points} points cost {} WRU, {per_point:.4} a point, over the budget of \
         {WRU_PER_POINT_BUDGET}: {:#?}",
        on_embedded.write_units(),
        on_embedded.by_operation
    );
}
