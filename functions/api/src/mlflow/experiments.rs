//! Experiments: Sextant's projects.

use axum::extract::{RawQuery, State};
use serde::Deserialize;
use serde_json::{Value, json};
use sextant_domain::credentials::Caller;
use sextant_domain::error::{Error, ErrorCode};
use sextant_domain::ids::ProjectId;
use sextant_domain::projects::{self, Project, ProjectChange, ProjectError, ProjectName};
use sextant_edge::auth::Writer;
use sextant_edge::error::{ApiError, ApiResult};
use sextant_edge::http::{Json, Query};
use sextant_edge::state::AppState;

use super::convert::{self, KeyValue};
use super::filter::{self, Entity, Field, Key};
use super::paging::{self, PageRequest, ViewType};

type JsonResult = ApiResult<axum::Json<Value>>;

/// MLflow's default experiment, which every tracking server has.
const DEFAULT_EXPERIMENT_ID: &str = "0";
const DEFAULT_PROJECT: &str = "Default";

fn not_found() -> Error {
    Error::not_found("experiment")
}

/// The project an experiment id names. `0` is the team's `Default` project, made the
/// first time a member refers to it.
pub(super) async fn find(state: &AppState, caller: &Caller, id: &str) -> Result<Project, Error> {
    if id == DEFAULT_EXPERIMENT_ID {
        let name = ProjectName::parse(DEFAULT_PROJECT)?;
        return projects::find_or_create(&state.store, caller, name)
            .await
            .map_err(|err| match err {
                ProjectError::NotFound => not_found(),
                err => err.into(),
            });
    }
    let id: ProjectId = id.parse().map_err(|_| not_found())?;
    projects::find(&state.store, &caller.tenant, &id.to_string())
        .await
        .map_err(|err| match err {
            ProjectError::NotFound => not_found(),
            err => err.into(),
        })
}

/// The project an experiment id names, refusing one in the trash (as MLflow refuses
/// new runs in a deleted experiment).
pub(super) async fn find_active(state: &AppState, caller: &Caller, id: &str) -> ApiResult<Project> {
    let project = find(state, caller, id).await?;
    if project.trashed_at.is_some() {
        return Err(ApiError::new(
            ErrorCode::Trashed,
            format!(
                "experiment {} is deleted; restore it first",
                project.name.as_str()
            ),
        ));
    }
    Ok(project)
}

fn tag_changes(tags: Vec<KeyValue>) -> ProjectChange {
    ProjectChange {
        set_tags: tags.into_iter().map(|tag| (tag.key, tag.value)).collect(),
        ..ProjectChange::default()
    }
}

#[derive(Debug, Deserialize)]
pub struct CreateExperiment {
    name: String,
    artifact_location: Option<String>,
    #[serde(default)]
    tags: Vec<KeyValue>,
}

pub async fn create(
    State(state): State<AppState>,
    Writer(caller): Writer,
    Json(body): Json<CreateExperiment>,
) -> JsonResult {
    if body.artifact_location.is_some_and(|at| !at.is_empty()) {
        return Err(ApiError::new(
            ErrorCode::InvalidArtifactLocation,
            "Sextant stores artifacts itself; leave artifact_location unset",
        ));
    }
    let project = projects::create(&state.store, &caller, ProjectName::parse(&body.name)?).await?;
    if !body.tags.is_empty() {
        projects::update(
            &state.store,
            &caller.tenant,
            project.id,
            &tag_changes(body.tags),
        )
        .await?;
    }
    Ok(axum::Json(
        json!({ "experiment_id": project.id.to_string() }),
    ))
}

#[derive(Debug, Deserialize)]
pub struct ExperimentId {
    experiment_id: String,
}

pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Query(query): Query<ExperimentId>,
) -> JsonResult {
    let project = find(&state, &caller, &query.experiment_id).await?;
    Ok(axum::Json(
        json!({ "experiment": convert::experiment_json(&project) }),
    ))
}

#[derive(Debug, Deserialize)]
pub struct ExperimentName {
    experiment_name: String,
}

pub async fn get_by_name(
    State(state): State<AppState>,
    caller: Caller,
    Query(query): Query<ExperimentName>,
) -> JsonResult {
    let name = ProjectName::parse(&query.experiment_name).map_err(|_| not_found())?;
    let project = projects::find(&state.store, &caller.tenant, name.as_str())
        .await
        .map_err(|_| not_found())?;
    Ok(axum::Json(
        json!({ "experiment": convert::experiment_json(&project) }),
    ))
}

#[derive(Debug, Default, Deserialize)]
pub struct SearchExperiments {
    #[serde(default, deserialize_with = "convert::int64")]
    max_results: Option<i64>,
    page_token: Option<String>,
    filter: Option<String>,
    #[serde(default)]
    order_by: Vec<String>,
    view_type: Option<ViewType>,
}

pub async fn search(
    State(state): State<AppState>,
    caller: Caller,
    Json(body): Json<SearchExperiments>,
) -> JsonResult {
    search_projects(&state, &caller, body).await
}

/// The GET form, with the search's fields as query parameters (`order_by` repeated).
pub async fn search_by_query(
    State(state): State<AppState>,
    caller: Caller,
    RawQuery(query): RawQuery,
) -> JsonResult {
    let mut body = SearchExperiments::default();
    for (name, value) in url::form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        let value = value.into_owned();
        match name.as_ref() {
            "max_results" => body.max_results = Some(paging::parse_int(&value)?),
            "page_token" => body.page_token = Some(value),
            "filter" => body.filter = Some(value),
            "order_by" => body.order_by.push(value),
            "view_type" => body.view_type = Some(ViewType::parse(&value)?),
            other => {
                return Err(ApiError::new(
                    ErrorCode::InvalidQuery,
                    format!("unknown search parameter {other:?}"),
                ));
            }
        }
    }
    search_projects(&state, &caller, body).await
}

fn attribute(project: &Project, name: &str) -> ApiResult<Option<Field>> {
    Ok(Some(match name {
        "name" => Field::Text(project.name.as_str().to_owned()),
        "experiment_id" => Field::Text(project.id.to_string()),
        "creation_time" => Field::Number(convert::millis(project.created_at) as f64),
        "last_update_time" => {
            Field::Number(convert::millis(project.updated_at.unwrap_or(project.created_at)) as f64)
        }
        other => {
            return Err(filter::invalid(format!(
                "experiments are searched by name, experiment_id, creation_time, \
                 last_update_time and tags, not {other:?}"
            )));
        }
    }))
}

fn field(project: &Project, key: &Key) -> ApiResult<Option<Field>> {
    match key.entity {
        Entity::Tag => Ok(project.tags.get(&key.name).cloned().map(Field::Text)),
        Entity::Attribute => attribute(project, &key.name),
        _ => Err(filter::invalid(
            "experiments are searched by their attributes and tags",
        )),
    }
}

async fn search_projects(state: &AppState, caller: &Caller, body: SearchExperiments) -> JsonResult {
    let clauses = filter::parse(body.filter.as_deref().unwrap_or(""))?;
    let orders = body
        .order_by
        .iter()
        .map(|text| filter::parse_order(text))
        .collect::<ApiResult<Vec<_>>>()?;
    let view = body.view_type.unwrap_or_default();
    let mut rows = Vec::new();
    for project in projects::list_all(&state.store, &caller.tenant).await? {
        if !view.keeps(project.trashed_at.is_some()) {
            continue;
        }
        let mut keep = true;
        for clause in &clauses {
            let value = field(&project, &clause.key)?;
            let numeric = matches!(value, Some(Field::Number(_)));
            if value.is_some() {
                clause.check_kind(numeric)?;
            }
            keep &= clause.matches(value.as_ref());
        }
        if keep {
            let sort_values = orders
                .iter()
                .map(|order| field(&project, &order.key))
                .collect::<ApiResult<Vec<_>>>()?;
            rows.push((sort_values, project));
        }
    }
    // Newest first unless told otherwise, ties by id.
    let answer = paging::ordered_page(
        rows,
        &orders,
        |a: &Project, b: &Project| b.created_at.cmp(&a.created_at).then(a.id.cmp(&b.id)),
        PageRequest {
            max_results: body.max_results,
            token: body.page_token.as_deref(),
            most: paging::MAX_EXPERIMENTS_PER_PAGE,
        },
        "experiments",
        convert::experiment_json,
    )?;
    Ok(axum::Json(answer))
}

#[derive(Debug, Deserialize)]
pub struct UpdateExperiment {
    experiment_id: String,
    new_name: String,
}

pub async fn update(
    State(state): State<AppState>,
    Writer(caller): Writer,
    Json(body): Json<UpdateExperiment>,
) -> JsonResult {
    let project = find(&state, &caller, &body.experiment_id).await?;
    let change = ProjectChange {
        name: Some(ProjectName::parse(&body.new_name)?),
        ..ProjectChange::default()
    };
    projects::update(&state.store, &caller.tenant, project.id, &change).await?;
    Ok(axum::Json(json!({})))
}

async fn set_trashed(state: &AppState, caller: &Caller, id: &str, trashed: bool) -> JsonResult {
    let project = find(state, caller, id).await?;
    let change = ProjectChange {
        trashed: Some(trashed),
        ..ProjectChange::default()
    };
    projects::update(&state.store, &caller.tenant, project.id, &change).await?;
    Ok(axum::Json(json!({})))
}

pub async fn delete(
    State(state): State<AppState>,
    Writer(caller): Writer,
    Json(body): Json<ExperimentId>,
) -> JsonResult {
    set_trashed(&state, &caller, &body.experiment_id, true).await
}

pub async fn restore(
    State(state): State<AppState>,
    Writer(caller): Writer,
    Json(body): Json<ExperimentId>,
) -> JsonResult {
    set_trashed(&state, &caller, &body.experiment_id, false).await
}

#[derive(Debug, Deserialize)]
pub struct SetTag {
    experiment_id: String,
    key: String,
    #[serde(default)]
    value: String,
}

pub async fn set_tag(
    State(state): State<AppState>,
    Writer(caller): Writer,
    Json(body): Json<SetTag>,
) -> JsonResult {
    let project = find(&state, &caller, &body.experiment_id).await?;
    let change = tag_changes(vec![KeyValue {
        key: body.key,
        value: body.value,
    }]);
    projects::update(&state.store, &caller.tenant, project.id, &change).await?;
    Ok(axum::Json(json!({})))
}

#[derive(Debug, Deserialize)]
pub struct DeleteTag {
    experiment_id: String,
    key: String,
}

pub async fn delete_tag(
    State(state): State<AppState>,
    Writer(caller): Writer,
    Json(body): Json<DeleteTag>,
) -> JsonResult {
    let project = find(&state, &caller, &body.experiment_id).await?;
    if !project.tags.contains_key(&body.key) {
        return Err(Error::not_found("tag").into());
    }
    let change = ProjectChange {
        remove_tags: vec![body.key],
        ..ProjectChange::default()
    };
    projects::update(&state.store, &caller.tenant, project.id, &change).await?;
    Ok(axum::Json(json!({})))
}
