use axum::extract::State;
use serde::Serialize;
use sextant_domain::authentication;
use sextant_edge::auth::AnyCaller;
use sextant_edge::error::ApiResult;
use sextant_edge::state::AppState;
use time::OffsetDateTime;

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Token {
    token: String,
    #[serde(with = "time::serde::rfc3339")]
    expires_at: OffsetDateTime,
}

/// Exchanges the API key sent as the bearer credential for a short-lived token that
/// the ingest path verifies without a database read.
#[utoipa::path(
    post,
    path = "/v1/auth/token",
    operation_id = "exchange_api_key",
    tag = "ingest",
    security(("bearer" = ["read"])),
    responses((status = OK, body = Token))
)]
pub async fn exchange(
    State(state): State<AppState>,
    AnyCaller(caller): AnyCaller,
) -> ApiResult<axum::Json<Token>> {
    let (token, expires_at) =
        authentication::exchange_api_key(&state.keyring, state.settings.access_token_ttl, &caller)?;
    Ok(axum::Json(Token { token, expires_at }))
}
