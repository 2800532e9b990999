//! A bounded load test on loopback: many runs of one team logging at once against the
//! real application (embedded store, as `sextant serve` runs), drawn from the standard
//! workload. It asserts what must hold under load (no errors, every point stored
//! exactly once) and prints throughput and latency percentiles; it asserts no timing,
//! since these machines are shared. `SEXTANT_LOAD_RUNS` and `SEXTANT_LOAD_STEPS` make
//! it bigger by hand.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use reqwest::{Method, StatusCode};
use sextant_cli::Backend;
use sextant_edge::rate_limit::{Limit, RateLimits};
use sextant_tests::workload::{batches, points_in, workload};
use sextant_tests::{TestApp, text};

fn setting(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_runs_logging_at_once_store_every_point_exactly_once() {
    let (runs, steps) = (
        setting("SEXTANT_LOAD_RUNS", 16),
        setting("SEXTANT_LOAD_STEPS", 5_000),
    );
    // The load is one team's, from one key: lift its limits, which would otherwise
    // (rightly) refuse a burst this size.
    let unlimited = Limit {
        per_minute: NonZeroU32::MAX,
        burst: NonZeroU32::MAX,
    };
    let app = TestApp::spawn_adjusted(Backend::Embedded, |config| {
        config.rate_limits = RateLimits {
            team: unlimited,
            credential: unlimited,
            address: unlimited,
        }
    })
    .await;
    let team = app.signup().await;
    let key = team.api_key.clone();
    let load = workload(runs, steps);
    app.create_project(&key, "load").await;
    let mut senders = Vec::new();
    let mut run_ids = Vec::new();
    for run in 0..runs {
        let id = text(
            &app.create_run(&key, "load", serde_json::json!({})).await,
            "id",
        );
        senders.push((id.clone(), batches(&load, run, 250)));
        run_ids.push(id);
    }
    let app = Arc::new(app);
    let started = Instant::now();
    // As many requests in flight as there are runs: each run's SDK sends its numbered
    // batches one at a time, in order.
    let outcomes: Vec<Vec<(StatusCode, Duration)>> = futures::stream::iter(senders)
        .map(|(run, bodies)| {
            let (app, key) = (Arc::clone(&app), key.clone());
            async move {
                let mut outcomes = Vec::new();
                for body in bodies {
                    let sent = Instant::now();
                    let response = app
                        .request(Method::POST, &format!("/v1/runs/{run}/log"), Some(&key))
                        .header("content-type", "application/json")
                        .body(body)
                        .send()
                        .await
                        .expect("the server answers");
                    outcomes.push((response.status(), sent.elapsed()));
                }
                outcomes
            }
        })
        .buffer_unordered(runs)
        .collect()
        .await;
    let outcomes: Vec<(StatusCode, Duration)> = outcomes.into_iter().flatten().collect();
    let elapsed = started.elapsed();

    let errors = outcomes
        .iter()
        .filter(|(status, _)| *status != StatusCode::OK)
        .count();
    assert_eq!(
        errors,
        0,
        "statuses: {:?}",
        outcomes.iter().map(|o| o.0).collect::<Vec<_>>()
    );
    let mut stored = 0;
    for run in &run_ids {
        let (status, record) = app.get(&format!("/v1/runs/{run}"), &key).await;
        assert_eq!(status, StatusCode::OK);
        for summary in record["series"].as_object().expect("series").values() {
            stored += summary["count"].as_u64().expect("a count");
        }
    }
    let expected = points_in(&load);
    assert_eq!(stored, expected, "every point stored exactly once");

    let mut latencies: Vec<Duration> = outcomes.iter().map(|(_, latency)| *latency).collect();
    latencies.sort();
    println!(
        "load: {runs} runs, {} requests, {expected} points in {:.2} s: {:.0} requests/s, \
         {:.0} points/s; latency p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; errors 0",
        latencies.len(),
        elapsed.as_secs_f64(),
        latencies.len() as f64 / elapsed.as_secs_f64(),
        expected as f64 / elapsed.as_secs_f64(),
        percentile(&latencies, 0.5).as_secs_f64() * 1e3,
        percentile(&latencies, 0.99).as_secs_f64() * 1e3,
        latencies.last().expect("requests").as_secs_f64() * 1e3,
    );
}
