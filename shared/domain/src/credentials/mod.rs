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

use crate::error::{Error, Result};
use crate::ids::{ApiKeyId, RunId, UserId};
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
    pub fn require(&self, role: Role) -> Result<()> {
        if self.role >= role {
            Ok(())
        } else {
            Err(Error::forbidden(format!(
                "this needs the {role} role; the credential has {}",
                self.role
            )))
        }
    }
}
