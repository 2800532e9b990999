//! Who is calling. Every request's tenant comes from its verified credential and from
//! nowhere else: not the path, not the body.

pub mod csrf;
pub mod operator;

use axum::extract::FromRequestParts;
use axum::http::HeaderMap;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use sextant_domain::authentication;
use sextant_domain::credentials::{Caller, Credential, Plane, Role};
use sextant_domain::error::Error;
use sextant_domain::ids::RunId;

/// The credential in `Authorization`: a bearer token, or HTTP Basic with the credential
/// as the password (what the MLflow client sends given `MLFLOW_TRACKING_USERNAME` and
/// `MLFLOW_TRACKING_PASSWORD`; the user name is not checked, the key alone decides).
fn credential(headers: &HeaderMap) -> Result<String, Error> {
    let header = headers
        .get(AUTHORIZATION)
        .ok_or_else(|| Error::unauthorized("missing Authorization: Bearer credential"))?;
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
        .ok_or_else(|| Error::unauthorized("expected Authorization: Bearer <credential>"))
}

/// Resolves a bearer credential to a caller on `plane` (`authentication::resolve`), and
/// counts the request against the caller's rate limits (see `rate_limit`).
pub async fn authenticate(state: &AppState, bearer: &str, plane: Plane) -> ApiResult<Caller> {
    let caller = authentication::resolve(&state.store, &state.keyring, bearer, plane).await?;
    state
        .limiter
        .check(caller.tenant.id(), &caller.credential)?;
    Ok(caller)
}

async fn caller(parts: &Parts, state: &AppState, plane: Plane) -> ApiResult<Caller> {
    authenticate(state, &credential(&parts.headers)?, plane).await
}

fn outside_the_job(run: RunId) -> Error {
    Error::forbidden(format!(
        "a job's credential works only for logging to, uploading to and ending its run {run}"
    ))
}

/// A job's credential acts only on its own run: the `run` of the path.
async fn check_job_scope(parts: &mut Parts, state: &AppState, caller: &Caller) -> ApiResult<()> {
    let Credential::Job { run, .. } = caller.credential else {
        return Ok(());
    };
    let params = axum::extract::RawPathParams::from_request_parts(parts, state)
        .await
        .map_err(|_| outside_the_job(run))?;
    let named = params
        .iter()
        .find(|(name, _)| *name == "run")
        .and_then(|(_, value)| value.parse::<RunId>().ok());
    if named == Some(run) {
        Ok(())
    } else {
        Err(outside_the_job(run).into())
    }
}

/// Any credential of the team, checked against its grant; not a job's, which only
/// the operations of its run take (`RunCaller`, `RunWriter`, `DataWriter`).
impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> ApiResult<Self> {
        let caller = caller(parts, state, Plane::Control).await?;
        if let Credential::Job { run, .. } = caller.credential {
            return Err(outside_the_job(run).into());
        }
        Ok(caller)
    }
}

/// Whoever the credential stands for, a job's included: for the one operation that
/// only tells them what the credential is good for (`POST /v1/auth/token`, which
/// answers anything but a key with `api_key_required`, the SDK's cue to use it as is).
#[derive(Debug, Clone)]
pub struct AnyCaller(pub Caller);

impl FromRequestParts<AppState> for AnyCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> ApiResult<Self> {
        Ok(Self(caller(parts, state, Plane::Control).await?))
    }
}

/// A caller reading the run named in the path: any of the team's credentials, or the
/// job credential of that run.
#[derive(Debug, Clone)]
pub struct RunCaller(pub Caller);

impl FromRequestParts<AppState> for RunCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> ApiResult<Self> {
        let caller = caller(parts, state, Plane::Control).await?;
        check_job_scope(parts, state, &caller).await?;
        Ok(Self(caller))
    }
}

/// A caller writing to the run named in the path: a member's or admin's credential, or
/// the job credential of that run.
#[derive(Debug, Clone)]
pub struct RunWriter(pub Caller);

impl FromRequestParts<AppState> for RunWriter {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> ApiResult<Self> {
        let RunCaller(caller) = RunCaller::from_request_parts(parts, state).await?;
        caller.require(Role::Member)?;
        Ok(Self(caller))
    }
}

/// A writer on the data plane (log batches, images): like `RunWriter`, except that
/// access and job tokens are trusted on their signature alone (`Plane`).
#[derive(Debug, Clone)]
pub struct DataWriter(pub Caller);

impl FromRequestParts<AppState> for DataWriter {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> ApiResult<Self> {
        let caller = caller(parts, state, Plane::Data).await?;
        check_job_scope(parts, state, &caller).await?;
        caller.require(Role::Member)?;
        Ok(Self(caller))
    }
}

/// The caller of a data-plane request checked again as the control plane checks it,
/// against the grant its credential derives from (no second rate-limit count): for
/// what such a route does beyond logging, such as Neptune's client creating a run.
pub async fn on_control_plane(state: &AppState, headers: &HeaderMap) -> ApiResult<Caller> {
    let bearer = credential(headers)?;
    let caller =
        authentication::resolve(&state.store, &state.keyring, &bearer, Plane::Control).await?;
    caller.require(Role::Member)?;
    Ok(caller)
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
