//! DynamoDB request units are counted from item sizes (`storage::capacity`), so one
//! workload must cost exactly the same on DynamoDB (moto) as on the embedded store:
//! the embedded figures of `benches/cost.rs` stand for what a deployment is billed.
//! And logging must stay within a write budget per point, so that a change making
//! every batch dearer fails here rather than on the AWS bill.

use std::sync::Arc;

use sextant_shared::accounts::{self, DisplayName, Email};
use sextant_shared::auth::jwt::Keyring;
use sextant_shared::auth::password::Password;
use sextant_shared::clock::ManualClock;
use sextant_shared::projects::{self, ProjectName};
use sextant_shared::runs::{self, NewRun};
use sextant_shared::series::batch::{self, LogBatch};
use sextant_shared::series::{self, Points, StepRange, downsample};
use sextant_shared::state::{AppState, Settings};
use sextant_shared::storage::Storage;
use sextant_shared::storage::capacity::{KvUsage, MeteredKv};
use sextant_shared::storage::embedded::EmbeddedKv;
use sextant_tests::workload::{batches, points_in, workload};
use sextant_tests::{fresh_aws_storage, local_blobs_with_routes, unique};

/// Steps of the one run logged: 2,000 steps of the standard workload, about 8,000
/// points, in batches of 250 steps (about 1,000 points, the SDK's usual size).
const STEPS: usize = 2_000;
const WINDOW: i64 = 250;

/// Write units per logged point at about 1,000 points a batch, creating the run
/// included. Measured: 0.0244 (196 WRU for 8,033 points in 9 batches: each batch's
/// chunks, its pending marker, and a commit that rewrites the run record and two
/// counters, twice over as a transaction). The budget leaves about 30% for growth;
/// more than that is a regression to explain, or a budget to raise on purpose.
const WRU_PER_POINT_BUDGET: f64 = 0.032;

/// Logs the workload, retries its last batch, and reads one series back as a chart
/// and exactly; answers what that cost, from the first run on.
async fn workload_cost(storage: Storage) -> (KvUsage, u64) {
    let kv = Arc::new(MeteredKv::new(storage.kv));
    let keyring = Keyring::new(&[("units".to_owned(), vec![5; 32])]).expect("keyring");
    // A clock that stands still, so timestamps stored in items have the same length on
    // both stores; sign-up reads the system clock, so it is not counted.
    let clock = ManualClock::starting_at(time::macros::datetime!(2026-11-05 13:20 UTC));
    let state = AppState::new(
        Storage {
            kv: kv.clone(),
            blobs: storage.blobs,
        },
        keyring,
        Settings::new(None),
    )
    .with_clock(Arc::new(clock));
    let signed_up = accounts::signup(
        &state,
        DisplayName::parse("team", "Units").unwrap(),
        Email::parse(&format!("{}@example.com", unique("units"))).unwrap(),
        Password::parse("a long enough password".into()).unwrap(),
    )
    .await
    .expect("signup");
    let caller = accounts::authenticate(&state, &signed_up.api_key)
        .await
        .expect("authenticate");
    let project = projects::create(&state, &caller, ProjectName::parse("units").unwrap())
        .await
        .expect("project");
    kv.take();

    let run = runs::create(&state, &caller, &project, NewRun::default())
        .await
        .expect("run")
        .id;
    let workload = workload(1, STEPS);
    let bodies = batches(&workload, 0, WINDOW);
    let parse = |body: &[u8]| serde_json::from_slice::<LogBatch>(body).expect("a batch");
    for body in &bodies {
        batch::log(&state, &caller.tenant, run, parse(body))
            .await
            .expect("logged");
    }
    // A retry is answered from the batch's record and stores nothing.
    let last = bodies.last().expect("a batch");
    batch::log(&state, &caller.tenant, run, parse(last))
        .await
        .expect("retried");

    let record = runs::load(&state, &caller.tenant, run)
        .await
        .unwrap()
        .record;
    let summary = &record.series["train/loss"];
    let read = |limit| {
        series::read::<Points>(
            &state,
            &caller.tenant,
            run,
            "train/loss",
            summary,
            StepRange::default(),
            limit,
        )
    };
    let chart = downsample::min_max(&read(None).await.unwrap().points, 100);
    assert!(chart.len() <= 100);
    let exact = read(Some(series::EXACT_PAGE_POINTS)).await.unwrap();
    assert_eq!(exact.points.len(), STEPS);
    (kv.take(), points_in(&workload))
}

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
