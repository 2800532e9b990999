//! The caller's team: read it, rename it, delete it with everything it holds.

use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use serde::Deserialize;
use sextant_domain::accounts::{self, DisplayName, Team};
use sextant_domain::credentials::Caller;
use sextant_domain::deletion;
use sextant_domain::error::{Error, ErrorCode};
use sextant_domain::tenancy::Tenant;
use sextant_edge::auth::Admin;
use sextant_edge::error::ApiResult;
use sextant_edge::http::Json;
use sextant_edge::state::AppState;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(get_team, rename_team, delete_team))
}

/// How long a team's deletion runs before its request answers: well inside API
/// Gateway's 29 seconds.
const DELETE_WITHIN_REQUEST: Duration = Duration::from_secs(20);

/// Deletes the team (`deletion::delete_team`); answers whether it finished within
/// the request. It runs on a task of its own, so on `sextant serve` a deletion that
/// outlasts the request goes on; on Lambda the hourly metering run finishes it.
pub(crate) async fn delete_within_request(state: &AppState, tenant: Tenant) -> Result<bool, Error> {
    let store = state.store.clone();
    let deleting = tokio::spawn(async move { deletion::delete_team(&store, &tenant).await });
    match tokio::time::timeout(DELETE_WITHIN_REQUEST, deleting).await {
        Ok(Ok(deleted)) => deleted.map(|()| true).map_err(Error::from),
        Ok(Err(panicked)) => Err(Error::internal(panicked)),
        Err(_) => Ok(false),
    }
}

/// The caller's team.
#[utoipa::path(
    get,
    path = "/v1/team",
    operation_id = "get_team",
    tag = "members",
    security(("bearer" = ["read"])),
    responses((status = OK, body = Team))
)]
pub async fn get_team(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<axum::Json<Team>> {
    Ok(axum::Json(
        accounts::team(&state.store, &caller.tenant).await?,
    ))
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct RenameTeam {
    #[schema(value_type = DisplayName)]
    name: String,
}

/// Renames the team.
#[utoipa::path(
    patch,
    path = "/v1/team",
    operation_id = "rename_team",
    tag = "members",
    security(("bearer" = ["admin"])),
    request_body = RenameTeam,
    responses((status = OK, body = Team))
)]
pub async fn rename_team(
    State(state): State<AppState>,
    Admin(caller): Admin,
    Json(request): Json<RenameTeam>,
) -> ApiResult<axum::Json<Team>> {
    let name = DisplayName::parse("name", &request.name)?;
    Ok(axum::Json(
        accounts::rename_team(&state.store, &caller.tenant, name).await?,
    ))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ConfirmDeletion {
    /// The team's name, exactly: what makes the deletion deliberate.
    confirm: String,
}

/// Deletes the team and everything it holds: every member (signed out at once, their
/// addresses free again), API key, invite, project, run, artifact and share. What it
/// logged and stored until now is billed in this month's final report, and nothing
/// after.
#[utoipa::path(
    delete,
    path = "/v1/team",
    operation_id = "delete_team",
    tag = "members",
    security(("bearer" = ["admin"])),
    params(ConfirmDeletion),
    responses(
        (status = NO_CONTENT, description = "Deleted."),
        (
            status = ACCEPTED,
            description = "Nobody can use the team any more, and the rest of its data is \
                           deleted within the hour.",
        ),
        (status = BAD_REQUEST, description = "`confirm` is not the team's name (`confirmation_mismatch`)."),
    )
)]
pub async fn delete_team(
    State(state): State<AppState>,
    Admin(caller): Admin,
    Query(confirmation): Query<ConfirmDeletion>,
) -> ApiResult<StatusCode> {
    let team = accounts::team(&state.store, &caller.tenant).await?;
    if confirmation.confirm.trim() != team.name.as_str() {
        return Err(Error::new(
            ErrorCode::ConfirmationMismatch,
            "confirm is not the team's name: nothing was deleted",
        )
        .into());
    }
    Ok(if delete_within_request(&state, caller.tenant).await? {
        StatusCode::NO_CONTENT
    } else {
        StatusCode::ACCEPTED
    })
}
