use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{delete, get, patch, post};
use serde::{Deserialize, Serialize};
use sextant_shared::accounts::{self, ApiKey, DisplayName, Email, Invite, Member, Session};
use sextant_shared::auth::password::Password;
use sextant_shared::auth::{Admin, Caller, Role};
use sextant_shared::error::{ApiError, ApiResult};
use sextant_shared::http::{Json, PublicUrl};
use sextant_shared::ids::{ApiKeyId, InviteId, UserId};
use sextant_shared::state::AppState;
use utoipa_axum::router::OpenApiRouter;

pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .route("/v1/api-keys", post(create_api_key).get(list_api_keys))
        .route("/v1/api-keys/{id}", delete(revoke_api_key))
        .route("/v1/invites", post(create_invite).get(list_invites))
        .route("/v1/invites/{id}", delete(revoke_invite))
        .route("/v1/invites/{token}/accept", post(accept_invite))
        .route("/v1/members", get(list_members))
        .route("/v1/members/{id}", patch(change_role).delete(remove_member))
}

/// Ids in paths that do not parse name nothing, so they answer like missing ones.
fn parse_id<T: std::str::FromStr>(text: &str, what: &str) -> ApiResult<T> {
    text.parse().map_err(|_| ApiError::not_found(what))
}

#[derive(Debug, Deserialize)]
pub struct CreateApiKey {
    name: String,
    role: Option<Role>,
    /// The member the key acts for; the caller by default.
    user_id: Option<UserId>,
}

#[derive(Debug, Serialize)]
pub struct CreatedApiKey {
    #[serde(flatten)]
    key: ApiKey,
    /// The secret, shown only in this response.
    secret: String,
}

pub async fn create_api_key(
    State(state): State<AppState>,
    Admin(caller): Admin,
    Json(request): Json<CreateApiKey>,
) -> ApiResult<(StatusCode, axum::Json<CreatedApiKey>)> {
    let name = DisplayName::parse("name", &request.name)?;
    let (key, secret) =
        accounts::create_api_key(&state, &caller, name, request.role, request.user_id).await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(CreatedApiKey { key, secret }),
    ))
}

#[derive(Debug, Serialize)]
pub struct ApiKeys {
    api_keys: Vec<ApiKey>,
}

pub async fn list_api_keys(
    State(state): State<AppState>,
    Admin(caller): Admin,
) -> ApiResult<axum::Json<ApiKeys>> {
    let api_keys = accounts::list_api_keys(&state, &caller.tenant).await?;
    Ok(axum::Json(ApiKeys { api_keys }))
}

pub async fn revoke_api_key(
    State(state): State<AppState>,
    Admin(caller): Admin,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let id: ApiKeyId = parse_id(&id, "API key")?;
    accounts::revoke_api_key(&state, &caller.tenant, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize)]
pub struct CreateInvite {
    email: String,
    #[serde(default = "default_invite_role")]
    role: Role,
}

fn default_invite_role() -> Role {
    Role::Member
}

#[derive(Debug, Serialize)]
pub struct CreatedInvite {
    #[serde(flatten)]
    invite: Invite,
    /// The single-use token, shown only in this response; no e-mail is sent.
    token: String,
    /// Where the invitee accepts (POST `{"password": ...}`).
    url: String,
}

pub async fn create_invite(
    State(state): State<AppState>,
    Admin(caller): Admin,
    public_url: PublicUrl,
    Json(request): Json<CreateInvite>,
) -> ApiResult<(StatusCode, axum::Json<CreatedInvite>)> {
    let email = Email::parse(&request.email)?;
    let (invite, token) = accounts::create_invite(&state, &caller, email, request.role).await?;
    let url = public_url.join(["v1", "invites", &token, "accept"]);
    Ok((
        StatusCode::CREATED,
        axum::Json(CreatedInvite { invite, token, url }),
    ))
}

#[derive(Debug, Serialize)]
pub struct Invites {
    invites: Vec<Invite>,
}

pub async fn list_invites(
    State(state): State<AppState>,
    Admin(caller): Admin,
) -> ApiResult<axum::Json<Invites>> {
    let invites = accounts::list_invites(&state, &caller.tenant).await?;
    Ok(axum::Json(Invites { invites }))
}

pub async fn revoke_invite(
    State(state): State<AppState>,
    Admin(caller): Admin,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let id: InviteId = parse_id(&id, "invite")?;
    accounts::revoke_invite(&state, &caller.tenant, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize)]
pub struct AcceptInvite {
    password: String,
}

/// Public: the token is the credential.
pub async fn accept_invite(
    State(state): State<AppState>,
    Path(token): Path<String>,
    Json(request): Json<AcceptInvite>,
) -> ApiResult<(StatusCode, axum::Json<Session>)> {
    let password = Password::parse(request.password)?;
    let session = accounts::accept_invite(&state, &token, password).await?;
    Ok((StatusCode::CREATED, axum::Json(session)))
}

#[derive(Debug, Serialize)]
pub struct Members {
    members: Vec<Member>,
}

pub async fn list_members(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<axum::Json<Members>> {
    let members = accounts::list_members(&state, &caller.tenant).await?;
    Ok(axum::Json(Members { members }))
}

#[derive(Debug, Deserialize)]
pub struct ChangeRole {
    role: Role,
}

pub async fn change_role(
    State(state): State<AppState>,
    Admin(caller): Admin,
    Path(id): Path<String>,
    Json(request): Json<ChangeRole>,
) -> ApiResult<axum::Json<Member>> {
    let id: UserId = parse_id(&id, "member")?;
    let member = accounts::change_role(&state, &caller.tenant, id, request.role).await?;
    Ok(axum::Json(member))
}

pub async fn remove_member(
    State(state): State<AppState>,
    Admin(caller): Admin,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let id: UserId = parse_id(&id, "member")?;
    accounts::remove_member(&state, &caller.tenant, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    #[test]
    fn unparseable_ids_read_as_not_found() {
        let err = super::parse_id::<sextant_shared::ids::UserId>("nope", "member").unwrap_err();
        assert_eq!(err.status(), axum::http::StatusCode::NOT_FOUND);
    }
}
