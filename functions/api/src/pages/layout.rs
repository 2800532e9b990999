//! The frame of every page: head, header (with the team's navigation and the log-out
//! form when signed in), and the error page.

use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use maud::{DOCTYPE, Markup, html};

use sextant_domain::credentials::Role;

use super::security::{CSRF_FIELD, Page};

/// The roles a form offers, least first.
const ROLES: [Role; 3] = [Role::Viewer, Role::Member, Role::Admin];

/// The role a form's field names; `None` for anything else.
pub fn parse_role(text: &str) -> Option<Role> {
    ROLES.into_iter().find(|role| role.as_str() == text)
}

/// A `<select>` of the roles, `selected` chosen.
pub fn role_select(selected: Role) -> Markup {
    html! {
        select name="role" {
            @for role in ROLES {
                option value=(role) selected[role == selected] { (role) }
            }
        }
    }
}

/// Where the page belongs in the navigation, to mark the current section.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    None,
    Projects,
    Keys,
    Members,
    Team,
    Usage,
    Account,
}

fn head(title: &str) -> Markup {
    html! {
        head {
            meta charset="utf-8";
            meta name="viewport" content="width=device-width, initial-scale=1";
            title { (title) " · Sextant" }
            link rel="stylesheet" href=(super::APP_CSS.url());
            script src=(super::APP_JS.url()) defer {}
        }
    }
}

/// The hidden CSRF field of a form.
pub fn csrf_field(csrf: &str) -> Markup {
    html! { input type="hidden" name=(CSRF_FIELD) value=(csrf); }
}

/// A whole page for `page`'s browser: its header (signed in or not) and `body`.
pub fn document(page: &Page, section: Section, title: &str, body: Markup) -> Markup {
    let csrf = page.csrf();
    html! {
        (DOCTYPE)
        html lang="en" {
            (head(title))
            body {
                header.top {
                    a.brand href="/" { "Sextant" }
                    @if let Some(user) = &page.user {
                        nav {
                            a href="/projects" aria-current=[(section == Section::Projects).then_some("page")] { "Projects" }
                            a href="/settings/keys" aria-current=[(section == Section::Keys).then_some("page")] { "API keys" }
                            a #members-link href="/settings/members" aria-current=[(section == Section::Members).then_some("page")] { "Members" }
                            @if user.caller.role == Role::Admin {
                                a #team-link href="/settings/team" aria-current=[(section == Section::Team).then_some("page")] { "Team" }
                            }
                            a href="/usage" aria-current=[(section == Section::Usage).then_some("page")] { "Usage" }
                            a #account-link href="/settings/account" aria-current=[(section == Section::Account).then_some("page")] { "Account" }
                        }
                        span.team { (user.team) }
                        form #logout method="post" action="/logout" {
                            (csrf_field(&csrf))
                            button type="submit" { "Log out" }
                        }
                    } @else {
                        nav {
                            a href="/login" { "Log in" }
                            a href="/signup" { "Sign up" }
                        }
                    }
                }
                @if let Some(banner) = page.user.as_ref().and_then(|user| user.budget_banner.as_ref()) {
                    p.notice.budget-banner #budget-banner role="status" {
                        "This month's spend has reached " (banner.threshold) "% of the team's budget of "
                        (banner.budget) " " (banner.currency) ". "
                        a href="/usage#budget" { "See usage and budget" }
                    }
                }
                main { (body) }
            }
        }
    }
}

/// Renders `body` in the page frame with `status`, and the cookies `page` owes.
pub fn respond(
    page: &Page,
    status: StatusCode,
    section: Section,
    title: &str,
    body: Markup,
) -> Response {
    page.finish(
        (
            status,
            Html(document(page, section, title, body).into_string()),
        )
            .into_response(),
    )
}

/// A page a visitor reads without being signed in and without any form: a shared run.
pub fn bare(title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            (head(title))
            body {
                header.top { span.brand { "Sextant" } }
                main { (body) }
            }
        }
    }
}

/// An error page: the status and what can be done about it, nothing else.
pub fn error_page(status: StatusCode, message: &str) -> Html<String> {
    let title = status.canonical_reason().unwrap_or("Error");
    Html(
        bare(
            title,
            html! {
                section.error-page {
                    h1 { (status.as_u16()) " " (title) }
                    p.error { (message) }
                    p { a href="/" { "Back to Sextant" } }
                }
            },
        )
        .into_string(),
    )
}
