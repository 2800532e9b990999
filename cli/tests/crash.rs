//! `sextant serve` killed with SIGKILL in the middle of ingest, then restarted: the
//! embedded store keeps every batch it acknowledged, exactly once and never in part,
//! and the client's retries of the rest leave every batch stored exactly once.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::{Server, post, start_with_env, team_with_run, terminate};
use serde_json::{Value, json};
use time::format_description::well_known::Rfc3339;
use time::{OffsetDateTime, Time};
use tokio::sync::Notify;

/// Concurrent writers, one run each.
const WRITERS: usize = 4;
/// Every batch logs two series, so it is at least two chunks that must become
/// readable together.
const SERIES: [&str; 2] = ["loss", "acc"];
/// Points per series in one batch. Batch `b` holds steps `b * POINTS ..`, so a step
/// names its batch.
const POINTS: i64 = 25;
/// Acknowledgements, over all writers, after which the server is killed: enough that
/// every writer is deep into its run, few enough to stay quick on a loaded machine.
const KILL_AFTER: usize = 300;
/// A writer that gets this far was never interrupted, and the test would prove nothing.
const MAX_BATCHES: u64 = 20_000;
/// Writers here send far faster than the SDK's batch a second per run; the rate limits
/// are not what this test is about.
const UNLIMITED: [(&str, &str); 4] = [
    ("SEXTANT_RATE_TEAM_PER_MINUTE", "10000000"),
    ("SEXTANT_RATE_TEAM_BURST", "1000000"),
    ("SEXTANT_RATE_KEY_PER_MINUTE", "10000000"),
    ("SEXTANT_RATE_KEY_BURST", "1000000"),
];
/// Bounds every wait, so a hang fails the test instead of stalling the suite.
const PATIENCE: Duration = Duration::from_secs(20);

/// What one writer sent before the server went away.
struct Sent {
    run: String,
    /// Batches `0..attempted` were sent, one after the other.
    attempted: u64,
    acknowledged: BTreeSet<u64>,
}

fn batch_id(writer: usize, batch: u64) -> String {
    format!("w{writer}-b{batch}")
}

/// Distinct per writer and series, so a point stored under the wrong run or series
/// shows.
fn value(series: &str, writer: usize, step: i64) -> f64 {
    let value = (writer as i64 * 1_000_000 + step) as f64;
    if series == "loss" { value } else { -value }
}

fn batch_body(writer: usize, batch: u64) -> Value {
    let first = i64::try_from(batch).unwrap() * POINTS;
    let steps: Vec<i64> = (first..first + POINTS).collect();
    let series: serde_json::Map<String, Value> = SERIES
        .iter()
        .map(|&name| {
            let values: Vec<f64> = steps.iter().map(|&s| value(name, writer, s)).collect();
            (name.to_owned(), json!({"steps": steps, "values": values}))
        })
        .collect();
    json!({"batch_id": batch_id(writer, batch), "series": series})
}

/// Sends one batch: `Ok` once the server acknowledged it, `Err` when the connection
/// failed before a whole answer arrived (the server is gone), which a client cannot
/// tell from a batch that was never stored. Any other answer fails the test.
async fn send(
    client: &reqwest::Client,
    base: &str,
    key: &str,
    sent: (usize, &str, u64),
) -> Result<(), reqwest::Error> {
    let (writer, run, batch) = sent;
    let response = client
        .post(format!("{base}/v1/runs/{run}/log"))
        .bearer_auth(key)
        .json(&batch_body(writer, batch))
        .send()
        .await?;
    let status = response.status();
    let body = response.bytes().await?;
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    assert!(
        status.is_success(),
        "batch {} was refused: {status} {body}",
        batch_id(writer, batch)
    );
    assert_eq!(
        body["accepted"],
        json!(POINTS * SERIES.len() as i64),
        "{body}"
    );
    Ok(())
}

/// Logs numbered batches as fast as the server takes them, until a send fails.
async fn write_until_killed(
    client: reqwest::Client,
    (base, key): (String, String),
    (writer, run): (usize, String),
    acks: Arc<AtomicUsize>,
    enough: Arc<Notify>,
) -> Sent {
    let mut acknowledged = BTreeSet::new();
    for batch in 0..MAX_BATCHES {
        if send(&client, &base, &key, (writer, &run, batch))
            .await
            .is_err()
        {
            return Sent {
                run,
                attempted: batch + 1,
                acknowledged,
            };
        }
        acknowledged.insert(batch);
        if acks.fetch_add(1, Ordering::SeqCst) + 1 == KILL_AFTER {
            enough.notify_one();
        }
    }
    panic!("writer {writer} sent {MAX_BATCHES} batches and the server never went away");
}

async fn get(client: &reqwest::Client, url: String, key: &str) -> (u16, Value) {
    let response = client.get(url).bearer_auth(key).send().await.expect("GET");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Every point of one series, following the pages the API answers.
async fn read_series(
    client: &reqwest::Client,
    base: &str,
    key: &str,
    run: &str,
    name: &str,
) -> Vec<(i64, f64)> {
    let mut points = Vec::new();
    let mut after = None;
    loop {
        let mut url = format!("{base}/v1/runs/{run}/series/{name}");
        if let Some(after) = after {
            url.push_str(&format!("?after={after}"));
        }
        let (status, page) = get(client, url, key).await;
        if status == 404 && after.is_none() {
            // No batch of this run committed: the series was never created.
            return points;
        }
        assert_eq!(status, 200, "{page}");
        let steps = page["steps"].as_array().expect("steps");
        let values = page["values"].as_array().expect("values");
        assert_eq!(steps.len(), values.len(), "{page}");
        for (step, value) in steps.iter().zip(values) {
            points.push((step.as_i64().expect("step"), value.as_f64().expect("value")));
        }
        match page["next_after"].as_i64() {
            Some(next) => after = Some(next),
            None => return points,
        }
    }
}

/// How many points of each batch the writer's run holds, checking on the way that no
/// step is stored twice, that every value is the one logged, that no point comes from
/// a batch never sent, and that the run's own count of its points agrees.
async fn stored_per_batch(
    client: &reqwest::Client,
    base: &str,
    key: &str,
    writer: usize,
    sent: &Sent,
) -> BTreeMap<u64, i64> {
    let (status, view) = get(client, format!("{base}/v1/runs/{}", sent.run), key).await;
    assert_eq!(status, 200, "{view}");
    let mut per_batch = BTreeMap::new();
    for name in SERIES {
        let points = read_series(client, base, key, &sent.run, name).await;
        let mut steps = BTreeSet::new();
        for &(step, stored) in &points {
            assert!(
                steps.insert(step),
                "writer {writer}: step {step} of {name} is stored twice"
            );
            let batch = u64::try_from(step / POINTS).unwrap();
            assert!(
                batch < sent.attempted,
                "writer {writer}: step {step} of {name} belongs to a batch never sent"
            );
            assert_eq!(stored, value(name, writer, step), "writer {writer}, {name}");
            *per_batch.entry(batch).or_default() += 1;
        }
        assert_eq!(
            view["series"][name]["count"].as_u64().unwrap_or(0),
            points.len() as u64,
            "writer {writer}: the run counts other points of {name} than it stores: {view}"
        );
    }
    per_batch
}

/// Rolls up every hour the test logged in (two, should it straddle the turn of one),
/// as the hourly metering does once an hour has ended.
fn roll_up_hours(dir: &Path, since: OffsetDateTime) {
    let hour_of = |at: OffsetDateTime| at.replace_time(Time::from_hms(at.hour(), 0, 0).unwrap());
    let hours: BTreeSet<OffsetDateTime> =
        [hour_of(since), hour_of(OffsetDateTime::now_utc())].into();
    for hour in hours {
        let ended = (hour + time::Duration::HOUR).format(&Rfc3339).unwrap();
        let meter = Command::new(env!("CARGO_BIN_EXE_sextant"))
            .arg("meter")
            .arg("--data-dir")
            .arg(dir)
            .args(["--at", &ended])
            .output()
            .expect("running sextant meter");
        assert!(
            meter.status.success(),
            "{}",
            String::from_utf8_lossy(&meter.stderr)
        );
    }
}

/// The team's billed points in the months since `since` (two, should the test
/// straddle the turn of a month), once the hours are rolled up.
async fn billed_points(
    client: &reqwest::Client,
    server: &Server,
    key: &str,
    since: OffsetDateTime,
) -> u64 {
    let month = |at: OffsetDateTime| {
        at.format(time::macros::format_description!("[year]-[month]"))
            .unwrap()
    };
    let months: BTreeSet<String> = [month(since), month(OffsetDateTime::now_utc())].into();
    let mut points = 0;
    for month in months {
        let (status, usage) = get(
            client,
            format!("{}/v1/usage?month={month}", server.base),
            key,
        )
        .await;
        assert_eq!(status, 200, "{usage}");
        points += usage["points"].as_u64().expect("points");
    }
    points
}

#[tokio::test]
async fn a_server_killed_mid_ingest_restarts_with_every_acknowledged_batch_intact() {
    let started = Instant::now();
    let began = OffsetDateTime::now_utc();
    let dir = tempfile::tempdir().unwrap();
    let client = reqwest::Client::builder()
        .timeout(PATIENCE)
        .build()
        .unwrap();

    let mut killed = start_with_env(dir.path(), &UNLIMITED);
    let (key, first_run) = team_with_run(&killed, "crash").await;
    let mut runs = vec![first_run];
    while runs.len() < WRITERS {
        let (status, run) = post(
            &client,
            format!("{}/v1/projects/crash/runs", killed.base),
            Some(&key),
            json!({}),
        )
        .await;
        assert_eq!(status, 201, "{run}");
        runs.push(run["id"].as_str().unwrap().to_owned());
    }

    let acks = Arc::new(AtomicUsize::new(0));
    let enough = Arc::new(Notify::new());
    let writers: Vec<_> = runs
        .iter()
        .enumerate()
        .map(|(writer, run)| {
            tokio::spawn(write_until_killed(
                client.clone(),
                (killed.base.clone(), key.clone()),
                (writer, run.clone()),
                Arc::clone(&acks),
                Arc::clone(&enough),
            ))
        })
        .collect();
    tokio::time::timeout(PATIENCE, enough.notified())
        .await
        .unwrap_or_else(|_| {
            panic!(
                "only {} batches were acknowledged in {PATIENCE:?}",
                acks.load(Ordering::SeqCst)
            )
        });
    // While every writer still has a batch in flight or on its way.
    killed.child.kill().expect("SIGKILL");
    killed.child.wait().expect("reaping the server");
    let killed_at = started.elapsed();
    let mut sent = Vec::new();
    for writer in writers {
        sent.push(
            tokio::time::timeout(PATIENCE, writer)
                .await
                .expect("a writer outlived the server")
                .expect("a writer failed"),
        );
    }
    let acknowledged: usize = sent.iter().map(|s| s.acknowledged.len()).sum();
    let attempted: u64 = sent.iter().map(|s| s.attempted).sum();
    assert!(acknowledged >= KILL_AFTER);

    let mut restarted = start_with_env(dir.path(), &UNLIMITED);
    let mut recovered = 0;
    let mut in_flight_committed = 0;
    for (writer, sent) in sent.iter().enumerate() {
        let per_batch = stored_per_batch(&client, &restarted.base, &key, writer, sent).await;
        for (&batch, &points) in &per_batch {
            assert_eq!(
                points,
                POINTS * SERIES.len() as i64,
                "batch {} is stored in part: {points} points",
                batch_id(writer, batch)
            );
            if !sent.acknowledged.contains(&batch) {
                in_flight_committed += 1;
            }
        }
        for batch in &sent.acknowledged {
            assert!(
                per_batch.contains_key(batch),
                "acknowledged batch {} was lost",
                batch_id(writer, *batch)
            );
        }
        recovered += per_batch.len();
    }

    // The client's retry: it cannot know which unacknowledged batches were stored, so
    // it sends them all again; it also resends the acknowledged ones, as a client whose
    // acknowledgement was lost on the way would.
    let mut retried = 0;
    for (writer, sent) in sent.iter().enumerate() {
        for batch in 0..sent.attempted {
            send(&client, &restarted.base, &key, (writer, &sent.run, batch))
                .await
                .expect("a retry reaches the restarted server");
            retried += 1;
        }
    }
    for (writer, sent) in sent.iter().enumerate() {
        let per_batch = stored_per_batch(&client, &restarted.base, &key, writer, sent).await;
        let complete = (0..sent.attempted)
            .all(|batch| per_batch.get(&batch) == Some(&(POINTS * SERIES.len() as i64)));
        assert!(
            complete,
            "writer {writer}: after retries, batches hold {per_batch:?}"
        );
    }

    // Billing counts each batch once too: the counters commit with the batch, and a
    // retry of a stored batch counts nothing.
    assert!(terminate(&mut restarted).success());
    roll_up_hours(dir.path(), began);
    let metered = start_with_env(dir.path(), &UNLIMITED);
    assert_eq!(
        billed_points(&client, &metered, &key, began).await,
        attempted * (POINTS as u64) * SERIES.len() as u64
    );

    println!(
        "{acknowledged} batches acknowledged before the kill at {killed_at:?}, \
         {attempted} sent ({} in flight), {recovered} recovered after the restart \
         ({in_flight_committed} of them unacknowledged), {retried} retried; {:?} in all",
        attempted - acknowledged as u64,
        started.elapsed()
    );
}
