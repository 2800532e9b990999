//! The domain's one error: a stable code to branch on (`ErrorCode`), a message for
//! people, and, for failures of ours, a cause that is logged and never shown. Each code
//! belongs to a `Class` of failure; the HTTP edge turns a class into a status, so
//! nothing here speaks HTTP.

use serde::Serialize;

use sextant_storage::blob::BlobError;
use sextant_storage::kv::StoreError;

/// What kind of failure a code is, as a client should read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Class {
    /// The request is malformed or breaks a rule; sending it again will not help.
    Invalid,
    /// No credential, or one that is not (or no longer) good.
    Unauthenticated,
    /// A good credential whose grant does not allow this.
    Forbidden,
    /// Missing, or another team's: the two answer alike.
    NotFound,
    /// The operation does not exist for this resource.
    MethodNotAllowed,
    /// The request took longer than the service lets it.
    TimedOut,
    /// The request conflicts with what is stored now.
    Conflict,
    /// A condition the request set does not hold.
    PreconditionFailed,
    /// The request is larger than the service takes.
    TooLarge,
    /// The body is in a format the operation does not take.
    UnsupportedMediaType,
    /// A limit on how much or how often was reached; it lifts with time.
    TooMany,
    /// A failure of ours.
    Internal,
    /// The service is at capacity for a moment; retry shortly.
    Unavailable,
}

/// Declares `ErrorCode` from one table, so a code's name, string and class are
/// written once.
macro_rules! error_codes {
    ($($variant:ident = ($code:literal, $class:ident),)+) => {
        /// Every code a client can meet in an error envelope, each of one class.
        /// Published in the OpenAPI document as the `ErrorCode` enum; clients (the SDK,
        /// the CLI, the MLflow mapping) branch on these, so a code is never renamed,
        /// only added.
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

            pub const fn class(self) -> Class {
                match self {
                    $(ErrorCode::$variant => Class::$class,)+
                }
            }
        }
    };
}

error_codes! {
    ApiKeyRequired = ("api_key_required", Unauthenticated),
    ArtifactExists = ("artifact_exists", Conflict),
    ArtifactTooLarge = ("artifact_too_large", Invalid),
    BatchIdReused = ("batch_id_reused", Conflict),
    BatchTooLarge = ("batch_too_large", TooLarge),
    BudgetExceeded = ("budget_exceeded", TooMany),
    ChecksumMismatch = ("checksum_mismatch", Conflict),
    ConcurrentUpdate = ("concurrent_update", Conflict),
    ConfirmationMismatch = ("confirmation_mismatch", Invalid),
    DownloadsNotShared = ("downloads_not_shared", Forbidden),
    EmailReleased = ("email_released", Conflict),
    EmailTaken = ("email_taken", Conflict),
    Forbidden = ("forbidden", Forbidden),
    ImageTooLarge = ("image_too_large", TooLarge),
    Internal = ("internal", Internal),
    InvalidAgent = ("invalid_agent", Invalid),
    InvalidBudget = ("invalid_budget", Invalid),
    InvalidArtifactLocation = ("invalid_artifact_location", Invalid),
    InvalidBatchId = ("invalid_batch_id", Invalid),
    InvalidCode = ("invalid_code", Invalid),
    InvalidCommand = ("invalid_command", Invalid),
    InvalidContentType = ("invalid_content_type", Invalid),
    InvalidCreatedAt = ("invalid_created_at", Invalid),
    InvalidCursor = ("invalid_cursor", Invalid),
    InvalidDescription = ("invalid_description", Invalid),
    InvalidEmail = ("invalid_email", Invalid),
    InvalidEndedAt = ("invalid_ended_at", Invalid),
    InvalidExpiry = ("invalid_expiry", Invalid),
    InvalidFilter = ("invalid_filter", Invalid),
    InvalidFormat = ("invalid_format", Invalid),
    InvalidGit = ("invalid_git", Invalid),
    InvalidHash = ("invalid_hash", Invalid),
    InvalidImage = ("invalid_image", Invalid),
    InvalidJson = ("invalid_json", Invalid),
    InvalidLabel = ("invalid_label", Invalid),
    InvalidLimit = ("invalid_limit", Invalid),
    InvalidMaxAttempts = ("invalid_max_attempts", Invalid),
    InvalidMaxPoints = ("invalid_max_points", Invalid),
    InvalidLink = ("invalid_link", Invalid),
    InvalidMaxResults = ("invalid_max_results", Invalid),
    InvalidMonth = ("invalid_month", Invalid),
    InvalidName = ("invalid_name", Invalid),
    InvalidPageToken = ("invalid_page_token", Invalid),
    InvalidParams = ("invalid_params", Invalid),
    InvalidParts = ("invalid_parts", Invalid),
    InvalidPassword = ("invalid_password", Invalid),
    InvalidPath = ("invalid_path", Invalid),
    InvalidProjectName = ("invalid_project_name", Invalid),
    InvalidQuery = ("invalid_query", Invalid),
    InvalidQueueName = ("invalid_queue_name", Invalid),
    InvalidReason = ("invalid_reason", Invalid),
    InvalidRequest = ("invalid_request", Invalid),
    InvalidRuns = ("invalid_runs", Invalid),
    InvalidSequence = ("invalid_sequence", Invalid),
    InvalidSeriesName = ("invalid_series_name", Invalid),
    InvalidSha256 = ("invalid_sha256", Invalid),
    InvalidSignature = ("invalid_signature", Forbidden),
    InvalidSort = ("invalid_sort", Invalid),
    InvalidState = ("invalid_state", Invalid),
    InvalidStatus = ("invalid_status", Invalid),
    InvalidTag = ("invalid_tag", Invalid),
    InvalidTime = ("invalid_time", Invalid),
    InvalidTransition = ("invalid_transition", Conflict),
    InvalidUpload = ("invalid_upload", Invalid),
    InvalidUri = ("invalid_uri", Invalid),
    InvalidViewName = ("invalid_view_name", Invalid),
    InvalidViewQuery = ("invalid_view_query", Invalid),
    InvalidViewType = ("invalid_view_type", Invalid),
    JobEnded = ("job_ended", Conflict),
    JobExists = ("job_exists", Conflict),
    LastAdmin = ("last_admin", Conflict),
    LeaseLost = ("lease_lost", Conflict),
    LengthMismatch = ("length_mismatch", Invalid),
    MethodNotAllowed = ("method_not_allowed", MethodNotAllowed),
    MissingBatchId = ("missing_batch_id", Invalid),
    MissingParts = ("missing_parts", Invalid),
    MissingRunId = ("missing_run_id", Invalid),
    NotFound = ("not_found", NotFound),
    OperatorOnly = ("operator_only", Forbidden),
    ParamChanged = ("param_changed", Invalid),
    PathConflict = ("path_conflict", Conflict),
    PayloadTooLarge = ("payload_too_large", TooLarge),
    PreconditionFailed = ("precondition_failed", PreconditionFailed),
    ProjectExists = ("project_exists", Conflict),
    QuotaExceeded = ("quota_exceeded", TooMany),
    RangeTooLarge = ("range_too_large", Invalid),
    RateLimited = ("rate_limited", TooMany),
    RequestTimeout = ("request_timeout", TimedOut),
    RoleExceedsOwner = ("role_exceeds_owner", Invalid),
    RouteNotFound = ("route_not_found", NotFound),
    RunEnded = ("run_ended", Conflict),
    RunNotQueued = ("run_not_queued", Conflict),
    RunTooLarge = ("run_too_large", Invalid),
    SequenceBehind = ("sequence_behind", Conflict),
    SeriesKindMismatch = ("series_kind_mismatch", Conflict),
    // One batch sending a name both as numbers and as text is malformed (400); a batch
    // whose series is stored as the other kind conflicts with it (409).
    SeriesKindMismatchInOneBatch = ("series_kind_mismatch", Invalid),
    SizeMismatch = ("size_mismatch", Conflict),
    StepUnitMismatch = ("step_unit_mismatch", Conflict),
    TextTooLong = ("text_too_long", Invalid),
    TooManyExperiments = ("too_many_experiments", Invalid),
    TooManySeries = ("too_many_series", Invalid),
    // The project's views, not the request, are what stands in the way: deleting one
    // lets the same request through.
    TooManyViews = ("too_many_views", Conflict),
    Trashed = ("trashed", Invalid),
    Unauthorized = ("unauthorized", Unauthenticated),
    Unavailable = ("unavailable", Unavailable),
    UnsupportedMediaType = ("unsupported_media_type", UnsupportedMediaType),
    UploadMissing = ("upload_missing", Conflict),
    WeakPassword = ("weak_password", Invalid),
    WrongPassword = ("wrong_password", Forbidden),
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

/// What a client is told of any failure: its code and message, when to retry, and, for
/// failures of ours, the cause that is logged instead of sent. Every module's typed
/// error turns into one (`Coded`).
#[derive(Debug)]
pub struct Error {
    code: ErrorCode,
    message: String,
    retry_after_secs: Option<u64>,
    /// The underlying failure, logged and never shown to the client.
    cause: Option<anyhow::Error>,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
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

    /// Too many attempts for a limit; the client may try again after `retry_after_secs`.
    pub fn rate_limited(message: impl Into<String>, retry_after_secs: u64) -> Self {
        Self {
            retry_after_secs: Some(retry_after_secs),
            ..Self::new(ErrorCode::RateLimited, message)
        }
    }

    /// A failure of ours; the cause is logged and the client sees only that it happened.
    pub fn internal(cause: impl Into<anyhow::Error>) -> Self {
        Self {
            cause: Some(cause.into()),
            ..Self::new(ErrorCode::Internal, "internal error; it has been logged")
        }
    }

    /// The service is at a capacity of its own making (not a failure); the client may
    /// retry in a second.
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

    pub fn code(&self) -> ErrorCode {
        self.code
    }

    /// What the client is told: never internal detail (see `internal`).
    pub fn message(&self) -> &str {
        &self.message
    }

    /// How long the client should wait before trying again, if that helps.
    pub fn retry_after_secs(&self) -> Option<u64> {
        self.retry_after_secs
    }

    /// Logs the cause of a failure of ours; whatever reports the error to a client
    /// (a response, a page) does this.
    pub fn log(&self) {
        if let Some(cause) = &self.cause
            && matches!(self.code.class(), Class::Internal | Class::Unavailable)
        {
            tracing::error!(
                code = self.code.as_str(),
                error = format!("{cause:#}"),
                "request failed"
            );
        }
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.cause.as_ref().map(|cause| cause.as_ref() as _)
    }
}

/// A module's typed error: each of its failures reaches clients as one code, with its
/// message. Modules return their own error (`runs::RunError`, `queue::QueueError`, ...),
/// so a signature says what can go wrong and callers match on variants; `?` turns any
/// of them into the `Error` the edge answers with.
pub trait Coded: std::error::Error + Send + Sync + Sized + 'static {
    fn code(&self) -> ErrorCode;

    /// The error clients are told about. Errors that wrap another layer's (the
    /// store's, another module's) hand those on as they are, cause and all.
    fn into_error(self) -> Error {
        Error::new(self.code(), self.to_string())
    }
}

impl<E: Coded> From<E> for Error {
    fn from(err: E) -> Self {
        err.into_error()
    }
}

impl Coded for StoreError {
    fn code(&self) -> ErrorCode {
        match self {
            StoreError::Throttled | StoreError::TransactionConflict => ErrorCode::Unavailable,
            _ => ErrorCode::Internal,
        }
    }

    fn into_error(self) -> Error {
        match self.code() {
            ErrorCode::Unavailable => Error::unavailable(self),
            _ => Error::internal(self),
        }
    }
}

impl Coded for BlobError {
    fn code(&self) -> ErrorCode {
        match self {
            BlobError::NotFound => ErrorCode::NotFound,
            BlobError::InvalidKey(_) => ErrorCode::InvalidPath,
            BlobError::InvalidUpload(_) => ErrorCode::InvalidUpload,
            BlobError::Throttled => ErrorCode::Unavailable,
            BlobError::Unavailable(_) => ErrorCode::Internal,
        }
    }

    fn into_error(self) -> Error {
        match self {
            BlobError::NotFound => Error::not_found("object"),
            BlobError::InvalidKey(message) => Error::new(ErrorCode::InvalidPath, message),
            BlobError::InvalidUpload(message) => Error::new(ErrorCode::InvalidUpload, message),
            BlobError::Throttled => Error::unavailable(self),
            BlobError::Unavailable(_) => Error::internal(self),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    #[test]
    fn codes_are_snake_case_and_a_code_shared_by_two_variants_differs_in_class() {
        let mut classes: BTreeMap<&str, Vec<Class>> = BTreeMap::new();
        for code in ErrorCode::ALL {
            let text = code.as_str();
            assert!(
                !text.is_empty()
                    && text
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
                "{text:?} is not snake_case"
            );
            classes.entry(text).or_default().push(code.class());
        }
        for (text, sent_as) in classes {
            let distinct: std::collections::HashSet<_> = sent_as.iter().collect();
            assert_eq!(
                distinct.len(),
                sent_as.len(),
                "{text} is declared twice in one class"
            );
        }
    }
}
