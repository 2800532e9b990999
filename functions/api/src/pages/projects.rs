//! Projects, and a project's run table: filter, sort by any metric or param column,
//! select runs to compare.

use std::collections::{BTreeSet, HashMap};

use axum::extract::{Path, RawQuery};
use axum::http::StatusCode;
use axum::response::Response;
use maud::{Markup, html};
use sextant_domain::accounts;
use sextant_domain::billing::PricePlan;
use sextant_domain::credentials::Role;
use sextant_domain::error::Error;
use sextant_domain::ids::UserId;
use sextant_domain::projects::{self, Project, ProjectName};
use sextant_domain::runs::listing::ParamCondition;
use sextant_domain::runs::summary::{SeriesKind, Stat};
use sextant_domain::runs::{ParamValue, RunRecord, Status};
use sextant_edge::error;
use time::OffsetDateTime;

use super::layout::{Section, csrf_field, respond};
use super::runs::bytes;
use super::security::{CsrfForm, Page, SignedIn, User, see_other};
use super::usage::grouped;
use super::{PageResult, number, when};
use crate::runs::{ListParams, RunTable, run_table};

/// Columns of each kind the default layout shows at most, so a run with a thousand
/// params still gives a table one can read.
const MAX_COLUMNS: usize = 20;
/// Rows a page of the table shows.
const PAGE_ROWS: usize = 100;
/// Params, and metrics, the Columns control offers at most of each, from the runs that
/// pass the filter.
const MAX_CHOICES: usize = 100;
/// Columns a chosen layout shows at most, so a long `cols` cannot make a page of any size.
const MAX_CHOSEN: usize = 100;
/// Leading columns that can be pinned, the name included: app.css has an offset for each.
const MAX_PIN: usize = 4;

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

/// The run table's query: `tag`, `status`, `name`, `param` (repeated: conditions such
/// as `lr<=0.001`), `sort` (`created`, `name`, `param:NAME`,
/// `metric:NAME[:min|max|last]`), `order` (`asc`/`desc`), `cursor`, and the layout:
/// `cols` (the columns after the name, in order, as comma-separated ids, each with `%`
/// and `,` percent-encoded) and `pin` (how many leading columns, the name first, stay
/// at the left when the table scrolls sideways).
///
/// The Columns form sends its choice as `layout` with a `col` per checked column and an
/// `at.ID` position per column; the page answers it with a redirect to the `cols`
/// URL, so the layout a link carries is the short one.
#[derive(Debug, Default, Clone)]
struct TableQuery {
    tag: String,
    status: String,
    name: String,
    params: Vec<String>,
    sort: String,
    order: String,
    cursor: String,
    /// `None`: the default columns; `Some("")`: the name only.
    cols: Option<String>,
    pin: String,
    /// The Columns form's fields, when it was sent.
    layout: Option<LayoutForm>,
}

#[derive(Debug, Default, Clone)]
struct LayoutForm {
    checked: Vec<String>,
    positions: HashMap<String, u32>,
}

impl TableQuery {
    fn parse(raw: Option<&str>) -> Self {
        let mut query = Self::default();
        for (key, value) in url::form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
            let value = value.trim().to_owned();
            let field = match key.as_ref() {
                "tag" => &mut query.tag,
                "status" => &mut query.status,
                "name" => &mut query.name,
                "sort" => &mut query.sort,
                "order" => &mut query.order,
                "cursor" => &mut query.cursor,
                "pin" => &mut query.pin,
                "cols" => query.cols.insert(String::new()),
                "param" => {
                    if !value.is_empty() {
                        query.params.push(value);
                    }
                    continue;
                }
                "layout" => {
                    query.layout.get_or_insert_default();
                    continue;
                }
                "col" => {
                    query.layout.get_or_insert_default().checked.push(value);
                    continue;
                }
                key => {
                    if let (Some(id), Ok(position)) = (key.strip_prefix("at."), value.parse()) {
                        let layout = query.layout.get_or_insert_default();
                        layout.positions.insert(id.to_owned(), position);
                    }
                    continue;
                }
            };
            *field = value;
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
            param: param_filter(&self.params),
            sort: self.sort_spec(),
            limit: Some(PAGE_ROWS),
            cursor: some(&self.cursor),
            ..ListParams::default()
        }
    }

    /// The columns after the name: the chosen ones, or, without `cols`, `default`.
    fn columns(&self, default: impl FnOnce() -> Vec<Column>) -> Vec<Column> {
        let Some(cols) = &self.cols else {
            return default();
        };
        let mut columns: Vec<Column> = Vec::new();
        for column in cols
            .split(',')
            .filter_map(|id| Column::parse(&decode_id(id)))
        {
            if !columns.contains(&column) && columns.len() < MAX_CHOSEN {
                columns.push(column);
            }
        }
        columns
    }

    /// Leading columns pinned, the name first: 0 to `MAX_PIN`.
    fn pins(&self) -> usize {
        self.pin.parse::<usize>().unwrap_or(0).min(MAX_PIN)
    }

    /// The query with the Columns form's choice in `cols`: the checked columns by
    /// position, those without one after, each kind in the form's order.
    fn with_chosen_layout(mut self) -> Self {
        if let Some(layout) = self.layout.take() {
            let mut checked = layout.checked;
            checked.sort_by_key(|id| layout.positions.get(id).copied().unwrap_or(u32::MAX));
            let ids: Vec<String> = checked.iter().map(|id| encode_id(id)).collect();
            self.cols = Some(ids.join(","));
        }
        self
    }

    /// The query's fields as a link or a form carries them, `cursor` aside.
    fn fields(&self) -> Vec<(&'static str, &str)> {
        let mut fields = vec![
            ("tag", self.tag.as_str()),
            ("status", &self.status),
            ("name", &self.name),
        ];
        fields.extend(self.params.iter().map(|param| ("param", param.as_str())));
        fields.extend([("sort", self.sort.as_str()), ("order", &self.order)]);
        if let Some(cols) = &self.cols {
            fields.push(("cols", cols));
        }
        fields.push(("pin", &self.pin));
        // An empty `cols` means "the name only", unlike an absent one.
        fields.retain(|(key, value)| !value.is_empty() || *key == "cols");
        fields
    }

    /// Hidden inputs that carry the query's `keys` through a form.
    fn hidden(&self, keys: &[&str]) -> Markup {
        html! {
            @for (key, value) in self.fields() {
                @if keys.contains(&key) {
                    input type="hidden" name=(key) value=(value);
                }
            }
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
        TableQuery {
            sort: column.to_owned(),
            order: order.to_owned(),
            ..self.clone()
        }
        .link(project, None)
    }

    /// The link to this table filtered by `tag` instead of its current tag.
    fn tag_link(&self, project: &str, tag: &str) -> String {
        TableQuery {
            tag: tag.to_owned(),
            ..self.clone()
        }
        .link(project, None)
    }

    /// The link to this table with no filter, in its layout.
    fn clear_link(&self, project: &str) -> String {
        TableQuery {
            cols: self.cols.clone(),
            pin: self.pin.clone(),
            ..Default::default()
        }
        .link(project, None)
    }

    /// The workspace of the runs this table's filter keeps.
    fn workspace_link(&self, project: &str) -> String {
        let mut query = url::form_urlencoded::Serializer::new(String::new());
        query.extend_pairs(
            self.fields()
                .into_iter()
                .filter(|(key, _)| ["tag", "status", "name", "param"].contains(key)),
        );
        format!("/projects/{project}/workspace?{}", query.finish())
    }

    fn link(&self, project: &str, cursor: Option<&str>) -> String {
        let mut query = url::form_urlencoded::Serializer::new(String::new());
        query.extend_pairs(self.fields());
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

/// A column id as one item of `cols`: its `%` and `,` percent-encoded.
fn encode_id(id: &str) -> String {
    id.replace('%', "%25").replace(',', "%2C")
}

/// Undoes `encode_id`: a `%` there only starts `%25` or `%2C`, so the two replacements
/// cannot meet.
fn decode_id(item: &str) -> String {
    item.replace("%2C", ",")
        .replace("%2c", ",")
        .replace("%25", "%")
}

/// A column of the run table after the name (which is always first).
#[derive(Debug, Clone, PartialEq)]
enum Column {
    Status,
    Created,
    Duration,
    Owner,
    Tags,
    Cost,
    Param(String),
    Metric(String, Stat),
}

/// The columns every project has, in the order the Columns form offers them.
const FIXED_COLUMNS: [Column; 6] = [
    Column::Status,
    Column::Created,
    Column::Duration,
    Column::Owner,
    Column::Tags,
    Column::Cost,
];

const STATS: [(Stat, &str); 3] = [(Stat::Last, "last"), (Stat::Min, "min"), (Stat::Max, "max")];

fn stat_name(stat: Stat) -> &'static str {
    STATS
        .iter()
        .find(|(s, _)| *s == stat)
        .map_or("last", |(_, name)| name)
}

impl Column {
    /// `status`, `created`, `duration`, `owner`, `tags`, `cost`, `param:NAME` or
    /// `metric:NAME:last|min|max` (the stat may be left out for `last`).
    fn parse(id: &str) -> Option<Self> {
        let column = match id {
            "status" => Column::Status,
            "created" => Column::Created,
            "duration" => Column::Duration,
            "owner" => Column::Owner,
            "tags" => Column::Tags,
            "cost" => Column::Cost,
            _ => {
                if let Some(name) = id.strip_prefix("param:") {
                    Column::Param(name.to_owned())
                } else {
                    let metric = id.strip_prefix("metric:")?;
                    let (name, stat) = metric
                        .rsplit_once(':')
                        .and_then(|(name, stat)| {
                            STATS
                                .iter()
                                .find(|(_, text)| *text == stat)
                                .map(|(stat, _)| (name, *stat))
                        })
                        .unwrap_or((metric, Stat::Last));
                    Column::Metric(name.to_owned(), stat)
                }
            }
        };
        match &column {
            Column::Param(name) | Column::Metric(name, _) if name.is_empty() => None,
            _ => Some(column),
        }
    }

    fn id(&self) -> String {
        match self {
            Column::Param(name) => format!("param:{name}"),
            Column::Metric(name, stat) => format!("metric:{name}:{}", stat_name(*stat)),
            fixed => fixed.class().to_owned(),
        }
    }

    /// The cells' class, which is the fixed columns' id.
    fn class(&self) -> &'static str {
        match self {
            Column::Status => "status",
            Column::Created => "created",
            Column::Duration => "duration",
            Column::Owner => "owner",
            Column::Tags => "tags",
            Column::Cost => "cost",
            Column::Param(_) => "param",
            Column::Metric(..) => "metric",
        }
    }

    /// The column's heading: a metric's stat follows its name unless it is the last value.
    fn heading(&self) -> String {
        match self {
            Column::Status => "Status".into(),
            Column::Created => "Created".into(),
            Column::Duration => "Duration".into(),
            Column::Owner => "Owner".into(),
            Column::Tags => "Tags".into(),
            Column::Cost => "Cost".into(),
            Column::Param(name) | Column::Metric(name, Stat::Last) => name.clone(),
            Column::Metric(name, stat) => format!("{name} ({})", stat_name(*stat)),
        }
    }

    /// How the Columns form names the column.
    fn choice(&self) -> String {
        match self {
            Column::Param(name) => format!("param {name}"),
            Column::Metric(name, stat) => format!("{name} ({})", stat_name(*stat)),
            fixed => fixed.heading(),
        }
    }

    /// The sort spec that orders the table by this column, if it can.
    fn sort(&self) -> Option<String> {
        match self {
            Column::Created => Some("created".into()),
            Column::Param(name) => Some(format!("param:{name}")),
            Column::Metric(name, Stat::Last) => Some(format!("metric:{name}")),
            Column::Metric(name, stat) => Some(format!("metric:{name}:{}", stat_name(*stat))),
            _ => None,
        }
    }

    fn title(&self) -> Option<&'static str> {
        match self {
            Column::Cost => Some("Points logged and bytes stored so far, at the plan's prices"),
            Column::Duration => Some("From creation to the end, or to now for a run still going"),
            _ => None,
        }
    }
}

/// A run's length as a table shows it: `45s`, `12m 05s`, `3h 07m`, `2d 04h`.
fn duration(length: time::Duration) -> String {
    let seconds = length.whole_seconds().max(0);
    match seconds {
        0..60 => format!("{seconds}s"),
        60..3_600 => format!("{}m {:02}s", seconds / 60, seconds % 60),
        3_600..86_400 => format!("{}h {:02}m", seconds / 3_600, seconds % 3_600 / 60),
        _ => format!("{}d {:02}h", seconds / 86_400, seconds % 86_400 / 3_600),
    }
}

/// Which leading cells stay at the left: position 0 is the selection box, 1 the name,
/// then the columns in order. app.css gives each pinned position a fixed width and the
/// left offset the widths before it add up to (the CSP allows no inline style).
struct Pins(usize);

impl Pins {
    fn pinned(&self, position: usize) -> bool {
        self.0 > 0 && position <= self.0
    }

    fn class(&self, base: &str, position: usize) -> Option<String> {
        let mut classes: Vec<String> = Vec::new();
        if !base.is_empty() {
            classes.push(base.to_owned());
        }
        if self.pinned(position) {
            classes.push(format!("pin pin-{position}"));
            if position == self.0 {
                classes.push("pin-edge".into());
            }
        }
        (!classes.is_empty()).then(|| classes.join(" "))
    }

    /// A pinned cell's content sits in a box of its position's width, cut short with
    /// an ellipsis, so no content can widen the column past its offset.
    fn content(&self, position: usize, content: Markup) -> Markup {
        html! {
            @if self.pinned(position) { div.pin-box { (content) } } @else { (content) }
        }
    }
}

/// What the cells of one page of the table read.
struct Cells<'a> {
    table: &'a RunTable,
    plan: &'a PricePlan,
    now: OffsetDateTime,
    timeout: time::Duration,
    /// Members' e-mail addresses, read once when the owner column shows.
    owners: HashMap<UserId, String>,
    query: &'a TableQuery,
    project: &'a str,
}

impl Cells<'_> {
    fn cell(&self, column: &Column, run: &RunRecord) -> Markup {
        match column {
            Column::Status => {
                let status = run.status_at(self.now, self.timeout).to_string();
                html! { span.status data-status=(status) { (status) } }
            }
            Column::Created => html! { (when(run.created_at)) },
            Column::Duration => {
                html! { (duration(run.ended_at.unwrap_or(self.now) - run.created_at)) }
            }
            Column::Owner => match self.owners.get(&run.owner) {
                Some(email) => html! { (email) },
                None => html! { span.muted { (run.owner.to_string()) } },
            },
            Column::Tags => html! {
                @for tag in &run.tags {
                    a.tag href=(self.query.tag_link(self.project, tag)) { (tag) }
                    " "
                }
            },
            Column::Cost => {
                let cost = self.table.cost(self.plan, run);
                html! {
                    span title={ (grouped(cost.points)) " points, " (bytes(cost.bytes)) " stored" } {
                        (cost.cost) " " (cost.currency)
                    }
                }
            }
            Column::Param(name) => html! {
                @if let Some(value) = run.params.get(name) { (param_text(value)) }
            },
            Column::Metric(name, stat) => html! {
                @if let Some(summary) = run.series.get(name) {
                    @if let Some(value) = summary.stat(*stat) {
                        @if *stat == Stat::Last {
                            span title={ "min " (summary.min.map(number).unwrap_or_default()) ", max " (summary.max.map(number).unwrap_or_default()) } { (number(value)) }
                        } @else {
                            (number(value))
                        }
                    }
                }
            },
        }
    }
}

/// The run filter's fields (the run table's and the workspace's): name, tag, status
/// and param conditions, one field each and an empty one for another.
pub(super) fn filter_fields(name: &str, tag: &str, status: &str, params: &[String]) -> Markup {
    html! {
        label { "Name " input type="search" name="name" value=(name); }
        label { "Tag " input type="text" name="tag" value=(tag); }
        label { "Status "
            select name="status" {
                option value="" selected[status.is_empty()] { "any" }
                @for choice in STATUSES {
                    @let text = choice.to_string();
                    option value=(text) selected[status == text] { (text) }
                }
            }
        }
        @for condition in params {
            label { "Param " input type="text" name="param" value=(condition); }
        }
        label title="NAME OP VALUE, OP one of = != < <= > >=; a run without the param passes only !=" {
            "Param " input type="text" name="param" placeholder="lr<=0.001";
        }
    }
}

/// The page's param conditions (one a field) as the run table's `param` list.
pub(super) fn param_filter(params: &[String]) -> Option<String> {
    let conditions: Vec<String> = params
        .iter()
        .map(|condition| ParamCondition::escape(condition))
        .collect();
    (!conditions.is_empty()).then(|| conditions.join(";"))
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

/// The names of `runs`' params and of their numeric series, each sorted and at most
/// `most` of each.
fn params_and_metrics<'a>(
    runs: impl Iterator<Item = &'a RunRecord> + Clone,
    most: usize,
) -> (Vec<&'a str>, Vec<&'a str>) {
    let params = runs
        .clone()
        .flat_map(|run| run.params.keys())
        .map(String::as_str)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .take(most)
        .collect();
    let metrics = runs
        .flat_map(|run| run.series.iter())
        .filter(|(_, summary)| summary.kind == SeriesKind::Numeric)
        .map(|(name, _)| name.as_str())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .take(most)
        .collect();
    (params, metrics)
}

/// The Columns control: every column the table can show, those shown first in their
/// order with their positions, and how many to pin.
fn columns_control(
    project: &str,
    query: &TableQuery,
    shown: &[Column],
    available: &[Column],
) -> Markup {
    let offered = shown.iter().map(|column| (column, true)).chain(
        available
            .iter()
            .filter(|column| !shown.contains(column))
            .map(|column| (column, false)),
    );
    html! {
        details #columns {
            summary { "Columns" }
            form #columns-form method="get" action={ "/projects/" (project) } {
                (query.hidden(&["tag", "status", "name", "param", "sort", "order"]))
                input type="hidden" name="layout" value="1";
                p.muted { "Name comes first. Check the columns to show and number them in the order wanted; checked ones without a number go last." }
                ol.column-choices {
                    @for (index, (column, checked)) in offered.enumerate() {
                        @let id = column.id();
                        li {
                            label {
                                input type="checkbox" name="col" value=(id) checked[checked];
                                " " (column.choice())
                            }
                            input type="number" name={ "at." (id) } min="1"
                                value=[checked.then_some(index + 1)]
                                aria-label={ "Position of " (column.choice()) };
                        }
                    }
                }
                label { "Pin the first "
                    input type="number" name="pin" min="0" max=(MAX_PIN) value=(query.pins());
                    " columns (Name is the first) while the table scrolls sideways"
                }
                button type="submit" { "Show these columns" }
            }
        }
    }
}

/// `GET /projects/{project}`: the run table.
pub async fn runs(
    SignedIn(page, user): SignedIn,
    Path(project): Path<String>,
    RawQuery(raw): RawQuery,
) -> PageResult<Response> {
    let tenant = &user.caller.tenant;
    let project = projects::find(&page.state.store, tenant, &project).await?;
    let name = project.name.as_str();
    let query = TableQuery::parse(raw.as_deref());
    if query.layout.is_some() {
        let chosen = query.with_chosen_layout();
        return Ok(page.finish(see_other(&chosen.link(name, None))));
    }
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
    let columns = query.columns(|| {
        let (params, metrics) = params_and_metrics(rows.iter().copied(), MAX_COLUMNS);
        FIXED_COLUMNS
            .iter()
            .filter(|column| !matches!(column, Column::Duration | Column::Owner))
            .cloned()
            .chain(params.into_iter().map(|name| Column::Param(name.into())))
            .chain(
                metrics
                    .into_iter()
                    .map(|name| Column::Metric(name.into(), Stat::Last)),
            )
            .collect()
    });
    let available: Vec<Column> = {
        let kept = table.page.kept.iter().map(|&i| &table.runs[i]);
        let (params, metrics) = params_and_metrics(kept, MAX_CHOICES);
        FIXED_COLUMNS
            .iter()
            .cloned()
            .chain(params.into_iter().map(|name| Column::Param(name.into())))
            .chain(metrics.into_iter().flat_map(|name| {
                STATS
                    .iter()
                    .map(move |(stat, _)| Column::Metric(name.into(), *stat))
            }))
            .collect()
    };
    let owners = if columns.contains(&Column::Owner) {
        accounts::list_members(&page.state.store, tenant)
            .await?
            .into_iter()
            .map(|member| (member.id, member.email.as_str().to_owned()))
            .collect()
    } else {
        HashMap::new()
    };
    let pins = Pins(query.pins().min(columns.len() + 1));
    let plan = &page.state.settings.plan;
    let cells = Cells {
        table: &table,
        plan,
        now: page.state.now(),
        timeout: page.state.settings.heartbeat_timeout,
        owners,
        query: &query,
        project: name,
    };
    let body = html! {
        p.crumbs { a href="/projects" { "Projects" } " / " }
        div.run-head {
            h1 { (name) }
            a #workspace-link href=(query.workspace_link(name)) { "Workspace: charts of these runs" }
        }
        form #filter .inline method="get" action={ "/projects/" (name) } {
            (filter_fields(&query.name, &query.tag, &query.status, &query.params))
            (query.hidden(&["sort", "order", "cols", "pin"]))
            button type="submit" { "Filter" }
            " "
            a #clear href=(query.clear_link(name)) { "Clear" }
        }
        (columns_control(name, &query, &columns, &available))
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
                            th class=[pins.class("", 0)] { (pins.content(0, html! { span.visually-hidden { "Select" } })) }
                            th class=[pins.class("name", 1)] data-col="name" {
                                (pins.content(1, html! { a.sort href=(query.sort_link(name, "name")) { "Name" (query.arrow("name")) } }))
                            }
                            @for (index, column) in columns.iter().enumerate() {
                                th class=[pins.class(column.class(), index + 2)] data-col=(column.id()) title=[column.title()] {
                                    (pins.content(index + 2, html! {
                                        @if let Some(sort) = column.sort() {
                                            a.sort href=(query.sort_link(name, &sort)) { (column.heading()) (query.arrow(&sort)) }
                                        } @else {
                                            (column.heading())
                                        }
                                    }))
                                }
                            }
                        }
                    }
                    tbody {
                        @for run in &rows {
                            @let id = run.id.to_string();
                            tr data-run-id=(id) {
                                td class=[pins.class("", 0)] {
                                    (pins.content(0, html! { input type="checkbox" name="run" value=(id) aria-label={ "Select " (run.name) }; }))
                                }
                                td class=[pins.class("name", 1)] {
                                    (pins.content(1, html! { a.run-link href={ "/runs/" (id) } { (run.name) } }))
                                }
                                @for (index, column) in columns.iter().enumerate() {
                                    td class=[pins.class(column.class(), index + 2)] {
                                        (pins.content(index + 2, cells.cell(column, run)))
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
                button #open-workspace type="submit" formaction={ "/projects/" (name) "/workspace" } formmethod="get" { "Open in workspace" }
                @if let Some(cursor) = &table.page.next_cursor {
                    " "
                    a.next href=(query.link(name, Some(cursor))) { "Next page" }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn column_ids_survive_the_comma_separated_list_whatever_they_hold() {
        for id in [
            "param:a,b",
            "param:100%",
            "param:%2C",
            "metric:x:y:min",
            "status",
        ] {
            assert_eq!(decode_id(&encode_id(id)), id);
            let column = Column::parse(id).expect(id);
            assert_eq!(Column::parse(&column.id()), Some(column.clone()), "{id}");
        }
        assert_eq!(
            Column::parse("metric:loss"),
            Some(Column::Metric("loss".into(), Stat::Last))
        );
        assert_eq!(Column::parse("param:"), None);
        assert_eq!(Column::parse("bogus"), None);
    }

    #[test]
    fn durations_read_in_the_two_largest_units() {
        let d = time::Duration::seconds;
        assert_eq!(duration(d(45)), "45s");
        assert_eq!(duration(d(12 * 60 + 5)), "12m 05s");
        assert_eq!(duration(d(3 * 3_600 + 7 * 60 + 59)), "3h 07m");
        assert_eq!(duration(d(2 * 86_400 + 4 * 3_600)), "2d 04h");
        assert_eq!(duration(d(-3)), "0s");
    }
}
