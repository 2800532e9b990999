//! What a credential is, below the accounts that issue them and the authentication
//! that checks them: API key secrets, signed tokens, password hashing, log-in
//! throttling and roles.

pub mod api_key;
pub mod jwt;
pub mod operator;
pub mod password;
mod role;
pub mod throttle;

pub use role::Role;

use sextant_storage::kv::StoreError;

use crate::error::{Coded, Error, ErrorCode};
use crate::ids::{ApiKeyId, RunId, UserId};
use crate::tenancy::Tenant;

/// Why a credential, or a password, is refused.
#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    #[error("this needs the {needs} role; the credential has {has}")]
    Forbidden { needs: Role, has: Role },
    #[error("passwords need at least {} characters", password::MIN_PASSWORD_CHARS)]
    WeakPassword,
    #[error("passwords are at most {} bytes", password::MAX_PASSWORD_BYTES)]
    PasswordTooLong,
    #[error("too many password attempts at once from this address; retry in 1 s")]
    TooManyAtOnce,
    #[error("too many failed attempts; retry in {secs} s")]
    BackingOff { secs: u64 },
    #[error("every password check slot is taken; retry shortly")]
    HashersBusy,
    /// Hashing or checking a password failed: a failure of ours.
    #[error("{0:#}")]
    Hashing(anyhow::Error),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Coded for CredentialError {
    fn code(&self) -> ErrorCode {
        match self {
            Self::Forbidden { .. } => ErrorCode::Forbidden,
            Self::WeakPassword => ErrorCode::WeakPassword,
            Self::PasswordTooLong => ErrorCode::InvalidPassword,
            Self::TooManyAtOnce | Self::BackingOff { .. } => ErrorCode::RateLimited,
            Self::HashersBusy => ErrorCode::Unavailable,
            Self::Hashing(_) => ErrorCode::Internal,
            Self::Store(err) => err.code(),
        }
    }

    fn into_error(self) -> Error {
        match self {
            Self::TooManyAtOnce => Error::rate_limited(self.to_string(), 1),
            Self::BackingOff { secs } => Error::rate_limited(self.to_string(), secs),
            Self::HashersBusy => Error::busy(self.to_string()),
            Self::Hashing(cause) => Error::internal(cause),
            Self::Store(err) => err.into(),
            other => Error::new(other.code(), other.to_string()),
        }
    }
}

/// The credential a request was authenticated with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Credential {
    /// A session token from sign-up, log-in or an accepted invite; `sid` names it
    /// (`sessions`), absent in tokens from before sessions had ids.
    Session { sid: Option<u64> },
    /// An API key sent as is.
    ApiKey(ApiKeyId),
    /// An access token exchanged for an API key.
    AccessToken(ApiKeyId),
    /// The credential an agent hands the command of the job of `run`, claimed with
    /// API key `key`.
    Job { run: RunId, key: ApiKeyId },
}

/// Which side of the service a request is on. Tokens whose claims say so are trusted
/// on their signature alone on the data plane (`jwt::Scope`); on the control plane
/// every credential is checked against the grant it derives from, so a revoke, a
/// removal or a role change bites at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plane {
    Control,
    Data,
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
    pub fn require(&self, role: Role) -> Result<(), CredentialError> {
        if self.role >= role {
            Ok(())
        } else {
            Err(CredentialError::Forbidden {
                needs: role,
                has: self.role,
            })
        }
    }
}
