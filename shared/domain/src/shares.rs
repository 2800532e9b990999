//! Shared run URLs: a token that lets anyone holding it read one run (metadata,
//! params, series, text, images, the artifact list, and downloads when allowed)
//! without an account, until it expires or is revoked.
//!
//! Storage, three items written and deleted together in one transaction, each with
//! the TTL attribute set to the expiry so DynamoDB removes them once expired (readers
//! check the expiry themselves; TTL deletion is lazy):
//! - `{tenant}` / `share#{id}`: the share, so it is revoked by id;
//! - `{tenant}#run#{run}` / `share#{id}`: the same, so a run's shares are one query
//!   and go with the run's data when it is deleted;
//! - `~share#{token hash}`: the global lookup that opens it, naming its tenant and
//!   share, which are checked against the tenant's own record on every use.
//!
//! The token (`sxt_share_` and 256 random bits in base64url) is shown once, at
//! creation, and stored only as a SHA-256: no dictionary to attack, so a fast hash is
//! enough.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use time::{Duration, OffsetDateTime};

use crate::credentials::Caller;
use crate::error::{Coded, Error, ErrorCode};
use crate::ids::{RunId, ShareId, TenantId, UserId};
use crate::runs::RunError;
use crate::runs::{self, RunRecord};
use crate::tenancy::Tenant;
use sextant_storage::Store;
use sextant_storage::kv::{Condition, Key, Query, StoreError, TxOp, Value, WriteOp};
use sextant_storage::records::{TTL, doc_item, get_doc, query_docs};

pub const DEFAULT_EXPIRY: Duration = Duration::days(30);
pub const MIN_EXPIRY: Duration = Duration::seconds(60);
pub const MAX_EXPIRY: Duration = Duration::days(365);

const TOKEN_PREFIX: &str = "sxt_share_";
/// 32 random bytes in unpadded base64url.
const TOKEN_SECRET_CHARS: usize = 43;
const SORT_PREFIX: &str = "share#";

/// The secret a share URL carries. Never logged, never stored: only its hash is.
pub struct ShareToken(String);

impl std::fmt::Debug for ShareToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ShareToken(..)")
    }
}

impl ShareToken {
    fn generate() -> Self {
        let bytes: [u8; 32] = rand::random();
        Self(format!("{TOKEN_PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes)))
    }

    /// A token as it arrives in a URL; `None` for anything that cannot be one, which
    /// is then refused without a database read.
    pub fn parse(text: &str) -> Option<Self> {
        let secret = text.strip_prefix(TOKEN_PREFIX)?;
        let well_formed = secret.len() == TOKEN_SECRET_CHARS
            && secret
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        well_formed.then(|| Self(text.to_owned()))
    }

    fn hash(&self) -> String {
        hex::encode(Sha256::digest(self.0.as_bytes()))
    }

    /// The token's text, to hand to the sharer once.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// A share as its team sees it; the token is not part of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Share {
    pub id: ShareId,
    pub run_id: RunId,
    /// Whether the share's holders may download the run's artifacts.
    pub allow_downloads: bool,
    pub created_by: UserId,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
}

impl Share {
    fn is_live(&self, now: OffsetDateTime) -> bool {
        now < self.expires_at
    }
}

/// What the holder of a share URL is told about the share itself.
#[derive(Debug, Clone, Copy, Serialize, utoipa::ToSchema)]
pub struct Terms {
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
    pub allow_downloads: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct ShareRecord {
    #[serde(flatten)]
    share: Share,
    token_hash: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct ShareLookup {
    tenant: TenantId,
    share: ShareId,
}

fn record_key(tenant: &Tenant, id: ShareId) -> Key {
    tenant.key(format!("{SORT_PREFIX}{id}"))
}

fn run_index_key(tenant: &Tenant, run: RunId, id: ShareId) -> Key {
    Key::new(
        runs::data_partition(tenant, run),
        format!("{SORT_PREFIX}{id}"),
    )
}

fn lookup_key(token_hash: &str) -> Key {
    Key::new(format!("~share#{token_hash}"), "_")
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewShare {
    /// Seconds until the share expires: 60 to 365 days' worth, 30 days by default.
    #[schema(minimum = 60, maximum = 31_536_000)]
    pub expires_in: Option<i64>,
    /// Whether the share's holders may download the run's artifacts; `false` by default.
    #[serde(default)]
    pub allow_downloads: bool,
}

/// Why a share is refused.
#[derive(Debug, thiserror::Error)]
pub enum ShareError {
    #[error("share not found")]
    NotFound,
    #[error(
        "expires_in is {} to {} seconds",
        MIN_EXPIRY.whole_seconds(),
        MAX_EXPIRY.whole_seconds()
    )]
    InvalidExpiry,
    #[error(transparent)]
    Run(#[from] RunError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Coded for ShareError {
    fn code(&self) -> ErrorCode {
        match self {
            Self::NotFound => ErrorCode::NotFound,
            Self::InvalidExpiry => ErrorCode::InvalidExpiry,
            Self::Run(err) => err.code(),
            Self::Store(err) => err.code(),
        }
    }

    fn into_error(self) -> Error {
        match self {
            Self::Run(err) => err.into(),
            Self::Store(err) => err.into(),
            other => Error::new(other.code(), other.to_string()),
        }
    }
}

type Result<T, E = ShareError> = std::result::Result<T, E>;

fn check_expiry(expires_in: Option<i64>) -> Result<Duration> {
    let Some(secs) = expires_in else {
        return Ok(DEFAULT_EXPIRY);
    };
    let expiry = Duration::seconds(secs);
    if !(MIN_EXPIRY..=MAX_EXPIRY).contains(&expiry) {
        return Err(ShareError::InvalidExpiry);
    }
    Ok(expiry)
}

/// Shares a run of the caller's team; answers the share and its token, which is
/// shown this once.
pub async fn create(
    store: &Store,
    caller: &Caller,
    run: RunId,
    new: NewShare,
) -> Result<(Share, ShareToken)> {
    let expiry = check_expiry(new.expires_in)?;
    let tenant = &caller.tenant;
    runs::load(store, tenant, run).await?;
    let token = ShareToken::generate();
    let token_hash = token.hash();
    let now = store.now();
    // Whole seconds, so the expiry shown is exactly the one DynamoDB's TTL acts on.
    let expires_at = now + expiry;
    let expires_at = expires_at.replace_nanosecond(0).unwrap_or(expires_at);
    let share = Share {
        id: ShareId::generate(),
        run_id: run,
        allow_downloads: new.allow_downloads,
        created_by: caller.user,
        created_at: now,
        expires_at,
    };
    let record = ShareRecord {
        share: share.clone(),
        token_hash: token_hash.clone(),
    };
    let lookup = ShareLookup {
        tenant: tenant.id(),
        share: share.id,
    };
    let ttl = Value::N(expires_at.unix_timestamp());
    // A run deleted between the load above and this write leaves these items behind
    // until their TTL; they open nothing, since every use loads the run.
    store
        .kv
        .transact(vec![
            TxOp::Put(
                doc_item(record_key(tenant, share.id), &record)?.with(TTL, ttl.clone()),
                Condition::NotExists,
            ),
            TxOp::Put(
                doc_item(run_index_key(tenant, run, share.id), &record)?.with(TTL, ttl.clone()),
                Condition::NotExists,
            ),
            TxOp::Put(
                doc_item(lookup_key(&token_hash), &lookup)?.with(TTL, ttl),
                Condition::NotExists,
            ),
        ])
        .await?;
    tracing::info!(tenant = %tenant.id(), run = %run, share = %share.id, "run shared");
    Ok((share, token))
}

/// A run's shares that have not expired, oldest first.
pub async fn list(store: &Store, tenant: &Tenant, run: RunId) -> Result<Vec<Share>> {
    runs::load(store, tenant, run).await?;
    let records: Vec<ShareRecord> = query_docs(
        &*store.kv,
        Query::partition(runs::data_partition(tenant, run)).prefix(SORT_PREFIX),
    )
    .await?;
    let now = store.now();
    Ok(records
        .into_iter()
        .map(|record| record.share)
        .filter(|share| share.is_live(now))
        .collect())
}

fn deletes(tenant: &Tenant, record: &ShareRecord) -> [Key; 3] {
    [
        record_key(tenant, record.share.id),
        run_index_key(tenant, record.share.run_id, record.share.id),
        lookup_key(&record.token_hash),
    ]
}

/// Revokes a share of the team at once. An expired share is already gone: 404.
pub async fn revoke(store: &Store, tenant: &Tenant, id: ShareId) -> Result<()> {
    let gone = || ShareError::NotFound;
    let record = get_doc::<ShareRecord>(&*store.kv, &record_key(tenant, id))
        .await?
        .filter(|record| record.share.is_live(store.now()))
        .ok_or_else(gone)?;
    let [record_key, index_key, lookup_key] = deletes(tenant, &record);
    let ops = vec![
        TxOp::Delete(record_key, Condition::Exists),
        TxOp::Delete(index_key, Condition::None),
        TxOp::Delete(lookup_key, Condition::None),
    ];
    match store.kv.transact(ops).await {
        Ok(()) => {}
        // A concurrent revocation got there first.
        Err(StoreError::TransactionFailed(_)) => return Err(gone()),
        Err(err) => return Err(err.into()),
    }
    tracing::info!(tenant = %tenant.id(), share = %id, "share revoked");
    Ok(())
}

/// Deletes every share of a run, for deleting the run (whose hidden state already
/// makes them open nothing).
pub async fn delete_all(store: &Store, tenant: &Tenant, run: RunId) -> Result<()> {
    let records: Vec<ShareRecord> = query_docs(
        &*store.kv,
        Query::partition(runs::data_partition(tenant, run)).prefix(SORT_PREFIX),
    )
    .await?;
    if records.is_empty() {
        return Ok(());
    }
    // The run's own copies last: they are how the others are found on a retry.
    let (mut first, mut last) = (Vec::new(), Vec::new());
    for record in &records {
        let [record_key, index_key, lookup_key] = deletes(tenant, record);
        first.extend([WriteOp::Delete(lookup_key), WriteOp::Delete(record_key)]);
        last.push(WriteOp::Delete(index_key));
    }
    store.kv.batch_write(first).await?;
    store.kv.batch_write(last).await?;
    Ok(())
}

/// A run opened by a share token: what the token grants, and nothing else. The
/// tenant is the run's team, vouched for by the token; use it only to read `run`.
#[derive(Debug)]
pub struct SharedRun {
    pub tenant: Tenant,
    pub share: Share,
    pub run: RunRecord,
}

impl SharedRun {
    pub fn terms(&self) -> Terms {
        Terms {
            expires_at: self.share.expires_at,
            allow_downloads: self.share.allow_downloads,
        }
    }
}

/// The live share a token names, with the team that shared it: `None` for a
/// malformed, unknown, revoked or expired token, which readers cannot tell apart.
pub async fn find(store: &Store, token: &str) -> Result<Option<(Tenant, Share)>> {
    let Some(token) = ShareToken::parse(token) else {
        return Ok(None);
    };
    let token_hash = token.hash();
    let Some(lookup) = get_doc::<ShareLookup>(&*store.kv, &lookup_key(&token_hash)).await? else {
        return Ok(None);
    };
    // The lookup names a tenant; the tenant's own record must agree.
    let tenant = Tenant::verified(lookup.tenant);
    Ok(
        get_doc::<ShareRecord>(&*store.kv, &record_key(&tenant, lookup.share))
            .await?
            .filter(|record| bool::from(record.token_hash.as_bytes().ct_eq(token_hash.as_bytes())))
            .filter(|record| record.share.is_live(store.now()))
            .map(|record| (tenant, record.share)),
    )
}

/// The run a live share opens; `None` once the run is deleted.
pub async fn open(store: &Store, tenant: Tenant, share: Share) -> Result<Option<SharedRun>> {
    match runs::load(store, &tenant, share.run_id).await {
        Ok(run) => Ok(Some(SharedRun {
            tenant,
            share,
            run: run.record,
        })),
        Err(RunError::NotFound) => Ok(None),
        Err(err) => Err(err.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_token_parses_back_and_hashes_the_same() {
        let token = ShareToken::generate();
        assert!(token.expose().starts_with(TOKEN_PREFIX));
        let parsed = ShareToken::parse(token.expose()).unwrap();
        assert_eq!(parsed.hash(), token.hash());
        assert_ne!(ShareToken::generate().hash(), token.hash());
    }

    #[test]
    fn malformed_tokens_do_not_parse() {
        let good = ShareToken::generate();
        for bad in [
            String::new(),
            TOKEN_PREFIX.to_owned(),
            good.expose()[1..].to_owned(),
            format!("{}x", good.expose()),
            format!("{}/..", &good.expose()[..good.expose().len() - 3]),
            good.expose().replace(TOKEN_PREFIX, "sxt_key_"),
        ] {
            assert!(ShareToken::parse(&bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn a_token_never_shows_in_debug_output() {
        let token = ShareToken::generate();
        assert!(!format!("{token:?}").contains(&token.expose()[TOKEN_PREFIX.len()..]));
    }

    #[test]
    fn expiry_is_a_minute_to_a_year_and_a_month_by_default() {
        assert_eq!(check_expiry(None).unwrap(), DEFAULT_EXPIRY);
        assert_eq!(check_expiry(Some(60)).unwrap(), Duration::minutes(1));
        assert_eq!(
            check_expiry(Some(365 * 86_400)).unwrap(),
            Duration::days(365)
        );
        for bad in [i64::MIN, -1, 0, 59, 365 * 86_400 + 1, i64::MAX] {
            assert_eq!(
                check_expiry(Some(bad)).unwrap_err().code(),
                ErrorCode::InvalidExpiry
            );
        }
    }
}
