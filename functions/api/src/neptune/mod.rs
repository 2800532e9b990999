//! Neptune's client protocol (`neptune-scale` 0.30, through its `neptune-api`), so the
//! stock client logs to Sextant given a `NEPTUNE_API_TOKEN` Sextant made. First it
//! finds Sextant from the token and trades it for tokens, as it did with Neptune's
//! hosted service:
//!
//! 1. `GET /api/backend/v1/clients/config` (no credential) names the API's URL, the
//!    OAuth client id and the OpenID discovery document;
//! 2. the discovery document names the token endpoint (and, as OpenID requires, an
//!    authorization endpoint: the log-in page, where people sign in);
//! 3. `GET /api/backend/v1/authorization/oauth-token` with `X-Neptune-Api-Token` trades
//!    the token for an access token (the JWT `POST /v1/auth/token` makes, whose `exp`
//!    the client reads) and a refresh token;
//! 4. `POST` to the token endpoint with `grant_type=refresh_token` trades a refresh
//!    token for a new pair, while its API key holds.
//!
//! Then it sends its runs' operations to `POST /api/client/v1/ingest` (`ingest`) with
//! the access token, and asks how they went at `/api/client/v1/ingest/check`
//! (`outcome`).
//!
//! A `NEPTUNE_API_TOKEN` is base64 of a JSON object; the client reads `api_url` (or
//! `api_address`) from it and sends the whole string back. Sextant's are made by
//! `sextant neptune-token` and the keys page (`token`): the API key is its `api_key`.

mod ingest;
mod outcome;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::HeaderMap;
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::Serialize;
use serde_json::{Value, json};
use sextant_domain::authentication::{self, TokenPair};
use sextant_domain::credentials::Plane;
use sextant_domain::error::ErrorCode;
use sextant_edge::auth;
use sextant_edge::error::{ApiError, ApiResult};
use sextant_edge::http::PublicUrl;
use sextant_edge::state::AppState;
use time::OffsetDateTime;

/// The OAuth client id the client sends back when it refreshes.
const CLIENT_ID: &str = "sextant-neptune";
const CONFIG: &str = "/api/backend/v1/clients/config";
const DISCOVERY: &str = "/api/backend/v1/authorization/openid-configuration";
const EXCHANGE: &str = "/api/backend/v1/authorization/oauth-token";
const TOKEN: &str = "/api/backend/v1/authorization/token";
/// Where the client sends its operations; `sextant serve` lets it take
/// `MAX_INGEST_BYTES` (`Settings::route_body_limits`).
pub const INGEST: &str = "/api/client/v1/ingest";
/// The largest request Neptune's client sends (`MAX_REQUEST_SIZE_BYTES`, 16 MiB, in
/// `neptune_scale.sync.parameters`), with room for the operation's framing. A Lambda
/// function takes at most 6 MB, so there a larger request is refused with 413.
pub const MAX_INGEST_BYTES: usize = 16 * 1024 * 1024 + 64 * 1024;
const CHECK: &str = "/api/client/v1/ingest/check";

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(CONFIG, get(config))
        .route(DISCOVERY, get(discovery))
        .route(EXCHANGE, get(exchange))
        .route(TOKEN, post(refresh))
        .route(
            INGEST,
            post(ingest::ingest).layer(DefaultBodyLimit::max(MAX_INGEST_BYTES)),
        )
        .route(CHECK, post(outcome::check))
}

/// `api_url` with a trailing slash dropped: the client joins paths onto it.
fn base(public: &PublicUrl) -> String {
    public.0.as_str().trim_end_matches('/').to_owned()
}

/// A `NEPTUNE_API_TOKEN` for `api_key` on the service at `api_url`.
pub fn api_token(api_url: &str, api_key: &str) -> String {
    let api_url = api_url.trim_end_matches('/');
    STANDARD
        .encode(json!({"api_address": api_url, "api_url": api_url, "api_key": api_key}).to_string())
}

/// The API key inside a `NEPTUNE_API_TOKEN`; `None` for anything else.
fn api_key_of(token: &str) -> Option<String> {
    let json = STANDARD.decode(token.trim()).ok()?;
    let value: Value = serde_json::from_slice(&json).ok()?;
    value["api_key"].as_str().map(str::to_owned)
}

async fn config(public: PublicUrl) -> Json<Value> {
    let base = base(&public);
    Json(json!({
        "apiUrl": base,
        "applicationUrl": base,
        // No version of the client is refused or warned about.
        "pyLibVersions": {},
        "security": {
            "clientId": CLIENT_ID,
            "openIdDiscovery": format!("{base}{DISCOVERY}"),
        },
    }))
}

async fn discovery(public: PublicUrl) -> Json<Value> {
    let base = base(&public);
    Json(json!({
        "issuer": base,
        "authorization_endpoint": format!("{base}/login"),
        "token_endpoint": format!("{base}{TOKEN}"),
        "grant_types_supported": ["refresh_token"],
    }))
}

/// What `oauth-token` answers.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Exchanged {
    access_token: String,
    refresh_token: String,
    username: String,
}

/// `GET /api/backend/v1/authorization/oauth-token`: the API key inside the
/// `X-Neptune-Api-Token` header, traded for a token pair. Anything but a live API key
/// is a 401, which the client reports as a rejected token.
async fn exchange(State(state): State<AppState>, headers: HeaderMap) -> ApiResult<Json<Exchanged>> {
    let key = headers
        .get("x-neptune-api-token")
        .and_then(|value| value.to_str().ok())
        .and_then(api_key_of)
        .ok_or_else(|| {
            ApiError::new(
                ErrorCode::Unauthorized,
                "X-Neptune-Api-Token is not a token `sextant neptune-token` made",
            )
        })?;
    let caller = auth::authenticate(&state, &key, Plane::Control).await?;
    let pair = authentication::exchange_for_pair(
        &state.keyring,
        state.settings.access_token_ttl,
        &caller,
    )?;
    Ok(Json(Exchanged {
        access_token: pair.access,
        refresh_token: pair.refresh,
        username: caller.user.to_string(),
    }))
}

/// What the token endpoint answers, in OAuth's words.
#[derive(Debug, Serialize)]
struct Refreshed {
    access_token: String,
    refresh_token: String,
    token_type: &'static str,
    expires_in: i64,
}

/// `POST /api/backend/v1/authorization/token` with `grant_type=refresh_token`.
async fn refresh(State(state): State<AppState>, body: Bytes) -> ApiResult<Json<Refreshed>> {
    // The client posts a form: grant_type, refresh_token, client_id, expires_in.
    let field = |name: &str| {
        url::form_urlencoded::parse(&body)
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.into_owned())
    };
    if field("grant_type").as_deref() != Some("refresh_token") {
        return Err(ApiError::new(
            ErrorCode::InvalidRequest,
            "grant_type is refresh_token",
        ));
    }
    let refresh_token = field("refresh_token").unwrap_or_default();
    let TokenPair {
        access,
        access_expires,
        refresh,
    } = authentication::refresh(
        &state.store,
        &state.keyring,
        state.settings.access_token_ttl,
        &refresh_token,
    )
    .await?;
    Ok(Json(Refreshed {
        access_token: access,
        refresh_token: refresh,
        token_type: "Bearer",
        expires_in: (access_expires - OffsetDateTime::now_utc()).whole_seconds(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_neptune_api_token_carries_the_api_url_and_gives_back_its_key() {
        let token = api_token("https://sextant.example/", "sxt_key_abc");
        let decoded: Value = serde_json::from_slice(&STANDARD.decode(&token).unwrap()).unwrap();
        assert_eq!(decoded["api_url"], "https://sextant.example");
        assert_eq!(decoded["api_address"], "https://sextant.example");
        assert_eq!(api_key_of(&token).as_deref(), Some("sxt_key_abc"));
        assert_eq!(api_key_of("sxt_key_abc"), None);
        assert_eq!(api_key_of(&STANDARD.encode("[1]")), None);
    }
}
