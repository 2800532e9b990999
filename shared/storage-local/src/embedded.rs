//! The embedded key-value adapter for local mode: one redb file, every operation in its
//! own ACID transaction, so a killed `sextant serve` keeps every acknowledged write.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use sextant_storage::kv::{
    Condition, Item, Key, KvStore, Page, Query, SortRange, StoreError, StoreResult, TxOp, Value,
    WriteOp, validate_batch, validate_query, validate_transaction,
};

const ITEMS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("items");

type Attrs = BTreeMap<String, Value>;

#[derive(Debug, Clone)]
pub struct EmbeddedKv {
    db: Arc<Database>,
}

impl EmbeddedKv {
    /// Opens (or creates) the store file. redb locks it, so a second process opening the
    /// same file fails here instead of corrupting it.
    pub fn open(path: &Path) -> StoreResult<Self> {
        let db = Database::create(path).map_err(StoreError::unavailable)?;
        let txn = db.begin_write().map_err(StoreError::unavailable)?;
        txn.open_table(ITEMS).map_err(StoreError::unavailable)?;
        txn.commit().map_err(StoreError::unavailable)?;
        Ok(Self { db: Arc::new(db) })
    }

    /// Runs blocking redb work off the async executor.
    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Database) -> StoreResult<T> + Send + 'static,
    ) -> StoreResult<T> {
        let db = Arc::clone(&self.db);
        tokio::task::spawn_blocking(move || work(&db))
            .await
            .map_err(StoreError::unavailable)?
    }
}

fn encode(attrs: &Attrs) -> StoreResult<Vec<u8>> {
    postcard::to_allocvec(attrs).map_err(|err| StoreError::Corrupt(err.to_string()))
}

fn decode(bytes: &[u8]) -> StoreResult<Attrs> {
    postcard::from_bytes(bytes).map_err(|err| StoreError::Corrupt(err.to_string()))
}

fn read_attrs(
    table: &impl ReadableTable<(&'static str, &'static str), &'static [u8]>,
    key: &Key,
) -> StoreResult<Option<Attrs>> {
    let stored = table
        .get((key.pk.as_str(), key.sk.as_str()))
        .map_err(StoreError::unavailable)?;
    stored.map(|guard| decode(guard.value())).transpose()
}

/// The smallest string greater than every string starting with `prefix`, if any.
fn prefix_successor(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        let next = (last as u32 + 1..=char::MAX as u32).find_map(char::from_u32);
        if let Some(next) = next {
            chars.push(next);
            return Some(chars.into_iter().collect());
        }
    }
    None
}

/// The sort-key bounds of a query, narrowed by its resume cursor.
fn sort_bounds(query: &Query) -> (Bound<String>, Bound<String>) {
    let (mut lower, mut upper) = match &query.range {
        SortRange::All => (Bound::Unbounded, Bound::Unbounded),
        SortRange::Prefix(prefix) => (
            Bound::Included(prefix.clone()),
            prefix_successor(prefix).map_or(Bound::Unbounded, Bound::Excluded),
        ),
        SortRange::Between(start, end) => {
            (Bound::Included(start.clone()), Bound::Included(end.clone()))
        }
    };
    if let Some(after) = &query.after {
        if query.reverse {
            upper = Bound::Excluded(after.clone());
        } else {
            lower = Bound::Excluded(after.clone());
        }
    }
    (lower, upper)
}

fn apply(
    table: &mut redb::Table<(&str, &str), &[u8]>,
    key: &Key,
    attrs: Option<&Attrs>,
) -> StoreResult<()> {
    let composite = (key.pk.as_str(), key.sk.as_str());
    match attrs {
        Some(attrs) => {
            table
                .insert(composite, encode(attrs)?.as_slice())
                .map_err(StoreError::unavailable)?;
        }
        None => {
            table.remove(composite).map_err(StoreError::unavailable)?;
        }
    }
    Ok(())
}

fn add_to(attrs: &mut Attrs, attr: &str, delta: i64) -> StoreResult<i64> {
    let now = match attrs.get(attr) {
        None => delta,
        Some(Value::N(n)) => n
            .checked_add(delta)
            .ok_or_else(|| StoreError::Invalid(format!("counter {attr} overflows")))?,
        Some(_) => {
            return Err(StoreError::Invalid(format!(
                "attribute {attr} is not a number"
            )));
        }
    };
    attrs.insert(attr.to_owned(), Value::N(now));
    Ok(now)
}

#[async_trait]
impl KvStore for EmbeddedKv {
    async fn get(&self, key: &Key) -> StoreResult<Option<Item>> {
        let key = key.clone();
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(StoreError::unavailable)?;
            let table = txn.open_table(ITEMS).map_err(StoreError::unavailable)?;
            Ok(read_attrs(&table, &key)?.map(|attrs| Item { key, attrs }))
        })
        .await
    }

    async fn put(&self, item: Item, condition: Condition) -> StoreResult<()> {
        item.validate()?;
        self.blocking(move |db| {
            let txn = db.begin_write().map_err(StoreError::unavailable)?;
            {
                let mut table = txn.open_table(ITEMS).map_err(StoreError::unavailable)?;
                let current = read_attrs(&table, &item.key)?;
                if !condition.holds(current.as_ref()) {
                    return Err(StoreError::ConditionFailed);
                }
                apply(&mut table, &item.key, Some(&item.attrs))?;
            }
            txn.commit().map_err(StoreError::unavailable)
        })
        .await
    }

    async fn delete(&self, key: &Key, condition: Condition) -> StoreResult<()> {
        let key = key.clone();
        self.blocking(move |db| {
            let txn = db.begin_write().map_err(StoreError::unavailable)?;
            {
                let mut table = txn.open_table(ITEMS).map_err(StoreError::unavailable)?;
                let current = read_attrs(&table, &key)?;
                if !condition.holds(current.as_ref()) {
                    return Err(StoreError::ConditionFailed);
                }
                apply(&mut table, &key, None)?;
            }
            txn.commit().map_err(StoreError::unavailable)
        })
        .await
    }

    async fn add(&self, key: &Key, attr: &str, delta: i64) -> StoreResult<i64> {
        let key = key.clone();
        let attr = attr.to_owned();
        self.blocking(move |db| {
            let txn = db.begin_write().map_err(StoreError::unavailable)?;
            let now = {
                let mut table = txn.open_table(ITEMS).map_err(StoreError::unavailable)?;
                let mut attrs = read_attrs(&table, &key)?.unwrap_or_default();
                let now = add_to(&mut attrs, &attr, delta)?;
                Item {
                    key: key.clone(),
                    attrs: attrs.clone(),
                }
                .validate()?;
                apply(&mut table, &key, Some(&attrs))?;
                now
            };
            txn.commit().map_err(StoreError::unavailable)?;
            Ok(now)
        })
        .await
    }

    async fn query(&self, query: Query) -> StoreResult<Page> {
        validate_query(&query)?;
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(StoreError::unavailable)?;
            let table = txn.open_table(ITEMS).map_err(StoreError::unavailable)?;
            let (lower, upper) = sort_bounds(&query);
            let pk = query.pk.as_str();
            let lower = match &lower {
                Bound::Included(sk) => Bound::Included((pk, sk.as_str())),
                Bound::Excluded(sk) => Bound::Excluded((pk, sk.as_str())),
                Bound::Unbounded => Bound::Included((pk, "")),
            };
            // The empty sort key is invalid, so (next-partition, "") bounds this one.
            let next_partition;
            let upper = match &upper {
                Bound::Included(sk) => Bound::Included((pk, sk.as_str())),
                Bound::Excluded(sk) => Bound::Excluded((pk, sk.as_str())),
                Bound::Unbounded => {
                    next_partition = format!("{pk}\0");
                    Bound::Excluded((next_partition.as_str(), ""))
                }
            };
            let range = table
                .range((lower, upper))
                .map_err(StoreError::unavailable)?;
            let entries: Box<dyn Iterator<Item = _>> = if query.reverse {
                Box::new(range.rev())
            } else {
                Box::new(range)
            };
            let mut items = Vec::new();
            let mut more = false;
            for entry in entries {
                let (key, value) = entry.map_err(StoreError::unavailable)?;
                if items.len() == query.limit {
                    more = true;
                    break;
                }
                let (pk, sk) = key.value();
                items.push(Item {
                    key: Key::new(pk, sk),
                    attrs: decode(value.value())?,
                });
            }
            let next = if more {
                items.last().map(|item| item.key.sk.clone())
            } else {
                None
            };
            Ok(Page { items, next })
        })
        .await
    }

    async fn batch_write(&self, ops: Vec<WriteOp>) -> StoreResult<()> {
        validate_batch(&ops)?;
        self.blocking(move |db| {
            let txn = db.begin_write().map_err(StoreError::unavailable)?;
            {
                let mut table = txn.open_table(ITEMS).map_err(StoreError::unavailable)?;
                for op in &ops {
                    match op {
                        WriteOp::Put(item) => apply(&mut table, &item.key, Some(&item.attrs))?,
                        WriteOp::Delete(key) => apply(&mut table, key, None)?,
                    }
                }
            }
            txn.commit().map_err(StoreError::unavailable)
        })
        .await
    }

    async fn transact(&self, ops: Vec<TxOp>) -> StoreResult<()> {
        validate_transaction(&ops)?;
        self.blocking(move |db| {
            let txn = db.begin_write().map_err(StoreError::unavailable)?;
            {
                let mut table = txn.open_table(ITEMS).map_err(StoreError::unavailable)?;
                let mut writes = Vec::with_capacity(ops.len());
                let mut failed = Vec::new();
                for (index, op) in ops.iter().enumerate() {
                    let current = read_attrs(&table, op.key())?;
                    if !op.condition().holds(current.as_ref()) {
                        failed.push(index);
                        continue;
                    }
                    match op {
                        TxOp::Put(item, _) => writes.push((&item.key, Some(item.attrs.clone()))),
                        TxOp::Delete(key, _) => writes.push((key, None)),
                        TxOp::Check(..) => {}
                        TxOp::Add { key, deltas, .. } => {
                            let mut attrs = current.unwrap_or_default();
                            for (attr, delta) in deltas {
                                add_to(&mut attrs, attr, *delta)?;
                            }
                            Item {
                                key: key.clone(),
                                attrs: attrs.clone(),
                            }
                            .validate()?;
                            writes.push((key, Some(attrs)));
                        }
                    }
                }
                if !failed.is_empty() {
                    // Dropping the uncommitted transaction discards nothing written yet.
                    return Err(StoreError::TransactionFailed(failed));
                }
                for (key, attrs) in writes {
                    apply(&mut table, key, attrs.as_ref())?;
                }
            }
            txn.commit().map_err(StoreError::unavailable)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_successor_bounds_every_extension_of_the_prefix() {
        assert_eq!(prefix_successor("ab").as_deref(), Some("ac"));
        assert_eq!(prefix_successor("a\u{10FFFF}").as_deref(), Some("b"));
        assert_eq!(prefix_successor(""), None);
        // Surrogates are not chars; the successor skips over them.
        assert_eq!(prefix_successor("\u{D7FF}").as_deref(), Some("\u{E000}"));
    }
}
