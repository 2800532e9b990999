//! `/projects/{project}/workspace`: a chart per metric with a line for every run the
//! filter keeps (up to `MAX_RUNS`, newest first), the metrics grouped by the prefix of
//! their names (`train/`, `val/`, system metrics last and collapsed). The filter is the
//! run table's, or exactly the runs a selection named (`run=ID`, repeated); grouping,
//! smoothing, axis and hidden runs are the charts' view (`plots::ViewSettings`). All of
//! it is in the URL, so a view is shared by copying it; a team saves views by name
//! (`views.rs`), and `?view=NAME` answers with the saved view's URL.

use std::collections::{BTreeMap, BTreeSet};

use axum::extract::{Path, RawQuery};
use axum::http::StatusCode;
use maud::html;
use sextant_domain::credentials::Role;
use sextant_domain::projects::{self, Project};
use sextant_domain::runs::{self, RunRecord};
use sextant_domain::tenancy::Tenant;
use sextant_domain::views;
use sextant_edge::error;
use sextant_edge::state::AppState;

use super::layout::{Section, respond};
use super::plots::{self, ChartDef, ChartGroup, ChartRun, Mode, ViewSettings, numeric_series};
use super::projects::{filter_fields, param_filter};
use super::runs::is_live;
use super::security::{SignedIn, see_other};
use super::views::views_section;
use super::{PageError, PageResult};
use crate::runs::{ListParams, run_table};

/// Runs a workspace draws at most: each is a line on every chart, and a chart reads
/// its lines in one request.
pub const MAX_RUNS: usize = 50;
/// Prefixes of metrics that machines log about themselves: their group starts closed.
const SYSTEM_PREFIXES: [&str; 2] = ["system", "sys"];

/// The workspace's query: the run filter, or the runs a selection named, and the view.
#[derive(Debug, Default)]
struct WorkspaceQuery {
    name: String,
    tag: String,
    status: String,
    params: Vec<String>,
    runs: Vec<String>,
    /// A saved view's name: the page answers with the view's own URL.
    saved: Option<String>,
    view: ViewSettings,
}

impl WorkspaceQuery {
    fn parse(raw: Option<&str>) -> Self {
        let mut query = Self::default();
        for (key, value) in url::form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
            let value = value.trim();
            match key.as_ref() {
                "name" => query.name = value.to_owned(),
                "tag" => query.tag = value.to_owned(),
                "status" => query.status = value.to_owned(),
                "param" if !value.is_empty() => query.params.push(value.to_owned()),
                "run" if !value.is_empty() => query.runs.push(value.to_owned()),
                "view" => query.saved = Some(value.to_owned()),
                other => {
                    query.view.take(other, value);
                }
            }
        }
        query
    }

    fn list_params(&self) -> ListParams {
        let some = |text: &str| (!text.is_empty()).then(|| text.to_owned());
        ListParams {
            tag: some(&self.tag),
            status: some(&self.status),
            name: some(&self.name),
            param: param_filter(&self.params),
            limit: Some(MAX_RUNS),
            ..ListParams::default()
        }
    }
}

/// The runs the workspace draws, and how many passed the filter in all.
async fn chosen_runs(
    state: &AppState,
    tenant: &Tenant,
    project: &Project,
    query: &WorkspaceQuery,
) -> PageResult<(Vec<RunRecord>, usize)> {
    if !query.runs.is_empty() {
        // Runs another project holds, or that are gone, are left out, not an error: a
        // selection's link outlives what it named.
        let ids: BTreeSet<_> = query
            .runs
            .iter()
            .filter_map(|id| runs::parse_id(id).ok())
            .collect();
        let mut chosen = Vec::new();
        for id in ids.into_iter().take(MAX_RUNS) {
            match runs::load(&state.store, tenant, id).await {
                Ok(found) if found.record.project_id == project.id => chosen.push(found.record),
                Ok(_) | Err(runs::RunError::NotFound) => {}
                Err(err) => return Err(err.into()),
            }
        }
        chosen.sort_by_key(|run| std::cmp::Reverse(run.created_at));
        let total = chosen.len();
        return Ok((chosen, total));
    }
    let table = match run_table(state, tenant, project, &query.list_params()).await {
        Ok(table) => table,
        Err(err) if error::status(err.code()) == StatusCode::BAD_REQUEST => {
            return Err(PageError::Status(
                StatusCode::BAD_REQUEST,
                err.message().to_owned(),
            ));
        }
        Err(err) => return Err(err.into()),
    };
    let total = table.page.total;
    Ok((table.rows().cloned().collect(), total))
}

/// The metrics of `runs` as charts, grouped by the prefix before their first `/`.
fn metric_groups(runs: &[RunRecord]) -> Vec<ChartGroup> {
    let mut by_prefix: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for name in runs.iter().flat_map(numeric_series) {
        let prefix = name.split_once('/').map_or("", |(prefix, _)| prefix);
        by_prefix.entry(prefix).or_default().insert(name);
    }
    let system = |prefix: &str| SYSTEM_PREFIXES.contains(&prefix);
    let mut groups: Vec<(&str, BTreeSet<&str>)> = by_prefix.into_iter().collect();
    groups.sort_by_key(|(prefix, _)| (system(prefix), prefix.is_empty(), *prefix));
    groups
        .into_iter()
        .map(|(prefix, names)| ChartGroup {
            label: if prefix.is_empty() {
                "other".to_owned()
            } else {
                format!("{prefix}/")
            },
            collapsed: system(prefix),
            charts: names
                .into_iter()
                .map(|name| ChartDef {
                    title: name.to_owned(),
                    series: vec![name.to_owned()],
                })
                .collect(),
        })
        .collect()
}

/// What the workspace can group by: every param the runs have, every `key=value`
/// tag's key, and the tags as a whole.
fn group_choices(runs: &[RunRecord]) -> Vec<String> {
    let params: BTreeSet<&str> = runs
        .iter()
        .flat_map(|run| run.params.keys())
        .map(String::as_str)
        .collect();
    let tag_keys: BTreeSet<&str> = runs
        .iter()
        .flat_map(|run| &run.tags)
        .filter_map(|tag| tag.split_once('=').map(|(key, _)| key))
        .collect();
    params
        .into_iter()
        .map(|name| format!("param:{name}"))
        .chain(tag_keys.into_iter().map(|key| format!("tag:{key}")))
        .chain(["tags".to_owned()])
        .collect()
}

/// `GET /projects/{project}/workspace`.
pub async fn page(
    SignedIn(page, user): SignedIn,
    Path(project): Path<String>,
    RawQuery(raw): RawQuery,
) -> PageResult {
    let tenant = &user.caller.tenant;
    let state = &page.state;
    let project = projects::find(&state.store, tenant, &project).await?;
    let query = WorkspaceQuery::parse(raw.as_deref());
    let name = project.name.as_str();
    if let Some(saved) = &query.saved {
        // The view's own URL, so that the page's script reads the view from it as
        // from any other.
        let view = views::get(&state.store, tenant, &project, saved).await?;
        return Ok(see_other(&format!(
            "/projects/{name}/workspace?{}",
            view.query
        )));
    }
    let saved_views = views::list(&state.store, tenant, &project).await?;
    let (runs, total) = chosen_runs(state, tenant, &project, &query).await?;
    let now = state.now();
    let timeout = state.settings.heartbeat_timeout;
    let chart_runs: Vec<ChartRun<'_>> = runs
        .iter()
        .map(|run| ChartRun::new(run, run.status_at(now, timeout)))
        .collect();
    let live = runs.iter().any(|run| is_live(run.status_at(now, timeout)));
    let groups = metric_groups(&runs);
    let choices = group_choices(&runs);
    let body = html! {
        p.crumbs {
            a href="/projects" { "Projects" } " / "
            a href={ "/projects/" (name) } { (name) } " / "
        }
        h1 { "Workspace" }
        form #workspace-filter .inline method="get" action={ "/projects/" (name) "/workspace" } {
            (filter_fields(&query.name, &query.tag, &query.status, &query.params))
            @for run in &query.runs { input type="hidden" name="run" value=(run); }
            (query.view.hidden_fields())
            button type="submit" { "Filter" }
            " "
            a href={ "/projects/" (name) "/workspace" } { "Clear" }
        }
        p.muted #workspace-runs {
            @if query.runs.is_empty() {
                "Showing " (runs.len()) " of " (total) " runs that match, newest first (at most " (MAX_RUNS) ")."
            } @else {
                "Showing the " (runs.len()) " selected runs. "
                a href={ "/projects/" (name) "/workspace" } { "Show all" }
            }
        }
        @if groups.is_empty() {
            p.empty { "None of these runs has logged metrics." }
        } @else {
            (plots::controls(&query.view, Some(&choices)))
            (plots::charts(Mode::Workspace, "/points", live, &chart_runs, &groups))
        }
        (views_section(
            name,
            &saved_views,
            &page.csrf(),
            user.caller.role >= Role::Member,
            raw.as_deref().unwrap_or(""),
        ))
    };
    Ok(respond(
        &page,
        StatusCode::OK,
        Section::Projects,
        &format!("{name} workspace"),
        body,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_query_keeps_the_filter_the_selection_and_the_view_apart() {
        let query = WorkspaceQuery::parse(Some(
            "name=base&tag=sweep&param=lr%3C0.1&run=run_a&run=&run=run_b&smooth=0.6&x=wall&logy=true&group=param:lr&hide=run_a",
        ));
        assert_eq!((query.name.as_str(), query.tag.as_str()), ("base", "sweep"));
        assert_eq!(query.runs, ["run_a", "run_b"]);
        assert_eq!(query.params, ["lr<0.1"]);
        assert_eq!(
            query.view,
            ViewSettings {
                smooth: "0.6".into(),
                logy: true,
                x: "wall".into(),
                group: "param:lr".into(),
                hide: "run_a".into(),
            }
        );
    }
}
