//! Mailed links that prove an address: verifying it after sign-up, and setting a new
//! password after forgetting one. And changing a password one knows.
//!
//! A link carries a random token; only its hash is stored, as `~link#{hash}` / `_`
//! with what the link is for, whose it is, and when it expires (the table's TTL removes
//! it later; readers check the time themselves). Using a link deletes it in the
//! transaction that does what it is for, on condition that it is still there, so it
//! works once however often it is opened.

use std::net::IpAddr;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};

use super::{
    AccountError, Email, EmailRecord, Result, UserRecord, email_lookup, hash_token, team_name,
    user_sk,
};
use crate::credentials::jwt::{Keyring, Subject};
use crate::credentials::password::{self, Password};
use crate::credentials::throttle;
use crate::ids::{TenantId, UserId};
use crate::postman::{self, Postman};
use crate::sessions;
use crate::tenancy::Tenant;
use sextant_storage::Store;
use sextant_storage::kv::{Condition, Item, Key, StoreError, TxOp, Value};
use sextant_storage::records::{TTL, doc_item, get_doc, read_doc, unchanged_doc};

/// A verification link outlives the address's hold: opened late, it still proves the
/// address if no one took it meanwhile.
pub const VERIFY_LINK_TTL: Duration = Duration::days(7);
/// Under an hour, as a password reset link should be.
pub const RESET_LINK_TTL: Duration = Duration::minutes(30);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Purpose {
    VerifyEmail,
    ResetPassword,
}

impl Purpose {
    /// The page the link opens.
    fn page(self) -> &'static str {
        match self {
            Purpose::VerifyEmail => "verify",
            Purpose::ResetPassword => "reset",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct LinkRecord {
    purpose: Purpose,
    tenant: TenantId,
    user: UserId,
    email: Email,
    #[serde(with = "time::serde::rfc3339")]
    expires_at: OffsetDateTime,
}

fn link_key(token: &str) -> Key {
    Key::new(format!("~link#{}", hash_token(token)), "_")
}

/// The address of `page` under the service's public base URL (which may carry a
/// path, such as an API Gateway stage), with `token` in its query.
fn page_url(base: &url::Url, page: &str, token: &str) -> url::Url {
    let mut url = base.clone();
    let path = format!("{}/{page}", base.path().trim_end_matches('/'));
    url.set_path(&path);
    url.set_query(None);
    url.query_pairs_mut().append_pair("token", token);
    url
}

/// Stores a new link for `user` and answers its URL.
async fn new_link(
    store: &Store,
    purpose: Purpose,
    tenant: &Tenant,
    user: &UserRecord,
    ttl: Duration,
    base: &url::Url,
) -> Result<url::Url> {
    let token = URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>());
    let expires_at = store.now() + ttl;
    let record = LinkRecord {
        purpose,
        tenant: tenant.id(),
        user: user.member.id,
        email: user.member.email.clone(),
        expires_at,
    };
    let item =
        doc_item(link_key(&token), &record)?.with(TTL, Value::N(expires_at.unix_timestamp()));
    store.kv.put(item, Condition::NotExists).await?;
    Ok(page_url(base, purpose.page(), &token))
}

/// The live link `token` names, if it is one for `purpose`.
async fn open_link(store: &Store, token: &str, purpose: Purpose) -> Result<(Key, LinkRecord)> {
    let key = link_key(token);
    match get_doc::<LinkRecord>(&*store.kv, &key).await? {
        Some(link) if link.purpose == purpose && link.expires_at > store.now() => Ok((key, link)),
        _ => Err(AccountError::InvalidLink),
    }
}

/// A member's record as stored, to rewrite on condition that it is unchanged.
async fn user_item(store: &Store, tenant: &Tenant, user: UserId) -> Result<(Item, UserRecord)> {
    let item = store
        .kv
        .get(&tenant.key(user_sk(user)))
        .await?
        .ok_or(AccountError::MemberNotFound)?;
    let record = read_doc(&item)?;
    Ok((item, record))
}

/// The address lookup as stored, if it still names `user`.
async fn own_lookup(
    store: &Store,
    email: &Email,
    user: UserId,
) -> Result<Option<(Item, EmailRecord)>> {
    let Some(item) = store.kv.get(&email_lookup(email)).await? else {
        return Ok(None);
    };
    let lookup: EmailRecord = read_doc(&item)?;
    Ok((lookup.user == user).then_some((item, lookup)))
}

/// The writes that make `user`'s address verified: their record, and the lookup (still
/// theirs as read) with its hold lifted.
fn verified_writes(
    user_item: &Item,
    mut user: UserRecord,
    tenant: &Tenant,
    lookup: (Item, EmailRecord),
) -> Result<[TxOp; 2]> {
    user.email_verified = true;
    let (lookup_item, mut record) = lookup;
    record.verified = true;
    record.held_until = None;
    Ok([
        TxOp::Put(
            doc_item(tenant.key(user_sk(user.member.id)), &user)?,
            unchanged_doc(user_item),
        ),
        TxOp::Put(
            doc_item(email_lookup(&user.member.email), &record)?,
            unchanged_doc(&lookup_item),
        ),
    ])
}

/// Applies `ops`, a link's use first: a link used meanwhile is refused, any other
/// condition that failed means the member changed meanwhile.
async fn use_link(store: &Store, ops: Vec<TxOp>) -> Result<()> {
    match store.kv.transact(ops).await {
        Ok(()) => Ok(()),
        Err(StoreError::TransactionFailed(failed)) if failed.contains(&0) => {
            Err(AccountError::InvalidLink)
        }
        Err(StoreError::TransactionFailed(_)) => Err(AccountError::ConcurrentUpdate),
        Err(err) => Err(err.into()),
    }
}

/// Mails the member a link that verifies their address, unless it is verified already.
/// An address another sign-up took (`EmailStatus::Released`) can no longer be theirs.
pub async fn start_verification(
    store: &Store,
    postman: &Postman,
    base: &url::Url,
    tenant: &Tenant,
    user: UserId,
) -> Result<()> {
    let (_, record) = user_item(store, tenant, user).await?;
    if record.email_verified {
        return Ok(());
    }
    let lookup = own_lookup(store, &record.member.email, user)
        .await?
        .ok_or(AccountError::EmailReleased)?;
    if lookup.1.verified {
        return Ok(());
    }
    let link = new_link(
        store,
        Purpose::VerifyEmail,
        tenant,
        &record,
        VERIFY_LINK_TTL,
        base,
    )
    .await?;
    let team = team_name(store, tenant).await?.unwrap_or_default();
    let letter = postman::verify_email(
        record.member.email.as_str(),
        &team,
        &link,
        lookup.1.held_until,
        store.now(),
    );
    postman.deliver(letter).await;
    Ok(())
}

/// Mails the verification link to the member whose session `token` was just issued
/// (by a sign-up); the token is what vouches for the team.
pub async fn welcome(
    store: &Store,
    keyring: &Keyring,
    postman: &Postman,
    base: &url::Url,
    token: &str,
) -> Result<()> {
    let claims = keyring.verify(token).ok_or(AccountError::MemberNotFound)?;
    let Subject::Session { user, .. } = claims.subject else {
        return Err(AccountError::MemberNotFound);
    };
    start_verification(store, postman, base, &Tenant::verified(claims.tid), user).await
}

/// Verifies the address a mailed link was sent to; answers it. The link works once,
/// and only while the address is still the member's.
pub async fn verify_email(store: &Store, token: &str) -> Result<Email> {
    let (link_key, link) = open_link(store, token, Purpose::VerifyEmail).await?;
    let tenant = Tenant::verified(link.tenant);
    let (item, user) = user_item(store, &tenant, link.user).await?;
    if user.member.email != link.email {
        return Err(AccountError::InvalidLink);
    }
    let lookup = own_lookup(store, &user.member.email, link.user)
        .await?
        .ok_or(AccountError::EmailReleased)?;
    let mut ops = vec![TxOp::Delete(link_key, Condition::Exists)];
    ops.extend(verified_writes(&item, user, &tenant, lookup)?);
    use_link(store, ops).await?;
    tracing::info!(tenant = %tenant.id(), user = %link.user, "address verified");
    Ok(link.email)
}

/// Mails a link that sets a new password to the account of `email`, if there is one.
/// The answer, and how long it takes, are the same either way; requests count against
/// the address and the client like failed log-ins (`throttle`), so nobody can flood a
/// mailbox.
pub async fn request_reset(
    store: &Store,
    postman: &Postman,
    base: &url::Url,
    email: &str,
    client: IpAddr,
) -> Result<()> {
    // Never marked a success: each request counts, apart from the address's log-ins,
    // so that asking for links to someone's address cannot slow their log-in.
    let scope = format!("reset:{}", email.trim().to_lowercase());
    let _attempt = throttle::admit(&*store.kv, store.now(), Some(&scope), client).await?;
    let account = match Email::parse(email) {
        Ok(email) => match get_doc::<EmailRecord>(&*store.kv, &email_lookup(&email)).await? {
            Some(lookup) => {
                let tenant = Tenant::verified(lookup.tenant);
                get_doc::<UserRecord>(&*store.kv, &tenant.key(user_sk(lookup.user)))
                    .await?
                    .map(|user| (tenant, user))
            }
            None => None,
        },
        Err(_) => None,
    };
    let Some((tenant, user)) = account else {
        postman.imitate_delivery().await;
        return Ok(());
    };
    let link = new_link(
        store,
        Purpose::ResetPassword,
        &tenant,
        &user,
        RESET_LINK_TTL,
        base,
    )
    .await?;
    let team = team_name(store, &tenant).await?.unwrap_or_default();
    let letter = postman::reset_password(user.member.email.as_str(), &team, &link, RESET_LINK_TTL);
    postman.deliver(letter).await;
    Ok(())
}

/// Sets a new password with a mailed reset link, which also proves the address. Every
/// session and access token of the member ends (API keys stay: they are not the
/// password's).
pub async fn reset_password(
    store: &Store,
    token: &str,
    password: Password,
    client: IpAddr,
) -> Result<()> {
    let _place = password::place_for(client)?;
    let (link_key, link) = open_link(store, token, Purpose::ResetPassword).await?;
    let tenant = Tenant::verified(link.tenant);
    let password_hash = password::hash(password).await?;
    let (item, mut user) = user_item(store, &tenant, link.user).await?;
    if user.member.email != link.email {
        return Err(AccountError::InvalidLink);
    }
    user.password_hash = password_hash;
    user.credentials_valid_from = Some(store.now().unix_timestamp());
    let mut ops = vec![TxOp::Delete(link_key, Condition::Exists)];
    match own_lookup(store, &user.member.email, link.user).await? {
        Some(lookup) => ops.extend(verified_writes(&item, user, &tenant, lookup)?),
        None => ops.push(TxOp::Put(
            doc_item(tenant.key(user_sk(link.user)), &user)?,
            unchanged_doc(&item),
        )),
    }
    use_link(store, ops).await?;
    sessions::end_all(store, &tenant, link.user, None).await?;
    tracing::info!(tenant = %tenant.id(), user = %link.user, "password reset");
    Ok(())
}

/// Changes the password of a member who knows it, from session `current` (kept),
/// ending their other sessions. A wrong current password counts like a failed log-in.
pub async fn change_password(
    store: &Store,
    tenant: &Tenant,
    user: UserId,
    current: Option<u64>,
    current_password: String,
    new_password: Password,
    client: IpAddr,
) -> Result<()> {
    let _place = password::place_for(client)?;
    let (item, mut record) = user_item(store, tenant, user).await?;
    let attempt = throttle::admit(
        &*store.kv,
        store.now(),
        Some(record.member.email.as_str()),
        client,
    )
    .await?;
    if !password::verify(current_password, Some(record.password_hash.clone())).await? {
        return Err(AccountError::WrongCurrentPassword);
    }
    attempt.succeeded(&*store.kv).await;
    record.password_hash = password::hash(new_password).await?;
    match store
        .kv
        .put(
            doc_item(tenant.key(user_sk(user)), &record)?,
            unchanged_doc(&item),
        )
        .await
    {
        Ok(()) => {}
        Err(StoreError::ConditionFailed) => return Err(AccountError::ConcurrentUpdate),
        Err(err) => return Err(err.into()),
    }
    sessions::end_all(store, tenant, user, current).await?;
    tracing::info!(tenant = %tenant.id(), user = %user, "password changed");
    Ok(())
}
