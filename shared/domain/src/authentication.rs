//! Authentication: a bearer credential resolved to a `Caller` against the accounts as
//! they are now, and the tokens derived from an API key. The accounts module keeps the
//! records; this one decides what a credential may do. The HTTP edge reads the
//! credential from the request and counts it against the rate limits.

use futures::TryFutureExt;
use time::OffsetDateTime;

use crate::accounts;
use crate::accounts::AccountError;
use crate::credentials::Caller;
use crate::credentials::api_key::ApiKeySecret;
use crate::credentials::jwt::{Keyring, Scope, Subject};
use crate::credentials::{Credential, Plane, Role};
use crate::error::{Coded, Error, ErrorCode};
use crate::ids::{ApiKeyId, RunId};
use crate::queue::QueueError;
use crate::tenancy::Tenant;
use sextant_storage::Store;
use sextant_storage::kv::StoreError;

/// Why a credential is refused, or a token cannot be made from it.
#[derive(Debug, thiserror::Error)]
pub enum AuthenticationError {
    /// Unknown, expired, revoked, or its member removed: all answer alike.
    #[error("invalid or expired credential")]
    Invalid,
    #[error("only an API key can be exchanged for a token")]
    NotAnApiKey,
    #[error("agents claim jobs with an API key")]
    AgentWithoutApiKey,
    /// Signing a token failed: a failure of ours.
    #[error("signing a token: {0}")]
    Signing(#[from] jsonwebtoken::errors::Error),
    #[error(transparent)]
    Account(#[from] AccountError),
    #[error(transparent)]
    Queue(#[from] QueueError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Coded for AuthenticationError {
    fn code(&self) -> ErrorCode {
        match self {
            Self::Invalid => ErrorCode::Unauthorized,
            Self::NotAnApiKey | Self::AgentWithoutApiKey => ErrorCode::ApiKeyRequired,
            Self::Signing(_) => ErrorCode::Internal,
            Self::Account(err) => err.code(),
            Self::Queue(err) => err.code(),
            Self::Store(err) => err.code(),
        }
    }

    fn into_error(self) -> Error {
        match self {
            Self::Signing(_) => Error::internal(self),
            Self::Account(err) => err.into(),
            Self::Queue(err) => err.into(),
            Self::Store(err) => err.into(),
            other => Error::new(other.code(), other.to_string()),
        }
    }
}

type Result<T, E = AuthenticationError> = std::result::Result<T, E>;

fn unauthorized() -> AuthenticationError {
    AuthenticationError::Invalid
}

/// Resolves a bearer credential (API key, access token, job token or session token) to
/// a caller on `plane`.
pub async fn resolve(
    store: &Store,
    keyring: &Keyring,
    bearer: &str,
    plane: Plane,
) -> Result<Caller> {
    if ApiKeySecret::looks_like_key(bearer) {
        let secret = ApiKeySecret::parse(bearer).ok_or_else(unauthorized)?;
        let (tenant, user, role) = accounts::key_holder(store, &secret)
            .await?
            .ok_or_else(unauthorized)?;
        return Ok(Caller {
            tenant,
            user,
            role,
            credential: Credential::ApiKey(secret.id),
        });
    }
    let claims = keyring.verify(bearer).ok_or_else(unauthorized)?;
    let tenant = Tenant::verified(claims.tid);
    let on_signature_alone = plane == Plane::Data && claims.scope == Some(Scope::Data);
    match claims.subject {
        Subject::Session { user, sid } => {
            let member = accounts::session_member(store, &tenant, user, sid, claims.iat)
                .await?
                .ok_or_else(unauthorized)?;
            Ok(Caller {
                tenant,
                user: member.id,
                role: member.role,
                credential: Credential::Session { sid },
            })
        }
        Subject::Access { key, owner } => {
            let role = if on_signature_alone {
                claims.role
            } else {
                live_role(store, &tenant, key, claims.role, claims.iat).await?
            };
            Ok(Caller {
                tenant,
                user: owner,
                role,
                credential: Credential::AccessToken(key),
            })
        }
        // A refresh token only buys tokens (`refresh`); it opens nothing itself.
        Subject::Refresh { .. } => Err(unauthorized()),
        Subject::Job {
            key,
            owner,
            run,
            attempt,
        } => {
            let role = if on_signature_alone {
                claims.role
            } else {
                let (role, holds) = futures::try_join!(
                    live_role(store, &tenant, key, claims.role, claims.iat),
                    crate::queue::claim_holds(store, &tenant, run, attempt).err_into(),
                )?;
                if !holds {
                    return Err(unauthorized());
                }
                role
            };
            Ok(Caller {
                tenant,
                user: owner,
                role,
                credential: Credential::Job { run, key },
            })
        }
    }
}

/// The role a token derived from API key `key`, issued at `iat`, has now: no more than
/// it was minted with, its key's, or its member's. 401 once the key is revoked, its
/// member removed, or its member's password reset since.
async fn live_role(
    store: &Store,
    tenant: &Tenant,
    key: ApiKeyId,
    minted: Role,
    iat: i64,
) -> Result<Role> {
    let now = accounts::key_role(store, tenant, key, iat)
        .await?
        .ok_or_else(unauthorized)?;
    Ok(minted.min(now))
}

/// Trades an API key for a short-lived access token that authenticates without a
/// database read on the data plane. Only the key itself may be exchanged, so a token
/// cannot renew itself past its key's revocation.
pub fn exchange_api_key(
    keyring: &Keyring,
    ttl: time::Duration,
    caller: &Caller,
) -> Result<(String, OffsetDateTime)> {
    let Credential::ApiKey(key) = caller.credential else {
        return Err(AuthenticationError::NotAnApiKey);
    };
    keyring
        .issue(
            caller.tenant.id(),
            caller.role,
            Subject::Access {
                key,
                owner: caller.user,
            },
            ttl,
        )
        .map_err(AuthenticationError::Signing)
}

/// An access token with the refresh token that renews it: what Neptune's client gets
/// for the API key in its `NEPTUNE_API_TOKEN`, and again each time it refreshes.
#[derive(Debug, Clone)]
pub struct TokenPair {
    pub access: String,
    pub access_expires: OffsetDateTime,
    pub refresh: String,
}

/// How long a refresh token lasts: a training run may go quiet for days between
/// logging; past this its client exchanges the API key again.
pub const REFRESH_TOKEN_TTL: time::Duration = time::Duration::days(30);

/// Trades an API key (only the key itself) for an access token, as `exchange_api_key`,
/// and a refresh token bound to the same key.
pub fn exchange_for_pair(
    keyring: &Keyring,
    access_ttl: time::Duration,
    caller: &Caller,
) -> Result<TokenPair> {
    let (access, access_expires) = exchange_api_key(keyring, access_ttl, caller)?;
    let Credential::ApiKey(key) = caller.credential else {
        return Err(AuthenticationError::NotAnApiKey);
    };
    let (refresh, _) = keyring.issue(
        caller.tenant.id(),
        caller.role,
        Subject::Refresh {
            key,
            owner: caller.user,
        },
        REFRESH_TOKEN_TTL,
    )?;
    Ok(TokenPair {
        access,
        access_expires,
        refresh,
    })
}

/// Trades a refresh token for a new pair, while its key holds: revoked, its member
/// removed or its member's password reset since, and it is refused as the key would
/// be. The new tokens carry the role the key and member have now.
pub async fn refresh(
    store: &Store,
    keyring: &Keyring,
    access_ttl: time::Duration,
    refresh_token: &str,
) -> Result<TokenPair> {
    let claims = keyring.verify(refresh_token).ok_or_else(unauthorized)?;
    let Subject::Refresh { key, owner } = claims.subject else {
        return Err(unauthorized());
    };
    let tenant = Tenant::verified(claims.tid);
    let role = live_role(store, &tenant, key, claims.role, claims.iat).await?;
    let caller = Caller {
        tenant,
        user: owner,
        role,
        credential: Credential::ApiKey(key),
    };
    exchange_for_pair(keyring, access_ttl, &caller)
}

/// The API key an agent claims jobs with (sent as is, or exchanged for a token): its
/// jobs' credentials derive from it and die with it.
pub fn agent_key(caller: &Caller) -> Result<ApiKeyId> {
    match caller.credential {
        Credential::ApiKey(key) | Credential::AccessToken(key) => Ok(key),
        Credential::Session { .. } | Credential::Job { .. } => {
            Err(AuthenticationError::AgentWithoutApiKey)
        }
    }
}

/// A credential for the command of a job that `caller` claimed with API key `key`
/// (`agent_key`): good only for the job's run, and only while that claim holds the job.
pub fn job_token(
    keyring: &Keyring,
    ttl: time::Duration,
    caller: &Caller,
    key: ApiKeyId,
    run: RunId,
    attempt: u32,
) -> Result<(String, OffsetDateTime)> {
    keyring
        .issue(
            caller.tenant.id(),
            caller.role.min(Role::Member),
            Subject::Job {
                key,
                owner: caller.user,
                run,
                attempt,
            },
            ttl,
        )
        .map_err(AuthenticationError::Signing)
}
