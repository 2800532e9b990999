//! A team grows, and ends, in the pages: `/settings/members` (members, pending
//! invites, and the admin's controls over both), `/join/{token}` (where an invite's
//! mailed link lands) and `/settings/team` (rename or delete the team). The pages obey
//! the roles the API does: only admins see or send the forms that change the team, and
//! each needs its CSRF token.

use std::sync::Arc;

use reqwest::{Method, StatusCode, header};
use serde_json::{Value, json};
use sextant_storage::clock::ManualClock;
use sextant_tests::browser::{Browser, Page, logged_in};
use sextant_tests::{Team, TestApp, embedded_state, text, unique};

const PASSWORD: &str = "a long enough password";

/// The CSRF value of the page's forms (every signed-in page has the log-out form).
fn csrf(page: &Page) -> String {
    page.attr("form#logout input[name=csrf]", "value")
}

/// The row of the members table for `email`.
fn member_row(page: &Page, email: &str) -> String {
    let rows = page.texts("table#members tbody tr");
    rows.into_iter()
        .find(|row| row.contains(email))
        .unwrap_or_else(|| panic!("no row for {email} in {}", page.body))
}

/// Invites `email` as `role` through the admin's members page; answers the page.
async fn invite(admin: &Browser, email: &str, role: &str) -> Page {
    admin
        .submit(
            "/settings/members",
            "form#invite",
            &[("email", email), ("role", role)],
        )
        .await
}

/// Follows the invite mailed to `email` in a fresh, logged-out browser and joins as
/// `name`; answers that browser, signed in.
async fn join(app: &TestApp, email: &str, name: &str) -> Browser {
    let token = app.mailed_token(email, "join");
    let newcomer = Browser::new(&app.base);
    let joined = newcomer
        .submit(
            &format!("/join/{token}"),
            "form#join",
            &[("name", name), ("password", PASSWORD)],
        )
        .await;
    assert_eq!(joined.location(), "/projects");
    newcomer
}

/// A team with a run, its admin signed in, and a member who joined from an invite,
/// signed in in a browser of their own.
struct Teammates {
    app: TestApp,
    team: Team,
    run: String,
    admin: Browser,
    member: Browser,
    email: String,
}

async fn teammates() -> Teammates {
    let app = TestApp::spawn().await;
    let team = app.signup().await;
    let run = app.new_run(&team.api_key).await;
    let admin = logged_in(&app, &team).await;
    let email = format!("{}@example.com", unique("ada"));
    invite(&admin, &email, "member").await;
    let member = join(&app, &email, "Ada").await;
    Teammates {
        app,
        team,
        run,
        admin,
        member,
        email,
    }
}

/// Every admin form of the members page, with fields that pass validation: the
/// invite `invite_id` resent and revoked, member `member_id` demoted and removed.
fn admin_forms(
    invite_id: &str,
    member_id: &str,
) -> Vec<(String, Vec<(&'static str, &'static str)>)> {
    vec![
        (
            "/settings/members/invites".to_owned(),
            vec![("email", "someone@example.com"), ("role", "admin")],
        ),
        (
            format!("/settings/members/invites/{invite_id}/resend"),
            vec![],
        ),
        (
            format!("/settings/members/invites/{invite_id}/revoke"),
            vec![],
        ),
        (
            format!("/settings/members/{member_id}/role"),
            vec![("role", "viewer")],
        ),
        (format!("/settings/members/{member_id}/remove"), vec![]),
    ]
}

async fn members_json(app: &TestApp, team: &Team) -> Vec<Value> {
    let (_, members) = app.get("/v1/members", &team.api_key).await;
    members["members"].as_array().unwrap().clone()
}

#[tokio::test]
async fn an_admin_invites_from_the_members_page_and_the_mailed_link_joins_the_team_logged_in() {
    let app = TestApp::spawn().await;
    let team = app.signup().await;
    let admin = logged_in(&app, &team).await;
    let page = admin.get("/settings/members").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert_eq!(page.count("table#members tbody tr"), 1);
    let me = member_row(&page, &team.email);
    assert!(me.contains("(you)") && me.contains("admin"), "{me}");
    assert_eq!(page.text("#no-invites"), "No pending invites.");

    let email = format!("{}@example.com", unique("grace"));
    let sent = invite(&admin, &email, "member").await;
    assert_eq!(sent.status, StatusCode::OK, "{}", sent.body);
    assert!(sent.text("#invite-sent").contains(&email));
    let link = sent.text("code#invite-link");
    let pending = sent.texts("table#invites tbody tr");
    assert_eq!(pending.len(), 1, "{pending:?}");
    assert!(
        pending[0].contains(&email) && pending[0].contains(&team.email),
        "the invite, with who sent it: {pending:?}"
    );

    // The mail names the team and who invited, and carries the link the page showed.
    let mail = app
        .outbox()
        .into_iter()
        .rev()
        .find(|mail| mail.to == email)
        .expect("the invite mail");
    assert_eq!(mail.link_to("join"), Some(link.as_str()));
    assert!(mail.subject.contains("Whale Watchers"), "{}", mail.subject);
    assert!(mail.text.contains(&team.email), "{}", mail.text);

    // Logged out, the link shows the team and who invited, and asks a name and password.
    let newcomer = Browser::new(&app.base);
    let form = newcomer.get(&link).await;
    assert_eq!(form.status, StatusCode::OK, "{}", form.body);
    assert_eq!(form.text("#join-team"), "Whale Watchers");
    let invited_by = form.text("#join-invited-by");
    assert!(
        invited_by.contains(&team.email) && invited_by.contains(&email),
        "{invited_by}"
    );
    let weak = newcomer
        .submit_on(
            &form,
            "form#join",
            &[("name", "Grace Hopper"), ("password", "short")],
        )
        .await;
    assert_eq!(weak.status, StatusCode::BAD_REQUEST);
    assert_eq!(weak.count("p.error"), 1);
    assert_eq!(
        weak.attr("form#join input[name=name]", "value"),
        "Grace Hopper"
    );
    let joined = newcomer
        .submit_on(
            &weak,
            "form#join",
            &[("name", "Grace Hopper"), ("password", PASSWORD)],
        )
        .await;
    assert_eq!(joined.location(), "/projects");
    assert_eq!(newcomer.get("/projects").await.status, StatusCode::OK);

    // A member sees the team, without the admin's controls or the pending invites.
    let listed = newcomer.get("/settings/members").await;
    assert_eq!(listed.count("table#members tbody tr"), 2);
    let grace = member_row(&listed, &email);
    assert!(
        grace.contains("Grace Hopper") && grace.contains("member"),
        "{grace}"
    );
    for control in [
        "form#invite",
        "form.change-role",
        "a.remove-member",
        "table#invites",
        "#no-invites",
    ] {
        assert_eq!(listed.count(control), 0, "a member sees {control}");
    }
    // The admin sees the newcomer, active just now, and no invite left.
    let page = admin.get("/settings/members").await;
    assert!(!member_row(&page, &email).contains("never"));
    assert_eq!(page.count("table#invites"), 0);

    // The link worked once: now it opens a page that says so, not JSON.
    let used = Browser::new(&app.base).get(&link).await;
    assert_eq!(used.status, StatusCode::NOT_FOUND);
    assert!(used.header(header::CONTENT_TYPE).starts_with("text/html"));
    assert_eq!(used.count("#invite-gone"), 1, "{}", used.body);
}

#[tokio::test]
async fn join_links_that_open_nothing_get_a_page_that_says_so() {
    let (state, _dir) = embedded_state().await;
    let clock = Arc::new(ManualClock::starting_at(time::OffsetDateTime::now_utc()));
    let (app, _) = TestApp::serving(state.with_clock(clock.clone())).await;
    let team = app.signup().await;
    let admin = logged_in(&app, &team).await;
    let stranger = Browser::new(&app.base);
    let gone = |page: &Page| {
        assert_eq!(page.status, StatusCode::NOT_FOUND, "{}", page.body);
        assert_eq!(page.count("#invite-gone"), 1, "{}", page.body);
    };
    gone(&stranger.get("/join/no-such-token").await);

    // Revoked from the members page.
    let revoked = format!("{}@example.com", unique("revoked"));
    let page = invite(&admin, &revoked, "viewer").await;
    let link = page.text("code#invite-link");
    let revoke = admin.submit_on(&page, "form.revoke-invite", &[]).await;
    assert_eq!(revoke.location(), "/settings/members");
    gone(&stranger.get(&link).await);

    // Resent: the old link opens nothing, the new one the form.
    let resent = format!("{}@example.com", unique("resent"));
    let page = invite(&admin, &resent, "member").await;
    let old = page.text("code#invite-link");
    let page = admin.submit_on(&page, "form.resend-invite", &[]).await;
    let new = page.text("code#invite-link");
    assert_ne!(old, new);
    assert_eq!(
        app.mailed_token(&resent, "join"),
        sextant_tests::link_token(&new)
    );
    gone(&stranger.get(&old).await);
    let form = stranger.get(&new).await;
    assert_eq!(form.status, StatusCode::OK);

    // The address got an account of its own meanwhile: the page says so.
    let (status, _) = app
        .call(
            Method::POST,
            "/v1/signup",
            None,
            Some(json!({"team": "Elsewhere", "email": resent, "password": PASSWORD})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let taken = stranger.get(&new).await;
    assert_eq!(taken.status, StatusCode::CONFLICT);
    assert_eq!(taken.count("#invite-address-taken"), 1, "{}", taken.body);
    let posted = stranger
        .submit_on(
            &form,
            "form#join",
            &[("name", "Late"), ("password", PASSWORD)],
        )
        .await;
    assert_eq!(posted.status, StatusCode::CONFLICT);

    // Expired: a week later.
    let late = format!("{}@example.com", unique("late"));
    let page = invite(&admin, &late, "member").await;
    let link = page.text("code#invite-link");
    let form = stranger.get(&link).await;
    clock.advance(time::Duration::days(7) + time::Duration::minutes(1));
    gone(&stranger.get(&link).await);
    let posted = stranger
        .submit_on(
            &form,
            "form#join",
            &[("name", "Late"), ("password", PASSWORD)],
        )
        .await;
    gone(&posted);
    assert_eq!(members_json(&app, &team).await.len(), 1, "nobody joined");
}

#[tokio::test]
async fn members_and_viewers_see_the_list_without_controls_and_their_forms_are_refused() {
    let app = TestApp::spawn().await;
    let team = app.signup().await;
    let admin = logged_in(&app, &team).await;
    let pending = format!("{}@example.com", unique("pending"));
    let page = invite(&admin, &pending, "member").await;
    let invite_id = page.attr("table#invites tbody tr", "data-invite-id");
    let admin_id = team.user_id.clone();

    for role in ["member", "viewer"] {
        let email = format!("{}@example.com", unique(role));
        invite(&admin, &email, role).await;
        let browser = join(&app, &email, &format!("A {role}")).await;
        let page = browser.get("/settings/members").await;
        assert_eq!(page.status, StatusCode::OK);
        assert!(member_row(&page, &team.email).contains("admin"));
        for control in [
            "form#invite",
            "form.change-role",
            "a.remove-member",
            "table#invites",
        ] {
            assert_eq!(page.count(control), 0, "a {role} sees {control}");
        }
        let csrf = csrf(&page);
        for (path, fields) in admin_forms(&invite_id, &admin_id) {
            let mut fields: Vec<(&str, &str)> = fields;
            fields.push(("csrf", &csrf));
            let refused = browser.post(&path, &fields).await;
            assert_eq!(
                refused.status,
                StatusCode::FORBIDDEN,
                "a {role} posting {path}"
            );
        }
        assert_eq!(
            browser
                .get(&format!("/settings/members/{admin_id}/remove"))
                .await
                .status,
            StatusCode::FORBIDDEN
        );
    }
    let (_, invites) = app.get("/v1/invites", &team.api_key).await;
    let invites = invites["invites"].as_array().unwrap();
    assert_eq!(invites.len(), 1, "only the admin's invite: {invites:?}");
    assert_eq!(text(&invites[0], "email"), pending);
    let admin_now = members_json(&app, &team)
        .await
        .into_iter()
        .find(|member| member["id"] == admin_id.as_str())
        .unwrap();
    assert_eq!(admin_now["role"], "admin");
}

#[tokio::test]
async fn every_members_and_team_form_needs_its_csrf_token() {
    let app = TestApp::spawn().await;
    let team = app.signup().await;
    let admin = logged_in(&app, &team).await;
    let page = invite(&admin, &format!("{}@example.com", unique("x")), "member").await;
    let invite_id = page.attr("table#invites tbody tr", "data-invite-id");
    let token = sextant_tests::link_token(&page.text("code#invite-link"));
    let me = &team.user_id;
    let mut forms = admin_forms(&invite_id, me);
    forms.extend([
        (
            format!("/join/{token}"),
            vec![("name", "N"), ("password", PASSWORD)],
        ),
        ("/settings/team/name".to_owned(), vec![("name", "Renamed")]),
        (
            "/settings/team/delete".to_owned(),
            vec![("confirm", "Whale Watchers")],
        ),
    ]);
    for (path, fields) in forms {
        let refused = admin.post(&path, &fields).await;
        assert_eq!(
            refused.status,
            StatusCode::FORBIDDEN,
            "{path} without a token"
        );
    }
    let (_, invites) = app.get("/v1/invites", &team.api_key).await;
    assert_eq!(invites["invites"].as_array().unwrap().len(), 1);
    assert_eq!(members_json(&app, &team).await.len(), 1);
    assert_eq!(
        admin.get("/projects").await.text("header .team"),
        "Whale Watchers"
    );
}

#[tokio::test]
async fn an_admin_demotes_and_removes_a_member_who_then_loses_the_controls_and_their_access() {
    let Teammates {
        app,
        team,
        run,
        admin,
        member: ada,
        email,
    } = teammates().await;
    let ada_id = members_json(&app, &team)
        .await
        .into_iter()
        .find(|member| member["email"] == email.as_str())
        .map(|member| text(&member, "id"))
        .unwrap();
    let (status, key) = app
        .post(
            "/v1/api-keys",
            &team.api_key,
            json!({"name": "ada's trainer", "user_id": ada_id}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{key}");
    let ada_key = text(&key, "secret");
    assert_eq!(
        ada.get(&format!("/runs/{run}")).await.count("form#abort"),
        1
    );

    // Demoted to viewer: the run page has no write controls for her any more.
    let page = admin.get("/settings/members").await;
    let form = format!("tr[data-member-id=\"{ada_id}\"] form.change-role");
    let demoted = admin.submit_on(&page, &form, &[("role", "viewer")]).await;
    assert_eq!(demoted.location(), "/settings/members");
    assert!(member_row(&admin.get("/settings/members").await, &email).contains("viewer"));
    let run_page = ada.get(&format!("/runs/{run}")).await;
    assert_eq!(run_page.status, StatusCode::OK);
    assert_eq!(
        run_page.count("form#abort") + run_page.count("form#share"),
        0
    );

    // The last admin cannot demote themselves: the page says why.
    let page = admin.get("/settings/members").await;
    let own = format!("tr[data-member-id=\"{}\"] form.change-role", team.user_id);
    let refused = admin.submit_on(&page, &own, &[("role", "member")]).await;
    assert_eq!(refused.status, StatusCode::CONFLICT);
    assert!(
        refused.text("p.error").contains("admin"),
        "{}",
        refused.body
    );

    // Removing asks first, saying what it does.
    let confirm = admin
        .get(&format!("/settings/members/{ada_id}/remove"))
        .await;
    assert_eq!(confirm.status, StatusCode::OK, "{}", confirm.body);
    let effects = confirm.text("ul#removal-effects");
    assert!(effects.contains("API key is revoked"), "{effects}");
    assert!(effects.contains("logged out"), "{effects}");
    let removed = admin.submit_on(&confirm, "form#remove-member", &[]).await;
    assert_eq!(removed.location(), "/settings/members");
    assert_eq!(members_json(&app, &team).await.len(), 1);
    assert_eq!(ada.get("/projects").await.location(), "/login");
    let (status, _) = app.get("/v1/projects", &ada_key).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn an_admin_renames_the_team_and_only_admins_reach_the_team_settings() {
    let app = TestApp::spawn().await;
    let team = app.signup().await;
    let admin = logged_in(&app, &team).await;
    let projects = admin.get("/projects").await;
    assert_eq!(projects.count("a#team-link"), 1);
    let blank = admin
        .submit("/settings/team", "form#rename-team", &[("name", "  ")])
        .await;
    assert_eq!(blank.status, StatusCode::BAD_REQUEST);
    assert_eq!(blank.count("p.error"), 1);
    // The refused name is not taken for the team's: deleting still asks for the real one.
    assert_eq!(blank.text("form#delete-team strong"), "Whale Watchers");
    let renamed = admin
        .submit(
            "/settings/team",
            "form#rename-team",
            &[("name", "Orca Observers")],
        )
        .await;
    assert_eq!(renamed.location(), "/settings/team");
    assert_eq!(
        admin.get("/projects").await.text("header .team"),
        "Orca Observers"
    );

    let email = format!("{}@example.com", unique("member"));
    invite(&admin, &email, "member").await;
    let member = join(&app, &email, "Member").await;
    let page = member.get("/projects").await;
    assert_eq!(page.count("a#team-link"), 0);
    assert_eq!(
        member.get("/settings/team").await.status,
        StatusCode::FORBIDDEN
    );
    let csrf = csrf(&page);
    for (path, fields) in [
        ("/settings/team/name", vec![("name", "Taken over")]),
        ("/settings/team/delete", vec![("confirm", "Orca Observers")]),
    ] {
        let mut fields = fields;
        fields.push(("csrf", &csrf));
        assert_eq!(
            member.post(path, &fields).await.status,
            StatusCode::FORBIDDEN,
            "{path}"
        );
    }
    assert_eq!(
        member.get("/projects").await.text("header .team"),
        "Orca Observers"
    );
}

#[tokio::test]
async fn deleting_the_team_from_its_page_needs_its_name_and_signs_everyone_out() {
    let Teammates {
        app,
        team,
        run,
        admin,
        member,
        ..
    } = teammates().await;

    let wrong = admin
        .submit(
            "/settings/team",
            "form#delete-team",
            &[("confirm", "Whale")],
        )
        .await;
    assert_eq!(wrong.status, StatusCode::BAD_REQUEST);
    assert!(wrong.text("p.error").contains("nothing was deleted"));
    let (status, _) = app.get(&format!("/v1/runs/{run}"), &team.api_key).await;
    assert_eq!(status, StatusCode::OK);

    let deleted = admin
        .submit(
            "/settings/team",
            "form#delete-team",
            &[("confirm", "Whale Watchers")],
        )
        .await;
    assert_eq!(deleted.status, StatusCode::OK, "{}", deleted.body);
    assert!(deleted.text("#team-deleted").contains("are gone"));
    assert!(deleted.set_cookie("sextant_session").contains("Max-Age=0"));
    assert_eq!(admin.get("/projects").await.location(), "/login");
    assert_eq!(member.get("/projects").await.location(), "/login");
    let (status, _) = app.get("/v1/projects", &team.api_key).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // The addresses are free: the admin signs up anew.
    let (status, body) = app
        .call(
            Method::POST,
            "/v1/signup",
            None,
            Some(json!({"team": "Second life", "email": team.email, "password": PASSWORD})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (_, runs) = app.get("/v1/projects", &text(&body, "api_key")).await;
    assert_eq!(
        runs["projects"],
        json!([]),
        "a new team, with nothing of the old"
    );
}

#[tokio::test]
async fn a_member_names_themselves_on_the_account_page_and_teammates_see_it() {
    let app = TestApp::spawn().await;
    let team = app.signup().await;
    let admin = logged_in(&app, &team).await;
    assert_eq!(
        admin
            .get("/settings/account")
            .await
            .attr("form#rename-me input[name=name]", "value"),
        ""
    );
    let blank = admin
        .submit("/settings/account", "form#rename-me", &[("name", "\u{7}")])
        .await;
    assert_eq!(blank.status, StatusCode::BAD_REQUEST);
    let saved = admin
        .submit(
            "/settings/account",
            "form#rename-me",
            &[("name", "Ada Lovelace")],
        )
        .await;
    assert_eq!(saved.status, StatusCode::OK);
    assert_eq!(
        saved.attr("form#rename-me input[name=name]", "value"),
        "Ada Lovelace"
    );
    let me = member_row(&admin.get("/settings/members").await, &team.email);
    assert!(me.contains("Ada Lovelace") && me.contains("admin"), "{me}");
    // Invites name her now.
    let email = format!("{}@example.com", unique("invitee"));
    invite(&admin, &email, "viewer").await;
    let form = Browser::new(&app.base)
        .get(&format!("/join/{}", app.mailed_token(&email, "join")))
        .await;
    assert!(form.text("#join-invited-by").contains("Ada Lovelace"));
}
