//! Job queues: runs waiting for an agent on another machine to execute them.
//!
//! A job is a run in status `queued` plus a job record: the command, the labels an
//! agent needs to take it, the code snapshot to restore, and the claim on it.
//! Storage, under the team's tenant id:
//! - `{tenant}` / `job#{run}`: which project and queue hold the run's job, so a job is
//!   found by its run's id and a run is enqueued at most once;
//! - `{tenant}#queue#{project}#{queue}` / `job#{run}`: the job record, with a `version`
//!   every change bumps. Run ids are ULIDs, so the partition reads oldest first;
//! - the same partition / `open#{run}`: an index of the jobs not done yet, with their
//!   labels and lease expiry, which is all a claim reads to pick one (finished jobs
//!   cost a claim nothing). It is written in the same transaction as the record.
//!
//! A claim writes the record at the version it read, so of agents racing for a job
//! exactly one wins and the others move on to the next. A claim holds a lease that the
//! agent's heartbeats renew; once it lapses the job is claimable again, up to
//! `max_attempts` claims in all, after which the next claim that comes across it ends
//! the run `failed` and records why, in the job and as a line of the run's `agent`
//! text series. Queues need no creating: any valid name is a queue.

use std::collections::{BTreeMap, BTreeSet};

use futures::StreamExt;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::artifacts::ArtifactError;
use crate::artifacts::{self, ArtifactPath};
use crate::credentials::Caller;
use crate::error::{Coded, Error, ErrorCode};
use crate::ids::{ProjectId, RunId, UserId};
use crate::metering::Meter;
use crate::projects::{MAX_PROJECT_NAME_CHARS, Project, ProjectName};
use crate::runs::RunError;
use crate::runs::{self, GitInfo, NewRun, RunChanges, RunRecord, RunView, Status};
use crate::series::batch::{self, Intake, LogBatch, TextLine};
use crate::series::hot::Settling;
use crate::tenancy::Tenant;
use sextant_storage::Store;
use sextant_storage::kv::{Condition, Item, Key, Query, StoreError, TxOp, Value};
use sextant_storage::records::{
    CONFLICT_ATTEMPTS, VERSION, doc_item, get_doc, read_doc, unchanged_since,
};

pub const DEFAULT_MAX_ATTEMPTS: u32 = 3;
pub const MAX_ATTEMPTS_LIMIT: u32 = 100;
pub const MAX_LABELS: usize = 32;
pub const MAX_COMMAND_ARGS: usize = 1_000;
pub const MAX_COMMAND_BYTES: usize = 64 * 1024;
pub const MAX_AGENT_NAME_CHARS: usize = 100;
pub const MAX_REASON_BYTES: usize = 1_000;
/// The text series where the queue and agents say what happened to a job's run
/// (claims, retries, exit statuses), beside the command's own `stdout` and `stderr`.
pub const AGENT_SERIES: &str = "agent";

/// Unix milliseconds at which a claim lapses; 0 for a waiting job.
const LEASE_UNTIL_MS: &str = "lease_until_ms";
/// Index entries read per query while looking for a claimable job.
const CLAIM_PAGE: usize = 100;

/// Why a queue operation is refused.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("job not found")]
    NotFound,
    #[error(
        "queue names are 1 to {} letters, digits, '-', '_' or '.', starting with a letter or \
         digit",
        MAX_PROJECT_NAME_CHARS
    )]
    InvalidQueueName,
    #[error(
        "labels are 1 to {} letters, digits, '-', '_' or '.', starting with a letter or digit",
        MAX_PROJECT_NAME_CHARS
    )]
    InvalidLabel,
    #[error("at most {} labels", MAX_LABELS)]
    TooManyLabels,
    #[error(
        "command is the program and its arguments: 1 to {} strings without NUL, {} bytes in \
         all, the first not empty",
        MAX_COMMAND_ARGS,
        MAX_COMMAND_BYTES
    )]
    InvalidCommand,
    #[error(
        "an agent's name is 1 to {} characters without control characters",
        MAX_AGENT_NAME_CHARS
    )]
    InvalidAgent,
    #[error("state is one of waiting, claimed, done")]
    UnknownState,
    #[error("max_attempts is 1 to {}", MAX_ATTEMPTS_LIMIT)]
    InvalidMaxAttempts,
    #[error("a reason is at most {} bytes", MAX_REASON_BYTES)]
    InvalidReason,
    #[error(
        "a job for an existing run takes the run as it is: change it with PATCH /v1/runs/{{run}}"
    )]
    RunTakenAsItIs,
    #[error(
        "a new run has no artifacts yet: create the run queued, upload its code, then enqueue \
         it with `run`"
    )]
    CodeOfANewRun,
    #[error("the run has no uploaded artifact {0}")]
    NoSuchCode(String),
    #[error("only a queued run can be enqueued; this one is {0}")]
    RunNotQueued(Status),
    #[error("this run is already on a queue")]
    JobExists,
    #[error("the job is done ({0}); there is nothing to cancel")]
    JobEnded(String),
    #[error(
        "attempt {attempt} no longer holds this job (it is {state} at attempt {current}); stop \
         running it"
    )]
    LeaseLost {
        attempt: u32,
        state: &'static str,
        current: u32,
    },
    /// A stored job that does not read as it should: a failure of ours.
    #[error("{0}")]
    Corrupt(&'static str),
    #[error(transparent)]
    Run(#[from] RunError),
    #[error(transparent)]
    Artifact(#[from] ArtifactError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Coded for QueueError {
    fn code(&self) -> ErrorCode {
        match self {
            Self::NotFound => ErrorCode::NotFound,
            Self::InvalidQueueName => ErrorCode::InvalidQueueName,
            Self::InvalidLabel | Self::TooManyLabels => ErrorCode::InvalidLabel,
            Self::InvalidCommand => ErrorCode::InvalidCommand,
            Self::InvalidAgent => ErrorCode::InvalidAgent,
            Self::UnknownState => ErrorCode::InvalidState,
            Self::InvalidMaxAttempts => ErrorCode::InvalidMaxAttempts,
            Self::InvalidReason => ErrorCode::InvalidReason,
            Self::RunTakenAsItIs => ErrorCode::InvalidRequest,
            Self::CodeOfANewRun | Self::NoSuchCode(_) => ErrorCode::InvalidCode,
            Self::RunNotQueued(_) => ErrorCode::RunNotQueued,
            Self::JobExists => ErrorCode::JobExists,
            Self::JobEnded(_) => ErrorCode::JobEnded,
            Self::LeaseLost { .. } => ErrorCode::LeaseLost,
            Self::Corrupt(_) => ErrorCode::Internal,
            Self::Run(err) => err.code(),
            Self::Artifact(err) => err.code(),
            Self::Store(err) => err.code(),
        }
    }

    fn into_error(self) -> Error {
        match self {
            Self::Corrupt(what) => Error::internal(anyhow::anyhow!(what)),
            Self::Run(err) => err.into(),
            Self::Artifact(err) => err.into(),
            Self::Store(err) => err.into(),
            other => Error::new(other.code(), other.to_string()),
        }
    }
}

type Result<T, E = QueueError> = std::result::Result<T, E>;

/// A queue's name: the rules of project names, since it goes verbatim into URLs,
/// storage keys and command lines.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct QueueName(String);

impl QueueName {
    pub fn parse(text: &str) -> Result<Self> {
        ProjectName::parse(text)
            .map(|_| Self(text.to_owned()))
            .map_err(|_| QueueError::InvalidQueueName)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl utoipa::PartialSchema for QueueName {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::Type::String)
            .pattern(Some("^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$"))
            .description(Some(
                "Any valid name is a queue: 1 to 100 letters, digits, '-', '_' or '.', \
                 starting with a letter or digit.",
            ))
            .examples(["gpu"])
            .into()
    }
}

impl utoipa::ToSchema for QueueName {}

/// Labels name what an agent's machine has (`gpu`, `a100`); the same rules as names.
pub fn parse_labels<'a>(labels: impl IntoIterator<Item = &'a String>) -> Result<BTreeSet<String>> {
    let mut parsed = BTreeSet::new();
    for label in labels {
        ProjectName::parse(label).map_err(|_| QueueError::InvalidLabel)?;
        parsed.insert(label.clone());
    }
    if parsed.len() > MAX_LABELS {
        return Err(QueueError::TooManyLabels);
    }
    Ok(parsed)
}

/// What `check_command` accepts, but for the total size, which a schema cannot say.
fn command_schema() -> utoipa::openapi::schema::Array {
    use utoipa::openapi::{ArrayBuilder, ObjectBuilder, Type};
    let argument = || {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .pattern(Some("^[^\\u0000]*$"))
    };
    ArrayBuilder::new()
        .prefix_items([argument().min_length(Some(1)).build()])
        .items(argument())
        .min_items(Some(1))
        .max_items(Some(MAX_COMMAND_ARGS))
        .description(Some(format!(
            "The program, then its arguments: at most {MAX_COMMAND_ARGS} strings without NUL, \
             {MAX_COMMAND_BYTES} bytes in all."
        )))
        .build()
}

fn check_command(command: &[String]) -> Result<()> {
    let total: usize = command.iter().map(String::len).sum();
    let valid = (1..=MAX_COMMAND_ARGS).contains(&command.len())
        && !command[0].is_empty()
        && total <= MAX_COMMAND_BYTES
        && command.iter().all(|arg| !arg.contains('\0'));
    if !valid {
        return Err(QueueError::InvalidCommand);
    }
    Ok(())
}

/// What `check_agent` accepts.
pub fn agent_name_schema() -> utoipa::openapi::Object {
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::Type::String)
        .min_length(Some(1))
        .max_length(Some(MAX_AGENT_NAME_CHARS))
        .pattern(Some(crate::accounts::PRINTABLE_NAME))
        .build()
}

fn check_agent(agent: &str) -> Result<()> {
    if agent.trim().is_empty()
        || agent.chars().count() > MAX_AGENT_NAME_CHARS
        || agent.chars().any(char::is_control)
    {
        return Err(QueueError::InvalidAgent);
    }
    Ok(())
}

/// Where a job is: `waiting`, `claimed` by an agent, or `done`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// On the queue, for the next agent with its labels.
    Waiting,
    /// An agent holds it; claimable again once its lease lapses.
    Claimed,
    /// Over: its run has ended (`result` says how).
    Done,
}

impl JobState {
    pub fn parse(text: &str) -> Result<Self> {
        serde_json::from_value(serde_json::Value::String(text.to_owned()))
            .map_err(|_| QueueError::UnknownState)
    }
}

/// A job as stored (and, with its run, as clients see it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct JobRecord {
    pub run_id: RunId,
    pub project_id: ProjectId,
    pub queue: QueueName,
    pub command: Vec<String>,
    pub labels: BTreeSet<String>,
    /// The artifact of the run holding the code snapshot to run the command in.
    #[schema(required = true)]
    pub code: Option<ArtifactPath>,
    pub max_attempts: u32,
    pub state: JobState,
    /// Claims so far. The current claim's number, which its agent names to heartbeat
    /// and finish, so a lapsed claim cannot act once another agent holds the job.
    pub attempts: u32,
    /// The agent of the latest claim.
    #[schema(required = true)]
    pub agent: Option<String>,
    pub enqueued_by: UserId,
    #[serde(with = "time::serde::rfc3339")]
    pub enqueued_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(required = true)]
    pub claimed_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(required = true)]
    pub lease_expires_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(required = true)]
    pub finished_at: Option<OffsetDateTime>,
    #[schema(required = true)]
    pub exit_code: Option<i32>,
    /// The signal that ended the command, when one did.
    #[schema(required = true)]
    pub signal: Option<i32>,
    /// How the run ended, once the job is done.
    #[schema(required = true)]
    pub result: Option<Status>,
    /// Why the job ended as it did, when its exit status does not say.
    #[schema(required = true)]
    pub reason: Option<String>,
}

/// Whether an agent may take a job now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Availability {
    /// Never claimed, or given back.
    Waiting,
    /// Claimed, but the claim's lease ran out without a heartbeat: `attempt` (by
    /// `agent`) is presumed dead.
    Lapsed { attempt: u32, agent: String },
    /// Held by a live claim, or done.
    Taken,
}

impl JobRecord {
    pub fn availability(&self, now: OffsetDateTime) -> Availability {
        match self.state {
            JobState::Waiting => Availability::Waiting,
            JobState::Claimed if self.lease_expires_at.is_none_or(|until| until <= now) => {
                Availability::Lapsed {
                    attempt: self.attempts,
                    agent: self.agent.clone().unwrap_or_default(),
                }
            }
            JobState::Claimed | JobState::Done => Availability::Taken,
        }
    }

    /// `agent` takes the job as the next attempt, its lease running for `lease`.
    pub fn claim(&mut self, agent: &str, now: OffsetDateTime, lease: time::Duration) {
        self.state = JobState::Claimed;
        self.attempts += 1;
        self.agent = Some(agent.to_owned());
        self.claimed_at = Some(now);
        self.lease_expires_at = Some(now + lease);
    }

    /// Claim `attempt` renews its lease; refused (`lease_lost`) once it no longer holds
    /// the job.
    pub fn renew(
        &mut self,
        attempt: u32,
        now: OffsetDateTime,
        lease: time::Duration,
    ) -> Result<()> {
        self.check_claim(attempt)?;
        self.lease_expires_at = Some(now + lease);
        Ok(())
    }

    /// The job is over, its run having ended with `result`.
    pub fn finish(&mut self, result: Status, reason: Option<String>, now: OffsetDateTime) {
        self.state = JobState::Done;
        self.result = Some(result);
        self.reason = reason;
        self.finished_at = Some(now);
        self.lease_expires_at = None;
    }

    fn lease_until_ms(&self) -> i64 {
        match (self.state, self.lease_expires_at) {
            (JobState::Claimed, Some(until)) => unix_ms(until),
            _ => 0,
        }
    }

    /// The claim `attempt` still holds the job.
    fn check_claim(&self, attempt: u32) -> Result<()> {
        if self.state == JobState::Claimed && self.attempts == attempt {
            Ok(())
        } else {
            Err(QueueError::LeaseLost {
                attempt,
                state: state_name(self.state),
                current: self.attempts,
            })
        }
    }
}

fn state_name(state: JobState) -> &'static str {
    match state {
        JobState::Waiting => "waiting",
        JobState::Claimed => "claimed",
        JobState::Done => "done",
    }
}

fn unix_ms(time: OffsetDateTime) -> i64 {
    i64::try_from(time.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

/// What the queue's transitions need besides the store: how long claims and runs last
/// without word from their agent, and the meter for the events they note on runs.
#[derive(Debug, Clone, Copy)]
pub struct Rules<'a> {
    /// After a claim's lease lapses without a heartbeat, another agent may claim the
    /// job.
    pub job_lease: time::Duration,
    /// A running run not heard from for this long reads as lost.
    pub heartbeat_timeout: time::Duration,
    /// Job events are noted on the run as text lines, metered like any other.
    pub meter: Meter<'a>,
    pub settling: Settling<'a>,
}

impl<'a> Rules<'a> {
    fn intake(self) -> Intake<'a> {
        Intake {
            heartbeat_timeout: self.heartbeat_timeout,
            meter: self.meter,
            settling: self.settling,
        }
    }
}

/// A job with the version it was read at and its run.
#[derive(Debug, Clone)]
pub struct Job {
    pub record: JobRecord,
    version: i64,
    /// `None` once the run has been deleted.
    pub run: Option<RunRecord>,
}

impl Job {
    /// The job as clients see it: the record, how long a claim's lease lasts and
    /// whether the current one lapsed, and the run as `GET /v1/runs/{run}` shows it.
    pub fn view(&self, now: OffsetDateTime, rules: Rules<'_>) -> JobView<'_> {
        let claimed = self.record.state == JobState::Claimed;
        JobView {
            record: &self.record,
            lease_secs: claimed.then(|| rules.job_lease.whole_seconds()),
            lease_expired: claimed
                && self
                    .record
                    .lease_expires_at
                    .is_some_and(|until| until <= now),
            run: self
                .run
                .as_ref()
                .map(|run| run.view(now, rules.heartbeat_timeout)),
        }
    }
}

/// A job as clients see it: its record, its lease, and its run.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct JobView<'a> {
    #[serde(flatten)]
    record: &'a JobRecord,
    /// How long a claim's lease lasts, in seconds; `null` unless the job is claimed.
    #[schema(required = true)]
    lease_secs: Option<i64>,
    /// The current claim's lease lapsed: another agent may claim the job.
    lease_expired: bool,
    /// The run as `GET /v1/runs/{run}` shows it; `null` once the run is deleted.
    #[schema(required = true)]
    run: Option<RunView<'a>>,
}

/// Where a job is, from its run's id.
#[derive(Debug, Serialize, Deserialize)]
struct JobPointer {
    project_id: ProjectId,
    queue: QueueName,
}

/// What a claim reads of a job that is not done.
#[derive(Debug, Serialize, Deserialize)]
struct OpenEntry {
    labels: BTreeSet<String>,
}

fn pointer_key(tenant: &Tenant, run: RunId) -> Key {
    tenant.key(format!("job#{run}"))
}

fn queue_partition(tenant: &Tenant, project: ProjectId, queue: &QueueName) -> String {
    tenant.partition(&format!("queue#{project}#{}", queue.as_str()))
}

fn job_key(tenant: &Tenant, project: ProjectId, queue: &QueueName, run: RunId) -> Key {
    Key::new(
        queue_partition(tenant, project, queue),
        format!("job#{run}"),
    )
}

fn open_key(tenant: &Tenant, project: ProjectId, queue: &QueueName, run: RunId) -> Key {
    Key::new(
        queue_partition(tenant, project, queue),
        format!("open#{run}"),
    )
}

/// The writes that store `record` over the version read (0 for a new job): the record
/// and its index entry, which goes once the job is done.
fn save_ops(tenant: &Tenant, record: &JobRecord, read_version: i64) -> Result<Vec<TxOp>> {
    let (project, queue, run) = (record.project_id, &record.queue, record.run_id);
    let item = doc_item(job_key(tenant, project, queue, run), record)?
        .with(VERSION, Value::N(read_version + 1));
    let condition = unchanged_since((read_version > 0).then_some(read_version));
    let open = open_key(tenant, project, queue, run);
    // The record's version condition guards the entry too: they change together.
    let index = match record.state {
        JobState::Done => TxOp::Delete(open, Condition::None),
        JobState::Waiting | JobState::Claimed => TxOp::Put(
            doc_item(
                open,
                &OpenEntry {
                    labels: record.labels.clone(),
                },
            )?
            .with(LEASE_UNTIL_MS, Value::N(record.lease_until_ms())),
            Condition::None,
        ),
    };
    Ok(vec![TxOp::Put(item, condition), index])
}

/// Writes the job if nobody changed it since it was read; `false` if somebody did.
async fn save(store: &Store, tenant: &Tenant, job: &mut Job) -> Result<bool> {
    match store
        .kv
        .transact(save_ops(tenant, &job.record, job.version)?)
        .await
    {
        Ok(()) => {
            job.version += 1;
            Ok(true)
        }
        Err(err) if err.is_conflict() => Ok(false),
        Err(err) => Err(err.into()),
    }
}

fn read_job(item: &Item) -> Result<Job> {
    Ok(Job {
        record: read_doc(item)?,
        version: item
            .n(VERSION)
            .ok_or_else(|| QueueError::Corrupt("a job record without a version"))?,
        run: None,
    })
}

/// The job of a run of the team, without its run; 404 for a run that is no job.
async fn load(store: &Store, tenant: &Tenant, run: RunId) -> Result<Job> {
    let not_found = || QueueError::NotFound;
    let pointer: JobPointer = get_doc(&*store.kv, &pointer_key(tenant, run))
        .await?
        .ok_or_else(not_found)?;
    let item = store
        .kv
        .get(&job_key(tenant, pointer.project_id, &pointer.queue, run))
        .await?
        .ok_or_else(not_found)?;
    read_job(&item)
}

/// Whether claim `attempt` still holds the job of `run`: what a job's credential needs
/// to act beyond the data plane.
pub async fn claim_holds(store: &Store, tenant: &Tenant, run: RunId, attempt: u32) -> Result<bool> {
    match load(store, tenant, run).await {
        Ok(job) => Ok(job.record.check_claim(attempt).is_ok()),
        Err(QueueError::NotFound) => Ok(false),
        Err(err) => Err(err),
    }
}

async fn load_run(store: &Store, tenant: &Tenant, run: RunId) -> Result<Option<RunRecord>> {
    match runs::load(store, tenant, run).await {
        Ok(versioned) => Ok(Some(versioned.record)),
        Err(RunError::NotFound) => Ok(None),
        Err(err) => Err(err.into()),
    }
}

/// The job of a run of the team, with its run.
pub async fn get(store: &Store, tenant: &Tenant, run: RunId) -> Result<Job> {
    let mut job = load(store, tenant, run).await?;
    job.run = load_run(store, tenant, run).await?;
    Ok(job)
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewJob {
    /// The program and its arguments; the agent appends the run's params as
    /// `--name value`.
    #[schema(schema_with = command_schema)]
    pub command: Vec<String>,
    /// What an agent must have to take the job.
    #[serde(default)]
    pub labels: Vec<String>,
    /// An artifact of the run holding the code snapshot (only with `run`, whose
    /// artifacts exist before it is enqueued).
    #[schema(value_type = Option<ArtifactPath>)]
    pub code: Option<String>,
    /// Claims the job gets in all before it fails: 1 to 100, 3 by default.
    #[schema(minimum = 1, maximum = 100)]
    pub max_attempts: Option<u32>,
    /// A queued run of the project to enqueue; without it a new run is made from the
    /// fields below, as `POST /v1/projects/{project}/runs` makes one.
    pub run: Option<String>,
    pub name: Option<String>,
    pub description: Option<String>,
    #[serde(default)]
    pub tags: Vec<String>,
    /// The new run's parameters, as `POST /v1/projects/{project}/runs` takes them.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub params: serde_json::Map<String, serde_json::Value>,
    pub git: Option<GitInfo>,
}

impl NewJob {
    fn describes_a_run(&self) -> bool {
        self.name.is_some()
            || self.description.is_some()
            || !self.tags.is_empty()
            || !self.params.is_empty()
            || self.git.is_some()
    }
}

/// Puts a job on a project's queue: for an existing queued run of the project, or for
/// a new run created queued.
pub async fn enqueue(
    store: &Store,
    caller: &Caller,
    project: &Project,
    queue: QueueName,
    new: NewJob,
) -> Result<Job> {
    check_command(&new.command)?;
    let labels = parse_labels(&new.labels)?;
    let max_attempts = new.max_attempts.unwrap_or(DEFAULT_MAX_ATTEMPTS);
    if !(1..=MAX_ATTEMPTS_LIMIT).contains(&max_attempts) {
        return Err(QueueError::InvalidMaxAttempts);
    }
    let code = new.code.as_deref().map(ArtifactPath::parse).transpose()?;
    let tenant = &caller.tenant;
    let (run, created) = match &new.run {
        Some(id) => {
            if new.describes_a_run() {
                return Err(QueueError::RunTakenAsItIs);
            }
            (
                existing_queued_run(store, tenant, project, id, code.as_ref()).await?,
                false,
            )
        }
        None => {
            if code.is_some() {
                return Err(QueueError::CodeOfANewRun);
            }
            let run = NewRun {
                name: new.name,
                description: new.description,
                tags: new.tags,
                params: new.params,
                git: new.git,
                status: Some(Status::Queued),
                ..NewRun::default()
            };
            (runs::create(store, caller, project, run).await?, true)
        }
    };
    let now = store.now();
    let record = JobRecord {
        run_id: run.id,
        project_id: project.id,
        queue,
        command: new.command,
        labels,
        code,
        max_attempts,
        state: JobState::Waiting,
        attempts: 0,
        agent: None,
        enqueued_by: caller.user,
        enqueued_at: now,
        claimed_at: None,
        lease_expires_at: None,
        finished_at: None,
        exit_code: None,
        signal: None,
        result: None,
        reason: None,
    };
    let pointer = JobPointer {
        project_id: project.id,
        queue: record.queue.clone(),
    };
    let mut ops = vec![TxOp::Put(
        doc_item(pointer_key(tenant, run.id), &pointer)?,
        Condition::NotExists,
    )];
    ops.extend(save_ops(tenant, &record, 0)?);
    match store.kv.transact(ops).await {
        Ok(()) => Ok(Job {
            record,
            version: 1,
            run: Some(run),
        }),
        Err(err) => {
            if created {
                // The client never saw this run, and it owns nothing yet: it goes with
                // the job it was made for.
                let deleted = match runs::mark_deleting(store, tenant, run.id).await {
                    Ok(marked) => runs::purge(store, tenant, &marked).await,
                    Err(err) => Err(err),
                };
                if let Err(cleanup) = deleted {
                    tracing::warn!(run = %run.id, error = %cleanup, "a queued run without its job is left");
                }
            }
            match err {
                StoreError::TransactionFailed(failed) if failed.contains(&0) => {
                    Err(QueueError::JobExists)
                }
                err => Err(err.into()),
            }
        }
    }
}

async fn existing_queued_run(
    store: &Store,
    tenant: &Tenant,
    project: &Project,
    id: &str,
    code: Option<&ArtifactPath>,
) -> Result<RunRecord> {
    let id = runs::parse_id(id)?;
    let run = runs::load(store, tenant, id).await?.record;
    if run.project_id != project.id {
        return Err(RunError::NotFound.into());
    }
    if run.status != Status::Queued {
        return Err(QueueError::RunNotQueued(run.status));
    }
    if let Some(code) = code {
        artifacts::get(store, tenant, id, code.as_str())
            .await
            .map_err(|err| match err {
                ArtifactError::NotFound => QueueError::NoSuchCode(code.as_str().to_owned()),
                err => err.into(),
            })?;
    }
    Ok(run)
}

/// One page of a queue's jobs, oldest first, and where the next page starts.
#[derive(Debug)]
pub struct JobPage {
    pub jobs: Vec<Job>,
    pub next_cursor: Option<RunId>,
}

/// A queue's jobs in `states` (every state when empty), oldest first, from after the
/// run `cursor`, each with its run.
pub async fn list(
    store: &Store,
    tenant: &Tenant,
    project: &Project,
    queue: &QueueName,
    states: &BTreeSet<JobState>,
    limit: usize,
    cursor: Option<RunId>,
) -> Result<JobPage> {
    let mut query = Query::partition(queue_partition(tenant, project.id, queue))
        .prefix("job#")
        .limit(limit)
        .after(cursor.map(|run| format!("job#{run}")));
    let mut jobs = Vec::new();
    let mut next_cursor = None;
    'pages: loop {
        let page = store.kv.query(query.clone()).await?;
        for item in &page.items {
            let job = read_job(item)?;
            if states.is_empty() || states.contains(&job.record.state) {
                jobs.push(job);
                if jobs.len() == limit {
                    next_cursor = jobs.last().map(|job| job.record.run_id);
                    break 'pages;
                }
            }
        }
        match page.next {
            Some(next) => query.after = Some(next),
            None => break,
        }
    }
    let ids: Vec<RunId> = jobs.iter().map(|job| job.record.run_id).collect();
    let runs: Vec<Result<Option<RunRecord>>> = futures::stream::iter(ids)
        .map(|run| load_run(store, tenant, run))
        .buffered(8)
        .collect()
        .await;
    for (job, run) in jobs.iter_mut().zip(runs) {
        job.run = run?;
    }
    Ok(JobPage { jobs, next_cursor })
}

/// Gives `agent` the oldest job of the queue whose labels it has, waiting or with a
/// lapsed lease; `None` when there is none. Jobs found past their last attempt, or
/// whose run ended or was asked to stop meanwhile, are closed on the way.
pub async fn claim(
    store: &Store,
    rules: Rules<'_>,
    tenant: &Tenant,
    project: &Project,
    queue: &QueueName,
    agent: &str,
    labels: &BTreeSet<String>,
) -> Result<Option<Job>> {
    check_agent(agent)?;
    let mut query = Query::partition(queue_partition(tenant, project.id, queue))
        .prefix("open#")
        .limit(CLAIM_PAGE);
    loop {
        let page = store.kv.query(query.clone()).await?;
        let now_ms = unix_ms(store.now());
        for entry in &page.items {
            let open: OpenEntry = read_doc(entry)?;
            if !open.labels.is_subset(labels) || entry.n(LEASE_UNTIL_MS).unwrap_or(0) > now_ms {
                continue;
            }
            let Some(run) = entry
                .key
                .sk
                .strip_prefix("open#")
                .and_then(|id| id.parse().ok())
            else {
                continue;
            };
            if let Some(job) =
                try_claim(store, rules, tenant, project.id, queue, run, agent).await?
            {
                return Ok(Some(job));
            }
        }
        match page.next {
            Some(next) => query.after = Some(next),
            None => return Ok(None),
        }
    }
}

async fn try_claim(
    store: &Store,
    rules: Rules<'_>,
    tenant: &Tenant,
    project: ProjectId,
    queue: &QueueName,
    run: RunId,
    agent: &str,
) -> Result<Option<Job>> {
    let claimed = take_if_free(store, rules, tenant, project, queue, run, agent).await?;
    let Some((mut job, record, lapsed)) = claimed else {
        return Ok(None);
    };
    if let Some((attempt, previous)) = lapsed {
        let text = format!(
            "attempt {attempt} (agent {previous}) stopped renewing its lease; attempt {} runs on agent {agent}",
            job.record.attempts
        );
        let batch_id = format!("queue-retry-{}", job.record.attempts);
        note(store, rules, tenant, &record, &batch_id, text).await;
    }
    match runs::heartbeat(store, rules.heartbeat_timeout, tenant, run).await {
        Ok(started) => {
            job.run = Some(started);
            Ok(Some(job))
        }
        // Ended or deleted since it was read: nothing to run after all.
        Err(RunError::Ended(_)) => {
            let reason = "the run ended or was aborted before an agent took the job".to_owned();
            close(store, rules, tenant, &mut job, Status::Aborted, reason).await?;
            Ok(None)
        }
        Err(RunError::NotFound) => {
            forget(store, tenant, &job.record).await?;
            Ok(None)
        }
        Err(err) => Err(err.into()),
    }
}

/// Takes the job if it is free, re-reading it after every lost write: a lost write is
/// not proof that another agent holds the job, since on DynamoDB a transaction conflict
/// cancels every contender. Answers the claimed job with its run and, for a lapsed
/// claim, the attempt and agent it takes over from.
async fn take_if_free(
    store: &Store,
    rules: Rules<'_>,
    tenant: &Tenant,
    project: ProjectId,
    queue: &QueueName,
    run: RunId,
    agent: &str,
) -> Result<Option<(Job, RunRecord, Option<(u32, String)>)>> {
    for _ in 0..CONFLICT_ATTEMPTS {
        let Some(item) = store.kv.get(&job_key(tenant, project, queue, run)).await? else {
            return Ok(None);
        };
        let mut job = read_job(&item)?;
        let now = store.now();
        let lapsed = match job.record.availability(now) {
            Availability::Waiting => None,
            Availability::Lapsed { attempt, agent } => Some((attempt, agent)),
            Availability::Taken => return Ok(None),
        };
        // Whether there is anything left to run is the run's to say.
        let Some(record) = load_run(store, tenant, run).await? else {
            forget(store, tenant, &job.record).await?;
            return Ok(None);
        };
        let timeout = rules.heartbeat_timeout;
        if record.status_at(now, timeout).is_ended() || record.abort_requested_at.is_some() {
            let reason = match &lapsed {
                None => "the run ended or was aborted before an agent took the job".to_owned(),
                Some((attempt, previous)) => format!(
                    "attempt {attempt} (agent {previous}) stopped answering after the run ended or was aborted"
                ),
            };
            close(store, rules, tenant, &mut job, Status::Aborted, reason).await?;
            return Ok(None);
        }
        if let Some((attempt, previous)) = &lapsed
            && job.record.attempts >= job.record.max_attempts
        {
            let reason = format!(
                "gave up after {attempt} attempts: the lease of attempt {attempt} (agent {previous}) \
                 expired without a heartbeat"
            );
            close(store, rules, tenant, &mut job, Status::Failed, reason).await?;
            return Ok(None);
        }
        job.record.claim(agent, now, rules.job_lease);
        if save(store, tenant, &mut job).await? {
            return Ok(Some((job, record, lapsed)));
        }
    }
    Err(RunError::ConcurrentUpdate.into())
}

/// Renews the lease of claim `attempt` and keeps the run alive; the run in the answer
/// tells the agent whether it was asked to stop.
pub async fn heartbeat(
    store: &Store,
    rules: Rules<'_>,
    tenant: &Tenant,
    run: RunId,
    attempt: u32,
) -> Result<Job> {
    for _ in 0..CONFLICT_ATTEMPTS {
        let mut job = load(store, tenant, run).await?;
        job.record.renew(attempt, store.now(), rules.job_lease)?;
        if !save(store, tenant, &mut job).await? {
            continue;
        }
        job.run = match runs::heartbeat(store, rules.heartbeat_timeout, tenant, run).await {
            Ok(record) => Some(record),
            // The command's own SDK may end the run before the command exits.
            Err(RunError::Ended(_)) => load_run(store, tenant, run).await?,
            Err(err) => return Err(err.into()),
        };
        return Ok(job);
    }
    Err(RunError::ConcurrentUpdate.into())
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Finish {
    /// The claim that ran the command.
    pub attempt: u32,
    /// The command's exit status; none if it never ran or a signal ended it.
    pub exit_code: Option<i32>,
    /// The signal that ended the command, if one did.
    pub signal: Option<i32>,
    /// Why, when the status alone does not say (the code could not be restored, say);
    /// at most 1,000 bytes.
    pub reason: Option<String>,
}

/// Ends claim `attempt`: the run ends `succeeded` on exit status 0, `aborted` if it was
/// asked to stop, `failed` otherwise, unless it has ended already (the command's SDK
/// ended it), whose end then stands. Finishing again answers the same.
pub async fn finish(
    store: &Store,
    rules: Rules<'_>,
    tenant: &Tenant,
    run: RunId,
    finish: Finish,
) -> Result<Job> {
    if let Some(reason) = &finish.reason
        && reason.len() > MAX_REASON_BYTES
    {
        return Err(QueueError::InvalidReason);
    }
    let timeout = rules.heartbeat_timeout;
    for _ in 0..CONFLICT_ATTEMPTS {
        let mut job = load(store, tenant, run).await?;
        if job.record.state == JobState::Done && job.record.attempts == finish.attempt {
            job.run = load_run(store, tenant, run).await?;
            return Ok(job);
        }
        job.record.check_claim(finish.attempt)?;
        let Some(record) = load_run(store, tenant, run).await? else {
            forget(store, tenant, &job.record).await?;
            return Err(QueueError::NotFound);
        };
        let now = store.now();
        let ended = record.status_at(now, timeout);
        let result = if ended.is_ended() {
            ended
        } else {
            let outcome = if record.abort_requested_at.is_some() {
                Status::Aborted
            } else if finish.exit_code == Some(0) {
                Status::Succeeded
            } else {
                Status::Failed
            };
            end_run(store, rules, tenant, run, outcome).await?
        };
        job.record.finish(result, finish.reason.clone(), now);
        job.record.exit_code = finish.exit_code;
        job.record.signal = finish.signal;
        if save(store, tenant, &mut job).await? {
            job.run = load_run(store, tenant, run).await?;
            return Ok(job);
        }
    }
    Err(RunError::ConcurrentUpdate.into())
}

/// Takes a job off its queue: a waiting job is done at once and its run aborted; a
/// claimed job's run is asked to stop, which its agent does on its next heartbeat.
/// Cancelling a cancelled job again answers the same.
pub async fn cancel(store: &Store, rules: Rules<'_>, tenant: &Tenant, run: RunId) -> Result<Job> {
    for _ in 0..CONFLICT_ATTEMPTS {
        let mut job = load(store, tenant, run).await?;
        match (job.record.state, job.record.result) {
            (JobState::Done, Some(Status::Aborted)) => {
                job.run = load_run(store, tenant, run).await?;
                return Ok(job);
            }
            (JobState::Done, result) => {
                return Err(QueueError::JobEnded(
                    result.map_or_else(|| "ended".to_owned(), |status| status.to_string()),
                ));
            }
            _ => {}
        }
        match runs::abort(store, rules.heartbeat_timeout, tenant, run).await {
            Ok(_) => {}
            Err(RunError::Ended(_)) => {}
            Err(err) => return Err(err.into()),
        }
        if job.record.state == JobState::Claimed {
            job.run = load_run(store, tenant, run).await?;
            return Ok(job);
        }
        if close(
            store,
            rules,
            tenant,
            &mut job,
            Status::Aborted,
            "cancelled".to_owned(),
        )
        .await?
        {
            return Ok(job);
        }
    }
    Err(RunError::ConcurrentUpdate.into())
}

/// Marks a job done without an agent's report: its run ends `outcome` (`aborted` if it
/// was asked to stop) with `reason` as a line of its `agent` series, unless it ended
/// already, whose end the job then takes. `false` if the job changed meanwhile.
async fn close(
    store: &Store,
    rules: Rules<'_>,
    tenant: &Tenant,
    job: &mut Job,
    outcome: Status,
    reason: String,
) -> Result<bool> {
    let run = job.record.run_id;
    let Some(record) = load_run(store, tenant, run).await? else {
        forget(store, tenant, &job.record).await?;
        return Ok(true);
    };
    let now = store.now();
    let ended = record.status_at(now, rules.heartbeat_timeout);
    let result = if ended.is_ended() {
        ended
    } else {
        let outcome = if record.abort_requested_at.is_some() {
            Status::Aborted
        } else {
            outcome
        };
        let batch_id = format!("queue-end-{}", job.record.attempts);
        note(store, rules, tenant, &record, &batch_id, reason.clone()).await;
        end_run(store, rules, tenant, run, outcome).await?
    };
    job.record.finish(result, Some(reason), now);
    let saved = save(store, tenant, job).await?;
    if saved {
        job.run = load_run(store, tenant, run).await?;
    }
    Ok(saved)
}

/// Ends the run with `status` unless it has ended already; answers how it ended.
async fn end_run(
    store: &Store,
    rules: Rules<'_>,
    tenant: &Tenant,
    run: RunId,
    status: Status,
) -> Result<Status> {
    let changes = RunChanges {
        status: Some(status),
        ..RunChanges::default()
    };
    match runs::patch(store, rules.heartbeat_timeout, tenant, run, changes).await {
        Ok(record) => Ok(record.status),
        Err(RunError::Ended(_)) => Ok(load_run(store, tenant, run)
            .await?
            .map_or(status, |record| {
                record.status_at(store.now(), rules.heartbeat_timeout)
            })),
        Err(err) => Err(err.into()),
    }
}

/// Appends a line to the run's `agent` series. The batch id names the event, so
/// everyone who handles the same event at once stores the line once.
async fn note(
    store: &Store,
    rules: Rules<'_>,
    tenant: &Tenant,
    run: &RunRecord,
    batch_id: &str,
    text: String,
) {
    let step = run
        .series
        .get(AGENT_SERIES)
        .map_or(0, |summary| summary.last_step.saturating_add(1));
    let batch = LogBatch {
        batch_id: Some(batch_id.to_owned()),
        text: BTreeMap::from([(
            AGENT_SERIES.to_owned(),
            vec![TextLine {
                step,
                text,
                timestamp: None,
            }],
        )]),
        ..LogBatch::default()
    };
    // The job record keeps the reason whatever happens here.
    if let Err(err) = batch::log(store, rules.intake(), tenant, run.id, batch).await {
        tracing::warn!(run = %run.id, error = %err, "could not note a job event on its run");
    }
}

/// Removes the job of a run being deleted, if it has one.
pub async fn delete_for_run(store: &Store, tenant: &Tenant, run: RunId) -> Result<()> {
    match load(store, tenant, run).await {
        Ok(job) => forget(store, tenant, &job.record).await,
        Err(QueueError::NotFound) => Ok(()),
        Err(err) => Err(err),
    }
}

/// Removes every trace of a job whose run is gone.
async fn forget(store: &Store, tenant: &Tenant, record: &JobRecord) -> Result<()> {
    let (project, queue, run) = (record.project_id, &record.queue, record.run_id);
    store
        .kv
        .transact(vec![
            TxOp::Delete(job_key(tenant, project, queue, run), Condition::None),
            TxOp::Delete(open_key(tenant, project, queue, run), Condition::None),
            TxOp::Delete(pointer_key(tenant, run), Condition::None),
        ])
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;

    const LEASE: time::Duration = time::Duration::minutes(5);
    const NOW: OffsetDateTime = datetime!(2026-12-04 12:00 UTC);

    fn waiting() -> JobRecord {
        JobRecord {
            run_id: RunId::generate(),
            project_id: ProjectId::generate(),
            queue: QueueName::parse("gpu").unwrap(),
            command: vec!["python".into(), "train.py".into()],
            labels: BTreeSet::new(),
            code: None,
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            state: JobState::Waiting,
            attempts: 0,
            agent: None,
            enqueued_by: UserId::generate(),
            enqueued_at: NOW,
            claimed_at: None,
            lease_expires_at: None,
            finished_at: None,
            exit_code: None,
            signal: None,
            result: None,
            reason: None,
        }
    }

    #[test]
    fn a_claim_holds_the_job_until_its_lease_runs_out_then_it_lapses() {
        let mut job = waiting();
        assert_eq!(job.availability(NOW), Availability::Waiting);
        job.claim("box-1", NOW, LEASE);
        assert_eq!((job.state, job.attempts), (JobState::Claimed, 1));
        assert_eq!(
            job.availability(NOW + LEASE - time::Duration::SECOND),
            Availability::Taken
        );
        assert_eq!(
            job.availability(NOW + LEASE),
            Availability::Lapsed {
                attempt: 1,
                agent: "box-1".into()
            }
        );
    }

    #[test]
    fn a_heartbeat_renews_only_the_claim_that_holds_the_job() {
        let mut job = waiting();
        job.claim("box-1", NOW, LEASE);
        let later = NOW + time::Duration::minutes(4);
        job.renew(1, later, LEASE).unwrap();
        assert_eq!(job.lease_expires_at, Some(later + LEASE));
        // The lease lapsed and another agent took the job: the first claim is out.
        job.claim("box-2", later + LEASE, LEASE);
        let refused = job.renew(1, later + LEASE, LEASE).unwrap_err();
        assert_eq!(refused.code(), ErrorCode::LeaseLost);
        assert!(job.renew(2, later + LEASE, LEASE).is_ok());
    }

    #[test]
    fn a_finished_job_is_taken_for_good_and_holds_no_lease() {
        let mut job = waiting();
        job.claim("box-1", NOW, LEASE);
        job.finish(Status::Succeeded, None, NOW + time::Duration::MINUTE);
        assert_eq!(job.state, JobState::Done);
        assert_eq!(job.lease_expires_at, None);
        assert_eq!(job.lease_until_ms(), 0);
        assert_eq!(job.availability(NOW + LEASE * 10), Availability::Taken);
        assert_eq!(
            job.renew(1, NOW, LEASE).unwrap_err().code(),
            ErrorCode::LeaseLost
        );
    }
}
