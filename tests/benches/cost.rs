//! What Sextant costs on AWS, from the requests its code issues: the standard workload
//! (`tests/workloads/curves.py`, about a million points) logged through the real
//! domain code at four batch sizes (and as Neptune's client sends it, through the API's
//! ingest route), folded into blocks as the hourly run does, a chart
//! read and an exact read of one series before and after the fold,
//! an idle hour of metering, and images and artifacts stored and swept, each counted in DynamoDB request units and requests
//! by `sextant_tests::capacity` (the pricing rules applied to item sizes),
//! then priced at us-east-1 list prices beside the default plan. `docs/cost.md` says
//! where every price comes from and which figures are estimates. Run it with
//!
//! ```text
//! cargo bench -p sextant-tests --bench cost
//! ```
//!
//! The store is the embedded one; the counts are what the DynamoDB adapter would be
//! billed for the same calls (`tests/tests/request_units.rs` checks they are equal).

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rust_decimal::prelude::ToPrimitive;
use serde_json::Value;
use sextant_domain::accounts::{self, DisplayName, Email};
use sextant_domain::artifacts::{self, ArtifactPath, Completed, Completion, NewArtifact};
use sextant_domain::billing;
use sextant_domain::billing::PricePlan;
use sextant_domain::calendar::BillingMonth;
use sextant_domain::credentials::Caller;
use sextant_domain::credentials::jwt::Keyring;
use sextant_domain::credentials::password::Password;
use sextant_domain::ids::RunId;
use sextant_domain::images;
use sextant_domain::projects::{self, ProjectName};
use sextant_domain::runs::{self, NewRun};
use sextant_domain::series::batch::{self, LogBatch};
use sextant_domain::series::{fold, hot};
use sextant_edge::auth;
use sextant_edge::rate_limit::{Limit, RateLimits};
use sextant_edge::state::{AppState, Settings};
use sextant_metering::MeteringHour;
use sextant_storage::Storage;
use sextant_storage::blob::BlobStore;
use sextant_storage::clock::ManualClock;
use sextant_storage::kv::{KvStore, Query};
use sextant_storage_local::EmbeddedKv;
use sextant_storage_local::blob::{LocalBlobs, UrlSigner};
use sextant_tests::capacity::{
    BlobUsage, KvUsage, MeteredBlobs, MeteredKv, Operation, RequestClass, price,
};
use sextant_tests::workload::{Series, batches, points_in, workload};
use sha2::{Digest, Sha256};

/// How long a log request runs on Lambda is estimated, not measured: the CPU time the
/// domain code takes here, stretched to the CPU share of the template's 512 MB (Lambda
/// gives one vCPU at 1,769 MB), plus one DynamoDB round trip per request it sends
/// (`batch::log` sends them one after another).
mod lambda {
    pub const MEMORY_GB: f64 = 512.0 / 1024.0;
    pub const CPU_SHARE: f64 = 512.0 / 1769.0;
    pub const DYNAMODB_ROUND_TRIP: f64 = 0.010;
}

const RUNS: usize = 4;
/// Four series log every step, so 62,500 steps a run make about a million points.
const STEPS: usize = 62_500;
/// Steps per batch: about 40, 200, 1,000 and 10,000 points. The SDK sends what waited
/// `flush_interval` (5 s by default), at most 10,000 points (`flush_points`): at the
/// workload's ten steps a second the default makes the second, `flush_interval=1` the
/// first, and a fast loop the last.
const WINDOWS: [i64; 4] = [10, 50, 250, 2_500];
const MILLION: f64 = 1e6;
/// The workload's pace: the standard training loop logs ten steps a second.
const STEPS_A_SECOND: f64 = 10.0;
/// The SDK's `flush_interval`: what a live run sends in one request.
const SDK_FLUSH_SECONDS: f64 = 5.0;

struct Fixture {
    state: AppState,
    kv: Arc<MeteredKv>,
    blobs: Arc<MeteredBlobs>,
    /// The embedded store under the meter, to look at what was stored without counting.
    raw: Arc<dyn KvStore>,
    /// The blob store under the meter, for what a client sends to a presigned URL (the
    /// meter counts that request when the URL is made).
    raw_blobs: Arc<dyn BlobStore>,
    /// Batches arrive at the workload's pace, and folds wait for them to settle.
    clock: Arc<ManualClock>,
    _dir: tempfile::TempDir,
}

fn unlimited() -> RateLimits {
    let limit = Limit {
        per_minute: NonZeroU32::MAX,
        burst: NonZeroU32::MAX,
    };
    RateLimits {
        team: limit,
        credential: limit,
        address: limit,
    }
}

struct Team {
    caller: Caller,
    /// A session token, as the web app reads with.
    token: String,
    project: projects::Project,
}

impl Fixture {
    fn new() -> Self {
        // tmpfs where there is one: the figures are counts, not disk speed.
        let dir = tempfile::tempdir_in("/dev/shm")
            .or_else(|_| tempfile::tempdir())
            .expect("temporary directory");
        let raw: Arc<dyn KvStore> =
            Arc::new(EmbeddedKv::open(&dir.path().join("store.redb")).expect("store"));
        let kv = Arc::new(MeteredKv::new(Arc::clone(&raw)));
        let local = LocalBlobs::open(
            &dir.path().join("blobs"),
            UrlSigner::new(&[9; 32]),
            "http://127.0.0.1:1".parse().expect("url"),
        )
        .expect("blobs");
        let raw_blobs: Arc<dyn BlobStore> = Arc::new(local);
        let blobs = Arc::new(MeteredBlobs::new(Arc::clone(&raw_blobs)));
        let keyring = Keyring::new(&[("bench".to_owned(), vec![7; 32])]).expect("keyring");
        let clock = Arc::new(ManualClock::starting_at(
            time::macros::datetime!(2026-11-05 13:00 UTC),
        ));
        let state = AppState::new(
            Storage {
                kv: kv.clone(),
                blobs: blobs.clone(),
            },
            keyring,
            Settings {
                // The bench sends in a burst what clients send over hours.
                rate_limits: unlimited(),
                ..Settings::new(None)
            },
        )
        .with_clock(clock.clone())
        // Settled as on Lambda, whose bill this is.
        .deferring_settlement();
        Self {
            state,
            kv,
            blobs,
            raw,
            raw_blobs,
            clock,
            _dir: dir,
        }
    }

    async fn team(&self, n: usize) -> Team {
        let signed_up = accounts::signup(
            &self.state.store,
            self.state.sessions(),
            DisplayName::parse("team", "Cost").expect("name"),
            Email::parse(&format!("cost{n}@example.com")).expect("email"),
            Password::parse("correct horse battery staple".into()).expect("password"),
            std::net::IpAddr::from(std::net::Ipv4Addr::LOCALHOST),
        )
        .await
        .expect("signup");
        let caller = auth::authenticate(
            &self.state,
            &signed_up.api_key,
            sextant_domain::credentials::Plane::Control,
        )
        .await
        .expect("authenticate");
        let project = projects::create(
            &self.state.store,
            &caller,
            ProjectName::parse("cost").unwrap(),
        )
        .await
        .expect("project");
        Team {
            caller,
            token: signed_up.session.token,
            project,
        }
    }

    async fn new_run(&self, team: &Team) -> RunId {
        runs::create(
            &self.state.store,
            &team.caller,
            &team.project,
            NewRun::default(),
        )
        .await
        .expect("run")
        .id
    }

    /// What a run stores, read past the meter; without its hot items once they have
    /// expired (DynamoDB's TTL deletes them for free, `series::hot`).
    async fn stored(&self, team: &Team, run: RunId, hot_expired: bool) -> Stored {
        let mut query =
            Query::partition(runs::data_partition(&team.caller.tenant, run)).limit(1000);
        let mut stored = Stored::default();
        loop {
            let page = self.raw.query(query.clone()).await.expect("query");
            let kept = page
                .items
                .iter()
                .filter(|item| !(hot_expired && item.key.sk.starts_with("h#")));
            for item in kept {
                stored.items += 1;
                stored.item_bytes += item.billed_size() as u64;
            }
            match page.next {
                Some(next) => query.after = Some(next),
                None => break,
            }
        }
        let prefix = format!("{}runs/{run}/series/", team.caller.tenant.blob_prefix());
        let blocks = self
            .raw_blobs
            .list(&prefix, None, 1000)
            .await
            .expect("a listing");
        stored.blocks = blocks.blobs.len() as u64;
        stored.block_bytes = blocks.blobs.iter().map(|b| b.size).sum();
        stored
    }

    /// Folds every run as the hourly run does: once the last batches are past the
    /// commit window, then again once the sealed items may go.
    async fn fold(&self, team: &Team, runs: &[RunId]) -> (KvUsage, BlobUsage) {
        self.kv.take();
        self.blobs.take();
        for wait in [3, 16] {
            self.clock.advance(time::Duration::minutes(wait));
            for &run in runs {
                fold::fold(&self.state.store, &team.caller.tenant, run)
                    .await
                    .expect("a fold");
            }
        }
        (self.kv.take(), self.blobs.take())
    }
}

/// What runs store: items in DynamoDB, blocks in S3.
#[derive(Debug, Default, Clone, Copy)]
struct Stored {
    items: u64,
    item_bytes: u64,
    blocks: u64,
    block_bytes: u64,
}

impl std::ops::AddAssign for Stored {
    fn add_assign(&mut self, other: Self) {
        self.items += other.items;
        self.item_bytes += other.item_bytes;
        self.blocks += other.blocks;
        self.block_bytes += other.block_bytes;
    }
}

/// What one typical read cost.
struct Read {
    what: &'static str,
    http_requests: u64,
    kv: KvUsage,
    blobs: BlobUsage,
}

/// What logging the workload at one batch size cost.
struct Logged {
    batches: u64,
    points: u64,
    body_bytes: u64,
    /// Requests as API Gateway meters them: one per started 512 KB of body.
    api_requests: u64,
    kv: KvUsage,
    blobs: BlobUsage,
    elapsed: Duration,
    /// As the batches left it, and after the fold.
    stored: Stored,
    folded: Stored,
    fold_kv: KvUsage,
    fold_blobs: BlobUsage,
    reads: Vec<Read>,
    folded_reads: Vec<Read>,
}

impl Logged {
    fn per_million(&self, n: u64) -> f64 {
        n as f64 * MILLION / self.points as f64
    }

    fn per_batch(&self, n: u64) -> f64 {
        n as f64 / self.batches as f64
    }

    /// The domain code's own time per batch: parsing, encoding, deciding.
    fn cpu_per_batch(&self) -> Duration {
        self.elapsed.saturating_sub(self.kv.store_time) / self.batches as u32
    }

    /// Estimated billed Lambda seconds per batch (see `lambda`).
    fn lambda_seconds_per_batch(&self) -> f64 {
        self.cpu_per_batch().as_secs_f64() / lambda::CPU_SHARE
            + self.per_batch(self.kv.requests()) * lambda::DYNAMODB_ROUND_TRIP
    }
}

/// Who sends the workload: Sextant's SDK (log batches, `series::batch::log`) or
/// Neptune's client (protobuf operations through `POST /api/client/v1/ingest`, with the
/// access token its key trades for, as the function serves them).
#[derive(Debug, Clone, Copy, PartialEq)]
enum Client {
    Sdk,
    Neptune,
}

async fn log_and_read(workload: &[Series], window: i64, client: Client) -> Logged {
    let fixture = Fixture::new();
    let team = fixture.team(0).await;
    let ingest = neptune::Ingest::new(&fixture, &team).await;
    let mut runs = Vec::new();
    for run in 0..RUNS {
        let sent = match client {
            Client::Sdk => (fixture.new_run(&team).await, batches(workload, run, window)),
            Client::Neptune => ingest.new_run(&fixture, &team, run, workload, window).await,
        };
        runs.push(sent);
    }
    let (mut batches_sent, mut body_bytes, mut api_requests) = (0, 0, 0);
    fixture.kv.take();
    fixture.blobs.take();
    let started = Instant::now();
    let seconds_a_batch = window as f64 / STEPS_A_SECOND;
    for (run, bodies) in &runs {
        for body in bodies {
            fixture
                .clock
                .advance(time::Duration::seconds_f64(seconds_a_batch));
            match client {
                Client::Sdk => {
                    let batch: LogBatch = serde_json::from_slice(body).expect("a batch parses");
                    batch::log(
                        &fixture.state.store,
                        fixture.state.intake(),
                        &team.caller.tenant,
                        *run,
                        batch,
                    )
                    .await
                    .expect("the batch is stored");
                }
                Client::Neptune => ingest.send(body.clone()).await,
            }
            batches_sent += 1;
            body_bytes += body.len() as u64;
            api_requests += body.len().div_ceil(price::API_METER_BYTES) as u64;
        }
    }
    // The client ends each run; the hourly run settles the batches no write settled
    // (the last minute or two).
    for (run, _) in &runs {
        let end = runs::RunChanges {
            status: Some(runs::Status::Succeeded),
            ..runs::RunChanges::default()
        };
        let timeout = fixture.state.settings.heartbeat_timeout;
        runs::patch(
            &fixture.state.store,
            timeout,
            &team.caller.tenant,
            *run,
            end,
        )
        .await
        .expect("the run ends");
    }
    fixture.clock.advance(time::Duration::minutes(2));
    for (run, _) in &runs {
        let (store, meter) = (&fixture.state.store, fixture.state.meter());
        hot::settle_due(store, meter, &team.caller.tenant, *run)
            .await
            .expect("settled");
    }
    let elapsed = started.elapsed();
    let kv = fixture.kv.take();
    let blobs = fixture.blobs.take();

    let mut stored = Stored::default();
    for (run, _) in &runs {
        stored += fixture.stored(&team, *run, false).await;
    }
    let reads = reads_of(&fixture, &team, runs[0].0).await;
    let run_ids: Vec<RunId> = runs.iter().map(|(run, _)| *run).collect();
    let (fold_kv, fold_blobs) = fixture.fold(&team, &run_ids).await;
    let mut folded = Stored::default();
    for run in &run_ids {
        folded += fixture.stored(&team, *run, true).await;
    }
    let folded_reads = reads_of(&fixture, &team, runs[0].0).await;
    Logged {
        batches: batches_sent,
        points: points_in(workload),
        body_bytes,
        api_requests,
        kv,
        blobs,
        elapsed,
        stored,
        folded,
        fold_kv,
        fold_blobs,
        reads,
        folded_reads,
    }
}

/// The reads a teammate makes of a run over HTTP, as the web app does: the run page,
/// a chart of one series (downsampled to 1,000 points) and its exact points, paged.
async fn reads_of(fixture: &Fixture, team: &Team, run: RunId) -> Vec<Read> {
    let base = sextant_tests::serve_state(fixture.state.clone()).await;
    let client = reqwest::Client::new();
    let get = |url: String| {
        let request = client.get(url).bearer_auth(&team.token);
        async move {
            let response = request.send().await.expect("the server answers");
            assert!(response.status().is_success(), "{}", response.status());
            response.json::<Value>().await.expect("JSON")
        }
    };
    let series = format!("{base}/v1/runs/{run}/series/train/loss");
    let mut reads = Vec::new();

    fixture.kv.take();
    fixture.blobs.take();
    get(format!("{base}/v1/runs/{run}")).await;
    reads.push(Read {
        what: "run page",
        http_requests: 1,
        kv: fixture.kv.take(),
        blobs: fixture.blobs.take(),
    });

    let chart = get(format!("{series}?max_points=1000")).await;
    assert!(chart["steps"].as_array().expect("steps").len() <= 1000);
    reads.push(Read {
        what: "chart (1,000 of 62,500 points)",
        http_requests: 1,
        kv: fixture.kv.take(),
        blobs: fixture.blobs.take(),
    });

    let (mut points, mut pages, mut cursor) = (0, 0, None::<String>);
    loop {
        let url = match &cursor {
            Some(cursor) => format!("{series}?cursor={cursor}"),
            None => series.clone(),
        };
        let page = get(url).await;
        pages += 1;
        points += page["steps"].as_array().expect("steps").len();
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    assert_eq!(points, STEPS);
    reads.push(Read {
        what: "exact (62,500 points)",
        http_requests: pages,
        kv: fixture.kv.take(),
        blobs: fixture.blobs.take(),
    });
    reads
}

fn dollars(amount: f64) -> String {
    if amount >= 0.01 {
        format!("${amount:.3}")
    } else {
        format!("${amount:.5}")
    }
}

fn print_logging(results: &[Logged]) {
    let points = results[0].points;
    println!(
        "\n## Logging {points} points ({RUNS} runs of {STEPS} steps, 7 series), by batch size"
    );
    println!(
        "{:>12} {:>8} {:>10} {:>10} {:>12} {:>12} {:>11} {:>12}",
        "points/batch", "batches", "WRU", "RRU", "WRU/M pts", "RRU/M pts", "DDB req/b", "body KB/b"
    );
    for r in results {
        println!(
            "{:>12.0} {:>8} {:>10} {:>10} {:>12.0} {:>12.0} {:>11.2} {:>12.1}",
            r.points as f64 / r.batches as f64,
            r.batches,
            r.kv.write_units(),
            r.kv.read_units(),
            r.per_million(r.kv.write_units()),
            r.per_million(r.kv.read_units()),
            r.per_batch(r.kv.requests()),
            r.per_batch(r.body_bytes) / 1024.0,
        );
    }

    println!("\nDynamoDB requests per batch, and WRU + RRU per million points, by operation:");
    print!("{:>12}", "points/batch");
    for op in Operation::ALL {
        print!(" {:>20}", op.name());
    }
    println!();
    for r in results {
        print!("{:>12.0}", r.points as f64 / r.batches as f64);
        for op in Operation::ALL {
            let tally = r.kv.of(op);
            let cell = format!(
                "{:.2} ({:.0})",
                r.per_batch(tally.requests),
                r.per_million(tally.write_units + tally.read_units)
            );
            print!(" {cell:>20}");
        }
        println!();
    }
    for r in results {
        let s3 = r.blobs.in_class(RequestClass::PutCopyPostList)
            + r.blobs.in_class(RequestClass::GetAndOther);
        assert_eq!(s3, 0, "numeric series never touch S3");
    }
}

fn print_reads(results: &[Logged]) {
    println!(
        "\n## Reading train/loss of one run as logged and after the fold (HTTP, session token)"
    );
    println!(
        "{:>12} {:<7} {:<32} {:>6} {:>9} {:>8} {:>7} {:>12}",
        "points/batch", "", "read", "HTTP", "DDB req", "RRU", "S3 GET", "cost"
    );
    for r in results {
        for (phase, reads) in [("logged", &r.reads), ("folded", &r.folded_reads)] {
            for read in reads {
                let gets = read.blobs.in_class(RequestClass::GetAndOther);
                println!(
                    "{:>12.0} {:<7} {:<32} {:>6} {:>9} {:>8} {:>7} {:>12}",
                    r.points as f64 / r.batches as f64,
                    phase,
                    read.what,
                    read.http_requests,
                    read.kv.requests(),
                    read.kv.read_units(),
                    gets,
                    dollars(
                        read.kv.read_units() as f64 * price::READ_UNIT
                            + gets as f64 * price::S3_GET_CLASS
                            + read.http_requests as f64
                                * (price::API_REQUEST + price::LAMBDA_REQUEST)
                    ),
                );
            }
        }
    }
}

fn print_dollars(title: &str, results: &[Logged]) {
    let plan = PricePlan::default();
    let plan_price = plan
        .per_million_points
        .to_f64()
        .expect("a price in dollars");
    println!("\n## {title}");
    println!(
        "{:>12} {:>10} {:>10} {:>10} {:>11} {:>11} {:>10} {:>10} {:>10} {:>10} {:>10}",
        "points/batch",
        "DDB write",
        "DDB read",
        "Lambda req",
        "Lambda dur*",
        "(ms/batch*)",
        "API GW",
        "fold",
        "total",
        "plan",
        "margin"
    );
    for r in results {
        let scale = MILLION / r.points as f64;
        let writes = r.kv.write_units() as f64 * scale * price::WRITE_UNIT;
        let reads = r.kv.read_units() as f64 * scale * price::READ_UNIT;
        let batches = r.batches as f64 * scale;
        let lambda_requests = batches * price::LAMBDA_REQUEST;
        let seconds = r.lambda_seconds_per_batch();
        let lambda_duration = batches * seconds * lambda::MEMORY_GB * price::LAMBDA_GB_SECOND;
        let api = r.api_requests as f64 * scale * price::API_REQUEST;
        let fold = fold_cost(r);
        let total = writes + reads + lambda_requests + lambda_duration + api + fold;
        println!(
            "{:>12.0} {:>10} {:>10} {:>10} {:>11} {:>11.1} {:>10} {:>10} {:>10} {:>10} {:>9.0}%",
            r.points as f64 / r.batches as f64,
            dollars(writes),
            dollars(reads),
            dollars(lambda_requests),
            dollars(lambda_duration),
            seconds * 1000.0,
            dollars(api),
            dollars(fold),
            dollars(total),
            dollars(plan_price),
            (plan_price - total) / plan_price * 100.0,
        );
    }
    println!(
        "* estimated: measured CPU time per batch ({}) / {:.3} CPU share at 512 MB, plus {} ms per DynamoDB request",
        results
            .iter()
            .map(|r| format!("{:.2} ms", r.cpu_per_batch().as_secs_f64() * 1000.0))
            .collect::<Vec<_>>()
            .join(", "),
        lambda::CPU_SHARE,
        lambda::DYNAMODB_ROUND_TRIP * 1000.0,
    );
    println!(
        "  plan: {} per million points after {} free a month; margin = (plan - AWS) / plan",
        dollars(plan_price),
        plan.free_points
    );
}

fn print_storage(results: &[Logged]) {
    let plan = PricePlan::default();
    let plan_gb_month = plan.per_gb_month.to_f64().expect("a price");
    println!("\n## Storing 1,000,000 points for a month, as logged and after the fold");
    println!(
        "{:>12} {:<7} {:>8} {:>7} {:>12} {:>14} {:>14} {:>14}",
        "points/batch", "", "items", "blocks", "bytes/point", "+100 B/item", "AWS", "plan charges"
    );
    for r in results {
        for (phase, stored) in [("logged", r.stored), ("folded", r.folded)] {
            let scale = MILLION / r.points as f64;
            let billed = (stored.item_bytes + stored.block_bytes) as f64 * scale;
            let item_bytes = (stored.item_bytes + 100 * stored.items) as f64 * scale;
            let block_bytes = stored.block_bytes as f64 * scale;
            let aws = item_bytes / 1e9 * (price::DYNAMODB_GB_MONTH + price::PITR_GB_MONTH)
                + block_bytes / 1e9 * price::S3_GB_MONTH;
            println!(
                "{:>12.0} {:<7} {:>8} {:>7} {:>12.2} {:>14.2} {:>14} {:>14}",
                r.points as f64 / r.batches as f64,
                phase,
                stored.items,
                stored.blocks,
                billed / MILLION,
                (item_bytes + block_bytes) / MILLION,
                dollars(aws),
                dollars(billed / 1e9 * plan_gb_month),
            );
        }
    }
    println!(
        "  AWS: items at {}/GB-month DynamoDB + {}/GB-month PITR on their bytes plus 100 B an \
         item, blocks at {}/GB-month S3; plan: {}/GB-month on the bytes it counts, after {} \
         GB-months free",
        dollars(price::DYNAMODB_GB_MONTH),
        dollars(price::PITR_GB_MONTH),
        dollars(price::S3_GB_MONTH),
        dollars(plan_gb_month),
        plan.free_gb_months
    );
}

/// What folding a run's items into blocks costs: the hourly run's fold, then its
/// deletion of the sealed items.
fn fold_cost(r: &Logged) -> f64 {
    (r.fold_kv.write_units() as f64 * price::WRITE_UNIT
        + r.fold_kv.read_units() as f64 * price::READ_UNIT
        + r.fold_blobs.in_class(RequestClass::PutCopyPostList) as f64 * price::S3_PUT_CLASS
        + r.fold_blobs.in_class(RequestClass::GetAndOther) as f64 * price::S3_GET_CLASS)
        * MILLION
        / r.points as f64
}

fn print_folding(results: &[Logged]) {
    println!("\n## Folding the logged runs into blocks (the hourly run), per million points");
    println!(
        "{:>12} {:>9} {:>8} {:>8} {:>8} {:>8} {:>10}",
        "points/batch", "DDB req", "WRU", "RRU", "S3 PUT", "S3 GET", "cost"
    );
    for r in results {
        println!(
            "{:>12.0} {:>9.0} {:>8.0} {:>8.0} {:>8.0} {:>8.0} {:>10}",
            r.points as f64 / r.batches as f64,
            r.per_million(r.fold_kv.requests()),
            r.per_million(r.fold_kv.write_units()),
            r.per_million(r.fold_kv.read_units()),
            r.per_million(r.fold_blobs.in_class(RequestClass::PutCopyPostList)),
            r.per_million(r.fold_blobs.in_class(RequestClass::GetAndOther)),
            dollars(fold_cost(r)),
        );
    }
}

/// One idle hour of the metering function (no points logged) with `storers` teams that
/// store data, and the close of a month: what a deployment pays when nobody uses it.
async fn idle_metering() {
    println!("\n## Metering when nobody logs: one hourly run, and the monthly close");
    println!(
        "{:>8} {:<14} {:>9} {:>6} {:>6} {:>8} {:>12}",
        "storers", "run", "DDB req", "RRU", "WRU", "S3 PUT", "per month"
    );
    let first = time::macros::datetime!(2030-01-15 10:00 UTC);
    for storers in [0, 1, 10] {
        let fixture = Fixture::new();
        for n in 0..storers {
            let team = fixture.team(n).await;
            let run = fixture.new_run(&team).await;
            let batch: LogBatch = serde_json::from_value(serde_json::json!({
                "batch_id": "b",
                "series": {"loss": {"steps": [1, 2], "values": [0.5, 0.25]}}
            }))
            .expect("a batch");
            batch::log(
                &fixture.state.store,
                fixture.state.intake(),
                &team.caller.tenant,
                run,
                batch,
            )
            .await
            .expect("stored");
        }
        // The first run finds no cursors; from the next on, one run does one hour.
        sextant_cli::metering(&fixture.state)
            .run(MeteringHour::ending_at_or_before(first))
            .await
            .expect("the first hourly run");
        fixture.kv.take();
        fixture.blobs.take();
        let hour = MeteringHour::ending_at_or_before(first + time::Duration::HOUR);
        let report = sextant_cli::metering(&fixture.state)
            .run(hour)
            .await
            .expect("the hourly run");
        assert_eq!(report.hours, 1);
        let hour = fixture.kv.take();
        let monthly = |usage: &KvUsage, blobs: &BlobUsage, times: f64| {
            times
                * (usage.read_units() as f64 * price::READ_UNIT
                    + usage.write_units() as f64 * price::WRITE_UNIT
                    + blobs.in_class(RequestClass::PutCopyPostList) as f64 * price::S3_PUT_CLASS
                    + blobs.in_class(RequestClass::GetAndOther) as f64 * price::S3_GET_CLASS)
        };
        let hour_blobs = fixture.blobs.take();
        println!(
            "{:>8} {:<14} {:>9} {:>6} {:>6} {:>8} {:>12}",
            storers,
            "hourly",
            hour.requests(),
            hour.read_units(),
            hour.write_units(),
            hour_blobs.in_class(RequestClass::PutCopyPostList),
            dollars(monthly(
                &hour,
                &hour_blobs,
                f64::from(billing::HOURS_PER_GB_MONTH)
            )),
        );
        billing::close_month(
            &fixture.state.store,
            &fixture.state.settings.plan,
            BillingMonth::of(first),
        )
        .await
        .expect("close");
        let close = fixture.kv.take();
        let close_blobs = fixture.blobs.take();
        println!(
            "{:>8} {:<14} {:>9} {:>6} {:>6} {:>8} {:>12}",
            storers,
            "month close",
            close.requests(),
            close.read_units(),
            close.write_units(),
            close_blobs.in_class(RequestClass::PutCopyPostList),
            dollars(monthly(&close, &close_blobs, 1.0)),
        );
    }
    println!(
        "  per month: DynamoDB and S3 requests only, {} hourly runs; the Lambda, scheduler \
         and log costs of the runs are in docs/cost.md",
        billing::HOURS_PER_GB_MONTH
    );
}

fn main() {
    // One thread: CPU time per batch is a per-core figure.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let workload = workload(RUNS, STEPS);
    let results: Vec<Logged> = WINDOWS
        .iter()
        .map(|&window| runtime.block_on(log_and_read(&workload, window, Client::Sdk)))
        .collect();
    print_logging(&results);
    print_reads(&results);
    print_dollars(
        "AWS cost of 1,000,000 logged points at us-east-1 list prices, beside the default plan",
        &results,
    );
    // The issue's hardest case: one metric at ten steps a second, 50 points a request.
    let scalar: Vec<Series> = workload
        .iter()
        .filter(|series| series.name == "train/loss")
        .cloned()
        .collect();
    let window = (STEPS_A_SECOND * SDK_FLUSH_SECONDS) as i64;
    print_dollars(
        "One scalar (train/loss) at ten steps a second, sent every five seconds",
        &[runtime.block_on(log_and_read(&scalar, window, Client::Sdk))],
    );
    // Neptune's client sends what waited half a second (its sender's sleep).
    let neptune_window = (STEPS_A_SECOND * neptune::SEND_EVERY_SECONDS) as i64;
    let neptune = [
        runtime.block_on(log_and_read(&workload, neptune_window, Client::Neptune)),
        runtime.block_on(log_and_read(&workload, WINDOWS[1], Client::Neptune)),
    ];
    print_logging(&neptune);
    print_dollars(
        "The workload from Neptune's client (neptune-scale): a request every half second, and every five",
        &neptune,
    );
    print_folding(&results);
    print_storage(&results);
    runtime.block_on(idle_metering());
    runtime.block_on(uploads());
}

/// Images and artifacts: what storing each costs, and what the hourly run's sweep
/// pays to settle the ledger note each upload left (`shared/domain/src/sweep.rs`).
async fn uploads() {
    const IMAGES: usize = 100;
    const IMAGE_BYTES: usize = 100 * 1024;
    const ARTIFACTS: usize = 10;
    const ARTIFACT_BYTES: usize = 1024 * 1024;
    println!("\n## Uploads: {IMAGES} images of 100 KiB, {ARTIFACTS} artifacts of 1 MiB");
    println!(
        "{:<30} {:>8} {:>7} {:>7} {:>7} {:>8} {:>8} {:>12}",
        "step", "DDB req", "RRU", "WRU", "S3 PUT", "S3 GET", "S3 DEL", "cost each"
    );
    let fixture = Fixture::new();
    let team = fixture.team(0).await;
    let run = fixture.new_run(&team).await;
    let clock = Arc::new(ManualClock::starting_at(
        time::macros::datetime!(2030-01-15 10:05 UTC),
    ));
    let state = fixture.state.clone().with_clock(clock.clone());
    let tenant = &team.caller.tenant;
    // A deployment's sweep has run before: its cursor is set, so the runs below look
    // at the hours since, not the first run's two weeks.
    sextant_cli::metering(&state)
        .sweep_due(state.now())
        .await
        .expect("the first sweep");
    let print = |step: &str, count: usize| {
        let (kv, blobs) = (fixture.kv.take(), fixture.blobs.take());
        let cost = kv.read_units() as f64 * price::READ_UNIT
            + kv.write_units() as f64 * price::WRITE_UNIT
            + blobs.in_class(RequestClass::PutCopyPostList) as f64 * price::S3_PUT_CLASS
            + blobs.in_class(RequestClass::GetAndOther) as f64 * price::S3_GET_CLASS;
        let each = |n: u64| n as f64 / count as f64;
        println!(
            "{:<30} {:>8.2} {:>7.2} {:>7.2} {:>7.2} {:>8.2} {:>8.2} {:>12}",
            step,
            each(kv.requests()),
            each(kv.read_units()),
            each(kv.write_units()),
            each(blobs.in_class(RequestClass::PutCopyPostList)),
            each(blobs.in_class(RequestClass::GetAndOther)),
            each(blobs.in_class(RequestClass::Free)),
            // Fractions of a cent: dollars() would round them away.
            format!("${:.7}", cost / count as f64),
        );
    };
    fixture.kv.take();
    fixture.blobs.take();
    for n in 0..IMAGES {
        let mut image = b"\x89PNG\r\n\x1a\n".to_vec();
        image.extend((0..IMAGE_BYTES).map(|i| (i * 31 + n) as u8));
        images::log(
            &state.store,
            state.intake(),
            tenant,
            run,
            "samples",
            n as i64,
            Bytes::from(image),
        )
        .await
        .expect("an image");
    }
    print("log an image", IMAGES);
    for n in 0..ARTIFACTS {
        let body: Vec<u8> = (0..ARTIFACT_BYTES).map(|i| (i * 7 + n) as u8).collect();
        let path = format!("outputs/{n}.bin");
        let new: NewArtifact = serde_json::from_value(serde_json::json!({
            "path": path,
            "size": body.len(),
            "sha256": hex::encode(Sha256::digest(&body)),
        }))
        .expect("a registration");
        artifacts::register(&state.store, tenant, run, new)
            .await
            .expect("registered");
        // The client's PUT to the presigned URL, billed to the bucket's owner.
        let key = artifacts::blob_key(tenant, run, &ArtifactPath::parse(&path).unwrap()).unwrap();
        fixture
            .raw_blobs
            .put(&key, Bytes::from(body))
            .await
            .expect("uploaded");
        let completion: Completion =
            serde_json::from_value(serde_json::json!({"path": path})).expect("a completion");
        let sealed = artifacts::complete(
            &state.store,
            &state.marks,
            state.settings.verify_slice_bytes,
            tenant,
            run,
            completion,
        )
        .await
        .expect("completed");
        assert!(matches!(sealed, Completed::Sealed(_)));
    }
    print("register, PUT, complete", ARTIFACTS);
    // Every note falls due once its URL has expired; the hourly run after settles it.
    clock.advance(time::Duration::hours(3));
    let report = sextant_cli::metering(&state)
        .sweep_due(state.now())
        .await
        .expect("the sweep");
    assert_eq!(report.notes, IMAGES + ARTIFACTS);
    assert_eq!(report.bytes_deleted, 0, "every upload was claimed");
    print("sweep: settle a note", IMAGES + ARTIFACTS);
}

/// Neptune's client, as the bench drives it: the workload as the `RunOperation`s
/// `neptune-scale` sends (one snapshot a step, every series of that step in it), into
/// the API's router in process.
mod neptune {
    use axum::Router;
    use axum::body::Body;
    use axum::http::Request;
    use sextant_domain::ids::RunId;
    use sextant_domain::runs;
    use sextant_neptune_proto::{
        CreateRun, Message, Operation, RunOperation, Step, SubmitResponse, Timestamp,
        UpdateRunSnapshot, UpdateRunSnapshots, Value, value,
    };
    use sextant_tests::workload::Series;
    use tower::ServiceExt;

    use super::{Fixture, Team};

    /// How often the client's sender wakes (`SYNC_THREAD_SLEEP_TIME`).
    pub const SEND_EVERY_SECONDS: f64 = 0.5;
    const PROJECT: &str = "acme/cost";

    pub struct Ingest {
        router: Router,
        token: String,
    }

    impl Ingest {
        pub async fn new(fixture: &Fixture, team: &Team) -> Self {
            let router =
                sextant_edge::http::api_service(sextant_api::routes(), fixture.state.clone());
            // The team's caller stands for its API key, as the client's exchange does.
            let pair = sextant_domain::authentication::exchange_for_pair(
                &fixture.state.keyring,
                fixture.state.settings.access_token_ttl,
                &team.caller,
            )
            .expect("an access token");
            Self {
                router,
                token: pair.access,
            }
        }

        pub async fn send(&self, body: Vec<u8>) {
            let request = Request::post(sextant_api::neptune::INGEST)
                .header("authorization", format!("Bearer {}", self.token))
                .header("content-type", "application/x-protobuf")
                .body(Body::from(body))
                .expect("a request");
            let response = self
                .router
                .clone()
                .oneshot(request)
                .await
                .expect("an answer");
            assert!(response.status().is_success(), "{}", response.status());
            let body = axum::body::to_bytes(response.into_body(), usize::MAX)
                .await
                .expect("a body");
            let answer = SubmitResponse::decode(body).expect("a SubmitResponse");
            // A refused field shows in the id after the digest.
            assert!(!answer.request_ids[0].contains('.'), "{answer:?}");
        }

        /// Creates the run as the client does, and answers it with the operations that
        /// log `run`'s series of the workload, `window` steps a request.
        pub async fn new_run(
            &self,
            fixture: &Fixture,
            team: &Team,
            run: usize,
            workload: &[Series],
            window: i64,
        ) -> (RunId, Vec<Vec<u8>>) {
            let run_id = format!("cost-{run}");
            let create = RunOperation {
                project: PROJECT.into(),
                run_id: run_id.clone(),
                operation: Some(Operation::Create(CreateRun::default())),
                ..RunOperation::default()
            };
            self.send(create.encode_to_vec()).await;
            let record = runs::find_external(
                &fixture.state.store,
                &team.caller.tenant,
                find_project(fixture, team).await,
                &run_id,
            )
            .await
            .expect("a lookup")
            .expect("the run");
            (record.id, operations(workload, run, window, &run_id))
        }
    }

    async fn find_project(fixture: &Fixture, team: &Team) -> sextant_domain::ids::ProjectId {
        sextant_domain::projects::find(&fixture.state.store, &team.caller.tenant, "cost")
            .await
            .expect("the project")
            .id
    }

    fn operations(workload: &[Series], run: usize, window: i64, run_id: &str) -> Vec<Vec<u8>> {
        let (series, last) = sextant_tests::workload::of_run(workload, run);
        let mut snapshots: Vec<UpdateRunSnapshot> = (0..=last)
            .map(|step| UpdateRunSnapshot {
                step: Some(Step {
                    whole: step as u64,
                    micro: 0,
                }),
                ..UpdateRunSnapshot::default()
            })
            .collect();
        for s in &series {
            for i in 0..s.steps.len() {
                let snapshot = &mut snapshots[s.steps[i] as usize];
                let at = s.timestamps[i];
                snapshot.timestamp = Some(Timestamp {
                    seconds: at.floor() as i64,
                    nanos: ((at - at.floor()) * 1e9) as i32,
                });
                snapshot.append.insert(
                    s.name.clone(),
                    Value {
                        value: Some(value::Value::Float64(s.values[i])),
                    },
                );
            }
        }
        snapshots.retain(|snapshot| !snapshot.append.is_empty());
        let mut bodies = Vec::new();
        let mut start = 0;
        while start < snapshots.len() {
            let first_step = snapshots[start].step.map_or(0, |step| step.whole) as i64;
            let end = snapshots[start..]
                .iter()
                .position(|s| s.step.map_or(0, |step| step.whole) as i64 >= first_step + window)
                .map_or(snapshots.len(), |n| start + n);
            let operation = RunOperation {
                project: PROJECT.into(),
                run_id: run_id.to_owned(),
                operation: Some(Operation::UpdateBatch(UpdateRunSnapshots {
                    snapshots: snapshots[start..end].to_vec(),
                })),
                ..RunOperation::default()
            };
            bodies.push(operation.encode_to_vec());
            start = end;
        }
        bodies
    }
}
