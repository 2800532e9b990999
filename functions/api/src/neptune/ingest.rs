//! `POST /api/client/v1/ingest`: one `RunOperation` of Neptune's client, applied to
//! Sextant's model before the answer (so a request is never pending):
//!
//! - the project of `workspace/project` is the team's project of that name, made if
//!   missing; the workspace is the caller's team, whatever it is called there, so a
//!   `NEPTUNE_PROJECT` moves over unchanged;
//! - `run_id` is the run's external id (`runs::create_or_resume`): `create` makes the
//!   run, or finds it again (the client resumes runs by creating them again). The run's
//!   name is the experiment name, or else the `run_id`;
//! - configs (`assign`) are typed parameters, `sys/name` and `sys/description` the
//!   run's own, and `sys/tags` (`assign`ed or `modify_sets`) its tags;
//! - float series (`append`) are numeric series and string series text series, logged
//!   through the same batches as the SDK's, so they are metered alike and stored once
//!   however often the client retries: each batch's id is a digest of the request;
//! - a step `whole + micro / 10⁶` is the integer `whole` in a series that began with
//!   whole steps, and `whole × 10⁶ + micro` in one whose first points had a fraction
//!   (`StepUnit::Micro`): exact, and no two steps meet.
//!
//! What is refused is refused per field, as Neptune does, and reported through the
//! request id (`outcome`); the rest of the request is stored.

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use sextant_domain::credentials::Caller;
use sextant_domain::error::ErrorCode;
use sextant_domain::floats::JsonF64;
use sextant_domain::projects::{self, ProjectError, ProjectName};
use sextant_domain::runs::params::{self, ParamValue};
use sextant_domain::runs::summary::{SeriesKind, StepUnit};
use sextant_domain::runs::{self, NewRun, RunError, RunRecord};
use sextant_domain::series::batch::{self, LogBatch, MAX_BATCH_POINTS, SeriesColumns, TextLine};
use sextant_domain::series::{self, SeriesError, text};
use sextant_edge::auth::{self, DataWriter};
use sextant_edge::error::{ApiError, ApiResult};
use sextant_edge::state::AppState;
use sextant_neptune_proto::{
    IngestCode, Message, Operation, RunOperation, SetOperation, SubmitResponse, Timestamp,
    UpdateRunSnapshot, modify_set, value,
};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use super::outcome::Outcome;

/// Neptune's limit on a step: `whole` below 10¹², so a step in millionths fits an i64.
const MAX_WHOLE_STEP: u64 = 1_000_000_000_000;
/// The paths Neptune keeps tags in; its group tags are tags here too.
const TAG_PATHS: [&str; 2] = ["sys/tags", "sys/group_tags"];

/// Logging to a run is the data plane, as the SDK's log batches are: the access token
/// is trusted on its signature. Creating a run (and its project) is the control plane:
/// the credential is checked against its key again, so a revoked key makes nothing.
pub(super) async fn ingest(
    State(state): State<AppState>,
    DataWriter(caller): DataWriter,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    let operation = RunOperation::decode(body.clone()).map_err(|err| {
        ApiError::new(
            ErrorCode::InvalidRequest,
            format!("the body is not a Neptune RunOperation: {err}"),
        )
    })?;
    let caller = match operation.operation {
        Some(Operation::Create(_)) => auth::on_control_plane(&state, &headers).await?,
        _ => caller,
    };
    let digest = request_digest(&caller, &body);
    let outcome = apply(&state, &caller, operation, &digest).await?;
    let answer = SubmitResponse {
        request_id: String::new(),
        request_ids: vec![outcome.request_id(&digest)],
    };
    Ok((
        [(header::CONTENT_TYPE, "application/x-protobuf")],
        answer.encode_to_vec(),
    )
        .into_response())
}

/// Names a request by its team and content: a retry of it is the same request.
fn request_digest(caller: &Caller, body: &[u8]) -> String {
    let mut hasher = Sha256::new();
    hasher.update(caller.tenant.id().to_string());
    hasher.update([0]);
    hasher.update(body);
    hex::encode(&hasher.finalize()[..16])
}

async fn apply(
    state: &AppState,
    caller: &Caller,
    operation: RunOperation,
    digest: &str,
) -> ApiResult<Outcome> {
    let mut outcome = Outcome::default();
    // `workspace/project`: the workspace is the caller's team.
    let project_name = operation
        .project
        .rsplit_once('/')
        .map_or(operation.project.as_str(), |(_, project)| project);
    let Ok(name) = ProjectName::parse(project_name) else {
        outcome.refuse(IngestCode::ProjectInvalidName, 1);
        return Ok(outcome);
    };
    let run_id = operation.run_id;
    let snapshots = match operation.operation {
        None => {
            return Err(ApiError::new(
                ErrorCode::InvalidRequest,
                "a RunOperation names an operation: create, update or update_batch",
            ));
        }
        Some(Operation::Create(run)) => {
            let project = match projects::find_or_create(&state.store, caller, name).await {
                Ok(project) => project,
                Err(ProjectError::NotFound) => {
                    outcome.refuse(IngestCode::ProjectNotFound, 1);
                    return Ok(outcome);
                }
                Err(err) => return Err(err.into()),
            };
            let name = [run.experiment_id.as_deref(), Some(run_id.as_str())]
                .into_iter()
                .flatten()
                .find(|name| runs::check_name(name).is_ok())
                .map(str::to_owned);
            let now = state.now();
            let created_at = run
                .creation_time
                .and_then(|at| timestamp(&at))
                .and_then(|at| OffsetDateTime::from_unix_timestamp_nanos((at * 1e9) as i128).ok())
                // A client clock ahead of ours starts the run now.
                .filter(|at| *at <= now);
            let new = NewRun {
                name,
                created_at,
                ..NewRun::default()
            };
            match runs::create_or_resume(&state.store, caller, &project, &run_id, new).await {
                Ok(_) => outcome.accept(1),
                Err(RunError::InvalidName) => {
                    outcome.refuse(IngestCode::RunInvalidCreationParameters, 1)
                }
                Err(err) => return Err(err.into()),
            }
            return Ok(outcome);
        }
        Some(Operation::Update(snapshot)) => vec![snapshot],
        Some(Operation::UpdateBatch(batch)) => batch.snapshots,
    };
    // A run is created before it is logged to: its project is there.
    let Some(project) = projects::id_by_name(&state.store, &caller.tenant, &name).await? else {
        outcome.refuse(IngestCode::ProjectNotFound, 1);
        return Ok(outcome);
    };
    let Some(record) = runs::find_external(&state.store, &caller.tenant, project, &run_id).await?
    else {
        outcome.refuse(IngestCode::RunNotFound, 1);
        return Ok(outcome);
    };
    let plan = Plan::of(&record, snapshots, &mut outcome);
    change_record(state, caller, &record, &plan.record, &mut outcome).await?;
    log_series(state, caller, &record, plan.series, digest, &mut outcome).await?;
    Ok(outcome)
}

/// Unix seconds of a protobuf timestamp.
fn timestamp(at: &Timestamp) -> Option<f64> {
    let seconds = at.seconds as f64 + f64::from(at.nanos) / 1e9;
    seconds.is_finite().then_some(seconds)
}

/// What an operation changes in the run record.
#[derive(Debug, Default)]
struct RecordChanges {
    params: BTreeMap<String, ParamValue>,
    name: Option<String>,
    description: Option<String>,
    /// Tags set whole (an `assign` of `sys/tags`), before the additions and removals.
    tags: Option<Vec<String>>,
    /// In the order sent: `true` adds, `false` removes.
    tag_changes: Vec<(String, bool)>,
}

impl RecordChanges {
    fn is_empty(&self) -> bool {
        self.params.is_empty()
            && self.name.is_none()
            && self.description.is_none()
            && self.tags.is_none()
            && self.tag_changes.is_empty()
    }
}

/// One series' points as an operation sends them, steps still Neptune's.
#[derive(Debug)]
enum Points {
    Numeric(Vec<(Step, f64, Option<f64>)>),
    Text(Vec<(Step, String, Option<f64>)>),
}

#[derive(Debug, Clone, Copy)]
struct Step {
    whole: u64,
    micro: u64,
}

impl Step {
    fn in_unit(self, unit: StepUnit) -> Option<i64> {
        // Both parts were checked below Neptune's bounds, so they fit an i64.
        unit.stored(self.whole as i64, self.micro as i64)
    }
}

/// An operation sorted into record changes and series points, with what was refused
/// on sight counted in the outcome.
#[derive(Debug, Default)]
struct Plan {
    record: RecordChanges,
    series: BTreeMap<String, Points>,
}

impl Plan {
    fn of(record: &RunRecord, snapshots: Vec<UpdateRunSnapshot>, outcome: &mut Outcome) -> Self {
        let mut plan = Plan::default();
        for snapshot in snapshots {
            plan.add(record, snapshot, outcome);
        }
        plan
    }

    fn add(&mut self, record: &RunRecord, snapshot: UpdateRunSnapshot, outcome: &mut Outcome) {
        let at = snapshot.timestamp.as_ref().and_then(timestamp);
        for (path, value) in snapshot.assign {
            let code = self.assign(record, path, value.value);
            outcome.count(code);
        }
        for (path, set) in snapshot.modify_sets {
            let Some(modify_set::Type::String(set)) = set.r#type else {
                outcome.refuse(IngestCode::FieldTypeUnsupported, 1);
                continue;
            };
            if !TAG_PATHS.contains(&path.as_str()) {
                outcome.refuse(IngestCode::FieldTypeUnsupported, set.values.len() as u64);
                continue;
            }
            for (tag, operation) in set.values {
                match SetOperation::try_from(operation) {
                    Ok(SetOperation::Add) => self.record.tag_changes.push((tag, true)),
                    Ok(SetOperation::Remove) => self.record.tag_changes.push((tag, false)),
                    _ => {}
                }
                outcome.accept(1);
            }
        }
        // A preview is a value not yet final; Sextant keeps only the committed ones
        // that follow it.
        if snapshot.preview.is_some_and(|preview| preview.is_preview) {
            outcome.accept(snapshot.append.len() as u64);
            return;
        }
        for (path, value) in snapshot.append {
            let step = match snapshot.step {
                Some(step) if step.micro >= StepUnit::MICROS_PER_STEP as u64 => {
                    Err(IngestCode::SeriesStepInvalid)
                }
                Some(step) if step.whole >= MAX_WHOLE_STEP => Err(IngestCode::SeriesStepTooLarge),
                Some(step) => Ok(Step {
                    whole: step.whole,
                    micro: step.micro,
                }),
                // The client always sends one; Neptune's default is the next whole step.
                None => Ok(Step {
                    whole: next_whole_step(record, &path),
                    micro: 0,
                }),
            };
            let code = step.and_then(|step| self.append(record, path, value.value, step, at));
            outcome.count(code);
        }
    }

    fn assign(
        &mut self,
        record: &RunRecord,
        path: String,
        value: Option<value::Value>,
    ) -> Result<(), IngestCode> {
        use value::Value as V;
        match (path.as_str(), value) {
            ("sys/name", Some(V::String(name))) => {
                runs::check_name(&name).map_err(|_| IngestCode::RunInvalidCreationParameters)?;
                self.record.name = Some(name);
            }
            ("sys/description", Some(V::String(description))) => {
                runs::check_description(&description)
                    .map_err(|_| IngestCode::StringValueExceedsSizeLimit)?;
                self.record.description = Some(description);
            }
            ("sys/tags", Some(V::StringSet(set))) => self.record.tags = Some(set.values),
            (path, _) if path.starts_with("sys/") => return Err(IngestCode::FieldPathNonWritable),
            (_, value) => {
                let value = match value {
                    Some(V::Float64(value)) => ParamValue::Float(value),
                    Some(V::Int64(value)) => ParamValue::Int(value),
                    Some(V::Bool(value)) => ParamValue::Bool(value),
                    Some(V::String(value)) => ParamValue::String(value),
                    Some(V::Timestamp(at)) => ParamValue::String(rfc3339(&at)?),
                    Some(V::StringSet(set)) => {
                        let mut values = set.values;
                        values.sort();
                        values.dedup();
                        ParamValue::String(serde_json::Value::from(values).to_string())
                    }
                    Some(V::FileRef(_) | V::Histogram(_)) | None => {
                        return Err(IngestCode::FieldTypeUnsupported);
                    }
                };
                if path.is_empty() {
                    return Err(IngestCode::FieldPathEmpty);
                }
                if path.len() > params::MAX_NAME_BYTES {
                    return Err(IngestCode::FieldPathExceedsSizeLimit);
                }
                if matches!(&value, ParamValue::String(text) if text.len() > params::MAX_STRING_BYTES)
                {
                    return Err(IngestCode::StringValueExceedsSizeLimit);
                }
                if record.series.contains_key(&path) || self.series.contains_key(&path) {
                    return Err(IngestCode::FieldTypeConflicting);
                }
                if let Some(logged) = record.params.get(&path).or(self.record.params.get(&path))
                    && !same_type(logged, &value)
                {
                    return Err(IngestCode::FieldTypeConflicting);
                }
                self.record.params.insert(path, value);
            }
        }
        Ok(())
    }

    fn append(
        &mut self,
        record: &RunRecord,
        path: String,
        value: Option<value::Value>,
        step: Step,
        at: Option<f64>,
    ) -> Result<(), IngestCode> {
        use value::Value as V;
        if path.is_empty() {
            return Err(IngestCode::FieldPathEmpty);
        }
        if series::check_name(&path).is_err() {
            return Err(IngestCode::FieldPathInvalid);
        }
        if record.params.contains_key(&path) || self.record.params.contains_key(&path) {
            return Err(IngestCode::FieldTypeConflicting);
        }
        let kind = match &value {
            Some(V::Float64(_) | V::Int64(_)) => SeriesKind::Numeric,
            Some(V::String(_)) => SeriesKind::Text,
            _ => return Err(IngestCode::FieldTypeUnsupported),
        };
        if record
            .series
            .get(&path)
            .is_some_and(|summary| summary.kind != kind)
        {
            return Err(IngestCode::FieldTypeConflicting);
        }
        let entry = self.series.entry(path).or_insert_with(|| match kind {
            SeriesKind::Numeric => Points::Numeric(Vec::new()),
            SeriesKind::Text => Points::Text(Vec::new()),
        });
        match (entry, value) {
            (Points::Numeric(points), Some(V::Float64(value))) => points.push((step, value, at)),
            (Points::Numeric(points), Some(V::Int64(value))) => {
                points.push((step, value as f64, at))
            }
            (Points::Text(points), Some(V::String(line))) => {
                if line.len() > text::MAX_LINE_BYTES {
                    return Err(IngestCode::StringValueExceedsSizeLimit);
                }
                points.push((step, line, at))
            }
            // One operation sending a path as numbers and as text.
            _ => return Err(IngestCode::FieldTypeConflicting),
        }
        Ok(())
    }
}

fn same_type(a: &ParamValue, b: &ParamValue) -> bool {
    std::mem::discriminant(a) == std::mem::discriminant(b)
}

fn rfc3339(at: &Timestamp) -> Result<String, IngestCode> {
    let nanos = i128::from(at.seconds) * 1_000_000_000 + i128::from(at.nanos);
    OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .ok()
        .and_then(|at| {
            at.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .ok_or(IngestCode::DatetimeValueOutOfRange)
}

/// The step after a series' last, for a point sent without one.
fn next_whole_step(record: &RunRecord, path: &str) -> u64 {
    record.series.get(path).map_or(0, |summary| {
        u64::try_from(summary.step_unit.whole_of(summary.last_step)).unwrap_or(0) + 1
    })
}

/// Writes parameters, name, description and tags in one change of the run record.
/// A refusal by the run's limits (too many parameters or tags) refuses them all.
async fn change_record(
    state: &AppState,
    caller: &Caller,
    record: &RunRecord,
    changes: &RecordChanges,
    outcome: &mut Outcome,
) -> ApiResult<()> {
    if changes.is_empty() {
        return Ok(());
    }
    let fields = changes.params.len() as u64;
    let written = runs::update(&state.store, &caller.tenant, record.id, |record, _| {
        let updates = changes
            .params
            .iter()
            .map(|(name, value)| (name.clone(), Some(value.clone())))
            .collect();
        params::apply(&mut record.params, updates)?;
        if let Some(name) = &changes.name {
            record.name.clone_from(name);
        }
        if let Some(description) = &changes.description {
            record.description.clone_from(description);
        }
        if let Some(tags) = &changes.tags {
            record.tags = tags.iter().cloned().collect();
        }
        for (tag, add) in &changes.tag_changes {
            if *add {
                record.tags.insert(tag.clone());
            } else {
                record.tags.remove(tag);
            }
        }
        runs::check_tags(&record.tags)?;
        runs::check_tag_count(&record.tags)?;
        Ok::<_, RunError>(())
    })
    .await;
    match written {
        Ok(_) => Ok(()),
        Err(RunError::InvalidParams(_)) => {
            outcome.undo_accepted(fields, IngestCode::StringSetExceedsSizeLimit);
            Ok(())
        }
        Err(RunError::InvalidTag | RunError::TooManyTags) => {
            outcome.refuse(IngestCode::StringSetExceedsSizeLimit, 1);
            Ok(())
        }
        Err(err) => Err(err.into()),
    }
}

/// Logs the operation's series points as log batches of at most `MAX_BATCH_POINTS`,
/// each under an id made of the request's digest, so a retried request stores nothing
/// twice.
async fn log_series(
    state: &AppState,
    caller: &Caller,
    record: &RunRecord,
    series: BTreeMap<String, Points>,
    digest: &str,
    outcome: &mut Outcome,
) -> ApiResult<()> {
    let mut batches: Vec<(LogBatch, u64)> = Vec::new();
    let mut current = LogBatch::default();
    let mut room = MAX_BATCH_POINTS;
    for (name, points) in series {
        let unit = record
            .series
            .get(&name)
            .map(|summary| summary.step_unit)
            .unwrap_or_else(|| points.unit());
        let (mut column, mismatched) = points.in_unit(unit);
        outcome.undo_accepted(mismatched, IngestCode::SeriesStepInvalid);
        while column.len() > 0 {
            if room == 0 {
                batches.push((std::mem::take(&mut current), MAX_BATCH_POINTS as u64));
                room = MAX_BATCH_POINTS;
            }
            let part = column.take_front(room);
            room -= part.len();
            if !unit.is_whole() {
                current.step_units.insert(name.clone(), unit);
            }
            part.put(name.clone(), &mut current);
        }
    }
    if room < MAX_BATCH_POINTS {
        batches.push((current, (MAX_BATCH_POINTS - room) as u64));
    }
    for (part, (mut batch, points)) in batches.into_iter().enumerate() {
        batch.batch_id = Some(format!("neptune-{digest}-{part}"));
        match batch::log(
            &state.store,
            state.intake(),
            &caller.tenant,
            record.id,
            batch,
        )
        .await
        {
            Ok(_) => {}
            // A concurrent request started one of these series first, as the other
            // kind or unit.
            Err(SeriesError::KindMismatch(_) | SeriesError::StepUnitMismatch { .. }) => {
                outcome.undo_accepted(points, IngestCode::FieldTypeConflicting)
            }
            Err(SeriesError::Usage(_) | SeriesError::Run(RunError::Ended(_))) => {
                outcome.undo_accepted(points, IngestCode::IngestSuspended)
            }
            Err(SeriesError::TooManySeries) => {
                outcome.undo_accepted(points, IngestCode::FieldTypeUnsupported)
            }
            Err(err) => return Err(err.into()),
        }
    }
    Ok(())
}

impl Points {
    /// The unit a new series takes: millionths when any of its first points has a
    /// fraction.
    fn unit(&self) -> StepUnit {
        let fractional = match self {
            Points::Numeric(points) => points.iter().any(|(step, ..)| step.micro != 0),
            Points::Text(points) => points.iter().any(|(step, ..)| step.micro != 0),
        };
        if fractional {
            StepUnit::Micro
        } else {
            StepUnit::Whole
        }
    }

    /// The points with steps in `unit`, as a batch carries them, and how many could not
    /// be (a fraction in a series of whole steps).
    fn in_unit(self, unit: StepUnit) -> (Column, u64) {
        let mut mismatched = 0;
        let column = match self {
            Points::Numeric(points) => {
                let mut columns = SeriesColumns {
                    steps: Vec::with_capacity(points.len()),
                    values: Vec::with_capacity(points.len()),
                    timestamps: None,
                };
                let mut timestamps = Vec::with_capacity(points.len());
                for (step, value, at) in points {
                    let Some(step) = step.in_unit(unit) else {
                        mismatched += 1;
                        continue;
                    };
                    columns.steps.push(step);
                    columns.values.push(JsonF64(value));
                    timestamps.push(at);
                }
                // The client stamps every snapshot; one without is timed by the batch.
                if timestamps.iter().all(Option::is_some) {
                    columns.timestamps = Some(timestamps.into_iter().flatten().collect());
                }
                Column::Numeric(columns)
            }
            Points::Text(points) => Column::Text(
                points
                    .into_iter()
                    .filter_map(|(step, text, timestamp)| match step.in_unit(unit) {
                        Some(step) => Some(TextLine {
                            step,
                            text,
                            timestamp,
                        }),
                        None => {
                            mismatched += 1;
                            None
                        }
                    })
                    .collect(),
            ),
        };
        (column, mismatched)
    }
}

/// One series' points as a log batch carries them.
#[derive(Debug)]
enum Column {
    Numeric(SeriesColumns),
    Text(Vec<TextLine>),
}

impl Column {
    fn len(&self) -> usize {
        match self {
            Column::Numeric(columns) => columns.steps.len(),
            Column::Text(lines) => lines.len(),
        }
    }

    /// The first `n` points (all of them, if fewer), leaving the rest.
    fn take_front(&mut self, n: usize) -> Column {
        let n = n.min(self.len());
        match self {
            Column::Numeric(columns) => Column::Numeric(SeriesColumns {
                steps: columns.steps.drain(..n).collect(),
                values: columns.values.drain(..n).collect(),
                timestamps: columns
                    .timestamps
                    .as_mut()
                    .map(|timestamps| timestamps.drain(..n).collect()),
            }),
            Column::Text(lines) => Column::Text(lines.drain(..n).collect()),
        }
    }

    fn put(self, name: String, batch: &mut LogBatch) {
        match self {
            Column::Numeric(columns) => {
                batch.series.insert(name, columns);
            }
            Column::Text(lines) => {
                batch.text.insert(name, lines);
            }
        }
    }
}
