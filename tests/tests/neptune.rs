//! Neptune's client protocol, its sign-in half: what `neptune-scale` 0.30 (through
//! `neptune-api`) asks, in its order, with a `NEPTUNE_API_TOKEN` made as
//! `sextant neptune-token` makes it. Every token obeys the key it derives from.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sextant_api::neptune::api_token;
use sextant_tests::{TestApp, text};

/// A path of this server, from a URL the server answered.
fn path_of(app: &TestApp, url: &str) -> String {
    url.strip_prefix(&app.base)
        .unwrap_or_else(|| panic!("{url} is not on {}", app.base))
        .to_owned()
}

async fn exchange(app: &TestApp, token: &str) -> (StatusCode, Value) {
    let response = app
        .client
        .get(format!(
            "{}/api/backend/v1/authorization/oauth-token",
            app.base
        ))
        .header("X-Neptune-Api-Token", token)
        .send()
        .await
        .expect("the server answers");
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Posts the refresh form as the client does, to the token endpoint.
async fn refresh(app: &TestApp, endpoint: &str, refresh_token: &str) -> (StatusCode, Value) {
    post_form(
        app,
        endpoint,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
            ("client_id", "sextant-neptune"),
            ("expires_in", "12.5"),
        ],
    )
    .await
}

async fn post_form(app: &TestApp, url: &str, fields: &[(&str, &str)]) -> (StatusCode, Value) {
    let body = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(fields)
        .finish();
    let response = app
        .client
        .post(url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .expect("the server answers");
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// The claims of a JWT, read as the client reads them: without checking it.
fn claims(jwt: &str) -> Value {
    let payload = jwt.split('.').nth(1).expect("a JWT");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).expect("base64url")).unwrap()
}

/// The token endpoint, found as the client finds it: config, then discovery.
async fn token_endpoint(app: &TestApp) -> String {
    let (status, config) = app
        .call(Method::GET, "/api/backend/v1/clients/config", None, None)
        .await;
    assert_eq!(status, StatusCode::OK, "{config}");
    let discovery = text(&config["security"], "openIdDiscovery");
    let (status, urls) = app
        .call(Method::GET, &path_of(app, &discovery), None, None)
        .await;
    assert_eq!(status, StatusCode::OK, "{urls}");
    text(&urls, "token_endpoint")
}

#[tokio::test]
async fn the_client_finds_the_api_and_the_token_endpoint_without_a_credential() {
    let app = TestApp::spawn().await;
    let (status, config) = app
        .call(Method::GET, "/api/backend/v1/clients/config", None, None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(config["apiUrl"], app.base.as_str());
    assert!(config["pyLibVersions"].is_object());
    assert_eq!(config["security"]["clientId"], "sextant-neptune");
    let discovery = text(&config["security"], "openIdDiscovery");
    let (status, urls) = app
        .call(Method::GET, &path_of(&app, &discovery), None, None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        urls["authorization_endpoint"],
        format!("{}/login", app.base)
    );
    assert_eq!(
        urls["token_endpoint"],
        format!("{}/api/backend/v1/authorization/token", app.base)
    );
}

#[tokio::test]
async fn a_neptune_api_token_trades_for_an_access_token_that_acts_as_its_key() {
    let app = TestApp::spawn().await;
    let team = app.signup().await;
    let token = api_token(&app.base, &team.api_key);
    let decoded: Value = serde_json::from_slice(&STANDARD.decode(&token).unwrap()).unwrap();
    assert_eq!(
        decoded["api_url"],
        app.base.as_str(),
        "the client reads api_url"
    );

    let (status, pair) = exchange(&app, &token).await;
    assert_eq!(status, StatusCode::OK, "{pair}");
    assert_eq!(pair["username"], team.user_id.as_str());
    let access = text(&pair, "accessToken");
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let exp = claims(&access)["exp"]
        .as_i64()
        .expect("exp, which the client reads");
    assert!(
        exp > now && exp <= now + 15 * 60 + 5,
        "exp {exp}, now {now}"
    );
    assert_eq!(claims(&access)["iss"], "sextant");
    // The access token acts for its key's member, as the key does.
    let (status, me) = app.get("/v1/me", &access).await;
    assert_eq!(status, StatusCode::OK, "{me}");
    assert_eq!(me["user_id"], team.user_id.as_str());
    // The refresh token opens nothing itself.
    let refresh_token = text(&pair, "refreshToken");
    assert_eq!(
        app.get("/v1/me", &refresh_token).await.0,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn anything_but_a_live_key_inside_the_token_is_refused() {
    let app = TestApp::spawn().await;
    let team = app.signup().await;
    for token in [
        "not base64 at all".to_owned(),
        team.api_key.clone(),
        STANDARD.encode(json!({"api_url": app.base}).to_string()),
        api_token(&app.base, "sxt_key_forged"),
    ] {
        let (status, body) = exchange(&app, &token).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{token}: {body}");
        assert_eq!(body["error"]["code"], "unauthorized", "{body}");
    }
    // A member's session token is a credential, but only a key is traded.
    let (status, body) = exchange(&app, &api_token(&app.base, &team.token)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(body["error"]["code"], "api_key_required", "{body}");
    let response = app
        .client
        .get(format!(
            "{}/api/backend/v1/authorization/oauth-token",
            app.base
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "no header");
}

#[tokio::test]
async fn a_refresh_token_renews_the_pair_until_its_key_is_revoked() {
    let app = TestApp::spawn().await;
    let team = app.signup().await;
    let (id, key) = app.new_api_key(&team, "neptune").await;
    let endpoint = token_endpoint(&app).await;
    let (_, pair) = exchange(&app, &api_token(&app.base, &key)).await;

    let (status, renewed) = refresh(&app, &endpoint, &text(&pair, "refreshToken")).await;
    assert_eq!(status, StatusCode::OK, "{renewed}");
    assert_eq!(renewed["token_type"], "Bearer");
    assert!(renewed["expires_in"].as_i64().unwrap() > 0);
    let access = text(&renewed, "access_token");
    assert_eq!(app.get("/v1/me", &access).await.0, StatusCode::OK);
    // An access token is not a refresh token.
    let (status, _) = refresh(&app, &endpoint, &access).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, body) = post_form(&app, &endpoint, &[("grant_type", "password")]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["code"], "invalid_request");

    // Revoked: neither the refresh nor a new exchange works, and the access token
    // stops at once on the control plane.
    assert_eq!(app.revoke_api_key(&team, &id).await, StatusCode::NO_CONTENT);
    let (status, _) = refresh(&app, &endpoint, &text(&renewed, "refresh_token")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = exchange(&app, &api_token(&app.base, &key)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(app.get("/v1/me", &access).await.0, StatusCode::UNAUTHORIZED);
}
