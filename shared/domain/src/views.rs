//! Saved views of a project's workspace: a name for the query of a workspace URL
//! (filter, grouping, smoothing, axis, hidden runs), so a team opens the same view
//! by name. Saving under a name that exists replaces that view.
//!
//! Invariant: views are read and written only within their tenant's project. Every
//! key below is built from the caller's `Tenant` and a `Project` found through that
//! same tenant, so no call here can name another team's views.
//!
//! Storage, in the project's partition (`runs::project_partition`), which the
//! project's delete empties (`crate::deletion::delete_project`):
//! - `view#{name}`: one item per view;
//! - `view-count`: how many views the project has, moved in the same transaction as
//!   a view created or deleted, so the cap holds under concurrent saves.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::credentials::{Caller, CredentialError, Role};
use crate::error::{Coded, Error, ErrorCode};
use crate::ids::{ProjectId, UserId};
use crate::projects::Project;
use crate::runs;
use crate::tenancy::Tenant;
use sextant_storage::Store;
use sextant_storage::kv::{Condition, Key, Query, StoreError, TxOp, WriteOp};
use sextant_storage::records::{CONFLICT_ATTEMPTS, doc_item, get_doc, query_docs};

pub const MAX_VIEWS: usize = 100;
pub const MAX_VIEW_NAME_CHARS: usize = 100;
pub const MAX_VIEW_QUERY_BYTES: usize = 4_096;

const SORT_PREFIX: &str = "view#";
const COUNT_SK: &str = "view-count";
const COUNT: &str = "count";

/// A named workspace query of a project.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct View {
    pub name: String,
    /// The workspace URL's query string, without `?` and without a `view` key.
    pub query: String,
    pub saved_by: UserId,
    #[serde(with = "time::serde::rfc3339")]
    pub saved_at: OffsetDateTime,
}

/// Why a view operation is refused.
#[derive(Debug, thiserror::Error)]
pub enum ViewError {
    #[error("view not found")]
    NotFound,
    #[error(
        "a view's name is 1 to {} characters without control characters",
        MAX_VIEW_NAME_CHARS
    )]
    InvalidName,
    #[error(
        "a view's query is a URL query string of at most {} bytes, without control \
         characters and without a `view` key",
        MAX_VIEW_QUERY_BYTES
    )]
    InvalidQuery,
    #[error("a project has at most {} saved views; delete one first", MAX_VIEWS)]
    TooMany,
    #[error("the project's views changed many times while this request ran; retry it")]
    ConcurrentUpdate,
    #[error(transparent)]
    Credential(#[from] CredentialError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Coded for ViewError {
    fn code(&self) -> ErrorCode {
        match self {
            Self::NotFound => ErrorCode::NotFound,
            Self::InvalidName => ErrorCode::InvalidViewName,
            Self::InvalidQuery => ErrorCode::InvalidViewQuery,
            Self::TooMany => ErrorCode::TooManyViews,
            Self::ConcurrentUpdate => ErrorCode::ConcurrentUpdate,
            Self::Credential(err) => err.code(),
            Self::Store(err) => err.code(),
        }
    }

    fn into_error(self) -> Error {
        match self {
            Self::Credential(err) => err.into(),
            Self::Store(err) => err.into(),
            other => Error::new(other.code(), other.to_string()),
        }
    }
}

type Result<T, E = ViewError> = std::result::Result<T, E>;

/// A view's name as stored: trimmed, so `" best "` and `"best"` are one view.
fn parse_name(text: &str) -> Result<&str> {
    let name = text.trim();
    let chars = name.chars().count();
    if !(1..=MAX_VIEW_NAME_CHARS).contains(&chars) || name.chars().any(char::is_control) {
        return Err(ViewError::InvalidName);
    }
    Ok(name)
}

/// A view's query as stored, a leading `?` dropped. A `view` key is refused: opening
/// a view that pointed at a view would need a second lookup, or loop.
fn parse_query(text: &str) -> Result<&str> {
    let query = text.strip_prefix('?').unwrap_or(text);
    let refused = query.len() > MAX_VIEW_QUERY_BYTES
        || query.chars().any(char::is_control)
        || url::form_urlencoded::parse(query.as_bytes()).any(|(key, _)| key == "view");
    if refused {
        return Err(ViewError::InvalidQuery);
    }
    Ok(query)
}

fn view_key(tenant: &Tenant, project: ProjectId, name: &str) -> Key {
    Key::new(
        runs::project_partition(tenant, project),
        format!("{SORT_PREFIX}{name}"),
    )
}

fn count_key(tenant: &Tenant, project: ProjectId) -> Key {
    Key::new(runs::project_partition(tenant, project), COUNT_SK)
}

/// Saves `query` as the project's view `name`, replacing a view of that name.
/// Members and admins only.
pub async fn save(
    store: &Store,
    caller: &Caller,
    project: &Project,
    name: &str,
    query: &str,
) -> Result<View> {
    caller.require(Role::Member)?;
    let name = parse_name(name)?;
    let query = parse_query(query)?;
    let tenant = &caller.tenant;
    let view = View {
        name: name.to_owned(),
        query: query.to_owned(),
        saved_by: caller.user,
        saved_at: store.now(),
    };
    let item = doc_item(view_key(tenant, project.id, name), &view)?;
    // A new view and its count move together; a name that exists is replaced without
    // counting. Each step fails only when a concurrent save or delete of the same name
    // changed which case holds, so it is retried from the other case.
    for _ in 0..CONFLICT_ATTEMPTS {
        let create = vec![
            TxOp::Put(item.clone(), Condition::NotExists),
            TxOp::Add {
                key: count_key(tenant, project.id),
                deltas: vec![(COUNT.to_owned(), 1)],
                condition: Condition::AtMost(COUNT.to_owned(), MAX_VIEWS as i64 - 1),
            },
        ];
        match store.kv.transact(create).await {
            Ok(()) => return Ok(view),
            Err(StoreError::TransactionFailed(failed)) if failed.contains(&0) => {}
            Err(StoreError::TransactionFailed(failed)) if failed.contains(&1) => {
                return Err(ViewError::TooMany);
            }
            Err(err) if err.is_conflict() => continue,
            Err(err) => return Err(err.into()),
        }
        match store.kv.put(item.clone(), Condition::Exists).await {
            Ok(()) => return Ok(view),
            Err(err) if err.is_conflict() => continue,
            Err(err) => return Err(err.into()),
        }
    }
    Err(ViewError::ConcurrentUpdate)
}

/// The project's views, by name.
pub async fn list(store: &Store, tenant: &Tenant, project: &Project) -> Result<Vec<View>> {
    let mut views: Vec<View> = query_docs(
        &*store.kv,
        Query::partition(runs::project_partition(tenant, project.id)).prefix(SORT_PREFIX),
    )
    .await?;
    views.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(views)
}

/// The project's view `name`.
pub async fn get(store: &Store, tenant: &Tenant, project: &Project, name: &str) -> Result<View> {
    // A name that could not be saved names no view.
    let name = parse_name(name).map_err(|_| ViewError::NotFound)?;
    get_doc(&*store.kv, &view_key(tenant, project.id, name))
        .await?
        .ok_or(ViewError::NotFound)
}

/// Deletes the project's view `name`. Members and admins only.
pub async fn delete(store: &Store, caller: &Caller, project: &Project, name: &str) -> Result<()> {
    caller.require(Role::Member)?;
    let name = parse_name(name).map_err(|_| ViewError::NotFound)?;
    let tenant = &caller.tenant;
    let ops = vec![
        TxOp::Delete(view_key(tenant, project.id, name), Condition::Exists),
        TxOp::Add {
            key: count_key(tenant, project.id),
            deltas: vec![(COUNT.to_owned(), -1)],
            condition: Condition::None,
        },
    ];
    match store.kv.transact(ops).await {
        Ok(()) => Ok(()),
        // Absent, or a concurrent delete got there first.
        Err(StoreError::TransactionFailed(_)) => Err(ViewError::NotFound),
        Err(err) => Err(err.into()),
    }
}

/// Deletes every view of a project and their count, for deleting the project.
pub async fn delete_all(
    store: &Store,
    tenant: &Tenant,
    project: ProjectId,
) -> Result<(), StoreError> {
    let mut query = Query::partition(runs::project_partition(tenant, project)).prefix(SORT_PREFIX);
    let mut keys = Vec::new();
    loop {
        let page = store.kv.query(query.clone()).await?;
        keys.extend(page.items.into_iter().map(|item| item.key));
        match page.next {
            Some(next) => query.after = Some(next),
            None => break,
        }
    }
    keys.push(count_key(tenant, project));
    store
        .kv
        .batch_write(keys.into_iter().map(WriteOp::Delete).collect())
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_trimmed_one_to_a_hundred_characters_without_control_characters() {
        assert_eq!(parse_name("  best run  ").unwrap(), "best run");
        assert_eq!(parse_name("ü/#?&").unwrap(), "ü/#?&");
        let longest = "é".repeat(MAX_VIEW_NAME_CHARS);
        assert_eq!(parse_name(&longest).unwrap(), longest);
        for bad in [
            String::new(),
            "   ".to_owned(),
            "é".repeat(MAX_VIEW_NAME_CHARS + 1),
            "a\nb".to_owned(),
            "a\u{7f}".to_owned(),
        ] {
            assert_eq!(
                parse_name(&bad).unwrap_err().code(),
                ErrorCode::InvalidViewName,
                "{bad:?}"
            );
        }
    }

    #[test]
    fn queries_are_at_most_4096_bytes_without_a_view_key() {
        assert_eq!(
            parse_query("?group=lr&smooth=0.6").unwrap(),
            "group=lr&smooth=0.6"
        );
        assert_eq!(parse_query("").unwrap(), "");
        assert_eq!(parse_query("preview=1&x=view").unwrap(), "preview=1&x=view");
        let longest = "a".repeat(MAX_VIEW_QUERY_BYTES);
        assert_eq!(parse_query(&longest).unwrap(), longest);
        for bad in [
            "a".repeat(MAX_VIEW_QUERY_BYTES + 1),
            "view=best".to_owned(),
            "group=lr&view=".to_owned(),
            "group=lr&%76iew=best".to_owned(),
            "a=b\r\nc".to_owned(),
        ] {
            assert_eq!(
                parse_query(&bad).unwrap_err().code(),
                ErrorCode::InvalidViewQuery,
                "{bad:?}"
            );
        }
    }
}
