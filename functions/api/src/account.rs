//! A member's own account: verifying their address, a forgotten or changed password,
//! and the sessions they are signed in with.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use sextant_domain::accounts::{Email, recovery};
use sextant_domain::credentials::password::Password;
use sextant_domain::credentials::{Caller, Credential};
use sextant_domain::error::{Error, ErrorCode};
use sextant_domain::postman::Postman;
use sextant_domain::sessions::{self, SessionView};
use sextant_edge::error::ApiResult;
use sextant_edge::http::{ClientAddr, Json, PublicUrl};
use sextant_edge::state::AppState;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(verify_email))
        .routes(routes!(resend_verification))
        .routes(routes!(forgot_password))
        .routes(routes!(reset_password))
        .routes(routes!(change_password))
        .routes(routes!(list_sessions, end_other_sessions))
        .routes(routes!(end_session))
}

fn postman(state: &AppState) -> Result<&Postman, Error> {
    state.postman.as_deref().ok_or_else(|| {
        Error::new(
            ErrorCode::Unavailable,
            "this deployment has no mail service configured",
        )
    })
}

/// The session a request was made with, for routes only a signed-in member may use
/// (declared `x-sextant-credential: session`): a member's own sessions and password
/// are not an API key's business.
fn session_of(caller: &Caller) -> Result<Option<u64>, Error> {
    match caller.credential {
        Credential::Session { sid } => Ok(sid),
        _ => Err(Error::new(
            ErrorCode::Forbidden,
            "only a signed-in member (a session, not an API key) may do this",
        )),
    }
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct LinkToken {
    /// The `token` of the mailed link.
    token: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Verified {
    email: Email,
    email_verified: bool,
}

/// Verifies the address a mailed link was sent to. The link works once, and only while
/// the address is still the member's.
#[utoipa::path(
    post,
    path = "/v1/email/verify",
    operation_id = "verify_email",
    tag = "session",
    security(()),
    request_body = LinkToken,
    responses(
        (status = OK, body = Verified),
        (status = BAD_REQUEST, description = "The link is unknown, expired or used (`invalid_link`)."),
        (
            status = CONFLICT,
            description = "The address was not verified in time and another account took it \
                           (`email_released`)."
        ),
    )
)]
pub async fn verify_email(
    State(state): State<AppState>,
    Json(request): Json<LinkToken>,
) -> ApiResult<axum::Json<Verified>> {
    let email = recovery::verify_email(&state.store, &request.token).await?;
    Ok(axum::Json(Verified {
        email,
        email_verified: true,
    }))
}

/// Mails the signed-in member a new link to verify their address (nothing when it is
/// verified already).
#[utoipa::path(
    post,
    path = "/v1/email/verify/resend",
    operation_id = "resend_verification",
    tag = "session",
    security(("bearer" = ["read"])),
    responses(
        (status = ACCEPTED, description = "A link is on its way, unless the address is verified."),
        (
            status = CONFLICT,
            description = "The address was not verified in time and another account took it \
                           (`email_released`)."
        ),
    ),
    extensions(("x-sextant-credential" = json!("session")))
)]
pub async fn resend_verification(
    State(state): State<AppState>,
    PublicUrl(base): PublicUrl,
    caller: Caller,
) -> ApiResult<StatusCode> {
    session_of(&caller)?;
    recovery::start_verification(
        &state.store,
        postman(&state)?,
        &base,
        &caller.tenant,
        caller.user,
    )
    .await?;
    Ok(StatusCode::ACCEPTED)
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct ForgotPassword {
    email: String,
}

/// Mails a link that sets a new password to the account of `email`, if there is one.
/// The answer is the same whether or not there is.
#[utoipa::path(
    post,
    path = "/v1/password/forgot",
    operation_id = "forgot_password",
    tag = "session",
    security(()),
    request_body = ForgotPassword,
    responses(
        (status = ACCEPTED, description = "If the address has an account, a link is on its way."),
        (
            status = TOO_MANY_REQUESTS,
            description = "Too many requests for this address or from this client \
                           (`rate_limited`); `Retry-After` says when to try again."
        ),
    )
)]
pub async fn forgot_password(
    State(state): State<AppState>,
    ClientAddr(client): ClientAddr,
    PublicUrl(base): PublicUrl,
    Json(request): Json<ForgotPassword>,
) -> ApiResult<StatusCode> {
    recovery::request_reset(
        &state.store,
        postman(&state)?,
        &base,
        &request.email,
        client,
    )
    .await?;
    Ok(StatusCode::ACCEPTED)
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct ResetPassword {
    /// The `token` of the mailed link.
    token: String,
    #[schema(value_type = Password)]
    password: String,
}

/// Sets a new password with a mailed reset link (which also verifies the address).
/// Every session and access token of the member ends; their API keys stay.
#[utoipa::path(
    post,
    path = "/v1/password/reset",
    operation_id = "reset_password",
    tag = "session",
    security(()),
    request_body = ResetPassword,
    responses(
        (status = NO_CONTENT, description = "The password is set; log in with it."),
        (status = BAD_REQUEST, description = "The link is unknown, expired or used (`invalid_link`), or the password too weak."),
    )
)]
pub async fn reset_password(
    State(state): State<AppState>,
    ClientAddr(client): ClientAddr,
    Json(request): Json<ResetPassword>,
) -> ApiResult<StatusCode> {
    let password = Password::parse(request.password)?;
    recovery::reset_password(&state.store, &request.token, password, client).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct ChangePassword {
    #[schema(format = Password)]
    current_password: String,
    #[schema(value_type = Password)]
    new_password: String,
}

/// Changes the signed-in member's password; their other sessions end.
#[utoipa::path(
    post,
    path = "/v1/password/change",
    operation_id = "change_password",
    tag = "session",
    security(("bearer" = ["read"])),
    request_body = ChangePassword,
    responses(
        (status = NO_CONTENT, description = "Changed; this session goes on, the others ended."),
        (status = FORBIDDEN, description = "The current password is wrong (`wrong_password`), or the credential is not a session."),
    ),
    extensions(("x-sextant-credential" = json!("session")))
)]
pub async fn change_password(
    State(state): State<AppState>,
    ClientAddr(client): ClientAddr,
    caller: Caller,
    Json(request): Json<ChangePassword>,
) -> ApiResult<StatusCode> {
    let current = session_of(&caller)?;
    let new_password = Password::parse(request.new_password)?;
    recovery::change_password(
        &state.store,
        &caller.tenant,
        caller.user,
        current,
        request.current_password,
        new_password,
        client,
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Sessions {
    /// Newest first.
    sessions: Vec<SessionView>,
}

/// The signed-in member's live sessions, the one asking marked `current`.
#[utoipa::path(
    get,
    path = "/v1/sessions",
    operation_id = "list_sessions",
    tag = "session",
    security(("bearer" = ["read"])),
    responses((status = OK, body = Sessions)),
    extensions(("x-sextant-credential" = json!("session")))
)]
pub async fn list_sessions(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<axum::Json<Sessions>> {
    let current = session_of(&caller)?;
    let sessions = sessions::list(&state.store, &caller.tenant, caller.user, current).await?;
    Ok(axum::Json(Sessions { sessions }))
}

/// Ends every session of the signed-in member but the one asking.
#[utoipa::path(
    delete,
    path = "/v1/sessions",
    operation_id = "end_other_sessions",
    tag = "session",
    security(("bearer" = ["read"])),
    responses((status = NO_CONTENT, description = "Every other session ended.")),
    extensions(("x-sextant-credential" = json!("session")))
)]
pub async fn end_other_sessions(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<StatusCode> {
    let current = session_of(&caller)?;
    sessions::end_all(&state.store, &caller.tenant, caller.user, current).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Ends one of the signed-in member's sessions (the one asking too: a log-out).
#[utoipa::path(
    delete,
    path = "/v1/sessions/{id}",
    operation_id = "end_session",
    tag = "session",
    security(("bearer" = ["read"])),
    params(("id" = String, Path, description = "The session's `id`.")),
    responses(
        (status = NO_CONTENT, description = "Ended."),
        (status = NOT_FOUND, description = "The member has no live session of this id."),
    ),
    extensions(("x-sextant-credential" = json!("session")))
)]
pub async fn end_session(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    session_of(&caller)?;
    if sessions::end(&state.store, &caller.tenant, caller.user, &id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(Error::not_found("session").into())
    }
}
