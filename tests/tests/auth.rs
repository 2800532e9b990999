//! Sign-up, log-in, API keys, tokens, invites and members over the real HTTP surface.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sextant_cli::secrets::Secrets;
use sextant_domain::credentials::Role;
use sextant_domain::credentials::jwt::{Keyring, Subject};
use std::sync::Arc;

use sextant_edge::state::AppState;
use sextant_storage::clock::ManualClock;
use sextant_tests::{TestApp, error_code, serve_state, text, unique};
use time::OffsetDateTime;

fn keyring_of(app: &TestApp) -> Keyring {
    let secrets = Secrets::load_or_create(&app.data_dir.path().join("secrets.json")).unwrap();
    Keyring::new(&secrets.jwt_keys().unwrap()).unwrap()
}

#[tokio::test]
async fn signing_up_returns_a_key_and_a_token_that_both_authenticate() {
    let app = TestApp::spawn().await;
    let team = app.signup().await;
    for credential in [&team.api_key, &team.token] {
        let (status, me) = app.get("/v1/me", credential).await;
        assert_eq!(status, StatusCode::OK, "{me}");
        assert_eq!(text(&me, "tenant_id"), team.tenant_id);
        assert_eq!(text(&me, "user_id"), team.user_id);
        assert_eq!(text(&me, "role"), "admin");
    }
}

#[tokio::test]
async fn an_email_signs_up_only_once_whatever_its_case() {
    let app = TestApp::spawn().await;
    let team = app.signup().await;
    let (status, body) = app
        .call(
            Method::POST,
            "/v1/signup",
            None,
            Some(json!({"team": "Copycats", "email": team.email.to_uppercase(), "password": "yet another password"})),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(error_code(&body), "email_taken");
}

#[tokio::test]
async fn sign_up_refuses_bad_emails_short_passwords_and_empty_team_names() {
    let app = TestApp::spawn().await;
    let email = format!("{}@example.com", unique("u"));
    for (body, code) in [
        (
            json!({"team": "T", "email": "not-an-email", "password": "long enough password"}),
            "invalid_email",
        ),
        (
            json!({"team": "T", "email": "a@localhost", "password": "long enough password"}),
            "invalid_email",
        ),
        (
            json!({"team": "T", "email": email, "password": "too short"}),
            "weak_password",
        ),
        (
            json!({"team": "  ", "email": email, "password": "long enough password"}),
            "invalid_name",
        ),
        (json!({"team": "T", "email": email}), "invalid_request"),
    ] {
        let (status, response) = app
            .call(Method::POST, "/v1/signup", None, Some(body.clone()))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body} -> {response}");
        assert_eq!(error_code(&response), code, "{body}");
    }
}

#[tokio::test]
async fn login_answers_a_token_for_the_right_password_and_401_otherwise() {
    let app = TestApp::spawn().await;
    let team = app.signup().await;
    let (status, session) = app
        .call(
            Method::POST,
            "/v1/login",
            None,
            Some(json!({"email": team.email, "password": team.password})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{session}");
    let (status, _) = app.get("/v1/me", &text(&session, "token")).await;
    assert_eq!(status, StatusCode::OK);

    for (email, password) in [
        (team.email.as_str(), "the wrong password"),
        ("nobody@example.com", "the wrong password"),
        ("not an email", "whatever it is"),
    ] {
        let (status, body) = app
            .call(
                Method::POST,
                "/v1/login",
                None,
                Some(json!({"email": email, "password": password})),
            )
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(error_code(&body), "unauthorized");
    }
}

/// A client whose requests leave from `address` (any of 127/8 reaches the server).
fn client_at(address: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(address.parse::<std::net::IpAddr>().unwrap())
        .build()
        .unwrap()
}

/// The app over `state` on a clock the test moves, answering its base URL.
async fn on_a_stopped_clock(state: AppState) -> (String, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::starting_at(OffsetDateTime::now_utc()));
    let base = serve_state(state.with_clock(clock.clone())).await;
    (base, clock)
}

/// Signs a team up; answers its e-mail (the password is `PASSWORD`).
async fn sign_up(base: &str) -> String {
    let email = format!("{}@example.com", unique("owner"));
    let response = reqwest::Client::new()
        .post(format!("{base}/v1/signup"))
        .json(&json!({"team": "Throttled", "email": email, "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    email
}

const PASSWORD: &str = "the one true password";

/// Logs in from `client`, answering the status, the error code (if any) and
/// `Retry-After` (if any).
async fn log_in(
    base: &str,
    client: &reqwest::Client,
    email: &str,
    password: &str,
) -> (StatusCode, Option<String>, Option<u64>) {
    let response = client
        .post(format!("{base}/v1/login"))
        .json(&json!({"email": email, "password": password}))
        .send()
        .await
        .unwrap();
    let status = response.status();
    let retry_after = response
        .headers()
        .get("retry-after")
        .map(|value| value.to_str().unwrap().parse().unwrap());
    let body: Value = response.json().await.unwrap();
    let code = body["error"]["code"].as_str().map(str::to_owned);
    (status, code, retry_after)
}

/// Guessing a password from one address soon waits, longer after each guess; the
/// account's owner, logging in from another address, is not held back by it. Guesses
/// spread over many addresses slow the account down for everyone, but never by more
/// than a minute.
async fn failed_log_ins_back_off_without_locking_the_owner_out((state, _dir): StateAndStore) {
    let (base, clock) = on_a_stopped_clock(state).await;
    let email = sign_up(&base).await;
    let guesser = client_at("127.0.0.1");
    for _ in 0..5 {
        let (status, code, _) = log_in(&base, &guesser, &email, "a wrong guess!!").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(code.as_deref(), Some("unauthorized"));
    }
    for wait in [1, 2, 4] {
        let (status, code, retry) = log_in(&base, &guesser, &email, "a wrong guess!!").await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(code.as_deref(), Some("rate_limited"));
        assert_eq!(retry, Some(wait));
        // Even the right password waits at the guesser's address...
        let (status, _, _) = log_in(&base, &guesser, &email, PASSWORD).await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
        clock.advance(time::Duration::seconds(wait as i64));
        let (status, _, _) = log_in(&base, &guesser, &email, "a wrong guess!!").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "after waiting {wait} s");
    }
    // ...but not at the owner's.
    let owner = client_at("127.0.0.2");
    let (status, code, _) = log_in(&base, &owner, &email, PASSWORD).await;
    assert_eq!(status, StatusCode::OK, "{code:?}");

    // Guesses from many addresses: the account waits, for everyone, at most a minute.
    let mut refused = None;
    for host in 3..=40 {
        let client = client_at(&format!("127.0.0.{host}"));
        let (status, _, retry) = log_in(&base, &client, &email, "a wrong guess!!").await;
        if status == StatusCode::TOO_MANY_REQUESTS {
            refused = retry;
            clock.advance(time::Duration::seconds(retry.unwrap() as i64));
        }
    }
    assert!(refused.is_some_and(|secs| secs == 60), "{refused:?}");
    let (status, _, retry) = log_in(&base, &owner, &email, PASSWORD).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert!(retry.is_some_and(|secs| secs <= 60), "{retry:?}");
    clock.advance(time::Duration::seconds(60));
    let (status, _, _) = log_in(&base, &owner, &email, PASSWORD).await;
    assert_eq!(status, StatusCode::OK, "the owner gets in a minute later");
    // Another account is untouched by all of it.
    let other = sign_up(&base).await;
    let (status, _, _) = log_in(&base, &client_at("127.0.0.99"), &other, PASSWORD).await;
    assert_eq!(status, StatusCode::OK);
}

/// Invite tokens cannot be guessed, but every try may cost a password hash: an address
/// that keeps sending unknown tokens is made to wait.
async fn an_address_sending_unknown_invite_tokens_is_made_to_wait((state, _dir): StateAndStore) {
    let (base, _clock) = on_a_stopped_clock(state).await;
    let client = client_at("127.0.0.5");
    let mut statuses = Vec::new();
    for n in 0..31 {
        let response = client
            .post(format!("{base}/v1/invites/no-such-token-{n}/accept"))
            .json(&json!({"password": "a password long enough"}))
            .send()
            .await
            .unwrap();
        statuses.push(response.status().as_u16());
    }
    assert!(
        statuses[..30].iter().all(|&status| status == 404),
        "{statuses:?}"
    );
    assert_eq!(statuses[30], 429, "{statuses:?}");
}

/// A state, and what its store needs kept alive.
type StateAndStore = (AppState, Box<dyn std::any::Any + Send>);

sextant_tests::cases!(throttled_on_the_embedded_store, sextant_tests::embedded_state;
    failed_log_ins_back_off_without_locking_the_owner_out,
    an_address_sending_unknown_invite_tokens_is_made_to_wait,
);
sextant_tests::aws_cases!(throttled_on_dynamodb, sextant_tests::aws_state;
    failed_log_ins_back_off_without_locking_the_owner_out,
    an_address_sending_unknown_invite_tokens_is_made_to_wait,
);

#[tokio::test]
async fn an_api_key_exchanges_for_a_token_that_cannot_exchange_itself() {
    let app = TestApp::spawn().await;
    let team = app.signup().await;
    let (status, exchanged) = app
        .call(Method::POST, "/v1/auth/token", Some(&team.api_key), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{exchanged}");
    let token = text(&exchanged, "token");
    assert!(exchanged["expires_at"].is_string());
    let (status, me) = app.get("/v1/me", &token).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(text(&me, "tenant_id"), team.tenant_id);

    for credential in [&token, &team.token] {
        let (status, body) = app
            .call(Method::POST, "/v1/auth/token", Some(credential), None)
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(error_code(&body), "api_key_required");
    }
}

#[tokio::test]
async fn forged_expired_and_unsigned_tokens_are_refused() {
    let app = TestApp::spawn().await;
    let team = app.signup().await;
    let keyring = keyring_of(&app);
    let tenant = team.tenant_id.parse().unwrap();
    let subject = Subject::Session {
        user: team.user_id.parse().unwrap(),
        sid: None,
    };
    let (expired, _) = keyring
        .issue(tenant, Role::Admin, subject, time::Duration::minutes(-10))
        .unwrap();
    let (valid, _) = keyring
        .issue(tenant, Role::Admin, subject, time::Duration::minutes(10))
        .unwrap();
    let forged = Keyring::new(&[("local-x".into(), vec![3; 32])])
        .unwrap()
        .issue(tenant, Role::Admin, subject, time::Duration::minutes(10))
        .unwrap()
        .0;
    let mut parts: Vec<&str> = valid.split('.').collect();
    let none_header = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0";
    parts[0] = none_header;
    let unsigned = format!("{}.{}.", parts[0], parts[1]);
    let (status, _) = app.get("/v1/me", &valid).await;
    assert_eq!(status, StatusCode::OK);
    for token in [
        expired,
        forged,
        unsigned,
        "garbage".into(),
        format!("{valid}x"),
    ] {
        let (status, body) = app.get("/v1/me", &token).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{token}");
        assert_eq!(error_code(&body), "unauthorized");
    }
}

#[tokio::test]
async fn requests_without_a_bearer_credential_get_401() {
    let app = TestApp::spawn().await;
    let (status, body) = app.call(Method::GET, "/v1/projects", None, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(error_code(&body), "unauthorized");
    let response = app
        .request(Method::GET, "/v1/projects", None)
        .basic_auth("user", Some("password"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_revoked_key_stops_working_at_once() {
    let app = TestApp::spawn().await;
    let team = app.signup().await;
    let (id, secret) = app.new_api_key(&team, "ci").await;
    assert_eq!(app.get("/v1/me", &secret).await.0, StatusCode::OK);
    assert_eq!(app.revoke_api_key(&team, &id).await, StatusCode::NO_CONTENT);
    assert_eq!(app.get("/v1/me", &secret).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(app.revoke_api_key(&team, &id).await, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn listed_keys_carry_no_secret() {
    let app = TestApp::spawn().await;
    let team = app.signup().await;
    let viewer_key = app.key_with_role(&team, "viewer").await;
    let (status, listed) = app.get("/v1/api-keys", &team.api_key).await;
    assert_eq!(status, StatusCode::OK);
    let keys = listed["api_keys"].as_array().unwrap();
    assert_eq!(keys.len(), 2);
    let listing = listed.to_string();
    assert!(!listing.contains(&viewer_key[20..]));
    assert!(!listing.contains(&team.api_key[20..]));
    assert!(keys.iter().all(|key| key.get("secret").is_none()));
}

#[tokio::test]
async fn a_key_cannot_outrank_the_member_it_acts_for() {
    let app = TestApp::spawn().await;
    let team = app.signup().await;
    let (member_id, _) = app.add_member(&team, "member").await;
    let (status, body) = app
        .post(
            "/v1/api-keys",
            &team.api_key,
            json!({"name": "too strong", "role": "admin", "user_id": member_id}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(error_code(&body), "role_exceeds_owner");

    let (status, created) = app
        .post(
            "/v1/api-keys",
            &team.api_key,
            json!({"name": "member's", "user_id": member_id}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(text(&created, "role"), "member");
    let (_, me) = app.get("/v1/me", &text(&created, "secret")).await;
    assert_eq!(text(&me, "user_id"), member_id);
}

#[tokio::test]
async fn an_invite_makes_a_member_once_and_the_member_can_log_in() {
    let app = TestApp::spawn().await;
    let team = app.signup().await;
    let email = format!("{}@example.com", unique("invitee"));
    let (status, invite) = app
        .post(
            "/v1/invites",
            &team.api_key,
            json!({"email": email, "role": "viewer"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{invite}");
    let token = text(&invite, "token");
    // The link opens the join page, and it is the one mailed to the invitee, naming the
    // team and who invited.
    assert_eq!(text(&invite, "url"), app.url(&format!("/join/{token}")));
    assert_eq!(invite["mailed"], true, "{invite}");
    let mail = app
        .outbox()
        .into_iter()
        .rev()
        .find(|mail| mail.to == email)
        .expect("the invite mail");
    assert_eq!(mail.link_to("join"), Some(text(&invite, "url").as_str()));
    assert!(mail.subject.contains("Whale Watchers"), "{}", mail.subject);
    assert!(
        mail.text.contains(&team.email),
        "the inviter is named: {}",
        mail.text
    );
    let (status, invites) = app.get("/v1/invites", &team.api_key).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(invites["invites"].as_array().unwrap().len(), 1);
    assert!(!invites.to_string().contains(&token));

    let accept_path = format!("/v1/invites/{token}/accept");
    let accept = |password: &'static str| {
        app.call(
            Method::POST,
            &accept_path,
            None,
            Some(json!({"password": password})),
        )
    };
    let (status, body) = accept("short").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(error_code(&body), "weak_password");
    let (status, session) = app
        .call(
            Method::POST,
            &accept_path,
            None,
            Some(json!({"name": "Grace Hopper", "password": "a long enough password"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{session}");
    assert_eq!(text(&session, "tenant_id"), team.tenant_id);
    // Holding the invite proves nothing about the address: its owner is asked to confirm it.
    app.mailed_token(&email, "verify");
    let (status, body) = accept("a long enough password").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");

    let (status, login) = app
        .call(
            Method::POST,
            "/v1/login",
            None,
            Some(json!({"email": email, "password": "a long enough password"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, me) = app.get("/v1/me", &text(&login, "token")).await;
    assert_eq!(text(&me, "role"), "viewer");
    let (_, members) = app.get("/v1/members", &team.api_key).await;
    let members = members["members"].as_array().unwrap();
    assert_eq!(members.len(), 2);
    let joined = members
        .iter()
        .find(|member| member["email"] == email.as_str())
        .unwrap();
    assert_eq!(joined["name"], "Grace Hopper");
}

#[tokio::test]
async fn a_resent_invite_mails_a_new_link_and_the_old_one_opens_nothing() {
    let app = TestApp::spawn().await;
    let team = app.signup().await;
    let email = format!("{}@example.com", unique("invitee"));
    let (_, first) = app
        .post("/v1/invites", &team.api_key, json!({"email": email}))
        .await;
    let resend = format!("/v1/invites/{}/resend", text(&first, "id"));
    let (status, second) = app.post(&resend, &team.api_key, json!({})).await;
    assert_eq!(status, StatusCode::OK, "{second}");
    assert_eq!(text(&second, "id"), text(&first, "id"));
    assert_ne!(text(&second, "token"), text(&first, "token"));
    assert!(text(&second, "expires_at") >= text(&first, "expires_at"));
    assert_eq!(app.mailed_token(&email, "join"), text(&second, "token"));
    let (_, invites) = app.get("/v1/invites", &team.api_key).await;
    assert_eq!(invites["invites"].as_array().unwrap().len(), 1, "{invites}");

    let app = &app;
    let accept = |invite: &Value| {
        let path = format!("/v1/invites/{}/accept", text(invite, "token"));
        async move {
            app.call(
                Method::POST,
                &path,
                None,
                Some(json!({"password": "a long enough password"})),
            )
            .await
        }
    };
    assert_eq!(accept(&first).await.0, StatusCode::NOT_FOUND);
    assert_eq!(accept(&second).await.0, StatusCode::CREATED);
    // Accepted: nothing is left to resend.
    let (status, body) = app.post(&resend, &team.api_key, json!({})).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
}

#[tokio::test]
async fn a_revoked_invite_cannot_be_accepted() {
    let app = TestApp::spawn().await;
    let team = app.signup().await;
    let (_, invite) = app
        .post(
            "/v1/invites",
            &team.api_key,
            json!({"email": format!("{}@example.com", unique("x"))}),
        )
        .await;
    let (status, _) = app
        .delete(
            &format!("/v1/invites/{}", text(&invite, "id")),
            &team.api_key,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = app
        .call(
            Method::POST,
            &format!("/v1/invites/{}/accept", text(&invite, "token")),
            None,
            Some(json!({"password": "a long enough password"})),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn inviting_a_registered_email_conflicts() {
    let app = TestApp::spawn().await;
    let team = app.signup().await;
    let other = app.signup().await;
    let (status, body) = app
        .post("/v1/invites", &team.api_key, json!({"email": other.email}))
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(error_code(&body), "email_taken");
}

#[tokio::test]
async fn removing_a_member_ends_their_sessions_and_revokes_their_keys() {
    let app = TestApp::spawn().await;
    let team = app.signup().await;
    let (member_id, session) = app.add_member(&team, "member").await;
    let (_, created) = app
        .post(
            "/v1/api-keys",
            &team.api_key,
            json!({"name": "theirs", "user_id": member_id}),
        )
        .await;
    let key = text(&created, "secret");
    assert_eq!(app.get("/v1/me", &key).await.0, StatusCode::OK);
    let (status, _) = app
        .delete(&format!("/v1/members/{member_id}"), &team.api_key)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(
        app.get("/v1/me", &session).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(app.get("/v1/me", &key).await.0, StatusCode::UNAUTHORIZED);
    let (_, keys) = app.get("/v1/api-keys", &team.api_key).await;
    assert_eq!(keys["api_keys"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn a_role_change_applies_to_the_members_session_and_keys_at_once() {
    let app = TestApp::spawn().await;
    let team = app.signup().await;
    let (member_id, session) = app.add_member(&team, "admin").await;
    let (_, created) = app
        .post(
            "/v1/api-keys",
            &team.api_key,
            json!({"name": "theirs", "user_id": member_id}),
        )
        .await;
    let key = text(&created, "secret");
    let (status, member) = app
        .call(
            Method::PATCH,
            &format!("/v1/members/{member_id}"),
            Some(&team.api_key),
            Some(json!({"role": "viewer"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{member}");
    assert_eq!(text(&member, "role"), "viewer");
    for credential in [&session, &key] {
        let (_, me) = app.get("/v1/me", credential).await;
        assert_eq!(text(&me, "role"), "viewer");
        let (status, _) = app
            .post("/v1/projects", credential, json!({"name": "nope"}))
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN);
    }
}

/// An invite is a grant of the admin who sent it: it goes with their admin role, so a
/// leaked admin credential cannot leave an invite behind that outlives its removal.
async fn invites_of_a_removed_or_demoted_admin_can_no_longer_be_accepted(app: TestApp) {
    let team = app.signup().await;
    for (ending, change) in [("removed", None), ("demoted", Some("member"))] {
        let (admin, session) = app.add_member(&team, "admin").await;
        let (status, invite) = app
            .post(
                "/v1/invites",
                &session,
                json!({"email": format!("{}@example.com", unique("friend")), "role": "admin"}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{invite}");
        let (status, kept) = app
            .post(
                "/v1/invites",
                &team.api_key,
                json!({"email": format!("{}@example.com", unique("kept"))}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{kept}");
        let (status, body) = match change {
            None => {
                app.delete(&format!("/v1/members/{admin}"), &team.api_key)
                    .await
            }
            Some(role) => {
                app.call(
                    Method::PATCH,
                    &format!("/v1/members/{admin}"),
                    Some(&team.api_key),
                    Some(json!({"role": role})),
                )
                .await
            }
        };
        assert!(status.is_success(), "{ending}: {status} {body}");
        let (status, body) = app
            .call(
                Method::POST,
                &format!("/v1/invites/{}/accept", text(&invite, "token")),
                None,
                Some(json!({"password": "a password long enough"})),
            )
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{ending}: {body}");
        let (_, invites) = app.get("/v1/invites", &team.api_key).await;
        let listed = invites.to_string();
        assert!(!listed.contains(&text(&invite, "id")), "{ending}: {listed}");
        assert!(listed.contains(&text(&kept, "id")), "{ending}: {listed}");
    }
}

sextant_tests::cases!(embedded, sextant_tests::TestApp::spawn; invites_of_a_removed_or_demoted_admin_can_no_longer_be_accepted);
sextant_tests::aws_cases!(dynamodb, sextant_tests::TestApp::spawn_on_aws; invites_of_a_removed_or_demoted_admin_can_no_longer_be_accepted);

#[tokio::test]
async fn the_last_admin_can_be_neither_demoted_nor_removed() {
    let app = TestApp::spawn().await;
    let team = app.signup().await;
    let path = format!("/v1/members/{}", team.user_id);
    let (status, body) = app
        .call(
            Method::PATCH,
            &path,
            Some(&team.api_key),
            Some(json!({"role": "member"})),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(error_code(&body), "last_admin");
    let (status, body) = app.delete(&path, &team.api_key).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(error_code(&body), "last_admin");

    let (second_admin, _) = app.add_member(&team, "admin").await;
    let (status, _) = app
        .call(
            Method::PATCH,
            &path,
            Some(&team.api_key),
            Some(json!({"role": "member"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = app
        .delete(&format!("/v1/members/{second_admin}"), &team.token)
        .await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "the demoted admin's session lost admin: {body}"
    );
}

#[tokio::test]
async fn projects_are_created_once_per_name_and_found_by_id_or_name() {
    let app = TestApp::spawn().await;
    let team = app.signup().await;
    let (status, project) = app
        .post(
            "/v1/projects",
            &team.api_key,
            json!({"name": "whales-2026"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{project}");
    let id = text(&project, "id");
    assert_eq!(text(&project, "created_by"), team.user_id);
    let (status, body) = app
        .post(
            "/v1/projects",
            &team.api_key,
            json!({"name": "whales-2026"}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(error_code(&body), "project_exists");
    for bad in [
        "",
        "-leading-dash",
        "has space",
        "slash/y",
        &"x".repeat(101),
    ] {
        let (status, body) = app
            .post("/v1/projects", &team.api_key, json!({"name": bad}))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad:?}");
        assert_eq!(error_code(&body), "invalid_project_name");
    }
    for path in [
        format!("/v1/projects/{id}"),
        "/v1/projects/whales-2026".into(),
    ] {
        let (status, found) = app.get(&path, &team.api_key).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(text(&found, "id"), id);
    }
    let (_, listed) = app.get("/v1/projects", &team.api_key).await;
    assert_eq!(listed["projects"].as_array().unwrap().len(), 1);
}

#[ignore = "needs moto's server at SEXTANT_TEST_AWS_ENDPOINT; scripts/test.sh starts it"]
#[tokio::test]
async fn the_whole_account_flow_works_on_dynamodb_and_s3() {
    let app = TestApp::spawn_on_aws().await;
    let team = app.signup().await;
    let (status, _) = app
        .call(
            Method::POST,
            "/v1/login",
            None,
            Some(json!({"email": team.email, "password": team.password})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (member_id, session) = app.add_member(&team, "member").await;
    assert_eq!(app.get("/v1/me", &session).await.0, StatusCode::OK);
    let (status, _) = app
        .post("/v1/projects", &session, json!({"name": "on-aws"}))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, body) = app
        .post("/v1/projects", &team.api_key, json!({"name": "on-aws"}))
        .await;
    assert_eq!(
        (status, error_code(&body).as_str()),
        (StatusCode::CONFLICT, "project_exists")
    );
    let (status, _) = app
        .delete(&format!("/v1/members/{member_id}"), &team.api_key)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(
        app.get("/v1/me", &session).await.0,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn the_team_is_read_by_its_members_renamed_by_an_admin_and_deleted_only_by_its_name() {
    let app = TestApp::spawn().await;
    let team = app.signup().await;
    let viewer = app.key_with_role(&team, "viewer").await;
    let (status, read) = app.get("/v1/team", &viewer).await;
    assert_eq!(status, StatusCode::OK, "{read}");
    assert_eq!(text(&read, "id"), team.tenant_id);
    assert_eq!(text(&read, "name"), "Whale Watchers");

    assert_eq!(
        rename_team(&app, &viewer, "Mine now").await.0,
        StatusCode::FORBIDDEN
    );
    let (status, body) = rename_team(&app, &team.api_key, " ").await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::BAD_REQUEST, "invalid_name".to_owned())
    );
    let (status, renamed) = rename_team(&app, &team.api_key, "Orca Observers").await;
    assert_eq!(status, StatusCode::OK, "{renamed}");
    assert_eq!(text(&renamed, "name"), "Orca Observers");

    let run = app.new_run(&team.api_key).await;
    let (status, body) = delete_team(&app, &team.api_key, "Whale Watchers").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(error_code(&body), "confirmation_mismatch");
    let (status, _) = app.get(&format!("/v1/runs/{run}"), &team.api_key).await;
    assert_eq!(status, StatusCode::OK, "nothing was deleted");
    let (status, body) = delete_team(&app, &team.api_key, "Orca Observers").await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    for credential in [&team.api_key, &viewer, &team.token] {
        assert_eq!(
            app.get("/v1/team", credential).await.0,
            StatusCode::UNAUTHORIZED
        );
    }
}

async fn rename_team(app: &TestApp, credential: &str, name: &str) -> (StatusCode, Value) {
    app.call(
        Method::PATCH,
        "/v1/team",
        Some(credential),
        Some(json!({"name": name})),
    )
    .await
}

async fn delete_team(app: &TestApp, credential: &str, confirm: &str) -> (StatusCode, Value) {
    let confirm: String = url::form_urlencoded::byte_serialize(confirm.as_bytes()).collect();
    app.call(
        Method::DELETE,
        &format!("/v1/team?confirm={confirm}"),
        Some(credential),
        None,
    )
    .await
}
