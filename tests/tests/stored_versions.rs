//! Records written by releases before this one still read and take changes:
//! versioned records moved to one helper (`sextant_storage::records::Versioned`), and
//! teams now start at version 1 where they started at 0, or carried no version at all;
//! members and their addresses gained verification, and sessions records; hourly
//! usage records gained byte-seconds; run records gained external ids and their series
//! step units; members gained names.

use sextant_domain::accounts;
use sextant_domain::credentials::Role;
use sextant_storage::kv::{Condition, Value};
use sextant_storage::records::VERSION;
use sextant_tests::{embedded_state, signed_up_caller};

async fn team_version(
    state: &sextant_edge::state::AppState,
    key: &sextant_storage::kv::Key,
) -> Option<i64> {
    state
        .store
        .kv
        .get(key)
        .await
        .unwrap()
        .expect("the team record")
        .n(VERSION)
}

#[tokio::test]
async fn a_team_stored_at_version_zero_or_without_one_still_takes_role_changes() {
    for stored in [Some(0), None] {
        let (state, _dir) = embedded_state().await;
        let caller = signed_up_caller(&state).await;
        let key = caller.tenant.key("team");
        assert_eq!(
            team_version(&state, &key).await,
            Some(1),
            "a new team starts at 1"
        );

        // As the release before wrote it.
        let mut item = state
            .store
            .kv
            .get(&key)
            .await
            .unwrap()
            .expect("the team record");
        match stored {
            Some(version) => {
                item.attrs.insert(VERSION.to_owned(), Value::N(version));
            }
            None => {
                item.attrs.remove(VERSION);
            }
        }
        state.store.kv.put(item, Condition::None).await.unwrap();

        for expected in [1, 2] {
            let member =
                accounts::change_role(&state.store, &caller.tenant, caller.user, Role::Admin)
                    .await
                    .unwrap_or_else(|err| panic!("team stored at {stored:?}: {err}"));
            assert_eq!(member.role, Role::Admin);
            assert_eq!(team_version(&state, &key).await, Some(expected));
        }
    }
}

/// Rewrites a record's document as the release before wrote it: without `fields`.
async fn as_written_before(
    state: &sextant_edge::state::AppState,
    key: &sextant_storage::kv::Key,
    fields: &[&str],
) {
    let item = state.store.kv.get(key).await.unwrap().expect("the record");
    let mut doc: serde_json::Value =
        serde_json::from_str(item.s("doc").expect("a document")).unwrap();
    for field in fields {
        assert!(
            doc.as_object_mut().unwrap().remove(*field).is_some(),
            "{field} is written now"
        );
    }
    let item = item.with("doc", Value::S(doc.to_string()));
    state.store.kv.put(item, Condition::None).await.unwrap();
}

/// Accounts from before addresses were verified: their address counts as verified,
/// their sessions (which have no record) still sign in, and a password reset ends
/// those sessions too.
#[tokio::test]
async fn an_account_and_a_session_from_before_verification_work_and_a_reset_ends_the_session() {
    use sextant_domain::accounts::{DisplayName, Email, EmailStatus, recovery};
    use sextant_domain::credentials::Plane;
    use sextant_domain::credentials::password::Password;
    use sextant_storage::kv::{Key, Query};
    use std::sync::Arc;

    let (state, _dir) = embedded_state().await;
    let outbox = tempfile::tempdir().unwrap();
    let state = state.with_mailer(Arc::new(sextant_storage_local::OutboxMailer::new(
        outbox.path().to_owned(),
        "sextant@localhost",
    )));
    let address = format!("{}@example.com", sextant_tests::unique("old"));
    let client = std::net::IpAddr::from(std::net::Ipv4Addr::LOCALHOST);
    let signed_up = accounts::signup(
        &state.store,
        state.sessions(),
        DisplayName::parse("team", "Old timers").unwrap(),
        Email::parse(&address).unwrap(),
        Password::parse("an old, long password".into()).unwrap(),
        client,
    )
    .await
    .unwrap();
    let caller = sextant_edge::auth::authenticate(&state, &signed_up.api_key, Plane::Control)
        .await
        .unwrap();
    let user_key = caller.tenant.key(format!("user#{}", caller.user));
    as_written_before(&state, &user_key, &["email_verified"]).await;
    let lookup_key = Key::new(format!("~email#{address}"), "_");
    as_written_before(&state, &lookup_key, &["verified", "held_until"]).await;
    // Sessions had no records.
    let records = state
        .store
        .kv
        .query(Query::partition(caller.tenant.root()).prefix(format!("session#{}#", caller.user)))
        .await
        .unwrap()
        .items;
    assert_eq!(records.len(), 1);
    state
        .store
        .kv
        .delete(&records[0].key, Condition::None)
        .await
        .unwrap();

    let (_, status) = accounts::email_status(&state.store, &caller.tenant, caller.user)
        .await
        .unwrap();
    assert_eq!(status, EmailStatus::Verified);
    let token = &signed_up.session.token;
    sextant_edge::auth::authenticate(&state, token, Plane::Control)
        .await
        .expect("a session from before still signs in");

    // Tokens issued in the second of a reset survive it (`iat` counts seconds).
    tokio::time::sleep(std::time::Duration::from_millis(1_100)).await;
    let base: url::Url = "http://sextant.test".parse().unwrap();
    let postman = state.postman.as_deref().unwrap();
    recovery::request_reset(&state.store, postman, &base, &address, client)
        .await
        .unwrap();
    let link = sextant_storage_local::newest_link(outbox.path(), &address, "reset")
        .unwrap()
        .expect("a reset link");
    let reset_token = sextant_tests::link_token(&link);
    recovery::reset_password(
        &state.store,
        &reset_token,
        Password::parse("a new, long password".into()).unwrap(),
        client,
    )
    .await
    .unwrap();
    assert!(
        sextant_edge::auth::authenticate(&state, token, Plane::Control)
            .await
            .is_err(),
        "the reset ends a session that had no record"
    );
}

/// Hourly usage records from before storage was integrated hold a sample of the bytes
/// stored, not byte-seconds: they bill as that many bytes the whole hour, beside hours
/// rolled up now, and a report closed then reads without byte-seconds.
#[tokio::test]
async fn hourly_records_and_reports_from_before_the_integral_bill_their_samples() {
    use sextant_domain::billing::{self, Report, ReportStatus};
    use sextant_domain::calendar::{BillingMonth, hour_label};
    use sextant_storage::kv::Key;
    use time::macros::datetime;

    let (state, _dir) = embedded_state().await;
    let caller = signed_up_caller(&state).await;
    let month = BillingMonth::parse("2026-10").unwrap();
    for (hour, points, bytes) in [
        (datetime!(2026-10-03 7:00 UTC), 40, 2_000),
        (datetime!(2026-10-03 8:00 UTC), 0, 3_000),
    ] {
        let written_before = serde_json::json!({
            "hour": hour.format(&time::format_description::well_known::Rfc3339).unwrap(),
            "points": points,
            "storage_bytes": bytes,
        });
        let key = Key::new(
            caller.tenant.partition("usage"),
            format!("hour#{}", hour_label(hour)),
        );
        let item =
            sextant_storage::kv::Item::new(key).with("doc", Value::S(written_before.to_string()));
        state.store.kv.put(item, Condition::None).await.unwrap();
    }
    let usage = billing::usage(&state.store, &state.settings.plan, &caller.tenant, month)
        .await
        .unwrap();
    assert_eq!(usage.points, 40);
    assert_eq!(usage.byte_seconds, 5_000 * 3600);
    assert_eq!(usage.gb_hours, rust_decimal::Decimal::new(5, 6));

    let closed_then = serde_json::json!({
        "tenant_id": caller.tenant.id(),
        "month": "2026-10",
        "status": "closed",
        "points": 40,
        "gb_hours": "0.000005",
        "line_items": [],
        "total": "0.00",
        "currency": "USD",
        "closed_at": "2026-11-01T00:00:00Z",
    });
    let report: Report = serde_json::from_value(closed_then).unwrap();
    assert_eq!(report.status, ReportStatus::Closed);
    assert_eq!(report.byte_seconds, None);
    assert!(
        serde_json::to_value(&report)
            .unwrap()
            .get("byte_seconds")
            .is_none(),
        "read and written back unchanged"
    );
}

/// Run records from before step units and external ids (the release before wrote
/// neither): their series count whole steps and take whole-step batches, and they have
/// no external id. What this release writes for such runs is what that one wrote.
#[tokio::test]
async fn a_run_from_before_step_units_counts_whole_steps_and_takes_batches() {
    use sextant_domain::projects::{self, ProjectName};
    use sextant_domain::runs::{self, NewRun, summary::StepUnit};
    use sextant_domain::series::batch::{self, LogBatch};

    let (state, _dir) = embedded_state().await;
    let caller = signed_up_caller(&state).await;
    let project = projects::create(&state.store, &caller, ProjectName::parse("old").unwrap())
        .await
        .unwrap();
    let record = runs::create(&state.store, &caller, &project, NewRun::default())
        .await
        .unwrap();
    let log = |id: &str, steps: &str| {
        serde_json::from_str::<LogBatch>(&format!(
            r#"{{"batch_id": "{id}", "series": {{"loss": {{"steps": {steps}, "values": [1.0, 2.0]}}}}}}"#
        ))
        .unwrap()
    };
    batch::log(
        &state.store,
        state.intake(),
        &caller.tenant,
        record.id,
        log("a", "[0, 1]"),
    )
    .await
    .unwrap();
    let key = sextant_storage::kv::Key::new(
        runs::project_partition(&caller.tenant, project.id),
        format!("run#{}", record.id),
    );
    let item = state.store.kv.get(&key).await.unwrap().expect("the run");
    let doc = item.s("doc").expect("a document");
    for field in ["step_unit", "external_id"] {
        assert!(!doc.contains(field), "{field} in {doc}");
    }

    batch::log(
        &state.store,
        state.intake(),
        &caller.tenant,
        record.id,
        log("b", "[2, 3]"),
    )
    .await
    .unwrap();
    let loaded = runs::load(&state.store, &caller.tenant, record.id)
        .await
        .unwrap();
    assert_eq!(loaded.record.series["loss"].step_unit, StepUnit::Whole);
    assert_eq!(loaded.record.series["loss"].count, 4);
    assert_eq!(loaded.record.external_id, None);
}

/// Members from before members had names: their records have no `name`. They list by
/// their address, and take role changes.
#[tokio::test]
async fn a_member_stored_before_names_lists_by_address_and_takes_role_changes() {
    use sextant_domain::accounts::{DisplayName, Email};
    use sextant_domain::credentials::password::Password;

    let (state, _dir) = embedded_state().await;
    let client = std::net::IpAddr::from(std::net::Ipv4Addr::LOCALHOST);
    let signed_up = accounts::signup(
        &state.store,
        state.sessions(),
        DisplayName::parse("team", "Old timers").unwrap(),
        Email::parse(&format!("{}@example.com", sextant_tests::unique("admin"))).unwrap(),
        Password::parse("an old, long password".into()).unwrap(),
        client,
    )
    .await
    .unwrap();
    let admin = sextant_edge::auth::authenticate(
        &state,
        &signed_up.api_key,
        sextant_domain::credentials::Plane::Control,
    )
    .await
    .unwrap();
    let address = format!("{}@example.com", sextant_tests::unique("old"));
    let (_, token) = accounts::create_invite(
        &state.store,
        state.settings.invite_ttl,
        &admin.tenant,
        admin.user,
        Email::parse(&address).unwrap(),
        Role::Member,
    )
    .await
    .unwrap();
    let joined = accounts::accept_invite(
        &state.store,
        state.sessions(),
        &token,
        Some(DisplayName::parse("name", "Named now").unwrap()),
        Password::parse("another long password".into()).unwrap(),
        client,
    )
    .await
    .unwrap();
    let user_key = admin.tenant.key(format!("user#{}", joined.user_id));
    as_written_before(&state, &user_key, &["name"]).await;

    let members = accounts::list_members(&state.store, &admin.tenant)
        .await
        .unwrap();
    let old = members
        .iter()
        .find(|member| member.id == joined.user_id)
        .expect("the member from before");
    assert_eq!(old.name, None);
    assert_eq!(old.display_name(), address);
    let changed = accounts::change_role(&state.store, &admin.tenant, joined.user_id, Role::Viewer)
        .await
        .unwrap();
    assert_eq!(changed.role, Role::Viewer);
    assert_eq!(changed.name, None);
}
