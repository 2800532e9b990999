use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use sextant_shared::auth::{Caller, Writer};
use sextant_shared::error::ApiResult;
use sextant_shared::http::Json;
use sextant_shared::projects::{self, Project, ProjectName};
use sextant_shared::state::AppState;

#[derive(Debug, Deserialize)]
pub struct CreateProject {
    name: String,
}

pub async fn create(
    State(state): State<AppState>,
    Writer(caller): Writer,
    Json(request): Json<CreateProject>,
) -> ApiResult<(StatusCode, axum::Json<Project>)> {
    let name = ProjectName::parse(&request.name)?;
    let project = projects::create(&state, &caller, name).await?;
    Ok((StatusCode::CREATED, axum::Json(project)))
}

#[derive(Debug, Serialize)]
pub struct Projects {
    projects: Vec<Project>,
}

pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<axum::Json<Projects>> {
    let projects = projects::list(&state, &caller.tenant).await?;
    Ok(axum::Json(Projects { projects }))
}

/// By id or by name.
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(project): Path<String>,
) -> ApiResult<axum::Json<Project>> {
    Ok(axum::Json(
        projects::find(&state, &caller.tenant, &project).await?,
    ))
}

/// Deletes the project with all its runs and their data.
pub async fn delete(
    State(state): State<AppState>,
    Writer(caller): Writer,
    Path(project): Path<String>,
) -> ApiResult<StatusCode> {
    let project = projects::find(&state, &caller.tenant, &project).await?;
    projects::delete(&state, &caller.tenant, &project).await?;
    Ok(StatusCode::NO_CONTENT)
}
