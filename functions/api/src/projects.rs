use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use sextant_domain::credentials::Caller;
use sextant_domain::deletion;
use sextant_domain::projects::{self, Project, ProjectName};
use sextant_edge::auth::Writer;
use sextant_edge::error::ApiResult;
use sextant_edge::http::Json;

use sextant_edge::state::AppState;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create, list))
        .routes(routes!(get, delete))
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct CreateProject {
    #[schema(value_type = ProjectName)]
    name: String,
}

/// Creates a project; its name is unique within the team.
#[utoipa::path(
    post,
    path = "/v1/projects",
    operation_id = "create_project",
    tag = "projects",
    security(("bearer" = ["write"])),
    request_body = CreateProject,
    responses(
        (status = CREATED, body = Project),
        (status = CONFLICT, description = "The team has a project of that name."),
    )
)]
pub async fn create(
    State(state): State<AppState>,
    Writer(caller): Writer,
    Json(request): Json<CreateProject>,
) -> ApiResult<(StatusCode, axum::Json<Project>)> {
    let name = ProjectName::parse(&request.name)?;
    let project = projects::create(&state.store, &caller, name).await?;
    Ok((StatusCode::CREATED, axum::Json(project)))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Projects {
    projects: Vec<Project>,
}

/// The team's projects, oldest first.
#[utoipa::path(
    get,
    path = "/v1/projects",
    operation_id = "list_projects",
    tag = "projects",
    security(("bearer" = ["read"])),
    responses((status = OK, body = Projects))
)]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<axum::Json<Projects>> {
    let projects = projects::list(&state.store, &caller.tenant).await?;
    Ok(axum::Json(Projects { projects }))
}

/// A project, by id or by name.
#[utoipa::path(
    get,
    path = "/v1/projects/{project}",
    operation_id = "get_project",
    tag = "projects",
    security(("bearer" = ["read"])),
    params(("project" = String, Path, description = "The project's id or name.")),
    responses((status = OK, body = Project))
)]
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(project): Path<String>,
) -> ApiResult<axum::Json<Project>> {
    Ok(axum::Json(
        projects::find(&state.store, &caller.tenant, &project).await?,
    ))
}

/// Deletes the project with all its runs and their data.
#[utoipa::path(
    delete,
    path = "/v1/projects/{project}",
    operation_id = "delete_project",
    tag = "projects",
    security(("bearer" = ["write"])),
    params(("project" = String, Path, description = "The project's id or name.")),
    responses((status = NO_CONTENT, description = "Deleted."))
)]
pub async fn delete(
    State(state): State<AppState>,
    Writer(caller): Writer,
    Path(project): Path<String>,
) -> ApiResult<StatusCode> {
    let project = projects::find(&state.store, &caller.tenant, &project).await?;
    deletion::delete_project(&state.store, &caller.tenant, &project).await?;
    Ok(StatusCode::NO_CONTENT)
}
