//! What a workload costs on AWS, counted from what it asks of the storage ports:
//! DynamoDB on-demand read and write request units and requests, and S3 requests by
//! price class. Decorators for benches and tests, never for production: counting a
//! write needs the size of the item it replaces, which `MeteredKv` reads through the
//! inner store first, and that read is neither counted nor free on DynamoDB.
//!
//! Units come from item sizes (`Item::billed_size`), not from DynamoDB's answers:
//! moto reports `ConsumedCapacity` wrongly, and sizes make the count identical on the
//! embedded store and on DynamoDB. The rules, from the DynamoDB developer guide
//! ("DynamoDB read and write operations") and the on-demand pricing page:
//!
//! - a write request unit covers 1 KB of the item written; a put or an update is billed
//!   on the larger of the item before and after, a delete on the item deleted, and a
//!   write of less than 1 KB (the delete of a missing item included) costs one unit;
//! - a strongly consistent read request unit covers 4 KB; a get is billed on the item
//!   (one unit if it is missing), a query on the sum of the items it returns, rounded
//!   up once per response, and a response holds at most 1 MB;
//! - a write whose condition fails is still billed, as if it had been applied;
//! - `BatchWriteItem` bills each item as its own put or delete, 25 items a request;
//! - `TransactWriteItems` bills every item twice (prepare and commit). The guide does
//!   not price a `ConditionCheck`; measured against DynamoDB (the dynamodb-conformance
//!   suite, paritysuite/dynamodb-conformance#67) it is billed as a transactional write
//!   of the item it checks, 2 WRU below 1 KB.
//!
//! The DynamoDB adapter asks for strongly consistent reads everywhere (`ConsistentRead`
//! on every get and query), so reads are counted at the strongly consistent rate.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;

use sextant_storage::blob::{
    BlobBody, BlobError, BlobKey, BlobMeta, BlobPage, BlobResult, BlobStore, CompletedPart, Presign,
};
use sextant_storage::kv::{
    Condition, Item, Key, KvStore, Page, Query, StoreError, StoreResult, TxOp, Value, WriteOp,
};

/// Bytes of item one write request unit covers.
pub const WRITE_UNIT_BYTES: usize = 1024;
/// Bytes of item one strongly consistent read request unit covers.
pub const READ_UNIT_BYTES: usize = 4096;
/// DynamoDB stops a query response at 1 MB of items and hands back a cursor.
pub const QUERY_RESPONSE_BYTES: usize = 1024 * 1024;
/// Items one `BatchWriteItem` request carries (the adapter splits batches so).
pub const BATCH_WRITE_ITEMS: usize = 25;
/// Every item of a transaction is written twice, to prepare and to commit.
const TRANSACTION_FACTOR: u64 = 2;

/// Write request units of one standard write of an item of `bytes` (the larger of the
/// item before and after).
pub fn write_units(bytes: usize) -> u64 {
    bytes.div_ceil(WRITE_UNIT_BYTES).max(1) as u64
}

/// Read request units of one strongly consistent read of `bytes` of items.
pub fn read_units(bytes: usize) -> u64 {
    bytes.div_ceil(READ_UNIT_BYTES).max(1) as u64
}

/// Responses and read units of a query page whose items are `sizes` bytes, as DynamoDB
/// would serve it: cut into responses of at most 1 MB, each rounded up on its own.
/// An adapter without DynamoDB's 1 MB cut (the embedded store) returns larger pages;
/// counting them this way keeps both adapters' counts equal.
pub fn query_cost(sizes: impl IntoIterator<Item = usize>) -> (u64, u64) {
    let (mut responses, mut units) = (0, 0);
    let mut open: Option<usize> = None;
    for size in sizes {
        open = match open {
            Some(bytes) if bytes + size > QUERY_RESPONSE_BYTES => {
                responses += 1;
                units += read_units(bytes);
                Some(size)
            }
            Some(bytes) => Some(bytes + size),
            None => Some(size),
        };
    }
    // An empty page is still a request, billed like a read of a missing item.
    let bytes = open.unwrap_or(0);
    (responses + 1, units + read_units(bytes))
}

/// The DynamoDB API calls the key-value port turns into.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Operation {
    GetItem,
    Query,
    PutItem,
    UpdateItem,
    DeleteItem,
    BatchWriteItem,
    TransactWriteItems,
}

impl Operation {
    pub const ALL: [Operation; 7] = [
        Operation::GetItem,
        Operation::Query,
        Operation::PutItem,
        Operation::UpdateItem,
        Operation::DeleteItem,
        Operation::BatchWriteItem,
        Operation::TransactWriteItems,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Operation::GetItem => "GetItem",
            Operation::Query => "Query",
            Operation::PutItem => "PutItem",
            Operation::UpdateItem => "UpdateItem",
            Operation::DeleteItem => "DeleteItem",
            Operation::BatchWriteItem => "BatchWriteItem",
            Operation::TransactWriteItems => "TransactWriteItems",
        }
    }
}

/// Requests and units of one kind of operation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    pub requests: u64,
    pub read_units: u64,
    pub write_units: u64,
}

/// What a `MeteredKv` has counted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KvUsage {
    pub by_operation: BTreeMap<Operation, Tally>,
    /// Time spent waiting on the inner store, the size look-ups included: subtracted
    /// from a wall-clock time, it leaves the time the calling code itself took.
    pub store_time: Duration,
}

impl KvUsage {
    pub fn of(&self, operation: Operation) -> Tally {
        self.by_operation
            .get(&operation)
            .copied()
            .unwrap_or_default()
    }

    pub fn requests(&self) -> u64 {
        self.by_operation.values().map(|t| t.requests).sum()
    }

    pub fn read_units(&self) -> u64 {
        self.by_operation.values().map(|t| t.read_units).sum()
    }

    pub fn write_units(&self) -> u64 {
        self.by_operation.values().map(|t| t.write_units).sum()
    }
}

/// Whether DynamoDB bills a request that ended so. It bills a condition that failed
/// as if the write had happened, and a transaction cancelled by a condition or a
/// conflict is counted the same way (AWS documents no discount for it, so this errs
/// on the expensive side). Refused requests (invalid, too large) and throttled ones
/// are not billed.
fn billed<T>(result: &StoreResult<T>) -> bool {
    matches!(
        result,
        Ok(_)
            | Err(StoreError::ConditionFailed
                | StoreError::TransactionFailed(_)
                | StoreError::TransactionConflict)
    )
}

/// A key-value store that counts the DynamoDB requests and request units each call
/// would cost. See the module documentation.
#[derive(Debug)]
pub struct MeteredKv {
    inner: Arc<dyn KvStore>,
    usage: Mutex<KvUsage>,
}

impl MeteredKv {
    pub fn new(inner: Arc<dyn KvStore>) -> Self {
        Self {
            inner,
            usage: Mutex::default(),
        }
    }

    /// Everything counted so far.
    pub fn usage(&self) -> KvUsage {
        self.usage
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Everything counted so far, starting the count again from zero.
    pub fn take(&self) -> KvUsage {
        std::mem::take(&mut *self.usage.lock().unwrap_or_else(PoisonError::into_inner))
    }

    fn record(&self, operation: Operation, requests: u64, read_units: u64, write_units: u64) {
        let mut usage = self.usage.lock().unwrap_or_else(PoisonError::into_inner);
        let tally = usage.by_operation.entry(operation).or_default();
        tally.requests += requests;
        tally.read_units += read_units;
        tally.write_units += write_units;
    }

    fn waited(&self, since: Instant) {
        self.usage
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .store_time += since.elapsed();
    }

    /// The item a write will replace, read without being counted.
    async fn current(&self, key: &Key) -> StoreResult<Option<Item>> {
        let started = Instant::now();
        let item = self.inner.get(key).await;
        self.waited(started);
        item
    }

    async fn current_size(&self, key: &Key) -> StoreResult<usize> {
        Ok(self
            .current(key)
            .await?
            .map_or(0, |item| item.billed_size()))
    }

    /// Write units of one transaction step, before the factor of two.
    async fn transaction_step_units(&self, op: &TxOp) -> StoreResult<u64> {
        Ok(match op {
            TxOp::Put(item, _) => {
                write_units(self.current_size(&item.key).await?.max(item.billed_size()))
            }
            TxOp::Delete(key, _) | TxOp::Check(key, _) => {
                write_units(self.current_size(key).await?)
            }
            TxOp::Add { key, deltas, .. } => {
                let before = self.current(key).await?;
                let before_size = before.as_ref().map_or(0, Item::billed_size);
                let mut after = before.unwrap_or_else(|| Item::new(key.clone()));
                for (attr, delta) in deltas {
                    let now = after.n(attr).unwrap_or(0).saturating_add(*delta);
                    after.attrs.insert(attr.clone(), Value::N(now));
                }
                write_units(before_size.max(after.billed_size()))
            }
        })
    }

    async fn timed<T>(&self, call: impl Future<Output = T>) -> T {
        let started = Instant::now();
        let result = call.await;
        self.waited(started);
        result
    }
}

#[async_trait]
impl KvStore for MeteredKv {
    async fn get(&self, key: &Key) -> StoreResult<Option<Item>> {
        let result = self.timed(self.inner.get(key)).await;
        if let Ok(item) = &result {
            let size = item.as_ref().map_or(0, Item::billed_size);
            self.record(Operation::GetItem, 1, read_units(size), 0);
        }
        result
    }

    async fn put(&self, item: Item, condition: Condition) -> StoreResult<()> {
        let size = self.current_size(&item.key).await?.max(item.billed_size());
        let result = self.timed(self.inner.put(item, condition)).await;
        if billed(&result) {
            self.record(Operation::PutItem, 1, 0, write_units(size));
        }
        result
    }

    async fn delete(&self, key: &Key, condition: Condition) -> StoreResult<()> {
        let size = self.current_size(key).await?;
        let result = self.timed(self.inner.delete(key, condition)).await;
        if billed(&result) {
            self.record(Operation::DeleteItem, 1, 0, write_units(size));
        }
        result
    }

    async fn add(&self, key: &Key, attr: &str, delta: i64) -> StoreResult<i64> {
        let before = self.current(key).await?;
        let result = self.timed(self.inner.add(key, attr, delta)).await;
        if let Ok(now) = &result {
            let before_size = before.as_ref().map_or(0, Item::billed_size);
            let after = before
                .unwrap_or_else(|| Item::new(key.clone()))
                .with(attr, Value::N(*now));
            let size = before_size.max(after.billed_size());
            self.record(Operation::UpdateItem, 1, 0, write_units(size));
        }
        result
    }

    async fn query(&self, query: Query) -> StoreResult<Page> {
        let result = self.timed(self.inner.query(query)).await;
        if let Ok(page) = &result {
            let (requests, units) = query_cost(page.items.iter().map(Item::billed_size));
            self.record(Operation::Query, requests, units, 0);
        }
        result
    }

    async fn batch_write(&self, ops: Vec<WriteOp>) -> StoreResult<()> {
        let mut units = 0;
        for op in &ops {
            units += match op {
                WriteOp::Put(item) => {
                    write_units(self.current_size(&item.key).await?.max(item.billed_size()))
                }
                WriteOp::Delete(key) => write_units(self.current_size(key).await?),
            };
        }
        let requests = ops.len().div_ceil(BATCH_WRITE_ITEMS) as u64;
        let result = self.timed(self.inner.batch_write(ops)).await;
        if result.is_ok() {
            self.record(Operation::BatchWriteItem, requests, 0, units);
        }
        result
    }

    async fn transact(&self, ops: Vec<TxOp>) -> StoreResult<()> {
        let mut units = 0;
        for op in &ops {
            units += TRANSACTION_FACTOR * self.transaction_step_units(op).await?;
        }
        let result = self.timed(self.inner.transact(ops)).await;
        if billed(&result) {
            self.record(Operation::TransactWriteItems, 1, 0, units);
        }
        result
    }
}

/// S3's request price classes (us-east-1 S3 Standard: $0.005 per 1,000 of the first,
/// $0.0004 per 1,000 of the second; DELETE and aborting an upload are free).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RequestClass {
    PutCopyPostList,
    GetAndOther,
    Free,
}

/// The S3 requests the blob port turns into. Presigning sends nothing; the holder of
/// the URL makes the request later, and it is counted here as if they do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum BlobRequest {
    PutObject,
    GetObject,
    HeadObject,
    ListObjects,
    DeleteObject,
    CreateMultipartUpload,
    CompleteMultipartUpload,
    AbortMultipartUpload,
    PresignedGet,
    PresignedPut,
    PresignedUploadPart,
}

impl BlobRequest {
    pub fn class(self) -> RequestClass {
        match self {
            BlobRequest::PutObject
            | BlobRequest::ListObjects
            | BlobRequest::CreateMultipartUpload
            | BlobRequest::CompleteMultipartUpload
            | BlobRequest::PresignedPut
            | BlobRequest::PresignedUploadPart => RequestClass::PutCopyPostList,
            BlobRequest::GetObject | BlobRequest::HeadObject | BlobRequest::PresignedGet => {
                RequestClass::GetAndOther
            }
            BlobRequest::DeleteObject | BlobRequest::AbortMultipartUpload => RequestClass::Free,
        }
    }
}

/// What a `MeteredBlobs` has counted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BlobUsage {
    pub by_request: BTreeMap<BlobRequest, u64>,
    /// Bytes the service stored itself (`put`); presigned uploads are not seen.
    pub bytes_put: u64,
}

impl BlobUsage {
    pub fn in_class(&self, class: RequestClass) -> u64 {
        self.by_request
            .iter()
            .filter(|(request, _)| request.class() == class)
            .map(|(_, count)| count)
            .sum()
    }
}

/// A blob store that counts the S3 requests each call is. S3 bills requests that
/// fail as well, so every call that would reach S3 counts; a key refused before
/// sending (`InvalidKey`) does not.
#[derive(Debug)]
pub struct MeteredBlobs {
    inner: Arc<dyn BlobStore>,
    usage: Mutex<BlobUsage>,
}

impl MeteredBlobs {
    pub fn new(inner: Arc<dyn BlobStore>) -> Self {
        Self {
            inner,
            usage: Mutex::default(),
        }
    }

    pub fn usage(&self) -> BlobUsage {
        self.usage
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub fn take(&self) -> BlobUsage {
        std::mem::take(&mut *self.usage.lock().unwrap_or_else(PoisonError::into_inner))
    }

    fn count<T>(&self, request: BlobRequest, result: &BlobResult<T>) {
        if !matches!(result, Err(BlobError::InvalidKey(_))) {
            *self
                .usage
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .by_request
                .entry(request)
                .or_default() += 1;
        }
    }
}

#[async_trait]
impl BlobStore for MeteredBlobs {
    async fn put(&self, key: &BlobKey, body: Bytes) -> BlobResult<BlobMeta> {
        let size = body.len() as u64;
        let result = self.inner.put(key, body).await;
        self.count(BlobRequest::PutObject, &result);
        if result.is_ok() {
            self.usage
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .bytes_put += size;
        }
        result
    }

    async fn get(&self, key: &BlobKey) -> BlobResult<BlobBody> {
        let result = self.inner.get(key).await;
        self.count(BlobRequest::GetObject, &result);
        result
    }

    async fn get_range(&self, key: &BlobKey, range: std::ops::Range<u64>) -> BlobResult<BlobBody> {
        let result = self.inner.get_range(key, range).await;
        self.count(BlobRequest::GetObject, &result);
        result
    }

    async fn head(&self, key: &BlobKey) -> BlobResult<Option<BlobMeta>> {
        let result = self.inner.head(key).await;
        self.count(BlobRequest::HeadObject, &result);
        result
    }

    async fn list(
        &self,
        prefix: &str,
        after: Option<&BlobKey>,
        limit: usize,
    ) -> BlobResult<BlobPage> {
        let result = self.inner.list(prefix, after, limit).await;
        self.count(BlobRequest::ListObjects, &result);
        result
    }

    async fn delete(&self, key: &BlobKey) -> BlobResult<()> {
        let result = self.inner.delete(key).await;
        self.count(BlobRequest::DeleteObject, &result);
        result
    }

    async fn presign(
        &self,
        key: &BlobKey,
        op: Presign,
        expires_in: Duration,
    ) -> BlobResult<String> {
        let result = self.inner.presign(key, op, expires_in).await;
        if result.is_ok() {
            let request = match op {
                Presign::Get => BlobRequest::PresignedGet,
                Presign::Put { .. } => BlobRequest::PresignedPut,
            };
            self.count(request, &result);
        }
        result
    }

    async fn start_multipart(&self, key: &BlobKey) -> BlobResult<String> {
        let result = self.inner.start_multipart(key).await;
        self.count(BlobRequest::CreateMultipartUpload, &result);
        result
    }

    async fn presign_part(
        &self,
        key: &BlobKey,
        upload_id: &str,
        number: u32,
        content_length: Option<u64>,
        expires_in: Duration,
    ) -> BlobResult<String> {
        let result = self
            .inner
            .presign_part(key, upload_id, number, content_length, expires_in)
            .await;
        if result.is_ok() {
            self.count(BlobRequest::PresignedUploadPart, &result);
        }
        result
    }

    async fn complete_multipart(
        &self,
        key: &BlobKey,
        upload_id: &str,
        parts: &[CompletedPart],
    ) -> BlobResult<()> {
        let result = self.inner.complete_multipart(key, upload_id, parts).await;
        self.count(BlobRequest::CompleteMultipartUpload, &result);
        result
    }

    async fn abort_multipart(&self, key: &BlobKey, upload_id: &str) -> BlobResult<()> {
        let result = self.inner.abort_multipart(key, upload_id).await;
        self.count(BlobRequest::AbortMultipartUpload, &result);
        result
    }
}

/// us-east-1 list prices in USD; `docs/cost.md` cites each.
pub mod price {
    /// DynamoDB on-demand, after the November 2024 cut.
    pub const WRITE_UNIT: f64 = 0.625e-6;
    pub const READ_UNIT: f64 = 0.125e-6;
    /// DynamoDB Standard table class storage, and continuous backups (PITR, which the
    /// template enables) on the same bytes.
    pub const DYNAMODB_GB_MONTH: f64 = 0.25;
    pub const PITR_GB_MONTH: f64 = 0.20;
    /// Lambda on arm64.
    pub const LAMBDA_REQUEST: f64 = 0.20e-6;
    pub const LAMBDA_GB_SECOND: f64 = 0.000_013_333_4;
    /// API Gateway HTTP API, first 300 million requests a month, metered per 512 KB.
    pub const API_REQUEST: f64 = 1.00e-6;
    pub const API_METER_BYTES: usize = 512 * 1024;
    /// S3 Standard requests.
    pub const S3_PUT_CLASS: f64 = 0.005e-3;
    pub const S3_GET_CLASS: f64 = 0.0004e-3;
    /// S3 Standard storage, first 50 TB a month.
    pub const S3_GB_MONTH: f64 = 0.023;
}

#[cfg(test)]
mod tests {
    use super::*;
    use sextant_storage::kv::{MAX_ITEM_BYTES, PK, SK};
    use sextant_storage_local::EmbeddedKv;

    struct Fixture {
        kv: MeteredKv,
        _dir: tempfile::TempDir,
    }

    fn fixture() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let inner = EmbeddedKv::open(&dir.path().join("kv.redb")).unwrap();
        Fixture {
            kv: MeteredKv::new(Arc::new(inner)),
            _dir: dir,
        }
    }

    /// An item in partition `p` whose billed size is exactly `bytes`.
    fn item_of(sk: &str, bytes: usize) -> Item {
        let key = Key::new("p", sk);
        let overhead = PK.len() + 1 + SK.len() + sk.len() + "d".len();
        Item::new(key).with("d", Value::B(Bytes::from(vec![7; bytes - overhead])))
    }

    const KB: usize = 1024;

    #[test]
    fn sizes_round_up_to_whole_units_and_never_below_one() {
        assert_eq!(item_of("s", 1536).billed_size(), 1536);
        assert_eq!(write_units(0), 1);
        assert_eq!(write_units(1024), 1);
        assert_eq!(write_units(1025), 2);
        assert_eq!(read_units(0), 1);
        assert_eq!(read_units(4096), 1);
        assert_eq!(read_units(4097), 2);
        assert_eq!(write_units(MAX_ITEM_BYTES), 391);
    }

    #[tokio::test]
    async fn a_put_of_one_and_a_half_kilobytes_costs_two_write_units() {
        let f = fixture();
        f.kv.put(item_of("a", 3 * KB / 2), Condition::None)
            .await
            .unwrap();
        let usage = f.kv.take();
        assert_eq!(
            usage.of(Operation::PutItem),
            Tally {
                requests: 1,
                read_units: 0,
                write_units: 2
            }
        );
        // The size look-up before the write is not a billed read.
        assert_eq!(usage.read_units(), 0);
    }

    #[tokio::test]
    async fn the_same_put_in_a_transaction_costs_four() {
        let f = fixture();
        f.kv.transact(vec![TxOp::Put(item_of("a", 3 * KB / 2), Condition::None)])
            .await
            .unwrap();
        assert_eq!(f.kv.take().of(Operation::TransactWriteItems).write_units, 4);
    }

    #[tokio::test]
    async fn overwriting_bills_the_larger_of_the_old_and_the_new_item() {
        let f = fixture();
        f.kv.put(item_of("a", 3 * KB), Condition::None)
            .await
            .unwrap();
        f.kv.take();
        f.kv.put(item_of("a", 100), Condition::None).await.unwrap();
        assert_eq!(f.kv.take().write_units(), 3);
    }

    #[tokio::test]
    async fn a_put_whose_condition_fails_is_billed_all_the_same() {
        let f = fixture();
        f.kv.put(item_of("a", 2 * KB), Condition::None)
            .await
            .unwrap();
        f.kv.take();
        let refused =
            f.kv.put(item_of("a", 500), Condition::NotExists)
                .await
                .unwrap_err();
        assert!(matches!(refused, StoreError::ConditionFailed));
        assert_eq!(f.kv.take().of(Operation::PutItem).write_units, 2);
    }

    #[tokio::test]
    async fn a_refused_item_is_not_billed() {
        let f = fixture();
        let too_large =
            f.kv.put(item_of("a", MAX_ITEM_BYTES + 1), Condition::None)
                .await;
        assert!(matches!(too_large, Err(StoreError::ItemTooLarge { .. })));
        assert!(f.kv.take().by_operation.is_empty());
    }

    #[tokio::test]
    async fn a_strongly_consistent_get_of_five_kilobytes_costs_two_read_units() {
        let f = fixture();
        f.kv.put(item_of("a", 5 * KB), Condition::None)
            .await
            .unwrap();
        f.kv.take();
        f.kv.get(&Key::new("p", "a")).await.unwrap().unwrap();
        // Reading nothing costs what reading a small item does.
        assert!(f.kv.get(&Key::new("p", "missing")).await.unwrap().is_none());
        assert_eq!(
            f.kv.take().of(Operation::GetItem),
            Tally {
                requests: 2,
                read_units: 3,
                write_units: 0
            }
        );
    }

    #[tokio::test]
    async fn a_query_sums_its_items_before_rounding() {
        let f = fixture();
        for sk in ["a", "b", "c"] {
            f.kv.put(item_of(sk, 2 * KB), Condition::None)
                .await
                .unwrap();
        }
        f.kv.take();
        let page = f.kv.query(Query::partition("p")).await.unwrap();
        assert_eq!(page.items.len(), 3);
        // 6 KB in one response: ceil(6 / 4) = 2, not 3 × 1.
        assert_eq!(
            f.kv.take().of(Operation::Query),
            Tally {
                requests: 1,
                read_units: 2,
                write_units: 0
            }
        );
        f.kv.query(Query::partition("empty")).await.unwrap();
        assert_eq!(f.kv.take().of(Operation::Query).read_units, 1);
    }

    #[test]
    fn a_page_over_one_megabyte_counts_as_the_responses_dynamodb_would_send() {
        // 300 items of 4 KB: 256 fill the first megabyte exactly, 44 spill over.
        let (responses, units) = query_cost(std::iter::repeat_n(4 * KB, 300));
        assert_eq!((responses, units), (2, 256 + 44));
        assert_eq!(query_cost(std::iter::empty()), (1, 1));
    }

    #[tokio::test]
    async fn a_delete_is_billed_on_the_item_it_deletes() {
        let f = fixture();
        f.kv.put(item_of("a", 5 * KB / 2), Condition::None)
            .await
            .unwrap();
        f.kv.take();
        f.kv.delete(&Key::new("p", "a"), Condition::None)
            .await
            .unwrap();
        f.kv.delete(&Key::new("p", "a"), Condition::None)
            .await
            .unwrap();
        assert_eq!(
            f.kv.take().of(Operation::DeleteItem),
            Tally {
                requests: 2,
                read_units: 0,
                write_units: 3 + 1
            }
        );
    }

    #[tokio::test]
    async fn an_add_bills_the_whole_item_it_updates() {
        let f = fixture();
        f.kv.put(item_of("a", 2 * KB), Condition::None)
            .await
            .unwrap();
        f.kv.take();
        assert_eq!(f.kv.add(&Key::new("p", "a"), "n", 5).await.unwrap(), 5);
        // 2 KB of item plus the new attribute: a third kilobyte is started.
        assert_eq!(f.kv.take().of(Operation::UpdateItem).write_units, 3);
        f.kv.add(&Key::new("p", "new"), "n", 1).await.unwrap();
        assert_eq!(f.kv.take().of(Operation::UpdateItem).write_units, 1);
    }

    #[tokio::test]
    async fn a_batch_bills_each_item_and_sends_twenty_five_a_request() {
        let f = fixture();
        let ops = (0..30)
            .map(|i| WriteOp::Put(item_of(&format!("k{i:02}"), 3 * KB / 2)))
            .collect();
        f.kv.batch_write(ops).await.unwrap();
        assert_eq!(
            f.kv.take().of(Operation::BatchWriteItem),
            Tally {
                requests: 2,
                read_units: 0,
                write_units: 30 * 2
            }
        );
    }

    #[tokio::test]
    async fn a_transaction_bills_checks_deletes_and_adds_twice_over() {
        let f = fixture();
        f.kv.put(item_of("checked", 3 * KB / 2), Condition::None)
            .await
            .unwrap();
        f.kv.put(item_of("gone", 500), Condition::None)
            .await
            .unwrap();
        f.kv.take();
        let ops = vec![
            TxOp::Check(Key::new("p", "checked"), Condition::Exists),
            TxOp::Delete(Key::new("p", "gone"), Condition::None),
            TxOp::Add {
                key: Key::new("p", "counter"),
                deltas: vec![("n".into(), 1)],
                condition: Condition::None,
            },
        ];
        f.kv.transact(ops).await.unwrap();
        let tally = f.kv.take().of(Operation::TransactWriteItems);
        assert_eq!((tally.requests, tally.write_units), (1, 2 * (2 + 1 + 1)));
    }

    #[tokio::test]
    async fn a_cancelled_transaction_is_billed_like_a_committed_one() {
        let f = fixture();
        let ops = vec![
            TxOp::Put(item_of("a", 3 * KB / 2), Condition::None),
            TxOp::Check(Key::new("p", "absent"), Condition::Exists),
        ];
        assert!(matches!(
            f.kv.transact(ops).await,
            Err(StoreError::TransactionFailed(_))
        ));
        assert_eq!(
            f.kv.take().of(Operation::TransactWriteItems).write_units,
            2 * (2 + 1)
        );
    }

    #[test]
    fn blob_requests_fall_into_the_classes_s3_prices() {
        assert_eq!(
            BlobRequest::CompleteMultipartUpload.class(),
            RequestClass::PutCopyPostList
        );
        assert_eq!(BlobRequest::HeadObject.class(), RequestClass::GetAndOther);
        assert_eq!(BlobRequest::DeleteObject.class(), RequestClass::Free);
        let usage = BlobUsage {
            by_request: [(BlobRequest::PutObject, 2), (BlobRequest::ListObjects, 1)].into(),
            bytes_put: 0,
        };
        assert_eq!(usage.in_class(RequestClass::PutCopyPostList), 3);
        assert_eq!(usage.in_class(RequestClass::GetAndOther), 0);
    }
}
