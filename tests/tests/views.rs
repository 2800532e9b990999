//! Saved views of a project's workspace, on both stores: saved, listed by name, read,
//! replaced by name, deleted; at most 100 per project; members and admins write them,
//! viewers only read; and a team reaches only its own projects' views.

use sextant_domain::credentials::{Caller, Role};
use sextant_domain::error::{Coded, ErrorCode};
use sextant_domain::ids::UserId;
use sextant_domain::projects::{self, Project, ProjectName};
use sextant_domain::views::{self, MAX_VIEWS, View, ViewError};
use sextant_edge::state::AppState;
use sextant_tests::{aws_cases, cases, signed_up_caller};

type Keep = Box<dyn std::any::Any + Send>;

cases!(embedded, sextant_tests::embedded_state;
    a_saved_view_reads_back_and_the_list_is_sorted_by_name,
    saving_under_a_name_that_exists_replaces_that_view,
    a_project_holds_at_most_100_views_and_deleting_one_makes_room,
    a_deleted_view_is_gone_and_deleting_a_missing_one_is_not_found,
    a_viewer_reads_views_but_cannot_save_or_delete_them,
    bad_names_and_queries_are_refused_with_their_codes_and_store_nothing,
    another_team_reaches_none_of_a_projects_views_even_holding_the_project,
    each_project_has_its_own_views,
);

aws_cases!(dynamodb, sextant_tests::aws_state;
    a_saved_view_reads_back_and_the_list_is_sorted_by_name,
    saving_under_a_name_that_exists_replaces_that_view,
    a_project_holds_at_most_100_views_and_deleting_one_makes_room,
    a_deleted_view_is_gone_and_deleting_a_missing_one_is_not_found,
    a_viewer_reads_views_but_cannot_save_or_delete_them,
    bad_names_and_queries_are_refused_with_their_codes_and_store_nothing,
    another_team_reaches_none_of_a_projects_views_even_holding_the_project,
    each_project_has_its_own_views,
);

async fn a_project(state: &AppState, caller: &Caller, name: &str) -> Project {
    projects::create(&state.store, caller, ProjectName::parse(name).unwrap())
        .await
        .expect("a project")
}

/// A team's admin and a project of theirs.
async fn a_team_with_a_project(state: &AppState) -> (Caller, Project) {
    let caller = signed_up_caller(state).await;
    let project = a_project(state, &caller, "whales").await;
    (caller, project)
}

async fn names(state: &AppState, caller: &Caller, project: &Project) -> Vec<String> {
    views::list(&state.store, &caller.tenant, project)
        .await
        .expect("the list")
        .into_iter()
        .map(|view| view.name)
        .collect()
}

fn code(err: ViewError) -> ErrorCode {
    err.code()
}

async fn a_saved_view_reads_back_and_the_list_is_sorted_by_name((state, _keep): (AppState, Keep)) {
    let (caller, project) = a_team_with_a_project(&state).await;
    let query = "group=param:lr&smooth=0.6&x=time&hide=run_1";
    let saved = views::save(&state.store, &caller, &project, "  lr sweep  ", query)
        .await
        .expect("saved");
    assert_eq!(
        saved,
        View {
            name: "lr sweep".into(),
            query: query.into(),
            saved_by: caller.user,
            saved_at: saved.saved_at,
        }
    );
    assert!(state.now() - saved.saved_at < time::Duration::minutes(1));
    let read = views::get(&state.store, &caller.tenant, &project, "lr sweep")
        .await
        .expect("read back");
    assert_eq!(read, saved);

    for name in ["zoom/spike", "Überblick", "baseline #2"] {
        views::save(&state.store, &caller, &project, name, "?filter=tag:gpu")
            .await
            .expect("saved");
    }
    assert_eq!(
        names(&state, &caller, &project).await,
        ["baseline #2", "lr sweep", "zoom/spike", "Überblick"]
    );
    let listed = views::list(&state.store, &caller.tenant, &project)
        .await
        .unwrap();
    assert_eq!(
        listed[0].query, "filter=tag:gpu",
        "the leading ? is dropped"
    );
}

async fn saving_under_a_name_that_exists_replaces_that_view((state, _keep): (AppState, Keep)) {
    let (caller, project) = a_team_with_a_project(&state).await;
    views::save(&state.store, &caller, &project, "best", "smooth=0.2")
        .await
        .unwrap();
    // Another member of the team: the replaced view names who saved it last.
    let mut member = caller.clone();
    member.role = Role::Member;
    member.user = UserId::generate();
    let replaced = views::save(&state.store, &member, &project, " best", "smooth=0.9")
        .await
        .expect("replaced");
    assert_eq!(replaced.saved_by, member.user);
    let listed = views::list(&state.store, &caller.tenant, &project)
        .await
        .unwrap();
    assert_eq!(listed, [replaced]);
}

async fn a_project_holds_at_most_100_views_and_deleting_one_makes_room(
    (state, _keep): (AppState, Keep),
) {
    let (caller, project) = a_team_with_a_project(&state).await;
    for n in 0..MAX_VIEWS {
        views::save(&state.store, &caller, &project, &format!("v{n:03}"), "")
            .await
            .unwrap_or_else(|err| panic!("view {n}: {err}"));
    }
    let refused = views::save(&state.store, &caller, &project, "one too many", "")
        .await
        .unwrap_err();
    assert_eq!(code(refused), ErrorCode::TooManyViews);
    assert_eq!(ErrorCode::TooManyViews.as_str(), "too_many_views");
    // Replacing one of them adds none, so the cap does not stand in its way.
    views::save(&state.store, &caller, &project, "v042", "smooth=0.5")
        .await
        .expect("a view replaced at the cap");
    assert_eq!(names(&state, &caller, &project).await.len(), MAX_VIEWS);

    views::delete(&state.store, &caller, &project, "v007")
        .await
        .unwrap();
    views::save(&state.store, &caller, &project, "one too many", "")
        .await
        .expect("room for one after a delete");
    assert_eq!(
        code(
            views::save(&state.store, &caller, &project, "and another", "")
                .await
                .unwrap_err()
        ),
        ErrorCode::TooManyViews
    );
}

async fn a_deleted_view_is_gone_and_deleting_a_missing_one_is_not_found(
    (state, _keep): (AppState, Keep),
) {
    let (caller, project) = a_team_with_a_project(&state).await;
    for name in ["keep", "drop"] {
        views::save(&state.store, &caller, &project, name, "x=step")
            .await
            .unwrap();
    }
    views::delete(&state.store, &caller, &project, "drop")
        .await
        .expect("deleted");
    assert_eq!(names(&state, &caller, &project).await, ["keep"]);
    let gone = views::get(&state.store, &caller.tenant, &project, "drop")
        .await
        .unwrap_err();
    assert_eq!(code(gone), ErrorCode::NotFound);
    for missing in ["drop", "never saved", "", &"x".repeat(500)] {
        let err = views::delete(&state.store, &caller, &project, missing)
            .await
            .unwrap_err();
        assert_eq!(code(err), ErrorCode::NotFound, "{missing:?}");
    }
    assert_eq!(names(&state, &caller, &project).await, ["keep"]);
}

async fn a_viewer_reads_views_but_cannot_save_or_delete_them((state, _keep): (AppState, Keep)) {
    let (caller, project) = a_team_with_a_project(&state).await;
    views::save(&state.store, &caller, &project, "shared", "x=step")
        .await
        .unwrap();
    let mut viewer = caller.clone();
    viewer.role = Role::Viewer;
    let save = views::save(&state.store, &viewer, &project, "mine", "")
        .await
        .unwrap_err();
    assert_eq!(code(save), ErrorCode::Forbidden);
    let replace = views::save(&state.store, &viewer, &project, "shared", "x=time")
        .await
        .unwrap_err();
    assert_eq!(code(replace), ErrorCode::Forbidden);
    let delete = views::delete(&state.store, &viewer, &project, "shared")
        .await
        .unwrap_err();
    assert_eq!(code(delete), ErrorCode::Forbidden);
    let read = views::get(&state.store, &viewer.tenant, &project, "shared")
        .await
        .expect("a viewer reads views");
    assert_eq!(read.query, "x=step");
    assert_eq!(names(&state, &viewer, &project).await, ["shared"]);
}

async fn bad_names_and_queries_are_refused_with_their_codes_and_store_nothing(
    (state, _keep): (AppState, Keep),
) {
    let (caller, project) = a_team_with_a_project(&state).await;
    let long_name = "n".repeat(101);
    for name in ["", "   ", &long_name, "tab\there", "new\nline"] {
        let err = views::save(&state.store, &caller, &project, name, "")
            .await
            .unwrap_err();
        assert_eq!(code(err), ErrorCode::InvalidViewName, "{name:?}");
    }
    let long_query = format!("filter={}", "a".repeat(4_090));
    for query in [
        long_query.as_str(),
        "view=other",
        "smooth=0.6&view=other",
        "%76iew=other",
        "a=b\nc",
    ] {
        let err = views::save(&state.store, &caller, &project, "fine", query)
            .await
            .unwrap_err();
        assert_eq!(code(err), ErrorCode::InvalidViewQuery, "{query:?}");
    }
    assert!(names(&state, &caller, &project).await.is_empty());
    // The limits themselves are allowed.
    let longest_query = format!("filter={}", "a".repeat(4_089));
    views::save(
        &state.store,
        &caller,
        &project,
        &"n".repeat(100),
        &longest_query,
    )
    .await
    .expect("100 characters and 4,096 bytes");
}

async fn another_team_reaches_none_of_a_projects_views_even_holding_the_project(
    (state, _keep): (AppState, Keep),
) {
    let (a, project) = a_team_with_a_project(&state).await;
    views::save(&state.store, &a, &project, "secret", "filter=tag:a")
        .await
        .unwrap();
    let b = signed_up_caller(&state).await;
    // The way in is the project, which B cannot find by A's id or name...
    for id_or_name in [project.id.to_string(), project.name.as_str().to_owned()] {
        assert!(
            projects::find(&state.store, &b.tenant, &id_or_name)
                .await
                .is_err()
        );
    }
    // ...and even holding A's project, B's tenant names only B's keys.
    assert!(names(&state, &b, &project).await.is_empty());
    let get = views::get(&state.store, &b.tenant, &project, "secret")
        .await
        .unwrap_err();
    assert_eq!(code(get), ErrorCode::NotFound);
    let delete = views::delete(&state.store, &b, &project, "secret")
        .await
        .unwrap_err();
    assert_eq!(code(delete), ErrorCode::NotFound);
    views::save(&state.store, &b, &project, "secret", "filter=tag:b")
        .await
        .unwrap();
    let kept = views::get(&state.store, &a.tenant, &project, "secret")
        .await
        .unwrap();
    assert_eq!(kept.query, "filter=tag:a");
    assert_eq!(kept.saved_by, a.user);
}

async fn each_project_has_its_own_views((state, _keep): (AppState, Keep)) {
    let (caller, first) = a_team_with_a_project(&state).await;
    let second = a_project(&state, &caller, "dolphins").await;
    views::save(&state.store, &caller, &first, "same name", "x=step")
        .await
        .unwrap();
    views::save(&state.store, &caller, &second, "same name", "x=time")
        .await
        .unwrap();
    views::save(&state.store, &caller, &second, "only here", "")
        .await
        .unwrap();
    assert_eq!(names(&state, &caller, &first).await, ["same name"]);
    assert_eq!(
        names(&state, &caller, &second).await,
        ["only here", "same name"]
    );
    let first_view = views::get(&state.store, &caller.tenant, &first, "same name")
        .await
        .unwrap();
    assert_eq!(first_view.query, "x=step");
}
