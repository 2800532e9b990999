//! A member's account over HTTP: the address verified by a mailed link, a forgotten
//! password reset by mail, a password changed, sessions listed and ended. On both
//! stores; `sextant serve` mails through its outbox, which the tests read as a member
//! would open their mail.

use std::sync::Arc;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sextant_edge::state::AppState;
use sextant_storage::clock::ManualClock;
use sextant_storage_local::OutboxMailer;
use sextant_tests::{
    TestApp, aws_cases, cases, error_code, link_token, mailed_link, serve_state, text, unique,
};
use time::{Duration, OffsetDateTime};

macro_rules! on_both_backends {
    ($($case:ident),+ $(,)?) => {
        cases!(embedded, sextant_tests::TestApp::spawn; $($case),+);
        aws_cases!(dynamodb, sextant_tests::TestApp::spawn_on_aws; $($case),+);
    };
}

on_both_backends!(
    a_sign_up_mails_a_link_that_verifies_the_address_once,
    a_forgotten_password_is_reset_by_mail_and_every_session_and_token_ends,
    a_changed_password_ends_the_members_other_sessions,
    members_list_their_sessions_and_end_any_of_them,
    log_in_and_reset_answers_do_not_tell_whether_an_address_has_an_account,
    asking_for_reset_links_in_a_loop_is_throttled_and_never_slows_the_log_in,
);

const NEW_PASSWORD: &str = "a brand new passphrase";

/// An answer refused with `expected` status and error `code`.
fn assert_refused(status: StatusCode, body: &Value, expected: StatusCode, code: &str) {
    assert_eq!(
        (status, error_code(body).as_str()),
        (expected, code),
        "{body}"
    );
}

async fn log_in(app: &TestApp, email: &str, password: &str, agent: &str) -> (StatusCode, Value) {
    let response = app
        .request(Method::POST, "/v1/login", None)
        .header("user-agent", agent)
        .json(&json!({"email": email, "password": password}))
        .send()
        .await
        .expect("the server answers");
    let status = response.status();
    (status, response.json().await.expect("a JSON answer"))
}

async fn session_token(app: &TestApp, email: &str, password: &str, agent: &str) -> String {
    let (status, session) = log_in(app, email, password, agent).await;
    assert_eq!(status, StatusCode::OK, "{session}");
    text(&session, "token")
}

async fn status_of(app: &TestApp, credential: &str) -> StatusCode {
    app.get("/v1/me", credential).await.0
}

async fn a_sign_up_mails_a_link_that_verifies_the_address_once(app: TestApp) {
    let team = app.signup().await;
    let (_, me) = app.get("/v1/me", &team.token).await;
    assert_eq!(me["email"], team.email.as_str());
    assert_eq!(me["email_verified"], false);
    assert_eq!(me["email_status"], "held");
    let held_until = OffsetDateTime::parse(
        me["email_held_until"].as_str().expect("a hold"),
        &time::format_description::well_known::Rfc3339,
    )
    .expect("a time");
    let hold = held_until - OffsetDateTime::now_utc();
    assert!(
        hold > Duration::hours(23) && hold <= Duration::hours(24),
        "{hold}"
    );

    let mail = app.outbox();
    assert_eq!(mail.len(), 1, "one letter: {mail:?}");
    assert_eq!(mail[0].to, team.email);
    assert!(
        mail[0].subject.contains("Whale Watchers"),
        "{}",
        mail[0].subject
    );
    assert!(mail[0].html.contains("Confirm your address"));
    let token = app.mailed_token(&team.email, "verify");

    let (status, verified) = app.verify_email(&token).await;
    assert_eq!(status, StatusCode::OK, "{verified}");
    assert_eq!(
        verified,
        json!({"email": team.email, "email_verified": true})
    );
    let (_, me) = app.get("/v1/me", &team.api_key).await;
    assert_eq!(me["email_verified"], true);
    assert_eq!(me["email_status"], "verified");
    assert!(me.get("email_held_until").is_none(), "{me}");

    // A link works once; a made-up one never.
    for token in [token.as_str(), "not-a-token"] {
        let (status, body) = app.verify_email(token).await;
        assert_refused(status, &body, StatusCode::BAD_REQUEST, "invalid_link");
    }
    // Nothing more to send once verified.
    let (status, _) = app
        .call(
            Method::POST,
            "/v1/email/verify/resend",
            Some(&team.token),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(app.outbox().len(), 1);
}

async fn a_forgotten_password_is_reset_by_mail_and_every_session_and_token_ends(app: TestApp) {
    let team = app.signup().await;
    let other_session = session_token(&app, &team.email, &team.password, "laptop").await;
    let (status, exchanged) = app
        .call(Method::POST, "/v1/auth/token", Some(&team.api_key), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{exchanged}");
    let access_token = text(&exchanged, "token");
    // Tokens issued in the second of the reset would survive it (`iat` counts
    // seconds): let one go by.
    tokio::time::sleep(std::time::Duration::from_millis(1_100)).await;

    let before = app.outbox().len();
    let (status, body) = app
        .call(
            Method::POST,
            "/v1/password/forgot",
            None,
            Some(json!({"email": team.email.to_uppercase()})),
        )
        .await;
    assert_eq!((status, body), (StatusCode::ACCEPTED, Value::Null));
    let mail = app.outbox();
    assert_eq!(mail.len(), before + 1);
    assert!(
        mail[before].subject.contains("Reset"),
        "{}",
        mail[before].subject
    );
    let token = app.mailed_token(&team.email, "reset");

    let reset = |password: &str| {
        app.call(
            Method::POST,
            "/v1/password/reset",
            None,
            Some(json!({"token": token, "password": password})),
        )
    };
    let (status, body) = reset("short").await;
    assert_refused(status, &body, StatusCode::BAD_REQUEST, "weak_password");
    let (status, body) = reset(NEW_PASSWORD).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");

    for credential in [&team.token, &other_session, &access_token] {
        assert_eq!(status_of(&app, credential).await, StatusCode::UNAUTHORIZED);
    }
    // The API key is not the password's: it goes on working.
    assert_eq!(status_of(&app, &team.api_key).await, StatusCode::OK);
    let (status, _) = log_in(&app, &team.email, &team.password, "laptop").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let fresh = session_token(&app, &team.email, NEW_PASSWORD, "laptop").await;
    let (_, me) = app.get("/v1/me", &fresh).await;
    assert_eq!(
        me["email_verified"], true,
        "the reset link proved the address"
    );

    let (status, body) = reset("yet another new passphrase").await;
    assert_refused(status, &body, StatusCode::BAD_REQUEST, "invalid_link");
    // A verification link is no reset link.
    let verify = app.mailed_token(&team.email, "verify");
    let (status, body) = app
        .call(
            Method::POST,
            "/v1/password/reset",
            None,
            Some(json!({"token": verify, "password": NEW_PASSWORD})),
        )
        .await;
    assert_refused(status, &body, StatusCode::BAD_REQUEST, "invalid_link");
}

async fn change_password(app: &TestApp, credential: &str, current: &str) -> (StatusCode, Value) {
    app.post(
        "/v1/password/change",
        credential,
        json!({"current_password": current, "new_password": NEW_PASSWORD}),
    )
    .await
}

async fn a_changed_password_ends_the_members_other_sessions(app: TestApp) {
    let team = app.signup().await;
    let here = session_token(&app, &team.email, &team.password, "desktop").await;
    let (status, body) = change_password(&app, &here, "not the password").await;
    assert_refused(status, &body, StatusCode::FORBIDDEN, "wrong_password");
    // Only a signed-in member changes a password, not a key acting for them.
    let (status, body) = app
        .post(
            "/v1/password/change",
            &team.api_key,
            json!({"current_password": team.password, "new_password": NEW_PASSWORD}),
        )
        .await;
    assert_refused(status, &body, StatusCode::FORBIDDEN, "forbidden");

    let (status, body) = change_password(&app, &here, &team.password).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    assert_eq!(status_of(&app, &here).await, StatusCode::OK);
    assert_eq!(status_of(&app, &team.token).await, StatusCode::UNAUTHORIZED);
    assert_eq!(
        log_in(&app, &team.email, &team.password, "desktop").await.0,
        StatusCode::UNAUTHORIZED
    );
    session_token(&app, &team.email, NEW_PASSWORD, "desktop").await;
}

async fn members_list_their_sessions_and_end_any_of_them(app: TestApp) {
    let team = app.signup().await;
    let laptop = session_token(&app, &team.email, &team.password, "Laptop/1.0").await;
    let phone = session_token(&app, &team.email, &team.password, "Phone/2.0").await;

    let (status, listed) = app.get("/v1/sessions", &laptop).await;
    assert_eq!(status, StatusCode::OK, "{listed}");
    let sessions = listed["sessions"].as_array().expect("sessions").clone();
    assert_eq!(sessions.len(), 3, "{listed}");
    let current: Vec<&Value> = sessions.iter().filter(|s| s["current"] == true).collect();
    assert_eq!(current.len(), 1);
    assert_eq!(current[0]["user_agent"], "Laptop/1.0");
    assert_eq!(current[0]["address"], "127.0.0.1");
    let phone_id = sessions
        .iter()
        .find(|s| s["user_agent"] == "Phone/2.0")
        .map(|s| text(s, "id"))
        .expect("the phone's session");

    let (status, _) = app
        .delete(&format!("/v1/sessions/{phone_id}"), &laptop)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(status_of(&app, &phone).await, StatusCode::UNAUTHORIZED);
    let (status, body) = app
        .delete(&format!("/v1/sessions/{phone_id}"), &laptop)
        .await;
    assert_refused(status, &body, StatusCode::NOT_FOUND, "not_found");

    // Another team's member cannot end this team's sessions, even knowing their id.
    let stranger = app.signup().await;
    let (_, listed) = app.get("/v1/sessions", &laptop).await;
    let sign_up_session = listed["sessions"]
        .as_array()
        .expect("sessions")
        .iter()
        .find(|s| s["current"] == false)
        .map(|s| text(s, "id"))
        .expect("the sign-up's session");
    let (status, _) = app
        .delete(&format!("/v1/sessions/{sign_up_session}"), &stranger.token)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(status_of(&app, &team.token).await, StatusCode::OK);

    let (status, _) = app.delete("/v1/sessions", &laptop).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(status_of(&app, &team.token).await, StatusCode::UNAUTHORIZED);
    assert_eq!(status_of(&app, &laptop).await, StatusCode::OK);
    let (_, listed) = app.get("/v1/sessions", &laptop).await;
    assert_eq!(listed["sessions"].as_array().map(Vec::len), Some(1));

    // Ending one's own session is logging out.
    let own = text(&listed["sessions"][0], "id");
    let (status, _) = app.delete(&format!("/v1/sessions/{own}"), &laptop).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(status_of(&app, &laptop).await, StatusCode::UNAUTHORIZED);
    // Sessions are a member's: a key has none to list.
    let (status, _) = app.get("/v1/sessions", &team.api_key).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

async fn log_in_and_reset_answers_do_not_tell_whether_an_address_has_an_account(app: TestApp) {
    let team = app.signup().await;
    let nobody = format!("{}@example.com", unique("nobody"));
    let before = app.outbox().len();
    let mut answers = Vec::new();
    for email in [&team.email, &nobody] {
        answers.push(
            app.call(
                Method::POST,
                "/v1/password/forgot",
                None,
                Some(json!({"email": email})),
            )
            .await,
        );
    }
    assert_eq!(answers[0], answers[1]);
    assert_eq!(answers[0].0, StatusCode::ACCEPTED);
    // Only the account's address got mail.
    let mail = app.outbox();
    assert_eq!(mail.len(), before + 1);
    assert_eq!(mail[before].to, team.email);

    let wrong_password = log_in(&app, &team.email, "not the password", "x").await;
    let no_account = log_in(&app, &nobody, "not the password", "x").await;
    assert_eq!(wrong_password, no_account);
    assert_eq!(wrong_password.0, StatusCode::UNAUTHORIZED);
}

/// The app on a clock the test moves, mailing into an outbox the test reads.
async fn on_a_manual_clock(state: AppState) -> (String, Arc<ManualClock>, tempfile::TempDir) {
    let outbox = tempfile::tempdir().expect("a directory");
    let mailer = OutboxMailer::new(outbox.path().to_owned(), "Sextant <sextant@localhost>");
    let clock = Arc::new(ManualClock::starting_at(OffsetDateTime::now_utc()));
    let state = state
        .with_mailer(Arc::new(mailer))
        .with_clock(clock.clone());
    (serve_state(state).await, clock, outbox)
}

async fn call(
    base: &str,
    method: Method,
    path: &str,
    credential: Option<&str>,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut request = reqwest::Client::new().request(method, format!("{base}{path}"));
    if let Some(credential) = credential {
        request = request.bearer_auth(credential);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("the server answers");
    let status = response.status();
    let bytes = response.bytes().await.expect("a body");
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).expect("JSON")
    };
    (status, body)
}

async fn sign_up(base: &str, team: &str, email: &str, password: &str) -> (StatusCode, Value) {
    call(
        base,
        Method::POST,
        "/v1/signup",
        None,
        Some(json!({"team": team, "email": email, "password": password})),
    )
    .await
}

cases!(embedded_clock, sextant_tests::embedded_state; an_unverified_address_is_held_for_a_day_then_another_sign_up_may_take_it, a_reset_link_expires_after_half_an_hour);
aws_cases!(dynamodb_clock, sextant_tests::aws_state; an_unverified_address_is_held_for_a_day_then_another_sign_up_may_take_it, a_reset_link_expires_after_half_an_hour);

async fn an_unverified_address_is_held_for_a_day_then_another_sign_up_may_take_it(
    (state, _keep): (AppState, Box<dyn std::any::Any + Send>),
) {
    let (base, clock, outbox) = on_a_manual_clock(state).await;
    let email = format!("{}@example.com", unique("contested"));
    let (status, first) = sign_up(&base, "Squatters", &email, "the squatter's password").await;
    assert_eq!(status, StatusCode::CREATED, "{first}");
    assert_eq!(first["email_verified"], false);
    let first_link = mailed_link(outbox.path(), &email, "verify");

    clock.advance(Duration::hours(24) - Duration::minutes(1));
    // Held for a day.
    let (status, body) = sign_up(&base, "Owners", &email, "the owner's password").await;
    assert_refused(status, &body, StatusCode::CONFLICT, "email_taken");

    clock.advance(Duration::minutes(2));
    let (status, second) = sign_up(&base, "Owners", &email, "the owner's password").await;
    assert_eq!(status, StatusCode::CREATED, "the hold ran out: {second}");

    // The first account is told why, keeps working with its key, and cannot take the
    // address back with its old link.
    let (_, me) = call(
        &base,
        Method::GET,
        "/v1/me",
        Some(&text(&first, "api_key")),
        None,
    )
    .await;
    assert_eq!(me["email_status"], "released", "{me}");
    assert_eq!(me["email_verified"], false);
    let (status, body) = call(
        &base,
        Method::POST,
        "/v1/email/verify",
        None,
        Some(json!({"token": link_token(&first_link)})),
    )
    .await;
    assert_refused(status, &body, StatusCode::CONFLICT, "email_released");
    let (status, body) = call(
        &base,
        Method::POST,
        "/v1/email/verify/resend",
        Some(&text(&first, "token")),
        None,
    )
    .await;
    assert_refused(status, &body, StatusCode::CONFLICT, "email_released");
    // The address logs in to its new owner.
    let (status, session) = call(
        &base,
        Method::POST,
        "/v1/login",
        None,
        Some(json!({"email": email, "password": "the owner's password"})),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(session["tenant_id"], second["tenant_id"]);

    // Verified, the address is the owner's for good.
    let link = mailed_link(outbox.path(), &email, "verify");
    let (status, _) = call(
        &base,
        Method::POST,
        "/v1/email/verify",
        None,
        Some(json!({"token": link_token(&link)})),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    clock.advance(Duration::days(30));
    let (status, body) = sign_up(&base, "Latecomers", &email, "a latecomer's password").await;
    assert_refused(status, &body, StatusCode::CONFLICT, "email_taken");
}

async fn a_reset_link_expires_after_half_an_hour(
    (state, _keep): (AppState, Box<dyn std::any::Any + Send>),
) {
    let (base, clock, outbox) = on_a_manual_clock(state).await;
    let email = format!("{}@example.com", unique("forgetful"));
    let (status, _) = sign_up(&base, "Forgetful", &email, "a forgotten password").await;
    assert_eq!(status, StatusCode::CREATED);
    let forgot = || {
        call(
            &base,
            Method::POST,
            "/v1/password/forgot",
            None,
            Some(json!({"email": email})),
        )
    };
    let reset = |token: String| {
        call(
            &base,
            Method::POST,
            "/v1/password/reset",
            None,
            Some(json!({"token": token, "password": NEW_PASSWORD})),
        )
    };
    assert_eq!(forgot().await.0, StatusCode::ACCEPTED);
    let late = link_token(&mailed_link(outbox.path(), &email, "reset"));
    clock.advance(Duration::minutes(31));
    let (status, body) = reset(late).await;
    assert_refused(status, &body, StatusCode::BAD_REQUEST, "invalid_link");

    assert_eq!(forgot().await.0, StatusCode::ACCEPTED);
    let timely = link_token(&mailed_link(outbox.path(), &email, "reset"));
    clock.advance(Duration::minutes(29));
    assert_eq!(reset(timely).await.0, StatusCode::NO_CONTENT);
}

async fn asking_for_reset_links_in_a_loop_is_throttled_and_never_slows_the_log_in(app: TestApp) {
    let team = app.signup().await;
    let before = app.outbox().len();
    let mut statuses = Vec::new();
    for _ in 0..8 {
        let (status, _) = app
            .call(
                Method::POST,
                "/v1/password/forgot",
                None,
                Some(json!({"email": team.email})),
            )
            .await;
        statuses.push(status);
    }
    // A few go through at once; then each waits longer than the last.
    assert!(
        statuses[..5]
            .iter()
            .all(|status| *status == StatusCode::ACCEPTED),
        "{statuses:?}"
    );
    assert_eq!(statuses[7], StatusCode::TOO_MANY_REQUESTS, "{statuses:?}");
    let sent = app.outbox().len() - before;
    assert!((5..8).contains(&sent), "{sent} letters for {statuses:?}");
    // The member still logs in at once.
    session_token(&app, &team.email, &team.password, "after the flood").await;
}
