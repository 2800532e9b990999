use axum::extract::State;
use serde::Serialize;
use sextant_shared::accounts;
use sextant_shared::auth::Caller;
use sextant_shared::error::ApiResult;
use sextant_shared::state::AppState;
use time::OffsetDateTime;

#[derive(Debug, Serialize)]
pub struct Token {
    token: String,
    #[serde(with = "time::serde::rfc3339")]
    expires_at: OffsetDateTime,
}

/// `POST /v1/auth/token` with an API key as the bearer credential.
pub async fn exchange(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<axum::Json<Token>> {
    let (token, expires_at) = accounts::exchange_api_key(&state, &caller)?;
    Ok(axum::Json(Token { token, expires_at }))
}
