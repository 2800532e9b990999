//! Deletes that stop halfway (a crash, a timeout, a store that fails) finish when they
//! are retried: nothing the first attempt meant to delete stays stored or billed.

use std::sync::Arc;

use sextant_domain::deletion;
use sextant_domain::projects::{self, ProjectName};
use sextant_domain::runs::{self, NewRun};
use sextant_domain::usage;
use sextant_domain::views;
use sextant_storage::Storage;
use sextant_storage::blob::BlobStore;
use sextant_storage::kv::{KvStore, Query};
use sextant_storage_local::EmbeddedKv;
use sextant_tests::faults::{Faults, Op, Timing};
use sextant_tests::{local_blobs_with_routes, log_points_and_an_image, signed_up_caller, state_on};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_project_delete_stopped_halfway_finishes_its_half_deleted_runs_when_retried() {
    let (blobs, dir) = local_blobs_with_routes().await;
    let kv: Arc<dyn KvStore> =
        Arc::new(EmbeddedKv::open(&dir.path().join("store.redb")).expect("store"));
    let faults = Faults::new();
    let state = state_on(Storage {
        kv: faults.kv(Arc::clone(&kv)),
        blobs: Arc::clone(&blobs) as Arc<dyn BlobStore>,
    });
    let caller = signed_up_caller(&state).await;
    let tenant = &caller.tenant;
    let project = projects::create(&state.store, &caller, ProjectName::parse("doomed").unwrap())
        .await
        .unwrap();
    let mut runs = Vec::new();
    for n in 0..4 {
        // Half of them made as Neptune's client makes runs, under an external id.
        let run = if n % 2 == 0 {
            runs::create(&state.store, &caller, &project, NewRun::default()).await
        } else {
            let external = format!("neptune-run-{n}");
            runs::create_or_resume(
                &state.store,
                &caller,
                &project,
                &external,
                NewRun::default(),
            )
            .await
            .map(|(record, _)| record)
        }
        .unwrap()
        .id;
        log_points_and_an_image(&state, tenant, run, &format!("b{n}"), n).await;
        runs.push(run);
    }
    for name in ["overview", "spikes"] {
        views::save(&state.store, &caller, &project, name, "x=step")
            .await
            .expect("a saved view");
    }
    let stored = |kv: Arc<dyn KvStore>| async move {
        kv.get(&usage::totals_key(tenant))
            .await
            .unwrap()
            .and_then(|item| item.n(usage::BYTES))
            .unwrap_or(0)
    };
    assert!(stored(Arc::clone(&kv)).await > 0);

    // Each run's delete marks it deleting, deletes its data, then drops its record:
    // two transactions. The 5th from now leaves a run marked but not gone.
    faults.fail(Op::Transact, 5, Timing::Before);
    assert!(
        deletion::delete_project(&state.store, tenant, &project)
            .await
            .is_err()
    );
    assert_eq!(faults.take_fired().len(), 1, "the fault struck");
    deletion::delete_project(&state.store, tenant, &project)
        .await
        .expect("the retry finishes the delete");

    for run in &runs {
        let data = kv
            .query(Query::partition(runs::data_partition(tenant, *run)))
            .await
            .unwrap();
        assert!(data.items.is_empty(), "run {run} keeps {:?}", data.items);
        assert!(runs::load(&state.store, tenant, *run).await.is_err());
    }
    // Nor does the project keep anything: its runs' records, the usage counters that
    // outlive each run but not the project, nor its saved views and their count.
    let project_items = kv
        .query(Query::partition(runs::project_partition(
            tenant, project.id,
        )))
        .await
        .unwrap();
    assert!(
        project_items.items.is_empty(),
        "the project keeps {:?}",
        project_items.items
    );
    let objects = blobs
        .list(&tenant.blob_prefix(), None, 1_000)
        .await
        .expect("a listing");
    assert!(
        objects.blobs.is_empty(),
        "objects left: {:?}",
        objects.blobs
    );
    assert_eq!(
        stored(Arc::clone(&kv)).await,
        0,
        "bytes still billed after the delete"
    );
}
