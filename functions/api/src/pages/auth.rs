//! Landing, sign-up, log-in and log-out.

use axum::extract::Query;
use axum::http::StatusCode;
use axum::response::Response;
use maud::{Markup, html};
use sextant_domain::accounts::{self, DisplayName, Email};
use sextant_domain::credentials::Plane;
use sextant_domain::credentials::password::Password;
use sextant_domain::error::Error;
use sextant_edge::auth;
use sextant_edge::error;
use sextant_edge::http::{PublicUrl, SessionClient};

use super::layout::{Section, csrf_field, respond};
use super::security::{CsrfForm, Page, see_other};
use super::{PageError, PageResult};

/// `GET /`: the projects for a signed-in member, otherwise what Sextant is.
pub async fn landing(page: Page) -> Response {
    if page.user.is_some() {
        return page.finish(see_other("/projects"));
    }
    let body = html! {
        section.landing {
            h1 { "Sextant" }
            p.lead {
                "Experiment tracking for machine-learning teams: log parameters, metrics, \
                 text, images and checkpoints from training code, then browse, compare and \
                 share runs. Pay only for the points you log and the bytes you store."
            }
            p.actions {
                a #signup-link .button href="/signup" { "Sign up your team" }
                " "
                a #login-link href="/login" { "Log in" }
            }
        }
    };
    respond(&page, StatusCode::OK, Section::None, "Welcome", body)
}

fn error_line(error: Option<&str>) -> Markup {
    html! {
        @if let Some(error) = error {
            p.error role="alert" { (error) }
        }
    }
}

fn signup_body(csrf: &str, team: &str, email: &str, error: Option<&str>) -> Markup {
    html! {
        section.narrow {
            h1 { "Sign up your team" }
            (error_line(error))
            form #signup method="post" action="/signup" {
                (csrf_field(csrf))
                label { "Team name" input type="text" name="team" value=(team) required maxlength="100" autocomplete="organization"; }
                label { "E-mail" input type="email" name="email" value=(email) required autocomplete="email"; }
                label { "Password (12 characters or more)" input type="password" name="password" required minlength="12" autocomplete="new-password"; }
                button type="submit" { "Create team" }
            }
            p { "Already have an account? " a href="/login" { "Log in" } }
        }
    }
}

/// `GET /signup`.
pub async fn signup_form(page: Page) -> Response {
    let body = signup_body(&page.csrf(), "", "", None);
    respond(&page, StatusCode::OK, Section::None, "Sign up", body)
}

fn sdk_snippet(url: &str, api_key: &str) -> String {
    format!(
        "pip install ./sdk/python        # from a checkout of the Sextant repository\n\
         export SEXTANT_URL={url}\n\
         export SEXTANT_API_KEY={api_key}\n\
         \n\
         import sextant\n\
         \n\
         with sextant.init(project=\"my-project\", name=\"baseline\", params={{\"lr\": 3e-4}}) as run:\n\
         \x20   for step in range(1000):\n\
         \x20       run.log({{\"train/loss\": 1 / (step + 1)}}, step=step)\n"
    )
}

/// `POST /signup`: creates the team, signs its first admin in and shows the team's
/// first API key, this once.
pub async fn signup(
    mut page: Page,
    SessionClient(client): SessionClient,
    public_url: PublicUrl,
    form: CsrfForm,
) -> PageResult {
    let (team, email) = (form.get("team"), form.get("email"));
    let attempt: Result<_, Error> = async {
        let team = DisplayName::parse("team", team)?;
        let email = Email::parse(email)?;
        let password = Password::parse(form.get("password").to_owned())?;
        let signed_up = accounts::signup(
            &page.state.store,
            page.state.sessions(),
            team,
            email,
            password,
            client,
        )
        .await?;
        Ok(signed_up)
    }
    .await;
    let signed_up = match attempt {
        Ok(signed_up) => signed_up,
        Err(err) if error::status(err.code()).is_client_error() => {
            let body = signup_body(&page.csrf(), team, email, Some(err.message()));
            return Ok(respond(
                &page,
                error::status(err.code()),
                Section::None,
                "Sign up",
                body,
            ));
        }
        Err(err) => return Err(PageError::from(err)),
    };
    page.state
        .mail_verification_link(&public_url.0, &signed_up.session)
        .await;
    page.rotate_csrf();
    page.user = Some(super::security::User {
        caller: auth::authenticate(&page.state, &signed_up.session.token, Plane::Control).await?,
        team: team.trim().to_owned(),
        // A team signed up this instant has no budget.
        budget_banner: None,
    });
    let url = public_url.0.as_str().trim_end_matches('/').to_owned();
    let body = html! {
        section.narrow {
            h1 { "Welcome to Sextant" }
            p { "Your team is ready. This is its first API key. It is shown only now: copy it somewhere safe." }
            p #verify-notice {
                "We sent a link to " strong { (email) } " to confirm it is yours. Everything works meanwhile;                  the address is kept for you for 24 hours."
            }
            p.secret {
                code #api-key { (signed_up.api_key) }
                " "
                button type="button" data-copy="#api-key" { "Copy" }
            }
            h2 { "Log your first run" }
            p { "Install the Python SDK, set the URL and key, and log from your training code:" }
            pre #sdk-snippet { (sdk_snippet(&url, &signed_up.api_key)) }
            p { button type="button" data-copy="#sdk-snippet" { "Copy snippet" } }
            p { a #continue .button href="/projects" { "Continue to your projects" } }
        }
    };
    let mut response = respond(&page, StatusCode::OK, Section::None, "Welcome", body);
    page.start_session(&mut response, &signed_up.session.token);
    Ok(response)
}

fn login_body(csrf: &str, email: &str, error: Option<&str>, notice: Option<&str>) -> Markup {
    html! {
        section.narrow {
            h1 { "Log in" }
            @if let Some(notice) = notice {
                p.notice #login-notice { (notice) }
            }
            (error_line(error))
            form #login method="post" action="/login" {
                (csrf_field(csrf))
                label { "E-mail" input type="email" name="email" value=(email) required autocomplete="email"; }
                label { "Password" input type="password" name="password" required autocomplete="current-password"; }
                button type="submit" { "Log in" }
            }
            p { a #forgot-link href="/forgot" { "Forgot your password?" } }
            p { "New here? " a href="/signup" { "Sign up your team" } }
        }
    }
}

#[derive(Debug, serde::Deserialize)]
pub struct LoginQuery {
    /// Set when a password reset sent the browser here.
    #[serde(default)]
    reset: Option<String>,
}

/// `GET /login`.
pub async fn login_form(page: Page, Query(query): Query<LoginQuery>) -> Response {
    let notice = query
        .reset
        .is_some()
        .then_some("Your password is set: log in with it.");
    let body = login_body(&page.csrf(), "", None, notice);
    respond(&page, StatusCode::OK, Section::None, "Log in", body)
}

/// `POST /login`: a session cookie and the projects, or the form again with 401.
pub async fn login(
    mut page: Page,
    SessionClient(client): SessionClient,
    form: CsrfForm,
) -> PageResult {
    let email = form.get("email");
    let password = form.get("password").to_owned();
    match accounts::login(
        &page.state.store,
        page.state.sessions(),
        email,
        password,
        client,
    )
    .await
    .map_err(Error::from)
    {
        Ok(session) => {
            page.rotate_csrf();
            let mut response = page.finish(see_other("/projects"));
            page.start_session(&mut response, &session.token);
            Ok(response)
        }
        Err(err) if error::status(err.code()).is_client_error() => {
            let body = login_body(&page.csrf(), email, Some(err.message()), None);
            Ok(respond(
                &page,
                error::status(err.code()),
                Section::None,
                "Log in",
                body,
            ))
        }
        Err(err) => Err(err.into()),
    }
}

/// `POST /logout`: the session cookie goes, and the browser is back on the landing page.
pub async fn logout(mut page: Page, _: CsrfForm) -> PageResult {
    page.rotate_csrf();
    let mut response = page.finish(see_other("/"));
    page.end_session(&mut response).await?;
    Ok(response)
}
