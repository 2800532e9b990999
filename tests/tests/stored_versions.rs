//! Records written by the release before this one still take changes: versioned
//! records moved to one helper (`sextant_storage::records::Versioned`), and teams now
//! start at version 1 where they started at 0, or carried no version at all.

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
