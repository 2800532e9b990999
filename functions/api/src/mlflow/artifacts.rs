//! MLflow's artifact proxy (`/api/2.0/mlflow-artifacts/artifacts/...`), over Sextant's
//! artifacts. A run's artifact URI is `mlflow-artifacts:/{experiment}/{run}/artifacts`,
//! which the client resolves against the tracking server, so every path here starts
//! with the experiment and the run. Uploads come through the function (up to its body
//! limit); downloads are redirects to short-lived URLs, as Sextant's own are.

use std::collections::BTreeMap;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, header};
use axum::response::Response;
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};
use sextant_domain::artifacts;
use sextant_domain::credentials::Caller;
use sextant_domain::error::{Error, ErrorCode};
use sextant_domain::ids::RunId;
use sextant_domain::runs;
use sextant_edge::auth::Writer;
use sextant_edge::error::{ApiError, ApiResult};
use sextant_edge::http::{Json, Query};
use sextant_edge::state::AppState;
use sextant_storage::blob::CompletedPart;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/artifacts", get(list))
        .route(
            "/artifacts/{*path}",
            get(download).put(upload).delete(delete),
        )
        .route("/mpu/create/{*path}", post(create_multipart))
        .route("/mpu/complete/{*path}", post(complete_multipart))
        .route("/mpu/abort/{*path}", post(abort_multipart))
}

/// A place in a run's artifacts: the run, and a path below its root (empty for the
/// root itself).
struct Location {
    run: RunId,
    path: String,
}

fn not_found() -> Error {
    Error::not_found("artifact")
}

/// Resolves `{experiment}/{run}/artifacts[/{path}]`: the run must be the team's and
/// belong to that experiment.
async fn locate(state: &AppState, caller: &Caller, full: &str) -> ApiResult<Location> {
    let mut parts = full.trim_matches('/').splitn(4, '/');
    let (Some(experiment), Some(run), Some("artifacts")) =
        (parts.next(), parts.next(), parts.next())
    else {
        return Err(not_found().into());
    };
    let run = runs::parse_id(run)?;
    let record = runs::load(&state.store, &caller.tenant, run).await?.record;
    if record.project_id.to_string() != experiment {
        return Err(not_found().into());
    }
    Ok(Location {
        run,
        path: parts.next().unwrap_or("").trim_end_matches('/').to_owned(),
    })
}

#[derive(Debug, Deserialize)]
pub struct ListQuery {
    path: Option<String>,
}

/// `GET artifacts?path=`: the files and directories directly under a path, named
/// relative to it.
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Query(query): Query<ListQuery>,
) -> ApiResult<axum::Json<Value>> {
    let location = locate(&state, &caller, query.path.as_deref().unwrap_or("")).await?;
    let all = artifacts::list(&state.store, &caller.tenant, location.run, None, None).await?;
    let prefix = if location.path.is_empty() {
        String::new()
    } else {
        format!("{}/", location.path)
    };
    // Name → size, `None` for a directory.
    let mut entries: BTreeMap<String, Option<u64>> = BTreeMap::new();
    for artifact in &all {
        let path = artifact.path.as_str();
        if path == location.path {
            let name = path.rsplit('/').next().unwrap_or(path);
            entries.insert(name.to_owned(), Some(artifact.size));
        } else if let Some(below) = path.strip_prefix(&prefix) {
            match below.split_once('/') {
                Some((directory, _)) => entries.insert(directory.to_owned(), None),
                None => entries.insert(below.to_owned(), Some(artifact.size)),
            };
        }
    }
    let files: Vec<Value> = entries
        .into_iter()
        .map(|(path, size)| match size {
            Some(size) => json!({ "path": path, "is_dir": false, "file_size": size }),
            None => json!({ "path": path, "is_dir": true }),
        })
        .collect();
    Ok(axum::Json(json!({ "files": files })))
}

pub async fn download(
    State(state): State<AppState>,
    caller: Caller,
    Path(path): Path<String>,
) -> ApiResult<Response> {
    let location = locate(&state, &caller, &path).await?;
    let (_, url) =
        artifacts::download_url(&state.store, &caller.tenant, location.run, &location.path).await?;
    Ok(crate::artifacts::redirect(url))
}

pub async fn upload(
    State(state): State<AppState>,
    Writer(caller): Writer,
    Path(path): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<axum::Json<Value>> {
    let location = locate(&state, &caller, &path).await?;
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    artifacts::store(
        &state.store,
        &state.marks,
        &caller.tenant,
        location.run,
        &location.path,
        body,
        content_type,
    )
    .await?;
    Ok(axum::Json(json!({})))
}

/// `DELETE artifacts/{path}`: the artifact at the path, or every one below it.
pub async fn delete(
    State(state): State<AppState>,
    Writer(caller): Writer,
    Path(path): Path<String>,
) -> ApiResult<axum::Json<Value>> {
    let location = locate(&state, &caller, &path).await?;
    let tenant = &caller.tenant;
    let all = artifacts::list(&state.store, tenant, location.run, None, None).await?;
    let prefix = format!("{}/", location.path);
    let doomed: Vec<_> = all
        .iter()
        .filter(|artifact| {
            let path = artifact.path.as_str();
            location.path.is_empty() || path == location.path || path.starts_with(&prefix)
        })
        .collect();
    if doomed.is_empty() {
        return Err(not_found().into());
    }
    for artifact in doomed {
        artifacts::delete(&state.store, tenant, location.run, artifact.path.as_str()).await?;
    }
    Ok(axum::Json(json!({})))
}

/// Where a multipart upload goes: the client names the directory in the path and the
/// file by its local path in the body, whose base name is the artifact's.
async fn multipart_target(
    state: &AppState,
    caller: &Caller,
    directory: &str,
    local_file: &str,
) -> ApiResult<(RunId, String)> {
    let location = locate(state, caller, directory).await?;
    let name = local_file
        .rsplit(['/', '\\'])
        .next()
        .filter(|name| !name.is_empty())
        .ok_or_else(|| ApiError::new(ErrorCode::InvalidPath, "path names the file to upload"))?;
    let path = if location.path.is_empty() {
        name.to_owned()
    } else {
        format!("{}/{name}", location.path)
    };
    Ok((location.run, path))
}

#[derive(Debug, Deserialize)]
pub struct CreateMultipart {
    path: String,
    num_parts: u32,
}

/// `POST mpu/create/{directory}`: starts an upload and answers a URL for each part,
/// which the client uploads to directly (`MLFLOW_ENABLE_PROXY_MULTIPART_UPLOAD`), so
/// files of any size bypass the function's body limit.
pub async fn create_multipart(
    State(state): State<AppState>,
    Writer(caller): Writer,
    Path(directory): Path<String>,
    Json(body): Json<CreateMultipart>,
) -> ApiResult<axum::Json<Value>> {
    let (run, path) = multipart_target(&state, &caller, &directory, &body.path).await?;
    let (upload_id, urls) =
        artifacts::register_measured(&state.store, &caller.tenant, run, &path, body.num_parts)
            .await?;
    let credentials: Vec<Value> = urls
        .into_iter()
        .zip(1..)
        .map(|(url, number): (String, u32)| {
            json!({ "part_number": number, "url": url, "headers": {} })
        })
        .collect();
    Ok(axum::Json(
        json!({ "upload_id": upload_id, "credentials": credentials }),
    ))
}

#[derive(Debug, Deserialize)]
pub struct UploadedPart {
    part_number: u32,
    etag: String,
}

#[derive(Debug, Deserialize)]
pub struct CompleteMultipart {
    path: String,
    #[serde(default)]
    parts: Vec<UploadedPart>,
}

pub async fn complete_multipart(
    State(state): State<AppState>,
    Writer(caller): Writer,
    Path(directory): Path<String>,
    Json(body): Json<CompleteMultipart>,
) -> ApiResult<axum::Json<Value>> {
    let (run, path) = multipart_target(&state, &caller, &directory, &body.path).await?;
    let completion = artifacts::Completion {
        path,
        parts: body
            .parts
            .into_iter()
            .map(|part| CompletedPart {
                number: part.part_number,
                etag: part.etag,
            })
            .collect(),
    };
    artifacts::complete(
        &state.store,
        &state.marks,
        state.settings.verify_slice_bytes,
        &caller.tenant,
        run,
        completion,
    )
    .await?;
    Ok(axum::Json(json!({})))
}

#[derive(Debug, Deserialize)]
pub struct AbortMultipart {
    path: String,
}

pub async fn abort_multipart(
    State(state): State<AppState>,
    Writer(caller): Writer,
    Path(directory): Path<String>,
    Json(body): Json<AbortMultipart>,
) -> ApiResult<axum::Json<Value>> {
    let (run, path) = multipart_target(&state, &caller, &directory, &body.path).await?;
    artifacts::abort_upload(&state.store, &caller.tenant, run, &path).await?;
    Ok(axum::Json(json!({})))
}
