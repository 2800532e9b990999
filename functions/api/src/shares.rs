//! Shared run URLs: the team creates, lists and revokes them; anyone holding one reads
//! that run, and only that run, without logging in.

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use futures::TryFutureExt;
use serde::Serialize;
use sextant_domain::artifacts::ArtifactView;
use sextant_domain::credentials::Caller;
use sextant_domain::error::{Error, ErrorCode};
use sextant_domain::ids::ShareId;
use sextant_domain::images::SeriesImages;
use sextant_domain::runs::RunView;
use sextant_domain::shares::{self, NewShare, Share, Terms};
use sextant_domain::{artifacts, images, runs};
use sextant_edge::auth::Writer;
use sextant_edge::error::{ApiError, ApiResult};
use sextant_edge::http::{ClientAddr, Json, PublicUrl, Query};
use sextant_edge::state::AppState;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::images::{ImageRange, Images};
use crate::runs::{ReadParams, SeriesPoints};

/// Opens the run a share token names, for a reader at `client`. A malformed, unknown,
/// revoked or expired token, and a deleted run, all answer the same 404. Readers are
/// rate limited by address before anything is read, then by link and by the team
/// that shared it, which their reads are counted against.
pub(crate) async fn open(
    state: &AppState,
    token: &str,
    client: std::net::IpAddr,
) -> ApiResult<shares::SharedRun> {
    state.limiter.check_address(client)?;
    let gone = || Error::not_found("share");
    let (tenant, share) = shares::find(&state.store, token).await?.ok_or_else(gone)?;
    state
        .limiter
        .check_share(tenant.id(), &share.id.to_string())?;
    Ok(shares::open(&state.store, tenant, share)
        .await?
        .ok_or_else(gone)?)
}

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create, list))
        .routes(routes!(revoke))
        .merge(shared_routes())
}

/// The logged-out routes a share token opens. The token travels in their paths, so
/// their answers are neither cached nor named in the `Referer` of links followed.
fn shared_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(view))
        .routes(routes!(read_series))
        .routes(routes!(list_images))
        .routes(routes!(download))
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

#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedShare {
    #[serde(flatten)]
    share: Share,
    /// The token, shown only in this response; `GET /v1/shared/{token}` reads the run.
    token: String,
    /// The page anyone with the link opens, logged out.
    url: String,
}

/// Shares a run: anyone with the URL in the answer reads it without logging in, until
/// the share expires or is revoked. The token is shown only in this answer.
#[utoipa::path(
    post,
    path = "/v1/runs/{run}/shares",
    operation_id = "create_share",
    tag = "shares",
    security(("bearer" = ["write"])),
    params(("run" = String, Path, description = "The run's id.")),
    request_body = NewShare,
    responses((
        status = CREATED,
        body = CreatedShare,
        headers(("Cache-Control" = String, description = "`no-store`: the answer holds the token.")),
    ))
)]
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
    let (share, token) = shares::create(&state.store, &caller, runs::parse_id(&run)?, new).await?;
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

#[derive(Debug, Serialize, ToSchema)]
pub struct Shares {
    shares: Vec<Share>,
}

/// The run's live shares, without their tokens.
#[utoipa::path(
    get,
    path = "/v1/runs/{run}/shares",
    operation_id = "list_shares",
    tag = "shares",
    security(("bearer" = ["read"])),
    params(("run" = String, Path, description = "The run's id.")),
    responses((status = OK, body = Shares))
)]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Path(run): Path<String>,
) -> ApiResult<axum::Json<Shares>> {
    let shares = shares::list(&state.store, &caller.tenant, runs::parse_id(&run)?).await?;
    Ok(axum::Json(Shares { shares }))
}

/// Revokes a share: its URL opens nothing from now on.
#[utoipa::path(
    delete,
    path = "/v1/shares/{id}",
    operation_id = "revoke_share",
    tag = "shares",
    security(("bearer" = ["write"])),
    params(("id" = String, Path, description = "The share's id (`shr_...`).")),
    responses((status = NO_CONTENT, description = "Revoked."))
)]
pub async fn revoke(
    State(state): State<AppState>,
    Writer(caller): Writer,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let id: ShareId = id.parse().map_err(|_| Error::not_found("share"))?;
    shares::revoke(&state.store, &caller.tenant, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A shared run, as the holder of its token reads it.
#[derive(Debug, Serialize, ToSchema)]
pub struct SharedRunView<'a> {
    share: Terms,
    run: RunView<'a>,
    /// The run's artifacts.
    artifacts: Vec<ArtifactView>,
    /// The run's image series, by name.
    images: BTreeMap<String, SeriesImages>,
}

/// The run a share token opens, as its team sees it, with its artifacts and its image
/// series. Public: the token is the credential.
#[utoipa::path(
    get,
    path = "/v1/shared/{token}",
    operation_id = "get_shared_run",
    tag = "shares",
    security(()),
    params(("token" = String, Path, description = "The share's token (`sxt_share_...`).")),
    responses(
        (
            status = OK,
            body = SharedRunView,
            headers(
                ("Cache-Control" = String, description = "`no-store`."),
                ("Referrer-Policy" = String, description = "`no-referrer`."),
            ),
        ),
        (status = NOT_FOUND, description = "The token opens nothing: unknown, revoked or expired, or its run was deleted."),
    )
)]
pub async fn view(
    State(state): State<AppState>,
    ClientAddr(client): ClientAddr,
    Path(token): Path<String>,
) -> ApiResult<Response> {
    let shared = open(&state, &token, client).await?;
    let (artifacts, images) = futures::try_join!(
        artifacts::list(&state.store, &shared.tenant, shared.run.id, None, None)
            .err_into::<ApiError>(),
        images::series(&state.store, &shared.tenant, shared.run.id).err_into(),
    )?;
    Ok(axum::Json(SharedRunView {
        share: shared.terms(),
        run: shared
            .run
            .view(state.now(), state.settings.heartbeat_timeout),
        artifacts: artifacts.into_iter().map(|a| a.into_view()).collect(),
        images,
    })
    .into_response())
}

/// Points of one series of a shared run, as `GET /v1/runs/{run}/series/{name}` reads
/// them. Public: the token is the credential.
#[utoipa::path(
    get,
    path = "/v1/shared/{token}/series/{*name}",
    operation_id = "read_shared_series",
    tag = "shares",
    security(()),
    params(
        ("token" = String, Path, description = "The share's token (`sxt_share_...`)."),
        ("name" = String, Path, description = "The series' name; it may hold slashes \
            (`train/loss`)."),
        ReadParams,
    ),
    responses(
        (
            status = OK,
            body = SeriesPoints,
            headers(
                ("Cache-Control" = String, description = "`no-store`."),
                ("Referrer-Policy" = String, description = "`no-referrer`."),
            ),
        ),
        (status = NOT_FOUND, description = "The token opens nothing, or the run has no such series."),
    )
)]
pub async fn read_series(
    State(state): State<AppState>,
    ClientAddr(client): ClientAddr,
    Path((token, name)): Path<(String, String)>,
    Query(params): Query<ReadParams>,
) -> ApiResult<Response> {
    let shared = open(&state, &token, client).await?;
    crate::runs::series_points(&state, &shared.tenant, &shared.run, &name, &params).await
}

/// Images of one image series of a shared run, as `GET /v1/runs/{run}/images/{series}`
/// lists them. Public: the token is the credential.
#[utoipa::path(
    get,
    path = "/v1/shared/{token}/images/{*series}",
    operation_id = "list_shared_images",
    tag = "shares",
    security(()),
    params(
        ("token" = String, Path, description = "The share's token (`sxt_share_...`)."),
        ("series" = String, Path, description = "The image series' name; it may hold \
            slashes."),
        ImageRange,
    ),
    responses(
        (
            status = OK,
            body = Images,
            headers(
                ("Cache-Control" = String, description = "`no-store`."),
                ("Referrer-Policy" = String, description = "`no-referrer`."),
            ),
        ),
        (status = NOT_FOUND, description = "The token opens nothing: unknown, revoked or expired, or its run was deleted."),
    )
)]
pub async fn list_images(
    State(state): State<AppState>,
    ClientAddr(client): ClientAddr,
    Path((token, series)): Path<(String, String)>,
    Query(range): Query<ImageRange>,
) -> ApiResult<Response> {
    let shared = open(&state, &token, client).await?;
    crate::images::images_of(&state, &shared.tenant, shared.run.id, &series, &range).await
}

/// Downloads an artifact of a shared run, if the sharer allowed downloads: a redirect
/// to its bytes. Public: the token is the credential.
#[utoipa::path(
    get,
    path = "/v1/shared/{token}/artifacts/{*path}",
    operation_id = "download_shared_artifact",
    tag = "shares",
    security(()),
    params(
        ("token" = String, Path, description = "The share's token (`sxt_share_...`)."),
        ("path" = String, Path, description = "The artifact's path in the run; it may \
            hold slashes."),
    ),
    responses(
        (
            status = TEMPORARY_REDIRECT,
            description = "The bytes are at `Location` for the next five minutes.",
            headers(
                ("Location" = String, description = "A short-lived URL of the artifact's bytes."),
                ("Cache-Control" = String, description = "`no-store`."),
                ("Referrer-Policy" = String, description = "`no-referrer`."),
            ),
        ),
        (
            status = FORBIDDEN,
            description = "The share does not allow downloads (`downloads_not_shared`).",
        ),
        (status = NOT_FOUND, description = "The token opens nothing, or the run has no such artifact."),
    )
)]
pub async fn download(
    State(state): State<AppState>,
    ClientAddr(client): ClientAddr,
    Path((token, path)): Path<(String, String)>,
) -> ApiResult<Response> {
    let shared = open(&state, &token, client).await?;
    if !shared.share.allow_downloads {
        return Err(ApiError::new(
            ErrorCode::DownloadsNotShared,
            "this share does not allow downloading artifacts",
        ));
    }
    let (_, url) =
        artifacts::download_url(&state.store, &shared.tenant, shared.run.id, &path).await?;
    Ok(crate::artifacts::redirect(url))
}
