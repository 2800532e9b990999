use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use sextant_domain::accounts::{self, ApiKey, DisplayName, Email, Invite, Member, Session};
use sextant_domain::credentials::Caller;
use sextant_domain::credentials::Role;
use sextant_domain::credentials::password::Password;
use sextant_domain::error::Error;
use sextant_domain::ids::{ApiKeyId, InviteId, UserId};
use sextant_edge::auth::Admin;
use sextant_edge::error::ApiResult;
use sextant_edge::http::{ClientAddr, Json, PublicUrl};
use sextant_edge::state::AppState;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_api_key, list_api_keys))
        .routes(routes!(revoke_api_key))
        .routes(routes!(create_invite, list_invites))
        .routes(routes!(revoke_invite))
        .routes(routes!(resend_invite))
        .routes(routes!(accept_invite))
        .routes(routes!(list_members))
        .routes(routes!(change_role, remove_member))
}

/// Ids in paths that do not parse name nothing, so they answer like missing ones.
fn parse_id<T: std::str::FromStr>(text: &str, what: &str) -> Result<T, Error> {
    text.parse().map_err(|_| Error::not_found(what))
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct CreateApiKey {
    #[schema(value_type = DisplayName)]
    name: String,
    /// The owner's role by default; never more than the owner's.
    role: Option<Role>,
    /// The member the key acts for; the caller by default.
    user_id: Option<UserId>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedApiKey {
    #[serde(flatten)]
    key: ApiKey,
    /// The secret, shown only in this response.
    secret: String,
}

/// Creates an API key acting for a member of the team; its secret is shown only in
/// this answer.
#[utoipa::path(
    post,
    path = "/v1/api-keys",
    operation_id = "create_api_key",
    tag = "members",
    security(("bearer" = ["admin"])),
    request_body = CreateApiKey,
    responses((status = CREATED, body = CreatedApiKey))
)]
pub async fn create_api_key(
    State(state): State<AppState>,
    Admin(caller): Admin,
    Json(request): Json<CreateApiKey>,
) -> ApiResult<(StatusCode, axum::Json<CreatedApiKey>)> {
    let name = DisplayName::parse("name", &request.name)?;
    let (key, secret) = accounts::create_api_key(
        &state.store,
        &caller.tenant,
        caller.user,
        name,
        request.role,
        request.user_id,
    )
    .await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(CreatedApiKey { key, secret }),
    ))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ApiKeys {
    api_keys: Vec<ApiKey>,
}

/// The team's API keys, without their secrets.
#[utoipa::path(
    get,
    path = "/v1/api-keys",
    operation_id = "list_api_keys",
    tag = "members",
    security(("bearer" = ["admin"])),
    responses((status = OK, body = ApiKeys))
)]
pub async fn list_api_keys(
    State(state): State<AppState>,
    Admin(caller): Admin,
) -> ApiResult<axum::Json<ApiKeys>> {
    let api_keys = accounts::list_api_keys(&state.store, &caller.tenant).await?;
    Ok(axum::Json(ApiKeys { api_keys }))
}

/// Revokes an API key: it authenticates nothing from now on.
#[utoipa::path(
    delete,
    path = "/v1/api-keys/{id}",
    operation_id = "revoke_api_key",
    tag = "members",
    security(("bearer" = ["admin"])),
    params(("id" = String, Path, description = "The key's id (`key_...`).")),
    responses((status = NO_CONTENT, description = "Revoked."))
)]
pub async fn revoke_api_key(
    State(state): State<AppState>,
    Admin(caller): Admin,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let id: ApiKeyId = parse_id(&id, "API key")?;
    accounts::revoke_api_key(&state.store, &caller.tenant, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct CreateInvite {
    #[schema(value_type = Email)]
    email: String,
    /// The role the invitee joins with; `member` by default.
    #[serde(default = "default_invite_role")]
    #[schema(default = "member")]
    role: Role,
}

fn default_invite_role() -> Role {
    Role::Member
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedInvite {
    #[serde(flatten)]
    invite: Invite,
    /// The single-use token, shown only in this response.
    token: String,
    /// The page where the invitee joins (`/join/{token}`): the link the invite mail
    /// carries, for the admin to pass on too. Programs accept with
    /// `POST /v1/invites/{token}/accept`.
    url: String,
    /// Whether the invite mail was handed to the mail service (`false` when the
    /// deployment has none, or it failed: pass the `url` on yourself).
    mailed: bool,
}

impl CreatedInvite {
    async fn mailed(
        state: &AppState,
        caller: &Caller,
        public: &PublicUrl,
        (invite, token): (Invite, String),
    ) -> Self {
        let link = accounts::invites::join_link(&public.0, &token);
        let mailed = state.mail_invite(&caller.tenant, &invite, &link).await;
        Self {
            invite,
            token,
            url: link.into(),
            mailed,
        }
    }
}

/// Invites someone by e-mail to join the team, and mails them the link; the answer
/// carries the single-use token and the link too, for the admin to pass on.
#[utoipa::path(
    post,
    path = "/v1/invites",
    operation_id = "create_invite",
    tag = "members",
    security(("bearer" = ["admin"])),
    request_body = CreateInvite,
    responses(
        (status = CREATED, body = CreatedInvite),
        (status = CONFLICT, description = "An account with this e-mail exists (`email_taken`)."),
    )
)]
pub async fn create_invite(
    State(state): State<AppState>,
    Admin(caller): Admin,
    public_url: PublicUrl,
    Json(request): Json<CreateInvite>,
) -> ApiResult<(StatusCode, axum::Json<CreatedInvite>)> {
    let email = Email::parse(&request.email)?;
    let created = accounts::create_invite(
        &state.store,
        state.settings.invite_ttl,
        &caller.tenant,
        caller.user,
        email,
        request.role,
    )
    .await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(CreatedInvite::mailed(&state, &caller, &public_url, created).await),
    ))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Invites {
    invites: Vec<Invite>,
}

/// The team's pending invites, without their tokens.
#[utoipa::path(
    get,
    path = "/v1/invites",
    operation_id = "list_invites",
    tag = "members",
    security(("bearer" = ["admin"])),
    responses((status = OK, body = Invites))
)]
pub async fn list_invites(
    State(state): State<AppState>,
    Admin(caller): Admin,
) -> ApiResult<axum::Json<Invites>> {
    let invites = accounts::list_invites(&state.store, &caller.tenant).await?;
    Ok(axum::Json(Invites { invites }))
}

/// Revokes a pending invite: its token opens nothing from now on.
#[utoipa::path(
    delete,
    path = "/v1/invites/{id}",
    operation_id = "revoke_invite",
    tag = "members",
    security(("bearer" = ["admin"])),
    params(("id" = String, Path, description = "The invite's id (`inv_...`).")),
    responses((status = NO_CONTENT, description = "Revoked."))
)]
pub async fn revoke_invite(
    State(state): State<AppState>,
    Admin(caller): Admin,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let id: InviteId = parse_id(&id, "invite")?;
    accounts::revoke_invite(&state.store, &caller.tenant, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Mails a pending invite again with a new link, valid for another week: the old
/// link stops working.
#[utoipa::path(
    post,
    path = "/v1/invites/{id}/resend",
    operation_id = "resend_invite",
    tag = "members",
    security(("bearer" = ["admin"])),
    params(("id" = String, Path, description = "The invite's id (`inv_...`).")),
    responses(
        (status = OK, body = CreatedInvite),
        (status = CONFLICT, description = "An account with this e-mail exists now (`email_taken`)."),
    )
)]
pub async fn resend_invite(
    State(state): State<AppState>,
    Admin(caller): Admin,
    public_url: PublicUrl,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<CreatedInvite>> {
    let id: InviteId = parse_id(&id, "invite")?;
    let renewed =
        accounts::invites::renew(&state.store, state.settings.invite_ttl, &caller.tenant, id)
            .await?;
    Ok(axum::Json(
        CreatedInvite::mailed(&state, &caller, &public_url, renewed).await,
    ))
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct AcceptInvite {
    /// What teammates see the new member as.
    #[schema(value_type = Option<DisplayName>)]
    name: Option<String>,
    /// The new member's password.
    #[schema(value_type = Password)]
    password: String,
}

/// Joins the inviting team with the invite's e-mail and role, for a session. Public:
/// the token is the credential, and works once.
#[utoipa::path(
    post,
    path = "/v1/invites/{token}/accept",
    operation_id = "accept_invite",
    tag = "members",
    security(()),
    params(("token" = String, Path, description = "The invite's single-use token.")),
    request_body = AcceptInvite,
    responses(
        (status = CREATED, body = Session),
        (status = NOT_FOUND, description = "No such invite: unknown, used, revoked or expired."),
        (status = CONFLICT, description = "An account with this e-mail exists (`email_taken`)."),
    )
)]
pub async fn accept_invite(
    State(state): State<AppState>,
    ClientAddr(client): ClientAddr,
    public_url: PublicUrl,
    Path(token): Path<String>,
    Json(request): Json<AcceptInvite>,
) -> ApiResult<(StatusCode, axum::Json<Session>)> {
    let name = request
        .name
        .as_deref()
        .map(|name| DisplayName::parse("name", name))
        .transpose()?;
    let password = Password::parse(request.password)?;
    let session = accounts::accept_invite(
        &state.store,
        state.sessions(),
        &token,
        name,
        password,
        client,
    )
    .await?;
    state.mail_verification_link(&public_url.0, &session).await;
    Ok((StatusCode::CREATED, axum::Json(session)))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Members {
    members: Vec<Member>,
}

/// The team's members, with their roles.
#[utoipa::path(
    get,
    path = "/v1/members",
    operation_id = "list_members",
    tag = "members",
    security(("bearer" = ["read"])),
    responses((status = OK, body = Members))
)]
pub async fn list_members(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<axum::Json<Members>> {
    let members = accounts::list_members(&state.store, &caller.tenant).await?;
    Ok(axum::Json(Members { members }))
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct ChangeRole {
    role: Role,
}

/// Changes a member's role; a team keeps at least one admin.
#[utoipa::path(
    patch,
    path = "/v1/members/{id}",
    operation_id = "change_member_role",
    tag = "members",
    security(("bearer" = ["admin"])),
    params(("id" = String, Path, description = "The member's user id (`usr_...`).")),
    request_body = ChangeRole,
    responses(
        (status = OK, body = Member),
        (
            status = CONFLICT,
            description = "It would leave the team without an admin (`last_admin`), or the \
                           team changed meanwhile (`concurrent_update`).",
        ),
    )
)]
pub async fn change_role(
    State(state): State<AppState>,
    Admin(caller): Admin,
    Path(id): Path<String>,
    Json(request): Json<ChangeRole>,
) -> ApiResult<axum::Json<Member>> {
    let id: UserId = parse_id(&id, "member")?;
    let member = accounts::change_role(&state.store, &caller.tenant, id, request.role).await?;
    Ok(axum::Json(member))
}

/// Removes a member from the team, with the API keys acting for them; a team keeps
/// at least one admin.
#[utoipa::path(
    delete,
    path = "/v1/members/{id}",
    operation_id = "remove_member",
    tag = "members",
    security(("bearer" = ["admin"])),
    params(("id" = String, Path, description = "The member's user id (`usr_...`).")),
    responses(
        (status = NO_CONTENT, description = "Removed."),
        (
            status = CONFLICT,
            description = "It would leave the team without an admin (`last_admin`), or the \
                           team changed meanwhile (`concurrent_update`).",
        ),
    )
)]
pub async fn remove_member(
    State(state): State<AppState>,
    Admin(caller): Admin,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let id: UserId = parse_id(&id, "member")?;
    accounts::remove_member(&state.store, &caller.tenant, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    #[test]
    fn unparseable_ids_read_as_not_found() {
        let err = super::parse_id::<sextant_domain::ids::UserId>("nope", "member").unwrap_err();
        assert_eq!(err.code(), sextant_domain::error::ErrorCode::NotFound);
    }
}
