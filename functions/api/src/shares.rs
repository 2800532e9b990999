//! Shared run URLs: the team creates, lists and revokes them; anyone holding one reads
//! that run, and only that run, without logging in.

use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware;
use axum::response::Response;
use axum::routing::{delete, get, post};
use serde::Serialize;
use serde_json::{Value, json};
use sextant_shared::auth::{Caller, Writer};
use sextant_shared::error::{ApiError, ApiResult};
use sextant_shared::http::{Json, PublicUrl, Query};
use sextant_shared::ids::ShareId;
use sextant_shared::shares::{self, NewShare, Share};
use sextant_shared::state::AppState;
use sextant_shared::{artifacts, images, runs};
use utoipa_axum::router::OpenApiRouter;

use crate::images::ImageRange;
use crate::runs::ReadParams;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .route("/v1/runs/{run}/shares", post(create).get(list))
        .route("/v1/shares/{id}", delete(revoke))
        .merge(shared_routes())
}

/// The logged-out routes a share token opens. The token travels in their paths, so
/// their answers are neither cached nor named in the `Referer` of links followed.
fn shared_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .route("/v1/shared/{token}", get(view))
        .route("/v1/shared/{token}/series/{*name}", get(read_series))
        .route("/v1/shared/{token}/images/{*series}", get(list_images))
        .route("/v1/shared/{token}/artifacts/{*path}", get(download))
        .route_layer(middleware::map_response(|response: Response| async {
            keep_private(response)
        }))
}

/// A token travels in the path: answers about it are never cached and never named in
/// a `Referer`.
pub(crate) fn keep_private(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

#[derive(Debug, Serialize)]
pub struct CreatedShare {
    #[serde(flatten)]
    share: Share,
    /// The token, shown only in this response; `GET /v1/shared/{token}` reads the run.
    token: String,
    /// The page anyone with the link opens, logged out.
    url: String,
}

/// `POST /v1/runs/{run}/shares {expires_in?, allow_downloads?}`.
pub async fn create(
    State(state): State<AppState>,
    Writer(caller): Writer,
    public_url: PublicUrl,
    Path(run): Path<String>,
    Json(new): Json<NewShare>,
) -> ApiResult<(
    StatusCode,
    [(header::HeaderName, &'static str); 1],
    axum::Json<CreatedShare>,
)> {
    let (share, token) = shares::create(&state, &caller, runs::parse_id(&run)?, new).await?;
    let url = public_url.join(["r", token.expose()]);
    Ok((
        StatusCode::CREATED,
        [(header::CACHE_CONTROL, "no-store")],
        axum::Json(CreatedShare {
            share,
            token: token.expose().to_owned(),
            url,
        }),
    ))
}

/// `GET /v1/runs/{run}/shares`: the run's live shares, without their tokens.
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Path(run): Path<String>,
) -> ApiResult<axum::Json<Value>> {
    let shares = shares::list(&state, &caller.tenant, runs::parse_id(&run)?).await?;
    Ok(axum::Json(json!({ "shares": shares })))
}

/// `DELETE /v1/shares/{id}`: the share opens nothing from now on.
pub async fn revoke(
    State(state): State<AppState>,
    Writer(caller): Writer,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let id: ShareId = id.parse().map_err(|_| ApiError::not_found("share"))?;
    shares::revoke(&state, &caller.tenant, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /v1/shared/{token}`: the run as its team sees it, its sealed artifacts and
/// its image series.
pub async fn view(
    State(state): State<AppState>,
    Path(token): Path<String>,
) -> ApiResult<axum::Json<Value>> {
    let shared = shares::open(&state, &token).await?;
    let (artifacts, images) = futures::try_join!(
        artifacts::list(&state, &shared.tenant, shared.run.id, None, None),
        images::series(&state, &shared.tenant, shared.run.id),
    )?;
    let artifacts: Vec<Value> = artifacts.iter().map(|a| a.view()).collect();
    Ok(axum::Json(json!({
        "share": shared.terms(),
        "run": crate::runs::view(&state, &shared.run)?,
        "artifacts": artifacts,
        "images": images,
    })))
}

/// `GET /v1/shared/{token}/series/{name}`: as `GET /v1/runs/{run}/series/{name}`.
pub async fn read_series(
    State(state): State<AppState>,
    Path((token, name)): Path<(String, String)>,
    Query(params): Query<ReadParams>,
) -> ApiResult<Response> {
    let shared = shares::open(&state, &token).await?;
    crate::runs::series_points(&state, &shared.tenant, &shared.run, &name, &params).await
}

/// `GET /v1/shared/{token}/images/{series}`: as `GET /v1/runs/{run}/images/{series}`.
pub async fn list_images(
    State(state): State<AppState>,
    Path((token, series)): Path<(String, String)>,
    Query(range): Query<ImageRange>,
) -> ApiResult<axum::Json<Value>> {
    let shared = shares::open(&state, &token).await?;
    crate::images::images_of(&state, &shared.tenant, shared.run.id, &series, &range).await
}

/// `GET /v1/shared/{token}/artifacts/{path}`: a redirect to the download, if the
/// sharer allowed downloads.
pub async fn download(
    State(state): State<AppState>,
    Path((token, path)): Path<(String, String)>,
) -> ApiResult<Response> {
    let shared = shares::open(&state, &token).await?;
    if !shared.share.allow_downloads {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "downloads_not_shared",
            "this share does not allow downloading artifacts",
        ));
    }
    let (_, url) = artifacts::download_url(&state, &shared.tenant, shared.run.id, &path).await?;
    Ok(crate::artifacts::redirect(url))
}
