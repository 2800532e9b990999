//! Projects: a team's named collections of runs. Names are unique within a team and
//! safe in URLs, so clients may address a project by name or by id.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::ids::{ProjectId, UserId};
use crate::records::{doc_item, get_doc, query_docs};
use crate::state::AppState;
use crate::storage::kv::{Condition, Query, StoreError, TxOp};
use crate::tenancy::Tenant;

pub const MAX_PROJECT_NAME_CHARS: usize = 100;

/// 1 to 100 characters of letters, digits, `-`, `_` and `.`, starting with a letter or
/// digit: usable verbatim in URLs and shell commands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ProjectName(String);

impl ProjectName {
    pub fn parse(text: &str) -> ApiResult<Self> {
        let valid = (1..=MAX_PROJECT_NAME_CHARS).contains(&text.len())
            && text.starts_with(|c: char| c.is_ascii_alphanumeric())
            && text
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !valid {
            return Err(ApiError::invalid(
                "invalid_project_name",
                format!(
                    "project names are 1 to {MAX_PROJECT_NAME_CHARS} letters, digits, '-', '_' or '.', starting with a letter or digit"
                ),
            ));
        }
        Ok(Self(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Project {
    pub id: ProjectId,
    pub name: ProjectName,
    pub created_by: UserId,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
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

pub async fn create(state: &AppState, caller: &Caller, name: ProjectName) -> ApiResult<Project> {
    let tenant = &caller.tenant;
    let project = Project {
        id: ProjectId::generate(),
        name,
        created_by: caller.user,
        created_at: state.now(),
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
    match state.kv.transact(ops).await {
        Ok(()) => Ok(project),
        Err(StoreError::TransactionFailed(failed)) if failed.contains(&0) => {
            Err(ApiError::conflict(
                "project_exists",
                format!("a project named {:?} already exists", project.name.as_str()),
            ))
        }
        Err(err) => Err(err.into()),
    }
}

pub async fn list(state: &AppState, tenant: &Tenant) -> ApiResult<Vec<Project>> {
    Ok(query_docs(
        &*state.kv,
        Query::partition(tenant.root()).prefix("project#"),
    )
    .await?)
}

/// Finds a project by id (`prj_...`) or by name; a foreign or missing one is 404.
pub async fn find(state: &AppState, tenant: &Tenant, id_or_name: &str) -> ApiResult<Project> {
    let not_found = || ApiError::not_found("project");
    let id = match id_or_name.parse::<ProjectId>() {
        Ok(id) => id,
        Err(_) => {
            let name = ProjectName::parse(id_or_name).map_err(|_| not_found())?;
            get_doc::<NameRecord>(&*state.kv, &tenant.key(name_sk(&name)))
                .await?
                .ok_or_else(not_found)?
                .id
        }
    };
    get_doc::<Project>(&*state.kv, &tenant.key(project_sk(id)))
        .await?
        .ok_or_else(not_found)
}

/// Deletes the project's runs (with their data), then the project and its name.
pub async fn delete(state: &AppState, tenant: &Tenant, project: &Project) -> ApiResult<()> {
    crate::runs::delete_all_in_project(state, tenant, project.id).await?;
    state
        .kv
        .transact(vec![
            TxOp::Delete(tenant.key(project_sk(project.id)), Condition::None),
            TxOp::Delete(tenant.key(name_sk(&project.name)), Condition::None),
            TxOp::Delete(
                crate::runs::counter_key(tenant, project.id),
                Condition::None,
            ),
        ])
        .await?;
    Ok(())
}
