//! The deployment's operator (`credentials::operator`) at the edge: requests made with
//! the operator token.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use sextant_domain::error::ErrorCode;

/// A request made with the operator token.
#[derive(Debug, Clone, Copy)]
pub struct Operator;

impl FromRequestParts<AppState> for Operator {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> ApiResult<Self> {
        let token = super::credential(&parts.headers)?;
        let allowed = state
            .settings
            .operator_token
            .as_ref()
            .is_some_and(|hash| hash.matches(&token));
        if allowed {
            Ok(Operator)
        } else {
            Err(ApiError::new(
                ErrorCode::OperatorOnly,
                "this is for the deployment's operator, with the operator token",
            ))
        }
    }
}
