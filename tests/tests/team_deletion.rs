//! Deleting a team takes everything it holds and every way into it, and bills it one
//! last time: a deletion that stops halfway is finished by the hourly metering run,
//! after which no credential, invite or share of the team opens anything, its
//! addresses sign up anew, nothing of it is stored but its usage records (the bill),
//! and once the month's report is closed the roll-up stops visiting it. On the
//! DynamoDB store the whole table is scanned for anything else left.

use std::sync::Arc;

use sextant_domain::accounts::{self, DisplayName, Email};
use sextant_domain::billing::{self, PricePlan};
use sextant_domain::budgets::{self, Budget};
use sextant_domain::calendar::BillingMonth;
use sextant_domain::credentials::password::Password;
use sextant_domain::credentials::{Plane, Role};
use sextant_domain::projects::{self, ProjectName};
use sextant_domain::runs::{self, NewRun};
use sextant_domain::shares::{self, NewShare};
use sextant_domain::{deletion, metering, usage, views};
use sextant_edge::auth;
use sextant_edge::state::AppState;
use sextant_storage::Storage;
use sextant_storage::blob::BlobStore;
use sextant_storage::kv::{KvStore, Query};
use sextant_storage_aws::AwsStorageConfig;
use sextant_storage_local::EmbeddedKv;
use sextant_tests::faults::{Faults, Op, Timing};
use sextant_tests::{
    fresh_aws_storage, local_blobs_with_routes, log_points_and_an_image, scan_table, state_on,
    unique,
};

const PASSWORD: &str = "a long enough password";

/// A state whose store fails when told to, over either backend.
struct Faulty {
    state: AppState,
    faults: Arc<Faults>,
    kv: Arc<dyn KvStore>,
    blobs: Arc<dyn BlobStore>,
    /// The DynamoDB table, to scan whole.
    aws: Option<AwsStorageConfig>,
    _keep: Option<tempfile::TempDir>,
}

fn faulty(kv: Arc<dyn KvStore>, blobs: Arc<dyn BlobStore>) -> (AppState, Arc<Faults>) {
    let faults = Faults::new();
    let state = state_on(Storage {
        kv: faults.kv(Arc::clone(&kv)),
        blobs: faults.blobs(Arc::clone(&blobs)),
    });
    (state, faults)
}

async fn on_embedded() -> Faulty {
    let (blobs, dir) = local_blobs_with_routes().await;
    let kv: Arc<dyn KvStore> = Arc::new(EmbeddedKv::open(&dir.path().join("store.redb")).unwrap());
    let blobs: Arc<dyn BlobStore> = blobs;
    let (state, faults) = faulty(Arc::clone(&kv), Arc::clone(&blobs));
    Faulty {
        state,
        faults,
        kv,
        blobs,
        aws: None,
        _keep: Some(dir),
    }
}

async fn on_dynamodb() -> Faulty {
    let (config, kv, blobs) = fresh_aws_storage().await;
    let (kv, blobs): (Arc<dyn KvStore>, Arc<dyn BlobStore>) = (Arc::new(kv), Arc::new(blobs));
    let (state, faults) = faulty(Arc::clone(&kv), Arc::clone(&blobs));
    Faulty {
        state,
        faults,
        kv,
        blobs,
        aws: Some(config),
        _keep: None,
    }
}

async fn sign_up(
    state: &AppState,
    team: &str,
    email: &str,
) -> Result<accounts::SignedUp, accounts::AccountError> {
    accounts::signup(
        &state.store,
        state.sessions(),
        DisplayName::parse("team", team).unwrap(),
        Email::parse(email).unwrap(),
        Password::parse(PASSWORD.into()).unwrap(),
        std::net::IpAddr::from(std::net::Ipv4Addr::LOCALHOST),
    )
    .await
}

async fn a_team_deletion_stopped_halfway_is_finished_by_the_hourly_run_and_leaves_only_its_bill(
    f: Faulty,
) {
    let state = &f.state;
    let store = &state.store;
    let client = std::net::IpAddr::from(std::net::Ipv4Addr::LOCALHOST);
    let admin_email = format!("{}@example.com", unique("doomed"));
    let signed_up = sign_up(state, "Doomed", &admin_email).await.unwrap();
    let caller = auth::authenticate(state, &signed_up.api_key, Plane::Control)
        .await
        .unwrap();
    let tenant = &caller.tenant;
    // A member who joined, an invite still pending, a budget.
    let member_email = format!("{}@example.com", unique("member"));
    let (_, token) = accounts::create_invite(
        store,
        state.settings.invite_ttl,
        tenant,
        caller.user,
        Email::parse(&member_email).unwrap(),
        Role::Member,
    )
    .await
    .unwrap();
    let member = accounts::accept_invite(
        store,
        state.sessions(),
        &token,
        None,
        Password::parse(PASSWORD.into()).unwrap(),
        client,
    )
    .await
    .unwrap();
    let (_, pending) = accounts::create_invite(
        store,
        state.settings.invite_ttl,
        tenant,
        caller.user,
        Email::parse(&format!("{}@example.com", unique("pending"))).unwrap(),
        Role::Viewer,
    )
    .await
    .unwrap();
    budgets::set(
        store,
        &PricePlan::default(),
        None,
        tenant,
        Budget::parse(&PricePlan::default(), Some("25"), false).unwrap(),
    )
    .await
    .unwrap();
    // Two projects of runs with points, images, a share and saved views.
    let mut run_ids = Vec::new();
    let mut project_ids = Vec::new();
    let mut share_tokens = Vec::new();
    for name in ["first", "second"] {
        let project = projects::create(store, &caller, ProjectName::parse(name).unwrap())
            .await
            .unwrap();
        views::save(store, &caller, &project, "overview", "x=step")
            .await
            .unwrap();
        for n in 0..2u8 {
            let run = runs::create(store, &caller, &project, NewRun::default())
                .await
                .unwrap()
                .id;
            log_points_and_an_image(state, tenant, run, &format!("{name}{n}"), n).await;
            let (_, share) = shares::create(store, &caller, run, NewShare::default())
                .await
                .unwrap();
            share_tokens.push(share);
            run_ids.push(run);
        }
        project_ids.push(project.id);
    }
    let now = store.now();
    let month = BillingMonth::of(now);
    // Three values and an image a run.
    let points_logged = 4 * run_ids.len() as u64;

    // The deletion stops halfway: after its access is gone, among the runs.
    f.faults.fail(Op::Transact, 3, Timing::Before);
    assert!(deletion::delete_team(store, tenant).await.is_err());
    assert_eq!(f.faults.take_fired().len(), 1, "the fault struck");
    for credential in [&signed_up.api_key, &signed_up.session.token, &member.token] {
        assert!(
            auth::authenticate(state, credential, Plane::Control)
                .await
                .is_err(),
            "a credential of the team still opens it"
        );
    }
    // The hourly run finishes it.
    assert_eq!(deletion::finish_team_deletions(store).await.unwrap(), 1);
    assert_eq!(deletion::finish_team_deletions(store).await.unwrap(), 0);

    // Nothing opens the team: its invite, its shares.
    assert!(accounts::invites::open(store, &pending).await.is_err());
    for share in &share_tokens {
        assert!(shares::find(store, share.expose()).await.unwrap().is_none());
    }
    // Nothing of it is stored: not its root, lineage, projects or runs, nor an object
    // but its reports.
    let kv = &f.kv;
    let mut partitions = vec![tenant.root(), tenant.partition("lineage")];
    partitions.extend(
        project_ids
            .iter()
            .map(|project| runs::project_partition(tenant, *project)),
    );
    partitions.extend(run_ids.iter().map(|run| runs::data_partition(tenant, *run)));
    for partition in partitions {
        let left = kv.query(Query::partition(&partition)).await.unwrap().items;
        assert!(left.is_empty(), "{partition} keeps {left:?}");
    }
    let objects = f
        .blobs
        .list(&tenant.blob_prefix(), None, 1_000)
        .await
        .unwrap();
    assert!(
        objects.blobs.is_empty(),
        "objects left: {:?}",
        objects.blobs
    );
    let bytes = kv
        .get(&usage::totals_key(tenant))
        .await
        .unwrap()
        .and_then(|item| item.n(usage::BYTES))
        .unwrap_or(0);
    assert_eq!(bytes, 0, "bytes still billed");
    if let Some(config) = &f.aws {
        let tenant_id = tenant.id().to_string();
        for item in scan_table(config).await {
            let pk = item["pk"].as_s().unwrap();
            let sk = item["sk"].as_s().unwrap();
            let doc = item
                .get("doc")
                .and_then(|doc| doc.as_s().ok())
                .map_or("", String::as_str);
            if pk.starts_with(&tenant_id) {
                assert_eq!(
                    pk,
                    &format!("{tenant_id}#usage"),
                    "left behind: {pk} / {sk}"
                );
            } else if pk.starts_with('~') && !pk.starts_with("~sweep#") {
                // (The sweep's notes of uploads settle hourly: with no record left to
                // claim them, they delete nothing more.)
                assert!(
                    !doc.contains(&tenant_id),
                    "a lookup of the team is left: {pk} / {sk}"
                );
            }
        }
    }
    // Its addresses are free again.
    sign_up(state, "Reborn", &admin_email)
        .await
        .expect("the deleted team's address signs up anew");

    // Its points are billed in the month's final report, and after it nothing more.
    metering::roll_up_hour(store, now, &|_| async {
        Ok::<_, sextant_domain::error::Error>(())
    })
    .await
    .unwrap();
    billing::close_month(store, &PricePlan::default(), month)
        .await
        .unwrap();
    let report = billing::report(store, &PricePlan::default(), tenant, month)
        .await
        .unwrap();
    assert_eq!(report.points, points_logged);
    assert_eq!(metering::forget_closed(store, month).await.unwrap(), 1);
    let next_month = month.end();
    metering::roll_up_hour(store, next_month, &|_| async {
        Ok::<_, sextant_domain::error::Error>(())
    })
    .await
    .unwrap();
    assert!(
        !metering::billed_tenants(store, BillingMonth::of(next_month))
            .await
            .unwrap()
            .contains(&tenant.id()),
        "the deleted team is billed the month after"
    );
}

sextant_tests::cases!(embedded, super::on_embedded; a_team_deletion_stopped_halfway_is_finished_by_the_hourly_run_and_leaves_only_its_bill);
sextant_tests::aws_cases!(dynamodb, super::on_dynamodb; a_team_deletion_stopped_halfway_is_finished_by_the_hourly_run_and_leaves_only_its_bill);
