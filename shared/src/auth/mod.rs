//! Who is calling. Every request's tenant comes from its verified credential and from
//! nowhere else: not the path, not the body.

pub mod api_key;
pub mod csrf;
pub mod jwt;
pub mod operator;
pub mod password;
mod role;

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;

pub use role::Role;

use crate::accounts;
use crate::error::{ApiError, ApiResult};
use crate::ids::{ApiKeyId, UserId};
use crate::state::AppState;
use crate::tenancy::Tenant;

/// The credential a request was authenticated with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Credential {
    /// A session token from sign-up, log-in or an accepted invite.
    Session,
    /// An API key sent as is.
    ApiKey(ApiKeyId),
    /// An access token exchanged for an API key.
    AccessToken(ApiKeyId),
}

/// An authenticated caller: its team, the member it acts for, and its effective role.
#[derive(Debug, Clone)]
pub struct Caller {
    pub tenant: Tenant,
    pub user: UserId,
    pub role: Role,
    pub credential: Credential,
}

impl Caller {
    pub fn require(&self, role: Role) -> ApiResult<()> {
        if self.role >= role {
            Ok(())
        } else {
            Err(ApiError::forbidden(format!(
                "this needs the {role} role; the credential has {}",
                self.role
            )))
        }
    }
}

/// The credential in `Authorization`: a bearer token, or HTTP Basic with the credential
/// as the password (what the MLflow client sends given `MLFLOW_TRACKING_USERNAME` and
/// `MLFLOW_TRACKING_PASSWORD`; the user name is not checked, the key alone decides).
fn credential(parts: &Parts) -> ApiResult<String> {
    let header = parts
        .headers
        .get(AUTHORIZATION)
        .ok_or_else(|| ApiError::unauthorized("missing Authorization: Bearer credential"))?;
    header
        .to_str()
        .ok()
        .and_then(|value| {
            let (scheme, token) = value.split_once(' ')?;
            let token = token.trim();
            if scheme.eq_ignore_ascii_case("bearer") {
                Some(token.to_owned())
            } else if scheme.eq_ignore_ascii_case("basic") {
                let decoded = STANDARD.decode(token).ok()?;
                let (_user, password) = std::str::from_utf8(&decoded).ok()?.split_once(':')?;
                Some(password.to_owned())
            } else {
                None
            }
        })
        .filter(|token| !token.is_empty())
        .ok_or_else(|| ApiError::unauthorized("expected Authorization: Bearer <credential>"))
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> ApiResult<Self> {
        accounts::authenticate(state, &credential(parts)?).await
    }
}

/// A caller allowed to write: member or admin. Viewers get 403.
#[derive(Debug, Clone)]
pub struct Writer(pub Caller);

impl FromRequestParts<AppState> for Writer {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> ApiResult<Self> {
        let caller = Caller::from_request_parts(parts, state).await?;
        caller.require(Role::Member)?;
        Ok(Self(caller))
    }
}

/// A caller allowed to manage the team: members, invites, API keys.
#[derive(Debug, Clone)]
pub struct Admin(pub Caller);

impl FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> ApiResult<Self> {
        let caller = Caller::from_request_parts(parts, state).await?;
        caller.require(Role::Admin)?;
        Ok(Self(caller))
    }
}
