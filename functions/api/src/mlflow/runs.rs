//! MLflow runs: Sextant's runs, with MLflow's rules for parameters (set once) and tags
//! (key-value), and metrics logged through Sextant's log batches.

use std::collections::BTreeMap;

use axum::extract::State;
use serde::Deserialize;
use serde_json::{Value, json};
use sextant_domain::credentials::Caller;
use sextant_domain::error::{Error, ErrorCode};
use sextant_domain::floats::JsonF64;
use sextant_domain::ids::RunId;
use sextant_domain::lineage::{self, NewInput};
use sextant_domain::runs::params::{self, ParamValue};
use sextant_domain::runs::summary::SeriesKind;
use sextant_domain::runs::{self, GitInfo, NewRun, RunChanges, RunRecord, Status};
use sextant_domain::series;
use sextant_domain::series::batch::{self, LogBatch, SeriesColumns};
use sextant_edge::auth::Writer;
use sextant_edge::error::{ApiError, ApiResult};
use sextant_edge::http::{Json, Query};
use sextant_edge::state::AppState;
use sextant_storage::kv::{Condition, Key, Query as KvQuery};
use sextant_storage::records::{doc_item, query_docs};
use sha2::{Digest, Sha256};

use super::convert::{self, KeyValue};
use super::experiments;
use super::filter::{self, Entity, Field, Key as FilterKey};
use super::paging::{self, PageRequest, ViewType};

type JsonResult = ApiResult<axum::Json<Value>>;

pub const MAX_METRICS_PER_BATCH: usize = 1_000;
pub const MAX_PARAMS_TAGS_PER_BATCH: usize = 100;
pub const MAX_ENTITIES_PER_BATCH: usize = 1_000;
/// How many experiments one search may span; each is a full read of its runs.
pub const MAX_SEARCH_EXPERIMENTS: usize = 100;

/// MLflow's clients send both the run's id and its older name.
#[derive(Debug, Default, Deserialize)]
pub struct RunRef {
    run_id: Option<String>,
    run_uuid: Option<String>,
}

impl RunRef {
    fn id(&self) -> ApiResult<RunId> {
        let text = self
            .run_id
            .as_deref()
            .or(self.run_uuid.as_deref())
            .ok_or_else(|| ApiError::new(ErrorCode::MissingRunId, "run_id is required"))?;
        Ok(runs::parse_id(text)?)
    }
}

/// A run that takes changes: MLflow refuses them on a deleted run.
async fn active_run(state: &AppState, caller: &Caller, run: RunId) -> ApiResult<RunRecord> {
    let record = runs::load(&state.store, &caller.tenant, run).await?.record;
    if record.trashed_at.is_some() {
        return Err(ApiError::new(
            ErrorCode::Trashed,
            format!("run {run} is deleted; restore it before changing it"),
        ));
    }
    Ok(record)
}

#[derive(Debug, Deserialize)]
pub struct CreateRun {
    experiment_id: Option<String>,
    #[serde(default, deserialize_with = "convert::int64")]
    start_time: Option<i64>,
    #[serde(default)]
    tags: Vec<KeyValue>,
    run_name: Option<String>,
}

/// A new run's fields from what MLflow gives at creation: its name, start and tags.
fn new_run(body: CreateRun, now: time::OffsetDateTime) -> ApiResult<NewRun> {
    let mut new = NewRun {
        name: body.run_name.filter(|name| !name.is_empty()),
        // A client's clock a little ahead of ours is no reason to refuse the run.
        created_at: body
            .start_time
            .map(convert::from_millis)
            .transpose()?
            .map(|start| start.min(now)),
        ..NewRun::default()
    };
    let mut git = GitInfo::default();
    for tag in body.tags {
        convert::check_tag_key(&tag.key)?;
        if let Some(field) = convert::git_field(&mut git, &tag.key) {
            *field = Some(tag.value);
            continue;
        }
        match tag.key.as_str() {
            convert::RUN_NAME_TAG => {
                new.name.get_or_insert(tag.value);
            }
            convert::NOTE_TAG => new.description = Some(tag.value),
            key => {
                new.tags
                    .retain(|existing| convert::tag_key(existing) != key);
                new.tags.push(format!("{key}={}", tag.value));
            }
        }
    }
    if git != GitInfo::default() {
        new.git = Some(git);
    }
    Ok(new)
}

pub async fn create(
    State(state): State<AppState>,
    Writer(caller): Writer,
    Json(body): Json<CreateRun>,
) -> JsonResult {
    let experiment = body.experiment_id.clone().unwrap_or_else(|| "0".into());
    let project = experiments::find_active(&state, &caller, &experiment).await?;
    let new = new_run(body, state.now())?;
    let record = runs::create(&state.store, &caller, &project, new).await?;
    Ok(axum::Json(
        json!({ "run": convert::run_json(&state, &record, Vec::new()) }),
    ))
}

pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Query(query): Query<RunRef>,
) -> JsonResult {
    let run = query.id()?;
    let record = runs::load(&state.store, &caller.tenant, run).await?.record;
    let inputs = dataset_inputs(&state, &caller, run).await?;
    Ok(axum::Json(
        json!({ "run": convert::run_json(&state, &record, inputs) }),
    ))
}

#[derive(Debug, Deserialize)]
pub struct UpdateRun {
    #[serde(flatten)]
    run: RunRef,
    status: Option<String>,
    #[serde(default, deserialize_with = "convert::int64")]
    end_time: Option<i64>,
    run_name: Option<String>,
}

pub async fn update(
    State(state): State<AppState>,
    Writer(caller): Writer,
    Json(body): Json<UpdateRun>,
) -> JsonResult {
    let run = body.run.id()?;
    active_run(&state, &caller, run).await?;
    let status = body
        .status
        .as_deref()
        .map(convert::parse_status)
        .transpose()?;
    let ending = status.is_some_and(Status::is_ended);
    let changes = RunChanges {
        name: body.run_name.filter(|name| !name.is_empty()),
        status,
        ended_at: body
            .end_time
            .filter(|_| ending)
            .map(convert::from_millis)
            .transpose()?,
        ..RunChanges::default()
    };
    let record = runs::patch(
        &state.store,
        state.settings.heartbeat_timeout,
        &caller.tenant,
        run,
        changes,
    )
    .await?;
    Ok(axum::Json(
        json!({ "run_info": convert::run_info(&state, &record) }),
    ))
}

async fn set_trashed(state: &AppState, caller: &Caller, run: &RunRef, trashed: bool) -> JsonResult {
    runs::set_trashed(&state.store, &caller.tenant, run.id()?, trashed).await?;
    Ok(axum::Json(json!({})))
}

pub async fn delete(
    State(state): State<AppState>,
    Writer(caller): Writer,
    Json(run): Json<RunRef>,
) -> JsonResult {
    set_trashed(&state, &caller, &run, true).await
}

pub async fn restore(
    State(state): State<AppState>,
    Writer(caller): Writer,
    Json(run): Json<RunRef>,
) -> JsonResult {
    set_trashed(&state, &caller, &run, false).await
}

#[derive(Debug, Deserialize)]
pub struct Metric {
    key: String,
    value: JsonF64,
    #[serde(default, deserialize_with = "convert::int64")]
    timestamp: Option<i64>,
    #[serde(default, deserialize_with = "convert::int64")]
    step: Option<i64>,
}

/// The batch id of a request's metrics: a digest of the run and of the metrics as the
/// client sent them (before a missing timestamp is filled in), so the client's own retry
/// after a lost answer is the same batch and stores nothing twice. MLflow has no
/// idempotency key; it keeps identical metric rows once, which this matches for rows
/// sent together.
fn metric_batch_id(run: RunId, metrics: &[Metric]) -> String {
    use sha2::{Digest, Sha256};
    let mut rows: Vec<(&str, u64, Option<i64>, Option<i64>)> = metrics
        .iter()
        .map(|metric| {
            (
                metric.key.as_str(),
                metric.value.0.to_bits(),
                metric.timestamp,
                metric.step,
            )
        })
        .collect();
    rows.sort_unstable();
    let mut digest = Sha256::new();
    digest.update(run.to_string().as_bytes());
    for (key, value, timestamp, step) in rows {
        digest.update([0]);
        digest.update(key.as_bytes());
        digest.update([0]);
        digest.update(value.to_be_bytes());
        for field in [timestamp, step] {
            match field {
                Some(number) => {
                    digest.update([1]);
                    digest.update(number.to_be_bytes());
                }
                None => digest.update([0]),
            }
        }
    }
    // 7 + 48 characters: within the 64 a batch id may have.
    format!("mlflow-{}", &hex::encode(digest.finalize())[..48])
}

/// Metrics as one log batch: each key a series, steps and timestamps as given (MLflow's
/// default step is 0), under a batch id made of their content (`metric_batch_id`). A
/// series sent without any timestamp is left to the batch to time, which keeps a retry
/// identical to the first attempt; one with some missing gets `now` for those.
fn metric_batch(run: RunId, metrics: Vec<Metric>, now: f64) -> ApiResult<LogBatch> {
    let batch_id = metric_batch_id(run, &metrics);
    let mut columns: BTreeMap<String, (SeriesColumns, Vec<Option<i64>>)> = BTreeMap::new();
    for metric in metrics {
        series::check_name(&metric.key)?;
        let (column, timestamps) = columns.entry(metric.key).or_insert_with(|| {
            let column = SeriesColumns {
                steps: Vec::new(),
                values: Vec::new(),
                timestamps: None,
            };
            (column, Vec::new())
        });
        column.steps.push(metric.step.unwrap_or(0));
        column.values.push(metric.value);
        timestamps.push(metric.timestamp);
    }
    let columns = columns
        .into_iter()
        .map(|(name, (mut column, timestamps))| {
            if timestamps.iter().any(Option::is_some) {
                column.timestamps = Some(
                    timestamps
                        .into_iter()
                        .map(|ms| ms.map_or(now, |ms| ms as f64 / 1000.0))
                        .collect(),
                );
            }
            (name, column)
        })
        .collect();
    Ok(LogBatch {
        batch_id: Some(batch_id),
        series: columns,
        ..LogBatch::default()
    })
}

fn unix_seconds(state: &AppState) -> f64 {
    state.now().unix_timestamp_nanos() as f64 / 1e9
}

async fn log_metrics(
    state: &AppState,
    caller: &Caller,
    run: RunId,
    metrics: Vec<Metric>,
) -> ApiResult<()> {
    if metrics.is_empty() {
        return Ok(());
    }
    let batch = metric_batch(run, metrics, unix_seconds(state))?;
    batch::log(&state.store, state.intake(), &caller.tenant, run, batch).await?;
    Ok(())
}

#[derive(Debug, Deserialize)]
pub struct LogMetric {
    #[serde(flatten)]
    run: RunRef,
    #[serde(flatten)]
    metric: Metric,
}

pub async fn log_metric(
    State(state): State<AppState>,
    Writer(caller): Writer,
    Json(body): Json<LogMetric>,
) -> JsonResult {
    let run = body.run.id()?;
    active_run(&state, &caller, run).await?;
    log_metrics(&state, &caller, run, vec![body.metric]).await?;
    Ok(axum::Json(json!({})))
}

/// Adds MLflow parameters: new keys are set, a key logged again with the same value is
/// accepted, and one logged with a different value is refused, as MLflow does.
fn add_params(record: &mut RunRecord, new: &[KeyValue]) -> Result<(), Error> {
    let mut updates: BTreeMap<String, Option<ParamValue>> = BTreeMap::new();
    for param in new {
        convert::check_tag_key(&param.key)?;
        if param.value.len() > params::MAX_STRING_BYTES {
            return Err(Error::new(
                ErrorCode::InvalidParams,
                format!(
                    "parameter {:?} is longer than {} bytes",
                    param.key,
                    params::MAX_STRING_BYTES
                ),
            ));
        }
        let logged = record
            .params
            .get(&param.key)
            .map(ParamValue::to_text)
            .or_else(|| {
                updates
                    .get(&param.key)
                    .cloned()
                    .flatten()
                    .as_ref()
                    .map(ParamValue::to_text)
            });
        match logged {
            Some(logged) if logged == param.value => {}
            Some(logged) => {
                return Err(Error::new(
                    ErrorCode::ParamChanged,
                    format!(
                        "Changing param values is not allowed. Param with key='{}' was already \
                         logged with value='{logged}' for run ID='{}'. Attempted logging new \
                         value '{}'.",
                        param.key, record.id, param.value
                    ),
                ));
            }
            None => {
                updates.insert(param.key.clone(), Some(ParamValue::from_text(&param.value)));
            }
        }
    }
    Ok(params::apply(&mut record.params, updates)?)
}

fn set_tags(record: &mut RunRecord, tags: &[KeyValue]) -> Result<(), Error> {
    for tag in tags {
        convert::set_tag(record, &tag.key, &tag.value)?;
    }
    Ok(runs::check_tag_count(&record.tags)?)
}

/// Applies parameters and tags to the run in one write; nothing changes if any of them
/// is refused.
async fn change_run(
    state: &AppState,
    caller: &Caller,
    run: RunId,
    params: &[KeyValue],
    tags: &[KeyValue],
) -> ApiResult<()> {
    if params.is_empty() && tags.is_empty() {
        return Ok(());
    }
    runs::update(&state.store, &caller.tenant, run, |record, _| {
        add_params(record, params)?;
        set_tags(record, tags)
    })
    .await?;
    Ok(())
}

#[derive(Debug, Deserialize)]
pub struct LogParameter {
    #[serde(flatten)]
    run: RunRef,
    key: String,
    #[serde(default)]
    value: String,
}

pub async fn log_parameter(
    State(state): State<AppState>,
    Writer(caller): Writer,
    Json(body): Json<LogParameter>,
) -> JsonResult {
    let run = body.run.id()?;
    active_run(&state, &caller, run).await?;
    let param = KeyValue {
        key: body.key,
        value: body.value,
    };
    change_run(&state, &caller, run, &[param], &[]).await?;
    Ok(axum::Json(json!({})))
}

#[derive(Debug, Deserialize)]
pub struct LogBatchBody {
    #[serde(flatten)]
    run: RunRef,
    #[serde(default)]
    metrics: Vec<Metric>,
    #[serde(default)]
    params: Vec<KeyValue>,
    #[serde(default)]
    tags: Vec<KeyValue>,
}

/// MLflow's own limits on a batch, with its messages.
fn check_batch_limits(body: &LogBatchBody) -> ApiResult<()> {
    let too_many = |what: &str, count: usize, limit: usize| {
        ApiError::new(
            ErrorCode::InvalidRequest,
            format!(
                "A batch logging request can contain at most {limit} {what}. Got {count} {what}. \
                 Please split up {what} across multiple requests and try again."
            ),
        )
    };
    if body.metrics.len() > MAX_METRICS_PER_BATCH {
        return Err(too_many(
            "metrics",
            body.metrics.len(),
            MAX_METRICS_PER_BATCH,
        ));
    }
    if body.params.len() > MAX_PARAMS_TAGS_PER_BATCH {
        return Err(too_many(
            "params",
            body.params.len(),
            MAX_PARAMS_TAGS_PER_BATCH,
        ));
    }
    if body.tags.len() > MAX_PARAMS_TAGS_PER_BATCH {
        return Err(too_many("tags", body.tags.len(), MAX_PARAMS_TAGS_PER_BATCH));
    }
    let total = body.metrics.len() + body.params.len() + body.tags.len();
    if total > MAX_ENTITIES_PER_BATCH {
        return Err(too_many(
            "metrics, params, and tags",
            total,
            MAX_ENTITIES_PER_BATCH,
        ));
    }
    Ok(())
}

pub async fn log_batch(
    State(state): State<AppState>,
    Writer(caller): Writer,
    Json(body): Json<LogBatchBody>,
) -> JsonResult {
    check_batch_limits(&body)?;
    let run = body.run.id()?;
    active_run(&state, &caller, run).await?;
    // Metric names are checked before the parameters and tags are written, so a bad
    // name changes nothing.
    for metric in &body.metrics {
        series::check_name(&metric.key)?;
    }
    change_run(&state, &caller, run, &body.params, &body.tags).await?;
    log_metrics(&state, &caller, run, body.metrics).await?;
    Ok(axum::Json(json!({})))
}

#[derive(Debug, Deserialize)]
pub struct SetTag {
    #[serde(flatten)]
    run: RunRef,
    key: String,
    #[serde(default)]
    value: String,
}

pub async fn set_tag(
    State(state): State<AppState>,
    Writer(caller): Writer,
    Json(body): Json<SetTag>,
) -> JsonResult {
    let run = body.run.id()?;
    active_run(&state, &caller, run).await?;
    let tag = KeyValue {
        key: body.key,
        value: body.value,
    };
    change_run(&state, &caller, run, &[], &[tag]).await?;
    Ok(axum::Json(json!({})))
}

#[derive(Debug, Deserialize)]
pub struct DeleteTag {
    #[serde(flatten)]
    run: RunRef,
    key: String,
}

pub async fn delete_tag(
    State(state): State<AppState>,
    Writer(caller): Writer,
    Json(body): Json<DeleteTag>,
) -> JsonResult {
    let run = body.run.id()?;
    active_run(&state, &caller, run).await?;
    runs::update(&state.store, &caller.tenant, run, |record, _| {
        convert::delete_tag(record, &body.key)
    })
    .await?;
    Ok(axum::Json(json!({})))
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, Deserialize)]
pub struct Dataset {
    name: String,
    digest: String,
    #[serde(default)]
    source_type: String,
    #[serde(default)]
    source: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    schema: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    profile: Option<String>,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, Deserialize)]
pub struct DatasetInput {
    #[serde(default)]
    tags: Vec<KeyValue>,
    dataset: Dataset,
}

#[derive(Debug, Deserialize)]
pub struct LogInputs {
    #[serde(flatten)]
    run: RunRef,
    #[serde(default)]
    datasets: Vec<DatasetInput>,
}

/// Where a run keeps MLflow's description of a dataset input (schema, profile, the
/// context tag), which Sextant's lineage does not hold.
fn dataset_input_key(caller: &Caller, run: RunId, hash: &str) -> Key {
    Key::new(
        runs::data_partition(&caller.tenant, run),
        format!("mlflow-in#{hash}"),
    )
}

/// The dataset version's content hash in Sextant's lineage: MLflow's digest when it is
/// one (hex, long enough), else a SHA-256 of what identifies the dataset.
fn dataset_hash(dataset: &Dataset) -> String {
    let digest = dataset.digest.to_ascii_lowercase();
    if (16..=128).contains(&digest.len()) && digest.bytes().all(|b| b.is_ascii_hexdigit()) {
        return digest;
    }
    let identity = json!([
        dataset.name,
        dataset.digest,
        dataset.source_type,
        dataset.source
    ]);
    hex::encode(Sha256::digest(identity.to_string().as_bytes()))
}

/// Where the dataset lives, as a URI: the `uri` (or `url`, `path`) field of MLflow's
/// JSON source, else the source's type and text.
fn dataset_uri(dataset: &Dataset) -> String {
    let from_json = serde_json::from_str::<Value>(&dataset.source)
        .ok()
        .and_then(|source| {
            ["uri", "url", "path"]
                .iter()
                .find_map(|field| source.get(field)?.as_str().map(str::to_owned))
        });
    from_json.unwrap_or_else(|| {
        let source = format!("{}:{}", dataset.source_type, dataset.source);
        source.chars().take(lineage::MAX_URI_BYTES / 4).collect()
    })
}

pub async fn log_inputs(
    State(state): State<AppState>,
    Writer(caller): Writer,
    Json(body): Json<LogInputs>,
) -> JsonResult {
    let run = body.run.id()?;
    active_run(&state, &caller, run).await?;
    for input in body.datasets {
        let hash = dataset_hash(&input.dataset);
        let new = NewInput::Dataset {
            uri: dataset_uri(&input.dataset),
            hash: hash.clone(),
            name: Some(input.dataset.name.clone()),
        };
        lineage::add_input(&state.store, &caller.tenant, run, new).await?;
        state
            .store
            .kv
            .put(
                doc_item(dataset_input_key(&caller, run, &hash), &input)?,
                Condition::None,
            )
            .await?;
    }
    Ok(axum::Json(json!({})))
}

async fn dataset_inputs(state: &AppState, caller: &Caller, run: RunId) -> ApiResult<Vec<Value>> {
    let query = KvQuery::partition(runs::data_partition(&caller.tenant, run)).prefix("mlflow-in#");
    let inputs: Vec<DatasetInput> = query_docs(&*state.store.kv, query).await?;
    let inputs = inputs
        .iter()
        .map(|input| serde_json::to_value(input).map_err(Error::internal))
        .collect::<Result<_, _>>()?;
    Ok(inputs)
}

#[derive(Debug, Default, Deserialize)]
pub struct SearchRuns {
    #[serde(default)]
    experiment_ids: Vec<String>,
    filter: Option<String>,
    run_view_type: Option<ViewType>,
    #[serde(default, deserialize_with = "convert::int64")]
    max_results: Option<i64>,
    #[serde(default)]
    order_by: Vec<String>,
    page_token: Option<String>,
}

/// Whether a key compares as a number; an unknown attribute or a dataset is refused.
fn numeric_key(key: &FilterKey) -> ApiResult<bool> {
    match key.entity {
        Entity::Metric => Ok(true),
        Entity::Param | Entity::Tag => Ok(false),
        Entity::Attribute => match key.name.as_str() {
            "start_time" | "end_time" | "created" | "Created" => Ok(true),
            "run_id" | "run_name" | "status" | "user_id" | "artifact_uri" | "lifecycle_stage" => {
                Ok(false)
            }
            other => Err(filter::invalid(format!(
                "runs have the attributes run_id, run_name, status, start_time, end_time, \
                 user_id, artifact_uri and lifecycle_stage, not {other:?}"
            ))),
        },
        Entity::Dataset => Err(filter::invalid(
            "Sextant does not search runs by dataset; search by tags or params instead",
        )),
    }
}

fn run_field(state: &AppState, record: &RunRecord, key: &FilterKey) -> Option<Field> {
    let info = || convert::run_info(state, record);
    match key.entity {
        Entity::Metric => record
            .series
            .get(&key.name)
            .filter(|summary| summary.kind == SeriesKind::Numeric)
            .and_then(|summary| summary.last)
            .map(Field::Number),
        Entity::Param => record
            .params
            .get(&key.name)
            .map(|value| Field::Text(value.to_text())),
        Entity::Tag => convert::run_tags(record)
            .into_iter()
            .find(|tag| tag.key == key.name)
            .map(|tag| Field::Text(tag.value)),
        Entity::Attribute => {
            let name = match key.name.as_str() {
                "created" | "Created" => "start_time",
                name => name,
            };
            match info().get(name)? {
                Value::Number(n) => n.as_f64().map(Field::Number),
                Value::String(s) => Some(Field::Text(s.clone())),
                _ => None,
            }
        }
        Entity::Dataset => None,
    }
}

pub async fn search(
    State(state): State<AppState>,
    caller: Caller,
    Json(body): Json<SearchRuns>,
) -> JsonResult {
    let clauses = filter::parse(body.filter.as_deref().unwrap_or(""))?;
    for clause in &clauses {
        clause.check_kind(numeric_key(&clause.key)?)?;
    }
    let orders = body
        .order_by
        .iter()
        .map(|text| filter::parse_order(text))
        .collect::<ApiResult<Vec<_>>>()?;
    for order in &orders {
        numeric_key(&order.key)?;
    }
    let view = body.run_view_type.unwrap_or_default();
    let mut experiment_ids = body.experiment_ids.clone();
    experiment_ids.sort_unstable();
    experiment_ids.dedup();
    if experiment_ids.len() > MAX_SEARCH_EXPERIMENTS {
        return Err(ApiError::new(
            ErrorCode::TooManyExperiments,
            format!(
                "a search spans at most {MAX_SEARCH_EXPERIMENTS} experiments; this one names {}",
                experiment_ids.len()
            ),
        ));
    }
    let mut rows = Vec::new();
    for experiment in &experiment_ids {
        let project = experiments::find(&state, &caller, experiment).await?;
        let records = runs::all_in_project(&state.store, &caller.tenant, project.id).await?;
        // Matching a project's runs is CPU work proportional to runs × clauses; off
        // the async workers it cannot stall other requests on this instance.
        let (state, clauses, orders) = (state.clone(), clauses.clone(), orders.clone());
        let matched = tokio::task::spawn_blocking(move || {
            records
                .into_iter()
                .filter(|record| {
                    view.keeps(record.trashed_at.is_some())
                        && clauses.iter().all(|clause| {
                            clause.matches(run_field(&state, record, &clause.key).as_ref())
                        })
                })
                .map(|record| {
                    let sort_values: Vec<Option<Field>> = orders
                        .iter()
                        .map(|order| run_field(&state, &record, &order.key))
                        .collect();
                    (sort_values, record)
                })
                .collect::<Vec<_>>()
        })
        .await
        .map_err(Error::internal)?;
        rows.extend(matched);
    }
    // Newest first unless told otherwise, ties by id.
    let answer = paging::ordered_page(
        rows,
        &orders,
        |a: &RunRecord, b: &RunRecord| b.created_at.cmp(&a.created_at).then(a.id.cmp(&b.id)),
        PageRequest {
            max_results: body.max_results,
            token: body.page_token.as_deref(),
            most: paging::MAX_RUNS_PER_PAGE,
        },
        "runs",
        |record| convert::run_json(&state, record, Vec::new()),
    )?;
    Ok(axum::Json(answer))
}
