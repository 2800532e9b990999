//! `/settings/keys`: the team's API keys: create one (its secret shown once), revoke.
//! Managing keys is an admin's job, as in the API.

use axum::extract::Path;
use axum::http::StatusCode;
use maud::{Markup, html};
use sextant_domain::accounts::{self, ApiKey, DisplayName};
use sextant_domain::credentials::Role;
use sextant_domain::error::Error;
use sextant_domain::ids::ApiKeyId;
use sextant_edge::error;
use sextant_edge::http::PublicUrl;

use super::layout::{Section, csrf_field, parse_role, respond, role_select};
use super::security::{CsrfForm, Page, SignedIn, User, see_other};
use super::{PageError, PageResult, when};

/// What the page shows besides the keys: a secret just made, or why a key was not.
enum Notice<'a> {
    None,
    /// A new key, with the `NEPTUNE_API_TOKEN` that wraps it for Neptune's client.
    Created {
        name: &'a str,
        secret: &'a str,
        neptune_token: String,
    },
    Error(&'a str),
}

async fn render(page: &Page, user: &User, status: StatusCode, notice: Notice<'_>) -> PageResult {
    let mut keys: Vec<ApiKey> =
        accounts::list_api_keys(&page.state.store, &user.caller.tenant).await?;
    keys.sort_by_key(|key| key.created_at);
    let csrf = page.csrf();
    let body = html! {
        h1 { "API keys" }
        p { "Training code, the CLI and the MLflow client authenticate with an API key. \
             A key acts for the member who made it, with at most their role." }
        (notice_markup(&notice))
        @if keys.is_empty() {
            p.empty { "No keys." }
        } @else {
            table #keys {
                thead { tr { th { "Name" } th { "Id" } th { "Role" } th { "Created" } th {} } }
                tbody {
                    @for key in &keys {
                        tr data-key-id=(key.id) {
                            td { (key.name.as_str()) }
                            td { code { (key.id) } }
                            td { (key.role) }
                            td { (when(key.created_at)) }
                            td {
                                form.revoke-key .inline method="post" action={ "/settings/keys/" (key.id) "/revoke" } {
                                    (csrf_field(&csrf))
                                    button.danger type="submit" { "Revoke" }
                                }
                            }
                        }
                    }
                }
            }
        }
        h2 { "New key" }
        form #new-key .inline method="post" action="/settings/keys" {
            (csrf_field(&csrf))
            label { "Name " input type="text" name="name" required maxlength="100"; }
            label { "Role " (role_select(Role::Member)) }
            button type="submit" { "Create key" }
        }
    };
    Ok(respond(page, status, Section::Keys, "API keys", body))
}

fn notice_markup(notice: &Notice<'_>) -> Markup {
    html! {
        @match notice {
            Notice::None => {}
            Notice::Created { name, secret, neptune_token } => {
                div.notice {
                    p { "The key " strong { (name) } " is ready. Its secret is shown only now: copy it somewhere safe." }
                    p.secret {
                        code #new-key-secret { (secret) }
                        " "
                        button type="button" data-copy="#new-key-secret" { "Copy" }
                    }
                    p { "Code that logs with Neptune's client (" code { "neptune-scale" } ") logs here with the same key, wrapped as its " code { "NEPTUNE_API_TOKEN" } ":" }
                    p.secret {
                        code #new-key-neptune-token { (neptune_token) }
                        " "
                        button type="button" data-copy="#new-key-neptune-token" { "Copy" }
                    }
                }
            }
            Notice::Error(message) => { p.error role="alert" { (message) } }
        }
    }
}

/// `GET /settings/keys`.
pub async fn page(SignedIn(page, user): SignedIn) -> PageResult {
    user.require(Role::Admin)?;
    render(&page, &user, StatusCode::OK, Notice::None).await
}

/// `POST /settings/keys`: a new key, its secret shown this once.
pub async fn create(
    SignedIn(page, user): SignedIn,
    public: PublicUrl,
    form: CsrfForm,
) -> PageResult {
    user.require(Role::Admin)?;
    let role = parse_role(form.get("role"));
    let created = match DisplayName::parse("name", form.get("name")) {
        Ok(name) => {
            accounts::create_api_key(
                &page.state.store,
                &user.caller.tenant,
                user.caller.user,
                name,
                role,
                None,
            )
            .await
        }
        Err(err) => Err(err),
    }
    .map_err(Error::from);
    match created {
        Ok((_, secret)) => {
            let name = form.get("name").trim();
            render(
                &page,
                &user,
                StatusCode::OK,
                Notice::Created {
                    name,
                    secret: &secret,
                    neptune_token: crate::neptune::api_token(public.0.as_str(), &secret),
                },
            )
            .await
        }
        Err(err) if error::status(err.code()).is_client_error() => {
            render(
                &page,
                &user,
                error::status(err.code()),
                Notice::Error(err.message()),
            )
            .await
        }
        Err(err) => Err(err.into()),
    }
}

/// `POST /settings/keys/{id}/revoke`.
pub async fn revoke(
    SignedIn(page, user): SignedIn,
    Path(id): Path<String>,
    _: CsrfForm,
) -> PageResult {
    user.require(Role::Admin)?;
    let id: ApiKeyId = id.parse().map_err(|_| PageError::not_found())?;
    accounts::revoke_api_key(&page.state.store, &user.caller.tenant, id).await?;
    Ok(page.finish(see_other("/settings/keys")))
}
