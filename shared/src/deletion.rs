//! Cascading deletes, in the one place that knows what a run owns: its artifacts,
//! images, shares and job go before its points and its record, and a project's runs
//! before the project. Each step is safe to repeat, so a delete that stopped halfway
//! (a timeout, a crash) is finished by the next one.

use futures::{StreamExt, TryStreamExt};
use sextant_storage::kv::{Condition, TxOp};

use crate::error::ApiResult;
use crate::ids::RunId;
use crate::projects::{self, Project};
use crate::state::AppState;
use crate::tenancy::Tenant;
use crate::{artifacts, images, queue, runs, shares};

/// How many of a project's runs are deleted at once.
const RUNS_AT_ONCE: usize = 8;

/// Deletes a run and all its data, releasing their storage. The run is hidden first,
/// so nothing reads it half-deleted.
pub async fn delete_run(state: &AppState, tenant: &Tenant, run: RunId) -> ApiResult<()> {
    let marked = runs::mark_deleting(&state.store, tenant, run).await?;
    // Objects first: their records are how they are found.
    artifacts::delete_all(state, tenant, run).await?;
    images::delete_all(state, tenant, run).await?;
    // Shares open nothing once the run is hidden; these are their lookups going too.
    shares::delete_all(&state.store, tenant, run).await?;
    queue::delete_for_run(state, tenant, run).await?;
    runs::purge(&state.store, tenant, &marked).await
}

/// Deletes a project's runs (with their data, those a stopped delete left marked
/// too), then the project, its name and its run counter.
pub async fn delete_project(state: &AppState, tenant: &Tenant, project: &Project) -> ApiResult<()> {
    let runs = runs::every_record_in_project(&state.store, tenant, project.id).await?;
    futures::stream::iter(
        runs.into_iter()
            .map(|run| delete_run(state, tenant, run.id)),
    )
    .buffer_unordered(RUNS_AT_ONCE)
    .try_collect::<Vec<()>>()
    .await?;
    let mut ops = Vec::from(projects::removal(tenant, project));
    ops.push(TxOp::Delete(
        runs::counter_key(tenant, project.id),
        Condition::None,
    ));
    state.store.kv.transact(ops).await?;
    Ok(())
}
