//! A log batch committed whole (one that starts a series, `batch::log_claiming`)
//! becomes readable in the same transaction that counts it: an attempt that dies
//! between writing its chunks and committing leaves nothing readable or billable, its
//! retry counts once, and its leftover chunks are swept once no attempt could still
//! commit them.

use std::sync::Arc;

use serde_json::json;
use sextant_domain::ids::RunId;
use sextant_domain::metering;
use sextant_domain::runs;
use sextant_domain::series::batch::{self, LogBatch};
use sextant_domain::series::{self, Points};
use sextant_domain::tenancy::Tenant;
use sextant_edge::state::AppState;
use sextant_storage::Storage;
use sextant_storage::clock::ManualClock;
use sextant_storage::kv::{KvStore, Query};
use sextant_storage_local::EmbeddedKv;
use sextant_tests::faults::{Faults, Op, Timing};
use sextant_tests::{local_blobs_with_routes, signed_up_run, state_on};
use time::macros::datetime;
use time::{Duration, OffsetDateTime};

const START: OffsetDateTime = datetime!(2026-11-05 13:00 UTC);

/// A batch of `loss` at `steps` that also starts a series of its own (named after the
/// batch), so that it is committed whole.
fn batch(id: &str, steps: std::ops::Range<i64>) -> LogBatch {
    let steps: Vec<i64> = steps.collect();
    serde_json::from_value(json!({
        "batch_id": id,
        "series": {
            "loss": {"steps": steps, "values": vec![0.25; steps.len()]},
            id: {"steps": [0], "values": [1.0]},
        },
    }))
    .expect("a valid batch")
}

async fn readable_steps(state: &AppState, tenant: &Tenant, run: RunId) -> Vec<i64> {
    let record = runs::load(&state.store, tenant, run)
        .await
        .expect("the run")
        .record;
    let page: series::SeriesPage<Points> = series::read(
        &state.store,
        tenant,
        &record,
        "loss",
        series::Window::default(),
    )
    .await
    .expect("a read");
    page.points.steps
}

/// Chunk items of the run in the store, committed or not.
async fn chunk_items(kv: &dyn KvStore, tenant: &Tenant, run: RunId) -> usize {
    let query = Query::partition(runs::data_partition(tenant, run)).prefix("c#");
    kv.query(query).await.expect("a query").items.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_attempt_that_dies_before_committing_leaves_nothing_readable_or_billed() {
    let (blobs, dir) = local_blobs_with_routes().await;
    let kv: Arc<dyn KvStore> =
        Arc::new(EmbeddedKv::open(&dir.path().join("store.redb")).expect("store"));
    let faults = Faults::new();
    let clock = Arc::new(ManualClock::starting_at(START));
    let state = state_on(Storage {
        kv: faults.kv(Arc::clone(&kv)),
        blobs,
    })
    .with_clock(clock.clone());
    let (caller, run) = signed_up_run(&state).await;
    let tenant = &caller.tenant;

    batch::log(
        &state.store,
        state.intake(),
        tenant,
        run,
        batch("first", 0..10),
    )
    .await
    .expect("the first batch");
    // The second batch's chunks are written, then its commit fails before applying,
    // and the client gives up: its steps overlap the first batch's, so a read would
    // show them if it did not skip uncommitted chunks.
    faults.fail_next(Op::Transact, Timing::Before);
    assert!(
        batch::log(
            &state.store,
            state.intake(),
            tenant,
            run,
            batch("lost", 5..15)
        )
        .await
        .is_err()
    );
    assert_eq!(chunk_items(&*kv, tenant, run).await, 4);
    assert_eq!(
        readable_steps(&state, tenant, run).await,
        (0..10).collect::<Vec<_>>()
    );

    // Another batch that dies the same way is retried and counted once.
    faults.fail_next(Op::Transact, Timing::Before);
    assert!(
        batch::log(
            &state.store,
            state.intake(),
            tenant,
            run,
            batch("retried", 20..25)
        )
        .await
        .is_err()
    );
    let retried = batch::log(
        &state.store,
        state.intake(),
        tenant,
        run,
        batch("retried", 20..25),
    )
    .await
    .expect("the retry");
    assert_eq!(retried.accepted, 6);
    let mut expected: Vec<i64> = (0..10).collect();
    expected.extend(20..25);
    assert_eq!(readable_steps(&state, tenant, run).await, expected);

    // An hour on, no attempt could still commit the lost chunks: a read sweeps them.
    clock.advance(Duration::minutes(90));
    assert_eq!(readable_steps(&state, tenant, run).await, expected);
    assert_eq!(chunk_items(&*kv, tenant, run).await, 4);
    assert!(
        kv.query(Query::partition(runs::data_partition(tenant, run)).prefix("p#"))
            .await
            .unwrap()
            .items
            .is_empty(),
        "no marker is left"
    );

    sextant_cli::metering(&state)
        .roll_up_hour(START)
        .await
        .unwrap();
    let hours = metering::hourly(&state.store, tenant, START, START + Duration::HOUR)
        .await
        .unwrap();
    assert_eq!(hours[0].points, 17);
}
