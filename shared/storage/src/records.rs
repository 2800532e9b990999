//! Domain records stored as one JSON document attribute per item: readable in the
//! DynamoDB console, and the same bytes on both adapters.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::kv::{Condition, Item, Key, KvStore, Query, StoreError, StoreResult, Value, WriteOp};

const DOC: &str = "doc";
/// Epoch seconds after which DynamoDB's TTL may delete the item. Readers still check
/// expiry themselves: TTL deletion can lag by days.
pub const TTL: &str = "ttl";

/// The attribute that numbers a record's writes. Each write of a versioned record is
/// conditional on the version it read, so of two read-modify-writes racing, one lands
/// and the other reads again.
pub const VERSION: &str = "version";

/// How many times a read-modify-write is tried while other writers keep landing first
/// (each attempt reads afresh; `StoreError::is_conflict` says an attempt lost): enough
/// for the dozens of writers one run, queue or team meets at once (log batches,
/// heartbeats, agents, admins), few enough that a request gives up within a second
/// (`concurrent_update`).
pub const CONFLICT_ATTEMPTS: usize = 50;

/// A record and the version it was read at.
#[derive(Debug, Clone)]
pub struct Versioned<T> {
    pub record: T,
    /// `None` for a record not stored yet; 0 for one stored before it had a version.
    version: Option<i64>,
}

impl<T> Versioned<T> {
    /// A record not stored yet: its first write creates it.
    pub fn unsaved(record: T) -> Self {
        Self {
            record,
            version: None,
        }
    }

    pub fn read(item: &Item) -> StoreResult<Self>
    where
        T: DeserializeOwned,
    {
        Ok(Self {
            record: read_doc(item)?,
            version: Some(item.n(VERSION).unwrap_or(0)),
        })
    }

    /// The version read; 0 for a record not stored yet.
    pub fn version(&self) -> i64 {
        self.version.unwrap_or(0)
    }

    /// The item that stores the record as its next version.
    pub fn next_item(&self, key: Key) -> StoreResult<Item>
    where
        T: Serialize,
    {
        Ok(doc_item(key, &self.record)?.with(VERSION, Value::N(self.version() + 1)))
    }

    /// The condition that the stored record is still the one read: a write under it
    /// fails if anyone wrote (or deleted) the record since.
    pub fn unchanged(&self) -> Condition {
        unchanged_since(self.version)
    }

    /// Notes that `next_item` was written.
    pub fn saved(&mut self) {
        self.version = Some(self.version() + 1);
    }
}

/// The condition that a record is still at the version read (`None`: still absent),
/// for records kept beside others that must change with them (`Versioned::unchanged`).
pub fn unchanged_since(version: Option<i64>) -> Condition {
    match version {
        None => Condition::NotExists,
        // Written before records had versions: nobody has written a version since.
        Some(0) => Condition::AtMost(VERSION.into(), 0),
        Some(version) => Condition::Equals(VERSION.into(), Value::N(version)),
    }
}

pub fn doc_item<T: Serialize>(key: Key, record: &T) -> StoreResult<Item> {
    let json = serde_json::to_string(record).map_err(|err| StoreError::Corrupt(err.to_string()))?;
    Ok(Item::new(key).with(DOC, Value::S(json)))
}

/// A write's condition that the record is still as `read` (for records without a
/// version, where a rare race is answered by reading again).
pub fn unchanged_doc(read: &Item) -> Condition {
    match read.attrs.get(DOC) {
        Some(doc) => Condition::Equals(DOC.to_owned(), doc.clone()),
        None => Condition::NotExists,
    }
}

pub fn read_doc<T: DeserializeOwned>(item: &Item) -> StoreResult<T> {
    let json = item
        .s(DOC)
        .ok_or_else(|| StoreError::Corrupt(format!("{:?} has no document", item.key)))?;
    serde_json::from_str(json).map_err(|err| StoreError::Corrupt(format!("{:?}: {err}", item.key)))
}

pub async fn get_doc<T: DeserializeOwned>(kv: &dyn KvStore, key: &Key) -> StoreResult<Option<T>> {
    kv.get(key).await?.as_ref().map(read_doc).transpose()
}

/// Deletes every item of a partition, a page at a time. Safe to repeat, and to stop
/// anywhere: what a stopped call left, the next deletes.
pub async fn delete_partition(kv: &dyn KvStore, partition: &str) -> StoreResult<()> {
    loop {
        // Always the first page: the previous one is gone.
        let page = kv.query(Query::partition(partition).limit(500)).await?;
        if page.items.is_empty() {
            return Ok(());
        }
        let deletes = page
            .items
            .into_iter()
            .map(|item| WriteOp::Delete(item.key))
            .collect();
        kv.batch_write(deletes).await?;
    }
}

/// Every document in a query's range, following cursors; for bounded collections
/// (a team's members, keys, projects), not for data that grows without limit.
pub async fn query_docs<T: DeserializeOwned>(
    kv: &dyn KvStore,
    mut query: Query,
) -> StoreResult<Vec<T>> {
    let mut records = Vec::new();
    loop {
        let page = kv.query(query.clone()).await?;
        for item in &page.items {
            records.push(read_doc(item)?);
        }
        match page.next {
            Some(next) => query.after = Some(next),
            None => return Ok(records),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn stored(version: Option<i64>) -> BTreeMap<String, Value> {
        let mut attrs = BTreeMap::from([(DOC.to_owned(), Value::S("\"r\"".into()))]);
        if let Some(version) = version {
            attrs.insert(VERSION.to_owned(), Value::N(version));
        }
        attrs
    }

    fn read(version: Option<i64>) -> Versioned<String> {
        let mut item = Item::new(Key::new("p", "s"));
        item.attrs = stored(version);
        Versioned::read(&item).expect("a record")
    }

    #[test]
    fn a_record_read_at_a_version_is_replaced_only_while_nobody_wrote_it() {
        let versioned = read(Some(4));
        let condition = versioned.unchanged();
        assert!(condition.holds(Some(&stored(Some(4)))));
        assert!(!condition.holds(Some(&stored(Some(5)))));
        assert!(!condition.holds(None), "a deleted record is not recreated");
        let next = versioned.next_item(Key::new("p", "s")).expect("an item");
        assert_eq!(next.n(VERSION), Some(5));
    }

    #[test]
    fn a_record_stored_before_versions_reads_as_version_zero_and_takes_one_write() {
        let versioned = read(None);
        assert_eq!(versioned.version(), 0);
        let condition = versioned.unchanged();
        assert!(condition.holds(Some(&stored(None))));
        assert!(condition.holds(Some(&stored(Some(0)))));
        assert!(!condition.holds(Some(&stored(Some(1)))));
    }

    #[test]
    fn an_unsaved_record_is_created_only_where_nothing_is_stored() {
        let mut versioned = Versioned::unsaved("r".to_owned());
        assert!(versioned.unchanged().holds(None));
        assert!(!versioned.unchanged().holds(Some(&stored(Some(1)))));
        assert_eq!(
            versioned.next_item(Key::new("p", "s")).unwrap().n(VERSION),
            Some(1)
        );
        versioned.saved();
        assert_eq!(versioned.version(), 1);
    }
}
