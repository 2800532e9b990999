//! The one error type at the HTTP edge. Every failure a client sees is
//! `{"error": {"code": "...", "message": "..."}}` with a stable snake_case code and the
//! matching status; causes are logged, never sent.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use sextant_storage::blob::BlobError;
use sextant_storage::kv::StoreError;

/// Declares `ErrorCode` from one table, so a code's name, string and status are
/// written once.
macro_rules! error_codes {
    ($($variant:ident = ($code:literal, $status:ident),)+) => {
        /// Every code a client can meet in an error envelope, each with the one status
        /// it is sent with. Published in the OpenAPI document as the `ErrorCode` enum;
        /// clients (the SDK, the CLI, the MLflow mapping) branch on these, so a code is
        /// never renamed, only added.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum ErrorCode {
            $($variant,)+
        }

        impl ErrorCode {
            pub const ALL: &[ErrorCode] = &[$(ErrorCode::$variant,)+];

            pub const fn as_str(self) -> &'static str {
                match self {
                    $(ErrorCode::$variant => $code,)+
                }
            }

            pub const fn status(self) -> StatusCode {
                match self {
                    $(ErrorCode::$variant => StatusCode::$status,)+
                }
            }
        }
    };
}

error_codes! {
    ApiKeyRequired = ("api_key_required", UNAUTHORIZED),
    ArtifactExists = ("artifact_exists", CONFLICT),
    ArtifactTooLarge = ("artifact_too_large", BAD_REQUEST),
    BatchIdReused = ("batch_id_reused", CONFLICT),
    BatchTooLarge = ("batch_too_large", PAYLOAD_TOO_LARGE),
    ChecksumMismatch = ("checksum_mismatch", CONFLICT),
    ConcurrentUpdate = ("concurrent_update", CONFLICT),
    DownloadsNotShared = ("downloads_not_shared", FORBIDDEN),
    EmailTaken = ("email_taken", CONFLICT),
    Forbidden = ("forbidden", FORBIDDEN),
    ImageTooLarge = ("image_too_large", PAYLOAD_TOO_LARGE),
    Internal = ("internal", INTERNAL_SERVER_ERROR),
    InvalidAgent = ("invalid_agent", BAD_REQUEST),
    InvalidArtifactLocation = ("invalid_artifact_location", BAD_REQUEST),
    InvalidBatchId = ("invalid_batch_id", BAD_REQUEST),
    InvalidCode = ("invalid_code", BAD_REQUEST),
    InvalidCommand = ("invalid_command", BAD_REQUEST),
    InvalidContentType = ("invalid_content_type", BAD_REQUEST),
    InvalidCreatedAt = ("invalid_created_at", BAD_REQUEST),
    InvalidCursor = ("invalid_cursor", BAD_REQUEST),
    InvalidDescription = ("invalid_description", BAD_REQUEST),
    InvalidEmail = ("invalid_email", BAD_REQUEST),
    InvalidEndedAt = ("invalid_ended_at", BAD_REQUEST),
    InvalidExpiry = ("invalid_expiry", BAD_REQUEST),
    InvalidFilter = ("invalid_filter", BAD_REQUEST),
    InvalidFormat = ("invalid_format", BAD_REQUEST),
    InvalidGit = ("invalid_git", BAD_REQUEST),
    InvalidHash = ("invalid_hash", BAD_REQUEST),
    InvalidImage = ("invalid_image", BAD_REQUEST),
    InvalidJson = ("invalid_json", BAD_REQUEST),
    InvalidLabel = ("invalid_label", BAD_REQUEST),
    InvalidLimit = ("invalid_limit", BAD_REQUEST),
    InvalidMaxAttempts = ("invalid_max_attempts", BAD_REQUEST),
    InvalidMaxPoints = ("invalid_max_points", BAD_REQUEST),
    InvalidMaxResults = ("invalid_max_results", BAD_REQUEST),
    InvalidMonth = ("invalid_month", BAD_REQUEST),
    InvalidName = ("invalid_name", BAD_REQUEST),
    InvalidPageToken = ("invalid_page_token", BAD_REQUEST),
    InvalidParams = ("invalid_params", BAD_REQUEST),
    InvalidParts = ("invalid_parts", BAD_REQUEST),
    InvalidPassword = ("invalid_password", BAD_REQUEST),
    InvalidPath = ("invalid_path", BAD_REQUEST),
    InvalidProjectName = ("invalid_project_name", BAD_REQUEST),
    InvalidQuery = ("invalid_query", BAD_REQUEST),
    InvalidQueueName = ("invalid_queue_name", BAD_REQUEST),
    InvalidReason = ("invalid_reason", BAD_REQUEST),
    InvalidRequest = ("invalid_request", BAD_REQUEST),
    InvalidRuns = ("invalid_runs", BAD_REQUEST),
    InvalidSeriesName = ("invalid_series_name", BAD_REQUEST),
    InvalidSha256 = ("invalid_sha256", BAD_REQUEST),
    InvalidSignature = ("invalid_signature", FORBIDDEN),
    InvalidSort = ("invalid_sort", BAD_REQUEST),
    InvalidState = ("invalid_state", BAD_REQUEST),
    InvalidStatus = ("invalid_status", BAD_REQUEST),
    InvalidTag = ("invalid_tag", BAD_REQUEST),
    InvalidTime = ("invalid_time", BAD_REQUEST),
    InvalidTransition = ("invalid_transition", CONFLICT),
    InvalidUpload = ("invalid_upload", BAD_REQUEST),
    InvalidUri = ("invalid_uri", BAD_REQUEST),
    InvalidViewType = ("invalid_view_type", BAD_REQUEST),
    JobEnded = ("job_ended", CONFLICT),
    JobExists = ("job_exists", CONFLICT),
    LastAdmin = ("last_admin", CONFLICT),
    LeaseLost = ("lease_lost", CONFLICT),
    LengthMismatch = ("length_mismatch", BAD_REQUEST),
    MethodNotAllowed = ("method_not_allowed", METHOD_NOT_ALLOWED),
    MissingBatchId = ("missing_batch_id", BAD_REQUEST),
    MissingParts = ("missing_parts", BAD_REQUEST),
    MissingRunId = ("missing_run_id", BAD_REQUEST),
    NotFound = ("not_found", NOT_FOUND),
    OperatorOnly = ("operator_only", FORBIDDEN),
    ParamChanged = ("param_changed", BAD_REQUEST),
    PathConflict = ("path_conflict", CONFLICT),
    PayloadTooLarge = ("payload_too_large", PAYLOAD_TOO_LARGE),
    PreconditionFailed = ("precondition_failed", PRECONDITION_FAILED),
    ProjectExists = ("project_exists", CONFLICT),
    QuotaExceeded = ("quota_exceeded", TOO_MANY_REQUESTS),
    RangeTooLarge = ("range_too_large", BAD_REQUEST),
    RateLimited = ("rate_limited", TOO_MANY_REQUESTS),
    RequestTimeout = ("request_timeout", REQUEST_TIMEOUT),
    RoleExceedsOwner = ("role_exceeds_owner", BAD_REQUEST),
    RouteNotFound = ("route_not_found", NOT_FOUND),
    RunEnded = ("run_ended", CONFLICT),
    RunNotQueued = ("run_not_queued", CONFLICT),
    RunTooLarge = ("run_too_large", BAD_REQUEST),
    SeriesKindMismatch = ("series_kind_mismatch", CONFLICT),
    // One batch sending a name both as numbers and as text is malformed (400); a batch
    // whose series is stored as the other kind conflicts with it (409).
    SeriesKindMismatchInOneBatch = ("series_kind_mismatch", BAD_REQUEST),
    SizeMismatch = ("size_mismatch", CONFLICT),
    TextTooLong = ("text_too_long", BAD_REQUEST),
    TooManyExperiments = ("too_many_experiments", BAD_REQUEST),
    TooManySeries = ("too_many_series", BAD_REQUEST),
    Trashed = ("trashed", BAD_REQUEST),
    Unauthorized = ("unauthorized", UNAUTHORIZED),
    Unavailable = ("unavailable", SERVICE_UNAVAILABLE),
    UnsupportedMediaType = ("unsupported_media_type", UNSUPPORTED_MEDIA_TYPE),
    UploadMissing = ("upload_missing", CONFLICT),
    WeakPassword = ("weak_password", BAD_REQUEST),
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for ErrorCode {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl utoipa::PartialSchema for ErrorCode {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .description(Some(
                "A stable snake_case code to branch on; new codes may be added, none is renamed.",
            ))
            .enum_values(Some(
                ErrorCode::ALL
                    .iter()
                    .map(|code| code.as_str())
                    .collect::<std::collections::BTreeSet<_>>(),
            ))
            .into()
    }
}

impl utoipa::ToSchema for ErrorCode {}

/// What an error response said, kept in the response's extensions so that layers
/// which reshape errors (the MLflow surface) read it typed instead of parsing the body.
#[derive(Debug, Clone)]
pub struct Reported {
    pub code: ErrorCode,
    pub message: String,
}

#[derive(Debug)]
pub struct ApiError {
    code: ErrorCode,
    message: String,
    retry_after_secs: Option<u64>,
    /// The underlying failure, logged at the edge and never shown to the client.
    cause: Option<anyhow::Error>,
}

/// Every error a client sees: a stable snake_case `code` to branch on, and a message
/// for people.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = Error)]
pub(crate) struct Envelope<'a> {
    error: Body<'a>,
}

#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = ErrorBody)]
pub(crate) struct Body<'a> {
    #[schema(example = "not_found")]
    code: ErrorCode,
    message: &'a str,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            retry_after_secs: None,
            cause: None,
        }
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Unauthorized, message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Forbidden, message)
    }

    /// Missing and foreign resources answer alike, so ids cannot be probed.
    pub fn not_found(what: &str) -> Self {
        Self::new(ErrorCode::NotFound, format!("{what} not found"))
    }

    /// Too many requests for a rate limit; `retry_after_secs` goes out as `Retry-After`.
    pub fn rate_limited(message: impl Into<String>, retry_after_secs: u64) -> Self {
        Self {
            retry_after_secs: Some(retry_after_secs),
            ..Self::new(ErrorCode::RateLimited, message)
        }
    }

    pub fn payload_too_large(limit: usize) -> Self {
        Self::new(
            ErrorCode::PayloadTooLarge,
            format!("request body exceeds the {limit}-byte limit"),
        )
    }

    /// A failure of ours; the cause is logged and the client sees only that it happened.
    pub fn internal(cause: impl Into<anyhow::Error>) -> Self {
        Self {
            cause: Some(cause.into()),
            ..Self::new(ErrorCode::Internal, "internal error; it has been logged")
        }
    }

    /// The service is at a capacity of its own making (not a failure): 503 with
    /// `Retry-After`.
    pub fn busy(message: impl Into<String>) -> Self {
        Self {
            retry_after_secs: Some(1),
            ..Self::new(ErrorCode::Unavailable, message)
        }
    }

    fn unavailable(cause: impl Into<anyhow::Error>) -> Self {
        Self {
            retry_after_secs: Some(1),
            cause: Some(cause.into()),
            ..Self::new(ErrorCode::Unavailable, "the service is busy; retry shortly")
        }
    }

    pub fn status(&self) -> StatusCode {
        self.code.status()
    }

    pub fn code(&self) -> ErrorCode {
        self.code
    }

    /// What the client is told: never internal detail (see `internal`).
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Logs the cause of a server-side failure; the edge does this for every response,
    /// and so must any other rendering of the error (the web pages).
    pub fn log(&self) {
        if let Some(cause) = &self.cause
            && self.status().is_server_error()
        {
            tracing::error!(
                code = self.code.as_str(),
                error = format!("{cause:#}"),
                "request failed"
            );
        }
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}): {}", self.code, self.status(), self.message)
    }
}

/// So code outside the HTTP edge (the metering function, the CLI) can carry it on.
impl std::error::Error for ApiError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.cause.as_ref().map(|cause| cause.as_ref() as _)
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::Throttled | StoreError::TransactionConflict => Self::unavailable(err),
            other => Self::internal(other),
        }
    }
}

impl From<BlobError> for ApiError {
    fn from(err: BlobError) -> Self {
        match err {
            BlobError::NotFound => Self::not_found("object"),
            BlobError::InvalidKey(message) => Self::new(ErrorCode::InvalidPath, message),
            BlobError::InvalidUpload(message) => Self::new(ErrorCode::InvalidUpload, message),
            BlobError::Throttled => Self::unavailable(err),
            BlobError::Unavailable(_) => Self::internal(err),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        self.log();
        let body = Envelope {
            error: Body {
                code: self.code,
                message: &self.message,
            },
        };
        let mut response = (self.status(), Json(body)).into_response();
        response.extensions_mut().insert(Reported {
            code: self.code,
            message: self.message.clone(),
        });
        if let Some(secs) = self.retry_after_secs {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    #[test]
    fn codes_are_snake_case_and_a_code_shared_by_two_variants_differs_in_status() {
        let mut statuses: BTreeMap<&str, Vec<StatusCode>> = BTreeMap::new();
        for code in ErrorCode::ALL {
            let text = code.as_str();
            assert!(
                !text.is_empty()
                    && text
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
                "{text:?} is not snake_case"
            );
            statuses.entry(text).or_default().push(code.status());
        }
        for (text, mut sent_with) in statuses {
            let count = sent_with.len();
            sent_with.dedup();
            assert_eq!(
                sent_with.len(),
                count,
                "{text} is declared twice with one status"
            );
        }
    }

    #[test]
    fn an_error_is_sent_with_its_codes_status_and_reports_what_it_said() {
        let response = ApiError::new(ErrorCode::RunEnded, "the run has ended").into_response();
        assert_eq!(response.status(), StatusCode::CONFLICT);
        let reported = response.extensions().get::<Reported>().expect("reported");
        assert_eq!(reported.code, ErrorCode::RunEnded);
        assert_eq!(reported.message, "the run has ended");
    }
}
