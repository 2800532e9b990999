//! Hot batches (`series::hot`): a batch for a run's known series is one write,
//! readable at once, and settled into the run's summaries and the team's usage by a
//! round, exactly once whatever fails: at once in a process that is its store's only
//! writer, a minute or two behind the writes on Lambda.

use std::sync::Arc;

use serde_json::json;
use sextant_domain::credentials::Caller;
use sextant_domain::ids::RunId;
use sextant_domain::runs::{self, RunRecord};
use sextant_domain::series::batch::{self, LogBatch};
use sextant_domain::series::{self, Points, StepRange, Window, hot};
use sextant_domain::tenancy::Tenant;
use sextant_domain::usage;
use sextant_edge::state::AppState;
use sextant_storage::Storage;
use sextant_storage::clock::{Clock, ManualClock};
use sextant_storage::kv::{KvStore, Query};
use sextant_tests::faults::{Faults, Op, Timing};
use sextant_tests::{local_blobs_with_routes, signed_up_run, state_on};
use time::macros::datetime;
use time::{Duration, OffsetDateTime};

const START: OffsetDateTime = datetime!(2026-11-05 13:00 UTC);

/// A run of a new team on the embedded store, with a clock the test moves and calls
/// it can make fail.
struct Bench {
    state: AppState,
    clock: Arc<ManualClock>,
    faults: Arc<Faults>,
    kv: Arc<dyn KvStore>,
    caller: Caller,
    run: RunId,
    _dir: tempfile::TempDir,
}

/// `deferred`: settled as on Lambda, behind the writes.
async fn bench(deferred: bool) -> Bench {
    let (blobs, dir) = local_blobs_with_routes().await;
    let kv: Arc<dyn KvStore> = Arc::new(
        sextant_storage_local::EmbeddedKv::open(&dir.path().join("store.redb")).expect("store"),
    );
    let faults = Faults::new();
    let clock = Arc::new(ManualClock::starting_at(START));
    let mut state = state_on(Storage {
        kv: faults.kv(Arc::clone(&kv)),
        blobs,
    })
    .with_clock(clock.clone());
    if deferred {
        state = state.deferring_settlement();
    }
    let (caller, run) = signed_up_run(&state).await;
    Bench {
        state,
        clock,
        faults,
        kv,
        caller,
        run,
        _dir: dir,
    }
}

/// `n` points of `loss` from step `from`, with the value of each step.
fn batch(id: &str, from: i64, n: i64) -> LogBatch {
    let steps: Vec<i64> = (from..from + n).collect();
    let values: Vec<f64> = steps.iter().map(|&s| 1.0 / (1.0 + s as f64)).collect();
    serde_json::from_value(json!({
        "batch_id": id,
        "series": {"loss": {"steps": steps, "values": values}},
    }))
    .expect("a valid batch")
}

impl Bench {
    fn tenant(&self) -> &Tenant {
        &self.caller.tenant
    }

    async fn log(&self, id: &str, from: i64, n: i64) -> batch::LogOutcome {
        batch::log(
            &self.state.store,
            self.state.intake(),
            self.tenant(),
            self.run,
            batch(id, from, n),
        )
        .await
        .expect("a stored batch")
    }

    async fn record(&self) -> RunRecord {
        runs::load(&self.state.store, self.tenant(), self.run)
            .await
            .expect("the run")
            .record
    }

    /// What the run's summary of `loss` counts.
    async fn counted(&self) -> u64 {
        self.record().await.series["loss"].count
    }

    async fn steps(&self) -> Vec<i64> {
        let page: series::SeriesPage<Points> = series::read(
            &self.state.store,
            self.tenant(),
            &self.record().await,
            "loss",
            Window::default(),
        )
        .await
        .expect("a read");
        page.points.steps
    }

    async fn chart_steps(&self) -> Vec<i64> {
        let (points, _) = series::read_downsampled(
            &self.state.store,
            self.tenant(),
            &self.record().await,
            "loss",
            StepRange::default(),
            1_000,
        )
        .await
        .expect("a chart");
        points.steps
    }

    /// Points the team's usage counts in the test's hour.
    async fn billed(&self) -> u64 {
        let key = usage::points_key(self.tenant(), START);
        let points = self.kv.get(&key).await.expect("a read");
        points.and_then(|item| item.n(usage::POINTS)).unwrap_or(0) as u64
    }

    async fn hot_items(&self) -> usize {
        let query = Query::partition(runs::data_partition(self.tenant(), self.run)).prefix("h#");
        self.kv.query(query).await.expect("a query").items.len()
    }

    /// What the hourly run does for the run before it folds it.
    async fn settle(&self) {
        let through = self.clock.now() - hot::SETTLE_AFTER;
        hot::settle(
            &self.state.store,
            self.state.meter(),
            self.tenant(),
            self.run,
            i64::try_from(through.unix_timestamp_nanos()).unwrap(),
        )
        .await
        .expect("settled");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_for_known_series_is_one_hot_item_settled_by_its_own_write() {
    let bench = bench(false).await;
    // The first batch starts the series: it is committed whole, with the series' name.
    bench.log("first", 0, 10).await;
    assert_eq!(bench.hot_items().await, 0);
    let outcome = bench.log("second", 10, 10).await;
    assert_eq!(outcome.accepted, 10);
    assert_eq!(bench.hot_items().await, 1);
    assert_eq!(bench.counted().await, 20);
    assert_eq!(bench.billed().await, 20);
    assert_eq!(bench.steps().await, (0..20).collect::<Vec<_>>());

    // A retry stores and counts nothing, and answers as the first attempt did.
    let again = bench.log("second", 10, 10).await;
    assert_eq!(again, outcome);
    assert_eq!(bench.hot_items().await, 1);
    assert_eq!((bench.counted().await, bench.billed().await), (20, 20));
}

/// A minute of batches on Lambda, then two minutes of quiet: a round would settle all
/// of them.
async fn minute_of_batches() -> Bench {
    let bench = bench(true).await;
    bench.log("first", 0, 10).await;
    for i in 1..=12 {
        bench.clock.advance(Duration::seconds(5));
        bench.log(&format!("b{i}"), i * 10, 10).await;
    }
    bench.clock.advance(Duration::minutes(2));
    bench
}

/// Every store call a round makes, failed before and after it applies: the points
/// read the same throughout, and the next round counts each of them once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_round_that_fails_at_any_step_is_done_again_by_the_next_and_counts_once() {
    let ops = [Op::Get, Op::Query, Op::Put, Op::BatchWrite, Op::Transact];
    let probe = minute_of_batches().await;
    let before = ops.map(|op| probe.faults.calls(op));
    probe.settle().await;
    let during: Vec<(Op, u64)> = ops
        .iter()
        .zip(before)
        .map(|(&op, before)| (op, probe.faults.calls(op) - before))
        .collect();
    assert_eq!((probe.counted().await, probe.billed().await), (130, 130));

    let all: Vec<i64> = (0..130).collect();
    let mut cases = 0;
    for (op, count) in during {
        for nth in 1..=count as u32 {
            for timing in [Timing::Before, Timing::After] {
                let case = format!("{op:?} #{nth} {timing:?}");
                let bench = minute_of_batches().await;
                bench.faults.fail(op, nth, timing);
                let through = bench.clock.now() - hot::SETTLE_AFTER;
                let outcome = hot::settle(
                    &bench.state.store,
                    bench.state.meter(),
                    bench.tenant(),
                    bench.run,
                    i64::try_from(through.unix_timestamp_nanos()).unwrap(),
                )
                .await;
                assert_eq!(bench.faults.disarm(), 0, "{case}: the fault strikes");
                cases += 1;
                let settled = bench.counted().await;
                assert!(
                    outcome.is_err() || settled == 130,
                    "{case}: {outcome:?} with {settled} counted"
                );
                assert_eq!(bench.billed().await, settled, "{case}");
                assert_eq!(bench.steps().await, all, "{case}");
                assert_eq!(bench.chart_steps().await, all, "{case}");

                bench.settle().await;
                assert_eq!(
                    (bench.counted().await, bench.billed().await),
                    (130, 130),
                    "{case}"
                );
                assert_eq!(bench.steps().await, all, "{case}");
                // An hour on, what the failed round left is swept.
                bench.clock.advance(Duration::minutes(61));
                assert_eq!(bench.steps().await, all, "{case}");
                let items = Query::partition(runs::data_partition(bench.tenant(), bench.run));
                let left = bench.kv.query(items.prefix("p#")).await.unwrap().items;
                assert!(left.is_empty(), "{case}: a marker is left");
            }
        }
    }
    // Two loads, a query, a marker, the chunks, the commit: each twice.
    assert!(cases >= 12, "{cases} cases");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_that_stopped_before_settling_settles_when_it_starts_again() {
    let bench = bench(false).await;
    bench.log("first", 0, 10).await;
    // The batch's own write is the first transaction; its round's is the second.
    bench.faults.fail(Op::Transact, 2, Timing::Before);
    bench.log("second", 10, 10).await;
    bench.faults.disarm();
    assert_eq!(bench.counted().await, 10);

    let looked = hot::settle_noted(&bench.state.store, &bench.state.marks, bench.clock.now())
        .await
        .expect("settled");
    assert_eq!(looked, 1);
    assert_eq!((bench.counted().await, bench.billed().await), (20, 20));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_lambda_points_read_at_once_and_count_a_minute_or_two_behind() {
    let bench = minute_of_batches().await;
    // A minute of batches: all readable, none settled yet.
    assert_eq!(bench.steps().await, (0..130).collect::<Vec<_>>());
    assert_eq!(bench.chart_steps().await, (0..130).collect::<Vec<_>>());
    assert_eq!((bench.counted().await, bench.billed().await), (10, 10));

    // A write two minutes on settles what arrived over a minute before it.
    bench.log("later", 130, 10).await;
    assert_eq!((bench.counted().await, bench.billed().await), (130, 130));
    assert_eq!(bench.steps().await, (0..140).collect::<Vec<_>>());

    // The hourly run settles the rest.
    bench.clock.advance(Duration::minutes(2));
    bench.settle().await;
    assert_eq!((bench.counted().await, bench.billed().await), (140, 140));
    assert_eq!(bench.steps().await, (0..140).collect::<Vec<_>>());
    let record = bench.record().await;
    assert!(record.settled_through > 0);
}
