//! `/settings/team`: an admin renames the team, or deletes it with everything it holds
//! (typing its name to confirm). Only admins see or send these forms.

use axum::http::StatusCode;
use axum::response::{Html, IntoResponse};
use maud::html;
use sextant_domain::accounts::{self, DisplayName};
use sextant_domain::credentials::Role;
use sextant_domain::error::Error;
use sextant_edge::error;

use super::PageResult;
use super::layout::{Section, bare, csrf_field, respond};
use super::security::{CsrfForm, Page, SignedIn, User, see_other};

const PAGE: &str = "/settings/team";

/// The page; `typed_name` refills the rename form after a refusal.
fn render(
    page: &Page,
    user: &User,
    status: StatusCode,
    error: Option<&str>,
    typed_name: Option<&str>,
) -> PageResult {
    let csrf = page.csrf();
    let body = html! {
        h1 { "Team" }
        @if let Some(error) = error { p.error role="alert" { (error) } }
        h2 { "Name" }
        form #rename-team .inline method="post" action={ (PAGE) "/name" } {
            (csrf_field(&csrf))
            label { "Team name " input type="text" name="name" value=(typed_name.unwrap_or(&user.team)) required maxlength="100"; }
            button type="submit" { "Rename" }
        }
        h2 { "Delete the team" }
        section.danger-zone {
            p { "Deleting " strong { (user.team) } " removes, at once and for good:" }
            ul {
                li { "every project and run, with their metrics, logs, images and artifacts;" }
                li { "every member (they are logged out, and their addresses are free to sign up again), API key, invite and shared link." }
            }
            p { "What the team logged and stored until now is billed in this month's final report; nothing after it." }
            form #delete-team method="post" action={ (PAGE) "/delete" } {
                (csrf_field(&csrf))
                label { "Type the team's name, " strong { (user.team) } ", to confirm"
                    input type="text" name="confirm" required autocomplete="off"; }
                button.danger type="submit" { "Delete " (user.team) " for good" }
            }
        }
    };
    Ok(respond(page, status, Section::Team, "Team", body))
}

/// `GET /settings/team`.
pub async fn page(SignedIn(page, user): SignedIn) -> PageResult {
    user.require(Role::Admin)?;
    render(&page, &user, StatusCode::OK, None, None)
}

/// `POST /settings/team/name`.
pub async fn rename(SignedIn(page, user): SignedIn, form: CsrfForm) -> PageResult {
    user.require(Role::Admin)?;
    let renamed = match DisplayName::parse("name", form.get("name")) {
        Ok(name) => accounts::rename_team(&page.state.store, &user.caller.tenant, name).await,
        Err(err) => Err(err),
    }
    .map_err(Error::from);
    match renamed {
        Ok(_) => Ok(page.finish(see_other(PAGE))),
        Err(err) if error::status(err.code()).is_client_error() => render(
            &page,
            &user,
            error::status(err.code()),
            Some(err.message()),
            Some(form.get("name")),
        ),
        Err(err) => Err(err.into()),
    }
}

/// `POST /settings/team/delete`: only when the confirmation is the team's name.
pub async fn delete(SignedIn(mut page, user): SignedIn, form: CsrfForm) -> PageResult {
    user.require(Role::Admin)?;
    if form.get("confirm").trim() != user.team {
        return render(
            &page,
            &user,
            StatusCode::BAD_REQUEST,
            Some("The name typed is not the team's: nothing was deleted."),
            None,
        );
    }
    let finished = crate::team::delete_within_request(&page.state, user.caller.tenant).await?;
    let body = html! {
        section.narrow #team-deleted {
            h1 { (user.team) " is deleted" }
            @if finished {
                p { "Its projects, runs, artifacts, members and keys are gone." }
            } @else {
                p { "Nobody can sign in to it any more, and its data is being deleted: it is all gone within the hour." }
            }
            p { "Its usage until now is billed in this month's final report, and nothing after." }
            p { a href="/" { "Back to Sextant" } }
        }
    };
    page.rotate_csrf();
    let mut response = page.finish(
        (
            StatusCode::OK,
            Html(bare("Team deleted", body).into_string()),
        )
            .into_response(),
    );
    page.end_session(&mut response).await?;
    Ok(response)
}
