//! The routes that answer the local blob store's presigned URLs, as S3 answers its
//! own: `sextant serve` mounts them beside the API. The adapter checks signatures and
//! stores bytes; this module speaks HTTP (ranges, status codes, the error envelope).

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures::TryStreamExt;
use sextant_domain::error::{Error, ErrorCode};
use sextant_edge::error::{ApiError, ApiResult};
use sextant_storage::BlobStore;
use sextant_storage::blob::MAX_PART_BYTES;
use sextant_storage_local::LocalBlobs;
use sextant_storage_local::blob::{PresignedError, ROUTE_PREFIX, SignedQuery};

/// How long an upload's body may pause. Uploads take as long as their size needs, so
/// they have no deadline, only this.
pub const BODY_IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// The routes that serve presigned URLs; mounted without the API body limit because
/// objects may be far larger than any API request.
pub fn routes(blobs: Arc<LocalBlobs>) -> Router {
    routes_pausing_at_most(blobs, BODY_IDLE_TIMEOUT)
}

fn routes_pausing_at_most(blobs: Arc<LocalBlobs>, idle: Duration) -> Router {
    Router::new()
        .route(
            &format!("{ROUTE_PREFIX}/{{*key}}"),
            get(download).put(upload),
        )
        .with_state((blobs, idle))
        .layer(tower_http::timeout::RequestBodyTimeoutLayer::new(idle))
}

type RouteState = (Arc<LocalBlobs>, Duration);

async fn download(
    State((blobs, idle)): State<RouteState>,
    Path(key): Path<String>,
    Query(query): Query<SignedQuery>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let key = blobs
        .authorize_download(&key, &query)
        .map_err(|err| refusal(err, idle))?;
    let body = blobs.get(&key).await?;
    let size = body.size;
    match byte_range(&headers, size) {
        Range::Whole => Ok((
            [
                (header::CONTENT_LENGTH, size.to_string()),
                (header::CONTENT_TYPE, "application/octet-stream".to_owned()),
                (header::ACCEPT_RANGES, "bytes".to_owned()),
            ],
            Body::from_stream(body.stream),
        )
            .into_response()),
        Range::Unsatisfiable => Ok((
            StatusCode::RANGE_NOT_SATISFIABLE,
            [(header::CONTENT_RANGE, format!("bytes */{size}"))],
        )
            .into_response()),
        Range::Bytes(start, end) => {
            let length = end - start + 1;
            let stream = blobs.get_range(&key, start, length).await?;
            Ok((
                StatusCode::PARTIAL_CONTENT,
                [
                    (header::CONTENT_LENGTH, length.to_string()),
                    (header::CONTENT_RANGE, format!("bytes {start}-{end}/{size}")),
                    (header::CONTENT_TYPE, "application/octet-stream".to_owned()),
                ],
                Body::from_stream(stream),
            )
                .into_response())
        }
    }
}

async fn upload(
    State((blobs, idle)): State<RouteState>,
    Path(key): Path<String>,
    Query(query): Query<SignedQuery>,
    body: Body,
) -> ApiResult<Response> {
    // A body that fails to arrive (its client stalled past the idle timeout, or went
    // away) is told apart from a failure of ours by this kind.
    let stream = body
        .into_data_stream()
        .map_err(|err| std::io::Error::new(std::io::ErrorKind::TimedOut, err));
    match blobs.accept_upload(&key, &query, stream).await {
        // Quoted, as S3 sends it.
        Ok(Some(etag)) => {
            Ok((StatusCode::OK, [(header::ETAG, format!("\"{etag}\""))]).into_response())
        }
        Ok(None) => Ok(StatusCode::OK.into_response()),
        Err(err) => Err(refusal(err, idle)),
    }
}

fn refusal(err: PresignedError, idle: Duration) -> ApiError {
    match err {
        PresignedError::InvalidSignature | PresignedError::UnsignedLength => {
            ApiError::new(ErrorCode::InvalidSignature, err.to_string())
        }
        PresignedError::LengthMismatch(signed) => ApiError::new(
            ErrorCode::LengthMismatch,
            match signed {
                Some(length) => format!("the body must be exactly {length} bytes"),
                None => format!("a part is at most {MAX_PART_BYTES} bytes"),
            },
        ),
        PresignedError::Exists => ApiError::new(ErrorCode::PreconditionFailed, err.to_string()),
        PresignedError::BodyStopped => ApiError::new(
            ErrorCode::RequestTimeout,
            format!("the upload stopped arriving for {} s", idle.as_secs()),
        ),
        PresignedError::Blob(err) => err.into(),
        PresignedError::Io(err) => Error::internal(err).into(),
    }
}

/// The one byte range of a `Range: bytes=START-[END]` header, as S3 honours it, so
/// interrupted downloads resume. Other forms (several ranges, suffixes) are ignored
/// and the whole object is sent, which HTTP allows.
fn byte_range(headers: &HeaderMap, size: u64) -> Range {
    let requested = || {
        let spec = headers
            .get(header::RANGE)?
            .to_str()
            .ok()?
            .strip_prefix("bytes=")?;
        let (start, end) = spec.split_once('-')?;
        let start: u64 = start.trim().parse().ok()?;
        let end = match end.trim() {
            "" => size.checked_sub(1),
            end => Some(end.parse::<u64>().ok()?.min(size.saturating_sub(1))),
        };
        Some(match end {
            Some(end) if start <= end => Range::Bytes(start, end),
            _ => Range::Unsatisfiable,
        })
    };
    requested().unwrap_or(Range::Whole)
}

enum Range {
    Whole,
    /// First and last byte, inclusive.
    Bytes(u64, u64),
    Unsatisfiable,
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use sextant_storage::BlobKey;
    use sextant_storage::blob::Presign;
    use sextant_storage_local::UrlSigner;

    /// A client that starts an upload and then stops sending holds nothing for long:
    /// the upload answers 408 once the body has paused for the idle timeout, and
    /// leaves no object behind.
    #[tokio::test]
    async fn an_upload_that_stops_arriving_is_cut_off() {
        use tower::ServiceExt;
        let dir = tempfile::tempdir().unwrap();
        let blobs = Arc::new(
            LocalBlobs::open(
                dir.path(),
                UrlSigner::new(&[1; 32]),
                "http://127.0.0.1:1".parse().unwrap(),
            )
            .unwrap(),
        );
        let key = BlobKey::parse("t/stalled").unwrap();
        let url: url::Url = blobs
            .presign(
                &key,
                Presign::Put { content_length: 10 },
                Duration::from_secs(60),
            )
            .await
            .unwrap()
            .parse()
            .unwrap();
        let first = futures::stream::iter([Ok::<_, std::io::Error>(Bytes::from("12345"))]);
        let body = Body::from_stream(futures::StreamExt::chain(first, futures::stream::pending()));
        let request = axum::http::Request::put(format!("{}?{}", url.path(), url.query().unwrap()))
            .body(body)
            .unwrap();
        let started = std::time::Instant::now();
        let response = routes_pausing_at_most(Arc::clone(&blobs), Duration::from_millis(200))
            .oneshot(request)
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::REQUEST_TIMEOUT);
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(blobs.head(&key).await.unwrap().is_none());
    }
}
