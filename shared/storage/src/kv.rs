//! The key-value port: the handful of DynamoDB operations the domain needs, and nothing
//! that the embedded store could not honour with the same semantics.
//!
//! Items live under a partition key and a sort key, both strings. Queries read one
//! partition in sort-key order. The limits DynamoDB enforces (item size, transaction
//! size) are enforced by every adapter so local mode never accepts what AWS would refuse.

use std::collections::BTreeMap;

use async_trait::async_trait;
use bytes::Bytes;

/// DynamoDB's item-size limit is 400 KiB; we stop at 400,000 bytes so that size
/// estimates that differ slightly (moto's, for one) never disagree with ours.
pub const MAX_ITEM_BYTES: usize = 400_000;
/// DynamoDB's limit on the number of items one transaction may touch.
pub const MAX_TRANSACT_ITEMS: usize = 100;
/// DynamoDB's largest sort key and partition key, in bytes.
pub const MAX_SORT_KEY_BYTES: usize = 1024;
pub const MAX_PARTITION_KEY_BYTES: usize = 2048;

/// Reserved attribute names that carry the item's key in DynamoDB.
pub const PK: &str = "pk";
pub const SK: &str = "sk";

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Key {
    pub pk: String,
    pub sk: String,
}

impl Key {
    pub fn new(pk: impl Into<String>, sk: impl Into<String>) -> Self {
        Self {
            pk: pk.into(),
            sk: sk.into(),
        }
    }

    fn validate(&self) -> Result<(), StoreError> {
        if self.pk.is_empty() || self.pk.len() > MAX_PARTITION_KEY_BYTES {
            return Err(StoreError::Invalid(format!(
                "partition key must be 1..={MAX_PARTITION_KEY_BYTES} bytes"
            )));
        }
        if self.sk.is_empty() || self.sk.len() > MAX_SORT_KEY_BYTES {
            return Err(StoreError::Invalid(format!(
                "sort key must be 1..={MAX_SORT_KEY_BYTES} bytes"
            )));
        }
        Ok(())
    }
}

/// An attribute value. Deliberately small: strings, 64-bit integers (counters,
/// timestamps, versions), binary blobs (encoded documents, compressed chunks) and booleans.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum Value {
    S(String),
    N(i64),
    B(Bytes),
    Bool(bool),
}

impl Value {
    /// Size as DynamoDB bills it: strings and binaries by length, numbers by their
    /// significant digits (roughly one byte per two digits plus one).
    pub fn billed_size(&self) -> usize {
        match self {
            Value::S(s) => s.len(),
            Value::B(b) => b.len(),
            Value::N(n) => {
                let digits = n
                    .unsigned_abs()
                    .checked_ilog10()
                    .map_or(1, |d| d as usize + 1);
                digits.div_ceil(2) + 1
            }
            Value::Bool(_) => 1,
        }
    }
}

/// An item: its key and its other attributes.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    pub key: Key,
    pub attrs: BTreeMap<String, Value>,
}

impl Item {
    pub fn new(key: Key) -> Self {
        Self {
            key,
            attrs: BTreeMap::new(),
        }
    }

    pub fn with(mut self, name: impl Into<String>, value: Value) -> Self {
        self.attrs.insert(name.into(), value);
        self
    }

    pub fn s(&self, name: &str) -> Option<&str> {
        match self.attrs.get(name) {
            Some(Value::S(s)) => Some(s),
            _ => None,
        }
    }

    pub fn n(&self, name: &str) -> Option<i64> {
        match self.attrs.get(name) {
            Some(Value::N(n)) => Some(*n),
            _ => None,
        }
    }

    pub fn b(&self, name: &str) -> Option<&Bytes> {
        match self.attrs.get(name) {
            Some(Value::B(b)) => Some(b),
            _ => None,
        }
    }

    /// The item's size as DynamoDB computes it for limits and write units: attribute
    /// names plus values, including the key attributes.
    pub fn billed_size(&self) -> usize {
        PK.len()
            + self.key.pk.len()
            + SK.len()
            + self.key.sk.len()
            + self
                .attrs
                .iter()
                .map(|(name, value)| name.len() + value.billed_size())
                .sum::<usize>()
    }

    pub fn validate(&self) -> Result<(), StoreError> {
        self.key.validate()?;
        if self.attrs.contains_key(PK) || self.attrs.contains_key(SK) {
            return Err(StoreError::Invalid(
                "attributes named pk or sk are reserved for the key".into(),
            ));
        }
        let size = self.billed_size();
        if size > MAX_ITEM_BYTES {
            return Err(StoreError::ItemTooLarge { size });
        }
        Ok(())
    }
}

/// A precondition on the item currently stored under a key.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Condition {
    #[default]
    None,
    /// No item exists under the key.
    NotExists,
    /// An item exists under the key.
    Exists,
    /// An item exists and its attribute equals the value (optimistic concurrency).
    Equals(String, Value),
    /// The numeric attribute is at most the value; an absent item or attribute counts
    /// as zero (a cap on a counter).
    AtMost(String, i64),
}

impl Condition {
    /// Whether the condition holds for what is stored now; every adapter that evaluates
    /// conditions itself (rather than asking DynamoDB) goes through here.
    pub fn holds(&self, current: Option<&BTreeMap<String, Value>>) -> bool {
        match self {
            Condition::None => true,
            Condition::NotExists => current.is_none(),
            Condition::Exists => current.is_some(),
            Condition::Equals(name, expected) => {
                current.and_then(|attrs| attrs.get(name)) == Some(expected)
            }
            Condition::AtMost(name, limit) => match current.and_then(|attrs| attrs.get(name)) {
                None => 0 <= *limit,
                Some(Value::N(n)) => n <= limit,
                Some(_) => false,
            },
        }
    }
}

/// Which sort keys of a partition a query reads.
#[derive(Debug, Clone, PartialEq)]
pub enum SortRange {
    All,
    Prefix(String),
    /// Inclusive on both ends.
    Between(String, String),
}

impl SortRange {
    pub fn contains(&self, sk: &str) -> bool {
        match self {
            SortRange::All => true,
            SortRange::Prefix(prefix) => sk.starts_with(prefix.as_str()),
            SortRange::Between(start, end) => start.as_str() <= sk && sk <= end.as_str(),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    pub pk: String,
    pub range: SortRange,
    /// Read in descending sort-key order.
    pub reverse: bool,
    /// At most this many items in the page (an adapter may return fewer and a cursor).
    pub limit: usize,
    /// Resume after this sort key: the `next` of the previous page.
    pub after: Option<String>,
}

impl Query {
    pub fn partition(pk: impl Into<String>) -> Self {
        Self {
            pk: pk.into(),
            range: SortRange::All,
            reverse: false,
            limit: 1000,
            after: None,
        }
    }

    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.range = SortRange::Prefix(prefix.into());
        self
    }

    pub fn between(mut self, start: impl Into<String>, end: impl Into<String>) -> Self {
        self.range = SortRange::Between(start.into(), end.into());
        self
    }

    pub fn reverse(mut self) -> Self {
        self.reverse = true;
        self
    }

    pub fn limit(mut self, limit: usize) -> Self {
        self.limit = limit;
        self
    }

    pub fn after(mut self, sort_key: Option<String>) -> Self {
        self.after = sort_key;
        self
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    pub items: Vec<Item>,
    /// The sort key to resume after; `None` once the range is exhausted.
    pub next: Option<String>,
}

/// An unconditional write in a batch.
#[derive(Debug, Clone, PartialEq)]
pub enum WriteOp {
    Put(Item),
    Delete(Key),
}

/// One step of an all-or-nothing transaction.
#[derive(Debug, Clone, PartialEq)]
pub enum TxOp {
    Put(Item, Condition),
    Delete(Key, Condition),
    /// Fails the transaction unless the condition holds; writes nothing.
    Check(Key, Condition),
    /// Adds to numeric attributes, creating the item or attributes at zero first.
    Add {
        key: Key,
        deltas: Vec<(String, i64)>,
        condition: Condition,
    },
}

impl TxOp {
    pub fn key(&self) -> &Key {
        match self {
            TxOp::Put(item, _) => &item.key,
            TxOp::Delete(key, _) | TxOp::Check(key, _) | TxOp::Add { key, .. } => key,
        }
    }

    pub fn condition(&self) -> &Condition {
        match self {
            TxOp::Put(_, condition)
            | TxOp::Delete(_, condition)
            | TxOp::Check(_, condition)
            | TxOp::Add { condition, .. } => condition,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A single operation's condition did not hold.
    #[error("condition failed")]
    ConditionFailed,
    /// A transaction was refused because the conditions of these operations (by index)
    /// did not hold.
    #[error("transaction conditions failed at {0:?}")]
    TransactionFailed(Vec<usize>),
    /// Another transaction touched the same items at the same time; retrying may succeed.
    #[error("transaction conflict")]
    TransactionConflict,
    #[error("throttled by the store")]
    Throttled,
    #[error("item of {size} bytes exceeds the {MAX_ITEM_BYTES}-byte limit")]
    ItemTooLarge { size: usize },
    /// The request itself is malformed (a programming error, not user input).
    #[error("invalid store request: {0}")]
    Invalid(String),
    /// Stored data could not be decoded.
    #[error("corrupt item: {0}")]
    Corrupt(String),
    #[error("store unavailable")]
    Unavailable(#[source] anyhow::Error),
}

impl StoreError {
    /// Whether a conditional write lost to another writer (a condition failed, or
    /// a transaction collided with another): read again and retry, up to
    /// `records::CONFLICT_ATTEMPTS` times.
    pub fn is_conflict(&self) -> bool {
        matches!(
            self,
            StoreError::ConditionFailed
                | StoreError::TransactionFailed(_)
                | StoreError::TransactionConflict
        )
    }

    pub fn unavailable(err: impl Into<anyhow::Error>) -> Self {
        StoreError::Unavailable(err.into())
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

#[async_trait]
pub trait KvStore: Send + Sync + std::fmt::Debug + 'static {
    async fn get(&self, key: &Key) -> StoreResult<Option<Item>>;

    /// Writes the item, replacing any item under its key, if the condition holds;
    /// otherwise `ConditionFailed`.
    async fn put(&self, item: Item, condition: Condition) -> StoreResult<()>;

    /// Deletes the item if the condition holds. Deleting a missing item with
    /// `Condition::None` succeeds.
    async fn delete(&self, key: &Key, condition: Condition) -> StoreResult<()>;

    /// Atomically adds `delta` to a numeric attribute (missing counts as zero, a missing
    /// item is created) and returns the new value.
    async fn add(&self, key: &Key, attr: &str, delta: i64) -> StoreResult<i64>;

    async fn query(&self, query: Query) -> StoreResult<Page>;

    /// Unconditional puts and deletes, any number; not atomic as a whole.
    async fn batch_write(&self, ops: Vec<WriteOp>) -> StoreResult<()>;

    /// All operations apply or none does; at most `MAX_TRANSACT_ITEMS`, each key once.
    async fn transact(&self, ops: Vec<TxOp>) -> StoreResult<()>;
}

/// Checks a transaction against DynamoDB's rules before any adapter runs it.
pub fn validate_transaction(ops: &[TxOp]) -> StoreResult<()> {
    if ops.is_empty() || ops.len() > MAX_TRANSACT_ITEMS {
        return Err(StoreError::Invalid(format!(
            "a transaction holds 1..={MAX_TRANSACT_ITEMS} operations, not {}",
            ops.len()
        )));
    }
    let mut seen = std::collections::HashSet::with_capacity(ops.len());
    for op in ops {
        if !seen.insert(op.key()) {
            return Err(StoreError::Invalid(
                "a transaction may touch each item only once".into(),
            ));
        }
        match op {
            TxOp::Put(item, _) => item.validate()?,
            other => other.key().validate()?,
        }
    }
    Ok(())
}

/// Checks a batch against the per-item rules; adapters split it into requests.
/// DynamoDB refuses a batch naming one key twice, so every adapter does.
pub fn validate_batch(ops: &[WriteOp]) -> StoreResult<()> {
    let mut seen = std::collections::HashSet::with_capacity(ops.len());
    for op in ops {
        let key = match op {
            WriteOp::Put(item) => {
                item.validate()?;
                &item.key
            }
            WriteOp::Delete(key) => {
                key.validate()?;
                key
            }
        };
        if !seen.insert(key) {
            return Err(StoreError::Invalid(
                "a batch may touch each item only once".into(),
            ));
        }
    }
    Ok(())
}

pub fn validate_query(query: &Query) -> StoreResult<()> {
    if query.pk.is_empty() {
        return Err(StoreError::Invalid("query without a partition key".into()));
    }
    if query.limit == 0 {
        return Err(StoreError::Invalid("query limit must be positive".into()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_billed_by_their_digits() {
        assert_eq!(Value::N(0).billed_size(), 2);
        assert_eq!(Value::N(99).billed_size(), 2);
        assert_eq!(Value::N(12345).billed_size(), 4);
        assert_eq!(Value::N(-12345).billed_size(), 4);
        assert_eq!(Value::N(i64::MIN).billed_size(), 11);
    }

    #[test]
    fn item_size_counts_key_names_and_values() {
        let item = Item::new(Key::new("ab", "cd")).with("x", Value::S("hello".into()));
        assert_eq!(item.billed_size(), 2 + 2 + 2 + 2 + 1 + 5);
    }

    #[test]
    fn a_transaction_touching_one_item_twice_is_refused() {
        let key = Key::new("p", "s");
        let ops = vec![
            TxOp::Check(key.clone(), Condition::Exists),
            TxOp::Delete(key, Condition::None),
        ];
        assert!(matches!(
            validate_transaction(&ops),
            Err(StoreError::Invalid(_))
        ));
    }

    #[test]
    fn equals_condition_needs_the_attribute_to_match() {
        let attrs: BTreeMap<String, Value> = [("v".to_string(), Value::N(1))].into();
        assert!(Condition::Equals("v".into(), Value::N(1)).holds(Some(&attrs)));
        assert!(!Condition::Equals("v".into(), Value::N(2)).holds(Some(&attrs)));
        assert!(!Condition::Equals("v".into(), Value::N(1)).holds(None));
    }
}
