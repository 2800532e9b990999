//! One run of a new team on a store whose clock a test moves and whose calls it can
//! make fail, with what tests of the series data path (hot batches, rounds, folds)
//! ask of it: write a batch, read the points back every way, settle and fold as the
//! hourly run does, and look at what is stored and billed.

use std::sync::Arc;

use sextant_domain::credentials::Caller;
use sextant_domain::ids::RunId;
use sextant_domain::runs::summary::SeriesSummary;
use sextant_domain::runs::{self, RunRecord};
use sextant_domain::series::batch::{self, LogBatch, LogOutcome};
use sextant_domain::series::fold::{self, FoldReport, Folded};
use sextant_domain::series::{self, Place, Points, StepRange, TextPoints, Window, hot};
use sextant_domain::tenancy::Tenant;
use sextant_domain::usage;
use sextant_edge::state::AppState;
use sextant_storage::Storage;
use sextant_storage::clock::ManualClock;
use sextant_storage::kv::{KvStore, Query};
use time::{Duration, OffsetDateTime};

use crate::faults::Faults;

pub struct Bench {
    pub state: AppState,
    pub clock: Arc<ManualClock>,
    pub faults: Arc<Faults>,
    /// The store under the faults, to look at what is stored.
    pub kv: Arc<dyn KvStore>,
    pub caller: Caller,
    pub run: RunId,
    /// When the test began: the hour its points are billed in.
    pub began: OffsetDateTime,
    _keep: Box<dyn std::any::Any + Send>,
}

impl std::fmt::Debug for Bench {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bench")
            .field("run", &self.run)
            .field("began", &self.began)
            .finish_non_exhaustive()
    }
}

/// A minute into the next hour: ahead of the real clock (which dates blobs), so a blob
/// is as old as the test's clock says or older, and with a whole hour to log in.
fn start() -> OffsetDateTime {
    let now = OffsetDateTime::now_utc();
    let hour = now - Duration::seconds(i64::from(now.minute()) * 60 + i64::from(now.second()));
    hour.replace_nanosecond(0).unwrap_or(hour) + Duration::minutes(61)
}

impl Bench {
    /// On `storage`, keeping `keep` (a temporary directory, say) as long as the bench;
    /// `deferred`: settled as on Lambda, behind the writes, not by each write.
    pub async fn on(storage: Storage, keep: Box<dyn std::any::Any + Send>, deferred: bool) -> Self {
        let faults = Faults::new();
        let began = start();
        let clock = Arc::new(ManualClock::starting_at(began));
        let kv = Arc::clone(&storage.kv);
        let mut state = crate::state_on(Storage {
            kv: faults.kv(storage.kv),
            blobs: faults.blobs(storage.blobs),
        })
        .with_clock(clock.clone());
        if deferred {
            state = state.deferring_settlement();
        }
        let (caller, run) = crate::signed_up_run(&state).await;
        Self {
            state,
            clock,
            faults,
            kv,
            caller,
            run,
            began,
            _keep: keep,
        }
    }

    /// On the embedded store and a local blob directory.
    pub async fn embedded(deferred: bool) -> Self {
        let (blobs, dir) = crate::local_blobs_with_routes().await;
        let kv = sextant_storage_local::EmbeddedKv::open(&dir.path().join("store.redb"))
            .expect("opening the store");
        let storage = Storage {
            kv: Arc::new(kv),
            blobs,
        };
        Self::on(storage, Box::new(dir), deferred).await
    }

    /// On a fresh table and bucket of the emulator.
    pub async fn on_aws() -> Self {
        let (_, kv, blobs) = crate::fresh_aws_storage().await;
        let storage = Storage {
            kv: Arc::new(kv),
            blobs: Arc::new(blobs),
        };
        Self::on(storage, Box::new(()), false).await
    }

    pub fn tenant(&self) -> &Tenant {
        &self.caller.tenant
    }

    pub async fn log_batch(&self, batch: LogBatch) -> LogOutcome {
        batch::log(
            &self.state.store,
            self.state.intake(),
            self.tenant(),
            self.run,
            batch,
        )
        .await
        .expect("a stored batch")
    }

    /// Logs `batch`, then lets five seconds pass, as between an SDK's requests.
    pub async fn log_and_wait(&self, batch: LogBatch) {
        self.log_batch(batch).await;
        self.clock.advance(Duration::seconds(5));
    }

    pub async fn record(&self) -> RunRecord {
        runs::load(&self.state.store, self.tenant(), self.run)
            .await
            .expect("the run")
            .record
    }

    pub async fn summary(&self, name: &str) -> SeriesSummary {
        self.record().await.series[name].clone()
    }

    /// Every point of `loss` as a reader holding `record` finds it, read a few at a
    /// time, as (step, value bits, timestamp bits).
    pub async fn points_with(&self, record: &RunRecord) -> Vec<(i64, u64, u64)> {
        let mut out = Vec::new();
        let mut after: Option<Place> = None;
        loop {
            let page: series::SeriesPage<Points> = series::read(
                &self.state.store,
                self.tenant(),
                record,
                "loss",
                Window {
                    range: StepRange::default(),
                    after: after.as_ref(),
                    limit: Some(37),
                },
            )
            .await
            .expect("a read");
            let p = &page.points;
            out.extend(
                (0..p.len())
                    .map(|i| (p.steps[i], p.values[i].to_bits(), p.timestamps[i].to_bits())),
            );
            match page.next {
                Some(next) => after = Some(next),
                None => return out,
            }
        }
    }

    /// Every point of `loss`, as (step, value bits, timestamp bits).
    pub async fn points(&self) -> Vec<(i64, u64, u64)> {
        self.points_with(&self.record().await).await
    }

    /// The steps of `loss`.
    pub async fn steps(&self) -> Vec<i64> {
        self.points().await.into_iter().map(|p| p.0).collect()
    }

    /// The lines of `stdout`.
    pub async fn lines(&self) -> Vec<(i64, String)> {
        let page: series::SeriesPage<TextPoints> = series::read(
            &self.state.store,
            self.tenant(),
            &self.record().await,
            "stdout",
            Window::default(),
        )
        .await
        .expect("a read");
        page.points
            .steps
            .into_iter()
            .zip(page.points.texts)
            .collect()
    }

    /// A chart of `loss` of at most `max_points`: steps and value bits.
    pub async fn downsampled(&self, max_points: usize) -> (Vec<i64>, Vec<u64>) {
        let (points, _) = series::read_downsampled(
            &self.state.store,
            self.tenant(),
            &self.record().await,
            "loss",
            StepRange::default(),
            max_points,
        )
        .await
        .expect("a downsampled read");
        (
            points.steps,
            points.values.iter().map(|v| v.to_bits()).collect(),
        )
    }

    /// What folds sealed of a series, from its fold item.
    pub async fn folded(&self, name: &str) -> Option<Folded> {
        fold::all_folded(&self.state.store, self.tenant(), self.run)
            .await
            .expect("the fold items")
            .remove(name)
    }

    /// What the hourly run does with the run's sweep note: settle its hot batches, fold
    /// it, and delete blocks no fold item names.
    pub async fn settle(&self) {
        let note = sextant_domain::sweep::Note {
            tenant: self.tenant().id(),
            blob: String::new(),
            upload_id: None,
            claimant: sextant_domain::sweep::Claimant::Series { run: self.run },
        };
        fold::settle(&self.state.store, &self.state.marks, &note, self.run)
            .await
            .expect("a settle");
    }

    /// Only the first part of `settle`: the run's hot batches that arrived over
    /// `SETTLE_AFTER` ago.
    pub async fn settle_hot(&self) -> Result<(), series::SeriesError> {
        let (store, meter) = (&self.state.store, self.state.meter());
        hot::settle_due(store, meter, self.tenant(), self.run).await
    }

    pub async fn fold(&self) -> FoldReport {
        fold::fold(&self.state.store, self.tenant(), self.run)
            .await
            .expect("a fold")
    }

    /// The run's items whose sort keys start with any of `prefixes`.
    pub async fn items(&self, prefixes: &[&str]) -> usize {
        let query = Query::partition(runs::data_partition(self.tenant(), self.run));
        let items = self.kv.query(query).await.expect("a query").items;
        items
            .iter()
            .filter(|item| prefixes.iter().any(|p| item.key.sk.starts_with(p)))
            .count()
    }

    pub async fn chunk_items(&self) -> usize {
        self.items(&["c#", "t#"]).await
    }

    pub async fn blocks(&self) -> usize {
        let prefix = format!("{}runs/{}/series/", self.tenant().blob_prefix(), self.run);
        self.state
            .store
            .blobs
            .list(&prefix, None, 1000)
            .await
            .expect("a listing")
            .blobs
            .len()
    }

    pub async fn stored_bytes(&self) -> u64 {
        self.record().await.stored_bytes
    }

    /// Points the team's usage counts in the hour of `at`.
    pub async fn billed_points(&self, at: OffsetDateTime) -> i64 {
        let key = usage::points_key(self.tenant(), at);
        self.kv
            .get(&key)
            .await
            .unwrap()
            .and_then(|item| item.n(usage::POINTS))
            .unwrap_or(0)
    }
}
