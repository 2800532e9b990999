//! Figures for runs and series on the standard workload (`tests/workloads/curves.py`):
//! stored bytes per point, DynamoDB write units per million points, ingest throughput
//! in process and over HTTP, reads of a 1,000,000-point series as logged and folded
//! side by side, a chart of a folded 100,000,000-point series, and the run table over
//! 10,000 runs. It prints its figures; run it with
//!
//! ```text
//! cargo bench -p sextant-tests --bench series
//! ```
//!
//! Write units are counted from the sizes of the items the ingest path writes through
//! the key-value port, which are the items the DynamoDB adapter sends: one unit per
//! started KiB of each item, doubled inside transactions, as DynamoDB bills them.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use sextant_domain::accounts::{self, DisplayName, Email};
use sextant_domain::credentials::Caller;
use sextant_domain::credentials::jwt::Keyring;
use sextant_domain::credentials::password::Password;
use sextant_domain::floats::JsonF64;
use sextant_domain::projects::{self, ProjectName};
use sextant_domain::runs::listing::{self, Filter, Sort};
use sextant_domain::runs::{self, NewRun};
use sextant_domain::series::batch::{self, LogBatch, SeriesColumns};
use sextant_domain::series::{self, Points, StepRange, fold};
use sextant_edge::auth;
use sextant_edge::state::{AppState, Settings};
use sextant_storage::Storage;
use sextant_storage::clock::ManualClock;
use sextant_storage::kv::{KvStore, Query};
use sextant_storage_local::EmbeddedKv;
use sextant_storage_local::blob::{LocalBlobs, UrlSigner};
use sextant_tests::capacity::{MeteredKv, Operation, price};
use sextant_tests::workload::{Series, batches, points_in, workload};

struct Fixture {
    state: AppState,
    /// The store's request-unit meter (`sextant_tests::capacity`), and the store under
    /// it, to look at what was stored without counting.
    meter: Arc<MeteredKv>,
    raw: Arc<dyn KvStore>,
    caller: Caller,
    /// A session token of the team, for requests over HTTP.
    token: String,
    project: projects::Project,
    _dir: tempfile::TempDir,
}

async fn fixture(in_memory: bool) -> Fixture {
    let dir = if in_memory {
        tempfile::tempdir_in("/dev/shm").expect("tmpfs directory")
    } else {
        tempfile::tempdir().expect("temporary directory")
    };
    let kv: Arc<dyn KvStore> =
        Arc::new(EmbeddedKv::open(&dir.path().join("store.redb")).expect("store"));
    let meter = Arc::new(MeteredKv::new(Arc::clone(&kv)));
    let blobs = Arc::new(
        LocalBlobs::open(
            &dir.path().join("blobs"),
            UrlSigner::new(&[9; 32]),
            "http://127.0.0.1:1".parse().expect("url"),
        )
        .expect("blobs"),
    );
    let keyring = Keyring::new(&[("bench".to_owned(), vec![7; 32])]).expect("keyring");
    let state = AppState::new(
        Storage {
            kv: meter.clone(),
            blobs,
        },
        keyring,
        Settings::new(None),
    );
    let signed_up = accounts::signup(
        &state.store,
        state.sessions(),
        DisplayName::parse("team", "Bench").expect("name"),
        Email::parse("bench@example.com").expect("email"),
        Password::parse("correct horse battery staple".into()).expect("password"),
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
    let project = projects::create(
        &state.store,
        &caller,
        ProjectName::parse("bench").expect("name"),
    )
    .await
    .expect("project");
    Fixture {
        state,
        meter,
        raw: kv,
        caller,
        token: signed_up.session.token,
        project,
        _dir: dir,
    }
}

impl Fixture {
    /// The bytes of points a run's chunks hold (their `d` attribute), keys left out.
    async fn stored_chunk_bytes(&self, run: sextant_domain::ids::RunId) -> usize {
        let mut query = Query::partition(runs::data_partition(&self.caller.tenant, run));
        let mut bytes = 0;
        loop {
            let page = self.raw.query(query.clone()).await.expect("a page");
            bytes += page
                .items
                .iter()
                .filter_map(|item| item.b("d"))
                .map(|data| data.len())
                .sum::<usize>();
            match page.next {
                Some(next) => query = query.after(Some(next)),
                None => return bytes,
            }
        }
    }

    async fn new_run(&self) -> sextant_domain::ids::RunId {
        runs::create(
            &self.state.store,
            &self.caller,
            &self.project,
            NewRun::default(),
        )
        .await
        .expect("run")
        .id
    }
}

async fn ingest_in_process(fixture: &Fixture, run: sextant_domain::ids::RunId, bodies: &[Vec<u8>]) {
    for body in bodies {
        let batch: LogBatch = serde_json::from_slice(body).expect("a batch parses");
        log(fixture, run, batch).await;
    }
}

async fn log(fixture: &Fixture, run: sextant_domain::ids::RunId, batch: LogBatch) {
    batch::log(
        &fixture.state.store,
        fixture.state.intake(),
        &fixture.caller.tenant,
        run,
        batch,
    )
    .await
    .expect("the batch is stored");
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn ms(duration: Duration) -> String {
    format!("{:.1} ms", duration.as_secs_f64() * 1000.0)
}

async fn storage_and_write_units(workload: &[Series], runs: usize) {
    println!(
        "\n## Stored bytes and DynamoDB write units ({} points, {runs} runs)",
        points_in(workload)
    );
    println!(
        "{:>12} {:>13} {:>12} {:>13} {:>18}",
        "steps/batch", "points/batch", "bytes/point", "WRU/M points", "of which commits"
    );
    for window in [250, 2_500, 25_000] {
        let fixture = fixture(true).await;
        let mut batches_sent = 0;
        let mut units = 0;
        let mut commit_units = 0;
        let mut chunk_bytes = 0;
        for run in 0..runs {
            let id = fixture.new_run().await;
            let bodies = batches(workload, run, window);
            batches_sent += bodies.len();
            // Only what logging writes: not the sign-up, project and run creation.
            fixture.meter.take();
            ingest_in_process(&fixture, id, &bodies).await;
            let usage = fixture.meter.take();
            units += usage.write_units();
            commit_units += usage.of(Operation::TransactWriteItems).write_units;
            chunk_bytes += fixture.stored_chunk_bytes(id).await;
        }
        let points = points_in(workload) as f64;
        println!(
            "{:>12} {:>13.0} {:>12.3} {:>13.0} {:>18.0}",
            window,
            points / batches_sent as f64,
            chunk_bytes as f64 / points,
            units as f64 / points * 1e6,
            commit_units as f64 / points * 1e6,
        );
    }
}

/// The yardstick the codec is measured against: zstd over delta-encoded columns
/// (each column's 64-bit lanes minus the previous lane, as bytes), on the same
/// per-series slices of 2,500 steps that the ingest path chunks.
fn general_purpose_baseline(workload: &[Series]) {
    let mut ours = 0;
    let mut baseline = 0;
    for s in workload {
        for start in (0..s.steps.len()).step_by(2_500) {
            let end = s.steps.len().min(start + 2_500);
            let points = Points {
                steps: s.steps[start..end].to_vec(),
                values: s.values[start..end].to_vec(),
                timestamps: s.timestamps[start..end].to_vec(),
            };
            ours += series::codec::encode(&points).len();
            let mut columns = Vec::with_capacity(24 * points.len());
            let lanes: [Vec<u64>; 3] = [
                points.steps.iter().map(|&v| v as u64).collect(),
                points.timestamps.iter().map(|v| v.to_bits()).collect(),
                points.values.iter().map(|v| v.to_bits()).collect(),
            ];
            for lanes in lanes {
                let mut previous = 0u64;
                for lane in lanes {
                    columns.extend_from_slice(&lane.wrapping_sub(previous).to_le_bytes());
                    previous = lane;
                }
            }
            baseline += zstd::bulk::compress(&columns, 19).expect("zstd").len();
        }
    }
    let points = points_in(workload) as f64;
    println!(
        "codec alone: {:.3} bytes/point; zstd -19 over delta columns: {:.3} ({:.2}x ours)",
        ours as f64 / points,
        baseline as f64 / points,
        baseline as f64 / ours as f64
    );
}

async fn ingest_in_process_throughput(workload: &[Series], runs: usize) {
    println!("\n## Ingest throughput (batches of 2,500 steps, about 10,000 points)");
    let points = points_in(workload) as f64;
    let bodies: Vec<Vec<Vec<u8>>> = (0..runs).map(|run| batches(workload, run, 2_500)).collect();

    // In process, on one thread: JSON parsing, chunk encoding and the commit, on the
    // embedded store on disk, as `sextant serve` runs it.
    let fixture = fixture(false).await;
    let ids = futures::future::join_all((0..runs).map(|_| fixture.new_run())).await;
    let started = Instant::now();
    for (run, id) in ids.iter().enumerate() {
        ingest_in_process(&fixture, *id, &bodies[run]).await;
    }
    let in_process = started.elapsed();
    println!(
        "in process, one core: {:.0} points/s ({} for {points} points)",
        points / in_process.as_secs_f64(),
        ms(in_process)
    );
}

async fn ingest_http_throughput(workload: &[Series], runs: usize) {
    let points = points_in(workload) as f64;
    let bodies: Vec<Vec<Vec<u8>>> = (0..runs).map(|run| batches(workload, run, 2_500)).collect();
    // Over HTTP on `sextant serve`, one request at a time.
    let app = sextant_tests::TestApp::spawn().await;
    let team = app.signup().await;
    app.post("/v1/projects", &team.api_key, json!({"name": "bench"}))
        .await;
    let mut run_ids = Vec::new();
    for _ in 0..runs {
        let (_, run) = app
            .post("/v1/projects/bench/runs", &team.api_key, json!({}))
            .await;
        run_ids.push(sextant_tests::text(&run, "id"));
    }
    let token = team.token.clone();
    let started = Instant::now();
    for (run, id) in run_ids.iter().enumerate() {
        for body in &bodies[run] {
            let response = app
                .client
                .post(app.url(&format!("/v1/runs/{id}/log")))
                .bearer_auth(&token)
                .header("content-type", "application/json")
                .body(body.clone())
                .send()
                .await
                .expect("the server answers");
            assert!(response.status().is_success(), "{}", response.status());
        }
    }
    let over_http = started.elapsed();
    println!(
        "over HTTP (client and server share the 2 cores): {:.0} points/s ({})",
        points / over_http.as_secs_f64(),
        ms(over_http)
    );
}

/// Median times of the reads a chart and an export make of one series: exact (every
/// point, paged over HTTP) and downsampled to 1,000 points, in process and over HTTP.
struct ReadTimes {
    exact: Duration,
    downsampled: Duration,
    exact_http: Duration,
    downsampled_http: Duration,
}

async fn time_reads(
    fixture: &Fixture,
    base: &str,
    run: sextant_domain::ids::RunId,
    name: &str,
    points: usize,
    exact_too: bool,
) -> ReadTimes {
    let record = runs::load(&fixture.state.store, &fixture.caller.tenant, run)
        .await
        .expect("the run")
        .record;
    assert_eq!(record.series[name].count, points as u64);
    let client = reqwest::Client::new();
    let get = |url: String| {
        let request = client.get(url).bearer_auth(&fixture.token);
        async move {
            let response = request.send().await.expect("the server answers");
            assert!(response.status().is_success(), "{}", response.status());
            response.json::<serde_json::Value>().await.expect("JSON")
        }
    };
    let series_url = format!("{base}/v1/runs/{run}/series/{name}");
    // Each kind of read five times in a row, so that none is timed in the wake of
    // another's allocations.
    let (mut exact, mut sampled, mut exact_http, mut sampled_http) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..5 {
        let started = Instant::now();
        let (sample, _) = series::read_downsampled(
            &fixture.state.store,
            &fixture.caller.tenant,
            &record,
            name,
            StepRange::default(),
            1_000,
        )
        .await
        .expect("a downsampled read");
        sampled.push(started.elapsed());
        assert!(
            sample.len() <= 1_000 && sample.len() >= 500,
            "{}",
            sample.len()
        );
    }
    for _ in 0..5 {
        let started = Instant::now();
        let page = get(format!("{series_url}?max_points=1000")).await;
        sampled_http.push(started.elapsed());
        assert!(page["steps"].as_array().expect("steps").len() <= 1_000);
    }
    for _ in 0..5 {
        if !exact_too {
            break;
        }
        let started = Instant::now();
        let page = series::read::<Points>(
            &fixture.state.store,
            &fixture.caller.tenant,
            &record,
            name,
            series::Window::default(),
        )
        .await
        .expect("a read");
        exact.push(started.elapsed());
        assert_eq!(page.points.len(), points);
    }
    for _ in 0..5 {
        if !exact_too {
            break;
        }
        let started = Instant::now();
        let (mut read, mut cursor) = (0, None::<String>);
        loop {
            let url = match &cursor {
                Some(cursor) => format!("{series_url}?cursor={cursor}"),
                None => series_url.clone(),
            };
            let page = get(url).await;
            read += page["steps"].as_array().expect("steps").len();
            match page["next_cursor"].as_str() {
                Some(next) => cursor = Some(next.to_owned()),
                None => break,
            }
        }
        exact_http.push(started.elapsed());
        assert_eq!(read, points);
    }
    let median_or_zero = |samples: Vec<Duration>| {
        if samples.is_empty() {
            Duration::ZERO
        } else {
            median(samples)
        }
    };
    ReadTimes {
        exact: median_or_zero(exact),
        downsampled: median(sampled),
        exact_http: median_or_zero(exact_http),
        downsampled_http: median(sampled_http),
    }
}

/// Folds a run as the hourly runs do: on a clock three minutes ahead, so that every
/// batch is past the commit window, until nothing is left to fold; then, twenty
/// minutes on, once more to delete the folded items. Answers the time the folding took.
async fn fold_all(fixture: &Fixture, run: sextant_domain::ids::RunId) -> Duration {
    let clock = Arc::new(ManualClock::starting_at(
        time::OffsetDateTime::now_utc() + time::Duration::minutes(3),
    ));
    let mut later = fixture.state.store.clone();
    later.clock = clock.clone();
    let started = Instant::now();
    loop {
        let report = fold::fold(&later, &fixture.caller.tenant, run)
            .await
            .expect("a fold");
        if !report.capped {
            break;
        }
    }
    let folding = started.elapsed();
    clock.advance(time::Duration::minutes(20));
    fold::fold(&later, &fixture.caller.tenant, run)
        .await
        .expect("the fold that deletes");
    folding
}

async fn reads_of_a_million_points() {
    println!(
        "\n## Reading a 1,000,000-point series (train/loss of one 1,000,000-step run), \
         as logged in batches of 25,000 steps and after the fold"
    );
    let workload = workload(1, 1_000_000);
    let fixture = fixture(false).await;
    let run = fixture.new_run().await;
    ingest_in_process(&fixture, run, &batches(&workload, 0, 25_000)).await;
    let base = sextant_tests::serve_state(fixture.state.clone()).await;
    let logged = time_reads(&fixture, &base, run, "train/loss", 1_000_000, true).await;
    let fold_time = fold_all(&fixture, run).await;
    let folded = time_reads(&fixture, &base, run, "train/loss", 1_000_000, true).await;
    println!(
        "folding the run's 7 series (7,000,000 points): {}",
        ms(fold_time)
    );
    println!(
        "{:<44} {:>10} {:>10} {:>7}",
        "median of 5", "logged", "folded", "ratio"
    );
    let rows = [
        ("in process, exact", logged.exact, folded.exact),
        (
            "in process, downsampled to 1,000",
            logged.downsampled,
            folded.downsampled,
        ),
        (
            "over HTTP, exact in pages of 50,000",
            logged.exact_http,
            folded.exact_http,
        ),
        (
            "over HTTP, downsampled to 1,000",
            logged.downsampled_http,
            folded.downsampled_http,
        ),
    ];
    for (what, logged, folded) in rows {
        println!(
            "{what:<44} {:>10} {:>10} {:>6.1}x",
            ms(logged),
            ms(folded),
            logged.as_secs_f64() / folded.as_secs_f64()
        );
    }
}

/// One series of 100,000,000 points (a noisy decaying curve), logged in batches of
/// 50,000 and folded: what a chart of all of it costs. The items as logged are past
/// what one read may fetch (`MAX_READ_BYTES`), so only the folded series is charted.
async fn a_chart_of_a_hundred_million_points() {
    const POINTS: usize = 100_000_000;
    const BATCH: usize = 50_000;
    println!("\n## A chart of a 100,000,000-point series, folded");
    let fixture = fixture(false).await;
    let run = fixture.new_run().await;
    let started = Instant::now();
    for (number, first) in (0..POINTS).step_by(BATCH).enumerate() {
        let steps: Vec<i64> = (first..first + BATCH).map(|s| s as i64).collect();
        let values = steps
            .iter()
            .map(|&s| {
                let noise =
                    ((s as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 40) as f64 / 16_777_216.0;
                JsonF64((2.0 / (1.0 + s as f64 / 1e6) + 0.1 * noise) as f32 as f64)
            })
            .collect();
        let timestamps = Some(steps.iter().map(|&s| 1.7e9 + s as f64 * 0.01).collect());
        let batch = LogBatch {
            batch_id: Some(format!("b{number}")),
            series: [(
                "loss".to_owned(),
                SeriesColumns {
                    steps,
                    values,
                    timestamps,
                },
            )]
            .into(),
            ..LogBatch::default()
        };
        log(&fixture, run, batch).await;
    }
    println!("logging: {}", ms(started.elapsed()));
    println!("folding: {}", ms(fold_all(&fixture, run).await));
    let base = sextant_tests::serve_state(fixture.state.clone()).await;
    let folded = time_reads(&fixture, &base, run, "loss", POINTS, false).await;
    println!(
        "downsampled to 1,000 points, median of 5: in process {}, over HTTP {}",
        ms(folded.downsampled),
        ms(folded.downsampled_http)
    );
}

async fn run_table_of_ten_thousand() {
    println!("\n## The run table: 10,000 runs sorted by a metric");
    let fixture = fixture(true).await;
    for i in 0..10_000u32 {
        let run = fixture.new_run().await;
        let accuracy = f64::from((i * 7_919) % 10_000) / 10_000.0;
        let batch: LogBatch = serde_json::from_value(json!({
            "batch_id": "b",
            "series": {
                "val/acc": {"steps": [500, 1000], "values": [accuracy / 2.0, accuracy]},
                "train/loss": {"steps": [999, 1000], "values": [1.0 - accuracy, 0.9 - accuracy]},
            }
        }))
        .expect("a batch");
        log(&fixture, run, batch).await;
    }
    let sort = Sort::parse("metric:val/acc:max:desc").expect("a sort");
    let mut samples = Vec::new();
    for _ in 0..5 {
        let started = Instant::now();
        let all = runs::all_in_project(
            &fixture.state.store,
            &fixture.caller.tenant,
            fixture.project.id,
        )
        .await
        .expect("runs");
        let page = listing::page(&all, &Filter::default(), &sort, 50, None, |run| run.status)
            .expect("a page");
        samples.push(started.elapsed());
        assert_eq!(page.total, 10_000);
    }
    println!(
        "in process: read, sort and page 10,000 runs: median {}",
        ms(median(samples))
    );
    // What one view costs on DynamoDB, from the request-unit meter
    // (`tests/tests/request_units.rs` holds it to the DynamoDB adapter's billing).
    fixture.meter.take();
    runs::all_in_project(
        &fixture.state.store,
        &fixture.caller.tenant,
        fixture.project.id,
    )
    .await
    .expect("runs");
    let usage = fixture.meter.take();
    println!(
        "one view on DynamoDB: {} requests, {} read units (strongly consistent), ${:.6}",
        usage.requests(),
        usage.read_units(),
        usage.read_units() as f64 * price::READ_UNIT
    );

    let base = sextant_tests::serve_state(fixture.state.clone()).await;
    let client = reqwest::Client::new();
    let url = format!("{base}/v1/projects/bench/runs?sort=metric:val/acc:max:desc&limit=50");
    let mut samples = Vec::new();
    for _ in 0..5 {
        let started = Instant::now();
        let response = client
            .get(&url)
            .bearer_auth(&fixture.token)
            .send()
            .await
            .expect("the server answers");
        let page: serde_json::Value = response.json().await.expect("JSON");
        samples.push(started.elapsed());
        assert_eq!(page["total"], 10_000);
    }
    println!(
        "over HTTP: the first page of 50, sorted: median {}",
        ms(median(samples))
    );
}

fn main() {
    // One thread where a figure is per core; the HTTP figure gets a server runtime.
    let one_thread = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let runs = 4;
    let workload = workload(runs, 100_000);
    one_thread.block_on(storage_and_write_units(&workload, runs));
    general_purpose_baseline(&workload);
    one_thread.block_on(ingest_in_process_throughput(&workload, runs));
    drop(one_thread);
    // HTTP figures are timed one request at a time; the runtime has threads for the
    // server.
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(ingest_http_throughput(&workload, runs));
    runtime.block_on(reads_of_a_million_points());
    runtime.block_on(a_chart_of_a_hundred_million_points());
    runtime.block_on(run_table_of_ten_thousand());
}
