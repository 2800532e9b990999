use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use sextant_shared::accounts::{self, DisplayName, Email, Session, SignedUp};
use sextant_shared::auth::password::Password;
use sextant_shared::auth::{Caller, Credential, Role};
use sextant_shared::error::ApiResult;
use sextant_shared::http::Json;
use sextant_shared::ids::{ApiKeyId, TenantId, UserId};
use sextant_shared::state::AppState;
use utoipa_axum::router::OpenApiRouter;

pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .route("/v1/signup", post(signup))
        .route("/v1/login", post(login))
        .route("/v1/me", get(me))
}

#[derive(Debug, Deserialize)]
pub struct SignupRequest {
    team: String,
    email: String,
    password: String,
}

pub async fn signup(
    State(state): State<AppState>,
    Json(request): Json<SignupRequest>,
) -> ApiResult<(StatusCode, axum::Json<SignedUp>)> {
    let team = DisplayName::parse("team", &request.team)?;
    let email = Email::parse(&request.email)?;
    let password = Password::parse(request.password)?;
    let signed_up = accounts::signup(&state, team, email, password).await?;
    Ok((StatusCode::CREATED, axum::Json(signed_up)))
}

#[derive(Debug, Deserialize)]
pub struct LoginRequest {
    email: String,
    password: String,
}

pub async fn login(
    State(state): State<AppState>,
    Json(request): Json<LoginRequest>,
) -> ApiResult<axum::Json<Session>> {
    Ok(axum::Json(
        accounts::login(&state, &request.email, request.password).await?,
    ))
}

#[derive(Debug, Serialize)]
pub struct Me {
    tenant_id: TenantId,
    user_id: UserId,
    role: Role,
    /// The API key the request used, if any.
    api_key_id: Option<ApiKeyId>,
}

/// Who the credential belongs to: lets clients check a key before they rely on it.
pub async fn me(caller: Caller) -> axum::Json<Me> {
    let api_key_id = match caller.credential {
        Credential::Session => None,
        Credential::ApiKey(key) | Credential::AccessToken(key) => Some(key),
    };
    axum::Json(Me {
        tenant_id: caller.tenant.id(),
        user_id: caller.user,
        role: caller.role,
        api_key_id,
    })
}
