//! Saved views of a project's workspace: the forms that save the workspace's current
//! query under a name and delete a view, and `views_section`, which the workspace
//! page renders them with. The workspace page opens a view with `?view=NAME`.

use axum::extract::Path;
use maud::{Markup, html};
use sextant_domain::projects;
use sextant_domain::views::{self, MAX_VIEW_NAME_CHARS, View};

use super::PageResult;
use super::layout::csrf_field;
use super::security::{CsrfForm, SignedIn, see_other};

/// `text` as one query value or path segment: a view's name may hold anything but
/// control characters.
fn encode(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes())
        .collect::<String>()
        // Form encoding writes spaces as '+', which a path keeps literally.
        .replace('+', "%20")
}

/// The workspace showing the view `name`.
pub fn view_url(project: &str, name: &str) -> String {
    format!("/projects/{project}/workspace?view={}", encode(name))
}

fn delete_url(project: &str, name: &str) -> String {
    format!("/projects/{project}/views/{}/delete", encode(name))
}

/// The workspace's list of saved views (each a link that opens it) and, for members
/// and admins, a delete form for each and the form that saves `current_query` as a
/// view. The workspace's script keeps `#save-view-query` equal to the URL's query as
/// the view changes, without its `view` key.
pub fn views_section(
    project: &str,
    views: &[View],
    csrf: &str,
    can_write: bool,
    current_query: &str,
) -> Markup {
    html! {
        section #views {
            h2 { "Saved views" }
            @if views.is_empty() {
                p.empty { "No saved views." }
            } @else {
                ul.views {
                    @for view in views {
                        li {
                            a.view-link href=(view_url(project, &view.name)) { (view.name) }
                            @if can_write {
                                " "
                                form.delete-view .inline method="post" action=(delete_url(project, &view.name)) {
                                    (csrf_field(csrf))
                                    button.danger type="submit" aria-label={ "Delete the view " (view.name) } { "Delete" }
                                }
                            }
                        }
                    }
                }
            }
            @if can_write {
                form #save-view .inline method="post" action={ "/projects/" (project) "/views" } {
                    (csrf_field(csrf))
                    label { "Save this view as " input type="text" name="name" required maxlength=(MAX_VIEW_NAME_CHARS); }
                    input #save-view-query type="hidden" name="query" value=(current_query);
                    button type="submit" { "Save view" }
                }
            }
        }
    }
}

/// `POST /projects/{project}/views`: saves (or replaces) a view and opens it.
pub async fn save(
    SignedIn(page, user): SignedIn,
    Path(project): Path<String>,
    form: CsrfForm,
) -> PageResult {
    let store = &page.state.store;
    let project = projects::find(store, &user.caller.tenant, &project).await?;
    let view = views::save(
        store,
        &user.caller,
        &project,
        form.get("name"),
        form.get("query"),
    )
    .await?;
    Ok(page.finish(see_other(&view_url(project.name.as_str(), &view.name))))
}

/// `POST /projects/{project}/views/{name}/delete`: deletes a view and goes back to
/// the workspace.
pub async fn delete(
    SignedIn(page, user): SignedIn,
    Path((project, name)): Path<(String, String)>,
    _: CsrfForm,
) -> PageResult {
    let store = &page.state.store;
    let project = projects::find(store, &user.caller.tenant, &project).await?;
    views::delete(store, &user.caller, &project, &name).await?;
    Ok(page.finish(see_other(&format!(
        "/projects/{}/workspace",
        project.name.as_str()
    ))))
}
