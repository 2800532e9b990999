//! The HTTP edge shared by every function: JSON extraction with our error shape,
//! the body cap, JSON 404/405 fallbacks, panic containment, and request tracing that
//! never records credentials.

use std::sync::Arc;

use axum::Router;
use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, FromRequest, FromRequestParts, MatchedPath, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderName, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer;
use tower_http::trace::{DefaultOnResponse, TraceLayer};

use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use serde::de::DeserializeOwned;
use sextant_domain::error::{Error, ErrorCode};

/// A JSON body parsed into `T`, or our error envelope: 400 for malformed or mistyped
/// JSON, 415 without a JSON content type, 413 over the body limit.
#[derive(Debug, Clone, Copy, Default)]
pub struct Json<T>(pub T);

/// Query parameters parsed into `T`, or a 400 in our error envelope.
#[derive(Debug, Clone, Copy, Default)]
pub struct Query<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Json<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> ApiResult<Self> {
        let axum::Json(value) = axum::Json::from_request(request, state)
            .await
            .map_err(json_rejection)?;
        Ok(Self(value))
    }
}

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> ApiResult<Self> {
        let axum::extract::Query(value) = axum::extract::Query::from_request_parts(parts, state)
            .await
            .map_err(|rejection| ApiError::new(ErrorCode::InvalidQuery, rejection.body_text()))?;
        Ok(Self(value))
    }
}

fn json_rejection(rejection: JsonRejection) -> ApiError {
    match rejection {
        JsonRejection::JsonDataError(err) => {
            ApiError::new(ErrorCode::InvalidRequest, err.body_text())
        }
        JsonRejection::JsonSyntaxError(_) => {
            ApiError::new(ErrorCode::InvalidJson, "the request body is not valid JSON")
        }
        JsonRejection::MissingJsonContentType(_) => ApiError::new(
            ErrorCode::UnsupportedMediaType,
            "send JSON with Content-Type: application/json",
        ),
        other if other.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            ApiError::new(ErrorCode::PayloadTooLarge, "request body exceeds the limit")
        }
        other => ApiError::new(ErrorCode::InvalidRequest, other.body_text()),
    }
}

/// The body limits of a deployment: one for every route, and larger ones for a few.
#[derive(Debug, Clone)]
struct BodyLimits {
    default: usize,
    routes: Arc<[(&'static str, usize)]>,
}

/// Refuses a declared oversized body before reading any of it; bodies without a
/// length are cut off by `DefaultBodyLimit` as they stream in.
async fn refuse_oversized(
    State(limits): State<BodyLimits>,
    request: Request,
    next: Next,
) -> Response {
    let path = request.uri().path();
    let limit = limits
        .routes
        .iter()
        .find(|(route, _)| *route == path)
        .map_or(limits.default, |&(_, limit)| limit);
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit as u64) {
        return ApiError::new(
            ErrorCode::PayloadTooLarge,
            format!("request body exceeds the {limit}-byte limit"),
        )
        .into_response();
    }
    next.run(request).await
}

async fn not_found() -> ApiError {
    ApiError::new(ErrorCode::RouteNotFound, "no such route")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        ErrorCode::MethodNotAllowed,
        "this route does not accept that method",
    )
}

fn panicked(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    ApiError::from(Error::internal(anyhow::anyhow!("handler panicked"))).into_response()
}

/// The service's public base URL: configured, or else the HTTPS origin the request
/// was addressed to.
#[derive(Debug, Clone)]
pub struct PublicUrl(pub url::Url);

impl FromRequestParts<AppState> for PublicUrl {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        if let Some(url) = &state.settings.public_url {
            return Ok(Self(url.clone()));
        }
        parts
            .headers
            .get(header::HOST)
            .and_then(|host| host.to_str().ok())
            .and_then(|host| format!("https://{host}").parse().ok())
            .map(Self)
            .ok_or_else(|| {
                ApiError::new(
                    ErrorCode::InvalidRequest,
                    "the request has no valid Host header",
                )
            })
    }
}

impl PublicUrl {
    /// The base URL with path segments appended, each percent-encoded.
    pub fn join<'a>(&self, segments: impl IntoIterator<Item = &'a str>) -> String {
        let mut url = self.0.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        url.into()
    }
}

/// The address a request came from: the peer of the connection under `sextant serve`
/// (served with `ConnectInfo`), or what the runtime in front vouches for, set as this
/// extension (API Gateway's `sourceIp` on Lambda). Headers a client can write
/// (`X-Forwarded-For`) are never read. Without either, every request counts as one
/// unknown address, which throttles them together rather than not at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr(pub std::net::IpAddr);

impl<S: Send + Sync> FromRequestParts<S> for ClientAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        if let Some(addr) = parts.extensions.get::<ClientAddr>() {
            return Ok(*addr);
        }
        Ok(Self(
            parts
                .extensions
                .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
                .map_or(std::net::Ipv4Addr::UNSPECIFIED.into(), |info| {
                    info.0.ip().to_canonical()
                }),
        ))
    }
}

/// Who opens a session: the client's address (`ClientAddr`) and the user agent it
/// names, shown to the member in their list of sessions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionClient(pub sextant_domain::sessions::Client);

impl<S: Send + Sync> FromRequestParts<S> for SessionClient {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let ClientAddr(address) = ClientAddr::from_request_parts(parts, state).await?;
        let user_agent = parts
            .headers
            .get(header::USER_AGENT)
            .and_then(|agent| agent.to_str().ok())
            .map(str::to_owned);
        Ok(Self(sextant_domain::sessions::Client {
            address,
            user_agent,
        }))
    }
}

/// A listing's page size: `requested`, or `default` without one; past 1 to `most`
/// is `invalid_limit`.
pub fn page_limit(
    requested: Option<usize>,
    default: usize,
    most: usize,
) -> Result<usize, ApiError> {
    let limit = requested.unwrap_or(default);
    if (1..=most).contains(&limit) {
        Ok(limit)
    } else {
        Err(ApiError::new(
            ErrorCode::InvalidLimit,
            format!("limit is 1 to {most}"),
        ))
    }
}

pub async fn healthz() -> &'static str {
    "ok"
}

static REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Answers 408 `request_timeout` for a request not done within `deadline`, body and
/// handling included. The handler is dropped where it stands, which every handler
/// survives as it survives a crash: whatever it had not committed is not committed.
async fn within_deadline(
    State(deadline): State<std::time::Duration>,
    request: Request,
    next: Next,
) -> Response {
    match tokio::time::timeout(deadline, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::new(
            ErrorCode::RequestTimeout,
            format!(
                "the request took more than {} s (a slow upload or a busy store); retry it",
                deadline.as_secs()
            ),
        )
        .into_response(),
    }
}

/// Turns API routes into the service a function (or `sextant serve`) runs: state,
/// body cap, deadline, JSON fallbacks and panic containment.
pub fn api_service(routes: Router<AppState>, state: AppState) -> Router {
    let limits = BodyLimits {
        default: state.settings.body_limit,
        routes: state.settings.route_body_limits.clone().into(),
    };
    let deadline = state.settings.request_deadline;
    routes
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
        .layer(DefaultBodyLimit::max(limits.default))
        .layer(middleware::from_fn_with_state(limits, refuse_oversized))
        .layer(middleware::from_fn_with_state(deadline, within_deadline))
        .layer(CatchPanicLayer::custom(panicked))
}

/// Request ids and one span per request. Spans name the route template rather than the
/// raw URI, so tokens that travel in paths and queries (invites, presigned URLs) never
/// reach the logs, and credential headers are marked sensitive.
pub fn with_observability(router: Router) -> Router {
    router
        .layer(PropagateRequestIdLayer::new(REQUEST_ID.clone()))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(request_span)
                .on_response(DefaultOnResponse::new().level(tracing::Level::INFO)),
        )
        .layer(SetRequestIdLayer::new(REQUEST_ID.clone(), MakeRequestUuid))
        .layer(SetSensitiveRequestHeadersLayer::new([
            header::AUTHORIZATION,
            header::COOKIE,
            // Neptune's client sends its API token (an API key inside) here.
            HeaderName::from_static("x-neptune-api-token"),
        ]))
}

fn request_span(request: &Request) -> tracing::Span {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", MatchedPath::as_str);
    let request_id = request
        .headers()
        .get(&REQUEST_ID)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("");
    tracing::info_span!("request", method = %request.method(), route, request_id)
}
