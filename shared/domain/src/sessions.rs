//! The sessions a member is signed in with, so they can see them and end any of them.
//!
//! A session is a signed token (`jwt::Subject::Session`) with a random id (`sid`).
//! Each one also has a record, written when it is issued and expiring with it (TTL):
//! `{tenant}` / `session#{user}#{sid}`: when it was made and last used, from which
//! address and user agent. Ending a session writes a marker that every request checks
//! (`~session#{sid}`, also expiring with the token) and drops the record. Sessions
//! issued before records existed have none: they are not listed, and end with a
//! password reset (`accounts::end_credentials`) or when they expire.
//!
//! Sessions last hours, so when a member was last active outlives them:
//! `{tenant}` / `seen#{user}`, written when a session is issued and whenever its last
//! use is noted, for the members page.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};

use crate::ids::UserId;
use crate::tenancy::Tenant;
use sextant_storage::Store;
use sextant_storage::kv::{Condition, Item, Key, Query, StoreError, StoreResult, Value};
use sextant_storage::records::{TTL, doc_item, get_doc, query_docs};

/// A session's last use is written at most this often, so a busy page costs no write
/// per request.
const TOUCH_EVERY: Duration = Duration::minutes(5);
/// What is kept of a user agent: enough to tell browsers and tools apart.
const MAX_USER_AGENT_CHARS: usize = 200;

/// Where a request that opens a session comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Client {
    pub address: IpAddr,
    pub user_agent: Option<String>,
}

impl From<IpAddr> for Client {
    fn from(address: IpAddr) -> Self {
        Self {
            address,
            user_agent: None,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct SessionRecord {
    sid: u64,
    #[serde(with = "time::serde::rfc3339")]
    created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    last_used_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    expires_at: OffsetDateTime,
    address: IpAddr,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    user_agent: Option<String>,
}

/// One of a member's sessions, as they see it.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct SessionView {
    /// Names the session in `DELETE /v1/sessions/{id}`.
    pub id: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// To within five minutes.
    #[serde(with = "time::serde::rfc3339")]
    pub last_used_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
    #[schema(value_type = String)]
    pub address: IpAddr,
    pub user_agent: Option<String>,
    /// The session this request was made with.
    pub current: bool,
}

/// When a member last used a session, kept after the session is gone.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct LastSeen {
    user: UserId,
    #[serde(with = "time::serde::rfc3339")]
    at: OffsetDateTime,
}

const SEEN_PREFIX: &str = "seen#";

/// Where a member's last activity is kept; removing the member deletes it.
pub(crate) fn seen_key(tenant: &Tenant, user: UserId) -> Key {
    tenant.key(format!("{SEEN_PREFIX}{user}"))
}

async fn note_seen(store: &Store, tenant: &Tenant, user: UserId, at: OffsetDateTime) {
    let noted = async {
        let item = doc_item(seen_key(tenant, user), &LastSeen { user, at })?;
        store.kv.put(item, Condition::None).await
    };
    if let Err(err) = noted.await {
        tracing::warn!(error = %err, "could not note a member's last activity");
    }
}

/// When each member of the team was last active in a session (to within five
/// minutes); members who never signed in are absent.
pub async fn last_active(
    store: &Store,
    tenant: &Tenant,
) -> StoreResult<std::collections::HashMap<UserId, OffsetDateTime>> {
    let seen: Vec<LastSeen> = query_docs(
        &*store.kv,
        Query::partition(tenant.root()).prefix(SEEN_PREFIX),
    )
    .await?;
    Ok(seen.into_iter().map(|seen| (seen.user, seen.at)).collect())
}

fn session_id(sid: u64) -> String {
    format!("{sid:016x}")
}

fn record_prefix(user: UserId) -> String {
    format!("session#{user}#")
}

fn record_key(tenant: &Tenant, user: UserId, sid: u64) -> Key {
    tenant.key(format!("{}{}", record_prefix(user), session_id(sid)))
}

/// Marks a session ended (logged out) until its token would have expired anyway.
pub(crate) fn ended_marker(sid: u64) -> Key {
    Key::new(format!("~session#{sid:016x}"), "_")
}

/// Records a session just issued.
pub(crate) async fn record(
    store: &Store,
    tenant: &Tenant,
    user: UserId,
    sid: u64,
    expires_at: OffsetDateTime,
    client: &Client,
) -> StoreResult<()> {
    let now = store.now();
    let user_agent = client.user_agent.as_deref().map(|agent| {
        agent
            .chars()
            .filter(|c| !c.is_control())
            .take(MAX_USER_AGENT_CHARS)
            .collect()
    });
    let record = SessionRecord {
        sid,
        created_at: now,
        last_used_at: now,
        expires_at,
        address: client.address,
        user_agent,
    };
    let item = doc_item(record_key(tenant, user, sid), &record)?
        .with(TTL, Value::N(expires_at.unix_timestamp()));
    store.kv.put(item, Condition::NotExists).await?;
    note_seen(store, tenant, user, now).await;
    Ok(())
}

/// A session's record as read, to note its use (`note_use`).
#[derive(Debug)]
pub(crate) struct Used {
    tenant: Tenant,
    user: UserId,
    key: Key,
    record: Option<SessionRecord>,
}

/// Reads a session's record, alongside the other reads of a request's authentication.
pub(crate) async fn read(
    store: &Store,
    tenant: &Tenant,
    user: UserId,
    sid: u64,
) -> StoreResult<Used> {
    let key = record_key(tenant, user, sid);
    let record = get_doc::<SessionRecord>(&*store.kv, &key).await?;
    Ok(Used {
        tenant: *tenant,
        user,
        key,
        record,
    })
}

/// Notes that a session was used now, at most every `TOUCH_EVERY`; a failure costs only
/// the note.
pub(crate) async fn note_use(store: &Store, used: Used) {
    let now = store.now();
    let Used {
        tenant,
        user,
        key,
        record: Some(mut record),
    } = used
    else {
        return;
    };
    if now - record.last_used_at < TOUCH_EVERY {
        return;
    }
    record.last_used_at = now;
    let noted = async {
        let item = doc_item(key, &record)?.with(TTL, Value::N(record.expires_at.unix_timestamp()));
        // Only while it exists: a session ended meanwhile stays ended.
        match store.kv.put(item, Condition::Exists).await {
            Err(StoreError::ConditionFailed) => Ok(()),
            other => other,
        }
    };
    let (noted, ()) = futures::join!(noted, note_seen(store, &tenant, user, now));
    if let Err(err) = noted {
        tracing::warn!(error = %err, "could not note a session's last use");
    }
}

/// The member's live sessions, newest first; `current` is the one asking.
pub async fn list(
    store: &Store,
    tenant: &Tenant,
    user: UserId,
    current: Option<u64>,
) -> StoreResult<Vec<SessionView>> {
    let now = store.now();
    let query = Query::partition(tenant.root()).prefix(record_prefix(user));
    let mut records: Vec<SessionRecord> = query_docs(&*store.kv, query).await?;
    // Expired records linger until the table's TTL sweep removes them.
    records.retain(|record| record.expires_at > now);
    records.sort_by_key(|record| std::cmp::Reverse(record.created_at));
    Ok(records
        .into_iter()
        .map(|record| SessionView {
            id: session_id(record.sid),
            created_at: record.created_at,
            last_used_at: record.last_used_at,
            expires_at: record.expires_at,
            address: record.address,
            user_agent: record.user_agent,
            current: Some(record.sid) == current,
        })
        .collect())
}

/// Ends a session by its token's claims: refused from now on, though not expired.
pub(crate) async fn end_sid(
    store: &Store,
    tenant: &Tenant,
    user: UserId,
    sid: u64,
    expires: i64,
) -> StoreResult<()> {
    let marker = Item::new(ended_marker(sid)).with(TTL, Value::N(expires));
    store.kv.put(marker, Condition::None).await?;
    store
        .kv
        .delete(&record_key(tenant, user, sid), Condition::None)
        .await
}

/// Ends one of the member's sessions, named by its `id`; `false` if they have no live
/// session of that id.
pub async fn end(store: &Store, tenant: &Tenant, user: UserId, id: &str) -> StoreResult<bool> {
    let Some(sid) = parse_id(id) else {
        return Ok(false);
    };
    let key = record_key(tenant, user, sid);
    match get_doc::<SessionRecord>(&*store.kv, &key).await? {
        Some(record) if record.expires_at > store.now() => {
            end_sid(store, tenant, user, sid, record.expires_at.unix_timestamp()).await?;
            Ok(true)
        }
        _ => Ok(false),
    }
}

/// Ends every session of the member but `keep`; answers how many ended.
pub async fn end_all(
    store: &Store,
    tenant: &Tenant,
    user: UserId,
    keep: Option<u64>,
) -> StoreResult<usize> {
    let sessions = list(store, tenant, user, keep).await?;
    let mut ended = 0;
    for session in sessions.into_iter().filter(|session| !session.current) {
        if let Some(sid) = parse_id(&session.id) {
            end_sid(
                store,
                tenant,
                user,
                sid,
                session.expires_at.unix_timestamp(),
            )
            .await?;
            ended += 1;
        }
    }
    Ok(ended)
}

fn parse_id(id: &str) -> Option<u64> {
    (id.len() == 16)
        .then(|| u64::from_str_radix(id, 16).ok())
        .flatten()
}
