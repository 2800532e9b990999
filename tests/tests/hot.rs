//! Hot batches (`series::hot`): a batch for a run's known series is one write,
//! readable at once, and settled into the run's summaries and the team's usage by a
//! round, exactly once whatever fails: at once in a process that is its store's only
//! writer, a minute or two behind the writes on Lambda.

use serde_json::json;
use sextant_domain::runs;
use sextant_domain::series::batch::{self, LogBatch, LogOutcome};
use sextant_domain::series::{SeriesError, hot};
use sextant_tests::faults::{Op, Timing};
use sextant_tests::series_bench::Bench;
use time::Duration;

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

/// Batch `sequence` of sender session `session`: `n` points of `series` from step
/// `from`.
fn numbered(session: &str, sequence: i64, series: &str, from: i64, n: i64) -> LogBatch {
    let steps: Vec<i64> = (from..from + n).collect();
    serde_json::from_value(json!({
        "batch_id": format!("{session}-{sequence}"),
        "session": session,
        "sequence": sequence,
        "series": {series: {"steps": steps, "values": vec![0.5; n as usize]}},
    }))
    .expect("a valid batch")
}

async fn try_log(bench: &Bench, batch: LogBatch) -> Result<LogOutcome, SeriesError> {
    let state = &bench.state;
    batch::log(
        &state.store,
        state.intake(),
        bench.tenant(),
        bench.run,
        batch,
    )
    .await
}

/// What the run's summary of `loss` counts, and what the team's usage counts.
async fn counted(bench: &Bench) -> (u64, u64) {
    let billed = bench.billed_points(bench.began).await as u64;
    (bench.summary("loss").await.count, billed)
}

async fn chart_steps(bench: &Bench) -> Vec<i64> {
    bench.downsampled(1_000).await.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_for_known_series_is_one_hot_item_settled_by_its_own_write() {
    let bench = Bench::embedded(false).await;
    // The first batch starts the series: it is committed whole, with the series' name.
    bench.log_batch(batch("first", 0, 10)).await;
    assert_eq!(bench.items(&["h#"]).await, 0);
    let outcome = bench.log_batch(batch("second", 10, 10)).await;
    assert_eq!(outcome.accepted, 10);
    assert_eq!(bench.items(&["h#"]).await, 1);
    assert_eq!(counted(&bench).await, (20, 20));
    assert_eq!(bench.steps().await, (0..20).collect::<Vec<_>>());

    // A retry stores and counts nothing, and answers as the first attempt did.
    let again = bench.log_batch(batch("second", 10, 10)).await;
    assert_eq!(again, outcome);
    assert_eq!(bench.items(&["h#"]).await, 1);
    assert_eq!(counted(&bench).await, (20, 20));
}

/// A minute of batches on Lambda, then two minutes of quiet: a round would settle all
/// of them.
async fn minute_of_batches() -> Bench {
    let bench = Bench::embedded(true).await;
    bench.log_batch(batch("first", 0, 10)).await;
    for i in 1..=12 {
        bench.clock.advance(Duration::seconds(5));
        bench.log_batch(batch(&format!("b{i}"), i * 10, 10)).await;
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
    probe.settle_hot().await.expect("settled");
    let during: Vec<(Op, u64)> = ops
        .iter()
        .zip(before)
        .map(|(&op, before)| (op, probe.faults.calls(op) - before))
        .collect();
    assert_eq!(counted(&probe).await, (130, 130));

    let all: Vec<i64> = (0..130).collect();
    let mut cases = 0;
    for (op, count) in during {
        for nth in 1..=count as u32 {
            for timing in [Timing::Before, Timing::After] {
                let case = format!("{op:?} #{nth} {timing:?}");
                let bench = minute_of_batches().await;
                bench.faults.fail(op, nth, timing);
                let outcome = bench.settle_hot().await;
                assert_eq!(bench.faults.disarm(), 0, "{case}: the fault strikes");
                cases += 1;
                let (settled, billed) = counted(&bench).await;
                assert!(
                    outcome.is_err() || settled == 130,
                    "{case}: {outcome:?} with {settled} counted"
                );
                assert_eq!(billed, settled, "{case}");
                assert_eq!(bench.steps().await, all, "{case}");
                assert_eq!(chart_steps(&bench).await, all, "{case}");

                bench.settle_hot().await.expect("settled");
                assert_eq!(counted(&bench).await, (130, 130), "{case}");
                assert_eq!(bench.steps().await, all, "{case}");
                // An hour on, what the failed round left is swept.
                bench.clock.advance(Duration::minutes(61));
                assert_eq!(bench.steps().await, all, "{case}");
                assert_eq!(bench.items(&["p#"]).await, 0, "{case}: a marker is left");
            }
        }
    }
    // Two loads, a query, a marker, the chunks, the commit: each twice.
    assert!(cases >= 12, "{cases} cases");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_that_stopped_before_settling_settles_when_it_starts_again() {
    let bench = Bench::embedded(false).await;
    bench.log_batch(batch("first", 0, 10)).await;
    // The batch's own write is the first transaction; its round's is the second.
    bench.faults.fail(Op::Transact, 2, Timing::Before);
    bench.log_batch(batch("second", 10, 10)).await;
    assert_eq!(bench.faults.disarm(), 0, "the fault strikes");
    assert_eq!(counted(&bench).await, (10, 10));

    let looked = hot::settle_noted(&bench.state.store, &bench.state.marks, bench.state.now())
        .await
        .expect("settled");
    assert_eq!(looked, 1);
    assert_eq!(counted(&bench).await, (20, 20));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_lambda_points_read_at_once_and_count_a_minute_or_two_behind() {
    let bench = minute_of_batches().await;
    // A minute of batches: all readable, none settled yet.
    assert_eq!(bench.steps().await, (0..130).collect::<Vec<_>>());
    assert_eq!(chart_steps(&bench).await, (0..130).collect::<Vec<_>>());
    assert_eq!(counted(&bench).await, (10, 10));

    // A write two minutes on settles what arrived over a minute before it.
    bench.log_batch(batch("later", 130, 10)).await;
    assert_eq!(counted(&bench).await, (130, 130));
    assert_eq!(bench.steps().await, (0..140).collect::<Vec<_>>());

    // The hourly run settles the rest, then folds.
    bench.clock.advance(Duration::minutes(2));
    bench.settle().await;
    assert_eq!(counted(&bench).await, (140, 140));
    assert_eq!(bench.steps().await, (0..140).collect::<Vec<_>>());
    assert!(bench.record().await.settled_through > 0);
    assert!(bench.blocks().await > 0, "folded too");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chart_of_a_finished_folded_run_reads_its_blocks_and_no_items() {
    let bench = Bench::embedded(false).await;
    for i in 0..5 {
        bench.log_batch(batch(&format!("b{i}"), i * 10, 10)).await;
    }
    let end = runs::RunChanges {
        status: Some(runs::Status::Succeeded),
        ..runs::RunChanges::default()
    };
    let timeout = bench.state.settings.heartbeat_timeout;
    runs::patch(&bench.state.store, timeout, bench.tenant(), bench.run, end)
        .await
        .expect("the run ends");
    bench.clock.advance(Duration::minutes(3));
    bench.settle().await;
    assert!(bench.summary("loss").await.folded);

    let queries = bench.faults.calls(Op::Query);
    assert_eq!(chart_steps(&bench).await, (0..50).collect::<Vec<_>>());
    assert_eq!(bench.steps().await, (0..50).collect::<Vec<_>>());
    assert_eq!(
        bench.faults.calls(Op::Query) - queries,
        0,
        "neither chunk items nor hot batches are looked for"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sessions_batches_leave_one_record_and_each_number_is_stored_once() {
    let bench = Bench::embedded(false).await;
    // Batch 1 starts the series (committed whole), the others are hot.
    for n in 1..=5 {
        bench
            .log_batch(numbered("s1", n, "loss", (n - 1) * 10, 10))
            .await;
    }
    assert_eq!(bench.items(&["b#"]).await, 0);
    assert_eq!(bench.items(&["q#"]).await, 1);
    assert_eq!(counted(&bench).await, (50, 50));

    // The last batch's retry answers as its first attempt did.
    let retry = bench.log_batch(numbered("s1", 5, "loss", 40, 10)).await;
    assert_eq!(retry.accepted, 10);
    // An attempt that lost to its retry and arrives after later batches stores
    // nothing, whether its series is known (a hot write) or not (a whole commit).
    for late in [
        numbered("s1", 3, "loss", 20, 10),
        numbered("s1", 1, "other", 0, 10),
    ] {
        match try_log(&bench, late).await {
            Err(SeriesError::SequenceBehind { sent, committed: 5 }) => {
                assert!(sent < 5);
            }
            other => panic!("a late batch answered {other:?}"),
        }
    }
    assert!(!bench.record().await.series.contains_key("other"));
    // The last number with other points is another batch under a used name.
    assert!(matches!(
        try_log(&bench, numbered("s1", 5, "loss", 1_000, 10)).await,
        Err(SeriesError::BatchIdReused)
    ));
    assert_eq!(counted(&bench).await, (50, 50));

    // A number skipped (a batch the server refused for good, set aside by the SDK) is
    // not waited for, and another session of the run counts on its own.
    bench.log_batch(numbered("s1", 7, "loss", 50, 10)).await;
    bench.log_batch(numbered("s2", 1, "loss", 60, 10)).await;
    assert_eq!(bench.items(&["q#"]).await, 2);
    assert_eq!(counted(&bench).await, (70, 70));
    assert_eq!(bench.steps().await, (0..70).collect::<Vec<_>>());
}

/// A hot write whose transaction applied but whose answer was lost: the SDK retries
/// the same number, which answers as stored and counts nothing twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_numbered_batch_whose_answer_was_lost_is_retried_and_counted_once() {
    let bench = Bench::embedded(false).await;
    bench.log_batch(numbered("s", 1, "loss", 0, 10)).await;
    bench.faults.fail(Op::Transact, 1, Timing::After);
    assert!(
        try_log(&bench, numbered("s", 2, "loss", 10, 10))
            .await
            .is_err()
    );
    assert_eq!(bench.faults.disarm(), 0, "the fault strikes");
    let retry = bench.log_batch(numbered("s", 2, "loss", 10, 10)).await;
    assert_eq!(retry.accepted, 10);
    bench.log_batch(numbered("s", 3, "loss", 20, 10)).await;
    bench.settle_hot().await.expect("settled");
    assert_eq!(counted(&bench).await, (30, 30));
    assert_eq!(bench.steps().await, (0..30).collect::<Vec<_>>());
}
