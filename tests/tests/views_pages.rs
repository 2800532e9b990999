//! The saved-view forms over real HTTP, as a browser sends them (each needs its CSRF
//! field), and the section the workspace page lists views with.

use reqwest::StatusCode;
use scraper::Html;
use sextant_api::pages::views::views_section;
use sextant_domain::credentials::{Caller, Plane};
use sextant_domain::projects::{self, Project};
use sextant_domain::views::{self, View};
use sextant_edge::state::AppState;
use sextant_tests::browser::{Browser, Page, logged_in, selector};
use sextant_tests::{Team, TestApp, embedded_state};

/// A team with the project `whales`, served over a state the test also reads.
struct World {
    app: TestApp,
    state: AppState,
    _keep: Box<dyn std::any::Any + Send>,
    team: Team,
    /// The team's admin, as its API key authenticates.
    caller: Caller,
    project: Project,
}

async fn world() -> World {
    let (state, keep) = embedded_state().await;
    let (app, state) = TestApp::serving(state).await;
    let team = app.signup().await;
    app.create_project(&team.api_key, "whales").await;
    let caller = sextant_edge::auth::authenticate(&state, &team.api_key, Plane::Control)
        .await
        .expect("the admin's key");
    let project = projects::find(&state.store, &caller.tenant, "whales")
        .await
        .expect("the project");
    World {
        app,
        state,
        _keep: keep,
        team,
        caller,
        project,
    }
}

impl World {
    async fn views(&self) -> Vec<View> {
        views::list(&self.state.store, &self.caller.tenant, &self.project)
            .await
            .expect("the views")
    }

    async fn names(&self) -> Vec<String> {
        self.views()
            .await
            .into_iter()
            .map(|view| view.name)
            .collect()
    }
}

/// The CSRF field of the forms the browser is shown (every signed-in page has the
/// log-out form); the workspace page's own forms carry the same value.
async fn csrf(browser: &Browser) -> String {
    let page = browser.get("/projects").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    page.attr("form#logout input[name=csrf]", "value")
}

async fn save(browser: &Browser, project: &str, name: &str, query: &str) -> Page {
    let csrf = csrf(browser).await;
    browser
        .post(
            &format!("/projects/{project}/views"),
            &[("csrf", &csrf), ("name", name), ("query", query)],
        )
        .await
}

async fn delete(browser: &Browser, project: &str, encoded_name: &str) -> Page {
    let csrf = csrf(browser).await;
    browser
        .post(
            &format!("/projects/{project}/views/{encoded_name}/delete"),
            &[("csrf", &csrf)],
        )
        .await
}

/// A viewer of `team`, signed in.
async fn viewer(app: &TestApp, team: &Team) -> Browser {
    let (_, token) = app.add_member(team, "viewer").await;
    let browser = Browser::new(&app.base);
    browser.set_cookie("sextant_session", &token);
    browser
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn saving_through_the_form_opens_the_view_by_its_url_and_the_same_name_replaces_it() {
    let w = world().await;
    let admin = logged_in(&w.app, &w.team).await;
    let saved = save(
        &admin,
        "whales",
        " lr sweep / 1 ",
        "group=param%3Alr&smooth=0.6",
    )
    .await;
    assert_eq!(
        saved.location(),
        "/projects/whales/workspace?view=lr%20sweep%20%2F%201"
    );
    // Addressed by id, the project's URLs still name it by name.
    let by_id = save(&admin, &w.project.id.to_string(), "x & y", "x=time").await;
    assert_eq!(
        by_id.location(),
        "/projects/whales/workspace?view=x%20%26%20y"
    );
    let views = w.views().await;
    assert_eq!(
        views
            .iter()
            .map(|view| (view.name.as_str(), view.query.as_str()))
            .collect::<Vec<_>>(),
        [
            ("lr sweep / 1", "group=param%3Alr&smooth=0.6"),
            ("x & y", "x=time")
        ]
    );
    assert_eq!(views[0].saved_by, w.caller.user);

    let replaced = save(&admin, "whales", "lr sweep / 1", "smooth=0.9").await;
    assert_eq!(
        replaced.location(),
        "/projects/whales/workspace?view=lr%20sweep%20%2F%201"
    );
    let views = w.views().await;
    assert_eq!(views.len(), 2, "replaced, not added: {views:?}");
    assert_eq!(views[0].query, "smooth=0.9");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_through_the_form_removes_the_view_and_goes_back_to_the_workspace() {
    let w = world().await;
    let admin = logged_in(&w.app, &w.team).await;
    for name in ["keep", "drop / me"] {
        save(&admin, "whales", name, "x=step").await.location();
    }
    let deleted = delete(&admin, "whales", "drop%20%2F%20me").await;
    assert_eq!(deleted.location(), "/projects/whales/workspace");
    assert_eq!(w.names().await, ["keep"]);
    let again = delete(&admin, "whales", "drop%20%2F%20me").await;
    assert_eq!(again.status, StatusCode::NOT_FOUND, "{}", again.body);
    assert_eq!(w.names().await, ["keep"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_views_section_links_each_view_and_gives_only_writers_its_forms() {
    let w = world().await;
    let admin = logged_in(&w.app, &w.team).await;
    for name in ["b <script>alert(1)</script>", "a view?"] {
        save(&admin, "whales", name, "smooth=0.5").await.location();
    }
    let views = w.views().await;
    let current = "group=param%3Alr&x=time\"><b>";

    let html = Html::parse_fragment(
        &views_section("whales", &views, "the-csrf", true, current).into_string(),
    );
    let attrs = |css: &str, name: &str| -> Vec<String> {
        html.select(&selector(css))
            .filter_map(|element| element.value().attr(name).map(str::to_owned))
            .collect()
    };
    assert_eq!(
        attrs("section#views ul a.view-link", "href"),
        [
            "/projects/whales/workspace?view=a%20view%3F",
            "/projects/whales/workspace?view=b%20%3Cscript%3Ealert%281%29%3C%2Fscript%3E",
        ]
    );
    let texts: Vec<String> = html
        .select(&selector("a.view-link"))
        .map(|element| element.text().collect())
        .collect();
    assert_eq!(texts, ["a view?", "b <script>alert(1)</script>"]);
    assert_eq!(
        html.select(&selector("script")).count(),
        0,
        "names are text"
    );
    assert_eq!(
        attrs("form.delete-view", "action"),
        [
            "/projects/whales/views/a%20view%3F/delete",
            "/projects/whales/views/b%20%3Cscript%3Ealert%281%29%3C%2Fscript%3E/delete",
        ]
    );
    assert_eq!(
        attrs("form.delete-view input[name=csrf]", "value"),
        ["the-csrf"; 2]
    );
    assert_eq!(attrs("form#save-view", "method"), ["post"]);
    assert_eq!(
        attrs("form#save-view", "action"),
        ["/projects/whales/views"]
    );
    assert_eq!(
        attrs("form#save-view input[name=csrf]", "value"),
        ["the-csrf"]
    );
    assert_eq!(attrs("form#save-view input[name=name]", "type"), ["text"]);
    assert_eq!(
        attrs(
            "form#save-view input#save-view-query[type=hidden][name=query]",
            "value"
        ),
        [current]
    );
    assert_eq!(
        html.select(&selector("b")).count(),
        0,
        "the query is a value"
    );

    // Each link and each form does what it says, through the routes.
    let action = &attrs("form.delete-view", "action")[1];
    let deleted = delete(&admin, "whales", action.split('/').nth(4).unwrap()).await;
    assert_eq!(deleted.location(), "/projects/whales/workspace");
    assert_eq!(w.names().await, ["a view?"]);

    let read_only = Html::parse_fragment(
        &views_section("whales", &views, "the-csrf", false, current).into_string(),
    );
    assert_eq!(read_only.select(&selector("a.view-link")).count(), 2);
    assert_eq!(read_only.select(&selector("form")).count(), 0);

    let empty =
        Html::parse_fragment(&views_section("whales", &[], "the-csrf", true, "").into_string());
    assert_eq!(
        empty.select(&selector("section#views a.view-link")).count(),
        0
    );
    assert_eq!(
        empty
            .select(&selector("section#views form#save-view"))
            .count(),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_can_neither_save_nor_delete_a_view() {
    let w = world().await;
    let admin = logged_in(&w.app, &w.team).await;
    save(&admin, "whales", "shared", "x=step").await.location();
    let viewer = viewer(&w.app, &w.team).await;
    let saved = save(&viewer, "whales", "mine", "x=time").await;
    assert_eq!(saved.status, StatusCode::FORBIDDEN, "{}", saved.body);
    assert_eq!(saved.count("p.error"), 1);
    let replaced = save(&viewer, "whales", "shared", "x=time").await;
    assert_eq!(replaced.status, StatusCode::FORBIDDEN);
    let deleted = delete(&viewer, "whales", "shared").await;
    assert_eq!(deleted.status, StatusCode::FORBIDDEN);
    let views = w.views().await;
    assert_eq!(views.len(), 1);
    assert_eq!(views[0].query, "x=step");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn view_forms_without_this_browsers_csrf_token_are_refused_and_change_nothing() {
    let w = world().await;
    let admin = logged_in(&w.app, &w.team).await;
    save(&admin, "whales", "kept", "x=step").await.location();
    let other = logged_in(&w.app, &w.team).await;
    let stolen = csrf(&other).await;
    for token in [None, Some("AAAAAAAAAAAAAAAA"), Some(stolen.as_str())] {
        let mut fields = vec![("name", "forged"), ("query", "x=time")];
        fields.extend(token.map(|token| ("csrf", token)));
        let saved = admin.post("/projects/whales/views", &fields).await;
        assert_eq!(
            saved.status,
            StatusCode::FORBIDDEN,
            "{token:?}: {}",
            saved.body
        );
        let deleted = admin
            .post(
                "/projects/whales/views/kept/delete",
                &token
                    .map(|token| ("csrf", token))
                    .into_iter()
                    .collect::<Vec<_>>(),
            )
            .await;
        assert_eq!(deleted.status, StatusCode::FORBIDDEN, "{token:?}");
    }
    assert_eq!(w.names().await, ["kept"]);
    // Logged out, the forms send the browser to log in.
    let stranger = Browser::new(&w.app.base);
    let csrf = stranger
        .get("/login")
        .await
        .attr("form#login input[name=csrf]", "value");
    let logged_out = stranger
        .post(
            "/projects/whales/views",
            &[("csrf", &csrf), ("name", "anon"), ("query", "")],
        )
        .await;
    assert_eq!(logged_out.location(), "/login");
    assert_eq!(w.names().await, ["kept"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_team_can_neither_save_nor_delete_a_projects_views() {
    let w = world().await;
    let admin = logged_in(&w.app, &w.team).await;
    save(&admin, "whales", "secret", "filter=tag%3Aa")
        .await
        .location();
    let b = w.app.signup().await;
    let intruder = logged_in(&w.app, &b).await;
    for project in ["whales".to_owned(), w.project.id.to_string()] {
        let saved = save(&intruder, &project, "secret", "filter=tag%3Ab").await;
        assert_eq!(
            saved.status,
            StatusCode::NOT_FOUND,
            "{project}: {}",
            saved.body
        );
        let deleted = delete(&intruder, &project, "secret").await;
        assert_eq!(deleted.status, StatusCode::NOT_FOUND, "{project}");
    }
    let views = w.views().await;
    assert_eq!(views.len(), 1);
    assert_eq!(views[0].query, "filter=tag%3Aa");
    assert_eq!(views[0].saved_by, w.caller.user);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_too_long_or_a_query_naming_a_view_is_refused_with_400_and_a_reason() {
    let w = world().await;
    let admin = logged_in(&w.app, &w.team).await;
    let long_name = "n".repeat(101);
    for (name, query) in [
        (long_name.as_str(), "x=step"),
        ("", "x=step"),
        ("fine", "x=step&view=other"),
    ] {
        let page = save(&admin, "whales", name, query).await;
        assert_eq!(page.status, StatusCode::BAD_REQUEST, "{name:?} {query:?}");
        assert!(!page.text("p.error").is_empty());
    }
    assert!(w.names().await.is_empty());
    let longest = "n".repeat(100);
    let saved = save(&admin, "whales", &longest, "x=step").await;
    assert_eq!(
        saved.location(),
        format!("/projects/whales/workspace?view={longest}")
    );
}
