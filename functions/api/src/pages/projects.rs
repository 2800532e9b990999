//! Projects, and a project's run table: filter, sort by any metric or param column,
//! select runs to compare.

use std::collections::BTreeSet;

use axum::extract::{Path, RawQuery};
use axum::http::StatusCode;
use axum::response::Response;
use maud::{Markup, html};
use sextant_domain::credentials::Role;
use sextant_domain::error::Error;
use sextant_domain::projects::{self, Project, ProjectName};
use sextant_domain::runs::summary::SeriesKind;
use sextant_domain::runs::{ParamValue, RunRecord, Status};
use sextant_edge::error;

use super::layout::{Section, csrf_field, respond};
use super::runs::bytes;
use super::security::{CsrfForm, Page, SignedIn, User, see_other};
use super::usage::grouped;
use super::{PageResult, number, when};
use crate::runs::{ListParams, run_table};

/// Columns of each kind the table shows at most, so a run with a thousand params
/// still gives a table one can read.
const MAX_COLUMNS: usize = 20;
/// Rows a page of the table shows.
const PAGE_ROWS: usize = 100;

fn projects_body(
    csrf: &str,
    can_write: bool,
    projects: &[Project],
    error: Option<&str>,
    name: &str,
) -> Markup {
    html! {
        h1 { "Projects" }
        @if projects.is_empty() {
            p.empty { "No projects yet. Create one here, or just log a run from the SDK: its project is created for you." }
        } @else {
            ul.projects {
                @for project in projects {
                    li {
                        a.project href={ "/projects/" (project.name.as_str()) } { (project.name.as_str()) }
                        " "
                        span.muted { "created " (when(project.created_at)) }
                    }
                }
            }
        }
        @if can_write {
            h2 { "New project" }
            @if let Some(error) = error { p.error role="alert" { (error) } }
            form #new-project .inline method="post" action="/projects" {
                (csrf_field(csrf))
                label { "Name " input type="text" name="name" value=(name) required maxlength="100" pattern="[A-Za-z0-9][A-Za-z0-9._\\-]*"; }
                button type="submit" { "Create" }
            }
        }
    }
}

async fn sorted_projects(page: &Page, user: &User) -> PageResult<Vec<Project>> {
    let mut projects = projects::list(&page.state.store, &user.caller.tenant).await?;
    projects.sort_by(|a, b| a.name.as_str().cmp(b.name.as_str()));
    Ok(projects)
}

fn can_write(user: &User) -> bool {
    user.caller.role >= Role::Member
}

/// `GET /projects`.
pub async fn list(SignedIn(page, user): SignedIn) -> PageResult {
    let projects = sorted_projects(&page, &user).await?;
    let body = projects_body(&page.csrf(), can_write(&user), &projects, None, "");
    Ok(respond(
        &page,
        StatusCode::OK,
        Section::Projects,
        "Projects",
        body,
    ))
}

/// `POST /projects`: creates one and opens it.
pub async fn create(SignedIn(page, user): SignedIn, form: CsrfForm) -> PageResult {
    user.require(Role::Member)?;
    let name = form.get("name").trim();
    let created = match ProjectName::parse(name) {
        Ok(parsed) => projects::create(&page.state.store, &user.caller, parsed).await,
        Err(err) => Err(err),
    }
    .map_err(Error::from);
    match created {
        Ok(project) => Ok(page.finish(see_other(&format!("/projects/{}", project.name.as_str())))),
        Err(err) if error::status(err.code()).is_client_error() => {
            let projects = sorted_projects(&page, &user).await?;
            let body = projects_body(
                &page.csrf(),
                can_write(&user),
                &projects,
                Some(err.message()),
                name,
            );
            Ok(respond(
                &page,
                error::status(err.code()),
                Section::Projects,
                "Projects",
                body,
            ))
        }
        Err(err) => Err(err.into()),
    }
}

/// The run table's query: `tag`, `status`, `name`, `sort` (`created`, `name`,
/// `param:NAME`, `metric:NAME[:min|max|last]`), `order` (`asc`/`desc`), `cursor`.
#[derive(Debug, Default)]
struct TableQuery {
    tag: String,
    status: String,
    name: String,
    sort: String,
    order: String,
    cursor: String,
}

impl TableQuery {
    fn parse(raw: Option<&str>) -> Self {
        let mut query = Self::default();
        for (key, value) in url::form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
            let field = match key.as_ref() {
                "tag" => &mut query.tag,
                "status" => &mut query.status,
                "name" => &mut query.name,
                "sort" => &mut query.sort,
                "order" => &mut query.order,
                "cursor" => &mut query.cursor,
                _ => continue,
            };
            *field = value.trim().to_owned();
        }
        query
    }

    fn sort_spec(&self) -> Option<String> {
        if self.sort.is_empty() {
            return None;
        }
        Some(match self.order.as_str() {
            order @ ("asc" | "desc") => format!("{}:{order}", self.sort),
            _ => self.sort.clone(),
        })
    }

    fn list_params(&self) -> ListParams {
        let some = |text: &str| (!text.is_empty()).then(|| text.to_owned());
        ListParams {
            tag: some(&self.tag),
            status: some(&self.status),
            name: some(&self.name),
            sort: self.sort_spec(),
            limit: Some(PAGE_ROWS),
            cursor: some(&self.cursor),
            ..ListParams::default()
        }
    }

    /// The link that sorts by `column`: the other direction if it already sorts by it.
    fn sort_link(&self, project: &str, column: &str) -> String {
        let order = if self.sort == column {
            if self.order == "asc" { "desc" } else { "asc" }
        } else if column == "name" {
            "asc"
        } else {
            "desc"
        };
        self.link(project, Some((column, order)), None)
    }

    fn link(&self, project: &str, sort: Option<(&str, &str)>, cursor: Option<&str>) -> String {
        let mut query = url::form_urlencoded::Serializer::new(String::new());
        for (key, value) in [
            ("tag", &self.tag),
            ("status", &self.status),
            ("name", &self.name),
        ] {
            if !value.is_empty() {
                query.append_pair(key, value);
            }
        }
        let (sort, order) = sort.unwrap_or((&self.sort, &self.order));
        if !sort.is_empty() {
            query.append_pair("sort", sort);
            if !order.is_empty() {
                query.append_pair("order", order);
            }
        }
        if let Some(cursor) = cursor {
            query.append_pair("cursor", cursor);
        }
        format!("/projects/{project}?{}", query.finish())
    }

    /// `▲`/`▼` on the column the table is sorted by.
    fn arrow(&self, column: &str) -> &'static str {
        match (self.sort == column, self.order.as_str()) {
            (false, _) => "",
            (true, "asc") => " ▲",
            (true, _) => " ▼",
        }
    }
}

pub fn param_text(value: &ParamValue) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(text)) => text,
        Ok(other) => other.to_string(),
        Err(_) => String::new(),
    }
}

const STATUSES: [Status; 6] = [
    Status::Queued,
    Status::Running,
    Status::Succeeded,
    Status::Failed,
    Status::Aborted,
    Status::Lost,
];

/// `GET /projects/{project}`: the run table.
pub async fn runs(
    SignedIn(page, user): SignedIn,
    Path(project): Path<String>,
    RawQuery(raw): RawQuery,
) -> PageResult<Response> {
    let tenant = &user.caller.tenant;
    let project = projects::find(&page.state.store, tenant, &project).await?;
    let query = TableQuery::parse(raw.as_deref());
    let table = match run_table(&page.state, tenant, &project, &query.list_params()).await {
        Ok(table) => table,
        Err(err) if error::status(err.code()) == StatusCode::BAD_REQUEST => {
            return Err(super::PageError::Status(
                StatusCode::BAD_REQUEST,
                err.message().to_owned(),
            ));
        }
        Err(err) => return Err(err.into()),
    };
    let rows: Vec<&RunRecord> = table.rows().collect();
    let metrics: Vec<&str> = rows
        .iter()
        .flat_map(|run| run.series.iter())
        .filter(|(_, summary)| summary.kind == SeriesKind::Numeric)
        .map(|(name, _)| name.as_str())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .take(MAX_COLUMNS)
        .collect();
    let params: Vec<&str> = rows
        .iter()
        .flat_map(|run| run.params.keys())
        .map(String::as_str)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .take(MAX_COLUMNS)
        .collect();
    let now = page.state.now();
    let timeout = page.state.settings.heartbeat_timeout;
    let name = project.name.as_str();
    let body = html! {
        p.crumbs { a href="/projects" { "Projects" } " / " }
        h1 { (name) }
        form #filter .inline method="get" action={ "/projects/" (name) } {
            label { "Name " input type="search" name="name" value=(query.name); }
            label { "Tag " input type="text" name="tag" value=(query.tag); }
            label { "Status "
                select name="status" {
                    option value="" selected[query.status.is_empty()] { "any" }
                    @for status in STATUSES {
                        @let text = status.to_string();
                        option value=(text) selected[query.status == text] { (text) }
                    }
                }
            }
            @if !query.sort.is_empty() {
                input type="hidden" name="sort" value=(query.sort);
                input type="hidden" name="order" value=(query.order);
            }
            button type="submit" { "Filter" }
            " "
            a href={ "/projects/" (name) } { "Clear" }
        }
        @let plan = &page.state.settings.plan;
        @let filtered = table.filtered_cost(plan);
        p.muted #table-total {
            (table.page.total) " runs · "
            span #filtered-cost title="What the runs that pass the filter, on every page, have logged and stored so far, at the plan's prices before this month's free allowances" {
                "cost so far " (filtered.cost) " " (filtered.currency)
                " (" (grouped(filtered.points)) " points, " (bytes(filtered.bytes)) " stored)"
            }
        }
        form #compare method="get" action="/compare" {
            div.table-scroll {
                table #runs {
                    thead {
                        tr {
                            th { span.visually-hidden { "Select" } }
                            th { a.sort href=(query.sort_link(name, "name")) { "Name" (query.arrow("name")) } }
                            th { "Status" }
                            th { a.sort href=(query.sort_link(name, "created")) { "Created" (query.arrow("created")) } }
                            th { "Tags" }
                            th.cost title="Points logged and bytes stored so far, at the plan's prices" { "Cost" }
                            @for param in &params {
                                @let column = format!("param:{param}");
                                th.param { a.sort href=(query.sort_link(name, &column)) { (param) (query.arrow(&column)) } }
                            }
                            @for metric in &metrics {
                                @let column = format!("metric:{metric}");
                                th.metric { a.sort href=(query.sort_link(name, &column)) { (metric) (query.arrow(&column)) } }
                            }
                        }
                    }
                    tbody {
                        @for run in &rows {
                            @let id = run.id.to_string();
                            tr data-run-id=(id) {
                                td { input type="checkbox" name="run" value=(id) aria-label={ "Select " (run.name) }; }
                                td { a.run-link href={ "/runs/" (id) } { (run.name) } }
                                td { span.status data-status=(run.status_at(now, timeout).to_string()) { (run.status_at(now, timeout).to_string()) } }
                                td.created { (when(run.created_at)) }
                                td.tags {
                                    @for tag in &run.tags {
                                        a.tag href=(TableQuery { tag: tag.clone(), ..Default::default() }.link(name, None, None)) { (tag) }
                                        " "
                                    }
                                }
                                @let cost = table.cost(plan, run);
                                td.cost title={ (grouped(cost.points)) " points, " (bytes(cost.bytes)) " stored" } { (cost.cost) " " (cost.currency) }
                                @for param in &params {
                                    td.param { @if let Some(value) = run.params.get(*param) { (param_text(value)) } }
                                }
                                @for metric in &metrics {
                                    td.metric {
                                        @if let Some(summary) = run.series.get(*metric) {
                                            @if let Some(last) = summary.last {
                                                span title={ "min " (summary.min.map(number).unwrap_or_default()) ", max " (summary.max.map(number).unwrap_or_default()) } { (number(last)) }
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            @if rows.is_empty() {
                p.empty { "No runs match." }
            }
            p.actions {
                button type="submit" { "Compare selected" }
                @if let Some(cursor) = &table.page.next_cursor {
                    " "
                    a.next href=(query.link(name, None, Some(cursor))) { "Next page" }
                }
            }
        }
    };
    Ok(respond(
        &page,
        StatusCode::OK,
        Section::Projects,
        name,
        body,
    ))
}
