//! `/settings/members`: the team's members and pending invites. Every member sees who
//! is in the team; managing it (inviting, resending and revoking invites, changing
//! roles, removing members) is an admin's job, as in the API, and only admins see its
//! controls and the pending invites.

use std::collections::HashMap;

use axum::extract::Path;
use axum::http::StatusCode;
use maud::{Markup, html};
use sextant_domain::accounts::{self, Email, Invite, Member, invites};
use sextant_domain::credentials::Role;
use sextant_domain::error::Error;
use sextant_domain::ids::{InviteId, UserId};
use sextant_domain::sessions;
use sextant_edge::error;
use sextant_edge::http::PublicUrl;

use super::layout::{Section, csrf_field, parse_role, respond, role_select};
use super::security::{CsrfForm, Page, SignedIn, User, see_other};
use super::{PageError, PageResult, when};

const PAGE: &str = "/settings/members";

/// What the page shows above the lists: an invite just sent, or why an action failed.
enum Notice {
    None,
    Invited {
        email: Email,
        link: String,
        mailed: bool,
    },
    Error(String),
}

async fn render(page: &Page, user: &User, status: StatusCode, notice: Notice) -> PageResult {
    let state = &page.state;
    let tenant = &user.caller.tenant;
    let admin = user.caller.role == Role::Admin;
    let (mut members, last_active) = futures::try_join!(
        async { Ok::<_, Error>(accounts::list_members(&state.store, tenant).await?) },
        async { Ok(sessions::last_active(&state.store, tenant).await?) },
    )?;
    members.sort_by_key(|member| member.created_at);
    let mut pending = if admin {
        accounts::list_invites(&state.store, tenant).await?
    } else {
        Vec::new()
    };
    pending.retain(|invite| invite.expires_at > state.now());
    pending.sort_by_key(|invite| invite.created_at);
    let names: HashMap<UserId, &str> = members
        .iter()
        .map(|member| (member.id, member.display_name()))
        .collect();
    let csrf = page.csrf();
    let body = html! {
        h1 { "Members" }
        p { "Everyone in " strong { (user.team) } ". Admins invite people, change roles and remove members: \
             removing a member revokes their API keys and ends their sessions at once." }
        (notice_markup(&notice))
        table #members {
            thead { tr {
                th { "Name" } th { "E-mail" } th { "Role" } th { "Joined" } th { "Last active" }
                @if admin { th {} }
            } }
            tbody {
                @for member in &members {
                    tr data-member-id=(member.id) {
                        td.member-name {
                            (member.name.as_ref().map_or("", |name| name.as_str()))
                            @if member.id == user.caller.user { " " span.muted { "(you)" } }
                        }
                        td.member-email { (member.email.as_str()) }
                        td.member-role {
                            @if admin {
                                form.change-role .inline method="post" action={ (PAGE) "/" (member.id) "/role" } {
                                    (csrf_field(&csrf))
                                    (role_select(member.role))
                                    button type="submit" { "Change" }
                                }
                            } @else {
                                (member.role)
                            }
                        }
                        td { (when(member.created_at)) }
                        td.member-last-active { (last_active.get(&member.id).map_or_else(|| "never".to_owned(), |at| when(*at))) }
                        @if admin {
                            td { a.remove-member .button.danger href={ (PAGE) "/" (member.id) "/remove" } { "Remove…" } }
                        }
                    }
                }
            }
        }
        @if admin {
            h2 { "Pending invites" }
            @if pending.is_empty() {
                p.empty #no-invites { "No pending invites." }
            } @else {
                table #invites {
                    thead { tr { th { "E-mail" } th { "Role" } th { "Invited by" } th { "Expires" } th {} } }
                    tbody {
                        @for invite in &pending {
                            tr data-invite-id=(invite.id) {
                                td.invite-email { (invite.email.as_str()) }
                                td { (invite.role) }
                                td { (names.get(&invite.invited_by).copied().unwrap_or("a former admin")) }
                                td { (when(invite.expires_at)) }
                                td {
                                    form.resend-invite .inline method="post" action={ (PAGE) "/invites/" (invite.id) "/resend" } {
                                        (csrf_field(&csrf))
                                        button type="submit" { "Resend" }
                                    }
                                    " "
                                    form.revoke-invite .inline method="post" action={ (PAGE) "/invites/" (invite.id) "/revoke" } {
                                        (csrf_field(&csrf))
                                        button.danger type="submit" { "Revoke" }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            h2 { "Invite someone" }
            p { "They get a mail with a link to join, valid for a week, that works once." }
            form #invite .inline method="post" action={ (PAGE) "/invites" } {
                (csrf_field(&csrf))
                label { "E-mail " input type="email" name="email" required autocomplete="off"; }
                label { "Role " (role_select(Role::Member)) }
                button type="submit" { "Send invite" }
            }
        }
    };
    Ok(respond(page, status, Section::Members, "Members", body))
}

fn notice_markup(notice: &Notice) -> Markup {
    html! {
        @match notice {
            Notice::None => {}
            Notice::Invited { email, link, mailed } => {
                div.notice #invite-sent {
                    @if *mailed {
                        p { "An invite is on its way to " strong { (email.as_str()) } ". You can also pass on its link yourself:" }
                    } @else {
                        p { "The invite for " strong { (email.as_str()) } " could not be mailed. Pass on its link yourself:" }
                    }
                    p.secret {
                        code #invite-link { (link) }
                        " "
                        button type="button" data-copy="#invite-link" { "Copy" }
                    }
                }
            }
            Notice::Error(message) => { p.error role="alert" { (message) } }
        }
    }
}

/// The page again after an action: its notice, or a client error as the page's
/// message with its status.
async fn after(page: &Page, user: &User, outcome: Result<Notice, Error>) -> PageResult {
    match outcome {
        Ok(notice) => render(page, user, StatusCode::OK, notice).await,
        Err(err) if error::status(err.code()).is_client_error() => {
            let status = error::status(err.code());
            render(page, user, status, Notice::Error(err.message().to_owned())).await
        }
        Err(err) => Err(err.into()),
    }
}

/// `GET /settings/members`.
pub async fn page(SignedIn(page, user): SignedIn) -> PageResult {
    render(&page, &user, StatusCode::OK, Notice::None).await
}

/// Mails a created or renewed invite, for the notice that shows its link.
async fn sent(
    page: &Page,
    user: &User,
    public: &PublicUrl,
    (invite, token): (Invite, String),
) -> Notice {
    let link = invites::join_link(&public.0, &token);
    let mailed = page
        .state
        .mail_invite(&user.caller.tenant, &invite, &link)
        .await;
    Notice::Invited {
        email: invite.email,
        link: link.into(),
        mailed,
    }
}

/// `POST /settings/members/invites`.
pub async fn invite(
    SignedIn(page, user): SignedIn,
    public: PublicUrl,
    form: CsrfForm,
) -> PageResult {
    user.require(Role::Admin)?;
    let outcome = async {
        let email = Email::parse(form.get("email"))?;
        let role = parse_role(form.get("role")).unwrap_or(Role::Member);
        let created = accounts::create_invite(
            &page.state.store,
            page.state.settings.invite_ttl,
            &user.caller.tenant,
            user.caller.user,
            email,
            role,
        )
        .await?;
        Ok(sent(&page, &user, &public, created).await)
    }
    .await;
    after(&page, &user, outcome).await
}

fn invite_id(id: &str) -> Result<InviteId, PageError> {
    id.parse().map_err(|_| PageError::not_found())
}

fn member_id(id: &str) -> Result<UserId, PageError> {
    id.parse().map_err(|_| PageError::not_found())
}

/// `POST /settings/members/invites/{id}/resend`: a new link, mailed again.
pub async fn resend(
    SignedIn(page, user): SignedIn,
    public: PublicUrl,
    Path(id): Path<String>,
    _: CsrfForm,
) -> PageResult {
    user.require(Role::Admin)?;
    let id = invite_id(&id)?;
    let outcome = async {
        let renewed = invites::renew(
            &page.state.store,
            page.state.settings.invite_ttl,
            &user.caller.tenant,
            id,
        )
        .await?;
        Ok(sent(&page, &user, &public, renewed).await)
    }
    .await;
    after(&page, &user, outcome).await
}

/// `POST /settings/members/invites/{id}/revoke`.
pub async fn revoke_invite(
    SignedIn(page, user): SignedIn,
    Path(id): Path<String>,
    _: CsrfForm,
) -> PageResult {
    user.require(Role::Admin)?;
    let id = invite_id(&id)?;
    accounts::revoke_invite(&page.state.store, &user.caller.tenant, id).await?;
    Ok(page.finish(see_other(PAGE)))
}

/// `POST /settings/members/{id}/role`.
pub async fn change_role(
    SignedIn(page, user): SignedIn,
    Path(id): Path<String>,
    form: CsrfForm,
) -> PageResult {
    user.require(Role::Admin)?;
    let id = member_id(&id)?;
    let Some(role) = parse_role(form.get("role")) else {
        return render(
            &page,
            &user,
            StatusCode::BAD_REQUEST,
            Notice::Error("Choose a role: viewer, member or admin.".into()),
        )
        .await;
    };
    match accounts::change_role(&page.state.store, &user.caller.tenant, id, role).await {
        Ok(_) => Ok(page.finish(see_other(PAGE))),
        Err(err) => after(&page, &user, Err(err.into())).await,
    }
}

/// The member `id` names in the signed-in member's team, or a 404 page.
async fn member(page: &Page, user: &User, id: &str) -> Result<Member, PageError> {
    let id = member_id(id)?;
    Ok(accounts::find_member(&page.state.store, &user.caller.tenant, id).await?)
}

/// `GET /settings/members/{id}/remove`: what removing the member does, and the button
/// that does it.
pub async fn remove_form(SignedIn(page, user): SignedIn, Path(id): Path<String>) -> PageResult {
    user.require(Role::Admin)?;
    let member = member(&page, &user, &id).await?;
    let keys = accounts::list_api_keys(&page.state.store, &user.caller.tenant)
        .await?
        .into_iter()
        .filter(|key| key.owner == member.id)
        .count();
    let who = member.display_name();
    let body = html! {
        section.narrow {
            h1 { "Remove " (who) "?" }
            p { (who) " (" (member.email.as_str()) ", " (member.role) ") leaves " strong { (user.team) } ". At once:" }
            ul #removal-effects {
                li { @match keys {
                    0 => "They have no API keys.",
                    1 => "Their API key is revoked: code logging with it is refused from its next call.",
                    n => { "Their " (n) " API keys are revoked: code logging with them is refused from its next call." }
                } }
                li { "Their sessions end: they are logged out on their next request." }
                @if member.id == user.caller.user { li { strong { "This is you: you lose access to the team." } } }
                li { "The runs they logged stay with the team." }
            }
            form #remove-member method="post" action={ (PAGE) "/" (member.id) "/remove" } {
                (csrf_field(&page.csrf()))
                button.danger type="submit" { "Remove " (who) }
                " "
                a href=(PAGE) { "Cancel" }
            }
        }
    };
    Ok(respond(
        &page,
        StatusCode::OK,
        Section::Members,
        "Remove a member",
        body,
    ))
}

/// `POST /settings/members/{id}/remove`.
pub async fn remove(
    SignedIn(page, user): SignedIn,
    Path(id): Path<String>,
    _: CsrfForm,
) -> PageResult {
    user.require(Role::Admin)?;
    let id = member_id(&id)?;
    match accounts::remove_member(&page.state.store, &user.caller.tenant, id).await {
        Ok(()) => Ok(page.finish(see_other(PAGE))),
        Err(err) => after(&page, &user, Err(err.into())).await,
    }
}
