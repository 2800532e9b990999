//! Projects: a team's named collections of runs. Names are unique within a team and
//! safe in URLs, so clients may address a project by name or by id.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::credentials::{Caller, Role};
use crate::error::{Coded, Error, ErrorCode};
use crate::ids::{ProjectId, UserId};
use crate::tenancy::Tenant;
use sextant_storage::Store;
use sextant_storage::kv::{Condition, Query, StoreError, TxOp};
use sextant_storage::records::{CONFLICT_ATTEMPTS, Versioned, doc_item, get_doc, query_docs};

pub const MAX_PROJECT_NAME_CHARS: usize = 100;
pub const MAX_TAGS: usize = 100;
pub const MAX_TAG_KEY_BYTES: usize = 250;
pub const MAX_TAG_VALUE_BYTES: usize = 5_000;

/// 1 to 100 characters of letters, digits, `-`, `_` and `.`, starting with a letter or
/// digit: usable verbatim in URLs and shell commands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ProjectName(String);

/// Why a project operation is refused.
#[derive(Debug, thiserror::Error)]
pub enum ProjectError {
    #[error("project not found")]
    NotFound,
    #[error(
        "project names are 1 to {} letters, digits, '-', '_' or '.', starting with a letter \
         or digit",
        MAX_PROJECT_NAME_CHARS
    )]
    InvalidName,
    #[error("a project named {0:?} already exists")]
    NameTaken(String),
    #[error(
        "a project tag's key is 1 to {} bytes and its value at most {}, without control \
         characters",
        MAX_TAG_KEY_BYTES,
        MAX_TAG_VALUE_BYTES
    )]
    InvalidTag,
    #[error("a project has at most {} tags", MAX_TAGS)]
    TooManyTags,
    #[error("the project changed many times while this request ran; retry it")]
    ConcurrentUpdate,
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Coded for ProjectError {
    fn code(&self) -> ErrorCode {
        match self {
            Self::NotFound => ErrorCode::NotFound,
            Self::InvalidName => ErrorCode::InvalidProjectName,
            Self::NameTaken(_) => ErrorCode::ProjectExists,
            Self::InvalidTag | Self::TooManyTags => ErrorCode::InvalidTag,
            Self::ConcurrentUpdate => ErrorCode::ConcurrentUpdate,
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

type Result<T, E = ProjectError> = std::result::Result<T, E>;

impl ProjectName {
    pub fn parse(text: &str) -> Result<Self> {
        let valid = (1..=MAX_PROJECT_NAME_CHARS).contains(&text.len())
            && text.starts_with(|c: char| c.is_ascii_alphanumeric())
            && text
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !valid {
            return Err(ProjectError::InvalidName);
        }
        Ok(Self(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl utoipa::PartialSchema for ProjectName {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::Type::String)
            .pattern(Some("^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$"))
            .examples(["resnet-sweeps"])
            .into()
    }
}

impl utoipa::ToSchema for ProjectName {}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Project {
    pub id: ProjectId,
    pub name: ProjectName,
    pub created_by: UserId,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// Key-value tags (MLflow's experiment tags).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
    /// When the project last changed (renamed, tagged, trashed or restored).
    #[serde(
        with = "time::serde::rfc3339::option",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub updated_at: Option<OffsetDateTime>,
    /// When the project was moved to the trash (MLflow's experiment delete): it keeps
    /// its name and runs until restored, and leaves the project list meanwhile.
    #[serde(
        with = "time::serde::rfc3339::option",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub trashed_at: Option<OffsetDateTime>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct NameRecord {
    id: ProjectId,
}

fn project_sk(id: ProjectId) -> String {
    format!("project#{id}")
}

fn name_sk(name: &ProjectName) -> String {
    format!("project-name#{}", name.as_str())
}

pub async fn create(store: &Store, caller: &Caller, name: ProjectName) -> Result<Project> {
    let tenant = &caller.tenant;
    let project = Project {
        id: ProjectId::generate(),
        name,
        created_by: caller.user,
        created_at: store.now(),
        tags: BTreeMap::new(),
        updated_at: None,
        trashed_at: None,
    };
    let ops = vec![
        TxOp::Put(
            doc_item(
                tenant.key(name_sk(&project.name)),
                &NameRecord { id: project.id },
            )?,
            Condition::NotExists,
        ),
        TxOp::Put(
            doc_item(tenant.key(project_sk(project.id)), &project)?,
            Condition::NotExists,
        ),
    ];
    match store.kv.transact(ops).await {
        Ok(()) => Ok(project),
        Err(StoreError::TransactionFailed(failed)) if failed.contains(&0) => {
            Err(name_taken(&project.name))
        }
        Err(err) => Err(err.into()),
    }
}

/// The team's project named `name`, made now if there is none (by a member or admin;
/// a viewer is refused), as clients that name projects rather than create them expect.
pub async fn find_or_create(store: &Store, caller: &Caller, name: ProjectName) -> Result<Project> {
    match find(store, &caller.tenant, name.as_str()).await {
        Err(ProjectError::NotFound) if caller.require(Role::Member).is_ok() => {}
        found => return found,
    }
    match create(store, caller, name.clone()).await {
        // Made by a concurrent request in the meantime.
        Err(ProjectError::NameTaken(_)) => find(store, &caller.tenant, name.as_str()).await,
        made => made,
    }
}

/// The team's projects, without the ones in the trash.
pub async fn list(store: &Store, tenant: &Tenant) -> Result<Vec<Project>> {
    let mut projects = list_all(store, tenant).await?;
    projects.retain(|project| project.trashed_at.is_none());
    Ok(projects)
}

/// The team's projects, including the ones in the trash.
pub async fn list_all(store: &Store, tenant: &Tenant) -> Result<Vec<Project>> {
    Ok(query_docs(
        &*store.kv,
        Query::partition(tenant.root()).prefix("project#"),
    )
    .await?)
}

/// A change to a project's name, tags or place in the trash.
#[derive(Debug, Clone, Default)]
pub struct ProjectChange {
    pub name: Option<ProjectName>,
    pub set_tags: BTreeMap<String, String>,
    pub remove_tags: Vec<String>,
    pub trashed: Option<bool>,
}

fn check_tag(key: &str, value: &str) -> Result<()> {
    if key.is_empty()
        || key.len() > MAX_TAG_KEY_BYTES
        || value.len() > MAX_TAG_VALUE_BYTES
        || key.chars().chain(value.chars()).any(char::is_control)
    {
        return Err(ProjectError::InvalidTag);
    }
    Ok(())
}

/// Applies `change` to the project, retrying from a fresh read when another change
/// got there first. A new name must be free: its lookup moves in the same transaction.
pub async fn update(
    store: &Store,
    tenant: &Tenant,
    id: ProjectId,
    change: &ProjectChange,
) -> Result<Project> {
    for (key, value) in &change.set_tags {
        check_tag(key, value)?;
    }
    let key = tenant.key(project_sk(id));
    for _ in 0..CONFLICT_ATTEMPTS {
        let item = store
            .kv
            .get(&key)
            .await?
            .ok_or_else(|| ProjectError::NotFound)?;
        let mut versioned = Versioned::<Project>::read(&item)?;
        let project = &mut versioned.record;
        let old_name = project.name.clone();
        if let Some(name) = &change.name {
            project.name = name.clone();
        }
        project.tags.extend(change.set_tags.clone());
        for tag in &change.remove_tags {
            project.tags.remove(tag);
        }
        if project.tags.len() > MAX_TAGS {
            return Err(ProjectError::TooManyTags);
        }
        match change.trashed {
            Some(true) if project.trashed_at.is_none() => project.trashed_at = Some(store.now()),
            Some(false) => project.trashed_at = None,
            _ => {}
        }
        project.updated_at = Some(store.now());
        let mut ops = vec![TxOp::Put(
            versioned.next_item(key.clone())?,
            versioned.unchanged(),
        )];
        let project = &versioned.record;
        let renamed = project.name != old_name;
        if renamed {
            ops.push(TxOp::Put(
                doc_item(
                    tenant.key(name_sk(&project.name)),
                    &NameRecord { id: project.id },
                )?,
                Condition::NotExists,
            ));
            ops.push(TxOp::Delete(
                tenant.key(name_sk(&old_name)),
                Condition::None,
            ));
        }
        match store.kv.transact(ops).await {
            Ok(()) => return Ok(versioned.record),
            Err(StoreError::TransactionFailed(failed)) if renamed && failed.contains(&1) => {
                return Err(name_taken(&project.name));
            }
            Err(err) if err.is_conflict() => continue,
            Err(err) => return Err(err.into()),
        }
    }
    Err(ProjectError::ConcurrentUpdate)
}

fn name_taken(name: &ProjectName) -> ProjectError {
    ProjectError::NameTaken(name.as_str().to_owned())
}

/// The id of the team's project named `name`, if there is one: one read, where `find`
/// takes two.
pub async fn id_by_name(
    store: &Store,
    tenant: &Tenant,
    name: &ProjectName,
) -> Result<Option<ProjectId>> {
    Ok(
        get_doc::<NameRecord>(&*store.kv, &tenant.key(name_sk(name)))
            .await?
            .map(|record| record.id),
    )
}

/// Finds a project by id (`prj_...`) or by name; a foreign or missing one is 404.
pub async fn find(store: &Store, tenant: &Tenant, id_or_name: &str) -> Result<Project> {
    let not_found = || ProjectError::NotFound;
    let id = match id_or_name.parse::<ProjectId>() {
        Ok(id) => id,
        Err(_) => {
            let name = ProjectName::parse(id_or_name).map_err(|_| not_found())?;
            id_by_name(store, tenant, &name)
                .await?
                .ok_or_else(not_found)?
        }
    };
    get_doc::<Project>(&*store.kv, &tenant.key(project_sk(id)))
        .await?
        .ok_or_else(not_found)
}

/// The writes that remove a project's own records, its name with it; its runs are
/// deleted first (`crate::deletion::delete_project`).
pub fn removal(tenant: &Tenant, project: &Project) -> [TxOp; 2] {
    [
        TxOp::Delete(tenant.key(project_sk(project.id)), Condition::None),
        TxOp::Delete(tenant.key(name_sk(&project.name)), Condition::None),
    ]
}
