//! Issue 6's "done when": across 72 simulated hours that cross the end of October, with
//! bursts of logging, client retries, failures injected in the middle of batches,
//! image logging, artifact uploads and deletes and whole runs deleted, each team's
//! monthly report bills exactly the distinct points stored and the hand-computed
//! integral of the bytes stored, to the byte-second, which the team's runs' counters
//! add up to too; rolling any hour up again or closing the month again changes nothing; a
//! closed report never changes; and no team's usage shows in another's.
//!
//! The simulation drives the domain functions directly (as `metering.rs` does) on the
//! embedded store and a local blob directory, both wrapped in `faults` so a chosen
//! upcoming storage call fails before or after it is applied. A manual clock moves
//! through the hours; a seeded RNG makes every run the same (set `SEXTANT_SIM_SEED`
//! to explore other seeds).
//!
//! The oracle never reads the usage counters:
//! - points: the test's own record of every batch it sent and whether (and in which
//!   hour) it was first committed, checked against what the read APIs answer for each
//!   run still there (and for a run about to be deleted, just before it goes);
//! - bytes: each time the clock moves (it stands still while the test acts), the
//!   sizes of the images and artifacts the test stored, plus the size (as DynamoDB bills it, `Item::billed_size`) of the chunk items in the
//!   store written by the attempt that committed each batch: the batch id is in a
//!   chunk's key and the attempt's time in its `w` attribute, and the test knows both.
//!   Chunks are summed from the store rather than recomputed because their size is
//!   whatever the codec made of the points (and of the server's timestamps). The run
//!   record's `stored_bytes` is not used: it is written in the same transaction as the
//!   counter it would be checking (it is checked against the chunks instead), and a
//!   sum over every chunk item would count the chunks failed attempts leave hidden.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use bytes::Bytes;
use rand::rngs::Xoshiro256PlusPlus;
use rand::seq::{IndexedRandom, SliceRandom};
use rand::{RngExt, SeedableRng};
use rust_decimal::Decimal;
use sextant_domain::accounts::{self, DisplayName, Email};
use sextant_domain::artifacts::{self, Completion, NewArtifact};
use sextant_domain::billing::{self, PricePlan, Report, ReportStatus};
use sextant_domain::calendar::{self, BillingMonth, hour_of};
use sextant_domain::credentials::Caller;
use sextant_domain::credentials::jwt::Keyring;
use sextant_domain::credentials::password::Password;
use sextant_domain::deletion;
use sextant_domain::error::{Coded, ErrorCode};
use sextant_domain::floats::JsonF64;
use sextant_domain::ids::RunId;
use sextant_domain::images;
use sextant_domain::metering;
use sextant_domain::projects::{self, Project, ProjectName};
use sextant_domain::runs::summary::SeriesKind;
use sextant_domain::runs::{self, NewRun};
use sextant_domain::series::batch::{self, LogBatch, LogOutcome, SeriesColumns, TextLine};
use sextant_domain::series::{self, Points, SeriesError, TextPoints, hot};
use sextant_domain::tenancy::Tenant;
use sextant_edge::auth::{self};
use sextant_edge::state::{AppState, Settings};
use sextant_storage::Storage;
use sextant_storage::blob::{BlobKey, BlobStore};
use sextant_storage::clock::{Clock, ManualClock};
use sextant_storage::kv::{KvStore, Query};
use sextant_storage_local::EmbeddedKv;
use sextant_storage_local::LocalBlobs;
use sextant_tests::faults::{Faults, Fired, Op, Timing};
use sextant_tests::{local_blobs_with_routes, unique};
use sha2::{Digest, Sha256};
use tempfile::TempDir;
use time::macros::datetime;
use time::{Duration, OffsetDateTime};

const START: OffsetDateTime = datetime!(2026-10-30 0:00 UTC);
const HOURS: i64 = 72;
const DEFAULT_SEED: u64 = 0x5E47_A470_0006;
const IMAGE_SERIES: [&str; 2] = ["samples", "attention"];

fn hour_at(index: i64) -> OffsetDateTime {
    START + Duration::hours(index)
}

fn october() -> BillingMonth {
    BillingMonth::parse("2026-10").unwrap()
}

fn november() -> BillingMonth {
    BillingMonth::parse("2026-11").unwrap()
}

/// Small free allowances and large prices, so every line item has an amount to check.
fn plan() -> PricePlan {
    PricePlan {
        per_million_points: Decimal::new(12_345, 2),
        per_gb_month: Decimal::new(98_765, 2),
        free_points: 5_000,
        free_gb_months: Decimal::new(1, 6),
        ..PricePlan::default()
    }
}

/// Draws from a shuffled deck, so every kind comes up before any comes up twice.
#[derive(Debug)]
struct Deck<T> {
    kinds: Vec<T>,
    left: Vec<T>,
}

impl<T: Copy> Deck<T> {
    fn new(kinds: &[T]) -> Self {
        Self {
            kinds: kinds.to_vec(),
            left: Vec::new(),
        }
    }

    fn draw(&mut self, rng: &mut Xoshiro256PlusPlus) -> T {
        if self.left.is_empty() {
            self.left = self.kinds.clone();
            self.left.shuffle(rng);
        }
        self.left.pop().expect("a refilled deck")
    }
}

/// Where a log batch fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BatchFault {
    /// The chunk writes fail: nothing is stored.
    BeforeChunks,
    /// The chunks are written, then the request dies before its commit.
    AfterChunks,
    /// The commit transaction fails without applying.
    CommitBefore,
    /// The commit transaction applies, but the client sees an error.
    CommitAfter,
}

impl BatchFault {
    const ALL: [BatchFault; 4] = [
        BatchFault::BeforeChunks,
        BatchFault::AfterChunks,
        BatchFault::CommitBefore,
        BatchFault::CommitAfter,
    ];

    fn arm(self, faults: &Faults) {
        match self {
            BatchFault::BeforeChunks => faults.fail_next(Op::BatchWrite, Timing::Before),
            BatchFault::AfterChunks => faults.fail_next(Op::BatchWrite, Timing::After),
            BatchFault::CommitBefore => faults.fail_next(Op::Transact, Timing::Before),
            BatchFault::CommitAfter => faults.fail_next(Op::Transact, Timing::After),
        }
    }
}

/// What the client sent in one batch; rebuilt into a `LogBatch` for every attempt.
#[derive(Debug, Clone)]
struct Body {
    id: String,
    /// Its number in the run's sender session (`SESSION`), for a batch sent as the SDK
    /// sends them; None for one idempotent by its id alone.
    sequence: Option<i64>,
    /// Per series: (step, value, client timestamp).
    numbers: BTreeMap<String, Vec<(i64, f64, f64)>>,
    /// Per series: (step, text); the server stamps the time.
    text: BTreeMap<String, Vec<(i64, String)>>,
}

impl Body {
    fn points(&self) -> u64 {
        (self.numbers.values().map(Vec::len).sum::<usize>()
            + self.text.values().map(Vec::len).sum::<usize>()) as u64
    }

    fn batch(&self) -> LogBatch {
        LogBatch {
            batch_id: Some(self.id.clone()),
            session: self.sequence.map(|_| SESSION.to_owned()),
            sequence: self.sequence,
            series: self
                .numbers
                .iter()
                .map(|(name, points)| {
                    (
                        name.clone(),
                        SeriesColumns {
                            steps: points.iter().map(|p| p.0).collect(),
                            values: points.iter().map(|p| JsonF64(p.1)).collect(),
                            timestamps: Some(points.iter().map(|p| p.2).collect()),
                        },
                    )
                })
                .collect(),
            text: self
                .text
                .iter()
                .map(|(name, lines)| {
                    (
                        name.clone(),
                        lines
                            .iter()
                            .map(|(step, text)| TextLine {
                                step: *step,
                                text: text.clone(),
                                timestamp: None,
                            })
                            .collect(),
                    )
                })
                .collect(),
            step_units: BTreeMap::new(),
            heartbeat: false,
        }
    }
}

/// The sender session of every run's numbered batches. A session sends in order, one
/// batch at a time: a numbered batch that fails is sent again at once or given up,
/// before the next is sent.
const SESSION: &str = "sdk";

#[derive(Debug)]
struct BatchSim {
    body: Body,
    /// When the attempt that committed it was made, once one did: its points read
    /// from then on. For a batch committed whole, the time tells that attempt's chunks
    /// from those of attempts that failed (each attempt writes chunks of its own,
    /// stamped with its time).
    committed: Option<OffsetDateTime>,
    /// Whether its points are counted: at once for a batch committed whole, by a round
    /// for one stored hot (`series::hot`); they count in the hour that happens in.
    settled: bool,
}

/// An image as the test knows it: series, step, size.
type ImageSim = (String, i64, u64);

#[derive(Debug, Default)]
struct RunSim {
    next_step: i64,
    next_batch: u32,
    /// The number of the run's last numbered batch sent, and of the last committed.
    sent_sequence: i64,
    committed_sequence: i64,
    next_artifact: u32,
    batches: BTreeMap<String, BatchSim>,
    images: Vec<ImageSim>,
    /// Sealed artifacts: path -> size.
    artifacts: BTreeMap<String, u64>,
    /// Uploaded but not sealed (the completion failed): path -> size, and when its
    /// upload URLs expire (after which the hourly sweep takes it for abandoned).
    unsealed: BTreeMap<String, (u64, OffsetDateTime)>,
}

#[derive(Debug)]
struct TenantSim {
    label: &'static str,
    caller: Caller,
    project: Option<Project>,
    /// The first simulated hour it does anything in, and how often it bursts.
    first_hour: i64,
    busy: f64,
    runs: BTreeMap<RunId, RunSim>,
    deleted: BTreeMap<RunId, RunSim>,
    /// Failed batches the client will send again: run, batch id, hour index.
    retries: Vec<(RunId, String, i64)>,
    /// Completions the client will try again: run, path, hour index.
    completions: Vec<(RunId, String, i64)>,
    /// Points committed, by the hour they were committed in (deleted runs' included).
    points: BTreeMap<OffsetDateTime, u64>,
    /// The bytes the tenant stored, as steps: from each Unix second on (the clock
    /// floored, as usage counts), until the next step.
    storage: Vec<(i64, u64)>,
    runs_created: u32,
}

impl TenantSim {
    fn tenant(&self) -> Tenant {
        self.caller.tenant
    }

    fn run_mut(&mut self, run: RunId) -> Option<&mut RunSim> {
        self.runs.get_mut(&run)
    }
}

#[derive(Debug, Clone)]
enum Action {
    Log,
    Duplicate,
    Twin,
    Retry(RunId, String),
    Complete(RunId, String),
    Image,
    Upload,
    DeleteArtifact,
    NewRun,
    DeleteRun,
}

/// Everything one tenant's billing depends on, to compare before and after.
#[derive(Debug, PartialEq)]
struct Snapshot {
    october_report: Vec<u8>,
    october_blob: Option<Vec<u8>>,
    october_usage: String,
    november_report: Vec<u8>,
    november_usage: String,
    hours: Vec<metering::HourlyUsage>,
}

impl Snapshot {
    /// What differs between two snapshots, by name.
    fn differences(&self, other: &Snapshot) -> Vec<&'static str> {
        [
            (
                "October's report",
                self.october_report == other.october_report,
            ),
            (
                "October's stored report",
                self.october_blob == other.october_blob,
            ),
            ("October's usage", self.october_usage == other.october_usage),
            (
                "November's report",
                self.november_report == other.november_report,
            ),
            (
                "November's usage",
                self.november_usage == other.november_usage,
            ),
            ("the hourly records", self.hours == other.hours),
        ]
        .into_iter()
        .filter(|(_, same)| !same)
        .map(|(what, _)| what)
        .collect()
    }
}

struct Sim {
    seed: u64,
    rng: Xoshiro256PlusPlus,
    state: AppState,
    clock: Arc<ManualClock>,
    faults: Arc<Faults>,
    /// The stores beneath the faults, for the oracle's own reads.
    kv: Arc<dyn KvStore>,
    blobs: Arc<dyn BlobStore>,
    http: reqwest::Client,
    tenants: Vec<TenantSim>,
    /// The last hour rolled up, as the test tracks it.
    cursor: Option<OffsetDateTime>,
    batch_faults: Deck<BatchFault>,
    image_faults: Deck<(Op, Timing)>,
    seal_faults: Deck<(Op, Timing)>,
    delete_faults: Deck<(Op, Timing)>,
    stats: BTreeMap<String, u64>,
    violations: Vec<String>,
    _dir: TempDir,
}

impl Sim {
    async fn new(seed: u64) -> Self {
        sextant_domain::telemetry::init();
        let (local, dir): (Arc<LocalBlobs>, TempDir) = local_blobs_with_routes().await;
        let kv: Arc<dyn KvStore> =
            Arc::new(EmbeddedKv::open(&dir.path().join("store.redb")).expect("store"));
        let blobs: Arc<dyn BlobStore> = local;
        let faults = Faults::new();
        let keyring = Keyring::new(&[("test".to_owned(), vec![3; 32])]).expect("keyring");
        let mut settings = Settings::new(None);
        settings.plan = plan();
        let clock = Arc::new(ManualClock::starting_at(START));
        let state = AppState::new(
            Storage {
                kv: faults.kv(Arc::clone(&kv)),
                blobs: faults.blobs(Arc::clone(&blobs)),
            },
            keyring,
            settings,
        )
        .with_clock(clock.clone());
        let mut sim = Self {
            seed,
            rng: Xoshiro256PlusPlus::seed_from_u64(seed),
            state,
            clock,
            faults,
            kv,
            blobs,
            http: reqwest::Client::new(),
            tenants: Vec::new(),
            cursor: None,
            batch_faults: Deck::new(&BatchFault::ALL),
            image_faults: Deck::new(&[
                (Op::BlobPut, Timing::Before),
                (Op::BlobPut, Timing::After),
                (Op::Transact, Timing::Before),
                (Op::Transact, Timing::After),
            ]),
            seal_faults: Deck::new(&[
                (Op::Transact, Timing::Before),
                (Op::Transact, Timing::After),
                (Op::BlobGet, Timing::Before),
            ]),
            delete_faults: Deck::new(&[
                (Op::BlobDelete, Timing::Before),
                (Op::Transact, Timing::Before),
                (Op::Transact, Timing::After),
            ]),
            stats: BTreeMap::new(),
            violations: Vec::new(),
            _dir: dir,
        };
        // A busy team from the start, a quieter one from the ninth hour, and one that
        // does nothing until October is closed.
        for (label, first_hour, busy) in [("a", 0, 0.55), ("b", 8, 0.35), ("c", i64::MAX, 0.0)] {
            let caller = sim.signup().await;
            sim.tenants.push(TenantSim {
                label,
                caller,
                project: None,
                first_hour,
                busy,
                runs: BTreeMap::new(),
                deleted: BTreeMap::new(),
                retries: Vec::new(),
                completions: Vec::new(),
                points: BTreeMap::new(),
                storage: Vec::new(),
                runs_created: 0,
            });
        }
        sim
    }

    async fn signup(&self) -> Caller {
        let signed_up = accounts::signup(
            &self.state.store,
            self.state.sessions(),
            DisplayName::parse("team", "Simulated").unwrap(),
            Email::parse(&format!("{}@example.com", unique("sim"))).unwrap(),
            Password::parse("a long enough password".into()).unwrap(),
            std::net::IpAddr::from(std::net::Ipv4Addr::LOCALHOST),
        )
        .await
        .expect("signup");
        auth::authenticate(
            &self.state,
            &signed_up.api_key,
            sextant_domain::credentials::Plane::Control,
        )
        .await
        .expect("authenticate")
    }

    fn bump(&mut self, stat: impl Into<String>) {
        *self.stats.entry(stat.into()).or_default() += 1;
    }

    fn violation(&mut self, what: String) {
        let at = self.clock.now();
        self.violations
            .push(format!("[seed {:#x}, {at}] {what}", self.seed));
    }

    /// Moves the clock on a little, staying inside the current hour.
    async fn tick(&mut self) {
        let now = self.clock.now();
        let hour = hour_of(now);
        let next = now + Duration::seconds(self.rng.random_range(5..=45));
        // Every attempt at a batch happens at a time of its own (the oracle tells
        // attempts apart by it), and inside the hour the test means.
        assert!(
            next < hour + Duration::HOUR,
            "seed {:#x}: too much to do in the hour from {hour}",
            self.seed
        );
        self.set_clock(next).await;
    }

    /// Moves the clock to `next`, first noting what each team stores: the clock stands
    /// still while the test acts, so what is stored now was stored since the clock was
    /// last moved, and stays until it moves.
    async fn set_clock(&mut self, next: OffsetDateTime) {
        let second = self.clock.now().unix_timestamp();
        for t in 0..self.tenants.len() {
            let bytes = self.stored_bytes(t).await;
            let storage = &mut self.tenants[t].storage;
            if storage.last().map_or(0, |&(_, stored)| stored) != bytes {
                storage.retain(|&(from, _)| from < second);
                storage.push((second, bytes));
            }
        }
        self.clock.set(next);
    }

    fn hour(&self) -> OffsetDateTime {
        hour_of(self.clock.now())
    }

    /// The faults that struck since arming, after disarming any that did not.
    fn struck(&mut self) -> (Vec<Fired>, usize) {
        (self.faults.take_fired(), self.faults.disarm())
    }

    // ---------------------------------------------------------------- the client

    async fn new_run(&mut self, t: usize) -> RunId {
        let tenant = &mut self.tenants[t];
        if tenant.project.is_none() {
            let project = projects::create(
                &self.state.store,
                &tenant.caller,
                ProjectName::parse("simulation").unwrap(),
            )
            .await
            .expect("project");
            tenant.project = Some(project);
        }
        tenant.runs_created += 1;
        let run = runs::create(
            &self.state.store,
            &tenant.caller,
            tenant.project.as_ref().unwrap(),
            NewRun::default(),
        )
        .await
        .expect("run")
        .id;
        tenant.runs.insert(run, RunSim::default());
        self.bump("runs created");
        run
    }

    async fn some_run(&mut self, t: usize) -> RunId {
        let live: Vec<RunId> = self.tenants[t].runs.keys().copied().collect();
        match live.choose(&mut self.rng) {
            Some(run) => *run,
            None => self.new_run(t).await,
        }
    }

    /// A new batch for a run: a few metric series over the run's next steps and some
    /// lines of text.
    /// A new batch for `run`; `numbered` in the run's session, or idempotent by its id.
    fn new_body(&mut self, t: usize, run: RunId, burst: bool, numbered: bool) -> String {
        let rng = &mut self.rng;
        let n: i64 = if burst {
            rng.random_range(100..=2_500)
        } else {
            rng.random_range(5..=200)
        };
        let tenant = &mut self.tenants[t];
        let label = tenant.label;
        let number = tenant.runs_created;
        let run_sim = tenant.run_mut(run).expect("a live run");
        let start = run_sim.next_step;
        run_sim.next_step += n;
        run_sim.next_batch += 1;
        let id = format!("{label}-{run}-{:05}", run_sim.next_batch);
        let sequence = numbered.then(|| {
            run_sim.sent_sequence += 1;
            run_sim.sent_sequence
        });
        let base = self.clock.now().unix_timestamp() as f64;
        let mut numbers = BTreeMap::new();
        for (name, p) in [("train/loss", 1.0), ("train/acc", 0.5), ("lr", 0.3)] {
            if rng.random_bool(p) {
                let f32_valued = rng.random_bool(0.5);
                let points = (0..n)
                    .map(|i| {
                        let value = if f32_valued {
                            f64::from(rng.random::<f32>())
                        } else {
                            rng.random::<f64>() * 10.0 - 5.0
                        };
                        (start + i, value, base + i as f64 * 0.25)
                    })
                    .collect();
                numbers.insert(name.to_owned(), points);
            }
        }
        let mut text = BTreeMap::new();
        if rng.random_bool(0.5) {
            let lines = rng.random_range(1..=20);
            text.insert(
                "stdout".to_owned(),
                (0..lines)
                    .map(|i| {
                        (
                            start + i * n / lines,
                            format!(
                                "run {number} step {} loss {:.5}",
                                start + i,
                                rng.random::<f64>()
                            ),
                        )
                    })
                    .collect(),
            );
        }
        let body = Body {
            id: id.clone(),
            sequence,
            numbers,
            text,
        };
        run_sim.batches.insert(
            id.clone(),
            BatchSim {
                body,
                committed: None,
                settled: false,
            },
        );
        id
    }

    fn body(&self, t: usize, run: RunId, id: &str) -> (Body, Option<OffsetDateTime>, bool) {
        let tenant = &self.tenants[t];
        let (sim, live) = match tenant.runs.get(&run) {
            Some(sim) => (sim, true),
            None => (&tenant.deleted[&run], false),
        };
        let batch = &sim.batches[id];
        (batch.body.clone(), batch.committed, live)
    }

    /// One attempt at a batch, as the ingest function makes it.
    async fn log_body(&self, t: usize, run: RunId, body: &Body) -> Result<LogOutcome, SeriesError> {
        let tenant = self.tenants[t].tenant();
        batch::log(
            &self.state.store,
            self.state.intake(),
            &tenant,
            run,
            body.batch(),
        )
        .await
    }

    fn commit(&mut self, t: usize, run: RunId, id: &str, at: OffsetDateTime) {
        let batch = self.tenants[t]
            .runs
            .get_mut(&run)
            .and_then(|sim| sim.batches.get_mut(id))
            .expect("a batch of a live run");
        assert!(batch.committed.is_none());
        batch.committed = Some(at);
        if let Some(sequence) = batch.body.sequence {
            let run = self.tenants[t].runs.get_mut(&run).expect("a live run");
            run.committed_sequence = run.committed_sequence.max(sequence);
        }
    }

    /// Counts the run's committed batches not yet counted, in the hour of `at`: what a
    /// round does.
    fn settle_run(&mut self, t: usize, run: RunId, at: OffsetDateTime) {
        let ids: Vec<String> = self.tenants[t].runs[&run].batches.keys().cloned().collect();
        for id in ids {
            self.settle(t, run, &id, at);
        }
    }

    fn settle(&mut self, t: usize, run: RunId, id: &str, at: OffsetDateTime) {
        let tenant = &mut self.tenants[t];
        let batch = tenant
            .runs
            .get_mut(&run)
            .and_then(|sim| sim.batches.get_mut(id))
            .expect("a batch of a live run");
        if batch.committed.is_some() && !batch.settled {
            batch.settled = true;
            *tenant.points.entry(hour_of(at)).or_default() += batch.body.points();
        }
    }

    /// Whether the batch is stored hot: one item, counted by a round.
    async fn stored_hot(&self, t: usize, run: RunId, id: &str) -> bool {
        let tenant = self.tenants[t].tenant();
        let query = Query::partition(runs::data_partition(&tenant, run)).prefix("h#");
        let hot = self.kv.query(query).await.expect("query").items;
        let suffix = format!("#{id}");
        hot.iter().any(|item| item.key.sk.ends_with(&suffix))
    }

    /// The books after a batch's commit applied but its write failed after it: stored
    /// hot, it waits for a round; committed whole, it counted.
    async fn stored_unheard(&mut self, t: usize, run: RunId, id: &str, at: OffsetDateTime) {
        self.commit(t, run, id, at);
        if !self.stored_hot(t, run, id).await {
            self.settle(t, run, id, at);
        }
    }

    /// The books after a new batch was stored by a write that went through: a batch
    /// committed whole counts itself; a hot one's round counts every batch of the run
    /// still waiting, itself included.
    async fn stored(&mut self, t: usize, run: RunId, id: &str, at: OffsetDateTime) {
        self.commit(t, run, id, at);
        if self.stored_hot(t, run, id).await {
            self.settle_run(t, run, at);
        } else {
            self.settle(t, run, id, at);
        }
    }

    /// Sends a batch (again, for a retry), maybe with a fault, and keeps the books.
    async fn send(&mut self, t: usize, run: RunId, id: &str, fault: Option<BatchFault>) {
        let (body, committed, live) = self.body(t, run, id);
        if let Some(fault) = fault {
            fault.arm(&self.faults);
            self.bump(format!("batch fault injected: {fault:?}"));
        }
        let outcome = self.log_body(t, run, &body).await;
        let (fired, unfired) = self.struck();
        let at = self.clock.now();
        if !live {
            match outcome {
                Err(err) if err.code() == ErrorCode::NotFound => {
                    self.bump("retries refused: run deleted")
                }
                other => self.violation(format!(
                    "batch {id} sent again to a deleted run answered {other:?}"
                )),
            }
            return;
        }
        match (fault, outcome) {
            (None, Ok(outcome)) => {
                if outcome.accepted != body.points() {
                    self.violation(format!(
                        "batch {id} answered {} accepted for {} points",
                        outcome.accepted,
                        body.points()
                    ));
                }
                if committed.is_none() {
                    self.stored(t, run, id, at).await;
                }
            }
            (None, Err(err)) => panic!(
                "seed {:#x}: batch {id} failed unprovoked: {err:?}",
                self.seed
            ),
            // A hot batch writes no chunks: a fault on chunk writes strikes its round,
            // after the batch is stored, and leaves it to be counted by a later round.
            (Some(BatchFault::BeforeChunks | BatchFault::AfterChunks), Ok(_))
                if fired.len() == 1 && self.stored_hot(t, run, id).await =>
            {
                self.bump("rounds failed after a hot batch was stored");
                self.commit(t, run, id, at);
            }
            (Some(fault), Ok(_)) => self.violation(format!(
                "batch {id} succeeded although {fault:?} struck: {fired:?}, {unfired} not struck"
            )),
            (Some(fault), Err(_)) => {
                assert!(
                    fired.len() == 1 && unfired == 0,
                    "seed {:#x}: {fault:?} on batch {id}: struck {fired:?}, {unfired} not",
                    self.seed
                );
                assert!(
                    committed.is_none(),
                    "faults are armed on uncommitted batches"
                );
                if fault == BatchFault::CommitAfter && fired[0].applied {
                    self.stored_unheard(t, run, id, at).await;
                }
                // The client retries at once, or later (perhaps hours later, perhaps
                // in another month), or gives up for good; a numbered batch is sent
                // again before its session's next, so at once.
                let numbered = body.sequence.is_some();
                match self.rng.random_range(0..10) {
                    0..3 => self.bump("failed batches given up"),
                    _ if numbered => {
                        self.bump("failed numbered batches retried at once");
                        self.tick().await;
                        Box::pin(self.send(t, run, id, None)).await;
                    }
                    3..5 => {
                        self.bump("failed batches retried at once");
                        self.tick().await;
                        Box::pin(self.send(t, run, id, None)).await;
                    }
                    _ => {
                        let later = self.rng.random_range(1..=6);
                        let due = ((at - START).whole_hours() + later).min(HOURS - 1);
                        self.tenants[t].retries.push((run, id.to_owned(), due));
                        self.bump("failed batches retried later");
                    }
                }
            }
        }
    }

    async fn log(&mut self, t: usize, burst: bool) {
        let run = self.some_run(t).await;
        let numbered = self.rng.random_bool(0.5);
        let id = self.new_body(t, run, burst, numbered);
        let fault = self
            .rng
            .random_bool(0.2)
            .then(|| self.batch_faults.draw(&mut self.rng));
        self.bump("batches sent");
        self.send(t, run, &id, fault).await;
    }

    /// Sends a committed batch again, as a client that timed out does.
    async fn duplicate(&mut self, t: usize) {
        let committed: Vec<(RunId, String)> = self.tenants[t]
            .runs
            .iter()
            .flat_map(|(run, sim)| {
                sim.batches
                    .iter()
                    .filter(|(_, b)| b.committed.is_some())
                    .map(|(id, _)| (*run, id.clone()))
            })
            .collect();
        let Some((run, id)) = committed.choose(&mut self.rng).cloned() else {
            return;
        };
        let (body, _, _) = self.body(t, run, &id);
        let last = self.tenants[t].runs[&run].committed_sequence;
        match body.sequence {
            // A late attempt of a numbered batch, arriving after its session's next
            // batches committed: refused, storing nothing.
            Some(sequence) if sequence < last => {
                self.bump("late attempts of numbered batches");
                let outcome = self.log_body(t, run, &body).await;
                match outcome {
                    Err(SeriesError::SequenceBehind { sent, committed })
                        if sent == sequence && committed == last => {}
                    other => self.violation(format!(
                        "late attempt of batch {id} (number {sequence}, {last} committed) \
                         answered {other:?}"
                    )),
                }
            }
            _ => {
                self.bump("client retries of committed batches");
                self.send(t, run, &id, None).await;
            }
        }
    }

    /// The same new batch sent twice at once: a client retrying while the first
    /// attempt is still in flight.
    async fn twin(&mut self, t: usize) {
        let run = self.some_run(t).await;
        let numbered = self.rng.random_bool(0.5);
        let id = self.new_body(t, run, true, numbered);
        let (body, _, _) = self.body(t, run, &id);
        let (first, second) =
            tokio::join!(self.log_body(t, run, &body), self.log_body(t, run, &body),);
        self.bump("batches sent");
        self.bump("concurrent twin retries");
        for outcome in [first, second] {
            match outcome {
                Ok(outcome) if outcome.accepted == body.points() => {}
                other => self.violation(format!("twin of batch {id} answered {other:?}")),
            }
        }
        let at = self.clock.now();
        self.stored(t, run, &id, at).await;
    }

    async fn retry(&mut self, t: usize, run: RunId, id: String) {
        self.bump("failed batches sent again");
        let (_, committed, live) = self.body(t, run, &id);
        // A retry may fail again.
        let fault = (live && committed.is_none() && self.rng.random_bool(0.15))
            .then(|| self.batch_faults.draw(&mut self.rng));
        self.send(t, run, &id, fault).await;
    }

    async fn image(&mut self, t: usize) {
        let run = self.some_run(t).await;
        let series = *IMAGE_SERIES.choose(&mut self.rng).unwrap();
        let sim = self.tenants[t].run_mut(run).unwrap();
        let step = sim.next_step;
        let size = self.rng.random_range(64..=6_000);
        let mut bytes = b"\x89PNG\r\n\x1a\n".to_vec();
        bytes.extend((8..size).map(|_| self.rng.random::<u8>()));
        let fault = self
            .rng
            .random_bool(0.2)
            .then(|| self.image_faults.draw(&mut self.rng));
        if let Some((op, timing)) = fault {
            self.faults.fail_next(op, timing);
            self.bump(format!("image fault injected: {op:?} {timing:?}"));
        }
        let tenant = self.tenants[t].tenant();
        let outcome = images::log(
            &self.state.store,
            self.state.intake(),
            &tenant,
            run,
            series,
            step,
            Bytes::from(bytes.clone()),
        )
        .await;
        let (fired, unfired) = self.struck();
        let hour = self.hour();
        let stored = match (fault, &outcome) {
            (None, Ok(_)) => true,
            (None, Err(err)) => {
                panic!("seed {:#x}: an image failed unprovoked: {err:?}", self.seed)
            }
            (Some(fault), Ok(_)) => {
                self.violation(format!("an image was stored although {fault:?} struck"));
                true
            }
            (Some((op, timing)), Err(_)) => {
                assert!(fired.len() == 1 && unfired == 0, "{fired:?}");
                // Indexed and counted, though the client heard otherwise.
                op == Op::Transact && timing == Timing::After && fired[0].applied
            }
        };
        self.bump("images sent");
        if stored {
            let tenant = &mut self.tenants[t];
            *tenant.points.entry(hour).or_default() += 1;
            let sim = tenant.run_mut(run).unwrap();
            sim.images.push((series.to_owned(), step, size as u64));
        }
        if outcome.is_err() && self.rng.random_bool(0.5) {
            // An image is named by its series, step and bytes: sent again, it is stored
            // (and counted) only if the first attempt did not store it.
            if stored {
                self.bump("images sent again after a commit the client did not hear of");
            }
            let again = images::log(
                &self.state.store,
                self.state.intake(),
                &tenant,
                run,
                series,
                step,
                Bytes::from(bytes),
            )
            .await
            .unwrap_or_else(|err| panic!("seed {:#x}: image retry: {err:?}", self.seed));
            if !stored {
                let tenant = &mut self.tenants[t];
                *tenant.points.entry(hour).or_default() += 1;
                let sim = tenant.run_mut(run).unwrap();
                sim.images.push((series.to_owned(), step, again.size));
            }
            self.bump("images sent again");
        }
    }

    async fn upload(&mut self, t: usize) {
        let run = self.some_run(t).await;
        let size: usize = self.rng.random_range(1_000..=200_000);
        let bytes: Vec<u8> = (0..size).map(|_| self.rng.random::<u8>()).collect();
        let sim = self.tenants[t].run_mut(run).unwrap();
        sim.next_artifact += 1;
        let path = format!("checkpoints/{:04}.bin", sim.next_artifact);
        let step = sim.next_step;
        let tenant = self.tenants[t].tenant();
        let urls_until = self.clock.now() + artifacts::UPLOAD_URL_TTL;
        let (_, plan) = artifacts::register(
            &self.state.store,
            &tenant,
            run,
            NewArtifact {
                path: path.clone(),
                size: size as u64,
                sha256: hex::encode(Sha256::digest(&bytes)),
                content_type: None,
                kind: artifacts::Kind::Checkpoint,
                step: Some(step),
            },
        )
        .await
        .expect("registering an artifact");
        let plan = serde_json::to_value(&plan).unwrap();
        let url = plan["upload"]["url"].as_str().expect("a single upload");
        let response = self
            .http
            .put(url)
            .body(bytes)
            .send()
            .await
            .expect("the upload reaches the blob store");
        assert!(response.status().is_success(), "{}", response.status());
        self.bump("artifacts uploaded");
        self.tenants[t]
            .run_mut(run)
            .unwrap()
            .unsealed
            .insert(path.clone(), (size as u64, urls_until));
        self.complete(t, run, path, true).await;
    }

    /// Whether a completion of `path` may find nothing: the artifact was deleted, or
    /// its upload was left unfinished past its URLs' expiry.
    fn gone(&self, t: usize, run: RunId, path: &str) -> bool {
        let sim = &self.tenants[t].runs[&run];
        match sim.unsealed.get(path) {
            Some(&(_, urls_until)) => urls_until < self.clock.now(),
            None => !sim.artifacts.contains_key(path),
        }
    }

    /// Completes an upload (again); a failure is retried later or given up.
    async fn complete(&mut self, t: usize, run: RunId, path: String, may_fail: bool) {
        // Completing an artifact sealed already reads nothing a fault could strike.
        let unsealed = self.tenants[t]
            .runs
            .get(&run)
            .is_some_and(|sim| sim.unsealed.contains_key(&path));
        let fault = (may_fail && unsealed && self.rng.random_bool(0.25))
            .then(|| self.seal_faults.draw(&mut self.rng));
        if let Some((op, timing)) = fault {
            self.faults.fail_next(op, timing);
            self.bump(format!("seal fault injected: {op:?} {timing:?}"));
        }
        let tenant = self.tenants[t].tenant();
        let live = self.tenants[t].runs.contains_key(&run);
        let outcome = artifacts::complete(
            &self.state.store,
            &self.state.marks,
            self.state.settings.verify_slice_bytes,
            &tenant,
            run,
            Completion {
                path: path.clone(),
                parts: Vec::new(),
            },
        )
        .await;
        let (fired, unfired) = self.struck();
        if !live {
            if !matches!(&outcome, Err(err) if err.code() == ErrorCode::NotFound) {
                self.violation(format!("completing {path} of a deleted run: {outcome:?}"));
            }
            return;
        }
        let sealed = match (fault, &outcome) {
            (_, Ok(artifact)) => {
                if let Some(fault) = fault {
                    self.violation(format!(
                        "completing {path} succeeded through {fault:?}: struck {fired:?}, {unfired} not"
                    ));
                }
                assert!(
                    matches!(artifact, artifacts::Completed::Sealed(sealed) if sealed.is_ready()),
                    "{artifact:?}"
                );
                true
            }
            // A completion retried after the artifact was deleted, or after its upload's
            // URLs expired (when the hourly sweep may have removed the abandoned upload,
            // bytes and registration), finds nothing to complete.
            (None, Err(err)) if err.code() == ErrorCode::NotFound && self.gone(t, run, &path) => {
                self.bump("completions of deleted or abandoned uploads");
                self.tenants[t].run_mut(run).unwrap().unsealed.remove(&path);
                return;
            }
            (None, Err(err)) => panic!("seed {:#x}: completing {path}: {err:?}", self.seed),
            (Some((op, timing)), Err(_)) => {
                assert!(fired.len() == 1 && unfired == 0, "{fired:?}");
                op == Op::Transact && timing == Timing::After && fired[0].applied
            }
        };
        let sim = self.tenants[t].run_mut(run).unwrap();
        if sealed && let Some((size, _)) = sim.unsealed.remove(&path) {
            sim.artifacts.insert(path.clone(), size);
        }
        if outcome.is_err() {
            match self.rng.random_range(0..10) {
                0..2 => self.bump("failed completions given up"),
                2..5 => {
                    self.bump("failed completions retried at once");
                    Box::pin(self.complete(t, run, path, false)).await;
                }
                _ => {
                    let due = ((self.hour() - START).whole_hours() + self.rng.random_range(1..=4))
                        .min(HOURS - 1);
                    self.tenants[t].completions.push((run, path, due));
                    self.bump("failed completions retried later");
                }
            }
        }
    }

    async fn delete_artifact(&mut self, t: usize) {
        let sealed: Vec<(RunId, String)> = self.tenants[t]
            .runs
            .iter()
            .flat_map(|(run, sim)| sim.artifacts.keys().map(|path| (*run, path.clone())))
            .collect();
        let Some((run, path)) = sealed.choose(&mut self.rng).cloned() else {
            return;
        };
        let fault = self
            .rng
            .random_bool(0.35)
            .then(|| self.delete_faults.draw(&mut self.rng));
        if let Some((op, timing)) = fault {
            self.faults.fail_next(op, timing);
            self.bump(format!("artifact delete fault injected: {op:?} {timing:?}"));
        }
        let tenant = self.tenants[t].tenant();
        let mut outcome = artifacts::delete(&self.state.store, &tenant, run, &path).await;
        let (fired, unfired) = self.struck();
        if fault.is_some() {
            assert!(fired.len() == 1 && unfired == 0, "{fired:?} {outcome:?}");
            if outcome.is_ok() {
                self.violation(format!("deleting {path} succeeded through {fault:?}"));
            }
        }
        // The client retries until the artifact is gone, at once: what a failed attempt
        // released is released from when it failed, and the test notes what is stored
        // only when its clock moves.
        if outcome.is_err() {
            outcome = artifacts::delete(&self.state.store, &tenant, run, &path).await;
        }
        match outcome {
            Ok(()) => {}
            Err(err) if err.code() == ErrorCode::NotFound => {
                self.bump("artifact deletes found done")
            }
            Err(err) => panic!("seed {:#x}: deleting {path}: {err:?}", self.seed),
        }
        self.tenants[t]
            .run_mut(run)
            .unwrap()
            .artifacts
            .remove(&path);
        self.bump("artifacts deleted");
    }

    async fn delete_run(&mut self, t: usize) {
        let live: Vec<RunId> = self.tenants[t].runs.keys().copied().collect();
        let Some(&run) = live.choose(&mut self.rng) else {
            return;
        };
        // What it holds is checked once more before it goes.
        self.verify_run(t, run).await;
        let sim = &self.tenants[t].runs[&run];
        let transacts = 2 + sim.images.len() + sim.artifacts.len() + sim.unsealed.len();
        if self.rng.random_bool(0.6) {
            let timing = if self.rng.random_bool(0.5) {
                Timing::Before
            } else {
                Timing::After
            };
            if self.rng.random_bool(0.25) {
                self.faults.fail_next(Op::BatchWrite, timing);
                self.bump(format!("run delete fault injected: BatchWrite {timing:?}"));
            } else {
                let nth = self.rng.random_range(1..=transacts as u32);
                self.faults.fail(Op::Transact, nth, timing);
                let which = if nth == 1 {
                    "first"
                } else if nth as usize == transacts {
                    "last"
                } else {
                    "middle"
                };
                self.bump(format!(
                    "run delete fault injected: {which} Transact {timing:?}"
                ));
            }
        }
        let tenant = self.tenants[t].tenant();
        let mut attempts = 0;
        loop {
            attempts += 1;
            let outcome = deletion::delete_run(&self.state.store, &tenant, run).await;
            self.struck();
            match outcome {
                Ok(()) => break,
                Err(err) if err.code() == ErrorCode::NotFound && attempts > 1 => break,
                // Again at once, as for an artifact.
                Err(_) if attempts < 3 => {}
                Err(err) => panic!("seed {:#x}: deleting a run: {err:?}", self.seed),
            }
        }
        if attempts > 1 {
            self.bump("run deletes retried");
        }
        match runs::load(&self.state.store, &tenant, run).await {
            Err(err) if err.code() == ErrorCode::NotFound => {}
            other => self.violation(format!("run {run} still loads after its delete: {other:?}")),
        }
        let sim = self.tenants[t].runs.remove(&run).unwrap();
        self.tenants[t].deleted.insert(run, sim);
        self.bump("runs deleted");
    }

    // ---------------------------------------------------------------- the oracle

    /// Checks what the read APIs answer for a run against what the test committed.
    async fn verify_run(&mut self, t: usize, run: RunId) {
        let tenant = self.tenants[t].tenant();
        let sim = &self.tenants[t].runs[&run];
        let mut numbers: BTreeMap<String, Vec<(i64, u64, u64)>> = BTreeMap::new();
        let mut text: BTreeMap<String, Vec<(i64, String)>> = BTreeMap::new();
        // What the summaries count: the points of settled batches.
        let mut counted: BTreeMap<String, u64> = BTreeMap::new();
        for batch in sim.batches.values().filter(|b| b.settled) {
            let series = batch.body.numbers.iter().map(|(n, p)| (n, p.len()));
            for (name, n) in series.chain(batch.body.text.iter().map(|(n, l)| (n, l.len()))) {
                *counted.entry(name.clone()).or_default() += n as u64;
            }
        }
        for batch in sim.batches.values().filter(|b| b.committed.is_some()) {
            for (name, points) in &batch.body.numbers {
                numbers.entry(name.clone()).or_default().extend(
                    points
                        .iter()
                        .map(|(s, v, ts)| (*s, v.to_bits(), ts.to_bits())),
                );
            }
            for (name, lines) in &batch.body.text {
                text.entry(name.clone())
                    .or_default()
                    .extend(lines.iter().cloned());
            }
        }
        let mut expected_images = sim.images.clone();
        let expected_artifacts = sim.artifacts.clone();
        let mut problems = Vec::new();

        let record = runs::load(&self.state.store, &tenant, run)
            .await
            .expect("a live run loads")
            .record;
        let stored: BTreeSet<&String> = record.series.keys().collect();
        let sent: BTreeSet<&String> = numbers.keys().chain(text.keys()).collect();
        if stored != sent {
            problems.push(format!("series {stored:?}, committed {sent:?}"));
        }
        for (name, summary) in &record.series {
            let expected = counted.get(name).copied().unwrap_or(0);
            if summary.count != expected {
                problems.push(format!(
                    "{name}: the summary counts {}, settled {expected}",
                    summary.count
                ));
            }
            match summary.kind {
                SeriesKind::Numeric => {
                    let page = series::read::<Points>(
                        &self.state.store,
                        &tenant,
                        &record,
                        name,
                        series::Window::default(),
                    )
                    .await
                    .expect("reading a series");
                    let mut got: Vec<(i64, u64, u64)> = (0..page.points.steps.len())
                        .map(|i| {
                            (
                                page.points.steps[i],
                                page.points.values[i].to_bits(),
                                page.points.timestamps[i].to_bits(),
                            )
                        })
                        .collect();
                    got.sort_unstable();
                    let mut want = numbers.get(name).cloned().unwrap_or_default();
                    want.sort_unstable();
                    if got != want {
                        problems.push(format!(
                            "{name}: read {} points, committed {} (first difference at {:?})",
                            got.len(),
                            want.len(),
                            got.iter().zip(&want).position(|(a, b)| a != b)
                        ));
                    }
                }
                SeriesKind::Text => {
                    let page = series::read::<TextPoints>(
                        &self.state.store,
                        &tenant,
                        &record,
                        name,
                        series::Window::default(),
                    )
                    .await
                    .expect("reading a text series");
                    let mut got: Vec<(i64, String)> = page
                        .points
                        .steps
                        .iter()
                        .copied()
                        .zip(page.points.texts.iter().cloned())
                        .collect();
                    got.sort();
                    let mut want = text.get(name).cloned().unwrap_or_default();
                    want.sort();
                    if got != want {
                        problems.push(format!(
                            "{name}: read {} lines, committed {}",
                            got.len(),
                            want.len()
                        ));
                    }
                }
            }
        }

        let mut listed_images = Vec::new();
        for series in IMAGE_SERIES {
            for listed in images::list(
                &self.state.store,
                &tenant,
                run,
                series,
                (None, None),
                None,
                images::MAX_LISTED,
            )
            .await
            .expect("listing images")
            .images
            {
                let image = listed.image;
                let key = BlobKey::parse(format!(
                    "{}runs/{run}/images/{}.png",
                    tenant.blob_prefix(),
                    image.id
                ))
                .unwrap();
                let object = self.blobs.head(&key).await.expect("head");
                if object.as_ref().map(|o| o.size) != Some(image.size) {
                    problems.push(format!(
                        "image {} ({}, step {}) is listed and billed, but its object is {:?}",
                        image.id,
                        image.series,
                        image.step,
                        object.map(|o| o.size)
                    ));
                }
                listed_images.push((image.series, image.step, image.size));
            }
        }
        listed_images.sort();
        expected_images.sort();
        if listed_images != expected_images {
            problems.push(format!(
                "images listed {listed_images:?}, stored {expected_images:?}"
            ));
        }

        let listed: BTreeMap<String, u64> =
            artifacts::list(&self.state.store, &tenant, run, None, None)
                .await
                .expect("listing artifacts")
                .into_iter()
                .map(|a| (a.path.as_str().to_owned(), a.size))
                .collect();
        if listed != expected_artifacts {
            problems.push(format!(
                "artifacts listed {listed:?}, sealed {expected_artifacts:?}"
            ));
        }
        for (path, size) in &listed {
            let key =
                artifacts::blob_key(&tenant, run, &artifacts::ArtifactPath::parse(path).unwrap())
                    .unwrap();
            let object = self.blobs.head(&key).await.expect("head");
            if object.as_ref().map(|o| o.size) != Some(*size) {
                problems.push(format!(
                    "artifact {path} is listed, its object is {object:?}"
                ));
            }
        }

        // The run's own tally of its chunk bytes, against the chunks of its committed
        // batches in the store.
        let chunk_bytes = self.chunk_bytes(t, run).await;
        if record.stored_bytes != chunk_bytes {
            problems.push(format!(
                "the run record says {} bytes of chunks, its committed chunks take {chunk_bytes}",
                record.stored_bytes
            ));
        }
        self.bump("runs read back and checked");
        let label = self.tenants[t].label;
        for problem in problems {
            self.violation(format!("tenant {label}, run {run}: {problem}"));
        }
    }

    /// The billed size of the chunk items of a run's committed batches, from the store.
    async fn chunk_bytes(&self, t: usize, run: RunId) -> u64 {
        let tenant = self.tenants[t].tenant();
        let sim = &self.tenants[t].runs[&run];
        // Each committed batch, and when the attempt that committed it was made.
        let committed: BTreeMap<&str, i64> = sim
            .batches
            .iter()
            .filter_map(|(id, b)| {
                let at = b.committed?.unix_timestamp_nanos();
                Some((id.as_str(), i64::try_from(at).unwrap()))
            })
            .collect();
        // Rounds that have not committed: their markers (`p#{attempt}`) are still there.
        let partition = runs::data_partition(&tenant, run);
        let markers = Query::partition(partition.clone()).prefix("p#");
        let pending: BTreeSet<String> = self
            .kv
            .query(markers)
            .await
            .expect("query")
            .items
            .into_iter()
            .map(|marker| marker.key.sk[2..].to_owned())
            .collect();
        let mut total = 0;
        for prefix in ["c#", "t#"] {
            let mut query = Query::partition(partition.clone()).prefix(prefix);
            loop {
                let page = self.kv.query(query.clone()).await.expect("query");
                for item in &page.items {
                    // `{c|t}#{series}#{step}#{batch id}.{attempt}#{part}`, stamped
                    // `w` with the attempt's time: chunks of other attempts at a
                    // committed batch (failed, or hidden until cleaned up) are not its.
                    // A round's chunks (`r{mark}.{attempt}`, stamped `a` with the mark)
                    // hold hot batches' points, and are the run's once it commits.
                    let attempt = item.key.sk.split('#').nth(3).unwrap_or_default();
                    let id = attempt.split('.').next().unwrap_or_default();
                    let round = item.n("a").is_some() && !pending.contains(attempt);
                    if round || committed.get(id).is_some_and(|at| item.n("w") == Some(*at)) {
                        total += item.billed_size() as u64;
                    }
                }
                match page.next {
                    Some(next) => query.after = Some(next),
                    None => break,
                }
            }
        }
        total
    }

    /// The bytes a tenant stores now, by the test's own books.
    async fn stored_bytes(&self, t: usize) -> u64 {
        let mut total = 0;
        let live: Vec<RunId> = self.tenants[t].runs.keys().copied().collect();
        for run in live {
            total += self.chunk_bytes(t, run).await;
            let sim = &self.tenants[t].runs[&run];
            total += sim.images.iter().map(|i| i.2).sum::<u64>();
            total += sim.artifacts.values().sum::<u64>();
        }
        total
    }

    /// What a month's report bills, from the hours rolled up so far: points a metering
    /// run settled count in the hour it ran in, which the next run rolls up.
    fn expected_month(&self, t: usize, month: BillingMonth) -> (u64, u64) {
        let tenant = &self.tenants[t];
        let rolled_up = |hour: &OffsetDateTime| self.cursor.is_some_and(|last| *hour <= last);
        let within = |hour: &&OffsetDateTime| {
            **hour >= month.start() && **hour < month.end() && rolled_up(hour)
        };
        let points = tenant
            .points
            .iter()
            .filter(|(hour, _)| within(hour))
            .map(|(_, n)| n)
            .sum();
        let mut byte_seconds = 0;
        let mut hour = month.start();
        while hour < month.end() && rolled_up(&hour) {
            byte_seconds += self.byte_seconds(t, hour, hour + Duration::HOUR);
            hour += Duration::HOUR;
        }
        (points, byte_seconds)
    }

    /// The test's own integral of what team `t` stored over `[from, to)`, from the
    /// bytes it noted each time the clock moved.
    fn byte_seconds(&self, t: usize, from: OffsetDateTime, to: OffsetDateTime) -> u64 {
        let (from, to) = (from.unix_timestamp(), to.unix_timestamp());
        let steps = &self.tenants[t].storage;
        let mut total = 0;
        for (i, &(start, bytes)) in steps.iter().enumerate() {
            let end = steps.get(i + 1).map_or(i64::MAX, |&(next, _)| next);
            let (start, end) = (start.max(from), end.min(to));
            if start < end {
                total += bytes * u64::try_from(end - start).unwrap();
            }
        }
        total
    }

    /// What team `t` stored at `at`, as the test noted it.
    fn bytes_at(&self, t: usize, at: OffsetDateTime) -> u64 {
        let second = at.unix_timestamp();
        self.tenants[t]
            .storage
            .iter()
            .take_while(|&&(from, _)| from <= second)
            .last()
            .map_or(0, |&(_, bytes)| bytes)
    }

    /// A report against the test's books: its figures, its prices, whose it is.
    async fn check_report(&mut self, t: usize, month: BillingMonth, status: ReportStatus) {
        let tenant = self.tenants[t].tenant();
        let label = self.tenants[t].label;
        let report = billing::report(&self.state.store, &self.state.settings.plan, &tenant, month)
            .await
            .expect("a report");
        let (rolled_points, rolled_byte_seconds) = self.expected_month(t, month);
        let (provisional_points, provisional_byte_seconds) = match status {
            ReportStatus::Closed => (0, 0),
            ReportStatus::Draft => self.expected_provisional(t, month).await,
        };
        let found_provisional = report
            .provisional
            .as_ref()
            .map_or((0, 0), |p| (p.points, p.byte_seconds));
        let (points, byte_seconds) = (
            rolled_points + provisional_points,
            rolled_byte_seconds + provisional_byte_seconds,
        );
        let gb_hours = billing::gb_hours(byte_seconds);
        let line_items = plan().line_items(points, byte_seconds);
        let total: Decimal = line_items.iter().map(|item| item.amount).sum();
        let mut problems = Vec::new();
        if found_provisional != (provisional_points, provisional_byte_seconds) {
            problems.push(format!(
                "its provisional (points, byte-seconds) are {found_provisional:?}, the \
                 test's books make {:?}",
                (provisional_points, provisional_byte_seconds)
            ));
        }
        if report.tenant_id != tenant.id() {
            problems.push(format!("it belongs to {}", report.tenant_id));
        }
        if report.status != status {
            problems.push(format!("it is {:?}, not {status:?}", report.status));
        }
        if report.points != points {
            problems.push(format!(
                "it bills {} points; {points} were committed",
                report.points
            ));
        }
        if report.byte_seconds != Some(byte_seconds) || report.gb_hours != gb_hours {
            problems.push(format!(
                "it bills {:?} byte-seconds ({} GB-hours); the stored bytes make \
                 {byte_seconds} ({gb_hours})",
                report.byte_seconds, report.gb_hours
            ));
        }
        if report.line_items != line_items || report.total != total {
            problems.push(format!(
                "its line items {:?} / total {} differ from {line_items:?} / {total}",
                report.line_items, report.total
            ));
        }
        for problem in problems {
            self.violation(format!("tenant {label}, {month} report: {problem}"));
        }
    }

    /// What a draft shows of the hours not rolled up yet (`metering::provisional`): the
    /// points the books count in them, and their byte-seconds, the hour still going
    /// as if what is stored now stays until it ends.
    async fn expected_provisional(&self, t: usize, month: BillingMonth) -> (u64, u64) {
        let now = self.clock.now();
        let current = hour_of(now);
        let first = self
            .cursor
            .map_or(month.start(), |last| last + Duration::HOUR)
            .max(month.start())
            .max(current - Duration::hours(metering::PROVISIONAL_HOURS - 1));
        let last = current.min(month.end() - Duration::HOUR);
        // Changes made since the clock last moved are not in the steps yet.
        let stored_now = self.stored_bytes(t).await;
        let (mut points, mut byte_seconds) = (0, 0);
        let mut hour = first;
        while hour <= last {
            points += self.tenants[t].points.get(&hour).copied().unwrap_or(0);
            byte_seconds += if hour == current {
                let elapsed = self.byte_seconds(t, hour, now);
                let left = (hour + Duration::HOUR).unix_timestamp() - now.unix_timestamp();
                elapsed + stored_now * u64::try_from(left).unwrap()
            } else {
                self.byte_seconds(t, hour, hour + Duration::HOUR)
            };
            hour += Duration::HOUR;
        }
        (points, byte_seconds)
    }

    /// The team's runs' counters, deleted runs' too, against the team's books: their
    /// points are every point committed, their byte-seconds the test's integral of
    /// what the team stored, both so far.
    async fn check_runs_add_up(&mut self, t: usize) {
        let tenant = self.tenants[t].tenant();
        let Some(project) = self.tenants[t].project.as_ref().map(|p| p.id) else {
            return;
        };
        let counters = runs::usage_in_project(&self.state.store, &tenant, project)
            .await
            .expect("the runs' counters");
        let now = self.clock.now();
        let records = runs::every_record_in_project(&self.state.store, &tenant, project)
            .await
            .expect("the runs");
        let runs: Vec<_> = counters
            .values()
            .copied()
            .chain(records.iter().map(|record| record.usage(now)))
            .collect();
        let found = (
            runs.iter().map(|run| run.points).sum::<u64>(),
            runs.iter().map(|run| run.byte_seconds(now)).sum::<u64>(),
        );
        let expected = (
            self.tenants[t].points.values().sum::<u64>(),
            self.byte_seconds(t, START, now),
        );
        if found != expected {
            let label = self.tenants[t].label;
            self.violation(format!(
                "tenant {label}: its {} runs' (points, byte-seconds) add up to {found:?}, \
                 the team's are {expected:?}",
                counters.len()
            ));
        }
    }

    /// Each rolled-up hour's record against the test's books.
    async fn check_hours(&mut self, t: usize) {
        let tenant = self.tenants[t].tenant();
        let label = self.tenants[t].label;
        let Some(last) = self.cursor else { return };
        let records = metering::hourly(&self.state.store, &tenant, START, last + Duration::HOUR)
            .await
            .expect("hourly records");
        let got: BTreeMap<OffsetDateTime, (u64, u64, u64)> = records
            .iter()
            .map(|r| (r.hour, (r.points, r.storage_bytes, r.byte_seconds())))
            .collect();
        let mut problems = Vec::new();
        let mut hour = START;
        while hour <= last {
            let end = hour + Duration::HOUR;
            let expected = (
                self.tenants[t].points.get(&hour).copied().unwrap_or(0),
                self.bytes_at(t, end - Duration::SECOND),
                self.byte_seconds(t, hour, end),
            );
            let found = got.get(&hour).copied().unwrap_or((0, 0, 0));
            if found != expected {
                problems.push(format!(
                    "hour {}: (points, bytes at its end, byte-seconds) recorded {found:?}, \
                     expected {expected:?}",
                    calendar::hour_label(hour)
                ));
            }
            hour += Duration::HOUR;
        }
        for problem in problems {
            self.violation(format!("tenant {label}: {problem}"));
        }
    }

    async fn snapshot(&self, t: usize) -> Snapshot {
        let tenant = self.tenants[t].tenant();
        let report = |month| {
            let state = self.state.clone();
            async move {
                let report: Report =
                    billing::report(&state.store, &state.settings.plan, &tenant, month)
                        .await
                        .unwrap();
                serde_json::to_vec(&report).unwrap()
            }
        };
        let usage = |month| {
            let state = self.state.clone();
            async move {
                format!(
                    "{:?}",
                    billing::usage(&state.store, &state.settings.plan, &tenant, month)
                        .await
                        .unwrap()
                )
            }
        };
        let blob = BlobKey::parse(format!("{}billing/2026-10.json", tenant.blob_prefix())).unwrap();
        let october_blob = match self.blobs.get(&blob).await {
            Ok(body) => Some(body.bytes().await.unwrap().to_vec()),
            Err(_) => None,
        };
        Snapshot {
            october_report: report(october()).await,
            october_blob,
            october_usage: usage(october()).await,
            november_report: report(november()).await,
            november_usage: usage(november()).await,
            hours: metering::hourly(&self.state.store, &tenant, START, START + Duration::days(7))
                .await
                .unwrap(),
        }
    }

    // ---------------------------------------------------------------- metering

    /// The hourly run after `index` ended: maybe skipped (the next one fills in),
    /// maybe crashing part-way (retried at once, as the scheduler does), maybe run twice.
    async fn meter(&mut self, index: i64) {
        let through = hour_at(index);
        let forced_skip = matches!(index, 46 | 47);
        if !forced_skip && index != 0 && index < HOURS - 1 && self.rng.random_bool(0.15) {
            self.bump("metering runs skipped");
            return;
        }
        let due: Vec<OffsetDateTime> = match self.cursor {
            None => vec![through],
            Some(last) => (1..=(through - last).whole_hours())
                .map(|n| last + Duration::hours(n))
                .collect(),
        };
        // The hourly run settles the runs logged to first: it counts their hot batches
        // in this hour. (Nothing writes meanwhile, so it may settle up to now.)
        let now = self.clock.now();
        let settle_through = i64::try_from(now.unix_timestamp_nanos()).unwrap();
        for t in 0..self.tenants.len() {
            let tenant = self.tenants[t].tenant();
            let live: Vec<RunId> = self.tenants[t].runs.keys().copied().collect();
            for run in live {
                let meter = self.state.meter();
                hot::settle(&self.state.store, meter, &tenant, run, settle_through)
                    .await
                    .expect("settling hot batches");
                self.settle_run(t, run, now);
            }
        }
        let closes = due.contains(&(october().end() - Duration::HOUR));
        let mut faulted = false;
        if closes || self.rng.random_bool(0.12) {
            let timing = if self.rng.random_bool(0.5) {
                Timing::Before
            } else {
                Timing::After
            };
            if closes {
                self.faults.fail_next(Op::BlobPut, timing);
                self.bump(format!(
                    "metering fault injected: report BlobPut {timing:?}"
                ));
            } else {
                let nth = self.rng.random_range(1..=(due.len() as u32 * 6).min(30));
                self.faults.fail(Op::Put, nth, timing);
                self.bump(format!("metering fault injected: Put {timing:?}"));
            }
            faulted = true;
        }
        let mut attempts = 0;
        let rolled = loop {
            attempts += 1;
            let outcome = sextant_cli::metering(&self.state)
                .roll_up_through(through)
                .await;
            let (fired, _) = self.struck();
            match outcome {
                Ok(rolled) => break rolled,
                Err(_) if !fired.is_empty() && attempts < 3 => {
                    self.bump("metering runs retried after a fault");
                }
                Err(err) => panic!("seed {:#x}: metering through {through}: {err:?}", self.seed),
            }
        };
        if !faulted && rolled != due {
            self.violation(format!(
                "the roll-up through {through} did {rolled:?}, not {due:?}"
            ));
        }
        self.cursor = Some(through);
        self.bump("metering runs");
        if due.len() > 1 {
            self.bump("metering runs that filled in missed hours");
        }

        if self.rng.random_bool(0.15) {
            self.bump("metering runs repeated");
            let again = sextant_cli::metering(&self.state)
                .roll_up_through(through)
                .await
                .unwrap();
            if !again.is_empty() {
                self.violation(format!("rolling up through {through} again did {again:?}"));
            }
            let old = hour_at(self.rng.random_range(0..=index));
            self.rerun_hour(old).await;
        }

        if closes {
            for t in 0..self.tenants.len() {
                let live: Vec<RunId> = self.tenants[t].runs.keys().copied().collect();
                for run in live {
                    self.verify_run(t, run).await;
                }
                let stored_in_october = self.tenants[t]
                    .storage
                    .iter()
                    .any(|&(from, bytes)| bytes > 0 && from < october().end().unix_timestamp());
                let status = if stored_in_october || !self.tenants[t].points.is_empty() {
                    ReportStatus::Closed
                } else {
                    ReportStatus::Draft
                };
                self.check_report(t, october(), status).await;
                self.check_hours(t).await;
                self.check_runs_add_up(t).await;
            }
        }
    }

    async fn rerun_hour(&mut self, hour: OffsetDateTime) {
        let written = sextant_cli::metering(&self.state)
            .roll_up_hour(hour)
            .await
            .unwrap();
        self.bump("hours rolled up again");
        if written != 0 {
            self.violation(format!(
                "rolling up {} again wrote {written} new records",
                calendar::hour_label(hour)
            ));
        }
    }

    // ---------------------------------------------------------------- the hours

    fn plan_hour(&mut self, t: usize, index: i64) -> Vec<Action> {
        let mut actions = Vec::new();
        let tenant = &mut self.tenants[t];
        let (due, later): (Vec<_>, Vec<_>) = tenant.retries.drain(..).partition(|r| r.2 <= index);
        tenant.retries = later;
        actions.extend(due.into_iter().map(|(run, id, _)| Action::Retry(run, id)));
        let (due, later): (Vec<_>, Vec<_>) =
            tenant.completions.drain(..).partition(|r| r.2 <= index);
        tenant.completions = later;
        actions.extend(
            due.into_iter()
                .map(|(run, path, _)| Action::Complete(run, path)),
        );
        if index < tenant.first_hour {
            return actions;
        }
        let busy = tenant.busy;
        let live = tenant.runs.len();
        let rng = &mut self.rng;
        if live == 0 || rng.random_bool(0.08) {
            actions.push(Action::NewRun);
        }
        if rng.random_bool(busy) {
            for _ in 0..rng.random_range(2..=6) {
                actions.push(Action::Log);
            }
            for _ in 0..rng.random_range(0..=3) {
                actions.push(Action::Image);
            }
            if rng.random_bool(0.35) {
                actions.push(Action::Duplicate);
            }
            if rng.random_bool(0.12) {
                actions.push(Action::Twin);
            }
            if rng.random_bool(0.4) {
                actions.push(Action::Upload);
            }
            if rng.random_bool(0.25) {
                actions.push(Action::DeleteArtifact);
            }
            if live >= 2 && rng.random_bool(0.06) {
                actions.push(Action::DeleteRun);
            }
        } else if rng.random_bool(0.15) {
            // A trickle between bursts.
            actions.push(Action::Log);
        }
        actions
    }

    async fn act(&mut self, t: usize, action: Action) {
        match action {
            Action::Log => {
                let burst = self.rng.random_bool(0.7);
                self.log(t, burst).await;
            }
            Action::Duplicate => self.duplicate(t).await,
            Action::Twin => self.twin(t).await,
            Action::Retry(run, id) => self.retry(t, run, id).await,
            Action::Complete(run, path) => {
                self.bump("failed completions sent again");
                self.complete(t, run, path, true).await;
            }
            Action::Image => self.image(t).await,
            Action::Upload => self.upload(t).await,
            Action::DeleteArtifact => self.delete_artifact(t).await,
            Action::NewRun => {
                self.new_run(t).await;
            }
            Action::DeleteRun => self.delete_run(t).await,
        }
    }

    /// Scenarios every seed plays, at fixed hours.
    async fn forced(&mut self, index: i64) {
        match index {
            // Two runs deleted, one in each month, with a fault in the middle.
            40 | 60 => {
                let t = if index == 40 { 0 } else { 1 };
                if self.tenants[t].runs.len() < 2 {
                    self.new_run(t).await;
                }
                self.delete_run(t).await;
            }
            // The last hour of October: a batch whose commit fails, retried in
            // November (counted there), and one whose commit applies unheard, retried
            // in November (counted in October, once).
            47 => {
                let run = self.some_run(0).await;
                for (fault, retry_at) in [
                    (BatchFault::CommitBefore, 49),
                    (BatchFault::CommitAfter, 48),
                    (BatchFault::AfterChunks, 50),
                ] {
                    // Retried hours later: idempotent by its id alone.
                    let id = self.new_body(0, run, true, false);
                    fault.arm(&self.faults);
                    self.bump(format!("batch fault injected: {fault:?}"));
                    self.bump("batches sent");
                    let (body, _, _) = self.body(0, run, &id);
                    let outcome = self.log_body(0, run, &body).await;
                    let (fired, _) = self.struck();
                    assert_eq!(fired.len(), 1, "{fault:?} strikes once");
                    if outcome.is_ok() {
                        // A hot batch writes no chunks: the fault struck its round.
                        assert!(
                            fault == BatchFault::AfterChunks && self.stored_hot(0, run, &id).await,
                            "{fault:?} on batch {id} answered {outcome:?}"
                        );
                        self.bump("rounds failed after a hot batch was stored");
                        let at = self.clock.now();
                        self.commit(0, run, &id, at);
                    } else if fault == BatchFault::CommitAfter && fired[0].applied {
                        let at = self.clock.now();
                        self.stored_unheard(0, run, &id, at).await;
                    }
                    self.tenants[0].retries.push((run, id, retry_at));
                    self.bump("failed batches retried later");
                    self.tick().await;
                }
            }
            _ => {}
        }
    }

    async fn run(&mut self) {
        for index in 0..HOURS {
            let hour = hour_at(index);
            self.set_clock(hour + Duration::minutes(5)).await;
            let mut actions: Vec<(usize, Action)> = Vec::new();
            for t in 0..self.tenants.len() {
                actions.extend(self.plan_hour(t, index).into_iter().map(|a| (t, a)));
            }
            actions.shuffle(&mut self.rng);
            if !actions.is_empty() {
                self.bump("hours with activity");
            }
            for (t, action) in actions {
                self.tick().await;
                self.act(t, action).await;
            }
            self.tick().await;
            self.forced(index).await;
            self.set_clock(hour + Duration::HOUR + Duration::minutes(2))
                .await;
            self.meter(index).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seventy_two_hours_of_bursts_retries_and_failures_bill_exactly_what_was_stored() {
    let seed = std::env::var("SEXTANT_SIM_SEED")
        .ok()
        .map(|s| {
            let s = s.trim_start_matches("0x");
            u64::from_str_radix(s, 16).expect("SEXTANT_SIM_SEED is hex")
        })
        .unwrap_or(DEFAULT_SEED);
    let started = std::time::Instant::now();
    let mut sim = Sim::new(seed).await;
    sim.run().await;
    let last = hour_at(HOURS - 1);
    assert_eq!(sim.cursor, Some(last));

    // Every run still there reads back exactly what was committed; every hour's record
    // and both months' reports are what the books say.
    for t in 0..sim.tenants.len() {
        let live: Vec<RunId> = sim.tenants[t].runs.keys().copied().collect();
        for run in live {
            sim.verify_run(t, run).await;
        }
        sim.check_hours(t).await;
        let active = !sim.tenants[t].points.is_empty();
        let (october_status, november_status) = if active {
            (ReportStatus::Closed, ReportStatus::Draft)
        } else {
            (ReportStatus::Draft, ReportStatus::Draft)
        };
        sim.check_report(t, october(), october_status).await;
        sim.check_report(t, november(), november_status).await;
    }
    let (c_points, c_byte_seconds) = sim.expected_month(2, october());
    assert_eq!((c_points, c_byte_seconds), (0, 0), "c did nothing");
    let (a, b) = (
        sim.expected_month(0, october()),
        sim.expected_month(1, october()),
    );
    assert!(a.0 > 0 && b.0 > 0 && a != b, "{a:?} {b:?}");

    // Rolling every hour up again, and closing October again, changes nothing.
    let before: Vec<Snapshot> = {
        let mut all = Vec::new();
        for t in 0..sim.tenants.len() {
            all.push(sim.snapshot(t).await);
        }
        all
    };
    let again = sextant_cli::metering(&sim.state)
        .roll_up_through(last)
        .await
        .unwrap();
    assert!(again.is_empty(), "{again:?}");
    let mut hours: Vec<i64> = (0..HOURS).collect();
    hours.shuffle(&mut sim.rng);
    for index in hours {
        sim.rerun_hour(hour_at(index)).await;
    }
    let closed = billing::close_month(&sim.state.store, &sim.state.settings.plan, october())
        .await
        .unwrap();
    if closed != 0 {
        sim.violation(format!("closing October again closed {closed} reports"));
    }
    for (t, before) in before.iter().enumerate() {
        let after = sim.snapshot(t).await;
        let changed = after.differences(before);
        if !changed.is_empty() {
            let label = sim.tenants[t].label;
            sim.violation(format!(
                "tenant {label}: rolling every hour up again and closing October again changed {changed:?}"
            ));
        }
    }

    // More logging after the close, by every team (c's first), then October rolled
    // up and closed again: October's reports stay as they were.
    sim.set_clock(hour_at(HOURS) + Duration::minutes(10)).await;
    for t in 0..sim.tenants.len() {
        for _ in 0..3 {
            sim.tick().await;
            sim.log(t, true).await;
        }
        sim.tick().await;
        sim.image(t).await;
        sim.tick().await;
        sim.upload(t).await;
    }
    // The hour the late logging happened in is not rolled up yet: only November's
    // draft shows it, as provisional.
    let mut after_logging = Vec::new();
    for (t, before) in before.iter().enumerate() {
        let snapshot = sim.snapshot(t).await;
        let changed = snapshot.differences(before);
        if changed
            .iter()
            .any(|what| !matches!(*what, "November's report" | "November's usage"))
        {
            let label = sim.tenants[t].label;
            sim.violation(format!(
                "tenant {label}: logging after October closed changed {changed:?}"
            ));
        }
        after_logging.push(snapshot);
    }
    sim.rerun_hour(october().end() - Duration::HOUR).await;
    sim.rerun_hour(START + Duration::hours(3)).await;
    sim.rerun_hour(hour_at(HOURS - 1)).await;
    billing::close_month(&sim.state.store, &sim.state.settings.plan, october())
        .await
        .unwrap();
    for (t, before) in after_logging.iter().enumerate() {
        let changed = sim.snapshot(t).await.differences(before);
        if !changed.is_empty() {
            let label = sim.tenants[t].label;
            sim.violation(format!(
                "tenant {label}: rolling old hours up and closing October again after \
                 more logging changed {changed:?}"
            ));
        }
    }
    let c = sim.tenants[2].tenant();
    let c_october = billing::report(&sim.state.store, &sim.state.settings.plan, &c, october())
        .await
        .unwrap();
    assert_eq!(c_october.tenant_id, c.id());
    if (c_october.points, c_october.gb_hours) != (0, Decimal::ZERO) {
        sim.violation(format!(
            "c's October shows usage from November: {c_october:?}"
        ));
    }

    // The next hour's roll-up bills the late logging to each team, and only to it.
    sim.set_clock(hour_at(HOURS + 1) + Duration::minutes(2))
        .await;
    sim.meter(HOURS).await;
    for t in 0..sim.tenants.len() {
        sim.check_hours(t).await;
        sim.check_runs_add_up(t).await;
        sim.check_report(t, november(), ReportStatus::Draft).await;
        let live: Vec<RunId> = sim.tenants[t].runs.keys().copied().collect();
        for run in live {
            sim.verify_run(t, run).await;
        }
    }

    let elapsed = started.elapsed();
    let mut summary = format!("seed {seed:#x}, {elapsed:.1?}:\n");
    for (stat, n) in &sim.stats {
        summary.push_str(&format!("  {stat}: {n}\n"));
    }
    for (t, tenant) in sim.tenants.iter().enumerate() {
        let (points, byte_seconds) = sim.expected_month(t, october());
        let (n_points, n_byte_seconds) = sim.expected_month(t, november());
        summary.push_str(&format!(
            "  tenant {}: October {points} points, {byte_seconds} byte-seconds; November {n_points} points, {n_byte_seconds} byte-seconds\n",
            tenant.label
        ));
    }
    eprintln!("{summary}");
    assert!(
        sim.violations.is_empty(),
        "{} violations:\n{}\n{summary}",
        sim.violations.len(),
        sim.violations.join("\n")
    );
}
