//! Domain records stored as one JSON document attribute per item: readable in the
//! DynamoDB console, and the same bytes on both adapters.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::kv::{Item, Key, KvStore, Query, StoreError, StoreResult, Value};

const DOC: &str = "doc";
/// Epoch seconds after which DynamoDB's TTL may delete the item. Readers still check
/// expiry themselves: TTL deletion can lag by days.
pub const TTL: &str = "ttl";

pub fn doc_item<T: Serialize>(key: Key, record: &T) -> StoreResult<Item> {
    let json = serde_json::to_string(record).map_err(|err| StoreError::Corrupt(err.to_string()))?;
    Ok(Item::new(key).with(DOC, Value::S(json)))
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
