//! A member's own account in the browser: the mailed links (`/verify`, `/reset`), a
//! forgotten password (`/forgot`), and `/settings/account` (the address, the password,
//! the sessions). A mailed link opens a page with a button, never an action on `GET`:
//! mail scanners fetch links, and must not use them up.

use axum::extract::{Path, Query};
use axum::http::StatusCode;
use axum::response::Response;
use maud::{Markup, html};
use serde::Deserialize;
use sextant_domain::accounts::{self, DisplayName, EmailStatus, recovery};
use sextant_domain::credentials::Credential;
use sextant_domain::credentials::password::Password;
use sextant_domain::error::{Error, ErrorCode};
use sextant_domain::sessions;
use sextant_edge::error;
use sextant_edge::http::{ClientAddr, PublicUrl};

use super::layout::{Section, csrf_field, respond};
use super::security::{CsrfForm, Page, SignedIn, User, see_other};
use super::{PageError, PageResult, when};

#[derive(Debug, Deserialize)]
pub struct LinkQuery {
    #[serde(default)]
    token: String,
}

fn message(title: &str, lines: Markup) -> Markup {
    html! {
        section.narrow {
            h1 { (title) }
            (lines)
        }
    }
}

/// A client error shown as the page's message with its status; anything else is an
/// error page.
fn refusal(err: Error) -> Result<(StatusCode, String), PageError> {
    let status = error::status(err.code());
    if status.is_client_error() {
        Ok((status, err.message().to_owned()))
    } else {
        Err(err.into())
    }
}

/// `GET /verify?token=`: a button that verifies the address.
pub async fn verify_form(page: Page, Query(link): Query<LinkQuery>) -> Response {
    let body = message(
        "Confirm your address",
        html! {
            p { "Confirm that this address is yours, so that it logs you in and receives your mail." }
            form #verify method="post" action="/verify" {
                (csrf_field(&page.csrf()))
                input type="hidden" name="token" value=(link.token);
                button type="submit" { "Confirm my address" }
            }
        },
    );
    respond(
        &page,
        StatusCode::OK,
        Section::None,
        "Confirm your address",
        body,
    )
}

/// `POST /verify`.
pub async fn verify(page: Page, form: CsrfForm) -> PageResult {
    match recovery::verify_email(&page.state.store, form.get("token"))
        .await
        .map_err(Error::from)
    {
        Ok(email) => {
            let body = message(
                "Address confirmed",
                html! {
                    p #verified { "Thank you: " strong { (email.as_str()) } " is confirmed as yours." }
                    p { a.button href=(if page.user.is_some() { "/projects" } else { "/login" }) { "Continue" } }
                },
            );
            Ok(respond(
                &page,
                StatusCode::OK,
                Section::None,
                "Address confirmed",
                body,
            ))
        }
        Err(err) => {
            let (status, why) = refusal(err)?;
            let body = message(
                "This link did not work",
                html! {
                    p.error role="alert" { (why) }
                    p { "Signed in, you can ask for a new link on " a href="/settings/account" { "your account page" } "." }
                },
            );
            Ok(respond(
                &page,
                status,
                Section::None,
                "Link not valid",
                body,
            ))
        }
    }
}

fn forgot_body(csrf: &str, error: Option<&str>) -> Markup {
    message(
        "Forgot your password?",
        html! {
            @if let Some(error) = error { p.error role="alert" { (error) } }
            p { "Enter your address: if it has an account, a link to set a new password is on its way. It works once, for 30 minutes." }
            form #forgot method="post" action="/forgot" {
                (csrf_field(csrf))
                label { "E-mail" input type="email" name="email" required autocomplete="email"; }
                button type="submit" { "Send me a link" }
            }
        },
    )
}

/// `GET /forgot`.
pub async fn forgot_form(page: Page) -> Response {
    let body = forgot_body(&page.csrf(), None);
    respond(
        &page,
        StatusCode::OK,
        Section::None,
        "Forgot your password",
        body,
    )
}

/// `POST /forgot`: the same page whether or not the address has an account.
pub async fn forgot(
    page: Page,
    ClientAddr(client): ClientAddr,
    PublicUrl(base): PublicUrl,
    form: CsrfForm,
) -> PageResult {
    let Some(postman) = page.state.postman.as_deref() else {
        return Err(Error::new(ErrorCode::Unavailable, "this deployment sends no mail").into());
    };
    let sent =
        recovery::request_reset(&page.state.store, postman, &base, form.get("email"), client)
            .await
            .map_err(Error::from);
    if let Err(err) = sent {
        let (status, why) = refusal(err)?;
        let body = forgot_body(&page.csrf(), Some(&why));
        return Ok(respond(
            &page,
            status,
            Section::None,
            "Forgot your password",
            body,
        ));
    }
    let body = message(
        "Check your mail",
        html! {
            p #reset-sent { "If an account has this address, a link to set a new password is on its way. It works once, for 30 minutes." }
            p { a href="/login" { "Back to log in" } }
        },
    );
    Ok(respond(
        &page,
        StatusCode::ACCEPTED,
        Section::None,
        "Check your mail",
        body,
    ))
}

fn reset_body(csrf: &str, token: &str, error: Option<&str>) -> Markup {
    message(
        "Set a new password",
        html! {
            @if let Some(error) = error { p.error role="alert" { (error) } }
            p { "Setting it signs you out everywhere; your API keys keep working." }
            form #reset method="post" action="/reset" {
                (csrf_field(csrf))
                input type="hidden" name="token" value=(token);
                label { "New password (12 characters or more)" input type="password" name="password" required minlength="12" autocomplete="new-password"; }
                button type="submit" { "Set password" }
            }
        },
    )
}

/// `GET /reset?token=`.
pub async fn reset_form(page: Page, Query(link): Query<LinkQuery>) -> Response {
    let body = reset_body(&page.csrf(), &link.token, None);
    respond(
        &page,
        StatusCode::OK,
        Section::None,
        "Set a new password",
        body,
    )
}

/// `POST /reset`: the password set, and the browser sent to log in with it.
pub async fn reset(mut page: Page, ClientAddr(client): ClientAddr, form: CsrfForm) -> PageResult {
    let token = form.get("token");
    let attempt: Result<(), Error> = async {
        let password = Password::parse(form.get("password").to_owned())?;
        Ok(recovery::reset_password(&page.state.store, token, password, client).await?)
    }
    .await;
    if let Err(err) = attempt {
        let (status, why) = refusal(err)?;
        let body = reset_body(&page.csrf(), token, Some(&why));
        return Ok(respond(
            &page,
            status,
            Section::None,
            "Set a new password",
            body,
        ));
    }
    // Whatever session this browser had ended with the reset.
    page.rotate_csrf();
    let mut response = page.finish(see_other("/login?reset=1"));
    page.end_session(&mut response).await?;
    Ok(response)
}

/// What the account page says above its sections after a form.
enum Notice {
    None,
    Done(&'static str),
    Error(String),
}

async fn render(page: &Page, user: &User, status: StatusCode, notice: Notice) -> PageResult {
    let caller = &user.caller;
    let current = match caller.credential {
        Credential::Session { sid } => sid,
        _ => None,
    };
    let store = &page.state.store;
    let (email, email_status) = accounts::email_status(store, &caller.tenant, caller.user).await?;
    let me = accounts::find_member(store, &caller.tenant, caller.user).await?;
    let sessions = sessions::list(store, &caller.tenant, caller.user, current).await?;
    let csrf = page.csrf();
    let body = html! {
        h1 { "Your account" }
        @match &notice {
            Notice::None => {}
            Notice::Done(what) => { p.notice #account-notice { (what) } }
            Notice::Error(why) => { p.error role="alert" { (why) } }
        }
        h2 { "Name" }
        form #rename-me .inline method="post" action="/settings/account/name" {
            (csrf_field(&csrf))
            label { "What your teammates see you as "
                input type="text" name="name" value=(me.name.as_ref().map_or("", |name| name.as_str())) required maxlength="100" autocomplete="name"; }
            button type="submit" { "Save" }
        }
        h2 { "Address" }
        p #email { strong { (email.as_str()) } " "
            @match email_status {
                EmailStatus::Verified => { span.badge #email-status { "confirmed" } }
                EmailStatus::Held { email_held_until } => {
                    span.badge #email-status { "not confirmed" }
                    " It is kept for you until " (when(email_held_until)) "; confirm it from the mail we sent."
                }
                EmailStatus::Released => {
                    span.badge #email-status { "released" }
                    " It was not confirmed within a day and another account has taken it: it no longer logs you in. Your sessions and API keys keep working."
                }
            }
        }
        @if let EmailStatus::Held { .. } = email_status {
            form #resend-verification .inline method="post" action="/settings/account/verify" {
                (csrf_field(&csrf))
                button type="submit" { "Send the link again" }
            }
        }
        h2 { "Password" }
        form #change-password method="post" action="/settings/account/password" {
            (csrf_field(&csrf))
            label { "Current password" input type="password" name="current_password" required autocomplete="current-password"; }
            label { "New password (12 characters or more)" input type="password" name="new_password" required minlength="12" autocomplete="new-password"; }
            button type="submit" { "Change password" }
        }
        p { "Changing it signs you out everywhere else." }
        h2 { "Sessions" }
        table #sessions {
            thead { tr { th { "Signed in" } th { "Last used" } th { "From" } th { "Browser" } th {} } }
            tbody {
                @for session in &sessions {
                    tr data-session-id=(session.id) {
                        td { (when(session.created_at)) }
                        td { (when(session.last_used_at)) }
                        td { code { (session.address) } }
                        td { (session.user_agent.as_deref().unwrap_or("")) }
                        td {
                            @if session.current {
                                "this browser"
                            } @else {
                                form.end-session .inline method="post" action={ "/settings/account/sessions/" (session.id) "/end" } {
                                    (csrf_field(&csrf))
                                    button.danger type="submit" { "End" }
                                }
                            }
                        }
                    }
                }
            }
        }
        @if sessions.iter().any(|session| !session.current) {
            form #end-other-sessions method="post" action="/settings/account/sessions/end-others" {
                (csrf_field(&csrf))
                button.danger type="submit" { "End every other session" }
            }
        }
    };
    Ok(respond(
        page,
        status,
        Section::Account,
        "Your account",
        body,
    ))
}

/// `GET /settings/account`.
pub async fn page(SignedIn(page, user): SignedIn) -> PageResult {
    render(&page, &user, StatusCode::OK, Notice::None).await
}

/// `POST /settings/account/verify`: a new link to the member's address.
pub async fn resend(
    SignedIn(page, user): SignedIn,
    PublicUrl(base): PublicUrl,
    _: CsrfForm,
) -> PageResult {
    let Some(postman) = page.state.postman.as_deref() else {
        return Err(Error::new(ErrorCode::Unavailable, "this deployment sends no mail").into());
    };
    let caller = &user.caller;
    match recovery::start_verification(
        &page.state.store,
        postman,
        &base,
        &caller.tenant,
        caller.user,
    )
    .await
    .map_err(Error::from)
    {
        Ok(()) => {
            render(
                &page,
                &user,
                StatusCode::OK,
                Notice::Done("A new link is on its way."),
            )
            .await
        }
        Err(err) => {
            let (status, why) = refusal(err)?;
            render(&page, &user, status, Notice::Error(why)).await
        }
    }
}

/// `POST /settings/account/name`.
pub async fn rename(SignedIn(page, user): SignedIn, form: CsrfForm) -> PageResult {
    let caller = &user.caller;
    let renamed = match DisplayName::parse("name", form.get("name")) {
        Ok(name) => {
            accounts::rename_member(&page.state.store, &caller.tenant, caller.user, name).await
        }
        Err(err) => Err(err),
    }
    .map_err(Error::from);
    match renamed {
        Ok(_) => {
            render(
                &page,
                &user,
                StatusCode::OK,
                Notice::Done("Your name is saved."),
            )
            .await
        }
        Err(err) => {
            let (status, why) = refusal(err)?;
            render(&page, &user, status, Notice::Error(why)).await
        }
    }
}

/// `POST /settings/account/password`.
pub async fn change_password(
    SignedIn(page, user): SignedIn,
    ClientAddr(client): ClientAddr,
    form: CsrfForm,
) -> PageResult {
    let caller = &user.caller;
    let Credential::Session { sid } = caller.credential else {
        return Err(PageError::Redirect("/login".into()));
    };
    let attempt: Result<(), Error> = async {
        let new_password = Password::parse(form.get("new_password").to_owned())?;
        Ok(recovery::change_password(
            &page.state.store,
            &caller.tenant,
            caller.user,
            sid,
            form.get("current_password").to_owned(),
            new_password,
            client,
        )
        .await?)
    }
    .await;
    match attempt {
        Ok(()) => {
            let done = "Your password is changed, and your other sessions ended.";
            render(&page, &user, StatusCode::OK, Notice::Done(done)).await
        }
        Err(err) => {
            let (status, why) = refusal(err)?;
            render(&page, &user, status, Notice::Error(why)).await
        }
    }
}

/// `POST /settings/account/sessions/{id}/end`.
pub async fn end_session(
    SignedIn(page, user): SignedIn,
    Path(id): Path<String>,
    _: CsrfForm,
) -> PageResult {
    let caller = &user.caller;
    if !sessions::end(&page.state.store, &caller.tenant, caller.user, &id).await? {
        return Err(PageError::not_found());
    }
    Ok(page.finish(see_other("/settings/account")))
}

/// `POST /settings/account/sessions/end-others`.
pub async fn end_other_sessions(SignedIn(page, user): SignedIn, _: CsrfForm) -> PageResult {
    let caller = &user.caller;
    let current = match caller.credential {
        Credential::Session { sid } => sid,
        _ => None,
    };
    sessions::end_all(&page.state.store, &caller.tenant, caller.user, current).await?;
    Ok(page.finish(see_other("/settings/account")))
}
