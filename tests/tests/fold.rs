//! The fold moves a run's chunk items into blocks in the blob store: every read answers
//! the same points in the same order before, during and after it, points are billed
//! once whatever happens to it, the storage the run is billed for shrinks, and a
//! crash at any step of it leaves nothing lost, doubled or orphaned for good. On both
//! storage backends.

use serde_json::{Value, json};
use sextant_domain::deletion;
use sextant_domain::runs;
use sextant_domain::runs::RunRecord;
use sextant_domain::series::batch::{self, LogBatch};
use sextant_domain::series::fold::{self};
use sextant_domain::series::{self, Place, Points, StepRange, Window};
use sextant_storage::clock::Clock;
use sextant_tests::faults::{Faults, Op, Timing};
use sextant_tests::series_bench::Bench;
use sextant_tests::{aws_cases, cases, signed_up_run};
use time::Duration;

async fn embedded() -> Bench {
    Bench::embedded(false).await
}

async fn on_aws() -> Bench {
    Bench::on_aws().await
}

/// A batch of `loss` at steps `from..from + n` stepping back every seventh point (so
/// chunks overlap and steps repeat), a NaN now and then, and a line of text per point.
fn batch(id: &str, from: i64, n: i64) -> LogBatch {
    let steps: Vec<i64> = (from..from + n)
        .map(|i| i - (i % 7 == 0) as i64 * 3)
        .collect();
    let values: Vec<Value> = steps
        .iter()
        .map(|&s| {
            if s % 11 == 0 {
                json!("NaN")
            } else {
                json!(1.0 / (1.0 + s as f64))
            }
        })
        .collect();
    let lines: Vec<Value> = steps
        .iter()
        .map(|s| json!({"step": s, "text": format!("line {s} of {id}")}))
        .collect();
    serde_json::from_value(json!({
        "batch_id": id,
        "series": {"loss": {"steps": steps, "values": values}},
        "text": {"stdout": lines},
    }))
    .expect("a valid batch")
}

/// The smallest and largest value of a read, which a chart must keep.
fn extremes(points: &Points) -> (f64, f64) {
    let values = points.values.iter().copied();
    (
        values.clone().fold(f64::INFINITY, f64::min),
        values.fold(f64::NEG_INFINITY, f64::max),
    )
}

async fn a_fold_moves_every_point_into_blocks_and_reads_answer_the_same(bench: Bench) {
    let logged_at = bench.clock.now();
    for i in 0..30 {
        bench
            .log_and_wait(batch(&format!("b{i}"), i * 20, 20))
            .await;
    }
    let points = bench.points().await;
    let lines = bench.lines().await;
    let downsampled = bench.downsampled(40).await;
    let bytes_before = bench.stored_bytes().await;
    let items_before = bench.chunk_items().await;
    assert_eq!(points.len(), 600);
    let before_fold = bench.record().await;
    let record_bytes = || async {
        let record = runs::load(&bench.state.store, bench.tenant(), bench.run)
            .await
            .unwrap()
            .record;
        serde_json::to_string(&record).unwrap().len()
    };
    let record_before = record_bytes().await;

    // Batches of the last two minutes may still be committing: they wait.
    let report = bench.fold().await;
    assert_eq!(report.points, 2 * (600 - 24 * 20), "{report:?}");
    bench.clock.advance(Duration::minutes(3));
    let report = bench.fold().await;
    assert_eq!(report.points, 2 * 24 * 20, "{report:?}");
    assert!(report.more, "the items it sealed are left to delete");
    // Every batch rewrites the run record: blocks are named in fold items of their own,
    // and the record only gains a flag a series (and a few digits of stored bytes).
    let flags = 2 * r#","folded":true"#.len();
    assert!(record_bytes().await <= record_before + flags + 2);
    // A block a series a fold, and each fold's overview of the numbers.
    assert_eq!(bench.blocks().await, 6);

    assert_eq!(bench.points().await, points);
    assert_eq!(bench.lines().await, lines);
    assert_eq!(bench.downsampled(40).await, downsampled);
    // A read that loaded the record before the fold still sees every point once.
    assert_eq!(bench.points_with(&before_fold).await, points);
    assert!(
        bench.stored_bytes().await < bytes_before / 2,
        "blocks store less than items"
    );
    assert_eq!(
        bench.chunk_items().await,
        items_before,
        "sealed items stay a while"
    );

    // Points logged since are read after the blocks'.
    bench.log_and_wait(batch("late", 2_000, 20)).await;
    let mut expected = points.clone();
    expected.extend(bench.points().await.split_off(600));
    assert_eq!(bench.points().await.len(), 620);
    assert_eq!(bench.points().await, expected);

    // Once no read can have begun before the fold, its items go.
    bench.clock.advance(Duration::minutes(16));
    let report = bench.fold().await;
    assert_eq!(report.items_deleted, items_before, "{report:?}");
    assert_eq!(report.points, 40);
    bench.clock.advance(Duration::minutes(16));
    let report = bench.fold().await;
    assert_eq!(report.points, 0);
    assert!(!report.more, "{report:?}");
    assert_eq!(bench.chunk_items().await, 0);
    assert_eq!(bench.points().await, expected);
    assert_eq!(bench.lines().await.len(), 620);

    // Folding billed nothing: every point was counted once, when its batch committed.
    assert_eq!(bench.billed_points(logged_at).await, 1_240);
    // The run is billed for the bytes of the blocks and overview its record names,
    // now that its items are gone.
    let record = runs::load(&bench.state.store, bench.tenant(), bench.run)
        .await
        .unwrap()
        .record;
    let folds = fold::all_folded(&bench.state.store, bench.tenant(), bench.run)
        .await
        .unwrap();
    let named: u64 = folds
        .values()
        .flat_map(|folded| folded.blocks.iter().chain(&folded.overview))
        .map(|block| block.bytes)
        .sum();
    assert_eq!(record.stored_bytes, named);

    // Deleting the run deletes its blocks.
    deletion::delete_run(&bench.state.store, bench.tenant(), bench.run)
        .await
        .unwrap();
    assert_eq!(bench.blocks().await, 0);
}

cases!(embedded, super::embedded; a_fold_moves_every_point_into_blocks_and_reads_answer_the_same);
aws_cases!(dynamodb, super::on_aws; a_fold_moves_every_point_into_blocks_and_reads_answer_the_same);

/// Every call a fold makes, failed before and after it reaches the store: the fold
/// that fails and the one after it leave the points as they were, billed once, and
/// every block that no record names goes within the hour after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fold_that_fails_at_any_step_loses_nothing_and_leaves_nothing_behind() {
    let probe = embedded().await;
    for i in 0..6 {
        probe
            .log_and_wait(batch(&format!("b{i}"), i * 20, 20))
            .await;
    }
    probe.clock.advance(Duration::minutes(3));
    let calls = |faults: &Faults| {
        [
            Op::Get,
            Op::Query,
            Op::Transact,
            Op::BatchWrite,
            Op::BlobPut,
            Op::BlobList,
        ]
        .map(|op| (op, faults.calls(op)))
    };
    let before = calls(&probe.faults);
    probe.fold().await;
    probe.clock.advance(Duration::minutes(16));
    probe.fold().await;
    let during: Vec<(Op, u64)> = calls(&probe.faults)
        .into_iter()
        .zip(before)
        .map(|((op, after), (_, before))| (op, after - before))
        .collect();

    let mut cases = 0;
    for (op, count) in during {
        for nth in 1..=count as u32 {
            for timing in [Timing::Before, Timing::After] {
                let bench = embedded().await;
                for i in 0..6 {
                    bench
                        .log_and_wait(batch(&format!("b{i}"), i * 20, 20))
                        .await;
                }
                let points = bench.points().await;
                let logged_at = bench.clock.now();
                bench.clock.advance(Duration::minutes(3));
                bench.faults.fail(op, nth, timing);
                // The probe's calls came from two folds 16 minutes apart.
                let mut outcome = fold::fold(&bench.state.store, bench.tenant(), bench.run).await;
                bench.clock.advance(Duration::minutes(16));
                if outcome.is_ok() {
                    outcome = fold::fold(&bench.state.store, bench.tenant(), bench.run).await;
                }
                bench.faults.disarm();
                let case = format!("{op:?} #{nth} {timing:?}: {outcome:?}");
                assert!(outcome.is_err(), "{case}: the fault strikes");
                cases += 1;
                assert_eq!(bench.points().await, points, "{case}");
                bench.clock.advance(Duration::minutes(16));
                bench.fold().await;
                assert_eq!(bench.points().await, points, "{case}");
                bench.clock.advance(Duration::minutes(61));
                bench.settle().await;
                assert_eq!(bench.points().await, points, "{case}");
                assert_eq!(bench.chunk_items().await, 0, "{case}");
                assert_eq!(
                    bench.blocks().await,
                    3,
                    "{case}: one block a series and the overview"
                );
                assert_eq!(bench.billed_points(logged_at).await, 240, "{case}");
            }
        }
    }
    // Two loads, three queries, two block writes, a commit, a deletion: each twice.
    assert!(cases >= 18, "{cases} cases");
}

/// The hourly metering run folds every run that logged points in an hour gone by.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hourly_run_folds_the_runs_that_logged() {
    let bench = embedded().await;
    for i in 0..3 {
        bench
            .log_and_wait(batch(&format!("b{i}"), i * 20, 20))
            .await;
    }
    assert!(bench.folded("loss").await.is_none());
    assert!(!bench.summary("loss").await.folded);
    let metering = sextant_cli::metering(&bench.state);
    bench.clock.advance(Duration::hours(2));
    let hour = sextant_metering::MeteringHour::ending_at_or_before(bench.clock.now());
    metering.run(hour).await.expect("a metering run");
    let folded = bench.folded("loss").await.expect("a fold");
    assert_eq!(folded.blocks.iter().map(|b| b.count).sum::<u64>(), 60);
    // It looks again the hour after, to delete the sealed items.
    bench.clock.advance(Duration::hours(2));
    let hour = sextant_metering::MeteringHour::ending_at_or_before(bench.clock.now());
    metering.run(hour).await.expect("a metering run");
    assert_eq!(bench.chunk_items().await, 0);
}

/// A block over a megabyte is read in two ranges, the index and the chunks a read's
/// steps touch; the points come back as they went in, whatever the range.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_block_answers_any_step_range_as_the_items_did() {
    let bench = embedded().await;
    // Values with 52 bits of noise: about 7 bytes a point, 180,000 points.
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    for b in 0..18 {
        let steps: Vec<i64> = (b * 10_000..(b + 1) * 10_000).collect();
        let values: Vec<f64> = steps
            .iter()
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                f64::from_bits((state >> 12) | 0x3FF0_0000_0000_0000)
            })
            .collect();
        let batch: LogBatch = serde_json::from_value(json!({
            "batch_id": format!("big{b}"),
            "series": {"loss": {"steps": steps, "values": values}},
        }))
        .unwrap();
        bench.log_batch(batch).await;
    }
    let ranges = [
        (None, None),
        (Some(12_345), Some(12_400)),
        (Some(31_000), Some(147_000)),
        (Some(179_999), None),
    ];
    let read = |record: RunRecord, (from, to): (Option<i64>, Option<i64>)| {
        let bench = &bench;
        async move {
            let range = StepRange {
                from,
                to,
                after: None,
            };
            let exact: series::SeriesPage<Points> = series::read(
                &bench.state.store,
                bench.tenant(),
                &record,
                "loss",
                Window {
                    range,
                    after: None,
                    limit: None,
                },
            )
            .await
            .unwrap();
            let (downsampled, _) = series::read_downsampled(
                &bench.state.store,
                bench.tenant(),
                &record,
                "loss",
                range,
                100,
            )
            .await
            .unwrap();
            (exact.points, downsampled)
        }
    };
    let mut before = Vec::new();
    for range in ranges {
        before.push(read(bench.record().await, range).await);
    }
    let tiny_chart = |record: RunRecord| {
        let bench = &bench;
        async move {
            series::read_downsampled(
                &bench.state.store,
                bench.tenant(),
                &record,
                "loss",
                StepRange::default(),
                4,
            )
            .await
            .unwrap()
            .0
        }
    };
    let tiny_before = tiny_chart(bench.record().await).await;
    bench.clock.advance(Duration::minutes(3));
    bench.fold().await;
    // Four points of 180,000 come from the overview, and keep the extremes.
    let tiny = tiny_chart(bench.record().await).await;
    assert!(tiny.len() <= 4);
    assert_eq!(extremes(&tiny), extremes(&tiny_before));
    let folded = bench.folded("loss").await.expect("a fold");
    assert!(folded.overview.is_some());
    // Pages of an export fetch the block's chunks a few at a time, and resume right.
    let (mut paged, mut after) = (Vec::new(), None::<Place>);
    loop {
        let page: series::SeriesPage<Points> = series::read(
            &bench.state.store,
            bench.tenant(),
            &bench.record().await,
            "loss",
            Window {
                range: StepRange::default(),
                after: after.as_ref(),
                limit: Some(7_000),
            },
        )
        .await
        .unwrap();
        paged.extend(
            page.points
                .steps
                .iter()
                .zip(&page.points.values)
                .map(|(s, v)| (*s, v.to_bits())),
        );
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    let (all, _) = read(bench.record().await, (None, None)).await;
    let all: Vec<(i64, u64)> = all
        .steps
        .iter()
        .zip(&all.values)
        .map(|(s, v)| (*s, v.to_bits()))
        .collect();
    assert_eq!(paged, all);
    assert!(
        folded.blocks[0].bytes > 1024 * 1024,
        "{:?}",
        folded.blocks[0]
    );
    for (range, (exact_before, chart_before)) in ranges.into_iter().zip(before) {
        let (exact, chart) = read(bench.record().await, range).await;
        assert_eq!(exact, exact_before, "{range:?}");
        if exact.len() <= 100 {
            assert_eq!(chart, chart_before, "{range:?}");
            continue;
        }
        // Wide ranges are charted from the block's summary level: buckets may end a
        // few points from where they did, but every point is a stored one, the
        // extremes are the same, and there are as many as asked for at most.
        assert!(
            chart.len() <= 100 && chart.len() >= 50,
            "{range:?}: {}",
            chart.len()
        );
        let stored: std::collections::HashMap<i64, u64> = (0..exact.len())
            .map(|i| (exact.steps[i], exact.values[i].to_bits()))
            .collect();
        for i in 0..chart.len() {
            assert_eq!(
                stored.get(&chart.steps[i]),
                Some(&chart.values[i].to_bits())
            );
        }
        assert_eq!(extremes(&chart), extremes(&chart_before), "{range:?}");
        assert_eq!(extremes(&chart), extremes(&exact), "{range:?}");
    }
}

/// Runs logged before folds existed have no note for the sweep: the hourly run notes
/// them, a few teams at a time, resuming where it stopped, and folds them after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hourly_run_notes_runs_logged_before_folds_existed_and_folds_them() {
    let bench = embedded().await;
    bench.log_and_wait(batch("old", 0, 50)).await;
    let other = signed_up_run(&bench.state).await;
    batch::log(
        &bench.state.store,
        bench.state.intake(),
        &other.0.tenant,
        other.1,
        batch("theirs", 0, 10),
    )
    .await
    .unwrap();
    // As the version before left them: points, and no notes.
    let kv = &*bench.state.store.kv;
    let due = sextant_domain::calendar::hour_of(bench.clock.now()) + Duration::HOUR;
    for (key, _) in sextant_domain::sweep::notes(kv, due).await.unwrap() {
        sextant_domain::sweep::forget(kv, &key).await.unwrap();
    }
    assert!(
        sextant_domain::sweep::notes(kv, due)
            .await
            .unwrap()
            .is_empty()
    );

    // One team at a time, then nothing left to look at.
    assert_eq!(
        fold::note_unfolded_runs(&bench.state.store, 1)
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        fold::note_unfolded_runs(&bench.state.store, 1)
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        fold::note_unfolded_runs(&bench.state.store, 1)
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        sextant_domain::sweep::notes(kv, due).await.unwrap().len(),
        2
    );

    let metering = sextant_cli::metering(&bench.state);
    bench.clock.advance(Duration::hours(2));
    let hour = sextant_metering::MeteringHour::ending_at_or_before(bench.clock.now());
    let report = metering.run(hour).await.expect("a metering run");
    assert_eq!(report.runs_noted, 0, "the migration is done");
    let folded = bench.folded("loss").await.expect("a fold");
    assert_eq!(folded.blocks.iter().map(|b| b.count).sum::<u64>(), 50);
}

/// A run with more series than one transaction can commit folds them in groups, each
/// whole, and every series reads back as it was logged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_with_a_hundred_series_folds_them_all() {
    let bench = embedded().await;
    let series: serde_json::Map<String, Value> = (0..100)
        .map(|i| {
            let columns = json!({"steps": [1, 2, 3], "values": [i as f64, 0.5, -(i as f64)]});
            (format!("metric/{i:03}"), columns)
        })
        .collect();
    let batch: LogBatch =
        serde_json::from_value(json!({"batch_id": "wide", "series": series})).unwrap();
    bench.log_batch(batch).await;
    bench.clock.advance(Duration::minutes(3));
    assert_eq!(bench.fold().await.blocks, 100);
    let folds = fold::all_folded(&bench.state.store, bench.tenant(), bench.run)
        .await
        .unwrap();
    assert_eq!(folds.len(), 100);
    let record = runs::load(&bench.state.store, bench.tenant(), bench.run)
        .await
        .unwrap()
        .record;
    for (name, summary) in &record.series {
        assert!(summary.folded, "{name}");
        let page: series::SeriesPage<Points> = series::read(
            &bench.state.store,
            bench.tenant(),
            &record,
            name,
            Window::default(),
        )
        .await
        .unwrap();
        let i: f64 = name["metric/".len()..].parse().unwrap();
        assert_eq!(page.points.values, vec![i, 0.5, -i], "{name}");
    }
}

/// A run that logs slowly gets a small block an hour; eight in a row are merged into
/// one, with every point in its place, the bytes billed moving with them, and the
/// blocks merged away deleted once no read can want them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_blocks_of_a_long_run_are_merged_and_read_the_same() {
    let bench = embedded().await;
    for hour in 0..10 {
        // Each hour's steps overlap the last's, so merging must interleave them.
        bench
            .log_and_wait(batch(&format!("h{hour}"), hour * 15, 20))
            .await;
        bench.clock.advance(Duration::minutes(3));
        let (points, lines) = (bench.points().await, bench.lines().await);
        bench.fold().await;
        assert_eq!(bench.points().await, points, "after fold {hour}");
        assert_eq!(bench.lines().await, lines, "after fold {hour}");
    }
    let points = bench.points().await;
    let lines = bench.lines().await;
    let folded = bench.folded("loss").await.expect("folds");
    assert_eq!(folded.blocks.len(), 3, "8 merged into 1, then 2 more");
    assert_eq!(folded.blocks.iter().map(|b| b.count).sum::<u64>(), 200);
    assert_eq!(points.len(), 200);
    assert_eq!(lines.len(), 200);
    let sorted = points.windows(2).all(|w| w[0].0 <= w[1].0);
    assert!(sorted, "in step order");

    // Once the merged-away blocks are an hour old, the settle deletes them, and what
    // is billed is what the fold items name.
    bench.clock.advance(Duration::minutes(61));
    bench.settle().await;
    assert_eq!(bench.points().await, points);
    let folds = fold::all_folded(&bench.state.store, bench.tenant(), bench.run)
        .await
        .unwrap();
    let named: Vec<&fold::BlockRef> = folds
        .values()
        .flat_map(|f| f.blocks.iter().chain(&f.overview))
        .collect();
    assert_eq!(bench.blocks().await, named.len());
    assert_eq!(
        bench.stored_bytes().await,
        named.iter().map(|b| b.bytes).sum::<u64>()
    );
}
