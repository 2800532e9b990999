use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use sextant_domain::accounts::{self, DisplayName, Email, EmailStatus, Session, SignedUp};
use sextant_domain::credentials::Caller;
use sextant_domain::credentials::password::Password;
use sextant_domain::credentials::{Credential, Role};
use sextant_domain::ids::{ApiKeyId, TenantId, UserId};
use sextant_edge::error::ApiResult;
use sextant_edge::http::{Json, PublicUrl, SessionClient};
use sextant_edge::state::AppState;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(signup))
        .routes(routes!(login))
        .routes(routes!(me))
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct SignupRequest {
    /// The new team's name.
    #[schema(value_type = DisplayName)]
    team: String,
    /// The first member's e-mail, who becomes the team's admin.
    #[schema(value_type = Email)]
    email: String,
    #[schema(value_type = Password)]
    password: String,
}

/// Creates a team with its first member, an admin, and answers a session and the
/// team's first API key. Everything works at once; a link to verify the address is
/// mailed to it, and until it is opened the address is held for this account for
/// 24 hours (then another sign-up may take it).
#[utoipa::path(
    post,
    path = "/v1/signup",
    operation_id = "sign_up",
    tag = "session",
    security(()),
    request_body = SignupRequest,
    responses(
        (status = CREATED, body = SignedUp),
        (
            status = CONFLICT,
            description = "An account has this e-mail, verified or still held for it (`email_taken`)."
        ),
    )
)]
pub async fn signup(
    State(state): State<AppState>,
    SessionClient(client): SessionClient,
    PublicUrl(base): PublicUrl,
    Json(request): Json<SignupRequest>,
) -> ApiResult<(StatusCode, axum::Json<SignedUp>)> {
    let team = DisplayName::parse("team", &request.team)?;
    let email = Email::parse(&request.email)?;
    let password = Password::parse(request.password)?;
    let signed_up = accounts::signup(
        &state.store,
        state.sessions(),
        team,
        email,
        password,
        client,
    )
    .await?;
    state
        .mail_verification_link(&base, &signed_up.session)
        .await;
    Ok((StatusCode::CREATED, axum::Json(signed_up)))
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct LoginRequest {
    email: String,
    #[schema(format = Password)]
    password: String,
}

/// Logs a member in with e-mail and password, for a session token.
#[utoipa::path(
    post,
    path = "/v1/login",
    operation_id = "log_in",
    tag = "session",
    security(()),
    request_body = LoginRequest,
    responses(
        (status = OK, body = Session),
        (status = UNAUTHORIZED, description = "The e-mail or the password is wrong."),
        (
            status = TOO_MANY_REQUESTS,
            description = "Too many failed log-ins for this account or from this address \
                           (`rate_limited`); `Retry-After` says when to try again."
        ),
    )
)]
pub async fn login(
    State(state): State<AppState>,
    SessionClient(client): SessionClient,
    Json(request): Json<LoginRequest>,
) -> ApiResult<axum::Json<Session>> {
    Ok(axum::Json(
        accounts::login(
            &state.store,
            state.sessions(),
            &request.email,
            request.password,
            client,
        )
        .await?,
    ))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Me {
    tenant_id: TenantId,
    user_id: UserId,
    /// The member's address (for an API key, its owner's).
    email: Email,
    email_verified: bool,
    #[serde(flatten)]
    email_status: EmailStatus,
    /// The credential's effective role: a key's own, capped by its owner's.
    role: Role,
    /// The API key the request used (itself or exchanged for a token); `null` for a
    /// session.
    #[schema(required = true)]
    api_key_id: Option<ApiKeyId>,
}

/// Who the credential belongs to: lets clients check a key before they rely on it.
#[utoipa::path(
    get,
    path = "/v1/me",
    operation_id = "get_me",
    tag = "session",
    security(("bearer" = ["read"])),
    responses((status = OK, body = Me))
)]
pub async fn me(State(state): State<AppState>, caller: Caller) -> ApiResult<axum::Json<Me>> {
    let api_key_id = match caller.credential {
        Credential::Session { .. } => None,
        Credential::ApiKey(key) | Credential::AccessToken(key) | Credential::Job { key, .. } => {
            Some(key)
        }
    };
    let (email, email_status) =
        accounts::email_status(&state.store, &caller.tenant, caller.user).await?;
    Ok(axum::Json(Me {
        tenant_id: caller.tenant.id(),
        user_id: caller.user,
        email,
        email_verified: email_status == EmailStatus::Verified,
        email_status,
        role: caller.role,
        api_key_id,
    }))
}
