//! Password guessing, slowed to a crawl. Every password attempt (a log-in, or an invite
//! accepted with a token) is counted before the password is checked, in three scopes:
//!
//! - the account from one client address: after 5 failures, each further attempt waits
//!   1, 2, 4, ... seconds after the last, up to 15 minutes;
//! - the account from any address: after 10, up to one minute;
//! - the address, whatever the account (password spraying): after 30, up to 15 minutes.
//!
//! A success takes its own attempt back and clears the account-and-address count. So a
//! guesser bound to a few addresses is soon down to a guess per 15 minutes, and one with
//! many addresses to a guess a minute per account; while a real user at another address
//! waits at most that minute between tries, never the 15 minutes. IPv6 addresses count
//! by their /64, what one host is usually given.
//!
//! The counts live in the key-value store (global items `~login#...` that expire a day
//! after the last attempt), so they hold across Lambda instances and restarts; each is
//! changed by a write conditional on its version, so concurrent attempts cannot all
//! pass on one reading of it.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};

use super::CredentialError;
use sextant_storage::kv::{Condition, Key, KvStore, StoreError, Value};

type Result<T, E = CredentialError> = std::result::Result<T, E>;
use sextant_storage::records::{TTL, VERSION, doc_item, read_doc, unchanged_since};

/// When attempts of one scope start to wait, and how long they wait at most.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// Failures allowed before any waiting.
    pub free: u32,
    pub max_delay: Duration,
}

pub const ACCOUNT_AND_ADDRESS: Policy = Policy {
    free: 5,
    max_delay: Duration::minutes(15),
};
pub const ACCOUNT: Policy = Policy {
    free: 10,
    max_delay: Duration::minutes(1),
};
pub const ADDRESS: Policy = Policy {
    free: 30,
    max_delay: Duration::minutes(15),
};

/// A count is forgotten this long after its last attempt.
const MEMORY: Duration = Duration::days(1);
/// Writes lost to concurrent attempts before this one is refused as part of a flood.
const CONTENDED_ATTEMPTS: usize = 3;

impl Policy {
    /// How long after the last attempt the next may start, `failures` attempts in.
    pub fn delay(self, failures: u32) -> Duration {
        let Some(over) = failures.checked_sub(self.free) else {
            return Duration::ZERO;
        };
        let seconds = 1_i64.checked_shl(over.min(40)).unwrap_or(i64::MAX);
        Duration::seconds(seconds).min(self.max_delay)
    }
}

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
struct Count {
    failures: u32,
    /// Unix milliseconds of the last attempt.
    last_ms: i64,
}

impl Count {
    /// When (Unix milliseconds), under `policy`, the next attempt may start.
    fn next_allowed_ms(&self, policy: Policy) -> i64 {
        let delay = policy.delay(self.failures).whole_milliseconds();
        self.last_ms
            .saturating_add(i64::try_from(delay).unwrap_or(i64::MAX))
    }
}

fn unix_ms(at: OffsetDateTime) -> i64 {
    i64::try_from(at.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

/// The /64 of an IPv6 address, the address itself for IPv4.
fn network(client: IpAddr) -> String {
    match client {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => {
            let segments = v6.segments();
            format!(
                "{:x}:{:x}:{:x}:{:x}::/64",
                segments[0], segments[1], segments[2], segments[3]
            )
        }
    }
}

fn scope_key(scope: &str) -> Key {
    Key::new(format!("~login#{scope}"), "_")
}

/// The scopes an attempt counts in: by account and address, by account, by address.
fn scopes(account: Option<&str>, client: IpAddr) -> Vec<(Key, Policy)> {
    let network = network(client);
    let mut scopes = vec![(scope_key(&format!("address#{network}")), ADDRESS)];
    if let Some(account) = account {
        let account: String = account.trim().to_lowercase().chars().take(254).collect();
        scopes.push((scope_key(&format!("account#{account}")), ACCOUNT));
        scopes.push((
            scope_key(&format!("pair#{account}#{network}")),
            ACCOUNT_AND_ADDRESS,
        ));
    }
    scopes
}

async fn read(kv: &dyn KvStore, key: &Key) -> Result<(Count, Option<i64>)> {
    Ok(match kv.get(key).await? {
        Some(item) => (read_doc(&item)?, item.n(VERSION)),
        None => (Count::default(), None),
    })
}

fn too_many(wait_ms: i64) -> CredentialError {
    let secs = u64::try_from(wait_ms).unwrap_or(0).div_ceil(1000).max(1);
    CredentialError::BackingOff { secs }
}

/// Writes `count` over the version read; false when another attempt wrote first.
async fn replace(kv: &dyn KvStore, key: &Key, count: Count, version: Option<i64>) -> Result<bool> {
    let item = doc_item(key.clone(), &count)?
        .with(VERSION, Value::N(version.map_or(1, |v| v + 1)))
        .with(TTL, Value::N(count.last_ms / 1000 + MEMORY.whole_seconds()));
    match kv.put(item, unchanged_since(version)).await {
        Ok(()) => Ok(true),
        Err(StoreError::ConditionFailed) => Ok(false),
        Err(err) => Err(err.into()),
    }
}

/// An attempt let through and counted as a failure until it says it succeeded.
#[derive(Debug)]
#[must_use = "a successful attempt must say so, or it counts as a failure"]
pub struct Admitted {
    scopes: Vec<(Key, Policy)>,
}

/// Lets an attempt at `account` (or, for an invite, at no account) from `client`
/// through, counting it; or refuses it with 429 `rate_limited` and `Retry-After` while
/// any of its scopes must still wait.
pub async fn admit(
    kv: &dyn KvStore,
    now: OffsetDateTime,
    account: Option<&str>,
    client: IpAddr,
) -> Result<Admitted> {
    let now = unix_ms(now);
    let scopes = scopes(account, client);
    let counts = futures::future::try_join_all(scopes.iter().map(|(key, _)| read(kv, key))).await?;
    let wait = scopes
        .iter()
        .zip(&counts)
        .map(|((_, policy), (count, _))| count.next_allowed_ms(*policy) - now)
        .max()
        .unwrap_or(0);
    if wait > 0 {
        return Err(too_many(wait));
    }
    for ((key, policy), (mut count, mut version)) in scopes.iter().zip(counts) {
        let mut contended = 0;
        loop {
            let wait = count.next_allowed_ms(*policy) - now;
            if wait > 0 {
                return Err(too_many(wait));
            }
            let counted = Count {
                failures: count.failures.saturating_add(1),
                last_ms: now,
            };
            if replace(kv, key, counted, version).await? {
                break;
            }
            contended += 1;
            if contended == CONTENDED_ATTEMPTS {
                return Err(too_many(1_000));
            }
            (count, version) = read(kv, key).await?;
        }
    }
    Ok(Admitted { scopes })
}

impl Admitted {
    /// The attempt succeeded: it is taken back, and the account's count from this
    /// address starts over. Best effort: a count left one high only shortens its
    /// allowance by one.
    pub async fn succeeded(self, kv: &dyn KvStore) {
        for (key, policy) in &self.scopes {
            let outcome = if *policy == ACCOUNT_AND_ADDRESS {
                kv.delete(key, Condition::None)
                    .await
                    .map_err(CredentialError::from)
            } else {
                match read(kv, key).await {
                    Ok((count, version @ Some(_))) => {
                        let released = Count {
                            failures: count.failures.saturating_sub(1),
                            ..count
                        };
                        replace(kv, key, released, version).await.map(|_| ())
                    }
                    Ok((_, None)) => Ok(()),
                    Err(err) => Err(err),
                }
            };
            if let Err(err) = outcome {
                tracing::warn!(error = %err, "could not take back a successful attempt");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attempts_wait_only_past_the_free_ones_doubling_up_to_the_cap() {
        let delays: Vec<i64> = (0..=16)
            .map(|failures| ACCOUNT_AND_ADDRESS.delay(failures).whole_seconds())
            .collect();
        assert_eq!(
            delays,
            [
                0, 0, 0, 0, 0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 900, 900
            ]
        );
        assert_eq!(ACCOUNT.delay(10), Duration::seconds(1));
        assert_eq!(ACCOUNT.delay(u32::MAX), Duration::minutes(1));
        assert_eq!(ADDRESS.delay(29), Duration::ZERO);
    }

    #[test]
    fn an_ipv6_client_counts_by_its_slash_64() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::9".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(network(a), network(b));
        assert_ne!(network(a), network(c));
        assert_eq!(network("192.0.2.1".parse().unwrap()), "192.0.2.1");
    }

    #[test]
    fn accounts_are_counted_whatever_the_case_of_their_address() {
        let client: IpAddr = "192.0.2.1".parse().unwrap();
        assert_eq!(
            scopes(Some(" Ada@Example.com"), client),
            scopes(Some("ada@example.com"), client)
        );
        assert_eq!(scopes(None, client).len(), 1);
    }
}
