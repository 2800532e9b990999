//! The one error type at the HTTP edge. Every failure a client sees is
//! `{"error": {"code": "...", "message": "..."}}` with a stable snake_case code and the
//! status of its class; causes are logged, never sent.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use sextant_domain::error::{Class, Error, ErrorCode};

/// The status a code is sent with: its class's.
pub const fn status(code: ErrorCode) -> StatusCode {
    match code.class() {
        Class::Invalid => StatusCode::BAD_REQUEST,
        Class::Unauthenticated => StatusCode::UNAUTHORIZED,
        Class::Forbidden => StatusCode::FORBIDDEN,
        Class::NotFound => StatusCode::NOT_FOUND,
        Class::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
        Class::TimedOut => StatusCode::REQUEST_TIMEOUT,
        Class::Conflict => StatusCode::CONFLICT,
        Class::PreconditionFailed => StatusCode::PRECONDITION_FAILED,
        Class::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        Class::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        Class::TooMany => StatusCode::TOO_MANY_REQUESTS,
        Class::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        Class::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
    }
}

/// What an error response said, kept in the response's extensions so that layers
/// which reshape errors (the MLflow surface) read it typed instead of parsing the body.
#[derive(Debug, Clone)]
pub struct Reported {
    pub code: ErrorCode,
    pub message: String,
}

/// A domain error on its way out as a response.
#[derive(Debug)]
pub struct ApiError(Error);

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
        Self(Error::new(code, message))
    }

    pub fn status(&self) -> StatusCode {
        status(self.0.code())
    }

    pub fn into_inner(self) -> Error {
        self.0
    }
}

/// The domain error's code, message and logging, read through the response's wrapper.
impl std::ops::Deref for ApiError {
    type Target = Error;

    fn deref(&self) -> &Error {
        &self.0
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.0, self.status())
    }
}

impl std::error::Error for ApiError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        std::error::Error::source(&self.0)
    }
}

/// Any domain error, a module's typed one included, goes out through `?`.
impl<E> From<E> for ApiError
where
    Error: From<E>,
{
    fn from(err: E) -> Self {
        Self(err.into())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        self.0.log();
        let code = self.0.code();
        let body = Envelope {
            error: Body {
                code,
                message: self.0.message(),
            },
        };
        let mut response = (self.status(), Json(body)).into_response();
        response.extensions_mut().insert(Reported {
            code,
            message: self.0.message().to_owned(),
        });
        if let Some(secs) = self.0.retry_after_secs() {
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
    use super::*;

    #[test]
    fn an_error_is_sent_with_its_codes_status_and_reports_what_it_said() {
        let response = ApiError::new(ErrorCode::RunEnded, "the run has ended").into_response();
        assert_eq!(response.status(), StatusCode::CONFLICT);
        let reported = response.extensions().get::<Reported>().expect("reported");
        assert_eq!(reported.code, ErrorCode::RunEnded);
        assert_eq!(reported.message, "the run has ended");
    }

    #[test]
    fn a_code_shared_by_two_variants_is_sent_with_two_statuses() {
        assert_eq!(status(ErrorCode::SeriesKindMismatch), StatusCode::CONFLICT);
        assert_eq!(
            status(ErrorCode::SeriesKindMismatchInOneBatch),
            StatusCode::BAD_REQUEST
        );
    }
}
