//! A run's page (also the body of a shared run's page): status, metadata, tags,
//! params, charts that refresh while it runs, text tails, images, artifacts, lineage,
//! and for its team the abort and share forms.

use std::collections::BTreeMap;

use axum::extract::{Path, RawQuery};
use axum::http::StatusCode;
use futures::TryFutureExt;
use maud::{Markup, html};
use sextant_domain::artifacts::{self, Artifact};
use sextant_domain::billing::RunCost;
use sextant_domain::credentials::Role;
use sextant_domain::ids::{RunId, ShareId};
use sextant_domain::images::{self, Listed};
use sextant_domain::lineage::{self, Graph, Node};
use sextant_domain::projects::{self, Project};
use sextant_domain::runs::summary::SeriesKind;
use sextant_domain::runs::{self, RunRecord, Status};
use sextant_domain::series::{self, EXACT_PAGE_POINTS, StepRange, TextPoints, Window};
use sextant_domain::shares::{self, NewShare, Share};
use sextant_domain::tenancy::Tenant;
use sextant_edge::error::{ApiError, ApiResult};
use sextant_edge::http::PublicUrl;
use sextant_edge::state::AppState;

use super::layout::{Section, csrf_field, respond};
use super::plots::{self, ChartDef, ChartGroup, ChartRun, Mode, ViewSettings, numeric_series};
use super::projects::param_text;
use super::security::{CsrfForm, SignedIn, User, see_other};
use super::usage::grouped;
use super::{PageError, PageResult, encode_path, number, when};

/// Lines of each text series the page shows: the last ones.
const TEXT_TAIL_LINES: usize = 50;
/// Longest text line shown in full; longer ones are cut with an ellipsis.
const TEXT_LINE_CHARS: usize = 2_000;
/// Images of each image series the page shows: the latest ones.
const IMAGES_SHOWN: usize = 8;
/// Expiries the share form offers, in days.
const SHARE_DAYS: [i64; 5] = [1, 7, 30, 90, 365];

/// Who looks at a run: its team (with the forms a member may use), or the holder of a
/// share link (nothing but the run).
pub enum Viewer<'a> {
    Team {
        user: &'a User,
        csrf: String,
    },
    Shared {
        token: &'a str,
        allow_downloads: bool,
    },
}

/// Numeric series grouped into charts: series whose names end in the same segment
/// (`train/loss`, `val/loss`) share a chart titled by it; the others have their own.
/// System metrics come last.
pub fn chart_groups<'a>(names: impl IntoIterator<Item = &'a str>) -> Vec<(String, Vec<&'a str>)> {
    let mut groups: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for name in names {
        let last = name.rsplit('/').next().unwrap_or(name);
        groups.entry(last).or_default().push(name);
    }
    let mut charts: Vec<(String, Vec<&str>)> = groups
        .into_iter()
        .map(|(last, names)| {
            let title = if names.len() == 1 {
                names[0].to_owned()
            } else {
                last.to_owned()
            };
            (title, names)
        })
        .collect();
    charts.sort_by(|(a, a_names), (b, b_names)| {
        let system = |names: &[&str]| names.iter().all(|n| n.starts_with("system/"));
        (system(a_names), a).cmp(&(system(b_names), b))
    });
    charts
}

/// The last `lines` lines of a text series, read from its end backwards in widening
/// step windows, so a long log is not read whole.
async fn text_tail(
    state: &AppState,
    tenant: &Tenant,
    run: &RunRecord,
    name: &str,
    lines: usize,
) -> ApiResult<Vec<(i64, String)>> {
    let Some(summary) = run.series.get(name) else {
        return Ok(Vec::new());
    };
    let mut width: u64 = lines as u64;
    loop {
        let from = summary
            .last_step
            .saturating_sub_unsigned(width.saturating_sub(1));
        let mut tail: std::collections::VecDeque<(i64, String)> = Default::default();
        let range = StepRange {
            from: Some(from),
            to: None,
            after: None,
        };
        let mut resume = None;
        loop {
            let page = series::read::<TextPoints>(
                &state.store,
                tenant,
                run,
                name,
                Window {
                    range,
                    after: resume.as_ref(),
                    limit: Some(EXACT_PAGE_POINTS),
                },
            )
            .await?;
            for (step, text) in page.points.steps.into_iter().zip(page.points.texts) {
                if tail.len() == lines {
                    tail.pop_front();
                }
                tail.push_back((step, text));
            }
            match page.next {
                Some(next) => resume = Some(next),
                None => break,
            }
        }
        if tail.len() >= lines || from <= summary.first_step || width == u64::MAX {
            return Ok(tail.into());
        }
        width = width.saturating_mul(8);
    }
}

fn shorten(text: &str) -> std::borrow::Cow<'_, str> {
    match text.char_indices().nth(TEXT_LINE_CHARS) {
        Some((cut, _)) => format!("{}…", &text[..cut]).into(),
        None => text.into(),
    }
}

/// Everything a run's page shows, read for one viewer.
pub struct RunData {
    pub record: RunRecord,
    project: Option<Project>,
    /// Each text series' last lines, their steps as logged.
    texts: Vec<(String, Vec<(String, String)>)>,
    images: Vec<(String, Vec<Listed>)>,
    artifacts: Vec<Artifact>,
    lineage: Option<Graph>,
    shares: Vec<Share>,
    /// What the run has cost so far; the team's business, so `None` on a share.
    cost: Option<RunCost>,
}

/// Reads what a run's page shows. `team` adds what only the team sees: the project,
/// lineage (which names other runs) and the run's shares.
pub async fn load(
    state: &AppState,
    tenant: &Tenant,
    record: RunRecord,
    team: bool,
) -> ApiResult<RunData> {
    let run = record.id;
    let text_names: Vec<&str> = record
        .series
        .iter()
        .filter(|(_, summary)| summary.kind == SeriesKind::Text)
        .map(|(name, _)| name.as_str())
        .collect();
    let texts = futures::future::try_join_all(text_names.iter().map(|&name| async {
        let tail = text_tail(state, tenant, &record, name, TEXT_TAIL_LINES).await?;
        let unit = record.series[name].step_unit;
        let tail = tail
            .into_iter()
            .map(|(step, line)| (unit.logged(step), line))
            .collect();
        Ok::<_, ApiError>((name.to_owned(), tail))
    }));
    let images = async {
        let series = images::series(&state.store, tenant, run).await?;
        futures::future::try_join_all(series.into_keys().map(|name| async move {
            let listed = images::latest(&state.store, tenant, run, &name, IMAGES_SHOWN).await?;
            Ok::<_, ApiError>((name, listed))
        }))
        .await
    };
    let team_only = async {
        if !team {
            return Ok((None, None, Vec::new(), None));
        }
        let project_id = record.project_id.to_string();
        let (project, lineage, shares, counted) = futures::try_join!(
            projects::find(&state.store, tenant, &project_id).err_into::<ApiError>(),
            lineage::graph(&state.store, state.settings.heartbeat_timeout, tenant, run).err_into(),
            shares::list(&state.store, tenant, run).err_into(),
            runs::usage_of(&state.store, tenant, &record).err_into(),
        )?;
        let cost = state.settings.plan.run_cost([&counted], state.now());
        Ok::<_, ApiError>((Some(project), Some(lineage), shares, Some(cost)))
    };
    let (texts, images, artifacts, (project, lineage, shares, cost)) = futures::try_join!(
        texts,
        images,
        artifacts::list(&state.store, tenant, run, None, None).err_into(),
        team_only,
    )?;
    Ok(RunData {
        record,
        project,
        texts,
        images,
        artifacts,
        lineage,
        shares,
        cost,
    })
}

/// Whether a run can still be asked to stop.
fn abortable(status: Status, record: &RunRecord) -> bool {
    matches!(status, Status::Running | Status::Queued | Status::Lost)
        && record.abort_requested_at.is_none()
}

/// Whether the page should keep its charts fresh.
pub fn is_live(status: Status) -> bool {
    matches!(status, Status::Running | Status::Queued | Status::Lost)
}

fn node_label(node: &Node, focus: RunId) -> Markup {
    html! {
        @match node {
            Node::Run { id, name, status } => {
                @if *id == focus.to_string() {
                    strong { (name) } " (this run)"
                } @else {
                    a href={ "/runs/" (id) } { (name) } " " span.muted { "(" (status.to_string()) ")" }
                }
            }
            Node::Artifact { run, path, .. } => {
                "artifact " code { (path.as_str()) }
                @if *run != focus { " of " a href={ "/runs/" (run) } { "another run" } }
            }
            Node::Dataset { hash, uri, .. } => {
                "dataset " @if let Some(uri) = uri { code { (uri) } " " }
                span.muted { (hash.get(..12).unwrap_or(hash)) }
            }
        }
    }
}

fn lineage_section(graph: &Graph, focus: RunId) -> Markup {
    let nodes: BTreeMap<&str, &Node> = graph
        .nodes
        .iter()
        .map(|node| {
            let id = match node {
                Node::Run { id, .. } | Node::Artifact { id, .. } | Node::Dataset { id, .. } => id,
            };
            (id.as_str(), node)
        })
        .collect();
    let focus_id = focus.to_string();
    // The run's own artifacts are listed above; the lineage is what links it to others.
    let edges: Vec<_> = graph
        .edges
        .iter()
        .filter(|edge| edge.from != focus_id)
        .filter_map(|edge| Some((nodes.get(edge.from.as_str())?, nodes.get(edge.to.as_str())?)))
        .collect();
    html! {
        section #lineage {
            h2 { "Lineage" }
            @if edges.is_empty() {
                p.empty { "No inputs declared, and no run used this run's artifacts." }
            } @else {
                ul.lineage {
                    @for (from, to) in &edges {
                        li { (node_label(from, focus)) " → " (node_label(to, focus)) }
                    }
                }
                @if graph.truncated { p.muted { "The graph is larger than shown." } }
            }
        }
    }
}

/// The body of a run's page for `viewer`.
pub fn render(
    state: &AppState,
    data: &RunData,
    viewer: &Viewer<'_>,
    settings: &ViewSettings,
) -> Markup {
    let record = &data.record;
    let now = state.now();
    let status = record.status_at(now, state.settings.heartbeat_timeout);
    let id = record.id.to_string();
    let live = is_live(status);
    let (points_source, team) = match viewer {
        Viewer::Team { user, csrf } => ("/points".to_owned(), Some((*user, csrf.as_str()))),
        Viewer::Shared { token, .. } => (format!("/r/{token}/points"), None),
    };
    let chart_runs = [ChartRun::new(record, status)];
    let chart_groups = [ChartGroup {
        label: String::new(),
        collapsed: false,
        charts: chart_groups(numeric_series(record))
            .into_iter()
            .map(|(title, series)| ChartDef {
                title,
                series: series.into_iter().map(str::to_owned).collect(),
            })
            .collect(),
    }];
    let can_write = team.is_some_and(|(user, _)| user.caller.role >= Role::Member);
    html! {
        @if let (Some(project), Some(_)) = (&data.project, team) {
            p.crumbs {
                a href="/projects" { "Projects" } " / "
                a href={ "/projects/" (project.name.as_str()) } { (project.name.as_str()) } " / "
            }
        }
        div.run-head {
            h1 { (record.name) }
            span #run-status .status data-status=(status.to_string()) { (status.to_string()) }
            @if record.abort_requested_at.is_some() && !status.is_ended() {
                span #abort-requested .muted { " abort requested" }
            }
        }
        @if !record.description.is_empty() { p.description { (record.description) } }
        @if let Some((_, csrf)) = team {
            @if can_write {
                div.actions {
                    @if abortable(status, record) {
                        form #abort .inline method="post" action={ "/runs/" (id) "/abort" } {
                            (csrf_field(csrf))
                            button.danger type="submit" { "Abort run" }
                        }
                    }
                    form #share .inline method="post" action={ "/runs/" (id) "/share" } {
                        (csrf_field(csrf))
                        label { "Share for "
                            select name="expires_in" {
                                @for days in SHARE_DAYS {
                                    option value=(days) selected[days == 30] { (days) @if days == 1 { " day" } @else { " days" } }
                                }
                            }
                        }
                        label { input type="checkbox" name="allow_downloads" value="true"; " allow downloads" }
                        button type="submit" { "Share" }
                    }
                }
            }
        }
        div.columns {
            section #metadata {
                h2 { "Details" }
                dl.meta {
                    dt { "Id" } dd { code { (id) } }
                    dt { "Number" } dd { (record.number) }
                    dt { "Created" } dd { (when(record.created_at)) }
                    @if let Some(ended) = record.ended_at { dt { "Ended" } dd { (when(ended)) } }
                    dt { "Last heard from" } dd { (when(record.heartbeat_at)) }
                    @if let Some(cost) = &data.cost {
                        dt { "Logged" } dd #run-points { (grouped(cost.points)) " points" }
                        dt { "Stored" } dd #run-bytes { (bytes(cost.bytes)) }
                        dt { "Cost so far" } dd #run-cost title="Points and storage so far at the plan's prices, before this month's free allowances" { (cost.cost) " " (cost.currency) }
                    }
                    @if let Some(git) = &record.git {
                        @if let Some(commit) = &git.commit { dt { "Commit" } dd { code { (commit) } @if git.dirty == Some(true) { " (dirty)" } } }
                        @if let Some(branch) = &git.branch { dt { "Branch" } dd { (branch) } }
                        @if let Some(remote) = &git.remote { dt { "Remote" } dd { (remote) } }
                    }
                }
                h2 { "Tags" }
                ul #tags .tags {
                    @for tag in &record.tags { li.tag { (tag) } }
                    @if record.tags.is_empty() { li.muted { "none" } }
                }
            }
            section #parameters {
                h2 { "Parameters" }
                table #params {
                    thead { tr { th { "Name" } th { "Value" } } }
                    tbody {
                        @for (name, value) in &record.params {
                            tr { th scope="row" { (name) } td { (param_text(value)) } }
                        }
                    }
                }
                @if record.params.is_empty() { p.empty { "No parameters." } }
            }
        }
        section {
            h2 { "Charts" }
            @if chart_groups[0].charts.is_empty() {
                p.empty { "No metrics logged yet." }
            } @else {
                (plots::controls(settings, None))
                div #charts {
                    (plots::charts(Mode::Run, &points_source, live, &chart_runs, &chart_groups))
                }
            }
        }
        @if !data.texts.is_empty() {
            section #text {
                h2 { "Text" }
                @for (name, lines) in &data.texts {
                    h3 { (name) }
                    pre.log data-series=(name) {
                        @for (step, line) in lines { span.step { (step) } " " (shorten(line)) "\n" }
                    }
                }
            }
        }
        @if !data.images.is_empty() {
            section #images {
                h2 { "Images" }
                @for (name, listed) in &data.images {
                    h3 { (name) }
                    div.images {
                        @for image in listed {
                            figure.image {
                                img src=(image.url) alt={ (name) " at step " (image.image.step) } loading="lazy";
                                figcaption { "step " (image.image.step) }
                            }
                        }
                    }
                }
            }
        }
        section #artifacts {
            h2 { "Artifacts" }
            @if data.artifacts.is_empty() {
                p.empty { "No artifacts." }
            } @else {
                table.artifacts {
                    thead { tr { th { "Path" } th { "Kind" } th { "Size" } th { "Step" } } }
                    tbody {
                        @for artifact in &data.artifacts {
                            @let path = artifact.path.as_str();
                            tr {
                                td {
                                    @match viewer {
                                        Viewer::Team { .. } => {
                                            a.artifact href={ "/runs/" (id) "/artifacts/" (encode_path(path)) } { (path) }
                                        }
                                        Viewer::Shared { token, allow_downloads: true } => {
                                            a.artifact href={ "/v1/shared/" (token) "/artifacts/" (encode_path(path)) } rel="noreferrer" { (path) }
                                        }
                                        Viewer::Shared { .. } => { span.artifact-name { (path) } }
                                    }
                                }
                                td { (artifact.kind.as_str()) }
                                td { (bytes(artifact.size)) }
                                td { @if let Some(step) = artifact.step { (step) } }
                            }
                        }
                    }
                }
            }
        }
        @if let Some(graph) = &data.lineage { (lineage_section(graph, record.id)) }
        @if let Some((_, csrf)) = team {
            @if !data.shares.is_empty() {
                section #shares {
                    h2 { "Shared links" }
                    table.shares {
                        thead { tr { th { "Created" } th { "Expires" } th { "Downloads" } th {} } }
                        tbody {
                            @for share in &data.shares {
                                tr {
                                    td { (when(share.created_at)) }
                                    td { (when(share.expires_at)) }
                                    td { @if share.allow_downloads { "allowed" } @else { "no" } }
                                    td {
                                        @if can_write {
                                            form.revoke-share .inline method="post" action={ "/shares/" (share.id) "/revoke" } {
                                                (csrf_field(csrf))
                                                input type="hidden" name="run" value=(id);
                                                button type="submit" { "Revoke" }
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// A byte count as people read it.
pub fn bytes(size: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KB", "MB", "GB", "TB"];
    let mut value = size as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit < UNITS.len() - 1 {
        value /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{size} B")
    } else {
        format!("{} {}", number((value * 10.0).round() / 10.0), UNITS[unit])
    }
}

async fn team_run(page_state: &AppState, user: &User, run: &str) -> PageResult<RunRecord> {
    Ok(
        runs::load(&page_state.store, &user.caller.tenant, runs::parse_id(run)?)
            .await?
            .record,
    )
}

/// `GET /runs/{run}`.
pub async fn page(
    SignedIn(page, user): SignedIn,
    Path(run): Path<String>,
    RawQuery(query): RawQuery,
) -> PageResult {
    let record = team_run(&page.state, &user, &run).await?;
    let data = load(&page.state, &user.caller.tenant, record, true).await?;
    let viewer = Viewer::Team {
        user: &user,
        csrf: page.csrf(),
    };
    let settings = ViewSettings::from_query(query.as_deref());
    let body = render(&page.state, &data, &viewer, &settings);
    Ok(respond(
        &page,
        StatusCode::OK,
        Section::Projects,
        &data.record.name,
        body,
    ))
}

/// `POST /runs/{run}/abort`: asks the run to stop, and back to its page.
pub async fn abort(
    SignedIn(page, user): SignedIn,
    Path(run): Path<String>,
    _: CsrfForm,
) -> PageResult {
    user.require(Role::Member)?;
    let record = runs::abort(
        &page.state.store,
        page.state.settings.heartbeat_timeout,
        &user.caller.tenant,
        runs::parse_id(&run)?,
    )
    .await?;
    Ok(page.finish(see_other(&format!("/runs/{}", record.id))))
}

/// `POST /runs/{run}/share`: a new share link, shown this once.
pub async fn share(
    SignedIn(page, user): SignedIn,
    public_url: PublicUrl,
    Path(run): Path<String>,
    form: CsrfForm,
) -> PageResult {
    user.require(Role::Member)?;
    let days: i64 = form.get("expires_in").parse().map_err(|_| {
        PageError::Status(
            StatusCode::BAD_REQUEST,
            "Choose how long the link lasts.".into(),
        )
    })?;
    let new = NewShare {
        expires_in: Some(days.saturating_mul(86_400)),
        allow_downloads: matches!(form.get("allow_downloads"), "true" | "on"),
    };
    let run = runs::parse_id(&run)?;
    let (share, token) = shares::create(&page.state.store, &user.caller, run, new).await?;
    let url = public_url.join(["r", token.expose()]);
    let body = html! {
        section.narrow {
            h1 { "Run shared" }
            p { "Anyone with this link can see the run, logged out, until "
                (when(share.expires_at)) ". It is shown only now: copy it." }
            p.secret {
                input #share-url type="text" readonly value=(url) size="80";
                " "
                button type="button" data-copy="#share-url" { "Copy" }
            }
            p { @if share.allow_downloads { "Its holders may download the run's artifacts." }
                @else { "Its holders see the artifact list but cannot download them." } }
            p { a href={ "/runs/" (run) } { "Back to the run" } }
        }
    };
    Ok(respond(
        &page,
        StatusCode::OK,
        Section::Projects,
        "Run shared",
        body,
    ))
}

/// `POST /shares/{id}/revoke`: the link opens nothing from now on.
pub async fn revoke_share(
    SignedIn(page, user): SignedIn,
    Path(id): Path<String>,
    form: CsrfForm,
) -> PageResult {
    user.require(Role::Member)?;
    let id: ShareId = id.parse().map_err(|_| PageError::not_found())?;
    shares::revoke(&page.state.store, &user.caller.tenant, id).await?;
    let back = match form.get("run").parse::<RunId>() {
        Ok(run) => format!("/runs/{run}"),
        Err(_) => "/projects".to_owned(),
    };
    Ok(page.finish(see_other(&back)))
}

/// `GET /runs/{run}/artifacts/{path}`: a redirect to a short-lived download URL.
pub async fn download(
    SignedIn(page, user): SignedIn,
    Path((run, path)): Path<(String, String)>,
) -> PageResult {
    let (_, url) = artifacts::download_url(
        &page.state.store,
        &user.caller.tenant,
        runs::parse_id(&run)?,
        &path,
    )
    .await?;
    Ok(crate::artifacts::redirect(url))
}
