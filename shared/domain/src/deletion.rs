//! Cascading deletes, in the one place that knows what a run owns: its artifacts,
//! images, shares and job go before its points and its record, a project's runs
//! before the project, and a team's access and projects before the rest of it. Each
//! step is safe to repeat, so a delete that stopped halfway (a timeout, a crash) is
//! finished by the next one.

use futures::{StreamExt, TryStreamExt};
use sextant_storage::kv::{Condition, Item, Key, Query, StoreError, TxOp};
use sextant_storage::records;

use crate::accounts::AccountError;
use crate::artifacts::ArtifactError;
use crate::error::{Coded, Error, ErrorCode};
use crate::ids::RunId;
use crate::images::ImageError;
use crate::projects::{self, Project};
use crate::queue::QueueError;
use crate::runs::RunError;
use crate::series::SeriesError;
use crate::shares::ShareError;
use crate::tenancy::Tenant;
use crate::{accounts, artifacts, budgets, images, metering, queue, runs, series, shares, views};
use sextant_storage::Store;

/// What stopped a delete; deleting again finishes it.
#[derive(Debug, thiserror::Error)]
pub enum DeletionError {
    #[error(transparent)]
    Account(#[from] AccountError),
    #[error(transparent)]
    Project(#[from] projects::ProjectError),
    #[error(transparent)]
    Run(#[from] RunError),
    #[error(transparent)]
    Artifact(#[from] ArtifactError),
    #[error(transparent)]
    Image(#[from] ImageError),
    #[error(transparent)]
    Share(#[from] ShareError),
    #[error(transparent)]
    Queue(#[from] QueueError),
    #[error(transparent)]
    Series(#[from] SeriesError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Coded for DeletionError {
    fn code(&self) -> ErrorCode {
        match self {
            Self::Account(err) => err.code(),
            Self::Project(err) => err.code(),
            Self::Run(err) => err.code(),
            Self::Artifact(err) => err.code(),
            Self::Image(err) => err.code(),
            Self::Share(err) => err.code(),
            Self::Queue(err) => err.code(),
            Self::Series(err) => err.code(),
            Self::Store(err) => err.code(),
        }
    }

    fn into_error(self) -> Error {
        match self {
            Self::Account(err) => err.into(),
            Self::Project(err) => err.into(),
            Self::Run(err) => err.into(),
            Self::Artifact(err) => err.into(),
            Self::Image(err) => err.into(),
            Self::Share(err) => err.into(),
            Self::Queue(err) => err.into(),
            Self::Series(err) => err.into(),
            Self::Store(err) => err.into(),
        }
    }
}

type Result<T, E = DeletionError> = std::result::Result<T, E>;

/// How many of a project's runs are deleted at once.
const RUNS_AT_ONCE: usize = 8;

/// Deletes a run and all its data, releasing their storage. The run is hidden first,
/// so nothing reads it half-deleted.
pub async fn delete_run(store: &Store, tenant: &Tenant, run: RunId) -> Result<()> {
    let marked = runs::mark_deleting(store, tenant, run).await?;
    // Objects first: their records are how they are found.
    let owner = runs::usage_owner(tenant, &marked.record);
    artifacts::delete_all(store, owner.clone()).await?;
    images::delete_all(store, owner).await?;
    series::fold::delete_all(store, tenant, run).await?;
    // Shares open nothing once the run is hidden; these are their lookups going too.
    shares::delete_all(store, tenant, run).await?;
    queue::delete_for_run(store, tenant, run).await?;
    Ok(runs::purge(store, tenant, &marked).await?)
}

/// Deletes a project's runs (with their data, those a stopped delete left marked
/// too), then its saved views, the project, its name and its run counter.
pub async fn delete_project(store: &Store, tenant: &Tenant, project: &Project) -> Result<()> {
    let runs = runs::every_record_in_project(store, tenant, project.id).await?;
    futures::stream::iter(
        runs.into_iter()
            .map(|run| delete_run(store, tenant, run.id)),
    )
    .buffer_unordered(RUNS_AT_ONCE)
    .try_collect::<Vec<()>>()
    .await?;
    // The runs' usage counters outlive the runs, so the runs add up to the team, but
    // not their project.
    runs::forget_usage_in_project(store, tenant, project.id).await?;
    views::delete_all(store, tenant, project.id).await?;
    let mut ops = Vec::from(projects::removal(tenant, project));
    ops.push(TxOp::Delete(
        runs::counter_key(tenant, project.id),
        Condition::None,
    ));
    store.kv.transact(ops).await?;
    Ok(())
}

/// The teams whose deletion began and has not finished: the hourly metering run
/// finishes each (`finish_team_deletions`).
const DELETING_TEAMS: &str = "~deleting";

fn deleting_mark(tenant: &Tenant) -> Key {
    Key::new(DELETING_TEAMS, tenant.id().to_string())
}

/// Deletes a team: first every way into it (members, keys, invites: nobody is signed
/// in to it from then on), then its budget, its projects with all their runs and
/// data, and everything else it kept. What it logged and stored up to now is billed in
/// the final report of this month (the usage records stay for it), and nothing after.
/// A deletion that stops halfway is finished by the next hourly run, or by deleting
/// again.
pub async fn delete_team(store: &Store, tenant: &Tenant) -> Result<()> {
    store
        .kv
        .put(Item::new(deleting_mark(tenant)), Condition::None)
        .await?;
    accounts::revoke_all_access(store, tenant).await?;
    budgets::forget(store, tenant).await?;
    for project in projects::list(store, tenant).await? {
        delete_project(store, tenant, &project).await?;
    }
    // What is left: the team's record, session records and counters under its root,
    // and the reverse edges of its lineage. Its usage partition stays: it is the bill.
    for partition in [tenant.root(), tenant.partition("lineage")] {
        records::delete_partition(&*store.kv, &partition).await?;
    }
    metering::mark_closed(store, tenant).await?;
    store
        .kv
        .delete(&deleting_mark(tenant), Condition::None)
        .await?;
    tracing::info!(tenant = %tenant.id(), "team deleted");
    Ok(())
}

/// Finishes every team deletion that stopped halfway; answers how many it finished.
pub async fn finish_team_deletions(store: &Store) -> Result<usize> {
    let pending = store.kv.query(Query::partition(DELETING_TEAMS)).await?;
    let mut finished = 0;
    for item in pending.items {
        let Ok(tenant) = item.key.sk.parse() else {
            continue;
        };
        delete_team(store, &Tenant::verified(tenant)).await?;
        finished += 1;
    }
    Ok(finished)
}
