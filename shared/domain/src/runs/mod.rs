//! Runs: one execution of training code, with its parameters, tags, lifecycle and a
//! summary of every series it logged.
//!
//! Storage, all under the team's tenant id:
//! - `{tenant}` / `run#{run}`: the run's project (immutable), so a run is found by id;
//! - `{tenant}#project#{project}` / `run#{run}`: the run record, with a `version` that
//!   every change bumps. A project's runs are one partition, which the run table reads;
//! - `{tenant}#run#{run}`: the run's data: series chunks, text chunks, batch records.
//!
//! Status lifecycle: `queued` → `running` → `succeeded` | `failed` | `aborted`. `lost`
//! is a reading, not a state: a running run whose last heartbeat is older than the
//! heartbeat timeout reads as `lost` (or as `aborted`, if an abort was requested and
//! never confirmed), and logging to it again brings it back to `running`.

pub mod listing;
pub mod params;
pub mod summary;

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::credentials::Caller;
use crate::cursor::InvalidCursor;
use crate::error::{Coded, Error, ErrorCode};
use crate::ids::{ProjectId, RunId, UserId};
use crate::projects::Project;
use crate::tenancy::Tenant;
use sextant_storage::Store;
use sextant_storage::kv::{
    Condition, Item, Key, MAX_ITEM_BYTES, Query, StoreError, TxOp, Value, WriteOp,
};
use sextant_storage::records::{self, CONFLICT_ATTEMPTS, VERSION, doc_item, get_doc, read_doc};
use sha2::{Digest, Sha256};
use summary::SeriesSummary;

pub use params::ParamValue;

pub const MAX_NAME_BYTES: usize = 250;
pub const MAX_DESCRIPTION_BYTES: usize = 10_000;
pub const MAX_TAG_BYTES: usize = 250;
/// A `key=value` tag (MLflow's key-value tags) may carry a value as long as MLflow allows.
pub const MAX_TAG_VALUE_BYTES: usize = 8_000;
pub const MAX_TAGS: usize = 100;

/// Where a run is in its lifecycle, as of when it is read.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Queued,
    Running,
    Succeeded,
    Failed,
    Aborted,
    /// Only ever read, never stored: a running run that stopped sending heartbeats.
    Lost,
}

impl Status {
    pub fn is_ended(self) -> bool {
        matches!(self, Status::Succeeded | Status::Failed | Status::Aborted)
    }

    pub fn parse(text: &str) -> Result<Self> {
        serde_json::from_value(serde_json::Value::String(text.to_owned()))
            .map_err(|_| RunError::UnknownStatus)
    }
}

/// The source a run executed, as git describes it; each field at most 1,000 bytes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default, utoipa::ToSchema)]
pub struct GitInfo {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch: Option<String>,
    /// The remote's URL, without any user name or password it was configured with
    /// (CI clones carry tokens there): they are dropped on the way in, and from runs
    /// stored before that rule, on the way out.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "remote_without_credentials"
    )]
    pub remote: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dirty: Option<bool>,
}

/// A remote URL without the user name and password a URL may carry
/// (`https://x-access-token:ghp_...@github.com/o/r`); scp-like remotes
/// (`git@github.com:o/r.git`) name a login, never a secret, and stay as they are.
pub fn without_credentials(remote: &str) -> String {
    match url::Url::parse(remote) {
        Ok(mut url) if !url.username().is_empty() || url.password().is_some() => {
            // Only a URL with a host has a user to drop, and then both setters succeed.
            let _ = url.set_username("");
            let _ = url.set_password(None);
            url.into()
        }
        _ => remote.to_owned(),
    }
}

fn remote_without_credentials<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<String>, D::Error> {
    let remote = Option::<String>::deserialize(deserializer)?;
    Ok(remote.as_deref().map(without_credentials))
}

impl GitInfo {
    pub fn validate(&self) -> Result<()> {
        let fields = [&self.commit, &self.branch, &self.remote, &self.message];
        if fields
            .iter()
            .any(|f| f.as_ref().is_some_and(|s| s.len() > 1_000))
        {
            return Err(RunError::GitTooLong);
        }
        Ok(())
    }
}

fn is_zero(n: &i64) -> bool {
    *n == 0
}

fn is_zero_u64(n: &u64) -> bool {
    *n == 0
}

/// A run as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    pub id: RunId,
    pub project_id: ProjectId,
    /// 1, 2, 3, ... within the project, for names people can say aloud.
    pub number: u64,
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub owner: UserId,
    pub status: Status,
    #[serde(default)]
    pub tags: BTreeSet<String>,
    #[serde(default)]
    pub params: BTreeMap<String, ParamValue>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub git: Option<GitInfo>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option", default)]
    pub ended_at: Option<OffsetDateTime>,
    /// The last log batch or heartbeat.
    #[serde(with = "time::serde::rfc3339")]
    pub heartbeat_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option", default)]
    pub abort_requested_at: Option<OffsetDateTime>,
    #[serde(default)]
    pub series: BTreeMap<String, SeriesSummary>,
    /// Bytes of series data stored for this run, released when it is deleted.
    #[serde(default)]
    pub stored_bytes: u64,
    /// Points of the run's series (numbers and text lines), counted in the
    /// transactions that count them for the team (`count`); its images' are in its
    /// usage counters (`usage_of`). For a record from before it was kept (no
    /// `byte_moment`), its series summaries' counts stand in.
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    pub points: u64,
    /// Σ δ·t (t in Unix seconds) over the changes to `stored_bytes`, which gives the
    /// run's series byte-seconds. Absent from records written before it was kept:
    /// their bytes count from their next change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub byte_moment: Option<i128>,
    /// The arrival time (Unix nanoseconds) through which the run's hot batches are
    /// settled into its series (`series::hot`): summaries, chunk items and the team's
    /// usage include them; readers read the hot batches after it.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub settled_through: i64,
    /// Set while the run's data is being deleted; such a run is already gone for readers.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub deleting: bool,
    /// When the run was moved to the trash (MLflow's soft delete): hidden from the run
    /// table, kept with all its data until restored or deleted for good.
    #[serde(
        with = "time::serde::rfc3339::option",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub trashed_at: Option<OffsetDateTime>,
    /// The id a client outside Sextant gave the run (Neptune's `run_id`), by which it
    /// finds the run again (`create_or_resume`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_id: Option<String>,
}

impl RunRecord {
    /// Counts `points` logged and `bytes` of series data stored (or, negative,
    /// released) at `at`, for the transaction that writes the record and counts them
    /// for the team (`usage::logged`, `usage::storage_change`).
    /// Call it before merging the points' summaries into the record.
    pub fn count(&mut self, at: OffsetDateTime, points: u64, bytes: i64) {
        self.points = self.points_counted();
        let moment = self.series_moment(at);
        self.byte_moment = Some(moment + crate::usage::moment_of(at, bytes));
        self.points += points;
        self.stored_bytes = self.stored_bytes.saturating_add_signed(bytes);
    }

    /// The record's Σ δ·t; for a record from before it was kept, as if its bytes had
    /// been stored at `at`.
    fn series_moment(&self, at: OffsetDateTime) -> i128 {
        self.byte_moment.unwrap_or_else(|| {
            crate::usage::moment_of(at, i64::try_from(self.stored_bytes).unwrap_or(i64::MAX))
        })
    }

    /// The points the record counts: for a record from before it counted them, its
    /// series summaries' counts, which hold every point it stored.
    fn points_counted(&self) -> u64 {
        match self.byte_moment {
            Some(_) => self.points,
            None => self.series.values().map(|summary| summary.count).sum(),
        }
    }

    /// What the record counts of the run's usage, as of `now`.
    pub fn usage(&self, now: OffsetDateTime) -> crate::usage::RunUsage {
        crate::usage::RunUsage::counted(
            self.points_counted(),
            self.stored_bytes,
            self.series_moment(now),
        )
    }

    /// The status as of `now`, reading silence past the timeout as lost (or aborted).
    pub fn status_at(&self, now: OffsetDateTime, heartbeat_timeout: time::Duration) -> Status {
        if self.status == Status::Running && now - self.heartbeat_at > heartbeat_timeout {
            if self.abort_requested_at.is_some() {
                Status::Aborted
            } else {
                Status::Lost
            }
        } else {
            self.status
        }
    }

    /// The run as clients see it as of `now`, its status read with `heartbeat_timeout`.
    pub fn view(&self, now: OffsetDateTime, heartbeat_timeout: time::Duration) -> RunView<'_> {
        let status = self.status_at(now, heartbeat_timeout);
        let ended_at = match (status, self.ended_at) {
            (_, Some(ended)) => Some(ended),
            // Aborted by silence: it ended when it was last heard from.
            (Status::Aborted, None) => Some(self.heartbeat_at),
            _ => None,
        };
        RunView {
            id: self.id,
            project_id: self.project_id,
            number: self.number,
            name: &self.name,
            description: &self.description,
            owner: self.owner,
            status,
            tags: &self.tags,
            params: &self.params,
            git: self.git.as_ref(),
            created_at: self.created_at,
            ended_at,
            heartbeat_at: self.heartbeat_at,
            abort_requested: self.abort_requested_at.is_some(),
            trashed_at: self.trashed_at,
            series: self
                .series
                .iter()
                .map(|(name, summary)| (name.as_str(), summary.info()))
                .collect(),
            usage: None,
        }
    }
}

/// A run as clients see it: the record with its status read as of now, without the
/// bookkeeping fields.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RunView<'a> {
    id: RunId,
    project_id: ProjectId,
    /// 1, 2, 3, ... within the project.
    number: u64,
    name: &'a str,
    description: &'a str,
    owner: UserId,
    status: Status,
    /// Labels (`baseline`) and key-value tags (`dataset=imagenet`).
    tags: &'a BTreeSet<String>,
    /// Parameters by their flat `a/b/c` names.
    params: &'a BTreeMap<String, ParamValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    git: Option<&'a GitInfo>,
    #[serde(with = "time::serde::rfc3339")]
    created_at: OffsetDateTime,
    /// `null` until the run ends.
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(required = true)]
    ended_at: Option<OffsetDateTime>,
    /// The last log batch or heartbeat.
    #[serde(with = "time::serde::rfc3339")]
    heartbeat_at: OffsetDateTime,
    /// An abort was asked for and the run has not yet ended.
    abort_requested: bool,
    /// When the run was moved to the trash; absent for runs that are not in it.
    #[serde(
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    trashed_at: Option<OffsetDateTime>,
    /// A summary of every series the run logged, by name.
    series: BTreeMap<&'a str, summary::SeriesInfo>,
    /// What the run has logged and stored so far, and its cost at the plan's prices.
    #[schema(required = true)]
    usage: Option<crate::billing::RunCost>,
}

impl RunView<'_> {
    /// The view with what the run has cost so far.
    pub fn with_usage(mut self, usage: crate::billing::RunCost) -> Self {
        self.usage = Some(usage);
        self
    }
}

/// Numbers a project's runs.
pub fn counter_key(tenant: &Tenant, project: ProjectId) -> Key {
    tenant.key(format!("run-counter#{project}"))
}

fn pointer_key(tenant: &Tenant, run: RunId) -> Key {
    tenant.key(format!("run#{run}"))
}

pub fn project_partition(tenant: &Tenant, project: ProjectId) -> String {
    tenant.partition(&format!("project#{project}"))
}

fn record_key(tenant: &Tenant, project: ProjectId, run: RunId) -> Key {
    Key::new(project_partition(tenant, project), format!("run#{run}"))
}

/// The partition holding a run's series data.
pub fn data_partition(tenant: &Tenant, run: RunId) -> String {
    tenant.partition(&format!("run#{run}"))
}

/// What a write counts the run's usage under, beside its team's.
pub fn usage_owner<'a>(tenant: &'a Tenant, record: &RunRecord) -> crate::usage::Owner<'a> {
    crate::usage::Owner {
        tenant,
        run: record.id,
        counters: usage_key(tenant, record.project_id, record.id),
    }
}

/// A run's usage counters (what its record does not count: images, artifacts, and
/// once it is deleted, what its record counted): beside its record in the project's
/// partition, so the run table reads them with one more query, and kept when the run
/// is deleted, so a team's runs always add up to the team.
fn usage_key(tenant: &Tenant, project: ProjectId, run: RunId) -> Key {
    Key::new(
        project_partition(tenant, project),
        format!("{USAGE_PREFIX}{run}"),
    )
}

const USAGE_PREFIX: &str = "usage#";

/// What a run has logged and stores: its record's counts and its counters'.
pub async fn usage_of(
    store: &Store,
    tenant: &Tenant,
    record: &RunRecord,
) -> Result<crate::usage::RunUsage> {
    let counters = store
        .kv
        .get(&usage_key(tenant, record.project_id, record.id))
        .await?
        .map(|item| crate::usage::RunUsage::from_item(&item))
        .unwrap_or_default();
    Ok(record.usage(store.now()).and(counters))
}

/// Deletes the usage counters of a project's runs, for deleting the project once its
/// runs are gone.
pub async fn forget_usage_in_project(
    store: &Store,
    tenant: &Tenant,
    project: ProjectId,
) -> Result<()> {
    let keys: Vec<Key> = usage_in_project(store, tenant, project)
        .await?
        .into_keys()
        .map(|run| usage_key(tenant, project, run))
        .collect();
    for chunk in keys.chunks(500) {
        let deletes = chunk.iter().cloned().map(WriteOp::Delete).collect();
        store.kv.batch_write(deletes).await?;
    }
    Ok(())
}

/// The usage counters of every run in a project that has any, deleted runs' too
/// (without what the live runs' records count: `RunRecord::usage`).
pub async fn usage_in_project(
    store: &Store,
    tenant: &Tenant,
    project: ProjectId,
) -> Result<std::collections::HashMap<RunId, crate::usage::RunUsage>> {
    let mut query = Query::partition(project_partition(tenant, project)).prefix(USAGE_PREFIX);
    let mut runs = std::collections::HashMap::new();
    loop {
        let page = store.kv.query(query.clone()).await?;
        for item in &page.items {
            if let Some(run) = item
                .key
                .sk
                .strip_prefix(USAGE_PREFIX)
                .and_then(|id| id.parse::<RunId>().ok())
            {
                runs.insert(run, crate::usage::RunUsage::from_item(item));
            }
        }
        match page.next {
            Some(next) => query.after = Some(next),
            None => return Ok(runs),
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct RunPointer {
    project_id: ProjectId,
}

/// Why an operation on a run is refused.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// Missing, another team's, or being deleted: all answer alike.
    #[error("run not found")]
    NotFound,
    #[error("status is one of queued, running, succeeded, failed, aborted, lost")]
    UnknownStatus,
    #[error("a new run is queued or running")]
    NewRunNotStarted,
    #[error("lost is read from missing heartbeats; it cannot be set")]
    LostIsRead,
    #[error("a run that has started cannot be queued again")]
    AlreadyStarted,
    #[error("the run has ended ({0}); it takes no more changes or points")]
    Ended(Status),
    #[error("git fields are at most 1,000 bytes each")]
    GitTooLong,
    #[error(
        "a run name is 1 to {} bytes without control characters",
        MAX_NAME_BYTES
    )]
    InvalidName,
    #[error("a description is at most {} bytes", MAX_DESCRIPTION_BYTES)]
    DescriptionTooLong,
    #[error(
        "a tag is a label of 1 to {} bytes, optionally followed by `=` and a value of at \
         most {} bytes, without control characters",
        MAX_TAG_BYTES,
        MAX_TAG_VALUE_BYTES
    )]
    InvalidTag,
    #[error("a run has at most {} tags", MAX_TAGS)]
    TooManyTags,
    #[error("created_at is a time in the past")]
    CreatedInFuture,
    #[error("ended_at goes with a status that ends the run")]
    EndedAtWithoutEnd,
    #[error(
        "the run's parameters, tags, description and series (names and summaries) would \
         take more than a run can hold; use fewer or shorter ones"
    )]
    TooLarge,
    #[error("the run changed many times while this request ran; retry it")]
    ConcurrentUpdate,
    /// A parameter breaks a rule of `params`; the message says which.
    #[error("{0}")]
    InvalidParams(String),
    #[error("sort is created, name, param:NAME or metric:NAME[:last|min|max], then :asc or :desc")]
    InvalidSort,
    #[error("the cursor belongs to another sort order")]
    CursorOfAnotherSort,
    /// A param condition of a run filter is malformed; the message says how.
    #[error("{0}")]
    InvalidFilter(String),
    #[error(transparent)]
    Cursor(#[from] InvalidCursor),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Coded for RunError {
    fn code(&self) -> ErrorCode {
        match self {
            Self::NotFound => ErrorCode::NotFound,
            Self::UnknownStatus | Self::NewRunNotStarted | Self::LostIsRead => {
                ErrorCode::InvalidStatus
            }
            Self::AlreadyStarted => ErrorCode::InvalidTransition,
            Self::Ended(_) => ErrorCode::RunEnded,
            Self::GitTooLong => ErrorCode::InvalidGit,
            Self::InvalidName => ErrorCode::InvalidName,
            Self::DescriptionTooLong => ErrorCode::InvalidDescription,
            Self::InvalidTag | Self::TooManyTags => ErrorCode::InvalidTag,
            Self::CreatedInFuture => ErrorCode::InvalidCreatedAt,
            Self::EndedAtWithoutEnd => ErrorCode::InvalidEndedAt,
            Self::TooLarge => ErrorCode::RunTooLarge,
            Self::ConcurrentUpdate => ErrorCode::ConcurrentUpdate,
            Self::InvalidParams(_) => ErrorCode::InvalidParams,
            Self::InvalidSort => ErrorCode::InvalidSort,
            Self::CursorOfAnotherSort => ErrorCode::InvalidCursor,
            Self::InvalidFilter(_) => ErrorCode::InvalidFilter,
            Self::Cursor(err) => err.code(),
            Self::Store(err) => err.code(),
        }
    }

    fn into_error(self) -> Error {
        match self {
            Self::Store(err) => err.into(),
            other => Error::new(other.code(), other.to_string()),
        }
    }
}

type Result<T, E = RunError> = std::result::Result<T, E>;

pub fn check_name(name: &str) -> Result<()> {
    if name.trim().is_empty() || name.len() > MAX_NAME_BYTES || name.chars().any(char::is_control) {
        return Err(RunError::InvalidName);
    }
    Ok(())
}

pub fn check_description(description: &str) -> Result<()> {
    if description.len() > MAX_DESCRIPTION_BYTES {
        return Err(RunError::DescriptionTooLong);
    }
    Ok(())
}

/// A tag is a label (`baseline`) or a key and value (`dataset=imagenet`), which is how
/// MLflow's key-value tags are kept.
pub fn check_tags<'a>(tags: impl IntoIterator<Item = &'a String>) -> Result<()> {
    for tag in tags {
        let (label, value) = tag.split_once('=').unwrap_or((tag, ""));
        if label.is_empty()
            || label.len() > MAX_TAG_BYTES
            || value.len() > MAX_TAG_VALUE_BYTES
            || tag.chars().any(char::is_control)
        {
            return Err(RunError::InvalidTag);
        }
    }
    Ok(())
}

pub fn check_tag_count(tags: &BTreeSet<String>) -> Result<()> {
    if tags.len() > MAX_TAGS {
        return Err(RunError::TooManyTags);
    }
    Ok(())
}

#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewRun {
    /// 1 to 250 bytes; `{project}-{number}` when absent.
    pub name: Option<String>,
    pub description: Option<String>,
    /// Labels (`baseline`) and key-value tags (`dataset=imagenet`).
    #[serde(default)]
    pub tags: Vec<String>,
    /// Parameters: booleans, integers, floats, strings (arrays are kept as their JSON
    /// text); nested objects flatten into `a/b/c` names.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub params: serde_json::Map<String, serde_json::Value>,
    pub git: Option<GitInfo>,
    /// `queued` for runs that wait for a worker; `running` otherwise.
    pub status: Option<Status>,
    /// When the run started, if before now: runs imported from elsewhere keep theirs.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub created_at: Option<OffsetDateTime>,
}

pub async fn create(
    store: &Store,
    caller: &Caller,
    project: &Project,
    new: NewRun,
) -> Result<RunRecord> {
    let record = numbered(store, caller, project, new).await?;
    store
        .kv
        .transact(creation(&caller.tenant, &record)?.into())
        .await?;
    Ok(record)
}

/// The writes that store a new run: its pointer and its record, neither there yet.
fn creation(tenant: &Tenant, record: &RunRecord) -> Result<[TxOp; 2]> {
    Ok([
        TxOp::Put(
            doc_item(
                pointer_key(tenant, record.id),
                &RunPointer {
                    project_id: record.project_id,
                },
            )?,
            Condition::NotExists,
        ),
        TxOp::Put(record_item(tenant, record, 1)?, Condition::NotExists),
    ])
}

/// A new run's record, checked and numbered in its project, not yet stored.
async fn numbered(
    store: &Store,
    caller: &Caller,
    project: &Project,
    new: NewRun,
) -> Result<RunRecord> {
    if let Some(name) = &new.name {
        check_name(name)?;
    }
    let description = new.description.unwrap_or_default();
    check_description(&description)?;
    check_tags(&new.tags)?;
    let tags: BTreeSet<String> = new.tags.into_iter().collect();
    check_tag_count(&tags)?;
    let mut params = BTreeMap::new();
    params::apply(&mut params, params::flatten(&new.params)?)?;
    if let Some(git) = &new.git {
        git.validate()?;
    }
    let status = match new.status.unwrap_or(Status::Running) {
        status @ (Status::Queued | Status::Running) => status,
        _ => {
            return Err(RunError::NewRunNotStarted);
        }
    };

    let now = store.now();
    let created_at = match new.created_at {
        Some(at) if at > now => {
            return Err(RunError::CreatedInFuture);
        }
        Some(at) => at,
        None => now,
    };
    let tenant = &caller.tenant;
    let number = store
        .kv
        .add(
            &tenant.key(format!("run-counter#{}", project.id)),
            "runs",
            1,
        )
        .await?;
    let id = RunId::generate();
    let record = RunRecord {
        id,
        project_id: project.id,
        number: number as u64,
        name: new
            .name
            .unwrap_or_else(|| format!("{}-{number}", project.name.as_str())),
        description,
        owner: caller.user,
        status,
        tags,
        params,
        git: new.git,
        created_at,
        ended_at: None,
        heartbeat_at: now,
        abort_requested_at: None,
        series: BTreeMap::new(),
        stored_bytes: 0,
        points: 0,
        byte_moment: None,
        settled_through: 0,
        deleting: false,
        trashed_at: None,
        external_id: None,
    };
    Ok(record)
}

/// Where the run a client created under `external_id` is found: in its project's
/// partition, so the project's deletion takes it along, under a digest of the id, so
/// any id fits a sort key.
fn external_key(tenant: &Tenant, project: ProjectId, external_id: &str) -> Key {
    let digest = Sha256::digest(external_id.as_bytes());
    Key::new(
        project_partition(tenant, project),
        format!("ext#{}", hex::encode(&digest[..16])),
    )
}

const EXTERNAL_RUN: &str = "run";

/// The run a client created under `external_id` in `project`; `None` when there is
/// none (or it was deleted).
pub async fn find_external(
    store: &Store,
    tenant: &Tenant,
    project: ProjectId,
    external_id: &str,
) -> Result<Option<RunRecord>> {
    Ok(external_run(store, tenant, project, external_id)
        .await?
        .and_then(|(_, found)| found))
}

/// The run id stored under an external id, and its record unless it is gone.
async fn external_run(
    store: &Store,
    tenant: &Tenant,
    project: ProjectId,
    external_id: &str,
) -> Result<Option<(String, Option<RunRecord>)>> {
    let Some(item) = store
        .kv
        .get(&external_key(tenant, project, external_id))
        .await?
    else {
        return Ok(None);
    };
    let stored = item.s(EXTERNAL_RUN).unwrap_or_default().to_owned();
    let record = match stored.parse::<RunId>() {
        // In the project's partition, where the id was made: one read, where `load`
        // finds the project first.
        Ok(run) => match store.kv.get(&record_key(tenant, project, run)).await? {
            Some(item) => Some(Versioned::read(&item)?.record).filter(|record| !record.deleting),
            None => None,
        },
        Err(_) => None,
    };
    Ok(Some((stored, record)))
}

/// The run a client created under `external_id` in `project`, or, when there is none,
/// a new one made from `new` under that id: creating it again finds the first (the
/// way Neptune's client resumes a run). Answers the run and whether this call made it.
/// Two concurrent first creates make one run; a run deleted since is made anew.
pub async fn create_or_resume(
    store: &Store,
    caller: &Caller,
    project: &Project,
    external_id: &str,
    new: NewRun,
) -> Result<(RunRecord, bool)> {
    let tenant = &caller.tenant;
    let key = external_key(tenant, project.id, external_id);
    let mut new = Some(new);
    for _ in 0..CONFLICT_ATTEMPTS {
        let condition = match external_run(store, tenant, project.id, external_id).await? {
            Some((_, Some(record))) => return Ok((record, false)),
            Some((stored, None)) => Condition::Equals(EXTERNAL_RUN.to_owned(), Value::S(stored)),
            None => Condition::NotExists,
        };
        let Some(fresh) = new.take() else {
            break;
        };
        let mut record = numbered(store, caller, project, fresh.clone()).await?;
        record.external_id = Some(external_id.to_owned());
        let alias = Item::new(key.clone()).with(EXTERNAL_RUN, Value::S(record.id.to_string()));
        let mut ops = Vec::from(creation(tenant, &record)?);
        ops.push(TxOp::Put(alias, condition));
        match store.kv.transact(ops).await {
            Ok(()) => return Ok((record, true)),
            // Another create of the same id won: find its run.
            Err(StoreError::TransactionFailed(_)) => new = Some(fresh),
            Err(err) => return Err(err.into()),
        }
    }
    Err(RunError::ConcurrentUpdate)
}

/// Room kept free in a run's item, so that marking it for deletion always fits.
const RECORD_HEADROOM_BYTES: usize = 1_000;

fn record_item(tenant: &Tenant, record: &RunRecord, version: i64) -> Result<Item> {
    let item = doc_item(record_key(tenant, record.project_id, record.id), record)?
        .with(VERSION, Value::N(version));
    // Each limit (series, parameters, tags, description) holds on its own, but all of
    // them at once can outgrow the one item a run's record lives in.
    if !record.deleting && item.billed_size() + RECORD_HEADROOM_BYTES > MAX_ITEM_BYTES {
        return Err(RunError::TooLarge);
    }
    Ok(item)
}

/// A run record with the version it was read at.
pub type Versioned = records::Versioned<RunRecord>;

/// The write that replaces a run's record, if nobody else changed it since it was read.
pub fn replace(tenant: &Tenant, versioned: &Versioned) -> Result<TxOp> {
    Ok(TxOp::Put(
        record_item(tenant, &versioned.record, versioned.version() + 1)?,
        versioned.unchanged(),
    ))
}

/// Parses a run id from a path; a malformed one is as absent as a missing one.
pub fn parse_id(text: &str) -> Result<RunId> {
    text.parse().map_err(|_| RunError::NotFound)
}

/// The run with its version; another team's run, a missing one and one being deleted
/// all answer 404.
pub async fn load(store: &Store, tenant: &Tenant, run: RunId) -> Result<Versioned> {
    let versioned = load_any(store, tenant, run).await?;
    if versioned.record.deleting {
        return Err(RunError::NotFound);
    }
    Ok(versioned)
}

async fn load_any(store: &Store, tenant: &Tenant, run: RunId) -> Result<Versioned> {
    let not_found = || RunError::NotFound;
    let pointer: RunPointer = get_doc(&*store.kv, &pointer_key(tenant, run))
        .await?
        .ok_or_else(not_found)?;
    let item = store
        .kv
        .get(&record_key(tenant, pointer.project_id, run))
        .await?
        .ok_or_else(not_found)?;
    Ok(Versioned::read(&item)?)
}

/// Applies `change` to the run and writes it back, retrying from a fresh read when a
/// concurrent writer got there first. `change` may refuse by returning an error.
pub async fn update<T, E: From<RunError>>(
    store: &Store,
    tenant: &Tenant,
    run: RunId,
    mut change: impl FnMut(&mut RunRecord, OffsetDateTime) -> Result<T, E>,
) -> Result<(RunRecord, T), E> {
    for _ in 0..CONFLICT_ATTEMPTS {
        let mut versioned = load(store, tenant, run).await?;
        let now = store.now();
        let outcome = change(&mut versioned.record, now)?;
        match store.kv.transact(vec![replace(tenant, &versioned)?]).await {
            Ok(()) => return Ok((versioned.record, outcome)),
            Err(err) if err.is_conflict() => continue,
            Err(err) => return Err(RunError::from(err).into()),
        }
    }
    Err(RunError::ConcurrentUpdate.into())
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let text = serde_json::to_value(self).map_err(|_| std::fmt::Error)?;
        f.write_str(text.as_str().unwrap_or_default())
    }
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TagChanges {
    #[serde(default)]
    pub add: Vec<String>,
    #[serde(default)]
    pub remove: Vec<String>,
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RunChanges {
    pub name: Option<String>,
    pub description: Option<String>,
    /// `running`, or a status that ends the run (`succeeded`, `failed`, `aborted`);
    /// ending a run again with the status it ended with is a no-op.
    pub status: Option<Status>,
    pub tags: Option<TagChanges>,
    /// Parameters to set, as in a new run's; a `null` value removes that name.
    #[schema(value_type = Option<Object>)]
    pub params: Option<serde_json::Map<String, serde_json::Value>>,
    pub git: Option<GitInfo>,
    /// With an ending `status`: when the run ended, if not now (an imported run's end).
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub ended_at: Option<OffsetDateTime>,
}

pub async fn patch(
    store: &Store,
    heartbeat_timeout: time::Duration,
    tenant: &Tenant,
    run: RunId,
    changes: RunChanges,
) -> Result<RunRecord> {
    if let Some(name) = &changes.name {
        check_name(name)?;
    }
    if let Some(description) = &changes.description {
        check_description(description)?;
    }
    if let Some(tags) = &changes.tags {
        check_tags(tags.add.iter().chain(&tags.remove))?;
    }
    if let Some(git) = &changes.git {
        git.validate()?;
    }
    let param_updates = changes.params.as_ref().map(params::flatten).transpose()?;
    let ending = changes.status.is_some_and(Status::is_ended);
    if changes.ended_at.is_some() && !ending {
        return Err(RunError::EndedAtWithoutEnd);
    }
    let (record, ()) = update(store, tenant, run, |record, now| {
        if let Some(status) = changes.status {
            let was_ended = record.status_at(now, heartbeat_timeout).is_ended();
            transition(record, status, now, heartbeat_timeout)?;
            if let Some(ended_at) = changes.ended_at
                && !was_ended
            {
                record.ended_at = Some(ended_at.clamp(record.created_at, now));
            }
        }
        if let Some(name) = &changes.name {
            record.name.clone_from(name);
        }
        if let Some(description) = &changes.description {
            record.description.clone_from(description);
        }
        if let Some(tags) = &changes.tags {
            record.tags.extend(tags.add.iter().cloned());
            for tag in &tags.remove {
                record.tags.remove(tag);
            }
            check_tag_count(&record.tags)?;
        }
        if let Some(updates) = &param_updates {
            params::apply(&mut record.params, updates.clone())?;
        }
        if let Some(git) = &changes.git {
            record.git = Some(git.clone());
        }
        Ok::<_, RunError>(())
    })
    .await?;
    Ok(record)
}

/// Moves a run to `target`. Ending a run twice with the same status is a no-op, so
/// clients may retry; anything else on an ended run is 409.
fn transition(
    record: &mut RunRecord,
    target: Status,
    now: OffsetDateTime,
    timeout: time::Duration,
) -> Result<()> {
    let current = record.status_at(now, timeout);
    if current.is_ended() {
        return if current == target {
            Ok(())
        } else {
            Err(RunError::Ended(current))
        };
    }
    match target {
        Status::Lost => Err(RunError::LostIsRead),
        Status::Queued if record.status != Status::Queued => Err(RunError::AlreadyStarted),
        Status::Queued => Ok(()),
        Status::Running => {
            record.status = Status::Running;
            record.heartbeat_at = now;
            Ok(())
        }
        ended => {
            record.status = ended;
            record.ended_at = Some(now);
            Ok(())
        }
    }
}

/// Asks the run to stop: its next log or heartbeat response says so and the client
/// ends it as `aborted`. A queued run has no client yet and is aborted at once.
pub async fn abort(
    store: &Store,
    heartbeat_timeout: time::Duration,
    tenant: &Tenant,
    run: RunId,
) -> Result<RunRecord> {
    let (record, ()) = update(store, tenant, run, |record, now| {
        match record.status_at(now, heartbeat_timeout) {
            status if status.is_ended() => return Err(RunError::Ended(status)),
            Status::Queued => {
                record.status = Status::Aborted;
                record.ended_at = Some(now);
            }
            _ => {
                record.abort_requested_at.get_or_insert(now);
            }
        }
        Ok::<_, RunError>(())
    })
    .await?;
    Ok(record)
}

/// Moves the run to the trash or takes it out again; doing either twice is harmless.
pub async fn set_trashed(
    store: &Store,
    tenant: &Tenant,
    run: RunId,
    trashed: bool,
) -> Result<RunRecord> {
    let (record, ()) = update(store, tenant, run, |record, now| {
        match (trashed, record.trashed_at) {
            (true, None) => record.trashed_at = Some(now),
            (false, Some(_)) => record.trashed_at = None,
            _ => {}
        }
        Ok::<_, RunError>(())
    })
    .await?;
    Ok(record)
}

/// Records a heartbeat: the run is alive (and running, if it was queued).
pub async fn heartbeat(
    store: &Store,
    heartbeat_timeout: time::Duration,
    tenant: &Tenant,
    run: RunId,
) -> Result<RunRecord> {
    let (record, ()) = update(store, tenant, run, |record, now| {
        accept_activity(record, now, heartbeat_timeout)
    })
    .await?;
    Ok(record)
}

/// What any sign of life from the client does: refused once the run ended, otherwise
/// it refreshes the heartbeat and starts a queued run.
pub fn accept_activity(
    record: &mut RunRecord,
    now: OffsetDateTime,
    timeout: time::Duration,
) -> Result<()> {
    let status = record.status_at(now, timeout);
    if status.is_ended() {
        return Err(RunError::Ended(status));
    }
    record.status = Status::Running;
    record.heartbeat_at = now;
    Ok(())
}

/// Hides a run from every read, the first step of deleting it; answers the record as
/// marked. Safe to repeat: a run already marked answers as it is, so a delete that
/// stopped halfway is finished by the next (`crate::deletion`).
pub async fn mark_deleting(store: &Store, tenant: &Tenant, run: RunId) -> Result<Versioned> {
    let mut versioned = load_any(store, tenant, run).await?;
    let mut attempts = 0;
    while !versioned.record.deleting {
        versioned.record.deleting = true;
        match store.kv.transact(vec![replace(tenant, &versioned)?]).await {
            Ok(()) => versioned.saved(),
            // Changed meanwhile (by a log batch, or by another delete that marked it
            // first): look again.
            Err(err) if err.is_conflict() && attempts < CONFLICT_ATTEMPTS => {
                attempts += 1;
                versioned = load_any(store, tenant, run).await?;
            }
            Err(err) if err.is_conflict() => return Err(RunError::ConcurrentUpdate),
            Err(err) => return Err(err.into()),
        }
    }
    Ok(versioned)
}

/// The last step of deleting a marked run, once what it owns is gone: its points and
/// its record, releasing the storage they were billed for.
pub async fn purge(store: &Store, tenant: &Tenant, marked: &Versioned) -> Result<()> {
    let record = &marked.record;
    records::delete_partition(&*store.kv, &data_partition(tenant, record.id)).await?;
    let mut ops = vec![
        TxOp::Delete(
            record_key(tenant, record.project_id, record.id),
            marked.unchanged(),
        ),
        TxOp::Delete(pointer_key(tenant, record.id), Condition::None),
    ];
    // The series' bytes go, and what the record counted moves to the counters that
    // outlive it.
    let now = store.now();
    let released = -i64::try_from(record.stored_bytes).unwrap_or(i64::MAX);
    ops.extend(crate::usage::storage_change(tenant, now, released));
    ops.push(crate::usage::run_counted(
        usage_owner(tenant, record),
        record.points_counted(),
        0,
        record.series_moment(now) + crate::usage::moment_of(now, released),
    ));
    match store.kv.transact(ops).await {
        Ok(()) => {}
        // A concurrent delete finished first.
        Err(StoreError::TransactionFailed(_)) => return Ok(()),
        Err(err) => return Err(err.into()),
    }
    // The external id goes too, unless it names a run made since under the same id.
    if let Some(external_id) = &record.external_id {
        let key = external_key(tenant, record.project_id, external_id);
        let ours = Condition::Equals(EXTERNAL_RUN.to_owned(), Value::S(record.id.to_string()));
        match store.kv.transact(vec![TxOp::Delete(key, ours)]).await {
            Ok(()) | Err(StoreError::TransactionFailed(_)) => {}
            Err(err) => return Err(err.into()),
        }
    }
    Ok(())
}

/// Every run of a project, oldest first, without the ones being deleted.
pub async fn all_in_project(
    store: &Store,
    tenant: &Tenant,
    project: ProjectId,
) -> Result<Vec<RunRecord>> {
    let mut runs = every_record_in_project(store, tenant, project).await?;
    runs.retain(|record| !record.deleting);
    Ok(runs)
}

/// Every run record of a project, those being deleted too.
pub async fn every_record_in_project(
    store: &Store,
    tenant: &Tenant,
    project: ProjectId,
) -> Result<Vec<RunRecord>> {
    let mut query = Query::partition(project_partition(tenant, project)).prefix("run#");
    let mut runs = Vec::new();
    loop {
        let page = store.kv.query(query.clone()).await?;
        for item in &page.items {
            runs.push(read_doc(item)?);
        }
        match page.next {
            Some(next) => query.after = Some(next),
            None => return Ok(runs),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TIMEOUT: time::Duration = time::Duration::minutes(2);
    const START: OffsetDateTime = time::macros::datetime!(2026-12-04 12:00 UTC);

    fn running() -> RunRecord {
        RunRecord {
            id: RunId::generate(),
            project_id: ProjectId::generate(),
            number: 1,
            name: "run-1".into(),
            description: String::new(),
            owner: UserId::generate(),
            status: Status::Running,
            tags: BTreeSet::new(),
            params: BTreeMap::new(),
            git: None,
            created_at: START,
            ended_at: None,
            heartbeat_at: START,
            abort_requested_at: None,
            series: BTreeMap::new(),
            stored_bytes: 0,
            points: 0,
            byte_moment: None,
            settled_through: 0,
            deleting: false,
            trashed_at: None,
            external_id: None,
        }
    }

    #[test]
    fn a_record_stored_before_hot_batches_existed_reads_unsettled_and_stores_unchanged() {
        let record = running();
        let stored = serde_json::to_value(&record).unwrap();
        assert!(stored.get("settled_through").is_none());
        let read: RunRecord = serde_json::from_value(stored.clone()).unwrap();
        assert_eq!(read.settled_through, 0);
        assert_eq!(serde_json::to_value(&read).unwrap(), stored);
    }

    #[test]
    fn a_record_from_before_run_usage_reads_unchanged_and_counts_its_summaries_points_and_its_bytes_from_its_next_change()
     {
        let mut record = running();
        record.stored_bytes = 1_000;
        let stored = serde_json::json!({
            "kind": "numeric", "count": 40, "first_step": 0, "last_step": 39,
            "last_timestamp": 1.0, "min": 0.5, "max": 2.0, "last": 0.5, "span": 39,
        });
        record
            .series
            .insert("loss".into(), serde_json::from_value(stored).unwrap());
        let stored = serde_json::to_value(&record).unwrap();
        assert!(stored.get("points").is_none() && stored.get("byte_moment").is_none());
        let mut read: RunRecord = serde_json::from_value(stored.clone()).unwrap();
        assert_eq!(serde_json::to_value(&read).unwrap(), stored);
        // Its points are its summaries'; its bytes have no past it can bill.
        let usage = read.usage(START + TIMEOUT);
        assert_eq!(usage.points, 40);
        assert_eq!(usage.byte_seconds(START + TIMEOUT), 0);

        read.count(START, 5, 500);
        let later = START + time::Duration::seconds(10);
        let usage = read.usage(later);
        assert_eq!((usage.points, usage.bytes), (45, 1_500));
        assert_eq!(usage.byte_seconds(later), 1_500 * 10);
    }

    #[test]
    fn a_silent_run_reads_as_lost_and_an_unconfirmed_abort_as_aborted_once_the_heartbeat_times_out()
    {
        let mut run = running();
        assert_eq!(run.status_at(START + TIMEOUT, TIMEOUT), Status::Running);
        assert_eq!(
            run.status_at(START + TIMEOUT + time::Duration::SECOND, TIMEOUT),
            Status::Lost
        );
        run.abort_requested_at = Some(START);
        let silent = START + TIMEOUT * 2;
        assert_eq!(run.status_at(silent, TIMEOUT), Status::Aborted);
        // Aborted by silence: it ended when it was last heard from.
        assert_eq!(run.view(silent, TIMEOUT).ended_at, Some(START));
    }

    #[test]
    fn activity_refreshes_a_live_run_starts_a_queued_one_and_is_refused_once_it_ended() {
        let mut run = running();
        run.status = Status::Queued;
        let later = START + time::Duration::MINUTE;
        accept_activity(&mut run, later, TIMEOUT).unwrap();
        assert_eq!((run.status, run.heartbeat_at), (Status::Running, later));
        // A lost run comes back when it logs again.
        let after_silence = later + TIMEOUT * 3;
        assert_eq!(run.status_at(after_silence, TIMEOUT), Status::Lost);
        accept_activity(&mut run, after_silence, TIMEOUT).unwrap();
        assert_eq!(run.status_at(after_silence, TIMEOUT), Status::Running);
        run.status = Status::Succeeded;
        let refused = accept_activity(&mut run, after_silence, TIMEOUT).unwrap_err();
        assert_eq!(refused.code(), ErrorCode::RunEnded);
    }

    #[test]
    fn a_remote_url_loses_its_user_and_password_and_nothing_else() {
        for (remote, kept) in [
            (
                "https://x-access-token:ghp_abc123@github.com/o/r.git",
                "https://github.com/o/r.git",
            ),
            (
                "https://ghp_abc123@github.com/o/r",
                "https://github.com/o/r",
            ),
            (
                "ssh://git:secret@example.com:2222/r.git",
                "ssh://example.com:2222/r.git",
            ),
            ("https://github.com/o/r.git", "https://github.com/o/r.git"),
            ("git@github.com:o/r.git", "git@github.com:o/r.git"),
            ("/srv/git/r.git", "/srv/git/r.git"),
        ] {
            assert_eq!(without_credentials(remote), kept, "{remote}");
        }
    }

    #[test]
    fn a_remote_stored_with_credentials_reads_back_without_them() {
        let stored = serde_json::json!({"commit": "abc", "remote": "https://u:tok@h.example/r"});
        let git: GitInfo = serde_json::from_value(stored).unwrap();
        assert_eq!(git.remote.as_deref(), Some("https://h.example/r"));
        assert_eq!(git.commit.as_deref(), Some("abc"));
    }
}
