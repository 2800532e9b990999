//! Teams, members, API keys and invites, written once above the key-value port.
//!
//! Layout (one table):
//! - `{tenant}` / `team`: the team, with a `version` every membership change bumps;
//! - `{tenant}` / `user#{id}`, `key#{id}`, `invite#{id}`: members, key metadata, invites;
//! - global lookups, the only items not under a tenant, each naming its tenant:
//!   `~email#{address}` (e-mail is unique across the service), `~key#{id}` (the key's
//!   hash and role), `~invite#{token hash}`.
//!
//! Secrets (passwords, key secrets, invite tokens, mailed links) are stored only as
//! hashes.
//!
//! An address belongs to an account once verified (`recovery`): until then a sign-up
//! holds it for `UNVERIFIED_HOLD`, after which another sign-up may take it.

pub mod invites;
pub mod recovery;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use crate::credentials::CredentialError;
use crate::credentials::Role;
use crate::credentials::api_key::ApiKeySecret;
use crate::credentials::jwt::{Keyring, Subject};
use crate::credentials::password::{self, Password};
use crate::credentials::throttle;
use crate::error::{Coded, Error, ErrorCode};
use crate::ids::{ApiKeyId, InviteId, TenantId, UserId};
use crate::sessions::{self, Client};
use crate::tenancy::Tenant;
use sextant_storage::Store;
use sextant_storage::kv::{
    Condition, Item, Key, Query, StoreError, StoreResult, TxOp, Value, WriteOp,
};
use sextant_storage::records::{
    CONFLICT_ATTEMPTS, TTL, Versioned, doc_item, get_doc, query_docs, read_doc, unchanged_doc,
};

const TEAM: &str = "team";
const MAX_NAME_CHARS: usize = 100;
const MAX_EMAIL_BYTES: usize = 254;
/// How long an unverified sign-up (or accepted invite) keeps its address from others:
/// a day to find the mail, not long enough to squat on someone else's address.
pub const UNVERIFIED_HOLD: time::Duration = time::Duration::hours(24);

fn user_sk(id: UserId) -> String {
    format!("user#{id}")
}

fn key_sk(id: ApiKeyId) -> String {
    format!("key#{id}")
}

fn invite_sk(id: InviteId) -> String {
    format!("invite#{id}")
}

fn email_lookup(email: &Email) -> Key {
    Key::new(format!("~email#{}", email.0), "_")
}

fn key_lookup(id: ApiKeyId) -> Key {
    Key::new(format!("~key#{id}"), "_")
}

fn invite_lookup(token_hash: &str) -> Key {
    Key::new(format!("~invite#{token_hash}"), "_")
}

/// A syntactically valid e-mail address, lower-cased so lookups ignore case.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Email(String);

/// Why an account operation is refused.
#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error("not a valid e-mail address")]
    InvalidEmail,
    #[error(
        "{field} must be 1 to {max} characters without control characters",
        max = MAX_NAME_CHARS
    )]
    InvalidName { field: &'static str },
    #[error("an account with this e-mail already exists")]
    EmailTaken,
    /// The same answer whether or not the address has an account.
    #[error("e-mail or password is wrong")]
    WrongPassword,
    #[error("the current password is wrong")]
    WrongCurrentPassword,
    /// Unknown, expired, used, or for another purpose: all answer alike.
    #[error("this link is invalid, has expired or was used already; ask for a new one")]
    InvalidLink,
    #[error(
        "this address was not verified in time and another account has taken it; \
         sign up again with an address of yours"
    )]
    EmailReleased,
    #[error("member not found")]
    MemberNotFound,
    #[error("API key not found")]
    KeyNotFound,
    #[error("invite not found")]
    InviteNotFound,
    #[error("a key cannot have more rights ({role}) than its owner ({owner})")]
    RoleExceedsOwner { role: Role, owner: Role },
    #[error("a team keeps at least one admin")]
    LastAdmin,
    #[error("the team changed while this request ran; retry it")]
    ConcurrentUpdate,
    /// A team without its record: a failure of ours.
    #[error("team record missing")]
    TeamMissing,
    /// Signing a session failed: a failure of ours.
    #[error("signing a session: {0}")]
    Signing(jsonwebtoken::errors::Error),
    #[error(transparent)]
    Credential(#[from] CredentialError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Coded for AccountError {
    fn code(&self) -> ErrorCode {
        match self {
            Self::InvalidEmail => ErrorCode::InvalidEmail,
            Self::InvalidName { .. } => ErrorCode::InvalidName,
            Self::EmailTaken => ErrorCode::EmailTaken,
            Self::WrongPassword => ErrorCode::Unauthorized,
            Self::WrongCurrentPassword => ErrorCode::WrongPassword,
            Self::InvalidLink => ErrorCode::InvalidLink,
            Self::EmailReleased => ErrorCode::EmailReleased,
            Self::MemberNotFound | Self::KeyNotFound | Self::InviteNotFound => ErrorCode::NotFound,
            Self::RoleExceedsOwner { .. } => ErrorCode::RoleExceedsOwner,
            Self::LastAdmin => ErrorCode::LastAdmin,
            Self::ConcurrentUpdate => ErrorCode::ConcurrentUpdate,
            Self::TeamMissing | Self::Signing(_) => ErrorCode::Internal,
            Self::Credential(err) => err.code(),
            Self::Store(err) => err.code(),
        }
    }

    fn into_error(self) -> Error {
        match self {
            Self::TeamMissing | Self::Signing(_) => Error::internal(self),
            Self::Credential(err) => err.into(),
            Self::Store(err) => err.into(),
            other => Error::new(other.code(), other.to_string()),
        }
    }
}

type Result<T, E = AccountError> = std::result::Result<T, E>;

impl Email {
    pub fn parse(text: &str) -> Result<Self> {
        let normalized = text.trim().to_lowercase();
        let options = email_address::Options::default()
            .without_domain_literal()
            .without_display_text()
            .with_required_tld();
        if normalized.len() > MAX_EMAIL_BYTES
            || email_address::EmailAddress::parse_with_options(&normalized, options).is_err()
        {
            return Err(AccountError::InvalidEmail);
        }
        Ok(Self(normalized))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl utoipa::PartialSchema for Email {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::Type::String)
            .format(Some(utoipa::openapi::SchemaFormat::KnownFormat(
                utoipa::openapi::KnownFormat::Email,
            )))
            .max_length(Some(MAX_EMAIL_BYTES))
            .description(Some(
                "An e-mail address, unique across the service; compared and shown lower-cased.",
            ))
            .examples(["ada@example.com"])
            .into()
    }
}

impl utoipa::ToSchema for Email {}

/// The pattern of a name people type: no control characters (Unicode's Cc, as
/// `char::is_control` sees them), and something besides spaces.
pub const PRINTABLE_NAME: &str = "^[^\\u0000-\\u001f\\u007f-\\u009f]*[^\\u0000-\\u001f\\u007f-\\u009f\\s][^\\u0000-\\u001f\\u007f-\\u009f]*$";

/// A display name (team, API key): trimmed, 1 to 100 characters, no control characters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct DisplayName(String);

impl DisplayName {
    pub fn parse(field: &'static str, text: &str) -> Result<Self> {
        let trimmed = text.trim();
        let length = trimmed.chars().count();
        if length == 0 || length > MAX_NAME_CHARS || trimmed.chars().any(char::is_control) {
            return Err(AccountError::InvalidName { field });
        }
        Ok(Self(trimmed.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl utoipa::PartialSchema for DisplayName {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::Type::String)
            .min_length(Some(1))
            .max_length(Some(MAX_NAME_CHARS))
            .pattern(Some(PRINTABLE_NAME))
            .description(Some(
                "1 to 100 characters without control characters, trimmed of surrounding spaces.",
            ))
            .examples(["Vision team"])
            .into()
    }
}

impl utoipa::ToSchema for DisplayName {}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct TeamRecord {
    id: TenantId,
    name: DisplayName,
    #[serde(with = "time::serde::rfc3339")]
    created_at: OffsetDateTime,
}

/// A team, as its members see it.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Team {
    pub id: TenantId,
    pub name: DisplayName,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

impl From<TeamRecord> for Team {
    fn from(record: TeamRecord) -> Self {
        Self {
            id: record.id,
            name: record.name,
            created_at: record.created_at,
        }
    }
}

/// The caller's team.
pub async fn team(store: &Store, tenant: &Tenant) -> Result<Team> {
    get_doc::<TeamRecord>(&*store.kv, &tenant.key(TEAM))
        .await?
        .map(Team::from)
        .ok_or(AccountError::TeamMissing)
}

/// The team's name, for operators' listings; `None` if the team is gone.
pub async fn team_name(store: &Store, tenant: &Tenant) -> StoreResult<Option<String>> {
    Ok(get_doc::<TeamRecord>(&*store.kv, &tenant.key(TEAM))
        .await?
        .map(|team| team.name.0))
}

/// A member as others see it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Member {
    pub id: UserId,
    /// What teammates see them as; absent for members who never gave one (the team's
    /// first admin signs up without).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<DisplayName>,
    pub email: Email,
    pub role: Role,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

impl Member {
    /// How the pages and letters name the member: their name, or their address.
    pub fn display_name(&self) -> &str {
        self.name
            .as_ref()
            .map_or(self.email.as_str(), DisplayName::as_str)
    }
}

/// Accounts made before addresses were verified kept theirs as they were.
fn verified_before_verification_existed() -> bool {
    true
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct UserRecord {
    #[serde(flatten)]
    member: Member,
    password_hash: String,
    #[serde(default = "verified_before_verification_existed")]
    email_verified: bool,
    /// Sessions and access tokens issued before this second (Unix) are refused: set
    /// by a password reset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    credentials_valid_from: Option<i64>,
}

impl UserRecord {
    fn new(member: Member, password_hash: String) -> Self {
        Self {
            member,
            password_hash,
            email_verified: false,
            credentials_valid_from: None,
        }
    }

    /// Whether a token issued at `iat` (Unix seconds) may still speak for the member.
    fn accepts_issued_at(&self, iat: i64) -> bool {
        self.credentials_valid_from
            .is_none_or(|valid_from| iat >= valid_from)
    }
}

/// The global lookup of an address: whose it is, and whether that is proven yet.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct EmailRecord {
    tenant: TenantId,
    user: UserId,
    #[serde(default = "verified_before_verification_existed")]
    verified: bool,
    /// Until when an unverified address is kept from other sign-ups.
    #[serde(
        default,
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    held_until: Option<OffsetDateTime>,
}

impl EmailRecord {
    /// An address just claimed by a member who has not proven it yet.
    fn unverified(tenant: TenantId, user: UserId, now: OffsetDateTime) -> Self {
        Self {
            tenant,
            user,
            verified: false,
            held_until: Some(now + UNVERIFIED_HOLD),
        }
    }

    fn free_to_take(&self, now: OffsetDateTime) -> bool {
        !self.verified && self.held_until.is_some_and(|until| until <= now)
    }
}

/// Whether a member's address is theirs yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(tag = "email_status", rename_all = "snake_case")]
pub enum EmailStatus {
    /// Proven by a mailed link.
    Verified,
    /// Not proven yet: kept from other sign-ups until `email_held_until`.
    Held {
        #[serde(with = "time::serde::rfc3339")]
        email_held_until: OffsetDateTime,
    },
    /// Not proven in time, and taken by another sign-up: the member can no longer log
    /// in with it (their sessions and API keys still work).
    Released,
}

/// The member's address and whether it is theirs yet.
pub async fn email_status(
    store: &Store,
    tenant: &Tenant,
    user: UserId,
) -> Result<(Email, EmailStatus)> {
    let record = member(store, tenant, user).await?;
    let lookup = get_doc::<EmailRecord>(&*store.kv, &email_lookup(&record.member.email)).await?;
    let status = match lookup {
        Some(lookup) if lookup.user == user && (lookup.verified || record.email_verified) => {
            EmailStatus::Verified
        }
        Some(EmailRecord {
            user: owner,
            held_until: Some(until),
            ..
        }) if owner == user => EmailStatus::Held {
            email_held_until: until,
        },
        _ => EmailStatus::Released,
    };
    Ok((record.member.email, status))
}

/// An API key's metadata; the secret is never stored or shown again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ApiKey {
    pub id: ApiKeyId,
    pub name: DisplayName,
    pub role: Role,
    /// The member the key acts for; removing the member revokes the key.
    pub owner: UserId,
    pub created_by: UserId,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct KeyLookup {
    tenant: TenantId,
    hash: String,
    role: Role,
    owner: UserId,
}

/// An invitation to join the team, pending until accepted, revoked or expired.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Invite {
    pub id: InviteId,
    pub email: Email,
    pub role: Role,
    pub invited_by: UserId,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct InviteRecord {
    #[serde(flatten)]
    invite: Invite,
    token_hash: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct InviteLookup {
    tenant: TenantId,
    invite: InviteId,
}

/// A session for a member who just signed in.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Session {
    pub tenant_id: TenantId,
    pub user_id: UserId,
    /// A bearer credential for the member, until it expires or they log out.
    pub token: String,
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
}

/// A new team's first session, and its first API key.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct SignedUp {
    #[serde(flatten)]
    pub session: Session,
    /// The team's first API key, shown this once.
    pub api_key: String,
    /// Always `false` at sign-up: a link to verify the address is mailed to it.
    pub email_verified: bool,
}

fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// How sessions are signed and how long they last.
#[derive(Debug, Clone, Copy)]
pub struct Sessions<'a> {
    pub keyring: &'a Keyring,
    pub ttl: time::Duration,
}

/// Issues a session for `user` and records it (`sessions`).
async fn session(
    store: &Store,
    sessions: Sessions<'_>,
    tenant: TenantId,
    user: &Member,
    client: &Client,
) -> Result<Session> {
    let sid: u64 = rand::random();
    let (token, expires_at) = sessions
        .keyring
        .issue(
            tenant,
            user.role,
            Subject::Session {
                user: user.id,
                sid: Some(sid),
            },
            sessions.ttl,
        )
        .map_err(AccountError::Signing)?;
    sessions::record(
        store,
        &Tenant::verified(tenant),
        user.id,
        sid,
        expires_at,
        client,
    )
    .await?;
    Ok(Session {
        tenant_id: tenant,
        user_id: user.id,
        token,
        expires_at,
    })
}

/// The two items that make an API key: its metadata under the team, and the global
/// lookup that authenticates it.
fn key_items(tenant: &Tenant, key: &ApiKey, secret: &ApiKeySecret) -> Result<[TxOp; 2]> {
    let lookup = KeyLookup {
        tenant: tenant.id(),
        hash: secret.hash(),
        role: key.role,
        owner: key.owner,
    };
    Ok([
        TxOp::Put(
            doc_item(tenant.key(key_sk(key.id)), key)?,
            Condition::NotExists,
        ),
        TxOp::Put(doc_item(key_lookup(key.id), &lookup)?, Condition::NotExists),
    ])
}

/// Creates a team with its first member, whose address is held for them until they
/// verify it (`recovery::start_verification` mails the link). An address taken by an
/// account is refused, unless it was never verified and its hold has run out: then
/// the new sign-up takes it.
pub async fn signup(
    store: &Store,
    sessions: Sessions<'_>,
    team: DisplayName,
    email: Email,
    password: Password,
    client: impl Into<Client>,
) -> Result<SignedUp> {
    let client = client.into();
    let _place = password::place_for(client.address)?;
    let password_hash = password::hash(password).await?;
    let now = store.now();
    let tenant = Tenant::verified(TenantId::generate());
    let member = Member {
        id: UserId::generate(),
        name: None,
        email: email.clone(),
        role: Role::Admin,
        created_at: now,
    };
    let secret = ApiKeySecret::generate();
    let key = ApiKey {
        id: secret.id,
        name: DisplayName::parse("name", "default")?,
        role: Role::Admin,
        owner: member.id,
        created_by: member.id,
        created_at: now,
    };
    let team_record = TeamRecord {
        id: tenant.id(),
        name: team,
        created_at: now,
    };
    let mut ops = vec![
        claim_email(
            store,
            &email,
            EmailRecord::unverified(tenant.id(), member.id, now),
        )
        .await?,
        {
            let team = Versioned::unsaved(team_record);
            TxOp::Put(team.next_item(tenant.key(TEAM))?, team.unchanged())
        },
        TxOp::Put(
            doc_item(
                tenant.key(user_sk(member.id)),
                &UserRecord::new(member.clone(), password_hash),
            )?,
            Condition::NotExists,
        ),
    ];
    ops.extend(key_items(&tenant, &key, &secret)?);
    match store.kv.transact(ops).await {
        Ok(()) => {}
        Err(StoreError::TransactionFailed(failed)) if failed.contains(&0) => {
            return Err(AccountError::EmailTaken);
        }
        Err(err) => return Err(err.into()),
    }
    tracing::info!(tenant = %tenant.id(), user = %member.id, "team signed up");
    Ok(SignedUp {
        session: session(store, sessions, tenant.id(), &member, &client).await?,
        api_key: secret.expose(),
        email_verified: false,
    })
}

/// The write that gives `email` to `claim`: on condition that no account has it, or
/// that the unverified one whose hold ran out still has it as it was read.
async fn claim_email(store: &Store, email: &Email, claim: EmailRecord) -> Result<TxOp> {
    let key = email_lookup(email);
    let item = doc_item(key.clone(), &claim)?;
    let condition = match store.kv.get(&key).await? {
        None => Condition::NotExists,
        Some(current) => {
            let holder = read_doc::<EmailRecord>(&current)?;
            if !holder.free_to_take(store.now()) {
                return Err(AccountError::EmailTaken);
            }
            tracing::info!(tenant = %holder.tenant, user = %holder.user, "an unverified address was taken by a new account");
            unchanged_doc(&current)
        }
    };
    Ok(TxOp::Put(item, condition))
}

/// Signs a member in from `client`; failed attempts back off (`throttle`).
pub async fn login(
    store: &Store,
    sessions: Sessions<'_>,
    email: &str,
    password: String,
    client: impl Into<Client>,
) -> Result<Session> {
    let client = client.into();
    let invalid = || AccountError::WrongPassword;
    let _place = password::place_for(client.address)?;
    let attempt = throttle::admit(&*store.kv, store.now(), Some(email), client.address).await?;
    let found = match Email::parse(email) {
        Ok(email) => match get_doc::<EmailRecord>(&*store.kv, &email_lookup(&email)).await? {
            Some(lookup) => {
                let tenant = Tenant::verified(lookup.tenant);
                get_doc::<UserRecord>(&*store.kv, &tenant.key(user_sk(lookup.user)))
                    .await?
                    .map(|user| (lookup.tenant, user))
            }
            None => None,
        },
        Err(_) => None,
    };
    let stored_hash = found.as_ref().map(|(_, user)| user.password_hash.clone());
    // Verify even when there is no account, so timing does not reveal which e-mails exist.
    let matches = password::verify(password, stored_hash).await?;
    match found {
        Some((tenant, user)) if matches => {
            attempt.succeeded(&*store.kv).await;
            session(store, sessions, tenant, &user.member, &client).await
        }
        _ => Err(invalid()),
    }
}

/// Logs a session out: its token is refused from now on, though it has not expired.
/// Anything but a live session token is left alone.
pub async fn end_session(store: &Store, keyring: &Keyring, token: &str) -> Result<()> {
    let Some(claims) = keyring.verify(token) else {
        return Ok(());
    };
    let Subject::Session {
        user,
        sid: Some(sid),
    } = claims.subject
    else {
        return Ok(());
    };
    let tenant = Tenant::verified(claims.tid);
    sessions::end_sid(store, &tenant, user, sid, claims.exp).await?;
    Ok(())
}

/// The team, member and role an API key acts for now: the key's role, never more than
/// its member's. `None` once the key is revoked or its member removed, or when the
/// secret is not the key's.
pub async fn key_holder(
    store: &Store,
    secret: &ApiKeySecret,
) -> Result<Option<(Tenant, UserId, Role)>> {
    Ok(live_key(store, secret.id)
        .await?
        .filter(|(lookup, ..)| secret.matches(&lookup.hash))
        .map(|(lookup, tenant, owner)| {
            (tenant, owner.member.id, lookup.role.min(owner.member.role))
        }))
}

/// The role a credential derived from API key `key` in `tenant`, issued at `iat` (Unix
/// seconds), may have now: no more than its key's or its member's. `None` once the key
/// is revoked, its member removed, its member's password reset since it was issued,
/// or when the key is another team's.
pub async fn key_role(
    store: &Store,
    tenant: &Tenant,
    key: ApiKeyId,
    iat: i64,
) -> Result<Option<Role>> {
    Ok(live_key(store, key)
        .await?
        .filter(|(_, key_tenant, owner)| key_tenant == tenant && owner.accepts_issued_at(iat))
        .map(|(lookup, _, owner)| lookup.role.min(owner.member.role)))
}

/// The member a session token issued at `iat` speaks for, as they are now: `None` once
/// the session ended (log-out, ended from the sessions page, a password change or
/// reset) or the member was removed.
pub async fn session_member(
    store: &Store,
    tenant: &Tenant,
    user: UserId,
    sid: Option<u64>,
    iat: i64,
) -> Result<Option<Member>> {
    let member_key = tenant.key(user_sk(user));
    let member = get_doc::<UserRecord>(&*store.kv, &member_key);
    let ended_and_used = async {
        match sid {
            Some(sid) => {
                let ended = async {
                    let marker = store.kv.get(&sessions::ended_marker(sid)).await?;
                    Ok(marker.is_some())
                };
                let (ended, used) =
                    futures::try_join!(ended, sessions::read(store, tenant, user, sid))?;
                Ok::<_, StoreError>((ended, Some(used)))
            }
            None => Ok((false, None)),
        }
    };
    let (record, (ended, used)) = futures::try_join!(member, ended_and_used)?;
    let live = record.filter(|record| !ended && record.accepts_issued_at(iat));
    if live.is_some()
        && let Some(used) = used
    {
        sessions::note_use(store, used).await;
    }
    Ok(live.map(|record| record.member))
}

/// A live API key: its lookup, and the member it acts for as they are now. `None` once
/// the key is revoked or its member removed.
async fn live_key(store: &Store, id: ApiKeyId) -> Result<Option<(KeyLookup, Tenant, UserRecord)>> {
    let Some(lookup) = get_doc::<KeyLookup>(&*store.kv, &key_lookup(id)).await? else {
        return Ok(None);
    };
    let tenant = Tenant::verified(lookup.tenant);
    let owner = get_doc::<UserRecord>(&*store.kv, &tenant.key(user_sk(lookup.owner))).await?;
    Ok(owner.map(|owner| (lookup, tenant, owner)))
}

async fn member(store: &Store, tenant: &Tenant, id: UserId) -> Result<UserRecord> {
    get_doc::<UserRecord>(&*store.kv, &tenant.key(user_sk(id)))
        .await?
        .ok_or_else(|| AccountError::MemberNotFound)
}

/// A new API key of `tenant`, created by member `by`, for `owner` (by default `by`).
pub async fn create_api_key(
    store: &Store,
    tenant: &Tenant,
    by: UserId,
    name: DisplayName,
    role: Option<Role>,
    owner: Option<UserId>,
) -> Result<(ApiKey, String)> {
    let owner = member(store, tenant, owner.unwrap_or(by)).await?;
    let role = role.unwrap_or(owner.member.role);
    if role > owner.member.role {
        return Err(AccountError::RoleExceedsOwner {
            role,
            owner: owner.member.role,
        });
    }
    let secret = ApiKeySecret::generate();
    let key = ApiKey {
        id: secret.id,
        name,
        role,
        owner: owner.member.id,
        created_by: by,
        created_at: OffsetDateTime::now_utc(),
    };
    store
        .kv
        .transact(key_items(tenant, &key, &secret)?.into())
        .await?;
    tracing::info!(tenant = %tenant.id(), key = %key.id, "API key created");
    Ok((key, secret.expose()))
}

pub async fn list_api_keys(store: &Store, tenant: &Tenant) -> Result<Vec<ApiKey>> {
    Ok(query_docs(&*store.kv, Query::partition(tenant.root()).prefix("key#")).await?)
}

pub async fn revoke_api_key(store: &Store, tenant: &Tenant, id: ApiKeyId) -> Result<()> {
    let key = tenant.key(key_sk(id));
    if store.kv.get(&key).await?.is_none() {
        return Err(AccountError::KeyNotFound);
    }
    store
        .kv
        .batch_write(vec![WriteOp::Delete(key_lookup(id)), WriteOp::Delete(key)])
        .await?;
    tracing::info!(tenant = %tenant.id(), key = %id, "API key revoked");
    Ok(())
}

/// An invite to `tenant`, sent by member `by`.
pub async fn create_invite(
    store: &Store,
    invite_ttl: time::Duration,
    tenant: &Tenant,
    by: UserId,
    email: Email,
    role: Role,
) -> Result<(Invite, String)> {
    if store.kv.get(&email_lookup(&email)).await?.is_some() {
        return Err(AccountError::EmailTaken);
    }
    let (token, token_hash) = invite_token();
    let now = store.now();
    let record = InviteRecord {
        invite: Invite {
            id: InviteId::generate(),
            email,
            role,
            invited_by: by,
            created_at: now,
            expires_at: now + invite_ttl,
        },
        token_hash,
    };
    store
        .kv
        .transact(vec![
            TxOp::Put(record.item(tenant)?, Condition::NotExists),
            TxOp::Put(record.lookup_item(tenant)?, Condition::NotExists),
        ])
        .await?;
    Ok((record.invite, token))
}

/// A new invite token, and the hash it is stored as.
fn invite_token() -> (String, String) {
    let token = URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>());
    let hash = hash_token(&token);
    (token, hash)
}

impl InviteRecord {
    /// The invite under its team, gone with its expiry.
    fn item(&self, tenant: &Tenant) -> Result<Item, StoreError> {
        Ok(doc_item(tenant.key(invite_sk(self.invite.id)), self)?.with(TTL, self.expiry()))
    }

    /// The global lookup its token opens, gone with its expiry.
    fn lookup_item(&self, tenant: &Tenant) -> Result<Item, StoreError> {
        let lookup = InviteLookup {
            tenant: tenant.id(),
            invite: self.invite.id,
        };
        Ok(doc_item(invite_lookup(&self.token_hash), &lookup)?.with(TTL, self.expiry()))
    }

    fn expiry(&self) -> Value {
        Value::N(self.invite.expires_at.unix_timestamp())
    }
}

pub async fn list_invites(store: &Store, tenant: &Tenant) -> Result<Vec<Invite>> {
    let records: Vec<InviteRecord> = query_docs(
        &*store.kv,
        Query::partition(tenant.root()).prefix("invite#"),
    )
    .await?;
    Ok(records.into_iter().map(|record| record.invite).collect())
}

pub async fn revoke_invite(store: &Store, tenant: &Tenant, id: InviteId) -> Result<()> {
    let key = tenant.key(invite_sk(id));
    let record = get_doc::<InviteRecord>(&*store.kv, &key)
        .await?
        .ok_or_else(|| AccountError::InviteNotFound)?;
    store
        .kv
        .batch_write(vec![
            WriteOp::Delete(invite_lookup(&record.token_hash)),
            WriteOp::Delete(key),
        ])
        .await?;
    Ok(())
}

/// Joins the inviting team as `name`. The invite is consumed in the same transaction
/// that creates the member, so it works once.
pub async fn accept_invite(
    store: &Store,
    sessions: Sessions<'_>,
    token: &str,
    name: Option<DisplayName>,
    password: Password,
    client: impl Into<Client>,
) -> Result<Session> {
    let client = client.into();
    let gone = || AccountError::InviteNotFound;
    // Tokens are too long to guess, but each try may cost a password hash.
    let _place = password::place_for(client.address)?;
    let attempt = throttle::admit(&*store.kv, store.now(), None, client.address).await?;
    let token_hash = hash_token(token);
    let lookup = get_doc::<InviteLookup>(&*store.kv, &invite_lookup(&token_hash))
        .await?
        .ok_or_else(gone)?;
    let tenant = Tenant::verified(lookup.tenant);
    let invite_key = tenant.key(invite_sk(lookup.invite));
    let record = get_doc::<InviteRecord>(&*store.kv, &invite_key)
        .await?
        .ok_or_else(gone)?;
    if record.invite.expires_at < store.now() {
        return Err(gone());
    }
    let password_hash = password::hash(password).await?;
    let now = store.now();
    let member = Member {
        id: UserId::generate(),
        name,
        email: record.invite.email.clone(),
        role: record.invite.role,
        created_at: now,
    };
    // Whoever holds the invite's token was handed it, which proves nothing about the
    // address: it is held for them until they verify it, as at sign-up.
    let ops = vec![
        TxOp::Delete(invite_lookup(&token_hash), Condition::Exists),
        TxOp::Delete(invite_key, Condition::Exists),
        claim_email(
            store,
            &member.email,
            EmailRecord::unverified(tenant.id(), member.id, now),
        )
        .await?,
        TxOp::Put(
            doc_item(
                tenant.key(user_sk(member.id)),
                &UserRecord::new(member.clone(), password_hash),
            )?,
            Condition::NotExists,
        ),
    ];
    match store.kv.transact(ops).await {
        Ok(()) => {}
        Err(StoreError::TransactionFailed(failed)) if failed.contains(&2) => {
            return Err(AccountError::EmailTaken);
        }
        Err(StoreError::TransactionFailed(_)) => return Err(gone()),
        Err(err) => return Err(err.into()),
    }
    attempt.succeeded(&*store.kv).await;
    tracing::info!(tenant = %tenant.id(), user = %member.id, "invite accepted");
    session(store, sessions, tenant.id(), &member, &client).await
}

pub async fn list_members(store: &Store, tenant: &Tenant) -> Result<Vec<Member>> {
    let users: Vec<UserRecord> =
        query_docs(&*store.kv, Query::partition(tenant.root()).prefix("user#")).await?;
    Ok(users.into_iter().map(|user| user.member).collect())
}

/// The addresses of the team's admins that are proven theirs: where notices to the
/// team (its budget's) go, never to an address someone else may hold.
pub async fn verified_admin_emails(store: &Store, tenant: &Tenant) -> Result<Vec<Email>> {
    let users: Vec<UserRecord> =
        query_docs(&*store.kv, Query::partition(tenant.root()).prefix("user#")).await?;
    Ok(users
        .into_iter()
        .filter(|user| user.member.role == Role::Admin && user.email_verified)
        .map(|user| user.member.email)
        .collect())
}

/// What a membership change does, decided from a consistent view of the team.
struct MembershipChange {
    ops: Vec<TxOp>,
    /// Unconditional writes that must precede the transaction (it holds 100 items).
    before: Vec<WriteOp>,
}

/// Runs a membership change serialised through the team's version, so two admins
/// demoting each other at once cannot leave the team without an admin.
async fn change_membership(
    store: &Store,
    tenant: &Tenant,
    decide: impl Fn(&[UserRecord]) -> Result<MembershipChange>,
) -> Result<()> {
    let team_key = tenant.key(TEAM);
    for _ in 0..CONFLICT_ATTEMPTS {
        let team = store
            .kv
            .get(&team_key)
            .await?
            .ok_or_else(|| AccountError::TeamMissing)?;
        let team = Versioned::<TeamRecord>::read(&team)?;
        let users: Vec<UserRecord> =
            query_docs(&*store.kv, Query::partition(tenant.root()).prefix("user#")).await?;
        let change = decide(&users)?;
        if !change.before.is_empty() {
            store.kv.batch_write(change.before).await?;
        }
        let mut ops = change.ops;
        ops.push(TxOp::Put(
            team.next_item(team_key.clone())?,
            team.unchanged(),
        ));
        match store.kv.transact(ops).await {
            Ok(()) => return Ok(()),
            Err(err) if err.is_conflict() => continue,
            Err(err) => return Err(err.into()),
        }
    }
    Err(AccountError::ConcurrentUpdate)
}

fn find(users: &[UserRecord], id: UserId) -> Result<&UserRecord> {
    users
        .iter()
        .find(|user| user.member.id == id)
        .ok_or_else(|| AccountError::MemberNotFound)
}

fn ensure_admin_remains(users: &[UserRecord], losing: UserId) -> Result<()> {
    let admins_left = users
        .iter()
        .filter(|user| user.member.role == Role::Admin && user.member.id != losing)
        .count();
    if admins_left == 0 {
        return Err(AccountError::LastAdmin);
    }
    Ok(())
}

/// The deletes that take back the pending invites `id` sent: an invite is a grant of
/// its sender's, and goes when the sender is removed or stops being an admin.
async fn invites_sent_by(store: &Store, tenant: &Tenant, id: UserId) -> Result<Vec<WriteOp>> {
    let records: Vec<InviteRecord> = query_docs(
        &*store.kv,
        Query::partition(tenant.root()).prefix("invite#"),
    )
    .await?;
    Ok(records
        .into_iter()
        .filter(|record| record.invite.invited_by == id)
        .flat_map(|record| {
            [
                WriteOp::Delete(invite_lookup(&record.token_hash)),
                WriteOp::Delete(tenant.key(invite_sk(record.invite.id))),
            ]
        })
        .collect())
}

pub async fn change_role(store: &Store, tenant: &Tenant, id: UserId, role: Role) -> Result<Member> {
    let invites = if role == Role::Admin {
        Vec::new()
    } else {
        invites_sent_by(store, tenant, id).await?
    };
    change_membership(store, tenant, |users| {
        let user = find(users, id)?;
        if user.member.role == Role::Admin && role != Role::Admin {
            ensure_admin_remains(users, id)?;
        }
        let mut updated = user.clone();
        updated.member.role = role;
        Ok(MembershipChange {
            ops: vec![TxOp::Put(
                doc_item(tenant.key(user_sk(id)), &updated)?,
                Condition::Exists,
            )],
            before: invites.clone(),
        })
    })
    .await?;
    Ok(member(store, tenant, id).await?.member)
}

pub async fn remove_member(store: &Store, tenant: &Tenant, id: UserId) -> Result<()> {
    let keys: Vec<ApiKey> = list_api_keys(store, tenant)
        .await?
        .into_iter()
        .filter(|key| key.owner == id)
        .collect();
    let invites = invites_sent_by(store, tenant, id).await?;
    change_membership(store, tenant, |users| {
        let user = find(users, id)?;
        ensure_admin_remains(users, id)?;
        let mut key_deletes: Vec<TxOp> = keys
            .iter()
            .flat_map(|key| {
                [
                    TxOp::Delete(key_lookup(key.id), Condition::None),
                    TxOp::Delete(tenant.key(key_sk(key.id)), Condition::None),
                ]
            })
            .collect();
        // User, e-mail, last activity and team version take four of the
        // transaction's hundred slots.
        let room = sextant_storage::kv::MAX_TRANSACT_ITEMS - 4;
        let overflow = key_deletes.split_off(key_deletes.len().min(room) & !1);
        let before = overflow
            .into_iter()
            .map(|op| WriteOp::Delete(op.key().clone()))
            .chain(invites.iter().cloned())
            .collect();
        let mut ops = vec![
            TxOp::Delete(tenant.key(user_sk(id)), Condition::Exists),
            TxOp::Delete(email_lookup(&user.member.email), Condition::None),
            TxOp::Delete(sessions::seen_key(tenant, id), Condition::None),
        ];
        ops.extend(key_deletes);
        Ok(MembershipChange { ops, before })
    })
    .await?;
    tracing::info!(tenant = %tenant.id(), user = %id, keys = keys.len(), "member removed");
    Ok(())
}

/// Renames the team; answers it as it is now.
pub async fn rename_team(store: &Store, tenant: &Tenant, name: DisplayName) -> Result<Team> {
    let key = tenant.key(TEAM);
    for _ in 0..CONFLICT_ATTEMPTS {
        let item = store
            .kv
            .get(&key)
            .await?
            .ok_or_else(|| AccountError::TeamMissing)?;
        let mut team = Versioned::<TeamRecord>::read(&item)?;
        team.record.name = name.clone();
        match store
            .kv
            .put(team.next_item(key.clone())?, team.unchanged())
            .await
        {
            Ok(()) => {
                tracing::info!(tenant = %tenant.id(), "team renamed");
                return Ok(team.record.into());
            }
            Err(err) if err.is_conflict() => continue,
            Err(err) => return Err(err.into()),
        }
    }
    Err(AccountError::ConcurrentUpdate)
}

/// Takes every way into a team away at once, for a team being deleted: its members
/// (with their addresses, which become free to sign up with), API keys and invites go,
/// with the global lookups that authenticate them, so no session, key or invite opens
/// the team from now on. The team's record stays, for its data's deletion to finish.
/// Safe to repeat.
pub async fn revoke_all_access(store: &Store, tenant: &Tenant) -> Result<()> {
    let root = || Query::partition(tenant.root());
    let (users, keys, invites) = futures::try_join!(
        query_docs::<UserRecord>(&*store.kv, root().prefix("user#")),
        query_docs::<ApiKey>(&*store.kv, root().prefix("key#")),
        query_docs::<InviteRecord>(&*store.kv, root().prefix("invite#")),
    )?;
    let mut deletes = Vec::new();
    for key in &keys {
        deletes.push(WriteOp::Delete(key_lookup(key.id)));
        deletes.push(WriteOp::Delete(tenant.key(key_sk(key.id))));
    }
    for record in &invites {
        deletes.push(WriteOp::Delete(invite_lookup(&record.token_hash)));
        deletes.push(WriteOp::Delete(tenant.key(invite_sk(record.invite.id))));
    }
    store.kv.batch_write(deletes).await?;
    for user in &users {
        // An address that was never verified may be another account's by now.
        let address = email_lookup(&user.member.email);
        if let Some(lookup) = store.kv.get(&address).await?
            && read_doc::<EmailRecord>(&lookup)?.user == user.member.id
        {
            match store.kv.delete(&address, unchanged_doc(&lookup)).await {
                Ok(()) | Err(StoreError::ConditionFailed) => {}
                Err(err) => return Err(err.into()),
            }
        }
        store
            .kv
            .batch_write(vec![
                WriteOp::Delete(tenant.key(user_sk(user.member.id))),
                WriteOp::Delete(sessions::seen_key(tenant, user.member.id)),
            ])
            .await?;
    }
    tracing::info!(
        tenant = %tenant.id(),
        members = users.len(),
        keys = keys.len(),
        invites = invites.len(),
        "team access revoked"
    );
    Ok(())
}

/// A member of the team, as others see them.
pub async fn find_member(store: &Store, tenant: &Tenant, id: UserId) -> Result<Member> {
    Ok(member(store, tenant, id).await?.member)
}

/// Sets the name teammates see a member as; serialised with the team's other
/// membership changes, so it never undoes a role change made meanwhile.
pub async fn rename_member(
    store: &Store,
    tenant: &Tenant,
    id: UserId,
    name: DisplayName,
) -> Result<Member> {
    change_membership(store, tenant, |users| {
        let mut updated = find(users, id)?.clone();
        updated.member.name = Some(name.clone());
        Ok(MembershipChange {
            ops: vec![TxOp::Put(
                doc_item(tenant.key(user_sk(id)), &updated)?,
                Condition::Exists,
            )],
            before: Vec::new(),
        })
    })
    .await?;
    find_member(store, tenant, id).await
}
