//! What an invite's holder sees before joining, a fresh link for a pending invite,
//! and the letter that carries it. Creating, listing, revoking and accepting invites
//! live with the rest of membership in `accounts`.

use time::OffsetDateTime;

use super::{
    AccountError, Email, EmailRecord, InviteLookup, InviteRecord, Result, TEAM, TeamRecord,
    UserRecord, email_lookup, hash_token, invite_lookup, invite_sk, invite_token, user_sk,
};
use crate::credentials::Role;
use crate::ids::InviteId;
use crate::postman::{self, Postman};
use crate::tenancy::Tenant;
use sextant_storage::Store;
use sextant_storage::kv::{Condition, TxOp};
use sextant_storage::records::{get_doc, read_doc, unchanged_doc};

/// The page an invite's link opens: `{base}/join/{token}`.
pub fn join_link(base: &url::Url, token: &str) -> url::Url {
    let mut link = base.clone();
    if let Ok(mut path) = link.path_segments_mut() {
        path.pop_if_empty().extend(["join", token]);
    }
    link
}

/// A pending invite as its holder sees it, before joining.
#[derive(Debug, Clone, PartialEq)]
pub struct Invitation {
    pub team: String,
    /// Who sent it, by name (or address).
    pub inviter: String,
    pub email: Email,
    pub role: Role,
    pub expires_at: OffsetDateTime,
    /// The address already belongs to an account. An address is one account in one
    /// team, so accepting is refused (`email_taken`) until that account lets it go.
    pub address_taken: bool,
}

/// The invite `token` opens: `InviteNotFound` for one unknown, used, revoked or
/// expired, all alike.
pub async fn open(store: &Store, token: &str) -> Result<Invitation> {
    let gone = || AccountError::InviteNotFound;
    let lookup = get_doc::<InviteLookup>(&*store.kv, &invite_lookup(&hash_token(token)))
        .await?
        .ok_or_else(gone)?;
    let tenant = Tenant::verified(lookup.tenant);
    let record = get_doc::<InviteRecord>(&*store.kv, &tenant.key(invite_sk(lookup.invite)))
        .await?
        .filter(|record| record.invite.expires_at >= store.now())
        .ok_or_else(gone)?;
    let invite = record.invite;
    let (team_key, inviter_key, holder_key) = (
        tenant.key(TEAM),
        tenant.key(user_sk(invite.invited_by)),
        email_lookup(&invite.email),
    );
    let (team, inviter, holder) = futures::try_join!(
        get_doc::<TeamRecord>(&*store.kv, &team_key),
        get_doc::<UserRecord>(&*store.kv, &inviter_key),
        get_doc::<EmailRecord>(&*store.kv, &holder_key),
    )?;
    // Removing an admin takes back their invites; one left behind opens nothing.
    let (Some(team), Some(inviter)) = (team, inviter) else {
        return Err(gone());
    };
    Ok(Invitation {
        team: team.name.0,
        inviter: inviter.member.display_name().to_owned(),
        address_taken: holder.is_some_and(|holder| !holder.free_to_take(store.now())),
        email: invite.email,
        role: invite.role,
        expires_at: invite.expires_at,
    })
}

/// A new token for a pending invite, for another `invite_ttl`: the old link stops
/// working. Refused like a new invite once the address has an account.
pub async fn renew(
    store: &Store,
    invite_ttl: time::Duration,
    tenant: &Tenant,
    id: InviteId,
) -> Result<(super::Invite, String)> {
    let key = tenant.key(invite_sk(id));
    let current = store
        .kv
        .get(&key)
        .await?
        .ok_or_else(|| AccountError::InviteNotFound)?;
    let mut record: InviteRecord = read_doc(&current)?;
    if store
        .kv
        .get(&email_lookup(&record.invite.email))
        .await?
        .is_some()
    {
        return Err(AccountError::EmailTaken);
    }
    let old_lookup = invite_lookup(&record.token_hash);
    let (token, token_hash) = invite_token();
    record.token_hash = token_hash;
    record.invite.expires_at = store.now() + invite_ttl;
    let renewed = store
        .kv
        .transact(vec![
            TxOp::Delete(old_lookup, Condition::None),
            TxOp::Put(record.item(tenant)?, unchanged_doc(&current)),
            TxOp::Put(record.lookup_item(tenant)?, Condition::NotExists),
        ])
        .await;
    match renewed {
        Ok(()) => Ok((record.invite, token)),
        // Accepted, revoked or renewed meanwhile: this renewal made nothing.
        Err(err) if err.is_conflict() => Err(AccountError::ConcurrentUpdate),
        Err(err) => Err(err.into()),
    }
}

/// Mails `invite`'s link (`join_link`) to the invitee, naming the team and the admin
/// who sent it; answers whether the letter was handed over.
pub async fn mail(
    store: &Store,
    postman: &Postman,
    tenant: &Tenant,
    invite: &super::Invite,
    link: &url::Url,
) -> Result<bool> {
    let team_key = tenant.key(TEAM);
    let (team, inviter) = futures::try_join!(
        async { Ok(get_doc::<TeamRecord>(&*store.kv, &team_key).await?) },
        super::member(store, tenant, invite.invited_by),
    )?;
    let team = team.ok_or(AccountError::TeamMissing)?;
    let letter = postman::invite(
        invite.email.as_str(),
        team.name.as_str(),
        inviter.member.display_name(),
        link,
        invite.expires_at - store.now(),
    );
    Ok(postman.deliver(letter).await)
}
