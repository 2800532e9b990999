//! Request rates per team and per credential, so that one team (or one runaway script
//! with one key) cannot starve the others or run up the bill (OWASP API4).
//!
//! Every authenticated request takes a token from its team's bucket and from its
//! credential's; an empty bucket is a 429 `rate_limited` with `Retry-After`. Buckets
//! refill continuously at the configured rate per minute and hold at most the burst.
//! They live in the process: `sextant serve` enforces the limits exactly, while on
//! Lambda each instance keeps its own buckets, so a team's ceiling there is the limit
//! times the instances serving it (which the functions' reserved concurrency bounds),
//! and API Gateway's stage throttling caps the whole deployment.

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Context;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};

use sextant_domain::credentials::Credential;
use sextant_domain::error::Error;
use sextant_domain::ids::TenantId;

/// Checks between sweeps of buckets that have refilled, which keeps memory bounded by
/// the teams and keys active lately.
const SWEEP_EVERY: u64 = 4_096;

/// One limit: a sustained rate and the burst above it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    pub per_minute: NonZeroU32,
    pub burst: NonZeroU32,
}

impl Limit {
    fn quota(self) -> Quota {
        Quota::per_minute(self.per_minute).allow_burst(self.burst)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimits {
    pub team: Limit,
    pub credential: Limit,
    /// Requests without a credential (shared links), by the client address they come
    /// from; a shared link's requests also take from the link's own bucket (the
    /// credential limit) and from the team's that shared it.
    pub address: Limit,
}

impl Default for RateLimits {
    /// 100 requests a second per team and 50 per key, sustained; SDKs send a batch a
    /// second or so per run, so this is dozens of concurrent runs per key.
    fn default() -> Self {
        let limit = |per_minute: u32, burst: u32| Limit {
            per_minute: NonZeroU32::new(per_minute).unwrap_or(NonZeroU32::MIN),
            burst: NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN),
        };
        Self {
            team: limit(6_000, 300),
            credential: limit(3_000, 150),
            address: limit(1_200, 120),
        }
    }
}

impl RateLimits {
    /// The defaults, overridden by `SEXTANT_RATE_{TEAM,KEY,ADDRESS}_{PER_MINUTE,BURST}`.
    pub fn from_env() -> anyhow::Result<Self> {
        Self::from_vars(|name| std::env::var(name).ok())
    }

    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> anyhow::Result<Self> {
        let defaults = Self::default();
        let read = |name: &str, default: NonZeroU32| -> anyhow::Result<NonZeroU32> {
            let name = format!("SEXTANT_RATE_{name}");
            match var(&name) {
                None => Ok(default),
                Some(text) => text
                    .parse()
                    .with_context(|| format!("{name} is not a positive whole number")),
            }
        };
        Ok(Self {
            team: Limit {
                per_minute: read("TEAM_PER_MINUTE", defaults.team.per_minute)?,
                burst: read("TEAM_BURST", defaults.team.burst)?,
            },
            credential: Limit {
                per_minute: read("KEY_PER_MINUTE", defaults.credential.per_minute)?,
                burst: read("KEY_BURST", defaults.credential.burst)?,
            },
            address: Limit {
                per_minute: read("ADDRESS_PER_MINUTE", defaults.address.per_minute)?,
                burst: read("ADDRESS_BURST", defaults.address.burst)?,
            },
        })
    }
}

/// The buckets of every team and credential this process has seen lately.
#[derive(Debug)]
pub struct RateLimiter {
    teams: DefaultKeyedRateLimiter<TenantId>,
    credentials: DefaultKeyedRateLimiter<String>,
    addresses: DefaultKeyedRateLimiter<std::net::IpAddr>,
    checks: AtomicU64,
    clock: DefaultClock,
}

impl RateLimiter {
    pub fn new(limits: RateLimits) -> Self {
        Self {
            teams: DefaultKeyedRateLimiter::keyed(limits.team.quota()),
            credentials: DefaultKeyedRateLimiter::keyed(limits.credential.quota()),
            addresses: DefaultKeyedRateLimiter::keyed(limits.address.quota()),
            checks: AtomicU64::new(0),
            clock: DefaultClock::default(),
        }
    }

    /// Takes a token for the request from its credential's bucket and its team's.
    pub fn check(&self, tenant: TenantId, credential: &Credential) -> Result<(), Error> {
        if self.checks.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1 {
            self.teams.retain_recent();
            self.credentials.retain_recent();
            self.addresses.retain_recent();
        }
        let credential_key = match credential {
            Credential::ApiKey(id)
            | Credential::AccessToken(id)
            | Credential::Job { key: id, .. } => id.to_string(),
            // Sessions share their member's browser; the team's bucket bounds them.
            Credential::Session { .. } => format!("session#{tenant}"),
        };
        if let Err(not_until) = self.credentials.check_key(&credential_key) {
            return Err(self.refusal("API key", not_until.wait_time_from(self.clock.now())));
        }
        if let Err(not_until) = self.teams.check_key(&tenant) {
            return Err(self.refusal("team", not_until.wait_time_from(self.clock.now())));
        }
        Ok(())
    }

    /// Takes a token for a request without a credential from its client address's
    /// bucket: before anything is read for it.
    pub fn check_address(&self, client: std::net::IpAddr) -> Result<(), Error> {
        self.addresses.check_key(&client).map_err(|not_until| {
            self.refusal("address", not_until.wait_time_from(self.clock.now()))
        })
    }

    /// Takes a token for a request through shared link `share` of team `tenant`, from
    /// the link's bucket and the team's: the team that shared pays for its readers.
    pub fn check_share(&self, tenant: TenantId, share: &str) -> Result<(), Error> {
        if let Err(not_until) = self.credentials.check_key(&format!("share#{share}")) {
            return Err(self.refusal("shared link", not_until.wait_time_from(self.clock.now())));
        }
        if let Err(not_until) = self.teams.check_key(&tenant) {
            return Err(self.refusal("team", not_until.wait_time_from(self.clock.now())));
        }
        Ok(())
    }

    fn refusal(&self, scope: &str, wait: std::time::Duration) -> Error {
        let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        Error::rate_limited(
            format!("too many requests for this {scope}; retry in {secs} s"),
            secs.max(1),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sextant_domain::error::ErrorCode;
    use sextant_domain::ids::ApiKeyId;

    fn limits(per_minute: u32, burst: u32) -> RateLimits {
        let limit = Limit {
            per_minute: NonZeroU32::new(per_minute).unwrap(),
            burst: NonZeroU32::new(burst).unwrap(),
        };
        RateLimits {
            team: limit,
            credential: limit,
            address: limit,
        }
    }

    #[test]
    fn a_key_past_its_burst_is_refused_with_a_wait_and_other_keys_are_not() {
        let limiter = RateLimiter::new(limits(6, 3));
        let tenant = TenantId::generate();
        let (a, b) = (
            Credential::ApiKey(ApiKeyId::generate()),
            Credential::ApiKey(ApiKeyId::generate()),
        );
        for _ in 0..3 {
            limiter.check(tenant, &a).expect("within the burst");
        }
        let refused = limiter.check(tenant, &a).expect_err("past the burst");
        assert_eq!(refused.code(), ErrorCode::RateLimited);
        assert_eq!(refused.retry_after_secs().map(|secs| secs > 0), Some(true));
        assert!(refused.message().contains("API key"), "{refused}");
        // The team still had tokens; a second key of another team is untouched.
        limiter
            .check(TenantId::generate(), &b)
            .expect("another team's key");
    }

    #[test]
    fn a_team_is_limited_across_all_its_keys() {
        let limiter = RateLimiter::new(RateLimits {
            team: limits(6, 2).team,
            ..limits(6, 100)
        });
        let tenant = TenantId::generate();
        for _ in 0..2 {
            let key = Credential::ApiKey(ApiKeyId::generate());
            limiter
                .check(tenant, &key)
                .expect("within the team's burst");
        }
        let refused = limiter
            .check(tenant, &Credential::ApiKey(ApiKeyId::generate()))
            .expect_err("past the team's burst");
        assert!(refused.message().contains("team"), "{refused}");
    }

    #[test]
    fn limits_come_from_the_environment_or_default() {
        let vars = |name: &str| (name == "SEXTANT_RATE_KEY_BURST").then(|| "7".to_owned());
        let limits = RateLimits::from_vars(vars).expect("valid");
        assert_eq!(limits.credential.burst.get(), 7);
        assert_eq!(limits.team, RateLimits::default().team);
        assert!(RateLimits::from_vars(|_| Some("0".into())).is_err());
        assert!(RateLimits::from_vars(|_| Some("lots".into())).is_err());
    }
}
