//! `/join/{token}`: where an invite's link lands. It names the team and who invited,
//! and asks the newcomer for a name and a password; joining signs them in on the
//! team's projects. A link that opens nothing (unknown, used, revoked, expired) gets a
//! page that says so. As with every mailed link, opening it changes nothing: mail
//! scanners fetch links, and must not use them up.

use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::Response;
use maud::{Markup, html};
use sextant_domain::accounts::{self, AccountError, DisplayName, invites};
use sextant_domain::credentials::password::Password;
use sextant_domain::error::{Error, ErrorCode};
use sextant_edge::error;
use sextant_edge::http::{PublicUrl, SessionClient};

use super::layout::{Section, csrf_field, respond};
use super::security::{CsrfForm, Page, see_other};
use super::{PageResult, when};

fn gone(page: &Page) -> Response {
    let body = html! {
        section.narrow #invite-gone {
            h1 { "This invite link no longer works" }
            p { "It was used already, revoked, or has expired (invites last a week), \
                 or it was copied incompletely." }
            p { "Ask the admin who invited you to send it again from the team's members page." }
            p { "Joined already? " a href="/login" { "Log in" } "." }
        }
    };
    respond(
        page,
        StatusCode::NOT_FOUND,
        Section::None,
        "Invite not valid",
        body,
    )
}

fn taken(page: &Page, invitation: &invites::Invitation) -> Response {
    let body = html! {
        section.narrow #invite-address-taken {
            h1 { "Join " (invitation.team) }
            p { strong { (invitation.email.as_str()) } " already has a Sextant account. \
                An address belongs to one account in one team, so it cannot join "
                (invitation.team) " as well." }
            p { a href="/login" { "Log in" } " with it, or ask " (invitation.inviter)
                " to invite another of your addresses." }
        }
    };
    respond(
        page,
        StatusCode::CONFLICT,
        Section::None,
        "Join a team",
        body,
    )
}

fn join_form(
    page: &Page,
    token: &str,
    invitation: &invites::Invitation,
    name: &str,
    error: Option<&str>,
) -> Markup {
    html! {
        section.narrow {
            h1 { "Join " span #join-team { (invitation.team) } }
            p #join-invited-by {
                (invitation.inviter) " invited " strong { (invitation.email.as_str()) }
                " to join " strong { (invitation.team) } " as " (invitation.role) "."
            }
            @if let Some(user) = &page.user {
                p.notice { "You are logged in to " (user.team) ". Joining logs you out of it." }
            }
            @if let Some(error) = error { p.error role="alert" { (error) } }
            form #join method="post" action={ "/join/" (token) } {
                (csrf_field(&page.csrf()))
                label { "Your name" input type="text" name="name" value=(name) required maxlength="100" autocomplete="name"; }
                label { "Password (12 characters or more)" input type="password" name="password" required minlength="12" autocomplete="new-password"; }
                button type="submit" { "Join " (invitation.team) }
            }
            p.muted { "This link works once, until " (when(invitation.expires_at)) "." }
        }
    }
}

/// What the link opens: the invitation, or the page that says why not.
async fn invitation(page: &Page, token: &str) -> Result<invites::Invitation, PageResult> {
    match invites::open(&page.state.store, token).await {
        Ok(invitation) if invitation.address_taken => Err(Ok(taken(page, &invitation))),
        Ok(invitation) => Ok(invitation),
        Err(AccountError::InviteNotFound) => Err(Ok(gone(page))),
        Err(err) => Err(Err(Error::from(err).into())),
    }
}

/// `GET /join/{token}`.
pub async fn form(page: Page, Path(token): Path<String>) -> PageResult {
    let invitation = match invitation(&page, &token).await {
        Ok(invitation) => invitation,
        Err(answer) => return answer,
    };
    let body = join_form(&page, &token, &invitation, "", None);
    Ok(respond(
        &page,
        StatusCode::OK,
        Section::None,
        "Join a team",
        body,
    ))
}

/// `POST /join/{token}`: the new member, signed in on the team's projects.
pub async fn join(
    mut page: Page,
    SessionClient(client): SessionClient,
    public_url: PublicUrl,
    Path(token): Path<String>,
    form: CsrfForm,
) -> PageResult {
    let invitation = match invitation(&page, &token).await {
        Ok(invitation) => invitation,
        Err(answer) => return answer,
    };
    let attempt: Result<_, Error> = async {
        let name = DisplayName::parse("name", form.get("name"))?;
        let password = Password::parse(form.get("password").to_owned())?;
        Ok(accounts::accept_invite(
            &page.state.store,
            page.state.sessions(),
            &token,
            Some(name),
            password,
            client,
        )
        .await?)
    }
    .await;
    let session = match attempt {
        Ok(session) => session,
        // Used, revoked or expired since the form was shown.
        Err(err) if err.code() == ErrorCode::NotFound => return Ok(gone(&page)),
        Err(err) if err.code() == ErrorCode::EmailTaken => return Ok(taken(&page, &invitation)),
        Err(err) if error::status(err.code()).is_client_error() => {
            let body = join_form(
                &page,
                &token,
                &invitation,
                form.get("name"),
                Some(err.message()),
            );
            return Ok(respond(
                &page,
                error::status(err.code()),
                Section::None,
                "Join a team",
                body,
            ));
        }
        Err(err) => return Err(err.into()),
    };
    page.state
        .mail_verification_link(&public_url.0, &session)
        .await;
    page.rotate_csrf();
    let mut response = page.finish(see_other("/projects"));
    // Whoever was signed in in this browser is signed out: it is the newcomer's now.
    page.end_session(&mut response).await?;
    page.start_session(&mut response, &session.token);
    Ok(response)
}
